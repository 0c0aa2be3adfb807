/*
 * Tests of daemon/progress.c: the units, the rate and the time left, one
 * line's layout, width and escaping, when the display is wanted, and the
 * display itself on a pseudo-terminal: frames redrawn in place, taken off
 * before a log line and at the end, cut to the terminal's size.
 */
#include <sys/ioctl.h>

#include <check.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "monotime.h"
#include "progress.h"
#include "check_main.h"

#define MiB (1024.0 * 1024.0)
/* Seconds a test waits for a frame: many ticks of the display. */
#define WAIT_SECS 10

static void
assert_printable(const char *s)
{
	for (; *s != '\0'; s++)
		ck_assert_msg(isprint((unsigned char)*s) && isascii(*s),
		    "byte 0x%02x in a line", (unsigned char)*s);
}

START_TEST(bytes_units)
{
	static const struct {
		uint64_t n;
		const char *want;
	} cases[] = {
	    {0, "0 B"},
	    {1023, "1023 B"},
	    {1024, "1.00 KiB"},
	    {1536, "1.50 KiB"},
	    {10 * 1024, "10.0 KiB"},
	    {10238, "10.0 KiB"}, /* 9.998 rounds up a digit */
	    {100u << 20, "100 MiB"},
	    {(3u << 30) / 2, "1.50 GiB"},
	    {5ull << 40, "5.00 TiB"},
	};
	char buf[32];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		progress_bytes(buf, sizeof(buf), cases[i].n);
		ck_assert_str_eq(buf, cases[i].want);
	}
	/* The largest count still fits, in the largest unit. */
	progress_bytes(buf, sizeof(buf), UINT64_MAX);
	ck_assert_str_eq(buf, "16777216 TiB");
}
END_TEST

START_TEST(eta_forms)
{
	static const struct {
		double secs;
		const char *want;
	} cases[] = {
	    {0, "0:00"},
	    {7.4, "0:07"},
	    {59.6, "1:00"},
	    {754, "12:34"},
	    {3 * 3600 + 5 * 60 + 9, "3:05:09"},
	    {-1, "?"},
	    {100 * 3600.0, "?"},
	};
	char buf[32];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		progress_eta(buf, sizeof(buf), cases[i].secs);
		ck_assert_str_eq(buf, cases[i].want);
	}
	progress_eta(buf, sizeof(buf), NAN);
	ck_assert_str_eq(buf, "?");
}
END_TEST

START_TEST(meter_rate)
{
	struct progress_meter m = {0};
	double r;

	progress_meter_add(&m, 0, 100.0);
	ck_assert(m.rate < 0); /* one sample says nothing */
	progress_meter_add(&m, 1u << 20, 101.0);
	ck_assert_double_eq_tol(m.rate, MiB, 1e-6);
	/* A steady rate stays what it is. */
	progress_meter_add(&m, 2u << 20, 102.0);
	ck_assert_double_eq_tol(m.rate, MiB, 1e-6);
	/* A faster second moves it towards the new rate, not all the way. */
	progress_meter_add(&m, 5u << 20, 103.0);
	r = m.rate;
	ck_assert(r > MiB && r < 3 * MiB);
	/* No time passed: nothing to learn. */
	progress_meter_add(&m, 6u << 20, 103.0);
	ck_assert_double_eq(m.rate, r);
	/* Fewer bytes than before is another poll: measured afresh. */
	progress_meter_add(&m, 10, 104.0);
	ck_assert(m.rate < 0);
	ck_assert_uint_eq(m.bytes, 10);
}
END_TEST

START_TEST(format_fetch)
{
	struct session_progress sp = {.phase = SESSION_PH_FETCH,
	    .done = 12,
	    .total = 500,
	    .bytes = 10u << 20,
	    .total_bytes = 100u << 20};
	char buf[256], want[256];
	size_t n;

	n = progress_format(buf, sizeof(buf), "work", &sp, MiB, 200);
	snprintf(want, sizeof(want), "%-24s %s", "work",
	    "fetching: 12/500 msgs, 10.0 MiB/100 MiB, 1.00 MiB/s, 1:30 left");
	ck_assert_str_eq(buf, want);
	ck_assert_uint_eq(n, strlen(want));
	/* No rate yet: no time left either. */
	progress_format(buf, sizeof(buf), "work", &sp, -1, 200);
	ck_assert_ptr_nonnull(strstr(buf, ", ?/s, ? left"));
	/* A stalled transfer has no end in sight. */
	progress_format(buf, sizeof(buf), "work", &sp, 0, 200);
	ck_assert_ptr_nonnull(strstr(buf, ", 0 B/s, ? left"));
}
END_TEST

