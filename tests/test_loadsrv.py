"""The benchmark's load server (bench/loadsrv.c) serves what it says.

bench_loadsrv is found beside the popfetchd under test (the same build
folder). popfetchd --once fetches a few of its made-up mailboxes over
implicit TLS and over STLS, and the Maildirs must hold exactly the
messages tests/loadgen.py makes from the same seed; a second run fetches
nothing, because the server kept the deletions. A POP3 client from the
standard library checks what popfetchd does not use (TOP, RSET, the box
lock, STLS before login).

Run: python3 tests/test_loadsrv.py --binary build/popfetchd
     (or set POPFETCHD). KEEP_TMP=1 leaves the temporary folders behind.
"""

import os
import poplib
import ssl
import unittest

import loadgen
from harness import BINARY, Case, main, write_config

LOADSRV = os.path.join(os.path.dirname(BINARY), "bench_loadsrv")
SEED = 11
# Empty boxes, bodies of two octets, and messages of many lines.
MESSAGES = (0, 9)
SIZES = (0, 30000)


class LoadServerCase(Case):

    def setUp(self):
        if not os.access(LOADSRV, os.X_OK):
            raise unittest.SkipTest("no bench_loadsrv beside %s" % BINARY)
        super().setUp()
        self.boxes = loadgen.Mailboxes(SEED, MESSAGES, SIZES)

    def server(self, *args):
        srv = loadgen.LoadServer(
            LOADSRV, os.path.join(self.dir, "loadsrv.pem"),
            ["--seed", str(SEED), "--messages", "%d-%d" % MESSAGES,
             "--sizes", "%d-%d" % SIZES] + list(args))
        self.addCleanup(srv.stop)
        return srv

    def accounts(self, srv, users, tls):
        return [{"name": u, "host": "127.0.0.1",
                 "port": srv.tls_port if tls == "implicit"
                 else srv.plain_port,
                 "tls": tls, "ca_file": srv.cert, "user": u,
                 "password": "any", "received_header": False,
                 "maildir": os.path.join(self.dir, "mail", u),
                 "timeout": 20} for u in users]

    def config(self, accounts):
        os.makedirs(os.path.join(self.dir, "mail"), exist_ok=True)
        return write_config(os.path.join(self.dir, "popfetchd.conf"),
                            accounts,
                            state_dir=os.path.join(self.dir, "state"))

    def expected(self, user):
        return [loadgen.lf(m) for _, m in self.boxes.box(user)]

    def client(self, srv, user):
        """A logged-in poplib client over implicit TLS."""
        ctx = ssl.create_default_context(cafile=srv.cert)
        p = poplib.POP3_SSL("127.0.0.1", srv.tls_port, context=ctx,
                            timeout=20)
        self.addCleanup(p.close)
        p.user(user)
        p.pass_("any")
        return p


class TestFetch(LoadServerCase):

    def fetch_all(self, srv, users, tls, keep=False):
        accts = self.accounts(srv, users, tls)
        for a in accts:
            a["keep"] = keep
        conf = self.config(accts)
        r = self.run_once(conf)
        self.assert_exit(r, 0)
        total = 0
        for u in users:
            want = self.expected(u)
            total += len(want)
            md = os.path.join(self.dir, "mail", u)
            self.assert_delivered_exactly(want, md)
        self.assertGreater(total, 0, "the seed made only empty boxes")
        # The second run: the server kept the deletions (or, with KEEP,
        # popfetchd its UIDs), so nothing comes again.
        r = self.run_once(conf)
        self.assert_exit(r, 0)
        for u in users:
            self.assert_summary(r, u, 0)
            self.assert_delivered_exactly(
                self.expected(u), os.path.join(self.dir, "mail", u))
        return total

    def test_implicit_tls(self):
        srv = self.server()
        users = ["tls%d" % i for i in range(6)]
        total = self.fetch_all(srv, users, "implicit")
        stats, _ = srv.stop()
        self.assertEqual(stats["retrieved"], total)
        self.assertEqual(stats["deleted"], total)
        self.assertEqual(stats["logins"], 2 * len(users))
        self.assertEqual(stats["handshakes"], 2 * len(users))
        self.assertEqual(stats["failed"], 0)

    def test_stls_with_latency(self):
        # Every reply 20 ms late: popfetchd's pipelined commands queue up
        # in the server and come back in order.
        srv = self.server("--latency", "20")
        users = ["stls%d" % i for i in range(6)]
        total = self.fetch_all(srv, users, "starttls")
        stats, _ = srv.stop()
        self.assertEqual(stats["retrieved"], total)
        self.assertEqual(stats["deleted"], total)
        self.assertEqual(stats["handshakes"], 2 * len(users))

    def test_keep(self):
        srv = self.server()
        users = ["keep%d" % i for i in range(3)]
        total = self.fetch_all(srv, users, "implicit", keep=True)
        stats, _ = srv.stop()
        self.assertEqual(stats["retrieved"], total)
        self.assertEqual(stats["deleted"], 0)


