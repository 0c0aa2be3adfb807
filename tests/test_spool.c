/*
 * Tests of daemon/spool.c, with a real worker and a real Maildir: what a
 * session queues is written off the loop, joins the batch only when its
 * job has run, stops the reading when a slow disk lets it pile up, and
 * a message that fails or is dropped on its way leaves nothing behind.
 */
#include <sys/stat.h>

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "deliver.h"
#include "spool.h"
#include "worker.h"
#include "check_main.h"
#include "check_util.h"

/* Long enough for a loaded machine, short enough to fail fast. */
#define AWAIT_SECS 10

static char tmpdir[1024], mdpath[2048], statedir[2048];
static struct event_base *base;
static struct worker *w;
static struct deliver *d;
static struct spool *sp;

/* What the spool told. */
static int nran, nfailed;
static unsigned long failed_tag;
static uint64_t failed_sent;
static int failed_err;
/*
 * What the first ran() saw: spool_full(), and spool_busy() (the next job
 * submitted). Seen there, as the next job may have run too by the time
 * the loop returns.
 */
static bool full_in_ran, busy_in_ran;

static void
failed(void *arg, unsigned long tag, uint64_t sent, int err)
{
	nfailed++;
	failed_tag = tag;
	failed_sent = sent;
	failed_err = err;
}

static void
ran(void *arg)
{
	if (nran++ > 0)
		return;
	full_in_ran = spool_full(sp);
	busy_in_ran = spool_busy(sp);
}

/* A job that holds the worker's only thread until the gate opens. */
static struct {
	struct worker_job job;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool arrived, open;
	int dones;
} gate = {.lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};

static void
gate_run(struct worker_job *job)
{
	pthread_mutex_lock(&gate.lock);
	gate.arrived = true;
	pthread_cond_broadcast(&gate.cond);
	while (!gate.open)
		pthread_cond_wait(&gate.cond, &gate.lock);
	pthread_mutex_unlock(&gate.lock);
}

static void
gate_done(struct worker_job *job)
{
	gate.dones++;
}

/* The worker's thread is held from now until gate_release(). */
static void
gate_hold(void)
{
	gate.arrived = gate.open = false;
	gate.dones = 0;
	gate.job.run = gate_run;
	gate.job.done = gate_done;
	worker_submit(w, &gate.job);
	pthread_mutex_lock(&gate.lock);
	while (!gate.arrived)
		pthread_cond_wait(&gate.cond, &gate.lock);
	pthread_mutex_unlock(&gate.lock);
}

static void
gate_release(void)
{
	pthread_mutex_lock(&gate.lock);
	gate.open = true;
	pthread_cond_broadcast(&gate.cond);
	pthread_mutex_unlock(&gate.lock);
}

static bool timed_out;

static void
guard_cb(evutil_socket_t fd, short what, void *arg)
{
	timed_out = true;
}

/* Runs the loop until ran() was called WANT times in all. */
static void
await_ran(int want)
{
	struct timeval tv = {AWAIT_SECS, 0};
	struct event *guard = evtimer_new(base, guard_cb, NULL);

	ck_assert_ptr_nonnull(guard);
	timed_out = false;
	evtimer_add(guard, &tv);
	while (nran < want && !timed_out)
		ck_assert_int_ne(event_base_loop(base, EVLOOP_ONCE), -1);
	event_free(guard);
	ck_assert_msg(
	    !timed_out, "waited %d s for ran() #%d", AWAIT_SECS, want);
}

static void
setup(void)
{
	struct deliver_where where = {.maildir = mdpath,
	    .state_dir = statedir,
	    .account = "work",
	    .host = "pop.example.com",
	    .port = 995,
	    .user = "alice"};
	struct spool_cbs cbs = {failed, ran, NULL};
	char err[512];

	check_tmpdir(tmpdir, sizeof(tmpdir), "test_spool");
	snprintf(mdpath, sizeof(mdpath), "%s/Maildir", tmpdir);
	snprintf(statedir, sizeof(statedir), "%s/state", tmpdir);
	ck_assert_ptr_nonnull(base = event_base_new());
	/* One thread: a held job holds every later one. */
	ck_assert_ptr_nonnull(w = worker_new(base, 1, "test-worker"));
	d = deliver_open(&where, err, sizeof(err));
	ck_assert_msg(d != NULL, "deliver_open: %s", err);
	ck_assert_int_eq(deliver_recover(d, err, sizeof(err)), 0);
	ck_assert_ptr_nonnull(sp = spool_new(d, w, &cbs));
	nran = nfailed = 0;
	full_in_ran = busy_in_ran = false;
	failed_tag = 0;
	failed_err = 0;
}

