/*
 * Tests of daemon/maildir.c: unique names, CRLF conversion at every split,
 * what lands in new/ and what is left in tmp/ at each step of a delivery
 * (finish, publish, drop), publishing repeated as recovery does, names
 * from the journal checked, stale tmp/ cleanup and what it keeps,
 * write errors carried to the caller, a Maildir never created in a
 * missing directory, failed syncs final for the handle, the fallback
 * from syncfs on network file systems, and the look-up of delivered
 * messages in new/ and cur/, one by one and many at once.
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
#include "maildir.h"
#include "check_main.h"
#include "check_util.h"

static char tmpdir[1024];
static char mdpath[2048];

static void setup(void);
static void teardown(void);
static char *only_file(const char *sub);
static void publish_msg(
    struct maildir *md, struct maildir_msg **msg, char *name, size_t namelen);
static void deliver(struct maildir *md, const char *const *chunks,
    const size_t *lens, size_t n, char *name, size_t namelen);
static void check_delivered(const char *name, const char *want, size_t wantlen);
static Suite *maildir_suite(void);

static void
setup(void)
{
	check_tmpdir(tmpdir, sizeof(tmpdir), "test_maildir");
	snprintf(mdpath, sizeof(mdpath), "%s/Maildir", tmpdir);
}

static void
teardown(void)
{
	check_rm_rf(tmpdir);
}

/* Name of the single file in mdpath/SUB (caller frees). */
static char *
only_file(const char *sub)
{
	struct dirent *de;
	char path[PATH_MAX], *name = NULL;
	DIR *dir;

	snprintf(path, sizeof(path), "%s/%s", mdpath, sub);
	ck_assert_ptr_nonnull(dir = opendir(path));
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		ck_assert_ptr_null(name);
		name = strdup(de->d_name);
	}
	closedir(dir);
	ck_assert_ptr_nonnull(name);
	return name;
}

/*
 * Runs the rest of a delivery: finish, publish, sync, drop the tmp/ name.
 * NAME gets the final name.
 */
static void
publish_msg(
    struct maildir *md, struct maildir_msg **msg, char *name, size_t namelen)
{
	char tmpname[MAILDIR_NAME_SIZE];

	ck_assert_int_eq(
	    maildir_finish(msg, tmpname, sizeof(tmpname), name, namelen), 0);
	ck_assert_ptr_null(*msg);
	ck_assert_int_eq(maildir_publish(md, tmpname, name), 0);
	ck_assert_int_eq(maildir_sync(md), 0);
	ck_assert_int_eq(maildir_drop_tmp(md, tmpname), 0);
}

/*
 * Whether deliver() writes through maildir_write_inplace(), which
 * converts in the caller's memory (each chunk copied for it).
 */
static bool inplace;

/* Writes one message from N chunks and delivers it. */
static void
deliver(struct maildir *md, const char *const *chunks, const size_t *lens,
    size_t n, char *name, size_t namelen)
{
	struct maildir_msg *msg;
	size_t i;
	char *copy;

	ck_assert_ptr_nonnull(msg = maildir_begin(md));
	for (i = 0; i < n; i++) {
		if (!inplace) {
			ck_assert_int_eq(
			    maildir_write(msg, chunks[i], lens[i]), 0);
			continue;
		}
		ck_assert_ptr_nonnull(copy = malloc(lens[i] + 1));
		memcpy(copy, chunks[i], lens[i]);
		ck_assert_int_eq(maildir_write_inplace(msg, copy, lens[i]), 0);
		free(copy);
	}
	publish_msg(md, &msg, name, namelen);
}

/* new/NAME holds exactly WANT, and its S= says its size. */
static void
check_delivered(const char *name, const char *want, size_t wantlen)
{
	char path[PATH_MAX], tail[64];
	size_t len, tlen;
	char *got;

	snprintf(path, sizeof(path), "%s/new/%s", mdpath, name);
	got = check_read_file(path, &len);
	ck_assert_uint_eq(len, wantlen);
	ck_assert(memcmp(got, want, len) == 0);
	free(got);
	snprintf(tail, sizeof(tail), ",S=%zu", wantlen);
	tlen = strlen(tail);
	ck_assert_uint_ge(strlen(name), tlen);
	ck_assert_str_eq(name + strlen(name) - tlen, tail);
}

START_TEST(test_unique_name_format)
{
	char buf[256];

	ck_assert_int_eq(maildir_unique_name(buf, sizeof(buf), 1700000000LL,
			     123456, 4242, 7, "mail.example.org", 1234),
	    0);
	ck_assert_str_eq(
	    buf, "1700000000.M123456P4242Q7.mail.example.org,S=1234");
	ck_assert_int_eq(
	    maildir_unique_name(buf, sizeof(buf), 5, 0, 1, 0, "a/b:c/", 0), 0);
	ck_assert_str_eq(buf, "5.M0P1Q0.a\\057b\\072c\\057,S=0");
	/* No space, control or 8-bit byte: the journal holds names as words. */
	ck_assert_int_eq(
	    maildir_unique_name(buf, sizeof(buf), 5, 0, 1, 0, "a b\t\xe9~!", 0),
	    0);
	ck_assert_str_eq(buf, "5.M0P1Q0.a\\040b\\011\\351~!,S=0");
}
END_TEST

START_TEST(test_unique_name_too_long)
{
	const char *want = "1.M2P3Q4.h\\057,S=5";
	size_t need = strlen(want) + 1, len;
	char buf[64];

	for (len = 0; len < need; len++) {
		errno = 0;
		ck_assert_int_eq(
		    maildir_unique_name(buf, len, 1, 2, 3, 4, "h/", 5), -1);
		ck_assert_int_eq(errno, ENAMETOOLONG);
	}
	ck_assert_int_eq(
	    maildir_unique_name(buf, need, 1, 2, 3, 4, "h/", 5), 0);
	ck_assert_str_eq(buf, want);
}
END_TEST

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

START_TEST(test_unique_across_deliveries)
{
	enum { N = 2000 };
	char errbuf[256], name[512];
	char **names = calloc(N, sizeof(*names));
	struct maildir *md;
	size_t i;

	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	for (i = 0; i < N; i++) {
		const char *chunk = "x\r\n";
		size_t len = 3;

		deliver(md, &chunk, &len, 1, name, sizeof(name));
		ck_assert_ptr_nonnull(names[i] = strdup(name));
	}
	qsort(names, N, sizeof(*names), cmp_str);
	for (i = 1; i < N; i++)
		ck_assert_str_ne(names[i - 1], names[i]);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), N);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	ck_assert_int_eq(maildir_sync(md), 0);
	for (i = 0; i < N; i++)
		free(names[i]);
	free(names);
	maildir_close(&md);
	ck_assert_ptr_null(md);
}
END_TEST

