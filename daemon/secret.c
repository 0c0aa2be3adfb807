/*
 * Password sources. The inline value, files and credentials are small and
 * local, so they are read at once and only the answer waits for a later
 * loop turn. A password_command runs as a child watched by events on the
 * caller's loop: its two pipes, a pidfd for its exit and a deadline. Every
 * answer goes out through req_answer(), every teardown through release().
 */
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "conf.h"
#include "log.h"
#include "oauth2.h"
#include "secret.h"
#include "wipe.h"

/*
 * A password_command prints one line. 64 KiB of stdout is far more than
 * any secret, so a command printing more is broken or runaway: it is
 * killed rather than read forever.
 */
#define SECRET_OUTPUT_MAX (64 * 1024)
/* Enough of stderr to say why a command failed; more would flood the log. */
#define SECRET_STDERR_MAX 1024
/* If an account has no timeout (conf.c requires one, tests may not). */
#define SECRET_DEFAULT_TIMEOUT 60
/* How often to look for the child's exit when pidfds are unavailable. */
#define SECRET_POLL_USEC 100000
/* Bytes taken from a pipe per read(). */
#define SECRET_CHUNK 4096

enum req_state {
	REQ_RUNNING,   /* the caller waits for the answer */
	REQ_ANSWERING, /* the callback is running */
	REQ_DETACHED, /* answered or cancelled; a killed child awaits reaping */
};

enum line_problem {
	LINE_FINE,
	LINE_TOO_LONG,
	LINE_NUL,
};

/* The first line of a source, collected as its bytes arrive. */
struct line {
	char buf[SECRET_MAX];
	size_t len;
	bool done; /* line end seen, or given up */
	enum line_problem problem;
};

/* What one read() from a command's pipe gave. */
enum pipe_read {
	RD_AGAIN, /* nothing now */
	RD_DATA,
	RD_EOF,	     /* closed (or unreadable: treated alike) */
	RD_TOO_MUCH, /* stdout went over SECRET_OUTPUT_MAX */
};

struct secret_req {
	struct event_base *base;
	secret_cb cb;
	void *arg;
	enum req_state state;
	/* Copied: log lines may outlive the account (reload). */
	char account[CONF_NAME_MAX + 1];
	struct event *done_ev; /* answers a result known at once */
	struct line line;
	bool ok;
	enum secret_fail kind; /* of a failure */
	char err[768];
	/* Which secret, for messages: "password" or "client_secret". */
	const char *label;
	char label_command[32];

	/* oauth2 accounts: the client secret (if any), then the token. */
	const struct account *oauth2;
	struct oauth2_req *oreq;
	bool client_only; /* secret_fetch_client(): "" when there is none */

	/* password_command only */
	unsigned timeout; /* seconds */
	pid_t pid;	  /* > 0 until reaped */
	bool killed;
	int pidfd;
	int out_fd, err_fd; /* our ends of its stdout and stderr, or -1 */
	struct event *out_ev, *err_ev, *reap_ev, *deadline_ev;
	size_t out_total;
	bool overflow;
	char errtext[SECRET_STDERR_MAX];
	size_t errlen;
	bool errmore; /* stderr went on beyond errtext */
};

/* Killed commands not reaped yet: the loop must run until this is 0. */
static size_t detached;

