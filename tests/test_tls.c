/*
 * Tests of daemon/tls.c. At the start of each test a throwaway CA, a
 * second CA nobody trusts, server certificates (good, expired) and a
 * client certificate are made with the OpenSSL API in a temporary
 * directory. Handshakes run in memory: the client SSL from tls.c and a
 * server SSL of the test's, joined by a BIO pair, stepped in turn until
 * both are done or one fails. Covered: the shared contexts and when a new
 * one is made, SNI and the name verified, SPKI pins, the text of each
 * verification failure, the peer's chain and pin, the
 * client certificate with its key file checks, and the sessions kept for
 * resumption with the fingerprint of the settings they were verified
 * under.
 */
#include <sys/stat.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "conf.h"
#include "tls.h"
#include "check_main.h"
#include "check_util.h"

#define DAY (24L * 60 * 60)

static char tmpdir[64];
static char ca_pem[128], other_ca_pem[128], client_pem[128], client_key[128],
    stray_key[128], other_type_key[128];
static EVP_PKEY *ca_key, *other_ca_key, *srv_key, *cli_key;
static X509 *ca_cert, *other_ca_cert, *srv_cert, *expired_cert, *cli_cert;
static struct account acc;
static char *no_pins[] = {NULL};

/* --- certificates ---------------------------------------------------- */

static EVP_PKEY *
new_key(void)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");

	ck_assert_ptr_nonnull(k);
	return k;
}

static void
add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);

	ck_assert_ptr_nonnull(ext);
	ck_assert_int_eq(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
}

/*
 * A certificate for KEY named CN, valid from FROM to UNTIL days from now,
 * signed by ISSUER (NULL: by itself, as a CA). SAN as in openssl.cnf.
 */
static X509 *
make_cert(EVP_PKEY *key, const char *cn, const char *san, long from, long until,
    X509 *issuer, EVP_PKEY *issuer_key)
{
	static long serial = 1;
	X509 *x = X509_new();
	X509_NAME *name;
	X509V3_CTX v3;

	ck_assert_ptr_nonnull(x);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
	X509_gmtime_adj(X509_getm_notBefore(x), from * DAY);
	X509_gmtime_adj(X509_getm_notAfter(x), until * DAY);
	X509_set_pubkey(x, key);
	name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(
	    name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(
	    x, issuer != NULL ? X509_get_subject_name(issuer) : name);
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, issuer != NULL ? issuer : x, x, NULL, NULL, 0);
	if (issuer == NULL) {
		add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE");
		add_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else
		add_ext(x, &v3, NID_basic_constraints, "CA:FALSE");
	if (san != NULL)
		add_ext(x, &v3, NID_subject_alt_name, san);
	ck_assert_int_ne(
	    X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256()),
	    0);
	return x;
}

static void
tmp_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "%s/%s", tmpdir, name);
}

static void
write_cert(const char *path, X509 *x, const char *mode)
{
	FILE *fp = fopen(path, mode);

	ck_assert_ptr_nonnull(fp);
	ck_assert_int_eq(PEM_write_X509(fp, x), 1);
	ck_assert_int_eq(fclose(fp), 0);
}

static void
write_key(const char *path, EVP_PKEY *k)
{
	FILE *fp = fopen(path, "w");

	ck_assert_ptr_nonnull(fp);
	ck_assert_int_eq(
	    PEM_write_PrivateKey(fp, k, NULL, NULL, 0, NULL, NULL), 1);
	ck_assert_int_eq(fclose(fp), 0);
	ck_assert_int_eq(chmod(path, 0600), 0);
}

