/*
 * Authentication, whose steps are states of their own (S_USER ...
 * S_SCRAM_END): USER/PASS, APOP, RPOP, SASL (PLAIN, LOGIN, XOAUTH2,
 * OAUTHBEARER, EXTERNAL) and SCRAM through GNU SASL with channel binding.
 * Nothing secret is sent before TLS unless the account allows plain text.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "conf.h"
#include "log.h"
#include "session_priv.h"
#include "tls.h"
#include "wipe.h"

/*
 * RFC 5034: an AUTH command line with its initial response is at most 255
 * octets; a longer response (an OAuth token) goes after an empty challenge.
 */
#define AUTH_LINE_MAX 255
/* RFC 9266: the exporter label and length of tls-exporter. */
#define CB_EXPORTER_LABEL "EXPORTER-Channel-Binding"
#define CB_EXPORTER_LEN	  32
/* A Finished message: 12 bytes in TLS 1.2, room for any cipher suite. */
#define CB_MAX 64

static void sasl_send(struct session *s, const char *line);
static void logged_in(struct session *s);

/* s->ir, made if need be; NULL after failing the session. */
static char *
ir_buf(struct session *s)
{
	if (s->ir == NULL && (s->ir = malloc(SESSION_IR_SIZE)) == NULL)
		session_fail(s, SC_LOCAL, "out of memory");
	return s->ir;
}

void
session_ir_drop(struct session *s)
{
	if (s->ir == NULL)
		return;
	wipe(s->ir, SESSION_IR_SIZE);
	free(s->ir);
	s->ir = NULL;
}

static enum session_class
refusal_class(const struct pop3_event *ev)
{
	switch (ev->code) {
	case POP3_CODE_IN_USE:
	case POP3_CODE_LOGIN_DELAY:
	case POP3_CODE_SYS_TEMP:
		return SC_BUSY;
	default:
		return SC_AUTH;
	}
}

/*
 * Sends AUTH MECH with the initial response IR (base64, or NULL); ST is
 * the state that awaits the reply.
 */
static void
start_sasl(
    struct session *s, enum session_state st, const char *mech, const char *ir)
{
	struct pop3_req r = {.cmd = POP3_CMD_AUTH, .arg = mech, .arg2 = ir};

	session_set_state(s, st);
	s->ir_pending = false;
	if (ir != NULL &&
	    strlen("AUTH  \r\n") + strlen(mech) + strlen(ir) > AUTH_LINE_MAX) {
		/* IR is s->ir when login_sasl() built it there. */
		if (ir != s->ir && ir_buf(s) == NULL)
			return;
		if (ir != s->ir)
			snprintf(s->ir, SESSION_IR_SIZE, "%s", ir);
		s->ir_pending = true;
		r.arg2 = NULL;
	}
	session_send(s, &r);
}

/* Builds the initial response for the configured SASL mechanism. */
static int
sasl_response(struct session *s, char *ir, size_t irlen)
{
	const struct account *a = s->a;

	switch (a->auth) {
	case CONF_AUTH_XOAUTH2:
		return auth_xoauth2(a->user, s->secret, ir, irlen);
	case CONF_AUTH_OAUTHBEARER:
		return auth_oauthbearer(
		    a->user, a->host, a->port, s->secret, ir, irlen);
	case CONF_AUTH_EXTERNAL:
		return auth_external(ir, irlen);
	default:
		return auth_plain(a->user, s->secret, ir, irlen);
	}
}

/* RFC 4422 3.1: mechanism names are upper case on the wire. */
static const char *
sasl_name(enum conf_auth auth)
{
	switch (auth) {
	case CONF_AUTH_XOAUTH2:
		return "XOAUTH2";
	case CONF_AUTH_OAUTHBEARER:
		return "OAUTHBEARER";
	case CONF_AUTH_EXTERNAL:
		return "EXTERNAL";
	case CONF_AUTH_LOGIN:
		return "LOGIN";
	case CONF_AUTH_SCRAM_SHA_1:
		return "SCRAM-SHA-1";
	case CONF_AUTH_SCRAM_SHA_1_PLUS:
		return "SCRAM-SHA-1-PLUS";
	case CONF_AUTH_SCRAM_SHA_256:
		return "SCRAM-SHA-256";
	case CONF_AUTH_SCRAM_SHA_256_PLUS:
		return "SCRAM-SHA-256-PLUS";
	default:
		return "PLAIN";
	}
}

