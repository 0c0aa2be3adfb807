"""SCRAM (RFC 5802, RFC 7677) and channel binding: the scripted server and
a real Cyrus pop3d.

tests/fakepop.py carries its own SCRAM server side (hashlib and hmac): it
checks the client's proof and its channel binding data, tls-unique on TLS
1.2 and tls-exporter (RFC 9266) on TLS 1.3, and breaks the exchange on
request. Each test runs `popfetchd --once` and checks the exit status, the
mailbox, and from the server's record what the client sent: above all,
that after a server that could not prove it knows the password the client
sends nothing more and takes no mail.

CyrusTest does the same against a real Cyrus 3.6 pop3d (tests/cyrus.py):
a verified fetch with every SCRAM mechanism both speak, over implicit TLS
and STLS, TLS 1.3 and TLS 1.2; skipped, with the reason, where Cyrus
cannot run.

Run: python3 tests/test_scram.py --binary build/popfetchd
"""

import os
import shutil
import ssl

import unittest

import cyrus
from harness import Case, FakePopCase, main, write_config

MESSAGES = [b"From: a@example.org\nSubject: scram\n\nbody\n"]
PASSWORD = "Scr4m-pw-9Qx7Lm2Vb"
ALL = "PLAIN SCRAM-SHA-1 SCRAM-SHA-1-PLUS SCRAM-SHA-256 SCRAM-SHA-256-PLUS"
# Commands that come only after a login.
AFTER_LOGIN = ("STAT", "LIST", "UIDL", "RETR", "DELE", "TOP")


