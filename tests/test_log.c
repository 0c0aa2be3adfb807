/*
 * Tests for the log module: escaping of every byte, the length cap and its
 * marker, what trace lines mask and what they show (a table of lines),
 * what log_warnx and log_proto really write to stderr (redirected to a
 * file for each test), and the journald priority of each level.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "check_main.h"

static FILE *captured;
static int saved_stderr = -1;

/* Every line of stderr from here on goes to a temporary file. */
static void
capture_start(int trace)
{
	unsetenv("JOURNAL_STREAM");
	fflush(stderr);
	captured = tmpfile();
	ck_assert_ptr_nonnull(captured);
	saved_stderr = dup(2);
	ck_assert_int_ne(saved_stderr, -1);
	ck_assert_int_ne(dup2(fileno(captured), 2), -1);
	log_init(trace, false);
}

/*
 * As capture_start(), with the capture file named by JOURNAL_STREAM, as
 * systemd names the journal's stream: lines get priority prefixes.
 */
static void
capture_journal(int trace, bool verbose)
{
	char env[64];
	struct stat st;

	capture_start(trace);
	ck_assert_int_eq(fstat(2, &st), 0);
	snprintf(env, sizeof(env), "%llu:%llu", (unsigned long long)st.st_dev,
	    (unsigned long long)st.st_ino);
	ck_assert_int_eq(setenv("JOURNAL_STREAM", env, 1), 0);
	log_init(trace, verbose);
}

/* What was written since capture_start(), NUL-terminated; free it. */
static char *
capture_end(size_t *lenp)
{
	char *buf;
	long len;

	fflush(stderr);
	ck_assert_int_ne(dup2(saved_stderr, 2), -1);
	close(saved_stderr);
	len = ftell(captured);
	ck_assert_int_ge(len, 0);
	buf = malloc((size_t)len + 1);
	ck_assert_ptr_nonnull(buf);
	rewind(captured);
	ck_assert_uint_eq(fread(buf, 1, (size_t)len, captured), (size_t)len);
	buf[len] = '\0';
	fclose(captured);
	*lenp = (size_t)len;
	return buf;
}

/* Only printable ASCII, each line ended by '\n', none longer than MAX. */
static void
assert_clean_lines(const char *out, size_t len, size_t max)
{
	size_t i, line = 0;

	ck_assert_uint_gt(len, 0);
	ck_assert_int_eq(out[len - 1], '\n');
	for (i = 0; i < len; i++) {
		if (out[i] == '\n') {
			ck_assert_uint_le(line, max);
			line = 0;
			continue;
		}
		ck_assert_msg((unsigned char)out[i] >= 0x20 &&
				  (unsigned char)out[i] <= 0x7e,
		    "byte 0x%02x at %zu", (unsigned char)out[i], i);
		line++;
	}
}

/* The reverse of log_escape(): what an escaped text stands for. */
static size_t
unescape(unsigned char *dst, const char *src)
{
	size_t o = 0;
	unsigned int v;

	while (*src != '\0') {
		if (src[0] == '\\' && src[1] == '\\') {
			dst[o++] = '\\';
			src += 2;
		} else if (src[0] == '\\' && src[1] == 'x') {
			ck_assert_int_eq(sscanf(src + 2, "%2x", &v), 1);
			dst[o++] = (unsigned char)v;
			src += 4;
		} else {
			ck_assert_int_ne(src[0], '\\');
			dst[o++] = (unsigned char)*src++;
		}
	}
	return o;
}

/* The escape of one byte, by the rule stated in log.h. */
static void
expected_escape(char *buf, size_t len, unsigned char c)
{
	if (c == '\\')
		snprintf(buf, len, "\\\\");
	else if (c >= 0x20 && c <= 0x7e)
		snprintf(buf, len, "%c", c);
	else
		snprintf(buf, len, "\\x%02x", c);
}

START_TEST(escape_every_byte)
{
	char src[1], got[16], want[16];
	size_t n;
	int c;

	for (c = 0; c < 256; c++) {
		src[0] = (char)c;
		expected_escape(want, sizeof(want), (unsigned char)c);
		n = log_escape(got, sizeof(got), src, 1);
		ck_assert_msg(
		    strcmp(got, want) == 0, "byte 0x%02x: \"%s\"", c, got);
		ck_assert_uint_eq(n, strlen(want));
	}
}
END_TEST

