/*
 * maildir: streamed delivery into a Maildir.
 *
 * A message is written into tmp/ under a unique name, converted from the
 * network's CRLF to the local LF on the way, fsynced and closed, then
 * hard-linked into new/ under its final name (the same unique part plus
 * ",S=<size>") and unlinked from tmp/. Only a complete, fsynced file ever
 * gets a name in new/, so a crash leaves at most a stray file in tmp/,
 * which a later maildir_open() removes once it is 36 hours old.
 *
 * The directory entry in new/ is made durable by maildir_sync(), which
 * fsyncs new/ once for a batch of commits: without it a crash after the
 * link could lose the entry even though the file's data were on disk.
 *
 * All files are reached relative to directory descriptors, so the caller's
 * working directory does not matter and names stay short.
 */
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "maildir.h"

/* Files in tmp/ older than this are left over by a crash (Maildir rule). */
#define STALE_TMP_SECS (36 * 60 * 60)

/*
 * Size of the per-message write buffer: large enough that the small
 * chunks the network hands us become few large write(2)s.
 */
#define WRITE_BUF_SIZE (64 * 1024)

/*
 * How many names to try before giving up when a name is taken. A clash
 * needs another process with our pid (a container) writing in the same
 * microsecond; more than a few in a row means something else is wrong.
 */
#define NAME_ATTEMPTS 100

/*
 * Room for any name we build: the numbers take at most 20 digits each,
 * the host name at most 255 bytes, escaped up to four times that.
 */
#define NAME_BUF_SIZE 1280

/* Host name used when gethostname() fails or returns nothing. */
#define FALLBACK_HOST "localhost"

struct maildir {
	char *path;
	int dirfd; /* the Maildir itself */
	int tmpfd; /* tmp/ */
	int newfd; /* new/: link target, fsynced by maildir_sync() */
	char host[HOST_NAME_MAX + 1];
	unsigned nopen; /* messages begun and not yet committed or aborted */
};

struct maildir_msg {
	struct maildir *md;
	int fd;
	int error;	 /* sticky errno of the first failure, 0 if none */
	bool pending_cr; /* last chunk ended in CR: is it part of a CRLF? */
	uint64_t size;	 /* bytes after conversion, buffered ones included */
	size_t buflen;
	char name[NAME_BUF_SIZE]; /* unique part, also the name in tmp/ */
	char buf[WRITE_BUF_SIZE];
};

static void errmsg(
    char *errbuf, size_t errlen, const char *what, const char *path);
static int mkdir_p(const char *path, char *errbuf, size_t errlen);
static int fsync_parent(const char *path);
static int open_subdir(
    struct maildir *md, const char *sub, char *errbuf, size_t errlen);
static void clean_tmp(struct maildir *md);
static void set_host(struct maildir *md);
static const char *host_escape(char c);
static int format_base(char *buf, size_t buflen, long long sec, long usec,
    long pid, unsigned long seq, const char *host);
static int next_base(const struct maildir *md, char *buf, size_t buflen);
static int write_all(int fd, const char *data, size_t len);
static int emit(struct maildir_msg *msg, const char *data, size_t len);
static int convert(struct maildir_msg *msg, const char *p, const char *end);
static int flush_buf(struct maildir_msg *msg);
static int finish_file(struct maildir_msg *msg);
static int link_into_new(struct maildir_msg *msg, char *final, size_t len);
static int move_into_new(struct maildir_msg *msg, const char *final);
static void free_msg(struct maildir_msg *msg);

/* Counts names made by this process; with pid and time it makes them unique. */
static unsigned long name_seq;

/* "WHAT PATH: strerror(errno)" into ERRBUF, if there is one. */
static void
errmsg(char *errbuf, size_t errlen, const char *what, const char *path)
{
	if (errbuf != NULL && errlen > 0)
		snprintf(
		    errbuf, errlen, "%s %s: %s", what, path, strerror(errno));
}

struct maildir *
maildir_open(const char *path, char *errbuf, size_t errlen)
{
	struct maildir *md;
	int curfd, saved;

	if (errbuf != NULL && errlen > 0)
		errbuf[0] = '\0';
	if ((md = calloc(1, sizeof(*md))) == NULL ||
	    (md->path = strdup(path)) == NULL) {
		free(md);
		errmsg(errbuf, errlen, "cannot open", path);
		return NULL;
	}
	md->dirfd = md->tmpfd = md->newfd = -1;
	if (mkdir_p(path, errbuf, errlen) == -1)
		goto fail;
	md->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (md->dirfd == -1) {
		errmsg(errbuf, errlen, "cannot open", path);
		goto fail;
	}
	if ((md->tmpfd = open_subdir(md, "tmp", errbuf, errlen)) == -1 ||
	    (md->newfd = open_subdir(md, "new", errbuf, errlen)) == -1)
		goto fail;
	/* cur/ is not ours to write, but a Maildir reader needs it. */
	if ((curfd = open_subdir(md, "cur", errbuf, errlen)) == -1)
		goto fail;
	close(curfd);
	set_host(md);
	clean_tmp(md);
	return md;
fail:
	saved = errno;
	maildir_close(&md);
	errno = saved;
	return NULL;
}

