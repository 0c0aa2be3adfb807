/*
 * The progress display: one line per busy account under the cursor,
 * drawn as a whole frame in one write, taken off by moving the cursor
 * back up and clearing to the end of the screen. Lines are cut to the
 * terminal's width, as a wrapped line would make the count of lines to
 * take back wrong.
 */
#include <sys/ioctl.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "fsutil.h"
#include "log.h"
#include "monotime.h"
#include "progress.h"

/*
 * Seconds over which the rate is smoothed: a rate of the last redraw
 * alone jumps with every large message; one since the start reacts to
 * nothing.
 */
#define PROGRESS_TAU 3.0
/* Widest line drawn, whatever the terminal says. */
#define PROGRESS_WIDTH_MAX 200
/* Columns of an account name; a longer one is cut. */
#define PROGRESS_NAME_MAX 24
/* Escape sequences around a frame: cursor up, clear. */
#define PROGRESS_CTL_MAX 32

struct progress_slot {
	char name[PROGRESS_NAME_MAX * 4 + 1];
	struct progress_meter m;
	bool live; /* seen in the latest frame */
};

struct progress {
	struct event_base *base;
	struct event *tick;
	int fd;
	progress_source source;
	void *arg;
	pthread_t loop; /* the thread that may draw */
	unsigned drawn; /* lines of the frame on the screen */
	struct progress_slot slots[PROGRESS_ROWS];
	char frame[PROGRESS_CTL_MAX +
		   (PROGRESS_ROWS + 1) * (PROGRESS_WIDTH_MAX + 2)];
};

static const char *const phase_words[] = {
    [SESSION_PH_LOGIN] = "logging in",
    [SESSION_PH_LISTING] = "listing",
    [SESSION_PH_FETCH] = "fetching",
    [SESSION_PH_TOP] = "reading headers",
    [SESSION_PH_END] = "finishing",
};

void
progress_meter_add(struct progress_meter *m, uint64_t bytes, double now)
{
	double dt = now - m->at, inst;

	if (!m->seen || bytes < m->bytes) {
		*m = (struct progress_meter){
		    .bytes = bytes, .at = now, .rate = -1, .seen = true};
		return;
	}
	if (dt <= 0)
		return;
	inst = (double)(bytes - m->bytes) / dt;
	if (m->rate < 0)
		m->rate = inst;
	else
		m->rate += (inst - m->rate) * dt / (PROGRESS_TAU + dt);
	m->bytes = bytes;
	m->at = now;
}

void
progress_bytes(char *buf, size_t len, uint64_t n)
{
	static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
	double v = (double)n;
	size_t u = 0;

	if (n < 1024) {
		snprintf(buf, len, "%llu B", (unsigned long long)n);
		return;
	}
	v /= 1024;
	while (v >= 1024 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1024;
		u++;
	}
	/* Three digits whatever the size: "3.42", "34.2", "342". */
	snprintf(buf, len,
	    v < 9.995	? "%.2f %s"
	    : v < 99.95 ? "%.1f %s"
			: "%.0f %s",
	    v, units[u]);
}

void
progress_eta(char *buf, size_t len, double secs)
{
	unsigned long s;

	/* Beyond 100 hours a figure means nothing to anyone watching. */
	if (!(secs >= 0) || secs >= 100 * 3600.0) {
		snprintf(buf, len, "?");
		return;
	}
	s = (unsigned long)(secs + 0.5);
	if (s >= 3600)
		snprintf(
		    buf, len, "%lu:%02lu:%02lu", s / 3600, s / 60 % 60, s % 60);
	else
		snprintf(buf, len, "%lu:%02lu", s / 60, s % 60);
}

/* The fetch figures: "12/500 msgs, 3.40 MiB/120 MiB, 1.20 MiB/s, 1:40 left". */
static void
fetch_figures(
    char *buf, size_t len, const struct session_progress *sp, double rate)
{
	char done[16], total[16], r[16] = "?", eta[16] = "?";

	progress_bytes(done, sizeof(done), sp->bytes);
	progress_bytes(total, sizeof(total), sp->total_bytes);
	if (rate >= 0)
		progress_bytes(r, sizeof(r), (uint64_t)rate);
	if (rate > 0 && sp->total_bytes >= sp->bytes)
		progress_eta(eta, sizeof(eta),
		    (double)(sp->total_bytes - sp->bytes) / rate);
	snprintf(buf, len, "%zu/%zu msgs, %s/%s, %s/s, %s left", sp->done,
	    sp->total, done, total, r, eta);
}

size_t
progress_format(char *buf, size_t len, const char *name,
    const struct session_progress *sp, double rate, unsigned width)
{
	char esc[PROGRESS_NAME_MAX * 4 + 1], fig[128] = "";
	const char *word =
	    (unsigned)sp->phase < sizeof(phase_words) / sizeof(phase_words[0])
		? phase_words[sp->phase]
		: "?";
	size_t n;

	if (len == 0)
		return 0;
	log_escape(esc, sizeof(esc), name, strlen(name));
	if (sp->phase == SESSION_PH_FETCH)
		fetch_figures(fig, sizeof(fig), sp, rate);
	else if (sp->phase == SESSION_PH_TOP)
		snprintf(fig, sizeof(fig), "%zu/%zu msgs", sp->done, sp->total);
	snprintf(buf, len, "%-*.*s %s%s%s", PROGRESS_NAME_MAX,
	    PROGRESS_NAME_MAX, esc, word, fig[0] != '\0' ? ": " : "", fig);
	n = strlen(buf);
	if (n > width) {
		n = width;
		buf[n] = '\0';
	}
	return n;
}

