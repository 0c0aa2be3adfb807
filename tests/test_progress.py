"""The progress display of popfetchd --once: a line per busy account on a
terminal, taken off before each log line and at the end; never on a file,
a pipe, the journal or a terminal that cannot move its cursor.

One account on the scripted server (tests/fakepop.py), whose first message
comes a byte at a time (its dribble option), so that the poll lasts while
the test looks at the terminal; once the line has been seen, the server
goes back to full speed. Where no line may appear, the poll's own
duration (secs= in its summary line) shows that the display had many
chances to be drawn.

Run: python3 tests/test_progress.py --binary build/popfetchd
"""

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios

from harness import BINARY, WAIT, FakePopCase, clean_env, main

BIG = b"Subject: big\r\n\r\n" + b"".join(
    b"line %04d of a message sent slowly, to make the poll last\r\n" % i
    for i in range(50))
MESSAGES = [BIG, b"Subject: two\r\n\r\nsmall\r\n",
            b"Subject: three\r\n\r\nsmall\r\n"]
# Seconds between two bytes of the first message: about 3 s in all, a
# dozen redraws of the display.
DRIBBLE = 0.001
LINE = re.compile(rb"fake +fetching: \d/3 msgs, [0-9.]+ [KMG]?i?B/")
CLEAR = re.compile(rb"\r\x1b\[(\d+)A\x1b\[J")
SUMMARY = re.compile(rb"account=fake listed=3 fetched=3 .*secs=([0-9.]+)")
# Redraws a second (daemon/progress.h): the poll must last several ticks.
HZ = 4


class Terminal:
    """Reading what a pseudo-terminal shows."""

    def read(self, master, out, until=None):
        """Appends what the terminal shows to OUT until UNTIL matches it
        (a pattern) or, without one, until popfetchd has closed it."""
        while until is None or not until.search(out):
            r, _, _ = select.select([master], [], [], WAIT)
            self.assertTrue(r, "nothing on the terminal for %d s; so "
                            "far:\n%r" % (WAIT, bytes(out[-3000:])))
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer has closed it
                chunk = b""
            if not chunk:
                if until is not None:
                    self.fail("the terminal closed before %s appeared:\n%r"
                              % (until.pattern, bytes(out[-3000:])))
                return
            out += chunk


