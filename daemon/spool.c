/*
 * The message writer: steps queued on the loop, run by a worker job. See
 * spool.h. The loop owns OPEN, the job HANDED; the worker's hand-off
 * (its lock) orders the two, so nothing here locks.
 */
#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#include "deliver.h"
#include "grow.h"
#include "spool.h"
#include "worker.h"

/*
 * A job starts as soon as this much is queued, if none runs; otherwise
 * at the end of each read (spool_kick()), so that a job takes what a
 * whole read brought.
 */
#define SPOOL_CHUNK (64 * 1024)

/*
 * The session stops reading at this much queued behind a running job:
 * the bound on what a session holds for a disk slower than its server.
 */
#define SPOOL_FULL (256 * 1024)

enum op_type {
	OP_BEGIN,  /* tag, size; the UID follows (len 0: none) */
	OP_DATA,   /* message bytes follow */
	OP_END,	   /* tag, size (bytes as sent); err set by the job */
	OP_ABORT,  /* the message in hand is given up */
	OP_UNLINK, /* the tmp/ file named after it is removed */
};

struct op {
	enum op_type type;
	int err;
	unsigned long tag;
	uint64_t size;
	size_t len; /* bytes after the header */
};

#define OP_ALIGN alignof(struct op)
/* Room an op takes: its header and its bytes, the next op aligned. */
#define OP_SPACE(o) \
	(sizeof(struct op) + ((o)->len + OP_ALIGN - 1) / OP_ALIGN * OP_ALIGN)

struct sbuf {
	char *p;
	size_t len, cap;
	size_t last; /* offset of the last op, if len > 0 */
};

struct spool {
	struct deliver *d;
	struct worker *w;
	struct worker_job job; /* runs HANDED */
	struct spool_cbs cbs;
	struct sbuf open, handed;
	int msg_err;		/* the job's: the message in hand failed */
	bool take_failed;	/* deliver_take_ended() found no memory */
	unsigned long last_end; /* the last spool_end()'s tag, */
	bool last_end_open;	/* while its result is not in */
	unsigned long drop_tag; /* dropped on its way (0: none) */
	bool discarding;	/* spool_discard() ran: nothing more joins */
};

#define SPOOL_OF_JOB(j) \
	((struct spool *)(void *)((char *)(j)-offsetof(struct spool, job)))

static void job_run(struct worker_job *job);
static void job_done(struct worker_job *job);

struct spool *
spool_new(struct deliver *d, struct worker *w, const struct spool_cbs *cbs)
{
	struct spool *sp;

	if ((sp = calloc(1, sizeof(*sp))) == NULL)
		return NULL;
	sp->d = d;
	sp->w = w;
	sp->cbs = *cbs;
	sp->job.run = job_run;
	sp->job.done = job_done;
	return sp;
}

void
spool_free(struct spool **spp)
{
	struct spool *sp = *spp;

	if (sp == NULL)
		return;
	free(sp->open.p);
	free(sp->handed.p);
	free(sp);
	*spp = NULL;
}

static struct op *
op_at(const struct sbuf *b, size_t off)
{
	return (struct op *)(void *)(b->p + off);
}

/* Makes room for NEED more bytes in B; -1: ENOMEM. */
static int
sbuf_room(struct sbuf *b, size_t need)
{
	return grow_bytes(&b->p, &b->cap, b->len, need, 4096);
}

/* Appends an op of TYPE with LEN bytes of room after it; NULL: ENOMEM. */
static struct op *
op_add(struct sbuf *b, enum op_type type, size_t len)
{
	struct op *op, probe = {.len = len};
	size_t need = OP_SPACE(&probe);

	if (sbuf_room(b, need) == -1)
		return NULL;
	op = op_at(b, b->len);
	memset(op, 0, sizeof(*op));
	op->type = type;
	op->len = len;
	b->last = b->len;
	b->len += need;
	return op;
}

static void *
op_payload(struct op *op)
{
	return op + 1;
}

