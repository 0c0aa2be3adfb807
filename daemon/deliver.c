/*
 * The delivery batch: tmp/ file, intent, commit, link, new/ fsync, tmp/
 * name removed, intent completed. See deliver.h for why in this order.
 * Also the only path from a poll to the Maildir and the state it owns.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deliver.h"
#include "folder.h"
#include "maildir.h"
#include "state.h"
#include "testhook.h"
#include "uid.h"

struct item {
	unsigned long tag;
	bool has_uid;
	bool recorded;	  /* its intent is in the state (not always durable) */
	bool taken;	  /* hand-off: the target has it */
	unsigned strikes; /* hand-off: its strikes before the intent */
	time_t last;	  /* and the latest one's time */
	uint64_t size;	  /* as LIST said; DELIVER_SIZE_UNKNOWN if not known */
	uint64_t stored;  /* bytes in tmp/ */
	char uid[UID_MAX + 1];
	char tmp[MAILDIR_NAME_SIZE];
	char final[MAILDIR_NAME_SIZE];
};

struct batch {
	struct item *v;
	size_t n, cap;
	uint64_t bytes; /* their stored bytes (FILL only) */
};

/*
 * Two batches, so that the next one fills while the last is made durable:
 * FILL is the caller's (deliver_begin() to deliver_end(), deliver_drop(),
 * or the hand-offs), SEALED the flush's. deliver_seal() moves FILL to
 * SEALED on the caller's thread; from then until deliver_flush()
 * returns, the flush (on another thread) touches SEALED, the state and
 * the Maildir's tmp/ and new/, and the caller only FILL, MSG, CUR and
 * tmp/ files of their own. That split is the whole of the locking: no
 * call made while a flush runs reads the state (whether a UID is
 * recorded is asked at flush time, in record_intents()).
 *
 * A writer on a third thread (spool.c) may own MSG, CUR and ENDED: it
 * begins, writes and ends messages with deliver_end_aside(), and the
 * caller moves ENDED into FILL (deliver_take_ended()) only while the
 * writer is idle.
 */
struct deliver {
	struct maildir *md;
	struct state *st;
	struct maildir_msg *msg; /* the message being written */
	struct item cur;
	struct batch fill, sealed;
	struct batch ended;  /* the writer's (see above) */
	bool is_sealed;	     /* deliver_seal() ran since the last flush */
	bool handoff;	     /* the state only: see deliver.h */
	size_t ntaken;	     /* hand-offs taken, not yet flushed */
	size_t unsure;	     /* hand-offs a crash interrupted */
	const char *account; /* the configuration's, for test hooks */
};

/*
 * The names a hand-off's intent carries in place of tmp/ and new/ ones:
 * valid file names (state.h), never a Maildir name (those start with a
 * digit), so recovery tells the two kinds apart.
 */
#define HANDOFF_TMP   "handoff"
#define HANDOFF_FINAL "target"

/*
 * Puts PREFIX before the message WHY of a part that failed, keeping
 * errno.
 */
static void
open_fail(char *err, size_t errlen, const char *prefix, const char *why)
{
	int saved = errno;

	snprintf(err, errlen, "%s%s", prefix, why);
	errno = saved;
}

/* The Maildir W names, or its Maildir++ folder. */
static struct maildir *
open_maildir(const struct deliver_where *w, char *why, size_t whylen)
{
	char dir[FOLDER_DIR_SIZE];
	const char *bad;

	if (w->folder == NULL)
		return maildir_open(w->maildir, why, whylen);
	if (folder_encode(w->folder, dir, sizeof(dir), &bad) == -1) {
		snprintf(why, whylen, "folder %s: %s", w->folder, bad);
		errno = EINVAL;
		return NULL;
	}
	return maildir_open_folder(w->maildir, dir, why, whylen);
}

