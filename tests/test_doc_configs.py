#!/usr/bin/env python3
"""Every configuration the documentation shows passes `--check-config`:
the README's code blocks (and the files its shell blocks write with a
here-document), the examples of popfetchd(8) and popfetchd.conf(5), and
conf/popfetchd.conf.example. A lone account group ({ name = ...; }) is
checked inside an accounts list. Each runs in a root of its own: absolute
paths move below it, ~ is a home there, and what the configuration needs
to find is made the way its reader would make it (password files 0600,
credentials 0400 in $CREDENTIALS_DIRECTORY as systemd passes them, the
state directory, each Maildir's parent).

    python3 tests/test_doc_configs.py --binary build/popfetchd
"""
import os
import re
import shutil
import socket
import subprocess
import tempfile
import unittest

from harness import BINARY, RUN_TIMEOUT, clean_env, main

SRCDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Files a configuration names for popfetchd to read, not to write.
READ_KEYS = ("password_file", "client_secret_file")


def groff_text(text):
    """The characters a man page's escapes stand for."""
    for esc, char in (("\\-", "-"), ("\\(aq", "'"), ("\\(dq", '"'),
                      ("\\e", "\\"), ("\\&", "")):
        text = text.replace(esc, char)
    return text


def heredocs(block):
    """The here-documents BLOCK writes into a popfetchd.conf."""
    return [m.group(1) for m in re.finditer(
        r"^[^\n]*popfetchd\.conf[^\n]*<<\s*'?\\?EOF'?\n(.*?)^EOF$", block,
        re.S | re.M)]


def looks_like_config(block):
    return (re.search(r"^\s*(\{|\w+\s*=[^\n]*;)", block, re.M)
            and not re.search(r"^\s*\[\w+\]", block, re.M)
            and not block.lstrip().startswith(("$", "#")))


def snippets():
    """(where, text) for each configuration the documentation shows."""
    out = []
    with open(os.path.join(SRCDIR, "README.md")) as f:
        readme = f.read()
    for i, (lang, block) in enumerate(
            re.findall(r"```(\w*)\n(.*?)```", readme, re.S)):
        docs = heredocs(block)
        out += [("README.md block %d" % i, d) for d in docs]
        if not docs and lang != "sh" and looks_like_config(block):
            out.append(("README.md block %d" % i, block))
    for page in ("man/popfetchd.8", "man/popfetchd.conf.5"):
        with open(os.path.join(SRCDIR, page)) as f:
            text = f.read()
        for i, block in enumerate(
                re.findall(r"^\.EX\n(.*?)^\.EE", text, re.S | re.M)):
            block = groff_text(block)
            docs = heredocs(block)
            out += [("%s example %d" % (page, i), d) for d in docs]
            if not docs and looks_like_config(block):
                out.append(("%s example %d" % (page, i), block))
    with open(os.path.join(SRCDIR, "conf", "popfetchd.conf.example")) as f:
        out.append(("conf/popfetchd.conf.example", f.read()))
    return out


