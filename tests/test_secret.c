/*
 * Tests for the password sources: each request is driven on a real
 * libevent loop until its callback breaks the loop; then the loop runs
 * once more until it has nothing left (a killed command being reaped), so
 * that each test can check no child is left behind.
 */
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "conf.h"
#include "log.h"
#include "secret.h"
#include "check_main.h"
#include "check_util.h"

struct answer {
	int calls;
	bool ok;
	enum secret_fail fail;
	char secret[SECRET_MAX];
	char err[768];
	int *pending;		  /* the loop breaks when this reaches 0 */
	struct secret_req **self; /* cancelled from inside the callback */
};

static struct event_base *base;
/* Shorter than PATH_MAX, leaving room for the file names below. */
static char tmpdir[PATH_MAX - 64];
static char paths[8][PATH_MAX];
static size_t npaths;
static bool fetching; /* inside secret_fetch(): no callback allowed */

static void
setup(void)
{
	check_tmpdir(tmpdir, sizeof(tmpdir), "test_secret");
	ck_assert_ptr_nonnull(base = event_base_new());
	/* Debug lines on: the secret must not show up even there. */
	log_init(2, true);
	npaths = 0;
}

static void
teardown(void)
{
	check_rm_rf(tmpdir);
	event_base_free(base);
}

/* Writes a file NAME in the test's folder; returns its path. */
static const char *
make_file(const char *name, const char *content, mode_t mode)
{
	char *path = paths[npaths++];

	snprintf(path, sizeof(paths[0]), "%s/%s", tmpdir, name);
	check_write_file(path, content, strlen(content), mode);
	return path;
}

static struct account
account(void)
{
	struct account a;

	memset(&a, 0, sizeof(a));
	a.name = "test";
	a.timeout = 10;
	return a;
}

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool
no_children(void)
{
	return waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD;
}

static void
on_answer(void *arg, const char *secret, enum secret_fail fail, const char *err)
{
	struct answer *ans = arg;

	ck_assert_msg(!fetching, "callback from inside secret_fetch()");
	ck_assert((secret == NULL) != (err == NULL));
	ck_assert((secret == NULL) == (fail != SECRET_FAIL_NONE));
	ans->calls++;
	ans->ok = secret != NULL;
	ans->fail = fail;
	snprintf(ans->secret, sizeof(ans->secret), "%s", secret ? secret : "");
	snprintf(ans->err, sizeof(ans->err), "%s", err ? err : "");
	if (ans->self != NULL)
		secret_cancel(ans->self); /* allowed, and a no-op */
	if (--*ans->pending == 0)
		event_base_loopbreak(base);
}

static struct secret_req *
start(const struct account *a, struct answer *ans, int *pending)
{
	struct secret_req *req;

	ans->pending = pending;
	fetching = true;
	req = secret_fetch(base, a, on_answer, ans);
	fetching = false;
	ck_assert_ptr_nonnull(req);
	ck_assert_int_eq(ans->calls, 0);
	return req;
}

/* Lets killed commands be reaped, then checks none is left. */
static void
settle(void)
{
	ck_assert_int_eq(event_base_dispatch(base), 1);
	ck_assert(no_children());
}

/* One fetch for A, run to its answer. */
static void
fetch(const struct account *a, struct answer *ans)
{
	int pending = 1;

	start(a, ans, &pending);
	event_base_dispatch(base);
	ck_assert_int_eq(ans->calls, 1);
	settle();
}

static void
expect_secret(const struct account *a, const char *want)
{
	struct answer ans = {0};

	fetch(a, &ans);
	ck_assert_msg(ans.ok, "error: %s", ans.err);
	ck_assert_str_eq(ans.secret, want);
}

/* Fetches for A, expects an error containing WANT. */
static void
expect_error(const struct account *a, const char *want)
{
	struct answer ans = {0};

	fetch(a, &ans);
	ck_assert_msg(!ans.ok, "unexpected secret");
	ck_assert_msg(strstr(ans.err, want) != NULL,
	    "error \"%s\" lacks \"%s\"", ans.err, want);
	/* A command may work later; a file or credential must be fixed. */
	ck_assert_int_eq(ans.fail, a->password_command != NULL
				       ? SECRET_FAIL_TEMP
				       : SECRET_FAIL_CONFIG);
}

