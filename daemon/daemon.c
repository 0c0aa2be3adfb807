/*
 * daemon: the daemon and --once: the event loop, the scheduler on it,
 * signals (stop, reload, poll now), systemd notification, the status
 * socket, the metrics file, the progress line, and the exit.
 */
#include <sys/resource.h>

#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "conf.h"
#include "daemon.h"
#include "log.h"
#include "loopstat.h"
#include "net.h"
#include "notify.h"
#include "oauth2.h"
#include "progress.h"
#include "reload.h"
#include "sched.h"
#include "secret.h"
#include "session.h"
#include "status.h"
#include "tls.h"
#include "tlscache.h"

/*
 * How long the loop may still run after the last poll, to reap the
 * password_command children killed on the way (secret.h): moments, in
 * practice.
 */
#define DAEMON_REAP_SECS 5
/*
 * Descriptors one poll may hold at once: its socket, the state file, its
 * lock and directory, the Maildir file and directory, and the pipes and
 * pidfd of a password_command. Generous, as running short means failed
 * polls.
 */
#define DAEMON_FDS_PER_POLL 8
/* The rest: standard streams, the loop, signals, resolver, notify socket. */
#define DAEMON_FDS_BASE 64
/*
 * Grown at start at most to this many descriptors (512 KiB of kernel
 * memory for the table): caps set far above what is ever open at once
 * would otherwise cost that memory for nothing. Beyond, the table grows
 * as it is used.
 */
#define DAEMON_FDS_RESERVE_MAX 65536

/*
 * Grows the descriptor table to hold N descriptors now. The kernel grows
 * it on demand, doubling; but in a process with threads each growth
 * waits for an RCU grace period (10 ms and more), in the thread that
 * opened the descriptor and in any other opening one meanwhile: the
 * loop, for a poll's socket, stalled that long in the benchmark with
 * many polls at once. Before the first thread starts it costs nothing;
 * after a reload that raises the cap, one wait per doubling, once.
 */
static void
reserve_descriptors(unsigned long long n)
{
	struct rlimit rl;
	int fd, high;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	if (n > rl.rlim_cur)
		n = rl.rlim_cur;
	if (n > DAEMON_FDS_RESERVE_MAX)
		n = DAEMON_FDS_RESERVE_MAX;
	if (n < 2 || n > (unsigned long long)INT_MAX ||
	    (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) == -1)
		return;
	if ((high = fcntl(fd, F_DUPFD_CLOEXEC, (int)(n - 1))) != -1)
		close(high);
	close(fd);
}

/*
 * Makes room for CONF's polls under the open-file limit: raises the soft
 * limit as far as the hard one allows; if that is still too low, lowers
 * the cap of CONF (not frozen yet) to what fits, with one warning, since
 * polls failing with EMFILE midway would be worse than fewer at once.
 */
static void
fit_open_files(struct conf *conf)
{
	struct rlimit rl;
	unsigned long long polls, need, fit;

	polls = conf->max_connections < conf->naccounts ? conf->max_connections
							: conf->naccounts;
	need = polls * DAEMON_FDS_PER_POLL + DAEMON_FDS_BASE;
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	if (rl.rlim_cur < need) {
		rl.rlim_cur = rl.rlim_max >= need ? need : rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1 &&
		    getrlimit(RLIMIT_NOFILE, &rl) == -1)
			return;
	}
	reserve_descriptors(need);
	if (rl.rlim_cur >= need)
		return;
	fit = rl.rlim_cur > DAEMON_FDS_BASE + DAEMON_FDS_PER_POLL
		  ? (rl.rlim_cur - DAEMON_FDS_BASE) / DAEMON_FDS_PER_POLL
		  : 1;
	if (fit >= polls)
		return;
	log_warnx(NULL,
	    "warning: open-file limit too low for max_connections: limit=%llu hard_limit=%llu max_connections=%u accounts=%zu needed=%llu using max_connections=%llu; raise LimitNOFILE= to allow more",
	    (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
	    conf->max_connections, conf->naccounts, need, fit);
	conf->max_connections = (unsigned)fit;
}

/* What the signal handlers and the status callback work on. */
struct daemon {
	const struct daemon_opts *o;
	struct event_base *base;
	struct sched *sc;
	struct notify *nt;
	struct evdns_base *dns;
	struct status_server *srv; /* --status; NULL: not served */
	struct status_metrics *metrics;
	char *metrics_path;
	time_t start;
	struct progress *progress; /* --once on a terminal; NULL: none */
	struct reload *rl;	   /* reads the file for SIGHUP */
	struct loopstat *stall;	   /* the benchmark's loop-stall meter */
	bool reloading;		   /* from SIGHUP to the accounts moved */
	bool reload_again;	   /* another SIGHUP came meanwhile */
};

