/*
 * --authorize: one authorisation on a loop of its own. Each step sends one
 * request and names the callback that takes its answer: the client
 * secret, then either the device code and the polls of the token
 * endpoint, or the loopback listener, the browser's redirect and the code
 * exchange. Every end goes through finish().
 */
#include <sys/socket.h>

#include <netinet/in.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>

#include "authorize.h"
#include "conf.h"
#include "fsutil.h"
#include "https.h"
#include "log.h"
#include "net.h"
#include "oauth2.h"
#include "secret.h"
#include "testhook.h"
#include "wipe.h"

/* How long the user has to approve in the browser (loopback flow). */
#define AUTHORIZE_WAIT 600
/* RFC 8628 3.5: slow_down adds 5 seconds to the polling interval. */
#define AUTHORIZE_SLOW_DOWN 5
#define AUTHORIZE_TIMEOUT   60
#define DEVICE_GRANT	    "urn:ietf:params:oauth:grant-type:device_code"

struct authz {
	const struct account *a;
	struct oauth2_provider p;
	struct event_base *base;
	struct evdns_base *dns;
	struct secret_req *sreq;
	char *client_secret; /* NULL: none */
	struct https_req *http;
	struct event *poll_ev, *deadline_ev;
	int rc;
	/* device flow */
	struct oauth2_device dev;
	long interval;
	/* loopback flow */
	struct evhttp *srv;
	char redirect[64];
	char verifier[64];
	char state[64];
};

static void finish(struct authz *z, int rc);
static void got_secret(
    void *arg, const char *secret, enum secret_fail fail, const char *err);
static int post(
    struct authz *z, const char *url, const char *const *kv, https_cb cb);
static void device_start(struct authz *z);
static void device_answer(
    void *arg, int status, const char *body, size_t len, const char *err);
static void device_poll(evutil_socket_t fd, short what, void *arg);
static void device_token(
    void *arg, int status, const char *body, size_t len, const char *err);
static void loopback_start(struct authz *z);
static void loopback_redirect(struct evhttp_request *req, void *arg);
static void loopback_token(
    void *arg, int status, const char *body, size_t len, const char *err);
static void store(struct authz *z, struct oauth2_token *t);
static void deadline_cb(evutil_socket_t fd, short what, void *arg);

static void
finish(struct authz *z, int rc)
{
	z->rc = rc;
	event_base_loopbreak(z->base);
}

static void
got_secret(
    void *arg, const char *secret, enum secret_fail fail, const char *err)
{
	struct authz *z = arg;

	z->sreq = NULL;
	if (secret == NULL) {
		log_warnx(z->a->name, "client secret: %s", err);
		finish(z, EX_CONFIG);
		return;
	}
	if (secret[0] != '\0' && (z->client_secret = strdup(secret)) == NULL) {
		finish(z, EX_OSERR);
		return;
	}
	if (strcmp(z->p.flow, "device") == 0)
		device_start(z);
	else
		loopback_start(z);
}

/* POSTs the form KV to URL; CB takes the answer. 0, or -1 (finished). */
static int
post(struct authz *z, const char *url, const char *const *kv, https_cb cb)
{
	struct https_post p = {.url = url,
	    .ca_file = z->a->oauth2.ca_file,
	    .timeout = z->a->timeout > 0 ? z->a->timeout : AUTHORIZE_TIMEOUT,
	    .body_max = OAUTH2_BODY_MAX,
	    .account = z->a->name};
	char err[512], *form;

	if ((form = oauth2_form(kv)) == NULL) {
		finish(z, EX_OSERR);
		return -1;
	}
	p.form = form;
	z->http = https_post(z->base, z->dns, &p, cb, z, err, sizeof(err));
	wipe(form, strlen(form));
	free(form);
	if (z->http == NULL) {
		log_warnx(z->a->name, "oauth2: %s", err);
		finish(z, EX_TEMPFAIL);
		return -1;
	}
	return 0;
}

