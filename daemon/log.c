/*
 * Logging: stderr lines, journald priority prefixes when stderr is the
 * journal, protocol trace with secrets masked here and nowhere else.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/event.h>

#include "log.h"

/* syslog(3) priorities, as journald reads them from a "<N>" prefix. */
enum log_prio {
	PRIO_ERR = 3,
	PRIO_WARNING = 4,
	PRIO_INFO = 6,
	PRIO_DEBUG = 7,
};

static int log_trace;
static bool log_verb;
static bool log_journal;

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
log_init(int trace, bool verbose)
{
	log_trace = trace;
	log_verb = verbose;
	log_journal = stderr_is_journal();
}

int
log_trace_level(void)
{
	return log_trace;
}

bool
log_verbose(void)
{
	return log_verb;
}

static void
log_emit(enum log_prio prio, const char *acct, const char *fmt, va_list ap,
    const char *suffix)
{
	char msg[2048];
	char prefix[8] = "";

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (log_journal)
		snprintf(prefix, sizeof(prefix), "<%d>", (int)prio);
	if (acct != NULL)
		fprintf(stderr, "%saccount=%s %s%s%s\n", prefix, acct, msg,
		    suffix != NULL ? ": " : "", suffix != NULL ? suffix : "");
	else
		fprintf(stderr, "%s%s%s%s\n", prefix, msg,
		    suffix != NULL ? ": " : "", suffix != NULL ? suffix : "");
}

void
log_warn(const char *acct, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;

	va_start(ap, fmt);
	log_emit(PRIO_ERR, acct, fmt, ap, strerror(saved));
	va_end(ap);
	errno = saved;
}

void
log_warnx(const char *acct, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(PRIO_ERR, acct, fmt, ap, NULL);
	va_end(ap);
}

void
log_info(const char *acct, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_emit(PRIO_INFO, acct, fmt, ap, NULL);
	va_end(ap);
}

void
log_debug(const char *acct, const char *fmt, ...)
{
	va_list ap;

	if (!log_verb && log_trace == 0)
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
	size_t i, o = 0;
	int words = secret ? 0 : outgoing ? visible_words(line, len) : -1;

	for (i = 0; i < len && o + 1 < bufsz; i++) {
		if (line[i] == ' ' && words > 0)
			words--;
		if (words == 0) {
			snprintf(
			    buf + o, bufsz - o, "%s********", i > 0 ? " " : "");
			return;
		}
		buf[o++] = isprint((unsigned char)line[i]) ? line[i] : '?';
	}
	buf[o] = '\0';
}

void
log_proto(const char *acct, int level, bool outgoing, const char *line,
    size_t len, bool secret)
{
	char buf[256];

	if (log_trace < level)
		return;
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	log_mask(buf, sizeof(buf), line, len, outgoing, secret);
	fprintf(stderr, "%saccount=%s %s %s\n", log_journal ? "<7>" : "", acct,
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
