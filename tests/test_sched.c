/*
 * Tests of daemon/sched.c on a real libevent loop, without a server. The
 * modules the scheduler drives but does not own are fakes here: the
 * session records each start and ends, with a class and counts the case
 * chooses, on a later loop turn (when the case asks, or by itself); the
 * worker pool is a token; configurations are built by hand and freed by
 * the test's conf_free(), which checks that no running poll still uses
 * one. The back-off policy is backoff.c, linked as it is.
 *
 * Delays of hours cannot be awaited, so timerq_arm() is wrapped at link
 * time: every timer the scheduler arms for an account is seen with its
 * delay and put down to its account (the account whose poll is ending
 * while it is armed, or whose timer it was seen to be before). Where a case
 * needs a next poll sooner than its timer, it asks with sched_poll_now(); one
 * case awaits a real timer of one second, and one a real grace period.
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "backoff.h"
#include "conf.h"
#include "monotime.h"
#include "oauth2.h"
#include "sched.h"
#include "session.h"
#include "status.h"
#include "sched_priv.h"
#include "timerq.h"
#include "worker.h"
#include "check_main.h"

/* The bound on any one wait: a case fails, it never hangs. */
#define AWAIT_SECS 3
/* Sessions alive at once, accounts, configurations per case. */
#define MAX_LIVE  96
#define MAX_RECS  96
#define MAX_CONFS 8
#define MAX_ARMS  16
/* Polls whose start time is kept, per account. */
#define MAX_STARTS 16

static struct event_base *base;
static struct evdns_base *dns;
static struct sched *sc;
static bool loop_ended; /* the scheduler ended the loop */
static bool timed_out;

/* The first broken promise a fake saw, for the case to fail on. */
static char violation[256];

static void
violated(const char *what, const char *name)
{
	if (violation[0] == '\0')
		snprintf(violation, sizeof(violation), "%s (%s)", what,
		    name != NULL ? name : "-");
}

/* --- what happened to each account --------------------------------- */

struct rec {
	char name[CONF_NAME_MAX + 1];
	/* How its polls end when they end by themselves, and with what. */
	enum session_class cls;
	struct session_stats st;
	unsigned starts, ends, stops; /* stops: session_stop() calls */
	double start_at[MAX_STARTS];  /* monotonic seconds */
	double ended_at;	      /* when its last done callback ran */
	const struct account *a;      /* given to its last poll */
	const struct conf *conf;
	const struct timerq_node *timer; /* its timer, once seen */
	double delay; /* last delay armed; -1: none since its poll ended */
	unsigned arms;
};

static struct rec recs[MAX_RECS];
static size_t nrecs;

/* The record of account NAME, made when first asked for. */
static struct rec *
rec(const char *name)
{
	struct rec *r;
	size_t i;

	for (i = 0; i < nrecs; i++)
		if (strcmp(recs[i].name, name) == 0)
			return &recs[i];
	ck_assert_uint_lt(nrecs, MAX_RECS);
	r = &recs[nrecs++];
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->cls = SC_OK;
	r->st.login_delay = -1;
	r->delay = -1;
	return r;
}

static unsigned
total_starts(void)
{
	unsigned n = 0;
	size_t i;

	for (i = 0; i < nrecs; i++)
		n += recs[i].starts;
	return n;
}

/* Timers armed that belong to no known account, with their delays. */
static double unknown_arms[MAX_ARMS];
static size_t nunknown;
static double grace_secs = -1; /* armed by sched_stop(); -1: not seen */
static bool in_stop;	       /* the case is inside sched_stop() */
static struct rec *ending;     /* whose done callback is running */
static unsigned changes;       /* sched_on_change() calls */

/* --- the fake configuration --------------------------------------- */

struct spec {
	const char *name, *host;
	unsigned interval;
	unsigned timeout; /* 0: 60 */
};

/* Every configuration made, in order, and whether conf_free() took it. */
static struct conf *confs[MAX_CONFS];
static bool conf_freed[MAX_CONFS];
static size_t nconfs;

static char *
xstrdup(const char *s)
{
	char *p = strdup(s);

	ck_assert_ptr_nonnull(p);
	return p;
}

static struct conf *
make_conf(unsigned max_conn, unsigned per_host, const struct spec *sp, size_t n)
{
	struct conf *c;
	struct account *a;
	size_t i;

	ck_assert_uint_lt(nconfs, MAX_CONFS);
	ck_assert_ptr_nonnull(c = calloc(1, sizeof(*c)));
	ck_assert_ptr_nonnull(c->accounts = calloc(n + 1, sizeof(*a)));
	c->path = xstrdup("test.conf");
	c->poll_interval = 300;
	c->timeout = 60;
	c->max_connections = max_conn;
	c->max_per_host = per_host;
	c->naccounts = n;
	for (i = 0; i < n; i++) {
		a = &c->accounts[i];
		a->name = xstrdup(sp[i].name);
		a->host = xstrdup(sp[i].host);
		a->port = 995;
		a->poll_interval = sp[i].interval;
		a->timeout = sp[i].timeout != 0 ? sp[i].timeout : 60;
		a->file = c->path;
		a->line = (int)i + 1;
	}
	confs[nconfs++] = c;
	return c;
}

/* --- the fake session --------------------------------------------- */

struct session {
	struct rec *r;
	const struct conf *conf;
	const struct account *a;
	session_done_cb done;
	void *arg;
	struct event *end; /* the done callback's own loop turn */
	enum session_class cls;
	struct session_stats st;
	bool ending;		   /* its end is on the way */
	void (*closed)(void *arg); /* session_on_closed() */
	bool conn_closed;	   /* closed early: no longer a connection */
};

static struct session *live[MAX_LIVE];
static size_t nlive;
/*
 * A freed session's connection is closed by libevent later in the same
 * loop turn: until the turn is over it still counts, here as in the
 * daemon. The hosts of those freed this turn.
 */
static char closing[MAX_LIVE][64];
static size_t nclosing;
/* The most connections seen at once, in all and to one host. */
static size_t peak, host_peak;
static unsigned nfreed;
static bool auto_end;	  /* polls end by themselves, on a later turn */
static double start_burn; /* seconds each session_start() takes */
static bool stop_ends;	  /* session_stop() ends a poll (else ignored) */

struct worker {
	unsigned nthreads;
};
static struct worker *the_worker;
static unsigned workers_freed;

static void end_cb(evutil_socket_t fd, short what, void *arg);

/* Connections now: live sessions not closed early, and those closing. */
static size_t
connections(void)
{
	size_t i, n = nclosing;

	for (i = 0; i < nlive; i++)
		n += !live[i]->conn_closed;
	return n;
}

/* Connections to HOST now, its name compared without case. */
static size_t
live_on(const char *host)
{
	size_t i, n = 0;

	for (i = 0; i < nlive; i++)
		if (!live[i]->conn_closed &&
		    strcasecmp(live[i]->a->host, host) == 0)
			n++;
	for (i = 0; i < nclosing; i++)
		if (strcasecmp(closing[i], host) == 0)
			n++;
	return n;
}