/* The end of a token request: store, wait, or give up. */
static void
took(struct authz *z, int status, const char *body, size_t len, const char *err)
{
	struct oauth2_token t;
	char why[512];
	struct timeval tv = {0};

	if (status == 0) {
		log_warnx(z->a->name, "oauth2: token endpoint: %s", err);
		finish(z, EX_TEMPFAIL);
		return;
	}
	switch (oauth2_parse_token(
	    status, body, len, TESTHOOK_NOW(), &t, why, sizeof(why))) {
	case OAUTH2_OK:
		store(z, &t);
		return;
	case OAUTH2_SLOW_DOWN:
		z->interval += AUTHORIZE_SLOW_DOWN;
		/* FALLTHROUGH */
	case OAUTH2_PENDING:
		tv.tv_sec = z->interval;
		if (z->poll_ev == NULL || evtimer_add(z->poll_ev, &tv) == -1)
			finish(z, EX_OSERR);
		return;
	case OAUTH2_DENIED:
		log_warnx(z->a->name, "oauth2: %s", why);
		finish(z, EX_NOPERM);
		return;
	case OAUTH2_TEMPORARY:
		log_warnx(z->a->name, "oauth2: %s", why);
		finish(z, EX_TEMPFAIL);
		return;
	}
}

static void
device_start(struct authz *z)
{
	const char *kv[] = {
	    "client_id", z->a->oauth2.client_id, "scope", z->p.scope, NULL};

	if (z->p.device_endpoint == NULL) {
		log_warnx(z->a->name,
		    "oauth2: flow = \"device\" needs a device_endpoint");
		finish(z, EX_CONFIG);
		return;
	}
	post(z, z->p.device_endpoint, kv, device_answer);
}

static void
device_answer(
    void *arg, int status, const char *body, size_t len, const char *err)
{
	struct authz *z = arg;
	struct timeval tv = {0};
	char why[512];

	z->http = NULL;
	if (status == 0) {
		log_warnx(z->a->name, "oauth2: device endpoint: %s", err);
		finish(z, EX_TEMPFAIL);
		return;
	}
	switch (
	    oauth2_parse_device(status, body, len, &z->dev, why, sizeof(why))) {
	case OAUTH2_OK:
		break;
	case OAUTH2_DENIED:
		log_warnx(z->a->name, "oauth2: %s", why);
		finish(z, EX_NOPERM);
		return;
	default:
		log_warnx(z->a->name, "oauth2: %s", why);
		finish(z, EX_TEMPFAIL);
		return;
	}
	printf(
	    "To authorise account \"%s\", open\n\n    %s\n\nand enter the code %s\n",
	    z->a->name, z->dev.verification_uri, z->dev.user_code);
	if (z->dev.verification_uri_complete != NULL)
		printf("(or open %s)\n", z->dev.verification_uri_complete);
	printf("Waiting up to %ld s...\n", z->dev.expires_in);
	fflush(stdout);
	z->interval = z->dev.interval;
	tv.tv_sec = z->dev.expires_in;
	if (evtimer_add(z->deadline_ev, &tv) == -1 ||
	    (z->poll_ev = evtimer_new(z->base, device_poll, z)) == NULL) {
		finish(z, EX_OSERR);
		return;
	}
	tv.tv_sec = z->interval;
	evtimer_add(z->poll_ev, &tv);
}

static void
device_poll(evutil_socket_t fd, short what, void *arg)
{
	struct authz *z = arg;
	const char *kv[] = {"grant_type", DEVICE_GRANT, "device_code",
	    z->dev.device_code, "client_id", z->a->oauth2.client_id,
	    "client_secret", z->client_secret, NULL};

	post(z, z->p.token_endpoint, kv, device_token);
}

static void
device_token(
    void *arg, int status, const char *body, size_t len, const char *err)
{
	struct authz *z = arg;

	z->http = NULL;
	took(z, status, body, len, err);
}

