/*
 * pop3: the POP3 protocol engine, without I/O. Requests go in and come out
 * as command bytes for the caller to send; server bytes go in and come out
 * as a closed set of events. The engine knows nothing of sockets, TLS,
 * files or the clock, so it can be fed bytes split anywhere.
 *
 * Every reply is paired with the command it answers: the engine keeps the
 * commands in flight in order (several of them when the caller pipelines).
 *
 * Line endings in message data. RFC 1939 ends lines with CRLF, and only
 * CRLF "." CRLF ends a multi-line reply; a bare LF inside a message is
 * data (mail is full of them), and a '.' after it is data too, kept as it
 * is, since the server neither stuffed it nor ends on it. Treating a bare
 * LF as a line end would cut a message short at "\n.\r\n" or "\n.\n",
 * and the cut copy would be delivered, recorded and deleted. Some old
 * servers speak LF only, though; the engine learns which kind it talks to
 * from the first status line of the connection (the greeting, or the
 * first reply after the TLS handshake, since nothing said before TLS is
 * trusted): a bare LF there makes the connection LF-only, where any LF
 * ends a line and "." LF ends a reply. Message bodies never decide it, so
 * no message can switch a CRLF connection to the lenient rule. Status and
 * listing lines accept either ending on any connection: they are short and
 * parsed whole, so a misread one fails loudly instead of becoming mail. On
 * a CRLF connection "." LF at a line start is no end either: as RFC 1939
 * says for a dot followed by anything but CRLF, the dot is stuffing and
 * dropped, and the LF is data. A server that meant it as an end would make
 * the poll time out, and a message that did not end is never kept.
 */
#ifndef POP3_H
#define POP3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "uid.h"

/*
 * Limits on what the server controls, each with its reason:
 * - a status or listing line is short by nature (RFC 2449 caps a response
 *   at 512 octets); 8 KiB leaves room for chatty servers while a longer
 *   line is an attack, not mail. Message bodies are not lines: they are
 *   streamed, and a body line may have any length.
 * - RFC 1939 says a UID is 1 to 70 characters in 0x21..0x7E (uid.h); we
 *   hold servers to it, because a UID goes into our state file and a
 *   violating one cannot be stored safely.
 * - message numbers above a million are not a mailbox anyone fetches over
 *   POP3; the cap keeps per-message bookkeeping bounded.
 * - 256 CAPA lines is far beyond any server's capability list.
 * - POP3_QUEUE_MAX bounds the commands in flight when pipelining.
 */
#define POP3_LINE_MAX	 8192
#define POP3_UID_MAX	 UID_MAX
#define POP3_MSGNO_MAX	 1000000UL
#define POP3_CAPA_MAX	 256
#define POP3_QUEUE_MAX	 512
#define POP3_SASL_MAX	 256
#define POP3_IMPL_MAX	 128
#define POP3_CMDLINE_MAX 1024
/*
 * An AUTH continuation line carries a whole SASL response; an OAuth token
 * of several KiB is common (RFC 5034's 255 octets bound only the AUTH
 * command with its initial response).
 */
#define POP3_AUTHLINE_MAX 32768

enum pop3_cmd {
	POP3_CMD_GREETING, /* pseudo-command: what the server says first */
	POP3_CMD_USER,
	POP3_CMD_PASS,
	POP3_CMD_APOP,
	POP3_CMD_RPOP,
	POP3_CMD_AUTH,
	POP3_CMD_CAPA,
	POP3_CMD_STLS,
	POP3_CMD_UTF8,
	POP3_CMD_STAT,
	POP3_CMD_LIST,
	POP3_CMD_UIDL,
	POP3_CMD_RETR,
	POP3_CMD_TOP,
	POP3_CMD_DELE,
	POP3_CMD_RSET,
	POP3_CMD_NOOP,
	POP3_CMD_QUIT,
	POP3_CMD_COUNT
};

enum pop3_ev {
	POP3_EV_NONE,	  /* all input consumed, no event complete yet */
	POP3_EV_GREETING, /* ok, text, timestamp */
	POP3_EV_OK,	  /* +OK; multi-line replies continue until END */
	POP3_EV_ERR,	  /* -ERR, with code */
	POP3_EV_CONTINUE, /* "+ " during AUTH: text is the challenge */
	POP3_EV_CAPA,	  /* one capability line (text) */
	POP3_EV_LIST,	  /* msgno, size */
	POP3_EV_UIDL,	  /* msgno, uid */
	POP3_EV_DATA,	  /* data, len: message bytes, dot-unstuffed */
	POP3_EV_END,	  /* end of a multi-line reply */
	POP3_EV_ERROR,	  /* protocol error (text); the engine is dead */
	POP3_EV_COUNT
};

