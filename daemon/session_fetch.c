/*
 * The fetch window: RETRs stream into the delivery batch (or to the
 * target), a batch is made durable (session_local.c), and only then are
 * its DELEs sent; QUIT commits them. A local failure stops the fetching
 * and deletes nothing that is not durable.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "conf.h"
#include "deliver.h"
#include "log.h"
#include "received.h"
#include "session_priv.h"
#include "target.h"
#include "testhook.h"

/* ---- receiving ---- */

/* Message bytes to where the account's mail goes. */
static int
sink_write(struct session *s, const char *data, size_t len)
{
	if (s->tg != NULL)
		return target_write(s->tg, data, len);
	return spool_write(s->sp, data, len);
}

/* Prepends the trace line of RFC 5321 section 4.4. */
static int
write_received(struct session *s)
{
	char buf[RECEIVED_MAX], host[256];
	struct received_info ri = {.from_host = s->a->host,
	    .by_host = host,
	    .version = POPFETCHD_VERSION,
	    .uid = session_msg(s, s->cur_msgno)->uid,
	    .user = s->a->user,
	    .when = time(NULL)};
	struct tm tm;
	int n;

	if (gethostname(host, sizeof(host)) == -1)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	localtime_r(&ri.when, &tm);
	ri.gmtoff = tm.tm_gmtoff;
	if ((n = received_format(buf, sizeof(buf), &ri)) < 0) {
		errno = EOVERFLOW;
		return -1;
	}
	return sink_write(s, buf, (size_t)n);
}

/*
 * The stable identifier of the message in hand, for a target that may be
 * handed the same message twice (see deliver.h, "Hand-offs").
 */
static int
write_id(struct session *s)
{
	const char *uid = session_msg(s, s->cur_msgno)->uid;
	char buf[TARGET_ID_SIZE];
	int n;

	if (!s->have_uidl || uid == NULL)
		return 0;
	if ((n = target_message_id(buf, sizeof(buf), s->a->name, s->a->host,
		 s->a->port, s->a->user, uid)) < 0) {
		errno = EOVERFLOW;
		return -1;
	}
	return sink_write(s, buf, (size_t)n);
}

/* Counts the strike against MSGNO in the state (the loop's now). */
static void
strike_now(struct session *s, unsigned long msgno, const char *why)
{
	const char *uid = session_msg(s, msgno)->uid;
	int n;

	/* Committed with the next flush or at the end (the worker's). */
	if ((n = deliver_strike(s->dl, uid, TESTHOOK_NOW())) == -1)
		return;
	log_info(s->a->name, "message %lu (uid %s) failed: %s; strike=%d%s",
	    msgno, uid, why, n,
	    n >= PLAN_STRIKES_MAX ? " (quarantined for a day)" : "");
}

/*
 * A strike while a batch is made durable: the worker holds the state, so
 * it waits for session_strikes_apply(). Out of memory it is lost, which
 * costs one more try of the message, never mail.
 */
static void
strike_later(struct session *s, unsigned long msgno, const char *why)
{
	struct session_strike_due *v;
	size_t cap;

	if (s->nstrikes_due == s->strikes_cap) {
		cap = s->strikes_cap ? 2 * s->strikes_cap : 8;
		if ((v = realloc(s->strikes_due, cap * sizeof(*v))) == NULL) {
			log_warn(s->a->name, "message %lu: strike not counted",
			    msgno);
			return;
		}
		s->strikes_due = v;
		s->strikes_cap = cap;
	}
	v = &s->strikes_due[s->nstrikes_due++];
	v->msgno = msgno;
	snprintf(v->why, sizeof(v->why), "%s", why);
}

/*
 * Counts a failed attempt against a message, durably, so that one bad
 * message cannot block the mailbox poll after poll (see plan.h).
 */
void
session_strike(struct session *s, unsigned long msgno, const char *why)
{
	if (!s->have_uidl || session_msg(s, msgno)->uid == NULL ||
	    s->dl == NULL)
		return;
	if (s->worker != NULL && worker_busy(&s->job))
		strike_later(s, msgno, why);
	else
		strike_now(s, msgno, why);
}

/* The strikes that waited for the worker (which is done: see above). */
void
session_strikes_apply(struct session *s)
{
	size_t i;

	for (i = 0; i < s->nstrikes_due; i++)
		strike_now(s, s->strikes_due[i].msgno, s->strikes_due[i].why);
	s->nstrikes_due = 0;
}

/*
 * Takes the message MSGNO back from the target before it was ended (it
 * did not arrive whole), and its intent with it.
 */
