/*
 * The per-account record and its forms: what a poll's end does to the
 * record, the STATUS= line (counts by state, the most recent unresolved
 * failure), the JSON of --status and the table made from it, the
 * Prometheus text exposition and its label escaping. Times are fixed and
 * the zone is UTC, so every expected string is written out.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "check_main.h"
#include "status.h"

/* 2027-01-15 10:00:00 UTC */
#define T0 ((time_t)1800007200)

static const struct session_stats ok_stats = {.listed = 5,
    .fetched = 3,
    .bytes = 4096,
    .deleted = 3,
    .left = 2,
    .failed = 0,
    .secs = 0.25,
    .login_delay = -1};
static const struct session_stats none = {.login_delay = -1};

static void
setup_tz(void)
{
	setenv("TZ", "UTC", 1);
	tzset();
}

/* A record named NAME after a good poll and then a failed one. */
static struct status_account
good_then_bad(
    const char *name, enum session_class cls, const char *msg, time_t t)
{
	struct status_account r = {.name = name};

	status_poll_started(&r, t - 100);
	status_poll_ended(&r, SC_OK, &ok_stats, "", t - 99);
	status_poll_started(&r, t - 1);
	status_poll_ended(&r, cls, &none, msg, t);
	return r;
}

START_TEST(poll_end_counts)
{
	struct status_account r = {.name = "a"};

	status_poll_started(&r, T0);
	ck_assert_int_eq(r.polling_since, T0);
	status_poll_ended(&r, SC_OK, &ok_stats, "", T0 + 2);
	ck_assert_int_eq(r.polling_since, 0);
	ck_assert_int_eq(r.last.start, T0);
	ck_assert_int_eq(r.last.end, T0 + 2);
	ck_assert_uint_eq(r.last.listed, 5);
	ck_assert_uint_eq(r.last.left, 2);
	ck_assert_uint_eq(r.polls, 1);
	ck_assert_uint_eq(r.fetched, 3);
	ck_assert_uint_eq(r.bytes, 4096);
	ck_assert_uint_eq(r.deleted, 3);
	ck_assert_int_eq(r.last_ok, T0 + 2);
	ck_assert(!r.failing);
	ck_assert_int_eq(r.fail_time, 0);

	/* A failure: unresolved, counted by class, message kept. */
	status_poll_started(&r, T0 + 10);
	status_poll_ended(&r, SC_NET, &none, "connect: refused", T0 + 11);
	ck_assert(r.failing);
	ck_assert_int_eq(r.fail_cls, SC_NET);
	ck_assert_str_eq(r.fail_msg, "connect: refused");
	ck_assert_int_eq(r.fail_time, T0 + 11);
	ck_assert_uint_eq(r.failures[SC_NET], 1);
	ck_assert_uint_eq(r.polls, 2);
	ck_assert_uint_eq(r.fetched, 3);

	/* Without a message the class names the failure. */
	status_poll_ended(&r, SC_AUTH, &none, "", T0 + 20);
	ck_assert_str_eq(r.fail_msg, "auth");
	ck_assert_uint_eq(r.failures[SC_AUTH], 1);

	/* A good poll resolves it; the failure stays on record. */
	status_poll_ended(&r, SC_OK, &ok_stats, "", T0 + 30);
	ck_assert(!r.failing);
	ck_assert_int_eq(r.fail_time, T0 + 20);
	ck_assert_int_eq(r.last_ok, T0 + 30);
	ck_assert_uint_eq(r.polls, 4);
	ck_assert_uint_eq(r.fetched, 6);
}
END_TEST

START_TEST(message_cut)
{
	struct status_account r = {.name = "a"};
	char big[1000];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	status_poll_ended(&r, SC_PROTO, &none, big, T0);
	ck_assert_uint_eq(strlen(r.fail_msg), STATUS_MSG_MAX - 1);
}
END_TEST

START_TEST(state_names)
{
	ck_assert_str_eq(status_state_name(STATUS_BACKOFF), "backing off");
	ck_assert_str_eq(status_state_key(STATUS_BACKOFF), "backoff");
	ck_assert_str_eq(status_state_name(STATUS_PAUSED), "paused");
	ck_assert_str_eq(status_state_name(STATUS_NSTATES), "?");
	ck_assert_str_eq(status_state_key(-1), "?");
}
END_TEST

