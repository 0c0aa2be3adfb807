/*
 * Tests of daemon/loopstat.c: the meter is there only when the
 * environment asks for it, and the line it logs when freed (or at the end
 * of a window) reports what the loop went through: a callback that burns CPU
 * shows as a stall and as the loop's own CPU time; one that blocks shows as a
 * stall only. stderr, where log.c writes, goes to a file the test reads back.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "loopstat.h"
#include "monotime.h"
#include "check_main.h"

/* Ticks to see after a stall, so the stalled one is surely counted. */
#define TICKS_AFTER 5

/* The stall each test causes; well above the 10 ms line the meter draws. */
#define STALL_MS 40

static struct event_base *base;
static char logpath[64];
static int saved_stderr = -1;

static void
setup(void)
{
	int fd;

	snprintf(logpath, sizeof(logpath), "/tmp/test_loopstat.XXXXXX");
	ck_assert_int_ne(fd = mkstemp(logpath), -1);
	fflush(stderr);
	saved_stderr = dup(2);
	ck_assert_int_ne(dup2(fd, 2), -1);
	close(fd);
	unsetenv("JOURNAL_STREAM");
	log_init(0, false);
	ck_assert_ptr_nonnull(base = event_base_new());
}

static void
teardown(void)
{
	event_base_free(base);
	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	unlink(logpath);
}

/* What the test logged to stderr so far, NUL-terminated, in BUF. */
static void
read_log(char *buf, size_t len)
{
	ssize_t n;
	int fd;

	fflush(stderr);
	ck_assert_int_ne(fd = open(logpath, O_RDONLY), -1);
	n = read(fd, buf, len - 1);
	close(fd);
	ck_assert_int_ge(n, 0);
	buf[n] = '\0';
}

START_TEST(off_unless_asked_for)
{
	static const char *const no[] = {"0", "", "yes", "true", "11", " 1"};
	struct loopstat *ls;
	char buf[256];
	size_t i;

	unsetenv("POPFETCHD_LOOP_STATS");
	ck_assert_ptr_null(loopstat_new(base));
	for (i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		setenv("POPFETCHD_LOOP_STATS", no[i], 1);
		ck_assert_msg(loopstat_new(base) == NULL, "\"%s\"", no[i]);
	}
	/* Nothing to free, nothing said. */
	ls = NULL;
	loopstat_free(&ls);
	/* The base has no event of the meter's: the loop has nothing to do. */
	ck_assert_int_eq(event_base_loop(base, EVLOOP_NONBLOCK), 1);
	read_log(buf, sizeof(buf));
	ck_assert_str_eq(buf, "");
}
END_TEST

/* Freed before its first tick: nothing measured, nothing logged. */
START_TEST(no_line_without_a_tick)
{
	struct loopstat *ls;
	char buf[256];

	setenv("POPFETCHD_LOOP_STATS", "1", 1);
	ck_assert_ptr_nonnull(ls = loopstat_new(base));
	loopstat_free(&ls);
	ck_assert_ptr_null(ls);
	read_log(buf, sizeof(buf));
	ck_assert_str_eq(buf, "");
	ck_assert_int_eq(event_base_loop(base, EVLOOP_NONBLOCK), 1);
}
END_TEST

struct stall {
	bool burn;	     /* spin on the CPU, or sleep */
	struct event *self;  /* the stall's own timer */
	int slices;	     /* small burns still due before a sleep */
	struct event *after; /* counts the ticks that follow */
	int ticks_after;
};

/* Burns SECS of the thread's CPU time: a busy machine cannot shorten it. */
static void
burn(double secs)
{
	double t0 = monotime_of(CLOCK_THREAD_CPUTIME_ID);

	while (monotime_of(CLOCK_THREAD_CPUTIME_ID) - t0 < secs)
		;
}

static bool timed_out;

static void
guard_cb(evutil_socket_t fd, short what, void *arg)
{
	timed_out = true;
	event_base_loopbreak(base);
}

static void
after_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stall *st = arg;
	struct timeval tv = {0, LOOPSTAT_TICK_MS * 1000};

	if (++st->ticks_after >= TICKS_AFTER)
		event_base_loopbreak(base);
	else
		evtimer_add(st->after, &tv);
}

