/*
 * deliver: the delivery batch, in the order the invariant needs, and the
 * one door to the account's Maildir and state. Messages are written into
 * tmp/; a flush makes them durable there (one syncfs, or an fsync each:
 * deliver_where.sync_each_file), records and commits their intents (the
 * commit point: from then on a message counts as delivered), links the
 * files into new/, fsyncs new/, removes the tmp/ names and marks the
 * intents complete. Only messages a flush has made durable may be
 * deleted on the server. deliver_recover() rolls forward what a crash
 * interrupted.
 *
 * Around the batch it answers what the state knows of a UID (delivered,
 * its listed size, its strikes) and takes the few changes a poll makes
 * besides deliveries: strikes, notes, forgetting, pruning.
 *
 * It knows Maildir and state, nothing of POP3 or the network: the session
 * feeds it bytes and UIDs and asks it which messages are durable.
 *
 * Two batches, so that the disk and the network overlap: deliver_seal()
 * hands the batch filled so far to the next deliver_flush(), which may
 * run on another thread while the caller fills the next batch. During
 * that flush the caller may call only deliver_begin(), deliver_write(),
 * deliver_abort(), deliver_end(), deliver_drop(), deliver_discard(),
 * deliver_pending() and deliver_pending_bytes() (Maildir only; none of
 * them reads the state); every other call waits until the flush has
 * returned.
 */
#ifndef POPFETCHD_DELIVER_H
#define POPFETCHD_DELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct deliver;
struct maildir;
struct state;

/* Where an account's mail goes, and whose UIDs its state holds. */
struct deliver_where {
	const char *maildir; /* path of the Maildir (its root) */
	const char *folder;  /* a Maildir++ folder in it (folder.h), or NULL */
	/*
	 * Mail goes to a target that takes it from the session (LMTP): no
	 * Maildir is opened, only the state (see "Hand-offs" below).
	 */
	bool handoff;
	bool sync_each_file; /* an fsync per message, not one syncfs */
	const char *state_dir;
	const char *account; /* names the state file in state_dir */
	const char *host;    /* the mailbox: USER at HOST, PORT */
	unsigned port;	     /* 0 if not known */
	const char *user;
};

/*
 * Opens the Maildir W->maildir (created if missing, but never in a
 * missing directory), or its Maildir++ folder W->folder (named as
 * folder.h says, created with its marker file), then the state of W->account
 * (locked while open), and a delivery batch into them, which owns both. Returns
 * NULL with errno set and ERR saying what failed: "maildir: " or "state: " and
 * why, or "out of memory". errno is EWOULDBLOCK only when another
 * process holds the state's lock (the account is busy elsewhere).
 * Call deliver_recover() next, before any delivery.
 */
struct deliver *deliver_open(
    const struct deliver_where *w, char *err, size_t errlen);

/*
 * Closes the Maildir and the state and frees D. State changes not
 * committed are lost (a strike, a note: one more try; a forget: done
 * again at a later poll). Messages written but not flushed stay as they
 * are: an intent already committed is rolled forward by the next
 * deliver_recover(), and anything else is fetched again.
 */
void deliver_free(struct deliver **d);

/*
 * What opening the state found and repaired that the caller should log
 * (see state_load_notice()), or NULL. Lives as long as D.
 */
const char *deliver_notice(const struct deliver *d);

/*
 * If one syncfs per batch was asked for but the Maildir's file system
 * cannot be trusted with it, so that each file is fsynced instead, the
 * short name of its type ("nfs", "fuse", ...; a static string); else
 * NULL.
 */
const char *deliver_sync_fallback(const struct deliver *d);

/*
 * Free bytes for an unprivileged user on the Maildir's file system.
 * 0, or -1 with errno set.
 */
int deliver_free_space(struct deliver *d, uint64_t *bytes);

/*
 * Completes deliveries a crash interrupted, then removes stale tmp/ files
 * that no pending intent names. Returns the number of messages recovered,
 * or -1 with errno set and ERR saying what failed.
 */
int deliver_recover(struct deliver *d, char *err, size_t errlen);

/* A message whose LIST size is not known. */
#define DELIVER_SIZE_UNKNOWN UINT64_MAX

/*
 * Starts a message; TAG is the caller's name for it (the message number)
 * and UID its UID, or NULL when the server has none (then nothing is
 * recorded and a crash between publishing and deleting can duplicate it).
 * SIZE is its size as LIST said (or DELIVER_SIZE_UNKNOWN), recorded with
 * the UID. Returns 0, or -1 with errno set.
 */
int deliver_begin(
    struct deliver *d, unsigned long tag, const char *uid, uint64_t size);

