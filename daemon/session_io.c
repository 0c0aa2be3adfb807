/*
 * The session's side of the wire: transport events in, engine events
 * dispatched to the handler of the current state, commands out through
 * the engine, and the clock every reply must keep up with.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "conf.h"
#include "log.h"
#include "monotime.h"
#include "session_priv.h"
#include "tls.h"
#include "wipe.h"

/* The text of an -ERR reply with its response code: "[SYS/TEMP] text". */
const char *
session_reply_text(const struct pop3_event *ev, char *buf, size_t len)
{
	if (ev->code == POP3_CODE_NONE)
		snprintf(buf, len, "%s", ev->text);
	else
		snprintf(
		    buf, len, "[%s] %s", pop3_code_name(ev->code), ev->text);
	return buf;
}

/* Trace of a status line, reconstructed from the event. */
static void
trace_event(struct session *s, const struct pop3_event *ev)
{
	char line[POP3_LINE_MAX + 64];
	int level = 1;
	int n;

	switch (ev->type) {
	case POP3_EV_GREETING:
	case POP3_EV_OK:
	case POP3_EV_ERR:
		n = snprintf(line, sizeof(line), "%s%s%s%s%s",
		    ev->type == POP3_EV_ERR ||
			    (ev->type == POP3_EV_GREETING && !ev->ok)
			? "-ERR"
			: "+OK",
		    ev->code != POP3_CODE_NONE ? " [" : "",
		    pop3_code_name(ev->code),
		    ev->code != POP3_CODE_NONE ? "]" : "", "");
		if (ev->text[0] != '\0')
			snprintf(line + n, sizeof(line) - (size_t)n, " %s",
			    ev->text);
		break;
	case POP3_EV_CONTINUE:
		snprintf(line, sizeof(line), "+ %s", ev->text);
		break;
	case POP3_EV_CAPA:
		snprintf(line, sizeof(line), "%s", ev->text);
		level = 2;
		break;
	case POP3_EV_LIST:
		snprintf(line, sizeof(line), "%lu %llu", ev->msgno,
		    (unsigned long long)ev->size);
		level = 2;
		break;
	case POP3_EV_UIDL:
		snprintf(line, sizeof(line), "%lu %s", ev->msgno, ev->uid);
		level = 2;
		break;
	case POP3_EV_END:
		snprintf(line, sizeof(line), ".");
		level = 2;
		break;
	default:
		return;
	}
	log_proto(s->a->name, level, false, line, strlen(line), false);
}

/* A reply is awaited from now on: its clock for the minimum rate starts. */
void
session_awaited(struct session *s)
{
	s->wait_since = monotime();
	s->wait_bytes = 0;
}

/*
 * Whether the reply being received keeps up the minimum rate (see
 * SESSION_MIN_RATE); ends the session if not.
 */
static bool
rate_ok(struct session *s)
{
	double t = monotime() - s->wait_since - s->a->timeout;

	if (s->state < S_LISTING || t <= 0 ||
	    (double)s->wait_bytes >= t * SESSION_MIN_RATE)
		return true;
	session_fail(s, SC_NET,
	    "%s:%u: server too slow: %llu bytes in %.0f s in state %s",
	    s->a->host, s->a->port, (unsigned long long)s->wait_bytes,
	    monotime() - s->wait_since, session_state_name(s->state));
	return false;
}

static void
send_line(struct session *s, const char *buf, int n, bool secret)
{
	log_proto(s->a->name, 1, true, buf, (size_t)n, secret);
	if (pop3_pending(s->pop3) <= 1)
		session_awaited(s);
	if ((secret ? net_write_secret(s->net, buf, (size_t)n)
		    : net_write(s->net, buf, (size_t)n)) == -1)
		session_fail(s, SC_LOCAL, "cannot queue output");
}

void
session_send(struct session *s, const struct pop3_req *req)
{
	char buf[POP3_CMDLINE_MAX + 1];
	int n;

	if ((n = pop3_request(s->pop3, req, buf, sizeof(buf))) < 0) {
		session_fail(s, SC_CONFIG,
		    "cannot send %s (argument too long or invalid)",
		    pop3_cmd_name(req->cmd));
		return;
	}
	send_line(s, buf, n, false);
	wipe(buf, sizeof(buf));
}

void
session_send_cmd(struct session *s, enum pop3_cmd cmd, unsigned long msgno)
{
	struct pop3_req r = {.cmd = cmd, .msgno = msgno};

	session_send(s, &r);
}

/* Sends a line the trace masks: a SASL response. */
void
session_send_secret(struct session *s, const char *buf, int n)
{
	send_line(s, buf, n, true);
}

size_t
session_window(const struct session *s)
{
	switch (s->a->pipelining) {
	case CONF_PIPELINING_ON:
		return SESSION_WINDOW;
	case CONF_PIPELINING_OFF:
		return 1;
	case CONF_PIPELINING_AUTO:
		break;
	}
	return pop3_capa(s->pop3)->pipelining ? SESSION_WINDOW : 1;
}

/*
 * Keeps the window full with what NEXT sends, one command a call; once
 * NEXT has nothing left to ask and every reply is in (or only DELEs
 * are unanswered: session_quit_now()), QUIT. Disk work
 * the session must wait for (session_disk_waits()) pauses it.
 */