static void
drop_handoff(struct session *s, unsigned long msgno)
{
	target_abort(s->tg);
	if (deliver_handed(s->dl, msgno, false) == -1)
		log_warn(s->a->name, "state: message %lu", msgno);
}

/* A local failure: stop fetching, delete nothing more than is durable. */
void
session_local_failure(struct session *s, const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	spool_abort(s->sp);
	if (s->tg != NULL && s->receiving)
		drop_handoff(s, s->cur_msgno);
	s->receiving = false;
	log_warnx(s->a->name, "error=local %s; nothing more is fetched", why);
	session_outcome(s, SC_LOCAL, "%s", why);
	s->stop = true;
}

/*
 * Makes the batch durable on the worker; if DELE, its deletions are
 * queued when that is done (see session_local.c).
 */
static void
flush_batch(struct session *s, bool dele)
{
	/*
	 * A message whose end is not confirmed yet stays in the batch being
	 * filled, where session_unconfirmed_end() can still drop it.
	 */
	if (deliver_pending(s->dl) == 0 || worker_busy(&s->job) ||
	    s->end_msgno != 0)
		return;
	s->flush_dele = dele;
	session_disk_job(s, DJ_FLUSH);
}

/*
 * Whether GOT bytes of message data (line ends as sent) can be the
 * message LIST called LISTED bytes. Servers differ in how they count
 * (some rewrite messages, some estimate), so only a gross difference is
 * evidence: less than half of a listed size past the first KiB (a cut
 * short message), more than twice it plus 64 KiB (a reply that is not
 * the message asked for, or never ends).
 */
static bool
size_plausible(uint64_t listed, uint64_t got)
{
	if (got < listed / 2 && listed - got > 1024)
		return false;
	return got <= SIZE_SLACK(listed);
}

static void
retr_end(struct session *s)
{
	uint64_t listed = s->cur_listed;

	if (!s->receiving)
		return;
	s->receiving = false;
	if (!size_plausible(listed, s->cur_bytes)) {
		spool_abort(s->sp);
		if (s->tg != NULL)
			drop_handoff(s, s->cur_msgno);
		s->stats.failed++;
		log_warnx(s->a->name,
		    "message %lu: %llu bytes received where LIST said %llu: taken as cut short, not delivered, left on the server",
		    s->cur_msgno, (unsigned long long)s->cur_bytes,
		    (unsigned long long)listed);
		session_strike(
		    s, s->cur_msgno, "received size far from LIST size");
		return;
	}
	if (s->tg != NULL) {
		/* Ended for the target once what follows parses. */
		s->end_msgno = s->cur_msgno;
		s->end_size = s->cur_bytes;
		return;
	}
	if (spool_end(s->sp, s->cur_msgno, s->cur_bytes) == -1) {
		session_local_failure(s, "delivery of message %lu: %s",
		    s->cur_msgno, strerror(errno));
		return;
	}
	/*
	 * Counted as the server sent it, as LIST and the progress line count:
	 * not the Received: line added, nor the CRs taken out. Taken back
	 * if the writer fails it (session_spool_failed()).
	 */
	s->stats.fetched++;
	s->stats.bytes += s->cur_bytes;
	/* Whole only if what follows parses: see unconfirmed_end(). */
	s->end_msgno = s->cur_msgno;
	s->end_size = s->cur_bytes;
}

/*
 * A protocol error right after a message's terminator, in the same read,
 * casts doubt on that terminator (a server that ends lines with bare LF
 * where the body has ".", a lie): the message is taken out of the batch
 * before it can be recorded or deleted, and fetched again next time.
 */
void
session_unconfirmed_end(struct session *s)
{
	if (s->end_msgno != 0 && s->tg != NULL && s->dl != NULL) {
		drop_handoff(s, s->end_msgno);
		log_warnx(s->a->name,
		    "message %lu: protocol error right after its end: not delivered",
		    s->end_msgno);
		s->end_msgno = 0;
		return;
	}
	if (s->end_msgno == 0 || s->dl == NULL ||
	    spool_drop(s->sp, s->end_msgno) == -1)
		return;
	s->stats.fetched--;
	s->stats.bytes -= s->end_size;
	log_warnx(s->a->name,
	    "message %lu: protocol error right after its end: not delivered",
	    s->end_msgno);
	s->end_msgno = 0;
}

/*
 * What parsed after a message's end confirms it: for a target, the
 * message is ended there and then (the target may deliver it from now).
 */
void
session_end_confirmed(struct session *s)
{
	unsigned long msgno = s->end_msgno;

	s->end_msgno = 0;
	if (msgno == 0 || s->tg == NULL)
		return;
	if (target_end(s->tg) == -1)
		session_local_failure(
		    s, "hand-off of message %lu: %s", msgno, strerror(errno));
}