static void
teardown(void)
{
	ck_assert(!spool_busy(sp));
	spool_free(&sp);
	ck_assert_ptr_null(sp);
	deliver_free(&d);
	worker_free(&w);
	event_base_free(base);
	check_rm_rf(tmpdir);
}

static void
durable(void *arg, unsigned long tag)
{
}

/* Queues message TAG whole: begin, TEXT in two pieces, end. */
static void
queue_msg(unsigned long tag, const char *uid, const char *text)
{
	size_t len = strlen(text), half = len / 2;

	ck_assert_int_eq(spool_begin(sp, tag, uid, len), 0);
	ck_assert_int_eq(spool_write(sp, text, half), 0);
	ck_assert_int_eq(spool_write(sp, text + half, len - half), 0);
	ck_assert_int_eq(spool_end(sp, tag, len), 0);
}

/* The only file in SUB holds WANT. */
static void
check_only_file(const char *sub, const char *want)
{
	char path[4096];
	size_t len;
	char *got;
	struct dirent *de;
	DIR *dir;

	snprintf(path, sizeof(path), "%s/%s", mdpath, sub);
	ck_assert_int_eq(check_count_entries(mdpath, sub), 1);
	ck_assert_ptr_nonnull(dir = opendir(path));
	while ((de = readdir(dir)) != NULL && de->d_name[0] == '.')
		;
	ck_assert_ptr_nonnull(de);
	snprintf(path, sizeof(path), "%s/%s/%s", mdpath, sub, de->d_name);
	closedir(dir);
	got = check_read_file(path, &len);
	ck_assert_uint_eq(len, strlen(want));
	ck_assert(memcmp(got, want, len) == 0);
	free(got);
}

/*
 * Nothing is written on the loop: the files appear, and the messages
 * join the batch, only once the job has run; then the batch holds them
 * in the order ended, converted to LF.
 */
START_TEST(written_by_the_job_then_in_the_batch)
{
	char err[512];

	gate_hold();
	queue_msg(1, "uid-1", "Subject: one\r\n\r\nfirst\r\n");
	queue_msg(2, NULL, "Subject: two\r\n\r\nsecond\r\n");
	spool_kick(sp);
	ck_assert(spool_busy(sp));
	ck_assert(!spool_idle(sp));
	ck_assert_uint_eq(deliver_pending(d), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	gate_release();
	await_ran(1);
	ck_assert(spool_idle(sp));
	ck_assert_int_eq(nfailed, 0);
	ck_assert_uint_eq(deliver_pending(d), 2);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 2);
	/* Made durable as any batch: into new/, the UID recorded. */
	ck_assert_int_eq(deliver_flush(d, durable, NULL, err, sizeof(err)), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 2);
	ck_assert(deliver_known(d, "uid-1", NULL, NULL));
}
END_TEST

/*
 * A disk slower than the server: behind a held job, the spool fills to
 * its bound and says so, and has room again once the job ran.
 */
START_TEST(full_behind_a_held_job_until_it_ran)
{
	static char chunk[16 * 1024];
	int i;

	memset(chunk, 'x', sizeof(chunk));
	gate_hold();
	ck_assert_int_eq(spool_begin(sp, 1, "uid-1", 0), 0);
	ck_assert_int_eq(spool_write(sp, chunk, sizeof(chunk)), 0);
	spool_kick(sp);
	ck_assert(spool_busy(sp));
	for (i = 0; i < 1000 && !spool_full(sp); i++)
		ck_assert_int_eq(spool_write(sp, chunk, sizeof(chunk)), 0);
	ck_assert(spool_full(sp));
	/* Bounded: full well before a thousand chunks (16 MiB). */
	ck_assert_int_lt(i, 64);
	gate_release();
	/* The first job ran: what waited goes next, with room meanwhile. */
	await_ran(1);
	ck_assert(!full_in_ran);
	ck_assert(busy_in_ran);
	ck_assert_int_eq(spool_end(sp, 1, 0), 0);
	spool_kick(sp);
	await_ran(2);
	if (!spool_idle(sp))
		await_ran(3);
	ck_assert_int_eq(nfailed, 0);
	ck_assert_uint_eq(deliver_pending(d), 1);
	ck_assert_uint_eq(deliver_pending_bytes(d), (i + 1) * sizeof(chunk));
}
END_TEST

