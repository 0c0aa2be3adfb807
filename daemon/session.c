/*
 * One poll of one account: its lifecycle. The session starts (opening
 * what it writes to, getting the secret, connecting), is stopped, and
 * ends once: the end makes what arrived durable and reports on a later
 * loop turn. The states and their handlers live in the other session_*.c
 * files (see session_priv.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "backoff.h"
#include "conf.h"
#include "deliver.h"
#include "listing.h"
#include "log.h"
#include "monotime.h"
#include "session_priv.h"
#include "tls.h"
#include "wipe.h"

#define SESSION_X_NAME(e, n) n,
static const char *const state_names[] = {SESSION_STATES(SESSION_X_NAME)};
_Static_assert(sizeof(state_names) / sizeof(state_names[0]) == S_COUNT,
    "state_names out of step");

/* What s->secret points to when the session holds no secret. */
static char secret_none[1];

const char *
session_state_name(enum session_state st)
{
	return (unsigned)st < S_COUNT ? state_names[st] : "?";
}

/*
 * Changes state; a session that has ended stays ended (a send that
 * failed inside a handler ends it before the handler names its next
 * state).
 */
void
session_set_state(struct session *s, enum session_state st)
{
	if (s->state == S_DONE)
		return;
	if (s->state != st)
		log_debug(s->a->name, "state %s -> %s", state_names[s->state],
		    state_names[st]);
	s->state = st;
}

static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	double now = monotime();

	s->stats.secs = now - s->start;
	if (s->holding)
		s->stats.held += now - s->held_since;
	s->cb(s->cbarg, s->cls, &s->stats, s->msg);
}

/* The connection is of no more use: closed, and the owner told. */
static void
closed_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	net_free(&s->net);
	/* Once: the end may close early, then the final stage again. */
	if (s->closed_told)
		return;
	s->closed_told = true;
	if (s->closed_cb != NULL)
		s->closed_cb(s->cbarg);
}

void
session_on_closed(struct session *s, void (*fn)(void *arg))
{
	s->closed_cb = fn;
}

static void
login_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	session_fail(s, SC_NET,
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
		session_fail(s, SC_LOCAL, "out of memory");
		return;
	}

	s->net = net_connect(s->base, s->dns, a->host, a->port, a->timeout,
	    session_transport_event, s);
	if (s->net == NULL) {
		session_fail(s, SC_LOCAL, "out of memory");
		return;
	}
	log_debug(a->name, "connecting to %s:%u", a->host, a->port);
}

static void
secret_got(
    void *arg, const char *secret, enum secret_fail fail, const char *err)
{
	/* A token helper may fail for a while (network); files do not. */
	static const enum session_class class[] = {
	    [SECRET_FAIL_CONFIG] = SC_CONFIG,
	    [SECRET_FAIL_TEMP] = SC_BUSY,
	    [SECRET_FAIL_AUTH] = SC_AUTH,
	    [SECRET_FAIL_LOCAL] = SC_LOCAL,
	};
	struct session *s = arg;

	s->sreq = NULL;
	/* --serverinfo looks at the server all the same, without a login. */
	if (secret == NULL && s->mode == SESSION_SERVERINFO) {
		snprintf(s->no_secret, sizeof(s->no_secret), "%s",
		    err != NULL && err[0] != '\0' ? err : "no secret");
		connect_now(s);
		return;
	}
	if (secret == NULL) {
		/* A failure without a kind is the account's to fix. */
		session_fail(s,
		    (unsigned)fail < sizeof(class) / sizeof(class[0]) &&
			    class[fail] != SC_OK
			? class[fail]
			: SC_CONFIG,
		    "password: %s", err);
		return;
	}
	session_secret_drop(s);
	if ((s->secret = strdup(secret)) == NULL) {
		session_secret_drop(s);
		session_fail(s, SC_LOCAL, "out of memory");
		return;
	}
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
		session_disk_job(s, DJ_OPEN);
		/* Meanwhile: the login waits for it (session_start_auth()). */
		session_start_remote(s);
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
	s->start = monotime();
	s->stats.login_delay = -1;
	s->secret = secret_none;
	if ((s->done_ev = event_new(base, -1, 0, done_cb, s)) == NULL ||
	    (s->closed_ev = event_new(base, -1, 0, closed_cb, s)) == NULL ||
	    (s->pop3 = pop3_new()) == NULL) {
		session_free(&s);
		return NULL;
	}
	/* A fetching session opens its Maildir and state beside it. */
	if (mode != SESSION_FETCH)
		session_start_remote(s);
	return s;
}

