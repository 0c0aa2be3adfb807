/*
 * An account's access token on the loop: taken from the token file while
 * it is fresh, else refreshed at the token endpoint, the answer stored
 * durably (a rotated refresh token above all) before the access token is
 * handed out. The file is read on every request: it is tiny, and it is
 * the truth, so an `--authorize` run while the daemon runs takes effect at
 * the next poll. Tokens are kept in memory only when storing them failed.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "conf.h"
#include "https.h"
#include "log.h"
#include "net.h"
#include "oauth2.h"
#include "testhook.h"
#include "wipe.h"

/* If an account has no timeout (conf.c requires one, tests may not). */
#define OAUTH2_DEFAULT_TIMEOUT 60

/* Per account: what survives between requests. */
struct cached {
	struct cached *next;
	char name[CONF_NAME_MAX + 1];
	/* Newer than the file, which could not be written: use these. */
	bool unsaved;
	struct oauth2_token unsaved_tok;
	bool announced; /* the token's age was logged */
	bool seen;	/* times holds what a request saw */
	struct oauth2_times times;
	struct oauth2_req *busy; /* a refresh under way */
};

struct oauth2_req {
	struct event_base *base;
	oauth2_cb cb;
	void *arg;
	struct cached *c;
	char account[CONF_NAME_MAX + 1];
	char *path; /* the token file */
	struct oauth2_token tok;
	struct evdns_base *dns;
	struct https_req *http;
	struct event *done_ev;
	enum oauth2_fail fail;
	char err[768];
};

static struct cached *cache;

static struct cached *cache_get(const char *name);
static void fail(struct oauth2_req *r, enum oauth2_fail f, const char *fmt, ...)
    LOG_PRINTF(3, 4);
static void age(char *buf, size_t len, long secs);
static void announce(struct oauth2_req *r, time_t now);
static int load(struct oauth2_req *r);
static void refresh(
    struct oauth2_req *r, const struct account *a, const char *client_secret);
static void refreshed(
    void *arg, int status, const char *body, size_t len, const char *err);
static void commit(struct oauth2_req *r, struct oauth2_token *fresh);
static void done_cb(evutil_socket_t fd, short what, void *arg);
static void req_free(struct oauth2_req *r);

/* Keeps the times of R's tokens for the account's status. */
static void
remember(struct oauth2_req *r)
{
	r->c->seen = true;
	r->c->times.refresh_obtained = r->tok.refresh_obtained;
	r->c->times.refresh_expires = r->tok.refresh_expires;
	r->c->times.access_expires =
	    r->tok.access != NULL ? r->tok.access_expires : 0;
}

bool
oauth2_times(const char *account, struct oauth2_times *t)
{
	const struct cached *c;

	for (c = cache; c != NULL; c = c->next)
		if (strcmp(c->name, account) == 0 && c->seen) {
			*t = c->times;
			return true;
		}
	return false;
}

static struct cached *
cache_get(const char *name)
{
	struct cached *c;

	for (c = cache; c != NULL; c = c->next)
		if (strcmp(c->name, name) == 0)
			return c;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return NULL;
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->next = cache;
	cache = c;
	return c;
}

static void
fail(struct oauth2_req *r, enum oauth2_fail f, const char *fmt, ...)
{
	va_list ap;

	r->fail = f;
	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
}

/* "3d4h", "25m": how old a token is, or how long it has left. */
static void
age(char *buf, size_t len, long secs)
{
	if (secs < 0)
		snprintf(buf, len, "-%ldm", -secs / 60);
	else if (secs >= 86400)
		snprintf(
		    buf, len, "%ldd%ldh", secs / 86400, secs % 86400 / 3600);
	else if (secs >= 3600)
		snprintf(buf, len, "%ldh%ldm", secs / 3600, secs % 3600 / 60);
	else
		snprintf(buf, len, "%ldm", secs / 60);
}

/*
 * Once per process and account: how old the refresh token is and when
 * what expires, with a warning well before a known expiry.
 */
static void
announce(struct oauth2_req *r, time_t now)
{
	const struct oauth2_token *t = &r->tok;
	char a[32], e[32], re[32];

	remember(r);
	if (r->c->announced)
		return;
	r->c->announced = true;
	age(a, sizeof(a), (long)(now - t->refresh_obtained));
	age(e, sizeof(e), (long)(t->access_expires - now));
	age(re, sizeof(re), (long)(t->refresh_expires - now));
	log_info(r->account,
	    "oauth2 token_file=%s refresh_age=%s access_expires_in=%s refresh_expires_in=%s",
	    r->path, t->refresh_obtained != 0 ? a : "unknown",
	    t->access != NULL && t->access_expires != 0 ? e : "none",
	    t->refresh_expires != 0 ? re : "unknown");
	if (t->refresh_expires != 0 &&
	    t->refresh_expires - now < OAUTH2_WARN_SECS)
		log_warnx(r->account,
		    "warning: the OAuth2 refresh token expires in %s: run `popfetchd --authorize %s` before then",
		    re, r->account);
}

