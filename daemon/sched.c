/*
 * Poll scheduling: timers with jitter, a fair queue under the connection
 * caps, back-off by error class, reload by configuration generations,
 * graceful stop.
 *
 * Every account has a slot, in one of four states: idle (no timer: paused
 * until a reload, or between a stop and the exit), armed (its timer runs),
 * queued (waiting for a connection), running (a session polls it). The
 * per-host bookkeeping is a hash from host name to a struct host that
 * counts running polls and keeps the host's queue, so starting a poll
 * costs O(1) whatever the number of accounts.
 */
#include <sys/queue.h>

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/event.h>

#include "backoff.h"
#include "conf.h"
#include "log.h"
#include "loopstat.h"
#include "worker.h"
#include "sched.h"
#include "session.h"
#include "status.h"
#include "monotime.h"
#include "oauth2.h"

/* A poll's error message is kept up to this length. */
#define SCHED_MSG_MAX 256

/* A configuration and the number of slots and sched pointers using it. */
struct gen {
	struct conf *conf;
	unsigned refs;
};

/*
 * One server name. Entries live as long as the scheduler: one small
 * struct per distinct host name ever configured.
 */
struct host {
	char *name;
	struct host *hnext; /* hash chain */
	unsigned running;   /* polls counted against the cap */
	unsigned releasing; /* of which ended, not yet released */
	TAILQ_HEAD(, slot) waiting;
	TAILQ_ENTRY(host) ready_entry;	 /* in sc->ready */
	TAILQ_ENTRY(host) release_entry; /* in sc->releasing */
	bool ready; /* has waiting polls and room for one more */
};

enum slot_state { SLOT_IDLE, SLOT_ARMED, SLOT_QUEUED, SLOT_RUNNING };

struct slot {
	struct sched *sc;
	struct gen *gen;	 /* reference held */
	const struct account *a; /* inside gen->conf */
	struct host *host;
	/* Settings of a reload that came during the running poll. */
	struct gen *next_gen;
	const struct account *next_a;
	struct session *sess;
	struct event *timer;
	double due; /* monotonic seconds, when armed */
	enum slot_state state;
	bool removed;		 /* dropped by a reload, freed after its poll */
	long login_delay;	 /* the server's LOGIN-DELAY, -1 if none */
	double started;		 /* monotonic seconds, last poll; 0 never */
	enum session_class last; /* how the previous poll ended */
	unsigned streak;	 /* polls in a row that ended in LAST */
	bool fallback_said;	 /* the Maildir's sync fallback was logged */
	struct status_account rec; /* what --status and the metrics show */
	TAILQ_ENTRY(slot) entry;   /* in sc->slots */
	TAILQ_ENTRY(slot) qentry;  /* in host->waiting */
};

TAILQ_HEAD(slot_list, slot);
TAILQ_HEAD(host_list, host);

struct sched {
	struct event_base *base;
	struct evdns_base *dns;
	struct loopstat *stall; /* the benchmark's loop-stall meter, or NULL */
	struct worker *worker;	/* the sessions' disk work */
	struct gen *cur;
	char *const *only;
	size_t nonly;
	bool once, stopping, abandoned;
	struct slot_list slots;
	size_t nslots; /* not counting removed ones */
	size_t running, queued, armed;
	struct host **hosts; /* hash buckets */
	size_t nbuckets, nhosts;
	struct host_list ready;	    /* round robin over hosts with work */
	struct host_list releasing; /* hosts with polls ended this turn */
	struct event *release;
	struct event *grace;
	enum session_class worst;
	unsigned long long delivered;
	void (*change_cb)(void *);
	void *change_arg;
};

static void slot_timer(evutil_socket_t fd, short what, void *arg);
static void grace_over(evutil_socket_t fd, short what, void *arg);
static void release_cb(evutil_socket_t fd, short what, void *arg);
static void slot_done(void *arg, enum session_class cls,
    const struct session_stats *st, const char *msg);
static void try_start(struct sched *sc);
static void maybe_exit(struct sched *sc);

/* --- configuration generations ---------------------------------------- */

static struct gen *
gen_new(struct conf *conf)
{
	struct gen *g;

	if ((g = calloc(1, sizeof(*g))) == NULL)
		return NULL;
	g->conf = conf;
	g->refs = 1;
	return g;
}