class ScramTest(FakePopCase):
    MESSAGES = MESSAGES
    PASSWORD = PASSWORD

    def scram_server(self, sasl=ALL, **kw):
        kw.setdefault("sasl_strict", True)
        return self.server(sasl=sasl, **kw)

    def fetch(self, srv, **keys):
        return self.run_once(self.config(srv, **keys))

    def assert_fetched(self, srv, r, mech, cbname=None):
        """A fetch logged in with MECH, binding CBNAME, both sides
        proved."""
        self.assert_exit(r, 0)
        self.assertEqual(self.delivered(), MESSAGES)
        srv.sync()
        self.assertEqual(len(srv.scram), 1, srv.scram)
        rec = srv.scram[0]
        self.assertEqual(rec["mech"], mech)
        self.assertEqual(rec["cbname"], cbname)
        self.assertTrue(rec["proof_ok"])
        if cbname is not None:
            self.assertTrue(rec["cb_ok"], "channel binding data differ")
        else:
            self.assertEqual(rec["gs2"], "n,,")
        # The empty line RFC 5034 wants after the server's proof.
        self.assertEqual(rec["final_ack"], "")
        auths = [c for c in srv.commands if c.upper().startswith("AUTH")]
        self.assertEqual(len(auths), 1, auths)
        self.assertTrue(auths[0].upper().startswith("AUTH " + mech + " "))

    def assert_refused(self, srv, r, status=77):
        """The client gave up during the exchange: STATUS, no mail, no
        command after the AUTH exchange, one AUTH only."""
        self.assert_exit(r, status)
        self.assert_nothing_delivered()
        srv.sync()
        verbs = srv.verbs()
        self.assertEqual(verbs.count("AUTH"), 1, srv.commands)
        for v in AFTER_LOGIN:
            self.assertNotIn(v, verbs)
        self.assertEqual(len(srv.messages), len(MESSAGES))

    # ---- auto: the strongest both offer ----

    def test_auto_tls13_binds_with_tls_exporter(self):
        srv = self.scram_server()
        r = self.fetch(srv)
        self.assert_fetched(srv, r, "SCRAM-SHA-256-PLUS", "tls-exporter")

    def test_auto_tls12_binds_with_tls_unique(self):
        srv = self.scram_server(tls_max_version=ssl.TLSVersion.TLSv1_2)
        r = self.fetch(srv)
        self.assert_fetched(srv, r, "SCRAM-SHA-256-PLUS", "tls-unique")

    def test_auto_after_stls_binds(self):
        srv = self.scram_server(tls="starttls")
        r = self.fetch(srv)
        self.assert_fetched(srv, r, "SCRAM-SHA-256-PLUS", "tls-exporter")

    def test_auto_order(self):
        # Offered -> chosen, as the documented order says.
        cases = [
            ("PLAIN SCRAM-SHA-1", "SCRAM-SHA-1"),
            ("SCRAM-SHA-1 PLAIN SCRAM-SHA-1-PLUS", "SCRAM-SHA-1-PLUS"),
            ("SCRAM-SHA-1-PLUS SCRAM-SHA-256", "SCRAM-SHA-256"),
            ("scram-sha-256 SCRAM-SHA-256-PLUS", "SCRAM-SHA-256-PLUS"),
        ]
        for offered, chosen in cases:
            with self.subTest(offered=offered):
                srv = self.scram_server(sasl=offered)
                r = self.fetch(srv)
                self.assert_fetched(
                    srv, r, chosen,
                    "tls-exporter" if chosen.endswith("PLUS") else None)
                self.fresh()

    def fresh(self):
        """Empties the Maildir and the state between subtests."""
        shutil.rmtree(self.maildir, ignore_errors=True)
        shutil.rmtree(os.path.join(self.dir, "state"), ignore_errors=True)

    def test_auto_without_tls_uses_plain_scram(self):
        # No TLS, so no channel: SCRAM without -PLUS still keeps the
        # password off the wire.
        srv = self.scram_server(tls=None)
        r = self.fetch(srv, allow_plaintext=True)
        self.assert_fetched(srv, r, "SCRAM-SHA-256", None)
        self.assertNotIn(PASSWORD, "\n".join(srv.commands))

    def test_auto_no_fallback_after_refusal(self):
        # A wrong password: refused once, no weaker mechanism tried.
        srv = self.scram_server(password="another")
        r = self.fetch(srv)
        self.assert_refused(srv, r)
        self.assertFalse(srv.scram[0]["proof_ok"])
        self.assertIn("authentication failed", r.stderr)

    def test_server_binding_tls13_with_tls_unique(self):
        # Cyrus 3.6 binds TLS 1.3 with tls-unique: auto's tls-exporter
        # is refused, once, with the setting that fixes it in the log;
        # channel_binding = "tls-unique" then logs in.
        srv = self.scram_server()
        srv.scram_tls13_unique = True
        r = self.fetch(srv)
        self.assert_refused(srv, r)
        self.assertIn('channel_binding = "tls-unique"', r.stderr)
        self.assertEqual(srv.scram[0]["cbname"], "tls-exporter")
        srv.scram, srv.commands = [], []
        r = self.fetch(srv, channel_binding="tls-unique")
        self.assert_fetched(srv, r, "SCRAM-SHA-256-PLUS", "tls-unique")

    # ---- each mechanism by name ----

    def test_each_mechanism_by_name(self):
        for auth, mech, cb in [
                ("scram-sha-1", "SCRAM-SHA-1", None),
                ("scram-sha-256", "SCRAM-SHA-256", None),
                ("scram-sha-1-plus", "SCRAM-SHA-1-PLUS", "tls-exporter"),
                ("scram-sha-256-plus", "SCRAM-SHA-256-PLUS", "tls-exporter")]:
            with self.subTest(auth=auth):
                srv = self.scram_server()
                r = self.fetch(srv, auth=auth)
                self.assert_fetched(srv, r, mech, cb)
                self.fresh()

    def test_plus_without_tls_is_a_config_error(self):
        srv = self.scram_server(tls=None)
        r = self.fetch(srv, auth="scram-sha-256-plus", allow_plaintext=True)
        self.assert_exit(r, 78)
        self.assertIn("no TLS channel to bind", r.stderr)
        srv.sync()
        self.assertNotIn("AUTH", srv.verbs())

    # ---- servers that must be refused ----

    def fault(self, fault, **kw):
        srv = self.scram_server(**kw)
        srv.scram_fault = fault
        return srv, self.fetch(srv)

    def test_wrong_server_signature(self):
        srv, r = self.fault("bad-signature")
        self.assert_refused(srv, r)
        self.assertIn("did not prove it knows the password", r.stderr)
        # The proof was sent; the empty line that accepts the server's
        # signature never was.
        self.assertTrue(srv.scram[0]["proof_ok"])
        self.assertIsNone(srv.scram[0]["final_ack"])

    def test_server_error_in_final_message(self):
        srv, r = self.fault("server-error")
        self.assert_refused(srv, r)
        self.assertIn("server says other-error", r.stderr)

    def test_ok_without_server_signature(self):
        srv, r = self.fault("no-signature")
        self.assert_refused(srv, r)
        self.assertIn("without proving it knows the password", r.stderr)

    def test_replayed_nonce(self):
        # The first exchange hands out a nonce; the second server replays
        # it. The client must not answer it with a proof.
        srv = self.scram_server()
        self.assert_fetched(srv, self.fetch(srv), "SCRAM-SHA-256-PLUS",
                            "tls-exporter")
        self.fresh()
        srv.scram_fault = "replayed-nonce"
        srv.messages = list(MESSAGES)
        srv.uids = ["uid-0"]
        before = len(srv.commands)
        r = self.fetch(srv)
        self.assert_exit(r, 77)
        self.assert_nothing_delivered()
        srv.sync()
        self.assertIn("nonce", r.stderr)
        self.assertNotIn("final", srv.scram[1])
        self.assertEqual([c.split(" ")[0] for c in srv.commands[before:]],
                         ["CAPA", "AUTH"])

    def test_nonce_not_extended(self):
        srv, r = self.fault("short-nonce")
        self.assert_refused(srv, r)
        self.assertNotIn("final", srv.scram[0])

    def test_iteration_count_bounds(self):
        for count, ok in [(4095, False), (4096, True), (600001, False),
                          (1, False)]:
            with self.subTest(count=count):
                srv = self.scram_server()
                srv.scram_iter = count
                r = self.fetch(srv)
                if ok:
                    self.assert_fetched(srv, r, "SCRAM-SHA-256-PLUS",
                                        "tls-exporter")
                else:
                    self.assert_refused(srv, r)
                    self.assertIn("iterations", r.stderr)
                    # No proof computed for it, none sent.
                    self.assertNotIn("final", srv.scram[0])
                self.fresh()

    def test_malformed_messages(self):
        for fault, status in [("malformed-first", 77), ("extension", 77),
                              ("not-base64", 75),
                              ("extra-challenge", 75)]:
            with self.subTest(fault=fault):
                srv, r = self.fault(fault)
                if fault == "extra-challenge":
                    # Verified and accepted, then one challenge too many:
                    # a protocol error, and still no mail.
                    self.assert_exit(r, status)
                    self.assert_nothing_delivered()
                else:
                    self.assert_refused(srv, r, status)
                    self.assertNotIn("final", srv.scram[0])
                self.fresh()

    # ---- secrets ----

    def test_exchange_masked_in_trace(self):
        srv = self.scram_server()
        r = self.run_once(self.config(srv), debug=2)
        self.assert_fetched(srv, r, "SCRAM-SHA-256-PLUS", "tls-exporter")
        self.assertNotIn(PASSWORD, r.stderr)
        # Neither the client's first message nor its proof is traced.
        auth = [c for c in srv.commands if c.upper().startswith("AUTH")]
        client_first = auth[0].split(" ")[2]
        for secret in (client_first, srv.scram[0]["final"]):
            self.assertGreater(len(secret), 20)
            self.assertNotIn(secret, r.stderr)
        self.assertIn("scram-verified", r.stderr)


