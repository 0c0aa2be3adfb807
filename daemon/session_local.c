/*
 * The session's local side: the disk work on the worker thread (opening
 * the Maildir and the state, making a batch durable, the last commit)
 * and the delivery target's verdicts, applied on the loop.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "conf.h"
#include "deliver.h"
#include "log.h"
#include "monotime.h"
#include "session_priv.h"
#include "target.h"
#include "target_mda.h"
#include "testhook.h"

#define SESSION_OF_JOB(j) \
	((struct session *)(void *)((char *)(j)-offsetof(struct session, job)))

static void disk_done(struct worker_job *job);
static bool open_target(struct session *s);
static bool open_spool(struct session *s);

/* ---- disk work on the worker thread ---- */

/*
 * Opens what a poll writes to, before anything is asked of the server:
 * on a worker thread (directories made and synced, the journal read,
 * interrupted deliveries rolled forward). Sets job_rc, job_cls, job_err.
 */
static void
open_local(struct session *s)
{
	const struct account *a = s->a;
	struct deliver_where w = {.maildir = a->maildir,
	    .folder = a->folder,
	    .handoff = a->target != CONF_TARGET_MAILDIR,
	    .sync_each_file = a->sync == CONF_SYNC_FILE,
	    .state_dir = s->conf->state_dir,
	    .account = a->name,
	    .host = a->host,
	    .port = a->port,
	    .user = a->user != NULL ? a->user : ""};

	s->job_rc = -1;
	s->job_cls = SC_LOCAL;
	TESTHOOK_HOLD("open", a->name);
	if ((s->dl = deliver_open(&w, s->job_err, sizeof(s->job_err))) ==
	    NULL) {
		/* Another process holds the state: it polls this mailbox. */
		if (errno == EWOULDBLOCK)
			s->job_cls = SC_BUSY;
		return;
	}
	s->job_rc = deliver_recover(s->dl, s->job_err, sizeof(s->job_err));
	/* For the plan: statvfs() may wait for the disk as much as a write. */
	s->space_known = deliver_free_space(s->dl, &s->free_bytes) == 0;
}

/* On the loop: what open_local() found. */
static bool
opened(struct session *s)
{
	if (s->dl == NULL) {
		session_fail(s, s->job_cls, "%s", s->job_err);
		return false;
	}
	if (deliver_notice(s->dl) != NULL)
		log_warnx(s->a->name, "state: %s", deliver_notice(s->dl));
	s->stats.sync_fallback = deliver_sync_fallback(s->dl);
	if (s->job_rc == -1) {
		session_fail(s, SC_LOCAL, "%s", s->job_err);
		return false;
	}
	if (s->job_rc > 0)
		log_info(s->a->name,
		    "recovered=%d interrupted deliveries completed", s->job_rc);
	if (deliver_unsure(s->dl) > 0)
		log_warnx(s->a->name,
		    "unsure=%zu hand-offs to the target were interrupted by a crash: fetched again; the target may hold a copy already (see X-Popfetchd-Id and the Sieve duplicate rule)",
		    deliver_unsure(s->dl));
	/* Said even if the poll ended meanwhile; no target for nothing. */
	if (s->state == S_DONE)
		return false;
	return s->a->target == CONF_TARGET_MAILDIR ? open_spool(s)
						   : open_target(s);
}

/*
 * A message of the flush under way is durable (on the worker thread).
 * One of several sharing a UID was delivered unrecorded; in keep mode its
 * UID is recorded now, in time for the commit that follows, so that the
 * copies are not fetched again (a crash before that commit costs a
 * duplicate, never a loss).
 */
static void
flushed(void *arg, unsigned long msgno)
{
	struct session *s = arg;
	const struct plan_msg *m = session_msg(s, msgno);

	s->flushed[s->nflushed++] = msgno;
	if (m->reason == PLAN_R_DUP_UID && s->a->keep && m->uid != NULL)
		deliver_record(s->dl, m->uid, TESTHOOK_NOW());
}

