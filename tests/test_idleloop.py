#!/usr/bin/env python3
"""bench_idleloop, the benchmark's idle-loop reference (bench/idleloop.c):
it meters its loop as popfetchd does, and on SIGTERM logs the same line;
a stall made from outside (the process stopped for a while) is in it,
counted as blocked, not as the loop's own CPU or a wait for a CPU; it
refuses to run without POPFETCHD_LOOP_STATS=1.

    python3 tests/test_idleloop.py --binary build/popfetchd

bench_idleloop is looked for beside the binary (meson builds both).
"""
import os
import re
import signal
import subprocess
import time
import unittest

from harness import BINARY, main

IDLELOOP = os.path.join(os.path.dirname(BINARY), "bench_idleloop")
HAVE_IDLELOOP = os.access(IDLELOOP, os.X_OK)
WHY_NOT = "no bench_idleloop beside %s (build the whole tree)" % BINARY
TIMEOUT = 30
STOPPED = 0.2  # s the loop is held by SIGSTOP


def state(pid):
    """The process's state letter, from /proc."""
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@unittest.skipUnless(HAVE_IDLELOOP, WHY_NOT)
class TestIdleLoop(unittest.TestCase):
    def start(self, env):
        return subprocess.Popen([IDLELOOP], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True,
                                env=env)

    def wait_asleep(self, p):
        """Until P sleeps in its loop (the meter's timer armed)."""
        deadline = time.monotonic() + TIMEOUT
        while state(p.pid) != "S":
            self.assertLess(time.monotonic(), deadline, "never asleep")
            time.sleep(0.01)

    def test_stall_made_from_outside(self):
        p = self.start(dict(os.environ, POPFETCHD_LOOP_STATS="1"))
        try:
            self.wait_asleep(p)
            os.kill(p.pid, signal.SIGSTOP)
            time.sleep(STOPPED)  # the stall itself, not a wait
            os.kill(p.pid, signal.SIGCONT)
            p.send_signal(signal.SIGTERM)
            out, _ = p.communicate(timeout=TIMEOUT)
        finally:
            p.kill()
            p.wait()
        self.assertEqual(p.returncode, 0, out)
        m = re.search(r"^loop ticks=(\d+) max_stall_ms=([0-9.]+) "
                      r"over_10ms=(\d+) .* over_10ms_total_ms=([0-9.]+) "
                      r"over_10ms_cpu_ms=([0-9.]+) "
                      r"over_10ms_runqueue_ms=([0-9.]+)$", out, re.M)
        self.assertIsNotNone(m, out)
        ticks, stall, over, total, cpu, runq = (float(g) for g in m.groups())
        self.assertGreater(ticks, 0)
        self.assertGreaterEqual(stall, STOPPED * 1000 * 0.9, out)
        self.assertGreaterEqual(over, 1)
        # Stopped is neither running nor runnable: blocked, in bench.py's
        # terms (the total less the loop's CPU and its run-queue wait).
        self.assertGreaterEqual(total - cpu - runq, STOPPED * 1000 * 0.9,
                                out)

    def test_needs_the_meter(self):
        env = dict(os.environ)
        env.pop("POPFETCHD_LOOP_STATS", None)
        p = self.start(env)
        out, _ = p.communicate(timeout=TIMEOUT)
        self.assertEqual(p.returncode, 1)
        self.assertIn("set POPFETCHD_LOOP_STATS=1", out)


if __name__ == "__main__":
    main()
