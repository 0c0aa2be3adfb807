/*
 * A POP3 server for load tests: thousands of concurrent sessions on one
 * thread, with mailboxes made up from a seed, so that what a client
 * fetched can be checked without a mail store behind the server.
 *
 *	bench_loadsrv [--host ADDR] [--tls-port N] [--plain-port N]
 *	    [--seed N] [--messages MIN-MAX] [--sizes MIN-MAX] [--latency MS]
 *	    [--password PW] [--tickets N] [--timeout SECS] [--plaintext-login]
 *	    [--cert FILE --key FILE | --write-cert FILE]
 *
 * It listens on ADDR (127.0.0.1 by default) twice: implicit TLS on
 * --tls-port, plain POP3 offering STLS on --plain-port (0, the default:
 * any free port), and prints a first line
 * "listening on ADDR:TLSPORT (tls), ADDR:PLAINPORT (stls), seed N".
 * The certificate is --cert/--key, or else a self-signed one (P-256, for
 * localhost and ADDR) made at start and written to --write-cert for the
 * clients to trust. Any password logs in, unless --password names one.
 * Logging in needs TLS unless --plaintext-login. --latency holds every
 * reply (the greeting too) for MS milliseconds after its command came:
 * pipelined commands wait together, one at a time they wait in turn.
 * --tickets: TLS 1.3 session tickets sent after each handshake (OpenSSL's
 * default, 2; 0 for none).
 *
 * The mailboxes (tests/loadgen.py makes the same bytes, for checking):
 *   B = SHA-256("loadsrv|SEED|USER"); the box holds MIN + be32(B[0..3])
 *   mod (MAX - MIN + 1) messages (--messages, default 1-3).
 *   Message I (0-based): M = SHA-256("loadsrv|SEED|USER|I"); its UIDL is
 *   the lower-case hex of M[0..11], its target size SMIN + be32(M[12..15])
 *   mod (SMAX - SMIN + 1) (--sizes, default 1000-6000). Its header is
 *	From: bench_loadsrv <loadsrv@example.invalid>
 *	To: USER
 *	Subject: message I+1 of COUNT (seed SEED)
 *	Message-ID: <UIDL@loadsrv.invalid>
 *   then an empty line, each line ending in CRLF. The body fills the
 *   target size (at least 2 octets; one more where the last line would be
 *   a lone octet): lines of 76 characters plus CRLF, the last one shorter.
 *   Line J is the base64 of the first 57 octets of D = SHA-512("UIDL|J"),
 *   with its first character turned into "." when D[57] mod 8 is 0 (so
 *   that dot-stuffing is used). LIST gives the size in CRLF octets.
 * Deletions are kept for the life of the process: a later session does
 * not see what an earlier one deleted and QUIT. A box is locked while a
 * session has it open ([IN-USE]).
 *
 * On SIGUSR1, and at exit on SIGTERM or SIGINT, one line on stdout:
 * "stats connections=N open=N peak=N handshakes=N resumed=N failed=N
 * peak_hs_per_s=N logins=N retrieved=N deleted=N bytes=N".
 */
#include <sys/resource.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "bench_clock.h"

/* RFC 2449 allows 255 octets; a client sending more is broken. */
#define LINE_MAX_LEN 512
/* Longer names are refused: they are made by the benchmark, short. */
#define USER_MAX 64
/* Replies queued per session before its input is left unread. */
#define QUEUE_MAX 64
/* Unread input beyond this stops reading from the socket. */
#define READ_HIGH (64 * 1024)
/* A message streams into the output until this much is waiting. */
#define OUT_HIGH (64 * 1024)
#define OUT_LOW	 (16 * 1024)
/* Bounds the per-box arrays; the benchmark uses a handful. */
#define MESSAGES_MAX 1000000
#define SIZE_MAX_MSG (1024ULL * 1024 * 1024)
/* Login attempts before the connection is closed. */
#define AUTH_TRIES  3
#define TEXT_WIDTH  76 /* base64 characters per body line */
#define LINE_OCTETS (TEXT_WIDTH + 2)
#define UID_HEX	    24

struct msg {
	uint64_t size;	/* octets with CRLF line ends, before stuffing */
	uint64_t lines; /* body lines */
	uint32_t last;	/* characters of the last body line */
	uint32_t hlen;	/* header octets, with the empty line */
	bool deleted;	/* by a session that has ended with QUIT */
	char uid[UID_HEX + 1];
};

/* One user's mailbox, made at the first login, kept until exit. */
struct box {
	struct box *next; /* in its hash bucket */
	struct msg *msgs;
	uint32_t count;
	bool locked;
	char user[];
};

/* A queued reply: TEXT, then (for RETR, TOP) a message's body lines. */
struct reply {
	struct reply *next;
	int64_t due; /* CLOCK_MONOTONIC, ns */
	struct evbuffer *text;
	const struct box *box;
	uint32_t index;	      /* the message's, in BOX */
	uint64_t line, lines; /* the next body line, and where to stop */
};

