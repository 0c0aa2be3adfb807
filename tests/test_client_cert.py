"""Integration tests: client certificates against a real, throwaway Dovecot.

Dovecot (tests/dovecot.py with client_ca) asks every TLS client for a
certificate, trusts the ones a throwaway CA issued and refuses every login
without one. popfetchd presents client_cert/client_key and logs in with a
password (SASL PLAIN, or the default over STLS) or with the certificate
alone (auth = "external", Dovecot taking the user from its commonName).
Without a certificate, or with one from another CA, the login is refused:
popfetchd exits 77 with one readable line naming the account, nothing
moves, and Dovecot logged no login.

The certificates come from harness.CA (openssl ca, in a temporary
folder); the helpers for configurations, runs and Maildir checks from
harness.DovecotCase.

Run: python3 tests/test_client_cert.py --binary build/popfetchd
     (or set POPFETCHD). KEEP_TMP=1 leaves the temporary folders behind.
"""

import os
import poplib
import re
import shutil
import ssl
import tempfile

import mailgen
from harness import CA, DovecotCase, main, multiset

PASSWORD = DovecotCase.PASSWORD

# What a refused login must not print: OpenSSL's error queue or a trace.
UNREADABLE = re.compile(r"error:[0-9A-Fa-f]{8}:|SSL routines|Traceback")


def popfetchd_logins(dc):
    """Successful logins from 127.0.0.1 (popfetchd's address; sync_log()
    logs in from 127.0.0.2), any user."""
    pat = re.compile(r"pop3-login: (?:Info: )?Login: user=<[^>]*>,"
                     r".*\brip=127\.0\.0\.1,")
    return [l for l in dc.log_text().splitlines() if pat.search(l)]


def refusals(dc, reason):
    """pop3-login's lines for sessions from 127.0.0.1 that ended with
    REASON, e.g. "client didn't send a cert" or "auth failed"."""
    pat = re.compile(r"pop3-login: .*\(%s[,)].*\brip=127\.0\.0\.1,"
                     % re.escape(reason))
    return [l for l in dc.log_text().splitlines() if pat.search(l)]


