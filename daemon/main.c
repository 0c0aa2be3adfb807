/*
 * popfetchd: command line, start-up order, signals, mode dispatch.
 */
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "authorize.h"
#include "check.h"
#include "conf.h"
#include "confpath.h"
#include "log.h"
#include "loopstat.h"
#include "migrate.h"
#include "net.h"
#include "notify.h"
#include "oauth2.h"
#include "probe.h"
#include "progress.h"
#include "reload.h"
#include "sched.h"
#include "session.h"
#include "shard.h"
#include "statemove.h"
#include "status.h"
#include "tls.h"
#include "tlscache.h"
#include "secret.h"

#define MAIN_ONLY_MAX 256
/*
 * How long the loop may still run after the last poll, to reap the
 * password_command children killed on the way (secret.h): moments, in
 * practice.
 */
#define MAIN_REAP_SECS 5
/*
 * Descriptors one poll may hold at once: its socket, the state file, its
 * lock and directory, the Maildir file and directory, and the pipes and
 * pidfd of a password_command. Generous, as running short means failed
 * polls.
 */
#define MAIN_FDS_PER_POLL 8
/* The rest: standard streams, the loop, signals, resolver, notify socket. */
#define MAIN_FDS_BASE 64

struct options {
	const char *config;
	const char *config_from; /* why that file, for --check-config */
	char config_buf[PATH_MAX];
	const char *probe;     /* account of --serverinfo or --list */
	const char *authorize; /* account of --authorize */
	enum session_mode probe_mode;
	/* The mode options given, in order: more than one is refused. */
	const char *mode, *mode2;
	bool once, check, verbose;
	bool quiet, keep;  /* -q, -k */
	char **argv;	   /* as given, to say how to run it as another user */
	bool status, json; /* --status, --json */
	int trace;
	char *only[MAIN_ONLY_MAX];
	size_t nonly;
	/* --import-uids and --convert: FORMAT:PATH */
	bool import, convert;
	struct migrate_import imp;
	struct shard shard;   /* --shard K/N; n 0: all accounts */
	size_t file_accounts; /* accounts in the file, before --shard */
	const char *move;     /* account of --export-state or --import-state */
	bool move_in;	      /* --import-state */
	bool accounts;	      /* --accounts */
};

static void
usage(FILE *f)
{
	fprintf(f,
	    "usage: popfetchd [-c FILE] [--shard K/N] [--once] [-a NAME]... [-d LEVEL]\n"
	    "                 [-v] [-q] [-k]\n"
	    "       popfetchd --check-config | --accounts [-c FILE] [--shard K/N] [-q]\n"
	    "       popfetchd --export-state NAME | --import-state NAME [-c FILE]\n"
	    "       popfetchd --serverinfo NAME | --list NAME [-c FILE]\n"
	    "       popfetchd --import-uids FORMAT:PATH [-c FILE] [-a NAME]... [--dry-run]\n"
	    "                 [--match-host HOST --match-user USER]\n"
	    "       popfetchd --convert FORMAT:PATH\n"
	    "       popfetchd --status [-a NAME]... [--json]\n"
	    "       popfetchd --authorize NAME [-c FILE]\n"
	    "       popfetchd -V | --version | --help\n"
	    "\n"
	    "  -c, --config FILE   configuration file (default %s)\n"
	    "      --once          poll each account once, then exit\n"
	    "  -a, --account NAME  only this account (repeatable)\n"
	    "  -d, --debug LEVEL   protocol trace: 1 commands and replies, 2 every line\n"
	    "  -v, --verbose       more log lines\n"
	    "  -q, --quiet         no lines unless mail was fetched or something failed\n"
	    "  -k, --keep          this run leaves every message on the server\n"
	    "      --shard K/N     poll only this instance's share of the accounts:\n"
	    "                      instance K (0 to N-1) of N with the same file\n"
	    "      --accounts      the names of the accounts this instance polls\n"
	    "      --export-state NAME  the account's state to standard output;\n"
	    "                      this instance stops polling it\n"
	    "      --import-state NAME  the account's state from standard input\n"
	    "      --check-config  validate the configuration and list the accounts\n"
	    "      --serverinfo NAME  greeting, TLS, certificates, pin, capabilities;\n"
	    "                      login and STAT when the password is there\n"
	    "      --list NAME     the messages on the server (changes nothing)\n"
	    "      --import-uids FORMAT:PATH  take over what another fetcher fetched:\n"
	    "                      FORMAT mpop (its UIDLS file), fetchmail (.fetchids)\n"
	    "                      or getmail (an oldmail-* file)\n"
	    "      --dry-run       with --import-uids: print what would be imported\n"
	    "      --match-host HOST, --match-user USER  with --import-uids and one -a:\n"
	    "                      the names the file has for that account's mailbox\n"
	    "      --convert FORMAT:PATH  print a popfetchd configuration made from an\n"
	    "                      mpoprc, a fetchmailrc or a getmailrc\n"
	    "      --status        what the running daemon does, per account\n"
	    "      --json          --status as JSON, for programs\n"
	    "      --authorize NAME  one-time OAuth2 authorisation of the account\n"
	    "\n"
	    "Signals: TERM/INT stop gracefully, HUP reloads the configuration,\n"
	    "USR1 polls every account now. See popfetchd(8).\n",
	    CONF_DEFAULT_PATH);
}

