/* Fetch and delete policy, without I/O. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"

struct plan_uids {
	const char **v; /* sorted */
	size_t n;
};

struct space {
	bool limited;
	uint64_t room; /* bytes still free for the plan */
};

static int cmp_uid(const void *a, const void *b);
static int mark_dup_uids(struct plan_msg *msgs, size_t n);
static bool quarantined(const struct plan_msg *m, time_t now);
static void decide_one(
    struct plan_msg *m, const struct plan_policy *pol, time_t now);
static void space_init(struct space *sp, const struct plan_policy *pol);
static bool space_take(struct space *sp, uint64_t size);
static void count(struct plan_totals *tot, const struct plan_msg *m);

static int
cmp_uid(const void *a, const void *b)
{
	const struct plan_msg *const *x = a, *const *y = b;

	return strcmp((*x)->uid, (*y)->uid);
}

/* Marks every message whose UID another message also has. */
static int
mark_dup_uids(struct plan_msg *msgs, size_t n)
{
	struct plan_msg **v;
	size_t i, j, m;

	if (n < 2)
		return 0;
	if ((v = calloc(n, sizeof(*v))) == NULL)
		return -1;
	for (i = m = 0; i < n; i++)
		if (msgs[i].uid != NULL)
			v[m++] = &msgs[i];
	qsort(v, m, sizeof(*v), cmp_uid);
	for (i = 0; i < m; i = j) {
		for (j = i + 1; j < m && strcmp(v[i]->uid, v[j]->uid) == 0; j++)
			;
		if (j - i > 1)
			while (i < j)
				v[i++]->reason = PLAN_R_DUP_UID;
	}
	free(v);
	return 0;
}

/*
 * Whether M failed too often, too recently, to be tried now. A latest
 * strike in the future means the clock went back: try once, which
 * records a strike at the clock's time and puts the quarantine right.
 */
static bool
quarantined(const struct plan_msg *m, time_t now)
{
	if (m->strikes < PLAN_STRIKES_MAX || m->last_strike > now)
		return false;
	return now - m->last_strike < PLAN_QUARANTINE_SECS;
}

/*
 * A UID the server gave to several messages (a fault RFC 1939 warns of)
 * identifies none of them: the state cannot tell which was delivered.
 * Delete mode fetches each by number and deletes it once durable, all in
 * one session, so none is lost (one delivered before may come twice).
 * Keep mode fetches them once, while the UID is not recorded, and then
 * leaves them all: never deleted by age, as the age of a shared UID
 * belongs to no message in particular.
 */
static bool
decide_dup(struct plan_msg *m, const struct plan_policy *pol)
{
	if (!m->listed) {
		m->reason = PLAN_R_NO_LISTING;
		return true;
	}
	if (pol->keep && m->delivered)
		return true;
	return false;
}

/* Whether a delivered UID now lists a message too unlike its own. */
static bool
reused(const struct plan_msg *m)
{
	uint64_t a = m->size, b = m->delivered_size;
	uint64_t diff = a > b ? a - b : b - a, larger = a > b ? a : b;

	return m->delivered && m->size_known && m->listed &&
	       diff > PLAN_REUSE_MIN && diff > larger / PLAN_REUSE_DIV;
}

static void
decide_one(struct plan_msg *m, const struct plan_policy *pol, time_t now)
{
	time_t age;

	m->action = PLAN_LEAVE;
	if (m->reason == PLAN_R_DUP_UID) {
		if (decide_dup(m, pol))
			return;
	} else if (!m->listed || (pol->have_uidl && m->uid == NULL)) {
		m->reason = PLAN_R_NO_LISTING;
		return;
	} else if (reused(m)) {
		/* Fetched as new; the caller forgets the old record first. */
		m->reason = PLAN_R_UID_REUSED;
	} else if (m->delivered) {
		if (!pol->keep) {
			m->action = PLAN_DELETE;
			return;
		}
		age = now - m->first_seen;
		if (pol->delete_after_days > 0 &&
		    age >= (time_t)pol->delete_after_days * 86400)
			m->action = PLAN_DELETE;
		else
			m->reason = PLAN_R_KEPT;
		return;
	}
	/* A shared UID's reason stays, so the caller knows not to record it. */
	if (pol->max_message_size > 0 && m->size > pol->max_message_size) {
		m->reason = PLAN_R_TOO_BIG;
		return;
	}
	if (quarantined(m, now)) {
		m->reason = PLAN_R_QUARANTINED;
		return;
	}
	m->action = PLAN_FETCH;
}

