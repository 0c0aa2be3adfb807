/*
 * One poll of one account, as a state machine: one handler per state,
 * each reading the engine event it expects, sending the next command and
 * naming the next state.
 */
#include <sys/time.h>

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "auth.h"
#include "conf.h"
#include "deliver.h"
#include "listing.h"
#include "log.h"
#include "maildir.h"
#include "net.h"
#include "plan.h"
#include "pop3.h"
#include "received.h"
#include "secret.h"
#include "session.h"
#include "state.h"
#include "testhook.h"
#include "tls.h"
#include "worker.h"
#include "wipe.h"
#include "monotime.h"

/*
 * Messages delivered between two durability points: one fsync of new/
 * and one state commit cover this many messages, and their DELEs follow.
 * Larger batches save syncs; smaller ones let deletions start sooner.
 */
#define SESSION_BATCH 64
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

#define SESSION_STATES(X)         \
	X(S_CONNECT, "connect")   \
	X(S_TLS, "tls")           \
	X(S_GREETING, "greeting") \
	X(S_CAPA, "capa")         \
	X(S_STLS, "stls")         \
	X(S_AUTH, "auth")         \
	X(S_LISTING, "listing")   \
	X(S_FETCH, "fetch")       \
	X(S_TOP, "top")           \
	X(S_QUIT, "quit")         \
	X(S_DONE, "done")

#define X_ENUM(e, n) e,
#define X_NAME(e, n) n,
enum session_state { SESSION_STATES(X_ENUM) S_COUNT };

/* What the session's disk job does. */
enum disk_job {
	DJ_OPEN,  /* open Maildir and state, recover */
	DJ_FLUSH, /* make the batch durable */
	DJ_FINAL, /* the last flush (no DELE follows) and commit */
};
static const char *const state_names[] = {SESSION_STATES(X_NAME)};
_Static_assert(sizeof(state_names) / sizeof(state_names[0]) == S_COUNT,
    "state_names out of step");

enum auth_step {
	AS_USER,   /* USER sent */
	AS_PASS,   /* PASS sent */
	AS_SASL,   /* AUTH sent, answering challenges */
	AS_LOGIN2, /* AUTH LOGIN: user name sent, password next */
	AS_LOGIN3, /* AUTH LOGIN: password sent */
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
	double wait_since;	/* when the reply being received was awaited */
	uint64_t wait_bytes;	/* bytes received for it since */

	enum session_state state;
	struct net *net;
	struct pop3 *pop3;
	SSL_CTX *ctx;
	bool tls_active;
	bool stls_pending; /* +OK to STLS seen, handshake next */
	char timestamp[POP3_LINE_MAX + 1];
	struct secret_req *sreq;
	char secret[SECRET_MAX];
	char ir[AUTH_BASE64_SIZE(SECRET_MAX + 2 * POP3_LINE_MAX)];
	bool ir_pending; /* initial response to send after "+ " */
	enum auth_step auth_step;

	struct maildir *md;
	struct state *st;
	struct deliver *dl;
	/*
	 * Disk work runs on the worker, one job at a time; meanwhile the
	 * session touches neither md, st nor dl, and leaves what arrives
	 * from the server in the transport's buffer.
	 */
	struct worker *worker;
	struct worker_job job;
	enum disk_job job_kind;
	int job_rc, job_errno;
	enum session_class job_cls;
	char job_err[512];
	unsigned long *flushed; /* msgnos the flush made durable */
	size_t nflushed;
	bool net_pending; /* a transport event waits for the job's end */
	enum net_ev pending_ev;
	bool strike_in_hand; /* the message in hand counts a strike */
	bool final_begun;    /* final_stage() ran: the end is under way */
	bool receiving;	     /* a RETR reply is being delivered */
	unsigned long cur_msgno;
	uint64_t cur_bytes;	 /* message data received for it so far */
	uint64_t cur_listed;	 /* its size as LIST said */
	unsigned long end_msgno; /* ended in this read, not yet confirmed */
	unsigned long long end_size;

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
	struct timeval start;
};

#define SESSION_OF_JOB(j) \
	((struct session *)(void *)((char *)(j)-offsetof(struct session, job)))

static void net_event(struct net *n, enum net_ev ev, void *arg);
static void disk_done(struct worker_job *job);
static void start_remote(struct session *s);
static void resume_input(struct session *s);
static void awaited(struct session *s);
static void final_stage(struct session *s);
static void read_input(struct session *s);
static const struct plan_msg *msg_of(
    const struct session *s, unsigned long msgno);
static void fail(struct session *s, enum session_class cls, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));
static void finish(struct session *s);
static void send_req(struct session *s, const struct pop3_req *req);
static void send_simple(
    struct session *s, enum pop3_cmd cmd, unsigned long msgno);
static void pump(struct session *s);
static size_t window(const struct session *s);
static void pump_top(struct session *s);
static void strike(struct session *s, unsigned long msgno, const char *why);
static void flush_batch(struct session *s, bool dele);
static bool size_plausible(uint64_t listed, uint64_t got);
static bool data_bounded(struct session *s, const struct pop3_event *ev);
static void local_failure(struct session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static const char *const class_names[] = {
    "ok", "network", "busy", "protocol", "auth", "local", "config"};
_Static_assert(sizeof(class_names) / sizeof(class_names[0]) == SC_COUNT,
    "class_names out of step");

const char *
session_class_name(enum session_class cls)
{
	return (unsigned)cls < SC_COUNT ? class_names[cls] : "?";
}

int
session_exit_status(enum session_class cls)
{
	switch (cls) {
	case SC_OK:
		return EX_OK;
	case SC_NET:
	case SC_BUSY:
	case SC_PROTO:
		return EX_TEMPFAIL;
	case SC_AUTH:
		return EX_NOPERM;
	case SC_LOCAL:
		return EX_IOERR;
	case SC_CONFIG:
	case SC_COUNT:
		break;
	}
	return EX_CONFIG;
}

/*
 * Changes state; a session that has ended stays ended (a send that
 * failed inside a handler ends it before the handler names its next
 * state).
 */
static void
set_state(struct session *s, enum session_state st)
{
	if (s->state == S_DONE)
		return;
	if (s->state != st)
		log_debug(s->a->name, "state %s -> %s", state_names[s->state],
		    state_names[st]);
	s->state = st;
}

/*
 * Opens what a poll writes to, before anything is asked of the server:
 * on a worker thread (directories made and synced, the journal read,
 * interrupted deliveries rolled forward). Sets job_rc, job_cls, job_err.
 */
static void
open_local(struct session *s)
{
	s->job_rc = -1;
	s->job_cls = SC_LOCAL;
	s->md = maildir_open(s->a->maildir, s->job_err, sizeof(s->job_err));
	if (s->md == NULL)
		return;
	maildir_set_sync(s->md, s->a->sync == CONF_SYNC_FILE
				    ? MAILDIR_SYNC_FILE
				    : MAILDIR_SYNC_BATCH);
	s->st = state_open_mailbox(s->conf->state_dir, s->a->name, s->a->host,
	    s->a->port, s->a->user != NULL ? s->a->user : "", s->job_err,
	    sizeof(s->job_err));
	if (s->st == NULL) {
		if (errno == EWOULDBLOCK)
			s->job_cls = SC_BUSY;
		return;
	}
	if ((s->dl = deliver_new(s->md, s->st)) == NULL) {
		snprintf(s->job_err, sizeof(s->job_err), "out of memory");
		return;
	}
	s->job_rc = deliver_recover(s->dl, s->job_err, sizeof(s->job_err));
}

/* On the loop: what open_local() found. */
static bool
opened(struct session *s)
{
	if (s->md == NULL) {
		fail(s, SC_LOCAL, "maildir: %s", s->job_err);
		return false;
	}
	if (s->st == NULL) {
		fail(s, s->job_cls, "state: %s", s->job_err);
		return false;
	}
	if (state_load_notice(s->st) != NULL)
		log_warnx(s->a->name, "state: %s", state_load_notice(s->st));
	s->stats.sync_fallback = maildir_sync_fallback(s->md);
	if (s->job_rc == -1) {
		fail(s, SC_LOCAL, "%s", s->job_err);
		return false;
	}
	if (s->job_rc > 0)
		log_info(s->a->name,
		    "recovered=%d interrupted deliveries completed", s->job_rc);
	return true;
}

/*
 * A message of the flush under way is durable (on the worker thread).
 * One of several sharing a UID was delivered unrecorded; in keep mode its
 * UID is recorded now, in time for the commit that follows, so that the
 * copies are not fetched again (a crash before that commit costs a
 * duplicate, never a loss).
 */
static void
flushed(void *arg, unsigned long msgno)
{
	struct session *s = arg;
	const struct plan_msg *m = msg_of(s, msgno);

	s->flushed[s->nflushed++] = msgno;
	if (m->reason == PLAN_R_DUP_UID && s->a->keep && m->uid != NULL &&
	    !state_has(s->st, m->uid, NULL))
		state_record(s->st, m->uid, TESTHOOK_NOW());
}

static void
disk_run(struct worker_job *job)
{
	struct session *s = SESSION_OF_JOB(job);

	s->nflushed = 0;
	switch (s->job_kind) {
	case DJ_OPEN:
		open_local(s);
		return;
	case DJ_FLUSH:
	case DJ_FINAL:
		s->job_rc = 0;
		s->job_errno = 0;
		if (s->dl != NULL && deliver_flush(s->dl, flushed, s,
					 s->job_err, sizeof(s->job_err)) == -1)
			s->job_rc = -1;
		/*
		 * The last commit also writes what the session recorded
		 * since the previous one: completions, strikes, forgotten
		 * UIDs.
		 */
		if (s->job_kind == DJ_FINAL && s->st != NULL &&
		    state_commit(s->st) == -1)
			s->job_errno = errno;
		return;
	}
}

static void
disk_job(struct session *s, enum disk_job kind)
{
	s->job_kind = kind;
	s->job.run = disk_run;
	s->job.done = disk_done;
	worker_submit(s->worker, &s->job);
}

/*
 * Disk work of the session ended (on the loop). The session goes on, or,
 * if it ended meanwhile, on to its final flush.
 */
static void
disk_done(struct worker_job *job)
{
	struct session *s = SESSION_OF_JOB(job);
	size_t i;

	switch (s->job_kind) {
	case DJ_OPEN:
		if (opened(s) && s->state != S_DONE)
			start_remote(s);
		break;
	case DJ_FLUSH:
		for (i = 0; i < s->nflushed; i++)
			if (s->flush_dele && !s->a->keep)
				s->dele[s->ndele++] = s->flushed[i];
		if (s->job_rc == -1)
			local_failure(s, "%s", s->job_err);
		/* A slow disk is not a slow server: the rate starts over. */
		awaited(s);
		if (s->state != S_DONE)
			resume_input(s);
		break;
	case DJ_FINAL:
		if (s->job_rc == -1)
			log_warnx(s->a->name, "error=local %s", s->job_err);
		else if (s->job_errno != 0 && s->st != NULL)
			log_warnx(s->a->name, "error=local state commit: %s",
			    strerror(s->job_errno));
		event_active(s->done_ev, 0, 0);
		return;
	}
	if (s->state == S_DONE)
		final_stage(s);
}

static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	struct timeval now;

	gettimeofday(&now, NULL);
	s->stats.secs = (double)(now.tv_sec - s->start.tv_sec) +
			(double)(now.tv_usec - s->start.tv_usec) / 1e6;
	s->cb(s->cbarg, s->cls, &s->stats, s->msg);
}

