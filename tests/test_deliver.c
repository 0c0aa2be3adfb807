/*
 * Tests of daemon/deliver.c, driven step by step: opening (and the error
 * prefixes and the busy lock a caller sees), a batch begun, written,
 * ended, dropped, aborted and flushed; a failure injected at each fail
 * point of the flush, and a kill at each of its crash points, each
 * followed by a fresh open and recovery that must find every message
 * delivered once and recorded, or absent and not recorded; and the
 * state's answers and changes outside deliveries (known, strikes, notes,
 * records, forgets, prune, commit).
 *
 * Built with the test hooks (POPFETCHD_FAIL, POPFETCHD_CRASH_AT).
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "deliver.h"
#include "fsutil.h"
#include "maildir.h"
#include "state.h"
#include "testhook.h"
#include "check_main.h"
#include "check_util.h"

#define ACCT "work"
#define HOST "pop.example.com"
#define USER "alice"
#define NOW  1700000000

/* The batch most tests deliver: three messages with a UID, one without. */
#define NMSG 4
static const char *const uids[NMSG] = {"uid-a", "uid-b", "uid-c", NULL};

static char tmpdir[1024];
static char mdpath[2048];
static char statedir[2048];

/* What the DURABLE callback saw. */
struct seen {
	unsigned long tags[16];
	size_t n;
};

static void setup(void);
static void teardown(void);
static struct deliver_where where(void);
static struct deliver *open_ok_where(const struct deliver_where *w);
static struct deliver *open_ok(void);
static struct deliver *reopen_recovered(int *recovered);
static void message(int i, bool crlf, char *buf, size_t len);
static void put(struct deliver *d, unsigned long tag, const char *uid,
    uint64_t size, const char *text);
static void put_batch(struct deliver *d);
static void count_copies(int copies[NMSG]);
static int check_outcome(struct deliver *d);
static void durable(void *arg, unsigned long tag);
static void durable_record(void *arg, unsigned long tag);
static void crash_child(long k);
static bool listed(void *arg, const char *uid);
static Suite *deliver_suite(void);

static void
setup(void)
{
	check_tmpdir(tmpdir, sizeof(tmpdir), "test_deliver");
	snprintf(mdpath, sizeof(mdpath), "%s/Maildir", tmpdir);
	snprintf(statedir, sizeof(statedir), "%s/state", tmpdir);
	unsetenv("POPFETCHD_FAIL");
	unsetenv("POPFETCHD_CRASH_AT");
	/* The cases may share one process (CK_FORK=no). */
	testhook_reset();
}

static void
teardown(void)
{
	check_rm_rf(tmpdir);
}

static struct deliver_where
where(void)
{
	struct deliver_where w = {.maildir = mdpath,
	    .state_dir = statedir,
	    .account = ACCT,
	    .host = HOST,
	    .port = 995,
	    .user = USER};

	return w;
}

/* Opens W and recovers, as a poll starts; nothing was interrupted. */
static struct deliver *
open_ok_where(const struct deliver_where *w)
{
	struct deliver *d;
	char err[512];

	d = deliver_open(w, err, sizeof(err));
	ck_assert_msg(d != NULL, "deliver_open: %s", err);
	ck_assert_int_eq(deliver_recover(d, err, sizeof(err)), 0);
	return d;
}

/* Opens and recovers, as a poll starts; nothing was interrupted. */
static struct deliver *
open_ok(void)
{
	struct deliver_where w = where();
	struct deliver *d;
	char err[512];

	d = deliver_open(&w, err, sizeof(err));
	ck_assert_msg(d != NULL, "deliver_open: %s", err);
	ck_assert_int_eq(deliver_recover(d, err, sizeof(err)), 0);
	return d;
}

/* Opens afresh and recovers; *RECOVERED gets what recovery completed. */
static struct deliver *
reopen_recovered(int *recovered)
{
	struct deliver_where w = where();
	struct deliver *d;
	char err[512];

	d = deliver_open(&w, err, sizeof(err));
	ck_assert_msg(d != NULL, "deliver_open: %s", err);
	*recovered = deliver_recover(d, err, sizeof(err));
	ck_assert_msg(*recovered >= 0, "deliver_recover: %s", err);
	return d;
}

/* Message I as the server sends it (CRLF) or as the Maildir holds it. */
static void
message(int i, bool crlf, char *buf, size_t len)
{
	const char *eol = crlf ? "\r\n" : "\n";

	snprintf(buf, len, "Subject: message %d%s%sbody of message %d%s", i,
	    eol, eol, i, eol);
}

/* Delivers TEXT into the batch as TAG, in two pieces. */
static void
put(struct deliver *d, unsigned long tag, const char *uid, uint64_t size,
    const char *text)
{
	size_t len = strlen(text), half = len / 2;
	unsigned long long got;

	ck_assert_int_eq(deliver_begin(d, tag, uid, size), 0);
	ck_assert_int_eq(deliver_write(d, text, half), 0);
	ck_assert_int_eq(deliver_write(d, text + half, len - half), 0);
	ck_assert_int_eq(deliver_end(d, &got), 0);
	ck_assert_uint_gt(got, 0);
}

/* The NMSG messages into the batch, tags 1..NMSG, sizes listed. */
static void
put_batch(struct deliver *d)
{
	char text[256];
	int i;

	for (i = 0; i < NMSG; i++) {
		message(i, true, text, sizeof(text));
		put(d, (unsigned long)i + 1, uids[i], strlen(text), text);
	}
	ck_assert_uint_eq(deliver_pending(d), NMSG);
}

/*
 * COPIES[i] gets how many files in new/ hold message i; any other file
 * there fails the test.
 */
