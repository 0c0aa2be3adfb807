/*
 * Tests of the session (daemon/session*.c) over a real socket, against a
 * scripted POP3 peer that runs on the session's own event loop: what the
 * peer receives and in what order, what lands in the Maildir and the
 * state, the class and counts of the done callback, the traced states of
 * authentication, the pipelined listing, --list, a reply far longer than
 * LIST said, and a stop during the fetch. No sleeps: each case runs the
 * loop until the done callback, bounded by a deadline that fails it.
 *
 * The private header is read for SESSION_INFLIGHT_BYTES only: the stop
 * case sizes its messages so that exactly two RETRs are in flight.
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "backoff.h"
#include "conf.h"
#include "log.h"
#include "session.h"
#include "session_priv.h"
#include "state.h"
#include "worker.h"
#include "check_main.h"
#include "check_util.h"

#define STEPS_MAX 64
#define CMDS_MAX  64
#define INFO_MAX  8
/*
 * A case that has not ended by then has failed (they take milliseconds);
 * below Check's own default timeout of 4 s, so the failure says where
 * the peer waited.
 */
#define DEADLINE_SECS 3

/* One step of the peer's script: the command it expects, its reply. */
struct step {
	char expect[32];    /* the command line, or its first words */
	char *reply;	    /* sent as it is: CRLF line ends, dot-stuffed */
	unsigned hold;	    /* answered once this many more commands came */
	void (*hook)(void); /* runs when the command arrives */
};

/* A command line as the peer received it. */
struct rcvd {
	char line[128];
	size_t answered; /* replies the peer had sent when it arrived */
	unsigned burst;	 /* the read that brought it */
};

struct peer {
	struct evconnlistener *lis;
	struct bufferevent *bev;
	unsigned short port;
	struct step steps[STEPS_MAX];
	size_t nsteps;
	size_t next;	 /* the step the next command must match */
	size_t answered; /* steps whose reply went out */
	size_t release;	 /* replies wait until this step's command came */
	unsigned bursts; /* reads so far */
	struct rcvd cmds[CMDS_MAX];
	size_t ncmds;
	char error[256]; /* the first departure from the script */
};

/* What --list reported for one message. */
struct listed {
	unsigned long msgno;
	uint64_t size;
	char uid[72], from[256], date[128], subj[256];
};

/* A message as the server holds it and as the Maildir should get it. */
struct msg {
	const char *uid;
	const char *wire; /* CRLF, dot-stuffed */
	const char *want; /* LF, unstuffed */
};

static struct fixture {
	char dir[PATH_MAX], maildir[PATH_MAX], statedir[PATH_MAX];
	char name[8], host[16], user[8], password[8];
	char *pins[1];
	struct conf conf;
	struct account a;
	struct event_base *base;
	struct evdns_base *dns;
	struct worker *worker;
	struct event *deadline;
	struct peer peer;
	struct session *s;
	bool done;
	enum session_class cls;
	struct session_stats stats;
	char msg[512];
	struct listed info[INFO_MAX];
	size_t ninfo;
	int new_at_dele; /* files in new/ when the first DELE came */
	FILE *captured;
	int saved_stderr;
} fx;