static void
disk_run(struct worker_job *job)
{
	struct session *s = SESSION_OF_JOB(job);

	s->nflushed = 0;
	switch (s->job_kind) {
	case DJ_OPEN:
		open_local(s);
		return;
	case DJ_FLUSH:
	case DJ_FINAL:
		s->job_rc = 0;
		s->job_errno = 0;
		/* The writer's last messages join the last batch. */
		if (s->job_kind == DJ_FINAL && s->dl != NULL) {
			spool_final(s->sp);
			deliver_seal(s->dl);
		}
		if (s->dl != NULL && deliver_flush(s->dl, flushed, s,
					 s->job_err, sizeof(s->job_err)) == -1)
			s->job_rc = -1;
		/*
		 * The last commit also writes what the session recorded
		 * since the previous one: completions, strikes, forgotten
		 * UIDs.
		 */
		if (s->job_kind == DJ_FINAL && s->dl != NULL &&
		    deliver_commit(s->dl) == -1)
			s->job_errno = errno;
		/*
		 * Freed here, by a worker thread as it was made: freed on the
		 * loop, its blocks would take the lock of a worker thread's
		 * malloc arena, and a worker preempted while holding it (nice
		 * 10, behind the others) held the loop for 12 ms. The spool
		 * keeps a pointer, but uses it only in its jobs.
		 */
		if (s->job_kind == DJ_FINAL)
			deliver_free(&s->dl);
		return;
	}
}

/*
 * How many of the WAITING messages a flush takes: whole SESSION_BATCHes,
 * up to SESSION_BATCH_MAX, or all if fewer (the end). Whole batches, so
 * that while the disk keeps up a batch is SESSION_BATCH messages
 * whatever number the writer's last job ended at once; a backlog left
 * by a slow sync still goes in one flush, less a remainder under
 * SESSION_BATCH, which the next takes.
 */
static size_t
flush_takes(size_t waiting)
{
	size_t n = waiting / SESSION_BATCH * SESSION_BATCH;

	if (n == 0)
		return waiting;
	return n < SESSION_BATCH_MAX ? n : SESSION_BATCH_MAX;
}

void
session_disk_job(struct session *s, enum disk_job kind)
{
	/*
	 * The end with a target: the message in hand is taken back, and the
	 * verdicts of those handed off are awaited (bounded by the target's
	 * timeout) so that what it took is recorded and not fetched again.
	 */
	if (kind == DJ_FINAL && s->tg != NULL && s->dl != NULL) {
		if (s->end_msgno != 0)
			session_end_confirmed(s);
		target_abort(s->tg);
		if (target_pending(s->tg) > 0) {
			s->final_wait = true;
			return;
		}
		s->final_wait = false;
		session_apply_verdicts(s);
		deliver_withdraw(s->dl);
	}
	/* What the flush takes is fixed here, on the loop (the last: there). */
	if (kind == DJ_FLUSH && s->dl != NULL)
		deliver_seal_some(s->dl, flush_takes(deliver_pending(s->dl)),
		    SESSION_BATCH_BYTES);
	s->job_kind = kind;
	s->job.run = disk_run;
	s->job.done = disk_done;
	worker_submit(s->worker, &s->job);
}

/*
 * Disk work of the session ended (on the loop). The session goes on, or,
 * if it ended meanwhile, on to its final flush.
 */