enum conn_state { ST_AUTH, ST_TRANS };

struct conn {
	struct bufferevent *bev; /* TLS or plain; the one to read and write */
	struct bufferevent *raw; /* under bev after STLS, else NULL */
	struct event *timer;
	enum conn_state state;
	bool plain_port, tls, stls, quit, handshaken;
	int tries;
	char user[USER_MAX + 1];
	bool have_user;
	struct box *box;
	uint32_t *map; /* session message number - 1 -> index in box */
	bool *dele;    /* by session message number - 1 */
	uint32_t n;    /* messages in this session */
	struct reply *head, *tail;
	unsigned nreplies;
};

struct options {
	const char *host, *cert, *key, *write_cert, *password;
	int tls_port, plain_port, tickets, timeout;
	unsigned long long seed;
	uint32_t mmin, mmax;
	uint64_t smin, smax;
	int64_t latency; /* ns */
	bool plaintext_login;
};

struct stats {
	unsigned long long connections, open, peak, handshakes, resumed, failed,
	    logins, retrieved, deleted, bytes;
	unsigned long long hs_this_sec, peak_hs;
	int64_t sec;
};

static struct options opt = {
    .host = "127.0.0.1",
    .tickets = -1,
    .timeout = 300,
    .seed = 1,
    .mmin = 1,
    .mmax = 3,
    .smin = 1000,
    .smax = 6000,
};
static struct stats st;
static struct event_base *base;
static SSL_CTX *ssl_ctx;
static EVP_MD *sha256, *sha512;
static struct box **boxes;
/* The listener argument that marks the plain (STLS) port. */
static char plain_tag;
static size_t nbuckets, nboxes;

static void conn_run(struct conn *c);
static void conn_free(struct conn *c);
static void conn_watch(struct conn *c);

static void
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "bench_loadsrv: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	ERR_print_errors_fp(stderr);
	exit(1);
}

/* --- the made-up mailboxes ------------------------------------------------ */

static void
digest(const EVP_MD *md, const char *text, int len, unsigned char *out)
{
	if (EVP_Digest(text, (size_t)len, out, NULL, md, NULL) != 1)
		die("digest failed");
}

static uint32_t
be32(const unsigned char *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

/* Message I's header as sent, with its empty line; its length. */
static int
msg_header(
    const struct box *b, uint32_t i, const char *uid, char *buf, size_t len)
{
	return snprintf(buf, len,
	    "From: bench_loadsrv <loadsrv@example.invalid>\r\n"
	    "To: %s\r\n"
	    "Subject: message %u of %u (seed %llu)\r\n"
	    "Message-ID: <%s@loadsrv.invalid>\r\n"
	    "\r\n",
	    b->user, i + 1, b->count, opt.seed, uid);
}

static void
msg_init(const struct box *b, uint32_t i, struct msg *m)
{
	char text[USER_MAX + 64], hdr[USER_MAX + 256];
	unsigned char d[EVP_MAX_MD_SIZE];
	uint64_t target, body;
	int n;

	n = snprintf(
	    text, sizeof(text), "loadsrv|%llu|%s|%u", opt.seed, b->user, i);
	digest(sha256, text, n, d);
	for (n = 0; n < UID_HEX / 2; n++)
		snprintf(m->uid + 2 * n, 3, "%02x", d[n]);
	target = opt.smin + be32(d + 12) % (opt.smax - opt.smin + 1);
	m->hlen = (uint32_t)msg_header(b, i, m->uid, hdr, sizeof(hdr));
	body = target > m->hlen + 2 ? target - m->hlen : 2;
	/* A last line of one octet could not end in CRLF. */
	if (body % LINE_OCTETS == 1)
		body++;
	m->lines = (body + LINE_OCTETS - 1) / LINE_OCTETS;
	m->last = (uint32_t)(body - LINE_OCTETS * (m->lines - 1) - 2);
	m->size = m->hlen + body;
	m->deleted = false;
}

/* Body line J of message M, unstuffed, without CRLF; its length. */
static size_t
msg_line(const struct msg *m, uint64_t j, char *buf)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	char text[UID_HEX + 32];
	int n;

	n = snprintf(
	    text, sizeof(text), "%s|%llu", m->uid, (unsigned long long)j);
	digest(sha512, text, n, d);
	EVP_EncodeBlock((unsigned char *)buf, d, 57);
	if (d[57] % 8 == 0)
		buf[0] = '.';
	return j + 1 == m->lines ? m->last : TEXT_WIDTH;
}

static uint64_t
hash_name(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ULL;
	}
	return h;
}

