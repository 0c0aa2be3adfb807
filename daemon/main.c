/*
 * popfetchd: command line, start-up order, signals, mode dispatch.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "conf.h"
#include "log.h"
#include "sched.h"

#define MAIN_ONLY_MAX 256

struct options {
	const char *config;
	bool once, check, verbose;
	int trace;
	char *only[MAIN_ONLY_MAX];
	size_t nonly;
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: popfetchd [-c FILE] [--once] [-a NAME]... [-d LEVEL] [-v]\n"
	    "       popfetchd --check-config [-c FILE]\n"
	    "       popfetchd --version | --help\n"
	    "\n"
	    "  -c, --config FILE   configuration file (default %s)\n"
	    "      --once          poll each account once, then exit\n"
	    "  -a, --account NAME  only this account (repeatable)\n"
	    "  -d, --debug LEVEL   protocol trace: 1 commands and replies, 2 "
	    "every line\n"
	    "  -v, --verbose       more log lines\n"
	    "      --check-config  validate the configuration and list the "
	    "accounts\n",
	    CONF_DEFAULT_PATH);
}

static int
parse_args(int argc, char **argv, struct options *o)
{
	enum { OPT_ONCE = 256, OPT_CHECK, OPT_VERSION, OPT_HELP };
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"once", no_argument, NULL, OPT_ONCE},
	    {"account", required_argument, NULL, 'a'},
	    {"debug", required_argument, NULL, 'd'},
	    {"verbose", no_argument, NULL, 'v'},
	    {"check-config", no_argument, NULL, OPT_CHECK},
	    {"version", no_argument, NULL, OPT_VERSION},
	    {"help", no_argument, NULL, OPT_HELP},
	    {NULL, 0, NULL, 0},
	};
	int c;

	o->config = CONF_DEFAULT_PATH;
	while (
	    (c = getopt_long(argc, argv, "c:a:d:vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			o->config = optarg;
			break;
		case 'a':
			if (o->nonly == MAIN_ONLY_MAX) {
				fprintf(stderr, "popfetchd: too many -a\n");
				return EX_USAGE;
			}
			o->only[o->nonly++] = optarg;
			break;
		case 'd':
			if (strcmp(optarg, "0") != 0 &&
			    strcmp(optarg, "1") != 0 &&
			    strcmp(optarg, "2") != 0) {
				fprintf(
				    stderr, "popfetchd: -d takes 0, 1 or 2\n");
				return EX_USAGE;
			}
			o->trace = optarg[0] - '0';
			break;
		case 'v':
			o->verbose = true;
			break;
		case OPT_ONCE:
			o->once = true;
			break;
		case OPT_CHECK:
			o->check = true;
			break;
		case OPT_VERSION:
			printf("popfetchd %s\n", POPFETCHD_VERSION);
			exit(EX_OK);
		case 'h':
		case OPT_HELP:
			usage(stdout);
			exit(EX_OK);
		default:
			usage(stderr);
			return EX_USAGE;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return EX_USAGE;
	}
	return EX_OK;
}

static void
report_conf_error(void *arg, const char *msg)
{
	fprintf(stderr, "popfetchd: %s\n", msg);
}

static int
check_config(const struct conf *conf)
{
	const struct account *a;
	size_t i;

	for (i = 0; i < conf->naccounts; i++) {
		a = &conf->accounts[i];
		printf("%s %s:%u tls=%s auth=%s maildir=%s keep=%s\n", a->name,
		    a->host, a->port, conf_tls_name(a->tls),
		    conf_auth_name(a->auth), a->maildir,
		    a->keep ? "true" : "false");
	}
	return EX_OK;
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct sched *sc = arg;

	switch (sig) {
	case SIGTERM:
	case SIGINT:
		log_info(NULL, "signal %d: finishing running polls", (int)sig);
		sched_stop(sc);
		break;
	case SIGHUP:
		log_info(NULL, "SIGHUP: configuration reload is not supported "
			       "by this version; restart to apply changes");
		break;
	}
}

static int
run(const struct conf *conf, const struct options *o)
{
	static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
	struct event *sigev[sizeof(sigs) / sizeof(sigs[0])];
	struct event_base *base;
	struct evdns_base *dns;
	struct sched *sc;
	size_t i;
	int status;

	if ((base = event_base_new()) == NULL)
		fatalx("cannot create the event loop");
	if ((dns = evdns_base_new(
		 base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
			   EVDNS_BASE_DISABLE_WHEN_INACTIVE)) == NULL)
		fatalx("cannot set up name resolution");
	if ((sc = sched_new(base, dns, conf, o->once, o->only, o->nonly)) ==
	    NULL)
		fatalx("out of memory");
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		sigev[i] = evsignal_new(base, sigs[i], on_signal, sc);
		if (sigev[i] == NULL || evsignal_add(sigev[i], NULL) == -1)
			fatalx("cannot watch signals");
	}
	sched_start(sc);
	event_base_dispatch(base);
	status = sched_exit_status(sc);
	sched_free(&sc);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		event_free(sigev[i]);
	evdns_base_free(dns, 0);
	event_base_free(base);
	return o->once ? status : EX_OK;
}

int
main(int argc, char **argv)
{
	struct options o = {0};
	struct conf *conf;
	size_t i;
	int r;

	if ((r = parse_args(argc, argv, &o)) != EX_OK)
		return r;
	log_init(o.trace, o.verbose);
	log_libevent();
	signal(SIGPIPE, SIG_IGN);
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());
	if ((conf = conf_load(o.config, report_conf_error, NULL)) == NULL)
		return EX_CONFIG;
	for (i = 0; i < o.nonly; i++)
		if (conf_account(conf, o.only[i]) == NULL) {
			fprintf(stderr, "popfetchd: %s: no account \"%s\"\n",
			    o.config, o.only[i]);
			conf_free(&conf);
			return EX_CONFIG;
		}
	r = o.check ? check_config(conf) : run(conf, &o);
	conf_free(&conf);
	return r;
}
