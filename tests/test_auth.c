/* Tests for the credential encodings and the SCRAM client. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gsasl.h>

#include "auth.h"
#include "wipe.h"
#include "check_main.h"

START_TEST(apop_rfc1939_example)
{
	char d[33];

	/* The digest RFC 1939 section 7 publishes for its example. */
	ck_assert_int_eq(auth_apop("<1896.697170952@dbc.mtview.ca.us>",
			     "tanstaaf", d, sizeof(d)),
	    0);
	ck_assert_str_eq(d, "c4c9334bac560ecc979e58001b3e22fb");
	ck_assert_int_eq(auth_apop("<a@b>", "x", d, 32), -1);
}
END_TEST

START_TEST(plain_initial_response)
{
	char out[64];

	/* base64 of "\0tim\0tanstaaftanstaaf" (RFC 4616 example user). */
	ck_assert_int_gt(
	    auth_plain("tim", "tanstaaftanstaaf", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
	ck_assert_int_eq(auth_plain("tim", "tanstaaftanstaaf", out, 8), -1);
}
END_TEST

START_TEST(base64_lengths)
{
	char out[16];

	ck_assert_int_eq(auth_base64("", 0, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(auth_base64("a", 1, out, sizeof(out)), 4);
	ck_assert_str_eq(out, "YQ==");
	ck_assert_int_eq(auth_base64("abc", 3, out, sizeof(out)), 4);
	ck_assert_str_eq(out, "YWJj");
	ck_assert_int_eq(auth_base64("abcd", 4, out, 8), -1);
	ck_assert_int_eq(auth_base64("abcd", 4, out, 9), 8);
	ck_assert_int_eq(AUTH_BASE64_SIZE(0), 1);
	ck_assert_int_eq(AUTH_BASE64_SIZE(1), 5);
	ck_assert_int_eq(AUTH_BASE64_SIZE(3), 5);
	ck_assert_int_eq(AUTH_BASE64_SIZE(4), 9);
}
END_TEST

/*
 * The vectors below were computed with Python's base64 module from the
 * formats in auth.h; the first of each matches the published example
 * (Google's XOAUTH2 page, RFC 7628 section 4.1).
 */
START_TEST(xoauth2_vectors)
{
	char out[256];
	int r;

	r = auth_xoauth2("someuser@example.com",
	    "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg", out, sizeof(out));
	ck_assert_int_eq(r, (int)strlen(out));
	ck_assert_str_eq(out,
	    "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==");
	ck_assert_int_eq(auth_xoauth2("u", "t", out, sizeof(out)), 32);
	ck_assert_str_eq(out, "dXNlcj11AWF1dGg9QmVhcmVyIHQBAQ==");
}
END_TEST

START_TEST(xoauth2_refuses)
{
	char out[64] = "untouched";

	/* 22 bytes of input: 32 of base64 and the NUL. */
	ck_assert_int_eq(auth_xoauth2("u", "t", out, 32), -1);
	ck_assert_str_eq(out, "untouched");
	ck_assert_int_eq(auth_xoauth2("u", "t", out, 33), 32);
	/* \x01 would end the field early; other controls are no better. */
	ck_assert_int_eq(auth_xoauth2("u\001auth=x", "t", out, 64), -1);
	ck_assert_int_eq(auth_xoauth2("u", "t\001", out, 64), -1);
	ck_assert_int_eq(auth_xoauth2("u", "t\r\n", out, 64), -1);
	ck_assert_int_eq(auth_xoauth2("", "t", out, 64), -1);
	ck_assert_int_eq(auth_xoauth2("u", "", out, 64), -1);
}
END_TEST

START_TEST(oauthbearer_vectors)
{
	char out[256];

	ck_assert_int_gt(
	    auth_oauthbearer("user@example.com", "server.example.com", 143,
		"vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==", out, sizeof(out)),
	    0);
	ck_assert_str_eq(out,
	    "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB");
	/* No authorization identity: "n,,". */
	ck_assert_int_eq(
	    auth_oauthbearer("", "h", 110, "t", out, sizeof(out)), 48);
	ck_assert_str_eq(
	    out, "biwsAWhvc3Q9aAFwb3J0PTExMAFhdXRoPUJlYXJlciB0AQE=");
}
END_TEST

START_TEST(oauthbearer_escapes_user)
{
	char out[256];
	unsigned char raw[256];
	size_t n;

	/* "a,b=c" as an RFC 5801 saslname is "a=2Cb=3Dc". */
	ck_assert_int_gt(auth_oauthbearer("a,b=c", "pop.example.org", 995,
			     "tok", out, sizeof(out)),
	    0);
	ck_assert_str_eq(out,
	    "bixhPWE9MkNiPTNEYywBaG9zdD1wb3AuZXhhbXBsZS5vcmcBcG9ydD05OTUBYXV0aD1CZWFyZXIgdG9rAQE=");
	ck_assert_int_eq(auth_base64_decode(out, raw, sizeof(raw), &n), 0);
	ck_assert_uint_eq(n, 62);
	ck_assert_mem_eq(raw, "n,a=a=2Cb=3Dc,\001host=pop.example.org", 35);
}
END_TEST

START_TEST(oauthbearer_refuses)
{
	char out[64] = "untouched";
	int need;

	need = auth_oauthbearer("", "h", 110, "t", out, sizeof(out));
	ck_assert_int_eq(need, 48);
	ck_assert_int_eq(
	    auth_oauthbearer("", "h", 110, "t", out, (size_t)need), -1);
	ck_assert_int_eq(
	    auth_oauthbearer("u", "h\001port=1", 110, "t", out, sizeof(out)),
	    -1);
	ck_assert_int_eq(
	    auth_oauthbearer("u\001", "h", 110, "t", out, sizeof(out)), -1);
	ck_assert_int_eq(
	    auth_oauthbearer("u", "h", 110, "t\001", out, sizeof(out)), -1);
	ck_assert_int_eq(
	    auth_oauthbearer("u", "", 110, "t", out, sizeof(out)), -1);
	ck_assert_int_eq(
	    auth_oauthbearer("u", "h", 0, "t", out, sizeof(out)), -1);
	ck_assert_int_eq(
	    auth_oauthbearer("u", "h", 65536, "t", out, sizeof(out)), -1);
	ck_assert_int_eq(
	    auth_oauthbearer("u", "h", 110, "", out, sizeof(out)), -1);
}
END_TEST

START_TEST(external_empty_response)
{
	char out[2];

	ck_assert_int_eq(auth_external(out, sizeof(out)), 1);
	ck_assert_str_eq(out, "=");
	ck_assert_int_eq(auth_external(out, 1), -1);
}
END_TEST

START_TEST(decode_valid)
{
	static const char json[] =
	    "{\"status\":\"401\",\"schemes\":\"bearer\",\"scope\":\"https://mail.google.com/\"}";
	unsigned char out[128];
	size_t n = 99;

	ck_assert_int_eq(auth_base64_decode("", out, 0, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(auth_base64_decode("YQ==", out, 1, &n), 0);
	ck_assert_uint_eq(n, 1);
	ck_assert_mem_eq(out, "a", 1);
	ck_assert_int_eq(auth_base64_decode("YWI=", out, 2, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_mem_eq(out, "ab", 2);
	ck_assert_int_eq(auth_base64_decode("YWJj", out, 3, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_mem_eq(out, "abc", 3);
	ck_assert_int_eq(auth_base64_decode("+/+/", out, 3, &n), 0);
	ck_assert_mem_eq(out, "\373\377\277", 3);
	/* The error Google sends after a refused XOAUTH2 token. */
	ck_assert_int_eq(
	    auth_base64_decode(
		"eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==",
		out, sizeof(out), &n),
	    0);
	ck_assert_uint_eq(n, strlen(json));
	ck_assert_mem_eq(out, json, n);
}
END_TEST

START_TEST(decode_invalid)
{
	static const char *const bad[] = {
	    "Y",	       /* length not a multiple of 4 */
	    "YQ=",	       /* same */
	    "YQ",	       /* padding missing */
	    "Y===",	       /* three '=' */
	    "====",	       /* only padding */
	    "YQ==YQ==",	       /* padding inside */
	    "Y=Q=",	       /* '=' then data */
	    "YR==",	       /* hidden bits not zero */
	    "YWJ=",	       /* same, one '=' */
	    "YW J",	       /* white space */
	    "YWJj\n",	       /* line end */
	    "YW-j",	       /* base64url is not base64 */
	    "YW_j", "YW\377j", /* 8-bit */
	};
	unsigned char out[16];
	size_t i, n;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		n = 99;
		ck_assert_msg(
		    auth_base64_decode(bad[i], out, sizeof(out), &n) == -1,
		    "accepted \"%s\"", bad[i]);
		ck_assert_uint_eq(n, 0);
	}
	/* Valid, but does not fit. */
	ck_assert_int_eq(auth_base64_decode("YWJj", out, 2, &n), -1);
	ck_assert_int_eq(auth_base64_decode("YWI=", out, 1, &n), -1);
	ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(base64_roundtrip)
{
	unsigned char in[64], back[64];
	char enc[128];
	size_t len, i, n;

	for (i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 37 + 11);
	for (len = 0; len <= sizeof(in); len++) {
		ck_assert_int_ge(auth_base64(in, len, enc, sizeof(enc)), 0);
		ck_assert_int_eq(
		    auth_base64_decode(enc, back, sizeof(back), &n), 0);
		ck_assert_uint_eq(n, len);
		ck_assert_mem_eq(back, in, len);
	}
}
END_TEST

START_TEST(wipe_clears)
{
	char buf[8] = "secret!";
	size_t i;

	wipe(buf, sizeof(buf));
	for (i = 0; i < sizeof(buf); i++)
		ck_assert_int_eq(buf[i], 0);
}
END_TEST

START_TEST(auto_mech_order)
{
	static const char all[] =
	    "PLAIN SCRAM-SHA-1 SCRAM-SHA-1-PLUS SCRAM-SHA-256 SCRAM-SHA-256-PLUS LOGIN";

	ck_assert_str_eq(auth_auto_mech(all, true), "SCRAM-SHA-256-PLUS");
	ck_assert_str_eq(auth_auto_mech(all, false), "SCRAM-SHA-256");
	ck_assert_str_eq(auth_auto_mech("SCRAM-SHA-1-PLUS SCRAM-SHA-256", true),
	    "SCRAM-SHA-256");
	ck_assert_str_eq(auth_auto_mech("SCRAM-SHA-1-PLUS SCRAM-SHA-1", true),
	    "SCRAM-SHA-1-PLUS");
	ck_assert_str_eq(auth_auto_mech("SCRAM-SHA-1-PLUS SCRAM-SHA-1", false),
	    "SCRAM-SHA-1");
	ck_assert_str_eq(auth_auto_mech("  plain  login ", true), "PLAIN");
	/* Whole names only: a prefix or a longer name is another one. */
	ck_assert_ptr_null(auth_auto_mech("SCRAM-SHA-25 PLAINX LOGIN", true));
	ck_assert_str_eq(
	    auth_auto_mech("SCRAM-SHA-256-PLUSX SCRAM-SHA-1", true),
	    "SCRAM-SHA-1");
	ck_assert_ptr_null(auth_auto_mech("SCRAM-SHA-512 CRAM-MD5", true));
	ck_assert_ptr_null(auth_auto_mech("", true));
	ck_assert(auth_mech_plus("SCRAM-SHA-1-PLUS"));
	ck_assert(!auth_mech_plus("SCRAM-SHA-1"));
	ck_assert(!auth_mech_plus("-PLUS"));
}
END_TEST

/* base64 of the NUL-terminated S, in a static buffer. */
static const char *
b64s(const char *s)
{
	static char out[1024];

	ck_assert_int_ge(auth_base64(s, strlen(s), out, sizeof(out)), 0);
	return out;
}

START_TEST(scram_server_first_parsing)
{
	static const struct {
		const char *msg;
		int rc;
		unsigned long iter;
	} cases[] = {
	    {"r=abcXYZ,s=c2FsdA==,i=4096", 0, 4096},
	    /* Extensions after i= are allowed (RFC 5802 7). */
	    {"r=abcXYZ,s=c2FsdA==,i=10000,x=later", 0, 10000},
	    {"r=abcX,s=c2FsdA==,i=1", 0, 1},
	    /* The nonce must extend ours. */
	    {"r=abc,s=c2FsdA==,i=4096", -1, 0},
	    {"r=abXYZ,s=c2FsdA==,i=4096", -1, 0},
	    {"r=xabcXYZ,s=c2FsdA==,i=4096", -1, 0},
	    /* A mandatory extension we cannot know. */
	    {"m=ext,r=abcXYZ,s=c2FsdA==,i=4096", -1, 0},
	    /* Missing, misplaced, empty or malformed attributes. */
	    {"r=abcXYZ,i=4096", -1, 0},
	    {"s=c2FsdA==,r=abcXYZ,i=4096", -1, 0},
	    {"r=abcXYZ,s=,i=4096", -1, 0},
	    {"r=abcXYZ,s=c2FsdA==,i=", -1, 0},
	    {"r=abcXYZ,s=c2FsdA==,i=04096", -1, 0},
	    {"r=abcXYZ,s=c2FsdA==,i=-4096", -1, 0},
	    {"r=abcXYZ,s=c2FsdA==,i=4096x", -1, 0},
	    {"r=abcXYZ,s=c2FsdA==,i=1234567890", -1, 0},
	    {"r=abc XYZ,s=c2FsdA==,i=4096", -1, 0},
	    {"r=abcXYZ,s=c2FsdA==,i=4096,", -1, 0},
	    {"", -1, 0},
	};
	unsigned long iter;
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		iter = 0;
		ck_assert_msg(auth_scram_server_first(b64s(cases[i].msg), "abc",
				  &iter) == cases[i].rc,
		    "case %zu: %s", i, cases[i].msg);
		if (cases[i].rc == 0)
			ck_assert_uint_eq(iter, cases[i].iter);
	}
	ck_assert_int_eq(
	    auth_scram_server_first("not base64!", "abc", &iter), -1);
	/* A NUL inside the message ends nothing: it is refused. */
	ck_assert_int_eq(auth_scram_server_first(
			     "cj1hYmNYWVosAHM9YyxpPTQwOTY=", "abc", &iter),
	    -1);
}
END_TEST

/*
 * The other side of an exchange: GNU SASL's own SCRAM server, with the
 * password and channel binding data the test gives it.
 */
struct server {
	Gsasl *ctx;
	Gsasl_session *sess;
};

static void
server_start(
    struct server *sv, const char *mech, const char *pass, const char *cb64)
{
	ck_assert_int_eq(gsasl_init(&sv->ctx), GSASL_OK);
	ck_assert_int_eq(
	    gsasl_server_start(sv->ctx, mech, &sv->sess), GSASL_OK);
	gsasl_property_set(sv->sess, GSASL_PASSWORD, pass);
	gsasl_property_set(sv->sess, GSASL_SCRAM_ITER, "4096");
	gsasl_property_set(sv->sess, GSASL_SCRAM_SALT, "c2FsdHNhbHQ=");
	if (cb64 != NULL)
		gsasl_property_set(sv->sess, GSASL_CB_TLS_EXPORTER, cb64);
}

/* The server's answer to the client's IN (both base64). */
static int
server_step(struct server *sv, const char *in, char *out, size_t outlen)
{
	char *o = NULL;
	int rc = gsasl_step64(sv->sess, in, &o);

	if (o != NULL) {
		snprintf(out, outlen, "%s", o);
		gsasl_free(o);
	}
	return rc;
}

static void
server_end(struct server *sv)
{
	gsasl_finish(sv->sess);
	gsasl_done(sv->ctx);
}

/* Runs MECH against the server until the client's last step. */
static enum auth_step
exchange(const char *mech, const char *server_pass, bool tamper)
{
	static const unsigned char cb[32] = "0123456789abcdef0123456789abcdef";
	char cb64[64], c[1024], sv_out[1024], err[256];
	struct auth_scram *sc;
	struct server sv;
	enum auth_step st;

	auth_base64(cb, sizeof(cb), cb64, sizeof(cb64));
	server_start(&sv, mech, server_pass, cb64);
	sc = auth_scram_start(mech, "user", "pencil", AUTH_CB_TLS_EXPORTER, cb,
	    sizeof(cb), err, sizeof(err));
	ck_assert_ptr_nonnull(sc);
	ck_assert_int_eq(
	    auth_scram_step(sc, NULL, c, sizeof(c), err, sizeof(err)),
	    AUTH_STEP_MORE);
	ck_assert_int_eq(
	    server_step(&sv, c, sv_out, sizeof(sv_out)), GSASL_NEEDS_MORE);
	ck_assert_int_eq(
	    auth_scram_step(sc, sv_out, c, sizeof(c), err, sizeof(err)),
	    AUTH_STEP_MORE);
	ck_assert(!auth_scram_verified(sc));
	if (server_step(&sv, c, sv_out, sizeof(sv_out)) != GSASL_OK) {
		/* A wrong password: the server refuses, no final message. */
		auth_scram_free(&sc);
		server_end(&sv);
		return AUTH_STEP_AUTH;
	}
	if (tamper)
		sv_out[3] = sv_out[3] == 'A' ? 'B' : 'A';
	st = auth_scram_step(sc, sv_out, c, sizeof(c), err, sizeof(err));
	ck_assert(auth_scram_verified(sc) == (st == AUTH_STEP_DONE));
	if (st == AUTH_STEP_DONE) {
		ck_assert_str_eq(c, "");
		/* Nothing may follow the server's proof. */
		ck_assert_int_eq(
		    auth_scram_step(sc, "AAAA", c, sizeof(c), err, sizeof(err)),
		    AUTH_STEP_PROTO);
	}
	auth_scram_free(&sc);
	ck_assert_ptr_null(sc);
	server_end(&sv);
	return st;
}

START_TEST(scram_exchanges)
{
	static const char *const mechs[] = {"SCRAM-SHA-1", "SCRAM-SHA-256",
	    "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"};
	size_t i;

	for (i = 0; i < 4; i++) {
		ck_assert_int_eq(
		    exchange(mechs[i], "pencil", false), AUTH_STEP_DONE);
		/* A server that does not know the password cannot sign. */
		ck_assert_int_eq(
		    exchange(mechs[i], "pencil", true), AUTH_STEP_AUTH);
		ck_assert_int_eq(
		    exchange(mechs[i], "other", false), AUTH_STEP_AUTH);
	}
}
END_TEST

/* Runs one client step on the server-first-message MSG (our nonce + X). */
static enum auth_step
first_reply(const char *fmt, unsigned long iter, char *out, size_t outlen)
{
	char c[256], raw[256], msg[512], err[256];
	unsigned char dec[256];
	struct auth_scram *sc;
	enum auth_step st;
	size_t n;
	char *r;

	sc = auth_scram_start("SCRAM-SHA-256", "user", "pencil", AUTH_CB_NONE,
	    NULL, 0, err, sizeof(err));
	ck_assert_ptr_nonnull(sc);
	ck_assert_int_eq(
	    auth_scram_step(sc, NULL, c, sizeof(c), err, sizeof(err)),
	    AUTH_STEP_MORE);
	ck_assert_int_eq(auth_base64_decode(c, dec, sizeof(dec) - 1, &n), 0);
	dec[n] = '\0';
	ck_assert_ptr_nonnull(r = strstr((char *)dec, ",r="));
	snprintf(raw, sizeof(raw), "%s", r + 3);
	snprintf(msg, sizeof(msg), fmt, raw, iter);
	out[0] = '\0';
	st = auth_scram_step(sc, b64s(msg), out, outlen, err, sizeof(err));
	auth_scram_free(&sc);
	return st;
}

START_TEST(scram_iteration_bounds)
{
	static const char fmt[] = "r=%sSRV,s=c2FsdA==,i=%lu";
	char out[512];

	ck_assert_int_eq(
	    first_reply(fmt, AUTH_SCRAM_ITER_MIN - 1, out, sizeof(out)),
	    AUTH_STEP_AUTH);
	/* Refused before any work: no proof comes out. */
	ck_assert_str_eq(out, "");
	ck_assert_int_eq(
	    first_reply(fmt, AUTH_SCRAM_ITER_MIN, out, sizeof(out)),
	    AUTH_STEP_MORE);
	ck_assert_int_gt(strlen(out), 40);
	ck_assert_int_eq(
	    first_reply(fmt, AUTH_SCRAM_ITER_MAX + 1, out, sizeof(out)),
	    AUTH_STEP_AUTH);
	/* A nonce that is only ours. */
	ck_assert_int_eq(
	    first_reply("r=%s,s=c2FsdA==,i=%lu", 4096, out, sizeof(out)),
	    AUTH_STEP_AUTH);
}
END_TEST

START_TEST(scram_start_refuses)
{
	char err[128];

	/* -PLUS without channel binding data. */
	ck_assert_ptr_null(auth_scram_start("SCRAM-SHA-256-PLUS", "u", "p",
	    AUTH_CB_NONE, NULL, 0, err, sizeof(err)));
	ck_assert_ptr_nonnull(strstr(err, "channel binding"));
	ck_assert_ptr_null(auth_scram_start("SCRAM-SHA-512", "u", "p",
	    AUTH_CB_NONE, NULL, 0, err, sizeof(err)));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("encodings");

	tcase_add_test(tc, apop_rfc1939_example);
	tcase_add_test(tc, plain_initial_response);
	tcase_add_test(tc, base64_lengths);
	tcase_add_test(tc, xoauth2_vectors);
	tcase_add_test(tc, xoauth2_refuses);
	tcase_add_test(tc, oauthbearer_vectors);
	tcase_add_test(tc, oauthbearer_escapes_user);
	tcase_add_test(tc, oauthbearer_refuses);
	tcase_add_test(tc, external_empty_response);
	tcase_add_test(tc, decode_valid);
	tcase_add_test(tc, decode_invalid);
	tcase_add_test(tc, base64_roundtrip);
	tcase_add_test(tc, wipe_clears);
	suite_add_tcase(s, tc);
	tc = tcase_create("scram");
	tcase_add_test(tc, auto_mech_order);
	tcase_add_test(tc, scram_server_first_parsing);
	tcase_add_test(tc, scram_exchanges);
	tcase_add_test(tc, scram_iteration_bounds);
	tcase_add_test(tc, scram_start_refuses);
	suite_add_tcase(s, tc);
	return check_main(s);
}