static void
boxes_grow(void)
{
	size_t n = nbuckets != 0 ? nbuckets * 2 : 4096, i;
	struct box **t, *b;

	if ((t = calloc(n, sizeof(*t))) == NULL)
		die("out of memory");
	for (i = 0; i < nbuckets; i++)
		while ((b = boxes[i]) != NULL) {
			boxes[i] = b->next;
			b->next = t[hash_name(b->user) & (n - 1)];
			t[hash_name(b->user) & (n - 1)] = b;
		}
	free(boxes);
	boxes = t;
	nbuckets = n;
}

/* USER's box, made when first asked for. */
static struct box *
box_get(const char *user)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	char text[USER_MAX + 32];
	struct box *b, **bucket;
	uint32_t i;
	int n;

	if (nboxes >= nbuckets)
		boxes_grow();
	bucket = &boxes[hash_name(user) & (nbuckets - 1)];
	for (b = *bucket; b != NULL; b = b->next)
		if (strcmp(b->user, user) == 0)
			return b;
	if ((b = calloc(1, sizeof(*b) + strlen(user) + 1)) == NULL)
		die("out of memory");
	strcpy(b->user, user);
	n = snprintf(text, sizeof(text), "loadsrv|%llu|%s", opt.seed, user);
	digest(sha256, text, n, d);
	b->count = opt.mmin + be32(d) % (opt.mmax - opt.mmin + 1);
	if (b->count > 0 &&
	    (b->msgs = calloc(b->count, sizeof(*b->msgs))) == NULL)
		die("out of memory");
	for (i = 0; i < b->count; i++)
		msg_init(b, i, &b->msgs[i]);
	b->next = *bucket;
	*bucket = b;
	nboxes++;
	return b;
}

/* --- replies -------------------------------------------------------------- */

static struct reply *
reply_new(struct conn *c)
{
	struct reply *r;

	if ((r = calloc(1, sizeof(*r))) == NULL ||
	    (r->text = evbuffer_new()) == NULL)
		die("out of memory");
	r->due = clock_ns() + opt.latency;
	if (c->tail != NULL)
		c->tail->next = r;
	else
		c->head = r;
	c->tail = r;
	c->nreplies++;
	return r;
}

static void
reply(struct conn *c, const char *fmt, ...)
{
	struct reply *r = reply_new(c);
	va_list ap;

	va_start(ap, fmt);
	evbuffer_add_vprintf(r->text, fmt, ap);
	va_end(ap);
	evbuffer_add(r->text, "\r\n", 2);
}

static void
reply_free(struct reply *r)
{
	evbuffer_free(r->text);
	free(r);
}

/*
 * Moves R into OUT as far as OUT_HIGH allows: its text, then its body
 * lines, dot-stuffed, then the final dot. True when all of R is out.
 */
static bool
reply_emit(struct reply *r, struct evbuffer *out)
{
	const struct msg *m;
	char line[TEXT_WIDTH + 8];
	size_t n;

	evbuffer_add_buffer(out, r->text);
	if (r->box == NULL)
		return true;
	m = &r->box->msgs[r->index];
	while (r->line < r->lines && evbuffer_get_length(out) < OUT_HIGH) {
		line[0] = '.';
		n = msg_line(m, r->line, line + 1);
		memcpy(line + 1 + n, "\r\n", 2);
		if (line[1] == '.' && n > 0)
			evbuffer_add(out, line, n + 3);
		else
			evbuffer_add(out, line + 1, n + 2);
		r->line++;
	}
	if (r->line < r->lines)
		return false;
	evbuffer_add(out, ".\r\n", 3);
	return true;
}

/* Sends the replies that are due, as far as the output has room. */
static void
conn_pump(struct conn *c)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct timeval tv;
	struct reply *r;
	int64_t now = clock_ns(), us;

	while ((r = c->head) != NULL && r->due <= now &&
	       evbuffer_get_length(out) < OUT_HIGH) {
		if (!reply_emit(r, out))
			break;
		if ((c->head = r->next) == NULL)
			c->tail = NULL;
		c->nreplies--;
		reply_free(r);
	}
	if (c->head != NULL && c->head->due > now) {
		us = (c->head->due - now + 999) / 1000;
		tv.tv_sec = us / 1000000;
		tv.tv_usec = us % 1000000;
		evtimer_add(c->timer, &tv);
	}
}

/* --- the commands --------------------------------------------------------- */

/* Session message number ARG, as an index into c->map; -1 after -ERR. */
static long
msg_arg(struct conn *c, const char *arg)
{
	unsigned long v;
	char *end;

	errno = 0;
	v = arg != NULL ? strtoul(arg, &end, 10) : 0;
	if (arg == NULL || errno != 0 || end == arg ||
	    (*end != '\0' && *end != ' ')) {
		reply(c, "-ERR message number required");
		return -1;
	}
	if (v == 0 || v > c->n || c->dele[v - 1]) {
		reply(c, "-ERR no such message");
		return -1;
	}
	return (long)(v - 1);
}

