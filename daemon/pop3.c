/*
 * The POP3 engine: pairs server replies with the commands in flight,
 * parses status and listing lines, and streams message data dot-unstuffed
 * with the terminator found at any segmentation.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pop3.h"

/* What the engine expects next from the server. */
enum pop3_in {
	IN_STATUS,   /* a status line answering the front command */
	IN_LINES,    /* lines of a multi-line listing (CAPA, LIST, UIDL) */
	IN_DATA,     /* message data (RETR, TOP) */
	IN_TLS_WAIT, /* nothing: the TLS handshake comes next */
	IN_CLOSED,   /* after +OK to QUIT: anything further is ignored */
	IN_DEAD,     /* after a protocol error */
};

/* Where message data stands relative to a line start and its dot. */
enum pop3_data {
	D_BOL,	      /* at the start of a line */
	D_BOL_DOT,    /* a '.' at line start was consumed */
	D_BOL_DOT_CR, /* ".\r" at line start was consumed */
	D_MID,	      /* inside a line */
	D_MID_CR,     /* inside a line, right after a CR */
};

struct pop3_inflight {
	enum pop3_cmd cmd;
	unsigned long arg;
};

struct pop3 {
	enum pop3_in in;
	enum pop3_data ds;
	struct pop3_inflight q[POP3_QUEUE_MAX];
	size_t qhead, qlen;
	char line[POP3_LINE_MAX + 1];
	size_t linelen;
	bool line_done;	   /* line holds a complete line not yet consumed */
	bool line_bare_lf; /* the last gathered line ended in LF without CR */
	bool lf_only;	   /* the server ends its lines with a bare LF */
	bool eol_known;	   /* lf_only was decided (see pop3.h) */
	struct pop3_capa capa, capa_new;
	unsigned capa_lines;
	char err[160];
};

static const char *const cmd_names[] = {"greeting", "USER", "PASS", "APOP",
    "RPOP", "AUTH", "CAPA", "STLS", "UTF8", "STAT", "LIST", "UIDL", "RETR",
    "TOP", "DELE", "RSET", "NOOP", "QUIT"};
_Static_assert(sizeof(cmd_names) / sizeof(cmd_names[0]) == POP3_CMD_COUNT,
    "cmd_names out of step with enum pop3_cmd");

static const char *const ev_names[] = {"none", "greeting", "ok", "err",
    "continue", "capa", "list", "uidl", "data", "end", "error"};
_Static_assert(sizeof(ev_names) / sizeof(ev_names[0]) == POP3_EV_COUNT,
    "ev_names out of step with enum pop3_ev");

