/*
 * --check-config's look at the files the configuration names: see
 * check.h. Nothing is written and no secret is read.
 */
#include <sys/stat.h>

#include <errno.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "check.h"
#include "target_mda.h"
#include "tls.h"

#define CHECK_MSG_MAX 1024

struct checker {
	const struct conf *conf;
	conf_report_fn report;
	void *arg;
	size_t problems;
	char me[64]; /* the user we run as, by name */
};

static void say(struct checker *, const struct account *, const char *, ...)
    __attribute__((format(printf, 3, 4)));

/* One problem: "FILE:LINE: account "NAME": " and the text. */
static void
say(struct checker *c, const struct account *a, const char *fmt, ...)
{
	char text[CHECK_MSG_MAX], msg[2 * CHECK_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (a != NULL)
		snprintf(msg, sizeof(msg), "%s:%d: account \"%s\": %s", a->file,
		    a->line, a->name, text);
	else
		snprintf(msg, sizeof(msg), "%s: %s", c->conf->path, text);
	if (strncmp(text, "note: ", 6) != 0)
		c->problems++;
	c->report(c->arg, msg);
}

static void
user_name(uid_t uid, char *buf, size_t len)
{
	struct passwd *pw = getpwuid(uid);

	if (pw != NULL)
		snprintf(buf, len, "%s", pw->pw_name);
	else
		snprintf(buf, len, "%lu", (unsigned long)uid);
}

/*
 * A secret's file as secret.c and tls.c will take it: a regular file we
 * can read, closed to group and others. Reports under KEY; true if fine.
 */
static bool
private_file(struct checker *c, const struct account *a, const char *key,
    const char *path)
{
	struct stat st;

	if (stat(path, &st) == -1) {
		say(c, a, "%s %s: %s; create it (mode 600) or correct the path",
		    key, path, strerror(errno));
		return false;
	}
	if (!S_ISREG(st.st_mode))
		say(c, a, "%s %s: not a regular file", key, path);
	else if (st.st_mode & (S_IRWXG | S_IRWXO))
		say(c, a,
		    "%s %s: readable or writable by group or others, which popfetchd refuses; chmod 600 %s",
		    key, path, path);
	else if (access(path, R_OK) == -1)
		say(c, a, "%s %s: not readable by %s; chown %s %s", key, path,
		    c->me, c->me, path);
	else
		return true;
	return false;
}

/*
 * A credential (KEY names it NAME): only inside a unit with
 * LoadCredential=, which sets $CREDENTIALS_DIRECTORY.
 */
static void
check_credential(struct checker *c, const struct account *a, const char *key,
    const char *name)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	char path[PATH_MAX];

	if (dir == NULL || dir[0] == '\0') {
		say(c, a,
		    "note: %s \"%s\" is checked only where systemd sets $CREDENTIALS_DIRECTORY; the unit needs LoadCredential=%s:FILE",
		    key, name, name);
		return;
	}
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >=
	    (int)sizeof(path)) {
		say(c, a, "%s: path too long", key);
		return;
	}
	private_file(c, a, key, path);
}