static struct gen *
gen_ref(struct gen *g)
{
	g->refs++;
	return g;
}

static void
gen_unref(struct gen **gp)
{
	struct gen *g = *gp;

	*gp = NULL;
	if (g == NULL || --g->refs > 0)
		return;
	conf_free(&g->conf);
	free(g);
}

/* --- hosts -------------------------------------------------------------- */

/* FNV-1a; host names compare without case, as DNS does. */
static uint32_t
hash_str(const char *s, bool fold)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++) {
		h ^= fold ? (unsigned char)tolower((unsigned char)*s)
			  : (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

static void
hosts_grow(struct sched *sc)
{
	size_t n = sc->nbuckets ? sc->nbuckets * 2 : 64, i;
	struct host **tab, *h, *next;

	if ((tab = calloc(n, sizeof(*tab))) == NULL)
		fatalx("out of memory");
	for (i = 0; i < sc->nbuckets; i++)
		for (h = sc->hosts[i]; h != NULL; h = next) {
			next = h->hnext;
			h->hnext = tab[hash_str(h->name, true) & (n - 1)];
			tab[hash_str(h->name, true) & (n - 1)] = h;
		}
	free(sc->hosts);
	sc->hosts = tab;
	sc->nbuckets = n;
}

/* The entry for NAME, created when first seen. */
static struct host *
host_get(struct sched *sc, const char *name)
{
	struct host *h;
	size_t b;

	if (sc->nhosts >= sc->nbuckets)
		hosts_grow(sc);
	b = hash_str(name, true) & (sc->nbuckets - 1);
	for (h = sc->hosts[b]; h != NULL; h = h->hnext)
		if (strcasecmp(h->name, name) == 0)
			return h;
	if ((h = calloc(1, sizeof(*h))) == NULL ||
	    (h->name = strdup(name)) == NULL)
		fatalx("out of memory");
	TAILQ_INIT(&h->waiting);
	h->hnext = sc->hosts[b];
	sc->hosts[b] = h;
	sc->nhosts++;
	return h;
}

/* Puts H in or out of the ready list, as its queue and count say. */
static void
host_update(struct sched *sc, struct host *h)
{
	bool want = !TAILQ_EMPTY(&h->waiting) &&
		    h->running < sc->cur->conf->max_per_host;

	if (want && !h->ready)
		TAILQ_INSERT_TAIL(&sc->ready, h, ready_entry);
	else if (!want && h->ready)
		TAILQ_REMOVE(&sc->ready, h, ready_entry);
	h->ready = want;
}

static void
hosts_update_all(struct sched *sc)
{
	struct host *h;
	size_t i;

	for (i = 0; i < sc->nbuckets; i++)
		for (h = sc->hosts[i]; h != NULL; h = h->hnext)
			host_update(sc, h);
}

/* --- timers and the queue ----------------------------------------------- */

/* A random draw in [0, 1], for the jitter and spread of backoff.h. */
static double
draw(void)
{
	return (double)random() / (double)RAND_MAX;
}

/* SECS, moved at random by up to BACKOFF_JITTER of itself. */
static double
jitter(double secs)
{
	return backoff_jitter(secs, draw());
}

/* When a new account polls first: soon, spread over a few seconds. */
static double
first_delay(const struct account *a)
{
	return backoff_first(a->poll_interval, draw());
}

static void
arm(struct slot *sl, double secs)
{
	struct timeval tv;

	if (secs < 0)
		secs = 0;
	tv.tv_sec = (time_t)secs;
	tv.tv_usec = (suseconds_t)((secs - (double)tv.tv_sec) * 1e6);
	if (sl->state != SLOT_ARMED)
		sl->sc->armed++;
	sl->state = SLOT_ARMED;
	sl->due = monotime() + secs;
	evtimer_add(sl->timer, &tv);
}

static void
disarm(struct slot *sl)
{
	if (sl->state != SLOT_ARMED)
		return;
	evtimer_del(sl->timer);
	sl->sc->armed--;
	sl->state = SLOT_IDLE;
}

static void
enqueue(struct slot *sl)
{
	struct sched *sc = sl->sc;

	disarm(sl);
	sl->state = SLOT_QUEUED;
	sc->queued++;
	TAILQ_INSERT_TAIL(&sl->host->waiting, sl, qentry);
	host_update(sc, sl->host);
}

static void
dequeue(struct slot *sl)
{
	struct sched *sc = sl->sc;

	if (sl->state != SLOT_QUEUED)
		return;
	TAILQ_REMOVE(&sl->host->waiting, sl, qentry);
	sc->queued--;
	sl->state = SLOT_IDLE;
	host_update(sc, sl->host);
}

static void
changed(struct sched *sc)
{
	if (sc->change_cb != NULL)
		sc->change_cb(sc->change_arg);
}

/* --- slots -------------------------------------------------------------- */

static struct slot *
slot_new(struct sched *sc, struct gen *g, const struct account *a)
{
	struct slot *sl;

	if ((sl = calloc(1, sizeof(*sl))) == NULL ||
	    (sl->timer = evtimer_new(sc->base, slot_timer, sl)) == NULL)
		fatalx("out of memory");
	sl->sc = sc;
	sl->gen = gen_ref(g);
	sl->a = a;
	sl->host = host_get(sc, a->host);
	sl->last = SC_OK;
	sl->login_delay = -1;
	TAILQ_INSERT_TAIL(&sc->slots, sl, entry);
	sc->nslots++;
	return sl;
}

/* Frees a slot that is not running. */
static void
slot_free(struct slot *sl)
{
	struct sched *sc = sl->sc;

	disarm(sl);
	dequeue(sl);
	event_free(sl->timer);
	gen_unref(&sl->gen);
	gen_unref(&sl->next_gen);
	TAILQ_REMOVE(&sc->slots, sl, entry);
	if (!sl->removed)
		sc->nslots--;
	free(sl);
}

/* Gives a slot that is not running the settings A of generation G. */
static void
slot_apply(struct slot *sl, struct gen *g, const struct account *a)
{
	struct host *h = host_get(sl->sc, a->host);
	bool queued = sl->state == SLOT_QUEUED;

	gen_ref(g);
	gen_unref(&sl->gen);
	sl->gen = g;
	sl->a = a;
	if (h == sl->host)
		return;
	dequeue(sl);
	sl->host = h;
	if (queued)
		enqueue(sl);
}

/* Applies the settings a reload left for after the poll; true if any. */
static bool
slot_apply_pending(struct slot *sl)
{
	if (sl->next_gen == NULL)
		return false;
	slot_apply(sl, sl->next_gen, sl->next_a);
	gen_unref(&sl->next_gen);
	sl->next_a = NULL;
	return true;
}

static void
start_poll(struct slot *sl)
{
	struct sched *sc = sl->sc;

	sl->sess = session_start(
	    sc->base, sc->dns, sc->worker, sl->gen->conf, sl->a, slot_done, sl);
	if (sl->sess == NULL)
		fatalx("out of memory");
	sl->started = monotime();
	status_poll_started(&sl->rec, time(NULL));
	sl->state = SLOT_RUNNING;
	sc->running++;
	sl->host->running++;
	host_update(sc, sl->host);
}

/*
 * Starts queued polls as far as the caps allow: one from the first ready
 * host, which then goes to the back of the line (round robin), so one
 * server with many accounts does not starve the others.
 */
static void
try_start(struct sched *sc)
{
	struct host *h;
	struct slot *sl;
	bool started = false;

	while (!sc->stopping && sc->running < sc->cur->conf->max_connections &&
	       (h = TAILQ_FIRST(&sc->ready)) != NULL) {
		sl = TAILQ_FIRST(&h->waiting);
		dequeue(sl);
		start_poll(sl);
		if (h->ready) {
			TAILQ_REMOVE(&sc->ready, h, ready_entry);
			TAILQ_INSERT_TAIL(&sc->ready, h, ready_entry);
		}
		started = true;
	}
	if (started)
		changed(sc);
}

static void
slot_timer(evutil_socket_t fd, short what, void *arg)
{
	struct slot *sl = arg;
	struct sched *sc = sl->sc;

	sc->armed--;
	sl->state = SLOT_IDLE;
	if (sc->stopping)
		return;
	enqueue(sl);
	try_start(sc);
}

/* --- the end of a poll -------------------------------------------------- */

/*
 * A poll that ended still counts against the caps until the next loop
 * turn: libevent closes a freed connection's socket from finalizer
 * callbacks later in the current turn, and a poll started before that
 * would briefly be one connection over max_connections.
 */
static void
release_later(struct sched *sc, struct host *h)
{
	static const struct timeval now = {0, 0};

	if (h->releasing++ == 0)
		TAILQ_INSERT_TAIL(&sc->releasing, h, release_entry);
	evtimer_add(sc->release, &now);
}

static void
release_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sched *sc = arg;
	struct host *h;

	while ((h = TAILQ_FIRST(&sc->releasing)) != NULL) {
		TAILQ_REMOVE(&sc->releasing, h, release_entry);
		h->running -= h->releasing;
		sc->running -= h->releasing;
		h->releasing = 0;
		host_update(sc, h);
	}
	try_start(sc);
	changed(sc);
	maybe_exit(sc);
}

/* Seconds until the server allows this account's next login, or 0. */
static double
login_wait(const struct slot *sl)
{
	return backoff_login_wait(sl->login_delay, sl->started, monotime());
}

/* NEXT (seconds, or -1: not scheduled), no earlier than LOGIN-DELAY. */
static double
respect_login_delay(const struct slot *sl, double next)
{
	double wait = login_wait(sl), later = backoff_not_before(next, wait);

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
	status_poll_ended(&sl->rec, cls, st, msg, time(NULL));
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

	sl->last = cls;
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
	    "listed=%zu fetched=%zu bytes=%llu deleted=%zu left=%zu failed=%zu secs=%.2f result=%s%s",
	    st->listed, st->fetched, (unsigned long long)st->bytes, st->deleted,
	    st->left, st->failed, st->secs, backoff_class_name(cls), when);
}

