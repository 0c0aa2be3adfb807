/*
 * deliver: the delivery batch, in the order the invariant needs. Messages
 * are written into tmp/; a flush makes them durable there (one syncfs, or
 * an fsync each: maildir_set_sync()), records and commits their intents
 * (the commit point: from then on a message counts as delivered), links
 * the files into new/, fsyncs new/, removes the tmp/ names and marks the
 * intents complete. Only messages a flush has made
 * durable may be deleted on the server. deliver_recover() rolls forward
 * what a crash interrupted.
 *
 * It knows Maildir and state, nothing of POP3 or the network: the session
 * feeds it bytes and asks it which messages are durable.
 */
#ifndef POPFETCHD_DELIVER_H
#define POPFETCHD_DELIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct maildir;
struct state;
struct deliver;

/*
 * A delivery batch into MD, recording UIDs in ST (both borrowed, must
 * outlive it). NULL when out of memory.
 */
struct deliver *deliver_new(struct maildir *md, struct state *st);

/*
 * Frees D. Messages written but not flushed stay as they are: an intent
 * already committed is rolled forward by the next deliver_recover(), and
 * anything else is fetched again.
 */
void deliver_free(struct deliver **d);

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
 * Takes the message TAG out of the batch before it is flushed, its file
 * dropped: it turned out not to be whole. 0, or -1 (ENOENT: not in the
 * batch, or already recorded by a flush).
 */
int deliver_drop(struct deliver *d, unsigned long tag);

/* Messages in the batch, not yet durable. */
size_t deliver_pending(const struct deliver *d);

/*
 * Makes the batch durable and calls DURABLE(ARG, TAG) for each of its
 * messages, in order. Returns 0, or -1 with errno set and ERR saying what
 * failed: then no callback was made, and none of the batch may be
 * deleted. A failure is final for the batch, which is empty afterwards
 * (a second try would only meet the same full or failed disk): files no
 * intent names are dropped (fetched again next time), those with an
 * intent are left for the next deliver_recover().
 */
int deliver_flush(struct deliver *d,
    void (*durable)(void *arg, unsigned long tag), void *arg, char *err,
    size_t errlen);

#endif
