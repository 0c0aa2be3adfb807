"""The crash test: kill popfetchd at every crash point of a fetch, and at
random moments, then finish with a normal run and check that every
message is in the Maildir exactly once, byte for byte, with nothing left
in tmp/, and (in delete mode) nothing left on the server.

The same for the LMTP target, into a real Dovecot LMTP (tests/dovecot.py
lmtp=True): nothing lost at any crash point; a duplicate only where the
crash fell in the window deliver.h documents (the target took the
message, the state had not recorded it yet: crash point "hand-off
taken"), and none at all with the Sieve script that discards a second
copy by its X-Popfetchd-Id.

And for the MDA target, with tests/test_mda.py's script as the command:
nothing lost, nothing cut short (the command dies with popfetchd, before
it could take the end of its input for the message's end), a duplicate
only in the same window.

Needs a build with -Dtest_hooks=true: the K-th crash point the process
passes kills it when POPFETCHD_CRASH_AT=K is set.

Run: python3 tests/test_crash.py --binary build-test/popfetchd
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import re

from dovecot import Dovecot
from harness import BINARY, FakePopCase, clean_env, main
from test_mda import SCRIPT
from test_targets import DUPLICATE_SIEVE, untraced

NMESSAGES = 50
RANDOM_KILLS = int(os.environ.get("CRASH_RANDOM_KILLS", "100"))
# Every STRIDE-th crash point: the sanitizer build, several times slower,
# samples them; the plain build tries every one.
STRIDE = int(os.environ.get("CRASH_STRIDE", "1"))


def corpus():
    rnd = random.Random(1939)
    out = []
    for i in range(NMESSAGES):
        body = []
        for j in range(rnd.randint(1, 200)):
            line = "".join(rnd.choice("abcdefghij .") for _ in
                           range(rnd.randint(0, 120)))
            body.append(line)
        out.append(("From: s%d@example.org\nSubject: crash %d\n\n%s\n"
                    % (i, i, "\n".join(body))).encode())
    return out


MESSAGES = corpus()


class CrashTest(FakePopCase):
    MESSAGES = MESSAGES

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.kill_points = 0

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        print("\ncrash test: %d kills, 0 lost, 0 duplicated"
              % cls.kill_points, file=sys.stderr)

    def fresh(self, keep, pipelining):
        """A new server, Maildir and state for one scenario."""
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        srv = self.server(pipelining=pipelining)
        return srv, self.config(srv, name="crash", keep=keep)

    def run_pf(self, conf, crash_at=None):
        env = {} if crash_at is None else {"POPFETCHD_CRASH_AT":
                                           str(crash_at)}
        return self.run_once(conf, env=env, timeout=60)

    def check_exactly_once(self, srv, keep, what):
        got = self.delivered()
        lost = [m for m in MESSAGES if m not in got]
        dups = len(got) - len(set(got))
        self.assertEqual((len(lost), dups), (0, 0),
                         "%s: %d lost, %d duplicated" % (what, len(lost),
                                                          dups))
        self.assertEqual(sorted(got), sorted(MESSAGES), what)
        self.assertEqual(self.files("tmp"), [], what)
        self.assertEqual(srv.messages, MESSAGES if keep else [], what)

    def recover_and_check(self, srv, conf, keep, what):
        r = self.run_pf(conf)
        self.assertEqual(r.returncode, 0, "%s: %s" % (what, r.stderr))
        self.check_exactly_once(srv, keep, what)
        if keep:
            # A further poll delivers nothing again.
            r = self.run_pf(conf)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.check_exactly_once(srv, keep, what + ", again")

    def every_point(self, keep, pipelining):
        k = 1
        while True:
            srv, conf = self.fresh(keep, pipelining)
            try:
                r = self.run_pf(conf, crash_at=k)
                if r.returncode == -signal.SIGKILL:
                    type(self).kill_points += 1
                    self.recover_and_check(srv, conf, keep,
                                           "crash point %d" % k)
                else:
                    # Past the last crash point: the run completed.
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.check_exactly_once(srv, keep, "no crash")
                    break
            finally:
                srv.stop()
            k += STRIDE
        # Every message passes several points: the loop really ran.
        self.assertGreater(k, 3 * NMESSAGES)

    def test_every_point_delete_pipelined(self):
        self.every_point(keep=False, pipelining=True)

    def test_every_point_keep(self):
        self.every_point(keep=True, pipelining=False)

    def test_random_kills(self):
        rnd = random.Random(20261129)
        # How long a whole fetch takes here, to aim the kills inside it.
        srv, conf = self.fresh(False, True)
        t0 = time.monotonic()
        self.run_pf(conf)
        span = time.monotonic() - t0
        srv.stop()
        for i in range(RANDOM_KILLS):
            keep = i % 4 == 3
            srv, conf = self.fresh(keep, i % 2 == 0)
            try:
                p = subprocess.Popen([BINARY, "-c", conf, "--once"],
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL,
                                     env=clean_env())
                # Fault injection, not synchronisation: the moment of
                # the kill is the variable under test.
                time.sleep(rnd.uniform(0, span))
                p.send_signal(signal.SIGKILL)
                p.wait(30)
                type(self).kill_points += 1
                self.recover_and_check(srv, conf, keep, "random kill %d" % i)
            finally:
                srv.stop()


class TargetCrashCase(FakePopCase):
    """Kills at every crash point of a session that hands its messages to
    a target: a subclass makes the scenario (fresh()) and reads what the
    target stored (delivered())."""

    MESSAGES = MESSAGES
    LABEL = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.kill_points = cls.windows = 0

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        print("\n%s crash test: %d kills, 0 lost, duplicates only in "
              "the window (%d kills there)" % (cls.LABEL, cls.kill_points,
                                               cls.windows),
              file=sys.stderr)

    def run_pf(self, conf, crash_at=None):
        env = {} if crash_at is None else {"POPFETCHD_CRASH_AT":
                                           str(crash_at)}
        return self.run_once(conf, env=env, timeout=60)

    def check(self, srv, what, dups_allowed):
        got = self.delivered()
        expected = self.MESSAGES
        lost = [m for m in expected if m not in got]
        dups = len(got) - len(set(got))
        self.assertEqual(len(lost), 0, "%s: %d lost" % (what, len(lost)))
        if not dups_allowed:
            self.assertEqual(dups, 0, "%s: %d duplicated" % (what, dups))
        # The window is the batch since the last commit (one here: 50
        # messages): the copies are those handed off before the crash,
        # the first ones in the server's order, each twice at most.
        twice = sorted(m for m in set(got) if got.count(m) > 1)
        self.assertEqual(twice, sorted(expected[:dups]), what)
        self.assertEqual(len(got), len(expected) + len(twice), what)
        self.assertEqual(sorted(set(got)), sorted(expected), what)
        self.assertEqual(srv.messages, [], what)

    def every_point(self, sieve):
        k = 1
        while True:
            srv, conf = self.fresh(sieve)
            try:
                r = self.run_pf(conf, crash_at=k)
                if r.returncode != -signal.SIGKILL:
                    self.assertEqual(r.returncode, 0, r.stderr)
                    self.check(srv, "no crash", False)
                    break
                type(self).kill_points += 1
                point = re.search(r"testhook: crash point \d+: (.*)",
                                  r.stderr).group(1)
                window = point == "hand-off taken"
                type(self).windows += window
                again = self.run_pf(conf)
                what = "crash point %d (%s)" % (k, point)
                self.assertEqual(again.returncode, 0, "%s: %s"
                                 % (what, again.stderr))
                if window:
                    # Known at the next start, and said (for every
                    # intent of the batch: which were taken is unknown).
                    self.assertRegex(again.stderr, r"unsure=[1-9]", what)
                self.check(srv, what, window and not sieve)
            finally:
                srv.stop()
            k += STRIDE
        self.assertGreater(k, 2 * len(self.MESSAGES))


class LmtpCrashTest(TargetCrashCase):
    """FakePop as the POP3 server, Dovecot's LMTP as the target."""

    LABEL = "LMTP"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.dc = Dovecot(lmtp=True, keep_dir=bool(os.environ.get(
            "KEEP_TMP")))
        cls.dc.start()

    @classmethod
    def tearDownClass(cls):
        cls.dc.cleanup()
        super().tearDownClass()

    def fresh(self, sieve):
        """A new server, state and recipient mailbox for one scenario."""
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.user = "bob%d" % (self.kill_points + self.windows +
                               random.randrange(1 << 30))
        self.dc.add_user(self.user, "unused")
        if sieve:
            self.dc.set_sieve(self.user, DUPLICATE_SIEVE)
        srv = self.server(pipelining=True)
        conf = self.config(srv, name="crash", maildir=None, target="lmtp",
                           lmtp=self.dc.lmtp_socket, recipient=self.user)
        return srv, conf

    def delivered(self):
        return [untraced(m) for m in self.dc.mailbox_messages(self.user)]

    def test_every_point_lmtp(self):
        self.every_point(sieve=False)

    def test_every_point_lmtp_duplicate_sieve(self):
        self.every_point(sieve=True)


