/*
 * Tests of daemon/net.c on loopback: a listener of the test's own on
 * 127.0.0.1 and an ephemeral port, the transport on a real loop, each
 * event awaited with a timer that fails the test if it does not come.
 * Made-up names get their addresses from a hosts file of the test's
 * (POPFETCHD_HOSTS_FILE: this test is built with the test hooks), and
 * the resolver's one name server is a UDP socket that never answers, so
 * nothing leaves the machine and /etc/hosts is not needed. Addresses
 * that must fail are loopback ones nothing listens on (refused at once),
 * or a listener whose queue is full (the connection attempt hangs).
 *
 * Credentials: free(3) is wrapped at link time, and libevent is given
 * allocation functions of the test's, so that every block freed by the
 * transport or by libevent is searched for the secret before it goes.
 */
#include <sys/socket.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <openssl/ssl.h>

#include "monotime.h"
#include "net.h"
#include "check_main.h"
#include "check_util.h"

/* The bound on any one wait: a test fails, it never hangs. */
#define AWAIT_SECS 5

static struct event_base *base;
static struct evdns_base *dns;
static struct net *n;
static char tmpdir[64];
static int silent_ns = -1; /* the name server that never answers */

/* What the transport raised, in order, and what came with it. */
static enum net_ev evs[32];
static int nev, taken;
static char lasterr[512];
static char input[4096];
static size_t ninput;

static bool timed_out;

/* --- freed memory, searched for the secret ------------------------- */

static const char secret[] = "PASS s3cr3t-Hunter2-wipe-me\r\n";
static unsigned secret_seen; /* freed blocks that still held it */

void __real_free(void *p);
void __wrap_free(void *p);

static void
search_block(void *p)
{
	size_t len;

	if (p == NULL)
		return;
	len = malloc_usable_size(p);
	if (memmem(p, len, secret, sizeof(secret) - 1) != NULL)
		secret_seen++;
}

void
__wrap_free(void *p)
{
	search_block(p);
	__real_free(p);
}

static void *
test_realloc(void *p, size_t len)
{
	size_t old = p != NULL ? malloc_usable_size(p) : 0;
	void *q;

	/* By hand, so that the old block is searched before it goes. */
	if ((q = malloc(len)) == NULL)
		return NULL;
	if (p != NULL) {
		memcpy(q, p, old < len ? old : len);
		__wrap_free(p);
	}
	return q;
}

/* --- the loop ------------------------------------------------------ */

static void
on_event(struct net *c, enum net_ev ev, void *arg)
{
	struct evbuffer *in;
	size_t len;

	if (nev < (int)(sizeof(evs) / sizeof(evs[0])))
		evs[nev++] = ev;
	switch (ev) {
	case NET_DATA:
		in = net_input(c);
		len = evbuffer_get_length(in);
		if (len > sizeof(input) - 1 - ninput)
			len = sizeof(input) - 1 - ninput;
		evbuffer_remove(in, input + ninput, len);
		ninput += len;
		input[ninput] = '\0';
		break;
	case NET_ERROR:
	case NET_TIMEOUT:
	case NET_CLOSED:
		snprintf(lasterr, sizeof(lasterr), "%s", net_error(c));
		break;
	default:
		break;
	}
}

static void
guard_cb(evutil_socket_t fd, short what, void *arg)
{
	timed_out = true;
}

/* Runs the loop until DONE() says so; fails after AWAIT_SECS. */
static void
await(bool (*done)(void), const char *what)
{
	struct timeval tv = {AWAIT_SECS, 0};
	struct event *guard = evtimer_new(base, guard_cb, NULL);

	ck_assert_ptr_nonnull(guard);
	timed_out = false;
	evtimer_add(guard, &tv);
	while (!done() && !timed_out)
		ck_assert_int_ne(event_base_loop(base, EVLOOP_ONCE), -1);
	event_free(guard);
	ck_assert_msg(!timed_out, "no %s within %d s", what, AWAIT_SECS);
}

static bool
have_event(void)
{
	return nev > taken;
}

/* The next event the transport raises. */
static enum net_ev
next_event(void)
{
	await(have_event, "transport event");
	return evs[taken++];
}

static const char *const ev_names[] = {
    "NET_CONNECTED",
    "NET_TLS_READY",
    "NET_DATA",
    "NET_TIMEOUT",
    "NET_ERROR",
    "NET_CLOSED",
};

static void
expect_event(enum net_ev want)
{
	enum net_ev got = next_event();

	ck_assert_msg(got == want, "got %s, want %s (%s)", ev_names[got],
	    ev_names[want], lasterr);
}

/* --- the test's side of the connection ----------------------------- */

