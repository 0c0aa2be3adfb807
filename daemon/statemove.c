/*
 * statemove: --export-state NAME and --import-state NAME.
 */
#include <errno.h>
#include <stdio.h>
#include <sysexits.h>
#include <unistd.h>

#include "conf.h"
#include "state.h"
#include "statemove.h"

/* The exit code for a transfer that failed with errno E. */
static int
failure_code(int e)
{
	switch (e) {
	case EWOULDBLOCK:
	case EBUSY:
		return EX_TEMPFAIL;
	case EINVAL:
	case ENOTSUP:
	case EFBIG:
		return EX_DATAERR;
	case EEXIST:
		return EX_CANTCREAT;
	default:
		return EX_IOERR;
	}
}

int
statemove_run(const struct conf *conf, const char *name, bool import, FILE *err)
{
	const struct account *a = conf_account(conf, name);
	char why[512];
	size_t count = 0;
	int rc;

	if (a == NULL) {
		fprintf(err,
		    "popfetchd: %s: no account \"%s\" (or another shard's)\n",
		    conf->path, name);
		return EX_CONFIG;
	}
	if (import)
		rc = state_import(conf->state_dir, a->name, a->host, a->port,
		    a->user != NULL ? a->user : "", STDIN_FILENO, &count, why,
		    sizeof(why));
	else
		rc = state_export(conf->state_dir, a->name, a->host, a->port,
		    a->user != NULL ? a->user : "", STDOUT_FILENO, &count, why,
		    sizeof(why));
	if (rc == -1) {
		/* WHY names the account. */
		fprintf(err, "popfetchd: %s\n", why);
		return failure_code(errno);
	}
	if (import)
		fprintf(err,
		    "popfetchd: account %s: state imported, %zu UIDs; this instance polls it now\n",
		    a->name, count);
	else
		fprintf(err,
		    "popfetchd: account %s: state exported, %zu UIDs; this instance no longer polls it\n",
		    a->name, count);
	return EX_OK;
}