/* S ends with CLS on a later loop turn, as a real session does. */
static void
end_soon(struct session *s, enum session_class cls, bool interrupted)
{
	static const struct timeval now = {0, 0};

	if (s->ending)
		return;
	s->ending = true;
	s->cls = cls;
	s->st = s->r->st;
	if (interrupted)
		s->st.interrupted = true;
	evtimer_add(s->end, &now);
}

struct session *
session_start(struct event_base *b, struct evdns_base *d, struct worker *w,
    const struct conf *conf, const struct account *a, session_done_cb cb,
    void *arg)
{
	struct session *s;
	struct rec *r = rec(a->name);
	size_t i, on_host;

	if (b != base || d != dns || w != the_worker || w == NULL)
		violated("session started without the loop, resolver or worker",
		    a->name);
	for (i = 0; i < conf->naccounts && a != &conf->accounts[i]; i++)
		;
	if (i == conf->naccounts)
		violated("account not inside the configuration given", a->name);
	ck_assert_uint_lt(nlive, MAX_LIVE);
	ck_assert_ptr_nonnull(s = calloc(1, sizeof(*s)));
	ck_assert_ptr_nonnull(s->end = evtimer_new(base, end_cb, s));
	s->r = r;
	s->conf = conf;
	s->a = a;
	s->done = cb;
	s->arg = arg;
	live[nlive++] = s;
	if (connections() > peak)
		peak = connections();
	if ((on_host = live_on(a->host)) > host_peak)
		host_peak = on_host;
	if (r->starts < MAX_STARTS)
		r->start_at[r->starts] = monotime();
	r->starts++;
	r->a = a;
	r->conf = conf;
	if (auto_end)
		end_soon(s, r->cls, false);
	for (double t = monotime(); monotime() - t < start_burn;)
		;
	return s;
}

void
session_on_closed(struct session *s, void (*fn)(void *arg))
{
	s->closed = fn;
}

/*
 * S's poll closes its connection and goes on with its last commit, on a
 * loop turn as in the daemon: the connection counts until that turn
 * ends, as a freed one does; the scheduler is told in the turn.
 */
static void
closed_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	s->conn_closed = true;
	ck_assert_uint_lt(nclosing, MAX_LIVE);
	snprintf(closing[nclosing++], sizeof(closing[0]), "%s", s->a->host);
	s->closed(s->arg);
}

static void
close_early(struct session *s)
{
	static const struct timeval now = {0, 0};

	ck_assert(s->closed != NULL);
	ck_assert(!s->conn_closed);
	ck_assert_int_eq(
	    event_base_once(base, -1, EV_TIMEOUT, closed_cb, s, &now), 0);
}

void
session_stop(struct session *s)
{
	s->r->stops++;
	if (stop_ends)
		end_soon(s, SC_OK, true);
}

/* No account of these cases has OAuth2: no token times to report. */
bool
oauth2_times(const char *account, struct oauth2_times *t)
{
	(void)account;
	(void)t;
	return false;
}

void
session_free(struct session **sp)
{
	struct session *s = *sp;
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < nlive && live[i] != s; i++)
		;
	if (i == nlive) {
		violated("a session freed that is not running", NULL);
		return;
	}
	live[i] = live[--nlive];
	ck_assert_uint_lt(nclosing, MAX_LIVE);
	if (!s->conn_closed)
		snprintf(
		    closing[nclosing++], sizeof(closing[0]), "%s", s->a->host);
	event_free(s->end);
	free(s);
	nfreed++;
	*sp = NULL;
}

static void
end_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;
	struct rec *r = s->r;
	unsigned freed = nfreed;

	r->delay = -1;
	r->ended_at = monotime();
	ending = r;
	/* The scheduler frees S in there: not touched after. */
	s->done(s->arg, s->cls, &s->st,
	    s->cls == SC_OK ? "" : backoff_class_name(s->cls));
	ending = NULL;
	r->ends++;
	if (nfreed != freed + 1)
		violated("the done callback did not free its session", r->name);
}

struct worker *
worker_new(struct event_base *b, unsigned nthreads, const char *name)
{
	struct worker *w;

	(void)name;
	if (b != base || the_worker != NULL)
		violated("a second worker, or one on another loop", NULL);
	ck_assert_ptr_nonnull(w = calloc(1, sizeof(*w)));
	w->nthreads = nthreads;
	the_worker = w;
	return w;
}

void
worker_free(struct worker **wp)
{
	if (*wp == NULL)
		return;
	/* Sessions wait for their disk work when freed: they go first. */
	if (nlive > 0)
		violated("worker freed while sessions run", NULL);
	if (*wp != the_worker)
		violated("a worker freed that was not made", NULL);
	free(*wp);
	*wp = NULL;
	workers_freed++;
}

void
conf_free(struct conf **cp)
{
	struct conf *c = *cp;
	size_t i;

	if (c == NULL)
		return;
	for (i = 0; i < nlive; i++)
		if (live[i]->conf == c)
			violated("configuration freed under a running poll",
			    live[i]->a->name);
	for (i = 0; i < nconfs && (confs[i] != c || conf_freed[i]); i++)
		;
	if (i == nconfs)
		violated("a configuration freed twice, or not made", NULL);
	else
		conf_freed[i] = true;
	for (i = 0; i < c->naccounts; i++) {
		free(c->accounts[i].name);
		free(c->accounts[i].host);
	}
	free(c->accounts);
	free(c->path);
	free(c);
	*cp = NULL;
}

/* --- the timers the scheduler arms --------------------------------- */

int __real_event_add(struct event *ev, const struct timeval *tv);
int __wrap_event_add(struct event *ev, const struct timeval *tv);
void __real_timerq_arm(struct timerq *q, struct timerq_node *n, double secs);
void __wrap_timerq_arm(struct timerq *q, struct timerq_node *n, double secs);
void __real_timerq_node_init(struct timerq_node *n);
void __wrap_timerq_node_init(struct timerq_node *n);

static void
note_timer(const struct timerq_node *ev, double secs)
{
	struct rec *r = ending;
	size_t i;

	for (i = 0; r == NULL && i < nrecs; i++)
		if (recs[i].timer == ev)
			r = &recs[i];
	if (r == NULL) {
		if (nunknown < MAX_ARMS)
			unknown_arms[nunknown] = secs;
		nunknown++;
		return;
	}
	r->timer = ev;
	r->delay = secs;
	r->arms++;
}

