/*
 * popfetchd --import-uids: the seen UIDs of another fetcher into the
 * states of the accounts they belong to, through the journal commit a
 * poll uses, under the same lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include "conf.h"
#include "migrate.h"
#include "state.h"

#define IMPORT_ERR_MAX 256

/* One record read, its strings owned. */
struct rec {
	char *host, *user, *uid, *key;
	unsigned port;
	time_t first_seen;
	bool matched;
};

struct recs {
	struct rec *v;
	size_t n, cap;
	FILE *err;
	int errors;
	bool nomem;
};

/* One account to import into, and what it matched. */
struct target {
	const struct account *a;
	const char *host, *user; /* what is matched: the account's or -m */
	size_t nmatch, ntimed;
};

static void
on_error(void *arg, const char *msg)
{
	struct recs *rs = arg;

	fprintf(rs->err, "popfetchd: %s\n", msg);
}

static void
on_record(void *arg, const struct migrate_record *r)
{
	struct recs *rs = arg;
	struct rec *nv, *x;

	if (rs->nomem)
		return;
	if (rs->n == rs->cap) {
		rs->cap = rs->cap == 0 ? 256 : rs->cap * 2;
		if ((nv = reallocarray(rs->v, rs->cap, sizeof(*nv))) == NULL) {
			rs->nomem = true;
			return;
		}
		rs->v = nv;
	}
	x = &rs->v[rs->n];
	*x = (struct rec){.port = r->port, .first_seen = r->first_seen};
	x->host = strdup(r->host);
	x->user = strdup(r->user);
	x->uid = strdup(r->uid);
	x->key = r->key != NULL ? strdup(r->key) : NULL;
	if (x->host == NULL || x->user == NULL || x->uid == NULL ||
	    (r->key != NULL && x->key == NULL)) {
		rs->nomem = true;
		free(x->host), free(x->user), free(x->uid), free(x->key);
		return;
	}
	rs->n++;
}

static void
recs_free(struct recs *rs)
{
	size_t i;

	for (i = 0; i < rs->n; i++) {
		free(rs->v[i].host);
		free(rs->v[i].user);
		free(rs->v[i].uid);
		free(rs->v[i].key);
	}
	free(rs->v);
}

/* Reads and parses O->path into RS: EX_OK or an exit status. */
static int
read_records(const struct migrate_import *o, struct recs *rs)
{
	struct migrate_sink sink = {on_record, on_error, rs};
	char *text;
	size_t len;

	if (migrate_read_file(o->path, &text, &len) == -1) {
		fprintf(
		    rs->err, "popfetchd: %s: %s\n", o->path, strerror(errno));
		return errno == ENOENT ? EX_NOINPUT : EX_IOERR;
	}
	rs->errors = migrate_parse(o->fmt, o->path, text, len, &sink);
	free(text);
	if (rs->nomem) {
		fprintf(rs->err, "popfetchd: out of memory\n");
		return EX_OSERR;
	}
	return EX_OK;
}

/* The accounts to import into (-a, or all), in T (CONF's count long). */
static int
pick_targets(const struct conf *conf, const struct migrate_import *o,
    struct target *t, size_t *nt, FILE *err)
{
	const struct account *a;
	size_t i;

	*nt = 0;
	for (i = 0; i < (o->nonly > 0 ? o->nonly : conf->naccounts); i++) {
		a = o->nonly > 0 ? conf_account(conf, o->only[i])
				 : &conf->accounts[i];
		if (a == NULL) {
			fprintf(err, "popfetchd: %s: no account \"%s\"\n",
			    conf->path, o->only[i]);
			return EX_CONFIG;
		}
		t[*nt] = (struct target){.a = a,
		    .host = o->match_host != NULL ? o->match_host : a->host,
		    .user = o->match_user != NULL ? o->match_user
			    : a->user != NULL	  ? a->user
						  : ""};
		(*nt)++;
	}
	return EX_OK;
}