/*
 * Holds the loop for STALL_MS, then lets it run a few ticks more. A
 * sleeping stall comes after SLICES short burns on separate turns: CPU
 * time is counted per interval between ticks, not added up.
 */
static void
stall_cb(evutil_socket_t fd, short what, void *arg)
{
	struct stall *st = arg;
	struct timeval tv = {0, LOOPSTAT_TICK_MS * 1000};
	struct timespec ts = {0, STALL_MS * 1000000L};

	if (st->burn)
		burn(STALL_MS / 1e3);
	else if (st->slices-- > 0) {
		burn(STALL_MS / 1e3 / 8);
		evtimer_add(st->self, &tv);
		return;
	} else
		while (nanosleep(&ts, &ts) == -1)
			;
	evtimer_add(st->after, &tv);
}

/* Runs the loop with one stall, under a meter made before. */
static void
stall_once(bool burn_cpu)
{
	struct timeval start = {0, 10 * 1000}, bound = {5, 0};
	struct stall st = {.burn = burn_cpu, .slices = 16};
	struct event *stall, *guard;

	ck_assert_ptr_nonnull(stall = evtimer_new(base, stall_cb, &st));
	st.self = stall;
	ck_assert_ptr_nonnull(st.after = evtimer_new(base, after_cb, &st));
	/* The bound: a loop that never ends fails the test. */
	ck_assert_ptr_nonnull(guard = evtimer_new(base, guard_cb, NULL));
	evtimer_add(stall, &start);
	evtimer_add(guard, &bound);
	timed_out = false;
	ck_assert_int_eq(event_base_dispatch(base), 0);
	ck_assert(!timed_out);
	ck_assert_int_eq(st.ticks_after, TICKS_AFTER);
	event_free(guard);
	event_free(stall);
	event_free(st.after);
}

/* Runs the loop with one stall; returns the meter's fields. */
static void
run_with_stall(bool burn_cpu, unsigned long *ticks, double *stall_ms,
    unsigned long *over10, double *cpu_ms)
{
	struct loopstat *ls;
	char buf[1024], *line;
	double longest_cpu, longest_rq;

	setenv("POPFETCHD_LOOP_STATS", "1", 1);
	ck_assert_ptr_nonnull(ls = loopstat_new(base));
	stall_once(burn_cpu);
	loopstat_free(&ls);
	ck_assert_ptr_null(ls);
	read_log(buf, sizeof(buf));
	ck_assert_ptr_nonnull(line = strstr(buf, "loop ticks="));
	ck_assert_int_eq(
	    sscanf(line,
		"loop ticks=%lu max_stall_ms=%lf over_10ms=%lu max_cpu_ms=%lf longest_cpu_ms=%lf longest_runqueue_ms=%lf",
		ticks, stall_ms, over10, cpu_ms, &longest_cpu, &longest_rq),
	    6);
	/* The longest stall's parts fit in it (a tick of slack each). */
	ck_assert_double_le(
	    longest_cpu + longest_rq, *stall_ms + 2 * LOOPSTAT_TICK_MS);
	/*
	 * A burning stall holds its STALL_MS of CPU time however long a busy
	 * machine stretches it (the rest is waiting for a CPU); a sleeping
	 * one holds little CPU however short it is.
	 */
	if (burn_cpu)
		ck_assert_double_ge(
		    longest_cpu, STALL_MS - 2 * LOOPSTAT_TICK_MS);
	else
		ck_assert_double_lt(longest_cpu, *stall_ms / 2);
	/* One line, and only the meter's. */
	ck_assert_ptr_eq(line, buf);
	ck_assert_ptr_eq(strchr(buf, '\n'), buf + strlen(buf) - 1);
}

START_TEST(burning_callback_is_a_stall_and_cpu)
{
	unsigned long ticks, over10;
	double stall_ms, cpu_ms;

	run_with_stall(true, &ticks, &stall_ms, &over10, &cpu_ms);
	/* 10 ms before the stall, a few ticks after it. */
	ck_assert_uint_ge(ticks, TICKS_AFTER);
	ck_assert_uint_ge(over10, 1);
	ck_assert_double_ge(stall_ms, STALL_MS - 2 * LOOPSTAT_TICK_MS);
	ck_assert_double_ge(cpu_ms, STALL_MS);
}
END_TEST