START_TEST(escape_round_trip)
{
	unsigned char all[256], back[256];
	char out[256 * 4 + 1];
	size_t i, n;

	for (i = 0; i < sizeof(all); i++)
		all[i] = (unsigned char)i;
	n = log_escape(out, sizeof(out), (const char *)all, sizeof(all));
	ck_assert_uint_eq(n, strlen(out));
	for (i = 0; i < n; i++)
		ck_assert((unsigned char)out[i] >= 0x20 &&
			  (unsigned char)out[i] <= 0x7e);
	ck_assert_uint_eq(unescape(back, out), sizeof(all));
	ck_assert_mem_eq(back, all, sizeof(all));
}
END_TEST

START_TEST(escape_backslash_unambiguous)
{
	/* A literal "\x1b" and an ESC byte must not look the same. */
	char lit[16], esc[16];

	log_escape(lit, sizeof(lit), "\\x1b", 4);
	log_escape(esc, sizeof(esc), "\x1b", 1);
	ck_assert_str_eq(esc, "\\x1b");
	ck_assert_str_eq(lit, "\\\\x1b");
	ck_assert_str_ne(lit, esc);
}
END_TEST

START_TEST(escape_fits_exactly)
{
	char src[40], out[41];
	size_t n;

	memset(src, 'a', sizeof(src));
	n = log_escape(out, sizeof(out), src, sizeof(src));
	ck_assert_uint_eq(n, sizeof(src));
	ck_assert(strstr(out, "cut") == NULL);
	/* One escape more than fits: the text is cut, with its marker. */
	src[sizeof(src) - 1] = '\x07';
	n = log_escape(out, sizeof(out), src, sizeof(src));
	ck_assert_uint_le(n, sizeof(out) - 1);
	ck_assert_ptr_nonnull(strstr(out, " bytes cut)"));
}
END_TEST

/* Checks that OUT is an uncut prefix of escape(SRC) plus a true marker. */
static void
assert_cut(const char *out, const unsigned char *src, size_t srclen)
{
	unsigned char back[8192];
	const char *mark = strstr(out, "... (");
	char shown[8192];
	size_t kept, cut;
	char tail[32];

	ck_assert_ptr_nonnull(mark);
	ck_assert_int_eq(sscanf(mark, "... (%zu bytes cut%31s", &cut, tail), 2);
	ck_assert_str_eq(tail, ")");
	memcpy(shown, out, (size_t)(mark - out));
	shown[mark - out] = '\0';
	kept = unescape(back, shown);
	ck_assert_uint_eq(kept + cut, srclen);
	ck_assert_mem_eq(back, src, kept);
}

START_TEST(escape_cap_and_marker)
{
	unsigned char src[5000];
	char out[LOG_MSG_MAX + 1];
	size_t i, n, shift;

	/* Every alignment of 4-byte escapes against the end of the room. */
	for (shift = 0; shift < 4; shift++) {
		for (i = 0; i < sizeof(src); i++)
			src[i] = i < shift ? 'p' : i % 3 == 0 ? 0x1b : 'a';
		n = log_escape(
		    out, sizeof(out), (const char *)src, sizeof(src));
		ck_assert_uint_eq(n, strlen(out));
		ck_assert_uint_le(n, LOG_MSG_MAX);
		/* Nearly full: the cap is not wasted. */
		ck_assert_uint_ge(n, LOG_MSG_MAX - 4);
		assert_cut(out, src, sizeof(src));
	}
}
END_TEST

START_TEST(escape_tiny_buffer)
{
	char out[4];

	log_escape(out, 1, "abc", 3);
	ck_assert_str_eq(out, "");
	log_escape(out, sizeof(out), "\x1b\x1b", 2);
	ck_assert_uint_lt(strlen(out), sizeof(out));
	ck_assert(strchr(out, '\x1b') == NULL);
}
END_TEST

/* log_mask of a NUL-terminated LINE. */
static const char *
mask(char *buf, size_t len, const char *line, bool outgoing, bool secret)
{
	log_mask(buf, len, line, strlen(line), outgoing, secret);
	return buf;
}

/*
 * What a trace line shows of each line the client sends or receives: the
 * arguments that are credentials are masked, with a mask of one length
 * whatever the secret's; everything else is shown.
 */
