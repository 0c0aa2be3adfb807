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

#include "authorize.h"
#include "check.h"
#include "conf.h"
#include "confpath.h"
#include "daemon.h"
#include "log.h"
#include "migrate.h"
#include "oauth2.h"
#include "probe.h"
#include "shard.h"
#include "statemove.h"
#include "status.h"
#include "tls.h"

#define MAIN_ONLY_MAX 256

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
 * -k: every account keeps its mail on the server for this run, whatever
 * its keep and delete_after_days say (a safe first run).
 */
static void
keep_all(struct conf *conf)
{
	conf_keep_all(conf);
	log_info(NULL, "-k: every account keeps its mail on the server");
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
		return daemon_run(
		    conf, &(struct daemon_opts){.config = o.config,
			      .only = o.only,
			      .nonly = o.nonly,
			      .once = o.once,
			      .keep = o.keep,
			      .quiet = o.quiet,
			      .shard = o.shard,
			      .file_accounts = o.file_accounts});
	}
	r = check_config(conf, &o);
	conf_free(&conf);
	return r;
}
