/*
 * received: the trace line prepended to each delivered message, in the
 * grammar of RFC 5321 section 4.4 (clauses in the order from, by, with,
 * id, for; each on a folded line of its own). Pure: no I/O.
 */
#ifndef POPFETCHD_RECEIVED_H
#define POPFETCHD_RECEIVED_H

#include <stddef.h>
#include <time.h>

/* Room for any line received_format() writes (hosts, UID, user bounded). */
#define RECEIVED_MAX 2048

struct received_info {
	const char *from_host; /* the POP3 server as configured */
	const char *by_host;   /* this machine's name (NULL: "localhost") */
	const char *version;   /* popfetchd's, as a comment */
	const char *uid;       /* the message's UID, or NULL */
	const char *user;      /* the POP3 user: a "for" clause if a mailbox */
	time_t when;
	long gmtoff; /* seconds east of UTC of WHEN's local time */
};

/*
 * Writes the header field, LF-terminated (messages are stored with LF),
 * into BUF. Names that are not domains or address literals are replaced
 * by the reserved "unknown.invalid"; a UID with characters an atom cannot
 * hold is percent-encoded (reversibly: '%' becomes %25 too); a user that
 * is not an address gets no "for" clause. Returns the length, or -1 if
 * LEN is below RECEIVED_MAX.
 */
int received_format(char *buf, size_t len, const struct received_info *ri);

#endif
