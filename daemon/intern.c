/* The string table: a chained hash, each entry counted. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "intern.h"
#include "strhash.h"

#define ENTRY_OF(s) \
	((struct entry *)(void *)((char *)(s)-offsetof(struct entry, s)))

struct entry {
	struct entry *next; /* in its bucket */
	uint32_t hash;
	unsigned refs;
	char s[];
};

struct intern {
	struct entry **tab; /* power of two, at most one entry per bucket */
	size_t size, n;
};

struct intern *
intern_new(void)
{
	return calloc(1, sizeof(struct intern));
}

/* Doubles the buckets; -1 when out of memory (the table still works). */
static int
grow(struct intern *t)
{
	size_t size = t->size != 0 ? t->size * 2 : 64, i;
	struct entry **tab, *e, *next;

	if ((tab = calloc(size, sizeof(*tab))) == NULL)
		return -1;
	for (i = 0; i < t->size; i++)
		for (e = t->tab[i]; e != NULL; e = next) {
			next = e->next;
			e->next = tab[e->hash & (size - 1)];
			tab[e->hash & (size - 1)] = e;
		}
	free(t->tab);
	t->tab = tab;
	t->size = size;
	return 0;
}

const char *
intern_get(struct intern *t, const char *s)
{
	uint32_t h = strhash(s, false);
	size_t len = strlen(s);
	struct entry *e;

	if (t->n >= t->size && grow(t) == -1 && t->size == 0)
		return NULL;
	for (e = t->tab[h & (t->size - 1)]; e != NULL; e = e->next)
		if (e->hash == h && strcmp(e->s, s) == 0) {
			e->refs++;
			return e->s;
		}
	if ((e = malloc(sizeof(*e) + len + 1)) == NULL)
		return NULL;
	memcpy(e->s, s, len + 1);
	e->hash = h;
	e->refs = 1;
	e->next = t->tab[h & (t->size - 1)];
	t->tab[h & (t->size - 1)] = e;
	t->n++;
	return e->s;
}

void
intern_put(struct intern *t, const char *s)
{
	struct entry *e, **p;

	if (s == NULL || --(e = ENTRY_OF(s))->refs > 0)
		return;
	for (p = &t->tab[e->hash & (t->size - 1)]; *p != e; p = &(*p)->next)
		;
	*p = e->next;
	t->n--;
	free(e);
}

size_t
intern_count(const struct intern *t)
{
	return t->n;
}

void
intern_free(struct intern **tp)
{
	struct intern *t = *tp;
	struct entry *e, *next;
	size_t i;

	if (t == NULL)
		return;
	/* Entries still held would be leaks of the holders: freed anyway. */
	for (i = 0; i < t->size; i++)
		for (e = t->tab[i]; e != NULL; e = next) {
			next = e->next;
			free(e);
		}
	free(t->tab);
	free(t);
	*tp = NULL;
}
