/*
 * Tests of daemon/folder.c: Maildir++ folder names as configured, turned
 * into the directory names Dovecot reads (modified UTF-7 for what is not
 * printable ASCII, "&-" for '&'), and every shape the rules refuse.
 */
#include <check.h>
#include <limits.h>
#include <string.h>

#include "folder.h"
#include "check_main.h"

struct good {
	const char *name, *dir;
};

/*
 * Expected encodings worked out by hand from RFC 3501 5.1.3 (UTF-16,
 * base64 with ',' for '/', no padding, '-' closes a shifted run).
 */
static const struct good goods[] = {
    {".Lists", ".Lists"},
    {".Lists.Debian", ".Lists.Debian"},
    {".a b~c!", ".a b~c!"},
    {".R&D", ".R&-D"},
    {".&", ".&-"},
    {".Entwürfe", ".Entw&APw-rfe"}, /* U+00FC */
    {".日本語", ".&ZeVnLIqe-"},	    /* U+65E5 U+672C U+8A9E */
    {".Привет.Мир", ".&BB8EQAQ4BDIENQRC-.&BBwEOARA-"}, /* two levels */
    {".x😀", ".x&2D3eAA-"}, /* U+1F600, a surrogate pair */
    {".é&é", ".&AOk-&-&AOk-"},
};

struct bad {
	const char *name, *why_has;
};

static const struct bad bads[] = {
    {"", "starts with a dot"},
    {"Lists", "starts with a dot"},
    {".", "the Maildir itself"},
    {"..Lists", "empty level"},
    {".Lists..Debian", "empty level"},
    {".Lists.", "empty level"},
    {".a/b", "'/'"},
    {"./..", "empty level"},
    {".tab\there", "control"},
    {".del\x7f", "control"},
    {".bad\xff", "UTF-8"},
    {".cut\xc3", "UTF-8"},
    {".overlong\xc0\xaf", "UTF-8"},
    {".surrogate\xed\xa0\x80", "UTF-8"},
    {".toobig\xf4\x90\x80\x80", "UTF-8"},
};

START_TEST(test_encodes)
{
	const struct good *g = &goods[_i];
	char dir[FOLDER_DIR_SIZE];
	const char *why = NULL;

	ck_assert_int_eq(folder_encode(g->name, dir, sizeof(dir), &why), 0);
	ck_assert_str_eq(dir, g->dir);
	ck_assert_ptr_null(why);
}
END_TEST

START_TEST(test_refuses)
{
	const struct bad *b = &bads[_i];
	char dir[FOLDER_DIR_SIZE];
	const char *why = NULL;

	ck_assert_int_eq(folder_encode(b->name, dir, sizeof(dir), &why), -1);
	ck_assert_ptr_nonnull(why);
	ck_assert_msg(
	    strstr(why, b->why_has) != NULL, "%s: \"%s\"", b->name, why);
	ck_assert_str_eq(dir, "");
}
END_TEST

/* NAME_MAX bytes of directory name fit; one more does not. */
START_TEST(test_length_limit)
{
	char name[NAME_MAX + 2], dir[FOLDER_DIR_SIZE];
	const char *why;

	name[0] = '.';
	memset(name + 1, 'a', NAME_MAX - 1);
	name[NAME_MAX] = '\0';
	ck_assert_int_eq(folder_encode(name, dir, sizeof(dir), &why), 0);
	ck_assert_uint_eq(strlen(dir), NAME_MAX);
	name[NAME_MAX] = 'a';
	name[NAME_MAX + 1] = '\0';
	ck_assert_int_eq(folder_encode(name, dir, sizeof(dir), &why), -1);
	ck_assert_str_eq(why, "the folder name is too long");
	/* Growth by encoding counts: 100 "&" are 200 bytes, 130 are 260. */
	memset(name + 1, '&', 130);
	name[131] = '\0';
	ck_assert_int_eq(folder_encode(name, dir, sizeof(dir), &why), -1);
	name[101] = '\0';
	ck_assert_int_eq(folder_encode(name, dir, sizeof(dir), &why), 0);
	ck_assert_uint_eq(strlen(dir), 201);
}
END_TEST

/* A buffer too small is "too long", never an overflow. */
START_TEST(test_small_buffer)
{
	char dir[8];
	const char *why;

	ck_assert_int_eq(folder_encode(".1234567", dir, sizeof(dir), &why), -1);
	ck_assert_str_eq(dir, "");
	ck_assert_int_eq(folder_encode(".123456", dir, sizeof(dir), &why), 0);
	ck_assert_str_eq(dir, ".123456");
	ck_assert_int_eq(folder_encode(".ü", dir, 4, NULL), -1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("folder");
	TCase *tc = tcase_create("core");

	tcase_add_loop_test(
	    tc, test_encodes, 0, sizeof(goods) / sizeof(*goods));
	tcase_add_loop_test(tc, test_refuses, 0, sizeof(bads) / sizeof(*bads));
	tcase_add_test(tc, test_length_limit);
	tcase_add_test(tc, test_small_buffer);
	suite_add_tcase(s, tc);
	return check_main(s);
}
