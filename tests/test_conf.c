/*
 * Tests for the configuration loader: a corpus of good files with the
 * values they must give, a corpus of bad files that each declare the errors
 * they must raise, and what needs a file made at run time (modes, NUL).
 *
 * A bad file declares its errors at the top, in file order:
 *   # expect: LINE: TEXT      an error at LINE whose message contains TEXT
 *   # unsetenv: NAME          run with NAME unset
 *   # setenv: NAME=VALUE      run with NAME set
 * and must raise exactly those errors.
 */
#include <sys/stat.h>

#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "check_main.h"
#include "check_util.h"

/* A trailing slash, to show that expansion does not double it. */
#define TEST_HOME "/home/tester/"

#define PIN_ONE	  "sha256/dpLDrTVAu4A8Ags67mbNiIcSMjTqDG5xQ8Ct1z/0Me0="
#define PIN_TWO	  "sha256/P8TM/nRYcOLA2Z9x8w/wZWyN7dQcwdfT03aw2+aF4vM="
#define PIN_THREE "sha256/i1udsME9skJWyCmqNkqpDG0uujGLkjKkq5MTuVTTVV8="

struct errors {
	char **msg;
	size_t n;
};

struct expect {
	int line;
	char text[512];
};

static struct dirent **good_files, **bad_files;
static int ngood, nbad;

static void
collect(void *arg, const char *msg)
{
	struct errors *e = arg;

	e->msg = realloc(e->msg, (e->n + 1) * sizeof(*e->msg));
	ck_assert_ptr_nonnull(e->msg);
	e->msg[e->n] = strdup(msg);
	ck_assert_ptr_nonnull(e->msg[e->n]);
	e->n++;
}

static void
errors_free(struct errors *e)
{
	size_t i;

	for (i = 0; i < e->n; i++)
		free(e->msg[i]);
	free(e->msg);
	e->msg = NULL;
	e->n = 0;
}

static const char *
srcdir(void)
{
	const char *d = getenv("TEST_SRCDIR");

	return d != NULL ? d : ".";
}

static char *
corpus_path(const char *sub, const char *name)
{
	char *p;

	ck_assert_int_ne(
	    asprintf(&p, "%s/conf/%s/%s", srcdir(), sub, name), -1);
	return p;
}

/* Loads a good file, failing the test with its errors if it has any. */
static struct conf *
load_good(const char *name, char **pathp)
{
	struct errors e = {0};
	struct conf *c;
	char *path = corpus_path("good", name);

	c = conf_load(path, collect, &e);
	if (e.n > 0)
		ck_abort_msg("%s: %zu errors, first: %s", name, e.n, e.msg[0]);
	ck_assert_ptr_nonnull(c);
	errors_free(&e);
	if (pathp != NULL)
		*pathp = path;
	else
		free(path);
	return c;
}

static const struct account *
account(const struct conf *c, const char *name)
{
	const struct account *a = conf_account(c, name);

	ck_assert_msg(a != NULL, "no account \"%s\"", name);
	return a;
}

static int
is_conf(const struct dirent *d)
{
	size_t n = strlen(d->d_name);

	return n > 5 && strcmp(d->d_name + n - 5, ".conf") == 0;
}

static int
list_corpus(const char *sub, struct dirent ***out)
{
	char *dir;
	int n;

	if (asprintf(&dir, "%s/conf/%s", srcdir(), sub) == -1)
		return -1;
	n = scandir(dir, out, is_conf, alphasort);
	if (n < 0)
		fprintf(stderr, "test_conf: cannot list %s\n", dir);
	free(dir);
	return n;
}

/* Reads the expectations and applies the environment a bad file asks for. */
static size_t
read_script(const char *path, struct expect *exp, size_t max)
{
	char line[1024], *p;
	size_t n = 0;
	FILE *f;

	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "# expect: ", 10) == 0) {
			ck_assert_uint_lt(n, max);
			exp[n].line = (int)strtol(line + 10, &p, 10);
			ck_assert_msg(p[0] == ':' && p[1] == ' ',
			    "%s: bad expect line: %s", path, line);
			snprintf(exp[n].text, sizeof(exp[n].text), "%s", p + 2);
			n++;
		} else if (strncmp(line, "# unsetenv: ", 12) == 0) {
			unsetenv(line + 12);
		} else if (strncmp(line, "# setenv: ", 10) == 0) {
			p = strchr(line + 10, '=');
			ck_assert_ptr_nonnull(p);
			*p = '\0';
			setenv(line + 10, p + 1, 1);
		}
	}
	fclose(f);
	return n;
}

static bool
matches(const char *msg, const char *path, const struct expect *x)
{
	char prefix[1024];
	size_t n;

	n = (size_t)snprintf(prefix, sizeof(prefix), "%s:%d: ", path, x->line);
	return strncmp(msg, prefix, n) == 0 && strstr(msg + n, x->text) != NULL;
}