/* The tokens to start from: unsaved ones, else the file's. 0 or -1. */
static int
load(struct oauth2_req *r)
{
	char err[512];

	if (r->c->unsaved) {
		r->tok = r->c->unsaved_tok;
		r->tok.access = r->tok.access ? strdup(r->tok.access) : NULL;
		r->tok.refresh = strdup(r->c->unsaved_tok.refresh);
		if (r->tok.refresh == NULL) {
			fail(r, OAUTH2_FAIL_LOCAL, "out of memory");
			return -1;
		}
		return 0;
	}
	if (oauth2_store_load(r->path, &r->tok, err, sizeof(err)) == 0)
		return 0;
	if (errno == ENOENT)
		fail(r, OAUTH2_FAIL_AUTH,
		    "oauth2: not authorised yet (no %s): run `popfetchd --authorize %s`",
		    r->path, r->account);
	else
		fail(r, OAUTH2_FAIL_LOCAL, "oauth2: %s", err);
	return -1;
}

/* Starts the refresh (RFC 6749 6) at the account's token endpoint. */
static void
refresh(
    struct oauth2_req *r, const struct account *a, const char *client_secret)
{
	struct oauth2_provider p;
	struct https_post post = {0};
	char err[512], *form;

	oauth2_settings(a, &p);
	const char *kv[] = {"grant_type", "refresh_token", "refresh_token",
	    r->tok.refresh, "client_id", a->oauth2.client_id, "client_secret",
	    client_secret, "scope", p.scope, NULL};

	if (p.token_endpoint == NULL) {
		fail(r, OAUTH2_FAIL_CONFIG, "oauth2: no token_endpoint");
		return;
	}
	if (r->c->busy != NULL) {
		fail(r, OAUTH2_FAIL_TEMP,
		    "oauth2: a refresh for this account is under way");
		return;
	}
	if ((form = oauth2_form(kv)) == NULL ||
	    (r->dns = net_dns_new(r->base, err, sizeof(err))) == NULL) {
		fail(r, OAUTH2_FAIL_LOCAL, "out of memory");
		goto out;
	}
	post.url = p.token_endpoint;
	post.ca_file = a->oauth2.ca_file;
	post.form = form;
	post.timeout = a->timeout > 0 ? a->timeout : OAUTH2_DEFAULT_TIMEOUT;
	post.body_max = OAUTH2_BODY_MAX;
	post.account = a->name;
	r->http =
	    https_post(r->base, r->dns, &post, refreshed, r, err, sizeof(err));
	if (r->http == NULL) {
		fail(r, OAUTH2_FAIL_TEMP, "oauth2: %s", err);
		goto out;
	}
	r->c->busy = r;
	log_debug(r->account, "oauth2 refreshing at %s", p.token_endpoint);
out:
	if (form != NULL) {
		wipe(form, strlen(form));
		free(form);
	}
}

/* The token endpoint's answer. */
static void
refreshed(void *arg, int status, const char *body, size_t len, const char *err)
{
	struct oauth2_req *r = arg;
	struct oauth2_token fresh;
	char why[512];

	r->http = NULL;
	r->c->busy = NULL;
	if (status == 0) {
		fail(r, OAUTH2_FAIL_TEMP, "oauth2: token endpoint: %s", err);
	} else {
		switch (oauth2_parse_token(status, body, len, TESTHOOK_NOW(),
		    &fresh, why, sizeof(why))) {
		case OAUTH2_OK:
			commit(r, &fresh);
			break;
		case OAUTH2_DENIED:
			fail(r, OAUTH2_FAIL_AUTH,
			    "oauth2: %s: the refresh token was refused; run `popfetchd --authorize %s` to authorise the account again",
			    why, r->account);
			break;
		case OAUTH2_PENDING:
		case OAUTH2_SLOW_DOWN:
		case OAUTH2_TEMPORARY:
			fail(r, OAUTH2_FAIL_TEMP, "oauth2: %s", why);
			break;
		}
	}
	event_active(r->done_ev, EV_TIMEOUT, 1);
}

