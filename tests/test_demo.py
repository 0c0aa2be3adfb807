#!/usr/bin/env python3
"""The demo as a new user sees it (tools/demo.py with the binary under
test): it fetches both mailboxes, its time counts the part before it
(--started), the configuration it leaves passes --check-config once the
server is gone and names only files inside its output folder, and it
ends with the next steps.

    python3 tests/test_demo.py --binary build/popfetchd
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

from harness import BINARY, WAIT, clean_env, main

SRCDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Demo(unittest.TestCase):

    def test_demo(self):
        root = tempfile.mkdtemp(prefix="popfetchd-demo-test-")
        self.addCleanup(shutil.rmtree, root, True)
        out = os.path.join(root, "out")
        began = time.time() - 30.0
        r = subprocess.run([sys.executable,
                            os.path.join(SRCDIR, "tools", "demo.py"),
                            "--binary", BINARY, "--out", out,
                            "--started", "%.3f" % began],
                           capture_output=True, text=True, timeout=WAIT,
                           env=clean_env(), stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for user, count in (("alice", 40), ("bob", 25)):
            self.assertEqual(len(os.listdir(os.path.join(
                out, "Maildir-" + user, "new"))), count)
            self.assertIn("%s: 0 messages left on the server" % user,
                          r.stdout)
        m = re.search(r"the demo took ([\d.]+) s \(packages and build "
                      r"([\d.]+) s", r.stdout)
        self.assertTrue(m, r.stdout)
        self.assertGreaterEqual(float(m.group(2)), 30.0)
        self.assertGreater(float(m.group(1)), float(m.group(2)))
        # What it leaves: every path the file names is in the folder, and
        # the file still checks out after the server is gone.
        conf = os.path.join(out, "popfetchd.conf")
        with open(conf) as f:
            paths = re.findall(r'"(/[^"]*)"', f.read())
        self.assertTrue(paths)
        for path in paths:
            self.assertTrue(path.startswith(out + "/"), path)
        chk = subprocess.run([BINARY, "-c", conf, "--check-config"],
                             capture_output=True, text=True, timeout=WAIT,
                             env=clean_env(), stdin=subprocess.DEVNULL)
        self.assertEqual(chk.returncode, 0, chk.stderr)
        tail = r.stdout[r.stdout.index("Next:"):]
        self.assertIn("conf/popfetchd.conf.example", tail)
        self.assertIn("Install as a service", tail)
        # Every option it names is one popfetchd knows.
        for opt in set(re.findall(r"popfetchd (--[a-z-]+)", tail)) | set(
                re.findall(r"\band (--[a-z-]+)", tail)):
            r2 = subprocess.run([BINARY, "--help"], capture_output=True,
                                text=True, timeout=WAIT)
            self.assertIn(opt, r2.stdout + r2.stderr)
        self.assertTrue(os.path.exists(os.path.join(
            SRCDIR, "conf", "popfetchd.conf.example")))


if __name__ == "__main__":
    main()