enum {
	OPT_ONCE = 256,
	OPT_CHECK,
	OPT_SERVERINFO,
	OPT_LIST,
	OPT_STATUS,
	OPT_JSON,
	OPT_AUTHORIZE,
	OPT_HELP,
	OPT_IMPORT,
	OPT_DRY_RUN,
	OPT_MATCH_HOST,
	OPT_MATCH_USER,
	OPT_CONVERT,
	OPT_SHARD,
	OPT_ACCOUNTS,
	OPT_EXPORT_STATE,
	OPT_IMPORT_STATE
};

static const struct option longopts[] = {
    {"config", required_argument, NULL, 'c'},
    {"once", no_argument, NULL, OPT_ONCE},
    {"account", required_argument, NULL, 'a'},
    {"debug", required_argument, NULL, 'd'},
    {"verbose", no_argument, NULL, 'v'},
    {"quiet", no_argument, NULL, 'q'},
    {"keep", no_argument, NULL, 'k'},
    {"check-config", no_argument, NULL, OPT_CHECK},
    {"serverinfo", required_argument, NULL, OPT_SERVERINFO},
    {"list", required_argument, NULL, OPT_LIST},
    {"status", no_argument, NULL, OPT_STATUS},
    {"json", no_argument, NULL, OPT_JSON},
    {"authorize", required_argument, NULL, OPT_AUTHORIZE},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, OPT_HELP},
    {"import-uids", required_argument, NULL, OPT_IMPORT},
    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
    {"match-host", required_argument, NULL, OPT_MATCH_HOST},
    {"match-user", required_argument, NULL, OPT_MATCH_USER},
    {"convert", required_argument, NULL, OPT_CONVERT},
    {"shard", required_argument, NULL, OPT_SHARD},
    {"accounts", no_argument, NULL, OPT_ACCOUNTS},
    {"export-state", required_argument, NULL, OPT_EXPORT_STATE},
    {"import-state", required_argument, NULL, OPT_IMPORT_STATE},
    {NULL, 0, NULL, 0},
};

/* FORMAT:PATH of --import-uids or --convert into O->imp. */
static int
take_source(const char *opt, char *arg, struct options *o)
{
	char *colon = strchr(arg, ':');

	if (colon != NULL)
		*colon = '\0';
	if (colon == NULL || colon[1] == '\0' ||
	    migrate_format_parse(arg, &o->imp.fmt) == -1) {
		fprintf(stderr,
		    "popfetchd: %s takes FORMAT:PATH, FORMAT one of mpop, fetchmail, getmail\n",
		    opt);
		return EX_USAGE;
	}
	o->imp.path = colon + 1;
	return EX_OK;
}

/* -a NAME: one more account to poll (or to import into). */
static int
take_account(char *arg, struct options *o)
{
	if (o->nonly == MAIN_ONLY_MAX) {
		fprintf(stderr, "popfetchd: too many -a\n");
		return EX_USAGE;
	}
	o->only[o->nonly++] = arg;
	return EX_OK;
}

/* -d LEVEL: the protocol trace. */
static int
take_debug(const char *arg, struct options *o)
{
	if (strcmp(arg, "0") != 0 && strcmp(arg, "1") != 0 &&
	    strcmp(arg, "2") != 0) {
		fprintf(stderr, "popfetchd: -d takes 0, 1 or 2\n");
		return EX_USAGE;
	}
	o->trace = arg[0] - '0';
	return EX_OK;
}

/* NAME, an option choosing what the run does: one per run. */
static void
take_mode(const char *name, struct options *o)
{
	if (o->mode == NULL)
		o->mode = name;
	else if (o->mode2 == NULL)
		o->mode2 = name;
}

/* The options of switching from another fetcher. */
static int
take_migrate_option(int c, char *arg, struct options *o)
{
	switch (c) {
	case OPT_IMPORT:
		o->import = true;
		take_mode("--import-uids", o);
		return take_source("--import-uids", arg, o);
	case OPT_CONVERT:
		o->convert = true;
		take_mode("--convert", o);
		return take_source("--convert", arg, o);
	case OPT_DRY_RUN:
		o->imp.dry_run = true;
		return EX_OK;
	case OPT_MATCH_HOST:
		o->imp.match_host = arg;
		return EX_OK;
	default: /* OPT_MATCH_USER */
		o->imp.match_user = arg;
		return EX_OK;
	}
}

/* --shard, --accounts, --export-state and --import-state. */
static int
take_shard_option(int c, char *arg, struct options *o)
{
	char err[256];

	switch (c) {
	case OPT_SHARD:
		if (shard_parse(arg, &o->shard, err, sizeof(err)) == 0)
			return EX_OK;
		fprintf(stderr, "popfetchd: %s\n", err);
		return EX_USAGE;
	case OPT_ACCOUNTS:
		o->accounts = true;
		take_mode("--accounts", o);
		return EX_OK;
	default:
		o->move = arg;
		o->move_in = c == OPT_IMPORT_STATE;
		take_mode(o->move_in ? "--import-state" : "--export-state", o);
		return EX_OK;
	}
}