static void
setup(void)
{
	EVP_PKEY *stray;

	check_tmpdir(tmpdir, sizeof(tmpdir), "test_tls");
	ca_key = new_key();
	other_ca_key = new_key();
	srv_key = new_key();
	cli_key = new_key();
	ca_cert = make_cert(ca_key, "Test CA", NULL, -1, 30, NULL, NULL);
	other_ca_cert =
	    make_cert(other_ca_key, "Other CA", NULL, -1, 30, NULL, NULL);
	srv_cert = make_cert(srv_key, "pop.test", "DNS:pop.test,IP:127.0.0.1",
	    -1, 30, ca_cert, ca_key);
	expired_cert = make_cert(srv_key, "pop.test",
	    "DNS:pop.test,IP:127.0.0.1", -30, -1, ca_cert, ca_key);
	cli_cert = make_cert(cli_key, "alice", NULL, -1, 30, ca_cert, ca_key);

	tmp_path(ca_pem, sizeof(ca_pem), "ca.pem");
	write_cert(ca_pem, ca_cert, "w");
	tmp_path(other_ca_pem, sizeof(other_ca_pem), "other-ca.pem");
	write_cert(other_ca_pem, other_ca_cert, "w");
	tmp_path(client_pem, sizeof(client_pem), "client.pem");
	write_cert(client_pem, cli_cert, "w");
	tmp_path(client_key, sizeof(client_key), "client.key");
	write_key(client_key, cli_key);
	/* A key of no certificate's. */
	tmp_path(stray_key, sizeof(stray_key), "stray.key");
	write_key(stray_key, stray = new_key());
	EVP_PKEY_free(stray);
	/* One of another type, which OpenSSL keeps beside the EC one. */
	tmp_path(other_type_key, sizeof(other_type_key), "ed25519.key");
	stray = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	ck_assert_ptr_nonnull(stray);
	write_key(other_type_key, stray);
	EVP_PKEY_free(stray);

	memset(&acc, 0, sizeof(acc));
	acc.name = "test";
	acc.host = "pop.test";
	acc.port = 995;
	acc.tls_verify = true;
	acc.ca_file = ca_pem;
	acc.tls_pins = no_pins;
}

static void
teardown(void)
{
	static const char *const files[] = {"ca.pem", "other-ca.pem",
	    "client.pem", "client.key", "stray.key", "ed25519.key", "dir.key"};
	char path[128];
	size_t i;

	tls_ctx_forget();
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		tmp_path(path, sizeof(path), files[i]);
		if (unlink(path) == -1)
			rmdir(path);
	}
	rmdir(tmpdir);
	X509_free(ca_cert);
	X509_free(other_ca_cert);
	X509_free(srv_cert);
	X509_free(expired_cert);
	X509_free(cli_cert);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(other_ca_key);
	EVP_PKEY_free(srv_key);
	EVP_PKEY_free(cli_key);
}

/* --- handshakes ------------------------------------------------------ */

struct peer {
	SSL_CTX *ctx; /* the client's, from tls.c */
	SSL *ssl;     /* the client's */
	SSL_CTX *sctx;
	SSL *srv;
	unsigned long err; /* the client's first OpenSSL error, if it failed */
};

/* Accepts any client certificate: the test looks at it afterwards. */
static int
accept_any(int ok, X509_STORE_CTX *xs)
{
	return 1;
}

/*
 * Server side with CERT, at most version MAXV (0: any); asks for a client
 * certificate when ASK_CLIENT.
 */
static SSL *
server_ssl(struct peer *p, X509 *cert, int maxv, bool ask_client)
{
	ck_assert_ptr_nonnull(p->sctx = SSL_CTX_new(TLS_server_method()));
	ck_assert_int_eq(SSL_CTX_use_certificate(p->sctx, cert), 1);
	ck_assert_int_eq(SSL_CTX_use_PrivateKey(p->sctx, srv_key), 1);
	if (maxv != 0)
		SSL_CTX_set_max_proto_version(p->sctx, maxv);
	if (ask_client)
		SSL_CTX_set_verify(p->sctx, SSL_VERIFY_PEER, accept_any);
	ck_assert_ptr_nonnull(p->srv = SSL_new(p->sctx));
	return p->srv;
}

