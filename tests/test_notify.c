/*
 * Tests for the service manager notifications: a socket of our own stands
 * for $NOTIFY_SOCKET, and each test reads the datagrams notify.c sent.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "notify.h"
#include "check_main.h"
#include "check_util.h"

static char dir[64];
static char path[128];
static int sock = -1;
static struct event_base *base;
static struct notify *nt;

static void
setup(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};

	/*
	 * /tmp, not $TMPDIR: a socket path must fit sun_path (108 bytes),
	 * asserted below, and a long TMPDIR would not.
	 */
	snprintf(dir, sizeof(dir), "/tmp/test_notify.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/notify", dir);
	ck_assert_uint_lt(strlen(path), sizeof(sa.sun_path));
	memcpy(sa.sun_path, path, strlen(path) + 1);
	sock = socket(AF_UNIX, SOCK_DGRAM, 0);
	ck_assert_int_ne(sock, -1);
	ck_assert_int_eq(bind(sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setenv("NOTIFY_SOCKET", path, 1);
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	nt = notify_new(base);
	ck_assert_ptr_nonnull(nt);
	ck_assert(notify_enabled(nt));
}

static void
teardown(void)
{
	notify_free(&nt);
	event_base_free(base);
	close(sock);
	check_rm_rf(dir);
}

/* The next datagram, NUL-terminated; fails if none is waiting. */
static size_t
next_datagram(char *buf, size_t len)
{
	ssize_t n = recv(sock, buf, len - 1, MSG_DONTWAIT);

	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	return (size_t)n;
}

START_TEST(status_cannot_inject_assignments)
{
	const char *text = "1 accounts; last error: a: -ERR [AUTH] bad\n"
			   "MAINPID=1\r\nREADY=1\x1b[2J\x07\x9b"
			   "31m";
	char msg[1024];
	size_t i, n;

	notify_status(nt, text);
	n = next_datagram(msg, sizeof(msg));
	/* One assignment: STATUS=, with no line break to start another. */
	ck_assert_int_eq(strncmp(msg, "STATUS=", 7), 0);
	ck_assert(memchr(msg, '\n', n) == NULL);
	for (i = 0; i < n; i++)
		ck_assert_msg((unsigned char)msg[i] >= 0x20 &&
				  (unsigned char)msg[i] <= 0x7e,
		    "byte 0x%02x at %zu", (unsigned char)msg[i], i);
	ck_assert_ptr_nonnull(
	    strstr(msg, "bad\\x0aMAINPID=1\\x0d\\x0aREADY=1"));
	ck_assert_ptr_nonnull(strstr(msg, "\\x1b[2J\\x07\\x9b31m"));
}
END_TEST

START_TEST(status_is_capped_with_marker)
{
	static char text[5000];
	char msg[8192];
	size_t n, cut;
	const char *mark;

	memset(text, 'e', sizeof(text) - 1);
	notify_status(nt, text);
	n = next_datagram(msg, sizeof(msg));
	ck_assert_uint_lt(n, 512);
	mark = strstr(msg, "... (");
	ck_assert_ptr_nonnull(mark);
	ck_assert_int_eq(sscanf(mark, "... (%zu bytes cut)", &cut), 1);
	ck_assert_uint_eq(
	    (size_t)(mark - msg) - strlen("STATUS=") + cut, sizeof(text) - 1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("notify");
	TCase *tc = tcase_create("status");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, status_cannot_inject_assignments);
	tcase_add_test(tc, status_is_capped_with_marker);
	suite_add_tcase(s, tc);

	return check_main(s);
}
