/*
 * TLS set-up and verification for the transport. Certificates are
 * verified by default; turning that off is a per-account opt-out.
 */
#include <arpa/inet.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "conf.h"
#include "tls.h"

static void cert_names(X509 *cert, char *buf, size_t len);
static SSL_CTX *ctx_new(const struct account *a, char *err, size_t errlen);
static bool ctx_set_id(SSL_CTX *ctx, const char *key, uint64_t files);

/* Where the names of the server's certificate are kept for messages. */
static int names_idx = -1;
/* Where a connection keeps the newest session the server issued on it. */
static int sess_idx = -1;
/* Where a context keeps the digest of its settings (tls_session_fp()). */
static int ctx_id_idx = -1;

static void
free_ex(
    void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	free(ptr);
}

static void
free_session(
    void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	SSL_SESSION_free(ptr);
}

static bool
ex_indices(void)
{
	if (names_idx == -1)
		names_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, free_ex);
	if (sess_idx == -1)
		sess_idx =
		    SSL_get_ex_new_index(0, NULL, NULL, NULL, free_session);
	if (ctx_id_idx == -1)
		ctx_id_idx =
		    SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_ex);
	return names_idx != -1 && sess_idx != -1 && ctx_id_idx != -1;
}

/*
 * Keeps the newest session the server issued on SSL (TLS 1.3 servers
 * send several tickets) until tls_session_to_keep() takes it: only the
 * account's session, after the poll, decides whether it is kept.
 */
static int
new_session(SSL *ssl, SSL_SESSION *sess)
{
	SSL_SESSION *old = SSL_get_ex_data(ssl, sess_idx);

	if (SSL_set_ex_data(ssl, sess_idx, sess) != 1)
		return 0;
	SSL_SESSION_free(old);
	return 1; /* the reference is ours now */
}

/*
 * Remembers the names the server's certificate was issued for: after a
 * failed handshake OpenSSL no longer hands out the certificate, and
 * "hostname mismatch" is only useful with both names.
 */
static int
verify_cb(int ok, X509_STORE_CTX *xs)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(
	    xs, SSL_get_ex_data_X509_STORE_CTX_idx());
	X509 *cert = X509_STORE_CTX_get_current_cert(xs);
	char names[256];

	if (ssl != NULL && cert != NULL &&
	    X509_STORE_CTX_get_error_depth(xs) == 0 &&
	    SSL_get_ex_data(ssl, names_idx) == NULL) {
		cert_names(cert, names, sizeof(names));
		SSL_set_ex_data(ssl, names_idx, strdup(names));
	}
	return ok;
}

static bool
is_ip_literal(const char *host)
{
	unsigned char buf[16];

	return inet_pton(AF_INET, host, buf) == 1 ||
	       inet_pton(AF_INET6, host, buf) == 1;
}

static void
openssl_reason(char *err, size_t errlen, const char *what, const char *path)
{
	unsigned long e = ERR_get_error();
	const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;

	snprintf(
	    err, errlen, "%s %s: %s", what, path, r != NULL ? r : "failed");
	ERR_clear_error();
}

/*
 * Opens the client key PATH for reading, refusing one accessible by group
 * or others, as password files are (secret.h): the key is a credential,
 * and quietly using an exposed one would hide that it is exposed. The
 * check is on the descriptor read afterwards, so no swap in between.
 */
static FILE *
open_key(const char *path, char *err, size_t errlen)
{
	struct stat st;
	FILE *fp;
	int fd;

	/* O_NONBLOCK: a FIFO put in place of the file must not hang us. */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) ==
	    -1) {
		snprintf(err, errlen, "cannot read client key %s: %s", path,
		    strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		snprintf(
		    err, errlen, "client key %s is not a regular file", path);
		close(fd);
		return NULL;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		snprintf(err, errlen,
		    "client key %s is accessible by group or others (chmod 600 it)",
		    path);
		close(fd);
		return NULL;
	}
	if ((fp = fdopen(fd, "r")) == NULL) {
		snprintf(err, errlen, "cannot read client key %s: %s", path,
		    strerror(errno));
		close(fd);
	}
	return fp;
}