/* Starts handing the message MSGNO to the target. */
static void
handoff_begin(struct session *s, unsigned long msgno)
{
	if (target_begin(s->tg, msgno) == -1 ||
	    (s->a->received_header && write_received(s) == -1) ||
	    write_id(s) == -1) {
		session_local_failure(
		    s, "hand-off of message %lu: %s", msgno, strerror(errno));
		return;
	}
	s->receiving = true;
}

/* Starts delivering the message whose RETR reply begins. */
static void
retr_begin(struct session *s, unsigned long msgno)
{
	const struct plan_msg *m = session_msg(s, msgno);
	/* A UID several messages share is no message's: none recorded. */
	const char *uid =
	    s->have_uidl && m->reason != PLAN_R_DUP_UID ? m->uid : NULL;

	s->cur_msgno = msgno;
	s->cur_bytes = 0;
	s->cur_listed = m->size;
	if (s->stop)
		return;
	if (s->tg != NULL) {
		handoff_begin(s, msgno);
		return;
	}
	if (spool_begin(s->sp, msgno, uid,
		m->listed ? m->size : DELIVER_SIZE_UNKNOWN) == -1 ||
	    (s->a->received_header && write_received(s) == -1)) {
		session_local_failure(
		    s, "delivery of message %lu: %s", msgno, strerror(errno));
		return;
	}
	s->receiving = true;
}

/*
 * Writing the message MSGNO failed with E. A full disk or quota is the
 * account's trouble; any other error (EFBIG, EIO) may be this message's.
 */
static void
write_failed(struct session *s, unsigned long msgno, int e)
{
	if (e != ENOSPC && e != EDQUOT)
		session_strike(s, msgno, strerror(e));
	session_local_failure(
	    s, "delivery of message %lu: %s", msgno, strerror(e));
}

/*
 * The writer could not put the message MSGNO, ended with SENT bytes from
 * the server, into the batch (spool.h): it is not counted, nor deleted.
 */
void
session_spool_failed(void *arg, unsigned long msgno, uint64_t sent, int err)
{
	struct session *s = arg;

	s->stats.fetched--;
	s->stats.bytes -= sent;
	if (s->state == S_DONE) {
		log_warnx(s->a->name,
		    "message %lu not delivered: %s; left on the server", msgno,
		    strerror(err));
		return;
	}
	/* One failure stops the fetching; the rest of it needs no word. */
	if (s->stop) {
		log_debug(s->a->name, "message %lu not delivered: %s", msgno,
		    strerror(err));
		return;
	}
	write_failed(s, msgno, err);
}

static void
retr_answered(struct session *s, unsigned long msgno)
{
	uint64_t size = session_msg(s, msgno)->size;

	s->retr_done++;
	s->inflight -= size < s->inflight ? size : s->inflight;
}

/*
 * Counts the message data of a RETR or TOP reply; a reply far longer than
 * the message LIST sized (or endless) ends the session.
 */
bool
session_data_bounded(struct session *s, const struct pop3_event *ev)
{
	uint64_t listed = s->cur_listed;

	s->cur_bytes += ev->len;
	if (s->cur_bytes <= SIZE_SLACK(listed))
		return true;
	session_fail(s, SC_PROTO,
	    "%s %lu: over %llu bytes where LIST said %llu: not that message",
	    pop3_cmd_name(ev->cmd), ev->arg,
	    (unsigned long long)SIZE_SLACK(listed), (unsigned long long)listed);
	return false;
}

/* RSET (after a local failure): the deletions of this poll are undone. */
static void
rset_reply(struct session *s, const struct pop3_event *ev)
{
	if (ev->type == POP3_EV_ERR) {
		/* Without QUIT the server commits no deletion. */
		session_fail(s, SC_LOCAL,
		    "RSET refused (%s): closed without QUIT so that nothing is deleted",
		    ev->text);
		return;
	}
	if (ev->type == POP3_EV_OK) {
		log_info(s->a->name,
		    "deletions of this poll undone (RSET): %zu message(s) stay on the server until the next poll",
		    s->dele_ok);
		s->dele_ok = 0;
	}
}

static void
dele_reply(struct session *s, const struct pop3_event *ev)
{
	if (ev->type == POP3_EV_OK) {
		s->acked[s->dele_ok++] = ev->arg;
		TESTHOOK_CRASH_POINT("DELE acknowledged");
	} else if (ev->type == POP3_EV_ERR)
		log_warnx(
		    s->a->name, "DELE %lu refused: %s", ev->arg, ev->text);
}

