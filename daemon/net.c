/*
 * Transport over libevent bufferevents. TLS is a filter bufferevent on top
 * of the socket one, so implicit TLS and the STLS upgrade take one path.
 *
 * Connecting is ours, not the bufferevent's: libevent's hostname connect
 * tries the first address only. Every address the resolver gives (IPv6
 * and IPv4) is tried in turn, each within the timeout, and the socket that
 * answers is handed to a bufferevent.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/err.h>

#include "net.h"
#include "testhook.h"

/*
 * Input buffered per layer (socket, TLS) before reading pauses: without
 * a bound, a server faster than the disk fills memory with a whole
 * message. A few TLS records' worth keeps reads large.
 */
#define NET_READ_HIGH (256 * 1024)

/*
 * The most the TLS layer decrypts into its input per read. Before each
 * read libevent reserves that much room plus its chain header, rounded
 * up to a power of two, and keeps it while the session waits: its
 * default of 16 KiB made that 32 KiB per waiting connection, this 4 KiB.
 */
#define NET_TLS_READ (4096 - 64)

/*
 * Addresses tried per connection. Each attempt may take the whole
 * timeout, and a name can carry dozens of records: past this many the
 * poll would outlast any sensible interval, and the scheduler retries.
 */
#define NET_ADDR_MAX 16

/* Where a connection stands; the transport's own, not the session's. */
enum net_phase {
	NET_PH_RESOLVE, /* name lookup running, bounded by the timeout */
	NET_PH_CONNECT, /* trying the addresses in turn */
	NET_PH_FAILED,	/* every address failed: the event is due */
	NET_PH_OPEN,	/* connected: bufferevents carry the bytes */
};

struct net {
	struct event_base *base;
	struct evdns_getaddrinfo_request *req; /* until its callback ran */
	struct evutil_addrinfo *addrs, *next;  /* the lookup's answer */
	struct event *step; /* the lookup's timer, deferral */
	struct event *wait; /* one connect attempt */
	evutil_socket_t fd; /* its socket, -1 when none */
	enum net_phase phase;
	enum net_ev fail_ev; /* raised once NET_PH_FAILED is reached */
	unsigned tried, failed_by_timeout;
	bool dead; /* freed while the lookup ran: its callback frees */
	struct bufferevent *bev; /* the top of the stack: socket or TLS */
	SSL *ssl;
	net_cb cb;
	void *arg;
	unsigned timeout;
	char *host;
	char port[8];
	unsigned long ssl_err;
	char err[512];
	char tries[400]; /* each failed address and why, "; "-separated */
	char cur[INET6_ADDRSTRLEN + 2]; /* the address being tried */
};

static int net_dns_configure(struct evdns_base *dns, char *err, size_t errlen);
static void net_lookup_cb(int result, struct evutil_addrinfo *res, void *arg);
static void net_step_cb(evutil_socket_t fd, short what, void *arg);
static void net_wait_cb(evutil_socket_t fd, short what, void *arg);
static void net_read_cb(struct bufferevent *bev, void *arg);
static void net_event_cb(struct bufferevent *bev, short what, void *arg);

/*
 * Only silence from the server counts once connected: a write timeout on
 * a long download would fire while data still flows.
 */
static void
net_set_timeouts(struct net *n)
{
	struct timeval tv = {(time_t)n->timeout, 0};

	bufferevent_set_timeouts(n->bev, &tv, NULL);
}

