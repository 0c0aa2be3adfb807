/*
 * fsutil: the file-system chores the Maildir writer and the state journal
 * share: writing a whole buffer, creating a directory path durably, and
 * checking a file name read back from disk.
 */
#ifndef POPFETCHD_FSUTIL_H
#define POPFETCHD_FSUTIL_H

#include <stdbool.h>
#include <stddef.h>

/* write(2) all LEN bytes of DATA, through short writes and EINTR. */
int fsutil_write_all(int fd, const char *data, size_t len);

/*
 * Creates PATH and its missing parents with mode 0700, fsyncing each new
 * directory into its parent so a crash cannot lose it. 0, or -1 with
 * errno set and ERRBUF (if not NULL) saying which directory failed.
 */
int fsutil_mkdir_p(const char *path, char *errbuf, size_t errlen);

/* fsyncs the directory holding PATH. 0, or -1 with errno set. */
int fsutil_fsync_parent(const char *path);

/*
 * Whether the LEN bytes at NAME make a plain file name we write: 1 to
 * NAME_MAX bytes of 0x21..0x7E, no '/', not "." or "..". Names read back
 * from disk are hostile until this says yes.
 */
bool fsutil_valid_name(const char *name, size_t len);

#endif