START_TEST(blocked_callback_is_a_stall_not_cpu)
{
	unsigned long ticks, over10;
	double stall_ms, cpu_ms;

	run_with_stall(false, &ticks, &stall_ms, &over10, &cpu_ms);
	ck_assert_uint_ge(ticks, TICKS_AFTER);
	ck_assert_uint_ge(over10, 1);
	ck_assert_double_ge(stall_ms, STALL_MS - 2 * LOOPSTAT_TICK_MS);
	/*
	 * Sleeping costs the thread no CPU time, and the slices burnt before
	 * (twice the stall, all told) count one at a time.
	 */
	ck_assert_double_lt(cpu_ms, STALL_MS / 2.0);
}
END_TEST

/*
 * A window reports what happened since the one before and starts afresh;
 * the line at the end still covers the whole run.
 */
START_TEST(window_reports_and_starts_again)
{
	static const char second[] =
	    "loop window=second ticks=0 max_stall_ms=0.0 over_10ms=0 max_cpu_ms=0.0\n";
	unsigned long ticks, over10, all_ticks, all_over10;
	double stall_ms, cpu_ms, all_stall, all_cpu;
	struct loopstat *ls;
	char buf[1024], *line;

	setenv("POPFETCHD_LOOP_STATS", "1", 1);
	ck_assert_ptr_nonnull(ls = loopstat_new(base));
	stall_once(true);
	loopstat_window(ls, "first");
	loopstat_window(ls, "second");
	loopstat_free(&ls);
	read_log(buf, sizeof(buf));
	ck_assert_int_eq(
	    sscanf(buf,
		"loop window=first ticks=%lu max_stall_ms=%lf over_10ms=%lu max_cpu_ms=%lf",
		&ticks, &stall_ms, &over10, &cpu_ms),
	    4);
	ck_assert_uint_ge(ticks, TICKS_AFTER);
	ck_assert_double_ge(stall_ms, STALL_MS - 2 * LOOPSTAT_TICK_MS);
	/* Nothing ran between the two windows. */
	ck_assert_ptr_nonnull(line = strstr(buf, "\nloop window=second "));
	ck_assert(strncmp(line + 1, second, strlen(second)) == 0);
	ck_assert_ptr_nonnull(line = strstr(buf, "\nloop ticks="));
	ck_assert_int_eq(
	    sscanf(line + 1,
		"loop ticks=%lu max_stall_ms=%lf over_10ms=%lu max_cpu_ms=%lf",
		&all_ticks, &all_stall, &all_over10, &all_cpu),
	    4);
	ck_assert_uint_eq(all_ticks, ticks);
	ck_assert_uint_eq(all_over10, over10);
	ck_assert_double_eq_tol(all_stall, stall_ms, 0.05);
}
END_TEST

/* At the highest priority, where the base has priorities. */
START_TEST(meter_works_on_a_base_with_priorities)
{
	unsigned long ticks, over10;
	double stall_ms, cpu_ms;

	event_base_free(base);
	ck_assert_ptr_nonnull(base = event_base_new());
	ck_assert_int_eq(event_base_priority_init(base, 3), 0);
	run_with_stall(true, &ticks, &stall_ms, &over10, &cpu_ms);
	ck_assert_uint_ge(ticks, TICKS_AFTER);
	ck_assert_double_ge(stall_ms, STALL_MS - 2 * LOOPSTAT_TICK_MS);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("loopstat");
	TCase *tc = tcase_create("meter");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, off_unless_asked_for);
	tcase_add_test(tc, no_line_without_a_tick);
	tcase_add_test(tc, burning_callback_is_a_stall_and_cpu);
	tcase_add_test(tc, blocked_callback_is_a_stall_not_cpu);
	tcase_add_test(tc, meter_works_on_a_base_with_priorities);
	tcase_add_test(tc, window_reports_and_starts_again);
	suite_add_tcase(s, tc);

	return check_main(s);
}
