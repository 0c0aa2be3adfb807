/*
 * The targets' common door (dispatch to the implementation), the byte
 * encoder, the message identifier and the reply-line reader.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "target_priv.h"

int
target_begin(struct target *t, unsigned long tag)
{
	return t->ops->begin(t, tag);
}

int
target_write(struct target *t, const char *data, size_t len)
{
	return t->ops->write(t, data, len);
}

int
target_end(struct target *t)
{
	return t->ops->end(t);
}

void
target_abort(struct target *t)
{
	t->ops->abort(t);
}

bool
target_busy(struct target *t)
{
	return t->ops->busy(t);
}

size_t
target_pending(const struct target *t)
{
	return t->ops->pending(t);
}

void
target_close(struct target *t)
{
	t->ops->close(t);
}

void
target_free(struct target **tp)
{
	if (*tp == NULL)
		return;
	(*tp)->ops->free(*tp);
	*tp = NULL;
}

/* ---- the encoder ---- */

void
target_enc_init(struct target_enc *e, bool crlf, bool stuff)
{
	e->crlf = crlf;
	e->stuff = stuff;
	e->line_start = true;
	e->cr = false;
}

static int
put_eol(
    struct target_enc *e, int (*out)(void *, const char *, size_t), void *arg)
{
	e->line_start = true;
	return e->crlf ? out(arg, "\r\n", 2) : out(arg, "\n", 1);
}

/* N bytes of a line's content; a '.' starting a line doubled. */
static int
put_data(struct target_enc *e, const char *data, size_t n,
    int (*out)(void *, const char *, size_t), void *arg)
{
	int r;

	if (n == 0)
		return 0;
	if (e->line_start && e->stuff && data[0] == '.' &&
	    (r = out(arg, ".", 1)) != 0)
		return r;
	e->line_start = false;
	return out(arg, data, n);
}

/*
 * Bytes between line ends go out in runs; a line end (CRLF or a bare LF)
 * is written in the form asked for, and a '.' after it doubled when
 * stuffing. A CR not followed by LF is data, kept as it came.
 */
int
target_enc_feed(struct target_enc *e, const char *data, size_t len,
    int (*out)(void *arg, const char *bytes, size_t n), void *arg)
{
	size_t i = 0, run;
	int r;

	while (i < len) {
		if (e->cr) {
			e->cr = false;
			if (data[i] == '\n') {
				if ((r = put_eol(e, out, arg)) != 0)
					return r;
				i++;
				continue;
			}
			if ((r = put_data(e, "\r", 1, out, arg)) != 0)
				return r;
		}
		if (data[i] == '\n') {
			if ((r = put_eol(e, out, arg)) != 0)
				return r;
			i++;
			continue;
		}
		if (data[i] == '\r') {
			e->cr = true;
			i++;
			continue;
		}
		for (run = i;
		     run < len && data[run] != '\r' && data[run] != '\n';)
			run++;
		if ((r = put_data(e, data + i, run - i, out, arg)) != 0)
			return r;
		i = run;
	}
	return 0;
}

int
target_enc_finish(struct target_enc *e,
    int (*out)(void *arg, const char *bytes, size_t n), void *arg)
{
	int r;

	if (e->cr) {
		e->cr = false;
		if ((r = put_data(e, "\r", 1, out, arg)) != 0)
			return r;
	}
	if (!e->line_start)
		return put_eol(e, out, arg);
	return 0;
}

/* ---- the message identifier ---- */

int
target_message_id(char *buf, size_t len, const char *account, const char *host,
    unsigned port, const char *user, const char *uid)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	char portbuf[16], idhex[33];
	const char *parts[5];
	unsigned mdlen, i;
	EVP_MD_CTX *ctx;
	int ok, n;

	snprintf(portbuf, sizeof(portbuf), "%u", port);
	parts[0] = account;
	parts[1] = host;
	parts[2] = portbuf;
	parts[3] = user != NULL ? user : "";
	parts[4] = uid;
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return -1;
	ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	/* Each part with its NUL: no two tuples hash the same bytes. */
	for (i = 0; ok && i < 5; i++)
		ok = EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]) + 1);
	ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -1;
	for (i = 0; i < 16; i++) {
		idhex[2 * i] = hex[md[i] >> 4];
		idhex[2 * i + 1] = hex[md[i] & 0xf];
	}
	idhex[32] = '\0';
	n = snprintf(buf, len, "X-Popfetchd-Id: <%s@popfetchd>\n", idhex);
	return n < 0 || (size_t)n >= len ? -1 : n;
}

/* ---- replies ---- */

int
target_reply_line(const char *line, size_t len, int *code, bool *last)
{
	if (len < 3 || line[0] < '2' || line[0] > '5' || line[1] < '0' ||
	    line[1] > '9' || line[2] < '0' || line[2] > '9')
		return -1;
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return -1;
	*code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	*last = len == 3 || line[3] == ' ';
	return 0;
}

enum target_verdict
target_verdict_of(int code)
{
	if (code >= 200 && code < 300)
		return TARGET_DELIVERED;
	if (code >= 500 && code < 600)
		return TARGET_PERMFAIL;
	return TARGET_TEMPFAIL;
}

const char *
target_verdict_name(enum target_verdict v)
{
	switch (v) {
	case TARGET_DELIVERED:
		return "delivered";
	case TARGET_TEMPFAIL:
		return "temporary failure";
	case TARGET_PERMFAIL:
		return "permanent failure";
	}
	return "?";
}