static const struct msg *
sess_msg(const struct conn *c, long k)
{
	return &c->box->msgs[c->map[k]];
}

static void
cmd_capa(struct conn *c, char *arg)
{
	bool login = c->state == ST_AUTH &&
		     (c->tls || opt.plaintext_login || !c->plain_port);

	reply(c,
	    "+OK capabilities follow\r\n%s%s"
	    "UIDL\r\nTOP\r\nPIPELINING\r\nRESP-CODES\r\n"
	    "IMPLEMENTATION bench_loadsrv\r\n.",
	    login ? "USER\r\n" : "",
	    c->plain_port && !c->tls && c->state == ST_AUTH ? "STLS\r\n" : "");
}

static void
cmd_stls(struct conn *c, char *arg)
{
	if (!c->plain_port || c->tls || c->have_user) {
		reply(c, "-ERR STLS not available now");
		return;
	}
	reply(c, "+OK begin TLS");
	c->stls = true;
}

static bool
valid_user(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > USER_MAX)
		return false;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("._-@+", *s) == NULL)
			return false;
	return true;
}

static void
cmd_user(struct conn *c, char *arg)
{
	if (c->plain_port && !c->tls && !opt.plaintext_login) {
		reply(c, "-ERR [AUTH] STLS first");
		return;
	}
	if (arg == NULL || !valid_user(arg)) {
		reply(c, "-ERR [AUTH] no such user");
		return;
	}
	strcpy(c->user, arg);
	c->have_user = true;
	reply(c, "+OK send PASS");
}

/* Opens the session's view of the box: the messages not yet deleted. */
static void
sess_open(struct conn *c, struct box *b)
{
	uint32_t i;

	c->box = b;
	b->locked = true;
	if ((c->map = calloc(b->count + 1, sizeof(*c->map))) == NULL ||
	    (c->dele = calloc(b->count + 1, sizeof(*c->dele))) == NULL)
		die("out of memory");
	for (i = 0; i < b->count; i++)
		if (!b->msgs[i].deleted)
			c->map[c->n++] = i;
	c->state = ST_TRANS;
	st.logins++;
}

static void
cmd_pass(struct conn *c, char *arg)
{
	struct box *b;

	if (!c->have_user) {
		reply(c, "-ERR USER first");
		return;
	}
	c->have_user = false;
	if (opt.password != NULL &&
	    (arg == NULL || strcmp(arg, opt.password) != 0)) {
		reply(c, "-ERR [AUTH] wrong password");
		if (++c->tries >= AUTH_TRIES)
			c->quit = true;
		return;
	}
	b = box_get(c->user);
	if (b->locked) {
		reply(c, "-ERR [IN-USE] mailbox in use");
		return;
	}
	sess_open(c, b);
	reply(c, "+OK %u messages", c->n);
}

static void
cmd_stat(struct conn *c, char *arg)
{
	uint64_t size = 0;
	uint32_t k, n = 0;

	for (k = 0; k < c->n; k++)
		if (!c->dele[k]) {
			n++;
			size += sess_msg(c, k)->size;
		}
	reply(c, "+OK %u %llu", n, (unsigned long long)size);
}

/* LIST and UIDL: one message, or all of them with SIZES or UIDs. */
static void
cmd_listing(struct conn *c, char *arg, bool sizes)
{
	struct reply *r;
	const struct msg *m;
	uint32_t k;
	long one;

	if (arg != NULL) {
		if ((one = msg_arg(c, arg)) < 0)
			return;
		m = sess_msg(c, one);
		if (sizes)
			reply(c, "+OK %ld %llu", one + 1,
			    (unsigned long long)m->size);
		else
			reply(c, "+OK %ld %s", one + 1, m->uid);
		return;
	}
	r = reply_new(c);
	evbuffer_add_printf(r->text, "+OK\r\n");
	for (k = 0; k < c->n; k++) {
		if (c->dele[k])
			continue;
		m = sess_msg(c, k);
		if (sizes)
			evbuffer_add_printf(r->text, "%u %llu\r\n", k + 1,
			    (unsigned long long)m->size);
		else
			evbuffer_add_printf(
			    r->text, "%u %s\r\n", k + 1, m->uid);
	}
	evbuffer_add(r->text, ".\r\n", 3);
}

static void
cmd_list(struct conn *c, char *arg)
{
	cmd_listing(c, arg, true);
}

static void
cmd_uidl(struct conn *c, char *arg)
{
	cmd_listing(c, arg, false);
}

/* RETR (LINES: all) and TOP: the header, then the body as it is sent. */
static void
send_msg(struct conn *c, long k, uint64_t lines)
{
	const struct msg *m = sess_msg(c, k);
	char hdr[USER_MAX + 256];
	struct reply *r = reply_new(c);

	evbuffer_add_printf(
	    r->text, "+OK %llu octets\r\n", (unsigned long long)m->size);
	msg_header(c->box, c->map[k], m->uid, hdr, sizeof(hdr));
	evbuffer_add(r->text, hdr, m->hlen);
	r->box = c->box;
	r->index = c->map[k];
	r->lines = lines < m->lines ? lines : m->lines;
}