static bool
step_ok(SSL *ssl, int r)
{
	int e;

	if (r == 1)
		return true;
	e = SSL_get_error(ssl, r);
	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/* The client side of P: tls.c's context and connection for ACCT. */
static void
client_ssl(struct peer *p)
{
	char err[256] = "";

	memset(p, 0, sizeof(*p));
	ERR_clear_error();
	p->ctx = tls_ctx_get(&acc, err, sizeof(err));
	ck_assert_msg(p->ctx != NULL, "%s", err);
	ck_assert_ptr_nonnull(p->ssl = tls_ssl_new(p->ctx, &acc));
}

static bool drive(struct peer *p);

/*
 * A handshake between tls.c's client for ACCT and a server showing
 * CERT. True when both ends completed it.
 */
static bool
handshake(struct peer *p, X509 *cert, int maxv, bool ask_client)
{
	client_ssl(p);
	server_ssl(p, cert, maxv, ask_client);
	return drive(p);
}

/* Joins P's ends and steps them in turn; as handshake(). */
static bool
drive(struct peer *p)
{
	BIO *cb, *sb;
	int i, rc = 0, rs = 0;

	ck_assert_int_eq(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
	SSL_set_bio(p->ssl, cb, cb);
	SSL_set_bio(p->srv, sb, sb);
	SSL_set_connect_state(p->ssl);
	SSL_set_accept_state(p->srv);
	/*
	 * Until both are done or the client failed: when the server fails
	 * first, the client goes on to read the alert it was sent.
	 */
	for (i = 0; i < 50; i++) {
		if (rc != 1) {
			rc = SSL_do_handshake(p->ssl);
			if (!step_ok(p->ssl, rc)) {
				p->err = ERR_peek_error();
				return false;
			}
		}
		if (rs != 1 && rs != -2) {
			rs = SSL_do_handshake(p->srv);
			if (!step_ok(p->srv, rs))
				rs = -2;
		}
		if (rc == 1 && rs == 1)
			return true;
		if (rc == 1 && rs == -2)
			return false;
	}
	ck_abort_msg("handshake did not end in 50 steps");
	return false;
}

static void
peer_free(struct peer *p)
{
	SSL_free(p->ssl);
	SSL_free(p->srv);
	SSL_CTX_free(p->ctx);
	SSL_CTX_free(p->sctx);
	ERR_clear_error();
}

/* The SPKI pin of KEY, "sha256/BASE64", computed here on its own. */
static void
pin_of(EVP_PKEY *key, char *buf, size_t len)
{
	unsigned char *der = NULL, md[EVP_MAX_MD_SIZE], b64[64];
	unsigned mdlen;
	int n;

	ck_assert_int_gt(n = i2d_PUBKEY(key, &der), 0);
	ck_assert_int_eq(
	    EVP_Digest(der, (size_t)n, md, &mdlen, EVP_sha256(), NULL), 1);
	EVP_EncodeBlock(b64, md, (int)mdlen);
	snprintf(buf, len, "sha256/%s", b64);
	OPENSSL_free(der);
}

/* Why a handshake for ACCT against CERT failed, as tls.c puts it. */
static void
failure_text(X509 *cert, char *buf, size_t len)
{
	struct peer p;

	ck_assert(!handshake(&p, cert, 0, false));
	tls_describe_failure(p.ssl, &acc, p.err, buf, len);
	peer_free(&p);
}

/* --- sessions to resume ---------------------------------------------- */

/*
 * A server context showing srv_cert, at most version MAXV (0: any), with
 * extended master secret unless NO_EMS. Its tickets are its own: a
 * session it issued resumes on another connection to it.
 */
static SSL_CTX *
resuming_server(int maxv, bool no_ems)
{
	SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());

	ck_assert_ptr_nonnull(sctx);
	ck_assert_int_eq(SSL_CTX_use_certificate(sctx, srv_cert), 1);
	ck_assert_int_eq(SSL_CTX_use_PrivateKey(sctx, srv_key), 1);
	if (maxv != 0)
		SSL_CTX_set_max_proto_version(sctx, maxv);
	if (no_ems)
		SSL_CTX_set_options(sctx, SSL_OP_NO_EXTENDED_MASTER_SECRET);
	return sctx;
}

/* A handshake with a server on SCTX, the client offering OFFER if any. */
static bool
handshake_on(struct peer *p, SSL_CTX *sctx, SSL_SESSION *offer)
{
	client_ssl(p);
	if (offer != NULL)
		ck_assert_int_eq(SSL_set_session(p->ssl, offer), 1);
	ck_assert_int_eq(SSL_CTX_up_ref(sctx), 1);
	p->sctx = sctx;
	ck_assert_ptr_nonnull(p->srv = SSL_new(sctx));
	return drive(p);
}

/*
 * Ends P with the client's close_notify, as a poll ends: OpenSSL takes
 * a session whose connection is freed without one for a broken one.
 */
static void
peer_close(struct peer *p)
{
	ck_assert_int_ge(SSL_shutdown(p->ssl), 0);
	peer_free(p);
}

/* The client reads what came after the handshake: TLS 1.3 tickets. */
static void
read_tickets(struct peer *p)
{
	char c;
	int r = SSL_read(p->ssl, &c, 1);

	ck_assert_int_le(r, 0);
	ck_assert_int_eq(SSL_get_error(p->ssl, r), SSL_ERROR_WANT_READ);
}

START_TEST(tls13_ticket_is_kept_and_used_once)
{
	SSL_CTX *sctx = resuming_server(0, false);
	SSL_SESSION *sess, *next;
	struct peer p;

	ck_assert(handshake_on(&p, sctx, NULL));
	read_tickets(&p);
	ck_assert_ptr_nonnull(sess = tls_session_to_keep(p.ssl));
	ck_assert_ptr_null(tls_session_to_keep(p.ssl));
	/* The context, shared by accounts, keeps none of its own. */
	ck_assert_int_eq(SSL_CTX_sess_number(p.ctx), 0);
	peer_close(&p);

	ck_assert(handshake_on(&p, sctx, sess));
	ck_assert_int_eq(SSL_session_reused(p.ssl), 1);
	ck_assert_int_eq(SSL_version(p.ssl), TLS1_3_VERSION);
	/* The ticket just used is not kept again; the next one is. */
	ck_assert_ptr_null(tls_session_to_keep(p.ssl));
	read_tickets(&p);
	ck_assert_ptr_nonnull(next = tls_session_to_keep(p.ssl));
	ck_assert_ptr_ne(next, sess);
	SSL_SESSION_free(next);
	SSL_SESSION_free(sess);
	peer_close(&p);
	SSL_CTX_free(sctx);
}
END_TEST

START_TEST(tls12_session_is_kept_and_resumes)
{
	SSL_CTX *sctx = resuming_server(TLS1_2_VERSION, false);
	SSL_SESSION *sess, *next;
	struct peer p;

	ck_assert(handshake_on(&p, sctx, NULL));
	ck_assert_int_eq(SSL_get_extms_support(p.ssl), 1);
	ck_assert_ptr_nonnull(sess = tls_session_to_keep(p.ssl));
	peer_close(&p);
	ck_assert(handshake_on(&p, sctx, sess));
	ck_assert_int_eq(SSL_session_reused(p.ssl), 1);
	ck_assert_ptr_nonnull(next = tls_session_to_keep(p.ssl));
	SSL_SESSION_free(next);
	SSL_SESSION_free(sess);
	peer_close(&p);
	SSL_CTX_free(sctx);
}
END_TEST

/* RFC 7627: such a session is not resumed, so not kept. */
START_TEST(tls12_without_extended_master_secret_is_not_kept)
{
	SSL_CTX *sctx = resuming_server(TLS1_2_VERSION, true);
	struct peer p;

	ck_assert(handshake_on(&p, sctx, NULL));
	ck_assert_int_eq(SSL_get_extms_support(p.ssl), 0);
	ck_assert_ptr_null(tls_session_to_keep(p.ssl));
	peer_free(&p);
	SSL_CTX_free(sctx);
}
END_TEST

/* Whether the fingerprint of ACC under CTX is FP. */
static bool
same_fp(SSL_CTX *ctx, const unsigned char *fp)
{
	unsigned char now[TLS_FP_LEN];

	ck_assert(tls_session_fp(ctx, &acc, now));
	return memcmp(now, fp, TLS_FP_LEN) == 0;
}

START_TEST(fingerprint_follows_every_setting)
{
	struct timespec times[2] = {{0, UTIME_OMIT}};
	char err[256], pin[80];
	char *pins[] = {pin, NULL};
	unsigned char fp[TLS_FP_LEN];
	const struct account saved = acc;
	SSL_CTX *ctx, *other;
	struct stat sb;

	ck_assert_ptr_nonnull(ctx = tls_ctx_get(&acc, err, sizeof(err)));
	ck_assert(tls_session_fp(ctx, &acc, fp));
	ck_assert(same_fp(ctx, fp));
	acc.host = "127.0.0.1";
	ck_assert(!same_fp(ctx, fp));
	acc = saved;
	acc.port = 1995;
	ck_assert(!same_fp(ctx, fp));
	acc = saved;
	acc.tls = CONF_TLS_STARTTLS;
	ck_assert(!same_fp(ctx, fp));
	acc = saved;
	acc.user = "bob";
	ck_assert(!same_fp(ctx, fp));
	acc = saved;
	pin_of(srv_key, pin, sizeof(pin));
	acc.tls_pins = pins;
	acc.ntls_pins = 1;
	ck_assert(!same_fp(ctx, fp));
	acc = saved;

	/* The context's settings: verification, CA, client certificate. */
	acc.tls_verify = false;
	ck_assert_ptr_nonnull(other = tls_ctx_get(&acc, err, sizeof(err)));
	acc = saved;
	ck_assert(!same_fp(other, fp));
	SSL_CTX_free(other);
	/* A reload makes the same context again: the same fingerprint. */
	tls_ctx_forget();
	ck_assert_ptr_nonnull(other = tls_ctx_get(&acc, err, sizeof(err)));
	ck_assert_ptr_ne(other, ctx);
	ck_assert(same_fp(other, fp));
	SSL_CTX_free(other);
	/* A CA file changed since: another. */
	ck_assert_int_eq(stat(ca_pem, &sb), 0);
	times[1].tv_sec = sb.st_mtim.tv_sec - 100;
	ck_assert_int_eq(utimensat(AT_FDCWD, ca_pem, times, 0), 0);
	ck_assert_ptr_nonnull(other = tls_ctx_get(&acc, err, sizeof(err)));
	ck_assert(!same_fp(other, fp));
	SSL_CTX_free(other);
	SSL_CTX_free(ctx);
}
END_TEST

/* --- shared contexts ------------------------------------------------- */

START_TEST(same_settings_share_a_context)
{
	char err[256];
	SSL_CTX *a, *b, *c, *d;

	ck_assert_ptr_nonnull(a = tls_ctx_get(&acc, err, sizeof(err)));
	ck_assert_ptr_nonnull(b = tls_ctx_get(&acc, err, sizeof(err)));
	ck_assert_ptr_eq(a, b);

	/* Any setting of the key makes another one. */
	acc.tls_min_version = "TLSv1.3";
	ck_assert_ptr_nonnull(c = tls_ctx_get(&acc, err, sizeof(err)));
	ck_assert_ptr_ne(c, a);
	acc.tls_min_version = NULL;
	acc.tls_verify = false;
	ck_assert_ptr_nonnull(d = tls_ctx_get(&acc, err, sizeof(err)));
	ck_assert_ptr_ne(d, a);
	ck_assert_ptr_ne(d, c);
	acc.tls_verify = true;

	/* Other account, same settings: shared. */
	acc.host = "other.test";
	acc.name = "other";
	SSL_CTX_free(b);
	ck_assert_ptr_nonnull(b = tls_ctx_get(&acc, err, sizeof(err)));
	ck_assert_ptr_eq(a, b);
	SSL_CTX_free(a);
	SSL_CTX_free(b);
	SSL_CTX_free(c);
	SSL_CTX_free(d);
}
END_TEST

/*
 * A CA file that changed makes a new context, read from the new file: a
 * server the old file trusted is refused. A context still in use stays
 * usable.
 */
START_TEST(changed_ca_file_makes_a_new_context)
{
	char err[256];
	struct peer p;
	SSL_CTX *old, *now;
	SSL *ssl;

	ck_assert_ptr_nonnull(old = tls_ctx_get(&acc, err, sizeof(err)));
	ck_assert(handshake(&p, srv_cert, 0, false));
	peer_free(&p);

	write_cert(ca_pem, other_ca_cert, "w");
	ck_assert_ptr_nonnull(now = tls_ctx_get(&acc, err, sizeof(err)));
	ck_assert_ptr_ne(now, old);
	ck_assert(!handshake(&p, srv_cert, 0, false));
	ck_assert_int_eq(SSL_get_verify_result(p.ssl),
	    X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
	peer_free(&p);

	/* The replaced one lives on for its user. */
	ck_assert_ptr_nonnull(ssl = tls_ssl_new(old, &acc));
	SSL_free(ssl);
	SSL_CTX_free(old);
	SSL_CTX_free(now);
}
END_TEST

/* Only the modification time changed: still a new context. */
START_TEST(touched_ca_file_makes_a_new_context)
{
	struct timespec times[2] = {{0, UTIME_OMIT}};
	char err[256];
	SSL_CTX *old, *now, *again;
	struct stat sb;

	ck_assert_ptr_nonnull(old = tls_ctx_get(&acc, err, sizeof(err)));
	/* The seconds only: the nanoseconds stay as they were. */
	ck_assert_int_eq(stat(ca_pem, &sb), 0);
	times[1].tv_sec = sb.st_mtim.tv_sec - 100;
	times[1].tv_nsec = sb.st_mtim.tv_nsec;
	ck_assert_int_eq(utimensat(AT_FDCWD, ca_pem, times, 0), 0);
	ck_assert_ptr_nonnull(now = tls_ctx_get(&acc, err, sizeof(err)));
	ck_assert_ptr_ne(now, old);
	ck_assert_ptr_nonnull(again = tls_ctx_get(&acc, err, sizeof(err)));
	ck_assert_ptr_eq(again, now);
	SSL_CTX_free(old);
	SSL_CTX_free(now);
	SSL_CTX_free(again);
}
END_TEST

START_TEST(forget_drops_the_shared_contexts)
{
	char err[256];
	SSL_CTX *old, *now;
	SSL *ssl;

	ck_assert_ptr_nonnull(old = tls_ctx_get(&acc, err, sizeof(err)));
	tls_ctx_forget();
	ck_assert_ptr_nonnull(now = tls_ctx_get(&acc, err, sizeof(err)));
	ck_assert_ptr_ne(now, old);
	/* Forgotten, not freed under its user. */
	ck_assert_ptr_nonnull(ssl = tls_ssl_new(old, &acc));
	SSL_free(ssl);
	SSL_CTX_free(old);
	SSL_CTX_free(now);
	/* Twice, and on an empty cache, is harmless. */
	tls_ctx_forget();
	tls_ctx_forget();
}
END_TEST

START_TEST(unreadable_ca_file_is_an_error)
{
	char err[256], path[128], want[256];

	tmp_path(path, sizeof(path), "missing.pem");
	acc.ca_file = path;
	ck_assert_ptr_null(tls_ctx_get(&acc, err, sizeof(err)));
	snprintf(want, sizeof(want), "cannot load CA %s: ", path);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);
	/* Not cached: the same error the next time. */
	err[0] = '\0';
	ck_assert_ptr_null(tls_ctx_get(&acc, err, sizeof(err)));
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);
}
END_TEST

