/*
 * maildir: delivery of messages into a Maildir, streamed, in steps that
 * let a caller put its own commit point (the state journal's intent
 * record) between "the file is durable in tmp/" and "the file is in new/".
 *
 * Delivery of a batch, with a state (see state.h):
 *
 *	maildir_begin, maildir_write...		into tmp/
 *	maildir_finish				closed; names known
 *	maildir_sync_tmp			the batch durable in tmp/
 *	state_record_pending			intent, in memory
 *	state_commit				THE commit point
 *	maildir_publish				linked into new/
 *	maildir_sync				new/ durable
 *	maildir_drop_tmp			tmp/ name removed
 *	state_complete				intent done
 *
 * At any instant after state_commit() the message survives a crash as
 * tmp/TMPNAME, or as a durable new/FINALNAME, or both. A caller without a
 * state (no UIDL) runs the same steps without the state calls.
 *
 * Recovery, at start, after opening the Maildir and the state: for each
 * pending intent whose tmp/ file exists (maildir_tmp_exists), publish it;
 * then one maildir_sync(), maildir_drop_tmp() of those, state_complete()
 * of every intent, state_commit(). An intent whose tmp/ file is gone had
 * reached maildir_drop_tmp(), so its message is in new/ (or the user has
 * moved it on). Only then maildir_clean_tmp(), keeping any tmp/ file a
 * still pending intent names.
 *
 * Names given back to this module (TMPNAME, FINALNAME) may come from the
 * journal on disk, so they are checked before use: 1 to NAME_MAX bytes in
 * 0x21-0x7E, no '/', not "." or "..". A name failing that is EINVAL.
 */
#ifndef POPFETCHD_MAILDIR_H
#define POPFETCHD_MAILDIR_H

#include <sys/types.h>

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Room for any file name this module makes or accepts, with its NUL. */
#define MAILDIR_NAME_SIZE (NAME_MAX + 1)

struct maildir;
struct maildir_msg;

/*
 * Opens the Maildir at PATH, creating it (and tmp/ new/ cur/, mode 0700)
 * if missing, but only inside a directory that exists: a missing parent
 * (a typo, a file system not mounted) fails with ENOENT and "parent
 * directory ... does not exist", so that mail is never delivered where
 * nobody will look. It does not clean tmp/: that is maildir_clean_tmp(),
 * to be called once the caller knows which tmp/ files its pending intents
 * still need. The directories it makes are durable from the first
 * maildir_sync_tmp() or maildir_sync() on, not before: nothing may rely
 * on them until then.
 * Returns NULL with errno set on failure; ERRBUF (if not NULL) then says
 * what failed.
 */
struct maildir *maildir_open(const char *path, char *errbuf, size_t errlen);

/*
 * Opens the Maildir++ folder DIRNAME (".Name", as folder_encode() writes
 * it) of the Maildir at ROOT: ROOT is opened as maildir_open() does
 * (created if missing, inside an existing directory), then ROOT/DIRNAME
 * likewise, with the empty "maildirfolder" marker file Maildir++ asks
 * for in it. NULL with errno set (EINVAL for a DIRNAME not starting with
 * a dot or not a valid name, see above) and ERRBUF saying what failed.
 */
struct maildir *maildir_open_folder(
    const char *root, const char *dirname, char *errbuf, size_t errlen);

/*
 * How finished messages become durable in tmp/. maildir_finish() only
 * writes and closes (it runs where waiting is costly); maildir_sync_tmp()
 * does the waiting. MAILDIR_SYNC_BATCH (the default): one syncfs(2)
 * covers every message finished so far (the file system's whole dirty
 * data with them). MAILDIR_SYNC_FILE: an fsync of each file named, then
 * one of tmp/.
 */
enum maildir_sync {
	MAILDIR_SYNC_BATCH,
	MAILDIR_SYNC_FILE,
};