static void
retr_reply(struct session *s, const struct pop3_event *ev)
{
	char why[POP3_LINE_MAX + 32];

	switch (ev->type) {
	case POP3_EV_OK:
		retr_begin(s, ev->arg);
		return;
	case POP3_EV_DATA:
		if (!session_data_bounded(s, ev))
			return;
		if (s->receiving && sink_write(s, ev->data, ev->len))
			write_failed(s, s->cur_msgno, errno);
		return;
	case POP3_EV_END:
		retr_answered(s, ev->arg);
		retr_end(s);
		return;
	case POP3_EV_ERR:
		retr_answered(s, ev->arg);
		s->stats.failed++;
		log_warnx(s->a->name,
		    "RETR %lu refused: %s; left on the server", ev->arg,
		    session_reply_text(ev, why, sizeof(why)));
		/*
		 * A server that says its trouble is passing (RFC 3206
		 * SYS/TEMP, RFC 2449 IN-USE) says nothing of the message:
		 * no strike, or a busy server would quarantine good mail.
		 */
		if (ev->code != POP3_CODE_SYS_TEMP &&
		    ev->code != POP3_CODE_IN_USE)
			session_strike(s, ev->arg, "RETR refused");
		return;
	default:
		return;
	}
}

static void (*const fetch_reply[POP3_CMD_COUNT])(
    struct session *, const struct pop3_event *) = {
    [POP3_CMD_RSET] = rset_reply,
    [POP3_CMD_DELE] = dele_reply,
    [POP3_CMD_RETR] = retr_reply,
};

/*
 * Replies in the fetch window. The next commands go out from the input
 * reader once all that arrived is parsed (see session_unconfirmed_end()).
 */
void
session_st_fetch(struct session *s, const struct pop3_event *ev)
{
	if ((unsigned)ev->cmd < POP3_CMD_COUNT && fetch_reply[ev->cmd])
		fetch_reply[ev->cmd](s, ev);
}

/* ---- the window ---- */

/* Listed size of the next message to ask for. */
static uint64_t
next_size(const struct session *s)
{
	return session_msg(s, s->fetch[s->next_fetch])->size;
}

/* Whether another RETR may go: one is left, and it fits the budget. */
static bool
may_retr(const struct session *s)
{
	return !s->stop && !s->halt && s->next_fetch < s->nfetch &&
	       (s->inflight == 0 ||
		   s->inflight + next_size(s) <= SESSION_INFLIGHT_BYTES);
}

/*
 * Whether QUIT may follow the DELEs still unanswered, in one round trip:
 * the window is over with nothing else in flight and nothing left to do
 * on the disk, and no local failure can come that would want RSET
 * instead (a DELE refused changes nothing: QUIT commits the others, as
 * it would after waiting). With a target, the verdicts decide the end:
 * QUIT waits as before.
 */
bool
session_quit_now(const struct session *s)
{
	return s->state == S_FETCH && s->tg == NULL && !s->stop && !s->rset &&
	       session_window(s) > 1 && s->retr_done == s->next_fetch &&
	       !s->receiving && !worker_busy(&s->job) && spool_idle(s->sp) &&
	       deliver_pending(s->dl) == 0 && s->next_dele == s->ndele;
}

/* RSET after a local failure, once nothing else is pending. */
static bool
want_rset(const struct session *s)
{
	return pop3_pending(s->pop3) == 0 && s->stop && s->next_dele > 0 &&
	       !s->rset;
}

/*
 * The window's last word: a local failure pauses the account and
 * nothing of this session is deleted (RSET; the messages stay recorded,
 * so the next poll deletes them without fetching them again); else the
 * end.
 */
static enum session_more
rset_or_end(struct session *s)
{
	if (!want_rset(s))
		return SESSION_END;
	s->rset = true;
	session_send_cmd(s, POP3_CMD_RSET, 0);
	return SESSION_SENT;
}

/*
 * Announces the next messages to fetch (intents, in memory) and makes
 * them durable with the hand-offs taken so far, on the worker; the taken
 * ones' DELEs follow (see session_local.c).
 */
static void
handoff_flush(struct session *s)
{
	size_t i, end = s->announced + SESSION_BATCH;
	const struct plan_msg *m;

	session_apply_verdicts(s);
	if (s->stop || s->halt || end > s->nfetch)
		end = s->stop || s->halt ? s->announced : s->nfetch;
	for (i = s->announced; i < end; i++) {
		m = session_msg(s, s->fetch[i]);
		if (deliver_announce(s->dl, s->fetch[i],
			s->have_uidl && m->reason != PLAN_R_DUP_UID ? m->uid
								    : NULL,
			m->listed ? m->size : DELIVER_SIZE_UNKNOWN) == -1) {
			session_local_failure(s, "state: %s", strerror(errno));
			end = i;
			break;
		}
	}
	s->announcing = end;
	s->flush_dele = true;
	session_disk_job(s, DJ_FLUSH);
}

