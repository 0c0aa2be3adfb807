/* Crash points for the crash test (test builds only). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testhook.h"

#ifdef POPFETCHD_TEST_HOOKS
void
testhook_crash_point(const char *where)
{
	static long at = -1, passed;
	const char *env;

	if (at == -1)
		at = (env = getenv("POPFETCHD_CRASH_AT")) != NULL ? atol(env)
								  : 0;
	if (at > 0 && ++passed == at) {
		fprintf(
		    stderr, "testhook: crash point %ld: %s\n", passed, where);
		fflush(stderr);
		kill(getpid(), SIGKILL);
	}
}

time_t
testhook_now(void)
{
	const char *env = getenv("POPFETCHD_NOW");

	return env != NULL ? (time_t)atoll(env) : time(NULL);
}

bool
testhook_fail(const char *where)
{
	static unsigned long passed;
	const char *env = getenv("POPFETCHD_FAIL"), *at;
	size_t len;

	if (env == NULL)
		return false;
	at = strchr(env, '@');
	len = at != NULL ? (size_t)(at - env) : strlen(env);
	if (strlen(where) != len || strncmp(env, where, len) != 0)
		return false;
	if (at != NULL && ++passed != strtoul(at + 1, NULL, 10))
		return false;
	fprintf(stderr, "testhook: fail point: %s\n", where);
	errno = EIO;
	return true;
}

const char *
testhook_env(const char *name)
{
	return getenv(name);
}
#endif
