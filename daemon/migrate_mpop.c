/*
 * An mpoprc read for popfetchd --convert (mpop(1), "Configuration
 * file"): one command a line, with an optional argument that may be
 * quoted; '#' starts a comment line; "defaults" sets what later
 * accounts start from; "account NAME : A, B" starts from defaults and
 * then takes every setting of A, then B.
 */
#include <string.h>
#include <strings.h>

#include "migrate_conf.h"

#define MPOP_LINE_MAX 4096

/* The state of the reader: the account being filled, or defaults. */
struct mpop {
	struct migrate_conv *c;
	struct migrate_conv_acct defaults;
	struct migrate_conv_acct *cur; /* &defaults, or an account of c */
	int line;
};

/* mpop's on/off: an empty argument means on. -1 if neither. */
static int
onoff(const char *arg)
{
	if (arg[0] == '\0' || strcmp(arg, "on") == 0)
		return 1;
	if (strcmp(arg, "off") == 0)
		return 0;
	return -1;
}

/*
 * Splits LINE (changed in place) into its command and argument, the
 * argument unquoted. False if a quote is not closed.
 */
static bool
split(char *line, char **cmd, char **arg)
{
	char *p, *o;

	*cmd = line + strspn(line, " \t");
	p = *cmd + strcspn(*cmd, " \t");
	if (*p != '\0')
		*p++ = '\0';
	p += strspn(p, " \t");
	*arg = p;
	if (*p != '"') {
		o = p + strlen(p);
		while (o > p && (o[-1] == ' ' || o[-1] == '\t'))
			*--o = '\0';
		return true;
	}
	for (o = p++; *p != '\0' && *p != '"'; p++) {
		if (*p == '\\' && p[1] != '\0')
			p++;
		*o++ = *p;
	}
	if (*p != '"' || p[1 + strspn(p + 1, " \t")] != '\0')
		return false;
	*o = '\0';
	return true;
}

/* "account NAME [: A[, B]...]" */
static void
account(struct mpop *m, char *arg)
{
	char *colon = strchr(arg, ':'), *parent, *name = arg;
	size_t i, n;

	if (colon != NULL)
		*colon++ = '\0';
	n = strcspn(name, " \t");
	name[n] = '\0';
	if ((m->cur = migrate_conv_acct_new(
		 m->c, &m->defaults, name, m->line)) == NULL) {
		m->cur = &m->defaults; /* read on, write nothing more */
		return;
	}
	/*
	 * "account default : A" only picks what mpop polls when no account
	 * is named: written out, it would poll A's mailbox a second time,
	 * with a state of its own, and fetch everything again.
	 */
	if (strcmp(name, "default") == 0 && colon != NULL) {
		m->cur->skip = true;
		migrate_conv_complain(m->c, m->line,
		    "account default: mpop's choice of default account, the same mailbox as the one it inherits from: left out");
	}
	for (parent = colon != NULL ? strtok(colon, ", \t") : NULL;
	     parent != NULL; parent = strtok(NULL, ", \t")) {
		for (i = 0; i + 1 < m->c->n; i++)
			if (strcmp(m->c->accts[i].name, parent) == 0)
				break;
		if (i + 1 < m->c->n)
			migrate_conv_acct_merge(m->cur, &m->c->accts[i]);
		else
			migrate_conv_complain(m->c, m->line,
			    "account %s: no account \"%s\" before it to inherit from",
			    name, parent);
	}
}

static void
auth(struct mpop *m, const char *arg)
{
	static const char *const same[] = {"plain", "login", "xoauth2",
	    "oauthbearer", "external", "user", NULL};
	size_t i;

	if (onoff(arg) == 1) {
		migrate_conv_set_str(m->cur, CK_AUTH, "auto");
		return;
	}
	for (i = 0; same[i] != NULL; i++)
		if (strcasecmp(arg, same[i]) == 0) {
			migrate_conv_set_str(m->cur, CK_AUTH, same[i]);
			return;
		}
	migrate_conv_note(m->cur, "%s:%d: auth %s: %s", m->c->path, m->line,
	    arg,
	    "a method popfetchd does not have; it picks the strongest both sides offer (auth = auto)");
}

/* "delivery METHOD ARGS" */
static void
delivery(struct mpop *m, const char *arg)
{
	if (strncmp(arg, "maildir", 7) == 0 &&
	    (arg[7] == ' ' || arg[7] == '\t')) {
		m->cur->mda = false;
		migrate_conv_set_path(m->c, m->cur, CK_MAILDIR, m->line,
		    "delivery maildir", arg + 8 + strspn(arg + 8, " \t"));
	} else {
		/* Not the Maildir of an account it inherits from. */
		m->cur->val[CK_MAILDIR][0] = '\0';
		m->cur->mda = true;
		migrate_conv_note(
		    m->cur, "%s:%d: delivery %s", m->c->path, m->line, arg);
	}
}

