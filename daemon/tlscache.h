/*
 * tlscache: each account's TLS session, kept in memory from one poll to
 * the next, so that the next handshake resumes it (a TLS 1.3 ticket, a
 * TLS 1.2 ticket or session ID) instead of doing the full exchange of
 * certificate and signatures again.
 *
 * An entry belongs to one account name and to the fingerprint of the
 * settings its session was verified under (tls_session_fp()); it is
 * handed out for that name with that fingerprint only, and asked for with
 * another it is dropped. Nothing here is ever written to disk: a session
 * holds the keys of the connection it came from, and the copy kept is
 * wiped when dropped.
 *
 * The store holds nothing until tlscache_limit() gives it room: a --once
 * run polls each account once and would only fill it.
 */
#ifndef POPFETCHD_TLSCACHE_H
#define POPFETCHD_TLSCACHE_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "tls.h"

/*
 * The room the daemon gives the store. A session with the server's
 * certificate in it takes 1 to 2 KiB, so this keeps some 10,000
 * accounts' sessions; 100,000 accounts would otherwise hold some 200 MB.
 * When it is full the accounts that have an entry keep theirs (replaced
 * at each poll) and the others do full handshakes: a steady share of
 * resumed polls, where evicting the oldest would resume none once
 * every account is polled in turn.
 */
#define TLSCACHE_MAX_BYTES (16u << 20)

/*
 * Failed handshakes, each after a session was offered, that stop the
 * account's sessions from being offered again (until its settings
 * change or the daemon restarts). One may be a network fault; a server
 * that fails every resumption would otherwise fail every other poll.
 * A resumed poll starts the count again.
 */
#define TLSCACHE_STRIKES 2

/* Gives the store BYTES of room (entries and sessions); 0 empties it. */
void tlscache_limit(size_t bytes);

/*
 * The session saved for account NAME, if it was saved under fingerprint
 * FP, has not expired (nor has the server certificate in it) and the
 * account is not barred. The caller owns it (SSL_SESSION_free()). An
 * entry saved under another fingerprint is dropped.
 */
SSL_SESSION *tlscache_get(const char *name, const unsigned char fp[TLS_FP_LEN]);

/*
 * Saves SESS (a copy: the caller keeps its reference) for account NAME
 * under FP, in place of what was saved. RESUMED: this poll's handshake
 * resumed a session (the strikes start again). Nothing is saved for a
 * barred account, nor when the store is full.
 */
void tlscache_put(const char *name, const unsigned char fp[TLS_FP_LEN],
    SSL_SESSION *sess, bool resumed);

/* Forgets account NAME's session (its strikes stay). */
void tlscache_drop(const char *name);

/*
 * A poll of account NAME failed in TLS after its session was offered:
 * forgets the session and counts a strike, under FP. True when this
 * strike bars the account.
 */
bool tlscache_strike(const char *name, const unsigned char fp[TLS_FP_LEN]);

/* The bytes the store holds now, entries included. */
size_t tlscache_bytes(void);

/* Forgets every entry; the room given stays. */
void tlscache_clear(void);

#endif
