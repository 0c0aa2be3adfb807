/*
 * Tests of daemon/probe.c (--serverinfo, --list) without a server. The
 * modules probe.c drives but does not own are replaced here by fakes:
 * the session plays back a script of what it "learnt" on later loop
 * turns and then ends with a chosen class; the resolver is a bare
 * evdns base; the password commands' count of detached children is the
 * test's. probe.c's own work is what is checked: what it prints on
 * standard output, field by field and escaped, the order of it, the exit
 * status it hands on, and that it waits for detached children before it
 * frees the loop. The real session is exercised end to end by
 * tests/test_fetch.py and tests/test_hostile_text.py.
 */
#include <check.h>
#include <sysexits.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "conf.h"
#include "net.h"
#include "backoff.h"
#include "probe.h"
#include "secret.h"
#include "session.h"
#include "check_main.h"

/* --- the fakes ------------------------------------------------------- */

struct session {
	struct event_base *base;
	enum session_mode mode;
	session_info_cb info;
	session_done_cb done;
	void *arg;
};

static const struct session_info *script; /* what the session reports */
static size_t nscript;
static enum session_class script_end; /* how it ends */
static struct session fake;
static int started, freed;
static const char *dns_warning; /* what net_dns_new() says, or NULL */
static size_t detached;		/* password commands not reaped yet */
static bool reaped;

static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
	detached = 0;
	reaped = true;
}

static void
play_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session_stats st = {.login_delay = -1};
	struct timeval soon = {0, 10 * 1000};
	size_t i;

	for (i = 0; i < nscript; i++)
		fake.info(fake.arg, &script[i]);
	/* A password command still to be reaped after the session ended. */
	if (detached > 0)
		event_base_once(
		    fake.base, -1, EV_TIMEOUT, reap_cb, NULL, &soon);
	fake.done(fake.arg, script_end, &st, "");
}

struct session *
session_start_mode(struct event_base *base, struct evdns_base *dns,
    const struct conf *conf, const struct account *a, enum session_mode mode,
    session_info_cb info, session_done_cb cb, void *arg)
{
	struct timeval now = {0, 0};

	started++;
	fake = (struct session){base, mode, info, cb, arg};
	/* Like the real one: nothing reported from inside this call. */
	ck_assert_int_eq(
	    event_base_once(base, -1, EV_TIMEOUT, play_cb, NULL, &now), 0);
	return &fake;
}

/* --list's progress display asks; these tests' stderr is no terminal. */
void
session_progress(const struct session *s, struct session_progress *p)
{
	(void)s;
	memset(p, 0, sizeof(*p));
}

void
session_free(struct session **s)
{
	ck_assert_ptr_eq(*s, &fake);
	freed++;
	*s = NULL;
}

struct evdns_base *
net_dns_new(struct event_base *base, char *err, size_t errlen)
{
	snprintf(err, errlen, "%s", dns_warning != NULL ? dns_warning : "");
	return evdns_base_new(base, 0);
}

size_t
secret_detached(void)
{
	return detached;
}

/* --- capturing the output -------------------------------------------- */

static char outpath[64], errpath[64];
static int saved_out = -1, saved_err = -1;
static struct conf conf;
static struct account acc;

static int
redirect(int fd, char *path, size_t len, const char *name)
{
	int saved, tmp;

	snprintf(path, len, "/tmp/test_probe.%s.XXXXXX", name);
	ck_assert_int_ne(tmp = mkstemp(path), -1);
	ck_assert_int_ne(saved = dup(fd), -1);
	ck_assert_int_ne(dup2(tmp, fd), -1);
	close(tmp);
	return saved;
}

static void
setup(void)
{
	fflush(stdout);
	fflush(stderr);
	saved_out = redirect(1, outpath, sizeof(outpath), "out");
	saved_err = redirect(2, errpath, sizeof(errpath), "err");
	unsetenv("JOURNAL_STREAM");
	started = freed = 0;
	dns_warning = NULL;
	detached = 0;
	reaped = false;
	script = NULL;
	nscript = 0;
	script_end = SC_OK;
	memset(&acc, 0, sizeof(acc));
	acc.name = "test";
	acc.host = "pop.test";
	acc.port = 995;
	acc.tls = CONF_TLS_IMPLICIT;
}

