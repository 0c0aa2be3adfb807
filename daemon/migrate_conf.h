/*
 * migrate_conf: what the readers of other tools' configurations
 * (migrate_mpop.c, migrate_fetchmail.c, migrate_getmail.c) share with the
 * writer (migrate_conf.c): an account being built, setting by setting,
 * with notes on what has no equivalent. Private to the migrate module.
 */
#ifndef POPFETCHD_MIGRATE_CONF_H
#define POPFETCHD_MIGRATE_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "conf.h"

/* The popfetchd keys a conversion may set, in the order written. */
#define MIGRATE_CONV_KEYS(X)                         \
	X(CK_HOST, "host")                           \
	X(CK_PORT, "port")                           \
	X(CK_TLS, "tls")                             \
	X(CK_ALLOW_PLAINTEXT, "allow_plaintext")     \
	X(CK_TLS_VERIFY, "tls_verify")               \
	X(CK_CA_FILE, "ca_file")                     \
	X(CK_CA_PATH, "ca_path")                     \
	X(CK_CLIENT_CERT, "client_cert")             \
	X(CK_CLIENT_KEY, "client_key")               \
	X(CK_USER, "user")                           \
	X(CK_PASSWORD_FILE, "password_file")         \
	X(CK_PASSWORD_COMMAND, "password_command")   \
	X(CK_AUTH, "auth")                           \
	X(CK_MAILDIR, "maildir")                     \
	X(CK_KEEP, "keep")                           \
	X(CK_DELETE_AFTER_DAYS, "delete_after_days") \
	X(CK_MAX_MESSAGE_SIZE, "max_message_size")   \
	X(CK_RECEIVED_HEADER, "received_header")     \
	X(CK_PIPELINING, "pipelining")               \
	X(CK_POLL_INTERVAL, "poll_interval")         \
	X(CK_TIMEOUT, "timeout")

enum migrate_conv_key {
#define X(id, name) id,
	MIGRATE_CONV_KEYS(X)
#undef X
	    CK_N
};

/*
 * Notes on one account: the old file's options without an equivalent.
 * A file with more than this has more than any tool documents; the rest
 * are counted in one line.
 */
#define MIGRATE_CONV_NOTES_MAX 48
#define MIGRATE_CONV_NOTE_LEN  512
/* A value as written (a quoted path, a command): longer is cut. */
#define MIGRATE_CONV_VAL_LEN 512
/* Accounts in one file. */
#define MIGRATE_CONV_ACCTS_MAX 256

struct migrate_conv_acct {
	char name[CONF_NAME_MAX + 1];
	char val[CK_N]
		[MIGRATE_CONV_VAL_LEN]; /* libconfig text; "" if not set */
	char notes[MIGRATE_CONV_NOTES_MAX][MIGRATE_CONV_NOTE_LEN];
	size_t nnotes, dropped;
	int line;	   /* where the account starts */
	int password_line; /* of an inline password, 0 if none */
	bool mda;	   /* delivered through an MDA or into an mbox */
	int tls_on;	   /* mpop: 1 on, -1 off, 0 not said */
	int starttls;	   /* mpop: 1 on, -1 off, 0 not said */
	bool skip;	   /* not written */
	char uid_hint[MIGRATE_CONV_VAL_LEN]; /* FORMAT:PATH for --import-uids */
};

struct migrate_conv {
	const char *path;
	FILE *err;
	struct migrate_conv_acct *accts; /* MIGRATE_CONV_ACCTS_MAX of them */
	size_t n;
};

/* A new account of C, copied from FROM if not NULL; NULL if C is full. */
struct migrate_conv_acct *migrate_conv_acct_new(struct migrate_conv *c,
    const struct migrate_conv_acct *from, const char *name, int line);
void migrate_conv_acct_merge(
    struct migrate_conv_acct *a, const struct migrate_conv_acct *from);

void migrate_conv_complain(struct migrate_conv *c, int line, const char *fmt,
    ...) __attribute__((format(printf, 3, 4)));
void migrate_conv_note(struct migrate_conv_acct *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void migrate_conv_unsupported(struct migrate_conv *c,
    struct migrate_conv_acct *a, int line, const char *what, const char *why);

/* snprintf() that may cut: what is cut is a name or a hint, not data. */
void migrate_conv_fmt(char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void migrate_conv_set_str(
    struct migrate_conv_acct *a, enum migrate_conv_key k, const char *s);
void migrate_conv_set_raw(struct migrate_conv_acct *a, enum migrate_conv_key k,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void migrate_conv_set_bool(
    struct migrate_conv_acct *a, enum migrate_conv_key k, bool v);
void migrate_conv_set_path(struct migrate_conv *c, struct migrate_conv_acct *a,
    enum migrate_conv_key k, int line, const char *what, const char *path);
bool migrate_conv_number(struct migrate_conv *c, struct migrate_conv_acct *a,
    int line, const char *what, const char *s, unsigned long long min,
    unsigned long long max, unsigned long long *v);

/* The readers: fill C from TEXT (NUL-terminated). */
void migrate_conv_mpop(struct migrate_conv *c, const char *text);
void migrate_conv_fetchmail(struct migrate_conv *c, const char *text);
void migrate_conv_getmail(struct migrate_conv *c, const char *text);

#endif
