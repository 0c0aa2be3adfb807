/*
 * session: one poll of one account. Drives the POP3 engine over the
 * transport and keeps the order the invariant needs: message durable in
 * new/, then its UID durable in the state, then DELE, and deletions count
 * only after +OK to QUIT.
 */
#ifndef POPFETCHD_SESSION_H
#define POPFETCHD_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sclass.h"

struct event_base;
struct evdns_base;
struct conf;
struct account;
struct session;
struct worker;

struct session_stats {
	size_t listed;	/* messages on the server */
	size_t fetched; /* delivered into the Maildir */
	uint64_t bytes; /* bytes delivered */
	size_t deleted; /* deletions committed by QUIT */
	size_t left;	/* left on the server by policy */
	size_t failed;	/* messages the server would not give */
	double secs;
	/*
	 * Of secs, the time the session left what the server sent unread
	 * because delivery had not caught up: the Maildir's writer or its
	 * batch's sync, or the LMTP server or MDA. High on a slow disk.
	 */
	double held;
	/*
	 * LOGIN-DELAY the server announced in CAPA (RFC 2449): seconds it
	 * wants between two logins of this account; -1 if none.
	 */
	long login_delay;
	bool interrupted; /* ended early by session_stop() */
	/*
	 * The file system type for which the Maildir's batch sync fell
	 * back to an fsync per file (a static string), or NULL.
	 */
	const char *sync_fallback;
};

/*
 * Called once per session, from a loop turn of its own (never from inside
 * session_start or a transport callback), so it may free the session.
 * STATS and MSG (a one-line reason, "" on success) are valid during the
 * call only.
 */
typedef void (*session_done_cb)(void *arg, enum session_class cls,
    const struct session_stats *stats, const char *msg);

/* What a session is for. */
enum session_mode {
	SESSION_FETCH,	    /* deliver, and delete unless keep */
	SESSION_SERVERINFO, /* log in, report, STAT, QUIT: nothing changes;
			       without a secret, QUIT after CAPA */
	SESSION_LIST,	    /* log in, report each message (TOP n 0), QUIT */
};

enum session_info_kind {
	SI_GREETING, /* text */
	SI_TLS,	     /* text (version, cipher), pin ("sha256/BASE64") */
	SI_CERT,    /* msgno (0: the server's own), subject, issuer, validity */
	SI_CAPA,    /* text: one capability line; before_tls */
	SI_NOLOGIN, /* text: why --serverinfo did not log in (no secret) */
	SI_LOGIN,   /* text: the mechanism that logged in */
	SI_STAT,    /* count, size */
	SI_MESSAGE, /* msgno, size, uid, from, date, subj */
};

/* What a probing session learns; strings valid during the callback. */
struct session_info {
	enum session_info_kind kind;
	const char *text;
	const char *pin, *subject, *issuer, *not_before, *not_after;
	bool before_tls; /* SI_CAPA: said in plain text, before STLS */
	unsigned long count, msgno;
	uint64_t size;
	const char *uid, *from, *date, *subj;
};

typedef void (*session_info_cb)(void *arg, const struct session_info *info);

/*
 * Starts a session in MODE; INFO (may be NULL for SESSION_FETCH) receives
 * what it learns. A probing session opens neither the Maildir nor the
 * state and never sends DELE. Otherwise as session_start(), which is the
 * one to use for SESSION_FETCH.
 */
struct session *session_start_mode(struct event_base *base,
    struct evdns_base *dns, const struct conf *conf, const struct account *a,
    enum session_mode mode, session_info_cb info, session_done_cb cb,
    void *arg);

/*
 * Starts polling ACCOUNT (which, like CONF, must outlive the session).
 * The session's disk work (opening the Maildir and state, making batches
 * durable, the last commit) runs on WORKER, which must outlive it too.
 * Returns NULL only when out of memory.
 */
struct session *session_start(struct event_base *base, struct evdns_base *dns,
    struct worker *worker, const struct conf *conf, const struct account *a,
    session_done_cb cb, void *arg);

/*
 * FN(ARG) is called once S's connection is closed for good while the
 * session itself goes on with local work (the last state commit): the
 * connection no longer counts against a cap. Not called when the done
 * callback comes first; never from inside a call into the session.
 */
void session_on_closed(struct session *s, void (*fn)(void *arg));

/*
 * Asks a running session to end soon without loss: no new message is
 * asked for; those already asked for (the pipelining window) are
 * delivered, what is durable is deleted, and the session QUITs. Before
 * login it ends at once. The done callback follows as usual, with
 * stats->interrupted set.
 */
void session_stop(struct session *s);

/* How far a running poll is, for a progress display. */
enum session_phase {
	SESSION_PH_LOGIN,   /* connecting, TLS, logging in */
	SESSION_PH_LISTING, /* UIDL and LIST, the plan */
	SESSION_PH_FETCH,   /* RETR (and DELE) as planned */
	SESSION_PH_TOP,	    /* --list: TOP n 0 for each message */
	SESSION_PH_END,	    /* QUIT, the last commit */
};

struct session_progress {
	enum session_phase phase;
	/*
	 * Messages answered of those planned (RETR, or TOP for --list);
	 * both 0 until the plan is made.
	 */
	size_t done, total;
	/*
	 * Bytes received of those planned, in LIST's measure (the message
	 * in hand counts as far as it came); 0 for --list.
	 */
	uint64_t bytes, total_bytes;
	double secs; /* since the session started */
};

/*
 * Fills P with how far S is. Costs a walk over the listed messages: meant
 * for a display redrawn a few times a second, not for every event.
 */
void session_progress(const struct session *s, struct session_progress *p);

/*
 * Tears down a session (finished or not) and sets *S to NULL. A session
 * whose disk work does not return (a hung fsync) is only cut off from
 * its server, without QUIT, so nothing more is deleted; the rest stays
 * allocated for the worker thread, and the process must exit without
 * freeing the configuration or the worker (see session_orphans()).
 */
void session_free(struct session **s);

/* How many sessions session_free() left to a disk that did not return. */
size_t session_orphans(void);

#endif
