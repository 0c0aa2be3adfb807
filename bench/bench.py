#!/usr/bin/env python3
"""popfetchd end-to-end benchmark against a throwaway Dovecot.

    python3 bench/bench.py [--runs N] [--only B1,B4,...] [--accounts N]
                           [--quick] [--no-overlap] [--keep] [--binary PATH]
                           [--floor PATH] [--netref PATH] [--relay PATH]
                           [--slowdisk PATH] [--dir DIR]

Starts its own Dovecot on 127.0.0.1 (tests/dovecot.py), generates a
deterministic corpus (tests/mailgen.py, fixed seed), and runs
`popfetchd --once -c CONF` in these scenarios, each N times (default 3;
run 1 of each, then run 2 of each, ...):

  B1  1 account x 5,000 messages (mostly 2-8 KB, some 50-200 KB, three of
      3-4 MB: about 100 MB), delete mode, implicit TLS.
  B2  B1 through a relay adding 10 ms each way (20 ms round trip,
      build/bench_relay from bench/relay.c, a process started for each
      run).
  B2-0  (control, no target of its own) B1 through the same relay with
      no delay: the relay runs on the same CPUs, and B2 - B2-0 is what
      the latency alone costs.
  B3  200 accounts x 25 messages (B1's messages, split), 20 ms round trip,
      one run polling all accounts, max_connections = max_per_host = 32.
  B4  1 account x 3 messages of 20 MiB: the peak RSS is what counts.
  B5  --accounts (default 10,000) accounts x 1 small message, implicit
      TLS, one run, max_connections = max_per_host = 32.
  B6  1,000 accounts x 5 messages (B1's, split), no added latency,
      max_connections = max_per_host = 64: every session busy at once.
      What counts is the longest stall of the event loop (below). The
      server, this script and every other process of the machine run on
      one CPU (the one taking the most device interrupts, which cannot
      always be moved), popfetchd on the others: on two CPUs shared with
      Dovecot, the loop thread is otherwise held by the server's
      processes taking its CPU, which says nothing of popfetchd (the
      same run on tmpfs, where nothing blocks, stalls as long).
  B7  B6's accounts and messages, served by the daemon (not --once)
      with poll_interval = 10 s (the least allowed), so that polls go on
      all the time; meanwhile this script asks for the status every 50 ms,
      in turn over the socket itself (connect, send the request, read the
      whole JSON answer: the daemon's answer time) and by running
      `popfetchd --status` (the whole process, as a user sees it: exec,
      ask, print the table). An answer counts only if it showed at least
      one account polling. The asking lasts 20 s and until every account
      has fetched its messages; then SIGTERM. The daemon, the server and
      the asking share the CPUs (no split as in B6): a user asks from the
      machine the daemon runs on. The target: the socket's answer in a
      median of at most 50 ms and the whole `popfetchd --status` in a
      median of at most 100 ms; p90 and max are printed beside.
  B9  B6 on a slow disk: meanwhile a competing writer (a process of its
      own on the server's CPU) writes 4 MiB at a time into a file on
      the same file system and fdatasyncs it, over and over, so that
      every syncfs and fsync waits behind its data. Both references
      run with the same writer (the server's own writes wait behind it
      too). What counts is B6's stall target: the
      disk work waits on threads, the loop serves the sessions meanwhile.
  B10 50 accounts x 20 messages (B1's first, none of the huge), all at
      once, popfetchd on CPUs of its own as in B6; every other account's
      Maildir is on a disk slow to sync: build/bench_slowdisk.so
      (bench/slowdisk.c), preloaded, makes each fsync, fdatasync and
      syncfs of a file under that folder sleep 100 ms first, as a remote
      file system or a USB disk would make it wait (sleeping: no CPU
      taken, unlike B9's writer). Each run polls all the accounts twice,
      with no delay and with it (in turn first), on fresh Maildirs. What
      counts: the loop's stall (B6's target), and the mean poll time of
      the accounts on the fast disk (their summary lines' secs) over the
      same with no delay, at most 1.1x: the slow disk's accounts do not
      hold theirs back.
  B8  B1 with target = "lmtp": the 5,000 messages handed to the same
      Dovecot's LMTP on a Unix socket (Sieve loaded, no script; no quota
      plugin), reported beside B1. What LMTP stored is
      checked as B1's Maildir is, the trace fields Dovecot and popfetchd
      add (Return-Path, Delivered-To, Received, X-Popfetchd-Id) taken
      off first.

Every popfetchd run has POPFETCHD_LOOP_STATS=1: a timer at the loop's
highest priority asks to run every 2 ms; the longest time it ran late
("stall", ms) is how long the loop could not turn to an urgent event,
held by its own work, by a call that blocked, or by other processes
taking the CPUs; the most CPU time the loop thread used between two
ticks ("lcpu", ms) is its own work alone. Of the stalls over 10 ms
together, "runq" is the time the loop thread waited for a CPU (runnable,
not running: other threads and processes, or a kernel that does not
preempt a thread in a system call) and "blk" the time it was blocked in
a call, or asleep past its timer. B6's target is a stall of at most 10
ms. Beside each popfetchd run but B7's, on the same CPUs and from before
its start to its exit, bench_idleloop (bench/idleloop.c) runs the same
meter on a loop with nothing else to do: its longest stall ("idle", ms)
is what a loop waits there with no work of its own, for a timer's wake-
up late because the host ran something else (on this machine 10-12 ms
within 20 s, with nothing else running), or for other threads on those
CPUs (popfetchd's disk threads among them). The run line gives its
blocked time too: a stall of popfetchd's as long, and as much blocked,
is the machine's wake-up. Each run line also says how long popfetchd
left what the server sent unread while its delivery caught up (its
summary lines' held=; of the longest account where there are several).

For each it prints the median wall time, CPU time (user + sys) and peak
RSS of the popfetchd process, and how close popfetchd comes to the limit
that the server, the transport and the disk set: every run of every
scenario but B7 also measures two references, so that machine noise
touches them and popfetchd alike:

  disk  right before popfetchd, `build/bench_floor disk` (bench/floor.c):
        the same bytes into a Maildir per account with popfetchd's
        durability scheme (per batch of up to 64 messages one syncfs, the
        journal's commit, the links into new/ and one fsync of it; each
        Maildir and journal created fresh, durably), one thread writing
        and four doing the waiting, at popfetchd's concurrency, and no
        network. Its own clock, the corpus already in memory.
  net   right after popfetchd, on the server refilled as before each run
        (outside the timing), build/bench_netref (bench/netref.c): the
        same accounts at the same concurrency over the same path (the
        relay of B2 and B3, a process of its own; B6's CPU split), with
        popfetchd's TLS settings and pipelining window: CAPA, USER/PASS,
        STAT, UIDL, LIST, RETR of every message (the data only scanned
        for its end and counted), DELE, QUIT. Timed from exec to exit as
        popfetchd is; it must have fetched every message whole (bytes in
        the Maildir form) and left every mailbox empty, or the run fails.

Before each client's seeding, Dovecot brings the scenario's indexes up
to date (doveadm), and before each timed client as many sessions as it
will open log in at once and quit: the first access to a mailbox and
the start of Dovecot's POP3 processes are then paid by neither client,
where before popfetchd, running first, paid for both (up to 6.8 s more
server CPU in B6's first run than the network reference's; since, the
difference goes either way, within the machine's noise).

both  last, on the server refilled again, the two references started
        together, each as it runs alone (on popfetchd's CPUs where the
        scenario gives it CPUs of its own), timed from the start of the
        first to the exit of the later: what a client that did both
        jobs with no cost of its own between them would take on this
        machine, with the CPUs and the disk shared as popfetchd shares
        them. Skipped with --no-overlap (it takes each scenario's
        network reference a second time per run).

The ratio is popfetchd's wall time over the larger of the two, per run,
and its median is printed with the target: at most 1.1x. Where the two
references cannot overlap on this machine, "both" is well above the
larger of them, and r/both (wall / both, per run) says how far popfetchd
is from doing both jobs at once. Where the
programs share the CPUs, each run line also gives the CPU bound: the
CPU time of the references' programs (the server's and the relay's
during the network reference, bench_netref's, bench_floor's) over the
machine's CPUs, and popfetchd's wall time over it. The limit assumes
that the disk's work fits where the network's leaves a CPU idle; when
the bound comes near the limit, there is no such room (the kernel's
threads, not counted, take some more). B8 has only
the network reference (its target is Dovecot's LMTP, which neither
reference measures), and no limit target; B7 (the daemon, for a fixed
time) has neither. Targets are printed with PASS or MISS; missing one
does not change the exit status.

After every run each Maildir must hold exactly its messages (compared by
SHA-256 of the LF form popfetchd writes; received_header = false), tmp/
must be empty, popfetchd must exit 0, and the server mailboxes must be
empty; otherwise the run counts as failed and the exit status is 1.
Everything is written under build/ (the work tree's file system), or
under --dir DIR, in folders removed at the end unless --keep is given.
The file system counts: on ext4 without a journal (this VM's root),
creating a file skips, one by one, the inodes freed in the last minutes,
so for the same 5,000 files the disk reference took 0.3-1.8 s and
popfetchd's writer thread 0.45-1.8 s of CPU, depending on what earlier
runs had deleted. A journaled ext4 (mkfs.ext4 on a loop device, mounted,
given as --dir) does not do this; give it room: a full run of every
scenario keeps about 1.2 million files and 11.4 GB until the end
(mkfs.ext4 -i 4096 on 24 GiB: 12 GiB filled up in the third runs of
B4 and B5 once "both" was added; --no-overlap needs less).

CPU time and peak RSS come from wait4() in `bench_floor measure`, which
forks and execs popfetchd: Linux charges a child with the peak RSS of the
process that exec'd it, so a child of this Python process would report at
least the interpreter's size (about 14 MB even for /bin/true). Peak RSS
includes the resident pages of the shared libraries (libcrypto alone is
about 4 MiB); the "anon" column is the peak of the anonymous part
(heap, stacks), sampled from /proc every 5 ms.

The server is tests/dovecot.py's, with login and POP3 processes reused
across connections (see BenchDovecot). Its mailboxes are refilled by
writing files into them directly before each run, outside the timing;
each run starts with empty local Maildirs and state.

--quick: 500 messages in B1/B2, 20 accounts in B3, 2 MiB messages in B4,
200 accounts in B5, 100 in B6 and B7, one run.
"""

