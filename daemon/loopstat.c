/* The loop-stall meter of the benchmark. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "loopstat.h"
#include "monotime.h"
#include "threadstat.h"

struct loopstat {
	struct event *tick;
	double last;	      /* when the previous tick ran */
	double last_cpu;      /* the loop thread's CPU time then */
	double max;	      /* the longest lateness seen, seconds */
	double max_cpu;	      /* the most CPU the loop used between ticks */
	unsigned long n;      /* ticks */
	unsigned long over10; /* ticks more than 10 ms late */
	/* The same since the last loopstat_window(). */
	double w_max, w_max_cpu;
	unsigned long w_n, w_over10;
	/*
	 * Where the stalls over 10 ms went: the loop's own CPU, waiting for
	 * a CPU (the scheduler's run queue, from /proc's schedstat), and the
	 * rest (blocked in a call), in seconds, summed; the same for the
	 * longest stall alone.
	 */
	int schedstat;	/* /proc/thread-self/schedstat, or -1 */
	double last_rq; /* run-queue wait so far, then */
	double sum_cpu, sum_rq, sum_late;
	double max_at_cpu, max_at_rq;
	double start, max_at; /* when the meter started, and the longest */
};

/* Seconds the loop thread has waited on a run queue, or 0 if unknown. */
static double
runqueue_wait(const struct loopstat *ls)
{
	double run, wait;

	return threadstat_times(ls->schedstat, &run, &wait) == 0 ? wait : 0;
}

static void
tick(evutil_socket_t fd, short what, void *arg)
{
	struct loopstat *ls = arg;
	double now = monotime_of(CLOCK_MONOTONIC);
	double cpu = monotime_of(CLOCK_THREAD_CPUTIME_ID);
	double late = now - ls->last - LOOPSTAT_TICK_MS / 1e3;
	double rq = runqueue_wait(ls);

	if (late > ls->max) {
		ls->max = late;
		ls->max_at_cpu = cpu - ls->last_cpu;
		ls->max_at_rq = rq - ls->last_rq;
		ls->max_at = now - ls->start;
	}
	if (late > ls->w_max)
		ls->w_max = late;
	if (cpu - ls->last_cpu > ls->max_cpu)
		ls->max_cpu = cpu - ls->last_cpu;
	if (cpu - ls->last_cpu > ls->w_max_cpu)
		ls->w_max_cpu = cpu - ls->last_cpu;
	if (late > 0.010) {
		ls->over10++;
		ls->w_over10++;
		ls->sum_late += late;
		ls->sum_cpu += cpu - ls->last_cpu;
		ls->sum_rq += rq - ls->last_rq;
	}
	ls->last_cpu = cpu;
	ls->last_rq = rq;
	ls->n++;
	ls->w_n++;
	ls->last = now;
}

struct loopstat *
loopstat_new(struct event_base *base)
{
	struct timeval tv = {.tv_usec = LOOPSTAT_TICK_MS * 1000};
	const char *env = getenv("POPFETCHD_LOOP_STATS");
	struct loopstat *ls;

	if (env == NULL || strcmp(env, "1") != 0 ||
	    (ls = calloc(1, sizeof(*ls))) == NULL)
		return NULL;
	ls->schedstat = -1;
	/*
	 * At the highest priority (where the base has priorities), so that
	 * its lateness is how long the loop could not turn to an urgent
	 * event, not how much ordinary work was queued before it.
	 */
	if ((ls->tick = event_new(base, -1, EV_PERSIST, tick, ls)) == NULL ||
	    (event_base_get_npriorities(base) > 1 &&
		event_priority_set(ls->tick, 0) == -1) ||
	    event_add(ls->tick, &tv) == -1) {
		loopstat_free(&ls);
		return NULL;
	}
	ls->schedstat = threadstat_open_sched();
	ls->start = ls->last = monotime_of(CLOCK_MONOTONIC);
	ls->last_cpu = monotime_of(CLOCK_THREAD_CPUTIME_ID);
	ls->last_rq = runqueue_wait(ls);
	return ls;
}

void
loopstat_window(struct loopstat *ls, const char *what)
{
	if (ls == NULL)
		return;
	log_info(NULL,
	    "loop window=%s ticks=%lu max_stall_ms=%.1f over_10ms=%lu max_cpu_ms=%.1f",
	    what, ls->w_n, ls->w_max * 1e3, ls->w_over10, ls->w_max_cpu * 1e3);
	ls->w_max = ls->w_max_cpu = 0;
	ls->w_n = ls->w_over10 = 0;
}

void
loopstat_free(struct loopstat **lsp)
{
	struct loopstat *ls = *lsp;

	if (ls == NULL)
		return;
	/*
	 * One line: the longest stall and the most CPU between ticks; then
	 * where the longest stall went (the loop's CPU, waiting for a CPU),
	 * and all stalls over 10 ms summed the same way.
	 */
	if (ls->n > 0)
		log_info(NULL,
		    "loop ticks=%lu max_stall_ms=%.1f over_10ms=%lu max_cpu_ms=%.1f longest_cpu_ms=%.1f longest_runqueue_ms=%.1f longest_at_s=%.2f over_10ms_total_ms=%.1f over_10ms_cpu_ms=%.1f over_10ms_runqueue_ms=%.1f",
		    ls->n, ls->max * 1e3, ls->over10, ls->max_cpu * 1e3,
		    ls->max_at_cpu * 1e3, ls->max_at_rq * 1e3, ls->max_at,
		    ls->sum_late * 1e3, ls->sum_cpu * 1e3, ls->sum_rq * 1e3);
	if (ls->schedstat != -1)
		close(ls->schedstat);
	if (ls->tick != NULL)
		event_free(ls->tick);
	free(ls);
	*lsp = NULL;
}