/* Called from the session's own event, not from inside it: may free it. */
static void
slot_done(void *arg, enum session_class cls, const struct session_stats *stp,
    const char *msgp)
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
	sl->state = SLOT_IDLE;
	release_later(sc, sl->host);
	record(sl, cls, st, msg);
	if (st->interrupted)
		sc->abandoned = true;
	/* Kept from earlier polls when a failed one learnt nothing new. */
	if (st->login_delay >= 0)
		sl->login_delay = st->login_delay;
	if (st->sync_fallback != NULL && !sl->fallback_said) {
		log_info(sl->a->name,
		    "maildir sync=file fs=%s: syncfs is not reliable there, each message is fsynced instead (said once)",
		    st->sync_fallback);
		sl->fallback_said = true;
	}
	if (sl->removed) {
		note_poll(sl, cls, st, -1);
		log_info(sl->a->name, "removed from the configuration");
		slot_free(sl);
	} else {
		reloaded = slot_apply_pending(sl);
		if (!sc->once && !sc->stopping)
			next = respect_login_delay(
			    sl, backoff_next(cls, sl->a->poll_interval,
				    sl->streak, reloaded, draw()));
		note_change(sl, cls, msg, next);
		note_poll(sl, cls, st, next);
		if (next >= 0)
			arm(sl, next);
	}
	changed(sc);
}

