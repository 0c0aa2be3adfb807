"""Integration tests of the delivery targets against a real Dovecot.

One throwaway Dovecot (tests/dovecot.py, lmtp=True) serves both sides:
POP3 for the mailbox popfetchd fetches from ("alice"), and LMTP with
Pigeonhole Sieve on a Unix socket for the mailbox it delivers to ("bob").
What Dovecot stored is read back from bob's Maildir and with doveadm.

Run: python3 tests/test_targets.py --binary build/popfetchd
     (or set POPFETCHD). KEEP_TMP=1 leaves the temporary folders behind.
"""

import os
import re
import socket
import subprocess
import threading
import time

import mailgen
from dovecot import Dovecot
from harness import DovecotCase, FakePopCase, main, multiset

PASSWORD = DovecotCase.PASSWORD

# What Dovecot's LMTP puts before a message it stores (Return-Path,
# Delivered-To, its Received), then popfetchd's identifier field.
TRACE = re.compile(
    rb"\AReturn-Path: <[^\n]*>\nDelivered-To: [^\n]*\n"
    rb"Received: [^\n]*\n(?:[ \t][^\n]*\n)*"
    rb"X-Popfetchd-Id: <[0-9a-f]{32}@popfetchd>\n")

# The Sieve script the manual page ships: a second copy of a message that
# popfetchd hands over twice (a crash between the target's 250 and the
# state's commit) is dropped.
DUPLICATE_SIEVE = """require ["duplicate"];
if duplicate :header "X-Popfetchd-Id" {
  discard;
  stop;
}
"""


def untraced(msg):
    """MSG without the trace and identifier fields at its top."""
    m = TRACE.match(msg)
    assert m, "no trace fields at the top of %r" % msg[:300]
    return msg[m.end():]


def popfetchd_ids(msgs):
    """The X-Popfetchd-Id values of MSGS, in order."""
    out = []
    for m in msgs:
        found = re.search(rb"^X-Popfetchd-Id: (\S+)$", m, re.M)
        out.append(found.group(1) if found else None)
    return out


class TargetCase(DovecotCase):

    def lmtp_dovecot(self):
        dc = self.dovecot(lmtp=True)
        dc.add_user("alice", PASSWORD)
        dc.add_user("bob", "unused-" + os.urandom(4).hex())
        return dc

    def lmtp_account(self, dc, **keys):
        keys.setdefault("target", "lmtp")
        keys.setdefault("lmtp", dc.lmtp_socket)
        keys.setdefault("recipient", "bob")
        acct = self.account(dc, **keys)
        acct["maildir"] = None
        return acct

    def assert_stored(self, dc, sent, mailbox="INBOX"):
        got = dc.mailbox_messages("bob", mailbox)
        self.assertEqual(len(got), len(sent), "messages in bob's %s"
                         % mailbox)
        self.assertEqual(multiset(untraced(m) for m in got), multiset(sent),
                         "messages altered on the way")
        return got


