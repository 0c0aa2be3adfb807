"""Integration tests: popfetchd --once against a real, throwaway Dovecot.

Each test starts its own Dovecot (tests/dovecot.py) on 127.0.0.1, deposits
generated messages (tests/mailgen.py) in its Maildir, writes a popfetchd
configuration into its own temporary folder, runs `popfetchd -c CONF --once`
and checks what arrived in the local Maildir, what is left on the server,
and what Dovecot logged.

Run: python3 tests/test_fetch.py --binary build/popfetchd [unittest args]
     (or set POPFETCHD). KEEP_TMP=1 leaves the temporary folders behind.
"""

import base64
import hashlib
import os
import poplib
import re
import ssl
import subprocess

import mailgen
from harness import (BINARY, RUN_TIMEOUT, DovecotCase, clean_env,
                     has_test_hooks, main, multiset)

PASSWORD = DovecotCase.PASSWORD


class TestHarness(DovecotCase):
    """The throwaway Dovecot itself, checked with Python's poplib.

    When these fail, the fault is in the test set-up, not in popfetchd.
    """

    def setUp(self):
        super().setUp()
        # Generated messages have 20 KB lines; poplib refuses lines over
        # 2 KB by default.
        self.addCleanup(setattr, poplib, "_MAXLINE", poplib._MAXLINE)
        poplib._MAXLINE = 1 << 20

    @staticmethod
    def retrieve(client, number):
        # poplib has removed the CRLFs and the dot-stuffing.
        _, lines, _ = client.retr(number)
        return b"\n".join(lines) + b"\n"

    def check_session(self, client, dc, msgs):
        client.user("alice")
        client.pass_(PASSWORD)
        count, size = client.stat()
        self.assertEqual(count, len(msgs))
        got = [self.retrieve(client, i + 1) for i in range(count)]
        self.assertEqual(multiset(got), multiset(msgs))
        uidls = client.uidl()[1]
        self.assertRegex(uidls[0].decode(), r"^1 [0-9a-f]{16}$")
        client.dele(1)
        client.quit()
        self.assertEqual(len(dc.server_messages("alice")), len(msgs) - 1)
        dc.sync_log()
        self.assertEqual(dc.logins("alice"), 1)

    def test_poplib_implicit_tls(self):
        dc = self.dovecot()
        dc.add_user("alice", PASSWORD)
        msgs = mailgen.generate(8, seed=20, tag="harness")
        dc.deliver_many("alice", msgs)
        ctx = ssl.create_default_context(cafile=dc.ca_file)
        client = poplib.POP3_SSL("127.0.0.1", dc.ssl_port, context=ctx,
                                 timeout=30)
        self.check_session(client, dc, msgs)

    def test_poplib_stls(self):
        dc = self.dovecot()
        dc.add_user("alice", PASSWORD)
        msgs = mailgen.generate(4, seed=21, tag="harness-stls")
        dc.deliver_many("alice", msgs)
        client = poplib.POP3("localhost", dc.port, timeout=30)
        self.assertIn("STLS", client.capa())
        client.stls(ssl.create_default_context(cafile=dc.ca_file))
        self.check_session(client, dc, msgs)

    def test_wrong_name_certificate_is_refused(self):
        dc = self.dovecot(cert_names=("wrong.example",), cert_ips=())
        ctx = ssl.create_default_context(cafile=dc.ca_file)
        with self.assertRaises(ssl.SSLCertVerificationError):
            poplib.POP3_SSL("localhost", dc.ssl_port, context=ctx,
                            timeout=30)


