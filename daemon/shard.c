/*
 * shard: rendezvous hashing of account names over N instances.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"
#include "shard.h"
#include "strhash.h"

/* splitmix64's increment and finaliser: every input bit moves every output bit.
 */
static uint64_t
score(uint64_t name, unsigned k)
{
	uint64_t z = name + ((uint64_t)k + 1) * 0x9E3779B97F4A7C15u;

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
	return z ^ (z >> 31);
}

/* A decimal number of at most 9 digits ending at *END, or -1. */
static long
number(const char *p, const char **end)
{
	long v = 0;
	size_t n = 0;

	for (; *p >= '0' && *p <= '9' && n < 9; p++, n++)
		v = v * 10 + (*p - '0');
	*end = p;
	return n == 0 ? -1 : v;
}

int
shard_parse(const char *arg, struct shard *sh, char *err, size_t errlen)
{
	const char *p;
	long k, n;

	k = number(arg, &p);
	if (k < 0 || *p != '/' || (n = number(p + 1, &p)) < 0 || *p != '\0') {
		snprintf(err, errlen,
		    "--shard takes K/N, this instance's number K (from 0) of N: 0/4 to 3/4 for four, not \"%s\"",
		    arg);
		return -1;
	}
	if (n < 1 || n > SHARD_N_MAX) {
		snprintf(
		    err, errlen, "--shard %s: N is 1 to %d", arg, SHARD_N_MAX);
		return -1;
	}
	if (k >= n) {
		snprintf(err, errlen,
		    "--shard %s: K counts from 0, so 0/%ld to %ld/%ld", arg, n,
		    n - 1, n);
		return -1;
	}
	sh->k = (unsigned)k;
	sh->n = (unsigned)n;
	return 0;
}

unsigned
shard_owner(const char *name, unsigned n)
{
	uint64_t h = strhash64(name), best = 0, s;
	unsigned k, owner = 0;

	for (k = 0; k < n; k++)
		if ((s = score(h, k)) > best || k == 0) {
			best = s;
			owner = k;
		}
	return owner;
}

bool
shard_mine(const struct shard *sh, const char *name)
{
	return sh->n == 0 || shard_owner(name, sh->n) == sh->k;
}

size_t
shard_select(struct conf *conf, const struct shard *sh)
{
	size_t i, kept = 0;

	if (sh->n == 0)
		return conf->naccounts;
	for (i = 0; i < conf->naccounts; i++)
		if (shard_mine(sh, conf->accounts[i].name))
			conf->accounts[kept++] = conf->accounts[i];
	conf->naccounts = kept;
	return kept;
}
