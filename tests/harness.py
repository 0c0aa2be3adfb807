"""What the Python tests share: the binary under test and how to run it,
configuration files, a Maildir's messages, popfetchd in the foreground,
a throwaway certificate authority, and test cases with a fresh folder per
test against the scripted server (FakePopCase) or a real Dovecot
(DovecotCase).

The binary is BINARY: --binary PATH (or --binary=PATH) on the command
line, else $POPFETCHD, else build/popfetchd. Importing this module takes
--binary out of sys.argv, so that unittest.main() does not see it.

The Python helpers all live here in tests/ (harness.py, fakepop.py,
dovecot.py, mailgen.py), and every user imports them by module name. A
script in tests/ needs no path code for it: Python puts the folder of the
script it runs first on sys.path. The two users elsewhere,
bench/bench.py and tools/demo.py, add tests/ to sys.path with the same
one line.

KEEP_TMP=1 leaves each test's folder behind.
"""

import collections
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from dovecot import Dovecot
from fakepop import FakePop, make_cert

# One run of popfetchd --once takes this long at most, seconds.
RUN_TIMEOUT = 120
# Upper bound of any single wait for an event; a test fails, never hangs.
WAIT = 60

# What the runner's environment must not pass on to popfetchd: its service
# manager's sockets and credentials, and the test builds' hooks (a test
# that wants one sets it).
FOREIGN_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
               "CREDENTIALS_DIRECTORY", "POPFETCHD_CRASH_AT",
               "POPFETCHD_FAIL", "POPFETCHD_NOW")


def take_binary_arg(argv):
    """Remove --binary PATH (or --binary=PATH) from ARGV; return PATH."""
    found = None
    rest = []
    it = iter(argv)
    for arg in it:
        if arg == "--binary":
            found = next(it, None)
        elif arg.startswith("--binary="):
            found = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    argv[:] = rest
    return found


# Absolute: tests run it from other folders.
BINARY = os.path.abspath(take_binary_arg(sys.argv) or
                         os.environ.get("POPFETCHD", "build/popfetchd"))


def has_test_hooks():
    """Whether BINARY was built with -Dtest_hooks=true."""
    with open(BINARY, "rb") as f:
        return b"POPFETCHD_NOW" in f.read()


def tempdir():
    return tempfile.mkdtemp(prefix="popfetchd-test-")


def clean_env(extra=None):
    """This process's environment without FOREIGN_ENV, plus EXTRA."""
    env = dict(os.environ)
    for key in FOREIGN_ENV:
        env.pop(key, None)
    env.update(extra or {})
    return env


def multiset(messages):
    return collections.Counter(messages)


# --- configuration files -----------------------------------------------------

def conf_value(v):
    """V as libconfig text: a bool, an int, a list, a group (a dict) or a
    string."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[ " + ", ".join(conf_value(x) for x in v) + " ]"
    if isinstance(v, dict):
        return "{ " + conf_lines(v, "", " ") + "}"
    return '"%s"' % v.replace("\\", "\\\\").replace('"', '\\"')


def conf_lines(settings, indent="", end="\n"):
    """SETTINGS as "key = value;" lines; a value of None leaves the key
    out."""
    return "".join("%s%s = %s;%s" % (indent, k, conf_value(v), end)
                   for k, v in settings.items() if v is not None)


def write_config(path, accounts, mode=0o600, **settings):
    """Write a configuration file: SETTINGS, then ACCOUNTS (dicts of
    account settings). The file is made with MODE (0600 by default: it
    holds passwords) and replaces PATH in one step, so that a daemon
    reloading it never reads half of it. Returns PATH."""
    text = conf_lines(settings) + "accounts = (\n%s\n);\n" % ",\n".join(
        "  {\n%s  }" % conf_lines(a, "    ") for a in accounts)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.rename(tmp, path)
    return path


# --- Maildirs ---------------------------------------------------------------

def poll_until(pred, what, timeout=WAIT):
    """Until PRED() is true, looking every 10 ms; fails after TIMEOUT s.
    Only for a state nothing announces (a file another process makes, a
    process that ends): whatever is logged is awaited with wait_line()."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("no %s within %d s" % (what, timeout))
        time.sleep(0.01)


def maildir_files(maildir, sub):
    """The file names in MAILDIR/SUB, sorted; [] if there is no SUB."""
    folder = os.path.join(maildir, sub)
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def maildir_messages(maildir, sub="new"):
    """The messages in MAILDIR/SUB, as bytes, in file name order."""
    out = []
    for name in maildir_files(maildir, sub):
        with open(os.path.join(maildir, sub, name), "rb") as f:
            out.append(f.read())
    return out


# --- popfetchd in the foreground ----------------------------------------------