/* --- handshake, names, pins ---------------------------------------- */

START_TEST(verified_handshake_sends_sni)
{
	struct peer p;
	struct tls_cert_desc d;
	char want[128], pin[80], summary[128];
	struct tm tm;

	ck_assert(handshake(&p, srv_cert, 0, false));
	ck_assert_int_eq(SSL_get_verify_result(p.ssl), X509_V_OK);
	ck_assert_str_eq(
	    SSL_get_servername(p.srv, TLSEXT_NAMETYPE_host_name), "pop.test");

	/* The server sends its own certificate only: a chain of one. */
	ck_assert(tls_peer_cert(p.ssl, 0, &d));
	ck_assert_str_eq(d.subject, "/CN=pop.test");
	ck_assert_str_eq(d.issuer, "/CN=Test CA");
	ck_assert_int_eq(ASN1_TIME_to_tm(X509_get0_notAfter(srv_cert), &tm), 1);
	strftime(want, sizeof(want), "%Y-%m-%d %H:%M:%S UTC", &tm);
	ck_assert_str_eq(d.not_after, want);
	ck_assert_int_eq(
	    ASN1_TIME_to_tm(X509_get0_notBefore(srv_cert), &tm), 1);
	strftime(want, sizeof(want), "%Y-%m-%d %H:%M:%S UTC", &tm);
	ck_assert_str_eq(d.not_before, want);
	ck_assert(strcmp(d.not_before, d.not_after) < 0);
	ck_assert(!tls_peer_cert(p.ssl, 1, &d));

	/* The pin, as tls_pins takes it, is the key's and no other. */
	ck_assert(tls_peer_pin(p.ssl, pin, sizeof(pin)));
	pin_of(srv_key, want, sizeof(want));
	ck_assert_str_eq(pin, want);
	ck_assert(!tls_peer_pin(p.ssl, pin, 10));

	tls_summary(p.ssl, summary, sizeof(summary));
	snprintf(want, sizeof(want), "%s %s", SSL_get_version(p.ssl),
	    SSL_get_cipher_name(p.ssl));
	ck_assert_str_eq(summary, want);
	ck_assert(strncmp(summary, "TLSv1.", 6) == 0);
	peer_free(&p);
}
END_TEST