/* --- life cycle --------------------------------------------------------- */

static bool
selected(const struct sched *sc, const char *name)
{
	size_t i;

	if (sc->nonly == 0)
		return true;
	for (i = 0; i < sc->nonly; i++)
		if (strcmp(sc->only[i], name) == 0)
			return true;
	return false;
}

struct sched *
sched_new(struct event_base *base, struct evdns_base *dns, struct conf *conf,
    bool once, char *const *only, size_t nonly)
{
	struct sched *sc;
	size_t i;

	if ((sc = calloc(1, sizeof(*sc))) == NULL ||
	    (sc->cur = gen_new(conf)) == NULL ||
	    (sc->grace = evtimer_new(base, grace_over, sc)) == NULL ||
	    (sc->release = evtimer_new(base, release_cb, sc)) == NULL ||
	    (sc->worker = worker_new(base, WORKER_THREADS)) == NULL) {
		if (sc != NULL) {
			if (sc->grace != NULL)
				event_free(sc->grace);
			if (sc->release != NULL)
				event_free(sc->release);
			free(sc->cur);
		}
		free(sc);
		conf_free(&conf);
		return NULL;
	}
	sc->base = base;
	sc->dns = dns;
	sc->once = once;
	sc->only = only;
	sc->nonly = nonly;
	TAILQ_INIT(&sc->slots);
	TAILQ_INIT(&sc->ready);
	TAILQ_INIT(&sc->releasing);
	for (i = 0; i < conf->naccounts; i++)
		if (selected(sc, conf->accounts[i].name))
			slot_new(sc, sc->cur, &conf->accounts[i]);
	sc->stall = loopstat_new(base);
	return sc;
}