/* The options choosing a mode other than the daemon's. */
static int
take_mode_option(int c, char *arg, struct options *o)
{
	switch (c) {
	case OPT_ONCE:
		o->once = true;
		take_mode("--once", o);
		return EX_OK;
	case OPT_CHECK:
		o->check = true;
		take_mode("--check-config", o);
		return EX_OK;
	case OPT_SERVERINFO:
	case OPT_LIST:
		o->probe = arg;
		o->probe_mode =
		    c == OPT_LIST ? SESSION_LIST : SESSION_SERVERINFO;
		take_mode(c == OPT_LIST ? "--list" : "--serverinfo", o);
		return EX_OK;
	case OPT_STATUS:
		o->status = true;
		take_mode("--status", o);
		return EX_OK;
	default: /* OPT_AUTHORIZE */
		o->authorize = arg;
		take_mode("--authorize", o);
		return EX_OK;
	}
}

/* -v, -q and -k. */
static int
take_flag(int c, struct options *o)
{
	if (c == 'v')
		o->verbose = true;
	else if (c == 'q')
		o->quiet = true;
	else
		o->keep = true;
	return EX_OK;
}

/* Takes option C with its argument ARG: EX_OK, or EX_USAGE. */
static int
take_option(int c, char *arg, struct options *o)
{
	switch (c) {
	case 'c':
		o->config = arg;
		return EX_OK;
	case 'a':
		return take_account(arg, o);
	case 'd':
		return take_debug(arg, o);
	case 'v':
	case 'q':
	case 'k':
		return take_flag(c, o);
	case OPT_ONCE:
	case OPT_CHECK:
	case OPT_SERVERINFO:
	case OPT_LIST:
	case OPT_STATUS:
	case OPT_AUTHORIZE:
		return take_mode_option(c, arg, o);
	case OPT_IMPORT:
	case OPT_CONVERT:
	case OPT_DRY_RUN:
	case OPT_MATCH_HOST:
	case OPT_MATCH_USER:
		return take_migrate_option(c, arg, o);
	case OPT_SHARD:
	case OPT_ACCOUNTS:
	case OPT_EXPORT_STATE:
	case OPT_IMPORT_STATE:
		return take_shard_option(c, arg, o);
	case OPT_JSON:
		o->json = true;
		return EX_OK;
	case 'V':
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

/*
 * Two modes in one run: EX_USAGE, naming them, rather than one of them
 * silently winning.
 */
static int
check_modes(const struct options *o)
{
	const char *m = o->mode != NULL ? o->mode : "the daemon";

	if (o->mode2 != NULL) {
		if (strcmp(o->mode, o->mode2) == 0)
			fprintf(stderr,
			    "popfetchd: %s is given twice: one per run\n",
			    o->mode);
		else
			fprintf(stderr,
			    "popfetchd: %s and %s conflict: one mode per run\n",
			    o->mode, o->mode2);
		return EX_USAGE;
	}
	if (o->keep && o->mode != NULL && !o->once) {
		fprintf(stderr,
		    "popfetchd: -k/--keep goes with --once or the daemon, not %s\n",
		    m);
		return EX_USAGE;
	}
	if (o->quiet && o->mode != NULL && !o->once && !o->check) {
		fprintf(stderr,
		    "popfetchd: -q/--quiet goes with --once, --check-config or the daemon, not %s\n",
		    m);
		return EX_USAGE;
	}
	return EX_OK;
}

/* Options that only make sense together: EX_OK, or EX_USAGE. */
static int
check_combination(const struct options *o)
{
	const char *bad = NULL;

	if (check_modes(o) != EX_OK)
		return EX_USAGE;
	if (!o->import && (o->imp.dry_run || o->imp.match_host != NULL ||
			      o->imp.match_user != NULL))
		bad =
		    "--dry-run, --match-host and --match-user go with --import-uids";
	else if ((o->imp.match_host != NULL || o->imp.match_user != NULL) &&
		 o->nonly != 1)
		bad = "--match-host and --match-user need exactly one -a NAME";
	else if (o->shard.n > 0 &&
		 (o->status || o->convert || o->probe != NULL ||
		     o->authorize != NULL))
		bad =
		    "--shard goes with the daemon, --once, --check-config, --accounts, --export-state, --import-state or --import-uids";
	if (bad == NULL)
		return EX_OK;
	fprintf(stderr, "popfetchd: %s\n", bad);
	return EX_USAGE;
}

/*
 * No -c: a normal user's own file when it is there (confpath.h), else
 * the system's. A per-user file that exists but cannot be read is still
 * the one chosen, so that the error names it.
 */
static void
choose_config(struct options *o)
{
	struct confpath_env env;
	struct stat st;
	const char *from;

	if (o->config != NULL) {
		o->config_from = "-c";
		return;
	}
	confpath_env_get(&env);
	from = confpath_user_config(&env, o->config_buf, sizeof(o->config_buf));
	if (from != NULL &&
	    (stat(o->config_buf, &st) == 0 || errno != ENOENT)) {
		o->config = o->config_buf;
		o->config_from = from;
		return;
	}
	o->config = CONF_DEFAULT_PATH;
	o->config_from = from != NULL
			     ? "the system file, as there is no per-user file"
			     : "the system file";
}

static int
parse_args(int argc, char **argv, struct options *o)
{
	int c, rc;

	o->argv = argv;
	while (
	    (c = getopt_long(argc, argv, "c:a:d:vqkVh", longopts, NULL)) != -1)
		if ((rc = take_option(c, optarg, o)) != EX_OK)
			return rc;
	if (optind != argc || (o->json && !o->status)) {
		usage(stderr);
		return EX_USAGE;
	}
	choose_config(o);
	return check_combination(o);
}

/* popfetchd --status: ask the running daemon. */
static int
status_main(const struct options *o)
{
	char path[108], err[256];

	if (status_socket_path(path, sizeof(path), err, sizeof(err)) == -1) {
		fprintf(stderr, "popfetchd: %s\n", err);
		return EX_UNAVAILABLE;
	}
	return status_client(path, o->json, o->only, o->nonly);
}

static void
report_conf_error(void *arg, const char *msg)
{
	fprintf(stderr, "popfetchd: %s\n", msg);
}
/* Where the account's mail goes, for --check-config's listing. */
static void
print_target(const struct account *a)
{
	switch (a->target) {
	case CONF_TARGET_LMTP:
		printf("lmtp=%s recipient=%s", a->lmtp,
		    a->recipient != NULL ? a->recipient
		    : a->user != NULL	 ? a->user
					 : "-");
		break;
	case CONF_TARGET_MDA:
		printf("mda=\"%s\"", a->mda);
		break;
	default:
		printf("maildir=%s", a->maildir);
		break;
	}
}

/*
 * Every problem the first poll would meet here, then (unless -q) the
 * file, the state directory and one line per account.
 */
static int
check_config(const struct conf *conf, const struct options *o)
{
	const struct account *a;
	size_t i, problems;

	problems = check_conf(conf, report_conf_error, NULL);
	if (problems > 0)
		fprintf(stderr,
		    "popfetchd: %zu problem(s) the first poll would meet (above)\n",
		    problems);
	if (o->quiet)
		return problems > 0 ? EX_CONFIG : EX_OK;
	printf("config: %s (%s)\n", o->config, o->config_from);
	printf("state_dir: %s (%s)\n", conf->state_dir, conf->state_dir_from);
	if (o->shard.n > 0)
		printf("shard: %u/%u, %zu of the file's %zu accounts\n",
		    o->shard.k, o->shard.n, conf->naccounts, o->file_accounts);
	for (i = 0; i < conf->naccounts; i++) {
		a = &conf->accounts[i];
		printf("%s %s:%u tls=%s auth=%s ", a->name, a->host, a->port,
		    conf_tls_name(a->tls), conf_auth_name(a->auth));
		print_target(a);
		printf(" keep=%s\n", a->keep ? "true" : "false");
	}
	return problems > 0 ? EX_CONFIG : EX_OK;
}

/*
 * Every -a (and --export-state/--import-state NAME) must name an account
 * of the file and of this shard; then --shard drops the other shards'
 * accounts. EX_OK or EX_CONFIG.
 */
static int
pick_accounts(struct conf *conf, struct options *o)
{
	const struct account *a;
	const char *name;
	size_t i;

	o->file_accounts = conf->naccounts;
	for (i = 0; i < o->nonly + (o->move != NULL); i++) {
		name = i < o->nonly ? o->only[i] : o->move;
		if ((a = conf_account(conf, name)) == NULL) {
			fprintf(stderr, "popfetchd: %s: no account \"%s\"\n",
			    o->config, name);
			return EX_CONFIG;
		}
		if (!shard_mine(&o->shard, a->name)) {
			fprintf(stderr,
			    "popfetchd: account %s is instance %u/%u's, not this one's (--shard %u/%u)\n",
			    a->name, shard_owner(a->name, o->shard.n),
			    o->shard.n, o->shard.k, o->shard.n);
			return EX_CONFIG;
		}
	}
	shard_select(conf, &o->shard);
	return EX_OK;
}

/* ARG quoted for a shell when it needs it. */
static void
print_shell_word(FILE *f, const char *arg)
{
	const char *p;

	if (arg[0] != '\0' &&
	    strspn(arg, "abcdefghijklmnopqrstuvwxyz"
			"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
			"0123456789-_./=:,@%+") == strlen(arg)) {
		fputs(arg, f);
		return;
	}
	fputc('\'', f);
	for (p = arg; *p != '\0'; p++)
		if (*p == '\'')
			fputs("'\\''", f);
		else
			fputc(*p, f);
	fputc('\'', f);
}

/*
 * Root on another user's state would leave root's lock and state files
 * there, and that user's service would then fail with "Permission
 * denied": refused, with the command that runs it as that user.
 */
static int
refuse_foreign_state(const struct conf *conf, const struct options *o)
{
	char owner[64];
	char **v;

	if (!check_foreign_state(conf, owner, sizeof(owner)))
		return EX_OK;
	fprintf(stderr,
	    "popfetchd: state_dir %s belongs to %s: run as root, popfetchd would leave files there that %s cannot use; run it as %s:\n  runuser -u %s --",
	    conf->state_dir, owner, owner, owner, owner);
	for (v = o->argv; *v != NULL; v++) {
		fputc(' ', stderr);
		print_shell_word(stderr, *v);
	}
	fputc('\n', stderr);
	return EX_USAGE;
}

/*
 * After the load failed: when the file chosen without -c is not there,
 * says where a first one goes. Returns EX_CONFIG.
 */
static int
no_config_hint(const struct options *o)
{
	struct confpath_env env;
	char user[PATH_MAX];

	if (strcmp(o->config_from, "-c") == 0 || access(o->config, F_OK) == 0)
		return EX_CONFIG;
	confpath_env_get(&env);
	if (confpath_user_config(&env, user, sizeof(user)) != NULL)
		fprintf(stderr,
		    "popfetchd: no configuration: write %s (yours) or %s (the system's), or give -c FILE; see popfetchd.conf(5)\n",
		    user, CONF_DEFAULT_PATH);
	else
		fprintf(stderr,
		    "popfetchd: no configuration: write %s or give -c FILE; see popfetchd.conf(5)\n",
		    CONF_DEFAULT_PATH);
	return EX_CONFIG;
}

/*
 * Process memory holds passwords, tokens and mail: a core file would put
 * them on disk, where a crash collector keeps them for anyone allowed to
 * read cores. Not dumpable also means other processes of the same user
 * can no longer ptrace us or read /proc/PID/mem and environ, which is the
 * point for secrets; to debug, start popfetchd under the debugger (a
 * tracer attached before this keeps working) or attach as root.
 */
static void
no_core_dumps(void)
{
	const struct rlimit none = {0, 0};

	if (setrlimit(RLIMIT_CORE, &none) == -1)
		log_warn(NULL, "cannot disable core dumps: setrlimit");
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1)
		log_warn(NULL, "cannot disable core dumps: prctl");
}

/*
 * Makes room for CONF's polls under the open-file limit: raises the soft
 * limit as far as the hard one allows; if that is still too low, lowers
 * the cap of CONF (not frozen yet) to what fits, with one warning, since
 * polls failing with EMFILE midway would be worse than fewer at once.
 */
static void
fit_open_files(struct conf *conf)
{
	struct rlimit rl;
	unsigned long long polls, need, fit;

	polls = conf->max_connections < conf->naccounts ? conf->max_connections
							: conf->naccounts;
	need = polls * MAIN_FDS_PER_POLL + MAIN_FDS_BASE;
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur >= need)
		return;
	rl.rlim_cur = rl.rlim_max >= need ? need : rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur >= need)
		return;
	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		return;
	fit = rl.rlim_cur > MAIN_FDS_BASE + MAIN_FDS_PER_POLL
		  ? (rl.rlim_cur - MAIN_FDS_BASE) / MAIN_FDS_PER_POLL
		  : 1;
	if (fit >= polls)
		return;
	log_warnx(NULL,
	    "warning: open-file limit too low for max_connections: limit=%llu hard_limit=%llu max_connections=%u accounts=%zu needed=%llu using max_connections=%llu; raise LimitNOFILE= to allow more",
	    (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
	    conf->max_connections, conf->naccounts, need, fit);
	conf->max_connections = (unsigned)fit;
}

