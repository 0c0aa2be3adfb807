/* The timer queue: a heap by due time behind one libevent timer. */
#include <stddef.h>
#include <stdlib.h>

#include <event2/event.h>

#include "log.h"
#include "monotime.h"
#include "timerq.h"

/*
 * Nodes fired in one turn of the loop at most: thousands of accounts due
 * at the same moment are served a batch per turn, with the loop's other
 * events in between.
 */
#define TIMERQ_FIRE_PER_TURN 64
/*
 * A node this close to its due time fires: libevent's clock and ours may
 * differ by a tick, and a timer run a hair early would otherwise be set
 * again for a few microseconds.
 */
#define TIMERQ_SLACK 0.001

#define NODE_OF(h)                                            \
	((struct timerq_node *)(void *)((char *)(h)-offsetof( \
	    struct timerq_node, hn)))

struct timerq {
	struct heap heap;
	struct event *ev;
	timerq_fire_fn fire;
	void *arg;
	double set_for; /* the due time ev is set for; -1: not set */
	bool firing;	/* inside tick(): set ev once, at its end */
};

static void tick(evutil_socket_t fd, short what, void *arg);

static bool
earlier(const struct heap_node *a, const struct heap_node *b)
{
	return NODE_OF(a)->due < NODE_OF(b)->due;
}

struct timerq *
timerq_new(struct event_base *base, timerq_fire_fn fire, void *arg)
{
	struct timerq *q;

	if ((q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	if ((q->ev = evtimer_new(base, tick, q)) == NULL) {
		free(q);
		return NULL;
	}
	heap_init(&q->heap, earlier);
	q->fire = fire;
	q->arg = arg;
	q->set_for = -1;
	return q;
}

void
timerq_free(struct timerq **qp)
{
	struct timerq *q = *qp;

	if (q == NULL)
		return;
	event_free(q->ev);
	heap_clear(&q->heap);
	free(q);
	*qp = NULL;
}

/* Sets the libevent timer for the earliest node, if that changed. */
static void
reset(struct timerq *q)
{
	struct heap_node *top = heap_top(&q->heap);
	struct timeval tv;
	double secs;

	if (q->firing)
		return;
	if (top == NULL) {
		if (q->set_for >= 0)
			evtimer_del(q->ev);
		q->set_for = -1;
		return;
	}
	if (NODE_OF(top)->due == q->set_for)
		return;
	q->set_for = NODE_OF(top)->due;
	secs = q->set_for - monotime();
	if (secs < 0)
		secs = 0;
	tv.tv_sec = (time_t)secs;
	tv.tv_usec = (suseconds_t)((secs - (double)tv.tv_sec) * 1e6);
	evtimer_add(q->ev, &tv);
}

static void
tick(evutil_socket_t fd, short what, void *arg)
{
	struct timerq *q = arg;
	struct heap_node *top;
	double now = monotime() + TIMERQ_SLACK;
	unsigned n;

	q->set_for = -1;
	q->firing = true;
	for (n = 0; n < TIMERQ_FIRE_PER_TURN; n++) {
		if ((top = heap_top(&q->heap)) == NULL ||
		    NODE_OF(top)->due > now)
			break;
		heap_remove(&q->heap, top);
		q->fire(q->arg, NODE_OF(top));
	}
	q->firing = false;
	reset(q);
}

void
timerq_node_init(struct timerq_node *n)
{
	heap_node_init(&n->hn);
	n->due = 0;
}

void
timerq_arm(struct timerq *q, struct timerq_node *n, double secs)
{
	n->due = monotime() + (secs > 0 ? secs : 0);
	if (heap_has(&n->hn))
		heap_fix(&q->heap, &n->hn);
	else if (heap_insert(&q->heap, &n->hn) == -1)
		fatalx("out of memory");
	reset(q);
}

void
timerq_cancel(struct timerq *q, struct timerq_node *n)
{
	if (!heap_has(&n->hn))
		return;
	heap_remove(&q->heap, &n->hn);
	reset(q);
}

bool
timerq_armed(const struct timerq_node *n)
{
	return heap_has(&n->hn);
}

unsigned long
timerq_count(const struct timerq *q)
{
	return (unsigned long)heap_size(&q->heap);
}
