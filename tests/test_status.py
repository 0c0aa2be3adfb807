"""What the running daemon tells: popfetchd --status (table and JSON),
the metrics file, STATUS= to the service manager, and the bounds of the
status socket.

One scripted server (tests/fakepop.py) and four accounts: "good" logs in
and fetches; "badauth" sends a wrong password; "nonet" reaches the server
through a gate that refuses connections until the test opens it (the
network is fixed); "nopass" has a password file that does not exist, a
configuration error that pauses the account. The tests await lines on
the daemon's stderr, datagrams on a notification socket and versions of
the metrics file, never a sleep.

Run: python3 tests/test_status.py --binary build/popfetchd
"""

import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
import unittest

from harness import BINARY, Daemon, FakePopCase, NotifySocket

WAIT = 60
MESSAGES = [b"Subject: m%d\r\n\r\nbody %d\r\n" % (i, i) for i in range(3)]
ACCOUNTS = ("good", "badauth", "nonet", "nopass")
# A table row: name, state, last poll, result.
ROW = re.compile(r"^(\S+)\s+(idle|queued|polling|waiting|backing off|paused)"
                 r"\s+(never|now|\d+[smhd] ago)\s+(\S+)\s")


class Gate:
    """A port that refuses connections (nothing listens) until open(),
    then forwards each connection to TARGET_PORT on 127.0.0.1."""

    def __init__(self, target_port):
        self.target = target_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = None

    def open(self):
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.target), 10)
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b),
                                 daemon=True).start()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


# --- the Prometheus text format, as far as a test needs it ---------------

SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def parse_labels(text):
    labels, pos = {}, 0
    while pos < len(text):
        m = LABEL.match(text, pos)
        if not m:
            raise ValueError("bad labels: %r" % text)
        labels[m.group(1)] = re.sub(
            r"\\(.)", lambda e: "\n" if e.group(1) == "n" else e.group(1),
            m.group(2))
        pos = m.end()
        if pos < len(text):
            if text[pos] != ",":
                raise ValueError("bad labels: %r" % text)
            pos += 1
    return labels


def parse_metrics(text):
    """{(name, ((label, value), ...)): value} and {name: type} of an
    exposition TEXT; ValueError for anything the format does not allow
    (a sample before its TYPE, a cut last line, a counter not named
    *_total, a series twice)."""
    if not text.endswith("\n"):
        raise ValueError("does not end with a line feed")
    samples, types = {}, {}
    for line in text[:-1].split("\n"):
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            if kind not in ("counter", "gauge") or name in types:
                raise ValueError(line)
            if kind == "counter" and not name.endswith("_total"):
                raise ValueError("counter without _total: " + name)
            types[name] = kind
            continue
        m = SAMPLE.match(line)
        if not m or m.group(1) not in types:
            raise ValueError("bad sample: %r" % line)
        key = (m.group(1),
               tuple(sorted(parse_labels(m.group(2) or "").items())))
        if key in samples:
            raise ValueError("twice: %r" % line)
        samples[key] = float(m.group(3))
    return samples, types


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