static void
teardown(void)
{
	fflush(stdout);
	fflush(stderr);
	dup2(saved_out, 1);
	dup2(saved_err, 2);
	close(saved_out);
	close(saved_err);
	unlink(outpath);
	unlink(errpath);
}

/* The whole of PATH, NUL-terminated, in BUF. */
static const char *
slurp(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd;

	fflush(stdout);
	fflush(stderr);
	ck_assert_int_ne(fd = open(path, O_RDONLY), -1);
	ck_assert_int_ge(n = read(fd, buf, len - 1), 0);
	close(fd);
	buf[n] = '\0';
	return buf;
}

/* --- tests ----------------------------------------------------------- */

START_TEST(serverinfo_prints_each_finding_in_order)
{
	static const struct session_info s[] = {
	    {.kind = SI_GREETING, .text = "+OK ready <1.2@pop.test>"},
	    {.kind = SI_TLS,
		.text = "TLSv1.3 TLS_AES_256_GCM_SHA384",
		.pin = "sha256/q1bO+A=="},
	    {.kind = SI_CERT,
		.msgno = 0,
		.subject = "/CN=pop.test",
		.issuer = "/CN=Test CA",
		.not_before = "2026-01-01 00:00:00 UTC",
		.not_after = "2027-01-01 00:00:00 UTC"},
	    {.kind = SI_CERT,
		.msgno = 1,
		.subject = "/CN=Test CA",
		.issuer = "/CN=Root",
		.not_before = "2025-01-01 00:00:00 UTC",
		.not_after = "2030-01-01 00:00:00 UTC"},
	    {.kind = SI_CAPA, .text = "UIDL"},
	    {.kind = SI_CAPA, .text = "SASL PLAIN XOAUTH2"},
	    {.kind = SI_LOGIN, .text = "PLAIN"},
	    {.kind = SI_STAT, .count = 3, .size = 12345678901ULL},
	};
	char out[4096];

	script = s;
	nscript = sizeof(s) / sizeof(s[0]);
	ck_assert_int_eq(probe_run(&conf, &acc, SESSION_SERVERINFO), EX_OK);
	ck_assert_int_eq(started, 1);
	ck_assert_int_eq(freed, 1);
	ck_assert_int_eq(fake.mode, SESSION_SERVERINFO);
	ck_assert_str_eq(slurp(outpath, out, sizeof(out)),
	    "account:      test (pop.test:995, tls=implicit)\n"
	    "greeting:     +OK ready <1.2@pop.test>\n"
	    "tls:          TLSv1.3 TLS_AES_256_GCM_SHA384\n"
	    "pin:          tls_pins = [\"sha256/q1bO+A==\"];\n"
	    "certificate:  #0 /CN=pop.test\n"
	    "  issuer:     /CN=Test CA\n"
	    "  valid:      2026-01-01 00:00:00 UTC to 2027-01-01 00:00:00 UTC\n"
	    "certificate:  #1 /CN=Test CA\n"
	    "  issuer:     /CN=Root\n"
	    "  valid:      2025-01-01 00:00:00 UTC to 2030-01-01 00:00:00 UTC\n"
	    "capability:   UIDL\n"
	    "capability:   SASL PLAIN XOAUTH2\n"
	    "logged in:    PLAIN\n"
	    "mailbox:      3 messages, 12345678901 bytes\n");
	/* No resolver trouble, nothing to say on stderr. */
	ck_assert_str_eq(slurp(errpath, out, sizeof(out)), "");
}
END_TEST

/*
 * Without a secret: the capabilities from both sides of STLS, marked,
 * then why there was no login; the session's class is the exit status.
 */