/* An address is verified against the certificate's IP names, no SNI. */
START_TEST(ip_literal_is_verified_without_sni)
{
	struct peer p;
	char buf[256];

	acc.host = "127.0.0.1";
	ck_assert(handshake(&p, srv_cert, 0, false));
	ck_assert_ptr_null(
	    SSL_get_servername(p.srv, TLSEXT_NAMETYPE_host_name));
	peer_free(&p);

	acc.host = "127.0.0.2";
	failure_text(srv_cert, buf, sizeof(buf));
	ck_assert_str_eq(buf,
	    "certificate verification failed: hostname mismatch: 127.0.0.2 vs pop.test, (an IP address)");
}
END_TEST

START_TEST(pins_accept_the_right_key_only)
{
	char right[80], wrong[80], err[256], want[128];
	char *one[2] = {right, NULL}, *two[3] = {wrong, right, NULL},
	     *bad[2] = {wrong, NULL};
	struct peer p;
	SSL *fresh;

	pin_of(srv_key, right, sizeof(right));
	pin_of(ca_key, wrong, sizeof(wrong));
	ck_assert(handshake(&p, srv_cert, 0, false));

	/* No pins: nothing to check. */
	ck_assert(tls_check_pins(p.ssl, &acc, err, sizeof(err)));
	acc.tls_pins = one;
	acc.ntls_pins = 1;
	ck_assert(tls_check_pins(p.ssl, &acc, err, sizeof(err)));
	/* Rotation: any one of several. */
	acc.tls_pins = two;
	acc.ntls_pins = 2;
	ck_assert(tls_check_pins(p.ssl, &acc, err, sizeof(err)));
	acc.tls_pins = bad;
	acc.ntls_pins = 1;
	ck_assert(!tls_check_pins(p.ssl, &acc, err, sizeof(err)));
	snprintf(want, sizeof(want), "pin mismatch: server key is %s", right);
	ck_assert_str_eq(err, want);

	/* No handshake, no certificate: refused, not passed. */
	ck_assert_ptr_nonnull(fresh = tls_ssl_new(p.ctx, &acc));
	ck_assert(!tls_check_pins(fresh, &acc, err, sizeof(err)));
	ck_assert_str_eq(err, "pin check: no server certificate");
	SSL_free(fresh);
	peer_free(&p);
}
END_TEST

