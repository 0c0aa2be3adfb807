/*
 * listing: what the server listed in answer to UIDL and LIST, turned into
 * the plan's messages. Memory follows the lines the server actually sent,
 * never the count it announced in STAT (one "+OK 1000000 0" must not cost
 * a hundred megabytes), and stays within LISTING_BYTES_MAX per session.
 * Pure: no I/O.
 */
#ifndef POPFETCHD_LISTING_H
#define POPFETCHD_LISTING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct plan_msg;
struct listing;

/*
 * Bytes one session may spend on its listing: about 250,000 messages
 * with UIDs of typical length, far beyond a mailbox anyone polls over
 * POP3, and small enough that max_connections hostile servers cannot
 * exhaust a machine. A larger listing is refused (E2BIG).
 */
#define LISTING_BYTES_MAX (32u << 20)

/* A listing for a mailbox of COUNT messages (STAT's); NULL: no memory. */
struct listing *listing_new(unsigned long count);

/* Frees L and sets *L to NULL. */
void listing_free(struct listing **l);

/*
 * Adds a UIDL line (UID is copied) or a LIST line. Returns 0, or -1 with
 * errno: ERANGE (MSGNO is 0 or above the STAT count), E2BIG (over
 * LISTING_BYTES_MAX), ENOMEM. A message number listed twice is found by
 * listing_finish().
 */
int listing_add_uid(struct listing *l, unsigned long msgno, const char *uid);
int listing_add_size(struct listing *l, unsigned long msgno, uint64_t size);

/*
 * Merges the two listings into plan messages sorted by message number,
 * one per number either listing named (msgno, size, listed, uid; the
 * rest zero). Returns 0, or -1 with errno: EEXIST (a number listed twice
 * by the same command; *DUP gets it), E2BIG, ENOMEM.
 */
int listing_finish(struct listing *l, unsigned long *dup);

/* After listing_finish(): the messages, sorted by msgno, and their count. */
struct plan_msg *listing_msgs(struct listing *l);
size_t listing_count(const struct listing *l);

/* After listing_finish(): the message numbered MSGNO, or NULL. */
struct plan_msg *listing_find(const struct listing *l, unsigned long msgno);

/*
 * After listing_finish(): whether every message STAT counted was listed
 * by LIST and, if WITH_UIDS, by UIDL. Only a complete listing tells which
 * UIDs are gone from the server.
 */
bool listing_complete(const struct listing *l, bool with_uids);

/* Lines added so far by UIDL and by LIST, for messages. */
size_t listing_uids(const struct listing *l);
size_t listing_sizes(const struct listing *l);

#endif
