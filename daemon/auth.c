/* Credential encodings for POP3 authentication. */
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

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
