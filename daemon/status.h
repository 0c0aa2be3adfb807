/*
 * status: what the daemon says about each account without a log being
 * read. The scheduler keeps one record per account (struct
 * status_account: last poll, last failure, counters since start) and
 * fills in its state when asked; this module turns the records into the
 * STATUS= line, a JSON document (the answer on the --status socket), a
 * table for people (from that JSON, in the --status client) and the
 * Prometheus text exposition format (the metrics file).
 *
 * Five files, one contract: status.c (the record, STATUS= and the JSON),
 * status_table.c (the table) and status_prom.c (the exposition format),
 * pure, linking alone into tests/test_status.c; status_server.c (the
 * --status socket, both ends) and status_metrics.c (the metrics file).
 *
 * Text a server chose (a failure's message) is kept as it came and
 * escaped as log_escape() does in every form made here; the STATUS= line
 * is left to notify_status(), which escapes it itself.
 */
#ifndef POPFETCHD_STATUS_H
#define POPFETCHD_STATUS_H

#include <sys/types.h> /* ssize_t */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "session.h" /* enum session_class, struct session_stats */

struct event_base;
struct json_object;

/* A failure's message is kept up to this many bytes (as sched.c cuts). */
#define STATUS_MSG_MAX 256
/* Account names are at most CONF_NAME_MAX (64) bytes. */
#define STATUS_NAME_MAX 64

/* Where an account is, as the scheduler sees it. */
enum status_state {
	STATUS_IDLE,	/* nothing scheduled: --once done, or stopping */
	STATUS_QUEUED,	/* due, waiting for a connection under the caps */
	STATUS_POLLING, /* a poll runs */
	STATUS_WAITING, /* the last poll went well (or none yet): next one */
	STATUS_BACKOFF, /* the last poll failed: retried later, by class */
	STATUS_PAUSED,	/* a configuration error: not until a reload */
	STATUS_NSTATES
};

/* One finished poll. */
struct status_poll {
	time_t start, end; /* wall clock; end 0: no poll finished yet */
	enum session_class cls;
	size_t listed, fetched, deleted, left, failed;
	uint64_t bytes;
	double secs;
	double held; /* of secs, reading held for delivery (session.h) */
};

struct status_account {
	/*
	 * Filled by whoever reports the record (the scheduler), not kept
	 * by the status_poll_* functions: the name (borrowed), the state,
	 * the next poll (wall clock, 0: none scheduled) and the number of
	 * polls in a row that ended like the last one.
	 */
	const char *name;
	enum status_state state;
	time_t next;
	unsigned streak;

	time_t polling_since; /* the running poll's start; 0: none */
	struct status_poll last;
	/* The last failure; FAILING: the last poll failed (unresolved). */
	bool failing;
	enum session_class fail_cls;
	char fail_msg[STATUS_MSG_MAX]; /* as it came, NUL-terminated */
	time_t fail_time;	       /* 0: never failed */
	time_t last_ok;		       /* 0: never succeeded */
	/* OAuth2 accounts: the token times (0: unknown), if TOKEN_KNOWN. */
	bool token_known;
	time_t token_obtained, token_expires, access_expires;
	/* Since the daemon started (a reload keeps them). */
	unsigned long long polls, failures[SC_COUNT], fetched, bytes, deleted;
};

/* "polling", "backing off", ...; "?" if out of range. */
const char *status_state_name(enum status_state s);
/* The same as one word for JSON and metric labels ("backoff"). */
const char *status_state_key(enum status_state s);

/* A poll of R starts at NOW (seconds since the epoch). */
void status_poll_started(struct status_account *r, time_t now);

/*
 * A poll of R ended at NOW in CLS with the counts of ST; MSG is the
 * one-line reason ("" on success; then the class name stands for it).
 * A success resolves the last failure (which stays on record).
 */
void status_poll_ended(struct status_account *r, enum session_class cls,
    const struct session_stats *st, const char *msg, time_t now);

/* The sum of the records, for STATUS= and the JSON summary. */
struct status_tally {
	size_t accounts;
	size_t by_state[STATUS_NSTATES];
	/* The most recent unresolved failure (an account failing now). */
	time_t fail_time; /* 0: none */
	enum session_class fail_cls;
	char fail_acct[STATUS_NAME_MAX + 1];
	char fail_msg[STATUS_MSG_MAX];
};

/* Counts R into T (which starts zeroed). */
void status_tally_add(struct status_tally *t, const struct status_account *r);

/*
 * The STATUS= line into BUF (LEN bytes): the accounts by state, DELIVERED
 * messages since start, and the most recent unresolved failure with its
 * account and local time (NOW tells whether a date is needed). The
 * failure's message is not escaped here (notify_status() does).
 */
void status_tally_line(const struct status_tally *t, bool stopping,
    unsigned long long delivered, time_t now, char *buf, size_t len);

/*
 * The JSON document --status answers with: the daemon (version, pid,
 * START), a summary by state, and the N records of R in order. NOW is
 * its time. The caller puts it (out of memory is fatal here).
 */
struct json_object *status_json(
    const struct status_account *r, size_t n, time_t start, time_t now);