static void fail(struct secret_req *r, const char *fmt, ...) LOG_PRINTF(2, 3);
static void line_feed(struct line *l, const char *p, size_t n);
static bool line_check(struct secret_req *r, const char *what);
static void read_file(struct secret_req *r, const char *path);
static void read_credential(struct secret_req *r, const char *name);
static void take_inline(struct secret_req *r, const char *password);
static int above_stdio(int fd);
static _Noreturn void run_child(const char *cmd, int in, int out, int err);
static int make_stdio(struct secret_req *r, int child[3]);
static int make_events(struct secret_req *r);
static int start_command(struct secret_req *r, const char *cmd);
static int watch_exit(struct secret_req *r);
static void kill_child(struct secret_req *r);
static void pipe_stop(int *fd, struct event *ev);
static enum pipe_read read_stdout(struct secret_req *r);
static enum pipe_read read_stderr(struct secret_req *r);
static void drain(struct secret_req *r);
static void judge_exit(struct secret_req *r, int status);
static void report_stderr(struct secret_req *r);
static void out_cb(evutil_socket_t fd, short what, void *arg);
static void err_cb(evutil_socket_t fd, short what, void *arg);
static void reap_cb(evutil_socket_t fd, short what, void *arg);
static void deadline_cb(evutil_socket_t fd, short what, void *arg);
static void done_cb(evutil_socket_t fd, short what, void *arg);
static void set_label(struct secret_req *r, const char *label);
static void start_source(struct secret_req *r, const char *value,
    const char *file, const char *command, const char *credential);
static void start_oauth2(struct secret_req *r);
static void oauth2_got(
    void *arg, const char *token, enum oauth2_fail fail, const char *err);
static void finish(struct secret_req *r);
static void req_answer(struct secret_req *r);
static void release(struct secret_req *r);
static void req_free(struct secret_req *r);

static void
fail(struct secret_req *r, const char *fmt, ...)
{
	va_list ap;

	r->ok = false;
	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
}

/*
 * Adds N bytes of a source to its first line. A line that cannot be the
 * secret (too long, a NUL in it) is refused rather than cut: a silently
 * truncated password fails later in a way nobody can explain.
 */
static void
line_feed(struct line *l, const char *p, size_t n)
{
	size_t i;

	for (i = 0; i < n && !l->done; i++) {
		if (p[i] == '\n' || p[i] == '\r') {
			l->done = true;
		} else if (p[i] == '\0') {
			l->problem = LINE_NUL;
			l->done = true;
		} else if (l->len + 1 >= sizeof(l->buf)) {
			l->problem = LINE_TOO_LONG;
			l->done = true;
		} else {
			l->buf[l->len++] = p[i];
		}
	}
}

/* Accepts the collected line as the secret, or fails naming WHAT. */
static bool
line_check(struct secret_req *r, const char *what)
{
	r->line.buf[r->line.len] = '\0';
	switch (r->line.problem) {
	case LINE_TOO_LONG:
		fail(r, "%s: first line is longer than %d bytes", what,
		    SECRET_MAX - 1);
		return false;
	case LINE_NUL:
		fail(r, "%s: first line contains a NUL byte", what);
		return false;
	case LINE_FINE:
		break;
	}
	if (r->line.len == 0) {
		fail(r, "%s: no secret on its first line", what);
		return false;
	}
	r->ok = true;
	return true;
}

/*
 * Reads the first line of PATH. A secret file accessible by group or
 * others is refused, as ssh refuses such a key: the secret in it is
 * already exposed, and quietly using it would hide that.
 */
static void
read_file(struct secret_req *r, const char *path)
{
	char buf[SECRET_CHUNK];
	struct stat st;
	ssize_t n;
	int fd;

	/* O_NONBLOCK: a FIFO put in place of the file must not hang us. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd == -1) {
		fail(r, "cannot read %s: %s", path, strerror(errno));
		return;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		fail(r, "%s is not a regular file", path);
		goto out;
	}
	if (st.st_mode & (S_IRWXG | S_IRWXO)) {
		fail(r, "%s is accessible by group or others (chmod 600 it)",
		    path);
		goto out;
	}
	while (!r->line.done) {
		n = read(fd, buf, sizeof(buf));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			fail(r, "cannot read %s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		line_feed(&r->line, buf, (size_t)n);
	}
	line_check(r, path);
out:
	wipe(buf, sizeof(buf));
	close(fd);
}

/* A systemd credential: a file the service manager put there for us. */
static void
read_credential(struct secret_req *r, const char *name)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	char path[PATH_MAX];
	int n;

	if (dir == NULL || dir[0] == '\0') {
		fail(r,
		    "%s_credential needs $CREDENTIALS_DIRECTORY (LoadCredential= in the unit)",
		    r->label);
		return;
	}
	n = snprintf(path, sizeof(path), "%s/%s", dir, name);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		fail(r, "%s_credential %s: path too long", r->label, name);
		return;
	}
	read_file(r, path);
}

