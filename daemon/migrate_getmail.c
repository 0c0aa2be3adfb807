/*
 * A getmailrc read for popfetchd --convert (getmail6's configuration
 * documentation): an INI file, one account per file, with sections
 * [retriever], [destination] and [options] ([filter-*] too); "key =
 * value" or "key: value"; '#' or ';' starts a comment line; a line
 * starting with a blank continues the one before.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "migrate_conf.h"

#define GM_LINE_MAX 4096

enum gm_section { S_NONE, S_RETRIEVER, S_DESTINATION, S_OPTIONS, S_OTHER };

struct getmail {
	struct migrate_conv *c;
	struct migrate_conv_acct *a;
	enum gm_section sect;
	char sect_name[64];
	int line;
	int delete;	   /* options: delete, -1 if not said */
	bool delete_after; /* options: delete_after given */
	bool read_all;	   /* options: read_all (default true) */
	bool pop3;	   /* retriever type seen, and it is POP3 */
};

/* getmail's booleans. -1 if neither. */
static int
boolean(const char *v)
{
	static const char *const yes[] = {"1", "true", "yes", "on", NULL};
	static const char *const no[] = {"0", "false", "no", "off", NULL};
	size_t i;

	for (i = 0; yes[i] != NULL; i++)
		if (strcasecmp(v, yes[i]) == 0)
			return 1;
	for (i = 0; no[i] != NULL; i++)
		if (strcasecmp(v, no[i]) == 0)
			return 0;
	return -1;
}

static void
unsupported(
    struct getmail *g, const char *key, const char *val, const char *why)
{
	migrate_conv_note(g->a, "%s:%d: [%s] %s = %s: %s", g->c->path, g->line,
	    g->sect_name, key, val, why);
}

/*
 * A Python tuple of strings ("cmd", "arg") as one shell command, each
 * word in single quotes. False if it is not one.
 */
static bool
tuple_command(const char *v, char *out, size_t size)
{
	size_t n = 0;
	char q;

	v += strspn(v, " \t");
	if (*v++ != '(')
		return false;
	for (;;) {
		v += strspn(v, " \t,");
		if (*v == ')')
			break;
		if (*v != '"' && *v != '\'')
			return false;
		q = *v++;
		if (n + 3 >= size)
			return false;
		if (n > 0)
			out[n++] = ' ';
		out[n++] = '\'';
		for (; *v != '\0' && *v != q; v++) {
			if (n + 6 >= size)
				return false;
			if (*v == '\'') {
				memcpy(out + n, "'\\''", 4);
				n += 4;
			} else
				out[n++] = *v;
		}
		if (*v++ != q)
			return false;
		out[n++] = '\'';
	}
	out[n] = '\0';
	return n > 0;
}

static void
retriever_type(struct getmail *g, const char *v)
{
	if (strstr(v, "POP3") == NULL) {
		g->a->skip = true;
		migrate_conv_complain(g->c, g->line,
		    "retriever type %s: not POP3, nothing converted (popfetchd speaks POP3 only)",
		    v);
		return;
	}
	g->pop3 = true;
	if (strstr(v, "SSL") != NULL)
		migrate_conv_set_str(g->a, CK_TLS, "implicit");
	else {
		migrate_conv_set_str(g->a, CK_TLS, "starttls");
		migrate_conv_note(g->a,
		    "%s:%d: type = %s spoke POP3 without TLS: popfetchd asks for STLS, as it never sends a password in clear unless told to (tls = \"none\" with allow_plaintext = true)",
		    g->c->path, g->line, v);
	}
	if (strncmp(v, "BrokenUIDL", 10) == 0)
		unsupported(g, "type", v,
		    "getmail kept message numbers, not UIDs: its oldmail file will not match; popfetchd needs UIDL");
	else if (strncmp(v, "Multidrop", 9) == 0)
		unsupported(g, "type", v,
		    "multidrop is not supported: all mail goes to one Maildir");
}

