/*
 * The network-only reference of bench/bench.py: what a poll costs the
 * server and the transport alone, with nothing written anywhere.
 *
 *	bench_netref [-t implicit|plain] [-c CA_FILE] [-n CONCURRENCY]
 *	    [-d DIGEST_FILE] HOST PORT ACCOUNTS
 *
 * ACCOUNTS holds one account a line, "USER<TAB>PASSWORD". Up to
 * CONCURRENCY of them (default 1) are polled at once, the next starting
 * as one ends. Each poll says on the wire what popfetchd's says, over the
 * same libraries with the same settings (libevent's OpenSSL filter on a
 * socket bufferevent, TLS 1.2 or later, the server's certificate checked
 * against CA_FILE, or the system's store, and its name or address):
 * greeting, CAPA, USER and PASS, STAT, UIDL and LIST, then RETR of every
 * message within popfetchd's window, each message's DELE sent as its data
 * ends, QUIT. Commands are pipelined when the server offers PIPELINING,
 * as popfetchd does. Message data is not kept: it is scanned for its end
 * and counted in the form a Maildir holds (dot-stuffing undone, CRLF as
 * LF). With -d, the SHA-256 of each message in that form goes to
 * DIGEST_FILE as "USER MSGNO HEX" lines (for tests).
 *
 * Prints one line of key=value fields (accounts, failed, messages,
 * wire_bytes: RETR data as sent, mail_bytes: as a Maildir would hold it,
 * wall, user, sys: seconds) and exits 0, or 1 if an account failed (each
 * failure on stderr, naming the account), 2 on a usage error.
 */
#include <sys/resource.h>
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netdb.h>

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "bench_clock.h"

/*
 * popfetchd's own bounds (daemon/session_priv.h SESSION_WINDOW and
 * SESSION_INFLIGHT_BYTES, daemon/net.c NET_READ_HIGH), so that the
 * reference keeps the same number of requests and bytes in flight.
 */
#define WINDOW	       256
#define INFLIGHT_BYTES (8u << 20)
#define READ_HIGH      (256 * 1024)
/* A status or listing line longer than this is not a POP3 server's. */
#define LINE_MAX_LEN 4096
/* No reply for this long fails the account (never hang). */
#define TIMEOUT_SECS 120
/* Messages per mailbox, at most: bounds the sizes array. */
#define MSGS_MAX 10000000UL
/* Server text in an error message, at most (escaped). */
#define SHOWN_MAX 160

enum cmd {
	C_CAPA,
	C_USER,
	C_PASS,
	C_STAT,
	C_UIDL,
	C_LIST,
	C_RETR,
	C_DELE,
	C_QUIT
};

struct account {
	char *user, *pass;
};

/* Where a line-start check stands in message data (see body_feed). */
enum bol { B_MID, B_START, B_DOT, B_DOTCR };

/* The scan of one message's data. */
struct body {
	enum bol at;
	bool cr_held; /* a CR ended the last chunk; its meaning waits */
	uint64_t wire, mail;
	EVP_MD_CTX *md; /* -d only */
};

struct sent {
	enum cmd cmd;
	unsigned long msg;
};

struct run;

struct sess {
	struct run *run;
	const struct account *a;
	struct bufferevent *bev;
	bool greeted, pipelining, multi, in_body, ended;
	struct sent q[WINDOW + 8]; /* sent, not answered, oldest first */
	size_t qhead, qlen, window;
	unsigned long nmsgs, next_retr, retrs_done, next_dele, deles_done;
	unsigned retrs_out;
	uint64_t *sizes, bytes_out;
	struct body body;
};

struct run {
	struct event_base *base;
	SSL_CTX *ctx; /* NULL: plain text */
	const char *host;
	struct addrinfo *addr;
	struct account *accts;
	size_t naccts, next, active, conc, failed;
	unsigned long long messages, wire, mail;
	FILE *digests;
};

static void sess_start(struct run *, const struct account *);
static void sess_fail(struct sess *, const char *, ...)
    __attribute__((format(printf, 2, 3)));
static void sess_send(struct sess *, enum cmd, unsigned long);
static void pump(struct sess *);
static void sess_end(struct sess *);

