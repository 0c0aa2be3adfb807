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
#define CONV_KEYS(X)                                 \
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

enum conv_key {
#define X(id, name) id,
	CONV_KEYS(X)
#undef X
	    CK_N
};

/*
 * Notes on one account: the old file's options without an equivalent.
 * A file with more than this has more than any tool documents; the rest
 * are counted in one line.
 */
#define CONV_NOTES_MAX 48
#define CONV_NOTE_LEN  512
/* A value as written (a quoted path, a command): longer is cut. */
#define CONV_VAL_LEN 512
/* Accounts in one file. */
#define CONV_ACCTS_MAX 256

struct conv_acct {
	char name[CONF_NAME_MAX + 1];
	char val[CK_N][CONV_VAL_LEN]; /* libconfig text; "" if not set */
	char notes[CONV_NOTES_MAX][CONV_NOTE_LEN];
	size_t nnotes, dropped;
	int line;	   /* where the account starts */
	int password_line; /* of an inline password, 0 if none */
	bool mda;	   /* delivered through an MDA or into an mbox */
	int tls_on;	   /* mpop: 1 on, -1 off, 0 not said */
	int starttls;	   /* mpop: 1 on, -1 off, 0 not said */
	bool skip;	   /* not written */
	char uid_hint[CONV_VAL_LEN]; /* FORMAT:PATH for --import-uids */
};

struct conv {
	const char *path;
	FILE *err;
	struct conv_acct *accts; /* CONV_ACCTS_MAX of them */
	size_t n;
};

/* A new account of C, copied from FROM if not NULL; NULL if C is full. */
struct conv_acct *conv_acct_new(
    struct conv *c, const struct conv_acct *from, const char *name, int line);
void conv_acct_merge(struct conv_acct *a, const struct conv_acct *from);

void conv_complain(struct conv *c, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void conv_note(struct conv_acct *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void conv_unsupported(struct conv *c, struct conv_acct *a, int line,
    const char *what, const char *why);

/* snprintf() that may cut: what is cut is a name or a hint, not data. */
void conv_fmt(char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void conv_set_str(struct conv_acct *a, enum conv_key k, const char *s);
void conv_set_raw(struct conv_acct *a, enum conv_key k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void conv_set_bool(struct conv_acct *a, enum conv_key k, bool v);
void conv_set_path(struct conv *c, struct conv_acct *a, enum conv_key k,
    int line, const char *what, const char *path);
bool conv_number(struct conv *c, struct conv_acct *a, int line,
    const char *what, const char *s, unsigned long long min,
    unsigned long long max, unsigned long long *v);

/* The readers: fill C from TEXT (NUL-terminated). */
void conv_mpop(struct conv *c, const char *text);
void conv_fetchmail(struct conv *c, const char *text);
void conv_getmail(struct conv *c, const char *text);

#endif
