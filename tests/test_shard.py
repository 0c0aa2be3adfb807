"""Shards: one configuration file, N instances (--shard K/N), every
account polled by exactly one; changing N moves about 1/N of the
accounts, and their state moves with them (--export-state,
--import-state), so nothing is fetched twice.

Against the benchmark's load server (bench_loadsrv, beside the popfetchd
under test): 1,000 accounts that keep their mail on the server, so that
a second fetch of anything would show. Each instance has a state
directory of its own, as on machines of their own. Which instance owns
an account is computed here independently (the function is part of
every deployment: shard.h).

Run: python3 tests/test_shard.py --binary build/popfetchd
     (or set POPFETCHD). KEEP_TMP=1 leaves the temporary folders behind.
"""

import os
import re
import signal
import subprocess
import unittest

import loadgen
from harness import (BINARY, Case, clean_env, main, poll_until,
                     write_config)

LOADSRV = os.path.join(os.path.dirname(BINARY), "bench_loadsrv")
SRCDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 23
# The sanitizer build takes fewer (tests/meson.build): each moved
# account's state is exported and imported by a process of its own.
ACCOUNTS = int(os.environ.get("SHARD_ACCOUNTS", "1000"))
MASK = (1 << 64) - 1


def fnv1a64(name):
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def score(h, k):
    z = (h + (k + 1) * 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def owner(name, n):
    """The instance that polls NAME among N: the highest score, a tie to
    the lower number."""
    h = fnv1a64(name)
    return max(range(n), key=lambda k: (score(h, k), -k))


def polled(stderr):
    """The accounts a --once run polled: those with a summary line."""
    return set(re.findall(r"^account=(\S+) listed=", stderr, re.M))


class ShardCase(Case):

    def setUp(self):
        if not os.access(LOADSRV, os.X_OK):
            raise unittest.SkipTest("no bench_loadsrv beside %s" % BINARY)
        super().setUp()
        self.users = ["sh%04d" % i for i in range(ACCOUNTS)]
        self.mail = os.path.join(self.dir, "mail")
        os.makedirs(self.mail)

    def write_conf(self, srv, users):
        # No state_dir: each instance gets its own from STATE_DIRECTORY.
        return write_config(
            os.path.join(self.dir, "popfetchd.conf"),
            [{"name": u, "host": "127.0.0.1", "port": srv.tls_port,
              "tls": "implicit", "ca_file": srv.cert, "user": u,
              "password": "any", "keep": True, "received_header": False,
              "maildir": os.path.join(self.mail, u), "timeout": 30}
             for u in users], max_connections=64)

    def env(self, k):
        return clean_env({"STATE_DIRECTORY":
                          os.path.join(self.dir, "state%d" % k)})

    def instances(self, conf, n, state_of=lambda k: k):
        """--once --shard K/N for every K at once, each with the state
        directory STATE_OF(K): their outputs, in K order."""
        procs = [subprocess.Popen(
            [BINARY, "-c", conf, "--once", "--shard", "%d/%d" % (k, n)],
            env=self.env(state_of(k)), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            errors="replace") for k in range(n)]
        out = []
        for k, p in enumerate(procs):
            try:
                _, err = p.communicate(timeout=300)
            except subprocess.TimeoutExpired:
                for q in procs:
                    q.kill()
                self.fail("instance %d/%d did not finish" % (k, n))
            out.append((p.returncode, err))
        return out

    def run_cli(self, *args, k=0, stdin=None):
        return subprocess.run([BINARY] + list(args), env=self.env(k),
                              input=stdin, capture_output=True,
                              timeout=60)

    def assert_each_polled_once(self, outs, n):
        seen = set()
        for k, (rc, err) in enumerate(outs):
            self.assertEqual(rc, 0, "instance %d/%d exit %d:\n%s"
                             % (k, n, rc, err[-3000:]))
            got = polled(err)
            want = {u for u in self.users if owner(u, n) == k}
            self.assertEqual(got, want, "instance %d/%d polled other "
                             "accounts than its own" % (k, n))
            self.assertFalse(got & seen, "an account polled twice")
            seen |= got
        self.assertEqual(seen, set(self.users))

    def assert_mail(self, boxes):
        """Every Maildir holds its mailbox exactly once."""
        total = 0
        for u in self.users:
            want = [loadgen.lf(m) for _, m in boxes.box(u)]
            total += len(want)
            self.assert_delivered_exactly(want, os.path.join(self.mail, u))
        return total


class TestShards(ShardCase):

    def test_four_then_five_instances(self):
        boxes = loadgen.Mailboxes(SEED, (1, 2), (200, 900))
        srv = loadgen.LoadServer(
            LOADSRV, os.path.join(self.dir, "loadsrv.pem"),
            ["--seed", str(SEED), "--messages", "1-2",
             "--sizes", "200-900"])
        self.addCleanup(srv.stop)
        conf = self.write_conf(srv, self.users)

        # Four instances: each account polled by exactly one.
        outs = self.instances(conf, 4)
        self.assert_each_polled_once(outs, 4)
        total = self.assert_mail(boxes)
        for k in range(4):
            r = self.run_cli("-c", conf, "--shard", "%d/4" % k,
                             "--accounts", k=k)
            self.assertEqual(r.returncode, 0)
            self.assertEqual(
                r.stdout.decode().split(),
                [u for u in self.users if owner(u, 4) == k])

        # Five: only the accounts the new instance wins move, about 1/5.
        moved = [u for u in self.users if owner(u, 4) != owner(u, 5)]
        self.assertTrue(all(owner(u, 5) == 4 for u in moved))
        self.assertTrue(ACCOUNTS * 0.15 < len(moved) < ACCOUNTS * 0.25,
                        "%d of %d moved" % (len(moved), ACCOUNTS))
        for u in moved:
            old = owner(u, 4)
            out = self.run_cli("-c", conf, "--shard", "%d/4" % old,
                               "--export-state", u, k=old)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertTrue(out.stdout.startswith(b"popfetchd-state "))
            r = self.run_cli("-c", conf, "--shard", "4/5",
                             "--import-state", u, k=4, stdin=out.stdout)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(b"state imported", r.stderr)

        # An instance still on the old N does not poll what left it.
        r = self.run_popfetchd("-c", conf, "--once", "--shard", "0/4",
                               env={"STATE_DIRECTORY":
                                    os.path.join(self.dir, "state0")})
        left = {u for u in moved if owner(u, 4) == 0}
        self.assertTrue(left)
        for u in left:
            self.assertRegex(r.stderr, r"account=%s error=local state: "
                             r"state of account %s was exported"
                             % (u, u))
        self.assertNotRegex(r.stderr, r"fetched=[1-9]")
        self.assertEqual(r.returncode, 74)

        stats_before = srv.stats()
        outs = self.instances(conf, 5)
        self.assert_each_polled_once(outs, 5)
        for _, err in outs:
            self.assertNotRegex(err, r"fetched=[1-9]",
                                "a moved account fetched again")
        self.assertEqual(self.assert_mail(boxes), total)
        stats, _ = srv.stop()
        self.assertEqual(stats["retrieved"], total,
                         "a message was retrieved twice")
        self.assertEqual(stats["logins"] - stats_before["logins"],
                         ACCOUNTS, "not one login per account")


class TestShardCommandLine(Case):

    def conf(self, names):
        return write_config(
            os.path.join(self.dir, "popfetchd.conf"),
            [{"name": u, "host": "127.0.0.1", "port": 9, "user": u,
              "password": "x", "maildir": os.path.join(self.dir, u)}
             for u in names],
            state_dir=os.path.join(self.dir, "state"), poll_interval=3600,
            metrics_file=os.path.join(self.dir, "popfetchd.prom"))

    def test_account_of_another_shard_refused(self):
        names = ["a%d" % i for i in range(40)]
        conf = self.conf(names)
        other = next(u for u in names if owner(u, 3) != 1)
        r = self.run_popfetchd("-c", conf, "--shard", "1/3", "--once",
                               "-a", other)
        self.assertEqual(r.returncode, 78)
        self.assertIn("account %s is instance %d/3's"
                      % (other, owner(other, 3)), r.stderr)
        r = self.run_popfetchd("-c", conf, "--shard", "1/3",
                               "--export-state", other)
        self.assertEqual(r.returncode, 78)
        r = self.run_popfetchd("--status", "--shard", "1/3")
        self.assertEqual(r.returncode, 64)
        for bad in ("3/3", "1", "x/2", "0/0"):
            r = self.run_popfetchd("-c", conf, "--shard", bad, "--accounts")
            self.assertEqual(r.returncode, 64, bad)
            self.assertIn("--shard", r.stderr)
        r = self.run_popfetchd("-c", conf, "--shard", "1/3", "--check-config")
        want = sum(owner(u, 3) == 1 for u in names)
        self.assertIn("shard: 1/3, %d of the file's 40 accounts" % want,
                      r.stdout)

    def test_statefulset_example_picks_the_ordinal(self):
        # The example's command line, run as a pod named popfetchd-2 of
        # 4 would run it, lists that ordinal's accounts.
        with open(os.path.join(SRCDIR, "conf", "statefulset.yaml")) as f:
            m = re.search(r"^\s*- (exec popfetchd -c \S+ --shard .*)$",
                          f.read(), re.M)
        self.assertTrue(m, "no command line in the example")
        names = ["k%d" % i for i in range(50)]
        conf = self.conf(names)
        cmd = m.group(1).replace("popfetchd -c /etc/popfetchd/popfetchd.conf",
                                 "%s -c %s" % (BINARY, conf), 1)
        r = subprocess.run(["/bin/sh", "-c", cmd + " --accounts"],
                           env=clean_env({"HOSTNAME": "popfetchd-2",
                                          "REPLICAS": "4"}),
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(),
                         [u for u in names if owner(u, 4) == 2])

    def test_reload_keeps_to_the_shard(self):
        first = ["r%d" % i for i in range(30)]
        conf = self.conf(first)
        d = self.daemon(conf, ["--shard", "0/2"])
        want = sum(owner(u, 2) == 0 for u in first)
        d.wait_line(r"shard=0/2 accounts=%d of 30 " % want)
        d.wait_line(r"started accounts=%d " % want)
        # Its metrics in a file of its own, its own series labelled.
        own = os.path.join(self.dir, "popfetchd.shard-0-of-2.prom")
        # The metrics thread writes it; no log line follows to wait on.
        poll_until(lambda: os.path.exists(own), own, 30)
        with open(own) as f:
            text = f.read()
        self.assertIn('popfetchd_accounts{shard="0/2",state="', text)
        self.assertEqual(len(re.findall(r'^popfetchd_polls_total\{', text,
                                        re.M)), want)
        self.assertFalse(os.path.exists(
            os.path.join(self.dir, "popfetchd.prom")))
        more = first + ["r%d" % i for i in range(30, 70)]
        self.conf(more)
        mark = d.mark()
        d.signal(signal.SIGHUP)
        now = sum(owner(u, 2) == 0 for u in more)
        d.wait_line(r"reloaded file=\S+ accounts=%d added=%d removed=0"
                    % (now, now - want), since=mark)


if __name__ == "__main__":
    main()