import argparse
import collections
import hashlib
import json
import os
import platform
import poplib
import random
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The shared Python helpers (see tests/harness.py).
sys.path.insert(0, os.path.join(ROOT, "tests"))
import dovecot  # noqa: E402
import mailgen  # noqa: E402

SEED = 7
DELAY_MS = 10            # each way: 20 ms round trip
PASSWORD = "bench-pass"
SPARE_POP3 = 4           # Dovecot's pop3 process_min_avail
CONNECTIONS = 32         # max_connections and max_per_host in B3 and B5
PER_ACCOUNT_B3 = 25
MEDIUM_SHARE = 0.11      # of the B1 messages, 50-200 KB; the rest 2-8 KB
RUN_TIMEOUT = 3600       # one popfetchd run, seconds
SAMPLE_EVERY = 0.005     # seconds between two looks at /proc/PID/status
MAX_PROBLEMS = 10        # per failed run, the rest are counted

MiB = 1024 * 1024

TARGET_LIMIT = 1.1      # popfetchd's wall / the larger reference
BATCH = 64               # messages per durability point (SESSION_BATCH)
TARGET_B2_EXTRA = 1.0    # seconds over B1
TARGET_B4_RSS = 6        # MiB
TARGET_B5_RSS = 64       # MiB
TARGET_B6_STALL = 10     # ms
ACCOUNTS_B6 = 1000
CONNECTIONS_B6 = 64
TARGET_B7_SOCKET = 50    # ms, median of the socket's answer
TARGET_B7_PROCESS = 100  # ms, median of a whole popfetchd --status
POLL_INTERVAL_B7 = 10    # seconds, the least poll_interval allowed
ASK_FOR_B7 = 20          # seconds of asking, at least
ASK_EVERY_B7 = 0.05      # seconds between two asks
START_WAIT = 60          # seconds for the daemon's socket to answer
ACCOUNTS_B10 = 50        # half of them on the slow disk
PER_ACCOUNT_B10 = 20     # B1's first messages, none of the huge ones
SYNC_DELAY_B10 = 100     # ms each call waiting for the slow disk sleeps
TARGET_B10_OTHERS = 1.1  # the other accounts' polls, at most this slower

SCENARIOS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9",
             "B10")
# What Dovecot's LMTP and popfetchd put before a message B8 delivers.
LMTP_TRACE = re.compile(
    rb"\AReturn-Path: <[^\n]*>\nDelivered-To: [^\n]*\n"
    rb"Received: [^\n]*\n(?:[ \t][^\n]*\n)*"
    rb"X-Popfetchd-Id: <[0-9a-f]{32}@popfetchd>\n")


class BenchError(RuntimeError):
    pass


# --- the corpus -----------------------------------------------------------

def _mailgen_index(i):
    """Message I's index for mailgen: skips those mailgen gives a 20 KB line.

    mailgen adds a line of 20 KB or more to every message whose index is 2
    modulo 5, which would turn a fifth of the "2-8 KB" messages into 20 KB
    ones; the indexes stay unique.
    """
    return i // 4 * 5 + (0, 1, 3, 4)[i % 4]


class Corpus:
    """Messages (bytes, LF line ends) and what is needed to check them."""

    def __init__(self, name, messages):
        self.name = name
        self.messages = messages
        self.total = sum(len(m) for m in messages)
        self.digests = [hashlib.sha256(m).digest() for m in messages]
        self.files = None

    def write(self, folder):
        """The corpus as one file plus an index of lengths, for the disk
        reference."""
        if self.files is None:
            data = os.path.join(folder, "corpus-%s.bin" % self.name)
            index = os.path.join(folder, "corpus-%s.idx" % self.name)
            with open(data, "wb") as f:
                for m in self.messages:
                    f.write(m)
            with open(index, "w") as f:
                f.write("".join("%d\n" % len(m) for m in self.messages))
            self.files = (data, index)
        return self.files

    def describe(self):
        sizes = [len(m) for m in self.messages]
        small = sum(1 for s in sizes if s < 20 * 1024)
        medium = sum(1 for s in sizes if 20 * 1024 <= s < MiB)
        big = len(sizes) - small - medium
        return ("%d messages, %.1f MB (%d under 20 KB, %d of 50-200 KB, "
                "%d of 1 MB or more)" % (len(sizes), self.total / 1e6,
                                         small, medium, big))


def mixed_corpus(name, count, huge_count, huge_range):
    """COUNT messages: mostly 2-8 KB, some 50-200 KB, HUGE_COUNT large."""
    rnd = random.Random("bench/%s/%d" % (name, SEED))
    huge_at = {count * (k + 1) // (huge_count + 1) for k in range(huge_count)}
    out = []
    for i in range(count):
        if i in huge_at:
            size = rnd.randint(*huge_range)
        elif rnd.random() < MEDIUM_SHARE:
            size = rnd.randint(*mailgen.MEDIUM)
        else:
            size = rnd.randint(*mailgen.SMALL)
        out.append(mailgen.message(rnd, _mailgen_index(i), size,
                                   "bench" + name))
    return Corpus(name, out)


def sized_corpus(name, count, size_range):
    rnd = random.Random("bench/%s/%d" % (name, SEED))
    return Corpus(name, [
        mailgen.message(rnd, _mailgen_index(i), rnd.randint(*size_range),
                        "bench" + name)
        for i in range(count)])


# --- the server -----------------------------------------------------------

class BenchDovecot(dovecot.Dovecot):
    """The test Dovecot, with settings for thousands of logins.

    Login and POP3 processes serve one connection after another instead
    of being started for each (all mail users share one system user here,
    which makes reuse possible), the auth process does not log every
    request, and mail_fsync is Dovecot's default again. This cuts the server's CPU time per login about fourfold:
    the server's costs should not dominate what popfetchd waits for on a
    machine with few CPUs.
    """

    def _config(self):
        return super()._config() + """
# Added by bench/bench.py.
auth_debug = no
auth_verbose = no
# Dovecot's default (the tests ask for "always"): a server as shipped.
mail_fsync = optimized
service pop3-login {
  service_count = 0
  process_min_avail = 2
}
service pop3 {
  service_count = 0
  process_min_avail = %d
}
""" % SPARE_POP3

    def _lmtp_config(self):
        # B8: without it, each message LMTP saves makes Dovecot read the
        # whole of new/ again (its mtime changed), so that delivering N
        # messages into one Maildir costs N^2/2 directory entries.
        text = super()._lmtp_config()
        return text + "maildir_very_dirty_syncs = yes\n" if text else ""


def start_dovecot(scratch, lmtp=False):
    # Its folder (and the mailboxes in it) under build/ too.
    saved = tempfile.tempdir
    tempfile.tempdir = scratch
    try:
        # No quota plugin: a mailbox of 5,000 messages makes the Maildir
        # quota recount, which measures Dovecot, not popfetchd.
        dc = BenchDovecot(prefix="dovecot-", lmtp=lmtp, quota=False)
    finally:
        tempfile.tempdir = saved
    try:
        dc.start()
    except BaseException:
        dc.cleanup()
        raise
    return dc


def warm_server(dc, boxes, sessions):
    """Logs SESSIONS users in at once (untimed), then quits them.

    A POP3 session is served by a process of its own, which Dovecot keeps
    for the sessions after (service_count = 0). Without this, whichever
    client ran first at a new concurrency paid for starting those
    processes, and that was always popfetchd, which runs before the
    network reference: in a perf trace of B5 (2,000 accounts), Dovecot
    started 33 POP3 processes during popfetchd's run and one during the
    reference's. Called
    before each timed client, so that an idle gap (Dovecot stops idle
    processes after a minute) does not charge one client either. The
    users are the warm-up's own, their mailboxes empty.
    """
    users = ["warm%d" % i for i in range(sessions + SPARE_POP3)]
    boxes.ensure_users(users)
    ctx = ssl.create_default_context(cafile=dc.ca_file)
    logged_in = []
    try:
        for user in users:
            pop = poplib.POP3_SSL("127.0.0.1", dc.ssl_port, context=ctx,
                                  timeout=60)
            logged_in.append(pop)
            pop.user(user)
            pop.pass_(PASSWORD)
    finally:
        for pop in logged_in:
            try:
                pop.quit()
            except (OSError, poplib.error_proto):
                pop.close()


class Mailboxes:
    """Fills and checks users' mailboxes on the server, bypassing POP3."""

    def __init__(self, dc):
        self.dc = dc
        self.users = set()
        self.seq = 0

    def ensure_users(self, names):
        for name in names:
            if name not in self.users:
                self.dc.add_user(name, PASSWORD)
                self.users.add(name)

    def seed(self, user, messages):
        """Write MESSAGES into USER's new/ (tmp/ and rename, as MDAs do)."""
        md = self.dc.maildir(user)
        root = os.geteuid() == 0
        for m in messages:
            self.seq += 1
            name = "%d.B%dP%d.bench" % (int(time.time()), self.seq,
                                        os.getpid())
            tmp = os.path.join(md, "tmp", name)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                if root:
                    os.fchown(fd, self.dc.mail_uid, self.dc.mail_gid)
                os.write(fd, m)
            finally:
                os.close(fd)
            os.rename(tmp, os.path.join(md, "new", name))

    def cpu(self):
        """CPU seconds used so far by the server's processes.

        Dovecot runs in its own process group; the time of children that
        have exited is in their parent's cutime and cstime.
        """
        if self.dc.proc is None:
            return 0.0
        group = self.dc.proc.pid
        ticks = 0
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % name) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            if int(fields[2]) == group:
                ticks += sum(int(x) for x in fields[11:15])
        return ticks / os.sysconf("SC_CLK_TCK")

    def left(self, users):
        """Messages still on the server, over USERS."""
        n = 0
        for user in users:
            md = self.dc.maildir(user)
            for sub in ("new", "cur"):
                n += len(os.listdir(os.path.join(md, sub)))
        return n

    def clear(self, users):
        for user in users:
            md = self.dc.maildir(user)
            for sub in ("new", "cur"):
                d = os.path.join(md, sub)
                for name in os.listdir(d):
                    os.unlink(os.path.join(d, name))

    def sync(self, users, workdir):
        """Has Dovecot bring USERS' indexes up to date (doveadm, one
        process). A mailbox's first access creates its index files, and a
        later one reads what changed behind Dovecot's back: done before
        each client's seeding, it leaves both the same work, new mail to
        index. Otherwise popfetchd, which runs first, alone paid for the
        first access and for clear()'s removals (B6: up to 6.8 s more
        server CPU in a first run than the network reference's); done
        before popfetchd's alone, the reference's first access after
        popfetchd's expunges cost it more (B6: 10.6 s against 8.6 s)."""
        names = os.path.join(workdir, "sync.users")
        with open(names, "w") as f:
            f.write("".join(u + "\n" for u in users))
        r = self.dc.doveadm("mailbox", "status", "-F", names, "messages",
                            "INBOX", timeout=RUN_TIMEOUT)
        if r.returncode != 0:
            raise BenchError("doveadm mailbox status: %s"
                             % r.stderr.strip()[-2000:])


