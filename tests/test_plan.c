/* Table-driven tests for the fetch/delete policy. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "check_main.h"

#define NOW  1000000000
#define DAYS 86400
#define HOUR 3600
#define MiB  (1024 * 1024)

/* Policies: delete or keep mode, with UIDL, no limits unless said. */
/* clang-format off */
#define DEL(...)  {.have_uidl = true, __VA_ARGS__}
#define KEEP(...) {.keep = true, .have_uidl = true, __VA_ARGS__}

/* Message 1, listed (in LIST), not delivered unless said. */
#define MSG(...) {.msgno = 1, .listed = true, __VA_ARGS__}
/* clang-format on */

struct row {
	const char *name;
	struct plan_policy pol;
	struct plan_msg msg;
	enum plan_action want;
	enum plan_reason why;
};

static const struct row rows[] = {
    {"new, delete mode", DEL(), MSG(.size = 10, .uid = "a"), PLAN_FETCH,
	PLAN_R_NONE},
    {"delivered before, delete mode: delete without fetching", DEL(),
	MSG(.size = 10, .uid = "a", .delivered = true, .first_seen = NOW),
	PLAN_DELETE, PLAN_R_NONE},
    {"new, keep mode", KEEP(), MSG(.size = 10, .uid = "a"), PLAN_FETCH,
	PLAN_R_NONE},
    {"delivered, keep mode", KEEP(),
	MSG(.size = 10, .uid = "a", .delivered = true,
	    .first_seen = NOW - 100 * DAYS),
	PLAN_LEAVE, PLAN_R_KEPT},
    {"kept, younger than delete_after_days", KEEP(.delete_after_days = 7),
	MSG(.size = 10, .uid = "a", .delivered = true,
	    .first_seen = NOW - 6 * DAYS),
	PLAN_LEAVE, PLAN_R_KEPT},
    {"kept, delete_after_days reached", KEEP(.delete_after_days = 7),
	MSG(.size = 10, .uid = "a", .delivered = true,
	    .first_seen = NOW - 7 * DAYS),
	PLAN_DELETE, PLAN_R_NONE},
    {"too big", DEL(.max_message_size = 100), MSG(.size = 101, .uid = "a"),
	PLAN_LEAVE, PLAN_R_TOO_BIG},
    {"at the size limit", DEL(.max_message_size = 100),
	MSG(.size = 100, .uid = "a"), PLAN_FETCH, PLAN_R_NONE},
    {"delivered too-big message still deleted", DEL(.max_message_size = 100),
	MSG(.size = 101, .uid = "a", .delivered = true, .first_seen = NOW),
	PLAN_DELETE, PLAN_R_NONE},
    {"UID reused by a much larger message, keep mode: fetched", KEEP(),
	MSG(.size = 5000, .uid = "a", .delivered = true, .first_seen = NOW,
	    .size_known = true, .delivered_size = 100),
	PLAN_FETCH, PLAN_R_UID_REUSED},
    {"UID reused by a much smaller message, delete mode: fetched", DEL(),
	MSG(.size = 100, .uid = "a", .delivered = true, .first_seen = NOW,
	    .size_known = true, .delivered_size = 5000),
	PLAN_FETCH, PLAN_R_UID_REUSED},
    {"size moved a little: the same message, kept", KEEP(),
	MSG(.size = 5100, .uid = "a", .delivered = true, .first_seen = NOW,
	    .size_known = true, .delivered_size = 5000),
	PLAN_LEAVE, PLAN_R_KEPT},
    {"small messages never differ enough", DEL(),
	MSG(.size = 1000, .uid = "a", .delivered = true, .first_seen = NOW,
	    .size_known = true, .delivered_size = 10),
	PLAN_DELETE, PLAN_R_NONE},
    {"size not recorded: the same message", KEEP(),
	MSG(.size = 5000, .uid = "a", .delivered = true, .first_seen = NOW,
	    .delivered_size = 100),
	PLAN_LEAVE, PLAN_R_KEPT},
    {"not in LIST", DEL(), {.msgno = 1, .uid = "a"}, PLAN_LEAVE,
	PLAN_R_NO_LISTING},
    {"not in UIDL", DEL(), MSG(.size = 10), PLAN_LEAVE, PLAN_R_NO_LISTING},
    {"no UIDL at all, delete mode", {.have_uidl = false}, MSG(.size = 10),
	PLAN_FETCH, PLAN_R_NONE},

    /* Quarantine. */
    {"2 strikes: tried again", DEL(),
	MSG(.size = 10, .uid = "a", .strikes = 2, .last_strike = NOW - 60),
	PLAN_FETCH, PLAN_R_NONE},
    {"3 strikes, the latest an hour ago: quarantined", DEL(),
	MSG(.size = 10, .uid = "a", .strikes = 3, .last_strike = NOW - HOUR),
	PLAN_LEAVE, PLAN_R_QUARANTINED},
    {"3 strikes, the latest just now: quarantined", DEL(),
	MSG(.size = 10, .uid = "a", .strikes = 3, .last_strike = NOW),
	PLAN_LEAVE, PLAN_R_QUARANTINED},
    {"3 strikes, a second short of a day: quarantined", DEL(),
	MSG(.size = 10, .uid = "a", .strikes = 3,
	    .last_strike = NOW - PLAN_QUARANTINE_SECS + 1),
	PLAN_LEAVE, PLAN_R_QUARANTINED},
    {"3 strikes, a day exactly: one more try", DEL(),
	MSG(.size = 10, .uid = "a", .strikes = 3,
	    .last_strike = NOW - PLAN_QUARANTINE_SECS),
	PLAN_FETCH, PLAN_R_NONE},
    {"3 strikes, 25 h ago: one more try", DEL(),
	MSG(.size = 10, .uid = "a", .strikes = 3,
	    .last_strike = NOW - 25 * HOUR),
	PLAN_FETCH, PLAN_R_NONE},
    {"many strikes, recent: quarantined", DEL(),
	MSG(.size = 10, .uid = "a", .strikes = 40, .last_strike = NOW - HOUR),
	PLAN_LEAVE, PLAN_R_QUARANTINED},
    {"quarantined in keep mode too", KEEP(),
	MSG(.size = 10, .uid = "a", .strikes = 3, .last_strike = NOW - HOUR),
	PLAN_LEAVE, PLAN_R_QUARANTINED},
    {"latest strike in the future (clock went back): one more try", DEL(),
	MSG(.size = 10, .uid = "a", .strikes = 3, .last_strike = NOW + HOUR),
	PLAN_FETCH, PLAN_R_NONE},
    {"delivered with strikes, delete mode: deleted as usual", DEL(),
	MSG(.size = 10, .uid = "a", .delivered = true, .first_seen = NOW,
	    .strikes = 5, .last_strike = NOW - HOUR),
	PLAN_DELETE, PLAN_R_NONE},
    {"delivered with strikes, keep mode: kept as usual", KEEP(),
	MSG(.size = 10, .uid = "a", .delivered = true, .first_seen = NOW,
	    .strikes = 5, .last_strike = NOW - HOUR),
	PLAN_LEAVE, PLAN_R_KEPT},
    {"too big and quarantined: too big says more", DEL(.max_message_size = 5),
	MSG(.size = 10, .uid = "a", .strikes = 3, .last_strike = NOW - HOUR),
	PLAN_LEAVE, PLAN_R_TOO_BIG},

    /* Free space, one message (several: test space_table). */
    {"exactly at the edge with the reserve: fits",
	DEL(.space_known = true,
	    .free_bytes = 10 + PLAN_MSG_OVERHEAD + PLAN_SPACE_RESERVE),
	MSG(.size = 10, .uid = "a"), PLAN_FETCH, PLAN_R_NONE},
    {"one byte short of the edge: left",
	DEL(.space_known = true,
	    .free_bytes = 10 + PLAN_MSG_OVERHEAD + PLAN_SPACE_RESERVE - 1),
	MSG(.size = 10, .uid = "a"), PLAN_LEAVE, PLAN_R_NO_SPACE},
    {"less free than the reserve: left",
	DEL(.space_known = true, .free_bytes = PLAN_SPACE_RESERVE / 2),
	MSG(.size = 10, .uid = "a"), PLAN_LEAVE, PLAN_R_NO_SPACE},
    {"no space at all: left", DEL(.space_known = true, .free_bytes = 0),
	MSG(.size = 10, .uid = "a"), PLAN_LEAVE, PLAN_R_NO_SPACE},
    {"space unknown (the zero value): no limit", DEL(.free_bytes = 0),
	MSG(.size = UINT64_MAX / 2, .uid = "a"), PLAN_FETCH, PLAN_R_NONE},
    {"free space UINT64_MAX: no limit",
	DEL(.space_known = true, .free_bytes = UINT64_MAX),
	MSG(.size = UINT64_MAX, .uid = "a"), PLAN_FETCH, PLAN_R_NONE},
    {"a size near UINT64_MAX does not wrap around",
	DEL(.space_known = true, .free_bytes = UINT64_MAX - 1),
	MSG(.size = UINT64_MAX - PLAN_MSG_OVERHEAD / 2, .uid = "a"), PLAN_LEAVE,
	PLAN_R_NO_SPACE},
    {"delivered, to delete, whatever its size",
	DEL(.space_known = true, .free_bytes = 0),
	MSG(.size = 100 * MiB, .uid = "a", .delivered = true,
	    .first_seen = NOW),
	PLAN_DELETE, PLAN_R_NONE},
    {"quarantined, not short of space",
	DEL(.space_known = true, .free_bytes = 0),
	MSG(.size = 10, .uid = "a", .strikes = 3, .last_strike = NOW),
	PLAN_LEAVE, PLAN_R_QUARANTINED},
};

