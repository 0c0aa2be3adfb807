/*
 * nicer: the priority of a helper thread (disk work, log writing) below
 * the loop's, and its name; both are per thread on Linux. A leaf.
 */
#ifndef POPFETCHD_NICER_H
#define POPFETCHD_NICER_H

#include <sys/prctl.h>
#include <sys/resource.h>

#include <errno.h>
#include <unistd.h>

/*
 * How much nicer than the loop a helper thread runs. With the CPUs busy
 * the kernel shares them by weight, and at equal weight a loop turn that
 * serves every session waits behind a thread's syncfs or file system
 * work; nice 19 weighs 1.5% of nice 0, so the loop runs first and the
 * helpers take what is left, which is plenty: they wait for the disk or
 * for standard error, not for the CPU. (At nice 10, a tenth, a thousand
 * sessions' loop still waited 10-20 ms for CPU time behind four threads
 * creating Maildirs in bench/scale.py; 7-10 ms at nice 19.) The loop must
 * then never wait for a helper: nothing it shares with them is held
 * across a wait, and they are woken by semaphores, not condition
 * variables (see worker.c).
 *
 * Not SCHED_IDLE, which weighs a fifth of nice 19: with the disk threads
 * there, scale.py's longest stall fell from 9.8 to 7.4 ms (medians of 12
 * and 15 runs), but on CPUs kept busy by other programs such a thread
 * gets next to nothing. Once, with the test suite running two tests at
 * once, a poll's recovery of 586 files in tmp/ outlasted its 2 s timeout
 * (not reproduced; at nice 19 it never did).
 */
#define NICER_BY 19

/*
 * Lowers the calling thread's priority by NICER_BY: 0, or why not (an
 * errno; a sandbox may refuse setpriority, which leaves slower loop
 * turns under load, nothing worse).
 */
static inline int
nicer_thread(void)
{
	id_t self = (id_t)gettid();
	int now;

	errno = 0;
	now = getpriority(PRIO_PROCESS, self);
	if ((now != -1 || errno == 0) &&
	    setpriority(PRIO_PROCESS, self, now + NICER_BY) == 0)
		return 0;
	return errno != 0 ? errno : EPERM;
}

/* Names the calling thread (its first 15 bytes) for ps -L and top -H. */
static inline void
name_thread(const char *name)
{
	(void)prctl(PR_SET_NAME, name, 0, 0, 0);
}

#endif