/* CRLF, lone CR, CR CR LF, empty lines and a CR ending the message. */
static const char sample[] = "a\r\nb\rc\r\r\n\r\n\rd\r\r\nend\r";
static const char sample_lf[] = "a\nb\rc\r\n\n\rd\r\nend\r";

/* Also (_i = 1) through maildir_write_inplace(). */
START_TEST(test_crlf_every_split)
{
	size_t len = sizeof(sample) - 1, wlen = sizeof(sample_lf) - 1;
	char errbuf[256], name[512];
	struct maildir *md;
	size_t i, j;

	inplace = _i == 1;
	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	for (i = 0; i <= len; i++) {
		for (j = i; j <= len; j++) {
			const char *chunks[3] = {
			    sample, sample + i, sample + j};
			size_t lens[3] = {i, j - i, len - j};

			deliver(md, chunks, lens, 3, name, sizeof(name));
			check_delivered(name, sample_lf, wlen);
		}
	}
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	maildir_close(&md);
	inplace = false;
}
END_TEST

START_TEST(test_crlf_byte_at_a_time)
{
	size_t len = sizeof(sample) - 1, i;
	char errbuf[256], name[512];
	struct maildir_msg *msg;
	struct maildir *md;

	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	ck_assert_ptr_nonnull(msg = maildir_begin(md));
	for (i = 0; i < len; i++)
		ck_assert_int_eq(maildir_write(msg, sample + i, 1), 0);
	/* The final CR is held until finishing knows nothing follows. */
	ck_assert_uint_eq(maildir_msg_size(msg), sizeof(sample_lf) - 2);
	publish_msg(md, &msg, name, sizeof(name));
	check_delivered(name, sample_lf, sizeof(sample_lf) - 1);
	maildir_close(&md);
}
END_TEST

START_TEST(test_empty_message)
{
	char errbuf[256], name[512];
	struct maildir_msg *msg;
	struct maildir *md;

	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	ck_assert_ptr_nonnull(msg = maildir_begin(md));
	ck_assert_int_eq(maildir_write(msg, "", 0), 0);
	ck_assert_uint_eq(maildir_msg_size(msg), 0);
	publish_msg(md, &msg, name, sizeof(name));
	check_delivered(name, "", 0);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	maildir_close(&md);
}
END_TEST

/* A message much larger than the write buffer, in chunks of odd sizes. */
START_TEST(test_large_message)
{
	static const size_t sizes[] = {1, 7, 4096, 70000, 13, 65536, 2};
	size_t inlen = 0, outlen = 0, off, k;
	char *in = malloc(400000), *out = malloc(400000);
	char errbuf[256], name[512];
	struct maildir_msg *msg;
	struct maildir *md;
	int line;

	for (line = 0; inlen < 390000; line++) {
		int n = snprintf(in + inlen, 64, "line %d\r%s\r\n", line,
		    line % 3 ? "" : "x");
		inlen += (size_t)n;
	}
	for (off = 0; off < inlen; off++)
		if (!(in[off] == '\r' && off + 1 < inlen &&
			in[off + 1] == '\n'))
			out[outlen++] = in[off];
	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	ck_assert_ptr_nonnull(msg = maildir_begin(md));
	for (off = 0, k = 0; off < inlen; k++) {
		size_t n = sizes[k % (sizeof(sizes) / sizeof(sizes[0]))];

		if (n > inlen - off)
			n = inlen - off;
		ck_assert_int_eq(maildir_write(msg, in + off, n), 0);
		off += n;
	}
	publish_msg(md, &msg, name, sizeof(name));
	check_delivered(name, out, outlen);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	free(in);
	free(out);
	maildir_close(&md);
}
END_TEST

START_TEST(test_abort_leaves_nothing)
{
	char errbuf[256];
	struct maildir_msg *msg;
	struct maildir *md;

	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	ck_assert_ptr_nonnull(msg = maildir_begin(md));
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 1);
	ck_assert_int_eq(maildir_write(msg, "Subject: x\r\n\r\nbody\r", 19), 0);
	maildir_abort(&msg);
	ck_assert_ptr_null(msg);
	maildir_abort(&msg);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "cur"), 0);
	maildir_close(&md);
}
END_TEST

START_TEST(test_open_creates_tree)
{
	char errbuf[256], path[PATH_MAX + 64];
	const char *subs[] = {"", "/tmp", "/new", "/cur"};
	struct maildir *md;
	struct stat sb;
	size_t i;

	/* The Maildir itself is created inside an existing directory. */
	snprintf(mdpath, sizeof(mdpath), "%s/Maildir/", tmpdir);
	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	for (i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s%s", mdpath, subs[i]);
		ck_assert_int_eq(stat(path, &sb), 0);
		ck_assert(S_ISDIR(sb.st_mode));
		ck_assert_int_eq(sb.st_mode & 0777, 0700);
	}
	maildir_close(&md);
	/* And again, now that it exists. */
	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	maildir_close(&md);
}
END_TEST