/*
 * The message ended last is dropped while still on its way (a protocol
 * error right after its end): it never joins the batch, its file goes,
 * and the session is not told of a failure.
 */
START_TEST(dropped_on_its_way)
{
	gate_hold();
	queue_msg(1, "uid-1", "one\r\n");
	queue_msg(2, "uid-2", "two\r\n");
	spool_kick(sp);
	ck_assert_int_eq(spool_drop(sp, 2), 0);
	/* Only the last ended can be on its way. */
	ck_assert_int_eq(spool_drop(sp, 1), -1);
	ck_assert_int_eq(errno, ENOENT);
	gate_release();
	await_ran(1);
	/*
	 * The file goes with the next job, which the first one's end
	 * started (seen in ran(): it may have run within the same turn).
	 */
	ck_assert(busy_in_ran);
	await_ran(2);
	ck_assert(spool_idle(sp));
	ck_assert_int_eq(nfailed, 0);
	ck_assert_uint_eq(deliver_pending(d), 1);
	check_only_file("tmp", "one\n");
	/* Once in the batch, a drop takes it out there. */
	ck_assert_int_eq(spool_drop(sp, 1), 0);
	ck_assert_uint_eq(deliver_pending(d), 0);
	spool_kick(sp);
	await_ran(3);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
}
END_TEST

/*
 * The disk refuses a message (tmp/ gone: an unmounted file system): the
 * session is told which, with the bytes it counted and why; nothing of
 * it is in the batch, and the next message, once tmp/ is back, is.
 */
START_TEST(a_failed_message_is_told)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/tmp", mdpath);
	ck_assert_int_eq(rmdir(path), 0);
	queue_msg(7, "uid-7", "seven\r\n");
	spool_kick(sp);
	await_ran(1);
	ck_assert_int_eq(nfailed, 1);
	ck_assert_uint_eq(failed_tag, 7);
	ck_assert_uint_eq(failed_sent, strlen("seven\r\n"));
	ck_assert_int_eq(failed_err, ENOENT);
	ck_assert_uint_eq(deliver_pending(d), 0);
}
END_TEST

/*
 * The end of a session: spool_final() runs what is queued (here on the
 * test's thread, as on a worker's), gives up the message in hand, and
 * puts the ended ones in the batch; the report tells the failures.
 */
START_TEST(final_runs_what_is_queued)
{
	queue_msg(1, "uid-1", "one\r\n");
	ck_assert_int_eq(spool_begin(sp, 2, "uid-2", 10), 0);
	ck_assert_int_eq(spool_write(sp, "half", 4), 0);
	spool_abort(sp);
	ck_assert_int_eq(spool_begin(sp, 3, "uid-3", 10), 0);
	ck_assert_int_eq(spool_write(sp, "cut short", 9), 0);
	ck_assert(!spool_busy(sp));
	spool_final(sp);
	spool_final_report(sp);
	ck_assert(spool_idle(sp));
	ck_assert_int_eq(nfailed, 0);
	ck_assert_uint_eq(deliver_pending(d), 1);
	check_only_file("tmp", "one\n");
}
END_TEST

/*
 * After a failed flush: the batch's files go with the next job, and so
 * do those of messages ended afterwards.
 */
START_TEST(discard_removes_off_the_loop)
{
	queue_msg(1, "uid-1", "one\r\n");
	queue_msg(2, "uid-2", "two\r\n");
	spool_kick(sp);
	await_ran(1);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 2);
	gate_hold();
	spool_discard(sp);
	ck_assert_uint_eq(deliver_pending(d), 0);
	spool_kick(sp);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 2);
	gate_release();
	await_ran(2);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	/* Nothing joins the batch after that: it would be made durable. */
	queue_msg(3, "uid-3", "three\r\n");
	spool_kick(sp);
	await_ran(3);
	ck_assert_uint_eq(deliver_pending(d), 0);
	spool_kick(sp);
	await_ran(4);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	ck_assert_int_eq(nfailed, 0);
}
END_TEST

static Suite *
spool_suite(void)
{
	Suite *s = suite_create("spool");
	TCase *tc = tcase_create("spool");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, written_by_the_job_then_in_the_batch);
	tcase_add_test(tc, full_behind_a_held_job_until_it_ran);
	tcase_add_test(tc, dropped_on_its_way);
	tcase_add_test(tc, a_failed_message_is_told);
	tcase_add_test(tc, final_runs_what_is_queued);
	tcase_add_test(tc, discard_removes_off_the_loop);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_main(spool_suite());
}