/* --- failures, in words ---------------------------------------------- */

START_TEST(untrusted_certificate_is_described)
{
	char buf[256];

	acc.ca_file = other_ca_pem;
	failure_text(srv_cert, buf, sizeof(buf));
	ck_assert_str_eq(buf,
	    "certificate verification failed: unable to get local issuer certificate");
}
END_TEST

START_TEST(expired_certificate_is_described)
{
	char buf[256];

	failure_text(expired_cert, buf, sizeof(buf));
	ck_assert_str_eq(
	    buf, "certificate verification failed: certificate has expired");
}
END_TEST

START_TEST(wrong_host_is_described_with_both_names)
{
	char buf[256];

	acc.host = "other.test";
	failure_text(srv_cert, buf, sizeof(buf));
	ck_assert_str_eq(buf,
	    "certificate verification failed: hostname mismatch: other.test vs pop.test, (an IP address)");
}
END_TEST

/* A wildcard stands for a whole label, never for part of one. */
START_TEST(partial_wildcard_is_no_match)
{
	struct peer p;
	char buf[256];
	X509 *whole, *part;

	whole = make_cert(
	    srv_key, "wild", "DNS:*.mail.test", -1, 30, ca_cert, ca_key);
	part = make_cert(
	    srv_key, "part", "DNS:p*.mail.test", -1, 30, ca_cert, ca_key);
	acc.host = "pop.mail.test";
	ck_assert(handshake(&p, whole, 0, false));
	peer_free(&p);
	failure_text(part, buf, sizeof(buf));
	ck_assert_str_eq(buf,
	    "certificate verification failed: hostname mismatch: pop.mail.test vs p*.mail.test");
	X509_free(whole);
	X509_free(part);
}
END_TEST