START_TEST(test_open_errors)
{
	char errbuf[256], path[PATH_MAX + 64];
	struct maildir *md;
	int fd;

	/* new/ is a file. */
	ck_assert_int_eq(mkdir(mdpath, 0700), 0);
	snprintf(path, sizeof(path), "%s/new", mdpath);
	ck_assert_int_ne(fd = open(path, O_CREAT | O_WRONLY, 0600), -1);
	close(fd);
	ck_assert_ptr_null(md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	ck_assert_int_eq(errno, ENOTDIR);
	snprintf(path, sizeof(path), "%s/new is not a directory", mdpath);
	ck_assert_str_eq(errbuf, path);

	/* A parent is a file. */
	snprintf(path, sizeof(path), "%s/new/x/y", mdpath);
	ck_assert_ptr_null(md = maildir_open(path, errbuf, sizeof(errbuf)));
	ck_assert_int_eq(errno, ENOTDIR);
	snprintf(path, sizeof(path),
	    "cannot use parent directory %s/new/x: Not a directory", mdpath);
	ck_assert_str_eq(errbuf, path);
	snprintf(path, sizeof(path), "%s/new/y", mdpath);
	ck_assert_ptr_null(md = maildir_open(path, errbuf, sizeof(errbuf)));
	ck_assert_int_eq(errno, ENOTDIR);
	snprintf(path, sizeof(path),
	    "cannot use parent directory %s/new: Not a directory", mdpath);
	ck_assert_str_eq(errbuf, path);
}
END_TEST

/*
 * A Maildir whose parent is missing (a typo, a file system not mounted)
 * is refused, and nothing is created on the way.
 */
START_TEST(test_open_missing_parent)
{
	char errbuf[512], want[PATH_MAX + 128], path[PATH_MAX];
	struct maildir *md;
	struct stat sb;

	snprintf(mdpath, sizeof(mdpath), "%s/mnt/mail/Maildir", tmpdir);
	errno = 0;
	ck_assert_ptr_null(md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	ck_assert_int_eq(errno, ENOENT);
	snprintf(want, sizeof(want),
	    "parent directory %s/mnt/mail does not exist (not created: a typo or an unmounted file system?)",
	    tmpdir);
	ck_assert_str_eq(errbuf, want);
	snprintf(path, sizeof(path), "%s/mnt", tmpdir);
	ck_assert_int_eq(stat(path, &sb), -1);
	ck_assert_int_eq(errno, ENOENT);

	/* Trailing slashes do not make the Maildir its own parent. */
	snprintf(mdpath, sizeof(mdpath), "%s/mnt//", tmpdir);
	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	maildir_close(&md);
	snprintf(path, sizeof(path), "%s/mnt/cur", tmpdir);
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert(S_ISDIR(sb.st_mode));

	/* A relative name has the working directory as its parent. */
	ck_assert_int_eq(chdir(tmpdir), 0);
	ck_assert_ptr_nonnull(md = maildir_open("rel", errbuf, sizeof(errbuf)));
	maildir_close(&md);
	ck_assert_int_eq(stat("rel/new", &sb), 0);
	ck_assert_ptr_null(
	    md = maildir_open("none/rel", errbuf, sizeof(errbuf)));
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_str_eq(errbuf,
	    "parent directory none does not exist (not created: a typo or an unmounted file system?)");
}
END_TEST

/* Permission denied, as an unprivileged user (a child drops root). */
START_TEST(test_open_permission)
{
	char errbuf[256], want[PATH_MAX + 64];
	int status;
	pid_t pid;

	ck_assert_int_eq(mkdir(mdpath, 0500), 0);
	snprintf(want, sizeof(want), "cannot create %s/tmp: Permission denied",
	    mdpath);
	ck_assert_int_ne(pid = fork(), -1);
	if (pid == 0) {
		struct maildir *md;

		if (geteuid() == 0) {
			if (chown(mdpath, 65534, 65534) == -1 ||
			    chmod(tmpdir, 0755) == -1 || setgid(65534) == -1 ||
			    setuid(65534) == -1)
				_exit(2);
		}
		md = maildir_open(mdpath, errbuf, sizeof(errbuf));
		if (md != NULL || errno != EACCES)
			_exit(3);
		_exit(strcmp(errbuf, want) == 0 ? 0 : 4);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	chmod(mdpath, 0700);
}
END_TEST

/* Creates mdpath/tmp/NAME (or a directory) last modified AGO seconds ago. */
static void
make_old(const char *name, time_t ago, int dir)
{
	char path[PATH_MAX + 64];
	struct timespec ts[2];
	int fd;

	snprintf(path, sizeof(path), "%s/tmp/%s", mdpath, name);
	if (dir) {
		ck_assert_int_eq(mkdir(path, 0700), 0);
	} else {
		ck_assert_int_ne(fd = open(path, O_CREAT | O_WRONLY, 0600), -1);
		ck_assert_int_eq(write(fd, "x", 1), 1);
		close(fd);
	}
	ts[0].tv_sec = ts[1].tv_sec = time(NULL) - ago;
	ts[0].tv_nsec = ts[1].tv_nsec = 0;
	ck_assert_int_eq(utimensat(AT_FDCWD, path, ts, 0), 0);
}

/* Whether mdpath/SUB/NAME exists. */
static bool
exists_in(const char *sub, const char *name)
{
	char path[PATH_MAX + 64];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/%s/%s", mdpath, sub, name);
	return lstat(path, &sb) == 0;
}

START_TEST(test_stale_tmp_cleanup)
{
	char errbuf[256];
	struct maildir *md;

	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	maildir_close(&md);
	make_old("stale", 37 * 3600, 0);
	make_old("fresh", 1 * 3600, 0);
	make_old("young", 35 * 3600, 0);
	make_old("olddir", 37 * 3600, 1);
	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	/* Opening cleans nothing: pending intents may need old files. */
	ck_assert(exists_in("tmp", "stale"));
	ck_assert_int_eq(maildir_clean_tmp(md, NULL, NULL), 1);
	ck_assert(!exists_in("tmp", "stale"));
	ck_assert(exists_in("tmp", "fresh"));
	ck_assert(exists_in("tmp", "young"));
	/* Only regular files are ours to remove. */
	ck_assert(exists_in("tmp", "olddir"));
	ck_assert_int_eq(maildir_clean_tmp(md, NULL, NULL), 0);
	maildir_close(&md);
}
END_TEST

struct keep_log {
	const char *keep; /* the name to keep, or NULL */
	int calls;
	char seen[8][64];
};

static bool
keep_fn(void *arg, const char *tmpname)
{
	struct keep_log *k = arg;

	if (k->calls < 8)
		snprintf(k->seen[k->calls], sizeof(k->seen[0]), "%s", tmpname);
	k->calls++;
	return k->keep != NULL && strcmp(tmpname, k->keep) == 0;
}

START_TEST(test_clean_tmp_keep)
{
	struct keep_log k = {.keep = "pending"};
	char errbuf[256];
	struct maildir *md;
	int i;

	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	make_old("pending", 100 * 3600, 0);
	make_old("stale", 37 * 3600, 0);
	make_old("fresh", 35 * 3600, 0);
	ck_assert_int_eq(maildir_clean_tmp(md, keep_fn, &k), 1);
	ck_assert(exists_in("tmp", "pending"));
	ck_assert(!exists_in("tmp", "stale"));
	ck_assert(exists_in("tmp", "fresh"));
	/* Asked only about the old ones, by bare name. */
	ck_assert_int_eq(k.calls, 2);
	for (i = 0; i < 2; i++)
		ck_assert(strcmp(k.seen[i], "pending") == 0 ||
			  strcmp(k.seen[i], "stale") == 0);
	ck_assert_str_ne(k.seen[0], k.seen[1]);
	/* Once the intent is done, the next cleanup may take it. */
	k.keep = NULL;
	k.calls = 0;
	ck_assert_int_eq(maildir_clean_tmp(md, keep_fn, &k), 1);
	ck_assert_int_eq(k.calls, 1);
	ck_assert(!exists_in("tmp", "pending"));
	ck_assert(exists_in("tmp", "fresh"));
	maildir_close(&md);
}
END_TEST

/* tmp/ name this host's popfetchd process PID would write. */
static void
name_of_pid(char *buf, size_t len, long pid)
{
	char host[256];

	ck_assert_int_eq(gethostname(host, sizeof(host)), 0);
	host[sizeof(host) - 1] = '\0';
	ck_assert_int_eq(
	    maildir_unique_name(buf, len, 1700000000, 1, pid, 1, host, 0), 0);
	/* tmp/ names carry no ",S=": cut it. */
	*strrchr(buf, ',') = '\0';
}

START_TEST(test_clean_tmp_orphans)
{
	char errbuf[256], dead[MAILDIR_NAME_SIZE], live[MAILDIR_NAME_SIZE];
	struct maildir *md;
	pid_t child;

	/* A process that has exited: its pid is free. */
	if ((child = fork()) == 0)
		_exit(0);
	ck_assert_int_gt(child, 0);
	ck_assert_int_eq(waitpid(child, NULL, 0), child);
	name_of_pid(dead, sizeof(dead), (long)child);
	name_of_pid(live, sizeof(live), (long)getppid());
	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	make_old(dead, 0, 0);
	make_old(live, 0, 0);
	make_old("1700000000.M1P1Q1.otherhost", 0, 0);
	/* Fresh files go only when their writer is gone for good. */
	ck_assert_int_eq(maildir_clean_tmp(md, NULL, NULL), 1);
	ck_assert(!exists_in("tmp", dead));
	ck_assert(exists_in("tmp", live));
	ck_assert(exists_in("tmp", "1700000000.M1P1Q1.otherhost"));
	maildir_close(&md);
}
END_TEST

/*
 * In a child limited to LIMIT bytes per file (SIGXFSZ ignored, so write
 * fails with EFBIG): writes LEN bytes, then finishes. Returns what went
 * wrong as the exit status, 0 if the error surfaced where expected.
 */
static int
write_past_limit(size_t len, int fail_in_write)
{
	struct rlimit rl = {.rlim_cur = 1000, .rlim_max = 1000};
	char errbuf[256], *data;
	struct maildir_msg *msg;
	struct maildir *md;

	signal(SIGXFSZ, SIG_IGN);
	if (setrlimit(RLIMIT_FSIZE, &rl) == -1)
		return 10;
	if ((md = maildir_open(mdpath, errbuf, sizeof(errbuf))) == NULL ||
	    (msg = maildir_begin(md)) == NULL || (data = malloc(len)) == NULL)
		return 11;
	memset(data, 'a', len);
	if (fail_in_write) {
		if (maildir_write(msg, data, len) != -1 || errno != EFBIG)
			return 12;
		/* Sticky: the next write fails the same way. */
		if (maildir_write(msg, "b", 1) != -1 || errno != EFBIG)
			return 13;
		maildir_abort(&msg);
	} else {
		char tmpname[MAILDIR_NAME_SIZE], final[MAILDIR_NAME_SIZE];

		if (maildir_write(msg, data, len) != 0)
			return 14;
		if (maildir_finish(&msg, tmpname, sizeof(tmpname), final,
			sizeof(final)) != -1 ||
		    errno != EFBIG)
			return 15;
		if (msg != NULL)
			return 16;
	}
	free(data);
	maildir_close(&md);
	return 0;
}

static void
check_write_error(size_t len, int fail_in_write)
{
	int status;
	pid_t pid;

	ck_assert_int_ne(pid = fork(), -1);
	if (pid == 0)
		_exit(write_past_limit(len, fail_in_write));
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
}

START_TEST(test_write_error_in_write)
{
	/* More than the buffer holds, so write(2) happens in maildir_write. */
	check_write_error(200000, 1);
}
END_TEST

START_TEST(test_write_error_in_finish)
{
	/* Fits the buffer: the error shows when finishing flushes it. */
	check_write_error(5000, 0);
}
END_TEST

START_TEST(test_free_space_and_sync)
{
	char errbuf[256];
	struct maildir *md;
	uint64_t bytes = 0;

	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	ck_assert_int_eq(maildir_free_space(md, &bytes), 0);
	ck_assert_uint_gt(bytes, 0);
	ck_assert_int_eq(maildir_sync(md), 0);
	maildir_close(&md);
}
END_TEST

START_TEST(test_name_in_tmp_and_new)
{
	char errbuf[256], name[512], host[256], *tmpname;
	struct maildir_msg *msg;
	struct maildir *md;
	char *newname;

	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	ck_assert_ptr_nonnull(msg = maildir_begin(md));
	ck_assert_int_eq(maildir_write(msg, "hi\r\n", 4), 0);
	tmpname = only_file("tmp");
	/* No size yet in tmp/; the final name is the same plus ",S=". */
	ck_assert_ptr_null(strstr(tmpname, ",S="));
	publish_msg(md, &msg, name, sizeof(name));
	newname = only_file("new");
	ck_assert_str_eq(newname, name);
	ck_assert_int_eq(strncmp(newname, tmpname, strlen(tmpname)), 0);
	ck_assert_str_eq(newname + strlen(tmpname), ",S=3");
	ck_assert_int_eq(gethostname(host, sizeof(host)), 0);
	if (strchr(host, '/') == NULL && strchr(host, ':') == NULL)
		ck_assert_ptr_nonnull(strstr(newname, host));
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	free(tmpname);
	free(newname);
	maildir_close(&md);
}
END_TEST

/* Begins a message and writes DATA into it. */
static struct maildir_msg *
begin_with(struct maildir *md, const char *data)
{
	struct maildir_msg *msg;

	ck_assert_ptr_nonnull(msg = maildir_begin(md));
	ck_assert_int_eq(maildir_write(msg, data, strlen(data)), 0);
	return msg;
}

/* Inode of mdpath/SUB/NAME, which must exist. */
static ino_t
inode_of(const char *sub, const char *name, nlink_t *nlink)
{
	char path[PATH_MAX + 64];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/%s/%s", mdpath, sub, name);
	ck_assert_int_eq(lstat(path, &sb), 0);
	if (nlink != NULL)
		*nlink = sb.st_nlink;
	return sb.st_ino;
}

/* Finishing makes the file durable in tmp/ and puts nothing in new/. */
START_TEST(test_finish_leaves_tmp_only)
{
	char errbuf[256], tmpname[MAILDIR_NAME_SIZE], final[MAILDIR_NAME_SIZE];
	char want[MAILDIR_NAME_SIZE + 16], path[PATH_MAX + 64], *only, *data;
	struct maildir_msg *msg;
	struct maildir *md;
	size_t len;

	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	msg = begin_with(md, "Subject: x\r\n\r\nbody\r\n");
	ck_assert_int_eq(maildir_finish(&msg, tmpname, sizeof(tmpname), final,
			     sizeof(final)),
	    0);
	ck_assert_ptr_null(msg);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 1);
	only = only_file("tmp");
	ck_assert_str_eq(only, tmpname);
	snprintf(want, sizeof(want), "%s,S=17", tmpname);
	ck_assert_str_eq(final, want);
	snprintf(path, sizeof(path), "%s/tmp/%s", mdpath, tmpname);
	data = check_read_file(path, &len);
	ck_assert_uint_eq(len, 17);
	ck_assert(memcmp(data, "Subject: x\n\nbody\n", 17) == 0);
	ck_assert(maildir_tmp_exists(md, tmpname));
	/* Finished: closing the Maildir does not trip over an open message. */
	maildir_close(&md);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 1);
	free(only);
	free(data);
}
END_TEST

/* Buffers too small: ENAMETOOLONG, and nothing is left behind. */
START_TEST(test_finish_small_buffers)
{
	char errbuf[256], tmpname[MAILDIR_NAME_SIZE], final[MAILDIR_NAME_SIZE];
	struct maildir_msg *msg;
	struct maildir *md;
	char *name;

	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	msg = begin_with(md, "x");
	name = only_file("tmp");
	/* Exactly the length of the name: no room for the NUL. */
	errno = 0;
	ck_assert_int_eq(
	    maildir_finish(&msg, tmpname, strlen(name), final, sizeof(final)),
	    -1);
	ck_assert_int_eq(errno, ENAMETOOLONG);
	ck_assert_ptr_null(msg);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	free(name);
	msg = begin_with(md, "x");
	name = only_file("tmp");
	errno = 0;
	ck_assert_int_eq(maildir_finish(&msg, tmpname, sizeof(tmpname), final,
			     strlen(name) + strlen(",S=1")),
	    -1);
	ck_assert_int_eq(errno, ENAMETOOLONG);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 0);
	/* A NULL message is refused, not dereferenced. */
	ck_assert_int_eq(maildir_finish(&msg, tmpname, sizeof(tmpname), final,
			     sizeof(final)),
	    -1);
	ck_assert_int_eq(errno, EINVAL);
	free(name);
	maildir_close(&md);
}
END_TEST