/* The records of a small daemon: one of each state worth showing. */
static size_t
sample(struct status_account *r)
{
	size_t n = 0;

	r[n] = (struct status_account){.name = "good"};
	status_poll_started(&r[n], T0 - 60);
	status_poll_ended(&r[n], SC_OK, &ok_stats, "", T0 - 59);
	r[n].state = STATUS_WAITING;
	r[n].next = T0 + 241;
	r[n++].streak = 1;

	r[n] = good_then_bad(
	    "badauth", SC_AUTH, "-ERR [AUTH] bad\x1b[31mred\x1b[0m", T0 - 30);
	r[n].state = STATUS_BACKOFF;
	r[n].next = T0 + 3600;
	r[n++].streak = 1;

	r[n] = good_then_bad("nonet", SC_NET, "connect: refused", T0 - 10);
	r[n].state = STATUS_BACKOFF;
	r[n].next = T0 + 300;
	r[n++].streak = 3;

	r[n] = (struct status_account){.name = "nopass"};
	status_poll_ended(&r[n], SC_CONFIG, &none, "password: no file", T0 - 5);
	r[n].state = STATUS_PAUSED;
	r[n++].streak = 1;

	/* Failed later than all, but recovered since: resolved. */
	r[n] = good_then_bad("back", SC_NET, "reset", T0 - 2);
	status_poll_ended(&r[n], SC_OK, &ok_stats, "", T0 - 1);
	r[n].state = STATUS_POLLING;
	r[n].polling_since = T0;
	r[n++].streak = 1;
	return n;
}

START_TEST(tally_line)
{
	struct status_account r[8];
	struct status_tally t = {0};
	char buf[512];
	size_t i, n = sample(r);

	setup_tz();
	for (i = 0; i < n; i++)
		status_tally_add(&t, &r[i]);
	ck_assert_uint_eq(t.accounts, 5);
	ck_assert_uint_eq(t.by_state[STATUS_BACKOFF], 2);
	ck_assert_uint_eq(t.by_state[STATUS_PAUSED], 1);
	/* The most recent unresolved one: nopass, not the recovered one. */
	ck_assert_str_eq(t.fail_acct, "nopass");
	status_tally_line(&t, false, 12, T0, buf, sizeof(buf));
	ck_assert_str_eq(buf,
	    "5 accounts: 1 polling, 0 queued, 1 waiting, 2 backing off, 1 paused; 12 delivered since start; last error: nopass at 09:59:55: password: no file");

	/* Another day: the date is shown; stopping is said first. */
	status_tally_line(&t, true, 0, T0 + 86400, buf, sizeof(buf));
	ck_assert_str_eq(buf,
	    "Stopping: 5 accounts: 1 polling, 0 queued, 1 waiting, 2 backing off, 1 paused; 0 delivered since start; last error: nopass at 2027-01-15 09:59:55: password: no file");

	/* nopass recovers: the next most recent unresolved one shows. */
	status_poll_ended(&r[3], SC_OK, &none, "", T0 + 1);
	r[3].state = STATUS_WAITING;
	memset(&t, 0, sizeof(t));
	for (i = 0; i < n; i++)
		status_tally_add(&t, &r[i]);
	status_tally_line(&t, false, 12, T0, buf, sizeof(buf));
	ck_assert_ptr_nonnull(strstr(buf, "last error: nonet at 09:59:50: "));

	/* All recovered: no error at all; idle accounts are counted. */
	memset(&t, 0, sizeof(t));
	r[0].state = STATUS_IDLE;
	status_tally_add(&t, &r[0]);
	status_tally_line(&t, false, 3, T0, buf, sizeof(buf));
	ck_assert_str_eq(buf,
	    "1 accounts: 0 polling, 0 queued, 0 waiting, 0 backing off, 0 paused, 1 idle; 3 delivered since start");

	/* A short buffer is cut, terminated. */
	status_tally_line(&t, false, 3, T0, buf, 10);
	ck_assert_str_eq(buf, "1 account");
}
END_TEST