static void
die(const char *what)
{
	fprintf(stderr, "bench_netref: %s\n", what);
	exit(1);
}

/* Server bytes made safe to print: \xNN outside 0x20-0x7E, cut short. */
static void
escape(const char *s, size_t len, char *out, size_t outlen)
{
	size_t i, o = 0;
	unsigned char c;

	for (i = 0; i < len && o + 5 < outlen && i < SHOWN_MAX; i++) {
		c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && c != '\\')
			out[o++] = (char)c;
		else
			o +=
			    (size_t)snprintf(out + o, outlen - o, "\\x%02X", c);
	}
	if (i < len && o + 4 < outlen)
		o += (size_t)snprintf(out + o, outlen - o, "...");
	out[o] = '\0';
}

/* ---- message data ---- */

static void
emit(struct body *b, const char *p, size_t len)
{
	b->mail += len;
	if (b->md != NULL && len > 0)
		EVP_DigestUpdate(b->md, p, len);
}

/*
 * Scans P[0..LEN) of message data: what comes before a line's LF is
 * content (a CR right before the LF is the wire's, dropped), a dot
 * starting a line is stuffing (dropped) unless the line is "." alone,
 * which ends the data. Returns the bytes used; *END set at the end.
 */
static size_t
body_feed(struct body *b, const char *p, size_t len, bool *end)
{
	const char *lf;
	size_t i = 0, run;

	while (i < len) {
		switch (b->at) {
		case B_START:
			b->at = B_MID;
			if (p[i] == '.') {
				b->at = B_DOT;
				i++;
			}
			continue;
		case B_DOT:
			/* A dot before anything but CR is stuffing. */
			b->at = B_MID;
			if (p[i] == '\r') {
				b->at = B_DOTCR;
				i++;
			}
			continue;
		case B_DOTCR:
			if (p[i] == '\n') {
				*end = true;
				b->wire += i + 1;
				return i + 1;
			}
			b->cr_held = true; /* ".\rX": the dot was stuffing */
			b->at = B_MID;
			continue;
		case B_MID:
			break;
		}
		if (b->cr_held) {
			b->cr_held = false;
			if (p[i] != '\n')
				emit(b, "\r", 1);
		}
		if ((lf = memchr(p + i, '\n', len - i)) == NULL) {
			run = len - i;
			b->cr_held = p[len - 1] == '\r';
			emit(b, p + i, run - b->cr_held);
			i = len;
			break;
		}
		run = (size_t)(lf - (p + i));
		emit(b, p + i, run > 0 && lf[-1] == '\r' ? run - 1 : run);
		emit(b, "\n", 1);
		i += run + 1;
		b->at = B_START;
	}
	b->wire += len;
	return len;
}

/* ---- replies ---- */

static struct sent *
head(struct sess *s)
{
	return s->qlen > 0 ? &s->q[s->qhead] : NULL;
}

static void
pop(struct sess *s)
{
	s->qhead = (s->qhead + 1) % (sizeof(s->q) / sizeof(s->q[0]));
	s->qlen--;
}

static void
retr_done(struct sess *s, unsigned long msg)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen, i;

	s->retrs_done++;
	s->retrs_out--;
	s->bytes_out -= s->sizes[msg - 1];
	s->run->messages++;
	s->run->wire += s->body.wire;
	s->run->mail += s->body.mail;
	if (s->body.md != NULL) {
		EVP_DigestFinal_ex(s->body.md, md, &mdlen);
		fprintf(s->run->digests, "%s %lu ", s->a->user, msg);
		for (i = 0; i < mdlen; i++)
			fprintf(s->run->digests, "%02x", md[i]);
		fputc('\n', s->run->digests);
	}
}

/* Reads message data from IN; true if the loop should go on. */
static bool
body_step(struct sess *s, struct evbuffer *in)
{
	struct evbuffer_iovec v[16];
	size_t used = 0;
	bool end = false;
	int n, i;

	if ((n = evbuffer_peek(in, -1, NULL, v, 16)) <= 0)
		return false;
	for (i = 0; i < n && i < 16 && !end; i++)
		used += body_feed(&s->body, v[i].iov_base, v[i].iov_len, &end);
	evbuffer_drain(in, used);
	if (!end)
		return evbuffer_get_length(in) > 0;
	s->in_body = false;
	retr_done(s, head(s)->msg);
	pop(s);
	return true;
}

