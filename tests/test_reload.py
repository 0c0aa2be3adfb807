"""SIGHUP with a few thousand accounts: the file is read off the loop, so
the daemon keeps answering --status while it is read, and a SIGHUP
meanwhile is served after it; the accounts move to the new configuration
keeping their schedules; a configuration with errors is reported with
file:line and the running one stays.

The accounts point at a port bound but not listening (connections are
refused at once), and poll every week: after one SIGUSR1 every account
has failed once and backs off for days. To hold a reload in the middle
of reading the file for as long as the test likes, the configuration is
replaced by a named pipe: the daemon's reading waits until the test
writes the new text into it. A daemon that read the file on its loop
would answer nothing meanwhile.

Run: python3 tests/test_reload.py --binary build/popfetchd
"""

import calendar
import json
import os
import signal
import socket
import threading
import time

from harness import WAIT, Case, main, poll_until

ACCOUNTS = 2000
# Answers the status socket must give while the reload waits for its file,
# within DURING_SECS (each takes milliseconds).
ANSWERS_DURING = 3
DURING_SECS = 20
WEEK = 7 * 86400


def ask(path):
    """One request on the status socket: the answer, parsed."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(WAIT)
        s.connect(path)
        s.sendall(b"status\n")
        chunks = []
        while True:
            b = s.recv(1 << 16)
            if not b:
                break
            chunks.append(b)
    return json.loads(b"".join(chunks))


def by_name(doc):
    return {a["name"]: a for a in doc["accounts"]}


def epoch(when):
    """A time as the JSON has it ("2026-12-01T10:00:00Z"), in seconds."""
    return calendar.timegm(time.strptime(when, "%Y-%m-%dT%H:%M:%SZ"))


class Asker:
    """A busy --status client: asks over and over on a thread, keeping
    each answer's time of arrival and account names."""

    def __init__(self, path):
        self.path = path
        self.answers = []  # (monotonic time, set of names)
        self.error = None
        self.stopping = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping:
            try:
                doc = ask(self.path)
            except (OSError, ValueError) as e:
                self.error = e
                return
            self.answers.append((time.monotonic(), set(by_name(doc))))

    def since(self, t):
        return [names for (at, names) in self.answers if at > t]

    def stop(self):
        self.stopping = True
        self.thread.join(WAIT)


