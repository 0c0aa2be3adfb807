"""Fault tests against the scripted POP3 server (tests/fakepop.py).

Each test sets up a fault a real server would not produce, runs
`popfetchd --once`, and checks what the client did and did not send, what
landed in the Maildir, and what is left on the server.

Run: python3 tests/test_faults.py --binary build/popfetchd
"""

import fcntl
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time

from fakepop import make_cert
from harness import (BINARY, FakePopCase, clean_env, has_test_hooks, main,
                     poll_until, write_config)

MESSAGES = [
    b"From: a@example.org\nSubject: one\n\nbody one\n.leading dot\n",
    b"From: b@example.org\nSubject: two\n\n" + b"x" * 70000 + b"\n",
    b"From: c@example.org\nSubject: three\n\n.\n..\nend\n",
]


# SESSION_BATCH: the messages that start a flush, and a batch's size
# while the disk keeps up. SESSION_BATCH_MAX: the most one flush takes,
# and where reading pauses while a flush runs.
BATCH = 64
BATCH_MAX = 512
# The messages taken in when reading pauses while the first batch's
# sync is held: that batch and a full next one.
HELD_AT = BATCH + BATCH_MAX


def numbered(n):
    """N small messages, each saying its number."""
    return [b"From: n@example.org\nSubject: %d\n\nbody %d\n" % (i, i)
            for i in range(n)]