/*
 * Takes FRESH (consumed) into R's tokens and stores them. The new refresh
 * token must be on disk before the access token is used: the provider
 * may have invalidated the old one already, and a crash after a login
 * with the new access token would leave only the dead one behind.
 */
static void
commit(struct oauth2_req *r, struct oauth2_token *fresh)
{
	struct oauth2_token *t = &r->tok;
	bool rotated =
	    fresh->refresh != NULL && strcmp(fresh->refresh, t->refresh) != 0;
	char err[512], e[32];

	if (fresh->refresh != NULL) {
		oauth2_token_clear(t);
		*t = *fresh;
	} else {
		if (t->access != NULL) {
			wipe(t->access, strlen(t->access));
			free(t->access);
		}
		t->access = fresh->access;
		t->access_expires = fresh->access_expires;
		t->access_obtained = fresh->access_obtained;
	}
	memset(fresh, 0, sizeof(*fresh));
	if (oauth2_store_save(r->path, t, err, sizeof(err)) == -1) {
		/* Keep them: the next try may store them, or at least use them.
		 */
		oauth2_token_clear(&r->c->unsaved_tok);
		r->c->unsaved_tok = *t;
		r->c->unsaved_tok.access =
		    t->access != NULL ? strdup(t->access) : NULL;
		r->c->unsaved_tok.refresh = strdup(t->refresh);
		r->c->unsaved = r->c->unsaved_tok.refresh != NULL;
		fail(r, OAUTH2_FAIL_LOCAL,
		    "oauth2: cannot store the tokens: %s", err);
		return;
	}
	oauth2_token_clear(&r->c->unsaved_tok);
	r->c->unsaved = false;
	remember(r);
	TESTHOOK_CRASH_POINT("oauth2 token stored");
	age(e, sizeof(e), (long)(t->access_expires - t->access_obtained));
	log_info(r->account, "oauth2 token refreshed expires_in=%s rotated=%s",
	    t->access_expires != 0 ? e : "unknown", rotated ? "yes" : "no");
}

static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct oauth2_req *r = arg;

	if (r->fail == OAUTH2_FAIL_NONE && r->tok.access != NULL)
		r->cb(r->arg, r->tok.access, OAUTH2_FAIL_NONE, NULL);
	else
		r->cb(r->arg, NULL,
		    r->fail != OAUTH2_FAIL_NONE ? r->fail : OAUTH2_FAIL_TEMP,
		    r->err[0] != '\0' ? r->err : "oauth2: no access token");
	req_free(r);
}

static void
req_free(struct oauth2_req *r)
{
	https_cancel(&r->http);
	if (r->c != NULL && r->c->busy == r)
		r->c->busy = NULL;
	/* After the connection that used it. */
	if (r->dns != NULL)
		evdns_base_free(r->dns, 0);
	if (r->done_ev != NULL)
		event_free(r->done_ev);
	oauth2_token_clear(&r->tok);
	free(r->path);
	wipe(r, sizeof(*r));
	free(r);
}

struct oauth2_req *
oauth2_get(struct event_base *base, const struct account *a,
    const char *client_secret, oauth2_cb cb, void *arg)
{
	struct oauth2_req *r;
	time_t now = TESTHOOK_NOW();

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->base = base;
	r->cb = cb;
	r->arg = arg;
	snprintf(r->account, sizeof(r->account), "%s", a->name);
	if ((r->done_ev = event_new(base, -1, 0, done_cb, r)) == NULL ||
	    (r->c = cache_get(a->name)) == NULL ||
	    (a->oauth2.token_file != NULL &&
		(r->path = strdup(a->oauth2.token_file)) == NULL)) {
		req_free(r);
		return NULL;
	}
	if (r->path == NULL)
		fail(r, OAUTH2_FAIL_CONFIG, "oauth2: no token_file");
	else if (load(r) == 0) {
		announce(r, now);
		if (oauth2_token_fresh(&r->tok, now))
			log_debug(r->account,
			    "oauth2 cached token expires_in=%lds",
			    (long)(r->tok.access_expires - now));
		else
			refresh(r, a, client_secret);
	}
	if (r->http == NULL)
		event_active(r->done_ev, EV_TIMEOUT, 1);
	return r;
}

void
oauth2_cancel(struct oauth2_req **rp)
{
	struct oauth2_req *r = *rp;

	*rp = NULL;
	if (r != NULL)
		req_free(r);
}

void
oauth2_forget(void)
{
	struct cached *c;

	while ((c = cache) != NULL) {
		cache = c->next;
		oauth2_token_clear(&c->unsaved_tok);
		free(c);
	}
}
