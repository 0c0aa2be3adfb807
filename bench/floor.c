/*
 * Two helpers for bench/bench.py, which compares popfetchd with what the
 * disk alone costs.
 *
 *	bench_floor disk CORPUS INDEX ROOT PER_ACCOUNT CONCURRENCY
 *
 * The batched-disk reference: the messages of CORPUS (their
 * concatenation; INDEX holds one decimal length per line, in order),
 * PER_ACCOUNT to an account, are delivered into one Maildir per account
 * (ROOT/mail/aN) with the durability scheme popfetchd uses
 * (daemon/deliver.c, daemon/maildir.c, daemon/state.c), and no network:
 *
 *  - each account first gets its Maildir and a fresh state journal
 *    (ROOT/state/aN.state, its header written in place), beside its
 *    lock file, all made durable by the first batch's syncfs;
 *  - each message is written into tmp/ under a unique name (O_EXCL) and
 *    closed, large ones with their write-out started (sync_file_range),
 *    and its final name looked up in new/;
 *  - a batch of up to BATCH messages (or BATCH_BYTES) is then made
 *    durable: one syncfs, the intents appended to the journal and
 *    fdatasynced (the commit point), each file linked into new/, one
 *    fsync of new/, the tmp/ names removed; the completions are written
 *    with the next commit, and a last commit ends the account.
 *
 * As in popfetchd, one thread writes the files while WORKERS threads do
 * the waiting (the opening, each batch's syncs, the last commit), an
 * account has one such job at a time (its batch grows meanwhile), and
 * CONCURRENCY accounts are under way at once. The corpus is read into
 * memory before the clock starts. Prints one line of key=value fields,
 * wall time included.
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
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_clock.h"

/* More messages than any benchmark corpus; bounds the index array. */
#define MAX_MESSAGES 10000000
/*
 * popfetchd's own figures: messages and bytes per durability point
 * (daemon/session_priv.h SESSION_BATCH, SESSION_BATCH_BYTES), threads
 * doing the disk's
 * waiting (daemon/worker.h WORKER_THREADS), and the message size from
 * which a file's write-out starts before the batch's sync
 * (daemon/maildir.c EARLY_WRITEOUT).
 */
#define BATCH	       64
#define BATCH_BYTES    (16u << 20)
#define WORKERS	       4
#define EARLY_WRITEOUT (64 * 1024)
#define NAME_SIZE      256

enum job { J_OPEN, J_FLUSH, J_FINAL };

/* One account of the disk reference, and its one job at a time. */
struct acct {
	size_t id, first, n;	 /* its messages: corpus[first..first+n) */
	int dirfd, tmpfd, newfd; /* its Maildir */
	int lockfd, statefd;	 /* its state journal */
	char (*tmp)[NAME_SIZE];	 /* each message's tmp/ name */
	size_t written, queued;	 /* files in tmp/; handed to a flush */
	size_t completes;	 /* intents done, recorded at the next commit */
	unsigned long syncs;
	bool busy, opened, want_final;
	enum job kind;
	size_t lo, hi; /* the job's messages */
	struct acct *next;
};

struct disk {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* any job done, or queued */
	struct acct *accts, *qhead, *qtail;
	size_t nacct, next_open, closed;
	bool stop;
	const char *corpus;
	const size_t *lens;
	int maildirs, statedir; /* ROOT/mail, ROOT/state */
	char host[64];
	unsigned long seq;
};

static double now(void);
static void die(const char *, const char *);
static char *read_file(const char *, size_t *);
static size_t *read_index(const char *, size_t, size_t *);
static void write_all(int, const char *, size_t, const char *);
static void submit(struct disk *, struct acct *, enum job);
static int cmd_disk(int, char **);
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

static void
fsync_or_die(int fd, const char *what, unsigned long *syncs)
{
	if (fsync(fd) == -1)
		die("cannot fsync", what);
	(*syncs)++;
}

/*
 * DIRFD/NAME created as a directory and opened; durable with the first
 * batch's syncfs, before anything relies on it.
 */
