/*
 * The MDA target: one process per message, the message on its standard
 * input through a non-blocking pipe, its standard output and error (one
 * pipe, so their order is kept) read into a bounded buffer for the log,
 * and its exit watched through a pidfd, all on the loop.
 *
 * The exit status is the verdict (mda_verdict_of()), except that a
 * command that exits 0 without having read the whole message (a broken
 * pipe, or its exit before our end) delivered at most part of it: that
 * is a permanent failure, so that a command that always does so ends in
 * quarantine rather than in a copy cut short at every poll.
 *
 * At most three processes run (MDA_SLOTS): the one being fed and those
 * before it, awaiting their exit. The caller is told to wait while the
 * bytes held for the child pass TARGET_OUT_HIGH, and while every slot is
 * in use.
 */
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "log.h"
#include "target_mda.h"
#include "target_priv.h"

/*
 * What of a command's output goes to the log: its first KiB (a log line
 * holds LOG_MSG_MAX bytes, escaped).
 */
#define MDA_CAPTURE 1024
/* The message fed and up to two before it, awaiting their exit. */
#define MDA_SLOTS 3
/* When pidfd_open() is refused: how often to ask for the exit. */
#define MDA_POLL_USEC 50000

struct proc {
	struct mda *m;
	bool used;
	unsigned long tag, seq;
	pid_t pid; /* > 0 while unreaped */
	int pidfd, in_fd, out_fd;
	struct event *in_ev, *out_ev, *reap_ev, *timer_ev;
	struct evbuffer *buf; /* bytes for its stdin */
	struct target_enc enc;
	bool ended;	/* target_end() called */
	bool aborted;	/* taken back: no verdict */
	bool short_in;	/* it did not take the whole message */
	bool timed_out; /* killed for want of progress */
	bool decided;
	enum target_verdict v;
	char why[512];
	char cap[MDA_CAPTURE];
	size_t caplen, dropped;
};

struct mda {
	struct target t;
	struct event_base *base;
	struct target_cbs cbs;
	char **argv, **envp;
	char *account;
	unsigned timeout;
	struct proc p[MDA_SLOTS];
	int cur; /* slot being fed, -1 if none */
	unsigned long seq;
	struct event *notify;
	bool waiting;
};

#define MDA_OF(t) ((struct mda *)(void *)(t))

static void reaped(struct proc *p, int status);

static void
later(struct mda *m)
{
	event_active(m->notify, 0, 0);
}

static void
close_fd(int *fd, struct event *ev)
{
	if (ev != NULL)
		event_del(ev);
	if (*fd != -1)
		close(*fd);
	*fd = -1;
}

/* Kills its whole group, once, while unreaped (the group is still ours). */
static void
kill_group(struct proc *p)
{
	if (p->pid > 0)
		kill(-p->pid, SIGKILL);
}

/*
 * The timer runs while we wait on the child: bytes it has not taken, or
 * its exit after the end.
 */
static void
arm_timer(struct proc *p)
{
	struct timeval tv = {.tv_sec = p->m->timeout};

	if (p->pid > 0 && (evbuffer_get_length(p->buf) > 0 || p->ended))
		event_add(p->timer_ev, &tv);
	else
		event_del(p->timer_ev);
}

/* ---- output ---- */

static void
read_output(struct proc *p)
{
	char scratch[4096];
	ssize_t n;

	while (p->out_fd != -1) {
		if (p->caplen < sizeof(p->cap))
			n = read(p->out_fd, p->cap + p->caplen,
			    sizeof(p->cap) - p->caplen);
		else
			n = read(p->out_fd, scratch, sizeof(scratch));
		if (n > 0 && p->caplen < sizeof(p->cap))
			p->caplen += (size_t)n;
		else if (n > 0)
			p->dropped += (size_t)n;
		else if (n == -1 && errno == EINTR)
			continue;
		else if (n == -1 && errno == EAGAIN)
			return;
		else
			close_fd(&p->out_fd, p->out_ev);
	}
}

static void
out_cb(evutil_socket_t fd, short what, void *arg)
{
	read_output(arg);
}

/*
 * What the command wrote, into the log (which escapes every byte that
 * is not printable ASCII); a NUL, which would end the text, shows as '?'.
 */
