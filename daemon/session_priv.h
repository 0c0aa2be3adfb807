/*
 * The session's private header: what its pieces share. session.c owns the
 * lifecycle (start, stop, the end and its report), session_io.c the
 * transport's events, the engine and the state dispatch, session_login.c
 * TLS, greeting, capabilities and UTF-8 mode, session_auth.c the
 * authentication, session_list.c the listing, the plan and --list,
 * session_fetch.c the fetch window, session_local.c the disk work that
 * makes messages durable before their DELE and the delivery target's
 * verdicts.
 *
 * Every state change happens in a state handler (st_*) or in a function
 * one names; each handler reads the engine event it expects and sends
 * what follows.
 */
#ifndef POPFETCHD_SESSION_PRIV_H
#define POPFETCHD_SESSION_PRIV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "auth.h"
#include "net.h"
#include "plan.h"
#include "pop3.h"
#include "secret.h"
#include "session.h"
#include "spool.h"
#include "target.h"
#include "tls.h"
#include "worker.h"

/*
 * Messages that start a flush: once this many are complete in tmp/ and
 * no flush runs, they are made durable (one syncfs, one state commit,
 * one fsync of new/) and their DELEs follow. Larger batches save syncs;
 * smaller ones let deletions start sooner.
 */
#define SESSION_BATCH 64
/*
 * The most one flush takes, and where receiving pauses while a flush
 * runs. A flush takes what is complete at its start (in whole
 * SESSION_BATCHes: session_local.c flush_takes()), so a sync slower than
 * the next SESSION_BATCH messages' arrival (a journal commit behind
 * other writes, a CPU shared with the server) makes the next batch
 * larger instead of making the network wait: fewer syncs as the disk
 * falls behind, as a journal's group commit does. In B1 of
 * bench/bench.py, reading waited 0.66-0.94 s a run with a cap of
 * SESSION_BATCH and 0.29-0.66 s with this one (the rest waits for the
 * spool's writer, on CPUs the server keeps busy). The bound is on
 * memory, a waiting message's record being about 620 bytes (at most
 * some 640 KiB a session, in the batch syncing and the next), and on
 * what a crash sends to be fetched again; never on safety: nothing of a
 * batch is deleted before its sync has returned.
 */
#define SESSION_BATCH_MAX 512
_Static_assert(SESSION_BATCH_MAX % SESSION_BATCH == 0,
    "a flush takes whole batches (session_local.c flush_takes())");
/*
 * Bytes that also close a batch. While a batch is made durable the next
 * one arrives, so the only disk time not hidden behind the network is
 * the last batch's: bounding a batch's bytes bounds it (ten 20 MiB
 * messages would otherwise all wait for one sync at the end). A batch
 * more costs a journal commit and a directory fsync, little next to
 * this much data. Receiving pauses by count alone (SESSION_BATCH_MAX).
 */
#define SESSION_BATCH_BYTES (16u << 20)
/*
 * Header bytes kept per message for --list: From, Date and Subject sit
 * near the top; a header block larger than this is cut, not refused.
 */
#define SESSION_HEADER_MAX 16384
/*
 * Commands in flight when the server allows pipelining (RFC 2449): deep
 * enough that small messages keep a link with 20 ms or more of round
 * trip busy; below the engine's POP3_QUEUE_MAX.
 */
#define SESSION_WINDOW 256
/*
 * Listed bytes of the RETRs in flight, at most (one RETR always goes):
 * enough to fill a fast link's round trip, small enough that a stop
 * (SIGTERM), which waits for the messages already asked for, is quick.
 */
#define SESSION_INFLIGHT_BYTES (8u << 20)
/*
 * How a server that sends a byte now and then, for ever, is stopped: the
 * transport's idle timeout never fires for it. Every poll is bounded in
 * two parts. Until login, one deadline: SESSION_LOGIN_TIMEOUTS times the
 * account's timeout for connect, TLS, greeting, CAPA, STLS and the SASL
 * exchange together (each normally takes a round trip or two). After
 * login every reply must keep up a minimum rate: from the moment it is
 * awaited (a command sent with none pending, or the previous reply
 * ended), once the account's timeout has passed, at least
 * SESSION_MIN_RATE bytes a second on average. Replies are bounded in
 * length (status lines, listings, message data by LIST's size), so the
 * poll is bounded in time. 1 KiB/s is far below any working link, far
 * above a trickle meant to hold a connection.
 */
