/*
 * Tests of daemon/worker.c on a real loop: where run() and done() are
 * called, in what order, how often; what worker_busy() says at each
 * stage; worker_wait() on a queued, a running and a finished job;
 * worker_cancel() on a queued, a running and an idle one; that
 * completions let the loop's other events in; and freeing a worker
 * whose queued jobs were taken back; a thread more when all are held
 * (blocked, not busy on a CPU), and it leaves once they are not.
 * Jobs that must stay put wait on a gate the test opens; the loop runs
 * until the awaited completion, with a timer that fails the test if it
 * never comes.
 */
#include <sys/prctl.h>
#include <sys/types.h>

#include <check.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "nicer.h"
#include "worker.h"
#include "check_main.h"

/* Long enough for a loaded machine, short enough to fail fast. */
#define AWAIT_SECS 5

/* Where a job stops inside run() until the test lets it go on. */
struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool open;
	int arrived; /* jobs that reached the gate */
};

struct tjob {
	struct worker_job job;
	int id;
	struct gate *gate; /* NULL: run() does not stop */
	/* Written by run() on a worker thread. */
	int runs;
	bool run_ended;
	pthread_t run_thread;
	char run_name[16]; /* the thread's, for ps -L */
	/* Written by done() on the loop thread. */
	int dones;
	bool busy_in_done;
	bool ran_before_done;
	pthread_t done_thread;
	int resubmit; /* done() submits the job again this many times */
	bool free_in_done;
};

/* What the tests' workers name their threads. */
#define THREADS_NAME "test-worker"

static struct event_base *base;
static struct worker *w;
static pthread_t loop_thread;
static bool timed_out;

/* Completion order as the loop saw it; run order as the thread saw it. */
static int done_order[4096], run_order[4096];
static int ndone, nrun;
static pthread_mutex_t run_lock = PTHREAD_MUTEX_INITIALIZER;

static struct tjob *
tjob_of(struct worker_job *job)
{
	return (
	    struct tjob *)(void *)((char *)job - offsetof(struct tjob, job));
}

static void
gate_init(struct gate *g)
{
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	g->open = false;
	g->arrived = 0;
}

static void
gate_open(struct gate *g)
{
	pthread_mutex_lock(&g->lock);
	g->open = true;
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
}

/* Blocks until N jobs reached the gate. */
static void
gate_await(struct gate *g, int n)
{
	pthread_mutex_lock(&g->lock);
	while (g->arrived < n)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
}

static void
job_run(struct worker_job *job)
{
	struct tjob *t = tjob_of(job);

	t->run_thread = pthread_self();
	(void)prctl(PR_GET_NAME, t->run_name, 0, 0, 0);
	t->runs++;
	pthread_mutex_lock(&run_lock);
	if (nrun < (int)(sizeof(run_order) / sizeof(run_order[0])))
		run_order[nrun++] = t->id;
	pthread_mutex_unlock(&run_lock);
	if (t->gate != NULL) {
		pthread_mutex_lock(&t->gate->lock);
		t->gate->arrived++;
		pthread_cond_broadcast(&t->gate->cond);
		while (!t->gate->open)
			pthread_cond_wait(&t->gate->cond, &t->gate->lock);
		pthread_mutex_unlock(&t->gate->lock);
	}
	t->run_ended = true;
}

static void
job_done(struct worker_job *job)
{
	struct tjob *t = tjob_of(job);

	t->done_thread = pthread_self();
	t->dones++;
	t->busy_in_done = worker_busy(job);
	t->ran_before_done = t->run_ended;
	if (ndone < (int)(sizeof(done_order) / sizeof(done_order[0])))
		done_order[ndone++] = t->id;
	if (t->resubmit > 0) {
		t->resubmit--;
		t->run_ended = false;
		worker_submit(w, job);
	} else if (t->free_in_done)
		free(t);
}

static void
tjob_init(struct tjob *t, int id, struct gate *g)
{
	memset(t, 0, sizeof(*t));
	t->id = id;
	t->gate = g;
	t->job.run = job_run;
	t->job.done = job_done;
}

