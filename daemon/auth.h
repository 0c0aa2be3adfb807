/*
 * auth: credentials turned into what goes on the wire, as pure functions.
 * No I/O. Every function that encodes a credential builds its output
 * piece by piece, so no copy of the secret is left anywhere but in OUT;
 * callers wipe OUT (wipe.h) when done.
 *
 * The encoders return the length written to OUT (NUL-terminated, not
 * counting the NUL), or -1 when OUT is too small or an argument holds a
 * byte the format cannot carry; OUT is left untouched then.
 */
#ifndef POPFETCHD_AUTH_H
#define POPFETCHD_AUTH_H

#include <stdbool.h>
#include <stddef.h>

/* Bytes OUT needs for the base64 of N bytes, with the NUL. */
#define AUTH_BASE64_SIZE(n) (4 * (((n) + 2) / 3) + 1)

/* base64 (RFC 4648, with padding) of LEN bytes of IN into OUT. */
int auth_base64(const void *in, size_t len, char *out, size_t outlen);

/*
 * Strict base64 decoding of the NUL-terminated IN into OUT (binary, not
 * NUL-terminated), *OUTN set to the number of bytes. Accepts only the
 * canonical form: the RFC 4648 alphabet, length a multiple of 4, at most
 * two '=' and only at the end, unused bits zero; no white space. The empty
 * string decodes to zero bytes. Returns 0, or -1 (bad input, or more than
 * OUTLEN bytes) with *OUTN set to 0. For showing the error a server sends
 * in a failed XOAUTH2 or OAUTHBEARER exchange (base64 of JSON).
 */
int auth_base64_decode(
    const char *in, unsigned char *out, size_t outlen, size_t *outn);

/* SASL PLAIN (RFC 4616) initial response for USER and PASS, in base64. */
int auth_plain(const char *user, const char *pass, char *out, size_t outlen);

/*
 * SASL XOAUTH2 initial response, as Google and Microsoft document it:
 * base64 of "user=" USER "\x01auth=Bearer " TOKEN "\x01\x01". USER and
 * TOKEN must be non-empty and free of control characters (\x01 is the
 * separator).
 */
int auth_xoauth2(const char *user, const char *token, char *out, size_t outlen);

/*
 * SASL OAUTHBEARER (RFC 7628) initial client response, in base64:
 * "n,a=" USER ",\x01host=" HOST "\x01port=" PORT "\x01auth=Bearer " TOKEN
 * "\x01\x01". In USER, ',' and '=' are written "=2C" and "=3D" (RFC 5801
 * saslname); an empty USER leaves the authorization identity out ("n,,").
 * HOST and TOKEN must be non-empty, PORT 1 to 65535, and USER, HOST and
 * TOKEN free of control characters.
 */
int auth_oauthbearer(const char *user, const char *host, unsigned port,
    const char *token, char *out, size_t outlen);

/*
 * SASL EXTERNAL initial response: empty, which POP3 (RFC 5034) and SMTP
 * (RFC 4954) write as "=". Returns 1, or -1 if OUTLEN < 2.
 */
int auth_external(char *out, size_t outlen);

/*
 * APOP digest (RFC 1939): lower-case hex MD5 of TIMESTAMP followed by
 * SECRET, into OUT (at least 33 bytes). Returns 0, or -1.
 */
int auth_apop(
    const char *timestamp, const char *secret, char *out, size_t outlen);

/*
 * Iteration counts a server may ask for. RFC 7677 wants at least 4096;
 * fewer make a stolen exchange cheap to brute-force. The hash runs on the
 * event loop: 600,000 rounds (OWASP's 2023 figure for PBKDF2-SHA256) hold
 * it for about 0.3 s, the most one login may cost the other accounts.
 */
#define AUTH_SCRAM_ITER_MIN 4096
#define AUTH_SCRAM_ITER_MAX 600000

/*
 * The mechanism auth = "auto" uses given the server's SASL capability
 * OFFERED (space-separated names, any case), strongest first:
 * SCRAM-SHA-256-PLUS, SCRAM-SHA-256, SCRAM-SHA-1-PLUS, SCRAM-SHA-1,
 * PLAIN; NULL when none is offered (USER/PASS then). The -PLUS ones bind
 * the exchange to the TLS channel, so that a man in the middle holding a
 * certificate we wrongly trust cannot relay the login; they count only
 * if CB (channel binding data can be had). SHA-256 before SHA-1, as RFC
 * 7677 asks. Returns a static string.
 */
const char *auth_auto_mech(const char *offered, bool cb);

/* Whether MECH (upper case) is a -PLUS mechanism, binding the channel. */
bool auth_mech_plus(const char *mech);

/*
 * Parses a SCRAM server-first-message (RFC 5802 5.1), base64 as it comes
 * in the challenge: "r=" nonce ",s=" salt ",i=" count, nothing before r
 * but an optional reserved "m=" (which makes it fail: no extension is
 * known). The nonce must begin with CNONCE and go on past it. Sets
 * *ITER. Returns 0, or -1 when malformed or the nonce does not extend
 * ours (a replayed or forged reply).
 */
int auth_scram_server_first(
    const char *b64, const char *cnonce, unsigned long *iter);

/* The kind of channel binding data (RFC 5929, RFC 9266). */
enum auth_cb {
	AUTH_CB_NONE,
	AUTH_CB_TLS_UNIQUE,   /* TLS 1.2: the first Finished message */
	AUTH_CB_TLS_EXPORTER, /* TLS 1.3: the RFC 9266 exporter, 32 bytes */
};

/*
 * One SCRAM exchange as a client, through GNU SASL (SASLprep, the key
 * derivation, the proof and the check of the server's signature). It
 * does no I/O: each server challenge goes in, the next response comes
 * out, base64 as POP3 carries them.
 */
struct auth_scram;

/* How an exchange step ended. */
enum auth_step {
	AUTH_STEP_MORE,	 /* OUT holds the response; a challenge follows */
	AUTH_STEP_DONE,	 /* the server proved it knows the password */
	AUTH_STEP_PROTO, /* the server's message is malformed */
	AUTH_STEP_AUTH,	 /* refused: a wrong nonce, signature or count */
	AUTH_STEP_LOCAL, /* our side failed (memory, a bad credential) */
};

/*
 * Starts MECH (a SCRAM-SHA-1 or -256 mechanism) for USER with PASS; a -PLUS
 * mechanism needs CB and its CBLEN bytes of kind CBTYPE. Both strings are
 * copied (GNU SASL keeps its copies until auth_scram_free()). Returns
 * NULL, with a reason in ERR, if the mechanism cannot start.
 */
struct auth_scram *auth_scram_start(const char *mech, const char *user,
    const char *pass, enum auth_cb cbtype, const unsigned char *cb,
    size_t cblen, char *err, size_t errlen);

/*
 * One step: IN is the server's challenge (base64), NULL for the initial
 * response. OUT receives the response in base64 (empty after DONE, when
 * POP3 still wants an empty line). ERR says why on failure.
 */
enum auth_step auth_scram_step(struct auth_scram *sc, const char *in, char *out,
    size_t outlen, char *err, size_t errlen);

/* The kind of channel binding the exchange uses. */
enum auth_cb auth_scram_cb(const struct auth_scram *sc);

/* Whether the server's signature was verified (the step said DONE). */
bool auth_scram_verified(const struct auth_scram *sc);

void auth_scram_free(struct auth_scram **sc);

#endif
