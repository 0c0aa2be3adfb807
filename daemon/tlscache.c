/*
 * The sessions of the accounts, by name: a hash table of entries, each
 * with the session in DER (its own copy of the server's certificate
 * included), so that an idle account costs its bytes and no live
 * OpenSSL objects.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include "tlscache.h"
#include "strhash.h"

/*
 * Buckets looked at for expired sessions on each save: the table is
 * swept a little at a time, so that an account removed from the
 * configuration does not hold its session for long after it expired.
 */
#define SWEEP_STEP 4

struct entry {
	struct entry *next;
	unsigned char fp[TLS_FP_LEN];
	unsigned char *der; /* the session, or NULL */
	size_t derlen;
	time_t expires; /* of the session */
	unsigned strikes;
	char name[];
};

static struct entry **tab;
static size_t nbuckets, nentries, used, room, sweep_at;

static size_t
entry_size(const struct entry *e)
{
	return sizeof(*e) + strlen(e->name) + 1;
}

/* Forgets E's session; its bytes are wiped, for they hold keys. */
static void
forget(struct entry *e)
{
	if (e->der == NULL)
		return;
	used -= e->derlen;
	OPENSSL_clear_free(e->der, e->derlen);
	e->der = NULL;
	e->derlen = 0;
}

/* Unlinks and frees the entry *EP. */
static void
unlink_entry(struct entry **ep)
{
	struct entry *e = *ep;

	forget(e);
	*ep = e->next;
	used -= entry_size(e);
	nentries--;
	free(e);
}

/* Frees the entry *EP when it holds nothing worth keeping. */
static void
settle(struct entry **ep)
{
	if ((*ep)->der == NULL && (*ep)->strikes == 0)
		unlink_entry(ep);
}

/* Where the entry for NAME is or would be linked. */
static struct entry **
slot(const char *name)
{
	struct entry **ep;

	if (nbuckets == 0)
		return NULL;
	for (ep = &tab[strhash(name, false) & (nbuckets - 1)]; *ep != NULL;
	     ep = &(*ep)->next)
		if (strcmp((*ep)->name, name) == 0)
			break;
	return ep;
}

static void
grow(void)
{
	size_t n = nbuckets ? nbuckets * 2 : 64, i;
	struct entry **t, *e, *next;

	if ((t = calloc(n, sizeof(*t))) == NULL)
		return; /* longer chains, still correct */
	for (i = 0; i < nbuckets; i++)
		for (e = tab[i]; e != NULL; e = next) {
			next = e->next;
			e->next = t[strhash(e->name, false) & (n - 1)];
			t[strhash(e->name, false) & (n - 1)] = e;
		}
	free(tab);
	tab = t;
	nbuckets = n;
	sweep_at = 0;
}

/* The entry for NAME, made under FP if there is none and room for it. */
static struct entry **
find_or_add(const char *name, const unsigned char fp[TLS_FP_LEN])
{
	struct entry **ep, *e;
	size_t len = strlen(name) + 1;

	if (room == 0)
		return NULL;
	if (nentries >= nbuckets)
		grow();
	if ((ep = slot(name)) == NULL)
		return NULL;
	if (*ep != NULL)
		return ep;
	if (used + sizeof(*e) + len > room ||
	    (e = calloc(1, sizeof(*e) + len)) == NULL)
		return NULL;
	memcpy(e->name, name, len);
	memcpy(e->fp, fp, TLS_FP_LEN);
	*ep = e;
	used += entry_size(e);
	nentries++;
	return ep;
}

/* Looks at a few buckets for sessions past their time. */
static void
sweep(time_t now)
{
	struct entry **ep;
	size_t i;

	for (i = 0; i < SWEEP_STEP && nbuckets > 0; i++) {
		sweep_at = (sweep_at + 1) & (nbuckets - 1);
		for (ep = &tab[sweep_at]; *ep != NULL;) {
			struct entry *e = *ep;

			if (e->der != NULL && e->expires <= now)
				forget(e);
			settle(ep);
			if (*ep == e)
				ep = &e->next;
		}
	}
}