class FaultTest(FakePopCase):
    MESSAGES = MESSAGES

    @staticmethod
    def fsize_limit(limit):
        """A preexec_fn making a full disk, as the process sees it: writes
        past LIMIT bytes fail with EFBIG."""
        def preexec():
            # SIGXFSZ ignored, as it is inherited across exec.
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        return preexec

    def run_once(self, conf, limit_fsize=None, **kw):
        """As Case.run_once; LIMIT_FSIZE: see fsize_limit()."""
        if limit_fsize is not None:
            kw["preexec_fn"] = self.fsize_limit(limit_fsize)
        return super().run_once(conf, **kw)

    def assert_no_credentials(self, srv):
        for c in srv.commands:
            self.assertNotIn("secret", c)
            self.assertFalse(c.upper().startswith(("USER", "PASS", "AUTH",
                                                   "APOP")), c)

    def assert_exactly_once(self):
        self.assert_delivered_exactly(MESSAGES)

    def held(self, conf, hold, **env):
        """popfetchd --once -d 1 on CONF, held at POPFETCHD_HOLD=HOLD
        with a named pipe that release_hold() writes to let each hold go;
        ENV adds variables. The daemon and the pipe."""
        self.needs_test_hooks()
        fifo = os.path.join(self.dir, "release")
        os.mkfifo(fifo)
        env = dict(env, POPFETCHD_HOLD=hold, POPFETCHD_HOLD_RELEASE=fifo)
        return self.daemon(conf, ("--once", "-d", "1"), env=env), fifo

    def held_first_batch(self, srv, conf, then=None, **env):
        """held() at "batch sync@fake" on SRV's account, returned once
        the first batch's sync is held, that batch being the first BATCH
        messages: the reply to the next waits until then. (A flush takes
        whole batches of what the writer has ended, and one of its jobs
        may end many replies at once.) THEN: SRV's hold_retr from then
        on."""
        go = threading.Event()
        srv.hold_retr = (BATCH + 1, go)
        d, fifo = self.held(conf, "batch sync@fake", **env)
        d.wait_line(r"testhook: hold: batch sync")
        srv.hold_retr = then
        go.set()
        return d, fifo

    @staticmethod
    def release_hold(fifo):
        """Lets the hold under way (POPFETCHD_HOLD_RELEASE=FIFO) return:
        called once its line is out, as it opens FIFO right after."""
        fd = os.open(fifo, os.O_WRONLY)  # waits for the hold's reader
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)

    # ---- STLS ----

    def test_stls_fetches(self):
        srv = self.server(tls="starttls")
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_exactly_once()
        verbs = srv.verbs()
        # Credentials only after STLS, capabilities asked again after it.
        self.assertLess(verbs.index("STLS"), verbs.index("AUTH"))
        self.assertEqual(verbs[:3], ["CAPA", "STLS", "CAPA"])
        self.assertEqual(srv.messages, [])

    def test_stls_injection_aborts(self):
        srv = self.server(tls="starttls")
        srv.inject_after_stls = b"+OK injected\r\n"
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("after +OK to STLS", r.stderr)
        self.assertIn("account=fake", r.stderr)
        self.assert_no_credentials(srv)
        self.assertEqual(self.delivered(), [])

    def test_stls_missing_refuses_before_credentials(self):
        srv = self.server(tls="starttls", capa_stls=False)
        r = self.run_once(self.config(srv))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("does not offer STLS", r.stderr)
        self.assert_no_credentials(srv)

    def test_stls_refused(self):
        srv = self.server(tls="starttls")
        srv.refuse_stls = True
        r = self.run_once(self.config(srv))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("refused STLS", r.stderr)
        self.assert_no_credentials(srv)

    def test_wrong_hostname_sends_nothing(self):
        cert, key = make_cert(self.dir, "wrong.example", ip=False)
        srv = self.server(tls="implicit", certfile=cert, keyfile=key)
        # Trusted, but issued for another name.
        conf = self.config(srv)
        with open(conf) as f:
            text = f.read().replace(self.cert, cert)
        with open(conf, "w") as f:
            f.write(text)
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("hostname mismatch: localhost vs wrong.example",
                      r.stderr)
        self.assertEqual(srv.commands, [])

    def test_untrusted_certificate_sends_nothing(self):
        cert, key = make_cert(self.dir, "localhost")
        srv = self.server(tls="implicit", certfile=cert, keyfile=key)
        # self.cert is another self-signed certificate: not this one's CA.
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("certificate verification failed", r.stderr)
        self.assertEqual(srv.commands, [])

    # ---- faults in the middle of a fetch ----

    def test_dropped_connection_then_resume_exactly_once(self):
        srv = self.server(tls="implicit")
        srv.drop_in_retr = (2, 30000)
        conf = self.config(srv)
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("connection closed", r.stderr)
        # Nothing was deleted: the session never reached QUIT.
        self.assertEqual(len(srv.messages), 3)
        self.assertEqual(self.files("tmp"), [])
        srv.drop_in_retr = None
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_exactly_once()
        self.assertEqual(srv.messages, [])

    def test_connection_closed_while_a_batch_is_made_durable(self):
        """The server closes right after the last message, while the
        batch is being made durable: the session ends once (network,
        75), what arrived is delivered and recorded, nothing is deleted;
        the next poll deletes without fetching again."""
        srv = self.server(tls="implicit", pipelining=True)
        srv.close_after_retr = 3
        conf = self.config(srv)
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("connection closed", r.stderr)
        self.assertEqual(srv.messages, MESSAGES)
        self.assert_exactly_once()
        srv.close_after_retr = None
        srv.commands.clear()
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("RETR", srv.verbs())
        self.assert_exactly_once()
        self.assertEqual(srv.messages, [])

    def hung_disks(self, names, hold, timeout, **settings):
        """--once over one scripted server per name, POPFETCHD_HOLD=HOLD:
        the servers by name, and the daemon once "fast" (the last name)
        was fetched, made durable and deleted; its Maildir checked."""
        self.needs_test_hooks()
        servers = {n: self.server(tls="implicit", pipelining=True)
                   for n in names}
        accts = [{"name": n, "host": "localhost", "port": srv.port,
                  "tls": "implicit", "ca_file": self.ca_file,
                  "user": self.USER, "password": self.PASSWORD,
                  "maildir": os.path.join(self.dir, n),
                  "received_header": False, "timeout": timeout}
                 for n, srv in servers.items()]
        conf = write_config(os.path.join(self.dir, "hung.conf"), accts,
                            state_dir=os.path.join(self.dir, "state"),
                            **settings)
        d = self.daemon(conf, ("--once",), env={"POPFETCHD_HOLD": hold})
        d.wait_line(r"testhook: hold: batch sync", count=len(names) - 1)
        d.wait_line(r"account=fast .*fetched=3 .*deleted=3 .*result=ok")
        self.assertEqual(servers["fast"].messages, [])
        self.assert_delivered_exactly(MESSAGES,
                                      os.path.join(self.dir, "fast"))
        return servers, d

    def test_a_hung_disk_holds_only_its_own_account(self):
        """One account's batch sync never returns: the loop goes on, and
        the other account's poll is fetched, made durable and deleted
        meanwhile; a stop then ends the process without the hung one."""
        servers, d = self.hung_disks(["slow", "fast"], "batch sync@slow", 2)
        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait_exit(), 75, d.text())
        self.assertEqual(servers["slow"].messages, MESSAGES)

    def test_a_hung_disk_gives_up_its_place_under_the_caps(self):
        """Both accounts on one host, one poll at a time there: the first
        account's batch sync never returns; once its connection timed out
        its poll gives up its place (without QUIT: nothing is deleted),
        and the other account is polled meanwhile."""
        servers, d = self.hung_disks(["slow", "fast"], "batch sync@slow", 2,
                                     max_per_host=1)
        text = d.text()
        self.assertLess(text.index("testhook: hold: batch sync"),
                        text.index("account=fast listed="), text)
        self.assertNotIn("QUIT", servers["slow"].verbs())
        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait_exit(), 75, d.text())
        self.assertEqual(servers["slow"].messages, MESSAGES)

    def test_hung_disks_of_many_accounts_hold_only_their_own(self):
        """More accounts than disk threads hang in their batch sync: the
        disk work of an account whose disk answers still gets a thread,
        and its poll is fetched, made durable and deleted."""
        names = ["slow%d" % i for i in range(6)] + ["fast"]
        # One host for all: its cap must not be what holds "fast" back.
        servers, d = self.hung_disks(names, "batch sync@slow*", 30,
                                     max_per_host=16)
        # Awaited, not looked for: the line goes through the log
        # writer's queue, and may come after the hook's own lines.
        d.wait_line(r"disk work waits while \d+ of \d+ "
                    r"threads are held by a slow or hung disk")
        # The second stops at once, without the grace period.
        d.signal(signal.SIGTERM)
        d.wait_line(r"stopping running=6")
        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait_exit(), 75, d.text())
        for n in names[:-1]:
            self.assertEqual(servers[n].messages, MESSAGES, n)

    def test_next_batch_arrives_while_a_batch_is_made_durable(self):
        """While one batch's sync is held (a slow disk), the next batch
        is asked for and written into tmp/ (the disk and the network
        overlap) up to BATCH_MAX messages, which the next flush takes at
        once; no DELE goes out for a message before its batch's sync
        has returned, and once released every message is delivered once
        and deleted. Without pipelining each RETR waits for the reply
        before it, so a RETR sent proves the replies before it were
        taken in."""
        self.needs_test_hooks()
        msgs = numbered(HELD_AT + 10)
        srv = self.server(msgs, tls="implicit")
        d, fifo = self.held_first_batch(srv, self.config(srv))

        def deles():
            return sorted(int(l.rsplit(" ", 1)[1])
                          for l in d.grep(r"account=fake > DELE \d+$"))

        for k, (last, durable) in enumerate(
                ((HELD_AT, 0), (len(msgs), BATCH),
                 (len(msgs), HELD_AT))):
            d.wait_line(r"testhook: hold: batch sync", count=k + 1)
            # The next batch is asked for while this one is held.
            d.wait_line(r"account=fake > RETR %d$" % last)
            if k == 0:
                # The replies before it reach tmp/ while the sync is
                # held, up to a full next batch: then reading pauses,
                # and the next flush takes those BATCH_MAX.
                self.wait_files("tmp", last - 1)
                d.wait_line(r"account=fake reading held: delivery behind")
            # Deleted: only what a returned sync made durable.
            if durable:
                d.wait_line(r"account=fake > DELE %d$" % durable)
            self.assertEqual(deles(), list(range(1, durable + 1)))
            self.assertEqual(len(d.grep(r"testhook: released")), k)
            self.release_hold(fifo)
        self.assertEqual(d.wait_exit(), 0, d.text()[-4000:])
        self.assertEqual(deles(), list(range(1, len(msgs) + 1)))
        self.assert_delivered_exactly(msgs)
        self.assertEqual(srv.messages, [])

    def test_quit_follows_the_last_deles_at_once(self):
        """With PIPELINING, QUIT goes right behind the DELEs, one round
        trip for both; the deletions still count only after QUIT's +OK.
        Without it, each command waits for its reply."""
        for pipelining in (True, False):
            with self.subTest(pipelining=pipelining):
                srv = self.server(tls="implicit", pipelining=pipelining)
                r = self.run_once(self.config(srv), debug=1)
                self.assertEqual(r.returncode, 0, r.stderr)
                trace = [l for l in r.stderr.splitlines()
                         if re.match(r"account=fake [<>] ", l)]
                last = max(i for i, l in enumerate(trace)
                           if " > DELE " in l)
                quit_at = trace.index("account=fake > QUIT")
                between = trace[last + 1:quit_at]
                if pipelining:
                    self.assertEqual(between, [], trace[last - 3:])
                else:
                    self.assertEqual(len(between), 1, between)
                    self.assertRegex(between[0], r" < \+OK")
                self.assertRegex(r.stderr, r"deleted=3 .*result=ok")
                self.assertEqual(srv.messages, [])
                shutil.rmtree(self.maildir, True)
                shutil.rmtree(os.path.join(self.dir, "state"), True)

    def test_login_waits_for_the_maildir_and_state(self):
        """The Maildir and state are opened while the connection, TLS and
        CAPA go on, and the login waits for them: with the opening held,
        the server sees no credentials; once it returns, the poll logs
        in and delivers."""
        self.needs_test_hooks()
        srv = self.server(tls="implicit")
        d, fifo = self.held(self.config(srv), "open@fake")
        d.wait_line(r"testhook: hold: open")
        d.wait_line(r"account=fake > CAPA$")
        d.wait_line(r"account=fake < \+OK")
        self.assertFalse(d.grep(r"account=fake > (USER|PASS|AUTH|APOP)"),
                         d.text())
        self.release_hold(fifo)
        self.assertEqual(d.wait_exit(), 0, d.text()[-4000:])
        self.assert_exactly_once()
        self.assertEqual(srv.messages, [])

    def test_no_login_when_the_state_is_locked(self):
        """Another process polls this mailbox (its state is locked): the
        poll ends busy without logging in, so a server's LOGIN-DELAY is
        not spent on it."""
        srv = self.server(tls="implicit")
        conf = self.config(srv)
        state = os.path.join(self.dir, "state")
        os.makedirs(state, exist_ok=True)
        fd = os.open(os.path.join(state, "fake.lock"),
                     os.O_RDWR | os.O_CREAT, 0o600)
        self.addCleanup(os.close, fd)
        fcntl.flock(fd, fcntl.LOCK_EX)
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("locked by another process", r.stderr)
        srv.sync()
        self.assertFalse({"USER", "PASS", "AUTH", "APOP"} & set(srv.verbs()),
                         srv.commands)
        self.assertEqual(srv.messages, MESSAGES)

    def test_a_large_message_closes_its_batch(self):
        """A batch closes at 16 MiB (SESSION_BATCH_BYTES) as well as at
        64 messages: the large first message is made durable on its own
        while the next arrives, so the disk time left at the end is the
        small one's."""
        self.needs_test_hooks()
        big = (b"From: big@example.org\nSubject: big\n\n"
               + (b"z" * 1023 + b"\n") * (17 * 1024))
        msgs = [big, b"From: s@example.org\nSubject: small\n\nbody\n"]
        srv = self.server(msgs, tls="implicit")
        d, fifo = self.held(self.config(srv), "batch sync@fake")
        d.wait_line(r"testhook: hold: batch sync")
        # The big one's sync is held; the small one comes meanwhile.
        d.wait_line(r"account=fake > RETR 2$")
        self.assertEqual(d.grep(r"account=fake > DELE"), [])
        self.release_hold(fifo)
        d.wait_line(r"testhook: hold: batch sync", count=2)
        # The hold's line is written at once, the log's lines by its
        # writer thread: the first DELE's may come after it.
        d.wait_line(r"account=fake > DELE 1$")
        self.assertEqual(len(d.grep(r"account=fake > DELE")), 1)
        self.release_hold(fifo)
        self.assertEqual(d.wait_exit(), 0, d.text()[-4000:])
        self.assert_delivered_exactly(msgs)
        self.assertEqual(srv.messages, [])

    def test_strike_while_a_batch_is_made_durable(self):
        """A message found cut short while the previous batch's sync is
        held: its strike waits until the state is the loop's again (the
        sync returned), and is then committed: the next poll counts the
        second."""
        self.needs_test_hooks()
        msgs = numbered(2 * BATCH + 10)
        msgs[99] += b"y" * 4000
        srv = self.server(msgs, tls="implicit")
        srv.cut_retr = (100, 10)
        # Message 100 arrives once the first batch's sync is held.
        go = threading.Event()
        srv.hold_retr = (100, go)
        conf = self.config(srv)
        d, fifo = self.held(conf, "batch sync@fake")
        d.wait_line(r"testhook: hold: batch sync")
        go.set()
        # Batch 2 is 65..129 without 100, which is taken as cut short.
        d.wait_line(r"account=fake message 100: .* taken as cut short")
        self.assertFalse(d.grep(r"strike="))
        # Three batches: 1..64, 65..129 without 100, 130..138 (however
        # many of the second came while the first was held: a flush
        # takes whole batches).
        for k in range(3):
            d.wait_line(r"testhook: hold: batch sync", count=k + 1)
            self.release_hold(fifo)
        self.assertEqual(d.wait_exit(), 75, d.text()[-4000:])
        first = d.grep(r"testhook: released")[0]
        lines = d.text().splitlines()
        strike = d.grep(r"message 100 \(uid uid-99\) failed: .*strike=1")
        self.assertEqual(len(strike), 1, d.text()[-4000:])
        self.assertLess(lines.index(first), lines.index(strike[0]))
        self.assertEqual(srv.messages, [msgs[99]])
        srv.cut_retr = (1, 10)  # the only one left
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertRegex(r.stderr, r"\(uid uid-99\) failed: .*strike=2")
        self.assertEqual(srv.messages, [msgs[99]])
        self.assertEqual(len(self.delivered()), len(msgs) - 1)

    def test_stop_while_the_metrics_file_does_not_answer(self):
        """The metrics file's write never returns (its disk is gone): a
        stop still ends the daemon, saying what it left behind."""
        self.needs_test_hooks()
        srv = self.server(tls="implicit")
        metrics = os.path.join(self.dir, "metrics.prom")
        conf = self.config(srv, settings={"metrics_file": metrics})
        d = self.daemon(conf, env={"POPFETCHD_HOLD": "metrics write"})
        d.wait_line(r"testhook: hold: metrics write")
        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait_exit(), 0, d.text())
        self.assertRegex(d.text(), r"metrics: the write of \S+metrics\.prom "
                         r"does not return; exiting without it")

    def test_exit_waits_for_a_slow_metrics_write(self):
        """A --once run whose metrics file's write is still under way at
        the end (a busy disk, not a gone one) waits for it, then writes
        the last counts: the file is there, with the poll."""
        srv = self.server(tls="implicit")
        metrics = os.path.join(self.dir, "metrics.prom")
        conf = self.config(srv, settings={"metrics_file": metrics})
        d, fifo = self.held(conf, "metrics write")
        # The first write, at the start, is held through the poll.
        d.wait_line(r"testhook: hold: metrics write")
        d.wait_line(r"metrics: waiting up to \d+ s for the write of "
                    r"\S+metrics\.prom$")
        self.release_hold(fifo)
        # The last counts, written at the exit.
        d.wait_line(r"testhook: hold: metrics write", count=2)
        self.release_hold(fifo)
        self.assertEqual(d.wait_exit(), 0, d.text())
        self.assertEqual(d.grep(r"does not return"), [])
        with open(metrics) as f:
            text = f.read()
        self.assertRegex(text, r"(?m)^popfetchd_polls_total\{[^}]*\} 1$")
        self.assert_exactly_once()

    def test_bytes_counted_as_the_server_sent_them(self):
        """The summary's bytes= is the messages' size on the wire (CRLF,
        as LIST counts), not the file's: no Received: line, no CRs."""
        srv = self.server(tls="implicit")
        r = self.run_once(self.config(srv, received_header=True))
        self.assertEqual(r.returncode, 0, r.stderr)
        wire = sum(len(m.replace(b"\n", b"\r\n")) for m in MESSAGES)
        self.assertRegex(r.stderr, r"fetched=3 bytes=%d " % wire)

    def test_failing_password_command_is_not_backed_off(self):
        """A password command that fails is retried at the normal
        interval, and the log says so (busy is never backed off)."""
        srv = self.server(tls="implicit")
        conf = self.config(srv, password_command="exit 3",
                           settings={"poll_interval": 900})
        d = self.daemon(conf)
        line = d.wait_line(r"failing=busy next attempt")
        m = re.search(r"next attempt in (\d+) s, the normal interval", line)
        self.assertTrue(m, line)
        # The interval with its jitter, not a doubled back-off.
        self.assertLessEqual(int(m.group(1)), 900 * 1.25)
        self.assertGreaterEqual(int(m.group(1)), 900 * 0.75)
        self.assertEqual(d.grep(r"backing off"), [])
        self.assertNotIn("PASS", srv.verbs())

    def test_malformed_reply_is_protocol_error(self):
        srv = self.server(tls="implicit")
        srv.raw["LIST"] = b"+OK\r\nbanana\r\n.\r\n"
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("malformed LIST", r.stderr)
        self.assertEqual(len(srv.messages), 3)
        self.assertEqual(self.delivered(), [])

    def test_overlong_status_line(self):
        srv = self.server(tls="implicit")
        srv.raw["STAT"] = b"+OK " + b"9" * 100000 + b"\r\n"
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("too long", r.stderr)

    def test_auth_refused(self):
        srv = self.server(tls="implicit", password="other")
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 77, r.stderr)
        self.assertIn("authentication failed", r.stderr)
        self.assertEqual(len(srv.messages), 3)

    def test_disk_full_deletes_nothing_undelivered(self):
        srv = self.server(tls="implicit")
        conf = self.config(srv)
        # The first message fits, the 70 KB one does not.
        r = self.run_once(conf, limit_fsize=20000)
        self.assertEqual(r.returncode, 74, r.stderr)
        self.assertIn("error=local", r.stderr)
        self.assertEqual(self.files("tmp"), [])
        got = self.delivered()
        self.assertTrue(all(m in MESSAGES for m in got))
        # Whatever was not delivered is still on the server.
        for m in MESSAGES:
            if m not in got:
                self.assertIn(m, srv.messages)
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_exactly_once()
        self.assertEqual(srv.messages, [])

    def test_disk_full_after_deletions_undoes_them(self):
        """A write error after a batch was deleted: RSET before QUIT, so
        the poll deletes nothing; the next one deletes those messages
        without fetching them again."""
        small = [b"From: s@example.org\nSubject: s%d\n\nbody %d\n" % (i, i)
                 for i in range(2 * 64)]
        msgs = small + [MESSAGES[1]]
        # The big message's reply waits until the first batch (64,
        # SESSION_BATCH) is durable and its DELEs have gone out.
        srv = self.server(msgs, pipelining=True)
        go = threading.Event()
        srv.hold_retr = (len(msgs), go)
        conf = self.config(srv)
        d = self.daemon(conf, ("--once", "-d", "1"),
                        preexec_fn=self.fsize_limit(20000))
        d.wait_line(r"account=fake > DELE 64$")
        go.set()
        self.assertEqual(d.wait_exit(), 74, d.text()[-4000:])
        self.assertIn("deletions of this poll undone (RSET)", d.text())
        verbs = [c.split()[0].upper() for c in srv.commands]
        self.assertIn("DELE", verbs)
        self.assertEqual(verbs[-2:], ["RSET", "QUIT"])
        self.assertEqual(srv.messages, msgs, "nothing may be deleted")
        self.assertEqual(self.files("tmp"), [])
        got = self.delivered()
        self.assertEqual(sorted(got), sorted(small))
        self.assertRegex(d.text(), r"deleted=0 ")
        # With space: the delivered ones are deleted, not fetched again.
        first = len(srv.commands)
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        retr = [c for c in srv.commands[first:] if c.upper().startswith("RETR")]
        self.assertEqual(retr, ["RETR %d" % len(msgs)])
        self.assertEqual(sorted(self.delivered()), sorted(msgs))
        self.assertEqual(srv.messages, [])

    def needs_test_hooks(self):
        if not has_test_hooks():
            self.skipTest("needs a build with -Dtest_hooks=true")

    def fresh_local(self):
        shutil.rmtree(self.maildir, ignore_errors=True)
        shutil.rmtree(os.path.join(self.dir, "state"), ignore_errors=True)

    def test_batch_that_cannot_be_made_durable_ends_the_poll(self):
        """A flush that fails at any step (tmp/ sync, state commit, link
        into new/, fsync of new/) ends the poll as a local failure at
        once, deletes nothing, and the next poll delivers exactly once."""
        self.needs_test_hooks()
        for point in ("sync of tmp/", "state commit", "link into new/",
                      "fsync of new/"):
            with self.subTest(point=point):
                self.fresh_local()
                srv = self.server(tls="implicit", pipelining=True)
                conf = self.config(srv)
                r = self.run_once(conf, fail=point)
                self.assertEqual(r.returncode, 74, r.stderr[-2000:])
                self.assertIn("error=local", r.stderr)
                # Tried once, not again and again.
                self.assertEqual(r.stderr.count("fail point: " + point), 1,
                                 r.stderr[-2000:])
                self.assertNotIn("DELE", srv.verbs())
                self.assertEqual(srv.verbs()[-1], "QUIT")
                self.assertEqual(srv.messages, MESSAGES)
                r = self.run_once(conf)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assert_exactly_once()
                self.assertEqual(srv.messages, [])

    def test_stop_while_the_disk_does_not_answer(self):
        """A batch's sync that never returns (a dead disk): a stop still
        ends the process once the grace period is over, cut off from the
        server without QUIT, nothing deleted; the next run delivers
        exactly once."""
        self.needs_test_hooks()
        srv = self.server(tls="implicit", pipelining=True)
        conf = self.config(srv, timeout=2)
        d = self.daemon(conf, ("--once",),
                        env={"POPFETCHD_HOLD": "batch sync"})
        d.wait_line(r"testhook: hold: batch sync")
        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait_exit(), 75, d.text())
        self.assertRegex(d.text(), r"poll abandoned at shutdown")
        self.assertRegex(d.text(), r"exiting while disk work of 1 poll\(s\) "
                         r"does not return")
        self.assertNotIn("DELE", srv.verbs())
        self.assertNotIn("QUIT", srv.verbs())
        self.assertEqual(srv.messages, MESSAGES)
        self.assertEqual(self.delivered(), [])
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_exactly_once()
        self.assertEqual(srv.messages, [])

    def test_stop_while_the_disk_does_not_answer_and_the_next_batch_fills(
            self):
        """As above, with the next batch taken in while the first one's
        sync does not return: the stop ends the process all the same,
        nothing is deleted, and the next run delivers each message
        exactly once."""
        self.needs_test_hooks()
        msgs = numbered(HELD_AT + 10)
        srv = self.server(msgs, tls="implicit")
        conf = self.config(srv, timeout=2)
        d = self.daemon(conf, ("--once", "-d", "1"),
                        env={"POPFETCHD_HOLD": "batch sync"})
        d.wait_line(r"testhook: hold: batch sync")
        d.wait_line(r"account=fake > RETR %d$" % HELD_AT)
        d.signal(signal.SIGTERM)
        self.assertEqual(d.wait_exit(), 75, d.text()[-4000:])
        self.assertRegex(d.text(), r"poll abandoned at shutdown")
        self.assertNotIn("DELE", srv.verbs())
        self.assertNotIn("QUIT", srv.verbs())
        self.assertEqual(srv.messages, msgs)
        self.assertEqual(self.delivered(), [])
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_delivered_exactly(msgs)
        self.assertEqual(srv.messages, [])

    def test_flush_fails_while_the_next_batch_fills(self):
        """The second batch's state commit fails while the third batch is
        being taken in: a local failure as with one batch (exit 74, the
        deletions of the first batch undone by RSET, QUIT), the third
        batch dropped, not made durable; the next run deletes the first
        two batches without fetching them again and delivers the third,
        each message exactly once."""
        self.needs_test_hooks()
        batch = BATCH
        msgs = numbered(2 * batch + 10)
        srv = self.server(msgs, tls="implicit")
        conf = self.config(srv)
        d, fifo = self.held_first_batch(srv, conf,
                                        POPFETCHD_FAIL="state commit@2")
        self.release_hold(fifo)
        d.wait_line(r"testhook: hold: batch sync", count=2)
        d.wait_line(r"account=fake > RETR %d$" % len(msgs))
        # The first batch's DELEs go out while the second is held.
        d.wait_line(r"account=fake > DELE %d$" % batch)
        self.release_hold(fifo)
        self.assertEqual(d.wait_exit(), 74, d.text()[-4000:])
        self.assertEqual(len(d.grep(r"fail point: state commit")), 1)
        self.assertEqual(len(d.grep(r"account=fake > DELE")), batch)
        self.assertEqual(srv.verbs()[-2:], ["RSET", "QUIT"])
        self.assertEqual(srv.messages, msgs)
        # Left for recovery: the second batch (its intents); the third
        # is gone.
        self.assertEqual(len(self.files("tmp")), batch)
        srv.commands.clear()
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        # The second batch's intents, kept in memory by the failed
        # commit, went out with the poll's last commit (deliver.h):
        # recovery published it. Only the third is fetched again.
        self.assertIn("recovered=%d" % batch, r.stderr)
        self.assertEqual(srv.verbs().count("RETR"), len(msgs) - 2 * batch)
        self.assert_delivered_exactly(msgs)
        self.assertEqual(srv.messages, [])

    def test_held_is_the_time_reading_waited_for_the_disk(self):
        """While a batch's sync does not return and the next batch is
        full, what the server sends is left unread. The summary line's
        held= counts that time: at least as long as the test kept the
        sync waiting after the reading stopped, at most the poll's
        secs=. The metrics file written at the end says the same."""
        self.needs_test_hooks()
        msgs = numbered(HELD_AT + 10)
        srv = self.server(msgs, tls="implicit")
        metrics = os.path.join(self.dir, "popfetchd.prom")
        conf = self.config(srv, settings={"metrics_file": metrics})
        d, fifo = self.held_first_batch(srv, conf)
        d.wait_line(r"account=fake reading held: delivery behind")
        start = time.monotonic()
        # The time measured, not a wait for an event: the sync stays
        # held for a while longer with the reading stopped.
        time.sleep(0.5)
        waited = time.monotonic() - start
        self.release_hold(fifo)
        d.wait_line(r"account=fake reading resumed")
        # The second batch's sync and the last one's, each let go.
        for k in (2, 3):
            d.wait_line(r"testhook: hold: batch sync", count=k)
            self.release_hold(fifo)
        self.assertEqual(d.wait_exit(), 0, d.text()[-4000:])
        summary = re.compile(r"account=fake listed=.* secs=([0-9.]+) "
                             r"held=([0-9.]+) result=ok")
        lines = d.grep(summary.pattern)
        self.assertEqual(len(lines), 1, d.text()[-4000:])
        m = summary.search(lines[0])
        secs, held = float(m.group(1)), float(m.group(2))
        # Both printed to 10 ms.
        self.assertGreaterEqual(held + 0.005, waited)
        self.assertLessEqual(held, secs + 0.01)
        with open(metrics) as f:
            m = re.search(r'(?m)^popfetchd_last_poll_held_seconds'
                          r'\{account="fake"\} ([0-9.e+-]+)$', f.read())
        self.assertIsNotNone(m, "no held metric")
        self.assertAlmostEqual(float(m.group(1)), held, delta=0.006)
        self.assert_delivered_exactly(msgs)
        self.assertEqual(srv.messages, [])

    def test_held_reading_leaves_the_socket_unread(self):
        """While a batch's sync does not return and the next batch is
        full, popfetchd does not read its socket at all: what the server
        sends meanwhile stays in the kernel's receive queue. (Reading on
        into its own buffer would wake the loop for every TLS record, to
        no avail.) Seen with ss: the bytes the connection received minus
        those still queued are what popfetchd has read."""
        self.needs_test_hooks()
        if shutil.which("ss") is None:
            self.skipTest("ss (iproute2) is not installed")
        big = b"x" * 76 + b"\n"
        msgs = numbered(HELD_AT) + [
            b"Subject: big %d\n\n" % i + big * 100 for i in range(20)]
        srv = self.server(msgs, tls="implicit", pipelining=True)
        # The messages after the second batch (asked for already, in the
        # pipeline) are sent once reading is held, so that they arrive
        # while it is.
        go = threading.Event()
        d, fifo = self.held_first_batch(srv, self.config(srv),
                                        then=(HELD_AT + 1, go))
        d.wait_line(r"account=fake reading held: delivery behind")
        before = self.socket_counts(srv.port)
        self.assertIsNotNone(before, "ss sees no connection to the server")
        go.set()
        poll_until(lambda: self.socket_counts(srv.port)[0] >=
                   before[0] + 16384,
                   "arrival of the messages sent after the hold", 30)
        after = self.socket_counts(srv.port)
        self.assertEqual(after[0] - after[1], before[0] - before[1],
                         "read while held: before %s, after %s"
                         % (before, after))
        for k in range(1, 4):
            d.wait_line(r"testhook: hold: batch sync", count=k)
            self.release_hold(fifo)
        self.assertEqual(d.wait_exit(), 0, d.text()[-4000:])
        self.assert_delivered_exactly(msgs)
        self.assertEqual(srv.messages, [])

    @staticmethod
    def socket_counts(port):
        """(bytes received, bytes still queued) of the one connection to
        PORT, as ss sees it; None if there is none."""
        out = subprocess.run(
            ["ss", "-tniH", "state", "established", "dport = :%d" % port],
            capture_output=True, text=True, check=True).stdout
        m = re.search(r"^\s*(\d+)\s+\d+\s.*\n.*\bbytes_received:(\d+)",
                      out, re.M)
        return (int(m.group(2)), int(m.group(1))) if m else None

    def test_local_failure_outranks_earlier_server_trouble(self):
        """A poll that first meets a server fault (an incomplete listing,
        temporary) and then a disk that cannot make mail durable reports
        the disk: exit 74, the more serious, not 75."""
        self.needs_test_hooks()
        srv = self.server(tls="implicit")
        srv.raw["UIDL"] = b"+OK\r\n1 uid-0\r\n3 uid-2\r\n.\r\n"
        r = self.run_once(self.config(srv), fail="sync of tmp/")
        self.assertIn("incomplete listing", r.stderr)
        self.assertIn("error=local", r.stderr)
        self.assertEqual(r.returncode, 74, r.stderr[-2000:])
        self.assertNotIn("DELE", srv.verbs())

    def test_quarantine_after_three_failures(self):
        self.needs_test_hooks()
        t0 = 1_800_000_000
        srv = self.server(tls="implicit")
        srv.raw["RETR"] = b"-ERR [SYS/PERM] cannot read message\r\n"
        conf = self.config(srv)
        for i in range(3):
            r = self.run_once(conf, now=t0 + i)
            # Messages it meant to fetch were left: not a success.
            self.assertEqual(r.returncode, 75, r.stderr)
            self.assertIn("strike=%d" % (i + 1), r.stderr)
            self.assertRegex(r.stderr, r"failed=3 .*result=busy")
        # Quarantined: not even asked for any more, though it would work.
        del srv.raw["RETR"]
        srv.commands.clear()
        r = self.run_once(conf, now=t0 + 3600)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("quarantined=3", r.stderr)
        self.assertNotIn("RETR", srv.verbs())
        self.assertEqual(self.delivered(), [])
        # A day after the last strike: one more try, which succeeds.
        r = self.run_once(conf, now=t0 + 2 + 86400)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_exactly_once()
        self.assertEqual(srv.messages, [])

    def test_refused_retr_is_not_success(self):
        """Every RETR answered -ERR [SYS/TEMP]: nothing is deleted, and
        the run says it left what it meant to fetch (75)."""
        srv = self.server(tls="implicit", pipelining=True)
        srv.raw["RETR"] = b"-ERR [SYS/TEMP] try later\r\n"
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertRegex(r.stderr, r"fetched=0 .*failed=3 .*result=busy")
        self.assertIn("RETR 1 refused: [SYS/TEMP] try later", r.stderr)
        self.assertEqual(srv.messages, MESSAGES)
        self.assertEqual(self.delivered(), [])
        # A passing trouble of the server's is no mark against the
        # messages: however often it says so, none is quarantined.
        self.assertNotIn("strike=", r.stderr)
        for _ in range(3):
            r = self.run_once(self.config(srv))
        self.assertNotIn("quarantined", r.stderr)
        # Every poll asks for all three again.
        self.assertEqual(srv.verbs().count("RETR"), 3 * 4)

    def test_incomplete_uidl_forgets_nothing(self):
        """A UIDL listing that leaves out a message STAT counts: nothing
        is forgotten (the next poll does not deliver it again), the
        message is not acted on, and the poll is not a success."""
        srv = self.server(tls="implicit")
        conf = self.config(srv, keep=True)
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_exactly_once()
        srv.raw["UIDL"] = b"+OK\r\n1 uid-0\r\n3 uid-2\r\n.\r\n"
        r2 = self.run_once(conf)
        del srv.raw["UIDL"]
        srv.commands.clear()
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("RETR", srv.verbs())
        self.assert_exactly_once()
        self.assertEqual(len(srv.messages), 3)
        self.assertEqual(r2.returncode, 75, r2.stderr)
        self.assertIn("incomplete listing: STAT counts 3 messages, "
                      "UIDL listed 2, LIST 3", r2.stderr)

    def test_incomplete_uidl_delete_mode_deletes_only_known(self):
        """Delete mode: the message UIDL left out is neither fetched nor
        deleted; the next complete poll takes it, exactly once."""
        srv = self.server(tls="implicit")
        conf = self.config(srv)
        srv.raw["UIDL"] = b"+OK\r\n1 uid-0\r\n3 uid-2\r\n.\r\n"
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertEqual(srv.messages, [MESSAGES[1]])
        del srv.raw["UIDL"]
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_exactly_once()
        self.assertEqual(srv.messages, [])

    def test_huge_stat_count_costs_nothing(self):
        """STAT announcing a million messages, three listed: memory
        follows the three, not the million (peak RSS far below what one
        record per announced message would need)."""
        srv = self.server(tls="implicit")
        srv.raw["STAT"] = b"+OK 1000000 0\r\n"
        conf = self.config(srv)
        probe = ("import resource, subprocess, sys\n"
                 "r = subprocess.run(sys.argv[1:], capture_output=True)\n"
                 "sys.stdout.write('%d %d\\n' % (r.returncode, resource."
                 "getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
                 "sys.stderr.write(r.stderr.decode())\n")
        r = subprocess.run([sys.executable, "-c", probe, BINARY, "-c", conf,
                            "--once"], capture_output=True, text=True,
                           env=clean_env(), timeout=60)
        code, rss_kib = map(int, r.stdout.split())
        self.assertLess(rss_kib, 48 * 1024, r.stderr)
        # The three listed messages are delivered.
        self.assert_exactly_once()
        self.assertEqual(code, 75, r.stderr)
        self.assertIn("incomplete listing: STAT counts 1000000", r.stderr)

    def test_uid_reused_after_deletion_is_fetched(self):
        """A server may compute UIDs from content (RFC 1939 section 7):
        a new message carrying the UID of one deleted earlier is fetched,
        not deleted unread."""
        srv = self.server(tls="implicit")
        conf = self.config(srv)
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(srv.messages, [])
        again = b"From: a@example.org\nSubject: one, again\n\nsame uid\n"
        srv.messages.append(again)
        srv.uids.append("uid-0")
        srv.commands.clear()
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("RETR 1", srv.commands)
        self.assertEqual(sorted(self.delivered()), sorted(MESSAGES + [again]))
        self.assertEqual(srv.messages, [])

    def test_uid_reused_for_another_message_in_keep_mode(self):
        """Keep mode: the server lists a delivered UID for a message of
        quite another size (another client removed the first, the server
        gave its UID again): the new message is fetched, once."""
        srv = self.server(tls="implicit")
        conf = self.config(srv, keep=True)
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        other = (b"From: z@example.org\nSubject: another\n\n" +
                 b"y" * 9000 + b"\n")
        srv.messages[0] = other  # still "uid-0"
        srv.commands.clear()
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(srv.commands.count("RETR 1"), 1, srv.commands)
        self.assertIn("taken as a new message reusing the UID", r.stderr)
        self.assertEqual(sorted(self.delivered()),
                         sorted(MESSAGES + [other]))
        srv.commands.clear()
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("RETR", srv.verbs())

    def test_shared_uid_delete_mode_each_once(self):
        """Two messages with one UID (a server fault): each is delivered
        exactly once and deleted; the fault is logged once."""
        srv = self.server(tls="implicit", pipelining=True)
        srv.uids[2] = "uid-0"
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr.count("server fault: 2 messages share "
                                        "UIDs"), 1, r.stderr)
        self.assert_exactly_once()
        self.assertEqual(srv.messages, [])

    def test_shared_uid_keep_mode_once_never_by_age(self):
        """Keep mode: messages sharing a UID are fetched once, not again
        at the next poll, and never deleted by delete_after_days."""
        self.needs_test_hooks()
        t0 = 1_800_000_000
        srv = self.server(tls="implicit")
        srv.uids[2] = "uid-0"
        conf = self.config(srv, keep=True, delete_after_days=1)
        r = self.run_once(conf, now=t0)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_exactly_once()
        srv.commands.clear()
        r = self.run_once(conf, now=t0 + 10 * 86400)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("RETR", srv.verbs())
        # Only the message with a UID of its own was old enough to go.
        self.assertEqual(srv.commands.count("DELE 2"), 1, srv.commands)
        self.assertEqual(srv.messages, [MESSAGES[0], MESSAGES[2]])
        self.assert_exactly_once()

    def test_message_cut_short_is_not_delivered(self):
        """A RETR reply ending cleanly but far shorter than LIST said is
        taken as cut short: not recorded, not deleted, counted as not
        received (75); the next poll delivers it whole."""
        srv = self.server(tls="implicit")
        srv.cut_retr = (2, 1000)
        conf = self.config(srv)
        r = self.run_once(conf)
        self.assertRegex(r.stderr, r"message 2: \d+ bytes received where "
                         r"LIST said %d: taken as cut short" % len(MESSAGES[1]))
        self.assertNotIn("DELE 2", srv.commands)
        self.assertEqual(srv.messages, [MESSAGES[1]])
        self.assertEqual(sorted(self.delivered()),
                         sorted([MESSAGES[0], MESSAGES[2]]))
        self.assertEqual(r.returncode, 75, r.stderr)
        srv.cut_retr = None
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_exactly_once()
        self.assertEqual(srv.messages, [])

    def test_endless_retr_ends_the_session(self):
        """A reply far longer than LIST said is not that message: the
        session ends, nothing recorded or deleted."""
        msg = b"From: a@example.org\nSubject: s\n\nbody\n"
        srv = self.server([msg])
        srv.raw["RETR"] = b"+OK\r\n" + b"x" * 70 + b"\r\n" * 40000
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertRegex(r.stderr, r"RETR 1: over \d+ bytes where LIST said "
                         r"%d: not that message" % len(msg))
        self.assertEqual(self.delivered(), [])
        self.assertEqual(srv.messages, [msg])

    def test_bare_lf_dot_does_not_end_a_message(self):
        """A body with a bare LF before ".": on a CRLF connection only
        CRLF "." CRLF ends the reply, so the whole message is delivered
        (the dot after the bare LF is data, kept as it is)."""
        body = b"From: a@example.org\r\nSubject: lf\r\n\r\nline\n.\r\n" \
               b"more after the bare LF\r\n"
        srv = self.server([b"placeholder"])
        srv.raw["LIST"] = b"+OK\r\n1 %d\r\n.\r\n" % len(body)
        srv.raw["RETR"] = b"+OK\r\n" + body + b".\r\n"
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.delivered(), [body.replace(b"\r\n", b"\n")])
        self.assertIn("DELE 1", srv.commands)

    def test_protocol_error_right_after_a_message_drops_it(self):
        """Bytes that cannot follow a message's end, in the same read as
        its terminator, cast doubt on the terminator: the message is not
        recorded (the next poll fetches it) and nothing is deleted."""
        msg = b"From: a@example.org\nSubject: s\n\nbody\n"
        srv = self.server([msg])
        srv.raw["RETR"] = (b"+OK\r\n" + msg.replace(b"\n", b"\r\n") +
                           b".\r\nrest of the real message\r\n")
        conf = self.config(srv)
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("message 1: protocol error right after its end",
                      r.stderr)
        self.assertEqual(self.delivered(), [])
        del srv.raw["RETR"]
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.delivered(), [msg])
        self.assertEqual(srv.messages, [])

    def test_dribbling_server_cannot_hold_a_poll(self):
        """A server sending a byte now and then, for ever (the idle
        timeout never fires): the poll ends as a temporary failure, from
        the greeting on (the login deadline) or within a message (the
        minimum rate), and nothing is recorded or deleted."""
        for what in ("all", "retr"):
            with self.subTest(dribble=what):
                self.fresh_local()
                srv = self.server(tls="implicit")
                srv.dribble, srv.dribble_what = 0.2, what
                r = self.run_once(self.config(srv, timeout=2))
                self.assertEqual(r.returncode, 75, r.stderr)
                self.assertIn("too slow", r.stderr)
                self.assertEqual(srv.messages, MESSAGES)
                self.assertNotIn("DELE", srv.verbs())

    # ---- servers without UIDL ----

    def test_no_uidl_delete_mode(self):
        # Also with the listing pipelined: UIDL's -ERR is followed by the
        # LIST already sent, not by a second one.
        for pipelining in (False, True):
            with self.subTest(pipelining=pipelining):
                shutil.rmtree(self.maildir, ignore_errors=True)
                shutil.rmtree(os.path.join(self.dir, "state"),
                              ignore_errors=True)
                srv = self.server(tls="implicit", uidl=False,
                                  pipelining=pipelining)
                r = self.run_once(self.config(srv))
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assert_exactly_once()
                self.assertEqual(srv.messages, [])
                verbs = [c.split()[0].upper() for c in srv.commands]
                self.assertEqual(verbs.count("LIST"), 1, verbs)

    def test_no_uidl_keep_mode_refused(self):
        srv = self.server(tls="implicit", uidl=False)
        r = self.run_once(self.config(srv, keep=True))
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn("UIDL", r.stderr)
        self.assertEqual(self.delivered(), [])

    # ---- pipelining ----

    def test_pipelined_fetch(self):
        srv = self.server(tls="implicit", pipelining=True)
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assert_exactly_once()
        self.assertEqual(srv.messages, [])

    # ---- secrets ----

    def test_trace_masks_password(self):
        srv = self.server(tls="implicit", sasl="")
        r = self.run_once(self.config(srv), debug=2)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("> PASS ********", r.stderr)
        self.assertNotIn("secret", r.stderr)


if __name__ == "__main__":
    main()
