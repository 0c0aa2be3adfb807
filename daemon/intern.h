/*
 * intern: a table of shared, counted strings. Equal strings are kept
 * once, however many hold them: when a server is down, its 10,000
 * accounts all keep the same failure message, and that is one copy.
 */
#ifndef POPFETCHD_INTERN_H
#define POPFETCHD_INTERN_H

#include <stddef.h>

struct intern;

/* An empty table; NULL when out of memory. */
struct intern *intern_new(void);

/*
 * The table's copy of S, with one more holder: valid until as many
 * intern_put() as intern_get() for it. NULL when out of memory.
 */
const char *intern_get(struct intern *t, const char *s);

/* One holder of S (from intern_get()) less; NULL is fine. */
void intern_put(struct intern *t, const char *s);

/* Distinct strings held. */
size_t intern_count(const struct intern *t);

/* Frees *T (sets it NULL); every string must have been put back. */
void intern_free(struct intern **t);

#endif
