/*
 * secret: where an account's password (or OAuth token) comes from: inline
 * in the configuration, a file, a systemd credential, or the output of a
 * command. Fetched asynchronously on the caller's libevent loop, so that a
 * slow password_command never stalls the other accounts. Knows nothing of
 * POP3.
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

/*
 * The one answer to a request: SECRET (NUL-terminated, without its line
 * ending) on success, else NULL and ERR, a readable reason that never
 * contains the secret. Both strings belong to secret.c and are valid only
 * during the call; SECRET is wiped as soon as the callback returns, so the
 * callee copies what it needs (and wipes its copy when done).
 *
 * When the callback runs the request is over: the caller forgets its
 * pointer to it. Calling secret_cancel() on it from inside the callback
 * (say, from a teardown path) is allowed and does nothing.
 */
typedef void (*secret_cb)(void *arg, const char *secret, const char *err);

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
 *
 * CB runs exactly once, always on a later loop turn, never from inside
 * this call, unless the request is cancelled first. ACCOUNT is read during
 * this call only. Returns NULL only when out of memory (no callback then).
 */
struct secret_req *secret_fetch(struct event_base *base,
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