START_TEST(table)
{
	const struct row *r = &rows[_i];
	struct plan_msg m = r->msg;
	struct plan_totals tot;

	ck_assert_int_eq(plan_decide(&m, 1, &r->pol, NOW, &tot), 0);
	if (m.action != r->want || m.reason != r->why)
		ck_abort_msg("%s: action %d reason %d, want %d %d", r->name,
		    m.action, m.reason, r->want, r->why);
	ck_assert_uint_eq(tot.fetch + tot.dele + tot.leave, 1);
	ck_assert_uint_eq(tot.quarantined, r->why == PLAN_R_QUARANTINED);
	ck_assert_uint_eq(tot.no_space, r->why == PLAN_R_NO_SPACE);
	ck_assert_uint_eq(tot.fetch_bytes, m.action == PLAN_FETCH ? m.size : 0);
}
END_TEST

/* Several new messages against the free space: F fetched, S no space. */
struct space_row {
	const char *name;
	bool known;
	uint64_t free_bytes;
	uint64_t size[3];
	const char *want;
};

/* What N messages of these sizes need, all but the reserve. */
#define NEED(n, bytes) ((n) * (uint64_t)PLAN_MSG_OVERHEAD + (bytes))

static const struct space_row space_rows[] = {
    {"all fit, room to spare", true,
	PLAN_SPACE_RESERVE + NEED(3, 1000 + 2000 + 3000) + 12345,
	{1000, 2000, 3000}, "FFF"},
    {"all fit, to the byte", true,
	PLAN_SPACE_RESERVE + NEED(3, 1000 + 2000 + 3000), {1000, 2000, 3000},
	"FFF"},
    {"the last one a byte short", true,
	PLAN_SPACE_RESERVE + NEED(3, 1000 + 2000 + 3000) - 1,
	{1000, 2000, 3000}, "FFS"},
    {"the second does not fit, the third does", true,
	PLAN_SPACE_RESERVE + NEED(2, 1000 + 2000) + 500, {1000, 5 * MiB, 2000},
	"FSF"},
    {"the first does not fit, the rest do", true,
	PLAN_SPACE_RESERVE + NEED(2, 1000 + 2000), {50 * MiB, 1000, 2000},
	"SFF"},
    {"in msgno order: the first takes the room", true,
	PLAN_SPACE_RESERVE + NEED(1, 3000), {3000, 1000, 2000}, "FSS"},
    {"none fits", true, PLAN_SPACE_RESERVE + NEED(1, 999), {1000, 2000, 3000},
	"SSS"},
    {"unknown free space: everything", false, 0, {1000, 50 * MiB, 3000}, "FFF"},
    {"huge sizes from the server do not add up past the limit", true,
	PLAN_SPACE_RESERVE + NEED(1, 10), {UINT64_MAX, UINT64_MAX / 2 + 1, 10},
	"SSF"},
};

