/*
 * strhash: the one string hash of the daemon's tables (hosts, interned
 * strings, the configuration's string pool, TLS sessions): FNV-1a over a
 * C string; FOLD ignores ASCII case, as DNS does for host names.
 * strhash64() is its 64-bit form, for choosing shards (shard.c).
 */
#ifndef POPFETCHD_STRHASH_H
#define POPFETCHD_STRHASH_H

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>

static inline uint32_t
strhash(const char *s, bool fold)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++) {
		h ^= fold ? (unsigned char)tolower((unsigned char)*s)
			  : (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

static inline uint64_t
strhash64(const char *s)
{
	uint64_t h = 14695981039346656037u;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211u;
	}
	return h;
}

#endif
