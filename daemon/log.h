/*
 * log: one logging vocabulary for the whole daemon. Lines go to stderr,
 * with journald priority prefixes ("<4>") when stderr is the journal.
 * Every line names the account it concerns (NULL: the daemon itself).
 * Protocol trace lines are formatted here and only here, so secrets are
 * masked in one place. Every message is escaped here too (log_escape), so
 * bytes a server chose never reach the journal or a terminal as they came.
 *
 * Each level has its own priority: fatal and fatalx log at ERR (3), as
 * the daemon cannot go on; log_warn and log_warnx at WARNING (4), as one
 * account or one operation failed and the daemon carries on (it retries,
 * backs off or pauses that account); log_notice at NOTICE (5), for what a
 * quiet run still shows; log_info at INFO (6); log_debug and
 * the protocol trace at DEBUG (7).
 */
#ifndef POPFETCHD_LOG_H
#define POPFETCHD_LOG_H

#include <stdbool.h>
#include <stddef.h>

#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))

/*
 * The longest message of one log line or trace line, in bytes after
 * escaping, cut marker included (the "account=" prefix and strerror text
 * come on top). A status line may be 8 KB of a server's choosing; a
 * padded reply must not flood the journal or push the next lines out of
 * a terminal. 2 KB is what messages were formatted into before they were
 * capped, and keeps whole the 1 KB of a password_command's stderr that
 * secret.c logs with its words around it.
 */
#define LOG_MSG_MAX 2048

/*
 * TRACE is 0 (none), 1 (one line per command and status response) or
 * 2 (every line). VERBOSE adds debug lines.
 */
void log_init(int trace, bool verbose);

/*
 * QUIET drops log_info and log_debug lines (not the protocol trace asked
 * for with -d): what is left is log_notice and worse, for cron.
 */
void log_quiet(bool quiet);

/*
 * FN(ARG) is called right before each line is written to stderr (NULL:
 * nothing is), from the thread that logs: a display sharing the terminal
 * (progress.c) takes itself off the screen so the line is not garbled.
 */
void log_before_line(void (*fn)(void *arg), void *arg);

/*
 * From now on, lines are written by a thread of their own through a
 * bounded queue (see log.c), unless standard error is a terminal: a
 * standard error that blocks (a busy disk, a stuck journald) then never
 * holds the caller. Lines that do not fit are dropped and counted in a
 * line of their own. Call it once the process's threads may start; the
 * exit waits (up to a few seconds) for the queue to be written.
 */
void log_async(void);

/* Waits, up to a few seconds, until every queued line is written. */
void log_flush(void);

/* Route libevent's own messages through this module. */
void log_libevent(void);

void log_warn(const char *acct, const char *fmt, ...) LOG_PRINTF(2, 3);
void log_warnx(const char *acct, const char *fmt, ...) LOG_PRINTF(2, 3);
/* Something happened that a quiet run still shows (NOTICE, 5). */
void log_notice(const char *acct, const char *fmt, ...) LOG_PRINTF(2, 3);
void log_info(const char *acct, const char *fmt, ...) LOG_PRINTF(2, 3);
void log_debug(const char *acct, const char *fmt, ...) LOG_PRINTF(2, 3);
_Noreturn void fatal(const char *fmt, ...) LOG_PRINTF(1, 2);
_Noreturn void fatalx(const char *fmt, ...) LOG_PRINTF(1, 2);

/*
 * One protocol line, without its line ending, shown when the trace level
 * is at least LEVEL. OUTGOING: sent by us. SECRET: the whole payload is a
 * credential (a SASL continuation line). Arguments of PASS, APOP, RPOP and
 * AUTH's initial response are masked whatever SECRET says.
 */
void log_proto(const char *acct, int level, bool outgoing, const char *line,
    size_t len, bool secret);

/*
 * Masks and escapes LINE (LEN bytes) into BUF (BUFSZ bytes, always
 * NUL-terminated) as log_proto shows it. A cut counts only the bytes
 * before the mask: the length of a secret is not shown either. The daemon
 * calls log_proto; this is public so that tests/test_log.c can state
 * line by line what is masked and what is not.
 */
void log_mask(char *buf, size_t bufsz, const char *line, size_t len,
    bool outgoing, bool secret);

/*
 * Copies SRCLEN bytes of SRC into DST, NUL-terminated within DSTLEN
 * bytes (DSTLEN > 0), as printable ASCII only: bytes 0x20-0x7E stay but
 * the backslash, which is doubled, and every other byte becomes "\xNN"
 * (lower-case hex), so the original bytes can be read back exactly. When
 * the result does not fit, it ends with "... (N bytes cut)", N counting
 * bytes of SRC, and no escape is split. Returns the length of DST. For any
 * text a server chose, before it is printed or sent on.
 */
size_t log_escape(char *dst, size_t dstlen, const char *src, size_t srclen);

#endif