START_TEST(serverinfo_without_a_secret_says_login_was_skipped)
{
	static const struct session_info s[] = {
	    {.kind = SI_GREETING, .text = "+OK hi"},
	    {.kind = SI_CAPA, .text = "STLS", .before_tls = true},
	    {.kind = SI_TLS, .text = "TLSv1.3 X", .pin = "sha256/AAAA"},
	    {.kind = SI_CAPA, .text = "SASL PLAIN"},
	    {.kind = SI_NOLOGIN, .text = "cannot open /p: No such file"},
	};
	char out[4096];

	acc.tls = CONF_TLS_STARTTLS;
	acc.port = 110;
	script = s;
	nscript = sizeof(s) / sizeof(s[0]);
	ck_assert_int_eq(probe_run(&conf, &acc, SESSION_SERVERINFO), EX_OK);
	ck_assert_str_eq(slurp(outpath, out, sizeof(out)),
	    "account:      test (pop.test:110, tls=starttls)\n"
	    "greeting:     +OK hi\n"
	    "capability:   STLS (before TLS)\n"
	    "tls:          TLSv1.3 X\n"
	    "pin:          tls_pins = [\"sha256/AAAA\"];\n"
	    "capability:   SASL PLAIN\n"
	    "login:        skipped, no secret: cannot open /p: No such file\n");
}
END_TEST

START_TEST(list_prints_a_header_then_one_line_per_message)
{
	static const struct session_info s[] = {
	    {.kind = SI_MESSAGE,
		.msgno = 1,
		.size = 1234,
		.uid = "uid-0001",
		.from = "Alice <a@example.org>",
		.date = "Mon, 1 Jan 2024 10:00:00 +0000",
		.subj = "hello"},
	    /* No UIDL: a dash where the UID goes; empty headers stay so. */
	    {.kind = SI_MESSAGE,
		.msgno = 2,
		.size = 99,
		.uid = "",
		.from = "",
		.date = "",
		.subj = ""},
	};
	char out[4096];

	acc.tls = CONF_TLS_STARTTLS;
	acc.port = 110;
	script = s;
	nscript = sizeof(s) / sizeof(s[0]);
	ck_assert_int_eq(probe_run(&conf, &acc, SESSION_LIST), EX_OK);
	ck_assert_int_eq(fake.mode, SESSION_LIST);
	ck_assert_str_eq(slurp(outpath, out, sizeof(out)),
	    "account:      test (pop.test:110, tls=starttls)\n"
	    "     #       size  uid                   from | date | subject\n"
	    "     1       1234  uid-0001              Alice <a@example.org> | Mon, 1 Jan 2024 10:00:00 +0000 | hello\n"
	    "     2         99  -                      |  | \n");
}
END_TEST

START_TEST(empty_mailbox_lists_no_header)
{
	static const struct session_info s[] = {
	    {.kind = SI_STAT, .count = 0, .size = 0},
	};
	char out[1024];

	script = s;
	nscript = 1;
	ck_assert_int_eq(probe_run(&conf, &acc, SESSION_LIST), EX_OK);
	ck_assert_str_eq(slurp(outpath, out, sizeof(out)),
	    "account:      test (pop.test:995, tls=implicit)\n"
	    "mailbox:      0 messages, 0 bytes\n");
}
END_TEST

/*
 * Every field a server chose is escaped: no control byte, no byte above
 * 0x7E reaches the terminal, and no line break a server sent can start a
 * line of its own.
 */
