/*
 * progress: a live display on a terminal of how far each running poll is
 * (messages and bytes done of those planned, rate, time left), redrawn in
 * place at most PROGRESS_HZ times a second and taken off the screen before
 * any log line and at the end. Only for a person watching a terminal: the
 * caller decides with progress_wanted().
 */
#ifndef POPFETCHD_PROGRESS_H
#define POPFETCHD_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "session.h"

struct event_base;
struct progress;

/* Redraws a second: enough to look alive, few enough to cost nothing. */
#define PROGRESS_HZ 4
/*
 * Accounts shown at once; more busy ones are summed up in one last line.
 * --once may run max_connections polls together: a screenful of them
 * would push everything else away.
 */
#define PROGRESS_ROWS 8

/* One busy account, as the source hands it over. */
struct progress_item {
	const char *name; /* valid during the source's call only */
	struct session_progress sp;
};

/*
 * Fills ITEMS (room for MAX) with the polls under way, in a stable order,
 * and returns how many there are (more than MAX: only MAX filled).
 */
typedef size_t (*progress_source)(
    void *arg, struct progress_item *items, size_t max);

/*
 * Bytes per second measured over the last redraws; RATE < 0 until two
 * samples were seen.
 */
struct progress_meter {
	uint64_t bytes;
	double at;
	double rate;
	bool seen;
};

/* Feeds the meter BYTES done at time NOW (seconds, monotonic). */
void progress_meter_add(struct progress_meter *m, uint64_t bytes, double now);

/*
 * Writes one display line for account NAME into BUF (LEN bytes, always
 * NUL-terminated): printable ASCII only (the name is escaped), at most
 * WIDTH columns, no line ending. RATE in bytes per second (< 0 unknown).
 * Returns the line's length.
 */
size_t progress_format(char *buf, size_t len, const char *name,
    const struct session_progress *sp, double rate, unsigned width);

/* N bytes in BUF as "512 B", "3.4 KiB", "120 MiB", "1.02 GiB". */
void progress_bytes(char *buf, size_t len, uint64_t n);

/* SECS as "0:07", "12:34", "3:05:09"; "?" when unknown (< 0) or huge. */
void progress_eta(char *buf, size_t len, double secs);

/*
 * True if a display belongs on FD: a terminal that understands cursor
 * movement (TERM not "dumb"), and the output is not the journal
 * (JOURNAL_STREAM unset).
 */
bool progress_wanted(int fd);

/*
 * Starts the display on FD, drawing what SOURCE(ARG) reports on a timer on
 * BASE, and hooks itself before log lines (log_before_line). NULL when
 * out of memory.
 */
struct progress *progress_new(
    struct event_base *base, int fd, progress_source source, void *arg);

/* Takes the display off the screen, unhooks it, frees it; *P = NULL. */
void progress_free(struct progress **p);

#endif
