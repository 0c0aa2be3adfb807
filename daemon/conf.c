/*
 * The configuration file: libconfig syntax, checked against the key table
 * below, turned into a struct conf that owns all its memory.
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libconfig.h>

#include "conf.h"
#include "confpath.h"
#include "folder.h"
#include "pool.h"
#include "target_mda.h"

/*
 * A configuration file is a few kilobytes even with thousands of accounts;
 * the cap only stops `-c /dev/zero` from eating the memory.
 */
#define CONF_FILE_MAX (16 * 1024 * 1024)

#define PIN_PREFIX "sha256/"
#define PIN_DIGEST 32 /* SHA-256 */
#define MSG_MAX	   512

/* Where a key may appear. */
#define W_TOP	  0x1
#define W_DEFAULT 0x2
#define W_ACCOUNT 0x4
#define W_GROUPS  (W_DEFAULT | W_ACCOUNT)
#define W_OAUTH2  0x8 /* inside an oauth2 group (of an account or defaults) */

enum ktype {
	T_STRING,   /* non-empty, no control characters */
	T_PATH,	    /* T_STRING, absolute or "~/..." */
	T_FILENAME, /* T_STRING, one path component */
	T_FOLDER,   /* T_STRING, a Maildir++ folder name (folder.h) */
	T_ENDPOINT, /* T_STRING, an absolute socket path or "host:port" */
	T_NAME,	    /* an account name */
	T_CHOICE,   /* one of k->choices, stored as a string */
	T_ENUM,	    /* one of k->choices, stored as its index */
	T_UINT,	    /* integer in [min, max], stored as unsigned */
	T_U64,	    /* integer in [min, max], stored as uint64_t */
	T_BOOL,
	T_PINS,	    /* array or list of "sha256/BASE64" */
	T_URL,	    /* T_STRING, an https:// URL */
	T_SUBGROUP, /* a group whose members are W_OAUTH2 keys */
	T_DEFAULTS, /* the defaults group */
	T_ACCOUNTS, /* the list of account groups */
};

/*
 * Keys that form one setting: when an account sets any of them it inherits
 * none of them from defaults, so that an account's password_file replaces
 * the password_command of defaults instead of conflicting with it.
 */
enum slot {
	SLOT_NONE,
	SLOT_PASSWORD,	    /* at most one per group */
	SLOT_CLIENT,	    /* certificate and key come as a pair */
	SLOT_CLIENT_SECRET, /* at most one per oauth2 group */
};

enum key_id {
	K_STATE_DIR,
	K_POLL_INTERVAL,
	K_MAX_CONNECTIONS,
	K_MAX_PER_HOST,
	K_TIMEOUT,
	K_METRICS_FILE,
	K_DEFAULTS,
	K_ACCOUNTS,
	K_NAME,
	K_HOST,
	K_PORT,
	K_TLS,
	K_ALLOW_PLAINTEXT,
	K_TLS_VERIFY,
	K_TLS_MIN_VERSION,
	K_CA_FILE,
	K_CA_PATH,
	K_TLS_PINS,
	K_TLS_RESUME,
	K_CLIENT_CERT,
	K_CLIENT_KEY,
	K_USER,
	K_PASSWORD,
	K_PASSWORD_FILE,
	K_PASSWORD_COMMAND,
	K_PASSWORD_CREDENTIAL,
	K_AUTH,
	K_MAILDIR,
	K_KEEP,
	K_DELETE_AFTER_DAYS,
	K_MAX_MESSAGE_SIZE,
	K_RECEIVED_HEADER,
	K_PIPELINING,
	K_SYNC,
	/* UTF8 and SCRAM */
	K_UTF8,
	K_CHANNEL_BINDING,
	K_OAUTH2,
	K_O_PROVIDER,
	K_O_CLIENT_ID,
	K_O_CLIENT_SECRET,
	K_O_CLIENT_SECRET_FILE,
	K_O_CLIENT_SECRET_COMMAND,
	K_O_CLIENT_SECRET_CREDENTIAL,
	K_O_TOKEN_ENDPOINT,
	K_O_DEVICE_ENDPOINT,
	K_O_AUTHORIZATION_ENDPOINT,
	K_O_SCOPE,
	K_O_FLOW,
	K_O_TOKEN_FILE,
	K_O_CA_FILE,
	/* Where mail goes: a Maildir (or a folder in it), LMTP, or an MDA. */
	K_FOLDER,
	K_TARGET,
	K_LMTP,
	K_RECIPIENT,
	K_MDA,
	K_MDA_SHELL,
	NKEYS
};

struct key {
	const char *name;
	enum ktype type;
	unsigned where;
	enum slot slot;
	bool required; /* in every account, after inheritance */
	bool secret;   /* refused in a file others can read */
	long long min, max;
	const char *const *choices; /* NULL-terminated */
	const char *def_s;
	long long def_n;
	size_t conf_off;  /* W_TOP: the field in struct conf */
	size_t acct_off;  /* W_GROUPS: the field in struct account */
	size_t count_off; /* T_PINS: the count beside the array */
};

static const char *const tls_names[] = {"implicit", "starttls", "none", NULL};
static const char *const auth_names[] = {"auto", "plain", "login", "xoauth2",
    "oauthbearer", "external", "apop", "user", "rpop", "scram-sha-1",
    "scram-sha-1-plus", "scram-sha-256", "scram-sha-256-plus", NULL};
static const char *const utf8_names[] = {"auto", "off", NULL};
static const char *const cb_names[] = {
    "auto", "tls-exporter", "tls-unique", NULL};
static const char *const pipelining_names[] = {"auto", "on", "off", NULL};
static const char *const sync_names[] = {"batch", "file", NULL};
static const char *const target_names[] = {"maildir", "lmtp", "mda", NULL};
static const char *const tls_version_names[] = {"TLSv1.2", "TLSv1.3", NULL};
static const char *const provider_names[] = {"microsoft", "gmail", NULL};
static const char *const flow_names[] = {"device", "loopback", NULL};

_Static_assert(sizeof(tls_names) / sizeof(*tls_names) == CONF_TLS_NONE + 2,
    "tls_names out of step with enum conf_tls");
_Static_assert(sizeof(auth_names) / sizeof(*auth_names) ==
		   CONF_AUTH_SCRAM_SHA_256_PLUS + 2,
    "auth_names out of step with enum conf_auth");
_Static_assert(sizeof(utf8_names) / sizeof(*utf8_names) == CONF_UTF8_OFF + 2,
    "utf8_names out of step with enum conf_utf8");
_Static_assert(sizeof(cb_names) / sizeof(*cb_names) == CONF_CB_TLS_UNIQUE + 2,
    "cb_names out of step with enum conf_cb");
_Static_assert(sizeof(pipelining_names) / sizeof(*pipelining_names) ==
		   CONF_PIPELINING_OFF + 2,
    "pipelining_names out of step with enum conf_pipelining");
_Static_assert(sizeof(sync_names) / sizeof(*sync_names) == CONF_SYNC_FILE + 2,
    "sync_names out of step with enum conf_sync");
_Static_assert(
    sizeof(target_names) / sizeof(*target_names) == CONF_TARGET_MDA + 2,
    "target_names out of step with enum conf_target");
/* T_ENUM fields are written as an int. */
_Static_assert(sizeof(enum conf_tls) == sizeof(int) &&
		   sizeof(enum conf_auth) == sizeof(int) &&
		   sizeof(enum conf_pipelining) == sizeof(int) &&
		   sizeof(enum conf_sync) == sizeof(int) &&
		   sizeof(enum conf_utf8) == sizeof(int) &&
		   sizeof(enum conf_cb) == sizeof(int) &&
		   sizeof(enum conf_target) == sizeof(int),
    "enum fields are not int-sized");

#define CONF(f) .conf_off = offsetof(struct conf, f)
#define ACCT(f) .acct_off = offsetof(struct account, f)