static void
cmd_retr(struct conn *c, char *arg)
{
	long k;

	if ((k = msg_arg(c, arg)) < 0)
		return;
	send_msg(c, k, UINT64_MAX);
	st.retrieved++;
	st.bytes += sess_msg(c, k)->size;
}

static void
cmd_top(struct conn *c, char *arg)
{
	unsigned long long lines;
	char *sp, *end;
	long k;

	if ((k = msg_arg(c, arg)) < 0)
		return;
	errno = 0;
	sp = strchr(arg, ' ');
	lines = sp != NULL ? strtoull(sp + 1, &end, 10) : 0;
	if (sp == NULL || errno != 0 || end == sp + 1 || *end != '\0') {
		reply(c, "-ERR TOP needs a message and a line count");
		return;
	}
	send_msg(c, k, lines);
}

static void
cmd_dele(struct conn *c, char *arg)
{
	long k;

	if ((k = msg_arg(c, arg)) < 0)
		return;
	c->dele[k] = true;
	reply(c, "+OK message %ld deleted", k + 1);
}

static void
cmd_rset(struct conn *c, char *arg)
{
	memset(c->dele, 0, c->n * sizeof(*c->dele));
	reply(c, "+OK");
}

static void
cmd_noop(struct conn *c, char *arg)
{
	reply(c, "+OK");
}

/* The deletions of the session take effect (RFC 1939's UPDATE state). */
static void
cmd_quit(struct conn *c, char *arg)
{
	uint32_t k, n = 0;

	if (c->state == ST_TRANS) {
		for (k = 0; k < c->n; k++)
			if (c->dele[k]) {
				c->box->msgs[c->map[k]].deleted = true;
				n++;
			}
		st.deleted += n;
		c->box->locked = false;
		c->box = NULL;
	}
	reply(c, "+OK bye, %u deleted", n);
	c->quit = true;
}

#define IN_AUTH	 1
#define IN_TRANS 2

static const struct command {
	const char *name;
	int when;
	void (*fn)(struct conn *, char *);
} commands[] = {
    {"CAPA", IN_AUTH | IN_TRANS, cmd_capa},
    {"STLS", IN_AUTH, cmd_stls},
    {"USER", IN_AUTH, cmd_user},
    {"PASS", IN_AUTH, cmd_pass},
    {"STAT", IN_TRANS, cmd_stat},
    {"LIST", IN_TRANS, cmd_list},
    {"UIDL", IN_TRANS, cmd_uidl},
    {"RETR", IN_TRANS, cmd_retr},
    {"TOP", IN_TRANS, cmd_top},
    {"DELE", IN_TRANS, cmd_dele},
    {"RSET", IN_TRANS, cmd_rset},
    {"NOOP", IN_TRANS, cmd_noop},
    {"QUIT", IN_AUTH | IN_TRANS, cmd_quit},
};

static void
command(struct conn *c, char *line)
{
	char *arg = strchr(line, ' ');
	size_t i;

	if (arg != NULL)
		*arg++ = '\0';
	for (i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		if (strcasecmp(line, commands[i].name) != 0)
			continue;
		if (!(commands[i].when &
			(c->state == ST_AUTH ? IN_AUTH : IN_TRANS)))
			reply(c, "-ERR not in this state");
		else
			commands[i].fn(c, arg);
		return;
	}
	reply(c, "-ERR unknown command");
}

enum run { RUN_IDLE, RUN_FULL, RUN_BAD };

/*
 * Runs the complete lines of input while replies may be queued: RUN_FULL
 * when the queue filled up first, RUN_BAD when the session is to end now
 * (a line too long).
 */
static enum run
conn_commands(struct conn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer_ptr eol;
	char line[LINE_MAX_LEN + 1];
	size_t len;

	while (!c->quit && !c->stls) {
		if (c->nreplies >= QUEUE_MAX)
			return RUN_FULL;
		eol = evbuffer_search_eol(in, NULL, &len, EVBUFFER_EOL_CRLF);
		if (eol.pos < 0)
			return evbuffer_get_length(in) > LINE_MAX_LEN
				   ? RUN_BAD
				   : RUN_IDLE;
		if ((size_t)eol.pos > LINE_MAX_LEN)
			return RUN_BAD;
		evbuffer_remove(in, line, (size_t)eol.pos);
		evbuffer_drain(in, len);
		line[eol.pos] = '\0';
		command(c, line);
	}
	return RUN_IDLE;
}

/* --- connections ---------------------------------------------------------- */

static void
on_read(struct bufferevent *bev, void *arg)
{
	conn_run(arg);
}