/*
 * The same document as text, in pieces, so that the daemon can write a
 * long one a few accounts per loop turn: status_json_head() (everything
 * up to the accounts' opening bracket), status_json_accounts() for each
 * run of accounts, R[FROM] to R[FROM + COUNT - 1] (with a comma before
 * each but R[0]), then STATUS_JSON_TAIL. Each piece is a string the
 * caller frees.
 */
char *status_json_head(
    const struct status_account *r, size_t n, time_t start, time_t now);
char *status_json_accounts(
    const struct status_account *r, size_t from, size_t count);
#define STATUS_JSON_TAIL "]}\n"

/*
 * What --status prints, from TEXT (LEN bytes, NUL-terminated): the
 * daemon's answer as status_json_head() etc. put it together, maybe after
 * a trip through a socket. Into F: with JSON, the document again, indented;
 * otherwise the table, one line per account, then one line per failing
 * account saying why. Times are shown relative to NOW. ONLY (NONLY names;
 * 0: every account): just those, in detail or in the document. Strings
 * that are not printable ASCII are shown in the table with '?', and
 * escaped in the document.
 *
 * Returns the number of names in ONLY not found (0: all shown), or -1
 * when TEXT is not such an answer (or memory ran out): then F gets
 * nothing.
 */
ssize_t status_print(FILE *f, const char *text, size_t len, bool json,
    time_t now, char *const *only, size_t nonly);

/*
 * The Prometheus text exposition of the N records of R into a string
 * (*LEN bytes, NUL-terminated, the caller frees): counters "_total"
 * since START, gauges of the last poll, timestamps in seconds since the
 * epoch (0: never). SHARD ("K/N", or NULL) labels the daemon's own
 * series, which instances of one file on one host would otherwise
 * repeat (the account series are distinct by their accounts). NULL only
 * when out of memory.
 */
char *status_metrics_text(const struct status_account *r, size_t n,
    time_t start, const char *shard, size_t *len);

/*
 * SRC as a label value of the exposition format into DST (DSTLEN > 0,
 * always NUL-terminated): backslash, double quote and line feed escaped
 * as \\, \" and \n. Returns the length DST would need, as snprintf does.
 */
size_t status_label_escape(char *dst, size_t dstlen, const char *src);

/* --- the source: the scheduler's records, one by one ------------------ */

typedef void (*status_visit_fn)(void *varg, const struct status_account *r);
/* Calls VISIT(VARG, R) for each account, in configuration order. */
typedef void (*status_each_fn)(void *arg, status_visit_fn visit, void *varg);

/*
 * Copies of every record EACH(ARG) visits, into *R (*N of them; the
 * caller frees *R, names included: they are copied too, so the copy
 * outlives a reload). -1 when out of memory.
 */
int status_collect(
    status_each_fn each, void *arg, struct status_account **r, size_t *n);

/* --- status_server.c: the --status socket ------------------------------ */

/*
 * Where the socket is: $RUNTIME_DIRECTORY (its first entry: systemd's
 * RuntimeDirectory=), else /run/popfetchd for root, else
 * $XDG_RUNTIME_DIR/popfetchd; then "/status.sock". -1 (ERR says why)
 * when none of them is set or the path is too long.
 */
int status_socket_path(char *buf, size_t len, char *err, size_t errlen);

struct status_server;

/*
 * Serves the records EACH(ARG) visits on the Unix socket PATH, on BASE:
 * one request line ("status"), one JSON line back, then close. The
 * socket is mode 0600 in a directory made 0700 if missing, and a peer
 * that is neither root nor our own user is turned away. A socket file
 * left by a dead daemon is replaced; one a live daemon answers on is not
 * (NULL, ERR says so). START: when the daemon started.
 */
struct status_server *status_server_new(struct event_base *base,
    const char *path, status_each_fn each, void *arg, time_t start, char *err,
    size_t errlen);

/* Stops serving, drops connected clients, removes the socket file. */
void status_server_free(struct status_server **s);

/*
 * popfetchd --status: asks the daemon at PATH and prints its answer, as
 * JSON (JSON) or as a table, for ONLY (NONLY names; 0: all). Returns a
 * sysexits status: EX_OK, EX_UNAVAILABLE (no daemon answers there),
 * EX_NOPERM (not allowed to), EX_NOUSER (a name it does not have),
 * EX_PROTOCOL (an answer that is not ours).
 */
int status_client(const char *path, bool json, char *const *only, size_t nonly);

/* --- status_metrics.c: the metrics file -------------------------------- */

struct status_metrics;

/*
 * Writes the metrics of the records EACH(ARG) visits to PATH: now, then
 * after status_metrics_changed(), at most once every few seconds. Each
 * file is written whole beside PATH, fsynced and renamed over it, on a
 * thread of its own, so a reader never sees half of one and the loop
 * never waits for the disk. START: when the daemon started; SHARD: as
 * for status_metrics_text() (copied). NULL only when out of memory.
 */
struct status_metrics *status_metrics_new(struct event_base *base,
    const char *path, status_each_fn each, void *arg, time_t start,
    const char *shard);

/* Something changed (a poll ended): write again soon. */
void status_metrics_changed(struct status_metrics *m);

/* Writes a last time (blocking: at exit) and frees *M (sets it NULL). */
void status_metrics_free(struct status_metrics **m);

#endif
