/*
 * The per-account record, the STATUS= line and the JSON of --status.
 * Like status_table.c and status_prom.c, pure: no socket, no file, no
 * clock (the caller says what time it is).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "backoff.h"
#include "log.h"
#include "status.h"

/* An escaped failure message: each byte may become "\xNN". */
#define STATUS_ESC_MAX (4 * STATUS_MSG_MAX + 1)

static const char *const state_names[] = {
    "idle", "queued", "polling", "waiting", "backing off", "paused"};
static const char *const state_keys[] = {
    "idle", "queued", "polling", "waiting", "backoff", "paused"};
_Static_assert(sizeof(state_names) / sizeof(state_names[0]) == STATUS_NSTATES,
    "state_names out of step");
_Static_assert(sizeof(state_keys) / sizeof(state_keys[0]) == STATUS_NSTATES,
    "state_keys out of step");

const char *
status_state_name(enum status_state s)
{
	return (unsigned)s < STATUS_NSTATES ? state_names[s] : "?";
}

const char *
status_state_key(enum status_state s)
{
	return (unsigned)s < STATUS_NSTATES ? state_keys[s] : "?";
}

/* --- the record --------------------------------------------------------- */

void
status_poll_started(struct status_account *r, time_t now)
{
	r->polling_since = now;
}

void
status_poll_ended(struct status_account *r, enum session_class cls,
    const struct session_stats *st, const char *msg, time_t now)
{
	r->last = (struct status_poll){
	    .start = r->polling_since != 0 ? r->polling_since : now,
	    .end = now,
	    .cls = cls,
	    .listed = st->listed,
	    .fetched = st->fetched,
	    .deleted = st->deleted,
	    .left = st->left,
	    .failed = st->failed,
	    .bytes = st->bytes,
	    .secs = st->secs,
	    .held = st->held,
	};
	r->polling_since = 0;
	r->polls++;
	r->fetched += st->fetched;
	r->bytes += st->bytes;
	r->deleted += st->deleted;
	if (cls == SC_OK) {
		r->failing = false;
		r->last_ok = now;
		return;
	}
	if ((unsigned)cls < SC_COUNT)
		r->failures[cls]++;
	r->failing = true;
	r->fail_cls = cls;
	r->fail_time = now;
	snprintf(r->fail_msg, sizeof(r->fail_msg), "%s",
	    msg[0] != '\0' ? msg : backoff_class_name(cls));
}

/* What status_collect() gathers. */
struct collect {
	struct status_account *v;
	size_t n, cap;
	bool failed;
};

/* status_collect()'s visitor: appends a copy, growing the array. */
static void
collect_visit(void *varg, const struct status_account *rec)
{
	struct collect *c = varg;
	struct status_account *v;
	size_t cap;

	if (c->failed)
		return;
	if (c->n == c->cap) {
		cap = c->cap ? 2 * c->cap : 64;
		if ((v = realloc(c->v, cap * sizeof(*v))) == NULL) {
			c->failed = true;
			return;
		}
		c->v = v;
		c->cap = cap;
	}
	c->v[c->n++] = *rec;
}

int
status_collect(
    status_each_fn each, void *arg, struct status_account **r, size_t *n)
{
	struct collect c = {0};
	char(*names)[STATUS_NAME_MAX + 1];
	size_t i;

	*r = NULL;
	*n = 0;
	each(arg, collect_visit, &c);
	/* One block: the records, then their names. */
	if (c.failed ||
	    (*r = malloc(c.n * (sizeof(**r) + sizeof(*names)) + 1)) == NULL) {
		free(c.v);
		return -1;
	}
	names = (void *)(*r + c.n);
	for (i = 0; i < c.n; i++) {
		(*r)[i] = c.v[i];
		snprintf(names[i], sizeof(names[i]), "%s", c.v[i].name);
		(*r)[i].name = names[i];
	}
	free(c.v);
	*n = c.n;
	return 0;
}

/* --- STATUS= ------------------------------------------------------------ */

void
status_tally_add(struct status_tally *t, const struct status_account *r)
{
	t->accounts++;
	if ((unsigned)r->state < STATUS_NSTATES)
		t->by_state[r->state]++;
	if (!r->failing || r->fail_time < t->fail_time)
		return;
	t->fail_time = r->fail_time;
	t->fail_cls = r->fail_cls;
	snprintf(t->fail_acct, sizeof(t->fail_acct), "%s", r->name);
	snprintf(t->fail_msg, sizeof(t->fail_msg), "%s", r->fail_msg);
}

