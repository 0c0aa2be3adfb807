/*
 * The --status socket, both ends: the daemon answers on its loop, the
 * client (popfetchd --status) asks and prints. One request line, one
 * JSON line back, then the daemon closes.
 *
 * A client is any local process that can reach the socket, so it is held
 * to bounds: a short request line, a few seconds to send it and to read
 * the answer, a few clients at once. Nothing it does blocks the loop.
 */
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "fsutil.h"
#include "log.h"
#include "status.h"

/* The one request there is; a line longer than this is not a request. */
#define STATUS_REQUEST	   "status"
#define STATUS_REQUEST_MAX 256
/*
 * Seconds a client has to send its line, and then to read the answer:
 * plenty for a program on the same machine, short enough that clients
 * that connect and stay silent cannot pile up.
 */
#define STATUS_CLIENT_SECS 5
/*
 * And this long in all: one that reads a byte now and then, never quite
 * too slow for the above, still leaves.
 */
#define STATUS_CLIENT_TOTAL 60
/*
 * Clients served at once; more are closed as they come. Each holds at
 * most one answer (about 1 KB per account) in memory.
 */
#define STATUS_CLIENTS_MAX 16
/*
 * The client's bound on the answer: 1,000 accounts make about 1 MB; a
 * hundred times that is not an answer from us.
 */
#define STATUS_ANSWER_MAX (128u << 20)
/*
 * Accounts put in the answer per loop turn: each costs some 30 us of
 * JSON, so a thousand accounts are written in slices of about 2 ms with
 * the polls served in between, not in one 30 ms stall.
 */
#define STATUS_SLICE 64
/* The client waits this long for the daemon, which answers at once. */
#define STATUS_CLIENT_WAIT 30

struct status_client {
	struct status_server *srv;
	struct bufferevent *bev;
	struct event *deadline;
	/* The records as they were when asked, written a slice at a time. */
	struct status_account *snap;
	size_t n, next;
	bool done; /* the answer is all in the output buffer */
	LIST_ENTRY(status_client) entry;
};

struct status_server {
	struct event_base *base;
	struct evconnlistener *lis;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t dev; /* of our socket file, so only ours is removed */
	ino_t ino;
	status_each_fn each;
	void *arg;
	time_t start;
	LIST_HEAD(, status_client) clients;
	size_t nclients;
};

static void client_event(struct bufferevent *bev, short what, void *arg);

/* --- where ------------------------------------------------------------ */

int
status_socket_path(char *buf, size_t len, char *err, size_t errlen)
{
	const char *dir = getenv("RUNTIME_DIRECTORY"), *sub = "";
	size_t dirlen;
	int n;

	if (dir != NULL && dir[0] != '\0')
		dirlen = strcspn(dir, ":"); /* several: the first is ours */
	else if (geteuid() == 0) {
		dir = "/run/popfetchd";
		dirlen = strlen(dir);
	} else if ((dir = getenv("XDG_RUNTIME_DIR")) != NULL &&
		   dir[0] != '\0') {
		dirlen = strlen(dir);
		sub = "/popfetchd";
	} else {
		snprintf(err, errlen,
		    "no runtime directory: set RUNTIME_DIRECTORY (or XDG_RUNTIME_DIR)");
		return -1;
	}
	n = snprintf(buf, len, "%.*s%s/status.sock", (int)dirlen, dir, sub);
	if (n < 0 || (size_t)n >= len) {
		snprintf(err, errlen,
		    "socket path too long: %.*s%s/status.sock", (int)dirlen,
		    dir, sub);
		return -1;
	}
	return 0;
}

/* --- the daemon's end -------------------------------------------------- */

static void
client_free(struct status_client *c)
{
	LIST_REMOVE(c, entry);
	c->srv->nclients--;
	/* Safe inside its own callbacks: libevent defers the real free. */
	bufferevent_free(c->bev);
	event_free(c->deadline);
	free(c->snap);
	free(c);
}

static void
client_put(struct status_client *c, const char *text)
{
	if (bufferevent_write(c->bev, text, strlen(text)) == -1)
		fatalx("out of memory");
}

/*
 * The output went out: the next slice of the answer, its end, or (all
 * written) done with this client.
 */
static void
client_written(struct bufferevent *bev, void *arg)
{
	struct status_client *c = arg;
	size_t count = c->n - c->next;
	char *text;

	if (c->done) {
		client_free(c);
		return;
	}
	if (count == 0) {
		client_put(c, STATUS_JSON_TAIL);
		c->done = true;
		return;
	}
	if (count > STATUS_SLICE)
		count = STATUS_SLICE;
	text = status_json_accounts(c->snap, c->next, count);
	c->next += count;
	client_put(c, text);
	free(text);
}

/* Starts the answer to LINE: the document's head, or an error. */
static void
client_answer(struct status_client *c, const char *line)
{
	struct status_server *srv = c->srv;
	char *head;

	if (strcmp(line, STATUS_REQUEST) != 0) {
		client_put(c, "{\"error\":\"unknown request\"}\n");
		c->done = true;
		return;
	}
	if (status_collect(srv->each, srv->arg, &c->snap, &c->n) == -1)
		fatalx("out of memory");
	head = status_json_head(c->snap, c->n, srv->start, time(NULL));
	client_put(c, head);
	free(head);
}