/*
 * Checks one bad file; on a mismatch appends what was wanted and what came
 * to REPORT and returns false.
 */
static bool
check_bad(const char *name, char *report, size_t len, size_t *o)
{
	struct expect exp[64];
	struct errors e = {0};
	struct conf *c;
	size_t n, i;
	bool ok;
	char *path = corpus_path("bad", name);

	setenv("HOME", TEST_HOME, 1);
	n = read_script(path, exp, sizeof(exp) / sizeof(*exp));
	ck_assert_msg(n > 0, "%s declares no expected error", name);
	c = conf_load(path, collect, &e);
	ok = c == NULL && e.n == n;
	for (i = 0; ok && i < n; i++)
		ok = matches(e.msg[i], path, &exp[i]);
	if (!ok) {
		*o += (size_t)snprintf(report + *o, len - *o,
		    "\n%s: conf %s, want %zu errors:", name,
		    c == NULL ? "NULL" : "loaded", n);
		for (i = 0; i < n && *o < len; i++)
			*o += (size_t)snprintf(report + *o, len - *o,
			    "\n  %d: %s", exp[i].line, exp[i].text);
		for (i = 0; i < e.n && *o < len; i++)
			*o += (size_t)snprintf(report + *o, len - *o,
			    "%s\n  %s", i == 0 ? "\ngot:" : "", e.msg[i]);
	}
	conf_free(&c);
	errors_free(&e);
	free(path);
	return ok;
}

/* One test for the whole corpus, so that a failure lists every bad file. */
START_TEST(bad_corpus)
{
	static char report[32768];
	size_t o = 0;
	int i, failed = 0;

	for (i = 0; i < nbad; i++)
		if (!check_bad(
			bad_files[i]->d_name, report, sizeof(report), &o))
			failed++;
	if (failed > 0)
		ck_abort_msg("%d of %d bad files:%s", failed, nbad, report);
}
END_TEST

/* The delivery targets: LMTP inherited, a folder, each target's keys. */
START_TEST(test_targets)
{
	const struct account *a;
	struct conf *c = load_good("targets.conf", NULL);

	a = account(c, "alice");
	ck_assert_int_eq(a->target, CONF_TARGET_LMTP);
	ck_assert_str_eq(a->lmtp, "/run/dovecot/lmtp");
	ck_assert_str_eq(a->recipient, "alice");
	ck_assert_ptr_null(a->maildir);
	ck_assert_ptr_null(a->folder);
	a = account(c, "bob");
	ck_assert_str_eq(a->lmtp, "[::1]:24");
	ck_assert_str_eq(a->recipient, "bob@example.org");
	a = account(c, "lists");
	ck_assert_int_eq(a->target, CONF_TARGET_MAILDIR);
	ck_assert_str_eq(a->maildir, "/home/lists/Maildir");
	ck_assert_str_eq(a->folder, ".Lists.Entwürfe");
	conf_free(&c);
}
END_TEST

START_TEST(good_corpus)
{
	struct conf *c;
	int i;

	for (i = 0; i < ngood; i++) {
		c = load_good(good_files[i]->d_name, NULL);
		ck_assert_uint_gt(c->naccounts, 0);
		conf_free(&c);
	}
}
END_TEST

START_TEST(defaults_applied)
{
	const struct account *a;
	struct conf *c;
	char *path;

	c = load_good("minimal.conf", &path);
	ck_assert_str_eq(c->path, path);
	/* The fixture runs as root or poses as the service (reset_env). */
	ck_assert_str_eq(c->state_dir,
	    getuid() == 0 ? "/var/lib/popfetchd"
			  : "/home/tester/.local/state/popfetchd");
	ck_assert_uint_eq(c->poll_interval, 300);
	ck_assert_uint_eq(c->max_connections, 64);
	ck_assert_uint_eq(c->max_per_host, 4);
	ck_assert_uint_eq(c->timeout, 60);
	ck_assert_uint_eq(c->naccounts, 1);
	a = account(c, "only");
	ck_assert_ptr_eq(a, &c->accounts[0]);
	ck_assert_str_eq(a->host, "pop.example.com");
	ck_assert_uint_eq(a->port, 995);
	ck_assert_int_eq(a->tls, CONF_TLS_IMPLICIT);
	ck_assert(!a->allow_plaintext);
	ck_assert(a->tls_verify);
	ck_assert(a->tls_resume);
	ck_assert_str_eq(a->tls_min_version, "TLSv1.2");
	ck_assert_ptr_null(a->ca_file);
	ck_assert_ptr_null(a->ca_path);
	ck_assert_uint_eq(a->ntls_pins, 0);
	ck_assert_ptr_nonnull(a->tls_pins);
	ck_assert_ptr_null(a->tls_pins[0]);
	ck_assert_ptr_null(a->client_cert);
	ck_assert_ptr_null(a->client_key);
	ck_assert_str_eq(a->user, "alice");
	ck_assert_ptr_null(a->password);
	ck_assert_str_eq(a->password_file, "/etc/popfetchd/only.pass");
	ck_assert_ptr_null(a->password_command);
	ck_assert_ptr_null(a->password_credential);
	ck_assert_int_eq(a->auth, CONF_AUTH_AUTO);
	ck_assert_str_eq(a->maildir, "/home/alice/Maildir");
	ck_assert_ptr_null(a->folder);
	ck_assert(!a->keep);
	ck_assert_uint_eq(a->delete_after_days, 0);
	ck_assert_uint_eq(a->max_message_size, 0);
	ck_assert(a->received_header);
	ck_assert_int_eq(a->pipelining, CONF_PIPELINING_AUTO);
	ck_assert_uint_eq(a->poll_interval, 300);
	ck_assert_uint_eq(a->timeout, 60);
	ck_assert_ptr_eq(a->file, c->path);
	ck_assert_int_eq(a->line, 3);
	conf_free(&c);
	free(path);
}
END_TEST