class TestClientCertificate(DovecotCase):

    @classmethod
    def setUpClass(cls):
        cls.certdir = tempfile.mkdtemp(prefix="popfetchd-cc-")
        os.chmod(cls.certdir, 0o755)
        for sub in ("trusted", "other"):
            os.mkdir(os.path.join(cls.certdir, sub))
        # The CA Dovecot trusts, and one it does not.
        cls.ca = CA(os.path.join(cls.certdir, "trusted"))
        cls.cert, cls.key = cls.ca.issue("alice", san=False)
        # Trusted, but for a user Dovecot does not know.
        cls.mallory_cert, cls.mallory_key = cls.ca.issue("mallory",
                                                         san=False)
        cls.other_ca = CA(os.path.join(cls.certdir, "other"))
        cls.other_cert, cls.other_key = cls.other_ca.issue("alice",
                                                           san=False)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.certdir, ignore_errors=True)

    # ---- helpers ----

    def server(self, external=False, messages=5, tag="cc"):
        """A started Dovecot that requires client certificates from the
        trusted CA, with user alice and MESSAGES messages for her."""
        dc = self.dovecot(client_ca=self.ca.cert, external=external)
        dc.add_user("alice", PASSWORD)
        msgs = mailgen.generate(messages, seed=len(tag), tag=tag)
        dc.deliver_many("alice", msgs)
        return dc, msgs

    def cert_account(self, dc, auth, cert=None, key=None, tls="implicit"):
        """Account "work" for alice; AUTH "external" sets no user and no
        password. CERT/KEY: the client certificate, if any."""
        acct = self.account(dc, name="work", tls=tls, auth=auth, keep=None,
                            client_cert=cert, client_key=key)
        if auth == "external":
            acct.update(user=None, password=None)
        return acct

    def assert_logged_in(self, dc, method):
        """Dovecot logged exactly one login of alice from popfetchd, with
        METHOD, over TLS."""
        dc.sync_log()
        logins = popfetchd_logins(dc)
        self.assertEqual(len(logins), 1, dc.log_text()[-3000:])
        self.assertIn("user=<alice>, method=%s," % method, logins[0])
        self.assertIn(", TLS", logins[0])

    def assert_refused(self, r, dc, msgs, reason, server_reason):
        """The login was refused: exit 77, one readable line naming the
        account with SERVER_REASON in it, nothing fetched or deleted, and
        Dovecot logged no login but a session ended for REASON."""
        self.assert_exit(r, 77)
        failed = [l for l in r.stderr.splitlines()
                  if re.search(r"authentication failed", l, re.I)]
        self.assertEqual(len(failed), 1, r.stderr)
        self.assertIn("account=work", failed[0])
        self.assertRegex(failed[0], server_reason)
        self.assertNotRegex(r.stderr, UNREADABLE)
        self.assertNotIn(PASSWORD, r.stderr)
        self.assert_nothing_delivered()
        self.assertEqual(multiset(dc.server_messages("alice")),
                         multiset(msgs))
        dc.sync_log()
        self.assertEqual(popfetchd_logins(dc), [], dc.log_text()[-3000:])
        self.assertEqual(dc.logins("alice"), 0)
        self.assertTrue(refusals(dc, reason), dc.log_text()[-3000:])

    # ---- the harness itself (poplib): a failure here is the set-up's ----

    def test_harness_requires_client_certificate(self):
        dc, msgs = self.server(messages=2, tag="cc-harness")

        ctx = ssl.create_default_context(cafile=dc.ca_file)
        ctx.load_cert_chain(self.cert, self.key)
        client = poplib.POP3_SSL("127.0.0.1", dc.ssl_port, context=ctx,
                                 timeout=30)
        client.user("alice")
        client.pass_(PASSWORD)
        self.assertEqual(client.stat()[0], len(msgs))
        client.quit()

        bare = ssl.create_default_context(cafile=dc.ca_file)
        client = poplib.POP3_SSL("127.0.0.1", dc.ssl_port, context=bare,
                                 timeout=30)
        try:
            client.user("alice")
            with self.assertRaisesRegex(poplib.error_proto,
                                        "(?i)certificate"):
                client.pass_(PASSWORD)
        finally:
            client.quit()
        dc.sync_log()
        self.assertEqual(dc.logins("alice"), 1, dc.log_text()[-3000:])

    def fetch_all(self, dc, conf, msgs, mechanism):
        """One run fetches MSGS exactly once, logging in by MECHANISM,
        and leaves alice's mailbox empty."""
        r = self.run_once(conf)
        self.assert_exit(r, 0)
        self.assert_summary(r, "work", len(msgs))
        self.assert_delivered_exactly(msgs)
        self.assertEqual(dc.server_messages("alice"), [])
        self.assert_logged_in(dc, mechanism)

    # ---- a certificate from the trusted CA: logged in, fetched ----

    def test_plain_with_client_certificate(self):
        dc, msgs = self.server(messages=20, tag="cc-plain")
        conf = self.config(self.cert_account(dc, "plain", self.cert,
                                             self.key))

        self.fetch_all(dc, conf, msgs, "PLAIN")

        # A second poll finds nothing more: each message arrived once.
        r = self.run_once(conf)

        self.assert_exit(r, 0)
        self.assert_summary(r, "work", 0)
        self.assert_delivered_exactly(msgs)

    def test_starttls_with_client_certificate(self):
        """The certificate goes in the handshake after STLS; auth = auto."""
        dc, msgs = self.server(messages=6, tag="cc-stls")
        conf = self.config(self.cert_account(dc, None, self.cert, self.key,
                                             tls="starttls"))

        self.fetch_all(dc, conf, msgs, "PLAIN")

    def test_external_with_client_certificate(self):
        """auth = "external": no user, no password; Dovecot takes alice
        from the certificate."""
        dc, msgs = self.server(external=True, messages=8, tag="cc-ext")
        conf = self.config(self.cert_account(dc, "external", self.cert,
                                             self.key))

        self.fetch_all(dc, conf, msgs, "EXTERNAL")

    # ---- no certificate, or an untrusted one: refused ----

    def test_no_client_certificate_refused(self):
        for auth in ("plain", "user", "external"):
            with self.subTest(auth=auth):
                # A Dovecot each: after a refusal it delays the next login
                # from the same address.
                dc, msgs = self.server(external=(auth == "external"),
                                       tag="cc-none-" + auth)
                conf = self.config(self.cert_account(dc, auth))

                r = self.run_once(conf)

                self.assert_refused(r, dc, msgs, "client didn't send a cert",
                                    "(?i)certificate")

    def test_certificate_from_another_ca_refused(self):
        """Dovecot completes the handshake but refuses the login."""
        for auth in ("plain", "external"):
            with self.subTest(auth=auth):
                dc, msgs = self.server(external=(auth == "external"),
                                       tag="cc-other-" + auth)
                conf = self.config(self.cert_account(
                    dc, auth, self.other_cert, self.other_key))

                r = self.run_once(conf)

                self.assert_refused(r, dc, msgs,
                                    "client sent an invalid cert",
                                    "(?i)certificate")

    def test_external_certificate_of_unknown_user_refused(self):
        """A trusted certificate whose commonName is no user of the
        server's: EXTERNAL is refused like a wrong password."""
        dc, msgs = self.server(external=True, tag="cc-mallory")
        conf = self.config(self.cert_account(
            dc, "external", self.mallory_cert, self.mallory_key))

        r = self.run_once(conf)

        self.assert_refused(r, dc, msgs, "auth failed", "(?i)failed")
        self.assertEqual(dc.logins("mallory"), 0)
        self.assertGreaterEqual(dc.auth_failures("mallory"), 1,
                                dc.log_text()[-3000:])


if __name__ == "__main__":
    main()
