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
#include "tlscache.h"
#include "wipe.h"

static void after_capa(struct session *s);

/* ---- TLS ---- */

/*
 * Offers on SSL the session the account's last poll kept, if it was
 * verified under the settings of now. Only fetching polls take part: a
 * probe shows the server's chain, which a resumed session does not hold.
 */
static void
offer_session(struct session *s, SSL *ssl)
{
	SSL_SESSION *sess;

	if (s->mode != SESSION_FETCH)
		return;
	if (!s->a->tls_resume) {
		tlscache_drop(s->a->name);
		return;
	}
	s->resume = tls_session_fp(s->ctx, s->a, s->tls_fp);
	if (!s->resume || (sess = tlscache_get(s->a->name, s->tls_fp)) == NULL)
		return;
	s->resume_offered = SSL_set_session(ssl, sess) == 1;
	SSL_SESSION_free(sess);
}

void
session_start_tls(struct session *s)
{
	SSL *ssl = tls_ssl_new(s->ctx, s->a);

	if (ssl != NULL)
		offer_session(s, ssl);
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
	log_debug(s->a->name, "tls=\"%s\" resumed=%s", info,
	    SSL_session_reused(net_ssl(s->net)) ? "yes"
	    : s->resume_offered			? "declined"
						: "no");
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

/*
 * A poll that offered a session failed in TLS: a strike against
 * resumption for the account, unless the certificate was refused, which
 * says nothing about resumption.
 */
static void
tls_trouble(struct session *s, SSL *ssl)
{
	if (!s->resume_offered || SSL_get_verify_result(ssl) != X509_V_OK) {
		tlscache_drop(s->a->name);
		return;
	}
	if (tlscache_strike(s->a->name, s->tls_fp))
		log_info(s->a->name,
		    "tls_resume=off after %d polls that failed in TLS with a session offered; full handshakes until the settings change or a restart",
		    TLSCACHE_STRIKES);
}

/*
 * At the end of a poll: keeps what the next one may resume. Nothing is
 * kept from a poll that failed in TLS or in the protocol, nor from a
 * server whose key the pins refused; without a handshake (no connection,
 * no secret) what was kept before stays.
 */
void
session_tls_keep(struct session *s)
{
	SSL *ssl = s->net != NULL ? net_ssl(s->net) : NULL;
	SSL_SESSION *sess;

	if (!s->resume || ssl == NULL)
		return;
	s->resume = false;
	if (!SSL_is_init_finished(ssl) ||
	    (s->cls == SC_NET && net_ssl_error(s->net) != 0)) {
		tls_trouble(s, ssl);
		return;
	}
	if (!s->tls_active || s->cls == SC_PROTO ||
	    (sess = tls_session_to_keep(ssl)) == NULL) {
		tlscache_drop(s->a->name);
		return;
	}
	tlscache_put(s->a->name, s->tls_fp, sess, SSL_session_reused(ssl));
	SSL_SESSION_free(sess);
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
