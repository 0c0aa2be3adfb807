/*
 * The pure parts of OAuth2: provider presets, token endpoint answers
 * (parsed with json-c, never by hand), form encoding and PKCE. No I/O.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "conf.h"
#include "log.h"
#include "oauth2.h"
#include "wipe.h"

/* Room for an error code and description from the endpoint, escaped. */
#define WIRE_DESC_MAX 300
/*
 * A lifetime past ten years is not one a provider means; clamping keeps
 * the addition to NOW from overflowing time_t.
 */
#define WIRE_LIFETIME_MAX (10L * 365 * 24 * 3600)

static const struct oauth2_provider providers[] = {
    {
	.name = "microsoft",
	.authorization_endpoint =
	    "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
	.token_endpoint =
	    "https://login.microsoftonline.com/common/oauth2/v2.0/token",
	.device_endpoint =
	    "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode",
	/* offline_access: without it no refresh token comes back. */
	.scope =
	    "https://outlook.office.com/POP.AccessAsUser.All offline_access",
	.flow = "device",
    },
    {
	.name = "gmail",
	.authorization_endpoint =
	    "https://accounts.google.com/o/oauth2/v2/auth",
	.token_endpoint = "https://oauth2.googleapis.com/token",
	/* Google's device flow does not grant the mail scope. */
	.device_endpoint = NULL,
	.scope = "https://mail.google.com/",
	.flow = "loopback",
    },
};

static const char *pick(const char *own, const char *preset);
static json_object *parse_object(const char *body, size_t len);
static const char *get_string(json_object *o, const char *key);
static bool get_long(json_object *o, const char *key, long *out);
static enum oauth2_status error_answer(
    int status, json_object *o, char *err, size_t errlen);
static char *dup_token(
    const char *s, const char *what, char *err, size_t errlen);
static int b64url(
    const unsigned char *in, size_t len, char *out, size_t outlen);

const struct oauth2_provider *
oauth2_provider(const char *name)
{
	size_t i;

	for (i = 0; name != NULL && i < sizeof(providers) / sizeof(*providers);
	     i++)
		if (strcmp(providers[i].name, name) == 0)
			return &providers[i];
	return NULL;
}

static const char *
pick(const char *own, const char *preset)
{
	return own != NULL ? own : preset;
}

void
oauth2_settings(const struct account *a, struct oauth2_provider *out)
{
	const struct conf_oauth2 *o = &a->oauth2;
	static const struct oauth2_provider none = {0};
	const struct oauth2_provider *p = oauth2_provider(o->provider);

	if (p == NULL)
		p = &none;
	out->name = o->provider;
	out->authorization_endpoint =
	    pick(o->authorization_endpoint, p->authorization_endpoint);
	out->token_endpoint = pick(o->token_endpoint, p->token_endpoint);
	out->device_endpoint = pick(o->device_endpoint, p->device_endpoint);
	out->scope = pick(o->scope, p->scope);
	/* Without a preset: the device grant where there is an endpoint. */
	out->flow = pick(o->flow, p->flow);
	if (out->flow == NULL)
		out->flow =
		    out->device_endpoint != NULL ? "device" : "loopback";
}

void
oauth2_token_clear(struct oauth2_token *t)
{
	if (t->access != NULL) {
		wipe(t->access, strlen(t->access));
		free(t->access);
	}
	if (t->refresh != NULL) {
		wipe(t->refresh, strlen(t->refresh));
		free(t->refresh);
	}
	memset(t, 0, sizeof(*t));
}

bool
oauth2_token_fresh(const struct oauth2_token *t, time_t now)
{
	return t->access != NULL && t->access_expires > now &&
	       t->access_expires - now > OAUTH2_MARGIN;
}

/* The JSON object in BODY, or NULL if it is not one. */
static json_object *
parse_object(const char *body, size_t len)
{
	json_tokener *tok;
	json_object *o;

	if (len > OAUTH2_BODY_MAX || (tok = json_tokener_new()) == NULL)
		return NULL;
	o = json_tokener_parse_ex(tok, body, (int)len);
	/* Trailing bytes after the object: not the answer we expect. */
	if (o != NULL && (json_tokener_get_error(tok) != json_tokener_success ||
			     json_tokener_get_parse_end(tok) != len)) {
		json_object_put(o);
		o = NULL;
	}
	json_tokener_free(tok);
	if (o != NULL && !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		o = NULL;
	}
	return o;
}