/* A TCP socket on IP and an ephemeral port (*PORT), listening if asked. */
static int
tcp_socket(const char *ip, unsigned *port, int backlog)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd;

	ck_assert_int_eq(inet_pton(AF_INET, ip, &sa.sin_addr), 1);
	sa.sin_port = htons((uint16_t)*port);
	ck_assert_int_ne(
	    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), -1);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	*port = ntohs(sa.sin_port);
	if (backlog >= 0)
		ck_assert_int_eq(listen(fd, backlog), 0);
	return fd;
}

/* A listener on 127.0.0.1, its port in *PORT. */
static int
listener(unsigned *port)
{
	*port = 0;
	return tcp_socket("127.0.0.1", port, 8);
}

/*
 * A port on 127.0.0.1 where connections are refused: bound, so that
 * nothing else takes it during the test, but not listening.
 */
static int
refusing(unsigned *port)
{
	*port = 0;
	return tcp_socket("127.0.0.1", port, -1);
}

/* The server's end of the one connection waiting on listener L. */
static int
accept_one(int l)
{
	int fd;

	ck_assert_int_ne(fd = accept4(l, NULL, NULL, SOCK_CLOEXEC), -1);
	return fd;
}

/* What the test's server has read so far. */
static char srv_got[4096];
static size_t srv_len, srv_want;

static void
srv_read_cb(evutil_socket_t fd, short what, void *arg)
{
	ssize_t r = read(fd, srv_got + srv_len, sizeof(srv_got) - 1 - srv_len);

	if (r > 0)
		srv_len += (size_t)r;
	srv_got[srv_len] = '\0';
}

static bool
srv_has_all(void)
{
	return srv_len >= srv_want;
}

/* Reads from FD, on the loop, until WANT bytes came. */
static void
srv_await(int fd, size_t want)
{
	struct event *ev;

	ck_assert_ptr_nonnull(
	    ev = event_new(base, fd, EV_READ | EV_PERSIST, srv_read_cb, NULL));
	event_add(ev, NULL);
	srv_want = want;
	await(srv_has_all, "bytes at the server");
	event_free(ev);
}

/* --- set-up ---------------------------------------------------------- */

static void
write_file(const char *name, const char *text, char *path, size_t len)
{
	FILE *fp;

	snprintf(path, len, "%s/%s", tmpdir, name);
	ck_assert_ptr_nonnull(fp = fopen(path, "w"));
	ck_assert_int_ge(fputs(text, fp), 0);
	ck_assert_int_eq(fclose(fp), 0);
}

/*
 * The resolver, with HOSTS (may be NULL) as its hosts file and the
 * silent socket as its only name server.
 */
