/*
 * Tests of the pure parts of daemon/target.c: the byte encoder (line
 * ends, dot-stuffing, a last line completed) fed whole, split at every
 * offset and byte by byte; reply lines and their verdicts; the message
 * identifier (stable, distinct per field, no field running into the
 * next); the MDA's command line (words, quotes, placeholders, shell
 * quoting, errors) and its exit statuses' verdicts.
 */
#include <sys/wait.h>

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "target.h"
#include "target_mda.h"
#include "check_main.h"

struct sink {
	char buf[4096];
	size_t len;
};

static int
collect(void *arg, const char *bytes, size_t n)
{
	struct sink *s = arg;

	ck_assert_uint_le(s->len + n, sizeof(s->buf));
	memcpy(s->buf + s->len, bytes, n);
	s->len += n;
	return 0;
}

/* IN encoded in pieces of STEP bytes (0: whole); the result in OUT. */
static void
encode(const char *in, size_t len, bool crlf, bool stuff, size_t step,
    struct sink *out)
{
	struct target_enc e;
	size_t i, n;

	memset(out, 0, sizeof(*out));
	target_enc_init(&e, crlf, stuff);
	for (i = 0; i < len; i += n) {
		n = step == 0 || len - i < step ? len - i : step;
		ck_assert_int_eq(
		    target_enc_feed(&e, in + i, n, collect, out), 0);
	}
	ck_assert_int_eq(target_enc_finish(&e, collect, out), 0);
	out->buf[out->len] = '\0';
}

struct enc_case {
	const char *in;
	bool crlf, stuff;
	const char *want;
};

static const struct enc_case encs[] = {
    /* LMTP: CRLF out, dots doubled at line starts only. */
    {"a\r\n.b\r\n..\r\n.\r\nx.y\r\n", true, true,
	"a\r\n..b\r\n...\r\n..\r\nx.y\r\n"},
    {".", true, true, "..\r\n"},
    {"a\nb\n", true, true, "a\r\nb\r\n"},	      /* bare LF */
    {"no end", true, true, "no end\r\n"},	      /* completed */
    {"cr\rinside\r\n", true, true, "cr\rinside\r\n"}, /* data CR */
    {"end cr\r", true, true, "end cr\r\r\n"},	      /* kept, ended */
    {"", true, true, ""},			      /* empty */
    {"\r\n.\r\n", true, true, "\r\n..\r\n"},	      /* empty line */
    /* A local command: LF out, nothing stuffed. */
    {"a\r\n.b\r\nc\n", false, false, "a\n.b\nc\n"},
    {"x", false, false, "x\n"},
};

START_TEST(test_encoder)
{
	const struct enc_case *c = &encs[_i];
	size_t len = strlen(c->in), step;
	struct sink whole, part;

	encode(c->in, len, c->crlf, c->stuff, 0, &whole);
	ck_assert_str_eq(whole.buf, c->want);
	/* Same bytes whatever the pieces. */
	for (step = 1; step <= len; step++) {
		encode(c->in, len, c->crlf, c->stuff, step, &part);
		ck_assert_msg(strcmp(part.buf, c->want) == 0,
		    "case %d step %zu: \"%s\"", _i, step, part.buf);
	}
}
END_TEST

/* Every split of a message in two pieces gives the same bytes. */
START_TEST(test_encoder_every_split)
{
	const char *in = "From: a\r\n.\r\n..x\n\r\nbody.\r\n.end";
	const char *want = "From: a\r\n..\r\n...x\r\n\r\nbody.\r\n..end\r\n";
	size_t len = strlen(in), cut;
	struct target_enc e;
	struct sink out;

	for (cut = 0; cut <= len; cut++) {
		memset(&out, 0, sizeof(out));
		target_enc_init(&e, true, true);
		target_enc_feed(&e, in, cut, collect, &out);
		target_enc_feed(&e, in + cut, len - cut, collect, &out);
		target_enc_finish(&e, collect, &out);
		out.buf[out.len] = '\0';
		ck_assert_msg(
		    strcmp(out.buf, want) == 0, "cut %zu: %s", cut, out.buf);
	}
}
END_TEST

static int
refuse(void *arg, const char *bytes, size_t n)
{
	return 7;
}

/* The sink's failure stops the encoder and comes back. */
START_TEST(test_encoder_sink_error)
{
	struct target_enc e;

	target_enc_init(&e, true, true);
	ck_assert_int_eq(target_enc_feed(&e, "a\r\n", 3, refuse, NULL), 7);
	target_enc_init(&e, true, true);
	ck_assert_int_eq(target_enc_feed(&e, "ab", 2, refuse, NULL), 7);
	ck_assert_int_eq(target_enc_finish(&e, refuse, NULL), 7);
}
END_TEST