static void
client_read(struct bufferevent *bev, void *arg)
{
	struct status_client *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char *line;
	size_t n;

	line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
	if (line == NULL) {
		if (evbuffer_get_length(in) > STATUS_REQUEST_MAX) {
			log_debug(
			    NULL, "status: request line too long, closed");
			client_free(c);
		}
		return;
	}
	if (n > STATUS_REQUEST_MAX) {
		free(line);
		client_free(c);
		return;
	}
	bufferevent_disable(bev, EV_READ);
	bufferevent_setcb(bev, NULL, client_written, client_event, c);
	/* Re-armed: the client now has this long to read each slice. */
	bufferevent_enable(bev, EV_WRITE);
	client_answer(c, line);
	free(line);
}

/* End of stream, an error, or a client too slow to ask or to read. */
static void
client_event(struct bufferevent *bev, short what, void *arg)
{
	struct status_client *c = arg;

	if (what & BEV_EVENT_TIMEOUT)
		log_debug(NULL, "status: client too slow, closed");
	client_free(c);
}

static void
client_deadline(evutil_socket_t fd, short what, void *arg)
{
	log_debug(NULL, "status: client took too long, closed");
	client_free(arg);
}

/* Root and our own user may ask; nobody else. */
static bool
peer_allowed(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
		log_warn(NULL, "status: SO_PEERCRED");
		return false;
	}
	if (cred.uid == 0 || cred.uid == geteuid())
		return true;
	log_debug(NULL, "status: refused uid=%u pid=%d", (unsigned)cred.uid,
	    (int)cred.pid);
	return false;
}

static void
server_accept(struct evconnlistener *lis, evutil_socket_t fd,
    struct sockaddr *sa, int salen, void *arg)
{
	const struct timeval limit = {STATUS_CLIENT_SECS, 0};
	const struct timeval total = {STATUS_CLIENT_TOTAL, 0};
	struct status_server *srv = arg;
	struct status_client *c;

	if (srv->nclients >= STATUS_CLIENTS_MAX || !peer_allowed(fd)) {
		close(fd);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (c->bev = bufferevent_socket_new(
		 srv->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL ||
	    (c->deadline = evtimer_new(srv->base, client_deadline, c)) == NULL)
		fatalx("out of memory");
	evtimer_add(c->deadline, &total);
	c->srv = srv;
	LIST_INSERT_HEAD(&srv->clients, c, entry);
	srv->nclients++;
	bufferevent_setcb(c->bev, client_read, NULL, client_event, c);
	/* Reading stops at the bound; what came by then is looked at. */
	bufferevent_setwatermark(c->bev, EV_READ, 0, STATUS_REQUEST_MAX + 1);
	bufferevent_set_timeouts(c->bev, &limit, &limit);
	bufferevent_enable(c->bev, EV_READ);
}

/*
 * Makes way for our socket at PATH: a file a live daemon answers on is
 * left alone (-1); one nobody answers on is removed.
 */
static int
clear_stale(
    const char *path, const struct sockaddr_un *sun, char *err, size_t errlen)
{
	int fd, r;

	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	r = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	close(fd);
	if (r == 0) {
		snprintf(err, errlen,
		    "%s: another popfetchd answers there; not serving --status",
		    path);
		return -1;
	}
	if (errno != ENOENT && unlink(path) == -1 && errno != ENOENT) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* Its directory: made 0700 when missing (no one else needs to look in). */
static int
make_dir(const char *path, char *err, size_t errlen)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)], e[256];

	snprintf(dir, sizeof(dir), "%s", path);
	if (fsutil_mkdir_p(dirname(dir), e, sizeof(e)) == -1) {
		snprintf(err, errlen, "%s", e);
		return -1;
	}
	return 0;
}

/* A listening socket at PATH, mode 0600; -1 with ERR. */
static int
listen_at(const char *path, struct stat *st, char *err, size_t errlen)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	mode_t old;
	int fd;

	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	if (make_dir(path, err, errlen) == -1 ||
	    clear_stale(path, &sun, err, errlen) == -1)
		return -1;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
		 0)) == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	/* Born 0600: no moment at which others may connect. */
	old = umask(0177);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    listen(fd, STATUS_CLIENTS_MAX) == -1 || stat(path, st) == -1) {
		umask(old);
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	umask(old);
	return fd;
}

struct status_server *
status_server_new(struct event_base *base, const char *path,
    status_each_fn each, void *arg, time_t start, char *err, size_t errlen)
{
	struct status_server *srv;
	struct stat st;
	int fd;

	if ((fd = listen_at(path, &st, err, errlen)) == -1)
		return NULL;
	if ((srv = calloc(1, sizeof(*srv))) == NULL ||
	    (srv->lis = evconnlistener_new(base, server_accept, srv,
		 LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd)) ==
		NULL)
		fatalx("out of memory");
	srv->base = base;
	snprintf(srv->path, sizeof(srv->path), "%s", path);
	srv->dev = st.st_dev;
	srv->ino = st.st_ino;
	srv->each = each;
	srv->arg = arg;
	srv->start = start;
	LIST_INIT(&srv->clients);
	return srv;
}