/* The listing's sizes from STAT's "+OK COUNT SIZE". */
static void
on_stat(struct sess *s, const char *line)
{
	unsigned long n;

	if (sscanf(line, "+OK %lu", &n) != 1 || n > MSGS_MAX) {
		sess_fail(s, "STAT: no message count");
		return;
	}
	s->nmsgs = n;
	if ((s->sizes = calloc(n + 1, sizeof(*s->sizes))) == NULL)
		die("out of memory");
}

/* One line of a CAPA, UIDL or LIST listing (dot-stuffing undone). */
static void
on_listing_line(struct sess *s, enum cmd cmd, const char *line)
{
	unsigned long msg;
	unsigned long long size;

	if (line[0] == '.')
		line++;
	if (cmd == C_CAPA && strcasecmp(line, "PIPELINING") == 0)
		s->pipelining = true;
	if (cmd != C_LIST)
		return;
	if (sscanf(line, "%lu %llu", &msg, &size) != 2 || msg == 0 ||
	    msg > s->nmsgs)
		sess_fail(s, "LIST: a line of no message STAT counted");
	else
		s->sizes[msg - 1] = size;
}

/* A listing ended: what follows it. */
static void
listing_done(struct sess *s, enum cmd cmd)
{
	if (cmd == C_CAPA) {
		s->window = s->pipelining ? WINDOW : 1;
		sess_send(s, C_USER, 0);
		if (s->pipelining)
			sess_send(s, C_PASS, 0);
	} else if (cmd == C_UIDL && !s->pipelining) {
		sess_send(s, C_LIST, 0);
	}
}

/* A positive status line answering CMD. */
static void
on_ok(struct sess *s, const struct sent *c, const char *line)
{
	switch (c->cmd) {
	case C_CAPA:
	case C_UIDL:
	case C_LIST:
		s->multi = true;
		return;
	case C_RETR:
		s->in_body = true;
		s->body.at = B_START;
		s->body.cr_held = false;
		s->body.wire = s->body.mail = 0;
		if (s->body.md != NULL)
			EVP_DigestInit_ex(s->body.md, EVP_sha256(), NULL);
		return;
	case C_USER:
		if (!s->pipelining)
			sess_send(s, C_PASS, 0);
		break;
	case C_PASS:
		sess_send(s, C_STAT, 0);
		if (s->pipelining) {
			sess_send(s, C_UIDL, 0);
			sess_send(s, C_LIST, 0);
		}
		break;
	case C_STAT:
		on_stat(s, line);
		if (!s->pipelining)
			sess_send(s, C_UIDL, 0);
		break;
	case C_DELE:
		s->deles_done++;
		break;
	case C_QUIT:
		pop(s);
		sess_end(s);
		return;
	}
	pop(s);
}

static const char *const cmd_names[] = {
    "CAPA", "USER", "PASS", "STAT", "UIDL", "LIST", "RETR", "DELE", "QUIT"};

/* One line of a reply (status line or listing line), without its end. */
static void
on_line(struct sess *s, const char *line, size_t len)
{
	struct sent *c = head(s);
	char shown[SHOWN_MAX * 4 + 8];

	if (!s->greeted) {
		if (strncmp(line, "+OK", 3) != 0) {
			escape(line, len, shown, sizeof(shown));
			sess_fail(s, "greeting: %s", shown);
			return;
		}
		s->greeted = true;
		sess_send(s, C_CAPA, 0);
	} else if (c == NULL) {
		sess_fail(s, "a reply to no command");
	} else if (s->multi && strcmp(line, ".") == 0) {
		s->multi = false;
		pop(s);
		listing_done(s, c->cmd);
	} else if (s->multi) {
		on_listing_line(s, c->cmd, line);
	} else if (strncmp(line, "+OK", 3) == 0) {
		on_ok(s, c, line);
	} else if (c->cmd == C_CAPA) {
		pop(s); /* an RFC 1939 server: no capabilities known */
		listing_done(s, C_CAPA);
	} else {
		escape(line, len, shown, sizeof(shown));
		sess_fail(s, "%s: %s", cmd_names[c->cmd], shown);
	}
}