/* The scheduler's own timers carry it: the one sched_stop() arms. */
int
__wrap_event_add(struct event *ev, const struct timeval *tv)
{
	if (sc != NULL && tv != NULL && in_stop &&
	    event_get_callback_arg(ev) == sc)
		grace_secs = (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
	return __real_event_add(ev, tv);
}

void
__wrap_timerq_arm(struct timerq *q, struct timerq_node *n, double secs)
{
	if (sc != NULL)
		note_timer(n, secs);
	__real_timerq_arm(q, n, secs);
}

/* A freed slot's memory may come back as another account's timer. */
void
__wrap_timerq_node_init(struct timerq_node *n)
{
	size_t i;

	for (i = 0; i < nrecs; i++)
		if (recs[i].timer == n)
			recs[i].timer = NULL;
	__real_timerq_node_init(n);
}

/* --- the loop ------------------------------------------------------ */

static void
guard_cb(evutil_socket_t fd, short what, void *arg)
{
	timed_out = true;
}

/* Runs N loop turns that do not wait, closing what each freed. */
static void
turns(int n)
{
	while (n-- > 0) {
		ck_assert_int_ne(event_base_loop(base, EVLOOP_NONBLOCK), -1);
		nclosing = 0;
	}
}

/* Runs the loop until DONE() says so; fails after AWAIT_SECS. */
static void
await(bool (*done)(void), const char *what)
{
	struct timeval tv = {AWAIT_SECS, 0};
	struct event *guard = evtimer_new(base, guard_cb, NULL);

	ck_assert_ptr_nonnull(guard);
	timed_out = false;
	evtimer_add(guard, &tv);
	while (!done() && !timed_out) {
		ck_assert_int_ne(event_base_loop(base, EVLOOP_ONCE), -1);
		/* One turn: the connections freed in it are closed now. */
		nclosing = 0;
		/* Cleared by the next event_base_loop(): latched here. */
		if (event_base_got_exit(base))
			loop_ended = true;
	}
	event_free(guard);
	ck_assert_msg(!timed_out, "no %s within %d s", what, AWAIT_SECS);
	ck_assert_msg(violation[0] == '\0', "%s", violation);
}

static bool
have_loop_end(void)
{
	return loop_ended;
}

static struct rec *want_rec;
static unsigned want_n;

static bool
have_starts(void)
{
	return want_rec->starts >= want_n;
}

static bool
have_total_starts(void)
{
	return total_starts() >= want_n;
}

static bool
have_ends(void)
{
	return want_rec->ends >= want_n;
}

/* Awaits the Nth start of account NAME's polls. */
static void
await_starts(const char *name, unsigned n)
{
	want_rec = rec(name);
	want_n = n;
	await(have_starts, "poll start");
}

static struct session *
live_session(const char *name)
{
	size_t i;

	for (i = 0; i < nlive; i++)
		if (strcmp(live[i]->a->name, name) == 0)
			return live[i];
	ck_abort_msg("no poll of %s is running", name);
	return NULL;
}

/* Ends NAME's running poll with CLS and awaits its done callback. */
static void
end_poll(const char *name, enum session_class cls)
{
	struct rec *r = rec(name);

	end_soon(live_session(name), cls, false);
	want_rec = r;
	want_n = r->ends + 1;
	await(have_ends, "end of a poll");
}

static void
count_change(void *arg)
{
	changes++;
}

/* A scheduler for CONF on the test's loop, reporting changes. */
static void
new_sched(struct conf *conf, bool once, char *const *only, size_t nonly)
{
	ck_assert_ptr_nonnull(
	    sc = sched_new(base, dns, conf, once, only, nonly));
	sched_on_change(sc, count_change, NULL);
}

static void
stop(void)
{
	in_stop = true;
	sched_stop(sc);
	in_stop = false;
}

/* Whether the last delay armed for NAME is within [LO, HI] seconds. */
static void
assert_delay(const char *name, double lo, double hi)
{
	double d = rec(name)->delay;

	ck_assert_msg(d >= lo && d <= hi,
	    "%s: next poll in %.3f s, want %g..%g", name, d, lo, hi);
}

/* Frees the scheduler (and so its configurations) in the middle of a case. */
static void
free_sched(void)
{
	sched_free(&sc);
	ck_assert_ptr_null(sc);
	ck_assert_msg(violation[0] == '\0', "%s", violation);
}

/* --- fixture ------------------------------------------------------- */

static void
reset(void)
{
	memset(recs, 0, sizeof(recs));
	nrecs = 0;
	nunknown = 0;
	grace_secs = -1;
	in_stop = false;
	ending = NULL;
	changes = 0;
	memset(confs, 0, sizeof(confs));
	memset(conf_freed, 0, sizeof(conf_freed));
	nconfs = 0;
	nlive = nclosing = peak = host_peak = 0;
	nfreed = 0;
	auto_end = stop_ends = false;
	start_burn = 0;
	the_worker = NULL;
	workers_freed = 0;
	loop_ended = timed_out = false;
	violation[0] = '\0';
}

static void
setup(void)
{
	/* Cases share one process under the sanitizers: start afresh. */
	reset();
	srandom(1);
	unsetenv("POPFETCHD_LOOP_STATS");
	ck_assert_ptr_nonnull(base = event_base_new());
	ck_assert_ptr_nonnull(dns = evdns_base_new(base, 0));
}

static void
teardown(void)
{
	size_t i;

	sched_free(&sc);
	evdns_base_free(dns, 0);
	event_base_free(base);
	base = NULL;
	dns = NULL;
	ck_assert_msg(violation[0] == '\0', "%s", violation);
	ck_assert_uint_eq(nlive, 0);
	for (i = 0; i < nconfs; i++)
		ck_assert_msg(conf_freed[i], "configuration %zu not freed", i);
	if (the_worker != NULL)
		ck_assert_uint_eq(workers_freed, 1);
}

/* --- --once -------------------------------------------------------- */

/* Polls every account once with the classes CLS; the exit status. */
static int
once_with(const enum session_class *cls, size_t n)
{
	static const char *const names[] = {"a", "b", "c", "d"};
	struct spec sp[4];
	size_t i;
	int status;

	ck_assert_uint_le(n, 4);
	reset();
	for (i = 0; i < n; i++) {
		sp[i] = (struct spec){names[i], "pop.test", 300, 0};
		rec(names[i])->cls = cls[i];
	}
	auto_end = true;
	new_sched(make_conf(64, 4, sp, n), true, NULL, 0);
	sched_start(sc);
	await(have_loop_end, "end of the --once run");
	for (i = 0; i < n; i++)
		ck_assert_uint_eq(rec(names[i])->starts, 1);
	status = sched_exit_status(sc);
	free_sched();
	ck_assert(conf_freed[0]);
	return status;
}

START_TEST(once_polls_each_account_once_and_ends_the_loop)
{
	static const struct spec sp[] = {
	    {"a", "pop.one.test", 300, 0},
	    {"b", "pop.two.test", 300, 0},
	    {"c", "pop.one.test", 300, 0},
	};
	char status[256];

	rec("a")->cls = SC_AUTH;
	rec("b")->cls = SC_NET;
	rec("c")->st.fetched = 3;
	auto_end = true;
	new_sched(make_conf(64, 4, sp, 3), true, NULL, 0);
	sched_start(sc);
	await(have_loop_end, "end of the --once run");
	ck_assert_uint_eq(rec("a")->starts, 1);
	ck_assert_uint_eq(rec("b")->starts, 1);
	ck_assert_uint_eq(rec("c")->starts, 1);
	ck_assert_uint_eq(nlive, 0);
	/* Nothing armed to come back: no account would be polled again. */
	ck_assert_uint_eq(nunknown, 0);
	ck_assert_uint_eq(rec("a")->arms + rec("b")->arms + rec("c")->arms, 0);
	/* Refused login outweighs the network: EX_NOPERM. */
	ck_assert_int_eq(sched_exit_status(sc), EX_NOPERM);
	sched_status(sc, status, sizeof(status));
	ck_assert_msg(strstr(status, "3 delivered") != NULL, "%s", status);
	ck_assert_uint_gt(changes, 0);
}
END_TEST

/* The exit status is the most serious class of the run. */
START_TEST(once_exit_status_is_the_worst_class)
{
	static const struct {
		enum session_class cls[3];
		size_t n;
		int status;
	} rows[] = {
	    {{SC_OK, SC_OK}, 2, EX_OK},
	    {{SC_OK, SC_NET}, 2, EX_TEMPFAIL},
	    {{SC_BUSY, SC_PROTO, SC_OK}, 3, EX_TEMPFAIL},
	    {{SC_AUTH, SC_NET}, 2, EX_NOPERM},
	    {{SC_NET, SC_AUTH}, 2, EX_NOPERM},
	    {{SC_AUTH, SC_LOCAL, SC_NET}, 3, EX_IOERR},
	    {{SC_CONFIG, SC_LOCAL, SC_AUTH}, 3, EX_CONFIG},
	    {{SC_OK, SC_CONFIG}, 2, EX_CONFIG},
	};
	size_t i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
		ck_assert_msg(
		    once_with(rows[i].cls, rows[i].n) == rows[i].status,
		    "row %zu", i);
}
END_TEST

/* A poll that was interrupted counts as a temporary failure. */
START_TEST(once_interrupted_poll_is_a_temporary_failure)
{
	static const struct spec sp[] = {{"a", "pop.test", 300, 0}};

	rec("a")->st.interrupted = true;
	auto_end = true;
	new_sched(make_conf(64, 4, sp, 1), true, NULL, 0);
	sched_start(sc);
	await(have_loop_end, "end of the --once run");
	ck_assert_int_eq(sched_exit_status(sc), EX_TEMPFAIL);
}
END_TEST

START_TEST(once_polls_only_the_named_accounts)
{
	static const struct spec sp[] = {
	    {"a", "pop.test", 300, 0},
	    {"b", "pop.test", 300, 0},
	    {"c", "pop.test", 300, 0},
	};
	static char *const only[] = {"c", "a"};

	rec("a")->cls = SC_NET;
	rec("b")->cls = SC_CONFIG;
	auto_end = true;
	new_sched(make_conf(64, 4, sp, 3), true, only, 2);
	sched_start(sc);
	await(have_loop_end, "end of the --once run");
	ck_assert_uint_eq(rec("a")->starts, 1);
	ck_assert_uint_eq(rec("b")->starts, 0);
	ck_assert_uint_eq(rec("c")->starts, 1);
	ck_assert_int_eq(sched_exit_status(sc), EX_TEMPFAIL);
}
END_TEST

START_TEST(once_without_accounts_ends_at_once)
{
	static char *const only[] = {"nobody"};
	static const struct spec sp[] = {{"a", "pop.test", 300, 0}};

	new_sched(make_conf(64, 4, sp, 1), true, only, 1);
	sched_start(sc);
	await(have_loop_end, "end of the --once run");
	ck_assert_uint_eq(total_starts(), 0);
	ck_assert_int_eq(sched_exit_status(sc), EX_OK);
}
END_TEST

/* --- connection limits --------------------------------------------- */

/*
 * Seven accounts on three hosts through three connections: never more at
 * once, counting those closing in the turn their poll ended, and every
 * account polled once.
 */
START_TEST(connection_limit_holds_and_every_account_is_polled)
{
	static const struct spec sp[] = {
	    {"a1", "pop.a.test", 300, 0},
	    {"a2", "pop.a.test", 300, 0},
	    {"b1", "pop.b.test", 300, 0},
	    {"b2", "pop.b.test", 300, 0},
	    {"b3", "pop.b.test", 300, 0},
	    {"c1", "pop.c.test", 300, 0},
	    {"c2", "pop.c.test", 300, 0},
	};
	size_t i;

	auto_end = true;
	new_sched(make_conf(3, 4, sp, 7), true, NULL, 0);
	sched_start(sc);
	/* The first round is started at once, up to the cap. */
	ck_assert_uint_eq(nlive, 3);
	await(have_loop_end, "end of the --once run");
	for (i = 0; i < 7; i++)
		ck_assert_msg(rec(sp[i].name)->starts == 1,
		    "%s polled %u times", sp[i].name, rec(sp[i].name)->starts);
	ck_assert_uint_eq(peak, 3);
	ck_assert_int_eq(sched_exit_status(sc), EX_OK);
}
END_TEST

/*
 * Three spellings of one host count as one against max_per_host: were
 * they three hosts, the first round would put four polls on it at once.
 */
START_TEST(per_host_limit_compares_host_names_without_case)
{
	static const struct spec sp[] = {
	    {"a1", "pop.a.test", 300, 0},
	    {"a2", "POP.A.TEST", 300, 0},
	    {"a3", "Pop.A.Test", 300, 0},
	    {"a4", "pop.a.test", 300, 0},
	    {"b1", "pop.b.test", 300, 0},
	};
	size_t i;

	auto_end = true;
	new_sched(make_conf(64, 2, sp, 5), true, NULL, 0);
	sched_start(sc);
	ck_assert_uint_eq(nlive, 3);
	ck_assert_uint_eq(live_on("pop.a.test"), 2);
	ck_assert_uint_eq(live_on("pop.b.test"), 1);
	await(have_loop_end, "end of the --once run");
	for (i = 0; i < 5; i++)
		ck_assert_msg(rec(sp[i].name)->starts == 1,
		    "%s polled %u times", sp[i].name, rec(sp[i].name)->starts);
	ck_assert_uint_eq(host_peak, 2);
	ck_assert_int_eq(sched_exit_status(sc), EX_OK);
}
END_TEST

static bool
eighty_live(void)
{
	return nlive == 80;
}

/* Eighty polls due at once, room for all, on two hosts. */
static void
eighty_due(void)
{
	static char names[80][8];
	static struct spec sp[80];
	static const char *const hosts[] = {"pop.a.test", "pop.b.test"};
	size_t i;

	for (i = 0; i < 80; i++) {
		snprintf(names[i], sizeof(names[i]), "n%zu", i);
		sp[i] = (struct spec){names[i], hosts[i % 2], 300, 0};
	}
	new_sched(make_conf(100, 100, sp, 80), true, NULL, 0);
}

static void
assert_eighty_started_once(void)
{
	char name[8];
	size_t i;

	await(eighty_live, "every poll started");
	ck_assert_uint_eq(peak, 80);
	for (i = 0; i < 80; i++) {
		snprintf(name, sizeof(name), "n%zu", i);
		ck_assert_uint_eq(rec(name)->starts, 1);
	}
}

/*
 * The first loop turn starts SCHED_STARTS_PER_TURN of them at most
 * (fewer if their starts took SCHED_STARTS_BUDGET, as a busy machine
 * may make them), the next turns the rest, so that the loop's other
 * events are not held while every poll starts.
 */
START_TEST(many_due_polls_start_over_several_turns)
{
	eighty_due();
	sched_start(sc);
	ck_assert_uint_ge(nlive, 1);
	ck_assert_uint_le(nlive, SCHED_STARTS_PER_TURN);
	assert_eighty_started_once();
}
END_TEST

/*
 * Starts that take long end the turn's starting once they took
 * SCHED_STARTS_BUDGET, however few: at 60% of it each, two at most.
 */
START_TEST(slow_starts_end_the_turn_early)
{
	start_burn = SCHED_STARTS_BUDGET * 0.6;
	eighty_due();
	sched_start(sc);
	ck_assert_uint_ge(nlive, 1);
	ck_assert_uint_le(nlive, 2);
	start_burn = 0;
	assert_eighty_started_once();
}
END_TEST

/* One connection: polls wait in the queue and start one by one. */
START_TEST(queued_polls_start_as_connections_free_up)
{
	static const struct spec sp[] = {
	    {"a", "pop.a.test", 300, 0},
	    {"b", "pop.b.test", 300, 0},
	    {"c", "pop.a.test", 300, 0},
	};

	new_sched(make_conf(1, 4, sp, 3), true, NULL, 0);
	sched_start(sc);
	ck_assert_uint_eq(total_starts(), 1);
	ck_assert_uint_eq(rec("a")->starts, 1);
	end_poll("a", SC_OK);
	await_starts("b", 1);
	ck_assert_uint_eq(nlive, 1);
	end_poll("b", SC_NET);
	await_starts("c", 1);
	ck_assert_uint_eq(nlive, 1);
	ck_assert(!loop_ended);
	end_poll("c", SC_OK);
	await(have_loop_end, "end of the --once run");
	ck_assert_uint_eq(total_starts(), 3);
	ck_assert_uint_eq(peak, 1);
	ck_assert_int_eq(sched_exit_status(sc), EX_TEMPFAIL);
}
END_TEST

/*
 * A poll whose connection closed while its last commit runs no longer
 * counts against the caps: the next queued poll starts before it ends,
 * never over the cap, and its end does not free the place a second time.
 */
START_TEST(a_closed_connection_frees_its_place_before_the_end)
{
	static const struct spec sp[] = {
	    {"a", "pop.a.test", 300, 0},
	    {"b", "pop.a.test", 300, 0},
	    {"c", "pop.a.test", 300, 0},
	};

	new_sched(make_conf(1, 4, sp, 3), true, NULL, 0);
	sched_start(sc);
	ck_assert_uint_eq(total_starts(), 1);
	close_early(live_session("a"));
	await_starts("b", 1);
	ck_assert_uint_eq(rec("c")->starts, 0);
	/* a's end (its commit done) must not let c in beside b. */
	end_poll("a", SC_OK);
	ck_assert_uint_eq(rec("c")->starts, 0);
	end_poll("b", SC_OK);
	await_starts("c", 1);
	/*
	 * The last poll closes early too, and its place is given back
	 * before it ends: its end must still end the run.
	 */
	close_early(live_session("c"));
	turns(3);
	ck_assert(!loop_ended);
	end_poll("c", SC_OK);
	await(have_loop_end, "end of the --once run");
	ck_assert_uint_eq(peak, 1);
	ck_assert_uint_eq(total_starts(), 3);
	ck_assert_int_eq(sched_exit_status(sc), EX_OK);
}
END_TEST

/* --- back-off ------------------------------------------------------ */

/*
 * One account through a sequence of endings: the delay armed after each,
 * give or take the 10 % jitter. A network or protocol failure streak
 * doubles the interval; success, a busy server and a full disk keep it;
 * a refused login waits an hour and more; a configuration error arms
 * nothing. Each next poll is asked for with sched_poll_now().
 */
START_TEST(failures_back_off_by_class_and_streak)
{
	static const struct spec sp[] = {{"f", "pop.test", 60, 0}};
	static const struct {
		enum session_class cls;
		double base; /* seconds; 0: nothing armed */
	} steps[] = {
	    {SC_NET, 60},
	    {SC_NET, 120},
	    {SC_NET, 240},
	    {SC_OK, 60},
	    {SC_PROTO, 60},
	    {SC_PROTO, 120},
	    {SC_BUSY, 60},
	    {SC_LOCAL, 60},
	    {SC_LOCAL, 60},
	    {SC_AUTH, 3600},
	    {SC_AUTH, 7200},
	    {SC_CONFIG, 0},
	};
	size_t i;

	new_sched(make_conf(64, 4, sp, 1), false, NULL, 0);
	sched_start(sc);
	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		sched_poll_now(sc);
		ck_assert_uint_eq(rec("f")->starts, i + 1);
		end_poll("f", steps[i].cls);
		if (steps[i].base == 0)
			ck_assert_msg(rec("f")->delay < 0,
			    "step %zu armed %.1f", i, rec("f")->delay);
		else
			assert_delay(
			    "f", steps[i].base * 0.9, steps[i].base * 1.1);
	}
}
END_TEST

