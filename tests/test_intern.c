/*
 * Tests of daemon/intern.c: equal strings share one copy, counted; a
 * string goes when its last holder puts it back, and comes back as a new
 * copy; thousands of distinct strings (the table grows) stay findable.
 */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "intern.h"
#include "check_main.h"

#define MANY 5000

START_TEST(equal_strings_share_one_counted_copy)
{
	struct intern *t = intern_new();
	char buf[64];
	const char *a, *b, *c;

	ck_assert_ptr_nonnull(t);
	snprintf(buf, sizeof(buf), "connection refused");
	ck_assert_ptr_nonnull(a = intern_get(t, buf));
	/* A copy: the caller's buffer may change. */
	ck_assert_ptr_ne(a, buf);
	buf[0] = 'C';
	ck_assert_str_eq(a, "connection refused");
	ck_assert_ptr_eq(b = intern_get(t, "connection refused"), a);
	ck_assert_ptr_nonnull(c = intern_get(t, "timed out"));
	ck_assert_ptr_ne(c, a);
	ck_assert_uint_eq(intern_count(t), 2);
	intern_put(t, a);
	/* One holder left: still there, still the same. */
	ck_assert_uint_eq(intern_count(t), 2);
	ck_assert_ptr_eq(intern_get(t, "connection refused"), b);
	intern_put(t, b);
	intern_put(t, b);
	ck_assert_uint_eq(intern_count(t), 1);
	intern_put(t, c);
	intern_put(t, NULL);
	ck_assert_uint_eq(intern_count(t), 0);
	intern_free(&t);
	ck_assert_ptr_null(t);
}
END_TEST

START_TEST(many_strings_through_growth)
{
	struct intern *t = intern_new();
	static const char *held[MANY];
	char buf[64];
	size_t i;

	ck_assert_ptr_nonnull(t);
	for (i = 0; i < MANY; i++) {
		snprintf(buf, sizeof(buf), "message %zu", i);
		ck_assert_ptr_nonnull(held[i] = intern_get(t, buf));
	}
	ck_assert_uint_eq(intern_count(t), MANY);
	for (i = 0; i < MANY; i++) {
		snprintf(buf, sizeof(buf), "message %zu", i);
		ck_assert_ptr_eq(intern_get(t, buf), held[i]);
		ck_assert_str_eq(held[i], buf);
	}
	/* Every other one put back twice: gone; the rest stay. */
	for (i = 0; i < MANY; i += 2) {
		intern_put(t, held[i]);
		intern_put(t, held[i]);
	}
	ck_assert_uint_eq(intern_count(t), MANY / 2);
	for (i = 1; i < MANY; i += 2) {
		snprintf(buf, sizeof(buf), "message %zu", i);
		ck_assert_ptr_eq(intern_get(t, buf), held[i]);
		intern_put(t, held[i]);
	}
	ck_assert_uint_eq(intern_count(t), MANY / 2);
	for (i = 1; i < MANY; i += 2) {
		intern_put(t, held[i]);
		intern_put(t, held[i]);
	}
	ck_assert_uint_eq(intern_count(t), 0);
	intern_free(&t);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("intern");
	TCase *tc = tcase_create("intern");

	tcase_add_test(tc, equal_strings_share_one_counted_copy);
	tcase_add_test(tc, many_strings_through_growth);
	suite_add_tcase(s, tc);
	return check_main(s);
}