static struct json_object *
member(struct json_object *o, const char *key)
{
	struct json_object *v = NULL;

	ck_assert_msg(json_object_object_get_ex(o, key, &v), "no %s", key);
	return v;
}

static const char *
str(struct json_object *o, const char *key)
{
	return json_object_get_string(member(o, key));
}

START_TEST(json_doc)
{
	struct status_account r[8];
	struct json_object *doc, *a, *sum;
	size_t n = sample(r);

	doc = status_json(r, n, T0 - 3600, T0);
	ck_assert_str_eq(str(doc, "started"), "2027-01-15T09:00:00Z");
	ck_assert_str_eq(str(doc, "time"), "2027-01-15T10:00:00Z");
	ck_assert_int_eq(json_object_get_int(member(doc, "pid")), getpid());
	sum = member(doc, "summary");
	ck_assert_int_eq(json_object_get_int(member(sum, "accounts")), 5);
	ck_assert_int_eq(json_object_get_int(member(sum, "backoff")), 2);
	ck_assert_int_eq(json_object_get_int(member(sum, "paused")), 1);
	ck_assert_int_eq(json_object_get_int(member(sum, "fetched")), 15);
	ck_assert_uint_eq(json_object_array_length(member(doc, "accounts")), 5);

	a = json_object_array_get_idx(member(doc, "accounts"), 0);
	ck_assert_str_eq(str(a, "name"), "good");
	ck_assert_str_eq(str(a, "state"), "waiting");
	ck_assert(json_object_is_type(member(a, "why"), json_type_null));
	ck_assert(
	    json_object_is_type(member(a, "last_failure"), json_type_null));
	ck_assert_str_eq(str(a, "next_poll"), "2027-01-15T10:04:01Z");
	ck_assert_str_eq(str(a, "last_success"), "2027-01-15T09:59:01Z");
	ck_assert_str_eq(str(member(a, "last_poll"), "result"), "ok");
	ck_assert_int_eq(
	    json_object_get_int(member(member(a, "last_poll"), "left")), 2);
	ck_assert_int_eq(
	    json_object_get_int(member(member(a, "totals"), "bytes")), 4096);
	/* Seconds to the millisecond, not a float's last digits. */
	ck_assert_ptr_nonnull(
	    strstr(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN),
		"\"seconds\":0.250,"));

	/* The server's bytes escaped as the log escapes them. */
	a = json_object_array_get_idx(member(doc, "accounts"), 1);
	ck_assert_str_eq(str(a, "state"), "backoff");
	ck_assert_str_eq(str(member(a, "last_failure"), "message"),
	    "-ERR [AUTH] bad\\x1b[31mred\\x1b[0m");
	ck_assert_str_eq(
	    str(a, "why"), "auth: -ERR [AUTH] bad\\x1b[31mred\\x1b[0m");
	ck_assert(json_object_get_boolean(member(a, "failing")));
	ck_assert_int_eq(json_object_get_int(member(
			     member(member(a, "totals"), "failures"), "auth")),
	    1);

	/* Never polled to success, paused, no next poll. */
	a = json_object_array_get_idx(member(doc, "accounts"), 3);
	ck_assert_str_eq(str(a, "state"), "paused");
	ck_assert(json_object_is_type(member(a, "next_poll"), json_type_null));
	ck_assert(
	    json_object_is_type(member(a, "last_success"), json_type_null));
	ck_assert_str_eq(str(a, "why"), "config: password: no file");

	/* Recovered: the failure is on record, not failing, no why. */
	a = json_object_array_get_idx(member(doc, "accounts"), 4);
	ck_assert(!json_object_get_boolean(member(a, "failing")));
	ck_assert_str_eq(str(member(a, "last_failure"), "class"), "network");
	ck_assert_str_eq(str(a, "polling_since"), "2027-01-15T10:00:00Z");
	json_object_put(doc);
}
END_TEST