START_TEST(server_text_is_escaped_in_every_field)
{
	static const struct session_info s[] = {
	    {.kind = SI_GREETING, .text = "+OK \x1b[2Jhi\r\nmailbox:      0"},
	    {.kind = SI_TLS, .text = "TLSv1.3 X", .pin = ""},
	    {.kind = SI_CERT,
		.subject = "/CN=\x07"
			   "bell",
		.issuer = "\x9b"
			  "31m",
		.not_before = "\r",
		.not_after = "\n"},
	    {.kind = SI_CAPA, .text = "SASL\tPLAIN\x7f"},
	    {.kind = SI_LOGIN, .text = "PLAIN\n"},
	    {.kind = SI_MESSAGE,
		.msgno = 1,
		.size = 1,
		.uid = "u\x01",
		.from = "\xc3\xa9ve <e@x>",
		.date = "\x1b]0;title\x07",
		.subj = "back\\slash"},
	};
	char out[4096];
	size_t i;

	script = s;
	nscript = sizeof(s) / sizeof(s[0]);
	ck_assert_int_eq(probe_run(&conf, &acc, SESSION_LIST), EX_OK);
	slurp(outpath, out, sizeof(out));
	ck_assert_str_eq(out,
	    "account:      test (pop.test:995, tls=implicit)\n"
	    "greeting:     +OK \\x1b[2Jhi\\x0d\\x0amailbox:      0\n"
	    "tls:          TLSv1.3 X\n"
	    "certificate:  #0 /CN=\\x07bell\n"
	    "  issuer:     \\x9b31m\n"
	    "  valid:      \\x0d to \\x0a\n"
	    "capability:   SASL\\x09PLAIN\\x7f\n"
	    "logged in:    PLAIN\\x0a\n"
	    "     #       size  uid                   from | date | subject\n"
	    "     1          1  u\\x01                 \\xc3\\xa9ve <e@x> | \\x1b]0;title\\x07 | back\\\\slash\n");
	for (i = 0; out[i] != '\0'; i++)
		ck_assert_msg(
		    out[i] == '\n' || (out[i] >= 0x20 && out[i] <= 0x7e),
		    "byte 0x%02x at %zu", (unsigned char)out[i], i);
}
END_TEST

/* The class the session ended with decides the exit status. */
START_TEST(exit_status_is_the_sessions_class)
{
	static const enum session_class classes[] = {
	    SC_OK, SC_NET, SC_BUSY, SC_PROTO, SC_AUTH, SC_LOCAL, SC_CONFIG};
	size_t i;

	for (i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
		script_end = classes[i];
		ck_assert_int_eq(probe_run(&conf, &acc, SESSION_SERVERINFO),
		    backoff_exit_status(classes[i]));
	}
	ck_assert_int_eq(started, (int)i);
	ck_assert_int_eq(freed, (int)i);
}
END_TEST

START_TEST(resolver_trouble_is_logged_and_the_probe_goes_on)
{
	static const struct session_info s[] = {
	    {.kind = SI_GREETING, .text = "+OK"},
	};
	char buf[1024];

	dns_warning = "cannot read /nowhere/resolv.conf (libevent error 2)";
	script = s;
	nscript = 1;
	ck_assert_int_eq(probe_run(&conf, &acc, SESSION_SERVERINFO), EX_OK);
	ck_assert_str_eq(slurp(errpath, buf, sizeof(buf)),
	    "resolver: cannot read /nowhere/resolv.conf (libevent error 2)\n");
	ck_assert_ptr_nonnull(
	    strstr(slurp(outpath, buf, sizeof(buf)), "greeting:     +OK\n"));
}
END_TEST

/*
 * A password command the session left running is reaped before the
 * loop goes: the probe runs the loop until none is left.
 */
START_TEST(waits_for_detached_password_commands)
{
	detached = 1;
	ck_assert_int_eq(probe_run(&conf, &acc, SESSION_SERVERINFO), EX_OK);
	ck_assert(reaped);
	ck_assert_uint_eq(detached, 0);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("probe");
	TCase *tc = tcase_create("output");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, serverinfo_prints_each_finding_in_order);
	tcase_add_test(tc, serverinfo_without_a_secret_says_login_was_skipped);
	tcase_add_test(tc, list_prints_a_header_then_one_line_per_message);
	tcase_add_test(tc, empty_mailbox_lists_no_header);
	tcase_add_test(tc, server_text_is_escaped_in_every_field);
	tcase_add_test(tc, exit_status_is_the_sessions_class);
	tcase_add_test(tc, resolver_trouble_is_logged_and_the_probe_goes_on);
	tcase_add_test(tc, waits_for_detached_password_commands);
	suite_add_tcase(s, tc);

	return check_main(s);
}