/*
 * A real timer: after a network failure of an account polled every
 * second, the next poll starts by itself no sooner than the delay armed.
 */
START_TEST(failed_account_is_polled_again_after_its_delay)
{
	static const struct spec sp[] = {{"n", "pop.test", 1, 0}};
	struct rec *r = rec("n");
	double delay;

	new_sched(make_conf(64, 4, sp, 1), false, NULL, 0);
	sched_start(sc);
	sched_poll_now(sc);
	ck_assert_uint_eq(r->starts, 1);
	end_poll("n", SC_NET);
	assert_delay("n", 0.9, 1.1);
	delay = r->delay;
	await_starts("n", 2);
	ck_assert_msg(r->start_at[1] - r->ended_at >= delay - 0.05,
	    "polled again %.3f s after a failure, delay %.3f s",
	    r->start_at[1] - r->ended_at, delay);
	/* The second failure in a row: twice the interval. */
	end_poll("n", SC_NET);
	assert_delay("n", 1.8, 2.2);
}
END_TEST

/* LOGIN-DELAY is a floor under the next poll, even one asked for now. */
START_TEST(login_delay_holds_even_poll_now)
{
	static const struct spec sp[] = {{"l", "pop.test", 60, 0}};
	struct rec *r = rec("l");

	new_sched(make_conf(64, 4, sp, 1), false, NULL, 0);
	sched_start(sc);
	sched_poll_now(sc);
	r->st.login_delay = 900;
	end_poll("l", SC_OK);
	/* Counted from the start of the poll that just ended. */
	assert_delay("l", 899, 900);
	sched_poll_now(sc);
	ck_assert_uint_eq(r->starts, 1);
	assert_delay("l", 899, 900);
}
END_TEST

