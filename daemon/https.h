/*
 * https: one HTTPS POST of a form on the caller's libevent loop (evhttp
 * over an OpenSSL bufferevent), the server's certificate verified as
 * tls.c verifies a mail server's. For OAuth2 token endpoints; knows
 * nothing of OAuth2.
 */
#ifndef POPFETCHD_HTTPS_H
#define POPFETCHD_HTTPS_H

#include <stddef.h>

struct event_base;
struct evdns_base;
struct https_req;

/*
 * The one answer: STATUS is the HTTP status and BODY its LEN bytes (not
 * NUL-terminated), or STATUS is 0 and ERR says what failed (connection,
 * timeout, certificate, an answer over the size limit). Valid during the
 * call only. The request is over when the callback runs.
 */
typedef void (*https_cb)(
    void *arg, int status, const char *body, size_t len, const char *err);

/* What to POST where. */
struct https_post {
	const char *url;     /* https://HOST[:PORT]/PATH[?QUERY] */
	const char *ca_file; /* NULL: the system trust store */
	const char *form;    /* application/x-www-form-urlencoded body */
	unsigned timeout;    /* seconds, for connecting and each read */
	size_t body_max;     /* a longer answer is an error */
	const char *account; /* for log lines */
};

/*
 * Starts P on BASE, resolving with DNS. CB runs exactly once, on a later
 * loop turn, unless the request is cancelled first. P is read during this
 * call only. NULL with ERR set when the request cannot start (a bad URL,
 * an unreadable CA file, out of memory): no callback then.
 */
struct https_req *https_post(struct event_base *base, struct evdns_base *dns,
    const struct https_post *p, https_cb cb, void *arg, char *err,
    size_t errlen);

/* Abandons *REQ (no callback follows), sets it to NULL; NULL is fine. */
void https_cancel(struct https_req **req);

#endif