static void
disk_done(struct worker_job *job)
{
	struct session *s = SESSION_OF_JOB(job);
	size_t i;

	switch (s->job_kind) {
	case DJ_OPEN:
		/* Ended meanwhile (no server, say): the final stage closes. */
		if (opened(s)) {
			s->local_ready = true;
			if (s->login_waits) {
				s->login_waits = false;
				session_start_auth(s);
			}
		}
		break;
	case DJ_FLUSH:
		session_strikes_apply(s);
		for (i = 0; i < s->nflushed; i++)
			if (s->flush_dele && !s->a->keep)
				s->dele[s->ndele++] = s->flushed[i];
		if (s->job_rc == -1) {
			session_local_failure(s, "%s", s->job_err);
			/*
			 * Not tried again: see deliver_flush(). Hand-offs
			 * (no spool) have no files to drop.
			 */
			if (s->sp != NULL) {
				spool_discard(s->sp);
				spool_kick(s->sp);
			}
		} else
			s->announced = s->announcing;
		session_apply_verdicts(s);
		/* A slow disk is not a slow server: the rate starts over. */
		session_awaited(s);
		/* A full next batch goes to the disk before more is read. */
		if (s->state == S_FETCH)
			session_pump(s);
		if (s->state != S_DONE)
			session_resume_input(s);
		break;
	case DJ_FINAL:
		spool_final_report(s->sp);
		session_target_free(s);
		if (s->job_rc == -1)
			log_warnx(s->a->name, "error=local %s", s->job_err);
		else if (s->job_errno != 0)
			log_warnx(s->a->name, "error=local state commit: %s",
			    strerror(s->job_errno));
		event_active(s->done_ev, 0, 0);
		return;
	}
	if (s->state == S_DONE)
		session_final_stage(s);
}

/* ---- the target ---- */

/*
 * A verdict applied to the state (on the loop, no disk work running):
 * taken, recorded at the next flush; not taken, left on the server, and
 * a permanent refusal counts a strike (plan.h quarantines at the limit).
 */
static void
apply_verdict(struct session *s, const struct session_verdict *sv)
{
	const struct plan_msg *m = session_msg(s, sv->msgno);
	bool taken = sv->v == TARGET_DELIVERED;

	if (deliver_handed(s->dl, sv->msgno, taken) == -1)
		log_warn(s->a->name, "state: message %lu", sv->msgno);
	if (taken) {
		/* The window deliver.h documents: taken, not yet recorded. */
		TESTHOOK_CRASH_POINT("hand-off taken");
		s->stats.fetched++;
		s->stats.bytes += m->size;
		return;
	}
	s->stats.failed++;
	log_warnx(s->a->name,
	    "message %lu (uid %s): %s from the target: %s; left on the server",
	    sv->msgno, m->uid != NULL ? m->uid : "-",
	    target_verdict_name(sv->v), sv->why);
	if (sv->v == TARGET_PERMFAIL)
		session_strike(s, sv->msgno, "refused by the target");
}

void
session_apply_verdicts(struct session *s)
{
	size_t i;

	if (s->dl == NULL || worker_busy(&s->job))
		return;
	for (i = 0; i < s->nverdicts; i++)
		apply_verdict(s, &s->verdicts[i]);
	s->nverdicts = 0;
}

static void
target_done(
    void *arg, unsigned long tag, enum target_verdict v, const char *why)
{
	struct session *s = arg;
	struct session_verdict *sv;

	/* The target holds fewer messages than there is room for. */
	if (s->nverdicts == sizeof(s->verdicts) / sizeof(s->verdicts[0]))
		fatalx("target: more verdicts than messages held");
	sv = &s->verdicts[s->nverdicts++];
	sv->msgno = tag;
	sv->v = v;
	snprintf(sv->why, sizeof(sv->why), "%s", why);
	session_apply_verdicts(s);
	if (s->final_wait) {
		if (target_pending(s->tg) == 0)
			session_disk_job(s, DJ_FINAL);
		return;
	}
	session_pump(s);
}

/* The target takes more: what waits in the transport's buffer goes on. */
static void
target_ready(void *arg)
{
	struct session *s = arg;

	if (s->state == S_DONE || worker_busy(&s->job))
		return;
	/* A slow target is not a slow server: the rate starts over. */
	session_awaited(s);
	session_resume_input(s);
}

static bool
open_lmtp(struct session *s, const struct target_cbs *cbs)
{
	struct target_lmtp_conf c = {.address = s->a->lmtp,
	    .recipient = s->a->recipient,
	    .sender = "",
	    .timeout = s->a->timeout,
	    .account = s->a->name};
	char host[256];

	if (gethostname(host, sizeof(host)) == -1 || host[0] == '\0')
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	c.lhlo = host;
	if ((s->tg = target_lmtp_new(s->base, s->dns, &c, cbs)) == NULL) {
		session_fail(s, SC_LOCAL, "lmtp: out of memory");
		return false;
	}
	return true;
}