/* The pieces status_json_head() etc. put together, SLICE accounts each. */
static char *
answer_text(
    const struct status_account *r, size_t n, size_t slice, time_t start)
{
	char *head = status_json_head(r, n, start, T0), *text, *part;
	size_t from, count;
	FILE *f;

	ck_assert_ptr_nonnull(f = open_memstream(&text, &(size_t){0}));
	fputs(head, f);
	free(head);
	for (from = 0; from < n; from += count) {
		count = n - from < slice ? n - from : slice;
		part = status_json_accounts(r, from, count);
		fputs(part, f);
		free(part);
	}
	fputs(STATUS_JSON_TAIL, f);
	fclose(f);
	/* One line, as the socket carries it. */
	ck_assert_ptr_eq(strchr(text, '\n'), text + strlen(text) - 1);
	return text;
}

/* The same, parsed. */
static struct json_object *
pieces(const struct status_account *r, size_t n, size_t slice)
{
	char *text = answer_text(r, n, slice, T0 - 3600);
	struct json_object *doc = json_tokener_parse(text);

	ck_assert_msg(doc != NULL, "not JSON: %s", text);
	free(text);
	return doc;
}

/* The answer written in slices is the document, whatever the slice. */
START_TEST(json_slices)
{
	struct status_account r[8];
	struct json_object *whole, *sliced;
	size_t n = sample(r), slice;

	whole = status_json(r, n, T0 - 3600, T0);
	for (slice = 1; slice <= n + 1; slice++) {
		sliced = pieces(r, n, slice);
		ck_assert_msg(
		    json_object_equal(whole, sliced), "slice %zu", slice);
		json_object_put(sliced);
	}
	json_object_put(whole);
	/* No accounts: an empty list. */
	whole = status_json(r, 0, T0 - 3600, T0);
	sliced = pieces(r, 0, 3);
	ck_assert(json_object_equal(whole, sliced));
	ck_assert_uint_eq(
	    json_object_array_length(member(sliced, "accounts")), 0);
	json_object_put(whole);
	json_object_put(sliced);
}
END_TEST

/* What --status prints from TEXT; -1 if not an answer (nothing printed). */
static char *
print_of(const char *text, bool json, char *const *only, size_t nonly,
    ssize_t *missing)
{
	char *out = NULL;
	size_t len;
	FILE *f;

	ck_assert_ptr_nonnull(f = open_memstream(&out, &len));
	*missing = status_print(f, text, strlen(text), json, T0, only, nonly);
	fclose(f);
	if (*missing == -1)
		ck_assert_uint_eq(len, 0);
	return out;
}

/* The table of R's answer, as it comes over the socket. */
static char *
table_of(struct status_account *r, size_t n, char *const *only, size_t nonly,
    size_t *missing)
{
	char *text = answer_text(r, n, 3, T0 - 7200), *out;
	ssize_t m;

	out = print_of(text, false, only, nonly, &m);
	ck_assert_int_ge(m, 0);
	*missing = (size_t)m;
	free(text);
	return out;
}

/* The line of TEXT that starts with PREFIX, or fails. */
static char *
line_of(const char *text, const char *prefix)
{
	static char line[1024];
	const char *p = text, *e;

	for (; *p != '\0'; p = *e ? e + 1 : e) {
		e = strchr(p, '\n');
		if (e == NULL)
			e = p + strlen(p);
		if (strncmp(p, prefix, strlen(prefix)) == 0) {
			snprintf(line, sizeof(line), "%.*s", (int)(e - p), p);
			return line;
		}
	}
	ck_abort_msg("no line starting %s in:\n%s", prefix, text);
	return NULL;
}