/*
 * A configuration error pauses the account: the others go on being
 * polled, it is not, until a reload tries it again.
 */
START_TEST(config_error_pauses_the_account_until_reload)
{
	static const struct spec sp[] = {
	    {"c", "pop.test", 0, 0},
	    {"o", "pop.test", 0, 0},
	};

	rec("c")->cls = SC_CONFIG;
	auto_end = true;
	new_sched(make_conf(64, 4, sp, 2), false, NULL, 0);
	sched_start(sc);
	/* An interval of 0: "o" is polled again on every other turn. */
	await_starts("o", 6);
	ck_assert_uint_eq(rec("c")->starts, 1);
	ck_assert_uint_eq(rec("c")->ends, 1);
	ck_assert(rec("c")->delay < 0);
	rec("c")->cls = SC_OK;
	sched_reload(sc, make_conf(64, 4, sp, 2));
	await_starts("c", 2);
	ck_assert_ptr_eq(rec("c")->conf, confs[1]);
}
END_TEST

/* A refused login waits long, but a reload (a new password) retries soon. */
START_TEST(auth_failure_is_retried_soon_after_reload)
{
	static const struct spec sp[] = {{"f", "pop.test", 60, 0}};

	new_sched(make_conf(64, 4, sp, 1), false, NULL, 0);
	sched_start(sc);
	sched_poll_now(sc);
	end_poll("f", SC_AUTH);
	assert_delay("f", 3240, 3960);
	sched_reload(sc, make_conf(64, 4, sp, 1));
	ck_assert_uint_eq(rec("f")->arms, 2);
	/* Spread like a first poll: within 30 s. */
	assert_delay("f", 0, 30);
}
END_TEST