class MetricsReader:
    """Reads the metrics file over and over on a thread, checking every
    version it sees: whole, well formed, counters never going down."""

    def __init__(self, path):
        self.path = path
        self.cond = threading.Condition()
        self.versions = 0
        self.reads = 0
        self.last = None  # the samples of the latest version
        self.error = None
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def stop(self):
        self.stopping = True
        self.thread.join(10)

    def _check(self, text, prev):
        samples, types = parse_metrics(text)
        names = {n for (n, _) in samples}
        for name in names:
            if name.startswith("popfetchd_accounts") or \
                    name == "popfetchd_start_time_seconds":
                continue
            accounts = {dict(l).get("account") for (n, l) in samples
                        if n == name}
            if accounts != set(ACCOUNTS):
                raise ValueError("%s for %s" % (name, sorted(accounts)))
        if prev is not None:
            for key, v in samples.items():
                if types[key[0]] == "counter" and v < prev.get(key, 0):
                    raise ValueError("%s went down: %s -> %s"
                                     % (key, prev[key], v))
        return samples

    def _run(self):
        seen = None
        while not self.stopping:
            try:
                with open(self.path) as f:
                    text = f.read()
            except FileNotFoundError:
                text = None
            # Often, not flat out: the machine has other work.
            time.sleep(0.002)
            if text is None:
                continue
            with self.cond:
                self.reads += 1
            if text == seen:
                continue
            seen = text
            try:
                samples = self._check(text, self.last)
            except ValueError as e:
                with self.cond:
                    self.error = "%s in:\n%s" % (e, text)
                    self.cond.notify_all()
                return
            with self.cond:
                self.last = samples
                self.versions += 1
                self.cond.notify_all()

    def wait(self, pred, what, timeout=WAIT):
        """Wait until PRED(samples) holds for a version; return it."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if self.error:
                    raise AssertionError(self.error)
                if self.last is not None and pred(self.last):
                    return self.last
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("metrics never showed " + what)
                self.cond.wait(left)


# --- the tests -------------------------------------------------------------

class StatusCase(FakePopCase):

    MESSAGES = MESSAGES

    def setUp(self):
        super().setUp()
        self.srv = self.server(tls="implicit")
        self.gate = Gate(self.srv.port)
        self.addCleanup(self.gate.close)
        self.rundir = os.path.join(self.dir, "run")
        self.metrics = os.path.join(self.dir, "metrics.prom")
        self.env = {"RUNTIME_DIRECTORY": self.rundir}
        self.conf = self.write_conf()

    def write_conf(self):
        path = os.path.join(self.dir, "popfetchd.conf")
        acct = ('  { name = "%s"; port = %d; %s; maildir = "%s/%s"; }')
        accounts = [
            acct % ("good", self.srv.port, 'password = "secret"',
                    self.dir, "good"),
            acct % ("badauth", self.srv.port, 'password = "wrong"',
                    self.dir, "badauth"),
            acct % ("nonet", self.gate.port, 'password = "secret"',
                    self.dir, "nonet"),
            acct % ("nopass", self.srv.port,
                    'password_file = "%s/missing"' % self.dir,
                    self.dir, "nopass"),
        ]
        with open(path, "w") as f:
            f.write("""state_dir = "%s/state";
poll_interval = 3600;
metrics_file = "%s";
defaults = {
  host = "localhost"; tls = "implicit"; ca_file = "%s"; user = "alice";
  received_header = false; timeout = 20;
};
accounts = (
%s
);
""" % (self.dir, self.metrics, self.cert, ",\n".join(accounts)))
        os.chmod(path, 0o600)
        return path

    def daemon(self, notify=None):
        env = dict(self.env)
        if notify is not None:
            env["NOTIFY_SOCKET"] = notify.address
        d = Daemon(self.conf, ["-v"], env,
                   os.path.join(self.dir, "daemon.log"))
        self.addCleanup(d.kill)
        return d

    def notify_socket(self):
        n = NotifySocket(path=os.path.join(self.dir, "notify.sock"))
        self.addCleanup(n.close)
        return n

    def status(self, *args, user=None, binary=BINARY):
        """popfetchd --status ARGS, as USER (a pwd entry) if given:
        (exit status, stdout, stderr)."""
        env = dict(os.environ, **self.env)
        pre = None
        if user is not None:
            def pre():
                os.setgroups([])
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)
        r = subprocess.run([binary, "--status"] + list(args), env=env,
                           capture_output=True, text=True, timeout=WAIT,
                           preexec_fn=pre)
        return r.returncode, r.stdout, r.stderr

    def status_json(self, *args):
        rc, out, err = self.status("--json", *args)
        self.assertEqual(rc, 0, err)
        doc = json.loads(out)
        return doc, {a["name"]: a for a in doc["accounts"]}

    def poll_all(self, d, since=None):
        """SIGUSR1, then every account's poll summary after it."""
        mark = d.mark() if since is None else since
        d.signal(signal.SIGUSR1)
        for name in ACCOUNTS:
            d.wait_line(r"^account=%s listed=.* result=" % name, mark)
        return mark

    def start(self):
        notify = self.notify_socket()
        # As the units run it: files it makes are its own unless said.
        old = os.umask(0o077)
        try:
            d = self.daemon(notify)
        finally:
            os.umask(old)
        notify.wait_key("READY=1")
        return d, notify