class TestLmtp(TargetCase):

    def test_delivers_byte_identical_and_deletes(self):
        """Messages (dot lines, 20 KB lines, 8-bit bytes, one of several
        MB) reach bob through LMTP unchanged but for the trace fields;
        each carries one X-Popfetchd-Id, distinct per message and the
        same for the same UID on every run; the POP3 mailbox is emptied."""
        dc = self.lmtp_dovecot()
        msgs = mailgen.generate(70, seed=31, huge=True, tag="lmtp")
        dc.deliver_many("alice", msgs)
        conf = self.config(self.lmtp_account(dc))

        r = self.run_once(conf)

        self.assert_exit(r, 0)
        got = self.assert_stored(dc, msgs)
        ids = popfetchd_ids(got)
        self.assertNotIn(None, ids)
        self.assertEqual(len(set(ids)), len(ids))
        self.assertEqual(dc.server_messages("alice"), [])
        self.assert_summary(r, "alice", 70)
        self.assertFalse(os.path.exists(self.maildir),
                         "a Maildir was made for an LMTP account")

    def test_sieve_files_into_folder(self):
        """A Sieve rule at the target files one message into a folder."""
        dc = self.lmtp_dovecot()
        dc.set_sieve("bob", 'require ["fileinto", "mailbox"];\n'
                     'if header :contains "subject" "message 2 " {\n'
                     '  fileinto :create "Filed"; stop;\n}\n')
        msgs = mailgen.generate(4, seed=32, tag="lmtp-sieve")
        dc.deliver_many("alice", msgs)
        conf = self.config(self.lmtp_account(dc))

        r = self.run_once(conf)

        self.assert_exit(r, 0)
        filed = [m for m in msgs if "message 2 " in mailgen.subject(m)]
        self.assertEqual(len(filed), 1)
        self.assert_stored(dc, filed, "Filed")
        self.assert_stored(dc, [m for m in msgs if m not in filed])
        self.assertEqual(dc.server_messages("alice"), [])


    def test_quota_452_left_and_retried(self):
        """A mailbox that fills up: what LMTP took (250) is deleted on
        the POP3 server, what it refused with 452 (quota, temporary)
        stays there without a strike and goes at a later poll."""
        dc = self.dovecot(lmtp=True)
        dc.add_user("alice", PASSWORD)
        msgs = [b"Subject: q%d\n\n%s\n" % (i, b"x" * 3000)
                for i in range(6)]
        # Room for about three of them.
        dc.add_user("bob", "unused", quota=10000)
        dc.deliver_many("alice", msgs)
        conf = self.config(self.lmtp_account(dc))

        r = self.run_once(conf)

        self.assert_exit(r, 75)
        stored = [untraced(m) for m in dc.mailbox_messages("bob")]
        left = dc.server_messages("alice")
        self.assertTrue(0 < len(stored) < 6, len(stored))
        self.assertEqual(multiset(stored + left), multiset(msgs))
        self.assertRegex(r.stderr, r"temporary failure from the target: "
                         r"452 4\.2\.2 ")
        self.assertNotIn("strike=", r.stderr)

        # Room again (bob's mail expunged through Dovecot, which keeps
        # the quota's count): the rest arrives, each message once.
        dc.own_tree(dc.maildir("bob"))
        x = dc.doveadm("expunge", "-u", "bob", "mailbox", "INBOX", "all")
        self.assertEqual(x.returncode, 0, x.stderr)
        r = self.run_once(conf)
        self.assert_exit(r, 0)
        self.assert_stored(dc, left)
        self.assertEqual(dc.server_messages("alice"), [])

    def test_unknown_recipient_550_strikes(self):
        """RCPT refused with 550: a permanent failure; every message
        stays on the POP3 server and gets a strike, counted again at the
        next poll."""
        dc = self.lmtp_dovecot()
        msgs = mailgen.generate(3, seed=34, tag="lmtp-550")
        dc.deliver_many("alice", msgs)
        conf = self.config(self.lmtp_account(dc, recipient="nobody"))

        r = self.run_once(conf)

        self.assert_exit(r, 75)
        self.assertEqual(multiset(dc.server_messages("alice")),
                         multiset(msgs))
        self.assertEqual(len(re.findall(
            r"permanent failure from the target: 550 5\.1\.1 ", r.stderr)),
            3, r.stderr)
        self.assertEqual(len(re.findall(r"strike=1\b", r.stderr)), 3)
        r = self.run_once(conf)
        self.assertEqual(len(re.findall(r"strike=2\b", r.stderr)), 3,
                         r.stderr)
        self.assertEqual(dc.mailbox_messages("bob"), [])

    def test_server_gone_mid_data_loses_nothing(self):
        """An LMTP server that closes in the middle of a message's data:
        nothing is deleted on the POP3 server; with a working server the
        next poll delivers every message once."""
        dc = self.lmtp_dovecot()
        msgs = mailgen.generate(5, seed=35, tag="lmtp-gone")
        dc.deliver_many("alice", msgs)
        fake = FakeLmtp(os.path.join(self.dir, "fake.sock"), close_after=2000)
        self.addCleanup(fake.stop)
        conf = self.config(self.lmtp_account(dc, lmtp=fake.path))

        r = self.run_once(conf)

        self.assert_exit(r, 75)
        self.assertGreater(fake.data_bytes, 0)
        self.assertRegex(r.stderr, r"LMTP connection lost")
        self.assertEqual(multiset(dc.server_messages("alice")),
                         multiset(msgs))
        conf = self.config(self.lmtp_account(dc))
        r = self.run_once(conf)
        self.assert_exit(r, 0)
        self.assert_stored(dc, msgs)

    def test_slow_target_memory_bounded(self):
        """A slow LMTP server slows the POP3 side down instead of filling
        memory: peak memory with a 20 MiB message stays within a few MiB
        of that with a 1 MiB one; the bytes arrive dot-stuffed with CRLF,
        exactly."""
        if under_asan():
            self.skipTest("peak RSS is AddressSanitizer's quarantine there")
        peaks = {}
        for mib in (1, 20):
            dc = self.lmtp_dovecot()
            body = b"".join(b".line %07d of the big one\n" % i
                            for i in range(mib * 1024 * 1024 // 27))
            msg = b"Subject: big %d\n\n" % mib + body
            dc.deliver("alice", msg)
            fake = FakeLmtp(os.path.join(self.dir, "slow%d.sock" % mib),
                            rate=16 << 20)
            self.addCleanup(fake.stop)
            conf = self.config(self.lmtp_account(dc, lmtp=fake.path))
            status, peaks[mib], err = run_measured(conf, self.dir)
            self.assertEqual(status, 0, err)
            self.assertEqual(len(fake.messages), 1)
            got = untraced_fake(fake.messages[0])
            want = msg.replace(b"\n", b"\r\n").replace(b"\r\n.",
                                                      b"\r\n..")
            self.assertEqual(got, want)
            dc.cleanup()
        self.assertLess(peaks[20] - peaks[1], 2 * 1024,
                        "peak RSS (KiB): %r" % peaks)

    def test_check_config_lmtp_socket(self):
        """--check-config: the LMTP socket must exist and be a socket;
        the running Dovecot's passes."""
        dc = self.lmtp_dovecot()
        conf = self.config(self.lmtp_account(dc))
        r = self.run_popfetchd("--check-config", "-c", conf)
        self.assert_exit(r, 0)
        self.assertRegex(r.stdout, r"lmtp=\S+ recipient=bob")
        for bad, why in ((dc.lmtp_socket + ".gone", "No such file"),
                         (self.dir, "is not a socket")):
            conf = self.config(self.lmtp_account(dc, lmtp=bad))
            r = self.run_popfetchd("--check-config", "-c", conf)
            self.assert_exit(r, 78)
            self.assertRegex(r.stderr, r"popfetchd\.conf:\d+: .*lmtp: "
                             r".*" + why)



def under_asan():
    """Whether the popfetchd under test is built with AddressSanitizer."""
    from harness import BINARY
    r = subprocess.run(["ldd", BINARY], capture_output=True, text=True)
    return "libasan" in r.stdout


def run_measured(conf, workdir):
    """popfetchd --once on CONF: exit status, peak RSS (KiB), stderr.

    Run through bench_floor measure (built beside popfetchd): a process
    exec'd by this Python one would report at least the interpreter's
    peak RSS, which the test's large messages inflate.
    """
    from harness import BINARY, clean_env
    floor = os.path.join(os.path.dirname(BINARY), "bench_floor")
    out = os.path.join(workdir, "measure.out")
    r = subprocess.run([floor, "measure", out, BINARY, "-c", conf,
                        "--once"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, errors="replace",
                       env=clean_env(), timeout=300)
    with open(out) as f:
        fields = dict(kv.split("=", 1) for kv in f.read().split())
    return r.returncode, int(fields["maxrss_kb"]), r.stderr


def untraced_fake(data):
    """What FakeLmtp received, without popfetchd's identifier field and
    the final dot."""
    assert data.endswith(b"\r\n.\r\n")
    return re.sub(rb"\AX-Popfetchd-Id: [^\r]*\r\n", b"", data[:-3])



class FakeLmtp:
    """An LMTP server on a Unix socket, for what Dovecot will not do:
    close after CLOSE_AFTER bytes of a message's data, or read at most
    RATE bytes a second. It takes every message (250) otherwise, and
    keeps what it received in .messages (dot-stuffed, as on the wire)."""

    def __init__(self, path, close_after=None, rate=None):
        self.path = path
        self.close_after = close_after
        self.rate = rate
        self.messages = []
        self.data_bytes = 0
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(path)
        self.sock.listen(4)
        self.stopped = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def stop(self):
        self.stopped = True
        # Wakes accept() up, so that the thread sees STOPPED.
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(self.path)
        except OSError:
            pass
        self.thread.join(10)
        self.sock.close()

    def _serve(self):
        while not self.stopped:
            conn, _ = self.sock.accept()
            if self.stopped:
                conn.close()
                return
            with conn:
                try:
                    self._session(conn)
                except OSError:
                    pass

    def _session(self, conn):
        f = conn.makefile("rb")
        conn.sendall(b"220 fake LMTP\r\n")
        while True:
            line = f.readline()
            if not line:
                return
            cmd = line[:4].upper()
            if cmd == b"LHLO":
                conn.sendall(b"250-fake\r\n250-PIPELINING\r\n"
                             b"250 8BITMIME\r\n")
            elif cmd == b"DATA":
                conn.sendall(b"354 go on\r\n")
                if not self._data(conn, f):
                    return
                conn.sendall(b"250 2.0.0 taken\r\n")
            elif cmd == b"QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"250 ok\r\n")

    def _data(self, conn, f):
        data = bytearray()
        t0 = time.monotonic()
        while not data.endswith(b"\r\n.\r\n") and data != b".\r\n":
            chunk = f.readline(65536)
            if not chunk:
                return False
            data += chunk
            self.data_bytes += len(chunk)
            if self.close_after is not None and \
                    len(data) > self.close_after:
                conn.shutdown(socket.SHUT_RDWR)
                return False
            if self.rate:
                # The reader's pace, not a wait for an event.
                ahead = len(data) / self.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)
        self.messages.append(bytes(data))
        return True


class TestPopFaults(FakePopCase):
    """The POP3 side breaking while a message streams to LMTP: the
    scripted server's faults, Dovecot's LMTP as the target."""

    MESSAGES = [b"From: f%d@example.org\nSubject: fault %d\n\n%s\n"
                % (i, i, b"\n".join(b".line %d" % j for j in range(400)))
                for i in range(4)]

    def setUp(self):
        super().setUp()
        self.dc = Dovecot(lmtp=True)
        self.addCleanup(self.dc.cleanup)
        self.dc.start()
        self.dc.add_user("bob", "unused")

    def lmtp_config(self, srv):
        return self.config(srv, maildir=None, target="lmtp",
                           lmtp=self.dc.lmtp_socket, recipient="bob")

    def stored(self):
        return [untraced(m) for m in self.dc.mailbox_messages("bob")]

    def test_dropped_mid_message_nothing_partial(self):
        """The POP3 connection drops inside message 3: the LMTP
        transaction is abandoned without its final dot, so Dovecot
        stores nothing of it; nothing is deleted without QUIT; the next
        poll delivers the rest, each message once."""
        srv = self.server()
        srv.drop_in_retr = (3, 2000)
        conf = self.lmtp_config(srv)

        r = self.run_once(conf)

        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertEqual(sorted(self.stored()), sorted(self.MESSAGES[:2]))
        self.assertEqual(srv.messages, self.MESSAGES)
        srv.drop_in_retr = None
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(self.stored()), sorted(self.MESSAGES))
        self.assertEqual(srv.messages, [])

    def test_cut_short_message_taken_back(self):
        """A message far shorter than LIST said ends cleanly on the POP3
        side after its bytes went to LMTP: it is taken back (no final
        dot), struck, left on the server; the others are delivered."""
        srv = self.server()
        srv.cut_retr = (2, 1000)
        conf = self.lmtp_config(srv)

        r = self.run_once(conf)

        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertRegex(r.stderr, r"message 2: \d+ bytes received where "
                         r"LIST said \d+: taken as cut short")
        self.assertRegex(r.stderr, r"strike=1")
        want = [self.MESSAGES[0]] + self.MESSAGES[2:]
        self.assertEqual(sorted(self.stored()), sorted(want))
        self.assertEqual(srv.messages, [self.MESSAGES[1]])
        srv.cut_retr = None
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(self.stored()), sorted(self.MESSAGES))