static void
count_copies(int copies[NMSG])
{
	char path[PATH_MAX], want[256], *got;
	struct dirent *de;
	size_t len;
	DIR *dir;
	int i;

	memset(copies, 0, NMSG * sizeof(*copies));
	snprintf(path, sizeof(path), "%s/new", mdpath);
	ck_assert_ptr_nonnull(dir = opendir(path));
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/new/%s", mdpath, de->d_name);
		got = check_read_file(path, &len);
		for (i = 0; i < NMSG; i++) {
			message(i, false, want, sizeof(want));
			if (strcmp(got, want) == 0)
				break;
		}
		ck_assert_msg(i < NMSG, "new/%s holds no message sent: %s",
		    de->d_name, got);
		copies[i]++;
		free(got);
	}
	closedir(dir);
}

/*
 * The invariant after recovery: each message with a UID is in new/ once
 * and recorded, or absent and not recorded; the one without a UID (never
 * recorded) is there at most once. Returns how many with a UID are
 * delivered.
 */
static int
check_outcome(struct deliver *d)
{
	int copies[NMSG], i, delivered = 0;
	bool known;

	count_copies(copies);
	for (i = 0; i < NMSG; i++) {
		if (uids[i] == NULL) {
			ck_assert_int_le(copies[i], 1);
			continue;
		}
		known = deliver_known(d, uids[i], NULL, NULL);
		ck_assert_msg(
		    (copies[i] == 1 && known) || (copies[i] == 0 && !known),
		    "%s: %d copies in new/, %s", uids[i], copies[i],
		    known ? "recorded" : "not recorded");
		delivered += copies[i];
	}
	return delivered;
}

static void
durable(void *arg, unsigned long tag)
{
	struct seen *s = arg;

	ck_assert_uint_lt(s->n, sizeof(s->tags) / sizeof(s->tags[0]));
	s->tags[s->n++] = tag;
}

START_TEST(test_round_trip)
{
	struct seen seen = {0};
	struct deliver *d = open_ok();
	char err[512];
	int copies[NMSG], i, recovered;
	uint64_t size;
	time_t first;

	ck_assert_ptr_null(deliver_notice(d));
	put_batch(d);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), NMSG);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 0);
	/* Not durable, not recorded, before the flush. */
	ck_assert(!deliver_known(d, uids[0], NULL, NULL));
	ck_assert_int_eq(deliver_flush(d, durable, &seen, err, sizeof(err)), 0);
	ck_assert_uint_eq(seen.n, NMSG);
	for (i = 0; i < NMSG; i++)
		ck_assert_uint_eq(seen.tags[i], (unsigned long)i + 1);
	ck_assert_uint_eq(deliver_pending(d), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	count_copies(copies);
	for (i = 0; i < NMSG; i++)
		ck_assert_int_eq(copies[i], 1);
	/* A flush with nothing in the batch calls nothing. */
	ck_assert_int_eq(deliver_flush(d, durable, &seen, err, sizeof(err)), 0);
	ck_assert_uint_eq(seen.n, NMSG);
	deliver_free(&d);
	ck_assert_ptr_null(d);

	/*
	 * Recorded durably, with the listed size. The intents were marked
	 * complete after the flush's commit, and nothing committed since:
	 * recovery finds them again, and completes them without a copy.
	 */
	d = reopen_recovered(&recovered);
	ck_assert_int_eq(recovered, NMSG - 1);
	ck_assert_int_eq(check_outcome(d), NMSG - 1);
	deliver_free(&d);
	d = reopen_recovered(&recovered);
	ck_assert_int_eq(recovered, 0);
	ck_assert_int_eq(check_outcome(d), NMSG - 1);
	ck_assert(deliver_known(d, uids[1], &first, &size));
	ck_assert_int_eq(first, NOW);
	message(1, true, err, sizeof(err));
	ck_assert_uint_eq(size, strlen(err));
	deliver_free(&d);
}
END_TEST

/* Sizes not listed are not recorded; a sync per file delivers too. */
START_TEST(test_size_unknown_sync_each_file)
{
	struct deliver_where w = where();
	struct seen seen = {0};
	struct deliver *d;
	char err[512];
	uint64_t size = 0;
	time_t first = 0;

	w.sync_each_file = true;
	ck_assert_ptr_nonnull(d = deliver_open(&w, err, sizeof(err)));
	ck_assert_int_eq(deliver_recover(d, err, sizeof(err)), 0);
	put(d, 7, "u7", DELIVER_SIZE_UNKNOWN, "a\r\nb\r\n");
	ck_assert_int_eq(deliver_flush(d, durable, &seen, err, sizeof(err)), 0);
	ck_assert_uint_eq(seen.n, 1);
	ck_assert(deliver_known(d, "u7", &first, &size));
	ck_assert_uint_eq(size, DELIVER_SIZE_UNKNOWN);
	ck_assert_int_eq(first, NOW);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 1);
	ck_assert_int_eq(deliver_free_space(d, &size), 0);
	ck_assert_uint_gt(size, 0);
	deliver_free(&d);
}
END_TEST

/*
 * The syncs of a first poll's batch. In batch mode the fresh state's
 * file, made unsynced by the open, is durable with the batch's syncfs:
 * the syncfs, the commit's fdatasync and the fsync of new/, and no sync
 * of the state directory. Syncing each file, its first commit syncs
 * the directory too: the message, tmp/, the Maildir and its parent (made
 * by this open), the commit's data and directory, new/.
 */
