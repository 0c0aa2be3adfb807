"""The command line as a new user meets it.

- Per-user files: without -c, a normal user's popfetchd reads
  $XDG_CONFIG_HOME/popfetchd/popfetchd.conf (~/.config/... when unset)
  when it exists, else /etc/popfetchd/popfetchd.conf; state_dir defaults
  to $STATE_DIRECTORY, else $XDG_STATE_HOME/popfetchd
  (~/.local/state/popfetchd), else /var/lib/popfetchd. --check-config
  says which file and which state directory it chose, and why.
- A first run as a normal user with nothing but ~/.config/popfetchd/
  popfetchd.conf fetches, its state under ~/.local/state/popfetchd.
- Modes: two of them in one run are refused (64) with both options
  named; -k and -q are refused with modes they mean nothing to; -V is
  --version.
- -q: a --once run that fetched nothing prints nothing; one that fetched
  or failed prints its summary line (errors always).
- -k: every account keeps its mail for this run; the next run without it
  deletes what was fetched, without fetching it again.
- --check-config finds, without a server, what the first poll would fail
  on: password files missing, open to others or unreadable; credentials
  missing from $CREDENTIALS_DIRECTORY (a note where it is not set);
  a password_command or oauth2.client_secret_command whose program is
  not in $PATH; an OAuth2 account without the token --authorize leaves;
  auth = "external" without a certificate; client key open to others or
  not matching its certificate; a CA file that cannot be loaded;
  a Maildir whose parent does not exist (popfetchd would not make it);
  state_dir or a Maildir (or its nearest parent) not writable by the
  user, or on a read-only file system (the sandbox's: ReadWritePaths=);
  root writing another user's Maildir. Each line names the file, line,
  account and key; the status is 78.
- Root on another user's state_dir is refused (64) with the runuser
  command to use instead, and leaves nothing there.

Run: python3 tests/test_cli.py --binary build/popfetchd
"""

import os
import shutil
import subprocess

from fakepop import make_cert
from harness import BINARY, FakePopCase, main, write_config

NOBODY = 65534

MESSAGES = [b"From: a@example.org\nSubject: one\n\nbody one\n"]


def as_nobody():
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