static const struct key keys[NKEYS] = {
    /* The default depends on who runs popfetchd: default_state_dir(). */
    [K_STATE_DIR] = {"state_dir", T_PATH, W_TOP, CONF(state_dir)},
    /* In an account or defaults, the top-level value is the default. */
    [K_POLL_INTERVAL] = {"poll_interval", T_UINT, W_TOP | W_GROUPS, .min = 10,
	.max = 604800, .def_n = 300, CONF(poll_interval), ACCT(poll_interval)},
    [K_MAX_CONNECTIONS] = {"max_connections", T_UINT, W_TOP, .min = 1,
	.max = 100000, .def_n = 64, CONF(max_connections)},
    [K_MAX_PER_HOST] = {"max_per_host", T_UINT, W_TOP, .min = 1, .max = 10000,
	.def_n = 4, CONF(max_per_host)},
    [K_TIMEOUT] = {"timeout", T_UINT, W_TOP | W_GROUPS, .min = 1, .max = 3600,
	.def_n = 60, CONF(timeout), ACCT(timeout)},
    /* Optional: no file unless asked for. */
    [K_METRICS_FILE] = {"metrics_file", T_PATH, W_TOP, CONF(metrics_file)},
    [K_DEFAULTS] = {"defaults", T_DEFAULTS, W_TOP, .slot = SLOT_NONE},
    [K_ACCOUNTS] = {"accounts", T_ACCOUNTS, W_TOP, .slot = SLOT_NONE},

    [K_NAME] = {"name", T_NAME, W_ACCOUNT, .required = true, ACCT(name)},
    [K_HOST] = {"host", T_STRING, W_GROUPS, .required = true, ACCT(host)},
    /* 0 stands for "by tls": 995 for implicit TLS, else 110. */
    [K_PORT] = {"port", T_UINT, W_GROUPS, .min = 1, .max = 65535, ACCT(port)},
    [K_TLS] = {"tls", T_ENUM, W_GROUPS, .choices = tls_names,
	.def_n = CONF_TLS_IMPLICIT, ACCT(tls)},
    [K_ALLOW_PLAINTEXT] = {"allow_plaintext", T_BOOL, W_GROUPS, .def_n = false,
	ACCT(allow_plaintext)},
    [K_TLS_VERIFY] = {"tls_verify", T_BOOL, W_GROUPS, .def_n = true,
	ACCT(tls_verify)},
    [K_TLS_MIN_VERSION] = {"tls_min_version", T_CHOICE, W_GROUPS,
	.choices = tls_version_names, .def_s = "TLSv1.2",
	ACCT(tls_min_version)},
    [K_CA_FILE] = {"ca_file", T_PATH, W_GROUPS, ACCT(ca_file)},
    [K_CA_PATH] = {"ca_path", T_PATH, W_GROUPS, ACCT(ca_path)},
    [K_TLS_PINS] = {"tls_pins", T_PINS, W_GROUPS, ACCT(tls_pins),
	.count_off = offsetof(struct account, ntls_pins)},
    [K_TLS_RESUME] = {"tls_resume", T_BOOL, W_GROUPS, .def_n = true,
	ACCT(tls_resume)},
    [K_CLIENT_CERT] = {"client_cert", T_PATH, W_GROUPS, SLOT_CLIENT,
	ACCT(client_cert)},
    [K_CLIENT_KEY] = {"client_key", T_PATH, W_GROUPS, SLOT_CLIENT,
	ACCT(client_key)},
    [K_USER] = {"user", T_STRING, W_GROUPS, ACCT(user)},
    [K_PASSWORD] = {"password", T_STRING, W_GROUPS, SLOT_PASSWORD,
	.secret = true, ACCT(password)},
    [K_PASSWORD_FILE] = {"password_file", T_PATH, W_GROUPS, SLOT_PASSWORD,
	ACCT(password_file)},
    [K_PASSWORD_COMMAND] = {"password_command", T_STRING, W_GROUPS,
	SLOT_PASSWORD, ACCT(password_command)},
    [K_PASSWORD_CREDENTIAL] = {"password_credential", T_FILENAME, W_GROUPS,
	SLOT_PASSWORD, ACCT(password_credential)},
    [K_AUTH] = {"auth", T_ENUM, W_GROUPS, .choices = auth_names,
	.def_n = CONF_AUTH_AUTO, ACCT(auth)},
    /* Required with target = "maildir" (check_account()). */
    [K_MAILDIR] = {"maildir", T_PATH, W_GROUPS, ACCT(maildir)},
    [K_KEEP] = {"keep", T_BOOL, W_GROUPS, .def_n = false, ACCT(keep)},
    [K_DELETE_AFTER_DAYS] = {"delete_after_days", T_UINT, W_GROUPS, .min = 0,
	.max = 36500, ACCT(delete_after_days)},
    [K_MAX_MESSAGE_SIZE] = {"max_message_size", T_U64, W_GROUPS, .min = 0,
	.max = 1LL << 40, ACCT(max_message_size)},
    [K_RECEIVED_HEADER] = {"received_header", T_BOOL, W_GROUPS, .def_n = true,
	ACCT(received_header)},
    [K_PIPELINING] = {"pipelining", T_ENUM, W_GROUPS,
	.choices = pipelining_names, .def_n = CONF_PIPELINING_AUTO,
	ACCT(pipelining)},
    [K_SYNC] = {"sync", T_ENUM, W_GROUPS, .choices = sync_names,
	.def_n = CONF_SYNC_BATCH, ACCT(sync)},

    /* UTF8 and SCRAM: auth's SCRAM values are in auth_names. */
    [K_UTF8] = {"utf8", T_ENUM, W_GROUPS, .choices = utf8_names,
	.def_n = CONF_UTF8_AUTO, ACCT(utf8)},
    [K_CHANNEL_BINDING] = {"channel_binding", T_ENUM, W_GROUPS,
	.choices = cb_names, .def_n = CONF_CB_AUTO, ACCT(channel_binding)},
    /*
     * OAuth2. The group is a password source: an account that sets a
     * password inherits no oauth2 group from defaults, and the other way
     * round. Its members are inherited one by one, so that defaults can
     * name the provider and client once for every account.
     */
    [K_OAUTH2] = {"oauth2", T_SUBGROUP, W_GROUPS, SLOT_PASSWORD,
	ACCT(oauth2.on)},
    [K_O_PROVIDER] = {"provider", T_CHOICE, W_OAUTH2, .choices = provider_names,
	ACCT(oauth2.provider)},
    [K_O_CLIENT_ID] = {"client_id", T_STRING, W_OAUTH2, ACCT(oauth2.client_id)},
    [K_O_CLIENT_SECRET] = {"client_secret", T_STRING, W_OAUTH2,
	SLOT_CLIENT_SECRET, .secret = true, ACCT(oauth2.client_secret)},
    [K_O_CLIENT_SECRET_FILE] = {"client_secret_file", T_PATH, W_OAUTH2,
	SLOT_CLIENT_SECRET, ACCT(oauth2.client_secret_file)},
    [K_O_CLIENT_SECRET_COMMAND] = {"client_secret_command", T_STRING, W_OAUTH2,
	SLOT_CLIENT_SECRET, ACCT(oauth2.client_secret_command)},
    [K_O_CLIENT_SECRET_CREDENTIAL] = {"client_secret_credential", T_FILENAME,
	W_OAUTH2, SLOT_CLIENT_SECRET, ACCT(oauth2.client_secret_credential)},
    [K_O_TOKEN_ENDPOINT] = {"token_endpoint", T_URL, W_OAUTH2,
	ACCT(oauth2.token_endpoint)},
    [K_O_DEVICE_ENDPOINT] = {"device_endpoint", T_URL, W_OAUTH2,
	ACCT(oauth2.device_endpoint)},
    [K_O_AUTHORIZATION_ENDPOINT] = {"authorization_endpoint", T_URL, W_OAUTH2,
	ACCT(oauth2.authorization_endpoint)},
    [K_O_SCOPE] = {"scope", T_STRING, W_OAUTH2, ACCT(oauth2.scope)},
    [K_O_FLOW] = {"flow", T_CHOICE, W_OAUTH2, .choices = flow_names,
	ACCT(oauth2.flow)},
    [K_O_TOKEN_FILE] = {"token_file", T_PATH, W_OAUTH2,
	ACCT(oauth2.token_file)},
    [K_O_CA_FILE] = {"ca_file", T_PATH, W_OAUTH2, ACCT(oauth2.ca_file)},
    [K_FOLDER] = {"folder", T_FOLDER, W_GROUPS, ACCT(folder)},
    [K_TARGET] = {"target", T_ENUM, W_GROUPS, .choices = target_names,
	.def_n = CONF_TARGET_MAILDIR, ACCT(target)},
    [K_LMTP] = {"lmtp", T_ENDPOINT, W_GROUPS, ACCT(lmtp)},
    [K_RECIPIENT] = {"recipient", T_STRING, W_GROUPS, ACCT(recipient)},
    /* Its placeholders are checked with mda_shell known (check_target()). */
    [K_MDA] = {"mda", T_STRING, W_GROUPS, ACCT(mda)},
    [K_MDA_SHELL] = {"mda_shell", T_BOOL, W_GROUPS, .def_n = false,
	ACCT(mda_shell)},
};