void
sched_free(struct sched **scp)
{
	struct sched *sc = *scp;
	struct slot *sl;
	struct host *h, *next;
	size_t i;

	if (sc == NULL)
		return;
	loopstat_free(&sc->stall);
	while ((sl = TAILQ_FIRST(&sc->slots)) != NULL) {
		/* Before its configuration: the session points into it. */
		if (sl->state == SLOT_RUNNING) {
			session_free(&sl->sess);
			sl->state = SLOT_IDLE;
		}
		slot_free(sl);
	}
	for (i = 0; i < sc->nbuckets; i++)
		for (h = sc->hosts[i]; h != NULL; h = next) {
			next = h->hnext;
			free(h->name);
			free(h);
		}
	free(sc->hosts);
	/* After the sessions: each waited for its own disk work. */
	worker_free(&sc->worker);
	event_free(sc->grace);
	event_free(sc->release);
	gen_unref(&sc->cur);
	free(sc);
	*scp = NULL;
}

void
sched_start(struct sched *sc)
{
	struct slot *sl;

	TAILQ_FOREACH(sl, &sc->slots, entry)
	{
		if (sc->once)
			enqueue(sl);
		else
			arm(sl, first_delay(sl->a));
	}
	if (!sc->once)
		log_info(NULL,
		    "started accounts=%zu max_connections=%u max_per_host=%u",
		    sc->nslots, sc->cur->conf->max_connections,
		    sc->cur->conf->max_per_host);
	try_start(sc);
	changed(sc);
	maybe_exit(sc);
}

static void
maybe_exit(struct sched *sc)
{
	if (sc->running > 0)
		return;
	if (sc->stopping || (sc->once && sc->queued == 0 && sc->armed == 0)) {
		evtimer_del(sc->grace);
		event_base_loopexit(sc->base, NULL);
	}
}

/* Ends the polls still running after the grace period. */
static void
abandon(struct sched *sc)
{
	struct slot *sl;
	size_t n = 0;

	TAILQ_FOREACH(sl, &sc->slots, entry)
	{
		if (sl->state != SLOT_RUNNING)
			continue;
		/* Safe: nothing is deleted without QUIT. */
		session_free(&sl->sess);
		sl->state = SLOT_IDLE;
		sl->host->running--;
		sc->running--;
		log_warnx(sl->a->name,
		    "poll abandoned at shutdown; what it delivered is kept, the rest stays on the server");
		n++;
	}
	sc->abandoned = n > 0;
	log_info(NULL, "stopped abandoned=%zu", n);
	evtimer_del(sc->grace);
	event_base_loopexit(sc->base, NULL);
}

static void
grace_over(evutil_socket_t fd, short what, void *arg)
{
	struct sched *sc = arg;

	log_warnx(NULL, "grace period over with %zu poll(s) still running",
	    sc->running);
	abandon(sc);
}

void
sched_stop(struct sched *sc)
{
	struct timeval tv = {0, 0};
	struct slot *sl;
	unsigned grace = 0;
	size_t n = 0;

	if (sc->stopping) {
		abandon(sc);
		return;
	}
	sc->stopping = true;
	TAILQ_FOREACH(sl, &sc->slots, entry)
	{
		disarm(sl);
		dequeue(sl);
		if (sl->state != SLOT_RUNNING)
			continue;
		n++;
		if (sl->a->timeout > grace)
			grace = sl->a->timeout;
	}
	/*
	 * After the count: a session that ends at once reports from a later
	 * loop turn, never from inside this call.
	 */
	TAILQ_FOREACH(sl, &sc->slots, entry)
	if (sl->state == SLOT_RUNNING)
		session_stop(sl->sess);
	log_info(NULL, "stopping running=%zu grace=%u", n, grace);
	if (n > 0) {
		tv.tv_sec = grace;
		evtimer_add(sc->grace, &tv);
	}
	changed(sc);
	maybe_exit(sc);
}

