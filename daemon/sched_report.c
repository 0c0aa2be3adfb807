/*
 * What the scheduler knows of each account, kept and shown: the packed
 * record of its polls, the counts by state and the heap of failing
 * accounts behind STATUS= (kept up to date as slots change, so that the
 * line costs the same for ten accounts and for 100,000), and the visits
 * that --status and the metrics make.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backoff.h"
#include "conf.h"
#include "intern.h"
#include "log.h"
#include "monotime.h"
#include "oauth2.h"
#include "sched.h"
#include "sched_priv.h"
#include "status.h"

#define SLOT_OF_FAILING(n)                                               \
	((const struct slot *)(const void *)((const char *)(n)-offsetof( \
	    struct slot, failing)))

/* --- the counts by state ------------------------------------------------ */

static enum sched_bucket
bucket_of(const struct slot *sl)
{
	switch (sl->state) {
	case SLOT_RUNNING:
		return BUCKET_RUNNING;
	case SLOT_QUEUED:
		return BUCKET_QUEUED;
	case SLOT_ARMED:
		return sl->last == SC_OK ? BUCKET_ARMED_OK : BUCKET_ARMED_BAD;
	default:
		return sl->last == SC_CONFIG ? BUCKET_IDLE_CONFIG : BUCKET_IDLE;
	}
}

/* Counts SL in (SIGN 1) or out of (-1) its bucket; removed slots are not. */
void
sched_count(struct slot *sl, int sign)
{
	size_t *n = &sl->sc->buckets[bucket_of(sl)];

	if (sl->removed)
		return;
	if (sign > 0)
		(*n)++;
	else
		(*n)--;
}

void
sched_set_state(struct slot *sl, enum slot_state st)
{
	if (sl->state == st)
		return;
	sched_count(sl, -1);
	sl->state = st;
	sched_count(sl, 1);
}

void
sched_set_last(struct slot *sl, enum session_class cls)
{
	if (sl->last == cls)
		return;
	sched_count(sl, -1);
	sl->last = cls;
	sched_count(sl, 1);
}

/* A reload dropped SL: no longer shown, nor counted. */
void
sched_set_removed(struct slot *sl)
{
	sched_count(sl, -1);
	sl->removed = true;
	heap_remove(&sl->sc->failing, &sl->failing);
}

/* --- the failing accounts ----------------------------------------------- */

/*
 * The latest failure first; of two in the same second, the account later
 * in the list, as a pass over the list that keeps the last of the latest
 * would pick.
 */
static bool
later_failure(const struct heap_node *x, const struct heap_node *y)
{
	const struct slot *a = SLOT_OF_FAILING(x), *b = SLOT_OF_FAILING(y);

	if (a->rec.fail_time != b->rec.fail_time)
		return a->rec.fail_time > b->rec.fail_time;
	return a->seq > b->seq;
}

void
sched_failing_init(struct sched *sc)
{
	heap_init(&sc->failing, later_failure);
}

/* In the failing heap while the last poll failed, at its place. */
static void
failing_update(struct slot *sl)
{
	struct heap *h = &sl->sc->failing;

	if (!sl->rec.failing || sl->removed)
		heap_remove(h, &sl->failing);
	else if (heap_has(&sl->failing))
		heap_fix(h, &sl->failing);
	else if (heap_insert(h, &sl->failing) == -1)
		fatalx("out of memory");
}

/* --- the record --------------------------------------------------------- */

static uint32_t
sat32(unsigned long long n)
{
	return n > UINT32_MAX ? UINT32_MAX : (uint32_t)n;
}

/* A wall-clock time (never before 1970 here) in 32 bits. */
static uint32_t
time32(time_t t)
{
	return t <= 0 ? 0 : sat32((unsigned long long)t);
}

/* SL's record as status.h has it; the scheduler's fields left zero. */
static void
rec_expand(const struct slot *sl, struct status_account *r)
{
	const struct sched_rec *p = &sl->rec;
	size_t i;

	memset(r, 0, sizeof(*r));
	r->polling_since = p->polling_since;
	r->last = (struct status_poll){.start = p->last_start,
	    .end = p->last_end,
	    .cls = (enum session_class)p->last_cls,
	    .listed = p->last_listed,
	    .fetched = p->last_fetched,
	    .deleted = p->last_deleted,
	    .left = p->last_left,
	    .failed = p->last_failed,
	    .bytes = p->last_bytes,
	    .secs = p->last_secs,
	    .held = p->last_held};
	r->failing = p->failing;
	r->fail_cls = (enum session_class)p->fail_cls;
	if (p->fail_msg != NULL)
		snprintf(r->fail_msg, sizeof(r->fail_msg), "%s", p->fail_msg);
	r->fail_time = p->fail_time;
	r->last_ok = p->last_ok;
	r->polls = p->polls;
	for (i = 0; i < SC_COUNT; i++)
		r->failures[i] = p->failures[i];
	r->fetched = p->fetched;
	r->bytes = p->bytes;
	r->deleted = p->deleted;
}

