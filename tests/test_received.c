/* Tests for the Received: trace line (RFC 5321 section 4.4). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "received.h"
#include "check_main.h"

/* 2026-12-06 01:20:00 UTC, a Sunday. */
#define WHEN 1796520000

static const char *
fmt(const char *from, const char *uid, const char *user, long gmtoff)
{
	static char buf[RECEIVED_MAX];
	struct received_info ri = {.from_host = from,
	    .by_host = "mx.local",
	    .version = "1.2.3",
	    .uid = uid,
	    .user = user,
	    .when = WHEN,
	    .gmtoff = gmtoff};

	ck_assert_int_gt(received_format(buf, sizeof(buf), &ri), 0);
	return buf;
}

START_TEST(test_clause_order_and_folding)
{
	ck_assert_str_eq(
	    fmt("pop.example.com", "abc-1", "alice@example.com", 0),
	    "Received: from pop.example.com\n"
	    "\tby mx.local (popfetchd 1.2.3)\n"
	    "\twith POP3\n"
	    "\tid abc-1\n"
	    "\tfor <alice@example.com>;\n"
	    "\tSun, 06 Dec 2026 01:20:00 +0000\n");
}
END_TEST

START_TEST(test_uid_with_specials_is_an_atom)
{
	/* ';' would end the clauses, '(' open a comment, '%' is escaped
	 * too so that the encoding can be undone. */
	ck_assert_ptr_nonnull(strstr(fmt("h.example", "a;b(c)%d\"e", NULL, 0),
	    "\tid a%3Bb%28c%29%25d%22e;\n"));
}
END_TEST

START_TEST(test_user_not_a_mailbox_has_no_for)
{
	const char *s = fmt("h.example", "u", "alice", 0);

	ck_assert_ptr_null(strstr(s, "for"));
	ck_assert_ptr_nonnull(strstr(s, "\tid u;\n"));
	ck_assert_ptr_null(
	    strstr(fmt("h.example", "u", "a>b@x.org", 0), "for"));
	ck_assert_ptr_null(
	    strstr(fmt("h.example", "u", "a..b@x.org", 0), "for"));
}
END_TEST

START_TEST(test_addresses_and_bad_hosts)
{
	ck_assert_ptr_nonnull(strstr(fmt("127.0.0.1", NULL, NULL, 0),
	    "from [127.0.0.1] ([127.0.0.1])\n"));
	ck_assert_ptr_nonnull(strstr(
	    fmt("::1", NULL, NULL, 0), "from [IPv6:::1] ([IPv6:::1])\n"));
	ck_assert_ptr_nonnull(strstr(
	    fmt("bad_host name", NULL, NULL, 0), "from unknown.invalid\n"));
	ck_assert_ptr_nonnull(
	    strstr(fmt("-x.example", NULL, NULL, 0), "from unknown.invalid\n"));
	/* No UID: no id clause. */
	ck_assert_ptr_null(strstr(fmt("h.example", NULL, NULL, 0), "id "));
}
END_TEST

START_TEST(test_zone_offsets)
{
	ck_assert_ptr_nonnull(strstr(fmt("h.example", NULL, NULL, 3600 + 1800),
	    "Sun, 06 Dec 2026 02:50:00 +0130\n"));
	ck_assert_ptr_nonnull(strstr(fmt("h.example", NULL, NULL, -5 * 3600),
	    "Sat, 05 Dec 2026 20:20:00 -0500\n"));
}
END_TEST

/* The longest inputs still give every line under RFC 5322's 998. */
START_TEST(test_longest_fits)
{
	char host[254], uid[71], user[257];
	const char *s, *p, *nl;

	memset(host, 'a', sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	for (size_t i = 63; i < sizeof(host) - 1; i += 64)
		host[i] = '.';
	memset(uid, '(', sizeof(uid) - 1);
	uid[sizeof(uid) - 1] = '\0';
	memset(user, 'b', sizeof(user) - 1);
	user[sizeof(user) - 1] = '\0';
	user[100] = '@';
	for (size_t i = 150; i < sizeof(user) - 1; i += 50)
		user[i] = '.';
	s = fmt(host, uid, user, 0);
	ck_assert_ptr_nonnull(strstr(s, "for <"));
	for (p = s; (nl = strchr(p, '\n')) != NULL; p = nl + 1)
		ck_assert_int_lt(nl - p, 998);
}
END_TEST

START_TEST(test_small_buffer_refused)
{
	char buf[RECEIVED_MAX - 1];
	struct received_info ri = {.from_host = "h", .version = "1"};

	ck_assert_int_eq(received_format(buf, sizeof(buf), &ri), -1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("received");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_clause_order_and_folding);
	tcase_add_test(tc, test_uid_with_specials_is_an_atom);
	tcase_add_test(tc, test_user_not_a_mailbox_has_no_for);
	tcase_add_test(tc, test_addresses_and_bad_hosts);
	tcase_add_test(tc, test_zone_offsets);
	tcase_add_test(tc, test_longest_fits);
	tcase_add_test(tc, test_small_buffer_refused);
	suite_add_tcase(s, tc);
	return check_main(s);
}
