/*
 * plan: pure policy. From the server's listing, what the state says was
 * delivered, and the account's settings, decide for each message whether
 * to fetch it, delete it without fetching, or leave it alone.
 */
#ifndef POPFETCHD_PLAN_H
#define POPFETCHD_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

enum plan_action {
	PLAN_LEAVE,  /* stays on the server untouched */
	PLAN_FETCH,  /* deliver, then (unless keep) delete */
	PLAN_DELETE, /* delivered before: delete without fetching */
};

enum plan_reason {
	PLAN_R_NONE,
	PLAN_R_KEPT,	   /* keep mode, already delivered */
	PLAN_R_TOO_BIG,	   /* larger than max_message_size */
	PLAN_R_DUP_UID,	   /* UID shared with another message */
	PLAN_R_NO_LISTING, /* missing from LIST or UIDL */
};

struct plan_msg {
	unsigned long msgno;
	uint64_t size;
	bool listed;	   /* LIST gave its size */
	const char *uid;   /* NULL without UIDL */
	bool delivered;	   /* the state holds uid */
	time_t first_seen; /* when delivered */
	enum plan_action action;
	enum plan_reason reason;
};

struct plan_policy {
	bool keep;
	unsigned delete_after_days;
	uint64_t max_message_size; /* 0: no limit */
	bool have_uidl;
};

struct plan_totals {
	size_t fetch, dele, leave;
	uint64_t fetch_bytes;
};

/*
 * Sets action and reason of the N messages in MSGS (sorted by msgno).
 * Messages sharing a UID are left alone: a UID stands for one message in
 * the state, so acting on either could delete the other unseen.
 * Returns -1 if the policy cannot work (keep mode without UIDL).
 */
int plan_decide(struct plan_msg *msgs, size_t n, const struct plan_policy *pol,
    time_t now, struct plan_totals *tot);

#endif
