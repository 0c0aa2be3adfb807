/*
 * Tests of daemon/tlscache.c, the accounts' TLS sessions between polls:
 * a session comes back for its account and fingerprint only, a changed
 * fingerprint drops it, expired ones are not offered, strikes bar an
 * account, and the room given bounds what is kept. Sessions are made
 * with the OpenSSL API (an ID, a master key, a cipher, a lifetime): no
 * handshake is needed for the store (test_tls.c has those).
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/ssl.h>

#include "tlscache.h"
#include "check_main.h"

static SSL_CTX *ctx;
static SSL *ssl; /* for a cipher the sessions name */

static const unsigned char fp_a[TLS_FP_LEN] = {1};
static const unsigned char fp_b[TLS_FP_LEN] = {2};

/* A resumable TLS 1.2 session with ID byte TAG, made at WHEN, for LIFE s. */
static SSL_SESSION *
make_session(unsigned char tag, time_t when, long life)
{
	unsigned char id[32], key[48];
	SSL_SESSION *s = SSL_SESSION_new();

	ck_assert_ptr_nonnull(s);
	memset(id, tag, sizeof(id));
	memset(key, tag ^ 0x5a, sizeof(key));
	ck_assert_int_eq(SSL_SESSION_set1_id(s, id, sizeof(id)), 1);
	ck_assert_int_eq(SSL_SESSION_set1_master_key(s, key, sizeof(key)), 1);
	ck_assert_int_eq(
	    SSL_SESSION_set_protocol_version(s, TLS1_2_VERSION), 1);
	ck_assert_int_eq(SSL_SESSION_set_cipher(
			     s, sk_SSL_CIPHER_value(SSL_get_ciphers(ssl), 0)),
	    1);
	SSL_SESSION_set_time(s, (long)when);
	SSL_SESSION_set_timeout(s, life);
	ck_assert(SSL_SESSION_is_resumable(s));
	return s;
}

/* The ID byte of SESS (0 for none); frees it. */
static unsigned
tag_of(SSL_SESSION *sess)
{
	const unsigned char *id;
	unsigned len, tag;

	if (sess == NULL)
		return 0;
	id = SSL_SESSION_get_id(sess, &len);
	tag = len > 0 ? id[0] : 0;
	SSL_SESSION_free(sess);
	return tag;
}

/* Saves a session tagged TAG for NAME under FP. */
static void
put(const char *name, const unsigned char *fp, unsigned char tag)
{
	SSL_SESSION *s = make_session(tag, time(NULL), 3600);

	tlscache_put(name, fp, s, false);
	SSL_SESSION_free(s);
}

static void
setup(void)
{
	ck_assert_ptr_nonnull(ctx = SSL_CTX_new(TLS_client_method()));
	ck_assert_ptr_nonnull(ssl = SSL_new(ctx));
	tlscache_limit(TLSCACHE_MAX_BYTES);
}

static void
teardown(void)
{
	tlscache_limit(0);
	ck_assert_uint_eq(tlscache_bytes(), 0);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
}

START_TEST(saved_session_comes_back_for_its_account_only)
{
	SSL_SESSION *got;
	unsigned char key[48];

	put("work", fp_a, 7);
	ck_assert_uint_eq(tag_of(tlscache_get("home", fp_a)), 0);
	ck_assert_uint_eq(tag_of(tlscache_get("wor", fp_a)), 0);
	ck_assert_ptr_nonnull(got = tlscache_get("work", fp_a));
	ck_assert_uint_eq(
	    SSL_SESSION_get_master_key(got, key, sizeof(key)), 48);
	ck_assert_uint_eq(key[47], 7 ^ 0x5a);
	ck_assert_uint_eq(tag_of(got), 7);
	/* Still there: TLS 1.2 sessions may be offered again. */
	ck_assert_uint_eq(tag_of(tlscache_get("work", fp_a)), 7);
}
END_TEST

START_TEST(a_new_session_replaces_the_old)
{
	size_t one;

	put("work", fp_a, 7);
	one = tlscache_bytes();
	put("work", fp_a, 8);
	ck_assert_uint_eq(tlscache_bytes(), one);
	ck_assert_uint_eq(tag_of(tlscache_get("work", fp_a)), 8);
}
END_TEST

START_TEST(other_settings_drop_the_session)
{
	put("work", fp_a, 7);
	ck_assert_uint_eq(tag_of(tlscache_get("work", fp_b)), 0);
	/* Dropped, not merely hidden: the old settings get nothing back. */
	ck_assert_uint_eq(tag_of(tlscache_get("work", fp_a)), 0);
	ck_assert_uint_eq(tlscache_bytes(), 0);
}
END_TEST