/* Appends message bytes (CRLF becomes LF). 0, or -1 with errno set. */
int deliver_write(struct deliver *d, const char *data, size_t len);
/* The same, converting in DATA's memory (maildir_write_inplace()). */
int deliver_write_inplace(struct deliver *d, char *data, size_t len);

/* Drops the message begun, if any. */
void deliver_abort(struct deliver *d);

/*
 * Ends the message begun: complete in tmp/ and added to the batch (not
 * durable before the flush). Returns 0, or -1 with errno set (the message
 * is dropped).
 * *SIZE (if not NULL) gets its size in the Maildir.
 */
int deliver_end(struct deliver *d, unsigned long long *size);

/*
 * A writer on a thread of its own (spool.h) ends messages aside, not into
 * the batch being filled, which is the caller's: 0, or -1 as
 * deliver_end(). While the writer is idle, the caller moves them into
 * that batch with deliver_take_ended(), in the order ended; out of
 * memory, -1 (ENOMEM), and their files go to GONE (below).
 */
int deliver_end_aside(struct deliver *d);
/* What to do with a tmp/ file no batch holds any more: remove it. */
typedef void (*deliver_gone_fn)(void *arg, const char *tmp);
int deliver_take_ended(struct deliver *d, deliver_gone_fn gone, void *arg);

/* Removes the file TMP of tmp/ (a name GONE was given). */
void deliver_unlink_tmp(struct deliver *d, const char *tmp);

/*
 * Takes the message TAG out of the batch being filled, its file dropped:
 * it turned out not to be whole. 0, or -1 (ENOENT: not in that batch:
 * sealed, recorded by a flush, or a hand-off). deliver_drop_to() hands
 * the file's name to GONE instead of removing it.
 */
int deliver_drop(struct deliver *d, unsigned long tag);
int deliver_drop_to(
    struct deliver *d, unsigned long tag, deliver_gone_fn gone, void *arg);

/*
 * Drops every message of the batch being filled, their files with them
 * (nothing names them yet: they are fetched again): after a failed
 * flush, so that the failing disk is not tried again. Hand-offs: nothing.
 * deliver_discard_to() hands the files' names to GONE instead.
 */
void deliver_discard(struct deliver *d);
void deliver_discard_to(struct deliver *d, deliver_gone_fn gone, void *arg);

/*
 * Messages in the batch being filled, not sealed nor durable (hand-offs:
 * taken, not yet flushed).
 */
size_t deliver_pending(const struct deliver *d);

/* Their bytes in the Maildir (hand-offs: 0). */
uint64_t deliver_pending_bytes(const struct deliver *d);

/*
 * Hands the batch filled so far to the next deliver_flush(), and starts
 * an empty one: messages ended from now on go to the flush after. Call
 * it on the thread that fills, never while a flush runs. Returns the
 * messages sealed (hand-offs: the taken ones; their batch is not split).
 */
size_t deliver_seal(struct deliver *d);

/*
 * As deliver_seal(), but the sealed batch takes only the first MOST
 * messages of the one being filled, and none after the one that brings
 * it to BYTES; the rest stay for the next. For a writer that adds
 * several at once (deliver_take_ended()), so that batches keep their
 * size.
 */
size_t deliver_seal_some(struct deliver *d, size_t most, uint64_t bytes);

/*
 * Makes the sealed batch durable (without a deliver_seal() since the last
 * flush, it seals the batch first) and calls DURABLE(ARG, TAG) for each
 * of its messages, in order; DURABLE may call deliver_known() and
 * deliver_record(), nothing else of D. Returns 0, or -1 with errno set
 * and ERR saying what failed: then no callback was made, and none of the
 * batch may be deleted. A failure is final for the batch, which is empty
 * afterwards (a second try would only meet the same full or failed
 * disk): files no intent names are dropped (fetched again next time),
 * those with an intent are left for the next deliver_recover(). The
 * batch being filled meanwhile is untouched: see deliver_discard().
 * Flushing a batch that is not empty commits the state: changes made by
 * the calls below before the flush become durable with it. Those made
 * inside DURABLE, and the intents marked complete, wait for the next
 * commit (until then a crash makes recovery find the intents again,
 * which is harmless).
 */
int deliver_flush(struct deliver *d,
    void (*durable)(void *arg, unsigned long tag), void *arg, char *err,
    size_t errlen);

/*
 * What the state knows of a UID. The answers reflect every change made,
 * committed or not: act on them (DELE) only for what a commit returning
 * 0 has covered. A UID that breaks the UID rule (uid.h) is not known.
 */

