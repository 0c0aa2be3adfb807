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

/* Where an account's mail goes. */
enum conf_target {
	CONF_TARGET_MAILDIR, /* maildir (and folder) */
	CONF_TARGET_LMTP,    /* an LMTP server: lmtp, recipient */
};

struct account {
	char *name; /* unique, [A-Za-z0-9._-], at most CONF_NAME_MAX */
	char *host;
	unsigned port; /* 995 for implicit TLS, else 110, unless set */
	enum conf_tls tls;
	bool allow_plaintext;  /* credentials may cross without TLS */
	bool tls_verify;       /* default true; false is a logged opt-out */
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
	enum conf_auth auth;

	char *maildir;
	char *folder; /* a Maildir++ folder in it (folder.h), or NULL */
	enum conf_target target;
	char *lmtp;	 /* socket path or host:port, with target = "lmtp" */
	char *recipient; /* LMTP's RCPT TO, with target = "lmtp" */
	bool keep;
	unsigned delete_after_days; /* with keep; 0 = never */
	uint64_t max_message_size;  /* bytes; 0 = no limit */
	bool received_header;
	enum conf_pipelining pipelining;
	enum conf_sync sync;
	unsigned poll_interval; /* seconds */
	unsigned timeout;	/* seconds, connect and read */

	const char *file; /* borrowed from struct conf */
	int line;	  /* where the account's group starts */
};

struct conf {
	char *path;
	char *state_dir;
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

void conf_free(struct conf **conf);

/* The account called NAME, or NULL. */
const struct account *conf_account(const struct conf *conf, const char *name);

/* Names of the enum values, as written in the file. */
const char *conf_tls_name(enum conf_tls tls);
const char *conf_auth_name(enum conf_auth auth);
const char *conf_pipelining_name(enum conf_pipelining p);

#endif