class TestFolders(TargetCase):

    def test_folder_visible_to_dovecot(self):
        """folder = ".Lists.Entwürfe" delivers into a Maildir++ folder
        that Dovecot lists under that name (modified UTF-7 on disk)."""
        dc = self.lmtp_dovecot()
        msgs = mailgen.generate(3, seed=33, tag="folder")
        dc.deliver_many("alice", msgs)
        root = dc.maildir("bob")
        conf = self.config(self.account(dc, maildir=root,
                                        folder=".Lists.Entwürfe"))

        r = self.run_once(conf)

        self.assert_exit(r, 0)
        folder = os.path.join(root, ".Lists.Entw&APw-rfe")
        self.assertTrue(os.path.isfile(os.path.join(folder,
                                                    "maildirfolder")))
        self.assert_delivered_exactly(msgs, folder)
        # popfetchd ran as root here; in service it runs as the owner.
        dc.own_tree(root)
        listed = dc.doveadm("mailbox", "list", "-u", "bob")
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertIn("Lists.Entwürfe", listed.stdout.splitlines())
        status = dc.doveadm("mailbox", "status", "-u", "bob", "messages",
                            "Lists.Entwürfe")
        self.assertEqual(status.returncode, 0, status.stderr)
        self.assertIn("messages=3", status.stdout)

    def test_bad_folder_names_refused(self):
        """Names the Maildir++ rules cannot hold are configuration
        errors, with file:line."""
        dc = self.lmtp_dovecot()
        for bad in ("Lists", ".a..b", ".a/b", ".x\x01"):
            conf = self.config(self.account(dc, folder=bad))
            r = self.run_popfetchd("--check-config", "-c", conf)
            self.assert_exit(r, 78)
            self.assertRegex(r.stderr, r"popfetchd\.conf:\d+: .*folder")



if __name__ == "__main__":
    main()
