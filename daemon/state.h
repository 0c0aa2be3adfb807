/*
 * state: per-account store of delivered UIDs. It lives in one file per
 * account under the state directory, an append-only journal: loading
 * drops a torn last record; recording appends; committing fsyncs, so its
 * cost does not depend on how many UIDs the account holds. The file is
 * locked while open, so a second process on the same state is refused.
 * The file records the mailbox it belongs to, host, port and user: a
 * state for another mailbox is not reused (a fresh one replaces it; the
 * old file is kept as ACCOUNT.state.old, and state_load_notice() says
 * so). The host is compared without regard to ASCII case and to a
 * trailing dot; the user exactly; ports 110 and 995 (POP3 and POP3S, one
 * service, RFC 8314) count as one, any other port is another mailbox. A
 * file written without a port (by an older popfetchd, or by
 * state_open()) matches any port, and is rewritten with the port at the
 * next state_commit(), atomically. A damaged file never makes
 * state_open() fail: see state_load_notice().
 *
 * With each delivered UID the state may hold the size the server listed
 * for its message (LIST, in octets), so that the planner can tell a new
 * message reusing an old UID from the one delivered: state_size(). A UID
 * recorded without one (state_record(), state_record_pending(), or by a
 * popfetchd before sizes) has its size unknown.
 *
 * A UID is recorded either plainly (state_record) or as pending
 * (state_record_pending): an intent naming the tmp/ file that holds the
 * message and the name it is to get in new/. The commit of the intent is
 * the point where the message counts as delivered; state_complete() says
 * it has been published. Pending records survive close and reopen until
 * completed: after a crash, the caller rolls each one forward (see the
 * sequence in maildir.h) before anything else. Only if the journal is
 * damaged in its middle can an intent be lost, and then the message is
 * fetched once more (a duplicate, never a loss).
 *
 * Apart from the deliveries, the state counts strikes: failed attempts to
 * deliver a UID (state_strike), so that the planner can quarantine a
 * message that keeps failing instead of retrying it at every poll. A UID
 * with strikes only is not delivered: state_has(), state_count() and
 * state_foreach() do not see it. Strikes end when the UID is recorded
 * delivered, or forgotten, or pruned as no longer on the server.
 */
#ifndef POPFETCHD_STATE_H
#define POPFETCHD_STATE_H

#include <sys/types.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct state;

/*
 * Opens (or creates) the state of ACCOUNT in DIR, for the mailbox of
 * USER at HOST, PORT (1 to 65535; 0 if not known: then a file for any
 * port matches, and keeps its port). Returns NULL with errno set on
 * failure (EWOULDBLOCK: locked by another process; EINVAL: a bad account
 * name or port); ERRBUF then says what failed.
 */
struct state *state_open_mailbox(const char *dir, const char *account,
    const char *host, unsigned port, const char *user, char *errbuf,
    size_t errlen);

/* state_open_mailbox() with the port not known (0). */
struct state *state_open(const char *dir, const char *account, const char *host,
    const char *user, char *errbuf, size_t errlen);

/*
 * What state_open() found and repaired that the caller should log: a torn
 * last record dropped, malformed records skipped, a state file for another
 * host, port or user, or one without a readable header, set aside (and
 * the state started empty). NULL if nothing; the string lives as long as
 * ST.
 */
const char *state_load_notice(const struct state *st);

/* Closes the state, releasing the lock. Unsaved records are lost. */
void state_close(struct state **st);

/*
 * Whether UID is recorded, pending or not; *FIRST_SEEN (if not NULL) gets
 * when. This reflects every record, completion and forget made, committed
 * or not (also after a failed commit): act on it (DELE) only for records
 * a state_commit() returning 0 has covered.
 */
bool state_has(const struct state *st, const char *uid, time_t *first_seen);

/*
 * Records UID as delivered, first seen at NOW, ending its strikes. Not
 * durable until state_commit() returns 0. Returns 0, or -1 with errno
 * set.
 */
int state_record(struct state *st, const char *uid, time_t now);

