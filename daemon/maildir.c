/*
 * maildir: streamed delivery into a Maildir.
 *
 * A message is written into tmp/ under a unique name, converted from the
 * network's CRLF to the local LF on the way; maildir_finish() closes it
 * and names its final name (the same unique part plus ",S=<size>"), and
 * maildir_sync_tmp() makes every finished file and its tmp/ entry durable
 * (one syncfs(2) for a batch, or an fsync of each file and of tmp/ in
 * MAILDIR_SYNC_FILE mode). The caller records its intent durably, then
 * maildir_publish() hard-links the file into new/, maildir_sync() fsyncs
 * new/ once for the batch, and only then maildir_drop_tmp() unlinks the
 * tmp/ name. So at every instant a crash leaves the message under tmp/,
 * or under a durable name in new/: the intent can always be rolled
 * forward, and only a complete, synced file ever gets a name in new/.
 *
 * Without the fsync of new/ a crash after the link could lose the entry
 * even though the file's data were on disk; without syncing tmp/ the
 * same could happen to the tmp/ entry the intent relies on.
 *
 * Why syncfs(2) by default: on ext4 each fsync(2) costs a journal commit
 * and a cache flush, so a flush per message bounds delivery at a few
 * hundred messages a second; one syncfs for a batch of files writes the
 * same data with one commit. Since Linux 5.8 it reports writeback errors
 * of any file of the file system since the Maildir was opened, which is
 * what makes it usable for durability: on older kernels, or on a file
 * system shared with heavy writers, MAILDIR_SYNC_FILE is the safer choice.
 *
 * syncfs(2) only means something where the kernel holds the data: on a
 * network or FUSE file system it may return before the server has them
 * (FUSE passes no syncfs to the daemon behind it; NFS, SMB and the other
 * remote ones do not wait for the server's stable storage). On those the
 * batch mode falls back to a fsync of each file, which they do forward.
 *
 * A failed sync is final for the handle: Linux reports a writeback error
 * to a descriptor once, and the pages that failed may be marked clean, so
 * a second fsync or syncfs would succeed with the data lost. Every later
 * sync and publish on the handle fails with the first error; only a new
 * handle (the next poll, which re-fetches what was not recorded) starts
 * clean.
 *
 * The Maildir is created (with tmp/ new/ cur/) only inside a directory
 * that exists: a missing parent is a typo or a file system not mounted,
 * and a Maildir created there would take mail that then vanishes from
 * the server into a place nobody reads.
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
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "maildir.h"

/* Files in tmp/ older than this are left over by a crash (Maildir rule). */
#define STALE_TMP_SECS (36 * 60 * 60)

/*
 * Size of the per-message write buffer: large enough that the small
 * chunks the network hands us become few large write(2)s.
 */
#define WRITE_BUF_SIZE (64 * 1024)

/* Messages from this size on are written out as soon as complete. */
#define EARLY_WRITEOUT WRITE_BUF_SIZE

/*
 * How many names to try before giving up when a name is taken. A clash
 * needs another process with our pid (a container) writing in the same
 * microsecond; more than a few in a row means something else is wrong.
 */
#define NAME_ATTEMPTS 100

/*
 * Room for any name we build: the numbers take at most 20 digits each,
 * the host name at most 255 bytes, escaped up to four times that. Names
 * longer than NAME_MAX are built, then refused by the file system.
 */
#define NAME_BUF_SIZE 1280

/* Escape of a host name byte: "\ooo" and a NUL. */
#define ESCAPE_SIZE 5

/* Host name used when gethostname() fails or returns nothing. */
#define FALLBACK_HOST "localhost"

struct maildir {
	char *path;
	int dirfd; /* the Maildir itself */
	int tmpfd; /* tmp/ */
	int newfd; /* new/: link target, fsynced by maildir_sync() */
	enum maildir_sync how;
	int sync_error;	      /* errno of the first failed sync, 0 if none */
	const char *nosyncfs; /* file system where syncfs is not trusted */
	bool fell_back;	      /* batch asked for, per-file sync used */
	/*
	 * Directories this open made whose entries are not durable yet: the
	 * Maildir's in its parent, tmp/ new/ cur/ in the Maildir. The first
	 * sync of tmp/ makes them so, before anything relies on them.
	 */
	bool made_root, made_subdirs;
	char host[HOST_NAME_MAX + 1];
	unsigned nopen; /* messages begun and not yet finished or aborted */
};

/* A name asked about by maildir_delivered_many(), and where its answer goes. */
struct wanted {
	const char *name;
	int *found;
};

struct maildir_msg {
	struct maildir *md;
	int fd;
	int error;	 /* sticky errno of the first failure, 0 if none */
	bool pending_cr; /* last chunk ended in CR: is it part of a CRLF? */
	uint64_t size;	 /* bytes after conversion, buffered ones included */
	size_t buflen;
	char name[NAME_BUF_SIZE]; /* unique part, also the name in tmp/ */
	/*
	 * WRITE_BUF_SIZE bytes, made by the first maildir_write(): a writer
	 * that hands over its own memory (maildir_write_inplace()) needs
	 * none, and a thousand messages in hand would hold 64 MiB.
	 */
	char *buf;
};

static void errmsg(
    char *errbuf, size_t errlen, const char *what, const char *path);
static void parent_of(const char *path, char *parent, size_t len);
static int make_maildir(
    const char *path, bool *made, char *errbuf, size_t errlen);
static int make_dir_in(
    const char *path, bool *made, char *errbuf, size_t errlen);
static int open_subdir(
    struct maildir *md, const char *sub, char *errbuf, size_t errlen);
static int sticky_error(const struct maildir *md);
static int sync_made_dirs(struct maildir *md);
static int sync_result(struct maildir *md, int rc);
static bool valid_name(const char *name);
static void set_host(struct maildir *md);
static size_t host_escape(char c, char esc[ESCAPE_SIZE]);
static int format_base(char *buf, size_t buflen, long long sec, long usec,
    long pid, unsigned long seq, const char *host);
static int next_base(const struct maildir *md, char *buf, size_t buflen);
static int emit(struct maildir_msg *msg, const char *data, size_t len);
static int convert(struct maildir_msg *msg, const char *p, const char *end);
static int flush_buf(struct maildir_msg *msg);
static int finish_file(struct maildir_msg *msg);
static int final_name(const struct maildir_msg *msg, char *buf, size_t len);
static int pick_free_final(struct maildir_msg *msg, char *final, size_t len);
static bool exists_at(int dirfd, const char *name);
static int move_noreplace(
    int fromfd, const char *from, int tofd, const char *to);
static bool link_unsupported(int err);
static void free_msg(struct maildir_msg *msg);
static int wanted_cmp(const void *a, const void *b);
static int key_cmp(const char *name, const char *key, size_t len);
static void mark_wanted(
    struct wanted *w, size_t n, const char *key, size_t len);
static int scan_cur(struct maildir *md, struct wanted *w, size_t n);

/*
 * Counts names made by this process; with pid and time it makes them
 * unique. Writers of several sessions make names at once (spool.c).
 */
static atomic_ulong name_seq;

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
	unsigned long fstype;
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
	if (make_maildir(path, &md->made_root, errbuf, errlen) == -1)
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
	if (fsutil_fs_type(md->dirfd, &fstype) == 0)
		md->nosyncfs = maildir_syncfs_unreliable(fstype);
	maildir_set_sync(md, MAILDIR_SYNC_BATCH);
	return md;
fail:
	saved = errno;
	maildir_close(&md);
	errno = saved;
	return NULL;
}

/*
 * Creates the marker file of a Maildir++ folder, durably: its presence
 * tells a delivery agent (Dovecot's, Courier's) that the directory is a
 * folder, so that quota is counted at the root.
 */
static int
mark_folder(struct maildir *md, char *errbuf, size_t errlen)
{
	int fd;

	fd = openat(md->dirfd, "maildirfolder",
	    O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1) {
		if (errno == EEXIST)
			return 0;
		errmsg(
		    errbuf, errlen, "cannot create maildirfolder in", md->path);
		return -1;
	}
	close(fd);
	if (fsutil_fsync(md->dirfd) == -1) {
		errmsg(errbuf, errlen, "cannot fsync", md->path);
		return -1;
	}
	return 0;
}

struct maildir *
maildir_open_folder(
    const char *root, const char *dirname, char *errbuf, size_t errlen)
{
	struct maildir *md;
	char path[PATH_MAX];
	int saved;

	if (!valid_name(dirname) || dirname[0] != '.') {
		errno = EINVAL;
		errmsg(errbuf, errlen, "bad folder directory", dirname);
		return NULL;
	}
	if (snprintf(path, sizeof(path), "%s/%s", root, dirname) >=
	    (int)sizeof(path)) {
		errno = ENAMETOOLONG;
		errmsg(errbuf, errlen, "cannot open", root);
		return NULL;
	}
	/* The root is a Maildir too: a reader finds INBOX beside the folder. */
	if ((md = maildir_open(root, errbuf, errlen)) == NULL)
		return NULL;
	/* Made now, as the folder's syncs do not reach the root's parent. */
	if (sync_made_dirs(md) == -1) {
		errmsg(errbuf, errlen, "cannot fsync", root);
		saved = errno;
		maildir_close(&md);
		errno = saved;
		return NULL;
	}
	maildir_close(&md);
	if ((md = maildir_open(path, errbuf, errlen)) == NULL)
		return NULL;
	if (mark_folder(md, errbuf, errlen) == -1) {
		saved = errno;
		maildir_close(&md);
		errno = saved;
		return NULL;
	}
	return md;
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
 * The directory holding PATH (trailing slashes ignored), into PARENT:
 * "." for a bare name, "/" for a name at the root.
 */
static void
parent_of(const char *path, char *parent, size_t len)
{
	size_t end = strlen(path), slash;

	while (end > 1 && path[end - 1] == '/')
		end--;
	slash = end;
	while (slash > 0 && path[slash - 1] != '/')
		slash--;
	if (slash == 0)
		snprintf(parent, len, ".");
	else if (slash == 1)
		snprintf(parent, len, "/");
	else
		snprintf(parent, len, "%.*s", (int)(slash - 1), path);
}

/*
 * Creates the Maildir directory PATH if missing, but only inside an
 * existing directory (see the top of the file).
 */
static int
make_maildir(const char *path, bool *made, char *errbuf, size_t errlen)
{
	char parent[PATH_MAX];
	struct stat sb;

	if (path[0] == '\0') {
		errno = ENOENT;
		errmsg(errbuf, errlen, "cannot open", "\"\"");
		return -1;
	}
	parent_of(path, parent, sizeof(parent));
	if (stat(parent, &sb) == 0) {
		if (S_ISDIR(sb.st_mode))
			return make_dir_in(path, made, errbuf, errlen);
		errno = ENOTDIR;
	}
	if (errno == ENOENT && errbuf != NULL && errlen > 0)
		snprintf(errbuf, errlen,
		    "parent directory %s does not exist (not created: a typo or an unmounted file system?)",
		    parent);
	else
		errmsg(errbuf, errlen, "cannot use parent directory", parent);
	return -1;
}

/*
 * mkdir PATH, whose parent exists; *MADE says whether it was made (its
 * entry is not durable yet: see sync_made_dirs()).
 */
static int
make_dir_in(const char *path, bool *made, char *errbuf, size_t errlen)
{
	if (mkdir(path, 0700) == -1) {
		if (errno == EEXIST)
			return 0;
		errmsg(errbuf, errlen, "cannot create", path);
		return -1;
	}
	*made = true;
	return 0;
}

/* Creates (if missing) and opens the subdirectory SUB of the Maildir. */
static int
open_subdir(struct maildir *md, const char *sub, char *errbuf, size_t errlen)
{
	char full[PATH_MAX];
	int fd;

	snprintf(full, sizeof(full), "%s/%s", md->path, sub);
	if (mkdirat(md->dirfd, sub, 0700) == 0)
		md->made_subdirs = true;
	else if (errno != EEXIST) {
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
 * Whether NAME is safe as one file name inside tmp/ or new/: names come
 * back from the state journal, which is disk input, so a '/' or ".."
 * must not lead out of the directory, and a control byte or a space in a
 * name is none we made.
 */
static bool
valid_name(const char *name)
{
	return fsutil_valid_name(name, strnlen(name, NAME_MAX + 1));
}

/*
 * Whether tmp/NAME was left by a popfetchd on this host that no longer
 * runs (killed mid-message): such a file can never be finished, and
 * waiting 36 hours would only leave it in the way. Names in another
 * format, from another host or from a live process are not touched.
 */
static bool
orphan(struct maildir *md, const char *name)
{
	char expect[MAILDIR_NAME_SIZE];
	long long sec;
	long usec, pid;
	unsigned long seq;
	int n = -1;

	if (sscanf(name, "%lld.M%ldP%ldQ%lu.%n", &sec, &usec, &pid, &seq, &n) !=
		4 ||
	    n <= 0 || pid <= 0 || pid == (long)getpid())
		return false;
	/* The same name as this host would write it. */
	if (format_base(
		expect, sizeof(expect), sec, usec, pid, seq, md->host) == -1 ||
	    strcmp(name, expect) != 0)
		return false;
	return kill((pid_t)pid, 0) == -1 && errno == ESRCH;
}

int
maildir_clean_tmp(
    struct maildir *md, bool (*keep)(void *arg, const char *tmpname), void *arg)
{
	struct dirent *de;
	struct stat sb;
	DIR *dir;
	time_t limit = time(NULL) - STALE_TMP_SECS;
	int fd, removed = 0;

	/* fdopendir takes the descriptor: give it a copy, keep tmpfd. */
	if ((fd = dup(md->tmpfd)) == -1)
		return -1;
	if ((dir = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	/* A dup shares the offset: start from the top whatever came before. */
	rewinddir(dir);
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (fstatat(md->tmpfd, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) ==
		    -1)
			continue;
		/* A writer in progress touches its file far more often. */
		if (!S_ISREG(sb.st_mode) ||
		    (sb.st_mtime >= limit && !orphan(md, de->d_name)))
			continue;
		if (keep != NULL && keep(arg, de->d_name))
			continue;
		if (unlinkat(md->tmpfd, de->d_name, 0) == 0)
			removed++;
	}
	closedir(dir);
	return removed;
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

/*
 * '/' would make a path and ':' starts the Maildir flags: they are
 * written as "\ooo" in octal (the Maildir convention), and so are bytes
 * outside 0x21-0x7E, which the state journal could not hold in a name.
 * Writes the escape of C into ESC and returns its length, or 0 if C stays
 * as it is.
 */
static size_t
host_escape(char c, char esc[ESCAPE_SIZE])
{
	unsigned char u = (unsigned char)c;

	if (u >= 0x21 && u <= 0x7e && c != '/' && c != ':')
		return 0;
	snprintf(esc, ESCAPE_SIZE, "\\%03o", u);
	return 4;
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
		char esc[ESCAPE_SIZE];
		size_t add = host_escape(*host, esc);

		if (len + (add > 0 ? add : 1) >= buflen)
			return -1;
		if (add > 0)
			memcpy(buf + len, esc, add);
		else
			buf[len] = *host;
		len += add > 0 ? add : 1;
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
		(long)getpid(), atomic_fetch_add(&name_seq, 1) + 1,
		md->host) == -1) {
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
	msg->buf = NULL;
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

static int
flush_buf(struct maildir_msg *msg)
{
	if (msg->buflen > 0 &&
	    fsutil_write_all(msg->fd, msg->buf, msg->buflen) == -1)
		return -1;
	msg->buflen = 0;
	return 0;
}

/* Appends converted bytes to the message, through the buffer. */
static int
emit(struct maildir_msg *msg, const char *data, size_t len)
{
	msg->size += len;
	if (msg->buflen + len > WRITE_BUF_SIZE) {
		if (flush_buf(msg) == -1)
			return -1;
		/* Too big to be worth copying: straight to the file. */
		if (len >= WRITE_BUF_SIZE)
			return fsutil_write_all(msg->fd, data, len);
	}
	if (msg->buf == NULL && (msg->buf = malloc(WRITE_BUF_SIZE)) == NULL)
		return -1;
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

/*
 * CRLF to LF within P's LEN bytes, as convert() decides; the bytes kept
 * are moved to the front. Their count.
 */
static size_t
convert_inplace(struct maildir_msg *msg, char *p, size_t len)
{
	char *out = p, *end = p + len, *cr;

	while (p < end) {
		if ((cr = memchr(p, '\r', (size_t)(end - p))) == NULL)
			cr = end;
		if (out != p)
			memmove(out, p, (size_t)(cr - p));
		out += cr - p;
		if (cr == end)
			break;
		if (cr + 1 == end) {
			msg->pending_cr = true;
			break;
		}
		if (cr[1] != '\n')
			*out++ = '\r';
		p = cr + 1;
	}
	return (size_t)(out - (end - len));
}

int
maildir_write_inplace(struct maildir_msg *msg, char *data, size_t len)
{
	size_t n;

	if (msg->error != 0) {
		errno = msg->error;
		return -1;
	}
	if (len == 0)
		return 0;
	/* A CR that ended the last chunk was content unless LF follows. */
	if (msg->pending_cr) {
		msg->pending_cr = false;
		if (*data != '\n' &&
		    (flush_buf(msg) == -1 ||
			fsutil_write_all(msg->fd, "\r", 1) == -1))
			goto fail;
		msg->size += *data != '\n';
	}
	n = convert_inplace(msg, data, len);
	if (flush_buf(msg) == -1 ||
	    (n > 0 && fsutil_write_all(msg->fd, data, n) == -1))
		goto fail;
	msg->size += n;
	return 0;
fail:
	msg->error = errno;
	return -1;
}

uint64_t
maildir_msg_size(const struct maildir_msg *msg)
{
	return msg->size;
}

/*
 * Writes what is left and closes the file. Nothing waits for the disk
 * here: maildir_sync_tmp() does, for a batch.
 */
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
	if (flush_buf(msg) == -1)
		return -1;
	/*
	 * A large message: start its write-out now, without waiting for it,
	 * so that the disk works while the next messages arrive and the
	 * batch's syncfs finds little left to do. Small ones are cheaper
	 * written out together.
	 */
	if (msg->md->how == MAILDIR_SYNC_BATCH && msg->size >= EARLY_WRITEOUT)
		(void)sync_file_range(msg->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	/* close() can report a delayed write error (NFS): it counts. */
	rc = close(msg->fd);
	msg->fd = -1;
	return rc;
}

/* The name in new/: the tmp/ name plus ",S=<size>". */
static int
final_name(const struct maildir_msg *msg, char *buf, size_t len)
{
	int n = snprintf(
	    buf, len, "%s,S=%llu", msg->name, (unsigned long long)msg->size);

	if (n < 0 || (size_t)n >= len) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

/*
 * Writes into FINAL the final name, making sure no file in new/ has it:
 * maildir_publish() takes a file already there for this message, so a
 * clash (another writer with our pid and clock, a clock set back) must be
 * resolved now, before the caller records the name. The tmp/ file is
 * renamed to a fresh unique part until its final name is free.
 */
static int
pick_free_final(struct maildir_msg *msg, char *final, size_t len)
{
	char fresh[NAME_BUF_SIZE];
	int i;

	for (i = 0; i < NAME_ATTEMPTS; i++) {
		if (final_name(msg, final, len) == -1)
			return -1;
		if (!exists_at(msg->md->newfd, final)) {
			if (errno != ENOENT)
				return -1;
			return 0;
		}
		if (next_base(msg->md, fresh, sizeof(fresh)) == -1)
			return -1;
		if (move_noreplace(
			msg->md->tmpfd, msg->name, msg->md->tmpfd, fresh) == 0)
			snprintf(msg->name, sizeof(msg->name), "%s", fresh);
		else if (errno != EEXIST)
			return -1;
	}
	errno = EEXIST;
	return -1;
}

/* Whether DIRFD/NAME exists; if not, errno says why (ENOENT: it does not). */
static bool
exists_at(int dirfd, const char *name)
{
	struct stat sb;

	return fstatat(dirfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0;
}

/*
 * Renames FROM to TO, never replacing a file at TO (EEXIST). Where the
 * file system cannot say "no replace", it checks first: racy, but the
 * names are unique, so only a clash already unlikely could slip through.
 */
static int
move_noreplace(int fromfd, const char *from, int tofd, const char *to)
{
	if (renameat2(fromfd, from, tofd, to, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -1;
	if (exists_at(tofd, to)) {
		errno = EEXIST;
		return -1;
	}
	if (errno != ENOENT)
		return -1;
	return renameat(fromfd, from, tofd, to);
}

/* linkat() errors that mean "no hard links here", not a failure. */
static bool
link_unsupported(int err)
{
	return err == EPERM || err == ENOTSUP || err == EOPNOTSUPP ||
	       err == EXDEV || err == ENOSYS || err == EMLINK;
}

int
maildir_finish(struct maildir_msg **msgp, char *tmpname, size_t tmplen,
    char *finalname, size_t finallen)
{
	struct maildir_msg *msg = *msgp;
	char final[NAME_BUF_SIZE];
	int saved;

	if (msg == NULL) {
		errno = EINVAL;
		return -1;
	}
	*msgp = NULL;
	if (finish_file(msg) == -1 ||
	    pick_free_final(msg, final, sizeof(final)) == -1)
		goto fail;
	if (strlen(msg->name) >= tmplen || strlen(final) >= finallen) {
		errno = ENAMETOOLONG;
		goto fail;
	}
	memcpy(tmpname, msg->name, strlen(msg->name) + 1);
	memcpy(finalname, final, strlen(final) + 1);
	free_msg(msg);
	return 0;
fail:
	saved = errno;
	unlinkat(msg->md->tmpfd, msg->name, 0);
	free_msg(msg);
	errno = saved;
	return -1;
}

int
maildir_publish(struct maildir *md, const char *tmpname, const char *finalname)
{
	if (!valid_name(tmpname) || !valid_name(finalname)) {
		errno = EINVAL;
		return -1;
	}
	/* What failed to sync may be gone: it must not get a name in new/. */
	if (sticky_error(md) == -1)
		return -1;
	/*
	 * A link, not a rename: the tmp/ name stays valid until we drop it
	 * after new/ is fsynced, so no moment exists where a crash could
	 * leave the file without a durable name. And link never replaces.
	 */
	if (linkat(md->tmpfd, tmpname, md->newfd, finalname, 0) == 0)
		return 0;
	if (errno == EEXIST)
		return 0; /* published before (see maildir_finish) */
	if (errno == ENOENT) {
		/* tmp/ gone: moved into new/ earlier, or nowhere. */
		if (exists_at(md->newfd, finalname))
			return 0;
		errno = ENOENT;
		return -1;
	}
	if (!link_unsupported(errno))
		return -1;
	/* Rename is atomic: the file has one of its two names throughout. */
	if (move_noreplace(md->tmpfd, tmpname, md->newfd, finalname) == 0 ||
	    errno == EEXIST)
		return 0;
	return -1;
}

bool
maildir_tmp_exists(struct maildir *md, const char *tmpname)
{
	if (!valid_name(tmpname))
		return false;
	return exists_at(md->tmpfd, tmpname) || errno != ENOENT;
}

int
maildir_delivered(struct maildir *md, const char *finalname)
{
	int found;

	if (maildir_delivered_many(md, &finalname, 1, &found) == -1)
		return -1;
	return found;
}

static int
wanted_cmp(const void *a, const void *b)
{
	return strcmp(
	    ((const struct wanted *)a)->name, ((const struct wanted *)b)->name);
}

/* strcmp() of NAME against the LEN bytes at KEY (no NUL among them). */
static int
key_cmp(const char *name, const char *key, size_t len)
{
	int c = strncmp(name, key, len);

	if (c != 0)
		return c;
	return name[len] == '\0' ? 0 : 1;
}

/*
 * Marks found every wanted name equal to the LEN bytes at KEY: W holds N
 * entries sorted by name (several may be equal).
 */
static void
mark_wanted(struct wanted *w, size_t n, const char *key, size_t len)
{
	size_t lo = 0, hi = n, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (key_cmp(w[mid].name, key, len) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (; lo < n && key_cmp(w[lo].name, key, len) == 0; lo++)
		*w[lo].found = 1;
}

/*
 * Looks for the N names of W in cur/, in one pass: a mail reader moves
 * a message there under its name plus an info suffix (":2,S").
 */
static int
scan_cur(struct maildir *md, struct wanted *w, size_t n)
{
	struct dirent *de;
	DIR *cur;
	int fd;

	if ((fd = openat(
		 md->dirfd, "cur", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return errno == ENOENT ? 0 : -1;
	if ((cur = fdopendir(fd)) == NULL) {
		close(fd);
		return -1;
	}
	qsort(w, n, sizeof(*w), wanted_cmp);
	errno = 0;
	while ((de = readdir(cur)) != NULL)
		mark_wanted(w, n, de->d_name, strcspn(de->d_name, ":"));
	if (errno != 0) {
		int saved = errno;

		closedir(cur);
		errno = saved;
		return -1;
	}
	closedir(cur);
	return 0;
}

/*
 * new/ first, then cur/: a message moved from new/ to cur/ after its
 * look-up in new/ was in cur/ before the scan began, so the scan sees it.
 */
int
maildir_delivered_many(
    struct maildir *md, const char *const *finalnames, size_t n, int *found)
{
	struct wanted *w;
	size_t i, nw = 0;
	int rc;

	for (i = 0; i < n; i++)
		if (!valid_name(finalnames[i])) {
			errno = EINVAL;
			return -1;
		}
	if (n == 0)
		return 0;
	if ((w = calloc(n, sizeof(*w))) == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		found[i] = exists_at(md->newfd, finalnames[i]);
		if (found[i] == 0 && errno != ENOENT) {
			free(w);
			return -1;
		}
		if (found[i] == 0)
			w[nw++] = (struct wanted){finalnames[i], &found[i]};
	}
	rc = nw > 0 ? scan_cur(md, w, nw) : 0;
	free(w);
	return rc;
}

int
maildir_drop_tmp(struct maildir *md, const char *tmpname)
{
	if (!valid_name(tmpname)) {
		errno = EINVAL;
		return -1;
	}
	if (unlinkat(md->tmpfd, tmpname, 0) == -1 && errno != ENOENT)
		return -1;
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
	free(msg->buf);
	free(msg);
	errno = saved;
}

void
maildir_set_sync(struct maildir *md, enum maildir_sync how)
{
	md->fell_back = how == MAILDIR_SYNC_BATCH && md->nosyncfs != NULL;
	md->how = md->fell_back ? MAILDIR_SYNC_FILE : how;
}

const char *
maildir_sync_fallback(const struct maildir *md)
{
	return md->fell_back ? md->nosyncfs : NULL;
}

/*
 * Magic numbers of statfs(2) f_type (linux/magic.h and the file systems'
 * own sources) for which syncfs(2) does not reach stable storage.
 */
static const struct {
	unsigned long type;
	const char *name;
} no_syncfs[] = {
    {0x65735546UL, "fuse"}, /* also virtiofs, GlusterFS, sshfs, s3fs... */
    {0x00006969UL, "nfs"},
    {0x0000517bUL, "smb"},
    {0xff534d42UL, "cifs"},
    {0xfe534d42UL, "smb2"},
    {0x01021997UL, "9p"},
    {0x00c36400UL, "ceph"},
    {0x0bd00bd0UL, "lustre"},
    {0x5346414fUL, "afs"},
    {0x6b414653UL, "afs"},
    {0x73757245UL, "coda"},
    {0x0000564cUL, "ncp"},
    {0x20030528UL, "orangefs"},
    {0x47504653UL, "gpfs"},
};

const char *
maildir_syncfs_unreliable(unsigned long fs_type)
{
	size_t i;

	for (i = 0; i < sizeof(no_syncfs) / sizeof(no_syncfs[0]); i++)
		if (no_syncfs[i].type == (fs_type & 0xffffffffUL))
			return no_syncfs[i].name;
	return NULL;
}

/* The first sync error of the handle, if there was one (errno set). */
static int
sticky_error(const struct maildir *md)
{
	if (md->sync_error == 0)
		return 0;
	errno = md->sync_error;
	return -1;
}

/* Passes RC on, keeping the first failure of a sync as the handle's. */
static int
sync_result(struct maildir *md, int rc)
{
	if (rc == -1 && errno != EINTR && md->sync_error == 0)
		md->sync_error = errno;
	return rc;
}

/* fsyncs tmp/NAME through a descriptor of its own (the writer's is shut). */
static int
sync_one(struct maildir *md, const char *name)
{
	int fd, rc, saved;

	if (!valid_name(name)) {
		errno = EINVAL;
		return -1;
	}
	if ((fd = openat(md->tmpfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) ==
	    -1)
		return -1;
	rc = sync_result(md, fsutil_fsync(fd));
	saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

/*
 * Makes the entries of the directories this open made durable: tmp/
 * new/ cur/ in the Maildir, the Maildir in its parent. Not at the
 * creation: a first poll would pay a sync per directory (four), where in
 * batch mode the first batch's syncfs covers them all, and nothing of the
 * Maildir is relied on before that sync (maildir_sync_tmp()) or, for
 * messages recovery publishes, the fsync of new/ (maildir_sync()).
 */
static int
sync_made_dirs(struct maildir *md)
{
	char parent[PATH_MAX];
	int fd, rc, saved;

	if (md->made_subdirs && sync_result(md, fsutil_fsync(md->dirfd)) == -1)
		return -1;
	md->made_subdirs = false;
	if (!md->made_root)
		return 0;
	parent_of(md->path, parent, sizeof(parent));
	if ((fd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	rc = sync_result(md, fsutil_fsync(fd));
	saved = errno;
	close(fd);
	errno = saved;
	if (rc == 0)
		md->made_root = false;
	return rc;
}

int
maildir_sync_tmp(struct maildir *md, const char *const *tmpnames, size_t n)
{
	size_t i;

	if (sticky_error(md) == -1)
		return -1;
	if (md->how == MAILDIR_SYNC_BATCH) {
		/* The whole file system: the made directories too. */
		if (sync_result(md, fsutil_syncfs(md->tmpfd)) == -1)
			return -1;
		md->made_root = md->made_subdirs = false;
		return 0;
	}
	for (i = 0; i < n; i++)
		if (sync_one(md, tmpnames[i]) == -1)
			return -1;
	/*
	 * The caller's intents will say "the message is in tmp/": the
	 * entries must be durable before that, not only the files' data.
	 */
	if (sync_result(md, fsutil_fsync(md->tmpfd)) == -1)
		return -1;
	return sync_made_dirs(md);
}

bool
maildir_syncs_fs(const struct maildir *md, dev_t *dev)
{
	struct stat sb;

	if (md->how != MAILDIR_SYNC_BATCH || fstat(md->tmpfd, &sb) == -1)
		return false;
	*dev = sb.st_dev;
	return true;
}

int
maildir_sync(struct maildir *md)
{
	if (sticky_error(md) == -1 ||
	    sync_result(md, fsutil_fsync(md->newfd)) == -1)
		return -1;
	/*
	 * Recovery publishes without a sync of tmp/ first: new/ may have
	 * been made by this open (none left after a batch's sync).
	 */
	return sync_made_dirs(md);
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
