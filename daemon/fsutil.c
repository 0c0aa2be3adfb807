/* File-system helpers shared by maildir.c and state.c. */
#include <sys/stat.h>
#include <sys/vfs.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"

static int fsync_parent(const char *path);

int
fsutil_write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);

		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		if (n == 0) {
			/* Not expected of a regular file; do not spin. */
			errno = EIO;
			return -1;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

static void
cannot_create(char *errbuf, size_t errlen, const char *path)
{
	if (errbuf != NULL && errlen > 0)
		snprintf(errbuf, errlen, "cannot create %s: %s", path,
		    strerror(errno));
}

int
fsutil_mkdir_p(const char *path, char *errbuf, size_t errlen)
{
	char *copy, *p, c;
	int rc = 0;

	if (path[0] == '\0') {
		errno = ENOENT;
		cannot_create(errbuf, errlen, "\"\"");
		return -1;
	}
	if ((copy = strdup(path)) == NULL) {
		cannot_create(errbuf, errlen, path);
		return -1;
	}
	for (p = copy + 1; rc == 0; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		c = *p;
		*p = '\0';
		/* A new directory is only there after its parent is synced. */
		if (mkdir(copy, 0700) == 0)
			rc = fsync_parent(copy);
		else if (errno != EEXIST)
			rc = -1;
		if (rc == -1)
			cannot_create(errbuf, errlen, copy);
		*p = c;
		if (c == '\0')
			break;
	}
	free(copy);
	return rc;
}

/* fsyncs the directory holding PATH. 0, or -1 with errno set. */
static int
fsync_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *parent;
	int fd, rc, saved;

	if (slash == NULL)
		parent = strdup(".");
	else if (slash == path)
		parent = strdup("/");
	else
		parent = strndup(path, (size_t)(slash - path));
	if (parent == NULL)
		return -1;
	fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	free(parent);
	if (fd == -1)
		return -1;
	rc = fsync(fd);
	saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

bool
fsutil_valid_name(const char *name, size_t len)
{
	size_t i;

	if (len == 0 || len > NAME_MAX || (len == 1 && name[0] == '.') ||
	    (len == 2 && name[0] == '.' && name[1] == '.'))
		return false;
	for (i = 0; i < len; i++)
		if ((unsigned char)name[i] < 0x21 ||
		    (unsigned char)name[i] > 0x7e || name[i] == '/')
			return false;
	return true;
}

#ifdef POPFETCHD_TEST_HOOKS
/* Calls left until the armed failure (0: none armed), and its errno. */
static unsigned fail_countdown;
static int fail_errno;
static unsigned long forced_fs_type;
static unsigned long syncs_made;

void
fsutil_test_fail_sync(unsigned nth, int err)
{
	fail_countdown = nth;
	fail_errno = err;
}

void
fsutil_test_force_fs_type(unsigned long type)
{
	forced_fs_type = type;
}

unsigned long
fsutil_test_syncs(void)
{
	return syncs_made;
}

/*
 * Whether this sync is the one armed to fail (errno then set); counts
 * those that go on.
 */
static bool
sync_fault(void)
{
	if (fail_countdown == 0 || --fail_countdown > 0) {
		syncs_made++;
		return false;
	}
	errno = fail_errno;
	return true;
}
#else
#define sync_fault() false
#endif

int
fsutil_fsync(int fd)
{
	if (sync_fault())
		return -1;
	return fsync(fd);
}

int
fsutil_fdatasync(int fd)
{
	if (sync_fault())
		return -1;
	return fdatasync(fd);
}

int
fsutil_syncfs(int fd)
{
	if (sync_fault())
		return -1;
	return syncfs(fd);
}

int
fsutil_fs_type(int fd, unsigned long *type)
{
	struct statfs sf;

#ifdef POPFETCHD_TEST_HOOKS
	if (forced_fs_type != 0) {
		*type = forced_fs_type;
		return 0;
	}
#endif
	if (fstatfs(fd, &sf) == -1)
		return -1;
	/* f_type is a signed word: keep the 32 bits magic numbers use. */
	*type = (unsigned long)sf.f_type & 0xffffffffUL;
	return 0;
}
