#!/usr/bin/env python3
"""TLS session resumption: the CPU of a poll with and without it.

    python3 bench/tls_resume.py [--binary build/popfetchd] [--accounts 20]
                                [--rounds 10] [--runs 3] [--stls]
                                [--key rsa|ec]

A throwaway Dovecot (tests/dovecot.py) with its login process kept
(login_reuse, Dovecot's high-performance mode: with a process per
connection, its default, no ticket resumes) serves ACCOUNTS empty
mailboxes, over implicit TLS (or STLS), with a chain as public servers
have: its certificate and an intermediate, RSA 2048 (or P-256), under a
root the accounts trust. For each run and each mode
(tls_resume on, then off; the order alternates from run to run) a daemon
starts with poll_interval a week, and SIGUSR1 makes rounds of polls, one
poll per account each: round 0 (full handshakes in both modes, the
contexts loaded) is not measured, the ROUNDS after it are. Measured: the
CPU time of popfetchd (its threads' /proc/PID/task/*/schedstat, in
nanoseconds) and of Dovecot (user + system of its master, the children
it reaped and those alive, in clock ticks), per poll; and how
many of the measured polls resumed (the -v line's resumed=yes).

Prints the medians over RUNS of each mode, and their difference: the
handshake CPU resumption saves per poll on each side. A poll of an empty
mailbox is little but the handshake, the login and QUIT, so the
difference is the larger part of it.
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import harness  # noqa: E402
from dovecot import Dovecot  # noqa: E402

PASSWORD = "bench-pass-2"
WEEK = 604800
TICK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    """The fields of /proc/PID/stat after the command name, or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu(pid, children=False):
    """Seconds of CPU of PID (and of the children it reaped)."""
    f = stat_fields(pid)
    if f is None:
        return 0.0
    # utime, stime, cutime, cstime are fields 14-17; f[0] is field 3.
    ticks = int(f[11]) + int(f[12])
    if children:
        ticks += int(f[13]) + int(f[14])
    return ticks / TICK


def threads_cpu(pid):
    """Seconds of CPU of PID's threads alive, to the nanosecond
    (/proc/PID/task/*/schedstat); the clock ticks of /proc/PID/stat are
    10 ms, about a poll's worth. popfetchd's threads live as long as it."""
    total = 0
    try:
        tasks = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return cpu(pid)
    for t in tasks:
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, t)) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return cpu(pid)
    return total / 1e9


def tree_cpu(master):
    """Seconds of CPU of Dovecot: MASTER, its reaped children, and its
    children alive (every Dovecot service is a child of the master)."""
    total = cpu(master, children=True)
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == master:
            continue
        f = stat_fields(int(name))
        if f is not None and int(f[1]) == master:
            total += cpu(int(name))
    return total


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True)