/* The inline password, taken as written. */
static void
take_inline(struct secret_req *r, const char *password)
{
	size_t n = strlen(password);

	if (n == 0) {
		fail(r, "%s is empty", r->label);
		return;
	}
	if (n >= sizeof(r->line.buf)) {
		fail(r, "%s is longer than %d bytes", r->label, SECRET_MAX - 1);
		return;
	}
	memcpy(r->line.buf, password, n + 1);
	r->line.len = n;
	r->ok = true;
}

/*
 * Moves FD above 0, 1 and 2 (closing the original), so that the child's
 * dup2() onto stdin/stdout/stderr never lands on one of its own sources
 * (that happens when the daemon was started with a standard fd closed).
 */
static int
above_stdio(int fd)
{
	int nfd, saved;

	if (fd > 2)
		return fd;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	saved = errno;
	close(fd);
	errno = saved;
	return nfd;
}

/*
 * In the forked child: become the leader of a new process group, undo
 * what the daemon did to signals, keep only stdin, stdout and stderr, and
 * run the command. Only async-signal-safe calls here.
 */
static _Noreturn void
run_child(const char *cmd, int in, int out, int err)
{
	static const char msg[] = "popfetchd: cannot execute /bin/sh\n";
	sigset_t none;
	ssize_t w;
	int sig;

	/* Its own group, so that a timeout kills a whole pipeline at once. */
	setpgid(0, 0);
	/* Ignored signals (the daemon ignores SIGPIPE) survive exec. */
	for (sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (dup2(in, 0) == -1 || dup2(out, 1) == -1 || dup2(err, 2) == -1)
		_exit(127);
	/*
	 * Everything we open is close-on-exec already; this also covers
	 * descriptors that other code or libraries opened without it.
	 */
	closefrom(3);
	execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
	w = write(2, msg, sizeof(msg) - 1);
	(void)w;
	_exit(127);
}

/*
 * The command's stdin (/dev/null), stdout and stderr (pipes): its ends
 * into CHILD, ours into R (non-blocking; the command sees ordinary
 * pipes). Returns 0, or -1 with R failed; the caller closes CHILD, and
 * release() our ends.
 */
static int
make_stdio(struct secret_req *r, int child[3])
{
	int p[2], i;

	if ((child[0] = open("/dev/null", O_RDONLY | O_CLOEXEC)) == -1)
		goto fail;
	if (pipe2(p, O_CLOEXEC) == -1)
		goto fail;
	r->out_fd = p[0];
	child[1] = p[1];
	if (pipe2(p, O_CLOEXEC) == -1)
		goto fail;
	r->err_fd = p[0];
	child[2] = p[1];
	for (i = 0; i < 3; i++)
		if ((child[i] = above_stdio(child[i])) == -1)
			goto fail;
	if (fcntl(r->out_fd, F_SETFL, O_NONBLOCK) == -1 ||
	    fcntl(r->err_fd, F_SETFL, O_NONBLOCK) == -1)
		goto fail;
	return 0;
fail:
	fail(r, "cannot run %s_command: %s", r->label, strerror(errno));
	return -1;
}

/*
 * Every event that watches the command, made and added before the fork,
 * so that nothing can fail between starting the child and watching it
 * (watch_exit() only re-assigns REAP_EV). Returns 0, or -1 with R failed.
 */
static int
make_events(struct secret_req *r)
{
	struct timeval tv = {.tv_sec = (time_t)r->timeout};

	r->out_ev =
	    event_new(r->base, r->out_fd, EV_READ | EV_PERSIST, out_cb, r);
	r->err_ev =
	    event_new(r->base, r->err_fd, EV_READ | EV_PERSIST, err_cb, r);
	r->reap_ev = event_new(r->base, -1, EV_PERSIST, reap_cb, r);
	r->deadline_ev = event_new(r->base, -1, 0, deadline_cb, r);
	if (r->out_ev == NULL || r->err_ev == NULL || r->reap_ev == NULL ||
	    r->deadline_ev == NULL || event_add(r->out_ev, NULL) == -1 ||
	    event_add(r->err_ev, NULL) == -1 ||
	    event_add(r->deadline_ev, &tv) == -1) {
		fail(r, "cannot run %s_command: out of memory", r->label);
		return -1;
	}
	return 0;
}

/*
 * Starts the command and the events that watch it. Returns 0, or -1 with
 * R failed and nothing left running.
 */
static int
start_command(struct secret_req *r, const char *cmd)
{
	int child[3] = {-1, -1, -1}, i;
	pid_t pid = -1;

	if (make_stdio(r, child) == 0 && make_events(r) == 0) {
		if ((pid = fork()) == 0)
			run_child(cmd, child[0], child[1], child[2]);
		if (pid == -1)
			fail(r, "cannot run %s_command: fork: %s", r->label,
			    strerror(errno));
	}
	for (i = 0; i < 3; i++)
		if (child[i] != -1)
			close(child[i]);
	if (pid == -1)
		return -1;
	r->pid = pid;
	/* Also here: whichever of us runs first, the group exists. */
	setpgid(pid, pid);
	log_debug(r->account, "%s_command started pid=%ld timeout=%u", r->label,
	    (long)pid, r->timeout);
	return watch_exit(r);
}

/*
 * Watches for the child's exit: a pidfd becomes readable when it exits,
 * so waitpid() never blocks and never touches other children. Where
 * pidfd_open() is refused (old kernel, seccomp) a timer asks instead.
 */
static int
watch_exit(struct secret_req *r)
{
	struct timeval poll = {.tv_usec = SECRET_POLL_USEC};
	int ok;

	if ((r->pidfd = pidfd_open(r->pid, 0)) == -1) {
		log_debug(r->account,
		    "pidfd_open: %s; polling for the command's exit",
		    strerror(errno));
		ok = event_add(r->reap_ev, &poll) == 0;
	} else {
		ok = event_assign(r->reap_ev, r->base, r->pidfd,
			 EV_READ | EV_PERSIST, reap_cb, r) == 0 &&
		     event_add(r->reap_ev, NULL) == 0;
	}
	if (ok)
		return 0;
	/*
	 * Cannot watch it, so stop it now. Killed right after the fork it
	 * dies at once, so this one blocking wait is short.
	 */
	kill_child(r);
	waitpid(r->pid, NULL, 0);
	r->pid = -1;
	fail(r, "cannot watch %s_command: out of memory", r->label);
	return -1;
}

static void
kill_child(struct secret_req *r)
{
	/*
	 * Only while unreaped: until then the group id is still ours and
	 * cannot name somebody else's processes.
	 */
	if (r->pid <= 0 || r->killed)
		return;
	r->killed = true;
	if (kill(-r->pid, SIGKILL) == -1)
		kill(r->pid, SIGKILL);
}

static void
pipe_stop(int *fd, struct event *ev)
{
	if (*fd == -1)
		return;
	if (ev != NULL)
		event_del(ev);
	close(*fd);
	*fd = -1;
}

/* One read from stdout: the first line is kept, the rest only counted. */
static enum pipe_read
read_stdout(struct secret_req *r)
{
	char buf[SECRET_CHUNK];
	ssize_t n;

	n = read(r->out_fd, buf, sizeof(buf));
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return RD_AGAIN;
	if (n <= 0)
		return RD_EOF;
	r->out_total += (size_t)n;
	if (r->out_total > SECRET_OUTPUT_MAX) {
		r->overflow = true;
		wipe(buf, sizeof(buf));
		return RD_TOO_MUCH;
	}
	line_feed(&r->line, buf, (size_t)n);
	wipe(buf, sizeof(buf));
	return RD_DATA;
}

/* One read from stderr: the start is kept for the log, the rest dropped. */
static enum pipe_read
read_stderr(struct secret_req *r)
{
	char buf[SECRET_CHUNK];
	size_t keep;
	ssize_t n;

	n = read(r->err_fd, buf, sizeof(buf));
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return RD_AGAIN;
	if (n <= 0)
		return RD_EOF;
	keep = sizeof(r->errtext) - r->errlen;
	if ((size_t)n > keep)
		r->errmore = true;
	else
		keep = (size_t)n;
	memcpy(r->errtext + r->errlen, buf, keep);
	r->errlen += keep;
	return RD_DATA;
}

/*
 * After the child exited: take what the pipes hold now, but do not wait
 * for their end. A helper the command left running in the background may
 * keep them open for ever; everything the command itself wrote is in the
 * pipe already.
 */
static void
drain(struct secret_req *r)
{
	int reads = 0;

	while (r->out_fd != -1 && read_stdout(r) == RD_DATA)
		continue;
	pipe_stop(&r->out_fd, r->out_ev);
	/* Bounded: a background writer must not keep us here. */
	while (r->err_fd != -1 && reads++ < SECRET_OUTPUT_MAX / SECRET_CHUNK &&
	       read_stderr(r) == RD_DATA)
		continue;
	pipe_stop(&r->err_fd, r->err_ev);
}

/* The answer once the command exited with STATUS. */
static void
judge_exit(struct secret_req *r, int status)
{
	drain(r);
	if (r->overflow)
		fail(r, "%s_command output too long (more than %d bytes)",
		    r->label, SECRET_OUTPUT_MAX);
	else if (WIFSIGNALED(status))
		fail(r, "%s_command killed by signal %d (%s)", r->label,
		    WTERMSIG(status), strsignal(WTERMSIG(status)));
	else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail(r, "%s_command exited with status %d", r->label,
		    WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	else
		line_check(r, r->label_command);
}

/*
 * Logs what the command said on stderr, as one line. Only printable ASCII
 * passes: line breaks become spaces, anything else (terminal escapes)
 * '?'.
 */
static void
report_stderr(struct secret_req *r)
{
	const char *t = r->errtext;
	char text[SECRET_STDERR_MAX + 1];
	size_t i, n = r->errlen;
	unsigned char c;

	while (n > 0 && (t[n - 1] == '\n' || t[n - 1] == '\r'))
		n--;
	if (n == 0)
		return;
	for (i = 0; i < n; i++) {
		c = (unsigned char)t[i];
		if (c == '\n' || c == '\r' || c == '\t')
			text[i] = ' ';
		else if (c < 0x20 || c >= 0x7f)
			text[i] = '?';
		else
			text[i] = (char)c;
	}
	text[n] = '\0';
	log_warnx(r->account, "%s_command: stderr: %s%s", r->label, text,
	    r->errmore ? " [...]" : "");
	r->errlen = 0;
}

static void
out_cb(evutil_socket_t fd, short what, void *arg)
{
	struct secret_req *r = arg;

	switch (read_stdout(r)) {
	case RD_TOO_MUCH:
		kill_child(r);
		fail(r, "%s_command output too long (more than %d bytes)",
		    r->label, SECRET_OUTPUT_MAX);
		finish(r);
		return;
	case RD_EOF:
		/* The child's exit, not this, completes the request. */
		pipe_stop(&r->out_fd, r->out_ev);
		return;
	case RD_AGAIN:
	case RD_DATA:
		return;
	}
}

static void
err_cb(evutil_socket_t fd, short what, void *arg)
{
	struct secret_req *r = arg;

	if (read_stderr(r) == RD_EOF)
		pipe_stop(&r->err_fd, r->err_ev);
}

static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct secret_req *r = arg;
	int status;
	pid_t w;

	w = waitpid(r->pid, &status, WNOHANG);
	if (w == 0 || (w == -1 && errno == EINTR))
		return; /* not yet (the polling timer asks again) */
	r->pid = -1;
	event_del(r->reap_ev);
	if (r->state == REQ_DETACHED) {
		req_free(r);
		return;
	}
	if (w == -1)
		fail(r, "%s_command: cannot get its exit status: %s", r->label,
		    strerror(errno));
	else
		judge_exit(r, status);
	finish(r);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct secret_req *r = arg;

	kill_child(r);
	fail(r, "%s_command timed out after %u s", r->label, r->timeout);
	finish(r);
}

static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
	finish(arg);
}

