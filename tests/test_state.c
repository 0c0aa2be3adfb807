/*
 * Tests of daemon/state.c: the journal round trip, repairs on load (torn
 * last record, malformed records, foreign or unreadable headers), the
 * lock, compaction, failed commits retried, and scale; and the pending
 * (intent) records of a delivery: round trip, completion, compaction,
 * torn and malformed ones, failed commits; and the strikes (failed
 * deliveries): counting, ending, pruning, compaction, malformed ones;
 * the mailbox a state belongs to (host case, ports, headers without a
 * port adopted); and the listed sizes kept with delivered UIDs.
 */
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "state.h"
#include "check_main.h"
#include "check_util.h"

#define HOST   "pop.example.com"
#define USER   "alice"
#define ACCT   "work"
#define HEADER "popfetchd-state 1 " HOST " " USER "\n"

static char tmpdir[1024];
static char statedir[2048];
static char statefile[3072];

static void setup(void);
static void teardown(void);
static void spew(const char *path, const char *data);
static int count_lines(const char *path);
static bool exists(const char *suffix);
static struct state *open_ok(void);
static unsigned long commit_syncs(struct state *st);
static void assert_statefile(const char *want);
static Suite *state_suite(void);

static void
setup(void)
{
	check_tmpdir(tmpdir, sizeof(tmpdir), "test_state");
	snprintf(statedir, sizeof(statedir), "%s/var/state", tmpdir);
	snprintf(statefile, sizeof(statefile), "%s/" ACCT ".state", statedir);
}

static void
teardown(void)
{
	check_rm_rf(tmpdir);
}

/* PATH holds the string DATA, mode 0600. */
static void
spew(const char *path, const char *data)
{
	check_write_file(path, data, strlen(data), 0600);
}

static int
count_lines(const char *path)
{
	char *data = check_read_file(path, NULL), *p;
	int n = 0;

	for (p = data; (p = strchr(p, '\n')) != NULL; p++)
		n++;
	free(data);
	return n;
}

/* Whether statedir/ACCT<SUFFIX> exists. */
static bool
exists(const char *suffix)
{
	char path[PATH_MAX];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/%s%s", statedir, ACCT, suffix);
	return stat(path, &sb) == 0;
}

static struct state *
open_ok(void)
{
	char errbuf[512];
	struct state *st;

	st = state_open(statedir, ACCT, HOST, USER, errbuf, sizeof(errbuf));
	if (st == NULL)
		ck_abort_msg("state_open: %s", errbuf);
	return st;
}

struct collect {
	int n;
	long long sum;
};

static void
collect_fn(void *arg, const char *uid, time_t first_seen)
{
	struct collect *c = arg;

	c->n++;
	c->sum += first_seen + (long long)strlen(uid);
}

/*
 * Records N filler UIDs, "u0" to "u<N-1>" (with sizes if SIZED), first
 * seen at their number: with forget_filler(), the dead records that make
 * a commit compact the file.
 */
static void
record_filler(struct state *st, int n, bool sized)
{
	char uid[32];
	int i;

	for (i = 0; i < n; i++) {
		snprintf(uid, sizeof(uid), "u%d", i);
		ck_assert_int_eq(
		    sized ? state_record_size(st, uid, i, (uint64_t)i)
			  : state_record(st, uid, i),
		    0);
	}
}

/* Forgets the N filler UIDs of record_filler(). */
static void
forget_filler(struct state *st, int n)
{
	char uid[32];
	int i;

	for (i = 0; i < n; i++) {
		snprintf(uid, sizeof(uid), "u%d", i);
		ck_assert_int_eq(state_forget(st, uid), 0);
	}
}

