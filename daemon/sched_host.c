/*
 * The scheduler's hosts: a hash from server name (compared without case,
 * as DNS does) to the host's count of running polls and its queue, and
 * the ready list of hosts with a poll waiting and room under the cap.
 */
#include <sys/queue.h>

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf.h"
#include "log.h"
#include "sched_priv.h"
#include "strhash.h"

/* --- hosts -------------------------------------------------------------- */

static void
hosts_grow(struct sched *sc)
{
	size_t n = sc->nbuckets ? sc->nbuckets * 2 : 64, i;
	struct host **tab, *h, *next;

	if ((tab = calloc(n, sizeof(*tab))) == NULL)
		fatalx("out of memory");
	for (i = 0; i < sc->nbuckets; i++)
		for (h = sc->hosts[i]; h != NULL; h = next) {
			next = h->hnext;
			h->hnext = tab[strhash(h->name, true) & (n - 1)];
			tab[strhash(h->name, true) & (n - 1)] = h;
		}
	free(sc->hosts);
	sc->hosts = tab;
	sc->nbuckets = n;
}

/* The entry for NAME, created when first seen. */
struct host *
sched_host_get(struct sched *sc, const char *name)
{
	struct host *h;
	size_t b;

	if (sc->nhosts >= sc->nbuckets)
		hosts_grow(sc);
	b = strhash(name, true) & (sc->nbuckets - 1);
	for (h = sc->hosts[b]; h != NULL; h = h->hnext)
		if (strcasecmp(h->name, name) == 0)
			return h;
	if ((h = calloc(1, sizeof(*h))) == NULL ||
	    (h->name = strdup(name)) == NULL)
		fatalx("out of memory");
	TAILQ_INIT(&h->waiting);
	h->hnext = sc->hosts[b];
	sc->hosts[b] = h;
	sc->nhosts++;
	return h;
}

/* Puts H in or out of the ready list, as its queue and count say. */
void
sched_host_update(struct sched *sc, struct host *h)
{
	bool want = !TAILQ_EMPTY(&h->waiting) &&
		    h->running < sc->cur->conf->max_per_host;

	if (want && !h->ready)
		TAILQ_INSERT_TAIL(&sc->ready, h, ready_entry);
	else if (!want && h->ready)
		TAILQ_REMOVE(&sc->ready, h, ready_entry);
	h->ready = want;
}

void
sched_hosts_update_all(struct sched *sc)
{
	struct host *h;
	size_t i;

	for (i = 0; i < sc->nbuckets; i++)
		for (h = sc->hosts[i]; h != NULL; h = h->hnext)
			sched_host_update(sc, h);
}

void
sched_hosts_free(struct sched *sc)
{
	struct host *h, *next;
	size_t i;

	for (i = 0; i < sc->nbuckets; i++)
		for (h = sc->hosts[i]; h != NULL; h = next) {
			next = h->hnext;
			free(h->name);
			free(h);
		}
	free(sc->hosts);
	sc->hosts = NULL;
	sc->nbuckets = sc->nhosts = 0;
}
