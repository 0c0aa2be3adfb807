/*
 * The per-account record and its forms: the STATUS= line, the JSON of
 * --status, the table printed from it, the Prometheus text exposition.
 * Pure: no socket, no file, no clock (the caller says what time it is).
 */
#include <ctype.h>
#include <inttypes.h>
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

/* --- the table, from the JSON ------------------------------------------ */

static struct json_object *
get(struct json_object *o, const char *key)
{
	struct json_object *v;

	return o != NULL && json_object_object_get_ex(o, key, &v) ? v : NULL;
}

/* The string at KEY of O, or DEF when there is none. */
static const char *
get_str(struct json_object *o, const char *key, const char *def)
{
	struct json_object *v = get(o, key);

	return json_object_is_type(v, json_type_string)
		   ? json_object_get_string(v)
		   : def;
}

static long long
get_int(struct json_object *o, const char *key)
{
	return (long long)json_object_get_int64(get(o, key));
}

/* The length of the array O; 0 when O is not one. */
static size_t
array_len(struct json_object *o)
{
	return json_object_is_type(o, json_type_array)
		   ? json_object_array_length(o)
		   : 0;
}

/* The RFC 3339 time at KEY of O (as jtime() writes it), or 0. */
static time_t
get_time(struct json_object *o, const char *key)
{
	const char *s = get_str(o, key, NULL), *end;
	struct tm tm = {0};

	if (s == NULL ||
	    (end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm)) == NULL ||
	    *end != '\0')
		return 0;
	return timegm(&tm);
}

/* S with every byte outside printable ASCII as '?', padded to WIDTH. */
static void
print_safe(FILE *f, const char *s, int width)
{
	int n = 0;

	for (; *s != '\0'; s++, n++)
		putc(isprint((unsigned char)*s) && isascii((unsigned char)*s)
			 ? *s
			 : '?',
		    f);
	for (; n < width; n++)
		putc(' ', f);
}

/* "12s", "5m", "3h", "2d": how long SECS is, in its largest unit. */
static void
span(char *buf, size_t len, long long secs)
{
	if (secs < 120)
		snprintf(buf, len, "%llds", secs);
	else if (secs < 2 * 3600)
		snprintf(buf, len, "%lldm", secs / 60);
	else if (secs < 2 * 86400)
		snprintf(buf, len, "%lldh", secs / 3600);
	else
		snprintf(buf, len, "%lldd", secs / 86400);
}

/* T relative to NOW: "12s ago", "in 5m", "now"; DEF when T is 0. */
static const char *
relative(char *buf, size_t len, time_t t, time_t now, const char *def)
{
	char s[32];

	if (t == 0)
		return def;
	if (t == now)
		return "now";
	span(s, sizeof(s),
	    t > now ? (long long)(t - now) : (long long)(now - t));
	snprintf(buf, len, t > now ? "in %s" : "%s ago", s);
	return buf;
}

/* When an account without a next poll time polls next. */
static const char *
next_words(const char *state)
{
	if (strcmp(state, "paused") == 0)
		return "on reload";
	if (strcmp(state, "polling") == 0)
		return "after this";
	if (strcmp(state, "queued") == 0)
		return "when free";
	return "-";
}

/* The state's words for people, from its JSON key. */
static const char *
state_words(const char *key)
{
	int s;

	for (s = 0; s < STATUS_NSTATES; s++)
		if (strcmp(key, state_keys[s]) == 0)
			return state_names[s];
	return key;
}

static void
table_header(FILE *f, struct json_object *doc, time_t now)
{
	struct json_object *sum = get(doc, "summary");
	static const enum status_state shown[] = {STATUS_POLLING, STATUS_QUEUED,
	    STATUS_WAITING, STATUS_BACKOFF, STATUS_PAUSED};
	char up[32];
	size_t i;

	span(up, sizeof(up), (long long)(now - get_time(doc, "started")));
	fprintf(f, "popfetchd ");
	print_safe(f, get_str(doc, "version", "?"), 0);
	fprintf(f, ", pid %lld, up %s: %lld accounts", get_int(doc, "pid"), up,
	    get_int(sum, "accounts"));
	for (i = 0; i < sizeof(shown) / sizeof(shown[0]); i++)
		fprintf(f, ", %lld %s", get_int(sum, state_keys[shown[i]]),
		    state_names[shown[i]]);
	if (get_int(sum, "idle") > 0)
		fprintf(f, ", %lld idle", get_int(sum, "idle"));
	fprintf(f, "\n\n");
}