static void
on_write(struct bufferevent *bev, void *arg)
{
	conn_run(arg);
}

static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	conn_run(arg);
}

static void
count_handshake(struct conn *c)
{
	int64_t sec = clock_ns() / 1000000000;

	c->handshaken = true;
	st.handshakes++;
	if (SSL_session_reused(bufferevent_openssl_get_ssl(c->bev)))
		st.resumed++;
	if (sec != st.sec) {
		st.sec = sec;
		st.hs_this_sec = 0;
	}
	if (++st.hs_this_sec > st.peak_hs)
		st.peak_hs = st.hs_this_sec;
}

static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;

	if (what & BEV_EVENT_CONNECTED) {
		count_handshake(c);
		return;
	}
	if (c->tls && !c->handshaken)
		st.failed++;
	ERR_clear_error();
	conn_free(c);
}

static void
conn_watch(struct conn *c)
{
	struct timeval tv = {.tv_sec = opt.timeout};

	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_setwatermark(c->bev, EV_READ, 0, READ_HIGH);
	bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW, 0);
	bufferevent_set_timeouts(c->bev, &tv, &tv);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
}

/*
 * The STLS upgrade, once "+OK" is in the output: what the client sent
 * after STLS is dropped (RFC 2595), TLS runs over the plain connection.
 */
static void
conn_start_tls(struct conn *c)
{
	struct bufferevent *tls;
	SSL *ssl;

	evbuffer_drain(bufferevent_get_input(c->bev),
	    evbuffer_get_length(bufferevent_get_input(c->bev)));
	if ((ssl = SSL_new(ssl_ctx)) == NULL)
		die("SSL_new failed");
	tls = bufferevent_openssl_filter_new(base, c->bev, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (tls == NULL)
		die("bufferevent_openssl_filter_new failed");
	c->raw = c->bev;
	c->bev = tls;
	c->tls = true;
	c->stls = false;
	conn_watch(c);
}

/* Pending output in both layers: after QUIT, the close waits for it. */
static size_t
conn_unsent(const struct conn *c)
{
	size_t n = evbuffer_get_length(bufferevent_get_output(c->bev));

	if (c->raw != NULL)
		n += evbuffer_get_length(bufferevent_get_output(c->raw));
	return n;
}

/* Whatever woke the session: new input, room in the output, a timer. */
static void
conn_run(struct conn *c)
{
	static const struct timeval soon = {0, 5000};
	enum run r;

	/* Replies sent at once make room for the lines still waiting. */
	do {
		r = conn_commands(c);
		conn_pump(c);
	} while (r == RUN_FULL && c->nreplies < QUEUE_MAX);
	if (r == RUN_BAD) {
		conn_free(c);
		return;
	}
	if (c->head != NULL)
		return;
	if (c->stls)
		conn_start_tls(c);
	else if (c->quit && conn_unsent(c) == 0)
		conn_free(c);
	else if (c->quit)
		evtimer_add(c->timer, &soon);
}

static void
conn_free(struct conn *c)
{
	struct reply *r;

	if (c->box != NULL)
		c->box->locked = false;
	while ((r = c->head) != NULL) {
		c->head = r->next;
		reply_free(r);
	}
	if (c->tls && c->quit) {
		SSL_shutdown(bufferevent_openssl_get_ssl(c->bev));
		ERR_clear_error();
	}
	bufferevent_free(c->bev);
	event_free(c->timer);
	free(c->map);
	free(c->dele);
	free(c);
	st.open--;
}

static void
on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	bool plain = arg == &plain_tag;
	struct conn *c;
	SSL *ssl = NULL;
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->timer = evtimer_new(base, on_timer, c)) == NULL)
		die("out of memory");
	c->plain_port = plain;
	c->tls = !plain;
	if (plain)
		c->bev =
		    bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	else if ((ssl = SSL_new(ssl_ctx)) != NULL)
		c->bev = bufferevent_openssl_socket_new(base, fd, ssl,
		    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (c->bev == NULL)
		die("cannot make a bufferevent");
	if (++st.open > st.peak)
		st.peak = st.open;
	st.connections++;
	conn_watch(c);
	reply(c, "+OK bench_loadsrv ready");
	conn_pump(c);
}

static void
on_accept_error(struct evconnlistener *l, void *arg)
{
	/* EMFILE and the like: say so, and go on with the others. */
	fprintf(stderr, "bench_loadsrv: accept: %s\n", strerror(errno));
}

/* --- TLS ------------------------------------------------------------------ */

static void
add_ext(X509 *x, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value)) == NULL ||
	    X509_add_ext(x, ext, -1) != 1)
		die("cannot add extension %s", value);
	X509_EXTENSION_free(ext);
}

