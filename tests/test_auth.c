/* Tests for the credential encodings. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

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
	return check_main(s);
}
