#!/usr/bin/env python3
"""popfetchd at scale: many accounts, a thousand TLS polls at once.

    python3 bench/scale.py [--accounts N] [--concurrency N] [--latency MS]
                           [--runs N] [--quick] [--keep] [--no-split]
                           [--dir DIR] [--binary PATH] [--loadsrv PATH]

Dovecot on two CPUs cannot serve a thousand sessions at once, so this
runs against bench_loadsrv (bench/loadsrv.c): one thread, made-up
mailboxes (1-3 messages of 1,000-6,000 octets per account, from a seed),
every reply held --latency ms (default 200), which keeps each poll open
long enough for --concurrency (default 1,000) of them to overlap. Each
run starts its own server and polls --accounts (default 10,000) accounts
with `popfetchd --once` over implicit TLS, the server's certificate as
the CA file, max_connections = max_per_host = --concurrency. The server
and this script run on the first CPU, popfetchd on the others (as in
bench.py's B6; --no-split: all on all CPUs).

Reported per run, and the median over --runs (default 3):
  - sessions: the most connections the server had open at once;
  - memory per session: popfetchd's peak anonymous RSS (RssAnon, sampled
    every 5 ms) minus its idle anonymous RSS, divided by the sessions.
    Idle is measured after the run: the same configuration, the same
    server (its boxes now empty), max_connections = 1, the median of the
    samples taken between IDLE_FROM and IDLE_UNTIL seconds after the
    start, when the configuration is loaded and one poll at a time runs.
    Target: at most 100 MiB for 1,000 sessions, that is 100 KiB each;
  - CPU per poll: popfetchd's user + sys time over the accounts (the
    server's beside it). Most of the system time can be ext4 creating
    the Maildirs and their files: for some 30 s after many files were
    deleted, its inode allocator skips the freed ones one by one (see
    bench.py), so each run's folders are removed only at the end;
  - handshakes per second: the TLS handshakes the server completed over
    the run's wall time, and the most in one second;
  - the longest loop stall (POPFETCHD_LOOP_STATS=1, see bench.py), and
    beside it that of an idle loop on the same CPUs (bench_idleloop).
    Target: at most 10 ms. popfetchd has one CPU here, which its loop
    shares with its disk threads, and this VM's kernel does not preempt
    a thread inside a system call (its preemption model is "none"). On
    an ext4 without a journal (this VM's root), a disk thread's mkdir of
    a new Maildir can spend 5 ms and more skipping recently freed inodes,
    and the loop then waits that long for the CPU (seen with perf: 9 ms
    behind three such mkdirs). --dir puts the Maildirs and the state on
    another file system, a journaled ext4 for instance (see bench.py);
  - mail: every Maildir must hold exactly its account's messages (made
    again here by tests/loadgen.py, compared by SHA-256 of the LF form),
    tmp/ and cur/ empty, popfetchd's exit status 0, and the server must
    have deleted every message and sent each once.

Targets print PASS or MISS and do not change the exit status; a run with
lost, altered or duplicated mail (or a failed poll) exits 1.
--quick: 1,000 accounts, 200 at once, one run.
"""

import argparse
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import bench  # bench/bench.py, beside this file
import loadgen  # tests/, on the path bench.py set

ROOT = bench.ROOT
SEED = 7
MESSAGES = (1, 3)
SIZES = (1000, 6000)
TIMEOUT = 120            # popfetchd's timeout per account, s
IDLE_FROM = 1.5          # s after the idle run's start
IDLE_UNTIL = 3.0
TARGET_PER_1000 = 100    # MiB of private memory for 1,000 sessions
TARGET_STALL = 10        # ms
MiB = bench.MiB


class Run:
    """One run's figures."""

    def __init__(self, accounts):
        self.accounts = accounts
        self.r = None          # bench.measure()'s dict
        self.stats = None      # the server's counters after the run
        self.server_cpu = None
        self.idle_anon = None  # MiB

    def sessions(self):
        return self.stats["peak"]

    def per_session_kib(self):
        return ((self.r["anon"] - self.idle_anon) * 1024
                / max(1, self.sessions()))

    def hs_per_s(self):
        return self.stats["handshakes"] / self.r["wall"]

    def cpu_per_poll_ms(self):
        return self.r["cpu"] * 1000 / self.accounts

    def server_per_poll_ms(self):
        return self.server_cpu * 1000 / self.accounts


