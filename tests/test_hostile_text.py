"""Server text that attacks the terminal, the journal or the service manager.

A scripted server (tests/fakepop.py) answers with terminal escapes, BEL,
CR, C1 controls, printf directives and kilobytes of padding. Whatever
popfetchd shows of it (log lines, protocol trace, --serverinfo, --list,
STATUS= to the service manager) must be printable ASCII, escaped as \\xNN,
with every line length-capped.

Run: python3 tests/test_hostile_text.py --binary build/popfetchd
"""

import os
import re
import signal
import socket

from fakepop import FakePop
from harness import WAIT, FakePopCase, main

# LOG_MSG_MAX in daemon/log.h: the longest message of a log line.
LOG_MSG_MAX = 2048
# What comes before the message ("account=fake < "), with room to spare.
PREFIX_MAX = 64

# CSI colour, BEL, CR (overwrites the line on a terminal), an OSC title
# change, 8-bit CSI (0x9B), printf directives, a literal backslash escape.
HOSTILE = (b"\x1b[31mred\x1b[0m\x07\rMAINPID=1 %n%s%x "
           b"\x9b2J\x1b]0;owned\x07 \\x41")
PADDING = b"P" * 6000

MESSAGE = b"From: a@example.org\nSubject: one\n\nbody\n"


def printable_lines(data):
    """DATA split at '\\n'; fails if any other byte is not printable."""
    bad = [b for b in data if b != 0x0A and not 0x20 <= b <= 0x7E]
    if bad:
        raise AssertionError("unescaped bytes %r in %r"
                             % (sorted(set(bad)), data[:2000]))
    return data.split(b"\n")


class HostileTextTest(FakePopCase):
    MESSAGES = [MESSAGE]

    def hostile_auth(self, srv):
        """Greeting and login refusal full of escapes and padding."""
        srv.greeting = (b"+OK " + HOSTILE + b" " + PADDING + b" "
                        + FakePop.TIMESTAMP + b"\r\n")
        refusal = b"-ERR [AUTH] " + HOSTILE + b" " + PADDING + b"\r\n"
        srv.raw["AUTH"] = refusal
        srv.raw["PASS"] = refusal
        srv.raw["APOP"] = refusal

    def assert_escaped(self, data):
        """DATA holds HOSTILE escaped, never raw, in capped lines."""
        for line in printable_lines(data):
            self.assertLessEqual(len(line), PREFIX_MAX + LOG_MSG_MAX, line)
        self.assertIn(b"\\x1b[31mred\\x1b[0m\\x07\\x0dMAINPID=1 %n%s%x "
                      b"\\x9b2J\\x1b]0;owned\\x07 \\\\x41", data)

    def test_log_lines_escaped_and_capped(self):
        """Login refused with hostile text: log and trace stay inert."""
        srv = self.server()
        self.hostile_auth(srv)
        r = self.run_once(self.config(srv), debug=2, text=False)
        self.assertNotEqual(r.returncode, 0, r.stderr)
        self.assert_escaped(r.stderr)
        self.assertIn(b"account=fake error=auth ", r.stderr)
        # The padding is cut, and the cut says by how much.
        cuts = re.findall(rb"P\.\.\. \((\d+) bytes cut\)", r.stderr)
        self.assertTrue(cuts, r.stderr)
        self.assertTrue(all(0 < int(n) < len(PADDING) for n in cuts))
        self.assertNotIn(PADDING, r.stderr)

    def test_status_escaped(self):
        """STATUS= carries the server's error as one escaped line."""
        srv = self.server()
        self.hostile_auth(srv)
        path = os.path.join(self.dir, "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(WAIT)
        d = self.daemon(self.config(srv), env={"NOTIFY_SOCKET": path})
        datagrams = []
        try:
            # Ready: poll now rather than after the spread of first polls.
            while b"READY=1" not in datagrams:
                datagrams.append(sock.recv(65536))
            d.signal(signal.SIGUSR1)
            # Until the status names the failed login (recv times out,
            # failing the test, if it never comes).
            while not any(b"last error" in g for g in datagrams):
                datagrams.append(sock.recv(65536))
        finally:
            d.stop()
            sock.close()
        keys = {b"READY", b"STATUS", b"STOPPING", b"WATCHDOG",
                b"RELOADING", b"MONOTONIC_USEC"}
        for g in datagrams:
            for line in printable_lines(g):
                self.assertIn(line.partition(b"=")[0], keys, g)
        status = [g for g in datagrams if b"last error" in g][0]
        self.assertTrue(status.startswith(b"STATUS="), status)
        self.assertNotIn(b"\n", status)
        self.assertIn(b"\\x1b[31mred\\x1b[0m\\x07\\x0dMAINPID=1", status)

    def test_serverinfo_escaped(self):
        """--serverinfo prints greeting and capabilities escaped."""
        srv = self.server()
        srv.greeting = (b"+OK " + HOSTILE + b" " + PADDING + b" "
                        + FakePop.TIMESTAMP + b"\r\n")
        srv.raw["CAPA"] = (b"+OK\r\nUIDL\r\nUSER\r\nSASL PLAIN\r\n"
                           b"X-" + HOSTILE + b"\r\n.\r\n")
        r = self.run_popfetchd("-c", self.config(srv), "--serverinfo",
                               "fake", text=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_escaped(r.stdout)
        self.assertIn(b"capability:   X-\\x1b[31m", r.stdout)
        self.assertRegex(r.stdout, rb"greeting: .*bytes cut\)")
        printable_lines(r.stderr)

    def test_list_escaped(self):
        """--list prints headers with 8-bit bytes (C1 CSI) escaped."""
        srv = self.server()
        srv.raw["TOP"] = (b"+OK\r\nFrom: \x9b2J<a@example.org>\r\n"
                          b"Subject: caf\xc3\xa9 \x1b[31m\\\r\n\r\n.\r\n")
        r = self.run_popfetchd("-c", self.config(srv), "--list", "fake",
                               text=False)
        self.assertEqual(r.returncode, 0, r.stderr)
        printable_lines(r.stdout)
        printable_lines(r.stderr)
        self.assertIn(b"\\x9b2J<a@example.org>", r.stdout)
        self.assertIn(b"caf\\xc3\\xa9", r.stdout)


if __name__ == "__main__":
    main()