#define SESSION_LOGIN_TIMEOUTS 4
#define SESSION_MIN_RATE       1024
/* More data than this for a message LIST sized N is not that message. */
#define SIZE_SLACK(n) ((n) > UINT64_MAX / 4 ? UINT64_MAX : 2 * (n) + 65536)

/*
 * The states, in the order a poll passes them (rate checks rely on the
 * order: everything before S_LISTING is the login). The authentication
 * steps are states of their own, so the trace shows each.
 */
#define SESSION_STATES(X)                  \
	X(S_CONNECT, "connect")            \
	X(S_TLS, "tls")                    \
	X(S_GREETING, "greeting")          \
	X(S_CAPA, "capa")                  \
	X(S_STLS, "stls")                  \
	X(S_UTF8, "utf8")                  \
	X(S_USER, "user")                  \
	X(S_PASS, "pass")                  \
	X(S_SASL, "sasl")                  \
	X(S_LOGIN_USER, "sasl-login-user") \
	X(S_LOGIN_PASS, "sasl-login-pass") \
	X(S_SCRAM_FIRST, "scram-first")    \
	X(S_SCRAM_FINAL, "scram-final")    \
	X(S_SCRAM_END, "scram-verified")   \
	X(S_LISTING, "listing")            \
	X(S_FETCH, "fetch")                \
	X(S_TOP, "top")                    \
	X(S_QUIT, "quit")                  \
	X(S_DONE, "done")

#define SESSION_X_ENUM(e, n) e,
enum session_state { SESSION_STATES(SESSION_X_ENUM) S_COUNT };

/*
 * The SASL response buffer: made when a SASL login starts, dropped once
 * sent, so that the thousand sessions of a busy daemon do not each hold
 * its 43 KiB.
 */
#define SESSION_IR_SIZE AUTH_BASE64_SIZE(SECRET_MAX + 2 * POP3_LINE_MAX)

/* What the session's disk job does. */
enum disk_job {
	DJ_OPEN,  /* open Maildir and state, recover */
	DJ_FLUSH, /* make the batch durable */
	DJ_FINAL, /* the last flush (no DELE follows) and commit */
};

struct session {
	const struct conf *conf;
	const struct account *a;
	struct event_base *base;
	struct evdns_base *dns;
	session_done_cb cb;
	session_info_cb info;
	void *cbarg;
	enum session_mode mode;
	const char *mech; /* how we logged in, for reports */
	char *hdr;	  /* --list: header bytes of the message in TOP */
	size_t hdrlen;
	unsigned long next_top, top_done;
	struct event *done_ev;
	struct event *login_ev; /* the deadline until login */
	/*
	 * The connection closed while the last commit runs (see
	 * session_on_closed()): on a turn of its own, as the end may come
	 * from inside a transport callback.
	 */
	struct event *closed_ev;
	void (*closed_cb)(void *arg);
	double wait_since;   /* when the reply being received was awaited */
	uint64_t wait_bytes; /* bytes received for it since */

	enum session_state state;
	struct net *net;
	struct pop3 *pop3;
	SSL_CTX *ctx;
	bool tls_active;
	bool stls_pending; /* +OK to STLS seen, handshake next */
	/*
	 * TLS resumption (tlscache.h): this poll takes part, and offered
	 * the session the last one kept; the settings' fingerprint.
	 */
	bool resume, resume_offered;
	unsigned char tls_fp[TLS_FP_LEN];
	char timestamp[POP3_LINE_MAX + 1];
	struct secret_req *sreq;
	/*
	 * The secret from secret_got() until the login: a copy of its own
	 * length ("" when there is none), wiped by session_secret_drop().
	 * A SECRET_MAX buffer in each of a thousand sessions held 16 MiB.
	 */
	char *secret;
	char no_secret[256]; /* --serverinfo: why there is none, or "" */
	char *ir; /* SASL responses: SESSION_IR_SIZE bytes, during SASL only */
	bool ir_pending;	  /* initial response to send after "+ " */
	struct auth_scram *scram; /* the SCRAM exchange under way */