START_TEST(inheritance)
{
	const struct account *a;
	struct conf *c = load_good("inherit.conf", NULL);

	ck_assert_uint_eq(c->poll_interval, 600);
	ck_assert_uint_eq(c->timeout, 30);
	ck_assert_uint_eq(c->naccounts, 3);

	/* Everything from defaults, and poll_interval from the top level. */
	a = account(c, "inherits");
	ck_assert_int_eq(a->line, 20);
	ck_assert_str_eq(a->host, "pop.example.net");
	ck_assert_int_eq(a->tls, CONF_TLS_STARTTLS);
	ck_assert_uint_eq(a->port, 110);
	ck_assert(a->keep);
	ck_assert_uint_eq(a->delete_after_days, 14);
	ck_assert_str_eq(a->password_command, "pass show mail/shared");
	ck_assert_ptr_null(a->password_file);
	ck_assert_str_eq(a->maildir, "/home/tester/Maildir");
	ck_assert_str_eq(
	    a->client_cert, "/home/tester/.config/popfetchd/client.pem");
	ck_assert_str_eq(
	    a->client_key, "/home/tester/.config/popfetchd/client.key");
	ck_assert_uint_eq(a->ntls_pins, 2);
	ck_assert_str_eq(a->tls_pins[0], PIN_ONE);
	ck_assert_str_eq(a->tls_pins[1], PIN_TWO);
	ck_assert_ptr_null(a->tls_pins[2]);
	ck_assert_uint_eq(a->timeout, 20);
	ck_assert_uint_eq(a->poll_interval, 600);
	ck_assert_str_eq(a->user, "a");

	/* Its own values win; a password source or pair replaces, not adds. */
	a = account(c, "overrides");
	ck_assert_int_eq(a->tls, CONF_TLS_IMPLICIT);
	ck_assert_uint_eq(a->port, 995);
	ck_assert(!a->keep);
	ck_assert_uint_eq(a->delete_after_days, 0);
	ck_assert_str_eq(a->password_file, "/etc/popfetchd/b.pass");
	ck_assert_ptr_null(a->password_command);
	ck_assert_str_eq(a->client_cert, "/etc/popfetchd/b.pem");
	ck_assert_str_eq(a->client_key, "/etc/popfetchd/b.key");
	ck_assert_uint_eq(a->timeout, 90);
	ck_assert_uint_eq(a->poll_interval, 600);
	ck_assert_uint_eq(a->ntls_pins, 0);
	ck_assert_ptr_null(a->tls_pins[0]);
	ck_assert_str_eq(a->maildir, "/home/tester/Maildir");

	a = account(c, "plain");
	ck_assert_int_eq(a->tls, CONF_TLS_NONE);
	ck_assert(a->allow_plaintext);
	ck_assert_uint_eq(a->port, 2110);
	ck_assert_uint_eq(a->poll_interval, 60);
	ck_assert_uint_eq(a->timeout, 20);
	ck_assert_str_eq(a->maildir, "/srv/mail/plain");
	ck_assert(a->keep);
	conf_free(&c);
}
END_TEST