class TestReload(Case):

    def setUp(self):
        super().setUp()
        # Bound, never listening: every connection is refused.
        self.closed = socket.socket()
        self.closed.bind(("127.0.0.1", 0))
        self.addCleanup(self.closed.close)
        self.rundir = os.path.join(self.dir, "run")
        self.sock = os.path.join(self.rundir, "status.sock")
        self.conf = os.path.join(self.dir, "popfetchd.conf")

    def text(self, names, bad=None):
        """A configuration of the accounts NAMES; BAD: (name, setting)
        for one of them. Returns (text, {name: line of its group})."""
        head = ('state_dir = "%s/state";\npoll_interval = %d;\n'
                'defaults = {\n  host = "127.0.0.1"; port = %d;\n'
                '  tls = "implicit"; password = "pw";\n'
                '  target = "mda"; mda = "/bin/true";\n};\naccounts = (\n'
                % (self.dir, WEEK, self.closed.getsockname()[1]))
        lines, where = [], {}
        first = head.count("\n") + 1
        for i, n in enumerate(names):
            extra = " %s;" % bad[1] if bad and bad[0] == n else ""
            where[n] = first + i
            lines.append('  { name = "%s"; user = "u-%s";%s }' % (n, n, extra))
        return head + ",\n".join(lines) + "\n);\n", where

    def write(self, text):
        tmp = self.conf + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.rename(tmp, self.conf)

    def start(self, names):
        self.write(self.text(names)[0])
        d = self.daemon(self.conf, env={"RUNTIME_DIRECTORY": self.rundir})
        d.wait_line(r"^started accounts=%d " % len(names))
        # Every account polls (and is refused) now, then waits a week. One
        # whose first poll (spread over a few seconds from the start) came
        # before the signal polls twice. Awaited on the status socket, not
        # in the log: 2,000 polls' lines at once can outrun a slow reader
        # of standard error, and popfetchd then drops lines (and says how
        # many) rather than hold its loop. Making 2,000 state files can
        # take minutes on a slow disk.
        d.signal(signal.SIGUSR1)
        poll_until(lambda: all(a["state"] == "backoff" and
                               a["totals"]["polls"] >= 1
                               for a in ask(self.sock)["accounts"]),
                   "end of every account's refused poll", 4 * WAIT)
        return d

    def test_status_answers_while_the_file_is_read(self):
        old = ["a%04d" % i for i in range(ACCOUNTS)]
        new = old[ACCOUNTS // 2:] + ["b%04d" % i for i in range(ACCOUNTS // 2)]
        d = self.start(old)
        before = by_name(ask(self.sock))
        self.assertEqual(set(before), set(old))

        os.unlink(self.conf)
        os.mkfifo(self.conf, 0o600)
        asker = Asker(self.sock)
        self.addCleanup(asker.stop)
        mark = d.mark()
        d.signal(signal.SIGHUP)
        d.wait_line(r"^reloading file=", mark)
        t = time.monotonic()
        # The reload waits for the pipe; the loop answers meanwhile.
        deadline = t + DURING_SECS
        while len(asker.since(t)) < ANSWERS_DURING and \
                asker.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertIsNone(asker.error)
        during = asker.since(t)
        self.assertGreaterEqual(len(during), ANSWERS_DURING)
        self.assertTrue(all(names == set(old) for names in during))
        self.assertEqual(d.grep(r"^reloaded ", mark), [])
        # Another SIGHUP meanwhile: served after this reload.
        d.signal(signal.SIGHUP)
        d.wait_line(r"^reload under way; another follows it$", mark)

        def feed():
            with open(self.conf, "w") as f:
                f.write(self.text(new)[0])
        for added in (ACCOUNTS // 2, 0):
            writer = threading.Thread(target=feed)
            writer.start()
            d.wait_line(r"^reloaded file=.* accounts=%d added=%d removed=%d$"
                        % (ACCOUNTS, added, added), mark)
            writer.join(WAIT)
        self.assertEqual(len(d.grep(r"^reloading file=", mark)), 2)
        asker.stop()
        self.assertIsNone(asker.error)
        after = by_name(ask(self.sock))
        self.assertEqual(set(after), set(new))
        now = time.time()
        for n in old[ACCOUNTS // 2:]:
            # Kept: not polled again, and still backing off for days
            # (next_poll is a wall-clock time worked out at each answer,
            # so it may move by a rounding second).
            a = after[n]
            self.assertEqual(a["totals"]["polls"],
                             before[n]["totals"]["polls"], n)
            self.assertEqual(a["state"], "backoff", n)
            self.assertEqual(a["streak"], before[n]["streak"], n)
            self.assertGreater(epoch(a["next_poll"]), now + 86400, n)
            self.assertLessEqual(abs(epoch(a["next_poll"]) -
                                     epoch(before[n]["next_poll"])), 2, n)
        for n in new[ACCOUNTS // 2:]:
            # Added: first polls spread over the next half minute.
            a = after[n]
            if a["state"] == "waiting":
                self.assertLessEqual(epoch(a["next_poll"]), now + 31, n)
            else:
                self.assertTrue(a["state"] in ("queued", "polling") or
                                a["totals"]["polls"] > 0, n)
        self.assertEqual(len(d.grep(r"removed from the configuration$",
                                    mark)), ACCOUNTS // 2)

        # Errors: each reported with file:line; every account stays.
        text, where = self.text(new, bad=("b0007", "port = 70000"))
        self.write(text)
        mark = d.mark()
        d.signal(signal.SIGHUP)
        d.wait_line(r"^reload failed: .* still running", mark)
        self.assertEqual(
            d.grep(r"^reload: ", mark),
            ['reload: %s:%d: account "b0007": port 70000 out of range '
             '(1..65535)' % (self.conf, where["b0007"])])
        still = by_name(ask(self.sock))
        self.assertEqual(set(still), set(new))
        for n in old[ACCOUNTS // 2:]:
            self.assertEqual(still[n]["totals"], after[n]["totals"], n)
            self.assertLessEqual(abs(epoch(still[n]["next_poll"]) -
                                     epoch(after[n]["next_poll"])), 2, n)
        self.assertEqual(d.grep(r"^reloaded ", mark), [])
        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait_exit(), 0)


if __name__ == "__main__":
    main()