	struct deliver *dl; /* the Maildir and the state, through one door */
	/*
	 * A Maildir's messages go through the spool: a worker writes them,
	 * and they join the batch when written (spool.h).
	 */
	struct spool *sp;
	/*
	 * Disk work runs on the worker, one job at a time; meanwhile the
	 * session does not touch dl, and leaves what arrives from the
	 * server in the transport's buffer. One exception, so that the
	 * disk and the network overlap: while a Maildir batch is made
	 * durable (DJ_FLUSH), the next one fills (deliver.h says which calls
	 * may be made meanwhile), up to SESSION_BATCH messages; see
	 * session_disk_waits(). Strikes that come meanwhile wait in
	 * STRIKES_DUE until the state is the loop's again. The spool's
	 * writing is a job of its own, beside this one (spool.h).
	 */
	struct worker *worker;
	struct worker_job job;
	enum disk_job job_kind;
	int job_rc, job_errno;
	enum session_class job_cls;
	char job_err[512];
	unsigned long *flushed; /* msgnos the flush made durable */
	size_t nflushed;
	struct session_strike_due {
		unsigned long msgno;
		char why[96];
	} * strikes_due;
	size_t nstrikes_due, strikes_cap;
	bool net_pending; /* a transport event waits for the job's end */
	enum net_ev pending_ev;
	bool strike_in_hand; /* the message in hand counts a strike */
	bool final_begun;    /* final_stage() ran: the end is under way */
	bool closed_told;    /* closed_cb() ran: the owner knows */
	/*
	 * The Maildir and state are opened on the worker while the
	 * connection, TLS and CAPA go on; the login waits for them (a poll
	 * that cannot deliver must not log in: LOGIN-DELAY counts logins).
	 */
	bool local_ready; /* opened, recovered, the target started */
	bool space_known; /* the Maildir's free space, as the opening saw */
	uint64_t free_bytes;
	bool login_waits; /* at the login, for local_ready */
	bool receiving;	  /* a RETR reply is being delivered */
	unsigned long cur_msgno;
	uint64_t cur_bytes;	 /* message data received for it so far */
	uint64_t cur_listed;	 /* its size as LIST said */
	unsigned long end_msgno; /* ended in this read, not yet confirmed */
	unsigned long long end_size;

	/*
	 * A target that takes messages from the session (LMTP), or NULL for
	 * the Maildir. Messages of s->fetch below ANNOUNCED have durable
	 * intents and may be fetched; ANNOUNCING is where the flush under way
	 * takes that mark. Verdicts that come while disk work runs wait in
	 * VERDICTS (the target holds at most a few messages at once).
	 */
	struct target *tg;
	size_t announced, announcing;
	struct session_verdict {
		unsigned long msgno;
		enum target_verdict v;
		char why[256];
	} verdicts[8];
	size_t nverdicts;
	bool final_wait; /* the end waits for the target's verdicts */
	bool net_paused; /* reading stopped until the target is ready */
	bool spool_held; /* ... or until the writer has room */
	bool holding;	 /* session_input_paused() said so, since held_since */
	double held_since;