/*
 * A file already in new/ under the final name the message would get (a
 * clock set back, another writer with our pid): finishing picks another
 * name, so that publishing can take an existing name for "done".
 */
START_TEST(test_finish_avoids_clash)
{
	char errbuf[256], tmpname[MAILDIR_NAME_SIZE], final[MAILDIR_NAME_SIZE];
	char clash[MAILDIR_NAME_SIZE + 16], path[PATH_MAX + 64], *first;
	struct maildir_msg *msg;
	struct maildir *md;
	size_t len;
	int fd;

	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	msg = begin_with(md, "mine\r\n");
	first = only_file("tmp");
	snprintf(clash, sizeof(clash), "%s,S=5", first);
	snprintf(path, sizeof(path), "%s/new/%s", mdpath, clash);
	ck_assert_int_ne(fd = open(path, O_CREAT | O_WRONLY, 0600), -1);
	ck_assert_int_eq(write(fd, "other", 5), 5);
	close(fd);
	ck_assert_int_eq(maildir_finish(&msg, tmpname, sizeof(tmpname), final,
			     sizeof(final)),
	    0);
	ck_assert_str_ne(tmpname, first);
	ck_assert_str_ne(final, clash);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 1);
	ck_assert(exists_in("tmp", tmpname));
	ck_assert_int_eq(maildir_publish(md, tmpname, final), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 2);
	/* The other file is untouched, ours is ours. */
	free(check_read_file(path, &len));
	ck_assert_uint_eq(len, 5);
	check_delivered(final, "mine\n", 5);
	free(first);
	maildir_close(&md);
}
END_TEST