class MdaCrashTest(TargetCrashCase):
    """FakePop as the POP3 server, the test MDA script as the target."""

    LABEL = "MDA"
    # The command is a process per message (the script itself runs six):
    # 50 messages made this case two minutes of the suite. Twelve pass
    # through the same kinds of crash points, each of them several times.
    MESSAGES = MESSAGES[:12]

    def fresh(self, sieve):
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        script = os.path.join(self.dir, "mda.sh")
        with open(script, "w") as f:
            f.write(SCRIPT)
        os.chmod(script, 0o700)
        self.out = os.path.join(self.dir, "out")
        os.mkdir(self.out)
        srv = self.server(pipelining=True)
        conf = self.config(srv, name="crash", maildir=None, target="mda",
                           mda="%s ok %s" % (script, self.out))
        return srv, conf

    def delivered(self):
        out = []
        for name in sorted(os.listdir(self.out)):
            if re.fullmatch(r"msg\.\w+", name):
                with open(os.path.join(self.out, name), "rb") as f:
                    out.append(re.sub(
                        rb"\AX-Popfetchd-Id: <[0-9a-f]{32}@popfetchd>\n",
                        b"", f.read()))
        return out

    def test_every_point_mda(self):
        self.every_point(sieve=False)


if __name__ == "__main__":
    main()