/* Whether record R goes into target T. */
static bool
belongs(
    const struct migrate_import *o, const struct rec *r, const struct target *t)
{
	struct migrate_record m = {.host = r->host,
	    .port = r->port,
	    .user = r->user,
	    .uid = r->uid,
	    .key = r->key};

	return migrate_match(o->fmt, &m, t->host, t->a->port, t->user);
}

/* What the first-seen times of T's records are, for the report. */
static const char *
times_note(const struct target *t)
{
	if (t->ntimed == t->nmatch)
		return "first_seen=from-file";
	if (t->ntimed == 0)
		return "first_seen=now (the file keeps no times: delete_after_days counts from this import)";
	return "first_seen=from-file-where-known";
}

/* The dry run of target T: what would be recorded. */
static void
dry_run(const struct migrate_import *o, const struct recs *rs,
    const struct target *t, FILE *out)
{
	size_t i;

	for (i = 0; i < rs->n; i++) {
		if (!belongs(o, &rs->v[i], t))
			continue;
		fprintf(out,
		    "would import account=%s uid=%s first_seen=", t->a->name,
		    rs->v[i].uid);
		if (rs->v[i].first_seen > 0)
			fprintf(out, "%lld\n", (long long)rs->v[i].first_seen);
		else
			fprintf(out, "unknown\n");
	}
	fprintf(out, "account=%s would_import=%zu %s\n", t->a->name, t->nmatch,
	    times_note(t));
}

/* Records T's UIDs in its state and commits: EX_OK or an exit status. */
static int
import_into(const struct conf *conf, const struct migrate_import *o,
    const struct recs *rs, const struct target *t, FILE *out, FILE *err)
{
	char errbuf[IMPORT_ERR_MAX];
	struct state *st;
	size_t i, added = 0, had = 0;
	time_t now = time(NULL), when;
	const struct rec *r;

	st = state_open_mailbox(conf->state_dir, t->a->name, t->a->host,
	    t->a->port, t->a->user != NULL ? t->a->user : "", errbuf,
	    sizeof(errbuf));
	if (st == NULL && errno == EWOULDBLOCK) {
		fprintf(err,
		    "popfetchd: account %s: its state is locked by another process (a popfetchd polling it): nothing imported; import again when the poll is over, or stop the daemon first\n",
		    t->a->name);
		return EX_TEMPFAIL;
	}
	if (st == NULL) {
		fprintf(err, "popfetchd: account %s: state: %s\n", t->a->name,
		    errbuf);
		return EX_CANTCREAT;
	}
	if (state_load_notice(st) != NULL)
		fprintf(err, "popfetchd: account %s: state: %s\n", t->a->name,
		    state_load_notice(st));
	for (i = 0; i < rs->n; i++) {
		r = &rs->v[i];
		if (!belongs(o, r, t))
			continue;
		if (state_has(st, r->uid, NULL)) {
			had++;
			continue;
		}
		/* A time ahead of the clock would keep it from ageing. */
		when = r->first_seen > 0 && r->first_seen <= now ? r->first_seen
								 : now;
		if (state_record(st, r->uid, when) == -1) {
			fprintf(err, "popfetchd: account %s: %s\n", t->a->name,
			    strerror(errno));
			state_close(&st);
			return EX_OSERR;
		}
		added++;
	}
	if (state_commit(st) == -1) {
		fprintf(err,
		    "popfetchd: account %s: state: cannot commit: %s; nothing imported\n",
		    t->a->name, strerror(errno));
		state_close(&st);
		return EX_IOERR;
	}
	state_close(&st);
	fprintf(out, "account=%s imported=%zu already=%zu %s\n", t->a->name,
	    added, had, times_note(t));
	if (!t->a->keep && added > 0)
		fprintf(out,
		    "account=%s has keep = false: its next poll deletes these messages from the server without fetching them again (the old tool delivered them)\n",
		    t->a->name);
	return EX_OK;
}