static void
retriever(struct getmail *g, const char *k, const char *v)
{
	char cmd[MIGRATE_CONV_VAL_LEN];
	unsigned long long n;

	if (strcmp(k, "type") == 0)
		retriever_type(g, v);
	else if (strcmp(k, "server") == 0)
		migrate_conv_set_str(g->a, CK_HOST, v);
	else if (strcmp(k, "port") == 0) {
		if (migrate_conv_number(
			g->c, g->a, g->line, "port", v, 1, 65535, &n))
			migrate_conv_set_raw(g->a, CK_PORT, "%llu", n);
	} else if (strcmp(k, "username") == 0)
		migrate_conv_set_str(g->a, CK_USER, v);
	else if (strcmp(k, "password") == 0)
		g->a->password_line = g->line;
	else if (strcmp(k, "password_command") == 0) {
		if (tuple_command(v, cmd, sizeof(cmd)))
			migrate_conv_set_str(g->a, CK_PASSWORD_COMMAND, cmd);
		else
			unsupported(g, k, v, "not a tuple of strings");
	} else if (strcmp(k, "use_apop") == 0 && boolean(v) >= 0) {
		if (boolean(v) == 1)
			migrate_conv_set_str(g->a, CK_AUTH, "apop");
	} else if (strcmp(k, "timeout") == 0) {
		if (migrate_conv_number(
			g->c, g->a, g->line, "timeout", v, 1, 3600, &n))
			migrate_conv_set_raw(g->a, CK_TIMEOUT, "%llu", n);
	} else if (strcmp(k, "ca_certs") == 0)
		migrate_conv_set_path(g->c, g->a, CK_CA_FILE, g->line, k, v);
	else if (strcmp(k, "certfile") == 0)
		migrate_conv_set_path(
		    g->c, g->a, CK_CLIENT_CERT, g->line, k, v);
	else if (strcmp(k, "keyfile") == 0)
		migrate_conv_set_path(g->c, g->a, CK_CLIENT_KEY, g->line, k, v);
	else if (strcmp(k, "ssl_fingerprints") == 0)
		unsupported(g, k, v,
		    "pins certificates; popfetchd pins public keys instead (tls_pins; a connection refused for a wrong pin names the server's key)");
	else
		unsupported(g, k, v, "no equivalent in popfetchd");
}

static void
destination(struct getmail *g, const char *k, const char *v)
{
	if (strcmp(k, "type") == 0) {
		if (strcmp(v, "Maildir") != 0) {
			g->a->mda = true;
			unsupported(
			    g, k, v, "popfetchd delivers into a Maildir");
		}
	} else if (strcmp(k, "path") == 0 && !g->a->mda)
		migrate_conv_set_path(
		    g->c, g->a, CK_MAILDIR, g->line, "path", v);
	else
		unsupported(g, k, v, "no equivalent in popfetchd");
}

static void
options(struct getmail *g, const char *k, const char *v)
{
	unsigned long long n;

	if (strcmp(k, "delete") == 0 && boolean(v) >= 0)
		g->delete = boolean(v);
	else if (strcmp(k, "read_all") == 0 && boolean(v) >= 0)
		g->read_all = boolean(v) == 1;
	else if (strcmp(k, "received") == 0 && boolean(v) >= 0)
		migrate_conv_set_bool(
		    g->a, CK_RECEIVED_HEADER, boolean(v) == 1);
	else if (strcmp(k, "delete_after") == 0) {
		if (migrate_conv_number(
			g->c, g->a, g->line, "delete_after", v, 0, 36500, &n)) {
			migrate_conv_set_raw(
			    g->a, CK_DELETE_AFTER_DAYS, "%llu", n);
			g->delete_after = n > 0;
		}
	} else if (strcmp(k, "max_message_size") == 0) {
		if (migrate_conv_number(g->c, g->a, g->line, "max_message_size",
			v, 0, 1ULL << 40, &n))
			migrate_conv_set_raw(
			    g->a, CK_MAX_MESSAGE_SIZE, "%lluL", n);
	} else
		unsupported(g, k, v, "no equivalent in popfetchd");
}

static void
setting(struct getmail *g, char *line)
{
	char *sep = line + strcspn(line, "=:"), *k = line, *v, *e;

	if (*sep == '\0') {
		migrate_conv_complain(
		    g->c, g->line, "not \"key = value\": skipped");
		return;
	}
	*sep = '\0';
	v = sep + 1 + strspn(sep + 1, " \t");
	for (e = sep; e > k && (e[-1] == ' ' || e[-1] == '\t');)
		*--e = '\0';
	switch (g->sect) {
	case S_RETRIEVER:
		retriever(g, k, v);
		break;
	case S_DESTINATION:
		destination(g, k, v);
		break;
	case S_OPTIONS:
		options(g, k, v);
		break;
	case S_OTHER:
		unsupported(g, k, v, "no equivalent in popfetchd");
		break;
	case S_NONE:
		migrate_conv_complain(
		    g->c, g->line, "a setting before any section");
		break;
	}
}