#undef CONF
#undef ACCT

struct error {
	int line;
	size_t seq; /* keeps errors on one line in the order found */
	char *msg;
};

struct loader {
	const char *path;
	struct pool *pool; /* the configuration's */
	char *buf;	   /* the file, NUL-terminated */
	size_t len;
	size_t cap;    /* bytes allocated at buf, all wiped before freeing */
	size_t *lines; /* offset of each line's start */
	size_t nlines;
	mode_t mode;
	const char *home; /* NULL: unset */
	struct error *errors;
	size_t nerrors, errcap;
	bool oom;
};

/*
 * One setting as read from one group; line 0 means not set there. A value
 * that failed its own check is kept as bad: it still counts as present (so
 * that one mistake is one error, not also a "missing" one), but takes no
 * part in the rules between keys and is never stored.
 */
struct val {
	int line;
	bool bad;
	long long n;
	const char *s;		     /* borrowed from libconfig */
	const config_setting_t *set; /* T_PINS, T_DEFAULTS, T_ACCOUNTS */
};

/* The settings of one group: the top level, defaults, or an account. */
struct group {
	struct val v[NKEYS];
	int line;
	char ctx[CONF_NAME_MAX + 16]; /* prefix of its messages */
};

struct ktype_ops {
	bool (*check)(struct loader *, const struct group *, const struct key *,
	    const config_setting_t *, struct val *);
	void (*store)(struct loader *, const struct key *, const struct val *,
	    char *base);
};

static void fail(struct loader *, int, const struct group *, const char *, ...)
    __attribute__((format(printf, 4, 5)));
static bool check_string(struct loader *, const struct group *,
    const struct key *, const config_setting_t *, struct val *);
static bool check_path(struct loader *, const struct group *,
    const struct key *, const config_setting_t *, struct val *);
static bool check_filename(struct loader *, const struct group *,
    const struct key *, const config_setting_t *, struct val *);
static bool check_folder(struct loader *, const struct group *,
    const struct key *, const config_setting_t *, struct val *);
static bool check_endpoint(struct loader *, const struct group *,
    const struct key *, const config_setting_t *, struct val *);
static bool check_name(struct loader *, const struct group *,
    const struct key *, const config_setting_t *, struct val *);
static bool check_choice(struct loader *, const struct group *,
    const struct key *, const config_setting_t *, struct val *);
static bool check_int(struct loader *, const struct group *, const struct key *,
    const config_setting_t *, struct val *);
static bool check_bool(struct loader *, const struct group *,
    const struct key *, const config_setting_t *, struct val *);
static bool check_pins(struct loader *, const struct group *,
    const struct key *, const config_setting_t *, struct val *);
static bool check_group(struct loader *, const struct group *,
    const struct key *, const config_setting_t *, struct val *);
static bool check_list(struct loader *, const struct group *,
    const struct key *, const config_setting_t *, struct val *);
static bool check_url(struct loader *, const struct group *, const struct key *,
    const config_setting_t *, struct val *);
static void read_group(
    struct loader *, struct group *, unsigned, const config_setting_t *);
static void store_string(
    struct loader *, const struct key *, const struct val *, char *);
static void store_path(
    struct loader *, const struct key *, const struct val *, char *);
static void store_enum(
    struct loader *, const struct key *, const struct val *, char *);
static void store_uint(
    struct loader *, const struct key *, const struct val *, char *);
static void store_u64(
    struct loader *, const struct key *, const struct val *, char *);
static void store_bool(
    struct loader *, const struct key *, const struct val *, char *);
static void store_pins(
    struct loader *, const struct key *, const struct val *, char *);
static void store_present(
    struct loader *, const struct key *, const struct val *, char *);

static const struct ktype_ops ops[] = {
    [T_STRING] = {check_string, store_string},
    [T_PATH] = {check_path, store_path},
    [T_FILENAME] = {check_filename, store_string},
    [T_FOLDER] = {check_folder, store_string},
    [T_ENDPOINT] = {check_endpoint, store_string},
    [T_NAME] = {check_name, store_string},
    [T_CHOICE] = {check_choice, store_string},
    [T_ENUM] = {check_choice, store_enum},
    [T_UINT] = {check_int, store_uint},
    [T_U64] = {check_int, store_u64},
    [T_BOOL] = {check_bool, store_bool},
    [T_PINS] = {check_pins, store_pins},
    [T_URL] = {check_url, store_string},
    [T_SUBGROUP] = {check_group, store_present},
    [T_DEFAULTS] = {check_group, NULL},
    [T_ACCOUNTS] = {check_list, NULL},
};

_Static_assert(sizeof(ops) / sizeof(*ops) == T_ACCOUNTS + 1,
    "ops out of step with enum ktype");

/* Records one error at LINE, prefixed with the group's context. */
static void
fail(struct loader *L, int line, const struct group *g, const char *fmt, ...)
{
	char msg[MSG_MAX];
	struct error *e;
	va_list ap;
	size_t cap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (L->nerrors == L->errcap) {
		cap = L->errcap == 0 ? 16 : L->errcap * 2;
		if ((e = reallocarray(L->errors, cap, sizeof(*e))) == NULL) {
			L->oom = true;
			return;
		}
		L->errors = e;
		L->errcap = cap;
	}
	e = &L->errors[L->nerrors];
	if (asprintf(&e->msg, "%s:%d: %s%s", L->path, line,
		g != NULL ? g->ctx : "", msg) == -1) {
		L->oom = true;
		return;
	}
	e->line = line;
	e->seq = L->nerrors++;
}

/* S in the configuration's pool (interned: never written to). */
static char *
xstrdup(struct loader *L, const char *s)
{
	char *p;

	if (s == NULL)
		return NULL;
	if ((p = pool_strdup(L->pool, s)) == NULL)
		L->oom = true;
	return p;
}

/* The pool's copy of a string made by asprintf(), which is freed. */
static char *
xpooled(struct loader *L, char *s)
{
	char *p;

	if (s == NULL) {
		L->oom = true;
		return NULL;
	}
	p = xstrdup(L, s);
	free(s);
	return p;
}

static int
line_of(const config_setting_t *s)
{
	return (int)config_setting_source_line(s);
}

static const char *
choices_text(const char *const *choices, char *buf, size_t len)
{
	size_t o = 0;

	buf[0] = '\0';
	for (; *choices != NULL && o < len; choices++)
		o += (size_t)snprintf(
		    buf + o, len - o, "%s\"%s\"", o > 0 ? ", " : "", *choices);
	return buf;
}

static bool
check_string(struct loader *L, const struct group *g, const struct key *k,
    const config_setting_t *s, struct val *v)
{
	const char *str, *p;

	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		fail(L, line_of(s), g, "%s must be a string", k->name);
		return false;
	}
	str = config_setting_get_string(s);
	if (str[0] == '\0') {
		fail(L, line_of(s), g, "%s is empty", k->name);
		return false;
	}
	for (p = str; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			fail(L, line_of(s), g,
			    "%s contains a control character", k->name);
			return false;
		}
	}
	v->s = str;
	return true;
}