static void
login_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	fail(s, SC_NET,
	    "%s:%u: not logged in after %u s (in state %s): server too slow",
	    s->a->host, s->a->port, SESSION_LOGIN_TIMEOUTS * s->a->timeout,
	    state_names[s->state]);
}

static void
connect_now(struct session *s)
{
	const struct account *a = s->a;
	struct timeval tv = {.tv_sec = SESSION_LOGIN_TIMEOUTS * a->timeout};

	if ((s->login_ev = evtimer_new(s->base, login_deadline, s)) == NULL ||
	    evtimer_add(s->login_ev, &tv) == -1) {
		fail(s, SC_LOCAL, "out of memory");
		return;
	}

	s->net = net_connect(
	    s->base, s->dns, a->host, a->port, a->timeout, net_event, s);
	if (s->net == NULL) {
		fail(s, SC_LOCAL, "out of memory");
		return;
	}
	log_debug(a->name, "connecting to %s:%u", a->host, a->port);
}

static void
secret_ready(void *arg, const char *secret, const char *err)
{
	struct session *s = arg;

	s->sreq = NULL;
	if (secret == NULL) {
		/* A token helper may fail for a while (network); files do not.
		 */
		fail(s, s->a->password_command != NULL ? SC_BUSY : SC_CONFIG,
		    "password: %s", err);
		return;
	}
	snprintf(s->secret, sizeof(s->secret), "%s", secret);
	connect_now(s);
}

struct session *
session_start(struct event_base *base, struct evdns_base *dns,
    struct worker *worker, const struct conf *conf, const struct account *a,
    session_done_cb cb, void *arg)
{
	struct session *s;

	s = session_start_mode(
	    base, dns, conf, a, SESSION_FETCH, NULL, cb, arg);
	if (s != NULL) {
		s->worker = worker;
		disk_job(s, DJ_OPEN);
	}
	return s;
}

struct session *
session_start_mode(struct event_base *base, struct evdns_base *dns,
    const struct conf *conf, const struct account *a, enum session_mode mode,
    session_info_cb info, session_done_cb cb, void *arg)
{
	struct session *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->conf = conf;
	s->a = a;
	s->base = base;
	s->dns = dns;
	s->mode = mode;
	s->info = info;
	s->cb = cb;
	s->cbarg = arg;
	gettimeofday(&s->start, NULL);
	s->stats.login_delay = -1;
	if ((s->done_ev = event_new(base, -1, 0, done_cb, s)) == NULL ||
	    (s->pop3 = pop3_new()) == NULL) {
		session_free(&s);
		return NULL;
	}
	/* A fetching session opens its Maildir and state first. */
	if (mode != SESSION_FETCH)
		start_remote(s);
	return s;
}

/* Gets the secret, then connects. */
static void
start_remote(struct session *s)
{
	const struct account *a = s->a;
	char err[512];

	if (a->tls != CONF_TLS_NONE &&
	    (s->ctx = tls_ctx_get(a, err, sizeof(err))) == NULL) {
		fail(s, SC_CONFIG, "tls: %s", err);
		return;
	}
	if (!a->tls_verify && a->tls != CONF_TLS_NONE)
		log_warnx(a->name,
		    "warning: certificate verification is off (tls_verify = false)");
	/* The secret first: a failing password_command costs no login. */
	if (a->auth == CONF_AUTH_EXTERNAL)
		connect_now(s);
	else if ((s->sreq = secret_fetch(s->base, a, secret_ready, s)) == NULL)
		fail(s, SC_LOCAL, "out of memory");
}

void
session_free(struct session **sp)
{
	struct session *s = *sp;

	if (s == NULL)
		return;
	/* Torn down while its disk work runs: only when the daemon exits. */
	if (s->worker != NULL && worker_busy(&s->job))
		worker_wait(s->worker, &s->job);
	secret_cancel(&s->sreq);
	net_free(&s->net);
	pop3_free(&s->pop3);
	deliver_free(&s->dl);
	maildir_close(&s->md);
	state_close(&s->st);
	if (s->ctx != NULL)
		SSL_CTX_free(s->ctx);
	if (s->done_ev != NULL)
		event_free(s->done_ev);
	if (s->login_ev != NULL)
		event_free(s->login_ev);
	wipe(s->secret, sizeof(s->secret));
	listing_free(&s->lst);
	free(s->acked);
	free(s->flushed);
	free(s->hdr);
	free(s->fetch);
	free(s->dele);
	free(s);
	*sp = NULL;
}

void
session_stop(struct session *s)
{
	if (s->state == S_DONE || s->halt)
		return;
	s->halt = true;
	s->stats.interrupted = true;
	if (s->cls == SC_OK)
		snprintf(s->msg, sizeof(s->msg), "stopped before the end");
	switch (s->state) {
	case S_LISTING: /* the plan then only deletes what is durable */
	case S_QUIT:
		return;
	case S_FETCH:
		log_info(s->a->name,
		    "stopping: %zu message(s) in flight are received first",
		    s->next_fetch - s->retr_done);
		pump(s);
		return;
	default:
		/* Nothing is delivered or deleted before the listing. */
		log_info(
		    s->a->name, "stopped in state %s", state_names[s->state]);
		finish(s);
		return;
	}
}