static void setup(void);
static void teardown(void);
static struct step *expect(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void run(enum session_mode mode);

/* ---- the peer ---- */

static void
peer_close(void)
{
	if (fx.peer.bev != NULL)
		bufferevent_free(fx.peer.bev);
	fx.peer.bev = NULL;
}

/* Whether LINE is the command CMD: the same, or CMD and arguments. */
static bool
is_cmd(const char *line, const char *cmd)
{
	size_t n = strlen(cmd);

	return strncmp(line, cmd, n) == 0 &&
	       (line[n] == '\0' || line[n] == ' ');
}

/*
 * Matches one command line against the script and answers it, or those
 * held before it. A departure is noted and ends the connection, so the
 * session ends at once and the case fails on the note.
 */
static bool
peer_command(const char *line)
{
	struct peer *p = &fx.peer;
	struct step *st;
	size_t i;

	if (p->ncmds < CMDS_MAX) {
		snprintf(p->cmds[p->ncmds].line, sizeof(p->cmds[0].line), "%s",
		    line);
		p->cmds[p->ncmds].burst = p->bursts;
		p->cmds[p->ncmds++].answered = p->answered;
	}
	if (p->next == p->nsteps || !is_cmd(line, p->steps[p->next].expect)) {
		if (p->error[0] == '\0')
			snprintf(p->error, sizeof(p->error),
			    "peer: step %zu expects \"%s\", got \"%s\"",
			    p->next,
			    p->next < p->nsteps ? p->steps[p->next].expect
						: "(end)",
			    line);
		peer_close();
		return false;
	}
	i = p->next++;
	st = &p->steps[i];
	if (st->hook != NULL)
		st->hook();
	if (st->hold > 0 && p->release <= i)
		p->release = i + st->hold;
	if (i < p->release)
		return true;
	for (; p->answered <= i; p->answered++)
		bufferevent_write(p->bev, p->steps[p->answered].reply,
		    strlen(p->steps[p->answered].reply));
	return true;
}

static void
peer_read(struct bufferevent *bev, void *arg)
{
	char *line;
	bool go = true;

	fx.peer.bursts++;
	while (go && (line = evbuffer_readln(bufferevent_get_input(bev), NULL,
			  EVBUFFER_EOL_CRLF_STRICT)) != NULL) {
		go = peer_command(line);
		free(line);
	}
}

static void
peer_event(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		peer_close();
}

/* One connection, greeted at once; a second one is refused. */
static void
peer_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa,
    int salen, void *arg)
{
	static const char greeting[] = "+OK scripted peer ready\r\n";

	if (fx.peer.bev != NULL) {
		close(fd);
		return;
	}
	fx.peer.bev =
	    bufferevent_socket_new(fx.base, fd, BEV_OPT_CLOSE_ON_FREE);
	ck_assert_ptr_nonnull(fx.peer.bev);
	bufferevent_setcb(fx.peer.bev, peer_read, NULL, peer_event, NULL);
	bufferevent_enable(fx.peer.bev, EV_READ | EV_WRITE);
	bufferevent_write(fx.peer.bev, greeting, strlen(greeting));
}

static void
peer_listen(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fx.peer.lis = evconnlistener_new_bind(fx.base, peer_accept, NULL,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 8,
	    (struct sockaddr *)&sin, sizeof(sin));
	ck_assert_ptr_nonnull(fx.peer.lis);
	ck_assert_int_eq(getsockname(evconnlistener_get_fd(fx.peer.lis),
			     (struct sockaddr *)&sin, &len),
	    0);
	fx.peer.port = ntohs(sin.sin_port);
}

/* Adds a step: command CMD is answered with the reply FMT makes. */
static struct step *
expect(const char *cmd, const char *fmt, ...)
{
	struct step *st;
	va_list ap;
	int n;

	ck_assert_uint_lt(fx.peer.nsteps, STEPS_MAX);
	st = &fx.peer.steps[fx.peer.nsteps++];
	snprintf(st->expect, sizeof(st->expect), "%s", cmd);
	va_start(ap, fmt);
	n = vasprintf(&st->reply, fmt, ap);
	va_end(ap);
	ck_assert_int_ge(n, 0);
	return st;
}

/* CAPA answered with USER (and EXTRA capability lines). */
static void
expect_capa(const char *extra)
{
	expect("CAPA", "+OK\r\nUSER\r\nUIDL\r\nTOP\r\n%s.\r\n", extra);
}

static void
expect_user_pass(void)
{
	expect("USER alice", "+OK\r\n");
	expect("PASS secret", "+OK logged in\r\n");
}

/*
 * STAT, UIDL (refused when UIDL is false) and LIST for the N messages
 * of M, with LIST sizes taken from their wire form.
 */
static void
expect_listing(const struct msg *m, size_t n, bool uidl)
{
	char *uids = NULL, *sizes = NULL;
	size_t ulen, slen, i, total = 0;
	FILE *fu, *fs;

	ck_assert_ptr_nonnull(fu = open_memstream(&uids, &ulen));
	ck_assert_ptr_nonnull(fs = open_memstream(&sizes, &slen));
	for (i = 0; i < n; i++) {
		fprintf(fu, "%zu %s\r\n", i + 1, m[i].uid);
		fprintf(fs, "%zu %zu\r\n", i + 1, strlen(m[i].wire));
		total += strlen(m[i].wire);
	}
	fclose(fu);
	fclose(fs);
	expect("STAT", "+OK %zu %zu\r\n", n, total);
	if (uidl)
		expect("UIDL", "+OK\r\n%s.\r\n", uids);
	else
		expect("UIDL", "-ERR command not supported\r\n");
	expect("LIST", "+OK\r\n%s.\r\n", sizes);
	free(uids);
	free(sizes);
}