/*
 * A source is done: the answer, unless it gave the client secret of an
 * oauth2 account, which goes on to get the token.
 */
static void
finish(struct secret_req *r)
{
	if (r->oauth2 != NULL && r->ok)
		start_oauth2(r);
	else
		req_answer(r);
}

/* Asks oauth2.c for the token, with the client secret read (if any). */
static void
start_oauth2(struct secret_req *r)
{
	const struct account *a = r->oauth2;

	r->oauth2 = NULL;
	/* The command is over; its deadline must not end the refresh. */
	if (r->deadline_ev != NULL)
		event_del(r->deadline_ev);
	r->oreq = oauth2_get(
	    r->base, a, r->line.len > 0 ? r->line.buf : NULL, oauth2_got, r);
	wipe(r->line.buf, sizeof(r->line.buf));
	r->line.len = 0;
	if (r->oreq == NULL) {
		fail(r, "out of memory");
		r->kind = SECRET_FAIL_LOCAL;
		req_answer(r);
	}
}

static void
oauth2_got(void *arg, const char *token, enum oauth2_fail f, const char *err)
{
	struct secret_req *r = arg;
	size_t n;

	r->oreq = NULL;
	if (token != NULL && (n = strlen(token)) < sizeof(r->line.buf)) {
		memcpy(r->line.buf, token, n + 1);
		r->line.len = n;
		r->ok = true;
	} else {
		fail(r, "%s", token != NULL ? "access token too long" : err);
		r->kind = f == OAUTH2_FAIL_AUTH	    ? SECRET_FAIL_AUTH
			  : f == OAUTH2_FAIL_LOCAL  ? SECRET_FAIL_LOCAL
			  : f == OAUTH2_FAIL_CONFIG ? SECRET_FAIL_CONFIG
						    : SECRET_FAIL_TEMP;
	}
	req_answer(r);
}

