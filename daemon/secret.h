/*
 * secret: where an account's password comes from: inline in the
 * configuration, a file, or a systemd credential. Read when a poll needs
 * it, kept no longer than the caller keeps its buffer (which it wipes).
 */
#ifndef POPFETCHD_SECRET_H
#define POPFETCHD_SECRET_H

#include <stddef.h>

struct account;

/*
 * Writes ACCOUNT's password into BUF (NUL-terminated). Returns 0, or -1
 * with ERR saying why (no source, unreadable file, file readable by
 * others, empty secret, a source this version cannot use).
 */
int secret_get(
    const struct account *a, char *buf, size_t len, char *err, size_t errlen);

#endif