static void
sess_read(struct bufferevent *bev, void *arg)
{
	struct sess *s = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line;

	while (!s->ended) {
		if (s->in_body) {
			if (!body_step(s, in))
				break;
			continue;
		}
		if ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) ==
		    NULL) {
			if (evbuffer_get_length(in) > LINE_MAX_LEN)
				sess_fail(s, "a line longer than %d bytes",
				    LINE_MAX_LEN);
			break;
		}
		if (len > LINE_MAX_LEN)
			sess_fail(
			    s, "a line longer than %d bytes", LINE_MAX_LEN);
		else
			on_line(s, line, len);
		free(line);
	}
	if (!s->ended)
		pump(s);
}

/* ---- commands ---- */

static void
sess_send(struct sess *s, enum cmd cmd, unsigned long msg)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	size_t cap = sizeof(s->q) / sizeof(s->q[0]);

	if (s->ended)
		return;
	if (s->qlen == cap)
		die("command queue overflow");
	s->q[(s->qhead + s->qlen++) % cap] = (struct sent){cmd, msg};
	switch (cmd) {
	case C_USER:
		evbuffer_add_printf(out, "USER %s\r\n", s->a->user);
		break;
	case C_PASS:
		evbuffer_add_printf(out, "PASS %s\r\n", s->a->pass);
		break;
	case C_RETR:
	case C_DELE:
		evbuffer_add_printf(out, "%s %lu\r\n", cmd_names[cmd], msg);
		break;
	default:
		evbuffer_add_printf(out, "%s\r\n", cmd_names[cmd]);
		break;
	}
}

/*
 * After the listing: DELEs of the messages received, RETRs of the next
 * within the window (one RETR always goes), then QUIT once all is done.
 */
static void
pump(struct sess *s)
{
	const struct sent *c = head(s);
	bool listed = s->sizes != NULL && (c == NULL || c->cmd >= C_RETR);

	if (!listed || s->ended)
		return;
	while (s->qlen < s->window && s->next_dele < s->retrs_done)
		sess_send(s, C_DELE, ++s->next_dele);
	while (s->qlen < s->window && s->next_retr < s->nmsgs &&
	       (s->retrs_out == 0 ||
		   s->bytes_out + s->sizes[s->next_retr] <= INFLIGHT_BYTES)) {
		s->bytes_out += s->sizes[s->next_retr];
		s->retrs_out++;
		sess_send(s, C_RETR, ++s->next_retr);
	}
	if (s->deles_done == s->nmsgs && s->qlen == 0)
		sess_send(s, C_QUIT, 0);
}

/* ---- sessions ---- */

static void
sess_free(evutil_socket_t fd, short what, void *arg)
{
	struct sess *s = arg;
	struct run *r = s->run;

	bufferevent_free(s->bev);
	EVP_MD_CTX_free(s->body.md);
	free(s->sizes);
	free(s);
	r->active--;
	while (r->active < r->conc && r->next < r->naccts)
		sess_start(r, &r->accts[r->next++]);
	if (r->active == 0)
		event_base_loopexit(r->base, NULL);
}

/* The poll is over: torn down on a later turn, not inside its callback. */
static void
sess_end(struct sess *s)
{
	s->ended = true;
	bufferevent_disable(s->bev, EV_READ | EV_WRITE);
	if (event_base_once(s->run->base, -1, EV_TIMEOUT, sess_free, s, NULL) ==
	    -1)
		die("cannot schedule an event");
}

static void
sess_fail(struct sess *s, const char *fmt, ...)
{
	char why[512];
	va_list ap;

	if (s->ended)
		return;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	fprintf(stderr, "bench_netref: account %s: %s\n", s->a->user, why);
	s->run->failed++;
	sess_end(s);
}