static void
guard_cb(evutil_socket_t fd, short what, void *arg)
{
	timed_out = true;
}

/* Runs the loop until *COUNT reaches WANT; fails after AWAIT_SECS. */
static void
await_count(const int *count, int want)
{
	struct timeval tv = {AWAIT_SECS, 0};
	struct event *guard = evtimer_new(base, guard_cb, NULL);

	ck_assert_ptr_nonnull(guard);
	timed_out = false;
	evtimer_add(guard, &tv);
	while (*count < want && !timed_out)
		ck_assert_int_ne(event_base_loop(base, EVLOOP_ONCE), -1);
	event_free(guard);
	ck_assert_msg(!timed_out, "waited %d s for %d completions, saw %d",
	    AWAIT_SECS, want, *count);
}

static void
start(unsigned nthreads)
{
	ck_assert_ptr_nonnull(base = event_base_new());
	ck_assert_ptr_nonnull(w = worker_new(base, nthreads, THREADS_NAME));
	loop_thread = pthread_self();
	ndone = nrun = 0;
}

static void
teardown(void)
{
	worker_free(&w);
	ck_assert_ptr_null(w);
	if (base != NULL)
		event_base_free(base);
	base = NULL;
}

/* Runs N plain jobs on WORKER_THREADS threads, until all are done. */
static void
run_on_threads(struct tjob *jobs, int n)
{
	int i;

	start(WORKER_THREADS);
	for (i = 0; i < n; i++) {
		tjob_init(&jobs[i], i, NULL);
		worker_submit(w, &jobs[i].job);
	}
	await_count(&ndone, n);
}

START_TEST(runs_off_the_loop_completes_on_it_in_order)
{
	static struct tjob jobs[50];
	const int n = sizeof(jobs) / sizeof(jobs[0]);
	int i;

	/* One thread: the queue is first in, first out. */
	start(1);
	for (i = 0; i < n; i++) {
		tjob_init(&jobs[i], i, NULL);
		ck_assert(!worker_busy(&jobs[i].job));
		worker_submit(w, &jobs[i].job);
		ck_assert(worker_busy(&jobs[i].job));
	}
	/* Never from inside worker_submit(). */
	ck_assert_int_eq(ndone, 0);
	await_count(&ndone, n);
	for (i = 0; i < n; i++) {
		ck_assert_int_eq(done_order[i], i);
		ck_assert_int_eq(run_order[i], i);
		ck_assert_int_eq(jobs[i].runs, 1);
		ck_assert_int_eq(jobs[i].dones, 1);
		ck_assert(jobs[i].ran_before_done);
		ck_assert(!jobs[i].busy_in_done);
		ck_assert(!worker_busy(&jobs[i].job));
		ck_assert(!pthread_equal(jobs[i].run_thread, loop_thread));
		ck_assert(pthread_equal(jobs[i].done_thread, loop_thread));
	}
}
END_TEST

START_TEST(many_jobs_on_many_threads_complete_once_each)
{
	static struct tjob jobs[2000];
	const int n = sizeof(jobs) / sizeof(jobs[0]);
	int i;

	run_on_threads(jobs, n);
	ck_assert_int_eq(nrun, n);
	for (i = 0; i < n; i++) {
		ck_assert_int_eq(jobs[i].runs, 1);
		ck_assert_int_eq(jobs[i].dones, 1);
		ck_assert(jobs[i].ran_before_done);
		ck_assert(!pthread_equal(jobs[i].run_thread, loop_thread));
		ck_assert(pthread_equal(jobs[i].done_thread, loop_thread));
	}
	/* Nothing more comes: the loop has no completion left to call. */
	ck_assert_int_eq(event_base_loop(base, EVLOOP_NONBLOCK), 0);
	ck_assert_int_eq(ndone, n);
}
END_TEST

