/*
 * shard: which of N instances polls an account, so that one configuration
 * file serves them all (--shard K/N, K counting from 0). Each account goes
 * to the instance with the highest score for its name (rendezvous
 * hashing): going from N to N+1 instances moves only the accounts the new
 * one wins, about 1/(N+1) of them, all to it; going from N to N-1 moves
 * only those of the instance that goes.
 *
 * The scores are part of every deployment: a different function would
 * move accounts to instances that do not have their state. They are
 * fixed: FNV-1a (64 bits) of the name, plus (K+1) times 0x9E3779B97F4A7C15,
 * through the splitmix64 finaliser; the highest wins, a tie to the lower
 * K. tests/test_shard.py computes them independently.
 */
#ifndef POPFETCHD_SHARD_H
#define POPFETCHD_SHARD_H

#include <stdbool.h>
#include <stddef.h>

struct conf;

/* More instances than this is a typo, not a deployment. */
#define SHARD_N_MAX 1024

struct shard {
	unsigned k, n; /* n == 0: not sharded, every account is ours */
};

/*
 * Parses "K/N" (decimal, 0 <= K < N <= SHARD_N_MAX) into *SH. 0, or -1
 * with ERR saying what is wrong.
 */
int shard_parse(const char *arg, struct shard *sh, char *err, size_t errlen);

/* The instance (0 to N-1) that polls the account NAME among N (N >= 1). */
unsigned shard_owner(const char *name, unsigned n);

/* Whether the account NAME is SH's (always, when not sharded). */
bool shard_mine(const struct shard *sh, const char *name);

/*
 * Drops from CONF the accounts that are not SH's. Returns how many stay.
 */
size_t shard_select(struct conf *conf, const struct shard *sh);

#endif
