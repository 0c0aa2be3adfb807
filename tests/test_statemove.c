/*
 * Tests of moving an account's state (state_export(), state_import() in
 * daemon/state.c): the round trip keeps delivered UIDs, first-seen
 * times, sizes and strikes; an exported state is refused to polls here
 * until imported back, and can be exported again; an import is checked
 * strictly (another mailbox, a newer format, a cut or damaged journal,
 * pending deliveries, nothing at all) and changes nothing when refused;
 * a state in use here is not replaced; the lock is honoured.
 */
#include <sys/stat.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "state.h"
#include "check_main.h"
#include "check_util.h"

#define HOST "pop.example.com"
#define USER "alice"
#define PORT 995
#define ACCT "work"

static char tmpdir[1024];
static char from[2048], to[2048], journal[2048];

static void
setup(void)
{
	check_tmpdir(tmpdir, sizeof(tmpdir), "test_statemove");
	snprintf(from, sizeof(from), "%s/from", tmpdir);
	snprintf(to, sizeof(to), "%s/to", tmpdir);
	snprintf(journal, sizeof(journal), "%s/journal", tmpdir);
}

static void
teardown(void)
{
	check_rm_rf(tmpdir);
}

static struct state *
open_in(const char *dir, char *err, size_t errlen)
{
	return state_open_mailbox(dir, ACCT, HOST, PORT, USER, err, errlen);
}

/* A state in DIR with three UIDs (one sized) and a strike, committed. */
static void
fill(const char *dir)
{
	char err[512];
	struct state *st = open_in(dir, err, sizeof(err));

	ck_assert_msg(st != NULL, "%s", err);
	ck_assert_int_eq(state_record(st, "a1", 100), 0);
	ck_assert_int_eq(state_record_size(st, "b2", 200, 4242), 0);
	ck_assert_int_eq(state_record(st, "c3", 300), 0);
	ck_assert_int_eq(state_strike(st, "d4", 400), 1);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
}

/* state_export() of DIR into the journal file; its return. */
static int
export_to_file(const char *dir, size_t *count, char *err, size_t errlen)
{
	int fd = open(journal, O_WRONLY | O_CREAT | O_TRUNC, 0600), rc;

	ck_assert_int_ne(fd, -1);
	rc = state_export(dir, ACCT, HOST, PORT, USER, fd, count, err, errlen);
	close(fd);
	return rc;
}

/* state_import() into DIR of the journal file; its return. */
static int
import_from_file(const char *dir, size_t *count, char *err, size_t errlen)
{
	int fd = open(journal, O_RDONLY), rc;

	ck_assert_int_ne(fd, -1);
	rc = state_import(dir, ACCT, HOST, PORT, USER, fd, count, err, errlen);
	close(fd);
	return rc;
}

/* The journal file holds TEXT. */
static void
journal_is(const char *text)
{
	check_write_file(journal, text, strlen(text), 0600);
}

