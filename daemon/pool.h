/*
 * pool: the memory of one configuration, which lives and dies as a whole.
 * Strings are interned while the pool is open (equal strings share one
 * copy: the host, the CA file and the defaults of 100,000 accounts are
 * stored once), and everything sits in a few large blocks, so that a
 * large configuration is dozens of allocations rather than a million and
 * leaves no scattered holes in the heap when it goes. Freeing the pool
 * wipes every byte it handed out: inline passwords live there too.
 *
 * Not thread-safe: one pool is filled by one thread (the one loading the
 * configuration) and afterwards only read, by any thread.
 */
#ifndef POPFETCHD_POOL_H
#define POPFETCHD_POOL_H

#include <stddef.h>

struct pool;

/* An empty pool; NULL when out of memory. */
struct pool *pool_new(void);

/*
 * N zeroed bytes, aligned for any type, valid until pool_free(); NULL
 * when out of memory.
 */
void *pool_alloc(struct pool *p, size_t n);

/*
 * A copy of S in the pool, or NULL if S is NULL or memory ran out. Until
 * pool_seal(), a string equal to one copied before is not copied again:
 * the same pointer comes back, so what this returns must never be
 * written to.
 */
char *pool_strdup(struct pool *p, const char *s);

/* Loading is over: the table behind the interning is freed. */
void pool_seal(struct pool *p);

/* Bytes the pool holds in its blocks (for the benchmark and tests). */
size_t pool_size(const struct pool *p);

/* Wipes and frees every block, sets *P to NULL; NULL is fine. */
void pool_free(struct pool **p);

#endif