/* Listens on 127.0.0.1 (RFC 8252 7.3) and prints the URL to open. */
static void
loopback_start(struct authz *z)
{
	struct evhttp_bound_socket *bound;
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	char challenge[64], *url = NULL, *q;
	const char *sep;
	struct timeval tv = {AUTHORIZE_WAIT, 0};
	const bool gmail = z->p.name != NULL && strcmp(z->p.name, "gmail") == 0;
	const char *kv[] = {"response_type", "code", "client_id",
	    z->a->oauth2.client_id, "redirect_uri", z->redirect, "scope",
	    z->p.scope, "state", z->state, "code_challenge", challenge,
	    "code_challenge_method", "S256",
	    /* Google gives a refresh token only when asked this way. */
	    "access_type", gmail ? "offline" : NULL, "prompt",
	    gmail ? "consent" : NULL, NULL};

	if (z->p.authorization_endpoint == NULL) {
		log_warnx(z->a->name, "oauth2: no authorization_endpoint");
		finish(z, EX_CONFIG);
		return;
	}
	if ((z->srv = evhttp_new(z->base)) == NULL ||
	    (bound = evhttp_bind_socket_with_handle(z->srv, "127.0.0.1", 0)) ==
		NULL ||
	    getsockname(evhttp_bound_socket_get_fd(bound),
		(struct sockaddr *)&sin, &slen) == -1) {
		log_warn(z->a->name, "cannot listen on 127.0.0.1");
		finish(z, EX_OSERR);
		return;
	}
	evhttp_set_gencb(z->srv, loopback_redirect, z);
	snprintf(z->redirect, sizeof(z->redirect), "http://127.0.0.1:%u/",
	    ntohs(sin.sin_port));
	if (oauth2_pkce_verifier(z->verifier, sizeof(z->verifier)) == -1 ||
	    oauth2_pkce_challenge(z->verifier, challenge, sizeof(challenge)) ==
		-1 ||
	    oauth2_random(z->state, sizeof(z->state), 16) == -1 ||
	    (q = oauth2_form(kv)) == NULL) {
		finish(z, EX_OSERR);
		return;
	}
	sep = strchr(z->p.authorization_endpoint, '?') != NULL ? "&" : "?";
	if (asprintf(&url, "%s%s%s", z->p.authorization_endpoint, sep, q) ==
	    -1) {
		free(q);
		finish(z, EX_OSERR);
		return;
	}
	free(q);
	printf(
	    "To authorise account \"%s\", open this URL in a browser on this machine:\n\n    %s\n\nWaiting up to %d s for the browser to come back to %s ...\n",
	    z->a->name, url, AUTHORIZE_WAIT, z->redirect);
	fflush(stdout);
	free(url);
	evtimer_add(z->deadline_ev, &tv);
}

static void
reply(struct evhttp_request *req, int code, const char *text)
{
	struct evbuffer *b = evbuffer_new();

	if (b != NULL)
		evbuffer_add_printf(b,
		    "<!DOCTYPE html><title>popfetchd</title><p>%s</p>\n", text);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	    "Content-Type", "text/html; charset=utf-8");
	evhttp_send_reply(req, code, code == 200 ? "OK" : "Bad Request", b);
	if (b != NULL)
		evbuffer_free(b);
}

static void
refused(struct evhttp_request *req, void *arg)
{
	finish(arg, EX_NOPERM);
}

/* The browser comes back with ?code=...&state=... (or ?error=...). */
static void
loopback_redirect(struct evhttp_request *req, void *arg)
{
	struct authz *z = arg;
	const struct evhttp_uri *u = evhttp_request_get_evhttp_uri(req);
	const char *query = u != NULL ? evhttp_uri_get_query(u) : NULL;
	char *state = NULL, *code = NULL, *error = NULL, esc[128];
	const char *kv[] = {"grant_type", "authorization_code", "code", NULL,
	    "redirect_uri", z->redirect, "client_id", z->a->oauth2.client_id,
	    "client_secret", z->client_secret, "code_verifier", z->verifier,
	    NULL};

	if (query != NULL) {
		state = oauth2_query_get(query, "state");
		code = oauth2_query_get(query, "code");
		error = oauth2_query_get(query, "error");
	}
	/* Anything else that knocks (a favicon, another page) is ignored. */
	if (state == NULL || strcmp(state, z->state) != 0 || z->http != NULL) {
		reply(req, 400, "Not the answer popfetchd is waiting for.");
	} else if (error != NULL || code == NULL) {
		/* Ends once the page is out, not before. */
		evhttp_request_set_on_complete_cb(req, refused, z);
		reply(req, 400, "Authorisation refused.");
		log_escape(esc, sizeof(esc), error != NULL ? error : "no code",
		    strlen(error != NULL ? error : "no code"));
		log_warnx(
		    z->a->name, "oauth2: authorisation refused: error=%s", esc);
	} else {
		reply(req, 200,
		    "popfetchd is authorised. You can close this page.");
		kv[3] = code;
		post(z, z->p.token_endpoint, kv, loopback_token);
	}
	free(state);
	if (code != NULL)
		wipe(code, strlen(code));
	free(code);
	free(error);
}