static void
log_output(struct proc *p)
{
	size_t i, n = p->caplen;

	if (n > 0 && p->cap[n - 1] == '\n' && p->dropped == 0)
		n--;
	if (n == 0)
		return;
	for (i = 0; i < n; i++)
		if (p->cap[i] == '\0')
			p->cap[i] = '?';
	log_notice(p->m->account, "mda: message %lu: output: %.*s", p->tag,
	    (int)n, p->cap);
	if (p->dropped > 0)
		log_notice(p->m->account,
		    "mda: message %lu: %zu more bytes of output not logged",
		    p->tag, p->dropped);
}

/* ---- input ---- */

/* Writes what is held for the child; on its end, closes its stdin. */
static void
flush_input(struct proc *p)
{
	int n;

	while (p->in_fd != -1 && evbuffer_get_length(p->buf) > 0) {
		n = evbuffer_write(p->buf, p->in_fd);
		if (n > 0) {
			arm_timer(p);
			continue;
		}
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN) {
			event_add(p->in_ev, NULL);
			return;
		}
		/* EPIPE: it closed its stdin or exited. */
		p->short_in = true;
		evbuffer_drain(p->buf, evbuffer_get_length(p->buf));
		close_fd(&p->in_fd, p->in_ev);
	}
	if (p->in_fd != -1)
		event_del(p->in_ev);
	if (p->ended)
		close_fd(&p->in_fd, p->in_ev);
	arm_timer(p);
	if (p->m->waiting)
		later(p->m);
}

static void
in_cb(evutil_socket_t fd, short what, void *arg)
{
	flush_input(arg);
}

/* ---- the process ---- */

static void
decide(struct proc *p, enum target_verdict v, const char *why)
{
	if (p->decided)
		return;
	p->decided = true;
	p->v = v;
	snprintf(p->why, sizeof(p->why), "mda: %s", why);
}

static void
reap_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proc *p = arg;
	int status;
	pid_t w;

	w = waitpid(p->pid, &status, WNOHANG);
	if (w == 0 || (w == -1 && errno == EINTR))
		return;
	if (w == -1)
		status = -1;
	reaped(p, status);
}

static void
reaped(struct proc *p, int status)
{
	char text[128], why[256];

	p->pid = -1;
	event_del(p->reap_ev);
	event_del(p->timer_ev);
	close_fd(&p->pidfd, NULL);
	read_output(p);
	close_fd(&p->out_fd, p->out_ev);
	/* Bytes still held were never taken. */
	if (evbuffer_get_length(p->buf) > 0 || !p->ended)
		p->short_in = true;
	evbuffer_drain(p->buf, evbuffer_get_length(p->buf));
	close_fd(&p->in_fd, p->in_ev);
	if (!p->aborted)
		log_output(p);
	if (status == -1)
		snprintf(text, sizeof(text), "exit status unknown");
	else if (WIFEXITED(status))
		snprintf(text, sizeof(text), "exit %d", WEXITSTATUS(status));
	else
		snprintf(text, sizeof(text), "killed by signal %d",
		    WTERMSIG(status));
	if (p->timed_out) {
		snprintf(why, sizeof(why), "no progress within %u s, killed",
		    p->m->timeout);
		decide(p, TARGET_TEMPFAIL, why);
	} else if (status == -1) {
		decide(p, TARGET_TEMPFAIL, text);
	} else if (mda_verdict_of(status) == TARGET_DELIVERED && p->short_in) {
		snprintf(why, sizeof(why),
		    "%s without reading the whole message", text);
		decide(p, TARGET_PERMFAIL, why);
	} else {
		decide(p, mda_verdict_of(status), text);
	}
	later(p->m);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proc *p = arg;

	p->timed_out = true;
	log_warnx(p->m->account, "mda: message %lu: no progress within %u s",
	    p->tag, p->m->timeout);
	kill_group(p);
}

