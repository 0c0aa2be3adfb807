/*
 * A bump allocator over a list of blocks, with an open-addressing hash
 * table of the strings copied so far.
 */
#include <stdalign.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"
#include "wipe.h"
#include "strhash.h"

/*
 * Blocks start small (a configuration of one account stays one page) and
 * double up to POOL_BLOCK_MAX, large enough that 100,000 accounts take a
 * few dozen blocks, small enough that the last block's unused tail is
 * little. A request over a quarter of that gets a block of its own.
 */
#define POOL_BLOCK_MIN 4096
#define POOL_BLOCK_MAX (256 * 1024)
#define POOL_ALIGN     alignof(max_align_t)

struct block {
	struct block *next;
	size_t size, used; /* bytes of data[] */
	alignas(max_align_t) unsigned char data[];
};

struct pool {
	struct block *blocks; /* the current one first */
	size_t next_size;     /* of the next ordinary block */
	size_t total;	      /* bytes in all blocks */
	/* The interned strings; NULL slots are empty. Power of two. */
	char **tab;
	size_t tabsize, nstrings;
	bool sealed;
};

struct pool *
pool_new(void)
{
	struct pool *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->next_size = POOL_BLOCK_MIN;
	return p;
}

/* A new block of at least N bytes, put behind the current one if BIG. */
static struct block *
block_add(struct pool *p, size_t n, bool big)
{
	size_t size = big ? n : p->next_size;
	struct block *b;

	if ((b = malloc(sizeof(*b) + size)) == NULL)
		return NULL;
	b->size = size;
	b->used = 0;
	p->total += size;
	/* A big one is used up at once: the current block stays current. */
	if (big && p->blocks != NULL) {
		b->next = p->blocks->next;
		p->blocks->next = b;
		return b;
	}
	b->next = p->blocks;
	p->blocks = b;
	if (!big && p->next_size < POOL_BLOCK_MAX)
		p->next_size *= 2;
	return b;
}

void *
pool_alloc(struct pool *p, size_t n)
{
	struct block *b = p->blocks;
	size_t need = (n + POOL_ALIGN - 1) & ~(POOL_ALIGN - 1);
	void *r;

	if (need < n)
		return NULL;
	if (need > POOL_BLOCK_MAX / 4) {
		if ((b = block_add(p, need, true)) == NULL)
			return NULL;
	} else if (b == NULL || b->size - b->used < need) {
		while (p->next_size < need)
			p->next_size *= 2;
		if ((b = block_add(p, need, false)) == NULL)
			return NULL;
	}
	r = b->data + b->used;
	b->used += need;
	memset(r, 0, n);
	return r;
}

/* The slot of S in the table: where it is, or the empty one it goes to. */
static char **
slot_of(char **tab, size_t size, const char *s)
{
	size_t i = strhash(s, false) & (size - 1);

	while (tab[i] != NULL && strcmp(tab[i], s) != 0)
		i = (i + 1) & (size - 1);
	return &tab[i];
}

/* Doubles the table (kept at most half full); -1 when out of memory. */
static int
tab_grow(struct pool *p)
{
	size_t size = p->tabsize != 0 ? p->tabsize * 2 : 256, i;
	char **tab;

	if ((tab = calloc(size, sizeof(*tab))) == NULL)
		return -1;
	for (i = 0; i < p->tabsize; i++)
		if (p->tab[i] != NULL)
			*slot_of(tab, size, p->tab[i]) = p->tab[i];
	free(p->tab);
	p->tab = tab;
	p->tabsize = size;
	return 0;
}

char *
pool_strdup(struct pool *p, const char *s)
{
	size_t len;
	char **slot = NULL, *copy;

	if (s == NULL)
		return NULL;
	if (!p->sealed) {
		/* Out of memory for the table: a copy all the same. */
		if (2 * (p->nstrings + 1) > p->tabsize && tab_grow(p) == -1)
			p->sealed = true;
		else if (*(slot = slot_of(p->tab, p->tabsize, s)) != NULL)
			return *slot;
	}
	len = strlen(s);
	if ((copy = pool_alloc(p, len + 1)) == NULL)
		return NULL;
	memcpy(copy, s, len + 1);
	if (slot != NULL && !p->sealed) {
		*slot = copy;
		p->nstrings++;
	}
	return copy;
}

void
pool_seal(struct pool *p)
{
	free(p->tab);
	p->tab = NULL;
	p->tabsize = p->nstrings = 0;
	p->sealed = true;
}

size_t
pool_size(const struct pool *p)
{
	return p->total;
}

void
pool_free(struct pool **pp)
{
	struct pool *p = *pp;
	struct block *b, *next;

	if (p == NULL)
		return;
	for (b = p->blocks; b != NULL; b = next) {
		next = b->next;
		/* Inline passwords and client secrets are in there. */
		wipe(b->data, b->used);
		free(b);
	}
	free(p->tab);
	free(p);
	*pp = NULL;
}
