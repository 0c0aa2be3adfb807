/*
 * The Prometheus text exposition of the records (the metrics file's
 * text): one HELP and TYPE per metric, then a sample per account.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "status.h"

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
m_last_held(const struct status_account *r)
{
	return r->last.held;
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
    {"popfetchd_last_poll_held_seconds", "gauge",
	"Of the last poll, how long what the server sent waited unread "
	"for delivery (a slow disk, LMTP server or MDA).",
	m_last_held},
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
metrics_daemon(FILE *f, const struct status_account *r, size_t n, time_t start,
    const char *shard)
{
	struct status_tally t = {0};
	char lab[2 * STATUS_NAME_MAX + 1] = "";
	const char *sep = shard != NULL ? "," : "";
	size_t i;
	int s;

	for (i = 0; i < n; i++)
		status_tally_add(&t, &r[i]);
	if (shard != NULL)
		status_label_escape(lab, sizeof(lab), shard);
	metric_head(f, "popfetchd_start_time_seconds", "gauge",
	    "When the daemon started, in seconds since the epoch.");
	if (shard != NULL)
		fprintf(f, "popfetchd_start_time_seconds{shard=\"%s\"} %lld\n",
		    lab, (long long)start);
	else
		fprintf(
		    f, "popfetchd_start_time_seconds %lld\n", (long long)start);
	metric_head(f, "popfetchd_accounts", "gauge",
	    "Accounts by state (idle, queued, polling, waiting, backoff, paused).");
	for (s = 0; s < STATUS_NSTATES; s++)
		fprintf(f, "popfetchd_accounts{%s%s%s%sstate=\"%s\"} %zu\n",
		    shard != NULL ? "shard=\"" : "", lab,
		    shard != NULL ? "\"" : "", sep, status_state_key(s),
		    t.by_state[s]);
}

char *
status_metrics_text(const struct status_account *r, size_t n, time_t start,
    const char *shard, size_t *len)
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
	metrics_daemon(f, r, n, start, shard);
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
