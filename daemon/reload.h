/*
 * reload: the configuration file read, checked and compared with the
 * running one on a thread of its own, so that reloading 100,000 accounts
 * never holds the loop; the loop gets the outcome in a completion and
 * swaps it in (sched_reload_apply()).
 */
#ifndef POPFETCHD_RELOAD_H
#define POPFETCHD_RELOAD_H

#include <stdbool.h>
#include <stddef.h>

#include "shard.h"

struct conf;
struct event_base;
struct reload;
struct sched_change;

/*
 * The outcome, on the loop. CONF: the new configuration, or NULL when it
 * has errors; CH: what it changes (with CONF). Both are the callee's.
 * MSGS (N of them, valid during the call): the errors, each with
 * file:line, in file order; or, with CONF, the -a names it lacks.
 */
typedef void (*reload_done_fn)(void *arg, struct conf *conf,
    struct sched_change *ch, char *const *msgs, size_t n);

/* A reloader with its thread, reporting on BASE; NULL on failure. */
struct reload *reload_new(struct event_base *base);

/* What of the file this instance runs: the command line's choice. */
struct reload_pick {
	char *const *only; /* -a: NONLY names, outliving the reload; 0: all */
	size_t nonly;
	bool keep;	    /* -k */
	struct shard shard; /* --shard: the other shards' accounts dropped */
};

/*
 * Reads PATH on the thread and compares it with CUR (the scheduler's
 * configuration, which must stay alive and unchanged until DONE), for
 * the accounts PICK chooses (copied). DONE(ARG, ...) runs on a later
 * loop turn. -1 if a reload is under way already.
 */
int reload_start(struct reload *rl, const char *path, const struct conf *cur,
    const struct reload_pick *pick, reload_done_fn done, void *arg);

/* Whether a file is being read (DONE not called yet). */
bool reload_busy(const struct reload *rl);

/*
 * Hands the memory the last configuration left free back to the system,
 * on the thread (a parse leaves holes where its tree was).
 */
void reload_trim(struct reload *rl);

/*
 * Frees *RL (sets it NULL). A read under way is waited for (at exit
 * only) and its outcome dropped, DONE not called.
 */
void reload_free(struct reload **rl);

#endif