static void
proc_release(struct proc *p)
{
	if (p->pid > 0) {
		/*
		 * Killed, it dies at once: this wait is short, and leaves
		 * no zombie behind.
		 */
		kill_group(p);
		waitpid(p->pid, NULL, 0);
		p->pid = -1;
	}
	close_fd(&p->in_fd, NULL);
	close_fd(&p->out_fd, NULL);
	close_fd(&p->pidfd, NULL);
	if (p->in_ev != NULL)
		event_free(p->in_ev);
	if (p->out_ev != NULL)
		event_free(p->out_ev);
	if (p->reap_ev != NULL)
		event_free(p->reap_ev);
	if (p->timer_ev != NULL)
		event_free(p->timer_ev);
	if (p->buf != NULL)
		evbuffer_free(p->buf);
	*p = (struct proc){.pid = -1, .pidfd = -1, .in_fd = -1, .out_fd = -1};
}

/* Moves FD above 0, 1 and 2, so that dup2() onto them cannot clobber it. */
static int
above_stdio(int fd)
{
	int nfd;

	if (fd > 2)
		return fd;
	nfd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	close(fd);
	return nfd;
}

/* In the forked child: only async-signal-safe calls. */
static _Noreturn void
run_child(char **argv, char **envp, int in, int out, pid_t parent)
{
	static const char msg[] = "popfetchd: cannot execute the mda\n";
	sigset_t none;
	ssize_t w;
	int sig;

	/*
	 * If popfetchd dies, its end of the pipe closes and the command
	 * would take the end of file for the end of the message: it dies
	 * too. (Its own children do not: popfetchd.conf(5) says so.)
	 */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() != parent)
		_exit(75);
	setpgid(0, 0);
	/* Ignored signals (the daemon ignores SIGPIPE) survive exec. */
	for (sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (dup2(in, 0) == -1 || dup2(out, 1) == -1 || dup2(out, 2) == -1)
		_exit(75);
	closefrom(3);
	execve(argv[0], argv, envp);
	w = write(2, msg, sizeof(msg) - 1);
	(void)w;
	/* Not found or not executable: the configuration's fault, for now. */
	_exit(75);
}

static int
proc_start(struct mda *m, struct proc *p)
{
	int in[2] = {-1, -1}, out[2] = {-1, -1};
	struct timeval poll = {.tv_usec = MDA_POLL_USEC};
	pid_t pid, self = getpid();

	p->m = m;
	if (pipe2(in, O_CLOEXEC) == -1)
		goto fail;
	if (pipe2(out, O_CLOEXEC) == -1)
		goto fail;
	if ((in[0] = above_stdio(in[0])) == -1 ||
	    (out[1] = above_stdio(out[1])) == -1)
		goto fail;
	p->in_fd = in[1];
	p->out_fd = out[0];
	in[1] = out[0] = -1;
	if (fcntl(p->in_fd, F_SETFL, O_NONBLOCK) == -1 ||
	    fcntl(p->out_fd, F_SETFL, O_NONBLOCK) == -1)
		goto fail;
	p->buf = evbuffer_new();
	p->in_ev = event_new(m->base, p->in_fd, EV_WRITE, in_cb, p);
	p->out_ev =
	    event_new(m->base, p->out_fd, EV_READ | EV_PERSIST, out_cb, p);
	p->timer_ev = event_new(m->base, -1, 0, timer_cb, p);
	p->reap_ev = event_new(m->base, -1, EV_PERSIST, reap_cb, p);
	if (p->buf == NULL || p->in_ev == NULL || p->out_ev == NULL ||
	    p->timer_ev == NULL || p->reap_ev == NULL ||
	    event_add(p->out_ev, NULL) == -1)
		goto fail;
	if ((pid = fork()) == 0)
		run_child(m->argv, m->envp, in[0], out[1], self);
	if (pid == -1)
		goto fail;
	p->pid = pid;
	setpgid(pid, pid);
	close(in[0]);
	close(out[1]);
	in[0] = out[1] = -1;
	p->pidfd = pidfd_open(pid, 0);
	if (p->pidfd != -1) {
		event_assign(p->reap_ev, m->base, p->pidfd,
		    EV_READ | EV_PERSIST, reap_cb, p);
		event_add(p->reap_ev, NULL);
	} else {
		event_add(p->reap_ev, &poll);
	}
	log_debug(m->account, "mda: message %lu: pid %ld", p->tag, (long)pid);
	return 0;
fail:
	if (in[0] != -1)
		close(in[0]);
	if (in[1] != -1)
		close(in[1]);
	if (out[0] != -1)
		close(out[0]);
	if (out[1] != -1)
		close(out[1]);
	return -1;
}