START_TEST(table_all)
{
	struct status_account r[8];
	size_t n = sample(r), missing;
	char *t, head[256];

	setup_tz();
	t = table_of(r, n, NULL, 0, &missing);
	ck_assert_uint_eq(missing, 0);
	snprintf(head, sizeof(head),
	    "popfetchd %s, pid %d, up 2h: 5 accounts, 1 polling, 0 queued, 1 waiting, 2 backing off, 1 paused",
	    POPFETCHD_VERSION, (int)getpid());
	ck_assert_str_eq(line_of(t, "popfetchd "), head);
	ck_assert_str_eq(line_of(t, "ACCOUNT "),
	    "ACCOUNT  STATE        LAST POLL  RESULT    NEXT POLL     POLLS  FAILED  FETCHED");
	ck_assert_str_eq(line_of(t, "good "),
	    "good     waiting      59s ago    ok        in 4m             1       0        3");
	ck_assert_str_eq(line_of(t, "badauth "),
	    "badauth  backing off  30s ago    auth      in 60m            2       1        3");
	ck_assert_str_eq(line_of(t, "nopass "),
	    "nopass   paused       5s ago     config    on reload         1       1        0");
	ck_assert_str_eq(line_of(t, "back "),
	    "back     polling      1s ago     ok        after this        3       1        6");
	/* Why each failing account fails; the recovered one is not there. */
	ck_assert_str_eq(line_of(t, "badauth:"),
	    "badauth: auth 30s ago (1 in a row): -ERR [AUTH] bad\\x1b[31mred\\x1b[0m");
	ck_assert_str_eq(line_of(t, "nonet:"),
	    "nonet: network 10s ago (3 in a row): connect: refused");
	ck_assert_ptr_null(strstr(t, "back:"));
	free(t);
}
END_TEST

START_TEST(table_detail)
{
	struct status_account r[8];
	char *const only[] = {"nonet", "nosuch", "good"};
	size_t n = sample(r), missing;
	char *t;

	setup_tz();
	t = table_of(r, n, only, 3, &missing);
	ck_assert_uint_eq(missing, 1);
	ck_assert_ptr_null(strstr(t, "ACCOUNT "));
	ck_assert_str_eq(
	    line_of(t, "account       nonet"), "account       nonet");
	ck_assert_str_eq(line_of(t, "state         backing"),
	    "state         backing off (3 in a row): network: connect: refused");
	ck_assert_str_eq(line_of(t, "last failure  2027-01-15 09:59:50"),
	    "last failure  2027-01-15 09:59:50 (10s ago), unresolved: network: connect: refused");
	ck_assert_str_eq(line_of(t, "next poll     2027-01-15 10:05:00"),
	    "next poll     2027-01-15 10:05:00 (in 5m)");
	ck_assert_str_eq(line_of(t, "since start   2 polls"),
	    "since start   2 polls, 1 failed, network 1; fetched 3 (4096 bytes), deleted 3");
	/* The second account asked for, after a blank line. */
	ck_assert_ptr_nonnull(strstr(t, "\n\naccount       good\n"));
	ck_assert_str_eq(line_of(t, "last success  2027-01-15 09:59:01"),
	    "last success  2027-01-15 09:59:01 (59s ago)");
	ck_assert_str_eq(line_of(t, "              listed 5"),
	    "              listed 5, fetched 3 (4096 bytes), deleted 3, left 2, refused 0");
	free(t);

	/* Paused and never succeeded. */
	t = table_of(r, n, (char *const[]){"nopass"}, 1, &missing);
	ck_assert_uint_eq(missing, 0);
	ck_assert_str_eq(line_of(t, "last success"), "last success  never");
	ck_assert_str_eq(line_of(t, "next poll"), "next poll     on reload");
	free(t);
}
END_TEST

/* Whatever reaches the table, nothing but printable ASCII is printed. */
START_TEST(table_printable)
{
	static const char text[] =
	    "{\"summary\":{},\"accounts\":[{\"name\":\"a\\u001b[2Jb\","
	    "\"state\":\"backoff\",\"failing\":true,\"last_failure\":"
	    "{\"class\":\"x\",\"message\":\"m\\u0007\\u00e9\"}}]}";
	ssize_t missing;
	char *t = print_of(text, false, NULL, 0, &missing);
	size_t i;

	ck_assert_int_eq(missing, 0);
	for (i = 0; t[i] != '\0'; i++)
		ck_assert_msg(t[i] == '\n' || (t[i] >= 0x20 && t[i] < 0x7f),
		    "byte %zu is 0x%02x", i, (unsigned char)t[i]);
	ck_assert_ptr_nonnull(strstr(t, "a?[2Jb"));
	ck_assert_ptr_nonnull(strstr(t, ": m???\n"));
	free(t);
}
END_TEST

