/*
 * migrate: taking over from fetchmail, mpop and getmail6. Two jobs:
 *
 * - Reading the old tool's record of the messages it fetched (its seen
 *   UIDs) so that an account's state can start with them, and nothing
 *   left on the server is fetched twice (migrate.c parses, pure;
 *   migrate_import.c writes the state).
 * - Turning the old tool's configuration into a popfetchd one
 *   (migrate_conf.c).
 *
 * The files read, as their tools write them:
 *
 * mpop, the UIDLS file (~/.mpop_uidls/USER_at_HOST by default): lines
 *   starting with '#' are comments; a line " COUNT HOST USER" (one
 *   leading space) starts a list of COUNT UIDs, one per line. No port,
 *   no times.
 * fetchmail, .fetchids: one "USER@HOST UID" per line, HOST being the
 *   server's name as polled; the user may itself hold '@' (the last one
 *   before the first blank after an '@' ends it). No port, no times.
 * getmail6, oldmail-HOST-PORT-USER (one file per mailbox, in the getmail
 *   directory; '/', ':', ';', '<', '>' and '|' in the name were replaced
 *   by '-'): one "UID NUL SECONDS" per line, SECONDS being when getmail
 *   first saw the message (decimal, since the epoch).
 *
 * Every UID must pass the rule of uid.h; a line that breaks a rule is
 * reported with FILE:LINE and skipped, never guessed at.
 */
#ifndef POPFETCHD_MIGRATE_H
#define POPFETCHD_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <time.h>

struct conf;

enum migrate_format {
	MIGRATE_MPOP,
	MIGRATE_FETCHMAIL,
	MIGRATE_GETMAIL,
};

/*
 * Longest line read from a seen-UIDs file: a UID is at most 70 bytes,
 * and a host name at most 253; a user name fits in the rest many times
 * over. A longer line is reported and skipped.
 */
#define MIGRATE_LINE_MAX 1024

/* One UID the old tool had fetched from a mailbox. */
struct migrate_record {
	const char *host; /* as the file names it */
	unsigned port;	  /* 0: the file does not say */
	const char *user;
	const char *uid;
	/* getmail6: the file name after "oldmail-", else NULL. */
	const char *key;
	time_t first_seen; /* 0: the file does not say */
	int line;
};

/*
 * Where a parser sends what it finds. RECORD gets each record (its
 * strings valid during the call only); ERROR each complaint, as one line
 * "NAME:LINE: message" (or "NAME: message" about the file as a whole).
 */
struct migrate_sink {
	void (*record)(void *arg, const struct migrate_record *r);
	void (*error)(void *arg, const char *msg);
	void *arg;
};

/*
 * The format called NAME ("mpop", "fetchmail", "getmail"), or -1 with
 * nothing set if none is.
 */
int migrate_format_parse(const char *name, enum migrate_format *fmt);

/* The name of FMT, as migrate_format_parse() takes it. */
const char *migrate_format_name(enum migrate_format fmt);

/*
 * Parses the LEN bytes at TEXT, a seen-UIDs file of format FMT called
 * PATH (for getmail6 its last component names the mailbox). Reads
 * nothing else. Returns the number of errors reported.
 */
int migrate_parse(enum migrate_format fmt, const char *path, const char *text,
    size_t len, const struct migrate_sink *sink);

/*
 * Whether R, read from a FMT file, belongs to the mailbox of USER at
 * HOST, PORT, as the old tool compared: mpop, host and user exactly;
 * fetchmail, both without regard to case; getmail6, the file's name
 * (R->key) as getmail6 would have made it for HOST, PORT and USER, where
 * ports 110 and 995 count as one mailbox (as in the state, state.h). A
 * trailing dot on a host name does not count.
 */
bool migrate_match(enum migrate_format fmt, const struct migrate_record *r,
    const char *host, unsigned port, const char *user);

/* What popfetchd --import-uids was asked to do. */
struct migrate_import {
	enum migrate_format fmt;
	const char *path;
	char *const *only; /* the accounts to consider (-a); all if none */
	size_t nonly;
	/* Stand for the account's host and user when matching (one -a). */
	const char *match_host;
	const char *match_user;
	bool dry_run; /* print what would be done, change nothing */
};

/*
 * Imports the seen UIDs of O->path into the state of each account of
 * CONF they belong to (migrate_match()), through the same journal commit
 * as a poll: durable when this returns, refused while another process
 * (a poll of the daemon) holds the account's state. Reports on OUT, one
 * line per account and per group of records that match no account;
 * errors on ERR. Returns a sysexits.h code: EX_OK; EX_DATAERR if lines
 * were skipped (the rest is imported) or nothing matched; EX_TEMPFAIL if
 * a state was locked; EX_IOERR, EX_NOINPUT, EX_CANTCREAT as usual.
 */
int migrate_import_run(const struct conf *conf, const struct migrate_import *o,
    FILE *out, FILE *err);

/*
 * Reads the LEN bytes at TEXT, a configuration of FMT (an mpoprc, a
 * getmailrc, a fetchmailrc) called PATH, and writes to OUT a popfetchd
 * configuration doing the same, as far as popfetchd can: every setting
 * without an equivalent becomes a comment naming it, an inline password
 * a password_file with the command that creates it. Complaints about
 * the input go to ERR as "PATH:LINE: message". Returns the number of
 * accounts written, or -1 if there were none to write.
 */
int migrate_convert(enum migrate_format fmt, const char *path, const char *text,
    size_t len, FILE *out, FILE *err);

/*
 * Reads all of PATH into *TEXT (NUL-terminated, freed by the caller) and
 * *LEN. -1 with errno set on failure (EFBIG: larger than the cap).
 */
int migrate_read_file(const char *path, char **text, size_t *len);

#endif