/* ---- the Maildir ---- */

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* new/ holds exactly the N texts of WANT, in any order. */
static void
assert_new(const char *const *want, size_t n)
{
	char path[PATH_MAX + 8], file[2 * PATH_MAX];
	const char **w;
	char **got;
	struct dirent *de;
	DIR *dir;
	size_t i, k = 0;

	ck_assert_int_eq(check_count_entries(fx.maildir, "new"), (int)n);
	ck_assert_ptr_nonnull(got = calloc(n + 1, sizeof(*got)));
	ck_assert_ptr_nonnull(w = calloc(n + 1, sizeof(*w)));
	snprintf(path, sizeof(path), "%s/new", fx.maildir);
	ck_assert_ptr_nonnull(dir = opendir(path));
	while ((de = readdir(dir)) != NULL && k < n) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(file, sizeof(file), "%s/%s", path, de->d_name);
		got[k++] = check_read_file(file, NULL);
	}
	closedir(dir);
	memcpy(w, want, n * sizeof(*w));
	qsort(got, n, sizeof(*got), cmp_str);
	qsort(w, n, sizeof(*w), cmp_str);
	for (i = 0; i < n; i++) {
		ck_assert_msg(strcmp(got[i], w[i]) == 0,
		    "new/ holds %zu bytes \"%.40s...\", expected \"%.40s...\"",
		    strlen(got[i]), got[i], w[i]);
		free(got[i]);
	}
	free(got);
	free(w);
}

/* UIDs the account's state holds, recorded or pending, after the poll. */
static size_t
state_entries(void)
{
	char err[256];
	struct state *st;
	size_t n;

	st = state_open_mailbox(fx.statedir, fx.a.name, fx.a.host, fx.a.port,
	    fx.a.user, err, sizeof(err));
	ck_assert_msg(st != NULL, "state: %s", err);
	n = state_count(st) + state_pending_count(st);
	state_close(&st);
	return n;
}

/* ---- the log ---- */

/* Every line of stderr from here on goes to a temporary file. */
static void
capture_start(void)
{
	unsetenv("JOURNAL_STREAM");
	fflush(stderr);
	ck_assert_ptr_nonnull(fx.captured = tmpfile());
	ck_assert_int_ne(fx.saved_stderr = dup(2), -1);
	ck_assert_int_ne(dup2(fileno(fx.captured), 2), -1);
	log_init(0, true);
}

/* The transitions the debug log traced ("capa -> user"), one a line. */
static char *
capture_transitions(void)
{
	char line[1024], *out = NULL, *p;
	size_t len;
	FILE *f;

	fflush(stderr);
	ck_assert_int_ne(dup2(fx.saved_stderr, 2), -1);
	close(fx.saved_stderr);
	log_init(0, false);
	ck_assert_ptr_nonnull(f = open_memstream(&out, &len));
	rewind(fx.captured);
	while (fgets(line, sizeof(line), fx.captured) != NULL)
		if ((p = strstr(line, " state ")) != NULL &&
		    strstr(p, " -> ") != NULL)
			fputs(p + strlen(" state "), f);
	fclose(f);
	fclose(fx.captured);
	fx.captured = NULL;
	return out;
}

/* ---- the session ---- */

static void
done_cb(void *arg, enum session_class cls, const struct session_stats *stats,
    const char *msg)
{
	ck_assert(!fx.done);
	fx.done = true;
	fx.cls = cls;
	fx.stats = *stats;
	snprintf(fx.msg, sizeof(fx.msg), "%s", msg);
	event_base_loopbreak(fx.base);
}

