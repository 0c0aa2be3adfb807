/*
 * The disk-work threads. Jobs wait in one queue; a thread takes the
 * first, runs it, and moves it to the finished list; a byte on a pipe
 * wakes the loop, which calls the completions of every finished job.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "monotime.h"
#include "nicer.h"
#include "threadstat.h"
#include "worker.h"

/* A thread, and since when it runs its job (0: none). */
struct worker_thread {
	pthread_t tid;
	double since;
	struct worker *w;
	/*
	 * Its /proc/thread-self/schedstat and stat (-1: none), and the time
	 * it had spent on a CPU or waiting for one when its last job ended
	 * (or it started), in seconds: see blocked_secs().
	 */
	int schedstat, stat;
	double ran_before;
	bool held; /* counted in the worker's HELD: see grow_cb() */
	/* Posted once the thread is named and nicer; NULL: nobody waits. */
	sem_t *ready;
};

struct worker {
	pthread_mutex_t lock;
	/*
	 * Posted for each job queued, and for each thread at the stop. Not
	 * a condition variable: glibc's pthread_cond_signal() may wait for
	 * threads woken before to have run, and so held the loop behind a
	 * nicer thread's turn on a busy CPU (tens of milliseconds, seen).
	 * sem_post() never waits.
	 */
	sem_t work;
	pthread_cond_t ended;		   /* a job finished running */
	TAILQ_HEAD(, worker_job) queue;	   /* waiting for a thread */
	TAILQ_HEAD(, worker_job) finished; /* waiting for their done() */
	bool stop;
	struct worker_thread **threads; /* room for max */
	unsigned nthreads, max;
	unsigned base;	    /* threads that are not held, at least */
	unsigned idle;	    /* threads waiting for a job */
	unsigned held;	    /* threads grow_cb() found held, in that job */
	unsigned nqueued;   /* jobs in QUEUE */
	const char *name;   /* the threads' */
	int pipe[2];	    /* threads write, the loop reads */
	struct event *wake; /* on pipe[0] */
	struct event *grow; /* a queued job waits: are the threads held? */
};

/*
 * Completions run in one turn of the loop, at most: each may parse what
 * its session's server sent meanwhile, and many at once would hold the
 * loop as long as all of them together.
 */
#define WORKER_DONE_PER_TURN 4

/*
 * A thread whose job has been blocked this long is held: by a disk that
 * is slow (a remote file system, a USB disk, one busy with another
 * program's writes) or that stopped answering. Time on a CPU, or waiting
 * for one, does not count: more threads would not make a busy CPU go
 * faster, and each thread runnable at once takes the loop's CPU for a
 * scheduler tick in its turn. It no longer counts among the
 * threads that serve the queue: while jobs wait, another thread starts
 * for each held one, up to WORKER_THREADS_MAX. So the disk work of the
 * accounts whose disks answer never queues behind a slow disk's for
 * longer than this; a sync of a healthy local disk takes well under it.
 * The ceiling is enough for that many hung accounts before the rest
 * wait, few enough for the threads' stacks (address space, not memory).
 * Threads started so leave once the held answer again (see surplus()).
 */
#define WORKER_HELD_MS	   50
#define WORKER_THREADS_MAX 64

static void *thread_main(void *arg);
static void wake_cb(evutil_socket_t fd, short what, void *arg);
static void grow_cb(evutil_socket_t fd, short what, void *arg);
static int start_thread(struct worker *w, sem_t *ready);
static void thread_free(struct worker_thread *t);

struct worker *
worker_new(struct event_base *base, unsigned nthreads, const char *name)
{
	struct worker *w;
	pthread_condattr_t cattr;
	unsigned i, started;
	sem_t ready;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->name = name;
	pthread_mutex_init(&w->lock, NULL);
	sem_init(&w->work, 0, 0);
	pthread_condattr_init(&cattr);
	pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
	pthread_cond_init(&w->ended, &cattr);
	pthread_condattr_destroy(&cattr);
	TAILQ_INIT(&w->queue);
	TAILQ_INIT(&w->finished);
	w->pipe[0] = w->pipe[1] = -1;
	if (pipe2(w->pipe, O_NONBLOCK | O_CLOEXEC) == -1 ||
	    (w->wake = event_new(
		 base, w->pipe[0], EV_READ | EV_PERSIST, wake_cb, w)) == NULL ||
	    event_add(w->wake, NULL) == -1 ||
	    (w->grow = evtimer_new(base, grow_cb, w)) == NULL)
		goto fail;
	/* One thread stays one: a job at a time, whose owner waits for it. */
	w->max = nthreads > 1 ? WORKER_THREADS_MAX : nthreads;
	if ((w->threads = calloc(w->max, sizeof(*w->threads))) == NULL)
		goto fail;
	w->base = nthreads;
	/* The threads read the array as soon as they run. */
	sem_init(&ready, 0, 0);
	pthread_mutex_lock(&w->lock);
	while (w->nthreads < nthreads)
		if (start_thread(w, &ready) == -1)
			break;
	started = w->nthreads;
	pthread_mutex_unlock(&w->lock);
	/*
	 * Whoever looks at the process once this returned (ps -L, top -H,
	 * the tests) finds every thread named and nicer, never one in its
	 * first instants as the loop's copy. A wait of microseconds (a turn
	 * of the scheduler on CPUs busy with other programs: the thread posts
	 * once nicer), at the start and at a reload that names another
	 * metrics file. Threads grow_cb() starts while sessions run are not
	 * waited for: those seconds count, and only a look in their first
	 * microseconds could see one unnamed.
	 */
	for (i = 0; i < started; i++)
		while (sem_wait(&ready) == -1 && errno == EINTR)
			;
	sem_destroy(&ready);
	if (started < nthreads)
		goto fail;
	return w;
fail:
	worker_free(&w);
	return NULL;
}