/* done() may submit its job again, and may free the job's owner. */
START_TEST(done_may_resubmit_then_free)
{
	struct tjob *t = malloc(sizeof(*t));

	start(2);
	ck_assert_ptr_nonnull(t);
	tjob_init(t, 7, NULL);
	t->resubmit = 5;
	t->free_in_done = true;
	worker_submit(w, &t->job);
	await_count(&ndone, 6);
	ck_assert_int_eq(nrun, 6);
	/* A seventh would read the freed job: ASan's part to catch. */
	ck_assert_int_eq(event_base_loop(base, EVLOOP_NONBLOCK), 0);
	ck_assert_int_eq(ndone, 6);
}
END_TEST

/* Busy from submission until its completion starts; then free again. */
START_TEST(busy_from_submit_until_done)
{
	struct tjob a, b;
	struct gate g;

	start(1);
	gate_init(&g);
	tjob_init(&a, 1, &g);
	tjob_init(&b, 2, NULL);
	worker_submit(w, &a.job);
	worker_submit(w, &b.job);
	gate_await(&g, 1);
	/* A is running, B queued behind it. */
	ck_assert(worker_busy(&a.job));
	ck_assert(worker_busy(&b.job));
	gate_open(&g);
	await_count(&ndone, 2);
	ck_assert(!a.busy_in_done);
	ck_assert(!b.busy_in_done);
	ck_assert(!worker_busy(&a.job));
	ck_assert(!worker_busy(&b.job));
}
END_TEST

/*
 * A worker of THREADS threads, each held at gate G by one of the first
 * THREADS of the N jobs in V (numbered from 1); the rest made, not
 * submitted.
 */
static void
hold_threads(unsigned threads, struct tjob *const *v, size_t n, struct gate *g)
{
	size_t i;

	start(threads);
	gate_init(g);
	for (i = 0; i < n; i++)
		tjob_init(v[i], (int)i + 1, i < threads ? g : NULL);
	for (i = 0; i < threads; i++)
		worker_submit(w, &v[i]->job);
	gate_await(g, threads);
}

/*
 * One thread, held by A at gate G; B queued behind it; C made ready, not
 * submitted.
 */
static void
one_held(struct tjob *a, struct tjob *b, struct tjob *c, struct gate *g)
{
	struct tjob *v[] = {a, b, c};

	hold_threads(1, v, 3, g);
	worker_submit(w, &b->job);
}

/* A queued job taken back is never run, and never completed. */
START_TEST(wait_takes_back_a_queued_job)
{
	struct tjob a, b, c;
	struct gate g;

	one_held(&a, &b, &c, &g);
	/* The only thread is held by A: B is still queued. */
	worker_wait(w, &b.job);
	ck_assert(!worker_busy(&b.job));
	ck_assert(worker_busy(&a.job));
	gate_open(&g);
	/* C behind: had B stayed in the queue it would have run before C. */
	worker_submit(w, &c.job);
	await_count(&c.dones, 1);
	ck_assert_int_eq(a.dones, 1);
	ck_assert_int_eq(b.runs, 0);
	ck_assert_int_eq(b.dones, 0);
	ck_assert_int_eq(nrun, 2);
}
END_TEST

/* A job that finished but was not completed: taken back, no done(). */
START_TEST(wait_takes_back_a_finished_job)
{
	struct tjob a, s;
	struct gate g;

	start(1);
	gate_init(&g);
	tjob_init(&a, 1, NULL);
	tjob_init(&s, 2, &g);
	worker_submit(w, &a.job);
	worker_submit(w, &s.job);
	/* The one thread took S: it had moved A to the finished list. */
	gate_await(&g, 1);
	ck_assert_int_eq(a.runs, 1);
	ck_assert_int_eq(a.dones, 0);
	worker_wait(w, &a.job);
	ck_assert(!worker_busy(&a.job));
	gate_open(&g);
	await_count(&s.dones, 1);
	ck_assert_int_eq(a.dones, 0);

	/* Idle again: it can be submitted, and completes normally. */
	worker_submit(w, &a.job);
	await_count(&a.dones, 1);
	ck_assert_int_eq(a.runs, 2);
}
END_TEST

