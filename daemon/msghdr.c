/* Header field values for display; see msghdr.h. */
#include <string.h>
#include <strings.h>

#include "msghdr.h"

/* The start of the line after P (END if none). */
static const char *
next_line(const char *p, const char *end)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));

	return nl != NULL ? nl + 1 : end;
}

/* Whether the line at P is empty: the end of the header block. */
static int
empty_line(const char *p, const char *end)
{
	return *p == '\n' || (*p == '\r' && (p + 1 == end || p[1] == '\n'));
}

/* The field NAME's value start, or NULL. */
static const char *
find_field(const char *p, const char *end, const char *name)
{
	size_t nlen = strlen(name);

	for (; p < end && !empty_line(p, end); p = next_line(p, end))
		if ((size_t)(end - p) > nlen &&
		    strncasecmp(p, name, nlen) == 0 && p[nlen] == ':')
			return p + nlen + 1;
	return NULL;
}

void
msghdr_value(
    const char *hdr, size_t len, const char *name, char *out, size_t outlen)
{
	const char *end = hdr + len, *p = find_field(hdr, end, name);
	size_t o = 0;

	out[0] = '\0';
	for (; p != NULL && p < end && o + 1 < outlen; p++) {
		/* A line end not followed by a blank ends the field. */
		if (*p == '\n' &&
		    (p + 1 >= end || (p[1] != ' ' && p[1] != '\t')))
			break;
		if (*p == '\r' || *p == '\n')
			continue;
		if (o == 0 && (*p == ' ' || *p == '\t'))
			continue;
		if (*p == '\t')
			out[o++] = ' ';
		else
			out[o++] =
			    (unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p;
	}
	out[o] = '\0';
}