struct net *
net_connect(struct event_base *base, struct evdns_base *dns, const char *host,
    unsigned port, unsigned timeout, net_cb cb, void *arg)
{
	struct evutil_addrinfo hints = {0};
	struct timeval tv = {(time_t)timeout, 0};
	struct net *n;

	if ((n = calloc(1, sizeof(*n))) == NULL)
		return NULL;
	n->base = base;
	n->fd = -1;
	n->cb = cb;
	n->arg = arg;
	n->timeout = timeout;
	snprintf(n->port, sizeof(n->port), "%u", port);
	if ((n->host = strdup(host)) == NULL ||
	    (n->step = event_new(base, -1, 0, net_step_cb, n)) == NULL) {
		free(n->host);
		free(n);
		return NULL;
	}
	/*
	 * Both families, and no AI_ADDRCONFIG: a family without a route
	 * fails at once (unreachable) and the next address is tried, while
	 * guessing the host's families wrongly would hide reachable ones.
	 */
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	n->phase = NET_PH_RESOLVE;
	evtimer_add(n->step, &tv);
	/*
	 * The lookup may answer from inside this call (literal address,
	 * hosts file); its callback then defers to the loop, so the caller
	 * never gets an event from inside net_connect().
	 */
	n->req =
	    evdns_getaddrinfo(dns, n->host, n->port, &hints, net_lookup_cb, n);
	return n;
}

/* Hands the next step to a later loop turn. */
static void
net_defer(struct net *n)
{
	event_del(n->step);
	event_active(n->step, EV_TIMEOUT, 1);
}

static void
net_lookup_cb(int result, struct evutil_addrinfo *res, void *arg)
{
	struct net *n = arg;

	n->req = NULL;
	if (n->dead || n->phase != NET_PH_RESOLVE) {
		/* Freed, or the lookup timed out: nobody waits for it. */
		if (res != NULL)
			evutil_freeaddrinfo(res);
		if (n->dead) {
			free(n->host);
			free(n);
		}
		return;
	}
	if (result != 0) {
		snprintf(n->err, sizeof(n->err), "cannot resolve %s: %s",
		    n->host, evutil_gai_strerror(result));
		n->phase = NET_PH_FAILED;
		n->fail_ev = NET_ERROR;
	} else {
		n->addrs = n->next = res;
		n->phase = NET_PH_CONNECT;
	}
	net_defer(n);
}

/* SA's address as text, for messages. */
static void
net_addr_text(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6,
		    &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
		    ip, sizeof(ip));
	else if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET,
		    &((const struct sockaddr_in *)(const void *)sa)->sin_addr,
		    ip, sizeof(ip));
	snprintf(buf, len, sa->sa_family == AF_INET6 ? "[%s]" : "%s", ip);
}

/* The current attempt failed for WHY: closes its socket, notes WHY. */
static void
net_attempt_failed(struct net *n, const char *why, bool timeout)
{
	size_t used;

	if (n->wait != NULL)
		event_free(n->wait);
	n->wait = NULL;
	if (n->fd != -1)
		evutil_closesocket(n->fd);
	n->fd = -1;
	n->failed_by_timeout += timeout;
	used = strlen(n->tries);
	snprintf(n->tries + used, sizeof(n->tries) - used, "%s%s: %s",
	    used > 0 ? "; " : "", n->cur, why);
}

