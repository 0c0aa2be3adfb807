/*
 * The seen-UIDs files of mpop, fetchmail and getmail6 (their formats are
 * described in migrate.h), read as pure functions: bytes in, records and
 * complaints out.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "migrate.h"
#include "uid.h"

/*
 * Largest seen-UIDs file read: a million UIDs of 70 bytes with their
 * hosts and users fit many times; the cap stops a wrong path (a disk
 * image, /dev/zero) from eating the memory.
 */
#define MIGRATE_FILE_MAX (512L * 1024 * 1024)
#define MIGRATE_MSG_MAX	 (MIGRATE_LINE_MAX + 256)
/* Host names are at most 253 bytes (RFC 1035); room for a trailing dot. */
#define MIGRATE_HOST_MAX 255
/*
 * Seconds since the epoch read from getmail6, at most the end of the
 * year 9999: anything larger is damage, not a time.
 */
#define MIGRATE_TIME_MAX 253402300799LL

/* What getmail6 replaces by '-' in the names of its files. */
#define GETMAIL_STRIP  "/:;<>|"
#define GETMAIL_PREFIX "oldmail-"

static const char *const format_names[] = {"mpop", "fetchmail", "getmail"};

_Static_assert(
    sizeof(format_names) / sizeof(*format_names) == MIGRATE_GETMAIL + 1,
    "format_names out of step with enum migrate_format");

struct parser {
	const char *path;
	const struct migrate_sink *sink;
	const char *p, *end; /* what is left to read */
	int line;	     /* of the line read last */
	int errors;
};

/* mpop: the list being read. */
struct mpop_list {
	char host[MIGRATE_HOST_MAX + 1];
	char user[MIGRATE_LINE_MAX + 1];
	long count, seen;
	int line;  /* of its header */
	bool skip; /* its header was bad: its UIDs are skipped */
};