/* The state letter of thread TID of this process, from /proc. */
static char
thread_state(pid_t tid)
{
	char path[64], buf[512], *p;
	FILE *fp;
	size_t n;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
	if ((fp = fopen(path, "r")) == NULL)
		return '?';
	n = fread(buf, 1, sizeof(buf) - 1, fp);
	fclose(fp);
	buf[n] = '\0';
	p = strrchr(buf, ')');
	return p != NULL && p[1] == ' ' ? p[2] : '?';
}

struct opener {
	struct gate *gate;
	pid_t waiter; /* the thread that calls worker_wait() */
};

/*
 * Opens the gate once the waiter sleeps (in worker_wait(), the only
 * place it can), so that the job is still running when the wait
 * begins. Gives up after AWAIT_SECS and opens it anyway: the test then
 * fails on what worker_wait() did.
 */
static void *
opener_main(void *arg)
{
	struct opener *o = arg;
	struct timespec t0, t;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		if (thread_state(o->waiter) == 'S')
			break;
		sched_yield();
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while (t.tv_sec - t0.tv_sec < AWAIT_SECS);
	gate_open(o->gate);
	return NULL;
}

/* One thread, running job A (number 1), held at gate G. */
static void
run_held(struct tjob *a, struct gate *g)
{
	start(1);
	gate_init(g);
	tjob_init(a, 1, g);
	worker_submit(w, &a->job);
	gate_await(g, 1);
}

/* A running job is waited for: run() has ended when worker_wait returns. */
START_TEST(wait_blocks_until_a_running_job_ends)
{
	struct tjob a, c;
	struct gate g;
	struct opener o = {.gate = &g, .waiter = gettid()};
	pthread_t opener;

	run_held(&a, &g);
	tjob_init(&c, 2, NULL);
	ck_assert_int_eq(pthread_create(&opener, NULL, opener_main, &o), 0);
	worker_wait(w, &a.job);
	ck_assert(a.run_ended);
	ck_assert(!worker_busy(&a.job));
	pthread_join(opener, NULL);
	worker_submit(w, &c.job);
	await_count(&c.dones, 1);
	ck_assert_int_eq(a.runs, 1);
	ck_assert_int_eq(a.dones, 0);
}
END_TEST

/*
 * worker_await() gives up on a job that goes on running, and returns
 * once one ends; either way the job stays the loop's, its done() to come.
 */
START_TEST(await_gives_up_or_sees_the_end)
{
	struct tjob a;
	struct gate g;
	struct opener o = {.gate = &g, .waiter = gettid()};
	pthread_t opener;

	run_held(&a, &g);
	ck_assert(!worker_await(w, &a.job, 0.05));
	ck_assert(!a.run_ended);
	ck_assert(worker_busy(&a.job));
	ck_assert_int_eq(pthread_create(&opener, NULL, opener_main, &o), 0);
	ck_assert(worker_await(w, &a.job, AWAIT_SECS));
	ck_assert(a.run_ended);
	pthread_join(opener, NULL);
	ck_assert(worker_busy(&a.job));
	ck_assert_int_eq(a.dones, 0);
	await_count(&a.dones, 1);
	/* Not running: no wait at all. */
	ck_assert(worker_await(w, &a.job, 0));
}
END_TEST

/*
 * worker_cancel() never blocks: a queued job is taken back (true); a
 * running one is disowned (false), and when its run() ends no done()
 * comes, while the thread goes on to the next job.
 */
START_TEST(cancel_takes_back_queued_disowns_running)
{
	struct tjob a, b, c;
	struct gate g;

	one_held(&a, &b, &c, &g);
	ck_assert(worker_cancel(w, &b.job));
	ck_assert(!worker_busy(&b.job));
	ck_assert(!worker_cancel(w, &a.job));
	ck_assert(!worker_busy(&a.job));
	ck_assert(!a.run_ended);
	gate_open(&g);
	worker_submit(w, &c.job);
	await_count(&c.dones, 1);
	ck_assert(a.run_ended);
	ck_assert_int_eq(a.dones, 0);
	ck_assert_int_eq(b.runs, 0);
	ck_assert_int_eq(b.dones, 0);
	/* An idle job cancels as taken back, and may be submitted again. */
	ck_assert(worker_cancel(w, &c.job));
	worker_submit(w, &a.job);
	await_count(&a.dones, 1);
	ck_assert_int_eq(a.runs, 2);
}
END_TEST