struct deliver *
deliver_open(const struct deliver_where *w, char *err, size_t errlen)
{
	struct deliver *d;
	char why[512];
	int saved;

	if ((d = calloc(1, sizeof(*d))) == NULL) {
		open_fail(err, errlen, "", "out of memory");
		return NULL;
	}
	d->handoff = w->handoff;
	d->account = w->account;
	if (!d->handoff &&
	    (d->md = open_maildir(w, why, sizeof(why))) == NULL) {
		/* EWOULDBLOCK says "busy": only the state's lock may. */
		if (errno == EWOULDBLOCK)
			errno = EIO;
		open_fail(err, errlen, "maildir: ", why);
		goto fail;
	}
	if (d->md != NULL)
		maildir_set_sync(d->md,
		    w->sync_each_file ? MAILDIR_SYNC_FILE : MAILDIR_SYNC_BATCH);
	if ((d->st = state_open_mailbox(w->state_dir, w->account, w->host,
		 w->port, w->user, why, sizeof(why))) == NULL) {
		open_fail(err, errlen, "state: ", why);
		goto fail;
	}
	return d;
fail:
	saved = errno;
	deliver_free(&d);
	errno = saved;
	return NULL;
}

void
deliver_free(struct deliver **dp)
{
	struct deliver *d = *dp;

	if (d == NULL)
		return;
	if (d->msg != NULL)
		maildir_abort(&d->msg);
	free(d->fill.v);
	free(d->sealed.v);
	free(d->ended.v);
	maildir_close(&d->md);
	state_close(&d->st);
	free(d);
	*dp = NULL;
}

const char *
deliver_notice(const struct deliver *d)
{
	return state_load_notice(d->st);
}

const char *
deliver_sync_fallback(const struct deliver *d)
{
	return d->md != NULL ? maildir_sync_fallback(d->md) : NULL;
}

int
deliver_free_space(struct deliver *d, uint64_t *bytes)
{
	if (d->md == NULL) {
		errno = ENOTSUP;
		return -1;
	}
	return maildir_free_space(d->md, bytes);
}

/*
 * The message in hand is TAG (UID, SIZE), if USABLE and the UID is one;
 * 0, or -1 with errno EINVAL.
 */
static int
cur_start(struct deliver *d, bool usable, unsigned long tag, const char *uid,
    uint64_t size)
{
	if (!usable || (uid != NULL && strlen(uid) > UID_MAX)) {
		errno = EINVAL;
		return -1;
	}
	memset(&d->cur, 0, sizeof(d->cur));
	d->cur.tag = tag;
	d->cur.size = size;
	if (uid != NULL) {
		d->cur.has_uid = true;
		strcpy(d->cur.uid, uid);
	}
	return 0;
}

int
deliver_begin(
    struct deliver *d, unsigned long tag, const char *uid, uint64_t size)
{
	if (cur_start(d, d->msg == NULL && d->md != NULL, tag, uid, size) == -1)
		return -1;
	if ((d->msg = maildir_begin(d->md)) == NULL)
		return -1;
	return 0;
}

int
deliver_write(struct deliver *d, const char *data, size_t len)
{
	if (d->msg == NULL) {
		errno = EINVAL;
		return -1;
	}
	return maildir_write(d->msg, data, len);
}

int
deliver_write_inplace(struct deliver *d, char *data, size_t len)
{
	if (d->msg == NULL) {
		errno = EINVAL;
		return -1;
	}
	return maildir_write_inplace(d->msg, data, len);
}

void
deliver_abort(struct deliver *d)
{
	if (d->msg != NULL)
		maildir_abort(&d->msg);
}

size_t
deliver_pending(const struct deliver *d)
{
	return d->handoff ? d->ntaken : d->fill.n;
}

/* Makes room in B for N more items. */
static int
batch_room(struct batch *b, size_t n)
{
	struct item *v;
	size_t cap = b->cap;

	if (b->n + n <= cap)
		return 0;
	/* Small at first: most polls bring a few messages. */
	while (cap < b->n + n)
		cap = cap ? 2 * cap : 4;
	if ((v = realloc(b->v, cap * sizeof(*v))) == NULL)
		return -1;
	b->v = v;
	b->cap = cap;
	return 0;
}