/* What the signal handlers and the status callback work on. */
struct daemon {
	const struct options *o;
	struct event_base *base;
	struct sched *sc;
	struct notify *nt;
	struct evdns_base *dns;
	struct status_server *srv; /* --status; NULL: not served */
	struct status_metrics *metrics;
	char *metrics_path;
	time_t start;
	struct progress *progress; /* --once on a terminal; NULL: none */
	struct reload *rl;	   /* reads the file for SIGHUP */
	struct loopstat *stall;	   /* the benchmark's loop-stall meter */
	bool reloading;		   /* from SIGHUP to the accounts moved */
	bool reload_again;	   /* another SIGHUP came meanwhile */
};

/* The scheduler's records, for the status socket and the metrics file. */
static void
each_account(void *arg, status_visit_fn visit, void *varg)
{
	struct daemon *d = arg;

	sched_each_account(d->sc, visit, varg);
}

/* --- the progress display of --once ----------------------------------- */

struct progress_fill {
	struct progress_item *items;
	size_t max, n;
};

static void
progress_visit(void *varg, const struct account *a, const struct session *s)
{
	struct progress_fill *f = varg;

	if (f->n < f->max) {
		f->items[f->n].name = a->name;
		session_progress(s, &f->items[f->n].sp);
	}
	f->n++;
}

