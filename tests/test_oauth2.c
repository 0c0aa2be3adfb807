/*
 * Tests for the pure parts of OAuth2 (oauth2_wire.c) and the token file
 * (oauth2_store.c): token and device answers, the expiry margin, form and
 * query encoding, PKCE against RFC 7636's example, provider presets, and
 * the file's round trip and refusals.
 */
#include <sys/stat.h>

#include <check.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "oauth2.h"
#include "check_main.h"
#include "check_util.h"

#define NOW 1700000000

static char tmpdir[PATH_MAX - 64];

static void
setup(void)
{
	check_tmpdir(tmpdir, sizeof(tmpdir), "test_oauth2");
}

static void
teardown(void)
{
	check_rm_rf(tmpdir);
}

static enum oauth2_status
parse(int status, const char *body, struct oauth2_token *t, char *err)
{
	return oauth2_parse_token(status, body, strlen(body), NOW, t, err, 512);
}

START_TEST(token_answer)
{
	struct oauth2_token t;
	char err[512];

	ck_assert_int_eq(
	    parse(200,
		"{\"access_token\":\"AT-1\",\"token_type\":\"Bearer\","
		"\"expires_in\":3599,\"refresh_token\":\"RT-2\"}",
		&t, err),
	    OAUTH2_OK);
	ck_assert_str_eq(t.access, "AT-1");
	ck_assert_str_eq(t.refresh, "RT-2");
	ck_assert_int_eq(t.access_expires, NOW + 3599);
	ck_assert_int_eq(t.access_obtained, NOW);
	ck_assert_int_eq(t.refresh_obtained, NOW);
	ck_assert_int_eq(t.refresh_expires, 0);
	oauth2_token_clear(&t);

	/* No rotation; Google's refresh token lifetime; a string number. */
	ck_assert_int_eq(
	    parse(200,
		"{\"access_token\":\"AT\",\"token_type\":\"bearer\","
		"\"expires_in\":\"60\"}",
		&t, err),
	    OAUTH2_OK);
	ck_assert_ptr_null(t.refresh);
	ck_assert_int_eq(t.access_expires, NOW + 60);
	oauth2_token_clear(&t);
	ck_assert_int_eq(parse(200,
			     "{\"access_token\":\"AT\",\"refresh_token\":\"R\","
			     "\"refresh_token_expires_in\":604800}",
			     &t, err),
	    OAUTH2_OK);
	ck_assert_int_eq(t.refresh_expires, NOW + 604800);
	/* Without expires_in: used once, never cached. */
	ck_assert_int_eq(t.access_expires, 0);
	ck_assert(!oauth2_token_fresh(&t, NOW));
	oauth2_token_clear(&t);
}
END_TEST

START_TEST(token_errors)
{
	struct oauth2_token t;
	char err[512];

	ck_assert_int_eq(
	    parse(400,
		"{\"error\":\"invalid_grant\",\"error_description\":"
		"\"AADSTS70000: expired\"}",
		&t, err),
	    OAUTH2_DENIED);
	ck_assert_ptr_nonnull(strstr(err, "error=invalid_grant"));
	ck_assert_ptr_nonnull(strstr(err, "AADSTS70000"));
	ck_assert_ptr_null(t.access);
	ck_assert_int_eq(parse(401, "{\"error\":\"invalid_client\"}", &t, err),
	    OAUTH2_DENIED);
	ck_assert_int_eq(
	    parse(400, "{\"error\":\"authorization_pending\"}", &t, err),
	    OAUTH2_PENDING);
	ck_assert_int_eq(
	    parse(400, "{\"error\":\"slow_down\"}", &t, err), OAUTH2_SLOW_DOWN);
	ck_assert_int_eq(
	    parse(503, "{\"error\":\"temporarily_unavailable\"}", &t, err),
	    OAUTH2_TEMPORARY);
	ck_assert_int_eq(
	    parse(502, "<html>Bad gateway</html>", &t, err), OAUTH2_TEMPORARY);
	ck_assert_ptr_nonnull(strstr(err, "HTTP 502"));
	/* Malformed answers: temporary, the grant is not known bad. */
	ck_assert_int_eq(
	    parse(200, "{\"access_token\":", &t, err), OAUTH2_TEMPORARY);
	ck_assert_int_eq(parse(200, "[1,2]", &t, err), OAUTH2_TEMPORARY);
	ck_assert_int_eq(
	    parse(200, "{\"access_token\":\"A\"} trailing", &t, err),
	    OAUTH2_TEMPORARY);
	ck_assert_int_eq(parse(200, "{\"token_type\":\"Bearer\"}", &t, err),
	    OAUTH2_TEMPORARY);
	ck_assert_ptr_nonnull(strstr(err, "without access_token"));
	ck_assert_int_eq(
	    parse(200, "{\"access_token\":42}", &t, err), OAUTH2_TEMPORARY);
	ck_assert_int_eq(
	    parse(200, "{\"access_token\":\"A\",\"token_type\":\"mac\"}", &t,
		err),
	    OAUTH2_TEMPORARY);
	/* A token that would break the SASL line or the file. */
	ck_assert_int_eq(parse(200, "{\"access_token\":\"a b\"}", &t, err),
	    OAUTH2_TEMPORARY);
	ck_assert_int_eq(
	    parse(200, "{\"access_token\":\"a\\u0001b\"}", &t, err),
	    OAUTH2_TEMPORARY);
	/* The error text is escaped: a server's bytes reach the log. */
	ck_assert_int_eq(
	    parse(400,
		"{\"error\":\"invalid_grant\",\"error_description\":"
		"\"a\\u001b[31mred\"}",
		&t, err),
	    OAUTH2_DENIED);
	ck_assert_ptr_null(strchr(err, '\033'));
}
END_TEST