static void
make_dns(const char *hosts)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	char path[128], text[64], err[256];
	unsigned port;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	silent_ns = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ne(silent_ns, -1);
	ck_assert_int_eq(
	    bind(silent_ns, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(
	    getsockname(silent_ns, (struct sockaddr *)&sa, &len), 0);
	port = ntohs(sa.sin_port);
	snprintf(text, sizeof(text), "nameserver 127.0.0.1:%u\n", port);
	write_file("resolv.conf", text, path, sizeof(path));
	setenv("POPFETCHD_RESOLV_CONF", path, 1);
	if (hosts != NULL) {
		write_file("hosts", hosts, path, sizeof(path));
		setenv("POPFETCHD_HOSTS_FILE", path, 1);
	} else
		unsetenv("POPFETCHD_HOSTS_FILE");
	ck_assert_ptr_nonnull(dns = net_dns_new(base, err, sizeof(err)));
	ck_assert_str_eq(err, "");
}

static void
setup(void)
{
	/* Before libevent allocates anything. */
	event_set_mem_functions(malloc, test_realloc, __wrap_free);
	check_tmpdir(tmpdir, sizeof(tmpdir), "test_net");
	ck_assert_ptr_nonnull(base = event_base_new());
	nev = taken = 0;
	ninput = srv_len = 0;
	lasterr[0] = '\0';
	secret_seen = 0;
	silent_ns = -1;
}

/* Lets the loop run what freeing left for it (finalizers, callbacks). */
static void
settle(void)
{
	int i;

	for (i = 0; i < 4; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
}

static void
teardown(void)
{
	char path[128];

	net_free(&n);
	if (base != NULL)
		settle();
	if (dns != NULL)
		evdns_base_free(dns, 1);
	dns = NULL;
	if (base != NULL)
		event_base_free(base);
	base = NULL;
	if (silent_ns != -1)
		close(silent_ns);
	snprintf(path, sizeof(path), "%s/resolv.conf", tmpdir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/hosts", tmpdir);
	unlink(path);
	rmdir(tmpdir);
}

/* --- tests ----------------------------------------------------------- */

START_TEST(connect_then_data_both_ways_then_close)
{
	unsigned port;
	int l = listener(&port), s;
	const char reply[] = "+OK ready\r\n";

	make_dns(NULL);
	ck_assert_ptr_nonnull(
	    n = net_connect(base, dns, "127.0.0.1", port, 5, on_event, NULL));
	/* Never from inside net_connect(), even for a literal address. */
	ck_assert_int_eq(nev, 0);
	expect_event(NET_CONNECTED);
	ck_assert_ptr_null(net_ssl(n));
	s = accept_one(l);

	ck_assert_int_eq(net_write(n, "CAPA\r\n", 6), 0);
	ck_assert_int_eq(net_write(n, "STAT\r\n", 6), 0);
	srv_await(s, 12);
	ck_assert_str_eq(srv_got, "CAPA\r\nSTAT\r\n");

	ck_assert_int_eq(write(s, reply, sizeof(reply) - 1), sizeof(reply) - 1);
	/* TCP may hand the reply over in pieces, each its own event. */
	while (ninput < sizeof(reply) - 1)
		expect_event(NET_DATA);
	ck_assert_str_eq(input, reply);

	close(s);
	expect_event(NET_CLOSED);
	ck_assert_str_eq(lasterr, "connection closed by server");
	close(l);
}
END_TEST

START_TEST(refused_port_is_an_error)
{
	unsigned port;
	int r = refusing(&port);

	make_dns(NULL);
	ck_assert_ptr_nonnull(
	    n = net_connect(base, dns, "127.0.0.1", port, 5, on_event, NULL));
	ck_assert_int_eq(nev, 0);
	expect_event(NET_ERROR);
	ck_assert_str_eq(
	    lasterr, "cannot connect to 127.0.0.1: Connection refused");
	ck_assert_str_eq(net_error(n), lasterr);
	ck_assert_uint_eq(net_ssl_error(n), 0);
	/* One event for the failure, nothing after it. */
	settle();
	ck_assert_int_eq(nev, 1);
	close(r);
}
END_TEST

/*
 * An address connect(2) refuses on the spot (broadcast, on a TCP
 * socket): the failure still comes on a later turn of the loop.
 */
START_TEST(immediate_failure_comes_later)
{
	make_dns(NULL);
	ck_assert_ptr_nonnull(n = net_connect(base, dns, "255.255.255.255", 110,
				  5, on_event, NULL));
	ck_assert_int_eq(nev, 0);
	expect_event(NET_ERROR);
	ck_assert_msg(
	    strncmp(lasterr, "cannot connect to 255.255.255.255: ", 35) == 0,
	    "%s", lasterr);
}
END_TEST

/*
 * Each address of a name, in the resolver's order: the first refuses,
 * the second answers. Then, with nothing listening, the error names both
 * in that order, which shows the answer came from the second try.
 */
START_TEST(every_address_is_tried_in_order)
{
	unsigned port;
	int l = listener(&port), s;
	char want[256];

	make_dns("127.0.0.3 pop.made-up.test\n"
		 "127.0.0.1 pop.made-up.test\n");
	ck_assert_ptr_nonnull(n = net_connect(base, dns, "pop.made-up.test",
				  port, 5, on_event, NULL));
	expect_event(NET_CONNECTED);
	s = accept_one(l);
	close(s);
	net_free(&n);
	close(l);

	/* A port of its own: the old one may be held by the closed link. */
	l = refusing(&port);
	ck_assert_ptr_nonnull(n = net_connect(base, dns, "pop.made-up.test",
				  port, 5, on_event, NULL));
	expect_event(NET_ERROR);
	snprintf(want, sizeof(want),
	    "cannot connect: all 2 addresses failed: 127.0.0.3: %s; 127.0.0.1: %s",
	    strerror(ECONNREFUSED), strerror(ECONNREFUSED));
	ck_assert_str_eq(lasterr, want);
	close(l);
}
END_TEST

/* An address listed twice is tried once. */
START_TEST(repeated_address_is_tried_once)
{
	unsigned port;
	int r = refusing(&port);

	make_dns("127.0.0.3 twice.made-up.test\n"
		 "127.0.0.1 twice.made-up.test\n"
		 "127.0.0.3 twice.made-up.test\n");
	ck_assert_ptr_nonnull(n = net_connect(base, dns, "twice.made-up.test",
				  port, 5, on_event, NULL));
	expect_event(NET_ERROR);
	ck_assert_ptr_nonnull(strstr(lasterr, "all 2 addresses failed"));
	close(r);
}
END_TEST

/*
 * At most 16 addresses are tried: the 17th, where a listener waits, is
 * never reached.
 */
START_TEST(addresses_past_the_limit_are_not_tried)
{
	char hosts[2048];
	unsigned port;
	size_t o = 0;
	int l = listener(&port), i;

	for (i = 0; i < 16; i++)
		o += (size_t)snprintf(hosts + o, sizeof(hosts) - o,
		    "127.0.0.%d many.made-up.test\n", 10 + i);
	snprintf(hosts + o, sizeof(hosts) - o, "127.0.0.1 many.made-up.test\n");
	make_dns(hosts);
	ck_assert_ptr_nonnull(n = net_connect(base, dns, "many.made-up.test",
				  port, 5, on_event, NULL));
	expect_event(NET_ERROR);
	ck_assert_msg(
	    strncmp(lasterr,
		"cannot connect: all 16 addresses failed: 127.0.0.10: ", 53) ==
		0,
	    "%s", lasterr);
	close(l);
}
END_TEST

START_TEST(unknown_name_with_silent_resolver_times_out)
{
	double t0;

	make_dns(NULL);
	t0 = monotime();
	ck_assert_ptr_nonnull(n = net_connect(base, dns, "nowhere.made-up.test",
				  110, 1, on_event, NULL));
	expect_event(NET_TIMEOUT);
	ck_assert_double_ge(monotime() - t0, 0.9);
	ck_assert_str_eq(lasterr,
	    "cannot resolve nowhere.made-up.test: timed out after 1 s");
	/* The cancelled lookup's answer raises nothing more. */
	settle();
	ck_assert_int_eq(nev, 1);
}
END_TEST

/* Freed while its name is looked up: no event, nothing left behind. */
START_TEST(free_during_lookup_raises_nothing)
{
	make_dns(NULL);
	ck_assert_ptr_nonnull(n = net_connect(base, dns, "nowhere.made-up.test",
				  110, 1, on_event, NULL));
	net_free(&n);
	ck_assert_ptr_null(n);
	settle();
	ck_assert_int_eq(nev, 0);
}
END_TEST

/* Connected, then silence: NET_TIMEOUT after the timeout, not before. */
START_TEST(silent_server_times_out)
{
	unsigned port;
	int l = listener(&port);
	double t0;

	make_dns(NULL);
	ck_assert_ptr_nonnull(
	    n = net_connect(base, dns, "127.0.0.1", port, 1, on_event, NULL));
	expect_event(NET_CONNECTED);
	t0 = monotime();
	expect_event(NET_TIMEOUT);
	ck_assert_double_ge(monotime() - t0, 0.9);
	ck_assert_str_eq(lasterr, "timed out after 1 s");
	close(l);
}
END_TEST

/*
 * A listener whose accept queue is full drops new connection requests:
 * the attempt hangs until the timeout. Timed out everywhere is
 * NET_TIMEOUT; timed out on one address and refused on another is a
 * NET_ERROR naming both.
 */
static int
full_listener(unsigned *port, int *l)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	int c;

	*port = 0;
	*l = tcp_socket("127.0.0.1", port, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)*port);
	/* Backlog 0 holds one connection: this one fills it. */
	ck_assert_int_ne(
	    c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), -1);
	ck_assert_int_eq(connect(c, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return c;
}

START_TEST(unanswered_connect_times_out)
{
	unsigned port;
	int l, c = full_listener(&port, &l);

	make_dns("127.0.0.3 half.made-up.test\n"
		 "127.0.0.1 half.made-up.test\n");
	ck_assert_ptr_nonnull(
	    n = net_connect(base, dns, "127.0.0.1", port, 1, on_event, NULL));
	expect_event(NET_TIMEOUT);
	ck_assert_str_eq(
	    lasterr, "cannot connect to 127.0.0.1: timed out after 1 s");
	net_free(&n);

	ck_assert_ptr_nonnull(n = net_connect(base, dns, "half.made-up.test",
				  port, 1, on_event, NULL));
	expect_event(NET_ERROR);
	ck_assert_str_eq(lasterr,
	    "cannot connect: all 2 addresses failed: 127.0.0.3: Connection refused; 127.0.0.1: timed out after 1 s");
	close(c);
	close(l);
}
END_TEST

/* TLS towards a server that speaks plain text: a TLS error, with code. */
START_TEST(tls_against_plain_text_is_a_tls_error)
{
	const char junk[] =
	    "+OK this is no TLS server, and it says so at length\r\n";
	unsigned port;
	int l = listener(&port), s;
	SSL_CTX *ctx;
	SSL *ssl;

	make_dns(NULL);
	ck_assert_ptr_nonnull(ctx = SSL_CTX_new(TLS_client_method()));
	ck_assert_ptr_nonnull(ssl = SSL_new(ctx));
	ck_assert_ptr_nonnull(
	    n = net_connect(base, dns, "127.0.0.1", port, 5, on_event, NULL));
	expect_event(NET_CONNECTED);
	s = accept_one(l);
	ck_assert_int_eq(net_start_tls(n, ssl), 0);
	ck_assert_ptr_eq(net_ssl(n), ssl);
	ck_assert_int_eq(write(s, junk, sizeof(junk) - 1), sizeof(junk) - 1);
	expect_event(NET_ERROR);
	ck_assert_uint_ne(net_ssl_error(n), 0);
	ck_assert_msg(strncmp(lasterr, "TLS: ", 5) == 0, "%s", lasterr);
	net_free(&n);
	SSL_CTX_free(ctx);
	close(s);
	close(l);
}
END_TEST

/* The searcher finds the secret in a freed block: the test can fail. */
static void
assert_search_works(void)
{
	char *p = malloc(100);

	ck_assert_ptr_nonnull(p);
	memcpy(p + 10, secret, sizeof(secret) - 1);
	secret_seen = 0;
	/* Not free(): the compiler would drop the copy as a dead store. */
	__wrap_free(p);
	ck_assert_uint_eq(secret_seen, 1);
	secret_seen = 0;
}

/*
 * A credential sent: the server gets it in its place among the other
 * lines, and no block freed on the way (transport's or libevent's)
 * still holds it.
 */
START_TEST(secret_sent_is_not_left_in_freed_memory)
{
	unsigned port;
	int l = listener(&port), s;
	char want[256];

	assert_search_works();
	make_dns(NULL);
	ck_assert_ptr_nonnull(
	    n = net_connect(base, dns, "127.0.0.1", port, 5, on_event, NULL));
	expect_event(NET_CONNECTED);
	s = accept_one(l);
	ck_assert_int_eq(net_write(n, "USER alice\r\n", 12), 0);
	ck_assert_int_eq(net_write_secret(n, secret, sizeof(secret) - 1), 0);
	ck_assert_int_eq(net_write(n, "STAT\r\n", 6), 0);
	snprintf(want, sizeof(want), "USER alice\r\n%sSTAT\r\n", secret);
	srv_await(s, strlen(want));
	ck_assert_str_eq(srv_got, want);
	/* Nothing to send is no error. */
	ck_assert_int_eq(net_write_secret(n, secret, 0), 0);
	net_free(&n);
	settle();
	event_base_free(base);
	base = NULL;
	ck_assert_uint_eq(secret_seen, 0);
	close(s);
	close(l);
}
END_TEST

/* A credential queued and never sent is wiped when the connection goes. */
START_TEST(secret_unsent_is_wiped_on_free)
{
	unsigned port;
	int l = listener(&port);

	assert_search_works();
	make_dns(NULL);
	ck_assert_ptr_nonnull(
	    n = net_connect(base, dns, "127.0.0.1", port, 5, on_event, NULL));
	expect_event(NET_CONNECTED);
	/* Queued; the loop does not run again before the free. */
	ck_assert_int_eq(net_write_secret(n, secret, sizeof(secret) - 1), 0);
	net_free(&n);
	settle();
	event_base_free(base);
	base = NULL;
	ck_assert_uint_eq(secret_seen, 0);
	close(l);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("net");
	TCase *tc;

	tc = tcase_create("connect");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, connect_then_data_both_ways_then_close);
	tcase_add_test(tc, refused_port_is_an_error);
	tcase_add_test(tc, immediate_failure_comes_later);
	tcase_add_test(tc, every_address_is_tried_in_order);
	tcase_add_test(tc, repeated_address_is_tried_once);
	tcase_add_test(tc, addresses_past_the_limit_are_not_tried);
	tcase_add_test(tc, tls_against_plain_text_is_a_tls_error);
	suite_add_tcase(s, tc);

	tc = tcase_create("timeouts");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, unknown_name_with_silent_resolver_times_out);
	tcase_add_test(tc, free_during_lookup_raises_nothing);
	tcase_add_test(tc, silent_server_times_out);
	tcase_add_test(tc, unanswered_connect_times_out);
	suite_add_tcase(s, tc);

	tc = tcase_create("secrets");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, secret_sent_is_not_left_in_freed_memory);
	tcase_add_test(tc, secret_unsent_is_wiped_on_free);
	suite_add_tcase(s, tc);

	return check_main(s);
}