/* Starts a connect to AI. Returns 1 if under way, 0 if done, -1 failed. */
static int
net_attempt(struct net *n, const struct evutil_addrinfo *ai)
{
	struct timeval tv = {(time_t)n->timeout, 0};

	net_addr_text(ai->ai_addr, n->cur, sizeof(n->cur));
	n->fd = socket(ai->ai_family,
	    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	if (n->fd != -1 && connect(n->fd, ai->ai_addr, ai->ai_addrlen) == 0)
		return 0;
	if (n->fd != -1 && errno == EINPROGRESS) {
		n->wait = event_new(n->base, n->fd, EV_WRITE, net_wait_cb, n);
		if (n->wait != NULL && event_add(n->wait, &tv) == 0)
			return 1;
		errno = ENOMEM;
	}
	net_attempt_failed(n, strerror(errno), false);
	return -1;
}

/* The connection is up on n->fd: from here on bufferevents carry it. */
static void
net_open(struct net *n)
{
	evutil_freeaddrinfo(n->addrs);
	n->addrs = n->next = NULL;
	n->bev = bufferevent_socket_new(
	    n->base, n->fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (n->bev == NULL) {
		snprintf(n->err, sizeof(n->err), "out of memory");
		n->phase = NET_PH_FAILED;
		n->fail_ev = NET_ERROR;
		net_defer(n);
		return;
	}
	n->fd = -1; /* the bufferevent's now */
	n->phase = NET_PH_OPEN;
	bufferevent_setcb(n->bev, net_read_cb, NULL, net_event_cb, n);
	bufferevent_setwatermark(n->bev, EV_READ, 0, NET_READ_HIGH);
	net_set_timeouts(n);
	bufferevent_enable(n->bev, EV_READ | EV_WRITE);
	n->cb(n, NET_CONNECTED, n->arg);
}

/* Every address failed: says so once, with each one's reason. */
static void
net_all_failed(struct net *n)
{
	if (n->tried == 0)
		snprintf(n->err, sizeof(n->err),
		    "cannot resolve %s: no address", n->host);
	else if (n->tried == 1)
		snprintf(
		    n->err, sizeof(n->err), "cannot connect to %s", n->tries);
	else
		snprintf(n->err, sizeof(n->err),
		    "cannot connect: all %u addresses failed: %s", n->tried,
		    n->tries);
	/* A timeout only when every address timed out: then it is silence. */
	n->fail_ev = n->tried > 0 && n->failed_by_timeout == n->tried
			 ? NET_TIMEOUT
			 : NET_ERROR;
	n->phase = NET_PH_FAILED;
	n->cb(n, n->fail_ev, n->arg);
}

/* Whether AI's address came earlier in the answer (hosts read twice). */
static bool
net_seen(const struct net *n, const struct evutil_addrinfo *ai)
{
	const struct evutil_addrinfo *p;

	for (p = n->addrs; p != ai; p = p->ai_next)
		if (p->ai_addrlen == ai->ai_addrlen &&
		    memcmp(p->ai_addr, ai->ai_addr, ai->ai_addrlen) == 0)
			return true;
	return false;
}

/* Tries the addresses left, in the resolver's order, until one answers. */
static void
net_try_next(struct net *n)
{
	const struct evutil_addrinfo *ai;
	int r;

	while ((ai = n->next) != NULL && n->tried < NET_ADDR_MAX) {
		n->next = ai->ai_next;
		if (net_seen(n, ai))
			continue;
		n->tried++;
		if ((r = net_attempt(n, ai)) == 1)
			return;
		if (r == 0) {
			net_open(n);
			return;
		}
	}
	net_all_failed(n);
}

static void
net_step_cb(evutil_socket_t fd, short what, void *arg)
{
	struct net *n = arg;

	switch (n->phase) {
	case NET_PH_RESOLVE:
		/* The timer: the name lookup took the whole timeout. */
		snprintf(n->err, sizeof(n->err),
		    "cannot resolve %s: timed out after %u s", n->host,
		    n->timeout);
		n->phase = NET_PH_FAILED;
		n->fail_ev = NET_TIMEOUT;
		/* Its callback comes later, with EVUTIL_EAI_CANCEL. */
		evdns_getaddrinfo_cancel(n->req);
		n->cb(n, NET_TIMEOUT, n->arg);
		return;
	case NET_PH_CONNECT:
		net_try_next(n);
		return;
	case NET_PH_FAILED:
		n->cb(n, n->fail_ev, n->arg);
		return;
	case NET_PH_OPEN:
		return;
	}
}

static void
net_wait_cb(evutil_socket_t fd, short what, void *arg)
{
	struct net *n = arg;
	char why[64];
	socklen_t len = sizeof(int);
	int err = 0;

	if (what & EV_TIMEOUT) {
		snprintf(why, sizeof(why), "timed out after %u s", n->timeout);
		net_attempt_failed(n, why, true);
		net_try_next(n);
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		net_attempt_failed(n, strerror(err), false);
		net_try_next(n);
		return;
	}
	event_free(n->wait);
	n->wait = NULL;
	net_open(n);
}

/*
 * Reads resolv.conf and the hosts files into DNS. A missing resolv.conf is
 * no error (libevent then asks 127.0.0.1, as the C library would).
 */
static int
net_dns_configure(struct evdns_base *dns, char *err, size_t errlen)
{
	const char *resolv = TESTHOOK_ENV("POPFETCHD_RESOLV_CONF");
	const char *hosts = TESTHOOK_ENV("POPFETCHD_HOSTS_FILE");
	int r;

	if (resolv == NULL)
		resolv = "/etc/resolv.conf";
	r = evdns_base_resolv_conf_parse(dns, DNS_OPTIONS_ALL, resolv);
	/* 1: no file, 6: no name server in it; defaults are used then. */
	if (r != 0 && r != 1 && r != 6) {
		snprintf(err, errlen, "cannot read %s (libevent error %d)",
		    resolv, r);
		return -1;
	}
	if (hosts != NULL && evdns_base_load_hosts(dns, hosts) != 0) {
		snprintf(err, errlen, "cannot read %s", hosts);
		return -1;
	}
	return 0;
}

/* Configures DNS; never leaves it without a name server. */
static int
net_dns_setup(struct evdns_base *dns, char *err, size_t errlen)
{
	int r;

	err[0] = '\0';
	r = net_dns_configure(dns, err, errlen);
	/* libevent's own default, as with no resolv.conf at all. */
	if (evdns_base_count_nameservers(dns) == 0)
		evdns_base_nameserver_ip_add(dns, "127.0.0.1");
	return r;
}

struct evdns_base *
net_dns_new(struct event_base *base, char *err, size_t errlen)
{
	struct evdns_base *dns;

	err[0] = '\0';
	if ((dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE)) ==
	    NULL)
		return NULL;
	net_dns_setup(dns, err, errlen);
	return dns;
}

int
net_dns_reload(struct evdns_base *dns, char *err, size_t errlen)
{
	int r;

	/* Suspended, not failed: lookups under way go to the new servers. */
	evdns_base_clear_nameservers_and_suspend(dns);
	evdns_base_search_clear(dns);
	r = net_dns_setup(dns, err, errlen);
	evdns_base_resume(dns);
	return r;
}

int
net_start_tls(struct net *n, SSL *ssl)
{
	struct bufferevent *tls;

	tls = bufferevent_openssl_filter_new(n->base, n->bev, ssl,
	    BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (tls == NULL) {
		SSL_free(ssl);
		return -1;
	}
	n->ssl = ssl;
	n->bev = tls;
	/* Unclean shutdowns are common among servers; we judge by QUIT. */
	bufferevent_openssl_set_allow_dirty_shutdown(tls, 1);
	bufferevent_setcb(tls, net_read_cb, NULL, net_event_cb, n);
	bufferevent_setwatermark(tls, EV_READ, 0, NET_READ_HIGH);
	bufferevent_set_max_single_read(tls, NET_TLS_READ);
	net_set_timeouts(n);
	bufferevent_enable(tls, EV_READ | EV_WRITE);
	return 0;
}

void
net_pause(struct net *n, bool paused)
{
	if (n->bev == NULL)
		return;
	/* On the TLS filter, this suspends the socket's reading too. */
	if (paused)
		bufferevent_disable(n->bev, EV_READ);
	else
		bufferevent_enable(n->bev, EV_READ);
}

SSL *
net_ssl(struct net *n)
{
	return n->ssl;
}

struct evbuffer *
net_input(struct net *n)
{
	return bufferevent_get_input(n->bev);
}

int
net_write(struct net *n, const void *data, size_t len)
{
	return bufferevent_write(n->bev, data, len);
}

/* Frees a credential's copy once libevent is done with it. */
static void
net_wipe_cb(const void *data, size_t len, void *arg)
{
	explicit_bzero(arg, len);
	free(arg);
}

int
net_write_secret(struct net *n, const void *data, size_t len)
{
	void *copy;

	/*
	 * By reference, not copied into libevent's chains: those are freed
	 * without wiping once sent, and may be reused for later lines.
	 */
	if (len == 0)
		return 0;
	if ((copy = malloc(len)) == NULL)
		return -1;
	memcpy(copy, data, len);
	if (evbuffer_add_reference(bufferevent_get_output(n->bev), copy, len,
		net_wipe_cb, copy) == -1) {
		net_wipe_cb(copy, len, copy);
		return -1;
	}
	return 0;
}

const char *
net_error(const struct net *n)
{
	return n->err;
}

unsigned long
net_ssl_error(const struct net *n)
{
	return n->ssl_err;
}

void
net_free(struct net **np)
{
	struct net *n = *np;

	if (n == NULL)
		return;
	*np = NULL;
	/* Freeing the top bufferevent frees the whole stack and the SSL. */
	if (n->bev != NULL)
		bufferevent_free(n->bev);
	if (n->wait != NULL)
		event_free(n->wait);
	if (n->fd != -1)
		evutil_closesocket(n->fd);
	if (n->addrs != NULL)
		evutil_freeaddrinfo(n->addrs);
	event_free(n->step);
	if (n->req == NULL) {
		free(n->host);
		free(n);
		return;
	}
	/*
	 * The lookup still runs and its callback will come (also when
	 * cancelled): that callback frees N. Marked first, as it might come
	 * from inside the cancel.
	 */
	n->dead = true;
	if (n->phase == NET_PH_RESOLVE)
		evdns_getaddrinfo_cancel(n->req);
}

static void
net_read_cb(struct bufferevent *bev, void *arg)
{
	struct net *n = arg;
	evutil_socket_t fd = bufferevent_getfd(bev);

	/*
	 * What arrived is acknowledged now, not up to 40 ms later with the
	 * next command: pipelined commands get their replies in several
	 * writes from servers that keep Nagle's algorithm on (Courier's and
	 * Cyrus's pop3d), and each write after a small one waits for this
	 * ACK (bench/servers.py: a poll with nothing new, 73 ms -> 31 ms
	 * against Courier). Linux falls back to delayed ACKs on its own, so
	 * this is asked after every read: about 1.3 us each, one per read in
	 * bench.py's B1 (29,000 calls, 2% of popfetchd's CPU there). Asking
	 * only on the first read after each send (when Linux enters its
	 * interactive mode) made 4,500 calls, but Cyrus's first poll of 40
	 * messages went from 53 to 93 ms (bench/servers.py). So did asking
	 * only after a read that emptied the socket (one shorter than
	 * libevent's 4,096 bytes per read: 450 calls in B1): Cyrus writes
	 * 4,096 bytes at a time, and a read that takes exactly those does
	 * not ask (50 -> 94 ms). So every read asks.
	 */
	if (fd != -1)
		(void)setsockopt(
		    fd, IPPROTO_TCP, TCP_QUICKACK, &(int){1}, sizeof(int));
	n->cb(n, NET_DATA, n->arg);
}

/* Events of the bufferevents, once connected. */
static void
net_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct net *n = arg;
	unsigned long e;

	if (what & BEV_EVENT_CONNECTED) {
		/* Only the TLS filter connects: the socket came connected. */
		n->cb(n, NET_TLS_READY, n->arg);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		snprintf(
		    n->err, sizeof(n->err), "timed out after %u s", n->timeout);
		n->cb(n, NET_TIMEOUT, n->arg);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		n->ssl_err = 0;
		if (n->ssl != NULL)
			while ((e = bufferevent_get_openssl_error(bev)) != 0)
				if (n->ssl_err == 0)
					n->ssl_err = e;
		if (n->ssl_err != 0)
			snprintf(n->err, sizeof(n->err), "TLS: %s",
			    ERR_reason_error_string(n->ssl_err));
		else
			snprintf(n->err, sizeof(n->err), "%s",
			    evutil_socket_error_to_string(
				EVUTIL_SOCKET_ERROR()));
		n->cb(n, NET_ERROR, n->arg);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		snprintf(n->err, sizeof(n->err), "connection closed by server");
		n->cb(n, NET_CLOSED, n->arg);
	}
}