/* A self-signed certificate for localhost and the listening address. */
static X509 *
cert_make(EVP_PKEY *key)
{
	unsigned char serial[8];
	char san[128];
	X509 *x;
	X509_NAME *name;
	struct in6_addr a6;

	if ((x = X509_new()) == NULL || RAND_bytes(serial, 8) != 1)
		die("cannot make a certificate");
	serial[0] &= 0x7f;
	X509_set_version(x, 2);
	ASN1_INTEGER_set_uint64(X509_get_serialNumber(x), be32(serial));
	X509_gmtime_adj(X509_getm_notBefore(x), -86400);
	X509_gmtime_adj(X509_getm_notAfter(x), 30L * 86400);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)"localhost", -1, -1, 0);
	X509_set_issuer_name(x, name);
	if (inet_pton(AF_INET, opt.host, &a6) == 1 ||
	    inet_pton(AF_INET6, opt.host, &a6) == 1)
		snprintf(san, sizeof(san), "DNS:localhost,IP:%s", opt.host);
	else
		snprintf(san, sizeof(san), "DNS:localhost,DNS:%s", opt.host);
	add_ext(x, NID_subject_alt_name, san);
	add_ext(x, NID_basic_constraints, "critical,CA:TRUE");
	add_ext(x, NID_subject_key_identifier, "hash");
	if (X509_sign(x, key, EVP_sha256()) == 0)
		die("cannot sign the certificate");
	return x;
}

static void
cert_write(X509 *x, const char *path)
{
	char tmp[PATH_MAX];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "w")) == NULL)
		die("%s: %s", tmp, strerror(errno));
	if (PEM_write_X509(f, x) != 1 || fclose(f) != 0 ||
	    rename(tmp, path) == -1)
		die("cannot write %s", path);
}

static void
tls_init(void)
{
	EVP_PKEY *key;
	X509 *x;

	if ((ssl_ctx = SSL_CTX_new(TLS_server_method())) == NULL)
		die("SSL_CTX_new failed");
	SSL_CTX_set_min_proto_version(ssl_ctx, TLS1_2_VERSION);
	/* Idle sessions give their buffers back: thousands are open. */
	SSL_CTX_set_mode(ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
	if (opt.tickets >= 0)
		SSL_CTX_set_num_tickets(ssl_ctx, (size_t)opt.tickets);
	if (opt.cert != NULL) {
		if (SSL_CTX_use_certificate_chain_file(ssl_ctx, opt.cert) !=
			1 ||
		    SSL_CTX_use_PrivateKey_file(
			ssl_ctx, opt.key, SSL_FILETYPE_PEM) != 1)
			die("cannot load %s and %s", opt.cert, opt.key);
		return;
	}
	if ((key = EVP_EC_gen("P-256")) == NULL)
		die("cannot make a key");
	x = cert_make(key);
	if (SSL_CTX_use_certificate(ssl_ctx, x) != 1 ||
	    SSL_CTX_use_PrivateKey(ssl_ctx, key) != 1)
		die("cannot use the certificate");
	if (opt.write_cert != NULL)
		cert_write(x, opt.write_cert);
	X509_free(x);
	EVP_PKEY_free(key);
}

/* --- start-up ------------------------------------------------------------- */

static void
print_stats(void)
{
	printf("stats connections=%llu open=%llu peak=%llu handshakes=%llu "
	       "resumed=%llu failed=%llu peak_hs_per_s=%llu logins=%llu "
	       "retrieved=%llu deleted=%llu bytes=%llu\n",
	    st.connections, st.open, st.peak, st.handshakes, st.resumed,
	    st.failed, st.peak_hs, st.logins, st.retrieved, st.deleted,
	    st.bytes);
	fflush(stdout);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	if (sig == SIGUSR1)
		print_stats();
	else
		event_base_loopbreak(base);
}

static struct evconnlistener *
listen_on(int *port, void *arg)
{
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t len = sizeof(ss);
	struct evconnlistener *l;

	if (inet_pton(AF_INET, opt.host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)*port);
		len = sizeof(*sin);
	} else if (inet_pton(AF_INET6, opt.host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)*port);
		len = sizeof(*sin6);
	} else
		die("--host %s: not an IP address", opt.host);
	l = evconnlistener_new_bind(base, on_accept, arg,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
	    4096, (struct sockaddr *)&ss, (int)len);
	if (l == NULL)
		die("cannot listen on %s:%d: %s", opt.host, *port,
		    strerror(errno));
	evconnlistener_set_error_cb(l, on_accept_error);
	len = sizeof(ss);
	getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&ss, &len);
	*port =
	    ntohs(ss.ss_family == AF_INET ? sin->sin_port : sin6->sin6_port);
	return l;
}

/* As many descriptors as the hard limit allows: a socket per session. */
static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: bench_loadsrv [--host ADDR] [--tls-port N]\n"
	    "    [--plain-port N] [--seed N] [--messages MIN-MAX]\n"
	    "    [--sizes MIN-MAX] [--latency MS] [--password PW]\n"
	    "    [--tickets N] [--timeout SECS] [--plaintext-login]\n"
	    "    [--cert FILE --key FILE | --write-cert FILE]\n");
	exit(2);
}

