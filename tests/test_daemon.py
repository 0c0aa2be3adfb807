"""Integration tests of the daemon: popfetchd without --once.

One throwaway Dovecot (tests/dovecot.py) serves every test of this file,
each with users of its own. The daemon runs in the foreground; the tests
synchronise on events, never on sleeps: lines on its stderr (read through
a pipe by a thread), datagrams on a notification socket the test binds
and passes as NOTIFY_SOCKET, files appearing in Maildirs.

Connection counts are measured on the server's side of the daemon: the
accounts reach Dovecot through a relay in this file that accepts on
several loopback addresses (one "host" each), forwards to Dovecot and
counts the connections open at once, per address and overall.

Run: python3 tests/test_daemon.py --binary build/popfetchd [unittest args]
     (or set POPFETCHD). KEEP_TMP=1 leaves the temporary folders behind.
"""

import collections
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import mailgen
from dovecot import Dovecot, free_ports, make_certificate
from fakepop import FakePop, make_cert
from harness import BINARY, WAIT, Case, NotifySocket, main, write_config

SRCDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Loopback addresses the relay listens on; each is one "host" for the
# daemon's per-host cap, and each is in the server certificate.
HOSTS = ["127.0.0.%d" % i for i in range(2, 7)]
# Upstream source address for accounts with a wrong password: Dovecot
# delays further logins from an address after a failure, and that must
# not slow down everyone else.
BAD_SOURCE = "127.0.0.66"

_dovecot = None



def setUpModule():
    global _dovecot
    _dovecot = Dovecot(cert_ips=["127.0.0.1"] + HOSTS,
                       keep_dir=bool(os.environ.get("KEEP_TMP")),
                       prefix="dovecot-daemon-")
    try:
        _dovecot.start()
    except BaseException:
        _dovecot.cleanup()
        raise


def tearDownModule():
    if _dovecot is not None:
        _dovecot.cleanup()


# --- the relay -------------------------------------------------------------

class _Pair:
    """One relayed connection: the daemon's side and Dovecot's side."""

    def __init__(self, name, client, upstream, rate):
        self.name, self.c, self.u, self.rate = name, client, upstream, rate
        self.to_u = bytearray()
        self.to_c = bytearray()
        self.c_eof = self.u_eof = False
        self.next_read = 0.0