START_TEST(test_round_trip)
{
	struct collect c = {0};
	struct state *st = open_ok();
	struct stat sb;
	time_t t = 0;
	char *data;

	/* The directory was created, parents too, private. */
	ck_assert_int_eq(stat(statedir, &sb), 0);
	ck_assert_int_eq(sb.st_mode & 0777, 0700);
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert_uint_eq(state_count(st), 0);
	ck_assert_int_eq(state_record(st, "uid-1", 1000), 0);
	ck_assert_int_eq(state_record(st, "uid-2", 2000), 0);
	ck_assert_int_eq(state_record(st, "uid-3", 3000), 0);
	/* Again: a no-op that keeps the first time. */
	ck_assert_int_eq(state_record(st, "uid-1", 9999), 0);
	ck_assert(state_has(st, "uid-1", &t));
	ck_assert_int_eq(t, 1000);
	ck_assert_int_eq(state_commit(st), 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	ck_assert_ptr_null(st);

	data = check_read_file(statefile, NULL);
	ck_assert_str_eq(
	    data, HEADER "+ 1000 uid-1\n+ 2000 uid-2\n+ 3000 uid-3\n");
	free(data);

	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert_uint_eq(state_count(st), 3);
	ck_assert(state_has(st, "uid-2", &t));
	ck_assert_int_eq(t, 2000);
	ck_assert(state_has(st, "uid-3", NULL));
	ck_assert(!state_has(st, "uid-4", NULL));
	state_foreach(st, collect_fn, &c);
	ck_assert_int_eq(c.n, 3);
	ck_assert_int_eq(c.sum, 6000 + 15);
	state_close(&st);
}
END_TEST

START_TEST(test_uncommitted_lost)
{
	struct state *st = open_ok();

	ck_assert_int_eq(state_record(st, "kept", 1), 0);
	ck_assert_int_eq(state_commit(st), 0);
	ck_assert_int_eq(state_record(st, "lost", 2), 0);
	ck_assert_int_eq(state_forget(st, "kept"), 0);
	state_close(&st);
	st = open_ok();
	ck_assert(state_has(st, "kept", NULL));
	ck_assert(!state_has(st, "lost", NULL));
	state_close(&st);
}
END_TEST

START_TEST(test_torn_last_record)
{
	struct state *st = open_ok();
	size_t len, goodlen;
	char *data;
	int fd;

	ck_assert_int_eq(state_record(st, "a", 1), 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	free(check_read_file(statefile, &goodlen));
	/* A crash in the middle of the next append. */
	ck_assert_int_ne(fd = open(statefile, O_WRONLY | O_APPEND), -1);
	ck_assert_int_eq(write(fd, "+ 2 torn-ui", 11), 11);
	close(fd);

	st = open_ok();
	ck_assert_ptr_nonnull(state_load_notice(st));
	ck_assert_ptr_nonnull(strstr(
	    state_load_notice(st), "dropped a torn last record (11 bytes)"));
	ck_assert(state_has(st, "a", NULL));
	ck_assert(!state_has(st, "torn-ui", NULL));
	ck_assert_uint_eq(state_count(st), 1);
	free(check_read_file(statefile, &len));
	ck_assert_uint_eq(len, goodlen);
	/* Usable afterwards. */
	ck_assert_int_eq(state_record(st, "b", 3), 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);

	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert_uint_eq(state_count(st), 2);
	ck_assert(state_has(st, "b", NULL));
	state_close(&st);
	data = check_read_file(statefile, NULL);
	ck_assert_str_eq(data, HEADER "+ 1 a\n+ 3 b\n");
	free(data);
}
END_TEST

START_TEST(test_corrupt_middle_records)
{
	struct state *st;
	time_t t;

	st = open_ok(); /* creates the directory */
	state_close(&st);
	spew(statefile, HEADER "+ 1 a\n"
			       "garbage\n"
			       "+ x b\n"
			       "+ 5\n"
			       "+ 6 has space\n"
			       "\n" /* a separator: not malformed */
			       "* 7 c\n"
			       "- \n"
			       "+ 99999999999999999999999 big\n"
			       "+ 3 c\n"
			       "+ 4 d\n"
			       "- d\n"
			       "- never-seen\n"
			       "+ 8 a\n");
	st = open_ok();
	ck_assert_ptr_nonnull(state_load_notice(st));
	ck_assert_ptr_nonnull(
	    strstr(state_load_notice(st), "skipped 7 malformed records"));
	ck_assert_uint_eq(state_count(st), 2);
	ck_assert(state_has(st, "a", &t));
	ck_assert_int_eq(t, 1); /* the first record of a duplicate wins */
	ck_assert(state_has(st, "c", NULL));
	ck_assert(!state_has(st, "d", NULL));
	ck_assert(!state_has(st, "b", NULL));
	ck_assert(!state_has(st, "big", NULL));
	/* Still appendable. */
	ck_assert_int_eq(state_record(st, "e", 9), 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	st = open_ok();
	ck_assert_uint_eq(state_count(st), 3);
	state_close(&st);
}
END_TEST

START_TEST(test_other_host_or_user)
{
	char errbuf[512], path[PATH_MAX];
	struct state *st = open_ok();
	char *data;

	ck_assert_int_eq(state_record(st, "a", 1), 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);

	st = state_open(statedir, ACCT, HOST, "bob", errbuf, sizeof(errbuf));
	ck_assert_ptr_nonnull(st);
	ck_assert_uint_eq(state_count(st), 0);
	ck_assert_ptr_nonnull(state_load_notice(st));
	ck_assert_ptr_nonnull(strstr(
	    state_load_notice(st), "belongs to another host, port or user"));
	state_close(&st);
	/* The old state is kept for the user. */
	snprintf(path, sizeof(path), "%s.old", statefile);
	data = check_read_file(path, NULL);
	ck_assert_str_eq(data, HEADER "+ 1 a\n");
	free(data);

	/* And another host. */
	st = state_open(
	    statedir, ACCT, "pop.other.org", "bob", errbuf, sizeof(errbuf));
	ck_assert_ptr_nonnull(st);
	ck_assert_ptr_nonnull(state_load_notice(st));
	state_close(&st);
	data = check_read_file(statefile, NULL);
	ck_assert_str_eq(data, "popfetchd-state 1 pop.other.org bob\n");
	free(data);
}
END_TEST

START_TEST(test_header_escaping)
{
	const char *user = "a b\n%c\xc3\xa9";
	char errbuf[512];
	struct state *st;
	char *data;

	st = state_open(statedir, ACCT, HOST, user, errbuf, sizeof(errbuf));
	ck_assert_ptr_nonnull(st);
	ck_assert_int_eq(state_record(st, "x", 1), 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	data = check_read_file(statefile, NULL);
	ck_assert_str_eq(
	    data, "popfetchd-state 1 " HOST " a%20b%0A%25c%C3%A9\n+ 1 x\n");
	free(data);
	st = state_open(statedir, ACCT, HOST, user, errbuf, sizeof(errbuf));
	ck_assert_ptr_nonnull(st);
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert(state_has(st, "x", NULL));
	state_close(&st);
	/* Fields cannot run into each other: this is another owner. */
	st = state_open(statedir, ACCT, HOST " a", "b", errbuf, sizeof(errbuf));
	ck_assert_ptr_nonnull(st);
	ck_assert_uint_eq(state_count(st), 0);
	state_close(&st);
}
END_TEST

START_TEST(test_unreadable_header)
{
	static const char *const bad[] = {"garbage\n+ 1 a\n", "garbage",
	    "popfetchd-state 1 " HOST " " USER "x", "popfetchd-state x\n",
	    "popfetchd-state 0 " HOST " " USER "\n"};
	char path[PATH_MAX];
	struct state *st;
	size_t i;
	char *data;

	st = open_ok();
	state_close(&st);
	snprintf(path, sizeof(path), "%s.corrupt", statefile);
	st = open_ok(); /* creates the directory */
	state_close(&st);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		spew(statefile, bad[i]);
		st = open_ok();
		ck_assert_uint_eq(state_count(st), 0);
		ck_assert_ptr_nonnull(state_load_notice(st));
		ck_assert_ptr_nonnull(
		    strstr(state_load_notice(st), "no readable header"));
		ck_assert_int_eq(state_record(st, "new", 1), 0);
		ck_assert_int_eq(state_commit(st), 0);
		state_close(&st);
		data = check_read_file(path, NULL);
		ck_assert_str_eq(data, bad[i]);
		free(data);
		data = check_read_file(statefile, NULL);
		ck_assert_str_eq(data, HEADER "+ 1 new\n");
		free(data);
	}
}
END_TEST

/*
 * A fresh file is created unsynced: a crash may leave it empty or with
 * a part of its header. That is a fresh state, taken as one silently
 * (nothing set aside, no notice); records then follow a whole header.
 */
START_TEST(test_torn_creation)
{
	static const char *const torn[] = {
	    "", "popf", "popfetchd-state 1 " HOST " " USER};
	struct state *st;
	size_t i;

	st = open_ok(); /* creates the directory */
	state_close(&st);
	for (i = 0; i < sizeof(torn) / sizeof(torn[0]); i++) {
		spew(statefile, torn[i]);
		st = open_ok();
		ck_assert_uint_eq(state_count(st), 0);
		ck_assert_ptr_null(state_load_notice(st));
		ck_assert_int_eq(state_record(st, "new", 1), 0);
		ck_assert_int_eq(state_commit(st), 0);
		state_close(&st);
		ck_assert(!exists(".state.corrupt"));
		assert_statefile(HEADER "+ 1 new\n");
	}
}
END_TEST

/* A fresh state's file in the state directory, made unsynced. */
static struct state *
open_fresh(void)
{
	struct state *st = open_ok(); /* the directory, synced */

	state_close(&st);
	ck_assert_int_eq(unlink(statefile), 0);
	return open_ok();
}

/* The device of the state directory. */
static dev_t
state_dev(void)
{
	struct stat sb;

	ck_assert_int_eq(stat(statedir, &sb), 0);
	return sb.st_dev;
}

/* Commits ST, which must succeed: the syncs the commit made. */
static unsigned long
commit_syncs(struct state *st)
{
	unsigned long before = fsutil_test_syncs();

	ck_assert_int_eq(state_commit(st), 0);
	return fsutil_test_syncs() - before;
}

/* The state file holds WANT. */
static void
assert_statefile(const char *want)
{
	char *data = check_read_file(statefile, NULL);

	ck_assert_str_eq(data, want);
	free(data);
}

/*
 * Opening a fresh state syncs nothing; its first commit syncs the data
 * and the directory (the file's name), the next ones the data alone. A
 * syncfs of the file system after the open (the Maildir's batch) spares
 * the directory's; one of another file system does not.
 */
START_TEST(test_fresh_file_made_durable)
{
	struct state *st;
	unsigned long before;

	before = fsutil_test_syncs();
	st = open_fresh();
	ck_assert_uint_eq(fsutil_test_syncs() - before, 0);
	ck_assert_int_eq(state_record(st, "a", 1), 0);
	ck_assert_uint_eq(commit_syncs(st), 2);
	ck_assert_int_eq(state_record(st, "b", 1), 0);
	ck_assert_uint_eq(commit_syncs(st), 1);
	state_close(&st);

	st = open_fresh();
	state_fs_synced(st, state_dev() + 1);
	ck_assert_int_eq(state_record(st, "a", 1), 0);
	ck_assert_uint_eq(commit_syncs(st), 2);
	state_close(&st);

	st = open_fresh();
	state_fs_synced(st, state_dev());
	ck_assert_int_eq(state_record(st, "a", 1), 0);
	ck_assert_uint_eq(commit_syncs(st), 1);
	state_close(&st);
	assert_statefile(HEADER "+ 1 a\n");
}
END_TEST

/*
 * The first commit's sync of the directory fails: the commit fails, and
 * the next one writes the records again and syncs both again.
 */
START_TEST(test_fresh_file_directory_sync_fails)
{
	struct state *st = open_fresh();

	ck_assert_int_eq(state_record(st, "a", 1), 0);
	fsutil_test_fail_sync(2, EIO);
	errno = 0;
	ck_assert_int_eq(state_commit(st), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_uint_eq(commit_syncs(st), 2);
	state_close(&st);
	assert_statefile(HEADER "+ 1 a\n");
}
END_TEST

START_TEST(test_newer_version_refused)
{
	char errbuf[512];
	struct state *st;

	st = open_ok();
	state_close(&st);
	spew(statefile, "popfetchd-state 2 " HOST " " USER "\n+ 1 a\n");
	errno = 0;
	st = state_open(statedir, ACCT, HOST, USER, errbuf, sizeof(errbuf));
	ck_assert_ptr_null(st);
	ck_assert_int_eq(errno, ENOTSUP);
	ck_assert_ptr_nonnull(strstr(errbuf, "format version 2"));
	/* Left as it was. */
	ck_assert(!exists(".state.corrupt"));
	ck_assert(!exists(".state.old"));
}
END_TEST

/* In a child: tries to open the state; exit 0 if refused as locked. */
static int
child_open(bool expect_locked)
{
	char errbuf[512];
	struct state *st;

	errno = 0;
	st = state_open(statedir, ACCT, HOST, USER, errbuf, sizeof(errbuf));
	if (!expect_locked) {
		state_close(&st);
		return st == NULL ? 0 : 1;
	}
	if (st != NULL)
		return 2;
	if (errno != EWOULDBLOCK)
		return 3;
	return strcmp(errbuf, "state of account " ACCT
			      " is locked by another process") == 0
		   ? 0
		   : 4;
}

static void
run_child(bool expect_locked)
{
	int status;
	pid_t pid;

	ck_assert_int_ne(pid = fork(), -1);
	if (pid == 0)
		_exit(child_open(expect_locked));
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
}

START_TEST(test_lock)
{
	char errbuf[512];
	struct state *st = open_ok(), *st2;

	/* Another process. */
	run_child(true);
	/* The same process, another open: refused too. */
	errno = 0;
	st2 = state_open(statedir, ACCT, HOST, USER, errbuf, sizeof(errbuf));
	ck_assert_ptr_null(st2);
	ck_assert_int_eq(errno, EWOULDBLOCK);
	ck_assert_str_eq(
	    errbuf, "state of account " ACCT " is locked by another process");
	/* Another account is independent. */
	st2 = state_open(statedir, "home", HOST, USER, errbuf, sizeof(errbuf));
	ck_assert_ptr_nonnull(st2);
	state_close(&st2);
	/* Closing releases it. */
	state_close(&st);
	run_child(false);
	st = open_ok();
	run_child(true);
	state_close(&st);
	run_child(false);
}
END_TEST

START_TEST(test_lock_survives_compaction)
{
	struct state *st = open_ok();

	record_filler(st, 1500, false);
	ck_assert_int_eq(state_commit(st), 0);
	forget_filler(st, 1500);
	ck_assert_int_eq(state_commit(st), 0);
	ck_assert_int_eq(count_lines(statefile), 1);
	run_child(true);
	state_close(&st);
}
END_TEST

static void
expect_fn(void *arg, const char *uid, time_t first_seen)
{
	int n = atoi(uid + 1);

	ck_assert_int_eq(uid[0], 'u');
	ck_assert_int_eq(n % 3, 0);
	ck_assert_int_eq(first_seen, n + 100);
	(*(int *)arg)++;
}

START_TEST(test_forget_and_compaction)
{
	struct state *st = open_ok();
	char uid[32], *data;
	int i, seen = 0;

	/* Below the threshold: forgets are appended, not compacted. */
	ck_assert_int_eq(state_record(st, "x", 1), 0);
	ck_assert_int_eq(state_forget(st, "x"), 0);
	ck_assert_int_eq(state_forget(st, "x"), 0); /* not there: no-op */
	ck_assert_int_eq(state_forget(st, "never"), 0);
	ck_assert_int_eq(state_commit(st), 0);
	data = check_read_file(statefile, NULL);
	ck_assert_str_eq(data, HEADER "+ 1 x\n- x\n");
	free(data);

	for (i = 0; i < 3000; i++) {
		snprintf(uid, sizeof(uid), "u%d", i);
		ck_assert_int_eq(state_record(st, uid, i + 100), 0);
	}
	ck_assert_int_eq(state_commit(st), 0);
	ck_assert_int_eq(count_lines(statefile), 3003);
	for (i = 0; i < 3000; i++) {
		if (i % 3 == 0)
			continue;
		snprintf(uid, sizeof(uid), "u%d", i);
		ck_assert_int_eq(state_forget(st, uid), 0);
	}
	ck_assert_uint_eq(state_count(st), 1000);
	ck_assert_int_eq(state_commit(st), 0);
	/* Dead records (4002) > 1000 and > live (1000): rewritten. */
	ck_assert_int_eq(count_lines(statefile), 1 + 1000);
	ck_assert(!exists(".state.tmp"));
	state_foreach(st, expect_fn, &seen);
	ck_assert_int_eq(seen, 1000);
	/* Appends go to the new file. */
	ck_assert_int_eq(state_record(st, "u3000", 3100), 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);

	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert_uint_eq(state_count(st), 1001);
	seen = 0;
	state_foreach(st, expect_fn, &seen);
	ck_assert_int_eq(seen, 1001);
	state_close(&st);
}
END_TEST

/* Random records and forgets against a plain array (the hash table). */
START_TEST(test_random_against_reference)
{
	enum { N = 5000, OPS = 60000 };
	struct state *st = open_ok();
	unsigned long rnd = 12345;
	char *ref = calloc(N, 1), uid[32];
	size_t live = 0;
	int i, k;

	for (i = 0; i < OPS; i++) {
		rnd = rnd * 6364136223846793005UL + 1442695040888963407UL;
		k = (int)((rnd >> 33) % N);
		snprintf(uid, sizeof(uid), "%d-%x", k, k * 2654435761U);
		if ((rnd >> 20) % 5 < 3) {
			ck_assert_int_eq(state_record(st, uid, k), 0);
			live += !ref[k];
			ref[k] = 1;
		} else {
			ck_assert_int_eq(state_forget(st, uid), 0);
			live -= ref[k];
			ref[k] = 0;
		}
		if (i % 997 == 0)
			ck_assert_int_eq(state_commit(st), 0);
	}
	ck_assert_int_eq(state_commit(st), 0);
	ck_assert_uint_eq(state_count(st), live);
	state_close(&st);
	st = open_ok();
	ck_assert_uint_eq(state_count(st), live);
	for (k = 0; k < N; k++) {
		snprintf(uid, sizeof(uid), "%d-%x", k, k * 2654435761U);
		ck_assert_int_eq(state_has(st, uid, NULL), ref[k]);
	}
	state_close(&st);
	free(ref);
}
END_TEST

START_TEST(test_many_uids)
{
	enum { N = 100000 };
	struct state *st = open_ok();
	struct timespec t0, t1;
	char uid[80];
	double secs;
	int i;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (i = 0; i < N; i++) {
		snprintf(uid, sizeof(uid), "%08d-%s", i,
		    "000000000000000000000000000000000000000000000000000");
		ck_assert_int_eq(state_record(st, uid, 1700000000 + i), 0);
	}
	ck_assert_int_eq(state_commit(st), 0);
	/* One more record: the commit must not rewrite the rest. */
	ck_assert_int_eq(state_record(st, "one-more", 1), 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	st = open_ok();
	ck_assert_uint_eq(state_count(st), N + 1);
	for (i = 0; i < N; i += 997) {
		time_t t;

		snprintf(uid, sizeof(uid), "%08d-%s", i,
		    "000000000000000000000000000000000000000000000000000");
		ck_assert(state_has(st, uid, &t));
		ck_assert_int_eq(t, 1700000000 + i);
	}
	state_close(&st);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) +
	       (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	/* Generous for sanitizers and valgrind; real runs take ~0.1 s. */
	ck_assert_msg(secs < 30, "100k UIDs took %.1f s", secs);
}
END_TEST

START_TEST(test_invalid_uids)
{
	static const char *const bad[] = {"", "a b", "a\tb", "new\nline",
	    "del\x7f", "\xc3\xa9t\xc3\xa9",
	    ("12345678901234567890123456789012345678901234567890123456789012345678901")};
	const char *max =
	    "1234567890123456789012345678901234567890123456789012345678901234567890";
	struct state *st = open_ok();
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		ck_assert_int_eq(state_record(st, bad[i], 1), -1);
		ck_assert_int_eq(errno, EINVAL);
		errno = 0;
		ck_assert_int_eq(state_forget(st, bad[i]), -1);
		ck_assert_int_eq(errno, EINVAL);
		ck_assert(!state_has(st, bad[i], NULL));
	}
	ck_assert_uint_eq(strlen(max), 70);
	ck_assert_int_eq(state_record(st, max, 1), 0);
	ck_assert_int_eq(state_record(st, "!", 1), 0);
	ck_assert_int_eq(state_record(st, "~", 1), 0);
	errno = 0;
	ck_assert_int_eq(state_record(st, "neg", -1), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_uint_eq(state_count(st), 3);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert(state_has(st, max, NULL));
	ck_assert(state_has(st, "!", NULL));
	ck_assert(state_has(st, "~", NULL));
	state_close(&st);
}
END_TEST

START_TEST(test_invalid_account)
{
	static const char *const bad[] = {"", ".", "..", "a/b"};
	char errbuf[512], longname[300];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		ck_assert_ptr_null(state_open(
		    statedir, bad[i], HOST, USER, errbuf, sizeof(errbuf)));
		ck_assert_int_eq(errno, EINVAL);
		ck_assert_ptr_nonnull(strstr(errbuf, "invalid account name"));
	}
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	ck_assert_ptr_null(
	    state_open(statedir, longname, HOST, USER, errbuf, sizeof(errbuf)));
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(test_dir_errors)
{
	char errbuf[512], path[PATH_MAX], want[PATH_MAX + 64];

	snprintf(path, sizeof(path), "%s/file", tmpdir);
	spew(path, "x");
	snprintf(path, sizeof(path), "%s/file/state", tmpdir);
	ck_assert_ptr_null(
	    state_open(path, ACCT, HOST, USER, errbuf, sizeof(errbuf)));
	ck_assert_int_eq(errno, ENOTDIR);
	snprintf(want, sizeof(want), "cannot create %s/file/state: %s", tmpdir,
	    strerror(ENOTDIR));
	ck_assert_str_eq(errbuf, want);
}
END_TEST

/*
 * In a child limited in file size: a commit fails with EFBIG, the records
 * stay pending and visible, the file is cut back to whole records, and a
 * commit once the limit is lifted writes them all.
 */
static int
failed_commit_child(void)
{
	struct rlimit rl;
	struct stat sb, sb2;
	struct state *st;
	char uid[32];
	int i;

	signal(SIGXFSZ, SIG_IGN);
	if ((st = state_open(statedir, ACCT, HOST, USER, NULL, 0)) == NULL ||
	    state_record(st, "first", 1) == -1 || state_commit(st) == -1 ||
	    stat(statefile, &sb) == -1)
		return 10;
	if (getrlimit(RLIMIT_FSIZE, &rl) == -1)
		return 11;
	rl.rlim_cur = (rlim_t)sb.st_size + 100;
	if (setrlimit(RLIMIT_FSIZE, &rl) == -1)
		return 12;
	for (i = 0; i < 50; i++) {
		snprintf(uid, sizeof(uid), "uid-%d", i);
		if (state_record(st, uid, 2) == -1)
			return 13;
	}
	errno = 0;
	if (state_commit(st) != -1 || errno != EFBIG)
		return 14;
	/* What state_has says: records made, durable or not. */
	if (!state_has(st, "uid-49", NULL) || state_count(st) != 51)
		return 15;
	if (stat(statefile, &sb2) == -1 || sb2.st_size != sb.st_size)
		return 16;
	if (state_commit(st) != -1 || errno != EFBIG)
		return 17;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_FSIZE, &rl) == -1 || state_commit(st) == -1)
		return 18;
	state_close(&st);
	if ((st = state_open(statedir, ACCT, HOST, USER, NULL, 0)) == NULL ||
	    state_count(st) != 51 || state_load_notice(st) != NULL)
		return 19;
	state_close(&st);
	return 0;
}

START_TEST(test_failed_commit_retried)
{
	int status;
	pid_t pid;

	ck_assert_int_ne(pid = fork(), -1);
	if (pid == 0)
		_exit(failed_commit_child());
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

/* A torn fragment that cannot be cut is ended by a newline, not merged. */
START_TEST(test_junk_then_append)
{
	struct state *st;
	char *data;

	st = open_ok();
	state_close(&st);
	spew(statefile, HEADER "+ 1 a\n\n+ 2 b\n\n\n");
	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert_uint_eq(state_count(st), 2);
	ck_assert_int_eq(state_record(st, "c", 3), 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	data = check_read_file(statefile, NULL);
	ck_assert_str_eq(data, HEADER "+ 1 a\n\n+ 2 b\n\n\n+ 3 c\n");
	free(data);
}
END_TEST

/* The pending records seen by state_foreach_pending(), as one string. */
struct pending_log {
	int n;
	char text[4096];
};

static void
pending_fn(
    void *arg, const char *uid, const char *tmpname, const char *finalname)
{
	struct pending_log *l = arg;
	size_t used = strlen(l->text);

	l->n++;
	snprintf(l->text + used, sizeof(l->text) - used, "[%s %s %s]", uid,
	    tmpname, finalname);
}

START_TEST(test_pending_round_trip)
{
	struct pending_log l = {0};
	struct state *st = open_ok();
	time_t t = 0;
	char *data;

	ck_assert_int_eq(state_record_pending(
			     st, "p1", 1000, "1.M2P3Q4.h", "1.M2P3Q4.h,S=5"),
	    0);
	/* Delivered from now on, as far as the planner is concerned. */
	ck_assert(state_has(st, "p1", &t));
	ck_assert_int_eq(t, 1000);
	ck_assert_uint_eq(state_count(st), 1);
	ck_assert_uint_eq(state_pending_count(st), 1);
	ck_assert_int_eq(state_record(st, "plain", 2000), 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);

	data = check_read_file(statefile, NULL);
	ck_assert_str_eq(data, HEADER "> 1000 p1 1.M2P3Q4.h 1.M2P3Q4.h,S=5\n"
				      "+ 2000 plain\n");
	free(data);

	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert(state_has(st, "p1", &t));
	ck_assert_int_eq(t, 1000);
	ck_assert_uint_eq(state_count(st), 2);
	ck_assert_uint_eq(state_pending_count(st), 1);
	state_foreach_pending(st, pending_fn, &l);
	ck_assert_int_eq(l.n, 1);
	ck_assert_str_eq(l.text, "[p1 1.M2P3Q4.h 1.M2P3Q4.h,S=5]");
	ck_assert(state_is_pending_tmp(st, "1.M2P3Q4.h"));
	ck_assert(!state_is_pending_tmp(st, "1.M2P3Q4.h,S=5"));
	ck_assert(!state_is_pending_tmp(st, "plain"));
	state_close(&st);
}
END_TEST

START_TEST(test_complete)
{
	struct pending_log l = {0};
	struct state *st = open_ok();
	char *data;

	ck_assert_int_eq(state_record_pending(st, "a", 1, "ta", "fa"), 0);
	ck_assert_int_eq(state_record_pending(st, "b", 2, "tb", "fb"), 0);
	ck_assert_int_eq(state_record(st, "c", 3), 0);
	ck_assert_int_eq(state_commit(st), 0);
	ck_assert_int_eq(state_complete(st, "a"), 0);
	ck_assert_uint_eq(state_pending_count(st), 1);
	ck_assert(state_has(st, "a", NULL));
	ck_assert(!state_is_pending_tmp(st, "ta"));
	/* Not pending (any more, or ever): nothing to do, nothing written. */
	ck_assert_int_eq(state_complete(st, "a"), 0);
	ck_assert_int_eq(state_complete(st, "c"), 0);
	errno = 0;
	ck_assert_int_eq(state_complete(st, "nope"), -1);
	ck_assert_int_eq(errno, ENOENT);
	errno = 0;
	ck_assert_int_eq(state_complete(st, "a b"), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);

	data = check_read_file(statefile, NULL);
	ck_assert_str_eq(data, HEADER "> 1 a ta fa\n> 2 b tb fb\n+ 3 c\n= a\n");
	free(data);

	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert_uint_eq(state_count(st), 3);
	ck_assert_uint_eq(state_pending_count(st), 1);
	ck_assert(state_has(st, "a", NULL));
	state_foreach_pending(st, pending_fn, &l);
	ck_assert_str_eq(l.text, "[b tb fb]");
	/* A completed record can be forgotten like any other. */
	ck_assert_int_eq(state_forget(st, "a"), 0);
	ck_assert(!state_has(st, "a", NULL));
	state_close(&st);
}
END_TEST

/* A completion not committed is lost; the intent is found again. */
START_TEST(test_complete_uncommitted)
{
	struct state *st = open_ok();

	ck_assert_int_eq(state_record_pending(st, "a", 1, "ta", "fa"), 0);
	ck_assert_int_eq(state_commit(st), 0);
	ck_assert_int_eq(state_complete(st, "a"), 0);
	ck_assert_uint_eq(state_pending_count(st), 0);
	state_close(&st);
	st = open_ok();
	ck_assert_uint_eq(state_pending_count(st), 1);
	ck_assert(state_is_pending_tmp(st, "ta"));
	state_close(&st);
}
END_TEST

START_TEST(test_pending_refusals)
{
	static const char *const bad[] = {
	    "", ".", "..", "../x", "a/b", "a b", "x\n", "\x7f", "\xc3\xa9"};
	char longname[NAME_MAX + 2];
	struct state *st = open_ok();
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		ck_assert_int_eq(
		    state_record_pending(st, "u", 1, bad[i], "f"), -1);
		ck_assert_int_eq(errno, EINVAL);
		errno = 0;
		ck_assert_int_eq(
		    state_record_pending(st, "u", 1, "t", bad[i]), -1);
		ck_assert_int_eq(errno, EINVAL);
	}
	memset(longname, 'n', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	ck_assert_int_eq(state_record_pending(st, "u", 1, longname, "f"), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(state_record_pending(st, "bad uid", 1, "t", "f"), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(state_record_pending(st, "u", -1, "t", "f"), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_uint_eq(state_count(st), 0);

	/* NAME_MAX is fine, and round-trips. */
	longname[NAME_MAX] = '\0';
	ck_assert_int_eq(state_record_pending(st, "u", 1, longname, "f"), 0);
	/* Recorded already, pending or not: this copy must not go out. */
	errno = 0;
	ck_assert_int_eq(state_record_pending(st, "u", 2, "t2", "f2"), -1);
	ck_assert_int_eq(errno, EEXIST);
	ck_assert_int_eq(state_record(st, "plain", 1), 0);
	errno = 0;
	ck_assert_int_eq(state_record_pending(st, "plain", 2, "t", "f"), -1);
	ck_assert_int_eq(errno, EEXIST);
	/* A plain record of a pending UID is a no-op that keeps it pending. */
	ck_assert_int_eq(state_record(st, "u", 5), 0);
	ck_assert_uint_eq(state_pending_count(st), 1);
	/* Forgetting an intent would orphan its tmp/ file. */
	errno = 0;
	ck_assert_int_eq(state_forget(st, "u"), -1);
	ck_assert_int_eq(errno, EBUSY);
	ck_assert(state_has(st, "u", NULL));
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert_uint_eq(state_pending_count(st), 1);
	ck_assert(state_is_pending_tmp(st, longname));
	state_close(&st);
}
END_TEST

/* Compaction writes a pending record as ">" and a completed one as "+". */
START_TEST(test_compaction_keeps_pending)
{
	struct pending_log l = {0};
	struct state *st = open_ok();
	char *data;
	time_t t;

	record_filler(st, 1500, false);
	ck_assert_int_eq(state_record_pending(st, "p0", 7, "t0", "t0,S=1"), 0);
	ck_assert_int_eq(state_record_pending(st, "p1", 8, "t1", "t1,S=2"), 0);
	ck_assert_int_eq(state_commit(st), 0);
	ck_assert_int_eq(state_complete(st, "p1"), 0);
	ck_assert_int_eq(state_commit(st), 0);
	ck_assert_int_eq(count_lines(statefile), 1 + 1502 + 1);
	forget_filler(st, 1500);
	ck_assert_int_eq(state_commit(st), 0);
	/* Rewritten: the header and the two live UIDs. */
	ck_assert_int_eq(count_lines(statefile), 3);
	data = check_read_file(statefile, NULL);
	ck_assert_ptr_nonnull(strstr(data, "\n> 7 p0 t0 t0,S=1\n"));
	ck_assert_ptr_nonnull(strstr(data, "\n+ 8 p1\n"));
	free(data);
	state_close(&st);

	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert_uint_eq(state_count(st), 2);
	ck_assert_uint_eq(state_pending_count(st), 1);
	state_foreach_pending(st, pending_fn, &l);
	ck_assert_str_eq(l.text, "[p0 t0 t0,S=1]");
	ck_assert(state_has(st, "p1", &t));
	ck_assert_int_eq(t, 8);
	/* And it completes in the new file. */
	ck_assert_int_eq(state_complete(st, "p0"), 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	st = open_ok();
	ck_assert_uint_eq(state_pending_count(st), 0);
	ck_assert_uint_eq(state_count(st), 2);
	state_close(&st);
}
END_TEST

/* Every torn prefix of a pending record is dropped, whole ones kept. */
START_TEST(test_torn_pending_tail)
{
	static const char rec[] = "> 2 torn t9 t9,S=10\n";
	size_t cut, len, goodlen;
	struct state *st = open_ok();
	char *good, *data;
	int fd;

	ck_assert_int_eq(state_record_pending(st, "a", 1, "ta", "fa"), 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	good = check_read_file(statefile, &goodlen);
	for (cut = 1; cut < sizeof(rec) - 1; cut++) {
		spew(statefile, good);
		ck_assert_int_ne(fd = open(statefile, O_WRONLY | O_APPEND), -1);
		ck_assert_int_eq(write(fd, rec, cut), (ssize_t)cut);
		close(fd);
		st = open_ok();
		ck_assert_ptr_nonnull(state_load_notice(st));
		ck_assert_ptr_nonnull(strstr(
		    state_load_notice(st), "dropped a torn last record"));
		ck_assert(!state_has(st, "torn", NULL));
		ck_assert(!state_is_pending_tmp(st, "t9"));
		ck_assert_uint_eq(state_pending_count(st), 1);
		ck_assert(state_is_pending_tmp(st, "ta"));
		state_close(&st);
		free(check_read_file(statefile, &len));
		ck_assert_uint_eq(len, goodlen);
	}
	/* With its newline it is whole, and counts. */
	spew(statefile, good);
	ck_assert_int_ne(fd = open(statefile, O_WRONLY | O_APPEND), -1);
	ck_assert_int_eq(
	    write(fd, rec, sizeof(rec) - 1), (ssize_t)sizeof(rec) - 1);
	close(fd);
	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert_uint_eq(state_pending_count(st), 2);
	ck_assert(state_is_pending_tmp(st, "t9"));
	state_close(&st);
	data = check_read_file(statefile, NULL);
	ck_assert_str_eq(data, HEADER "> 1 a ta fa\n> 2 torn t9 t9,S=10\n");
	free(data);
	free(good);
}
END_TEST

/* Damaged pending and completion records in the middle are skipped. */
START_TEST(test_malformed_pending_middle)
{
	struct pending_log l = {0};
	struct state *st;
	time_t t;

	st = open_ok(); /* creates the directory */
	state_close(&st);
	spew(statefile, HEADER "> 1 good t1 t1,S=1\n"
			       "> 2 b1 ../x f\n"
			       "> 2 b2 a/b f\n"
			       "> 2 b3 t ..\n"
			       "> 2 b4 . f\n"
			       "> x b5 t f\n"
			       "> 2 b6 t\n"
			       "> 2 b7 t f extra\n"
			       "> 2 b8 t  f\n"
			       "> 2 b9 t f \n"
			       ">2 b10 t f\n"
			       "> 2 b\x01 t f\n"
			       "= \n"
			       "= a b\n"
			       "+ 3 plain\n"
			       "> 4 plain tp fp\n" /* a duplicate: dead */
			       "> 5 done td fd\n"
			       "= done\n"
			       "= never-seen\n"
			       "= plain\n");
	st = open_ok();
	ck_assert_ptr_nonnull(state_load_notice(st));
	ck_assert_ptr_nonnull(
	    strstr(state_load_notice(st), "skipped 13 malformed records"));
	ck_assert_uint_eq(state_count(st), 3);
	ck_assert_uint_eq(state_pending_count(st), 1);
	state_foreach_pending(st, pending_fn, &l);
	ck_assert_str_eq(l.text, "[good t1 t1,S=1]");
	ck_assert(state_has(st, "plain", &t));
	ck_assert_int_eq(t, 3);
	ck_assert(!state_is_pending_tmp(st, "tp"));
	ck_assert(state_has(st, "done", NULL));
	ck_assert(!state_is_pending_tmp(st, "td"));
	ck_assert(!state_has(st, "b1", NULL));
	ck_assert(!state_has(st, "b7", NULL));
	/* Still appendable, and the result loads without complaint. */
	ck_assert_int_eq(state_complete(st, "good"), 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	st = open_ok();
	ck_assert_uint_eq(state_pending_count(st), 0);
	ck_assert_uint_eq(state_count(st), 3);
	state_close(&st);
}
END_TEST

/*
 * In a child limited in file size: a commit of intents fails with EFBIG;
 * they stay pending in memory (state_has, foreach_pending) and are
 * written, still pending, once the limit is lifted.
 */
static int
failed_pending_commit_child(void)
{
	struct pending_log l = {0};
	struct rlimit rl;
	struct stat sb, sb2;
	struct state *st;
	char uid[32], tmpname[200], finalname[220];
	int i;

	signal(SIGXFSZ, SIG_IGN);
	if ((st = state_open(statedir, ACCT, HOST, USER, NULL, 0)) == NULL ||
	    state_record(st, "first", 1) == -1 || state_commit(st) == -1 ||
	    stat(statefile, &sb) == -1)
		return 10;
	if (getrlimit(RLIMIT_FSIZE, &rl) == -1)
		return 11;
	rl.rlim_cur = (rlim_t)sb.st_size + 100;
	if (setrlimit(RLIMIT_FSIZE, &rl) == -1)
		return 12;
	for (i = 0; i < 20; i++) {
		snprintf(uid, sizeof(uid), "uid-%d", i);
		snprintf(tmpname, sizeof(tmpname), "%d.M1P2Q%d.host", i, i);
		snprintf(finalname, sizeof(finalname), "%s,S=%d", tmpname, i);
		if (state_record_pending(st, uid, 2, tmpname, finalname) == -1)
			return 13;
	}
	errno = 0;
	if (state_commit(st) != -1 || errno != EFBIG)
		return 14;
	if (!state_has(st, "uid-19", NULL) || state_pending_count(st) != 20 ||
	    !state_is_pending_tmp(st, "7.M1P2Q7.host"))
		return 15;
	if (stat(statefile, &sb2) == -1 || sb2.st_size != sb.st_size)
		return 16;
	/* A completion queued behind the failed intents keeps its order. */
	if (state_complete(st, "uid-0") == -1)
		return 17;
	if (state_commit(st) != -1 || errno != EFBIG)
		return 18;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_FSIZE, &rl) == -1 || state_commit(st) == -1)
		return 19;
	state_close(&st);
	if ((st = state_open(statedir, ACCT, HOST, USER, NULL, 0)) == NULL ||
	    state_count(st) != 21 || state_pending_count(st) != 19 ||
	    state_load_notice(st) != NULL)
		return 20;
	state_foreach_pending(st, pending_fn, &l);
	if (l.n != 19 ||
	    strstr(l.text, "[uid-7 7.M1P2Q7.host 7.M1P2Q7.host,S=7]") == NULL)
		return 21;
	state_close(&st);
	return 0;
}

START_TEST(test_failed_pending_commit_retried)
{
	int status;
	pid_t pid;

	ck_assert_int_ne(pid = fork(), -1);
	if (pid == 0)
		_exit(failed_pending_commit_child());
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

/*
 * Random plain records, intents, completions and forgets against a plain
 * array: 0 absent, 1 delivered, 2 pending.
 */
START_TEST(test_random_pending_against_reference)
{
	enum { N = 2000, OPS = 30000 };
	struct state *st = open_ok();
	unsigned long rnd = 777;
	char *ref = calloc(N, 1), uid[32], tmpname[40], finalname[48];
	size_t live = 0, pending = 0;
	int i, k, op, rc;

	for (i = 0; i < OPS; i++) {
		rnd = rnd * 6364136223846793005UL + 1442695040888963407UL;
		k = (int)((rnd >> 33) % N);
		op = (int)((rnd >> 20) % 8);
		snprintf(uid, sizeof(uid), "%d-%x", k, k * 2654435761U);
		snprintf(tmpname, sizeof(tmpname), "t.%s", uid);
		snprintf(finalname, sizeof(finalname), "t.%s,S=%d", uid, k);
		if (op < 2) {
			ck_assert_int_eq(state_record(st, uid, k), 0);
			if (ref[k] == 0) {
				ref[k] = 1;
				live++;
			}
		} else if (op < 4) {
			rc = state_record_pending(
			    st, uid, k, tmpname, finalname);
			ck_assert_int_eq(rc, ref[k] == 0 ? 0 : -1);
			if (ref[k] == 0) {
				ref[k] = 2;
				live++;
				pending++;
			}
		} else if (op < 6) {
			rc = state_complete(st, uid);
			ck_assert_int_eq(rc, ref[k] == 0 ? -1 : 0);
			if (ref[k] == 2) {
				ref[k] = 1;
				pending--;
			}
		} else {
			rc = state_forget(st, uid);
			ck_assert_int_eq(rc, ref[k] == 2 ? -1 : 0);
			if (ref[k] == 1) {
				ref[k] = 0;
				live--;
			}
		}
		if (i % 997 == 0)
			ck_assert_int_eq(state_commit(st), 0);
	}
	ck_assert_int_eq(state_commit(st), 0);
	ck_assert_uint_eq(state_count(st), live);
	ck_assert_uint_eq(state_pending_count(st), pending);
	state_close(&st);
	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert_uint_eq(state_count(st), live);
	ck_assert_uint_eq(state_pending_count(st), pending);
	for (k = 0; k < N; k++) {
		snprintf(uid, sizeof(uid), "%d-%x", k, k * 2654435761U);
		snprintf(tmpname, sizeof(tmpname), "t.%s", uid);
		ck_assert_int_eq(state_has(st, uid, NULL), ref[k] != 0);
		ck_assert_int_eq(
		    state_is_pending_tmp(st, tmpname), ref[k] == 2);
	}
	state_close(&st);
	free(ref);
}
END_TEST

/* Strikes count up, keep the latest time and survive close and reopen. */
START_TEST(test_strikes_round_trip)
{
	struct collect c = {0};
	struct state *st = open_ok();
	time_t last = -1;
	char *data;

	ck_assert_uint_eq(state_strikes(st, "s", &last), 0);
	ck_assert_int_eq(last, 0);
	ck_assert_int_eq(state_strike(st, "s", 100), 1);
	ck_assert_int_eq(state_strike(st, "s", 200), 2);
	ck_assert_int_eq(state_strike(st, "t", 150), 1);
	ck_assert_int_eq(state_strike(st, "s", 300), 3);
	ck_assert_uint_eq(state_strikes(st, "s", &last), 3);
	ck_assert_int_eq(last, 300);
	ck_assert_uint_eq(state_strikes(st, "t", NULL), 1);
	/* Not deliveries: invisible to everything that lists those. */
	ck_assert(!state_has(st, "s", NULL));
	ck_assert_uint_eq(state_count(st), 0);
	ck_assert_uint_eq(state_pending_count(st), 0);
	state_foreach(st, collect_fn, &c);
	ck_assert_int_eq(c.n, 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);

	/* Absolute counts: each record says all there is to know. */
	data = check_read_file(statefile, NULL);
	ck_assert_str_eq(
	    data, HEADER "! 100 s 1\n! 200 s 2\n! 150 t 1\n! 300 s 3\n");
	free(data);

	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert_uint_eq(state_strikes(st, "s", &last), 3);
	ck_assert_int_eq(last, 300);
	ck_assert_uint_eq(state_strikes(st, "t", &last), 1);
	ck_assert_int_eq(last, 150);
	ck_assert(!state_has(st, "s", NULL));
	ck_assert_uint_eq(state_count(st), 0);
	state_foreach(st, collect_fn, &c);
	ck_assert_int_eq(c.n, 0);
	/* Counting goes on; the latest call gives the time, even earlier. */
	ck_assert_int_eq(state_strike(st, "s", 400), 4);
	ck_assert_int_eq(state_strike(st, "s", 350), 5);
	ck_assert_uint_eq(state_strikes(st, "s", &last), 5);
	ck_assert_int_eq(last, 350);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	st = open_ok();
	ck_assert_uint_eq(state_strikes(st, "s", &last), 5);
	ck_assert_int_eq(last, 350);
	/* Refusals. */
	errno = 0;
	ck_assert_int_eq(state_strike(st, "a b", 1), -1);
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_int_eq(state_strike(st, "", 1), -1);
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_int_eq(state_strike(st, "s", -1), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_uint_eq(state_strikes(st, "s", NULL), 5);
	ck_assert_uint_eq(state_strikes(st, "a b", &last), 0);
	ck_assert_int_eq(last, 0);
	state_close(&st);
}
END_TEST

/* Uncommitted strikes are lost with the process: one more try, no more. */
START_TEST(test_strikes_uncommitted_lost)
{
	struct state *st = open_ok();

	ck_assert_int_eq(state_strike(st, "s", 1), 1);
	ck_assert_int_eq(state_commit(st), 0);
	ck_assert_int_eq(state_strike(st, "s", 2), 2);
	state_close(&st);
	st = open_ok();
	ck_assert_uint_eq(state_strikes(st, "s", NULL), 1);
	state_close(&st);
}
END_TEST

/* Recording a UID delivered ends its strikes, in memory and on replay. */
START_TEST(test_strikes_end_on_delivery)
{
	struct state *st = open_ok();
	time_t t;

	ck_assert_int_eq(state_strike(st, "a", 10), 1);
	ck_assert_int_eq(state_strike(st, "a", 11), 2);
	ck_assert_int_eq(state_strike(st, "b", 12), 1);
	ck_assert_int_eq(state_strike(st, "c", 13), 1);
	ck_assert_int_eq(state_strike(st, "d", 14), 1);
	ck_assert_int_eq(state_commit(st), 0);
	/* Delivered in this session: the strikes end at once. */
	ck_assert_int_eq(state_record(st, "a", 20), 0);
	ck_assert_uint_eq(state_strikes(st, "a", NULL), 0);
	ck_assert_int_eq(state_record_pending(st, "b", 21, "tb", "fb"), 0);
	ck_assert_uint_eq(state_strikes(st, "b", NULL), 0);
	ck_assert_uint_eq(state_count(st), 2);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);

	/* Replayed: "+" and ">" end the "!" before them. */
	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert_uint_eq(state_strikes(st, "a", NULL), 0);
	ck_assert_uint_eq(state_strikes(st, "b", NULL), 0);
	ck_assert_uint_eq(state_strikes(st, "c", NULL), 1);
	ck_assert(state_has(st, "a", &t));
	ck_assert_int_eq(t, 20);
	ck_assert_uint_eq(state_count(st), 2);
	ck_assert_uint_eq(state_pending_count(st), 1);

	/* A delivered UID takes no strike, pending or not. */
	errno = 0;
	ck_assert_int_eq(state_strike(st, "a", 30), -1);
	ck_assert_int_eq(errno, EEXIST);
	errno = 0;
	ck_assert_int_eq(state_strike(st, "b", 30), -1);
	ck_assert_int_eq(errno, EEXIST);
	ck_assert_int_eq(state_complete(st, "b"), 0);
	errno = 0;
	ck_assert_int_eq(state_strike(st, "b", 31), -1);
	ck_assert_int_eq(errno, EEXIST);
	ck_assert_uint_eq(state_strikes(st, "a", NULL), 0);
	ck_assert_uint_eq(state_strikes(st, "b", NULL), 0);
	/* Delivered without a commit of the strike before: same end. */
	ck_assert_int_eq(state_strike(st, "d", 32), 2);
	ck_assert_int_eq(state_record(st, "d", 33), 0);
	ck_assert_uint_eq(state_strikes(st, "d", NULL), 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);

	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert_uint_eq(state_strikes(st, "a", NULL), 0);
	ck_assert_uint_eq(state_strikes(st, "b", NULL), 0);
	ck_assert_uint_eq(state_strikes(st, "d", NULL), 0);
	ck_assert_uint_eq(state_strikes(st, "c", NULL), 1);
	ck_assert_uint_eq(state_count(st), 3);
	/* Forgotten, a UID may fail anew. */
	ck_assert_int_eq(state_forget(st, "a"), 0);
	ck_assert_int_eq(state_strike(st, "a", 40), 1);
	state_close(&st);
}
END_TEST

/* The UIDs state_prune_strikes() is to keep, and how often it asked. */
struct listed {
	const char *const *uids;
	int asked;
};

static bool
listed_fn(void *arg, const char *uid)
{
	struct listed *l = arg;
	size_t i;

	l->asked++;
	for (i = 0; l->uids[i] != NULL; i++)
		if (strcmp(l->uids[i], uid) == 0)
			return true;
	return false;
}

START_TEST(test_strikes_forget_and_prune)
{
	static const char *const keep[] = {"z", "delivered", NULL};
	struct listed l = {keep, 0};
	struct state *st = open_ok();
	char *data;

	ck_assert_int_eq(state_record(st, "delivered", 1), 0);
	ck_assert_int_eq(state_strike(st, "x", 2), 1);
	ck_assert_int_eq(state_strike(st, "y", 3), 1);
	ck_assert_int_eq(state_strike(st, "y", 4), 2);
	ck_assert_int_eq(state_strike(st, "z", 5), 1);
	ck_assert_int_eq(state_commit(st), 0);
	ck_assert_int_eq(state_forget(st, "x"), 0);
	ck_assert_uint_eq(state_strikes(st, "x", NULL), 0);
	ck_assert_int_eq(state_forget(st, "x"), 0); /* a no-op now */
	state_prune_strikes(st, listed_fn, &l);
	ck_assert_int_ge(l.asked, 2); /* y and z; deliveries are not asked */
	ck_assert_uint_eq(state_strikes(st, "y", NULL), 0);
	ck_assert_uint_eq(state_strikes(st, "z", NULL), 1);
	/* Deliveries are not its business, listed or not. */
	ck_assert(state_has(st, "delivered", NULL));
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);

	data = check_read_file(statefile, NULL);
	ck_assert_str_eq(data, HEADER "+ 1 delivered\n! 2 x 1\n! 3 y 1\n"
				      "! 4 y 2\n! 5 z 1\n- x\n- y\n");
	free(data);
	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert_uint_eq(state_strikes(st, "x", NULL), 0);
	ck_assert_uint_eq(state_strikes(st, "y", NULL), 0);
	ck_assert_uint_eq(state_strikes(st, "z", NULL), 1);
	ck_assert_uint_eq(state_count(st), 1);
	/* Nothing to prune: nothing written. */
	state_prune_strikes(st, listed_fn, &l);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	ck_assert_int_eq(count_lines(statefile), 8);
}
END_TEST

/* For a prune: keeps the strikes of the odd-numbered UIDs "s<k>". */
static bool
keep_odd(void *arg, const char *uid)
{
	(void)arg;
	return atoi(uid + 1) % 2 == 1;
}

/* Pruning many strikes in place (entries shift as others go) misses none. */
START_TEST(test_prune_many)
{
	enum { N = 3000 };
	struct state *st = open_ok();
	char uid[32];
	int k;

	for (k = 0; k < N; k++) {
		snprintf(uid, sizeof(uid), "s%d", k);
		ck_assert_int_eq(state_strike(st, uid, k), 1);
	}
	state_prune_strikes(st, keep_odd, NULL);
	for (k = 0; k < N; k++) {
		snprintf(uid, sizeof(uid), "s%d", k);
		ck_assert_uint_eq(state_strikes(st, uid, NULL), k % 2);
	}
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	st = open_ok();
	for (k = 0; k < N; k++) {
		snprintf(uid, sizeof(uid), "s%d", k);
		ck_assert_uint_eq(state_strikes(st, uid, NULL), k % 2);
	}
	state_close(&st);
}
END_TEST

/* Compaction keeps strikes, one line per UID with its latest count. */
START_TEST(test_compaction_keeps_strikes)
{
	struct state *st = open_ok();
	char *data;
	time_t last;

	record_filler(st, 1500, false);
	ck_assert_int_eq(state_strike(st, "s1", 10), 1);
	ck_assert_int_eq(state_strike(st, "s1", 11), 2);
	ck_assert_int_eq(state_strike(st, "s1", 12), 3);
	ck_assert_int_eq(state_strike(st, "s2", 20), 1);
	ck_assert_int_eq(state_strike(st, "s2", 21), 2);
	ck_assert_int_eq(state_strike(st, "gone", 30), 1);
	ck_assert_int_eq(state_record(st, "kept", 40), 0);
	ck_assert_int_eq(state_commit(st), 0);
	ck_assert_int_eq(state_forget(st, "gone"), 0);
	forget_filler(st, 1500);
	ck_assert_int_eq(state_commit(st), 0);
	/* Rewritten: the header, the delivered UID, a line per struck UID. */
	ck_assert_int_eq(count_lines(statefile), 4);
	data = check_read_file(statefile, NULL);
	ck_assert_ptr_nonnull(strstr(data, "\n+ 40 kept\n"));
	ck_assert_ptr_nonnull(strstr(data, "\n! 12 s1 3\n"));
	ck_assert_ptr_nonnull(strstr(data, "\n! 21 s2 2\n"));
	ck_assert_ptr_null(strstr(data, "gone"));
	free(data);
	/* And it counts on in the new file. */
	ck_assert_int_eq(state_strike(st, "s2", 22), 3);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);

	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert_uint_eq(state_count(st), 1);
	ck_assert_uint_eq(state_strikes(st, "s1", &last), 3);
	ck_assert_int_eq(last, 12);
	ck_assert_uint_eq(state_strikes(st, "s2", &last), 3);
	ck_assert_int_eq(last, 22);
	ck_assert_uint_eq(state_strikes(st, "gone", NULL), 0);
	state_close(&st);
}
END_TEST

/* Superseded strikes alone are dead records enough to compact. */
START_TEST(test_compaction_of_repeated_strikes)
{
	struct state *st = open_ok();
	char *data;
	int i;

	for (i = 1; i <= 1200; i++)
		ck_assert_int_eq(state_strike(st, "s", i), i);
	ck_assert_int_eq(state_commit(st), 0);
	data = check_read_file(statefile, NULL);
	ck_assert_str_eq(data, HEADER "! 1200 s 1200\n");
	free(data);
	state_close(&st);
}
END_TEST

/* Strikes are live records: many of them hold compaction back. */
START_TEST(test_strikes_are_live_for_compaction)
{
	struct state *st = open_ok();
	char uid[32];
	int i;

	for (i = 0; i < 3000; i++) {
		snprintf(uid, sizeof(uid), "s%d", i);
		ck_assert_int_eq(state_strike(st, uid, i), 1);
	}
	record_filler(st, 1200, false);
	ck_assert_int_eq(state_commit(st), 0);
	forget_filler(st, 1200);
	/* 2400 dead records, 3000 live ones: appended, not rewritten. */
	ck_assert_int_eq(state_commit(st), 0);
	ck_assert_int_eq(count_lines(statefile), 1 + 3000 + 1200 + 1200);
	state_close(&st);
}
END_TEST

/* Malformed "!" records are skipped and counted; dead ones are not. */
/*
 * A note (a message left by policy, said once) is a strike count of 0:
 * it survives reopening, is not a delivery, counts up as strikes do and
 * is pruned with them.
 */
START_TEST(test_notes)
{
	static const char *const keep[] = {"kept", NULL};
	struct listed l = {keep, 0};
	struct state *st = open_ok();
	time_t last = -1;

	ck_assert_int_eq(state_note(st, "big", 10), 1);
	ck_assert_int_eq(state_note(st, "big", 11), 0);
	ck_assert_int_eq(state_note(st, "kept", 12), 1);
	ck_assert_int_eq(state_record(st, "done", 1), 0);
	ck_assert_int_eq(state_note(st, "done", 13), -1);
	ck_assert_int_eq(errno, EEXIST);
	ck_assert_int_eq(state_note(st, "a b", 13), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_uint_eq(state_strikes(st, "big", &last), 0);
	ck_assert_int_eq(last, 10);
	ck_assert(!state_has(st, "big", NULL));
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);

	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert_int_eq(state_note(st, "big", 14), 0);
	ck_assert_int_eq(state_note(st, "kept", 14), 0);
	ck_assert_int_eq(state_strike(st, "big", 15), 1);
	ck_assert_uint_eq(state_count(st), 1);
	state_prune_strikes(st, listed_fn, &l);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);

	st = open_ok();
	ck_assert_int_eq(state_note(st, "big", 16), 1); /* pruned */
	ck_assert_int_eq(state_note(st, "kept", 16), 0);
	state_close(&st);
}
END_TEST

START_TEST(test_malformed_strikes)
{
	struct state *st;
	time_t last;

	st = open_ok(); /* creates the directory */
	state_close(&st);
	spew(statefile, HEADER "! x b1 1\n"
			       "! 1 b2\n"
			       "! 1 b3 0\n" /* a note, not malformed */
			       "! 1 b4 -1\n"
			       "! 1 b5 +1\n"
			       "! 1 b6 1x\n"
			       "! 1 b7 1 extra\n"
			       "! 1 b8  1\n"
			       "! 1 b9 99999\n"
			       "!1 b10 1\n"
			       "! -1 b11 1\n"
			       "! 1 b\x01 1\n"
			       "! 99999999999999999999999 b13 1\n"
			       "! 5 good 2\n"
			       "! 6 good 3\n"
			       "+ 1 d\n"
			       "! 7 d 1\n" /* a delivered UID: dead */
			       "! 8 gone 1\n"
			       "- gone\n"
			       "! 9 max 9999\n");
	st = open_ok();
	ck_assert_ptr_nonnull(state_load_notice(st));
	ck_assert_ptr_nonnull(
	    strstr(state_load_notice(st), "skipped 12 malformed records"));
	ck_assert_uint_eq(state_strikes(st, "good", &last), 3);
	ck_assert_int_eq(last, 6);
	ck_assert_uint_eq(state_strikes(st, "d", NULL), 0);
	ck_assert(state_has(st, "d", NULL));
	ck_assert_uint_eq(state_strikes(st, "gone", NULL), 0);
	ck_assert_uint_eq(state_strikes(st, "b1", NULL), 0);
	ck_assert_uint_eq(state_strikes(st, "b9", NULL), 0);
	ck_assert_uint_eq(state_strikes(st, "b3", NULL), 0);
	ck_assert_int_eq(state_note(st, "b3", 10), 0); /* noted already */
	ck_assert_uint_eq(state_count(st), 1);
	/* The count stops at its cap; the time still moves. */
	ck_assert_uint_eq(state_strikes(st, "max", NULL), 9999);
	ck_assert_int_eq(state_strike(st, "max", 10), 9999);
	ck_assert_uint_eq(state_strikes(st, "max", &last), 9999);
	ck_assert_int_eq(last, 10);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	st = open_ok();
	ck_assert_uint_eq(state_strikes(st, "max", &last), 9999);
	ck_assert_int_eq(last, 10);
	state_close(&st);
}
END_TEST

/* A strike record torn by a crash is dropped; the whole ones count. */
START_TEST(test_torn_strike)
{
	static const char rec[] = "! 2 s 2\n";
	struct state *st = open_ok();
	size_t cut, len, goodlen;
	char *good;
	int fd;

	ck_assert_int_eq(state_strike(st, "s", 1), 1);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	good = check_read_file(statefile, &goodlen);
	for (cut = 1; cut < sizeof(rec) - 1; cut++) {
		spew(statefile, good);
		ck_assert_int_ne(fd = open(statefile, O_WRONLY | O_APPEND), -1);
		ck_assert_int_eq(write(fd, rec, cut), (ssize_t)cut);
		close(fd);
		st = open_ok();
		ck_assert_ptr_nonnull(strstr(
		    state_load_notice(st), "dropped a torn last record"));
		ck_assert_uint_eq(state_strikes(st, "s", NULL), 1);
		state_close(&st);
		free(check_read_file(statefile, &len));
		ck_assert_uint_eq(len, goodlen);
	}
	free(good);
}
END_TEST

/*
 * Random deliveries, strikes, forgets and prunes against a plain array,
 * with commits, reopenings and (by the many superseded strikes)
 * compactions on the way.
 */
struct ref_strikes {
	unsigned char delivered[1000];
	unsigned strikes[1000];
	time_t last[1000];
	int prune_mod;
};

static bool
ref_listed(void *arg, const char *uid)
{
	const struct ref_strikes *r = arg;

	return atoi(uid) % r->prune_mod != 0;
}

START_TEST(test_random_strikes_against_reference)
{
	enum { N = 1000, OPS = 40000 };
	struct ref_strikes *r = calloc(1, sizeof(*r));
	struct state *st = open_ok();
	unsigned long rnd = 4242;
	char uid[32];
	time_t last;
	int i, k, op, rc;

	ck_assert_ptr_nonnull(r);
	for (i = 0; i < OPS; i++) {
		rnd = rnd * 6364136223846793005UL + 1442695040888963407UL;
		k = (int)((rnd >> 33) % N);
		op = (int)((rnd >> 20) % 16);
		snprintf(uid, sizeof(uid), "%d-%x", k, k * 2654435761U);
		if (op < 2) {
			ck_assert_int_eq(state_record(st, uid, i), 0);
			r->delivered[k] = 1;
			r->strikes[k] = 0;
		} else if (op < 12) {
			rc = state_strike(st, uid, i);
			if (r->delivered[k]) {
				ck_assert_int_eq(rc, -1);
				ck_assert_int_eq(errno, EEXIST);
			} else {
				r->strikes[k]++;
				r->last[k] = i;
				ck_assert_int_eq(rc, (int)r->strikes[k]);
			}
		} else if (op < 15) {
			ck_assert_int_eq(state_forget(st, uid), 0);
			r->delivered[k] = 0;
			r->strikes[k] = 0;
		} else if (i % 7 == 0) {
			r->prune_mod = 2 + k % 20;
			state_prune_strikes(st, ref_listed, r);
			for (k = 0; k < N; k++)
				if (k % r->prune_mod == 0)
					r->strikes[k] = 0;
		}
		if (i % 997 == 0)
			ck_assert_int_eq(state_commit(st), 0);
		if (i % 9973 == 0) {
			ck_assert_int_eq(state_commit(st), 0);
			state_close(&st);
			st = open_ok();
			ck_assert_ptr_null(state_load_notice(st));
		}
	}
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	for (k = 0; k < N; k++) {
		snprintf(uid, sizeof(uid), "%d-%x", k, k * 2654435761U);
		ck_assert_int_eq(state_has(st, uid, NULL), r->delivered[k]);
		ck_assert_uint_eq(state_strikes(st, uid, &last), r->strikes[k]);
		if (r->strikes[k] > 0)
			ck_assert_int_eq(last, r->last[k]);
	}
	state_close(&st);
	free(r);
}
END_TEST

/* Opens the state for HOST, PORT and USER; fails the test if it cannot. */
static struct state *
open_mailbox(const char *host, unsigned port, const char *user)
{
	char errbuf[512];
	struct state *st;

	st = state_open_mailbox(
	    statedir, ACCT, host, port, user, errbuf, sizeof(errbuf));
	if (st == NULL)
		ck_abort_msg("state_open_mailbox: %s", errbuf);
	return st;
}

/* The first line of the state file, without its newline (static). */
static const char *
header_line(void)
{
	static char line[512];
	char *data = check_read_file(statefile, NULL);

	snprintf(line, sizeof(line), "%.*s", (int)strcspn(data, "\n"), data);
	free(data);
	return line;
}

/* The host is one whatever the case of its letters and a trailing dot. */
START_TEST(test_host_case_insensitive)
{
	static const char *const spellings[] = {
	    "POP.Example.COM", "pop.example.com.", "Pop.Example.Com.", HOST};
	struct state *st = open_mailbox(HOST, 995, USER);
	size_t i;

	ck_assert_int_eq(state_record(st, "kept", 1), 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	for (i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++) {
		st = open_mailbox(spellings[i], 995, USER);
		ck_assert_ptr_null(state_load_notice(st));
		ck_assert(state_has(st, "kept", NULL));
		state_close(&st);
		ck_assert_str_eq(
		    header_line(), "popfetchd-state 1 " HOST " " USER " 995");
	}
	ck_assert(!exists(".state.old"));

	/* A file an older popfetchd wrote with the host as configured. */
	spew(statefile, "popfetchd-state 1 POP.Example.COM. " USER "\n+ 1 a\n");
	st = open_mailbox(HOST, 995, USER);
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert(state_has(st, "a", NULL));
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	ck_assert_str_eq(
	    header_line(), "popfetchd-state 1 " HOST " " USER " 995");

	/* The user is compared exactly. */
	st = open_mailbox(HOST, 995, "Alice");
	ck_assert_uint_eq(state_count(st), 0);
	ck_assert_ptr_nonnull(state_load_notice(st));
	state_close(&st);
	ck_assert(exists(".state.old"));
}
END_TEST

/* POP3 on 110 and POP3S on 995 are one mailbox: the state is kept. */
START_TEST(test_port_110_995_one_mailbox)
{
	struct state *st = open_mailbox(HOST, 110, USER);

	ck_assert_int_eq(state_record(st, "kept", 1), 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	ck_assert_str_eq(
	    header_line(), "popfetchd-state 1 " HOST " " USER " 110");

	st = open_mailbox(HOST, 995, USER);
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert(state_has(st, "kept", NULL));
	/* The header follows the port in use, at the next commit. */
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	ck_assert_str_eq(
	    header_line(), "popfetchd-state 1 " HOST " " USER " 995");

	st = open_mailbox(HOST, 110, USER);
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert(state_has(st, "kept", NULL));
	state_close(&st);
	ck_assert(!exists(".state.old"));
}
END_TEST

/*
 * Another port on the same host is another mailbox: its state is set
 * aside, not shared (a UID of one taken for the other's would delete a
 * message unread).
 */
START_TEST(test_other_port_sets_aside)
{
	static const unsigned ports[] = {1995, 110, 2110, 995};
	char path[PATH_MAX];
	struct state *st;
	size_t i;
	char *data;

	st = open_mailbox(HOST, 995, USER);
	ck_assert_int_eq(state_record(st, "a", 1), 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	snprintf(path, sizeof(path), "%s.old", statefile);
	/* Each switch between the classes {110, 995}, 1995, 2110 resets. */
	for (i = 0; i < sizeof(ports) / sizeof(ports[0]); i++) {
		st = open_mailbox(HOST, ports[i], USER);
		if (ports[i] == 110) {
			/* After 1995 the file holds 1995's state. */
			ck_assert_ptr_nonnull(state_load_notice(st));
		} else {
			ck_assert_ptr_nonnull(state_load_notice(st));
			ck_assert_ptr_nonnull(strstr(state_load_notice(st),
			    "belongs to another host, port or user"));
		}
		ck_assert_uint_eq(state_count(st), 0);
		ck_assert_int_eq(state_record(st, "b", 2), 0);
		ck_assert_int_eq(state_commit(st), 0);
		state_close(&st);
	}
	/* The first set aside held "a" for 995; the latest, 2110's "b". */
	data = check_read_file(path, NULL);
	ck_assert_str_eq(
	    data, "popfetchd-state 1 " HOST " " USER " 2110\n+ 2 b\n");
	free(data);
	data = check_read_file(statefile, NULL);
	ck_assert_str_eq(
	    data, "popfetchd-state 1 " HOST " " USER " 995\n+ 2 b\n");
	free(data);
	/* A port out of range is refused. */
	errno = 0;
	ck_assert_ptr_null(
	    state_open_mailbox(statedir, ACCT, HOST, 65536, USER, NULL, 0));
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

/*
 * A header without a port (as written before the port was recorded)
 * matches any port, and is rewritten with it at the next commit,
 * records, pending intents and strikes intact.
 */
START_TEST(test_header_without_port_adopted)
{
	static const char *const old =
	    HEADER "+ 1 a\n> 2 p t1 t1,S=3\n! 3 s 2\n- gone\n";
	struct pending_log l = {0};
	struct state *st;
	char *data;

	st = open_ok(); /* creates the directory */
	state_close(&st);
	spew(statefile, old);
	st = open_mailbox(HOST, 995, USER);
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert(state_has(st, "a", NULL));
	ck_assert_uint_eq(state_pending_count(st), 1);
	ck_assert_uint_eq(state_strikes(st, "s", NULL), 2);
	/* Not rewritten before a commit. */
	data = check_read_file(statefile, NULL);
	ck_assert_str_eq(data, old);
	free(data);
	ck_assert_int_eq(state_commit(st), 0);
	ck_assert(!exists(".state.tmp"));
	ck_assert_str_eq(
	    header_line(), "popfetchd-state 1 " HOST " " USER " 995");
	data = check_read_file(statefile, NULL);
	ck_assert_ptr_nonnull(strstr(data, "\n+ 1 a\n"));
	ck_assert_ptr_nonnull(strstr(data, "\n> 2 p t1 t1,S=3\n"));
	ck_assert_ptr_nonnull(strstr(data, "\n! 3 s 2\n"));
	ck_assert_int_eq(count_lines(statefile), 4);
	free(data);
	/* Appends go on in the rewritten file. */
	ck_assert_int_eq(state_record(st, "b", 4), 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);

	st = open_mailbox(HOST, 995, USER);
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert_uint_eq(state_count(st), 3);
	state_foreach_pending(st, pending_fn, &l);
	ck_assert_str_eq(l.text, "[p t1 t1,S=3]");
	state_close(&st);

	/* Now bound to its port: another one sets it aside. */
	st = open_mailbox(HOST, 1995, USER);
	ck_assert_uint_eq(state_count(st), 0);
	ck_assert_ptr_nonnull(state_load_notice(st));
	state_close(&st);
}
END_TEST

/* Opened without a port, a state keeps the port its file has. */
START_TEST(test_unknown_port_keeps_file_port)
{
	struct state *st = open_mailbox(HOST, 995, USER);

	ck_assert_int_eq(state_record(st, "a", 1), 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert(state_has(st, "a", NULL));
	/* A compaction rewrites the file: the port stays. */
	record_filler(st, 1500, false);
	ck_assert_int_eq(state_commit(st), 0);
	forget_filler(st, 1500);
	ck_assert_int_eq(state_commit(st), 0);
	ck_assert_int_eq(count_lines(statefile), 2);
	state_close(&st);
	ck_assert_str_eq(
	    header_line(), "popfetchd-state 1 " HOST " " USER " 995");
}
END_TEST

/* Headers that look like ours but are not: set aside, never adopted. */
START_TEST(test_header_fields_checked)
{
	static const char *const bad[] = {
	    "popfetchd-state 1 " HOST " " USER " 995 x\n",
	    "popfetchd-state 1 " HOST " " USER " 0\n",
	    "popfetchd-state 1 " HOST " " USER " 0995\n",
	    "popfetchd-state 1 " HOST " " USER " 65536\n",
	    "popfetchd-state 1 " HOST " " USER " +995\n",
	    "popfetchd-state 1 " HOST "\n",
	    "popfetchd-state 1 pop%2Eexample.com%zz " USER "\n",
	    "popfetchd-state 1 pop.example.com%00 " USER "\n",
	    "popfetchd-state 1 pop.example.com% " USER "\n",
	    "popfetchd-state 1 " HOST ".. " USER "\n",
	};
	struct state *st;
	size_t i;

	st = open_ok(); /* creates the directory */
	state_close(&st);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		spew(statefile, bad[i]);
		st = open_mailbox(HOST, 995, USER);
		ck_assert_ptr_nonnull(state_load_notice(st));
		state_close(&st);
		ck_assert(exists(".state.old") || exists(".state.corrupt"));
	}
	/* Percent-encoded letters are the same letters. */
	spew(statefile,
	    "popfetchd-state 1 pop%2Eexample%2ECOM " USER " 995\n+ 1 a\n");
	st = open_mailbox(HOST, 995, USER);
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert(state_has(st, "a", NULL));
	state_close(&st);
}
END_TEST

/* Sizes: kept with each kind of delivery record, and read back. */
START_TEST(test_sizes_round_trip)
{
	struct state *st = open_ok();
	uint64_t size;
	char *data;

	ck_assert_int_eq(state_record_size(st, "a", 1, 1234), 0);
	ck_assert_int_eq(state_record(st, "b", 2), 0);
	ck_assert_int_eq(
	    state_record_pending_size(st, "c", 3, "t", "t,S=9", 0), 0);
	ck_assert_int_eq(state_record_size(st, "d", 4, UINT64_MAX - 1), 0);
	ck_assert_int_eq(state_record_pending(st, "e", 5, "u", "u,S=1"), 0);
	/* Known at once, before the commit. */
	ck_assert(state_size(st, "a", &size));
	ck_assert_uint_eq(size, 1234);
	ck_assert(!state_size(st, "b", &size));
	ck_assert(!state_size(st, "nope", &size));
	ck_assert(!state_size(st, "bad uid", &size));
	/* Recorded already: nothing changes, its size neither. */
	ck_assert_int_eq(state_record_size(st, "a", 9, 1), 0);
	ck_assert(state_size(st, "a", &size));
	ck_assert_uint_eq(size, 1234);
	errno = 0;
	ck_assert_int_eq(
	    state_record_pending_size(st, "a", 9, "v", "v,S=1", 5), -1);
	ck_assert_int_eq(errno, EEXIST);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	data = check_read_file(statefile, NULL);
	ck_assert_str_eq(data, HEADER "+ 1 a\n# a 1234\n+ 2 b\n"
				      "> 3 c t t,S=9\n# c 0\n"
				      "+ 4 d\n# d 18446744073709551614\n"
				      "> 5 e u u,S=1\n");
	free(data);

	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert(state_size(st, "a", &size));
	ck_assert_uint_eq(size, 1234);
	ck_assert(!state_size(st, "b", NULL));
	ck_assert(state_size(st, "c", &size));
	ck_assert_uint_eq(size, 0);
	ck_assert(state_size(st, "d", &size));
	ck_assert_uint_eq(size, UINT64_MAX - 1);
	ck_assert(!state_size(st, "e", NULL));
	/* Completion keeps the size; forgetting drops it. */
	ck_assert_int_eq(state_complete(st, "c"), 0);
	ck_assert(state_size(st, "c", &size));
	ck_assert_uint_eq(size, 0);
	ck_assert_int_eq(state_forget(st, "a"), 0);
	ck_assert(!state_size(st, "a", NULL));
	ck_assert_int_eq(state_record(st, "a", 7), 0);
	ck_assert(!state_size(st, "a", NULL));
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	st = open_ok();
	ck_assert(!state_size(st, "a", NULL));
	ck_assert(state_size(st, "c", &size));
	ck_assert_uint_eq(size, 0);
	state_close(&st);
}
END_TEST

/* state_set_size(): a size for a UID recorded without one, or another. */
START_TEST(test_set_size)
{
	struct state *st = open_ok();
	uint64_t size;

	ck_assert_int_eq(state_record(st, "a", 1), 0);
	ck_assert_int_eq(state_set_size(st, "a", 10), 0);
	ck_assert_int_eq(state_set_size(st, "a", 10), 0); /* no change */
	ck_assert_int_eq(state_set_size(st, "a", 11), 0);
	errno = 0;
	ck_assert_int_eq(state_set_size(st, "nope", 1), -1);
	ck_assert_int_eq(errno, ENOENT);
	errno = 0;
	ck_assert_int_eq(state_set_size(st, "a", UINT64_MAX), -1);
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_int_eq(state_set_size(st, "a b", 1), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	ck_assert_int_eq(count_lines(statefile), 4);
	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert(state_size(st, "a", &size));
	ck_assert_uint_eq(size, 11);
	state_close(&st);
}
END_TEST

/* Compaction writes each known size after its UID's record. */
START_TEST(test_compaction_keeps_sizes)
{
	struct state *st = open_ok();
	char *data;
	uint64_t size;

	record_filler(st, 1500, true);
	ck_assert_int_eq(state_record_size(st, "k", 7, 77), 0);
	ck_assert_int_eq(
	    state_record_pending_size(st, "p", 8, "t", "t,S=1", 88), 0);
	ck_assert_int_eq(state_commit(st), 0);
	ck_assert_int_eq(count_lines(statefile), 1 + 2 * 1502);
	forget_filler(st, 1500);
	ck_assert_int_eq(state_commit(st), 0);
	/* Rewritten: the header, and two records for each live UID. */
	ck_assert_int_eq(count_lines(statefile), 5);
	data = check_read_file(statefile, NULL);
	ck_assert_ptr_nonnull(strstr(data, "\n+ 7 k\n# k 77\n"));
	ck_assert_ptr_nonnull(strstr(data, "\n> 8 p t t,S=1\n# p 88\n"));
	free(data);
	state_close(&st);
	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert(state_size(st, "k", &size));
	ck_assert_uint_eq(size, 77);
	ck_assert(state_size(st, "p", &size));
	ck_assert_uint_eq(size, 88);
	ck_assert_uint_eq(state_pending_count(st), 1);
	state_close(&st);
}
END_TEST

/* Live size records count as live: they do not make a file compactable. */
START_TEST(test_sizes_are_live_for_compaction)
{
	struct state *st = open_ok();
	char uid[32];
	int i;

	for (i = 0; i < 3000; i++) {
		snprintf(uid, sizeof(uid), "u%d", i);
		ck_assert_int_eq(state_record_size(st, uid, i, 10), 0);
	}
	ck_assert_int_eq(state_commit(st), 0);
	/* 3000 dead lines ("-", "+", "#"), 4000 live ones: kept as is. */
	forget_filler(st, 1000);
	ck_assert_int_eq(state_commit(st), 0);
	ck_assert_int_eq(count_lines(statefile), 1 + 6000 + 1000);
	/* 1000 more forgotten: 6000 dead, 2000 live. */
	for (i = 1000; i < 2000; i++) {
		snprintf(uid, sizeof(uid), "u%d", i);
		ck_assert_int_eq(state_forget(st, uid), 0);
	}
	ck_assert_int_eq(state_commit(st), 0);
	ck_assert_int_eq(count_lines(statefile), 1 + 2000);
	state_close(&st);
}
END_TEST

/*
 * Size records that do not apply are dead, malformed ones skipped; a
 * file without any (an older popfetchd's) loads with sizes unknown, and
 * a torn size record loses the size only.
 */
START_TEST(test_size_records_on_load)
{
	struct state *st;
	uint64_t size;

	st = open_ok(); /* creates the directory */
	state_close(&st);
	spew(statefile, HEADER "+ 1 a\n# a 5\n# a 6\n# ghost 7\n+ 2 b\n"
			       "# b 18446744073709551615\n# b -1\n# b\n"
			       "# b 1 2\n# b 99999999999999999999\n+ 3 c\n"
			       "# c 4");
	st = open_ok();
	ck_assert_ptr_nonnull(state_load_notice(st));
	ck_assert_ptr_nonnull(
	    strstr(state_load_notice(st), "skipped 5 malformed records"));
	ck_assert_ptr_nonnull(strstr(state_load_notice(st), "torn"));
	ck_assert_uint_eq(state_count(st), 3);
	ck_assert(state_size(st, "a", &size));
	ck_assert_uint_eq(size, 6);
	ck_assert(!state_size(st, "b", NULL));
	ck_assert(!state_size(st, "c", NULL));
	ck_assert(!state_size(st, "ghost", NULL));
	ck_assert(!state_has(st, "ghost", NULL));
	state_close(&st);

	/* What an older binary's compaction leaves: no sizes at all. */
	spew(statefile, HEADER "+ 1 a\n> 2 p t t,S=1\n");
	st = open_ok();
	ck_assert_ptr_null(state_load_notice(st));
	ck_assert(state_has(st, "a", NULL));
	ck_assert(!state_size(st, "a", NULL));
	ck_assert(!state_size(st, "p", NULL));
	state_close(&st);
}
END_TEST

static Suite *
state_suite(void)
{
	Suite *s = suite_create("state");
	TCase *tc = tcase_create("state");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_uncommitted_lost);
	tcase_add_test(tc, test_torn_last_record);
	tcase_add_test(tc, test_corrupt_middle_records);
	tcase_add_test(tc, test_torn_creation);
	tcase_add_test(tc, test_fresh_file_made_durable);
	tcase_add_test(tc, test_fresh_file_directory_sync_fails);
	tcase_add_test(tc, test_other_host_or_user);
	tcase_add_test(tc, test_header_escaping);
	tcase_add_test(tc, test_unreadable_header);
	tcase_add_test(tc, test_newer_version_refused);
	tcase_add_test(tc, test_lock);
	tcase_add_test(tc, test_lock_survives_compaction);
	tcase_add_test(tc, test_forget_and_compaction);
	tcase_add_test(tc, test_random_against_reference);
	tcase_add_test(tc, test_many_uids);
	tcase_add_test(tc, test_invalid_uids);
	tcase_add_test(tc, test_invalid_account);
	tcase_add_test(tc, test_dir_errors);
	tcase_add_test(tc, test_failed_commit_retried);
	tcase_add_test(tc, test_junk_then_append);
	tcase_add_test(tc, test_pending_round_trip);
	tcase_add_test(tc, test_complete);
	tcase_add_test(tc, test_complete_uncommitted);
	tcase_add_test(tc, test_pending_refusals);
	tcase_add_test(tc, test_compaction_keeps_pending);
	tcase_add_test(tc, test_torn_pending_tail);
	tcase_add_test(tc, test_malformed_pending_middle);
	tcase_add_test(tc, test_failed_pending_commit_retried);
	tcase_add_test(tc, test_random_pending_against_reference);
	tcase_add_test(tc, test_strikes_round_trip);
	tcase_add_test(tc, test_strikes_uncommitted_lost);
	tcase_add_test(tc, test_strikes_end_on_delivery);
	tcase_add_test(tc, test_strikes_forget_and_prune);
	tcase_add_test(tc, test_prune_many);
	tcase_add_test(tc, test_compaction_keeps_strikes);
	tcase_add_test(tc, test_compaction_of_repeated_strikes);
	tcase_add_test(tc, test_strikes_are_live_for_compaction);
	tcase_add_test(tc, test_malformed_strikes);
	tcase_add_test(tc, test_notes);
	tcase_add_test(tc, test_torn_strike);
	tcase_add_test(tc, test_random_strikes_against_reference);
	tcase_add_test(tc, test_host_case_insensitive);
	tcase_add_test(tc, test_port_110_995_one_mailbox);
	tcase_add_test(tc, test_other_port_sets_aside);
	tcase_add_test(tc, test_header_without_port_adopted);
	tcase_add_test(tc, test_unknown_port_keeps_file_port);
	tcase_add_test(tc, test_header_fields_checked);
	tcase_add_test(tc, test_sizes_round_trip);
	tcase_add_test(tc, test_set_size);
	tcase_add_test(tc, test_compaction_keeps_sizes);
	tcase_add_test(tc, test_size_records_on_load);
	tcase_add_test(tc, test_sizes_are_live_for_compaction);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_main(state_suite());
}