class PerUserTest(FakePopCase):
    """Runs as nobody, with a home of its own in self.dir."""

    MESSAGES = MESSAGES

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("needs root, to run popfetchd as another user")
        os.chmod(self.dir, 0o711)
        self.home = os.path.join(self.dir, "home")
        os.mkdir(self.home, 0o700)
        os.chown(self.home, NOBODY, NOBODY)
        self.env = {"HOME": self.home, "XDG_CONFIG_HOME": "",
                    "XDG_STATE_HOME": "", "STATE_DIRECTORY": ""}

    def mkdirs(self, path):
        """PATH and its parents below the home, made as nobody would."""
        rel = os.path.relpath(path, self.home)
        here = self.home
        for part in rel.split(os.sep):
            here = os.path.join(here, part)
            if not os.path.isdir(here):
                os.mkdir(here, 0o700)
                os.chown(here, NOBODY, NOBODY)

    def user_config(self, folder, srv=None, **settings):
        """A configuration in FOLDER/popfetchd/popfetchd.conf, owned by
        nobody; one account on SRV (or a made-up one)."""
        self.mkdirs(os.path.join(folder, "popfetchd"))
        acct = {"name": "mine", "host": "127.0.0.1",
                "port": srv.port if srv else 995,
                "tls": "none" if srv else "implicit",
                "allow_plaintext": bool(srv), "user": self.USER,
                "password": self.PASSWORD, "maildir": "~/Maildir",
                "received_header": False, "timeout": 20}
        path = write_config(os.path.join(folder, "popfetchd", "popfetchd.conf"),
                            [acct], **settings)
        os.chown(path, NOBODY, NOBODY)
        return path

    def check_config(self, env=None):
        r = self.run_popfetchd("--check-config",
                               env=dict(self.env, **(env or {})),
                               preexec_fn=as_nobody)
        return r

    def chosen(self, result):
        """{"config": (path, why), "state_dir": (path, why)} from the
        first lines of --check-config."""
        out = {}
        for line in result.stdout.splitlines()[:2]:
            key, rest = line.split(": ", 1)
            path, why = rest.rsplit(" (", 1)
            out[key] = (path, why.rstrip(")"))
        return out

    def test_config_in_dot_config(self):
        path = self.user_config(os.path.join(self.home, ".config"))
        r = self.check_config()
        self.assert_exit(r, 0)
        got = self.chosen(r)
        self.assertEqual(got["config"], (path, "~/.config"))
        self.assertEqual(got["state_dir"],
                         (os.path.join(self.home, ".local/state/popfetchd"),
                          "~/.local/state"))
        self.assertIn("maildir=%s/Maildir" % self.home, r.stdout)

    def test_xdg_variables(self):
        xdg_cfg = os.path.join(self.home, "cfg")
        xdg_state = os.path.join(self.home, "st")
        # Also there, but $XDG_CONFIG_HOME comes first.
        self.user_config(os.path.join(self.home, ".config"))
        path = self.user_config(xdg_cfg)
        r = self.check_config({"XDG_CONFIG_HOME": xdg_cfg,
                               "XDG_STATE_HOME": xdg_state})
        self.assert_exit(r, 0)
        got = self.chosen(r)
        self.assertEqual(got["config"], (path, "$XDG_CONFIG_HOME"))
        self.assertEqual(got["state_dir"],
                         (os.path.join(xdg_state, "popfetchd"),
                          "$XDG_STATE_HOME"))

    def test_state_directory_wins(self):
        """systemd's StateDirectory= (user units too) comes first; the
        file's own state_dir comes before all of them."""
        self.user_config(os.path.join(self.home, ".config"))
        unit_state = os.path.join(self.home, "unit-state")
        r = self.check_config({"STATE_DIRECTORY": unit_state,
                               "XDG_STATE_HOME": "/nowhere"})
        self.assert_exit(r, 0)
        self.assertEqual(self.chosen(r)["state_dir"],
                         (unit_state, "$STATE_DIRECTORY"))
        own = os.path.join(self.home, "own-state")
        self.user_config(os.path.join(self.home, ".config"), state_dir=own)
        r = self.check_config({"STATE_DIRECTORY": unit_state})
        self.assert_exit(r, 0)
        self.assertEqual(self.chosen(r)["state_dir"],
                         (own, "state_dir in the file"))

    def test_no_file_names_both(self):
        """Neither the user's file nor the system's: the error says where
        a first configuration goes (the system file may exist on a test
        machine; then it is what is read)."""
        if os.path.exists("/etc/popfetchd/popfetchd.conf"):
            self.skipTest("/etc/popfetchd/popfetchd.conf exists here")
        r = self.check_config()
        self.assert_exit(r, 78)
        self.assertIn(os.path.join(self.home,
                                   ".config/popfetchd/popfetchd.conf"),
                      r.stderr)
        self.assertIn("/etc/popfetchd/popfetchd.conf", r.stderr)

    def test_first_fetch_as_user(self):
        """Only ~/.config/popfetchd/popfetchd.conf: --once fetches into
        ~/Maildir, its state in ~/.local/state/popfetchd."""
        srv = self.server(tls=None)
        self.user_config(os.path.join(self.home, ".config"), srv)
        r = self.run_popfetchd("--once", env=self.env, preexec_fn=as_nobody)
        self.assert_exit(r, 0)
        self.assert_summary(r, "mine", 1)
        self.assert_delivered_exactly(MESSAGES,
                                      os.path.join(self.home, "Maildir"))
        state = os.path.join(self.home, ".local/state/popfetchd")
        self.assertTrue(os.listdir(state), "no state in %s" % state)
        self.assertEqual(os.stat(state).st_uid, NOBODY)