/* Counts what each target matches, marking the records matched. */
static void
match_all(const struct migrate_import *o, struct recs *rs, struct target *t,
    size_t nt)
{
	size_t i, j;

	for (i = 0; i < rs->n; i++)
		for (j = 0; j < nt; j++)
			if (belongs(o, &rs->v[i], &t[j])) {
				rs->v[i].matched = true;
				t[j].nmatch++;
				if (rs->v[i].first_seen > 0)
					t[j].ntimed++;
			}
}

/* A mailbox of the file that no account matched, and its UIDs. */
struct group {
	const struct rec *first;
	size_t n;
};

static bool
same_mailbox(const struct rec *a, const struct rec *b)
{
	return a->port == b->port && strcmp(a->host, b->host) == 0 &&
	       strcmp(a->user, b->user) == 0;
}

/*
 * One line per mailbox of the file that no account matched; returns how
 * many records that leaves out. A file names few mailboxes, so a list
 * searched from the front is enough.
 */
static size_t
report_unmatched(const struct recs *rs, FILE *out)
{
	struct group *g = NULL, *ng;
	size_t i, j, ng_n = 0, cap = 0, total = 0;

	for (i = 0; i < rs->n; i++) {
		if (rs->v[i].matched)
			continue;
		total++;
		for (j = 0; j < ng_n && !same_mailbox(g[j].first, &rs->v[i]);
		     j++)
			;
		if (j < ng_n) {
			g[j].n++;
			continue;
		}
		if (ng_n == cap) {
			cap = cap == 0 ? 8 : cap * 2;
			if ((ng = reallocarray(g, cap, sizeof(*g))) == NULL) {
				cap = ng_n; /* the report is shorter, no more */
				continue;
			}
			g = ng;
		}
		g[ng_n++] = (struct group){&rs->v[i], 1};
	}
	for (j = 0; j < ng_n; j++)
		fprintf(out,
		    "no account matches host=%s port=%u user=%s uids=%zu\n",
		    g[j].first->host, g[j].first->port, g[j].first->user,
		    g[j].n);
	free(g);
	return total;
}

int
migrate_import_run(const struct conf *conf, const struct migrate_import *o,
    FILE *out, FILE *err)
{
	struct recs rs = {.err = err};
	struct target *t;
	size_t nt, i, unmatched;
	int rc, worst = EX_OK;

	if ((rc = read_records(o, &rs)) != EX_OK)
		return rc;
	if ((t = calloc(conf->naccounts, sizeof(*t))) == NULL) {
		recs_free(&rs);
		return EX_OSERR;
	}
	if ((rc = pick_targets(conf, o, t, &nt, err)) != EX_OK)
		goto done;
	match_all(o, &rs, t, nt);
	unmatched = report_unmatched(&rs, out);
	for (i = 0; i < nt; i++) {
		if (t[i].nmatch == 0)
			continue;
		if (o->dry_run)
			dry_run(o, &rs, &t[i], out);
		else if ((rc = import_into(conf, o, &rs, &t[i], out, err)) !=
			 EX_OK)
			worst = rc;
	}
	if (rs.n == 0 && rs.errors == 0)
		fprintf(out, "%s: no UIDs in the file\n", o->path);
	else if (unmatched == rs.n)
		fprintf(err,
		    "popfetchd: %s: no record matches an account: name one with -a and give --match-host and --match-user as the file has them\n",
		    o->path);
	rc = worst != EX_OK					? worst
	     : rs.errors > 0 || (rs.n > 0 && unmatched == rs.n) ? EX_DATAERR
								: EX_OK;
	if (rs.errors > 0)
		fprintf(err,
		    "popfetchd: %s: %d line(s) skipped (above); the rest %s\n",
		    o->path, rs.errors,
		    o->dry_run ? "would be imported" : "was imported");
done:
	free(t);
	recs_free(&rs);
	return rc;
}
