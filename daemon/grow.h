/*
 * grow: room for more bytes at the end of a growable run of bytes, one
 * rule for every such buffer (the spool's, the state journal's): the
 * capacity doubles from a first size until MORE bytes fit after LEN,
 * and a size that would overflow fails as out of memory. A leaf.
 */
#ifndef POPFETCHD_GROW_H
#define POPFETCHD_GROW_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

/*
 * Makes *CAP - LEN at least MORE, reallocating *DATA (FIRST: the
 * capacity of an empty one). 0, or -1 with errno ENOMEM and *DATA and
 * *CAP unchanged.
 */
static inline int
grow_bytes(char **data, size_t *cap, size_t len, size_t more, size_t first)
{
	size_t want = *cap > 0 ? *cap : first;
	char *p;

	if (more <= *cap - len)
		return 0;
	if (more > SIZE_MAX / 2 - len) {
		errno = ENOMEM;
		return -1;
	}
	while (want - len < more)
		want *= 2;
	if ((p = realloc(*data, want)) == NULL)
		return -1;
	*data = p;
	*cap = want;
	return 0;
}

#endif