void
session_secret_drop(struct session *s)
{
	if (s->secret != NULL && s->secret != secret_none) {
		wipe(s->secret, strlen(s->secret));
		free(s->secret);
	}
	s->secret = secret_none;
}

/* Gets the secret, then connects. */
void
session_start_remote(struct session *s)
{
	const struct account *a = s->a;
	char err[512];

	if (a->tls != CONF_TLS_NONE &&
	    (s->ctx = tls_ctx_get(a, err, sizeof(err))) == NULL) {
		session_fail(s, SC_CONFIG, "tls: %s", err);
		return;
	}
	if (!a->tls_verify && a->tls != CONF_TLS_NONE)
		log_warnx(a->name,
		    "warning: certificate verification is off (tls_verify = false)");
	/* The secret first: a failing password_command costs no login. */
	if (a->auth == CONF_AUTH_EXTERNAL)
		connect_now(s);
	else if ((s->sreq = secret_fetch(s->base, a, secret_got, s)) == NULL)
		session_fail(s, SC_LOCAL, "out of memory");
}

/* Sessions left to a disk that did not return: see session_free(). */
static size_t orphans;

size_t
session_orphans(void)
{
	return orphans;
}

void
session_free(struct session **sp)
{
	struct session *s = *sp;
	bool held;

	if (s == NULL)
		return;
	*sp = NULL;
	/*
	 * Torn down while its disk work runs: only when the daemon exits.
	 * Both jobs are taken back (or disowned) either way.
	 */
	held = !spool_cancel(s->sp);
	if (s->worker != NULL && worker_busy(&s->job) &&
	    !worker_cancel(s->worker, &s->job))
		held = true;
	if (held) {
		orphans++;
		/* Its owner is gone: nothing more of it may call back. */
		event_del(s->closed_ev);
		event_del(s->done_ev);
		s->closed_cb = NULL;
		/* Killed or cut before a message in hand could end. */
		session_target_free(s);
		net_free(&s->net);
		secret_cancel(&s->sreq);
		session_secret_drop(s);
		session_ir_drop(s);
		return;
	}
	secret_cancel(&s->sreq);
	net_free(&s->net);
	pop3_free(&s->pop3);
	spool_free(&s->sp);
	deliver_free(&s->dl);
	session_target_free(s);
	if (s->ctx != NULL)
		SSL_CTX_free(s->ctx);
	if (s->done_ev != NULL)
		event_free(s->done_ev);
	if (s->closed_ev != NULL)
		event_free(s->closed_ev);
	if (s->login_ev != NULL)
		event_free(s->login_ev);
	session_secret_drop(s);
	session_ir_drop(s);
	auth_scram_free(&s->scram);
	listing_free(&s->lst);
	free(s->acked);
	free(s->flushed);
	free(s->strikes_due);
	free(s->hdr);
	free(s->fetch);
	free(s->dele);
	free(s);
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
		session_pump(s);
		return;
	default:
		/* Nothing is delivered or deleted before the listing. */
		log_info(
		    s->a->name, "stopped in state %s", state_names[s->state]);
		session_finish(s);
		return;
	}
}

/*
 * The poll's result becomes CLS with the message MSG, unless it already
 * holds something as serious: a disk found full stays the poll's result
 * (exit 74) whatever temporary trouble follows.
 */
static void
outcome(struct session *s, enum session_class cls, const char *msg)
{
	if (s->cls != SC_OK && backoff_worst(s->cls, cls) == s->cls)
		return;
	s->cls = cls;
	snprintf(s->msg, sizeof(s->msg), "%s", msg);
}