/* The scheduler's records, for the status socket and the metrics file. */
static void
each_account(void *arg, status_visit_fn visit, void *varg)
{
	struct daemon *d = arg;

	sched_each_account(d->sc, visit, varg);
}

/* --- the progress display of --once ----------------------------------- */

struct progress_fill {
	struct progress_item *items;
	size_t max, n;
};

static void
progress_visit(void *varg, const struct account *a, const struct session *s)
{
	struct progress_fill *f = varg;

	if (f->n < f->max) {
		f->items[f->n].name = a->name;
		session_progress(s, &f->items[f->n].sp);
	}
	f->n++;
}

/* The polls under way, for progress.c. */
static size_t
progress_each(void *arg, struct progress_item *items, size_t max)
{
	struct daemon *d = arg;
	struct progress_fill f = {.items = items, .max = max};

	sched_each_session(d->sc, progress_visit, &f);
	return f.n;
}

/* A --once run shows its polls on a terminal, unless asked not to. */
static void
progress_begin(struct daemon *d)
{
	if (d->o->once && !d->o->quiet && progress_wanted(STDERR_FILENO))
		d->progress = progress_new(d->base, STDERR_FILENO,
		    progress_each, d); /* NULL: no display, nothing worse */
}

/* Serves --status, unless there is nowhere to put its socket. */
static void
status_begin(struct daemon *d)
{
	char path[108], err[256];

	if (status_socket_path(path, sizeof(path), err, sizeof(err)) == -1) {
		log_info(NULL, "status: %s; --status is not served", err);
		return;
	}
	d->srv = status_server_new(
	    d->base, path, each_account, d, d->start, err, sizeof(err));
	if (d->srv == NULL)
		log_warnx(NULL, "status: %s; --status is not served", err);
	else
		log_debug(NULL, "status socket=%s", path);
}

/*
 * The metrics of PATH: one of several instances of a file writes its own
 * file beside it, "popfetchd.prom" becoming "popfetchd.shard-2-of-4.prom"
 * (a collector of *.prom files reads them all), with the shard as a
 * label of the daemon's own series.
 */
static struct status_metrics *
metrics_for_shard(struct daemon *d, const char *path)
{
	const struct shard *sh = &d->o->shard;
	const char *dot, *slash = strrchr(path, '/');
	struct status_metrics *m;
	char *own, label[32];
	int len;

	if (sh->n == 0)
		return status_metrics_new(
		    d->base, path, each_account, d, d->start, NULL);
	dot = strrchr(path, '.');
	if (dot == NULL || (slash != NULL && dot < slash))
		dot = path + strlen(path);
	len = (int)(dot - path);
	snprintf(label, sizeof(label), "%u/%u", sh->k, sh->n);
	if (asprintf(&own, "%.*s.shard-%u-of-%u%s", len, path, sh->k, sh->n,
		dot) == -1)
		fatalx("out of memory");
	m = status_metrics_new(d->base, own, each_account, d, d->start, label);
	free(own);
	return m;
}

/* Writes the metrics to PATH from now on (NULL: no more). */
static void
metrics_to(struct daemon *d, const char *path)
{
	if (path != NULL && d->metrics_path != NULL &&
	    strcmp(path, d->metrics_path) == 0)
		return;
	status_metrics_free(&d->metrics);
	free(d->metrics_path);
	d->metrics_path = NULL;
	if (path == NULL)
		return;
	if ((d->metrics_path = strdup(path)) == NULL)
		fatalx("out of memory");
	d->metrics = metrics_for_shard(d, path);
}

static void reload(struct daemon *d);

/* The reload is over, done or not: the next one may start. */
static void
reload_over(struct daemon *d)
{
	d->reloading = false;
	loopstat_window(d->stall, "reload");
	/* Not after STOPPING=1: a stop came while the file was read. */
	if (!sched_stopping(d->sc))
		notify_ready(d->nt);
	if (d->reload_again && !sched_stopping(d->sc)) {
		d->reload_again = false;
		reload(d);
	}
}

/* The accounts are on the new configuration. */
static void
reload_applied(void *arg)
{
	struct daemon *d = arg;

	metrics_to(d, sched_conf(d->sc)->metrics_file);
	/* The old configuration and the parse left memory free. */
	reload_trim(d->rl);
	reload_over(d);
}

/*
 * The file is read (off the loop): a valid configuration replaces the
 * running one, account by account over the next loop turns; an invalid
 * one is reported, every error with file:line, and the old one stays.
 */