static void complain(struct parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

int
migrate_format_parse(const char *name, enum migrate_format *fmt)
{
	size_t i;

	for (i = 0; i < sizeof(format_names) / sizeof(*format_names); i++)
		if (strcmp(name, format_names[i]) == 0) {
			*fmt = (enum migrate_format)i;
			return 0;
		}
	/* The Debian package and the program are both called getmail6. */
	if (strcmp(name, "getmail6") == 0) {
		*fmt = MIGRATE_GETMAIL;
		return 0;
	}
	return -1;
}

const char *
migrate_format_name(enum migrate_format fmt)
{
	return format_names[fmt];
}

/* Reports one error at LINE (0: about the file as a whole). */
static void
complain(struct parser *p, int line, const char *fmt, ...)
{
	char msg[MIGRATE_MSG_MAX], full[MIGRATE_MSG_MAX + 512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		snprintf(full, sizeof(full), "%s:%d: %s", p->path, line, msg);
	else
		snprintf(full, sizeof(full), "%s: %s", p->path, msg);
	p->errors++;
	if (p->sink->error != NULL)
		p->sink->error(p->sink->arg, full);
}

/*
 * The next line, without its newline (and a carriage return before it,
 * from a file that crossed an editor on another system). False at the
 * end.
 */
static bool
next_line(struct parser *p, const char **s, size_t *len)
{
	const char *nl;

	if (p->p >= p->end)
		return false;
	p->line++;
	*s = p->p;
	nl = memchr(p->p, '\n', (size_t)(p->end - p->p));
	*len = (size_t)((nl != NULL ? nl : p->end) - p->p);
	p->p = nl != NULL ? nl + 1 : p->end;
	if (*len > 0 && (*s)[*len - 1] == '\r')
		(*len)--;
	return true;
}

/* Copies LEN bytes at S into OUT (SIZE bytes): false if too long. */
static bool
copy_str(char *out, size_t size, const char *s, size_t len)
{
	if (len >= size)
		return false;
	memcpy(out, s, len);
	out[len] = '\0';
	return true;
}

static void
emit(struct parser *p, const struct migrate_record *r)
{
	if (p->sink->record != NULL)
		p->sink->record(p->sink->arg, r);
}

/* Checks UID (LEN bytes) by the rule of uid.h; complains if it breaks it. */
static bool
check_uid(struct parser *p, const char *uid, size_t len)
{
	if (uid_valid(uid, len))
		return true;
	if (memchr(uid, '\0', len) != NULL)
		complain(p, p->line, "a NUL byte in a UID");
	else if (len > UID_MAX)
		complain(p, p->line,
		    "UID longer than %d characters (RFC 1939): %.*s", UID_MAX,
		    (int)len, uid);
	else
		complain(p, p->line,
		    "not a UID (1 to %d printable characters, no blanks, RFC 1939): \"%.*s\"",
		    UID_MAX, (int)len, uid);
	return false;
}

/* mpop: " COUNT HOST USER" into L; false (and a complaint) if it is not. */
static bool
mpop_header(struct parser *p, const char *s, size_t len, struct mpop_list *l)
{
	char buf[MIGRATE_LINE_MAX + 1], *count, *host, *user, *extra, *endp;

	memcpy(buf, s + 1, len - 1);
	buf[len - 1] = '\0';
	count = strtok(buf, " ");
	host = count != NULL ? strtok(NULL, " ") : NULL;
	user = host != NULL ? strtok(NULL, " ") : NULL;
	extra = user != NULL ? strtok(NULL, " ") : NULL;
	if (user == NULL || extra != NULL || buf[0] == ' ' ||
	    strchr(buf, '\t') != NULL || memchr(s, '\0', len) != NULL) {
		complain(p, p->line,
		    "not a list header \" COUNT HOST USER\"; the UIDs under it are skipped");
		return false;
	}
	errno = 0;
	l->count = strtol(count, &endp, 10);
	if (*endp != '\0' || count[0] < '0' || count[0] > '9' || l->count < 1 ||
	    errno == ERANGE) {
		complain(p, p->line,
		    "not a count of UIDs: \"%s\"; the UIDs under it are skipped",
		    count);
		return false;
	}
	if (!copy_str(l->host, sizeof(l->host), host, strlen(host))) {
		complain(p, p->line,
		    "host name longer than %d bytes; the UIDs under it are skipped",
		    MIGRATE_HOST_MAX);
		return false;
	}
	copy_str(l->user, sizeof(l->user), user, strlen(user));
	return true;
}

/* mpop: the end of list L (at a new header, or at the end of the file). */
static void
mpop_end_list(struct parser *p, struct mpop_list *l, int line)
{
	if (!l->skip && l->count > 0 && l->seen < l->count)
		complain(p, line,
		    "the list of %s at %s (line %d) ends after %ld of its %ld UIDs",
		    l->user, l->host, l->line, l->seen, l->count);
	l->count = l->seen = 0;
	l->skip = false;
}

/* mpop: one UID line of list L. */
static void
mpop_uid(struct parser *p, const char *s, size_t len, struct mpop_list *l)
{
	char uid[UID_MAX + 1];
	struct migrate_record r = {
	    .host = l->host, .user = l->user, .uid = uid, .line = p->line};

	l->seen++;
	if (!check_uid(p, s, len))
		return;
	copy_str(uid, sizeof(uid), s, len);
	emit(p, &r);
	if (l->seen == l->count)
		l->count = l->seen = 0;
}

static void
parse_mpop(struct parser *p)
{
	struct mpop_list l = {0};
	const char *s;
	size_t len;

	while (next_line(p, &s, &len)) {
		if (len > MIGRATE_LINE_MAX) {
			complain(p, p->line, "line longer than %d bytes",
			    MIGRATE_LINE_MAX);
			l.seen++;
			continue;
		}
		if (len > 0 && s[0] == '#')
			continue;
		if (len > 0 && s[0] == ' ') {
			mpop_end_list(p, &l, p->line);
			l.line = p->line;
			l.skip = !mpop_header(p, s, len, &l);
		} else if (l.skip)
			continue;
		else if (l.count == 0)
			complain(p, p->line,
			    "a line outside any list (a list starts with \" COUNT HOST USER\")");
		else
			mpop_uid(p, s, len, &l);
	}
	mpop_end_list(p, &l, p->line);
}

/* fetchmail: one "USER@HOST UID" line. */
static void
fetchmail_line(struct parser *p, const char *s, size_t len)
{
	char line[MIGRATE_LINE_MAX + 1], *at, *blank, *user, *host, *uid;
	struct migrate_record r = {.line = p->line};
	size_t n;

	if (memchr(s, '\0', len) != NULL) {
		complain(p, p->line, "a NUL byte in the line");
		return;
	}
	copy_str(line, sizeof(line), s, len);
	user = line + strspn(line, " \t");
	if (*user == '\0')
		return;
	/* The user may hold blanks, and '@' too: see migrate.h. */
	if ((at = strchr(user, '@')) == NULL ||
	    (blank = strpbrk(at, " \t")) == NULL) {
		complain(p, p->line, "not \"USER@HOST UID\"");
		return;
	}
	*blank = '\0';
	host = strrchr(user, '@');
	*host++ = '\0';
	uid = blank + 1 + strspn(blank + 1, " \t");
	n = strcspn(uid, " \t");
	if (*user == '\0' || *host == '\0' || n == 0) {
		complain(p, p->line, "not \"USER@HOST UID\"");
		return;
	}
	if (uid[n + strspn(uid + n, " \t")] != '\0') {
		complain(p, p->line, "more than one UID on the line");
		return;
	}
	uid[n] = '\0';
	if (strlen(host) > MIGRATE_HOST_MAX) {
		complain(p, p->line, "host name longer than %d bytes",
		    MIGRATE_HOST_MAX);
		return;
	}
	if (!check_uid(p, uid, n))
		return;
	r.host = host;
	r.user = user;
	r.uid = uid;
	emit(p, &r);
}

static void
parse_fetchmail(struct parser *p)
{
	const char *s;
	size_t len;

	while (next_line(p, &s, &len)) {
		if (len > MIGRATE_LINE_MAX)
			complain(p, p->line, "line longer than %d bytes",
			    MIGRATE_LINE_MAX);
		else
			fetchmail_line(p, s, len);
	}
}

/*
 * getmail6: splits KEY ("HOST-PORT-USER") at the first "-PORT-" that can
 * be a port. Host names with such a part are rare; matching does not
 * depend on this split (migrate_match() compares whole names), only
 * what is reported does.
 */
static bool
getmail_split(const char *key, char *host, size_t hostlen, unsigned *port,
    const char **user)
{
	const char *d, *q;
	unsigned long v;

	for (d = strchr(key + 1, '-'); d != NULL; d = strchr(d + 1, '-')) {
		q = d + 1;
		v = 0;
		while (*q >= '0' && *q <= '9' && q - d <= 5)
			v = v * 10 + (unsigned long)(*q++ - '0');
		if (q == d + 1 || *q != '-' || q[1] == '\0' || v == 0 ||
		    v > 65535)
			continue;
		if (!copy_str(host, hostlen, key, (size_t)(d - key)))
			return false;
		*port = (unsigned)v;
		*user = q + 1;
		return true;
	}
	return false;
}

/* getmail6: seconds since the epoch, LEN decimal digits at S, or -1. */
static long long
getmail_time(const char *s, size_t len)
{
	long long t = 0;
	size_t i;

	if (len == 0 || len > 12)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		t = t * 10 + (s[i] - '0');
	}
	return t <= MIGRATE_TIME_MAX ? t : -1;
}

/* What Python's str.strip() takes away (not NUL, getmail6's separator). */
static bool
is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* getmail6: one "UID NUL SECONDS" line, blanks around it ignored. */
static void
getmail_line(
    struct parser *p, const char *s, size_t len, struct migrate_record *r)
{
	char uid[UID_MAX + 1];
	const char *nul;
	long long t;

	while (len > 0 && is_blank(s[0]))
		s++, len--;
	while (len > 0 && is_blank(s[len - 1]))
		len--;
	if (len == 0)
		return;
	if ((nul = memchr(s, '\0', len)) == NULL) {
		complain(p, p->line, "no NUL byte between UID and time");
		return;
	}
	if ((t = getmail_time(nul + 1, len - (size_t)(nul + 1 - s))) < 0) {
		complain(p, p->line,
		    "not a time in seconds after the UID: \"%.*s\"",
		    (int)(len - (size_t)(nul + 1 - s)), nul + 1);
		return;
	}
	if (!check_uid(p, s, (size_t)(nul - s)))
		return;
	copy_str(uid, sizeof(uid), s, (size_t)(nul - s));
	r->uid = uid;
	r->first_seen = (time_t)t;
	r->line = p->line;
	emit(p, r);
}

static void
parse_getmail(struct parser *p)
{
	char host[MIGRATE_HOST_MAX + 1];
	struct migrate_record r = {.host = host};
	const char *base, *s;
	size_t len;

	base = strrchr(p->path, '/');
	base = base != NULL ? base + 1 : p->path;
	if (strncmp(base, GETMAIL_PREFIX, strlen(GETMAIL_PREFIX)) != 0) {
		complain(p, 0,
		    "not named as getmail6 names its files (oldmail-HOST-PORT-USER): nothing read");
		return;
	}
	r.key = base + strlen(GETMAIL_PREFIX);
	if (!getmail_split(r.key, host, sizeof(host), &r.port, &r.user)) {
		complain(p, 0,
		    "no HOST-PORT-USER after \"oldmail-\" in the name: nothing read");
		return;
	}
	while (next_line(p, &s, &len)) {
		if (len > MIGRATE_LINE_MAX)
			complain(p, p->line, "line longer than %d bytes",
			    MIGRATE_LINE_MAX);
		else
			getmail_line(p, s, len, &r);
	}
}

int
migrate_parse(enum migrate_format fmt, const char *path, const char *text,
    size_t len, const struct migrate_sink *sink)
{
	struct parser p = {
	    .path = path, .sink = sink, .p = text, .end = text + len};

	switch (fmt) {
	case MIGRATE_MPOP:
		parse_mpop(&p);
		break;
	case MIGRATE_FETCHMAIL:
		parse_fetchmail(&p);
		break;
	case MIGRATE_GETMAIL:
		parse_getmail(&p);
		break;
	}
	return p.errors;
}

/* Host names compare without regard to ASCII case and a trailing dot. */
static bool
host_eq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la > 0 && a[la - 1] == '.')
		la--;
	if (lb > 0 && b[lb - 1] == '.')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

