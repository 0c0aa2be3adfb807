/*
 * Tests of daemon/heap.c: thousands of random inserts, removals, key
 * changes and pops, checked after each against the shape the heap must
 * have (every parent before its children, every node knowing its place)
 * and against a plain list of what is in it: the top is always the least
 * key, and popping everything gives the keys in order.
 */
#include <check.h>
#include <stdbool.h>
#include <stdlib.h>

#include "heap.h"
#include "check_main.h"

#define NODES 500
#define STEPS 20000

struct item {
	struct heap_node hn;
	int key;
	bool in; /* the test's own record of membership */
};

#define ITEM_OF(n) \
	((struct item *)(void *)((char *)(n)-offsetof(struct item, hn)))

static struct item items[NODES];

static bool
less(const struct heap_node *a, const struct heap_node *b)
{
	return ITEM_OF(a)->key < ITEM_OF(b)->key;
}

/*
 * Whether the heap has its shape and indexes, and the membership the
 * test saw. (Check marks a point at every assertion, a system call: the
 * loops compute, and assert only what went wrong.)
 */
static bool
heap_ok(const struct heap *h)
{
	size_t i, n = 0;

	for (i = 0; i < h->n; i++) {
		if (h->v[i]->idx != i)
			return false;
		if (i > 0 && less(h->v[i], h->v[(i - 1) / 2]))
			return false;
	}
	for (i = 0; i < NODES; i++) {
		if (heap_has(&items[i].hn) != items[i].in)
			return false;
		n += items[i].in;
	}
	return n == heap_size(h);
}

/* The least key in the heap, by looking at every node. */
static int
least(void)
{
	int min = 0;
	bool any = false;
	size_t i;

	for (i = 0; i < NODES; i++)
		if (items[i].in && (!any || items[i].key < min)) {
			min = items[i].key;
			any = true;
		}
	return min;
}

/*
 * One random step on item I: in if out; else out, re-keyed or popped
 * (the top then must be the least key). False if something was wrong.
 */
static bool
step(struct heap *h, size_t i)
{
	struct item *it = &items[i];
	struct heap_node *top;

	if (!it->in) {
		it->key = (int)(random() % 1000);
		it->in = true;
		return heap_insert(h, &it->hn) == 0;
	}
	switch (random() % 3) {
	case 0:
		heap_remove(h, &it->hn);
		it->in = false;
		return true;
	case 1:
		it->key = (int)(random() % 1000);
		heap_fix(h, &it->hn);
		return true;
	default:
		top = heap_top(h);
		if (ITEM_OF(top)->key != least())
			return false;
		heap_remove(h, top);
		ITEM_OF(top)->in = false;
		return true;
	}
}

START_TEST(random_operations_keep_the_order)
{
	struct heap h;
	size_t i;
	int prev;

	srandom((unsigned)_i + 1);
	heap_init(&h, less);
	for (i = 0; i < NODES; i++) {
		heap_node_init(&items[i].hn);
		items[i].in = false;
	}
	ck_assert_ptr_null(heap_top(&h));
	for (i = 0; i < STEPS; i++)
		if (!step(&h, (size_t)random() % NODES) || !heap_ok(&h) ||
		    (heap_size(&h) > 0 &&
			ITEM_OF(heap_top(&h))->key != least()))
			ck_abort_msg("wrong after step %zu", i);
	ck_assert_uint_gt(heap_size(&h), 0);
	/* Emptied from the top: the keys come out in order. */
	for (prev = -1; heap_size(&h) > 0;) {
		if (ITEM_OF(heap_top(&h))->key < prev)
			ck_abort_msg(
			    "%d after %d", ITEM_OF(heap_top(&h))->key, prev);
		prev = ITEM_OF(heap_top(&h))->key;
		ITEM_OF(heap_top(&h))->in = false;
		heap_remove(&h, heap_top(&h));
		if (!heap_ok(&h))
			ck_abort_msg("wrong while emptying");
	}
	heap_clear(&h);
}
END_TEST

/* Removing a node that is in no heap is nothing; clearing marks all out. */
START_TEST(remove_twice_and_clear)
{
	struct heap h;
	size_t i;

	heap_init(&h, less);
	for (i = 0; i < 10; i++) {
		heap_node_init(&items[i].hn);
		items[i].key = (int)(10 - i);
		ck_assert_int_eq(heap_insert(&h, &items[i].hn), 0);
	}
	heap_remove(&h, &items[3].hn);
	heap_remove(&h, &items[3].hn);
	ck_assert(!heap_has(&items[3].hn));
	ck_assert_uint_eq(heap_size(&h), 9);
	ck_assert_ptr_eq(heap_top(&h), &items[9].hn);
	heap_clear(&h);
	ck_assert_uint_eq(heap_size(&h), 0);
	for (i = 0; i < 10; i++)
		ck_assert(!heap_has(&items[i].hn));
	/* Usable again after a clear. */
	ck_assert_int_eq(heap_insert(&h, &items[0].hn), 0);
	ck_assert_ptr_eq(heap_top(&h), &items[0].hn);
	heap_clear(&h);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("heap");
	TCase *tc = tcase_create("heap");

	tcase_add_loop_test(tc, random_operations_keep_the_order, 0, 5);
	tcase_add_test(tc, remove_twice_and_clear);
	suite_add_tcase(s, tc);
	return check_main(s);
}