/* TOT's failures, all classes; with F, each class that has some too. */
static long long
failures(FILE *f, struct json_object *tot)
{
	struct json_object *by = get(tot, "failures");
	struct json_object_iter it;
	long long sum = 0;

	if (!json_object_is_type(by, json_type_object))
		return 0;
	json_object_object_foreachC(by, it)
	{
		sum += json_object_get_int64(it.val);
		if (f == NULL || json_object_get_int64(it.val) <= 0)
			continue;
		fprintf(f, ", ");
		print_safe(f, it.key, 0);
		fprintf(f, " %lld", (long long)json_object_get_int64(it.val));
	}
	return sum;
}

static void
table_row(FILE *f, struct json_object *a, int width, time_t now)
{
	struct json_object *last = get(a, "last_poll"), *tot = get(a, "totals");
	const char *state = get_str(a, "state", "?");
	char b1[48], b2[48];

	print_safe(f, get_str(a, "name", "?"), width + 2);
	print_safe(f, state_words(state), 13);
	print_safe(f,
	    relative(b1, sizeof(b1), get_time(last, "end"), now, "never"), 11);
	print_safe(f, get_str(last, "result", "-"), 10);
	print_safe(f,
	    relative(b2, sizeof(b2), get_time(a, "next_poll"), now,
		next_words(state)),
	    12);
	fprintf(f, "%7lld %7lld %8lld\n", get_int(tot, "polls"),
	    failures(NULL, tot), get_int(tot, "fetched"));
}

/* The accounts whose last poll failed, and why. */
static void
table_failures(FILE *f, struct json_object *accts, time_t now)
{
	struct json_object *a, *fail;
	char b[48];
	size_t i, n = array_len(accts);
	bool first = true;

	for (i = 0; i < n; i++) {
		a = json_object_array_get_idx(accts, i);
		if (!json_object_get_boolean(get(a, "failing")))
			continue;
		fail = get(a, "last_failure");
		fprintf(f, "%s", first ? "\n" : "");
		first = false;
		print_safe(f, get_str(a, "name", "?"), 0);
		fprintf(f, ": ");
		print_safe(f, get_str(fail, "class", "?"), 0);
		fprintf(f, " %s (%lld in a row): ",
		    relative(b, sizeof(b), get_time(fail, "time"), now, "-"),
		    get_int(a, "streak"));
		print_safe(f, get_str(fail, "message", ""), 0);
		putc('\n', f);
	}
}

static void
table_all(FILE *f, struct json_object *doc, time_t now)
{
	struct json_object *accts = get(doc, "accounts");
	size_t i, n = array_len(accts), len;
	int width = 7;

	for (i = 0; i < n; i++) {
		len = strlen(
		    get_str(json_object_array_get_idx(accts, i), "name", "?"));
		if (len > (size_t)width)
			width = (int)len;
	}
	table_header(f, doc, now);
	fprintf(f, "%-*s  %-13s%-11s%-10s%-12s%7s %7s %8s\n", width, "ACCOUNT",
	    "STATE", "LAST POLL", "RESULT", "NEXT POLL", "POLLS", "FAILED",
	    "FETCHED");
	for (i = 0; i < n; i++)
		table_row(f, json_object_array_get_idx(accts, i), width, now);
	table_failures(f, accts, now);
}

/* T as local date and time with how long ago, or DEF when T is 0. */
static void
print_when(FILE *f, time_t t, time_t now, const char *def)
{
	char when[32], rel[48];
	struct tm tm;

	if (t == 0) {
		fprintf(f, "%s", def);
		return;
	}
	localtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
	fprintf(f, "%s (%s)", when, relative(rel, sizeof(rel), t, now, "-"));
}

static void
detail_last_poll(FILE *f, struct json_object *last, time_t now)
{
	fprintf(f, "last poll     ");
	if (last == NULL) {
		fprintf(f, "none yet\n");
		return;
	}
	print_when(f, get_time(last, "end"), now, "-");
	fprintf(f, ", %.2f s, result ",
	    json_object_get_double(get(last, "seconds")));
	print_safe(f, get_str(last, "result", "?"), 0);
	fprintf(f,
	    "\n              listed %lld, fetched %lld (%lld bytes), deleted %lld, left %lld, refused %lld\n",
	    get_int(last, "listed"), get_int(last, "fetched"),
	    get_int(last, "bytes"), get_int(last, "deleted"),
	    get_int(last, "left"), get_int(last, "refused"));
}