START_TEST(space_table)
{
	const struct space_row *r = &space_rows[_i];
	struct plan_policy pol =
	    DEL(.space_known = r->known, .free_bytes = r->free_bytes);
	struct plan_msg m[3] = {
	    {.msgno = 1, .size = r->size[0], .listed = true, .uid = "a"},
	    {.msgno = 2, .size = r->size[1], .listed = true, .uid = "b"},
	    {.msgno = 3, .size = r->size[2], .listed = true, .uid = "c"},
	};
	struct plan_totals tot;
	char got[4] = "";
	size_t i, nfetch = 0;

	ck_assert_int_eq(plan_decide(m, 3, &pol, NOW, &tot), 0);
	for (i = 0; i < 3; i++) {
		if (m[i].action == PLAN_FETCH && m[i].reason == PLAN_R_NONE)
			got[i] = 'F';
		else if (m[i].action == PLAN_LEAVE &&
			 m[i].reason == PLAN_R_NO_SPACE)
			got[i] = 'S';
		else
			got[i] = '?';
		nfetch += got[i] == 'F';
	}
	if (strcmp(got, r->want) != 0)
		ck_abort_msg("%s: got %s, want %s", r->name, got, r->want);
	ck_assert_uint_eq(tot.fetch, nfetch);
	ck_assert_uint_eq(tot.no_space, 3 - nfetch);
	ck_assert_uint_eq(tot.leave, 3 - nfetch);
}
END_TEST