class TestStatus(StatusCase):

    def test_each_account_then_recovery(self):
        """--status and --json show each account's state and why; STATUS=
        and the metrics agree; once the network is back, nonet's failure
        clears everywhere. Meanwhile the metrics file is read without
        pause: always whole, counters never going down."""
        reader = MetricsReader(self.metrics)
        self.addCleanup(reader.stop)
        d, notify = self.start()
        self.poll_all(d)
        # Polls so far: one each, or two if an account's first timer
        # went off before SIGUSR1 (the first polls are spread over 30 s).
        polls = {a: len(d.grep(r"^account=%s listed=" % a))
                 for a in ACCOUNTS}

        rc, out, err = self.status()
        self.assertEqual(rc, 0, err)
        rows = {m.group(1): m.groups()[1:] for m in
                map(ROW.match, out.splitlines()) if m}
        self.assertEqual(rows["good"][0], "waiting", out)
        self.assertEqual(rows["good"][2], "ok", out)
        self.assertEqual(rows["badauth"][0::2], ("backing off", "auth"))
        self.assertEqual(rows["nonet"][0::2], ("backing off", "network"))
        self.assertEqual(rows["nopass"][0::2], ("paused", "config"))
        self.assertRegex(out, r"(?m)^popfetchd .*: 4 accounts, 0 polling, "
                         r"0 queued, 1 waiting, 2 backing off, 1 paused$")
        # Why each one fails, on a line of its own; good has none.
        self.assertRegex(out, r"(?m)^badauth: auth .*\[AUTH\] invalid")
        self.assertRegex(out, r"(?m)^nonet: network .*refused")
        self.assertRegex(out, r"(?m)^nopass: config .*password: .*missing")
        self.assertNotRegex(out, r"(?m)^good:")

        doc, accts = self.status_json()
        self.assertEqual(doc["summary"]["accounts"], 4)
        self.assertEqual(doc["summary"]["fetched"], len(MESSAGES))
        self.assertEqual(accts["good"]["state"], "waiting")
        self.assertFalse(accts["good"]["failing"])
        self.assertIsNone(accts["good"]["last_failure"])
        self.assertEqual(accts["good"]["totals"]["fetched"], 3)
        self.assertEqual(accts["good"]["last_poll"]["result"], "ok")
        self.assertIsNotNone(accts["good"]["next_poll"])
        # The last poll's held time is the summary line's, within it.
        last = accts["good"]["last_poll"]
        held = re.search(r"secs=([0-9.]+) held=([0-9.]+)",
                         d.grep(r"^account=good listed=")[-1])
        self.assertAlmostEqual(last["seconds"], float(held.group(1)),
                               delta=0.006)
        self.assertAlmostEqual(last["held_seconds"], float(held.group(2)),
                               delta=0.006)
        self.assertLessEqual(last["held_seconds"], last["seconds"])
        for name, state, cls in (("badauth", "backoff", "auth"),
                                 ("nonet", "backoff", "network"),
                                 ("nopass", "paused", "config")):
            a = accts[name]
            self.assertEqual((a["state"], a["last_poll"]["result"]),
                             (state, cls), name)
            self.assertTrue(a["failing"], name)
            self.assertEqual(a["last_failure"]["class"], cls, name)
            self.assertTrue(a["why"].startswith(cls + ": "), a["why"])
            self.assertEqual(a["totals"]["failures"][cls], polls[name],
                             name)
            self.assertEqual(a["totals"]["polls"], polls[name], name)
            self.assertIsNone(a["last_success"], name)
        self.assertIsNotNone(accts["badauth"]["next_poll"])
        self.assertIsNone(accts["nopass"]["next_poll"])

        # One account asked for: that one, in detail or alone in JSON.
        rc, out, err = self.status("-a", "nopass")
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"(?m)^state +paused .*config: password:")
        self.assertRegex(out, r"(?m)^next poll +on reload$")
        self.assertNotIn("badauth", out)
        _, only = self.status_json("-a", "nonet")
        self.assertEqual(list(only), ["nonet"])
        rc, out, err = self.status("-a", "nosuch")
        self.assertEqual(rc, 67, out + err)
        self.assertIn("no account", err)

        # STATUS= counts by state and names the latest unresolved failure.
        notify.wait(lambda m: m.startswith(
            "STATUS=4 accounts: 0 polling, 0 queued, 1 waiting, "
            "2 backing off, 1 paused; 3 delivered since start; "
            "last error: "),
            "STATUS with the failures")
        metrics = reader.wait(
            lambda s: all(value(s, "popfetchd_polls_total", account=a) ==
                          polls[a] for a in ACCOUNTS),
            "a poll of each account")
        self.assertEqual(value(metrics, "popfetchd_poll_failures_total",
                               account="nonet", **{"class": "network"}),
                         polls["nonet"])
        self.assertEqual(value(metrics, "popfetchd_account_failing",
                               account="nonet"), 1)
        self.assertEqual(value(metrics, "popfetchd_messages_fetched_total",
                               account="good"), 3)
        self.assertEqual(value(metrics, "popfetchd_accounts",
                               state="paused"), 1)

        # The network is back: nonet recovers, its failure is resolved.
        self.gate.open()
        mark = self.poll_all(d)
        d.wait_line(r"^account=nonet listed=.* result=ok", mark)
        doc, accts = self.status_json()
        nonet = accts["nonet"]
        self.assertEqual(nonet["state"], "waiting")
        self.assertFalse(nonet["failing"])
        self.assertIsNone(nonet["why"])
        self.assertEqual(nonet["last_failure"]["class"], "network")
        self.assertIsNotNone(nonet["last_success"])
        self.assertEqual(nonet["totals"]["polls"], polls["nonet"] + 1)
        self.assertEqual(accts["badauth"]["streak"], polls["badauth"] + 1)
        rc, out, _ = self.status()
        self.assertNotRegex(out, r"(?m)^nonet:")
        self.assertRegex(out, r"(?m)^nonet +waiting ")
        i = notify.wait(lambda m: m.startswith(
            "STATUS=4 accounts: 0 polling, 0 queued, 2 waiting, "
            "1 backing off, 1 paused"), "STATUS after the recovery")
        self.assertRegex(notify.messages[i],
                         r"last error: (badauth|nopass) at \d\d:\d\d:\d\d: ")
        metrics = reader.wait(
            lambda s: value(s, "popfetchd_polls_total", account="nonet") ==
            polls["nonet"] + 1,
            "the second poll of nonet")
        self.assertEqual(value(metrics, "popfetchd_account_failing",
                               account="nonet"), 0)
        self.assertGreater(value(
            metrics, "popfetchd_last_success_timestamp_seconds",
            account="nonet"), 0)
        self.assertLessEqual(
            value(metrics, "popfetchd_last_poll_held_seconds",
                  account="good"),
            value(metrics, "popfetchd_last_poll_duration_seconds",
                  account="good"))

        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait_exit(), 0, d.text()[-2000:])
        reader.stop()
        self.assertIsNone(reader.error)
        # Read all along, rewritten meanwhile: seen whole every time.
        self.assertGreaterEqual(reader.versions, 2)
        self.assertGreater(reader.reads, reader.versions)
        # The socket goes with the daemon; no temporary file is left.
        self.assertFalse(os.path.exists(os.path.join(self.rundir,
                                                     "status.sock")))
        self.assertEqual(sorted(f for f in os.listdir(self.dir)
                                if f.startswith("metrics")),
                         ["metrics.prom"])
        # Readable by a collector running as another user.
        self.assertEqual(stat.S_IMODE(os.stat(self.metrics).st_mode), 0o644)

    def test_hostile_clients(self):
        """A client that sends nothing and one that sends 1 MB are
        closed by the daemon; --status and polling go on meanwhile."""
        d, _ = self.start()
        path = os.path.join(self.rundir, "status.sock")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(self.rundir).st_mode), 0o700)

        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        silent.connect(path)
        self.addCleanup(silent.close)
        big = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        big.connect(path)
        self.addCleanup(big.close)
        sent = {}

        def flood():
            try:
                big.sendall(b"x" * (1 << 20) + b"\n")
                sent["all"] = True
            except OSError as e:
                sent["error"] = e.errno
        t = threading.Thread(target=flood, daemon=True)
        t.start()

        # The loop serves others meanwhile: a poll and an answer.
        self.poll_all(d)
        rc, out, err = self.status()
        self.assertEqual(rc, 0, err)
        self.assertRegex(out, r"(?m)^good +waiting ")

        # The flood is cut off: the daemon closed without reading it all.
        t.join(WAIT)
        self.assertFalse(t.is_alive())
        self.assertNotIn("all", sent)
        big.settimeout(WAIT)
        try:
            self.assertEqual(big.recv(100), b"")
        except ConnectionResetError:
            pass
        # The silent one is dropped after a few seconds, unanswered.
        silent.settimeout(WAIT)
        t0 = time.monotonic()
        self.assertEqual(silent.recv(100), b"")
        self.assertLess(time.monotonic() - t0, 20)

        # A request that is not one gets an error, not the status.
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(b"gimme\n")
        s.settimeout(WAIT)
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = s.recv(4096)
            self.assertTrue(chunk, answer)
            answer += chunk
        s.close()
        self.assertEqual(json.loads(answer), {"error": "unknown request"})
        self.poll_all(d)

    def test_other_user(self):
        """Only root and the daemon's user may ask: the socket's mode
        keeps others out, and so does the daemon when the mode does not."""
        if os.geteuid() != 0:
            self.skipTest("needs root to run a client as another user")
        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            self.skipTest("no user nobody")
        d, _ = self.start()
        path = os.path.join(self.rundir, "status.sock")
        # The way in for nobody up to the socket, which stays 0600, and
        # a copy of the binary it may run.
        for p in (self.dir, self.rundir):
            os.chmod(p, 0o711)
        binary = os.path.join(self.dir, "popfetchd")
        shutil.copy(BINARY, binary)
        os.chmod(binary, 0o755)
        rc, out, err = self.status(user=nobody, binary=binary)
        self.assertEqual(rc, 77, out + err)
        self.assertIn("Permission denied", err)
        self.assertEqual(out, "")

        # Even through an open socket file, the daemon turns them away.
        os.chmod(path, 0o666)
        mark = d.mark()
        rc, out, err = self.status(user=nobody, binary=binary)
        self.assertEqual(rc, 77, out + err)
        self.assertIn("closed without answering", err)
        self.assertEqual(out, "")
        d.wait_line(r"status: refused uid=%d " % nobody.pw_uid, mark)
        # Root still may.
        rc, out, err = self.status()
        self.assertEqual(rc, 0, err)

    def wait_file(self, path, timeout=WAIT):
        """Wait until PATH exists (looked at 20 times a second)."""
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            self.assertLess(time.monotonic(), deadline, path)
            time.sleep(0.05)

    def test_metrics_once_and_reload(self):
        """A --once run leaves the metrics of its polls; a reload that
        names another metrics_file moves the metrics there."""
        old = os.umask(0o077)
        try:
            r = subprocess.run([BINARY, "-c", self.conf, "--once"],
                               env=dict(os.environ, **self.env),
                               capture_output=True, text=True, timeout=WAIT)
        finally:
            os.umask(old)
        self.assertEqual(r.returncode, 78, r.stderr)
        with open(self.metrics) as f:
            samples, _ = parse_metrics(f.read())
        for name in ACCOUNTS:
            self.assertEqual(value(samples, "popfetchd_polls_total",
                                   account=name), 1, name)
        self.assertEqual(value(samples, "popfetchd_poll_failures_total",
                               account="badauth", **{"class": "auth"}), 1)
        self.assertEqual(value(samples, "popfetchd_accounts", state="idle"),
                         4)
        # --once serves no status.
        self.assertFalse(os.path.exists(self.rundir))

        d, _ = self.start()
        moved = os.path.join(self.dir, "moved.prom")
        with open(self.conf) as f:
            text = f.read().replace(self.metrics, moved)
        with open(self.conf, "w") as f:
            f.write(text)
        mark = d.mark()
        d.signal(signal.SIGHUP)
        d.wait_line(r"^reloaded ", mark)
        self.wait_file(moved)
        with open(moved) as f:
            samples, _ = parse_metrics(f.read())
        self.assertEqual(sum(v for (n, _), v in samples.items()
                             if n == "popfetchd_accounts"), 4)

    def test_no_daemon(self):
        """--status says clearly that no daemon runs, and exits 69."""
        rc, out, err = self.status()
        self.assertEqual(rc, 69, out + err)
        self.assertIn("no daemon answers at %s/status.sock" % self.rundir,
                      err)
        self.assertEqual(out, "")

    def test_stale_socket_and_second_daemon(self):
        """A socket file a dead daemon left is replaced; one a live daemon
        answers on is left to it, and the second daemon says so; --once
        does not serve --status at all."""
        os.makedirs(self.rundir, 0o700)
        path = os.path.join(self.rundir, "status.sock")
        dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dead.bind(path)
        dead.close()
        d, _ = self.start()
        rc, out, err = self.status()
        self.assertEqual(rc, 0, err)
        pid = json.loads(self.status("--json")[1])["pid"]
        self.assertEqual(pid, d.proc.pid)

        second = Daemon(self.conf, [], self.env)
        self.addCleanup(second.kill)
        second.wait_line(r"another popfetchd answers there; "
                         r"not serving --status")
        second.signal(signal.SIGTERM)
        self.assertEqual(second.wait_exit(), 0, second.text())
        once = Daemon(self.conf, ["--once", "-a", "good"], self.env)
        self.addCleanup(once.kill)
        self.assertEqual(once.wait_exit(), 0, once.text())
        self.assertEqual(once.grep("status"), [])
        # Neither took the socket from the first daemon.
        self.assertTrue(os.path.exists(path))
        self.assertEqual(json.loads(self.status("--json")[1])["pid"], pid)


if __name__ == "__main__":
    unittest.main(verbosity=2)
