/*
 * After login: STAT, UIDL and LIST gathered into the listing, the plan
 * made from it and the state, and for --list the headers of each message
 * (TOP n 0). Each reply kind has its own function.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "deliver.h"
#include "listing.h"
#include "log.h"
#include "msghdr.h"
#include "session_priv.h"
#include "testhook.h"

static bool make_plan(struct session *s);
static enum session_more next_top(struct session *s);

/* The message numbered MSGNO in the listing (one the plan named). */
const struct plan_msg *
session_msg(const struct session *s, unsigned long msgno)
{
	static const struct plan_msg none;
	const struct plan_msg *m = NULL;

	if (s->lst != NULL && s->pm != NULL)
		m = listing_find(s->lst, msgno);
	return m != NULL ? m : &none;
}

/* Ends the session for a listing that cannot be held (errno says why). */
static void
listing_failed(struct session *s, const char *what, unsigned long msgno)
{
	switch (errno) {
	case ERANGE:
		session_fail(s, SC_PROTO, "%s lists message %lu of %lu", what,
		    msgno, s->stat_count);
		return;
	case EEXIST:
		session_fail(
		    s, SC_PROTO, "%s lists message %lu twice", what, msgno);
		return;
	case E2BIG:
		session_fail(s, SC_PROTO,
		    "the listing of %lu messages needs more than %u MiB: refused",
		    s->stat_count, LISTING_BYTES_MAX >> 20);
		return;
	default:
		session_fail(s, SC_LOCAL, "out of memory");
		return;
	}
}

static bool
listing_entry(struct session *s, const struct pop3_event *ev)
{
	int r = ev->type == POP3_EV_LIST
		    ? listing_add_size(s->lst, ev->msgno, ev->size)
		    : listing_add_uid(s->lst, ev->msgno, ev->uid);

	if (r == -1)
		listing_failed(s, pop3_cmd_name(ev->cmd), ev->msgno);
	return r == 0;
}

/*
 * The listing is complete: merge it. A message STAT counted but UIDL or
 * LIST left out has no known identity: it is left alone, and as the
 * UIDs of this poll are then not all known, none is forgotten.
 */
static bool
listing_done(struct session *s)
{
	unsigned long dup = 0;

	if (listing_finish(s->lst, &dup) == -1) {
		listing_failed(s, "UIDL or LIST", dup);
		return false;
	}
	s->pm = listing_msgs(s->lst);
	s->npm = listing_count(s->lst);
	s->listing_complete = listing_complete(s->lst, s->have_uidl);
	if (s->listing_complete)
		return true;
	log_warnx(s->a->name,
	    "incomplete listing: STAT counts %lu messages, UIDL listed %zu, LIST %zu; those not fully listed are left alone",
	    s->stat_count, s->have_uidl ? listing_uids(s->lst) : 0,
	    listing_sizes(s->lst));
	/* The poll goes on with what is known, but is not a success. */
	session_outcome(s, SC_PROTO, "incomplete listing");
	return true;
}

/* ---- STAT, UIDL, LIST ---- */

/* Logged in: STAT first (--serverinfo asks nothing more). */
void
session_listing_begin(struct session *s)
{
	session_set_state(s, S_LISTING);
	session_send_cmd(s, POP3_CMD_STAT, 0);
	/*
	 * With pipelining, the listing takes one round trip instead of
	 * three: replies come in order, so STAT's count is known before
	 * the first UIDL line arrives.
	 */
	if (s->mode != SESSION_SERVERINFO && session_window(s) > 1) {
		s->listing_pipelined = true;
		session_send_cmd(s, POP3_CMD_UIDL, 0);
		session_send_cmd(s, POP3_CMD_LIST, 0);
	}
}

static void
refused(struct session *s, const struct pop3_event *ev)
{
	session_fail(
	    s, SC_PROTO, "%s refused: %s", pop3_cmd_name(ev->cmd), ev->text);
}

static void
stat_reply(struct session *s, const struct pop3_event *ev)
{
	if (ev->type == POP3_EV_ERR) {
		refused(s, ev);
		return;
	}
	if (ev->type != POP3_EV_OK)
		return;
	s->stats.listed = s->stat_count = ev->msgno;
	session_report(
	    s, &(struct session_info){
		   .kind = SI_STAT, .count = ev->msgno, .size = ev->size});
	if (s->mode == SESSION_SERVERINFO) {
		session_send_cmd(s, POP3_CMD_QUIT, 0);
		session_set_state(s, S_QUIT);
		return;
	}
	if ((s->lst = listing_new(s->stat_count)) == NULL) {
		session_fail(s, SC_LOCAL, "out of memory");
		return;
	}
	if (!s->listing_pipelined)
		session_send_cmd(s, POP3_CMD_UIDL, 0);
}