START_TEST(test_first_batch_syncs)
{
	struct deliver_where w = where();
	struct seen seen = {0};
	struct deliver *d;
	unsigned long before;
	char err[512];

	w.sync_each_file = _i == 1;
	before = fsutil_test_syncs();
	d = open_ok_where(&w);
	ck_assert_uint_eq(fsutil_test_syncs() - before, 0);
	put(d, 1, "u1", 6, "a\r\nb\r\n");
	before = fsutil_test_syncs();
	ck_assert_int_eq(deliver_flush(d, durable, &seen, err, sizeof(err)), 0);
	ck_assert_uint_eq(fsutil_test_syncs() - before, (_i == 1 ? 7 : 3));
	/* The next batch: the directory is not synced again. */
	put(d, 2, "u2", 6, "c\r\nd\r\n");
	before = fsutil_test_syncs();
	ck_assert_int_eq(deliver_flush(d, durable, &seen, err, sizeof(err)), 0);
	ck_assert_uint_eq(fsutil_test_syncs() - before, (_i == 1 ? 4 : 3));
	ck_assert_uint_eq(seen.n, 2);
	deliver_free(&d);
}
END_TEST

/*
 * A Maildir++ folder: the root and the folder are made (the folder with
 * its marker file, under its encoded name), and mail goes to the folder
 * only; a name the rules refuse fails the open with EINVAL and says why.
 */
START_TEST(test_open_folder)
{
	struct deliver_where w = where();
	struct deliver *d;
	struct stat sb;
	char err[512], path[PATH_MAX];
	size_t n;

	w.folder = ".Lists.Entwürfe";
	d = deliver_open(&w, err, sizeof(err));
	ck_assert_msg(d != NULL, "deliver_open: %s", err);
	ck_assert_int_eq(deliver_recover(d, err, sizeof(err)), 0);
	put(d, 1, "uid-f", DELIVER_SIZE_UNKNOWN, "Subject: f\r\n\r\nbody\r\n");
	ck_assert_int_eq(
	    deliver_flush(d, durable, &(struct seen){0}, err, sizeof(err)), 0);
	ck_assert_int_eq(deliver_commit(d), 0);
	deliver_free(&d);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "cur"), 0);
	ck_assert_int_eq(
	    check_count_entries(mdpath, ".Lists.Entw&APw-rfe/new"), 1);
	ck_assert_int_eq(
	    check_count_entries(mdpath, ".Lists.Entw&APw-rfe/cur"), 0);
	n = (size_t)snprintf(
	    path, sizeof(path), "%s/.Lists.Entw&APw-rfe/maildirfolder", mdpath);
	ck_assert_uint_lt(n, sizeof(path));
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert(S_ISREG(sb.st_mode));
	ck_assert_int_eq(sb.st_size, 0);

	/* Opening again finds it all in place (the marker is not an error). */
	d = open_ok_where(&w);
	deliver_free(&d);

	w.folder = "..Lists";
	errno = 0;
	ck_assert_ptr_null(d = deliver_open(&w, err, sizeof(err)));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_msg(
	    strncmp(err, "maildir: folder ..Lists: ", 25) == 0, "%s", err);
}
END_TEST

START_TEST(test_open_errors)
{
	struct deliver_where w = where();
	char err[512], why[512], want[1100], path[PATH_MAX];
	struct deliver *d, *d2;
	struct maildir *md;
	struct state *st;

	/* The Maildir's error, as maildir_open() words it, after "maildir: ".
	 */
	snprintf(path, sizeof(path), "%s/missing/Maildir", tmpdir);
	w.maildir = path;
	errno = 0;
	ck_assert_ptr_null(d = deliver_open(&w, err, sizeof(err)));
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_ptr_null(md = maildir_open(path, why, sizeof(why)));
	snprintf(want, sizeof(want), "maildir: %s", why);
	ck_assert_str_eq(err, want);

	/* The state's, after "state: ". */
	snprintf(path, sizeof(path), "%s/file", tmpdir);
	ck_assert_int_ge(
	    close(open(path, O_WRONLY | O_CREAT | O_EXCL, 0600)), 0);
	snprintf(path, sizeof(path), "%s/file/state", tmpdir);
	w = where();
	w.state_dir = path;
	errno = 0;
	ck_assert_ptr_null(d = deliver_open(&w, err, sizeof(err)));
	ck_assert_int_eq(errno, ENOTDIR);
	ck_assert_ptr_null(st = state_open_mailbox(
			       path, ACCT, HOST, 995, USER, why, sizeof(why)));
	snprintf(want, sizeof(want), "state: %s", why);
	ck_assert_str_eq(err, want);

	/* The state held: EWOULDBLOCK, which callers take for "busy". */
	d = open_ok();
	w = where();
	errno = 0;
	ck_assert_ptr_null(d2 = deliver_open(&w, err, sizeof(err)));
	ck_assert_int_eq(errno, EWOULDBLOCK);
	ck_assert_ptr_null(st = state_open_mailbox(statedir, ACCT, HOST, 995,
			       USER, why, sizeof(why)));
	snprintf(want, sizeof(want), "state: %s", why);
	ck_assert_str_eq(err, want);
	/* Freeing releases it. */
	deliver_free(&d);
	d2 = open_ok();
	deliver_free(&d2);
}
END_TEST

/* A state for another mailbox is set aside, and the notice says so. */
START_TEST(test_notice)
{
	struct deliver_where w = where();
	struct seen seen = {0};
	struct deliver *d = open_ok();
	char err[512];

	put(d, 1, "u1", 5, "12345");
	ck_assert_int_eq(deliver_flush(d, durable, &seen, err, sizeof(err)), 0);
	deliver_free(&d);
	w.user = "bob";
	ck_assert_ptr_nonnull(d = deliver_open(&w, err, sizeof(err)));
	ck_assert_ptr_nonnull(deliver_notice(d));
	ck_assert(!deliver_known(d, "u1", NULL, NULL));
	deliver_free(&d);
}
END_TEST