static void
reload_parsed(void *arg, struct conf *conf, struct sched_change *ch,
    char *const *msgs, size_t n)
{
	struct daemon *d = arg;
	size_t i;

	for (i = 0; i < n; i++)
		log_warnx(NULL, "reload: %s", msgs[i]);
	if (conf == NULL) {
		log_warnx(NULL,
		    "reload failed: %s has errors (above); still running on the configuration loaded before",
		    d->o->config);
		reload_over(d);
		return;
	}
	if (sched_stopping(d->sc)) {
		log_info(NULL, "reload dropped: stopping");
		sched_change_free(&ch);
		conf_free(&conf);
		reload_over(d);
		return;
	}
	if (d->o->keep)
		log_info(
		    NULL, "-k: every account keeps its mail on the server");
	/* CA files and client certificates are read afresh. */
	tls_ctx_forget();
	fit_open_files(conf);
	sched_reload_apply(d->sc, conf, ch, reload_applied, d);
}

/* SIGHUP: the file is read on a thread; the loop goes on meanwhile. */
static void
reload(struct daemon *d)
{
	const struct reload_pick pick = {.only = d->o->only,
	    .nonly = d->o->nonly,
	    .keep = d->o->keep,
	    .shard = d->o->shard};
	char err[256];

	if (d->reloading) {
		d->reload_again = true;
		log_info(NULL, "reload under way; another follows it");
		return;
	}
	d->reloading = true;
	loopstat_window(d->stall, "before-reload");
	notify_reloading(d->nt);
	log_info(NULL, "reloading file=%s", d->o->config);
	/* A changed network (VPN, DHCP) changes resolv.conf without a word. */
	if (net_dns_reload(d->dns, err, sizeof(err)) == -1)
		log_warnx(NULL, "reload: resolver: %s", err);
	if (reload_start(d->rl, d->o->config, sched_conf(d->sc), &pick,
		reload_parsed, d) == -1)
		fatalx("reload: a reload already under way");
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	switch (sig) {
	case SIGTERM:
	case SIGINT:
		if (!sched_stopping(d->sc)) {
			log_info(NULL,
			    "signal=%s stopping; send it again to stop at once",
			    sig == SIGTERM ? "TERM" : "INT");
			notify_stopping(d->nt);
		}
		sched_stop(d->sc);
		break;
	case SIGHUP:
		if (d->o->once || sched_stopping(d->sc))
			log_info(NULL, "signal=HUP ignored%s",
			    d->o->once ? " by --once" : " while stopping");
		else
			reload(d);
		break;
	case SIGUSR1:
		if (d->o->once)
			log_info(NULL, "signal=USR1 ignored by --once");
		else
			sched_poll_now(d->sc);
		break;
	}
}

/* The scheduler's counts changed: tell the service manager. */
static void
on_change(void *arg)
{
	struct daemon *d = arg;
	char status[512];

	status_metrics_changed(d->metrics);
	if (!notify_enabled(d->nt))
		return;
	sched_status(d->sc, status, sizeof(status));
	notify_status(d->nt, status);
}