static const char *
get_string(json_object *o, const char *key)
{
	json_object *v;

	if (!json_object_object_get_ex(o, key, &v) ||
	    !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* An integer member; some endpoints send expires_in as a string. */
static bool
get_long(json_object *o, const char *key, long *out)
{
	json_object *v;
	const char *s;
	char *end;
	long n;

	if (!json_object_object_get_ex(o, key, &v))
		return false;
	if (json_object_is_type(v, json_type_int)) {
		n = (long)json_object_get_int64(v);
	} else if (json_object_is_type(v, json_type_string)) {
		s = json_object_get_string(v);
		errno = 0;
		n = strtol(s, &end, 10);
		if (errno != 0 || end == s || *end != '\0')
			return false;
	} else {
		return false;
	}
	if (n < 0)
		return false;
	*out = n > WIRE_LIFETIME_MAX ? WIRE_LIFETIME_MAX : n;
	return true;
}

/* An error answer (RFC 6749 5.2, RFC 8628 3.5) and what it means. */
static enum oauth2_status
error_answer(int status, json_object *o, char *err, size_t errlen)
{
	const char *code = o != NULL ? get_string(o, "error") : NULL;
	const char *desc =
	    o != NULL ? get_string(o, "error_description") : NULL;
	char ecode[WIRE_DESC_MAX], edesc[WIRE_DESC_MAX];

	log_escape(
	    ecode, sizeof(ecode), code ? code : "", code ? strlen(code) : 0);
	log_escape(
	    edesc, sizeof(edesc), desc ? desc : "", desc ? strlen(desc) : 0);
	if (code == NULL) {
		snprintf(err, errlen, "token endpoint answered HTTP %d%s",
		    status, o == NULL ? " without a JSON error" : "");
		return OAUTH2_TEMPORARY;
	}
	snprintf(err, errlen, "token endpoint: HTTP %d error=%s%s%s", status,
	    ecode, desc != NULL ? " description=" : "", edesc);
	if (strcmp(code, "authorization_pending") == 0)
		return OAUTH2_PENDING;
	if (strcmp(code, "slow_down") == 0)
		return OAUTH2_SLOW_DOWN;
	/* Asking again later cannot help these: somebody must act. */
	if (strcmp(code, "invalid_grant") == 0 ||
	    strcmp(code, "invalid_client") == 0 ||
	    strcmp(code, "unauthorized_client") == 0 ||
	    strcmp(code, "invalid_scope") == 0 ||
	    strcmp(code, "access_denied") == 0 ||
	    strcmp(code, "expired_token") == 0 ||
	    strcmp(code, "unsupported_grant_type") == 0 ||
	    strcmp(code, "invalid_request") == 0)
		return OAUTH2_DENIED;
	/* temporarily_unavailable, server_error and what we do not know. */
	return OAUTH2_TEMPORARY;
}

/* A copy of token S, or NULL with ERR if it is unusable. */
static char *
dup_token(const char *s, const char *what, char *err, size_t errlen)
{
	const char *p;
	char *d;

	if (s == NULL || s[0] == '\0') {
		snprintf(
		    err, errlen, "token endpoint: answer without %s", what);
		return NULL;
	}
	if (strlen(s) >= OAUTH2_TOKEN_MAX) {
		snprintf(err, errlen, "token endpoint: %s longer than %d bytes",
		    what, OAUTH2_TOKEN_MAX - 1);
		return NULL;
	}
	/* It goes into a SASL line and a JSON file: printable ASCII only. */
	for (p = s; *p != '\0'; p++) {
		if (*p < 0x21 || *p > 0x7e) {
			snprintf(err, errlen,
			    "token endpoint: %s has a byte that is not printable ASCII",
			    what);
			return NULL;
		}
	}
	if ((d = strdup(s)) == NULL)
		snprintf(err, errlen, "out of memory");
	return d;
}

enum oauth2_status
oauth2_parse_token(int status, const char *body, size_t len, time_t now,
    struct oauth2_token *out, char *err, size_t errlen)
{
	json_object *o = parse_object(body, len);
	enum oauth2_status r = OAUTH2_TEMPORARY;
	const char *type, *refresh;
	long n;

	memset(out, 0, sizeof(*out));
	if (status != 200) {
		r = error_answer(status, o, err, errlen);
		goto out;
	}
	if (o == NULL) {
		snprintf(
		    err, errlen, "token endpoint: answer is not a JSON object");
		goto out;
	}
	type = get_string(o, "token_type");
	if (type != NULL && strcasecmp(type, "bearer") != 0) {
		snprintf(
		    err, errlen, "token endpoint: token_type is not Bearer");
		goto out;
	}
	if ((out->access = dup_token(get_string(o, "access_token"),
		 "access_token", err, errlen)) == NULL)
		goto out;
	refresh = get_string(o, "refresh_token");
	if (refresh != NULL && (out->refresh = dup_token(refresh,
				    "refresh_token", err, errlen)) == NULL)
		goto out;
	out->access_obtained = now;
	/* Without expires_in the token is used once and not kept. */
	out->access_expires = get_long(o, "expires_in", &n) ? now + n : 0;
	if (out->refresh != NULL) {
		out->refresh_obtained = now;
		if (get_long(o, "refresh_token_expires_in", &n))
			out->refresh_expires = now + n;
	}
	r = OAUTH2_OK;
out:
	if (r != OAUTH2_OK)
		oauth2_token_clear(out);
	if (o != NULL)
		json_object_put(o);
	return r;
}

static char *
dup_field(json_object *o, const char *key, bool required, bool *ok)
{
	const char *s = get_string(o, key);
	char *d;

	if (s == NULL || s[0] == '\0') {
		if (required)
			*ok = false;
		return NULL;
	}
	if ((d = strdup(s)) == NULL)
		*ok = false;
	return d;
}

enum oauth2_status
oauth2_parse_device(int status, const char *body, size_t len,
    struct oauth2_device *out, char *err, size_t errlen)
{
	json_object *o = parse_object(body, len);
	enum oauth2_status r = OAUTH2_TEMPORARY;
	bool ok = true;

	memset(out, 0, sizeof(*out));
	if (status != 200) {
		r = error_answer(status, o, err, errlen);
		goto out;
	}
	if (o == NULL) {
		snprintf(err, errlen,
		    "device endpoint: answer is not a JSON object");
		goto out;
	}
	out->device_code = dup_field(o, "device_code", true, &ok);
	out->user_code = dup_field(o, "user_code", true, &ok);
	/* Microsoft spelt it verification_url for a while. */
	out->verification_uri = dup_field(o, "verification_uri", false, &ok);
	if (out->verification_uri == NULL)
		out->verification_uri =
		    dup_field(o, "verification_url", true, &ok);
	out->verification_uri_complete =
	    dup_field(o, "verification_uri_complete", false, &ok);
	if (!get_long(o, "expires_in", &out->expires_in))
		ok = false;
	if (!get_long(o, "interval", &out->interval) || out->interval < 1)
		out->interval = 5;
	if (!ok) {
		snprintf(err, errlen,
		    "device endpoint: answer without device_code, user_code, verification_uri or expires_in");
		goto out;
	}
	r = OAUTH2_OK;
out:
	if (r != OAUTH2_OK)
		oauth2_device_clear(out);
	if (o != NULL)
		json_object_put(o);
	return r;
}

void
oauth2_device_clear(struct oauth2_device *d)
{
	if (d->device_code != NULL)
		wipe(d->device_code, strlen(d->device_code));
	free(d->device_code);
	free(d->user_code);
	free(d->verification_uri);
	free(d->verification_uri_complete);
	memset(d, 0, sizeof(*d));
}

/* RFC 3986 unreserved characters pass; everything else is %XX. */
char *
oauth2_urlencode(const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(s), i, o = 0;
	unsigned char c;
	char *d;

	if ((d = malloc(3 * n + 1)) == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (isalnum(c) || c == '-' || c == '.' || c == '_' ||
		    c == '~') {
			d[o++] = (char)c;
		} else {
			d[o++] = '%';
			d[o++] = hex[c >> 4];
			d[o++] = hex[c & 15];
		}
	}
	d[o] = '\0';
	return d;
}

char *
oauth2_form(const char *const *kv)
{
	size_t cap = 1, len = 0, i;
	char *out, *k, *v;

	for (i = 0; kv[i] != NULL; i += 2)
		if (kv[i + 1] != NULL)
			cap += 3 * (strlen(kv[i]) + strlen(kv[i + 1])) + 2;
	if ((out = malloc(cap)) == NULL)
		return NULL;
	out[0] = '\0';
	for (i = 0; kv[i] != NULL; i += 2) {
		if (kv[i + 1] == NULL)
			continue;
		k = oauth2_urlencode(kv[i]);
		v = oauth2_urlencode(kv[i + 1]);
		if (k == NULL || v == NULL) {
			free(k);
			if (v != NULL)
				wipe(v, strlen(v));
			free(v);
			wipe(out, cap);
			free(out);
			return NULL;
		}
		len += (size_t)snprintf(
		    out + len, cap - len, "%s%s=%s", len > 0 ? "&" : "", k, v);
		free(k);
		wipe(v, strlen(v));
		free(v);
	}
	return out;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *
oauth2_query_get(const char *q, const char *name)
{
	size_t nlen = strlen(name), vlen, i, o = 0;
	const char *p, *end;
	char *d;
	int h, l;

	for (p = q; p != NULL && *p != '\0';
	     p = (end = strchr(p, '&')) != NULL ? end + 1 : NULL) {
		if (strncmp(p, name, nlen) != 0 || p[nlen] != '=')
			continue;
		p += nlen + 1;
		vlen = strcspn(p, "&");
		if ((d = malloc(vlen + 1)) == NULL)
			return NULL;
		for (i = 0; i < vlen; i++) {
			if (p[i] == '+') {
				d[o++] = ' ';
			} else if (p[i] == '%' && i + 2 < vlen &&
				   (h = hexval(p[i + 1])) >= 0 &&
				   (l = hexval(p[i + 2])) >= 0) {
				d[o++] = (char)(h << 4 | l);
				i += 2;
			} else {
				d[o++] = p[i];
			}
		}
		d[o] = '\0';
		return d;
	}
	return NULL;
}

/* Unpadded base64url (RFC 4648 5) of LEN bytes at IN. */
static int
b64url(const unsigned char *in, size_t len, char *out, size_t outlen)
{
	unsigned char buf[4 * ((64 + 2) / 3) + 1];
	size_t n, i;

	if (len > 64 || (n = (size_t)EVP_EncodeBlock(buf, in, (int)len)) == 0)
		return -1;
	while (n > 0 && buf[n - 1] == '=')
		n--;
	if (n + 1 > outlen)
		return -1;
	for (i = 0; i < n; i++)
		out[i] = buf[i] == '+'	 ? '-'
			 : buf[i] == '/' ? '_'
					 : (char)buf[i];
	out[n] = '\0';
	return 0;
}

int
oauth2_random(char *out, size_t outlen, size_t len)
{
	unsigned char r[64];
	int rc;

	if (len > sizeof(r) || RAND_bytes(r, (int)len) != 1)
		return -1;
	rc = b64url(r, len, out, outlen);
	wipe(r, sizeof(r));
	return rc;
}

int
oauth2_pkce_verifier(char *out, size_t outlen)
{
	/* 32 bytes: 43 characters, the shortest verifier RFC 7636 allows. */
	return oauth2_random(out, outlen, 32);
}

int
oauth2_pkce_challenge(const char *verifier, char *out, size_t outlen)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen;

	if (EVP_Digest(verifier, strlen(verifier), md, &mdlen, EVP_sha256(),
		NULL) != 1)
		return -1;
	return b64url(md, mdlen, out, outlen);
}