/* An aborted message, or one left begun at free, leaves no file. */
START_TEST(test_abort_leaves_nothing)
{
	struct deliver *d = open_ok();

	ck_assert_int_eq(deliver_begin(d, 1, "u1", 10), 0);
	ck_assert_int_eq(deliver_write(d, "partial\r\n", 9), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 1);
	deliver_abort(d);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	ck_assert_uint_eq(deliver_pending(d), 0);
	/* Nothing begun: writing and ending are refused, aborting is not. */
	ck_assert_int_eq(deliver_write(d, "x", 1), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(deliver_end(d, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);
	deliver_abort(d);
	/* One begun while another is: refused. */
	ck_assert_int_eq(deliver_begin(d, 2, "u2", 10), 0);
	ck_assert_int_eq(deliver_begin(d, 3, "u3", 10), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(deliver_write(d, "begun\r\n", 7), 0);
	deliver_free(&d);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 0);
	d = open_ok();
	ck_assert(!deliver_known(d, "u1", NULL, NULL));
	ck_assert(!deliver_known(d, "u2", NULL, NULL));
	deliver_free(&d);
}
END_TEST

/* A message dropped before the flush is neither published nor recorded. */
START_TEST(test_drop)
{
	struct seen seen = {0};
	struct deliver *d = open_ok();
	char err[512];
	int copies[NMSG];

	put_batch(d);
	ck_assert_int_eq(deliver_drop(d, 2), 0);
	ck_assert_uint_eq(deliver_pending(d), NMSG - 1);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), NMSG - 1);
	ck_assert_int_eq(deliver_drop(d, 2), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(deliver_flush(d, durable, &seen, err, sizeof(err)), 0);
	ck_assert_uint_eq(seen.n, NMSG - 1);
	ck_assert_uint_eq(seen.tags[0], 1);
	ck_assert_uint_eq(seen.tags[1], 3);
	ck_assert_uint_eq(seen.tags[2], 4);
	/* Once durable, a message cannot be dropped. */
	ck_assert_int_eq(deliver_drop(d, 1), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	count_copies(copies);
	ck_assert_int_eq(copies[0], 1);
	ck_assert_int_eq(copies[1], 0);
	ck_assert_int_eq(copies[2], 1);
	ck_assert(!deliver_known(d, uids[1], NULL, NULL));
	/* Dropping them all leaves nothing. */
	put_batch(d);
	ck_assert_int_eq(deliver_drop(d, 4), 0);
	ck_assert_int_eq(deliver_drop(d, 1), 0);
	ck_assert_int_eq(deliver_drop(d, 3), 0);
	ck_assert_int_eq(deliver_drop(d, 2), 0);
	ck_assert_uint_eq(deliver_pending(d), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	deliver_free(&d);
}
END_TEST

/* A flush on a thread of its own, as the session's worker runs it. */
struct flush_job {
	struct deliver *d;
	struct seen seen;
	char err[512];
	int rc;
};

static void *
flush_thread(void *arg)
{
	struct flush_job *j = arg;

	j->rc = deliver_flush(j->d, durable, &j->seen, j->err, sizeof(j->err));
	return NULL;
}

/*
 * The next batch fills while the sealed one is flushed on another
 * thread: the flush makes durable only what was sealed, a message of the
 * filling batch can be dropped meanwhile (a sealed one cannot), and the
 * next flush takes the rest.
 */
START_TEST(test_seal_then_fill)
{
	struct flush_job j = {0};
	struct seen seen = {0};
	struct deliver *d = open_ok();
	char text[256], err[512];
	int copies[NMSG], i;
	uint64_t bytes = 0;
	pthread_t t;

	for (i = 0; i < 2; i++) {
		message(i, true, text, sizeof(text));
		put(d, (unsigned long)i + 1, uids[i], strlen(text), text);
		message(i, false, text, sizeof(text));
		bytes += strlen(text);
	}
	ck_assert_uint_eq(deliver_pending_bytes(d), bytes);
	ck_assert_uint_eq(deliver_seal(d), 2);
	ck_assert_uint_eq(deliver_pending(d), 0);
	ck_assert_uint_eq(deliver_pending_bytes(d), 0);
	j.d = d;
	ck_assert_int_eq(pthread_create(&t, NULL, flush_thread, &j), 0);
	for (i = 2; i < NMSG; i++) {
		message(i, true, text, sizeof(text));
		put(d, (unsigned long)i + 1, uids[i], strlen(text), text);
	}
	ck_assert_uint_eq(deliver_pending(d), 2);
	ck_assert_int_eq(deliver_drop(d, 3), 0);
	message(3, false, text, sizeof(text));
	ck_assert_uint_eq(deliver_pending_bytes(d), strlen(text));
	/* Sealed: the flush's, not the filler's to drop. */
	ck_assert_int_eq(deliver_drop(d, 1), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(pthread_join(t, NULL), 0);
	ck_assert_msg(j.rc == 0, "flush: %s", j.err);
	ck_assert_uint_eq(j.seen.n, 2);
	ck_assert_uint_eq(j.seen.tags[0], 1);
	ck_assert_uint_eq(j.seen.tags[1], 2);
	ck_assert_uint_eq(deliver_pending(d), 1);
	/* Without a seal the flush takes the batch filled so far. */
	ck_assert_int_eq(deliver_flush(d, durable, &seen, err, sizeof(err)), 0);
	ck_assert_uint_eq(seen.n, 1);
	ck_assert_uint_eq(seen.tags[0], 4);
	count_copies(copies);
	ck_assert_int_eq(copies[0], 1);
	ck_assert_int_eq(copies[1], 1);
	ck_assert_int_eq(copies[2], 0);
	ck_assert_int_eq(copies[3], 1);
	ck_assert(!deliver_known(d, uids[2], NULL, NULL));
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	deliver_free(&d);
}
END_TEST

/*
 * A failed flush while the next batch fills: the sealed batch is lost as
 * any failed batch is, the filling one untouched until discarded, and
 * then nothing of either is in new/ or tmp/.
 */
START_TEST(test_failed_flush_then_discard)
{
	struct seen seen = {0};
	struct deliver *d = open_ok();
	char text[256], err[512];

	message(0, true, text, sizeof(text));
	put(d, 1, uids[0], strlen(text), text);
	ck_assert_uint_eq(deliver_seal(d), 1);
	message(1, true, text, sizeof(text));
	put(d, 2, uids[1], strlen(text), text);
	ck_assert_int_eq(setenv("POPFETCHD_FAIL", "sync of tmp/", 1), 0);
	ck_assert_int_eq(
	    deliver_flush(d, durable, &seen, err, sizeof(err)), -1);
	unsetenv("POPFETCHD_FAIL");
	ck_assert_uint_eq(seen.n, 0);
	ck_assert_uint_eq(deliver_pending(d), 1);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 1);
	deliver_discard(d);
	ck_assert_uint_eq(deliver_pending(d), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	ck_assert_int_eq(deliver_flush(d, durable, &seen, err, sizeof(err)), 0);
	ck_assert_uint_eq(seen.n, 0);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 0);
	ck_assert(!deliver_known(d, uids[0], NULL, NULL));
	ck_assert(!deliver_known(d, uids[1], NULL, NULL));
	deliver_free(&d);
}
END_TEST

/* A UID delivered already: the new copy is dropped, never published. */
START_TEST(test_uid_recorded_already)
{
	struct seen seen = {0};
	struct deliver *d = open_ok();
	char err[512];

	ck_assert_int_eq(deliver_record(d, "u1", NOW), 0);
	put(d, 1, "u1", 3, "one");
	put(d, 2, "u2", 3, "two");
	ck_assert_int_eq(deliver_flush(d, durable, &seen, err, sizeof(err)), 0);
	ck_assert_uint_eq(seen.n, 1);
	ck_assert_uint_eq(seen.tags[0], 2);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 1);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	deliver_free(&d);
}
END_TEST

struct keep_dup {
	struct deliver *d;
	struct seen seen;
};

/* The session's keep-mode callback: records a UID the copy shares. */
static void
durable_record(void *arg, unsigned long tag)
{
	struct keep_dup *k = arg;

	durable(&k->seen, tag);
	if (tag == 1 && !deliver_known(k->d, "shared", NULL, NULL))
		ck_assert_int_eq(deliver_record(k->d, "shared", NOW + 5), 0);
}

/* Recorded from inside DURABLE, durable with the next commit. */
START_TEST(test_record_in_durable)
{
	struct keep_dup k = {.d = open_ok()};
	char err[512];
	time_t first;
	int recovered;

	put(k.d, 1, NULL, 4, "copy");
	ck_assert_int_eq(
	    deliver_flush(k.d, durable_record, &k, err, sizeof(err)), 0);
	ck_assert_uint_eq(k.seen.n, 1);
	ck_assert(deliver_known(k.d, "shared", &first, NULL));
	ck_assert_int_eq(first, NOW + 5);
	/* Recorded again: nothing changes. */
	ck_assert_int_eq(deliver_record(k.d, "shared", NOW + 9), 0);
	ck_assert(deliver_known(k.d, "shared", &first, NULL));
	ck_assert_int_eq(first, NOW + 5);
	ck_assert_int_eq(deliver_commit(k.d), 0);
	deliver_free(&k.d);
	k.d = reopen_recovered(&recovered);
	ck_assert(deliver_known(k.d, "shared", &first, NULL));
	ck_assert_int_eq(first, NOW + 5);
	deliver_free(&k.d);
}
END_TEST

/* A fail point of deliver_flush() and what recovery must then find. */
struct fail_case {
	const char *fail; /* POPFETCHD_FAIL */
	bool commit;	  /* the caller commits the state after the failure */
	int recovered;	  /* intents recovery completes */
	int delivered;	  /* messages with a UID delivered in the end */
	int tmp_left;	  /* files left in tmp/ after recovery */
};

/*
 * Step by step: before the commit point nothing counts (a failed commit
 * leaves its intents in memory, where the caller's own last commit may
 * still write them); after it everything does, whatever step failed.
 * The message without a UID is dropped unless already linked.
 */
static const struct fail_case fail_cases[] = {
    {"sync of tmp/", false, 0, 0, 0},
    {"sync of tmp/", true, 0, 0, 0},
    {"state commit", false, 0, 0, NMSG - 1},
    {"state commit", true, NMSG - 1, NMSG - 1, 0},
    {"link into new/", false, NMSG - 1, NMSG - 1, 0},
    {"link into new/@2", false, NMSG - 1, NMSG - 1, 0},
    {"link into new/@3", true, NMSG - 1, NMSG - 1, 0},
    {"fsync of new/", false, NMSG - 1, NMSG - 1, 0},
    {"fsync of new/", true, NMSG - 1, NMSG - 1, 0},
};

START_TEST(test_flush_failure)
{
	const struct fail_case *c = &fail_cases[_i];
	struct seen seen = {0};
	struct deliver *d = open_ok();
	char err[512] = "";
	size_t namelen = strcspn(c->fail, "@");
	int recovered;

	put_batch(d);
	ck_assert_int_eq(setenv("POPFETCHD_FAIL", c->fail, 1), 0);
	errno = 0;
	ck_assert_int_eq(
	    deliver_flush(d, durable, &seen, err, sizeof(err)), -1);
	ck_assert_int_eq(errno, EIO);
	unsetenv("POPFETCHD_FAIL");
	ck_assert_msg(strncmp(err, c->fail, namelen) == 0 &&
			  strstr(err, strerror(EIO)) != NULL,
	    "%s: message \"%s\"", c->fail, err);
	ck_assert_uint_eq(seen.n, 0);
	ck_assert_uint_eq(deliver_pending(d), 0);
	/* Final for the batch: nothing of it is flushed later. */
	ck_assert_int_eq(deliver_flush(d, durable, &seen, err, sizeof(err)), 0);
	ck_assert_uint_eq(seen.n, 0);
	if (c->commit)
		ck_assert_int_eq(deliver_commit(d), 0);
	deliver_free(&d);

	d = reopen_recovered(&recovered);
	ck_assert_int_eq(recovered, c->recovered);
	ck_assert_int_eq(check_outcome(d), c->delivered);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), c->tmp_left);
	deliver_free(&d);
	/* Recovery is done once: a second finds nothing and changes nothing. */
	d = reopen_recovered(&recovered);
	ck_assert_int_eq(recovered, 0);
	ck_assert_int_eq(check_outcome(d), c->delivered);
	deliver_free(&d);
}
END_TEST

