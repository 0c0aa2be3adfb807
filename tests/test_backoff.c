/*
 * Table tests for the scheduler's policy: the delay after each class of
 * ending and streak (its bounds under jitter and its cap), the spread of
 * a retry after a reload, LOGIN-DELAY as a floor, the order of the
 * classes, and the --once exit status of each.
 */
#include <check.h>
#include <limits.h>
#include <stdbool.h>
#include <sysexits.h>

#include "backoff.h"
#include "check_main.h"

#define HOUR 3600.0

/* The random draws each delay is tried with, the extremes included. */
static const double draws[] = {0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0};
#define NDRAWS (sizeof(draws) / sizeof(draws[0]))

enum shape {
	JITTERED, /* BASE, give or take 10 % */
	SPREAD,	  /* anywhere from 0 to BASE: a first poll */
	NEVER,	  /* -1: not until a reload */
};

struct delay_row {
	enum session_class cls;
	unsigned interval, streak;
	bool reloaded;
	enum shape shape;
	double base;
};

static const struct delay_row delay_rows[] = {
    /* Success, a busy server, a full disk: the interval, any streak. */
    {SC_OK, 300, 1, false, JITTERED, 300},
    {SC_OK, 300, 7, false, JITTERED, 300},
    {SC_OK, 300, 1, true, JITTERED, 300},
    {SC_BUSY, 300, 5, false, JITTERED, 300},
    {SC_LOCAL, 300, 9, false, JITTERED, 300},
    {SC_LOCAL, 86400, 2, false, JITTERED, 86400},
    /* Network and protocol errors: doubling from the interval to 1 h. */
    {SC_NET, 300, 0, false, JITTERED, 300},
    {SC_NET, 300, 1, false, JITTERED, 300},
    {SC_NET, 300, 2, false, JITTERED, 600},
    {SC_NET, 300, 3, false, JITTERED, 1200},
    {SC_NET, 300, 4, false, JITTERED, 2400},
    {SC_NET, 300, 5, false, JITTERED, HOUR},
    {SC_NET, 300, 6, false, JITTERED, HOUR},
    {SC_NET, 300, UINT_MAX, false, JITTERED, HOUR},
    {SC_NET, 10, 9, false, JITTERED, 2560},
    {SC_NET, 10, 10, false, JITTERED, HOUR},
    {SC_PROTO, 300, 1, false, JITTERED, 300},
    {SC_PROTO, 300, 3, false, JITTERED, 1200},
    {SC_PROTO, 300, 40, false, JITTERED, HOUR},
    /* A reload does not reset a network back-off. */
    {SC_NET, 300, 2, true, JITTERED, 600},
    /* An interval above the cap: the interval is the cap. */
    {SC_NET, 5000, 1, false, JITTERED, 5000},
    {SC_NET, 5000, 4, false, JITTERED, 5000},
    {SC_PROTO, 86400, 2, false, JITTERED, 86400},
    /* Authentication refused: from 1 h, doubling to 6 h. */
    {SC_AUTH, 300, 0, false, JITTERED, HOUR},
    {SC_AUTH, 300, 1, false, JITTERED, HOUR},
    {SC_AUTH, 300, 2, false, JITTERED, 2 * HOUR},
    {SC_AUTH, 300, 3, false, JITTERED, 4 * HOUR},
    {SC_AUTH, 300, 4, false, JITTERED, 6 * HOUR},
    {SC_AUTH, 300, 5, false, JITTERED, 6 * HOUR},
    {SC_AUTH, 300, 1000, false, JITTERED, 6 * HOUR},
    {SC_AUTH, 10, 1, false, JITTERED, HOUR},
    {SC_AUTH, 5000, 1, false, JITTERED, 5000},
    {SC_AUTH, 5000, 2, false, JITTERED, 10000},
    {SC_AUTH, 5000, 3, false, JITTERED, 20000},
    {SC_AUTH, 5000, 4, false, JITTERED, 6 * HOUR},
    {SC_AUTH, 86400, 1, false, JITTERED, 86400},
    {SC_AUTH, 86400, 3, false, JITTERED, 86400},
    /* Settings changed: a refused login is tried again soon. */
    {SC_AUTH, 300, 4, true, SPREAD, 30},
    {SC_AUTH, 10, 1, true, SPREAD, 10},
    /* A configuration error waits for a reload, then goes soon. */
    {SC_CONFIG, 300, 1, false, NEVER, 0},
    {SC_CONFIG, 300, 5, false, NEVER, 0},
    {SC_CONFIG, 300, 1, true, SPREAD, 30},
    {SC_CONFIG, 20, 1, true, SPREAD, 20},
};