static void
loopback_token(
    void *arg, int status, const char *body, size_t len, const char *err)
{
	struct authz *z = arg;

	z->http = NULL;
	took(z, status, body, len, err);
}

/* Stores T (consumed): the end of a successful authorisation. */
static void
store(struct authz *z, struct oauth2_token *t)
{
	const char *path = z->a->oauth2.token_file;
	char dir[PATH_MAX], err[512];
	const char *slash = strrchr(path, '/');

	if (t->refresh == NULL) {
		log_warnx(z->a->name,
		    "oauth2: the provider gave no refresh token (does the scope ask for offline access?)");
		oauth2_token_clear(t);
		finish(z, EX_NOPERM);
		return;
	}
	snprintf(dir, sizeof(dir), "%.*s",
	    slash != NULL ? (int)(slash - path) : 1,
	    slash != NULL ? path : ".");
	if ((dir[0] != '\0' && fsutil_mkdir_p(dir, err, sizeof(err)) == -1) ||
	    oauth2_store_save(path, t, err, sizeof(err)) == -1) {
		log_warnx(z->a->name, "oauth2: %s", err);
		oauth2_token_clear(t);
		finish(z, EX_IOERR);
		return;
	}
	oauth2_token_clear(t);
	printf(
	    "Account \"%s\" is authorised; its tokens are in %s (mode 0600).\n",
	    z->a->name, path);
	fflush(stdout);
	finish(z, EX_OK);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct authz *z = arg;

	log_warnx(z->a->name, "oauth2: no authorisation came in time");
	finish(z, EX_TEMPFAIL);
}

int
authorize_run(const struct account *a)
{
	struct authz z = {.a = a, .rc = EX_SOFTWARE};
	char err[256];

	if (!a->oauth2.on) {
		log_warnx(a->name, "no oauth2 group: nothing to authorise");
		return EX_CONFIG;
	}
	oauth2_settings(a, &z.p);
	if (z.p.token_endpoint == NULL || a->oauth2.token_file == NULL) {
		log_warnx(a->name, "oauth2: no token_endpoint or token_file");
		return EX_CONFIG;
	}
	if ((z.base = event_base_new()) == NULL ||
	    (z.dns = net_dns_new(z.base, err, sizeof(err))) == NULL ||
	    (z.deadline_ev = evtimer_new(z.base, deadline_cb, &z)) == NULL ||
	    (z.sreq = secret_fetch_client(z.base, a, got_secret, &z)) == NULL)
		fatalx("out of memory");
	event_base_dispatch(z.base);
	secret_cancel(&z.sreq);
	https_cancel(&z.http);
	if (z.srv != NULL)
		evhttp_free(z.srv);
	if (z.poll_ev != NULL)
		event_free(z.poll_ev);
	event_free(z.deadline_ev);
	oauth2_device_clear(&z.dev);
	if (z.client_secret != NULL) {
		wipe(z.client_secret, strlen(z.client_secret));
		free(z.client_secret);
	}
	wipe(z.verifier, sizeof(z.verifier));
	/* A killed client_secret_command is reaped on the loop. */
	while (
	    secret_detached() > 0 && event_base_loop(z.base, EVLOOP_ONCE) == 0)
		continue;
	evdns_base_free(z.dns, 0);
	event_base_free(z.base);
	return z.rc;
}
