/*
 * testhook: crash points for the crash test. Built only with the meson
 * option test_hooks; otherwise every hook compiles to nothing.
 *
 * With POPFETCHD_CRASH_AT=K in the environment, the K-th crash point the
 * process passes kills it with SIGKILL, after writing where to stderr.
 */
#ifndef POPFETCHD_TESTHOOK_H
#define POPFETCHD_TESTHOOK_H

#ifdef POPFETCHD_TEST_HOOKS
void testhook_crash_point(const char *where);
#define TESTHOOK_CRASH_POINT(where) testhook_crash_point(where)
#else
#define TESTHOOK_CRASH_POINT(where) ((void)0)
#endif

#endif