# --- one run --------------------------------------------------------------

def write_config(path, state_dir, port, ca_file, accounts, connections,
                 poll_interval=None, lmtp=None):
    """ACCOUNTS: (name, user, maildir) triples; settings shared in defaults.
    With LMTP (the socket), each account hands its mail to the LMTP user
    named by its maildir field instead."""
    lines = [
        "# Written by bench/bench.py",
        'state_dir = "%s";' % state_dir,
    ]
    if poll_interval is not None:
        lines.append("poll_interval = %d;" % poll_interval)
    lines += [
        "max_connections = %d;" % connections,
        "max_per_host = %d;" % connections,
        "timeout = 120;",
        "defaults = {",
        '  host = "127.0.0.1";',
        "  port = %d;" % port,
        '  tls = "implicit";',
        '  ca_file = "%s";' % ca_file,
        '  password = "%s";' % PASSWORD,
        "  keep = false;",
        "  received_header = false;",
        "};",
        "accounts = (",
        ",\n".join(('  { name = "%s"; user = "%s"; maildir = "%s"; }'
                    if lmtp is None else
                    '  { name = "%%s"; user = "%%s"; target = "lmtp"; '
                    'lmtp = "%s"; recipient = "%%s"; }' % lmtp)
                   % a for a in accounts),
        ");",
        "",
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines))
    os.chmod(path, 0o600)  # inline passwords need it


def parse_fields(text):
    return {k: v for k, v in re.findall(r"(\w+)=(\S+)", text)}


def _child_of(pid):
    """The first child of process PID, or None."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            kids = f.read().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None


def _anon_kb(pid):
    """RssAnon of process PID in KiB, or 0 if it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def set_group_affinity(pgid, cpus):
    """Every thread of every process in process group PGID onto CPUS."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                if int(f.read().rsplit(")", 1)[1].split()[2]) != pgid:
                    continue
            for tid in os.listdir("/proc/%s/task" % name):
                os.sched_setaffinity(int(tid), cpus)
        except (OSError, ValueError, IndexError):
            pass  # gone meanwhile


PF_KTHREAD = 0x00200000


def move_others(cpus):
    """Every user-space thread on the machine onto CPUS (kernel threads
    cannot be moved); {tid: its former CPU set}, for restore_others().
    Not only the server: on this VM its agent (PID 1, nice -10) ran on
    popfetchd's CPU for 11-18 ms at a time while the loop waited, seen
    with perf's sched_switch events in B9."""
    saved = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                flags = int(f.read().rsplit(")", 1)[1].split()[6])
            if flags & PF_KTHREAD:
                continue
            for tid in os.listdir("/proc/%s/task" % name):
                old = os.sched_getaffinity(int(tid))
                os.sched_setaffinity(int(tid), cpus)
                saved[int(tid)] = old
        except (OSError, ValueError, IndexError):
            pass  # gone meanwhile, or not ours to move
    return saved


def restore_others(saved):
    for tid, cpus in saved.items():
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass  # gone meanwhile


def busiest_irq_cpu(cpus):
    """Of CPUS, the one that has taken the most device interrupts (the
    numbered lines of /proc/interrupts), or the first. On this VM the
    disk's one queue interrupts the second CPU, and its interrupts cannot
    be moved: in B9 the completions of the competing writer's I/O ran
    there, in whatever thread was running."""
    try:
        with open("/proc/interrupts") as f:
            head = f.readline().split()
            counts = [0] * len(head)
            for line in f:
                label, _, rest = line.partition(":")
                if not label.strip().isdigit():
                    continue
                for i, v in enumerate(rest.split()[:len(head)]):
                    counts[i] += int(v) if v.isdigit() else 0
        taken = {int(h[3:]): n for h, n in zip(head, counts)
                 if h.startswith("CPU")}
    except (OSError, ValueError):
        return min(cpus)
    return max(sorted(cpus), key=lambda c: taken.get(c, 0))


class CpuSplit:
    """While active: the server, this script and every other process on
    one CPU (the one taking the most device interrupts), popfetchd
    (through measure()'s CPUS) on the others; on one CPU, nothing
    changes."""

    def __init__(self, dc):
        self.dc = dc
        self.all = os.sched_getaffinity(0)
        first = busiest_irq_cpu(self.all)
        self.server = {first}
        self.client = self.all - self.server or self.all

    def __enter__(self):
        self.others = {}
        if self.client is not self.all:
            set_group_affinity(self.dc.proc.pid, self.server)
            os.sched_setaffinity(0, self.server)
            self.others = move_others(self.server)
        return self

    def __exit__(self, *exc):
        restore_others(self.others)
        set_group_affinity(self.dc.proc.pid, self.all)
        os.sched_setaffinity(0, self.all)


def loop_fields(text):
    """The loop-stall meter's figures in a log's TEXT (None if absent):
    the longest stall and the most CPU between two ticks, and of the
    stalls over 10 ms, the time the loop waited for a CPU and the rest
    once its own CPU is taken off, when it was blocked (in a call, or
    asleep past its timer), ms."""
    out = dict.fromkeys(("stall", "loop_cpu", "runq", "blocked"))
    m = re.search(r"max_stall_ms=([0-9.]+)", text)
    if m:
        out["stall"] = float(m.group(1))
    m = re.search(r"max_cpu_ms=([0-9.]+)", text)
    if m:
        out["loop_cpu"] = float(m.group(1))
    m = re.search(r"over_10ms_total_ms=([0-9.]+) over_10ms_cpu_ms=([0-9.]+)"
                  r" over_10ms_runqueue_ms=([0-9.]+)", text)
    if m:
        total, cpu, out["runq"] = (float(g) for g in m.groups())
        out["blocked"] = max(0.0, total - cpu - out["runq"])
    return out


class IdleLoop:
    """bench_idleloop on CPUS (None: all) until stop(): popfetchd's
    loop-stall meter on a loop with nothing to do, run beside popfetchd
    so that what any loop waits there is measured with it."""

    def __init__(self, tools, log, cpus=None):
        self.log = log
        with open(self.log, "wb") as lf:
            self.proc = subprocess.Popen(
                [tools.idleloop], stdin=subprocess.DEVNULL, stdout=lf,
                stderr=subprocess.STDOUT,
                env=dict(os.environ, POPFETCHD_LOOP_STATS="1"),
                start_new_session=True,
                preexec_fn=(None if cpus is None else
                            lambda: os.sched_setaffinity(0, cpus)))

    def stop(self):
        """Its figures (loop_fields()); it must have run till now."""
        if self.proc.poll() is not None:
            raise BenchError("bench_idleloop stopped early (log: %s)"
                             % self.log)
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        with open(self.log, errors="replace") as f:
            out = loop_fields(f.read())
        if out["stall"] is None:
            raise BenchError("no figures from bench_idleloop (log: %s)"
                             % self.log)
        return out

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def measure(tools, argv, workdir, log_name, cpus=None, env=None,
            started=None, idle=False):
    """Run ARGV under `bench_floor measure`; its rusage as a dict.

    Meanwhile the command's anonymous (non-file) resident memory is
    sampled from /proc every SAMPLE_EVERY seconds: peak RSS includes the
    shared libraries' pages, which the program does not control.
    ENV: variables added to the command's environment. STARTED: called
    with the command's pid once it runs (from this thread). IDLE: an
    IdleLoop runs beside the command, on the same CPUs, from before it
    starts until it exits: its figures are the idle_ fields.
    """
    out = os.path.join(workdir, log_name + ".rusage")
    log = os.path.join(workdir, log_name + ".log")
    anon = 0
    idler = (IdleLoop(tools, os.path.join(workdir, log_name + ".idle.log"),
                      cpus) if idle else None)
    try:
        with open(log, "wb") as lf:
            env = dict(os.environ, POPFETCHD_LOOP_STATS="1", **(env or {}))
            proc = subprocess.Popen([tools.floor, "measure", out] + argv,
                                    stdin=subprocess.DEVNULL, stdout=lf,
                                    stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True,
                                    preexec_fn=(None if cpus is None else
                                                lambda: os.sched_setaffinity(
                                                    0, cpus)))
            deadline = time.monotonic() + RUN_TIMEOUT
            child = None
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    os.killpg(proc.pid, 9)
                    proc.wait()
                    raise BenchError("%s did not finish in %d s (log: %s)"
                                     % (argv[0], RUN_TIMEOUT, log))
                if child is None:
                    child = _child_of(proc.pid)
                    if child is not None and started is not None:
                        started(child)
                if child is not None:
                    anon = max(anon, _anon_kb(child))
                time.sleep(SAMPLE_EVERY)
        try:
            with open(out) as f:
                fields = parse_fields(f.read())
        except FileNotFoundError:
            raise BenchError("no rusage from bench_floor measure (log: %s)"
                             % log)
    except BaseException:
        if idler is not None:
            idler.kill()
        raise
    with open(log, errors="replace") as f:
        loop = loop_fields(f.read())
    if idler is not None:
        loop.update(("idle_" + k, v) for k, v in idler.stop().items())
    return dict(loop, **{
        "status": int(fields["status"]),
        "wall": float(fields["wall"]),
        "cpu": float(fields["user"]) + float(fields["sys"]),
        "user": float(fields["user"]),
        "sys": float(fields["sys"]),
        "rss": int(fields["maxrss_kb"]) / 1024.0,
        "anon": anon / 1024.0,
        "log": log,
    })


