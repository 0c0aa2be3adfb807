"""Integration tests: switching from mpop, fetchmail and getmail6.

Each end-to-end test lets the real tool fetch a keep-mode mailbox from a
throwaway Dovecot (tests/dovecot.py), converts the tool's configuration
with popfetchd --convert, checks it with --check-config, imports the
tool's seen UIDs with --import-uids, and runs popfetchd --once: nothing
the tool fetched is fetched again, and mail that arrives afterwards is
fetched once. A tool that is not installed makes its test skip, saying
so (tools/deps.sh installs them).

Run: python3 tests/test_migrate.py --binary build/popfetchd
"""

import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dovecot import Dovecot  # noqa: E402
from harness import BINARY, FakePopCase, maildir_messages  # noqa: E402

RUN_TIMEOUT = 120
PASSWORD = "s3cret-pass"

OLD = [b"Subject: old %d\n\nfetched by the old tool\n" % i for i in range(3)]
NEW = b"Subject: new\n\narrived after the switch\n"


def count(messages, original):
    """How many of MESSAGES are ORIGINAL, whatever trace lines a fetcher
    put on top of it."""
    return sum(1 for m in messages if m.endswith(original))


def need(tool):
    """The path of TOOL, or skip the test saying why."""
    path = shutil.which(tool)
    if path is None:
        raise unittest.SkipTest(
            "%s is not installed (tools/deps.sh installs it)" % tool)
    return path


class MigrateTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="popfetchd-migrate-")
        if not os.environ.get("KEEP_TMP"):
            self.addCleanup(shutil.rmtree, self.dir, True)
        # popfetchd's ~/ paths (state, password file) land in here.
        self.home = os.path.join(self.dir, "home")
        os.makedirs(self.home)
        self.env = dict(os.environ, HOME=self.home)

    def dovecot(self):
        dc = Dovecot()
        self.addCleanup(dc.cleanup)
        dc.start()
        dc.add_user("alice", PASSWORD)
        dc.deliver_many("alice", OLD)
        return dc

    def popfetchd(self, *args, check=True):
        r = subprocess.run([BINARY] + list(args), env=self.env,
                           stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=RUN_TIMEOUT)
        if check:
            self.assertEqual(r.returncode, 0,
                             "popfetchd %s: %s%s" % (args, r.stdout,
                                                     r.stderr))
        return r

    def convert(self, fmt, path):
        """--convert FMT:PATH into a file; --check-config finds no fault
        but the password files still to be written."""
        r = self.popfetchd("--convert", "%s:%s" % (fmt, path))
        conf = os.path.join(self.dir, "popfetchd.conf")
        with open(conf, "w") as f:
            f.write(r.stdout)
        c = self.popfetchd("--check-config", "-c", conf, check=False)
        self.assertIn(c.returncode, (0, 78), c.stderr)
        problems = [l for l in c.stderr.splitlines()
                    if "account " in l and ": note: " not in l]
        for line in problems:
            self.assertRegex(line, r"password_file .*No such file")
        return conf, r.stdout

    def password_file(self, converted, conf):
        """Creates the password files the conversion asks for; the
        password itself must not have been copied. --check-config then
        passes."""
        found = re.findall(r'password_file = "~/([^"]+)";', converted)
        self.assertTrue(found, converted)
        for name in found:
            path = os.path.join(self.home, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(PASSWORD + "\n")
            os.chmod(path, 0o600)
        self.assertIn("held the password inline; it is not copied",
                      converted)
        self.assertNotIn(PASSWORD, converted)
        self.popfetchd("--check-config", "-c", conf)

    def new_mail_once(self, dc, conf, maildir, before, *only):
        """Runs --once twice after NEW arrived: it is fetched once, and
        nothing of BEFORE (the messages already in MAILDIR) again."""
        dc.deliver("alice", NEW)
        self.popfetchd("-c", conf, "--once", *only)
        self.popfetchd("-c", conf, "--once", *only)
        got = maildir_messages(maildir)
        self.assertEqual(len(got), len(before) + 1, got)
        self.assertEqual(count(got, NEW), 1, got)
        for m in OLD:
            self.assertEqual(count(got, m), count(before, m), got)
        # Keep mode: everything is still on the server.
        self.assertEqual(len(dc.server_messages("alice")), len(OLD) + 1)

    def state_lines(self, account):
        path = os.path.join(self.home, ".local/state/popfetchd",
                            account + ".state")
        with open(path) as f:
            return f.read().splitlines()

    def test_mpop(self):
        mpop = need("mpop")
        dc = self.dovecot()
        maildir = os.path.join(self.dir, "Maildir")
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(maildir, sub))
        uidls = os.path.join(self.dir, "uidls", "%U_at_%H")
        rc = os.path.join(self.dir, "mpoprc")
        with open(rc, "w") as f:
            f.write("""# written as mpop(1) documents it
defaults
tls on
tls_starttls off
keep on
uidls_file %s

account base
host 127.0.0.1
port %d
tls_trust_file "%s"
user alice
password "%s"

# inherits everything from base, as mpop's "account NAME : OTHER" does
account work : base
delivery maildir %s
""" % (uidls, dc.ssl_port, dc.ca_file, PASSWORD, maildir))
        os.chmod(rc, 0o600)
        r = subprocess.run([mpop, "-C", rc, "-q", "work"], env=self.env,
                           stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=RUN_TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stderr)
        before = maildir_messages(maildir)
        self.assertEqual([count(before, m) for m in OLD], [1, 1, 1])

        conf, text = self.convert("mpop", rc)
        self.password_file(text, conf)
        # "base" has no delivery: converted, but -a work picks the one.
        uidfile = os.path.join(self.dir, "uidls", "alice_at_127.0.0.1")
        self.assertIn("--import-uids mpop:%s -a work" % uidfile, text)
        r = self.popfetchd("-c", conf, "--import-uids", "mpop:" + uidfile,
                           "-a", "work")
        self.assertIn("account=work imported=3 already=0", r.stdout)
        self.assertIn("first_seen=now", r.stdout)
        self.new_mail_once(dc, conf, maildir, before, "-a", "work")

    def test_fetchmail(self):
        fetchmail = need("fetchmail")
        dc = self.dovecot()
        ids = os.path.join(self.dir, "fetchids")
        rc = os.path.join(self.dir, "fetchmailrc")
        with open(rc, "w") as f:
            f.write("""set idfile "%s"
# fetchmail delivers through an MDA here: popfetchd to a Maildir
poll localhost with proto POP3 port %d:
  user "alice" there with password "%s" is root here
  ssl sslcertfile "%s" sslcertck keep
  mda "/bin/sh -c 'cat > /dev/null'"
""" % (ids, dc.ssl_port, PASSWORD, dc.ca_file))
        os.chmod(rc, 0o600)
        r = subprocess.run([fetchmail, "-f", rc, "--nodetach", "--nosyslog"],
                           env=dict(self.env, FETCHMAILHOME=self.dir),
                           stdin=subprocess.DEVNULL, capture_output=True,
                           text=True, timeout=RUN_TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(ids) as f:
            self.assertEqual(len(f.read().splitlines()), len(OLD))

        conf, text = self.convert("fetchmail", rc)
        self.password_file(text, conf)
        self.assertIn("mda /bin/sh", text)
        self.assertIn("delivery through an MDA is not converted", text)
        r = self.popfetchd("-c", conf, "--import-uids", "fetchmail:" + ids)
        self.assertIn("account=localhost imported=3", r.stdout)
        self.new_mail_once(dc, conf, os.path.join(self.home, "Maildir"), [])

    def test_getmail(self):
        getmail = need("getmail")
        dc = self.dovecot()
        gdir = os.path.join(self.dir, "getmail")
        os.makedirs(gdir)
        rc = os.path.join(gdir, "getmailrc")
        with open(rc, "w") as f:
            f.write("""[retriever]
type = SimplePOP3SSLRetriever
server = localhost
port = %d
username = alice
password = %s
ca_certs = %s

[destination]
type = MDA_external
path = /bin/sh
arguments = ("-c", "cat > /dev/null")
allow_root_commands = true

[options]
read_all = false
delete = false
""" % (dc.ssl_port, PASSWORD, dc.ca_file))
        r = subprocess.run([getmail, "--getmaildir", gdir, "--rcfile", rc],
                           env=self.env, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True,
                           timeout=RUN_TIMEOUT)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        old = os.path.join(gdir, "oldmail-localhost-%d-alice" % dc.ssl_port)
        with open(old, "rb") as f:
            times = {l.split(b"\0")[1] for l in f.read().splitlines()}

        conf, text = self.convert("getmail", rc)
        self.password_file(text, conf)
        self.assertIn("allow_root_commands", text)
        r = self.popfetchd("-c", conf, "--import-uids", "getmail:" + old,
                           "--dry-run")
        self.assertEqual(r.stdout.count("would import account=getmailrc"),
                         3, r.stdout)
        self.assertFalse(os.path.exists(
            os.path.join(self.home, ".local/state/popfetchd")))
        r = self.popfetchd("-c", conf, "--import-uids", "getmail:" + old)
        self.assertIn("imported=3 already=0 first_seen=from-file", r.stdout)
        # The times getmail6 first saw them, for delete_after_days.
        recorded = {l.split()[1].encode() for l in
                    self.state_lines("getmailrc") if l.startswith("+ ")}
        self.assertEqual(recorded, times)
        self.new_mail_once(dc, conf, os.path.join(self.home, "Maildir"), [])


class ImportTest(unittest.TestCase):
    """Import and its refusals, without a server."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="popfetchd-migrate-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.state = os.path.join(self.dir, "state")
        self.conf = os.path.join(self.dir, "popfetchd.conf")
        with open(self.conf, "w") as f:
            f.write("""state_dir = "%s";
accounts = ({ name = "work"; host = "pop.example.com"; user = "alice";
  password_file = "/nonexistent"; maildir = "%s/Maildir"; keep = true; });
""" % (self.state, self.dir))
        self.ids = os.path.join(self.dir, "fetchids")
        with open(self.ids, "w") as f:
            f.write("alice@pop.example.com u1\n"
                    "alice@pop.example.com bad uid with blanks\n"
                    "alice@pop.example.com u2\n"
                    "bob@pop.example.com u3\n")

    def run_import(self, *args):
        return subprocess.run(
            [BINARY, "-c", self.conf, "--import-uids",
             "fetchmail:" + self.ids] + list(args),
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=RUN_TIMEOUT)

    def test_bad_line_reported_rest_imported(self):
        r = self.run_import()
        self.assertEqual(r.returncode, 65, r.stderr)  # EX_DATAERR
        self.assertIn("%s:2: more than one UID" % self.ids, r.stderr)
        self.assertIn("account=work imported=2 already=0", r.stdout)
        self.assertIn("no account matches host=pop.example.com port=0 "
                      "user=bob uids=1", r.stdout)

    def test_match_override(self):
        r = self.run_import("-a", "work", "--match-user", "bob")
        self.assertIn("account=work imported=1", r.stdout)

    def test_refused_while_locked(self):
        self.assertIn("imported=2", self.run_import().stdout)
        with open(os.path.join(self.state, "work.state")) as f:
            saved = f.read()
        with open(self.ids, "a") as f:
            f.write("alice@pop.example.com u4\n")
        # What a poll of the daemon holds while it runs (state.h).
        with open(os.path.join(self.state, "work.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            r = self.run_import()
        self.assertEqual(r.returncode, 75, r.stderr)  # EX_TEMPFAIL
        self.assertIn("locked by another process", r.stderr)
        with open(os.path.join(self.state, "work.state")) as f:
            self.assertEqual(f.read(), saved)
        r = self.run_import()
        self.assertIn("imported=1 already=2", r.stdout)

    def test_usage_errors(self):
        for args in (["--import-uids", "nosuch:x"],
                     ["--import-uids", "mpop"],
                     ["--dry-run"],
                     ["--import-uids", "mpop:x", "--match-host", "h"]):
            r = subprocess.run([BINARY, "-c", self.conf] + args,
                               capture_output=True, text=True)
            self.assertEqual(r.returncode, 64, (args, r.stderr))


class ImportWhilePollingTest(FakePopCase):
    """An import while the daemon polls the same account is refused, and
    the state the poll writes is whole; after the poll it goes through."""

    MESSAGES = [b"Subject: m%d\r\n\r\n%s\r\n" % (i, b"x" * 500)
                for i in range(3)]

    def test_refused_while_a_poll_runs(self):
        srv = self.server()
        # The first message a byte at a time: the poll lasts until told.
        srv.dribble = 0.002
        srv.dribble_what = "retr"
        conf = self.config(srv, keep=True)
        ids = os.path.join(self.dir, "fetchids")
        with open(ids, "w") as f:
            f.write("alice@localhost old-1\nalice@localhost old-2\n")
        d = self.daemon(conf, ["-d", "1"])
        # Now, not at the first poll's spread start.
        d.wait_line(r"^started accounts=1 ")
        d.signal(signal.SIGUSR1)
        d.wait_line(r"account=fake > RETR 1$")
        state = os.path.join(self.dir, "state")
        before = {n: open(os.path.join(state, n), "rb").read()
                  for n in os.listdir(state)}
        r = self.run_popfetchd("-c", conf, "--import-uids",
                               "fetchmail:" + ids, text=True)
        self.assert_exit(r, 75)  # EX_TEMPFAIL
        self.assertIn("locked by another process", r.stderr)
        after = {n: open(os.path.join(state, n), "rb").read()
                 for n in os.listdir(state)}
        self.assertEqual(after, before, "the import touched the state")
        srv.dribble = None
        d.wait_line(r"account=fake listed=3 fetched=3 ")
        r = self.run_popfetchd("-c", conf, "--import-uids",
                               "fetchmail:" + ids, text=True)
        self.assert_exit(r, 0)
        self.assertIn("account=fake imported=2 already=0", r.stdout)
        # The poll's records and the imported ones are all there: the
        # next poll fetches nothing again.
        mark = d.mark()
        d.signal(signal.SIGUSR1)
        d.wait_line(r"account=fake listed=3 fetched=0 ", mark)
        self.assert_delivered_exactly(self.MESSAGES)


if __name__ == "__main__":
    unittest.main(verbosity=2)