static const struct {
	const char *line;
	bool outgoing, secret;
	const char *shown;
} mask_case[] = {
    /* The password, spaces and all. */
    {"PASS hunter2", true, false, "PASS ********"},
    {"PASS correct horse battery staple", true, false, "PASS ********"},
    {"pass hunter2 x", true, false, "pass ********"},
    {"RPOP hunter2", true, false, "RPOP ********"},
    {"rpop x", true, false, "rpop ********"},
    /* APOP: the user is shown, the digest is not. */
    {"APOP alice c4c9334bac560ecc979e58001b3e22fb", true, false,
	"APOP alice ********"},
    {"apop alice c4c9334bac560ecc979e58001b3e22fb", true, false,
	"apop alice ********"},
    /* AUTH: the mechanism is shown, the initial response is not. */
    {"AUTH PLAIN AGFsaWNlAGh1bnRlcjI=", true, false, "AUTH PLAIN ********"},
    {"AUTH PLAIN =", true, false, "AUTH PLAIN ********"},
    {"AUTH XOAUTH2 dXNlcj1hbGljZQFhdXRoPUJlYXJlciB0b2tlbgEB", true, false,
	"AUTH XOAUTH2 ********"},
    {"AUTH OAUTHBEARER bixhPWFsaWNlLAFhdXRoPUJlYXJlciB0b2tlbgEB", true, false,
	"AUTH OAUTHBEARER ********"},
    /* A SASL continuation line is all secret, even a cancel. */
    {"AGFsaWNlAGh1bnRlcjI=", true, true, "********"},
    {"aHVudGVyMg==", true, true, "********"},
    {"*", true, true, "********"},
    {"USER alice", true, true, "********"},
    {"", true, true, ""},
    /* Nothing to hide: no argument, or no credential in it. */
    {"PASS", true, false, "PASS"},
    {"AUTH PLAIN", true, false, "AUTH PLAIN"},
    {"AUTH", true, false, "AUTH"},
    {"USER alice", true, false, "USER alice"},
    {"USER alice.smith@example.com", true, false,
	"USER alice.smith@example.com"},
    {"CAPA", true, false, "CAPA"},
    {"STLS", true, false, "STLS"},
    {"STAT", true, false, "STAT"},
    {"UIDL", true, false, "UIDL"},
    {"LIST 3", true, false, "LIST 3"},
    {"RETR 1", true, false, "RETR 1"},
    {"TOP 7 0", true, false, "TOP 7 0"},
    {"DELE 1", true, false, "DELE 1"},
    {"QUIT", true, false, "QUIT"},
    /* Verbs are whole words. */
    {"PASSWORD x", true, false, "PASSWORD x"},
    {"APOPS alice x", true, false, "APOPS alice x"},
    {"AUTHX PLAIN x", true, false, "AUTHX PLAIN x"},
    /* The server's lines, whatever they look like. */
    {"PASS word", false, false, "PASS word"},
    {"+OK Logged in.", false, false, "+OK Logged in."},
    {"+ VXNlcm5hbWU6", false, false, "+ VXNlcm5hbWU6"},
    {"-ERR [AUTH] Authentication failed.", false, false,
	"-ERR [AUTH] Authentication failed."},
};

START_TEST(mask_table)
{
	const char *line = mask_case[_i].line, *want = mask_case[_i].shown;
	bool out = mask_case[_i].outgoing, secret = mask_case[_i].secret;
	char b[256];

	mask(b, sizeof(b), line, out, secret);
	ck_assert_msg(strcmp(b, want) == 0,
	    "\"%s\" (%s%s) shows \"%s\", not \"%s\"", line,
	    out ? "sent" : "received", secret ? ", secret" : "", b, want);
}
END_TEST

START_TEST(mask_escapes)
{
	char b[256];

	ck_assert_str_eq(
	    mask(b, sizeof(b), "-ERR \x1b[31mred\x07\r\\", false, false),
	    "-ERR \\x1b[31mred\\x07\\x0d\\\\");
	ck_assert_str_eq(mask(b, sizeof(b),
			     "USER \x9b"
			     "2J",
			     true, false),
	    "USER \\x9b2J");
	ck_assert_str_eq(mask(b, sizeof(b), "APOP \x1b hunter2", true, false),
	    "APOP \\x1b ********");
}
END_TEST