void
maildir_close(struct maildir **mdp)
{
	struct maildir *md = *mdp;

	if (md == NULL)
		return;
	/* A message still open would point at freed memory. */
	assert(md->nopen == 0);
	if (md->newfd != -1)
		close(md->newfd);
	if (md->tmpfd != -1)
		close(md->tmpfd);
	if (md->dirfd != -1)
		close(md->dirfd);
	free(md->path);
	free(md);
	*mdp = NULL;
}

/*
 * Creates PATH and any missing parents with mode 0700, like mkdir -p.
 * Each directory created is made durable in its parent, or a crash could
 * lose the directory together with every message fsynced inside it.
 */
static int
mkdir_p(const char *path, char *errbuf, size_t errlen)
{
	char *copy, *p;
	int rc = 0;

	if (path[0] == '\0') {
		errno = ENOENT;
		errmsg(errbuf, errlen, "cannot create", "\"\"");
		return -1;
	}
	if ((copy = strdup(path)) == NULL) {
		errmsg(errbuf, errlen, "cannot create", path);
		return -1;
	}
	for (p = copy + 1; rc == 0; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;
		*p = '\0';
		if (mkdir(copy, 0700) == 0)
			rc = fsync_parent(copy);
		else if (errno != EEXIST)
			rc = -1;
		if (rc == -1)
			errmsg(errbuf, errlen, "cannot create", copy);
		*p = c;
		if (c == '\0')
			break;
	}
	free(copy);
	return rc;
}

