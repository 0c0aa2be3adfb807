/*
 * Transcript tests for the POP3 engine: commands queued, server bytes fed,
 * events compared. Every transcript is fed whole, one byte at a time, and
 * split in two at every offset; all must give the same events.
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pop3.h"
#include "check_main.h"

/* A rendering of all events, message data merged across chunks. */
struct render {
	char *s;
	size_t len, cap;
	bool in_data;
};

static void
put(struct render *r, const char *p, size_t n)
{
	if (r->len + n + 1 > r->cap) {
		r->cap = (r->len + n + 1) * 2;
		r->s = realloc(r->s, r->cap);
		ck_assert_ptr_nonnull(r->s);
	}
	memcpy(r->s + r->len, p, n);
	r->len += n;
	r->s[r->len] = '\0';
}

static void putf(struct render *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
putf(struct render *r, const char *fmt, ...)
{
	char buf[POP3_LINE_MAX + 256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	put(r, buf, (size_t)n);
}

static void
render_event(struct render *r, const struct pop3_event *ev)
{
	if (ev->type == POP3_EV_DATA) {
		if (!r->in_data)
			put(r, "data[", 5);
		r->in_data = true;
		put(r, ev->data, ev->len);
		return;
	}
	if (r->in_data)
		put(r, "]\n", 2);
	r->in_data = false;
	putf(r, "%s %s", pop3_ev_name(ev->type), pop3_cmd_name(ev->cmd));
	if (ev->arg)
		putf(r, " arg=%lu", ev->arg);
	if (ev->type == POP3_EV_GREETING)
		putf(r, " ok=%d", ev->ok);
	if (ev->code != POP3_CODE_NONE)
		putf(r, " code=%s", pop3_code_name(ev->code));
	if (ev->timestamp)
		putf(r, " ts=%s", ev->timestamp);
	if (ev->type == POP3_EV_LIST ||
	    (ev->type == POP3_EV_OK && ev->cmd == POP3_CMD_STAT))
		putf(r, " n=%lu size=%llu", ev->msgno,
		    (unsigned long long)ev->size);
	if (ev->type == POP3_EV_UIDL)
		putf(r, " n=%lu uid=%s", ev->msgno, ev->uid);
	if (ev->text && ev->type != POP3_EV_DATA)
		putf(r, " text=%s", ev->text);
	put(r, "\n", 1);
}

/* Feeds LEN bytes of BUF as pieces of at most STEP bytes. */
static bool
feed_pieces(
    struct pop3 *p, struct render *r, const char *buf, size_t len, size_t step)
{
	struct pop3_event ev;
	size_t off = 0, n, piece, used;

	while (off < len) {
		piece = len - off < step ? len - off : step;
		for (used = 0; used < piece;) {
			n = pop3_feed(p, buf + off + used, piece - used, &ev);
			used += n;
			if (ev.type != POP3_EV_NONE)
				render_event(r, &ev);
			if (ev.type == POP3_EV_ERROR)
				return false;
			ck_assert(n > 0 || ev.type != POP3_EV_NONE);
		}
		off += piece;
	}
	return true;
}

struct transcript {
	const struct pop3_req *reqs; /* terminated by cmd GREETING */
	const char *server;
	size_t server_len; /* 0: strlen */
};

static void
queue(struct pop3 *p, const struct pop3_req *reqs)
{
	char out[POP3_CMDLINE_MAX + 1];
	size_t i;

	for (i = 0; reqs != NULL && reqs[i].cmd != POP3_CMD_GREETING; i++)
		ck_assert_int_gt(
		    pop3_request(p, &reqs[i], out, sizeof(out)), 0);
}

/* Runs T with the given segmentation; returns the rendering. */
static char *
run_split(const struct transcript *t, size_t first, size_t step)
{
	struct render r = {0};
	struct pop3 *p = pop3_new();
	size_t len = t->server_len ? t->server_len : strlen(t->server);

	queue(p, t->reqs);
	if (first > len)
		first = len;
	if (feed_pieces(p, &r, t->server, first, first ? first : 1))
		feed_pieces(p, &r, t->server + first, len - first, step);
	if (r.in_data)
		put(&r, "]\n", 2);
	pop3_free(&p);
	ck_assert_ptr_null(p);
	if (r.s == NULL)
		r.s = strdup("");
	return r.s;
}

/* Checks T gives EXPECT however its bytes are split. */
static void
check_transcript(const struct transcript *t, const char *expect)
{
	size_t len = t->server_len ? t->server_len : strlen(t->server), k;
	char *got;

	got = run_split(t, len, len);
	ck_assert_str_eq(got, expect);
	free(got);
	got = run_split(t, 0, 1);
	ck_assert_str_eq(got, expect);
	free(got);
	for (k = 1; k < len; k++) {
		got = run_split(t, k, len);
		if (strcmp(got, expect) != 0)
			ck_abort_msg(
			    "split at %zu:\n%s\nexpected:\n%s", k, got, expect);
		free(got);
	}
}

/* A trailing empty argument lets REQ(CAPA) stand alone in ISO C. */
#define REQ_(c, ...)                             \
	{                                        \
		.cmd = POP3_CMD_##c, __VA_ARGS__ \
	}
#define REQ(...) REQ_(__VA_ARGS__, )
#define END_REQS                         \
	{                                \
		.cmd = POP3_CMD_GREETING \
	}

START_TEST(session_whole)
{
	static const struct pop3_req reqs[] = {REQ(CAPA),
	    REQ(USER, .arg = "alice"), REQ(PASS, .arg = "pw"), REQ(STAT),
	    REQ(UIDL), REQ(LIST), REQ(RETR, .msgno = 1), REQ(DELE, .msgno = 1),
	    REQ(QUIT), END_REQS};
	static const struct transcript t = {reqs,
	    "+OK POP3 ready <1896.697170952@dbc.mtview.ca.us>\r\n"
	    "+OK Capability list follows\r\n"
	    "TOP\r\nUIDL\r\nUSER\r\nSASL PLAIN LOGIN\r\nPIPELINING\r\n"
	    "RESP-CODES\r\nLOGIN-DELAY 900\r\nEXPIRE NEVER\r\n"
	    "IMPLEMENTATION Test\r\n.\r\n"
	    "+OK\r\n"
	    "+OK Logged in.\r\n"
	    "+OK 2 320\r\n"
	    "+OK\r\n1 abc\r\n2 def\r\n.\r\n"
	    "+OK 2 messages\r\n1 120\r\n2 200\r\n.\r\n"
	    "+OK 120 octets\r\nSubject: x\r\n\r\n..dot\r\n.\r\n"
	    "+OK deleted\r\n"
	    "+OK bye\r\n",
	    0};

	check_transcript(&t,
	    "greeting greeting ok=1 ts=<1896.697170952@dbc.mtview.ca.us> text=POP3 ready <1896.697170952@dbc.mtview.ca.us>\n"
	    "ok CAPA text=Capability list follows\n"
	    "capa CAPA text=TOP\ncapa CAPA text=UIDL\ncapa CAPA text=USER\n"
	    "capa CAPA text=SASL PLAIN LOGIN\ncapa CAPA text=PIPELINING\n"
	    "capa CAPA text=RESP-CODES\ncapa CAPA text=LOGIN-DELAY 900\n"
	    "capa CAPA text=EXPIRE NEVER\n"
	    "capa CAPA text=IMPLEMENTATION Test\nend CAPA\n"
	    "ok USER text=\nok PASS text=Logged in.\n"
	    "ok STAT n=2 size=320 text=2 320\n"
	    "ok UIDL text=\nuidl UIDL n=1 uid=abc\nuidl UIDL n=2 uid=def\n"
	    "end UIDL\n"
	    "ok LIST text=2 messages\nlist LIST n=1 size=120\n"
	    "list LIST n=2 size=200\nend LIST\n"
	    "ok RETR arg=1 text=120 octets\n"
	    "data[Subject: x\r\n\r\n.dot\r\n]\n"
	    "end RETR arg=1\n"
	    "ok DELE arg=1 text=deleted\nok QUIT text=bye\n");
}
END_TEST

START_TEST(capabilities_parsed)
{
	static const struct pop3_req reqs[] = {REQ(CAPA), END_REQS};
	struct pop3 *p = pop3_new();
	char out[64];
	struct pop3_event ev;
	const char *s =
	    "+OK hi\r\n+OK\r\nTOP\r\nuidl\r\nSTLS\r\nSASL PLAIN XOAUTH2\r\nPIPELINING\r\nLOGIN-DELAY 900\r\nEXPIRE 30\r\nUTF8 USER\r\n.\r\n";
	size_t len = strlen(s), n;
	const struct pop3_capa *c;

	ck_assert_int_gt(pop3_request(p, &reqs[0], out, sizeof(out)), 0);
	while (len > 0) {
		n = pop3_feed(p, s, len, &ev);
		ck_assert_int_ne(ev.type, POP3_EV_ERROR);
		s += n;
		len -= n;
	}
	c = pop3_capa(p);
	ck_assert(c->top && c->uidl && c->stls && c->pipelining && c->utf8);
	ck_assert(!c->user && !c->resp_codes);
	ck_assert_int_eq(c->login_delay, 900);
	ck_assert_int_eq(c->expire, 30);
	ck_assert(pop3_capa_has_sasl(p, "plain"));
	ck_assert(pop3_capa_has_sasl(p, "XOAUTH2"));
	ck_assert(!pop3_capa_has_sasl(p, "LOGIN"));
	ck_assert(!pop3_capa_has_sasl(p, "XOAUTH"));
	pop3_free(&p);
}
END_TEST

START_TEST(dot_unstuffing_and_terminators)
{
	static const struct pop3_req reqs[] = {REQ(RETR, .msgno = 3),
	    REQ(RETR, .msgno = 4), REQ(TOP, .msgno = 5, .lines = 0), END_REQS};
	static const struct transcript t = {reqs,
	    "+OK\r\n"
	    "+OK\r\n..\r\n...x\r\n.a.b\r\n.\rcr\r\n.\r\r\n \r\n.\r\n"
	    "+OK\r\n..\r\n.\r\n"
	    "+OK\r\n.\r\n",
	    0};

	check_transcript(&t,
	    "greeting greeting ok=1 text=\n"
	    "ok RETR arg=3 text=\n"
	    "data[.\r\n..x\r\na.b\r\n\rcr\r\n\r\r\n \r\n]\n"
	    "end RETR arg=3\n"
	    "ok RETR arg=4 text=\ndata[.\r\n]\nend RETR arg=4\n"
	    "ok TOP arg=5 text=\nend TOP arg=5\n");
}
END_TEST

/*
 * On a CRLF connection a bare LF is data and no line start: a '.' after
 * it is kept, and "\n.\r\n" or "\n.\n" does not end the message (the
 * cut copy would be recorded and deleted).
 */
START_TEST(bare_lf_dot_is_data)
{
	static const struct pop3_req reqs[] = {REQ(RETR, .msgno = 1), END_REQS};
	static const struct transcript t = {reqs,
	    "+OK ready\r\n+OK\r\n"
	    "a\n.b\r\nc\n..d\r\ne\n.\nf\n.\r\n\n.\r\n.\r\n",
	    0};

	check_transcript(&t, "greeting greeting ok=1 text=ready\n"
			     "ok RETR arg=1 text=\n"
			     "data[a\n.b\r\nc\n..d\r\ne\n.\nf\n.\r\n\n.\r\n]\n"
			     "end RETR arg=1\n");
}
END_TEST

/* A body line "\n.\r\n" must not end the message and let its rest pose
 * as the server's replies to the commands pipelined after it. */
START_TEST(bare_lf_dot_crlf_inside_body)
{
	static const struct pop3_req reqs[] = {
	    REQ(RETR, .msgno = 1), REQ(DELE, .msgno = 1), END_REQS};
	static const struct transcript t = {reqs,
	    "+OK\r\n+OK\r\n"
	    "Subject: x\r\n\r\nevil\n.\r\n+OK fake\r\n\n.\r\ntail\r\n.\r\n"
	    "+OK deleted\r\n",
	    0};

	check_transcript(&t,
	    "greeting greeting ok=1 text=\n"
	    "ok RETR arg=1 text=\n"
	    "data[Subject: x\r\n\r\nevil\n.\r\n+OK fake\r\n\n.\r\ntail\r\n]\n"
	    "end RETR arg=1\n"
	    "ok DELE arg=1 text=deleted\n");
}
END_TEST

/* A CR alone is data and starts no line; only CR then LF does. */
START_TEST(lone_cr_is_data)
{
	static const struct pop3_req reqs[] = {REQ(RETR, .msgno = 1), END_REQS};
	static const struct transcript t = {reqs,
	    "+OK\r\n+OK\r\n"
	    "a\r.b\r\n\r.\r\n\r\r\n..c\r\r.\r\n.\r\n",
	    0};

	check_transcript(&t, "greeting greeting ok=1 text=\n"
			     "ok RETR arg=1 text=\n"
			     "data[a\r.b\r\n\r.\r\n\r\r\n.c\r\r.\r\n]\n"
			     "end RETR arg=1\n");
}
END_TEST

/*
 * A message whose last line ends in a bare LF still ends at the CRLF "."
 * CRLF after it; "\r\n.\n" is a stuffed dot before a bare LF, not an end.
 */
START_TEST(end_after_bare_lf_line)
{
	static const struct pop3_req reqs[] = {
	    REQ(RETR, .msgno = 1), REQ(RETR, .msgno = 2), END_REQS};
	static const struct transcript t = {reqs,
	    "+OK\r\n"
	    "+OK\r\nSubject: x\n\nlast\n\r\n.\r\n"
	    "+OK\r\na\r\n.\nb\n\r\n.\r\n",
	    0};

	check_transcript(&t, "greeting greeting ok=1 text=\n"
			     "ok RETR arg=1 text=\n"
			     "data[Subject: x\n\nlast\n\r\n]\n"
			     "end RETR arg=1\n"
			     "ok RETR arg=2 text=\n"
			     "data[a\r\n\nb\n\r\n]\n"
			     "end RETR arg=2\n");
}
END_TEST

/* A server whose greeting ends in a bare LF speaks LF only: "." LF ends. */
START_TEST(lf_only_server)
{
	static const struct pop3_req reqs[] = {
	    REQ(RETR, .msgno = 1), REQ(RETR, .msgno = 2), REQ(UIDL), END_REQS};
	static const struct transcript t = {reqs,
	    "+OK old server\n"
	    "+OK\nSubject: x\n\na\n..b\n.\rc\n.\n"
	    "+OK\r\nmixed\r\n.\r\n"
	    "+OK\n1 u1\n.\n",
	    0};
	struct pop3 *p = pop3_new();
	struct pop3_event ev;

	check_transcript(&t, "greeting greeting ok=1 text=old server\n"
			     "ok RETR arg=1 text=\n"
			     "data[Subject: x\n\na\n.b\n\rc\n]\n"
			     "end RETR arg=1\n"
			     "ok RETR arg=2 text=\n"
			     "data[mixed\r\n]\n"
			     "end RETR arg=2\n"
			     "ok UIDL text=\nuidl UIDL n=1 uid=u1\nend UIDL\n");
	ck_assert(!pop3_lf_only(p));
	pop3_feed(p, "+OK\n", 4, &ev);
	ck_assert_int_eq(ev.type, POP3_EV_GREETING);
	ck_assert(pop3_lf_only(p));
	pop3_free(&p);
}
END_TEST

/* Only the first status line decides: a later bare LF changes nothing. */
START_TEST(crlf_server_stays_strict)
{
	static const struct pop3_req reqs[] = {REQ(RETR, .msgno = 1), END_REQS};
	static const struct transcript t = {
	    reqs, "+OK\r\n+OK\nx\n.\ny\r\n.\r\n", 0};
	struct pop3 *p = pop3_new();
	struct pop3_event ev;

	check_transcript(&t, "greeting greeting ok=1 text=\n"
			     "ok RETR arg=1 text=\n"
			     "data[x\n.\ny\r\n]\n"
			     "end RETR arg=1\n");
	pop3_feed(p, "+OK\r\n", 5, &ev);
	ck_assert_int_eq(ev.type, POP3_EV_GREETING);
	ck_assert(!pop3_lf_only(p));
	pop3_free(&p);
}
END_TEST

/* Feeds S whole to P, rendering the events. */
static void
feed_all(struct pop3 *p, struct render *r, const char *s)
{
	ck_assert(feed_pieces(p, r, s, strlen(s), strlen(s)));
}

/*
 * The line-ending style is decided again after TLS: a bare LF in the
 * greeting, which anyone on the path could have written, does not make
 * the protected connection lenient, and an LF-only server after TLS is
 * recognised there.
 */
START_TEST(line_style_decided_again_after_tls)
{
	static const struct pop3_req stls[] = {REQ(STLS), END_REQS};
	static const struct pop3_req retr[] = {REQ(RETR, .msgno = 1), END_REQS};
	struct render r = {0};
	struct pop3 *p = pop3_new();

	queue(p, stls);
	feed_all(p, &r, "+OK\n+OK begin\n");
	ck_assert(pop3_lf_only(p));
	pop3_tls_started(p);
	ck_assert(!pop3_lf_only(p));
	queue(p, retr);
	feed_all(p, &r, "+OK\r\na\n.\nb\r\n.\r\n");
	ck_assert(!pop3_lf_only(p));
	ck_assert_str_eq(r.s, "greeting greeting ok=1 text=\n"
			      "ok STLS text=begin\n"
			      "ok RETR arg=1 text=\n"
			      "data[a\n.\nb\r\n]\n"
			      "end RETR arg=1\n");
	free(r.s);
	pop3_free(&p);

	r = (struct render){0};
	p = pop3_new();
	queue(p, stls);
	feed_all(p, &r, "+OK\r\n+OK begin\r\n");
	ck_assert(!pop3_lf_only(p));
	pop3_tls_started(p);
	queue(p, retr);
	feed_all(p, &r, "+OK\na\n.\n");
	ck_assert(pop3_lf_only(p));
	ck_assert_ptr_nonnull(strstr(r.s, "data[a\n]\nend RETR arg=1\n"));
	free(r.s);
	pop3_free(&p);
}
END_TEST

START_TEST(long_body_line_and_nul)
{
	static const struct pop3_req reqs[] = {REQ(RETR, .msgno = 1), END_REQS};
	size_t body = 100000, len, i;
	char *s = malloc(body + 64), *got, *expect;
	struct transcript t = {reqs, s, 0};

	len = (size_t)sprintf(s, "+OK\r\n+OK\r\n");
	for (i = 0; i < body; i++)
		s[len + i] = (char)('a' + i % 26);
	s[len + 10] = '\0';
	len += body;
	memcpy(s + len, "\r\n.\r\n", 5);
	t.server_len = len + 5;
	expect = malloc(body + 256);
	i = (size_t)sprintf(
	    expect, "greeting greeting ok=1 text=\nok RETR arg=1 text=\ndata[");
	memcpy(expect + i, s + 10, body);
	i += body;
	strcpy(expect + i, "\r\n]\nend RETR arg=1\n");
	/* Whole and byte by byte (every split would be quadratic here). */
	got = run_split(&t, t.server_len, t.server_len);
	ck_assert_mem_eq(got, expect, i + strlen(expect + i));
	free(got);
	got = run_split(&t, 0, 1);
	ck_assert_mem_eq(got, expect, i + strlen(expect + i));
	free(got);
	free(expect);
	free(s);
}
END_TEST

START_TEST(response_codes)
{
	static const struct pop3_req reqs[] = {REQ(USER, .arg = "u"),
	    REQ(PASS, .arg = "p"), REQ(PASS, .arg = "p"), REQ(PASS, .arg = "p"),
	    REQ(PASS, .arg = "p"), REQ(PASS, .arg = "p"), REQ(PASS, .arg = "p"),
	    END_REQS};
	static const struct transcript t = {reqs,
	    "+OK\r\n-ERR [IN-USE] locked\r\n-ERR [SYS/TEMP] later\r\n"
	    "-ERR [AUTH] bad\r\n-ERR [LOGIN-DELAY] wait\r\n"
	    "-ERR [SYS/PERM] gone\r\n-ERR [X-FOO]\r\n-err plain\r\n",
	    0};

	check_transcript(&t, "greeting greeting ok=1 text=\n"
			     "err USER code=IN-USE text=locked\n"
			     "err PASS code=SYS/TEMP text=later\n"
			     "err PASS code=AUTH text=bad\n"
			     "err PASS code=LOGIN-DELAY text=wait\n"
			     "err PASS code=SYS/PERM text=gone\n"
			     "err PASS code=other text=\n"
			     "err PASS text=plain\n");
}
END_TEST

START_TEST(auth_continuation)
{
	static const struct pop3_req reqs[] = {
	    REQ(AUTH, .arg = "LOGIN"), END_REQS};
	static const struct transcript t = {reqs,
	    "+OK\r\n+ VXNlcm5hbWU6\r\n+ UGFzc3dvcmQ6\r\n+OK welcome\r\n", 0};

	check_transcript(&t, "greeting greeting ok=1 text=\n"
			     "continue AUTH text=VXNlcm5hbWU6\n"
			     "continue AUTH text=UGFzc3dvcmQ6\n"
			     "ok AUTH text=welcome\n");
}
END_TEST

START_TEST(greeting_err)
{
	static const struct transcript t = {NULL, "-ERR [IN-USE] busy\r\n", 0};

	check_transcript(&t, "greeting greeting ok=0 code=IN-USE text=busy\n");
}
END_TEST

/* Each malformed or over-limit reply ends in a protocol error. */
static void
check_error(const struct pop3_req *reqs, const char *server, const char *why)
{
	struct transcript t = {reqs, server, 0};
	char *got = run_split(&t, strlen(server), strlen(server));
	char *last = strrchr(got, '\n'), *line;

	ck_assert_ptr_nonnull(last);
	*last = '\0';
	line = strrchr(got, '\n');
	line = line ? line + 1 : got;
	if (strncmp(line, "error", 5) != 0 || strstr(line, why) == NULL)
		ck_abort_msg("%s: expected error with \"%s\", got \"%s\"",
		    server, why, line);
	free(got);
	got = run_split(&t, 0, 1);
	ck_assert_ptr_nonnull(strstr(got, why));
	free(got);
}

START_TEST(malformed_replies)
{
	static const struct pop3_req uidl[] = {REQ(UIDL), END_REQS};
	static const struct pop3_req list[] = {REQ(LIST), END_REQS};
	static const struct pop3_req stat[] = {REQ(STAT), END_REQS};
	static const struct pop3_req list1[] = {
	    REQ(LIST, .msgno = 3), END_REQS};
	static const struct pop3_req capa[] = {REQ(CAPA), END_REQS};
	char big[POP3_LINE_MAX + 64], uid[POP3_UID_MAX + 64];
	char capas[POP3_CAPA_MAX * 8 + 64];
	size_t i, o;

	check_error(NULL, "HELLO\r\n", "malformed reply");
	check_error(NULL, "+OKAY\r\n", "malformed reply");
	check_error(NULL, "+OK\r\n+OK unasked\r\n", "unexpected data");
	check_error(stat, "+OK\r\n+OK many\r\n", "malformed STAT");
	check_error(list1, "+OK\r\n+OK 4 100\r\n", "malformed LIST 3");
	check_error(list, "+OK\r\n+OK\r\n0 100\r\n.\r\n", "malformed LIST");
	check_error(list, "+OK\r\n+OK\r\n1000001 1\r\n.\r\n", "malformed LIST");
	check_error(list, "+OK\r\n+OK\r\n1 99999999999999999999999\r\n.\r\n",
	    "malformed LIST");
	check_error(list, "+OK\r\n+OK\r\nx 1\r\n.\r\n", "malformed LIST");
	check_error(uidl, "+OK\r\n+OK\r\n1\r\n.\r\n", "malformed UIDL");
	check_error(uidl, "+OK\r\n+OK\r\n1 a\x01z\r\n.\r\n", "malformed UIDL");
	memset(uid, 'u', sizeof(uid));
	sprintf(uid, "+OK\r\n+OK\r\n1 ");
	memset(uid + strlen(uid), 'u', POP3_UID_MAX + 1);
	strcpy(uid + 12 + POP3_UID_MAX + 1, "\r\n.\r\n");
	check_error(uidl, uid, "malformed UIDL");
	o = (size_t)sprintf(big, "+OK ");
	memset(big + o, 'x', POP3_LINE_MAX);
	strcpy(big + o + POP3_LINE_MAX, "\r\n");
	check_error(NULL, big, "too long");
	o = (size_t)sprintf(capas, "+OK\r\n+OK\r\n");
	for (i = 0; i <= POP3_CAPA_MAX; i++)
		o += (size_t)sprintf(capas + o, "X%u\r\n", (unsigned)i);
	strcpy(capas + o, ".\r\n");
	check_error(capa, capas, "CAPA lines");
}
END_TEST

START_TEST(uid_at_limit_accepted)
{
	static const struct pop3_req uidl[] = {REQ(UIDL), END_REQS};
	char s[256], uid[POP3_UID_MAX + 1], expect[512];
	struct transcript t = {uidl, s, 0};
	char *got;

	memset(uid, '~', POP3_UID_MAX);
	uid[POP3_UID_MAX] = '\0';
	snprintf(s, sizeof(s), "+OK\r\n+OK\r\n1 %s\r\n.\r\n", uid);
	snprintf(expect, sizeof(expect),
	    "greeting greeting ok=1 text=\nok UIDL text=\n"
	    "uidl UIDL n=1 uid=%s\nend UIDL\n",
	    uid);
	got = run_split(&t, strlen(s), strlen(s));
	ck_assert_str_eq(got, expect);
	free(got);
}
END_TEST

START_TEST(nul_in_status_line)
{
	static const char s[] = "+OK a\0b\r\n";
	struct transcript t = {NULL, s, sizeof(s) - 1};
	char *got = run_split(&t, sizeof(s) - 1, sizeof(s) - 1);

	ck_assert_ptr_nonnull(strstr(got, "error"));
	free(got);
}
END_TEST

START_TEST(stls_injection_refused)
{
	static const struct pop3_req reqs[] = {REQ(STLS), END_REQS};
	struct transcript t = {
	    reqs, "+OK\r\n+OK Begin TLS\r\n+OK injected\r\n", 0};

	check_error(reqs, t.server, "after +OK to STLS");
}
END_TEST

START_TEST(stls_forgets_capabilities)
{
	static const struct pop3_req reqs[] = {REQ(CAPA), REQ(STLS), END_REQS};
	static const char s[] = "+OK\r\n+OK\r\nSTLS\r\nUSER\r\n.\r\n+OK go\r\n";
	struct pop3 *p = pop3_new();
	struct pop3_event ev;
	char out[64];
	size_t off = 0;

	queue(p, reqs);
	while (off < sizeof(s) - 1) {
		off += pop3_feed(p, s + off, sizeof(s) - 1 - off, &ev);
		ck_assert_int_ne(ev.type, POP3_EV_ERROR);
	}
	ck_assert(pop3_capa(p)->stls);
	/* No command may be sent before the handshake. */
	ck_assert_int_eq(
	    pop3_request(
		p, &(struct pop3_req){.cmd = POP3_CMD_CAPA}, out, sizeof(out)),
	    -1);
	pop3_tls_started(p);
	ck_assert(!pop3_capa(p)->stls && !pop3_capa(p)->user);
	ck_assert_int_gt(
	    pop3_request(
		p, &(struct pop3_req){.cmd = POP3_CMD_CAPA}, out, sizeof(out)),
	    0);
	pop3_free(&p);
}
END_TEST

START_TEST(requests_formatted)
{
	struct pop3 *p = pop3_new();
	char out[POP3_CMDLINE_MAX + 1], longarg[POP3_CMDLINE_MAX + 8];
	struct pop3_req r;
	int i;

#define FMT(req, want)                                                         \
	do {                                                                   \
		r = (struct pop3_req)req;                                      \
		ck_assert_int_eq(                                              \
		    pop3_request(p, &r, out, sizeof(out)), (int)strlen(want)); \
		ck_assert_str_eq(out, want);                                   \
	} while (0)
	FMT(REQ(USER, .arg = "alice"), "USER alice\r\n");
	FMT(REQ(PASS, .arg = "a b"), "PASS a b\r\n");
	FMT(REQ(APOP, .arg = "u", .arg2 = "d"), "APOP u d\r\n");
	FMT(REQ(AUTH, .arg = "PLAIN", .arg2 = "AGEAYg=="),
	    "AUTH PLAIN AGEAYg==\r\n");
	FMT(REQ(AUTH, .arg = "LOGIN"), "AUTH LOGIN\r\n");
	FMT(REQ(LIST), "LIST\r\n");
	FMT(REQ(LIST, .msgno = 7), "LIST 7\r\n");
	FMT(REQ(UIDL, .msgno = 7), "UIDL 7\r\n");
	FMT(REQ(RETR, .msgno = 12), "RETR 12\r\n");
	FMT(REQ(TOP, .msgno = 3, .lines = 0), "TOP 3 0\r\n");
	FMT(REQ(DELE, .msgno = 1), "DELE 1\r\n");
	FMT(REQ(STAT), "STAT\r\n");
	FMT(REQ(NOOP), "NOOP\r\n");
	FMT(REQ(RSET), "RSET\r\n");
	FMT(REQ(CAPA), "CAPA\r\n");
	FMT(REQ(UTF8), "UTF8\r\n");
	FMT(REQ(QUIT), "QUIT\r\n");
#undef FMT
	r = (struct pop3_req)REQ(PASS, .arg = "a\r\nDELE 1");
	ck_assert_int_eq(pop3_request(p, &r, out, sizeof(out)), -1);
	r = (struct pop3_req)REQ(USER, .arg = "");
	ck_assert_int_eq(pop3_request(p, &r, out, sizeof(out)), -1);
	r = (struct pop3_req)REQ(RETR, .msgno = 0);
	ck_assert_int_eq(pop3_request(p, &r, out, sizeof(out)), -1);
	memset(longarg, 'x', sizeof(longarg) - 1);
	longarg[sizeof(longarg) - 1] = '\0';
	r = (struct pop3_req)REQ(PASS, .arg = longarg);
	ck_assert_int_eq(pop3_request(p, &r, out, sizeof(out)), -1);
	pop3_free(&p);

	/* The queue is bounded. */
	p = pop3_new();
	r = (struct pop3_req)REQ(NOOP);
	for (i = 1; i < POP3_QUEUE_MAX; i++)
		ck_assert_int_gt(pop3_request(p, &r, out, sizeof(out)), 0);
	ck_assert_int_eq(pop3_request(p, &r, out, sizeof(out)), -1);
	ck_assert_uint_eq(pop3_pending(p), POP3_QUEUE_MAX);
	pop3_free(&p);
}
END_TEST

START_TEST(error_is_sticky)
{
	struct pop3 *p = pop3_new();
	struct pop3_event ev;

	pop3_feed(p, "garbage\r\n", 9, &ev);
	ck_assert_int_eq(ev.type, POP3_EV_ERROR);
	ck_assert_uint_eq(pop3_feed(p, "+OK\r\n", 5, &ev), 0);
	ck_assert_int_eq(ev.type, POP3_EV_ERROR);
	pop3_free(&p);
}
END_TEST

static Suite *
pop3_suite(void)
{
	Suite *s = suite_create("pop3");
	TCase *tc = tcase_create("engine");

	tcase_add_test(tc, session_whole);
	tcase_add_test(tc, capabilities_parsed);
	tcase_add_test(tc, dot_unstuffing_and_terminators);
	tcase_add_test(tc, bare_lf_dot_is_data);
	tcase_add_test(tc, bare_lf_dot_crlf_inside_body);
	tcase_add_test(tc, lone_cr_is_data);
	tcase_add_test(tc, end_after_bare_lf_line);
	tcase_add_test(tc, lf_only_server);
	tcase_add_test(tc, crlf_server_stays_strict);
	tcase_add_test(tc, line_style_decided_again_after_tls);
	tcase_add_test(tc, long_body_line_and_nul);
	tcase_add_test(tc, response_codes);
	tcase_add_test(tc, auth_continuation);
	tcase_add_test(tc, greeting_err);
	tcase_add_test(tc, malformed_replies);
	tcase_add_test(tc, uid_at_limit_accepted);
	tcase_add_test(tc, nul_in_status_line);
	tcase_add_test(tc, stls_injection_refused);
	tcase_add_test(tc, stls_forgets_capabilities);
	tcase_add_test(tc, requests_formatted);
	tcase_add_test(tc, error_is_sticky);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_main(pop3_suite());
}
