/*
 * The end of a poll: the caps released on the next loop turn, the
 * account's record, the next poll by the result's class (back-off, a
 * server's LOGIN-DELAY), and what the log says of it.
 */
#include <sys/queue.h>

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/event.h>

#include "backoff.h"
#include "conf.h"
#include "log.h"
#include "monotime.h"
#include "sched.h"
#include "sched_priv.h"
#include "session.h"

/* A poll's error message is kept up to this length. */
#define SCHED_MSG_MAX 256

/* Applies the settings a reload left for after the poll; true if any. */
static bool
slot_apply_pending(struct slot *sl)
{
	if (sl->next_gen == NULL)
		return false;
	sched_slot_apply(sl, sl->next_gen, sl->next_a,
	    strcasecmp(sl->host->name, sl->next_a->host) != 0);
	sched_gen_unref(&sl->next_gen);
	sl->next_a = NULL;
	return true;
}

/*
 * A poll that ended still counts against the caps until the next loop
 * turn: libevent closes a freed connection's socket from finalizer
 * callbacks later in the current turn, and a poll started before that
 * would briefly be one connection over max_connections. The same
 * next-turn event starts what sched_try_start() left for later.
 */
static void
recheck_later(struct sched *sc)
{
	static const struct timeval now = {0, 0};

	evtimer_add(sc->release, &now);
}

static void
release_later(struct sched *sc, struct host *h)
{
	if (h->releasing++ == 0)
		TAILQ_INSERT_TAIL(&sc->releasing, h, release_entry);
	recheck_later(sc);
}

/*
 * The poll's connection is closed while its last commit runs: another
 * poll may take its place under the caps (the account's own next poll
 * waits for the end, as the slot still runs).
 */
void
sched_slot_closed(void *arg)
{
	struct slot *sl = arg;

	sl->closed = true;
	release_later(sl->sc, sl->host);
}

void
sched_release_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched *sc = arg;
	struct host *h;

	while ((h = TAILQ_FIRST(&sc->releasing)) != NULL) {
		TAILQ_REMOVE(&sc->releasing, h, release_entry);
		h->running -= h->releasing;
		sc->running -= h->releasing;
		h->releasing = 0;
		sched_host_update(sc, h);
	}
	sched_try_start(sc);
	sched_changed(sc);
	sched_maybe_exit(sc);
}

/* Seconds until the server allows this account's next login, or 0. */
double
sched_login_wait(const struct slot *sl)
{
	return backoff_login_wait(sl->login_delay, sl->started, monotime());
}

/* NEXT (seconds, or -1: not scheduled), no earlier than LOGIN-DELAY. */
static double
respect_login_delay(const struct slot *sl, double next)
{
	double wait = sched_login_wait(sl),
	       later = backoff_not_before(next, wait);

	if (later != next)
		log_debug(sl->a->name,
		    "next poll in %.0f s, as LOGIN-DELAY asks", later);
	return later;
}

/* Counts the poll's result into the totals and the slot's streak. */
static void
record(struct slot *sl, enum session_class cls, const struct session_stats *st,
    const char *msg)
{
	struct sched *sc = sl->sc;

	sc->worst = backoff_worst(sc->worst, cls);
	sc->delivered += st->fetched;
	sched_rec_ended(sl, cls, st, msg, time(NULL));
	sl->streak = cls == sl->last ? sl->streak + 1 : 1;
}

/*
 * One line when an account's condition changes, saying what happens next:
 * the session logs each failure, this says what the daemon does about it.
 */
static void
note_change(
    struct slot *sl, enum session_class cls, const char *msg, double next)
{
	const struct account *a = sl->a;
	enum session_class was = sl->last;

