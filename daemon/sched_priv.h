/*
 * The scheduler's insides, shared by its files: sched.c (slots, timers,
 * the queue under the caps, the end of a poll, start and stop),
 * sched_reload.c (a new configuration, prepared off the loop and moved
 * in a batch of accounts per loop turn) and sched_report.c (each
 * account's record, what --status and STATUS= show).
 *
 * Sized for 100,000 accounts: a slot is a few hundred bytes, its timer a
 * node in one heap (timerq.h), its record packed (struct sched_rec); the
 * counts behind STATUS= are kept as slots change, not recounted.
 */
#ifndef POPFETCHD_SCHED_PRIV_H
#define POPFETCHD_SCHED_PRIV_H

#include <sys/queue.h>

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <event2/util.h>

#include "heap.h"
#include "sched.h"
#include "sclass.h"
#include "timerq.h"

struct event;
struct session_stats;
struct status_account;

/* A configuration and the number of slots and sched pointers using it. */
struct gen {
	struct conf *conf;
	unsigned refs;
};

/*
 * One server name. Entries live as long as the scheduler: one small
 * struct per distinct host name ever configured.
 */
struct host {
	char *name;
	struct host *hnext; /* hash chain */
	unsigned running;   /* polls counted against the cap */
	unsigned releasing; /* of which ended, not yet released */
	TAILQ_HEAD(, slot) waiting;
	TAILQ_ENTRY(host) ready_entry;	 /* in sc->ready */
	TAILQ_ENTRY(host) release_entry; /* in sc->releasing */
	bool ready; /* has waiting polls and room for one more */
};

enum slot_state { SLOT_IDLE, SLOT_ARMED, SLOT_QUEUED, SLOT_RUNNING };

/*
 * What --status shows of an account (struct status_account), packed:
 * the counts of one poll and the counts of polls saturate at 2^32 - 1,
 * times are seconds since the epoch in 32 unsigned bits (until 2106),
 * the failure's message is shared with every account that has the same
 * (intern.h; NULL: none). Kept for every account, so every byte counts
 * 100,000 times.
 */
struct sched_rec {
	uint32_t polling_since, last_start, last_end, fail_time, last_ok;
	uint64_t last_bytes, fetched, bytes, deleted;
	const char *fail_msg;
	float last_secs, last_held; /* in the padding: 128 bytes still */
	uint32_t last_listed, last_fetched, last_deleted, last_left;
	uint32_t last_failed, polls, failures[SC_COUNT];
	unsigned char last_cls, fail_cls;
	bool failing;
};

/*
 * The counts behind STATUS=: each slot counted in one bucket, by its
 * state and how its last poll ended (status.h's states also depend on
 * --once and a stop, which apply to all slots alike).
 */
enum sched_bucket {
	BUCKET_RUNNING,
	BUCKET_QUEUED,
	BUCKET_ARMED_OK,  /* waiting */
	BUCKET_ARMED_BAD, /* backing off */
	BUCKET_IDLE_CONFIG,
	BUCKET_IDLE,
	BUCKET_COUNT
};

struct slot {
	struct sched *sc;
	struct gen *gen;	 /* reference held */
	const struct account *a; /* inside gen->conf */
	struct host *host;
	/* Settings of a reload that came during the running poll. */
	struct gen *next_gen;
	const struct account *next_a;
	struct session *sess;
	struct timerq_node timer; /* armed: its next poll */
	struct heap_node failing; /* in sc->failing while it fails */
	unsigned streak;	  /* polls in a row that ended in LAST */
	int32_t login_delay;	  /* the server's LOGIN-DELAY, -1 if none */
	unsigned char state;	  /* enum slot_state: sched_set_state() */
	unsigned char last;	  /* enum session_class of the previous poll */
	bool removed;		 /* dropped by a reload, freed after its poll */
	bool fallback_said;	 /* the Maildir's sync fallback was logged */
	bool closed;		 /* the poll's connection no longer counts */
	double started;		 /* monotonic seconds, last poll; 0 never */
	uint64_t seq;		 /* creation order, which is list order */
	struct sched_rec rec;	 /* what --status and the metrics show */
	TAILQ_ENTRY(slot) entry; /* in sc->slots */
	TAILQ_ENTRY(slot) qentry; /* in host->waiting */
};

