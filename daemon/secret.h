/*
 * secret: where an account's password (or OAuth token) comes from: inline
 * in the configuration, a file, a systemd credential, the output of a
 * command, or for an account with an oauth2 group the access token that
 * oauth2.h keeps fresh (its client secret read from the same kinds of
 * source). Fetched asynchronously on the caller's libevent loop, so that
 * a slow password_command or token endpoint never stalls the other
 * accounts. Knows nothing of POP3.
 */
#ifndef POPFETCHD_SECRET_H
#define POPFETCHD_SECRET_H

#include <stddef.h>

/*
 * A secret is shorter than this (strlen(secret) < SECRET_MAX), so a buffer
 * of SECRET_MAX bytes always holds one with its NUL. Large enough for the
 * OAuth access tokens of the big providers, which run to a few KiB.
 */
#define SECRET_MAX 16384

struct event_base;
struct account;
struct secret_req;

/* Why a secret could not be had, for the caller's policy. */
enum secret_fail {
	SECRET_FAIL_NONE,
	/* A source that cannot work as set up (no such file, bad mode). */
	SECRET_FAIL_CONFIG,
	/* May work later: a command failing, a token endpoint down. */
	SECRET_FAIL_TEMP,
	/* Refused for good: an OAuth2 grant revoked, or never given. */
	SECRET_FAIL_AUTH,
	/* A token could not be stored (disk full, read-only). */
	SECRET_FAIL_LOCAL,
};

/*
 * The one answer to a request: SECRET (NUL-terminated, without its line
 * ending) on success, else NULL, FAIL and ERR, a readable reason that
 * never contains the secret. Both strings belong to secret.c and are valid only
 * during the call; SECRET is wiped as soon as the callback returns, so the
 * callee copies what it needs (and wipes its copy when done).
 *
 * When the callback runs the request is over: the caller forgets its
 * pointer to it. Calling secret_cancel() on it from inside the callback
 * (say, from a teardown path) is allowed and does nothing.
 */
typedef void (*secret_cb)(
    void *arg, const char *secret, enum secret_fail fail, const char *err);

/*
 * Starts fetching ACCOUNT's secret, from whichever source it names:
 *
 * - password: the inline value (conf.c already refused a configuration
 *   file readable by others).
 * - password_file: the file's first line. Refused if the file is not a
 *   regular file or is accessible by group or others.
 * - password_credential: $CREDENTIALS_DIRECTORY/NAME (systemd
 *   LoadCredential=), with the checks of password_file.
 * - password_command: the first line of the output of /bin/sh -c COMMAND,
 *   run in its own process group with stdin from /dev/null and no other
 *   descriptor of ours. It must exit with status 0 within the account's
 *   timeout (else its whole process group is killed) and print at most
 *   64 KiB. The first 1 KiB of its stderr is logged as a warning.
 * - an oauth2 group: the client secret from client_secret,
 *   client_secret_file, client_secret_command or client_secret_credential
 *   (as above; none is fine), then the access token from oauth2_get().
 *
 * Failures of a command are SECRET_FAIL_TEMP, of the other sources
 * SECRET_FAIL_CONFIG; oauth2's are passed on (a refused grant is
 * SECRET_FAIL_AUTH, an unreachable endpoint SECRET_FAIL_TEMP).
 *
 * CB runs exactly once, always on a later loop turn, never from inside
 * this call, unless the request is cancelled first. ACCOUNT is read during
 * this call only, except an oauth2 account, which must stay valid until
 * the answer (a session's account does). Returns NULL only when out of
 * memory (no callback then).
 */
struct secret_req *secret_fetch(struct event_base *base,
    const struct account *account, secret_cb cb, void *arg);

/*
 * As secret_fetch(), for the client secret of ACCOUNT's oauth2 group
 * only (for --authorize): "" when the account has none.
 */
struct secret_req *secret_fetch_client(struct event_base *base,
    const struct account *account, secret_cb cb, void *arg);

/*
 * Abandons *REQ if it is still running: no callback follows, a running
 * command's process group is killed. Sets *REQ to NULL; a NULL *REQ is
 * fine. A killed command is reaped by an event on the base a moment later,
 * without blocking, so keep running the loop; event_base_dispatch() returns
 * only once it is done.
 */
void secret_cancel(struct secret_req **req);

/*
 * Requests answered or cancelled whose killed command has not been reaped
 * yet. Before freeing the event loop, run it until this is 0 (a killed
 * child is reaped within moments), or the child stays a zombie.
 */
size_t secret_detached(void);

#endif