class ProcessRelay:
    """build/bench_relay (bench/relay.c), one process per run.

    Its CPU time comes from wait4() when it is stopped, so it is exactly
    that run's.
    """

    def __init__(self, path, host, port, delay):
        self.cmd = [path, "0", host, str(port), str(delay)]
        self.proc = None

    def begin(self):
        """Start the relay; its port."""
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE,
                                     text=True)
        return relay_port(self.proc)

    def end(self):
        """Stop the relay; the CPU seconds it used."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0.0
        proc.terminate()
        _, status, ru = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        return ru.ru_utime + ru.ru_stime


def relay_port(proc):
    """The port from a relay's first line, "listening on HOST:PORT ..."."""
    line = proc.stdout.readline()
    m = re.match(r"listening on [^ ]*:(\d+) ", line)
    if m is None:
        proc.kill()
        proc.wait()
        raise BenchError("relay %s: unexpected first line %r"
                         % (proc.args[0], line))
    return int(m.group(1))


def count_until_eof(listener, result):
    """Accept one connection on LISTENER and count its bytes until EOF;
    RESULT gets "bytes" and "end" (the monotonic time of the EOF)."""
    conn, _ = listener.accept()
    total = 0
    buf = bytearray(MiB)
    with conn:
        while True:
            n = conn.recv_into(buf)
            if n == 0:
                break
            total += n
    result["bytes"] = total
    result["end"] = time.monotonic()