void
tlscache_limit(size_t bytes)
{
	room = bytes;
	if (room == 0)
		tlscache_clear();
}

/* Whether SESS may still be offered at NOW. */
static bool
usable(SSL_SESSION *sess, time_t now)
{
	X509 *peer = SSL_SESSION_get0_peer(sess);

	if (!SSL_SESSION_is_resumable(sess))
		return false;
	/* Resumption skips verification: not past the certificate's end. */
	return peer == NULL ||
	       X509_cmp_time(X509_get0_notAfter(peer), &now) > 0;
}

SSL_SESSION *
tlscache_get(const char *name, const unsigned char fp[TLS_FP_LEN])
{
	struct entry **ep = slot(name), *e;
	const unsigned char *p;
	SSL_SESSION *sess;
	time_t now = time(NULL);

	if (ep == NULL || (e = *ep) == NULL)
		return NULL;
	/* Saved under settings that have changed since: never offered. */
	if (memcmp(e->fp, fp, TLS_FP_LEN) != 0) {
		unlink_entry(ep);
		return NULL;
	}
	if (e->der == NULL || e->strikes >= TLSCACHE_STRIKES)
		return NULL;
	p = e->der;
	sess = e->expires > now ? d2i_SSL_SESSION(NULL, &p, (long)e->derlen)
				: NULL;
	if (sess == NULL || !usable(sess, now)) {
		SSL_SESSION_free(sess);
		forget(e);
		settle(ep);
		return NULL;
	}
	return sess;
}

/* Puts SESS's DER into E, if there is room for it. */
static void
keep(struct entry *e, SSL_SESSION *sess)
{
	unsigned char *p;
	long t = SSL_SESSION_get_time(sess);
	long timeout = SSL_SESSION_get_timeout(sess);
	int len = i2d_SSL_SESSION(sess, NULL);

	if (len <= 0 || used + (size_t)len > room ||
	    (e->der = malloc((size_t)len)) == NULL)
		return;
	p = e->der;
	if (i2d_SSL_SESSION(sess, &p) != len) {
		OPENSSL_clear_free(e->der, (size_t)len);
		e->der = NULL;
		return;
	}
	e->derlen = (size_t)len;
	e->expires = (time_t)t + (time_t)timeout;
	used += e->derlen;
}

void
tlscache_put(const char *name, const unsigned char fp[TLS_FP_LEN],
    SSL_SESSION *sess, bool resumed)
{
	struct entry **ep;
	struct entry *e;

	if ((ep = find_or_add(name, fp)) == NULL)
		return;
	e = *ep;
	forget(e);
	if (memcmp(e->fp, fp, TLS_FP_LEN) != 0 || resumed)
		e->strikes = 0;
	memcpy(e->fp, fp, TLS_FP_LEN);
	if (e->strikes < TLSCACHE_STRIKES)
		keep(e, sess);
	settle(ep);
	sweep(time(NULL));
}

void
tlscache_drop(const char *name)
{
	struct entry **ep = slot(name);

	if (ep == NULL || *ep == NULL)
		return;
	forget(*ep);
	settle(ep);
}

bool
tlscache_strike(const char *name, const unsigned char fp[TLS_FP_LEN])
{
	struct entry **ep;
	struct entry *e;

	if ((ep = find_or_add(name, fp)) == NULL)
		return false;
	e = *ep;
	forget(e);
	if (memcmp(e->fp, fp, TLS_FP_LEN) != 0)
		e->strikes = 0;
	memcpy(e->fp, fp, TLS_FP_LEN);
	return ++e->strikes == TLSCACHE_STRIKES;
}

size_t
tlscache_bytes(void)
{
	return used;
}

void
tlscache_clear(void)
{
	size_t i;

	for (i = 0; i < nbuckets; i++)
		while (tab[i] != NULL)
			unlink_entry(&tab[i]);
	free(tab);
	tab = NULL;
	nbuckets = nentries = sweep_at = 0;
}
