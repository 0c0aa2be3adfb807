/*
 * Tests of daemon/pool.c: allocations are zeroed, aligned and distinct;
 * equal strings are one copy until the pool is sealed; large requests
 * and many small ones live side by side; freeing wipes every byte (the
 * free() of the blocks is watched: the build links this test with
 * --wrap=free).
 */
#include <check.h>
#include <malloc.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "check_main.h"

void __real_free(void *p);
void __wrap_free(void *p);

static const char *watch;
static size_t freed_with_secret, freed;

void
__wrap_free(void *p)
{
	if (p != NULL && watch != NULL) {
		freed++;
		if (memmem(p, malloc_usable_size(p), watch, strlen(watch)) !=
		    NULL)
			freed_with_secret++;
	}
	__real_free(p);
}

START_TEST(allocations_zeroed_aligned_distinct)
{
	struct pool *p = pool_new();
	unsigned char *a[1000];
	size_t i, j, n;

	ck_assert_ptr_nonnull(p);
	for (i = 0; i < 1000; i++) {
		/* Sizes from 1 byte to past a block's quarter. */
		n = i == 999 ? 200000 : 1 + i % 97;
		ck_assert_ptr_nonnull(a[i] = pool_alloc(p, n));
		ck_assert_uint_eq((uintptr_t)a[i] % alignof(max_align_t), 0);
		for (j = 0; j < n; j++)
			ck_assert_uint_eq(a[i][j], 0);
		memset(a[i], (int)(i & 0xff), n);
	}
	/* Nothing overlaps: each still holds its own byte. */
	for (i = 0; i < 999; i++)
		for (j = 0; j < 1 + i % 97; j++)
			ck_assert_uint_eq(a[i][j], i & 0xff);
	ck_assert_uint_ge(pool_size(p), 200000);
	pool_free(&p);
	ck_assert_ptr_null(p);
	pool_free(&p);
}
END_TEST

START_TEST(strings_interned_until_sealed)
{
	struct pool *p = pool_new();
	char buf[32];
	char *x, *y, *z;

	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_null(pool_strdup(p, NULL));
	snprintf(buf, sizeof(buf), "pop.example.com");
	ck_assert_ptr_nonnull(x = pool_strdup(p, buf));
	ck_assert_ptr_ne(x, buf);
	ck_assert_ptr_eq(y = pool_strdup(p, "pop.example.com"), x);
	ck_assert_str_eq(pool_strdup(p, ""), "");
	z = pool_strdup(p, "pop.example.org");
	ck_assert_ptr_ne(z, x);
	ck_assert_str_eq(z, "pop.example.org");
	pool_seal(p);
	/* Sealed: copies, no table. */
	ck_assert_ptr_ne(pool_strdup(p, "pop.example.com"), x);
	ck_assert_str_eq(x, "pop.example.com");
	pool_free(&p);
}
END_TEST

START_TEST(free_wipes_every_block)
{
	static const char secret[] = "Pool-Wipe-Marker-2718";
	struct pool *p = pool_new();
	char name[64];
	size_t i;

	ck_assert_ptr_nonnull(p);
	/* Enough for several blocks, the secret in the first and last. */
	ck_assert_ptr_nonnull(pool_strdup(p, secret));
	for (i = 0; i < 20000; i++) {
		snprintf(name, sizeof(name), "account-%zu", i);
		ck_assert_ptr_nonnull(pool_strdup(p, name));
	}
	pool_seal(p);
	ck_assert_ptr_nonnull(pool_strdup(p, secret));
	freed = freed_with_secret = 0;
	watch = secret;
	pool_free(&p);
	watch = NULL;
	/* The blocks, the pool itself: several frees, none with the secret. */
	ck_assert_uint_gt(freed, 3);
	ck_assert_uint_eq(freed_with_secret, 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("pool");

	tcase_add_test(tc, allocations_zeroed_aligned_distinct);
	tcase_add_test(tc, strings_interned_until_sealed);
	tcase_add_test(tc, free_wipes_every_block);
	suite_add_tcase(s, tc);
	return check_main(s);
}