/* The polls under way, for progress.c. */
static size_t
progress_each(void *arg, struct progress_item *items, size_t max)
{
	struct daemon *d = arg;
	struct progress_fill f = {.items = items, .max = max};

	sched_each_session(d->sc, progress_visit, &f);
	return f.n;
}

/* A --once run shows its polls on a terminal, unless asked not to. */
static void
progress_begin(struct daemon *d)
{
	if (d->o->once && !d->o->quiet && progress_wanted(STDERR_FILENO))
		d->progress = progress_new(d->base, STDERR_FILENO,
		    progress_each, d); /* NULL: no display, nothing worse */
}

/* Serves --status, unless there is nowhere to put its socket. */
static void
status_begin(struct daemon *d)
{
	char path[108], err[256];

	if (status_socket_path(path, sizeof(path), err, sizeof(err)) == -1) {
		log_info(NULL, "status: %s; --status is not served", err);
		return;
	}
	d->srv = status_server_new(
	    d->base, path, each_account, d, d->start, err, sizeof(err));
	if (d->srv == NULL)
		log_warnx(NULL, "status: %s; --status is not served", err);
	else
		log_debug(NULL, "status socket=%s", path);
}

/*
 * The metrics of PATH: one of several instances of a file writes its own
 * file beside it, "popfetchd.prom" becoming "popfetchd.shard-2-of-4.prom"
 * (a collector of *.prom files reads them all), with the shard as a
 * label of the daemon's own series.
 */
