/*
 * popfetchd --convert: an mpoprc, a getmailrc or a fetchmailrc turned
 * into a popfetchd configuration. Each reader fills accounts of the
 * model below, one setting at a time, and notes what has no equivalent;
 * migrate_conv_write() then prints them. Nothing is dropped without a word: a
 * setting is either converted or named in a comment.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "migrate.h"
#include "migrate_conf.h"

static const char *const ck_names[] = {
#define X(id, name) name,
    MIGRATE_CONV_KEYS(X)
#undef X
};

static void note_v(struct migrate_conv_acct *a, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));

struct migrate_conv_acct *
migrate_conv_acct_new(struct migrate_conv *c,
    const struct migrate_conv_acct *from, const char *name, int line)
{
	struct migrate_conv_acct *a;

	if (c->n == MIGRATE_CONV_ACCTS_MAX) {
		migrate_conv_complain(c, line,
		    "more than %d accounts: the rest left out",
		    MIGRATE_CONV_ACCTS_MAX);
		return NULL;
	}
	a = &c->accts[c->n++];
	memset(a, 0, sizeof(*a));
	if (from != NULL)
		migrate_conv_acct_merge(a, from);
	snprintf(a->name, sizeof(a->name), "%s", name);
	a->line = line;
	return a;
}

/* Settings of FROM that are set override those of A; notes add up. */
void
migrate_conv_acct_merge(
    struct migrate_conv_acct *a, const struct migrate_conv_acct *from)
{
	size_t i;

	for (i = 0; i < CK_N; i++)
		if (from->val[i][0] != '\0')
			memcpy(a->val[i], from->val[i], sizeof(a->val[i]));
	for (i = 0; i < from->nnotes; i++)
		migrate_conv_note(a, "%s", from->notes[i]);
	if (from->password_line > 0)
		a->password_line = from->password_line;
	a->mda |= from->mda;
	a->tls_on = from->tls_on != 0 ? from->tls_on : a->tls_on;
	a->starttls = from->starttls != 0 ? from->starttls : a->starttls;
	if (from->uid_hint[0] != '\0')
		memcpy(a->uid_hint, from->uid_hint, sizeof(a->uid_hint));
}

void
migrate_conv_complain(struct migrate_conv *c, int line, const char *fmt, ...)
{
	va_list ap;

	fprintf(c->err, "popfetchd: %s:%d: ", c->path, line);
	va_start(ap, fmt);
	vfprintf(c->err, fmt, ap);
	va_end(ap);
	fputc('\n', c->err);
}

static void
note_v(struct migrate_conv_acct *a, const char *fmt, va_list ap)
{
	if (a->nnotes == MIGRATE_CONV_NOTES_MAX) {
		a->dropped++;
		return;
	}
	vsnprintf(a->notes[a->nnotes], sizeof(a->notes[0]), fmt, ap);
	a->nnotes++;
}

void
migrate_conv_note(struct migrate_conv_acct *a, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	note_v(a, fmt, ap);
	va_end(ap);
}

/* A setting of the old file with no equivalent, as a note naming it. */
void
migrate_conv_unsupported(struct migrate_conv *c, struct migrate_conv_acct *a,
    int line, const char *what, const char *why)
{
	migrate_conv_note(a, "%s:%d: %s: %s", c->path, line, what, why);
}

void
migrate_conv_fmt(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(out, size, fmt, ap);
	va_end(ap);
}

/* Writes S into A's setting K as a libconfig string, escaped. */
void
migrate_conv_set_str(
    struct migrate_conv_acct *a, enum migrate_conv_key k, const char *s)
{
	char *o = a->val[k], *end = a->val[k] + sizeof(a->val[k]) - 6;

	*o++ = '"';
	for (; *s != '\0' && o < end; s++) {
		if (*s == '"' || *s == '\\') {
			*o++ = '\\';
			*o++ = *s;
		} else if ((unsigned char)*s < 0x20 || *s == 0x7f)
			o += sprintf(o, "\\x%02x", (unsigned char)*s);
		else
			*o++ = *s;
	}
	*o++ = '"';
	*o = '\0';
}

void
migrate_conv_set_raw(
    struct migrate_conv_acct *a, enum migrate_conv_key k, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(a->val[k], sizeof(a->val[k]), fmt, ap);
	va_end(ap);
}