static void
info_cb(void *arg, const struct session_info *si)
{
	struct listed *l;

	if (si->kind != SI_MESSAGE)
		return;
	ck_assert_uint_lt(fx.ninfo, INFO_MAX);
	l = &fx.info[fx.ninfo++];
	l->msgno = si->msgno;
	l->size = si->size;
	snprintf(l->uid, sizeof(l->uid), "%s", si->uid);
	snprintf(l->from, sizeof(l->from), "%s", si->from);
	snprintf(l->date, sizeof(l->date), "%s", si->date);
	snprintf(l->subj, sizeof(l->subj), "%s", si->subj);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	event_base_loopbreak(fx.base);
}

/*
 * Runs one session in MODE against the script until its done callback;
 * the peer must have played its whole script and nothing more.
 */
static void
run(enum session_mode mode)
{
	struct timeval tv = {DEADLINE_SECS, 0};

	fx.a.port = fx.peer.port;
	if (mode == SESSION_FETCH)
		fx.s = session_start(
		    fx.base, fx.dns, fx.worker, &fx.conf, &fx.a, done_cb, NULL);
	else
		fx.s = session_start_mode(fx.base, fx.dns, &fx.conf, &fx.a,
		    mode, info_cb, done_cb, NULL);
	ck_assert_ptr_nonnull(fx.s);
	ck_assert_int_eq(evtimer_add(fx.deadline, &tv), 0);
	event_base_dispatch(fx.base);
	ck_assert_msg(fx.peer.error[0] == '\0', "%s", fx.peer.error);
	ck_assert_msg(fx.done,
	    "no end within %d s; the peer waits at step %zu (\"%s\")",
	    DEADLINE_SECS, fx.peer.next,
	    fx.peer.next < fx.peer.nsteps ? fx.peer.steps[fx.peer.next].expect
					  : "(end)");
	ck_assert_uint_eq(fx.peer.next, fx.peer.nsteps);
	session_free(&fx.s);
}

/* The received commands from the first FIRST on are exactly WANT. */
static void
assert_cmds(const char *first, const char *const *want, size_t n)
{
	size_t i = 0, k;

	while (i < fx.peer.ncmds && !is_cmd(fx.peer.cmds[i].line, first))
		i++;
	ck_assert_uint_eq(fx.peer.ncmds - i, n);
	for (k = 0; k < n; k++)
		ck_assert_str_eq(fx.peer.cmds[i + k].line, want[k]);
}

static const struct rcvd *
cmd_named(const char *cmd)
{
	size_t i;

	for (i = 0; i < fx.peer.ncmds; i++)
		if (is_cmd(fx.peer.cmds[i].line, cmd))
			return &fx.peer.cmds[i];
	ck_abort_msg("the peer never received %s", cmd);
	return NULL;
}

static void
setup(void)
{
	memset(&fx, 0, sizeof(fx));
	check_tmpdir(fx.dir, sizeof(fx.dir), "test_session");
	snprintf(fx.maildir, sizeof(fx.maildir), "%.*s/Maildir", PATH_MAX - 16,
	    fx.dir);
	snprintf(fx.statedir, sizeof(fx.statedir), "%.*s/state", PATH_MAX - 16,
	    fx.dir);
	snprintf(fx.name, sizeof(fx.name), "t");
	snprintf(fx.host, sizeof(fx.host), "127.0.0.1");
	snprintf(fx.user, sizeof(fx.user), "alice");
	snprintf(fx.password, sizeof(fx.password), "secret");
	fx.saved_stderr = -1;
	fx.new_at_dele = -1;

	/* What conf.c would make of a plain-text account, defaults and all. */
	fx.a = (struct account){.name = fx.name,
	    .host = fx.host,
	    .tls = CONF_TLS_NONE,
	    .allow_plaintext = true,
	    .tls_verify = true,
	    .tls_pins = fx.pins,
	    .user = fx.user,
	    .password = fx.password,
	    .auth = CONF_AUTH_USER,
	    .maildir = fx.maildir,
	    .received_header = false, /* new/ then holds the bytes sent */
	    .pipelining = CONF_PIPELINING_AUTO,
	    /* An fsync per file: syncfs would wait for the whole disk. */
	    .sync = CONF_SYNC_FILE,
	    .poll_interval = 300,
	    .timeout = 2 * DEADLINE_SECS,
	    .file = "test",
	    .line = 1};
	fx.conf = (struct conf){.state_dir = fx.statedir,
	    .poll_interval = 300,
	    .max_connections = 64,
	    .max_per_host = 4,
	    .timeout = fx.a.timeout,
	    .accounts = &fx.a,
	    .naccounts = 1};

	ck_assert_ptr_nonnull(fx.base = event_base_new());
	/* No name servers: the literal address resolves without one. */
	ck_assert_ptr_nonnull(fx.dns = evdns_base_new(fx.base, 0));
	ck_assert_ptr_nonnull(
	    fx.worker = worker_new(fx.base, 1, "test-worker"));
	ck_assert_ptr_nonnull(
	    fx.deadline = evtimer_new(fx.base, deadline_cb, NULL));
	peer_listen();
}