TAILQ_HEAD(slot_list, slot);
TAILQ_HEAD(host_list, host);

struct sched_pass; /* a reload moving the slots over (sched_reload.c) */

/*
 * Polls started in one loop turn at most (sched_try_start()), and the
 * time their starts may take, in seconds: each start allocates its
 * session's buffers, and while a thousand sessions ramp up, the kernel
 * faulting in that fresh memory made 32 starts take 7-9 ms of the loop's
 * CPU in bench/scale.py.
 */
#define SCHED_STARTS_PER_TURN 32
#ifndef SCHED_STARTS_BUDGET /* test_sched has its own (tests/meson.build) */
#define SCHED_STARTS_BUDGET 0.001
#endif

struct sched {
	struct event_base *base;
	struct evdns_base *dns;
	struct worker *worker; /* the sessions' disk work */
	struct gen *cur;
	char *const *only;
	size_t nonly;
	bool once, stopping, abandoned;
	struct slot_list slots;
	size_t nslots;		       /* not counting removed ones */
	uint64_t seq;		       /* of the next slot */
	size_t running, queued, armed; /* running: connections */
	size_t polling; /* polls not ended (a closed one's commit counts) */
	struct timerq *timers; /* the slots' */
	struct host **hosts;   /* hash buckets */
	size_t nbuckets, nhosts;
	struct host_list ready;	    /* round robin over hosts with work */
	struct host_list releasing; /* hosts with polls ended this turn */
	struct event *release;
	struct event *grace;
	size_t buckets[BUCKET_COUNT]; /* slots not removed, by bucket */
	struct heap failing;	      /* failing slots, the latest first */
	struct intern *msgs;	      /* the failure messages they keep */
	struct sched_pass *pass;      /* a reload under way, or NULL */
	enum session_class worst;
	unsigned long long delivered;
	void (*change_cb)(void *);
	void *change_arg;
};

/* sched_host.c */
struct host *sched_host_get(struct sched *sc, const char *name);
void sched_host_update(struct sched *sc, struct host *h);
void sched_hosts_update_all(struct sched *sc);
void sched_hosts_free(struct sched *sc);

/* sched.c */
struct gen *sched_gen_new(struct conf *conf);
struct gen *sched_gen_ref(struct gen *g);
void sched_gen_unref(struct gen **g);
bool sched_selected(const struct sched *sc, const char *name);
double sched_draw(void);
double sched_first_delay(const struct account *a);
double sched_jitter(double secs);
void sched_arm(struct slot *sl, double secs);
struct slot *sched_slot_new(
    struct sched *sc, struct gen *g, const struct account *a);
void sched_slot_free(struct slot *sl);
void sched_slot_apply(
    struct slot *sl, struct gen *g, const struct account *a, bool host_changed);
void sched_try_start(struct sched *sc);
void sched_changed(struct sched *sc);
void sched_maybe_exit(struct sched *sc);

/* sched_end.c: a poll's end. */
void sched_slot_done(void *arg, enum session_class cls,
    const struct session_stats *st, const char *msg);
void sched_slot_closed(void *arg);
void sched_release_cb(evutil_socket_t fd, short what, void *arg);
double sched_login_wait(const struct slot *sl);

/* sched_report.c: the slot's bucket and record, kept as it changes. */
void sched_count(struct slot *sl, int sign);
void sched_set_state(struct slot *sl, enum slot_state st);
void sched_set_last(struct slot *sl, enum session_class cls);
void sched_set_removed(struct slot *sl);
void sched_failing_init(struct sched *sc);
void sched_rec_started(struct slot *sl, time_t now);
void sched_rec_ended(struct slot *sl, enum session_class cls,
    const struct session_stats *st, const char *msg, time_t now);
void sched_rec_forget(struct slot *sl);

/* sched_reload.c */
void sched_pass_forget(struct sched *sc, const struct slot *sl);
void sched_pass_free(struct sched *sc);

#endif