class Daemon:
    """popfetchd -c CONF ARGS in the foreground, with clean_env(ENV); its
    stderr lines are collected (and copied to LOG_PATH, with the time
    since the start, if given)."""

    def __init__(self, conf, args=(), env=None, log_path=None,
                 preexec_fn=None):
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [BINARY, "-c", conf] + list(args), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=clean_env(env), preexec_fn=preexec_fn)
        self.lines = []
        self.eof = False
        self.cond = threading.Condition()
        self.log = open(log_path, "w") if log_path else None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if self.log:
                self.log.write("%.3f %s\n"
                               % (time.monotonic() - self.started, line))
                self.log.flush()
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()
        with self.cond:
            self.eof = True
            self.cond.notify_all()
        if self.log:
            self.log.close()

    def mark(self):
        with self.cond:
            return len(self.lines)

    def text(self, since=0):
        with self.cond:
            return "\n".join(self.lines[since:])

    def grep(self, pattern, since=0):
        pat = re.compile(pattern)
        with self.cond:
            return [l for l in self.lines[since:] if pat.search(l)]

    def wait_until(self, pred, what, timeout=WAIT):
        """Wait until PRED(lines) is true; fail with the log if not."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if pred(self.lines):
                    return
                left = deadline - time.monotonic()
                if left <= 0 or self.eof:
                    tail = "\n".join(self.lines[-60:])
                    raise AssertionError(
                        "%s: %s; last lines:\n%s"
                        % ("daemon exited" if self.eof else "timed out",
                           what, tail))
                self.cond.wait(left)

    def wait_line(self, pattern, since=0, count=1, timeout=WAIT):
        """Wait for COUNT lines matching PATTERN after index SINCE;
        return the first of them."""
        pat = re.compile(pattern)

        def enough(lines):
            return sum(1 for l in lines[since:] if pat.search(l)) >= count
        self.wait_until(enough, "%d line(s) matching %r" % (count, pattern),
                        timeout)
        return self.grep(pattern, since)[0]

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=WAIT):
        rc = self.proc.wait(timeout)
        self.reader.join(5)
        return rc

    def stop(self):
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        self.proc.stderr.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(5)
        self.proc.stderr.close()


# --- certificates -----------------------------------------------------------

CA_CONF = """
[ca]
default_ca = ca_default
[ca_default]
dir = %(dir)s
database = %(dir)s/index.txt
new_certs_dir = %(dir)s
serial = %(dir)s/serial
default_md = sha256
policy = policy_any
unique_subject = no
copy_extensions = copy
x509_extensions = leaf_ext
[policy_any]
commonName = supplied
[leaf_ext]
basicConstraints = CA:FALSE
"""


class NotifySocket:
    """The service manager's side of sd_notify: a bound datagram socket."""

    def __init__(self, path=None, abstract=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if abstract is not None:
            self.sock.bind("\0" + abstract)
            self.address = "@" + abstract
        else:
            self.sock.bind(path)
            self.address = path
        self.messages = []
        self.cond = threading.Condition()
        self.stopping = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            if self.stopping:
                return
            with self.cond:
                self.messages.append(data.decode("utf-8", "replace"))
                self.cond.notify_all()

    def close(self):
        self.stopping = True
        try:
            # Wake recv(): the socket is ours, a datagram to it does.
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            s.sendto(b"", self.sock.getsockname())
            s.close()
        except OSError:
            pass
        self.thread.join(5)
        self.sock.close()

    def mark(self):
        with self.cond:
            return len(self.messages)

    def wait(self, pred, what, since=0, timeout=WAIT):
        """Wait for a datagram after index SINCE for which PRED is true;
        return its index."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(since, len(self.messages)):
                    if pred(self.messages[i]):
                        return i
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no %s in %r" % (what,
                                                          self.messages))
                self.cond.wait(left)

    def wait_key(self, line, since=0, timeout=WAIT):
        """Wait for a datagram with LINE ("READY=1") among its lines."""
        return self.wait(lambda m: line in m.split("\n"), line, since,
                         timeout)


# --- the tests -------------------------------------------------------------


def openssl(*args, stdin=None):
    return subprocess.run(["openssl"] + list(args), input=stdin, check=True,
                          capture_output=True).stdout


class CA:
    """A throwaway certificate authority, issuing certificates with any
    validity period (openssl ca -startdate/-enddate: OpenSSL 3.0's x509
    command cannot date a certificate in the past)."""

    def __init__(self, folder):
        self.dir = folder
        self.cert = os.path.join(folder, "ca.pem")
        self.key = os.path.join(folder, "ca-key.pem")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                self.key, "-out", self.cert, "-days", "3", "-subj",
                "/CN=popfetchd test CA", "-addext",
                "basicConstraints=critical,CA:TRUE", "-addext",
                "keyUsage=critical,keyCertSign,cRLSign")
        with open(os.path.join(folder, "index.txt"), "w"):
            pass
        with open(os.path.join(folder, "serial"), "w") as f:
            f.write("1000\n")
        self.conf = os.path.join(folder, "ca.cnf")
        with open(self.conf, "w") as f:
            f.write(CA_CONF % {"dir": folder})
        self.issued = 0

    def issue(self, name, start=None, end=None, san=True, ip=True):
        """A key and certificate for NAME (and 127.0.0.1 if IP), valid from
        START to END (YYMMDDHHMMSSZ; default: from yesterday for three
        days)."""
        self.issued += 1
        base = os.path.join(self.dir, "%s-%d" % (name, self.issued))
        key, csr, cert = base + "-key.pem", base + ".csr", base + ".pem"
        args = ["req", "-new", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
                "-out", csr, "-subj", "/CN=" + name]
        if san:
            args += ["-addext", "subjectAltName=DNS:%s%s" % (
                name, ",IP:127.0.0.1" if ip else "")]
        openssl(*args)
        fmt = "%y%m%d%H%M%SZ"
        now = time.time()
        start = start or time.strftime(fmt, time.gmtime(now - 86400))
        end = end or time.strftime(fmt, time.gmtime(now + 2 * 86400))
        openssl("ca", "-batch", "-notext", "-config", self.conf, "-cert",
                self.cert, "-keyfile", self.key, "-in", csr, "-out", cert,
                "-startdate", start, "-enddate", end)
        return cert, key


# --- test cases -------------------------------------------------------------

class Case(unittest.TestCase):
    """A fresh self.dir per test, self.maildir in it, and popfetchd's runs
    and Maildir checks."""

    def setUp(self):
        self.dir = tempdir()
        if not os.environ.get("KEEP_TMP"):
            self.addCleanup(shutil.rmtree, self.dir, True)
        self.maildir = os.path.join(self.dir, "Maildir")

    def run_popfetchd(self, *args, env=None, now=None, fail=None,
                      preexec_fn=None, text=True, timeout=RUN_TIMEOUT):
        """popfetchd ARGS to its end, with clean_env(ENV); NOW fakes the
        policy's clock and FAIL injects failures (test builds read
        POPFETCHD_NOW and POPFETCHD_FAIL). Output as text unless TEXT is
        false; the test fails if it does not end within TIMEOUT."""
        env = clean_env(env)
        if now is not None:
            env["POPFETCHD_NOW"] = str(int(now))
        if fail is not None:
            env["POPFETCHD_FAIL"] = fail
        more = {"text": True, "errors": "replace"} if text else {}
        try:
            return subprocess.run([BINARY] + list(args), env=env,
                                  stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=timeout,
                                  preexec_fn=preexec_fn, **more)
        except subprocess.TimeoutExpired as e:
            # subprocess.run has killed it already.
            self.fail("popfetchd did not finish in %d s; stderr:\n%s"
                      % (timeout, e.stderr))

    def run_once(self, conf, *args, debug=None, **kw):
        """popfetchd -c CONF --once ARGS (-d DEBUG); KW as for
        run_popfetchd."""
        if debug:
            args += ("-d", str(debug))
        return self.run_popfetchd("-c", conf, "--once", *args, **kw)

    def files(self, sub, maildir=None):
        return maildir_files(maildir or self.maildir, sub)

    def wait_files(self, sub, n, timeout=WAIT):
        """Until SUB of the Maildir holds at least N files: popfetchd's
        writer thread makes them, and says nothing that could be awaited
        (a line per file would drown the log)."""
        poll_until(lambda: len(self.files(sub)) >= n,
                   "%d files in %s/" % (n, sub), timeout)

    def delivered(self, maildir=None):
        """The messages in new/; cur/ must be empty (popfetchd delivers
        into new/ only)."""
        maildir = maildir or self.maildir
        self.assertEqual(self.files("cur", maildir), [],
                         "popfetchd must deliver into new/ only")
        return maildir_messages(maildir)

    def assert_exit(self, result, status):
        self.assertEqual(result.returncode, status,
                         "exit status %d, expected %d; stderr:\n%s"
                         % (result.returncode, status, result.stderr[-6000:]))

    def assert_delivered_exactly(self, expected, maildir=None):
        """new/ holds EXPECTED, each exactly once; tmp/ is empty."""
        got = self.delivered(maildir)
        self.assertEqual(len(got), len(expected), "number of messages")
        missing = multiset(expected) - multiset(got)
        extra = multiset(got) - multiset(expected)
        self.assertFalse(missing or extra,
                         "%d messages missing or altered, %d unexpected "
                         "(first unexpected: %r)"
                         % (sum(missing.values()), sum(extra.values()),
                            next(iter(extra), b"")[:300]))
        self.assertEqual(self.files("tmp", maildir), [],
                         "files left in tmp/")

    def assert_nothing_delivered(self, maildir=None):
        self.assertEqual(self.files("new", maildir), [])
        self.assertEqual(self.files("cur", maildir), [])
        self.assertEqual(self.files("tmp", maildir), [])

    def assert_summary(self, result, account, fetched):
        """The per-account summary line says fetched=FETCHED."""
        lines = [l for l in result.stderr.splitlines()
                 if "account=%s" % account in l and "fetched=" in l]
        self.assertTrue(lines, "no summary line for account=%s in:\n%s"
                        % (account, result.stderr[-4000:]))
        self.assertRegex(lines[-1], r"\bfetched=%d\b" % fetched)

    def daemon(self, conf, args=(), env=None, preexec_fn=None):
        """popfetchd -c CONF ARGS in the foreground, killed after the test;
        its stderr is copied to daemonN.log in self.dir."""
        n = len([f for f in os.listdir(self.dir) if f.startswith("daemon")])
        d = Daemon(conf, args, env, os.path.join(self.dir, "daemon%d.log" % n),
                   preexec_fn)
        self.addCleanup(d.kill)
        return d


class FakePopCase(Case):
    """A test against tests/fakepop.py: self.cert and self.key for its
    TLS (made once per class, and trusted through self.ca_file), servers
    made with self.server() stopped after the test, and configurations
    for them from self.config()."""

    MESSAGES = []
    USER = "alice"
    PASSWORD = "secret"

    @classmethod
    def setUpClass(cls):
        cls.certdir = tempdir()
        cls.cert, cls.key = make_cert(cls.certdir)
        cls.ca_file = cls.cert

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.certdir, ignore_errors=True)

    def server(self, messages=None, **kw):
        """A FakePop with MESSAGES (default: the class's), over implicit
        TLS with this class's certificate unless KW says otherwise,
        stopped after the test, which fails if the server met an
        unexpected error."""
        kw.setdefault("tls", "implicit")
        kw.setdefault("certfile", self.cert)
        kw.setdefault("keyfile", self.key)
        kw.setdefault("user", self.USER)
        kw.setdefault("password", self.PASSWORD)
        s = FakePop(list(self.MESSAGES if messages is None else messages),
                    **kw)
        self.addCleanup(s.stop)
        # Runs first: a bug in the fake server is a failure, not a pass.
        self.addCleanup(lambda: self.assertEqual(s.errors, []))
        return s

    def config(self, srv, mode=0o600, settings=None, **keys):
        """A configuration with one account, "fake", on SRV: the class's
        user and password, self.maildir, state in self.dir. KEYS override
        or add account settings (None removes one; a password_* key
        replaces the password), SETTINGS add global ones. Returns its
        path."""
        acct = {"name": "fake", "host": "localhost", "port": srv.port,
                "tls": srv.tls or "none", "ca_file": self.ca_file,
                "user": self.USER, "password": self.PASSWORD,
                "maildir": self.maildir, "received_header": False,
                "timeout": 20}
        if any(k.startswith("password_") for k in keys):
            del acct["password"]
        acct.update(keys)
        return write_config(os.path.join(self.dir, "popfetchd.conf"), [acct],
                            mode, state_dir=os.path.join(self.dir, "state"),
                            **(settings or {}))


class DovecotCase(Case):
    """A test against a throwaway Dovecot (tests/dovecot.py) per test."""

    PASSWORD = "s3cret-pass"

    def dovecot(self, **kw):
        """A started Dovecot, stopped when the test ends (pass or fail)."""
        kw.setdefault("keep_dir", bool(os.environ.get("KEEP_TMP")))
        dc = Dovecot(**kw)
        self.addCleanup(dc.cleanup)
        dc.start()
        return dc

    def account(self, dc, name="alice", user="alice", tls="implicit",
                host="127.0.0.1", password=None, maildir=None, keep=False,
                received_header=False, **keys):
        """One account on DC, as a dict for write_config; KEYS override or
        add settings (None removes one)."""
        acct = {"name": name, "host": host,
                "port": dc.ssl_port if tls == "implicit" else dc.port,
                "tls": tls, "ca_file": dc.ca_file, "user": user,
                "password": password or self.PASSWORD,
                "maildir": maildir or self.maildir, "keep": keep,
                "received_header": received_header, "timeout": 30}
        acct.update(keys)
        return acct

    def config(self, *accounts):
        """The configuration with ACCOUNTS, state in self.dir."""
        return write_config(os.path.join(self.dir, "popfetchd.conf"),
                            accounts,
                            state_dir=os.path.join(self.dir, "state"))


def main():
    if not os.access(BINARY, os.X_OK):
        sys.exit("%s: no popfetchd binary at %s (use --binary PATH or "
                 "POPFETCHD)" % (os.path.basename(sys.argv[0]), BINARY))
    unittest.main(verbosity=2)
