/*
 * net: the transport. Connects (asynchronous DNS), optionally wraps the
 * connection in TLS (at once, or later for STLS), moves bytes, and raises
 * a closed set of events. It knows nothing of POP3.
 */
#ifndef POPFETCHD_NET_H
#define POPFETCHD_NET_H

#include <stdbool.h>
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
 * Starts connecting to HOST:PORT: resolves HOST (IPv6 and IPv4, the
 * resolver's order) and tries each address in turn until one accepts, at
 * most NET_ADDR_MAX of them (net.c). TIMEOUT (seconds) bounds the lookup,
 * each connect attempt, the handshake and every wait for data. When every
 * address failed, one NET_ERROR follows (NET_TIMEOUT if each timed out),
 * net_error() naming each address and its reason. Events come on later
 * loop turns only, never from inside this call. Returns NULL on immediate
 * failure (out of memory).
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

/*
 * Queues bytes that carry a credential (PASS, AUTH and its responses).
 * Like net_write(), but the transport's copy is wiped once it has been
 * handed to the socket or to TLS (there: encrypted in place), or when the
 * connection is freed unsent. Returns 0 or -1.
 */
int net_write_secret(struct net *n, const void *data, size_t len);

/*
 * Stops (PAUSED) or resumes reading from the peer, for a reader that
 * cannot take more for a while: what the peer sends meanwhile waits in
 * the kernel, and TCP slows the peer down. No NET_DATA comes while
 * paused, and the timeout does not run for reading. Bytes already in
 * net_input() stay there for the caller.
 */
void net_pause(struct net *n, bool paused);

/* A readable reason for the last NET_ERROR. */
const char *net_error(const struct net *n);

/* The OpenSSL error code behind the last NET_ERROR, or 0. */
unsigned long net_ssl_error(const struct net *n);

/*
 * A resolver on BASE for net_connect(), set up from /etc/resolv.conf and
 * /etc/hosts. Returns NULL only when out of memory. When a file could not
 * be read, ERR says so (else it is empty) and defaults stand in for it.
 */
struct evdns_base *net_dns_new(
    struct event_base *base, char *err, size_t errlen);

/*
 * Reads the resolver configuration again (name servers, search list,
 * options, hosts), for a reload. Lookups under way wait and then go to
 * the new name servers. Hosts entries are added to the ones read before,
 * not put in their place (libevent 2.1 cannot drop them); a name whose
 * address changed then has both, and net_connect() tries both. Returns 0,
 * or -1 with a reason in ERR.
 */
int net_dns_reload(struct evdns_base *dns, char *err, size_t errlen);

/* Closes the connection and frees N; sets *N to NULL. */
void net_free(struct net **n);

#endif
