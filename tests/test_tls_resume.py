"""TLS session resumption across polls of the daemon.

The scripted server (tests/fakepop.py) runs with one TLS context for all
its connections (resume=True), so it resumes any session it issued that
a client offers, and records for each connection whether it did: a
session offered where it must not be shows up there, whatever the
daemon logs. Each test drives one daemon (popfetchd -v, poll_interval a
week) poll by poll with SIGUSR1 and waits for each poll's result line;
reloads are SIGHUP with a rewritten file, awaited on "reloaded".

One class runs against a throwaway Dovecot (tests/dovecot.py), whose
login processes are kept (login_reuse), as Dovecot's high-performance
mode does: with a new login process per connection, its default, every
ticket is unknown to the next process and nothing resumes.

Run: python3 tests/test_tls_resume.py --binary build/popfetchd
"""

import base64
import hashlib
import os
import shutil
import signal
import ssl

from harness import (DovecotCase, FakePopCase, main, make_cert, openssl,
                     write_config)

WEEK = 604800


def spki_pin(cert):
    """"sha256/" + base64 of the SHA-256 of CERT's SubjectPublicKeyInfo."""
    pub = openssl("x509", "-in", cert, "-pubkey", "-noout")
    der = openssl("pkey", "-pubin", "-outform", "der", stdin=pub)
    return "sha256/" + base64.b64encode(hashlib.sha256(der).digest()).decode()


class ResumeCase:
    """Polls of a daemon, one at a time: self.poll() waits for the
    result of every account named."""

    def start(self, accounts):
        self.conf = os.path.join(self.dir, "popfetchd.conf")
        self.write(accounts)
        self.d = self.daemon(self.conf, ["-v"])
        self.d.wait_line(r"^started accounts=%d " % len(accounts))

    def write(self, accounts):
        write_config(self.conf, accounts, poll_interval=WEEK,
                     state_dir=os.path.join(self.dir, "state"))

    def reload(self, accounts):
        self.write(accounts)
        mark = self.d.mark()
        self.d.signal(signal.SIGHUP)
        self.d.wait_line(r"^reloaded file=", mark)

    def poll(self, *names):
        """One poll of each account in NAMES (all polled at once, by
        SIGUSR1); returns {name: (result, resumed)}: the result class and
        what the daemon logged of the handshake (yes, no, declined, or
        None without one)."""
        mark = self.d.mark()
        self.d.signal(signal.SIGUSR1)
        out = {}
        for name in names:
            line = self.d.wait_line(r"^account=%s listed=.* result=" % name,
                                    mark)
            tls = self.d.grep(r"^account=%s tls=.* resumed=" % name, mark)
            out[name] = (line.split(" result=")[1].split()[0],
                         tls[0].rsplit("=", 1)[1] if tls else None)
        return out


