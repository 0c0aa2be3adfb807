/* --serverinfo and --list: a probing session, printed. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "backoff.h"
#include "conf.h"
#include "log.h"
#include "net.h"
#include "probe.h"
#include "progress.h"
#include "secret.h"

struct probe {
	struct event_base *base;
	const struct account *a;
	struct session *s;
	enum session_class cls;
	bool listed_header;
};

/* S escaped into BUF (LOG_MSG_MAX + 1 bytes): the server chose it. */
static const char *
esc(char *buf, const char *s)
{
	log_escape(buf, LOG_MSG_MAX + 1, s, strlen(s));
	return buf;
}

static void
print_info(void *arg, const struct session_info *si)
{
	struct probe *p = arg;
	char a[LOG_MSG_MAX + 1], b[LOG_MSG_MAX + 1], c[LOG_MSG_MAX + 1],
	    d[LOG_MSG_MAX + 1];

	switch (si->kind) {
	case SI_GREETING:
		printf("greeting:     %s\n", esc(a, si->text));
		break;
	case SI_TLS:
		printf("tls:          %s\n", esc(a, si->text));
		/* A whole line of the configuration, to paste as it is. */
		if (si->pin[0] != '\0')
			printf("pin:          tls_pins = [\"%s\"];\n",
			    esc(a, si->pin));
		break;
	case SI_CERT:
		printf(
		    "certificate:  #%lu %s\n", si->msgno, esc(a, si->subject));
		printf("  issuer:     %s\n", esc(a, si->issuer));
		printf("  valid:      %s to %s\n", esc(b, si->not_before),
		    esc(c, si->not_after));
		break;
	case SI_CAPA:
		printf("capability:   %s%s\n", esc(a, si->text),
		    si->before_tls ? " (before TLS)" : "");
		break;
	case SI_NOLOGIN:
		printf(
		    "login:        skipped, no secret: %s\n", esc(a, si->text));
		break;
	case SI_LOGIN:
		printf("logged in:    %s\n", esc(a, si->text));
		break;
	case SI_STAT:
		printf("mailbox:      %lu messages, %llu bytes\n", si->count,
		    (unsigned long long)si->size);
		break;
	case SI_MESSAGE:
		if (!p->listed_header) {
			printf("%6s %10s  %-20s  %s | %s | %s\n", "#", "size",
			    "uid", "from", "date", "subject");
			p->listed_header = true;
		}
		printf("%6lu %10llu  %-20s  %s | %s | %s\n", si->msgno,
		    (unsigned long long)si->size,
		    si->uid[0] != '\0' ? esc(a, si->uid) : "-",
		    esc(b, si->from), esc(c, si->date), esc(d, si->subj));
		break;
	}
}

static void
probe_done(void *arg, enum session_class cls, const struct session_stats *st,
    const char *msg)
{
	struct probe *p = arg;

	p->cls = cls;
	event_base_loopexit(p->base, NULL);
}

/* The --list session, for the progress display. */
static size_t
probe_progress(void *arg, struct progress_item *items, size_t max)
{
	const struct probe *p = arg;

	if (p->s == NULL || max == 0)
		return 0;
	items[0].name = p->a->name;
	session_progress(p->s, &items[0].sp);
	return 1;
}

/*
 * --list shows its progress on a terminal when its listing goes
 * elsewhere (a file, a pipe): on the terminal itself the lines coming in
 * are the progress.
 */
static struct progress *
probe_progress_begin(struct probe *p, enum session_mode mode)
{
	if (mode != SESSION_LIST || !progress_wanted(STDERR_FILENO) ||
	    isatty(STDOUT_FILENO))
		return NULL;
	return progress_new(p->base, STDERR_FILENO, probe_progress, p);
}

int
probe_run(
    const struct conf *conf, const struct account *a, enum session_mode mode)
{
	struct probe p = {.a = a, .cls = SC_OK};
	struct progress *prog;
	struct evdns_base *dns;
	char err[256];

	if ((p.base = event_base_new()) == NULL)
		fatalx("cannot set up the event loop");
	if ((dns = net_dns_new(p.base, err, sizeof(err))) == NULL)
		fatalx("cannot set up name resolution");
	if (err[0] != '\0')
		log_warnx(NULL, "resolver: %s", err);
	p.s = session_start_mode(
	    p.base, dns, conf, a, mode, print_info, probe_done, &p);
	if (p.s == NULL)
		fatalx("out of memory");
	printf("account:      %s (%s:%u, tls=%s)\n", a->name, a->host, a->port,
	    conf_tls_name(a->tls));
	prog = probe_progress_begin(&p, mode);
	event_base_dispatch(p.base);
	progress_free(&prog);
	while (
	    secret_detached() > 0 && event_base_loop(p.base, EVLOOP_ONCE) == 0)
		;
	fflush(stdout);
	session_free(&p.s);
	evdns_base_free(dns, 0);
	event_base_free(p.base);
	return backoff_exit_status(p.cls);
}
