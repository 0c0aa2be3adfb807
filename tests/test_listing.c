/* Tests for the listing: merge, completeness, bounds on memory. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "listing.h"
#include "plan.h"
#include "check_main.h"

START_TEST(test_merge_in_order)
{
	struct listing *l = listing_new(3);
	unsigned long dup = 0;
	struct plan_msg *m;

	ck_assert_ptr_nonnull(l);
	ck_assert_int_eq(listing_add_uid(l, 1, "a"), 0);
	ck_assert_int_eq(listing_add_uid(l, 2, "b"), 0);
	ck_assert_int_eq(listing_add_uid(l, 3, "c"), 0);
	ck_assert_int_eq(listing_add_size(l, 1, 10), 0);
	ck_assert_int_eq(listing_add_size(l, 2, 20), 0);
	ck_assert_int_eq(listing_add_size(l, 3, 30), 0);
	ck_assert_int_eq(listing_finish(l, &dup), 0);
	ck_assert_uint_eq(listing_count(l), 3);
	ck_assert(listing_complete(l, true));
	m = listing_msgs(l);
	ck_assert_uint_eq(m[1].msgno, 2);
	ck_assert_str_eq(m[1].uid, "b");
	ck_assert_uint_eq(m[1].size, 20);
	ck_assert(m[1].listed);
	m = listing_find(l, 3);
	ck_assert_ptr_nonnull(m);
	ck_assert_str_eq(m->uid, "c");
	ck_assert_ptr_null(listing_find(l, 4));
	listing_free(&l);
	ck_assert_ptr_null(l);
}
END_TEST

/* Out of order, and each listing leaving out a different message. */
START_TEST(test_merge_gaps_and_order)
{
	struct listing *l = listing_new(4);
	unsigned long dup = 0;
	struct plan_msg *m;

	ck_assert_int_eq(listing_add_uid(l, 4, "d"), 0);
	ck_assert_int_eq(listing_add_uid(l, 1, "a"), 0);
	ck_assert_int_eq(listing_add_uid(l, 2, "b"), 0);
	ck_assert_int_eq(listing_add_size(l, 3, 30), 0);
	ck_assert_int_eq(listing_add_size(l, 2, 20), 0);
	ck_assert_int_eq(listing_add_size(l, 4, 40), 0);
	ck_assert_int_eq(listing_finish(l, &dup), 0);
	ck_assert_uint_eq(listing_count(l), 4);
	ck_assert(!listing_complete(l, true));
	ck_assert(!listing_complete(l, false));
	m = listing_msgs(l);
	/* 1: UID only; 2: both; 3: size only; 4: both. */
	ck_assert(!m[0].listed);
	ck_assert_str_eq(m[0].uid, "a");
	ck_assert(m[1].listed && m[1].size == 20);
	ck_assert_str_eq(m[1].uid, "b");
	ck_assert(m[2].listed && m[2].size == 30);
	ck_assert_ptr_null(m[2].uid);
	ck_assert_str_eq(m[3].uid, "d");
	ck_assert_uint_eq(m[3].size, 40);
	listing_free(&l);
}
END_TEST

/* UIDL complete, LIST complete, but STAT counted one more. */
START_TEST(test_incomplete_against_stat)
{
	struct listing *l = listing_new(3);
	unsigned long dup = 0;

	ck_assert_int_eq(listing_add_uid(l, 1, "a"), 0);
	ck_assert_int_eq(listing_add_uid(l, 3, "c"), 0);
	ck_assert_int_eq(listing_add_size(l, 1, 1), 0);
	ck_assert_int_eq(listing_add_size(l, 2, 2), 0);
	ck_assert_int_eq(listing_add_size(l, 3, 3), 0);
	ck_assert_int_eq(listing_finish(l, &dup), 0);
	ck_assert(listing_complete(l, false));
	ck_assert(!listing_complete(l, true));
	ck_assert_uint_eq(listing_uids(l), 2);
	ck_assert_uint_eq(listing_sizes(l), 3);
	listing_free(&l);
}
END_TEST

START_TEST(test_range_and_duplicates)
{
	struct listing *l = listing_new(2);
	unsigned long dup = 0;

	errno = 0;
	ck_assert_int_eq(listing_add_uid(l, 0, "z"), -1);
	ck_assert_int_eq(errno, ERANGE);
	ck_assert_int_eq(listing_add_size(l, 3, 1), -1);
	ck_assert_int_eq(errno, ERANGE);
	ck_assert_int_eq(listing_add_uid(l, 2, "b"), 0);
	ck_assert_int_eq(listing_add_uid(l, 2, "b2"), 0);
	ck_assert_int_eq(listing_finish(l, &dup), -1);
	ck_assert_int_eq(errno, EEXIST);
	ck_assert_uint_eq(dup, 2);
	listing_free(&l);

	l = listing_new(2);
	ck_assert_int_eq(listing_add_size(l, 1, 1), 0);
	ck_assert_int_eq(listing_add_size(l, 1, 1), 0);
	ck_assert_int_eq(listing_finish(l, &dup), -1);
	ck_assert_int_eq(errno, EEXIST);
	ck_assert_uint_eq(dup, 1);
	listing_free(&l);
}
END_TEST

/*
 * What a STAT count costs: nothing until lines arrive. A listing for a
 * million messages with only one listed holds one message.
 */
START_TEST(test_memory_follows_lines)
{
	struct listing *l = listing_new(1000000);
	unsigned long dup = 0;

	ck_assert_ptr_nonnull(l);
	ck_assert_int_eq(listing_add_size(l, 1000000, 5), 0);
	ck_assert_int_eq(listing_finish(l, &dup), 0);
	ck_assert_uint_eq(listing_count(l), 1);
	ck_assert(!listing_complete(l, false));
	listing_free(&l);
}
END_TEST

/* The hard bound: long UIDs for every message run out at the cap. */
START_TEST(test_bound)
{
	struct listing *l = listing_new(1000000);
	char uid[71];
	unsigned long i;
	int r = 0;

	memset(uid, 'u', 60);
	for (i = 1; i <= 1000000 && r == 0; i++) {
		snprintf(uid + 60, sizeof(uid) - 60, "%lu", i);
		r = listing_add_uid(l, i, uid);
		if (r == 0)
			r = listing_add_size(l, i, i);
	}
	ck_assert_int_eq(r, -1);
	ck_assert_int_eq(errno, E2BIG);
	/* Far fewer than a million, far more than any real mailbox. */
	ck_assert_uint_gt(i, 100000);
	ck_assert_uint_lt(i, 1000000);
	listing_free(&l);
}
END_TEST

static Suite *
listing_suite(void)
{
	Suite *s = suite_create("listing");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_merge_in_order);
	tcase_add_test(tc, test_merge_gaps_and_order);
	tcase_add_test(tc, test_incomplete_against_stat);
	tcase_add_test(tc, test_range_and_duplicates);
	tcase_add_test(tc, test_memory_follows_lines);
	tcase_add_test(tc, test_bound);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_main(listing_suite());
}
