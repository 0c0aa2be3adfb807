/*
 * log: one logging vocabulary for the whole daemon. Lines go to stderr,
 * with journald priority prefixes ("<3>") when stderr is the journal.
 * Every line names the account it concerns (NULL: the daemon itself).
 * Protocol trace lines are formatted here and only here, so secrets are
 * masked in one place.
 */
#ifndef POPFETCHD_LOG_H
#define POPFETCHD_LOG_H

#include <stdbool.h>
#include <stddef.h>

#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))

/*
 * TRACE is 0 (none), 1 (one line per command and status response) or
 * 2 (every line). VERBOSE adds debug lines.
 */
void log_init(int trace, bool verbose);
int log_trace_level(void);
bool log_verbose(void);

/* Route libevent's own messages through this module. */
void log_libevent(void);

void log_warn(const char *acct, const char *fmt, ...) LOG_PRINTF(2, 3);
void log_warnx(const char *acct, const char *fmt, ...) LOG_PRINTF(2, 3);
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

/* Masks LINE (NUL-terminated) into BUF as log_proto would show it. */
void log_mask(char *buf, size_t bufsz, const char *line, size_t len,
    bool outgoing, bool secret);

#endif
