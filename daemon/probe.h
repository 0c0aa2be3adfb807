/*
 * probe: --serverinfo and --list. Runs one probing session for an account
 * on a loop of its own and prints what it learns on standard output. The
 * mailbox is not changed: no DELE is ever sent.
 */
#ifndef POPFETCHD_PROBE_H
#define POPFETCHD_PROBE_H

#include "session.h"

struct conf;
struct account;

/*
 * Probes ACCOUNT in MODE (SESSION_SERVERINFO or SESSION_LIST). Returns an
 * exit status as --once would (sysexits.h).
 */
int probe_run(
    const struct conf *conf, const struct account *a, enum session_mode mode);

#endif