/*
 * In a child: opens, delivers the batch and flushes, killed at crash
 * point K (POPFETCHD_CRASH_AT). Exits 0 if it got through.
 */
static void
crash_child(long k)
{
	struct seen seen = {0};
	struct deliver_where w = where();
	struct deliver *d;
	char err[512], path[PATH_MAX], text[256];
	int fd, i;

	snprintf(path, sizeof(path), "%s/stderr", tmpdir);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) == -1 ||
	    dup2(fd, 2) == -1)
		_exit(10);
	snprintf(text, sizeof(text), "%ld", k);
	if (setenv("POPFETCHD_CRASH_AT", text, 1) == -1 ||
	    (d = deliver_open(&w, err, sizeof(err))) == NULL ||
	    deliver_recover(d, err, sizeof(err)) == -1)
		_exit(11);
	for (i = 0; i < NMSG; i++) {
		message(i, true, text, sizeof(text));
		if (deliver_begin(
			d, (unsigned long)i + 1, uids[i], strlen(text)) == -1 ||
		    deliver_write(d, text, strlen(text)) == -1 ||
		    deliver_end(d, NULL) == -1)
			_exit(12);
	}
	/* The commit a poll ends with, which completes the intents. */
	if (deliver_flush(d, durable, &seen, err, sizeof(err)) == -1 ||
	    seen.n != NMSG || deliver_commit(d) == -1)
		_exit(13);
	deliver_free(&d);
	_exit(0);
}