START_TEST(format_phases)
{
	struct session_progress sp = {.phase = SESSION_PH_LOGIN};
	char buf[256], want[256];

	progress_format(buf, sizeof(buf), "home", &sp, -1, 200);
	snprintf(want, sizeof(want), "%-24s logging in", "home");
	ck_assert_str_eq(buf, want);
	sp.phase = SESSION_PH_LISTING;
	progress_format(buf, sizeof(buf), "home", &sp, -1, 200);
	snprintf(want, sizeof(want), "%-24s listing", "home");
	ck_assert_str_eq(buf, want);
	sp = (struct session_progress){
	    .phase = SESSION_PH_TOP, .done = 3, .total = 40};
	progress_format(buf, sizeof(buf), "home", &sp, -1, 200);
	snprintf(
	    want, sizeof(want), "%-24s reading headers: 3/40 msgs", "home");
	ck_assert_str_eq(buf, want);
	sp.phase = SESSION_PH_END;
	progress_format(buf, sizeof(buf), "home", &sp, -1, 200);
	snprintf(want, sizeof(want), "%-24s finishing", "home");
	ck_assert_str_eq(buf, want);
}
END_TEST

START_TEST(format_width)
{
	struct session_progress sp = {.phase = SESSION_PH_FETCH,
	    .done = 1,
	    .total = 2,
	    .bytes = 1,
	    .total_bytes = 2};
	char full[256], buf[256];
	unsigned w;

	progress_format(full, sizeof(full), "work", &sp, 1, 200);
	for (w = 0; w <= strlen(full) + 1; w++) {
		size_t n = progress_format(buf, sizeof(buf), "work", &sp, 1, w);

		ck_assert_uint_le(n, w);
		ck_assert_uint_eq(strlen(buf), n);
		ck_assert_int_eq(strncmp(buf, full, n), 0);
	}
	/* A long name is cut to its column, the figures stay. */
	progress_format(buf, sizeof(buf),
	    "a-very-long-account-name-indeed-longer", &sp, 1, 200);
	ck_assert_int_eq(
	    strncmp(buf, "a-very-long-account-name fetching", 33), 0);
	/* A small buffer is never overrun, and still a string. */
	ck_assert_uint_eq(progress_format(buf, 8, "work", &sp, 1, 200), 7);
	ck_assert_str_eq(buf, "work   ");
}
END_TEST

START_TEST(format_escapes)
{
	struct session_progress sp = {.phase = SESSION_PH_LISTING};
	char buf[256];

	progress_format(buf, sizeof(buf), "a\033[2J\r\nb\x9b", &sp, -1, 200);
	assert_printable(buf);
	ck_assert_int_eq(strncmp(buf, "a\\x1b[2J\\x0d\\x0ab\\x9b ", 22), 0);
}
END_TEST

/* --- the display on a pseudo-terminal ------------------------------------ */

static int master = -1, slave = -1, saved_stderr = -1;
static struct event_base *base;
static char got[65536];
static size_t ngot;
static struct progress_item fake[12];
static size_t nfake;

static size_t
fake_source(void *arg, struct progress_item *items, size_t max)
{
	size_t i;

	for (i = 0; i < nfake && i < max; i++)
		items[i] = fake[i];
	return nfake;
}

