"""Connecting: every address of a name is tried, the resolver is reread.

A name the tests make up gets its addresses from a hosts file
(POPFETCHD_HOSTS_FILE) or from a name server run here
(POPFETCHD_RESOLV_CONF); both need a build with -Dtest_hooks=true. The
addresses that must fail are loopback ones nothing listens on: the
connection is refused at once. The POP3 server is tests/fakepop.py,
without TLS (the names are made up; allow_plaintext is set).

Run: python3 tests/test_net.py --binary build/popfetchd
"""

import errno
import os
import select
import signal
import socket
import struct
import threading

from harness import WAIT, FakePopCase, main

MESSAGES = [
    b"From: a@example.org\nSubject: one\n\nbody one\n",
    b"From: b@example.org\nSubject: two\n\nbody two\n",
]

# A loopback address nothing listens on: connections to it are refused.
DEAD4 = "127.0.0.3"


class V6Relay:
    """Accepts on [::1]:PORT and forwards each connection to
    127.0.0.1:PORT, so a server on IPv4 is reached over IPv6. Counts the
    connections it accepted."""

    def __init__(self, port):
        self.port = port
        self.accepted = 0
        self.sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("::1", port))
        self.sock.listen(4)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            threading.Thread(target=self._pump, args=(c,),
                             daemon=True).start()

    def _pump(self, c):
        u = socket.create_connection(("127.0.0.1", self.port), WAIT)
        peers = {c: u, u: c}
        try:
            while True:
                r, _, _ = select.select(list(peers), [], [], WAIT)
                if not r:
                    return
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    peers[s].sendall(data)
        except OSError:
            pass
        finally:
            c.close()
            u.close()

    def stop(self):
        self.sock.close()


class Blackhole:
    """A listener on ADDRESS:PORT whose accept queue is full and never
    drained: a further connection attempt gets no answer at all, as from
    a host that drops packets."""

    def __init__(self, address, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((address, port))
        self.sock.listen(0)
        self.fillers = []
        # Filled until a connect no longer completes by itself.
        for _ in range(8):
            c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            c.setblocking(False)
            if c.connect_ex((address, port)) not in (0, errno.EINPROGRESS):
                c.close()
                break
            self.fillers.append(c)

    def stop(self):
        for c in self.fillers:
            c.close()
        self.sock.close()


class FakeDns:
    """A name server on 127.0.0.1 (UDP) that answers every A query with
    ADDRESS and every other query with no record; with ADDRESS None, every
    name is unknown (NXDOMAIN). Counts the queries."""

    def __init__(self, address, silent=False):
        self.address = address
        self.silent = silent  # True: never answers
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                q, peer = self.sock.recvfrom(512)
            except OSError:
                return
            if self.silent:
                self.queries += 1
                continue
            reply = self._answer(q)
            if reply is not None:
                self.queries += 1
                self.sock.sendto(reply, peer)

    def _answer(self, q):
        # RFC 1035 4.1: header, then one question (name, type, class).
        if len(q) < 12:
            return None
        qid, _, qdcount = struct.unpack("!HHH", q[:6])
        if qdcount != 1:
            return None
        i = 12
        while i < len(q) and q[i] != 0:
            i += 1 + q[i]
        end = i + 5
        if end > len(q):
            return None
        qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
        answers = b""
        flags = 0x8180 if self.address is not None else 0x8183
        if qtype == 1 and self.address is not None:
            # The name by pointer to the question (offset 12), IN A.
            answers = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) \
                + socket.inet_aton(self.address)
        head = struct.pack("!HHHHHH", qid, flags, 1,
                           1 if answers else 0, 0, 0)
        return head + q[12:end] + answers

    def stop(self):
        self.sock.close()