/* --- poll now ------------------------------------------------------ */

START_TEST(poll_now_starts_idle_accounts_at_once)
{
	static const struct spec sp[] = {
	    {"p1", "pop.test", 300, 0},
	    {"p2", "pop.test", 300, 0},
	    {"p3", "pop.test", 300, 0},
	};
	unsigned before;
	size_t i;

	new_sched(make_conf(64, 4, sp, 3), false, NULL, 0);
	sched_start(sc);
	/* First polls are spread over at most 30 s, none started yet. */
	ck_assert_uint_eq(total_starts(), 0);
	ck_assert_uint_eq(nunknown, 3);
	for (i = 0; i < 3; i++)
		ck_assert(unknown_arms[i] >= 0 && unknown_arms[i] <= 30);
	before = changes;
	sched_poll_now(sc);
	ck_assert_uint_eq(total_starts(), 3);
	ck_assert_uint_gt(changes, before);
	/* Those polling are not polled twice. */
	sched_poll_now(sc);
	ck_assert_uint_eq(total_starts(), 3);
	before = changes;
	end_poll("p1", SC_OK);
	ck_assert_uint_gt(changes, before);
	assert_delay("p1", 270, 330);
	sched_poll_now(sc);
	ck_assert_uint_eq(rec("p1")->starts, 2);
	ck_assert_uint_eq(rec("p2")->starts, 1);
	ck_assert_uint_eq(rec("p3")->starts, 1);
}
END_TEST

/* Polls already queued stay queued once: none is polled twice. */
START_TEST(poll_now_skips_queued_accounts)
{
	static const struct spec sp[] = {
	    {"q1", "pop.test", 300, 0},
	    {"q2", "pop.test", 300, 0},
	    {"q3", "pop.test", 300, 0},
	};
	const char *running;
	size_t i;

	new_sched(make_conf(1, 4, sp, 3), false, NULL, 0);
	sched_start(sc);
	sched_poll_now(sc);
	sched_poll_now(sc);
	ck_assert_uint_eq(total_starts(), 1);
	for (i = 0; i < 3; i++) {
		ck_assert_uint_eq(nlive, 1);
		running = live[0]->a->name;
		ck_assert_uint_eq(rec(running)->starts, 1);
		end_poll(running, SC_OK);
		if (i < 2) {
			want_n = (unsigned)i + 2;
			await(have_total_starts, "next queued poll");
		}
	}
	ck_assert_uint_eq(total_starts(), 3);
}
END_TEST

/* --- stop ---------------------------------------------------------- */

START_TEST(stop_asks_running_polls_and_ends_when_they_do)
{
	static const struct spec sp[] = {
	    {"r1", "pop.test", 60, 20},
	    {"r2", "pop.test", 60, 30},
	    {"i1", "pop.test", 60, 90},
	};

	new_sched(make_conf(64, 4, sp, 3), false, NULL, 0);
	sched_start(sc);
	sched_poll_now(sc);
	end_poll("i1", SC_OK);
	stop_ends = true;
	stop();
	ck_assert(sched_stopping(sc));
	ck_assert_uint_eq(rec("r1")->stops, 1);
	ck_assert_uint_eq(rec("r2")->stops, 1);
	ck_assert_uint_eq(rec("i1")->stops, 0);
	/* The longest timeout of the running polls, not of all accounts. */
	ck_assert(grace_secs == 30);
	sched_poll_now(sc);
	ck_assert_uint_eq(total_starts(), 3);
	ck_assert(!loop_ended);
	await(have_loop_end, "end of the loop after the stop");
	ck_assert_uint_eq(rec("r1")->ends, 1);
	ck_assert_uint_eq(rec("r2")->ends, 1);
	ck_assert_uint_eq(total_starts(), 3);
	/* Interrupted polls: the next run resumes them. */
	ck_assert_int_eq(sched_exit_status(sc), EX_TEMPFAIL);
}
END_TEST

START_TEST(second_stop_abandons_running_polls)
{
	static const struct spec sp[] = {
	    {"r1", "pop.test", 60, 3},
	    {"r2", "pop.test", 60, 7},
	};

	new_sched(make_conf(64, 4, sp, 2), false, NULL, 0);
	sched_start(sc);
	sched_poll_now(sc);
	stop();
	ck_assert(grace_secs == 7);
	ck_assert_uint_eq(nlive, 2);
	stop();
	/* Freed within the call, without a done callback. */
	ck_assert_uint_eq(nlive, 0);
	ck_assert_uint_eq(nfreed, 2);
	await(have_loop_end, "end of the loop after the second stop");
	ck_assert_uint_eq(rec("r1")->ends + rec("r2")->ends, 0);
	ck_assert_int_eq(sched_exit_status(sc), EX_TEMPFAIL);
}
END_TEST

