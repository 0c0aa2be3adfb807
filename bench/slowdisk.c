/*
 * A slow disk for the benchmark, without a disk: preloaded into popfetchd
 * (LD_PRELOAD=build/bench_slowdisk.so), it makes every call that waits
 * for stable storage (fsync, fdatasync, syncfs) on a file or directory under
 * SLOWDISK_PREFIX sleep SLOWDISK_MS milliseconds first, as a USB disk or a
 * remote file system would make it wait. It sleeps, so the thread waiting costs
 * no CPU: what it shows is whether anything else waits with that thread (the
 * event loop, the other accounts' disk work), not the CPU a busy disk's kernel
 * work takes (the competing writer of B9 shows that).
 *
 * Each delayed call adds one to a count that the process writes into
 * SLOWDISK_COUNT (a file) at exit, if it delayed any (a launcher that
 * preloads it too and exits later does not overwrite it with 0), so that
 * the benchmark knows the shim took effect.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *prefix;
static size_t prefix_len;
static long delay_ms;
static atomic_ulong delayed;

static void
report(void)
{
	const char *path = getenv("SLOWDISK_COUNT");
	FILE *f;

	if (atomic_load(&delayed) == 0 || path == NULL ||
	    (f = fopen(path, "w")) == NULL)
		return;
	fprintf(f, "%lu\n", (unsigned long)atomic_load(&delayed));
	fclose(f);
}

__attribute__((constructor)) static void
setup(void)
{
	const char *ms = getenv("SLOWDISK_MS");

	prefix = getenv("SLOWDISK_PREFIX");
	prefix_len = prefix != NULL ? strlen(prefix) : 0;
	delay_ms = ms != NULL ? strtol(ms, NULL, 10) : 0;
	atexit(report);
}

/* Sleeps when FD names a file under the prefix. */
static void
slow(int fd)
{
	char link[64], path[4096];
	struct timespec ts = {
	    .tv_sec = delay_ms / 1000, .tv_nsec = (delay_ms % 1000) * 1000000L};
	ssize_t n;

	if (prefix_len == 0 || delay_ms <= 0)
		return;
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	if ((n = readlink(link, path, sizeof(path) - 1)) <= 0)
		return;
	path[n] = '\0';
	if ((size_t)n < prefix_len || memcmp(path, prefix, prefix_len) != 0)
		return;
	atomic_fetch_add(&delayed, 1);
	while (nanosleep(&ts, &ts) == -1)
		;
}

/* Sleeps if FD is under the prefix, then calls libc's NAME. */
static int
slow_call(const char *name, int (**real)(int), int fd)
{
	if (*real == NULL)
		*(void **)real = dlsym(RTLD_NEXT, name);
	slow(fd);
	return (*real)(fd);
}

int
fsync(int fd)
{
	static int (*real)(int);

	return slow_call("fsync", &real, fd);
}

int
fdatasync(int fd)
{
	static int (*real)(int);

	return slow_call("fdatasync", &real, fd);
}

int
syncfs(int fd)
{
	static int (*real)(int);

	return slow_call("syncfs", &real, fd);
}
