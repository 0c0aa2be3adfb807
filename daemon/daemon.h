/*
 * daemon: popfetchd running, as the daemon or for --once: the event loop
 * with the scheduler, signals, reloads, systemd notification, the status
 * socket, the metrics file and the progress line, until the polls are
 * done (--once) or a stop.
 */
#ifndef POPFETCHD_DAEMON_H
#define POPFETCHD_DAEMON_H

#include <stdbool.h>
#include <stddef.h>

#include "shard.h"

struct conf;

/* What the command line chose. */
struct daemon_opts {
	const char *config; /* the file, read again on SIGHUP */
	char *const *only;  /* -a: NONLY names, living as long; 0: all */
	size_t nonly;
	bool once;	      /* poll each account once, then exit */
	bool keep;	      /* -k */
	bool quiet;	      /* -q */
	struct shard shard;   /* --shard; n 0: every account */
	size_t file_accounts; /* accounts in the file, before --shard */
};

/*
 * Runs CONF (ownership taken) until done (--once) or stopped. Returns
 * the exit status: with --once the polls' (sysexits.h), else EX_OK.
 */
int daemon_run(struct conf *conf, const struct daemon_opts *o);

#endif
