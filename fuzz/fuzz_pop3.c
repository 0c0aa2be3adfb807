/*
 * libFuzzer target for the POP3 engine: the first bytes choose the
 * commands in flight and how the rest is segmented; the rest is what the
 * server says. Every event is checked against the engine's contract, and
 * the events of the segmented feed must equal those of the whole feed.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pop3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const enum pop3_cmd cmds[] = {POP3_CMD_CAPA, POP3_CMD_USER,
    POP3_CMD_AUTH, POP3_CMD_STAT, POP3_CMD_LIST, POP3_CMD_UIDL, POP3_CMD_RETR,
    POP3_CMD_TOP, POP3_CMD_DELE, POP3_CMD_STLS, POP3_CMD_QUIT, POP3_CMD_NOOP};

/* The events of one run, message data merged across chunks. */
struct record {
	char *s;
	size_t len, cap;
	bool in_data;
};

static void
put(struct record *r, const void *p, size_t n)
{
	if (r->len + n > r->cap) {
		r->cap = (r->len + n) * 2 + 64;
		r->s = realloc(r->s, r->cap);
		assert(r->s != NULL);
	}
	memcpy(r->s + r->len, p, n);
	r->len += n;
}

static void
put_str(struct record *r, const char *s)
{
	if (s != NULL)
		put(r, s, strlen(s) + 1);
	else
		put(r, "-", 1);
}

static void
record_event(struct record *r, const struct pop3_event *ev)
{
	unsigned long nums[] = {
	    ev->type, ev->cmd, ev->arg, ev->ok, ev->code, ev->msgno};

	if (ev->type == POP3_EV_DATA) {
		if (!r->in_data)
			put(r, "[", 1);
		r->in_data = true;
		put(r, ev->data, ev->len);
		return;
	}
	if (r->in_data)
		put(r, "]", 1);
	r->in_data = false;
	put(r, nums, sizeof(nums));
	put(r, &ev->size, sizeof(ev->size));
	put_str(r, ev->text);
	put_str(r, ev->timestamp);
	put_str(r, ev->uid);
}

static void
check_event(const struct pop3_event *ev)
{
	switch (ev->type) {
	case POP3_EV_DATA:
		assert(ev->len > 0 && ev->data != NULL);
		break;
	case POP3_EV_UIDL:
		assert(ev->uid != NULL && strlen(ev->uid) >= 1 &&
		       strlen(ev->uid) <= POP3_UID_MAX);
		/* FALLTHROUGH */
	case POP3_EV_LIST:
		assert(ev->msgno >= 1 && ev->msgno <= POP3_MSGNO_MAX);
		break;
	case POP3_EV_OK:
	case POP3_EV_ERR:
	case POP3_EV_GREETING:
	case POP3_EV_CONTINUE:
	case POP3_EV_CAPA:
	case POP3_EV_ERROR:
		assert(ev->text != NULL && strlen(ev->text) <= POP3_LINE_MAX);
		break;
	default:
		break;
	}
}

/* Queues the commands the bytes CMDS choose. */
static void
queue(struct pop3 *p, const uint8_t *c, size_t n)
{
	char out[POP3_CMDLINE_MAX + 1];
	size_t i;

	for (i = 0; i < n; i++) {
		struct pop3_req r = {
		    .cmd = cmds[c[i] % (sizeof(cmds) / sizeof(cmds[0]))],
		    .msgno = c[i] & 0x80 ? 0 : 1 + (c[i] & 7),
		    .arg = "user"};
		if (r.cmd == POP3_CMD_RETR || r.cmd == POP3_CMD_TOP ||
		    r.cmd == POP3_CMD_DELE)
			r.msgno = 1 + (c[i] & 7);
		pop3_request(p, &r, out, sizeof(out));
	}
}

/* Feeds DATA in pieces of at most STEP bytes, recording events in R. */
static void
run(const uint8_t *c, size_t ncmds, const uint8_t *data, size_t size,
    size_t step, struct record *r)
{
	struct pop3 *p = pop3_new();
	struct pop3_event ev;
	size_t off, n;

	assert(p != NULL);
	queue(p, c, ncmds);
	for (off = 0; off < size;) {
		size_t piece = size - off < step ? size - off : step;

		n = pop3_feed(p, (const char *)data + off, piece, &ev);
		assert(n <= piece);
		check_event(&ev);
		if (ev.type != POP3_EV_NONE)
			record_event(r, &ev);
		if (ev.type == POP3_EV_ERROR)
			break;
		assert(n > 0 || ev.type != POP3_EV_NONE);
		if (ev.type == POP3_EV_NONE)
			assert(n == piece);
		off += n;
	}
	put(r, pop3_lf_only(p) ? "L" : "C", 1);
	pop3_free(&p);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct record whole = {0}, split = {0};
	const uint8_t *c;
	size_t ncmds, step;

	if (size < 2)
		return 0;
	ncmds = data[0] % 16;
	step = (size_t)data[1] + 1;
	data += 2;
	size -= 2;
	if (ncmds > size)
		ncmds = size;
	c = data;
	data += ncmds;
	size -= ncmds;
	run(c, ncmds, data, size, step, &split);
	run(c, ncmds, data, size, size > 0 ? size : 1, &whole);
	assert(
	    split.len == whole.len && memcmp(split.s, whole.s, whole.len) == 0);
	free(split.s);
	free(whole.s);
	return 0;
}