def make_chain(folder, kind):
    """A root, an intermediate and a server certificate for 127.0.0.1,
    each with a KIND key ("rsa": 2048 bits, "ec": P-256), as a public
    server presents them. Returns (chain file: server then intermediate,
    server key, root)."""
    newkey = (["-newkey", "rsa:2048"] if kind == "rsa" else
              ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
    path = {n: os.path.join(folder, n) for n in (
        "root.pem", "root.key", "int.pem", "int.key", "int.csr", "srv.pem",
        "srv.key", "srv.csr", "chain.pem", "int.ext", "srv.ext")}
    with open(path["int.ext"], "w") as f:
        f.write("basicConstraints=critical,CA:TRUE,pathlen:0\n"
                "keyUsage=critical,keyCertSign,cRLSign\n")
    with open(path["srv.ext"], "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-x509", *newkey, "-nodes", "-keyout", path["root.key"],
            "-out", path["root.pem"], "-days", "3", "-subj", "/CN=Bench Root",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, issuer, cn in (("int", "root", "Bench Intermediate"),
                             ("srv", "int", "127.0.0.1")):
        openssl("req", "-new", *newkey, "-nodes", "-keyout",
                path[name + ".key"], "-out", path[name + ".csr"],
                "-subj", "/CN=" + cn)
        openssl("x509", "-req", "-in", path[name + ".csr"], "-CA",
                path[issuer + ".pem"], "-CAkey", path[issuer + ".key"],
                "-CAcreateserial", "-days", "3", "-out", path[name + ".pem"],
                "-extfile", path[name + ".ext"])
    with open(path["chain.pem"], "w") as out:
        for name in ("srv.pem", "int.pem"):
            with open(path[name]) as f:
                out.write(f.read())
    os.chmod(path["srv.key"], 0o600)
    for name in ("chain.pem", "root.pem"):
        os.chmod(path[name], 0o644)
    return path["chain.pem"], path["srv.key"], path["root.pem"]


def config(dc, folder, n, resume, stls):
    accounts = []
    for i in range(n):
        accounts.append({
            "name": "r%03d" % i, "host": "127.0.0.1",
            "port": dc.port if stls else dc.ssl_port,
            "tls": "starttls" if stls else "implicit",
            "ca_file": dc.ca_file, "user": "r%03d" % i,
            "password": PASSWORD,
            "maildir": os.path.join(folder, "Maildir-%03d" % i),
            "tls_resume": resume, "timeout": 60})
    return harness.write_config(
        os.path.join(folder, "popfetchd.conf"), accounts,
        poll_interval=WEEK, state_dir=os.path.join(folder, "state"))


def round_of_polls(d, n):
    """One poll of each of N accounts; returns the lines' mark."""
    mark = d.mark()
    d.signal(signal.SIGUSR1)
    d.wait_line(r"^account=r\d{3} listed=.* result=ok ", mark, count=n,
                timeout=600)
    return mark


def one_run(dc, n, rounds, resume, stls):
    """Per poll: (popfetchd CPU s, Dovecot CPU s, polls resumed)."""
    folder = tempfile.mkdtemp(prefix="bench-resume-")
    conf = config(dc, folder, n, resume, stls)
    d = harness.Daemon(conf, ["-v"])
    try:
        d.wait_line(r"^started accounts=%d " % n)
        round_of_polls(d, n)
        mine, theirs = threads_cpu(d.proc.pid), tree_cpu(dc.proc.pid)
        mark = d.mark()
        for _ in range(rounds):
            round_of_polls(d, n)
        mine = threads_cpu(d.proc.pid) - mine
        theirs = tree_cpu(dc.proc.pid) - theirs
        resumed = len(d.grep(r"^account=r\d{3} tls=.* resumed=yes$", mark))
    finally:
        d.stop()
        shutil.rmtree(folder, ignore_errors=True)
    polls = n * rounds
    return mine / polls, theirs / polls, resumed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--accounts", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--stls", action="store_true",
                    help="STLS on the plain port, not implicit TLS")
    ap.add_argument("--key", choices=("rsa", "ec"), default="rsa",
                    help="the server's chain: RSA 2048 (default) or P-256")
    # --binary PATH: taken by harness.py (its BINARY), as in the tests.
    args = ap.parse_args()
    results = {True: [], False: []}
    dc = Dovecot(login_reuse=True, prefix="dovecot-bench-resume-")
    # Read when it starts: a chain such as public servers present.
    dc.cert_file, dc.key_file, dc.ca_file = make_chain(dc.dir, args.key)
    with dc:
        for i in range(args.accounts):
            dc.add_user("r%03d" % i, PASSWORD)
        for run in range(args.runs):
            order = (True, False) if run % 2 == 0 else (False, True)
            for resume in order:
                r = one_run(dc, args.accounts, args.rounds, resume,
                            args.stls)
                results[resume].append(r)
                print("run %d tls_resume=%-5s popfetchd %.3f ms/poll, "
                      "dovecot %.3f ms/poll, resumed %d/%d"
                      % (run + 1, str(resume).lower(), r[0] * 1e3,
                         r[1] * 1e3, r[2], args.accounts * args.rounds),
                      flush=True)
    med = {k: (statistics.median(x[0] for x in v),
               statistics.median(x[1] for x in v)) for k, v in results.items()}
    print("\nmedians of %d runs, %d accounts x %d rounds, %s, %s chain:"
          % (args.runs, args.accounts, args.rounds,
             "STLS" if args.stls else "implicit TLS",
             "RSA 2048" if args.key == "rsa" else "P-256"))
    print("%-18s %12s %12s" % ("", "popfetchd", "dovecot"))
    for k, label in ((False, "tls_resume=false"), (True, "tls_resume=true")):
        print("%-18s %9.3f ms %9.3f ms" % (label, med[k][0] * 1e3,
                                            med[k][1] * 1e3))
    print("%-18s %9.3f ms %9.3f ms" % (
        "saved per poll", (med[False][0] - med[True][0]) * 1e3,
        (med[False][1] - med[True][1]) * 1e3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