/* stderr redirected into a file, to look at what was logged. */
static FILE *capture;
static int saved_stderr;

static void
capture_start(void)
{
	fflush(stderr);
	ck_assert_ptr_nonnull(capture = tmpfile());
	ck_assert_int_ne(saved_stderr = dup(2), -1);
	ck_assert_int_eq(dup2(fileno(capture), 2), 2);
}

static void
capture_end(char *buf, size_t len)
{
	size_t n;

	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	rewind(capture);
	n = fread(buf, 1, len - 1, capture);
	buf[n] = '\0';
	fclose(capture);
}

START_TEST(inline_password)
{
	struct account a = account();

	a.password = "hunter2";
	expect_secret(&a, "hunter2");
}
END_TEST

START_TEST(no_source)
{
	struct account a = account();

	expect_error(&a, "no password configured");
}
END_TEST

START_TEST(file_0600_accepted)
{
	struct account a = account();

	a.password_file =
	    (char *)make_file("pw", "s3cret\nsecond line\n", 0600);
	expect_secret(&a, "s3cret");
	a.password_file = (char *)make_file("crlf", "dos\r\n", 0400);
	expect_secret(&a, "dos");
	a.password_file = (char *)make_file("nonl", "no-newline", 0600);
	expect_secret(&a, "no-newline");
}
END_TEST

START_TEST(file_0640_refused)
{
	struct account a = account();

	a.password_file = (char *)make_file("pw", "s3cret\n", 0640);
	expect_error(&a, a.password_file);
	expect_error(&a, "accessible by group or others");
	a.password_file = (char *)make_file("pw2", "s3cret\n", 0604);
	expect_error(&a, "accessible by group or others");
}
END_TEST

START_TEST(file_missing)
{
	struct account a = account();
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/absent", tmpdir);
	a.password_file = path;
	expect_error(&a, path);
	expect_error(&a, "No such file");
}
END_TEST

START_TEST(file_bad_first_line)
{
	struct account a = account();
	static char big[SECRET_MAX + 2];

	a.password_file = (char *)make_file("empty", "", 0600);
	expect_error(&a, "no secret on its first line");
	a.password_file = (char *)make_file("blank", "\nsecond\n", 0600);
	expect_error(&a, "no secret on its first line");
	/* Refused, not cut: a truncated password fails mysteriously. */
	memset(big, 'x', sizeof(big) - 1);
	a.password_file = (char *)make_file("big", big, 0600);
	expect_error(&a, "longer than");
	big[SECRET_MAX - 1] = '\0';
	a.password_file = (char *)make_file("max", big, 0600);
	expect_secret(&a, big);
	a.password_file = tmpdir;
	expect_error(&a, "not a regular file");
}
END_TEST

START_TEST(credential)
{
	struct account a = account();

	make_file("work", "from-systemd\n", 0400);
	ck_assert_int_eq(setenv("CREDENTIALS_DIRECTORY", tmpdir, 1), 0);
	a.password_credential = "work";
	expect_secret(&a, "from-systemd");
	make_file("open", "x\n", 0644);
	a.password_credential = "open";
	expect_error(&a, "accessible by group or others");
	a.password_credential = "absent";
	expect_error(&a, "No such file");
}
END_TEST

START_TEST(credential_without_directory)
{
	struct account a = account();

	unsetenv("CREDENTIALS_DIRECTORY");
	a.password_credential = "work";
	expect_error(&a, "$CREDENTIALS_DIRECTORY");
}
END_TEST

START_TEST(command_echo)
{
	struct account a = account();

	a.password_command = "echo tok-123";
	expect_secret(&a, "tok-123");
}
END_TEST

START_TEST(command_first_line_only)
{
	struct account a = account();

	a.password_command = "printf 'first\\r\\nsecond\\n'";
	expect_secret(&a, "first");
	a.password_command = "printf 'no line end'";
	expect_secret(&a, "no line end");
}
END_TEST

START_TEST(command_exit_status)
{
	struct account a = account();

	a.password_command = "echo ignored; exit 3";
	expect_error(&a, "password_command exited with status 3");
	a.password_command = "kill -TERM $$";
	expect_error(&a, "killed by signal 15");
	a.password_command = "true";
	expect_error(&a, "no secret on its first line");
}
END_TEST