static bool
check_path(struct loader *L, const struct group *g, const struct key *k,
    const config_setting_t *s, struct val *v)
{
	if (!check_string(L, g, k, s, v))
		return false;
	if (v->s[0] == '/')
		return true;
	if (strncmp(v->s, "~/", 2) != 0) {
		fail(L, line_of(s), g,
		    "%s \"%.80s\" must be an absolute path or start with ~/",
		    k->name, v->s);
		return false;
	}
	if (L->home == NULL) {
		fail(L, line_of(s), g,
		    "%s \"%.80s\": ~/ needs $HOME, which is not set", k->name,
		    v->s);
		return false;
	}
	if (L->home[0] != '/') {
		fail(L, line_of(s), g,
		    "%s \"%.80s\": $HOME is not an absolute path", k->name,
		    v->s);
		return false;
	}
	return true;
}

static bool
check_filename(struct loader *L, const struct group *g, const struct key *k,
    const config_setting_t *s, struct val *v)
{
	if (!check_string(L, g, k, s, v))
		return false;
	if (strchr(v->s, '/') != NULL || strcmp(v->s, ".") == 0 ||
	    strcmp(v->s, "..") == 0) {
		fail(L, line_of(s), g,
		    "%s \"%.80s\" must be a plain file name (no '/')", k->name,
		    v->s);
		return false;
	}
	return true;
}

/* Names become file names in state_dir, hence the strict alphabet. */
/* A Maildir++ folder name, as deliveries will encode it. */
static bool
check_folder(struct loader *L, const struct group *g, const struct key *k,
    const config_setting_t *s, struct val *v)
{
	char dir[FOLDER_DIR_SIZE];
	const char *why;

	if (!check_string(L, g, k, s, v))
		return false;
	if (folder_encode(v->s, dir, sizeof(dir), &why) == -1) {
		fail(L, line_of(s), g, "%s \"%s\": %s", k->name, v->s, why);
		return false;
	}
	return true;
}

/*
 * Where an LMTP server listens: a Unix socket's absolute path (at most
 * what sockaddr_un holds), or HOST:PORT ("[::1]:24" for an IPv6 literal).
 */
static bool
check_endpoint(struct loader *L, const struct group *g, const struct key *k,
    const config_setting_t *s, struct val *v)
{
	const char *colon, *p;
	long port = 0;

	if (!check_string(L, g, k, s, v))
		return false;
	if (v->s[0] == '/') {
		if (strlen(v->s) < 108)
			return true;
		fail(L, line_of(s), g, "%s: socket path longer than 107 bytes",
		    k->name);
		return false;
	}
	colon = strrchr(v->s, ':');
	if (colon != NULL && colon != v->s && colon[1] != '\0') {
		for (p = colon + 1; *p >= '0' && *p <= '9' && port <= 65535;
		     p++)
			port = port * 10 + (*p - '0');
		if (*p == '\0' && port >= 1 && port <= 65535)
			return true;
	}
	fail(L, line_of(s), g,
	    "%s must be a socket's absolute path or host:port (1-65535)",
	    k->name);
	return false;
}

static bool
check_name(struct loader *L, const struct group *g, const struct key *k,
    const config_setting_t *s, struct val *v)
{
	size_t n;

	if (!check_string(L, g, k, s, v))
		return false;
	n = strspn(v->s,
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-");
	if (v->s[n] != '\0' || n > CONF_NAME_MAX || strcmp(v->s, ".") == 0 ||
	    strcmp(v->s, "..") == 0) {
		fail(L, line_of(s), g,
		    "%s \"%.80s\" must be 1 to %d of A-Z a-z 0-9 . _ - (and not \".\" or \"..\")",
		    k->name, v->s, CONF_NAME_MAX);
		return false;
	}
	return true;
}

static bool
check_choice(struct loader *L, const struct group *g, const struct key *k,
    const config_setting_t *s, struct val *v)
{
	char buf[200];
	size_t i;

	if (!check_string(L, g, k, s, v))
		return false;
	for (i = 0; k->choices[i] != NULL; i++) {
		if (strcmp(v->s, k->choices[i]) == 0) {
			v->n = (long long)i;
			return true;
		}
	}
	fail(L, line_of(s), g, "%s \"%.80s\" is not one of %s", k->name, v->s,
	    choices_text(k->choices, buf, sizeof(buf)));
	return false;
}

static bool
ident_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*';
}

/* Parses an integer literal as libconfig writes it; false if none at P. */
static bool
parse_literal(const char *p, long long *out, bool *saturated)
{
	unsigned long long mag = 0, d;
	unsigned base = 10;
	bool neg = false, any = false;

	*saturated = false;
	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		base = 16;
		p += 2;
	}
	for (;; p++) {
		if (*p >= '0' && *p <= '9')
			d = (unsigned)(*p - '0');
		else if (base == 16 && *p >= 'a' && *p <= 'f')
			d = (unsigned)(*p - 'a' + 10);
		else if (base == 16 && *p >= 'A' && *p <= 'F')
			d = (unsigned)(*p - 'A' + 10);
		else
			break;
		any = true;
		if (mag > (ULLONG_MAX - d) / base)
			*saturated = true;
		else
			mag = mag * base + d;
	}
	if (!any)
		return false;
	if (mag > (unsigned long long)LLONG_MAX)
		*saturated = true;
	if (*saturated)
		*out = neg ? LLONG_MIN : LLONG_MAX;
	else
		*out = neg ? -(long long)mag : (long long)mag;
	return true;
}

/*
 * libconfig 1.5 (Debian 12) takes an integer literal that does not fit an
 * int without complaint and keeps its low 32 bits, or -1 when it does not
 * even fit a long: "port = 4294968291" reads as 995. The literal in the
 * text is what the user meant, so look it up beside the setting's name and
 * use it when libconfig's value is a truncation of it. Newer libconfig
 * reads such literals as int64, and then this finds nothing to correct.
 */
static long long
source_int(const struct loader *L, const config_setting_t *s, long long got)
{
	const char *name = config_setting_name(s), *p, *end, *q;
	size_t line = config_setting_source_line(s), nlen;
	long long lit;
	bool sat;

	if (name == NULL || line == 0 || line > L->nlines)
		return got;
	nlen = strlen(name);
	p = L->buf + L->lines[line - 1];
	end = strchr(p, '\n');
	if (end == NULL)
		end = L->buf + L->len;
	for (; (p = memmem(p, (size_t)(end - p), name, nlen)) != NULL;
	     p += nlen) {
		if ((p > L->buf && ident_char(p[-1])) || ident_char(p[nlen]))
			continue;
		q = p + nlen + strspn(p + nlen, " \t\r\n");
		if (*q != '=' && *q != ':')
			continue;
		q += 1 + strspn(q + 1, " \t\r\n");
		if (!parse_literal(q, &lit, &sat))
			continue;
		if (lit == got)
			return got;
		if ((unsigned)(unsigned long long)lit == (unsigned)got ||
		    (sat && (got == -1 || got == 0)))
			return lit;
	}
	return got;
}

static bool
check_int(struct loader *L, const struct group *g, const struct key *k,
    const config_setting_t *s, struct val *v)
{
	long long n;

	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
		n = source_int(L, s, config_setting_get_int(s));
		break;
	case CONFIG_TYPE_INT64:
		n = config_setting_get_int64(s);
		break;
	default:
		fail(L, line_of(s), g, "%s must be an integer", k->name);
		return false;
	}
	if (n < k->min || n > k->max) {
		fail(L, line_of(s), g, "%s %lld out of range (%lld..%lld)",
		    k->name, n, k->min, k->max);
		return false;
	}
	v->n = n;
	return true;
}

static bool
check_bool(struct loader *L, const struct group *g, const struct key *k,
    const config_setting_t *s, struct val *v)
{
	if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
		fail(L, line_of(s), g, "%s must be true or false", k->name);
		return false;
	}
	v->n = config_setting_get_bool(s);
	return true;
}