/* T as local time: the time of day alone when it is NOW's day. */
static void
local_when(char *buf, size_t len, time_t t, time_t now)
{
	struct tm tm, today;

	localtime_r(&t, &tm);
	localtime_r(&now, &today);
	strftime(buf, len,
	    tm.tm_year == today.tm_year && tm.tm_yday == today.tm_yday
		? "%H:%M:%S"
		: "%Y-%m-%d %H:%M:%S",
	    &tm);
}

/* Appends to BUF (LEN bytes) at *OFF, which stops at the end. */
static void LOG_PRINTF(4, 5)
    append(char *buf, size_t len, size_t *off, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (*off + 1 >= len)
		return;
	va_start(ap, fmt);
	n = vsnprintf(buf + *off, len - *off, fmt, ap);
	va_end(ap);
	if (n > 0)
		*off = *off + (size_t)n < len ? *off + (size_t)n : len - 1;
}

void
status_tally_line(const struct status_tally *t, bool stopping,
    unsigned long long delivered, time_t now, char *buf, size_t len)
{
	const size_t *s = t->by_state;
	char when[32];
	size_t off = 0;

	buf[0] = '\0';
	append(buf, len, &off,
	    "%s%zu accounts: %zu polling, %zu queued, %zu waiting, %zu backing off, %zu paused",
	    stopping ? "Stopping: " : "", t->accounts, s[STATUS_POLLING],
	    s[STATUS_QUEUED], s[STATUS_WAITING], s[STATUS_BACKOFF],
	    s[STATUS_PAUSED]);
	if (s[STATUS_IDLE] > 0)
		append(buf, len, &off, ", %zu idle", s[STATUS_IDLE]);
	append(buf, len, &off, "; %llu delivered since start", delivered);
	if (t->fail_time == 0)
		return;
	local_when(when, sizeof(when), t->fail_time, now);
	append(buf, len, &off, "; last error: %s at %s: %s", t->fail_acct, when,
	    t->fail_msg);
}

/* --- JSON --------------------------------------------------------------- */

static struct json_object *
must(struct json_object *o)
{
	if (o == NULL)
		fatalx("out of memory");
	return o;
}

static void
put(struct json_object *o, const char *key, struct json_object *v)
{
	if (json_object_object_add(o, key, v) != 0)
		fatalx("out of memory");
}

static struct json_object *
jstring(const char *s)
{
	return must(json_object_new_string(s));
}

static struct json_object *
jint(long long v)
{
	return must(json_object_new_int64(v));
}

/* SECS to the millisecond, written so ("0.25", not 0.25000000000000001). */
static struct json_object *
jsecs(double secs)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%.3f", secs);
	return must(json_object_new_double_s(secs, buf));
}

/* T as RFC 3339 in UTC; null for 0 (never). */
static struct json_object *
jtime(time_t t)
{
	char buf[32];
	struct tm tm;

	if (t == 0)
		return NULL;
	gmtime_r(&t, &tm);
	strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
	return jstring(buf);
}

/* Text a server chose, escaped as the log escapes it. */
static struct json_object *
jescaped(const char *s)
{
	char buf[STATUS_ESC_MAX];

	log_escape(buf, sizeof(buf), s, strlen(s));
	return jstring(buf);
}

static struct json_object *
json_poll(const struct status_poll *p)
{
	struct json_object *o = must(json_object_new_object());

	put(o, "start", jtime(p->start));
	put(o, "end", jtime(p->end));
	put(o, "result", jstring(backoff_class_name(p->cls)));
	put(o, "seconds", jsecs(p->secs));
	put(o, "held_seconds", jsecs(p->held));
	put(o, "listed", jint((long long)p->listed));
	put(o, "fetched", jint((long long)p->fetched));
	put(o, "bytes", jint((long long)p->bytes));
	put(o, "deleted", jint((long long)p->deleted));
	put(o, "left", jint((long long)p->left));
	put(o, "refused", jint((long long)p->failed));
	return o;
}

static struct json_object *
json_failure(const struct status_account *r)
{
	struct json_object *o = must(json_object_new_object());

	put(o, "class", jstring(backoff_class_name(r->fail_cls)));
	put(o, "message", jescaped(r->fail_msg));
	put(o, "time", jtime(r->fail_time));
	return o;
}

static struct json_object *
json_totals(const struct status_account *r)
{
	struct json_object *o = must(json_object_new_object());
	struct json_object *f = must(json_object_new_object());
	int c;

	for (c = SC_OK + 1; c < SC_COUNT; c++)
		put(f, backoff_class_name(c), jint((long long)r->failures[c]));
	put(o, "polls", jint((long long)r->polls));
	put(o, "failures", f);
	put(o, "fetched", jint((long long)r->fetched));
	put(o, "bytes", jint((long long)r->bytes));
	put(o, "deleted", jint((long long)r->deleted));
	return o;
}

