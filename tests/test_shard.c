/*
 * Tests of daemon/shard.c: the K/N argument, every account owned by
 * exactly one instance and the instances evenly loaded, the moves when N
 * changes (from N to N+1 only to the new instance, about 1/(N+1) of the
 * accounts; from N to N-1 only the leaving instance's), and the selection
 * of a configuration's accounts. The function's fixed values are checked
 * by an independent implementation in tests/test_shard.py.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "shard.h"
#include "check_main.h"

#define NAMES 2000

static char names[NAMES][32];

static void
setup(void)
{
	size_t i;

	for (i = 0; i < NAMES; i++)
		snprintf(names[i], sizeof(names[i]), "user%zu.example", i);
}

START_TEST(test_parse)
{
	static const char *const bad[] = {"", "1", "/4", "1/", "4/4", "5/4",
	    "0/0", "-1/4", "1/4x", " 1/4", "1 /4", "0/1025",
	    "0/99999999999999999999", "a/b", "1//4"};
	struct shard sh = {7, 7};
	char err[256];
	size_t i;

	ck_assert_int_eq(shard_parse("0/1", &sh, err, sizeof(err)), 0);
	ck_assert_uint_eq(sh.k, 0);
	ck_assert_uint_eq(sh.n, 1);
	ck_assert_int_eq(shard_parse("3/4", &sh, err, sizeof(err)), 0);
	ck_assert_uint_eq(sh.k, 3);
	ck_assert_uint_eq(sh.n, 4);
	ck_assert_int_eq(shard_parse("1023/1024", &sh, err, sizeof(err)), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		sh.k = sh.n = 7;
		err[0] = '\0';
		ck_assert_msg(shard_parse(bad[i], &sh, err, sizeof(err)) == -1,
		    "\"%s\" taken", bad[i]);
		ck_assert_msg(err[0] != '\0', "no message for \"%s\"", bad[i]);
		ck_assert_uint_eq(sh.k, 7);
	}
	shard_parse("4/4", &sh, err, sizeof(err));
	ck_assert_ptr_nonnull(strstr(err, "0/4 to 3/4"));
}
END_TEST

/* Each name owned by exactly one of N, and no instance far off N/th. */
START_TEST(test_one_owner_even_load)
{
	unsigned n, k, owners, count[16];
	struct shard sh;
	size_t i;

	for (n = 1; n <= 16; n++) {
		memset(count, 0, sizeof(count));
		for (i = 0; i < NAMES; i++) {
			owners = 0;
			for (k = 0; k < n; k++) {
				sh = (struct shard){k, n};
				owners += shard_mine(&sh, names[i]);
			}
			ck_assert_uint_eq(owners, 1);
			k = shard_owner(names[i], n);
			ck_assert_uint_lt(k, n);
			count[k]++;
		}
		/* Binomial: 6 standard deviations would be a broken hash. */
		for (k = 0; k < n; k++)
			ck_assert_msg(count[k] > NAMES / n / 2 &&
					  count[k] < NAMES / n * 3 / 2 + 20,
			    "n=%u k=%u has %u of %d", n, k, count[k], NAMES);
	}
}
END_TEST

/* N to N+1: the moved go to the new instance only, about 1/(N+1). */
START_TEST(test_growing_moves_only_to_the_new_one)
{
	unsigned n, before, after, moved;
	size_t i;

	for (n = 1; n < 12; n++) {
		moved = 0;
		for (i = 0; i < NAMES; i++) {
			before = shard_owner(names[i], n);
			after = shard_owner(names[i], n + 1);
			if (before == after)
				continue;
			ck_assert_uint_eq(after, n);
			moved++;
		}
		ck_assert_msg(moved > NAMES / (n + 1) / 2 &&
				  moved < NAMES / (n + 1) * 3 / 2 + 20,
		    "%u to %u moved %u of %d", n, n + 1, moved, NAMES);
	}
}
END_TEST

/* N+1 to N: only the last instance's accounts move. */
START_TEST(test_shrinking_moves_only_the_leaving_ones)
{
	unsigned n, before, after;
	size_t i;

	for (n = 1; n < 12; n++)
		for (i = 0; i < NAMES; i++) {
			before = shard_owner(names[i], n + 1);
			after = shard_owner(names[i], n);
			if (before != n)
				ck_assert_uint_eq(before, after);
		}
}
END_TEST

START_TEST(test_not_sharded_keeps_all)
{
	struct shard none = {0, 0};

	ck_assert(shard_mine(&none, "anything"));
	ck_assert_uint_eq(shard_owner("anything", 1), 0);
}
END_TEST

/* shard_select() keeps exactly the shard's accounts, in file order. */
START_TEST(test_select)
{
	struct account acc[200];
	struct conf c = {.accounts = acc, .naccounts = 200};
	struct shard sh = {2, 5}, none = {0, 0};
	size_t i, want = 0, kept, j = 0;

	memset(acc, 0, sizeof(acc));
	for (i = 0; i < 200; i++) {
		acc[i].name = names[i];
		acc[i].port = (unsigned)i;
		want += shard_owner(names[i], 5) == 2;
	}
	ck_assert_uint_eq(shard_select(&c, &none), 200);
	kept = shard_select(&c, &sh);
	ck_assert_uint_eq(kept, want);
	ck_assert_uint_eq(c.naccounts, want);
	for (i = 0; i < 200; i++) {
		if (shard_owner(names[i], 5) != 2)
			continue;
		ck_assert_ptr_eq(acc[j].name, names[i]);
		ck_assert_uint_eq(acc[j].port, i);
		j++;
	}
}
END_TEST

static Suite *
shard_suite(void)
{
	Suite *s = suite_create("shard");
	TCase *tc = tcase_create("core");

	tcase_add_unchecked_fixture(tc, setup, NULL);
	tcase_add_test(tc, test_parse);
	tcase_add_test(tc, test_one_owner_even_load);
	tcase_add_test(tc, test_growing_moves_only_to_the_new_one);
	tcase_add_test(tc, test_shrinking_moves_only_the_leaving_ones);
	tcase_add_test(tc, test_not_sharded_keeps_all);
	tcase_add_test(tc, test_select);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_main(shard_suite());
}
