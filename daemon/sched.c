/* Poll scheduling with connection caps and back-off. */
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include <event2/event.h>

#include "conf.h"
#include "log.h"
#include "sched.h"
#include "session.h"

/* The longest back-off after failures, unless poll_interval is longer. */
#define SCHED_BACKOFF_MAX 3600

struct slot {
	struct sched *sc;
	const struct account *a;
	struct session *sess;
	struct event *timer;
	struct slot *next_queued;
	bool queued;
	unsigned failures;
};

struct sched {
	struct event_base *base;
	struct evdns_base *dns;
	const struct conf *conf;
	bool once, stopping;
	struct slot *slots;
	size_t nslots;
	struct slot *qhead, **qtail; /* waiting for a connection */
	size_t running;
	enum session_class worst;
};

static void slot_timer(evutil_socket_t fd, short what, void *arg);
static void try_start(struct sched *sc);

static bool
selected(const char *name, char *const *only, size_t nonly)
{
	size_t i;

	if (nonly == 0)
		return true;
	for (i = 0; i < nonly; i++)
		if (strcmp(only[i], name) == 0)
			return true;
	return false;
}

struct sched *
sched_new(struct event_base *base, struct evdns_base *dns,
    const struct conf *conf, bool once, char *const *only, size_t nonly)
{
	struct sched *sc;
	size_t i;

	if ((sc = calloc(1, sizeof(*sc))) == NULL ||
	    (sc->slots = calloc(conf->naccounts + 1, sizeof(*sc->slots))) ==
		NULL) {
		free(sc);
		return NULL;
	}
	sc->base = base;
	sc->dns = dns;
	sc->conf = conf;
	sc->once = once;
	sc->qtail = &sc->qhead;
	for (i = 0; i < conf->naccounts; i++) {
		struct slot *sl = &sc->slots[sc->nslots];

		if (!selected(conf->accounts[i].name, only, nonly))
			continue;
		sl->sc = sc;
		sl->a = &conf->accounts[i];
		sl->timer = evtimer_new(base, slot_timer, sl);
		if (sl->timer == NULL)
			fatalx("out of memory");
		sc->nslots++;
	}
	return sc;
}

void
sched_free(struct sched **scp)
{
	struct sched *sc = *scp;
	size_t i;

	if (sc == NULL)
		return;
	for (i = 0; i < sc->nslots; i++) {
		session_free(&sc->slots[i].sess);
		if (sc->slots[i].timer != NULL)
			event_free(sc->slots[i].timer);
	}
	free(sc->slots);
	free(sc);
	*scp = NULL;
}

static void
arm(struct slot *sl, unsigned secs)
{
	struct timeval tv = {(time_t)secs, 0};

	/* Spread polls so that many accounts do not start together. */
	if (secs > 0)
		tv.tv_usec = (suseconds_t)(random() % 1000000);
	evtimer_add(sl->timer, &tv);
}

void
sched_start(struct sched *sc)
{
	size_t i;
	unsigned spread;

	for (i = 0; i < sc->nslots; i++) {
		spread = sc->slots[i].a->poll_interval < 30
			     ? sc->slots[i].a->poll_interval
			     : 30;
		arm(&sc->slots[i],
		    sc->once ? 0 : (unsigned)(random() % (spread + 1)));
	}
	if (sc->nslots == 0 && sc->once)
		event_base_loopexit(sc->base, NULL);
}

static void
maybe_exit(struct sched *sc)
{
	size_t i;

	if (sc->running > 0)
		return;
	if (sc->stopping) {
		event_base_loopexit(sc->base, NULL);
		return;
	}
	if (!sc->once)
		return;
	for (i = 0; i < sc->nslots; i++)
		if (evtimer_pending(sc->slots[i].timer, NULL) ||
		    sc->slots[i].queued)
			return;
	event_base_loopexit(sc->base, NULL);
}

void
sched_stop(struct sched *sc)
{
	size_t i;

	sc->stopping = true;
	for (i = 0; i < sc->nslots; i++)
		evtimer_del(sc->slots[i].timer);
	sc->qhead = NULL;
	sc->qtail = &sc->qhead;
	for (i = 0; i < sc->nslots; i++)
		sc->slots[i].queued = false;
	log_info(NULL, "stopping: %zu poll(s) still running", sc->running);
	maybe_exit(sc);
}

static unsigned
next_delay(const struct slot *sl, enum session_class cls)
{
	unsigned base = sl->a->poll_interval, d = base, cap;
	unsigned i;

	if (cls == SC_OK)
		return base;
	cap = base > SCHED_BACKOFF_MAX ? base : SCHED_BACKOFF_MAX;
	/* Authentication failures back off hard: retrying will not help. */
	if (cls == SC_AUTH)
		return cap;
	for (i = 1; i < sl->failures && d < cap; i++)
		d *= 2;
	return d < cap ? d : cap;
}

static int
class_severity(enum session_class cls)
{
	switch (cls) {
	case SC_OK:
		return 0;
	case SC_NET:
	case SC_BUSY:
	case SC_PROTO:
		return 1;
	case SC_AUTH:
		return 2;
	case SC_LOCAL:
		return 3;
	case SC_CONFIG:
	case SC_COUNT:
		break;
	}
	return 4;
}

static void
session_done(void *arg, enum session_class cls, const struct session_stats *st,
    const char *msg)
{
	struct slot *sl = arg;
	struct sched *sc = sl->sc;

	log_info(sl->a->name,
	    "listed=%zu fetched=%zu bytes=%llu deleted=%zu left=%zu "
	    "failed=%zu secs=%.2f result=%s",
	    st->listed, st->fetched, (unsigned long long)st->bytes, st->deleted,
	    st->left, st->failed, st->secs, session_class_name(cls));
	(void)msg;
	/* Called from the session's own event, not from inside it. */
	session_free(&sl->sess);
	sc->running--;
	if (class_severity(cls) > class_severity(sc->worst))
		sc->worst = cls;
	sl->failures = cls == SC_OK ? 0 : sl->failures + 1;
	if (!sc->once && !sc->stopping)
		arm(sl, next_delay(sl, cls));
	try_start(sc);
	maybe_exit(sc);
}

static size_t
running_on(const struct sched *sc, const char *host)
{
	size_t i, n = 0;

	for (i = 0; i < sc->nslots; i++)
		if (sc->slots[i].sess != NULL &&
		    strcmp(sc->slots[i].a->host, host) == 0)
			n++;
	return n;
}

/* Starts queued polls in order, as far as the caps allow. */
static void
try_start(struct sched *sc)
{
	struct slot **pp = &sc->qhead, *sl;

	while ((sl = *pp) != NULL && sc->running < sc->conf->max_connections) {
		if (running_on(sc, sl->a->host) >= sc->conf->max_per_host) {
			pp = &sl->next_queued;
			continue;
		}
		*pp = sl->next_queued;
		if (*pp == NULL)
			sc->qtail = pp;
		sl->queued = false;
		sl->next_queued = NULL;
		sl->sess = session_start(
		    sc->base, sc->dns, sc->conf, sl->a, session_done, sl);
		if (sl->sess == NULL)
			fatalx("out of memory");
		sc->running++;
	}
}

static void
slot_timer(evutil_socket_t fd, short what, void *arg)
{
	struct slot *sl = arg;
	struct sched *sc = sl->sc;

	if (sc->stopping || sl->sess != NULL || sl->queued)
		return;
	sl->queued = true;
	*sc->qtail = sl;
	sc->qtail = &sl->next_queued;
	try_start(sc);
}

int
sched_exit_status(const struct sched *sc)
{
	switch (sc->worst) {
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
