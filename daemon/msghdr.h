/*
 * msghdr: a header field's value from the top of a message, for showing
 * (--list). Pure: no I/O, no allocation.
 */
#ifndef POPFETCHD_MSGHDR_H
#define POPFETCHD_MSGHDR_H

#include <stddef.h>

/*
 * Copies the value of the first header field NAME (case-insensitive) in
 * the header block HDR (LEN bytes, CRLF or LF line ends, not
 * NUL-terminated) into OUT (OUTLEN > 0 bytes, always NUL-terminated):
 * leading blanks dropped, folded lines joined, line ends removed, tabs
 * shown as spaces and other control characters as '?', cut to fit. An empty
 * string when there is no such field. The search stops at the first empty line
 * (the body).
 */
void msghdr_value(
    const char *hdr, size_t len, const char *name, char *out, size_t outlen);

#endif
