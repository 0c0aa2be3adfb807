/*
 * sclass: how a poll ended, so policy can act (retry, back off, pause).
 * A leaf: the session reports a class, the back-off policy and the exit
 * status read it, and neither needs the other's header for it.
 */
#ifndef POPFETCHD_SCLASS_H
#define POPFETCHD_SCLASS_H

enum session_class {
	SC_OK,
	SC_NET,	   /* connection, timeout, TLS: retry with back-off */
	SC_BUSY,   /* server busy, [IN-USE], [SYS/TEMP], state locked */
	SC_PROTO,  /* the server broke the protocol */
	SC_AUTH,   /* authentication refused */
	SC_LOCAL,  /* Maildir or state unwritable, disk full */
	SC_CONFIG, /* the account asks for something we cannot do */
	SC_COUNT
};

#endif