static void capa_reset(struct pop3_capa *c);
static size_t fail(struct pop3 *p, struct pop3_event *ev, size_t used,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static int gather(struct pop3 *p, const char *buf, size_t len, size_t *used);
static size_t feed_status(
    struct pop3 *p, const char *buf, size_t len, struct pop3_event *ev);
static size_t feed_lines(
    struct pop3 *p, const char *buf, size_t len, struct pop3_event *ev);
static size_t feed_data(
    struct pop3 *p, const char *buf, size_t len, struct pop3_event *ev);
static size_t data_run(struct pop3 *p, const char *buf, size_t len, size_t i,
    struct pop3_event *ev);

const char *
pop3_cmd_name(enum pop3_cmd cmd)
{
	return (unsigned)cmd < POP3_CMD_COUNT ? cmd_names[cmd] : "?";
}

const char *
pop3_ev_name(enum pop3_ev ev)
{
	return (unsigned)ev < POP3_EV_COUNT ? ev_names[ev] : "?";
}

const char *
pop3_code_name(enum pop3_code code)
{
	switch (code) {
	case POP3_CODE_NONE:
		return "";
	case POP3_CODE_IN_USE:
		return "IN-USE";
	case POP3_CODE_LOGIN_DELAY:
		return "LOGIN-DELAY";
	case POP3_CODE_SYS_TEMP:
		return "SYS/TEMP";
	case POP3_CODE_SYS_PERM:
		return "SYS/PERM";
	case POP3_CODE_AUTH:
		return "AUTH";
	case POP3_CODE_UTF8:
		return "UTF8";
	case POP3_CODE_OTHER:
		break;
	}
	return "other";
}

struct pop3 *
pop3_new(void)
{
	struct pop3 *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->in = IN_STATUS;
	p->q[0].cmd = POP3_CMD_GREETING;
	p->qlen = 1;
	capa_reset(&p->capa);
	return p;
}

void
pop3_free(struct pop3 **p)
{
	if (*p == NULL)
		return;
	free(*p);
	*p = NULL;
}

size_t
pop3_pending(const struct pop3 *p)
{
	return p->qlen;
}

bool
pop3_lf_only(const struct pop3 *p)
{
	return p->lf_only;
}

const struct pop3_capa *
pop3_capa(const struct pop3 *p)
{
	return &p->capa;
}

bool
pop3_capa_has_sasl(const struct pop3 *p, const char *mech)
{
	const char *s = p->capa.sasl;
	size_t n = strlen(mech);

	while (*s != '\0') {
		size_t w = strcspn(s, " ");
		if (w == n && strncasecmp(s, mech, n) == 0)
			return true;
		s += w;
		s += strspn(s, " ");
	}
	return false;
}

void
pop3_tls_started(struct pop3 *p)
{
	if (p->in != IN_TLS_WAIT)
		return;
	p->in = IN_STATUS;
	/*
	 * RFC 2595: what the server said before TLS cannot be trusted, and
	 * that includes how its greeting ended.
	 */
	capa_reset(&p->capa);
	p->lf_only = false;
	p->eol_known = false;
}

static void
capa_reset(struct pop3_capa *c)
{
	memset(c, 0, sizeof(*c));
	c->login_delay = -1;
	c->expire = -1;
}

static bool
cmd_multiline(enum pop3_cmd cmd, unsigned long arg)
{
	switch (cmd) {
	case POP3_CMD_CAPA:
	case POP3_CMD_RETR:
	case POP3_CMD_TOP:
		return true;
	case POP3_CMD_LIST:
	case POP3_CMD_UIDL:
		return arg == 0;
	default:
		return false;
	}
}

static bool
arg_ok(const char *s)
{
	return s != NULL && *s != '\0' && strpbrk(s, "\r\n") == NULL;
}

/* Formats the command line for REQ, or returns -1. */
static int
format_req(const struct pop3_req *r, char *out, size_t outsz)
{
	const char *name = cmd_names[r->cmd];

	switch (r->cmd) {
	case POP3_CMD_USER:
	case POP3_CMD_PASS:
	case POP3_CMD_RPOP:
		if (!arg_ok(r->arg))
			return -1;
		return snprintf(out, outsz, "%s %s\r\n", name, r->arg);
	case POP3_CMD_APOP:
		if (!arg_ok(r->arg) || !arg_ok(r->arg2))
			return -1;
		return snprintf(out, outsz, "APOP %s %s\r\n", r->arg, r->arg2);
	case POP3_CMD_AUTH:
		if (!arg_ok(r->arg) || (r->arg2 != NULL && !arg_ok(r->arg2)))
			return -1;
		if (r->arg2 != NULL)
			return snprintf(
			    out, outsz, "AUTH %s %s\r\n", r->arg, r->arg2);
		return snprintf(out, outsz, "AUTH %s\r\n", r->arg);
	case POP3_CMD_LIST:
	case POP3_CMD_UIDL:
		if (r->msgno == 0)
			return snprintf(out, outsz, "%s\r\n", name);
		/* FALLTHROUGH */
	case POP3_CMD_RETR:
	case POP3_CMD_DELE:
		if (r->msgno == 0 || r->msgno > POP3_MSGNO_MAX)
			return -1;
		return snprintf(out, outsz, "%s %lu\r\n", name, r->msgno);
	case POP3_CMD_TOP:
		if (r->msgno == 0 || r->msgno > POP3_MSGNO_MAX)
			return -1;
		return snprintf(
		    out, outsz, "TOP %lu %lu\r\n", r->msgno, r->lines);
	case POP3_CMD_CAPA:
	case POP3_CMD_STLS:
	case POP3_CMD_UTF8:
	case POP3_CMD_STAT:
	case POP3_CMD_RSET:
	case POP3_CMD_NOOP:
	case POP3_CMD_QUIT:
		return snprintf(out, outsz, "%s\r\n", name);
	case POP3_CMD_GREETING:
	case POP3_CMD_COUNT:
		break;
	}
	return -1;
}

int
pop3_request(
    struct pop3 *p, const struct pop3_req *req, char *out, size_t outsz)
{
	int n;

	if (p->in == IN_DEAD || p->in == IN_TLS_WAIT || p->in == IN_CLOSED ||
	    p->qlen == POP3_QUEUE_MAX || (unsigned)req->cmd >= POP3_CMD_COUNT)
		return -1;
	n = format_req(req, out, outsz);
	if (n < 0 || (size_t)n >= outsz || n > POP3_CMDLINE_MAX)
		return -1;
	p->q[(p->qhead + p->qlen) % POP3_QUEUE_MAX] =
	    (struct pop3_inflight){req->cmd, req->msgno};
	p->qlen++;
	return n;
}

int
pop3_auth_response(struct pop3 *p, const char *line, char *out, size_t outsz)
{
	int n;

	if (p->in != IN_STATUS || p->qlen == 0 ||
	    p->q[p->qhead].cmd != POP3_CMD_AUTH || line == NULL ||
	    strpbrk(line, "\r\n") != NULL)
		return -1;
	n = snprintf(out, outsz, "%s\r\n", line);
	if (n < 0 || (size_t)n >= outsz || n > POP3_AUTHLINE_MAX)
		return -1;
	return n;
}

/* Copies an excerpt of S fit for an error message. */
static void
excerpt(char *dst, size_t dstsz, const char *s, size_t len)
{
	size_t i, n = len < dstsz - 1 ? len : dstsz - 1;

	for (i = 0; i < n; i++)
		dst[i] = isprint((unsigned char)s[i]) ? s[i] : '?';
	dst[n] = '\0';
}

static size_t
fail(struct pop3 *p, struct pop3_event *ev, size_t used, const char *fmt, ...)
{
	va_list ap;

	if (p->in != IN_DEAD) {
		va_start(ap, fmt);
		vsnprintf(p->err, sizeof(p->err), fmt, ap);
		va_end(ap);
		p->in = IN_DEAD;
	}
	ev->type = POP3_EV_ERROR;
	ev->text = p->err;
	return used;
}

static struct pop3_inflight
front(const struct pop3 *p)
{
	return p->q[p->qhead];
}

static void
pop_front(struct pop3 *p)
{
	p->qhead = (p->qhead + 1) % POP3_QUEUE_MAX;
	p->qlen--;
}

size_t
pop3_feed(struct pop3 *p, const char *buf, size_t len, struct pop3_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	if (p->in == IN_DEAD)
		return fail(p, ev, 0, "%s", p->err);
	if (len == 0)
		return 0;
	if (p->qlen > 0) {
		ev->cmd = front(p).cmd;
		ev->arg = front(p).arg;
	}
	switch (p->in) {
	case IN_STATUS:
		if (p->qlen == 0)
			return fail(p, ev, 0, "unexpected data from server");
		return feed_status(p, buf, len, ev);
	case IN_LINES:
		return feed_lines(p, buf, len, ev);
	case IN_DATA:
		return feed_data(p, buf, len, ev);
	case IN_TLS_WAIT:
		/*
		 * Bytes after the +OK to STLS and before the handshake were
		 * injected by someone on the path (or sent by a broken
		 * server); parsing them would let them pose as TLS-protected.
		 */
		return fail(p, ev, 0,
		    "server sent data after +OK to STLS (injection?)");
	case IN_CLOSED:
		return len;
	case IN_DEAD:
		break;
	}
	return fail(p, ev, 0, "%s", p->err);
}

/*
 * Gathers one line into p->line without its line ending. Returns 1 when a
 * line is complete, 0 when more input is needed (all of it consumed), -1
 * when the line is too long or holds a NUL. *USED gets the bytes consumed.
 */
static int
gather(struct pop3 *p, const char *buf, size_t len, size_t *used)
{
	const char *nl = memchr(buf, '\n', len);
	size_t take = nl != NULL ? (size_t)(nl - buf) + 1 : len;
	size_t body = nl != NULL ? take - 1 : take;

	*used = take;
	if (p->linelen + body > POP3_LINE_MAX)
		return -1;
	memcpy(p->line + p->linelen, buf, body);
	p->linelen += body;
	if (nl == NULL)
		return 0;
	p->line_bare_lf = true;
	if (p->linelen > 0 && p->line[p->linelen - 1] == '\r') {
		p->linelen--;
		p->line_bare_lf = false;
	}
	p->line[p->linelen] = '\0';
	if (memchr(p->line, '\0', p->linelen) != NULL)
		return -1;
	return 1;
}

/* Parses an unsigned decimal at *S, advancing it; false if none/overflow. */
static bool
parse_num(const char **s, uint64_t max, uint64_t *out)
{
	const char *q = *s;
	uint64_t v = 0;

	if (!isdigit((unsigned char)*q))
		return false;
	for (; isdigit((unsigned char)*q); q++) {
		if (v > (max - (uint64_t)(*q - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(*q - '0');
	}
	*s = q;
	*out = v;
	return true;
}

static const char *
skip_sp(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* Strips an RFC 2449 response code from TEXT into EV. */
static void
parse_code(struct pop3_event *ev, const char *text)
{
	static const struct {
		const char *name;
		enum pop3_code code;
	} codes[] = {
	    {"IN-USE", POP3_CODE_IN_USE},
	    {"LOGIN-DELAY", POP3_CODE_LOGIN_DELAY},
	    {"SYS/TEMP", POP3_CODE_SYS_TEMP},
	    {"SYS/PERM", POP3_CODE_SYS_PERM},
	    {"AUTH", POP3_CODE_AUTH},
	    {"UTF8", POP3_CODE_UTF8},
	};
	const char *close;
	size_t i, n;

	ev->text = text;
	if (text[0] != '[' || (close = strchr(text, ']')) == NULL)
		return;
	n = (size_t)(close - text - 1);
	ev->code = POP3_CODE_OTHER;
	for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
		if (strlen(codes[i].name) == n &&
		    strncasecmp(text + 1, codes[i].name, n) == 0)
			ev->code = codes[i].code;
	}
	ev->text = skip_sp(close + 1);
}

/* Finds an APOP timestamp (a msg-id: <...@...>) in the greeting. */
static void
parse_timestamp(struct pop3 *p, struct pop3_event *ev)
{
	char *lt = strchr(p->line, '<'), *gt;

	if (lt == NULL || (gt = strchr(lt, '>')) == NULL)
		return;
	if (memchr(lt + 1, '<', (size_t)(gt - lt - 1)) != NULL ||
	    memchr(lt, '@', (size_t)(gt - lt)) == NULL)
		return;
	/* The timestamp is used in place: cut the line after it. */
	gt[1] = '\0';
	ev->timestamp = lt;
}

/* Parses "n size" (LIST) or "n uid" (UIDL) at S into EV. */
static bool
parse_entry(struct pop3 *p, enum pop3_cmd cmd, char *s, struct pop3_event *ev)
{
	const char *q = skip_sp(s);
	uint64_t n, size;
	char *uid;
	size_t ulen;

	if (!parse_num(&q, POP3_MSGNO_MAX, &n) || n == 0 ||
	    (*q != ' ' && *q != '\t'))
		return false;
	ev->msgno = (unsigned long)n;
	q = skip_sp(q);
	if (cmd == POP3_CMD_LIST) {
		if (!parse_num(&q, UINT64_MAX, &size))
			return false;
		ev->size = size;
		return true;
	}
	uid = s + (q - s);
	ulen = strcspn(uid, " \t");
	uid[ulen] = '\0';
	if (!uid_valid(uid, ulen))
		return false;
	ev->uid = uid;
	return true;
}

/* Handles +OK: the parts specific to the command answered. */
static size_t
status_ok(struct pop3 *p, size_t used, struct pop3_event *ev, char *text)
{
	struct pop3_inflight f = front(p);
	const char *q;
	uint64_t n, size;

	ev->type = POP3_EV_OK;
	if (f.cmd == POP3_CMD_STAT) {
		q = skip_sp(text);
		if (!parse_num(&q, POP3_MSGNO_MAX, &n) ||
		    !parse_num((q = skip_sp(q), &q), UINT64_MAX, &size))
			return fail(p, ev, used, "malformed STAT reply");
		ev->msgno = (unsigned long)n;
		ev->size = size;
	} else if ((f.cmd == POP3_CMD_LIST || f.cmd == POP3_CMD_UIDL) &&
		   f.arg != 0) {
		if (!parse_entry(p, f.cmd, text, ev) || ev->msgno != f.arg)
			return fail(p, ev, used, "malformed %s %lu reply",
			    cmd_names[f.cmd], f.arg);
	}
	if (cmd_multiline(f.cmd, f.arg)) {
		p->in = f.cmd == POP3_CMD_RETR || f.cmd == POP3_CMD_TOP
			    ? IN_DATA
			    : IN_LINES;
		p->ds = D_BOL;
		if (f.cmd == POP3_CMD_CAPA) {
			capa_reset(&p->capa_new);
			p->capa_lines = 0;
		}
		return used;
	}
	pop_front(p);
	if (f.cmd == POP3_CMD_STLS)
		p->in = IN_TLS_WAIT;
	else if (f.cmd == POP3_CMD_QUIT)
		p->in = IN_CLOSED;
	return used;
}

static size_t
feed_status(struct pop3 *p, const char *buf, size_t len, struct pop3_event *ev)
{
	struct pop3_inflight f = front(p);
	char *l, ex[48];
	size_t used;
	int r;

	if ((r = gather(p, buf, len, &used)) <= 0) {
		if (r < 0)
			return fail(p, ev, used,
			    "status line too long or with a NUL byte");
		return used;
	}
	l = p->line;
	p->linelen = 0;
	if (!p->eol_known) {
		p->lf_only = p->line_bare_lf;
		p->eol_known = true;
	}
	if (f.cmd == POP3_CMD_AUTH && l[0] == '+' &&
	    (l[1] == ' ' || l[1] == '\0')) {
		ev->type = POP3_EV_CONTINUE;
		ev->text = l[1] == ' ' ? l + 2 : l + 1;
		return used;
	}
	if (strncasecmp(l, "+OK", 3) == 0 && (l[3] == ' ' || l[3] == '\0')) {
		parse_code(ev, skip_sp(l + 3));
		if (f.cmd == POP3_CMD_GREETING) {
			ev->type = POP3_EV_GREETING;
			ev->ok = true;
			parse_timestamp(p, ev);
			pop_front(p);
			return used;
		}
		return status_ok(p, used, ev, (char *)skip_sp(l + 3));
	}
	if (strncasecmp(l, "-ERR", 4) == 0 && (l[4] == ' ' || l[4] == '\0')) {
		parse_code(ev, skip_sp(l + 4));
		ev->type =
		    f.cmd == POP3_CMD_GREETING ? POP3_EV_GREETING : POP3_EV_ERR;
		pop_front(p);
		return used;
	}
	excerpt(ex, sizeof(ex), l, strlen(l));
	return fail(
	    p, ev, used, "malformed reply to %s: \"%s\"", cmd_names[f.cmd], ex);
}

/* Parses one CAPA line into capa_new. */
static void
capa_line(struct pop3_capa *c, const char *l)
{
	const char *arg = l + strcspn(l, " ");
	size_t n = (size_t)(arg - l);
	const char *q;
	uint64_t v;

	arg = skip_sp(arg);
#define IS(word) (n == strlen(word) && strncasecmp(l, word, n) == 0)
	if (IS("TOP"))
		c->top = true;
	else if (IS("UIDL"))
		c->uidl = true;
	else if (IS("USER"))
		c->user = true;
	else if (IS("STLS"))
		c->stls = true;
	else if (IS("PIPELINING"))
		c->pipelining = true;
	else if (IS("RESP-CODES"))
		c->resp_codes = true;
	else if (IS("AUTH-RESP-CODE"))
		c->auth_resp_code = true;
	else if (IS("UTF8"))
		c->utf8 = true;
	else if (IS("SASL-IR"))
		c->sasl_ir = true;
	else if (IS("SASL"))
		snprintf(c->sasl, sizeof(c->sasl), "%s", arg);
	else if (IS("IMPLEMENTATION"))
		snprintf(
		    c->implementation, sizeof(c->implementation), "%s", arg);
	else if (IS("LOGIN-DELAY")) {
		q = arg;
		if (parse_num(&q, 86400L * 365, &v))
			c->login_delay = (long)v;
	} else if (IS("EXPIRE")) {
		q = arg;
		if (strncasecmp(arg, "NEVER", 5) == 0)
			c->expire = -2;
		else if (parse_num(&q, 36500, &v))
			c->expire = (long)v;
	}
#undef IS
}

static size_t
feed_lines(struct pop3 *p, const char *buf, size_t len, struct pop3_event *ev)
{
	struct pop3_inflight f = front(p);
	char *l;
	size_t used;
	int r;

	if ((r = gather(p, buf, len, &used)) <= 0) {
		if (r < 0)
			return fail(p, ev, used,
			    "%s listing line too long or with a NUL byte",
			    cmd_names[f.cmd]);
		return used;
	}
	l = p->line;
	p->linelen = 0;
	if (l[0] == '.' && l[1] == '\0') {
		ev->type = POP3_EV_END;
		if (f.cmd == POP3_CMD_CAPA)
			p->capa = p->capa_new;
		pop_front(p);
		p->in = IN_STATUS;
		return used;
	}
	if (l[0] == '.')
		l++;
	switch (f.cmd) {
	case POP3_CMD_CAPA:
		if (++p->capa_lines > POP3_CAPA_MAX)
			return fail(p, ev, used, "more than %d CAPA lines",
			    POP3_CAPA_MAX);
		capa_line(&p->capa_new, l);
		ev->type = POP3_EV_CAPA;
		ev->text = l;
		return used;
	case POP3_CMD_LIST:
	case POP3_CMD_UIDL:
		if (!parse_entry(p, f.cmd, l, ev))
			return fail(
			    p, ev, used, "malformed %s line", cmd_names[f.cmd]);
		ev->type = f.cmd == POP3_CMD_LIST ? POP3_EV_LIST : POP3_EV_UIDL;
		return used;
	default:
		break;
	}
	return fail(p, ev, used, "internal: listing for %s", cmd_names[f.cmd]);
}

/* Emits a DATA event of [DATA, DATA+N). */
static void
data_event(struct pop3_event *ev, const char *data, size_t n)
{
	ev->type = POP3_EV_DATA;
	ev->data = data;
	ev->len = n;
}

static size_t
data_end(struct pop3 *p, struct pop3_event *ev, size_t used)
{
	ev->type = POP3_EV_END;
	pop_front(p);
	p->in = IN_STATUS;
	return used;
}

/*
 * Message data: only a '.' at a line start needs lookahead, which the
 * D_BOL_* states carry across calls; the rest goes to data_run(). A line
 * starts after CRLF, or after any LF when the server is LF-only (see
 * pop3.h): a '.' after a bare LF on a CRLF connection is data, kept as it
 * is, because the server did not stuff it and will not end on it.
 */
static size_t
feed_data(struct pop3 *p, const char *buf, size_t len, struct pop3_event *ev)
{
	size_t i = 0;

	while (p->ds != D_MID && p->ds != D_MID_CR) {
		if (i == len)
			return len;
		switch (p->ds) {
		case D_BOL:
			if (buf[i] == '.') {
				p->ds = D_BOL_DOT;
				i++;
			} else
				p->ds = D_MID;
			break;
		case D_BOL_DOT:
			if (buf[i] == '\n' && p->lf_only)
				return data_end(p, ev, i + 1);
			if (buf[i] == '\r') {
				p->ds = D_BOL_DOT_CR;
				i++;
			} else /* RFC 1939: a stuffed dot, dropped */
				p->ds = D_MID;
			break;
		case D_BOL_DOT_CR:
			if (buf[i] == '\n')
				return data_end(p, ev, i + 1);
			/* ".\r" then not LF: the CR is data after a stuffed
			 * dot. */
			p->ds = D_MID_CR;
			data_event(ev, "\r", 1);
			return i;
		case D_MID:
		case D_MID_CR:
			break;
		}
	}
	return data_run(p, buf, len, i, ev);
}

/*
 * Whether the LF at NL in BUF ends a line. The byte before it is in BUF,
 * or it was the last one of the previous call, which D_MID_CR remembers.
 */
static bool
line_ends(const struct pop3 *p, const char *buf, const char *nl)
{
	if (p->lf_only)
		return true;
	return nl > buf ? nl[-1] == '\r' : p->ds == D_MID_CR;
}

/*
 * Inside a line, from BUF+I (I < LEN): the longest run that holds no line
 * starting with '.' goes out as one event pointing into BUF, so the cost
 * is one memchr per line and nothing is copied.
 */
static size_t
data_run(struct pop3 *p, const char *buf, size_t len, size_t i,
    struct pop3_event *ev)
{
	const char *q, *nl, *end = buf + len;

	for (q = buf + i;;) {
		if ((nl = memchr(q, '\n', (size_t)(end - q))) == NULL) {
			p->ds = buf[len - 1] == '\r' ? D_MID_CR : D_MID;
			data_event(ev, buf + i, len - i);
			return len;
		}
		q = nl + 1;
		if (!line_ends(p, buf, nl))
			continue;
		if (q == end || *q == '.') {
			p->ds = D_BOL;
			data_event(ev, buf + i, (size_t)(q - buf) - i);
			return (size_t)(q - buf);
		}
	}
}