static void
detail_totals(FILE *f, struct json_object *tot)
{
	fprintf(f, "since start   %lld polls, %lld failed",
	    get_int(tot, "polls"), failures(NULL, tot));
	failures(f, tot);
	fprintf(f, "; fetched %lld (%lld bytes), deleted %lld\n",
	    get_int(tot, "fetched"), get_int(tot, "bytes"),
	    get_int(tot, "deleted"));
}

static void
detail(FILE *f, struct json_object *a, time_t now)
{
	struct json_object *fail = get(a, "last_failure");
	const char *state = get_str(a, "state", "?");

	fprintf(f, "account       ");
	print_safe(f, get_str(a, "name", "?"), 0);
	fprintf(f, "\nstate         %s", state_words(state));
	if (get_str(a, "why", NULL) != NULL) {
		fprintf(f, " (%lld in a row): ", get_int(a, "streak"));
		print_safe(f, get_str(a, "why", ""), 0);
	}
	fprintf(f, "\npolling since ");
	print_when(f, get_time(a, "polling_since"), now, "-");
	putc('\n', f);
	detail_last_poll(f, get(a, "last_poll"), now);
	fprintf(f, "last success  ");
	print_when(f, get_time(a, "last_success"), now, "never");
	fprintf(f, "\nlast failure  ");
	print_when(f, get_time(fail, "time"), now, "never");
	if (fail != NULL) {
		fprintf(f, ", %s",
		    json_object_get_boolean(get(a, "failing"))
			? "unresolved"
			: "resolved since");
		fprintf(f, ": ");
		print_safe(f, get_str(fail, "class", "?"), 0);
		fprintf(f, ": ");
		print_safe(f, get_str(fail, "message", ""), 0);
	}
	fprintf(f, "\nnext poll     ");
	print_when(f, get_time(a, "next_poll"), now, next_words(state));
	putc('\n', f);
	detail_totals(f, get(a, "totals"));
}

/* The account called NAME in DOC, or NULL. */
static struct json_object *
find_account(struct json_object *doc, const char *name)
{
	struct json_object *accts = get(doc, "accounts"), *a;
	size_t i, n = array_len(accts);

	for (i = 0; i < n; i++) {
		a = json_object_array_get_idx(accts, i);
		if (strcmp(get_str(a, "name", ""), name) == 0)
			return a;
	}
	return NULL;
}

size_t
status_table(FILE *f, struct json_object *doc, time_t now, char *const *only,
    size_t nonly)
{
	struct json_object *a;
	size_t i, missing = 0;

	if (nonly == 0) {
		table_all(f, doc, now);
		return 0;
	}
	for (i = 0; i < nonly; i++) {
		if ((a = find_account(doc, only[i])) == NULL) {
			missing++;
			continue;
		}
		fprintf(f, "%s", i > missing ? "\n" : "");
		detail(f, a, now);
	}
	return missing;
}

/* --- the Prometheus text exposition ------------------------------------ */

size_t
status_label_escape(char *dst, size_t dstlen, const char *src)
{
	size_t o = 0;
	const char *esc;
	char one[2] = {0};

	for (; *src != '\0'; src++) {
		switch (*src) {
		case '\\':
			esc = "\\\\";
			break;
		case '"':
			esc = "\\\"";
			break;
		case '\n':
			esc = "\\n";
			break;
		default:
			one[0] = *src;
			esc = one;
		}
		for (; *esc != '\0'; esc++, o++)
			if (o + 1 < dstlen)
				dst[o] = *esc;
	}
	dst[o + 1 < dstlen ? o : dstlen - 1] = '\0';
	return o;
}

/* One metric per account: its name, type, help and value. */
struct metric {
	const char *name, *type, *help;
	double (*value)(const struct status_account *r);
};

static double
m_polls(const struct status_account *r)
{
	return (double)r->polls;
}

static double
m_fetched(const struct status_account *r)
{
	return (double)r->fetched;
}

static double
m_bytes(const struct status_account *r)
{
	return (double)r->bytes;
}

static double
m_deleted(const struct status_account *r)
{
	return (double)r->deleted;
}

static double
m_failing(const struct status_account *r)
{
	return r->failing ? 1 : 0;
}

static double
m_last_end(const struct status_account *r)
{
	return (double)r->last.end;
}

static double
m_last_secs(const struct status_account *r)
{
	return r->last.secs;
}

static double
m_last_ok(const struct status_account *r)
{
	return (double)r->last_ok;
}