/* When the OAuth2 refresh token was issued and expires (null: unknown). */
static struct json_object *
json_token(const struct status_account *r)
{
	struct json_object *o = must(json_object_new_object());

	put(o, "refresh_token_obtained", jtime(r->token_obtained));
	put(o, "refresh_token_expires", jtime(r->token_expires));
	put(o, "access_token_expires", jtime(r->access_expires));
	return o;
}

/* Why an account backs off or is paused: the class and the message. */
static struct json_object *
json_why(const struct status_account *r)
{
	char msg[STATUS_ESC_MAX], buf[STATUS_ESC_MAX + 32];

	if ((r->state != STATUS_BACKOFF && r->state != STATUS_PAUSED) ||
	    !r->failing)
		return NULL;
	log_escape(msg, sizeof(msg), r->fail_msg, strlen(r->fail_msg));
	snprintf(
	    buf, sizeof(buf), "%s: %s", backoff_class_name(r->fail_cls), msg);
	return jstring(buf);
}

static struct json_object *
json_account(const struct status_account *r)
{
	struct json_object *o = must(json_object_new_object());

	put(o, "name", jstring(r->name));
	put(o, "state", jstring(status_state_key(r->state)));
	put(o, "why", json_why(r));
	put(o, "streak", jint(r->streak));
	put(o, "polling_since", jtime(r->polling_since));
	put(o, "next_poll", jtime(r->next));
	put(o, "last_poll", r->last.end != 0 ? json_poll(&r->last) : NULL);
	put(o, "last_success", jtime(r->last_ok));
	put(o, "failing", must(json_object_new_boolean(r->failing)));
	put(o, "last_failure", r->fail_time != 0 ? json_failure(r) : NULL);
	put(o, "oauth2", r->token_known ? json_token(r) : NULL);
	put(o, "totals", json_totals(r));
	return o;
}

static struct json_object *
json_summary(const struct status_account *r, size_t n)
{
	struct json_object *o = must(json_object_new_object());
	struct status_tally t = {0};
	unsigned long long fetched = 0;
	size_t i;
	int s;

	for (i = 0; i < n; i++) {
		status_tally_add(&t, &r[i]);
		fetched += r[i].fetched;
	}
	put(o, "accounts", jint((long long)t.accounts));
	for (s = 0; s < STATUS_NSTATES; s++)
		put(o, status_state_key(s), jint((long long)t.by_state[s]));
	put(o, "fetched", jint((long long)fetched));
	return o;
}

/* The document without its accounts (an empty array, last). */
static struct json_object *
json_head(const struct status_account *r, size_t n, time_t start, time_t now)
{
	struct json_object *o = must(json_object_new_object());

	put(o, "version", jstring(POPFETCHD_VERSION));
	put(o, "pid", jint(getpid()));
	put(o, "started", jtime(start));
	put(o, "time", jtime(now));
	put(o, "summary", json_summary(r, n));
	put(o, "accounts", must(json_object_new_array()));
	return o;
}

struct json_object *
status_json(const struct status_account *r, size_t n, time_t start, time_t now)
{
	struct json_object *o = json_head(r, n, start, now), *a;
	size_t i;

	json_object_object_get_ex(o, "accounts", &a);
	for (i = 0; i < n; i++)
		if (json_object_array_add(a, json_account(&r[i])) != 0)
			fatalx("out of memory");
	return o;
}

/* O as compact text, in a string the caller frees. */
static char *
json_text(struct json_object *o)
{
	char *text = strdup(json_object_to_json_string_ext(
	    o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));

	if (text == NULL)
		fatalx("out of memory");
	json_object_put(o);
	return text;
}

char *
status_json_head(
    const struct status_account *r, size_t n, time_t start, time_t now)
{
	static const char empty[] = "[]}";
	char *text = json_text(json_head(r, n, start, now));
	size_t len = strlen(text);

	/* "accounts" comes last, as added: its array is left open. */
	if (len < sizeof(empty) ||
	    strcmp(text + len - (sizeof(empty) - 1), empty) != 0)
		fatalx("status: unexpected JSON head");
	text[len - 2] = '\0';
	return text;
}

char *
status_json_accounts(const struct status_account *r, size_t from, size_t count)
{
	char *text = NULL, *one;
	size_t len, i;
	FILE *f;

	if ((f = open_memstream(&text, &len)) == NULL)
		fatalx("out of memory");
	for (i = from; i < from + count; i++) {
		one = json_text(json_account(&r[i]));
		fprintf(f, "%s%s", i > 0 ? "," : "", one);
		free(one);
	}
	if (fclose(f) != 0)
		fatalx("out of memory");
	return text;
}
