/*
 * One HTTPS POST on the loop. evhttp drives the connection; the TLS
 * object comes from tls.c, so the endpoint's certificate is checked
 * against the same trust store rules and host name checks as a mail
 * server's. Every answer goes out through a later loop turn (done_ev),
 * never from inside evhttp's callbacks, so the connection is freed when
 * no callback of its own is running.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "conf.h"
#include "https.h"
#include "log.h"
#include "tls.h"
#include "wipe.h"

#define HTTPS_HOST_MAX 256
/* Headers of a token endpoint's answer: a few hundred bytes. */
#define HTTPS_HEADERS_MAX 16384

struct https_req {
	struct event_base *base;
	https_cb cb;
	void *arg;
	struct evhttp_connection *conn;
	struct evhttp_request *req; /* NULL once evhttp answered */
	struct bufferevent *bev;    /* owned by conn */
	struct event *done_ev;
	/* A fake account for tls.c: the endpoint's host and trust store. */
	struct account tls;
	char host[HTTPS_HOST_MAX];
	char account[CONF_NAME_MAX + 1];
	enum evhttp_request_error error;
	bool error_known; /* error was set by evhttp */
	int error_errno;  /* errno when evhttp gave up, for the message */
	bool failed;
	int status;
	struct evbuffer *body;
	size_t body_max;
	char err[HTTPS_HOST_MAX + 400];
};

static int parse_url(const char *url, char *host, size_t hostlen, int *port,
    char **path, char *err, size_t errlen);
static void answered(struct evhttp_request *req, void *arg);
static void failed(enum evhttp_request_error e, void *arg);
static void describe(struct https_req *r);
static void done_cb(evutil_socket_t fd, short what, void *arg);
static void req_free(struct https_req *r);
static int fill_request(struct https_req *r, const struct https_post *p);
static int connect_tls(
    struct https_req *r, struct evdns_base *dns, char *err, size_t errlen);

/* Splits URL; PATH (with its query) is malloc()ed. */
static int
parse_url(const char *url, char *host, size_t hostlen, int *port, char **path,
    char *err, size_t errlen)
{
	struct evhttp_uri *u;
	const char *h, *p, *q;
	int rc = -1;

	if ((u = evhttp_uri_parse(url)) == NULL ||
	    evhttp_uri_get_scheme(u) == NULL ||
	    strcmp(evhttp_uri_get_scheme(u), "https") != 0 ||
	    (h = evhttp_uri_get_host(u)) == NULL || h[0] == '\0' ||
	    strlen(h) >= hostlen) {
		snprintf(err, errlen, "not an https:// URL: %.200s", url);
		goto out;
	}
	snprintf(host, hostlen, "%s", h);
	/* "[::1]" in a URL is "::1" to the resolver and the certificate. */
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host) - 2);
		host[strlen(h) - 2] = '\0';
	}
	*port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : 443;
	p = evhttp_uri_get_path(u);
	q = evhttp_uri_get_query(u);
	if (asprintf(path, "%s%s%s", p != NULL && p[0] != '\0' ? p : "/",
		q != NULL ? "?" : "", q != NULL ? q : "") == -1) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	rc = 0;
out:
	if (u != NULL)
		evhttp_uri_free(u);
	return rc;
}

/* evhttp's callback: take what came, answer on a later turn. */
static void
answered(struct evhttp_request *req, void *arg)
{
	struct https_req *r = arg;
	struct evbuffer *in;

	r->req = NULL;
	if (req == NULL || evhttp_request_get_response_code(req) == 0) {
		describe(r);
	} else {
		r->status = evhttp_request_get_response_code(req);
		in = evhttp_request_get_input_buffer(req);
		if (evbuffer_get_length(in) > r->body_max) {
			r->failed = true;
			snprintf(r->err, sizeof(r->err),
			    "%s: answer longer than %zu bytes", r->host,
			    r->body_max);
		} else if (evbuffer_add_buffer(r->body, in) == -1) {
			r->failed = true;
			snprintf(r->err, sizeof(r->err), "out of memory");
		}
	}
	event_active(r->done_ev, EV_TIMEOUT, 1);
}