class CyrusCase(Case):
    """One Cyrus per class (TLS_VERSIONS), a user per test."""

    TLS_VERSIONS = "tls1_2 tls1_3"

    @classmethod
    def setUpClass(cls):
        try:
            cls.cy = cyrus.Cyrus(tls_versions=cls.TLS_VERSIONS)
        except cyrus.Unavailable as e:
            raise unittest.SkipTest("Cyrus unavailable: %s" % e)
        try:
            cls.cy.start()
        except BaseException:
            cls.cy.cleanup()
            raise
        cls.users = 0

    @classmethod
    def tearDownClass(cls):
        cls.cy.cleanup()

    def user(self, n=2):
        """A new user with N messages; returns its name and the
        messages as popfetchd should deliver them (LF line ends)."""
        type(self).users += 1
        name = "u%d" % self.users
        self.cy.add_user(name, PASSWORD)
        for i in range(n):
            self.cy.deliver(name, b"From: a@example.org\r\nSubject: m%d "
                            b"for %s\r\n\r\nbody %d\r\n"
                            % (i, name.encode(), i))
        want = [m.replace(b"\r\n", b"\n") for m in self.cy.retrieve(name)]
        self.assertEqual(len(want), n)
        return name, want

    def fetch(self, user, tls="implicit", **keys):
        acct = {"name": "cy", "host": "localhost",
                "port": self.cy.ssl_port if tls == "implicit"
                else self.cy.port,
                "tls": tls, "ca_file": self.cy.ca_file, "user": user,
                "password": PASSWORD, "maildir": self.maildir,
                "received_header": False, "timeout": 20}
        acct.update(keys)
        conf = write_config(os.path.join(self.dir, "popfetchd.conf"),
                            [acct], state_dir=os.path.join(self.dir, "state"))
        return self.run_once(conf, debug=1)

    def assert_scram_fetch(self, r, want, mech, cb):
        """A fetch of WANT, logged in with MECH binding CB, the server's
        signature verified."""
        self.assert_exit(r, 0)
        self.assert_delivered_exactly(want)
        self.assertIn("scram mech=%s cb=%s" % (mech, cb), r.stderr)
        self.assertIn("scram-final -> scram-verified", r.stderr)