static int
b64_value(char c)
{
	const char *alphabet =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p;

	if (c == '\0' || (p = strchr(alphabet, c)) == NULL)
		return -1;
	return (int)(p - alphabet);
}

/*
 * Decodes padded base64 into OUT; returns the length, or -1 if IN is not
 * in canonical form (the one tls.c prints and compares against).
 */
static int
b64_decode(const char *in, unsigned char *out, size_t outlen)
{
	size_t len = strlen(in), pad = 0, n, o = 0, i;
	unsigned long acc = 0;
	int c, shift;

	if (len == 0 || len % 4 != 0)
		return -1;
	while (pad < 2 && in[len - 1 - pad] == '=')
		pad++;
	if ((n = len / 4 * 3 - pad) > outlen)
		return -1;
	for (i = 0; i < len; i++) {
		c = i < len - pad ? b64_value(in[i]) : 0;
		if (c == -1)
			return -1;
		acc = (acc << 6 | (unsigned long)c) & 0xffffff;
		if (i % 4 != 3)
			continue;
		for (shift = 16; shift >= 0 && o < n; shift -= 8)
			out[o++] = (unsigned char)(acc >> shift);
	}
	/* Bits beyond the last byte must be zero, or two texts mean one key. */
	if ((acc & (0xffffffUL >> (24 - 8 * pad))) != 0)
		return -1;
	return (int)n;
}

static bool
check_pins(struct loader *L, const struct group *g, const struct key *k,
    const config_setting_t *s, struct val *v)
{
	unsigned char digest[PIN_DIGEST + 1];
	const config_setting_t *e;
	struct val ev;
	bool ok = true;
	int i, n;

	if (config_setting_type(s) != CONFIG_TYPE_ARRAY &&
	    config_setting_type(s) != CONFIG_TYPE_LIST) {
		fail(L, line_of(s), g,
		    "%s must be an array of strings: [ \"sha256/...\", ... ]",
		    k->name);
		return false;
	}
	n = config_setting_length(s);
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(s, (unsigned)i);
		if (!check_string(L, g, k, e, &ev)) {
			ok = false;
			continue;
		}
		if (strncmp(ev.s, PIN_PREFIX, strlen(PIN_PREFIX)) != 0 ||
		    b64_decode(ev.s + strlen(PIN_PREFIX), digest,
			sizeof(digest)) != PIN_DIGEST) {
			fail(L, line_of(e), g,
			    "%s: \"%.80s\" is not \"sha256/\" followed by the base64 of 32 bytes (44 characters ending in =)",
			    k->name, ev.s);
			ok = false;
		}
	}
	v->set = s;
	return ok;
}

static bool
check_group(struct loader *L, const struct group *g, const struct key *k,
    const config_setting_t *s, struct val *v)
{
	if (config_setting_type(s) != CONFIG_TYPE_GROUP) {
		fail(L, line_of(s), g, "%s must be a group: %s = { ... };",
		    k->name, k->name);
		return false;
	}
	v->set = s;
	return true;
}

/*
 * An endpoint: only https, as a token or a client secret goes there. The
 * host is checked against its certificate like any other server's.
 */
static bool
check_url(struct loader *L, const struct group *g, const struct key *k,
    const config_setting_t *s, struct val *v)
{
	const char *host;

	if (!check_string(L, g, k, s, v))
		return false;
	host = v->s + strlen("https://");
	if (strncmp(v->s, "https://", strlen("https://")) != 0 ||
	    host[0] == '\0' || host[0] == '/' || host[0] == ':' ||
	    strpbrk(v->s, " #") != NULL) {
		fail(L, line_of(s), g,
		    "%s \"%.80s\" must be an https:// URL with a host name",
		    k->name, v->s);
		return false;
	}
	return true;
}

static bool
check_list(struct loader *L, const struct group *g, const struct key *k,
    const config_setting_t *s, struct val *v)
{
	if (config_setting_type(s) != CONFIG_TYPE_LIST) {
		fail(L, line_of(s), g,
		    "%s must be a list of groups: %s = ( { ... }, { ... } );",
		    k->name, k->name);
		return false;
	}
	if (config_setting_length(s) == 0) {
		fail(L, line_of(s), g,
		    "%s is empty: define at least one account", k->name);
		return false;
	}
	v->set = s;
	return true;
}

/*
 * The key called NAME that may appear WHERE, else any key of that name
 * (to say where it belongs), else NKEYS. Two keys share a name only in
 * different places: ca_file of an account and of its oauth2 group.
 */
static enum key_id
key_find(const char *name, unsigned where)
{
	size_t k, any = NKEYS;

	for (k = 0; k < NKEYS; k++) {
		if (strcmp(keys[k].name, name) != 0)
			continue;
		if ((keys[k].where & where) != 0)
			return (enum key_id)k;
		if (any == NKEYS)
			any = k;
	}
	return (enum key_id)any;
}

static const char *
where_text(unsigned where)
{
	if (where == W_TOP)
		return "only at the top level";
	if (where == W_ACCOUNT)
		return "only in an account, not in defaults";
	if (where == W_OAUTH2)
		return "only in an oauth2 group";
	return "only in an account or in defaults";
}

/* Checks one setting of group G and records it; errors are reported. */
static void
read_setting(
    struct loader *L, struct group *g, unsigned where, config_setting_t *s)
{
	const struct key *k;
	enum key_id id;
	struct val v = {0};

	id = key_find(config_setting_name(s), where);
	if (id == NKEYS) {
		fail(L, line_of(s), g, "unknown key \"%s\"",
		    config_setting_name(s));
		return;
	}
	k = &keys[id];
	if ((k->where & where) == 0) {
		fail(L, line_of(s), g, "%s belongs %s", k->name,
		    where_text(k->where));
		return;
	}
	if (!ops[k->type].check(L, g, k, s, &v)) {
		v.bad = true;
	} else if (k->secret && (L->mode & (S_IRGRP | S_IROTH)) != 0) {
		fail(L, line_of(s), g,
		    "inline %s in a file readable by group or others: chmod 600 %s, or use password_file",
		    k->name, L->path);
		v.bad = true;
	}
	v.line = line_of(s);
	g->v[id] = v;
	/* Its members land in the same group, as keys of their own. */
	if (k->type == T_SUBGROUP && !v.bad)
		read_group(L, g, W_OAUTH2, s);
}

/* Two sources of one secret in one group: which wins would be a guess. */
static void
check_exclusive(struct loader *L, const struct group *g, enum slot slot)
{
	const struct val *first = NULL, *v;
	size_t k, fk = 0;

	for (k = 0; k < NKEYS; k++) {
		v = &g->v[k];
		if (keys[k].slot != slot || v->line == 0)
			continue;
		if (first == NULL || v->line < first->line) {
			first = v;
			fk = k;
		}
	}
	for (k = 0; first != NULL && k < NKEYS; k++) {
		v = &g->v[k];
		if (keys[k].slot == slot && v->line != 0 && v != first)
			fail(L, v->line, g,
			    "%s conflicts with %s (line %d): set only one %s source",
			    keys[k].name, keys[fk].name, first->line,
			    slot == SLOT_PASSWORD ? "password"
						  : "client secret");
	}
}

/*
 * Reads the settings of group S into G. Settings that came from an
 * @include are skipped: that directive is refused as a whole.
 */
static void
read_group(struct loader *L, struct group *g, unsigned where,
    const config_setting_t *s)
{
	config_setting_t *e;
	unsigned i, n;

	n = (unsigned)config_setting_length(s);
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(s, i);
		if (config_setting_source_file(e) != NULL)
			continue;
		if (where == W_ACCOUNT &&
		    strcmp(config_setting_name(e), "name") == 0)
			continue;
		read_setting(L, g, where, e);
	}
	check_exclusive(
	    L, g, where == W_OAUTH2 ? SLOT_CLIENT_SECRET : SLOT_PASSWORD);
}