void
worker_free(struct worker **wp)
{
	struct worker *w = *wp;
	unsigned i;

	if (w == NULL)
		return;
	pthread_mutex_lock(&w->lock);
	w->stop = true;
	for (i = 0; i < w->nthreads; i++)
		sem_post(&w->work);
	pthread_mutex_unlock(&w->lock);
	/* Stopping, none leaves the array on its own: see thread_main(). */
	for (i = 0; i < w->nthreads; i++) {
		pthread_join(w->threads[i]->tid, NULL);
		thread_free(w->threads[i]);
	}
	free(w->threads);
	if (w->grow != NULL)
		event_free(w->grow);
	if (w->wake != NULL)
		event_free(w->wake);
	if (w->pipe[0] != -1)
		close(w->pipe[0]);
	if (w->pipe[1] != -1)
		close(w->pipe[1]);
	pthread_cond_destroy(&w->ended);
	sem_destroy(&w->work);
	pthread_mutex_destroy(&w->lock);
	free(w);
	*wp = NULL;
}

/*
 * Why a thread could not lower its priority (an errno), for the loop to
 * say once: log lines are written on the loop thread only.
 */
static atomic_int nice_refused;

/*
 * Names this thread and lowers its priority below the loop's (nicer.h),
 * then tells whoever waits for that.
 */
static void
lower_priority(const struct worker_thread *self)
{
	int err;

	name_thread(self->w->name);
	if ((err = nicer_thread()) != 0)
		atomic_store(&nice_refused, err);
	if (self->ready != NULL)
		sem_post(self->ready);
}
/* On the loop: says once that the threads kept the loop's priority. */
static void
tell_nice_refused(void)
{
	static bool told;
	int err = atomic_load(&nice_refused);

	if (err == 0 || told)
		return;
	told = true;
	log_info(NULL, "disk threads keep the loop's priority: setpriority: %s",
	    strerror(err));
}

/* Frees a thread's struct, once it is out of the array or joined. */
static void
thread_free(struct worker_thread *t)
{
	if (t->schedstat != -1)
		close(t->schedstat);
	if (t->stat != -1)
		close(t->stat);
	free(t);
}

/*
 * Starts thread number NTHREADS (under the lock), which posts READY (if
 * not NULL) once named and nicer; -1 if it cannot.
 */
static int
start_thread(struct worker *w, sem_t *ready)
{
	struct worker_thread *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return -1;
	t->w = w;
	t->since = 0;
	t->schedstat = t->stat = -1;
	t->ready = ready;
	if (pthread_create(&t->tid, NULL, thread_main, t) != 0) {
		free(t);
		return -1;
	}
	w->threads[w->nthreads++] = t;
	return 0;
}

/*
 * Seconds a thread spent on a CPU or waiting for one, from its schedstat
 * FD; -1 if the kernel cannot say.
 */
static double
sched_secs(int fd)
{
	double run, wait;

	return threadstat_times(fd, &run, &wait) == 0 ? run + wait : -1;
}

/*
 * Seconds T's job has been blocked by NOW (under the lock), 0 while it
 * is runnable: its time since the job began, less its time on a CPU or
 * waiting for one since its previous job ended (a little more than this
 * job's: this errs short). Under WORKER_HELD_MS, or if the kernel cannot
 * say, its time since the job began: never less than the blocked time.
 */