/* fsyncs the directory holding PATH (the part before its last '/'). */
static int
fsync_parent(const char *path)
{
	char parent[PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd, rc;

	if (slash == NULL)
		snprintf(parent, sizeof(parent), ".");
	else if (slash == path)
		snprintf(parent, sizeof(parent), "/");
	else
		snprintf(
		    parent, sizeof(parent), "%.*s", (int)(slash - path), path);
	if ((fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	rc = fsync(fd);
	close(fd);
	return rc;
}

/* Creates (if missing) and opens the subdirectory SUB of the Maildir. */
static int
open_subdir(struct maildir *md, const char *sub, char *errbuf, size_t errlen)
{
	char full[PATH_MAX];
	int fd;

	snprintf(full, sizeof(full), "%s/%s", md->path, sub);
	if (mkdirat(md->dirfd, sub, 0700) == 0) {
		/* As in mkdir_p: the new entry must survive a crash. */
		if (fsync(md->dirfd) == -1) {
			errmsg(errbuf, errlen, "cannot fsync", md->path);
			return -1;
		}
	} else if (errno != EEXIST) {
		errmsg(errbuf, errlen, "cannot create", full);
		return -1;
	}
	fd = openat(md->dirfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1) {
		if (errno == ENOTDIR && errbuf != NULL && errlen > 0)
			snprintf(errbuf, errlen, "%s is not a directory", full);
		else
			errmsg(errbuf, errlen, "cannot open", full);
	}
	return fd;
}

/*
 * Removes regular files in tmp/ not modified for 36 hours: they were left
 * by a crash (a writer in progress touches its file far more often).
 * Best effort: a file that cannot be removed now is tried again next time.
 */
static void
clean_tmp(struct maildir *md)
{
	struct dirent *de;
	struct stat sb;
	DIR *dir;
	time_t limit = time(NULL) - STALE_TMP_SECS;
	int fd;

	if ((fd = dup(md->tmpfd)) == -1)
		return;
	if ((dir = fdopendir(fd)) == NULL) {
		close(fd);
		return;
	}
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (fstatat(md->tmpfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) ==
		    -1)
			continue;
		if (S_ISREG(sb.st_mode) && sb.st_mtime < limit)
			unlinkat(md->tmpfd, de->d_name, 0);
	}
	closedir(dir);
}

static void
set_host(struct maildir *md)
{
	if (gethostname(md->host, sizeof(md->host)) == -1 ||
	    md->host[0] == '\0')
		snprintf(md->host, sizeof(md->host), "%s", FALLBACK_HOST);
	/* POSIX does not promise termination when the name was truncated. */
	md->host[sizeof(md->host) - 1] = '\0';
}

/* '/' would make a path and ':' starts the Maildir flags: escape them. */
static const char *
host_escape(char c)
{
	switch (c) {
	case '/':
		return "\\057";
	case ':':
		return "\\072";
	default:
		return NULL;
	}
}

/* <sec>.M<usec>P<pid>Q<seq>.<host>, host escaped; length or -1. */
static int
format_base(char *buf, size_t buflen, long long sec, long usec, long pid,
    unsigned long seq, const char *host)
{
	size_t len;
	int n;

	n = snprintf(buf, buflen, "%lld.M%ldP%ldQ%lu.", sec, usec, pid, seq);
	if (n < 0 || (size_t)n >= buflen)
		return -1;
	len = (size_t)n;
	for (; *host != '\0'; host++) {
		const char *esc = host_escape(*host);
		size_t add = esc != NULL ? strlen(esc) : 1;

		if (len + add >= buflen)
			return -1;
		memcpy(buf + len, esc != NULL ? esc : host, add);
		len += add;
	}
	buf[len] = '\0';
	return (int)len;
}

int
maildir_unique_name(char *buf, size_t buflen, long long sec, long usec,
    long pid, unsigned long seq, const char *host, uint64_t size)
{
	int len, n;

	if ((len = format_base(buf, buflen, sec, usec, pid, seq, host)) == -1)
		goto toolong;
	n = snprintf(buf + len, buflen - (size_t)len, ",S=%llu",
	    (unsigned long long)size);
	if (n < 0 || (size_t)n >= buflen - (size_t)len)
		goto toolong;
	return 0;
toolong:
	if (buflen > 0)
		buf[0] = '\0';
	errno = ENAMETOOLONG;
	return -1;
}

/* A fresh unique part from the clock, our pid and the counter. */
static int
next_base(const struct maildir *md, char *buf, size_t buflen)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (format_base(buf, buflen, (long long)ts.tv_sec, ts.tv_nsec / 1000,
		(long)getpid(), ++name_seq, md->host) == -1) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

struct maildir_msg *
maildir_begin(struct maildir *md)
{
	struct maildir_msg *msg;
	int i;

	if ((msg = malloc(sizeof(*msg))) == NULL)
		return NULL;
	msg->md = md;
	msg->fd = -1;
	msg->error = 0;
	msg->pending_cr = false;
	msg->size = 0;
	msg->buflen = 0;
	for (i = 0; i < NAME_ATTEMPTS && msg->fd == -1; i++) {
		if (next_base(md, msg->name, sizeof(msg->name)) == -1)
			break;
		msg->fd = openat(md->tmpfd, msg->name,
		    O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (msg->fd == -1 && errno != EEXIST)
			break;
	}
	if (msg->fd == -1) {
		int saved = errno;

		free(msg);
		errno = saved;
		return NULL;
	}
	md->nopen++;
	return msg;
}

/* write(2) until all of DATA is written; retries short writes and EINTR. */
static int
write_all(int fd, const char *data, size_t len)
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

static int
flush_buf(struct maildir_msg *msg)
{
	if (msg->buflen > 0 && write_all(msg->fd, msg->buf, msg->buflen) == -1)
		return -1;
	msg->buflen = 0;
	return 0;
}

/* Appends converted bytes to the message, through the buffer. */
static int
emit(struct maildir_msg *msg, const char *data, size_t len)
{
	msg->size += len;
	if (msg->buflen + len > sizeof(msg->buf)) {
		if (flush_buf(msg) == -1)
			return -1;
		/* Too big to be worth copying: straight to the file. */
		if (len >= sizeof(msg->buf))
			return write_all(msg->fd, data, len);
	}
	memcpy(msg->buf + msg->buflen, data, len);
	msg->buflen += len;
	return 0;
}

/*
 * Converts CRLF to LF. A CR not followed by LF is message content and kept;
 * a CR ending the chunk waits for the next chunk (or the commit) to say.
 */
static int
convert(struct maildir_msg *msg, const char *p, const char *end)
{
	const char *cr;

	if (msg->pending_cr) {
		msg->pending_cr = false;
		if (*p != '\n' && emit(msg, "\r", 1) == -1)
			return -1;
	}
	while (p < end) {
		if ((cr = memchr(p, '\r', (size_t)(end - p))) == NULL)
			return emit(msg, p, (size_t)(end - p));
		if (emit(msg, p, (size_t)(cr - p)) == -1)
			return -1;
		if (cr + 1 == end) {
			msg->pending_cr = true;
			return 0;
		}
		/* A lone CR stays; the CR of a CRLF is dropped. */
		if (cr[1] != '\n' && emit(msg, cr, 1) == -1)
			return -1;
		p = cr + 1;
	}
	return 0;
}

int
maildir_write(struct maildir_msg *msg, const char *data, size_t len)
{
	if (msg->error != 0) {
		errno = msg->error;
		return -1;
	}
	if (len == 0)
		return 0;
	if (convert(msg, data, data + len) == -1) {
		msg->error = errno;
		return -1;
	}
	return 0;
}

uint64_t
maildir_msg_size(const struct maildir_msg *msg)
{
	return msg->size;
}

/* Writes what is left, fsyncs and closes the temporary file. */
static int
finish_file(struct maildir_msg *msg)
{
	int rc;

	if (msg->error != 0) {
		errno = msg->error;
		return -1;
	}
	/* A CR at the very end of the message had no LF after it. */
	if (msg->pending_cr) {
		msg->pending_cr = false;
		if (emit(msg, "\r", 1) == -1)
			return -1;
	}
	if (flush_buf(msg) == -1 || fsync(msg->fd) == -1)
		return -1;
	/* close() can report a delayed write error (NFS): it counts. */
	rc = close(msg->fd);
	msg->fd = -1;
	return rc;
}

/*
 * Gives the finished file its name in new/, written to FINAL. A link keeps
 * the tmp/ name valid until we unlink it, so no moment exists where the
 * file has no name; and link, unlike rename, never replaces an existing
 * file. Returns 1 if linked (tmp/ name still to remove), 0 if moved.
 */
static int
link_into_new(struct maildir_msg *msg, char *final, size_t len)
{
	struct maildir *md = msg->md;
	char base[NAME_BUF_SIZE];
	int i;

	snprintf(base, sizeof(base), "%s", msg->name);
	for (i = 0; i < NAME_ATTEMPTS; i++) {
		if (snprintf(final, len, "%s,S=%llu", base,
			(unsigned long long)msg->size) >= (int)len) {
			errno = ENAMETOOLONG;
			return -1;
		}
		if (linkat(md->tmpfd, msg->name, md->newfd, final, 0) == 0)
			return 1;
		if (errno == EPERM || errno == ENOTSUP || errno == EXDEV ||
		    errno == ENOSYS || errno == EMLINK)
			return move_into_new(msg, final);
		if (errno != EEXIST)
			return -1;
		/* Someone has that name: pick another unique part. */
		if (next_base(md, base, sizeof(base)) == -1)
			return -1;
	}
	errno = EEXIST;
	return -1;
}

/*
 * For file systems without hard links: rename, refusing to replace a file
 * where the file system lets us say so. Unique names make a clash
 * unlikely enough that a plain rename is acceptable where it does not.
 */
static int
move_into_new(struct maildir_msg *msg, const char *final)
{
	struct maildir *md = msg->md;

	if (renameat2(
		md->tmpfd, msg->name, md->newfd, final, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	return renameat(md->tmpfd, msg->name, md->newfd, final) == 0 ? 0 : -1;
}

int
maildir_commit(struct maildir_msg **msgp, char *namebuf, size_t namelen)
{
	struct maildir_msg *msg = *msgp;
	char final[NAME_BUF_SIZE];
	int rc = -1, saved;

	if (msg == NULL) {
		errno = EINVAL;
		return -1;
	}
	*msgp = NULL;
	if (finish_file(msg) == -1 ||
	    (rc = link_into_new(msg, final, sizeof(final))) == -1) {
		saved = errno;
		unlinkat(msg->md->tmpfd, msg->name, 0);
		free_msg(msg);
		errno = saved;
		return -1;
	}
	/*
	 * The message is in new/. Should this unlink fail, the extra name in
	 * tmp/ is harmless and goes with the stale-file cleanup.
	 */
	if (rc == 1)
		unlinkat(msg->md->tmpfd, msg->name, 0);
	if (namebuf != NULL && namelen > 0)
		snprintf(namebuf, namelen, "%s", final);
	free_msg(msg);
	return 0;
}

void
maildir_abort(struct maildir_msg **msgp)
{
	struct maildir_msg *msg = *msgp;

	if (msg == NULL)
		return;
	*msgp = NULL;
	unlinkat(msg->md->tmpfd, msg->name, 0);
	free_msg(msg);
}

static void
free_msg(struct maildir_msg *msg)
{
	int saved = errno;

	if (msg->fd != -1)
		close(msg->fd);
	msg->md->nopen--;
	free(msg);
	errno = saved;
}

int
maildir_sync(struct maildir *md)
{
	return fsync(md->newfd);
}

int
maildir_free_space(struct maildir *md, uint64_t *bytes)
{
	struct statvfs sv;

	if (fstatvfs(md->newfd, &sv) == -1)
		return -1;
	*bytes = (uint64_t)sv.f_bavail * (uint64_t)sv.f_frsize;
	return 0;
}
