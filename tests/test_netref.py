#!/usr/bin/env python3
"""bench_netref, the benchmark's network-only reference (bench/netref.c):
it fetches exactly what the server holds and leaves the mailbox empty,
over implicit TLS and plain text, several accounts at once against a
throwaway Dovecot; its scan of the message data (end, dot-stuffing,
CRLF) holds when the data comes a byte at a time (tests/fakepop.py); it
fails, naming the account and deleting nothing, on a wrong password or a
certificate it cannot trust.

    python3 tests/test_netref.py --binary build/popfetchd

bench_netref is looked for beside the binary (meson builds both).
"""
import collections
import hashlib
import os
import re
import subprocess
import unittest

import mailgen
from dovecot import Dovecot
from fakepop import make_cert
from harness import BINARY, FakePopCase, main, tempdir

NETREF = os.path.join(os.path.dirname(BINARY), "bench_netref")
HAVE_NETREF = os.access(NETREF, os.X_OK)
WHY_NOT = "no bench_netref beside %s (build the whole tree)" % BINARY
PASSWORD = "netref-pass"
TIMEOUT = 60


def digests(messages):
    return collections.Counter(hashlib.sha256(m).hexdigest()
                               for m in messages)


class Run:
    """One bench_netref run: exit status, its fields, stderr, and the
    digests it wrote per user."""

    def __init__(self, folder, accounts, port, tls="implicit", ca=None,
                 conc=1):
        acc = os.path.join(folder, "accounts")
        with open(acc, "w") as f:
            f.write("".join("%s\t%s\n" % a for a in accounts))
        dig = os.path.join(folder, "digests")
        argv = [NETREF, "-t", tls, "-n", str(conc), "-d", dig]
        if ca is not None:
            argv += ["-c", ca]
        p = subprocess.run(argv + ["127.0.0.1", str(port), acc],
                           capture_output=True, text=True, timeout=TIMEOUT,
                           stdin=subprocess.DEVNULL)
        self.status, self.stderr = p.returncode, p.stderr
        m = re.fullmatch(r"netref: (.*)\n", p.stdout)
        self.fields = dict(kv.split("=") for kv in m.group(1).split()) \
            if m else {}
        self.by_user = collections.defaultdict(collections.Counter)
        self.numbers = collections.defaultdict(list)
        with open(dig) as f:
            for line in f:
                user, msgno, hexd = line.split()
                self.by_user[user][hexd] += 1
                self.numbers[user].append(int(msgno))

    def count(self, key):
        return int(self.fields[key])


@unittest.skipUnless(HAVE_NETREF, WHY_NOT)
class AgainstDovecot(unittest.TestCase):
    """One Dovecot for the class: its start is most of the time."""

    @classmethod
    def setUpClass(cls):
        cls.dc = Dovecot(keep_dir=bool(os.environ.get("KEEP_TMP")))
        try:
            cls.dc.start()
        except BaseException:
            cls.dc.cleanup()
            raise
        for user in ("alice", "bob", "carol", "dave"):
            cls.dc.add_user(user, PASSWORD)

    @classmethod
    def tearDownClass(cls):
        cls.dc.cleanup()

    def setUp(self):
        self.dir = tempdir()
        self.addCleanup(subprocess.run, ["rm", "-rf", self.dir])
        self.mail = {}
        for seed, (user, count) in enumerate((("alice", 40), ("bob", 25),
                                              ("carol", 3), ("dave", 0))):
            for sub in ("new", "cur"):
                d = os.path.join(self.dc.maildir(user), sub)
                for name in os.listdir(d):
                    os.unlink(os.path.join(d, name))
            msgs = mailgen.generate(count, seed=seed, tag=user)
            self.dc.deliver_many(user, msgs)
            self.mail[user] = msgs

    def assert_fetched_all(self, run, users):
        self.assertEqual(run.status, 0, run.stderr)
        self.assertEqual(run.count("failed"), 0)
        self.assertEqual(run.count("accounts"), len(users))
        want = sum(len(self.mail[u]) for u in users)
        self.assertEqual(run.count("messages"), want)
        self.assertEqual(run.count("mail_bytes"),
                         sum(len(m) for u in users for m in self.mail[u]))
        # The wire adds a CR per line and the terminator at least.
        self.assertGreater(run.count("wire_bytes"), run.count("mail_bytes"))
        for user in users:
            self.assertEqual(run.by_user[user], digests(self.mail[user]),
                             user)
            self.assertEqual(sorted(run.numbers[user]),
                             list(range(1, len(self.mail[user]) + 1)))
            self.assertEqual(self.dc.server_messages(user), [], user)

    def test_tls_accounts_at_once(self):
        """Four accounts (one empty), two at a time, over implicit TLS."""
        users = ["alice", "bob", "carol", "dave"]
        run = Run(self.dir, [(u, PASSWORD) for u in users],
                  self.dc.ssl_port, ca=self.dc.ca_file, conc=2)
        self.assert_fetched_all(run, users)

    def test_plain(self):
        run = Run(self.dir, [("bob", PASSWORD)], self.dc.port, tls="plain")
        self.assert_fetched_all(run, ["bob"])

    def test_wrong_password(self):
        """The account fails and is named; the other is fetched; nothing
        of the failed one is deleted."""
        run = Run(self.dir, [("alice", "wrong"), ("carol", PASSWORD)],
                  self.dc.ssl_port, ca=self.dc.ca_file)
        self.assertEqual(run.status, 1)
        self.assertEqual(run.count("failed"), 1)
        self.assertRegex(run.stderr, r"account alice: PASS: -ERR")
        self.assertEqual(run.count("messages"), 3)
        self.assertEqual(digests(self.dc.server_messages("alice")),
                         digests(self.mail["alice"]))
        self.assertEqual(self.dc.server_messages("carol"), [])

    def test_untrusted_certificate(self):
        """A CA file that does not hold the server's issuer: no login."""
        other, _ = make_cert(self.dir, "other")
        run = Run(self.dir, [("carol", PASSWORD)], self.dc.ssl_port,
                  ca=other)
        self.assertEqual(run.status, 1)
        self.assertRegex(run.stderr, r"account carol: connection failed: "
                                     r".*certificate verify failed")
        self.assertEqual(run.count("messages"), 0)
        self.assertEqual(len(self.dc.server_messages("carol")), 3)


# Lines a scan of the data can get wrong: dot-stuffed lines, a line that
# is a lone dot, CRs that are content (alone, before an LF, doubled).
TRICKY = [
    b".\n",
    b"Subject: dots\n\n.\n..\n...x\n.a\n",
    b"a\rb\n\r\n\r\r\nx\r\n.\r\n",
    b"\n",
    b"plain line\nend\n" * 50,
]


@unittest.skipUnless(HAVE_NETREF, WHY_NOT)
class ByteAtATime(FakePopCase):
    """The data split everywhere: the fake server sends RETR replies a
    byte at a time (no PIPELINING either: one command after another)."""

    MESSAGES = TRICKY

    def test_split_everywhere(self):
        srv = self.server(tls=None)
        srv.dribble, srv.dribble_what = 0, "retr"
        run = Run(self.dir, [(self.USER, self.PASSWORD)], srv.port,
                  tls="plain")
        self.assertEqual(run.status, 0, run.stderr)
        self.assertEqual(run.count("messages"), len(TRICKY))
        self.assertEqual(run.count("mail_bytes"), sum(map(len, TRICKY)))
        self.assertEqual(run.by_user[self.USER], digests(TRICKY))
        srv.sync()
        self.assertEqual(srv.messages, [])


if __name__ == "__main__":
    main()
