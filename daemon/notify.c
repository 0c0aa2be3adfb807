/*
 * sd_notify(3) as plain datagrams: the protocol is a few "KEY=VALUE" lines
 * per datagram to an AF_UNIX socket, small and stable enough not to need
 * libsystemd.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "notify.h"
#include "monotime.h"

/* STATUS= is sent at most once a second: it is for humans. */
#define NOTIFY_STATUS_GAP 1.0
/* A longer STATUS text is cut: systemctl status shows one line. */
#define NOTIFY_STATUS_MAX 480

struct notify {
	int fd; /* -1: no $NOTIFY_SOCKET, everything is a no-op */
	struct sockaddr_un addr;
	socklen_t addrlen;
	unsigned long long watchdog_usec;
	struct event *watchdog;
	struct event *status_ev;
	char status[NOTIFY_STATUS_MAX];
	double status_sent; /* monotonic seconds; 0: never */
	bool warned;
};

static void watchdog_cb(evutil_socket_t fd, short what, void *arg);
static void status_cb(evutil_socket_t fd, short what, void *arg);

/* "/path" or "@abstract" into N's address; false if unusable. */
static bool
set_address(struct notify *n, const char *path)
{
	size_t len = strlen(path);

	if (len < 2 || len >= sizeof(n->addr.sun_path) ||
	    (path[0] != '/' && path[0] != '@')) {
		log_warnx(NULL,
		    "NOTIFY_SOCKET=%s: not a socket path or @name; not notifying the service manager",
		    path);
		return false;
	}
	memset(&n->addr, 0, sizeof(n->addr));
	n->addr.sun_family = AF_UNIX;
	memcpy(n->addr.sun_path, path, len);
	n->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	if (path[0] == '@')
		n->addr.sun_path[0] = '\0'; /* abstract: no NUL at the end */
	else
		n->addrlen++;
	return true;
}

static void
send_msg(struct notify *n, const char *msg)
{
	if (n->fd == -1)
		return;
	if (sendto(n->fd, msg, strlen(msg), MSG_NOSIGNAL,
		(const struct sockaddr *)&n->addr, n->addrlen) == -1 &&
	    !n->warned) {
		/* Once: a broken socket must not flood the log. */
		log_warn(NULL, "cannot notify the service manager");
		n->warned = true;
	}
}

/* The watchdog is for us when WATCHDOG_PID is unset or names us. */
static unsigned long long
watchdog_from_env(void)
{
	const char *usec = getenv("WATCHDOG_USEC");
	const char *pid = getenv("WATCHDOG_PID");
	unsigned long long v;
	char *end;

	if (usec == NULL)
		return 0;
	if (pid != NULL && strtol(pid, NULL, 10) != (long)getpid())
		return 0;
	errno = 0;
	v = strtoull(usec, &end, 10);
	if (errno != 0 || *end != '\0' || end == usec)
		return 0;
	return v;
}

static void
start_watchdog(struct notify *n, struct event_base *base)
{
	struct timeval tv;
	unsigned long long half = n->watchdog_usec / 2;

	n->watchdog = event_new(base, -1, EV_PERSIST, watchdog_cb, n);
	if (n->watchdog == NULL)
		fatalx("out of memory");
	tv.tv_sec = (time_t)(half / 1000000);
	tv.tv_usec = (suseconds_t)(half % 1000000);
	event_add(n->watchdog, &tv);
	log_debug(NULL, "watchdog every %llu us", half);
}

struct notify *
notify_new(struct event_base *base)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct notify *n;

	if ((n = calloc(1, sizeof(*n))) == NULL)
		return NULL;
	n->fd = -1;
	if ((n->status_ev = evtimer_new(base, status_cb, n)) == NULL) {
		free(n);
		return NULL;
	}
	if (path != NULL && set_address(n, path)) {
		n->fd = socket(
		    AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
		if (n->fd == -1)
			log_warn(NULL, "notify socket");
	}
	if (n->fd != -1)
		n->watchdog_usec = watchdog_from_env();
	if (n->watchdog_usec > 0)
		start_watchdog(n, base);
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	return n;
}

void
notify_free(struct notify **np)
{
	struct notify *n = *np;

	if (n == NULL)
		return;
	if (n->watchdog != NULL)
		event_free(n->watchdog);
	event_free(n->status_ev);
	if (n->fd != -1)
		close(n->fd);
	free(n);
	*np = NULL;
}

bool
notify_enabled(const struct notify *n)
{
	return n->fd != -1;
}

static void
watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	send_msg(arg, "WATCHDOG=1");
}

void
notify_ready(struct notify *n)
{
	send_msg(n, "READY=1");
}

void
notify_reloading(struct notify *n)
{
	char msg[64];

	/* A double of seconds keeps the microseconds for decades of uptime. */
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)(monotime() * 1e6));
	send_msg(n, msg);
}

void
notify_stopping(struct notify *n)
{
	send_msg(n, "STOPPING=1");
}

static void
send_status(struct notify *n)
{
	char msg[sizeof(n->status) + 8];

	snprintf(msg, sizeof(msg), "STATUS=%s", n->status);
	send_msg(n, msg);
	n->status_sent = monotime();
}

static void
status_cb(evutil_socket_t fd, short what, void *arg)
{
	send_status(arg);
}

void
notify_status(struct notify *n, const char *text)
{
	struct timeval tv;
	double wait;

	if (n->fd == -1)
		return;
	/*
	 * TEXT may carry a server's error message. Escaped, it is one line
	 * (a newline would start another KEY=VALUE, "MAINPID=1" say) and
	 * holds no terminal control for systemctl status to replay.
	 */
	log_escape(n->status, sizeof(n->status), text, strlen(text));
	if (evtimer_pending(n->status_ev, NULL))
		return; /* the timer sends the newest text */
	wait = n->status_sent + NOTIFY_STATUS_GAP - monotime();
	if (n->status_sent == 0 || wait <= 0) {
		send_status(n);
		return;
	}
	tv.tv_sec = (time_t)wait;
	tv.tv_usec = (suseconds_t)((wait - (double)tv.tv_sec) * 1e6);
	evtimer_add(n->status_ev, &tv);
}
