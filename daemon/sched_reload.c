/*
 * Reload: the new configuration is compared with the current one off the
 * loop (sched_change_new(), on any thread); then it becomes current at
 * once, and the slots are moved over to it a batch per loop turn, so that
 * 100,000 accounts never hold the loop for long.
 *
 * While slots are moved, the ones not reached yet still have the old
 * settings: a poll that starts then runs on them, as a poll that started
 * just before the reload would, and takes the new ones after it ends.
 */
#include <sys/queue.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "conf.h"
#include "log.h"
#include "monotime.h"
#include "sched.h"
#include "sched_priv.h"
#include "strhash.h"

/*
 * A turn moves slots for this long at most (the clock is read every
 * SCHED_PASS_CHECK slots): a loop stall of a couple of milliseconds, and
 * 100,000 accounts in a few dozen turns.
 */
#define SCHED_PASS_SLICE 0.002
#define SCHED_PASS_CHECK 64

#define CHANGE_GONE UINT32_MAX
#define CH_HOST	    0x1 /* another host name (not only its case) */
#define CH_SHORTER  0x2 /* a shorter poll_interval */

struct sched_change {
	const struct conf *old, *new;
	uint32_t *to;	      /* per old account: its index in new, or GONE */
	unsigned char *flags; /* per old account: CH_* */
	uint32_t *added;      /* indexes in new of the accounts to add */
	size_t nadded;
};

struct sched_pass {
	struct sched_change *ch;
	struct gen *old, *g; /* old: a reference held until the end */
	struct slot *cursor; /* the next slot to move; NULL: all moved */
	size_t next_added;   /* in ch->added */
	size_t added, removed;
	struct event *ev; /* the next turn's batch */
	void (*done)(void *);
	void *arg;
};

static void pass_cb(evutil_socket_t fd, short what, void *arg);

/* --- the comparison, on any thread -------------------------------------- */

/* Account names of a configuration, hashed: index + 1, 0 when empty. */
struct name_index {
	uint32_t *tab;
	size_t mask;
};

static int
index_build(struct name_index *ix, const struct conf *conf)
{
	size_t n = 16, i, b;

	while (n < 2 * conf->naccounts)
		n *= 2;
	if ((ix->tab = calloc(n, sizeof(*ix->tab))) == NULL)
		return -1;
	ix->mask = n - 1;
	for (i = 0; i < conf->naccounts; i++) {
		b = strhash(conf->accounts[i].name, false) & ix->mask;
		while (ix->tab[b] != 0)
			b = (b + 1) & ix->mask;
		ix->tab[b] = (uint32_t)i + 1;
	}
	return 0;
}

/* The index of the account called NAME in CONF, or naccounts. */
static size_t
index_find(
    const struct name_index *ix, const struct conf *conf, const char *name)
{
	size_t b = strhash(name, false) & ix->mask;

	for (; ix->tab[b] != 0; b = (b + 1) & ix->mask)
		if (strcmp(conf->accounts[ix->tab[b] - 1].name, name) == 0)
			return ix->tab[b] - 1;
	return conf->naccounts;
}

static bool
named(char *const *only, size_t nonly, const char *name)
{
	size_t i;

	for (i = 0; i < nonly; i++)
		if (strcmp(only[i], name) == 0)
			return true;
	return nonly == 0;
}

/* Fills CH's map from the accounts of old to those of new. */
static void
change_map(struct sched_change *ch, const struct name_index *ix, bool *kept,
    char *const *only, size_t nonly)
{
	const struct account *a, *b;
	size_t i, j;

	for (i = 0; i < ch->old->naccounts; i++) {
		a = &ch->old->accounts[i];
		j = index_find(ix, ch->new, a->name);
		if (j == ch->new->naccounts) {
			ch->to[i] = CHANGE_GONE;
			continue;
		}
		b = &ch->new->accounts[j];
		ch->to[i] = (uint32_t)j;
		kept[j] = true;
		ch->flags[i] =
		    (strcasecmp(a->host, b->host) != 0 ? CH_HOST : 0) |
		    (b->poll_interval < a->poll_interval ? CH_SHORTER : 0);
	}
	for (j = 0; j < ch->new->naccounts; j++)
		if (!kept[j] && named(only, nonly, ch->new->accounts[j].name))
			ch->added[ch->nadded++] = (uint32_t)j;
}