static int
make_dir(int dirfd, const char *name)
{
	int fd;

	if (mkdirat(dirfd, name, 0700) == -1)
		die("cannot create", name);
	if ((fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	    -1)
		die("cannot open", name);
	return fd;
}

/* The account's Maildir and a fresh state journal, as popfetchd opens them. */
static void
job_open(struct disk *d, struct acct *a)
{
	char name[NAME_SIZE], tmp[NAME_SIZE], head[128];
	int fd;

	snprintf(name, sizeof(name), "a%zu", a->id);
	a->dirfd = make_dir(d->maildirs, name);
	a->tmpfd = make_dir(a->dirfd, "tmp");
	a->newfd = make_dir(a->dirfd, "new");
	close(make_dir(a->dirfd, "cur"));

	snprintf(tmp, sizeof(tmp), "a%zu.lock", a->id);
	a->lockfd =
	    openat(d->statedir, tmp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	snprintf(name, sizeof(name), "a%zu.state", a->id);
	fd = openat(d->statedir, name,
	    O_RDWR | O_APPEND | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (a->lockfd == -1 || fd == -1)
		die("cannot create the state of", name);
	snprintf(head, sizeof(head),
	    "popfetchd-state 1 host=127.0.0.1 user=a%zu\n", a->id);
	write_all(fd, head, strlen(head), name);
	a->statefd = fd;
}

/*
 * Appends the journal records of a commit: the intents of messages
 * LO..HI (tmp/ and final names, size) after the completions of the
 * previous batch; fdatasynced.
 */
static void
commit(const struct disk *d, struct acct *a, size_t lo, size_t hi)
{
	char *out, *p;
	size_t k, cap = (a->completes + hi - lo) * (3 * NAME_SIZE) + 1;

	if ((p = out = malloc(cap)) == NULL)
		die("out of memory for", "the journal");
	for (k = 0; k < a->completes; k++)
		p += sprintf(p, "C uid-%zu\n", a->first + lo - k - 1);
	for (k = lo; k < hi; k++)
		p += sprintf(p, "P uid-%zu %lld %s %s,S=%zu %zu\n",
		    a->first + k, (long long)time(NULL), a->tmp[k], a->tmp[k],
		    d->lens[a->first + k], d->lens[a->first + k]);
	write_all(a->statefd, out, (size_t)(p - out), "the journal");
	free(out);
	if (fdatasync(a->statefd) == -1)
		die("cannot fdatasync", "the journal");
	a->syncs++;
	a->completes = 0;
}

/* Messages LO..HI of A made durable, as deliver_flush() does. */
static void
job_flush(struct disk *d, struct acct *a, size_t lo, size_t hi)
{
	char final[NAME_SIZE + 32];
	size_t k;

	if (lo == hi)
		return;
	if (syncfs(a->tmpfd) == -1)
		die("cannot syncfs", "tmp/");
	a->syncs++;
	commit(d, a, lo, hi);
	for (k = lo; k < hi; k++) {
		snprintf(final, sizeof(final), "%s,S=%zu", a->tmp[k],
		    d->lens[a->first + k]);
		if (linkat(a->tmpfd, a->tmp[k], a->newfd, final, 0) == -1)
			die("cannot link into new/", final);
	}
	fsync_or_die(a->newfd, "new/", &a->syncs);
	for (k = lo; k < hi; k++)
		if (unlinkat(a->tmpfd, a->tmp[k], 0) == -1)
			die("cannot remove", a->tmp[k]);
	a->completes = hi - lo;
}

/* The last flush, the last commit, and the account closed. */
static void
job_final(struct disk *d, struct acct *a)
{
	job_flush(d, a, a->lo, a->hi);
	if (a->completes > 0)
		commit(d, a, a->hi, a->hi);
	close(a->statefd);
	close(a->lockfd);
	close(a->tmpfd);
	close(a->newfd);
	close(a->dirfd);
}

/* A job has run (under the lock): what comes after it. */
static void
job_done(struct disk *d, struct acct *a)
{
	a->busy = false;
	switch (a->kind) {
	case J_OPEN:
		a->opened = true;
		break;
	case J_FLUSH:
		if (a->want_final)
			submit(d, a, J_FINAL);
		break;
	case J_FINAL:
		d->closed++;
		if (d->next_open < d->nacct)
			submit(d, &d->accts[d->next_open++], J_OPEN);
		break;
	}
	pthread_cond_broadcast(&d->cv);
}

static void *
worker(void *arg)
{
	struct disk *d = arg;
	struct acct *a;

	pthread_mutex_lock(&d->mu);
	for (;;) {
		while (d->qhead == NULL && !d->stop)
			pthread_cond_wait(&d->cv, &d->mu);
		if ((a = d->qhead) == NULL)
			break;
		if ((d->qhead = a->next) == NULL)
			d->qtail = NULL;
		pthread_mutex_unlock(&d->mu);
		if (a->kind == J_OPEN)
			job_open(d, a);
		else if (a->kind == J_FLUSH)
			job_flush(d, a, a->lo, a->hi);
		else
			job_final(d, a);
		pthread_mutex_lock(&d->mu);
		job_done(d, a);
	}
	pthread_mutex_unlock(&d->mu);
	return NULL;
}

/* Queues KIND for A, which has no job (under the lock). */
static void
submit(struct disk *d, struct acct *a, enum job kind)
{
	a->busy = true;
	a->want_final = false;
	a->kind = kind;
	a->lo = a->queued;
	a->hi = a->queued = a->written;
	a->next = NULL;
	if (d->qtail != NULL)
		d->qtail->next = a;
	else
		d->qhead = a;
	d->qtail = a;
	pthread_cond_broadcast(&d->cv);
}

/* Message K of A into tmp/, as maildir_begin() ... maildir_finish(). */
static void
write_message(struct disk *d, struct acct *a, size_t k, size_t off)
{
	char final[NAME_SIZE + 32];
	size_t len = d->lens[a->first + k];
	struct timespec ts;
	struct stat sb;
	int fd;

	clock_gettime(CLOCK_REALTIME, &ts);
	snprintf(a->tmp[k], NAME_SIZE, "%lld.M%ldP%ldQ%lu.%s",
	    (long long)ts.tv_sec, ts.tv_nsec / 1000, (long)getpid(), ++d->seq,
	    d->host);
	fd = openat(
	    a->tmpfd, a->tmp[k], O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd == -1)
		die("cannot create tmp/", a->tmp[k]);
	write_all(fd, d->corpus + off, len, a->tmp[k]);
	if (len >= EARLY_WRITEOUT)
		(void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	if (close(fd) == -1)
		die("cannot close", a->tmp[k]);
	/* Its final name must be free in new/ (pick_free_final). */
	snprintf(final, sizeof(final), "%s,S=%zu", a->tmp[k], len);
	if (fstatat(a->newfd, final, &sb, AT_SYMLINK_NOFOLLOW) == 0 ||
	    errno != ENOENT)
		die("name taken in new/:", final);
}

/* Bytes of A written but not yet handed to a flush. */
static size_t
unqueued_bytes(const struct disk *d, const struct acct *a)
{
	size_t k, n = 0;

	for (k = a->queued; k < a->written; k++)
		n += d->lens[a->first + k];
	return n;
}

/* The writer: every account's messages, a flush handed off per batch. */
static void
write_accounts(struct disk *d)
{
	size_t i, k, off = 0;
	struct acct *a;

	for (i = 0; i < d->nacct; i++) {
		a = &d->accts[i];
		pthread_mutex_lock(&d->mu);
		while (!a->opened)
			pthread_cond_wait(&d->cv, &d->mu);
		pthread_mutex_unlock(&d->mu);
		for (k = 0; k < a->n; k++) {
			write_message(d, a, k, off);
			off += d->lens[a->first + k];
			a->written++;
			if (a->written - a->queued < BATCH &&
			    unqueued_bytes(d, a) < BATCH_BYTES)
				continue;
			pthread_mutex_lock(&d->mu);
			if (!a->busy)
				submit(d, a, J_FLUSH);
			pthread_mutex_unlock(&d->mu);
		}
		pthread_mutex_lock(&d->mu);
		if (a->busy)
			a->want_final = true;
		else
			submit(d, a, J_FINAL);
		pthread_mutex_unlock(&d->mu);
	}
}

/* The accounts of COUNT messages, PER to an account, and ROOT's folders. */
static void
disk_setup(struct disk *d, const char *root, size_t count, size_t per)
{
	char path[4096];
	size_t i;

	d->nacct = (count + per - 1) / per;
	if ((d->accts = calloc(d->nacct ? d->nacct : 1, sizeof(*d->accts))) ==
	    NULL)
		die("out of memory for", "accounts");
	for (i = 0; i < d->nacct; i++) {
		d->accts[i].id = i;
		d->accts[i].first = i * per;
		d->accts[i].n = count - i * per < per ? count - i * per : per;
		d->accts[i].tmp = calloc(d->accts[i].n + 1, NAME_SIZE);
		if (d->accts[i].tmp == NULL)
			die("out of memory for", "names");
	}
	if (mkdir(root, 0700) == -1 && errno != EEXIST)
		die("cannot create", root);
	snprintf(path, sizeof(path), "%s/mail", root);
	if (mkdir(path, 0700) == -1 ||
	    (d->maildirs = open(path, O_RDONLY | O_DIRECTORY)) == -1)
		die("cannot create", path);
	snprintf(path, sizeof(path), "%s/state", root);
	if (mkdir(path, 0700) == -1 ||
	    (d->statedir = open(path, O_RDONLY | O_DIRECTORY)) == -1)
		die("cannot create", path);
	if (gethostname(d->host, sizeof(d->host)) == -1)
		strcpy(d->host, "localhost");
	d->host[sizeof(d->host) - 1] = '\0';
}

/* Runs the reference: the seconds it took. */
static double
disk_run(struct disk *d, size_t conc)
{
	pthread_t th[WORKERS];
	double t0;
	int i;

	t0 = now();
	for (i = 0; i < WORKERS; i++)
		if (pthread_create(&th[i], NULL, worker, d) != 0)
			die("cannot start", "a thread");
	pthread_mutex_lock(&d->mu);
	while (d->next_open < d->nacct && d->next_open < conc)
		submit(d, &d->accts[d->next_open++], J_OPEN);
	pthread_mutex_unlock(&d->mu);
	write_accounts(d);
	pthread_mutex_lock(&d->mu);
	while (d->closed < d->nacct)
		pthread_cond_wait(&d->cv, &d->mu);
	d->stop = true;
	pthread_cond_broadcast(&d->cv);
	pthread_mutex_unlock(&d->mu);
	for (i = 0; i < WORKERS; i++)
		pthread_join(th[i], NULL);
	return now() - t0;
}

static int
cmd_disk(int argc, char **argv)
{
	struct disk d = {
	    .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
	size_t total, count, *lens, per, conc, i;
	unsigned long syncs = 0;
	struct rusage ru;
	char *corpus;
	double t;

	if (argc != 7)
		usage();
	per = strtoul(argv[5], NULL, 10);
	conc = strtoul(argv[6], NULL, 10);
	if (per == 0 || conc == 0)
		usage();
	corpus = read_file(argv[2], &total);
	lens = read_index(argv[3], total, &count);
	d.corpus = corpus;
	d.lens = lens;
	disk_setup(&d, argv[4], count, per);
	t = disk_run(&d, conc);
	getrusage(RUSAGE_SELF, &ru);
	for (i = 0; i < d.nacct; i++) {
		syncs += d.accts[i].syncs;
		free(d.accts[i].tmp);
	}
	printf("disk: accounts=%zu messages=%zu bytes=%zu syncs=%lu "
	       "wall=%.6f user=%.6f sys=%.6f\n",
	    d.nacct, count, total, syncs, t,
	    (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6,
	    (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6);
	free(d.accts);
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
	    "usage: bench_floor disk CORPUS INDEX ROOT PER_ACCOUNT CONCURRENCY\n"
	    "       bench_floor measure OUTFILE COMMAND [ARG...]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "disk") == 0)
		return cmd_disk(argc, argv);
	if (argc >= 2 && strcmp(argv[1], "measure") == 0)
		return cmd_measure(argc, argv);
	usage();
	return 2;
}