/*
 * Every thread held (a disk that stopped answering): a job that waits
 * for a thread gets a new one once they have been held for a moment
 * (WORKER_HELD_MS), and the held jobs still complete once they return.
 */
/*
 * Two threads, held by A and B at gate G; C, then D, submitted and
 * completed meanwhile.
 */
static void
two_held(struct tjob *a, struct tjob *b, struct tjob *c, struct tjob *d,
    struct gate *g)
{
	struct tjob *v[] = {a, b, c, d};

	hold_threads(2, v, 4, g);
	worker_submit(w, &c->job);
	await_count(&c->dones, 1);
	ck_assert(!a->run_ended && !b->run_ended);
	/* The new thread stays: the next job needs no wait. */
	worker_submit(w, &d->job);
	await_count(&d->dones, 1);
}

START_TEST(held_threads_do_not_hold_the_queue)
{
	struct tjob a, b, c, d;
	struct gate g;

	two_held(&a, &b, &c, &d, &g);
	ck_assert(!pthread_equal(c.run_thread, a.run_thread));
	ck_assert(!pthread_equal(c.run_thread, b.run_thread));
	gate_open(&g);
	await_count(&a.dones, 1);
	await_count(&b.dones, 1);
	ck_assert_int_eq(c.runs + d.runs + a.runs + b.runs, 4);
}
END_TEST

/* Runs the loop until W has WANT threads, or fails after AWAIT_SECS. */
static void
await_threads(unsigned want)
{
	struct timeval tick = {0, 10000}, tv = {AWAIT_SECS, 0};
	struct event *guard = evtimer_new(base, guard_cb, NULL);

	ck_assert_ptr_nonnull(guard);
	timed_out = false;
	evtimer_add(guard, &tv);
	/* A thread's leaving has no event: looked at every 10 ms. */
	while (worker_threads(w) != want && !timed_out) {
		ck_assert_int_eq(event_base_loopexit(base, &tick), 0);
		ck_assert_int_ne(event_base_dispatch(base), -1);
	}
	event_free(guard);
	ck_assert_msg(!timed_out, "waited %d s for %u threads, saw %u",
	    AWAIT_SECS, want, worker_threads(w));
}

/*
 * The threads started while the base's were held leave once those answer
 * again, and the base still serves: a thread more would only compete for
 * the disk and the CPU.
 */
START_TEST(extra_threads_leave_once_the_held_end)
{
	struct tjob a, b, c, d;
	struct gate g;

	two_held(&a, &b, &c, &d, &g);
	ck_assert_uint_ge(worker_threads(w), 3);
	gate_open(&g);
	await_count(&a.dones, 1);
	await_count(&b.dones, 1);
	await_threads(2);
	/* The base still serves. */
	worker_submit(w, &c.job);
	await_count(&c.dones, 2);
}
END_TEST

/* Jobs that spin until told: on a CPU, or waiting for one; never blocked. */
static atomic_bool spin_on;

static void
spin_run(struct worker_job *job)
{
	struct tjob *t = tjob_of(job);

	t->run_thread = pthread_self();
	t->runs++;
	while (atomic_load(&spin_on))
		;
	t->run_ended = true;
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(base);
}

/*
 * Threads busy on the CPU are not held: no thread starts for the job
 * queued behind them, however long they run, and it runs on one of them
 * once they end. (A thread more would only take the CPU they need.)
 */