struct sched_change *
sched_change_new(const struct conf *old, const struct conf *new,
    char *const *only, size_t nonly)
{
	struct sched_change *ch;
	struct name_index ix = {0};
	bool *kept = NULL;

	if (old->naccounts >= CHANGE_GONE || new->naccounts >= CHANGE_GONE ||
	    (ch = calloc(1, sizeof(*ch))) == NULL)
		return NULL;
	ch->old = old;
	ch->new = new;
	if ((ch->to = calloc(old->naccounts + 1, sizeof(*ch->to))) == NULL ||
	    (ch->flags = calloc(old->naccounts + 1, 1)) == NULL ||
	    (ch->added = calloc(new->naccounts + 1, sizeof(*ch->added))) ==
		NULL ||
	    (kept = calloc(new->naccounts + 1, sizeof(*kept))) == NULL ||
	    index_build(&ix, new) == -1) {
		free(kept);
		sched_change_free(&ch);
		return NULL;
	}
	change_map(ch, &ix, kept, only, nonly);
	free(ix.tab);
	free(kept);
	return ch;
}

void
sched_change_free(struct sched_change **chp)
{
	struct sched_change *ch = *chp;

	if (ch == NULL)
		return;
	free(ch->to);
	free(ch->flags);
	free(ch->added);
	free(ch);
	*chp = NULL;
}

/* --- moving the slots, on the loop -------------------------------------- */

/* A reload dropped the account: now, or after its running poll. */
static void
slot_drop(struct slot *sl)
{
	if (sl->state != SLOT_RUNNING) {
		log_info(sl->a->name, "removed from the configuration");
		sched_slot_free(sl);
		return;
	}
	sched_set_removed(sl);
	sl->sc->nslots--;
	sched_gen_unref(&sl->next_gen);
}

/* A reload kept the account, maybe with changed settings A. */
static void
slot_update(
    struct slot *sl, struct gen *g, const struct account *a, unsigned flags)
{
	const struct sched *sc = sl->sc;

	if (sl->state == SLOT_RUNNING) {
		sched_gen_unref(&sl->next_gen);
		sl->next_gen = sched_gen_ref(g);
		sl->next_a = a;
		return;
	}
	sched_slot_apply(sl, g, a, (flags & CH_HOST) != 0);
	if (sc->once || sc->stopping || sl->state == SLOT_QUEUED)
		return;
	/* The password may have been fixed: try again soon. */
	if (sl->last == SC_AUTH || sl->last == SC_CONFIG) {
		sl->streak = 0;
		sched_arm(sl, sched_first_delay(a));
		return;
	}
	/* A shorter interval should not wait for the old, longer one. */
	if ((flags & CH_SHORTER) != 0 && sl->state == SLOT_ARMED &&
	    sl->last == SC_OK && sl->timer.due - monotime() > a->poll_interval)
		sched_arm(sl, sched_jitter(a->poll_interval));
}

/* Moves SL to the new configuration, unless it is there already. */
static void
visit(struct sched_pass *p, struct slot *sl)
{
	const struct account *a;
	size_t i;

	if (sl->removed || sl->gen == p->g || sl->next_gen == p->g)
		return;
	if (sl->next_gen == p->old)
		a = sl->next_a;
	else if (sl->gen == p->old)
		a = sl->a;
	else
		fatalx("reload: account %s outside the configuration",
		    sl->a->name);
	i = (size_t)(a - p->old->conf->accounts);
	if (p->ch->to[i] == CHANGE_GONE) {
		slot_drop(sl);
		p->removed++;
		return;
	}
	slot_update(
	    sl, p->g, &p->g->conf->accounts[p->ch->to[i]], p->ch->flags[i]);
}