START_TEST(command_timeout)
{
	struct account a = account();
	struct answer ans = {0};
	int pending = 1;
	double t0 = now();

	a.timeout = 1;
	a.password_command = "sleep 30";
	start(&a, &ans, &pending);
	event_base_dispatch(base);
	/* A bound on the run time, not a synchronisation. */
	ck_assert_double_lt(now() - t0, 5.0);
	ck_assert_int_eq(ans.calls, 1);
	ck_assert(!ans.ok);
	ck_assert_str_eq(ans.err, "password_command timed out after 1 s");
	settle();
}
END_TEST

/* Whether PID is gone or a zombie (not ours to reap: init's). */
static bool
dead(long pid)
{
	char path[64], buf[256], *p;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	if ((f = fopen(path, "r")) == NULL)
		return true;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return (p = strrchr(buf, ')')) != NULL && p[1] == ' ' && p[2] == 'Z';
}

START_TEST(command_timeout_kills_group)
{
	struct account a = account();
	char cmd[PATH_MAX + 64];
	FILE *f;
	long pid = 0;
	int i;

	snprintf(cmd, sizeof(cmd), "sleep 30 & echo $! >'%s/bg'; wait", tmpdir);
	snprintf(paths[npaths++], sizeof(paths[0]), "%s/bg", tmpdir);
	a.timeout = 1;
	a.password_command = cmd;
	expect_error(&a, "timed out");
	ck_assert_ptr_nonnull(f = fopen(paths[npaths - 1], "r"));
	ck_assert_int_eq(fscanf(f, "%ld", &pid), 1);
	fclose(f);
	/* SIGKILL is sent; allow the kernel a moment to finish it. */
	for (i = 0; i < 200 && !dead(pid); i++)
		usleep(10000);
	ck_assert_msg(dead(pid), "background process %ld survived", pid);
}
END_TEST

START_TEST(command_huge_output)
{
	struct account a = account();

	a.password_command = "yes | head -c 1000000";
	expect_error(&a, "output too long");
	/* A long first line within the output limit is refused too. */
	a.password_command = "head -c 20000 /dev/zero | tr '\\0' x";
	expect_error(&a, "longer than");
}
END_TEST

START_TEST(command_stderr)
{
	struct account a = account();
	char log[8192];

	capture_start();
	a.password_command =
	    "printf 'warn\\033[31m red\\nline two\\n' >&2; echo S3cr3t-value";
	expect_secret(&a, "S3cr3t-value");
	/* Much more stderr than is kept must not block the command. */
	a.password_command =
	    "head -c 200000 /dev/zero | tr '\\0' e >&2; echo S3cr3t-value";
	expect_secret(&a, "S3cr3t-value");
	capture_end(log, sizeof(log));
	ck_assert_msg(
	    strstr(log,
		"account=test password_command: stderr: warn?[31m red line two\n") !=
		NULL,
	    "log: %s", log);
	ck_assert_msg(strstr(log, "eeee [...]\n") != NULL, "log: %s", log);
	ck_assert_msg(strstr(log, "S3cr3t") == NULL, "secret logged: %s", log);
}
END_TEST

START_TEST(command_environment)
{
	struct account a = account();
	sigset_t usr1;
	int leak;

	/* What the daemon does to itself must not reach the command. */
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL);
	ck_assert_int_gt(leak = dup(1), 2); /* no close-on-exec */
	a.password_command =
	    "grep -E '^Sig(Blk|Ign)' /proc/self/status | tr -s '\\n\\t' '  '";
	expect_secret(&a, "SigBlk: 0000000000000000 SigIgn: 0000000000000000 ");
	a.password_command = "ls /proc/self/fd | tr '\\n' ' '";
	expect_secret(&a, "0 1 2 3 ");
	a.password_command = "read x || echo stdin-empty";
	expect_secret(&a, "stdin-empty");
	a.password_command =
	    "[ \"$(cut -d' ' -f5 /proc/$$/stat)\" = $$ ] && echo leader";
	expect_secret(&a, "leader");
	close(leak);
}
END_TEST

