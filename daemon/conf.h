/*
 * conf: the configuration file (libconfig syntax) turned into a validated,
 * immutable struct conf. Every key is declared as data in conf.c (type,
 * bounds, default); every error is reported with file:line, all of them.
 */
#ifndef POPFETCHD_CONF_H
#define POPFETCHD_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONF_DEFAULT_PATH "/etc/popfetchd/popfetchd.conf"
#define CONF_NAME_MAX	  64

enum conf_tls {
	CONF_TLS_IMPLICIT,
	CONF_TLS_STARTTLS,
	CONF_TLS_NONE,
};

enum conf_auth {
	CONF_AUTH_AUTO,
	CONF_AUTH_PLAIN,
	CONF_AUTH_LOGIN,
	CONF_AUTH_XOAUTH2,
	CONF_AUTH_OAUTHBEARER,
	CONF_AUTH_EXTERNAL,
	CONF_AUTH_APOP,
	CONF_AUTH_USER,
	CONF_AUTH_RPOP,
	CONF_AUTH_SCRAM_SHA_1,
	CONF_AUTH_SCRAM_SHA_1_PLUS,
	CONF_AUTH_SCRAM_SHA_256,
	CONF_AUTH_SCRAM_SHA_256_PLUS,
};

/*
 * The channel binding type of the -PLUS mechanisms. auto: tls-exporter
 * on TLS 1.3 (RFC 9266), tls-unique on TLS 1.2. tls-unique also on TLS
 * 1.3, where it is undefined, is what some servers (Cyrus 3.6) compute.
 */
enum conf_cb {
	CONF_CB_AUTO,
	CONF_CB_TLS_EXPORTER,
	CONF_CB_TLS_UNIQUE,
};

/* RFC 6856: whether to ask for UTF-8 mode when the server offers it. */
enum conf_utf8 {
	CONF_UTF8_AUTO,
	CONF_UTF8_OFF,
};

enum conf_pipelining {
	CONF_PIPELINING_AUTO,
	CONF_PIPELINING_ON,
	CONF_PIPELINING_OFF,
};

/* How delivered messages are made durable (see maildir.h). */
enum conf_sync {
	CONF_SYNC_BATCH, /* one syncfs(2) per batch of messages */
	CONF_SYNC_FILE,	 /* an fsync(2) per message */
};

/*
 * OAuth2 (oauth2.h): where the account's access token comes from. Set
 * when the account (or defaults) has an oauth2 group; the token then
 * replaces the password.
 */
struct conf_oauth2 {
	bool on;
	char *provider; /* "microsoft", "gmail", or NULL */
	char *client_id;
	/* At most one of these four (Google needs one, Microsoft does not). */
	char *client_secret;
	char *client_secret_file;
	char *client_secret_command;
	char *client_secret_credential;
	char *token_endpoint;	      /* NULL: the provider's */
	char *device_endpoint;	      /* NULL: the provider's, if any */
	char *authorization_endpoint; /* NULL: the provider's */
	char *scope;		      /* NULL: the provider's */
	char *flow;		      /* "device", "loopback", or NULL */
	char *token_file;	      /* default: STATE_DIR/NAME.oauth2 */
	char *ca_file; /* for the endpoints; NULL: system store */
};

/* Where an account's mail goes. */
enum conf_target {
	CONF_TARGET_MAILDIR, /* maildir (and folder) */
	CONF_TARGET_LMTP,    /* an LMTP server: lmtp, recipient */
	CONF_TARGET_MDA,     /* a command per message: mda, mda_shell */
};

struct pool;

/*
 * The pointers first, then the 4-byte fields, then the flags: no padding
 * between them, as a configuration may hold 100,000 of these.
 */
struct account {
	char *name; /* unique, [A-Za-z0-9._-], at most CONF_NAME_MAX */
	char *host;
	char *tls_min_version; /* "TLSv1.2" (default) or "TLSv1.3" */
	char *ca_file;	       /* NULL: system store */
	char *ca_path;
	char **tls_pins; /* "sha256/BASE64", NULL-terminated, may be empty */
	size_t ntls_pins;
	char *client_cert;
	char *client_key;

	char *user;
	/* At most one of these four is set (none only for auth = external). */
	char *password;
	char *password_file;
	char *password_command;
	char *password_credential;
	struct conf_oauth2 oauth2;

	char *maildir;
	char *folder;	 /* a Maildir++ folder in it (folder.h), or NULL */
	char *lmtp;	 /* socket path or host:port, with target = "lmtp" */
	char *recipient; /* LMTP's RCPT TO, with target = "lmtp"; MDA's %r */
	char *mda;	 /* the command, with target = "mda" (target_mda.h) */
	uint64_t max_message_size; /* bytes; 0 = no limit */
	const char *file;	   /* borrowed from struct conf */

	unsigned port; /* 995 for implicit TLS, else 110, unless set */
	enum conf_tls tls;
	enum conf_auth auth;
	enum conf_cb channel_binding;
	enum conf_utf8 utf8;
	enum conf_target target;
	unsigned delete_after_days; /* with keep; 0 = never */
	enum conf_pipelining pipelining;
	enum conf_sync sync;
	unsigned poll_interval; /* seconds */
	unsigned timeout;	/* seconds, connect and read */
	int line;		/* where the account's group starts */

	bool allow_plaintext; /* credentials may cross without TLS */
	bool tls_verify;      /* default true; false is a logged opt-out */
	bool tls_resume;      /* resume the last poll's session (tlscache.h) */
	bool mda_shell;	      /* run it with /bin/sh -c */
	bool keep;
	bool received_header;
};

/*
 * The strings of a conf loaded by conf_load() live in its pool, where
 * equal strings are one copy shared by every account that has them:
 * read them, never write to them or free them.
 */
struct conf {
	struct pool *pool; /* its strings; NULL in one built by hand */
	char *path;
	char *state_dir;
	/* Where state_dir came from, for --check-config (static text). */
	const char *state_dir_from;
	char *metrics_file; /* Prometheus text file; NULL: none */
	unsigned poll_interval;
	unsigned max_connections;
	unsigned max_per_host;
	unsigned timeout;
	struct account *accounts;
	size_t naccounts;
};

/* Receives one complete error line ("FILE:LINE: message"). */
typedef void (*conf_report_fn)(void *arg, const char *msg);

/*
 * Reads and validates PATH. On success returns a conf the caller frees with
 * conf_free(). On failure calls REPORT once per error found (all of them,
 * in file order) and returns NULL. REPORT may be NULL (errors go to
 * stderr).
 */
struct conf *conf_load(const char *path, conf_report_fn report, void *arg);

/* Frees CONF and wipes its strings (inline secrets among them). */
void conf_free(struct conf **conf);

/*
 * -k: every account of CONF keeps its mail on the server, whatever its
 * keep and delete_after_days say (a safe first run).
 */
void conf_keep_all(struct conf *conf);

/* The account called NAME, or NULL. */
const struct account *conf_account(const struct conf *conf, const char *name);

/* Names of the enum values, as written in the file. */
const char *conf_tls_name(enum conf_tls tls);
const char *conf_auth_name(enum conf_auth auth);
const char *conf_pipelining_name(enum conf_pipelining p);

#endif
