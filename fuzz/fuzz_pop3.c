/*
 * libFuzzer target for the POP3 engine: the first bytes choose the
 * commands in flight and how the rest is segmented; the rest is what the
 * server says. Every event is checked against the engine's contract.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pop3.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const enum pop3_cmd cmds[] = {POP3_CMD_CAPA, POP3_CMD_USER,
    POP3_CMD_AUTH, POP3_CMD_STAT, POP3_CMD_LIST, POP3_CMD_UIDL, POP3_CMD_RETR,
    POP3_CMD_TOP, POP3_CMD_DELE, POP3_CMD_STLS, POP3_CMD_QUIT, POP3_CMD_NOOP};

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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pop3 *p;
	struct pop3_event ev;
	char out[POP3_CMDLINE_MAX + 1];
	size_t i, ncmds, step, off, n;

	if (size < 2)
		return 0;
	ncmds = data[0] % 16;
	step = (size_t)data[1] + 1;
	data += 2;
	size -= 2;
	if (ncmds > size)
		ncmds = size;
	p = pop3_new();
	for (i = 0; i < ncmds; i++) {
		struct pop3_req r = {
		    .cmd = cmds[data[i] % (sizeof(cmds) / sizeof(cmds[0]))],
		    .msgno = data[i] & 0x80 ? 0 : 1 + (data[i] & 7),
		    .arg = "user"};
		if (r.cmd == POP3_CMD_RETR || r.cmd == POP3_CMD_TOP ||
		    r.cmd == POP3_CMD_DELE)
			r.msgno = 1 + (data[i] & 7);
		pop3_request(p, &r, out, sizeof(out));
	}
	data += ncmds;
	size -= ncmds;
	for (off = 0; off < size;) {
		size_t piece = size - off < step ? size - off : step;

		n = pop3_feed(p, (const char *)data + off, piece, &ev);
		assert(n <= piece);
		check_event(&ev);
		if (ev.type == POP3_EV_ERROR)
			break;
		assert(n > 0 || ev.type != POP3_EV_NONE);
		if (ev.type == POP3_EV_NONE)
			assert(n == piece);
		off += n;
	}
	pop3_free(&p);
	return 0;
}