class ModesTest(FakePopCase):

    def test_version(self):
        long = self.run_popfetchd("--version")
        self.assert_exit(long, 0)
        self.assertRegex(long.stdout, r"^popfetchd \d+\.\d+\.\d+\n$")
        short = self.run_popfetchd("-V")
        self.assert_exit(short, 0)
        self.assertEqual(short.stdout, long.stdout)

    def test_conflicts_named(self):
        """Each pair is refused before any file is read, naming both (or
        the one given twice)."""
        cases = [
            (["--check-config", "--once"], ["--check-config", "--once"]),
            (["--serverinfo", "a", "--list", "b"], ["--serverinfo", "--list"]),
            (["--list", "a", "--list", "b"], ["--list", "twice"]),
            (["--once", "--status"], ["--once", "--status"]),
            (["--authorize", "a", "--once"], ["--authorize", "--once"]),
            (["--import-uids", "mpop:x", "--convert", "mpop:y"],
             ["--import-uids", "--convert"]),
            (["-k", "--list", "a"], ["-k/--keep", "--list"]),
            (["-k", "--check-config"], ["-k/--keep", "--check-config"]),
            (["-q", "--serverinfo", "a"], ["-q/--quiet", "--serverinfo"]),
        ]
        for args, words in cases:
            with self.subTest(args=args):
                r = self.run_popfetchd("-c", "/nonexistent.conf", *args)
                self.assert_exit(r, 64)
                for w in words:
                    self.assertIn(w, r.stderr)
                self.assertNotIn("nonexistent", r.stderr)

    def test_allowed_combinations(self):
        """-q and -k with --once, -q with --check-config: accepted."""
        srv = self.server([])
        conf = self.config(srv)
        for args in (["--once", "-q", "-k"], ["--check-config", "-q"]):
            with self.subTest(args=args):
                r = self.run_popfetchd("-c", conf, *args)
                self.assert_exit(r, 0)
                self.assertEqual(r.stdout + r.stderr, "")


class QuietKeepTest(FakePopCase):

    MESSAGES = MESSAGES

    def test_quiet(self):
        srv = self.server()
        conf = self.config(srv)
        r = self.run_once(conf, "-q")
        self.assert_exit(r, 0)
        self.assert_summary(r, "fake", 1)
        self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
        # Nothing new: silence with -q, a summary line without.
        r = self.run_once(conf, "-q")
        self.assert_exit(r, 0)
        self.assertEqual(r.stdout + r.stderr, "")
        r = self.run_once(conf)
        self.assert_exit(r, 0)
        self.assert_summary(r, "fake", 0)
        # A failure always shows.
        conf = self.config(srv, password="wrong")
        r = self.run_once(conf, "-q")
        self.assert_exit(r, 77)
        self.assertRegex(r.stderr, r"account=fake .*result=auth")

    def test_keep_once(self):
        srv = self.server()
        conf = self.config(srv, keep=False)
        r = self.run_once(conf, "-k")
        self.assert_exit(r, 0)
        self.assert_summary(r, "fake", 1)
        self.assertRegex(r.stderr, r"deleted=0\b")
        self.assertEqual(srv.messages, MESSAGES, "-k deleted on the server")
        self.assert_delivered_exactly(MESSAGES)
        # Without -k the account's own keep = false applies again.
        r = self.run_once(conf)
        self.assert_exit(r, 0)
        self.assert_summary(r, "fake", 0)
        self.assertRegex(r.stderr, r"deleted=1\b")
        self.assertEqual(srv.messages, [])
        self.assert_delivered_exactly(MESSAGES)


