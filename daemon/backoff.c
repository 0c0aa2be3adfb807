/*
 * The scheduler's decisions after a poll, kept apart from its timers so
 * that a table test can state them.
 */
#include <sysexits.h>

#include "backoff.h"

static const char *const class_names[] = {
    "ok", "network", "busy", "protocol", "auth", "local", "config"};
_Static_assert(sizeof(class_names) / sizeof(class_names[0]) == SC_COUNT,
    "class_names out of step");

double
backoff_jitter(double secs, double r)
{
	return secs * (1.0 - BACKOFF_JITTER + 2.0 * BACKOFF_JITTER * r);
}

double
backoff_first(unsigned interval, double r)
{
	unsigned spread =
	    interval < BACKOFF_SPREAD_MAX ? interval : BACKOFF_SPREAD_MAX;

	return spread * r;
}

/* FIRST doubled for each failure of a streak after the first, up to CAP. */
static double
doubled(double first, double cap, unsigned streak)
{
	double d = first;
	unsigned i;

	for (i = 1; i < streak && d < cap; i++)
		d *= 2;
	return d < cap ? d : cap;
}

/* A or B, whichever is longer. */
static double
longer(double a, double b)
{
	return a > b ? a : b;
}

double
backoff_next(enum session_class cls, unsigned interval, unsigned streak,
    bool reloaded, double r)
{
	double iv = interval;

	switch (cls) {
	case SC_OK:
	case SC_BUSY:  /* the server asked for later: the normal interval */
	case SC_LOCAL: /* each poll checks whether space is back */
		return backoff_jitter(iv, r);
	case SC_NET:
	case SC_PROTO:
		return backoff_jitter(
		    doubled(iv, longer(iv, BACKOFF_MAX), streak), r);
	case SC_AUTH:
		if (reloaded)
			return backoff_first(interval, r);
		return backoff_jitter(doubled(longer(iv, BACKOFF_AUTH_FIRST),
					  longer(iv, BACKOFF_AUTH_MAX), streak),
		    r);
	case SC_CONFIG:
	case SC_COUNT:
		break;
	}
	return reloaded ? backoff_first(interval, r) : -1;
}

double
backoff_login_wait(long delay, double started, double now)
{
	double wait;

	if (delay <= 0 || started <= 0)
		return 0;
	wait = started + (double)delay - now;
	return wait > 0 ? wait : 0;
}

double
backoff_not_before(double next, double wait)
{
	return next < 0 || next >= wait ? next : wait;
}

/* How serious CLS is, for the exit status: higher is worse. */
static int
severity(enum session_class cls)
{
	switch (cls) {
	case SC_OK:
		return 0;
	case SC_NET:
	case SC_BUSY:
	case SC_PROTO:
		return 1;
	case SC_AUTH:
		return 2;
	case SC_LOCAL:
		return 3;
	case SC_CONFIG:
	case SC_COUNT:
		break;
	}
	return 4;
}

enum session_class
backoff_worst(enum session_class a, enum session_class b)
{
	return severity(b) > severity(a) ? b : a;
}

int
backoff_exit_status(enum session_class cls)
{
	switch (cls) {
	case SC_OK:
		return EX_OK;
	case SC_NET:
	case SC_BUSY:
	case SC_PROTO:
		return EX_TEMPFAIL;
	case SC_AUTH:
		return EX_NOPERM;
	case SC_LOCAL:
		return EX_IOERR;
	case SC_CONFIG:
	case SC_COUNT:
		break;
	}
	return EX_CONFIG;
}

const char *
backoff_class_name(enum session_class cls)
{
	return (unsigned)cls < SC_COUNT ? class_names[cls] : "?";
}