bool
progress_wanted(int fd)
{
	const char *term = getenv("TERM"), *js = getenv("JOURNAL_STREAM");

	return isatty(fd) && (js == NULL || js[0] == '\0') &&
	       (term == NULL || strcmp(term, "dumb") != 0);
}

/* Columns and rows of the terminal on FD, or 80 by 24. */
static void
term_size(int fd, unsigned *cols, unsigned *rows)
{
	struct winsize ws;

	*cols = 80;
	*rows = 24;
	if (ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
		*cols = ws.ws_col;
		*rows = ws.ws_row;
	}
}

/* The cursor back up over the frame, and everything below it cleared. */
static size_t
take_back(struct progress *p, char *buf, size_t len)
{
	int n;

	if (p->drawn == 0)
		return 0;
	n = snprintf(buf, len, "\r\033[%uA\033[J", p->drawn);
	p->drawn = 0;
	return n > 0 && (size_t)n < len ? (size_t)n : 0;
}

static void
clear_now(struct progress *p)
{
	char ctl[PROGRESS_CTL_MAX];
	size_t n = take_back(p, ctl, sizeof(ctl));

	if (n > 0)
		(void)fsutil_write_all(p->fd, ctl, n);
}

/* Before a log line: the frame goes, the next tick draws it again. */
static void
before_log(void *arg)
{
	struct progress *p = arg;

	/* A line from another thread: the loop may be drawing right now. */
	if (pthread_equal(pthread_self(), p->loop))
		clear_now(p);
}

/* ITEM's meter, found by name among the slots or started in a free one. */
static struct progress_meter *
meter_of(struct progress *p, const struct progress_item *item)
{
	struct progress_slot *free_slot = NULL, *sl;
	size_t i;

	for (i = 0; i < PROGRESS_ROWS; i++) {
		sl = &p->slots[i];
		if (sl->name[0] != '\0' && strcmp(sl->name, item->name) == 0) {
			sl->live = true;
			return &sl->m;
		}
		if (sl->name[0] == '\0' && free_slot == NULL)
			free_slot = sl;
	}
	if (free_slot == NULL) /* cannot happen: slots match the rows */
		return NULL;
	snprintf(free_slot->name, sizeof(free_slot->name), "%s", item->name);
	free_slot->m = (struct progress_meter){.rate = -1};
	free_slot->live = true;
	return &free_slot->m;
}

/* Forgets the meters of accounts no longer shown. */
static void
meters_sweep(struct progress *p)
{
	size_t i;

	for (i = 0; i < PROGRESS_ROWS; i++) {
		if (!p->slots[i].live)
			p->slots[i].name[0] = '\0';
		p->slots[i].live = false;
	}
}

/* "and 12 more polling", cut to WIDTH, with its line ending. */
static size_t
more_line(char *buf, size_t len, size_t more, unsigned width)
{
	int n = snprintf(buf, len, "and %zu more polling", more);

	if (n < 0)
		n = 0;
	if ((unsigned)n > width)
		n = (int)width;
	buf[n] = '\n';
	return (size_t)n + 1;
}

static void
draw(struct progress *p)
{
	struct progress_item items[PROGRESS_ROWS];
	struct progress_meter *m;
	unsigned cols, rows, lines = 0;
	size_t n, shown, i, o;
	double now = monotime();

	term_size(p->fd, &cols, &rows);
	if (cols > PROGRESS_WIDTH_MAX)
		cols = PROGRESS_WIDTH_MAX;
	n = p->source(p->arg, items, PROGRESS_ROWS);
	shown = n < PROGRESS_ROWS ? n : PROGRESS_ROWS;
	/* Room for the frame, its summary line and the cursor's line. */
	while (shown > 0 && shown + (n > shown) + 1 > rows)
		shown--;
	o = take_back(p, p->frame, sizeof(p->frame));
	for (i = 0; i < shown; i++) {
		m = meter_of(p, &items[i]);
		if (m != NULL)
			progress_meter_add(m, items[i].sp.bytes, now);
		o += progress_format(p->frame + o, sizeof(p->frame) - o,
		    items[i].name, &items[i].sp, m != NULL ? m->rate : -1,
		    cols - 1);
		p->frame[o++] = '\n';
		lines++;
	}
	meters_sweep(p);
	if (n > shown && rows > 1) {
		o += more_line(
		    p->frame + o, sizeof(p->frame) - o, n - shown, cols - 1);
		lines++;
	}
	if (o > 0)
		(void)fsutil_write_all(p->fd, p->frame, o);
	p->drawn = lines;
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	draw(arg);
}

struct progress *
progress_new(struct event_base *base, int fd, progress_source source, void *arg)
{
	struct timeval tv = {.tv_usec = 1000000 / PROGRESS_HZ};
	struct progress *p;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	p->base = base;
	p->fd = fd;
	p->source = source;
	p->arg = arg;
	p->loop = pthread_self();
	if ((p->tick = event_new(base, -1, EV_PERSIST, on_tick, p)) == NULL ||
	    event_add(p->tick, &tv) == -1) {
		if (p->tick != NULL)
			event_free(p->tick);
		free(p);
		return NULL;
	}
	log_before_line(before_log, p);
	return p;
}

void
progress_free(struct progress **pp)
{
	struct progress *p = *pp;

	if (p == NULL)
		return;
	log_before_line(NULL, NULL);
	clear_now(p);
	event_free(p->tick);
	free(p);
	*pp = NULL;
}
