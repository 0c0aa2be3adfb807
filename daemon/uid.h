/*
 * uid: the rule RFC 1939 section 7 sets for a unique-id, in one place:
 * 1 to 70 characters, each in 0x21..0x7E. The engine holds servers to it
 * (a UID that breaks it is a protocol error), the state stores only such
 * UIDs, and delivery sizes its buffers by it. A leaf: no other module.
 */
#ifndef POPFETCHD_UID_H
#define POPFETCHD_UID_H

#include <stdbool.h>
#include <stddef.h>

#define UID_MAX 70

/* Whether the LEN bytes at UID are a unique-id by the rule above. */
static inline bool
uid_valid(const char *uid, size_t len)
{
	size_t i;

	if (len == 0 || len > UID_MAX)
		return false;
	for (i = 0; i < len; i++)
		if ((unsigned char)uid[i] < 0x21 ||
		    (unsigned char)uid[i] > 0x7e)
			return false;
	return true;
}

#endif