static void
pty_setup(void)
{
	struct termios t;
	static char names[12][16];
	size_t i;

	ck_assert_int_ne(master = posix_openpt(O_RDWR | O_NOCTTY), -1);
	ck_assert_int_eq(grantpt(master), 0);
	ck_assert_int_eq(unlockpt(master), 0);
	ck_assert_int_ne(slave = open(ptsname(master), O_RDWR | O_NOCTTY), -1);
	/* Bytes as written: no "\n" turned into "\r\n". */
	ck_assert_int_eq(tcgetattr(slave, &t), 0);
	cfmakeraw(&t);
	ck_assert_int_eq(tcsetattr(slave, TCSANOW, &t), 0);
	ck_assert_int_ne(fcntl(master, F_SETFL, O_NONBLOCK), -1);
	/* Log lines go where the display is, as when both are stderr. */
	fflush(stderr);
	ck_assert_int_ne(saved_stderr = dup(2), -1);
	ck_assert_int_ne(dup2(slave, 2), -1);
	ck_assert_ptr_nonnull(base = event_base_new());
	ngot = 0;
	nfake = 0;
	for (i = 0; i < 12; i++) {
		snprintf(names[i], sizeof(names[i]), "acct%zu", i);
		fake[i] = (struct progress_item){.name = names[i],
		    .sp = {.phase = SESSION_PH_FETCH,
			.done = i,
			.total = 20,
			.bytes = i << 20,
			.total_bytes = 20u << 20}};
	}
}

static void
pty_teardown(void)
{
	log_before_line(NULL, NULL);
	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	event_base_free(base);
	close(slave);
	close(master);
}

static void
set_size(unsigned short cols, unsigned short rows)
{
	struct winsize ws = {.ws_col = cols, .ws_row = rows};

	ck_assert_int_eq(ioctl(slave, TIOCSWINSZ, &ws), 0);
}

/* What arrived on the master since the last call, appended to GOT. */
static void
drain(void)
{
	ssize_t r;

	while ((r = read(master, got + ngot, sizeof(got) - 1 - ngot)) > 0)
		ngot += (size_t)r;
	got[ngot] = '\0';
}

/* Turns the loop until GOT (from offset FROM) holds NEEDLE. */
static const char *
await(size_t from, const char *needle)
{
	double end = monotime() + WAIT_SECS;
	const char *at;

	for (;;) {
		drain();
		if ((at = strstr(got + from, needle)) != NULL)
			return at;
		ck_assert_msg(monotime() < end, "no \"%s\" in %zu bytes",
		    needle, ngot - from);
		event_base_loop(base, EVLOOP_ONCE);
	}
}

/* Lines of the frame that starts at AT: up to the next escape or end. */
static size_t
frame_lines(const char *at, size_t *widest)
{
	size_t lines = 0, w = 0;

	*widest = 0;
	for (; *at != '\0' && *at != '\033' && *at != '\r'; at++) {
		if (*at == '\n') {
			lines++;
			w = 0;
			continue;
		}
		if (++w > *widest)
			*widest = w;
	}
	return lines;
}

START_TEST(display_draws_and_clears)
{
	struct progress *p;
	const char *at, *clear;
	size_t mark, widest;

	set_size(120, 40);
	nfake = 2;
	ck_assert_ptr_nonnull(p = progress_new(base, slave, fake_source, NULL));
	at = await(0, "acct1 ");
	ck_assert_ptr_nonnull(strstr(got, "acct0 "));
	ck_assert_ptr_nonnull(strstr(got, "1/20 msgs, 1.00 MiB/20.0 MiB"));
	/* The first frame has nothing to take back. */
	ck_assert_ptr_null(strchr(got, '\033'));
	/* The next one takes back the first's two lines, then redraws. */
	mark = ngot;
	fake[0].sp.done = 7;
	at = await(mark, "7/20 msgs");
	clear = strstr(got + mark, "\r\033[2A\033[J");
	ck_assert_ptr_nonnull(clear);
	ck_assert(clear < at);
	ck_assert_uint_eq(
	    frame_lines(clear + strlen("\r\033[2A\033[J"), &widest), 2);
	/* A log line: the frame goes first, the line is whole. */
	await(ngot, "acct1 ");
	mark = ngot;
	log_warnx("acct0", "something happened");
	drain();
	ck_assert_str_eq(
	    got + mark, "\r\033[2A\033[Jaccount=acct0 something happened\n");
	/* Drawn again after it, then taken off at the end. */
	mark = ngot;
	await(mark, "acct1 ");
	ck_assert_ptr_nonnull(strstr(got + mark, "acct0 "));
	mark = ngot;
	progress_free(&p);
	ck_assert_ptr_null(p);
	drain();
	ck_assert_str_eq(got + mark, "\r\033[2A\033[J");
	/* Unhooked: a log line now comes alone. */
	mark = ngot;
	log_warnx(NULL, "after");
	drain();
	ck_assert_str_eq(got + mark, "after\n");
}
END_TEST

