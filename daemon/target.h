/*
 * target: delivery targets that take a message over a connection or a
 * pipe, asynchronously on the loop (LMTP now; the Maildir is written by
 * deliver.c). A target takes one message at a time as a byte stream and
 * answers each message it began exactly once, with a verdict:
 *
 *	TARGET_DELIVERED   it has the message durably (LMTP: 250 for the
 *	                   recipient after the data)
 *	TARGET_TEMPFAIL    not taken, try again later (LMTP 4xx, the
 *	                   connection lost or timed out before the answer)
 *	TARGET_PERMFAIL    refused for good (LMTP 5xx): the message gets a
 *	                   strike and is quarantined per plan.h, never
 *	                   deleted on the POP3 server
 *
 * The caller streams with back-pressure: it stops feeding while
 * target_busy() is true (its output is over TARGET_OUT_HIGH, or the
 * target waits for a go-ahead such as LMTP's 354) and resumes when the
 * READY callback comes. Only the message being fed and the one before it
 * (awaiting its verdict) are held, never more: memory stays bounded
 * whatever the message sizes.
 *
 * Also here, pure and exposed for tests: the byte encoder (line ends and
 * dot-stuffing) and the stable message identifier header.
 */
#ifndef POPFETCHD_TARGET_H
#define POPFETCHD_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evdns_base;
struct target;

/*
 * Output held for the target before the caller is told to wait: enough
 * for a socket's send buffer to stay full, small against the POP3 side's
 * own read buffer.
 */
#define TARGET_OUT_HIGH (256 * 1024)

enum target_verdict {
	TARGET_DELIVERED,
	TARGET_TEMPFAIL,
	TARGET_PERMFAIL,
};

/*
 * The verdict on the message TAG; WHY is the target's reply or a reason
 * (valid during the call). Called on the loop, never from inside a
 * target_* call; the callback may call target_* functions, but not
 * target_free().
 */
typedef void (*target_done_fn)(
    void *arg, unsigned long tag, enum target_verdict v, const char *why);
/* The target can take more (target_busy() turned false). */
typedef void (*target_ready_fn)(void *arg);

struct target_cbs {
	target_done_fn done;
	target_ready_fn ready;
	void *arg;
};

/* How to reach an LMTP server and for whom. */
struct target_lmtp_conf {
	const char *address; /* "/path/to/socket" or "host:port" */
	const char *recipient;
	const char *sender;  /* reverse path, "" for <> */
	const char *lhlo;    /* our name in LHLO */
	unsigned timeout;    /* seconds: connect, every reply awaited */
	const char *account; /* for the log */
};

/*
 * An LMTP target; connects when the first message begins, and again
 * after a connection was lost. DNS (for host:port) goes through DNS.
 * NULL when out of memory.
 */
struct target *target_lmtp_new(struct event_base *base, struct evdns_base *dns,
    const struct target_lmtp_conf *c, const struct target_cbs *cbs);

/*
 * Starts the message TAG. Only when no message is being fed (the last
 * one ended or aborted). 0, or -1 with errno set (EBUSY, ENOMEM).
 */
int target_begin(struct target *t, unsigned long tag);

/*
 * Feeds bytes of the message begun: lines ending in CRLF or LF, as POP3
 * gives them after dot-unstuffing. 0, or -1 with errno set.
 */
int target_write(struct target *t, const char *data, size_t len);

/*
 * Ends the message begun: from now on the target may deliver it, and
 * its verdict follows. 0, or -1 with errno set.
 */
int target_end(struct target *t);

/*
 * Drops the message begun without delivering it (it did not arrive
 * whole): no verdict comes for it. A target that cannot take a message
 * back otherwise closes its connection, after the verdicts of the
 * messages before it are in.
 */
void target_abort(struct target *t);

/*
 * Whether the caller should stop feeding; if so, the READY callback
 * comes once it may go on (only then: a caller that did not ask is not
 * called).
 */
bool target_busy(struct target *t);

/* Messages begun whose verdict has not come yet. */
size_t target_pending(const struct target *t);

/*
 * Ends the target's connection politely (LMTP QUIT) once every verdict
 * is in; messages without one get TARGET_TEMPFAIL if the connection
 * fails meanwhile.
 */
void target_close(struct target *t);

/*
 * Frees T at once: messages without a verdict get none (the caller
 * treats them as not delivered). Sets *T to NULL.
 */
void target_free(struct target **t);

/* ---- pure helpers, exposed for tests ---- */

/*
 * Turns message bytes into what a target takes: line ends made CRLF
 * (dot-stuffed, for SMTP and LMTP) or LF (for a local command), a last
 * line without its end completed. A CR not followed by LF is data.
 */
struct target_enc {
	bool crlf;	 /* CRLF out (else LF) */
	bool stuff;	 /* a '.' starting a line is doubled */
	bool line_start; /* the next byte starts a line */
	bool cr;	 /* a CR was the last byte seen, its LF not yet */
};

/* A fresh encoder. */
void target_enc_init(struct target_enc *e, bool crlf, bool stuff);

/*
 * Encodes LEN bytes of DATA, calling OUT(ARG, BYTES, N) for the pieces;
 * returns 0, or the first non-zero OUT returned.
 */
int target_enc_feed(struct target_enc *e, const char *data, size_t len,
    int (*out)(void *arg, const char *bytes, size_t n), void *arg);

/* Completes the last line if it has no end. */
int target_enc_finish(struct target_enc *e,
    int (*out)(void *arg, const char *bytes, size_t n), void *arg);

/* Room for target_message_id()'s line, with its NUL. */
#define TARGET_ID_SIZE 80

/*
 * Writes the header line "X-Popfetchd-Id: <HEX@popfetchd>" and its LF into
 * BUF: hex is the first 128 bits of SHA-256 over the account name, the
 * server (host, port), the POP3 user and the UID, so the same message
 * from the same mailbox carries the same identifier in every run (what a
 * Sieve "duplicate" test keys on). Returns its length, or -1.
 */
int target_message_id(char *buf, size_t len, const char *account,
    const char *host, unsigned port, const char *user, const char *uid);

/*
 * An LMTP/SMTP reply line: its code (200-599) in *CODE, and whether it is
 * the last line of the reply ("250 " or "250" alone, not "250-") in
 * *LAST. -1 if LINE (LEN bytes, no line end) is not a reply line.
 */
int target_reply_line(const char *line, size_t len, int *code, bool *last);

/* The verdict a final reply code gives (2xx, 4xx, 5xx; else TEMPFAIL). */
enum target_verdict target_verdict_of(int code);

/* "delivered", "temporary failure", "permanent failure". */
const char *target_verdict_name(enum target_verdict v);

#endif
