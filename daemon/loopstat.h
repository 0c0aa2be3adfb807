/*
 * loopstat: how long the event loop was kept from its events. A timer
 * asks to run every LOOPSTAT_TICK_MS; how late it runs is how long the
 * loop was held, by its own callbacks, by a blocking call, or by other
 * processes on a busy machine; the CPU time the loop thread used between
 * two ticks is its own share (no blocking call, no waiting for a CPU).
 * For the benchmark: on only when the environment has
 * POPFETCHD_LOOP_STATS=1; both maxima are logged when it is freed.
 */
#ifndef POPFETCHD_LOOPSTAT_H
#define POPFETCHD_LOOPSTAT_H

struct event_base;
struct loopstat;

/* One tick: fine enough to see a 10 ms stall, cheap enough to leave on. */
#define LOOPSTAT_TICK_MS 2

/* A meter on BASE if POPFETCHD_LOOP_STATS=1, else NULL (also on error). */
struct loopstat *loopstat_new(struct event_base *base);

/*
 * Logs the longest stall and the most CPU between two ticks since the
 * previous window (or the start), as "loop window=WHAT ...", and starts
 * the next window: how the loop fared during one event (a reload, say).
 * NULL is fine.
 */
void loopstat_window(struct loopstat *ls, const char *what);

/* Logs the longest stall (and how many exceeded 10 ms), frees *LS. */
void loopstat_free(struct loopstat **ls);

#endif