void
session_outcome(struct session *s, enum session_class cls, const char *fmt, ...)
{
	char msg[sizeof(s->msg)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	outcome(s, cls, msg);
}

/* Ends the session with CLS; the callback runs on a later loop turn. */
void
session_fail(struct session *s, enum session_class cls, const char *fmt, ...)
{
	char msg[sizeof(s->msg)];
	va_list ap;

	if (s->state == S_DONE)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_warnx(s->a->name, "error=%s %s", backoff_class_name(cls), msg);
	outcome(s, cls, msg);
	session_finish(s);
}

void
session_finish(struct session *s)
{
	session_set_state(s, S_DONE);
	session_tls_keep(s);
	/* The message in hand when the session broke off counts against it. */
	s->strike_in_hand =
	    s->receiving && (s->cls == SC_NET || s->cls == SC_PROTO);
	s->receiving = false;
	secret_cancel(&s->sreq);
	session_secret_drop(s);
	session_ir_drop(s);
	auth_scram_free(&s->scram);
	/*
	 * Disk work under way goes on to final_stage() when it ends. The
	 * connection is of no more use meanwhile (nothing more is sent, so
	 * nothing is deleted): closed now, so that a disk that does not
	 * answer does not keep the poll's place under max_connections and
	 * max_per_host from the other accounts.
	 */
	if (s->worker == NULL || !worker_busy(&s->job))
		session_final_stage(s);
	if (!s->final_begun)
		event_active(s->closed_ev, 0, 0);
}

/*
 * Messages complete in tmp/ are made durable whatever ended the session,
 * so the next poll does not fetch them again (without QUIT none of them
 * is deleted), and the state is committed, so the next start has nothing
 * to recover. Then the done callback, on a loop turn of its own: the
 * transport is freed with the session, and this may run inside one of
 * its callbacks. Until then S_DONE makes every further event a no-op.
 */
void
session_final_stage(struct session *s)
{
	/*
	 * Once: a disk job's completion may end the session itself (a
	 * failure, a connection closed meanwhile) and then look again.
	 */
	if (s->final_begun)
		return;
	/* The writer's job under way calls again when it ends. */
	if (spool_busy(s->sp))
		return;
	s->final_begun = true;
	if (s->strike_in_hand) {
		s->strike_in_hand = false;
		session_strike(
		    s, s->cur_msgno, "session ended while receiving it");
	}
	if (s->dl != NULL && s->worker != NULL) {
		session_disk_job(s, DJ_FINAL);
		/* The server has nothing more to say: its slot is free. */
		event_active(s->closed_ev, 0, 0);
		return;
	}
	event_active(s->done_ev, 0, 0);
}

static enum session_phase
phase_of(enum session_state st)
{
	if (st < S_LISTING)
		return SESSION_PH_LOGIN;
	switch (st) {
	case S_LISTING:
		return SESSION_PH_LISTING;
	case S_FETCH:
		return SESSION_PH_FETCH;
	case S_TOP:
		return SESSION_PH_TOP;
	default:
		return SESSION_PH_END;
	}
}

/*
 * The plan's fetches are the listed messages marked PLAN_FETCH, in the
 * order of s->fetch, and replies come in the order asked: the first
 * retr_done of them are answered.
 */
void
session_progress(const struct session *s, struct session_progress *p)
{
	size_t i, k = 0;

	memset(p, 0, sizeof(*p));
	p->phase = phase_of(s->state);
	p->secs = monotime() - s->start;
	if (s->mode == SESSION_LIST) {
		p->done = s->top_done;
		p->total = s->npm; /* 0 until listed */
		return;
	}
	p->done = s->retr_done;
	p->total = s->nfetch;
	for (i = 0; i < s->npm && k < s->nfetch; i++) {
		if (s->pm[i].action != PLAN_FETCH)
			continue;
		p->total_bytes += s->pm[i].size;
		if (k++ < s->retr_done)
			p->bytes += s->pm[i].size;
	}
	if (s->receiving)
		p->bytes +=
		    s->cur_bytes < s->cur_listed ? s->cur_bytes : s->cur_listed;
}

/* Hands what a probing session learnt to its caller. */
void
session_report(struct session *s, const struct session_info *si)
{
	if (s->info != NULL)
		s->info(s->cbarg, si);
}