/* "skipsize off|N[k|m]" (killsize has no equivalent). */
static void
skipsize(struct mpop *m, const char *arg)
{
	unsigned long long v, mult = 1;
	char num[32];
	size_t n = strlen(arg);

	if (strcmp(arg, "off") == 0) {
		migrate_conv_set_raw(m->cur, CK_MAX_MESSAGE_SIZE, "0");
		return;
	}
	if (n > 0 && (arg[n - 1] == 'k' || arg[n - 1] == 'm')) {
		mult = arg[n - 1] == 'k' ? 1024 : 1024 * 1024;
		n--;
	}
	snprintf(num, sizeof(num), "%.*s", (int)n, arg);
	if (migrate_conv_number(m->c, m->cur, m->line, "skipsize", num, 0,
		(1ULL << 40) / mult, &v))
		migrate_conv_set_raw(
		    m->cur, CK_MAX_MESSAGE_SIZE, "%lluL", v * mult);
}

static void
tls_trust(struct mpop *m, const char *arg)
{
	if (strcmp(arg, "system") == 0)
		return;
	if (arg[0] == '\0')
		migrate_conv_unsupported(m->c, m->cur, m->line,
		    "tls_trust_file \"\"",
		    "trusts no CA; popfetchd verifies against the system store unless told otherwise (see tls_pins)");
	else
		migrate_conv_set_path(
		    m->c, m->cur, CK_CA_FILE, m->line, "tls_trust_file", arg);
}

/* Commands that set a popfetchd key directly, or need a word. */
static bool
simple(struct mpop *m, const char *cmd, const char *arg)
{
	unsigned long long v;
	int on = onoff(arg);

	if (strcmp(cmd, "host") == 0)
		migrate_conv_set_str(m->cur, CK_HOST, arg);
	else if (strcmp(cmd, "user") == 0)
		migrate_conv_set_str(m->cur, CK_USER, arg);
	else if (strcmp(cmd, "port") == 0) {
		if (migrate_conv_number(
			m->c, m->cur, m->line, "port", arg, 1, 65535, &v))
			migrate_conv_set_raw(m->cur, CK_PORT, "%llu", v);
	} else if (strcmp(cmd, "timeout") == 0) {
		if (strcmp(arg, "off") == 0)
			migrate_conv_unsupported(m->c, m->cur, m->line,
			    "timeout off",
			    "popfetchd always has one (default 60 s)");
		else if (migrate_conv_number(m->c, m->cur, m->line, "timeout",
			     arg, 1, 3600, &v))
			migrate_conv_set_raw(m->cur, CK_TIMEOUT, "%llu", v);
	} else if (strcmp(cmd, "password") == 0)
		m->cur->password_line = m->line;
	else if (strcmp(cmd, "passwordeval") == 0)
		migrate_conv_set_str(m->cur, CK_PASSWORD_COMMAND, arg);
	else if (strcmp(cmd, "tls_key_file") == 0)
		migrate_conv_set_path(
		    m->c, m->cur, CK_CLIENT_KEY, m->line, cmd, arg);
	else if (strcmp(cmd, "tls_cert_file") == 0)
		migrate_conv_set_path(
		    m->c, m->cur, CK_CLIENT_CERT, m->line, cmd, arg);
	else if (strcmp(cmd, "tls_trust_file") == 0)
		tls_trust(m, arg);
	else if (strcmp(cmd, "tls") == 0 && on >= 0)
		m->cur->tls_on = on ? 1 : -1;
	else if (strcmp(cmd, "tls_starttls") == 0 && on >= 0)
		m->cur->starttls = on ? 1 : -1;
	else if (strcmp(cmd, "tls_certcheck") == 0 && on >= 0)
		migrate_conv_set_bool(m->cur, CK_TLS_VERIFY, on);
	else if (strcmp(cmd, "keep") == 0 && on >= 0)
		migrate_conv_set_bool(m->cur, CK_KEEP, on);
	else if (strcmp(cmd, "received_header") == 0 && on >= 0)
		migrate_conv_set_bool(m->cur, CK_RECEIVED_HEADER, on);
	else if (strcmp(cmd, "pipelining") == 0 &&
		 (strcmp(arg, "auto") == 0 || on >= 0))
		migrate_conv_set_str(
		    m->cur, CK_PIPELINING, arg[0] == '\0' ? "on" : arg);
	else if (strcmp(cmd, "auth") == 0)
		auth(m, arg);
	else if (strcmp(cmd, "delivery") == 0)
		delivery(m, arg);
	else if (strcmp(cmd, "skipsize") == 0)
		skipsize(m, arg);
	else if (strcmp(cmd, "uidls_file") == 0)
		migrate_conv_fmt(
		    m->cur->uid_hint, sizeof(m->cur->uid_hint), "mpop:%s", arg);
	else
		return false;
	return true;
}

