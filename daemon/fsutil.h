/*
 * fsutil: the file-system chores the Maildir writer and the state journal
 * share: writing a whole buffer, creating a directory path durably,
 * checking a file name read back from disk, and the durability calls
 * (fsync, syncfs) through one place, so that a test build can make them
 * fail.
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

/*
 * Whether the LEN bytes at NAME make a plain file name we write: 1 to
 * NAME_MAX bytes of 0x21..0x7E, no '/', not "." or "..". Names read back
 * from disk are hostile until this says yes.
 */
bool fsutil_valid_name(const char *name, size_t len);

/* fsync(2), fdatasync(2) and syncfs(2) of FD: 0, or -1 with errno set. */
int fsutil_fsync(int fd);
int fsutil_fdatasync(int fd);
int fsutil_syncfs(int fd);

/* The type (statfs f_type) of the file system holding FD. 0 or -1/errno. */
int fsutil_fs_type(int fd, unsigned long *type);

#ifdef POPFETCHD_TEST_HOOKS
/*
 * Makes the NTH call of fsutil_fsync(), fsutil_fdatasync() or
 * fsutil_syncfs() from now on (1: the next one) fail with ERR, once,
 * without syncing; 0 disarms.
 */
void fsutil_test_fail_sync(unsigned nth, int err);

/* The calls of those three that went to the kernel so far. */
unsigned long fsutil_test_syncs(void);

/* Makes fsutil_fs_type() answer TYPE; 0 gives back the real one. */
void fsutil_test_force_fs_type(unsigned long type);
#endif

#endif