static void
login_sasl(struct session *s, const char *mech)
{
	if (ir_buf(s) == NULL)
		return;
	if (sasl_response(s, s->ir, SESSION_IR_SIZE) < 0) {
		session_fail(s, SC_CONFIG,
		    "auth %s: credentials invalid or too long", mech);
		return;
	}
	start_sasl(s, S_SASL, mech, s->ir);
	s->mech = mech;
	if (!s->ir_pending)
		session_ir_drop(s);
}

/*
 * The channel binding data of the TLS connection: tls-exporter (RFC
 * 9266) on TLS 1.3, where tls-unique is undefined; tls-unique (RFC 5929,
 * the first Finished message) on TLS 1.2; or what the account asks for.
 * AUTH_CB_NONE without TLS.
 */
static enum auth_cb
channel_binding(struct session *s, unsigned char *cb, size_t *cblen)
{
	SSL *ssl = s->tls_active ? net_ssl(s->net) : NULL;
	enum conf_cb want = s->a->channel_binding;
	size_t n;

	if (ssl == NULL)
		return AUTH_CB_NONE;
	if (want == CONF_CB_AUTO)
		want = SSL_version(ssl) >= TLS1_3_VERSION ? CONF_CB_TLS_EXPORTER
							  : CONF_CB_TLS_UNIQUE;
	if (want == CONF_CB_TLS_EXPORTER) {
		/* Safe on TLS 1.2 only with extended master secret. */
		if ((SSL_version(ssl) < TLS1_3_VERSION &&
			!SSL_get_extms_support(ssl)) ||
		    SSL_export_keying_material(ssl, cb, CB_EXPORTER_LEN,
			CB_EXPORTER_LABEL, strlen(CB_EXPORTER_LABEL), NULL, 0,
			0) != 1)
			return AUTH_CB_NONE;
		*cblen = CB_EXPORTER_LEN;
		return AUTH_CB_TLS_EXPORTER;
	}
	/* The first Finished: the server's on a resumed session. */
	n = SSL_session_reused(ssl) ? SSL_get_peer_finished(ssl, cb, CB_MAX)
				    : SSL_get_finished(ssl, cb, CB_MAX);
	if (n == 0 || n > CB_MAX)
		return AUTH_CB_NONE;
	*cblen = n;
	return AUTH_CB_TLS_UNIQUE;
}

/* Where a SCRAM step's failure puts the session. */
static void
scram_failed(struct session *s, enum auth_step st, const char *err)
{
	switch (st) {
	case AUTH_STEP_PROTO:
		session_fail(s, SC_PROTO, "auth %s: %s", s->mech, err);
		return;
	case AUTH_STEP_LOCAL:
		session_fail(s, SC_LOCAL, "auth %s: %s", s->mech, err);
		return;
	default:
		session_fail(s, SC_AUTH, "auth %s: %s", s->mech, err);
		return;
	}
}

/* Starts a SCRAM exchange: AUTH with the client-first-message. */
static void
login_scram(struct session *s, const char *mech)
{
	unsigned char cb[CB_MAX];
	enum auth_cb cbt = AUTH_CB_NONE;
	enum auth_step st;
	size_t cblen = 0;
	char err[256];

	s->mech = mech;
	if (auth_mech_plus(mech) &&
	    (cbt = channel_binding(s, cb, &cblen)) == AUTH_CB_NONE) {
		session_fail(s, SC_CONFIG,
		    "auth %s: no TLS channel to bind the login to", mech);
		return;
	}
	s->scram = auth_scram_start(
	    mech, s->a->user, s->secret, cbt, cb, cblen, err, sizeof(err));
	if (s->scram == NULL) {
		session_fail(s, SC_LOCAL, "auth %s: %s", mech, err);
		return;
	}
	if (ir_buf(s) == NULL)
		return;
	st = auth_scram_step(
	    s->scram, NULL, s->ir, SESSION_IR_SIZE, err, sizeof(err));
	if (st != AUTH_STEP_MORE) {
		scram_failed(s, st, err);
		return;
	}
	log_debug(s->a->name, "scram mech=%s cb=%s", mech,
	    cbt == AUTH_CB_TLS_EXPORTER ? "tls-exporter"
	    : cbt == AUTH_CB_TLS_UNIQUE ? "tls-unique"
					: "none");
	start_sasl(s, S_SCRAM_FIRST, mech, s->ir);
	if (!s->ir_pending)
		session_ir_drop(s);
}