START_TEST(expiry_margin)
{
	struct oauth2_token t = {.access = "AT"};

	t.access_expires = NOW + OAUTH2_MARGIN + 1;
	ck_assert(oauth2_token_fresh(&t, NOW));
	t.access_expires = NOW + OAUTH2_MARGIN;
	ck_assert(!oauth2_token_fresh(&t, NOW));
	t.access_expires = NOW - 10;
	ck_assert(!oauth2_token_fresh(&t, NOW));
	t.access_expires = 0;
	ck_assert(!oauth2_token_fresh(&t, NOW));
	t.access = NULL;
	t.access_expires = NOW + 3600;
	ck_assert(!oauth2_token_fresh(&t, NOW));
}
END_TEST

/* RFC 7636 appendix B. */
START_TEST(pkce_s256)
{
	char out[64], v1[64], v2[64];

	ck_assert_int_eq(
	    oauth2_pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
		out, sizeof(out)),
	    0);
	ck_assert_str_eq(out, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
	ck_assert_int_eq(oauth2_pkce_verifier(v1, sizeof(v1)), 0);
	ck_assert_int_eq(oauth2_pkce_verifier(v2, sizeof(v2)), 0);
	ck_assert_uint_eq(strlen(v1), 43);
	ck_assert_str_ne(v1, v2);
	ck_assert_uint_eq(strspn(v1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklm"
				     "nopqrstuvwxyz0123456789-_"),
	    43);
	/* Too small a buffer is refused, not overrun. */
	ck_assert_int_eq(oauth2_pkce_verifier(v1, 43), -1);
}
END_TEST

START_TEST(form_encoding)
{
	const char *kv[] = {"grant_type", "refresh_token", "refresh_token",
	    "0.AX+y/z=&%", "client_secret", NULL, "scope",
	    "https://mail.google.com/ offline_access", NULL};
	char *f = oauth2_form(kv), *v;

	ck_assert_str_eq(f,
	    "grant_type=refresh_token&refresh_token=0.AX%2By%2Fz%3D%26%25&"
	    "scope=https%3A%2F%2Fmail.google.com%2F%20offline_access");
	/* Read back as a server reads it. */
	v = oauth2_query_get(f, "refresh_token");
	ck_assert_str_eq(v, "0.AX+y/z=&%");
	free(v);
	ck_assert_ptr_null(oauth2_query_get(f, "client_secret"));
	ck_assert_ptr_null(oauth2_query_get(f, "grant"));
	free(f);
	v = oauth2_query_get("code=a+b%2x&state=s%41", "code");
	ck_assert_str_eq(v, "a b%2x");
	free(v);
	v = oauth2_query_get("code=a+b%2x&state=s%41", "state");
	ck_assert_str_eq(v, "sA");
	free(v);
	v = oauth2_query_get("state=%4", "state");
	ck_assert_str_eq(v, "%4");
	free(v);
}
END_TEST

START_TEST(device_answer)
{
	const char *ok = "{\"device_code\":\"DC\",\"user_code\":\"ABCD-EFGH\","
			 "\"verification_uri\":\"https://example.org/device\","
			 "\"expires_in\":900}";
	struct oauth2_device d;
	char err[512];

	ck_assert_int_eq(
	    oauth2_parse_device(200, ok, strlen(ok), &d, err, sizeof(err)),
	    OAUTH2_OK);
	ck_assert_str_eq(d.device_code, "DC");
	ck_assert_str_eq(d.user_code, "ABCD-EFGH");
	ck_assert_str_eq(d.verification_uri, "https://example.org/device");
	ck_assert_int_eq(d.expires_in, 900);
	ck_assert_int_eq(d.interval, 5);
	oauth2_device_clear(&d);
	ck_assert_int_eq(oauth2_parse_device(200, "{\"user_code\":\"x\"}", 17,
			     &d, err, sizeof(err)),
	    OAUTH2_TEMPORARY);
	ck_assert_int_eq(
	    oauth2_parse_device(400, "{\"error\":\"invalid_client\"}", 26, &d,
		err, sizeof(err)),
	    OAUTH2_DENIED);
}
END_TEST

