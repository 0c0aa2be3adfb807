/*
 * The LMTP target (RFC 2033): a client on the loop that hands messages
 * to an LMTP server, one transaction after the other on one connection.
 *
 * A message goes as MAIL, RCPT, DATA (sent together when the server
 * offers PIPELINING, RFC 2920), its bytes once the server answered 354,
 * then the final dot; the server's reply to the dot is the recipient's
 * verdict. The next message's commands follow the dot at once, so the
 * server's verdict on a message always comes before the next 354: while
 * a message is fed, every message before it has its verdict. Bytes
 * written before the 354 are held (one event's worth at most: the caller
 * stops feeding while target_busy()).
 *
 * Anything that leaves a transaction in doubt (a refused MAIL, RCPT or
 * DATA, a message taken back, a reply out of place) ends the connection
 * once the verdicts before it are in; the next message connects again.
 * A lost connection fails every message without a verdict, temporarily.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>

#include "log.h"
#include "target_priv.h"

/*
 * Longest reply line taken: RFC 5321 allows 512 bytes; servers add
 * enhanced codes and text. A longer one is not LMTP.
 */
#define LMTP_LINE_MAX 4096
/* Messages begun and not yet answered: the one fed and the one before. */
#define LMTP_SLOTS 4
/* Replies awaited at once: greeting, LHLO, four per message, QUIT. */
#define LMTP_EXPECT_MAX (3 + 4 * LMTP_SLOTS)

enum phase {
	P_DOWN,	      /* no connection */
	P_CONNECTING, /* connect, greeting, LHLO */
	P_READY,      /* transactions may go */
	P_CLOSING,    /* QUIT sent or to be sent once the verdicts are in */
};

enum expect {
	E_GREETING,
	E_LHLO,
	E_MAIL,
	E_RCPT,
	E_DATA,
	E_DOT,
	E_QUIT,
};

enum mstage {
	M_UNSENT, /* commands wait for the connection */
	M_MAIL,	  /* MAIL sent (and without pipelining, nothing after) */
	M_RCPT,	  /* RCPT sent */
	M_DATA,	  /* DATA sent, 354 awaited */
	M_BODY,	  /* 354 received: bytes flow */
	M_DOT,	  /* the dot sent: the verdict awaited */
	M_OVER,	  /* no more replies expected for it */
};

struct msg {
	bool used;
	unsigned long tag;
	enum mstage stage;
	bool ended;    /* target_end() called */
	bool aborted;  /* target_abort() called: no verdict wanted */
	bool refused;  /* a command failed: its bytes are dropped */
	bool decided;  /* V and WHY are known */
	bool reported; /* the verdict was given */
	enum target_verdict v;
	char why[256];
	unsigned long seq; /* order of begin */
};

struct wait {
	enum expect kind;
	int slot; /* the message it answers, -1 if none */
};

struct lmtp {
	struct target t;
	struct event_base *base;
	struct evdns_base *dns;
	struct target_cbs cbs;
	char *address, *recipient, *sender, *lhlo, *account;
	unsigned timeout;

	enum phase phase;
	struct bufferevent *bev;
	bool pipelining, eightbit;
	struct wait q[LMTP_EXPECT_MAX];
	size_t qhead, qlen;
	struct msg m[LMTP_SLOTS];
	int cur; /* slot being fed, -1 if none */
	unsigned long seq;
	struct evbuffer *held; /* bytes of cur before its 354 */
	struct target_enc enc;
	struct event *notify; /* verdicts and readiness, on a later turn */
	bool drop_after;      /* close once the verdicts before are in */
	bool waiting;	      /* the caller was told to wait: READY due */
	char last[LMTP_LINE_MAX + 1]; /* text of the reply line read */
};

static const struct target_ops lmtp_ops;

static void lmtp_read_cb(struct bufferevent *bev, void *arg);
static void lmtp_write_cb(struct bufferevent *bev, void *arg);
static void lmtp_event_cb(struct bufferevent *bev, short what, void *arg);
static void lmtp_notify_cb(evutil_socket_t fd, short what, void *arg);
static void lmtp_lost(struct lmtp *l, const char *why);
static void send_cmds(struct lmtp *l, int slot);