/*
 * Killed at each crash point in turn, then opened and recovered: all
 * messages with a UID are delivered once or none is (the intents are
 * committed together), and from the commit point on all are.
 */
START_TEST(test_crash_points)
{
	struct deliver *d;
	char path[PATH_MAX], *where_killed;
	int status, recovered, delivered, was = 0;
	size_t len;
	pid_t pid;
	long k;

	for (k = 1; k < 100; k++) {
		check_rm_rf(mdpath);
		check_rm_rf(statedir);
		ck_assert_int_ne(pid = fork(), -1);
		if (pid == 0)
			crash_child(k);
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		if (WIFEXITED(status)) {
			ck_assert_int_eq(WEXITSTATUS(status), 0);
			break;
		}
		ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		snprintf(path, sizeof(path), "%s/stderr", tmpdir);
		where_killed = check_read_file(path, &len);
		d = reopen_recovered(&recovered);
		delivered = check_outcome(d);
		ck_assert_msg(delivered == 0 || delivered == NMSG - 1,
		    "%s: %d of %d delivered", where_killed, delivered,
		    NMSG - 1);
		ck_assert_msg(
		    delivered >= was, "%s: fewer delivered", where_killed);
		ck_assert_msg(recovered == 0 || delivered == NMSG - 1,
		    "%s: recovered %d", where_killed, recovered);
		was = delivered;
		free(where_killed);
		deliver_free(&d);
	}
	/* The flush has crash points, and one of them is past the commit. */
	ck_assert_int_gt(k, 1);
	ck_assert_int_lt(k, 100);
	ck_assert_int_eq(was, NMSG - 1);
	d = reopen_recovered(&recovered);
	ck_assert_int_eq(recovered, 0);
	ck_assert_int_eq(check_outcome(d), NMSG - 1);
	deliver_free(&d);
}
END_TEST

/* In a crash child: message I into the batch being filled, or exit 12. */
static void
put_or_exit(struct deliver *d, int i)
{
	char text[256];

	message(i, true, text, sizeof(text));
	if (deliver_begin(d, (unsigned long)i + 1, uids[i], strlen(text)) ==
		-1 ||
	    deliver_write(d, text, strlen(text)) == -1 ||
	    deliver_end(d, NULL) == -1)
		_exit(12);
}

/*
 * As crash_child(), in two batches: the second is written while the
 * first is flushed on a thread, as a session does.
 */
