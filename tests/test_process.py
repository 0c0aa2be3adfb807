"""The process as the system sees it: open-file limit, core dumps.

- The open-file limit is raised to what max_connections needs, up to the
  hard limit; when even that is too low, the cap is lowered, with one
  warning, and polls still work.
- The descriptor table is grown at start to what the caps need, so that
  no thread waits for the kernel to grow it later (in a process with
  threads each growth waits for an RCU grace period, 10 ms and more).
- A standard error that stops taking lines (a pipe nobody reads, as a
  stuck journald's socket) holds no poll: the lines that do not fit in
  the log's queue are dropped, and their count is written once standard
  error takes lines again.
- Core dumps are off (RLIMIT_CORE 0) and the process is not dumpable, so
  its memory (passwords) cannot end up in a core file nor be read through
  /proc by another process of the same user. Not dumpable shows in /proc:
  the files of /proc/PID belong to root then, not to the process's user.

Run: python3 tests/test_process.py --binary build/popfetchd
"""

import os
import re
import resource
import select
import signal
import subprocess
import time

import harness
from harness import (FakePopCase, clean_env, main, maildir_messages,
                     poll_until, write_config)

MESSAGES = [b"From: a@example.org\nSubject: one\n\nbody one\n"]

NOBODY = 65534


def limits(pid):
    """/proc/PID/limits as {name: (soft, hard)}."""
    out = {}
    with open("/proc/%d/limits" % pid) as f:
        next(f)
        for line in f:
            # Names have spaces; the soft, hard and unit columns do not.
            parts = line.split()
            if parts[-1] in ("bytes", "files", "processes", "signals",
                             "locks", "seconds", "us"):
                parts = parts[:-1]
            out[" ".join(parts[:-2])] = (parts[-2], parts[-1])
    return out