class TestResumeFakePop(ResumeCase, FakePopCase):

    def account(self, srv, name="a", **keys):
        acct = {"name": name, "host": "localhost", "port": srv.port,
                "tls": srv.tls, "ca_file": self.ca_file,
                "user": self.USER, "password": self.PASSWORD,
                "maildir": os.path.join(self.dir, "Maildir-" + name),
                "received_header": False, "timeout": 20}
        acct.update(keys)
        return acct

    def copy_ca(self, stem):
        """The CA file under another path: the same trust, another
        setting."""
        path = os.path.join(self.dir, stem + ".pem")
        shutil.copyfile(self.ca_file, path)
        return path

    def assert_polls(self, srv, name, expect):
        """Polls NAME once per entry of EXPECT, each a bool: did the
        handshake resume? Checked on both sides."""
        for i, want in enumerate(expect):
            n = len(srv.resumed)
            result, logged = self.poll(name)[name]
            what = "poll %d of %s" % (i + 1, expect)
            self.assertEqual(result, "ok", what)
            self.assertEqual(srv.resumed[n:], [want], what)
            self.assertEqual(logged == "yes", want, what)

    def resumes_from_the_second_poll(self, **kw):
        srv = self.server(resume=True, **kw)
        self.start([self.account(srv)])
        self.assert_polls(srv, "a", [False, True, True])
        self.assertEqual(self.poll("a")["a"], ("ok", "yes"))

    def test_second_poll_resumes(self):
        """Implicit TLS 1.3: the first poll hands over its ticket to the
        second, whose ticket goes to the third."""
        self.resumes_from_the_second_poll()

    def test_second_poll_resumes_after_stls(self):
        self.resumes_from_the_second_poll(tls="starttls")

    def test_second_poll_resumes_tls12(self):
        """TLS 1.2 (tickets, extended master secret) resumes too."""
        self.resumes_from_the_second_poll(
            tls_max_version=ssl.TLSVersion.TLSv1_2)

    def test_channel_binding_on_resumed_sessions(self):
        """SCRAM-SHA-256-PLUS binds a resumed session too: tls-exporter
        on TLS 1.3; tls-unique on TLS 1.2, where the first Finished of a
        resumed handshake is the server's."""
        for version, cbname in ((None, "tls-exporter"),
                                (ssl.TLSVersion.TLSv1_2, "tls-unique")):
            with self.subTest(cbname=cbname):
                srv = self.server(resume=True, sasl="SCRAM-SHA-256-PLUS",
                                  sasl_strict=True, tls_max_version=version)
                self.start([self.account(srv, "s" + cbname[4:7])])
                self.assert_polls(srv, "s" + cbname[4:7], [False, True])
                self.assertEqual([(r["cbname"], r["cb_ok"], r["proof_ok"])
                                  for r in srv.scram], [(cbname, True, True)] * 2)
                self.d.stop()

    def test_never_across_accounts(self):
        """Accounts on the same server each have their own session: one
        with another CA file, one with pins, one with the same settings
        under another name; none is offered a's."""
        srv = self.server(resume=True)
        a = self.account(srv)
        self.start([a])
        self.assert_polls(srv, "a", [False])
        others = [
            self.account(srv, "b", ca_file=self.copy_ca("other-ca")),
            self.account(srv, "c", tls_pins=[spki_pin(self.cert)]),
            self.account(srv, "d"),
        ]
        self.reload([a] + others)
        n = len(srv.resumed)
        got = self.poll("a", "b", "c", "d")
        self.assertEqual(got, {"a": ("ok", "yes"), "b": ("ok", "no"),
                               "c": ("ok", "no"), "d": ("ok", "no")})
        # Only a's connection resumed, whatever order they came in.
        self.assertEqual(sorted(srv.resumed[n:]), [False] * 3 + [True])
        # Then each resumes its own.
        n = len(srv.resumed)
        got = self.poll("a", "b", "c", "d")
        self.assertEqual(set(got.values()), {("ok", "yes")})
        self.assertEqual(srv.resumed[n:], [True] * 4)

    def test_reload_with_changed_settings_drops_the_session(self):
        """A reload that changes nothing keeps the session; one that
        changes the CA file, the pins or turns tls_resume off drops it."""
        srv = self.server(resume=True)
        a = self.account(srv)
        self.start([a])
        self.assert_polls(srv, "a", [False, True])
        self.reload([a])
        self.assert_polls(srv, "a", [True])
        a["ca_file"] = self.copy_ca("moved-ca")
        self.reload([a])
        self.assert_polls(srv, "a", [False, True])
        a["tls_pins"] = [spki_pin(self.cert)]
        self.reload([a])
        self.assert_polls(srv, "a", [False, True])
        a["tls_resume"] = False
        self.reload([a])
        self.assert_polls(srv, "a", [False, False])
        self.assertEqual(self.d.grep(r"^account=a tls=.* resumed=declined"),
                         [])

    def test_pin_mismatch_keeps_no_session(self):
        """TLS 1.2 hands the client its session before the pins are
        checked: a refused key's session is never offered."""
        srv = self.server(resume=True,
                          tls_max_version=ssl.TLSVersion.TLSv1_2)
        wrong = "sha256/" + base64.b64encode(b"\0" * 32).decode()
        self.start([self.account(srv, tls_pins=[wrong])])
        for _ in range(3):
            self.assertEqual(self.poll("a")["a"][0], "network")
        self.assertEqual(srv.resumed, [False] * 3)
        self.assertEqual(len(self.d.grep(r"^account=a .*pin mismatch")), 3)

    def test_failed_verification_drops_the_session(self):
        """A poll whose server shows a certificate that does not verify
        drops the session: when the trusted server is back, it is not
        offered, though that server would resume it."""
        srv = self.server(resume=True)
        trusted = srv.tls_context
        cert, key = make_cert(self.dir)  # self-signed, not in ca_file
        self.start([self.account(srv)])
        self.assert_polls(srv, "a", [False])
        srv.tls_context = srv.context(cert, key)
        res = self.poll("a")["a"]
        self.assertEqual(res, ("network", None))
        self.assertTrue(self.d.grep(
            r"^account=a .*certificate verification failed"))
        srv.tls_context = trusted
        self.assert_polls(srv, "a", [False, True])

    def test_protocol_error_drops_the_session(self):
        srv = self.server(resume=True)
        self.start([self.account(srv)])
        self.assert_polls(srv, "a", [False, True])
        srv.raw["CAPA"] = b"what?\r\n"
        self.assertEqual(self.poll("a")["a"], ("protocol", "yes"))
        del srv.raw["CAPA"]
        self.assert_polls(srv, "a", [False, True])

    def test_failing_resumptions_stop_being_offered(self):
        """Polls that fail in TLS after offering a session are strikes;
        after two the account is no longer offered one, lest a server
        that fails every resumption fail every other poll."""
        srv = self.server(resume=True)
        good = srv.tls_context
        # Wants a client certificate, which the account has none of: the
        # handshake fails with the certificate accepted.
        bad = srv.context()
        bad.verify_mode = ssl.CERT_REQUIRED
        bad.load_verify_locations(self.ca_file)
        self.start([self.account(srv)])
        for strike in (1, 2):
            self.assert_polls(srv, "a", [False])
            srv.tls_context = bad
            self.assertEqual(self.poll("a")["a"][0], "network")
            srv.tls_context = good
        self.d.wait_line(r"^account=a tls_resume=off after 2 polls ")
        n = len(srv.resumed)
        self.assert_polls(srv, "a", [False, False])
        self.assertEqual(srv.resumed[n:], [False, False])