/* The oauth2 group: presets, member-wise inheritance, defaults derived. */
START_TEST(oauth2_group)
{
	struct conf *c = load_good("oauth2.conf", NULL);
	const struct account *a;

	a = account(c, "m365");
	ck_assert(a->oauth2.on);
	ck_assert_ptr_null(a->password_file);
	ck_assert_str_eq(a->oauth2.provider, "microsoft");
	ck_assert_str_eq(a->oauth2.client_id, "11111111-2222");
	ck_assert_int_eq(a->auth, CONF_AUTH_XOAUTH2);
	ck_assert_str_eq(
	    a->oauth2.token_file, "/var/lib/popfetchd/m365.oauth2");
	ck_assert_ptr_null(a->oauth2.client_secret_file);
	ck_assert_ptr_null(a->oauth2.token_endpoint);
	ck_assert_ptr_null(a->oauth2.flow);

	a = account(c, "gmail");
	ck_assert(a->oauth2.on);
	ck_assert_str_eq(a->oauth2.provider, "gmail");
	ck_assert_str_eq(a->oauth2.client_id, "123.apps.googleusercontent.com");
	ck_assert_str_eq(
	    a->oauth2.client_secret_file, "/etc/popfetchd/gmail.secret");
	ck_assert_str_eq(
	    a->oauth2.token_file, "/var/lib/popfetchd/tokens/gmail");
	ck_assert_str_eq(a->oauth2.flow, "loopback");
	ck_assert_int_eq(a->auth, CONF_AUTH_OAUTHBEARER);

	a = account(c, "custom");
	ck_assert(a->oauth2.on);
	/* Inherited from defaults, member by member. */
	ck_assert_str_eq(a->oauth2.provider, "microsoft");
	ck_assert_str_eq(
	    a->oauth2.token_endpoint, "https://idp.example.org:8443/token");
	ck_assert_str_eq(
	    a->oauth2.device_endpoint, "https://idp.example.org/device");
	ck_assert_str_eq(a->oauth2.authorization_endpoint,
	    "https://idp.example.org/authorize");
	ck_assert_str_eq(a->oauth2.scope, "pop offline_access");
	ck_assert_str_eq(a->oauth2.ca_file, "/etc/popfetchd/idp-ca.pem");
	ck_assert_ptr_null(a->ca_file);
	ck_assert_str_eq(a->oauth2.client_secret_command, "pass show idp");

	/* A password source takes the place of the inherited group. */
	a = account(c, "plain");
	ck_assert(!a->oauth2.on);
	ck_assert_str_eq(a->password_file, "/etc/popfetchd/dave.pass");
	ck_assert_int_eq(a->auth, CONF_AUTH_AUTO);
	ck_assert_ptr_null(a->oauth2.token_file);
	conf_free(&c);
}
END_TEST

START_TEST(every_key)
{
	const struct account *a;
	struct conf *c = load_good("full.conf", NULL);

	ck_assert_str_eq(c->state_dir, "/srv/popfetchd/state");
	ck_assert_uint_eq(c->poll_interval, 10);
	ck_assert_uint_eq(c->max_connections, 100000);
	ck_assert_uint_eq(c->max_per_host, 10000);
	ck_assert_uint_eq(c->timeout, 3600);

	a = account(c, "Full.Name_1-x");
	ck_assert_str_eq(a->host, "192.0.2.1");
	ck_assert_uint_eq(a->port, 995);
	ck_assert_int_eq(a->tls, CONF_TLS_IMPLICIT);
	ck_assert(!a->allow_plaintext);
	ck_assert(!a->tls_verify);
	ck_assert_str_eq(a->tls_min_version, "TLSv1.3");
	ck_assert_str_eq(a->ca_file, "/etc/ssl/certs/ca.pem");
	ck_assert_str_eq(a->ca_path, "/etc/ssl/certs");
	ck_assert_uint_eq(a->ntls_pins, 3);
	ck_assert_str_eq(a->tls_pins[0], PIN_ONE);
	ck_assert_str_eq(a->tls_pins[1], PIN_TWO);
	ck_assert_str_eq(a->tls_pins[2], PIN_THREE);
	ck_assert_ptr_null(a->tls_pins[3]);
	ck_assert(!a->tls_resume);
	ck_assert_str_eq(a->client_cert, "/etc/popfetchd/full.pem");
	ck_assert_str_eq(a->client_key, "/etc/popfetchd/full.key");
	ck_assert_str_eq(a->user, "alice@example.com");
	ck_assert_str_eq(a->password_credential, "full.pass");
	ck_assert_ptr_null(a->password);
	ck_assert_ptr_null(a->password_file);
	ck_assert_ptr_null(a->password_command);
	ck_assert_int_eq(a->auth, CONF_AUTH_OAUTHBEARER);
	ck_assert_str_eq(a->maildir, "/var/mail/full/");
	ck_assert(a->keep);
	ck_assert_uint_eq(a->delete_after_days, 36500);
	ck_assert_uint_eq(a->max_message_size, (uint64_t)1 << 40);
	ck_assert(!a->received_header);
	ck_assert_int_eq(a->pipelining, CONF_PIPELINING_OFF);
	ck_assert_uint_eq(a->poll_interval, 604800);
	ck_assert_uint_eq(a->timeout, 1);

	/* auth = "external" needs neither user nor password. */
	a = account(c, "external");
	ck_assert_int_eq(a->auth, CONF_AUTH_EXTERNAL);
	ck_assert_ptr_null(a->user);
	ck_assert_ptr_null(a->password);
	ck_assert_ptr_null(a->password_file);
	ck_assert_ptr_null(a->password_command);
	ck_assert_ptr_null(a->password_credential);
	ck_assert_uint_eq(a->port, 110);
	ck_assert_int_eq(a->tls, CONF_TLS_STARTTLS);
	/* Past 32 bits without the L suffix: the value written, not a wrap. */
	ck_assert_uint_eq(a->max_message_size, 5000000000ULL);
	ck_assert_int_eq(a->pipelining, CONF_PIPELINING_ON);
	ck_assert_uint_eq(a->poll_interval, 10);
	ck_assert_uint_eq(a->timeout, 3600);

	a = account(c, "cmd");
	ck_assert_str_eq(a->password_command, "pass show mail/carol");
	ck_assert_int_eq(a->auth, CONF_AUTH_APOP);
	ck_assert_str_eq(a->tls_min_version, "TLSv1.2");
	conf_free(&c);
}
END_TEST