def expected_digests(boxes, users):
    """USER -> SHA-256 digests of its messages as popfetchd writes them."""
    return {u: [hashlib.sha256(loadgen.lf(m)).digest()
                for _, m in boxes.box(u)] for u in users}


def verify(expect, mail, stats):
    """Problems with what the run delivered (MAIL: the Maildirs' folder)
    and what the server says it did (STATS)."""
    problems = []
    total = missing = extra = 0
    for user, digests in expect.items():
        got, p = bench.digest_maildir(os.path.join(mail, user))
        problems += p
        want = bench.collections.Counter(digests)
        missing += sum((want - got).values())
        extra += sum((got - want).values())
        total += len(digests)
    if len(problems) > bench.MAX_PROBLEMS:
        more = len(problems) - bench.MAX_PROBLEMS
        problems = problems[:bench.MAX_PROBLEMS] + ["... and %d more" % more]
    if missing or extra:
        problems.append("%d messages missing or altered, %d unexpected or "
                        "duplicated" % (missing, extra))
    if stats["deleted"] != total:
        problems.append("the server deleted %d of %d messages"
                        % (stats["deleted"], total))
    if stats["retrieved"] != total:
        problems.append("the server sent %d messages for %d"
                        % (stats["retrieved"], total))
    return problems


def idle_anon(binary, conf, workdir, cpus):
    """popfetchd's anonymous RSS in MiB with CONF loaded and one poll at
    a time (CONF says max_connections = 1): the median of the samples
    between IDLE_FROM and IDLE_UNTIL; then it is stopped."""
    env = dict(os.environ, POPFETCHD_LOOP_STATS="1")
    with open(os.path.join(workdir, "idle.log"), "wb") as log:
        proc = subprocess.Popen(
            [binary, "-c", conf, "--once"], stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, env=env,
            preexec_fn=(None if cpus is None else
                        lambda: os.sched_setaffinity(0, cpus)))
        start = time.monotonic()
        samples = []
        try:
            while time.monotonic() - start < IDLE_UNTIL:
                if proc.poll() is not None:
                    raise bench.BenchError("the idle run ended early (see "
                                           "%s/idle.log)" % workdir)
                if time.monotonic() - start >= IDLE_FROM:
                    samples.append(bench._anon_kb(proc.pid))
                time.sleep(bench.SAMPLE_EVERY)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return statistics.median(samples) / 1024.0


def one_run(args, tools, k, expect, cpus):
    """Run K: a server of its own, the polls, the checks, the idle run."""
    work = os.path.join(tools.scratch, "run%d" % (k + 1))
    mail = os.path.join(work, "mail")
    os.makedirs(mail)
    srv = loadgen.LoadServer(
        args.loadsrv, os.path.join(work, "loadsrv.pem"),
        ["--seed", str(SEED), "--messages", "%d-%d" % MESSAGES,
         "--sizes", "%d-%d" % SIZES, "--latency", str(args.latency),
         "--password", bench.PASSWORD],
        cpus=cpus and cpus[0])
    run = Run(len(expect))
    try:
        accounts = [(u, u, os.path.join(mail, u)) for u in expect]
        conf = os.path.join(work, "popfetchd.conf")
        bench.write_config(conf, os.path.join(work, "state"), srv.tls_port,
                           srv.cert, accounts, args.concurrency)
        os.sync()  # the scratch folder's writeback is not popfetchd's
        run.r = bench.measure(tools, [tools.binary, "-c", conf, "--once"],
                              work, "popfetchd", cpus and cpus[1], idle=True)
        run.stats = srv.stats()
        problems = verify(expect, mail, run.stats)
        if run.r["status"] != 0:
            problems.insert(0, "popfetchd exited with status %d"
                            % run.r["status"])
        if problems:
            raise bench.BenchError("run %d: %s (log: %s)" % (
                k + 1, "; ".join(problems), run.r["log"]))
        idle = os.path.join(work, "idle")
        accounts = [(u, u, os.path.join(idle, "mail", u)) for u in expect]
        os.makedirs(os.path.join(idle, "mail"))
        conf = os.path.join(idle, "popfetchd.conf")
        bench.write_config(conf, os.path.join(idle, "state"), srv.tls_port,
                           srv.cert, accounts, 1)
        run.idle_anon = idle_anon(tools.binary, conf, idle,
                                  cpus and cpus[1])
    finally:
        _, run.server_cpu = srv.stop()
    return run