static struct status_metrics *
metrics_for_shard(struct daemon *d, const char *path)
{
	const struct shard *sh = &d->o->shard;
	const char *dot, *slash = strrchr(path, '/');
	struct status_metrics *m;
	char *own, label[32];
	int len;

	if (sh->n == 0)
		return status_metrics_new(
		    d->base, path, each_account, d, d->start, NULL);
	dot = strrchr(path, '.');
	if (dot == NULL || (slash != NULL && dot < slash))
		dot = path + strlen(path);
	len = (int)(dot - path);
	snprintf(label, sizeof(label), "%u/%u", sh->k, sh->n);
	if (asprintf(&own, "%.*s.shard-%u-of-%u%s", len, path, sh->k, sh->n,
		dot) == -1)
		fatalx("out of memory");
	m = status_metrics_new(d->base, own, each_account, d, d->start, label);
	free(own);
	return m;
}

/* Writes the metrics to PATH from now on (NULL: no more). */
static void
metrics_to(struct daemon *d, const char *path)
{
	if (path != NULL && d->metrics_path != NULL &&
	    strcmp(path, d->metrics_path) == 0)
		return;
	status_metrics_free(&d->metrics);
	free(d->metrics_path);
	d->metrics_path = NULL;
	if (path == NULL)
		return;
	if ((d->metrics_path = strdup(path)) == NULL)
		fatalx("out of memory");
	d->metrics = metrics_for_shard(d, path);
}

/*
 * -k: every account keeps its mail on the server for this run, whatever
 * its keep and delete_after_days say (a safe first run).
 */
static void
keep_all(struct conf *conf)
{
	conf_keep_all(conf);
	log_info(NULL, "-k: every account keeps its mail on the server");
}

static void reload(struct daemon *d);

/* The reload is over, done or not: the next one may start. */
static void
reload_over(struct daemon *d)
{
	d->reloading = false;
	loopstat_window(d->stall, "reload");
	/* Not after STOPPING=1: a stop came while the file was read. */
	if (!sched_stopping(d->sc))
		notify_ready(d->nt);
	if (d->reload_again && !sched_stopping(d->sc)) {
		d->reload_again = false;
		reload(d);
	}
}

/* The accounts are on the new configuration. */
static void
reload_applied(void *arg)
{
	struct daemon *d = arg;

	metrics_to(d, sched_conf(d->sc)->metrics_file);
	/* The old configuration and the parse left memory free. */
	reload_trim(d->rl);
	reload_over(d);
}

/*
 * The file is read (off the loop): a valid configuration replaces the
 * running one, account by account over the next loop turns; an invalid
 * one is reported, every error with file:line, and the old one stays.
 */
static void
reload_parsed(void *arg, struct conf *conf, struct sched_change *ch,
    char *const *msgs, size_t n)
{
	struct daemon *d = arg;
	size_t i;

	for (i = 0; i < n; i++)
		log_warnx(NULL, "reload: %s", msgs[i]);
	if (conf == NULL) {
		log_warnx(NULL,
		    "reload failed: %s has errors (above); still running on the configuration loaded before",
		    d->o->config);
		reload_over(d);
		return;
	}
	if (sched_stopping(d->sc)) {
		log_info(NULL, "reload dropped: stopping");
		sched_change_free(&ch);
		conf_free(&conf);
		reload_over(d);
		return;
	}
	if (d->o->keep)
		log_info(
		    NULL, "-k: every account keeps its mail on the server");
	/* CA files and client certificates are read afresh. */
	tls_ctx_forget();
	fit_open_files(conf);
	sched_reload_apply(d->sc, conf, ch, reload_applied, d);
}