static double
blocked_secs(const struct worker_thread *t, double now)
{
	double ran = now - t->since, sched;

	if (t->since == 0)
		return 0;
	if (ran < WORKER_HELD_MS / 1000.0)
		return ran;
	/* A wait for a CPU counts only once it ended: so ask first. */
	if (threadstat_runnable(t->stat))
		return 0;
	if ((sched = sched_secs(t->schedstat)) < 0)
		return ran;
	ran -= sched - t->ran_before;
	return ran > 0 ? ran : 0;
}

/*
 * Waits (under the lock, dropped meanwhile) for a post of W's semaphore.
 * A post may find the queue empty (another thread took its job on the
 * way): the caller looks, and waits again.
 */
static void
await_post(struct worker *w)
{
	pthread_mutex_unlock(&w->lock);
	while (sem_wait(&w->work) == -1 && errno == EINTR)
		;
	pthread_mutex_lock(&w->lock);
}

/* Takes SELF out of W's array and detaches it (under the lock). */
static void
leave_array(struct worker *w, struct worker_thread *self)
{
	unsigned i;

	for (i = 0; w->threads[i] != self; i++)
		;
	w->threads[i] = w->threads[--w->nthreads];
	pthread_detach(self->tid);
}

/*
 * Whether a thread between jobs is one too many (under the lock): the
 * base's count of threads that are not held is there without it. So
 * the threads a slow disk started leave once it answers again, even if
 * jobs keep coming. Nothing else makes the count of the held drop than
 * a held job's end, and its thread asks then: no thread one too many
 * waits idle. (The held are those grow_cb() counted: no thread reads
 * another's /proc files under the lock, which the loop takes.)
 */
static bool
surplus(const struct worker *w)
{
	return !w->stop && w->nthreads > w->base + w->held;
}

static void *
thread_main(void *arg)
{
	struct worker_thread *self = arg;
	struct worker *w = self->w;
	struct worker_job *job;
	char byte = 1;
	double ran;
	bool wake, left = false;

	lower_priority(self);
	self->schedstat = threadstat_open_sched();
	self->stat = threadstat_open_stat();
	ran = sched_secs(self->schedstat);
	pthread_mutex_lock(&w->lock);
	self->ran_before = ran;
	for (;;) {
		if ((left = surplus(w))) {
			leave_array(w, self);
			break;
		}
		w->idle++;
		while (TAILQ_EMPTY(&w->queue) && !w->stop)
			await_post(w);
		w->idle--;
		if ((job = TAILQ_FIRST(&w->queue)) == NULL)
			break;
		TAILQ_REMOVE(&w->queue, job, entry);
		w->nqueued--;
		job->state = WORKER_RUNNING;
		self->since = monotime();
		pthread_mutex_unlock(&w->lock);
		job->run(job);
		ran = sched_secs(self->schedstat);
		pthread_mutex_lock(&w->lock);
		self->since = 0;
		self->ran_before = ran;
		if (self->held) {
			self->held = false;
			w->held--;
		}
		if (job->disowned) {
			job->state = WORKER_IDLE;
			continue;
		}
		job->state = WORKER_FINISHED;
		/*
		 * The loop takes every finished job once woken (wake_cb()):
		 * only the first of them needs to wake it.
		 */
		wake = TAILQ_EMPTY(&w->finished);
		TAILQ_INSERT_TAIL(&w->finished, job, entry);
		pthread_cond_broadcast(&w->ended);
		if (!wake)
			continue;
		/*
		 * Not under the lock: the loop, woken, would preempt this
		 * (nicer) thread and wait for the lock until the busy CPUs
		 * let this one run again, milliseconds later.
		 */
		pthread_mutex_unlock(&w->lock);
		/* A full pipe already holds a wake-up: nothing is lost. */
		if (write(w->pipe[1], &byte, 1) == -1 && errno != EAGAIN)
			log_warn(NULL, "worker: cannot wake the loop");
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	/* Out of the array, this thread owns its struct now. */
	if (left)
		thread_free(self);
	return NULL;
}

/* On the loop: the completions of every job that finished. */
static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct worker_job *job;
	char buf[256];

	int n;

	while (read(fd, buf, sizeof(buf)) > 0)
		;
	tell_nice_refused();
	for (n = 0;; n++) {
		pthread_mutex_lock(&w->lock);
		job = TAILQ_FIRST(&w->finished);
		if (job != NULL && n < WORKER_DONE_PER_TURN) {
			TAILQ_REMOVE(&w->finished, job, entry);
			job->state = WORKER_IDLE;
			job->busy = false;
		}
		pthread_mutex_unlock(&w->lock);
		if (job == NULL)
			break;
		if (n == WORKER_DONE_PER_TURN) {
			/* The rest after the loop's other events. */
			event_active(w->wake, EV_READ, 0);
			break;
		}
		/* May free the job's owner, or submit the job again. */
		job->done(job);
	}
}

