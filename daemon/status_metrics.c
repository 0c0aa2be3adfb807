/*
 * The metrics file: the Prometheus text exposition of every account,
 * for node_exporter's textfile collector (or anything that reads it).
 * The text is made on the loop (a copy of the records, no disk), the
 * file is written on a thread of its own: temporary file beside it,
 * fsync, rename over it, so a reader sees the old file or the new one,
 * never half of one, and a slow disk never holds the loop.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "fsutil.h"
#include "log.h"
#include "monotime.h"
#include "status.h"
#include "testhook.h"
#include "worker.h"

/*
 * At most one write per this many seconds: scrapers read every 15 s or
 * more, and with a thousand accounts a poll ends every few hundred
 * milliseconds, each of which would otherwise rewrite about 1 MB.
 */
#define STATUS_METRICS_GAP 5.0

/*
 * How long the exit waits for a write under way: a sync on a busy disk
 * takes seconds at worst; well within the units' TimeoutStopSec.
 */
#define STATUS_METRICS_EXIT_WAIT 5

struct status_metrics {
	struct event_base *base;
	char *path, *tmp;
	status_each_fn each;
	void *arg;
	time_t start;
	char *shard; /* labels the daemon's series; NULL: none */
	struct worker *worker;
	struct worker_job job;
	struct event *timer;
	char *text; /* the file being written, owned by the job meanwhile */
	size_t len;
	int err;      /* errno of the job's failure, 0 if it wrote */
	double last;  /* monotonic seconds, when the last write started */
	bool pending; /* changed since the text being written was made */
	bool failing; /* the last write failed (said once) */
};

static void metrics_timer(evutil_socket_t fd, short what, void *arg);

/* On the worker thread (or at exit): the whole file, then the rename. */
static void
metrics_run(struct worker_job *job)
{
	struct status_metrics *m =
	    (struct status_metrics *)((char *)job -
				      offsetof(struct status_metrics, job));
	int fd, err = 0;

	TESTHOOK_HOLD("metrics write", NULL);
	fd = open(m->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	/*
	 * 0644 whatever the umask (the units set 0077): the collector runs
	 * as another user; the directory decides who may read.
	 */
	if (fd == -1 || fchmod(fd, 0644) == -1 ||
	    fsutil_write_all(fd, m->text, m->len) == -1 ||
	    fsutil_fsync(fd) == -1)
		err = errno;
	if (fd != -1 && close(fd) == -1 && err == 0)
		err = errno;
	if (err == 0 && rename(m->tmp, m->path) == -1)
		err = errno;
	if (err != 0)
		unlink(m->tmp);
	m->err = err;
}

/* Makes the text from the records now; false when out of memory. */
static bool
metrics_make(struct status_metrics *m)
{
	struct status_account *r;
	size_t n;

	if (status_collect(m->each, m->arg, &r, &n) == -1)
		return false;
	m->text = status_metrics_text(r, n, m->start, m->shard, &m->len);
	free(r);
	return m->text != NULL;
}

/* Says when writing starts or stops failing, not at every write. */
static void
metrics_report(struct status_metrics *m)
{
	if (m->err != 0 && !m->failing)
		log_warnx(NULL,
		    "metrics_file=%s cannot be written: %s; trying again at the next change",
		    m->path, strerror(m->err));
	else if (m->err == 0 && m->failing)
		log_info(NULL, "metrics_file=%s written again", m->path);
	m->failing = m->err != 0;
}

/* Arms the timer for the next write, no sooner than the gap allows. */
static void
metrics_arm(struct status_metrics *m)
{
	double wait = m->last + STATUS_METRICS_GAP - monotime();
	struct timeval tv = {0, 0};

	if (wait > 0) {
		tv.tv_sec = (time_t)wait;
		tv.tv_usec = (suseconds_t)((wait - (double)tv.tv_sec) * 1e6);
	}
	evtimer_add(m->timer, &tv);
}

static void
metrics_done(struct worker_job *job)
{
	struct status_metrics *m =
	    (struct status_metrics *)((char *)job -
				      offsetof(struct status_metrics, job));

	free(m->text);
	m->text = NULL;
	metrics_report(m);
	if (m->pending)
		metrics_arm(m);
}

/* Starts a write of what the records say now. */
static void
metrics_start(struct status_metrics *m)
{
	m->pending = false;
	m->last = monotime();
	if (!metrics_make(m)) {
		log_warnx(NULL, "metrics_file=%s: out of memory", m->path);
		return;
	}
	worker_submit(m->worker, &m->job);
}

static void
metrics_timer(evutil_socket_t fd, short what, void *arg)
{
	struct status_metrics *m = arg;

	/* Its completion arms the timer again if need be. */
	if (!worker_busy(&m->job))
		metrics_start(m);
}

struct status_metrics *
status_metrics_new(struct event_base *base, const char *path,
    status_each_fn each, void *arg, time_t start, const char *shard)
{
	struct status_metrics *m;

	if ((m = calloc(1, sizeof(*m))) == NULL ||
	    (m->path = strdup(path)) == NULL ||
	    (shard != NULL && (m->shard = strdup(shard)) == NULL) ||
	    asprintf(&m->tmp, "%s.tmp", path) == -1 ||
	    (m->timer = evtimer_new(base, metrics_timer, m)) == NULL ||
	    (m->worker = worker_new(base, 1, WORKER_DISK)) == NULL)
		fatalx("out of memory");
	m->base = base;
	m->each = each;
	m->arg = arg;
	m->start = start;
	m->job.run = metrics_run;
	m->job.done = metrics_done;
	metrics_start(m);
	return m;
}

void
status_metrics_changed(struct status_metrics *m)
{
	if (m == NULL || m->pending)
		return;
	m->pending = true;
	if (!worker_busy(&m->job))
		metrics_arm(m);
}

void
status_metrics_free(struct status_metrics **mp)
{
	struct status_metrics *m = *mp;

	if (m == NULL)
		return;
	evtimer_del(m->timer);
	/*
	 * A write under way on a slow disk ends first: the last counts come
	 * after it, and a first write left behind would leave no file. One
	 * that never returns (the file's disk is gone) must not hold the
	 * exit: the job, its text and its worker are left to it.
	 */
	if (worker_busy(&m->job) && !worker_await(m->worker, &m->job, 0)) {
		log_info(NULL,
		    "metrics: waiting up to %d s for the write of %s",
		    STATUS_METRICS_EXIT_WAIT, m->path);
		(void)worker_await(
		    m->worker, &m->job, STATUS_METRICS_EXIT_WAIT);
	}
	if (worker_busy(&m->job) && !worker_cancel(m->worker, &m->job)) {
		log_warnx(NULL,
		    "metrics: the write of %s does not return; exiting without it",
		    m->path);
		event_free(m->timer);
		*mp = NULL;
		return;
	}
	free(m->text);
	m->text = NULL;
	/* The counters at exit, written here: the loop is done. */
	if (metrics_make(m)) {
		metrics_run(&m->job);
		metrics_report(m);
		free(m->text);
	}
	worker_free(&m->worker);
	event_free(m->timer);
	free(m->path);
	free(m->tmp);
	free(m->shard);
	free(m);
	*mp = NULL;
}