START_TEST(spellings)
{
	const struct account *a;
	struct conf *c = load_good("spellings.conf", NULL);
	size_t i;

	/* Each account is named after the auth it asks for. */
	ck_assert_uint_eq(c->naccounts, 13);
	for (i = 0; i < c->naccounts; i++) {
		a = &c->accounts[i];
		ck_assert_str_eq(conf_auth_name(a->auth), a->name);
	}
	ck_assert_int_eq(account(c, "apop")->tls, CONF_TLS_STARTTLS);
	ck_assert_uint_eq(account(c, "apop")->port, 110);
	ck_assert_int_eq(account(c, "user")->tls, CONF_TLS_NONE);
	ck_assert_uint_eq(account(c, "user")->port, 110);
	ck_assert_int_eq(account(c, "rpop")->pipelining, CONF_PIPELINING_OFF);
	ck_assert_int_eq(account(c, "scram-sha-1")->utf8, CONF_UTF8_OFF);
	ck_assert_int_eq(account(c, "scram-sha-1-plus")->utf8, CONF_UTF8_AUTO);
	/* UTF8 is asked for unless the account says otherwise. */
	ck_assert_int_eq(account(c, "scram-sha-256")->utf8, CONF_UTF8_AUTO);
	ck_assert_int_eq(
	    account(c, "scram-sha-1")->channel_binding, CONF_CB_AUTO);
	ck_assert_int_eq(
	    account(c, "scram-sha-256")->channel_binding, CONF_CB_TLS_EXPORTER);
	ck_assert_int_eq(account(c, "scram-sha-256-plus")->channel_binding,
	    CONF_CB_TLS_UNIQUE);
	conf_free(&c);
}
END_TEST

START_TEST(libconfig_layout)
{
	const struct account *a;
	struct conf *c = load_good("layout.conf", NULL);

	ck_assert_str_eq(c->state_dir, "/var/lib/popfetchd-shard1");
	a = account(c, "x");
	ck_assert_uint_eq(a->port, 1995);
	ck_assert_int_eq(a->line, 8);
	conf_free(&c);
}
END_TEST

/* Left out, state_dir is systemd's StateDirectory= when it set one. */
START_TEST(state_dir_from_systemd)
{
	struct conf *c;

	setenv("STATE_DIRECTORY", "/var/lib/popfetchd-shard2:/var/lib/x", 1);
	c = load_good("minimal.conf", NULL);
	ck_assert_str_eq(c->state_dir, "/var/lib/popfetchd-shard2");
	ck_assert_str_eq(c->state_dir_from, "$STATE_DIRECTORY");
	conf_free(&c);
	/* The file's own state_dir wins over it. */
	c = load_good("full.conf", NULL);
	ck_assert_str_ne(c->state_dir, "/var/lib/popfetchd-shard2");
	ck_assert_str_eq(c->state_dir_from, "state_dir in the file");
	conf_free(&c);
}
END_TEST

START_TEST(tilde_expansion)
{
	static const struct {
		const char *home, *want;
	} cases[] = {
	    {"/home/tester", "/home/tester/Maildir"},
	    {"/home/tester//", "/home/tester/Maildir"},
	    {"/", "/Maildir"},
	};
	struct conf *c;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		setenv("HOME", cases[i].home, 1);
		c = load_good("inherit.conf", NULL);
		ck_assert_str_eq(
		    account(c, "inherits")->maildir, cases[i].want);
		conf_free(&c);
	}
}
END_TEST