	sched_set_last(sl, cls);
	if (cls == was || sl->sc->once || sl->sc->stopping)
		return;
	switch (cls) {
	case SC_OK:
		log_info(a->name, "recovered=%s polls work again",
		    backoff_class_name(was));
		break;
	case SC_AUTH:
		log_warnx(a->name,
		    "AUTHENTICATION REFUSED by %s:%u for user \"%s\": %s; next attempt in %.0f s; fix the password (or its source), then reload (SIGHUP) or poll now (SIGUSR1)",
		    a->host, a->port, a->user, msg, next);
		break;
	case SC_LOCAL:
		log_warnx(a->name,
		    "cannot deliver locally: %s; nothing is fetched or deleted until this is fixed; retrying every %u s",
		    msg, a->poll_interval);
		break;
	case SC_CONFIG:
		log_warnx(a->name,
		    "account paused until the configuration is reloaded (SIGHUP): %s",
		    msg);
		break;
	case SC_BUSY:
		/* Not backed off: whatever was busy may be free next time. */
		log_info(a->name,
		    "failing=busy next attempt in %.0f s, the normal interval",
		    next);
		break;
	default:
		log_info(a->name,
		    "failing=%s next attempt in %.0f s, backing off while it fails",
		    backoff_class_name(cls), next);
		break;
	}
}

/*
 * The poll's summary line: a notice when it fetched, deleted or failed
 * something, so that a quiet run (-q) shows it and only it.
 */
static void
note_poll(const struct slot *sl, enum session_class cls,
    const struct session_stats *st, double next)
{
	void (*say)(const char *, const char *, ...) LOG_PRINTF(2, 3) =
	    log_info;
	char when[32] = "";

	if (next >= 0)
		snprintf(when, sizeof(when), " next=%.0f", next);
	else if (cls == SC_CONFIG && !sl->sc->once && !sl->sc->stopping)
		snprintf(when, sizeof(when), " next=reload");
	if (cls != SC_OK || st->fetched > 0 || st->deleted > 0 ||
	    st->failed > 0)
		say = log_notice;
	say(sl->a->name,
	    "listed=%zu fetched=%zu bytes=%llu deleted=%zu left=%zu failed=%zu secs=%.2f held=%.2f result=%s%s",
	    st->listed, st->fetched, (unsigned long long)st->bytes, st->deleted,
	    st->left, st->failed, st->secs, st->held, backoff_class_name(cls),
	    when);
}

/* Called from the session's own event, not from inside it: may free it. */
void
sched_slot_done(void *arg, enum session_class cls,
    const struct session_stats *stp, const char *msgp)
{
	struct slot *sl = arg;
	struct sched *sc = sl->sc;
	/* Copies: both live inside the session freed below. */
	const struct session_stats copy = *stp, *st = &copy;
	char msg[SCHED_MSG_MAX];
	double next = -1;
	bool reloaded;

	snprintf(msg, sizeof(msg), "%s", msgp);
	session_free(&sl->sess);
	sched_set_state(sl, SLOT_IDLE);
	sc->polling--;
	if (!sl->closed)
		release_later(sc, sl->host);
	else /* its place is free already: only the turn's checks */
		recheck_later(sc);
	sl->closed = false;
	record(sl, cls, st, msg);
	if (st->interrupted)
		sc->abandoned = true;
	/* Kept from earlier polls when a failed one learnt nothing new. */
	if (st->login_delay >= 0)
		sl->login_delay = st->login_delay > INT32_MAX
				      ? INT32_MAX
				      : (int32_t)st->login_delay;
	if (st->sync_fallback != NULL && !sl->fallback_said) {
		log_info(sl->a->name,
		    "maildir sync=file fs=%s: syncfs is not reliable there, each message is fsynced instead (said once)",
		    st->sync_fallback);
		sl->fallback_said = true;
	}
	if (sl->removed) {
		note_poll(sl, cls, st, -1);
		log_info(sl->a->name, "removed from the configuration");
		sched_slot_free(sl);
	} else {
		reloaded = slot_apply_pending(sl);
		if (!sc->once && !sc->stopping)
			next = respect_login_delay(
			    sl, backoff_next(cls, sl->a->poll_interval,
				    sl->streak, reloaded, sched_draw()));
		note_change(sl, cls, msg, next);
		note_poll(sl, cls, st, next);
		if (next >= 0)
			sched_arm(sl, next);
	}
	sched_changed(sc);
}