static void
space_init(struct space *sp, const struct plan_policy *pol)
{
	sp->limited = pol->space_known && pol->free_bytes != UINT64_MAX;
	sp->room = 0;
	if (sp->limited && pol->free_bytes > PLAN_SPACE_RESERVE)
		sp->room = pol->free_bytes - PLAN_SPACE_RESERVE;
}

/*
 * Takes what a message of SIZE bytes needs from SP, if it fits. Written
 * so that no sum can overflow: SIZE comes from the server.
 */
static bool
space_take(struct space *sp, uint64_t size)
{
	if (!sp->limited)
		return true;
	if (sp->room < PLAN_MSG_OVERHEAD || size > sp->room - PLAN_MSG_OVERHEAD)
		return false;
	sp->room -= size + PLAN_MSG_OVERHEAD;
	return true;
}

static void
count(struct plan_totals *tot, const struct plan_msg *m)
{
	switch (m->action) {
	case PLAN_FETCH:
		tot->fetch++;
		tot->fetch_bytes += m->size;
		break;
	case PLAN_DELETE:
		tot->dele++;
		break;
	case PLAN_LEAVE:
		tot->leave++;
		if (m->reason == PLAN_R_QUARANTINED)
			tot->quarantined++;
		else if (m->reason == PLAN_R_NO_SPACE)
			tot->no_space++;
		break;
	}
}

int
plan_decide(struct plan_msg *msgs, size_t n, const struct plan_policy *pol,
    time_t now, struct plan_totals *tot)
{
	struct space sp;
	size_t i;

	memset(tot, 0, sizeof(*tot));
	if (pol->keep && !pol->have_uidl) {
		errno = EINVAL;
		return -1;
	}
	for (i = 0; i < n; i++)
		msgs[i].reason = PLAN_R_NONE;
	if (pol->have_uidl && mark_dup_uids(msgs, n) == -1)
		return -1;
	space_init(&sp, pol);
	for (i = 0; i < n; i++) {
		decide_one(&msgs[i], pol, now);
		/* In msgno order, so the oldest mail goes first. */
		if (msgs[i].action == PLAN_FETCH &&
		    !space_take(&sp, msgs[i].size)) {
			msgs[i].action = PLAN_LEAVE;
			msgs[i].reason = PLAN_R_NO_SPACE;
		}
		count(tot, &msgs[i]);
	}
	return 0;
}

void
plan_fill(struct plan_msg *msgs, size_t n, const struct plan_records *rec)
{
	struct plan_msg *m;
	size_t i;

	for (i = 0; i < n; i++) {
		m = &msgs[i];
		m->delivered = m->size_known = false;
		m->strikes = 0;
		if (m->uid == NULL)
			continue;
		m->delivered = rec->known(rec->arg, m->uid, &m->first_seen,
		    &m->delivered_size, &m->size_known);
		if (!m->delivered)
			m->strikes =
			    rec->strikes(rec->arg, m->uid, &m->last_strike);
	}
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

struct plan_uids *
plan_uids_new(const struct plan_msg *msgs, size_t n)
{
	struct plan_uids *u;
	size_t i;

	if ((u = calloc(1, sizeof(*u))) == NULL ||
	    (u->v = calloc(n + 1, sizeof(*u->v))) == NULL) {
		free(u);
		return NULL;
	}
	for (i = 0; i < n; i++)
		if (msgs[i].uid != NULL)
			u->v[u->n++] = msgs[i].uid;
	qsort(u->v, u->n, sizeof(*u->v), cmp_str);
	return u;
}

bool
plan_uids_has(const struct plan_uids *u, const char *uid)
{
	return bsearch(&uid, u->v, u->n, sizeof(*u->v), cmp_str) != NULL;
}

void
plan_uids_free(struct plan_uids **up)
{
	struct plan_uids *u = *up;

	if (u == NULL)
		return;
	free(u->v);
	free(u);
	*up = NULL;
}