	unsigned long stat_count; /* messages STAT counted */
	struct listing *lst;	  /* what UIDL and LIST said */
	struct plan_msg *pm;	  /* the listed messages, sorted by msgno */
	size_t npm;
	bool have_uidl;
	bool listing_complete;	/* every message has a size (and a UID) */
	bool listing_pipelined; /* STAT, UIDL and LIST sent together */
	unsigned long *fetch;	/* msgnos to RETR, in order */
	size_t nfetch, next_fetch, retr_done;
	uint64_t inflight;   /* listed bytes of the RETRs not yet answered */
	unsigned long *dele; /* durable, DELE not yet sent */
	size_t ndele, next_dele;
	size_t dele_ok;	      /* +OK to DELE, committed by QUIT */
	unsigned long *acked; /* their msgnos (room for every message) */
	bool stop;	 /* send no more RETR, drop replies (a local failure) */
	bool halt;	 /* send no more RETR, deliver those in flight */
	bool rset;	 /* RSET sent: this session deletes nothing */
	bool flush_dele; /* the flush under way queues DELEs */
	enum session_class cls;
	char msg[512];
	struct session_stats stats;
	double start; /* monotime() */
};

/* What a window-filling function did (see session_fill()). */
enum session_more {
	SESSION_SENT, /* sent a command; room for more is looked at */
	SESSION_WAIT, /* nothing to send until a reply or disk work ends */
	SESSION_END,  /* nothing left to ask: QUIT once all is answered */
};

/* session.c: lifecycle */
const char *session_state_name(enum session_state st);
void session_set_state(struct session *s, enum session_state st);
void session_fail(struct session *s, enum session_class cls, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));
void session_outcome(struct session *s, enum session_class cls, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));
void session_finish(struct session *s);
void session_final_stage(struct session *s);
void session_report(struct session *s, const struct session_info *si);
void session_start_remote(struct session *s);
void session_secret_drop(struct session *s);

/* session_io.c: transport, engine, dispatch */
void session_transport_event(struct net *n, enum net_ev ev, void *arg);
void session_resume_input(struct session *s);
void session_awaited(struct session *s);
void session_send(struct session *s, const struct pop3_req *req);
void session_send_cmd(
    struct session *s, enum pop3_cmd cmd, unsigned long msgno);
void session_send_secret(struct session *s, const char *buf, int n);
size_t session_window(const struct session *s);
void session_fill(
    struct session *s, enum session_more (*next)(struct session *));
const char *session_reply_text(
    const struct pop3_event *ev, char *buf, size_t len);

/* session_login.c: TLS, greeting, capabilities, UTF-8 mode */
void session_start_tls(struct session *s);
void session_tls_ready(struct session *s);
void session_tls_keep(struct session *s);
void session_st_greeting(struct session *s, const struct pop3_event *ev);
void session_st_capa(struct session *s, const struct pop3_event *ev);
void session_st_stls(struct session *s, const struct pop3_event *ev);
void session_st_utf8(struct session *s, const struct pop3_event *ev);

/* session_auth.c: authentication */
void session_start_auth(struct session *s);
void session_st_auth(struct session *s, const struct pop3_event *ev);
void session_ir_drop(struct session *s);

/* session_list.c: listing, plan, --list */
const struct plan_msg *session_msg(
    const struct session *s, unsigned long msgno);
void session_listing_begin(struct session *s);
void session_st_listing(struct session *s, const struct pop3_event *ev);
void session_st_top(struct session *s, const struct pop3_event *ev);

/* session_fetch.c: the fetch window */
void session_pump(struct session *s);
void session_strike(struct session *s, unsigned long msgno, const char *why);
void session_strikes_apply(struct session *s);
void session_spool_failed(
    void *arg, unsigned long msgno, uint64_t sent, int err);
bool session_quit_now(const struct session *s);
void session_local_failure(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void session_unconfirmed_end(struct session *s);
void session_end_confirmed(struct session *s);
bool session_data_bounded(struct session *s, const struct pop3_event *ev);
void session_st_fetch(struct session *s, const struct pop3_event *ev);
void session_st_quit(struct session *s, const struct pop3_event *ev);

/* session_local.c: disk work on the worker, the target's verdicts */
void session_disk_job(struct session *s, enum disk_job kind);
void session_apply_verdicts(struct session *s);
bool session_input_paused(struct session *s);
bool session_disk_waits(const struct session *s);
void session_target_free(struct session *s);

#endif