/* Publish links, can be repeated, and the tmp/ name goes only on drop. */
START_TEST(test_publish_idempotent)
{
	char errbuf[256], tmpname[MAILDIR_NAME_SIZE], final[MAILDIR_NAME_SIZE];
	char from[PATH_MAX + 64], to[PATH_MAX + 64];
	struct maildir_msg *msg;
	struct maildir *md;
	nlink_t nlink;

	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	msg = begin_with(md, "hello\r\n");
	ck_assert_int_eq(maildir_finish(&msg, tmpname, sizeof(tmpname), final,
			     sizeof(final)),
	    0);
	ck_assert_int_eq(maildir_publish(md, tmpname, final), 0);
	/* Linked, not moved: both names, one file. */
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 1);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 1);
	ck_assert_uint_eq(
	    inode_of("tmp", tmpname, &nlink), inode_of("new", final, NULL));
	ck_assert_uint_eq(nlink, 2);
	check_delivered(final, "hello\n", 6);
	/* Again, as recovery would after a crash here: nothing changes. */
	ck_assert_int_eq(maildir_publish(md, tmpname, final), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 1);
	ck_assert_int_eq(maildir_sync(md), 0);
	ck_assert_int_eq(maildir_drop_tmp(md, tmpname), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	ck_assert(!maildir_tmp_exists(md, tmpname));
	/* Dropping twice is fine; publishing once more is "already done". */
	ck_assert_int_eq(maildir_drop_tmp(md, tmpname), 0);
	ck_assert_int_eq(maildir_publish(md, tmpname, final), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 1);
	check_delivered(final, "hello\n", 6);
	/* The user moved it on: neither name is there any more. */
	snprintf(from, sizeof(from), "%s/new/%s", mdpath, final);
	snprintf(to, sizeof(to), "%s/cur/%s:2,S", mdpath, final);
	ck_assert_int_eq(rename(from, to), 0);
	errno = 0;
	ck_assert_int_eq(maildir_publish(md, tmpname, final), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 0);
	maildir_close(&md);
}
END_TEST

/*
 * new/FINAL exists while tmp/ still holds the file under another inode
 * (a copy that broke the hard link, a restore): publish counts it as done
 * and leaves the file in new/ alone.
 */