static void
crash_child_overlap(long k)
{
	struct flush_job j = {0};
	struct seen seen = {0};
	struct deliver_where w = where();
	char err[512], path[PATH_MAX], num[32];
	pthread_t t;
	int fd;

	snprintf(path, sizeof(path), "%s/stderr", tmpdir);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) == -1 ||
	    dup2(fd, 2) == -1)
		_exit(10);
	snprintf(num, sizeof(num), "%ld", k);
	if (setenv("POPFETCHD_CRASH_AT", num, 1) == -1 ||
	    (j.d = deliver_open(&w, err, sizeof(err))) == NULL ||
	    deliver_recover(j.d, err, sizeof(err)) == -1)
		_exit(11);
	put_or_exit(j.d, 0);
	put_or_exit(j.d, 1);
	deliver_seal(j.d);
	if (pthread_create(&t, NULL, flush_thread, &j) != 0)
		_exit(14);
	put_or_exit(j.d, 2);
	put_or_exit(j.d, 3);
	if (pthread_join(t, NULL) != 0 || j.rc == -1 || j.seen.n != 2 ||
	    deliver_flush(j.d, durable, &seen, err, sizeof(err)) == -1 ||
	    seen.n != 2 || deliver_commit(j.d) == -1)
		_exit(13);
	deliver_free(&j.d);
	_exit(0);
}

/*
 * Killed at each crash point in turn while one batch is flushed and the
 * next written: after recovery each message with a UID is in new/ once
 * and recorded, or neither (check_outcome()); whichever thread passed
 * the point.
 */
START_TEST(test_crash_points_overlap)
{
	struct deliver *d;
	int status, recovered;
	pid_t pid;
	long k;

	for (k = 1; k < 200; k++) {
		check_rm_rf(mdpath);
		check_rm_rf(statedir);
		ck_assert_int_ne(pid = fork(), -1);
		if (pid == 0)
			crash_child_overlap(k);
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		if (WIFEXITED(status)) {
			ck_assert_int_eq(WEXITSTATUS(status), 0);
			break;
		}
		ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
		d = reopen_recovered(&recovered);
		check_outcome(d);
		deliver_free(&d);
	}
	ck_assert_int_gt(k, 1);
	ck_assert_int_lt(k, 200);
	d = reopen_recovered(&recovered);
	ck_assert_int_eq(check_outcome(d), NMSG - 1);
	deliver_free(&d);
}
END_TEST

struct listing {
	const char *const *uids;
	size_t n;
	unsigned asked;
};

static bool
listed(void *arg, const char *uid)
{
	struct listing *l = arg;
	size_t i;

	l->asked++;
	for (i = 0; i < l->n; i++)
		if (strcmp(l->uids[i], uid) == 0)
			return true;
	return false;
}

/* Prune forgets exactly the UIDs not listed, delivered or struck. */
START_TEST(test_prune)
{
	static const char *const on_server[] = {"d1", "s1", "other"};
	struct listing l = {on_server, 3, 0};
	struct deliver *d = open_ok();
	char uid[16];
	int i, recovered;
	time_t last;

	for (i = 1; i <= 3; i++) {
		snprintf(uid, sizeof(uid), "d%d", i);
		ck_assert_int_eq(deliver_record(d, uid, NOW), 0);
		snprintf(uid, sizeof(uid), "s%d", i);
		ck_assert_int_eq(deliver_strike(d, uid, NOW + i), 1);
	}
	ck_assert_int_eq(deliver_note(d, "n1", NOW), 1);
	ck_assert_int_eq(deliver_commit(d), 0);
	deliver_prune(d, listed, &l);
	/* Each record (3 delivered, 4 struck or noted) asked about. */
	ck_assert_uint_ge(l.asked, 7);
	ck_assert(deliver_known(d, "d1", NULL, NULL));
	ck_assert(!deliver_known(d, "d2", NULL, NULL));
	ck_assert(!deliver_known(d, "d3", NULL, NULL));
	ck_assert_uint_eq(deliver_strikes(d, "s1", &last), 1);
	ck_assert_int_eq(last, NOW + 1);
	ck_assert_uint_eq(deliver_strikes(d, "s2", NULL), 0);
	ck_assert_uint_eq(deliver_strikes(d, "s3", NULL), 0);
	ck_assert_int_eq(deliver_commit(d), 0);
	deliver_free(&d);

	/* Durable; and the note went with the strikes: said again. */
	d = reopen_recovered(&recovered);
	ck_assert(deliver_known(d, "d1", NULL, NULL));
	ck_assert(!deliver_known(d, "d2", NULL, NULL));
	ck_assert(!deliver_known(d, "d3", NULL, NULL));
	ck_assert_uint_eq(deliver_strikes(d, "s1", NULL), 1);
	ck_assert_uint_eq(deliver_strikes(d, "s2", NULL), 0);
	ck_assert_int_eq(deliver_note(d, "n1", NOW), 1);
	/* An empty listing forgets everything. */
	l.n = 0;
	deliver_prune(d, listed, &l);
	ck_assert(!deliver_known(d, "d1", NULL, NULL));
	ck_assert_uint_eq(deliver_strikes(d, "s1", NULL), 0);
	ck_assert_int_eq(deliver_note(d, "n1", NOW), 1);
	deliver_free(&d);
}
END_TEST

/* An intent not complete is not pruned: recovery needs it. */
START_TEST(test_prune_keeps_pending)
{
	struct listing l = {NULL, 0, 0};
	struct seen seen = {0};
	struct deliver *d = open_ok();
	char err[512];
	int recovered;

	put_batch(d);
	ck_assert_int_eq(setenv("POPFETCHD_FAIL", "link into new/", 1), 0);
	ck_assert_int_eq(
	    deliver_flush(d, durable, &seen, err, sizeof(err)), -1);
	unsetenv("POPFETCHD_FAIL");
	deliver_prune(d, listed, &l);
	ck_assert(deliver_known(d, uids[0], NULL, NULL));
	ck_assert_int_eq(deliver_forget(d, uids[0]), -1);
	ck_assert_int_eq(errno, EBUSY);
	ck_assert_int_eq(deliver_commit(d), 0);
	deliver_free(&d);
	d = reopen_recovered(&recovered);
	ck_assert_int_eq(recovered, NMSG - 1);
	ck_assert_int_eq(check_outcome(d), NMSG - 1);
	/* Complete now: pruned like any other. */
	deliver_prune(d, listed, &l);
	ck_assert(!deliver_known(d, uids[0], NULL, NULL));
	deliver_free(&d);
}
END_TEST

