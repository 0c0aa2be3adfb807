"""bench_loadsrv (bench/loadsrv.c) from Python: the process (LoadServer)
and the mailboxes it serves, made again here from the same seed
(Mailboxes), so that what a client fetched can be checked.

The rules are in loadsrv.c's opening comment; this module follows them
byte for byte. Messages are bytes with CRLF line ends, as the server
counts them for LIST; lf() gives the form popfetchd writes into a Maildir.
"""

import base64
import hashlib
import os
import re
import signal
import subprocess

TEXT_WIDTH = 76                 # base64 characters per body line
LINE_OCTETS = TEXT_WIDTH + 2
UID_HEX = 24


class Mailboxes:
    """What bench_loadsrv --seed SEED --messages MMIN-MMAX --sizes
    SMIN-SMAX holds for each user."""

    def __init__(self, seed, messages=(1, 3), sizes=(1000, 6000)):
        self.seed = seed
        self.mmin, self.mmax = messages
        self.smin, self.smax = sizes

    def count(self, user):
        d = hashlib.sha256(b"loadsrv|%d|%s" % (self.seed,
                                               user.encode())).digest()
        return self.mmin + int.from_bytes(d[:4], "big") % (
            self.mmax - self.mmin + 1)

    def header(self, user, i, count, uid):
        return (b"From: bench_loadsrv <loadsrv@example.invalid>\r\n"
                b"To: %s\r\n"
                b"Subject: message %d of %d (seed %d)\r\n"
                b"Message-ID: <%s@loadsrv.invalid>\r\n"
                b"\r\n" % (user.encode(), i + 1, count, self.seed,
                           uid.encode()))

    def uid(self, user, i):
        return self._digest(user, i)[:UID_HEX // 2].hex()

    def _digest(self, user, i):
        return hashlib.sha256(b"loadsrv|%d|%s|%d" % (
            self.seed, user.encode(), i)).digest()

    def message(self, user, i, count=None):
        """Message I (0-based) of USER's box: (uid, bytes with CRLF)."""
        count = self.count(user) if count is None else count
        d = self._digest(user, i)
        uid = d[:UID_HEX // 2].hex()
        target = self.smin + int.from_bytes(d[12:16], "big") % (
            self.smax - self.smin + 1)
        head = self.header(user, i, count, uid)
        body = target - len(head) if target > len(head) + 2 else 2
        if body % LINE_OCTETS == 1:
            body += 1
        nlines = -(-body // LINE_OCTETS)
        last = body - LINE_OCTETS * (nlines - 1) - 2
        parts = [head]
        for j in range(nlines):
            parts.append(body_line(uid, j, TEXT_WIDTH if j + 1 < nlines
                                   else last))
        return uid, b"".join(parts)

    def box(self, user):
        """USER's messages, in order: a list of (uid, bytes with CRLF)."""
        n = self.count(user)
        return [self.message(user, i, n) for i in range(n)]


def body_line(uid, j, width):
    d = hashlib.sha512(b"%s|%d" % (uid.encode(), j)).digest()
    text = base64.b64encode(d[:57])
    if d[57] % 8 == 0:
        text = b"." + text[1:]
    return text[:width] + b"\r\n"


def lf(message):
    """MESSAGE as popfetchd writes it into a Maildir: LF line ends."""
    return message.replace(b"\r\n", b"\n")


class LoadServer:
    """A running bench_loadsrv: PATH with ARGS (its options, as strings),
    its certificate written to CERT (clients trust it as their CA file).
    .tls_port and .plain_port (STLS) are where it listens."""

    def __init__(self, path, cert, args=(), cpus=None):
        self.cert = cert
        self.proc = subprocess.Popen(
            [path, "--write-cert", cert] + list(args),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
            preexec_fn=(None if cpus is None else
                        lambda: os.sched_setaffinity(0, cpus)))
        line = self.proc.stdout.readline()
        m = re.match(r"listening on [^ ]*:(\d+) \(tls\), [^ ]*:(\d+) ",
                     line)
        if m is None:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("bench_loadsrv: unexpected first line %r"
                               % line)
        self.tls_port, self.plain_port = int(m.group(1)), int(m.group(2))

    def stats(self):
        """Its counters now (SIGUSR1), as a dict of ints."""
        self.proc.send_signal(signal.SIGUSR1)
        return parse_stats(self.proc.stdout.readline())

    def stop(self):
        """Stops it; its counters at the end and the CPU seconds it used
        (None if it had stopped already)."""
        if self.proc.poll() is not None:
            return None, None
        self.proc.terminate()
        line = self.proc.stdout.readline()
        _, status, ru = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.proc.stdout.close()
        return parse_stats(line), ru.ru_utime + ru.ru_stime


def parse_stats(line):
    if not line.startswith("stats "):
        raise RuntimeError("bench_loadsrv: not a stats line: %r" % line)
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
