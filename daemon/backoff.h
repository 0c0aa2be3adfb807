/*
 * backoff: what the scheduler does about how a poll ended, as pure
 * functions: the delay until an account's next poll (by error class and
 * the number of polls in a row that ended so), the server's LOGIN-DELAY
 * as a floor under it, which class is the most serious, and the exit
 * status --once reports for it. No clock and no randomness: the caller
 * passes the time and a random draw, so the same input gives the same
 * answer.
 */
#ifndef POPFETCHD_BACKOFF_H
#define POPFETCHD_BACKOFF_H

#include <stdbool.h>

#include "sclass.h"

/*
 * First polls (at start, or of an account a reload adds) are spread over
 * this many seconds at most, so that many accounts do not start together.
 */
#define BACKOFF_SPREAD_MAX 30
/*
 * Network, timeout and protocol errors: the delay doubles from
 * poll_interval up to this (or poll_interval, if that is longer).
 */
#define BACKOFF_MAX 3600
/*
 * Authentication refused: retrying soon would not help and may get the
 * account locked by the provider. First retry after this (or after
 * poll_interval, if longer), doubling up to BACKOFF_AUTH_MAX.
 */
#define BACKOFF_AUTH_FIRST 3600
#define BACKOFF_AUTH_MAX   (6 * 3600)
/* Every delay is multiplied by a factor in [1 - J, 1 + J]. */
#define BACKOFF_JITTER 0.1

/*
 * SECS moved by up to BACKOFF_JITTER of itself: R (a random draw in
 * [0, 1]) of 0 gives the least, 0.5 SECS itself, 1 the most.
 */
double backoff_jitter(double secs, double r);

/*
 * When an account polled every INTERVAL seconds polls first: R (in
 * [0, 1]) of INTERVAL or BACKOFF_SPREAD_MAX seconds, whichever is less.
 */
double backoff_first(unsigned interval, double r);

/*
 * Seconds until the next poll of an account polled every INTERVAL
 * seconds, after a poll that ended in CLS, the STREAK-th in a row to end
 * in CLS (0 counts as 1); or -1: not until a reload. RELOADED: the
 * account's settings changed during the poll, so a refused password or a
 * configuration error is tried again soon (as backoff_first()). R (in
 * [0, 1]) is the random draw for the jitter or the spread.
 *   SC_OK, SC_BUSY (the server asked for later), SC_LOCAL (each poll checks
 *   whether space is back): INTERVAL.
 *   SC_NET, SC_PROTO: INTERVAL doubled per failure after the first, up to
 *   BACKOFF_MAX (or INTERVAL, if longer).
 *   SC_AUTH: BACKOFF_AUTH_FIRST (or INTERVAL, if longer), doubled per
 *   failure after the first, up to BACKOFF_AUTH_MAX (or INTERVAL).
 *   SC_CONFIG: -1.
 */
double backoff_next(enum session_class cls, unsigned interval, unsigned streak,
    bool reloaded, double r);

/*
 * RFC 2449 LOGIN-DELAY: seconds from NOW until the server allows the next
 * login of an account whose last poll started at STARTED (0: never), when
 * the server asked for DELAY seconds between logins (0 or less: it did
 * not); 0 if it may log in now. The server refuses, or may lock the
 * account after, logins closer together, whatever the cause of the poll.
 */
double backoff_login_wait(long delay, double started, double now);

/* NEXT (seconds, or -1: not scheduled), but no earlier than WAIT. */
double backoff_not_before(double next, double wait);

/*
 * The more serious of two classes, for the exit status of a run: A unless
 * B is more serious. From least to most: SC_OK; SC_NET, SC_BUSY and
 * SC_PROTO (temporary); SC_AUTH; SC_LOCAL; SC_CONFIG.
 */
enum session_class backoff_worst(enum session_class a, enum session_class b);

/*
 * The exit status (sysexits.h) a --once run reports for CLS: EX_OK,
 * EX_TEMPFAIL (75) for SC_NET, SC_BUSY and SC_PROTO, EX_NOPERM (77) for
 * SC_AUTH, EX_IOERR (74) for SC_LOCAL, EX_CONFIG (78) for SC_CONFIG.
 */
int backoff_exit_status(enum session_class cls);

/* CLS as the word logs use ("ok", "network", ...); "?" if out of range. */
const char *backoff_class_name(enum session_class cls);

#endif
