"""The crash test: kill popfetchd at every crash point of a fetch, and at
random moments, then finish with a normal run and check that every
message is in the Maildir exactly once, byte for byte, with nothing left
in tmp/, and (in delete mode) nothing left on the server.

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

from harness import BINARY, FakePopCase, clean_env, main

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


if __name__ == "__main__":
    main()
