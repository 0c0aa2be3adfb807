/*
 * The file helpers the Check tests share: a fresh folder per test, its
 * removal with everything in it, and whole files read and written. Each
 * fails the running test when a step fails, so callers need not check.
 */
#ifndef POPFETCHD_CHECK_UTIL_H
#define POPFETCHD_CHECK_UTIL_H

#include <sys/stat.h>
#include <sys/types.h>

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * Makes a fresh directory $TMPDIR/NAME.XXXXXX (/tmp without TMPDIR) and
 * writes its path into BUF, of LEN bytes.
 */
static inline void
check_tmpdir(char *buf, size_t len, const char *name)
{
	const char *base = getenv("TMPDIR");
	int n;

	n = snprintf(buf, len, "%s/%s.XXXXXX",
	    base != NULL && base[0] != '\0' ? base : "/tmp", name);
	ck_assert_msg(n > 0 && (size_t)n < len, "temporary path too long");
	ck_assert_ptr_nonnull(mkdtemp(buf));
}

/* Removes PATH and everything below it; a missing PATH is no error. */
static inline void
check_rm_rf(const char *path)
{
	struct dirent *de;
	char sub[PATH_MAX];
	DIR *dir;
	int n;

	if ((dir = opendir(path)) == NULL) {
		unlink(path);
		return;
	}
	while ((de = readdir(dir)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		n = snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		ck_assert_int_lt(n, (int)sizeof(sub));
		check_rm_rf(sub);
	}
	closedir(dir);
	rmdir(path);
}

/*
 * Entries of DIR/SUB whose names do not start with a dot (SUB may be
 * NULL); -1 when it cannot be opened.
 */
static inline int
check_count_entries(const char *dir, const char *sub)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;
	int n = 0;
	int len = snprintf(path, sizeof(path), "%s%s%s", dir,
	    sub != NULL ? "/" : "", sub != NULL ? sub : "");

	ck_assert_int_lt(len, (int)sizeof(path));
	if ((d = opendir(path)) == NULL)
		return -1;
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/*
 * The whole file at PATH, NUL-terminated (caller frees); its length in
 * *LEN unless LEN is NULL.
 */
static inline char *
check_read_file(const char *path, size_t *len)
{
	struct stat sb;
	char *buf;
	int fd;

	ck_assert_int_ne(fd = open(path, O_RDONLY), -1);
	ck_assert_int_eq(fstat(fd, &sb), 0);
	ck_assert_ptr_nonnull(buf = malloc((size_t)sb.st_size + 1));
	ck_assert_int_eq(read(fd, buf, (size_t)sb.st_size), sb.st_size);
	buf[sb.st_size] = '\0';
	close(fd);
	if (len != NULL)
		*len = (size_t)sb.st_size;
	return buf;
}

/*
 * PATH made or truncated, holding the LEN bytes of DATA, with MODE
 * exactly (whatever the umask).
 */
static inline void
check_write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	int fd;

	ck_assert_int_ne(
	    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600), -1);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	ck_assert_int_eq(fchmod(fd, mode), 0);
	ck_assert_int_eq(close(fd), 0);
}

#endif