START_TEST(expired_session_is_not_offered)
{
	SSL_SESSION *s = make_session(7, time(NULL) - 100, 50);

	tlscache_put("work", fp_a, s, false);
	SSL_SESSION_free(s);
	ck_assert_uint_eq(tag_of(tlscache_get("work", fp_a)), 0);
	ck_assert_uint_eq(tlscache_bytes(), 0);
}
END_TEST

START_TEST(drop_forgets_the_session)
{
	put("work", fp_a, 7);
	put("home", fp_a, 9);
	tlscache_drop("work");
	tlscache_drop("nobody");
	ck_assert_uint_eq(tag_of(tlscache_get("work", fp_a)), 0);
	ck_assert_uint_eq(tag_of(tlscache_get("home", fp_a)), 9);
}
END_TEST

START_TEST(two_strikes_bar_the_account)
{
	SSL_SESSION *s;

	put("work", fp_a, 7);
	ck_assert(!tlscache_strike("work", fp_a));
	ck_assert_uint_eq(tag_of(tlscache_get("work", fp_a)), 0);
	/* A full handshake later: kept again, the strike remembered. */
	put("work", fp_a, 8);
	ck_assert_uint_eq(tag_of(tlscache_get("work", fp_a)), 8);
	ck_assert(tlscache_strike("work", fp_a));
	put("work", fp_a, 9);
	ck_assert_uint_eq(tag_of(tlscache_get("work", fp_a)), 0);
	/* Changed settings lift the bar. */
	ck_assert_uint_eq(tag_of(tlscache_get("work", fp_b)), 0);
	put("work", fp_b, 10);
	ck_assert_uint_eq(tag_of(tlscache_get("work", fp_b)), 10);

	/* A resumed poll in between starts the count again. */
	ck_assert(!tlscache_strike("home", fp_a));
	s = make_session(11, time(NULL), 3600);
	tlscache_put("home", fp_a, s, true);
	SSL_SESSION_free(s);
	ck_assert(!tlscache_strike("home", fp_a));
	put("home", fp_a, 12);
	ck_assert_uint_eq(tag_of(tlscache_get("home", fp_a)), 12);
}
END_TEST

START_TEST(room_bounds_what_is_kept)
{
	size_t one;

	put("a", fp_a, 1);
	one = tlscache_bytes();
	tlscache_clear();
	/* Room for two entries and a bit. */
	tlscache_limit(2 * one + one / 2);
	put("a", fp_a, 1);
	put("b", fp_a, 2);
	put("c", fp_a, 3);
	ck_assert_uint_le(tlscache_bytes(), 2 * one + one / 2);
	ck_assert_uint_eq(tag_of(tlscache_get("c", fp_a)), 0);
	/* Those in keep their place: each poll replaces its session. */
	put("a", fp_a, 4);
	put("b", fp_a, 5);
	ck_assert_uint_eq(tag_of(tlscache_get("a", fp_a)), 4);
	ck_assert_uint_eq(tag_of(tlscache_get("b", fp_a)), 5);
}
END_TEST

START_TEST(no_room_keeps_nothing)
{
	tlscache_limit(0);
	put("a", fp_a, 1);
	ck_assert(!tlscache_strike("a", fp_a));
	ck_assert_uint_eq(tag_of(tlscache_get("a", fp_a)), 0);
	ck_assert_uint_eq(tlscache_bytes(), 0);
}
END_TEST

START_TEST(many_accounts_each_get_their_own)
{
	char name[32];
	unsigned i;

	for (i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "acct%u", i);
		put(name, fp_a, (unsigned char)(i % 250 + 1));
	}
	for (i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "acct%u", i);
		ck_assert_uint_eq(
		    tag_of(tlscache_get(name, fp_a)), i % 250 + 1);
	}
	tlscache_clear();
	ck_assert_uint_eq(tlscache_bytes(), 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("tlscache");
	TCase *tc = tcase_create("store");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, saved_session_comes_back_for_its_account_only);
	tcase_add_test(tc, a_new_session_replaces_the_old);
	tcase_add_test(tc, other_settings_drop_the_session);
	tcase_add_test(tc, expired_session_is_not_offered);
	tcase_add_test(tc, drop_forgets_the_session);
	tcase_add_test(tc, two_strikes_bar_the_account);
	tcase_add_test(tc, room_bounds_what_is_kept);
	tcase_add_test(tc, no_room_keeps_nothing);
	tcase_add_test(tc, many_accounts_each_get_their_own);
	suite_add_tcase(s, tc);
	return check_main(s);
}
