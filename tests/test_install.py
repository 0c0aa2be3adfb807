#!/usr/bin/env python3
"""`meson install` into a DESTDIR, checked as a packager would: every file
where the prefix says, the units pointing at the installed binary and
passing `systemd-analyze verify`, the system units' exposure under
`systemd-analyze security --offline=true` at most 2.0, the service user
made by `systemd-sysusers --root`, the configuration directory by
`systemd-tmpfiles --root`, and the example configuration's paths writable
inside the sandbox the units (and the Maildir drop-in) set up, read from
their ReadWritePaths=, BindPaths= and StateDirectory= lines. Then, end to
end: a new normal user types the README's per-user commands, with the
installed binary, against a throwaway Dovecot, and gets the mail.

    python3 tests/test_install.py --binary build/popfetchd
"""
import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import unittest

import mailgen
from dovecot import Dovecot
from harness import BINARY, WAIT, main

SRCDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILDDIR = os.path.dirname(BINARY)
SYSTEM_UNITS = ["popfetchd.service", "popfetchd@.service",
                "popfetchd-shard@.service", "popfetchd-once.service",
                "popfetchd-once.timer"]
EXPOSURE_MAX = 2.0
# The keys of the example configuration naming a place popfetchd writes.
WRITTEN_KEYS = ("maildir", "state_dir", "token_file", "metrics_file")


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=WAIT,
                          env=dict(os.environ, SYSTEMD_LOG_COLOR="0",
                                   SYSTEMD_COLORS="0", LC_ALL="C"), **kw)


