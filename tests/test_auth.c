/* Tests for the credential encodings. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"

START_TEST(apop_rfc1939_example)
{
	char d[33];

	/* The digest RFC 1939 section 7 publishes for its example. */
	ck_assert_int_eq(auth_apop("<1896.697170952@dbc.mtview.ca.us>",
			     "tanstaaf", d, sizeof(d)),
	    0);
	ck_assert_str_eq(d, "c4c9334bac560ecc979e58001b3e22fb");
	ck_assert_int_eq(auth_apop("<a@b>", "x", d, 32), -1);
}
END_TEST

START_TEST(plain_initial_response)
{
	char out[64];

	/* base64 of "\0tim\0tanstaaftanstaaf" (RFC 4616 example user). */
	ck_assert_int_gt(
	    auth_plain("tim", "tanstaaftanstaaf", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
	ck_assert_int_eq(auth_plain("tim", "tanstaaftanstaaf", out, 8), -1);
}
END_TEST

START_TEST(base64_lengths)
{
	char out[16];

	ck_assert_int_eq(auth_base64("", 0, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(auth_base64("a", 1, out, sizeof(out)), 4);
	ck_assert_str_eq(out, "YQ==");
	ck_assert_int_eq(auth_base64("abc", 3, out, sizeof(out)), 4);
	ck_assert_str_eq(out, "YWJj");
	ck_assert_int_eq(auth_base64("abcd", 4, out, 8), -1);
	ck_assert_int_eq(auth_base64("abcd", 4, out, 9), 8);
}
END_TEST

START_TEST(wipe_clears)
{
	char buf[8] = "secret!";
	size_t i;

	auth_wipe(buf, sizeof(buf));
	for (i = 0; i < sizeof(buf); i++)
		ck_assert_int_eq(buf[i], 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("encodings");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, apop_rfc1939_example);
	tcase_add_test(tc, plain_initial_response);
	tcase_add_test(tc, base64_lengths);
	tcase_add_test(tc, wipe_clears);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