class TestResumeDovecot(ResumeCase, DovecotCase):

    def test_dovecot_resumes(self):
        """Dovecot 2.3 issues TLS 1.3 tickets; with its login processes
        kept, the next poll resumes, over implicit TLS and STLS."""
        dc = self.dovecot(login_reuse=True)
        dc.add_user("alice", self.PASSWORD)
        dc.add_user("bob", self.PASSWORD)
        self.start([self.account(dc, "alice"),
                    self.account(dc, "bob", user="bob", tls="starttls",
                                 maildir=os.path.join(self.dir, "bob"))])
        first = self.poll("alice", "bob")
        self.assertEqual(first, {"alice": ("ok", "no"), "bob": ("ok", "no")})
        again = self.poll("alice", "bob")
        self.assertEqual(again,
                         {"alice": ("ok", "yes"), "bob": ("ok", "yes")})

    def test_dovecot_default_declines(self):
        """Dovecot's default, a login process per connection: the
        session is offered and declined, and the poll works."""
        dc = self.dovecot()
        dc.add_user("alice", self.PASSWORD)
        self.start([self.account(dc, "alice")])
        self.assertEqual(self.poll("alice"), {"alice": ("ok", "no")})
        self.assertEqual(self.poll("alice"), {"alice": ("ok", "declined")})


if __name__ == "__main__":
    main()