/* ---- the interface ---- */

static int
free_slot(const struct mda *m)
{
	int i;

	for (i = 0; i < MDA_SLOTS; i++)
		if (!m->p[i].used)
			return i;
	return -1;
}

static int
mda_begin(struct target *t, unsigned long tag)
{
	struct mda *m = MDA_OF(t);
	struct proc *p;
	int slot, saved;

	if (m->cur != -1 || (slot = free_slot(m)) == -1) {
		errno = EBUSY;
		return -1;
	}
	p = &m->p[slot];
	*p = (struct proc){.used = true,
	    .tag = tag,
	    .seq = ++m->seq,
	    .pid = -1,
	    .pidfd = -1,
	    .in_fd = -1,
	    .out_fd = -1};
	if (proc_start(m, p) == -1) {
		saved = errno;
		proc_release(p);
		errno = saved;
		return -1;
	}
	p->used = true;
	target_enc_init(&p->enc, false, false);
	m->cur = slot;
	return 0;
}

static int
emit(void *arg, const char *bytes, size_t n)
{
	struct proc *p = arg;

	if (p->in_fd == -1)
		return 0; /* it stopped reading: the rest is dropped */
	return evbuffer_add(p->buf, bytes, n);
}

static int
mda_write(struct target *t, const char *data, size_t len)
{
	struct mda *m = MDA_OF(t);
	struct proc *p;

	if (m->cur == -1) {
		errno = EINVAL;
		return -1;
	}
	p = &m->p[m->cur];
	if (target_enc_feed(&p->enc, data, len, emit, p) != 0) {
		errno = ENOMEM;
		return -1;
	}
	flush_input(p);
	return 0;
}

static int
mda_end(struct target *t)
{
	struct mda *m = MDA_OF(t);
	struct proc *p;

	if (m->cur == -1) {
		errno = EINVAL;
		return -1;
	}
	p = &m->p[m->cur];
	if (target_enc_finish(&p->enc, emit, p) != 0) {
		errno = ENOMEM;
		return -1;
	}
	p->ended = true;
	m->cur = -1;
	flush_input(p);
	later(m);
	return 0;
}

static void
mda_abort(struct target *t)
{
	struct mda *m = MDA_OF(t);
	struct proc *p;

	if (m->cur == -1)
		return;
	p = &m->p[m->cur];
	p->aborted = true;
	m->cur = -1;
	/* Killed before its stdin closes: an EOF would deliver a part. */
	kill_group(p);
	later(m);
}

/*
 * The caller pauses its input while the message fed has a lot held, and
 * while no slot is free for the next message: the caller may begin it
 * without asking first.
 */
static bool
must_wait(const struct mda *m)
{
	if (free_slot(m) == -1)
		return true;
	return m->cur != -1 &&
	       evbuffer_get_length(m->p[m->cur].buf) > TARGET_OUT_HIGH;
}

static bool
mda_busy(struct target *t)
{
	struct mda *m = MDA_OF(t);

	if (!must_wait(m))
		return false;
	m->waiting = true;
	return true;
}

static size_t
mda_pending(const struct target *t)
{
	const struct mda *m = MDA_OF(t);
	size_t i, n = 0;

	for (i = 0; i < MDA_SLOTS; i++)
		if (m->p[i].used && !m->p[i].aborted)
			n++;
	return n;
}

/* The oldest slot whose verdict (or, taken back, whose end) is in. */
static int
next_report(const struct mda *m)
{
	int i, best = -1;

	for (i = 0; i < MDA_SLOTS; i++) {
		if (!m->p[i].used || i == m->cur)
			continue;
		if (best == -1 || m->p[i].seq < m->p[best].seq)
			best = i;
	}
	if (best == -1 || m->p[best].pid > 0)
		return -1;
	return best;
}

static void
notify_cb(evutil_socket_t fd, short what, void *arg)
{
	struct mda *m = arg;
	struct proc *p;
	unsigned long tag;
	enum target_verdict v;
	char why[sizeof(p->why)];
	bool aborted;
	int i;

	while ((i = next_report(m)) != -1) {
		p = &m->p[i];
		tag = p->tag;
		v = p->v;
		aborted = p->aborted;
		snprintf(why, sizeof(why), "%s", p->why);
		proc_release(p);
		if (!aborted)
			m->cbs.done(m->cbs.arg, tag, v, why);
	}
	if (m->waiting && !must_wait(m)) {
		m->waiting = false;
		if (m->cbs.ready != NULL)
			m->cbs.ready(m->cbs.arg);
	}
}

