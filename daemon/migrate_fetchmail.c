/*
 * A fetchmailrc read for popfetchd --convert, its common subset
 * (fetchmail(1), "The run control file"): "set" lines, then "defaults"
 * and "poll SERVER" entries, each with server options and then one or
 * more "user NAME" descriptions with their options. Words such as
 * "with", "and", "has", "wants", "options", "there" are noise; "no"
 * turns off the option after it; '#' starts a comment outside quotes.
 */
#include <string.h>
#include <strings.h>

#include "migrate_conf.h"

#define FM_TOKEN_MAX 1024

enum fm_act {
	A_NOTE, /* no equivalent: a note */
	A_HOST, /* via */
	A_PROTO,
	A_PORT,
	A_AUTH,
	A_TIMEOUT,
	A_USER,
	A_PASS,
	A_LOCAL, /* is / to NAMES [here] */
	A_SSL,
	A_CERTCK,
	A_CAFILE,
	A_CAPATH,
	A_CERT,
	A_KEY,
	A_KEEP,
	A_LIMIT,
	A_MDA,
	A_UIDL,
	A_FETCHALL,
};

static const struct fm_kw {
	const char *word;
	int nargs;
	enum fm_act act;
	const char *why; /* A_NOTE: why there is no equivalent */
} keywords[] = {
    {"via", 1, A_HOST, NULL},
    {"proto", 1, A_PROTO, NULL},
    {"protocol", 1, A_PROTO, NULL},
    {"port", 1, A_PORT, NULL},
    {"service", 1, A_PORT, NULL},
    {"auth", 1, A_AUTH, NULL},
    {"authenticate", 1, A_AUTH, NULL},
    {"timeout", 1, A_TIMEOUT, NULL},
    {"user", 1, A_USER, NULL},
    {"username", 1, A_USER, NULL},
    {"pass", 1, A_PASS, NULL},
    {"password", 1, A_PASS, NULL},
    {"is", 0, A_LOCAL, NULL},
    {"to", 0, A_LOCAL, NULL},
    {"ssl", 0, A_SSL, NULL},
    {"sslcertck", 0, A_CERTCK, NULL},
    {"sslcertfile", 1, A_CAFILE, NULL},
    {"sslcertpath", 1, A_CAPATH, NULL},
    {"sslcert", 1, A_CERT, NULL},
    {"sslkey", 1, A_KEY, NULL},
    {"keep", 0, A_KEEP, NULL},
    {"nokeep", 0, A_KEEP, NULL},
    {"limit", 1, A_LIMIT, NULL},
    {"mda", 1, A_MDA, NULL},
    {"uidl", 0, A_UIDL, NULL},
    {"fetchall", 0, A_FETCHALL, NULL},
    {"sslfingerprint", 1, A_NOTE,
	"an MD5 of the certificate; popfetchd pins public keys instead (tls_pins; a connection refused for a wrong pin names the server's key)"},
    {"sslproto", 1, A_NOTE,
	"popfetchd speaks TLS 1.2 or later (see tls_min_version)"},
    {"sslcommonname", 1, A_NOTE, "popfetchd checks the certificate for host"},
    {"interval", 1, A_NOTE, "popfetchd polls every poll_interval seconds"},
    {"envelope", 1, A_NOTE, "multidrop is not supported"},
    {"qvirtual", 1, A_NOTE, "multidrop is not supported"},
    {"aka", 1, A_NOTE, "multidrop is not supported"},
    {"localdomains", 1, A_NOTE, "multidrop is not supported"},
    {"dns", 0, A_NOTE, "multidrop is not supported"},
    {"checkalias", 0, A_NOTE, "multidrop is not supported"},
    {"principal", 1, A_NOTE, "popfetchd has no Kerberos"},
    {"esmtpname", 1, A_NOTE, "popfetchd does not forward by SMTP"},
    {"esmtppassword", 1, A_NOTE, "popfetchd does not forward by SMTP"},
    {"smtphost", 1, A_NOTE, "popfetchd delivers into a Maildir, not by SMTP"},
    {"smtpname", 1, A_NOTE, "popfetchd delivers into a Maildir, not by SMTP"},
    {"smtpaddress", 1, A_NOTE,
	"popfetchd delivers into a Maildir, not by SMTP"},
    {"lmtp", 0, A_NOTE, "popfetchd delivers into a Maildir, not by LMTP (yet)"},
    {"bsmtp", 1, A_NOTE, "popfetchd delivers into a Maildir"},
    {"antispam", 1, A_NOTE, "popfetchd does not forward by SMTP"},
    {"tracepolls", 0, A_NOTE, "popfetchd adds its own Received: line"},
    {"plugin", 1, A_NOTE, "popfetchd connects over TCP only"},
    {"plugout", 1, A_NOTE, "popfetchd does not forward by SMTP"},
    {"interface", 1, A_NOTE, "popfetchd does not watch interfaces"},
    {"monitor", 1, A_NOTE, "popfetchd does not watch interfaces"},
    {"badheader", 1, A_NOTE, "popfetchd keeps messages as they are"},
    {"retrieveerror", 1, A_NOTE,
	"popfetchd leaves a message it cannot fetch on the server and tries again"},
    {"flush", 0, A_NOTE, "popfetchd never deletes mail it did not fetch"},
    {"limitflush", 0, A_NOTE, "popfetchd never deletes mail it did not fetch"},
    {"fetchlimit", 1, A_NOTE, "popfetchd fetches all new mail in one poll"},
    {"fetchsizelimit", 1, A_NOTE, "popfetchd lists sizes as it needs"},
    {"fastuidl", 1, A_NOTE, "popfetchd always lists every UID"},
    {"batchlimit", 1, A_NOTE, "popfetchd does not forward by SMTP"},
    {"expunge", 1, A_NOTE, "popfetchd deletes at the end of each batch"},
    {"folder", 1, A_NOTE, "POP3 has one mailbox"},
    {"mimedecode", 0, A_NOTE, "popfetchd keeps messages as they are"},
    {"stripcr", 0, A_NOTE, "popfetchd always writes LF line ends"},
    {"forcecr", 0, A_NOTE, "popfetchd always writes LF line ends"},
    {"pass8bits", 0, A_NOTE, "popfetchd keeps messages as they are"},
    {"dropstatus", 0, A_NOTE, "popfetchd keeps messages as they are"},
    {"dropdelivered", 0, A_NOTE, "popfetchd keeps messages as they are"},
    {"rewrite", 0, A_NOTE, "popfetchd keeps messages as they are"},
    {"idle", 0, A_NOTE, "IDLE is IMAP's"},
    {"preconnect", 1, A_NOTE, "popfetchd runs no commands around a poll"},
    {"postconnect", 1, A_NOTE, "popfetchd runs no commands around a poll"},
    {"properties", 1, A_NOTE, "ignored by fetchmail too"},
    {"warnings", 1, A_NOTE, "popfetchd logs each oversized message once"},
    {"showdots", 0, A_NOTE, "popfetchd shows no progress dots"},
};