START_TEST(delay_table)
{
	const struct delay_row *row = &delay_rows[_i];
	double got, prev = -1;
	size_t i;

	for (i = 0; i < NDRAWS; i++) {
		got = backoff_next(row->cls, row->interval, row->streak,
		    row->reloaded, draws[i]);
		switch (row->shape) {
		case JITTERED:
			ck_assert_double_ge_tol(got, 0.9 * row->base, 1e-6);
			ck_assert_double_le_tol(got, 1.1 * row->base, 1e-6);
			break;
		case SPREAD:
			ck_assert_double_ge(got, 0);
			ck_assert_double_le_tol(got, row->base, 1e-6);
			break;
		case NEVER:
			ck_assert_double_eq(got, -1);
			continue;
		}
		/* The draw moves the delay one way only. */
		ck_assert_double_ge(got, prev);
		prev = got;
	}
	/* The bounds are reached: the whole range is used. */
	got = backoff_next(
	    row->cls, row->interval, row->streak, row->reloaded, 0.0);
	if (row->shape == JITTERED)
		ck_assert_double_eq_tol(got, 0.9 * row->base, 1e-6);
	else if (row->shape == SPREAD)
		ck_assert_double_eq_tol(got, 0, 1e-9);
	got = backoff_next(
	    row->cls, row->interval, row->streak, row->reloaded, 1.0);
	if (row->shape == JITTERED)
		ck_assert_double_eq_tol(got, 1.1 * row->base, 1e-6);
	else if (row->shape == SPREAD)
		ck_assert_double_eq_tol(got, row->base, 1e-6);
	/* The middle draw gives the delay itself. */
	got = backoff_next(
	    row->cls, row->interval, row->streak, row->reloaded, 0.5);
	if (row->shape == JITTERED)
		ck_assert_double_eq_tol(got, row->base, 1e-6);
}
END_TEST

START_TEST(same_draw_same_delay)
{
	enum session_class cls;
	unsigned streak;

	for (cls = SC_OK; cls < SC_COUNT; cls++)
		for (streak = 1; streak < 12; streak++)
			ck_assert_double_eq(
			    backoff_next(cls, 120, streak, false, 0.37),
			    backoff_next(cls, 120, streak, false, 0.37));
}
END_TEST

START_TEST(jitter_and_first)
{
	ck_assert_double_eq_tol(backoff_jitter(100, 0), 90, 1e-9);
	ck_assert_double_eq_tol(backoff_jitter(100, 0.5), 100, 1e-9);
	ck_assert_double_eq_tol(backoff_jitter(100, 1), 110, 1e-9);
	/* First polls: within the interval, and never more than 30 s out. */
	ck_assert_double_eq(backoff_first(300, 0), 0);
	ck_assert_double_eq_tol(backoff_first(300, 0.5), 15, 1e-9);
	ck_assert_double_eq_tol(backoff_first(300, 1), 30, 1e-9);
	ck_assert_double_eq_tol(backoff_first(10, 1), 10, 1e-9);
	ck_assert_double_eq_tol(backoff_first(30, 1), 30, 1e-9);
}
END_TEST

/* LOGIN-DELAY: the seconds left of it, counted from the last start. */
static const struct {
	long delay;
	double started, now, wait;
} login_rows[] = {
    {-1, 100, 150, 0}, /* the server announced none */
    {0, 100, 150, 0},  /* or none worth waiting for */
    {300, 0, 150, 0},  /* never logged in */
    {300, 100, 100, 300},
    {300, 100, 150, 250},
    {300, 100, 399.5, 0.5},
    {300, 100, 400, 0},
    {300, 100, 5000, 0},
};

START_TEST(login_wait_table)
{
	ck_assert_double_eq_tol(backoff_login_wait(login_rows[_i].delay,
				    login_rows[_i].started, login_rows[_i].now),
	    login_rows[_i].wait, 1e-9);
}
END_TEST

