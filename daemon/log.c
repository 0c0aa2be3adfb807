/*
 * Logging: stderr lines, journald priority prefixes when stderr is the
 * journal, protocol trace with secrets masked here and nowhere else, and
 * every message escaped and length-capped here and nowhere else; lines
 * written by a thread of their own once the loop runs (log_async()).
 */
#include <sys/stat.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "log.h"
#include "nicer.h"

/* syslog(3) priorities, as journald reads them from a "<N>" prefix. */
enum log_prio {
	PRIO_ERR = 3,
	PRIO_WARNING = 4,
	PRIO_NOTICE = 5,
	PRIO_INFO = 6,
	PRIO_DEBUG = 7,
};

static int log_trace;
static bool log_verb;
static bool log_quieter;
static bool log_journal;
static void (*log_before)(void *);
static void *log_before_arg;

/*
 * A whole line: the prefix, "account=" and its name (at most
 * CONF_NAME_MAX), the message, the errno text.
 */
#define LOG_LINE_MAX (LOG_MSG_MAX + 512)

/*
 * After log_async(): lines go through a bounded queue to a thread of
 * their own. Standard error may be a file on a disk busy with others'
 * writes, or the journal's socket while journald is stuck; a write there
 * would hold the event loop, and every session, for as long as it waits.
 * What does not fit in the queue is dropped and counted, and the count is
 * written once there is room again: a blocked standard error costs lines,
 * never a poll. Two buffers: the writer writes one while lines fill the
 * other.
 */
#define LOG_QUEUE_BYTES (256 * 1024)
/* How long the exit waits for queued lines to be written. */
#define LOG_DRAIN_SECS 5

static struct {
	pthread_mutex_t mu;
	/*
	 * Lines or a count to write, posted once while the writer waits. Not
	 * a condition variable: glibc's pthread_cond_signal() may wait for
	 * an earlier-woken thread to have run, and hold the loop behind the
	 * writer's turn on a busy CPU; sem_post() never waits.
	 */
	sem_t wake;
	sem_t ready;	     /* the writer is named and nicer */
	pthread_cond_t idle; /* all written */
	char *fill, *out;    /* LOG_QUEUE_BYTES each */
	size_t nfill;
	unsigned long dropped;
	bool on;      /* log_async() started the writer */
	bool busy;    /* the writer is writing */
	bool waiting; /* the writer waits for a post of WAKE */
} lq = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .idle = PTHREAD_COND_INITIALIZER,
};

static void log_emit(enum log_prio prio, const char *acct, const char *fmt,
    va_list ap, const char *suffix) __attribute__((format(printf, 3, 0)));

/*
 * stderr is the journal when JOURNAL_STREAM names its device and inode
 * (systemd.exec(5)); only then are "<N>" prefixes understood.
 */
static bool
stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
		return false;
	if (fstat(2, &st) == -1)
		return false;
	return (unsigned long long)st.st_dev == dev &&
	       (unsigned long long)st.st_ino == ino;
}

void
log_before_line(void (*fn)(void *arg), void *arg)
{
	log_before = fn;
	log_before_arg = arg;
}

static void
before_line(void)
{
	if (log_before != NULL)
		log_before(log_before_arg);
}

void
log_init(int trace, bool verbose)
{
	log_trace = trace;
	log_verb = verbose;
	log_journal = stderr_is_journal();
}

void
log_quiet(bool quiet)
{
	log_quieter = quiet;
}

/*
 * Printable ASCII only, and nothing above it: bytes 0x80-0x9F are the C1
 * controls, and 0x9B (CSI) starts an escape sequence on terminals that
 * honour 8-bit controls, as 0x1B '[' does on all. Letting UTF-8 through
 * would mean validating it, and a viewer that decodes it otherwise (as
 * Latin-1, say) still meets C1 bytes. POP3 replies are ASCII unless UTF8
 * (RFC 6856) is sent, which this client never does, so escaping every
 * byte >= 0x7F costs only the looks of 8-bit headers in --list.
 */
static size_t
escaped_len(unsigned char c)
{
	if (c == '\\')
		return 2;
	return c >= 0x20 && c <= 0x7e ? 1 : 4;
}

/*
 * log_escape() when the caller holds only the first SRCLEN bytes of a
 * source TOTAL bytes long (a message vsnprintf() cut): the cut marker
 * counts what is missing from TOTAL.
 */
static size_t
escape_cut(
    char *dst, size_t dstlen, const char *src, size_t srclen, size_t total)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0, need = 0, room = dstlen - 1;
	int mark = 0;
	unsigned char c;

	for (i = 0; i < srclen && need <= room; i++)
		need += escaped_len((unsigned char)src[i]);
	if (need > room || total > srclen) {
		/* The widest marker: fewer than TOTAL bytes are ever cut. */
		mark = snprintf(NULL, 0, "... (%zu bytes cut)", total);
		room = (size_t)mark < room ? room - (size_t)mark : 0;
	}
	for (i = 0; i < srclen; i++) {
		c = (unsigned char)src[i];
		if (o + escaped_len(c) > room)
			break;
		if (c == '\\') {
			dst[o++] = '\\';
			dst[o++] = '\\';
		} else if (escaped_len(c) == 1) {
			dst[o++] = (char)c;
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[c >> 4];
			dst[o++] = hex[c & 0xf];
		}
	}
	if (mark > 0) {
		mark = snprintf(
		    dst + o, dstlen - o, "... (%zu bytes cut)", total - i);
		o += (size_t)mark < dstlen - o ? (size_t)mark : dstlen - o - 1;
	}
	dst[o] = '\0';
	return o;
}