/* UIDL is optional (RFC 1939): -ERR means none, and LIST follows. */
static void
uidl_reply(struct session *s, const struct pop3_event *ev)
{
	switch (ev->type) {
	case POP3_EV_UIDL:
		listing_entry(s, ev);
		return;
	case POP3_EV_ERR:
	case POP3_EV_END:
		s->have_uidl = ev->type == POP3_EV_END;
		if (!s->listing_pipelined)
			session_send_cmd(s, POP3_CMD_LIST, 0);
		return;
	default:
		return;
	}
}

static void
list_reply(struct session *s, const struct pop3_event *ev)
{
	switch (ev->type) {
	case POP3_EV_LIST:
		listing_entry(s, ev);
		return;
	case POP3_EV_ERR:
		refused(s, ev);
		return;
	case POP3_EV_END:
		if (!listing_done(s))
			return;
		if (s->mode == SESSION_LIST) {
			if ((s->hdr = malloc(SESSION_HEADER_MAX)) == NULL) {
				session_fail(s, SC_LOCAL, "out of memory");
				return;
			}
			session_set_state(s, S_TOP);
			session_fill(s, next_top);
			return;
		}
		if (!make_plan(s))
			return;
		session_set_state(s, S_FETCH);
		session_pump(s);
		return;
	default:
		return;
	}
}

static void (*const listing_reply[POP3_CMD_COUNT])(
    struct session *, const struct pop3_event *) = {
    [POP3_CMD_STAT] = stat_reply,
    [POP3_CMD_UIDL] = uidl_reply,
    [POP3_CMD_LIST] = list_reply,
};

void
session_st_listing(struct session *s, const struct pop3_event *ev)
{
	if ((unsigned)ev->cmd < POP3_CMD_COUNT && listing_reply[ev->cmd])
		listing_reply[ev->cmd](s, ev);
}

/* ---- the plan ---- */

static bool
record_known(void *arg, const char *uid, time_t *first_seen, uint64_t *size,
    bool *size_known)
{
	if (!deliver_known(arg, uid, first_seen, size))
		return false;
	*size_known = *size != DELIVER_SIZE_UNKNOWN;
	return true;
}

static unsigned
record_strikes(void *arg, const char *uid, time_t *last)
{
	return deliver_strikes(arg, uid, last);
}

static bool
is_listed(void *arg, const char *uid)
{
	return plan_uids_has(arg, uid);
}

/*
 * Forgets UIDs no longer on the server, after a complete listing, so the
 * state does not grow for ever (committed with the first flush or at the
 * end). Failure here costs nothing but space.
 */
static void
prune_state(struct session *s)
{
	struct plan_uids *listed;

	if (!s->have_uidl || !s->listing_complete ||
	    (listed = plan_uids_new(s->pm, s->npm)) == NULL)
		return;
	deliver_prune(s->dl, is_listed, listed);
	plan_uids_free(&listed);
}

/*
 * The server lists a delivered UID for a message of another size: a new
 * message reusing the UID. The old record goes, so the new one can be
 * recorded when delivered.
 */
static void
forget_reused(struct session *s, const struct plan_msg *m)
{
	log_warnx(s->a->name,
	    "message %lu: uid %s was delivered with %llu bytes, LIST now says %llu: taken as a new message reusing the UID, fetched",
	    m->msgno, m->uid, (unsigned long long)m->delivered_size,
	    (unsigned long long)m->size);
	if (deliver_forget(s->dl, m->uid) == -1)
		log_warn(s->a->name, "state: forgetting uid %s", m->uid);
}

/* Takes the plan's decisions into the fetch and delete queues. */
static void
take_plan(struct session *s)
{
	struct plan_msg *pm = s->pm;
	size_t i, ndup = 0;

	for (i = 0; i < s->npm; i++) {
		if (pm[i].action == PLAN_FETCH)
			s->fetch[s->nfetch++] = pm[i].msgno;
		else if (pm[i].action == PLAN_DELETE)
			s->dele[s->ndele++] = pm[i].msgno;
		else if (pm[i].reason == PLAN_R_TOO_BIG &&
			 (pm[i].uid == NULL || deliver_note(s->dl, pm[i].uid,
						   TESTHOOK_NOW()) == 1))
			log_info(s->a->name,
			    "message %lu (uid %s, %llu bytes) is over max_message_size: left on the server (said once)",
			    pm[i].msgno, pm[i].uid != NULL ? pm[i].uid : "-",
			    (unsigned long long)pm[i].size);
		if (pm[i].reason == PLAN_R_DUP_UID)
			ndup++;
		if (pm[i].reason == PLAN_R_UID_REUSED &&
		    pm[i].action == PLAN_FETCH)
			forget_reused(s, &pm[i]);
	}
	if (ndup > 0)
		log_warnx(s->a->name,
		    "server fault: %zu messages share UIDs with others; they are fetched by number%s",
		    ndup,
		    s->a->keep ? " once, and never deleted by age"
			       : " and deleted once durable");
}

