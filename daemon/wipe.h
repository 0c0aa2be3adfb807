/*
 * wipe: clears memory that held a secret (a password, a SASL response,
 * a command line with PASS), in a way the compiler may not drop as a
 * dead store. A leaf, so that every module can wipe without pulling in
 * the authentication code or OpenSSL.
 */
#ifndef POPFETCHD_WIPE_H
#define POPFETCHD_WIPE_H

#include <stddef.h>
#include <string.h>

static inline void
wipe(void *p, size_t len)
{
	explicit_bzero(p, len);
}

#endif