/* DOC as json-c prints it pretty, and a newline. */
static const char *
pretty(struct json_object *doc)
{
	static char buf[16384];
	int n = snprintf(buf, sizeof(buf), "%s\n",
	    json_object_to_json_string_ext(
		doc, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));

	ck_assert_int_lt(n, (int)sizeof(buf));
	return buf;
}

/*
 * --json prints the document as json-c prints it whole, though it reads
 * one account at a time: every account, none, or those -a names.
 */
START_TEST(json_print)
{
	struct status_account r[8];
	char *const only[] = {"nonet", "nosuch", "good"};
	struct json_object *doc, *sub, *a;
	size_t n = sample(r), k, i;
	char *text, *out;
	ssize_t missing;

	for (k = 0; k < 2; k++) {
		/* Every account, then none. */
		doc = status_json(r, k == 0 ? n : 0, T0 - 3600, T0);
		text = answer_text(r, k == 0 ? n : 0, 2, T0 - 3600);
		out = print_of(text, true, NULL, 0, &missing);
		ck_assert_int_eq(missing, 0);
		ck_assert_str_eq(out, pretty(doc));
		free(out);
		free(text);
		json_object_put(doc);
	}

	/* -a: the accounts named, in the order named; the rest as it is. */
	doc = status_json(r, n, T0 - 3600, T0);
	sub = json_object_new_array();
	for (k = 0; k < 3; k++)
		for (i = 0; i < n; i++) {
			a = json_object_array_get_idx(
			    member(doc, "accounts"), i);
			if (strcmp(str(a, "name"), only[k]) == 0)
				json_object_array_add(sub, json_object_get(a));
		}
	ck_assert_uint_eq(json_object_array_length(sub), 2);
	json_object_object_add(doc, "accounts", sub);
	text = answer_text(r, n, 64, T0 - 3600);
	out = print_of(text, true, only, 3, &missing);
	ck_assert_int_eq(missing, 1);
	ck_assert_str_eq(out, pretty(doc));
	free(out);
	free(text);
	json_object_put(doc);
}
END_TEST

/* Text that is not an answer prints nothing, however far it is read. */
START_TEST(print_not_answer)
{
	static const char *const bad[] = {
	    "",
	    "garbage",
	    "{\"summary\":{}}",
	    /* The accounts are not last, or not an array that ends it. */
	    "{\"accounts\":[],\"pid\":1}",
	    "{\"accounts\":[]",
	    "{\"accounts\":[]}x",
	    "{\"accounts\":[]}}",
	    "{\"accounts\":[{\"name\":\"a\"}",
	    "{\"accounts\":[{\"name\":\"a\"},]}",
	    "{\"accounts\":[{\"name\":\"a\"}{\"name\":\"b\"}]}",
	    "{\"accounts\":[{\"name\":\"a\"},1]}",
	    "{\"accounts\":[[]]}",
	    "{\"accounts\":[{\"name\":\"a\",}]}",
	    "{\"accounts\":[{\"name\":\"a\"}]",
	    /* The head is not an object, or not JSON. */
	    "[\"accounts\":[]}",
	    "{\"pid\":,\"accounts\":[]}",
	    /* The key first found where it is not the document's. */
	    "{\"summary\":{\"accounts\":[]},\"accounts\":[]}",
	};
	char *const only[] = {"a"};
	ssize_t missing;
	size_t i;
	int mode;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		for (mode = 0; mode < 4; mode++) {
			free(print_of(
			    bad[i], mode & 1, only, mode >> 1, &missing));
			ck_assert_msg(missing == -1, "%s (mode %d): %zd",
			    bad[i], mode, missing);
		}
	/* In a string, the key is escaped: not found there. */
	free(print_of("{\"version\":\"\\\"accounts\\\":[\",\"accounts\":[]}",
	    false, NULL, 0, &missing));
	ck_assert_int_eq(missing, 0);
	/* White space between the parts is JSON's, and allowed. */
	free(print_of(
	    "{\"accounts\":[ {\"name\":\"a\"} ,\n{\"name\":\"b\"} ] }\n", false,
	    only, 1, &missing));
	ck_assert_int_eq(missing, 0);
}
END_TEST

struct label_row {
	const char *in, *out;
};