/* Adds IT to B. */
static int
batch_add(struct batch *b, const struct item *it)
{
	if (batch_room(b, 1) == -1)
		return -1;
	b->v[b->n++] = *it;
	b->bytes += it->stored;
	return 0;
}

/* Takes item I out of batch B, keeping the order of the others. */
static void
batch_remove(struct batch *b, size_t i)
{
	b->bytes -= b->v[i].stored;
	memmove(&b->v[i], &b->v[i + 1], (b->n - i - 1) * sizeof(b->v[i]));
	b->n--;
}

size_t
deliver_seal(struct deliver *d)
{
	return deliver_seal_some(d, SIZE_MAX, UINT64_MAX);
}

/* How many of B's first items a batch of at most MOST and BYTES takes. */
static size_t
batch_cut(const struct batch *b, size_t most, uint64_t bytes)
{
	uint64_t sum = 0;
	size_t k;

	for (k = 0; k < b->n && k < most && sum < bytes; k++)
		sum += b->v[k].stored;
	return k;
}

size_t
deliver_seal_some(struct deliver *d, size_t most, uint64_t bytes)
{
	struct batch *f = &d->fill, *s = &d->sealed, t;
	size_t k, i;

	/* A flush always leaves SEALED empty; hand-offs use FILL alone. */
	if (!d->handoff && s->n == 0) {
		k = batch_cut(f, most, bytes);
		/* Out of memory, the whole batch: larger, never wrong. */
		if (k == f->n || batch_room(s, k) == -1) {
			t = *s;
			*s = *f;
			*f = t;
			f->bytes = 0;
		} else {
			memcpy(s->v, f->v, k * sizeof(*f->v));
			s->n = k;
			s->bytes = 0;
			for (i = 0; i < k; i++)
				s->bytes += f->v[i].stored;
			f->bytes -= s->bytes;
			memmove(f->v, f->v + k, (f->n - k) * sizeof(*f->v));
			f->n -= k;
		}
	}
	d->is_sealed = true;
	return d->handoff ? d->ntaken : s->n;
}

/* A deliver_gone_fn that removes the file there and then. */
static void
unlink_now(void *arg, const char *tmp)
{
	struct deliver *d = arg;

	maildir_drop_tmp(d->md, tmp);
}

void
deliver_discard(struct deliver *d)
{
	deliver_discard_to(d, unlink_now, d);
}

void
deliver_discard_to(struct deliver *d, deliver_gone_fn gone, void *arg)
{
	size_t i;

	if (d->handoff)
		return;
	for (i = 0; i < d->fill.n; i++)
		gone(arg, d->fill.v[i].tmp);
	d->fill.n = 0;
	d->fill.bytes = 0;
}

uint64_t
deliver_pending_bytes(const struct deliver *d)
{
	return d->handoff ? 0 : d->fill.bytes;
}

/* Ends the message in hand into B. */
static int
end_into(struct deliver *d, struct batch *b, unsigned long long *size)
{
	struct item *c = &d->cur;
	int saved;

	if (d->msg == NULL) {
		errno = EINVAL;
		return -1;
	}
	c->stored = maildir_msg_size(d->msg);
	if (size != NULL)
		*size = c->stored;
	if (maildir_finish(&d->msg, c->tmp, sizeof(c->tmp), c->final,
		sizeof(c->final)) == -1)
		return -1;
	TESTHOOK_CRASH_POINT("finished in tmp/");
	if (batch_add(b, c) == -1) {
		saved = errno;
		maildir_drop_tmp(d->md, c->tmp);
		errno = saved;
		return -1;
	}
	return 0;
}

