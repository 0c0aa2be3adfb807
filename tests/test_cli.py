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

Run: python3 tests/test_cli.py --binary build/popfetchd
"""

import os

from harness import FakePopCase, main, write_config

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


if __name__ == "__main__":
    main()
