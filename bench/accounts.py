#!/usr/bin/env python3
"""popfetchd with 100,000 accounts: start, memory, reload, loop stalls.

    python3 bench/accounts.py [--accounts N] [--runs N] [--hosts N]
                              [--real N] [--keep] [--binary PATH]

Writes a configuration of N accounts (default 100,000) spread over
--hosts server addresses (127.0.0.1 to 127.0.0.250) on a port that is
bound but never listens, so every connection is refused at once; they
poll once a week. The daemon's first poll of each (spread over its first
30 seconds) is refused, and then every account backs off for a week:
idle, with a record of one failure each. With --real N (default 4) as
many accounts more fetch from a throwaway Dovecot (tests/dovecot.py)
every 10 seconds meanwhile, to show real polls alongside (skipped
without Dovecot).

Each run (default 3, medians reported) measures:
  start     exec to the "started" line (file read, accounts scheduled),
            and to the end of the first polls (settled);
  RSS       VmRSS and RssAnon of the settled daemon (/proc/PID/status);
  cpu/poll  the CPU the daemon used while settling, per poll, and the
            share of its loop thread;
  reload    SIGHUP with the same file, and again with 10% of the
            accounts dropped, 10% added and 10% moved to another host:
            SIGHUP to the "reloaded" line, the longest stall of the event
            loop in between (POPFETCHD_LOOP_STATS=1, "loop window=reload"
            lines), and RSS after it.
Targets (issue 18): RSS <= 96 MiB at 100,000 idle accounts; a reload
without stalling the loop (ideal: the longest stall under 10 ms).

Timings on a loaded machine are noisy: the load average is printed.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import dovecot  # noqa: E402
import mailgen  # noqa: E402

TARGET_RSS = 96          # MiB
TARGET_STALL = 10        # ms, the ideal
WEEK = 7 * 86400
REAL_INTERVAL = 10       # seconds, the least poll_interval allowed
REAL_MESSAGES = 5
WAIT = 600               # seconds, the bound on any one wait
PASSWORD = "bench-secret"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


# --- the configuration --------------------------------------------------

def account_names(n, prefix="acct"):
    return ["%s%06d" % (prefix, i) for i in range(n)]


def write_config(path, state, port, names, hosts, moved=(), real=(),
                 dc=None, work=None):
    """NAMES on HOSTS addresses (the account's index picks one; those in
    MOVED take the next), refused at PORT; REAL accounts on Dovecot DC."""
    moved = set(moved)
    lines = [
        "# Written by bench/accounts.py",
        'state_dir = "%s";' % state,
        "poll_interval = %d;" % WEEK,
        "max_connections = 64;",
        "max_per_host = 4;",
        "timeout = 30;",
        "defaults = {",
        "  port = %d;" % port,
        '  tls = "implicit";',
        '  password = "%s";' % PASSWORD,
        '  target = "mda";',
        '  mda = "/bin/true";',
        "};",
        "accounts = (",
    ]
    items = []
    for name in real:
        items.append(
            '  { name = "%s"; host = "127.0.0.1"; port = %d; user = "%s";'
            ' ca_file = "%s"; target = "maildir"; maildir = "%s/mail/%s";'
            " poll_interval = %d; received_header = false; }"
            % (name, dc.ssl_port, name, dc.ca_file, work, name,
               REAL_INTERVAL))
    for name in names:
        i = int(name[-6:])
        h = (i + (1 if name in moved else 0)) % hosts
        items.append('  { name = "%s"; host = "127.0.0.%d"; '
                     'user = "%s@example.org"; }' % (name, 1 + h, name))
    lines.append(",\n".join(items))
    lines += [");", ""]
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines))
    os.rename(tmp, path)
    return os.path.getsize(path)


def refusing_port(hosts):
    """A port bound on 127.0.0.1 to 127.0.0.HOSTS and listened on by no
    one: connections to it are refused. (port, sockets to keep open)"""
    first = socket.socket()
    first.bind(("127.0.0.1", 0))
    port = first.getsockname()[1]
    socks = [first]
    for h in range(2, hosts + 1):
        s = socket.socket()
        try:
            s.bind(("127.0.0.%d" % h, port))
        except OSError:
            s.close()
            for t in socks:
                t.close()
            raise BenchError("cannot bind 127.0.0.%d:%d" % (h, port))
        socks.append(s)
    return port, socks


# --- the daemon from outside --------------------------------------------

class Log:
    """The daemon's stderr in a file, read as it grows: the lines since
    the last mark() are kept, in chunks of whole lines, each searched
    once (the log of 100,000 polls is long, and this runs beside the
    daemon)."""

    def __init__(self, path):
        self.path = path
        self.pos = 0     # bytes of the file taken
        self.chunks = []  # text since the mark, whole lines

    def _more(self):
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            data = f.read()
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            return None
        self.pos += cut
        self.chunks.append(data[:cut].decode("utf-8", "replace"))
        return self.chunks[-1]

    def mark(self):
        """Forgets the lines read so far; later waits see what follows."""
        while self._more() is not None:
            pass
        self.chunks = []

    def wait(self, pattern, count=1, proc=None, timeout=WAIT):
        """The COUNT-th line matching PATTERN since the mark (a re.Match
        on its chunk)."""
        pat = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        found, i = 0, 0
        while True:
            while i < len(self.chunks) or self._more() is not None:
                for m in pat.finditer(self.chunks[i]):
                    found += 1
                    if found == count:
                        return m
                i += 1
            if proc is not None and proc.poll() is not None:
                raise BenchError("popfetchd exited (%d) waiting for %r; "
                                 "log: %s" % (proc.returncode, pattern,
                                              self.path))
            if time.monotonic() > deadline:
                raise BenchError("no %r in %d s; log: %s"
                                 % (pattern, timeout, self.path))
            time.sleep(0.05)


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise BenchError("no %s in /proc/%d/status" % (key, pid))


def rss(pid):
    """(VmRSS, RssAnon) in MiB."""
    return status_kb(pid, "VmRSS") / 1024.0, status_kb(pid, "RssAnon") / 1024.0


def cpu(pid, tid=None):
    """User + system CPU seconds of process PID (or of its thread TID)."""
    path = ("/proc/%d/task/%d/stat" % (pid, tid) if tid is not None
            else "/proc/%d/stat" % pid)
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# Seconds to wait for the window line after the reloaded line.
WINDOW_WAIT = 10
WINDOW = (r"^loop window=reload ticks=\d+ max_stall_ms=([0-9.]+) "
          r"over_10ms=(\d+) max_cpu_ms=([0-9.]+)$")


def reload(proc, log, expect):
    """SIGHUP; (seconds to the reloaded line, stall ms, loop cpu ms), the
    last two None from a popfetchd that does not log windows."""
    log.mark()
    t = time.monotonic()
    proc.send_signal(signal.SIGHUP)
    log.wait(r"^reloaded file=\S+ %s$" % expect, proc=proc)
    secs = time.monotonic() - t
    try:
        w = log.wait(WINDOW, proc=proc, timeout=WINDOW_WAIT)
    except BenchError:
        return secs, None, None
    return secs, float(w.group(1)), float(w.group(3))


# --- one run ------------------------------------------------------------

def one_run(args, k, dc):
    work = tempfile.mkdtemp(prefix="popfetchd-accounts.")
    try:
        return measure(args, k, dc, work)
    finally:
        if args.keep:
            print("  kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def start_daemon(args, work, conf):
    env = dict(os.environ, RUNTIME_DIRECTORY=os.path.join(work, "run"),
               POPFETCHD_LOOP_STATS="1")
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(key, None)
    logpath = os.path.join(work, "popfetchd.log")
    err = open(logpath, "w")
    t0 = time.monotonic()
    proc = subprocess.Popen([args.binary, "-c", conf], env=env,
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=err)
    err.close()
    return proc, Log(logpath), t0


def measure(args, k, dc, work):
    n = args.accounts
    names = account_names(n)
    real = ["real%02d" % i for i in range(args.real if dc else 0)]
    state = os.path.join(work, "state")
    os.mkdir(state, 0o700)
    os.mkdir(os.path.join(work, "run"), 0o700)
    os.mkdir(os.path.join(work, "mail"), 0o700)
    conf = os.path.join(work, "popfetchd.conf")
    port, socks = refusing_port(args.hosts)
    r = {}
    try:
        r["file_mb"] = write_config(conf, state, port, names, args.hosts,
                                    real=real, dc=dc, work=work) / 1e6
        proc, log, t0 = start_daemon(args, work, conf)
        try:
            settle(args, r, proc, log, t0, n)
            reloads(args, r, proc, log, conf, state, port, names, real,
                    dc, work)
            check_real(r, real, work)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        for s in socks:
            s.close()
    try:
        m = log.wait(r"^loop ticks=\d+ max_stall_ms=([0-9.]+)", timeout=0)
        r["stall_all"] = float(m.group(1))
    except BenchError:
        r["stall_all"] = None
    print("  run %d: start %.2f s, settled %.1f s, RSS %.1f MiB (anon "
          "%.1f), cpu/poll %.0f us (loop %.0f us), reload %.2f s stall "
          "%s ms, changed reload %.2f s stall %s ms, RSS after %.1f, "
          "longest stall of the run %s ms"
          % (k, r["start"], r["settled"], r["rss"], r["anon"],
             r["cpu_poll"] * 1e6, r["loop_poll"] * 1e6, r["reload"],
             ms(r["reload_stall"]), r["reload2"], ms(r["reload2_stall"]),
             r["rss_reload2"], ms(r["stall_all"])), flush=True)
    return r


def settle(args, r, proc, log, t0, n):
    """Start and first polls: times, RSS, CPU per poll."""
    log.wait(r"^started accounts=%d " % (n + args.real_count), proc=proc)
    r["start"] = time.monotonic() - t0
    cpu0, loop0 = cpu(proc.pid), cpu(proc.pid, proc.pid)
    log.wait(r"result=network next=\d+$", count=n, proc=proc)
    # Not kept: the lines of 100,000 polls.
    log.mark()
    r["settled"] = time.monotonic() - t0
    r["cpu_poll"] = (cpu(proc.pid) - cpu0) / n
    r["loop_poll"] = (cpu(proc.pid, proc.pid) - loop0) / n
    time.sleep(2)
    r["rss"], r["anon"] = rss(proc.pid)
    # Idle: what the loop costs with nothing to do (the meter ticks).
    loop0 = cpu(proc.pid, proc.pid)
    time.sleep(args.idle)
    r["idle_loop_pct"] = (cpu(proc.pid, proc.pid) - loop0) / args.idle * 100


def reloads(args, r, proc, log, conf, state, port, names, real, dc, work):
    n = len(names)
    total = n + len(real)
    r["reload"], r["reload_stall"], r["reload_cpu"] = reload(
        proc, log, r"accounts=%d added=0 removed=0" % total)
    time.sleep(2)
    r["rss_reload"] = rss(proc.pid)[0]
    # 10% gone, 10% new, 10% on another host.
    tenth = max(1, n // 10)
    kept = [x for i, x in enumerate(names) if i % 10 != 0]
    added = account_names(tenth, "new")
    moved = [x for i, x in enumerate(names) if i % 10 == 1]
    write_config(conf, state, port, kept + added, args.hosts, moved=moved,
                 real=real, dc=dc, work=work)
    removed = n - len(kept)
    r["reload2"], r["reload2_stall"], r["reload2_cpu"] = reload(
        proc, log, r"accounts=%d added=%d removed=%d"
        % (len(kept) + len(added) + len(real), len(added), removed))
    time.sleep(2)
    r["rss_reload2"] = rss(proc.pid)[0]


def check_real(r, real, work):
    """The real accounts fetched their messages meanwhile."""
    got = 0
    for name in real:
        new = os.path.join(work, "mail", name, "new")
        got += len(os.listdir(new)) if os.path.isdir(new) else 0
    r["real_fetched"] = got
    if got != len(real) * REAL_MESSAGES:
        raise BenchError("the real accounts fetched %d of %d messages"
                         % (got, len(real) * REAL_MESSAGES))


# --- the report ---------------------------------------------------------

def ms(v):
    return "%.1f" % v if v is not None else "?"


def med(runs, key):
    """The median of KEY over RUNS; None if a run lacks it."""
    v = [x[key] for x in runs]
    return statistics.median(v) if None not in v else None


def stall_row(label, runs, key):
    v = med(runs, key)
    return (label, "%s ms" % ms(v),
            "< %d ms %s" % (TARGET_STALL, verdict(v < TARGET_STALL))
            if v is not None else "(no window lines from this binary)")


def verdict(ok):
    return "PASS" if ok else "MISS"


def report(args, runs):
    n = args.accounts
    print()
    print("popfetchd %s accounts (%.1f MB file), %d run(s), medians; "
          "load average %s"
          % ("{:,}".format(n), med(runs, "file_mb"), len(runs),
             " ".join("%.2f" % x for x in os.getloadavg())))
    rows = [
        ("start (exec to started)", "%.2f s" % med(runs, "start"), ""),
        ("settled (first polls done)", "%.1f s" % med(runs, "settled"), ""),
        ("steady RSS", "%.1f MiB" % med(runs, "rss"),
         "<= %d MiB %s" % (TARGET_RSS,
                           verdict(med(runs, "rss") <= TARGET_RSS))),
        ("steady RssAnon", "%.1f MiB" % med(runs, "anon"), ""),
        ("RSS per account", "%.0f B" % (med(runs, "rss") * 1048576 / n), ""),
        ("CPU per poll (all threads)", "%.0f us" % (med(runs, "cpu_poll")
                                                    * 1e6), ""),
        ("  of which the loop thread", "%.0f us" % (med(runs, "loop_poll")
                                                    * 1e6), ""),
        ("loop CPU when idle", "%.2f %%" % med(runs, "idle_loop_pct"), ""),
        ("reload, same file", "%.2f s" % med(runs, "reload"), ""),
        stall_row("  longest loop stall", runs, "reload_stall"),
        ("  most loop CPU between ticks",
         "%s ms" % ms(med(runs, "reload_cpu")), ""),
        ("  RSS after", "%.1f MiB" % med(runs, "rss_reload"), ""),
        ("reload, 10% dropped/added/moved", "%.2f s" % med(runs, "reload2"),
         ""),
        stall_row("  longest loop stall", runs, "reload2_stall"),
        ("  most loop CPU between ticks",
         "%s ms" % ms(med(runs, "reload2_cpu")), ""),
        ("  RSS after", "%.1f MiB" % med(runs, "rss_reload2"), ""),
        ("longest loop stall of the run", "%s ms" % ms(med(runs,
                                                        "stall_all")),
         "(start and stop included)"),
    ]
    if args.real_count:
        rows.append(("real accounts' messages fetched",
                     "%d" % med(runs, "real_fetched"), ""))
    for label, value, target in rows:
        print("  %-34s %12s   %s" % (label, value, target))
    print("stall: how late the loop ran a 2 ms timer (loopstat.c), from "
          "SIGHUP to the accounts moved;\nthe loop thread's CPU between two "
          "ticks tells its own work from waiting for a CPU.")


def start_dovecot(args):
    if args.real == 0:
        return None
    if not os.access(dovecot.DOVECOT, os.X_OK):
        print("no Dovecot at %s: no real accounts" % dovecot.DOVECOT)
        return None
    dc = dovecot.Dovecot()
    dc.start()
    return dc


def fill_dovecot(dc, args, k):
    msgs = mailgen.generate(args.real * REAL_MESSAGES, seed=18 + k,
                            tag="accounts")
    for i in range(args.real):
        name = "real%02d" % i
        dc.add_user(name, PASSWORD)
        for m in msgs[i * REAL_MESSAGES:(i + 1) * REAL_MESSAGES]:
            dc.deliver(name, m)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--accounts", type=int, default=100000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--hosts", type=int, default=250,
                    help="server addresses, 1 to 250")
    ap.add_argument("--real", type=int, default=4,
                    help="accounts on a throwaway Dovecot (0: none)")
    ap.add_argument("--idle", type=float, default=5,
                    help="seconds of idle loop CPU measured")
    ap.add_argument("--keep", action="store_true",
                    help="keep each run's folder")
    ap.add_argument("--binary", default=os.path.join(ROOT, "build",
                                                     "popfetchd"))
    args = ap.parse_args()
    if not 1 <= args.hosts <= 250:
        ap.error("--hosts takes 1 to 250")
    if not os.access(args.binary, os.X_OK):
        ap.error("no popfetchd at %s (--binary)" % args.binary)
    print("load average %s; %s" % (" ".join("%.2f" % x
                                            for x in os.getloadavg()),
                                   args.binary), flush=True)
    runs = []
    try:
        for k in range(1, args.runs + 1):
            dc = start_dovecot(args)
            args.real_count = args.real if dc else 0
            try:
                if dc:
                    fill_dovecot(dc, args, k)
                runs.append(one_run(args, k, dc))
            finally:
                if dc:
                    dc.cleanup()
    except BenchError as e:
        sys.exit("bench/accounts.py: %s" % e)
    report(args, runs)


if __name__ == "__main__":
    main()