/* Loads A's client key into CTX, from a file open_key() accepted. */
static bool
ctx_client_key(SSL_CTX *ctx, const struct account *a, char *err, size_t errlen)
{
	/* Our own stdio buffer, so that the key's text can be wiped. */
	char buf[BUFSIZ];
	EVP_PKEY *key;
	FILE *fp;
	bool ok;

	if ((fp = open_key(a->client_key, err, errlen)) == NULL)
		return false;
	setvbuf(fp, buf, _IOFBF, sizeof(buf));
	key = PEM_read_PrivateKey(fp, NULL, SSL_CTX_get_default_passwd_cb(ctx),
	    SSL_CTX_get_default_passwd_cb_userdata(ctx));
	fclose(fp);
	explicit_bzero(buf, sizeof(buf));
	ok = key != NULL && SSL_CTX_use_PrivateKey(ctx, key) == 1;
	if (!ok)
		openssl_reason(
		    err, errlen, "cannot load client key", a->client_key);
	EVP_PKEY_free(key);
	return ok;
}

static bool
ctx_client_cert(SSL_CTX *ctx, const struct account *a, char *err, size_t errlen)
{
	if (a->client_cert == NULL)
		return true;
	if (SSL_CTX_use_certificate_chain_file(ctx, a->client_cert) != 1) {
		openssl_reason(err, errlen, "cannot load client certificate",
		    a->client_cert);
		return false;
	}
	if (!ctx_client_key(ctx, a, err, errlen))
		return false;
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "client key %s does not match %s",
		    a->client_key, a->client_cert);
		return false;
	}
	return true;
}

/*
 * Contexts by their settings. Loading the system trust store costs some
 * 20 ms of CPU; with one context per set of settings, 10,000 accounts
 * pay it once, and polls of one account after the first pay nothing but
 * a stat() of the files the context was made from.
 */
struct cached {
	struct cached *next;
	char *key;
	uint64_t files; /* files_stamp() when the context was made */
	SSL_CTX *ctx;
};

static struct cached *cache;

static char *
ctx_key(const struct account *a)
{
	char *key = NULL;

	/* Unit separators: none of these strings may hold control bytes. */
	if (asprintf(&key, "%s\x1f%d\x1f%s\x1f%s\x1f%s\x1f%s",
		a->tls_min_version != NULL ? a->tls_min_version : "",
		a->tls_verify, a->ca_file != NULL ? a->ca_file : "\x1e",
		a->ca_path != NULL ? a->ca_path : "\x1e",
		a->client_cert != NULL ? a->client_cert : "\x1e",
		a->client_key != NULL ? a->client_key : "\x1e") == -1)
		return NULL;
	return key;
}