START_TEST(display_fits_the_terminal)
{
	struct progress *p;
	const char *at;
	size_t widest;

	/* Rows for a frame of eight and the "more" line. */
	set_size(50, 40);
	nfake = 12;
	ck_assert_ptr_nonnull(p = progress_new(base, slave, fake_source, NULL));
	at = await(0, "and 4 more polling\n");
	ck_assert_ptr_nonnull(strstr(got, "acct7 "));
	ck_assert_ptr_null(strstr(got, "acct8 "));
	ck_assert_uint_eq(frame_lines(got, &widest), PROGRESS_ROWS + 1);
	ck_assert_uint_le(widest, 49);
	ck_assert_ptr_nonnull(at);
	for (at = got; *at != '\0'; at++)
		ck_assert(*at == '\n' || (isprint((unsigned char)*at) &&
					     isascii((unsigned char)*at)));
	progress_free(&p);
	/* A short terminal: two lines, the summary, the cursor's line. */
	set_size(30, 4);
	drain();
	ngot = 0;
	ck_assert_ptr_nonnull(p = progress_new(base, slave, fake_source, NULL));
	await(0, "and 10 more polling\n");
	ck_assert_uint_eq(frame_lines(got, &widest), 3);
	ck_assert_uint_le(widest, 29);
	progress_free(&p);
	drain();
	ck_assert_ptr_nonnull(strstr(got, "\r\033[3A\033[J"));
}
END_TEST

START_TEST(display_nothing_busy)
{
	struct progress *p;
	size_t mark;

	set_size(80, 24);
	nfake = 1;
	ck_assert_ptr_nonnull(p = progress_new(base, slave, fake_source, NULL));
	await(0, "acct0 ");
	/* The poll ends: the line goes and nothing is drawn in its place. */
	nfake = 0;
	mark = ngot;
	await(mark, "\r\033[1A\033[J");
	drain();
	ck_assert_str_eq(got + mark, "\r\033[1A\033[J");
	progress_free(&p);
	drain();
	ck_assert_str_eq(got + mark, "\r\033[1A\033[J");
}
END_TEST

START_TEST(wanted_only_on_a_terminal)
{
	char path[] = "/tmp/test_progress.XXXXXX";
	int fd;

	ck_assert_int_ne(fd = mkstemp(path), -1);
	unlink(path);
	unsetenv("JOURNAL_STREAM");
	setenv("TERM", "xterm", 1);
	ck_assert(progress_wanted(slave));
	ck_assert(!progress_wanted(fd));
	setenv("JOURNAL_STREAM", "8:1234", 1);
	ck_assert(!progress_wanted(slave));
	unsetenv("JOURNAL_STREAM");
	setenv("TERM", "dumb", 1);
	ck_assert(!progress_wanted(slave));
	unsetenv("TERM");
	ck_assert(progress_wanted(slave));
	close(fd);
}
END_TEST

static Suite *
progress_suite(void)
{
	Suite *s = suite_create("progress");
	TCase *tc = tcase_create("format");
	TCase *td = tcase_create("display");

	tcase_add_test(tc, bytes_units);
	tcase_add_test(tc, eta_forms);
	tcase_add_test(tc, meter_rate);
	tcase_add_test(tc, format_fetch);
	tcase_add_test(tc, format_phases);
	tcase_add_test(tc, format_width);
	tcase_add_test(tc, format_escapes);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(td, pty_setup, pty_teardown);
	tcase_add_test(td, display_draws_and_clears);
	tcase_add_test(td, display_fits_the_terminal);
	tcase_add_test(td, display_nothing_busy);
	tcase_add_test(td, wanted_only_on_a_terminal);
	suite_add_tcase(s, td);
	return s;
}

int
main(void)
{
	log_init(0, false);
	return check_main(progress_suite());
}