static bool
slot_set(const struct group *g, enum slot slot)
{
	size_t k;

	for (k = 0; k < NKEYS; k++)
		if (keys[k].slot == slot && g->v[k].line != 0)
			return true;
	return false;
}

/*
 * The value account A ends up with for key K: its own, else the one in
 * defaults, else the top-level one; NULL for the table's default.
 */
static const struct val *
effective(const struct group *a, const struct group *defs,
    const struct group *top, enum key_id k)
{
	if (a->v[k].line != 0)
		return &a->v[k];
	if (keys[k].slot != SLOT_NONE && slot_set(a, keys[k].slot))
		return NULL;
	if (defs->v[k].line != 0)
		return &defs->v[k];
	if ((keys[k].where & W_TOP) != 0 && top->v[k].line != 0)
		return &top->v[k];
	return NULL;
}

static long long
eff_n(const struct val *const *eff, enum key_id k)
{
	return eff[k] != NULL ? eff[k]->n : keys[k].def_n;
}

static bool
eff_set(const struct val *const *eff, enum key_id k)
{
	return eff[k] != NULL;
}

static bool
usable(const struct val *const *eff, enum key_id k)
{
	return eff[k] == NULL || !eff[k]->bad;
}

/* The line to blame: K1 or K2 if the account sets it, else the group. */
static int
blame(const struct group *a, enum key_id k1, enum key_id k2)
{
	if (a->v[k1].line != 0)
		return a->v[k1].line;
	if (a->v[k2].line != 0)
		return a->v[k2].line;
	return a->line;
}

/* What each delivery target needs, and keys that only one of them takes. */
static void
check_target(
    struct loader *L, const struct group *a, const struct val *const *eff)
{
	long long t = eff_n(eff, K_TARGET);
	const char *why;

	if (!usable(eff, K_TARGET))
		return;
	if (t == CONF_TARGET_MAILDIR && !eff_set(eff, K_MAILDIR))
		fail(L, a->line, a, "missing maildir");
	if (t == CONF_TARGET_LMTP && !eff_set(eff, K_LMTP))
		fail(L, blame(a, K_TARGET, K_TARGET), a,
		    "target = \"lmtp\" needs lmtp (the server's socket or host:port)");
	if (t == CONF_TARGET_LMTP && !eff_set(eff, K_RECIPIENT))
		fail(L, blame(a, K_TARGET, K_TARGET), a,
		    "target = \"lmtp\" needs recipient (whom the LMTP server delivers to)");
	if (t != CONF_TARGET_MAILDIR && eff_set(eff, K_FOLDER))
		fail(L, blame(a, K_FOLDER, K_TARGET), a,
		    "folder needs target = \"maildir\" (with LMTP, a Sieve rule files mail)");
	if (t == CONF_TARGET_MDA && !eff_set(eff, K_MDA))
		fail(L, blame(a, K_TARGET, K_TARGET), a,
		    "target = \"mda\" needs mda (the command to run)");
	if (eff_set(eff, K_MDA) && usable(eff, K_MDA) &&
	    usable(eff, K_MDA_SHELL) &&
	    mda_cmd_check(eff[K_MDA]->s, eff_n(eff, K_MDA_SHELL), &why) == -1)
		fail(L, eff[K_MDA]->line, a, "mda \"%.80s\": %s", eff[K_MDA]->s,
		    why);
}

/* Rules between keys, on the values after inheritance. */
static void
check_account(
    struct loader *L, const struct group *a, const struct val *const *eff)
{
	bool credentials =
	    usable(eff, K_AUTH) && eff_n(eff, K_AUTH) != CONF_AUTH_EXTERNAL;
	size_t k;

	for (k = 0; k < NKEYS; k++)
		if (keys[k].required && !eff_set(eff, k))
			fail(L, a->line, a, "missing %s", keys[k].name);
	check_target(L, a, eff);
	if (credentials && !eff_set(eff, K_USER))
		fail(L, a->line, a,
		    "missing user (needed unless auth = \"external\")");
	if (credentials && !eff_set(eff, K_OAUTH2) &&
	    !eff_set(eff, K_PASSWORD) && !eff_set(eff, K_PASSWORD_FILE) &&
	    !eff_set(eff, K_PASSWORD_COMMAND) &&
	    !eff_set(eff, K_PASSWORD_CREDENTIAL))
		fail(L, a->line, a,
		    "missing password: set one of password_file, password_command, password_credential, password or an oauth2 group");
	if (usable(eff, K_TLS) && usable(eff, K_ALLOW_PLAINTEXT) &&
	    eff_n(eff, K_TLS) == CONF_TLS_NONE &&
	    !eff_n(eff, K_ALLOW_PLAINTEXT))
		fail(L, blame(a, K_TLS, K_ALLOW_PLAINTEXT), a,
		    "tls = \"none\" needs allow_plaintext = true: the credentials would cross the network in clear");
	if (usable(eff, K_DELETE_AFTER_DAYS) && usable(eff, K_KEEP) &&
	    eff_n(eff, K_DELETE_AFTER_DAYS) > 0 && !eff_n(eff, K_KEEP))
		fail(L, blame(a, K_DELETE_AFTER_DAYS, K_KEEP), a,
		    "delete_after_days = %lld needs keep = true (without keep, mail is deleted as soon as it is fetched)",
		    eff_n(eff, K_DELETE_AFTER_DAYS));
	if (eff_set(eff, K_CLIENT_CERT) != eff_set(eff, K_CLIENT_KEY))
		fail(L, blame(a, K_CLIENT_CERT, K_CLIENT_KEY), a, "%s",
		    eff_set(eff, K_CLIENT_CERT)
			? "client_cert needs client_key"
			: "client_key needs client_cert");
}

/* The oauth2 group's rules, on the values after inheritance. */
static void
check_oauth2(
    struct loader *L, const struct group *a, const struct val *const *eff)
{
	int line = blame(a, K_OAUTH2, K_OAUTH2);
	long long auth = eff_n(eff, K_AUTH);

	if (!eff_set(eff, K_OAUTH2) || !usable(eff, K_OAUTH2))
		return;
	if (!eff_set(eff, K_O_CLIENT_ID))
		fail(L, line, a,
		    "oauth2: missing client_id (the application registered with the provider)");
	if (!eff_set(eff, K_O_PROVIDER) && !eff_set(eff, K_O_TOKEN_ENDPOINT))
		fail(L, line, a,
		    "oauth2: set provider (\"microsoft\" or \"gmail\") or token_endpoint");
	if (eff_set(eff, K_AUTH) && usable(eff, K_AUTH) &&
	    auth != CONF_AUTH_XOAUTH2 && auth != CONF_AUTH_OAUTHBEARER)
		fail(L, blame(a, K_AUTH, K_OAUTH2), a,
		    "auth = \"%s\" cannot use an oauth2 token: use \"xoauth2\" or \"oauthbearer\"",
		    auth_names[auth]);
}

static void
store_string(
    struct loader *L, const struct key *k, const struct val *v, char *field)
{
	*(char **)field = xstrdup(L, v != NULL ? v->s : k->def_s);
}

static void
store_path(
    struct loader *L, const struct key *k, const struct val *v, char *field)
{
	const char *s = v != NULL ? v->s : k->def_s;
	size_t hlen;
	char *p;

	if (s == NULL || strncmp(s, "~/", 2) != 0 || L->home == NULL) {
		store_string(L, k, v, field);
		return;
	}
	/* "/home/a/" and "/" must not give a double slash. */
	hlen = strlen(L->home);
	while (hlen > 0 && L->home[hlen - 1] == '/')
		hlen--;
	if (asprintf(&p, "%.*s/%s", (int)hlen, L->home, s + 2) == -1)
		p = NULL;
	*(char **)field = xpooled(L, p);
}

static void
store_enum(
    struct loader *L, const struct key *k, const struct val *v, char *field)
{
	int n = (int)(v != NULL ? v->n : k->def_n);

	memcpy(field, &n, sizeof(n));
}