/* The message of R's last failure into SL's record; NULL for none. */
static void
rec_pack_msg(struct slot *sl, const struct status_account *r)
{
	struct sched_rec *p = &sl->rec;
	const char *m = r->fail_msg[0] != '\0' ? r->fail_msg : NULL;

	if (m == NULL ? p->fail_msg == NULL
		      : p->fail_msg != NULL && strcmp(m, p->fail_msg) == 0)
		return;
	intern_put(sl->sc->msgs, p->fail_msg);
	p->fail_msg = NULL;
	if (m != NULL && (p->fail_msg = intern_get(sl->sc->msgs, m)) == NULL)
		fatalx("out of memory");
}

/* R, as status.c left it, packed into SL's record. */
static void
rec_pack(struct slot *sl, const struct status_account *r)
{
	struct sched_rec *p = &sl->rec;
	size_t i;

	p->polling_since = time32(r->polling_since);
	p->last_start = time32(r->last.start);
	p->last_end = time32(r->last.end);
	p->last_cls = (unsigned char)r->last.cls;
	p->last_listed = sat32(r->last.listed);
	p->last_fetched = sat32(r->last.fetched);
	p->last_deleted = sat32(r->last.deleted);
	p->last_left = sat32(r->last.left);
	p->last_failed = sat32(r->last.failed);
	p->last_bytes = r->last.bytes;
	p->last_secs = (float)r->last.secs;
	p->last_held = (float)r->last.held;
	p->failing = r->failing;
	p->fail_cls = (unsigned char)r->fail_cls;
	rec_pack_msg(sl, r);
	p->fail_time = time32(r->fail_time);
	p->last_ok = time32(r->last_ok);
	p->polls = sat32(r->polls);
	for (i = 0; i < SC_COUNT; i++)
		p->failures[i] = sat32(r->failures[i]);
	p->fetched = r->fetched;
	p->bytes = r->bytes;
	p->deleted = r->deleted;
}

void
sched_rec_started(struct slot *sl, time_t now)
{
	struct status_account r;

	rec_expand(sl, &r);
	status_poll_started(&r, now);
	rec_pack(sl, &r);
}

void
sched_rec_ended(struct slot *sl, enum session_class cls,
    const struct session_stats *st, const char *msg, time_t now)
{
	struct status_account r;

	rec_expand(sl, &r);
	status_poll_ended(&r, cls, st, msg, now);
	rec_pack(sl, &r);
	failing_update(sl);
}

void
sched_rec_forget(struct slot *sl)
{
	heap_remove(&sl->sc->failing, &sl->failing);
	intern_put(sl->sc->msgs, sl->rec.fail_msg);
	sl->rec.fail_msg = NULL;
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

	rec_expand(sl, r);
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
		r->next =
		    time(NULL) + (time_t)(sl->timer.due - monotime() + 0.5);
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

/*
 * From the counts kept as slots change, not a pass over the accounts:
 * this runs at every start and end of a poll when a service manager
 * listens, and 100,000 accounts would make each of those O(n).
 */
void
sched_status(const struct sched *sc, char *buf, size_t len)
{
	struct status_tally t = {0};
	const size_t *b = sc->buckets;
	bool pause = !sc->once && !sc->stopping;
	const struct heap_node *top = heap_top(&sc->failing);
	const struct slot *sl;

	t.accounts = sc->nslots;
	t.by_state[STATUS_POLLING] = b[BUCKET_RUNNING];
	t.by_state[STATUS_QUEUED] = b[BUCKET_QUEUED];
	t.by_state[STATUS_WAITING] = b[BUCKET_ARMED_OK];
	t.by_state[STATUS_BACKOFF] = b[BUCKET_ARMED_BAD];
	t.by_state[STATUS_PAUSED] = pause ? b[BUCKET_IDLE_CONFIG] : 0;
	t.by_state[STATUS_IDLE] =
	    b[BUCKET_IDLE] + (pause ? 0 : b[BUCKET_IDLE_CONFIG]);
	if (top != NULL) {
		sl = SLOT_OF_FAILING(top);
		t.fail_time = sl->rec.fail_time;
		t.fail_cls = (enum session_class)sl->rec.fail_cls;
		snprintf(t.fail_acct, sizeof(t.fail_acct), "%s", sl->a->name);
		snprintf(t.fail_msg, sizeof(t.fail_msg), "%s",
		    sl->rec.fail_msg != NULL ? sl->rec.fail_msg : "");
	}
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
