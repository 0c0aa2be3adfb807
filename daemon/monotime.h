/*
 * monotime: seconds on a clock as a double, for intervals (timeouts,
 * rates, back-off), never for dates. A leaf.
 */
#ifndef POPFETCHD_MONOTIME_H
#define POPFETCHD_MONOTIME_H

#include <time.h>

/* Seconds on clock ID: CLOCK_MONOTONIC, or a CPU-time clock. */
static inline double
monotime_of(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Seconds on the monotonic clock. */
static inline double
monotime(void)
{
	return monotime_of(CLOCK_MONOTONIC);
}

#endif