START_TEST(test_publish_final_exists)
{
	char errbuf[256], tmpname[MAILDIR_NAME_SIZE], final[MAILDIR_NAME_SIZE];
	char path[PATH_MAX + 64];
	struct maildir_msg *msg;
	struct maildir *md;
	int fd;

	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	msg = begin_with(md, "abc");
	ck_assert_int_eq(maildir_finish(&msg, tmpname, sizeof(tmpname), final,
			     sizeof(final)),
	    0);
	snprintf(path, sizeof(path), "%s/new/%s", mdpath, final);
	ck_assert_int_ne(fd = open(path, O_CREAT | O_WRONLY, 0600), -1);
	ck_assert_int_eq(write(fd, "abc", 3), 3);
	close(fd);
	ck_assert_int_eq(maildir_publish(md, tmpname, final), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 1);
	ck_assert_uint_ne(
	    inode_of("tmp", tmpname, NULL), inode_of("new", final, NULL));
	ck_assert_int_eq(maildir_drop_tmp(md, tmpname), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 0);
	maildir_close(&md);
}
END_TEST

/* Names from the journal must stay inside tmp/ and new/. */
START_TEST(test_names_validated)
{
	static const char *const bad[] = {"", ".", "..", "../x", "a/b", "/x",
	    "a b", "x\n", "x\t", "\x7f", "\xc3\xa9", "../victim"};
	char errbuf[256], tmpname[MAILDIR_NAME_SIZE], final[MAILDIR_NAME_SIZE];
	char path[PATH_MAX + 64], longname[NAME_MAX + 2];
	struct maildir_msg *msg;
	struct maildir *md;
	size_t i;
	int fd;

	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	/* A file outside tmp/ that "../victim" would reach. */
	snprintf(path, sizeof(path), "%s/victim", mdpath);
	ck_assert_int_ne(fd = open(path, O_CREAT | O_WRONLY, 0600), -1);
	close(fd);
	msg = begin_with(md, "m");
	ck_assert_int_eq(maildir_finish(&msg, tmpname, sizeof(tmpname), final,
			     sizeof(final)),
	    0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		errno = 0;
		ck_assert_int_eq(maildir_publish(md, bad[i], final), -1);
		ck_assert_int_eq(errno, EINVAL);
		errno = 0;
		ck_assert_int_eq(maildir_publish(md, tmpname, bad[i]), -1);
		ck_assert_int_eq(errno, EINVAL);
		errno = 0;
		ck_assert_int_eq(maildir_drop_tmp(md, bad[i]), -1);
		ck_assert_int_eq(errno, EINVAL);
		ck_assert(!maildir_tmp_exists(md, bad[i]));
	}
	/* "../victim" exists from tmp/'s point of view, and is left alone. */
	ck_assert_int_eq(access(path, F_OK), 0);
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	ck_assert_int_eq(maildir_drop_tmp(md, longname), -1);
	ck_assert_int_eq(errno, EINVAL);
	/* NAME_MAX itself is a valid name (that does not exist). */
	longname[NAME_MAX] = '\0';
	ck_assert_int_eq(maildir_drop_tmp(md, longname), 0);
	ck_assert(!maildir_tmp_exists(md, longname));
	/* Nothing was published by any of it; the good names still work. */
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "tmp"), 1);
	ck_assert(maildir_tmp_exists(md, tmpname));
	ck_assert_int_eq(maildir_publish(md, tmpname, final), 0);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 1);
	maildir_close(&md);
}
END_TEST

/* The names of four finished messages, published into new/. */
static void
four_published(struct maildir *md, char final[4][MAILDIR_NAME_SIZE])
{
	char tmpname[MAILDIR_NAME_SIZE];
	struct maildir_msg *msg;
	int i;

	for (i = 0; i < 4; i++) {
		msg = begin_with(md, "x\r\n");
		ck_assert_int_eq(maildir_finish(&msg, tmpname, sizeof(tmpname),
				     final[i], MAILDIR_NAME_SIZE),
		    0);
		ck_assert_int_eq(maildir_publish(md, tmpname, final[i]), 0);
		ck_assert_int_eq(maildir_drop_tmp(md, tmpname), 0);
	}
}

/* Moves new/NAME to cur/NAME plus INFO, as a mail reader does. */
static void
move_to_cur(const char *name, const char *info)
{
	char from[PATH_MAX + 64], to[PATH_MAX + 64];

	snprintf(from, sizeof(from), "%s/new/%s", mdpath, name);
	snprintf(to, sizeof(to), "%s/cur/%s%s", mdpath, name, info);
	ck_assert_int_eq(rename(from, to), 0);
}

/*
 * Where a published message may be: in new/, in cur/ with or without an
 * info suffix, or gone. A longer name sharing a prefix, or one in tmp/,
 * does not count. The many-at-once look-up answers as the one-by-one.
 */
START_TEST(test_delivered_one_and_many)
{
	char errbuf[256], final[4][MAILDIR_NAME_SIZE], path[PATH_MAX + 64];
	char longer[MAILDIR_NAME_SIZE + 8];
	const char *names[7];
	int found[7], want[7] = {1, 1, 1, 0, 1, 1, 0};
	struct maildir *md;
	size_t i;
	int fd;

	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	four_published(md, final);
	move_to_cur(final[1], ":2,S");
	move_to_cur(final[2], "");
	/* final[3]: read and deleted. */
	snprintf(path, sizeof(path), "%s/new/%s", mdpath, final[3]);
	ck_assert_int_eq(unlink(path), 0);
	/* A name in cur/ that only begins like final[3], and one shorter. */
	snprintf(longer, sizeof(longer), "%s0", final[3]);
	snprintf(path, sizeof(path), "%s/cur/%s:2,", mdpath, longer);
	ck_assert_int_ne(fd = open(path, O_CREAT | O_WRONLY, 0600), -1);
	close(fd);
	snprintf(path, sizeof(path), "%s/cur/%.*s:2,", mdpath,
	    (int)strlen(final[3]) - 1, final[3]);
	ck_assert_int_ne(fd = open(path, O_CREAT | O_WRONLY, 0600), -1);
	close(fd);
	/* And one in tmp/ only. */
	snprintf(path, sizeof(path), "%s/tmp/only-in-tmp", mdpath);
	ck_assert_int_ne(fd = open(path, O_CREAT | O_WRONLY, 0600), -1);
	close(fd);

	names[0] = final[0];
	names[1] = final[1];
	names[2] = final[2];
	names[3] = final[3];
	names[4] = longer;   /* in cur/ itself */
	names[5] = final[1]; /* asked twice */
	names[6] = "only-in-tmp";
	for (i = 0; i < 7; i++)
		ck_assert_int_eq(maildir_delivered(md, names[i]), want[i]);
	memset(found, 0xff, sizeof(found));
	ck_assert_int_eq(maildir_delivered_many(md, names, 7, found), 0);
	for (i = 0; i < 7; i++)
		ck_assert_int_eq(found[i], want[i]);
	/* Nothing asked, nothing done. */
	ck_assert_int_eq(maildir_delivered_many(md, names, 0, found), 0);
	/* A bad name fails the call. */
	names[6] = "../x";
	errno = 0;
	ck_assert_int_eq(maildir_delivered_many(md, names, 7, found), -1);
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_int_eq(maildir_delivered(md, "a/b"), -1);
	ck_assert_int_eq(errno, EINVAL);
	maildir_close(&md);
}
END_TEST