static double
m_last_fail(const struct status_account *r)
{
	return (double)r->fail_time;
}

static double
m_next(const struct status_account *r)
{
	return (double)r->next;
}

static double
m_listed(const struct status_account *r)
{
	return (double)r->last.listed;
}

static double
m_left(const struct status_account *r)
{
	return (double)r->last.left;
}

static const struct metric metrics[] = {
    {"popfetchd_polls_total", "counter",
	"Polls of the account finished since the daemon started.", m_polls},
    {"popfetchd_messages_fetched_total", "counter",
	"Messages delivered since the daemon started.", m_fetched},
    {"popfetchd_fetched_bytes_total", "counter",
	"Bytes of messages delivered since the daemon started.", m_bytes},
    {"popfetchd_messages_deleted_total", "counter",
	"Messages deleted on the server since the daemon started.", m_deleted},
    {"popfetchd_account_failing", "gauge",
	"1 when the account's last poll failed, else 0.", m_failing},
    {"popfetchd_last_poll_timestamp_seconds", "gauge",
	"When the last poll ended (0: none yet).", m_last_end},
    {"popfetchd_last_poll_duration_seconds", "gauge",
	"How long the last poll took.", m_last_secs},
    {"popfetchd_last_success_timestamp_seconds", "gauge",
	"When a poll last succeeded (0: never).", m_last_ok},
    {"popfetchd_last_failure_timestamp_seconds", "gauge",
	"When a poll last failed (0: never).", m_last_fail},
    {"popfetchd_next_poll_timestamp_seconds", "gauge",
	"When the next poll is due (0: none scheduled).", m_next},
    {"popfetchd_server_messages", "gauge",
	"Messages on the server at the last poll.", m_listed},
    {"popfetchd_server_messages_left", "gauge",
	"Messages the last poll left on the server by policy.", m_left},
};

static void
metric_head(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Each name, escaped as a label value. */
static char (*metric_labels(
    const struct status_account *r, size_t n))[2 * STATUS_NAME_MAX + 1]
{
	char(*lab)[2 * STATUS_NAME_MAX + 1];
	size_t i;

	if ((lab = calloc(n + 1, sizeof(*lab))) == NULL)
		return NULL;
	for (i = 0; i < n; i++)
		status_label_escape(lab[i], sizeof(lab[i]), r[i].name);
	return lab;
}

static void
metrics_daemon(FILE *f, const struct status_account *r, size_t n, time_t start)
{
	struct status_tally t = {0};
	size_t i;
	int s;

	for (i = 0; i < n; i++)
		status_tally_add(&t, &r[i]);
	metric_head(f, "popfetchd_start_time_seconds", "gauge",
	    "When the daemon started, in seconds since the epoch.");
	fprintf(f, "popfetchd_start_time_seconds %lld\n", (long long)start);
	metric_head(f, "popfetchd_accounts", "gauge",
	    "Accounts by state (idle, queued, polling, waiting, backoff, paused).");
	for (s = 0; s < STATUS_NSTATES; s++)
		fprintf(f, "popfetchd_accounts{state=\"%s\"} %zu\n",
		    state_keys[s], t.by_state[s]);
}

char *
status_metrics_text(
    const struct status_account *r, size_t n, time_t start, size_t *len)
{
	char(*lab)[2 * STATUS_NAME_MAX + 1], *text = NULL;
	const struct metric *m;
	size_t i;
	FILE *f;
	int c;

	if ((lab = metric_labels(r, n)) == NULL)
		return NULL;
	if ((f = open_memstream(&text, len)) == NULL) {
		free(lab);
		return NULL;
	}
	metrics_daemon(f, r, n, start);
	for (m = metrics; m < metrics + sizeof(metrics) / sizeof(*m); m++) {
		metric_head(f, m->name, m->type, m->help);
		for (i = 0; i < n; i++)
			fprintf(f, "%s{account=\"%s\"} %.15g\n", m->name,
			    lab[i], m->value(&r[i]));
	}
	metric_head(f, "popfetchd_poll_failures_total", "counter",
	    "Failed polls since the daemon started, by class.");
	for (i = 0; i < n; i++)
		for (c = SC_OK + 1; c < SC_COUNT; c++)
			fprintf(f,
			    "popfetchd_poll_failures_total{account=\"%s\",class=\"%s\"} %llu\n",
			    lab[i], backoff_class_name(c), r[i].failures[c]);
	free(lab);
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}