START_TEST(grace_period_abandons_running_polls)
{
	static const struct spec sp[] = {
	    {"r1", "pop.test", 60, 1},
	    {"r2", "pop.test", 60, 1},
	};
	double t0;

	new_sched(make_conf(64, 4, sp, 2), false, NULL, 0);
	sched_start(sc);
	sched_poll_now(sc);
	t0 = monotime();
	stop();
	ck_assert(grace_secs == 1);
	await(have_loop_end, "end of the grace period");
	ck_assert_msg(
	    monotime() - t0 >= 0.95, "abandoned after %.3f s", monotime() - t0);
	ck_assert_uint_eq(nlive, 0);
	ck_assert_uint_eq(rec("r1")->stops + rec("r2")->stops, 2);
	ck_assert_uint_eq(rec("r1")->ends + rec("r2")->ends, 0);
	ck_assert_int_eq(sched_exit_status(sc), EX_TEMPFAIL);
}
END_TEST

START_TEST(stop_with_nothing_running_ends_the_loop)
{
	static const struct spec sp[] = {{"a", "pop.test", 60, 0}};

	new_sched(make_conf(64, 4, sp, 1), false, NULL, 0);
	sched_start(sc);
	stop();
	ck_assert(grace_secs < 0);
	await(have_loop_end, "end of the loop after the stop");
	ck_assert_uint_eq(total_starts(), 0);
	ck_assert_int_eq(sched_exit_status(sc), EX_OK);
}
END_TEST

/* --- reload -------------------------------------------------------- */

/*
 * During the running polls of x and y, a reload changes x (host and
 * interval), drops y and adds z. The running polls go on with the old
 * settings, whose configuration lives until the last of them ends; then
 * x uses its new ones, y is not polled again, z is polled by itself.
 */
START_TEST(reload_drops_adds_and_changes_accounts)
{
	static const struct spec old[] = {
	    {"x", "old.test", 60, 0},
	    {"y", "old.test", 60, 0},
	};
	static const struct spec new[] = {
	    {"x", "new.test", 600, 0},
	    {"z", "old.test", 0, 0},
	};
	struct rec *x = rec("x"), *y = rec("y"), *z = rec("z");

	new_sched(make_conf(64, 4, old, 2), false, NULL, 0);
	sched_start(sc);
	sched_poll_now(sc);
	ck_assert_uint_eq(total_starts(), 2);
	sched_reload(sc, make_conf(64, 4, new, 2));
	ck_assert(!conf_freed[0]);
	/* An interval of 0: the added account's first poll comes at once. */
	await_starts("z", 1);
	ck_assert_ptr_eq(z->conf, confs[1]);
	ck_assert_str_eq(live_session("x")->a->host, "old.test");
	end_poll("y", SC_OK);
	ck_assert(y->delay < 0);
	ck_assert(!conf_freed[0]);
	end_poll("x", SC_OK);
	ck_assert(conf_freed[0]);
	assert_delay("x", 540, 660);
	sched_poll_now(sc);
	ck_assert_uint_eq(x->starts, 2);
	ck_assert_str_eq(x->a->host, "new.test");
	ck_assert_ptr_eq(x->conf, confs[1]);
	ck_assert_uint_eq(y->starts, 1);
	ck_assert_uint_eq(z->starts, 1);
}
END_TEST

/* An account dropped while idle goes at once, with its configuration. */
START_TEST(reload_drops_an_idle_account_at_once)
{
	static const struct spec old[] = {
	    {"a", "pop.test", 60, 0},
	    {"b", "pop.test", 60, 0},
	};

	new_sched(make_conf(64, 4, old, 2), false, NULL, 0);
	sched_start(sc);
	sched_poll_now(sc);
	end_poll("a", SC_OK);
	end_poll("b", SC_OK);
	sched_reload(sc, make_conf(64, 4, old, 1));
	ck_assert(conf_freed[0]);
	sched_poll_now(sc);
	ck_assert_uint_eq(rec("a")->starts, 2);
	ck_assert_uint_eq(rec("b")->starts, 1);
	ck_assert_ptr_eq(rec("a")->conf, confs[1]);
}
END_TEST

/* --- reload in turns, and what it keeps ----------------------------- */

/* A queued poll whose account moves to another server starts there. */
START_TEST(reload_moves_a_queued_poll_to_its_new_host)
{
	static const struct spec old[] = {
	    {"q1", "a.test", 60, 0},
	    {"q2", "a.test", 60, 0},
	};
	static const struct spec new[] = {
	    {"q1", "A.Test", 60, 0},
	    {"q2", "b.test", 60, 0},
	};

	new_sched(make_conf(64, 1, old, 2), false, NULL, 0);
	sched_start(sc);
	sched_poll_now(sc);
	ck_assert_uint_eq(nlive, 1);
	ck_assert_uint_eq(rec("q1")->starts, 1);
	sched_reload(sc, make_conf(64, 1, new, 2));
	await_starts("q2", 1);
	ck_assert_str_eq(rec("q2")->a->host, "b.test");
	/* Only the case changed: still the one host, still capped at one. */
	ck_assert_uint_eq(live_on("a.test"), 1);
	ck_assert_uint_eq(host_peak, 1);
	ck_assert_uint_eq(nlive, 2);
}
END_TEST

/* A reload that raises max_per_host starts the polls it lets through. */
START_TEST(reload_raises_the_per_host_cap)
{
	static const struct spec sp[] = {
	    {"r1", "a.test", 60, 0},
	    {"r2", "a.test", 60, 0},
	    {"r3", "a.test", 60, 0},
	};

	new_sched(make_conf(64, 1, sp, 3), false, NULL, 0);
	sched_start(sc);
	sched_poll_now(sc);
	ck_assert_uint_eq(nlive, 1);
	sched_reload(sc, make_conf(64, 3, sp, 3));
	want_n = 3;
	await(have_total_starts, "the queued polls");
	ck_assert_uint_eq(live_on("a.test"), 3);
}
END_TEST

static unsigned reloads_done;

static void
reload_done(void *arg)
{
	ck_assert_ptr_eq(arg, &reloads_done);
	reloads_done++;
}

static bool
have_reload_done(void)
{
	return reloads_done > 0;
}

/*
 * A reload in turns: the configuration is current at once, the accounts
 * move on later turns, the callback comes after the last. Here the first
 * slot (the cursor's start) is one an earlier reload dropped while it
 * polled, and its poll ends before the move reaches it: it is freed
 * under the cursor, which steps over it.
 */