def unit_settings(text):
    """KEY -> [values] of a unit's or drop-in's uncommented lines; values
    split on blanks, as systemd does for path lists."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+)=(.*)$", line.strip())
        if m:
            out.setdefault(m.group(1), []).extend(m.group(2).split())
    return out


def dropin_variants(text):
    """The variants of maildirs.conf.example, each uncommented: the
    example shows one live and the others as comments."""
    variants, cur = [], None
    for line in text.splitlines():
        if re.match(r"^# Variant \d+", line):
            cur = []
            variants.append(cur)
        elif cur is not None:
            body = line[1:] if line.startswith("#") else line
            if re.match(r"^\[?\w+(\]|=)", body):
                cur.append(body)
    return ["\n".join(v) for v in variants]


def config_paths(text):
    """(key, path) for each uncommented key the example configuration sets
    to a path popfetchd writes."""
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        m = re.match(r'^\s*(\w+)\s*=\s*"([/~][^"]*)"', line)
        if m and m.group(1) in WRITTEN_KEYS:
            out.append((m.group(1), m.group(2)))
    return out


def under(path, roots):
    return any(path == r or path.startswith(r.rstrip("/") + "/")
               for r in roots)


class Installed(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if not os.path.exists(os.path.join(BUILDDIR, "meson-private")):
            raise unittest.SkipTest("%s is not a meson build directory"
                                    % BUILDDIR)
        cls.dest = tempfile.mkdtemp(prefix="popfetchd-install-")
        r = run(["meson", "install", "-C", BUILDDIR, "--destdir", cls.dest,
                 "--no-rebuild", "--quiet"])
        if r.returncode != 0:
            shutil.rmtree(cls.dest, True)
            raise AssertionError("meson install failed:\n" + r.stdout
                                 + r.stderr)
        r = run(["meson", "introspect", "--buildoptions", BUILDDIR])
        opts = {o["name"]: o["value"] for o in
                json.loads(r.stdout)}
        cls.prefix = opts["prefix"]
        cls.sbin = os.path.join(cls.prefix, opts["bindir"], "popfetchd")
        cls.docdir = os.path.join(cls.prefix, opts["datadir"], "doc",
                                  "popfetchd")
        cls.mandir = os.path.join(cls.prefix, opts["mandir"])
        cls.libdir = os.path.join(cls.prefix, "lib")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dest, True)

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="popfetchd-units-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def d(self, path):
        """PATH (absolute, as installed) inside the DESTDIR."""
        return os.path.join(self.dest, path.lstrip("/"))

    def read(self, path):
        with open(self.d(path)) as f:
            return f.read()

    def need(self, tool):
        path = shutil.which(tool)
        if path is None:
            self.skipTest("%s is not installed (Debian: apt-get install "
                          "systemd; tools/deps.sh does)" % tool)
        return path

    def test_files_where_the_prefix_says(self):
        for path in [self.sbin,
                     self.libdir + "/sysusers.d/popfetchd.conf",
                     self.libdir + "/tmpfiles.d/popfetchd.conf",
                     self.libdir + "/systemd/user/popfetchd.service",
                     self.docdir + "/popfetchd.conf.example",
                     self.docdir + "/maildirs.conf.example",
                     self.mandir + "/man8/popfetchd.8",
                     self.mandir + "/man5/popfetchd.conf.5"] + [
                         self.libdir + "/systemd/system/" + u
                         for u in SYSTEM_UNITS]:
            self.assertTrue(os.path.isfile(self.d(path)), path)
        self.assertTrue(os.access(self.d(self.sbin), os.X_OK))
        # Every path man 8 names for the examples is where they went.
        man8 = self.read(self.mandir + "/man8/popfetchd.8")
        named = set(re.findall(r"(/\S*/doc/popfetchd/[\w.]+)", man8))
        self.assertTrue(named, "man 8 names no example")
        for path in named:
            self.assertTrue(os.path.isfile(self.d(path)), path)

    def installed_units(self, sub, names):
        """The installed units, ExecStart= moved from the installed binary
        to its copy in the DESTDIR (verify wants a program that exists),
        after checking that ExecStart= names the installed binary."""
        out = os.path.join(self.dir, sub)
        os.makedirs(out, exist_ok=True)
        paths = []
        for name in names:
            text = self.read("%s/systemd/%s/%s" % (self.libdir, sub, name))
            for m in re.finditer(r"(?m)^ExecStart=(\S+)", text):
                self.assertEqual(m.group(1), self.sbin, name)
            path = os.path.join(out, name)
            with open(path, "w") as f:
                f.write(text.replace(self.sbin, self.d(self.sbin)))
            paths.append(path)
        return paths

    def analyze(self, *args):
        runtime = os.path.join(self.dir, "runtime")
        os.makedirs(runtime, mode=0o700, exist_ok=True)
        return subprocess.run(
            [self.need("systemd-analyze")] + list(args), capture_output=True,
            text=True, timeout=WAIT,
            env=dict(os.environ, SYSTEMD_LOG_COLOR="0", SYSTEMD_COLORS="0",
                     LC_ALL="C", XDG_RUNTIME_DIR=runtime))

    def test_units_verify(self):
        for user, sub, names in ((False, "system", SYSTEM_UNITS),
                                 (True, "user", ["popfetchd.service"])):
            paths = self.installed_units(sub, names)
            r = self.analyze(*((["--user"] if user else [])
                               + ["verify", "--man=no"] + paths))
            with self.subTest(sub=sub):
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertEqual(r.stderr.strip(), "", r.stderr)

    def test_system_units_exposure(self):
        for name in SYSTEM_UNITS[:4]:
            path = self.installed_units("system", [name])[0]
            r = self.analyze("security", "--offline=true", "--no-pager",
                             path)
            m = re.search(r"Overall exposure level for \S+: ([0-9.]+)",
                          r.stdout)
            with self.subTest(unit=name):
                self.assertTrue(m, r.stdout + r.stderr)
                self.assertLessEqual(float(m.group(1)), EXPOSURE_MAX,
                                     r.stdout)

    def test_sysusers_and_tmpfiles(self):
        """The service user, then /etc/popfetchd root:popfetchd 0750 so
        that the service reads its configuration."""
        root = os.path.join(self.dir, "root")
        shutil.copytree(self.dest, root, symlinks=True)
        os.makedirs(os.path.join(root, "etc"), exist_ok=True)
        r = run([self.need("systemd-sysusers"), "--root=" + root])
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(os.path.join(root, "etc/passwd")) as f:
            users = {l.split(":")[0]: l.rstrip("\n").split(":")
                     for l in f if l.strip()}
        self.assertIn("popfetchd", users)
        # Its home is the unit's state directory, where ~ leads.
        service = unit_settings(self.read(
            self.libdir + "/systemd/system/popfetchd.service"))
        self.assertEqual(users["popfetchd"][5],
                         "/var/lib/" + service["StateDirectory"][0])
        with open(os.path.join(root, "etc/group")) as f:
            gid = {l.split(":")[0]: int(l.split(":")[2])
                   for l in f if l.strip()}["popfetchd"]
        r = run([self.need("systemd-tmpfiles"), "--root=" + root,
                 "--create", "popfetchd.conf"])
        self.assertEqual(r.returncode, 0, r.stderr)
        st = os.stat(os.path.join(root, "etc/popfetchd"))
        self.assertEqual(oct(st.st_mode & 0o7777), oct(0o750))
        self.assertEqual((st.st_uid, st.st_gid), (0, gid))

    @staticmethod
    def unwritable(base, v, paths):
        """Those of PATHS ((key, path)) not writable in the unit whose
        settings are BASE with the drop-in's V; ~ is the home of the
        drop-in's User=."""
        state = v.get("StateDirectory", []) or base["StateDirectory"]
        writable = (["/var/lib/" + s for s in base["StateDirectory"] + state]
                    + base.get("ReadWritePaths", [])
                    + v.get("ReadWritePaths", [])
                    + [(b.lstrip("-").split(":") * 2)[1]
                       for b in v.get("BindPaths", [])])
        user = v.get("User", base["User"])[0]
        home = ("/var/lib/" + state[0] if user == base["User"][0]
                else "/home/" + user)
        return [(k, p) for k, p in paths
                if not under(p.replace("~", home, 1), writable)]

    def test_readme_system_service_fits_its_sandbox(self):
        """The README's system configuration writes only where its
        drop-in opens the sandbox, and reads /etc/popfetchd by group."""
        with open(os.path.join(SRCDIR, "README.md")) as f:
            readme = f.read()
        conf = re.search(r"/etc/popfetchd/popfetchd\.conf <<'EOF'\n(.*?)^EOF",
                         readme, re.S | re.M)
        dropin = re.search(r"popfetchd\.service\.d/\S+ <<'EOF'\n(.*?)^EOF",
                           readme, re.S | re.M)
        self.assertTrue(conf and dropin, "install section not found")
        base = unit_settings(self.read(
            self.libdir + "/systemd/system/popfetchd.service"))
        v = unit_settings(dropin.group(1))
        paths = config_paths(conf.group(1))
        self.assertIn("maildir", [k for k, _ in paths])
        self.assertIn("state_dir", [k for k, _ in paths])
        self.assertEqual(self.unwritable(base, v, paths), [])
        self.assertEqual(v.get("Group"), ["popfetchd"])
        # The credential the account names is the one the drop-in loads.
        cred = re.search(r'password_credential = "(\w+)"', conf.group(1))
        self.assertTrue(any(l.startswith(cred.group(1) + ":")
                            for l in v.get("LoadCredential", [])), v)

    def test_example_paths_writable_in_the_sandbox(self):
        """Each place the example configuration writes is writable in the
        system unit with one of the Maildir drop-in's variants, ~ being
        the home of that variant's User=."""
        unit = self.read(self.libdir + "/systemd/system/popfetchd.service")
        base = unit_settings(unit)
        self.assertEqual(base["ProtectSystem"], ["strict"])
        paths = config_paths(self.read(self.docdir
                                       + "/popfetchd.conf.example"))
        self.assertTrue(paths, "no path found in the example")
        variants = dropin_variants(self.read(self.docdir
                                             + "/maildirs.conf.example"))
        self.assertGreaterEqual(len(variants), 2)
        fits = [v for v in variants
                if not self.unwritable(base, unit_settings(v), paths)]
        self.assertTrue(fits, "no variant of maildirs.conf.example makes "
                        "%r writable" % paths)


