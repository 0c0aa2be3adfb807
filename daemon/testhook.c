/* Crash points for the crash test (test builds only). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testhook.h"

#ifdef POPFETCHD_TEST_HOOKS
/* Crash point to kill at (-1: not read yet), crash and fail points passed. */
static long at = -1, crash_passed;
static unsigned long fail_passed;

void
testhook_reset(void)
{
	at = -1;
	crash_passed = 0;
	fail_passed = 0;
}

void
testhook_crash_point(const char *where)
{
	const char *env;

	if (at == -1)
		at = (env = getenv("POPFETCHD_CRASH_AT")) != NULL ? atol(env)
								  : 0;
	/* Passed on the loop and on worker threads alike. */
	if (at > 0 &&
	    __atomic_add_fetch(&crash_passed, 1, __ATOMIC_SEQ_CST) == at) {
		fprintf(stderr, "testhook: crash point %ld: %s\n", crash_passed,
		    where);
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
	const char *env = getenv("POPFETCHD_FAIL"), *nth;
	size_t len;

	if (env == NULL)
		return false;
	nth = strchr(env, '@');
	len = nth != NULL ? (size_t)(nth - env) : strlen(env);
	if (strlen(where) != len || strncmp(env, where, len) != 0)
		return false;
	if (nth != NULL && __atomic_add_fetch(&fail_passed, 1,
			       __ATOMIC_SEQ_CST) != strtoul(nth + 1, NULL, 10))
		return false;
	fprintf(stderr, "testhook: fail point: %s\n", where);
	errno = EIO;
	return true;
}

/* Whether PATTERN names ACCOUNT: equal, or "PREFIX*" and it starts so. */
static bool
names(const char *pattern, const char *account)
{
	size_t len = strlen(pattern);

	if (len > 0 && pattern[len - 1] == '*')
		return strncmp(pattern, account, len - 1) == 0;
	return strcmp(pattern, account) == 0;
}

/*
 * With POPFETCHD_HOLD_RELEASE=FIFO, a hold ends when a byte can be read
 * from that named pipe: the test writes one per hold it lets go.
 */
static bool
hold_released(void)
{
	const char *fifo = getenv("POPFETCHD_HOLD_RELEASE");
	char c;
	int fd;
	ssize_t n;

	if (fifo == NULL || (fd = open(fifo, O_RDONLY | O_CLOEXEC)) == -1)
		return false;
	while ((n = read(fd, &c, 1)) == -1 && errno == EINTR)
		;
	close(fd);
	if (n == 1)
		fprintf(stderr, "testhook: released\n");
	return n == 1;
}

void
testhook_hold(const char *where, const char *account)
{
	const char *env = getenv("POPFETCHD_HOLD"), *who;
	size_t len;

	if (env == NULL)
		return;
	who = strchr(env, '@');
	len = who != NULL ? (size_t)(who - env) : strlen(env);
	if (strlen(where) != len || strncmp(env, where, len) != 0 ||
	    (who != NULL && (account == NULL || !names(who + 1, account))))
		return;
	fprintf(stderr, "testhook: hold: %s\n", where);
	fflush(stderr);
	if (hold_released())
		return;
	for (;;)
		pause();
}

const char *
testhook_env(const char *name)
{
	return getenv(name);
}
#endif
