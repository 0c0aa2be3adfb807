"""UTF8 (RFC 6856): a real Courier pop3d, and the scripted server.

Courier 1.0.16 announces "UTF8 USER". A client that does not send UTF8
gets every message with raw UTF-8 in its header replaced by a notice
("Cannot display Unicode content") with the original attached; after
UTF8 it gets them as stored. CourierUtf8Test fetches the same mailbox both
ways and checks both: byte for byte with utf8 = "auto", the server's
rewrite (and only for the UTF-8 messages) with utf8 = "off". Skipped, with
the reason, where Courier cannot run (tests/courier.py).

Utf8Test checks against tests/fakepop.py when UTF8 is sent: after the
CAPA that counts (the one over TLS), before any credential, and not at
all when not offered, offered only before TLS, or turned off; a refusal
is logged and the login goes on.

Run: python3 tests/test_utf8.py --binary build/popfetchd
"""

import os
import unittest

import courier
from harness import Case, FakePopCase, main, multiset, write_config

PASSWORD = "Utf8-pw-Kq2m7"

# Raw UTF-8 in From, Subject, To and a header of its own; and ASCII ones,
# one with an RFC 2047 encoded word (ASCII on the wire).
UTF8_MESSAGES = [
    "From: Jürgen Müller <j@example.org>\nSubject: Grüße\n\nHallo\n",
    "From: a@example.org\nSubject: Привет, мир\nMIME-Version: 1.0\n"
    "Content-Type: text/plain; charset=utf-8\n\nтекст\n",
    "From: a@example.org\nTo: 山田 <y@example.jp>\nSubject: 会議\n\n本文\n",
    "From: a@example.org\nSubject: café ☕\nX-Note: naïve\n\n"
    "body line\n.leading dot\n",
    "From: Zoë <z@example.org>\nSubject: ok\n\n" + "line\n" * 200,
]
ASCII_MESSAGES = [
    "From: a@example.org\nSubject: plain\n\nbody\n",
    "From: a@example.org\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\n\nbody\n",
    "From: a@example.org\nSubject: body only\n\nGrüße im Text\n",
]
MESSAGES = [m.encode() for m in UTF8_MESSAGES + ASCII_MESSAGES]


class CourierUtf8Test(Case):
    @classmethod
    def setUpClass(cls):
        try:
            cls.co = courier.Courier(keep_dir=bool(os.environ.get("KEEP_TMP")))
        except courier.Unavailable as e:
            raise unittest.SkipTest("Courier unavailable: %s" % e)
        try:
            cls.co.add_user("alice", PASSWORD)
            for m in MESSAGES:
                cls.co.deliver("alice", m)
            cls.co.start()
        except BaseException:
            cls.co.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.co.cleanup()

    def fetch(self, utf8):
        # keep: both tests read the same mailbox.
        conf = write_config(
            os.path.join(self.dir, "popfetchd.conf"),
            [{"name": "co", "host": "127.0.0.1", "port": self.co.port,
              "tls": "none", "allow_plaintext": True, "user": "alice",
              "password": PASSWORD, "maildir": self.maildir, "keep": True,
              "utf8": utf8, "received_header": False, "timeout": 20}],
            state_dir=os.path.join(self.dir, "state"))
        return self.run_once(conf, debug=1)

    def test_utf8_negotiated_byte_identical(self):
        r = self.fetch("auto")
        self.assert_exit(r, 0)
        self.assertIn("> UTF8", r.stderr)
        self.assertIn("< +OK UTF8 enabled", r.stderr)
        self.assert_delivered_exactly(MESSAGES)

    def test_utf8_off_gets_the_servers_rewrite(self):
        # The difference the negotiation makes: without it Courier
        # rewrites exactly the messages with raw UTF-8 in the header.
        r = self.fetch("off")
        self.assert_exit(r, 0)
        self.assertNotIn("> UTF8", r.stderr)
        got = self.delivered()
        self.assertEqual(len(got), len(MESSAGES))
        left = multiset(got) - multiset(MESSAGES)
        self.assertEqual(sum(left.values()), len(UTF8_MESSAGES))
        for m in left:
            self.assertIn(b"Subject: Cannot display Unicode content", m)
        same = multiset(got) & multiset(MESSAGES)
        self.assertEqual(same, multiset(m.encode() for m in ASCII_MESSAGES))


class Utf8Test(FakePopCase):
    MESSAGES = [b"From: a@example.org\nSubject: x\n\nbody\n"]
    PASSWORD = PASSWORD

    def fetch(self, srv, **keys):
        r = self.run_once(self.config(srv, **keys), debug=1)
        srv.sync()
        return r

    def test_sent_after_capa_before_credentials(self):
        srv = self.server(capa_extra=["UTF8 USER"])
        r = self.fetch(srv)
        self.assert_exit(r, 0)
        self.assertEqual(srv.verbs()[:3], ["CAPA", "UTF8", "AUTH"])

    def test_sent_after_stls_and_second_capa(self):
        srv = self.server(tls="starttls", capa_extra=["UTF8"])
        r = self.fetch(srv)
        self.assert_exit(r, 0)
        self.assertEqual(srv.verbs()[:5],
                         ["CAPA", "STLS", "CAPA", "UTF8", "AUTH"])

    def test_not_sent_when_announced_only_before_tls(self):
        # Nothing said before TLS counts after it.
        srv = self.server(tls="starttls", capa_before_tls=["UTF8"])
        r = self.fetch(srv)
        self.assert_exit(r, 0)
        self.assertNotIn("UTF8", srv.verbs())

    def test_not_sent_when_not_offered_or_off(self):
        for kw, keys in [({}, {}),
                         ({"capa_extra": ["UTF8"]}, {"utf8": "off"})]:
            with self.subTest(keys=keys):
                srv = self.server(**kw)
                r = self.fetch(srv, **keys)
                self.assert_exit(r, 0)
                self.assertNotIn("UTF8", srv.verbs())

    def test_refusal_logged_login_goes_on(self):
        srv = self.server(capa_extra=["UTF8"])
        srv.raw["UTF8"] = b"-ERR [SYS/PERM] not today\r\n"
        r = self.fetch(srv)
        self.assert_exit(r, 0)
        self.assertIn("server refused UTF8", r.stderr)
        self.assertEqual(self.delivered(), self.MESSAGES)


if __name__ == "__main__":
    main()