/* Words that only make the file read like English. */
static const char *const noise[] = {
    "and", "with", "has", "wants", "options", "there", "here", "=", NULL};

struct fetchmail {
	struct migrate_conv *c;
	const char *p; /* what is left of the text */
	int line;
	struct migrate_conv_acct defaults, server;
	struct migrate_conv_acct *target; /* what options go to */
	char poll[FM_TOKEN_MAX];
	size_t first;  /* the first account of this poll */
	int poll_line; /* where the poll starts */
	bool not_pop3; /* this poll's protocol is not POP3 */
	bool any_poll;
};

/*
 * The next word or quoted string into TOK; false at the end. *LINE gets
 * its line.
 */
static bool
next_token(struct fetchmail *f, char *tok, size_t size)
{
	size_t n = 0;
	char q;

	for (;;) {
		while (*f->p == ' ' || *f->p == '\t' || *f->p == '\r' ||
		       *f->p == '\n' || *f->p == ',' || *f->p == ';' ||
		       *f->p == ':')
			f->line += *f->p++ == '\n';
		if (*f->p != '#')
			break;
		while (*f->p != '\0' && *f->p != '\n')
			f->p++;
	}
	if (*f->p == '\0')
		return false;
	if (*f->p == '"' || *f->p == '\'') {
		q = *f->p++;
		for (; *f->p != '\0' && *f->p != q; f->p++) {
			if (*f->p == '\\' && f->p[1] != '\0')
				f->p++;
			f->line += *f->p == '\n';
			if (n + 1 < size)
				tok[n++] = *f->p;
		}
		if (*f->p == q)
			f->p++;
		else
			migrate_conv_complain(
			    f->c, f->line, "a quote not closed");
	} else
		while (*f->p != '\0' && strchr(" \t\r\n,;:#", *f->p) == NULL) {
			if (n + 1 < size)
				tok[n++] = *f->p;
			f->p++;
		}
	tok[n] = '\0';
	return true;
}