/* SIGHUP: the file is read on a thread; the loop goes on meanwhile. */
static void
reload(struct daemon *d)
{
	const struct reload_pick pick = {.only = d->o->only,
	    .nonly = d->o->nonly,
	    .keep = d->o->keep,
	    .shard = d->o->shard};
	char err[256];

	if (d->reloading) {
		d->reload_again = true;
		log_info(NULL, "reload under way; another follows it");
		return;
	}
	d->reloading = true;
	loopstat_window(d->stall, "before-reload");
	notify_reloading(d->nt);
	log_info(NULL, "reloading file=%s", d->o->config);
	/* A changed network (VPN, DHCP) changes resolv.conf without a word. */
	if (net_dns_reload(d->dns, err, sizeof(err)) == -1)
		log_warnx(NULL, "reload: resolver: %s", err);
	if (reload_start(d->rl, d->o->config, sched_conf(d->sc), &pick,
		reload_parsed, d) == -1)
		fatalx("reload: a reload already under way");
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct daemon *d = arg;

	switch (sig) {
	case SIGTERM:
	case SIGINT:
		if (!sched_stopping(d->sc)) {
			log_info(NULL,
			    "signal=%s stopping; send it again to stop at once",
			    sig == SIGTERM ? "TERM" : "INT");
			notify_stopping(d->nt);
		}
		sched_stop(d->sc);
		break;
	case SIGHUP:
		if (d->o->once || sched_stopping(d->sc))
			log_info(NULL, "signal=HUP ignored%s",
			    d->o->once ? " by --once" : " while stopping");
		else
			reload(d);
		break;
	case SIGUSR1:
		if (d->o->once)
			log_info(NULL, "signal=USR1 ignored by --once");
		else
			sched_poll_now(d->sc);
		break;
	}
}

/* The scheduler's counts changed: tell the service manager. */
static void
on_change(void *arg)
{
	struct daemon *d = arg;
	char status[512];

	status_metrics_changed(d->metrics);
	if (!notify_enabled(d->nt))
		return;
	sched_status(d->sc, status, sizeof(status));
	notify_status(d->nt, status);
}

static void
reap_timeout(evutil_socket_t fd, short what, void *arg)
{
	*(bool *)arg = true;
}

/* Runs the loop until killed password_commands are reaped (secret.h). */
static void
reap_secrets(struct event_base *base)
{
	struct timeval limit = {MAIN_REAP_SECS, 0};
	struct event *ev;
	bool expired = false;

	if (secret_detached() == 0)
		return;
	if ((ev = evtimer_new(base, reap_timeout, &expired)) == NULL)
		fatalx("out of memory");
	evtimer_add(ev, &limit);
	while (secret_detached() > 0 && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	if (expired)
		log_warnx(NULL, "%zu password_command(s) not reaped",
		    secret_detached());
	event_free(ev);
}

/*
 * MAIN_DISPATCH_MS: once the loop has run callbacks for this long, it
 * looks at its timers and sockets again before running more. Many
 * sessions with data at once would otherwise be served all in one go,
 * each waiting for all the others: this bounds how long any one waits,
 * at the cost of a few more epoll calls.
 */
#define MAIN_DISPATCH_MS 4

static struct event_base *
loop_new(void)
{
	struct timeval tv = {.tv_usec = MAIN_DISPATCH_MS * 1000};
	struct event_config *cfg;
	struct event_base *base;

	if ((cfg = event_config_new()) == NULL)
		return NULL;
	if (event_config_set_max_dispatch_interval(cfg, &tv, -1, 0) == -1) {
		event_config_free(cfg);
		return NULL;
	}
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	/* Two priorities: the loop-stall meter's tick runs first. */
	if (base != NULL && event_base_priority_init(base, 2) == -1) {
		event_base_free(base);
		return NULL;
	}
	return base;
}

/* --authorize NAME; takes CONF. */
static int
authorize(struct conf *conf, const char *path, const char *name)
{
	int r;

	if (conf_account(conf, name) == NULL) {
		fprintf(
		    stderr, "popfetchd: %s: no account \"%s\"\n", path, name);
		r = EX_CONFIG;
	} else
		r = authorize_run(conf_account(conf, name));
	tls_ctx_forget();
	conf_free(&conf);
	return r;
}

/* --serverinfo NAME or --list NAME; takes CONF. */
static int
probe(struct conf *conf, const struct options *o)
{
	int r;

	if (conf_account(conf, o->probe) == NULL) {
		fprintf(stderr, "popfetchd: %s: no account \"%s\"\n", o->config,
		    o->probe);
		r = EX_CONFIG;
	} else
		r = probe_run(
		    conf, conf_account(conf, o->probe), o->probe_mode);
	tls_ctx_forget();
	oauth2_forget();
	conf_free(&conf);
	return r;
}

/*
 * A disk that stopped answering holds a worker thread in fsync: waiting
 * for it would hang the exit (and systemd's stop) for as long as the
 * disk does. Nothing is lost by leaving: its batch was never made durable
 * nor deleted on the server (its session was cut off without QUIT), and
 * the next start recovers what it left in tmp/.
 */
static void
exit_past_hung_disk(int status)
{
	log_warnx(NULL,
	    "exiting while disk work of %zu poll(s) does not return (a hung disk?); their undelivered mail stays on the server",
	    session_orphans());
	fflush(NULL);
	_exit(status);
}

/* Runs the loop on CONF (ownership taken) until done or stopped. */
static int
run(struct conf *conf, const struct options *o)
{
	static const int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
	struct event *sigev[sizeof(sigs) / sizeof(sigs[0])];
	struct daemon d = {.o = o, .start = time(NULL)};
	struct event_base *base;
	char err[256];
	size_t i;
	int status;

	if ((base = loop_new()) == NULL)
		fatalx("cannot create the event loop");
	d.base = base;
	if ((d.dns = net_dns_new(base, err, sizeof(err))) == NULL)
		fatalx("cannot set up name resolution");
	if (err[0] != '\0')
		log_warnx(NULL, "resolver: %s", err);
	if (o->shard.n > 0)
		log_info(NULL, "shard=%u/%u accounts=%zu of %zu in %s",
		    o->shard.k, o->shard.n, conf->naccounts, o->file_accounts,
		    o->config);
	fit_open_files(conf);
	/* Polls after the first resume TLS sessions; --once has none. */
	if (!o->once)
		tlscache_limit(TLSCACHE_MAX_BYTES);
	if ((d.nt = notify_new(base)) == NULL ||
	    (d.sc = sched_new(base, d.dns, conf, o->once, o->only, o->nonly)) ==
		NULL ||
	    (!o->once && (d.rl = reload_new(base)) == NULL))
		fatalx("out of memory");
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		sigev[i] = evsignal_new(base, sigs[i], on_signal, &d);
		if (sigev[i] == NULL || evsignal_add(sigev[i], NULL) == -1)
			fatalx("cannot watch signals");
	}
	sched_on_change(d.sc, on_change, &d);
	d.stall = loopstat_new(base);
	/* Before the first poll: the worker threads are idle (umask). */
	if (!o->once)
		status_begin(&d);
	metrics_to(&d, conf->metrics_file);
	sched_start(d.sc);
	notify_ready(d.nt);
	progress_begin(&d);
	event_base_dispatch(base);
	progress_free(&d.progress);
	/* Before the scheduler: a read under way compares with its conf. */
	reload_free(&d.rl);
	loopstat_free(&d.stall);
	status = sched_exit_status(d.sc);
	status_server_free(&d.srv);
	if (session_orphans() > 0)
		exit_past_hung_disk(o->once ? status : EX_TEMPFAIL);
	/* The last counts, before the records go with the scheduler. */
	metrics_to(&d, NULL);
	/* Sessions still there cancel their secrets: reaped below. */
	sched_free(&d.sc);
	tls_ctx_forget();
	tlscache_clear();
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		event_free(sigev[i]);
	/* Name lookups cancelled above answer on the loop, freeing theirs. */
	event_base_loop(base, EVLOOP_NONBLOCK);
	reap_secrets(base);
	oauth2_forget();
	notify_free(&d.nt);
	evdns_base_free(d.dns, 0);
	event_base_free(base);
	return o->once ? status : EX_OK;
}