void
session_fill(struct session *s, enum session_more (*next)(struct session *))
{
	enum session_state st = s->state;
	size_t w = session_window(s);

	while (s->state == st && pop3_pending(s->pop3) < w &&
	       !session_disk_waits(s)) {
		switch (next(s)) {
		case SESSION_SENT:
			continue;
		case SESSION_END:
			if (pop3_pending(s->pop3) == 0 || session_quit_now(s)) {
				session_send_cmd(s, POP3_CMD_QUIT, 0);
				session_set_state(s, S_QUIT);
			}
			return;
		case SESSION_WAIT:
			return;
		}
	}
}

static void
handle_event(struct session *s, const struct pop3_event *ev)
{
	if (ev->type == POP3_EV_ERROR) {
		session_unconfirmed_end(s);
		session_fail(s, SC_PROTO, "protocol error: %s", ev->text);
		return;
	}
	/* Whatever parsed after a message's end confirms it. */
	session_end_confirmed(s);
	/* A reply ended (or a multi-line one began): the next is awaited. */
	if (ev->type != POP3_EV_DATA && ev->type != POP3_EV_CAPA &&
	    ev->type != POP3_EV_LIST && ev->type != POP3_EV_UIDL)
		session_awaited(s);
	trace_event(s, ev);
	switch (s->state) {
	case S_GREETING:
		session_st_greeting(s, ev);
		break;
	case S_CAPA:
		session_st_capa(s, ev);
		break;
	case S_STLS:
		session_st_stls(s, ev);
		break;
	case S_UTF8:
		session_st_utf8(s, ev);
		break;
	case S_USER:
	case S_PASS:
	case S_SASL:
	case S_LOGIN_USER:
	case S_LOGIN_PASS:
	case S_SCRAM_FIRST:
	case S_SCRAM_FINAL:
	case S_SCRAM_END:
		session_st_auth(s, ev);
		break;
	case S_LISTING:
		session_st_listing(s, ev);
		break;
	case S_FETCH:
		session_st_fetch(s, ev);
		break;
	case S_TOP:
		session_st_top(s, ev);
		break;
	case S_QUIT:
		session_st_quit(s, ev);
		break;
	default:
		session_fail(s, SC_PROTO, "unexpected %s in state %s",
		    pop3_ev_name(ev->type), session_state_name(s->state));
		break;
	}
}

/* Feeds what arrived to the engine, chunk by chunk, without copying. */
static void
read_input(struct session *s)
{
	struct evbuffer *in = net_input(s->net);
	struct evbuffer_iovec v;
	struct pop3_event ev;
	size_t n;

	/*
	 * Disk work under way, or a target that takes no more for now: what
	 * arrived waits for resume_input().
	 */
	if (session_input_paused(s))
		return;
	s->wait_bytes += evbuffer_get_length(in);
	if (!rate_ok(s))
		return;
	while (s->state != S_DONE && evbuffer_get_length(in) > 0 &&
	       !session_input_paused(s)) {
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		n = pop3_feed(s->pop3, v.iov_base, v.iov_len, &ev);
		/* Message data points into the buffer: drain after use. */
		if (ev.type != POP3_EV_NONE)
			handle_event(s, &ev);
		evbuffer_drain(in, n);
	}
	/* All that arrived parsed cleanly. */
	if (evbuffer_get_length(in) == 0)
		session_end_confirmed(s);
	/* What this read brought goes to the disk in one job. */
	if (s->state != S_DONE)
		spool_kick(s->sp);
	if (s->state == S_FETCH)
		session_pump(s);
	if (s->state == S_STLS && s->stls_pending) {
		s->stls_pending = false;
		session_start_tls(s);
	}
}

/*
 * After disk work: what arrived meanwhile is parsed, then the transport
 * event that came in between (the end of the connection) is handled.
 */
void
session_resume_input(struct session *s)
{
	if (s->net == NULL)
		return;
	read_input(s);
	if (s->net_pending && s->state != S_DONE && !session_input_paused(s)) {
		s->net_pending = false;
		session_transport_event(s->net, s->pending_ev, s);
	} else if (s->state == S_FETCH)
		session_pump(s);
}

void
session_transport_event(struct net *n, enum net_ev ev, void *arg)
{
	struct session *s = arg;
	char why[512];

	if (s->state == S_DONE)
		return;
	/* The bytes before the end are parsed first (resume_input()). */
	if (session_input_paused(s) && ev != NET_DATA) {
		s->net_pending = true;
		s->pending_ev = ev;
		return;
	}
	switch (ev) {
	case NET_CONNECTED:
		log_debug(s->a->name, "connected");
		if (s->a->tls == CONF_TLS_IMPLICIT)
			session_start_tls(s);
		else
			session_set_state(s, S_GREETING);
		return;
	case NET_TLS_READY:
		session_tls_ready(s);
		return;
	case NET_DATA:
		read_input(s);
		return;
	case NET_TIMEOUT:
		session_fail(s, SC_NET, "%s:%u: %s", s->a->host, s->a->port,
		    net_error(n));
		return;
	case NET_ERROR:
		if (s->state == S_TLS) {
			tls_describe_failure(net_ssl(n), s->a, net_ssl_error(n),
			    why, sizeof(why));
			session_fail(s, SC_NET, "%s:%u: %s", s->a->host,
			    s->a->port, why);
			return;
		}
		session_fail(s, SC_NET, "%s:%u: %s", s->a->host, s->a->port,
		    net_error(n));
		return;
	case NET_CLOSED:
		if (s->state == S_QUIT && pop3_pending(s->pop3) == 0)
			return;
		session_fail(s, SC_NET, "%s:%u: connection closed in state %s",
		    s->a->host, s->a->port, session_state_name(s->state));
		return;
	}
}