/* After a step is queued: a job starts if enough waits and none runs. */
static void
maybe_kick(struct spool *sp)
{
	if (sp->open.len >= SPOOL_CHUNK)
		spool_kick(sp);
}

int
spool_begin(struct spool *sp, unsigned long tag, const char *uid, uint64_t size)
{
	size_t len = uid != NULL ? strlen(uid) + 1 : 0;
	struct op *op;

	if ((op = op_add(&sp->open, OP_BEGIN, len)) == NULL)
		return -1;
	op->tag = tag;
	op->size = size;
	if (len > 0)
		memcpy(op_payload(op), uid, len);
	return 0;
}

int
spool_write(struct spool *sp, const char *data, size_t len)
{
	struct sbuf *b = &sp->open;
	struct op *op, grown;
	size_t old, room;

	if (len == 0)
		return 0;
	/* Bytes after bytes extend the same op. */
	if (b->len > 0 && (op = op_at(b, b->last))->type == OP_DATA) {
		old = op->len;
		grown.len = old + len;
		room = OP_SPACE(&grown) - OP_SPACE(op);
		if (sbuf_room(b, room) == -1)
			return -1;
		op = op_at(b, b->last);
		memcpy((char *)op_payload(op) + old, data, len);
		op->len = grown.len;
		b->len += room;
	} else {
		if ((op = op_add(b, OP_DATA, len)) == NULL)
			return -1;
		memcpy(op_payload(op), data, len);
	}
	maybe_kick(sp);
	return 0;
}

int
spool_end(struct spool *sp, unsigned long tag, uint64_t sent)
{
	struct op *op;

	if ((op = op_add(&sp->open, OP_END, 0)) == NULL)
		return -1;
	op->tag = tag;
	op->size = sent;
	sp->last_end = tag;
	sp->last_end_open = true;
	maybe_kick(sp);
	return 0;
}

/*
 * Out of memory the step is lost, which costs nothing: the next begin and
 * the end of the session give up a message left in hand.
 */
void
spool_abort(struct spool *sp)
{
	if (sp != NULL)
		(void)op_add(&sp->open, OP_ABORT, 0);
}

/*
 * A deliver_gone_fn: the file is removed by the next job. Out of memory
 * it stays, for the stale tmp/ cleanup (36 hours).
 */
static void
gone_later(void *arg, const char *tmp)
{
	struct spool *sp = arg;
	size_t len = strlen(tmp) + 1;
	struct op *op;

	if ((op = op_add(&sp->open, OP_UNLINK, len)) != NULL)
		memcpy(op_payload(op), tmp, len);
}

/* A deliver_gone_fn for the worker thread: removed there and then. */
static void
gone_now(void *arg, const char *tmp)
{
	struct spool *sp = arg;

	deliver_unlink_tmp(sp->d, tmp);
}

int
spool_drop(struct spool *sp, unsigned long tag)
{
	if (deliver_drop_to(sp->d, tag, gone_later, sp) == 0)
		return 0;
	if (sp->last_end_open && sp->last_end == tag) {
		sp->drop_tag = tag;
		return 0;
	}
	errno = ENOENT;
	return -1;
}

void
spool_discard(struct spool *sp)
{
	sp->discarding = true;
	deliver_discard_to(sp->d, gone_later, sp);
}

/* Runs the steps of B, in order (on a worker thread). */
static void
run_ops(struct spool *sp, struct sbuf *b)
{
	struct deliver *d = sp->d;
	struct op *op;
	size_t off;

	for (off = 0; off < b->len; off += OP_SPACE(op)) {
		op = op_at(b, off);
		switch (op->type) {
		case OP_BEGIN:
			/* A message left in hand was given up. */
			deliver_abort(d);
			sp->msg_err = 0;
			if (deliver_begin(d, op->tag,
				op->len > 0 ? op_payload(op) : NULL,
				op->size) == -1)
				sp->msg_err = errno;
			break;
		case OP_DATA:
			if (sp->msg_err == 0 &&
			    deliver_write_inplace(d, op_payload(op), op->len) ==
				-1)
				sp->msg_err = errno;
			break;
		case OP_END:
			if (sp->msg_err != 0) {
				deliver_abort(d);
				op->err = sp->msg_err;
			} else if (deliver_end_aside(d) == -1)
				op->err = errno != 0 ? errno : EIO;
			sp->msg_err = 0;
			break;
		case OP_ABORT:
			deliver_abort(d);
			sp->msg_err = 0;
			break;
		case OP_UNLINK:
			deliver_unlink_tmp(d, op_payload(op));
			break;
		}
	}
}