class CheckConfigTest(FakePopCase):
    """--check-config's look at the files, no server needed."""

    def conf(self, **keys):
        acct = {"name": "acc", "host": "pop.example.com", "user": "u",
                "maildir": self.maildir}
        acct.update(keys)
        return write_config(os.path.join(self.dir, "c.conf"), [acct],
                            state_dir=os.path.join(self.dir, "state"))

    def secret(self, name, mode=0o600):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write("pw\n")
        os.chmod(path, mode)
        return path

    def check(self, conf, status, *patterns, env=None, preexec_fn=None):
        r = self.run_popfetchd("--check-config", "-c", conf, env=env,
                               preexec_fn=preexec_fn)
        self.assert_exit(r, status)
        for p in patterns:
            self.assertRegex(r.stderr, r"c\.conf:\d+: account \"acc\": " + p)
        return r

    def test_password_file(self):
        self.check(self.conf(password_file=os.path.join(self.dir, "none")),
                   78, r"password_file \S+/none: No such file.*create it")
        loose = self.secret("loose", 0o640)
        self.check(self.conf(password_file=loose), 78,
                   r"password_file \S+: readable .*chmod 600 " + loose)
        self.check(self.conf(password_file=self.secret("ok")), 0)

    def test_credential(self):
        conf = self.conf(password_credential="acc")
        r = self.check(conf, 0, r"note: password_credential \"acc\" .*"
                       r"LoadCredential=acc:FILE")
        creds = os.path.join(self.dir, "creds")
        os.mkdir(creds, 0o700)
        env = {"CREDENTIALS_DIRECTORY": creds}
        self.check(conf, 78, r"password_credential \S+/acc: No such file",
                   env=env)
        with open(os.path.join(creds, "acc"), "w") as f:
            f.write("pw\n")
        os.chmod(os.path.join(creds, "acc"), 0o400)
        r = self.check(conf, 0, env=env)
        self.assertNotIn("note:", r.stderr)

    def test_password_command(self):
        """The program a command starts is looked up as the shell will;
        what shell syntax makes of the first word is left alone."""
        self.check(self.conf(password_command="no-such-prog-4711 show x"),
                   78, r"password_command: no-such-prog-4711: command not "
                   r"found in \$PATH")
        self.check(self.conf(password_command=self.dir + "/none -x"), 78,
                   r"password_command: \S+/none: No such file")
        self.check(self.conf(password_command="cat " + self.secret("pw")), 0)
        self.check(self.conf(password_command='"$HOME/bin/pw" x'), 0)

    def test_oauth2_sources(self):
        """The client secret's file, and the token --authorize leaves."""
        secret = self.secret("client", 0o644)
        token = os.path.join(self.dir, "acc.oauth2")
        conf = self.conf(password=None, oauth2={
            "provider": "gmail", "client_id": "id.example",
            "client_secret_file": secret, "token_file": token})
        r = self.check(conf, 78, r"oauth2\.client_secret_file \S+: "
                       r"readable .*chmod 600",
                       r"oauth2\.token_file \S+: no token yet; run "
                       r"popfetchd --authorize acc")
        os.chmod(secret, 0o600)
        self.secret("acc.oauth2")
        r = self.check(conf, 0)
        self.assertNotIn("oauth2", r.stderr)

    def test_read_only_file_system(self):
        """A Maildir on a read-only mount, as the service's sandbox makes
        every path it does not open; under systemd the line names the
        drop-in's ReadWritePaths=."""
        if os.geteuid() != 0 or shutil.which("mount") is None:
            self.skipTest("needs root and mount(8) for a read-only bind "
                          "mount")
        ro = os.path.join(self.dir, "ro")
        os.mkdir(ro)
        for args in (["--bind", ro, ro], ["-o", "remount,bind,ro", ro]):
            r = subprocess.run(["mount"] + args, capture_output=True,
                               text=True)
            if r.returncode != 0:
                self.skipTest("cannot bind-mount read-only here: "
                              + r.stderr.strip())
            if args[0] == "--bind":
                self.addCleanup(subprocess.run, ["umount", "-l", ro])
        conf = self.conf(password_file=self.secret("pw"),
                         maildir=os.path.join(ro, "Maildir"))
        r = self.check(conf, 78, r"maildir \S+/ro/Maildir: on a read-only "
                       r"file system\n")
        self.check(conf, 78, r"maildir \S+: on a read-only file system; "
                   r"the service's sandbox needs ReadWritePaths=",
                   env={"INVOCATION_ID": "0123456789abcdef"})

    def test_external_needs_certificate(self):
        self.check(self.conf(auth="external", password=None), 78,
                   r"auth = \"external\" needs client_cert")

    def test_client_certificate(self):
        other = os.path.join(self.dir, "other")
        os.mkdir(other)
        cert2, key2 = make_cert(other)
        key = os.path.join(self.dir, "key.pem")
        shutil.copy(self.key, key)
        os.chmod(key, 0o600)
        os.chmod(key2, 0o600)
        pw = self.secret("pw")
        self.check(self.conf(password_file=pw, client_cert=self.cert,
                             client_key=key), 0)
        self.check(self.conf(password_file=pw, client_cert=self.cert,
                             client_key=key2), 78,
                   r"TLS: .*client key \S+.*(does not match|mismatch)")
        os.chmod(key, 0o644)
        self.check(self.conf(password_file=pw, client_cert=self.cert,
                             client_key=key), 78,
                   r"client_key \S+: readable .*chmod 600")

    def test_ca_file(self):
        self.check(self.conf(password_file=self.secret("pw"),
                             ca_file=os.path.join(self.dir, "no-ca.pem")),
                   78, r"TLS: .*no-ca\.pem")

    def test_unwritable_as_user(self):
        """As nobody: the state directory and the Maildir's parent."""
        if os.geteuid() != 0:
            self.skipTest("needs root, to run popfetchd as another user")
        os.chmod(self.dir, 0o755)
        pw = self.secret("pw")
        os.chown(pw, NOBODY, NOBODY)
        conf = self.conf(password_file=pw,
                         maildir=os.path.join(self.dir, "a", "Maildir"))
        os.chmod(conf, 0o644)
        r = self.run_popfetchd("--check-config", "-c", conf,
                               preexec_fn=as_nobody)
        self.assert_exit(r, 78)
        self.assertRegex(r.stderr, r"c\.conf: state_dir \S+/state: missing, "
                         r"and nobody cannot create it in " + self.dir +
                         r"; create it: install -d -o nobody")
        # No parent: popfetchd would not make one (a typo, an unmounted
        # file system).
        self.assertRegex(r.stderr, r"account \"acc\": maildir \S+/a/Maildir"
                         r": its parent \S+/a does not exist, .*create it: "
                         r"install -d -o nobody \S+/a\n")
        os.mkdir(os.path.join(self.dir, "a"), 0o755)
        r = self.run_popfetchd("--check-config", "-c", conf,
                               preexec_fn=as_nobody)
        self.assert_exit(r, 78)
        self.assertRegex(r.stderr, r"account \"acc\": maildir \S+/a/Maildir"
                         r": missing, and nobody cannot create it")
        # Once made for nobody, both pass.
        os.mkdir(os.path.join(self.dir, "state"))
        for d in ("state", "a"):
            os.chown(os.path.join(self.dir, d), NOBODY, NOBODY)
        r = self.run_popfetchd("--check-config", "-c", conf,
                               preexec_fn=as_nobody)
        self.assert_exit(r, 0)

    def test_root_and_another_users_files(self):
        if os.geteuid() != 0:
            self.skipTest("needs root")
        pw = self.secret("pw")
        os.mkdir(self.maildir)
        os.chown(self.maildir, NOBODY, NOBODY)
        conf = self.conf(password_file=pw)
        self.check(conf, 78, r"maildir \S+ belongs to nobody: .*run popfetchd "
                   r"as nobody")
        state = os.path.join(self.dir, "state")
        os.mkdir(state)
        os.chown(state, NOBODY, NOBODY)
        for args in (["--once"], ["--check-config"], []):
            with self.subTest(args=args):
                r = self.run_popfetchd("-c", conf, *args)
                self.assert_exit(r, 64)
                self.assertIn("state_dir %s belongs to nobody" % state,
                              r.stderr)
                self.assertIn("runuser -u nobody -- %s -c %s"
                              % (BINARY, conf), r.stderr)
                self.assertEqual(os.listdir(state), [])


if __name__ == "__main__":
    main()
