/* Tests for the header field reader behind --list. */
#include <check.h>
#include <string.h>

#include "msghdr.h"
#include "check_main.h"

static const char *
value(const char *hdr, const char *name)
{
	static char out[64];

	msghdr_value(hdr, strlen(hdr), name, out, sizeof(out));
	return out;
}

static const struct row {
	const char *hdr, *name, *want;
} rows[] = {
    {"From: a@b\r\nSubject: hi\r\n\r\n", "Subject", "hi"},
    {"From: a@b\r\nSubject: hi\r\n\r\n", "From", "a@b"},
    /* Names are case-insensitive; the first field of a name wins. */
    {"SUBJECT: one\nSubject: two\n", "subject", "one"},
    /* Leading blanks dropped, inner ones kept. */
    {"Subject: \t  a  b\n", "Subject", "a  b"},
    /* Folded lines are joined (RFC 5322 2.2.3), CRLF or LF. */
    {"Subject: a\r\n b\r\n\tc\r\nFrom: x\r\n", "Subject", "a b c"},
    {"Subject: a\n b\n", "Subject", "a b"},
    /* A prefix of another name is not that name. */
    {"Subject-Extra: no\nSubject: yes\n", "Subject", "yes"},
    {"Subj: no\n", "Subject", ""},
    /* A name without a colon right after it is not the field. */
    {"Subject : no\n", "Subject", ""},
    /* Missing field, empty block, empty value. */
    {"From: a\n", "Date", ""},
    {"", "From", ""},
    {"Subject:\n", "Subject", ""},
    /* The body is not searched. */
    {"From: a\n\nSubject: in the body\n", "Subject", ""},
    {"From: a\r\n\r\nSubject: in the body\r\n", "Subject", ""},
    /* Control characters (escape, bell, DEL) are shown, not passed. */
    {"Subject: \x1b[31mred\x07\x7f\n", "Subject", "?[31mred??"},
    /* No line end at the end of the block. */
    {"Subject: cut", "Subject", "cut"},
    {"Subject", "Subject", ""},
};

START_TEST(table)
{
	const struct row *r = &rows[_i];

	ck_assert_str_eq(value(r->hdr, r->name), r->want);
}
END_TEST

/* The value is cut to the room given, always terminated. */
START_TEST(cut_to_fit)
{
	const char *hdr = "Subject: 0123456789\n";
	char out[5] = "XXXX";
	char one[1] = "X";

	msghdr_value(hdr, strlen(hdr), "Subject", out, sizeof(out));
	ck_assert_str_eq(out, "0123");
	msghdr_value(hdr, strlen(hdr), "Subject", one, sizeof(one));
	ck_assert_str_eq(one, "");
}
END_TEST

/* Only LEN bytes are read: the block need not be NUL-terminated. */
START_TEST(reads_only_len)
{
	const char hdr[] = "Subject: abcdefgh";
	char out[64];

	msghdr_value(hdr, strlen("Subject: abc"), "Subject", out, sizeof(out));
	ck_assert_str_eq(out, "abc");
	msghdr_value(hdr, 5, "Subject", out, sizeof(out));
	ck_assert_str_eq(out, "");
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("msghdr");
	TCase *tc = tcase_create("value");

	tcase_add_loop_test(
	    tc, table, 0, (int)(sizeof(rows) / sizeof(rows[0])));
	tcase_add_test(tc, cut_to_fit);
	tcase_add_test(tc, reads_only_len);
	suite_add_tcase(s, tc);
	return check_main(s);
}