class NetTest(FakePopCase):
    MESSAGES = MESSAGES

    def setUp(self):
        super().setUp()
        self.hosts = os.path.join(self.dir, "hosts")
        self.resolv = os.path.join(self.dir, "resolv.conf")

    def server(self):
        return super().server(tls=None)

    def write_hosts(self, *entries):
        with open(self.hosts, "w") as f:
            for address, name in entries:
                f.write("%s %s\n" % (address, name))

    def write_resolv(self, dns):
        # A name server on another port than 53: libevent takes ip:port.
        with open(self.resolv, "w") as f:
            f.write("nameserver 127.0.0.1:%d\noptions attempts:1\n"
                    % dns.port)

    def config(self, srv, host, **keys):
        """Account "fake" on SRV's port of HOST, without TLS."""
        return super().config(srv, host=host, allow_plaintext=True,
                              ca_file=None, settings={"poll_interval": 3600},
                              **keys)

    def env(self):
        """Where the test build looks up names: the hosts file or the
        resolver configuration, if the test wrote one."""
        env = {}
        if os.path.exists(self.hosts):
            env["POPFETCHD_HOSTS_FILE"] = self.hosts
        if os.path.exists(self.resolv):
            env["POPFETCHD_RESOLV_CONF"] = self.resolv
        return env

    def run_once(self, conf):
        return super().run_once(conf, env=self.env())

    def assert_fetched(self, r, srv):
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(self.delivered()), sorted(MESSAGES))
        self.assertEqual(srv.messages, [])

    def test_hosts_file_gives_every_entry(self):
        """The premise of the tests below: a name listed twice in a hosts
        file resolves to both addresses, in the file's order (seen in the
        error naming each address it tried)."""
        srv = self.server()
        self.write_hosts((DEAD4, "twice.test"), ("127.0.0.4", "twice.test"))
        r = self.run_once(self.config(srv, "twice.test"))
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("all 2 addresses failed: %s: " % DEAD4, r.stderr)
        self.assertIn("; 127.0.0.4: ", r.stderr)

    def test_second_address_after_refusal(self):
        srv = self.server()
        self.write_hosts((DEAD4, "multi.test"), ("127.0.0.1", "multi.test"))
        r = self.run_once(self.config(srv, "multi.test"))
        self.assert_fetched(r, srv)

    def test_ipv6_after_ipv4_refused(self):
        srv = self.server()
        try:
            relay = V6Relay(srv.port)
        except OSError as e:
            self.skipTest("no IPv6 loopback: %s" % e)
        self.addCleanup(relay.stop)
        self.write_hosts((DEAD4, "dual.test"), ("::1", "dual.test"))
        r = self.run_once(self.config(srv, "dual.test"))
        self.assert_fetched(r, srv)
        self.assertEqual(relay.accepted, 1)

    def test_next_address_after_a_timeout(self):
        """An address that never answers costs one timeout (1 s here),
        then the next one is tried."""
        srv = self.server()
        hole = Blackhole("127.0.0.5", srv.port)
        self.addCleanup(hole.stop)
        self.write_hosts(("127.0.0.5", "slow.test"),
                         ("127.0.0.1", "slow.test"))
        r = self.run_once(self.config(srv, "slow.test", timeout=1))
        self.assert_fetched(r, srv)

    def test_every_address_refused(self):
        srv = self.server()
        # Nothing listens on [::1] at the server's port, nor on DEAD4.
        self.write_hosts(("::1", "dead.test"), (DEAD4, "dead.test"))
        r = self.run_once(self.config(srv, "dead.test"))
        self.assertEqual(r.returncode, 75, r.stderr)
        line = [l for l in r.stderr.splitlines() if "error=" in l]
        self.assertEqual(len(line), 1, r.stderr)
        self.assertIn("account=fake", line[0])
        self.assertIn("dead.test:%d: cannot connect: all 2 addresses "
                      "failed: [::1]: " % srv.port, line[0])
        self.assertIn("; %s: " % DEAD4, line[0])
        self.assertEqual(srv.commands, [])
        self.assertEqual(self.delivered(), [])

    def test_unknown_name(self):
        srv = self.server()
        dns = FakeDns(None)
        self.addCleanup(dns.stop)
        self.write_resolv(dns)
        r = self.run_once(self.config(srv, "nowhere.test"))
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("cannot resolve nowhere.test", r.stderr)
        self.assertIn("account=fake", r.stderr)

    def test_lookup_bounded_by_the_timeout(self):
        srv = self.server()
        dns = FakeDns(None, silent=True)
        self.addCleanup(dns.stop)
        self.write_resolv(dns)
        r = self.run_once(self.config(srv, "silent.test", timeout=1))
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("account=fake", r.stderr)
        self.assertIn("cannot resolve silent.test: timed out after 1 s",
                      r.stderr)
        self.assertGreater(dns.queries, 0)

    def test_stop_during_a_lookup(self):
        """Stopped while the name lookup runs: a clean exit (the
        sanitizer build also checks that nothing is left allocated)."""
        srv = self.server()
        dns = FakeDns(None, silent=True)
        self.addCleanup(dns.stop)
        self.write_resolv(dns)
        d = self.daemon(self.config(srv, "silent.test"), ["-v"],
                        env=self.env())
        d.wait_line(r"started accounts=")
        d.signal(signal.SIGUSR1)
        d.wait_line(r"account=fake connecting to silent.test")
        d.signal(signal.SIGTERM)
        rc = d.wait_exit()
        self.assertEqual(rc, 0, "\n".join(d.lines))
        self.assertEqual([l for l in d.lines if "Sanitizer" in l], [])

    def test_reload_rereads_resolver_configuration(self):
        srv = self.server()
        old, new = FakeDns(DEAD4), FakeDns("127.0.0.1")
        self.addCleanup(old.stop)
        self.addCleanup(new.stop)
        self.write_resolv(old)
        d = self.daemon(self.config(srv, "moved.test"), env=self.env())
        # First polls are spread over a while: not waiting for that.
        d.wait_line(r"started accounts=")
        d.signal(signal.SIGUSR1)
        line = d.wait_line(r"account=fake .*result=")
        self.assertIn("result=network", line)
        self.assertGreater(old.queries, 0)

        self.write_resolv(new)
        mark = d.mark()
        d.signal(signal.SIGHUP)
        d.wait_line(r"reloaded file=", mark)
        d.signal(signal.SIGUSR1)
        line = d.wait_line(r"account=fake .*result=", mark)
        self.assertIn("result=ok", line)
        self.assertGreater(new.queries, 0)
        self.assertEqual(sorted(self.delivered()), sorted(MESSAGES))


if __name__ == "__main__":
    main()