/* Ends the session with CLS; the callback runs on a later loop turn. */
static void
fail(struct session *s, enum session_class cls, const char *fmt, ...)
{
	va_list ap;

	if (s->state == S_DONE)
		return;
	va_start(ap, fmt);
	vsnprintf(s->msg, sizeof(s->msg), fmt, ap);
	va_end(ap);
	s->cls = cls;
	log_warnx(s->a->name, "error=%s %s", class_names[cls], s->msg);
	finish(s);
}

static void
finish(struct session *s)
{
	set_state(s, S_DONE);
	/* The message in hand when the session broke off counts against it. */
	s->strike_in_hand =
	    s->receiving && (s->cls == SC_NET || s->cls == SC_PROTO);
	s->receiving = false;
	secret_cancel(&s->sreq);
	wipe(s->secret, sizeof(s->secret));
	wipe(s->ir, sizeof(s->ir));
	/* Disk work under way goes on to final_stage() when it ends. */
	if (s->worker == NULL || !worker_busy(&s->job))
		final_stage(s);
}

/*
 * Messages complete in tmp/ are made durable whatever ended the session,
 * so the next poll does not fetch them again (without QUIT none of them
 * is deleted), and the state is committed, so the next start has nothing
 * to recover. Then the done callback, on a loop turn of its own: the
 * transport is freed with the session, and this may run inside one of
 * its callbacks. Until then S_DONE makes every further event a no-op.
 */
static void
final_stage(struct session *s)
{
	/*
	 * Once: a disk job's completion may end the session itself (a
	 * failure, a connection closed meanwhile) and then look again.
	 */
	if (s->final_begun)
		return;
	s->final_begun = true;
	if (s->strike_in_hand) {
		s->strike_in_hand = false;
		strike(s, s->cur_msgno, "session ended while receiving it");
	}
	if (s->dl != NULL)
		deliver_abort(s->dl);
	if (s->st != NULL && s->worker != NULL) {
		disk_job(s, DJ_FINAL);
		return;
	}
	event_active(s->done_ev, 0, 0);
}

/* Hands what a probing session learnt to its caller. */
static void
report(struct session *s, const struct session_info *si)
{
	if (s->info != NULL)
		s->info(s->cbarg, si);
}

/* The text of an -ERR reply with its response code: "[SYS/TEMP] text". */
static const char *
reply_text(const struct pop3_event *ev, char *buf, size_t len)
{
	if (ev->code == POP3_CODE_NONE)
		snprintf(buf, len, "%s", ev->text);
	else
		snprintf(
		    buf, len, "[%s] %s", pop3_code_name(ev->code), ev->text);
	return buf;
}

/* Trace of a status line, reconstructed from the event. */
static void
trace_event(struct session *s, const struct pop3_event *ev)
{
	char line[POP3_LINE_MAX + 64];
	int level = 1;
	int n;

	switch (ev->type) {
	case POP3_EV_GREETING:
	case POP3_EV_OK:
	case POP3_EV_ERR:
		n = snprintf(line, sizeof(line), "%s%s%s%s%s",
		    ev->type == POP3_EV_ERR ||
			    (ev->type == POP3_EV_GREETING && !ev->ok)
			? "-ERR"
			: "+OK",
		    ev->code != POP3_CODE_NONE ? " [" : "",
		    pop3_code_name(ev->code),
		    ev->code != POP3_CODE_NONE ? "]" : "", "");
		if (ev->text[0] != '\0')
			snprintf(line + n, sizeof(line) - (size_t)n, " %s",
			    ev->text);
		break;
	case POP3_EV_CONTINUE:
		snprintf(line, sizeof(line), "+ %s", ev->text);
		break;
	case POP3_EV_CAPA:
		snprintf(line, sizeof(line), "%s", ev->text);
		level = 2;
		break;
	case POP3_EV_LIST:
		snprintf(line, sizeof(line), "%lu %llu", ev->msgno,
		    (unsigned long long)ev->size);
		level = 2;
		break;
	case POP3_EV_UIDL:
		snprintf(line, sizeof(line), "%lu %s", ev->msgno, ev->uid);
		level = 2;
		break;
	case POP3_EV_END:
		snprintf(line, sizeof(line), ".");
		level = 2;
		break;
	default:
		return;
	}
	log_proto(s->a->name, level, false, line, strlen(line), false);
}

/* A reply is awaited from now on: its clock for the minimum rate starts. */
static void
awaited(struct session *s)
{
	s->wait_since = monotime();
	s->wait_bytes = 0;
}

/*
 * Whether the reply being received keeps up the minimum rate (see
 * SESSION_MIN_RATE); ends the session if not.
 */
static bool
rate_ok(struct session *s)
{
	double t = monotime() - s->wait_since - s->a->timeout;

	if (s->state < S_LISTING || t <= 0 ||
	    (double)s->wait_bytes >= t * SESSION_MIN_RATE)
		return true;
	fail(s, SC_NET,
	    "%s:%u: server too slow: %llu bytes in %.0f s in state %s",
	    s->a->host, s->a->port, (unsigned long long)s->wait_bytes,
	    monotime() - s->wait_since, state_names[s->state]);
	return false;
}

static void
send_line(struct session *s, const char *buf, int n, bool secret)
{
	log_proto(s->a->name, 1, true, buf, (size_t)n, secret);
	if (pop3_pending(s->pop3) <= 1)
		awaited(s);
	if ((secret ? net_write_secret(s->net, buf, (size_t)n)
		    : net_write(s->net, buf, (size_t)n)) == -1)
		fail(s, SC_LOCAL, "cannot queue output");
}

static void
send_req(struct session *s, const struct pop3_req *req)
{
	char buf[POP3_CMDLINE_MAX + 1];
	int n;

	if ((n = pop3_request(s->pop3, req, buf, sizeof(buf))) < 0) {
		fail(s, SC_CONFIG,
		    "cannot send %s (argument too long or invalid)",
		    pop3_cmd_name(req->cmd));
		return;
	}
	send_line(s, buf, n, false);
	wipe(buf, sizeof(buf));
}

static void
send_simple(struct session *s, enum pop3_cmd cmd, unsigned long msgno)
{
	struct pop3_req r = {.cmd = cmd, .msgno = msgno};

	send_req(s, &r);
}

/* ---- connection and TLS ---- */

static void
start_tls(struct session *s)
{
	SSL *ssl = tls_ssl_new(s->ctx, s->a);

	if (ssl == NULL || net_start_tls(s->net, ssl) == -1) {
		fail(s, SC_LOCAL, "cannot start TLS");
		return;
	}
	set_state(s, S_TLS);
}

static void
tls_ready(struct session *s)
{
	char err[256], info[128];

	if (!tls_check_pins(net_ssl(s->net), s->a, err, sizeof(err))) {
		fail(s, SC_NET, "%s", err);
		return;
	}
	s->tls_active = true;
	tls_summary(net_ssl(s->net), info, sizeof(info));
	log_debug(s->a->name, "tls=\"%s\"", info);
	if (s->mode != SESSION_FETCH) {
		char subject[512], fp[128];
		struct session_info si = {.kind = SI_TLS,
		    .text = info,
		    .subject = subject,
		    .fingerprint = fp};

		tls_peer_info(
		    net_ssl(s->net), subject, sizeof(subject), fp, sizeof(fp));
		report(s, &si);
	}
	if (s->a->tls == CONF_TLS_IMPLICIT) {
		set_state(s, S_GREETING);
		return;
	}
	pop3_tls_started(s->pop3);
	send_simple(s, POP3_CMD_CAPA, 0);
	set_state(s, S_CAPA);
}

/* ---- authentication ---- */

/*
 * RFC 5034: an AUTH command line with its initial response is at most 255
 * octets; a longer response (an OAuth token) goes after an empty challenge.
 */
#define AUTH_LINE_MAX 255

static enum session_class
auth_err_class(const struct pop3_event *ev)
{
	switch (ev->code) {
	case POP3_CODE_IN_USE:
	case POP3_CODE_LOGIN_DELAY:
	case POP3_CODE_SYS_TEMP:
		return SC_BUSY;
	default:
		return SC_AUTH;
	}
}

