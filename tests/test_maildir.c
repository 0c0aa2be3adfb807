/*
 * Tests of daemon/maildir.c: unique names, CRLF conversion at every split,
 * what lands in new/ and what is left in tmp/, stale tmp/ cleanup, and
 * write errors carried to the caller.
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

#include "maildir.h"

static char tmpdir[1024];
static char mdpath[2048];

static void setup(void);
static void teardown(void);
static void rm_rf(const char *path);
static int count_files(const char *sub);
static char *only_file(const char *sub);
static char *read_file(const char *path, size_t *len);
static void deliver(struct maildir *md, const char *const *chunks,
    const size_t *lens, size_t n, char *name, size_t namelen);
static void check_delivered(const char *name, const char *want, size_t wantlen);
static Suite *maildir_suite(void);

static void
setup(void)
{
	const char *base = getenv("TMPDIR");

	snprintf(tmpdir, sizeof(tmpdir), "%s/test_maildir.XXXXXX",
	    base != NULL && base[0] != '\0' ? base : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(mdpath, sizeof(mdpath), "%s/Maildir", tmpdir);
}

static void
teardown(void)
{
	rm_rf(tmpdir);
}

/* Removes PATH and everything below it. */
static void
rm_rf(const char *path)
{
	struct dirent *de;
	char sub[PATH_MAX];
	DIR *dir;

	if ((dir = opendir(path)) == NULL) {
		unlink(path);
		return;
	}
	while ((de = readdir(dir)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		rm_rf(sub);
	}
	closedir(dir);
	rmdir(path);
}

/* Number of entries (other than . and ..) in mdpath/SUB. */
static int
count_files(const char *sub)
{
	struct dirent *de;
	char path[PATH_MAX];
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s", mdpath, sub);
	ck_assert_ptr_nonnull(dir = opendir(path));
	while ((de = readdir(dir)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
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

static char *
read_file(const char *path, size_t *len)
{
	struct stat sb;
	char *buf;
	int fd;

	ck_assert_int_ne(fd = open(path, O_RDONLY), -1);
	ck_assert_int_eq(fstat(fd, &sb), 0);
	buf = malloc((size_t)sb.st_size + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_int_eq(read(fd, buf, (size_t)sb.st_size), sb.st_size);
	close(fd);
	*len = (size_t)sb.st_size;
	return buf;
}

/* Writes one message from N chunks and commits it. */
static void
deliver(struct maildir *md, const char *const *chunks, const size_t *lens,
    size_t n, char *name, size_t namelen)
{
	struct maildir_msg *msg;
	size_t i;

	ck_assert_ptr_nonnull(msg = maildir_begin(md));
	for (i = 0; i < n; i++)
		ck_assert_int_eq(maildir_write(msg, chunks[i], lens[i]), 0);
	ck_assert_int_eq(maildir_commit(&msg, name, namelen), 0);
	ck_assert_ptr_null(msg);
}

/* new/NAME holds exactly WANT, and its S= says its size. */
static void
check_delivered(const char *name, const char *want, size_t wantlen)
{
	char path[PATH_MAX], tail[64];
	size_t len, tlen;
	char *got;

	snprintf(path, sizeof(path), "%s/new/%s", mdpath, name);
	got = read_file(path, &len);
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

START_TEST(test_unique_across_commits)
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
	ck_assert_int_eq(count_files("new"), N);
	ck_assert_int_eq(count_files("tmp"), 0);
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

START_TEST(test_crlf_every_split)
{
	size_t len = sizeof(sample) - 1, wlen = sizeof(sample_lf) - 1;
	char errbuf[256], name[512];
	struct maildir *md;
	size_t i, j;

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
	ck_assert_int_eq(count_files("tmp"), 0);
	maildir_close(&md);
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
	/* The final CR is held until the commit knows nothing follows. */
	ck_assert_uint_eq(maildir_msg_size(msg), sizeof(sample_lf) - 2);
	ck_assert_int_eq(maildir_commit(&msg, name, sizeof(name)), 0);
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
	ck_assert_int_eq(maildir_commit(&msg, name, sizeof(name)), 0);
	check_delivered(name, "", 0);
	ck_assert_int_eq(count_files("tmp"), 0);
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
	ck_assert_int_eq(maildir_commit(&msg, name, sizeof(name)), 0);
	check_delivered(name, out, outlen);
	ck_assert_int_eq(count_files("tmp"), 0);
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
	ck_assert_int_eq(count_files("tmp"), 1);
	ck_assert_int_eq(maildir_write(msg, "Subject: x\r\n\r\nbody\r", 19), 0);
	maildir_abort(&msg);
	ck_assert_ptr_null(msg);
	maildir_abort(&msg);
	ck_assert_int_eq(count_files("tmp"), 0);
	ck_assert_int_eq(count_files("new"), 0);
	ck_assert_int_eq(count_files("cur"), 0);
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

	/* Parents too, like mkdir -p. */
	snprintf(mdpath, sizeof(mdpath), "%s/a/b/Maildir/", tmpdir);
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
	snprintf(path, sizeof(path), "cannot create %s/new/x: Not a directory",
	    mdpath);
	ck_assert_str_eq(errbuf, path);
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

START_TEST(test_stale_tmp_cleanup)
{
	char errbuf[256], path[PATH_MAX + 64];
	struct maildir *md;
	struct stat sb;

	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	maildir_close(&md);
	make_old("stale", 37 * 3600, 0);
	make_old("fresh", 1 * 3600, 0);
	make_old("young", 35 * 3600, 0);
	make_old("olddir", 37 * 3600, 1);
	ck_assert_ptr_nonnull(
	    md = maildir_open(mdpath, errbuf, sizeof(errbuf)));
	snprintf(path, sizeof(path), "%s/tmp/stale", mdpath);
	ck_assert_int_eq(stat(path, &sb), -1);
	snprintf(path, sizeof(path), "%s/tmp/fresh", mdpath);
	ck_assert_int_eq(stat(path, &sb), 0);
	snprintf(path, sizeof(path), "%s/tmp/young", mdpath);
	ck_assert_int_eq(stat(path, &sb), 0);
	/* Only regular files are ours to remove. */
	snprintf(path, sizeof(path), "%s/tmp/olddir", mdpath);
	ck_assert_int_eq(stat(path, &sb), 0);
	maildir_close(&md);
}
END_TEST

/*
 * In a child limited to LIMIT bytes per file (SIGXFSZ ignored, so write
 * fails with EFBIG): writes LEN bytes, then commits. Returns what went
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
		if (maildir_write(msg, data, len) != 0)
			return 14;
		if (maildir_commit(&msg, NULL, 0) != -1 || errno != EFBIG)
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
	ck_assert_int_eq(count_files("new"), 0);
	ck_assert_int_eq(count_files("tmp"), 0);
}

START_TEST(test_write_error_in_write)
{
	/* More than the buffer holds, so write(2) happens in maildir_write. */
	check_write_error(200000, 1);
}
END_TEST

START_TEST(test_write_error_in_commit)
{
	/* Fits the buffer: the error shows when commit flushes it. */
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
	ck_assert_int_eq(maildir_commit(&msg, name, sizeof(name)), 0);
	newname = only_file("new");
	ck_assert_str_eq(newname, name);
	ck_assert_int_eq(strncmp(newname, tmpname, strlen(tmpname)), 0);
	ck_assert_str_eq(newname + strlen(tmpname), ",S=3");
	ck_assert_int_eq(gethostname(host, sizeof(host)), 0);
	if (strchr(host, '/') == NULL && strchr(host, ':') == NULL)
		ck_assert_ptr_nonnull(strstr(newname, host));
	free(tmpname);
	free(newname);
	maildir_close(&md);
}
END_TEST

static Suite *
maildir_suite(void)
{
	Suite *s = suite_create("maildir");
	TCase *tc = tcase_create("maildir");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_unique_name_format);
	tcase_add_test(tc, test_unique_name_too_long);
	tcase_add_test(tc, test_unique_across_commits);
	tcase_add_test(tc, test_crlf_every_split);
	tcase_add_test(tc, test_crlf_byte_at_a_time);
	tcase_add_test(tc, test_empty_message);
	tcase_add_test(tc, test_large_message);
	tcase_add_test(tc, test_abort_leaves_nothing);
	tcase_add_test(tc, test_open_creates_tree);
	tcase_add_test(tc, test_open_errors);
	tcase_add_test(tc, test_open_permission);
	tcase_add_test(tc, test_stale_tmp_cleanup);
	tcase_add_test(tc, test_write_error_in_write);
	tcase_add_test(tc, test_write_error_in_commit);
	tcase_add_test(tc, test_free_space_and_sync);
	tcase_add_test(tc, test_name_in_tmp_and_new);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(maildir_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