static void
teardown(void)
{
	size_t i;

	session_free(&fx.s);
	peer_close();
	if (fx.peer.lis != NULL)
		evconnlistener_free(fx.peer.lis);
	for (i = 0; i < fx.peer.nsteps; i++)
		free(fx.peer.steps[i].reply);
	worker_free(&fx.worker);
	evdns_base_free(fx.dns, 0);
	event_free(fx.deadline);
	event_base_free(fx.base);
	check_rm_rf(fx.dir);
}

/* ---- the cases ---- */

static const struct msg three[] = {
    {"uid-a", "From: a@example.org\r\nSubject: one\r\n\r\nHello\r\n",
	"From: a@example.org\nSubject: one\n\nHello\n"},
    {"uid-b", "Subject: two\r\n\r\n..stuffed\r\nplain\r\n",
	"Subject: two\n\n.stuffed\nplain\n"},
    {"uid-c", "Subject: three\r\n\r\n\r\nlast line\r\n",
	"Subject: three\n\n\nlast line\n"},
};

static void
note_new_at_dele(void)
{
	if (fx.new_at_dele == -1)
		fx.new_at_dele = check_count_entries(fx.maildir, "new");
}

/* RETR N answered with message N of M (numbered from 1). */
static struct step *
expect_retr(const struct msg *m, unsigned long n)
{
	char cmd[32];

	snprintf(cmd, sizeof(cmd), "RETR %lu", n);
	return expect(cmd, "+OK\r\n%s.\r\n", m[n - 1].wire);
}

START_TEST(fetch_plain)
{
	static const char *const want_cmds[] = {
	    "RETR 1", "RETR 2", "RETR 3", "DELE 1", "DELE 2", "DELE 3", "QUIT"};
	const char *want[3] = {three[0].want, three[1].want, three[2].want};

	expect_capa("");
	expect_user_pass();
	expect_listing(three, 3, true);
	expect_retr(three, 1);
	expect_retr(three, 2);
	expect_retr(three, 3);
	expect("DELE 1", "+OK\r\n")->hook = note_new_at_dele;
	expect("DELE 2", "+OK\r\n");
	expect("DELE 3", "+OK\r\n");
	expect("QUIT", "+OK bye\r\n");
	run(SESSION_FETCH);

	ck_assert_msg(fx.cls == SC_OK, "class %s: %s",
	    backoff_class_name(fx.cls), fx.msg);
	assert_cmds("RETR", want_cmds, 7);
	/* The batch was in new/ before its first DELE went out. */
	ck_assert_int_eq(fx.new_at_dele, 3);
	assert_new(want, 3);
	ck_assert_uint_eq(fx.stats.listed, 3);
	ck_assert_uint_eq(fx.stats.fetched, 3);
	ck_assert_uint_eq(fx.stats.deleted, 3);
	ck_assert(!fx.stats.interrupted);
}
END_TEST

/* Whether the transitions traced hold WANT as one run. */
static void
assert_run_of(const char *trace, const char *want)
{
	ck_assert_msg(strstr(trace, want) != NULL,
	    "traced transitions:\n%s\nlack the run:\n%s", trace, want);
}