static void
reap_timeout(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

/* Runs the loop until killed password_commands are reaped (secret.h). */
static void
reap_secrets(struct event_base *base)
{
	struct timeval limit = {DAEMON_REAP_SECS, 0};
	struct event *ev;
	bool expired = false;

	if (secret_detached() == 0)
		return;
	if ((ev = evtimer_new(base, reap_timeout, &expired)) == NULL)
		fatalx("out of memory");
	evtimer_add(ev, &limit);
	while (secret_detached() > 0 && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	if (expired)
		log_warnx(NULL, "%zu password_command(s) not reaped",
		    secret_detached());
	event_free(ev);
}

/*
 * DAEMON_DISPATCH_MS: once the loop has run callbacks for this long, it
 * looks at its timers and sockets again before running more. Many
 * sessions with data at once would otherwise be served all in one go,
 * each waiting for all the others: this bounds how long any one waits,
 * at the cost of a few more epoll calls. 2 ms, not 4: a disk thread
 * that gets the CPU may keep it for a scheduler tick (4 ms on the
 * benchmark's kernel), so a turn plus a tick or two stays under 10 ms
 * (bench/scale.py, three runs each: 10.1 / 10.4 / 8.4 ms at 4, 6.7 /
 * 7.8 / 9.8 ms at 2, the same CPU per poll).
 */
#define DAEMON_DISPATCH_MS 2

static struct event_base *
loop_new(void)
{
	struct timeval tv = {.tv_usec = DAEMON_DISPATCH_MS * 1000};
	struct event_config *cfg;
	struct event_base *base;

	if ((cfg = event_config_new()) == NULL)
		return NULL;
	/*
	 * libevent otherwise takes "now" for the next wait from before the
	 * callbacks of the last turn ran: after a 4 ms turn every timer
	 * (the stall meter's, a session's deadline) fired up to 4 ms late.
	 */
	if (event_config_set_flag(cfg, EVENT_BASE_FLAG_NO_CACHE_TIME) == -1 ||
	    event_config_set_max_dispatch_interval(cfg, &tv, -1, 0) == -1) {
		event_config_free(cfg);
		return NULL;
	}
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	/* Two priorities: the loop-stall meter's tick runs first. */
	if (base != NULL && event_base_priority_init(base, 2) == -1) {
		event_base_free(base);
		return NULL;
	}
	return base;
}

/*
 * A disk that stopped answering holds a worker thread in fsync: waiting
 * for it would hang the exit (and systemd's stop) for as long as the
 * disk does. Nothing is lost by leaving: its batch was never made durable
 * nor deleted on the server (its session was cut off without QUIT), and
 * the next start recovers what it left in tmp/.
 */
static void
exit_past_hung_disk(int status)
{
	log_warnx(NULL,
	    "exiting while disk work of %zu poll(s) does not return (a hung disk?); their undelivered mail stays on the server",
	    session_orphans());
	log_flush();
	fflush(NULL);
	_exit(status);
}

int
daemon_run(struct conf *conf, const struct daemon_opts *o)
{
	static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
	struct event *sigev[sizeof(sigs) / sizeof(sigs[0])];
	struct daemon d = {.o = o, .start = time(NULL)};
	struct event_base *base;
	char err[256];
	size_t i;
	int status;

	if ((base = loop_new()) == NULL)
		fatalx("cannot create the event loop");
	d.base = base;
	if ((d.dns = net_dns_new(base, err, sizeof(err))) == NULL)
		fatalx("cannot set up name resolution");
	if (err[0] != '\0')
		log_warnx(NULL, "resolver: %s", err);
	if (o->shard.n > 0)
		log_info(NULL, "shard=%u/%u accounts=%zu of %zu in %s",
		    o->shard.k, o->shard.n, conf->naccounts, o->file_accounts,
		    o->config);
	fit_open_files(conf);
	/* After the descriptor table grew: threads would make that slow. */
	log_async();
	/* Polls after the first resume TLS sessions; --once has none. */
	if (!o->once)
		tlscache_limit(TLSCACHE_MAX_BYTES);
	if ((d.nt = notify_new(base)) == NULL ||
	    (d.sc = sched_new(base, d.dns, conf, o->once, o->only, o->nonly)) ==
		NULL ||
	    (!o->once && (d.rl = reload_new(base)) == NULL))
		fatalx("out of memory");
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		sigev[i] = evsignal_new(base, sigs[i], on_signal, &d);
		if (sigev[i] == NULL || evsignal_add(sigev[i], NULL) == -1)
			fatalx("cannot watch signals");
	}
	sched_on_change(d.sc, on_change, &d);
	/* Before the first poll: the worker threads are idle (umask). */
	if (!o->once)
		status_begin(&d);
	metrics_to(&d, conf->metrics_file);
	sched_start(d.sc);
	notify_ready(d.nt);
	progress_begin(&d);
	/*
	 * The stall meter starts with the loop: before it, no session has
	 * anything to wait for. (Started above, its first tick came 9 ms
	 * late in bench/scale.py, after --once queued 10,000 accounts.)
	 */
	d.stall = loopstat_new(base);
	event_base_dispatch(base);
	progress_free(&d.progress);
	/* Before the scheduler: a read under way compares with its conf. */
	reload_free(&d.rl);
	loopstat_free(&d.stall);
	status = sched_exit_status(d.sc);
	status_server_free(&d.srv);
	if (session_orphans() > 0)
		exit_past_hung_disk(o->once ? status : EX_TEMPFAIL);
	/* The last counts, before the records go with the scheduler. */
	metrics_to(&d, NULL);
	/* Sessions still there cancel their secrets: reaped below. */
	sched_free(&d.sc);
	tls_ctx_forget();
	tlscache_clear();
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		event_free(sigev[i]);
	/* Name lookups cancelled above answer on the loop, freeing theirs. */
	event_base_loop(base, EVLOOP_NONBLOCK);
	reap_secrets(base);
	oauth2_forget();
	notify_free(&d.nt);
	evdns_base_free(d.dns, 0);
	event_base_free(base);
	return o->once ? status : EX_OK;
}
