/* Table-driven tests for the fetch/delete policy. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"

#define NOW  1000000000
#define DAYS 86400

struct row {
	const char *name;
	struct plan_policy pol;
	struct plan_msg msg;
	enum plan_action want;
	enum plan_reason why;
};

static const struct row rows[] = {
    {"new, delete mode", {false, 0, 0, true},
	{1, 10, true, "a", false, 0, 0, 0}, PLAN_FETCH, PLAN_R_NONE},
    {"delivered before, delete mode: delete without fetching",
	{false, 0, 0, true}, {1, 10, true, "a", true, NOW, 0, 0}, PLAN_DELETE,
	PLAN_R_NONE},
    {"new, keep mode", {true, 0, 0, true}, {1, 10, true, "a", false, 0, 0, 0},
	PLAN_FETCH, PLAN_R_NONE},
    {"delivered, keep mode", {true, 0, 0, true},
	{1, 10, true, "a", true, NOW - 100 * DAYS, 0, 0}, PLAN_LEAVE,
	PLAN_R_KEPT},
    {"kept, younger than delete_after_days", {true, 7, 0, true},
	{1, 10, true, "a", true, NOW - 6 * DAYS, 0, 0}, PLAN_LEAVE,
	PLAN_R_KEPT},
    {"kept, delete_after_days reached", {true, 7, 0, true},
	{1, 10, true, "a", true, NOW - 7 * DAYS, 0, 0}, PLAN_DELETE,
	PLAN_R_NONE},
    {"too big", {false, 0, 100, true}, {1, 101, true, "a", false, 0, 0, 0},
	PLAN_LEAVE, PLAN_R_TOO_BIG},
    {"at the size limit", {false, 0, 100, true},
	{1, 100, true, "a", false, 0, 0, 0}, PLAN_FETCH, PLAN_R_NONE},
    {"delivered too-big message still deleted", {false, 0, 100, true},
	{1, 101, true, "a", true, NOW, 0, 0}, PLAN_DELETE, PLAN_R_NONE},
    {"not in LIST", {false, 0, 0, true}, {1, 0, false, "a", false, 0, 0, 0},
	PLAN_LEAVE, PLAN_R_NO_LISTING},
    {"not in UIDL", {false, 0, 0, true}, {1, 10, true, NULL, false, 0, 0, 0},
	PLAN_LEAVE, PLAN_R_NO_LISTING},
    {"no UIDL at all, delete mode", {false, 0, 0, false},
	{1, 10, true, NULL, false, 0, 0, 0}, PLAN_FETCH, PLAN_R_NONE},
};

START_TEST(table)
{
	const struct row *r = &rows[_i];
	struct plan_msg m = r->msg;
	struct plan_totals tot;

	ck_assert_int_eq(plan_decide(&m, 1, &r->pol, NOW, &tot), 0);
	if (m.action != r->want || m.reason != r->why)
		ck_abort_msg("%s: action %d reason %d, want %d %d", r->name,
		    m.action, m.reason, r->want, r->why);
	ck_assert_uint_eq(tot.fetch + tot.dele + tot.leave, 1);
}
END_TEST

START_TEST(keep_needs_uidl)
{
	struct plan_policy pol = {true, 0, 0, false};
	struct plan_msg m = {1, 10, true, NULL, false, 0, 0, 0};
	struct plan_totals tot;

	ck_assert_int_eq(plan_decide(&m, 1, &pol, NOW, &tot), -1);
}
END_TEST

START_TEST(duplicate_uids_left_alone)
{
	struct plan_policy pol = {false, 0, 0, true};
	struct plan_msg m[4] = {
	    {1, 10, true, "x", false, 0, 0, 0},
	    {2, 20, true, "dup", true, NOW, 0, 0},
	    {3, 30, true, "y", false, 0, 0, 0},
	    {4, 40, true, "dup", false, 0, 0, 0},
	};
	struct plan_totals tot;

	ck_assert_int_eq(plan_decide(m, 4, &pol, NOW, &tot), 0);
	ck_assert_int_eq(m[0].action, PLAN_FETCH);
	ck_assert_int_eq(m[1].action, PLAN_LEAVE);
	ck_assert_int_eq(m[1].reason, PLAN_R_DUP_UID);
	ck_assert_int_eq(m[2].action, PLAN_FETCH);
	ck_assert_int_eq(m[3].action, PLAN_LEAVE);
	ck_assert_uint_eq(tot.fetch, 2);
	ck_assert_uint_eq(tot.fetch_bytes, 40);
	ck_assert_uint_eq(tot.leave, 2);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("plan");
	TCase *tc = tcase_create("policy");
	SRunner *sr;
	int failed;

	tcase_add_loop_test(
	    tc, table, 0, (int)(sizeof(rows) / sizeof(rows[0])));
	tcase_add_test(tc, keep_needs_uidl);
	tcase_add_test(tc, duplicate_uids_left_alone);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