int
deliver_end(struct deliver *d, unsigned long long *size)
{
	return end_into(d, &d->fill, size);
}

int
deliver_end_aside(struct deliver *d)
{
	return end_into(d, &d->ended, NULL);
}

int
deliver_take_ended(struct deliver *d, deliver_gone_fn gone, void *arg)
{
	struct batch *e = &d->ended;
	size_t i;

	if (e->n == 0)
		return 0;
	if (batch_room(&d->fill, e->n) == -1) {
		for (i = 0; i < e->n; i++)
			gone(arg, e->v[i].tmp);
		e->n = 0;
		e->bytes = 0;
		return -1;
	}
	memcpy(&d->fill.v[d->fill.n], e->v, e->n * sizeof(*e->v));
	d->fill.n += e->n;
	d->fill.bytes += e->bytes;
	e->n = 0;
	e->bytes = 0;
	return 0;
}

void
deliver_unlink_tmp(struct deliver *d, const char *tmp)
{
	if (d->md != NULL)
		maildir_drop_tmp(d->md, tmp);
}

int
deliver_drop(struct deliver *d, unsigned long tag)
{
	return deliver_drop_to(d, tag, unlink_now, d);
}

int
deliver_drop_to(
    struct deliver *d, unsigned long tag, deliver_gone_fn gone, void *arg)
{
	struct batch *b = &d->fill;
	size_t i;

	if (d->handoff) {
		errno = ENOENT;
		return -1;
	}
	for (i = b->n; i-- > 0;)
		if (b->v[i].tag == tag && !b->v[i].recorded) {
			gone(arg, b->v[i].tmp);
			batch_remove(b, i);
			return 0;
		}
	errno = ENOENT;
	return -1;
}

static int
flush_fail(char *err, size_t errlen, const char *what)
{
	int saved = errno;

	snprintf(err, errlen, "%s: %s", what, strerror(saved));
	errno = saved;
	return -1;
}

/*
 * Discards the batch's files that no intent names: a failed sync may have
 * lost their data, so they are fetched again.
 */
static void
drop_unrecorded(struct deliver *d, struct batch *b)
{
	size_t i, kept = 0;

	for (i = 0; i < b->n; i++)
		if (b->v[i].recorded)
			b->v[kept++] = b->v[i];
		else
			maildir_drop_tmp(d->md, b->v[i].tmp);
	b->n = kept;
}

/*
 * Records the intents of the batch, each naming a file that is durable in
 * tmp/ by now (recorded earlier, an intent could reach the disk before
 * its file's data did). A UID recorded already (it cannot be, as the plan
 * fetches no delivered UID) keeps its earlier copy: this one is dropped.
 * On failure the files not yet named by an intent are dropped and the
 * batch keeps those that are: they must stay until published.
 */
static int
record_intents(struct deliver *d, struct batch *b)
{
	struct item *it;
	size_t i;
	int saved;

	for (i = 0; i < b->n; i++) {
		it = &b->v[i];
		if (!it->has_uid || it->recorded)
			continue;
		if ((it->size == DELIVER_SIZE_UNKNOWN
			    ? state_record_pending(d->st, it->uid,
				  TESTHOOK_NOW(), it->tmp, it->final)
			    : state_record_pending_size(d->st, it->uid,
				  TESTHOOK_NOW(), it->tmp, it->final,
				  it->size)) == 0) {
			it->recorded = true;
			continue;
		}
		saved = errno;
		if (saved != EEXIST) {
			drop_unrecorded(d, b);
			errno = saved;
			return -1;
		}
		maildir_drop_tmp(d->md, it->tmp);
		batch_remove(b, i);
		i--;
	}
	return 0;
}

/*
 * A failed flush is final for its batch: the step that failed (a full or
 * read-only file system, an EIO whose error the kernel reports once) is
 * not tried again in this session, which would spin on the same error.
 * Files no intent names are dropped (a failed sync may have lost their
 * data: they are fetched again); those an intent names stay in tmp/ for
 * the next deliver_recover(), which publishes them if the intent reached
 * the disk and otherwise leaves them to the stale tmp/ cleanup.
 */
