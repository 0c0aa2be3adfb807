/*
 * From connection to the credentials: TLS (implicit or after STLS), the
 * greeting, the capabilities and UTF-8 mode; then session_auth.c.
 */
#include <string.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "conf.h"
#include "log.h"
#include "session_priv.h"
#include "tls.h"
#include "wipe.h"

static void after_capa(struct session *s);

/* ---- TLS ---- */

void
session_start_tls(struct session *s)
{
	SSL *ssl = tls_ssl_new(s->ctx, s->a);

	if (ssl == NULL || net_start_tls(s->net, ssl) == -1) {
		session_fail(s, SC_LOCAL, "cannot start TLS");
		return;
	}
	session_set_state(s, S_TLS);
}

/* For a probe: the TLS parameters, the chain, the key's pin. */
static void
report_chain(struct session *s, const char *info)
{
	struct tls_cert_desc d;
	char pin[80];
	int i;

	if (!tls_peer_pin(net_ssl(s->net), pin, sizeof(pin)))
		pin[0] = '\0';
	session_report(s,
	    &(struct session_info){.kind = SI_TLS, .text = info, .pin = pin});
	for (i = 0; tls_peer_cert(net_ssl(s->net), i, &d); i++)
		session_report(s, &(struct session_info){.kind = SI_CERT,
				      .msgno = (unsigned long)i,
				      .subject = d.subject,
				      .issuer = d.issuer,
				      .not_before = d.not_before,
				      .not_after = d.not_after});
}

void
session_tls_ready(struct session *s)
{
	char err[256], info[128];

	if (!tls_check_pins(net_ssl(s->net), s->a, err, sizeof(err))) {
		session_fail(s, SC_NET, "%s", err);
		return;
	}
	s->tls_active = true;
	tls_summary(net_ssl(s->net), info, sizeof(info));
	log_debug(s->a->name, "tls=\"%s\"", info);
	if (s->mode != SESSION_FETCH)
		report_chain(s, info);
	if (s->a->tls == CONF_TLS_IMPLICIT) {
		session_set_state(s, S_GREETING);
		return;
	}
	pop3_tls_started(s->pop3);
	session_send_cmd(s, POP3_CMD_CAPA, 0);
	session_set_state(s, S_CAPA);
}

/* ---- greeting, capabilities, STLS ---- */

void
session_st_greeting(struct session *s, const struct pop3_event *ev)
{
	if (ev->type != POP3_EV_GREETING)
		return;
	if (!ev->ok) {
		session_fail(
		    s, SC_BUSY, "server refused the session: %s", ev->text);
		return;
	}
	session_report(
	    s, &(struct session_info){.kind = SI_GREETING, .text = ev->text});
	if (ev->timestamp != NULL)
		snprintf(
		    s->timestamp, sizeof(s->timestamp), "%s", ev->timestamp);
	session_send_cmd(s, POP3_CMD_CAPA, 0);
	session_set_state(s, S_CAPA);
}

void
session_st_capa(struct session *s, const struct pop3_event *ev)
{
	/* A probe shows both; only what is said over TLS counts. */
	if (ev->type == POP3_EV_CAPA)
		session_report(
		    s, &(struct session_info){.kind = SI_CAPA,
			   .text = ev->text,
			   .before_tls =
			       !s->tls_active && s->a->tls != CONF_TLS_NONE});
	if (ev->type != POP3_EV_END && ev->type != POP3_EV_ERR)
		return;
	/*
	 * Nothing said before TLS counts after it: a LOGIN-DELAY injected
	 * into the plain-text CAPA would otherwise hold the account off for
	 * as long as the attacker likes, even when STLS then fails.
	 */
	if (s->tls_active || s->a->tls == CONF_TLS_NONE)
		s->stats.login_delay = pop3_capa(s->pop3)->login_delay;
	/* -ERR: an RFC 1939 server without CAPA; no capabilities known. */
	if (s->a->tls == CONF_TLS_STARTTLS && !s->tls_active) {
		if (!pop3_capa(s->pop3)->stls) {
			session_fail(s, SC_PROTO,
			    "server does not offer STLS; no credentials sent");
			return;
		}
		session_send_cmd(s, POP3_CMD_STLS, 0);
		session_set_state(s, S_STLS);
		return;
	}
	after_capa(s);
}

void
session_st_stls(struct session *s, const struct pop3_event *ev)
{
	if (ev->type == POP3_EV_ERR) {
		session_fail(s, SC_PROTO,
		    "server refused STLS: %s; no credentials sent", ev->text);
		return;
	}
	/* The handshake starts once every byte read so far is parsed. */
	if (ev->type == POP3_EV_OK)
		s->stls_pending = true;
}

/* ---- UTF-8 mode (RFC 6856) ---- */

/*
 * Asks for UTF-8 mode when the server offers it, before any credential:
 * a server like Courier otherwise rewrites every message with raw UTF-8
 * in its header into a notice with the original attached.
 */
static void
after_capa(struct session *s)
{
	bool may_talk = s->tls_active || s->a->allow_plaintext;

	/* --serverinfo without a secret has seen all it can. */
	if (s->no_secret[0] != '\0') {
		session_report(s, &(struct session_info){.kind = SI_NOLOGIN,
				      .text = s->no_secret});
		session_send_cmd(s, POP3_CMD_QUIT, 0);
		session_set_state(s, S_QUIT);
		return;
	}
	if (s->a->utf8 == CONF_UTF8_AUTO && pop3_capa(s->pop3)->utf8 &&
	    may_talk) {
		session_send_cmd(s, POP3_CMD_UTF8, 0);
		session_set_state(s, S_UTF8);
		return;
	}
	session_start_auth(s);
}

void
session_st_utf8(struct session *s, const struct pop3_event *ev)
{
	char why[POP3_LINE_MAX + 32];

	if (ev->type == POP3_EV_OK)
		log_debug(s->a->name, "utf8=on");
	else if (ev->type == POP3_EV_ERR)
		/* Not fatal: the mail still comes, perhaps rewritten. */
		log_warnx(s->a->name,
		    "server refused UTF8: %s; messages with UTF-8 headers may arrive rewritten by the server",
		    session_reply_text(ev, why, sizeof(why)));
	else
		return;
	session_start_auth(s);
}
