/*
 * net: the transport. Connects (asynchronous DNS), optionally wraps the
 * connection in TLS (at once, or later for STLS), moves bytes, and raises
 * a closed set of events. It knows nothing of POP3.
 */
#ifndef POPFETCHD_NET_H
#define POPFETCHD_NET_H

#include <stddef.h>

#include <openssl/ssl.h>

struct event_base;
struct evdns_base;
struct evbuffer;
struct net;

enum net_ev {
	NET_CONNECTED, /* TCP connection up */
	NET_TLS_READY, /* TLS handshake done */
	NET_DATA,      /* bytes waiting in net_input() */
	NET_TIMEOUT,   /* no progress within the timeout */
	NET_ERROR,     /* connection or TLS failure: net_error() says which */
	NET_CLOSED,    /* the peer closed the connection */
};

/*
 * Called for each event. The callback may call net_* functions on N but
 * must not free it (free it from a later loop turn).
 */
typedef void (*net_cb)(struct net *n, enum net_ev ev, void *arg);

/*
 * Starts connecting to HOST:PORT. TIMEOUT (seconds) bounds the connect,
 * the handshake and every wait for data. Returns NULL on immediate failure
 * (out of memory).
 */
struct net *net_connect(struct event_base *base, struct evdns_base *dns,
    const char *host, unsigned port, unsigned timeout, net_cb cb, void *arg);

/*
 * Starts a TLS handshake over the connection; SSL is owned by the
 * transport from then on. NET_TLS_READY or NET_ERROR follows. Returns -1
 * on immediate failure.
 */
int net_start_tls(struct net *n, SSL *ssl);

/* The TLS object once net_start_tls() was called, else NULL. */
SSL *net_ssl(struct net *n);

/* Received bytes; the caller drains what it consumed. */
struct evbuffer *net_input(struct net *n);

/* Queues bytes for sending. Returns 0 or -1. */
int net_write(struct net *n, const void *data, size_t len);

/* A readable reason for the last NET_ERROR. */
const char *net_error(const struct net *n);

/* The OpenSSL error code behind the last NET_ERROR, or 0. */
unsigned long net_ssl_error(const struct net *n);

/* Closes the connection and frees N; sets *N to NULL. */
void net_free(struct net **n);

#endif