#define LMTP_OF(t) ((struct lmtp *)(void *)(t))

static void
later(struct lmtp *l)
{
	event_active(l->notify, 0, 0);
}

/* Sets the verdict of M, unless an earlier reply did. */
static void
decide(
    struct msg *m, enum target_verdict v, const char *prefix, const char *text)
{
	if (m->decided)
		return;
	m->decided = true;
	m->v = v;
	/* A reply's text is cut to fit the log line, not refused. */
	snprintf(m->why, sizeof(m->why), "%s%.200s", prefix, text);
}

/* Replies still awaited that belong to a message. */
static bool
awaits(const struct lmtp *l, int slot)
{
	size_t i;

	for (i = 0; i < l->qlen; i++)
		if (l->q[(l->qhead + i) % LMTP_EXPECT_MAX].slot == slot)
			return true;
	return false;
}

static int
expect(struct lmtp *l, enum expect kind, int slot)
{
	if (l->qlen == LMTP_EXPECT_MAX) {
		errno = ENOBUFS;
		return -1;
	}
	l->q[(l->qhead + l->qlen++) % LMTP_EXPECT_MAX] =
	    (struct wait){.kind = kind, .slot = slot};
	return 0;
}

/* The read timeout runs only while a reply is awaited. */
static void
set_timeouts(struct lmtp *l)
{
	struct timeval tv = {.tv_sec = l->timeout};

	if (l->bev != NULL)
		bufferevent_set_timeouts(l->bev, l->qlen > 0 ? &tv : NULL, &tv);
}

static void
send_line(struct lmtp *l, const char *fmt, const char *arg)
{
	char line[1024];
	int n = snprintf(line, sizeof(line), fmt, arg);

	log_debug(l->account, "lmtp: > %.*s", n - 2, line);
	bufferevent_write(l->bev, line, (size_t)n);
	set_timeouts(l);
}

/* ---- connecting ---- */

static int
connect_unix(struct lmtp *l)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	if (strlen(l->address) >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sun.sun_path, l->address);
	return bufferevent_socket_connect(
	    l->bev, (struct sockaddr *)&sun, sizeof(sun));
}

static int
connect_inet(struct lmtp *l)
{
	char host[256];
	const char *colon = strrchr(l->address, ':');
	size_t hl;

	if (colon == NULL || (hl = (size_t)(colon - l->address)) == 0 ||
	    hl >= sizeof(host)) {
		errno = EINVAL;
		return -1;
	}
	/* "[::1]:24": the brackets are not part of the name. */
	if (l->address[0] == '[' && hl > 2 && l->address[hl - 1] == ']')
		snprintf(
		    host, sizeof(host), "%.*s", (int)hl - 2, l->address + 1);
	else
		snprintf(host, sizeof(host), "%.*s", (int)hl, l->address);
	return bufferevent_socket_connect_hostname(
	    l->bev, l->dns, AF_UNSPEC, host, atoi(colon + 1));
}