def report_run(k, run):
    r, s = run.r, run.stats
    print("  run %d: wall %.2f s, popfetchd CPU %.2f s (user %.2f, sys "
          "%.2f), server CPU %.2f s; sessions at once %d; anon peak %.1f "
          "MiB, idle %.1f MiB: %.1f KiB per session; handshakes %d (%d "
          "resumed, %d failed), %.0f/s, peak %d/s; loop stall %s ms (its "
          "own CPU %s ms; an idle loop beside it %.1f ms); %d messages, "
          "%.1f MB verified"
          % (k + 1, r["wall"], r["cpu"], r["user"], r["sys"],
             run.server_cpu, run.sessions(), r["anon"], run.idle_anon,
             run.per_session_kib(), s["handshakes"], s["resumed"],
             s["failed"], run.hs_per_s(), s["peak_hs_per_s"],
             "%.1f" % r["stall"] if r["stall"] is not None else "?",
             "%.1f" % r["loop_cpu"] if r["loop_cpu"] is not None else "?",
             r["idle_stall"], s["retrieved"], s["bytes"] / 1e6), flush=True)


def median(runs, fn):
    return statistics.median(fn(r) for r in runs)


def report(args, runs, total, octets):
    print()
    print("popfetchd at scale: %d accounts, %d at once, %d ms per reply, "
          "median of %d run%s" % (args.accounts, args.concurrency,
                                  args.latency, len(runs),
                                  "" if len(runs) == 1 else "s"))
    per = median(runs, Run.per_session_kib)
    per1000 = per * 1000 / 1024
    stalls = [r.r["stall"] for r in runs]
    stall = statistics.median(stalls) if None not in stalls else None
    rows = [
        ("sessions at once (server's peak)",
         "%d" % median(runs, Run.sessions), ""),
        ("private memory per session",
         "%.1f KiB (%.1f MiB per 1,000)" % (per, per1000),
         "<= %d MiB per 1,000: %s" % (TARGET_PER_1000,
                                      bench.verdict(per1000 <=
                                                    TARGET_PER_1000))),
        ("  anon RSS peak / idle",
         "%.1f / %.1f MiB" % (median(runs, lambda r: r.r["anon"]),
                              median(runs, lambda r: r.idle_anon)), ""),
        ("popfetchd CPU per poll",
         "%.2f ms (user %.2f, sys %.2f; wall %.1f s)"
         % (median(runs, Run.cpu_per_poll_ms),
            median(runs, lambda r: r.r["user"] * 1000 / r.accounts),
            median(runs, lambda r: r.r["sys"] * 1000 / r.accounts),
            median(runs, lambda r: r.r["wall"])), ""),
        ("server CPU per poll", "%.2f ms"
         % median(runs, Run.server_per_poll_ms), ""),
        ("TLS handshakes per second",
         "%.0f over the run, peak %d in one second"
         % (median(runs, Run.hs_per_s),
            median(runs, lambda r: r.stats["peak_hs_per_s"])), ""),
        ("longest loop stall",
         "%.1f ms" % stall if stall is not None else "?",
         "<= %d ms: %s" % (TARGET_STALL, bench.verdict(
             stall is not None and stall <= TARGET_STALL))),
        ("  an idle loop beside it (bench.py)",
         "%.1f ms" % median(runs, lambda r: r.r["idle_stall"]), ""),
        ("peak RSS (shared libraries included)",
         "%.1f MiB" % median(runs, lambda r: r.r["rss"]), ""),
        ("mail verified", "%d messages, %.1f MB per run: exactly once"
         % (total, octets / 1e6), ""),
    ]
    for name, value, target in rows:
        print(("%-38s %-44s %s" % (name, value, target)).rstrip())
    print()


