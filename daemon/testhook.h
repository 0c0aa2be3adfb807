/*
 * testhook: crash points for the crash test. Built only with the meson
 * option test_hooks; otherwise every hook compiles to nothing.
 *
 * With POPFETCHD_CRASH_AT=K in the environment, the K-th crash point the
 * process passes kills it with SIGKILL, after writing where to stderr.
 * POPFETCHD_NOW sets the clock the delivery policy reads (days-based
 * rules are tested without waiting days).
 *
 * With POPFETCHD_FAIL=NAME (a fail point's name, as written at the call),
 * every pass of that fail point fails with EIO instead of doing its work:
 * a disk that has turned read-only or full, without needing one. With
 * POPFETCHD_FAIL=NAME@K only the K-th pass fails (a one-off error).
 *
 * With POPFETCHD_HOLD=NAME, the thread that passes hold point NAME
 * writes so to stderr and never returns: a disk that stops answering
 * (a dead USB disk, a hard NFS mount) in the middle of an fsync. With
 * POPFETCHD_HOLD=NAME@ACCOUNT, only when it works for that account
 * (NAME@PREFIX*: for every account whose name starts with PREFIX).
 * With POPFETCHD_HOLD_RELEASE=FIFO too, a hold returns once it has read a
 * byte from that named pipe (a disk that is slow, not dead): the test
 * writes a byte for each hold it releases.
 *
 * POPFETCHD_RESOLV_CONF and POPFETCHD_HOSTS_FILE give the resolver other
 * files than the system's (names the tests make up, name servers they
 * run).
 */
#ifndef POPFETCHD_TESTHOOK_H
#define POPFETCHD_TESTHOOK_H

#include <stdbool.h>
#include <time.h>

#ifdef POPFETCHD_TEST_HOOKS
void testhook_crash_point(const char *where);
/* The clock, or POPFETCHD_NOW (seconds since the epoch) when set. */
time_t testhook_now(void);
/* True (errno set to EIO) when fail point WHERE is to fail this time. */
bool testhook_fail(const char *where);
/* Never returns when hold point WHERE (for ACCOUNT) is POPFETCHD_HOLD. */
void testhook_hold(const char *where, const char *account);
/* The environment variable NAME, or NULL. */
const char *testhook_env(const char *name);
/*
 * Forgets how often the crash and fail points were passed, and reads
 * POPFETCHD_CRASH_AT afresh: for a unit test that runs several cases in
 * one process.
 */
void testhook_reset(void);
#define TESTHOOK_CRASH_POINT(where)   testhook_crash_point(where)
#define TESTHOOK_NOW()		      testhook_now()
#define TESTHOOK_FAIL(where)	      testhook_fail(where)
#define TESTHOOK_ENV(name)	      testhook_env(name)
#define TESTHOOK_HOLD(where, account) testhook_hold(where, account)
#else
#define TESTHOOK_CRASH_POINT(where)   ((void)0)
#define TESTHOOK_NOW()		      time(NULL)
#define TESTHOOK_FAIL(where)	      false
#define TESTHOOK_ENV(name)	      ((const char *)NULL)
#define TESTHOOK_HOLD(where, account) ((void)0)
#endif

#endif
