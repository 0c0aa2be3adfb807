/*
 * The table popfetchd --status prints, made from the daemon's JSON answer
 * (which may come from another version, or be garbage): every field is
 * looked up with a default, and nothing but printable ASCII is printed.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "status.h"

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
		if (strcmp(key, status_state_key(s)) == 0)
			return status_state_name(s);
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
		fprintf(f, ", %lld %s",
		    get_int(sum, status_state_key(shown[i])),
		    status_state_name(shown[i]));
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

/* The OAuth2 refresh token's age and expiry, if the account has one. */
static void
detail_token(FILE *f, struct json_object *tok, time_t now)
{
	if (tok == NULL)
		return;
	fprintf(f, "oauth2 token  obtained ");
	print_when(f, get_time(tok, "refresh_token_obtained"), now, "unknown");
	fprintf(f, ", expires ");
	print_when(f, get_time(tok, "refresh_token_expires"), now,
	    "when the provider decides");
	putc('\n', f);
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
	detail_token(f, get(a, "oauth2"), now);
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