START_TEST(busy_threads_are_not_held)
{
	struct timeval later = {0, 300000};
	struct tjob a, b, c;
	struct event *stop;

	start(2);
	tjob_init(&a, 1, NULL);
	tjob_init(&b, 2, NULL);
	tjob_init(&c, 3, NULL);
	a.job.run = b.job.run = spin_run;
	atomic_store(&spin_on, true);
	worker_submit(w, &a.job);
	worker_submit(w, &b.job);
	worker_submit(w, &c.job);
	/* Six times the time that makes a blocked thread held. */
	ck_assert_ptr_nonnull(stop = evtimer_new(base, stop_cb, NULL));
	evtimer_add(stop, &later);
	ck_assert_int_ne(event_base_dispatch(base), -1);
	event_free(stop);
	ck_assert_int_eq(a.runs + b.runs, 2);
	ck_assert_int_eq(c.runs, 0);
	ck_assert_uint_eq(worker_threads(w), 2);
	atomic_store(&spin_on, false);
	await_count(&a.dones, 1);
	await_count(&b.dones, 1);
	await_count(&c.dones, 1);
	ck_assert(pthread_equal(c.run_thread, a.run_thread) ||
		  pthread_equal(c.run_thread, b.run_thread));
}
END_TEST

/*
 * Freeing: the header asks that every job be waited for or completed
 * first. Queued jobs taken back are then never run by the stopping
 * threads, and no completion is called.
 */
START_TEST(free_after_taking_back_queued_jobs)
{
	struct tjob a, q[5];
	struct gate g;
	int i;

	start(1);
	gate_init(&g);
	tjob_init(&a, 100, &g);
	worker_submit(w, &a.job);
	for (i = 0; i < 5; i++) {
		tjob_init(&q[i], i, NULL);
		worker_submit(w, &q[i].job);
	}
	gate_await(&g, 1);
	for (i = 0; i < 5; i++)
		worker_wait(w, &q[i].job);
	gate_open(&g);
	await_count(&a.dones, 1);
	worker_free(&w);
	ck_assert_ptr_null(w);
	for (i = 0; i < 5; i++) {
		ck_assert_int_eq(q[i].runs, 0);
		ck_assert_int_eq(q[i].dones, 0);
		ck_assert(!worker_busy(&q[i].job));
	}
	ck_assert_int_eq(nrun, 1);
	/* Its wake-up event went with it: the loop has nothing left. */
	ck_assert_int_eq(event_base_loop(base, EVLOOP_NONBLOCK), 1);
	/* A second free of the emptied pointer is harmless. */
	worker_free(&w);
}
END_TEST

static int seen_by_other; /* completions before the other event ran */
static bool other_ran;

static void
other_cb(evutil_socket_t fd, short what, void *arg)
{
	other_ran = true;
	seen_by_other = ndone;
}

static struct event *other;

static void
done_then_other(struct worker_job *job)
{
	job_done(job);
	if (ndone == 1)
		event_active(other, EV_TIMEOUT, 0);
}

/*
 * Many completions ready at once do not hold the loop: an event that
 * became active during the first one runs before the last one.
 */
START_TEST(completions_let_other_events_in)
{
	static struct tjob jobs[12];
	const int n = sizeof(jobs) / sizeof(jobs[0]);
	struct tjob s;
	struct gate g;
	int i;

	start(1);
	ck_assert_ptr_nonnull(other = event_new(base, -1, 0, other_cb, NULL));
	gate_init(&g);
	for (i = 0; i < n; i++) {
		tjob_init(&jobs[i], i, NULL);
		jobs[i].job.done = done_then_other;
		worker_submit(w, &jobs[i].job);
	}
	tjob_init(&s, n, &g);
	worker_submit(w, &s.job);
	/* S holds the only thread: all twelve wait for their done(). */
	gate_await(&g, 1);
	gate_open(&g);
	await_count(&ndone, n + 1);
	for (i = 0; i < n + 1; i++)
		ck_assert_int_eq(done_order[i], i);
	ck_assert(other_ran);
	ck_assert_int_ge(seen_by_other, 1);
	ck_assert_int_lt(seen_by_other, n);
	event_free(other);
}
END_TEST

START_TEST(threads_carry_the_workers_name)
{
	static struct tjob jobs[WORKER_THREADS * 4];
	const int n = sizeof(jobs) / sizeof(jobs[0]);
	char loop_name[16] = "";
	int i;

	run_on_threads(jobs, n);
	for (i = 0; i < n; i++)
		ck_assert_str_eq(jobs[i].run_name, THREADS_NAME);
	/* The loop keeps its own. */
	ck_assert_int_eq(prctl(PR_GET_NAME, loop_name, 0, 0, 0), 0);
	ck_assert_str_ne(loop_name, THREADS_NAME);
}
END_TEST