/* Verification off (a logged opt-out): an untrusted server is let in. */
START_TEST(no_verify_accepts_untrusted)
{
	struct peer p;

	acc.ca_file = other_ca_pem;
	acc.tls_verify = false;
	ck_assert(handshake(&p, expired_cert, 0, false));
	peer_free(&p);
}
END_TEST

/* A failure that is not the certificate's: OpenSSL's reason. */
START_TEST(protocol_failure_is_described)
{
	struct peer p;
	char buf[256];

	acc.tls_min_version = "TLSv1.3";
	ck_assert(!handshake(&p, srv_cert, TLS1_2_VERSION, false));
	ck_assert_uint_ne(p.err, 0);
	tls_describe_failure(p.ssl, &acc, p.err, buf, sizeof(buf));
	ck_assert_msg(strncmp(buf, "TLS handshake failed: ", 22) == 0 &&
			  strcmp(buf + 22, "connection closed") != 0 &&
			  strcmp(buf + 22, "unknown error") != 0,
	    "%s", buf);
	peer_free(&p);

	/* TLSv1.2 is the default floor: the same server is fine. */
	acc.tls_min_version = NULL;
	ck_assert(handshake(&p, srv_cert, TLS1_2_VERSION, false));
	ck_assert_str_eq(SSL_get_version(p.ssl), "TLSv1.2");
	peer_free(&p);

	tls_describe_failure(NULL, &acc, 0, buf, sizeof(buf));
	ck_assert_str_eq(buf, "TLS handshake failed: connection closed");
}
END_TEST

/* --- client certificates --------------------------------------------- */

START_TEST(client_certificate_is_presented)
{
	struct peer p;
	X509 *seen;

	acc.client_cert = client_pem;
	acc.client_key = client_key;
	ck_assert(handshake(&p, srv_cert, 0, true));
	ck_assert_ptr_nonnull(seen = SSL_get1_peer_certificate(p.srv));
	ck_assert_int_eq(X509_cmp(seen, cli_cert), 0);
	X509_free(seen);
	peer_free(&p);
}
END_TEST

