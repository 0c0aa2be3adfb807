/*
 * A TCP relay that adds latency without limiting throughput: the path of
 * bench/bench.py's B2 and B3 scenarios. It is C so that its own CPU time
 * takes as little as possible from Dovecot and popfetchd on the same CPUs.
 *
 *	bench_relay LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS
 *	    [--no-handshake]
 *
 * Listens on 127.0.0.1:LISTEN_PORT (0: any free port) and prints a first
 * line "listening on 127.0.0.1:PORT -> ...", where bench.py reads the port.
 * Every chunk read from either side is written to the other side DELAY_MS
 * after it arrived, from a queue, so reading goes on meanwhile: the delay
 * adds latency, not a limit on throughput. Order is kept, half-closes
 * follow the data, and the bytes are not looked at, so TLS passes through.
 * The client's connect() completes at once, so the upstream connection is
 * opened 3 x DELAY_MS after accept(), when a real server's accept() would
 * return (unless --no-handshake), and client bytes are held until then.
 * A socket error closes both connections at once; a direction stops
 * reading above HIGH_WATER queued bytes (the kernel's send buffer bounds
 * the rest).
 */
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

#include <errno.h>
#include <malloc.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_clock.h"

#define READ_SIZE  (256 * 1024)
#define HIGH_WATER (8 * 1024 * 1024)
/* Hysteresis, so that a full queue does not toggle epoll per chunk. */
#define LOW_WATER (4 * 1024 * 1024)
#define NEVER	  INT64_MAX
/* Smaller reads are copied out, so that a byte does not pin 4 KiB. */
#define COPY_BELOW (64 * 1024)

struct chunk {
	struct chunk *next;
	int64_t due; /* CLOCK_MONOTONIC, ns */
	size_t len, off;
	bool eof; /* pass the half-close on instead of data */
	char data[];
};

struct side;

/* One direction: a delay line from SRC to DST. */
struct line {
	struct side *src, *dst;
	struct chunk *head, *tail;
	size_t queued;
	bool full, blocked, finished;
};

struct side {
	struct conn *c;
	int fd;
	uint32_t ev; /* what epoll watches; 0: not registered */
	bool connecting, connected, rd_eof;
	struct line *out, *in;
};

struct conn {
	struct conn *next;
	struct side cl, sv;
	struct line up, down;
	int64_t connect_at; /* NEVER once the connect has started */
	bool dead;
};

static int ep, tfd;
static int64_t now_ns, delay;
static struct conn *conns;
static struct addrinfo *target;
static struct chunk *spare; /* READ_SIZE bytes to read into */