/* One mailbox with a message for every outcome: the totals add up. */
START_TEST(totals)
{
	struct plan_policy pol =
	    DEL(.max_message_size = 10 * MiB, .space_known = true,
		.free_bytes = PLAN_SPACE_RESERVE + NEED(2, 1000 + 3000));
	struct plan_msg m[] = {
	    {.msgno = 1, .size = 1000, .listed = true, .uid = "new1"},
	    {.msgno = 2,
		.size = 500,
		.listed = true,
		.uid = "done",
		.delivered = true,
		.first_seen = NOW - DAYS},
	    {.msgno = 3,
		.size = 200,
		.listed = true,
		.uid = "bad",
		.strikes = 3,
		.last_strike = NOW - HOUR},
	    {.msgno = 4, .size = 20 * MiB, .listed = true, .uid = "big"},
	    {.msgno = 5, .size = 2 * MiB, .listed = true, .uid = "nofit"},
	    {.msgno = 6, .size = 3000, .listed = true, .uid = "new2"},
	    {.msgno = 7,
		.size = 100,
		.listed = true,
		.uid = "bad2",
		.strikes = 4,
		.last_strike = NOW - 2 * DAYS},
	    {.msgno = 8, .size = 100, .listed = false, .uid = "nolist"},
	};
	enum plan_reason why[] = {PLAN_R_NONE, PLAN_R_NONE, PLAN_R_QUARANTINED,
	    PLAN_R_TOO_BIG, PLAN_R_NO_SPACE, PLAN_R_NONE, PLAN_R_NO_SPACE,
	    PLAN_R_NO_LISTING};
	struct plan_totals tot;
	size_t i;

	ck_assert_int_eq(plan_decide(m, 8, &pol, NOW, &tot), 0);
	for (i = 0; i < 8; i++)
		ck_assert_msg(m[i].reason == why[i], "message %zu: reason %d",
		    i + 1, m[i].reason);
	ck_assert_int_eq(m[0].action, PLAN_FETCH);
	ck_assert_int_eq(m[1].action, PLAN_DELETE);
	ck_assert_int_eq(m[5].action, PLAN_FETCH);
	ck_assert_uint_eq(tot.fetch, 2);
	ck_assert_uint_eq(tot.fetch_bytes, 4000);
	ck_assert_uint_eq(tot.dele, 1);
	ck_assert_uint_eq(tot.leave, 5);
	ck_assert_uint_eq(tot.quarantined, 1);
	ck_assert_uint_eq(tot.no_space, 2);
}
END_TEST