/*
 * Whether UID is recorded delivered (its intent committed or not). If so
 * *FIRST_SEEN gets when it was recorded, and *SIZE the size the server
 * listed for it then, or DELIVER_SIZE_UNKNOWN if the state does not hold
 * one; if not, neither is touched. Either pointer may be NULL.
 */
bool deliver_known(const struct deliver *d, const char *uid, time_t *first_seen,
    uint64_t *size);

/*
 * Failed attempts counted against UID (none once it is delivered), 0 if
 * none; *LAST (if not NULL) gets the time given to the latest one.
 */
unsigned deliver_strikes(
    const struct deliver *d, const char *uid, time_t *last);

/*
 * Changes to the state made outside a delivery. None is durable before
 * deliver_commit() (or a flush) returns 0, and each lost in a crash
 * costs no mail, only work done again.
 */

/*
 * Counts one more failed attempt to deliver UID, at NOW: the count so
 * far (it stops at 9999), or -1 with errno set (EEXIST: UID is delivered,
 * its message safe; EINVAL; ENOMEM).
 */
int deliver_strike(struct deliver *d, const char *uid, time_t now);

/*
 * Notes UID as left on the server by policy (too large), so that the
 * caller says so once, not at every poll. 1 if it was not noted (nor
 * struck) before, 0 if it was, -1 with errno set (as deliver_strike()).
 */
int deliver_note(struct deliver *d, const char *uid, time_t now);

/*
 * Records UID as delivered at NOW, for a message delivered without it:
 * one of several the server lists under the same UID, which are fetched
 * by number (see plan.h). If UID is recorded already nothing changes.
 * 0, or -1 with errno set.
 */
int deliver_record(struct deliver *d, const char *uid, time_t now);

/*
 * Forgets UID, delivered or struck: its message is no longer on the
 * server, or another message reuses the UID. 0, also when the state
 * holds nothing of UID; -1 with errno set: EBUSY if its intent is not
 * complete yet (its tmp/ file still needs it: the next deliver_recover()
 * completes it), EINVAL, ENOMEM.
 */
int deliver_forget(struct deliver *d, const char *uid);

/*
 * Forgets every UID, delivered or struck, for which LISTED(ARG, UID)
 * returns false: call it after a complete listing, so that the state
 * does not grow for ever. LISTED must not call into D; it may be asked
 * about a UID twice. Best effort: out of memory, or a UID whose intent
 * is not complete, stays for next time (it costs only space).
 */
void deliver_prune(
    struct deliver *d, bool (*listed)(void *arg, const char *uid), void *arg);

/* Makes the state's changes durable (write + fsync). 0, or -1/errno. */
int deliver_commit(struct deliver *d);

/*
 * Hand-offs (W->handoff): the session gives messages to a target and
 * this module keeps the state's side in the order the invariant needs.
 *
 *	deliver_announce	before its RETR: an intent for its UID
 *	deliver_flush		commits the intents (with the verdicts before)
 *	... the message goes to the target, which answers ...
 *	deliver_handed		the verdict: taken, or not
 *	deliver_flush		taken ones recorded delivered, committed, and
 *				DURABLE called for each: only now its DELE
 *
 * A crash after an intent's commit leaves it pending; the next
 * deliver_recover() withdraws it (the message is fetched again) and
 * counts it in deliver_unsure(): the target may have taken it before
 * the crash, so the copy fetched again may be a duplicate. That is the
 * window the X-Popfetchd-Id header and a Sieve "duplicate" rule close.
 * Messages without a UID have no intent and no record (as in Maildir
 * mode): a crash between their hand-off and DELE duplicates them.
 * deliver_begin(), deliver_write(), deliver_end() and deliver_drop() are
 * for the Maildir only.
 */

/*
 * Announces the message TAG, UID (NULL: none) and SIZE as LIST said (or
 * DELIVER_SIZE_UNKNOWN): its intent is durable with the next flush or
 * commit. 0, or -1 with errno set (EEXIST: UID is recorded delivered).
 */
int deliver_announce(
    struct deliver *d, unsigned long tag, const char *uid, uint64_t size);

/*
 * The target's verdict on the announced message TAG: TAKEN, it is
 * recorded delivered at the next flush; not taken, its intent is
 * withdrawn now (in memory), and a strike may follow. 0, or -1 with
 * errno set (ENOENT: TAG not announced, or answered already).
 */
int deliver_handed(struct deliver *d, unsigned long tag, bool taken);

/*
 * Withdraws the intents of the messages announced and not answered (the
 * session ends before handing them off). Call before the last flush.
 */
void deliver_withdraw(struct deliver *d);

/* Intents the last deliver_recover() found interrupted (see above). */
size_t deliver_unsure(const struct deliver *d);

#endif