/* A fresh directory for files whose mode or bytes git would not keep. */
static char *
make_tmpdir(void)
{
	char *dir = malloc(PATH_MAX);

	ck_assert_ptr_nonnull(dir);
	check_tmpdir(dir, PATH_MAX, "test_conf");
	return dir;
}

/* DIR/NAME holding LEN bytes of TEXT, mode 0644 (caller frees the path). */
static char *
write_file(const char *dir, const char *name, const char *text, size_t len)
{
	char *path;

	ck_assert_int_ne(asprintf(&path, "%s/%s", dir, name), -1);
	check_write_file(path, text, len, 0644);
	return path;
}

static const char inline_password[] =
    "defaults = {\n"				  /* 1 */
    "  password = \"shared secret\";\n"		  /* 2 */
    "  host = \"pop.example.com\";\n"		  /* 3 */
    "  maildir = \"/var/mail/x\";\n"		  /* 4 */
    "};\n"					  /* 5 */
    "accounts = (\n"				  /* 6 */
    "  { name = \"inherits\"; user = \"a\"; },\n" /* 7 */
    "  { name = \"own\"; user = \"b\";\n"	  /* 8 */
    "    password = \"own secret\"; }\n"	  /* 9 */
    ");\n";

START_TEST(inline_password_permissions)
{
	static const struct {
		mode_t mode;
		bool ok;
	} cases[] = {
	    {0600, true},
	    {0400, true},
	    {0700, true},
	    {0620, true},
	    {0602, true},
	    {0640, false},
	    {0604, false},
	    {0644, false},
	    {0444, false},
	};
	struct errors e = {0};
	struct conf *c;
	char *dir = make_tmpdir(), *path, want[1024];
	size_t i;

	path =
	    write_file(dir, "p.conf", inline_password, strlen(inline_password));
	for (i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		ck_assert_int_eq(chmod(path, cases[i].mode), 0);
		c = conf_load(path, collect, &e);
		if (cases[i].ok) {
			ck_assert_msg(c != NULL && e.n == 0, "mode %o: %s",
			    (unsigned)cases[i].mode,
			    e.n > 0 ? e.msg[0] : "NULL");
			ck_assert_str_eq(
			    account(c, "inherits")->password, "shared secret");
			ck_assert_str_eq(
			    account(c, "own")->password, "own secret");
			conf_free(&c);
			continue;
		}
		/* One error per setting, not per account that inherits it. */
		ck_assert_msg(c == NULL && e.n == 2, "mode %o: %zu errors",
		    (unsigned)cases[i].mode, e.n);
		snprintf(want, sizeof(want),
		    "%s:2: defaults: inline password in a file readable by group or others: chmod 600 %s, or use password_file",
		    path, path);
		ck_assert_str_eq(e.msg[0], want);
		snprintf(
		    want, sizeof(want), "%s:9: account \"own\": inline ", path);
		ck_assert_msg(
		    strncmp(e.msg[1], want, strlen(want)) == 0, "%s", e.msg[1]);
		errors_free(&e);
	}
	check_rm_rf(dir);
	free(path);
	free(dir);
}
END_TEST

/*
 * Freed memory, watched for a secret: the build links this test with
 * --wrap=free and --wrap=realloc, so the frees of conf.c (not those inside
 * libconfig) pass through here while WATCH is set.
 */
void __real_free(void *p);
void *__real_realloc(void *p, size_t n);
void __wrap_free(void *p);
void *__wrap_realloc(void *p, size_t n);

static const char *watch;
static size_t freed_with_secret;

static bool
holds_watched(void *p)
{
	/* The bytes asked for (the allocator's slack under ASan too). */
	return p != NULL && watch != NULL &&
	       memmem(p, malloc_usable_size(p), watch, strlen(watch)) != NULL;
}

void
__wrap_free(void *p)
{
	freed_with_secret += holds_watched(p);
	__real_free(p);
}

void *
__wrap_realloc(void *p, size_t n)
{
	bool held = holds_watched(p);
	void *q = __real_realloc(p, n);

	/* Moved: the old block, text and all, is free memory now. */
	freed_with_secret += held && q != NULL && q != p;
	return q;
}

START_TEST(secrets_wiped)
{
	static const char marker[] = "Wipe-Me-Marker-3141";
	struct errors e = {0};
	struct conf *c;
	char *dir = make_tmpdir(), *path, *text;
	size_t len, n;
	FILE *f;

	/* Larger than the first read buffer, so that it has to grow. */
	f = open_memstream(&text, &len);
	ck_assert_ptr_nonnull(f);
	fprintf(f,
	    "accounts = ({ name = \"a\"; host = \"h\"; user = \"u\";\n"
	    "  maildir = \"/var/mail/a\"; password = \"%s\"; });\n",
	    marker);
	for (n = 0; n < 2000; n++)
		fprintf(f, "# padding line %zu\n", n);
	ck_assert_int_eq(fclose(f), 0);
	path = write_file(dir, "wipe.conf", text, len);
	ck_assert_int_eq(chmod(path, 0600), 0);

	freed_with_secret = 0;
	watch = marker;
	c = conf_load(path, collect, &e);
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(c->accounts[0].password, marker);
	conf_free(&c);
	watch = NULL;
	ck_assert_uint_eq(freed_with_secret, 0);

	errors_free(&e);
	check_rm_rf(dir);
	free(path);
	free(text);
	free(dir);
}
END_TEST