static int
flush_abandon(struct deliver *d, struct batch *b, char *err, size_t errlen,
    const char *what)
{
	int saved = errno;

	drop_unrecorded(d, b);
	b->n = 0;
	errno = saved;
	return flush_fail(err, errlen, what);
}

/* Makes the files of the batch durable in tmp/. */
static int
sync_batch(struct deliver *d, const struct batch *b)
{
	const char **names;
	size_t i;
	dev_t dev;
	int rc;

	if ((names = calloc(b->n, sizeof(*names))) == NULL)
		return -1;
	for (i = 0; i < b->n; i++)
		names[i] = b->v[i].tmp;
	TESTHOOK_HOLD("batch sync", d->account);
	rc = maildir_sync_tmp(d->md, names, b->n);
	free(names);
	/* The fresh state's file, made after the Maildir's open, with it. */
	if (rc == 0 && maildir_syncs_fs(d->md, &dev))
		state_fs_synced(d->st, dev);
	return rc;
}

/*
 * The hand-off batch: the taken messages recorded delivered, and with
 * them any intent announced since the last commit made durable, in one
 * commit. A failed commit is final for the taken ones (not deleted, their
 * intents left to the next recovery); the announced stay.
 */
static void withdraw(struct deliver *d, const struct item *it);

static int
flush_handoffs(struct deliver *d, void (*durable)(void *arg, unsigned long tag),
    void *arg, char *err, size_t errlen)
{
	size_t i, kept = 0;
	int rc = 0;

	for (i = 0; i < d->fill.n; i++)
		if (d->fill.v[i].taken && d->fill.v[i].has_uid)
			state_complete(d->st, d->fill.v[i].uid);
	if (TESTHOOK_FAIL("state commit") || state_commit(d->st) == -1)
		rc = flush_fail(err, errlen, "state commit");
	else
		TESTHOOK_CRASH_POINT("hand-offs committed");
	for (i = 0; i < d->fill.n; i++) {
		if (!d->fill.v[i].taken)
			d->fill.v[kept++] = d->fill.v[i];
		else if (rc == 0)
			durable(arg, d->fill.v[i].tag);
	}
	d->fill.n = kept;
	d->ntaken = 0;
	return rc;
}

int
deliver_announce(
    struct deliver *d, unsigned long tag, const char *uid, uint64_t size)
{
	if (cur_start(d, d->handoff, tag, uid, size) == -1)
		return -1;
	if (uid != NULL) {
		/* An intent ends strikes; a withdrawal must not. */
		d->cur.strikes = state_strikes(d->st, uid, &d->cur.last);
		if ((size == DELIVER_SIZE_UNKNOWN
			    ? state_record_pending(d->st, uid, TESTHOOK_NOW(),
				  HANDOFF_TMP, HANDOFF_FINAL)
			    : state_record_pending_size(d->st, uid,
				  TESTHOOK_NOW(), HANDOFF_TMP, HANDOFF_FINAL,
				  size)) == -1)
			return -1;
		d->cur.recorded = true;
	}
	if (batch_add(&d->fill, &d->cur) == -1) {
		if (uid != NULL)
			withdraw(d, &d->cur);
		return -1;
	}
	return 0;
}

/*
 * Takes back the intent of IT: its message is not delivered. Its strikes
 * come back as they were (count and time), so a message that keeps
 * failing still reaches quarantine (plan.h).
 */
static void
withdraw(struct deliver *d, const struct item *it)
{
	unsigned i;

	if (!it->has_uid)
		return;
	state_complete(d->st, it->uid);
	state_forget(d->st, it->uid);
	for (i = 0; i < it->strikes; i++)
		state_strike(d->st, it->uid, it->last);
}