static void
section(struct getmail *g, const char *line)
{
	size_t n = strcspn(line + 1, "]");

	snprintf(g->sect_name, sizeof(g->sect_name), "%.*s", (int)n, line + 1);
	if (strcmp(g->sect_name, "retriever") == 0)
		g->sect = S_RETRIEVER;
	else if (strcmp(g->sect_name, "destination") == 0)
		g->sect = S_DESTINATION;
	else if (strcmp(g->sect_name, "options") == 0)
		g->sect = S_OPTIONS;
	else {
		g->sect = S_OTHER;
		migrate_conv_note(g->a, "%s:%d: [%s]: %s", g->c->path, g->line,
		    g->sect_name,
		    strncmp(g->sect_name, "filter", 6) == 0
			? "popfetchd runs no filters"
			: "a section without an equivalent");
	}
}

/* What getmail's defaults were, where they differ from popfetchd's. */
static void
finish(struct getmail *g)
{
	struct migrate_conv_acct *a = g->a;

	if (g->delete == 1)
		migrate_conv_set_bool(a, CK_KEEP, false);
	else {
		migrate_conv_set_bool(a, CK_KEEP, true);
		if (g->delete == -1)
			migrate_conv_note(a,
			    "getmail keeps mail on the server unless told to delete it: keep = true");
	}
	if (g->delete == 1 && g->delete_after)
		migrate_conv_note(a,
		    "delete_after had no effect with delete = true in getmail, nor has delete_after_days here");
	if (g->read_all)
		migrate_conv_note(a,
		    "getmail's read_all (on unless set off) fetched every message at every run; popfetchd fetches only new ones");
	if (!g->pop3 && !a->skip) {
		a->skip = true;
		migrate_conv_complain(
		    g->c, a->line, "no retriever type: nothing converted");
	}
	if (a->val[CK_HOST][0] != '\0')
		migrate_conv_fmt(a->uid_hint, sizeof(a->uid_hint),
		    "getmail:~/.getmail/oldmail-%.*s-%s-%.*s",
		    (int)strlen(a->val[CK_HOST]) - 2, a->val[CK_HOST] + 1,
		    a->val[CK_PORT][0] != '\0' ? a->val[CK_PORT]
		    : strcmp(a->val[CK_TLS], "\"implicit\"") == 0 ? "995"
								  : "110",
		    a->val[CK_USER][0] != '\0'
			? (int)strlen(a->val[CK_USER]) - 2
			: 0,
		    a->val[CK_USER] + (a->val[CK_USER][0] != '\0'));
}

void
migrate_conv_getmail(struct migrate_conv *c, const char *text)
{
	struct getmail g = {.c = c, .delete = -1, .read_all = true};
	char line[GM_LINE_MAX + 1], name[CONF_NAME_MAX + 1], *s;
	const char *p = text, *nl, *base;
	size_t len;

	base = strrchr(c->path, '/');
	base = base != NULL ? base + 1 : c->path;
	snprintf(name, sizeof(name), "%s", base);
	if ((g.a = migrate_conv_acct_new(c, NULL, name, 1)) == NULL)
		return;
	for (; *p != '\0'; p = nl != NULL ? nl + 1 : p + len) {
		nl = strchr(p, '\n');
		len = nl != NULL ? (size_t)(nl - p) : strlen(p);
		g.line++;
		if (len > GM_LINE_MAX) {
			migrate_conv_complain(
			    c, g.line, "line too long: skipped");
			continue;
		}
		memcpy(line, p, len);
		line[len] = '\0';
		for (s = line + len;
		     s > line && strchr(" \t\r", s[-1]) != NULL;)
			*--s = '\0';
		s = line + strspn(line, " \t");
		if (*s == '\0' || *s == '#' || *s == ';')
			continue;
		if (s != line) {
			migrate_conv_note(g.a,
			    "%s:%d: a continued value: only one-line values are converted",
			    c->path, g.line);
			continue;
		}
		if (*s == '[')
			section(&g, s);
		else
			setting(&g, s);
	}
	finish(&g);
}