/*
 * On the loop, with the results of B in: a message that did not reach
 * the batch is told (unless dropped meanwhile), and B is emptied.
 */
static void
report(struct spool *sp, struct sbuf *b)
{
	struct op *op;
	size_t off;
	int err;

	for (off = 0; off < b->len; off += OP_SPACE(op)) {
		op = op_at(b, off);
		if (op->type != OP_END)
			continue;
		if (sp->last_end_open && op->tag == sp->last_end)
			sp->last_end_open = false;
		err = op->err;
		if (err == 0 && sp->take_failed)
			err = ENOMEM;
		if (err == 0)
			continue;
		if (op->tag == sp->drop_tag) {
			sp->drop_tag = 0;
			continue;
		}
		sp->cbs.failed(sp->cbs.arg, op->tag, op->size, err);
	}
	sp->take_failed = false;
	b->len = 0;
}

/* Ended messages into the batch, the one dropped on its way out of it. */
static void
take(struct spool *sp, deliver_gone_fn gone)
{
	if (deliver_take_ended(sp->d, gone, sp) == -1)
		sp->take_failed = true;
	if (sp->discarding)
		deliver_discard_to(sp->d, gone, sp);
	if (sp->drop_tag != 0 &&
	    deliver_drop_to(sp->d, sp->drop_tag, gone, sp) == 0)
		sp->drop_tag = 0;
}

static void
job_run(struct worker_job *job)
{
	struct spool *sp = SPOOL_OF_JOB(job);

	run_ops(sp, &sp->handed);
}

/*
 * Gives back a buffer's memory: a session that waits for its server
 * holds none (a thousand of them would hold megabytes).
 */
static void
sbuf_release(struct sbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static void
job_done(struct worker_job *job)
{
	struct spool *sp = SPOOL_OF_JOB(job);

	take(sp, gone_later);
	report(sp, &sp->handed);
	if (sp->open.len == 0) {
		sbuf_release(&sp->open);
		sbuf_release(&sp->handed);
	}
	spool_kick(sp);
	sp->cbs.ran(sp->cbs.arg);
}

void
spool_kick(struct spool *sp)
{
	struct sbuf t;

	if (sp == NULL || sp->open.len == 0 || worker_busy(&sp->job))
		return;
	t = sp->handed;
	sp->handed = sp->open;
	sp->open = t;
	sp->open.len = 0;
	worker_submit(sp->w, &sp->job);
}

bool
spool_full(const struct spool *sp)
{
	return sp != NULL && sp->open.len >= SPOOL_FULL;
}

bool
spool_busy(const struct spool *sp)
{
	return sp != NULL && worker_busy(&sp->job);
}

bool
spool_idle(const struct spool *sp)
{
	return sp == NULL || (!worker_busy(&sp->job) && sp->open.len == 0);
}

bool
spool_cancel(struct spool *sp)
{
	if (sp == NULL || !worker_busy(&sp->job))
		return true;
	return worker_cancel(sp->w, &sp->job);
}

void
spool_final(struct spool *sp)
{
	if (sp == NULL)
		return;
	run_ops(sp, &sp->open);
	deliver_abort(sp->d);
	take(sp, gone_now);
}

void
spool_final_report(struct spool *sp)
{
	if (sp != NULL)
		report(sp, &sp->open);
}