/* RFC 2449 and RFC 3206 response codes. */
enum pop3_code {
	POP3_CODE_NONE,
	POP3_CODE_IN_USE,
	POP3_CODE_LOGIN_DELAY,
	POP3_CODE_SYS_TEMP,
	POP3_CODE_SYS_PERM,
	POP3_CODE_AUTH,
	POP3_CODE_UTF8,
	POP3_CODE_OTHER,
};

struct pop3_capa {
	bool top, uidl, user, stls, pipelining, resp_codes, auth_resp_code;
	bool utf8, sasl_ir;
	char sasl[POP3_SASL_MAX]; /* mechanism names, space separated */
	long login_delay;	  /* seconds; -1: not announced */
	long expire;		  /* days; -1: not announced, -2: NEVER */
	char implementation[POP3_IMPL_MAX];
};

/*
 * An event. Pointers in it (text, timestamp, uid, data) borrow from the
 * engine or from the bytes passed to pop3_feed(), and stay valid until
 * the next call into the engine.
 */
struct pop3_event {
	enum pop3_ev type;
	enum pop3_cmd cmd; /* the command this answers */
	unsigned long arg; /* that command's message number, if any */
	bool ok;	   /* GREETING: +OK */
	enum pop3_code code;
	const char *text;      /* status text after the response code */
	const char *timestamp; /* GREETING: APOP timestamp, or NULL */
	unsigned long msgno;   /* LIST, UIDL; OK to STAT: message count */
	uint64_t size;	       /* LIST; OK to STAT: mailbox size */
	const char *uid;       /* UIDL */
	const char *data;      /* DATA */
	size_t len;	       /* DATA */
};

struct pop3_req {
	enum pop3_cmd cmd;
	unsigned long msgno; /* LIST, UIDL (0: all), RETR, TOP, DELE */
	unsigned long lines; /* TOP */
	const char *arg;  /* USER, PASS, APOP and RPOP name, AUTH mechanism */
	const char *arg2; /* APOP digest, AUTH initial response (or NULL) */
};

struct pop3;

struct pop3 *pop3_new(void);
void pop3_free(struct pop3 **p);

/*
 * Formats the command for REQ into OUT (with CRLF) and queues it as in
 * flight. Returns its length, or -1 if the request is invalid (an argument
 * with CR, LF or NUL, or too long), the queue is full, or the engine is
 * dead or waiting for TLS.
 */
int pop3_request(
    struct pop3 *p, const struct pop3_req *req, char *out, size_t outsz);

/* Formats an AUTH continuation line (base64 or "*"). -1 as above. */
int pop3_auth_response(
    struct pop3 *p, const char *line, char *out, size_t outsz);

/*
 * Consumes server bytes from BUF until one event is complete or BUF is
 * used up. Returns the number of bytes consumed (possibly 0 with an event)
 * and fills EV (type NONE if no event completed, in which case all LEN
 * bytes were consumed). Call again with the rest. After a POP3_EV_ERROR
 * every call returns that error and consumes nothing.
 */
size_t pop3_feed(
    struct pop3 *p, const char *buf, size_t len, struct pop3_event *ev);

/* Commands in flight (sent, not yet fully answered). */
size_t pop3_pending(const struct pop3 *p);

/*
 * After the +OK to STLS the engine accepts no bytes until the caller has
 * finished the TLS handshake and calls this; capabilities are forgotten.
 */
void pop3_tls_started(struct pop3 *p);

/*
 * Whether the server was found to end lines with a bare LF (see the top
 * of this file); false until the first status line has been read.
 */
bool pop3_lf_only(const struct pop3 *p);

/* Capabilities from the last complete CAPA reply. */
const struct pop3_capa *pop3_capa(const struct pop3 *p);

/* Whether the server offers the SASL mechanism MECH (case-insensitive). */
bool pop3_capa_has_sasl(const struct pop3 *p, const char *mech);

const char *pop3_cmd_name(enum pop3_cmd cmd);
const char *pop3_ev_name(enum pop3_ev ev);
const char *pop3_code_name(enum pop3_code code);

#endif