static const struct label_row label_rows[] = {
    {"work", "work"},
    {"", ""},
    {"a\"b", "a\\\"b"},
    {"back\\slash", "back\\\\slash"},
    {"two\nlines", "two\\nlines"},
    {"\\\"\n", "\\\\\\\"\\n"},
    /* Other bytes are the format's own: UTF-8 stays as it is. */
    {"caf\xc3\xa9\t", "caf\xc3\xa9\t"},
};

START_TEST(label_escape)
{
	const struct label_row *row = &label_rows[_i];
	char buf[64], small[4];
	size_t need = strlen(row->out);

	ck_assert_uint_eq(status_label_escape(buf, sizeof(buf), row->in), need);
	ck_assert_str_eq(buf, row->out);
	/* Cut short: terminated, the length still the whole one. */
	ck_assert_uint_eq(
	    status_label_escape(small, sizeof(small), row->in), need);
	ck_assert_uint_eq(strlen(small), need < 3 ? need : 3);
	ck_assert_int_eq(strncmp(small, row->out, strlen(small)), 0);
}
END_TEST

/* The value of the sample NAME{LABELS} in TEXT; fails if absent. */
static double
sample_value(const char *text, const char *series)
{
	char pat[256];
	const char *p;

	snprintf(pat, sizeof(pat), "\n%s ", series);
	p = strstr(text, pat);
	ck_assert_msg(p != NULL, "no sample %s", series);
	return strtod(p + strlen(pat), NULL);
}

/*
 * The text format's grammar, as far as we write it: comments are HELP
 * or TYPE of the metric that follows; a sample is a metric name, labels
 * in braces with quoted values, a space and a number; counters end in
 * _total; every metric name starts popfetchd_.
 */
static void
check_exposition(const char *text)
{
	char name[128], typed[128] = "", type[16];
	const char *p, *e, *v;
	char *end;

	for (p = text; *p != '\0'; p = e + 1) {
		e = strchr(p, '\n');
		ck_assert_msg(e != NULL, "last line without a line feed");
		if (sscanf(p, "# TYPE %127s %15s", typed, type) == 2) {
			ck_assert(strcmp(type, "counter") == 0 ||
				  strcmp(type, "gauge") == 0);
			if (strcmp(type, "counter") == 0)
				ck_assert_msg(
				    strlen(typed) > 6 &&
					strcmp(typed + strlen(typed) - 6,
					    "_total") == 0,
				    "counter %s", typed);
			continue;
		}
		if (strncmp(p, "# HELP ", 7) == 0)
			continue;
		ck_assert_msg(sscanf(p, "%127[a-z_]", name) == 1, "%.*s",
		    (int)(e - p), p);
		ck_assert_str_eq(name, typed);
		ck_assert_int_eq(strncmp(name, "popfetchd_", 10), 0);
		v = p + strlen(name);
		if (*v == '{')
			v = strstr(v, "} ") + 1;
		ck_assert(*v == ' ');
		strtod(v + 1, &end);
		ck_assert_msg(end == e, "not a number: %.*s", (int)(e - p), p);
	}
}