START_TEST(test_round_trip)
{
	char err[512];
	struct state *st;
	uint64_t size;
	time_t when;
	size_t n = 0;

	fill(from);
	ck_assert_msg(
	    export_to_file(from, &n, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(n, 3);
	ck_assert_msg(
	    import_from_file(to, &n, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(n, 3);
	st = open_in(to, err, sizeof(err));
	ck_assert_msg(st != NULL, "%s", err);
	ck_assert_uint_eq(state_count(st), 3);
	ck_assert(state_has(st, "a1", &when));
	ck_assert_int_eq(when, 100);
	ck_assert(state_has(st, "c3", &when));
	ck_assert_int_eq(when, 300);
	ck_assert(state_size(st, "b2", &size));
	ck_assert_uint_eq(size, 4242);
	ck_assert(!state_size(st, "a1", NULL));
	ck_assert(!state_has(st, "d4", NULL));
	ck_assert_uint_eq(state_strikes(st, "d4", &when), 1);
	ck_assert_int_eq(when, 400);
	state_close(&st);
}
END_TEST

/* Exported: polls here are refused; exporting again works; importing back ends
 * it. */
START_TEST(test_exported_is_not_polled_here)
{
	char err[512];
	struct state *st;
	size_t n = 0;

	fill(from);
	ck_assert_int_eq(export_to_file(from, &n, err, sizeof(err)), 0);
	errno = 0;
	ck_assert_ptr_null(open_in(from, err, sizeof(err)));
	ck_assert_int_eq(errno, EXDEV);
	ck_assert_ptr_nonnull(strstr(err, "--import-state " ACCT));
	ck_assert_int_eq(export_to_file(from, &n, err, sizeof(err)), 0);
	ck_assert_uint_eq(n, 3);
	/* Back where it came from: polled here again, nothing lost. */
	ck_assert_msg(
	    import_from_file(from, &n, err, sizeof(err)) == 0, "%s", err);
	st = open_in(from, err, sizeof(err));
	ck_assert_msg(st != NULL, "%s", err);
	ck_assert_uint_eq(state_count(st), 3);
	state_close(&st);
}
END_TEST

/* Each bad journal is refused, and the state it was meant for stays as it was.
 */
START_TEST(test_bad_journals_refused)
{
	static const char *const bad[] = {
	    "",
	    "no header\n+ 1 a\n",
	    "popfetchd-state 1 other.example.com alice 995\n+ 1 zz\n",
	    "popfetchd-state 1 pop.example.com bob 995\n+ 1 zz\n",
	    "popfetchd-state 1 pop.example.com alice 2000\n+ 1 zz\n",
	    "popfetchd-state 9 pop.example.com alice 995\n+ 1 zz\n",
	    "popfetchd-state 1 pop.example.com alice 995\n+ 1 zz\n+ 2 y",
	    "popfetchd-state 1 pop.example.com alice 995\n+ 1 zz\n+ x y\n",
	    "popfetchd-state 1 pop.example.com alice 995\n> 1 zz t f\n",
	    "popfetchd-state 1 pop.example.com alice 995\n+ 1 z\001z\n",
	};
	char err[512];
	struct state *st;
	size_t i, n;

	fill(from);
	ck_assert_int_eq(export_to_file(from, &n, err, sizeof(err)), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		journal_is(bad[i]);
		err[0] = '\0';
		ck_assert_msg(
		    import_from_file(from, &n, err, sizeof(err)) == -1,
		    "journal %zu taken", i);
		ck_assert_msg(strstr(err, ACCT) != NULL,
		    "journal %zu: no account in \"%s\"", i, err);
		/* Still exported: nothing changed. */
		ck_assert_ptr_null(open_in(from, err, sizeof(err)));
		ck_assert_int_eq(errno, EXDEV);
	}
	/* A good one is still taken after all that. */
	ck_assert_int_eq(export_to_file(from, &n, err, sizeof(err)), 0);
	ck_assert_int_eq(import_from_file(from, &n, err, sizeof(err)), 0);
	st = open_in(from, err, sizeof(err));
	ck_assert_msg(st != NULL, "%s", err);
	ck_assert_uint_eq(state_count(st), 3);
	state_close(&st);
}
END_TEST

/* A state in use here is not replaced; an empty one is. */
START_TEST(test_live_state_not_replaced)
{
	char err[512];
	struct state *st;
	size_t n;

	fill(from);
	ck_assert_int_eq(export_to_file(from, &n, err, sizeof(err)), 0);
	st = open_in(to, err, sizeof(err));
	ck_assert_int_eq(state_record(st, "mine", 1), 0);
	ck_assert_int_eq(state_commit(st), 0);
	state_close(&st);
	errno = 0;
	ck_assert_int_eq(import_from_file(to, &n, err, sizeof(err)), -1);
	ck_assert_int_eq(errno, EEXIST);
	st = open_in(to, err, sizeof(err));
	ck_assert_uint_eq(state_count(st), 1);
	ck_assert(state_has(st, "mine", NULL));
	state_close(&st);
}
END_TEST

/* Pending deliveries are completed here first; the lock is honoured. */
START_TEST(test_pending_and_locked_refused)
{
	char err[512];
	struct state *st;
	size_t n;

	st = open_in(from, err, sizeof(err));
	ck_assert_int_eq(state_record_pending(st, "p", 1, "tmp1", "final1"), 0);
	ck_assert_int_eq(state_commit(st), 0);
	errno = 0;
	ck_assert_int_eq(export_to_file(from, &n, err, sizeof(err)), -1);
	ck_assert_int_eq(errno, EWOULDBLOCK);
	state_close(&st);
	errno = 0;
	ck_assert_int_eq(export_to_file(from, &n, err, sizeof(err)), -1);
	ck_assert_int_eq(errno, EBUSY);
	/* Nothing marked: still polled here. */
	st = open_in(from, err, sizeof(err));
	ck_assert_msg(st != NULL, "%s", err);
	state_close(&st);
}
END_TEST

static Suite *
statemove_suite(void)
{
	Suite *s = suite_create("statemove");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_exported_is_not_polled_here);
	tcase_add_test(tc, test_bad_journals_refused);
	tcase_add_test(tc, test_live_state_not_replaced);
	tcase_add_test(tc, test_pending_and_locked_refused);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_main(statemove_suite());
}