START_TEST(presets)
{
	struct account a = {.name = "x"};
	struct oauth2_provider p;

	a.oauth2.on = true;
	a.oauth2.provider = "microsoft";
	oauth2_settings(&a, &p);
	ck_assert_str_eq(p.token_endpoint,
	    "https://login.microsoftonline.com/common/oauth2/v2.0/token");
	ck_assert_ptr_nonnull(strstr(p.scope, "POP.AccessAsUser.All"));
	ck_assert_ptr_nonnull(strstr(p.scope, "offline_access"));
	ck_assert_str_eq(p.flow, "device");
	a.oauth2.provider = "gmail";
	a.oauth2.scope = "mine";
	oauth2_settings(&a, &p);
	ck_assert_str_eq(
	    p.token_endpoint, "https://oauth2.googleapis.com/token");
	ck_assert_ptr_null(p.device_endpoint);
	ck_assert_str_eq(p.scope, "mine");
	ck_assert_str_eq(p.flow, "loopback");
	/* No preset: the device grant where there is a device endpoint. */
	a.oauth2.provider = NULL;
	a.oauth2.device_endpoint = "https://idp/device";
	oauth2_settings(&a, &p);
	ck_assert_str_eq(p.flow, "device");
	ck_assert_ptr_null(p.token_endpoint);
	ck_assert_ptr_null(oauth2_provider("yahoo"));
}
END_TEST

START_TEST(store_round_trip)
{
	struct oauth2_token t = {.access = "AT",
	    .refresh = "RT",
	    .access_expires = NOW + 3600,
	    .access_obtained = NOW,
	    .refresh_obtained = NOW - 86400,
	    .refresh_expires = NOW + 86400};
	struct oauth2_token back;
	char path[PATH_MAX], tmp[PATH_MAX + 8], err[512];
	struct stat st;

	snprintf(path, sizeof(path), "%s/acct.oauth2", tmpdir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	ck_assert_int_eq(oauth2_store_load(path, &back, err, sizeof(err)), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_int_eq(oauth2_store_save(path, &t, err, sizeof(err)), 0);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_mode & 0777, 0600);
	ck_assert_int_eq(access(tmp, F_OK), -1);
	ck_assert_int_eq(oauth2_store_load(path, &back, err, sizeof(err)), 0);
	ck_assert_str_eq(back.access, "AT");
	ck_assert_str_eq(back.refresh, "RT");
	ck_assert_int_eq(back.access_expires, t.access_expires);
	ck_assert_int_eq(back.access_obtained, t.access_obtained);
	ck_assert_int_eq(back.refresh_obtained, t.refresh_obtained);
	ck_assert_int_eq(back.refresh_expires, t.refresh_expires);
	oauth2_token_clear(&back);

	/* Readable by others: the token in it is exposed; refused. */
	ck_assert_int_eq(chmod(path, 0640), 0);
	ck_assert_int_eq(oauth2_store_load(path, &back, err, sizeof(err)), -1);
	ck_assert_int_ne(errno, ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "chmod 600"));
	ck_assert_int_eq(chmod(path, 0600), 0);

	/* Not ours, or without the one token that matters. */
	check_write_file(path, "{\"access_token\":\"AT\"}", 21, 0600);
	ck_assert_int_eq(oauth2_store_load(path, &back, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "no refresh token"));
	check_write_file(path, "refresh=RT\n", 11, 0600);
	ck_assert_int_eq(oauth2_store_load(path, &back, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "not a token file"));
}
END_TEST

static Suite *
suite(void)
{
	Suite *s = suite_create("oauth2");
	TCase *tc;

	tc = tcase_create("wire");
	tcase_add_test(tc, token_answer);
	tcase_add_test(tc, token_errors);
	tcase_add_test(tc, expiry_margin);
	tcase_add_test(tc, pkce_s256);
	tcase_add_test(tc, form_encoding);
	tcase_add_test(tc, device_answer);
	tcase_add_test(tc, presets);
	suite_add_tcase(s, tc);

	tc = tcase_create("store");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, store_round_trip);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_main(suite());
}
