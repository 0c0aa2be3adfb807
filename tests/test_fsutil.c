/*
 * Tests of daemon/fsutil.c, one contract at a time: write_all through
 * interrupted and short writes (write(2) is wrapped at link time to make
 * them) and its errors, mkdir_p's directories and the directory it names
 * when it fails, the table of valid names, the sync calls and their armed
 * failures, and the file-system type with its forced value. Built with the test
 * hooks whatever the build's option, so that the hooks have a test too.
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/vfs.h>
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
#include <unistd.h>

#include "fsutil.h"
#include "check_main.h"
#include "check_util.h"

static char tmpdir[1024];

static void
setup(void)
{
	check_tmpdir(tmpdir, sizeof(tmpdir), "test_fsutil");
	/* So that the mode mkdir_p asks for is the mode it gets. */
	umask(022);
	fsutil_test_fail_sync(0, 0);
	fsutil_test_force_fs_type(0);
}

static void
teardown(void)
{
	check_rm_rf(tmpdir);
}

/* tmpdir/REL in BUF (PATH_MAX bytes). */
static char *
in_tmp(char *buf, const char *rel)
{
	snprintf(buf, PATH_MAX, "%s/%s", tmpdir, rel);
	return buf;
}

static void
make_file(const char *rel)
{
	char path[PATH_MAX];
	int fd;

	fd = open(in_tmp(path, rel), O_WRONLY | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ne(fd, -1);
	close(fd);
}

static void
assert_dir_0700(const char *path)
{
	struct stat sb;

	ck_assert_msg(stat(path, &sb) == 0, "%s: %s", path, strerror(errno));
	ck_assert(S_ISDIR(sb.st_mode));
	ck_assert_uint_eq(sb.st_mode & 07777, 0700);
}

/* --- fsutil_write_all ------------------------------------------------ */

/*
 * write(2) as the test scripts it (the link wraps it): with SCRIPTED,
 * every other call is interrupted before writing and the rest write a
 * few bytes only; with ZERO, each call claims to have written nothing.
 */
static enum { W_REAL, W_SCRIPTED, W_ZERO } wmode;
static unsigned wcalls, wintr, wshort;

ssize_t __real_write(int fd, const void *buf, size_t len);
ssize_t __wrap_write(int fd, const void *buf, size_t len);

ssize_t
__wrap_write(int fd, const void *buf, size_t len)
{
	unsigned call = wcalls++;
	size_t part;

	if (wmode == W_ZERO && call < 100)
		return 0;
	if (wmode == W_ZERO) {
		/* Ends a spin, so that the test fails rather than hangs. */
		errno = ENOSPC;
		return -1;
	}
	if (wmode == W_REAL)
		return __real_write(fd, buf, len);
	if (call % 2 == 0) {
		wintr++;
		errno = EINTR;
		return -1;
	}
	part = 1 + call % 97;
	if (part < len)
		wshort++;
	return __real_write(fd, buf, part < len ? part : len);
}

START_TEST(write_all_goes_on_after_interruptions_and_short_writes)
{
	char path[PATH_MAX], *got;
	static char data[100000];
	struct stat sb;
	size_t i;
	int fd;

	for (i = 0; i < sizeof(data); i++)
		data[i] = (char)(i * 7 + i / 251);
	fd = open(in_tmp(path, "f"), O_RDWR | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ne(fd, -1);
	wmode = W_SCRIPTED;
	ck_assert_int_eq(fsutil_write_all(fd, data, sizeof(data)), 0);
	wmode = W_REAL;
	ck_assert_uint_gt(wintr, 100);
	ck_assert_uint_gt(wshort, 100);
	ck_assert_int_eq(fstat(fd, &sb), 0);
	ck_assert_int_eq(sb.st_size, (off_t)sizeof(data));
	ck_assert_ptr_nonnull(got = malloc(sizeof(data)));
	ck_assert_int_eq(pread(fd, got, sizeof(data), 0), sizeof(data));
	ck_assert(memcmp(got, data, sizeof(data)) == 0);
	free(got);
	close(fd);
}
END_TEST

/* A write that makes no progress is an error at once, not a spin. */
START_TEST(write_all_refuses_to_spin_on_zero)
{
	char path[PATH_MAX];
	int fd;

	fd = open(in_tmp(path, "f"), O_RDWR | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ne(fd, -1);
	wmode = W_ZERO;
	wcalls = 0;
	errno = 0;
	ck_assert_int_eq(fsutil_write_all(fd, "abc", 3), -1);
	wmode = W_REAL;
	ck_assert_int_eq(errno, EIO);
	ck_assert_uint_eq(wcalls, 1);
	close(fd);
}
END_TEST

START_TEST(write_all_reports_errors)
{
	char path[PATH_MAX];
	int p[2], fd;

	/* Nothing to write is no error, even on a descriptor that is none. */
	ck_assert_int_eq(fsutil_write_all(-1, "", 0), 0);

	errno = 0;
	ck_assert_int_eq(fsutil_write_all(-1, "x", 1), -1);
	ck_assert_int_eq(errno, EBADF);

	make_file("ro");
	ck_assert_int_ne(fd = open(in_tmp(path, "ro"), O_RDONLY), -1);
	errno = 0;
	ck_assert_int_eq(fsutil_write_all(fd, "x", 1), -1);
	ck_assert_int_eq(errno, EBADF);
	close(fd);

	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(pipe(p), 0);
	close(p[0]);
	errno = 0;
	ck_assert_int_eq(fsutil_write_all(p[1], "abc", 3), -1);
	ck_assert_int_eq(errno, EPIPE);
	close(p[1]);
}
END_TEST

START_TEST(write_all_writes_every_byte_to_a_file)
{
	char path[PATH_MAX], buf[64];
	const char text[] = "line one\nline\0two\n";
	struct stat sb;
	int fd;

	fd = open(in_tmp(path, "f"), O_RDWR | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(fsutil_write_all(fd, text, sizeof(text) - 1), 0);
	ck_assert_int_eq(fstat(fd, &sb), 0);
	ck_assert_int_eq(sb.st_size, (off_t)sizeof(text) - 1);
	ck_assert_int_eq(pread(fd, buf, sizeof(buf), 0), sizeof(text) - 1);
	ck_assert(memcmp(buf, text, sizeof(text) - 1) == 0);
	close(fd);
}
END_TEST

/* --- fsutil_mkdir_p --------------------------------------------------- */

START_TEST(mkdir_p_creates_every_missing_directory)
{
	char path[PATH_MAX], sub[PATH_MAX], err[256] = "untouched";
	struct stat sb;

	in_tmp(path, "a/b/c");
	ck_assert_int_eq(fsutil_mkdir_p(path, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "untouched");
	assert_dir_0700(in_tmp(sub, "a"));
	assert_dir_0700(in_tmp(sub, "a/b"));
	assert_dir_0700(path);

	/* Again: what exists is no error, and is left as it is. */
	ck_assert_int_eq(chmod(in_tmp(sub, "a/b"), 0750), 0);
	ck_assert_int_eq(fsutil_mkdir_p(path, err, sizeof(err)), 0);
	ck_assert_int_eq(fsutil_mkdir_p(tmpdir, NULL, 0), 0);
	ck_assert_int_eq(stat(sub, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 07777, 0750);

	/* Doubled and trailing slashes name the same directories. */
	in_tmp(path, "x//y///z/");
	ck_assert_int_eq(fsutil_mkdir_p(path, NULL, 0), 0);
	assert_dir_0700(in_tmp(sub, "x/y/z"));
}
END_TEST

START_TEST(mkdir_p_relative_path)
{
	struct stat sb;

	ck_assert_int_eq(chdir(tmpdir), 0);
	ck_assert_int_eq(fsutil_mkdir_p("rel/one", NULL, 0), 0);
	ck_assert_int_eq(stat("rel/one", &sb), 0);
	ck_assert(S_ISDIR(sb.st_mode));
}
END_TEST

START_TEST(mkdir_p_names_the_directory_that_failed)
{
	char path[PATH_MAX], want[PATH_MAX + 64], err[PATH_MAX + 64];

	make_file("file");
	in_tmp(path, "file/sub/deeper");
	errno = 0;
	ck_assert_int_eq(fsutil_mkdir_p(path, err, sizeof(err)), -1);
	ck_assert_int_eq(errno, ENOTDIR);
	snprintf(want, sizeof(want), "cannot create %s/file/sub: %s", tmpdir,
	    strerror(ENOTDIR));
	ck_assert_str_eq(err, want);

	/* No error buffer needed. */
	errno = 0;
	ck_assert_int_eq(fsutil_mkdir_p(path, NULL, 0), -1);
	ck_assert_int_eq(errno, ENOTDIR);

	/* A short buffer is cut, and still a string. */
	memset(err, 'x', sizeof(err));
	ck_assert_int_eq(fsutil_mkdir_p(in_tmp(path, "file/sub"), err, 10), -1);
	ck_assert_str_eq(err, "cannot cr");
}
END_TEST

START_TEST(mkdir_p_refuses_the_empty_path)
{
	char err[64];

	errno = 0;
	ck_assert_int_eq(fsutil_mkdir_p("", err, sizeof(err)), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_str_eq(err, "cannot create \"\": No such file or directory");
}
END_TEST

/* As an unprivileged user (a child drops root): EACCES, and where. */
START_TEST(mkdir_p_permission_denied)
{
	char path[PATH_MAX], want[PATH_MAX + 64];
	int status;
	pid_t pid;

	ck_assert_int_eq(mkdir(in_tmp(path, "locked"), 0555), 0);
	in_tmp(path, "locked/a/b");
	snprintf(want, sizeof(want), "cannot create %s/locked/a: %s", tmpdir,
	    strerror(EACCES));
	ck_assert_int_ne(pid = fork(), -1);
	if (pid == 0) {
		char err[PATH_MAX + 64];

		if (geteuid() == 0 &&
		    (chmod(tmpdir, 0755) == -1 || setgid(65534) == -1 ||
			setuid(65534) == -1))
			_exit(2);
		if (fsutil_mkdir_p(path, err, sizeof(err)) != -1 ||
		    errno != EACCES)
			_exit(3);
		_exit(strcmp(err, want) == 0 ? 0 : 4);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

/* --- fsutil_valid_name ----------------------------------------------- */

START_TEST(valid_name_table)
{
	static const struct {
		const char *name;
		size_t len;
		bool ok;
	} cases[] = {
	    {"1700000000.M1P2Q3.host,S=12:2,S", 31, true},
	    {"a", 1, true},
	    {"...", 3, true},
	    {".hidden", 7, true},
	    {"~!#$%&'()*+,-;<=>?@[\\]^_`{|}", 28, true},
	    {"", 0, false},
	    {".", 1, false},
	    {"..", 2, false},
	    {"a/b", 3, false},
	    {"/", 1, false},
	    {"a b", 3, false},
	    {"a\tb", 3, false},
	    {"a\nb", 3, false},
	    {"a\x7f", 2, false},
	    {"a\x80", 2, false},
	    {"\xff", 1, false},
	    {"a\0b", 3, false},
	    /* Only LEN bytes count: what follows them is not looked at. */
	    {"ab/", 2, true},
	    {"../x", 1, false},
	    {"../x", 2, false},
	};
	char longest[NAME_MAX + 2];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_msg(fsutil_valid_name(cases[i].name, cases[i].len) ==
				  cases[i].ok,
		    "case %zu", i);
	memset(longest, 'n', sizeof(longest));
	ck_assert(fsutil_valid_name(longest, NAME_MAX));
	ck_assert(!fsutil_valid_name(longest, NAME_MAX + 1));
}
END_TEST

/* --- sync calls, file-system type, and their hooks ------------------- */

static int
open_tmp_file(void)
{
	char path[PATH_MAX];
	int fd;

	fd = open(in_tmp(path, "s"), O_RDWR | O_CREAT, 0600);
	ck_assert_int_ne(fd, -1);
	return fd;
}

START_TEST(sync_calls_pass_results_through)
{
	int fd = open_tmp_file();

	ck_assert_int_eq(fsutil_fsync(fd), 0);
	ck_assert_int_eq(fsutil_syncfs(fd), 0);
	close(fd);
	errno = 0;
	ck_assert_int_eq(fsutil_fsync(fd), -1);
	ck_assert_int_eq(errno, EBADF);
	errno = 0;
	ck_assert_int_eq(fsutil_syncfs(fd), -1);
	ck_assert_int_eq(errno, EBADF);
}
END_TEST

START_TEST(armed_sync_failure_hits_the_nth_call_once)
{
	int fd = open_tmp_file();

	/* The count runs over both calls. */
	fsutil_test_fail_sync(3, ENOSPC);
	ck_assert_int_eq(fsutil_fsync(fd), 0);
	ck_assert_int_eq(fsutil_syncfs(fd), 0);
	errno = 0;
	ck_assert_int_eq(fsutil_fsync(fd), -1);
	ck_assert_int_eq(errno, ENOSPC);
	ck_assert_int_eq(fsutil_fsync(fd), 0);
	ck_assert_int_eq(fsutil_syncfs(fd), 0);

	fsutil_test_fail_sync(1, EIO);
	errno = 0;
	ck_assert_int_eq(fsutil_syncfs(fd), -1);
	ck_assert_int_eq(errno, EIO);
	ck_assert_int_eq(fsutil_syncfs(fd), 0);

	/* Disarmed before its turn: nothing fails. */
	fsutil_test_fail_sync(2, EIO);
	ck_assert_int_eq(fsutil_fsync(fd), 0);
	fsutil_test_fail_sync(0, EIO);
	ck_assert_int_eq(fsutil_fsync(fd), 0);
	ck_assert_int_eq(fsutil_fsync(fd), 0);
	close(fd);
}
END_TEST

START_TEST(fs_type_is_statfs_magic)
{
	unsigned long type = 0;
	struct statfs sf;
	int fd = open_tmp_file();

	ck_assert_int_eq(fstatfs(fd, &sf), 0);
	ck_assert_int_eq(fsutil_fs_type(fd, &type), 0);
	ck_assert_uint_eq(type, (unsigned long)sf.f_type & 0xffffffffUL);
	ck_assert_uint_ne(type, 0);

	fsutil_test_force_fs_type(0x6969); /* NFS */
	type = 0;
	ck_assert_int_eq(fsutil_fs_type(fd, &type), 0);
	ck_assert_uint_eq(type, 0x6969);
	fsutil_test_force_fs_type(0);
	ck_assert_int_eq(fsutil_fs_type(fd, &type), 0);
	ck_assert_uint_eq(type, (unsigned long)sf.f_type & 0xffffffffUL);
	close(fd);

	errno = 0;
	ck_assert_int_eq(fsutil_fs_type(fd, &type), -1);
	ck_assert_int_eq(errno, EBADF);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("fsutil");
	TCase *tc;

	tc = tcase_create("write_all");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(
	    tc, write_all_goes_on_after_interruptions_and_short_writes);
	tcase_add_test(tc, write_all_refuses_to_spin_on_zero);
	tcase_add_test(tc, write_all_reports_errors);
	tcase_add_test(tc, write_all_writes_every_byte_to_a_file);
	suite_add_tcase(s, tc);

	tc = tcase_create("mkdir_p");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, mkdir_p_creates_every_missing_directory);
	tcase_add_test(tc, mkdir_p_relative_path);
	tcase_add_test(tc, mkdir_p_names_the_directory_that_failed);
	tcase_add_test(tc, mkdir_p_refuses_the_empty_path);
	tcase_add_test(tc, mkdir_p_permission_denied);
	suite_add_tcase(s, tc);

	tc = tcase_create("names");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, valid_name_table);
	suite_add_tcase(s, tc);

	tc = tcase_create("sync");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, sync_calls_pass_results_through);
	tcase_add_test(tc, armed_sync_failure_hits_the_nth_call_once);
	tcase_add_test(tc, fs_type_is_statfs_magic);
	suite_add_tcase(s, tc);

	return check_main(s);
}