static void
store_uint(
    struct loader *L, const struct key *k, const struct val *v, char *field)
{
	*(unsigned *)field = (unsigned)(v != NULL ? v->n : k->def_n);
}

static void
store_u64(
    struct loader *L, const struct key *k, const struct val *v, char *field)
{
	*(uint64_t *)field = (uint64_t)(v != NULL ? v->n : k->def_n);
}

static void
store_bool(
    struct loader *L, const struct key *k, const struct val *v, char *field)
{
	*(bool *)field = (v != NULL ? v->n : k->def_n) != 0;
}

/* FIELD is the array; the count lives at k->count_off of the same base. */
static void
store_pins(
    struct loader *L, const struct key *k, const struct val *v, char *field)
{
	char *base = field - k->acct_off, **pins;
	size_t n = 0, i;

	if (v != NULL)
		n = (size_t)config_setting_length(v->set);
	if ((pins = pool_alloc(L->pool, (n + 1) * sizeof(*pins))) == NULL) {
		L->oom = true;
		n = 0;
	}
	for (i = 0; i < n; i++)
		pins[i] = xstrdup(
		    L, config_setting_get_string(
			   config_setting_get_elem(v->set, (unsigned)i)));
	*(char ***)field = pins;
	*(size_t *)(base + k->count_off) = n;
}

/* A group key: whether the group is there. */
static void
store_present(
    struct loader *L, const struct key *k, const struct val *v, char *field)
{
	*(bool *)field = v != NULL;
}

/* Names the group for its messages, by name when the name is usable. */
static void
read_name(struct loader *L, struct group *a, const config_setting_t *s,
    unsigned index)
{
	config_setting_t *ns;
	struct val v = {0};

	snprintf(a->ctx, sizeof(a->ctx), "account #%u: ", index + 1);
	ns = config_setting_get_member(s, "name");
	if (ns == NULL || config_setting_source_file(ns) != NULL)
		return;
	v.line = line_of(ns);
	v.bad = !check_name(L, a, &keys[K_NAME], ns, &v);
	a->v[K_NAME] = v;
	if (!v.bad)
		snprintf(a->ctx, sizeof(a->ctx), "account \"%s\": ", v.s);
}

static void
read_account(struct loader *L, struct conf *c, const struct group *defs,
    const struct group *top, const config_setting_t *s, unsigned index)
{
	const struct val *eff[NKEYS];
	struct account *a = &c->accounts[c->naccounts++];
	struct group g = {0};
	char *tf;
	size_t k;

	g.line = line_of(s);
	read_name(L, &g, s, index);
	read_group(L, &g, W_ACCOUNT, s);
	for (k = 0; k < NKEYS; k++)
		eff[k] = (keys[k].where & (W_ACCOUNT | W_OAUTH2)) != 0
			     ? effective(&g, defs, top, k)
			     : NULL;
	check_account(L, &g, eff);
	check_oauth2(L, &g, eff);
	for (k = 0; k < NKEYS; k++)
		if ((keys[k].where & (W_ACCOUNT | W_OAUTH2)) != 0)
			ops[keys[k].type].store(L, &keys[k],
			    usable(eff, k) ? eff[k] : NULL,
			    (char *)a + keys[k].acct_off);
	if (!eff_set(eff, K_PORT))
		a->port = a->tls == CONF_TLS_IMPLICIT ? 995 : 110;
	/* The providers' POP servers take XOAUTH2; OAUTHBEARER is asked for. */
	if (a->oauth2.on && !eff_set(eff, K_AUTH))
		a->auth = CONF_AUTH_XOAUTH2;
	/* Beside the account's state: writable by the service, private. */
	if (a->oauth2.on && a->oauth2.token_file == NULL &&
	    c->state_dir != NULL && a->name != NULL) {
		if (asprintf(&tf, "%s/%s.oauth2", c->state_dir, a->name) == -1)
			tf = NULL;
		a->oauth2.token_file = xpooled(L, tf);
	}
	a->file = c->path;
	a->line = g.line;
}

static int
cmp_by_name(const void *x, const void *y)
{
	const struct account *a = *(const struct account *const *)x;
	const struct account *b = *(const struct account *const *)y;
	int r = strcmp(a->name, b->name);

	if (r != 0)
		return r;
	return (a->line > b->line) - (a->line < b->line);
}

/* Duplicate names would share one state file. */
static void
check_unique(struct loader *L, const struct conf *c)
{
	const struct account **v;
	struct group g = {0};
	size_t i, n = 0;

	if ((v = calloc(c->naccounts + 1, sizeof(*v))) == NULL) {
		L->oom = true;
		return;
	}
	for (i = 0; i < c->naccounts; i++)
		if (c->accounts[i].name != NULL)
			v[n++] = &c->accounts[i];
	qsort(v, n, sizeof(*v), cmp_by_name);
	for (i = 1; i < n; i++) {
		if (strcmp(v[i - 1]->name, v[i]->name) != 0)
			continue;
		snprintf(g.ctx, sizeof(g.ctx), "account \"%s\": ", v[i]->name);
		fail(L, v[i]->line, &g,
		    "duplicate name, already used by the account at line %d",
		    v[i - 1]->line);
		/* Point every later duplicate at the first one. */
		v[i] = v[i - 1];
	}
	free(v);
}

/* @include would put settings out of reach of the permission check. */
static void
refuse_includes(struct loader *L)
{
	const char *p;
	size_t i;

	for (i = 0; i < L->nlines; i++) {
		p = L->buf + L->lines[i];
		p += strspn(p, " \t");
		if (strncmp(p, "@include", 8) == 0)
			fail(L, (int)i + 1, NULL,
			    "@include is not supported: keep the configuration in one file");
	}
}

/*
 * state_dir left out: the directory systemd made for the unit, or the
 * user's own, or the system's (confpath.h).
 */
static void
default_state_dir(struct loader *L, struct conf *c)
{
	struct confpath_env env;
	char buf[PATH_MAX];

	confpath_env_get(&env);
	c->state_dir_from = confpath_state_dir(&env, buf, sizeof(buf));
	c->state_dir = xstrdup(L, buf);
}

static void
read_top(struct loader *L, struct conf *c, config_setting_t *root)
{
	struct group top = {0}, defs = {0};
	const config_setting_t *list;
	config_setting_t *e;
	unsigned i, n;
	size_t k;

	refuse_includes(L);
	read_group(L, &top, W_TOP, root);
	for (k = 0; k < NKEYS; k++)
		if ((keys[k].where & W_TOP) != 0 &&
		    ops[keys[k].type].store != NULL)
			ops[keys[k].type].store(L, &keys[k],
			    top.v[k].line != 0 && !top.v[k].bad ? &top.v[k]
								: NULL,
			    (char *)c + keys[k].conf_off);
	if (top.v[K_STATE_DIR].line == 0)
		default_state_dir(L, c);
	else
		c->state_dir_from = "state_dir in the file";
	strcpy(defs.ctx, "defaults: ");
	if (top.v[K_DEFAULTS].line != 0 && !top.v[K_DEFAULTS].bad)
		read_group(L, &defs, W_DEFAULT, top.v[K_DEFAULTS].set);
	if (top.v[K_ACCOUNTS].line == 0)
		fail(L, 1, NULL,
		    "no accounts: add accounts = ( { name = \"...\"; ... } );");
	if (top.v[K_ACCOUNTS].line == 0 || top.v[K_ACCOUNTS].bad)
		return;
	list = top.v[K_ACCOUNTS].set;
	n = (unsigned)config_setting_length(list);
	if ((c->accounts = calloc(n, sizeof(*c->accounts))) == NULL) {
		L->oom = true;
		return;
	}
	for (i = 0; i < n; i++) {
		e = config_setting_get_elem(list, i);
		if (config_setting_source_file(e) != NULL)
			continue;
		if (config_setting_type(e) != CONFIG_TYPE_GROUP)
			fail(L, line_of(e), NULL,
			    "accounts: element %u is not a group { ... }",
			    i + 1);
		else
			read_account(L, c, &defs, &top, e, i);
	}
	check_unique(L, c);
}

