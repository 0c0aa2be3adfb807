/* Fetch and delete policy, without I/O. */
#include <stdlib.h>
#include <string.h>

#include "plan.h"

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

static void
decide_one(struct plan_msg *m, const struct plan_policy *pol, time_t now)
{
	time_t age;

	m->action = PLAN_LEAVE;
	if (m->reason == PLAN_R_DUP_UID)
		return;
	if (!m->listed || (pol->have_uidl && m->uid == NULL)) {
		m->reason = PLAN_R_NO_LISTING;
		return;
	}
	if (m->delivered) {
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
	if (pol->max_message_size > 0 && m->size > pol->max_message_size) {
		m->reason = PLAN_R_TOO_BIG;
		return;
	}
	m->action = PLAN_FETCH;
}

int
plan_decide(struct plan_msg *msgs, size_t n, const struct plan_policy *pol,
    time_t now, struct plan_totals *tot)
{
	size_t i;

	memset(tot, 0, sizeof(*tot));
	if (pol->keep && !pol->have_uidl)
		return -1;
	for (i = 0; i < n; i++)
		msgs[i].reason = PLAN_R_NONE;
	if (pol->have_uidl && mark_dup_uids(msgs, n) == -1)
		return -1;
	for (i = 0; i < n; i++) {
		decide_one(&msgs[i], pol, now);
		switch (msgs[i].action) {
		case PLAN_FETCH:
			tot->fetch++;
			tot->fetch_bytes += msgs[i].size;
			break;
		case PLAN_DELETE:
			tot->dele++;
			break;
		case PLAN_LEAVE:
			tot->leave++;
			break;
		}
	}
	return 0;
}