/* Arms the check for held threads in SECS, unless armed. */
static void
watch_held(struct worker *w, double secs)
{
	struct timeval tv = {.tv_sec = (time_t)secs,
	    .tv_usec = (suseconds_t)((secs - (double)(time_t)secs) * 1e6)};

	if (w->nthreads < w->max && !evtimer_pending(w->grow, NULL))
		evtimer_add(w->grow, &tv);
}

/*
 * On the loop, while jobs wait for a thread: a thread more for each held
 * one, so that at least BASE serve the queue. Looks again when the next
 * running job will have been blocked long enough to count as held.
 */
static void
grow_cb(evutil_socket_t fd, short what, void *arg)
{
	const double held_secs = WORKER_HELD_MS / 1000.0;
	struct worker *w = arg;
	double now = monotime(), next = held_secs, blocked;
	unsigned i, held, started = 0, before = w->nthreads;
	struct worker_thread *t;
	bool waiting;

	pthread_mutex_lock(&w->lock);
	for (i = 0; i < w->nthreads; i++) {
		t = w->threads[i];
		if (t->since == 0 || t->held)
			continue;
		if ((blocked = blocked_secs(t, now)) >= held_secs) {
			t->held = true;
			w->held++;
		} else if (held_secs - blocked < next)
			next = held_secs - blocked;
	}
	held = w->held;
	while (w->nqueued > w->idle + started && w->nthreads - held < w->base &&
	       w->nthreads < w->max && start_thread(w, NULL) == 0)
		started++;
	waiting = w->nqueued > w->idle + started;
	pthread_mutex_unlock(&w->lock);
	if (started > 0)
		log_info(NULL,
		    "disk work waits while %u of %u threads are held by a slow or hung disk (over %d ms); %u more started",
		    held, before, WORKER_HELD_MS, started);
	if (waiting)
		watch_held(w, next > 0.001 ? next : 0.001);
}

void
worker_submit(struct worker *w, struct worker_job *job)
{
	bool none_idle;

	job->busy = true;
	job->disowned = false;
	pthread_mutex_lock(&w->lock);
	job->state = WORKER_QUEUED;
	TAILQ_INSERT_TAIL(&w->queue, job, entry);
	w->nqueued++;
	/*
	 * A thread woken for an earlier job still counts as idle until it
	 * runs: what counts is whether the queue outnumbers the idle.
	 */
	none_idle = w->nqueued > w->idle;
	pthread_mutex_unlock(&w->lock);
	sem_post(&w->work);
	if (none_idle)
		watch_held(w, 0);
}

unsigned
worker_threads(struct worker *w)
{
	unsigned n;

	pthread_mutex_lock(&w->lock);
	n = w->nthreads;
	pthread_mutex_unlock(&w->lock);
	return n;
}

bool
worker_busy(const struct worker_job *job)
{
	return job->busy;
}

void
worker_wait(struct worker *w, struct worker_job *job)
{
	pthread_mutex_lock(&w->lock);
	while (job->state == WORKER_RUNNING)
		pthread_cond_wait(&w->ended, &w->lock);
	if (job->state == WORKER_QUEUED) {
		TAILQ_REMOVE(&w->queue, job, entry);
		w->nqueued--;
	} else if (job->state == WORKER_FINISHED)
		TAILQ_REMOVE(&w->finished, job, entry);
	job->state = WORKER_IDLE;
	job->busy = false;
	pthread_mutex_unlock(&w->lock);
}

bool
worker_await(struct worker *w, const struct worker_job *job, double secs)
{
	struct timespec until;
	bool running;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += (time_t)secs;
	until.tv_nsec += (long)((secs - (double)(time_t)secs) * 1e9);
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&w->lock);
	while (job->state == WORKER_RUNNING &&
	       pthread_cond_timedwait(&w->ended, &w->lock, &until) != ETIMEDOUT)
		;
	running = job->state == WORKER_RUNNING;
	pthread_mutex_unlock(&w->lock);
	return !running;
}

bool
worker_cancel(struct worker *w, struct worker_job *job)
{
	bool running;

	pthread_mutex_lock(&w->lock);
	running = job->state == WORKER_RUNNING;
	if (running)
		job->disowned = true;
	else if (job->state == WORKER_QUEUED) {
		TAILQ_REMOVE(&w->queue, job, entry);
		w->nqueued--;
	} else if (job->state == WORKER_FINISHED)
		TAILQ_REMOVE(&w->finished, job, entry);
	if (!running)
		job->state = WORKER_IDLE;
	job->busy = false;
	pthread_mutex_unlock(&w->lock);
	return !running;
}
