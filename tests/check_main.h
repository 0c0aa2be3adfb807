/* How every Check test ends: run the suite, exit with its result. */
#ifndef POPFETCHD_CHECK_MAIN_H
#define POPFETCHD_CHECK_MAIN_H

#include <check.h>
#include <stdlib.h>

static inline int
check_main(Suite *s)
{
	SRunner *sr = srunner_create(s);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif
