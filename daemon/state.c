/*
 * state: the per-account store of delivered UIDs, an append-only journal.
 *
 * File DIR/ACCOUNT.state, text, one record per line:
 *
 *	popfetchd-state 1 <host> <user> <port>	header (percent-encoded fields)
 *	+ <first_seen_epoch> <uid>		UID delivered
 *	- <uid>					UID forgotten
 *	> <first_seen_epoch> <uid> <tmp> <final>	UID delivered, pending
 *	= <uid>					pending UID completed
 *	! <last_strike_epoch> <uid> <count>	failed deliveries so far
 *						(0: a note, see state_note)
 *	# <uid> <size>				listed size of a delivered UID
 *
 * The header names the server and user the state belongs to: the host
 * (compared without regard to ASCII case and to one trailing dot, as DNS
 * names are; written in lower case without the dot), the user (compared
 * exactly) and the port. Ports 110 and 995 count as one: POP3 and POP3S
 * reach the same mailbox (RFC 8314), and moving an account from one to
 * the other must not fetch again the mail it keeps. Any other port is
 * another mailbox (another server on the same host, a test instance):
 * sharing a state with it would take its UIDs for ours, and a UID that
 * collides would be deleted unread. A header without a port, written
 * before the port was recorded (or by a caller that does not know it),
 * matches any port; a header that matches but is not spelled as this
 * state would write it (no port, another case, 110 for 995) is
 * rewritten at the next state_commit(), by the same atomic snapshot as a
 * compaction. A binary from before the port was recorded compares the
 * header as a whole: it sets a file with a port aside as another owner's
 * (ACCOUNT.state.old, kept) and starts afresh, fetching again the mail
 * kept on the server: duplicates, never a loss.
 *
 * A pending record (an intent) says: the message is durable in tmp/<tmp>
 * of the Maildir and is to be published as new/<final>; it counts as
 * delivered from the moment it is durable. "=" says publishing is done;
 * the record stays as a plain delivered one. The two kinds came after the
 * first release; a version-1 file without them reads as before, so the
 * version did not change. A binary older than them skips them as
 * malformed, which can deliver those few messages twice, never lose them.
 *
 * Recording appends to a buffer in memory; state_commit() writes the
 * buffer with one write and one fdatasync, so its cost depends on what
 * changed, not on how many UIDs the account holds.
 *
 * A fresh state's file is created with its header and not synced:
 * nothing relies on it before the first commit, which makes it durable,
 * or a syncfs of its file system before that did (a first poll's batch
 * into a Maildir on the same file system). A file that holds no more
 * than a part of the header this state writes was cut short in that
 * window, and is read as a fresh state.
 *
 * Loading never fails because of what the file contains: a last record
 * without its newline was torn by a crash and is cut off; a malformed
 * record in the middle is skipped; a file without a readable header is
 * set aside as ACCOUNT.state.corrupt; a file written for another host or
 * user is set aside as ACCOUNT.state.old. In the last two cases the state
 * starts empty. The only refusal is a header of a newer format version:
 * starting empty there would deliver again every message kept on the
 * server, so the account fails until the user decides.
 *
 * A torn pending record is harmless: the commit writing it never returned
 * 0, so nothing was published nor deleted, and the message is fetched
 * again. (Whole records before the tear do count; their tmp/ files are
 * still there, as nothing is dropped before its intent is committed, and
 * recovery publishes them.) A pending record malformed in the middle of
 * the file (the file damaged, not torn) is skipped like any other: if
 * that message was published but not yet deleted on the server, it is
 * delivered a second time. That is the one way to a duplicate, and it
 * needs a corrupted journal.
 *
 * A size ("#") is the size the server listed (LIST) for the message
 * delivered under UID, so that the planner can tell a new message that
 * reuses an old UID from the old one. It follows the "+" or ">" of its
 * UID in the same write, and is written again after it by compaction. A
 * UID without one has its size unknown: delivered by a binary before
 * sizes, or the "#" lost with a torn tail. A "#" of a UID not delivered
 * is dead; a later one for the same UID replaces the earlier. A binary
 * older than sizes skips "#" as malformed (its load notice counts them)
 * and reads the deliveries as before: nothing is lost or delivered twice,
 * and its compaction drops the sizes, which become unknown again.
 *
 * A strike ("!") counts a failed delivery of a UID not delivered yet, so
 * that the planner can quarantine a message that keeps failing. It holds
 * the absolute count, not an increment: replaying a record twice, or only
 * the last of several, gives the same state, and compaction writes one
 * line per UID. A "+" or ">" of the UID ends its strikes (it was
 * delivered after all), so does "-"; a "!" for a UID already delivered
 * is dead. Strikes are kept apart from the deliveries, in a table of
 * their own, because they are not deliveries: a UID with strikes only is
 * not "had" and must be fetched, not deleted. They came after the first
 * release too; an older binary skips "!" as malformed, which only forgets
 * a quarantine.
 *
 * When dead records (forgotten UIDs, their old "+" and "#" lines, "="
 * lines, superseded sizes and strikes, ended strikes, duplicates,
 * malformed lines) outnumber
 * both COMPACT_MIN_DEAD and the live records, state_commit() rewrites the
 * file with only the live ones: a completed UID as "+", a pending one as
 * ">" again, each followed by its "#" if its size is known, and each UID
 * with strikes as one "!".
 *
 * The lock is a flock() on a separate ACCOUNT.lock, never replaced or
 * removed: the state file itself is replaced by rename when compacted, and
 * a lock on a replaced file would no longer exclude anyone.
 */
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fsutil.h"
#include "grow.h"
#include "state.h"
#include "uid.h"

#define FORMAT_MAGIC   "popfetchd-state "
#define FORMAT_VERSION 1

/*
 * Compaction waits for this many dead records: below it the file is small
 * whatever the ratio, and rewriting it would cost more than it saves.
 */
#define COMPACT_MIN_DEAD 1000

/* First size of the hash table (a power of two) and its maximum load. */
#define TABLE_MIN_CAP	 64
#define TABLE_LOAD_NUM	 3
#define TABLE_LOAD_DENOM 4

/*
 * File names in pending records: one path component each. The journal is
 * disk input, so they are checked as strictly as UIDs when read back.
 */
#define FNAME_MAX_LEN NAME_MAX

/*
 * Strikes stop counting here: a message failing this often is long
 * quarantined, and a bound keeps the count a small number on disk.
 */
#define STRIKES_CAP 9999

/* Fields after the kind of the longest record (">"). */
#define FIELDS_MAX 4

/* Fields of the header after the version: host, user and maybe port. */
#define HEADER_FIELDS_MAX 3

/* A size no message has: the slot's size is not known. */
#define SIZE_UNKNOWN UINT64_MAX

/* Room for a "# <uid> <size>\n" record and a NUL. */
#define SIZE_RECORD_MAX (2 + UID_MAX + 1 + 20 + 1 + 1)

/* Room for everything written for one delivered UID. */
#define SLOT_RECORDS_MAX (RECORD_MAX + SIZE_RECORD_MAX)

/*
 * Room for the longest record, "> " epoch(20) ' ' uid ' ' tmp ' ' final
 * '\n', and a NUL.
 */
#define RECORD_MAX \
	(2 + 20 + 1 + UID_MAX + 1 + FNAME_MAX_LEN + 1 + FNAME_MAX_LEN + 1 + 1)

/*
 * The largest journal state_import() takes: about ten million UIDs, far
 * past any mailbox, and a bound on what a wrong file costs in memory.
 */
#define IMPORT_MAX (1024UL * 1024 * 1024)

/* Snapshots are written in pieces of this size. */
#define SNAPSHOT_CHUNK (64 * 1024)

/* Suffixes of the files of one account. */
#define SUFFIX_STATE   ".state"
#define SUFFIX_TMP     ".state.tmp"
#define SUFFIX_OLD     ".state.old"
#define SUFFIX_CORRUPT ".state.corrupt"
#define SUFFIX_LOCK    ".lock"
#define SUFFIX_MOVED   ".moved"
#define LONGEST_SUFFIX SUFFIX_CORRUPT

/*
 * One UID in a table. The two tables of a state use the two halves of
 * the union: a delivered slot may own names, a strike slot counts (so
 * that the big table of deliveries does not carry a count it never uses).
 */
struct slot {
	char *uid; /* NULL: empty slot */
	uint64_t hash;
	time_t when;   /* delivered: first seen; strike: the latest strike */
	uint64_t size; /* delivered: listed size, or SIZE_UNKNOWN */
	union {
		/* delivered table: if pending "<tmp>\0<final>\0" (owned) */
		char *names;
		unsigned strikes; /* strike table: 1 to STRIKES_CAP */
	};
};

/* One space-separated field of a record, not NUL-terminated. */
struct field {
	const char *p;
	size_t len;
};

/* Open addressing with linear probing, keyed SipHash against flooding. */
struct table {
	struct slot *slots;
	size_t cap; /* a power of two, or 0 */
	size_t count;
	uint64_t key[2];
	bool counts; /* slots hold strikes, not names: nothing to free */
};

struct buf {
	char *data;
	size_t len, cap;
};

enum header_kind {
	HEADER_OK,	/* ours */
	HEADER_ADOPT,	/* ours, spelled otherwise: rewrite it */
	HEADER_OTHER,	/* version 1, another host, port or user */
	HEADER_CORRUPT, /* unreadable */
	HEADER_NEWER,	/* a format version we do not know */
	HEADER_NOMEM,	/* could not tell: out of memory */
};

struct state {
	char *dir;
	char *account;
	char *header; /* the header line our file must have */
	char *host;   /* normalised (see norm_host) */
	char *user;
	unsigned port;	     /* 0: not known, any will do */
	bool rewrite_header; /* the file's header is not st->header yet */
	bool unsynced;	     /* made by create_fresh(), not durable yet */
	dev_t dev;	     /* the file system of the state directory */
	int dirfd, lockfd, fd;
	off_t clean_len; /* the file up to here holds whole records */
	bool need_sep;	 /* junk may follow clean_len: start with '\n' */
	size_t dead;	 /* records in the file not adding to the live set */
	size_t compact_floor; /* no compaction before dead reaches this */
	size_t npending;      /* slots with names: intents not completed */
	size_t nsized;	      /* slots with a size: "#" records live */
	struct table tab;     /* delivered UIDs, pending ones included */
	struct table strikes; /* UIDs not delivered that failed to be */
	struct buf out;	      /* records not yet written */
	char notice[512];
};

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add_notice(struct state *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static bool valid_account(const char *account);
static char *make_names(const char *tmpname, const char *finalname);
static char *norm_host(const char *host);
static char *make_header(const char *host, const char *user, unsigned port);
static unsigned port_class(unsigned port);
static bool parse_port(const char *p, size_t len, unsigned *port);
static bool decode_field(char *p, size_t *len);
static size_t split_header(char *copy, char **f, size_t *flen);
static enum header_kind match_owner(
    struct state *st, const char *p, size_t len);
static void file_name(
    char *buf, size_t len, const struct state *st, const char *suffix);
static int take_lock(struct state *st, char *errbuf, size_t errlen);
static int load(struct state *st, char *errbuf, size_t errlen);
static int read_all(int fd, struct buf *out);
static enum header_kind check_header(struct state *st, const char *data,
    size_t len, size_t *hlen, unsigned long *version);
static int parse_records(
    struct state *st, const char *data, size_t hlen, size_t len);
static bool split_fields(
    const char *p, size_t len, struct field *f, size_t nfields);
static void copy_field(char *dst, const struct field *f);
static int parse_line(struct state *st, const char *line, size_t len);
static int parse_pending(struct state *st, const struct field *f);
static int apply_add(struct state *st, const char *uid, time_t first_seen,
    const char *tmpname, const char *finalname);
static void apply_forget(struct state *st, const char *uid);
static void apply_complete(struct state *st, const char *uid);
static bool parse_count(const char *p, size_t len, unsigned *count);
static bool parse_size(const char *p, size_t len, uint64_t *size);
static void apply_size(struct state *st, const char *uid, uint64_t size);
static void forget_size(struct state *st, const struct slot *s);
static int parse_strike(struct state *st, const struct field *f);
static int forget_strikes(struct state *st, const char *uid, size_t len);
static int apply_strike(
    struct state *st, const char *uid, time_t last, unsigned count);
static bool drop_strikes(struct state *st, const char *uid, uint64_t hash);
static void clear_pending(struct state *st, struct slot *s);
static void drop_torn(struct state *st, off_t good, size_t torn);
static int set_aside(struct state *st, const char *suffix, const char *why,
    char *errbuf, size_t errlen);
static bool torn_creation(const struct state *st, const char *data, size_t len);
static int create_fresh(struct state *st);
static int write_snapshot(struct state *st);
static int write_journal(struct state *st, int fd, off_t *total);
static int snapshot_table(
    int fd, struct buf *out, off_t *total, const struct table *t);
static int sync_out(struct state *st);
static int append_out(struct state *st);
static void maybe_compact(struct state *st);
static int buf_reserve(struct buf *b, size_t more);
static void buf_add(struct buf *b, const char *data, size_t len);
static void buf_add_record(struct buf *b, const struct slot *s);
static void buf_add_strike(struct buf *b, const struct slot *s);
static void buf_add_size(struct buf *b, const struct slot *s);
static void buf_add_uid_record(struct buf *b, char kind, const char *uid);
static uint64_t siphash13(const uint64_t key[2], const char *s, size_t len);
static void table_init_key(struct table *t);
static int table_reserve(struct table *t, size_t more);
static struct slot *table_find(
    const struct table *t, const char *uid, uint64_t hash);
static struct slot *table_put(struct table *t, const struct slot *s);
static void table_remove(struct table *t, struct slot *s);
static void table_free(struct table *t);

static void
set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	if (errbuf == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(errbuf, errlen, fmt, ap);
	va_end(ap);
	errno = saved;
}

/* Adds to what loading found, as "; "-separated phrases. */
static void
add_notice(struct state *st, const char *fmt, ...)
{
	size_t used = strlen(st->notice);
	va_list ap;

	if (used > 0 && used + 2 < sizeof(st->notice)) {
		memcpy(st->notice + used, "; ", 3);
		used += 2;
	}
	va_start(ap, fmt);
	vsnprintf(st->notice + used, sizeof(st->notice) - used, fmt, ap);
	va_end(ap);
}

struct state *
state_open(const char *dir, const char *account, const char *host,
    const char *user, char *errbuf, size_t errlen)
{
	return state_open_mailbox(dir, account, host, 0, user, errbuf, errlen);
}

/*
 * Whether the state was exported (state_export): then it is refused here
 * until imported back, with EXDEV and ERRBUF saying so.
 */
static bool
moved_away(struct state *st, char *errbuf, size_t errlen)
{
	char name[NAME_MAX + 1];

	file_name(name, sizeof(name), st, SUFFIX_MOVED);
	if (faccessat(st->dirfd, name, F_OK, 0) == -1)
		return false;
	set_err(errbuf, errlen,
	    "state of account %s was exported to another instance (popfetchd --export-state): it is not polled here; popfetchd --import-state %s takes it back",
	    st->account, st->account);
	errno = EXDEV;
	return true;
}

/* state_open_mailbox(), and a state exported from here if MOVED_OK. */
static struct state *
open_mailbox(const char *dir, const char *account, const char *host,
    unsigned port, const char *user, bool moved_ok, char *errbuf, size_t errlen)
{
	struct state *st;
	int saved;

	set_err(errbuf, errlen, "%s", "");
	if (!valid_account(account)) {
		set_err(errbuf, errlen, "invalid account name \"%s\"", account);
		errno = EINVAL;
		return NULL;
	}
	if (port > 65535) {
		set_err(errbuf, errlen, "invalid port %u", port);
		errno = EINVAL;
		return NULL;
	}
	if ((st = calloc(1, sizeof(*st))) == NULL)
		goto nomem;
	st->dirfd = st->lockfd = st->fd = -1;
	st->port = port;
	if ((st->dir = strdup(dir)) == NULL ||
	    (st->account = strdup(account)) == NULL ||
	    (st->host = norm_host(host)) == NULL ||
	    (st->user = strdup(user != NULL ? user : "")) == NULL ||
	    (st->header = make_header(st->host, st->user, port)) == NULL)
		goto nomem;
	table_init_key(&st->tab);
	table_init_key(&st->strikes);
	st->strikes.counts = true;
	st->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	/* Made only when missing: a poll would walk the path once a level. */
	if (st->dirfd == -1 && (errno == ENOENT || errno == ENOTDIR)) {
		if (fsutil_mkdir_p(dir, errbuf, errlen) == -1)
			goto fail;
		st->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	}
	if (st->dirfd == -1) {
		set_err(
		    errbuf, errlen, "cannot open %s: %s", dir, strerror(errno));
		goto fail;
	}
	if (take_lock(st, errbuf, errlen) == -1 ||
	    (!moved_ok && moved_away(st, errbuf, errlen)) ||
	    load(st, errbuf, errlen) == -1)
		goto fail;
	return st;
nomem:
	set_err(errbuf, errlen, "state of account %s: %s", account,
	    strerror(errno));
fail:
	saved = errno;
	state_close(&st);
	errno = saved;
	return NULL;
}

struct state *
state_open_mailbox(const char *dir, const char *account, const char *host,
    unsigned port, const char *user, char *errbuf, size_t errlen)
{
	return open_mailbox(
	    dir, account, host, port, user, false, errbuf, errlen);
}

void
state_close(struct state **stp)
{
	struct state *st = *stp;

	if (st == NULL)
		return;
	if (st->fd != -1)
		close(st->fd);
	if (st->lockfd != -1)
		close(st->lockfd); /* releases the lock */
	if (st->dirfd != -1)
		close(st->dirfd);
	table_free(&st->tab);
	table_free(&st->strikes);
	free(st->out.data);
	free(st->header);
	free(st->host);
	free(st->user);
	free(st->account);
	free(st->dir);
	free(st);
	*stp = NULL;
}

const char *
state_load_notice(const struct state *st)
{
	return st->notice[0] != '\0' ? st->notice : NULL;
}

/* Account names become file names: no '/', no "." or "..", not too long. */
static bool
valid_account(const char *account)
{
	size_t len = strlen(account);

	return len > 0 && len + strlen(LONGEST_SUFFIX) <= NAME_MAX &&
	       strchr(account, '/') == NULL && strcmp(account, ".") != 0 &&
	       strcmp(account, "..") != 0;
}

/* "<tmp>\0<final>\0" in one allocation (caller frees), or NULL. */
static char *
make_names(const char *tmpname, const char *finalname)
{
	size_t tl = strlen(tmpname) + 1, fl = strlen(finalname) + 1;
	char *names;

	if ((names = malloc(tl + fl)) == NULL)
		return NULL;
	memcpy(names, tmpname, tl);
	memcpy(names + tl, finalname, fl);
	return names;
}

/* Percent-encodes S into B, so that the header stays one line of fields. */
static void
encode_field(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c > 0x20 && c < 0x7f && c != '%') {
			buf_add(b, s, 1);
		} else {
			char esc[3] = {'%', hex[c >> 4], hex[c & 15]};

			buf_add(b, esc, 3);
		}
	}
}

/*
 * HOST as the header holds it (caller frees): ASCII letters in lower
 * case, one trailing dot dropped, so that "POP.Example.com." and
 * "pop.example.com" are one server, as DNS has them.
 */
static char *
norm_host(const char *host)
{
	char *h, *p;
	size_t len;

	if ((h = strdup(host != NULL ? host : "")) == NULL)
		return NULL;
	for (p = h; *p != '\0'; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	len = strlen(h);
	if (len > 1 && h[len - 1] == '.')
		h[len - 1] = '\0';
	return h;
}

/*
 * "popfetchd-state 1 <host> <user> <port>\n", without " <port>" if PORT
 * is 0, NUL-terminated (caller frees).
 */
static char *
make_header(const char *host, const char *user, unsigned port)
{
	size_t hlen = strlen(host), ulen = strlen(user);
	struct buf b = {0};
	char version[24], portstr[16];
	int n, pn = 0;

	n = snprintf(version, sizeof(version), "%d ", FORMAT_VERSION);
	if (port != 0)
		pn = snprintf(portstr, sizeof(portstr), " %u", port);
	if (buf_reserve(&b, sizeof(FORMAT_MAGIC) + (size_t)n +
				3 * (hlen + ulen) + (size_t)pn + 3) == -1)
		return NULL;
	buf_add(&b, FORMAT_MAGIC, strlen(FORMAT_MAGIC));
	buf_add(&b, version, (size_t)n);
	encode_field(&b, host);
	buf_add(&b, " ", 1);
	encode_field(&b, user);
	buf_add(&b, portstr, (size_t)pn);
	buf_add(&b, "\n", 2); /* with the NUL */
	return b.data;
}

/* POP3 (110) and POP3S (995) reach one mailbox: one class. */
static unsigned
port_class(unsigned port)
{
	return port == 110 ? 995 : port;
}

/* A port field: 1 to 65535 in decimal, no sign, no leading zero. */
static bool
parse_port(const char *p, size_t len, unsigned *port)
{
	unsigned v = 0;
	size_t i;

	if (len == 0 || len > 5 || p[0] == '0')
		return false;
	for (i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (unsigned)(p[i] - '0');
	}
	if (v > 65535)
		return false;
	*port = v;
	return true;
}

static int
hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Undoes encode_field() in place; false if P is no encoding of ours. */
static bool
decode_field(char *p, size_t *len)
{
	size_t i, o = 0;
	int hi, lo;

	for (i = 0; i < *len; i++) {
		if (p[i] != '%') {
			p[o++] = p[i];
			continue;
		}
		if (i + 2 >= *len)
			return false;
		if ((hi = hex_value(p[i + 1])) == -1 ||
		    (lo = hex_value(p[i + 2])) == -1)
			return false;
		p[o++] = (char)(hi << 4 | lo);
		i += 2;
	}
	*len = o;
	return true;
}

/*
 * Splits COPY at every space (fields may be empty: a user of "") into F
 * and FLEN; the number of fields, or 0 if more than HEADER_FIELDS_MAX.
 */
static size_t
split_header(char *copy, char **f, size_t *flen)
{
	size_t n = 0;
	char *sp;

	for (f[0] = copy;; f[n] = sp + 1) {
		sp = strchr(f[n], ' ');
		flen[n] = sp != NULL ? (size_t)(sp - f[n]) : strlen(f[n]);
		if (++n == HEADER_FIELDS_MAX || sp == NULL)
			break;
	}
	return sp == NULL ? n : 0;
}

/*
 * Whether the header fields at P (LEN bytes after the version: host,
 * user and maybe port) name our mailbox, by the rules at the top of the
 * file. HEADER_ADOPT if so (check_header() then tells whether the text
 * differs), HEADER_OTHER if not. A state opened without a port takes the
 * file's, so that its rewrites keep it.
 */
static enum header_kind
match_owner(struct state *st, const char *p, size_t len)
{
	char *copy, *f[HEADER_FIELDS_MAX], *header;
	size_t flen[HEADER_FIELDS_MAX], n;
	enum header_kind kind = HEADER_OTHER;
	unsigned port = 0;

	if ((copy = strndup(p, len)) == NULL)
		return HEADER_NOMEM;
	n = split_header(copy, f, flen);
	if (n < 2 || !decode_field(f[0], &flen[0]) ||
	    !decode_field(f[1], &flen[1]) ||
	    (n == 3 && !parse_port(f[2], flen[2], &port)))
		goto out;
	f[0][flen[0]] = '\0';
	if (memchr(f[0], '\0', flen[0]) != NULL)
		goto out;
	if ((header = norm_host(f[0])) == NULL) {
		kind = HEADER_NOMEM;
		goto out;
	}
	if (strcmp(header, st->host) != 0 || flen[1] != strlen(st->user) ||
	    memcmp(f[1], st->user, flen[1]) != 0 ||
	    (port != 0 && st->port != 0 &&
		port_class(port) != port_class(st->port))) {
		free(header);
		goto out;
	}
	free(header);
	kind = HEADER_ADOPT;
	if (port != 0 && st->port == 0) {
		if ((header = make_header(st->host, st->user, port)) == NULL) {
			kind = HEADER_NOMEM;
			goto out;
		}
		free(st->header);
		st->header = header;
		st->port = port;
	}
out:
	free(copy);
	return kind;
}

static void
file_name(char *buf, size_t len, const struct state *st, const char *suffix)
{
	snprintf(buf, len, "%s%s", st->account, suffix);
}

static int
take_lock(struct state *st, char *errbuf, size_t errlen)
{
	char name[NAME_MAX + 1];

	file_name(name, sizeof(name), st, SUFFIX_LOCK);
	st->lockfd =
	    openat(st->dirfd, name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (st->lockfd == -1) {
		set_err(errbuf, errlen, "cannot open %s/%s: %s", st->dir, name,
		    strerror(errno));
		return -1;
	}
	if (flock(st->lockfd, LOCK_EX | LOCK_NB) == -1) {
		if (errno == EWOULDBLOCK)
			set_err(errbuf, errlen,
			    "state of account %s is locked by another process",
			    st->account);
		else
			set_err(errbuf, errlen, "cannot lock %s/%s: %s",
			    st->dir, name, strerror(errno));
		return -1;
	}
	return 0;
}

/* Reads the state file (or starts a fresh one) into memory. */
static int
load(struct state *st, char *errbuf, size_t errlen)
{
	char name[NAME_MAX + 1];
	struct buf data = {0};
	unsigned long version;
	size_t hlen;
	int rc = -1;

	/* Left by a crash during compaction; the state file is intact. */
	file_name(name, sizeof(name), st, SUFFIX_TMP);
	unlinkat(st->dirfd, name, 0);
	file_name(name, sizeof(name), st, SUFFIX_STATE);
	st->fd = openat(st->dirfd, name, O_RDWR | O_APPEND | O_CLOEXEC);
	if (st->fd == -1 && errno == ENOENT)
		goto fresh;
	if (st->fd == -1 || read_all(st->fd, &data) == -1) {
		set_err(errbuf, errlen, "cannot read %s/%s: %s", st->dir, name,
		    strerror(errno));
		goto out;
	}
	if (torn_creation(st, data.data, data.len))
		goto fresh;
	switch (check_header(st, data.data, data.len, &hlen, &version)) {
	case HEADER_NOMEM:
		set_err(errbuf, errlen, "cannot load %s/%s: %s", st->dir, name,
		    strerror(errno));
		goto out;
	case HEADER_ADOPT:
		/* Ours in an older spelling: the next commit rewrites it. */
		st->rewrite_header = true;
		/* FALLTHROUGH */
	case HEADER_OK:
		rc = parse_records(st, data.data, hlen, data.len);
		if (rc == -1)
			set_err(errbuf, errlen, "cannot load %s/%s: %s",
			    st->dir, name, strerror(errno));
		goto out;
	case HEADER_NEWER:
		set_err(errbuf, errlen,
		    "%s/%s has format version %lu; this popfetchd reads version %d",
		    st->dir, name, version, FORMAT_VERSION);
		errno = ENOTSUP;
		goto out;
	case HEADER_OTHER:
		if (set_aside(st, SUFFIX_OLD,
			"belongs to another host, port or user", errbuf,
			errlen) == -1)
			goto out;
		goto fresh;
	case HEADER_CORRUPT:
		if (set_aside(st, SUFFIX_CORRUPT, "has no readable header",
			errbuf, errlen) == -1)
			goto out;
		goto fresh;
	}
fresh:
	if ((rc = create_fresh(st)) == -1)
		set_err(errbuf, errlen, "cannot create %s/%s: %s", st->dir,
		    name, strerror(errno));
out:
	free(data.data);
	return rc;
}

/* Reads FD from its start to its end into OUT. */
static int
read_all(int fd, struct buf *out)
{
	struct stat sb;
	ssize_t n;

	if (fstat(fd, &sb) == -1 || buf_reserve(out, (size_t)sb.st_size + 1))
		return -1;
	for (;;) {
		if (out->len == out->cap && buf_reserve(out, out->cap) == -1)
			return -1;
		n = pread(fd, out->data + out->len, out->cap - out->len,
		    (off_t)out->len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			return -1;
		if (n == 0)
			return 0;
		out->len += (size_t)n;
	}
}

/*
 * Classifies the first line of the file; *HLEN gets its length with the
 * newline, *VERSION the format version it names.
 */
static enum header_kind
check_header(struct state *st, const char *data, size_t len, size_t *hlen,
    unsigned long *version)
{
	size_t magic = strlen(FORMAT_MAGIC);
	const char *nl = memchr(data, '\n', len);
	enum header_kind kind;
	char *end;

	*version = 0;
	if (nl == NULL || (size_t)(nl - data) < magic + 1 ||
	    memcmp(data, FORMAT_MAGIC, magic) != 0 || data[magic] < '0' ||
	    data[magic] > '9')
		return HEADER_CORRUPT;
	*hlen = (size_t)(nl - data) + 1;
	/* Ends at the newline at the latest: strtoul stops at non-digits. */
	*version = strtoul(data + magic, &end, 10);
	if (*end != ' ' && *end != '\n')
		return HEADER_CORRUPT;
	if (*version != FORMAT_VERSION)
		return *version > FORMAT_VERSION ? HEADER_NEWER
						 : HEADER_CORRUPT;
	if (*hlen == strlen(st->header) && memcmp(data, st->header, *hlen) == 0)
		return HEADER_OK;
	if (*end != ' ')
		return HEADER_OTHER;
	kind = match_owner(st, end + 1, (size_t)(nl - end) - 1);
	/* A port taken from the file may have made the texts equal. */
	if (kind == HEADER_ADOPT && *hlen == strlen(st->header) &&
	    memcmp(data, st->header, *hlen) == 0)
		return HEADER_OK;
	return kind;
}

/* Applies the records after the header; cuts off a torn last one. */
static int
parse_records(struct state *st, const char *data, size_t hlen, size_t len)
{
	const char *p = data + hlen, *end = data + len, *nl;
	size_t skipped = 0;

	while (p < end && (nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		int r = parse_line(st, p, (size_t)(nl - p));

		if (r == -1)
			return -1;
		if (r == 1) {
			skipped++;
			st->dead++;
		}
		p = nl + 1;
	}
	st->clean_len = (off_t)(p - data);
	if (p < end)
		drop_torn(st, st->clean_len, (size_t)(end - p));
	if (skipped > 0)
		add_notice(st, "skipped %zu malformed record%s", skipped,
		    skipped == 1 ? "" : "s");
	return 0;
}

/* Parses a non-negative decimal time, refusing overflow. */
static bool
parse_time(const char *p, size_t len, time_t *t)
{
	long long v = 0;
	size_t i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9' || v > (LLONG_MAX - 9) / 10)
			return false;
		v = v * 10 + (p[i] - '0');
	}
	*t = (time_t)v;
	return true;
}

/*
 * Splits P (LEN bytes) at single spaces into exactly NFIELDS non-empty
 * fields; false if there are more or fewer, or an empty one.
 */
static bool
split_fields(const char *p, size_t len, struct field *f, size_t nfields)
{
	const char *end = p + len, *sp;
	size_t i;

	for (i = 0; i < nfields; i++) {
		if (p >= end)
			return false;
		sp = memchr(p, ' ', (size_t)(end - p));
		if (sp == NULL)
			sp = end;
		else if (i + 1 == nfields)
			return false; /* a field too many */
		if (sp == p)
			return false;
		f[i].p = p;
		f[i].len = (size_t)(sp - p);
		p = sp + 1;
	}
	return true;
}

/* Copies F into DST as a string; DST has room (the field was checked). */
static void
copy_field(char *dst, const struct field *f)
{
	memcpy(dst, f->p, f->len);
	dst[f->len] = '\0';
}

/*
 * Applies one record (without its newline). Returns 0, 1 if malformed,
 * -1 if out of memory.
 */
static int
parse_line(struct state *st, const char *line, size_t len)
{
	char uid[UID_MAX + 1], kind;
	struct field f[FIELDS_MAX];
	uint64_t size;
	time_t t;

	/* An empty line separates records from junk a failed write left. */
	if (len == 0) {
		st->dead++;
		return 0;
	}
	if (len < 3 || line[1] != ' ')
		return 1;
	kind = line[0];
	line += 2;
	len -= 2;
	switch (kind) {
	case '+':
		if (!split_fields(line, len, f, 2) ||
		    !parse_time(f[0].p, f[0].len, &t) ||
		    !uid_valid(f[1].p, f[1].len))
			return 1;
		copy_field(uid, &f[1]);
		return apply_add(st, uid, t, NULL, NULL);
	case '>':
		if (!split_fields(line, len, f, 4))
			return 1;
		return parse_pending(st, f);
	case '!':
		if (!split_fields(line, len, f, 3))
			return 1;
		return parse_strike(st, f);
	case '#':
		if (!split_fields(line, len, f, 2) ||
		    !uid_valid(f[0].p, f[0].len) ||
		    !parse_size(f[1].p, f[1].len, &size))
			return 1;
		copy_field(uid, &f[0]);
		apply_size(st, uid, size);
		return 0;
	case '-':
	case '=':
		if (!split_fields(line, len, f, 1) ||
		    !uid_valid(f[0].p, f[0].len))
			return 1;
		copy_field(uid, &f[0]);
		if (kind == '-')
			apply_forget(st, uid);
		else
			apply_complete(st, uid);
		return 0;
	default:
		return 1;
	}
}

/* Applies the fields of a ">" record: time, UID, tmp/ and final name. */
static int
parse_pending(struct state *st, const struct field *f)
{
	char uid[UID_MAX + 1], tmpname[FNAME_MAX_LEN + 1],
	    finalname[FNAME_MAX_LEN + 1];
	time_t t;

	if (!parse_time(f[0].p, f[0].len, &t) || !uid_valid(f[1].p, f[1].len) ||
	    !fsutil_valid_name(f[2].p, f[2].len) ||
	    !fsutil_valid_name(f[3].p, f[3].len))
		return 1;
	copy_field(uid, &f[1]);
	copy_field(tmpname, &f[2]);
	copy_field(finalname, &f[3]);
	return apply_add(st, uid, t, tmpname, finalname);
}

/*
 * Adds UID, pending if TMPNAME is not NULL; a duplicate is a dead record.
 * A delivered UID has no strikes: any it had end here.
 */
static int
apply_add(struct state *st, const char *uid, time_t first_seen,
    const char *tmpname, const char *finalname)
{
	struct slot s = {.when = first_seen, .size = SIZE_UNKNOWN};
	size_t len = strlen(uid);

	s.hash = siphash13(st->tab.key, uid, len);
	if (table_find(&st->tab, uid, s.hash) != NULL) {
		st->dead++; /* a duplicate: the first one counts */
		return 0;
	}
	if (table_reserve(&st->tab, 1) == -1 || (s.uid = strdup(uid)) == NULL)
		return -1;
	if (tmpname != NULL &&
	    (s.names = make_names(tmpname, finalname)) == NULL) {
		free(s.uid);
		return -1;
	}
	table_put(&st->tab, &s);
	if (s.names != NULL)
		st->npending++;
	if (drop_strikes(st, uid, siphash13(st->strikes.key, uid, len)))
		st->dead++; /* its "!" record */
	return 0;
}

static void
apply_forget(struct state *st, const char *uid)
{
	struct slot *s;

	s = table_find(&st->tab, uid, siphash13(st->tab.key, uid, strlen(uid)));
	st->dead++;
	if (s != NULL) {
		if (s->names != NULL)
			st->npending--;
		forget_size(st, s);
		table_remove(&st->tab, s);
		st->dead++; /* its "+" record too */
	}
	/* "-" also ends strikes: of a UID no longer on the server. */
	if (drop_strikes(st, uid, siphash13(st->strikes.key, uid, strlen(uid))))
		st->dead++; /* its "!" record */
}

/* "=": the pending UID becomes a plain delivered one. */
static void
apply_complete(struct state *st, const char *uid)
{
	struct slot *s;

	s = table_find(&st->tab, uid, siphash13(st->tab.key, uid, strlen(uid)));
	st->dead++; /* once compacted, ">" and "=" are one "+" */
	if (s != NULL)
		clear_pending(st, s);
}

/* Parses a size: decimal, below SIZE_UNKNOWN, refusing overflow. */
static bool
parse_size(const char *p, size_t len, uint64_t *size)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9' ||
		    v > (SIZE_UNKNOWN - 1 - (uint64_t)(p[i] - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	*size = v;
	return true;
}

/*
 * "#": the size of UID, if delivered (dead otherwise); it replaces an
 * earlier one, which becomes dead.
 */
static void
apply_size(struct state *st, const char *uid, uint64_t size)
{
	struct slot *s;

	s = table_find(&st->tab, uid, siphash13(st->tab.key, uid, strlen(uid)));
	if (s == NULL || s->size != SIZE_UNKNOWN)
		st->dead++;
	if (s == NULL)
		return;
	if (s->size == SIZE_UNKNOWN)
		st->nsized++;
	s->size = size;
}

/* Parses a strike count: 1 to STRIKES_CAP, decimal digits only. */
static bool
parse_count(const char *p, size_t len, unsigned *count)
{
	unsigned v = 0;
	size_t i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9' || v > STRIKES_CAP)
			return false;
		v = v * 10 + (unsigned)(p[i] - '0');
	}
	if (v > STRIKES_CAP)
		return false;
	*count = v;
	return true;
}

/* Applies the fields of a "!" record: time of the last strike, UID, count. */
static int
parse_strike(struct state *st, const struct field *f)
{
	char uid[UID_MAX + 1];
	unsigned count;
	time_t t;

	if (!parse_time(f[0].p, f[0].len, &t) || !uid_valid(f[1].p, f[1].len) ||
	    !parse_count(f[2].p, f[2].len, &count))
		return 1;
	copy_field(uid, &f[1]);
	return apply_strike(st, uid, t, count);
}

/*
 * Sets the strikes of UID to COUNT, the latest at LAST, as a "!" record
 * says. The record holds the whole count, so it replaces an earlier one,
 * which becomes dead; a strike of a UID delivered is dead itself.
 */
static int
apply_strike(struct state *st, const char *uid, time_t last, unsigned count)
{
	struct slot s = {.when = last, .strikes = count}, *old;
	size_t len = strlen(uid);

	if (table_find(&st->tab, uid, siphash13(st->tab.key, uid, len)) !=
	    NULL) {
		st->dead++;
		return 0;
	}
	s.hash = siphash13(st->strikes.key, uid, len);
	if ((old = table_find(&st->strikes, uid, s.hash)) != NULL) {
		old->when = last;
		old->strikes = count;
		st->dead++;
		return 0;
	}
	if (table_reserve(&st->strikes, 1) == -1 ||
	    (s.uid = strdup(uid)) == NULL)
		return -1;
	table_put(&st->strikes, &s);
	return 0;
}

/* Forgets the strikes of UID (HASH under the strike table's key), if any. */
static bool
drop_strikes(struct state *st, const char *uid, uint64_t hash)
{
	struct slot *s = table_find(&st->strikes, uid, hash);

	if (s == NULL)
		return false;
	table_remove(&st->strikes, s);
	return true;
}

/* Makes S a plain delivered record, if it was pending. */
static void
clear_pending(struct state *st, struct slot *s)
{
	if (s->names == NULL)
		return;
	free(s->names);
	s->names = NULL;
	st->npending--;
}

/*
 * Cuts off a record a crash tore. If the file cannot be truncated the
 * junk stays, and the next commit begins with a newline to end it.
 */
static void
drop_torn(struct state *st, off_t good, size_t torn)
{
	if (ftruncate(st->fd, good) == -1)
		st->need_sep = true;
	add_notice(st, "dropped a torn last record (%zu bytes)", torn);
}

/* Renames the state file to ACCOUNT SUFFIX, keeping it for the user. */
static int
set_aside(struct state *st, const char *suffix, const char *why, char *errbuf,
    size_t errlen)
{
	char from[NAME_MAX + 1], to[NAME_MAX + 1];

	file_name(from, sizeof(from), st, SUFFIX_STATE);
	file_name(to, sizeof(to), st, suffix);
	if (renameat(st->dirfd, from, st->dirfd, to) == -1) {
		set_err(errbuf, errlen, "cannot rename %s/%s to %s: %s",
		    st->dir, from, to, strerror(errno));
		return -1;
	}
	close(st->fd);
	st->fd = -1;
	add_notice(st, "%s/%s %s; moved to %s, starting afresh", st->dir, from,
	    why, to);
	return 0;
}

/*
 * Whether the LEN bytes of DATA, a state file, are no more than a start
 * of the header this state writes, without its newline: a creation cut
 * short by a crash (create_fresh() does not sync). Nothing was recorded
 * in such a file: a record is appended only after the header, and made
 * durable with it.
 */
static bool
torn_creation(const struct state *st, const char *data, size_t len)
{
	return len < strlen(st->header) &&
	       (len == 0 || memcmp(data, st->header, len) == 0);
}

/*
 * Starts the file of a state found empty: the header alone, written in
 * place and not synced. A first poll would otherwise pay two syncs
 * before it has anything to record, and a poll that records nothing would
 * pay them for nothing. Nothing relies on the file before a commit; the
 * first commit makes it durable (sync_out()), unless a syncfs of its
 * file system did already (state_fs_synced()). A crash before then
 * leaves no file, an empty one or a part of the header, which load()
 * takes for a fresh state (torn_creation()), or, on a file system that
 * does not order data before metadata, whatever its blocks held, which
 * load() sets aside as any unreadable file.
 */
static int
create_fresh(struct state *st)
{
	char name[NAME_MAX + 1];
	struct stat sb;
	int fd, saved;

	file_name(name, sizeof(name), st, SUFFIX_STATE);
	if (fstat(st->dirfd, &sb) == -1)
		return -1;
	fd = openat(st->dirfd, name,
	    O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1)
		return -1;
	if (fsutil_write_all(fd, st->header, strlen(st->header)) == -1) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	if (st->fd != -1)
		close(st->fd);
	st->fd = fd;
	st->clean_len = (off_t)strlen(st->header);
	st->need_sep = false;
	st->unsynced = true;
	st->dev = sb.st_dev;
	return 0;
}

void
state_fs_synced(struct state *st, dev_t dev)
{
	if (st->unsynced && st->dev == dev)
		st->unsynced = false;
}

/*
 * Replaces the state file with one holding the header and the live UIDs:
 * written to a temporary file, fsynced, renamed over, and the directory
 * fsynced. The directory fsync makes the rename durable before anything
 * is appended to the new file; otherwise a crash could bring back the old
 * file and lose records appended (and acted upon) since.
 */
static int
write_snapshot(struct state *st)
{
	char tmp[NAME_MAX + 1], name[NAME_MAX + 1];
	off_t total = 0;
	int fd, saved;

	file_name(tmp, sizeof(tmp), st, SUFFIX_TMP);
	file_name(name, sizeof(name), st, SUFFIX_STATE);
	fd = openat(st->dirfd, tmp,
	    O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1 || write_journal(st, fd, &total) == -1)
		goto fail;
	if (fsutil_fsync(fd) == -1 ||
	    renameat(st->dirfd, tmp, st->dirfd, name) == -1 ||
	    fsutil_fsync(st->dirfd) == -1)
		goto fail;
	if (st->fd != -1)
		close(st->fd);
	st->fd = fd;
	st->clean_len = total;
	st->need_sep = false;
	st->unsynced = false;
	st->dead = 0;
	st->compact_floor = 0;
	return 0;
fail:
	saved = errno;
	if (fd != -1) {
		close(fd);
		unlinkat(st->dirfd, tmp, 0);
	}
	errno = saved;
	return -1;
}

/*
 * Writes the header and the live records to FD (a snapshot's content);
 * *TOTAL gets the bytes written.
 */
static int
write_journal(struct state *st, int fd, off_t *total)
{
	struct buf out = {0};
	int rc = -1, saved;

	*total = 0;
	if (buf_reserve(&out,
		SNAPSHOT_CHUNK + SLOT_RECORDS_MAX + strlen(st->header)) == -1)
		return -1;
	buf_add(&out, st->header, strlen(st->header));
	if (snapshot_table(fd, &out, total, &st->tab) == 0 &&
	    snapshot_table(fd, &out, total, &st->strikes) == 0 &&
	    fsutil_write_all(fd, out.data, out.len) == 0) {
		*total += (off_t)out.len;
		rc = 0;
	}
	saved = errno;
	free(out.data);
	errno = saved;
	return rc;
}

/*
 * Adds the records of the live entries of T to OUT, writing OUT to FD
 * whenever it holds SNAPSHOT_CHUNK bytes; *TOTAL counts what was written.
 * OUT has room for SNAPSHOT_CHUNK + SLOT_RECORDS_MAX.
 */
static int
snapshot_table(int fd, struct buf *out, off_t *total, const struct table *t)
{
	size_t i;

	for (i = 0; i < t->cap; i++) {
		if (t->slots[i].uid == NULL)
			continue;
		if (out->len >= SNAPSHOT_CHUNK) {
			if (fsutil_write_all(fd, out->data, out->len) == -1)
				return -1;
			*total += (off_t)out->len;
			out->len = 0;
		}
		if (t->counts)
			buf_add_strike(out, &t->slots[i]);
		else /* a pending record stays pending: not done yet */
			buf_add_record(out, &t->slots[i]);
	}
	return 0;
}

bool
state_has(const struct state *st, const char *uid, time_t *first_seen)
{
	const struct slot *s;
	size_t len = strlen(uid);

	if (!uid_valid(uid, len))
		return false;
	s = table_find(&st->tab, uid, siphash13(st->tab.key, uid, len));
	if (s != NULL && first_seen != NULL)
		*first_seen = s->when;
	return s != NULL;
}

int
state_record(struct state *st, const char *uid, time_t now)
{
	return state_record_size(st, uid, now, SIZE_UNKNOWN);
}

int
state_record_size(struct state *st, const char *uid, time_t now, uint64_t size)
{
	size_t len = strlen(uid);
	struct slot s = {.when = now, .size = size};

	if (!uid_valid(uid, len) || now < 0) {
		errno = EINVAL;
		return -1;
	}
	s.hash = siphash13(st->tab.key, uid, len);
	if (table_find(&st->tab, uid, s.hash) != NULL)
		return 0;
	/* Take all memory first, so that no failure leaves half a change. */
	if (table_reserve(&st->tab, 1) == -1 ||
	    buf_reserve(&st->out, SLOT_RECORDS_MAX) == -1 ||
	    (s.uid = strdup(uid)) == NULL)
		return -1;
	buf_add_record(&st->out, table_put(&st->tab, &s));
	if (size != SIZE_UNKNOWN)
		st->nsized++;
	/* Delivered after all; the "+" ends the strikes on replay too. */
	if (drop_strikes(st, uid, siphash13(st->strikes.key, uid, len)))
		st->dead++;
	return 0;
}

int
state_record_pending(struct state *st, const char *uid, time_t now,
    const char *tmpname, const char *finalname)
{
	return state_record_pending_size(
	    st, uid, now, tmpname, finalname, SIZE_UNKNOWN);
}

int
state_record_pending_size(struct state *st, const char *uid, time_t now,
    const char *tmpname, const char *finalname, uint64_t size)
{
	size_t len = strlen(uid);
	struct slot s = {.when = now, .size = size};

	if (!uid_valid(uid, len) || now < 0 ||
	    !fsutil_valid_name(tmpname, strlen(tmpname)) ||
	    !fsutil_valid_name(finalname, strlen(finalname))) {
		errno = EINVAL;
		return -1;
	}
	s.hash = siphash13(st->tab.key, uid, len);
	/* Publishing this copy would deliver the message twice. */
	if (table_find(&st->tab, uid, s.hash) != NULL) {
		errno = EEXIST;
		return -1;
	}
	if (table_reserve(&st->tab, 1) == -1 ||
	    buf_reserve(&st->out, SLOT_RECORDS_MAX) == -1 ||
	    (s.names = make_names(tmpname, finalname)) == NULL)
		return -1;
	if ((s.uid = strdup(uid)) == NULL) {
		free(s.names);
		return -1;
	}
	buf_add_record(&st->out, table_put(&st->tab, &s));
	st->npending++;
	if (size != SIZE_UNKNOWN)
		st->nsized++;
	if (drop_strikes(st, uid, siphash13(st->strikes.key, uid, len)))
		st->dead++;
	return 0;
}

/*
 * The delivery record of UID, or NULL: errno EINVAL for an invalid UID,
 * ENOENT for one not recorded. *LEN gets the UID's length.
 */
static struct slot *
find_delivered(struct state *st, const char *uid, size_t *len)
{
	struct slot *s;

	*len = strlen(uid);
	if (!uid_valid(uid, *len)) {
		errno = EINVAL;
		return NULL;
	}
	s = table_find(&st->tab, uid, siphash13(st->tab.key, uid, *len));
	if (s == NULL)
		errno = ENOENT;
	return s;
}

int
state_complete(struct state *st, const char *uid)
{
	size_t len;
	struct slot *s;

	if ((s = find_delivered(st, uid, &len)) == NULL)
		return -1;
	if (s->names == NULL)
		return 0;
	if (buf_reserve(&st->out, 3 + len) == -1)
		return -1;
	buf_add_uid_record(&st->out, '=', uid);
	clear_pending(st, s);
	st->dead++;
	return 0;
}

int
state_forget(struct state *st, const char *uid)
{
	size_t len;
	struct slot *s;

	if ((s = find_delivered(st, uid, &len)) == NULL)
		return errno == ENOENT ? forget_strikes(st, uid, len) : -1;
	/* Forgetting the intent would forget the tmp/ file it protects. */
	if (s->names != NULL) {
		errno = EBUSY;
		return -1;
	}
	if (buf_reserve(&st->out, 3 + len) == -1)
		return -1;
	buf_add_uid_record(&st->out, '-', uid);
	forget_size(st, s);
	table_remove(&st->tab, s);
	st->dead += 2; /* this record and the "+" it cancels */
	return 0;
}

int
state_set_size(struct state *st, const char *uid, uint64_t size)
{
	size_t len;
	struct slot *s;

	if ((s = find_delivered(st, uid, &len)) == NULL)
		return -1;
	if (size == SIZE_UNKNOWN) {
		errno = EINVAL;
		return -1;
	}
	if (s->size == size)
		return 0;
	if (buf_reserve(&st->out, SIZE_RECORD_MAX) == -1)
		return -1;
	if (s->size == SIZE_UNKNOWN)
		st->nsized++;
	else
		st->dead++; /* the "#" this one replaces */
	s->size = size;
	buf_add_size(&st->out, s);
	return 0;
}

bool
state_size(const struct state *st, const char *uid, uint64_t *size)
{
	const struct slot *s;
	size_t len = strlen(uid);

	if (!uid_valid(uid, len))
		return false;
	s = table_find(&st->tab, uid, siphash13(st->tab.key, uid, len));
	if (s == NULL || s->size == SIZE_UNKNOWN)
		return false;
	if (size != NULL)
		*size = s->size;
	return true;
}

/* S is about to go: its "#" record, if any, becomes dead. */
static void
forget_size(struct state *st, const struct slot *s)
{
	if (s->size == SIZE_UNKNOWN)
		return;
	st->nsized--;
	st->dead++;
}

/*
 * Forgets the strikes of UID (LEN bytes, valid), writing "-": the record
 * that also forgets a delivery, harmless here as UID has none.
 */
static int
forget_strikes(struct state *st, const char *uid, size_t len)
{
	struct slot *s;

	s = table_find(&st->strikes, uid, siphash13(st->strikes.key, uid, len));
	if (s == NULL)
		return 0;
	if (buf_reserve(&st->out, 3 + len) == -1)
		return -1;
	buf_add_uid_record(&st->out, '-', uid);
	table_remove(&st->strikes, s);
	st->dead += 2; /* this record and the "!" it cancels */
	return 0;
}

/*
 * The checks strikes and notes share: a valid UID and time, and a UID not
 * delivered (its copy is safe, nothing is failing). Sets *HASH for the
 * strike table. 0, or -1 with errno set (EINVAL, EEXIST).
 */
static int
strike_check(
    const struct state *st, const char *uid, time_t now, uint64_t *hash)
{
	size_t len = strlen(uid);

	if (!uid_valid(uid, len) || now < 0) {
		errno = EINVAL;
		return -1;
	}
	if (table_find(&st->tab, uid, siphash13(st->tab.key, uid, len)) !=
	    NULL) {
		errno = EEXIST;
		return -1;
	}
	*hash = siphash13(st->strikes.key, uid, len);
	return 0;
}

int
state_strike(struct state *st, const char *uid, time_t now)
{
	struct slot s = {.when = now, .strikes = 1}, *old;

	if (strike_check(st, uid, now, &s.hash) == -1 ||
	    buf_reserve(&st->out, RECORD_MAX) == -1)
		return -1;
	if ((old = table_find(&st->strikes, uid, s.hash)) != NULL) {
		/* The time of this strike, even if the clock went back:
		 * the planner copes with either order. */
		old->when = now;
		if (old->strikes < STRIKES_CAP)
			old->strikes++;
		buf_add_strike(&st->out, old);
		st->dead++; /* the "!" this one supersedes */
		return (int)old->strikes;
	}
	if (table_reserve(&st->strikes, 1) == -1 ||
	    (s.uid = strdup(uid)) == NULL)
		return -1;
	buf_add_strike(&st->out, table_put(&st->strikes, &s));
	return 1;
}

int
state_note(struct state *st, const char *uid, time_t now)
{
	struct slot s = {.when = now, .strikes = 0};

	if (strike_check(st, uid, now, &s.hash) == -1)
		return -1;
	if (table_find(&st->strikes, uid, s.hash) != NULL)
		return 0;
	if (buf_reserve(&st->out, RECORD_MAX) == -1 ||
	    table_reserve(&st->strikes, 1) == -1 ||
	    (s.uid = strdup(uid)) == NULL)
		return -1;
	buf_add_strike(&st->out, table_put(&st->strikes, &s));
	return 1;
}

unsigned
state_strikes(const struct state *st, const char *uid, time_t *last)
{
	const struct slot *s = NULL;
	size_t len = strlen(uid);

	if (uid_valid(uid, len))
		s = table_find(
		    &st->strikes, uid, siphash13(st->strikes.key, uid, len));
	if (last != NULL)
		*last = s != NULL ? s->when : 0;
	return s != NULL ? s->strikes : 0;
}

void
state_prune_strikes(
    struct state *st, bool (*listed)(void *arg, const char *uid), void *arg)
{
	struct slot *s;
	size_t i = 0;

	/*
	 * Removing shifts later entries of the probe run back, possibly
	 * into slot i: look at slot i again rather than step past it. An
	 * entry not yet looked at only ever moves back to i or beyond, so
	 * each one is still seen; one seen and kept may be seen twice.
	 */
	while (i < st->strikes.cap) {
		s = &st->strikes.slots[i];
		if (s->uid == NULL || listed(arg, s->uid)) {
			i++;
			continue;
		}
		/* Out of memory: the rest wait for the next prune. */
		if (buf_reserve(&st->out, 3 + strlen(s->uid)) == -1)
			return;
		buf_add_uid_record(&st->out, '-', s->uid);
		table_remove(&st->strikes, s);
		st->dead += 2; /* this record and the "!" it cancels */
	}
}

/*
 * Makes what was written to the file durable, and the file's name too
 * while its creation is not (create_fresh()).
 */
static int
sync_out(struct state *st)
{
	if (fsutil_fdatasync(st->fd) == -1)
		return -1;
	if (!st->unsynced)
		return 0;
	if (fsutil_fsync(st->dirfd) == -1)
		return -1;
	st->unsynced = false;
	return 0;
}

/*
 * Writes the unwritten records and fdatasyncs. On failure the file is cut
 * back to its clean length and the records stay unwritten, to be written
 * again in full by the next commit: after a failed fdatasync the kernel
 * may have dropped the written pages, so they must not count as written.
 */
static int
append_out(struct state *st)
{
	off_t end = 0;
	int saved;

	if (st->need_sep && ftruncate(st->fd, st->clean_len) == 0)
		st->need_sep = false;
	if ((st->need_sep && fsutil_write_all(st->fd, "\n", 1) == -1) ||
	    fsutil_write_all(st->fd, st->out.data, st->out.len) == -1 ||
	    sync_out(st) == -1 || (end = lseek(st->fd, 0, SEEK_END)) == -1) {
		saved = errno;
		if (ftruncate(st->fd, st->clean_len) == 0)
			st->need_sep = false;
		else
			st->need_sep = true;
		errno = saved;
		return -1;
	}
	st->clean_len = end;
	st->need_sep = false;
	st->out.len = 0;
	return 0;
}

/*
 * Compacts when dead records outnumber COMPACT_MIN_DEAD and the live
 * ones. A failure is not the commit's failure (the journal is durable);
 * the next try waits for COMPACT_MIN_DEAD more dead records, so that a
 * full disk does not cost a whole rewrite at every commit.
 */
static void
maybe_compact(struct state *st)
{
	if (st->dead <= COMPACT_MIN_DEAD ||
	    st->dead <= st->tab.count + st->nsized + st->strikes.count ||
	    st->dead < st->compact_floor || st->out.len > 0)
		return;
	if (write_snapshot(st) == -1)
		st->compact_floor = st->dead + COMPACT_MIN_DEAD;
}

int
state_commit(struct state *st)
{
	if (st->out.len > 0 && append_out(st) == -1)
		return -1;
	/*
	 * Once per open: if the rewrite fails, the header in the file still
	 * matches, and the next open tries again.
	 */
	if (st->rewrite_header) {
		st->rewrite_header = false;
		if (write_snapshot(st) == 0)
			return 0;
	}
	maybe_compact(st);
	return 0;
}

size_t
state_count(const struct state *st)
{
	return st->tab.count;
}

void
state_foreach(const struct state *st,
    void (*fn)(void *arg, const char *uid, time_t first_seen), void *arg)
{
	size_t i;

	for (i = 0; i < st->tab.cap; i++)
		if (st->tab.slots[i].uid != NULL)
			fn(arg, st->tab.slots[i].uid, st->tab.slots[i].when);
}

size_t
state_pending_count(const struct state *st)
{
	return st->npending;
}

void
state_foreach_pending(const struct state *st,
    void (*fn)(
	void *arg, const char *uid, const char *tmpname, const char *finalname),
    void *arg)
{
	const struct slot *s;
	size_t i;

	for (i = 0; i < st->tab.cap && st->npending > 0; i++) {
		s = &st->tab.slots[i];
		if (s->uid != NULL && s->names != NULL)
			fn(arg, s->uid, s->names,
			    s->names + strlen(s->names) + 1);
	}
}

bool
state_is_pending_tmp(const struct state *st, const char *tmpname)
{
	const struct slot *s;
	size_t i;

	/* Usually none: then no scan of a table of many UIDs. */
	for (i = 0; i < st->tab.cap && st->npending > 0; i++) {
		s = &st->tab.slots[i];
		if (s->uid != NULL && s->names != NULL &&
		    strcmp(s->names, tmpname) == 0)
			return true;
	}
	return false;
}

/* Makes room for MORE bytes; buf_add() within that room cannot fail. */
static int
buf_reserve(struct buf *b, size_t more)
{
	return grow_bytes(&b->data, &b->cap, b->len, more, 256);
}

static void
buf_add(struct buf *b, const char *data, size_t len)
{
	memcpy(b->data + b->len, data, len);
	b->len += len;
}

/*
 * Appends the record of S: "+ <first_seen> <uid>\n", or if pending
 * "> <first_seen> <uid> <tmp> <final>\n", then its size record if its
 * size is known. Room for SLOT_RECORDS_MAX must be there.
 */
static void
buf_add_record(struct buf *b, const struct slot *s)
{
	int n;

	if (s->names == NULL)
		n = snprintf(b->data + b->len, b->cap - b->len, "+ %lld %s\n",
		    (long long)s->when, s->uid);
	else
		n = snprintf(b->data + b->len, b->cap - b->len,
		    "> %lld %s %s %s\n", (long long)s->when, s->uid, s->names,
		    s->names + strlen(s->names) + 1);
	b->len += (size_t)n;
	if (s->size != SIZE_UNKNOWN)
		buf_add_size(b, s);
}

/* Appends "# <uid> <size>\n"; room for SIZE_RECORD_MAX must be there. */
static void
buf_add_size(struct buf *b, const struct slot *s)
{
	int n;

	n = snprintf(b->data + b->len, b->cap - b->len, "# %s %llu\n", s->uid,
	    (unsigned long long)s->size);
	b->len += (size_t)n;
}

/*
 * Appends the strike record of S: "! <last> <uid> <count>\n". Room for
 * RECORD_MAX must be there.
 */
static void
buf_add_strike(struct buf *b, const struct slot *s)
{
	int n;

	n = snprintf(b->data + b->len, b->cap - b->len, "! %lld %s %u\n",
	    (long long)s->when, s->uid, s->strikes);
	b->len += (size_t)n;
}

/* Appends "<kind> <uid>\n"; room for it must be there. */
static void
buf_add_uid_record(struct buf *b, char kind, const char *uid)
{
	char head[2] = {kind, ' '};

	buf_add(b, head, 2);
	buf_add(b, uid, strlen(uid));
	buf_add(b, "\n", 1);
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))

static void
sip_round(uint64_t v[4])
{
	v[0] += v[1];
	v[1] = ROTL(v[1], 13) ^ v[0];
	v[0] = ROTL(v[0], 32);
	v[2] += v[3];
	v[3] = ROTL(v[3], 16) ^ v[2];
	v[0] += v[3];
	v[3] = ROTL(v[3], 21) ^ v[0];
	v[2] += v[1];
	v[1] = ROTL(v[1], 17) ^ v[2];
	v[2] = ROTL(v[2], 32);
}

/*
 * SipHash-1-3 of S under KEY. UIDs come from the server: with a keyed
 * hash a hostile server cannot choose UIDs that all collide and turn each
 * lookup into a scan of the table.
 */
static uint64_t
siphash13(const uint64_t key[2], const char *s, size_t len)
{
	uint64_t v[4] = {key[0] ^ 0x736f6d6570736575ULL,
	    key[1] ^ 0x646f72616e646f6dULL, key[0] ^ 0x6c7967656e657261ULL,
	    key[1] ^ 0x7465646279746573ULL};
	const unsigned char *p = (const unsigned char *)s;
	uint64_t m;
	size_t i, j;

	for (i = 0; i + 8 <= len; i += 8) {
		for (m = 0, j = 0; j < 8; j++)
			m |= (uint64_t)p[i + j] << (8 * j);
		v[3] ^= m;
		sip_round(v);
		v[0] ^= m;
	}
	for (m = (uint64_t)len << 56, j = 0; i + j < len; j++)
		m |= (uint64_t)p[i + j] << (8 * j);
	v[3] ^= m;
	sip_round(v);
	v[0] ^= m;
	v[2] ^= 0xff;
	sip_round(v);
	sip_round(v);
	sip_round(v);
	return v[0] ^ v[1] ^ v[2] ^ v[3];
}

static void
table_init_key(struct table *t)
{
	if (getrandom(t->key, sizeof(t->key), GRND_NONBLOCK) ==
	    (ssize_t)sizeof(t->key))
		return;
	/* Early boot without entropy: weaker, but the table still works. */
	t->key[0] = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	t->key[1] = (uint64_t)(uintptr_t)t ^ 0x9e3779b97f4a7c15ULL;
}

/* Grows the table so that MORE entries fit within the maximum load. */
static int
table_reserve(struct table *t, size_t more)
{
	size_t cap = t->cap > 0 ? t->cap : TABLE_MIN_CAP, i;
	struct slot *old = t->slots, *slots;
	size_t oldcap = t->cap;

	while ((t->count + more) * TABLE_LOAD_DENOM > cap * TABLE_LOAD_NUM) {
		if (cap > SIZE_MAX / 2 / sizeof(*slots)) {
			errno = ENOMEM;
			return -1;
		}
		cap *= 2;
	}
	if (cap == t->cap)
		return 0;
	if ((slots = calloc(cap, sizeof(*slots))) == NULL)
		return -1;
	t->slots = slots;
	t->cap = cap;
	t->count = 0;
	for (i = 0; i < oldcap; i++)
		if (old[i].uid != NULL)
			table_put(t, &old[i]);
	free(old);
	return 0;
}

static struct slot *
table_find(const struct table *t, const char *uid, uint64_t hash)
{
	size_t mask = t->cap - 1, i;

	if (t->cap == 0)
		return NULL;
	for (i = hash & mask; t->slots[i].uid != NULL; i = (i + 1) & mask)
		if (t->slots[i].hash == hash &&
		    strcmp(t->slots[i].uid, uid) == 0)
			return &t->slots[i];
	return NULL;
}

/*
 * Inserts a copy of S, taking ownership of its strings; room must have
 * been reserved. Returns the slot, valid until the table next changes.
 */
static struct slot *
table_put(struct table *t, const struct slot *s)
{
	size_t mask = t->cap - 1, i;

	for (i = s->hash & mask; t->slots[i].uid != NULL; i = (i + 1) & mask)
		;
	t->slots[i] = *s;
	t->count++;
	return &t->slots[i];
}

/*
 * Removes slot S and shifts later entries of its probe run back, so that
 * the table needs no tombstones and lookups stay short after many forgets.
 */
static void
table_remove(struct table *t, struct slot *s)
{
	size_t mask = t->cap - 1, hole = (size_t)(s - t->slots), i, home;

	free(s->uid);
	if (!t->counts)
		free(s->names);
	for (i = (hole + 1) & mask; t->slots[i].uid != NULL;
	     i = (i + 1) & mask) {
		home = t->slots[i].hash & mask;
		/* Entry i may move into the hole unless its home lies
		 * cyclically after the hole, up to i. */
		if (((i - home) & mask) >= ((i - hole) & mask)) {
			t->slots[hole] = t->slots[i];
			hole = i;
		}
	}
	/* The last entry moved leaves its copy here: clear all of it. */
	t->slots[hole] = (struct slot){0};
	t->count--;
}

static void
table_free(struct table *t)
{
	size_t i;

	for (i = 0; i < t->cap; i++) {
		free(t->slots[i].uid);
		if (!t->counts)
			free(t->slots[i].names);
	}
	free(t->slots);
	t->slots = NULL;
	t->cap = t->count = 0;
}

/* ---- moving a state to another instance ---- */

/* Marks ST exported (ACCOUNT.moved), durably. */
static int
mark_moved(struct state *st, char *errbuf, size_t errlen)
{
	char name[NAME_MAX + 1], line[64];
	int fd, n, saved;

	file_name(name, sizeof(name), st, SUFFIX_MOVED);
	n = snprintf(
	    line, sizeof(line), "exported %lld\n", (long long)time(NULL));
	fd = openat(
	    st->dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd != -1 &&
	    (fsutil_write_all(fd, line, (size_t)n) == -1 || fsync(fd) == -1)) {
		saved = errno;
		close(fd);
		errno = saved;
		fd = -1;
	}
	if (fd == -1 || close(fd) == -1 || fsync(st->dirfd) == -1) {
		set_err(errbuf, errlen, "cannot write %s/%s: %s", st->dir, name,
		    strerror(errno));
		return -1;
	}
	return 0;
}

int
state_export(const char *dir, const char *account, const char *host,
    unsigned port, const char *user, int fd, size_t *count, char *errbuf,
    size_t errlen)
{
	struct state *st;
	struct stat sb;
	off_t total;
	int rc = -1;

	st = open_mailbox(dir, account, host, port, user, true, errbuf, errlen);
	if (st == NULL)
		return -1;
	if (st->npending > 0) {
		set_err(errbuf, errlen,
		    "state of account %s holds %zu deliveries a crash interrupted: a poll here completes them (popfetchd --once -a %s); export after it",
		    account, st->npending, account);
		errno = EBUSY;
		goto out;
	}
	/* First, so that no failure below leaves it polled in two places. */
	if (mark_moved(st, errbuf, errlen) == -1)
		goto out;
	if (write_journal(st, fd, &total) == -1 ||
	    (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && fsync(fd) == -1)) {
		set_err(errbuf, errlen, "writing the state of account %s: %s",
		    account, strerror(errno));
		goto out;
	}
	*count = st->tab.count;
	rc = 0;
out:
	state_close(&st);
	return rc;
}

/* Reads FD to its end into OUT, up to IMPORT_MAX bytes. */
static int
read_stream(int fd, struct buf *out)
{
	ssize_t n;

	for (;;) {
		if (out->len == out->cap &&
		    (out->len >= IMPORT_MAX ||
			buf_reserve(out, out->cap > 0 ? out->cap : 65536) ==
			    -1)) {
			if (out->len >= IMPORT_MAX)
				errno = EFBIG;
			return -1;
		}
		n = read(fd, out->data + out->len, out->cap - out->len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return (int)n;
		out->len += (size_t)n;
	}
}

/*
 * Replaces the (empty or exported) content of ST by the journal DATA,
 * strictly checked: a transfer that lost or changed bytes is refused.
 */
static int
take_journal(
    struct state *st, const struct buf *data, char *errbuf, size_t errlen)
{
	unsigned long version;
	size_t hlen;

	table_free(&st->tab);
	table_free(&st->strikes);
	st->npending = st->nsized = st->dead = 0;
	st->out.len = 0;
	st->notice[0] = '\0';
	switch (check_header(st, data->data, data->len, &hlen, &version)) {
	case HEADER_OK:
	case HEADER_ADOPT:
		break;
	case HEADER_OTHER:
		set_err(errbuf, errlen,
		    "the state given is of another mailbox than account %s's (%s at %s, port %u)",
		    st->account, st->user, st->host, st->port);
		errno = EINVAL;
		return -1;
	case HEADER_NEWER:
		set_err(errbuf, errlen,
		    "the state given for account %s has format version %lu; this popfetchd reads version %d",
		    st->account, version, FORMAT_VERSION);
		errno = ENOTSUP;
		return -1;
	default:
		set_err(errbuf, errlen,
		    "the state given for account %s is not a popfetchd state (no header)",
		    st->account);
		errno = EINVAL;
		return -1;
	}
	if (data->data[data->len - 1] != '\n' ||
	    parse_records(st, data->data, hlen, data->len) == -1 ||
	    st->notice[0] != '\0' || st->npending > 0) {
		set_err(errbuf, errlen,
		    "the state given for account %s is damaged (%s): nothing imported",
		    st->account,
		    st->npending > 0	    ? "deliveries pending"
		    : st->notice[0] != '\0' ? st->notice
					    : "cut short");
		errno = EINVAL;
		return -1;
	}
	return 0;
}

int
state_import(const char *dir, const char *account, const char *host,
    unsigned port, const char *user, int fd, size_t *count, char *errbuf,
    size_t errlen)
{
	char name[NAME_MAX + 1];
	struct buf data = {0};
	struct state *st;
	int rc = -1;

	if ((rc = read_stream(fd, &data)) == -1 || data.len == 0) {
		if (rc == -1)
			set_err(errbuf, errlen,
			    "reading the state for account %s: %s", account,
			    strerror(errno));
		else {
			set_err(errbuf, errlen,
			    "reading the state for account %s: nothing given",
			    account);
			errno = EINVAL;
		}
		free(data.data);
		return -1;
	}
	rc = -1;
	st = open_mailbox(dir, account, host, port, user, true, errbuf, errlen);
	if (st == NULL)
		goto out;
	file_name(name, sizeof(name), st, SUFFIX_MOVED);
	if (faccessat(st->dirfd, name, F_OK, 0) == -1 &&
	    (st->tab.count > 0 || st->strikes.count > 0)) {
		set_err(errbuf, errlen,
		    "account %s has a state here already (%zu UIDs): it is polled here, and importing would replace what it knows; remove %s/%s.state first to replace it anyway",
		    account, st->tab.count, dir, account);
		errno = EEXIST;
		goto out;
	}
	if (take_journal(st, &data, errbuf, errlen) == -1)
		goto out;
	if (write_snapshot(st) == -1 ||
	    (unlinkat(st->dirfd, name, 0) == -1 && errno != ENOENT) ||
	    fsync(st->dirfd) == -1) {
		set_err(errbuf, errlen,
		    "cannot write the state of account %s in %s: %s", account,
		    dir, strerror(errno));
		goto out;
	}
	*count = st->tab.count;
	rc = 0;
out:
	free(data.data);
	state_close(&st);
	return rc;
}