/*
 * Makes room for more of the file. Not realloc(): it may move the text and
 * leave the old copy, inline passwords and all, in freed memory.
 */
static int
grow_buf(struct loader *L, size_t first)
{
	size_t cap = L->cap == 0 ? first : L->cap * 2;
	char *p;

	if (L->cap >= CONF_FILE_MAX) {
		errno = EFBIG;
		return -1;
	}
	if ((p = malloc(cap)) == NULL)
		return -1;
	if (L->buf != NULL) {
		memcpy(p, L->buf, L->len);
		explicit_bzero(L->buf, L->cap);
		free(L->buf);
	}
	L->buf = p;
	L->cap = cap;
	return 0;
}

/* Reads the whole file, so that literals can be looked at (source_int). */
static int
read_file(struct loader *L)
{
	struct stat st;
	size_t i, n = 1, first;
	ssize_t r;
	int fd, saved;

	if ((fd = open(L->path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1)
		return -1;
	if (fstat(fd, &st) == -1)
		goto fail;
	L->mode = st.st_mode;
	/* A regular file is read in one go: copies of a large one add up. */
	first = S_ISREG(st.st_mode) && st.st_size + 2 <= CONF_FILE_MAX
		    ? (size_t)st.st_size + 2
		    : 8192;
	for (;;) {
		if (L->len + 1 >= L->cap && grow_buf(L, first) == -1)
			goto fail;
		r = read(fd, L->buf + L->len, L->cap - 1 - L->len);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1)
			goto fail;
		if (r == 0)
			break;
		L->len += (size_t)r;
	}
	close(fd);
	L->buf[L->len] = '\0';
	for (i = 0; i < L->len; i++)
		n += L->buf[i] == '\n';
	if ((L->lines = calloc(n, sizeof(*L->lines))) == NULL)
		return -1;
	L->nlines = 1;
	for (i = 0; i < L->len; i++)
		if (L->buf[i] == '\n')
			L->lines[L->nlines++] = i + 1;
	return 0;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

/*
 * Wipes the values of secret keys in libconfig's tree before
 * config_destroy() frees them. libconfig hands them out as const, but
 * they are its own heap copies, and nothing reads them after this.
 * libconfig's scanner also copied the text while parsing and freed that
 * unwiped; that copy is out of our reach.
 */
static void
wipe_secrets(config_setting_t *s)
{
	config_setting_t *e;
	const char *name;
	enum key_id id;
	char *v;
	int i, n;

	if (config_setting_is_aggregate(s)) {
		n = config_setting_length(s);
		for (i = 0; i < n; i++)
			if ((e = config_setting_get_elem(s, (unsigned)i)) !=
			    NULL)
				wipe_secrets(e);
		return;
	}
	if (config_setting_type(s) != CONFIG_TYPE_STRING ||
	    (name = config_setting_name(s)) == NULL ||
	    (id = key_find(name, ~0u)) == NKEYS || !keys[id].secret)
		return;
	if ((v = (char *)config_setting_get_string(s)) != NULL)
		explicit_bzero(v, strlen(v));
}

static void
report_one(conf_report_fn report, void *arg, const char *msg)
{
	if (report != NULL)
		report(arg, msg);
	else
		fprintf(stderr, "%s\n", msg);
}

static int
cmp_errors(const void *x, const void *y)
{
	const struct error *a = x, *b = y;

	if (a->line != b->line)
		return (a->line > b->line) - (a->line < b->line);
	return (a->seq > b->seq) - (a->seq < b->seq);
}

/* Reports what went wrong, in file order; true if anything did. */
static bool
report_errors(struct loader *L, conf_report_fn report, void *arg)
{
	char msg[MSG_MAX];
	size_t i;

	if (L->oom) {
		snprintf(msg, sizeof(msg), "%s: out of memory", L->path);
		report_one(report, arg, msg);
		return true;
	}
	if (L->nerrors > 0)
		qsort(L->errors, L->nerrors, sizeof(*L->errors), cmp_errors);
	for (i = 0; i < L->nerrors; i++)
		report_one(report, arg, L->errors[i].msg);
	return L->nerrors > 0;
}

/* libconfig would stop at a NUL and ignore the rest without a word. */
static bool
has_nul(struct loader *L, conf_report_fn report, void *arg)
{
	char msg[MSG_MAX];
	size_t i;
	int line = 1;

	for (i = 0; i < L->len && L->buf[i] != '\0'; i++)
		line += L->buf[i] == '\n';
	if (i == L->len)
		return false;
	snprintf(
	    msg, sizeof(msg), "%s:%d: NUL byte in the file", L->path, line);
	report_one(report, arg, msg);
	return true;
}

struct conf *
conf_load(const char *path, conf_report_fn report, void *arg)
{
	struct loader L = {.path = path};
	struct conf *c = NULL;
	char msg[MSG_MAX];
	config_t cfg;
	size_t i;

	if (read_file(&L) == -1) {
		snprintf(msg, sizeof(msg), "%s: cannot read: %s", path,
		    strerror(errno));
		report_one(report, arg, msg);
		goto out;
	}
	if (has_nul(&L, report, arg))
		goto out;
	if ((L.home = getenv("HOME")) != NULL && L.home[0] == '\0')
		L.home = NULL;
	config_init(&cfg);
	if (!config_read_string(&cfg, L.buf)) {
		snprintf(msg, sizeof(msg), "%s:%d: %s",
		    config_error_file(&cfg) != NULL ? config_error_file(&cfg)
						    : path,
		    config_error_line(&cfg), config_error_text(&cfg));
		report_one(report, arg, msg);
		wipe_secrets(config_root_setting(&cfg));
		config_destroy(&cfg);
		goto out;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->pool = L.pool = pool_new()) == NULL ||
	    (c->path = pool_strdup(c->pool, path)) == NULL)
		L.oom = true;
	else
		read_top(&L, c, config_root_setting(&cfg));
	wipe_secrets(config_root_setting(&cfg));
	config_destroy(&cfg);
	if (c != NULL && c->pool != NULL)
		pool_seal(c->pool);
	if (report_errors(&L, report, arg))
		conf_free(&c);
out:
	for (i = 0; i < L.nerrors; i++)
		free(L.errors[i].msg);
	free(L.errors);
	free(L.lines);
	/* The text holds any inline password: not left in freed memory. */
	if (L.buf != NULL)
		explicit_bzero(L.buf, L.cap);
	free(L.buf);
	return c;
}

void
conf_free(struct conf **cp)
{
	struct conf *c;

	if (cp == NULL || (c = *cp) == NULL)
		return;
	/* Every string, inline passwords too: wiped with the pool. */
	pool_free(&c->pool);
	free(c->accounts);
	free(c);
	*cp = NULL;
}

void
conf_keep_all(struct conf *c)
{
	size_t i;

	for (i = 0; i < c->naccounts; i++) {
		c->accounts[i].keep = true;
		c->accounts[i].delete_after_days = 0;
	}
}

const struct account *
conf_account(const struct conf *c, const char *name)
{
	size_t i;

	for (i = 0; i < c->naccounts; i++)
		if (c->accounts[i].name != NULL &&
		    strcmp(c->accounts[i].name, name) == 0)
			return &c->accounts[i];
	return NULL;
}

static const char *
enum_name(const char *const *names, size_t n, int v)
{
	if (v < 0 || (size_t)v >= n - 1)
		return "?";
	return names[v];
}

const char *
conf_tls_name(enum conf_tls tls)
{
	return enum_name(
	    tls_names, sizeof(tls_names) / sizeof(*tls_names), (int)tls);
}

const char *
conf_auth_name(enum conf_auth auth)
{
	return enum_name(
	    auth_names, sizeof(auth_names) / sizeof(*auth_names), (int)auth);
}

const char *
conf_pipelining_name(enum conf_pipelining p)
{
	return enum_name(pipelining_names,
	    sizeof(pipelining_names) / sizeof(*pipelining_names), (int)p);
}