static void
assert_ctx_error(const char *want)
{
	char err[512];

	err[0] = '\0';
	ck_assert_ptr_null(tls_ctx_get(&acc, err, sizeof(err)));
	ck_assert_str_eq(err, want);
}

START_TEST(client_key_file_is_checked)
{
	char want[512], dir[128], missing[128], err[256];
	SSL_CTX *ctx;

	acc.client_cert = client_pem;
	acc.client_key = client_key;

	ck_assert_int_eq(chmod(client_key, 0640), 0);
	snprintf(want, sizeof(want),
	    "client key %s is accessible by group or others (chmod 600 it)",
	    client_key);
	assert_ctx_error(want);
	ck_assert_int_eq(chmod(client_key, 0604), 0);
	assert_ctx_error(want);
	ck_assert_int_eq(chmod(client_key, 0600), 0);
	ck_assert_ptr_nonnull(ctx = tls_ctx_get(&acc, err, sizeof(err)));
	SSL_CTX_free(ctx);
	/* Made readable to others later: the cached context is not used. */
	ck_assert_int_eq(chmod(client_key, 0644), 0);
	assert_ctx_error(want);
	ck_assert_int_eq(chmod(client_key, 0600), 0);

	tmp_path(dir, sizeof(dir), "dir.key");
	ck_assert_int_eq(mkdir(dir, 0700), 0);
	acc.client_key = dir;
	snprintf(
	    want, sizeof(want), "client key %s is not a regular file", dir);
	assert_ctx_error(want);

	tmp_path(missing, sizeof(missing), "missing.key");
	acc.client_key = missing;
	snprintf(want, sizeof(want),
	    "cannot read client key %s: No such file or directory", missing);
	assert_ctx_error(want);

	/* Another key of the certificate's type: OpenSSL's reason. */
	acc.client_key = stray_key;
	snprintf(want, sizeof(want),
	    "cannot load client key %s: key values mismatch", stray_key);
	assert_ctx_error(want);
	/* Of another type: loaded, and then found to match no certificate. */
	acc.client_key = other_type_key;
	snprintf(want, sizeof(want), "client key %s does not match %s",
	    other_type_key, client_pem);
	assert_ctx_error(want);
}
END_TEST

START_TEST(missing_client_certificate_is_an_error)
{
	char err[256], path[128], want[256];

	tmp_path(path, sizeof(path), "missing.pem");
	acc.client_cert = path;
	acc.client_key = client_key;
	ck_assert_ptr_null(tls_ctx_get(&acc, err, sizeof(err)));
	snprintf(
	    want, sizeof(want), "cannot load client certificate %s: ", path);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "%s", err);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("tls");
	TCase *tc;

	tc = tcase_create("contexts");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, same_settings_share_a_context);
	tcase_add_test(tc, changed_ca_file_makes_a_new_context);
	tcase_add_test(tc, touched_ca_file_makes_a_new_context);
	tcase_add_test(tc, forget_drops_the_shared_contexts);
	tcase_add_test(tc, unreadable_ca_file_is_an_error);
	suite_add_tcase(s, tc);

	tc = tcase_create("verification");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, verified_handshake_sends_sni);
	tcase_add_test(tc, ip_literal_is_verified_without_sni);
	tcase_add_test(tc, pins_accept_the_right_key_only);
	tcase_add_test(tc, untrusted_certificate_is_described);
	tcase_add_test(tc, expired_certificate_is_described);
	tcase_add_test(tc, wrong_host_is_described_with_both_names);
	tcase_add_test(tc, partial_wildcard_is_no_match);
	tcase_add_test(tc, no_verify_accepts_untrusted);
	tcase_add_test(tc, protocol_failure_is_described);
	suite_add_tcase(s, tc);

	tc = tcase_create("resumption");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, tls13_ticket_is_kept_and_used_once);
	tcase_add_test(tc, tls12_session_is_kept_and_resumes);
	tcase_add_test(tc, tls12_without_extended_master_secret_is_not_kept);
	tcase_add_test(tc, fingerprint_follows_every_setting);
	suite_add_tcase(s, tc);

	tc = tcase_create("client_cert");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, client_certificate_is_presented);
	tcase_add_test(tc, client_key_file_is_checked);
	tcase_add_test(tc, missing_client_certificate_is_an_error);
	suite_add_tcase(s, tc);

	return check_main(s);
}
