/*
 * Poll scheduling: timers with jitter, a fair queue under the connection
 * caps, graceful stop. What a poll's end does (back-off by error class,
 * the caps released) is in sched_end.c, reloads in sched_reload.c, the
 * records and what they show in sched_report.c.
 *
 * Every account has a slot, in one of four states: idle (no timer: paused
 * until a reload, or between a stop and the exit), armed (its node is in
 * the timer queue), queued (waiting for a connection), running (a session
 * polls it). The per-host bookkeeping is a hash from host name to a
 * struct host that counts running polls and keeps the host's queue, and
 * the timers are one heap: every event costs O(1) or O(log n), whatever
 * the number of accounts.
 */
#include <sys/queue.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/event.h>

#include "backoff.h"
#include "conf.h"
#include "intern.h"
#include "log.h"
#include "worker.h"
#include "sched.h"
#include "sched_priv.h"
#include "session.h"
#include "monotime.h"

#define SLOT_OF_TIMER(n) \
	((struct slot *)(void *)((char *)(n)-offsetof(struct slot, timer)))

static void slot_fire(void *arg, struct timerq_node *n);
static void grace_over(evutil_socket_t fd, short what, void *arg);

/* --- configuration generations ---------------------------------------- */

struct gen *
sched_gen_new(struct conf *conf)
{
	struct gen *g;

	if ((g = calloc(1, sizeof(*g))) == NULL)
		return NULL;
	g->conf = conf;
	g->refs = 1;
	return g;
}

struct gen *
sched_gen_ref(struct gen *g)
{
	g->refs++;
	return g;
}

void
sched_gen_unref(struct gen **gp)
{
	struct gen *g = *gp;

	*gp = NULL;
	if (g == NULL || --g->refs > 0)
		return;
	conf_free(&g->conf);
	free(g);
}

/* --- timers and the queue ----------------------------------------------- */

/* A random draw in [0, 1], for the jitter and spread of backoff.h. */
double
sched_draw(void)
{
	return (double)random() / (double)RAND_MAX;
}

/* SECS, moved at random by up to BACKOFF_JITTER of itself. */
double
sched_jitter(double secs)
{
	return backoff_jitter(secs, sched_draw());
}

/* When a new account polls first: soon, spread over a few seconds. */
double
sched_first_delay(const struct account *a)
{
	return backoff_first(a->poll_interval, sched_draw());
}

void
sched_arm(struct slot *sl, double secs)
{
	if (sl->state != SLOT_ARMED)
		sl->sc->armed++;
	sched_set_state(sl, SLOT_ARMED);
	timerq_arm(sl->sc->timers, &sl->timer, secs);
}

static void
disarm(struct slot *sl)
{
	if (sl->state != SLOT_ARMED)
		return;
	timerq_cancel(sl->sc->timers, &sl->timer);
	sl->sc->armed--;
	sched_set_state(sl, SLOT_IDLE);
}

static void
enqueue(struct slot *sl)
{
	struct sched *sc = sl->sc;

	disarm(sl);
	sched_set_state(sl, SLOT_QUEUED);
	sc->queued++;
	TAILQ_INSERT_TAIL(&sl->host->waiting, sl, qentry);
	sched_host_update(sc, sl->host);
}

static void
dequeue(struct slot *sl)
{
	struct sched *sc = sl->sc;

	if (sl->state != SLOT_QUEUED)
		return;
	TAILQ_REMOVE(&sl->host->waiting, sl, qentry);
	sc->queued--;
	sched_set_state(sl, SLOT_IDLE);
	sched_host_update(sc, sl->host);
}

void
sched_changed(struct sched *sc)
{
	if (sc->change_cb != NULL)
		sc->change_cb(sc->change_arg);
}

/* --- slots -------------------------------------------------------------- */

struct slot *
sched_slot_new(struct sched *sc, struct gen *g, const struct account *a)
{
	struct slot *sl;

	if ((sl = calloc(1, sizeof(*sl))) == NULL)
		fatalx("out of memory");
	timerq_node_init(&sl->timer);
	heap_node_init(&sl->failing);
	sl->sc = sc;
	sl->gen = sched_gen_ref(g);
	sl->a = a;
	sl->host = sched_host_get(sc, a->host);
	sl->last = SC_OK;
	sl->login_delay = -1;
	sl->seq = sc->seq++;
	TAILQ_INSERT_TAIL(&sc->slots, sl, entry);
	sc->nslots++;
	sched_count(sl, 1);
	return sl;
}

/* Frees a slot that is not running. */
void
sched_slot_free(struct slot *sl)
{
	struct sched *sc = sl->sc;

	disarm(sl);
	dequeue(sl);
	sched_rec_forget(sl);
	sched_gen_unref(&sl->gen);
	sched_gen_unref(&sl->next_gen);
	/* A reload moving slots over must not step on a freed one. */
	sched_pass_forget(sc, sl);
	TAILQ_REMOVE(&sc->slots, sl, entry);
	if (!sl->removed) {
		sched_count(sl, -1);
		sc->nslots--;
	}
	free(sl);
}

/*
 * Gives a slot that is not running the settings A of generation G, on
 * the queue of A's host if HOST_CHANGED.
 */
void
sched_slot_apply(
    struct slot *sl, struct gen *g, const struct account *a, bool host_changed)
{
	bool queued = sl->state == SLOT_QUEUED;
	struct host *h;

	sched_gen_ref(g);
	sched_gen_unref(&sl->gen);
	sl->gen = g;
	sl->a = a;
	if (!host_changed || (h = sched_host_get(sl->sc, a->host)) == sl->host)
		return;
	dequeue(sl);
	sl->host = h;
	if (queued)
		enqueue(sl);
}

