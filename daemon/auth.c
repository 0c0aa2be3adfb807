/* Credential encodings for POP3 authentication, and SCRAM through GNU SASL. */
#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gsasl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "auth.h"
#include "wipe.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/*
 * base64 written piece by piece: a credential never has to be assembled
 * in a scratch buffer first, and at most two of its bytes wait in Q.
 */
struct b64 {
	char *out;
	size_t o;
	unsigned char q[3];
	size_t nq;
};

static bool b64_fits(size_t n, size_t outlen);
static void b64_group(struct b64 *b);
static void b64_put(struct b64 *b, const void *p, size_t len);
static void b64_puts(struct b64 *b, const char *s);
static int b64_end(struct b64 *b);
static int b64_value(char c);
static bool sasl_text(const char *s);
static size_t saslname_len(const char *s);
static void b64_saslname(struct b64 *b, const char *s);

/*
 * Whether N bytes, encoded and NUL-terminated, fit in OUTLEN bytes. Also
 * keeps the encoded length within an int, the encoders' return type.
 */
static bool
b64_fits(size_t n, size_t outlen)
{
	if (n > (size_t)INT_MAX / 4 * 3 - 3)
		return false;
	return outlen >= AUTH_BASE64_SIZE(n);
}

/* Encodes the NQ (1 to 3) bytes waiting in Q. */
static void
b64_group(struct b64 *b)
{
	unsigned char *q = b->q;

	if (b->nq < 3)
		memset(q + b->nq, 0, 3 - b->nq);
	b->out[b->o++] = b64_alphabet[q[0] >> 2];
	b->out[b->o++] = b64_alphabet[(q[0] & 3) << 4 | q[1] >> 4];
	b->out[b->o++] =
	    b->nq > 1 ? b64_alphabet[(q[1] & 15) << 2 | q[2] >> 6] : '=';
	b->out[b->o++] = b->nq > 2 ? b64_alphabet[q[2] & 63] : '=';
	b->nq = 0;
}

static void
b64_put(struct b64 *b, const void *p, size_t len)
{
	const unsigned char *s = p;
	size_t i;

	for (i = 0; i < len; i++) {
		b->q[b->nq++] = s[i];
		if (b->nq == 3)
			b64_group(b);
	}
}

static void
b64_puts(struct b64 *b, const char *s)
{
	b64_put(b, s, strlen(s));
}

/* Flushes the last group, terminates OUT; returns its length. */
static int
b64_end(struct b64 *b)
{
	if (b->nq > 0)
		b64_group(b);
	b->out[b->o] = '\0';
	wipe(b->q, sizeof(b->q));
	return (int)b->o;
}

/* The 6-bit value of base64 character C, or -1. */
static int
b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Non-empty and free of control characters: XOAUTH2 and OAUTHBEARER
 * separate their fields with \x01, so one inside a field would let it
 * forge the next.
 */
