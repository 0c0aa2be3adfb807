/*
 * statemove: the command line's side of moving an account between
 * instances (--export-state, --import-state; see state_export() and
 * shard.h): finds the account, runs the transfer on standard output or
 * input, and says what happened on ERR. Returns a sysexits code.
 */
#ifndef POPFETCHD_STATEMOVE_H
#define POPFETCHD_STATEMOVE_H

#include <stdbool.h>
#include <stdio.h>

struct conf;

/* IMPORT: standard input into the state of NAME; else the state to stdout. */
int statemove_run(
    const struct conf *conf, const char *name, bool import, FILE *err);

#endif
