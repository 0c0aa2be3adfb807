/*
 * plan: pure policy. From the server's listing, what the state says was
 * delivered or failed to be, the account's settings and the free space
 * of the Maildir, decide for each message whether to fetch it, delete it
 * without fetching, or leave it alone.
 */
#ifndef POPFETCHD_PLAN_H
#define POPFETCHD_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/*
 * A message not delivered after this many failed attempts is quarantined:
 * left on the server and not tried at every poll, so that one message
 * that always fails cannot hold up the mailbox. Three tell a message that
 * fails from a connection that failed once or twice by chance.
 */
#define PLAN_STRIKES_MAX 3

/*
 * A quarantined message gets one more try this long after its latest
 * strike: whatever made it fail (a full quota, a server glitch, a bug
 * fixed by an upgrade) may have gone, and once a day costs little.
 */
#define PLAN_QUARANTINE_SECS 86400

/*
 * How far the LIST size of a delivered UID may be from the size it had
 * when delivered before it is taken for another message that reuses the
 * UID (a server that numbers messages afresh after its mailbox was
 * recreated, say): more than PLAN_REUSE_MIN bytes and more than a
 * 1/PLAN_REUSE_DIV of the larger. A server's size for one message does
 * not move that far (some estimate sizes, and estimates differ a little
 * from session to session: refetching on any difference would deliver
 * such a server's kept mail twice); a new message of nearly the same size
 * under an old UID is not told apart.
 */
#define PLAN_REUSE_MIN 1024
#define PLAN_REUSE_DIV 4

/*
 * Free space left untouched by the plan: the state journal and other
 * files on the same file system grow too, and free space changes while
 * a session runs. Small next to any disk a Maildir lives on, large next
 * to a journal's growth in one session (under 100 bytes a message).
 */
#define PLAN_SPACE_RESERVE (1024 * 1024)

/*
 * What one message costs on disk beyond its LIST size: up to one block
 * of 4 KiB, as a file takes whole blocks (what matters with many small
 * messages), and the Received: line the session may prepend (under
 * 1 KiB). The CRLF line ends counted by LIST but stored as LF make up
 * for some of it; what remains errs on the safe side.
 */
#define PLAN_MSG_OVERHEAD (4096 + 1024)

enum plan_action {
	PLAN_LEAVE,  /* stays on the server untouched */
	PLAN_FETCH,  /* deliver, then (unless keep) delete */
	PLAN_DELETE, /* delivered before: delete without fetching */
};

enum plan_reason {
	PLAN_R_NONE,
	PLAN_R_KEPT,	    /* keep mode, already delivered */
	PLAN_R_TOO_BIG,	    /* larger than max_message_size */
	PLAN_R_DUP_UID,	    /* UID shared with another (may be fetched) */
	PLAN_R_NO_LISTING,  /* missing from LIST or UIDL */
	PLAN_R_QUARANTINED, /* failed PLAN_STRIKES_MAX times, recently */
	PLAN_R_NO_SPACE,    /* does not fit in the free space left */
	PLAN_R_UID_REUSED,  /* delivered UID, but another message: fetch */
};

struct plan_msg {
	unsigned long msgno;
	uint64_t size;
	bool listed;	   /* LIST gave its size */
	const char *uid;   /* NULL without UIDL */
	bool delivered;	   /* the state holds uid */
	time_t first_seen; /* when delivered */
	bool size_known;   /* the state holds the LIST size it had then */
	uint64_t delivered_size;
	unsigned strikes;   /* failed attempts to deliver it (not delivered) */
	time_t last_strike; /* when the latest of them was */
	enum plan_action action;
	enum plan_reason reason;
};

struct plan_policy {
	bool keep;
	unsigned delete_after_days;
	uint64_t max_message_size; /* 0: no limit */
	bool have_uidl;
	/*
	 * Free space for the Maildir, in bytes, if space_known. Unknown (the
	 * zero value: a policy that does not say) or UINT64_MAX means no
	 * limit; the write that fails on a full disk is the safety net.
	 */
	bool space_known;
	uint64_t free_bytes;
};

/*
 * What the plan does; fetch + dele + leave is the number of messages.
 * quarantined and no_space count messages within leave, for the log.
 */
struct plan_totals {
	size_t fetch, dele, leave;
	size_t quarantined, no_space;
	uint64_t fetch_bytes;
};

/*
 * Sets action and reason of the N messages in MSGS (sorted by msgno).
 * Messages sharing a UID keep the reason PLAN_R_DUP_UID whatever their
 * action, as the UID cannot stand for any one of them in the state: in
 * delete mode each is fetched (then deleted) by number, delivered or
 * not; in keep mode they are fetched while the UID is not delivered and
 * left alone after, never deleted by age. The caller records no UID for
 * them one by one (see plan.c).
 * A message not delivered yet is fetched unless it is too big, or
 * quarantined (strikes >= PLAN_STRIKES_MAX and the latest less than
 * PLAN_QUARANTINE_SECS ago), or it does not fit: in msgno order, each
 * message to fetch takes its size plus PLAN_MSG_OVERHEAD from the free
 * space less PLAN_SPACE_RESERVE; one that does not fit is left, and the
 * walk goes on, as a smaller one after it may still fit. LIST sizes
 * count CRLF line ends, which become LF on disk: they overstate the
 * need, the safe direction. Delivered messages are deleted or kept as
 * before, whatever their strikes.
 * Returns -1 with errno EINVAL if the policy cannot work (keep mode
 * without UIDL), ENOMEM when out of memory.
 */
int plan_decide(struct plan_msg *msgs, size_t n, const struct plan_policy *pol,
    time_t now, struct plan_totals *tot);

/*
 * Where plan_fill() looks up what the state knows of a UID: KNOWN says
 * whether it was delivered (with when, and the LIST size it had then if
 * SIZE_KNOWN), STRIKES how often its delivery failed and when last.
 */
struct plan_records {
	bool (*known)(void *arg, const char *uid, time_t *first_seen,
	    uint64_t *size, bool *size_known);
	unsigned (*strikes)(void *arg, const char *uid, time_t *last);
	void *arg;
};

/*
 * Fills the record fields of MSGS (delivered, first_seen, size_known,
 * delivered_size, strikes, last_strike) from REC: the plan's input.
 * Messages without a UID have no record.
 */
void plan_fill(struct plan_msg *msgs, size_t n, const struct plan_records *rec);

/*
 * The UIDs of a complete listing, for the question "is this UID still on
 * the server?" that decides which records are forgotten. NULL when out
 * of memory; the UIDs are borrowed from MSGS, which must outlive it.
 */
struct plan_uids;
struct plan_uids *plan_uids_new(const struct plan_msg *msgs, size_t n);
bool plan_uids_has(const struct plan_uids *u, const char *uid);
void plan_uids_free(struct plan_uids **u);

#endif