/* Sends AUTH MECH with the initial response IR (base64, or NULL). */
static void
start_sasl(struct session *s, const char *mech, const char *ir)
{
	struct pop3_req r = {.cmd = POP3_CMD_AUTH, .arg = mech, .arg2 = ir};

	s->auth_step = AS_SASL;
	s->ir_pending = false;
	if (ir != NULL &&
	    strlen("AUTH  \r\n") + strlen(mech) + strlen(ir) > AUTH_LINE_MAX) {
		/* IR is s->ir when login_sasl() built it there. */
		if (ir != s->ir)
			snprintf(s->ir, sizeof(s->ir), "%s", ir);
		s->ir_pending = true;
		r.arg2 = NULL;
	}
	send_req(s, &r);
}

/* Builds the initial response for the configured SASL mechanism. */
static int
sasl_response(struct session *s, char *ir, size_t irlen)
{
	const struct account *a = s->a;

	switch (a->auth) {
	case CONF_AUTH_XOAUTH2:
		return auth_xoauth2(a->user, s->secret, ir, irlen);
	case CONF_AUTH_OAUTHBEARER:
		return auth_oauthbearer(
		    a->user, a->host, a->port, s->secret, ir, irlen);
	case CONF_AUTH_EXTERNAL:
		return auth_external(ir, irlen);
	default:
		return auth_plain(a->user, s->secret, ir, irlen);
	}
}

/* RFC 4422 3.1: mechanism names are upper case on the wire. */
static const char *
sasl_name(enum conf_auth auth)
{
	switch (auth) {
	case CONF_AUTH_XOAUTH2:
		return "XOAUTH2";
	case CONF_AUTH_OAUTHBEARER:
		return "OAUTHBEARER";
	case CONF_AUTH_EXTERNAL:
		return "EXTERNAL";
	case CONF_AUTH_LOGIN:
		return "LOGIN";
	default:
		return "PLAIN";
	}
}

static void
login_sasl(struct session *s, const char *mech)
{
	if (sasl_response(s, s->ir, sizeof(s->ir)) < 0) {
		fail(s, SC_CONFIG, "auth %s: credentials invalid or too long",
		    mech);
		return;
	}
	start_sasl(s, mech, s->ir);
	s->mech = mech;
	if (!s->ir_pending)
		wipe(s->ir, sizeof(s->ir));
}

static void
login_apop(struct session *s)
{
	struct pop3_req r = {.cmd = POP3_CMD_APOP, .arg = s->a->user};
	char digest[33];

	if (s->timestamp[0] == '\0') {
		fail(s, SC_AUTH,
		    "auth apop: the server's greeting has no APOP timestamp");
		return;
	}
	if (auth_apop(s->timestamp, s->secret, digest, sizeof(digest)) < 0) {
		fail(s, SC_LOCAL, "auth apop: cannot compute the digest");
		return;
	}
	r.arg2 = digest;
	s->mech = "APOP";
	s->auth_step = AS_PASS;
	send_req(s, &r);
}

static void
start_auth(struct session *s)
{
	const struct account *a = s->a;
	struct pop3_req r = {.cmd = POP3_CMD_USER, .arg = a->user};

	if (!s->tls_active && !a->allow_plaintext) {
		fail(s, SC_CONFIG, "refusing to send credentials without TLS");
		return;
	}
	set_state(s, S_AUTH);
	switch (a->auth) {
	case CONF_AUTH_AUTO:
		/* The strongest both offer; never a silent fallback later. */
		if (pop3_capa_has_sasl(s->pop3, "PLAIN")) {
			login_sasl(s, "PLAIN");
			return;
		}
		break;
	case CONF_AUTH_PLAIN:
	case CONF_AUTH_XOAUTH2:
	case CONF_AUTH_OAUTHBEARER:
	case CONF_AUTH_EXTERNAL:
		login_sasl(s, sasl_name(a->auth));
		return;
	case CONF_AUTH_LOGIN:
		s->mech = "LOGIN";
		start_sasl(s, "LOGIN", NULL);
		return;
	case CONF_AUTH_APOP:
		login_apop(s);
		return;
	case CONF_AUTH_USER:
		break;
	case CONF_AUTH_RPOP:
		break;
	}
	s->mech = a->auth == CONF_AUTH_RPOP ? "USER/RPOP" : "USER/PASS";
	s->auth_step = AS_USER;
	send_req(s, &r);
}

/* Sends one SASL continuation line (a secret: masked in the trace). */
static void
sasl_send(struct session *s, const char *line)
{
	char buf[sizeof(s->ir) + 4];
	int n;

	if ((n = pop3_auth_response(s->pop3, line, buf, sizeof(buf))) < 0) {
		fail(s, SC_CONFIG, "SASL response too long");
		return;
	}
	send_line(s, buf, n, true);
	wipe(buf, sizeof(buf));
}

/* The server's SASL error (OAuth: base64 JSON), for the log. */
static void
log_sasl_error(struct session *s, const char *b64)
{
	unsigned char buf[1024];
	size_t n, i;

	if (auth_base64_decode(b64, buf, sizeof(buf) - 1, &n) == -1)
		return;
	for (i = 0; i < n; i++)
		if (buf[i] < 0x20 || buf[i] > 0x7e)
			buf[i] = '?';
	buf[n] = '\0';
	log_warnx(s->a->name, "server says: %s", (char *)buf);
}

/* Answers a SASL challenge. */
static void
sasl_continue(struct session *s, const struct pop3_event *ev)
{
	char line[AUTH_BASE64_SIZE(SECRET_MAX)];
	const char *v;

	if (s->ir_pending) {
		s->ir_pending = false;
		sasl_send(s, s->ir);
		wipe(s->ir, sizeof(s->ir));
		return;
	}
	switch (s->a->auth) {
	case CONF_AUTH_XOAUTH2:
		/* A failure comes as a challenge; an empty reply ends it. */
		log_sasl_error(s, ev->text);
		sasl_send(s, "");
		return;
	case CONF_AUTH_OAUTHBEARER:
		/* RFC 7628 3.2.3: the client answers an error with %x01. */
		log_sasl_error(s, ev->text);
		sasl_send(s, "AQ==");
		return;
	case CONF_AUTH_LOGIN:
		if (s->auth_step == AS_LOGIN3)
			break;
		v = s->auth_step == AS_SASL ? s->a->user : s->secret;
		if (auth_base64(v, strlen(v), line, sizeof(line)) < 0) {
			fail(s, SC_CONFIG, "credentials too long");
			return;
		}
		sasl_send(s, line);
		wipe(line, sizeof(line));
		s->auth_step = s->auth_step == AS_SASL ? AS_LOGIN2 : AS_LOGIN3;
		return;
	default:
		break;
	}
	/* RFC 5034: "*" cancels the exchange; the -ERR that follows fails. */
	sasl_send(s, "*");
}

static void
st_auth(struct session *s, const struct pop3_event *ev)
{
	struct pop3_req r = {.cmd = POP3_CMD_PASS};
	char why[POP3_LINE_MAX + 32];

	if (ev->type == POP3_EV_CONTINUE) {
		sasl_continue(s, ev);
		return;
	}
	if (ev->type == POP3_EV_ERR) {
		fail(s, auth_err_class(ev), "authentication failed: %s",
		    reply_text(ev, why, sizeof(why)));
		return;
	}
	if (ev->type != POP3_EV_OK)
		return;
	if (s->auth_step == AS_USER) {
		/* RFC 1939: RPOP, like PASS, follows USER. */
		if (s->a->auth == CONF_AUTH_RPOP)
			r.cmd = POP3_CMD_RPOP;
		r.arg = s->secret;
		s->auth_step = AS_PASS;
		send_req(s, &r);
		return;
	}
	wipe(s->secret, sizeof(s->secret));
	evtimer_del(s->login_ev);
	log_debug(s->a->name, "logged in");
	report(s, &(struct session_info){.kind = SI_LOGIN, .text = s->mech});
	set_state(s, S_LISTING);
	send_simple(s, POP3_CMD_STAT, 0);
	/*
	 * With pipelining, the listing takes one round trip instead of
	 * three: replies come in order, so STAT's count is known before
	 * the first UIDL line arrives.
	 */
	if (s->mode != SESSION_SERVERINFO && window(s) > 1) {
		s->listing_pipelined = true;
		send_simple(s, POP3_CMD_UIDL, 0);
		send_simple(s, POP3_CMD_LIST, 0);
	}
}

/* ---- greeting, capabilities, STLS ---- */