class TestFetch(DovecotCase):

    def test_fetch_delete_many_messages(self):
        """200+ messages, one of several MB, over implicit TLS, deleted."""
        dc = self.dovecot()
        dc.add_user("alice", PASSWORD)
        msgs = mailgen.generate(220, seed=1, huge=True)
        self.assertGreater(max(len(m) for m in msgs), 2 * 1024 * 1024)
        dc.deliver_many("alice", msgs)
        conf = self.config(self.account(dc))

        r = self.run_once(conf)

        self.assert_exit(r, 0)
        self.assert_delivered_exactly(msgs)
        self.assertEqual(dc.server_messages("alice"), [],
                         "messages left on the server")
        # Maildir names carry the size: ...,S=<bytes>.
        for name in self.files("new"):
            m = re.search(r",S=(\d+)$", name)
            self.assertTrue(m, "no ,S=<size> at the end of %r" % name)
            size = os.path.getsize(os.path.join(self.maildir, "new", name))
            self.assertEqual(int(m.group(1)), size, name)
        self.assert_summary(r, "alice", 220)

    def test_sync_modes(self):
        """sync = "batch" makes a batch durable with syncfs, not an fsync
        per message; sync = "file" fsyncs each message, and tmp/ per
        batch. Both deliver exactly once, and neither waits for the disk
        on the event loop's thread (the process's first): every sync runs
        on a worker thread. Counted with strace."""
        dc = self.dovecot()
        n = 30
        for mode in ("batch", "file"):
            with self.subTest(mode=mode):
                user = "sync" + mode
                dc.add_user(user, PASSWORD)
                msgs = mailgen.generate(n, seed=41, tag=mode)
                dc.deliver_many(user, msgs)
                md = os.path.join(self.dir, "Maildir-" + mode)
                conf = self.config(self.account(
                    dc, name=user, user=user, maildir=md, sync=mode))
                trace = os.path.join(self.dir, "strace-" + mode)
                # LeakSanitizer cannot work under ptrace; every other test
                # of a sanitizer build still checks for leaks.
                env = clean_env()
                env["ASAN_OPTIONS"] = (env.get("ASAN_OPTIONS", "") +
                                       ":detect_leaks=0").lstrip(":")
                r = subprocess.run(
                    ["strace", "-f", "-qq", "-o", trace, "-e",
                     "trace=execve,fsync,fdatasync,syncfs", BINARY, "-c", conf,
                     "--once"], stdin=subprocess.DEVNULL, env=env,
                    capture_output=True, text=True, errors="replace",
                    timeout=RUN_TIMEOUT)
                self.assert_exit(r, 0)
                self.assert_delivered_exactly(msgs, md)
                with open(trace) as f:
                    text = f.read()
                fsyncs = len(re.findall(r"\bfsync\(", text))
                syncfs = len(re.findall(r"\bsyncfs\(", text))
                if mode == "batch":
                    self.assertGreaterEqual(syncfs, 1, text)
                    self.assertLess(fsyncs, n, text)
                else:
                    self.assertEqual(syncfs, 0, text)
                    self.assertGreaterEqual(fsyncs, n + 2, text)
                main_pid = re.search(r"^(\d+) +execve\(", text, re.M)
                self.assertIsNotNone(main_pid, text[:500])
                on_loop = [l for l in text.splitlines()
                           if l.split(" ", 1)[0] == main_pid.group(1) and
                           re.search(r"\b(fsync|fdatasync|syncfs)\(", l)]
                self.assertEqual(on_loop, [])

    def test_keep_fetches_only_new(self):
        """keep = true: mail stays; later runs fetch only what is new."""
        dc = self.dovecot()
        dc.add_user("alice", PASSWORD)
        msgs = mailgen.generate(30, seed=2, tag="keep")
        dc.deliver_many("alice", msgs)
        conf = self.config(self.account(dc, keep=True))

        r = self.run_once(conf)
        self.assert_exit(r, 0)
        self.assert_delivered_exactly(msgs)
        self.assertEqual(multiset(dc.server_messages("alice")),
                         multiset(msgs), "keep = true deleted mail")

        r = self.run_once(conf)
        self.assert_exit(r, 0)
        self.assert_delivered_exactly(msgs)
        self.assert_summary(r, "alice", 0)

        late = mailgen.generate(1, seed=3, tag="late")
        dc.deliver("alice", late[0])
        r = self.run_once(conf)
        self.assert_exit(r, 0)
        self.assert_delivered_exactly(msgs + late)
        self.assert_summary(r, "alice", 1)
        self.assertEqual(multiset(dc.server_messages("alice")),
                         multiset(msgs + late))

    def test_delete_after_days(self):
        """keep with delete_after_days: deleted N days after first seen."""
        if not has_test_hooks():
            self.skipTest("needs a build with -Dtest_hooks=true")
        day = 86400
        t0 = 1_800_000_000
        dc = self.dovecot()
        dc.add_user("alice", PASSWORD)
        early = mailgen.generate(10, seed=4, tag="early")
        dc.deliver_many("alice", early)
        conf = self.config(self.account(dc, keep=True,
                                        delete_after_days=7))
        self.assert_exit(self.run_once(conf, now=t0), 0)
        self.assert_delivered_exactly(early)

        late = mailgen.generate(1, seed=5, tag="late")
        dc.deliver("alice", late[0])
        self.assert_exit(self.run_once(conf, now=t0 + 3 * day), 0)
        self.assert_delivered_exactly(early + late)
        self.assertEqual(len(dc.server_messages("alice")), 11)

        # Day 7 after the first poll: the early ones go, the late stays.
        r = self.run_once(conf, now=t0 + 7 * day)
        self.assert_exit(r, 0)
        self.assertEqual(multiset(dc.server_messages("alice")),
                         multiset(late))
        self.assert_summary(r, "alice", 0)
        self.assert_delivered_exactly(early + late)

        self.assert_exit(self.run_once(conf, now=t0 + 10 * day), 0)
        self.assertEqual(dc.server_messages("alice"), [])
        self.assert_delivered_exactly(early + late)

    def test_max_message_size(self):
        """Larger messages stay on the server, poll after poll, and are
        logged once."""
        dc = self.dovecot()
        dc.add_user("alice", PASSWORD)
        msgs = mailgen.generate(40, seed=6, tag="size")
        limit = 20000
        # The server counts CRLF line ends: compare with its view.
        small = [m for m in msgs if len(m) + m.count(b"\n") <= limit]
        big = [m for m in msgs if len(m) + m.count(b"\n") > limit]
        self.assertTrue(small and big, "the corpus needs both kinds")
        dc.deliver_many("alice", msgs)
        conf = self.config(self.account(dc, max_message_size=limit))
        for run in range(2):
            r = self.run_once(conf)
            self.assert_exit(r, 0)
            self.assert_delivered_exactly(small)
            self.assertEqual(multiset(dc.server_messages("alice")),
                             multiset(big))
            self.assertIn("left=%d" % len(big), r.stderr)
            # Each one is reported by the first poll that sees it, once.
            said = re.findall(r"over max_message_size", r.stderr)
            self.assertEqual(len(said), len(big) if run == 0 else 0,
                             r.stderr)

    def run_probe(self, conf, option, name="alice"):
        return self.run_popfetchd("-c", conf, option, name)

    def test_serverinfo(self):
        """--serverinfo: greeting, TLS, capabilities, STAT; nothing moves."""
        dc = self.dovecot()
        dc.add_user("alice", PASSWORD)
        msgs = mailgen.generate(5, seed=7, tag="info")
        dc.deliver_many("alice", msgs)
        pub = subprocess.run(
            ["openssl", "x509", "-noout", "-pubkey", "-in", dc.cert_file],
            capture_output=True, check=True).stdout
        der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"],
                             input=pub, capture_output=True,
                             check=True).stdout
        pin = "sha256/" + base64.b64encode(
            hashlib.sha256(der).digest()).decode()
        for tls in ("implicit", "starttls"):
            conf = self.config(self.account(dc, tls=tls))
            r = self.run_probe(conf, "--serverinfo")
            self.assert_exit(r, 0)
            out = r.stdout
            self.assertRegex(out, r"greeting: +\S")
            self.assertRegex(out, r"tls: +TLSv1\.[23] ")
            self.assertIn('pin:          tls_pins = ["%s"];' % pin, out)
            self.assertRegex(out, r"(?m)^certificate:  #0 /")
            self.assertIn("capability:   UIDL\n", out)
            # STLS is offered before TLS only, and marked so.
            self.assertNotIn("capability:   STLS\n", out)
            self.assertEqual("capability:   STLS (before TLS)" in out,
                             tls == "starttls")
            self.assertIn("mailbox:      5 messages", out)
            self.assertIn("logged in:", out)
        self.assertEqual(multiset(dc.server_messages("alice")),
                         multiset(msgs))
        self.assert_nothing_delivered()

    def test_list(self):
        """--list: one line per message with UID, From and Subject."""
        dc = self.dovecot()
        dc.add_user("alice", PASSWORD)
        msgs = mailgen.generate(12, seed=8, tag="list")
        dc.deliver_many("alice", msgs)
        conf = self.config(self.account(dc))
        r = self.run_probe(conf, "--list")
        self.assert_exit(r, 0)
        lines = [l for l in r.stdout.splitlines()
                 if re.match(r"^ +\d+ +\d+ ", l)]
        self.assertEqual(len(lines), len(msgs), r.stdout)
        # Server text is printed escaped: 8-bit bytes as \xNN.
        subjects = sorted(
            "".join(chr(b) if 0x20 <= b <= 0x7E and b != 0x5C else
                    "\\\\" if b == 0x5C else "\\x%02x" % b
                    for b in mailgen.subject(m).encode("utf-8"))
            for m in msgs)
        listed = sorted(l.rsplit(" | ", 1)[1] for l in lines)
        self.assertEqual(listed, subjects)
        self.assertEqual(multiset(dc.server_messages("alice")),
                         multiset(msgs))
        self.assert_nothing_delivered()

    def test_pipelined_thousand(self):
        """1,000 messages fetched with pipelining, exactly once."""
        dc = self.dovecot()
        dc.add_user("alice", PASSWORD)
        msgs = mailgen.generate(1000, seed=9, tag="pipe")
        dc.deliver_many("alice", msgs)
        conf = self.config(self.account(dc, pipelining="on"))
        r = self.run_once(conf, "-d", "1")
        self.assert_exit(r, 0)
        self.assert_delivered_exactly(msgs)
        self.assertEqual(dc.server_messages("alice"), [])
        # Commands really overlapped: a RETR went out before the
        # previous one's reply came back.
        trace = [l.split(" ", 2)[1:] for l in r.stderr.splitlines()
                 if l.startswith("account=alice ") and
                 l.split(" ", 2)[1:2] in (["<"], [">"])]
        depth = most = 0
        for direction, _ in trace:
            depth += 1 if direction == ">" else 0
            if direction == "<":
                depth = max(depth - 1, 0)
            most = max(most, depth)
        self.assertGreater(most, 10)

    def test_wrong_password(self):
        """Authentication refused: exit 77, named account, nothing moved."""
        dc = self.dovecot()
        dc.add_user("alice", PASSWORD)
        msgs = mailgen.generate(5, seed=4, tag="wrongpw")
        dc.deliver_many("alice", msgs)
        conf = self.config(self.account(dc, name="work",
                                        password="not-the-password"))

        r = self.run_once(conf)

        self.assert_exit(r, 77)
        failed = [l for l in r.stderr.splitlines()
                  if re.search(r"authentication failed", l, re.I)]
        self.assertTrue(failed, "no 'authentication failed' in:\n"
                        + r.stderr)
        self.assertTrue(any("account=work" in l for l in failed),
                        "the failure line does not name the account:\n"
                        + "\n".join(failed))
        self.assertNotIn("not-the-password", r.stderr)
        self.assert_nothing_delivered()
        self.assertEqual(multiset(dc.server_messages("alice")),
                         multiset(msgs))
        # The refusal came from Dovecot, not from the client giving up.
        dc.sync_log()
        self.assertGreaterEqual(dc.auth_failures("alice"), 1,
                                dc.log_text()[-3000:])
        self.assertEqual(dc.logins("alice"), 0)

    def test_certificate_name_mismatch_sends_no_credentials(self):
        """A certificate for another name: refused before any login."""
        dc = self.dovecot(cert_names=("wrong.example",), cert_ips=())
        dc.add_user("alice", PASSWORD)
        msgs = mailgen.generate(3, seed=5, tag="wrongcert")
        dc.deliver_many("alice", msgs)
        cases = [("implicit", "127.0.0.1"), ("implicit", "localhost"),
                 ("starttls", "localhost")]
        for tls, host in cases:
            with self.subTest(tls=tls, host=host):
                handshakes = self._handshakes_without_auth(dc)
                conf = self.config(self.account(dc, tls=tls, host=host))

                r = self.run_once(conf)

                self.assertNotEqual(r.returncode, 0, r.stderr)
                self.assert_exit(r, 75)
                self.assertRegex(r.stderr, re.compile(
                    r"(certificate|host ?name).*"
                    r"(fail|mismatch|match|verif|invalid)|"
                    r"(fail|mismatch|verif).*(certificate|host ?name)",
                    re.I))
                self.assertIn("account=alice", r.stderr)
                self.assert_nothing_delivered()
                self.assertEqual(multiset(dc.server_messages("alice")),
                                 multiset(msgs))
                # Dovecot saw the connection but no credentials: the only
                # authentication requests are sync_log()'s own.
                dc.sync_log()
                self.assertGreater(self._handshakes_without_auth(dc),
                                   handshakes, "popfetchd never connected")
                self.assertEqual(dc.auth_attempts("alice"), 0,
                                 dc.log_text()[-3000:])
                self.assertEqual(dc.auth_requests(), dc.syncs,
                                 dc.log_text()[-3000:])

    @staticmethod
    def _handshakes_without_auth(dc):
        return sum(1 for l in dc.log_text().splitlines()
                   if "pop3-login" in l and "no auth attempts" in l)

    def test_received_header(self):
        """received_header = true: one Received: line, then the original."""
        dc = self.dovecot()
        dc.add_user("alice", PASSWORD)
        msgs = mailgen.generate(12, seed=6, tag="received")
        dc.deliver_many("alice", msgs)
        conf = self.config(self.account(dc, received_header=True))

        r = self.run_once(conf)

        self.assert_exit(r, 0)
        originals = []
        for data in self.delivered():
            # One header field, folded (RFC 5322: continuation lines
            # start with white space); the original starts after it.
            m = re.match(rb"Received: (.*\n(?:[ \t].*\n)*)", data)
            self.assertIsNotNone(m, data[:200])
            # RFC 5321 section 4.4: from, by, with, id, for; date.
            self.assertRegex(
                m.group(1).replace(b"\n\t", b" "),
                rb"^from \[127\.0\.0\.1\] \(\[127\.0\.0\.1\]\) by \S+ "
                rb"\(popfetchd [^)]*\) with POP3 id [!-~]+; "
                rb"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}\n$")
            originals.append(data[m.end():])
        self.assertEqual(multiset(originals), multiset(msgs))
        self.assertEqual(self.files("tmp"), [])
        self.assertEqual(dc.server_messages("alice"), [])

    def test_starttls(self):
        """tls = "starttls" on the plain port fetches, over TLS."""
        dc = self.dovecot()
        dc.add_user("alice", PASSWORD)
        msgs = mailgen.generate(25, seed=7, tag="stls")
        dc.deliver_many("alice", msgs)
        conf = self.config(self.account(dc, tls="starttls", host="localhost"))

        r = self.run_once(conf)

        self.assert_exit(r, 0)
        self.assert_delivered_exactly(msgs)
        self.assertEqual(dc.server_messages("alice"), [])
        dc.sync_log()
        logins = [l for l in dc.log_text().splitlines()
                  if "Login: user=<alice>," in l]
        self.assertEqual(len(logins), 1, "\n".join(logins))
        self.assertIn(", TLS", logins[0], "login did not happen over TLS")

    def test_auth_methods(self):
        """Each named mechanism logs in, as Dovecot confirms."""
        dc = self.dovecot()
        dc.add_user("alice", PASSWORD)
        # Dovecot logs USER/PASS as method=PLAIN.
        methods = [("plain", "PLAIN"), ("login", "LOGIN"), ("user", "PLAIN"),
                   ("apop", "APOP")]
        for i, (auth, logged) in enumerate(methods):
            with self.subTest(auth=auth):
                msgs = mailgen.generate(3, seed=10 + i, tag="auth-" + auth)
                dc.deliver_many("alice", msgs)
                maildir = os.path.join(self.dir, "Maildir-" + auth)
                conf = self.config(self.account(dc, maildir=maildir,
                                                auth=auth))

                r = self.run_once(conf)

                self.assert_exit(r, 0)
                self.assert_delivered_exactly(msgs, maildir)
                self.assertEqual(dc.server_messages("alice"), [])
                dc.sync_log()
                logins = [l for l in dc.log_text().splitlines()
                          if "Login: user=<alice>," in l]
                self.assertTrue(logins)
                self.assertIn("method=%s," % logged, logins[-1])

    def test_two_accounts_and_selection(self):
        """Two accounts in one file; -a polls only the one named."""
        dc = self.dovecot()
        dc.add_user("alice", PASSWORD)
        dc.add_user("bob", "bobs-password")
        for_alice = mailgen.generate(15, seed=8, tag="alice")
        for_bob = mailgen.generate(10, seed=9, tag="bob")
        dc.deliver_many("alice", for_alice)
        dc.deliver_many("bob", for_bob)
        alice_md = os.path.join(self.dir, "alice")
        bob_md = os.path.join(self.dir, "bob")
        conf = self.config(
            self.account(dc, name="alice", maildir=alice_md),
            self.account(dc, name="bob", user="bob", tls="starttls",
                         host="localhost", password="bobs-password",
                         maildir=bob_md))

        r = self.run_once(conf, "-a", "bob")
        self.assert_exit(r, 0)
        self.assert_delivered_exactly(for_bob, bob_md)
        self.assert_nothing_delivered(alice_md)
        self.assertEqual(len(dc.server_messages("alice")), len(for_alice))

        r = self.run_once(conf)
        self.assert_exit(r, 0)
        self.assert_delivered_exactly(for_alice, alice_md)
        self.assert_delivered_exactly(for_bob, bob_md)
        self.assertEqual(dc.server_messages("alice"), [])
        self.assertEqual(dc.server_messages("bob"), [])
        self.assert_summary(r, "alice", 15)
        self.assert_summary(r, "bob", 0)


if __name__ == "__main__":
    main()
