/*
 * spool: a session's messages on their way into the Maildir, written on a
 * worker thread so that the loop never waits for the disk, not even to
 * create a file in tmp/ (a busy journal holds that for milliseconds) or
 * to write into the page cache (a disk that cannot keep up throttles the
 * writer). The loop queues the steps (begin, data, end, abort, remove a
 * file) in one buffer while a job works through the other, in order;
 * when the loop's buffer is full too, the session stops reading
 * (spool_full()).
 *
 * A message ended here joins the batch being filled (deliver.h) once its
 * job has run, on the loop: until then the batch does not count it.
 * Whoever queues must kick (spool_kick()) before waiting for the spool.
 */
#ifndef POPFETCHD_SPOOL_H
#define POPFETCHD_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct deliver;
struct spool;
struct worker;

/* What the spool tells its session, on the loop. */
struct spool_cbs {
	/*
	 * The message TAG that spool_end() ended did not reach the batch,
	 * for ERR (an errno): nothing of it is left in the Maildir. SENT is
	 * what spool_end() was given. Not called for a message dropped
	 * with spool_drop().
	 */
	void (*failed)(void *arg, unsigned long tag, uint64_t sent, int err);
	/* A job ended: the batch may have grown, and there is room. */
	void (*ran)(void *arg);
	void *arg;
};

/* A spool writing through D (a Maildir's) on W; NULL out of memory. */
struct spool *spool_new(
    struct deliver *d, struct worker *w, const struct spool_cbs *cbs);

/* Frees *SP, which must not be busy, and sets it to NULL. NULL is fine. */
void spool_free(struct spool **sp);

/*
 * The steps, queued; each returns 0, or -1 (ENOMEM) and the session
 * must give up the message. TAG and UID as for deliver_begin().
 */
int spool_begin(
    struct spool *sp, unsigned long tag, const char *uid, uint64_t size);
int spool_write(struct spool *sp, const char *data, size_t len);
int spool_end(struct spool *sp, unsigned long tag, uint64_t sent);

/* Gives up the message begun, if any. NULL is fine. */
void spool_abort(struct spool *sp);

/*
 * As deliver_drop(), also for the message ended last while it is still
 * on its way (it is dropped when it arrives). 0, or -1 (ENOENT).
 */
int spool_drop(struct spool *sp, unsigned long tag);

/*
 * As deliver_discard(), the files removed by the next job; so are those
 * of every message still on its way or ended later: after a failed flush
 * nothing more of the poll may be made durable (deliver.h).
 */
void spool_discard(struct spool *sp);

/* Starts a job for what is queued, unless one runs. */
void spool_kick(struct spool *sp);

/* Whether the session should stop reading until the next ran(). */
bool spool_full(const struct spool *sp);

/* Whether a job runs (or its results are not in yet). NULL: false. */
bool spool_busy(const struct spool *sp);

/* Whether nothing is queued and no job runs. NULL: true. */
bool spool_idle(const struct spool *sp);

/* As worker_cancel() for its job: false if it is running. */
bool spool_cancel(struct spool *sp);

/*
 * The end of a session, on the worker thread of its last disk job, the
 * spool not busy: runs what is queued, the message in hand given up,
 * and moves the ended messages into the batch. spool_final_report()
 * then tells the failures, on the loop.
 */
void spool_final(struct spool *sp);
void spool_final_report(struct spool *sp);

#endif