static uint64_t
stamp_add(uint64_t h, const char *path)
{
	struct stat sb;
	uint64_t v[6] = {0};
	size_t i;

	if (path == NULL)
		return h;
	if (stat(path, &sb) == 0) {
		v[0] = (uint64_t)sb.st_dev;
		v[1] = (uint64_t)sb.st_ino;
		v[2] = (uint64_t)sb.st_size;
		v[3] = (uint64_t)sb.st_mtim.tv_sec;
		v[4] = (uint64_t)sb.st_mtim.tv_nsec;
		/* A key made readable to others is refused from then on. */
		v[5] = (uint64_t)sb.st_mode;
	} else
		v[0] = (uint64_t)errno;
	/* FNV-1a over the fields: a change, not an attack, is to be seen. */
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		h ^= v[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/*
 * What the files behind a context look like now: a renewed client
 * certificate or an updated trust store (also the system's) makes a new
 * context at the next poll, without a reload.
 */
static uint64_t
files_stamp(const struct account *a)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	if (a->ca_file == NULL && a->ca_path == NULL) {
		h = stamp_add(h, X509_get_default_cert_file());
		h = stamp_add(h, X509_get_default_cert_dir());
	}
	h = stamp_add(h, a->ca_file);
	h = stamp_add(h, a->ca_path);
	h = stamp_add(h, a->client_cert);
	return stamp_add(h, a->client_key);
}

static void
cached_free(struct cached *c)
{
	SSL_CTX_free(c->ctx);
	free(c->key);
	free(c);
}

/*
 * Gives CTX the digest of its settings KEY and their files' FILES, for
 * tls_session_fp(): a session saved under one context is offered under
 * another only if both were made from the same settings and files.
 */
static bool
ctx_set_id(SSL_CTX *ctx, const char *key, uint64_t files)
{
	unsigned char *id;
	EVP_MD_CTX *md;
	bool ok;

	if ((id = malloc(TLS_FP_LEN)) == NULL)
		return false;
	if ((md = EVP_MD_CTX_new()) == NULL) {
		free(id);
		return false;
	}
	ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(md, key, strlen(key) + 1) == 1 &&
	     EVP_DigestUpdate(md, &files, sizeof(files)) == 1 &&
	     EVP_DigestFinal_ex(md, id, NULL) == 1 &&
	     SSL_CTX_set_ex_data(ctx, ctx_id_idx, id) == 1;
	EVP_MD_CTX_free(md);
	if (!ok)
		free(id);
	return ok;
}

SSL_CTX *
tls_ctx_get(const struct account *a, char *err, size_t errlen)
{
	struct cached *c, **cp;
	char *key = ctx_key(a);
	uint64_t files = files_stamp(a);

	if (key == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	for (cp = &cache; (c = *cp) != NULL; cp = &c->next) {
		if (strcmp(c->key, key) != 0)
			continue;
		if (c->files == files) {
			free(key);
			SSL_CTX_up_ref(c->ctx);
			return c->ctx;
		}
		/* Sessions using the old context keep it until they end. */
		*cp = c->next;
		cached_free(c);
		break;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		free(key);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if ((c->ctx = ctx_new(a, err, errlen)) == NULL ||
	    !ctx_set_id(c->ctx, key, files)) {
		if (c->ctx != NULL) {
			SSL_CTX_free(c->ctx);
			snprintf(err, errlen, "out of memory");
		}
		free(key);
		free(c);
		return NULL;
	}
	c->key = key;
	c->files = files;
	c->next = cache;
	cache = c;
	SSL_CTX_up_ref(c->ctx);
	return c->ctx;
}

void
tls_ctx_forget(void)
{
	struct cached *c;

	while ((c = cache) != NULL) {
		cache = c->next;
		cached_free(c);
	}
}

/* A new context for ACCOUNT's settings, or NULL with ERR saying why. */
static SSL_CTX *
ctx_new(const struct account *a, char *err, size_t errlen)
{
	SSL_CTX *ctx;
	int minv = TLS1_2_VERSION;

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		snprintf(err, errlen, "cannot create TLS context");
		return NULL;
	}
	if (a->tls_min_version != NULL &&
	    strcmp(a->tls_min_version, "TLSv1.3") == 0)
		minv = TLS1_3_VERSION;
	SSL_CTX_set_min_proto_version(ctx, minv);
	if (!ex_indices()) {
		snprintf(err, errlen, "out of memory");
		SSL_CTX_free(ctx);
		return NULL;
	}
	/*
	 * Sessions are kept per account (tlscache.h), never in the context:
	 * accounts with the same settings share it, and one must never be
	 * offered another's session.
	 */
	SSL_CTX_set_session_cache_mode(
	    ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, new_session);
	/*
	 * A session waiting for its server holds no TLS record buffers
	 * (about 34 KiB): with a thousand polls open, most are waiting.
	 */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_verify(
	    ctx, a->tls_verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, verify_cb);
	if (a->ca_file != NULL || a->ca_path != NULL) {
		if (SSL_CTX_load_verify_locations(
			ctx, a->ca_file, a->ca_path) != 1) {
			openssl_reason(err, errlen, "cannot load CA",
			    a->ca_file != NULL ? a->ca_file : a->ca_path);
			SSL_CTX_free(ctx);
			return NULL;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
		snprintf(err, errlen, "cannot load the system trust store");
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (!ctx_client_cert(ctx, a, err, errlen)) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

SSL *
tls_ssl_new(SSL_CTX *ctx, const struct account *a)
{
	X509_VERIFY_PARAM *param;
	SSL *ssl;

	if ((ssl = SSL_new(ctx)) == NULL)
		return NULL;
	param = SSL_get0_param(ssl);
	if (is_ip_literal(a->host)) {
		/* RFC 6066: SNI carries host names only, never addresses. */
		X509_VERIFY_PARAM_set1_ip_asc(param, a->host);
	} else {
		SSL_set_tlsext_host_name(ssl, a->host);
		X509_VERIFY_PARAM_set_hostflags(
		    param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		SSL_set1_host(ssl, a->host);
	}
	return ssl;
}

/* base64 of the SHA-256 of the peer's SubjectPublicKeyInfo. */
static bool
peer_pin(SSL *ssl, char *out, size_t outlen)
{
	unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
	unsigned int mdlen;
	X509 *cert;
	int len;
	bool ok = false;

	if ((cert = SSL_get1_peer_certificate(ssl)) == NULL)
		return false;
	len = i2d_PUBKEY(X509_get0_pubkey(cert), &der);
	if (len > 0 &&
	    EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL) == 1 &&
	    outlen > 4 * ((mdlen + 2) / 3)) {
		EVP_EncodeBlock((unsigned char *)out, md, (int)mdlen);
		ok = true;
	}
	OPENSSL_free(der);
	X509_free(cert);
	return ok;
}

bool
tls_check_pins(SSL *ssl, const struct account *a, char *err, size_t errlen)
{
	char pin[64];
	size_t i;

	if (a->ntls_pins == 0)
		return true;
	if (!peer_pin(ssl, pin, sizeof(pin))) {
		snprintf(err, errlen, "pin check: no server certificate");
		return false;
	}
	for (i = 0; i < a->ntls_pins; i++)
		if (strcmp(a->tls_pins[i] + strlen("sha256/"), pin) == 0)
			return true;
	snprintf(err, errlen, "pin mismatch: server key is sha256/%s", pin);
	return false;
}

/* The names a certificate is issued for, for an error message. */
static void
cert_names(X509 *cert, char *buf, size_t len)
{
	GENERAL_NAMES *sans;
	size_t o = 0;
	int i;

	buf[0] = '\0';
	sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	for (i = 0; sans != NULL && i < sk_GENERAL_NAME_num(sans); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
		const unsigned char *d;
		int n;

		if (g->type == GEN_DNS) {
			d = ASN1_STRING_get0_data(g->d.dNSName);
			n = ASN1_STRING_length(g->d.dNSName);
		} else if (g->type == GEN_IPADD) {
			d = (const unsigned char *)"(an IP address)";
			n = (int)strlen((const char *)d);
		} else
			continue;
		if (o + (size_t)n + 3 < len)
			o += (size_t)snprintf(buf + o, len - o, "%s%.*s",
			    o > 0 ? ", " : "", n, (const char *)d);
	}
	GENERAL_NAMES_free(sans);
	if (o == 0)
		X509_NAME_oneline(X509_get_subject_name(cert), buf, (int)len);
}

void
tls_describe_failure(
    SSL *ssl, const struct account *a, unsigned long e, char *buf, size_t len)
{
	long v = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
	const char *names;

	if (v == X509_V_ERR_HOSTNAME_MISMATCH ||
	    v == X509_V_ERR_IP_ADDRESS_MISMATCH) {
		names = SSL_get_ex_data(ssl, names_idx);
		snprintf(buf, len,
		    "certificate verification failed: hostname mismatch: %s vs %s",
		    a->host,
		    names != NULL && names[0] != '\0' ? names : "(no names)");
	} else if (v != X509_V_OK)
		snprintf(buf, len, "certificate verification failed: %s",
		    X509_verify_cert_error_string(v));
	else if (e != 0)
		snprintf(buf, len, "TLS handshake failed: %s",
		    ERR_reason_error_string(e) != NULL
			? ERR_reason_error_string(e)
			: "unknown error");
	else
		snprintf(buf, len, "TLS handshake failed: connection closed");
}

/* T as "2026-01-31 12:00:00 UTC", or "?" when it does not parse. */
static void
asn1_time(const ASN1_TIME *t, char *buf, size_t len)
{
	struct tm tm;

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1 ||
	    strftime(buf, len, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
		snprintf(buf, len, "?");
}

bool
tls_peer_cert(SSL *ssl, int i, struct tls_cert_desc *d)
{
	STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
	X509 *cert;

	/* A client's view of the chain starts with the server's own. */
	if (chain == NULL || i < 0 || i >= sk_X509_num(chain))
		return false;
	cert = sk_X509_value(chain, i);
	X509_NAME_oneline(
	    X509_get_subject_name(cert), d->subject, sizeof(d->subject));
	X509_NAME_oneline(
	    X509_get_issuer_name(cert), d->issuer, sizeof(d->issuer));
	asn1_time(
	    X509_get0_notBefore(cert), d->not_before, sizeof(d->not_before));
	asn1_time(X509_get0_notAfter(cert), d->not_after, sizeof(d->not_after));
	return true;
}

bool
tls_peer_pin(SSL *ssl, char *out, size_t outlen)
{
	char pin[64];

	if (!peer_pin(ssl, pin, sizeof(pin)))
		return false;
	return (size_t)snprintf(out, outlen, "sha256/%s", pin) < outlen;
}

void
tls_summary(SSL *ssl, char *buf, size_t len)
{
	snprintf(
	    buf, len, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
}

/* Adds the string S, its terminator included, to MD; NULL as "". */
static bool
digest_str(EVP_MD_CTX *md, const char *s)
{
	if (s == NULL)
		s = "";
	return EVP_DigestUpdate(md, s, strlen(s) + 1) == 1;
}

bool
tls_session_fp(
    SSL_CTX *ctx, const struct account *a, unsigned char fp[TLS_FP_LEN])
{
	const unsigned char *id = SSL_CTX_get_ex_data(ctx, ctx_id_idx);
	unsigned v[2] = {a->port, (unsigned)a->tls};
	EVP_MD_CTX *md;
	size_t i;
	bool ok;

	if (id == NULL || (md = EVP_MD_CTX_new()) == NULL)
		return false;
	/* The name sent (SNI) and checked is the host name (tls_ssl_new()). */
	ok = EVP_DigestInit_ex(md, EVP_sha256(), NULL) == 1 &&
	     EVP_DigestUpdate(md, id, TLS_FP_LEN) == 1 &&
	     EVP_DigestUpdate(md, v, sizeof(v)) == 1 &&
	     digest_str(md, a->host) && digest_str(md, a->user);
	for (i = 0; ok && i < a->ntls_pins; i++)
		ok = digest_str(md, a->tls_pins[i]);
	ok = ok && EVP_DigestFinal_ex(md, fp, NULL) == 1;
	EVP_MD_CTX_free(md);
	return ok;
}

SSL_SESSION *
tls_session_to_keep(SSL *ssl)
{
	SSL_SESSION *sess = SSL_get_ex_data(ssl, sess_idx);
	bool tls13 = SSL_version(ssl) >= TLS1_3_VERSION;

	if (sess != NULL)
		SSL_set_ex_data(ssl, sess_idx, NULL);
	/* RFC 7627 5.3: without it, resumption opens the triple handshake. */
	if (!tls13 && SSL_get_extms_support(ssl) != 1) {
		SSL_SESSION_free(sess);
		return NULL;
	}
	/* A TLS 1.2 server that issued nothing new expects the same again. */
	if (sess == NULL && !tls13 && SSL_session_reused(ssl))
		sess = SSL_get1_session(ssl);
	if (sess != NULL && !SSL_SESSION_is_resumable(sess)) {
		SSL_SESSION_free(sess);
		return NULL;
	}
	return sess;
}