size_t
log_escape(char *dst, size_t dstlen, const char *src, size_t srclen)
{
	return escape_cut(dst, dstlen, src, srclen, srclen);
}

/* All of BUF to standard error, waiting as long as it takes. */
static void
write_all(const char *buf, size_t n)
{
	struct pollfd pfd = {.fd = 2, .events = POLLOUT};
	ssize_t w;

	while (n > 0) {
		if ((w = write(2, buf, n)) > 0) {
			buf += w;
			n -= (size_t)w;
		} else if (w == -1 && errno == EAGAIN) {
			/* Someone made it non-blocking: wait here, not spin. */
			(void)poll(&pfd, 1, -1);
		} else if (w == -1 && errno != EINTR) {
			return; /* nowhere to say so */
		}
	}
}

static void *
log_writer(void *arg)
{
	char note[160], *buf;
	unsigned long dropped;
	size_t n;
	int k;

	(void)arg;
	/* Lines wait for standard error, not for the CPU: the loop first. */
	name_thread("popfetchd-log");
	(void)nicer_thread();
	sem_post(&lq.ready);
	pthread_mutex_lock(&lq.mu);
	for (;;) {
		while (lq.nfill == 0 && lq.dropped == 0) {
			lq.busy = false;
			lq.waiting = true;
			pthread_cond_broadcast(&lq.idle);
			pthread_mutex_unlock(&lq.mu);
			while (sem_wait(&lq.wake) == -1 && errno == EINTR)
				;
			pthread_mutex_lock(&lq.mu);
		}
		lq.busy = true;
		buf = lq.fill;
		lq.fill = lq.out;
		lq.out = buf;
		n = lq.nfill;
		dropped = lq.dropped;
		lq.nfill = 0;
		lq.dropped = 0;
		pthread_mutex_unlock(&lq.mu);
		write_all(buf, n);
		/* Every line dropped came after those just written. */
		if (dropped > 0) {
			k = snprintf(note, sizeof(note),
			    "%s%lu log lines dropped: standard error did not take them in time\n",
			    log_journal ? "<4>" : "", dropped);
			write_all(note, (size_t)k);
		}
		pthread_mutex_lock(&lq.mu);
	}
	return NULL;
}

void
log_async(void)
{
	pthread_attr_t attr;
	pthread_t t;
	sigset_t all, old;
	int rc;

	/* A terminal may show a progress line that logging takes off. */
	if (lq.on || isatty(2))
		return;
	if ((lq.fill = malloc(LOG_QUEUE_BYTES)) == NULL ||
	    (lq.out = malloc(LOG_QUEUE_BYTES)) == NULL) {
		free(lq.fill);
		lq.fill = NULL;
		return;
	}
	sem_init(&lq.wake, 0, 0);
	sem_init(&lq.ready, 0, 0);
	/* The loop thread takes the signals, not this one. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	rc = pthread_create(&t, &attr, log_writer, NULL);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		free(lq.fill);
		free(lq.out);
		lq.fill = lq.out = NULL;
		return;
	}
	/* Never seen in its first instants as the loop's copy (worker_new). */
	while (sem_wait(&lq.ready) == -1 && errno == EINTR)
		;
	lq.on = true;
	atexit(log_flush);
}