/* Many names against a large cur/: the same answers as one by one. */
START_TEST(test_delivered_many_scale)
{
	enum { N = 600 };
	char errbuf[256], path[PATH_MAX + 64];
	char(*names)[32] = calloc(N, sizeof(*names));
	const char **ptrs = calloc(N, sizeof(*ptrs));
	int *found = calloc(N, sizeof(*found));
	struct maildir *md;
	size_t i;
	int fd;

	ck_assert_ptr_nonnull(names);
	ck_assert_ptr_nonnull(ptrs);
	ck_assert_ptr_nonnull(found);
	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	/* Every third in cur/, every fifth in new/, the rest nowhere. */
	for (i = 0; i < N; i++) {
		snprintf(names[N - 1 - i], sizeof(names[0]), "m%zu,S=1", i);
		ptrs[N - 1 - i] = names[N - 1 - i];
		if (i % 3 == 0)
			snprintf(path, sizeof(path), "%s/cur/m%zu,S=1:2,S",
			    mdpath, i);
		else if (i % 5 == 0)
			snprintf(
			    path, sizeof(path), "%s/new/m%zu,S=1", mdpath, i);
		else
			continue;
		ck_assert_int_ne(fd = open(path, O_CREAT | O_WRONLY, 0600), -1);
		close(fd);
	}
	ck_assert_int_eq(maildir_delivered_many(md, ptrs, N, found), 0);
	for (i = 0; i < N; i++)
		ck_assert_int_eq(found[i], maildir_delivered(md, ptrs[i]));
	for (i = 0; i < N; i++)
		ck_assert_int_eq(found[N - 1 - i], i % 3 == 0 || i % 5 == 0);
	maildir_close(&md);
	free(names);
	free(ptrs);
	free(found);
}
END_TEST

/* Network and FUSE file systems are recognised; local ones are not. */
START_TEST(test_syncfs_classification)
{
	static const struct {
		unsigned long type;
		const char *name;
	} cases[] = {
	    {0x65735546UL, "fuse"}, {0x6969UL, "nfs"}, {0xff534d42UL, "cifs"},
	    {0xfe534d42UL, "smb2"}, {0x01021997UL, "9p"},
	    {0x00c36400UL, "ceph"}, {0x0bd00bd0UL, "lustre"},
	    {0xef53UL, NULL},	  /* ext4 */
	    {0x58465342UL, NULL}, /* xfs */
	    {0x9123683eUL, NULL}, /* btrfs */
	    {0x01021994UL, NULL}, /* tmpfs */
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = maildir_syncfs_unreliable(cases[i].type);

		if (cases[i].name == NULL)
			ck_assert_ptr_null(got);
		else
			ck_assert_str_eq(got, cases[i].name);
	}
	/* A signed f_type sign-extended to 64 bits is the same type. */
	ck_assert_str_eq(
	    maildir_syncfs_unreliable((unsigned long)(long)(int)0xff534d42U),
	    "cifs");
}
END_TEST

#ifdef POPFETCHD_TEST_HOOKS
/* Finishes a message; its names go to TMPNAME and FINAL. */
static void
finish_one(struct maildir *md, char *tmpname, char *final)
{
	struct maildir_msg *msg = begin_with(md, "m\r\n");

	ck_assert_int_eq(maildir_finish(&msg, tmpname, MAILDIR_NAME_SIZE, final,
			     MAILDIR_NAME_SIZE),
	    0);
}

/*
 * A sync that failed once fails for good on that handle: a retry would
 * report success for data the kernel may have dropped. A new handle
 * starts clean.
 */