/* Says what the plan leaves and why; a lack of space fails the poll. */
static void
plan_said(struct session *s, const struct plan_totals *tot)
{
	s->stats.left = tot->leave;
	if (tot->quarantined > 0)
		log_warnx(s->a->name,
		    "quarantined=%zu messages failed %d times: left on the server, retried a day after their last failure",
		    tot->quarantined, PLAN_STRIKES_MAX);
	if (tot->no_space > 0) {
		/* Fetch what fits; the poll still reports the disk. */
		log_warnx(s->a->name,
		    "error=local no_space=%zu messages do not fit on the Maildir's file system: left on the server",
		    tot->no_space);
		session_outcome(s, SC_LOCAL,
		    "not enough free space for %zu messages", tot->no_space);
	}
	log_debug(s->a->name, "plan fetch=%zu delete=%zu leave=%zu bytes=%llu",
	    tot->fetch, tot->dele, tot->leave,
	    (unsigned long long)tot->fetch_bytes);
}

/* Builds the plan from the listing and the state. */
static bool
make_plan(struct session *s)
{
	struct plan_policy pol = {.keep = s->a->keep,
	    .delete_after_days = s->a->delete_after_days,
	    .max_message_size = s->a->max_message_size,
	    .have_uidl = s->have_uidl};
	struct plan_records rec = {record_known, record_strikes, s->dl};
	struct plan_totals tot;
	size_t n = s->npm + 1;

	if ((s->fetch = calloc(n, sizeof(*s->fetch))) == NULL ||
	    (s->dele = calloc(n, sizeof(*s->dele))) == NULL ||
	    (s->acked = calloc(n, sizeof(*s->acked))) == NULL ||
	    (s->flushed = calloc(n, sizeof(*s->flushed))) == NULL) {
		session_fail(s, SC_LOCAL, "out of memory");
		return false;
	}
	plan_fill(s->pm, s->npm, &rec);
	pol.space_known = s->space_known;
	pol.free_bytes = s->free_bytes;
	if (plan_decide(s->pm, s->npm, &pol, TESTHOOK_NOW(), &tot) == -1) {
		/* Out of memory is temporary; the other is the account's. */
		if (errno == ENOMEM)
			session_fail(
			    s, SC_LOCAL, "out of memory while planning");
		else
			session_fail(s, SC_CONFIG,
			    "keep = true needs a server with UIDL");
		return false;
	}
	take_plan(s);
	prune_state(s);
	plan_said(s, &tot);
	return true;
}

/* ---- --list: the headers of each message ---- */

static void
top_report(struct session *s, unsigned long msgno, bool ok)
{
	char from[256], date[128], subj[512];
	const struct plan_msg *m = session_msg(s, msgno);

	msghdr_value(s->hdr, s->hdrlen, "From", from, sizeof(from));
	msghdr_value(s->hdr, s->hdrlen, "Date", date, sizeof(date));
	msghdr_value(s->hdr, s->hdrlen, "Subject", subj, sizeof(subj));
	if (!ok)
		snprintf(subj, sizeof(subj), "(TOP refused)");
	session_report(s, &(struct session_info){.kind = SI_MESSAGE,
			      .msgno = msgno,
			      .size = m->size,
			      .uid = m->uid != NULL ? m->uid : "",
			      .from = from,
			      .date = date,
			      .subj = subj});
}

void
session_st_top(struct session *s, const struct pop3_event *ev)
{
	size_t n;

	switch (ev->type) {
	case POP3_EV_OK:
		s->hdrlen = 0;
		s->cur_bytes = 0;
		s->cur_listed = session_msg(s, ev->arg)->size;
		return;
	case POP3_EV_DATA:
		if (!session_data_bounded(s, ev))
			return;
		n = SESSION_HEADER_MAX - s->hdrlen;
		if (n > ev->len)
			n = ev->len;
		memcpy(s->hdr + s->hdrlen, ev->data, n);
		s->hdrlen += n;
		return;
	case POP3_EV_END:
	case POP3_EV_ERR:
		top_report(s, ev->arg, ev->type == POP3_EV_END);
		s->hdrlen = 0;
		s->top_done++;
		session_fill(s, next_top);
		return;
	default:
		return;
	}
}

/* The next TOP n 0, if any is left. */
static enum session_more
next_top(struct session *s)
{
	struct pop3_req r = {.cmd = POP3_CMD_TOP, .lines = 0};

	if (s->next_top < s->npm) {
		r.msgno = s->pm[s->next_top++].msgno;
		session_send(s, &r);
		return SESSION_SENT;
	}
	return s->top_done == s->npm ? SESSION_END : SESSION_WAIT;
}