void
status_server_free(struct status_server **sp)
{
	struct status_server *srv = *sp;
	struct stat st;

	if (srv == NULL)
		return;
	while (!LIST_EMPTY(&srv->clients))
		client_free(LIST_FIRST(&srv->clients));
	evconnlistener_free(srv->lis);
	/* Not a socket a later daemon put there meanwhile. */
	if (stat(srv->path, &st) == 0 && st.st_dev == srv->dev &&
	    st.st_ino == srv->ino)
		unlink(srv->path);
	free(srv);
	*sp = NULL;
}

/* --- the client's end --------------------------------------------------- */

/* Connects to the daemon at PATH: the socket, or -1 with a sysexits. */
static int
client_connect(const char *path, int *ex)
{
	const struct timeval wait = {STATUS_CLIENT_WAIT, 0};
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1) {
		fprintf(stderr, "popfetchd: socket: %s\n", strerror(errno));
		*ex = EX_OSERR;
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof(wait));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wait, sizeof(wait));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
		return fd;
	if (errno == EACCES || errno == EPERM) {
		fprintf(stderr,
		    "popfetchd: %s: %s (only root and the daemon's user may ask)\n",
		    path, strerror(errno));
		*ex = EX_NOPERM;
	} else {
		fprintf(stderr,
		    "popfetchd: no daemon answers at %s (%s); is it running? (set RUNTIME_DIRECTORY to its runtime directory if it is elsewhere)\n",
		    path, strerror(errno));
		*ex = EX_UNAVAILABLE;
	}
	close(fd);
	return -1;
}

/* The daemon hung up on us: not allowed, most likely. */
static char *
client_refused(const char *path, int *ex)
{
	fprintf(stderr,
	    "popfetchd: %s: the daemon closed without answering (only root and its own user may ask)\n",
	    path);
	*ex = EX_NOPERM;
	return NULL;
}

/*
 * Sends the request and reads the whole answer, *LEN bytes and a NUL;
 * NULL with a sysexits.
 */
static char *
client_ask(int fd, const char *path, int *ex, size_t *lenp)
{
	static const char req[] = STATUS_REQUEST "\n";
	char *buf = NULL, *nb;
	size_t len = 0, cap = 0;
	ssize_t r;

	/* Short enough for one send; no SIGPIPE if the daemon hung up. */
	if (send(fd, req, sizeof(req) - 1, MSG_NOSIGNAL) == -1) {
		if (errno == EPIPE || errno == ECONNRESET)
			return client_refused(path, ex);
		fprintf(stderr, "popfetchd: %s: %s\n", path, strerror(errno));
		*ex = EX_IOERR;
		return NULL;
	}
	for (;;) {
		if (len + 1 >= cap) {
			cap = cap ? 2 * cap : 65536;
			if (cap > STATUS_ANSWER_MAX ||
			    (nb = realloc(buf, cap)) == NULL) {
				fprintf(stderr,
				    "popfetchd: %s: answer too long\n", path);
				free(buf);
				*ex = EX_PROTOCOL;
				return NULL;
			}
			buf = nb;
		}
		if ((r = read(fd, buf + len, cap - len - 1)) == 0)
			break;
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1 && errno == ECONNRESET && len == 0)
			r = 0; /* refused: said below */
		if (r == 0)
			break;
		if (r == -1) {
			fprintf(stderr, "popfetchd: %s: %s\n", path,
			    errno == EAGAIN ? "no answer in time"
					    : strerror(errno));
			free(buf);
			*ex = EX_IOERR;
			return NULL;
		}
		len += (size_t)r;
	}
	if (len == 0) {
		free(buf);
		return client_refused(path, ex);
	}
	buf[len] = '\0';
	*lenp = len;
	return buf;
}

int
status_client(const char *path, bool json, char *const *only, size_t nonly)
{
	ssize_t missing;
	size_t len;
	char *text;
	int fd, ex = EX_OK;

	if ((fd = client_connect(path, &ex)) == -1)
		return ex;
	text = client_ask(fd, path, &ex, &len);
	close(fd);
	if (text == NULL)
		return ex;
	missing =
	    status_print(stdout, text, len, json, time(NULL), only, nonly);
	free(text);
	if (missing == -1) {
		fprintf(stderr, "popfetchd: %s: not an answer from popfetchd\n",
		    path);
		return EX_PROTOCOL;
	}
	if (fflush(stdout) == EOF)
		return EX_IOERR;
	if (missing > 0) {
		fprintf(stderr,
		    "popfetchd: the running daemon has no account of %zd name(s) given with -a\n",
		    missing);
		return EX_NOUSER;
	}
	return EX_OK;
}