/*
 * Answers a SCRAM challenge: the server-first-message gets our proof,
 * the server-final-message is checked and gets the empty line POP3 wants
 * (RFC 5034 4) once the server has proved it knows the password.
 */
static void
scram_continue(struct session *s, const struct pop3_event *ev)
{
	enum auth_step st;
	char err[256];

	if (ir_buf(s) == NULL)
		return;
	st = auth_scram_step(
	    s->scram, ev->text, s->ir, SESSION_IR_SIZE, err, sizeof(err));
	if (st == AUTH_STEP_MORE || st == AUTH_STEP_DONE) {
		sasl_send(s, st == AUTH_STEP_MORE ? s->ir : "");
		session_ir_drop(s);
		if (s->state != S_DONE)
			session_set_state(s,
			    st == AUTH_STEP_MORE ? S_SCRAM_FINAL : S_SCRAM_END);
		return;
	}
	scram_failed(s, st, err);
}

static void
login_apop(struct session *s)
{
	struct pop3_req r = {.cmd = POP3_CMD_APOP, .arg = s->a->user};
	char digest[33];

	if (s->timestamp[0] == '\0') {
		session_fail(s, SC_AUTH,
		    "auth apop: the server's greeting has no APOP timestamp");
		return;
	}
	if (auth_apop(s->timestamp, s->secret, digest, sizeof(digest)) < 0) {
		session_fail(
		    s, SC_LOCAL, "auth apop: cannot compute the digest");
		return;
	}
	r.arg2 = digest;
	s->mech = "APOP";
	session_set_state(s, S_PASS);
	session_send(s, &r);
}

void
session_start_auth(struct session *s)
{
	const struct account *a = s->a;
	struct pop3_req r = {.cmd = POP3_CMD_USER, .arg = a->user};
	unsigned char cb[CB_MAX];
	const char *mech;
	size_t cblen;

	if (!s->tls_active && !a->allow_plaintext) {
		session_fail(
		    s, SC_CONFIG, "refusing to send credentials without TLS");
		return;
	}
	if (s->mode == SESSION_FETCH && !s->local_ready) {
		s->login_waits = true;
		return;
	}
	switch (a->auth) {
	case CONF_AUTH_AUTO:
		/* The strongest both offer; never a silent fallback later. */
		mech = auth_auto_mech(pop3_capa(s->pop3)->sasl,
		    channel_binding(s, cb, &cblen) != AUTH_CB_NONE);
		if (mech != NULL && strncmp(mech, "SCRAM-", 6) == 0) {
			login_scram(s, mech);
			return;
		}
		if (mech != NULL) {
			login_sasl(s, mech);
			return;
		}
		break;
	case CONF_AUTH_SCRAM_SHA_1:
	case CONF_AUTH_SCRAM_SHA_1_PLUS:
	case CONF_AUTH_SCRAM_SHA_256:
	case CONF_AUTH_SCRAM_SHA_256_PLUS:
		login_scram(s, sasl_name(a->auth));
		return;
	case CONF_AUTH_PLAIN:
	case CONF_AUTH_XOAUTH2:
	case CONF_AUTH_OAUTHBEARER:
	case CONF_AUTH_EXTERNAL:
		login_sasl(s, sasl_name(a->auth));
		return;
	case CONF_AUTH_LOGIN:
		s->mech = "LOGIN";
		start_sasl(s, S_SASL, "LOGIN", NULL);
		return;
	case CONF_AUTH_APOP:
		login_apop(s);
		return;
	case CONF_AUTH_USER:
		break;
	case CONF_AUTH_RPOP:
		break;
	}
	s->mech = a->auth == CONF_AUTH_RPOP ? "USER/RPOP" : "USER/PASS";
	session_set_state(s, S_USER);
	session_send(s, &r);
}

/* Sends one SASL continuation line (a secret: masked in the trace). */
static void
sasl_send(struct session *s, const char *line)
{
	char buf[SESSION_IR_SIZE + 4];
	int n;

	if ((n = pop3_auth_response(s->pop3, line, buf, sizeof(buf))) < 0) {
		session_fail(s, SC_CONFIG, "SASL response too long");
		return;
	}
	session_send_secret(s, buf, n);
	wipe(buf, sizeof(buf));
}