START_TEST(login_delay_is_a_floor)
{
	double wait = backoff_login_wait(900, 1000, 1000);

	/* A shorter delay waits for the server... */
	ck_assert_double_eq(backoff_not_before(60, wait), 900);
	ck_assert_double_eq(backoff_not_before(0, wait), 900);
	/* ...a longer one is kept, and so is "not scheduled". */
	ck_assert_double_eq(backoff_not_before(3600, wait), 3600);
	ck_assert_double_eq(backoff_not_before(900, wait), 900);
	ck_assert_double_eq(backoff_not_before(-1, wait), -1);
	/* No delay asked for: the schedule stands. */
	ck_assert_double_eq(backoff_not_before(60, 0), 60);
	ck_assert_double_eq(backoff_not_before(0, 0), 0);
	/* After a successful poll every 60 s, the server's 900 s win. */
	ck_assert_double_eq(
	    backoff_not_before(backoff_next(SC_OK, 60, 1, false, 1.0),
		backoff_login_wait(900, 1000, 1001)),
	    899);
}
END_TEST

START_TEST(exit_status_per_class)
{
	static const struct {
		enum session_class cls;
		int status;
		const char *name;
	} rows[] = {
	    {SC_OK, EX_OK, "ok"},
	    {SC_NET, EX_TEMPFAIL, "network"},
	    {SC_BUSY, EX_TEMPFAIL, "busy"},
	    {SC_PROTO, EX_TEMPFAIL, "protocol"},
	    {SC_AUTH, EX_NOPERM, "auth"},
	    {SC_LOCAL, EX_IOERR, "local"},
	    {SC_CONFIG, EX_CONFIG, "config"},
	};
	size_t i;

	ck_assert_uint_eq(sizeof(rows) / sizeof(rows[0]), SC_COUNT);
	for (i = 0; i < SC_COUNT; i++) {
		ck_assert_int_eq(rows[i].cls, (enum session_class)i);
		ck_assert_int_eq(
		    backoff_exit_status(rows[i].cls), rows[i].status);
		ck_assert_str_eq(backoff_class_name(rows[i].cls), rows[i].name);
	}
	/* The numbers DESIGN.md promises for --once. */
	ck_assert_int_eq(backoff_exit_status(SC_NET), 75);
	ck_assert_int_eq(backoff_exit_status(SC_AUTH), 77);
	ck_assert_int_eq(backoff_exit_status(SC_LOCAL), 74);
	ck_assert_int_eq(backoff_exit_status(SC_CONFIG), 78);
	ck_assert_str_eq(backoff_class_name(SC_COUNT), "?");
}
END_TEST

START_TEST(worst_class)
{
	/* From least to most serious; the middle three are one rank. */
	static const enum session_class rank[][3] = {
	    {SC_OK, SC_OK, SC_OK},
	    {SC_NET, SC_BUSY, SC_PROTO},
	    {SC_AUTH, SC_AUTH, SC_AUTH},
	    {SC_LOCAL, SC_LOCAL, SC_LOCAL},
	    {SC_CONFIG, SC_CONFIG, SC_CONFIG},
	};
	size_t n = sizeof(rank) / sizeof(rank[0]), i, j, k, l;
	enum session_class a, b;

	for (i = 0; i < n; i++)
		for (j = 0; j < n; j++)
			for (k = 0; k < 3; k++)
				for (l = 0; l < 3; l++) {
					a = rank[i][k];
					b = rank[j][l];
					/* Ties keep the first seen. */
					ck_assert_int_eq(
					    backoff_worst(a, b), j > i ? b : a);
				}
	/* An abandoned run is at least a temporary failure. */
	ck_assert_int_eq(
	    backoff_exit_status(backoff_worst(SC_OK, SC_NET)), EX_TEMPFAIL);
	ck_assert_int_eq(
	    backoff_exit_status(backoff_worst(SC_AUTH, SC_NET)), EX_NOPERM);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("backoff");
	TCase *delay = tcase_create("delay");
	TCase *login = tcase_create("login_delay");
	TCase *status = tcase_create("status");

	tcase_add_loop_test(
	    delay, delay_table, 0, sizeof(delay_rows) / sizeof(delay_rows[0]));
	tcase_add_test(delay, same_draw_same_delay);
	tcase_add_test(delay, jitter_and_first);
	suite_add_tcase(s, delay);

	tcase_add_loop_test(login, login_wait_table, 0,
	    sizeof(login_rows) / sizeof(login_rows[0]));
	tcase_add_test(login, login_delay_is_a_floor);
	suite_add_tcase(s, login);

	tcase_add_test(status, exit_status_per_class);
	tcase_add_test(status, worst_class);
	suite_add_tcase(s, status);

	return check_main(s);
}