START_TEST(test_reply_lines)
{
	int code;
	bool last;

	ck_assert_int_eq(
	    target_reply_line("250 2.0.0 <bob> Saved", 21, &code, &last), 0);
	ck_assert_int_eq(code, 250);
	ck_assert(last);
	ck_assert_int_eq(
	    target_reply_line("250-PIPELINING", 14, &code, &last), 0);
	ck_assert(!last);
	ck_assert_int_eq(target_reply_line("354", 3, &code, &last), 0);
	ck_assert_int_eq(code, 354);
	ck_assert(last);
	ck_assert_int_eq(
	    target_reply_line("452 4.2.2 Quota", 15, &code, &last), 0);
	ck_assert_int_eq(code, 452);
	/* Not replies. */
	ck_assert_int_eq(target_reply_line("25", 2, &code, &last), -1);
	ck_assert_int_eq(target_reply_line("150 x", 5, &code, &last), -1);
	ck_assert_int_eq(target_reply_line("650 x", 5, &code, &last), -1);
	ck_assert_int_eq(target_reply_line("2a0 x", 5, &code, &last), -1);
	ck_assert_int_eq(target_reply_line("250x", 4, &code, &last), -1);
	ck_assert_int_eq(target_reply_line("", 0, &code, &last), -1);
}
END_TEST

START_TEST(test_verdicts)
{
	ck_assert_int_eq(target_verdict_of(250), TARGET_DELIVERED);
	ck_assert_int_eq(target_verdict_of(251), TARGET_DELIVERED);
	ck_assert_int_eq(target_verdict_of(421), TARGET_TEMPFAIL);
	ck_assert_int_eq(target_verdict_of(452), TARGET_TEMPFAIL);
	ck_assert_int_eq(target_verdict_of(550), TARGET_PERMFAIL);
	ck_assert_int_eq(target_verdict_of(552), TARGET_PERMFAIL);
	/* Anything else is not a verdict to act on: try again. */
	ck_assert_int_eq(target_verdict_of(354), TARGET_TEMPFAIL);
	ck_assert_int_eq(target_verdict_of(0), TARGET_TEMPFAIL);
	ck_assert_str_eq(
	    target_verdict_name(TARGET_PERMFAIL), "permanent failure");
}
END_TEST

START_TEST(test_message_id)
{
	char a[TARGET_ID_SIZE], b[TARGET_ID_SIZE], c[TARGET_ID_SIZE];
	int n;

	n = target_message_id(
	    a, sizeof(a), "work", "pop.example.com", 995, "alice", "uid-1");
	ck_assert_int_gt(n, 0);
	ck_assert_uint_eq(strlen(a), (size_t)n);
	ck_assert_msg(strncmp(a, "X-Popfetchd-Id: <", 17) == 0, "%s", a);
	ck_assert_str_eq(a + n - 12, "@popfetchd>\n");
	ck_assert_uint_eq(strspn(a + 17, "0123456789abcdef"), 32);
	/* Stable. */
	target_message_id(
	    b, sizeof(b), "work", "pop.example.com", 995, "alice", "uid-1");
	ck_assert_str_eq(a, b);
	/* Each field counts. */
	target_message_id(
	    b, sizeof(b), "work", "pop.example.com", 995, "alice", "uid-2");
	ck_assert_str_ne(a, b);
	target_message_id(
	    b, sizeof(b), "home", "pop.example.com", 995, "alice", "uid-1");
	ck_assert_str_ne(a, b);
	target_message_id(
	    b, sizeof(b), "work", "pop.example.com", 110, "alice", "uid-1");
	ck_assert_str_ne(a, b);
	target_message_id(
	    b, sizeof(b), "work", "pop.example.org", 995, "alice", "uid-1");
	ck_assert_str_ne(a, b);
	/* Fields do not run into each other. */
	target_message_id(b, sizeof(b), "ab", "c", 1, "u", "x");
	target_message_id(c, sizeof(c), "a", "bc", 1, "u", "x");
	ck_assert_str_ne(b, c);
	/* A NULL user is the empty one; a buffer too small is refused. */
	target_message_id(b, sizeof(b), "w", "h", 1, NULL, "x");
	target_message_id(c, sizeof(c), "w", "h", 1, "", "x");
	ck_assert_str_eq(b, c);
	ck_assert_int_eq(target_message_id(c, 20, "w", "h", 1, "", "x"), -1);
}
END_TEST

struct argv_case {
	const char *cmd;
	bool shell;
	const char *want; /* the words joined by '|' */
};

static const struct mda_vars vars = {
    .user = "al ice", .account = "work", .recipient = "o'brien"};

