/*
 * Transport over libevent bufferevents. TLS is a filter bufferevent on top
 * of the socket one, so implicit TLS and the STLS upgrade take one path.
 */
#include <sys/socket.h>

#include <errno.h>
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

/*
 * Input buffered per layer (socket, TLS) before reading pauses: without
 * a bound, a server faster than the disk fills memory with a whole
 * message. A few TLS records' worth keeps reads large.
 */
#define NET_READ_HIGH (256 * 1024)

struct net {
	struct event_base *base;
	struct bufferevent *bev; /* the top of the stack: socket or TLS */
	SSL *ssl;
	net_cb cb;
	void *arg;
	unsigned timeout;
	int connected;
	unsigned long ssl_err;
	char err[256];
};

static void net_read_cb(struct bufferevent *bev, void *arg);
static void net_event_cb(struct bufferevent *bev, short what, void *arg);

/*
 * While connecting, libevent waits for writability: the write timeout
 * bounds the connect. Once connected only silence from the server counts:
 * a write timeout on a long download would fire while data still flows.
 */
static void
net_set_timeouts(struct net *n)
{
	struct timeval tv = {(time_t)n->timeout, 0};

	bufferevent_set_timeouts(n->bev, &tv, n->connected ? NULL : &tv);
}

struct net *
net_connect(struct event_base *base, struct evdns_base *dns, const char *host,
    unsigned port, unsigned timeout, net_cb cb, void *arg)
{
	struct net *n;

	if ((n = calloc(1, sizeof(*n))) == NULL)
		return NULL;
	n->base = base;
	n->cb = cb;
	n->arg = arg;
	n->timeout = timeout;
	n->bev = bufferevent_socket_new(
	    base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (n->bev == NULL) {
		free(n);
		return NULL;
	}
	bufferevent_setcb(n->bev, net_read_cb, NULL, net_event_cb, n);
	bufferevent_setwatermark(n->bev, EV_READ, 0, NET_READ_HIGH);
	net_set_timeouts(n);
	bufferevent_enable(n->bev, EV_READ | EV_WRITE);
	/*
	 * Failures, also of the name lookup, are reported through
	 * net_event_cb on a later loop turn (deferred callbacks), so the
	 * caller never gets an event from inside this call.
	 */
	bufferevent_socket_connect_hostname(
	    n->bev, dns, AF_UNSPEC, host, (int)port);
	return n;
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
	net_set_timeouts(n);
	bufferevent_enable(tls, EV_READ | EV_WRITE);
	return 0;
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
	/* Freeing the top bufferevent frees the whole stack and the SSL. */
	if (n->bev != NULL)
		bufferevent_free(n->bev);
	free(n);
	*np = NULL;
}

static void
net_read_cb(struct bufferevent *bev, void *arg)
{
	struct net *n = arg;

	n->cb(n, NET_DATA, n->arg);
}

static void
net_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct net *n = arg;
	unsigned long e;
	int dnserr;

	if (what & BEV_EVENT_CONNECTED) {
		if (n->ssl != NULL)
			n->cb(n, NET_TLS_READY, n->arg);
		else {
			n->connected = 1;
			net_set_timeouts(n);
			n->cb(n, NET_CONNECTED, n->arg);
		}
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		snprintf(n->err, sizeof(n->err), "timed out after %u s%s",
		    n->timeout, n->connected ? "" : " while connecting");
		n->cb(n, NET_TIMEOUT, n->arg);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		n->ssl_err = 0;
		if (n->ssl != NULL)
			while ((e = bufferevent_get_openssl_error(bev)) != 0)
				if (n->ssl_err == 0)
					n->ssl_err = e;
		dnserr = bufferevent_socket_get_dns_error(bev);
		if (dnserr != 0)
			snprintf(n->err, sizeof(n->err), "cannot resolve: %s",
			    evutil_gai_strerror(dnserr));
		else if (n->ssl_err != 0)
			snprintf(n->err, sizeof(n->err), "TLS: %s",
			    ERR_reason_error_string(n->ssl_err));
		else
			snprintf(n->err, sizeof(n->err), "%s%s",
			    n->connected ? "" : "cannot connect: ",
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