class Relay:
    """Forwards TCP connections to Dovecot and counts them.

    listen() adds a listening address; every connection accepted there is
    forwarded to UPSTREAM_PORT on 127.0.0.1. A connection counts from its
    accept until the relay closes it. Before counting a new connection the
    relay reads everything the daemon already sent on the others, end of
    stream included: loopback delivers in order, so a connection the daemon
    closed before opening the new one is no longer counted. RATE limits
    the bytes per second from Dovecot to the daemon.
    """

    CHUNK = 65536

    def __init__(self):
        self.listeners = {}
        self.pairs = []
        self.lock = threading.Lock()
        self.current = collections.Counter()
        self.peak = collections.Counter()
        self.total = collections.Counter()
        self.current_all = self.peak_all = 0
        self._wake_r, self._wake_w = os.pipe()
        self.thread = None

    def listen(self, ip, upstream_port, source=None, rate=None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((ip, 0))
        s.listen(256)
        s.setblocking(False)
        self.listeners[s] = (ip, upstream_port, source, rate)
        return s.getsockname()[1]

    def set_rate(self, port, rate):
        """RATE for connections accepted from now on at PORT."""
        for s, (ip, up, source, _) in self.listeners.items():
            if s.getsockname()[1] == port:
                self.listeners[s] = (ip, up, source, rate)

    def start(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.thread is not None:
            os.write(self._wake_w, b"x")
            self.thread.join(10)
            self.thread = None
        for p in list(self.pairs):
            self._close(p)
        for s in self.listeners:
            s.close()
        self.listeners = {}
        os.close(self._wake_r)
        os.close(self._wake_w)

    # The loop: one thread, select() over every socket.

    def _run(self):
        while True:
            now = time.monotonic()
            rl = [self._wake_r] + list(self.listeners)
            wl = []
            timeout = None
            for p in self.pairs:
                if not p.c_eof and len(p.to_u) < self.CHUNK:
                    rl.append(p.c)
                if p.to_c:
                    wl.append(p.c)
                if p.to_u:
                    wl.append(p.u)
                if p.u_eof or len(p.to_c) >= self.CHUNK:
                    continue
                if p.rate and p.next_read > now:
                    wait = p.next_read - now
                    timeout = wait if timeout is None else min(timeout, wait)
                else:
                    rl.append(p.u)
            r, w, _ = select.select(rl, wl, [], timeout)
            if self._wake_r in r:
                return
            for p in list(self.pairs):
                self._pump(p, r, w)
            for s in self.listeners:
                if s in r:
                    self._accept_all(s)

    @staticmethod
    def _recv(sock, n):
        """Bytes read, b"" at the end of the stream, None if none now."""
        try:
            return sock.recv(n)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return b""

    def _pump(self, p, r, w):
        if p.c in r:
            data = self._recv(p.c, self.CHUNK)
            if data == b"":
                p.c_eof = True
            elif data:
                p.to_u += data
        if p.u in r:
            data = self._recv(p.u, 16384 if p.rate else self.CHUNK)
            if data == b"":
                p.u_eof = True
            elif data:
                p.to_c += data
                if p.rate:
                    p.next_read = time.monotonic() + len(data) / p.rate
        for sock, buf, side in ((p.c, p.to_c, "c"), (p.u, p.to_u, "u")):
            if sock in w and buf:
                try:
                    n = sock.send(buf)
                    del buf[:n]
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    buf.clear()
                    setattr(p, side + "_eof", True)
        self._maybe_close(p)

    def _maybe_close(self, p):
        if (p.c_eof and not p.to_u) or (p.u_eof and not p.to_c) or \
                (p.c_eof and p.u_eof):
            self._close(p)

    def _drain(self, p):
        """Read what the daemon sent on P so far, up to its end."""
        while not p.c_eof:
            data = self._recv(p.c, self.CHUNK)
            if data is None:
                break
            if data == b"":
                p.c_eof = True
            else:
                p.to_u += data
        self._maybe_close(p)

    def _accept_all(self, lsock):
        ip, port, source, rate = self.listeners[lsock]
        while True:
            for p in list(self.pairs):
                self._drain(p)
            try:
                c, _ = lsock.accept()
            except (BlockingIOError, InterruptedError):
                return
            u = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                if source:
                    u.bind((source, 0))
                u.settimeout(5)
                u.connect(("127.0.0.1", port))
            except OSError:
                c.close()
                u.close()
                continue
            c.setblocking(False)
            u.setblocking(False)
            # Relayed as it comes, not held for the peer's delayed ACK
            # (see fakepop.py).
            for end in (c, u):
                end.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.pairs.append(_Pair(ip, c, u, rate))
            with self.lock:
                self.current[ip] += 1
                self.total[ip] += 1
                self.peak[ip] = max(self.peak[ip], self.current[ip])
                self.current_all += 1
                self.peak_all = max(self.peak_all, self.current_all)

    def _close(self, p):
        if p not in self.pairs:
            return
        self.pairs.remove(p)
        p.c.close()
        p.u.close()
        with self.lock:
            self.current[p.name] -= 1
            self.current_all -= 1


class DaemonTest(Case):

    def setUp(self):
        super().setUp()
        self.dc = _dovecot
        self.conf_path = os.path.join(self.dir, "popfetchd.conf")
        # Maildirs are made only inside a directory that exists.
        os.mkdir(os.path.join(self.dir, "mail"))

    def mailbox(self, name):
        """Account NAME's Maildir."""
        return os.path.join(self.dir, "mail", name)

    def user(self, name, password, messages):
        self.dc.add_user(name, password)
        self.dc.deliver_many(name, messages)

    def account(self, name, host, port, password, user=None, **keys):
        """Account NAME, as a dict for write_config; KEYS override or add
        settings (None removes one)."""
        acct = {"name": name, "host": host, "port": port,
                "user": user or name, "password": password,
                "maildir": self.mailbox(name)}
        acct.update(keys)
        return acct

    def write_config(self, accounts, poll_interval=3600, max_connections=64,
                     max_per_host=4, timeout=30):
        """The configuration, replaced in one step (a reload may read it
        at any time)."""
        return write_config(
            self.conf_path, accounts,
            state_dir=os.path.join(self.dir, "state"),
            poll_interval=poll_interval, max_connections=max_connections,
            max_per_host=max_per_host, timeout=timeout,
            defaults={"tls": "implicit", "ca_file": self.dc.ca_file,
                      "received_header": False})

    def daemon(self, args=(), env=None):
        return super().daemon(self.conf_path, args, env)

    def notify_socket(self, **kw):
        if not kw:
            kw["path"] = os.path.join(self.dir, "notify.sock")
        n = NotifySocket(**kw)
        self.addCleanup(n.close)
        return n

    def relay(self):
        r = Relay()
        self.addCleanup(r.stop)
        return r

    def assert_exactly(self, name, expected):
        self.assert_delivered_exactly(expected, self.mailbox(name))

    def wait_files(self, name, count, timeout=WAIT):
        """Wait until NAME's new/ holds COUNT files (checked 20x a second)."""
        new = os.path.join(self.mailbox(name), "new")
        deadline = time.monotonic() + timeout
        while True:
            n = len(os.listdir(new)) if os.path.isdir(new) else 0
            if n >= count:
                return
            if time.monotonic() > deadline:
                self.fail("%s: %d of %d messages arrived" % (name, n, count))
            time.sleep(0.05)

    @staticmethod
    def results(d, name, since=0):
        """The result= of each poll summary of account NAME."""
        return [re.search(r"result=(\w+)", l).group(1)
                for l in d.grep(r"^account=%s listed=.* result=" % name,
                                since)]

    def finish_once(self, name, msgs):
        """A --once run completes account NAME: MSGS each delivered once,
        the server mailbox empty."""
        r = self.run_once(self.conf_path, timeout=WAIT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_exactly(name, msgs)
        self.assertEqual(self.dc.server_messages(name), [])

    def assert_clean_exit(self, d, grace):
        t0 = time.monotonic()
        rc = d.wait_exit(grace + 10)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, d.text()[-3000:])
        return elapsed


class TestManyAccounts(DaemonTest):

    GOOD = 200
    PER_ACCOUNT = 3
    MAX_CONNECTIONS = 12
    MAX_PER_HOST = 4

    def test_many_accounts_within_caps(self):
        """200 accounts at once: caps held server-side, exactly once,
        wrong passwords, closed ports and a broken password source
        notwithstanding."""
        dc = self.dc
        relay = self.relay()
        ports = {ip: relay.listen(ip, dc.ssl_port) for ip in HOSTS[:4]}
        bad_port = relay.listen(HOSTS[4], dc.ssl_port, source=BAD_SOURCE)
        relay.start()
        closed_port = free_ports(1)[0]  # nothing listens there

        msgs = mailgen.generate(self.GOOD * self.PER_ACCOUNT + 40, seed=61,
                                tag="many")
        expect = {}
        accounts = []
        # Uneven: 80 accounts on the first host, 40 on each other one, so
        # that both caps bind.
        hosts = [HOSTS[0]] * 80 + [HOSTS[1]] * 40 + [HOSTS[2]] * 40 + \
            [HOSTS[3]] * 40
        for i in range(self.GOOD):
            name = "m%03d" % i
            expect[name] = msgs[i * self.PER_ACCOUNT:
                                (i + 1) * self.PER_ACCOUNT]
            self.user(name, "pw-" + name, expect[name])
            accounts.append(self.account(name, hosts[i], ports[hosts[i]],
                                         "pw-" + name))
        spare = msgs[self.GOOD * self.PER_ACCOUNT:]
        wrong = ["wrong%d" % i for i in range(6)]
        for i, name in enumerate(wrong):
            self.user(name, "right-" + name, spare[i:i + 1])
            accounts.append(self.account(name, HOSTS[4], bad_port,
                                         "not-the-password"))
        closed = ["closed%d" % i for i in range(4)]
        for name in closed:
            accounts.append(self.account(name, "127.0.0.1", closed_port,
                                         "x", user="nobody"))
        accounts.append(self.account(
            "nosecret", HOSTS[1], ports[HOSTS[1]], None,
            password_file=os.path.join(self.dir, "missing")))
        self.write_config(accounts, max_connections=self.MAX_CONNECTIONS,
                          max_per_host=self.MAX_PER_HOST)
        n_accounts = len(accounts)
        notify = self.notify_socket()

        t0 = time.monotonic()
        d = self.daemon(env={"NOTIFY_SOCKET": notify.address})
        notify.wait_key("READY=1")
        d.wait_line(r"^started accounts=%d " % n_accounts)
        # poll_interval is an hour, but a new account's first poll comes
        # at random within 30 s of the start (backoff_first()): a few may
        # be under way before the signal, which counts the others only.
        mark = d.mark()
        d.signal(signal.SIGUSR1)
        line = d.wait_line(r"^poll-now accounts=\d+$", mark)
        self.assertIn(int(line.split("=")[1]), range(1, n_accounts + 1))

        good_re = r"^account=m\d{3} listed=3 fetched=3 .* result=ok next="
        d.wait_line(good_re, mark, count=self.GOOD)
        for name in wrong:
            d.wait_line(r"^account=%s .*result=auth next=" % name, mark)
        for name in closed:
            d.wait_line(r"^account=%s .*result=network next=" % name, mark)
        d.wait_line(r"^account=nosecret .*result=config next=reload$", mark)
        first_round = time.monotonic() - t0

        for name, m in expect.items():
            self.assert_exactly(name, m)
            self.assertEqual(dc.server_messages(name), [], name)
        for i, name in enumerate(wrong):
            self.assertEqual(dc.server_messages(name), spare[i:i + 1])
            self.assertEqual(self.delivered(self.mailbox(name)), [])
            # One loud line per account, naming what to do.
            self.assertEqual(len(d.grep(
                r"^account=%s AUTHENTICATION REFUSED .*SIGHUP" % name)), 1)
        self.assertEqual(len(d.grep(r"^account=nosecret account paused "
                                    r"until the configuration is reloaded")),
                         1)
        self.assertNotIn("not-the-password", d.text())

        # Round two, also on SIGUSR1: new mail for some, nothing twice.
        late = {}
        for i, name in enumerate(sorted(expect)[:20]):
            late[name] = [spare[6 + i]]
            dc.deliver(name, spare[6 + i])
        mark = d.mark()
        d.signal(signal.SIGUSR1)
        d.wait_line(r"^account=m\d{3} listed=\d+ .* result=ok next=", mark,
                    count=self.GOOD)
        for name in expect:
            self.assert_exactly(name, expect[name] + late.get(name, []))
            self.assertEqual(dc.server_messages(name), [], name)
        fetched = sum(int(x) for x in re.findall(
            r"^account=m\d{3} listed=\d+ fetched=(\d+)",
            d.text(mark), re.M))
        self.assertEqual(fetched, len(late))
        # Still a single loud line per refused account.
        for name in wrong:
            self.assertEqual(len(d.grep(
                r"^account=%s AUTHENTICATION REFUSED" % name)), 1)

        # STATUS= summed it up.
        status = notify.wait(
            lambda m: m.startswith("STATUS=%d accounts" % n_accounts)
            and ("%d delivered" % (self.GOOD * self.PER_ACCOUNT + len(late)))
            in m, "STATUS with the delivered count")
        self.assertIn("last error:", notify.messages[status])

        mark_n = notify.mark()
        d.signal(signal.SIGTERM)
        self.assert_clean_exit(d, 30)
        notify.wait_key("STOPPING=1", mark_n)

        with relay.lock:
            peak_all = relay.peak_all
            peaks = {ip: relay.peak[ip] for ip in HOSTS}
            totals = {ip: relay.total[ip] for ip in HOSTS}
        print("\n  %d accounts, %d polls over the relay in %.1f s (first "
              "round %.1f s); peak connections: %d overall (cap %d), per "
              "host %s (cap %d)"
              % (n_accounts, sum(totals.values()), time.monotonic() - t0,
                 first_round, peak_all, self.MAX_CONNECTIONS,
                 [peaks[ip] for ip in HOSTS], self.MAX_PER_HOST),
              file=sys.stderr)
        self.assertEqual(totals[HOSTS[0]], 2 * 80)
        self.assertLessEqual(peak_all, self.MAX_CONNECTIONS)
        for ip in HOSTS:
            self.assertLessEqual(peaks[ip], self.MAX_PER_HOST, ip)
        # The caps were reached, not merely respected by a slow trickle.
        self.assertEqual(peaks[HOSTS[0]], self.MAX_PER_HOST)
        self.assertGreater(peak_all, self.MAX_PER_HOST)
        # Dovecot agrees: two logins per good account.
        dc.sync_log()
        for name in ("m000", "m100", "m199"):
            self.assertEqual(dc.logins(name), 2, name)


class TestSignals(DaemonTest):

    def test_reload_and_poll_now(self):
        """SIGHUP adds, removes and changes accounts, keeps the old
        configuration when the new one is invalid; SIGUSR1 polls now;
        sd_notify around all of it."""
        dc = self.dc
        port = dc.ssl_port
        pw = "pw-reload"
        msgs = mailgen.generate(12, seed=71, tag="reload")
        self.user("ra", pw, msgs[0:2])
        self.user("rb", pw, msgs[2:4])
        self.user("rc", pw, msgs[4:6])
        acct_a = self.account("ra", "127.0.0.1", port, pw)
        acct_b = self.account("rb", "127.0.0.1", port, pw)
        self.write_config([acct_a, acct_b], poll_interval=10)
        notify = self.notify_socket()
        d = self.daemon(env={"NOTIFY_SOCKET": notify.address})

        ready = notify.wait_key("READY=1")
        notify.wait(lambda m: m.startswith("STATUS=2 accounts"), "STATUS")
        # First polls come from the timers (spread over poll_interval).
        d.wait_line(r"^account=ra listed=2 fetched=2 .*result=ok next=")
        d.wait_line(r"^account=rb listed=2 fetched=2 .*result=ok next=")
        self.assert_exactly("ra", msgs[0:2])
        self.assert_exactly("rb", msgs[2:4])

        # Valid change: ra gets another Maildir, rb goes, rc comes.
        moved = os.path.join(self.dir, "mail", "ra-moved")
        acct_a2 = dict(acct_a, maildir=moved)
        acct_c = self.account("rc", "127.0.0.1", port, pw)
        self.write_config([acct_a2, acct_c], poll_interval=10)
        mark, mark_n = d.mark(), notify.mark()
        d.signal(signal.SIGHUP)
        i = notify.wait(lambda m: m.startswith("RELOADING=1\n"),
                        "RELOADING=1", mark_n)
        self.assertRegex(notify.messages[i],
                         r"^RELOADING=1\nMONOTONIC_USEC=\d+$")
        mono = int(notify.messages[i].split("=")[-1])
        self.assertLessEqual(
            abs(mono - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000),
            WAIT * 1000000)
        notify.wait_key("READY=1", i + 1)
        d.wait_line(r"^reloaded file=.* accounts=2 added=1 removed=1$", mark)
        self.assertGreater(i, ready)
        # Now, or after its running poll.
        d.wait_line(r"^account=rb removed from the configuration$", mark)

        dc.deliver("ra", msgs[6])
        dc.deliver("rb", msgs[7])
        mark = d.mark()
        d.signal(signal.SIGUSR1)
        d.wait_line(r"^account=rc listed=2 fetched=2 .*result=ok", mark)
        self.wait_files("ra-moved", 1)
        self.assertEqual(self.delivered(self.mailbox("ra-moved")), [msgs[6]])
        self.assert_exactly("rc", msgs[4:6])
        # rb is gone: polled no more, its new message stays.
        d.wait_line(r"^account=ra listed=1 fetched=1 .*result=ok", mark)
        self.assertEqual(self.results(d, "rb", mark), [])
        self.assertEqual(dc.server_messages("rb"), [msgs[7]])
        self.assert_exactly("rb", msgs[2:4])

        # Invalid: every error with file:line, the old configuration kept.
        with open(self.conf_path) as f:
            good = f.read()
        lines = good.split("\n")
        self.assertTrue(lines[1].startswith("poll_interval ="))
        self.assertTrue(lines[3].startswith("max_per_host ="))
        lines[1] = "poll_interval = 5;"
        lines[3] = 'colour = "blue";'
        with open(self.conf_path, "w") as f:
            f.write("\n".join(lines))
        mark, mark_n = d.mark(), notify.mark()
        d.signal(signal.SIGHUP)
        d.wait_line(r"^reload failed: .* still running", mark)
        errors = d.grep(r"^reload: ", mark)
        self.assertTrue(any(re.search(r"popfetchd\.conf:2: .*poll_interval",
                                      l) for l in errors), errors)
        self.assertTrue(any(re.search(r"popfetchd\.conf:4: .*colour", l)
                            for l in errors), errors)
        i = notify.wait(lambda m: m.startswith("RELOADING=1\n"),
                        "RELOADING=1", mark_n)
        notify.wait_key("READY=1", i + 1)

        dc.deliver("rc", msgs[8])
        mark = d.mark()
        d.signal(signal.SIGUSR1)
        d.wait_line(r"^account=rc listed=1 fetched=1 .*result=ok", mark)
        self.assert_exactly("rc", msgs[4:6] + [msgs[8]])
        self.assertEqual(self.results(d, "rb", mark), [])

        mark_n = notify.mark()
        d.signal(signal.SIGTERM)
        self.assert_clean_exit(d, 30)
        notify.wait_key("STOPPING=1", mark_n)
        self.assertEqual(dc.server_messages("ra"), [])
        self.assertEqual(dc.server_messages("rc"), [])

    def test_reload_during_polls(self):
        """SIGHUP while polls run: a removed account finishes its poll on
        the old configuration, then stops; a changed one finishes on the
        old settings and uses the new ones from its next poll."""
        dc = self.dc
        pw = "pw-during"
        msgs = mailgen.generate(44, seed=95, tag="during")
        self.user("gone", pw, msgs[:20])
        self.user("chg", pw, msgs[20:40])
        relay = self.relay()
        # About 2 s for each mailbox.
        port = relay.listen(HOSTS[1], dc.ssl_port,
                            rate=sum(len(m) for m in msgs[:20]) / 2.0)
        relay.start()
        gone = self.account("gone", HOSTS[1], port, pw)
        chg = self.account("chg", HOSTS[1], port, pw)
        self.write_config([gone, chg])
        d = self.daemon(args=["-d", "1"])
        d.wait_line(r"^started ")
        d.signal(signal.SIGUSR1)
        d.wait_line(r"^account=gone > RETR \d+")
        d.wait_line(r"^account=chg > RETR \d+")

        moved = os.path.join(self.dir, "mail", "chg-moved")
        self.write_config([dict(chg, maildir=moved)])
        mark = d.mark()
        d.signal(signal.SIGHUP)
        d.wait_line(r"^reloaded file=.* accounts=1 added=0 removed=1$", mark)
        # Both polls were still running and end normally.
        self.assertEqual(self.results(d, "gone", 0), [])
        d.wait_line(r"^account=gone listed=20 fetched=20 .*deleted=20 .*"
                    r"result=ok$", mark)
        d.wait_line(r"^account=gone removed from the configuration$", mark)
        d.wait_line(r"^account=chg listed=20 fetched=20 .*deleted=20 .*"
                    r"result=ok next=\d+$", mark)
        self.assert_exactly("gone", msgs[:20])
        self.assert_exactly("chg", msgs[20:40])

        dc.deliver("gone", msgs[40])
        dc.deliver("chg", msgs[41])
        mark = d.mark()
        d.signal(signal.SIGUSR1)
        d.wait_line(r"^poll-now accounts=1$", mark)
        d.wait_line(r"^account=chg listed=1 fetched=1 .*result=ok", mark)
        self.assertEqual(self.delivered(self.mailbox("chg-moved")), [msgs[41]])
        self.assert_exactly("chg", msgs[20:40])
        self.assertEqual(self.results(d, "gone", mark), [])
        self.assertEqual(dc.server_messages("gone"), [msgs[40]])
        d.signal(signal.SIGTERM)
        self.assert_clean_exit(d, 30)

    def test_sigterm_during_large_fetch(self):
        """SIGTERM mid-fetch: exit 0 within the grace period (the account
        timeout); a later --once run then completes, nothing lost or
        duplicated."""
        dc = self.dc
        pw = "pw-term"
        # Many messages, none huge: each arrives well within the timeout
        # and the pipeline keeps the connection busy in both directions.
        msgs = mailgen.generate(80, seed=81, tag="term")
        total = sum(len(m) for m in msgs)
        self.user("term", pw, msgs)
        relay = self.relay()
        # About 5 s for the whole mailbox: longer than the grace period.
        port = relay.listen(HOSTS[0], dc.ssl_port, rate=total / 5.0)
        relay.start()
        grace = 2
        self.write_config([self.account("term", HOSTS[0], port, pw)],
                          timeout=grace)
        d = self.daemon(args=["-d", "1"])
        d.wait_line(r"^started ")
        d.signal(signal.SIGUSR1)
        d.wait_line(r"^account=term > RETR \d+")
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        rc = d.wait_exit(grace + 10)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, d.text()[-3000:])
        print("\n  SIGTERM to exit: %.2f s (grace %d s); %s"
              % (elapsed, grace, (d.grep(r"^stopped ") or ["finished"])[0]),
              file=sys.stderr)
        self.assertLess(elapsed, grace + 2)
        self.assertTrue(d.grep(r"^stopping running=1 grace=%d$" % grace))
        before = len(self.delivered(self.mailbox("term")))
        self.assertLess(before, len(msgs), "the fetch was not interrupted")

        # The same account (same host: the state is kept per host and
        # user), at full speed: the rest arrives, nothing twice.
        relay.set_rate(port, None)
        self.finish_once("term", msgs)

    def test_sigterm_lets_a_short_poll_finish(self):
        """SIGTERM while a poll runs that can end within the grace period:
        it ends normally (QUIT, deletions committed), then exit 0."""
        dc = self.dc
        pw = "pw-finish"
        msgs = mailgen.generate(20, seed=91, tag="finish")
        self.user("finish", pw, msgs)
        relay = self.relay()
        # About 1.5 s for the mailbox, well within the grace period.
        port = relay.listen(HOSTS[0], dc.ssl_port,
                            rate=sum(len(m) for m in msgs) / 1.5)
        relay.start()
        self.write_config([self.account("finish", HOSTS[0], port, pw)],
                          timeout=20)
        d = self.daemon(args=["-d", "1"])
        d.wait_line(r"^started ")
        d.signal(signal.SIGUSR1)
        d.wait_line(r"^account=finish > RETR \d+")
        d.signal(signal.SIGTERM)
        elapsed = self.assert_clean_exit(d, 20)
        self.assertLess(elapsed, 15)
        self.assertTrue(d.grep(r"^stopping running=1 grace=20$"))
        # No next=: nothing is scheduled after a stop.
        self.assertTrue(d.grep(r"^account=finish listed=20 fetched=20 .*"
                               r"deleted=20 .*result=ok$"), d.text())
        self.assertEqual(d.grep(r"abandon"), [])
        self.assert_exactly("finish", msgs)
        self.assertEqual(dc.server_messages("finish"), [])

    def test_sigterm_finishes_message_in_hand_and_quits(self):
        """SIGTERM in a long poll without pipelining: the message in hand
        is received, what is durable is deleted, QUIT commits it, and the
        daemon exits 0 long before the mailbox would have been done."""
        dc = self.dc
        pw = "pw-hand"
        msgs = mailgen.generate(60, seed=95, tag="hand")
        self.user("hand", pw, msgs)
        relay = self.relay()
        # About 12 s for the mailbox; one message takes a fraction.
        port = relay.listen(HOSTS[0], dc.ssl_port,
                            rate=sum(len(m) for m in msgs) / 12.0)
        relay.start()
        self.write_config([self.account("hand", HOSTS[0], port, pw,
                                        pipelining="off")],
                          timeout=30)
        d = self.daemon(args=["-d", "1"])
        d.wait_line(r"^started ")
        d.signal(signal.SIGUSR1)
        d.wait_line(r"^account=hand > RETR 3$")
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        self.assert_clean_exit(d, 30)
        self.assertLess(time.monotonic() - t0, 8, d.text()[-3000:])
        self.assertTrue(d.grep(r"^account=hand stopping: 1 message\(s\) "
                               r"in flight"), d.text()[-3000:])
        self.assertEqual(d.grep(r"abandon"), [])
        got = self.delivered(self.mailbox("hand"))
        self.assertTrue(3 <= len(got) < len(msgs), len(got))
        # Every message delivered was deleted, and only those.
        self.assertTrue(d.grep(r"^account=hand listed=60 fetched=%d .*"
                               r"deleted=%d .*result=ok$"
                               % (len(got), len(got))), d.text()[-3000:])
        self.assertEqual(d.grep(r"^account=hand > QUIT$").__len__(), 1)
        self.assertEqual(len(dc.server_messages("hand")),
                         len(msgs) - len(got))
        relay.set_rate(port, None)
        self.finish_once("hand", msgs)

    def test_login_delay_respected(self):
        """A server announcing LOGIN-DELAY 900 is not polled again before
        900 s, neither by the schedule (poll_interval 60) nor on SIGUSR1."""
        msgs = mailgen.generate(3, seed=97, tag="delay")
        with FakePop(msgs, password="pw-delay",
                     capa_extra=["LOGIN-DELAY 900"]) as srv:
            self.write_config([self.account(
                "delay", "127.0.0.1", srv.port, "pw-delay",
                user="alice", tls="none", allow_plaintext=True)],
                poll_interval=60)
            d = self.daemon()
            d.wait_line(r"^started ")
            d.signal(signal.SIGUSR1)
            line = d.wait_line(r"^account=delay listed=3 .*result=ok")
            self.assertRegex(line, r" next=900$")
            mark = d.mark()
            d.signal(signal.SIGUSR1)
            d.wait_line(r"^poll-now accounts=1 login_delayed=1$", mark)
            d.signal(signal.SIGTERM)
            self.assert_clean_exit(d, 30)
            self.assertEqual(len(d.grep(r"^account=delay listed=")), 1)
            self.assertEqual(srv.sessions, 1)
        self.assert_exactly("delay", msgs)

    def test_login_delay_before_stls_ignored(self):
        """A LOGIN-DELAY in the plain-text CAPA before STLS (injectable by
        anyone on the path) sets nothing: neither when STLS then fails
        nor when it succeeds; the daemon keeps its own schedule."""
        msgs = mailgen.generate(2, seed=98, tag="inject")
        folder = tempfile.mkdtemp(prefix="popfetchd-inject-")
        try:
            cert, key = make_cert(folder)
            for refuse in (True, False):
                with self.subTest(refuse_stls=refuse), FakePop(
                        list(msgs), password="pw-inject", tls="starttls",
                        certfile=cert, keyfile=key,
                        capa_before_tls=["LOGIN-DELAY 31536000"]) as srv:
                    srv.refuse_stls = refuse
                    self.write_config([self.account(
                        "inject", "127.0.0.1", srv.port, "pw-inject",
                        user="alice",
                        tls="starttls", ca_file=cert)],
                        poll_interval=60)
                    d = self.daemon()
                    d.wait_line(r"^started ")
                    d.signal(signal.SIGUSR1)
                    line = d.wait_line(r"^account=inject listed=")
                    self.assertRegex(line, r"result=%s next=\d+$" % (
                        "protocol" if refuse else "ok"))
                    nxt = int(line.rsplit("=", 1)[1])
                    self.assertLess(nxt, 3600, line)
                    mark = d.mark()
                    d.signal(signal.SIGUSR1)
                    d.wait_line(r"^poll-now accounts=1$",
                                mark)
                    d.signal(signal.SIGTERM)
                    self.assert_clean_exit(d, 30)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def test_renewed_ca_file_read_without_reload(self):
        """TLS contexts are shared between polls, but a CA file replaced
        on disk is read at the next poll: no stale trust, no reload."""
        dc = self.dc
        pw = "pw-renew"
        msgs = mailgen.generate(4, seed=99, tag="renew")
        self.user("renew", pw, msgs)
        other = tempfile.mkdtemp(prefix="other-ca-", dir=self.dir)
        wrong, _ = make_certificate(other)
        ca = os.path.join(self.dir, "ca.pem")
        shutil.copyfile(wrong, ca)
        self.write_config([self.account(
            "renew", "127.0.0.1", dc.ssl_port, pw,
            ca_file=ca)])
        d = self.daemon()
        d.wait_line(r"^started ")
        d.signal(signal.SIGUSR1)
        d.wait_line(r"^account=renew listed=0 .*result=network")
        tmp = ca + ".new"
        shutil.copyfile(dc.ca_file, tmp)
        os.rename(tmp, ca)
        mark = d.mark()
        d.signal(signal.SIGUSR1)
        d.wait_line(r"^account=renew listed=4 fetched=4 .*result=ok", mark)
        d.signal(signal.SIGTERM)
        self.assert_clean_exit(d, 30)
        self.assert_exactly("renew", msgs)

    def test_notify_abstract_socket_and_watchdog(self):
        """NOTIFY_SOCKET=@name works; WATCHDOG=1 at half WATCHDOG_USEC;
        the variables are not passed on; SIGINT stops."""
        notify = self.notify_socket(
            abstract="popfetchd-test-%d-%s" % (os.getpid(),
                                               os.urandom(4).hex()))
        closed_port = free_ports(1)[0]
        self.write_config([self.account("wd", "127.0.0.1", closed_port, "x",
                                        user="nobody")])
        d = self.daemon(env={"NOTIFY_SOCKET": notify.address,
                             "WATCHDOG_USEC": "200000"})
        ready = notify.wait_key("READY=1")
        i = notify.wait_key("WATCHDOG=1", ready)
        t0 = time.monotonic()
        for _ in range(3):
            i = notify.wait_key("WATCHDOG=1", i + 1)
        # Three periods of 0.1 s; generous for a loaded machine.
        self.assertLess(time.monotonic() - t0, 5)
        mark_n = notify.mark()
        d.signal(signal.SIGINT)
        self.assert_clean_exit(d, 5)
        notify.wait_key("STOPPING=1", mark_n)

    def test_no_notify_socket(self):
        """Without NOTIFY_SOCKET nothing is sent and nothing complains."""
        closed_port = free_ports(1)[0]
        self.write_config([self.account("nn", "127.0.0.1", closed_port, "x",
                                        user="nobody")])
        d = self.daemon(env={"WATCHDOG_USEC": "1000"})
        d.wait_line(r"^started ")
        d.signal(signal.SIGTERM)
        self.assert_clean_exit(d, 5)
        self.assertEqual(d.grep(r"notify|NOTIFY"), [])


class TestManPages(unittest.TestCase):

    PAGES = ["popfetchd.8", "popfetchd.conf.5"]

    def test_groff_without_warnings(self):
        groff = shutil.which("groff")
        if groff is None:
            self.skipTest("groff is not installed (Debian: apt-get install "
                          "groff-base; tools/deps.sh does)")
        for page in self.PAGES:
            with self.subTest(page=page):
                r = subprocess.run(
                    [groff, "-man", "-Tutf8", "-ww", "-z",
                     os.path.join(SRCDIR, "man", page)],
                    capture_output=True, text=True, timeout=WAIT,
                    env=dict(os.environ, LC_ALL="C.UTF-8"))
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(r.stderr, "")

    def test_every_key_and_option_is_documented(self):
        """Every configuration key and every long option has its entry."""
        with open(os.path.join(SRCDIR, "daemon", "conf.c")) as f:
            keys = re.findall(r'\[K_[A-Z_]+\] = \{"([a-z_]+)"', f.read())
        with open(os.path.join(SRCDIR, "daemon", "main.c")) as f:
            options = re.findall(r'\{"([a-z-]+)", (?:no|required)_argument',
                                 f.read())
        self.assertGreater(len(keys), 20)
        self.assertGreater(len(options), 5)
        with open(os.path.join(SRCDIR, "man", "popfetchd.conf.5")) as f:
            conf5 = f.read()
        with open(os.path.join(SRCDIR, "man", "popfetchd.8")) as f:
            man8 = f.read()
        for key in keys:
            self.assertRegex(conf5, r"\n\.(BI|TP|B) %s\b"
                             % re.escape(key), key)
        for opt in options:
            self.assertIn("\\-\\-" + opt.replace("-", "\\-"), man8, opt)
        for status in ("0", "64", "70", "74", "75", "77", "78"):
            self.assertIn("\n.B %s\n" % status, man8, status)
        for sig in ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1"):
            self.assertIn(sig, man8)


class TestSystemdUnits(unittest.TestCase):

    SYSTEM_UNITS = ["popfetchd.service", "popfetchd@.service",
                    "popfetchd-shard@.service", "popfetchd-once.service",
                    "popfetchd-once.timer"]
    USER_UNITS = ["popfetchd.service"]
    EXPOSURE_MAX = 2.0

    def setUp(self):
        self.sa = shutil.which("systemd-analyze")
        if self.sa is None:
            self.skipTest("systemd-analyze is not installed (Debian: "
                          "apt-get install systemd; tools/deps.sh does)")
        self.dir = tempfile.mkdtemp(prefix="popfetchd-units-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def copy_units(self, sub, names):
        """The shipped units, with ExecStart= pointing at the built binary
        (verify checks that the program exists)."""
        out = os.path.join(self.dir, sub or "system")
        os.makedirs(out, exist_ok=True)
        paths = []
        for name in names:
            with open(os.path.join(SRCDIR, "systemd", sub, name)) as f:
                text = f.read()
            text = text.replace("/usr/bin/popfetchd", BINARY)
            path = os.path.join(out, name)
            with open(path, "w") as f:
                f.write(text)
            paths.append(path)
        return paths

    def analyze(self, *args):
        # --user wants a runtime directory, even offline.
        runtime = os.path.join(self.dir, "runtime")
        os.makedirs(runtime, mode=0o700, exist_ok=True)
        return subprocess.run([self.sa] + list(args), capture_output=True,
                              text=True, timeout=WAIT,
                              env=dict(os.environ, SYSTEMD_LOG_COLOR="0",
                                       SYSTEMD_COLORS="0", LC_ALL="C",
                                       XDG_RUNTIME_DIR=runtime))

    def exposure(self, user, path):
        args = (["--user"] if user else []) + ["security", "--offline=true",
                                               "--no-pager", path]
        r = self.analyze(*args)
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", r.stdout)
        self.assertTrue(m, r.stdout + r.stderr)
        return float(m.group(1)), r.stdout

    def test_verify(self):
        for user, sub, names in ((False, "", self.SYSTEM_UNITS),
                                 (True, "user", self.USER_UNITS)):
            paths = self.copy_units(sub, names)
            args = (["--user"] if user else []) + ["verify", "--man=no"]
            r = self.analyze(*(args + paths))
            with self.subTest(user=user):
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                # verify reports problems as messages even with status 0.
                self.assertEqual(r.stderr.strip(), "", r.stderr)

    def test_security_exposure(self):
        figures = []
        for user, sub, name in ((False, "", "popfetchd.service"),
                                (False, "", "popfetchd@.service"),
                                (False, "", "popfetchd-shard@.service"),
                                (False, "", "popfetchd-once.service"),
                                (True, "user", "popfetchd.service")):
            path = self.copy_units(sub, [name])[0]
            level, text = self.exposure(user, path)
            label = ("user " if user else "system ") + name
            figures.append("%s %.1f" % (label, level))
            with self.subTest(unit=label):
                if not user:
                    self.assertLessEqual(level, self.EXPOSURE_MAX, text)
        print("\n  systemd-analyze security --offline=true: "
              + ", ".join(figures), file=sys.stderr)


if __name__ == "__main__":
    main()