START_TEST(nul_byte)
{
	static const char text[] =
	    "state_dir = \"/var/lib\";\n"
	    "# a comment\0 and what libconfig would miss\n";
	struct errors e = {0};
	char *dir = make_tmpdir(), *path, want[1024];

	path = write_file(dir, "nul.conf", text, sizeof(text) - 1);
	ck_assert_ptr_null(conf_load(path, collect, &e));
	ck_assert_uint_eq(e.n, 1);
	snprintf(want, sizeof(want), "%s:2: NUL byte in the file", path);
	ck_assert_str_eq(e.msg[0], want);
	errors_free(&e);
	check_rm_rf(dir);
	free(path);
	free(dir);
}
END_TEST

START_TEST(unreadable)
{
	struct errors e = {0};
	char *dir = make_tmpdir(), *path, want[1024];

	ck_assert_int_ne(asprintf(&path, "%s/missing.conf", dir), -1);
	ck_assert_ptr_null(conf_load(path, collect, &e));
	ck_assert_uint_eq(e.n, 1);
	snprintf(want, sizeof(want),
	    "%s: cannot read: No such file or directory", path);
	ck_assert_str_eq(e.msg[0], want);
	errors_free(&e);

	ck_assert_ptr_null(conf_load(dir, collect, &e));
	ck_assert_uint_eq(e.n, 1);
	snprintf(want, sizeof(want), "%s: cannot read: Is a directory", dir);
	ck_assert_str_eq(e.msg[0], want);
	errors_free(&e);
	check_rm_rf(dir);
	free(path);
	free(dir);
}
END_TEST

START_TEST(no_callback_uses_stderr)
{
	char *dir = make_tmpdir(), *path, *log, buf[1024];
	ssize_t n;
	int fd, saved;

	ck_assert_int_ne(asprintf(&path, "%s/missing.conf", dir), -1);
	ck_assert_int_ne(asprintf(&log, "%s/stderr", dir), -1);
	fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	saved = dup(2);
	dup2(fd, 2);
	ck_assert_ptr_null(conf_load(path, NULL, NULL));
	dup2(saved, 2);
	close(saved);
	close(fd);
	fd = open(log, O_RDONLY);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_ptr_nonnull(strstr(buf, "missing.conf: cannot read: "));
	ck_assert_int_eq(buf[n - 1], '\n');
	check_rm_rf(dir);
	free(log);
	free(path);
	free(dir);
}
END_TEST

/* Thousands of accounts load quickly, and a duplicate is still found. */
START_TEST(many_accounts)
{
	enum { N = 5000 };
	struct errors e = {0};
	char *dir = make_tmpdir(), *path, *text, want[256];
	size_t cap = (size_t)N * 64 + 512, o = 0;
	struct conf *c;
	int i;

	text = malloc(cap);
	ck_assert_ptr_nonnull(text);
	o += (size_t)snprintf(text + o, cap - o,
	    "defaults = { host = \"h\"; user = \"u\"; maildir = \"/m\";\n"
	    "  password_file = \"/p\"; };\naccounts = (\n");
	for (i = 0; i < N; i++)
		o += (size_t)snprintf(text + o, cap - o,
		    "  { name = \"a%d\"; port = %d; },\n", i, 1 + i);
	o += (size_t)snprintf(text + o, cap - o, "  { name = \"a17\"; }\n);\n");
	path = write_file(dir, "many.conf", text, o);
	c = conf_load(path, collect, &e);
	ck_assert_ptr_null(c);
	ck_assert_uint_eq(e.n, 1);
	snprintf(want, sizeof(want),
	    "%s:%d: account \"a17\": duplicate name, already used by the account at line 21",
	    path, N + 4);
	ck_assert_str_eq(e.msg[0], want);
	errors_free(&e);

	/* Without the duplicate. */
	o -= strlen("  { name = \"a17\"; }\n);\n") + strlen(",\n");
	o += (size_t)snprintf(text + o, cap - o, "\n);\n");
	unlink(path);
	free(path);
	path = write_file(dir, "many.conf", text, o);
	c = conf_load(path, collect, &e);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(c->naccounts, N);
	ck_assert_uint_eq(account(c, "a4999")->port, 5000);
	conf_free(&c);
	check_rm_rf(dir);
	free(text);
	free(path);
	free(dir);
}
END_TEST

