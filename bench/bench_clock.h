/*
 * The benchmarks' clock: monotonic seconds, as a double (now()), or
 * nanoseconds, for timers (clock_ns()).
 */
#ifndef POPFETCHD_BENCH_CLOCK_H
#define POPFETCHD_BENCH_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline int64_t
clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif
