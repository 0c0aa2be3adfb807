/*
 * state: per-account store of delivered UIDs. It lives in one file per
 * account under the state directory, an append-only journal: loading
 * drops a torn last record; recording appends; committing fsyncs, so its
 * cost does not depend on how many UIDs the account holds. The file is
 * locked while open, so a second process on the same state is refused.
 * The file records the host and user it belongs to: a state for another
 * server or user is not reused (a fresh one replaces it; the old file is
 * kept as ACCOUNT.state.old). A damaged file never makes state_open()
 * fail: see state_load_notice().
 */
#ifndef POPFETCHD_STATE_H
#define POPFETCHD_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct state;

/*
 * Opens (or creates) the state of ACCOUNT in DIR, for HOST and USER.
 * Returns NULL with errno set on failure (EWOULDBLOCK: locked by another
 * process); ERRBUF then says what failed.
 */
struct state *state_open(const char *dir, const char *account, const char *host,
    const char *user, char *errbuf, size_t errlen);

/*
 * What state_open() found and repaired that the caller should log: a torn
 * last record dropped, malformed records skipped, a state file for another
 * host or user, or one without a readable header, set aside (and the state
 * started empty). NULL if nothing; the string lives as long as ST.
 */
const char *state_load_notice(const struct state *st);

/* Closes the state, releasing the lock. Unsaved records are lost. */
void state_close(struct state **st);

/*
 * Whether UID is recorded; *FIRST_SEEN (if not NULL) gets when. This
 * reflects every state_record() and state_forget() made, committed or not
 * (also after a failed commit): act on it (DELE) only for records a
 * state_commit() returning 0 has covered.
 */
bool state_has(const struct state *st, const char *uid, time_t *first_seen);

/*
 * Records UID as delivered, first seen at NOW. Not durable until
 * state_commit() returns 0. Returns 0, or -1 with errno set.
 */
int state_record(struct state *st, const char *uid, time_t now);

/* Forgets UID (no longer on the server). Durable after state_commit(). */
int state_forget(struct state *st, const char *uid);

/*
 * Makes every record so far durable (write + fsync). 0 or -1/errno. On
 * failure the records stay pending and the next call writes them again.
 * May also rewrite the file without its dead records (compaction); a
 * failed compaction is not an error, the journal stays as it was.
 */
int state_commit(struct state *st);

/* Number of UIDs recorded. */
size_t state_count(const struct state *st);

/*
 * Calls FN for each recorded UID (order unspecified). FN must not change
 * the state.
 */
void state_foreach(const struct state *st,
    void (*fn)(void *arg, const char *uid, time_t first_seen), void *arg);

#endif
