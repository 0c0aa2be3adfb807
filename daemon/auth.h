/*
 * auth: credentials turned into what goes on the wire, as pure functions.
 * No I/O; callers wipe the buffers they pass in when done.
 */
#ifndef POPFETCHD_AUTH_H
#define POPFETCHD_AUTH_H

#include <stddef.h>

/*
 * base64 of LEN bytes of IN into OUT (NUL-terminated). Returns the length
 * written, or -1 if OUT is too small.
 */
int auth_base64(const void *in, size_t len, char *out, size_t outlen);

/* SASL PLAIN (RFC 4616) initial response for USER and PASS, in base64. */
int auth_plain(const char *user, const char *pass, char *out, size_t outlen);

/*
 * APOP digest (RFC 1939): lower-case hex MD5 of TIMESTAMP followed by
 * SECRET, into OUT (at least 33 bytes). Returns 0, or -1.
 */
int auth_apop(
    const char *timestamp, const char *secret, char *out, size_t outlen);

/* Overwrites LEN bytes at P in a way the compiler keeps. */
void auth_wipe(void *p, size_t len);

#endif