/* Gives the caller its one answer, then tears R down. */
static void
req_answer(struct secret_req *r)
{
	report_stderr(r);
	r->state = REQ_ANSWERING;
	if (r->ok)
		r->cb(r->arg, r->line.buf, SECRET_FAIL_NONE, NULL);
	else
		r->cb(r->arg, NULL, r->kind, r->err);
	release(r);
}

/*
 * Ends R for its caller: wipes the secret, stops every event but the one
 * that reaps a killed child, which frees R once the child is gone.
 */
static void
release(struct secret_req *r)
{
	wipe(&r->line, sizeof(r->line));
	oauth2_cancel(&r->oreq);
	pipe_stop(&r->out_fd, r->out_ev);
	pipe_stop(&r->err_fd, r->err_ev);
	if (r->deadline_ev != NULL)
		event_del(r->deadline_ev);
	event_del(r->done_ev);
	if (r->pid > 0) {
		kill_child(r);
		r->state = REQ_DETACHED;
		detached++;
		return;
	}
	req_free(r);
}

size_t
secret_detached(void)
{
	return detached;
}

static void
req_free(struct secret_req *r)
{
	if (r->state == REQ_DETACHED)
		detached--;
	if (r->out_ev != NULL)
		event_free(r->out_ev);
	if (r->err_ev != NULL)
		event_free(r->err_ev);
	if (r->reap_ev != NULL)
		event_free(r->reap_ev);
	if (r->deadline_ev != NULL)
		event_free(r->deadline_ev);
	event_free(r->done_ev);
	if (r->pidfd != -1)
		close(r->pidfd);
	wipe(r, sizeof(*r));
	free(r);
}

