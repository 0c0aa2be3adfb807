#!/usr/bin/env python3
"""Polls against the other real servers: Courier's and Cyrus's pop3d.

    python3 bench/servers.py [--binary build/popfetchd] [--runs 7]
                             [BINARY ...]

Starts a throwaway Courier (tests/courier.py) and a throwaway Cyrus
(tests/cyrus.py) on 127.0.0.1, each with one mailbox of 40 messages
(1-25 KB), and times `popfetchd --once` from exec to exit: a first poll
into an empty Maildir (keep mode: it fetches the 40), then a second poll
that finds nothing new (STAT, UIDL, LIST, QUIT), on a fresh Maildir and
state for each run. With more than one binary, each run takes them in
turn, so they meet the same machine. Prints the medians over RUNS.

Unlike Dovecot, these servers send a reply in several small writes
without turning off Nagle's algorithm: a client that delays its ACKs
waits 40 ms for the rest of such a reply. A server that is missing is
said and skipped.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import courier  # noqa: E402
import cyrus  # noqa: E402
import harness  # noqa: E402

MESSAGES = [("From: a@example.org\nSubject: m%d\n\n%s" % (
    i, "line of text\n" * (20 + 30 * i))).encode() for i in range(40)]

# Each server: its label, how it is made, what says it cannot run here,
# the user, and whether users are added before it starts (Courier reads
# its user file at the start; Cyrus adds them through its running
# services).
SERVERS = [
    ("courier", courier.Courier, courier.Unavailable, "alice", True),
    ("cyrus", cyrus.Cyrus, cyrus.Unavailable, "bob", False),
]


def two_polls(binary, port, user, password):
    """Seconds of a first and a second --once poll of a fresh Maildir."""
    d = tempfile.mkdtemp(prefix="popfetchd-servers-")
    try:
        conf = harness.write_config(
            os.path.join(d, "popfetchd.conf"),
            [{"name": "bench", "host": "127.0.0.1", "port": port,
              "tls": "none", "allow_plaintext": True, "user": user,
              "password": password, "maildir": os.path.join(d, "md"),
              "keep": True, "received_header": False, "timeout": 20}],
            state_dir=os.path.join(d, "state"))
        out = []
        for _ in range(2):
            t = time.monotonic()
            r = subprocess.run([binary, "-c", conf, "--once"],
                               env=harness.clean_env(),
                               stdin=subprocess.DEVNULL,
                               capture_output=True, text=True)
            out.append(time.monotonic() - t)
            if r.returncode != 0:
                sys.exit("%s: exit %d\n%s" % (binary, r.returncode,
                                              r.stderr[-2000:]))
        return out
    finally:
        shutil.rmtree(d, ignore_errors=True)


def measure(label, port, user, password, binaries, runs):
    got = {b: [] for b in binaries}
    for _ in range(runs):
        for b in binaries:
            got[b].append(two_polls(b, port, user, password))
    for b in binaries:
        print("%-8s %-40s first poll %6.1f ms, second poll %6.1f ms"
              % (label, b,
                 1e3 * statistics.median(r[0] for r in got[b]),
                 1e3 * statistics.median(r[1] for r in got[b])))


def main():
    # tests/harness.py took --binary (or $POPFETCHD) when imported.
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("more", nargs="*", metavar="BINARY",
                    help="more binaries, for an A/B")
    args = ap.parse_args()
    binaries = [harness.BINARY] + [os.path.abspath(b) for b in args.more]
    print("%d runs; medians, from exec to exit" % args.runs)

    for label, make, unavailable, user, users_first in SERVERS:
        try:
            srv = make()
        except unavailable as e:
            print("%s: skipped: %s" % (label, e))
            continue
        try:
            if not users_first:
                srv.start()
            srv.add_user(user, "pw-" + user)
            for m in MESSAGES:
                srv.deliver(user, m)
            if users_first:
                srv.start()
            measure(label, srv.port, user, "pw-" + user, binaries,
                    args.runs)
        finally:
            srv.cleanup()


if __name__ == "__main__":
    main()