static const struct argv_case argvs[] = {
    {"/usr/lib/dovecot/dovecot-lda -d %u", false,
	"/usr/lib/dovecot/dovecot-lda|-d|al ice"},
    /* Spaces and tabs separate; runs of them are one separator. */
    {"  a \t b  ", false, "a|b"},
    /* Quotes group and may sit inside a word; \" and \\ in them. */
    {"a \"b c\"d \"\" \"x\\\"y\\\\\"", false, "a|b cd||x\"y\\"},
    /* A backslash outside quotes, and $ * ; | ', are plain bytes. */
    {"a\\b $HOME *; | 'q'", false, "a\\b|$HOME|*;|||'q'"},
    /* Expansions never split a word, nor quote in it. */
    {"x%u%a -r=%r %%u 100%%", false, "xal icework|-r=o'brien|%u|100%"},
    /* Under the shell: one line, each value single-quoted. */
    {"procmail -d %u \"$X\" && echo %r", true,
	"/bin/sh|-c|procmail -d 'al ice' \"$X\" && echo 'o'\\''brien'"},
};

START_TEST(test_mda_argv)
{
	const struct argv_case *c = &argvs[_i];
	char got[512] = "", **argv, **p;
	const char *why = NULL;

	ck_assert_int_eq(mda_cmd_check(c->cmd, c->shell, &why), 0);
	argv = mda_argv(c->cmd, c->shell, &vars, &why);
	ck_assert_msg(argv != NULL, "%s: %s", c->cmd, why);
	for (p = argv; *p != NULL; p++) {
		if (p != argv)
			strcat(got, "|");
		strcat(got, *p);
	}
	ck_assert_str_eq(got, c->want);
	mda_argv_free(argv);
}
END_TEST

START_TEST(test_mda_argv_errors)
{
	static const char *const bad[] = {
	    "cat %x", "cat %", "cat %U", "cat \"open", "   ", "\t"};
	const char *why;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		why = NULL;
		ck_assert_msg(
		    mda_cmd_check(bad[i], false, &why) == -1, "%s", bad[i]);
		ck_assert_ptr_nonnull(why);
		ck_assert_ptr_null(mda_argv(bad[i], false, &vars, &why));
	}
	/* The shell takes an open quote (its problem), not a bad %x. */
	ck_assert_int_eq(mda_cmd_check("cat \"open", true, &why), 0);
	ck_assert_int_eq(mda_cmd_check("cat %x", true, &why), -1);
	ck_assert_int_eq(mda_cmd_check("  ", true, &why), -1);
}
END_TEST

START_TEST(test_mda_missing_values)
{
	struct mda_vars v = {.user = "bob"};
	char **argv = mda_argv("x %r %a%u", false, &v, &(const char *){0});

	/* %r falls back to the user; an unset value is empty, still a word. */
	ck_assert_ptr_nonnull(argv);
	ck_assert_str_eq(argv[1], "bob");
	ck_assert_str_eq(argv[2], "bob");
	mda_argv_free(argv);
	v.user = NULL;
	argv = mda_argv("x %u", false, &v, &(const char *){0});
	ck_assert_ptr_nonnull(argv);
	ck_assert_str_eq(argv[1], "");
	ck_assert_ptr_null(argv[2]);
	mda_argv_free(argv);
}
END_TEST

START_TEST(test_mda_verdicts)
{
	ck_assert_int_eq(mda_verdict_of(0), TARGET_DELIVERED);
	ck_assert_int_eq(mda_verdict_of(75 << 8), TARGET_TEMPFAIL);
	ck_assert_int_eq(mda_verdict_of(67 << 8), TARGET_PERMFAIL);
	ck_assert_int_eq(mda_verdict_of(1 << 8), TARGET_PERMFAIL);
	ck_assert_int_eq(mda_verdict_of(9), TARGET_TEMPFAIL);  /* SIGKILL */
	ck_assert_int_eq(mda_verdict_of(15), TARGET_TEMPFAIL); /* SIGTERM */
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("target");
	TCase *tc = tcase_create("core");

	tcase_add_loop_test(tc, test_encoder, 0, sizeof(encs) / sizeof(*encs));
	tcase_add_test(tc, test_encoder_every_split);
	tcase_add_test(tc, test_encoder_sink_error);
	tcase_add_test(tc, test_reply_lines);
	tcase_add_test(tc, test_verdicts);
	tcase_add_test(tc, test_message_id);
	tcase_add_loop_test(
	    tc, test_mda_argv, 0, sizeof(argvs) / sizeof(*argvs));
	tcase_add_test(tc, test_mda_argv_errors);
	tcase_add_test(tc, test_mda_missing_values);
	tcase_add_test(tc, test_mda_verdicts);
	suite_add_tcase(s, tc);
	return check_main(s);
}
