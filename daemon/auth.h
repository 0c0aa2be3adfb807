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

#endif