/*
 * state_record() with the size the server listed for the message (LIST,
 * octets; any value but UINT64_MAX). If UID is recorded already, nothing
 * changes (its size neither).
 */
int state_record_size(
    struct state *st, const char *uid, time_t now, uint64_t size);

/*
 * Records UID as delivered, pending publication: its message is durable
 * in tmp/TMPNAME of the Maildir and is to become new/FINALNAME. Both are
 * plain file names (1 to NAME_MAX bytes in 0x21-0x7E, no '/', not "." or
 * ".."); they are copied. Not durable until state_commit() returns 0:
 * that commit is the delivery's commit point, and only after it may the
 * message be published. From here on its tmp/ file must stay until it is
 * published, even if the commit fails: the intent may reach the disk by
 * a later commit, or may be there already despite the failure.
 * Ends the strikes of UID, as state_record() does.
 * Returns 0, or -1 with errno set: EINVAL for a bad argument, EEXIST if
 * UID is already recorded (then this copy must not be published: drop it).
 */
int state_record_pending(struct state *st, const char *uid, time_t now,
    const char *tmpname, const char *finalname);

/*
 * state_record_pending() with the size the server listed for the message
 * (LIST, octets; any value but UINT64_MAX), written in the same commit.
 */
int state_record_pending_size(struct state *st, const char *uid, time_t now,
    const char *tmpname, const char *finalname, uint64_t size);

/*
 * Whether the listed size of the message delivered as UID is known, and
 * if so *SIZE (if not NULL) gets it. False for a UID not recorded, or
 * recorded without a size. Like state_has(), it reflects every change
 * made, committed or not.
 */
bool state_size(const struct state *st, const char *uid, uint64_t *size);

/*
 * Sets the listed size of the message delivered as UID (replacing one
 * known before). Durable with the next state_commit(). Returns 0, or -1
 * with errno set: EINVAL (a bad UID, or UINT64_MAX), ENOENT (UID not
 * recorded), ENOMEM.
 */
int state_set_size(struct state *st, const char *uid, uint64_t size);

/*
 * Marks the pending UID as published (its tmp/ name dropped after new/
 * was fsynced); it stays recorded as delivered. Durable with the next
 * state_commit() that returns 0; until then a crash only makes recovery
 * find the intent again, which is harmless. 0 also if UID is recorded but
 * not pending; -1 with errno set otherwise (EINVAL, ENOENT: not recorded).
 */
int state_complete(struct state *st, const char *uid);

/*
 * Forgets UID (no longer on the server), its strikes too. Durable after
 * state_commit(). A pending UID is refused with EBUSY: forgetting it
 * would leave its tmp/ file unprotected; complete it first.
 */
int state_forget(struct state *st, const char *uid);

/*
 * Makes every record so far durable (write + fsync). 0 or -1/errno. On
 * failure the records stay in memory, unwritten (pending ones still
 * pending), and the next call writes them again. May also rewrite the
 * file without its dead records (compaction), keeping pending records
 * pending and sizes; a failed compaction is not an error, the journal
 * stays as it was. The first call after an open that adopted a header in
 * an older spelling (no port, another case) rewrites the file so.
 */
int state_commit(struct state *st);

/*
 * A syncfs(2) of the file system DEV returned 0, on a descriptor opened
 * before the state was: if the state's file lives there, what the open
 * created of it is durable, and the first commit need not sync the state
 * directory for it. (A fresh state's file is created unsynced; the
 * Maildir's first batch syncs the whole file system anyway.)
 */
void state_fs_synced(struct state *st, dev_t dev);

/*
 * Counts one more failed attempt to deliver UID, at NOW, and returns the
 * count so far (it stops growing at 9999). Not durable until
 * state_commit() returns 0 (a strike lost in a crash costs one more try,
 * no more). Returns -1 with errno set: EINVAL for a bad argument, EEXIST
 * if UID is recorded delivered (pending or not; no strike is counted, as
 * its message is safe), ENOMEM.
 */
int state_strike(struct state *st, const char *uid, time_t now);

