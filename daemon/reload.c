/*
 * The reload thread: one worker (worker.h) with one thread, and one job
 * at a time.
 */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "reload.h"
#include "sched.h"
#include "worker.h"

/*
 * Messages logged at most: the loop logs them, and a file of 100,000
 * bad accounts would hold it for a while; --check-config lists them all.
 */
#define RELOAD_MSGS_MAX 1000

struct reload {
	struct worker *w;
	struct worker_job job;	/* reading the file */
	struct worker_job trim; /* malloc_trim() after a reload */
	/* The request, then the outcome (the thread's until done()). */
	const char *path;
	const struct conf *cur;
	struct reload_pick pick;
	reload_done_fn done;
	void *arg;
	struct conf *conf;
	struct sched_change *ch;
	char **msgs;
	size_t nmsgs, dropped;
	bool oom;
};

#define RELOAD_OF(j, f) \
	((struct reload *)(void *)((char *)(j)-offsetof(struct reload, f)))

/* One more message. */
static void
append(struct reload *rl, const char *msg)
{
	char **v;

	if ((v = reallocarray(rl->msgs, rl->nmsgs + 1, sizeof(*v))) == NULL ||
	    (v[rl->nmsgs] = strdup(msg)) == NULL) {
		if (v != NULL)
			rl->msgs = v;
		rl->oom = true;
		return;
	}
	rl->msgs = v;
	rl->nmsgs++;
}

/* One more message from the thread, up to RELOAD_MSGS_MAX. */
static void
say(struct reload *rl, const char *msg)
{
	if (rl->nmsgs < RELOAD_MSGS_MAX)
		append(rl, msg);
	else
		rl->dropped++;
}

static void
collect(void *arg, const char *msg)
{
	say(arg, msg);
}

/* The names of -a the new configuration lacks (on the thread). */
static void
check_only(struct reload *rl)
{
	char msg[256];
	size_t i;

	for (i = 0; i < rl->pick.nonly; i++)
		if (conf_account(rl->conf, rl->pick.only[i]) == NULL) {
			snprintf(msg, sizeof(msg),
			    "no account \"%s\" any more (-a)",
			    rl->pick.only[i]);
			say(rl, msg);
		}
}

static void
job_run(struct worker_job *job)
{
	struct reload *rl = RELOAD_OF(job, job);

	if ((rl->conf = conf_load(rl->path, collect, rl)) == NULL)
		return;
	shard_select(rl->conf, &rl->pick.shard);
	if (rl->pick.keep)
		conf_keep_all(rl->conf);
	check_only(rl);
	rl->ch =
	    sched_change_new(rl->cur, rl->conf, rl->pick.only, rl->pick.nonly);
	if (rl->ch == NULL) {
		conf_free(&rl->conf);
		rl->oom = true;
	}
}

/* Frees the messages of the last outcome. */
static void
msgs_free(struct reload *rl)
{
	size_t i;

	for (i = 0; i < rl->nmsgs; i++)
		free(rl->msgs[i]);
	free(rl->msgs);
	rl->msgs = NULL;
	rl->nmsgs = rl->dropped = 0;
	rl->oom = false;
}

static void
job_done(struct worker_job *job)
{
	struct reload *rl = RELOAD_OF(job, job);
	struct conf *conf = rl->conf;
	struct sched_change *ch = rl->ch;
	char more[128], **msgs;
	size_t n, i;

	rl->conf = NULL;
	rl->ch = NULL;
	if (rl->dropped > 0) {
		snprintf(more, sizeof(more),
		    "%zu more not shown (popfetchd --check-config lists them all)",
		    rl->dropped);
		append(rl, more);
	}
	if (rl->oom && conf == NULL)
		append(rl, "out of memory");
	/* Taken first: DONE may start the next reload, on the thread. */
	msgs = rl->msgs;
	n = rl->nmsgs;
	rl->msgs = NULL;
	rl->nmsgs = rl->dropped = 0;
	rl->oom = false;
	rl->done(rl->arg, conf, ch, msgs, n);
	for (i = 0; i < n; i++)
		free(msgs[i]);
	free(msgs);
}

static void
trim_run(struct worker_job *job)
{
	malloc_trim(0);
}

static void
trim_done(struct worker_job *job)
{
}

struct reload *
reload_new(struct event_base *base)
{
	struct reload *rl;

	if ((rl = calloc(1, sizeof(*rl))) == NULL)
		return NULL;
	if ((rl->w = worker_new(base, 1, "popfetchd-conf")) == NULL) {
		free(rl);
		return NULL;
	}
	rl->job.run = job_run;
	rl->job.done = job_done;
	rl->trim.run = trim_run;
	rl->trim.done = trim_done;
	return rl;
}

int
reload_start(struct reload *rl, const char *path, const struct conf *cur,
    const struct reload_pick *pick, reload_done_fn done, void *arg)
{
	if (worker_busy(&rl->job))
		return -1;
	rl->path = path;
	rl->cur = cur;
	rl->pick = *pick;
	rl->done = done;
	rl->arg = arg;
	worker_submit(rl->w, &rl->job);
	return 0;
}

bool
reload_busy(const struct reload *rl)
{
	return worker_busy(&rl->job);
}

void
reload_trim(struct reload *rl)
{
	if (!worker_busy(&rl->trim))
		worker_submit(rl->w, &rl->trim);
}

void
reload_free(struct reload **rlp)
{
	struct reload *rl = *rlp;

	if (rl == NULL)
		return;
	worker_wait(rl->w, &rl->job);
	worker_wait(rl->w, &rl->trim);
	worker_free(&rl->w);
	conf_free(&rl->conf);
	sched_change_free(&rl->ch);
	msgs_free(rl);
	free(rl);
	*rlp = NULL;
}