static void
st_greeting(struct session *s, const struct pop3_event *ev)
{
	if (ev->type != POP3_EV_GREETING)
		return;
	if (!ev->ok) {
		fail(s, SC_BUSY, "server refused the session: %s", ev->text);
		return;
	}
	report(
	    s, &(struct session_info){.kind = SI_GREETING, .text = ev->text});
	if (ev->timestamp != NULL)
		snprintf(
		    s->timestamp, sizeof(s->timestamp), "%s", ev->timestamp);
	send_simple(s, POP3_CMD_CAPA, 0);
	set_state(s, S_CAPA);
}

static void
st_capa(struct session *s, const struct pop3_event *ev)
{
	/* Only what the server says over TLS (when there is TLS) counts. */
	if (ev->type == POP3_EV_CAPA &&
	    (s->tls_active || s->a->tls == CONF_TLS_NONE))
		report(s,
		    &(struct session_info){.kind = SI_CAPA, .text = ev->text});
	if (ev->type != POP3_EV_END && ev->type != POP3_EV_ERR)
		return;
	/*
	 * Nothing said before TLS counts after it: a LOGIN-DELAY injected
	 * into the plain-text CAPA would otherwise hold the account off for
	 * as long as the attacker likes, even when STLS then fails.
	 */
	if (s->tls_active || s->a->tls == CONF_TLS_NONE)
		s->stats.login_delay = pop3_capa(s->pop3)->login_delay;
	/* -ERR: an RFC 1939 server without CAPA; no capabilities known. */
	if (s->a->tls == CONF_TLS_STARTTLS && !s->tls_active) {
		if (!pop3_capa(s->pop3)->stls) {
			fail(s, SC_PROTO,
			    "server does not offer STLS; no credentials sent");
			return;
		}
		send_simple(s, POP3_CMD_STLS, 0);
		set_state(s, S_STLS);
		return;
	}
	start_auth(s);
}

static void
st_stls(struct session *s, const struct pop3_event *ev)
{
	if (ev->type == POP3_EV_ERR) {
		fail(s, SC_PROTO,
		    "server refused STLS: %s; no credentials sent", ev->text);
		return;
	}
	/* The handshake starts once every byte read so far is parsed. */
	if (ev->type == POP3_EV_OK)
		s->stls_pending = true;
}

/* ---- listing and planning ---- */

/* The message numbered MSGNO in the listing (one the plan named). */
static const struct plan_msg *
msg_of(const struct session *s, unsigned long msgno)
{
	static const struct plan_msg none;
	const struct plan_msg *m = NULL;

	if (s->lst != NULL && s->pm != NULL)
		m = listing_find(s->lst, msgno);
	return m != NULL ? m : &none;
}

/* Ends the session for a listing that cannot be held (errno says why). */
static void
listing_failed(struct session *s, const char *what, unsigned long msgno)
{
	switch (errno) {
	case ERANGE:
		fail(s, SC_PROTO, "%s lists message %lu of %lu", what, msgno,
		    s->stat_count);
		return;
	case EEXIST:
		fail(s, SC_PROTO, "%s lists message %lu twice", what, msgno);
		return;
	case E2BIG:
		fail(s, SC_PROTO,
		    "the listing of %lu messages needs more than %u MiB: refused",
		    s->stat_count, LISTING_BYTES_MAX >> 20);
		return;
	default:
		fail(s, SC_LOCAL, "out of memory");
		return;
	}
}

static bool
listing_entry(struct session *s, const struct pop3_event *ev)
{
	int r = ev->type == POP3_EV_LIST
		    ? listing_add_size(s->lst, ev->msgno, ev->size)
		    : listing_add_uid(s->lst, ev->msgno, ev->uid);

	if (r == -1)
		listing_failed(s, pop3_cmd_name(ev->cmd), ev->msgno);
	return r == 0;
}

/*
 * The listing is complete: merge it. A message STAT counted but UIDL or
 * LIST left out has no known identity: it is left alone, and as the
 * UIDs of this poll are then not all known, none is forgotten.
 */
static bool
listing_done(struct session *s)
{
	unsigned long dup = 0;

	if (listing_finish(s->lst, &dup) == -1) {
		listing_failed(s, "UIDL or LIST", dup);
		return false;
	}
	s->pm = listing_msgs(s->lst);
	s->npm = listing_count(s->lst);
	s->listing_complete = listing_complete(s->lst, s->have_uidl);
	if (s->listing_complete)
		return true;
	log_warnx(s->a->name,
	    "incomplete listing: STAT counts %lu messages, UIDL listed %zu, LIST %zu; those not fully listed are left alone",
	    s->stat_count, s->have_uidl ? listing_uids(s->lst) : 0,
	    listing_sizes(s->lst));
	/* The poll goes on with what is known, but is not a success. */
	if (s->cls == SC_OK) {
		s->cls = SC_PROTO;
		snprintf(s->msg, sizeof(s->msg), "incomplete listing");
	}
	return true;
}

struct prune {
	const char **listed; /* server UIDs, sorted */
	size_t nlisted;
	char **gone;
	size_t ngone, cap;
};

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool
is_listed(void *arg, const char *uid)
{
	struct prune *p = arg;

	return bsearch(&uid, p->listed, p->nlisted, sizeof(*p->listed),
		   cmp_str) != NULL;
}

static void
collect_gone(void *arg, const char *uid, time_t first_seen)
{
	struct prune *p = arg;
	char **v;

	if (bsearch(&uid, p->listed, p->nlisted, sizeof(*p->listed), cmp_str) !=
	    NULL)
		return;
	if (p->ngone == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 64;
		if ((v = realloc(p->gone, p->cap * sizeof(*v))) == NULL)
			return;
		p->gone = v;
	}
	if ((p->gone[p->ngone] = strdup(uid)) != NULL)
		p->ngone++;
}

/*
 * Forgets UIDs no longer on the server, after a complete listing, so the
 * state does not grow for ever. Failure here costs nothing but space.
 */
static void
prune_state(struct session *s)
{
	struct prune p = {0};
	size_t i;

	if (!s->have_uidl || !s->listing_complete ||
	    (p.listed = calloc(s->npm + 1, sizeof(*p.listed))) == NULL)
		return;
	for (i = 0; i < s->npm; i++)
		if (s->pm[i].uid != NULL)
			p.listed[p.nlisted++] = s->pm[i].uid;
	qsort(p.listed, p.nlisted, sizeof(*p.listed), cmp_str);
	state_foreach(s->st, collect_gone, &p);
	state_prune_strikes(s->st, is_listed, &p);
	/* Committed with the first flush or at the end (the worker's). */
	for (i = 0; i < p.ngone; i++) {
		state_forget(s->st, p.gone[i]);
		free(p.gone[i]);
	}
	free(p.gone);
	free(p.listed);
}

/*
 * The server lists a delivered UID for a message of another size: a new
 * message reusing the UID. The old record goes, so the new one can be
 * recorded when delivered.
 */
static void
forget_reused(struct session *s, const struct plan_msg *m)
{
	log_warnx(s->a->name,
	    "message %lu: uid %s was delivered with %llu bytes, LIST now says %llu: taken as a new message reusing the UID, fetched",
	    m->msgno, m->uid, (unsigned long long)m->delivered_size,
	    (unsigned long long)m->size);
	if (state_forget(s->st, m->uid) == -1)
		log_warn(s->a->name, "state: forgetting uid %s", m->uid);
}