class ProgressTest(Terminal, FakePopCase):
    MESSAGES = MESSAGES

    def setUp(self):
        super().setUp()
        self.srv = self.server()
        self.srv.dribble = DRIBBLE
        self.srv.dribble_what = "retr"
        self.conf = self.config(self.srv)

    def env(self, **extra):
        env = clean_env(dict({"TERM": "xterm"}, **extra))
        if "JOURNAL_STREAM" not in extra:
            env.pop("JOURNAL_STREAM", None)
        return env

    def start_on_pty(self, env):
        """popfetchd --once with stderr on a new terminal of 100 x 24:
        (process, the terminal's master end)."""
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ,
                    struct.pack("HHHH", 24, 100, 0, 0))
        p = subprocess.Popen([BINARY, "-c", self.conf, "--once"], env=env,
                             stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=slave)
        os.close(slave)
        self.addCleanup(os.close, master)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        return p, master

    def assert_lasted(self, stderr):
        m = SUMMARY.search(stderr)
        self.assertIsNotNone(m, stderr[-3000:])
        self.assertGreater(float(m.group(1)), 2.0 / HZ,
                           "the poll was too short to tell")

    def test_terminal_shows_and_clears(self):
        """Under a terminal the line appears during the poll, every frame
        is taken back before a log line, and none is left at the end."""
        p, master = self.start_on_pty(self.env())
        out = bytearray()
        self.read(master, out, LINE)
        self.srv.dribble = None  # seen: the rest at full speed
        self.read(master, out)
        self.assertEqual(p.wait(WAIT), 0, bytes(out[-3000:]))
        self.assert_delivered_exactly(MESSAGES)
        out = bytes(out)
        self.assert_lasted(out)
        # No log line is written on top of a progress line.
        for line in out.split(b"\n"):
            self.assertFalse(b"account=" in line and LINE.search(line),
                             "garbled: %r" % line)
        # The last thing on the screen is a clear, not a frame.
        last_line = [m.end() for m in LINE.finditer(out)][-1]
        clears = [m for m in CLEAR.finditer(out)]
        self.assertTrue(clears)
        self.assertGreater(clears[-1].start(), last_line)
        # Each clear takes back as many lines as the frame before it had:
        # one account, one line.
        self.assertEqual({m.group(1) for m in clears}, {b"1"})
        # The summary line comes after the last clear, whole.
        self.assertGreater(SUMMARY.search(out).start(), clears[-1].start())

    def test_not_on_a_file(self):
        path = os.path.join(self.dir, "stderr")
        with open(path, "wb") as f:
            p = subprocess.Popen([BINARY, "-c", self.conf, "--once"],
                                 env=self.env(), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=f)
            self.assertEqual(p.wait(WAIT * 2), 0)
        with open(path, "rb") as f:
            self.assert_plain(f.read())
        self.assert_delivered_exactly(MESSAGES)

    def test_not_on_a_pipe(self):
        r = subprocess.run([BINARY, "-c", self.conf, "--once"],
                           env=self.env(), stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=WAIT * 2)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assert_plain(r.stderr)
        self.assert_delivered_exactly(MESSAGES)

    def assert_plain(self, text):
        self.assert_lasted(text)
        self.assertNotIn(b"fetching:", text)
        self.assertNotIn(b"\x1b", text)
        self.assertNotIn(b"\r", text)

    def test_not_in_the_journal(self):
        """A terminal, but JOURNAL_STREAM set: output meant for the
        journal."""
        p, master = self.start_on_pty(self.env(JOURNAL_STREAM="1:1"))
        out = bytearray()
        self.read(master, out)
        self.assertEqual(p.wait(WAIT), 0, bytes(out[-3000:]))
        self.assert_plain(bytes(out).replace(b"\r\n", b"\n"))

    def test_not_on_a_dumb_terminal(self):
        """A terminal that cannot move its cursor (TERM=dumb)."""
        p, master = self.start_on_pty(self.env(TERM="dumb"))
        out = bytearray()
        self.read(master, out)
        self.assertEqual(p.wait(WAIT), 0, bytes(out[-3000:]))
        self.assert_plain(bytes(out).replace(b"\r\n", b"\n"))


class ListProgressTest(Terminal, FakePopCase):
    """--list: the display on the terminal when the listing goes to a
    file; none when the listing itself is on the terminal."""

    MESSAGES = MESSAGES
    READING = re.compile(rb"fake +reading headers: \d/3 msgs")

    def setUp(self):
        super().setUp()
        self.srv = self.server()
        # Each TOP reply a byte at a time: about 2 s in all, several
        # redraws.
        self.srv.dribble = 0.03
        self.srv.dribble_what = "top"
        self.conf = self.config(self.srv)

    def run_list(self, stdout):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ,
                    struct.pack("HHHH", 24, 100, 0, 0))
        env = clean_env({"TERM": "xterm"})
        env.pop("JOURNAL_STREAM", None)
        p = subprocess.Popen([BINARY, "-c", self.conf, "--list", "fake"],
                             env=env, stdin=subprocess.DEVNULL,
                             stdout=slave if stdout is None else stdout,
                             stderr=slave)
        os.close(slave)
        self.addCleanup(os.close, master)
        self.addCleanup(lambda: p.poll() is None and p.kill())
        out = bytearray()
        self.read(master, out)
        self.assertEqual(p.wait(WAIT), 0, bytes(out[-3000:]))
        return bytes(out)

    def test_listing_to_a_file(self):
        path = os.path.join(self.dir, "listing")
        with open(path, "wb") as f:
            out = self.run_list(f)
        self.assertRegex(out, self.READING)
        # Taken off the screen at the end.
        self.assertRegex(out, rb"\x1b\[J\Z")
        with open(path, "rb") as f:
            listing = f.read()
        self.assertEqual(len(re.findall(rb"(?m)^ +\d+ +\d+ ", listing)), 3)
        self.assertNotIn(b"\x1b", listing)

    def test_listing_on_the_terminal(self):
        out = self.run_list(None)
        self.assertEqual(len(re.findall(rb"(?m)^ +\d+ +\d+ ", out)), 3)
        self.assertNotRegex(out, self.READING)
        self.assertNotIn(b"\x1b", out)


if __name__ == "__main__":
    main()