/* The next slot to move, or account to add; false when all are done. */
static bool
step(struct sched *sc, struct sched_pass *p)
{
	const struct account *a;
	struct slot *sl;

	if ((sl = p->cursor) != NULL) {
		p->cursor = TAILQ_NEXT(sl, entry);
		visit(p, sl);
		return true;
	}
	if (p->next_added == p->ch->nadded)
		return false;
	a = &p->g->conf->accounts[p->ch->added[p->next_added++]];
	sl = sched_slot_new(sc, p->g, a);
	if (!sc->once && !sc->stopping)
		sched_arm(sl, sched_first_delay(a));
	p->added++;
	return true;
}

/* The last slot is moved: the old configuration may go. */
static void
finish(struct sched *sc)
{
	struct sched_pass *p = sc->pass;
	void (*done)(void *) = p->done;
	void *arg = p->arg;

	log_info(NULL, "reloaded file=%s accounts=%zu added=%zu removed=%zu",
	    sc->cur->conf->path, sc->nslots, p->added, p->removed);
	sc->pass = NULL;
	sched_change_free(&p->ch);
	/* Freed here unless a running poll still uses it. */
	sched_gen_unref(&p->old);
	event_free(p->ev);
	free(p);
	sched_try_start(sc);
	sched_changed(sc);
	if (done != NULL)
		done(arg);
}

/* Moves slots for up to SLICE seconds (< 0: all); true when done. */
static bool
run(struct sched *sc, double slice)
{
	struct sched_pass *p = sc->pass;
	double end = monotime() + slice;
	unsigned n = 0;

	while (step(sc, p))
		if (slice >= 0 && ++n % SCHED_PASS_CHECK == 0 &&
		    monotime() > end)
			return false;
	finish(sc);
	return true;
}

static void
pass_cb(evutil_socket_t fd, short what, void *arg)
{
	static const struct timeval now = {0, 0};
	struct sched *sc = arg;

	if (!run(sc, SCHED_PASS_SLICE)) {
		/* Polls whose hosts changed may be startable already. */
		sched_try_start(sc);
		evtimer_add(sc->pass->ev, &now);
	}
}

void
sched_reload_apply(struct sched *sc, struct conf *conf, struct sched_change *ch,
    void (*done)(void *), void *arg)
{
	static const struct timeval now = {0, 0};
	struct sched_pass *p;
	unsigned per_host = sc->cur->conf->max_per_host;

	if (sc->pass != NULL)
		run(sc, -1);
	if (ch->old != sc->cur->conf || ch->new != conf)
		fatalx("reload: compared with another configuration");
	if ((p = calloc(1, sizeof(*p))) == NULL ||
	    (p->g = sched_gen_new(conf)) == NULL ||
	    (p->ev = evtimer_new(sc->base, pass_cb, sc)) == NULL)
		fatalx("out of memory");
	p->ch = ch;
	p->old = sc->cur;
	sc->cur = p->g;
	p->cursor = TAILQ_FIRST(&sc->slots);
	p->done = done;
	p->arg = arg;
	sc->pass = p;
	if (conf->max_per_host != per_host)
		sched_hosts_update_all(sc);
	evtimer_add(p->ev, &now);
}

void
sched_reload(struct sched *sc, struct conf *conf)
{
	struct sched_change *ch;

	if ((ch = sched_change_new(sc->cur->conf, conf, sc->only, sc->nonly)) ==
	    NULL)
		fatalx("out of memory");
	sched_reload_apply(sc, conf, ch, NULL, NULL);
	run(sc, -1);
}

const struct conf *
sched_conf(const struct sched *sc)
{
	return sc->cur->conf;
}

bool
sched_reloading(const struct sched *sc)
{
	return sc->pass != NULL;
}

void
sched_pass_forget(struct sched *sc, const struct slot *sl)
{
	if (sc->pass != NULL && sc->pass->cursor == sl)
		sc->pass->cursor = TAILQ_NEXT(sl, entry);
}

void
sched_pass_free(struct sched *sc)
{
	struct sched_pass *p = sc->pass;

	if (p == NULL)
		return;
	sc->pass = NULL;
	sched_change_free(&p->ch);
	sched_gen_unref(&p->old);
	event_free(p->ev);
	free(p);
}
