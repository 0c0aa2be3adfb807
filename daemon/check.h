/*
 * check: what --check-config looks at beyond the file's own rules, without
 * asking any server: whatever would make the first poll fail here, as the
 * user running the check (password files and credentials, the TLS files,
 * state_dir and each Maildir writable, owners that fit that user).
 */
#ifndef POPFETCHD_CHECK_H
#define POPFETCHD_CHECK_H

#include <stdbool.h>
#include <stddef.h>

#include "conf.h"

/*
 * Reports through REPORT one line per problem ("FILE:LINE: account
 * "NAME": KEY ...: what is wrong; the fix") and returns how many there
 * were. Lines starting "note: " say what cannot be checked here (a
 * credential outside its unit) and are not counted.
 */
size_t check_conf(const struct conf *conf, conf_report_fn report, void *arg);

/*
 * Whether running as root would write into CONF's state_dir while it
 * belongs to another user, whose name (or uid) goes into OWNER (LEN
 * bytes): the files root leaves there would then stop that user's
 * service ("Permission denied"). False when not root, or the directory
 * is root's or not there yet.
 */
bool check_foreign_state(const struct conf *conf, char *owner, size_t len);

#endif