START_TEST(metrics_text)
{
	struct status_account r[8];
	size_t n = sample(r), len;
	char series[128];
	double sum = 0;
	int s;
	char *t = status_metrics_text(r, n, T0 - 3600, NULL, &len);

	ck_assert_ptr_nonnull(t);
	ck_assert_uint_eq(len, strlen(t));
	check_exposition(t);
	ck_assert_double_eq(
	    sample_value(t, "popfetchd_start_time_seconds"), T0 - 3600);
	ck_assert_double_eq(
	    sample_value(t, "popfetchd_accounts{state=\"backoff\"}"), 2);
	ck_assert_double_eq(
	    sample_value(t, "popfetchd_polls_total{account=\"back\"}"), 3);
	ck_assert_double_eq(
	    sample_value(t, "popfetchd_fetched_bytes_total{account=\"good\"}"),
	    4096);
	ck_assert_double_eq(
	    sample_value(t,
		"popfetchd_poll_failures_total{account=\"nonet\",class=\"network\"}"),
	    1);
	ck_assert_double_eq(
	    sample_value(t,
		"popfetchd_poll_failures_total{account=\"nonet\",class=\"auth\"}"),
	    0);
	ck_assert_double_eq(
	    sample_value(t, "popfetchd_account_failing{account=\"nonet\"}"), 1);
	ck_assert_double_eq(
	    sample_value(t, "popfetchd_account_failing{account=\"back\"}"), 0);
	ck_assert_double_eq(
	    sample_value(t,
		"popfetchd_last_success_timestamp_seconds{account=\"nopass\"}"),
	    0);
	ck_assert_double_eq(
	    sample_value(
		t, "popfetchd_next_poll_timestamp_seconds{account=\"nonet\"}"),
	    T0 + 300);
	ck_assert_double_eq(
	    sample_value(
		t, "popfetchd_last_poll_duration_seconds{account=\"good\"}"),
	    0.25);
	ck_assert_double_eq(
	    sample_value(t, "popfetchd_server_messages_left{account=\"good\"}"),
	    2);
	/* The server's text never reaches the metrics. */
	ck_assert_ptr_null(strstr(t, "ERR"));
	free(t);

	/* A name that needs escaping is escaped. */
	r[0].name = "we\"ird\\";
	t = status_metrics_text(r, 1, T0, NULL, &len);
	ck_assert_double_eq(
	    sample_value(t, "popfetchd_polls_total{account=\"we\\\"ird\\\\\"}"),
	    1);
	free(t);

	/* No accounts: the daemon's lines, still well formed. */
	t = status_metrics_text(r, 0, T0, NULL, &len);
	check_exposition(t);
	ck_assert_double_eq(
	    sample_value(t, "popfetchd_accounts{state=\"paused\"}"), 0);
	free(t);

	/*
	 * One of several instances of a file: its own series carry the
	 * shard, so that two files on one host do not repeat a series.
	 */
	t = status_metrics_text(r, 1, T0, "2/4", &len);
	check_exposition(t);
	ck_assert_double_eq(
	    sample_value(t, "popfetchd_start_time_seconds{shard=\"2/4\"}"),
	    (double)T0);
	for (s = 0; s < STATUS_NSTATES; s++) {
		snprintf(series, sizeof(series),
		    "popfetchd_accounts{shard=\"2/4\",state=\"%s\"}",
		    status_state_key(s));
		sum += sample_value(t, series);
	}
	ck_assert_double_eq(sum, 1);
	ck_assert_ptr_null(strstr(t, "popfetchd_accounts{state="));
	free(t);
}
END_TEST

/* A source of three records, as the scheduler is one. */
static void
three(void *arg, status_visit_fn visit, void *varg)
{
	struct status_account *r = arg;
	int i;

	for (i = 0; i < 3; i++)
		visit(varg, &r[i]);
}

START_TEST(collect)
{
	struct status_account src[3] = {{.name = "x", .polls = 1},
	    {.name = "y"}, {.name = "z", .polls = 3}};
	struct status_account *r;
	size_t n;

	ck_assert_int_eq(status_collect(three, src, &r, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_str_eq(r[2].name, "z");
	ck_assert_uint_eq(r[2].polls, 3);
	/* The names are copies: a reload may free the originals. */
	ck_assert_ptr_ne(r[2].name, src[2].name);
	ck_assert_str_eq(r[0].name, "x");
	free(r);
}
END_TEST

static Suite *
status_suite(void)
{
	Suite *s = suite_create("status");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, poll_end_counts);
	tcase_add_test(tc, message_cut);
	tcase_add_test(tc, state_names);
	tcase_add_test(tc, tally_line);
	tcase_add_test(tc, json_doc);
	tcase_add_test(tc, json_slices);
	tcase_add_test(tc, table_all);
	tcase_add_test(tc, table_detail);
	tcase_add_test(tc, table_printable);
	tcase_add_test(tc, json_print);
	tcase_add_test(tc, print_not_answer);
	tcase_add_loop_test(
	    tc, label_escape, 0, sizeof(label_rows) / sizeof(label_rows[0]));
	tcase_add_test(tc, metrics_text);
	tcase_add_test(tc, collect);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return check_main(status_suite());
}