/* Strikes count until delivery; forget ends records and strikes alike. */
START_TEST(test_strike_note_forget)
{
	struct seen seen = {0};
	struct deliver *d = open_ok();
	char err[512];
	time_t last;

	ck_assert_uint_eq(deliver_strikes(d, "u1", &last), 0);
	ck_assert_int_eq(last, 0);
	ck_assert_int_eq(deliver_note(d, "u1", NOW), 1);
	ck_assert_int_eq(deliver_note(d, "u1", NOW), 0);
	ck_assert_uint_eq(deliver_strikes(d, "u1", NULL), 0);
	ck_assert_int_eq(deliver_strike(d, "u1", NOW + 1), 1);
	ck_assert_int_eq(deliver_strike(d, "u1", NOW + 2), 2);
	ck_assert_uint_eq(deliver_strikes(d, "u1", &last), 2);
	ck_assert_int_eq(last, NOW + 2);
	ck_assert(!deliver_known(d, "u1", NULL, NULL));
	ck_assert_int_eq(deliver_strike(d, "bad uid", NOW), -1);
	ck_assert_int_eq(errno, EINVAL);

	/* Delivered: strikes end, and no more are counted. */
	put(d, 1, "u1", 3, "abc");
	ck_assert_int_eq(deliver_flush(d, durable, &seen, err, sizeof(err)), 0);
	ck_assert_uint_eq(deliver_strikes(d, "u1", NULL), 0);
	ck_assert_int_eq(deliver_strike(d, "u1", NOW), -1);
	ck_assert_int_eq(errno, EEXIST);
	ck_assert_int_eq(deliver_note(d, "u1", NOW), -1);
	ck_assert_int_eq(errno, EEXIST);

	/* Forgotten: another message may take the UID. */
	ck_assert_int_eq(deliver_forget(d, "u1"), 0);
	ck_assert(!deliver_known(d, "u1", NULL, NULL));
	ck_assert_int_eq(deliver_strike(d, "u2", NOW), 1);
	ck_assert_int_eq(deliver_forget(d, "u2"), 0);
	ck_assert_uint_eq(deliver_strikes(d, "u2", NULL), 0);
	ck_assert_int_eq(deliver_forget(d, "never-seen"), 0);
	ck_assert_int_eq(deliver_forget(d, "bad uid"), -1);
	ck_assert_int_eq(errno, EINVAL);
	put(d, 2, "u1", 4, "abcd");
	ck_assert_int_eq(deliver_flush(d, durable, &seen, err, sizeof(err)), 0);
	ck_assert_uint_eq(seen.n, 2);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 2);
	deliver_free(&d);
}
END_TEST

/* Changes outside a flush are lost without a commit, kept with one. */
START_TEST(test_commit)
{
	struct deliver *d = open_ok();
	int recovered;

	ck_assert_int_eq(deliver_record(d, "r1", NOW), 0);
	ck_assert_int_eq(deliver_strike(d, "s1", NOW), 1);
	deliver_free(&d);
	d = reopen_recovered(&recovered);
	ck_assert(!deliver_known(d, "r1", NULL, NULL));
	ck_assert_uint_eq(deliver_strikes(d, "s1", NULL), 0);
	ck_assert_int_eq(deliver_record(d, "r1", NOW), 0);
	ck_assert_int_eq(deliver_strike(d, "s1", NOW), 1);
	ck_assert_int_eq(deliver_commit(d), 0);
	deliver_free(&d);
	d = reopen_recovered(&recovered);
	ck_assert(deliver_known(d, "r1", NULL, NULL));
	ck_assert_uint_eq(deliver_strikes(d, "s1", NULL), 1);
	ck_assert_int_eq(deliver_forget(d, "r1"), 0);
	ck_assert_int_eq(deliver_commit(d), 0);
	deliver_free(&d);
	d = reopen_recovered(&recovered);
	ck_assert(!deliver_known(d, "r1", NULL, NULL));
	deliver_free(&d);
}
END_TEST

static Suite *
deliver_suite(void)
{
	Suite *s = suite_create("deliver");
	TCase *tc = tcase_create("deliver");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_size_unknown_sync_each_file);
	tcase_add_loop_test(tc, test_first_batch_syncs, 0, 2);
	tcase_add_test(tc, test_open_errors);
	tcase_add_test(tc, test_open_folder);
	tcase_add_test(tc, test_notice);
	tcase_add_test(tc, test_abort_leaves_nothing);
	tcase_add_test(tc, test_seal_then_fill);
	tcase_add_test(tc, test_failed_flush_then_discard);
	tcase_add_test(tc, test_drop);
	tcase_add_test(tc, test_uid_recorded_already);
	tcase_add_test(tc, test_record_in_durable);
	tcase_add_loop_test(tc, test_flush_failure, 0,
	    (int)(sizeof(fail_cases) / sizeof(fail_cases[0])));
	tcase_add_test(tc, test_crash_points);
	tcase_add_test(tc, test_crash_points_overlap);
	tcase_add_test(tc, test_prune);
	tcase_add_test(tc, test_prune_keeps_pending);
	tcase_add_test(tc, test_strike_note_forget);
	tcase_add_test(tc, test_commit);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	/* The clock deliveries record (POPFETCHD_NOW, a test hook). */
	setenv("POPFETCHD_NOW", "1700000000", 1);
	return check_main(deliver_suite());
}