bool
sched_stopping(const struct sched *sc)
{
	return sc->stopping;
}

/* --- reload ------------------------------------------------------------- */

/* Account names of a configuration, hashed: index + 1, 0 when empty. */
struct name_index {
	size_t *tab;
	size_t mask;
};

static void
index_build(struct name_index *ix, const struct conf *conf)
{
	size_t n = 16, i, b;

	while (n < 2 * conf->naccounts)
		n *= 2;
	if ((ix->tab = calloc(n, sizeof(*ix->tab))) == NULL)
		fatalx("out of memory");
	ix->mask = n - 1;
	for (i = 0; i < conf->naccounts; i++) {
		b = hash_str(conf->accounts[i].name, false) & ix->mask;
		while (ix->tab[b] != 0)
			b = (b + 1) & ix->mask;
		ix->tab[b] = i + 1;
	}
}

/* The index of the account called NAME in CONF, or naccounts. */
static size_t
index_find(
    const struct name_index *ix, const struct conf *conf, const char *name)
{
	size_t b = hash_str(name, false) & ix->mask;

	for (; ix->tab[b] != 0; b = (b + 1) & ix->mask)
		if (strcmp(conf->accounts[ix->tab[b] - 1].name, name) == 0)
			return ix->tab[b] - 1;
	return conf->naccounts;
}

/* A reload dropped the account: now, or after its running poll. */
static void
slot_drop(struct slot *sl)
{
	if (sl->state != SLOT_RUNNING) {
		log_info(sl->a->name, "removed from the configuration");
		slot_free(sl);
		return;
	}
	sl->removed = true;
	sl->sc->nslots--;
	gen_unref(&sl->next_gen);
}

/* A reload kept the account, maybe with changed settings A. */
static void
slot_update(struct slot *sl, struct gen *g, const struct account *a)
{
	unsigned old_interval = sl->a->poll_interval;
	double left;

	if (sl->state == SLOT_RUNNING) {
		gen_unref(&sl->next_gen);
		sl->next_gen = gen_ref(g);
		sl->next_a = a;
		return;
	}
	slot_apply(sl, g, a);
	if (sl->sc->once || sl->state == SLOT_QUEUED)
		return;
	/* The password may have been fixed: try again soon. */
	if (sl->last == SC_AUTH || sl->last == SC_CONFIG) {
		sl->streak = 0;
		arm(sl, first_delay(a));
		return;
	}
	/* A shorter interval should not wait for the old, longer one. */
	left = sl->due - monotime();
	if (sl->state == SLOT_ARMED && sl->last == SC_OK &&
	    a->poll_interval < old_interval && left > a->poll_interval)
		arm(sl, jitter(a->poll_interval));
}

void
sched_reload(struct sched *sc, struct conf *conf)
{
	struct name_index ix;
	struct slot *sl, *next;
	struct gen *g;
	bool *kept;
	size_t i, added = 0, removed = 0;

	if ((g = gen_new(conf)) == NULL ||
	    (kept = calloc(conf->naccounts + 1, sizeof(*kept))) == NULL)
		fatalx("out of memory");
	index_build(&ix, conf);
	for (sl = TAILQ_FIRST(&sc->slots); sl != NULL; sl = next) {
		next = TAILQ_NEXT(sl, entry);
		if (sl->removed)
			continue;
		i = index_find(&ix, conf, sl->a->name);
		if (i == conf->naccounts || !selected(sc, sl->a->name)) {
			slot_drop(sl);
			removed++;
			continue;
		}
		kept[i] = true;
		slot_update(sl, g, &conf->accounts[i]);
	}
	for (i = 0; i < conf->naccounts; i++) {
		if (kept[i] || !selected(sc, conf->accounts[i].name))
			continue;
		sl = slot_new(sc, g, &conf->accounts[i]);
		if (!sc->once && !sc->stopping)
			arm(sl, first_delay(sl->a));
		added++;
	}
	free(ix.tab);
	free(kept);
	gen_unref(&sc->cur);
	sc->cur = g;
	/* max_per_host may have changed. */
	hosts_update_all(sc);
	log_info(NULL, "reloaded file=%s accounts=%zu added=%zu removed=%zu",
	    conf->path, sc->nslots, added, removed);
	try_start(sc);
	changed(sc);
}