START_TEST(mask_cut_hides_secret_length)
{
	char line[600], a[64], b[64];
	const char *mark;
	size_t cut;

	/* Same visible part, secrets of different lengths: same output. */
	memset(line, 'u', sizeof(line));
	memcpy(line, "APOP ", 5);
	line[100] = ' ';
	line[120] = '\0';
	mask(a, sizeof(a), line, true, false);
	line[120] = 'p';
	line[sizeof(line) - 1] = '\0';
	mask(b, sizeof(b), line, true, false);
	ck_assert_str_eq(a, b);
	ck_assert_uint_lt(strlen(a), sizeof(a));
	/* The count is of the 100 visible bytes, not of the secret. */
	mark = strstr(a, "... (");
	ck_assert_ptr_nonnull(mark);
	ck_assert_int_eq(sscanf(mark, "... (%zu bytes cut)", &cut), 1);
	ck_assert_uint_eq((size_t)(mark - a) + cut, 100);
	ck_assert_ptr_nonnull(strstr(mark, ") ********"));
}
END_TEST

START_TEST(warnx_escapes_server_text)
{
	const char *hostile = "[AUTH] \x1b[31mred\x1b[0m\x07\rMAINPID=1\n"
			      "\x9b"
			      "2J %n%s\\";
	char *out;
	size_t len;

	capture_start(0);
	log_warnx("acct", "server says: %s", hostile);
	out = capture_end(&len);
	assert_clean_lines(out, len, LOG_MSG_MAX + 64);
	ck_assert_str_eq(out,
	    "account=acct server says: [AUTH] \\x1b[31mred\\x1b[0m\\x07\\x0dMAINPID=1\\x0a\\x9b2J %n%s\\\\\n");
	free(out);
}
END_TEST

START_TEST(warnx_caps_padding)
{
	static char pad[8000];
	char *out, *mark;
	size_t len, cut, shown;
	const char *head = "account=acct server says: -ERR ";

	memset(pad, 'x', sizeof(pad) - 1);
	capture_start(0);
	log_warnx("acct", "server says: -ERR %s", pad);
	out = capture_end(&len);
	assert_clean_lines(out, len, strlen("account=acct ") + LOG_MSG_MAX);
	ck_assert_int_eq(strncmp(out, head, strlen(head)), 0);
	mark = strstr(out, "... (");
	ck_assert_ptr_nonnull(mark);
	ck_assert_int_eq(sscanf(mark, "... (%zu bytes cut)", &cut), 1);
	shown = (size_t)(mark - out) - strlen(head);
	ck_assert_uint_eq(shown + cut, sizeof(pad) - 1);
	free(out);
}
END_TEST

START_TEST(warn_keeps_errno_text)
{
	char *out;
	size_t len;

	capture_start(0);
	errno = ENOENT;
	log_warn(NULL, "open \x1b");
	out = capture_end(&len);
	assert_clean_lines(out, len, LOG_MSG_MAX + 64);
	ck_assert_ptr_nonnull(strstr(out, "open \\x1b: "));
	ck_assert_ptr_nonnull(strstr(out, strerror(ENOENT)));
	free(out);
}
END_TEST

START_TEST(proto_escapes_and_masks)
{
	static char pad[9000];
	char *out;
	size_t len;
	const char *reply = "-ERR \x1b]0;owned\x07 bad\r\n";

	memset(pad, '\x1b', sizeof(pad));
	capture_start(2);
	log_proto("acct", 1, false, reply, strlen(reply), false);
	log_proto("acct", 1, true, "PASS hunter2\r\n", 14, false);
	log_proto("acct", 2, false, pad, sizeof(pad), false);
	out = capture_end(&len);
	assert_clean_lines(out, len, strlen("account=acct < ") + LOG_MSG_MAX);
	ck_assert_ptr_nonnull(
	    strstr(out, "account=acct < -ERR \\x1b]0;owned\\x07 bad\n"
			"account=acct > PASS ********\n"));
	ck_assert(strstr(out, "hunter2") == NULL);
	ck_assert_ptr_nonnull(strstr(out, " bytes cut)\n"));
	free(out);
}
END_TEST

/*
 * A login as the session traces it: whole lines with their CRLF, the
 * SASL continuation flagged secret. No credential reaches stderr.
 */