START_TEST(cancel_before_completion)
{
	struct account a = account();
	struct answer ans = {0};
	struct secret_req *req;
	int pending = 1;
	double t0 = now();

	a.password_command = "sleep 30";
	req = start(&a, &ans, &pending);
	secret_cancel(&req);
	ck_assert_ptr_null(req);
	secret_cancel(&req); /* NULL is fine */
	/* Returns once the killed command is reaped: nothing else waits. */
	ck_assert_int_eq(event_base_dispatch(base), 1);
	ck_assert_double_lt(now() - t0, 5.0);
	ck_assert_int_eq(ans.calls, 0);
	ck_assert(no_children());
}
END_TEST

static void
cancel_later(evutil_socket_t fd, short what, void *arg)
{
	secret_cancel(arg);
}

START_TEST(cancel_while_running)
{
	struct account a = account();
	struct answer ans = {0};
	struct secret_req *req;
	struct timeval tv = {.tv_usec = 200000};
	int pending = 1;

	a.password_command = "echo partial; exec sleep 30";
	req = start(&a, &ans, &pending);
	event_base_once(base, -1, EV_TIMEOUT, cancel_later, &req, &tv);
	ck_assert_int_eq(event_base_dispatch(base), 1);
	ck_assert_ptr_null(req);
	ck_assert_int_eq(ans.calls, 0);
	ck_assert(no_children());
}
END_TEST

START_TEST(cancel_known_answer)
{
	struct account a = account();
	struct answer ans = {0};
	struct secret_req *req;
	int pending = 1;

	a.password = "hunter2";
	req = start(&a, &ans, &pending);
	secret_cancel(&req);
	ck_assert_int_eq(event_base_dispatch(base), 1);
	ck_assert_int_eq(ans.calls, 0);
}
END_TEST

START_TEST(cancel_inside_callback)
{
	struct account a = account();
	struct answer ans = {0};
	struct secret_req *req;
	int pending = 1;

	a.password_command = "echo x";
	req = start(&a, &ans, &pending);
	ans.self = &req;
	event_base_dispatch(base);
	ck_assert_int_eq(ans.calls, 1);
	ck_assert_ptr_null(req);
	settle();
}
END_TEST

START_TEST(two_commands_at_once)
{
	struct account a = account(), b = account();
	struct answer ans_a = {0}, ans_b = {0};
	int pending = 2;
	double t0 = now();

	a.password_command = "sleep 1; echo one";
	b.name = "other";
	b.password_command = "sleep 1; echo two";
	start(&a, &ans_a, &pending);
	start(&b, &ans_b, &pending);
	event_base_dispatch(base);
	ck_assert_int_eq(ans_a.calls, 1);
	ck_assert_int_eq(ans_b.calls, 1);
	ck_assert_str_eq(ans_a.secret, "one");
	ck_assert_str_eq(ans_b.secret, "two");
	/* Side by side, not one after the other (that would take 2 s). */
	ck_assert_double_lt(now() - t0, 1.9);
	settle();
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("secret");
	TCase *files = tcase_create("files");
	TCase *cmd = tcase_create("command");
	TCase *cancel = tcase_create("cancel");

	tcase_add_checked_fixture(files, setup, teardown);
	tcase_add_test(files, inline_password);
	tcase_add_test(files, no_source);
	tcase_add_test(files, file_0600_accepted);
	tcase_add_test(files, file_0640_refused);
	tcase_add_test(files, file_missing);
	tcase_add_test(files, file_bad_first_line);
	tcase_add_test(files, credential);
	tcase_add_test(files, credential_without_directory);
	suite_add_tcase(s, files);

	tcase_add_checked_fixture(cmd, setup, teardown);
	tcase_add_test(cmd, command_echo);
	tcase_add_test(cmd, command_first_line_only);
	tcase_add_test(cmd, command_exit_status);
	tcase_add_test(cmd, command_timeout);
	tcase_add_test(cmd, command_timeout_kills_group);
	tcase_add_test(cmd, command_huge_output);
	tcase_add_test(cmd, command_stderr);
	tcase_add_test(cmd, command_environment);
	tcase_add_test(cmd, two_commands_at_once);
	suite_add_tcase(s, cmd);

	tcase_add_checked_fixture(cancel, setup, teardown);
	tcase_add_test(cancel, cancel_before_completion);
	tcase_add_test(cancel, cancel_while_running);
	tcase_add_test(cancel, cancel_known_answer);
	tcase_add_test(cancel, cancel_inside_callback);
	suite_add_tcase(s, cancel);

	return check_main(s);
}
