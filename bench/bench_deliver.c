/*
 * Delivery throughput into a Maildir with syncing on, no network: the
 * batched path the daemon uses (deliver.c: files synced, intents
 * committed, link, one new/ fsync per batch), with each sync scheme of
 * maildir.h (sync = "batch": one syncfs per batch; sync = "file": an
 * fsync per file and per tmp/ entry), against a floor that fsyncs each
 * file and new/ once per message. Also the longest time one call kept
 * the event loop busy, since delivery runs on the loop thread.
 *
 *	bench_deliver DIR [COUNT [SIZE]]
 */
#include <sys/stat.h>
#include <sys/time.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench_clock.h"
#include "deliver.h"
#include "maildir.h"

#define BATCH 64

static void
die(const char *what)
{
	perror(what);
	exit(1);
}

/* A message of SIZE bytes with CRLF lines, as it comes off the wire. */
static char *
make_message(size_t size)
{
	char *m = malloc(size);
	size_t i;

	if (m == NULL)
		die("malloc");
	for (i = 0; i < size; i++)
		m[i] = (char)('a' + i % 23);
	for (i = 70; i + 1 < size; i += 72) {
		m[i] = '\r';
		m[i + 1] = '\n';
	}
	return m;
}

static void
durable(void *arg, unsigned long tag)
{
	(*(size_t *)arg)++;
}

/* The daemon's path: returns seconds; *STALL gets the longest call. */
static double
run_batched(const char *dir, size_t count, const char *msg, size_t size,
    enum maildir_sync how, double *stall)
{
	char path[4096], err[512], uid[32];
	struct deliver_where w = {.maildir = path,
	    .sync_each_file = how == MAILDIR_SYNC_FILE,
	    .state_dir = dir,
	    .account = how == MAILDIR_SYNC_FILE ? "bench-file" : "bench-batch",
	    .host = "host",
	    .user = "user"};
	struct deliver *d;
	size_t i, done = 0;
	double t0, t, dt;

	snprintf(path, sizeof(path), "%s/batched-%d", dir, (int)how);
	if ((d = deliver_open(&w, err, sizeof(err))) == NULL) {
		fprintf(stderr, "bench: %s\n", err);
		exit(1);
	}
	*stall = 0;
	t0 = now();
	for (i = 0; i < count; i++) {
		snprintf(uid, sizeof(uid), "u%zu", i);
		t = now();
		if (deliver_begin(d, i + 1, uid, DELIVER_SIZE_UNKNOWN) == -1 ||
		    deliver_write(d, msg, size) == -1 ||
		    deliver_end(d, NULL) == -1)
			die("deliver");
		if (deliver_pending(d) >= BATCH || i + 1 == count)
			if (deliver_flush(
				d, durable, &done, err, sizeof(err)) == -1) {
				fprintf(stderr, "bench: %s\n", err);
				exit(1);
			}
		if ((dt = now() - t) > *stall)
			*stall = dt;
	}
	t = now() - t0;
	if (done != count)
		fprintf(stderr, "bench: %zu of %zu durable\n", done, count);
	deliver_free(&d);
	return t;
}

/* The floor: write, fsync, link, fsync new/ for every message. */
static double
run_floor(const char *dir, size_t count, const char *msg, size_t size)
{
	char tmp[4096], new[4096], name[4096];
	int tfd, nfd, fd;
	size_t i;
	double t0;

	snprintf(tmp, sizeof(tmp), "%s/floor/tmp", dir);
	snprintf(new, sizeof(new), "%s/floor/new", dir);
	snprintf(name, sizeof(name), "%s/floor", dir);
	if ((mkdir(dir, 0700) == -1 && errno != EEXIST) ||
	    (mkdir(name, 0700) == -1 && errno != EEXIST) ||
	    (mkdir(tmp, 0700) == -1 && errno != EEXIST) ||
	    (mkdir(new, 0700) == -1 && errno != EEXIST))
		die("mkdir");
	if ((tfd = open(tmp, O_RDONLY | O_DIRECTORY)) == -1 ||
	    (nfd = open(new, O_RDONLY | O_DIRECTORY)) == -1)
		die("open");
	t0 = now();
	for (i = 0; i < count; i++) {
		snprintf(name, sizeof(name), "m%zu", i);
		fd = openat(tfd, name, O_WRONLY | O_CREAT | O_EXCL, 0600);
		if (fd == -1 || write(fd, msg, size) != (ssize_t)size ||
		    fsync(fd) == -1 || close(fd) == -1 ||
		    linkat(tfd, name, nfd, name, 0) == -1 ||
		    unlinkat(tfd, name, 0) == -1 || fsync(nfd) == -1)
			die("floor");
	}
	close(tfd);
	close(nfd);
	return now() - t0;
}

int
main(int argc, char **argv)
{
	size_t count = argc > 2 ? strtoul(argv[2], NULL, 10) : 2000;
	size_t size = argc > 3 ? strtoul(argv[3], NULL, 10) : 4096;
	double tb, tfile, tf, stall, stall_file;
	char *msg;

	if (argc < 2 || count == 0 || size < 128) {
		fprintf(stderr, "usage: bench_deliver DIR [COUNT [SIZE]]\n");
		return 2;
	}
	msg = make_message(size);
	tf = run_floor(argv[1], count, msg, size);
	tfile = run_batched(
	    argv[1], count, msg, size, MAILDIR_SYNC_FILE, &stall_file);
	tb = run_batched(argv[1], count, msg, size, MAILDIR_SYNC_BATCH, &stall);
	printf("delivery of %zu messages of %zu bytes into %s\n", count, size,
	    argv[1]);
	printf("  %-36s %8.0f msg/s %7.1f MB/s  longest loop call %6.1f ms\n",
	    "popfetchd, sync=batch (syncfs/64):", count / tb,
	    count * (double)size / tb / 1e6, stall * 1e3);
	printf("  %-36s %8.0f msg/s %7.1f MB/s  longest loop call %6.1f ms\n",
	    "popfetchd, sync=file (fsync each):", count / tfile,
	    count * (double)size / tfile / 1e6, stall_file * 1e3);
	printf("  %-36s %8.0f msg/s %7.1f MB/s\n",
	    "floor (fsync file + new/ each):", count / tf,
	    count * (double)size / tf / 1e6);
	printf("  popfetchd/floor time ratio: batch %.2f, file %.2f\n", tb / tf,
	    tfile / tf);
	free(msg);
	return 0;
}
