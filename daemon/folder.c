/*
 * Maildir++ folder names: checked level by level, written in IMAP's
 * modified UTF-7. See folder.h for the rules.
 */
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "folder.h"

static const char b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

struct out {
	char *buf;
	size_t len, cap;
	bool full;
};

static void
put(struct out *o, char c)
{
	if (o->len + 1 >= o->cap) {
		o->full = true;
		return;
	}
	o->buf[o->len++] = c;
}

/*
 * Decodes one UTF-8 character at S (N bytes left) into *CP; returns its
 * length, or 0 for a malformed, overlong or surrogate sequence.
 */
static size_t
utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
	static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
	size_t len, i;
	uint32_t c;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if ((s[0] & 0xE0) == 0xC0)
		len = 2, c = s[0] & 0x1F;
	else if ((s[0] & 0xF0) == 0xE0)
		len = 3, c = s[0] & 0x0F;
	else if ((s[0] & 0xF8) == 0xF0)
		len = 4, c = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		c = c << 6 | (s[i] & 0x3F);
	}
	if (c < min[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
		return 0;
	*cp = c;
	return len;
}

/* Base64 of a run of UTF-16 units, as modified UTF-7 writes it. */
struct shift {
	uint32_t bits;
	unsigned nbits;
	bool open;
};

static void
shift_unit(struct out *o, struct shift *sh, uint16_t u)
{
	if (!sh->open) {
		put(o, '&');
		sh->open = true;
	}
	sh->bits = sh->bits << 16 | u;
	sh->nbits += 16;
	while (sh->nbits >= 6) {
		sh->nbits -= 6;
		put(o, b64[(sh->bits >> sh->nbits) & 0x3F]);
	}
}

static void
shift_close(struct out *o, struct shift *sh)
{
	if (!sh->open)
		return;
	if (sh->nbits > 0)
		put(o, b64[(sh->bits << (6 - sh->nbits)) & 0x3F]);
	put(o, '-');
	sh->bits = 0;
	sh->nbits = 0;
	sh->open = false;
}

static void
shift_char(struct out *o, struct shift *sh, uint32_t cp)
{
	if (cp < 0x10000) {
		shift_unit(o, sh, (uint16_t)cp);
		return;
	}
	cp -= 0x10000;
	shift_unit(o, sh, (uint16_t)(0xD800 | cp >> 10));
	shift_unit(o, sh, (uint16_t)(0xDC00 | (cp & 0x3FF)));
}

/* What is wrong with the shape of NAME (dots, slashes), or NULL. */
static const char *
shape_error(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || name[0] != '.')
		return "a Maildir++ folder name starts with a dot (\".Name\")";
	if (n == 1)
		return "\".\" is the Maildir itself, not a folder";
	if (strstr(name, "..") != NULL || name[n - 1] == '.')
		return "an empty level in the folder name (two dots, or a dot at the end)";
	if (strchr(name, '/') != NULL)
		return "'/' is not allowed in a Maildir++ folder name";
	return NULL;
}

int
folder_encode(const char *name, char *dir, size_t dirlen, const char **why)
{
	const unsigned char *s = (const unsigned char *)name;
	struct out o = {.buf = dir, .cap = dirlen};
	struct shift sh = {0};
	const char *err;
	uint32_t cp;
	size_t len, n = strlen(name);

	if ((err = shape_error(name)) != NULL)
		goto bad;
	for (; n > 0; s += len, n -= len) {
		if ((len = utf8_next(s, n, &cp)) == 0) {
			err = "the folder name is not valid UTF-8";
			goto bad;
		}
		if (cp < 0x20 || cp == 0x7F) {
			err =
			    "control characters are not allowed in a folder name";
			goto bad;
		}
		if (cp < 0x7F) {
			shift_close(&o, &sh);
			put(&o, (char)cp);
			if (cp == '&')
				put(&o, '-');
		} else
			shift_char(&o, &sh, cp);
	}
	shift_close(&o, &sh);
	if (o.full || o.len > NAME_MAX) {
		err = "the folder name is too long";
		goto bad;
	}
	dir[o.len] = '\0';
	return 0;
bad:
	if (why != NULL)
		*why = err;
	if (dirlen > 0)
		dir[0] = '\0';
	return -1;
}