/*
 * Notes UID as seen and left on the server by policy (too large), so that
 * the caller can say so once instead of at every poll. A note lives in
 * the strike table with a count of 0: state_strikes() answers 0 for it,
 * a later state_strike() counts from it, and it ends as strikes do.
 * Returns 1 if UID was not noted (nor struck) before, 0 if it was, -1
 * with errno set: EINVAL, EEXIST if UID is recorded delivered, ENOMEM.
 * Durable with the next state_commit().
 */
int state_note(struct state *st, const char *uid, time_t now);

/*
 * Failed attempts counted for UID (not durable ones included), 0 if none;
 * *LAST (if not NULL) gets the time passed to the latest state_strike()
 * (0 if none). That is the latest call, not the largest time: after the
 * clock went back it may be earlier than a previous strike.
 */
unsigned state_strikes(const struct state *st, const char *uid, time_t *last);

/*
 * Forgets the strikes of every UID for which LISTED returns false: call
 * it after a complete listing, with LISTED saying whether the server
 * still lists the UID, so that strikes do not pile up for ever. Durable
 * with the next state_commit(). LISTED must not change the state; it may
 * be asked about a UID twice. Out of memory, the rest stay for next time.
 * (state_forget() forgets strikes too, one UID at a time.)
 */
void state_prune_strikes(
    struct state *st, bool (*listed)(void *arg, const char *uid), void *arg);

/* Number of UIDs recorded, pending ones included. */
size_t state_count(const struct state *st);

/* Number of pending UIDs. */
size_t state_pending_count(const struct state *st);

/*
 * Calls FN for each recorded UID, pending ones included (order
 * unspecified). FN must not change the state; the strings are valid
 * during the call only.
 */
void state_foreach(const struct state *st,
    void (*fn)(void *arg, const char *uid, time_t first_seen), void *arg);

/*
 * Calls FN for each pending UID with its tmp/ and final names (order
 * unspecified). FN must not change the state (no state_complete() inside):
 * collect copies, then act. The strings are valid during the call only.
 */
void state_foreach_pending(const struct state *st,
    void (*fn)(
	void *arg, const char *uid, const char *tmpname, const char *finalname),
    void *arg);

/*
 * Whether a pending UID names TMPNAME as its tmp/ file: what the KEEP
 * callback of maildir_clean_tmp() needs. Cheap when nothing is pending.
 */
bool state_is_pending_tmp(const struct state *st, const char *tmpname);

/*
 * Moving an account to another instance (--shard, shard.h) moves its
 * state. state_export() writes the state of ACCOUNT (the mailbox USER at
 * HOST, PORT, as for state_open_mailbox) to FD as a compacted journal in
 * the file's own format, under its lock, fsyncing FD if it is a file.
 * Before writing, it marks the state exported here (ACCOUNT.moved,
 * durable): from then on state_open_mailbox() refuses it with EXDEV, so
 * that this instance no longer polls the account even where its
 * configuration still says so. Exporting again is allowed. Refused with
 * EBUSY while deliveries a crash interrupted are pending. *COUNT gets the
 * UIDs written. 0, or -1 with errno set and ERRBUF saying why.
 */
int state_export(const char *dir, const char *account, const char *host,
    unsigned port, const char *user, int fd, size_t *count, char *errbuf,
    size_t errlen);

/*
 * Reads a journal from FD to its end (at most 1 GiB) and makes it the
 * state of ACCOUNT, durably (a snapshot, as compaction writes), ending a
 * mark of state_export(). The journal is checked strictly: its header
 * must name this mailbox, every record must be whole and well-formed,
 * none pending; anything else is refused with EINVAL and nothing
 * changes. A state already here that holds UIDs and is not marked
 * exported is refused with EEXIST: the account is polled here. *COUNT
 * gets the UIDs imported. 0, or -1 with errno set and ERRBUF saying why.
 */
int state_import(const char *dir, const char *account, const char *host,
    unsigned port, const char *user, int fd, size_t *count, char *errbuf,
    size_t errlen);

#endif