int
deliver_handed(struct deliver *d, unsigned long tag, bool taken)
{
	size_t i;

	for (i = 0; i < d->fill.n; i++)
		if (d->fill.v[i].tag == tag && !d->fill.v[i].taken)
			break;
	if (!d->handoff || i == d->fill.n) {
		errno = ENOENT;
		return -1;
	}
	if (taken) {
		d->fill.v[i].taken = true;
		d->ntaken++;
		return 0;
	}
	withdraw(d, &d->fill.v[i]);
	batch_remove(&d->fill, i);
	return 0;
}

void
deliver_withdraw(struct deliver *d)
{
	size_t i, kept = 0;

	if (!d->handoff)
		return;
	for (i = 0; i < d->fill.n; i++)
		if (d->fill.v[i].taken)
			d->fill.v[kept++] = d->fill.v[i];
		else
			withdraw(d, &d->fill.v[i]);
	d->fill.n = kept;
}

size_t
deliver_unsure(const struct deliver *d)
{
	return d->unsure;
}

/* Makes batch B durable, in the order deliver.h gives. */
static int
flush_batch(struct deliver *d, struct batch *b,
    void (*durable)(void *arg, unsigned long tag), void *arg, char *err,
    size_t errlen)
{
	size_t i;

	if (TESTHOOK_FAIL("sync of tmp/") || sync_batch(d, b) == -1)
		return flush_abandon(d, b, err, errlen, "sync of tmp/");
	TESTHOOK_CRASH_POINT("tmp/ synced");
	if (record_intents(d, b) == -1)
		return flush_abandon(d, b, err, errlen, "state");
	if (TESTHOOK_FAIL("state commit") || state_commit(d->st) == -1)
		return flush_abandon(d, b, err, errlen, "state commit");
	TESTHOOK_CRASH_POINT("intents committed");
	for (i = 0; i < b->n; i++) {
		if (TESTHOOK_FAIL("link into new/") ||
		    maildir_publish(d->md, b->v[i].tmp, b->v[i].final) == -1)
			return flush_abandon(
			    d, b, err, errlen, "link into new/");
		TESTHOOK_CRASH_POINT("linked into new/");
	}
	if (TESTHOOK_FAIL("fsync of new/") || maildir_sync(d->md) == -1)
		return flush_abandon(d, b, err, errlen, "fsync of new/");
	TESTHOOK_CRASH_POINT("new/ synced");
	for (i = 0; i < b->n; i++) {
		/* A tmp/ name left behind keeps its intent for recovery. */
		if (maildir_drop_tmp(d->md, b->v[i].tmp) == 0 &&
		    b->v[i].has_uid)
			state_complete(d->st, b->v[i].uid);
		TESTHOOK_CRASH_POINT("tmp/ name removed");
	}
	for (i = 0; i < b->n; i++)
		durable(arg, b->v[i].tag);
	b->n = 0;
	return 0;
}

int
deliver_flush(struct deliver *d, void (*durable)(void *arg, unsigned long tag),
    void *arg, char *err, size_t errlen)
{
	/* Sealed by the caller, or (one thread alone) now. */
	if (!d->is_sealed)
		deliver_seal(d);
	d->is_sealed = false;
	if (d->handoff)
		return flush_handoffs(d, durable, arg, err, errlen);
	if (d->sealed.n == 0)
		return 0;
	return flush_batch(d, &d->sealed, durable, arg, err, errlen);
}

/* ---- recovery ---- */

enum pend_fate {
	PEND_PUBLISHED, /* linked into new/ from tmp/ now */
	PEND_DELIVERED, /* already in new/ or cur/ */
	PEND_GONE,	/* tmp/ file and message both gone */
};

struct pend {
	char uid[UID_MAX + 1];
	char tmp[MAILDIR_NAME_SIZE];
	char final[MAILDIR_NAME_SIZE];
	enum pend_fate fate;
};