static void
fatal(const char *what)
{
	fprintf(stderr, "bench_relay: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void
kill_conn(struct conn *c)
{
	struct line *lines[2] = {&c->up, &c->down};
	struct chunk *k;

	if (c->dead)
		return;
	c->dead = true; /* freed after the current batch of events */
	if (c->cl.fd != -1)
		close(c->cl.fd);
	if (c->sv.fd != -1)
		close(c->sv.fd);
	for (int i = 0; i < 2; i++)
		while ((k = lines[i]->head) != NULL) {
			lines[i]->head = k->next;
			free(k);
		}
}

static void
watch(struct side *s)
{
	struct epoll_event e = {.data.ptr = s};
	uint32_t want = 0;

	if (s->c->dead || s->fd == -1)
		return;
	if (s->connected && !s->rd_eof && !s->out->full)
		want |= EPOLLIN;
	if (s->connecting || s->in->blocked)
		want |= EPOLLOUT;
	if (want == s->ev)
		return;
	/*
	 * A side with nothing to watch leaves epoll: after both half-closes
	 * it would report EPOLLHUP on every wait, a busy loop.
	 */
	e.events = want;
	if (epoll_ctl(ep,
		want == 0    ? EPOLL_CTL_DEL
		: s->ev == 0 ? EPOLL_CTL_ADD
			     : EPOLL_CTL_MOD,
		s->fd, &e) == -1)
		fatal("epoll_ctl");
	s->ev = want;
}

/* Write what is due to L's destination. */
static void
flush(struct line *l)
{
	struct chunk *k;
	ssize_t n;

	if (l->src->c->dead || !l->dst->connected || l->blocked)
		return;
	while ((k = l->head) != NULL && k->due <= now_ns) {
		if (k->eof) {
			/* ENOTCONN: the peer is gone; nothing to tell it. */
			shutdown(l->dst->fd, SHUT_WR);
			l->finished = true;
		} else {
			n = send(l->dst->fd, k->data + k->off, k->len - k->off,
			    MSG_NOSIGNAL);
			if (n == -1 && errno == EINTR)
				continue;
			if (n == -1 && errno != EAGAIN) {
				kill_conn(l->src->c);
				return;
			}
			if (n > 0) {
				k->off += (size_t)n;
				l->queued -= (size_t)n;
			}
			if (k->off < k->len) {
				l->blocked = true;
				break;
			}
		}
		if ((l->head = k->next) == NULL)
			l->tail = NULL;
		free(k);
	}
	if (l->full && l->queued < LOW_WATER)
		l->full = false;
	watch(l->src);
	watch(l->dst);
	if (l->src->c->up.finished && l->src->c->down.finished)
		kill_conn(l->src->c);
}

static void
push(struct line *l, size_t len, bool eof)
{
	struct chunk *k = spare;
	int64_t not_before = l->src->c->connect_at;

	if (len < COPY_BELOW) {
		if ((k = malloc(sizeof(*k) + len)) == NULL)
			fatal("malloc");
		memcpy(k->data, spare->data, len);
	} else {
		spare = NULL;
	}
	k->next = NULL;
	k->len = len;
	k->off = 0;
	k->eof = eof;
	k->due = now_ns + delay;
	/* Upstream: client bytes wait for the (simulated) handshake. */
	if (l == &l->src->c->up && not_before != NEVER && not_before > k->due)
		k->due = not_before;
	if (l->tail != NULL)
		l->tail->next = k;
	else
		l->head = k;
	l->tail = k;
	l->queued += len;
	if (l->queued > HIGH_WATER)
		l->full = true;
}

static void
do_read(struct side *s)
{
	ssize_t n;

	while (!s->c->dead && !s->out->full) {
		if (spare == NULL &&
		    (spare = malloc(sizeof(*spare) + READ_SIZE)) == NULL)
			fatal("malloc");
		n = recv(s->fd, spare->data, READ_SIZE, 0);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1 && errno == EAGAIN)
			break;
		if (n == -1) {
			kill_conn(s->c);
			return;
		}
		push(s->out, (size_t)n, n == 0);
		if (n == 0)
			s->rd_eof = true;
		/* A short read has likely emptied the socket: skip EAGAIN. */
		if (n < READ_SIZE)
			break;
	}
	flush(s->out);
	watch(s);
}

static void
start_connect(struct conn *c)
{
	int one = 1;

	c->connect_at = NEVER;
	c->sv.fd = socket(target->ai_family,
	    target->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
	    target->ai_protocol);
	if (c->sv.fd == -1) {
		kill_conn(c);
		return;
	}
	setsockopt(c->sv.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->sv.fd, target->ai_addr, target->ai_addrlen) == 0) {
		c->sv.connected = true;
		flush(&c->up);
	} else if (errno == EINPROGRESS) {
		c->sv.connecting = true;
	} else {
		kill_conn(c);
		return;
	}
	watch(&c->sv);
}

static void
on_writable(struct side *s)
{
	int err = 0;
	socklen_t len = sizeof(err);

	if (s->connecting) {
		s->connecting = false;
		if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1 ||
		    err != 0) {
			kill_conn(s->c);
			return;
		}
		s->connected = true;
		flush(s->out); /* the client bytes already due */
		watch(s);
		return;
	}
	s->in->blocked = false;
	flush(s->in);
}

static void
accept_all(int lfd, bool handshake)
{
	struct conn *c;
	int fd, one = 1;

	while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) !=
	       -1) {
		if ((c = calloc(1, sizeof(*c))) == NULL)
			fatal("calloc");
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->cl = (struct side){.c = c,
		    .fd = fd,
		    .connected = true,
		    .out = &c->up,
		    .in = &c->down};
		c->sv = (struct side){
		    .c = c, .fd = -1, .out = &c->down, .in = &c->up};
		c->up = (struct line){.src = &c->cl, .dst = &c->sv};
		c->down = (struct line){.src = &c->sv, .dst = &c->cl};
		/* A real server's accept() returns 1.5 round trips later. */
		c->connect_at = now_ns + (handshake ? 3 * delay : 0);
		c->next = conns;
		conns = c;
		watch(&c->cl);
	}
}

/* Start due connects, write due chunks, free the dead; the next deadline. */
static int64_t
sweep(void)
{
	struct conn **pc = &conns, *c;
	int64_t next = NEVER;

	while ((c = *pc) != NULL) {
		if (!c->dead && c->connect_at <= now_ns)
			start_connect(c);
		flush(&c->up);
		flush(&c->down);
		if (c->dead) {
			*pc = c->next;
			free(c);
			continue;
		}
		if (c->connect_at < next)
			next = c->connect_at;
		for (struct line *l = &c->up; l <= &c->down; l++)
			if (l->head != NULL && l->dst->connected &&
			    !l->blocked && l->head->due < next)
				next = l->head->due;
		pc = &c->next;
	}
	return next;
}