void
migrate_conv_set_bool(
    struct migrate_conv_acct *a, enum migrate_conv_key k, bool v)
{
	migrate_conv_set_raw(a, k, "%s", v ? "true" : "false");
}

/*
 * A path setting: popfetchd takes absolute paths or ~/ ones only, so
 * another is noted instead (the account then lacks it, and says why).
 */
void
migrate_conv_set_path(struct migrate_conv *c, struct migrate_conv_acct *a,
    enum migrate_conv_key k, int line, const char *what, const char *path)
{
	if (path[0] == '/' || strncmp(path, "~/", 2) == 0)
		migrate_conv_set_str(a, k, path);
	else
		migrate_conv_note(a,
		    "%s:%d: %s %s: not an absolute path; popfetchd needs one (or ~/...)",
		    c->path, line, what, path);
}

/* A number in [MIN, MAX], or a note about WHAT and false. */
bool
migrate_conv_number(struct migrate_conv *c, struct migrate_conv_acct *a,
    int line, const char *what, const char *s, unsigned long long min,
    unsigned long long max, unsigned long long *v)
{
	char *end;

	if (s[0] >= '0' && s[0] <= '9') {
		*v = strtoull(s, &end, 10);
		if (*end == '\0' && *v >= min && *v <= max)
			return true;
	}
	migrate_conv_note(a,
	    "%s:%d: %s %s: not a number popfetchd takes (%llu to %llu)",
	    c->path, line, what, s, min, max);
	return false;
}

/* Account names: [A-Za-z0-9._-], at most CONF_NAME_MAX, unique. */
static void
fix_name(struct migrate_conv *c, struct migrate_conv_acct *a)
{
	char *p;
	size_t i, n = 1;
	char base[CONF_NAME_MAX - 4];

	for (p = a->name; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			(*p >= '0' && *p <= '9') || *p == '.' || *p == '_' ||
			*p == '-'))
			*p = '_';
	if (a->name[0] == '\0')
		snprintf(a->name, sizeof(a->name), "account");
	snprintf(base, sizeof(base), "%.*s", (int)sizeof(base) - 1, a->name);
	for (i = 0; i < c->n; i++)
		if (&c->accts[i] != a && c->accts[i].name[0] != '\0' &&
		    strcmp(c->accts[i].name, a->name) == 0) {
			snprintf(a->name, sizeof(a->name), "%s-%zu", base, ++n);
			i = (size_t)-1; /* and check the new name again */
		}
}

/* What every account needs before it can load: password and maildir. */
static void
finish(struct migrate_conv *c, struct migrate_conv_acct *a)
{
	char file[CONF_NAME_MAX + 64];

	fix_name(c, a);
	snprintf(file, sizeof(file), "~/.config/popfetchd/%s.pass", a->name);
	if (a->val[CK_PASSWORD_FILE][0] == '\0' &&
	    a->val[CK_PASSWORD_COMMAND][0] == '\0' &&
	    strcmp(a->val[CK_AUTH], "\"external\"") != 0) {
		migrate_conv_set_str(a, CK_PASSWORD_FILE, file);
		if (a->password_line > 0)
			migrate_conv_note(a,
			    "%s:%d held the password inline; it is not copied. Put it in %s, alone on its first line, readable by you only:",
			    c->path, a->password_line, file);
		else
			migrate_conv_note(a,
			    "%s had no password for this account (it was asked for, or came from a key ring or .netrc); put it in %s, readable by you only:",
			    c->path, file);
		migrate_conv_note(a,
		    "  mkdir -p -m 700 ~/.config/popfetchd && (umask 077 && cat > %s)",
		    file);
		migrate_conv_note(a,
		    "  (type the password, Enter, then Ctrl-D), or use password_command");
	}
	if (a->val[CK_MAILDIR][0] == '\0') {
		migrate_conv_set_str(a, CK_MAILDIR, "~/Maildir");
		migrate_conv_note(a,
		    "no Maildir in %s for this account: mail goes to ~/Maildir (change maildir above)",
		    c->path);
	}
	if (a->mda)
		migrate_conv_note(a,
		    "delivery through an MDA is not converted (its placeholders differ): set target = \"mda\" and mda by hand (popfetchd.conf(5)); an mbox is not supported; until then mail goes to the Maildir above");
	if (a->val[CK_TLS][0] == '\0')
		migrate_conv_set_str(a, CK_TLS, "implicit");
}