def relay_throughput(path, megabytes=100):
    """(seconds, MB/s, CPU seconds) for MEGABYTES through bench_relay."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    relay = ProcessRelay(path, "127.0.0.1", listener.getsockname()[1], 0)
    try:
        port = relay.begin()
        result = {}
        sink = threading.Thread(target=count_until_eof,
                                args=(listener, result))
        sink.start()
        chunk = os.urandom(MiB)
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", port)) as s:
            for _ in range(megabytes):
                s.sendall(chunk)
            s.shutdown(socket.SHUT_WR)
            sink.join()
        secs = result["end"] - start
        if result["bytes"] != megabytes * MiB:
            raise BenchError("relay passed %d of %d bytes"
                             % (result["bytes"], megabytes * MiB))
    finally:
        cpu = relay.end()
        listener.close()
    return secs, megabytes * MiB / secs / 1e6, cpu


class CompetingWriter:
    """A process writing 4 MiB at a time into a file under FOLDER and
    fdatasyncing it, until stopped: a disk made slow for everyone else on
    its file system. On CPUS (a set) if given."""

    SCRIPT = (
        "import os, signal, sys, time\n"
        # SIGINT stops it even when started with SIGINT ignored (from a
        # shell's background job), where Python installs no handler.
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)\n"
        "chunk, n, t = b'x' * (4 << 20), 0, time.monotonic()\n"
        "try:\n"
        "    while True:\n"
        "        if os.lseek(fd, 0, os.SEEK_CUR) >= 256 << 20:\n"
        "            os.ftruncate(fd, 0); os.lseek(fd, 0, os.SEEK_SET)\n"
        "        os.write(fd, chunk); os.fdatasync(fd); n += 1\n"
        "except KeyboardInterrupt:\n"
        "    print(n * 4 / (time.monotonic() - t), flush=True)\n")

    def __init__(self, folder, cpus=None):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.SCRIPT,
             os.path.join(folder, "competing-writer")],
            stdout=subprocess.PIPE, text=True,
            preexec_fn=(None if cpus is None else
                        lambda: os.sched_setaffinity(0, cpus)))

    def stop(self):
        """Stops it; the MiB/s it wrote."""
        self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            # Never left behind to slow the runs that follow.
            self.proc.kill()
            self.proc.wait()
            raise BenchError("the competing writer did not stop in 60 s")
        try:
            return float(out.strip() or 0)
        except ValueError:
            return 0.0


def run_disk(tools, sc, workdir, cpus=None, folder="disk-ref", sync=True):
    """The batched-disk reference (`bench_floor disk`): SC's bytes into a
    Maildir per account with popfetchd's durability scheme, no network,
    under WORKDIR/FOLDER (after an os.sync() if SYNC). Its wall time and
    CPU time (user + sys), s."""
    data, index = sc.corpus.write(tools.scratch)
    if sync:
        os.sync()
    p = subprocess.run([tools.floor, "disk", data, index,
                        os.path.join(workdir, folder),
                        str(sc.per_account), str(sc.concurrency())],
                       capture_output=True, text=True,
                       preexec_fn=(None if cpus is None else
                                   lambda: os.sched_setaffinity(0, cpus)))
    if p.returncode != 0:
        raise BenchError("bench_floor disk failed: %s" % p.stderr.strip())
    f = parse_fields(p.stdout)
    if "wall" not in f or int(f["bytes"]) != sc.corpus.total:
        raise BenchError("bench_floor disk printed %r" % p.stdout)
    return float(f["wall"]), float(f["user"]) + float(f["sys"])


def run_netref(tools, sc, dc, port, workdir, cpus=None):
    """The network-only reference (bench_netref) on PORT, SC's accounts
    at popfetchd's concurrency; it deletes what it fetches. Its measure()
    dict, checked: every message fetched whole, nothing failed."""
    accounts = os.path.join(workdir, "netref.accounts")
    fd = os.open(accounts, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join("%s\t%s\n" % (u, PASSWORD) for u in sc.users))
    r = measure(tools, [tools.netref, "-t", "implicit", "-c", dc.ca_file,
                        "-n", str(sc.concurrency()), "127.0.0.1", str(port),
                        accounts], workdir, "netref", cpus)
    with open(r["log"], errors="replace") as f:
        text = f.read()
    m = re.search(r"^netref: (.*)$", text, re.M)
    f = parse_fields(m.group(1)) if m else {}
    if (r["status"] != 0 or not f or
            int(f["messages"]) != len(sc.corpus.messages) or
            int(f["mail_bytes"]) != sc.corpus.total):
        raise BenchError("%s: bench_netref exited with %d, fetched %s of "
                         "%d messages, %s of %d bytes; its output (end):\n%s"
                         % (sc.key, r["status"], f.get("messages", "?"),
                            len(sc.corpus.messages), f.get("mail_bytes", "?"),
                            sc.corpus.total, text[-2000:]))
    return r


def digest_lmtp_mailbox(md):
    """SHA-256 digests of what Dovecot's LMTP stored in the Maildir MD
    (new/ and cur/), each without the trace fields, and problems seen."""
    got = collections.Counter()
    problems = []
    for sub in ("new", "cur"):
        d = os.path.join(md, sub)
        for name in os.listdir(d):
            with open(os.path.join(d, name), "rb") as f:
                data = f.read()
            m = LMTP_TRACE.match(data)
            if m is None:
                problems.append("%s/%s: no trace fields" % (sub, name))
                continue
            got[hashlib.sha256(data[m.end():]).digest()] += 1
    return got, problems


def digest_maildir(md):
    """SHA-256 digests of the files in MD/new, and problems seen."""
    got = collections.Counter()
    problems = []
    for sub in ("tmp", "cur"):
        d = os.path.join(md, sub)
        if os.path.isdir(d) and os.listdir(d):
            problems.append("%s: %d files in %s/" % (md, len(os.listdir(d)),
                                                     sub))
    new = os.path.join(md, "new")
    if not os.path.isdir(new):
        return got, problems + ["%s: no new/" % md]
    for name in os.listdir(new):
        with open(os.path.join(new, name), "rb") as f:
            got[hashlib.sha256(f.read()).digest()] += 1
    return got, problems


def verify(expect, boxes, users, lmtp=False):
    """EXPECT: maildir -> list of digests. Returns a list of problems."""
    problems = []
    missing = extra = 0
    for md, digests in expect.items():
        got, p = (digest_lmtp_mailbox if lmtp else digest_maildir)(md)
        problems += p
        want = collections.Counter(digests)
        missing += sum((want - got).values())
        extra += sum((got - want).values())
    if len(problems) > MAX_PROBLEMS:
        more = len(problems) - MAX_PROBLEMS
        problems = problems[:MAX_PROBLEMS] + ["... and %d more" % more]
    if missing or extra:
        problems.append("%d messages missing or altered, %d unexpected or "
                        "duplicated" % (missing, extra))
    left = boxes.left(users)
    if left:
        problems.append("%d messages left on the server" % left)
    return problems


class Tools:
    def __init__(self, binary, floor, netref, scratch, source=None,
                 slowdisk=None):
        self.slowdisk = slowdisk
        # Built with the others: beside bench_floor.
        self.idleloop = os.path.join(os.path.dirname(floor),
                                     "bench_idleloop")
        self.binary = binary
        self.source = source or binary
        self.floor = floor
        self.netref = netref
        self.scratch = scratch


class Scenario:
    """One benchmark: its accounts, corpus split and settings."""

    def __init__(self, key, title, corpus, per_account, relay=None,
                 refs=("net", "disk"), connections=CONNECTIONS,
                 user_prefix=None, split_cpus=False, lmtp=False,
                 slow_disk=False):
        """RELAY: None (straight to the server) or a delay in ms.
        REFS: the references measured in each run ("net", "disk").
        SPLIT_CPUS: popfetchd on CPUs of its own (see CpuSplit). LMTP:
        deliver through the server's LMTP to a user of its own per
        account ("to-" and the account's). SLOW_DISK: a competing writer
        runs through the disk reference and popfetchd's run."""
        if len(corpus.messages) % per_account:
            raise ValueError("%s: %d messages, not a multiple of %d"
                             % (key, len(corpus.messages), per_account))
        self.split_cpus = split_cpus
        self.slow_disk = slow_disk
        self.lmtp = lmtp
        self.key = key
        self.title = title
        self.corpus = corpus
        self.per_account = per_account
        self.relay = relay
        self.refs = refs
        self.connections = connections
        n = len(corpus.messages) // per_account
        width = len(str(n - 1))
        prefix = user_prefix or key.lower()
        self.users = [prefix + str(i).zfill(width) for i in range(n)]
        # dicts: wall, cpu, rss, anon, net and disk (s, or None) ...
        self.runs = []
        self.failed = False
        self.overlap = True  # measure the references at once too

    def concurrency(self):
        """Sessions at once in popfetchd's run, and in the references."""
        return min(self.connections, len(self.users))

    def batches(self):
        for i, user in enumerate(self.users):
            lo = i * self.per_account
            yield (user, self.corpus.messages[lo:lo + self.per_account],
                   self.corpus.digests[lo:lo + self.per_account])

    def prepare(self, tools, dc, boxes, k):
        """Run K's folder and seeded mailboxes: (folder, expect, accounts)."""
        # A folder per run, all removed at the very end: on ext4, creating
        # files soon after many were deleted makes the inode allocator skip
        # the recently freed ones one by one (recently_deleted() in
        # ext4's ialloc.c, seen in a profile as half of popfetchd's time),
        # and deleting the disk reference's Maildirs right before
        # popfetchd's run
        # would charge that to popfetchd alone.
        work = os.path.join(tools.scratch, "%s-run%d" % (self.key, k + 1))
        os.makedirs(os.path.join(work, "mail"))
        boxes.ensure_users(self.users)
        boxes.clear(self.users)
        boxes.sync(self.users, work)
        expect = {}
        accounts = []
        lmtp = dc.lmtp_socket if self.lmtp else None
        if lmtp:
            boxes.ensure_users("to-" + u for u in self.users)
            boxes.clear("to-" + u for u in self.users)
        for user, messages, digests in self.batches():
            boxes.seed(user, messages)
            md = os.path.join(work, "mail", user)
            if lmtp:
                md = dc.maildir("to-" + user)
            expect[md] = digests
            accounts.append((user, user, "to-" + user if lmtp else md))
        return work, expect, accounts

    def run_once(self, tools, dc, boxes, port, k, relay=None):
        """Run K: the disk reference, popfetchd, then the network
        reference (the server refilled for it); all checked."""
        work, expect, accounts = self.prepare(tools, dc, boxes, k)
        lmtp = dc.lmtp_socket if self.lmtp else None
        conf = os.path.join(work, "popfetchd.conf")
        if relay is None:  # else once the relay's port is known, below
            write_config(conf, os.path.join(work, "state"), port,
                         dc.ca_file, accounts, self.connections, lmtp=lmtp)
        writer = CompetingWriter(
            work, CpuSplit(dc).server if self.split_cpus else None) \
            if self.slow_disk else None
        try:
            disk, disk_cpu = self.disk_run(tools, dc, work) \
                if "disk" in self.refs else (None, None)
            os.sync()  # the seeded mail's writeback is not popfetchd's cost
            r, line = self.run_popfetchd(tools, dc, boxes, port, k, relay,
                                         work, conf, accounts, expect)
            r["disk"], r["disk_cpu"], r["net"] = disk, disk_cpu, None
            # Under the same writer: the server's own writes (Dovecot's
            # expunges, its uidlist) wait behind it as popfetchd's do.
            if "net" in self.refs:
                net = self.netref_run(tools, dc, boxes, work, relay)
                r["net"], r["net_cpu"] = net["wall"], net["cpu"]
                r["net_server_cpu"] = net["server_cpu"]
                r["net_relay_cpu"] = net["relay_cpu"]
            if self.overlap and {"net", "disk"} <= set(self.refs):
                r["both"] = self.both_run(tools, dc, boxes, work, relay)
        finally:
            if writer is not None:
                r_writer = writer.stop()
        if writer is not None:
            line += ", competing writer %.0f MiB/s" % r_writer
        self.runs.append(r)
        print(line + self.refs_text(r), flush=True)

    def run_popfetchd(self, tools, dc, boxes, port, k, relay, work, conf,
                      accounts, expect):
        """popfetchd's run K, checked: its measure() dict and the line
        that says how it went."""
        lmtp = dc.lmtp_socket if self.lmtp else None
        warm_server(dc, boxes, self.concurrency())
        try:
            if relay is not None:
                port = relay.begin()
                write_config(conf, os.path.join(work, "state"), port,
                             dc.ca_file, accounts, self.connections,
                             lmtp=lmtp)
            server_cpu = boxes.cpu()
            r = self.measured(tools, dc, [tools.binary, "-c", conf,
                                          "--once"], work, "popfetchd")
            r["server_cpu"] = boxes.cpu() - server_cpu
        finally:
            relay_cpu = relay.end() if relay is not None else None
        r["relay_cpu"] = relay_cpu
        line = self.check(r, expect, boxes, k)
        if relay is not None:
            line += ", relay CPU %.2f s" % r["relay_cpu"]
        return r, line

    def measured(self, tools, dc, argv, work, name, env=None):
        """measure() of ARGV, on CPUs of its own if the scenario says,
        with an idle loop beside it."""
        if not self.split_cpus:
            return measure(tools, argv, work, name, env=env, idle=True)
        with CpuSplit(dc) as split:
            return measure(tools, argv, work, name, split.client, env=env,
                           idle=True)

    def disk_run(self, tools, dc, work):
        """The disk reference, on CPUs of its own as popfetchd if the
        scenario says; its wall time and CPU time, s."""
        if not self.split_cpus:
            return run_disk(tools, self, work)
        with CpuSplit(dc) as split:
            return run_disk(tools, self, work, split.client)

    def netref_run(self, tools, dc, boxes, work, relay, beside=None):
        """The network reference on the refilled server (through a relay
        of its own if popfetchd had one); its measure() dict. BESIDE:
        called with the CPUs the client may use (None: all) right before
        bench_netref starts, to start what runs beside it."""
        boxes.sync(self.users, work)
        for user, messages, _ in self.batches():
            boxes.seed(user, messages)
        warm_server(dc, boxes, self.concurrency())
        os.sync()
        port = dc.ssl_port
        server_cpu = boxes.cpu()
        try:
            if relay is not None:
                port = relay.begin()
            if self.split_cpus:
                with CpuSplit(dc) as split:
                    if beside is not None:
                        beside(split.client)
                    net = run_netref(tools, self, dc, port, work,
                                     split.client)
            else:
                if beside is not None:
                    beside(None)
                net = run_netref(tools, self, dc, port, work)
        finally:
            relay_cpu = relay.end() if relay is not None else None
        net["server_cpu"] = boxes.cpu() - server_cpu
        net["relay_cpu"] = relay_cpu
        left = boxes.left(self.users)
        if left:
            raise BenchError("%s: bench_netref left %d messages on the "
                             "server" % (self.key, left))
        return net

    def both_run(self, tools, dc, boxes, work, relay):
        """The two references at once, on the refilled server: the disk
        reference started right before the network reference, each as
        it runs alone, on the CPUs popfetchd had. A client that did
        both with nothing between them could do no better on this
        machine. The later of the two, s: the network reference's own
        wall time (exec to exit, not until this script has checked the
        server after it), and the disk reference's from its start. The
        network reference starts a few milliseconds after the disk's
        (its accounts file is written first): left out, which errs
        short, against popfetchd."""
        self.corpus.write(tools.scratch)  # and synced by netref_run()
        disk = {}

        def run(cpus):
            try:
                run_disk(tools, self, work, cpus, "disk-both", sync=False)
            except BenchError as e:
                disk["error"] = e
            disk["end"] = time.monotonic()

        def start(cpus):
            disk["start"] = time.monotonic()
            disk["thread"] = threading.Thread(target=run, args=(cpus,))
            disk["thread"].start()

        try:
            net = self.netref_run(tools, dc, boxes, work, relay, start)
        finally:
            if "thread" in disk:
                disk["thread"].join()
        if "error" in disk:
            raise disk["error"]
        return max(net["wall"], disk["end"] - disk["start"])

    def refs_text(self, r):
        """What a run line says of the references."""
        out = ""
        if r.get("disk") is not None:
            out += ", disk %.2f s" % r["disk"]
        if r.get("net") is not None:
            out += ", net %.2f s (CPU %.2f s, server CPU %.2f s)" % (
                r["net"], r["net_cpu"], r["net_server_cpu"])
        limit = self.limit_of(r)
        if limit is not None:
            out += ": %.2fx the limit" % (r["wall"] / limit)
        if r.get("both") is not None:
            out += "; both at once %.2f s: %.2fx" % (
                r["both"], r["wall"] / r["both"])
        bound = self.cpu_bound(r)
        if bound is not None:
            out += " (CPU bound %.2f s: %.2fx)" % (bound, r["wall"] / bound)
        return out

    def cpu_bound(self, r):
        """What run R's CPUs allow at best, s, or None: the CPU time of
        the two references' programs (the server's and the relay's in the
        network reference's run, bench_netref's, bench_floor's) over the
        machine's CPUs. Where they share the CPUs, the limit (the larger
        reference) assumes the disk's work fits where the network's
        leaves a CPU idle; this says how much room there is. A lower
        bound: the kernel's threads (the loop device's, the journal's)
        are not counted. Not for scenarios on split CPUs (the server's
        CPU is its own there)."""
        if self.split_cpus or r.get("net") is None or \
                r.get("disk_cpu") is None:
            return None
        cpu = (r["net_server_cpu"] + r["net_cpu"] + r["disk_cpu"] +
               (r.get("net_relay_cpu") or 0))
        return cpu / os.cpu_count()

    @staticmethod
    def limit_of(r):
        """The larger of run R's references (s), or None."""
        refs = [r[k] for k in ("net", "disk") if r.get(k) is not None]
        return max(refs) if refs else None

    def check(self, r, expect, boxes, k):
        """Checks run K (R); the line that tells it."""
        problems = []
        if r["status"] != 0:
            problems.append("popfetchd exited with status %d"
                            % r["status"])
        problems += verify(expect, boxes, self.users, self.lmtp)
        if problems:
            with open(r["log"], errors="replace") as f:
                tail = f.read()[-3000:]
            raise BenchError("%s run %d failed:\n  %s\npopfetchd log "
                             "(end):\n%s" % (self.key, k + 1,
                                             "\n  ".join(problems), tail))
        line = ("  %s run %d: wall %.2f s, CPU %.2f s (user %.2f, sys "
                "%.2f), RSS %.1f MiB (anon %.1f), server CPU %.2f s, "
                "loop stall %s ms (its own CPU %s ms; in stalls over 10 ms, "
                "%s ms waiting for a CPU, %s ms blocked)"
                % (self.key, k + 1, r["wall"], r["cpu"], r["user"],
                   r["sys"], r["rss"], r["anon"], r["server_cpu"],
                   "%.1f" % r["stall"] if r["stall"] is not None else "?",
                   "%.1f" % r["loop_cpu"] if r["loop_cpu"] is not None
                   else "?",
                   "%.1f" % r["runq"] if r.get("runq") is not None
                   else "?",
                   "%.1f" % r["blocked"] if r.get("blocked") is not None
                   else "?"))
        if r.get("idle_stall") is not None:
            line += (", an idle loop beside it: stall %.1f ms (%.1f ms "
                     "blocked in stalls over 10 ms)"
                     % (r["idle_stall"], r["idle_blocked"] or 0.0))
        r["polls"] = summaries(r["log"])
        held = [h for _, h in r["polls"].values()]
        if held:
            line += ", reading held for delivery %.2f s" % max(held)
            if len(held) > 1:
                line += " (longest account; mean %.2f s)" % (
                    statistics.mean(held))
        return line

    def median(self, field):
        values = [r[field] for r in self.runs]
        return statistics.median(values) if values else None

    def wall_over(self, of):
        """Median of the per-run ratios popfetchd's wall / OF(run), or
        None if a run has no OF."""
        dens = [of(r) for r in self.runs]
        if not dens or None in dens:
            return None
        return statistics.median(r["wall"] / d
                                 for r, d in zip(self.runs, dens))

    def ratio(self):
        """Median of the per-run ratios popfetchd / the larger reference."""
        return self.wall_over(self.limit_of)

    def both_ratio(self):
        """Median of the per-run ratios popfetchd / both references at
        once, or None."""
        return self.wall_over(lambda r: r.get("both"))



def summaries(log):
    """The summary lines in popfetchd's log LOG: {account: (secs, held)},
    held being how long the poll left the server's data unread while its
    delivery caught up (s)."""
    with open(log, errors="replace") as f:
        return {m.group(1): (float(m.group(2)), float(m.group(3)))
                for m in re.finditer(r"account=(\S+) listed=.* "
                                     r"secs=([0-9.]+) held=([0-9.]+)",
                                     f.read())}


# --- B7: --status while the daemon polls -----------------------------------

TABLE_POLLING = re.compile(r"^\S+\s+polling\s", re.M)


def ask_socket(path):
    """One request over the status socket: (seconds, the parsed answer)."""
    t = time.perf_counter()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(60)
        s.connect(path)
        s.sendall(b"status\n")
        chunks = []
        while True:
            b = s.recv(1 << 16)
            if not b:
                break
            chunks.append(b)
    secs = time.perf_counter() - t
    try:
        doc = json.loads(b"".join(chunks))
    except ValueError:
        raise BenchError("%s: not a JSON answer (%d bytes)"
                         % (path, sum(len(c) for c in chunks)))
    return secs, doc


def ask_process(binary, env):
    """One `popfetchd --status`: (seconds, accounts polling)."""
    t = time.perf_counter()
    p = subprocess.run([binary, "--status"], env=env, capture_output=True,
                       text=True, timeout=60)
    secs = time.perf_counter() - t
    if p.returncode != 0:
        raise BenchError("popfetchd --status exited with %d: %s"
                         % (p.returncode, p.stderr.strip()))
    return secs, len(TABLE_POLLING.findall(p.stdout))


def percentile(values, q):
    """The nearest-rank Q-th percentile of VALUES (not empty)."""
    v = sorted(values)
    return v[max(0, min(len(v) - 1, -(-len(v) * q // 100) - 1))]


def spread_ms(values):
    """"median/p90/max" of VALUES (seconds) in ms, or "-"."""
    if not values:
        return "-"
    return "%.1f/%.1f/%.1f" % (statistics.median(values) * 1000,
                               percentile(values, 90) * 1000,
                               max(values) * 1000)


class StatusScenario(Scenario):
    """B7: the daemon polls B6's accounts; --status is asked meanwhile."""

    def run_once(self, tools, dc, boxes, port, k, relay=None):
        work, expect, accounts = self.prepare(tools, dc, boxes, k)
        conf = os.path.join(work, "popfetchd.conf")
        write_config(conf, os.path.join(work, "state"), port, dc.ca_file,
                     accounts, self.connections,
                     poll_interval=POLL_INTERVAL_B7)
        runtime = os.path.join(work, "run")
        os.mkdir(runtime, 0o700)
        env = {"RUNTIME_DIRECTORY": runtime}
        sock = os.path.join(runtime, "status.sock")
        os.sync()
        pid = []
        out = {}

        def daemon():
            try:
                out["r"] = measure(tools, [tools.binary, "-c", conf], work,
                                   "popfetchd", env=env,
                                   started=pid.append)
            except BaseException as e:  # told in this thread, below
                out["error"] = e

        server_cpu = boxes.cpu()
        th = threading.Thread(target=daemon)
        th.start()
        try:
            sock_s, proc_s, asked = self.ask(tools, sock, env, th)
        finally:
            if pid:
                try:
                    os.kill(pid[0], signal.SIGTERM)
                except ProcessLookupError:
                    pass
            th.join()
        if "error" in out:
            raise out["error"]
        r = out["r"]
        r["server_cpu"] = boxes.cpu() - server_cpu
        r["relay_cpu"] = r["net"] = r["disk"] = None
        r["status_socket"], r["status_process"] = sock_s, proc_s
        line = self.check(r, expect, boxes, k)
        self.runs.append(r)
        print("%s; --status while polling (median/p90/max ms): socket %s "
              "(%d of %d asks), process %s (%d of %d)"
              % (line, spread_ms(sock_s), len(sock_s), asked[0],
                 spread_ms(proc_s), len(proc_s), asked[1]), flush=True)

    def ask(self, tools, sock, env, th):
        """Asks in turn by socket and by process until ASK_FOR_B7 s have
        passed and every account has fetched its messages. The times of
        the answers that showed an account polling, and the asks made."""
        env = dict(os.environ, **env)
        deadline = time.monotonic() + START_WAIT
        while True:  # a benchmark's start-up, not a test's event
            if not th.is_alive():
                raise BenchError("popfetchd stopped before it answered")
            try:
                ask_socket(sock)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise BenchError("no answer on %s in %d s"
                                     % (sock, START_WAIT))
                time.sleep(ASK_EVERY_B7)
        sock_s, proc_s, asked = [], [], [0, 0]
        end = time.monotonic() + ASK_FOR_B7
        done = False
        while not done or time.monotonic() < end:
            if not th.is_alive():
                raise BenchError("popfetchd stopped while asked")
            secs, doc = ask_socket(sock)
            asked[0] += 1
            states = [a.get("state") for a in doc["accounts"]]
            if "polling" in states:
                sock_s.append(secs)
            done = all(a["totals"]["fetched"] >= self.per_account
                       for a in doc["accounts"])
            time.sleep(ASK_EVERY_B7)
            secs, polling = ask_process(tools.binary, env)
            asked[1] += 1
            if polling:
                proc_s.append(secs)
            time.sleep(ASK_EVERY_B7)
        return sock_s, proc_s, asked

    def pooled(self, field):
        """FIELD's samples over all runs."""
        return [x for r in self.runs for x in r[field]]

class SlowDiskScenario(Scenario):
    """B10: half the accounts deliver to a disk slow to sync (the
    bench_slowdisk shim), the other half to the work tree's. Each run
    polls them all twice, with no delay and with it (in turn first)."""

    def prepare_half(self, tools, dc, boxes, k, name):
        """As prepare(), every other account's Maildir under slow/."""
        work = os.path.join(tools.scratch, "%s-run%d-%s"
                            % (self.key, k + 1, name))
        for sub in ("mail", "slow"):
            os.makedirs(os.path.join(work, sub))
        boxes.ensure_users(self.users)
        boxes.clear(self.users)
        expect, accounts, slow = {}, [], set()
        for i, (user, messages, digests) in enumerate(self.batches()):
            if i % 2:
                slow.add(user)
            boxes.seed(user, messages)
            md = os.path.join(work, "slow" if i % 2 else "mail", user)
            expect[md] = digests
            accounts.append((user, user, md))
        return work, expect, accounts, slow

    def poll(self, tools, dc, boxes, port, k, name, delay):
        """One popfetchd run over fresh Maildirs and refilled mailboxes,
        checked; its measure() dict with the mean poll time (the summary
        lines' secs) of the accounts on either disk, and how many syncs
        the shim delayed."""
        work, expect, accounts, slow = self.prepare_half(
            tools, dc, boxes, k, name)
        conf = os.path.join(work, "popfetchd.conf")
        write_config(conf, os.path.join(work, "state"), port, dc.ca_file,
                     accounts, self.connections)
        count = os.path.join(work, "slowdisk.count")
        env = {"LD_PRELOAD": tools.slowdisk,
               "SLOWDISK_PREFIX": os.path.join(work, "slow") + "/",
               "SLOWDISK_MS": str(delay), "SLOWDISK_COUNT": count}
        os.sync()
        server_cpu = boxes.cpu()
        r = self.measured(tools, dc, [tools.binary, "-c", conf, "--once"],
                          work, "popfetchd-" + name, env=env)
        r["server_cpu"] = boxes.cpu() - server_cpu
        line = self.check(r, expect, boxes, k)
        secs = {u: s for u, (s, _) in r["polls"].items()}
        if set(secs) != set(self.users):
            raise BenchError("%s run %d (%s): %d of %d summary lines"
                             % (self.key, k + 1, name, len(secs),
                                len(self.users)))
        r["others"] = statistics.mean(v for u, v in secs.items()
                                      if u not in slow)
        r["slowed"] = statistics.mean(v for u, v in secs.items()
                                      if u in slow)
        try:
            with open(count) as f:
                r["delayed"] = int(f.read())
        except FileNotFoundError:
            r["delayed"] = 0
        return r, line

    def run_once(self, tools, dc, boxes, port, k, relay=None):
        # In turn first and second: what a run leaves on the disk (files
        # to write back, inodes freed) weighs on the next.
        if k % 2 == 0:
            base, _ = self.poll(tools, dc, boxes, port, k, "base", 0)
        r, line = self.poll(tools, dc, boxes, port, k, "slow",
                            SYNC_DELAY_B10)
        if k % 2 == 1:
            base, _ = self.poll(tools, dc, boxes, port, k, "base", 0)
        if r["delayed"] == 0:
            raise BenchError("%s run %d: the shim delayed no sync (is "
                             "%s preloaded?)" % (self.key, k + 1,
                                                 tools.slowdisk))
        r["relay_cpu"] = r["net"] = r["disk"] = None
        r["others_base"] = base["others"]
        r["others_ratio"] = r["others"] / base["others"]
        self.runs.append(r)
        print("%s; the other half's polls %.2f s on average (%.2f s with no "
              "delay: %.2fx), the slow half's %.2f s (%.2f s), %d syncs "
              "delayed %d ms" % (line, r["others"], base["others"],
                                 r["others_ratio"], r["slowed"],
                                 base["slowed"], r["delayed"],
                                 SYNC_DELAY_B10), flush=True)

# --- the report -----------------------------------------------------------

def verdict(ok):
    return "PASS" if ok else "MISS"


def own_target(sc, results):
    """(target text, PASS/MISS or "") of scenario SC besides the limit,
    or None."""
    if sc.key == "B2":
        b1 = results.get("B1")
        if b1 is None or not b1.runs:
            return ("<= B1 + %.0f s" % TARGET_B2_EXTRA, "n/a (B1 not run)")
        limit = b1.median("wall") + TARGET_B2_EXTRA
        return ("<= B1 + %.0f s = %.2f s" % (TARGET_B2_EXTRA, limit),
                verdict(sc.median("wall") <= limit))
    if sc.key in ("B4", "B5"):
        rss = TARGET_B4_RSS if sc.key == "B4" else TARGET_B5_RSS
        return ("RSS <= %d MiB" % rss, verdict(sc.median("rss") <= rss))
    if sc.key in ("B6", "B9"):
        stalls = [r["stall"] for r in sc.runs]
        stall = statistics.median(stalls) if None not in stalls else None
        return ("loop stall <= %d ms" % TARGET_B6_STALL,
                verdict(stall is not None and stall <= TARGET_B6_STALL))
    if sc.key == "B10":
        stalls = [r["stall"] for r in sc.runs]
        stall = statistics.median(stalls) if None not in stalls else None
        ratio = sc.median("others_ratio")
        return ("loop stall <= %d ms, others' polls <= %.1fx: %.2fx"
                % (TARGET_B6_STALL, TARGET_B10_OTHERS, ratio),
                verdict(stall is not None and stall <= TARGET_B6_STALL and
                        ratio <= TARGET_B10_OTHERS))
    if sc.key == "B7":
        sock, proc = sc.pooled("status_socket"), sc.pooled("status_process")
        ok = (sock and proc and
              statistics.median(sock) * 1000 <= TARGET_B7_SOCKET and
              statistics.median(proc) * 1000 <= TARGET_B7_PROCESS)
        return ("--status <= %d/%d ms" % (TARGET_B7_SOCKET,
                                          TARGET_B7_PROCESS), verdict(ok))
    return None


def targets_of(sc, results):
    """The targets of scenario SC with their verdicts, as one text."""
    out = []
    if sc.lmtp:
        out.append("(LMTP, the limit here, not measured)")
    elif sc.ratio() is not None:
        out.append("limit <= %.1fx %s" % (TARGET_LIMIT,
                                          verdict(sc.ratio() <= TARGET_LIMIT)))
    own = own_target(sc, results)
    if own is not None:
        out.append(("%s %s" % own).rstrip())
    b1 = results.get("B1")
    if sc.key == "B7" and b1 is not None and b1.runs:
        out.append("(%.2fx B1's wall)"
                   % (sc.median("wall") / b1.median("wall")))
    return "; ".join(out)


def optional(sc, field, fmt):
    """FMT of SC's median FIELD, or "-" if a run lacks it."""
    if not sc.runs or any(r.get(field) is None for r in sc.runs):
        return "-"
    return fmt % sc.median(field)


def print_table(order, results, runs):
    print()
    print("popfetchd benchmark: median of %d run%s each" % (
        runs, "" if runs == 1 else "s"))
    head = (("%-38s" + " %6s" * 10 + " %5s" * 5 + "  %s")
            % ("scenario", "wall s", "net s", "disk s", "both s", "ratio",
               "r/both", "CPU s", "server", "RSSMiB", "anon", "stall", "lcpu",
               "runq", "blk", "idle", "targets"))
    print(head)
    print("-" * 154)
    for key in order:
        sc = results.get(key)
        if sc is None:
            continue
        if not sc.runs:
            print("%-38s %s" % (sc.key + "  " + sc.title,
                                "FAILED (see above)"))
            continue
        ratio = sc.ratio()
        both = sc.both_ratio()
        targets = targets_of(sc, results)
        if sc.failed:
            targets += ", a run FAILED"
        row = ("%-38s %6.2f %6s %6s %6s %6s %6s %6.2f %6.2f %6.1f %5.1f %5s "
               "%5s %5s %5s %5s  %s" % (sc.key + "  " + sc.title,
                       sc.median("wall"),
                       optional(sc, "net", "%.2f"),
                       optional(sc, "disk", "%.2f"),
                       optional(sc, "both", "%.2f"),
                       "%.2fx" % ratio if ratio is not None else "-",
                       "%.2fx" % both if both is not None else "-",
                       sc.median("cpu"), sc.median("server_cpu"),
                       sc.median("rss"), sc.median("anon"),
                       optional(sc, "stall", "%.1f"),
                       optional(sc, "loop_cpu", "%.1f"),
                       optional(sc, "runq", "%.1f"),
                       optional(sc, "blocked", "%.1f"),
                       optional(sc, "idle_stall", "%.1f"), targets))
        print(row.rstrip())
    print(textwrap.fill(
        "wall: popfetchd --once from exec to exit (B7: the daemon's run), "
        "s; net: bench_netref, the same accounts fetched, deleted and "
        "quit on the same path with nothing stored, from exec to exit, "
        "s; disk: bench_floor disk, the same bytes made durable as "
        "popfetchd does (a syncfs and a journal commit per batch of %d), "
        "no network, s; both: the two started together, from the start "
        "to the later exit, s; ratio: wall / the larger of net and disk, "
        "per run (the limit: %.1fx at most); r/both: wall / both, per "
        "run; CPU: popfetchd's user + sys, s; server: Dovecot's CPU "
        "meanwhile, s; RSSMiB: popfetchd's peak RSS (wait4 ru_maxrss, "
        "shared library pages included), MiB; anon: peak of RssAnon, "
        "sampled every %g ms, MiB; stall: the longest the event loop was "
        "held, ms; lcpu: the most CPU the loop thread used between two "
        "2 ms ticks, ms; runq, blk: of the stalls over 10 ms together, "
        "the time the loop thread waited for a CPU, and the time it was "
        "blocked in a call or asleep past its timer (neither running nor "
        "runnable), ms; idle: the longest stall of an idle loop with the "
        "same meter beside popfetchd, on its CPUs: what a loop with no "
        "work of its own waits there, ms."
        % (BATCH, TARGET_LIMIT, SAMPLE_EVERY * 1000), 88))
    print("MiB = 1024 KiB.")
    relayed = [results[k] for k in order if k in results
               and results[k].relay is not None and results[k].runs]
    if relayed:
        print("The relay (C, same machine) used, median CPU s: %s."
              % ", ".join("%s %.2f" % (sc.key, sc.median("relay_cpu"))
                          for sc in relayed))
    b7 = results.get("B7")
    if b7 is not None and b7.runs:
        print("B7 --status while the daemon polls, median/p90/max ms over "
              "all runs: the socket's\nanswer %s (%d asks), the whole "
              "popfetchd --status %s (%d asks);\ntarget: medians <= %d "
              "and %d ms. Only answers that showed an account polling "
              "count."
              % (spread_ms(b7.pooled("status_socket")),
                 len(b7.pooled("status_socket")),
                 spread_ms(b7.pooled("status_process")),
                 len(b7.pooled("status_process")), TARGET_B7_SOCKET,
                 TARGET_B7_PROCESS))
    b2, b20 = results.get("B2"), results.get("B2-0")
    if b2 is not None and b20 is not None and b2.runs and b20.runs:
        print("B2 - B2-0, what the 20 ms round trip alone costs: %.2f s."
              % (b2.median("wall") - b20.median("wall")))
    print()


# --- main -----------------------------------------------------------------

def parse_args():
    ap = argparse.ArgumentParser(
        description="popfetchd end-to-end benchmark (see the file's "
                    "docstring).")
    ap.add_argument("--runs", type=int, default=None,
                    help="runs per scenario; the median is shown "
                         "(default 3, 1 with --quick)")
    ap.add_argument("--only", default=",".join(SCENARIOS),
                    help="comma-separated scenarios (default all: "
                         "B1,B2,B3,B4,B5,B6,B7,B8,B9,B10)")
    ap.add_argument("--accounts", type=int, default=None,
                    help="accounts in B5 (default 10000, 200 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="smaller everything, one run: a smoke test")
    ap.add_argument("--no-overlap", action="store_true",
                    help="do not run the two references at once (the "
                         "\"both\" column), which takes each scenario's "
                         "network reference twice per run")
    ap.add_argument("--keep", action="store_true",
                    help="keep the scratch folder")
    ap.add_argument("--dir", default=os.path.join(ROOT, "build"),
                    help="where the scratch folder goes: the server's "
                         "mailboxes and popfetchd's Maildirs (default "
                         "build/)")
    ap.add_argument("--binary", default=os.path.join(ROOT, "build",
                                                     "popfetchd"))
    ap.add_argument("--floor", default=os.path.join(ROOT, "build",
                                                    "bench_floor"),
                    help="the disk reference and rusage launcher "
                         "(bench/floor.c)")
    ap.add_argument("--netref", default=os.path.join(ROOT, "build",
                                                     "bench_netref"),
                    help="the network reference (bench/netref.c)")
    ap.add_argument("--relay", default=os.path.join(ROOT, "build",
                                                    "bench_relay"),
                    help="the latency relay of B2 and B3 (bench/relay.c)")
    ap.add_argument("--slowdisk", default=os.path.join(
        ROOT, "build", "bench_slowdisk.so"),
                    help="the slow-disk shim of B10 (bench/slowdisk.c)")
    args = ap.parse_args()
    only = [s.strip().upper() for s in args.only.split(",") if s.strip()]
    bad = [s for s in only if s not in SCENARIOS]
    if bad or not only:
        ap.error("--only: unknown scenario %s (known: %s)"
                 % (", ".join(bad) or "(none)", ",".join(SCENARIOS)))
    args.only = [s for s in SCENARIOS if s in only]
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.accounts is None:
        args.accounts = 200 if args.quick else 10000
    if args.runs < 1 or args.accounts < 1:
        ap.error("--runs and --accounts must be at least 1")
    needed = [args.binary, args.floor, args.netref]
    if {"B2", "B3"} & set(args.only):
        needed.append(args.relay)
    if "B10" in args.only and not os.access(args.slowdisk, os.R_OK):
        ap.error("%s cannot be read (build with: bash tools/build.sh "
                 "build)" % args.slowdisk)
    for path in needed:
        if not os.access(path, os.X_OK):
            ap.error("%s is not an executable (build with: bash "
                     "tools/build.sh build)" % path)
    return args


def build_scenarios(args):
    """The selected scenarios with their corpora (generated here)."""
    if args.quick:
        count, huge_count, huge = 500, 1, (2 * MiB, 3 * MiB)
        big = 2 * MiB
    else:
        count, huge_count, huge = 5000, 3, (3 * MiB, 4 * MiB)
        big = 20 * MiB
    out = {}
    mixed = None
    if {"B1", "B2", "B3", "B6", "B7", "B8", "B9", "B10"} & set(args.only):
        t = time.monotonic()
        mixed = mixed_corpus("mixed", count, huge_count, huge)
        print("corpus B1/B2/B3: %s; generated in %.1f s"
              % (mixed.describe(), time.monotonic() - t), flush=True)
    if "B1" in args.only:
        out["B1"] = Scenario("B1", "1 x %d msgs, TLS" % count, mixed,
                             count, connections=4, user_prefix="single")
    if "B8" in args.only:
        # The disk reference is a Maildir's: not where B8 delivers.
        out["B8"] = Scenario("B8", "as B1, into Dovecot LMTP", mixed,
                             count, connections=4, user_prefix="single",
                             lmtp=True, refs=("net",))
    if "B2" in args.only:
        out["B2"] = Scenario("B2", "as B1, 20 ms RTT", mixed, count,
                             relay=DELAY_MS, connections=4,
                             user_prefix="single")
        # The control: B2's path with no delay. The relay runs on the
        # same CPUs; B2 - B2-0 is what the latency alone costs.
        out["B2-0"] = Scenario("B2-0", "as B1, via the relay at 0 ms", mixed,
                               count, relay=0, connections=4,
                               user_prefix="single")
    if "B3" in args.only:
        n = count // PER_ACCOUNT_B3
        out["B3"] = Scenario("B3", "%d x %d msgs, 20 ms RTT, %d conns"
                             % (n, PER_ACCOUNT_B3, CONNECTIONS), mixed,
                             PER_ACCOUNT_B3, relay=DELAY_MS)
    if "B6" in args.only:
        per = count // (ACCOUNTS_B6 if not args.quick else 100)
        out["B6"] = Scenario("B6", "%d x %d msgs, %d conns"
                             % (count // per, per, CONNECTIONS_B6), mixed,
                             per, connections=CONNECTIONS_B6,
                             split_cpus=True)
    if "B9" in args.only:
        per = count // (ACCOUNTS_B6 if not args.quick else 100)
        out["B9"] = Scenario("B9", "as B6, competing writer", mixed, per,
                             connections=CONNECTIONS_B6, user_prefix="b9",
                             split_cpus=True, slow_disk=True)
    if "B10" in args.only:
        accounts = ACCOUNTS_B10 if not args.quick else 10
        c = Corpus("b10", mixed.messages[:accounts * PER_ACCOUNT_B10])
        out["B10"] = SlowDiskScenario(
            "B10", "%d x %d msgs, half on a slow disk"
            % (accounts, PER_ACCOUNT_B10), c, PER_ACCOUNT_B10,
            connections=CONNECTIONS_B6, split_cpus=True, refs=())
    if "B7" in args.only:
        per = count // (ACCOUNTS_B6 if not args.quick else 100)
        out["B7"] = StatusScenario(
            "B7", "as B6, daemon, --status asked", mixed, per,
            connections=CONNECTIONS_B6, user_prefix="b6", refs=())
    if "B4" in args.only:
        c = sized_corpus("big", 3, (big, big))
        print("corpus B4: %s" % c.describe(), flush=True)
        out["B4"] = Scenario("B4", "1 x 3 msgs of %d MiB" % (big // MiB),
                             c, 3, connections=4, user_prefix="big")
    if "B5" in args.only:
        t = time.monotonic()
        c = sized_corpus("accounts", args.accounts, mailgen.SMALL)
        print("corpus B5: %s; generated in %.1f s"
              % (c.describe(), time.monotonic() - t), flush=True)
        out["B5"] = Scenario("B5", "%d accts x 1 msg, TLS, %d conns"
                             % (args.accounts, CONNECTIONS), c, 1,
                             user_prefix="a")
    return out


def context_lines(tools):
    """Facts that help read the figures."""
    lines = ["machine: %s, %d CPUs, Python %s" % (
        platform.platform(), os.cpu_count(), platform.python_version())]
    v = subprocess.run([tools.binary, "--version"], capture_output=True,
                       text=True).stdout.strip().split("\n")[0]
    tree = subprocess.run(["git", "-C", ROOT, "describe", "--always",
                           "--dirty"], capture_output=True,
                          text=True).stdout.strip() or "?"
    lines.append("popfetchd: %s, %s built %s, work tree %s" % (
        v, tools.source, time.strftime(
            "%Y-%m-%d %H:%M:%S", time.localtime(os.stat(
                tools.binary).st_mtime)), tree))
    try:
        v = subprocess.run([dovecot.DOVECOT, "--version"],
                           capture_output=True, text=True).stdout.strip()
        lines.append("server: Dovecot %s on 127.0.0.1" % v)
    except OSError:
        pass
    probe = tempfile.mkdtemp(prefix="rss-", dir=tools.scratch)
    r = measure(tools, ["/bin/true"], probe, "true")
    lines.append("RSS baseline: /bin/true under bench_floor measure "
                 "reports %.1f MiB" % r["rss"])
    return lines


def main():
    args = parse_args()
    os.makedirs(args.dir, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="bench-",
                               dir=os.path.abspath(args.dir))
    os.chmod(scratch, 0o755)  # Dovecot's users reach its folder below
    # A copy, so that a rebuild while the benchmark runs changes nothing.
    binary = os.path.join(scratch, "popfetchd")
    shutil.copy2(args.binary, binary)
    tools = Tools(binary, os.path.abspath(args.floor),
                  os.path.abspath(args.netref), scratch,
                  os.path.relpath(os.path.abspath(args.binary)),
                  os.path.abspath(args.slowdisk))
    started = time.monotonic()
    failed = []
    dc = None
    relays = {}  # delay in ms -> ProcessRelay
    results = {}
    try:
        for line in context_lines(tools):
            print(line)
        results = build_scenarios(args)
        for sc in results.values():
            sc.overlap = not args.no_overlap
        dc = start_dovecot(scratch, lmtp="B8" in results)
        boxes = Mailboxes(dc)
        delays = sorted({sc.relay for sc in results.values()
                         if sc.relay is not None})
        if delays:
            secs, rate, cpu = relay_throughput(args.relay)
            print("relay: %s (C, a process per run): 100 MB at 0 ms in "
                  "%.2f s (%.0f MB/s, CPU %.2f s); %d ms each way in B2/B3"
                  % (os.path.relpath(args.relay), secs, rate, cpu,
                     DELAY_MS))
        for delay in delays:
            relays[delay] = ProcessRelay(args.relay, "127.0.0.1",
                                         dc.ssl_port, delay)
        print("scratch: %s" % scratch, flush=True)
        # Run k of every scenario, then run k + 1: slow drifts of the
        # machine touch all scenarios alike.
        for k in range(args.runs):
            for sc in results.values():
                if sc.failed:
                    continue
                relay = relays.get(sc.relay)
                port = dc.ssl_port  # the relay's replaces it in run_once
                try:
                    sc.run_once(tools, dc, boxes, port, k, relay)
                except (BenchError, OSError) as e:
                    # OSError: a full scratch file system fails the
                    # scenario, not the whole benchmark.
                    where = ("" if isinstance(e, BenchError)
                             else "%s run %d: " % (sc.key, k + 1))
                    print("FAILED: %s%s" % (where, e), file=sys.stderr,
                          flush=True)
                    failed.append(sc.key)
                    sc.failed = True
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        failed.append("interrupted")
    finally:
        if dc is not None:
            dc.cleanup()
        if args.keep:
            print("kept %s" % scratch)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    print_table(list(results), results, args.runs)
    print("total time %.0f s" % (time.monotonic() - started))
    if failed:
        print("failed: %s" % ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