/* Builds the plan from the listing and the state. */
static bool
make_plan(struct session *s)
{
	struct plan_policy pol = {.keep = s->a->keep,
	    .delete_after_days = s->a->delete_after_days,
	    .max_message_size = s->a->max_message_size,
	    .have_uidl = s->have_uidl};
	struct plan_totals tot;
	struct plan_msg *pm = s->pm;
	size_t i, ndup = 0;
	int r;

	if ((s->fetch = calloc(s->npm + 1, sizeof(*s->fetch))) == NULL ||
	    (s->dele = calloc(s->npm + 1, sizeof(*s->dele))) == NULL ||
	    (s->acked = calloc(s->npm + 1, sizeof(*s->acked))) == NULL ||
	    (s->flushed = calloc(s->npm + 1, sizeof(*s->flushed))) == NULL) {
		fail(s, SC_LOCAL, "out of memory");
		return false;
	}
	for (i = 0; i < s->npm; i++) {
		pm[i].delivered =
		    pm[i].uid != NULL &&
		    state_has(s->st, pm[i].uid, &pm[i].first_seen);
		if (pm[i].uid != NULL && !pm[i].delivered)
			pm[i].strikes =
			    state_strikes(s->st, pm[i].uid, &pm[i].last_strike);
		else if (pm[i].delivered)
			pm[i].size_known =
			    state_size(s->st, pm[i].uid, &pm[i].delivered_size);
	}
	pol.space_known = maildir_free_space(s->md, &pol.free_bytes) == 0;
	r = plan_decide(pm, s->npm, &pol, TESTHOOK_NOW(), &tot);
	for (i = 0; r == 0 && i < s->npm; i++) {
		if (pm[i].action == PLAN_FETCH)
			s->fetch[s->nfetch++] = pm[i].msgno;
		else if (pm[i].action == PLAN_DELETE)
			s->dele[s->ndele++] = pm[i].msgno;
		else if (pm[i].reason == PLAN_R_TOO_BIG &&
			 (pm[i].uid == NULL ||
			     state_note(s->st, pm[i].uid, TESTHOOK_NOW()) == 1))
			log_info(s->a->name,
			    "message %lu (uid %s, %llu bytes) is over max_message_size: left on the server (said once)",
			    pm[i].msgno, pm[i].uid != NULL ? pm[i].uid : "-",
			    (unsigned long long)pm[i].size);
		if (pm[i].reason == PLAN_R_DUP_UID)
			ndup++;
		if (pm[i].reason == PLAN_R_UID_REUSED &&
		    pm[i].action == PLAN_FETCH)
			forget_reused(s, &pm[i]);
	}
	if (ndup > 0)
		log_warnx(s->a->name,
		    "server fault: %zu messages share UIDs with others; they are fetched by number%s",
		    ndup,
		    s->a->keep ? " once, and never deleted by age"
			       : " and deleted once durable");
	if (r == -1) {
		/* Out of memory is temporary; the other is the account's. */
		if (errno == ENOMEM)
			fail(s, SC_LOCAL, "out of memory while planning");
		else
			fail(s, SC_CONFIG,
			    "keep = true needs a server with UIDL");
		return false;
	}
	prune_state(s);
	s->stats.left = tot.leave;
	if (tot.quarantined > 0)
		log_warnx(s->a->name,
		    "quarantined=%zu messages failed %d times: left on the server, retried a day after their last failure",
		    tot.quarantined, PLAN_STRIKES_MAX);
	if (tot.no_space > 0) {
		/* Fetch what fits; the poll still reports the disk. */
		log_warnx(s->a->name,
		    "error=local no_space=%zu messages do not fit on the Maildir's file system: left on the server",
		    tot.no_space);
		if (s->cls == SC_OK) {
			s->cls = SC_LOCAL;
			snprintf(s->msg, sizeof(s->msg),
			    "not enough free space for %zu messages",
			    tot.no_space);
		}
	}
	log_debug(s->a->name, "plan fetch=%zu delete=%zu leave=%zu bytes=%llu",
	    tot.fetch, tot.dele, tot.leave,
	    (unsigned long long)tot.fetch_bytes);
	return true;
}

static void
st_listing(struct session *s, const struct pop3_event *ev)
{
	switch (ev->type) {
	case POP3_EV_OK:
		if (ev->cmd != POP3_CMD_STAT)
			return;
		s->stats.listed = s->stat_count = ev->msgno;
		report(s,
		    &(struct session_info){
			.kind = SI_STAT, .count = ev->msgno, .size = ev->size});
		if (s->mode == SESSION_SERVERINFO) {
			send_simple(s, POP3_CMD_QUIT, 0);
			set_state(s, S_QUIT);
			return;
		}
		if ((s->lst = listing_new(s->stat_count)) == NULL) {
			fail(s, SC_LOCAL, "out of memory");
			return;
		}
		if (!s->listing_pipelined)
			send_simple(s, POP3_CMD_UIDL, 0);
		return;
	case POP3_EV_LIST:
	case POP3_EV_UIDL:
		listing_entry(s, ev);
		return;
	case POP3_EV_ERR:
		if (ev->cmd == POP3_CMD_UIDL) {
			s->have_uidl = false;
			if (!s->listing_pipelined)
				send_simple(s, POP3_CMD_LIST, 0);
			return;
		}
		fail(s, SC_PROTO, "%s refused: %s", pop3_cmd_name(ev->cmd),
		    ev->text);
		return;
	case POP3_EV_END:
		if (ev->cmd == POP3_CMD_UIDL) {
			s->have_uidl = true;
			if (!s->listing_pipelined)
				send_simple(s, POP3_CMD_LIST, 0);
			return;
		}
		if (!listing_done(s))
			return;
		if (s->mode == SESSION_LIST) {
			set_state(s, S_TOP);
			pump_top(s);
			return;
		}
		if (!make_plan(s))
			return;
		set_state(s, S_FETCH);
		pump(s);
		return;
	default:
		return;
	}
}

/* ---- fetching and deleting ---- */

/* Prepends the trace line of RFC 5321 section 4.4. */
static int
write_received(struct session *s)
{
	char buf[RECEIVED_MAX], host[256];
	struct received_info ri = {.from_host = s->a->host,
	    .by_host = host,
	    .version = POPFETCHD_VERSION,
	    .uid = msg_of(s, s->cur_msgno)->uid,
	    .user = s->a->user,
	    .when = time(NULL)};
	struct tm tm;
	int n;

	if (gethostname(host, sizeof(host)) == -1)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	localtime_r(&ri.when, &tm);
	ri.gmtoff = tm.tm_gmtoff;
	if ((n = received_format(buf, sizeof(buf), &ri)) < 0) {
		errno = EOVERFLOW;
		return -1;
	}
	return deliver_write(s->dl, buf, (size_t)n);
}

/*
 * Counts a failed attempt against a message, durably, so that one bad
 * message cannot block the mailbox poll after poll (see plan.h).
 */
static void
strike(struct session *s, unsigned long msgno, const char *why)
{
	const char *uid = msg_of(s, msgno)->uid;
	int n;

	if (!s->have_uidl || uid == NULL || s->st == NULL)
		return;
	/* Committed with the next flush or at the end (the worker's). */
	if ((n = state_strike(s->st, uid, TESTHOOK_NOW())) == -1)
		return;
	log_info(s->a->name, "message %lu (uid %s) failed: %s; strike=%d%s",
	    msgno, uid, why, n,
	    n >= PLAN_STRIKES_MAX ? " (quarantined for a day)" : "");
}

/* A local failure: stop fetching, delete nothing more than is durable. */
static void
local_failure(struct session *s, const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	deliver_abort(s->dl);
	s->receiving = false;
	log_warnx(s->a->name, "error=local %s; nothing more is fetched", why);
	if (s->cls == SC_OK) {
		s->cls = SC_LOCAL;
		snprintf(s->msg, sizeof(s->msg), "%s", why);
	}
	s->stop = true;
}

/*
 * Makes the batch durable on the worker; if DELE, its deletions are
 * queued when that is done (see disk_done()).
 */
static void
flush_batch(struct session *s, bool dele)
{
	if (deliver_pending(s->dl) == 0 || worker_busy(&s->job))
		return;
	s->flush_dele = dele;
	disk_job(s, DJ_FLUSH);
}

static void
retr_end(struct session *s)
{
	unsigned long long size;
	uint64_t listed = s->cur_listed;

	if (!s->receiving)
		return;
	s->receiving = false;
	if (!size_plausible(listed, s->cur_bytes)) {
		deliver_abort(s->dl);
		s->stats.failed++;
		log_warnx(s->a->name,
		    "message %lu: %llu bytes received where LIST said %llu: taken as cut short, not delivered, left on the server",
		    s->cur_msgno, (unsigned long long)s->cur_bytes,
		    (unsigned long long)listed);
		strike(s, s->cur_msgno, "received size far from LIST size");
		return;
	}
	if (deliver_end(s->dl, &size) == -1) {
		local_failure(s, "delivery of message %lu: %s", s->cur_msgno,
		    strerror(errno));
		return;
	}
	s->stats.fetched++;
	s->stats.bytes += size;
	/* Whole only if what follows parses: see unconfirmed_end(). */
	s->end_msgno = s->cur_msgno;
	s->end_size = size;
}

/*
 * A protocol error right after a message's terminator, in the same read,
 * casts doubt on that terminator (a server that ends lines with bare LF
 * where the body has ".", a lie): the message is taken out of the batch
 * before it can be recorded or deleted, and fetched again next time.
 */