class TestProtocol(LoadServerCase):

    def test_top_rset_and_deletions(self):
        srv = self.server()
        user = next(u for u in ("p%d" % i for i in range(100))
                    if self.boxes.count(u) >= 3)
        box = self.boxes.box(user)
        p = self.client(srv, user)
        self.assertEqual(p.stat(), (len(box), sum(len(m) for _, m in box)))
        self.assertEqual([l.split()[1].decode() for l in p.uidl()[1]],
                         [u for u, _ in box])
        for i, (_, m) in enumerate(box):
            got = b"\r\n".join(p.retr(i + 1)[1]) + b"\r\n"
            self.assertEqual(got, m)
            head = b"\r\n".join(p.top(i + 1, 1)[1]) + b"\r\n"
            self.assertTrue(m.startswith(head))
            self.assertEqual(head.count(b"\r\n"),
                             m[:m.index(b"\r\n\r\n")].count(b"\r\n") + 3)
        p.dele(1)
        p.rset()
        p.dele(2)
        self.assertRaises(poplib.error_proto, p.retr, 2)
        p.quit()
        p = self.client(srv, user)
        self.assertEqual(p.stat()[0], len(box) - 1)
        self.assertEqual([l.split()[1].decode() for l in p.uidl()[1]],
                         [u for i, (u, _) in enumerate(box) if i != 1])

    def test_box_locked_while_open(self):
        srv = self.server()
        self.client(srv, "locked")
        ctx = ssl.create_default_context(cafile=srv.cert)
        p = poplib.POP3_SSL("127.0.0.1", srv.tls_port, context=ctx,
                            timeout=20)
        self.addCleanup(p.close)
        p.user("locked")
        with self.assertRaisesRegex(poplib.error_proto, r"\[IN-USE\]"):
            p.pass_("any")

    def test_login_needs_tls_on_the_plain_port(self):
        srv = self.server()
        p = poplib.POP3("127.0.0.1", srv.plain_port, timeout=20)
        self.addCleanup(p.close)
        self.assertIn("STLS", p.capa())
        self.assertRaises(poplib.error_proto, p.user, "plain")
        p.stls(ssl.create_default_context(cafile=srv.cert))
        self.assertNotIn("STLS", p.capa())
        p.user("plain")
        p.pass_("any")
        self.assertEqual(p.stat()[0], self.boxes.count("plain"))

    def test_password(self):
        srv = self.server("--password", "right")
        ctx = ssl.create_default_context(cafile=srv.cert)
        p = poplib.POP3_SSL("127.0.0.1", srv.tls_port, context=ctx,
                            timeout=20)
        self.addCleanup(p.close)
        p.user("pw")
        with self.assertRaisesRegex(poplib.error_proto, r"\[AUTH\]"):
            p.pass_("wrong")
        p.user("pw")
        p.pass_("right")


if __name__ == "__main__":
    main()
