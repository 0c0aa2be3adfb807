/*
 * Two helpers for bench/bench.py, which compares popfetchd with what the
 * disk alone costs.
 *
 *	bench_floor write CORPUS INDEX MAILDIR
 *
 * The floor: the messages of CORPUS (their concatenation; INDEX holds one
 * decimal length per line, in order) are written into MAILDIR as a careful
 * delivery agent would, without any network: per message, a file created
 * with O_EXCL in tmp/, written, fsynced and renamed into new/; then one
 * fsync of new/ at the end. The corpus is read into memory before the
 * clock starts. Prints the wall time.
 *
 *	bench_floor measure OUTFILE COMMAND [ARG...]
 *
 * Runs COMMAND and writes its exit status, wall time, CPU time and peak
 * RSS (from wait4) to OUTFILE as key=value fields; exits with COMMAND's
 * status. This exists because a Linux process inherits the peak RSS of
 * whoever called exec: a child exec'd by Python reports at least the
 * interpreter's size, while one exec'd from this small program reports
 * its own (plus at most this program's RSS of about a megabyte).
 */
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_clock.h"

/* More messages than any benchmark corpus; bounds the index array. */
#define MAX_MESSAGES 10000000

static double now(void);
static void die(const char *, const char *);
static char *read_file(const char *, size_t *);
static size_t *read_index(const char *, size_t, size_t *);
static int open_dir(const char *, const char *);
static void write_all(int, const char *, size_t, const char *);
static int cmd_write(int, char **);
static int cmd_measure(int, char **);
static void usage(void);

static void
die(const char *what, const char *path)
{
	fprintf(
	    stderr, "bench_floor: %s %s: %s\n", what, path, strerror(errno));
	exit(1);
}

/* The whole of PATH in memory; *LEN gets its size. */
static char *
read_file(const char *path, size_t *len)
{
	struct stat sb;
	char *buf;
	size_t off = 0;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY)) == -1 || fstat(fd, &sb) == -1)
		die("cannot open", path);
	if ((buf = malloc((size_t)sb.st_size + 1)) == NULL)
		die("out of memory for", path);
	while (off < (size_t)sb.st_size) {
		n = read(fd, buf + off, (size_t)sb.st_size - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			die("cannot read", path);
		off += (size_t)n;
	}
	close(fd);
	buf[off] = '\0';
	*len = off;
	return buf;
}

/* The lengths in PATH, checked to add up to TOTAL; *COUNT gets how many. */
static size_t *
read_index(const char *path, size_t total, size_t *count)
{
	size_t *lens = NULL, n = 0, cap = 0, sum = 0;
	unsigned long long v;
	char line[64], *end;
	FILE *f;

	if ((f = fopen(path, "r")) == NULL)
		die("cannot open", path);
	while (fgets(line, sizeof(line), f) != NULL) {
		errno = 0;
		v = strtoull(line, &end, 10);
		if (errno != 0 || end == line || (*end != '\n' && *end != '\0'))
			die("bad length in", path);
		if (n == cap) {
			cap = cap ? cap * 2 : 1024;
			if (cap > MAX_MESSAGES ||
			    (lens = realloc(lens, cap * sizeof(*lens))) == NULL)
				die("too many messages in", path);
		}
		lens[n++] = (size_t)v;
		sum += (size_t)v;
	}
	fclose(f);
	if (sum != total) {
		fprintf(stderr,
		    "bench_floor: %s: lengths add up to %zu, the corpus has %zu bytes\n",
		    path, sum, total);
		exit(1);
	}
	*count = n;
	return lens;
}

/* DIR/SUB created if missing and opened as a directory. */
static int
open_dir(const char *dir, const char *sub)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if (mkdir(path, 0700) == -1 && errno != EEXIST)
		die("cannot create", path);
	if ((fd = open(path, O_RDONLY | O_DIRECTORY)) == -1)
		die("cannot open", path);
	return fd;
}

static void
write_all(int fd, const char *buf, size_t len, const char *name)
{
	ssize_t n;

	while (len > 0) {
		n = write(fd, buf, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			die("cannot write", name);
		buf += n;
		len -= (size_t)n;
	}
}

static int
cmd_write(int argc, char **argv)
{
	char name[128], host[64];
	size_t total, count, *lens, i, off = 0;
	int tmpfd, newfd, fd;
	double t0, t;
	char *corpus;

	if (argc != 5)
		usage();
	corpus = read_file(argv[2], &total);
	lens = read_index(argv[3], total, &count);
	if (mkdir(argv[4], 0700) == -1 && errno != EEXIST)
		die("cannot create", argv[4]);
	tmpfd = open_dir(argv[4], "tmp");
	newfd = open_dir(argv[4], "new");
	close(open_dir(argv[4], "cur"));
	if (gethostname(host, sizeof(host)) == -1)
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';

	t0 = now();
	for (i = 0; i < count; i++) {
		/* A Maildir name: time, a sequence number, the process. */
		snprintf(name, sizeof(name), "%lld.M%zuP%ld.%s",
		    (long long)time(NULL), i, (long)getpid(), host);
		fd = openat(tmpfd, name, O_WRONLY | O_CREAT | O_EXCL, 0600);
		if (fd == -1)
			die("cannot create tmp/", name);
		write_all(fd, corpus + off, lens[i], name);
		if (fsync(fd) == -1 || close(fd) == -1)
			die("cannot sync", name);
		if (renameat(tmpfd, name, newfd, name) == -1)
			die("cannot rename", name);
		off += lens[i];
	}
	if (fsync(newfd) == -1)
		die("cannot sync", "new/");
	t = now() - t0;

	printf("floor: %zu messages, %zu bytes, %.6f s\n", count, total, t);
	close(tmpfd);
	close(newfd);
	free(lens);
	free(corpus);
	return 0;
}

static int
cmd_measure(int argc, char **argv)
{
	struct rusage ru;
	double t0, t;
	int status, code;
	pid_t pid;
	FILE *out;

	if (argc < 4)
		usage();
	/* Opened before the fork: an unwritable OUTFILE fails early. */
	if ((out = fopen(argv[2], "w")) == NULL)
		die("cannot create", argv[2]);
	t0 = now();
	if ((pid = fork()) == -1)
		die("cannot fork for", argv[3]);
	if (pid == 0) {
		fclose(out);
		execvp(argv[3], argv + 3);
		fprintf(stderr, "bench_floor: cannot run %s: %s\n", argv[3],
		    strerror(errno));
		_exit(127);
	}
	while (wait4(pid, &status, 0, &ru) == -1)
		if (errno != EINTR)
			die("cannot wait for", argv[3]);
	t = now() - t0;

	if (WIFEXITED(status))
		code = WEXITSTATUS(status);
	else
		code = 128 + WTERMSIG(status);
	fprintf(out, "status=%d wall=%.6f user=%.6f sys=%.6f maxrss_kb=%ld\n",
	    code, t, (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
	    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6,
	    ru.ru_maxrss);
	if (fclose(out) == EOF)
		die("cannot write", argv[2]);
	return code;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: bench_floor write CORPUS INDEX MAILDIR\n"
	    "       bench_floor measure OUTFILE COMMAND [ARG...]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "write") == 0)
		return cmd_write(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "measure") == 0)
		return cmd_measure(argc, argv);
	usage();
	return 2;
}