/* Why the connection failed: OpenSSL's first reason if it has one. */
static void
conn_reason(struct sess *s, struct bufferevent *bev, char *buf, size_t len)
{
	unsigned long e = 0;

	if (s->run->ctx != NULL &&
	    (e = bufferevent_get_openssl_error(bev)) == 0)
		e = ERR_get_error();
	if (e != 0)
		ERR_error_string_n(e, buf, len);
	else
		snprintf(buf, len, "%s", strerror(errno));
}

static void
sess_event(struct bufferevent *bev, short what, void *arg)
{
	struct sess *s = arg;
	char why[256];

	if (what & BEV_EVENT_CONNECTED)
		return; /* the greeting comes next */
	if (what & BEV_EVENT_TIMEOUT) {
		sess_fail(s, "no reply in %d s", TIMEOUT_SECS);
	} else if (what & BEV_EVENT_EOF) {
		sess_fail(s, "the server closed the connection");
	} else {
		conn_reason(s, bev, why, sizeof(why));
		sess_fail(s, "connection failed: %s", why);
	}
}

/* The transport is up (and TLS started on it): POP3 from here on. */
static void
sess_attach(struct sess *s, struct bufferevent *bev)
{
	struct timeval tv = {TIMEOUT_SECS, 0};

	s->bev = bev;
	bufferevent_setcb(bev, sess_read, NULL, sess_event, s);
	bufferevent_setwatermark(bev, EV_READ, 0, READ_HIGH);
	bufferevent_set_timeouts(bev, &tv, &tv);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
}