static bool
open_mda(struct session *s, const struct target_cbs *cbs)
{
	struct target_mda_conf c = {.command = s->a->mda,
	    .shell = s->a->mda_shell,
	    .vars = {.user = s->a->user,
		.account = s->a->name,
		.recipient = s->a->recipient},
	    .home = getenv("HOME"),
	    .timeout = s->a->timeout,
	    .account = s->a->name};
	const char *why;

	if ((s->tg = target_mda_new(s->base, &c, cbs, &why)) == NULL) {
		session_fail(s, SC_LOCAL, "mda: %s", why);
		return false;
	}
	return true;
}

/* The writer's results are in (spool.h). */
static void
spool_ran(void *arg)
{
	struct session *s = arg;

	if (s->state == S_DONE) {
		session_final_stage(s);
		return;
	}
	/* A slow disk is not a slow server: the rate starts over. */
	if (s->spool_held && !spool_full(s->sp)) {
		s->spool_held = false;
		session_awaited(s);
	}
	if (s->state == S_FETCH)
		session_pump(s);
	if (s->state != S_DONE)
		session_resume_input(s);
}

static bool
open_spool(struct session *s)
{
	struct spool_cbs cbs = {session_spool_failed, spool_ran, s};

	if ((s->sp = spool_new(s->dl, s->worker, &cbs)) == NULL) {
		session_fail(s, SC_LOCAL, "out of memory");
		return false;
	}
	return true;
}

static bool
open_target(struct session *s)
{
	struct target_cbs cbs = {target_done, target_ready, s};

	switch (s->a->target) {
	case CONF_TARGET_LMTP:
		return open_lmtp(s, &cbs);
	case CONF_TARGET_MDA:
		return open_mda(s, &cbs);
	case CONF_TARGET_MAILDIR:
		break;
	}
	return true;
}

static bool
input_held(struct session *s)
{
	bool busy = true;

	if (!session_disk_waits(s)) {
		busy =
		    s->tg != NULL && s->state == S_FETCH && target_busy(s->tg);
		if (spool_full(s->sp)) {
			busy = true;
			s->spool_held = true;
		}
	}
	/*
	 * Not reading at all while the disk, the target or the spool waits:
	 * the transport would otherwise raise NET_DATA for every record that
	 * arrives, to no avail. Reading resumes here too, once there is
	 * room (the disk job's end and the target's READY look again).
	 */
	if (busy != s->net_paused && s->net != NULL) {
		net_pause(s->net, busy);
		s->net_paused = busy;
	}
	return busy;
}

/*
 * Whether the session leaves what arrives from the server in the
 * transport's buffer for now: disk work runs, or the target cannot take
 * more (its READY callback resumes), or the spool is full (its ran()
 * callback resumes). The time it does so is the poll's "held" figure.
 */
bool
session_input_paused(struct session *s)
{
	bool held = input_held(s);
	double now;

	if (held != s->holding) {
		now = monotime();
		if (held) {
			s->held_since = now;
			log_debug(s->a->name, "reading held: delivery behind");
		} else {
			s->stats.held += now - s->held_since;
			log_debug(s->a->name, "reading resumed after %.3f s",
			    now - s->held_since);
		}
		s->holding = held;
	}
	return held;
}

/*
 * Whether disk work runs that the session must wait for: any but the
 * opening (the login waits for it instead) and the flush of a Maildir
 * batch while fewer than SESSION_BATCH_MAX messages wait for the next
 * one. The order of the tests matters: during other jobs the batch is
 * not the loop's to count (hand-offs), nor is s->dl set yet (DJ_OPEN).
 */
bool
session_disk_waits(const struct session *s)
{
	if (s->worker == NULL || !worker_busy(&s->job))
		return false;
	/* Before the login nothing read touches what the open makes. */
	if (s->job_kind == DJ_OPEN)
		return false;
	return s->tg != NULL || s->job_kind != DJ_FLUSH ||
	       deliver_pending(s->dl) >= SESSION_BATCH_MAX;
}

void
session_target_free(struct session *s)
{
	target_free(&s->tg);
}