/* A request for A, not started yet; NULL when out of memory. */
static struct secret_req *
req_new(
    struct event_base *base, const struct account *a, secret_cb cb, void *arg)
{
	struct secret_req *r;

	if ((r = calloc(1, sizeof(*r))) == NULL)
		return NULL;
	r->base = base;
	r->cb = cb;
	r->arg = arg;
	r->state = REQ_RUNNING;
	r->pid = -1;
	r->pidfd = -1;
	r->out_fd = -1;
	r->err_fd = -1;
	r->timeout = a->timeout > 0 ? a->timeout : SECRET_DEFAULT_TIMEOUT;
	snprintf(r->account, sizeof(r->account), "%s", a->name);
	if ((r->done_ev = event_new(base, -1, 0, done_cb, r)) == NULL) {
		free(r);
		return NULL;
	}
	return r;
}

struct secret_req *
secret_fetch(
    struct event_base *base, const struct account *a, secret_cb cb, void *arg)
{
	struct secret_req *r;

	if ((r = req_new(base, a, cb, arg)) == NULL)
		return NULL;
	if (a->oauth2.on) {
		/* The client secret, if any, then the token. */
		r->oauth2 = a;
		set_label(r, "client_secret");
		start_source(r, a->oauth2.client_secret,
		    a->oauth2.client_secret_file,
		    a->oauth2.client_secret_command,
		    a->oauth2.client_secret_credential);
	} else {
		set_label(r, "password");
		start_source(r, a->password, a->password_file,
		    a->password_command, a->password_credential);
	}
	return r;
}