static void
failed(enum evhttp_request_error e, void *arg)
{
	struct https_req *r = arg;

	r->error_errno = errno;
	r->error = e;
	r->error_known = true;
	r->failed = true;
}

/* Why no answer came: the TLS verdict if there is one, else the kind. */
static void
describe(struct https_req *r)
{
	SSL *ssl = bufferevent_openssl_get_ssl(r->bev);
	unsigned long e = bufferevent_get_openssl_error(r->bev);
	char why[300];

	r->failed = true;
	/*
	 * A certificate verdict first, then OpenSSL's reason. A small E is
	 * not OpenSSL's but libevent's SSL_ERROR_SYSCALL: the socket failed
	 * (a refused connect, a reset), which the error kind tells better.
	 */
	if ((ssl != NULL && SSL_get_verify_result(ssl) != X509_V_OK) ||
	    ERR_GET_LIB(e) != 0) {
		tls_describe_failure(ssl, &r->tls, e, why, sizeof(why));
	} else {
		switch (r->error_known ? (int)r->error : -1) {
		case EVREQ_HTTP_TIMEOUT:
			snprintf(why, sizeof(why), "timed out after %u s",
			    r->tls.timeout);
			break;
		case EVREQ_HTTP_EOF:
			snprintf(why, sizeof(why),
			    "connection closed before an answer");
			break;
		case EVREQ_HTTP_INVALID_HEADER:
			snprintf(why, sizeof(why), "malformed HTTP answer");
			break;
		case EVREQ_HTTP_DATA_TOO_LONG:
			snprintf(why, sizeof(why), "answer too long");
			break;
		default:
			snprintf(why, sizeof(why),
			    "cannot connect or no answer%s%s",
			    r->error_errno != 0 ? ": " : "",
			    r->error_errno != 0 ? strerror(r->error_errno)
						: "");
			break;
		}
	}
	while (ERR_get_error() != 0)
		continue;
	snprintf(r->err, sizeof(r->err), "%s port %u: %s", r->host, r->tls.port,
	    why);
}

static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct https_req *r = arg;
	size_t len = evbuffer_get_length(r->body);
	const char *body = (const char *)evbuffer_pullup(r->body, -1);

	if (r->failed)
		r->cb(r->arg, 0, NULL, 0, r->err);
	else
		r->cb(r->arg, r->status, body != NULL ? body : "", len, NULL);
	req_free(r);
}

static void
req_free(struct https_req *r)
{
	size_t len;

	/* Frees a request still queued on it, without its callback. */
	if (r->conn != NULL)
		evhttp_connection_free(r->conn);
	if (r->done_ev != NULL)
		event_free(r->done_ev);
	if (r->body != NULL) {
		/* It held tokens. */
		len = evbuffer_get_length(r->body);
		if (len > 0)
			wipe(evbuffer_pullup(r->body, -1), len);
		evbuffer_free(r->body);
	}
	free(r->tls.host);
	free(r);
}

/* Adds the request's headers and body; 0, or -1 when out of memory. */
static int
fill_request(struct https_req *r, const struct https_post *p)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
	char hostport[HTTPS_HOST_MAX + 16];

	snprintf(hostport, sizeof(hostport), "%s%s%s:%u",
	    strchr(r->host, ':') != NULL ? "[" : "", r->host,
	    strchr(r->host, ':') != NULL ? "]" : "", r->tls.port);
	if (evhttp_add_header(h, "Host", hostport) == -1 ||
	    evhttp_add_header(
		h, "Content-Type", "application/x-www-form-urlencoded") == -1 ||
	    evhttp_add_header(h, "Accept", "application/json") == -1 ||
	    evhttp_add_header(h, "Connection", "close") == -1 ||
	    evhttp_add_header(
		h, "User-Agent", "popfetchd/" POPFETCHD_VERSION) == -1 ||
	    evbuffer_add(evhttp_request_get_output_buffer(r->req), p->form,
		strlen(p->form)) == -1)
		return -1;
	return 0;
}

