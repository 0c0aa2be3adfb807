/*
 * Tests for the log module: escaping of every byte, the length cap and its
 * marker, secret masking in trace lines, what log_warnx and log_proto
 * really write to stderr (redirected to a file for each test), and the
 * journald priority of each level.
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

START_TEST(mask_secrets)
{
	char b[256];

	ck_assert_str_eq(
	    mask(b, sizeof(b), "PASS hunter2", true, false), "PASS ********");
	ck_assert_str_eq(
	    mask(b, sizeof(b), "pass hunter2 x", true, false), "pass ********");
	ck_assert_str_eq(
	    mask(b, sizeof(b), "RPOP hunter2", true, false), "RPOP ********");
	ck_assert_str_eq(
	    mask(b, sizeof(b), "APOP alice c4c9334bac560ecc979e58001b3e22fb",
		true, false),
	    "APOP alice ********");
	ck_assert_str_eq(
	    mask(b, sizeof(b), "AUTH PLAIN AGFsaWNlAGh1bnRlcjI=", true, false),
	    "AUTH PLAIN ********");
	/* No initial response: nothing to hide. */
	ck_assert_str_eq(
	    mask(b, sizeof(b), "AUTH PLAIN", true, false), "AUTH PLAIN");
	ck_assert_str_eq(mask(b, sizeof(b), "PASS", true, false), "PASS");
	/* A SASL continuation line is all secret. */
	ck_assert_str_eq(
	    mask(b, sizeof(b), "AGFsaWNlAGh1bnRlcjI=", true, true), "********");
	ck_assert_str_eq(mask(b, sizeof(b), "", true, true), "");
	/* Other commands and the server's lines are shown. */
	ck_assert_str_eq(
	    mask(b, sizeof(b), "USER alice", true, false), "USER alice");
	ck_assert_str_eq(
	    mask(b, sizeof(b), "PASS word", false, false), "PASS word");
	ck_assert_str_eq(
	    mask(b, sizeof(b), "PASSWORD x", true, false), "PASSWORD x");
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

	tcase_add_test(msk, mask_secrets);
	tcase_add_test(msk, mask_escapes);
	tcase_add_test(msk, mask_cut_hides_secret_length);
	suite_add_tcase(s, msk);

	tcase_add_test(out, warnx_escapes_server_text);
	tcase_add_test(out, warnx_caps_padding);
	tcase_add_test(out, warn_keeps_errno_text);
	tcase_add_test(out, proto_escapes_and_masks);
	tcase_add_test(out, priority_per_level);
	tcase_add_test(out, priority_fatal);
	suite_add_tcase(s, out);

	return check_main(s);
}