class CyrusTest(CyrusCase):
    """Cyrus offering TLS 1.3: it binds it with tls-unique."""

    def test_every_mechanism_implicit_tls(self):
        for auth, mech, cb in [
                ("scram-sha-1", "SCRAM-SHA-1", "none"),
                ("scram-sha-256", "SCRAM-SHA-256", "none"),
                ("scram-sha-1-plus", "SCRAM-SHA-1-PLUS", "tls-unique"),
                ("scram-sha-256-plus", "SCRAM-SHA-256-PLUS", "tls-unique")]:
            with self.subTest(auth=auth):
                user, want = self.user()
                r = self.fetch(user, auth=auth, channel_binding="tls-unique")
                self.assert_scram_fetch(r, want, mech, cb)
                shutil.rmtree(self.maildir)

    def test_auto_picks_the_strongest(self):
        user, want = self.user()
        r = self.fetch(user, channel_binding="tls-unique")
        self.assert_scram_fetch(r, want, "SCRAM-SHA-256-PLUS", "tls-unique")

    def test_auto_after_stls(self):
        user, want = self.user()
        r = self.fetch(user, tls="starttls", channel_binding="tls-unique")
        self.assert_scram_fetch(r, want, "SCRAM-SHA-256-PLUS", "tls-unique")

    def test_tls_exporter_refused_with_the_fix_in_the_log(self):
        # Cyrus 3.6 knows no tls-exporter: refused once, no fallback.
        user, _ = self.user(1)
        r = self.fetch(user)
        self.assert_exit(r, 77)
        self.assert_nothing_delivered()
        self.assertIn("scram mech=SCRAM-SHA-256-PLUS cb=tls-exporter",
                      r.stderr)
        self.assertIn('channel_binding = "tls-unique"', r.stderr)
        self.assertEqual(r.stderr.count("> AUTH "), 1)

    def test_wrong_password(self):
        user, _ = self.user(1)
        r = self.fetch(user, password="not-the-password",
                       channel_binding="tls-unique")
        self.assert_exit(r, 77)
        self.assert_nothing_delivered()
        self.assertEqual(r.stderr.count("> AUTH "), 1)

    def test_plaintext_auto_uses_scram_without_plus(self):
        user, want = self.user()
        r = self.fetch(user, tls="none", allow_plaintext=True)
        self.assert_scram_fetch(r, want, "SCRAM-SHA-256", "none")


class CyrusTls12Test(CyrusCase):
    """Cyrus limited to TLS 1.2: auto binds with tls-unique."""

    TLS_VERSIONS = "tls1_2"

    def test_auto_binds_tls_unique(self):
        user, want = self.user()
        r = self.fetch(user)
        self.assertIn("TLSv1.2", r.stderr)
        self.assert_scram_fetch(r, want, "SCRAM-SHA-256-PLUS", "tls-unique")

    def test_every_mechanism(self):
        for auth, mech, cb in [
                ("scram-sha-1-plus", "SCRAM-SHA-1-PLUS", "tls-unique"),
                ("scram-sha-1", "SCRAM-SHA-1", "none"),
                ("scram-sha-256", "SCRAM-SHA-256", "none")]:
            with self.subTest(auth=auth):
                user, want = self.user()
                r = self.fetch(user, tls="starttls", auth=auth)
                self.assert_scram_fetch(r, want, mech, cb)
                shutil.rmtree(self.maildir)


if __name__ == "__main__":
    main()
