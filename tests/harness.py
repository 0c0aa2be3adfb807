"""What the Python tests share: the binary under test, a Maildir's
messages, and a test case with a scripted server's certificate and a
fresh folder per test.

The binary is BINARY: --binary PATH (or --binary=PATH) on the command
line, else $POPFETCHD, else build/popfetchd. Importing this module takes
--binary out of sys.argv, so that unittest.main() does not see it.

The Python helpers all live here in tests/ (harness.py, fakepop.py,
dovecot.py, mailgen.py), and every user imports them by module name. A
script in tests/ needs no path code for it: Python puts the folder of the
script it runs first on sys.path. The two users elsewhere,
bench/bench.py and tools/demo.py, add tests/ to sys.path with the same
one line.
"""

import os
import shutil
import sys
import unittest

from fakepop import FakePop, make_cert, tempdir


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


BINARY = (take_binary_arg(sys.argv) or
          os.environ.get("POPFETCHD", "build/popfetchd"))


def has_test_hooks():
    """Whether BINARY was built with -Dtest_hooks=true."""
    with open(BINARY, "rb") as f:
        return b"POPFETCHD_NOW" in f.read()


def maildir_messages(maildir, sub="new"):
    """The messages in MAILDIR/SUB, as bytes, in file name order."""
    folder = os.path.join(maildir, sub)
    if not os.path.isdir(folder):
        return []
    out = []
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            out.append(f.read())
    return out


class FakePopCase(unittest.TestCase):
    """A test against tests/fakepop.py: self.cert and self.key for its
    TLS (made once per class), a fresh self.dir with self.maildir in it
    per test, and servers made with self.server() stopped after it."""

    MESSAGES = []

    @classmethod
    def setUpClass(cls):
        cls.certdir = tempdir()
        cls.cert, cls.key = make_cert(cls.certdir)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.certdir, ignore_errors=True)

    def setUp(self):
        self.dir = tempdir()
        self.maildir = os.path.join(self.dir, "Maildir")
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            s.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def server(self, messages=None, **kw):
        """A FakePop with MESSAGES (default: the class's), this class's
        certificate, stopped after the test."""
        kw.setdefault("certfile", self.cert)
        kw.setdefault("keyfile", self.key)
        s = FakePop(list(self.MESSAGES if messages is None else messages),
                    **kw)
        self.servers.append(s)
        return s

    def config(self, srv, tls="implicit", extra="", timeout=20):
        """A configuration file with one account, "fake", on SRV (user
        alice, password secret, self.maildir, state in self.dir); EXTRA
        is added to the account. Returns its path."""
        path = os.path.join(self.dir, "popfetchd.conf")
        plain = 'allow_plaintext = true;' if tls == "none" else ""
        with open(path, "w") as f:
            f.write("""
state_dir = "%s/state";
accounts = ({
  name = "fake"; host = "localhost"; port = %d; tls = "%s"; %s
  ca_file = "%s"; user = "alice"; password = "secret";
  maildir = "%s"; received_header = false; timeout = %d;
  %s
});
""" % (self.dir, srv.port, tls, plain, self.cert, self.maildir, timeout,
       extra))
        os.chmod(path, 0o600)
        return path


    def delivered(self):
        return maildir_messages(self.maildir)


def main():
    unittest.main(verbosity=2)
