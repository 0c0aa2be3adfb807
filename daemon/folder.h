/*
 * folder: the name of a Maildir++ sub-folder as configured ("folder =
 * ".Lists.Debian"") turned into the directory it lives in under the
 * Maildir's root, the way Dovecot and Courier read it.
 *
 * A Maildir++ folder is a directory directly under the root whose name
 * starts with a dot; further dots separate the levels of the hierarchy
 * (".Lists.Debian" is Debian inside Lists). So the configured name must
 * start with one dot, and each level must be non-empty: "..", a trailing
 * dot, or "." alone are refused. '/' would leave the root and is refused,
 * as are control characters (0x00-0x1F, 0x7F) and bytes that are not
 * UTF-8. Characters outside printable ASCII, and '&', are written in the
 * modified UTF-7 of IMAP (RFC 3501 section 5.1.3): Dovecot's default for
 * Maildir++ names, so that an IMAP client sees the name as configured.
 * "Entwürfe" becomes "Entw&APw-rfe", "R&D" becomes "R&-D".
 *
 * Pure: links alone into its test and into conf.c's validation.
 */
#ifndef POPFETCHD_FOLDER_H
#define POPFETCHD_FOLDER_H

#include <stddef.h>

/* Room for any directory name folder_encode() writes, with its NUL. */
#define FOLDER_DIR_SIZE 256

/*
 * Writes into DIR (DIRLEN bytes) the directory name of the folder NAME.
 * Returns 0, or -1 with *WHY (if WHY is not NULL) pointing at a static
 * sentence saying what is wrong with NAME (a name whose encoding does not
 * fit DIRLEN, or NAME_MAX, is "too long").
 */
int folder_encode(const char *name, char *dir, size_t dirlen, const char **why);

#endif
