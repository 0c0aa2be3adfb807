/*
 * sched: when each account is polled. Polls run concurrently on one loop,
 * capped by max_connections and max_per_host; an account's next poll is
 * scheduled when its previous one ends (never overlapping), later after
 * failures. In --once mode every selected account is polled once and the
 * loop ends when all are done.
 */
#ifndef POPFETCHD_SCHED_H
#define POPFETCHD_SCHED_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct evdns_base;
struct conf;
struct sched;

/*
 * A scheduler for the accounts of CONF (which must outlive it), or only
 * those named in ONLY (NONLY names; 0: all). ONCE: poll each once.
 */
struct sched *sched_new(struct event_base *base, struct evdns_base *dns,
    const struct conf *conf, bool once, char *const *only, size_t nonly);

/* Schedules the first polls. */
void sched_start(struct sched *sc);

/*
 * Starts no more polls; running ones finish. The loop is asked to exit
 * when none is left.
 */
void sched_stop(struct sched *sc);

/*
 * The exit status for --once (sysexits.h): 0, or the most serious class
 * seen: 74 local I/O, 77 authentication, 75 temporary, 78 configuration.
 */
int sched_exit_status(const struct sched *sc);

void sched_free(struct sched **sc);

#endif