class ProcessTest(FakePopCase):
    MESSAGES = MESSAGES

    def maildir_of(self, i):
        return os.path.join(self.dir, "Maildir-%d" % i)

    def config(self, naccounts, max_connections=100000, owner=None,
               one_server=False):
        """NACCOUNTS accounts "aN", each on a server of its own (or all
        on one), without TLS; the folder and the file belong to OWNER, if
        given."""
        accounts = []
        srv = None
        for i in range(naccounts):
            if srv is None or not one_server:
                srv = self.server(tls=None)
            accounts.append({
                "name": "a%d" % i, "host": "127.0.0.1", "port": srv.port,
                "tls": "none", "allow_plaintext": True, "user": self.USER,
                "password": self.PASSWORD, "maildir": self.maildir_of(i),
                "received_header": False, "timeout": 20})
        path = write_config(os.path.join(self.dir, "popfetchd.conf"),
                            accounts,
                            state_dir=os.path.join(self.dir, "state"),
                            poll_interval=3600,
                            max_connections=max_connections)
        if owner is not None:
            for p in (self.dir, path):
                os.chown(p, owner, owner)
        return path

    def test_stderr_that_blocks_holds_no_poll(self):
        # -d 2 traces every command and reply line (not the messages'):
        # about 150 bytes a message, 600 KB in all, ten times what a pipe
        # holds and more than the log's queue.
        n = 4000
        messages = [b"Subject: %d\n\nbody\n" % i for i in range(n)]
        srv = self.server(messages=messages, tls=None)
        conf = write_config(
            os.path.join(self.dir, "popfetchd.conf"),
            [{"name": "a", "host": "127.0.0.1", "port": srv.port,
              "tls": "none", "allow_plaintext": True, "user": self.USER,
              "password": self.PASSWORD, "maildir": self.maildir,
              "received_header": False, "timeout": 20}],
            state_dir=os.path.join(self.dir, "state"), poll_interval=3600)
        rfd, wfd = os.pipe()
        proc = subprocess.Popen(
            [harness.BINARY, "-c", conf, "-d", "2"], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=wfd, env=clean_env())
        os.close(wfd)
        self.addCleanup(os.close, rfd)
        self.addCleanup(lambda: proc.poll() is None and proc.kill())
        # Nobody reads standard error meanwhile.
        poll_until(lambda: len(maildir_messages(self.maildir)) == n,
                   "every message delivered while standard error is full")
        poll_until(lambda: not srv.messages,
                   "every message deleted on the server")
        # Read again: the queue drains, then the count of what was dropped.
        os.set_blocking(rfd, False)
        text, deadline = b"", time.monotonic() + harness.WAIT
        pat = re.compile(rb"\n(\d+) log lines dropped: standard error did "
                         rb"not take them in time\n")
        while not pat.search(text) and time.monotonic() < deadline:
            select.select([rfd], [], [], deadline - time.monotonic())
            try:
                text += os.read(rfd, 1 << 16)
            except BlockingIOError:
                pass
        m = pat.search(text)
        self.assertIsNotNone(m, "no count of dropped lines in the last "
                             "lines:\n%s" % text[-2000:].decode())
        self.assertGreater(int(m.group(1)), 0)
        proc.send_signal(signal.SIGTERM)
        self.assertEqual(proc.wait(harness.WAIT), 0)

    @staticmethod
    def nofile(soft, hard):
        def preexec():
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        return preexec

    # ---- open files ----

    def test_cap_lowered_when_the_hard_limit_is_too_low(self):
        conf = self.config(4)
        r = self.run_once(conf, preexec_fn=self.nofile(64, 64))
        self.assertEqual(r.returncode, 0, r.stderr)
        warnings = [l for l in r.stderr.splitlines()
                    if "open-file limit" in l]
        self.assertEqual(len(warnings), 1, r.stderr)
        self.assertIn("limit=64", warnings[0])
        self.assertIn("max_connections=100000", warnings[0])
        self.assertIn("using max_connections=1", warnings[0])
        for i in range(4):
            self.assertEqual(len(self.delivered(self.maildir_of(i))), 1,
                             r.stderr)

    def daemon(self, conf, preexec_fn=None):
        """popfetchd in the foreground, once it has started."""
        d = super().daemon(conf, preexec_fn=preexec_fn)
        d.wait_line(r"started accounts=")
        return d

    def test_soft_limit_raised_to_what_the_caps_need(self):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if hard != resource.RLIM_INFINITY and hard < 4096:
            self.skipTest("hard open-file limit %d: too low to tell" % hard)
        d = self.daemon(self.config(3), self.nofile(64, 4096))
        self.assertIn("max_connections=100000",
                      d.wait_line(r"started accounts="))
        self.assertEqual([l for l in d.lines if "open-file limit" in l], [])
        soft, hard = limits(d.proc.pid)["Max open files"]
        self.assertEqual(hard, "4096")
        # Three accounts: three polls at once at most, whatever the cap.
        self.assertGreater(int(soft), 64)
        self.assertLess(int(soft), 4096)

    def test_descriptor_table_grown_at_start(self):
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        if (hard != resource.RLIM_INFINITY and hard < 4096 and
                os.geteuid() != 0):
            self.skipTest("hard open-file limit %d: too low to tell" % hard)
        # Sixty polls at once at most, 8 descriptors each, and 64 for the
        # rest: more than a process inherits (256 slots here), more than
        # the daemon uses until its polls start.
        d = self.daemon(self.config(60, one_server=True),
                        self.nofile(4096, 4096))
        with open("/proc/%d/status" % d.proc.pid) as f:
            size = int(re.search(r"^FDSize:\s*(\d+)", f.read(),
                                 re.M).group(1))
        self.assertGreaterEqual(size, 60 * 8 + 64)

    def test_daemon_runs_with_the_lowered_cap(self):
        d = self.daemon(self.config(3), self.nofile(64, 64))
        self.assertIn("max_connections=1 ",
                      d.wait_line(r"started accounts="))
        # First polls are spread over the interval: not waiting for that.
        d.signal(signal.SIGUSR1)
        for i in range(3):
            d.wait_line(r"account=a%d .*result=ok" % i)

    # ---- core dumps ----

    def test_no_core_file(self):
        def cores_allowed():
            hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
            resource.setrlimit(resource.RLIMIT_CORE, (hard, hard))
        d = self.daemon(self.config(1), cores_allowed)
        self.assertEqual(limits(d.proc.pid)["Max core file size"],
                         ("0", "0"))

    def test_not_dumpable(self):
        """Run as an unprivileged user: a dumpable process owns its /proc
        files, a process that is not dumpable does not (they are root's),
        and other processes of its user cannot read its environment."""
        if os.geteuid() != 0:
            self.skipTest("needs root, to run the daemon as another user")

        def as_nobody():
            os.setgid(NOBODY)
            os.setuid(NOBODY)
        d = self.daemon(self.config(1, owner=NOBODY), as_nobody)
        st = os.stat("/proc/%d" % d.proc.pid)
        self.assertEqual(st.st_uid, NOBODY)  # it runs as nobody
        self.assertEqual(os.stat("/proc/%d/environ" % d.proc.pid).st_uid, 0)
        probe = subprocess.run(
            ["/bin/cat", "/proc/%d/environ" % d.proc.pid],
            capture_output=True, preexec_fn=as_nobody)
        self.assertNotEqual(probe.returncode, 0)


if __name__ == "__main__":
    main()