/* "MIN-MAX" (or "N") into *LO and *HI, within [0, LIMIT]. */
static void
parse_range(const char *s, uint64_t limit, uint64_t *lo, uint64_t *hi)
{
	unsigned long long a, b;
	char *end;

	errno = 0;
	a = strtoull(s, &end, 10);
	b = *end == '-' ? strtoull(end + 1, &end, 10) : a;
	if (errno != 0 || *end != '\0' || a > b || b > limit)
		die("bad range %s (0 <= MIN <= MAX <= %llu)", s,
		    (unsigned long long)limit);
	*lo = a;
	*hi = b;
}

static long
parse_num(const char *s, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		die("bad number %s (%ld to %ld)", s, lo, hi);
	return v;
}

/* One option of the command line. */
static void
set_option(int ch, char *arg)
{
	uint64_t lo, hi;

	switch (ch) {
	case 'h':
		opt.host = arg;
		break;
	case 't':
		opt.tls_port = (int)parse_num(arg, 0, 65535);
		break;
	case 'p':
		opt.plain_port = (int)parse_num(arg, 0, 65535);
		break;
	case 's':
		opt.seed = (unsigned long long)parse_num(arg, 0, LONG_MAX);
		break;
	case 'm':
		parse_range(arg, MESSAGES_MAX, &lo, &hi);
		opt.mmin = (uint32_t)lo;
		opt.mmax = (uint32_t)hi;
		break;
	case 'z':
		parse_range(arg, SIZE_MAX_MSG, &opt.smin, &opt.smax);
		break;
	case 'l':
		opt.latency = parse_num(arg, 0, 3600000) * 1000000;
		break;
	case 'P':
		opt.password = arg;
		break;
	case 'T':
		opt.tickets = (int)parse_num(arg, 0, 16);
		break;
	case 'o':
		opt.timeout = (int)parse_num(arg, 1, 86400);
		break;
	case 'x':
		opt.plaintext_login = true;
		break;
	case 'c':
		opt.cert = arg;
		break;
	case 'k':
		opt.key = arg;
		break;
	case 'w':
		opt.write_cert = arg;
		break;
	default:
		usage();
	}
}

static void
parse_options(int argc, char **argv)
{
	static const struct option longs[] = {
	    {"host", required_argument, NULL, 'h'},
	    {"tls-port", required_argument, NULL, 't'},
	    {"plain-port", required_argument, NULL, 'p'},
	    {"seed", required_argument, NULL, 's'},
	    {"messages", required_argument, NULL, 'm'},
	    {"sizes", required_argument, NULL, 'z'},
	    {"latency", required_argument, NULL, 'l'},
	    {"password", required_argument, NULL, 'P'},
	    {"tickets", required_argument, NULL, 'T'},
	    {"timeout", required_argument, NULL, 'o'},
	    {"plaintext-login", no_argument, NULL, 'x'},
	    {"cert", required_argument, NULL, 'c'},
	    {"key", required_argument, NULL, 'k'},
	    {"write-cert", required_argument, NULL, 'w'},
	    {NULL, 0, NULL, 0},
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1)
		set_option(ch, optarg);
	if (optind != argc || (opt.cert == NULL) != (opt.key == NULL) ||
	    (opt.cert != NULL && opt.write_cert != NULL))
		usage();
}

int
main(int argc, char **argv)
{
	struct evconnlistener *ltls, *lplain;
	struct event *sigs[3];
	static const int signums[3] = {SIGTERM, SIGINT, SIGUSR1};
	int i;

	parse_options(argc, argv);
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	if ((sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL ||
	    (sha512 = EVP_MD_fetch(NULL, "SHA512", NULL)) == NULL)
		die("no SHA-2 in this OpenSSL");
	tls_init();
	if ((base = event_base_new()) == NULL)
		die("event_base_new failed");
	ltls = listen_on(&opt.tls_port, NULL);
	lplain = listen_on(&opt.plain_port, &plain_tag);
	for (i = 0; i < 3; i++)
		if ((sigs[i] = evsignal_new(
			 base, signums[i], on_signal, NULL)) == NULL ||
		    evsignal_add(sigs[i], NULL) == -1)
			die("cannot catch signals");
	printf("listening on %s:%d (tls), %s:%d (stls), seed %llu\n", opt.host,
	    opt.tls_port, opt.host, opt.plain_port, opt.seed);
	fflush(stdout);
	event_base_dispatch(base);
	print_stats();
	evconnlistener_free(ltls);
	evconnlistener_free(lplain);
	for (i = 0; i < 3; i++)
		event_free(sigs[i]);
	return 0;
}