struct secret_req *
secret_fetch_client(
    struct event_base *base, const struct account *a, secret_cb cb, void *arg)
{
	struct secret_req *r;

	if ((r = req_new(base, a, cb, arg)) == NULL)
		return NULL;
	r->client_only = true;
	set_label(r, "client_secret");
	start_source(r, a->oauth2.client_secret, a->oauth2.client_secret_file,
	    a->oauth2.client_secret_command,
	    a->oauth2.client_secret_credential);
	return r;
}

static void
set_label(struct secret_req *r, const char *label)
{
	r->label = label;
	snprintf(
	    r->label_command, sizeof(r->label_command), "%s_command", label);
}

/*
 * Reads the one source that is set. A command's failure may be passing
 * (a token helper offline); a file or credential that cannot be read is
 * a setting to fix. An oauth2 account without a client secret goes on
 * with none.
 */
static void
start_source(struct secret_req *r, const char *value, const char *file,
    const char *command, const char *credential)
{
	r->kind = command != NULL ? SECRET_FAIL_TEMP : SECRET_FAIL_CONFIG;
	if (command != NULL) {
		if (start_command(r, command) == 0)
			return;
	} else if (value != NULL) {
		take_inline(r, value);
	} else if (file != NULL) {
		read_file(r, file);
	} else if (credential != NULL) {
		read_credential(r, credential);
	} else if (r->oauth2 != NULL || r->client_only) {
		r->ok = true;
	} else {
		fail(r, "no password configured");
	}
	/* Known now, answered on a later loop turn all the same. */
	event_active(r->done_ev, EV_TIMEOUT, 1);
}

void
secret_cancel(struct secret_req **reqp)
{
	struct secret_req *r = *reqp;

	*reqp = NULL;
	/* From inside its own callback: req_answer() tears it down after. */
	if (r == NULL || r->state != REQ_RUNNING)
		return;
	release(r);
}