/* PATH, which KEY runs, is a regular file we may execute. */
static void
check_program(struct checker *c, const struct account *a, const char *key,
    const char *path)
{
	struct stat st;

	if (stat(path, &st) == -1)
		say(c, a, "%s: %s: %s", key, path, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		say(c, a, "%s: %s is not a regular file", key, path);
	else if (access(path, X_OK) == -1)
		say(c, a, "%s: %s: not executable by %s: %s", key, path, c->me,
		    strerror(errno));
}

/*
 * A command /bin/sh -c runs (KEY = CMD): its first word, when it is a
 * plain program name or path, must be found as the shell would, in
 * $PATH. Anything shell syntax makes of the first word (variables,
 * quotes, assignments) is left to the shell.
 */
static void
check_command(struct checker *c, const struct account *a, const char *key,
    const char *cmd)
{
	const char *search = getenv("PATH"), *p, *end;
	char word[PATH_MAX], path[2 * PATH_MAX + 2];
	size_t n;

	cmd += strspn(cmd, " \t");
	n = strcspn(cmd, " \t\n");
	if (n == 0 || n >= sizeof(word) ||
	    strcspn(cmd, "\"'$`\\;|&<>(){}=*?[~#") < n)
		return;
	memcpy(word, cmd, n);
	word[n] = '\0';
	if (strchr(word, '/') != NULL) {
		check_program(c, a, key, word);
		return;
	}
	if (search == NULL || search[0] == '\0')
		search = "/usr/bin:/bin";
	for (p = search; *p != '\0'; p = *end != '\0' ? end + 1 : end) {
		end = p + strcspn(p, ":");
		if (end > p &&
		    snprintf(path, sizeof(path), "%.*s/%s", (int)(end - p), p,
			word) < (int)sizeof(path) &&
		    access(path, X_OK) == 0)
			return;
	}
	say(c, a,
	    "%s: %s: command not found in $PATH; install it or give its full path",
	    key, word);
}

/* The nearest directory at or above PATH that exists, into BUF. */
static void
existing_ancestor(const char *path, char *buf, size_t len)
{
	struct stat st;
	char *slash;

	snprintf(buf, len, "%s", path);
	while (stat(buf, &st) == -1 && (slash = strrchr(buf, '/')) != NULL) {
		if (slash == buf) {
			buf[1] = '\0';
			break;
		}
		*slash = '\0';
	}
}

/*
 * A read-only file system where popfetchd writes: in the service's
 * sandbox (ProtectSystem=strict), everything but its state directory.
 */
static void
read_only(struct checker *c, const struct account *a, const char *key,
    const char *dir)
{
	say(c, a, "%s %s: on a read-only file system%s", key, dir,
	    getenv("INVOCATION_ID") != NULL
		? "; the service's sandbox needs ReadWritePaths= for it in a drop-in"
		: "");
}

/*
 * A directory popfetchd writes into (or creates with its parents): KEY
 * DIR must be writable by us, or the nearest existing parent must be.
 */
static void
writable_dir(struct checker *c, const struct account *a, const char *key,
    const char *dir)
{
	char up[PATH_MAX];
	struct stat st;

	if (stat(dir, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			say(c, a, "%s %s: not a directory", key, dir);
		else if (access(dir, W_OK | X_OK) == 0)
			return;
		else if (errno == EROFS)
			read_only(c, a, key, dir);
		else
			say(c, a,
			    "%s %s: not writable by %s; chown -R %s %s, or run popfetchd as the owner",
			    key, dir, c->me, c->me, dir);
		return;
	}
	existing_ancestor(dir, up, sizeof(up));
	if (access(up, W_OK | X_OK) == 0)
		return;
	if (errno == EROFS)
		read_only(c, a, key, dir);
	else
		say(c, a,
		    "%s %s: missing, and %s cannot create it in %s; create it: install -d -o %s -m 700 %s",
		    key, dir, c->me, up, c->me, dir);
}

/*
 * A Maildir is made only inside a directory that exists (maildir.c: a
 * missing parent is a typo or an unmounted file system, not a place to
 * create); then as any directory popfetchd writes.
 */
static void
maildir_place(struct checker *c, const struct account *a)
{
	char parent[PATH_MAX];
	struct stat st;
	size_t n;
	char *slash;

	n = strlen(a->maildir);
	while (n > 1 && a->maildir[n - 1] == '/')
		n--;
	if (n >= sizeof(parent))
		return;
	memcpy(parent, a->maildir, n);
	parent[n] = '\0';
	if (stat(parent, &st) == -1 && (slash = strrchr(parent, '/')) != NULL) {
		slash[slash == parent ? 1 : 0] = '\0';
		if (stat(parent, &st) == -1 && errno == ENOENT) {
			say(c, a,
			    "maildir %s: its parent %s does not exist, and popfetchd makes a Maildir only inside an existing directory (a typo, or a file system not mounted?); create it: install -d -o %s %s",
			    a->maildir, parent, c->me, parent);
			return;
		}
	}
	writable_dir(c, a, "maildir", a->maildir);
}

/*
 * Root writing another user's Maildir leaves messages that user cannot
 * read (mode 600, owned by root).
 */
static void
maildir_owner(struct checker *c, const struct account *a)
{
	char owner[64];
	struct stat st;

	if (geteuid() != 0 || stat(a->maildir, &st) == -1 || st.st_uid == 0)
		return;
	user_name(st.st_uid, owner, sizeof(owner));
	say(c, a,
	    "maildir %s belongs to %s: messages root writes there would be root's, unreadable by %s; run popfetchd as %s (User=%s in the unit)",
	    a->maildir, owner, owner, owner, owner);
}

/* CA file, client certificate and key, as the first poll loads them. */
static void
check_tls(struct checker *c, const struct account *a)
{
	char err[512] = "";
	SSL_CTX *ctx;

	if (a->tls == CONF_TLS_NONE && a->client_cert == NULL)
		return;
	if (a->client_key != NULL &&
	    !private_file(c, a, "client_key", a->client_key))
		return;
	if ((ctx = tls_ctx_get(a, err, sizeof(err))) == NULL) {
		say(c, a, "TLS: %s", err);
		return;
	}
	SSL_CTX_free(ctx);
}

/*
 * The MDA's program (the shell with mda_shell) exists and we may run it;
 * a bare name is looked up as the target does, in /usr/bin and /bin.
 */
static void
check_mda(struct checker *c, const struct account *a)
{
	struct mda_vars v = {a->user, a->name, a->recipient};
	char path[PATH_MAX];
	const char *why;
	char **argv;

	if ((argv = mda_argv(a->mda, a->mda_shell, &v, &why)) == NULL) {
		say(c, a, "mda: %s", why);
		return;
	}
	if (strchr(argv[0], '/') != NULL)
		snprintf(path, sizeof(path), "%s", argv[0]);
	else if (snprintf(path, sizeof(path), "/usr/bin/%s", argv[0]) > 0 &&
		 access(path, X_OK) == -1)
		snprintf(path, sizeof(path), "/bin/%s", argv[0]);
	check_program(c, a, "mda", path);
	mda_argv_free(argv);
}

/*
 * An LMTP socket path exists and is a socket we may connect to (write
 * permission); a host:port is the network's, checked at the poll.
 */
static void
check_lmtp(struct checker *c, const struct account *a)
{
	struct stat st;

	if (a->lmtp[0] != '/')
		return;
	if (stat(a->lmtp, &st) == -1)
		say(c, a,
		    "lmtp: %s: %s (is the LMTP server running, and its socket reachable from the service's sandbox?)",
		    a->lmtp, strerror(errno));
	else if (!S_ISSOCK(st.st_mode))
		say(c, a, "lmtp: %s is not a socket", a->lmtp);
	else if (access(a->lmtp, W_OK) == -1)
		say(c, a, "lmtp: %s: %s may not connect: %s", a->lmtp, c->me,
		    strerror(errno));
}

/*
 * OAuth2: the client secret's source as for a password, the CA file of
 * the endpoints, and the token: without one, every poll fails until
 * --authorize has run.
 */
static void
check_oauth2(struct checker *c, const struct account *a)
{
	const struct conf_oauth2 *o = &a->oauth2;

	if (o->client_secret_file != NULL)
		private_file(
		    c, a, "oauth2.client_secret_file", o->client_secret_file);
	if (o->client_secret_credential != NULL)
		check_credential(c, a, "oauth2.client_secret_credential",
		    o->client_secret_credential);
	if (o->client_secret_command != NULL)
		check_command(c, a, "oauth2.client_secret_command",
		    o->client_secret_command);
	if (o->ca_file != NULL && access(o->ca_file, R_OK) == -1)
		say(c, a, "oauth2.ca_file %s: %s", o->ca_file, strerror(errno));
	if (o->token_file == NULL)
		return;
	if (access(o->token_file, F_OK) == -1 && errno == ENOENT)
		say(c, a,
		    "oauth2.token_file %s: no token yet; run popfetchd --authorize %s (as the user the service runs as)",
		    o->token_file, a->name);
	else
		private_file(c, a, "oauth2.token_file", o->token_file);
}

static void
check_account(struct checker *c, const struct account *a)
{
	if (a->auth == CONF_AUTH_EXTERNAL && a->client_cert == NULL)
		say(c, a,
		    "auth = \"external\" needs client_cert and client_key: the server knows the account by its certificate");
	if (a->password_file != NULL)
		private_file(c, a, "password_file", a->password_file);
	if (a->password_credential != NULL)
		check_credential(
		    c, a, "password_credential", a->password_credential);
	if (a->password_command != NULL)
		check_command(c, a, "password_command", a->password_command);
	if (a->oauth2.on)
		check_oauth2(c, a);
	check_tls(c, a);
	if (a->maildir != NULL) {
		maildir_place(c, a);
		maildir_owner(c, a);
	}
	if (a->target == CONF_TARGET_MDA && a->mda != NULL)
		check_mda(c, a);
	if (a->target == CONF_TARGET_LMTP && a->lmtp != NULL)
		check_lmtp(c, a);
}

size_t
check_conf(const struct conf *conf, conf_report_fn report, void *arg)
{
	struct checker c = {.conf = conf, .report = report, .arg = arg};
	size_t i;

	user_name(geteuid(), c.me, sizeof(c.me));
	writable_dir(&c, NULL, "state_dir", conf->state_dir);
	for (i = 0; i < conf->naccounts; i++)
		check_account(&c, &conf->accounts[i]);
	tls_ctx_forget();
	return c.problems;
}

bool
check_foreign_state(const struct conf *conf, char *owner, size_t len)
{
	struct stat st;

	if (geteuid() != 0 || stat(conf->state_dir, &st) == -1 ||
	    st.st_uid == 0)
		return false;
	user_name(st.st_uid, owner, len);
	return true;
}
