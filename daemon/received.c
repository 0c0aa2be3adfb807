/* The Received: trace line of RFC 5321 section 4.4. */
#include <arpa/inet.h>

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "received.h"

/* Longest name used as is: RFC 1035's limit for a domain. */
#define DOMAIN_MAX 253
/* Longest user put in a "for" clause: RFC 5321's for a path. */
#define PATH_MAX_LEN 256

/* RFC 5321 Domain: labels of letters, digits and inner hyphens. */
static bool
is_domain(const char *s)
{
	size_t label = 0, n = strlen(s);

	if (n == 0 || n > DOMAIN_MAX)
		return false;
	for (; *s != '\0'; s++) {
		if (*s == '.') {
			if (label == 0 || s[-1] == '-')
				return false;
			label = 0;
		} else if (isalnum((unsigned char)*s) ||
			   (*s == '-' && label > 0)) {
			if (++label > 63)
				return false;
		} else
			return false;
	}
	return label > 0 && s[-1] != '-';
}

/* An IPv4 or IPv6 address as written in the configuration. */
static bool
is_address(const char *s, bool *v6)
{
	unsigned char a[16];

	*v6 = strchr(s, ':') != NULL;
	return inet_pton(*v6 ? AF_INET6 : AF_INET, s, a) == 1;
}

/*
 * Extended-Domain: a domain as is, an address as a literal followed by
 * itself as TCP-info, anything else as the reserved unknown.invalid.
 */
static void
ext_domain(char *out, size_t len, const char *host)
{
	bool v6;

	if (host != NULL && is_address(host, &v6))
		snprintf(out, len, "[%s%s] ([%s%s])", v6 ? "IPv6:" : "", host,
		    v6 ? "IPv6:" : "", host);
	else if (host != NULL && is_domain(host))
		snprintf(out, len, "%s", host);
	else
		snprintf(out, len, "unknown.invalid");
}

/* RFC 5322 atext. */
static bool
is_atext(int c)
{
	return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* The UID as an Atom: characters outside atext (and '%') as %XX. */
static void
id_atom(char *out, size_t len, const char *uid)
{
	size_t o = 0;

	for (; *uid != '\0' && o + 4 < len; uid++) {
		unsigned char c = (unsigned char)*uid;

		if (is_atext(c) && c != '%')
			out[o++] = (char)c;
		else
			o += (size_t)snprintf(out + o, len - o, "%%%02X", c);
	}
	out[o] = '\0';
}

/* RFC 5321 Mailbox with a Dot-string local part. */
static bool
is_mailbox(const char *s)
{
	const char *at = strrchr(s, '@'), *p;

	if (at == NULL || at == s || strlen(s) > PATH_MAX_LEN ||
	    !is_domain(at + 1) || *s == '.' || at[-1] == '.')
		return false;
	for (p = s; p < at; p++)
		if (!is_atext((unsigned char)*p) && !(*p == '.' && p[1] != '.'))
			return false;
	return true;
}

/* RFC 5322 date-time, in English whatever the locale. */
static void
date_time(char *out, size_t len, time_t when, long gmtoff)
{
	static const char *const days[] = {
	    "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
	static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May",
	    "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
	time_t local = when + (time_t)gmtoff;
	long off = gmtoff < 0 ? -gmtoff : gmtoff;
	struct tm tm;

	gmtime_r(&local, &tm);
	snprintf(out, len, "%s, %02d %s %d %02d:%02d:%02d %c%02ld%02ld",
	    days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900,
	    tm.tm_hour, tm.tm_min, tm.tm_sec, gmtoff < 0 ? '-' : '+',
	    off / 3600, off % 3600 / 60);
}

int
received_format(char *buf, size_t len, const struct received_info *ri)
{
	char from[2 * DOMAIN_MAX], by[2 * DOMAIN_MAX], id[3 * 70 + 1] = "";
	char date[64], forc[PATH_MAX_LEN + 16] = "";
	int n;

	if (len < RECEIVED_MAX)
		return -1;
	ext_domain(from, sizeof(from), ri->from_host);
	ext_domain(
	    by, sizeof(by), ri->by_host != NULL ? ri->by_host : "localhost");
	if (ri->uid != NULL && ri->uid[0] != '\0')
		id_atom(id, sizeof(id), ri->uid);
	if (ri->user != NULL && is_mailbox(ri->user))
		snprintf(forc, sizeof(forc), "\n\tfor <%s>", ri->user);
	date_time(date, sizeof(date), ri->when, ri->gmtoff);
	n = snprintf(buf, len,
	    "Received: from %s\n\tby %s (popfetchd %.32s)\n\twith POP3%s%s%s;\n\t%s\n",
	    from, by, ri->version, id[0] != '\0' ? "\n\tid " : "", id, forc,
	    date);
	return n < 0 || (size_t)n >= len ? -1 : n;
}