def parse_args():
    ap = argparse.ArgumentParser(
        description="popfetchd with many accounts and a thousand TLS polls "
                    "at once (see the file's docstring).")
    ap.add_argument("--accounts", type=int, default=None,
                    help="accounts polled (default 10000, 1000 with "
                         "--quick)")
    ap.add_argument("--concurrency", type=int, default=None,
                    help="max_connections and max_per_host (default "
                         "1000, 200 with --quick)")
    ap.add_argument("--latency", type=int, default=200,
                    help="ms the server holds each reply (default 200)")
    ap.add_argument("--runs", type=int, default=None,
                    help="runs; medians are shown (default 3, 1 with "
                         "--quick)")
    ap.add_argument("--quick", action="store_true",
                    help="1,000 accounts, 200 at once, one run")
    ap.add_argument("--keep", action="store_true",
                    help="keep the scratch folder")
    ap.add_argument("--dir", default=os.path.join(ROOT, "build"),
                    help="where the scratch folder goes: the Maildirs and "
                         "the state (default build/; see bench.py's --dir)")
    ap.add_argument("--no-split", dest="split", action="store_false",
                    help="server and popfetchd on all CPUs")
    ap.add_argument("--binary", default=os.path.join(ROOT, "build",
                                                     "popfetchd"))
    ap.add_argument("--floor", default=os.path.join(ROOT, "build",
                                                    "bench_floor"))
    ap.add_argument("--loadsrv", default=os.path.join(ROOT, "build",
                                                      "bench_loadsrv"))
    args = ap.parse_args()
    if args.accounts is None:
        args.accounts = 1000 if args.quick else 10000
    if args.concurrency is None:
        args.concurrency = 200 if args.quick else 1000
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if min(args.accounts, args.concurrency, args.runs) < 1 or \
            args.latency < 0:
        ap.error("--accounts, --concurrency and --runs must be at least 1")
    for path in (args.binary, args.floor, args.loadsrv):
        if not os.access(path, os.X_OK):
            ap.error("%s is not an executable (build with: bash "
                     "tools/build.sh build)" % path)
    return args


def split_cpus(split):
    """(server CPUs, popfetchd CPUs), or None to leave them all alike."""
    cpus = os.sched_getaffinity(0)
    if not split or len(cpus) < 2:
        return None
    first = {bench.busiest_irq_cpu(cpus)}
    return first, cpus - first


def main():
    args = parse_args()
    os.makedirs(args.dir, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="scale-",
                               dir=os.path.abspath(args.dir))
    binary = os.path.join(scratch, "popfetchd")
    shutil.copy2(args.binary, binary)
    tools = bench.Tools(binary, os.path.abspath(args.floor), None, scratch,
                        os.path.relpath(os.path.abspath(args.binary)))
    cpus = split_cpus(args.split)
    started = time.monotonic()
    runs, failed, others = [], False, {}
    try:
        for line in bench.context_lines(tools)[:2]:
            print(line)
        users = ["s%05d" % i for i in range(args.accounts)]
        t = time.monotonic()
        expect = expected_digests(
            loadgen.Mailboxes(SEED, MESSAGES, SIZES), users)
        total = sum(len(d) for d in expect.values())
        octets = None
        print("mailboxes: %d accounts, %d messages (seed %d, %d-%d each, "
              "%d-%d octets); made again here in %.1f s"
              % (len(users), total, SEED, MESSAGES[0], MESSAGES[1],
                 SIZES[0], SIZES[1], time.monotonic() - t))
        if cpus:
            os.sched_setaffinity(0, cpus[0])
            others = bench.move_others(cpus[0])
            print("CPUs: server, this script and the other processes on "
                  "%s, popfetchd on %s" % (sorted(cpus[0]), sorted(cpus[1])))
        print("scratch: %s" % scratch, flush=True)
        for k in range(args.runs):
            run = one_run(args, tools, k, expect, cpus)
            octets = run.stats["bytes"]
            report_run(k, run)
            runs.append(run)
    except bench.BenchError as e:
        print("FAILED: %s" % e, file=sys.stderr, flush=True)
        failed = True
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        failed = True
    finally:
        bench.restore_others(others)
        if args.keep or failed:
            print("kept %s" % scratch)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    if runs:
        report(args, runs, total, octets)
    print("total time %.0f s" % (time.monotonic() - started))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