/* The connection: TLS from tls.c under evhttp. 0, or -1 with ERR. */
static int
connect_tls(
    struct https_req *r, struct evdns_base *dns, char *err, size_t errlen)
{
	SSL_CTX *ctx;
	SSL *ssl;

	if ((ctx = tls_ctx_get(&r->tls, err, errlen)) == NULL)
		return -1;
	ssl = tls_ssl_new(ctx, &r->tls);
	SSL_CTX_free(ctx);
	if (ssl == NULL ||
	    (r->bev = bufferevent_openssl_socket_new(r->base, -1, ssl,
		 BUFFEREVENT_SSL_CONNECTING,
		 BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS)) == NULL) {
		if (ssl != NULL)
			SSL_free(ssl);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/* Many servers close without close_notify once the answer is out. */
	bufferevent_openssl_set_allow_dirty_shutdown(r->bev, 1);
	r->conn = evhttp_connection_base_bufferevent_new(
	    r->base, dns, r->bev, r->host, (unsigned short)r->tls.port);
	if (r->conn == NULL) {
		bufferevent_free(r->bev);
		r->bev = NULL;
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	evhttp_connection_set_timeout(r->conn, (int)r->tls.timeout);
	evhttp_connection_set_retries(r->conn, 0);
	evhttp_connection_set_max_body_size(r->conn, (ev_ssize_t)r->body_max);
	evhttp_connection_set_max_headers_size(r->conn, HTTPS_HEADERS_MAX);
	return 0;
}

struct https_req *
https_post(struct event_base *base, struct evdns_base *dns,
    const struct https_post *p, https_cb cb, void *arg, char *err,
    size_t errlen)
{
	struct https_req *r;
	char *path = NULL;
	int port;

	if ((r = calloc(1, sizeof(*r))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->base = base;
	r->cb = cb;
	r->arg = arg;
	r->body_max = p->body_max;
	snprintf(r->account, sizeof(r->account), "%s",
	    p->account != NULL ? p->account : "");
	if (parse_url(p->url, r->host, sizeof(r->host), &port, &path, err,
		errlen) == -1)
		goto fail;
	r->tls.name = r->account;
	r->tls.port = (unsigned)port;
	r->tls.tls_verify = true;
	r->tls.ca_file = (char *)p->ca_file;
	r->tls.timeout = p->timeout;
	if ((r->tls.host = strdup(r->host)) == NULL ||
	    (r->body = evbuffer_new()) == NULL ||
	    (r->done_ev = event_new(base, -1, 0, done_cb, r)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (connect_tls(r, dns, err, errlen) == -1)
		goto fail;
	if ((r->req = evhttp_request_new(answered, r)) == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	evhttp_request_set_error_cb(r->req, failed);
	if (fill_request(r, p) == -1) {
		evhttp_request_free(r->req);
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	/* On failure evhttp has freed the request already. */
	if (evhttp_make_request(r->conn, r->req, EVHTTP_REQ_POST, path) == -1) {
		snprintf(
		    err, errlen, "cannot start the request to %s", r->host);
		goto fail;
	}
	/* tls.c reads ca_file while making the context: no longer needed. */
	r->tls.ca_file = NULL;
	free(path);
	return r;
fail:
	r->tls.ca_file = NULL;
	free(path);
	req_free(r);
	return NULL;
}

void
https_cancel(struct https_req **rp)
{
	struct https_req *r = *rp;

	*rp = NULL;
	if (r == NULL)
		return;
	req_free(r);
}