void
sched_poll_now(struct sched *sc)
{
	struct slot *sl;
	size_t n = 0, delayed = 0;
	double wait;

	if (sc->stopping)
		return;
	TAILQ_FOREACH(sl, &sc->slots, entry)
	{
		if (sl->removed || sl->state == SLOT_RUNNING ||
		    sl->state == SLOT_QUEUED)
			continue;
		n++;
		/* Not even on request: the server would refuse the login. */
		if ((wait = login_wait(sl)) > 0) {
			if (sl->state != SLOT_ARMED ||
			    sl->due > monotime() + wait)
				arm(sl, wait);
			delayed++;
			continue;
		}
		enqueue(sl);
	}
	if (delayed > 0)
		log_info(NULL, "poll-now accounts=%zu login_delayed=%zu", n,
		    delayed);
	else
		log_info(NULL, "poll-now accounts=%zu", n);
	try_start(sc);
	changed(sc);
}

/* --- reporting ---------------------------------------------------------- */

void
sched_on_change(struct sched *sc, void (*cb)(void *), void *arg)
{
	sc->change_cb = cb;
	sc->change_arg = arg;
}

/* An OAuth2 account's token times, as its last refresh saw them. */
static void
slot_token(const struct slot *sl, struct status_account *r)
{
	struct oauth2_times t;

	r->token_known = sl->a->oauth2.on && oauth2_times(sl->a->name, &t);
	if (!r->token_known)
		return;
	r->token_obtained = t.refresh_obtained;
	r->token_expires = t.refresh_expires;
	r->access_expires = t.access_expires;
}

/* SL's record, with what only the scheduler knows filled in. */
static void
slot_report(const struct slot *sl, struct status_account *r)
{
	const struct sched *sc = sl->sc;

	*r = sl->rec;
	r->name = sl->a->name;
	r->streak = sl->streak;
	r->next = 0;
	slot_token(sl, r);
	switch (sl->state) {
	case SLOT_RUNNING:
		r->state = STATUS_POLLING;
		break;
	case SLOT_QUEUED:
		r->state = STATUS_QUEUED;
		break;
	case SLOT_ARMED:
		r->state = sl->last == SC_OK ? STATUS_WAITING : STATUS_BACKOFF;
		r->next = time(NULL) + (time_t)(sl->due - monotime() + 0.5);
		break;
	default:
		/* Idle after a configuration error: until a reload. */
		r->state = sl->last == SC_CONFIG && !sc->once && !sc->stopping
			       ? STATUS_PAUSED
			       : STATUS_IDLE;
	}
}

void
sched_each_account(const struct sched *sc,
    void (*visit)(void *varg, const struct status_account *r), void *varg)
{
	struct status_account r;
	const struct slot *sl;

	TAILQ_FOREACH(sl, &sc->slots, entry)
	{
		if (sl->removed)
			continue;
		slot_report(sl, &r);
		visit(varg, &r);
	}
}

void
sched_each_session(const struct sched *sc,
    void (*visit)(void *varg, const struct account *a, const struct session *s),
    void *varg)
{
	const struct slot *sl;

	TAILQ_FOREACH(sl, &sc->slots, entry)
	{
		if (sl->sess != NULL)
			visit(varg, sl->a, sl->sess);
	}
}

/* Counts one record into the tally behind STATUS=. */
static void
tally_visit(void *varg, const struct status_account *r)
{
	status_tally_add(varg, r);
}

void
sched_status(const struct sched *sc, char *buf, size_t len)
{
	struct status_tally t = {0};

	sched_each_account(sc, tally_visit, &t);
	status_tally_line(
	    &t, sc->stopping, sc->delivered, time(NULL), buf, len);
}

int
sched_exit_status(const struct sched *sc)
{
	enum session_class worst = sc->worst;

	/* An interrupted run is a temporary failure: the next one resumes. */
	if (sc->abandoned)
		worst = backoff_worst(worst, SC_NET);
	return backoff_exit_status(worst);
}