class DocConfigs(unittest.TestCase):

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="popfetchd-doc-")
        self.addCleanup(shutil.rmtree, self.root, True)

    def prepare(self, text):
        """TEXT made to run in a root of its own; returns (text, env)."""
        home = os.path.join(self.root, "home")
        creds = os.path.join(self.root, "credentials")
        os.makedirs(home, exist_ok=True)
        os.makedirs(creds, exist_ok=True)

        def moved(v):
            if v.startswith("~/"):
                return os.path.join(home, v[2:])
            return os.path.join(self.root, v.lstrip("/"))

        for m in re.finditer(r'\b(\w+)\s*=\s*"([/~][^"]*)"', text):
            key, path = m.group(1), moved(m.group(2))
            if key in READ_KEYS:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                             0o600)
                os.write(fd, b"not-the-password\n")
                os.close(fd)
            elif key == "state_dir":
                os.makedirs(path, 0o700, exist_ok=True)
            elif key == "maildir":
                os.makedirs(os.path.dirname(path.rstrip("/")), exist_ok=True)
            elif key == "lmtp":
                # The socket must exist (--check-config looks): a
                # listening stand-in at the moved path.
                os.makedirs(os.path.dirname(path), exist_ok=True)
                if not os.path.exists(path):
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    sock.bind(path)
                    self.addCleanup(sock.close)
            elif key == "mda":
                # The program must exist (--check-config looks): a
                # stand-in at the moved path.
                prog = path.split()[0]
                os.makedirs(os.path.dirname(prog), exist_ok=True)
                with open(prog, "w") as f:
                    f.write("#!/bin/sh\nexit 0\n")
                os.chmod(prog, 0o755)
        # The programs the commands name: stand-ins first in $PATH.
        bindir = os.path.join(self.root, "bin")
        os.makedirs(bindir, exist_ok=True)
        for cmd in re.findall(r'(?:password|client_secret)_command\s*=\s*'
                              r'"([^"]+)"', text):
            prog = os.path.join(bindir, cmd.split()[0])
            if "/" not in cmd.split()[0]:
                with open(prog, "w") as f:
                    f.write("#!/bin/sh\necho not-the-password\n")
                os.chmod(prog, 0o755)
        for name in re.findall(r'password_credential\s*=\s*"([^"]+)"', text):
            path = os.path.join(creds, name)
            with open(path, "w") as f:
                f.write("not-the-password\n")
            os.chmod(path, 0o400)
        text = re.sub(r'"(/[^"]*)"', lambda m: '"%s"' % os.path.join(
            self.root, m.group(1).lstrip("/")), text)
        if not re.search(r"^\s*state_dir\s*=", text, re.M):
            os.makedirs(os.path.join(self.root, "state"), 0o700,
                        exist_ok=True)
            text = 'state_dir = "%s/state";\n' % self.root + text
        return text, {"HOME": home, "CREDENTIALS_DIRECTORY": creds,
                      "PATH": bindir + ":" + os.environ.get("PATH", "")}

    def check(self, snippet):
        if not re.search(r"^\s*accounts\s*=", snippet, re.M):
            snippet = "accounts = (\n%s\n);\n" % snippet
        text, env = self.prepare(snippet)
        conf = os.path.join(self.root, "popfetchd.conf")
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        env = clean_env(env)
        for var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "STATE_DIRECTORY"):
            env.pop(var, None)
        r = self.check_config(conf, env)
        # OAuth2 examples say to run --authorize next: stand in for the
        # token it leaves where --check-config looked for one, and ask
        # again.
        tokens = re.findall(r"oauth2\.token_file (/\S+): no token yet",
                            r.stderr)
        for path in tokens:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, b"{}")
            os.close(fd)
        return self.check_config(conf, env) if tokens else r

    def check_config(self, conf, env):
        return subprocess.run([BINARY, "--check-config", "-c", conf],
                              capture_output=True, text=True, env=env,
                              stdin=subprocess.DEVNULL, timeout=RUN_TIMEOUT)

    def test_every_snippet_passes(self):
        found = snippets()
        where = [w for w, _ in found]
        # The extraction itself: the places known to hold configurations.
        self.assertGreaterEqual(len(found), 10, where)
        for page in ("README.md", "man/popfetchd.8", "man/popfetchd.conf.5",
                     "conf/popfetchd.conf.example"):
            self.assertTrue(any(w.startswith(page) for w in where), page)
        for name, snippet in found:
            with self.subTest(snippet=name):
                r = self.check(snippet)
                self.assertEqual(r.returncode, 0, "%s\n%s\n%s"
                                 % (snippet, r.stdout, r.stderr))
                self.assertNotIn("problem", r.stderr)
            shutil.rmtree(self.root)
            os.makedirs(self.root)

    def test_a_broken_snippet_fails(self):
        """The check can fail: the same account passes, and fails with a
        key popfetchd does not know."""
        good = ('{ name = "x"; host = "h"; user = "u"; '
                'password_file = "/etc/x.pass"; maildir = "/m/Maildir"; %s}')
        r = self.check(good % "")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.check(good % "no_such_key = 1; ")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no_such_key", r.stderr)

if __name__ == "__main__":
    main()