START_TEST(auth_login_states)
{
	char *trace;

	fx.a.auth = CONF_AUTH_LOGIN;
	expect_capa("SASL LOGIN\r\n");
	expect("AUTH LOGIN", "+ VXNlcm5hbWU6\r\n");
	expect("YWxpY2U=", "+ UGFzc3dvcmQ6\r\n"); /* "alice" */
	expect("c2VjcmV0", "+OK logged in\r\n");  /* "secret" */
	expect_listing(NULL, 0, true);
	expect("QUIT", "+OK\r\n");
	capture_start();
	run(SESSION_FETCH);
	trace = capture_transitions();

	ck_assert_int_eq(fx.cls, SC_OK);
	assert_run_of(trace, "capa -> sasl\n"
			     "sasl -> sasl-login-user\n"
			     "sasl-login-user -> sasl-login-pass\n"
			     "sasl-login-pass -> listing\n");
	free(trace);
}
END_TEST

START_TEST(auth_user_states)
{
	char *trace;

	expect_capa("");
	expect_user_pass();
	expect_listing(NULL, 0, true);
	expect("QUIT", "+OK\r\n");
	capture_start();
	run(SESSION_FETCH);
	trace = capture_transitions();

	ck_assert_int_eq(fx.cls, SC_OK);
	assert_run_of(trace, "capa -> user\n"
			     "user -> pass\n"
			     "pass -> listing\n");
	free(trace);
}
END_TEST

/* A refused PASS and the class its response code gives the poll. */
static const struct {
	const char *reply;
	enum session_class cls;
} refusals[] = {
    {"-ERR [AUTH] invalid password\r\n", SC_AUTH},
    {"-ERR [IN-USE] mailbox locked\r\n", SC_BUSY},
    {"-ERR [SYS/TEMP] try later\r\n", SC_BUSY},
    {"-ERR no\r\n", SC_AUTH},
};

START_TEST(auth_refused)
{
	expect_capa("RESP-CODES\r\nAUTH-RESP-CODE\r\n");
	expect("USER alice", "+OK\r\n");
	expect("PASS secret", "%s", refusals[_i].reply);
	run(SESSION_FETCH);

	ck_assert_msg(fx.cls == refusals[_i].cls, "%s gave class %s",
	    refusals[_i].reply, backoff_class_name(fx.cls));
	/* Nothing more was asked: the script ended at PASS. */
	ck_assert_str_eq(fx.peer.cmds[fx.peer.ncmds - 1].line, "PASS secret");
	ck_assert_uint_eq(fx.stats.fetched, 0);
}
END_TEST

START_TEST(listing_pipelined)
{
	const struct rcvd *stat, *uidl, *list;

	expect_capa("PIPELINING\r\n");
	expect_user_pass();
	expect_listing(NULL, 0, true);
	expect("QUIT", "+OK\r\n");
	run(SESSION_FETCH);

	ck_assert_int_eq(fx.cls, SC_OK);
	stat = cmd_named("STAT");
	uidl = cmd_named("UIDL");
	list = cmd_named("LIST");
	/* All three came in one read, before STAT was answered. */
	ck_assert_uint_eq(uidl->burst, stat->burst);
	ck_assert_uint_eq(list->burst, stat->burst);
}
END_TEST

START_TEST(listing_one_by_one)
{
	const struct rcvd *stat, *uidl, *list;

	expect_capa("");
	expect_user_pass();
	expect_listing(NULL, 0, true);
	expect("QUIT", "+OK\r\n");
	run(SESSION_FETCH);

	ck_assert_int_eq(fx.cls, SC_OK);
	stat = cmd_named("STAT");
	uidl = cmd_named("UIDL");
	list = cmd_named("LIST");
	/* Each came in a read of its own, after the reply before it. */
	ck_assert_uint_gt(uidl->burst, stat->burst);
	ck_assert_uint_gt(list->burst, uidl->burst);
	ck_assert_uint_eq(uidl->answered, stat->answered + 1);
	ck_assert_uint_eq(list->answered, uidl->answered + 1);
}
END_TEST

