/*
 * loopstat: how long the event loop was kept from its events. A timer
 * asks to run every LOOPSTAT_TICK_MS; how late it runs is how long some
 * callback held the loop. For the benchmark: on only when the
 * environment has POPFETCHD_LOOP_STATS=1; the longest stall is logged
 * when the meter is freed.
 */
#ifndef POPFETCHD_LOOPSTAT_H
#define POPFETCHD_LOOPSTAT_H

struct event_base;
struct loopstat;

/* One tick: fine enough to see a 10 ms stall, cheap enough to leave on. */
#define LOOPSTAT_TICK_MS 2

/* A meter on BASE if POPFETCHD_LOOP_STATS=1, else NULL (also on error). */
struct loopstat *loopstat_new(struct event_base *base);

/* Logs the longest stall (and how many exceeded 10 ms), frees *LS. */
void loopstat_free(struct loopstat **ls);

#endif