START_TEST(example_file)
{
	struct errors e = {0};
	struct conf *c;
	char *path;

	ck_assert_int_ne(
	    asprintf(&path, "%s/../conf/popfetchd.conf.example", srcdir()), -1);
	c = conf_load(path, collect, &e);
	if (e.n > 0)
		ck_abort_msg("%zu errors, first: %s", e.n, e.msg[0]);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_ge(c->naccounts, 2);
	conf_free(&c);
	free(path);
}
END_TEST

START_TEST(free_and_lookup)
{
	struct conf *c = load_good("inherit.conf", NULL);

	ck_assert_ptr_eq(conf_account(c, "plain"), &c->accounts[2]);
	ck_assert_ptr_null(conf_account(c, "Plain"));
	ck_assert_ptr_null(conf_account(c, ""));
	conf_free(&c);
	ck_assert_ptr_null(c);
	conf_free(&c);
	conf_free(NULL);
}
END_TEST

START_TEST(enum_names)
{
	ck_assert_str_eq(conf_tls_name(CONF_TLS_IMPLICIT), "implicit");
	ck_assert_str_eq(conf_tls_name(CONF_TLS_STARTTLS), "starttls");
	ck_assert_str_eq(conf_tls_name(CONF_TLS_NONE), "none");
	ck_assert_str_eq(conf_tls_name((enum conf_tls)3), "?");
	ck_assert_str_eq(conf_auth_name(CONF_AUTH_AUTO), "auto");
	ck_assert_str_eq(conf_auth_name(CONF_AUTH_PLAIN), "plain");
	ck_assert_str_eq(conf_auth_name(CONF_AUTH_LOGIN), "login");
	ck_assert_str_eq(conf_auth_name(CONF_AUTH_XOAUTH2), "xoauth2");
	ck_assert_str_eq(conf_auth_name(CONF_AUTH_OAUTHBEARER), "oauthbearer");
	ck_assert_str_eq(conf_auth_name(CONF_AUTH_EXTERNAL), "external");
	ck_assert_str_eq(conf_auth_name(CONF_AUTH_APOP), "apop");
	ck_assert_str_eq(conf_auth_name(CONF_AUTH_USER), "user");
	ck_assert_str_eq(conf_auth_name(CONF_AUTH_RPOP), "rpop");
	ck_assert_str_eq(conf_auth_name((enum conf_auth) - 1), "?");
	ck_assert_str_eq(conf_pipelining_name(CONF_PIPELINING_AUTO), "auto");
	ck_assert_str_eq(conf_pipelining_name(CONF_PIPELINING_ON), "on");
	ck_assert_str_eq(conf_pipelining_name(CONF_PIPELINING_OFF), "off");
	ck_assert_str_eq(conf_pipelining_name((enum conf_pipelining)9), "?");
}
END_TEST

/* Corpus files with ~/ paths expect this HOME; bad ones may change it. */
static void
reset_env(void)
{
	setenv("HOME", TEST_HOME, 1);
	unsetenv("STATE_DIRECTORY");
	unsetenv("XDG_STATE_HOME");
}

static Suite *
conf_suite(void)
{
	Suite *s = suite_create("conf");
	TCase *tc;

	tc = tcase_create("corpus");
	tcase_add_checked_fixture(tc, reset_env, NULL);
	tcase_add_test(tc, good_corpus);
	tcase_add_test(tc, bad_corpus);
	suite_add_tcase(s, tc);

	tc = tcase_create("values");
	tcase_add_checked_fixture(tc, reset_env, NULL);
	tcase_add_test(tc, defaults_applied);
	tcase_add_test(tc, inheritance);
	tcase_add_test(tc, test_targets);
	tcase_add_test(tc, every_key);
	tcase_add_test(tc, oauth2_group);
	tcase_add_test(tc, spellings);
	tcase_add_test(tc, libconfig_layout);
	tcase_add_test(tc, state_dir_from_systemd);
	tcase_add_test(tc, tilde_expansion);
	tcase_add_test(tc, example_file);
	tcase_add_test(tc, free_and_lookup);
	tcase_add_test(tc, enum_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("files");
	tcase_add_checked_fixture(tc, reset_env, NULL);
	tcase_add_test(tc, inline_password_permissions);
	tcase_add_test(tc, secrets_wiped);
	tcase_add_test(tc, nul_byte);
	tcase_add_test(tc, unreadable);
	tcase_add_test(tc, no_callback_uses_stderr);
	tcase_add_test(tc, many_accounts);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	if ((ngood = list_corpus("good", &good_files)) <= 0 ||
	    (nbad = list_corpus("bad", &bad_files)) <= 0)
		return EXIT_FAILURE;
	return check_main(conf_suite());
}
