/*
 * timerq: many timers on one libevent timer. Each timer is a node in the
 * caller's object, kept in a heap by due time; the libevent timer is set
 * for the earliest. Arming, re-arming and cancelling cost O(log n) and
 * no allocation per timer: a libevent event per account would be 144
 * bytes each, 14 MB for 100,000 accounts that are nearly all waiting.
 *
 * Due times are on the monotonic clock (monotime.h).
 */
#ifndef POPFETCHD_TIMERQ_H
#define POPFETCHD_TIMERQ_H

#include <stdbool.h>

#include "heap.h"

struct event_base;
struct timerq;

struct timerq_node {
	struct heap_node hn;
	double due; /* monotonic seconds, while armed */
};

/*
 * Called on the loop for each node that is due, after taking it out of
 * the queue: it may arm or cancel any node, this one included.
 */
typedef void (*timerq_fire_fn)(void *arg, struct timerq_node *n);

/* A queue on BASE calling FIRE(ARG, node); NULL when out of memory. */
struct timerq *timerq_new(
    struct event_base *base, timerq_fire_fn fire, void *arg);

/* Frees *Q (sets it NULL); nodes still armed are marked unarmed. */
void timerq_free(struct timerq **q);

/* Marks N unarmed; before its first use. */
void timerq_node_init(struct timerq_node *n);

/* N fires SECS (0 or more) from now; re-arms it if it is armed. */
void timerq_arm(struct timerq *q, struct timerq_node *n, double secs);

/* N will not fire; nothing if it is not armed. */
void timerq_cancel(struct timerq *q, struct timerq_node *n);

/* Whether N is armed. */
bool timerq_armed(const struct timerq_node *n);

/* The number of armed nodes. */
unsigned long timerq_count(const struct timerq *q);

#endif
