/*
 * threadstat: what the kernel says of a thread's scheduling, from the
 * files under /proc/thread-self that the thread opened for itself (they
 * stay its own when another thread reads them). A leaf.
 */
#ifndef POPFETCHD_THREADSTAT_H
#define POPFETCHD_THREADSTAT_H

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The calling thread's schedstat file, or -1 (no such kernel support). */
static inline int
threadstat_open_sched(void)
{
	return open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
}

/* The calling thread's stat file, or -1. */
static inline int
threadstat_open_stat(void)
{
	return open("/proc/thread-self/stat", O_RDONLY | O_CLOEXEC);
}

/*
 * The thread's time on a CPU (*RUN) and waiting for one (*WAIT) so far,
 * in seconds, from its schedstat FD: 0, or -1 if the kernel cannot say.
 * A wait under way counts only once it ends.
 */
static inline int
threadstat_times(int fd, double *run, double *wait)
{
	char buf[96];
	unsigned long long r, w;
	ssize_t n;

	if (fd == -1 || (n = pread(fd, buf, sizeof(buf) - 1, 0)) <= 0)
		return -1;
	buf[n] = '\0';
	if (sscanf(buf, "%llu %llu", &r, &w) != 2)
		return -1;
	*run = (double)r / 1e9;
	*wait = (double)w / 1e9;
	return 0;
}

/*
 * Whether the thread whose stat file is FD is on a CPU or waiting for
 * one (state R); false if the kernel cannot say.
 */
static inline bool
threadstat_runnable(int fd)
{
	char buf[256], *p;
	ssize_t n;

	if (fd == -1 || (n = pread(fd, buf, sizeof(buf) - 1, 0)) <= 0)
		return false;
	buf[n] = '\0';
	/* "tid (name) state ...": the name may hold anything, even ")". */
	return (p = strrchr(buf, ')')) != NULL && p[1] == ' ' && p[2] == 'R';
}

#endif