static void
start_connect(struct lmtp *l)
{
	int r;

	l->bev = bufferevent_socket_new(
	    l->base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (l->bev == NULL) {
		lmtp_lost(l, "out of memory");
		return;
	}
	bufferevent_setcb(
	    l->bev, lmtp_read_cb, lmtp_write_cb, lmtp_event_cb, l);
	bufferevent_setwatermark(l->bev, EV_WRITE, TARGET_OUT_HIGH / 2, 0);
	bufferevent_enable(l->bev, EV_READ | EV_WRITE);
	l->phase = P_CONNECTING;
	l->pipelining = l->eightbit = false;
	l->qhead = l->qlen = 0;
	l->drop_after = false;
	expect(l, E_GREETING, -1);
	set_timeouts(l);
	r = l->address[0] == '/' ? connect_unix(l) : connect_inet(l);
	if (r == -1)
		lmtp_lost(l, strerror(errno));
}

/*
 * Closes the connection; messages without a verdict fail temporarily.
 * After a close of our own (QUIT), messages whose commands have not gone
 * yet wait for the next connection, made at once.
 */
static void
lmtp_lost(struct lmtp *l, const char *why)
{
	bool planned = l->phase == P_CLOSING;
	bool again = false;
	size_t i;

	if (!planned)
		log_warnx(l->account, "lmtp: %s: %s", l->address, why);
	if (l->bev != NULL)
		bufferevent_free(l->bev);
	l->bev = NULL;
	l->phase = P_DOWN;
	l->qhead = l->qlen = 0;
	for (i = 0; i < LMTP_SLOTS; i++) {
		if (!l->m[i].used || l->m[i].stage == M_OVER)
			continue;
		if (planned && l->m[i].stage == M_UNSENT && !l->m[i].refused &&
		    !l->m[i].aborted) {
			again = true;
			continue;
		}
		decide(
		    &l->m[i], TARGET_TEMPFAIL, "LMTP connection lost: ", why);
		l->m[i].stage = M_OVER;
		l->m[i].refused = true;
	}
	if (!again)
		evbuffer_drain(l->held, evbuffer_get_length(l->held));
	later(l);
	if (again)
		start_connect(l);
}

/* Sends QUIT once no message awaits a reply; the server then closes. */
static void
maybe_drop(struct lmtp *l)
{
	if (!l->drop_after || l->phase != P_READY || l->qlen > 0)
		return;
	l->phase = P_CLOSING;
	expect(l, E_QUIT, -1);
	send_line(l, "QUIT\r\n", "");
}

/* ---- replies ---- */

static void
on_greeting(struct lmtp *l, int code)
{
	if (code != 220) {
		lmtp_lost(l, l->last);
		return;
	}
	expect(l, E_LHLO, -1);
	send_line(l, "LHLO %s\r\n", l->lhlo);
}

/* A line of the LHLO reply: what the server offers. */
static void
capability(struct lmtp *l)
{
	const char *kw = l->last + 4;

	if (strlen(l->last) < 4)
		return;
	if (strcasecmp(kw, "PIPELINING") == 0)
		l->pipelining = true;
	else if (strcasecmp(kw, "8BITMIME") == 0)
		l->eightbit = true;
}

static void
on_lhlo(struct lmtp *l, int code)
{
	size_t i;

	if (code != 250) {
		lmtp_lost(l, l->last);
		return;
	}
	l->phase = P_READY;
	for (i = 0; i < LMTP_SLOTS; i++)
		if (l->m[i].used && l->m[i].stage == M_UNSENT)
			send_cmds(l, (int)i);
	later(l);
}

/* A command of message SLOT refused: its transaction is over. */
static void
refused(struct lmtp *l, int slot, int code)
{
	struct msg *m = &l->m[slot];

	decide(m, target_verdict_of(code), "", l->last);
	m->refused = true;
	l->drop_after = true;
	if (slot == l->cur)
		evbuffer_drain(l->held, evbuffer_get_length(l->held));
}

static void
on_data(struct lmtp *l, int slot, int code)
{
	struct msg *m = &l->m[slot];

	if (code != 354 || m->refused || m->aborted) {
		if (code == 354) {
			/* Bytes now would be delivered: there is no undo. */
			lmtp_lost(l, "message taken back during DATA");
			return;
		}
		refused(l, slot, code);
		m->stage = M_OVER;
		return;
	}
	m->stage = M_BODY;
	if (evbuffer_get_length(l->held) > 0)
		bufferevent_write_buffer(l->bev, l->held);
	if (m->ended) {
		m->stage = M_DOT;
		expect(l, E_DOT, slot);
	}
	later(l);
}

static void
on_reply(struct lmtp *l, struct wait w, int code)
{
	struct msg *m = w.slot >= 0 ? &l->m[w.slot] : NULL;

	switch (w.kind) {
	case E_GREETING:
		on_greeting(l, code);
		return;
	case E_LHLO:
		on_lhlo(l, code);
		return;
	case E_MAIL:
	case E_RCPT:
		if (code / 100 != 2)
			refused(l, w.slot, code);
		else if (!l->pipelining && !m->refused)
			send_cmds(l, w.slot);
		return;
	case E_DATA:
		on_data(l, w.slot, code);
		return;
	case E_DOT:
		decide(m, target_verdict_of(code), "", l->last);
		m->stage = M_OVER;
		later(l);
		return;
	case E_QUIT:
		lmtp_lost(l, "closed");
		return;
	}
}

/* Takes one complete reply line; acts on the last line of a reply. */
static void
reply_line(struct lmtp *l, const char *line, size_t len)
{
	struct wait w;
	int code;
	bool last;

	snprintf(l->last, sizeof(l->last), "%.*s", (int)len, line);
	log_debug(l->account, "lmtp: < %s", l->last);
	if (target_reply_line(line, len, &code, &last) == -1 || l->qlen == 0) {
		lmtp_lost(l, "not an LMTP reply, or one not asked for");
		return;
	}
	w = l->q[l->qhead];
	if (w.kind == E_LHLO && code == 250)
		capability(l);
	if (!last)
		return;
	l->qhead = (l->qhead + 1) % LMTP_EXPECT_MAX;
	l->qlen--;
	on_reply(l, w, code);
	if (l->bev != NULL) {
		set_timeouts(l);
		maybe_drop(l);
	}
}

static void
lmtp_read_cb(struct bufferevent *bev, void *arg)
{
	struct lmtp *l = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line;

	while (l->bev == bev &&
	       (line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) != NULL) {
		reply_line(l, line, len);
		free(line);
	}
	if (l->bev == bev && evbuffer_get_length(in) > LMTP_LINE_MAX)
		lmtp_lost(l, "reply line too long");
}

/* The output drained below its low mark: a waiting caller may go on. */
static void
lmtp_write_cb(struct bufferevent *bev, void *arg)
{
	struct lmtp *l = arg;

	if (l->waiting)
		later(l);
}

static void
lmtp_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct lmtp *l = arg;
	char why[256];

	if (what & BEV_EVENT_CONNECTED)
		return;
	if (what & BEV_EVENT_TIMEOUT)
		snprintf(why, sizeof(why), "no answer within %u s", l->timeout);
	else if ((what & BEV_EVENT_ERROR) &&
		 bufferevent_socket_get_dns_error(bev) != 0)
		snprintf(why, sizeof(why), "%s",
		    evutil_gai_strerror(bufferevent_socket_get_dns_error(bev)));
	else if (what & BEV_EVENT_ERROR)
		snprintf(why, sizeof(why), "%s",
		    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	else
		snprintf(why, sizeof(why), "connection closed by the server");
	lmtp_lost(l, why);
}

/* ---- messages ---- */

/*
 * Sends what message SLOT may send now: all three commands with
 * PIPELINING, else the next one after each reply.
 */
static void
send_cmds(struct lmtp *l, int slot)
{
	struct msg *m = &l->m[slot];

	if (l->phase != P_READY)
		return;
	do {
		switch (m->stage) {
		case M_UNSENT:
			m->stage = M_MAIL;
			expect(l, E_MAIL, slot);
			send_line(l,
			    l->eightbit ? "MAIL FROM:<%s> BODY=8BITMIME\r\n"
					: "MAIL FROM:<%s>\r\n",
			    l->sender);
			break;
		case M_MAIL:
			m->stage = M_RCPT;
			expect(l, E_RCPT, slot);
			send_line(l, "RCPT TO:<%s>\r\n", l->recipient);
			break;
		case M_RCPT:
			m->stage = M_DATA;
			expect(l, E_DATA, slot);
			send_line(l, "DATA\r\n", "");
			return;
		default:
			return;
		}
	} while (l->pipelining);
}

static int
free_slot(const struct lmtp *l)
{
	int i;

	for (i = 0; i < LMTP_SLOTS; i++)
		if (!l->m[i].used)
			return i;
	return -1;
}

static int
lmtp_begin(struct target *t, unsigned long tag)
{
	struct lmtp *l = LMTP_OF(t);
	int slot;

	if (l->cur != -1 || (slot = free_slot(l)) == -1) {
		errno = EBUSY;
		return -1;
	}
	l->m[slot] = (struct msg){.used = true, .tag = tag, .seq = ++l->seq};
	l->cur = slot;
	target_enc_init(&l->enc, true, true);
	if (l->phase == P_DOWN)
		start_connect(l);
	else
		send_cmds(l, slot);
	return 0;
}

/* Where the bytes of the message fed go: the socket, held, or nowhere. */
static int
emit(void *arg, const char *data, size_t n)
{
	struct lmtp *l = arg;
	struct msg *m = &l->m[l->cur];

	if (m->refused || l->bev == NULL)
		return 0;
	if (m->stage == M_BODY)
		return bufferevent_write(l->bev, data, n);
	return evbuffer_add(l->held, data, n);
}

/*
 * The encoder's output gathered into runs of up to STAGE_SIZE bytes: it
 * gives a piece per line, and a buffer call per line would cost more
 * than the copy.
 */
#define STAGE_SIZE 16384

struct stage {
	struct lmtp *l;
	size_t n;
	char buf[STAGE_SIZE];
};

static int
stage_flush(struct stage *st)
{
	int r = st->n > 0 ? emit(st->l, st->buf, st->n) : 0;

	st->n = 0;
	return r;
}

static int
stage_out(void *arg, const char *bytes, size_t n)
{
	struct stage *st = arg;

	if (n > sizeof(st->buf) - st->n && stage_flush(st) != 0)
		return -1;
	if (n >= sizeof(st->buf))
		return emit(st->l, bytes, n);
	memcpy(st->buf + st->n, bytes, n);
	st->n += n;
	return 0;
}

static int
lmtp_write(struct target *t, const char *data, size_t len)
{
	struct lmtp *l = LMTP_OF(t);
	struct stage st;

	if (l->cur == -1) {
		errno = EINVAL;
		return -1;
	}
	st.l = l;
	st.n = 0;
	if (target_enc_feed(&l->enc, data, len, stage_out, &st) != 0 ||
	    stage_flush(&st) != 0) {
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

static int
lmtp_end(struct target *t)
{
	struct lmtp *l = LMTP_OF(t);
	struct msg *m;

	if (l->cur == -1) {
		errno = EINVAL;
		return -1;
	}
	m = &l->m[l->cur];
	if (target_enc_finish(&l->enc, emit, l) != 0 ||
	    emit(l, ".\r\n", 3) != 0) {
		errno = ENOMEM;
		return -1;
	}
	m->ended = true;
	if (m->stage == M_BODY && !m->refused && l->bev != NULL) {
		m->stage = M_DOT;
		expect(l, E_DOT, l->cur);
		set_timeouts(l);
	}
	l->cur = -1;
	later(l);
	return 0;
}

static void
lmtp_abort(struct target *t)
{
	struct lmtp *l = LMTP_OF(t);
	struct msg *m;

	if (l->cur == -1)
		return;
	m = &l->m[l->cur];
	m->aborted = true;
	evbuffer_drain(l->held, evbuffer_get_length(l->held));
	l->cur = -1;
	/* Its dot never goes: the server must not be left in its DATA. */
	if (m->stage == M_BODY) {
		m->stage = M_OVER;
		lmtp_lost(l, "message taken back during DATA");
	} else if (m->stage != M_OVER) {
		m->refused = true;
		l->drop_after = true;
	}
	later(l);
}

/* Whether the caller must wait (see target_busy()). */
static bool
must_wait(const struct lmtp *l)
{
	size_t out;

	if (l->cur != -1 && !l->m[l->cur].refused &&
	    l->m[l->cur].stage != M_BODY)
		return true; /* the 354 first */
	if (l->cur == -1 && free_slot(l) == -1)
		return true;
	out = evbuffer_get_length(l->held);
	if (l->bev != NULL)
		out += evbuffer_get_length(bufferevent_get_output(l->bev));
	return out > TARGET_OUT_HIGH;
}

static bool
lmtp_busy(struct target *t)
{
	struct lmtp *l = LMTP_OF(t);

	if (!must_wait(l))
		return false;
	l->waiting = true;
	return true;
}

static size_t
lmtp_pending(const struct target *t)
{
	const struct lmtp *l = LMTP_OF(t);
	size_t i, n = 0;

	for (i = 0; i < LMTP_SLOTS; i++)
		if (l->m[i].used && !l->m[i].aborted)
			n++;
	return n;
}

/* The oldest message whose verdict can be given now, or -1. */
static int
next_report(const struct lmtp *l)
{
	int i, best = -1;

	for (i = 0; i < LMTP_SLOTS; i++) {
		const struct msg *m = &l->m[i];

		if (!m->used || i == l->cur)
			continue;
		if (best == -1 || m->seq < l->m[best].seq)
			best = i;
	}
	if (best == -1)
		return -1;
	/* Verdicts in the order the messages began. */
	if (l->m[best].aborted ? awaits(l, best) : !l->m[best].decided)
		return -1;
	return best;
}

static void
lmtp_notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct lmtp *l = arg;
	struct msg m;
	int i;

	while ((i = next_report(l)) != -1) {
		m = l->m[i];
		l->m[i].used = false;
		if (!m.aborted)
			l->cbs.done(l->cbs.arg, m.tag, m.v, m.why);
	}
	maybe_drop(l);
	if (l->waiting && !must_wait(l)) {
		l->waiting = false;
		if (l->cbs.ready != NULL)
			l->cbs.ready(l->cbs.arg);
	}
}

static void
lmtp_close(struct target *t)
{
	struct lmtp *l = LMTP_OF(t);

	l->drop_after = true;
	maybe_drop(l);
}

static void
lmtp_free(struct target *t)
{
	struct lmtp *l = LMTP_OF(t);

	if (l->bev != NULL)
		bufferevent_free(l->bev);
	if (l->notify != NULL)
		event_free(l->notify);
	if (l->held != NULL)
		evbuffer_free(l->held);
	free(l->address);
	free(l->recipient);
	free(l->sender);
	free(l->lhlo);
	free(l->account);
	free(l);
}

static const struct target_ops lmtp_ops = {
    .begin = lmtp_begin,
    .write = lmtp_write,
    .end = lmtp_end,
    .abort = lmtp_abort,
    .busy = lmtp_busy,
    .pending = lmtp_pending,
    .close = lmtp_close,
    .free = lmtp_free,
};

struct target *
target_lmtp_new(struct event_base *base, struct evdns_base *dns,
    const struct target_lmtp_conf *c, const struct target_cbs *cbs)
{
	struct lmtp *l;

	if ((l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	l->t.ops = &lmtp_ops;
	l->base = base;
	l->dns = dns;
	l->cbs = *cbs;
	l->timeout = c->timeout;
	l->cur = -1;
	l->address = strdup(c->address);
	l->recipient = strdup(c->recipient);
	l->sender = strdup(c->sender != NULL ? c->sender : "");
	l->lhlo = strdup(c->lhlo != NULL ? c->lhlo : "localhost");
	l->account = strdup(c->account != NULL ? c->account : "-");
	l->held = evbuffer_new();
	l->notify = event_new(base, -1, 0, lmtp_notify_cb, l);
	if (l->address == NULL || l->recipient == NULL || l->sender == NULL ||
	    l->lhlo == NULL || l->account == NULL || l->held == NULL ||
	    l->notify == NULL) {
		lmtp_free(&l->t);
		return NULL;
	}
	return &l->t;
}
