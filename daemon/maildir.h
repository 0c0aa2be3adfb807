/*
 * maildir: delivery of messages into a Maildir, streamed. A message is
 * written into tmp/ (CRLF turned into LF), fsynced, then linked into new/
 * under its final name. new/ itself is fsynced by maildir_sync(), which a
 * caller must call before anything depends on a committed message being
 * there (one call may cover a batch of commits).
 */
#ifndef POPFETCHD_MAILDIR_H
#define POPFETCHD_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct maildir;
struct maildir_msg;

/*
 * Opens the Maildir at PATH, creating it (and tmp/ new/ cur/, mode 0700)
 * if missing, and removes files in tmp/ older than 36 hours. Returns NULL
 * with errno set on failure; ERRBUF (if not NULL) then says what failed.
 */
struct maildir *maildir_open(const char *path, char *errbuf, size_t errlen);

/* Closes the Maildir. Open messages must have been committed or aborted. */
void maildir_close(struct maildir **md);

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
 * Flushes, fsyncs and closes the temporary file, links it into new/ and
 * removes it from tmp/. Frees MSG and sets *MSG to NULL whatever the
 * outcome. On failure the temporary file is removed and -1 returned with
 * errno set. NAMEBUF (if not NULL) receives the final file name (without
 * directory).
 */
int maildir_commit(struct maildir_msg **msg, char *namebuf, size_t namelen);

/* Removes the temporary file, frees MSG and sets *MSG to NULL. */
void maildir_abort(struct maildir_msg **msg);

/* Bytes written so far (after CRLF to LF conversion). */
uint64_t maildir_msg_size(const struct maildir_msg *msg);

/* fsyncs new/. Returns 0, or -1 with errno set. */
int maildir_sync(struct maildir *md);

/* Free bytes for an unprivileged user on the Maildir's file system. */
int maildir_free_space(struct maildir *md, uint64_t *bytes);

/*
 * Writes a unique file name for a message of SIZE bytes into BUF:
 * <sec>.M<usec>P<pid>Q<seq>.<host>,S=<size>, with '/' in the host name
 * written as "\057" and ':' as "\072". Exposed for tests.
 */
int maildir_unique_name(char *buf, size_t buflen, long long sec, long usec,
    long pid, unsigned long seq, const char *host, uint64_t size);

#endif