static bool
sasl_text(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	if (*p == '\0')
		return false;
	for (; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			return false;
	return true;
}

/* Length of S written as an RFC 5801 saslname (',' and '=' escaped). */
static size_t
saslname_len(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		n += *s == ',' || *s == '=' ? 3 : 1;
	return n;
}

static void
b64_saslname(struct b64 *b, const char *s)
{
	for (; *s != '\0'; s++) {
		if (*s == ',')
			b64_puts(b, "=2C");
		else if (*s == '=')
			b64_puts(b, "=3D");
		else
			b64_put(b, s, 1);
	}
}

int
auth_base64(const void *in, size_t len, char *out, size_t outlen)
{
	struct b64 b = {.out = out};

	if (!b64_fits(len, outlen))
		return -1;
	b64_put(&b, in, len);
	return b64_end(&b);
}

int
auth_base64_decode(
    const char *in, unsigned char *out, size_t outlen, size_t *outn)
{
	size_t len = strlen(in), pad = 0, i, j, o = 0;
	unsigned long v;
	bool last;
	int d;

	*outn = 0;
	if (len % 4 != 0)
		return -1;
	if (len > 0 && in[len - 1] == '=')
		pad = len > 1 && in[len - 2] == '=' ? 2 : 1;
	if (len / 4 * 3 - pad > outlen)
		return -1;
	for (i = 0; i < len; i += 4) {
		v = 0;
		for (j = 0; j < 4; j++) {
			/* '=' only as the padding counted above. */
			if (i + 4 == len && j >= 4 - pad)
				d = 0;
			else if ((d = b64_value(in[i + j])) < 0)
				goto bad;
			v = v << 6 | (unsigned long)d;
		}
		last = i + 4 == len;
		/* Canonical form only: the bits the padding hides are 0. */
		if (last && (v & (pad == 2 ? 0xffff : pad == 1 ? 0xff : 0)))
			goto bad;
		out[o++] = (unsigned char)(v >> 16);
		if (!last || pad < 2)
			out[o++] = (unsigned char)(v >> 8);
		if (!last || pad < 1)
			out[o++] = (unsigned char)v;
	}
	*outn = o;
	return 0;
bad:
	wipe(out, o);
	return -1;
}

int
auth_plain(const char *user, const char *pass, char *out, size_t outlen)
{
	struct b64 b = {.out = out};

	if (!b64_fits(strlen(user) + strlen(pass) + 2, outlen))
		return -1;
	/* authzid empty: act as the user we authenticate as. */
	b64_put(&b, "", 1);
	b64_puts(&b, user);
	b64_put(&b, "", 1);
	b64_puts(&b, pass);
	return b64_end(&b);
}

int
auth_xoauth2(const char *user, const char *token, char *out, size_t outlen)
{
	static const char u[] = "user=", auth[] = "\001auth=Bearer ",
			  end[] = "\001\001";
	struct b64 b = {.out = out};
	size_t n;

	if (!sasl_text(user) || !sasl_text(token))
		return -1;
	n = strlen(u) + strlen(user) + strlen(auth) + strlen(token) +
	    strlen(end);
	if (!b64_fits(n, outlen))
		return -1;
	b64_puts(&b, u);
	b64_puts(&b, user);
	b64_puts(&b, auth);
	b64_puts(&b, token);
	b64_puts(&b, end);
	return b64_end(&b);
}

int
auth_oauthbearer(const char *user, const char *host, unsigned port,
    const char *token, char *out, size_t outlen)
{
	static const char auth[] = "\001auth=Bearer ", end[] = "\001\001";
	struct b64 b = {.out = out};
	char portkv[16];
	size_t n;

	if ((user[0] != '\0' && !sasl_text(user)) || !sasl_text(host) ||
	    !sasl_text(token) || port == 0 || port > 65535)
		return -1;
	snprintf(portkv, sizeof(portkv), "\001port=%u", port);
	/* "n," ["a=" saslname] "," "\001host=" host portkv auth token end */
	n = 3 + (user[0] != '\0' ? 2 + saslname_len(user) : 0) + 6 +
	    strlen(host) + strlen(portkv) + strlen(auth) + strlen(token) +
	    strlen(end);
	if (!b64_fits(n, outlen))
		return -1;
	/* No channel binding ("n"): POP3 has no way to ask for it. */
	b64_puts(&b, "n,");
	if (user[0] != '\0') {
		b64_puts(&b, "a=");
		b64_saslname(&b, user);
	}
	b64_puts(&b, ",\001host=");
	b64_puts(&b, host);
	b64_puts(&b, portkv);
	b64_puts(&b, auth);
	b64_puts(&b, token);
	b64_puts(&b, end);
	return b64_end(&b);
}

int
auth_external(char *out, size_t outlen)
{
	/* The identity comes from the TLS client certificate. */
	if (outlen < 2)
		return -1;
	memcpy(out, "=", 2);
	return 1;
}

int
auth_apop(const char *timestamp, const char *secret, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen, i;
	EVP_MD_CTX *ctx;
	int ok;

	if (outlen < 33 || (ctx = EVP_MD_CTX_new()) == NULL)
		return -1;
	ok = EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
	     EVP_DigestUpdate(ctx, timestamp, strlen(timestamp)) == 1 &&
	     EVP_DigestUpdate(ctx, secret, strlen(secret)) == 1 &&
	     EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 16;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -1;
	for (i = 0; i < mdlen; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[32] = '\0';
	return 0;
}

/* ---- SCRAM ---- */

/*
 * A server-first-message is a nonce, a salt and a count: a few hundred
 * bytes. Anything longer than this is not one.
 */
#define SCRAM_MSG_MAX 4096
/* Our nonce, as GNU SASL makes it (24 base64 characters), with room. */
#define SCRAM_NONCE_MAX 128

struct auth_scram {
	Gsasl *ctx;
	Gsasl_session *sess;
	unsigned step; /* server messages taken so far */
	enum auth_cb cb;
	bool verified;
	char cnonce[SCRAM_NONCE_MAX];
};

static const char *const auto_order[] = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256",
    "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "PLAIN", NULL};

static bool
offers(const char *offered, const char *mech)
{
	size_t n = strlen(mech), w;
	const char *p = offered;

	while (*p != '\0') {
		p += strspn(p, " ");
		w = strcspn(p, " ");
		if (w == n && strncasecmp(p, mech, n) == 0)
			return true;
		p += w;
	}
	return false;
}

bool
auth_mech_plus(const char *mech)
{
	size_t n = strlen(mech);

	return n > 5 && strcmp(mech + n - 5, "-PLUS") == 0;
}

const char *
auth_auto_mech(const char *offered, bool cb)
{
	size_t i;

	for (i = 0; auto_order[i] != NULL; i++)
		if ((cb || !auth_mech_plus(auto_order[i])) &&
		    offers(offered, auto_order[i]))
			return auto_order[i];
	return NULL;
}

/* A SCRAM attribute value: printable, no ',' (RFC 5802 7). */
static bool
scram_value(const char *v, size_t n)
{
	size_t i;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++)
		if (v[i] < 0x21 || v[i] > 0x7e || v[i] == ',')
			return false;
	return true;
}

/* The decimal count of N bytes at V, within the accepted range. */
static bool
scram_count(const char *v, size_t n, unsigned long *iter)
{
	unsigned long c = 0;
	size_t i;

	if (n == 0 || n > 9 || v[0] == '0')
		return false;
	for (i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return false;
		c = c * 10 + (unsigned long)(v[i] - '0');
	}
	*iter = c;
	return true;
}

int
auth_scram_server_first(
    const char *b64, const char *cnonce, unsigned long *iter)
{
	unsigned char buf[SCRAM_MSG_MAX + 1];
	const char *f[3], *m = (const char *)buf;
	size_t n, len[3], i, cn = strlen(cnonce);
	static const char keys[] = "rsi";

	if (auth_base64_decode(b64, buf, SCRAM_MSG_MAX, &n) == -1 ||
	    memchr(buf, '\0', n) != NULL)
		return -1;
	buf[n] = '\0';
	/* r=, s=, i= in this order; extensions may follow (RFC 5802 7). */
	for (i = 0; i < 3; i++) {
		if (m[0] != keys[i] || m[1] != '=')
			return -1;
		f[i] = m + 2;
		len[i] = strcspn(f[i], ",");
		if (!scram_value(f[i], len[i]))
			return -1;
		m = f[i] + len[i];
		if (i < 2 && *m++ != ',')
			return -1;
	}
	/* An extension is "x=" something (RFC 5802 7). */
	if (*m != '\0' && (m[0] != ',' || !isalpha((unsigned char)m[1]) ||
			      m[2] != '=' || m[3] == '\0'))
		return -1;
	/* Our nonce, and more: the server's part makes it fresh. */
	if (len[0] <= cn || strncmp(f[0], cnonce, cn) != 0)
		return -1;
	return scram_count(f[2], len[2], iter) ? 0 : -1;
}

static void
seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

struct auth_scram *
auth_scram_start(const char *mech, const char *user, const char *pass,
    enum auth_cb cbtype, const unsigned char *cb, size_t cblen, char *err,
    size_t errlen)
{
	char cb64[AUTH_BASE64_SIZE(64)];
	struct auth_scram *sc;
	int rc;

	if ((sc = calloc(1, sizeof(*sc))) == NULL) {
		seterr(err, errlen, "out of memory");
		return NULL;
	}
	if ((rc = gsasl_init(&sc->ctx)) != GSASL_OK ||
	    (rc = gsasl_client_start(sc->ctx, mech, &sc->sess)) != GSASL_OK) {
		seterr(err, errlen, "%s: %s", mech, gsasl_strerror(rc));
		auth_scram_free(&sc);
		return NULL;
	}
	if (auth_mech_plus(mech)) {
		if (cbtype == AUTH_CB_NONE ||
		    auth_base64(cb, cblen, cb64, sizeof(cb64)) < 0) {
			seterr(
			    err, errlen, "%s: no channel binding data", mech);
			auth_scram_free(&sc);
			return NULL;
		}
		sc->cb = cbtype;
		/* GNU SASL uses tls-exporter when given, else tls-unique. */
		gsasl_property_set(sc->sess,
		    cbtype == AUTH_CB_TLS_EXPORTER ? GSASL_CB_TLS_EXPORTER
						   : GSASL_CB_TLS_UNIQUE,
		    cb64);
	}
	/*
	 * No channel binding data for the plain variants: GNU SASL would
	 * then claim "y" (the server offers none), which it refuses to send.
	 */
	if (gsasl_property_set(sc->sess, GSASL_AUTHID, user) != GSASL_OK ||
	    gsasl_property_set(sc->sess, GSASL_PASSWORD, pass) != GSASL_OK) {
		seterr(err, errlen, "out of memory");
		auth_scram_free(&sc);
		return NULL;
	}
	return sc;
}

/* Remembers the nonce of our client-first-message ("...,r=NONCE[,...]"). */
static bool
keep_cnonce(struct auth_scram *sc, const char *msg, size_t n)
{
	const char *r = memmem(msg, n, ",r=", 3), *end;
	size_t len;

	if (r == NULL)
		return false;
	r += 3;
	end = memchr(r, ',', n - (size_t)(r - msg));
	len = end != NULL ? (size_t)(end - r) : n - (size_t)(r - msg);
	if (len == 0 || len >= sizeof(sc->cnonce))
		return false;
	memcpy(sc->cnonce, r, len);
	sc->cnonce[len] = '\0';
	return true;
}

/* Checks the server-first-message before any work is done for it. */
static enum auth_step
check_first(struct auth_scram *sc, const char *in, char *err, size_t errlen)
{
	unsigned long iter;

	if (auth_scram_server_first(in, sc->cnonce, &iter) == -1) {
		seterr(err, errlen,
		    "SCRAM: malformed server-first-message, or a nonce that does not extend ours (replayed?)");
		return AUTH_STEP_AUTH;
	}
	if (iter < AUTH_SCRAM_ITER_MIN || iter > AUTH_SCRAM_ITER_MAX) {
		seterr(err, errlen,
		    "SCRAM: server asks for %lu iterations, outside %d..%d",
		    iter, AUTH_SCRAM_ITER_MIN, AUTH_SCRAM_ITER_MAX);
		return AUTH_STEP_AUTH;
	}
	return AUTH_STEP_MORE;
}

/* What GNU SASL's failure RC means for the exchange. */
static enum auth_step
step_failure(struct auth_scram *sc, int rc, const unsigned char *in,
    size_t inlen, char *err, size_t errlen)
{
	if (sc->step == 0) {
		seterr(err, errlen, "SCRAM: %s", gsasl_strerror(rc));
		return AUTH_STEP_LOCAL;
	}
	/* RFC 5802 7: server-error, "e=" and a reason. */
	if (sc->step == 2 && inlen > 2 && memcmp(in, "e=", 2) == 0) {
		seterr(err, errlen, "SCRAM: server says %.*s",
		    (int)(inlen > 64 ? 64 : inlen - 2), (const char *)in + 2);
		return AUTH_STEP_AUTH;
	}
	/* A server-final-message that does not verify, whatever its flaw. */
	if (sc->step == 2) {
		seterr(err, errlen,
		    "SCRAM: the server did not prove it knows the password (%s)",
		    rc == GSASL_AUTHENTICATION_ERROR ? "wrong signature"
						     : gsasl_strerror(rc));
		return AUTH_STEP_AUTH;
	}
	switch (rc) {
	case GSASL_AUTHENTICATION_ERROR:
		seterr(err, errlen, "SCRAM: the server's nonce is not ours");
		return AUTH_STEP_AUTH;
	case GSASL_MALLOC_ERROR:
	case GSASL_SASLPREP_ERROR:
	case GSASL_NO_AUTHID:
	case GSASL_NO_PASSWORD:
		seterr(err, errlen, "SCRAM: %s", gsasl_strerror(rc));
		return AUTH_STEP_LOCAL;
	default:
		seterr(err, errlen, "SCRAM: malformed server message (%s)",
		    gsasl_strerror(rc));
		return AUTH_STEP_PROTO;
	}
}

enum auth_step
auth_scram_step(struct auth_scram *sc, const char *in, char *out, size_t outlen,
    char *err, size_t errlen)
{
	unsigned char raw[SCRAM_MSG_MAX];
	char *o = NULL;
	size_t rawlen = 0, olen = 0;
	enum auth_step st;
	int rc;

	if (sc->verified || (in == NULL) != (sc->step == 0)) {
		seterr(err, errlen, "SCRAM: unexpected challenge");
		return AUTH_STEP_PROTO;
	}
	if (in != NULL &&
	    auth_base64_decode(in, raw, sizeof(raw), &rawlen) == -1) {
		seterr(err, errlen, "SCRAM: challenge is not base64");
		/* In place of the server's proof, it is no proof. */
		return sc->step == 2 ? AUTH_STEP_AUTH : AUTH_STEP_PROTO;
	}
	if (sc->step == 1 &&
	    (st = check_first(sc, in, err, errlen)) != AUTH_STEP_MORE)
		return st;
	rc = gsasl_step(sc->sess, (const char *)raw, rawlen, &o, &olen);
	if (rc != GSASL_OK && rc != GSASL_NEEDS_MORE) {
		st = step_failure(sc, rc, raw, rawlen, err, errlen);
		goto out;
	}
	st = AUTH_STEP_LOCAL;
	if (sc->step == 0 && !keep_cnonce(sc, o, olen))
		seterr(err, errlen, "SCRAM: no nonce in our first message");
	else if (auth_base64(o, olen, out, outlen) < 0)
		seterr(err, errlen, "SCRAM: response too long");
	else if (rc == GSASL_OK && sc->step != 2)
		/* Only the server's signature ends it (RFC 5802 5). */
		seterr(err, errlen, "SCRAM: exchange ended early");
	else {
		sc->verified = rc == GSASL_OK;
		st = sc->verified ? AUTH_STEP_DONE : AUTH_STEP_MORE;
	}
	sc->step++;
out:
	if (o != NULL) {
		wipe(o, olen);
		gsasl_free(o);
	}
	wipe(raw, sizeof(raw));
	return st;
}

enum auth_cb
auth_scram_cb(const struct auth_scram *sc)
{
	return sc->cb;
}

bool
auth_scram_verified(const struct auth_scram *sc)
{
	return sc != NULL && sc->verified;
}

void
auth_scram_free(struct auth_scram **scp)
{
	struct auth_scram *sc = *scp;

	if (sc == NULL)
		return;
	if (sc->sess != NULL)
		gsasl_finish(sc->sess);
	if (sc->ctx != NULL)
		gsasl_done(sc->ctx);
	wipe(sc, sizeof(*sc));
	free(sc);
	*scp = NULL;
}
