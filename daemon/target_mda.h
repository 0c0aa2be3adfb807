/*
 * target_mda: the MDA target, a command run for each message with the
 * message on its standard input (target.h's interface), and the pure
 * parts of its command line, kept apart (target_mda_cmd.c) so that the
 * configuration can check a command without the loop.
 *
 * The command line: words separated by spaces and tabs; a double-quoted
 * part ("...") keeps its spaces, and inside it \" and \\ stand for " and
 * \. No other character is special: no shell runs, so $, *, ', | and ;
 * are data. With mda_shell = true the whole line goes to /bin/sh -c
 * unsplit instead.
 *
 * Placeholders, expanded inside each word after the split (an expansion
 * never splits a word or makes a new one): %u the account's user, %a the
 * account's name, %r the recipient (the user when no recipient is set),
 * %% a percent sign. Any other %x is an error. Under mda_shell each
 * expansion is put in single quotes, so the shell takes it as one word
 * whatever it contains.
 */
#ifndef POPFETCHD_TARGET_MDA_H
#define POPFETCHD_TARGET_MDA_H

#include <stdbool.h>

#include "target.h"

/* Placeholders' values; NULL counts as empty. */
struct mda_vars {
	const char *user;      /* %u */
	const char *account;   /* %a */
	const char *recipient; /* %r; NULL: the user */
};

/*
 * Checks CMD as the configuration loads it: it splits (quotes closed,
 * at least one word) and names only known placeholders. 0, or -1 with
 * *WHY a static text.
 */
int mda_cmd_check(const char *cmd, bool shell, const char **why);

/*
 * The argument vector CMD runs as, placeholders expanded with V: a
 * NULL-terminated array of strings, freed with mda_argv_free(). NULL
 * with *WHY set when CMD does not pass mda_cmd_check() or out of memory.
 */
char **mda_argv(
    const char *cmd, bool shell, const struct mda_vars *v, const char **why);

void mda_argv_free(char **argv);

/* How to run the MDA and for whom. */
struct target_mda_conf {
	const char *command;
	bool shell;
	struct mda_vars vars;
	const char *home;    /* HOME in its environment; NULL: none */
	unsigned timeout;    /* seconds without progress before it is killed */
	const char *account; /* for the log */
};

/*
 * An MDA target: a process per message, started by target_begin().
 * NULL when out of memory, or when the command does not expand (*WHY).
 */
struct target *target_mda_new(struct event_base *base,
    const struct target_mda_conf *c, const struct target_cbs *cbs,
    const char **why);

/*
 * The verdict an MDA's wait status gives: exit 0 delivered, 75
 * (EX_TEMPFAIL) or a signal temporary, any other exit permanent.
 */
enum target_verdict mda_verdict_of(int status);

#endif