/*
 * TID's name and nice value from /proc (the process's own threads);
 * false if it is gone.
 */
static bool
task_name_nice(const char *tid, char *name, size_t size, int *nice)
{
	char path[64], line[512], *open, *close, *p;
	FILE *f;
	int field;

	snprintf(path, sizeof(path), "/proc/self/task/%s/stat", tid);
	if ((f = fopen(path, "r")) == NULL)
		return false;
	p = fgets(line, sizeof(line), f);
	fclose(f);
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_nonnull(open = strchr(line, '('));
	ck_assert_ptr_nonnull(close = strrchr(line, ')'));
	snprintf(name, size, "%.*s", (int)(close - open - 1), open + 1);
	/* P at the space before field 3 (the state); the nice value is 19. */
	p = close + 1;
	for (field = 3; field < 19 && p != NULL; field++)
		p = strchr(p + 1, ' ');
	ck_assert_ptr_nonnull(p);
	*nice = atoi(p + 1);
	return true;
}

/*
 * Once worker_new() returned, every thread is named and nicer: someone
 * looking at the process (ps -L, top -H) never sees one as the loop's
 * copy, in its first instants.
 */
START_TEST(named_and_nicer_once_new_returns)
{
	char self[16], name[32];
	int own, nice, helpers = 0;
	struct dirent *e;
	DIR *d;

	snprintf(self, sizeof(self), "%d", (int)gettid());
	ck_assert(task_name_nice(self, name, sizeof(name), &own));
	start(WORKER_THREADS);
	ck_assert_ptr_nonnull(d = opendir("/proc/self/task"));
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || strcmp(e->d_name, self) == 0 ||
		    !task_name_nice(e->d_name, name, sizeof(name), &nice))
			continue;
		ck_assert_str_eq(name, THREADS_NAME);
		ck_assert_int_eq(
		    nice, own + NICER_BY > 19 ? 19 : own + NICER_BY);
		helpers++;
	}
	closedir(d);
	ck_assert_int_eq(helpers, WORKER_THREADS);
}
END_TEST

START_TEST(new_and_free_without_jobs)
{
	start(WORKER_THREADS);
	worker_free(&w);
	ck_assert_ptr_null(w);
	ck_assert_ptr_nonnull(w = worker_new(base, 1, THREADS_NAME));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("worker");
	TCase *tc;

	tc = tcase_create("completions");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, runs_off_the_loop_completes_on_it_in_order);
	tcase_add_test(tc, many_jobs_on_many_threads_complete_once_each);
	tcase_add_test(tc, done_may_resubmit_then_free);
	tcase_add_test(tc, busy_from_submit_until_done);
	tcase_add_test(tc, completions_let_other_events_in);
	tcase_add_test(tc, threads_carry_the_workers_name);
	tcase_add_test(tc, named_and_nicer_once_new_returns);
	suite_add_tcase(s, tc);

	tc = tcase_create("wait_and_free");
	tcase_add_checked_fixture(tc, NULL, teardown);
	tcase_add_test(tc, wait_takes_back_a_queued_job);
	tcase_add_test(tc, wait_takes_back_a_finished_job);
	tcase_add_test(tc, wait_blocks_until_a_running_job_ends);
	tcase_add_test(tc, await_gives_up_or_sees_the_end);
	tcase_add_test(tc, free_after_taking_back_queued_jobs);
	tcase_add_test(tc, cancel_takes_back_queued_disowns_running);
	tcase_add_test(tc, held_threads_do_not_hold_the_queue);
	tcase_add_test(tc, extra_threads_leave_once_the_held_end);
	tcase_add_test(tc, busy_threads_are_not_held);
	tcase_add_test(tc, new_and_free_without_jobs);
	suite_add_tcase(s, tc);

	return check_main(s);
}
