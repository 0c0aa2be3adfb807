/*
 * The server's listing, gathered as it arrives and merged once: UIDL and
 * LIST lines each append to a vector of their own (servers list in order,
 * but nothing relies on it), the UIDs to one arena; listing_finish()
 * sorts both vectors and joins them by message number.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "listing.h"
#include "plan.h"

struct uid_ent {
	unsigned long msgno;
	size_t off; /* into the arena: it moves while it grows */
};

struct size_ent {
	unsigned long msgno;
	uint64_t size;
};

struct listing {
	unsigned long count; /* STAT's */
	struct uid_ent *uids;
	size_t nuids, capuids;
	struct size_ent *sizes;
	size_t nsizes, capsizes;
	char *arena;
	size_t arenalen, arenacap;
	size_t bytes; /* allocated, all vectors together */
	struct plan_msg *msgs;
	size_t nmsgs;
	bool complete_sizes, complete_uids;
};

static int grow(
    struct listing *l, void **v, size_t *cap, size_t need, size_t elem);
static int cmp_uid_ent(const void *a, const void *b);
static int cmp_size_ent(const void *a, const void *b);

struct listing *
listing_new(unsigned long count)
{
	struct listing *l;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	l->count = count;
	return l;
}

void
listing_free(struct listing **lp)
{
	struct listing *l = *lp;

	if (l == NULL)
		return;
	free(l->uids);
	free(l->sizes);
	free(l->arena);
	free(l->msgs);
	free(l);
	*lp = NULL;
}

/*
 * Makes room for NEED elements of ELEM bytes in *V (capacity *CAP,
 * doubling), within LISTING_BYTES_MAX for the whole listing.
 */
static int
grow(struct listing *l, void **v, size_t *cap, size_t need, size_t elem)
{
	size_t ncap = *cap ? *cap : 64;
	void *nv;

	if (need <= *cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	if (ncap > LISTING_BYTES_MAX / elem ||
	    l->bytes - *cap * elem + ncap * elem > LISTING_BYTES_MAX) {
		errno = E2BIG;
		return -1;
	}
	if ((nv = realloc(*v, ncap * elem)) == NULL)
		return -1;
	l->bytes = l->bytes - *cap * elem + ncap * elem;
	*v = nv;
	*cap = ncap;
	return 0;
}

static bool
in_range(const struct listing *l, unsigned long msgno)
{
	if (msgno == 0 || msgno > l->count) {
		errno = ERANGE;
		return false;
	}
	return true;
}

int
listing_add_uid(struct listing *l, unsigned long msgno, const char *uid)
{
	size_t len = strlen(uid) + 1;

	if (!in_range(l, msgno) ||
	    grow(l, (void **)&l->uids, &l->capuids, l->nuids + 1,
		sizeof(*l->uids)) == -1 ||
	    grow(l, (void **)&l->arena, &l->arenacap, l->arenalen + len, 1) ==
		-1)
		return -1;
	memcpy(l->arena + l->arenalen, uid, len);
	l->uids[l->nuids].msgno = msgno;
	l->uids[l->nuids++].off = l->arenalen;
	l->arenalen += len;
	return 0;
}

int
listing_add_size(struct listing *l, unsigned long msgno, uint64_t size)
{
	if (!in_range(l, msgno) || grow(l, (void **)&l->sizes, &l->capsizes,
				       l->nsizes + 1, sizeof(*l->sizes)) == -1)
		return -1;
	l->sizes[l->nsizes].msgno = msgno;
	l->sizes[l->nsizes++].size = size;
	return 0;
}

static int
cmp_uid_ent(const void *a, const void *b)
{
	const struct uid_ent *x = a, *y = b;

	return (x->msgno > y->msgno) - (x->msgno < y->msgno);
}

static int
cmp_size_ent(const void *a, const void *b)
{
	const struct size_ent *x = a, *y = b;

	return (x->msgno > y->msgno) - (x->msgno < y->msgno);
}

/* Sorts a vector by msgno (if needed) and finds a number listed twice. */
static int
sort_check(void *v, size_t n, size_t elem,
    int (*cmp)(const void *, const void *), unsigned long *dup)
{
	const char *p = v;
	size_t i;

	for (i = 1; i < n && cmp(p + (i - 1) * elem, p + i * elem) < 0; i++)
		;
	if (i < n)
		qsort(v, n, elem, cmp);
	for (i = 1; i < n; i++)
		if (cmp(p + (i - 1) * elem, p + i * elem) == 0) {
			/* msgno is the first member of both kinds. */
			memcpy(dup, p + i * elem, sizeof(*dup));
			errno = EEXIST;
			return -1;
		}
	return 0;
}

/* Joins the sorted vectors into l->msgs. */
static void
join(struct listing *l)
{
	size_t i = 0, j = 0;
	struct plan_msg *m;

	while (i < l->nuids || j < l->nsizes) {
		m = &l->msgs[l->nmsgs++];
		memset(m, 0, sizeof(*m));
		if (j == l->nsizes ||
		    (i < l->nuids && l->uids[i].msgno < l->sizes[j].msgno)) {
			m->msgno = l->uids[i].msgno;
			m->uid = l->arena + l->uids[i++].off;
			continue;
		}
		m->msgno = l->sizes[j].msgno;
		m->size = l->sizes[j].size;
		m->listed = true;
		if (i < l->nuids && l->uids[i].msgno == m->msgno)
			m->uid = l->arena + l->uids[i++].off;
		j++;
	}
}

int
listing_finish(struct listing *l, unsigned long *dup)
{
	size_t cap = 0;

	if (sort_check(l->uids, l->nuids, sizeof(*l->uids), cmp_uid_ent, dup) ==
		-1 ||
	    sort_check(l->sizes, l->nsizes, sizeof(*l->sizes), cmp_size_ent,
		dup) == -1)
		return -1;
	/* No number twice and none above count: each vector is complete
	 * exactly when it holds count entries. */
	l->complete_uids = l->nuids == l->count;
	l->complete_sizes = l->nsizes == l->count;
	if (grow(l, (void **)&l->msgs, &cap, l->nuids + l->nsizes + 1,
		sizeof(*l->msgs)) == -1)
		return -1;
	join(l);
	/* The vectors are spent; the arena stays, as the UIDs point in. */
	free(l->uids);
	free(l->sizes);
	l->uids = NULL;
	l->sizes = NULL;
	return 0;
}

struct plan_msg *
listing_msgs(struct listing *l)
{
	return l->msgs;
}

size_t
listing_count(const struct listing *l)
{
	return l->nmsgs;
}

struct plan_msg *
listing_find(const struct listing *l, unsigned long msgno)
{
	size_t lo = 0, hi = l->nmsgs, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (l->msgs[mid].msgno == msgno)
			return &l->msgs[mid];
		if (l->msgs[mid].msgno < msgno)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

bool
listing_complete(const struct listing *l, bool with_uids)
{
	return l->complete_sizes && (!with_uids || l->complete_uids);
}

size_t
listing_uids(const struct listing *l)
{
	return l->nuids;
}

size_t
listing_sizes(const struct listing *l)
{
	return l->nsizes;
}