/*
 * Writes S as one shell word: as it is if it needs no quoting, else in
 * double quotes with a leading ~/ as $HOME/, so that it still expands.
 */
static void
write_shell_word(const char *s, FILE *out)
{
	const char *p;

	if (strpbrk(s, " \t\"'`$\\|&;()<>*?[]{}!#") == NULL) {
		fputs(s, out);
		return;
	}
	fputc('"', out);
	for (p = s; *p != '\0'; p++) {
		if (p[0] == '~' && p[1] == '/' && (p == s || p[-1] == ':')) {
			fputs("$HOME", out);
			continue;
		}
		if (strchr("\"$`\\", *p) != NULL)
			fputc('\\', out);
		fputc(*p, out);
	}
	fputc('"', out);
}

static void
write_acct(const struct migrate_conv_acct *a, FILE *out, bool last)
{
	size_t i;

	fprintf(out, "  {\n    # from line %d\n", a->line);
	fprintf(out, "    name = \"%s\";\n", a->name);
	for (i = 0; i < CK_N; i++)
		if (a->val[i][0] != '\0')
			fprintf(out, "    %s = %s;\n", ck_names[i], a->val[i]);
	for (i = 0; i < a->nnotes; i++)
		fprintf(out, "    # %s\n", a->notes[i]);
	if (a->dropped > 0)
		fprintf(out, "    # (%zu more options without an equivalent)\n",
		    a->dropped);
	if (a->uid_hint[0] != '\0') {
		fputs(
		    "    # What was fetched already: popfetchd --import-uids ",
		    out);
		write_shell_word(a->uid_hint, out);
		fprintf(out, " -a %s\n", a->name);
	}
	fprintf(out, "  }%s\n", last ? "" : ",");
}

/* Prints the accounts of C that have a host; returns how many. */
static int
migrate_conv_write(struct migrate_conv *c, FILE *out, enum migrate_format fmt)
{
	size_t i, n = 0, done = 0;

	for (i = 0; i < c->n; i++) {
		if (c->accts[i].skip)
			continue;
		if (c->accts[i].val[CK_HOST][0] == '\0') {
			migrate_conv_complain(c, c->accts[i].line,
			    "account \"%s\" has no host: left out",
			    c->accts[i].name);
			c->accts[i].skip = true;
			continue;
		}
		finish(c, &c->accts[i]);
		n++;
	}
	if (n == 0) {
		fprintf(c->err, "popfetchd: %s: no POP3 account to convert\n",
		    c->path);
		return -1;
	}
	fprintf(out,
	    "# popfetchd configuration converted from %s (%s) by popfetchd --convert.\n"
	    "# Read the comments, then check it: popfetchd --check-config -c FILE\n"
	    "\n"
	    "state_dir = \"~/.local/state/popfetchd\";\n"
	    "\n"
	    "accounts = (\n",
	    c->path, migrate_format_name(fmt));
	for (i = 0; i < c->n; i++)
		if (!c->accts[i].skip)
			write_acct(&c->accts[i], out, ++done == n);
	fprintf(out, ");\n");
	return (int)n;
}

int
migrate_convert(enum migrate_format fmt, const char *path, const char *text,
    size_t len, FILE *out, FILE *err)
{
	struct migrate_conv c = {.path = path, .err = err};
	int n;

	if ((c.accts = calloc(MIGRATE_CONV_ACCTS_MAX, sizeof(*c.accts))) ==
	    NULL) {
		fprintf(err, "popfetchd: out of memory\n");
		return -1;
	}
	if (memchr(text, '\0', len) != NULL)
		migrate_conv_complain(
		    &c, 1, "a NUL byte: the file is read up to it");
	switch (fmt) {
	case MIGRATE_MPOP:
		migrate_conv_mpop(&c, text);
		break;
	case MIGRATE_FETCHMAIL:
		migrate_conv_fetchmail(&c, text);
		break;
	case MIGRATE_GETMAIL:
		migrate_conv_getmail(&c, text);
		break;
	}
	n = migrate_conv_write(&c, out, fmt);
	free(c.accts);
	return n;
}