/* --convert: the configuration of O->imp.path, converted, on stdout. */
static int
convert(const struct options *o)
{
	char *text;
	size_t len;
	int n;

	if (migrate_read_file(o->imp.path, &text, &len) == -1) {
		fprintf(stderr, "popfetchd: %s: %s\n", o->imp.path,
		    strerror(errno));
		return errno == ENOENT ? EX_NOINPUT : EX_IOERR;
	}
	n = migrate_convert(o->imp.fmt, o->imp.path, text, len, stdout, stderr);
	free(text);
	if (fflush(stdout) == EOF) {
		fprintf(stderr, "popfetchd: standard output: %s\n",
		    strerror(errno));
		return EX_IOERR;
	}
	return n > 0 ? EX_OK : EX_DATAERR;
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
	/* Reads another tool's file, nothing of ours. */
	if (o.convert)
		return convert(&o);
	if (o.status)
		return status_main(&o);
	log_init(o.trace, o.verbose);
	log_quiet(o.quiet);
	log_libevent();
	/* Before anything secret is read. */
	no_core_dumps();
	signal(SIGPIPE, SIG_IGN);
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());
	if ((conf = conf_load(o.config, report_conf_error, NULL)) == NULL)
		return no_config_hint(&o);
	if ((r = pick_accounts(conf, &o)) != EX_OK) {
		conf_free(&conf);
		return r;
	}
	if (o.accounts) {
		for (i = 0; i < conf->naccounts; i++)
			printf("%s\n", conf->accounts[i].name);
		conf_free(&conf);
		return EX_OK;
	}
	if (o.keep)
		keep_all(conf);
	if (o.probe == NULL && o.authorize == NULL &&
	    (r = refuse_foreign_state(conf, &o)) != EX_OK) {
		conf_free(&conf);
		return r;
	}
	if (o.authorize != NULL)
		return authorize(conf, o.config, o.authorize);
	if (o.move != NULL) {
		r = statemove_run(conf, o.move, o.move_in, stderr);
		conf_free(&conf);
		return r;
	}
	if (o.probe != NULL)
		return probe(conf, &o);
	if (o.import) {
		o.imp.only = o.only;
		o.imp.nonly = o.nonly;
		r = migrate_import_run(conf, &o.imp, stdout, stderr);
		conf_free(&conf);
		return r;
	}
	if (!o.check) {
		/*
		 * The parse freed its tree, in many small pieces among what
		 * stays: handed back before the daemon settles.
		 */
		malloc_trim(0);
		return run(conf, &o);
	}
	r = check_config(conf, &o);
	conf_free(&conf);
	return r;
}