static void
unconfirmed_end(struct session *s)
{
	if (s->end_msgno == 0 || s->dl == NULL ||
	    deliver_drop(s->dl, s->end_msgno) == -1)
		return;
	s->stats.fetched--;
	s->stats.bytes -= s->end_size;
	log_warnx(s->a->name,
	    "message %lu: protocol error right after its end: not delivered",
	    s->end_msgno);
	s->end_msgno = 0;
}

/*
 * Whether GOT bytes of message data (line ends as sent) can be the
 * message LIST called LISTED bytes. Servers differ in how they count
 * (some rewrite messages, some estimate), so only a gross difference is
 * evidence: less than half of a listed size past the first KiB (a cut
 * short message), more than twice it plus 64 KiB (a reply that is not
 * the message asked for, or never ends).
 */
static bool
size_plausible(uint64_t listed, uint64_t got)
{
	if (got < listed / 2 && listed - got > 1024)
		return false;
	return got <= SIZE_SLACK(listed);
}

/* Starts delivering the message whose RETR reply begins. */
static void
retr_begin(struct session *s, unsigned long msgno)
{
	const struct plan_msg *m = msg_of(s, msgno);
	/* A UID several messages share is no message's: none recorded. */
	const char *uid =
	    s->have_uidl && m->reason != PLAN_R_DUP_UID ? m->uid : NULL;

	s->cur_msgno = msgno;
	s->cur_bytes = 0;
	s->cur_listed = m->size;
	if (s->stop)
		return;
	if (deliver_begin(s->dl, msgno, uid,
		m->listed ? m->size : DELIVER_SIZE_UNKNOWN) == -1 ||
	    (s->a->received_header && write_received(s) == -1)) {
		local_failure(
		    s, "delivery of message %lu: %s", msgno, strerror(errno));
		return;
	}
	s->receiving = true;
}

/*
 * Writing the message in hand failed. A full disk or quota is the
 * account's trouble; any other error (EFBIG, EIO) may be this message's.
 */
static void
write_failed(struct session *s)
{
	int e = errno;

	if (e != ENOSPC && e != EDQUOT)
		strike(s, s->cur_msgno, strerror(e));
	local_failure(
	    s, "delivery of message %lu: %s", s->cur_msgno, strerror(e));
}

static void
retr_answered(struct session *s, unsigned long msgno)
{
	uint64_t size = msg_of(s, msgno)->size;

	s->retr_done++;
	s->inflight -= size < s->inflight ? size : s->inflight;
}

/*
 * Counts the message data of a RETR or TOP reply; a reply far longer than
 * the message LIST sized (or endless) ends the session.
 */
static bool
data_bounded(struct session *s, const struct pop3_event *ev)
{
	uint64_t listed = s->cur_listed;

	s->cur_bytes += ev->len;
	if (s->cur_bytes <= SIZE_SLACK(listed))
		return true;
	fail(s, SC_PROTO,
	    "%s %lu: over %llu bytes where LIST said %llu: not that message",
	    pop3_cmd_name(ev->cmd), ev->arg,
	    (unsigned long long)SIZE_SLACK(listed), (unsigned long long)listed);
	return false;
}

/*
 * Replies in the fetch window. The next commands go out from read_input()
 * once all that arrived is parsed (see unconfirmed_end()).
 */
static void
st_fetch(struct session *s, const struct pop3_event *ev)
{
	char why[POP3_LINE_MAX + 32];

	if (ev->cmd == POP3_CMD_RSET) {
		if (ev->type == POP3_EV_ERR) {
			/* Without QUIT the server commits no deletion. */
			fail(s, SC_LOCAL,
			    "RSET refused (%s): closed without QUIT so that nothing is deleted",
			    ev->text);
			return;
		}
		if (ev->type == POP3_EV_OK) {
			log_info(s->a->name,
			    "deletions of this poll undone (RSET): %zu message(s) stay on the server until the next poll",
			    s->dele_ok);
			s->dele_ok = 0;
		}
		return;
	}
	if (ev->cmd == POP3_CMD_DELE) {
		if (ev->type == POP3_EV_OK) {
			s->acked[s->dele_ok++] = ev->arg;
			TESTHOOK_CRASH_POINT("DELE acknowledged");
		} else if (ev->type == POP3_EV_ERR)
			log_warnx(s->a->name, "DELE %lu refused: %s", ev->arg,
			    ev->text);
		return;
	}
	switch (ev->type) {
	case POP3_EV_OK:
		retr_begin(s, ev->arg);
		return;
	case POP3_EV_DATA:
		if (!data_bounded(s, ev))
			return;
		if (s->receiving && deliver_write(s->dl, ev->data, ev->len))
			write_failed(s);
		return;
	case POP3_EV_END:
		retr_answered(s, ev->arg);
		retr_end(s);
		return;
	case POP3_EV_ERR:
		retr_answered(s, ev->arg);
		s->stats.failed++;
		log_warnx(s->a->name,
		    "RETR %lu refused: %s; left on the server", ev->arg,
		    reply_text(ev, why, sizeof(why)));
		strike(s, ev->arg, "RETR refused");
		return;
	default:
		return;
	}
}

static size_t
window(const struct session *s)
{
	switch (s->a->pipelining) {
	case CONF_PIPELINING_ON:
		return SESSION_WINDOW;
	case CONF_PIPELINING_OFF:
		return 1;
	case CONF_PIPELINING_AUTO:
		break;
	}
	return pop3_capa(s->pop3)->pipelining ? SESSION_WINDOW : 1;
}

/* Listed size of the next message to ask for. */
static uint64_t
next_size(const struct session *s)
{
	return msg_of(s, s->fetch[s->next_fetch])->size;
}

/* Whether another RETR may go: one is left, and it fits the budget. */
static bool
may_retr(const struct session *s)
{
	return !s->stop && !s->halt && s->next_fetch < s->nfetch &&
	       (s->inflight == 0 ||
		   s->inflight + next_size(s) <= SESSION_INFLIGHT_BYTES);
}

/* Keeps the window full: DELEs of durable messages first, then RETRs. */
static void
pump(struct session *s)
{
	size_t w = window(s);

	if (worker_busy(&s->job))
		return;
	if (s->state == S_FETCH && deliver_pending(s->dl) >= SESSION_BATCH)
		flush_batch(s, true);
	while (s->state == S_FETCH && pop3_pending(s->pop3) < w &&
	       !worker_busy(&s->job)) {
		if (!s->stop && s->next_dele < s->ndele)
			send_simple(s, POP3_CMD_DELE, s->dele[s->next_dele++]);
		else if (may_retr(s)) {
			s->inflight += next_size(s);
			send_simple(
			    s, POP3_CMD_RETR, s->fetch[s->next_fetch++]);
		} else if (deliver_pending(s->dl) > 0 &&
			   s->retr_done == s->next_fetch)
			flush_batch(s, true);
		else if (pop3_pending(s->pop3) == 0 && s->stop &&
			 s->next_dele > 0 && !s->rset) {
			/*
			 * A local failure pauses the account: nothing of
			 * this session is deleted. The messages stay
			 * recorded, so the next poll deletes them without
			 * fetching them again.
			 */
			s->rset = true;
			send_simple(s, POP3_CMD_RSET, 0);
		} else if (pop3_pending(s->pop3) == 0) {
			send_simple(s, POP3_CMD_QUIT, 0);
			set_state(s, S_QUIT);
		} else
			break;
	}
}

/* ---- --list: the headers of each message ---- */

/*
 * Copies the value of header NAME from the header block HDR into OUT,
 * folded lines joined and control characters shown as '?'.
 */
