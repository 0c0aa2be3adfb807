/*
 * notify: the service manager's notification protocol (sd_notify(3)),
 * without libsystemd: one datagram per message to the AF_UNIX socket named
 * by $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace).
 * Every function is a no-op when the variable is unset, so the daemon
 * calls them unconditionally.
 */
#ifndef POPFETCHD_NOTIFY_H
#define POPFETCHD_NOTIFY_H

#include <stdbool.h>

struct event_base;
struct notify;

/*
 * Reads $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID, and removes them
 * from the environment so that child processes (password_command) do not
 * talk to the service manager in our name. When the watchdog is on for
 * this process, sends WATCHDOG=1 every WATCHDOG_USEC / 2 from a timer on
 * BASE. Returns NULL only when out of memory.
 */
struct notify *notify_new(struct event_base *base);

/* True when there is a socket to talk to. */
bool notify_enabled(const struct notify *n);

/* READY=1: start-up, or a reload, is complete. */
void notify_ready(struct notify *n);

/* RELOADING=1 with MONOTONIC_USEC= (systemd >= 253 expects both). */
void notify_reloading(struct notify *n);

/* STOPPING=1. */
void notify_stopping(struct notify *n);

/*
 * STATUS=TEXT, escaped as log_escape() does (so one line whatever TEXT
 * holds) and cut to a few hundred bytes. At most one STATUS datagram a
 * second: a newer text replaces one not sent yet, which a timer sends
 * later.
 */
void notify_status(struct notify *n, const char *text);

void notify_free(struct notify **n);

#endif