static void
mda_close(struct target *t)
{
	/* Nothing to end politely: each process ends with its message. */
}

static void
mda_free(struct target *t)
{
	struct mda *m = MDA_OF(t);
	int i;

	for (i = 0; i < MDA_SLOTS; i++)
		proc_release(&m->p[i]);
	if (m->notify != NULL)
		event_free(m->notify);
	mda_argv_free(m->argv);
	mda_argv_free(m->envp);
	free(m->account);
	free(m);
}

static const struct target_ops mda_ops = {
    .begin = mda_begin,
    .write = mda_write,
    .end = mda_end,
    .abort = mda_abort,
    .busy = mda_busy,
    .pending = mda_pending,
    .close = mda_close,
    .free = mda_free,
};

/* NAME=VALUE appended to ENV at *N, unless VALUE is NULL. */
static int
env_add(char **env, size_t *n, const char *name, const char *value)
{
	if (value == NULL)
		return 0;
	if (asprintf(&env[*n], "%s=%s", name, value) == -1) {
		env[*n] = NULL;
		return -1;
	}
	env[++*n] = NULL;
	return 0;
}

/*
 * The command's whole environment: a PATH for what it runs in turn,
 * HOME, and who the message is for.
 */
static char **
make_env(const struct target_mda_conf *c)
{
	char **env = calloc(7, sizeof(*env));
	size_t n = 0;

	if (env == NULL)
		return NULL;
	if (env_add(env, &n, "PATH", "/usr/bin:/bin") == -1 ||
	    env_add(env, &n, "HOME", c->home) == -1 ||
	    env_add(env, &n, "POPFETCHD_ACCOUNT", c->vars.account) == -1 ||
	    env_add(env, &n, "POPFETCHD_USER", c->vars.user) == -1 ||
	    env_add(env, &n, "POPFETCHD_RECIPIENT",
		c->vars.recipient != NULL ? c->vars.recipient : c->vars.user) ==
		-1) {
		mda_argv_free(env);
		return NULL;
	}
	return env;
}

/*
 * A command named without a '/' is looked up where its own PATH would
 * find it, before the fork (execve() searches nowhere).
 */
static int
resolve(char **argv)
{
	static const char *const dirs[] = {"/usr/bin", "/bin"};
	char *path;
	size_t i;

	if (strchr(argv[0], '/') != NULL)
		return 0;
	for (i = 0; i < sizeof(dirs) / sizeof(*dirs); i++) {
		if (asprintf(&path, "%s/%s", dirs[i], argv[0]) == -1)
			return -1;
		if (access(path, X_OK) == 0) {
			free(argv[0]);
			argv[0] = path;
			return 0;
		}
		free(path);
	}
	return 0; /* exec fails, and says so */
}

struct target *
target_mda_new(struct event_base *base, const struct target_mda_conf *c,
    const struct target_cbs *cbs, const char **why)
{
	struct mda *m;
	int i;

	*why = "out of memory";
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	m->t.ops = &mda_ops;
	m->base = base;
	m->cbs = *cbs;
	m->timeout = c->timeout;
	m->cur = -1;
	for (i = 0; i < MDA_SLOTS; i++)
		m->p[i] = (struct proc){
		    .pid = -1, .pidfd = -1, .in_fd = -1, .out_fd = -1};
	m->account = strdup(c->account != NULL ? c->account : "-");
	m->notify = event_new(base, -1, 0, notify_cb, m);
	m->envp = make_env(c);
	if (m->account == NULL || m->notify == NULL || m->envp == NULL) {
		mda_free(&m->t);
		return NULL;
	}
	if ((m->argv = mda_argv(c->command, c->shell, &c->vars, why)) == NULL) {
		mda_free(&m->t);
		return NULL;
	}
	if (resolve(m->argv) == -1) {
		*why = "out of memory";
		mda_free(&m->t);
		return NULL;
	}
	return &m->t;
}