static bool
is_noise(const char *w)
{
	size_t i;

	for (i = 0; noise[i] != NULL; i++)
		if (strcmp(w, noise[i]) == 0)
			return true;
	return false;
}

static const struct fm_kw *
keyword(const char *w)
{
	size_t i;

	for (i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
		if (strcmp(w, keywords[i].word) == 0)
			return &keywords[i];
	return NULL;
}

/* Names the poll's accounts: SERVER alone, or SERVER-USER with several. */
static void
end_poll(struct fetchmail *f)
{
	char user[MIGRATE_CONV_VAL_LEN];
	struct migrate_conv_acct *a;
	size_t i;

	for (i = f->first; i < f->c->n; i++) {
		a = &f->c->accts[i];
		if (f->not_pop3)
			a->skip = true;
		if (f->c->n - f->first == 1)
			continue;
		snprintf(user, sizeof(user), "%s", a->val[CK_USER] + 1);
		user[strcspn(user, "\"")] = '\0';
		migrate_conv_fmt(
		    a->name, sizeof(a->name), "%s-%s", f->poll, user);
	}
	if (f->not_pop3 && f->any_poll)
		migrate_conv_complain(f->c, f->poll_line,
		    "poll %s: not POP3, left out (popfetchd speaks POP3 only)",
		    f->poll);
	f->first = f->c->n;
	f->not_pop3 = false;
}

static void
proto(struct fetchmail *f, const char *arg)
{
	if (strcasecmp(arg, "pop3") == 0 || strcasecmp(arg, "auto") == 0)
		return;
	if (strcasecmp(arg, "apop") == 0)
		migrate_conv_set_str(f->target, CK_AUTH, "apop");
	else if (strcasecmp(arg, "rpop") == 0)
		migrate_conv_set_str(f->target, CK_AUTH, "rpop");
	else
		f->not_pop3 = true;
}

static void
port(struct fetchmail *f, const char *arg)
{
	unsigned long long v;

	if (strcmp(arg, "pop3") == 0)
		arg = "110";
	else if (strcmp(arg, "pop3s") == 0)
		arg = "995";
	if (migrate_conv_number(
		f->c, f->target, f->line, "port", arg, 1, 65535, &v))
		migrate_conv_set_raw(f->target, CK_PORT, "%llu", v);
}

static void
auth(struct fetchmail *f, const char *arg)
{
	if (strcmp(arg, "any") == 0 || strcmp(arg, "password") == 0)
		migrate_conv_set_str(f->target, CK_AUTH, "auto");
	else if (strcmp(arg, "external") == 0)
		migrate_conv_set_str(f->target, CK_AUTH, "external");
	else
		migrate_conv_note(f->target, "%s:%d: auth %s: %s", f->c->path,
		    f->line, arg,
		    "a method popfetchd does not have; it picks the strongest both sides offer (auth = auto)");
}

/* "user NAME": a new account of this poll, from its server options. */
static void
user(struct fetchmail *f, const char *name)
{
	struct migrate_conv_acct *a;

	if (!f->any_poll) {
		migrate_conv_set_str(&f->defaults, CK_USER, name);
		return;
	}
	if ((a = migrate_conv_acct_new(f->c, &f->server, f->poll, f->line)) ==
	    NULL)
		return;
	migrate_conv_set_str(a, CK_USER, name);
	f->target = a;
}

/* "is NAMES here" / "to NAMES here": local names, until "here". */
static void
local_names(struct fetchmail *f)
{
	char tok[FM_TOKEN_MAX];
	const char *save;
	int line;

	for (;;) {
		save = f->p;
		line = f->line;
		if (!next_token(f, tok, sizeof(tok)))
			return;
		if (strcmp(tok, "here") == 0)
			return;
		if (keyword(tok) != NULL || strcmp(tok, "poll") == 0 ||
		    strcmp(tok, "skip") == 0 || strcmp(tok, "defaults") == 0) {
			f->p = save;
			f->line = line;
			return;
		}
		migrate_conv_note(f->target,
		    "%s:%d: is %s: local user; popfetchd delivers into the maildir of the account",
		    f->c->path, f->line, tok);
	}
}

/* The keywords of what is fetched, kept and where it goes. */
static void
act_delivery(
    struct fetchmail *f, const struct fm_kw *k, bool no, const char *arg)
{
	struct migrate_conv_acct *a = f->target;
	unsigned long long v;

	switch (k->act) {
	case A_KEEP:
		migrate_conv_set_bool(
		    a, CK_KEEP, !no && strcmp(k->word, "nokeep") != 0);
		return;
	case A_LIMIT:
		if (migrate_conv_number(
			f->c, a, f->line, "limit", arg, 0, 1ULL << 40, &v))
			migrate_conv_set_raw(
			    a, CK_MAX_MESSAGE_SIZE, "%lluL", v);
		return;
	case A_MDA:
		a->mda = true;
		migrate_conv_note(a, "%s:%d: mda %s", f->c->path, f->line, arg);
		return;
	case A_UIDL:
		return; /* popfetchd always keeps UIDs: nothing to say */
	case A_FETCHALL:
		if (!no)
			migrate_conv_note(a,
			    "%s:%d: fetchall: popfetchd fetches only what it has not fetched before (to fetch all again, remove its state file)",
			    f->c->path, f->line);
		return;
	default:
		return;
	}
}

/* The TLS keywords of a poll entry. */
static void
act_tls(struct fetchmail *f, const struct fm_kw *k, bool no, const char *arg)
{
	struct migrate_conv_acct *a = f->target;

	switch (k->act) {
	case A_SSL:
		migrate_conv_set_str(a, CK_TLS, no ? "starttls" : "implicit");
		return;
	case A_CERTCK:
		migrate_conv_set_bool(a, CK_TLS_VERIFY, !no);
		return;
	case A_CAFILE:
		migrate_conv_set_path(
		    f->c, a, CK_CA_FILE, f->line, k->word, arg);
		return;
	case A_CAPATH:
		migrate_conv_set_path(
		    f->c, a, CK_CA_PATH, f->line, k->word, arg);
		return;
	case A_CERT:
		migrate_conv_set_path(
		    f->c, a, CK_CLIENT_CERT, f->line, k->word, arg);
		return;
	case A_KEY:
		migrate_conv_set_path(
		    f->c, a, CK_CLIENT_KEY, f->line, k->word, arg);
		return;
	default:
		return;
	}
}

static void
act(struct fetchmail *f, const struct fm_kw *k, bool no, const char *arg)
{
	struct migrate_conv_acct *a = f->target;
	unsigned long long v;

	switch (k->act) {
	case A_NOTE:
		migrate_conv_note(a, "%s:%d: %s%s%s%s: %s", f->c->path, f->line,
		    no ? "no " : "", k->word, k->nargs > 0 ? " " : "",
		    k->nargs > 0 ? arg : "", k->why);
		break;
	case A_HOST:
		migrate_conv_set_str(a, CK_HOST, arg);
		break;
	case A_PROTO:
		proto(f, arg);
		break;
	case A_PORT:
		port(f, arg);
		break;
	case A_AUTH:
		auth(f, arg);
		break;
	case A_TIMEOUT:
		if (migrate_conv_number(
			f->c, a, f->line, "timeout", arg, 1, 3600, &v))
			migrate_conv_set_raw(a, CK_TIMEOUT, "%llu", v);
		break;
	case A_USER:
		user(f, arg);
		break;
	case A_PASS:
		a->password_line = f->line;
		break;
	case A_LOCAL:
		local_names(f);
		break;
	case A_SSL:
	case A_CERTCK:
	case A_CAFILE:
	case A_CAPATH:
	case A_CERT:
	case A_KEY:
		act_tls(f, k, no, arg);
		break;
	case A_KEEP:
	case A_LIMIT:
	case A_MDA:
	case A_UIDL:
	case A_FETCHALL:
		act_delivery(f, k, no, arg);
		break;
	}
}

/* "set [no] NAME [[=] VALUE]" */
static void
set(struct fetchmail *f)
{
	static const char *const valued[] = {"daemon", "logfile", "idfile",
	    "pidfile", "postmaster", "properties", NULL};
	char name[FM_TOKEN_MAX], val[FM_TOKEN_MAX] = "";
	unsigned long long v;
	size_t i;

	if (!next_token(f, name, sizeof(name)))
		return;
	if (strcmp(name, "no") == 0 && !next_token(f, name, sizeof(name)))
		return;
	for (i = 0; valued[i] != NULL; i++)
		if (strcmp(name, valued[i]) == 0)
			break;
	if (valued[i] != NULL)
		while (next_token(f, val, sizeof(val)) && strcmp(val, "=") == 0)
			;
	if (strcmp(name, "daemon") == 0) {
		if (migrate_conv_number(f->c, &f->defaults, f->line,
			"set daemon", val, 10, 604800, &v))
			migrate_conv_set_raw(
			    &f->defaults, CK_POLL_INTERVAL, "%llu", v);
	} else if (strcmp(name, "idfile") == 0)
		migrate_conv_fmt(f->defaults.uid_hint,
		    sizeof(f->defaults.uid_hint), "fetchmail:%s", val);
	else
		migrate_conv_note(&f->defaults, "%s:%d: set %s%s%s: %s",
		    f->c->path, f->line, name, val[0] != '\0' ? " " : "", val,
		    "a fetchmail-wide setting without an equivalent");
}

/* "poll NAME" or "skip NAME": a server's entry starts. */
static void
poll(struct fetchmail *f, bool skip)
{
	char name[FM_TOKEN_MAX];

	end_poll(f);
	if (!next_token(f, name, sizeof(name)))
		return;
	f->any_poll = true;
	f->poll_line = f->line;
	snprintf(f->poll, sizeof(f->poll), "%s", name);
	memset(&f->server, 0, sizeof(f->server));
	migrate_conv_acct_merge(&f->server, &f->defaults);
	migrate_conv_set_str(&f->server, CK_HOST, name);
	f->target = &f->server;
	if (skip)
		migrate_conv_note(&f->server,
		    "%s:%d: skip: fetchmail polled it only when named; popfetchd polls every account (use -a to pick)",
		    f->c->path, f->line);
}

/* One token at the top of the grammar. */
static void
token(struct fetchmail *f, const char *tok, bool *no)
{
	char arg[FM_TOKEN_MAX] = "";
	const struct fm_kw *k;

	if (strcmp(tok, "poll") == 0 || strcmp(tok, "skip") == 0)
		poll(f, tok[0] == 's');
	else if (strcmp(tok, "defaults") == 0) {
		end_poll(f);
		f->any_poll = false;
		f->target = &f->defaults;
	} else if (strcmp(tok, "set") == 0)
		set(f);
	else if (strcmp(tok, "no") == 0) {
		*no = true;
		return;
	} else if (is_noise(tok))
		return;
	else if ((k = keyword(tok)) != NULL) {
		if (k->nargs > 0 && !next_token(f, arg, sizeof(arg)))
			migrate_conv_complain(
			    f->c, f->line, "%s: no value", tok);
		else
			act(f, k, *no, arg);
	} else
		migrate_conv_note(f->target, "%s:%d: %s: %s", f->c->path,
		    f->line, tok,
		    "not a fetchmail keyword this converter knows");
	*no = false;
}

void
migrate_conv_fetchmail(struct migrate_conv *c, const char *text)
{
	struct fetchmail f = {.c = c, .p = text, .line = 1};
	char tok[FM_TOKEN_MAX];
	bool no = false;
	size_t i;

	f.target = &f.defaults;
	snprintf(f.defaults.uid_hint, sizeof(f.defaults.uid_hint),
	    "fetchmail:~/.fetchids");
	while (next_token(&f, tok, sizeof(tok)))
		token(&f, tok, &no);
	end_poll(&f);
	for (i = 0; i < c->n; i++) {
		if (c->accts[i].val[CK_TLS][0] == '\0') {
			migrate_conv_set_str(&c->accts[i], CK_TLS, "starttls");
			migrate_conv_note(&c->accts[i],
			    "fetchmail had no ssl: popfetchd asks for STLS, as it never sends a password in clear unless told to (tls = \"none\" with allow_plaintext = true)");
		}
		if (c->accts[i].val[CK_KEEP][0] == '\0')
			migrate_conv_set_bool(&c->accts[i], CK_KEEP, false);
	}
}