/* A client SSL for the run's host, checked as popfetchd checks it. */
static SSL *
ssl_for(const struct run *r)
{
	X509_VERIFY_PARAM *param;
	unsigned char ip[16];
	SSL *ssl;

	if ((ssl = SSL_new(r->ctx)) == NULL)
		die("cannot create a TLS session");
	param = SSL_get0_param(ssl);
	if (inet_pton(AF_INET, r->host, ip) == 1 ||
	    inet_pton(AF_INET6, r->host, ip) == 1) {
		X509_VERIFY_PARAM_set1_ip_asc(param, r->host);
	} else {
		SSL_set_tlsext_host_name(ssl, r->host);
		X509_VERIFY_PARAM_set_hostflags(
		    param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		SSL_set1_host(ssl, r->host);
	}
	return ssl;
}

/* The TCP connection's events until it is up; then TLS or POP3. */
static void
sess_connected(struct bufferevent *bev, short what, void *arg)
{
	struct sess *s = arg;
	struct bufferevent *tls;

	if (!(what & BEV_EVENT_CONNECTED)) {
		sess_event(bev, what, arg);
		return;
	}
	bufferevent_setwatermark(bev, EV_READ, 0, READ_HIGH);
	if (s->run->ctx == NULL) {
		sess_attach(s, bev);
		return;
	}
	tls = bufferevent_openssl_filter_new(s->run->base, bev, ssl_for(s->run),
	    BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (tls == NULL)
		die("cannot start TLS");
	/* As popfetchd: a server's unclean close is judged by QUIT. */
	bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
	sess_attach(s, tls);
}

static void
sess_start(struct run *r, const struct account *a)
{
	struct timeval tv = {TIMEOUT_SECS, 0};
	struct sess *s;

	if ((s = calloc(1, sizeof(*s))) == NULL)
		die("out of memory");
	s->run = r;
	s->a = a;
	s->window = 1;
	if (r->digests != NULL && (s->body.md = EVP_MD_CTX_new()) == NULL)
		die("out of memory");
	s->bev = bufferevent_socket_new(
	    r->base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (s->bev == NULL)
		die("out of memory");
	r->active++;
	bufferevent_setcb(s->bev, NULL, NULL, sess_connected, s);
	bufferevent_set_timeouts(s->bev, &tv, &tv);
	if (bufferevent_socket_connect(
		s->bev, r->addr->ai_addr, (int)r->addr->ai_addrlen) == -1)
		sess_fail(s, "cannot connect: %s", strerror(errno));
}

/* ---- the run ---- */

/* The accounts in PATH, "USER<TAB>PASSWORD" a line. */
static struct account *
load_accounts(const char *path, size_t *count)
{
	struct account *v = NULL;
	size_t n = 0, cap = 0, len;
	char *line = NULL, *tab;
	ssize_t got;
	FILE *f;

	if ((f = fopen(path, "r")) == NULL)
		die("cannot open the accounts file");
	while ((got = getline(&line, &len, f)) != -1) {
		if (got > 0 && line[got - 1] == '\n')
			line[--got] = '\0';
		if (got == 0)
			continue;
		if ((tab = strchr(line, '\t')) == NULL)
			die("an accounts line without a tab");
		*tab = '\0';
		if (n == cap && (v = realloc(v, (cap = cap ? 2 * cap : 64) *
						    sizeof(*v))) == NULL)
			die("out of memory");
		if ((v[n].user = strdup(line)) == NULL ||
		    (v[n].pass = strdup(tab + 1)) == NULL)
			die("out of memory");
		n++;
	}
	free(line);
	fclose(f);
	*count = n;
	return v;
}

/* popfetchd's context (daemon/tls.c ctx_new): TLS 1.2 or later, checked. */
static SSL_CTX *
make_ctx(const char *ca_file)
{
	SSL_CTX *ctx;

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		die("cannot create a TLS context");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (ca_file != NULL
		? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
		: SSL_CTX_set_default_verify_paths(ctx) != 1)
		die("cannot load the trust store");
	return ctx;
}

/* What main() made, freed (the sessions free themselves). */
static void
free_run(struct run *r)
{
	size_t i;

	for (i = 0; i < r->naccts; i++) {
		free(r->accts[i].user);
		free(r->accts[i].pass);
	}
	free(r->accts);
	freeaddrinfo(r->addr);
	SSL_CTX_free(r->ctx);
	event_base_free(r->base);
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: bench_netref [-t implicit|plain] [-c CA_FILE] [-n CONCURRENCY]\n"
	    "           [-d DIGEST_FILE] HOST PORT ACCOUNTS\n");
	exit(2);
}

/* Options into R; the index of the first operand. */
static int
parse_args(
    int argc, char **argv, struct run *r, const char **ca_file, bool *tls)
{
	int ch;

	while ((ch = getopt(argc, argv, "t:c:n:d:")) != -1) {
		switch (ch) {
		case 't':
			if (strcmp(optarg, "implicit") != 0 &&
			    strcmp(optarg, "plain") != 0)
				usage();
			*tls = strcmp(optarg, "implicit") == 0;
			break;
		case 'c':
			*ca_file = optarg;
			break;
		case 'n':
			if ((r->conc = strtoul(optarg, NULL, 10)) == 0)
				usage();
			break;
		case 'd':
			if ((r->digests = fopen(optarg, "w")) == NULL)
				die("cannot create the digest file");
			break;
		default:
			usage();
		}
	}
	if (argc - optind != 3)
		usage();
	return optind;
}

int
main(int argc, char **argv)
{
	struct addrinfo hints = {
	    .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct run r = {.conc = 1};
	const char *ca_file = NULL;
	struct rusage ru;
	bool tls = true;
	double t0, wall;
	int i;

	i = parse_args(argc, argv, &r, &ca_file, &tls);
	signal(SIGPIPE, SIG_IGN);
	r.host = argv[i];
	if (getaddrinfo(argv[i], argv[i + 1], &hints, &r.addr) != 0)
		die("cannot resolve the host");
	r.accts = load_accounts(argv[i + 2], &r.naccts);
	if (tls)
		r.ctx = make_ctx(ca_file);
	if ((r.base = event_base_new()) == NULL)
		die("cannot create the event loop");
	t0 = now();
	while (r.active < r.conc && r.next < r.naccts)
		sess_start(&r, &r.accts[r.next++]);
	if (r.active > 0)
		event_base_dispatch(r.base);
	wall = now() - t0;
	getrusage(RUSAGE_SELF, &ru);
	printf("netref: accounts=%zu failed=%zu messages=%llu wire_bytes=%llu "
	       "mail_bytes=%llu wall=%.6f user=%.6f sys=%.6f\n",
	    r.naccts, r.failed, r.messages, r.wire, r.mail, wall,
	    (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
	    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	if (r.digests != NULL && fclose(r.digests) == EOF)
		die("cannot write the digest file");
	free_run(&r);
	return r.failed > 0 ? 1 : 0;
}