START_TEST(proto_masks_login)
{
	static const struct {
		const char *line;
		bool outgoing, secret;
	} sent[] = {
	    {"USER alice\r\n", true, false},
	    {"PASS hunter2\r\n", true, false},
	    {"APOP alice 0b1c5e8e8dbd4f4c8e5d8b2bd3b4f7aa\r\n", true, false},
	    {"AUTH PLAIN AGFsaWNlAGh1bnRlcjI=\r\n", true, false},
	    {"AUTH LOGIN\r\n", true, false},
	    {"+ VXNlcm5hbWU6\r\n", false, false},
	    {"aHVudGVyMg==\r\n", true, true},
	    {"+OK Logged in.\r\n", false, false},
	};
	char *out;
	size_t len, i;

	capture_start(1);
	for (i = 0; i < sizeof(sent) / sizeof(sent[0]); i++)
		log_proto("acct", 1, sent[i].outgoing, sent[i].line,
		    strlen(sent[i].line), sent[i].secret);
	out = capture_end(&len);
	ck_assert_str_eq(out, "account=acct > USER alice\n"
			      "account=acct > PASS ********\n"
			      "account=acct > APOP alice ********\n"
			      "account=acct > AUTH PLAIN ********\n"
			      "account=acct > AUTH LOGIN\n"
			      "account=acct < + VXNlcm5hbWU6\n"
			      "account=acct > ********\n"
			      "account=acct < +OK Logged in.\n");
	free(out);
}
END_TEST

/* Trace lines of a level above the one asked for are not written. */
START_TEST(proto_levels)
{
	char *out;
	size_t len;

	capture_start(0);
	log_proto("acct", 1, true, "USER alice\r\n", 12, false);
	out = capture_end(&len);
	ck_assert_str_eq(out, "");
	free(out);
	capture_start(1);
	log_proto("acct", 2, false, "1 uid-1\r\n", 9, false);
	log_proto("acct", 1, false, "+OK\r\n", 5, false);
	out = capture_end(&len);
	ck_assert_str_eq(out, "account=acct < +OK\n");
	free(out);
}
END_TEST

START_TEST(priority_per_level)
{
	char *out, want[512];
	size_t len;

	capture_journal(1, true);
	errno = ENOENT;
	log_warn("acct", "warn");
	log_warnx("acct", "warnx");
	log_info(NULL, "info");
	log_debug("acct", "debug");
	log_proto("acct", 1, false, "+OK\r\n", 5, false);
	out = capture_end(&len);
	unsetenv("JOURNAL_STREAM");
	snprintf(want, sizeof(want),
	    "<4>account=acct warn: %s\n"
	    "<4>account=acct warnx\n"
	    "<6>info\n"
	    "<7>account=acct debug\n"
	    "<7>account=acct < +OK\n",
	    strerror(ENOENT));
	ck_assert_str_eq(out, want);
	free(out);
}
END_TEST

/* fatalx in a child of its own: it exits. */
START_TEST(priority_fatal)
{
	char *out;
	size_t len;
	pid_t pid;
	int status;

	capture_journal(0, false);
	if ((pid = fork()) == 0)
		fatalx("broken %s", "invariant");
	ck_assert_int_ne(pid, -1);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	out = capture_end(&len);
	unsetenv("JOURNAL_STREAM");
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 70);
	ck_assert_str_eq(out, "<3>broken invariant\n");
	free(out);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("log");
	TCase *esc = tcase_create("escape");
	TCase *msk = tcase_create("mask");
	TCase *out = tcase_create("output");

	tcase_add_test(esc, escape_every_byte);
	tcase_add_test(esc, escape_round_trip);
	tcase_add_test(esc, escape_backslash_unambiguous);
	tcase_add_test(esc, escape_fits_exactly);
	tcase_add_test(esc, escape_cap_and_marker);
	tcase_add_test(esc, escape_tiny_buffer);
	suite_add_tcase(s, esc);

	tcase_add_loop_test(
	    msk, mask_table, 0, sizeof(mask_case) / sizeof(mask_case[0]));
	tcase_add_test(msk, mask_escapes);
	tcase_add_test(msk, mask_cut_hides_secret_length);
	suite_add_tcase(s, msk);

	tcase_add_test(out, warnx_escapes_server_text);
	tcase_add_test(out, warnx_caps_padding);
	tcase_add_test(out, warn_keeps_errno_text);
	tcase_add_test(out, proto_escapes_and_masks);
	tcase_add_test(out, proto_masks_login);
	tcase_add_test(out, proto_levels);
	tcase_add_test(out, priority_per_level);
	tcase_add_test(out, priority_fatal);
	suite_add_tcase(s, out);

	return check_main(s);
}