/*
 * Sets how messages become durable (MAILDIR_SYNC_BATCH until set). On a
 * file system where syncfs(2) does not reach stable storage (network and
 * FUSE file systems, see maildir_syncfs_unreliable()) MAILDIR_SYNC_BATCH
 * becomes MAILDIR_SYNC_FILE, and maildir_sync_fallback() says so.
 */
void maildir_set_sync(struct maildir *md, enum maildir_sync how);

/*
 * If MAILDIR_SYNC_BATCH was asked for (or left as the default) but
 * MAILDIR_SYNC_FILE is used instead, the short name of the file system
 * type that made it so ("nfs", "fuse", ...), a static string; otherwise
 * NULL.
 */
const char *maildir_sync_fallback(const struct maildir *md);

/*
 * The short name of the file system type FS_TYPE (statfs(2) f_type) if
 * syncfs(2) cannot be trusted there, NULL otherwise. Exposed for tests.
 */
const char *maildir_syncfs_unreliable(unsigned long fs_type);

/*
 * Makes the N messages maildir_finish() completed as TMPNAMES durable
 * under their tmp/ names (in MAILDIR_SYNC_BATCH mode, every message
 * finished so far, whatever the names), and the directories the open
 * made with them. Returns 0, or -1 with errno set
 * (a writeback error: the messages since the last successful call must
 * be taken as lost).
 *
 * A failed sync (this one or maildir_sync(); any errno but EINTR) is
 * final for MD: from then on maildir_sync_tmp(), maildir_sync() and
 * maildir_publish() fail with its errno, as the kernel reports a
 * writeback error only once and a retry would wrongly succeed. Close MD
 * and open the Maildir again (a new poll) to start over.
 */
int maildir_sync_tmp(struct maildir *md, const char *const *tmpnames, size_t n);

/*
 * Whether maildir_sync_tmp() syncs the whole file system of MD (in
 * MAILDIR_SYNC_BATCH mode): then, when it returns 0, every file written
 * on that file system since MD was opened is durable too, entries
 * included. *DEV gets the file system's device. False if that cannot be
 * told.
 */
bool maildir_syncs_fs(const struct maildir *md, dev_t *dev);

/* Closes the Maildir. Open messages must have been finished or aborted. */
void maildir_close(struct maildir **md);

/*
 * Removes regular files in tmp/ not modified for 36 hours (the Maildir
 * rule for leftovers of a crash), except those for which KEEP (if not
 * NULL) returns true: a tmp/ file that a pending intent names is the only
 * copy of a delivered message until it is published, however old.
 * KEEP gets ARG and the bare file name, valid during the call only.
 * Best effort: a file that cannot be removed is tried again next time.
 * Returns the number of files removed, or -1 with errno set if tmp/
 * cannot be read.
 */
int maildir_clean_tmp(struct maildir *md,
    bool (*keep)(void *arg, const char *tmpname), void *arg);

/* Starts a new message in tmp/. NULL with errno set on failure. */
struct maildir_msg *maildir_begin(struct maildir *md);

/*
 * Appends LEN bytes of the message, converting CRLF to LF (a CR split from
 * its LF across two calls is handled). Returns 0, or -1 with errno set
 * (ENOSPC, EDQUOT, EIO, EFBIG...); after an error only maildir_abort() is
 * allowed.
 */
int maildir_write(struct maildir_msg *msg, const char *data, size_t len);

/*
 * As maildir_write(), converting in DATA's own memory, which it may
 * overwrite: no copy, and no write buffer for the message.
 */
int maildir_write_inplace(struct maildir_msg *msg, char *data, size_t len);

/*
 * Completes the message in tmp/: writes what is buffered and closes the
 * file; after the next maildir_sync_tmp() returning 0, it survives a crash
 * under tmp/TMPNAME. Nothing is put into new/. FINALNAME gets the name the file
 * will have there: TMPNAME plus ",S=<size>", a name no file in new/ has
 * now (on a clash the tmp/ file is renamed first). Buffers of
 * MAILDIR_NAME_SIZE bytes are always large enough.
 *
 * Frees MSG and sets *MSG to NULL whatever the outcome. On failure the
 * temporary file is removed and -1 returned with errno set (ENAMETOOLONG
 * if a buffer is too small). On success the caller owns tmp/TMPNAME.
 * Once an intent naming it has been recorded, it may only go by
 * maildir_publish(), maildir_sync(), maildir_drop_tmp(), in that order,
 * now or in a later recovery: even a commit that failed may have left the
 * intent on disk. Without an intent, maildir_drop_tmp() discards it.
 */