/* Appends S to OUT as getmail6 writes it into a file name. */
static void
getmail_put(char *out, size_t size, const char *s)
{
	size_t n = strlen(out);

	for (; *s != '\0' && n + 1 < size; s++) {
		if (strchr(GETMAIL_STRIP, *s) == NULL)
			out[n++] = *s;
		else if (n == 0 || strchr(GETMAIL_STRIP, s[-1]) == NULL)
			out[n++] = '-'; /* a run becomes one '-' */
	}
	out[n] = '\0';
}

/* getmail6: whether KEY is the name it makes for USER at HOST, PORT. */
static bool
getmail_key_is(
    const char *key, const char *host, unsigned port, const char *user)
{
	char name[2 * MIGRATE_LINE_MAX], p[16];
	size_t hl;

	name[0] = '\0';
	getmail_put(name, sizeof(name), host);
	hl = strlen(name);
	if (hl > 0 && name[hl - 1] == '.')
		name[--hl] = '\0';
	snprintf(p, sizeof(p), "-%u-", port);
	getmail_put(name, sizeof(name), p);
	getmail_put(name, sizeof(name), user);
	return strncasecmp(key, name, hl) == 0 &&
	       strcmp(key + hl, name + hl) == 0;
}

bool
migrate_match(enum migrate_format fmt, const struct migrate_record *r,
    const char *host, unsigned port, const char *user)
{
	switch (fmt) {
	case MIGRATE_MPOP:
		return host_eq(r->host, host) && strcmp(r->user, user) == 0;
	case MIGRATE_FETCHMAIL:
		return host_eq(r->host, host) && strcasecmp(r->user, user) == 0;
	case MIGRATE_GETMAIL:
		if (r->key == NULL)
			return false;
		if (getmail_key_is(r->key, host, port, user))
			return true;
		/* POP3 and POP3S are one service (RFC 8314), as in state.h. */
		if (port == 110 || port == 995)
			return getmail_key_is(
			    r->key, host, port == 110 ? 995 : 110, user);
		return false;
	}
	return false;
}

int
migrate_read_file(const char *path, char **text, size_t *len)
{
	struct stat sb;
	size_t cap = 65536, n = 0;
	char *buf, *nbuf;
	ssize_t got;
	int fd, e;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	if (fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode)) {
		close(fd);
		errno = EISDIR;
		return -1;
	}
	if ((buf = malloc(cap + 1)) == NULL)
		goto fail;
	for (;;) {
		if (n == cap) {
			if (cap >= MIGRATE_FILE_MAX) {
				errno = EFBIG;
				goto fail;
			}
			cap *= 2;
			if ((nbuf = realloc(buf, cap + 1)) == NULL)
				goto fail;
			buf = nbuf;
		}
		got = read(fd, buf + n, cap - n);
		if (got == -1 && errno == EINTR)
			continue;
		if (got == -1)
			goto fail;
		if (got == 0)
			break;
		n += (size_t)got;
	}
	close(fd);
	buf[n] = '\0';
	*text = buf;
	*len = n;
	return 0;
fail:
	e = errno;
	free(buf);
	close(fd);
	errno = e;
	return -1;
}