/* The server's SASL error (OAuth: base64 JSON), for the log. */
static void
log_server_error(struct session *s, const char *b64)
{
	unsigned char buf[1024];
	size_t n, i;

	if (auth_base64_decode(b64, buf, sizeof(buf) - 1, &n) == -1)
		return;
	for (i = 0; i < n; i++)
		if (buf[i] < 0x20 || buf[i] > 0x7e)
			buf[i] = '?';
	buf[n] = '\0';
	log_warnx(s->a->name, "server says: %s", (char *)buf);
}

/* Answers a SASL challenge. */
static void
sasl_continue(struct session *s, const struct pop3_event *ev)
{
	char line[AUTH_BASE64_SIZE(SECRET_MAX)];
	const char *v;

	if (s->ir_pending) {
		s->ir_pending = false;
		sasl_send(s, s->ir);
		session_ir_drop(s);
		return;
	}
	if (s->scram != NULL) {
		scram_continue(s, ev);
		return;
	}
	switch (s->a->auth) {
	case CONF_AUTH_XOAUTH2:
		/* A failure comes as a challenge; an empty reply ends it. */
		log_server_error(s, ev->text);
		sasl_send(s, "");
		return;
	case CONF_AUTH_OAUTHBEARER:
		/* RFC 7628 3.2.3: the client answers an error with %x01. */
		log_server_error(s, ev->text);
		sasl_send(s, "AQ==");
		return;
	case CONF_AUTH_LOGIN:
		if (s->state == S_LOGIN_PASS)
			break;
		v = s->state == S_SASL ? s->a->user : s->secret;
		if (auth_base64(v, strlen(v), line, sizeof(line)) < 0) {
			session_fail(s, SC_CONFIG, "credentials too long");
			return;
		}
		sasl_send(s, line);
		wipe(line, sizeof(line));
		session_set_state(
		    s, s->state == S_SASL ? S_LOGIN_USER : S_LOGIN_PASS);
		return;
	default:
		break;
	}
	/* RFC 5034: "*" cancels the exchange; the -ERR that follows fails. */
	sasl_send(s, "*");
}

void
session_st_auth(struct session *s, const struct pop3_event *ev)
{
	struct pop3_req r = {.cmd = POP3_CMD_PASS};
	char why[POP3_LINE_MAX + 32];

	if (ev->type == POP3_EV_CONTINUE) {
		sasl_continue(s, ev);
		return;
	}
	if (ev->type == POP3_EV_ERR) {
		/* Servers that predate RFC 9266 bind TLS 1.3 with tls-unique.
		 */
		if (s->scram != NULL &&
		    auth_scram_cb(s->scram) == AUTH_CB_TLS_EXPORTER)
			log_warnx(s->a->name,
			    "%s with tls-exporter refused; a server that binds TLS 1.3 with tls-unique (Cyrus 3.6) needs channel_binding = \"tls-unique\"",
			    s->mech);
		session_fail(s, refusal_class(ev), "authentication failed: %s",
		    session_reply_text(ev, why, sizeof(why)));
		return;
	}
	if (ev->type != POP3_EV_OK)
		return;
	/* RFC 5802: a server that has not proved itself is not trusted. */
	if (s->scram != NULL && !auth_scram_verified(s->scram)) {
		session_fail(s, SC_AUTH,
		    "auth %s: the server accepted the login without proving it knows the password",
		    s->mech);
		return;
	}
	if (s->state == S_USER) {
		/* RFC 1939: RPOP, like PASS, follows USER. */
		if (s->a->auth == CONF_AUTH_RPOP)
			r.cmd = POP3_CMD_RPOP;
		r.arg = s->secret;
		session_set_state(s, S_PASS);
		session_send(s, &r);
		return;
	}
	logged_in(s);
}

/* The server accepted the credentials: the listing begins. */
static void
logged_in(struct session *s)
{
	session_secret_drop(s);
	auth_scram_free(&s->scram);
	evtimer_del(s->login_ev);
	log_debug(s->a->name, "logged in");
	session_report(
	    s, &(struct session_info){.kind = SI_LOGIN, .text = s->mech});
	session_listing_begin(s);
}
