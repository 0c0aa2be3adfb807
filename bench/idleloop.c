/*
 * The idle-loop reference of bench/bench.py: the loop-stall meter of
 * popfetchd (daemon/loopstat.c, the same 2 ms timer and the same line)
 * on an event loop with nothing else to do.
 *
 *	POPFETCHD_LOOP_STATS=1 bench_idleloop
 *
 * Runs until SIGTERM or SIGINT, then logs the meter's line on stderr and
 * exits 0. Started beside popfetchd on the same CPUs, at the same
 * priority, its longest stall is what a loop with no work of its own
 * waits there: for a timer's wake-up the host delayed, or for the other
 * threads on those CPUs.
 */
#include <signal.h>
#include <stdio.h>

#include <event2/event.h>

#include "log.h"
#include "loopstat.h"

static void
stop(evutil_socket_t sig, short what, void *arg)
{
	event_base_loopbreak(arg);
}

int
main(void)
{
	struct event_base *base = event_base_new();
	struct event *term, *intr;
	struct loopstat *ls;

	log_init(0, false);
	if (base == NULL ||
	    (term = evsignal_new(base, SIGTERM, stop, base)) == NULL ||
	    (intr = evsignal_new(base, SIGINT, stop, base)) == NULL ||
	    event_add(term, NULL) == -1 || event_add(intr, NULL) == -1) {
		fprintf(stderr, "bench_idleloop: cannot set up the loop\n");
		return 1;
	}
	if ((ls = loopstat_new(base)) == NULL) {
		fprintf(stderr,
		    "bench_idleloop: no meter (set POPFETCHD_LOOP_STATS=1)\n");
		return 1;
	}
	event_base_dispatch(base);
	loopstat_free(&ls);
	log_flush();
	event_free(term);
	event_free(intr);
	event_base_free(base);
	return 0;
}
