#!/usr/bin/env python3
"""The delivery targets side by side: the same messages (tests/mailgen.py,
mixed sizes) fetched by `popfetchd --once` from a throwaway Dovecot
(tests/dovecot.py) into a Maildir, into that Dovecot's LMTP, and through
dovecot-lda as an MDA command (one process per message). Prints the wall
time, the rate and the CPU time of popfetchd and its children (for the
MDA, that is mostly dovecot-lda) of each run.

Run: python3 bench/targets.py [--binary build/popfetchd] [--messages 1000]
     [--runs 2]
"""

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from dovecot import Dovecot  # noqa: E402
import mailgen  # noqa: E402

LDA = "/usr/lib/dovecot/dovecot-lda"
PASSWORD = "bench-pass-1"


def account(dc, target, folder):
    acct = {"name": "a", "host": "127.0.0.1", "port": dc.ssl_port,
            "tls": "implicit", "ca_file": dc.ca_file, "user": "alice",
            "password": PASSWORD, "received_header": False, "timeout": 60}
    if target == "maildir":
        acct["maildir"] = os.path.join(folder, "Maildir")
    elif target == "lmtp":
        acct.update(target="lmtp", lmtp=dc.lmtp_socket, recipient="bob")
    else:
        acct.update(target="mda", recipient="bob",
                    mda="%s -c %s -d %%r" % (LDA, dc.conf_path))
    return acct


def run(binary, msgs, target):
    """One run into TARGET: (exit status, wall s, CPU s)."""
    dc = Dovecot(lmtp=True)
    dc.start()
    folder = tempfile.mkdtemp(prefix="popfetchd-targets-")
    try:
        dc.add_user("alice", PASSWORD)
        dc.add_user("bob", "unused-" + os.urandom(4).hex())
        dc.deliver_many("alice", msgs)
        # Imported here: the harness takes --binary off the command line.
        from harness import write_config
        conf = write_config(os.path.join(folder, "popfetchd.conf"),
                            [account(dc, target, folder)],
                            state_dir=os.path.join(folder, "state"))
        os.sync()  # the seeded mail's writeback is not popfetchd's cost
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.monotonic()
        p = subprocess.run([binary, "-c", conf, "--once"],
                           stdin=subprocess.DEVNULL, capture_output=True)
        wall = time.monotonic() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if p.returncode != 0:
            sys.stderr.write(p.stderr.decode(errors="replace")[-3000:])
        cpu = (after.ru_utime - before.ru_utime +
               after.ru_stime - before.ru_stime)
        return p.returncode, wall, cpu
    finally:
        shutil.rmtree(folder, True)
        dc.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "build",
                                                     "popfetchd"))
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    msgs = mailgen.generate(args.messages, seed=7, tag="targets")
    size = sum(len(m) for m in msgs) / 1e6
    targets = ["maildir", "lmtp"] + (["mda"] if os.access(LDA, os.X_OK)
                                     else [])
    status = 0
    for k in range(args.runs):
        for target in targets:
            rc, wall, cpu = run(args.binary, msgs, target)
            status = status or rc
            print("%-7s run %d: %d messages (%.1f MB) in %.2f s, %.0f a "
                  "second; CPU of popfetchd and its children %.2f s%s"
                  % (target, k + 1, len(msgs), size, wall, len(msgs) / wall,
                     cpu, "" if rc == 0 else "; EXIT %d" % rc), flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