struct pend_list {
	struct pend *v;
	size_t n, cap;
	struct pend *hand; /* hand-offs (only the UID is used) */
	size_t nhand, hcap;
	bool no_maildir; /* hand-off mode: Maildir intents stay pending */
	size_t left;
	bool oom;
};

static void
collect_pending(void *arg, const char *uid, const char *tmp, const char *final)
{
	struct pend_list *l = arg;
	struct pend *v;

	/* A hand-off's intent: withdrawn by deliver_recover(). */
	if (strcmp(tmp, HANDOFF_TMP) == 0 &&
	    strcmp(final, HANDOFF_FINAL) == 0) {
		if (l->nhand == l->hcap) {
			l->hcap = l->hcap ? 2 * l->hcap : 16;
			if ((v = realloc(l->hand, l->hcap * sizeof(*v))) ==
			    NULL) {
				l->oom = true;
				return;
			}
			l->hand = v;
		}
		snprintf(l->hand[l->nhand].uid, sizeof(l->hand[l->nhand].uid),
		    "%s", uid);
		l->nhand++;
		return;
	}
	/* A Maildir intent without the Maildir: left for when it is back. */
	if (l->no_maildir) {
		l->left++;
		return;
	}

	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 16;
		if ((v = realloc(l->v, l->cap * sizeof(*v))) == NULL) {
			l->oom = true;
			return;
		}
		l->v = v;
	}
	snprintf(l->v[l->n].uid, sizeof(l->v[l->n].uid), "%s", uid);
	snprintf(l->v[l->n].tmp, sizeof(l->v[l->n].tmp), "%s", tmp);
	snprintf(l->v[l->n].final, sizeof(l->v[l->n].final), "%s", final);
	l->n++;
}

/*
 * Publishes the pending intents whose tmp/ file is still there; for the
 * others, looks up in one scan whether the message is in new/ or cur/.
 */
static int
recover_fates(struct deliver *d, struct pend_list *l, char *err, size_t errlen)
{
	const char **names;
	size_t i, n = 0;
	int *found, r = -1;

	names = calloc(l->n + 1, sizeof(*names));
	found = calloc(l->n + 1, sizeof(*found));
	if (names == NULL || found == NULL) {
		errno = ENOMEM;
		flush_fail(err, errlen, "recovery");
		goto out;
	}
	for (i = 0; i < l->n; i++) {
		if (!maildir_tmp_exists(d->md, l->v[i].tmp)) {
			l->v[i].fate = PEND_GONE; /* until looked up */
			names[n++] = l->v[i].final;
			continue;
		}
		if (maildir_publish(d->md, l->v[i].tmp, l->v[i].final) == -1) {
			flush_fail(err, errlen, "recovery: link");
			goto out;
		}
		l->v[i].fate = PEND_PUBLISHED;
	}
	if (n > 0 && maildir_delivered_many(d->md, names, n, found) == -1) {
		flush_fail(err, errlen, "recovery: look-up");
		goto out;
	}
	/*
	 * Neither the tmp/ file nor the message: something else removed
	 * both (a tmp/ cleaner after 36 h, the user). Fetching it again
	 * risks a duplicate; calling it delivered risks a loss.
	 */
	for (i = n = 0; i < l->n; i++)
		if (l->v[i].fate != PEND_PUBLISHED)
			l->v[i].fate = found[n++] ? PEND_DELIVERED : PEND_GONE;
	r = 0;
out:
	free(names);
	free(found);
	return r;
}

static bool
keep_pending(void *arg, const char *tmpname)
{
	return state_is_pending_tmp(arg, tmpname);
}