void
log_flush(void)
{
	struct timespec until;

	if (!lq.on) {
		fflush(stderr);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += LOG_DRAIN_SECS;
	pthread_mutex_lock(&lq.mu);
	while (lq.nfill > 0 || lq.dropped > 0 || lq.busy)
		if (pthread_cond_timedwait(&lq.idle, &lq.mu, &until) ==
		    ETIMEDOUT)
			break;
	pthread_mutex_unlock(&lq.mu);
}

/* LINE (LEN bytes, no newline: added here) to standard error. */
static void
emit_line(const char *line, size_t len)
{
	bool post;

	if (!lq.on) {
		before_line();
		fprintf(stderr, "%.*s\n", (int)len, line);
		return;
	}
	pthread_mutex_lock(&lq.mu);
	if (LOG_QUEUE_BYTES - lq.nfill < len + 1) {
		lq.dropped++;
	} else {
		memcpy(lq.fill + lq.nfill, line, len);
		lq.fill[lq.nfill + len] = '\n';
		lq.nfill += len + 1;
	}
	post = lq.waiting;
	lq.waiting = false;
	pthread_mutex_unlock(&lq.mu);
	if (post)
		sem_post(&lq.wake);
}

/* Formats a line into BUF (LOG_LINE_MAX bytes) and emits it. */
static void emit_fmt(char *buf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
emit_fmt(char *buf, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, LOG_LINE_MAX, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	emit_line(buf, (size_t)n < LOG_LINE_MAX ? (size_t)n : LOG_LINE_MAX - 1);
}

/*
 * The whole formatted message is escaped, our own words with the server's:
 * our format strings hold no control characters, so this changes nothing
 * of ours, and no caller can forget to escape an argument.
 */
static void
log_emit(enum log_prio prio, const char *acct, const char *fmt, va_list ap,
    const char *suffix)
{
	/* Escaping never shortens: LOG_MSG_MAX bytes of input are enough. */
	char raw[LOG_MSG_MAX + 1], msg[LOG_MSG_MAX + 1], line[LOG_LINE_MAX];
	char prefix[8] = "";
	int n;

	if ((n = vsnprintf(raw, sizeof(raw), fmt, ap)) < 0) {
		raw[0] = '\0';
		n = 0;
	}
	escape_cut(msg, sizeof(msg), raw,
	    (size_t)n < sizeof(raw) ? (size_t)n : sizeof(raw) - 1, (size_t)n);
	if (log_journal)
		snprintf(prefix, sizeof(prefix), "<%d>", (int)prio);
	if (acct != NULL)
		emit_fmt(line, "%saccount=%s %s%s%s", prefix, acct, msg,
		    suffix != NULL ? ": " : "", suffix != NULL ? suffix : "");
	else
		emit_fmt(line, "%s%s%s%s", prefix, msg,
		    suffix != NULL ? ": " : "", suffix != NULL ? suffix : "");
}

void
log_warn(const char *acct, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_emit(PRIO_WARNING, acct, fmt, ap, strerror(saved));
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *acct, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(PRIO_WARNING, acct, fmt, ap, NULL);
	va_end(ap);
}

void
log_notice(const char *acct, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(PRIO_NOTICE, acct, fmt, ap, NULL);
	va_end(ap);
}

void
log_info(const char *acct, const char *fmt, ...)
{
	va_list ap;

	if (log_quieter)
		return;
	va_start(ap, fmt);
	log_emit(PRIO_INFO, acct, fmt, ap, NULL);
	va_end(ap);
}

void
log_debug(const char *acct, const char *fmt, ...)
{
	va_list ap;

	if ((!log_verb && log_trace == 0) || log_quieter)
		return;
	va_start(ap, fmt);
	log_emit(PRIO_DEBUG, acct, fmt, ap, NULL);
	va_end(ap);
}

void
fatal(const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_emit(PRIO_ERR, NULL, fmt, ap, strerror(saved));
	va_end(ap);
	exit(70);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(PRIO_ERR, NULL, fmt, ap, NULL);
	va_end(ap);
	exit(70);
}

/* How many leading words of an outgoing command stay visible. */
static int
visible_words(const char *line, size_t len)
{
	static const struct {
		const char *verb;
		int words;
	} secret[] = {
	    {"PASS", 1}, /* PASS secret */
	    {"RPOP", 1}, /* RPOP secret */
	    {"APOP", 2}, /* APOP user digest */
	    {"AUTH", 2}, /* AUTH mech initial-response */
	};
	size_t i, n = strcspn(line, " ");

	if (n > len)
		n = len;
	for (i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
		if (n == strlen(secret[i].verb) &&
		    strncasecmp(line, secret[i].verb, n) == 0)
			return secret[i].words;
	return -1;
}

void
log_mask(char *buf, size_t bufsz, const char *line, size_t len, bool outgoing,
    bool secret)
{
	static const char mask[] = " ********";
	size_t i, shown = len, o;
	int words = secret ? 0 : outgoing ? visible_words(line, len) : -1;

	/* Shown: up to the space before the first secret word. */
	for (i = 0; i < len && words >= 0; i++) {
		if (words == 0) {
			shown = i;
			break;
		}
		if (line[i] == ' ' && --words == 0) {
			shown = i;
			break;
		}
	}
	if (shown == len) {
		log_escape(buf, bufsz, line, len);
		return;
	}
	o = log_escape(buf, bufsz > sizeof(mask) ? bufsz - sizeof(mask) + 1 : 1,
	    line, shown);
	snprintf(buf + o, bufsz - o, "%s", shown > 0 ? mask : mask + 1);
}

void
log_proto(const char *acct, int level, bool outgoing, const char *line,
    size_t len, bool secret)
{
	char buf[LOG_MSG_MAX + 1], out[LOG_LINE_MAX];

	if (log_trace < level)
		return;
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	log_mask(buf, sizeof(buf), line, len, outgoing, secret);
	emit_fmt(out, "%saccount=%s %s %s", log_journal ? "<7>" : "", acct,
	    outgoing ? ">" : "<", buf);
}

static void
libevent_log(int severity, const char *msg)
{
	if (severity == EVENT_LOG_DEBUG && !log_verb)
		return;
	log_warnx(NULL, "libevent: %s", msg);
}

void
log_libevent(void)
{
	event_set_log_callback(libevent_log);
}