START_TEST(uidl_refused)
{
	static const char *const want_cmds[] = {"UIDL", "LIST", "RETR 1",
	    "RETR 2", "RETR 3", "DELE 1", "DELE 2", "DELE 3", "QUIT"};
	const char *want[3] = {three[0].want, three[1].want, three[2].want};

	expect_capa("");
	expect_user_pass();
	expect_listing(three, 3, false);
	expect_retr(three, 1);
	expect_retr(three, 2);
	expect_retr(three, 3);
	/*
	 * Refused DELEs keep the messages on the server: had they been
	 * recorded by UID, the state would keep the records too.
	 */
	expect("DELE 1", "-ERR no\r\n");
	expect("DELE 2", "-ERR no\r\n");
	expect("DELE 3", "-ERR no\r\n");
	expect("QUIT", "+OK\r\n");
	run(SESSION_FETCH);

	ck_assert_msg(fx.cls == SC_OK, "class %s: %s",
	    backoff_class_name(fx.cls), fx.msg);
	assert_cmds("UIDL", want_cmds, 9);
	assert_new(want, 3);
	ck_assert_uint_eq(fx.stats.fetched, 3);
	ck_assert_uint_eq(fx.stats.deleted, 0);
	ck_assert_uint_eq(state_entries(), 0);
}
END_TEST

START_TEST(list_mode)
{
	static const struct msg two[] = {
	    {"uid-x",
		"Subject: first\r\nFrom: Alice <alice@example.org>\r\n"
		"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n",
		NULL},
	    {"uid-y", "From: bob@example.org\r\nSubject: second\r\n\r\n", NULL},
	};
	static const char *const want_cmds[] = {
	    "LIST", "TOP 1 0", "TOP 2 0", "QUIT"};

	expect_capa("");
	expect_user_pass();
	expect_listing(two, 2, true);
	expect("TOP 1 0", "+OK\r\n%s.\r\n", two[0].wire);
	expect("TOP 2 0", "+OK\r\n%s.\r\n", two[1].wire);
	expect("QUIT", "+OK\r\n");
	run(SESSION_LIST);

	ck_assert_int_eq(fx.cls, SC_OK);
	assert_cmds("LIST", want_cmds, 4);
	ck_assert_uint_eq(fx.ninfo, 2);
	ck_assert_uint_eq(fx.info[0].msgno, 1);
	ck_assert_uint_eq(fx.info[0].size, strlen(two[0].wire));
	ck_assert_str_eq(fx.info[0].uid, "uid-x");
	ck_assert_str_eq(fx.info[0].from, "Alice <alice@example.org>");
	ck_assert_str_eq(fx.info[0].date, "Mon, 1 Jan 2024 10:00:00 +0000");
	ck_assert_str_eq(fx.info[0].subj, "first");
	ck_assert_uint_eq(fx.info[1].msgno, 2);
	ck_assert_str_eq(fx.info[1].uid, "uid-y");
	ck_assert_str_eq(fx.info[1].from, "bob@example.org");
	ck_assert_str_eq(fx.info[1].date, "");
	ck_assert_str_eq(fx.info[1].subj, "second");
	/* --list writes nothing. */
	ck_assert_int_eq(check_count_entries(fx.maildir, "new"), -1);
}
END_TEST

START_TEST(retr_too_long)
{
	/* Far past what SIZE_SLACK allows for a message LIST sized 100. */
	size_t lines = 80, linelen = 1000, i;
	char *wire = malloc(lines * linelen + 1);
	/* LIST sizes message 2 by this text: about 100 bytes. */
	struct msg m[2] = {three[0],
	    {"uid-long",
		"Subject: short\r\n\r\nA short message, so LIST says; its RETR reply is 80 KB long.\r\n",
		NULL}};
	const char *want[1] = {three[0].want};

	ck_assert_ptr_nonnull(wire);
	for (i = 0; i < lines; i++) {
		memset(wire + i * linelen, 'x', linelen - 2);
		memcpy(wire + i * linelen + linelen - 2, "\r\n", 2);
	}
	wire[lines * linelen] = '\0';
	expect_capa("");
	expect_user_pass();
	expect_listing(m, 2, true);
	expect_retr(m, 1);
	expect("RETR 2", "+OK\r\n%s.\r\n", wire);
	free(wire);
	run(SESSION_FETCH);

	ck_assert_msg(fx.cls == SC_PROTO, "class %s: %s",
	    backoff_class_name(fx.cls), fx.msg);
	ck_assert_msg(strstr(fx.msg, "RETR 2") != NULL, "%s", fx.msg);
	/* Message 1, complete before, is kept; nothing of 2; no DELE. */
	assert_new(want, 1);
	ck_assert_uint_eq(fx.stats.fetched, 1);
	ck_assert_uint_eq(fx.stats.deleted, 0);
}
END_TEST