/* Only there to make epoll_pwait return EINTR. */
static void
on_signal(int sig)
{
	(void)sig;
}

int
main(int argc, char **argv)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
	struct epoll_event evs[64], e = {.events = EPOLLIN};
	struct itimerspec its = {{0, 0}, {0, 0}};
	socklen_t slen = sizeof(sin);
	struct sigaction sa = {.sa_handler = on_signal};
	sigset_t block, empty;
	int lfd, n, one = 1, gai;
	int64_t armed = NEVER, next;
	bool handshake = !(argc == 6 && strcmp(argv[5], "--no-handshake") == 0);
	uint64_t ticks;

	if (argc != 5 && handshake) {
		fprintf(stderr,
		    "usage: bench_relay LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS [--no-handshake]\n");
		return 2;
	}
	delay = (int64_t)(strtod(argv[4], NULL) * 1e6);
	if ((gai = getaddrinfo(argv[2], argv[3], &hints, &target)) != 0) {
		fprintf(stderr, "bench_relay: %s: %s\n", argv[2],
		    gai_strerror(gai));
		return 1;
	}
	/*
	 * Freed chunks stay in the heap: by default glibc gives 256 KiB
	 * blocks back to the kernel (brk or munmap) and faults them in
	 * again for the next read, which doubled the relay's CPU time.
	 */
	mallopt(M_MMAP_THRESHOLD, 4 * READ_SIZE);
	mallopt(M_TRIM_THRESHOLD, 2 * HIGH_WATER);
	/* Wake-ups on time: the default 50 us slack would add to DELAY. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
	/* Signals arrive only inside epoll_pwait: no race with the loop. */
	sigemptyset(&empty);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sin.sin_port = htons((uint16_t)atoi(argv[1]));
	if ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		 0)) == -1 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ==
		-1 ||
	    bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1 ||
	    listen(lfd, 1024) == -1 ||
	    getsockname(lfd, (struct sockaddr *)&sin, &slen) == -1)
		fatal("listen");
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) == -1 ||
	    (tfd = timerfd_create(
		 CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)) == -1)
		fatal("epoll");
	e.data.ptr = &lfd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e) == -1)
		fatal("epoll_ctl");
	e.data.ptr = &tfd;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &e) == -1)
		fatal("epoll_ctl");
	printf("listening on 127.0.0.1:%d -> %s:%s, %g ms each way\n",
	    ntohs(sin.sin_port), argv[2], argv[3], (double)delay / 1e6);
	fflush(stdout);

	for (;;) {
		now_ns = clock_ns();
		next = sweep();
		/* An absolute timerfd: epoll's own timeout is in whole ms. */
		if (next != armed) {
			its.it_value.tv_sec =
			    next == NEVER ? 0 : next / 1000000000;
			its.it_value.tv_nsec =
			    next == NEVER ? 0 : next % 1000000000;
			if (next != NEVER && its.it_value.tv_sec == 0 &&
			    its.it_value.tv_nsec == 0)
				its.it_value.tv_nsec = 1;
			if (timerfd_settime(
				tfd, TFD_TIMER_ABSTIME, &its, NULL) == -1)
				fatal("timerfd_settime");
			armed = next;
		}
		n = epoll_pwait(ep, evs, 64, -1, &empty);
		if (n == -1 && errno == EINTR)
			break; /* SIGTERM or SIGINT: the only unblocked ones */
		if (n == -1)
			fatal("epoll_pwait");
		now_ns = clock_ns();
		for (int i = 0; i < n; i++) {
			struct side *s = evs[i].data.ptr;

			if (evs[i].data.ptr == &lfd) {
				accept_all(lfd, handshake);
			} else if (evs[i].data.ptr == &tfd) {
				if (read(tfd, &ticks, sizeof(ticks)) > 0)
					armed = NEVER; /* fired: re-arm */
			} else if (!s->c->dead) {
				if (evs[i].events &
					(EPOLLIN | EPOLLHUP | EPOLLERR) &&
				    s->ev & EPOLLIN)
					do_read(s);
				if (!s->c->dead &&
				    evs[i].events &
					(EPOLLOUT | EPOLLHUP | EPOLLERR) &&
				    s->ev & EPOLLOUT)
					on_writable(s);
			}
		}
	}
	for (struct conn *c = conns; c != NULL; c = c->next)
		kill_conn(c);
	freeaddrinfo(target);
	return 0;
}