static void
start_poll(struct slot *sl)
{
	struct sched *sc = sl->sc;

	sl->sess = session_start(sc->base, sc->dns, sc->worker, sl->gen->conf,
	    sl->a, sched_slot_done, sl);
	if (sl->sess == NULL)
		fatalx("out of memory");
	session_on_closed(sl->sess, sched_slot_closed);
	sl->closed = false;
	sl->started = monotime();
	sched_rec_started(sl, time(NULL));
	sched_set_state(sl, SLOT_RUNNING);
	sc->running++;
	sc->polling++;
	sl->host->running++;
	sched_host_update(sc, sl->host);
}

/*
 * Starts queued polls as far as the caps allow: one from the first ready
 * host, which then goes to the back of the line (round robin), so one
 * server with many accounts does not starve the others.
 */
void
sched_try_start(struct sched *sc)
{
	static const struct timeval now = {0, 0};
	struct host *h;
	struct slot *sl;
	unsigned started = 0;
	double first = 0;
	bool over = false;

	while (!sc->stopping && sc->running < sc->cur->conf->max_connections &&
	       (h = TAILQ_FIRST(&sc->ready)) != NULL) {
		/*
		 * A thousand polls due at once would hold the loop for as
		 * long as all their starts take: the rest start on later
		 * turns, with the loop's other events in between.
		 */
		if (started == SCHED_STARTS_PER_TURN || over) {
			evtimer_add(sc->release, &now);
			break;
		}
		if (started == 0)
			first = monotime();
		sl = TAILQ_FIRST(&h->waiting);
		dequeue(sl);
		start_poll(sl);
		/* The clock start_poll() read after the start. */
		over = sl->started - first >= SCHED_STARTS_BUDGET;
		if (h->ready) {
			TAILQ_REMOVE(&sc->ready, h, ready_entry);
			TAILQ_INSERT_TAIL(&sc->ready, h, ready_entry);
		}
		started++;
	}
	if (started > 0)
		sched_changed(sc);
}

/* The slot's timer is due (taken out of the queue already). */
static void
slot_fire(void *arg, struct timerq_node *n)
{
	struct slot *sl = SLOT_OF_TIMER(n);
	struct sched *sc = arg;

	sc->armed--;
	sched_set_state(sl, SLOT_IDLE);
	if (sc->stopping)
		return;
	enqueue(sl);
	sched_try_start(sc);
}

/* --- life cycle --------------------------------------------------------- */

bool
sched_selected(const struct sched *sc, const char *name)
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
	    (sc->cur = sched_gen_new(conf)) == NULL ||
	    (sc->grace = evtimer_new(base, grace_over, sc)) == NULL ||
	    (sc->release = evtimer_new(base, sched_release_cb, sc)) == NULL ||
	    (sc->timers = timerq_new(base, slot_fire, sc)) == NULL ||
	    (sc->msgs = intern_new()) == NULL ||
	    (sc->worker = worker_new(base, WORKER_THREADS, WORKER_DISK)) ==
		NULL) {
		if (sc != NULL) {
			if (sc->grace != NULL)
				event_free(sc->grace);
			if (sc->release != NULL)
				event_free(sc->release);
			timerq_free(&sc->timers);
			intern_free(&sc->msgs);
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
	sched_failing_init(sc);
	for (i = 0; i < conf->naccounts; i++)
		if (sched_selected(sc, conf->accounts[i].name))
			sched_slot_new(sc, sc->cur, &conf->accounts[i]);
	return sc;
}

void
sched_free(struct sched **scp)
{
	struct sched *sc = *scp;
	struct slot *sl;

	if (sc == NULL)
		return;
	sched_pass_free(sc);
	while ((sl = TAILQ_FIRST(&sc->slots)) != NULL) {
		/* Before its configuration: the session points into it. */
		if (sl->state == SLOT_RUNNING) {
			session_free(&sl->sess);
			sched_set_state(sl, SLOT_IDLE);
		}
		sched_slot_free(sl);
	}
	sched_hosts_free(sc);
	/* After the sessions: each waited for its own disk work. */
	worker_free(&sc->worker);
	event_free(sc->grace);
	event_free(sc->release);
	timerq_free(&sc->timers);
	heap_clear(&sc->failing);
	intern_free(&sc->msgs);
	sched_gen_unref(&sc->cur);
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
			sched_arm(sl, sched_first_delay(sl->a));
	}
	if (!sc->once)
		log_info(NULL,
		    "started accounts=%zu max_connections=%u max_per_host=%u",
		    sc->nslots, sc->cur->conf->max_connections,
		    sc->cur->conf->max_per_host);
	sched_try_start(sc);
	sched_changed(sc);
	sched_maybe_exit(sc);
}

void
sched_maybe_exit(struct sched *sc)
{
	if (sc->running > 0 || sc->polling > 0)
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
		sched_set_state(sl, SLOT_IDLE);
		sc->polling--;
		if (!sl->closed) {
			sl->host->running--;
			sc->running--;
		}
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
	    sc->polling);
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
	sched_changed(sc);
	sched_maybe_exit(sc);
}

bool
sched_stopping(const struct sched *sc)
{
	return sc->stopping;
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
		if ((wait = sched_login_wait(sl)) > 0) {
			if (sl->state != SLOT_ARMED ||
			    sl->timer.due > monotime() + wait)
				sched_arm(sl, wait);
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
	sched_try_start(sc);
	sched_changed(sc);
}