static void
stop_session(void)
{
	session_stop(fx.s);
}

/*
 * A message WIRE of about SIZE bytes (lines of 'x'), and WANT, what the
 * Maildir gets of it; both allocated.
 */
static void
big_message(size_t size, char **wire, char **want)
{
	size_t linelen = 1000, lines = size / linelen, i;

	ck_assert_ptr_nonnull(*wire = malloc(lines * linelen + 1));
	ck_assert_ptr_nonnull(*want = malloc(lines * (linelen - 1) + 1));
	for (i = 0; i < lines; i++) {
		memset(*wire + i * linelen, 'x', linelen - 2);
		memcpy(*wire + i * linelen + linelen - 2, "\r\n", 2);
		memset(*want + i * (linelen - 1), 'x', linelen - 2);
		(*want)[i * (linelen - 1) + linelen - 2] = '\n';
	}
	(*wire)[lines * linelen] = '\0';
	(*want)[lines * (linelen - 1)] = '\0';
}

START_TEST(stop_in_fetch)
{
	/*
	 * LIST sizes of 3/8 of the in-flight budget: two RETRs fit it, a
	 * third waits for the first reply. The messages are half that
	 * size, as small as a listed size still lets through.
	 */
	uint64_t listed = SESSION_INFLIGHT_BYTES / 8 * 3;
	static const char *const want_cmds[] = {
	    "RETR 1", "RETR 2", "DELE 1", "DELE 2", "QUIT"};
	char *wire, *body, *stat_reply, *list_reply;
	const char *want[2];

	big_message(listed / 2 + 8192, &wire, &body);
	want[0] = want[1] = body;
	ck_assert_int_ge(asprintf(&stat_reply, "+OK 3 %llu\r\n",
			     3 * (unsigned long long)listed),
	    0);
	ck_assert_int_ge(
	    asprintf(&list_reply, "+OK\r\n1 %llu\r\n2 %llu\r\n3 %llu\r\n.\r\n",
		(unsigned long long)listed, (unsigned long long)listed,
		(unsigned long long)listed),
	    0);
	expect_capa("PIPELINING\r\n");
	expect_user_pass();
	expect("STAT", "%s", stat_reply);
	expect("UIDL", "+OK\r\n1 u1\r\n2 u2\r\n3 u3\r\n.\r\n");
	expect("LIST", "%s", list_reply);
	/* Both RETRs are in before either is answered; then the stop. */
	expect("RETR 1", "+OK\r\n%s.\r\n", wire)->hold = 1;
	expect("RETR 2", "+OK\r\n%s.\r\n", wire)->hook = stop_session;
	expect("DELE 1", "+OK\r\n");
	expect("DELE 2", "+OK\r\n");
	expect("QUIT", "+OK\r\n");
	free(wire);
	free(stat_reply);
	free(list_reply);
	run(SESSION_FETCH);

	ck_assert_msg(fx.cls == SC_OK, "class %s: %s",
	    backoff_class_name(fx.cls), fx.msg);
	assert_cmds("RETR", want_cmds, 5);
	assert_new(want, 2);
	ck_assert(fx.stats.interrupted);
	ck_assert_uint_eq(fx.stats.fetched, 2);
	ck_assert_uint_eq(fx.stats.deleted, 2);
	free(body);
}
END_TEST

static Suite *
session_suite(void)
{
	Suite *s = suite_create("session");
	TCase *tc = tcase_create("core");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, fetch_plain);
	tcase_add_test(tc, auth_login_states);
	tcase_add_test(tc, auth_user_states);
	tcase_add_loop_test(
	    tc, auth_refused, 0, sizeof(refusals) / sizeof(refusals[0]));
	tcase_add_test(tc, listing_pipelined);
	tcase_add_test(tc, listing_one_by_one);
	tcase_add_test(tc, uidl_refused);
	tcase_add_test(tc, list_mode);
	tcase_add_test(tc, retr_too_long);
	tcase_add_test(tc, stop_in_fetch);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	/* The peer may close while the session writes, and the reverse. */
	signal(SIGPIPE, SIG_IGN);
	return check_main(session_suite());
}