static void
header_value(
    const char *hdr, size_t len, const char *name, char *out, size_t outlen)
{
	size_t nlen = strlen(name), i = 0, o = 0;
	const char *end = hdr + len, *p = hdr, *nl;

	out[0] = '\0';
	for (; p < end; p = nl + 1) {
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		if ((size_t)(nl - p) > nlen &&
		    strncasecmp(p, name, nlen) == 0 && p[nlen] == ':')
			break;
	}
	if (p >= end)
		return;
	for (p += nlen + 1; p < end && o + 1 < outlen; p++, i++) {
		if (*p == '\n' &&
		    (p + 1 >= end || (p[1] != ' ' && p[1] != '\t')))
			break;
		if (*p == '\r' || *p == '\n')
			continue;
		if (o == 0 && (*p == ' ' || *p == '\t'))
			continue;
		out[o++] = (unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p;
	}
	out[o] = '\0';
}

static void
top_report(struct session *s, unsigned long msgno, bool ok)
{
	char from[256], date[128], subj[512];
	const struct plan_msg *m = msg_of(s, msgno);

	header_value(s->hdr, s->hdrlen, "From", from, sizeof(from));
	header_value(s->hdr, s->hdrlen, "Date", date, sizeof(date));
	header_value(s->hdr, s->hdrlen, "Subject", subj, sizeof(subj));
	if (!ok)
		snprintf(subj, sizeof(subj), "(TOP refused)");
	report(s, &(struct session_info){.kind = SI_MESSAGE,
		      .msgno = msgno,
		      .size = m->size,
		      .uid = m->uid != NULL ? m->uid : "",
		      .from = from,
		      .date = date,
		      .subj = subj});
}

static void
st_top(struct session *s, const struct pop3_event *ev)
{
	size_t n;

	switch (ev->type) {
	case POP3_EV_OK:
		s->hdrlen = 0;
		s->cur_bytes = 0;
		s->cur_listed = msg_of(s, ev->arg)->size;
		return;
	case POP3_EV_DATA:
		if (!data_bounded(s, ev))
			return;
		n = SESSION_HEADER_MAX - s->hdrlen;
		if (n > ev->len)
			n = ev->len;
		memcpy(s->hdr + s->hdrlen, ev->data, n);
		s->hdrlen += n;
		return;
	case POP3_EV_END:
	case POP3_EV_ERR:
		top_report(s, ev->arg, ev->type == POP3_EV_END);
		s->hdrlen = 0;
		s->top_done++;
		pump_top(s);
		return;
	default:
		return;
	}
}

/* Keeps TOP n 0 requests in flight, then QUIT. */
static void
pump_top(struct session *s)
{
	struct pop3_req r = {.cmd = POP3_CMD_TOP, .lines = 0};
	size_t w = window(s);

	if (s->hdr == NULL && (s->hdr = malloc(SESSION_HEADER_MAX)) == NULL) {
		fail(s, SC_LOCAL, "out of memory");
		return;
	}
	while (s->state == S_TOP && pop3_pending(s->pop3) < w) {
		if (s->next_top < s->npm) {
			r.msgno = s->pm[s->next_top++].msgno;
			send_req(s, &r);
		} else if (s->top_done == s->npm) {
			send_simple(s, POP3_CMD_QUIT, 0);
			set_state(s, S_QUIT);
		} else
			break;
	}
}

/*
 * The server has removed what this session deleted: forget those UIDs.
 * RFC 1939 lets a server compute UIDs from content, so a later message
 * may carry one of them; remembered, it would be deleted unread.
 */
static void
forget_deleted(struct session *s)
{
	const char *uid;
	size_t i;

	for (i = 0; i < s->dele_ok; i++)
		if ((uid = msg_of(s, s->acked[i])->uid) != NULL &&
		    state_forget(s->st, uid) == -1 && errno != ENOENT)
			log_warn(s->a->name, "state: forgetting uid %s", uid);
}

static void
st_quit(struct session *s, const struct pop3_event *ev)
{
	if (ev->type == POP3_EV_OK) {
		s->stats.deleted = s->dele_ok;
		forget_deleted(s);
		/*
		 * Messages meant to be fetched were left behind: a timer or
		 * cron job must not see success (exit 75, "busy": the
		 * server may give them next time).
		 */
		if (s->cls == SC_OK && s->stats.failed > 0) {
			s->cls = SC_BUSY;
			snprintf(s->msg, sizeof(s->msg),
			    "%zu message(s) not received: left on the server",
			    s->stats.failed);
		}
		finish(s);
	} else if (ev->type == POP3_EV_ERR)
		fail(s, SC_PROTO, "QUIT refused, deletions not committed: %s",
		    ev->text);
}

/* ---- dispatch ---- */

static void
handle_event(struct session *s, const struct pop3_event *ev)
{
	if (ev->type == POP3_EV_ERROR) {
		unconfirmed_end(s);
		fail(s, SC_PROTO, "protocol error: %s", ev->text);
		return;
	}
	/* Whatever parsed after a message's end confirms it. */
	s->end_msgno = 0;
	/* A reply ended (or a multi-line one began): the next is awaited. */
	if (ev->type != POP3_EV_DATA && ev->type != POP3_EV_CAPA &&
	    ev->type != POP3_EV_LIST && ev->type != POP3_EV_UIDL)
		awaited(s);
	trace_event(s, ev);
	switch (s->state) {
	case S_GREETING:
		st_greeting(s, ev);
		break;
	case S_CAPA:
		st_capa(s, ev);
		break;
	case S_STLS:
		st_stls(s, ev);
		break;
	case S_AUTH:
		st_auth(s, ev);
		break;
	case S_LISTING:
		st_listing(s, ev);
		break;
	case S_FETCH:
		st_fetch(s, ev);
		break;
	case S_TOP:
		st_top(s, ev);
		break;
	case S_QUIT:
		st_quit(s, ev);
		break;
	default:
		fail(s, SC_PROTO, "unexpected %s in state %s",
		    pop3_ev_name(ev->type), state_names[s->state]);
		break;
	}
}

/* Feeds what arrived to the engine, chunk by chunk, without copying. */
static void
read_input(struct session *s)
{
	struct evbuffer *in = net_input(s->net);
	struct evbuffer_iovec v;
	struct pop3_event ev;
	size_t n;

	/* Disk work under way: what arrived waits for resume_input(). */
	if (s->worker != NULL && worker_busy(&s->job))
		return;
	s->wait_bytes += evbuffer_get_length(in);
	if (!rate_ok(s))
		return;
	while (s->state != S_DONE && evbuffer_get_length(in) > 0) {
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		n = pop3_feed(s->pop3, v.iov_base, v.iov_len, &ev);
		/* Message data points into the buffer: drain after use. */
		if (ev.type != POP3_EV_NONE)
			handle_event(s, &ev);
		evbuffer_drain(in, n);
	}
	/* All that arrived parsed cleanly. */
	s->end_msgno = 0;
	if (s->state == S_FETCH)
		pump(s);
	if (s->state == S_STLS && s->stls_pending) {
		s->stls_pending = false;
		start_tls(s);
	}
}

/*
 * After disk work: what arrived meanwhile is parsed, then the transport
 * event that came in between (the end of the connection) is handled.
 */
static void
resume_input(struct session *s)
{
	if (s->net == NULL)
		return;
	read_input(s);
	if (s->net_pending && s->state != S_DONE) {
		s->net_pending = false;
		net_event(s->net, s->pending_ev, s);
	} else if (s->state == S_FETCH)
		pump(s);
}

static void
net_event(struct net *n, enum net_ev ev, void *arg)
{
	struct session *s = arg;
	char why[512];

	if (s->state == S_DONE)
		return;
	/* The bytes before the end are parsed first (resume_input()). */
	if (s->worker != NULL && worker_busy(&s->job) && ev != NET_DATA) {
		s->net_pending = true;
		s->pending_ev = ev;
		return;
	}
	switch (ev) {
	case NET_CONNECTED:
		log_debug(s->a->name, "connected");
		if (s->a->tls == CONF_TLS_IMPLICIT)
			start_tls(s);
		else
			set_state(s, S_GREETING);
		return;
	case NET_TLS_READY:
		tls_ready(s);
		return;
	case NET_DATA:
		read_input(s);
		return;
	case NET_TIMEOUT:
		fail(s, SC_NET, "%s:%u: %s", s->a->host, s->a->port,
		    net_error(n));
		return;
	case NET_ERROR:
		if (s->state == S_TLS) {
			tls_describe_failure(net_ssl(n), s->a, net_ssl_error(n),
			    why, sizeof(why));
			fail(s, SC_NET, "%s:%u: %s", s->a->host, s->a->port,
			    why);
			return;
		}
		fail(s, SC_NET, "%s:%u: %s", s->a->host, s->a->port,
		    net_error(n));
		return;
	case NET_CLOSED:
		if (s->state == S_QUIT && pop3_pending(s->pop3) == 0)
			return;
		fail(s, SC_NET, "%s:%u: connection closed in state %s",
		    s->a->host, s->a->port, state_names[s->state]);
		return;
	}
}