int
deliver_recover(struct deliver *d, char *err, size_t errlen)
{
	struct pend_list l = {.no_maildir = d->md == NULL};
	size_t i;
	int r = -1;

	state_foreach_pending(d->st, collect_pending, &l);
	if (l.oom) {
		errno = ENOMEM;
		flush_fail(err, errlen, "recovery");
		goto out;
	}
	/* Whether the target took these is not known: fetched again. */
	for (i = 0; i < l.nhand; i++) {
		state_complete(d->st, l.hand[i].uid);
		state_forget(d->st, l.hand[i].uid);
	}
	d->unsure = l.nhand;
	if (l.nhand > 0 && state_commit(d->st) == -1) {
		flush_fail(err, errlen, "recovery: state commit");
		goto out;
	}
	if (d->md == NULL) {
		r = 0;
		goto out;
	}
	if (l.n > 0 && recover_fates(d, &l, err, errlen) == -1)
		goto out;
	if (l.n > 0 && maildir_sync(d->md) == -1) {
		flush_fail(err, errlen, "recovery: fsync of new/");
		goto out;
	}
	for (i = 0; i < l.n; i++) {
		if (l.v[i].fate == PEND_PUBLISHED &&
		    maildir_drop_tmp(d->md, l.v[i].tmp) == -1)
			continue;
		state_complete(d->st, l.v[i].uid);
		if (l.v[i].fate == PEND_GONE)
			state_forget(d->st, l.v[i].uid);
	}
	if (l.n > 0 && state_commit(d->st) == -1) {
		flush_fail(err, errlen, "recovery: state commit");
		goto out;
	}
	maildir_clean_tmp(d->md, keep_pending, d->st);
	r = (int)l.n;
out:
	free(l.v);
	free(l.hand);
	return r;
}

/* ---- the state outside deliveries ---- */

bool
deliver_known(const struct deliver *d, const char *uid, time_t *first_seen,
    uint64_t *size)
{
	if (!state_has(d->st, uid, first_seen))
		return false;
	if (size != NULL && !state_size(d->st, uid, size))
		*size = DELIVER_SIZE_UNKNOWN;
	return true;
}

unsigned
deliver_strikes(const struct deliver *d, const char *uid, time_t *last)
{
	return state_strikes(d->st, uid, last);
}

int
deliver_strike(struct deliver *d, const char *uid, time_t now)
{
	return state_strike(d->st, uid, now);
}

int
deliver_note(struct deliver *d, const char *uid, time_t now)
{
	return state_note(d->st, uid, now);
}

int
deliver_record(struct deliver *d, const char *uid, time_t now)
{
	return state_record(d->st, uid, now);
}

int
deliver_forget(struct deliver *d, const char *uid)
{
	return state_forget(d->st, uid);
}

int
deliver_commit(struct deliver *d)
{
	return state_commit(d->st);
}

struct prune {
	bool (*listed)(void *arg, const char *uid);
	void *arg;
	char **gone;
	size_t ngone, cap;
};

/*
 * Copies the UIDs to forget: the state may not change while it lists
 * them. Out of memory, the rest stay for the next prune.
 */
static void
collect_gone(void *arg, const char *uid, time_t first_seen)
{
	struct prune *p = arg;
	char **v;
	size_t cap;

	if (p->listed(p->arg, uid))
		return;
	if (p->ngone == p->cap) {
		cap = p->cap ? 2 * p->cap : 64;
		if ((v = realloc(p->gone, cap * sizeof(*v))) == NULL)
			return;
		p->gone = v;
		p->cap = cap;
	}
	if ((p->gone[p->ngone] = strdup(uid)) != NULL)
		p->ngone++;
}

void
deliver_prune(
    struct deliver *d, bool (*listed)(void *arg, const char *uid), void *arg)
{
	struct prune p = {.listed = listed, .arg = arg};
	size_t i;

	state_foreach(d->st, collect_gone, &p);
	state_prune_strikes(d->st, listed, arg);
	/* A UID whose intent is pending is refused: it waits for recovery. */
	for (i = 0; i < p.ngone; i++) {
		state_forget(d->st, p.gone[i]);
		free(p.gone[i]);
	}
	free(p.gone);
}