/*
 * The fetch window with a target: DELEs of what is durable, RETRs of
 * announced messages; at a batch's end (every RETR answered, every
 * verdict in) the batch is made durable and the next announced.
 */
static enum session_more
next_handoff(struct session *s)
{
	if (!s->stop && s->next_dele < s->ndele) {
		session_send_cmd(s, POP3_CMD_DELE, s->dele[s->next_dele++]);
		return SESSION_SENT;
	}
	if (may_retr(s) && s->next_fetch < s->announced) {
		s->inflight += next_size(s);
		session_send_cmd(s, POP3_CMD_RETR, s->fetch[s->next_fetch++]);
		return SESSION_SENT;
	}
	if (s->retr_done < s->next_fetch || s->receiving || s->end_msgno != 0 ||
	    target_pending(s->tg) > 0)
		return SESSION_WAIT;
	if (deliver_pending(s->dl) > 0 || s->nverdicts > 0 ||
	    (may_retr(s) && s->next_fetch == s->announced)) {
		handoff_flush(s);
		return SESSION_WAIT;
	}
	return rset_or_end(s);
}

/*
 * The next command of the fetch window: DELEs of durable messages first,
 * then RETRs; once all asked for is in, the batch is flushed.
 */
static enum session_more
next_command(struct session *s)
{
	if (!s->stop && s->next_dele < s->ndele) {
		session_send_cmd(s, POP3_CMD_DELE, s->dele[s->next_dele++]);
		return SESSION_SENT;
	}
	if (s->tg != NULL)
		return next_handoff(s);
	if (may_retr(s)) {
		s->inflight += next_size(s);
		session_send_cmd(s, POP3_CMD_RETR, s->fetch[s->next_fetch++]);
		return SESSION_SENT;
	}
	/*
	 * The flush under way queues DELEs, or flushes again, or ends; the
	 * writer's messages join the batch when written.
	 */
	if (worker_busy(&s->job))
		return SESSION_WAIT;
	if (!spool_idle(s->sp)) {
		spool_kick(s->sp);
		return SESSION_WAIT;
	}
	if (deliver_pending(s->dl) > 0 && s->retr_done == s->next_fetch) {
		flush_batch(s, true);
		return SESSION_WAIT;
	}
	return rset_or_end(s);
}

/*
 * Keeps the window full; a full batch is made durable (and the next
 * fills meanwhile).
 */
void
session_pump(struct session *s)
{
	if (s->state != S_FETCH || session_disk_waits(s))
		return;
	if (s->tg == NULL &&
	    (deliver_pending(s->dl) >= SESSION_BATCH ||
		deliver_pending_bytes(s->dl) >= SESSION_BATCH_BYTES))
		flush_batch(s, true);
	session_fill(s, next_command);
}

/*
 * The server has removed what this session deleted: forget those UIDs.
 * RFC 1939 lets a server compute UIDs from content, so a later message
 * may carry one of them; remembered, it would be deleted unread.
 */
static void
forget_deleted(struct session *s)
{
	const char *uid;
	size_t i;

	for (i = 0; i < s->dele_ok; i++)
		if ((uid = session_msg(s, s->acked[i])->uid) != NULL &&
		    deliver_forget(s->dl, uid) == -1)
			log_warn(s->a->name, "state: forgetting uid %s", uid);
}

void
session_st_quit(struct session *s, const struct pop3_event *ev)
{
	/* QUIT went right behind the last DELEs: theirs come first. */
	if (ev->cmd == POP3_CMD_DELE) {
		dele_reply(s, ev);
		return;
	}
	if (ev->type == POP3_EV_OK) {
		s->stats.deleted = s->dele_ok;
		forget_deleted(s);
		/*
		 * Messages meant to be fetched were left behind: a timer or
		 * cron job must not see success (exit 75, "busy": the
		 * server may give them next time).
		 */
		if (s->stats.failed > 0)
			session_outcome(s, SC_BUSY,
			    "%zu message(s) not received: left on the server",
			    s->stats.failed);
		session_finish(s);
	} else if (ev->type == POP3_EV_ERR)
		session_fail(s, SC_PROTO,
		    "QUIT refused, deletions not committed: %s", ev->text);
}
