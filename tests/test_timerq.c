/*
 * Tests of daemon/timerq.c on a real libevent loop: nodes fire in the
 * order of their due times and not before them, a cancelled node never
 * fires, a re-armed one fires at its new time, a firing node may arm
 * others (and itself), and a crowd due at once is served over several
 * loop turns rather than in one.
 */
#include <check.h>
#include <stdbool.h>
#include <stdlib.h>

#include <event2/event.h>

#include "monotime.h"
#include "timerq.h"
#include "check_main.h"

/* The bound on a case's loop: it fails, never hangs. */
#define AWAIT_SECS 5
#define NODES	   200

struct item {
	struct timerq_node tn;
	double due; /* monotonic, as armed */
	double fired;
	int order; /* when it fired, from 1; 0: not */
	struct item *rearm_other;
};

#define ITEM_OF(n) \
	((struct item *)(void *)((char *)(n)-offsetof(struct item, tn)))

static struct event_base *base;
static struct timerq *q;
static struct item items[NODES];
static int nfired;
static bool timed_out;

static void
fire(void *arg, struct timerq_node *n)
{
	struct item *it = ITEM_OF(n);

	ck_assert_ptr_eq(arg, &items);
	ck_assert(!timerq_armed(n));
	it->fired = monotime();
	it->order = ++nfired;
	if (it->rearm_other != NULL) {
		it->rearm_other->due = monotime() + 0.02;
		timerq_arm(q, &it->rearm_other->tn, 0.02);
		it->rearm_other = NULL;
	}
}

static void
arm(struct item *it, double secs)
{
	it->due = monotime() + secs;
	timerq_arm(q, &it->tn, secs);
}

static void
guard_cb(evutil_socket_t fd, short what, void *arg)
{
	timed_out = true;
	event_base_loopbreak(base);
}

/* Runs the loop until N nodes have fired in all. */
static void
await_fired(int n)
{
	struct timeval tv = {AWAIT_SECS, 0};
	struct event *guard = evtimer_new(base, guard_cb, NULL);

	ck_assert_ptr_nonnull(guard);
	evtimer_add(guard, &tv);
	timed_out = false;
	while (nfired < n && !timed_out)
		ck_assert_int_ne(event_base_loop(base, EVLOOP_ONCE), -1);
	event_free(guard);
	ck_assert_msg(!timed_out, "%d of %d fired", nfired, n);
}

static void
setup(void)
{
	size_t i;

	ck_assert_ptr_nonnull(base = event_base_new());
	ck_assert_ptr_nonnull(q = timerq_new(base, fire, &items));
	for (i = 0; i < NODES; i++) {
		items[i] = (struct item){0};
		timerq_node_init(&items[i].tn);
	}
	nfired = 0;
}

static void
teardown(void)
{
	timerq_free(&q);
	event_base_free(base);
}

START_TEST(fire_in_due_order_never_early)
{
	static const double delay[] = {
	    0.08, 0.01, 0.05, 0.03, 0.07, 0.02, 0.06, 0.04};
	const size_t n = sizeof(delay) / sizeof(delay[0]);
	size_t i, j;

	for (i = 0; i < n; i++)
		arm(&items[i], delay[i]);
	ck_assert_uint_eq(timerq_count(q), n);
	await_fired((int)n);
	ck_assert_uint_eq(timerq_count(q), 0);
	for (i = 0; i < n; i++) {
		/* A millisecond of slack, as timerq.c allows. */
		ck_assert_double_ge(items[i].fired, items[i].due - 0.0011);
		for (j = 0; j < n; j++)
			if (delay[j] < delay[i])
				ck_assert_int_lt(
				    items[j].order, items[i].order);
	}
}
END_TEST

START_TEST(cancelled_never_fires_rearmed_fires_late)
{
	arm(&items[0], 0.01);
	arm(&items[1], 0.02);
	arm(&items[2], 0.03);
	/* The earliest goes; the next one moves behind the last. */
	timerq_cancel(q, &items[0].tn);
	timerq_cancel(q, &items[0].tn);
	ck_assert(!timerq_armed(&items[0].tn));
	arm(&items[1], 0.06);
	ck_assert_uint_eq(timerq_count(q), 2);
	await_fired(2);
	ck_assert_int_eq(items[0].order, 0);
	ck_assert_int_eq(items[2].order, 1);
	ck_assert_int_eq(items[1].order, 2);
	ck_assert_double_ge(items[1].fired, items[1].due - 0.0011);
}
END_TEST

/* A node's callback arms another (here one already armed, later). */
START_TEST(firing_node_arms_others)
{
	items[0].rearm_other = &items[1];
	arm(&items[0], 0.01);
	arm(&items[1], 10);
	await_fired(2);
	ck_assert_int_eq(items[1].order, 2);
	ck_assert_double_lt(items[1].fired - items[0].fired, 1);
	ck_assert_double_ge(items[1].fired, items[1].due - 0.0011);
}
END_TEST

/* NODES due at once: the first loop turn serves some, not all. */
START_TEST(crowd_served_over_several_turns)
{
	size_t i;

	for (i = 0; i < NODES; i++)
		arm(&items[i], 0);
	ck_assert_int_ne(event_base_loop(base, EVLOOP_ONCE), -1);
	ck_assert_int_gt(nfired, 0);
	ck_assert_int_lt(nfired, NODES);
	await_fired(NODES);
	for (i = 0; i < NODES; i++)
		ck_assert_int_gt(items[i].order, 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("timerq");
	TCase *tc = tcase_create("timerq");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, fire_in_due_order_never_early);
	tcase_add_test(tc, cancelled_never_fires_rearmed_fires_late);
	tcase_add_test(tc, firing_node_arms_others);
	tcase_add_test(tc, crowd_served_over_several_turns);
	suite_add_tcase(s, tc);
	return check_main(s);
}