/* Why a known mpop command has no popfetchd equivalent. */
static const char *
why_not(const char *cmd)
{
	static const struct {
		const char *cmd, *why;
	} tab[] = {
	    {"tls_fingerprint",
		"pins a certificate; popfetchd pins public keys instead (tls_pins; a connection refused for a wrong pin names the server's key)"},
	    {"killsize", "popfetchd never deletes mail it did not fetch"},
	    {"filter", "popfetchd has no header filter"},
	    {"only_new", "popfetchd always fetches only new mail"},
	    {"eval", "the line comes from a command; convert its output"},
	    {"ntlmdomain", "popfetchd has no NTLM"},
	    {"proxy_host", "popfetchd has no SOCKS proxy"},
	    {"proxy_port", "popfetchd has no SOCKS proxy"},
	    {"source_ip", "popfetchd does not bind a source address"},
	    {"socket", "popfetchd connects over TCP only"},
	    {"tls_crl_file", "popfetchd has no CRL file"},
	    {"tls_priorities", "see tls_min_version"},
	    {"tls_min_dh_prime_bits", "not needed with OpenSSL's defaults"},
	    {"tls_host_override", "popfetchd checks the certificate for host"},
	};
	size_t i;

	for (i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
		if (strcmp(cmd, tab[i].cmd) == 0)
			return tab[i].why;
	return "not an mpop command this converter knows";
}

static void
command(struct mpop *m, char *cmd, char *arg)
{
	if (strcmp(cmd, "defaults") == 0) {
		m->cur = &m->defaults;
		return;
	}
	if (strcmp(cmd, "account") == 0) {
		account(m, arg);
		return;
	}
	if (simple(m, cmd, arg))
		return;
	migrate_conv_note(m->cur, "%s:%d: %s%s%s: %s", m->c->path, m->line, cmd,
	    arg[0] != '\0' ? " " : "", arg, why_not(cmd));
}

/* mpop's TLS: tls (default off), tls_starttls (default on). */
static void
finish_tls(struct migrate_conv *c, struct migrate_conv_acct *a)
{
	if (a->tls_on == 1)
		migrate_conv_set_str(
		    a, CK_TLS, a->starttls == -1 ? "implicit" : "starttls");
	else {
		migrate_conv_set_str(a, CK_TLS, "starttls");
		migrate_conv_note(a,
		    "mpop had tls off (its default): popfetchd asks for STLS, as it never sends a password in clear unless told to (tls = \"none\" with allow_plaintext = true)");
	}
	if (a->uid_hint[0] == '\0')
		migrate_conv_fmt(a->uid_hint, sizeof(a->uid_hint),
		    "mpop:~/.mpop_uidls/%%U_at_%%H");
}

/* Expands mpop's %U and %H in the UIDLS file name of A. */
static void
expand_hint(struct migrate_conv_acct *a)
{
	char out[MIGRATE_CONV_VAL_LEN], host[MIGRATE_CONV_VAL_LEN],
	    user[MIGRATE_CONV_VAL_LEN];
	const char *p;
	size_t n = 0;

	/* The values are quoted libconfig strings: unquote plain ones. */
	snprintf(host, sizeof(host), "%.*s", (int)strlen(a->val[CK_HOST]) - 2,
	    a->val[CK_HOST] + 1);
	snprintf(user, sizeof(user), "%.*s",
	    a->val[CK_USER][0] != '\0' ? (int)strlen(a->val[CK_USER]) - 2 : 0,
	    a->val[CK_USER] + (a->val[CK_USER][0] != '\0'));
	for (p = a->uid_hint; *p != '\0' && n + 1 < sizeof(out); p++) {
		if (p[0] == '%' && (p[1] == 'U' || p[1] == 'H')) {
			n += (size_t)snprintf(out + n, sizeof(out) - n, "%s",
			    p[1] == 'U' ? user : host);
			if (n >= sizeof(out))
				n = sizeof(out) - 1;
			p++;
		} else
			out[n++] = *p;
	}
	out[n] = '\0';
	memcpy(a->uid_hint, out, sizeof(out));
}

void
migrate_conv_mpop(struct migrate_conv *c, const char *text)
{
	struct mpop m = {.c = c};
	char line[MPOP_LINE_MAX + 1], *cmd, *arg;
	const char *p = text, *nl;
	size_t len, i, first = c->n;

	m.cur = &m.defaults;
	for (; *p != '\0'; p = nl != NULL ? nl + 1 : p + len) {
		nl = strchr(p, '\n');
		len = nl != NULL ? (size_t)(nl - p) : strlen(p);
		m.line++;
		if (len > MPOP_LINE_MAX) {
			migrate_conv_complain(
			    c, m.line, "line too long: skipped");
			continue;
		}
		memcpy(line, p, len);
		line[len] = '\0';
		if (len > 0 && line[len - 1] == '\r')
			line[len - 1] = '\0';
		if (!split(line, &cmd, &arg)) {
			migrate_conv_complain(
			    c, m.line, "a quote not closed: skipped");
			continue;
		}
		if (cmd[0] != '\0' && cmd[0] != '#')
			command(&m, cmd, arg);
	}
	for (i = first; i < c->n; i++) {
		finish_tls(c, &c->accts[i]);
		if (c->accts[i].val[CK_HOST][0] != '\0')
			expand_hint(&c->accts[i]);
	}
}