int maildir_finish(struct maildir_msg **msg, char *tmpname, size_t tmplen,
    char *finalname, size_t finallen);

/* Removes the temporary file, frees MSG and sets *MSG to NULL. */
void maildir_abort(struct maildir_msg **msg);

/* Bytes written so far (after CRLF to LF conversion). */
uint64_t maildir_msg_size(const struct maildir_msg *msg);

/*
 * Gives tmp/TMPNAME the name new/FINALNAME, by a hard link (tmp/TMPNAME
 * stays until maildir_drop_tmp()), or where the file system has no hard
 * links by a rename that never replaces a file (tmp/TMPNAME is then gone
 * at once). Idempotent, so that recovery may repeat it: if new/FINALNAME
 * exists already the message counts as published and 0 is returned
 * (maildir_finish() chose a name free in new/, so a file there is this
 * message, linked by an earlier call). Returns 0, or -1 with errno set:
 * EINVAL for a bad name, ENOENT if neither name exists, or the error of
 * an earlier failed sync of MD (see maildir_sync_tmp()).
 * Not durable until maildir_sync().
 */
int maildir_publish(
    struct maildir *md, const char *tmpname, const char *finalname);

/*
 * Whether tmp/TMPNAME may exist: false only when it certainly does not
 * (or the name is invalid). An error other than "no such file" answers
 * true, so that recovery tries to publish and reports the real error
 * rather than taking a message for delivered.
 */
bool maildir_tmp_exists(struct maildir *md, const char *tmpname);

/*
 * Removes tmp/TMPNAME; a name already gone is success. Call it for a
 * published message only after maildir_sync() returned 0: until then the
 * tmp/ name is what a crash would leave of the message. Returns 0, or -1
 * with errno set (EINVAL for a bad name).
 */
int maildir_drop_tmp(struct maildir *md, const char *tmpname);

/*
 * Whether the message published as FINALNAME is in new/, or in cur/ under
 * the same name with an info suffix (where a mail reader moves it): 1 yes,
 * 0 no, -1 with errno set when that cannot be told.
 */
int maildir_delivered(struct maildir *md, const char *finalname);

/*
 * maildir_delivered() of N names at once, at the cost of one look-up in
 * new/ per name and one scan of cur/ for all of them (the old function
 * scans cur/ per name): FOUND[i] gets 1 or 0 for FINALNAMES[i]. Returns
 * 0, or -1 with errno set (EINVAL if any name is invalid; FOUND is then
 * undefined).
 */
int maildir_delivered_many(
    struct maildir *md, const char *const *finalnames, size_t n, int *found);

/*
 * fsyncs new/, and the directories the open made if no maildir_sync_tmp()
 * has made them durable yet (recovery publishes without one). Returns 0,
 * or -1 with errno set; a failure is final for MD (see
 * maildir_sync_tmp()).
 */
int maildir_sync(struct maildir *md);

/* Free bytes for an unprivileged user on the Maildir's file system. */
int maildir_free_space(struct maildir *md, uint64_t *bytes);

/*
 * Writes a unique file name for a message of SIZE bytes into BUF:
 * <sec>.M<usec>P<pid>Q<seq>.<host>,S=<size>, with '/' in the host name
 * written as "\057", ':' as "\072" and any byte outside 0x21-0x7E as its
 * octal "\ooo" too, so that names are always valid (see above). Exposed
 * for tests.
 */
int maildir_unique_name(char *buf, size_t buflen, long long sec, long usec,
    long pid, unsigned long seq, const char *host, uint64_t size);

#endif
