/*
 * What popfetchd --status prints, made from the daemon's JSON answer
 * (which may come from another version, or be garbage): the table, the
 * details of some accounts, or the document again, indented. Every field
 * is looked up with a default, and the table prints nothing but printable
 * ASCII.
 *
 * The answer is read one account at a time. As one json-c document it
 * takes about 7 KiB per account, most of the client's time is spent
 * building it, and 100,000 accounts would take 700 MiB; read this way,
 * the client holds the text, one account's objects and what it prints.
 */
#include <sys/types.h>

#include <ctype.h>
#include <limits.h>
#include <stdbool.h>
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

/* A's row of the table but its name, which is padded to the longest. */
static void
table_row(FILE *f, struct json_object *a, time_t now)
{
	struct json_object *last = get(a, "last_poll"), *tot = get(a, "totals");
	const char *state = get_str(a, "state", "?");
	char b1[48], b2[48];

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

/* Why A's last poll failed, if it is failing. */
static void
table_failure(FILE *f, struct json_object *a, time_t now)
{
	struct json_object *fail = get(a, "last_failure");
	char b[48];

	if (!json_object_get_boolean(get(a, "failing")))
		return;
	print_safe(f, get_str(a, "name", "?"), 0);
	fprintf(f, ": ");
	print_safe(f, get_str(fail, "class", "?"), 0);
	fprintf(f, " %s (%lld in a row): ",
	    relative(b, sizeof(b), get_time(fail, "time"), now, "-"),
	    get_int(a, "streak"));
	print_safe(f, get_str(fail, "message", ""), 0);
	putc('\n', f);
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

/* --- the answer, one account at a time -------------------------------- */

/* The accounts' key as the daemon writes it: last, its array left open. */
#define ANSWER_ACCOUNTS "\"accounts\":["

struct answer {
	struct json_object *head; /* the document with no accounts */
	struct json_tokener *tok;
	const char *p, *end; /* the accounts' text not read yet */
	bool done;
};

static void
answer_close(struct answer *ans)
{
	json_object_put(ans->head);
	if (ans->tok != NULL)
		json_tokener_free(ans->tok);
}

/*
 * Reads the head of TEXT (LEN bytes, NUL-terminated): everything before
 * the accounts, which the daemon writes last (status_json_head()). Its
 * members are the daemon's own, none a string an account could put the
 * accounts' key into; one that did would make the head fail to parse
 * below, not mislead. 0, or -1 if TEXT is not an answer.
 */
static int
answer_open(struct answer *ans, const char *text, size_t len)
{
	const char *key = strstr(text, ANSWER_ACCOUNTS);
	struct json_object *accts;
	char *head;
	size_t n;

	*ans = (struct answer){.end = text + len};
	if (key == NULL || len > INT_MAX)
		return -1;
	n = (size_t)(key - text) + strlen(ANSWER_ACCOUNTS);
	if ((ans->tok = json_tokener_new()) == NULL ||
	    (head = malloc(n + 3)) == NULL) {
		answer_close(ans);
		return -1;
	}
	/*
	 * Strict, as the daemon writes (no trailing commas, say); each
	 * account is followed by the rest of the text.
	 */
	json_tokener_set_flags(
	    ans->tok, JSON_TOKENER_STRICT | JSON_TOKENER_ALLOW_TRAILING_CHARS);
	memcpy(head, text, n);
	memcpy(head + n, "]}", 3);
	ans->head = json_tokener_parse_ex(ans->tok, head, (int)n + 2);
	free(head);
	/* The key must be the head's last member, its array empty. */
	if (json_tokener_get_parse_end(ans->tok) != n + 2 ||
	    !json_object_is_type(ans->head, json_type_object) ||
	    !json_object_object_get_ex(ans->head, "accounts", &accts) ||
	    !json_object_is_type(accts, json_type_array) ||
	    json_object_array_length(accts) != 0) {
		answer_close(ans);
		return -1;
	}
	json_object_object_del(ans->head, "accounts");
	ans->p = text + n;
	return 0;
}

/* The text at P, which ends at END, with no JSON white space first. */
static const char *
skip_space(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	return p;
}

/*
 * The next account of ANS into *A (the caller puts it): 1, or 0 after
 * the last, or -1 if the text is not an answer after all.
 */
static int
answer_next(struct answer *ans, struct json_object **a)
{
	const char *p = skip_space(ans->p, ans->end);

	if (ans->done)
		return 0;
	if (p < ans->end && *p == ']') {
		/* The document's end, then the line's. */
		p = skip_space(p + 1, ans->end);
		if (p == ans->end || *p != '}' ||
		    skip_space(p + 1, ans->end) != ans->end)
			return -1;
		ans->done = true;
		return 0;
	}
	if (p == ans->end || *p != '{')
		return -1;
	json_tokener_reset(ans->tok);
	*a = json_tokener_parse_ex(ans->tok, p, (int)(ans->end - p));
	if (*a == NULL)
		return -1;
	p = skip_space(p + json_tokener_get_parse_end(ans->tok), ans->end);
	if (p < ans->end && *p == ',') {
		/* After a comma, an account; without one, the end. */
		p = skip_space(p + 1, ans->end);
		if (p == ans->end || *p != '{')
			p = NULL;
	} else if (p == ans->end || *p != ']')
		p = NULL;
	if (p == NULL) {
		json_object_put(*a);
		return -1;
	}
	ans->p = p;
	return 1;
}

/* --- what is printed ---------------------------------------------------- */

/*
 * Every account's row, then why each failing account fails. The rows are
 * made as the accounts are read, their names kept aside until the
 * longest is known.
 */
static int
table_all(FILE *f, struct answer *ans, time_t now)
{
	char *rows = NULL, *fails = NULL, **names = NULL, **nn, *row;
	size_t rlen, flen, n = 0, cap = 0, i, len;
	FILE *rf = open_memstream(&rows, &rlen);
	FILE *ff = open_memstream(&fails, &flen);
	struct json_object *a;
	int width = 7, r = -1;

	if (rf == NULL || ff == NULL)
		goto out;
	while ((r = answer_next(ans, &a)) == 1) {
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			if ((nn = reallocarray(names, cap, sizeof(*nn))) ==
			    NULL) {
				json_object_put(a);
				r = -1;
				break;
			}
			names = nn;
		}
		if ((names[n] = strdup(get_str(a, "name", "?"))) == NULL) {
			json_object_put(a);
			r = -1;
			break;
		}
		if ((len = strlen(names[n++])) > (size_t)width)
			width = (int)len; /* the answer is far below INT_MAX */
		table_row(rf, a, now);
		table_failure(ff, a, now);
		json_object_put(a);
	}
out:
	if ((rf != NULL && fclose(rf) != 0) || (ff != NULL && fclose(ff) != 0))
		r = -1;
	if (r == 0) {
		table_header(f, ans->head, now);
		fprintf(f, "%-*s  %-13s%-11s%-10s%-12s%7s %7s %8s\n", width,
		    "ACCOUNT", "STATE", "LAST POLL", "RESULT", "NEXT POLL",
		    "POLLS", "FAILED", "FETCHED");
		for (row = rows, i = 0; i < n; i++) {
			print_safe(f, names[i], width + 2);
			len = strcspn(row, "\n") + 1;
			fwrite(row, 1, len, f);
			row += len;
		}
		if (flen > 0)
			fprintf(f, "\n%s", fails);
	}
	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(rows);
	free(fails);
	return r;
}

/*
 * The accounts of ANS called as ONLY says, in its order, into FOUND (the
 * caller puts them; NULL: not there).
 */
static int
answer_find(struct answer *ans, char *const *only, size_t nonly,
    struct json_object **found)
{
	struct json_object *a;
	size_t i;
	int r;

	while ((r = answer_next(ans, &a)) == 1) {
		for (i = 0; i < nonly; i++)
			if (found[i] == NULL &&
			    strcmp(get_str(a, "name", ""), only[i]) == 0)
				found[i] = json_object_get(a);
		json_object_put(a);
	}
	return r;
}

/* O as json-c's pretty text, each line after the first indented by IND. */
static void
put_pretty(FILE *f, struct json_object *o, const char *ind)
{
	const char *s = json_object_to_json_string_ext(
	    o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE);

	/* A newline in it is the layout's: a string's own is escaped. */
	for (; *s != '\0'; s++) {
		putc(*s, f);
		if (*s == '\n')
			fputs(ind, f);
	}
}

/*
 * The document again, as json-c would print it whole: its head, then the
 * accounts, every one as it is read (FOUND NULL) or FOUND's N that are.
 */
static int
json_all(FILE *f, struct answer *ans, struct json_object **found, size_t n)
{
	struct json_object_iter it;
	struct json_object *a, *key;
	bool first = true;
	size_t i = 0;
	int r = 0;

	fputs("{", f);
	json_object_object_foreachC(ans->head, it)
	{
		if ((key = json_object_new_string(it.key)) == NULL)
			return -1;
		fputs("\n  ", f);
		put_pretty(f, key, "");
		json_object_put(key);
		putc(':', f);
		put_pretty(f, it.val, "  ");
		putc(',', f);
	}
	fputs("\n  \"accounts\":[", f);
	for (;;) {
		if (found == NULL && (r = answer_next(ans, &a)) != 1)
			break;
		if (found != NULL) {
			for (; i < n && found[i] == NULL; i++)
				;
			if (i == n)
				break;
			a = json_object_get(found[i++]);
		}
		fputs(first ? "\n    " : ",\n    ", f);
		first = false;
		put_pretty(f, a, "    ");
		json_object_put(a);
	}
	fputs("\n  ]\n}\n", f);
	return r;
}

/* The details of the accounts ONLY names, FOUND in ANS. */
static int
details(FILE *f, struct answer *ans, bool json, time_t now, char *const *only,
    size_t nonly, struct json_object **found)
{
	size_t i, missing = 0;

	if (answer_find(ans, only, nonly, found) == -1)
		return -1;
	if (json)
		return json_all(f, ans, found, nonly);
	for (i = 0; i < nonly; i++) {
		if (found[i] == NULL) {
			missing++;
			continue;
		}
		fprintf(f, "%s", i > missing ? "\n" : "");
		detail(f, found[i], now);
	}
	return 0;
}

ssize_t
status_print(FILE *f, const char *text, size_t len, bool json, time_t now,
    char *const *only, size_t nonly)
{
	struct json_object **found = NULL;
	char *out = NULL;
	size_t olen, i, missing = 0;
	struct answer ans;
	FILE *of;
	int r = -1;

	if (answer_open(&ans, text, len) == -1)
		return -1;
	/* Nothing is printed unless the whole answer is read. */
	if ((of = open_memstream(&out, &olen)) == NULL)
		goto out;
	if (nonly == 0)
		r = json ? json_all(of, &ans, NULL, 0)
			 : table_all(of, &ans, now);
	else if ((found = calloc(nonly, sizeof(*found))) != NULL)
		r = details(of, &ans, json, now, only, nonly, found);
	if (fclose(of) != 0)
		r = -1;
	if (r == 0)
		fwrite(out, 1, olen, f);
	for (i = 0; found != NULL && i < nonly; i++)
		missing += found[i] == NULL;
	for (i = 0; found != NULL && i < nonly; i++)
		json_object_put(found[i]);
out:
	free(found);
	free(out);
	answer_close(&ans);
	return r == -1 ? -1 : (ssize_t)missing;
}