/* plan_decide() sets every output: stale values from a reuse do not stick. */
START_TEST(outputs_reset)
{
	struct plan_policy pol = DEL();
	struct plan_msg m = MSG(.size = 10, .uid = "a", .action = PLAN_DELETE,
	    .reason = PLAN_R_NO_SPACE);
	struct plan_totals tot;

	memset(&tot, 0xff, sizeof(tot));
	ck_assert_int_eq(plan_decide(&m, 1, &pol, NOW, &tot), 0);
	ck_assert_int_eq(m.action, PLAN_FETCH);
	ck_assert_int_eq(m.reason, PLAN_R_NONE);
	ck_assert_uint_eq(tot.fetch, 1);
	ck_assert_uint_eq(tot.no_space, 0);
	ck_assert_uint_eq(tot.quarantined, 0);
}
END_TEST

START_TEST(keep_needs_uidl)
{
	struct plan_policy pol = {.keep = true, .have_uidl = false};
	struct plan_msg m = MSG(.size = 10);
	struct plan_totals tot;

	errno = ENOMEM;
	ck_assert_int_eq(plan_decide(&m, 1, &pol, NOW, &tot), -1);
	/* The account's fault, not a lack of memory (that is temporary). */
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(duplicate_uids_delete_mode_fetched_by_number)
{
	struct plan_policy pol = DEL();
	struct plan_msg m[4] = {
	    {.msgno = 1, .size = 10, .listed = true, .uid = "x"},
	    {.msgno = 2,
		.size = 20,
		.listed = true,
		.uid = "dup",
		.delivered = true,
		.first_seen = NOW},
	    {.msgno = 3, .size = 30, .listed = true, .uid = "y"},
	    {.msgno = 4, .size = 40, .listed = true, .uid = "dup"},
	};
	struct plan_totals tot;

	ck_assert_int_eq(plan_decide(m, 4, &pol, NOW, &tot), 0);
	ck_assert_int_eq(m[0].action, PLAN_FETCH);
	ck_assert_int_eq(m[0].reason, PLAN_R_NONE);
	/* Delivered or not: which one the state meant is unknown. */
	ck_assert_int_eq(m[1].action, PLAN_FETCH);
	ck_assert_int_eq(m[1].reason, PLAN_R_DUP_UID);
	ck_assert_int_eq(m[2].action, PLAN_FETCH);
	ck_assert_int_eq(m[3].action, PLAN_FETCH);
	ck_assert_int_eq(m[3].reason, PLAN_R_DUP_UID);
	ck_assert_uint_eq(tot.fetch, 4);
	ck_assert_uint_eq(tot.fetch_bytes, 100);
	ck_assert_uint_eq(tot.leave, 0);
}
END_TEST

START_TEST(duplicate_uids_keep_mode_once_never_by_age)
{
	struct plan_policy pol = KEEP(.delete_after_days = 1);
	struct plan_msg m[3] = {
	    {.msgno = 1, .size = 10, .listed = true, .uid = "dup"},
	    {.msgno = 2, .size = 20, .listed = true, .uid = "dup"},
	    {.msgno = 3, .size = 30, .uid = "dup"},
	};
	struct plan_totals tot;
	size_t i;

	/* Not recorded yet: each listed copy is fetched. */
	ck_assert_int_eq(plan_decide(m, 3, &pol, NOW, &tot), 0);
	ck_assert_int_eq(m[0].action, PLAN_FETCH);
	ck_assert_int_eq(m[0].reason, PLAN_R_DUP_UID);
	ck_assert_int_eq(m[1].action, PLAN_FETCH);
	ck_assert_int_eq(m[2].action, PLAN_LEAVE);
	ck_assert_int_eq(m[2].reason, PLAN_R_NO_LISTING);
	/* Recorded long ago: all left, none deleted by age. */
	for (i = 0; i < 3; i++) {
		m[i].delivered = true;
		m[i].first_seen = NOW - 100 * DAYS;
	}
	ck_assert_int_eq(plan_decide(m, 3, &pol, NOW, &tot), 0);
	for (i = 0; i < 3; i++)
		ck_assert_int_eq(m[i].action, PLAN_LEAVE);
	ck_assert_uint_eq(tot.dele, 0);
}
END_TEST

/* A state of three records: "a" delivered with its size, "b" delivered
 * before sizes were kept, "c" struck twice. */
static bool
fake_known(void *arg, const char *uid, time_t *first_seen, uint64_t *size,
    bool *size_known)
{
	(*(int *)arg)++;
	if (strcmp(uid, "a") == 0) {
		*first_seen = 100;
		*size = 1234;
		*size_known = true;
		return true;
	}
	if (strcmp(uid, "b") == 0) {
		*first_seen = 200;
		*size_known = false;
		return true;
	}
	return false;
}

static unsigned
fake_strikes(void *arg, const char *uid, time_t *last)
{
	(*(int *)arg)++;
	if (strcmp(uid, "c") == 0) {
		*last = 300;
		return 2;
	}
	return 0;
}

START_TEST(fill_from_records)
{
	int calls = 0;
	struct plan_records rec = {fake_known, fake_strikes, &calls};
	/* Stale values in the input must not survive the fill. */
	struct plan_msg m[] = {
	    {.msgno = 1, .uid = "a", .strikes = 9},
	    {.msgno = 2, .uid = "b", .size_known = true},
	    {.msgno = 3, .uid = "c", .delivered = true},
	    {.msgno = 4, .uid = "d"},
	    {.msgno = 5, .uid = NULL, .delivered = true, .strikes = 4},
	};

	plan_fill(m, 5, &rec);
	ck_assert(m[0].delivered && m[0].first_seen == 100);
	ck_assert(m[0].size_known && m[0].delivered_size == 1234);
	ck_assert_uint_eq(m[0].strikes, 0);
	ck_assert(m[1].delivered && m[1].first_seen == 200 && !m[1].size_known);
	ck_assert(!m[2].delivered);
	ck_assert_uint_eq(m[2].strikes, 2);
	ck_assert(m[2].last_strike == 300);
	ck_assert(!m[3].delivered && m[3].strikes == 0);
	/* No UID, no record: nothing looked up for it. */
	ck_assert(!m[4].delivered && m[4].strikes == 0);
	/* 4 known() and 2 strikes() calls (for the undelivered "c", "d"). */
	ck_assert_int_eq(calls, 6);
}
END_TEST

START_TEST(listed_uids)
{
	struct plan_msg m[] = {
	    {.msgno = 1, .uid = "zz"},
	    {.msgno = 2, .uid = NULL},
	    {.msgno = 3, .uid = "aa"},
	    {.msgno = 4, .uid = "mm"},
	};
	struct plan_uids *u = plan_uids_new(m, 4);

	ck_assert_ptr_nonnull(u);
	ck_assert(plan_uids_has(u, "aa"));
	ck_assert(plan_uids_has(u, "mm"));
	ck_assert(plan_uids_has(u, "zz"));
	ck_assert(!plan_uids_has(u, "a"));
	ck_assert(!plan_uids_has(u, "zzz"));
	ck_assert(!plan_uids_has(u, ""));
	plan_uids_free(&u);
	ck_assert_ptr_null(u);
	/* An empty listing lists nothing. */
	u = plan_uids_new(m, 0);
	ck_assert_ptr_nonnull(u);
	ck_assert(!plan_uids_has(u, "aa"));
	plan_uids_free(&u);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("plan");
	TCase *tc = tcase_create("policy");

	tcase_add_loop_test(
	    tc, table, 0, (int)(sizeof(rows) / sizeof(rows[0])));
	tcase_add_loop_test(tc, space_table, 0,
	    (int)(sizeof(space_rows) / sizeof(space_rows[0])));
	tcase_add_test(tc, totals);
	tcase_add_test(tc, outputs_reset);
	tcase_add_test(tc, keep_needs_uidl);
	tcase_add_test(tc, duplicate_uids_delete_mode_fetched_by_number);
	tcase_add_test(tc, duplicate_uids_keep_mode_once_never_by_age);
	tcase_add_test(tc, fill_from_records);
	tcase_add_test(tc, listed_uids);
	suite_add_tcase(s, tc);
	return check_main(s);
}
