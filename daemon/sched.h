/*
 * sched: when each account is polled. Polls run concurrently on one loop,
 * capped by max_connections and max_per_host, and wait for a connection
 * in a fair queue (round robin over the hosts, first come first served
 * within one host). An account's next poll is scheduled when its previous
 * one ends, so two polls of one account never overlap; after a failure
 * the delay depends on the error class (see backoff.h). In --once mode
 * every selected account is polled once and the loop ends when all are
 * done.
 *
 * The scheduler owns the configurations it is given. A reload makes a new
 * generation current; an older one is freed when no account and no
 * running poll uses it any more (sessions hold pointers into it).
 */
#ifndef POPFETCHD_SCHED_H
#define POPFETCHD_SCHED_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct evdns_base;
struct account;
struct conf;
struct sched;
struct session;
struct status_account;

/*
 * A scheduler for the accounts of CONF, or only those named in ONLY (NONLY
 * names, which must outlive the scheduler; 0: all). Takes ownership of
 * CONF. ONCE: poll each selected account once, then end the loop.
 * Returns NULL only when out of memory (CONF is then freed).
 */
struct sched *sched_new(struct event_base *base, struct evdns_base *dns,
    struct conf *conf, bool once, char *const *only, size_t nonly);

/* Schedules the first polls (spread over a few seconds unless --once). */
void sched_start(struct sched *sc);

/*
 * Graceful stop: starts no more polls and lets running ones finish, for
 * at most the longest timeout of their accounts; then abandons the rest
 * (nothing is deleted on a server without QUIT, and deliveries are
 * completed by the next start) and ends the loop. A second call abandons
 * at once.
 */
void sched_stop(struct sched *sc);

/* True once sched_stop() was called. */
bool sched_stopping(const struct sched *sc);

/*
 * Makes CONF (ownership taken) the configuration: accounts it adds are
 * scheduled, accounts it drops stop after their running poll, changed
 * accounts use their new settings from their next poll on. Accounts paused
 * by an authentication or configuration error are retried soon. All of it
 * before returning, O(accounts) on the caller's thread: the daemon
 * reloads with sched_change_new() and sched_reload_apply() instead.
 */
void sched_reload(struct sched *sc, struct conf *conf);

/*
 * A reload in two steps, so that the work that grows with the number of
 * accounts stays off the loop. First, on any thread, what changes from
 * OLD (the scheduler's configuration, sched_conf(), which stays current
 * until the second step since only that step changes it) to NEW, for
 * the accounts named in ONLY (NONLY; 0: all): the accounts matched by
 * name, those dropped, those added. OLD and NEW are only read. NULL when
 * out of memory.
 */
struct sched_change;
struct sched_change *sched_change_new(const struct conf *old,
    const struct conf *new, char *const *only, size_t nonly);
void sched_change_free(struct sched_change **ch);

/*
 * Then, on the loop: CONF (the NEW of CH; ownership of both taken) is the
 * configuration from now on, as sched_reload() says, and the accounts
 * move over to it a batch per loop turn; DONE(ARG) is called on the loop
 * when the last has (and the "reloaded" line logged). Until then an
 * account not moved yet polls with its old settings.
 */
void sched_reload_apply(struct sched *sc, struct conf *conf,
    struct sched_change *ch, void (*done)(void *), void *arg);

/* The current configuration (valid until the next reload). */
const struct conf *sched_conf(const struct sched *sc);

/* Whether accounts are still being moved to a new configuration. */
bool sched_reloading(const struct sched *sc);

/* Polls every account now, except those already polling or queued. */
void sched_poll_now(struct sched *sc);

/*
 * CB(ARG) is called whenever what sched_status() reports may have changed
 * (a poll started or ended, a reload). It must not call back into the
 * scheduler except for sched_status(), sched_each_account() and
 * sched_stopping().
 */
void sched_on_change(struct sched *sc, void (*cb)(void *), void *arg);

/*
 * A one-line summary for humans (systemd's STATUS=): the accounts by
 * state (status.h), messages delivered since start, and the most recent
 * failure not yet resolved by a good poll, with its time and account.
 */
void sched_status(const struct sched *sc, char *buf, size_t len);

/*
 * Calls VISIT(VARG, R) for each account, in configuration order, R being
 * its record (status.h) with the state, next poll time and streak filled
 * in. R and the strings in it are valid during the call only. VISIT must
 * not call into the scheduler.
 */
void sched_each_account(const struct sched *sc,
    void (*visit)(void *varg, const struct status_account *r), void *varg);

/*
 * Calls VISIT(VARG, A, S) for each poll under way, in configuration order:
 * A its account, S its session (for session_progress()). Both are valid
 * during the call only; VISIT must not call into the scheduler nor change
 * the session.
 */
void sched_each_session(const struct sched *sc,
    void (*visit)(void *varg, const struct account *a, const struct session *s),
    void *varg);

/*
 * The exit status for --once (sysexits.h): 0, or the most serious class
 * seen: 78 configuration, 74 local I/O, 77 authentication, 75 temporary
 * (also when polls were abandoned at a stop).
 */
int sched_exit_status(const struct sched *sc);

void sched_free(struct sched **sc);

#endif
