/*
 * worker: blocking disk work (fsync, syncfs, directory scans, journal
 * commits) on a few threads of its own, so that one account's slow disk
 * never holds the event loop, and every other session, still. A job runs
 * on a worker thread, then its completion runs on the loop thread.
 *
 * Whoever submits a job must not touch what the job works on until its
 * completion has run: the worker does no locking of the caller's data.
 */
#ifndef POPFETCHD_WORKER_H
#define POPFETCHD_WORKER_H

#include <sys/queue.h>

#include <stdbool.h>

struct event_base;
struct worker;

enum worker_job_state {
	WORKER_IDLE,	 /* not submitted, or its completion has run */
	WORKER_QUEUED,	 /* waiting for a thread */
	WORKER_RUNNING,	 /* run() under way */
	WORKER_FINISHED, /* run() returned; done() not yet called */
};

/* A job, embedded in the caller's object; the caller sets run and done. */
struct worker_job {
	void (*run)(struct worker_job *job);  /* on a worker thread */
	void (*done)(struct worker_job *job); /* then on the loop thread */
	enum worker_job_state state;	      /* the worker's, under its lock */
	bool busy;     /* the loop's view: submitted, completion not yet run */
	bool disowned; /* worker_cancel() while running: no done() */
	TAILQ_ENTRY(worker_job) entry; /* the worker's */
};

/*
 * Threads for disk work: enough that several accounts' syncs overlap,
 * few enough that they do not fight over one disk. More start while
 * jobs wait and some of these are held by a slow or hung disk (see
 * worker.c).
 */
#define WORKER_THREADS 4
/* Their name, the sessions' and the metrics file's (see worker_new). */
#define WORKER_DISK "popfetchd-disk"

/*
 * A worker with NTHREADS threads reporting on BASE; NULL on failure. The
 * threads take NAME (which must outlive the worker; 15 bytes are kept)
 * for ps -L and top -H.
 */
struct worker *worker_new(
    struct event_base *base, unsigned nthreads, const char *name);

/*
 * Stops the threads once they are idle and frees *W (sets it to NULL).
 * Every job must have been waited for (worker_wait) or completed.
 */
void worker_free(struct worker **w);

/*
 * Queues JOB (which must be idle). Its done() runs on a later turn of the
 * loop, never from inside this call.
 */
void worker_submit(struct worker *w, struct worker_job *job);

/* The threads W has now: its base, and those started while it was held. */
unsigned worker_threads(struct worker *w);

/* Whether JOB is submitted and its completion has not run yet. */
bool worker_busy(const struct worker_job *job);

/*
 * Takes JOB back, without its completion: a queued job is not run, a
 * running one is waited for (blocking the caller: for teardown only).
 * JOB is idle afterwards.
 */
void worker_wait(struct worker *w, struct worker_job *job);

/*
 * Waits at most SECS for JOB to stop running (blocking the caller: for
 * teardown only); true if it does not run, now or by then. Nothing is
 * taken back: its completion, if any, is for the loop as before.
 */
bool worker_await(struct worker *w, const struct worker_job *job, double secs);

/*
 * Takes JOB back without blocking: true if it was not running (it is idle
 * now). If it is running (a disk that does not answer), false: it is
 * disowned, its done() never runs, and what it works on must stay
 * allocated until the process exits; worker_free() must not be called.
 */
bool worker_cancel(struct worker *w, struct worker_job *job);

#endif