START_TEST(reload_in_turns_steps_over_a_freed_slot)
{
	static const struct spec first[] = {
	    {"x", "pop.test", 60, 0},
	    {"y", "pop.test", 60, 0},
	};
	static const struct spec third[] = {
	    {"y", "pop.test", 60, 0},
	    {"z", "pop.test", 0, 0},
	};
	struct sched_change *ch;
	struct conf *c3;

	new_sched(make_conf(64, 4, first, 2), false, NULL, 0);
	sched_start(sc);
	sched_poll_now(sc);
	ck_assert_uint_eq(nlive, 2);
	/* x dropped while it polls; y kept. */
	sched_reload(sc, make_conf(64, 4, first + 1, 1));
	ck_assert(!conf_freed[1]);
	/* x's end is queued before the reload's first turn. */
	end_soon(live_session("x"), SC_OK, false);
	c3 = make_conf(64, 4, third, 2);
	ck_assert_ptr_nonnull(
	    ch = sched_change_new(sched_conf(sc), c3, NULL, 0));
	reloads_done = 0;
	sched_reload_apply(sc, c3, ch, reload_done, &reloads_done);
	ck_assert_ptr_eq(sched_conf(sc), c3);
	ck_assert(sched_reloading(sc));
	ck_assert_uint_eq(reloads_done, 0);
	await(have_reload_done, "the end of the reload");
	ck_assert_uint_eq(reloads_done, 1);
	ck_assert(!sched_reloading(sc));
	ck_assert_uint_eq(rec("x")->ends, 1);
	/* The second configuration went with the reload; the first waits for y.
	 */
	ck_assert(conf_freed[1]);
	ck_assert(!conf_freed[0]);
	await_starts("z", 1);
	ck_assert_ptr_eq(rec("z")->conf, c3);
	end_poll("y", SC_OK);
	ck_assert(conf_freed[0]);
	sched_poll_now(sc);
	ck_assert_uint_eq(rec("y")->starts, 2);
	ck_assert_ptr_eq(rec("y")->conf, c3);
	ck_assert_uint_eq(rec("x")->starts, 1);
}
END_TEST

/* --- STATUS= from the counts kept ----------------------------------- */

struct tally {
	struct status_tally t;
	unsigned long long fetched;
};

static void
tally_visit(void *varg, const struct status_account *r)
{
	struct tally *t = varg;

	status_tally_add(&t->t, r);
	t->fetched += r->fetched;
}

/* sched_status() says what a count over every record says. */
static void
assert_status_line(const char *when)
{
	struct tally t = {0};
	char kept[512], counted[512];

	sched_each_account(sc, tally_visit, &t);
	status_tally_line(&t.t, sched_stopping(sc), t.fetched, time(NULL),
	    counted, sizeof(counted));
	sched_status(sc, kept, sizeof(kept));
	ck_assert_msg(strcmp(kept, counted) == 0,
	    "%s:\n  kept:    %s\n  counted: %s", when, kept, counted);
}

static bool
have_live(void)
{
	return nlive > 0;
}

/* Ends the first running poll with CLS, once there is one. */
static void
end_first(enum session_class cls)
{
	await(have_live, "a running poll");
	end_poll(live[0]->a->name, cls);
}

START_TEST(status_line_is_kept_as_slots_change)
{
	static const struct spec old[] = {
	    {"a", "one.test", 60, 0},
	    {"b", "one.test", 60, 0},
	    {"c", "two.test", 60, 0},
	    {"d", "two.test", 60, 0},
	};
	static const struct spec new[] = {
	    {"a", "one.test", 60, 0},
	    {"c", "two.test", 60, 0},
	    {"d", "two.test", 60, 0},
	    {"e", "two.test", 60, 0},
	};
	static const enum session_class cls[] = {
	    SC_NET, SC_AUTH, SC_CONFIG, SC_OK};
	size_t i;

	rec("d")->st.fetched = 3;
	new_sched(make_conf(2, 4, old, 4), false, NULL, 0);
	assert_status_line("made");
	sched_start(sc);
	assert_status_line("started");
	sched_poll_now(sc);
	assert_status_line("two polling, two queued");
	for (i = 0; i < 4; i++) {
		end_first(cls[i]);
		assert_status_line(backoff_class_name(cls[i]));
	}
	/* b goes (failing, or paused, or fine); e comes. */
	sched_reload(sc, make_conf(2, 4, new, 4));
	assert_status_line("reloaded");
	sched_poll_now(sc);
	assert_status_line("polled again");
	for (i = 0; i < 4; i++) {
		end_first(SC_OK);
		assert_status_line("recovered");
	}
	sched_poll_now(sc);
	end_first(SC_PROTO);
	stop();
	assert_status_line("stopping");
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("sched");
	TCase *tc = tcase_create("sched");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, once_polls_each_account_once_and_ends_the_loop);
	tcase_add_test(tc, once_exit_status_is_the_worst_class);
	tcase_add_test(tc, once_interrupted_poll_is_a_temporary_failure);
	tcase_add_test(tc, once_polls_only_the_named_accounts);
	tcase_add_test(tc, once_without_accounts_ends_at_once);
	tcase_add_test(tc, connection_limit_holds_and_every_account_is_polled);
	tcase_add_test(tc, per_host_limit_compares_host_names_without_case);
	tcase_add_test(tc, queued_polls_start_as_connections_free_up);
	tcase_add_test(tc, a_closed_connection_frees_its_place_before_the_end);
	tcase_add_test(tc, many_due_polls_start_over_several_turns);
	tcase_add_test(tc, slow_starts_end_the_turn_early);
	tcase_add_test(tc, failures_back_off_by_class_and_streak);
	tcase_add_test(tc, failed_account_is_polled_again_after_its_delay);
	tcase_add_test(tc, login_delay_holds_even_poll_now);
	tcase_add_test(tc, config_error_pauses_the_account_until_reload);
	tcase_add_test(tc, auth_failure_is_retried_soon_after_reload);
	tcase_add_test(tc, poll_now_starts_idle_accounts_at_once);
	tcase_add_test(tc, poll_now_skips_queued_accounts);
	tcase_add_test(tc, stop_asks_running_polls_and_ends_when_they_do);
	tcase_add_test(tc, second_stop_abandons_running_polls);
	tcase_add_test(tc, grace_period_abandons_running_polls);
	tcase_add_test(tc, stop_with_nothing_running_ends_the_loop);
	tcase_add_test(tc, reload_drops_adds_and_changes_accounts);
	tcase_add_test(tc, reload_drops_an_idle_account_at_once);
	tcase_add_test(tc, reload_moves_a_queued_poll_to_its_new_host);
	tcase_add_test(tc, reload_raises_the_per_host_cap);
	tcase_add_test(tc, reload_in_turns_steps_over_a_freed_slot);
	tcase_add_test(tc, status_line_is_kept_as_slots_change);
	suite_add_tcase(s, tc);

	return check_main(s);
}
