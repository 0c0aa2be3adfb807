/*
 * tls: OpenSSL contexts and connections for one account: certificate
 * verification (system store or CA file/path, host name or IP address),
 * SNI, minimum protocol version, SHA-256 public key pins, client
 * certificates, and readable error text. It knows nothing of POP3.
 */
#ifndef POPFETCHD_TLS_H
#define POPFETCHD_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

struct account;

/*
 * A context for ACCOUNT's settings. NULL on failure, with ERR saying why
 * (an unreadable CA file, a client key that does not match...). Shared:
 * a context made earlier for the same settings (trust store, client
 * certificate, minimum version, verification) is handed out again, as
 * long as the files it was made from (or the system trust store) have the
 * same inode, size and mtime. The caller owns one reference
 * (SSL_CTX_free() when done).
 */
SSL_CTX *tls_ctx_get(const struct account *a, char *err, size_t errlen);

/* Drops the shared contexts; those in use live until freed by their users. */
void tls_ctx_forget(void);

/* A connection object for ACCOUNT: SNI and the name to verify set. */
SSL *tls_ssl_new(SSL_CTX *ctx, const struct account *a);

/*
 * After the handshake: checks the SPKI pins of ACCOUNT, if any. Returns
 * true if there are none or one matches; else ERR says "pin mismatch".
 */
bool tls_check_pins(
    SSL *ssl, const struct account *a, char *err, size_t errlen);

/*
 * Describes why a handshake on SSL failed (OpenSSL error E, 0 if none):
 * "certificate has expired", "hostname mismatch: ..." and the like.
 */
void tls_describe_failure(
    SSL *ssl, const struct account *a, unsigned long e, char *buf, size_t len);

/* One certificate the server sent, as --serverinfo prints it. */
struct tls_cert_desc {
	char subject[256], issuer[256];
	char not_before[32], not_after[32]; /* "2026-01-31 12:00:00 UTC" */
};

/*
 * The Ith certificate of the chain the server sent (0: its own) in D;
 * false past the last one.
 */
bool tls_peer_cert(SSL *ssl, int i, struct tls_cert_desc *d);

/*
 * The server key's pin as tls_pins takes it, "sha256/BASE64" of its
 * SubjectPublicKeyInfo, in OUT; false without a server certificate.
 */
bool tls_peer_pin(SSL *ssl, char *out, size_t outlen);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384" for a connection. */
void tls_summary(SSL *ssl, char *buf, size_t len);

/* The length of a settings fingerprint (SHA-256). */
#define TLS_FP_LEN 32

/*
 * The fingerprint of what a TLS session of ACCOUNT on a connection made
 * with CTX was verified under: host, port, TLS mode, name sent and
 * checked, pins, user, and CTX's trust store, client certificate,
 * minimum version and verify mode, with the files they were read from
 * as they were then. A saved session is offered only to a connection
 * with the same fingerprint (tlscache.h). False on failure (no resumption
 * then).
 */
bool tls_session_fp(
    SSL_CTX *ctx, const struct account *a, unsigned char fp[TLS_FP_LEN]);

/*
 * After a completed handshake on SSL: the session worth offering on the
 * next connection, or NULL. The newest the server issued (a TLS 1.3
 * ticket is used once), else on TLS 1.2 the resumed one; none from a TLS
 * 1.2 handshake without extended master secret, whose resumption RFC
 * 7627 advises against. The caller owns the reference returned; a second
 * call returns NULL until the server issues another.
 */
SSL_SESSION *tls_session_to_keep(SSL *ssl);

#endif