def readme_block(readme, heading):
    """The first ```sh block after HEADING in README.md."""
    m = re.search(r"^%s\n.*?^```sh\n(.*?)^```" % re.escape(heading),
                  readme, re.S | re.M)
    return m.group(1) if m else None


class NewUser(unittest.TestCase):
    """A user who has never run popfetchd, on a machine where it was just
    installed, follows the README's per-user section line by line up to
    the unit (which needs a user manager; tests/test_nspawn.py boots one).
    The server is a throwaway Dovecot instead of pop.example.net, so the
    configuration gains its port and CA file; nothing else changes."""

    MESSAGES = 12

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root to add a user")
        for tool in ("useradd", "userdel", "runuser"):
            if shutil.which(tool) is None:
                raise unittest.SkipTest("%s is not installed" % tool)
        Installed.setUpClass.__func__(cls)
        os.chmod(cls.dest, 0o755)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dest, True)

    def add_user(self):
        name = "pfnew%d" % os.getpid()
        home = tempfile.mkdtemp(prefix="popfetchd-home-")
        self.addCleanup(shutil.rmtree, home, True)
        r = run(["useradd", "--no-create-home", "--home-dir", home,
                 "--shell", "/bin/sh", "--user-group", name])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.addCleanup(run, ["userdel", name])
        pw = pwd.getpwnam(name)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        os.chmod(home, 0o700)
        return pw

    def as_user(self, pw, argv, stdin=None):
        """ARGV as PW in a login-like environment: the installed binary
        first in PATH, no XDG variables, stdin STDIN."""
        sbin = os.path.dirname(os.path.join(self.dest,
                                            self.sbin.lstrip("/")))
        env = ["env", "-i", "HOME=" + pw.pw_dir, "USER=" + pw.pw_name,
               "LOGNAME=" + pw.pw_name, "LC_ALL=C",
               "PATH=%s:/usr/bin:/bin" % sbin]
        return subprocess.run(["runuser", "-u", pw.pw_name, "--"] + env
                              + argv, input=stdin, capture_output=True,
                              text=True, timeout=WAIT, cwd=pw.pw_dir)

    def test_readme_per_user_section(self):
        with open(os.path.join(SRCDIR, "README.md")) as f:
            block = readme_block(f.read(), "### A per-user service")
        self.assertIsNotNone(block, "per-user section not found")
        # Up to the first run; the unit and linger need a user manager.
        typed = block.split("systemctl --user", 1)[0]
        self.assertIn("popfetchd --once", typed)
        pw = self.add_user()
        with Dovecot(prefix="popfetchd-newuser-dovecot-") as dc:
            dc.add_user(pw.pw_name, "s3cret-for-e2e")
            dc.deliver_many(pw.pw_name, mailgen.generate(
                self.MESSAGES, seed=12, tag="e2e"))
            ca = os.path.join(pw.pw_dir, "test-ca.pem")
            shutil.copy(dc.ca_file, ca)
            os.chmod(ca, 0o644)
            script = re.sub(r'host = "[^"]*";\n(\s*)',
                            lambda m: 'host = "127.0.0.1";\n%sport = %d;\n'
                            '%sca_file = "%s";\n%s' % (
                                m.group(1), dc.ssl_port, m.group(1), ca,
                                m.group(1)), typed, count=1)
            script = re.sub(r'user = "alice";', 'user = "%s";'
                            % pw.pw_name, script)
            path = os.path.join(pw.pw_dir, "readme.sh")
            with open(path, "w") as f:
                f.write("set -e\n" + script)
            os.chmod(path, 0o644)
            r = self.as_user(pw, ["sh", path], stdin="s3cret-for-e2e\n")
            if os.environ.get("SHOW"):
                print(r.stdout + r.stderr)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            conf = os.path.join(pw.pw_dir, ".config/popfetchd/popfetchd.conf")
            state = os.path.join(pw.pw_dir, ".local/state/popfetchd")
            # --check-config said which file and which state it chose.
            self.assertIn(conf, r.stdout + r.stderr)
            self.assertIn(state, r.stdout + r.stderr)
            # The first run kept the mail on the server.
            self.assertEqual(len(dc.server_messages(pw.pw_name)),
                             self.MESSAGES)
            r = self.as_user(pw, ["popfetchd", "--once"])
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertEqual(dc.server_messages(pw.pw_name), [])
        new = os.path.join(pw.pw_dir, "Maildir", "new")
        names = os.listdir(new)
        self.assertEqual(len(names), self.MESSAGES)
        for name in names:
            self.assertEqual(os.stat(os.path.join(new, name)).st_uid,
                             pw.pw_uid)
        self.assertEqual(os.stat(state).st_uid, pw.pw_uid)


if __name__ == "__main__":
    main()
