/*
 * nicer: the priority of a helper thread (disk work, log writing) below
 * the loop's; nice and the scheduling policy are per thread on Linux. A
 * leaf.
 */
#ifndef POPFETCHD_NICER_H
#define POPFETCHD_NICER_H

#include <sys/prctl.h>
#include <sys/resource.h>

#include <errno.h>
#include <sched.h>
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

/*
 * Moves the calling thread, nicer already, to SCHED_IDLE (sched(7)): 0,
 * or why not (an errno; it then keeps its nice value alone). A thread at
 * nice 19 still takes the CPU from a runnable loop now and then, and
 * keeps it until the next scheduler tick (4 ms on the benchmark's
 * kernel): in bench/scale.py, where the loop shares its CPU with the
 * disk threads alone, the loop waited 8 ms at a time behind threads
 * creating Maildirs as the polls began. Over 12 runs its longest stall
 * was 9.8 ms (median; 6 runs at 10 ms or more); with the disk threads at
 * SCHED_IDLE, 7.4 ms over 15 (one run at 10 ms or more). An idle thread
 * weighs a fifth of one at nice 19, and the loop, woken, always takes
 * the CPU from it. On CPUs busy with other
 * programs such a thread may wait long for its turn, so the loop must
 * not wait for one in a call: it awaits their work as events, and what
 * it shares with them is held a few instructions at a time (the
 * worker's lock, never across a job: worker.c; the allocator's, for a
 * malloc() or free()). The log writer keeps nice alone: standard error
 * gets its lines on a busy machine instead of their being dropped.
 */
static inline int
idler_thread(void)
{
	struct sched_param none = {0};

	return sched_setscheduler(0, SCHED_IDLE, &none) == 0 ? 0 : errno;
}

/* Names the calling thread (15 bytes at most) for ps -L and top -H. */
static inline void
name_thread(const char *name)
{
	(void)prctl(PR_SET_NAME, name, 0, 0, 0);
}

#endif