START_TEST(test_sync_error_sticky)
{
	char errbuf[256], tmpname[MAILDIR_NAME_SIZE], final[MAILDIR_NAME_SIZE];
	struct maildir *md;

	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	finish_one(md, tmpname, final);
	/* The syncfs of tmp/ fails: so does every sync and publish after. */
	fsutil_test_fail_sync(1, EIO);
	errno = 0;
	ck_assert_int_eq(maildir_sync_tmp(md, NULL, 0), -1);
	ck_assert_int_eq(errno, EIO);
	errno = 0;
	ck_assert_int_eq(maildir_sync_tmp(md, NULL, 0), -1);
	ck_assert_int_eq(errno, EIO);
	errno = 0;
	ck_assert_int_eq(maildir_publish(md, tmpname, final), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 0);
	errno = 0;
	ck_assert_int_eq(maildir_sync(md), -1);
	ck_assert_int_eq(errno, EIO);
	/* Dropping what was not recorded still works. */
	ck_assert_int_eq(maildir_drop_tmp(md, tmpname), 0);
	maildir_close(&md);

	/* A new handle (the next poll) works again. */
	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	finish_one(md, tmpname, final);
	ck_assert_int_eq(maildir_sync_tmp(md, NULL, 0), 0);
	ck_assert_int_eq(maildir_publish(md, tmpname, final), 0);
	/* The fsync of new/ fails: retrying it does not make it succeed. */
	fsutil_test_fail_sync(1, EIO);
	ck_assert_int_eq(maildir_sync(md), -1);
	errno = 0;
	ck_assert_int_eq(maildir_sync(md), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_eq(maildir_sync_tmp(md, NULL, 0), -1);
	maildir_close(&md);
}
END_TEST

/* The same in per-file mode, where the sync fsyncs each file, then tmp/. */
START_TEST(test_sync_error_sticky_file_mode)
{
	char errbuf[256], tmpname[MAILDIR_NAME_SIZE], final[MAILDIR_NAME_SIZE];
	char tmp2[MAILDIR_NAME_SIZE], final2[MAILDIR_NAME_SIZE];
	const char *names[2];
	struct maildir *md;

	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	maildir_set_sync(md, MAILDIR_SYNC_FILE);
	finish_one(md, tmpname, final);
	finish_one(md, tmp2, final2);
	names[0] = tmpname;
	names[1] = tmp2;
	/* The third fsync of the sync: that of tmp/. */
	fsutil_test_fail_sync(3, EIO);
	errno = 0;
	ck_assert_int_eq(maildir_sync_tmp(md, names, 2), -1);
	ck_assert_int_eq(errno, EIO);
	/* Nothing is synced or published any more on this handle. */
	errno = 0;
	ck_assert_int_eq(maildir_sync_tmp(md, names, 2), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_eq(maildir_publish(md, tmpname, final), -1);
	ck_assert_int_eq(maildir_sync(md), -1);
	ck_assert_int_eq(check_count_entries(mdpath, "new"), 0);
	maildir_close(&md);
}
END_TEST

/*
 * The open makes the Maildir without a sync of its own (four for a new
 * one, before): the first sync of tmp/ makes the directories durable
 * with the messages (in file mode two more fsyncs: the Maildir, for
 * tmp/ new/ cur/, then its parent), and only the first.
 */
START_TEST(test_made_dirs_synced_with_first_batch)
{
	char errbuf[256], tmpname[MAILDIR_NAME_SIZE], final[MAILDIR_NAME_SIZE];
	const char *names[1] = {tmpname};
	struct maildir *md;

	/* Any sync in the open would fail it. */
	fsutil_test_fail_sync(1, EIO);
	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	fsutil_test_fail_sync(0, 0);
	maildir_set_sync(md, MAILDIR_SYNC_FILE);
	finish_one(md, tmpname, final);
	/* The file, tmp/, the Maildir, and fourth its parent. */
	fsutil_test_fail_sync(4, EIO);
	errno = 0;
	ck_assert_int_eq(maildir_sync_tmp(md, names, 1), -1);
	ck_assert_int_eq(errno, EIO);
	maildir_close(&md);

	/* Nothing made by this open: the file and tmp/ only. */
	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	maildir_set_sync(md, MAILDIR_SYNC_FILE);
	finish_one(md, tmpname, final);
	fsutil_test_fail_sync(3, EIO);
	ck_assert_int_eq(maildir_sync_tmp(md, names, 1), 0);
	fsutil_test_fail_sync(0, 0);
	maildir_close(&md);
}
END_TEST

/*
 * Recovery publishes into new/ and fsyncs it with no sync of tmp/ before:
 * the fsync of new/ then makes the directories the open made durable too
 * (the Maildir, for tmp/ new/ cur/, then its parent), in either mode.
 */
START_TEST(test_made_dirs_synced_with_new)
{
	char errbuf[256];
	struct maildir *md;

	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	/* new/, the Maildir, and third its parent. */
	fsutil_test_fail_sync(3, EIO);
	errno = 0;
	ck_assert_int_eq(maildir_sync(md), -1);
	ck_assert_int_eq(errno, EIO);
	maildir_close(&md);

	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	fsutil_test_fail_sync(2, EIO);
	ck_assert_int_eq(maildir_sync(md), 0);
	fsutil_test_fail_sync(0, 0);
	maildir_close(&md);
}
END_TEST

/* Batch mode on a file system without a trustworthy syncfs: per file. */
START_TEST(test_syncfs_fallback)
{
	char errbuf[256], tmpname[MAILDIR_NAME_SIZE], final[MAILDIR_NAME_SIZE];
	struct maildir_msg *msg;
	struct maildir *md;

	/* Here (a local file system): batch mode stays. */
	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	ck_assert_ptr_null(maildir_sync_fallback(md));
	maildir_close(&md);

	fsutil_test_force_fs_type(0x6969UL);
	md = maildir_open(mdpath, errbuf, sizeof(errbuf));
	fsutil_test_force_fs_type(0);
	ck_assert_ptr_nonnull(md);
	/* The default is batch: it falls back at once. */
	ck_assert_str_eq(maildir_sync_fallback(md), "nfs");
	maildir_set_sync(md, MAILDIR_SYNC_FILE);
	ck_assert_ptr_null(maildir_sync_fallback(md));
	maildir_set_sync(md, MAILDIR_SYNC_BATCH);
	ck_assert_str_eq(maildir_sync_fallback(md), "nfs");
	/* Per file: the sync fsyncs the file (its first fsync fails). */
	msg = begin_with(md, "m\r\n");
	ck_assert_int_eq(maildir_finish(&msg, tmpname, sizeof(tmpname), final,
			     sizeof(final)),
	    0);
	fsutil_test_fail_sync(1, EIO);
	{
		const char *names[] = {tmpname};

		errno = 0;
		ck_assert_int_eq(maildir_sync_tmp(md, names, 1), -1);
		ck_assert_int_eq(errno, EIO);
	}
	maildir_close(&md);
}
END_TEST
#endif

static Suite *
maildir_suite(void)
{
	Suite *s = suite_create("maildir");
	TCase *tc = tcase_create("maildir");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_unique_name_format);
	tcase_add_test(tc, test_unique_name_too_long);
	tcase_add_test(tc, test_unique_across_deliveries);
	tcase_add_loop_test(tc, test_crlf_every_split, 0, 2);
	tcase_add_test(tc, test_crlf_byte_at_a_time);
	tcase_add_test(tc, test_empty_message);
	tcase_add_test(tc, test_large_message);
	tcase_add_test(tc, test_abort_leaves_nothing);
	tcase_add_test(tc, test_open_creates_tree);
	tcase_add_test(tc, test_open_errors);
	tcase_add_test(tc, test_open_missing_parent);
	tcase_add_test(tc, test_open_permission);
	tcase_add_test(tc, test_stale_tmp_cleanup);
	tcase_add_test(tc, test_clean_tmp_keep);
	tcase_add_test(tc, test_clean_tmp_orphans);
	tcase_add_test(tc, test_write_error_in_write);
	tcase_add_test(tc, test_write_error_in_finish);
	tcase_add_test(tc, test_free_space_and_sync);
	tcase_add_test(tc, test_name_in_tmp_and_new);
	tcase_add_test(tc, test_finish_leaves_tmp_only);
	tcase_add_test(tc, test_finish_small_buffers);
	tcase_add_test(tc, test_finish_avoids_clash);
	tcase_add_test(tc, test_publish_idempotent);
	tcase_add_test(tc, test_publish_final_exists);
	tcase_add_test(tc, test_names_validated);
	tcase_add_test(tc, test_delivered_one_and_many);
	tcase_add_test(tc, test_delivered_many_scale);
	tcase_add_test(tc, test_syncfs_classification);
#ifdef POPFETCHD_TEST_HOOKS
	tcase_add_test(tc, test_sync_error_sticky);
	tcase_add_test(tc, test_sync_error_sticky_file_mode);
	tcase_add_test(tc, test_made_dirs_synced_with_first_batch);
	tcase_add_test(tc, test_made_dirs_synced_with_new);
	tcase_add_test(tc, test_syncfs_fallback);
#endif
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_main(maildir_suite());
}
