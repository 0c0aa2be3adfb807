#!/usr/bin/env python3
"""The README's "Install as a service", walked under a real systemd: a
Debian 12 root (debootstrap --variant=minbase) booted with
`systemd-nspawn -b`, the build installed into it with `meson install
--destdir`, and a oneshot unit inside that runs the README's shell blocks
as written, then waits for the first poll, reloads and stops the service
and writes what it saw (systemctl show, the journal, the service's
credentials) into /root/walk. The host then checks the mail, the POP3
mailbox of a throwaway Dovecot on its loopback (the container shares the
host's network), owners and modes.

Three walks: the README's system service (delivering as Dovecot's
vmail), the same service with the /home variant of maildirs.conf.example
as its drop-in, and the README's per-user service. What the README takes
for granted is made before its blocks run, and only that: Dovecot's vmail
user and /var/vmail; a user with sudo rights whose user manager runs (as
after a login), running the per-user block in a login shell. The README's
server and user name are replaced by the throwaway Dovecot's, its
certificate authority is added as ca_file, and the password its `read`
waits for comes from a file.

Times here (2 loaded cores): 6 to 9 s with the root cached; 60 to 80 s
when it is made (debootstrap), once per set of packages.

The root is cached in $POPFETCHD_NSPAWN_CACHE (default
/var/cache/popfetchd-tests/bookworm-root) with a stamp naming the recipe
and the packages in it: systemd and what the README's commands use
(sudo, procps for the unit's kill, dbus for logind), plus the packages of
the libraries the binary under test links (ldd, dpkg -S). It is made again
when missing or when the stamp lacks a package; each boot runs on an
overlay of it, thrown away afterwards. Debian's mirror is the one this
machine's apt uses for bookworm ($POPFETCHD_TEST_MIRROR overrides it).
Needs root, debootstrap and systemd-container (tools/deps.sh); skips,
saying why, where one is missing, the mirror cannot be reached or the
container does not boot.

    python3 tests/test_nspawn.py --binary build/popfetchd
"""
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
import unittest

from dovecot import Dovecot
from harness import BINARY, main
from test_install import dropin_variants

SRCDIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILDDIR = os.path.dirname(BINARY)
CACHE = os.environ.get("POPFETCHD_NSPAWN_CACHE",
                       "/var/cache/popfetchd-tests/bookworm-root")
SUITE = "bookworm"
# Raised when the way the root is made changes, so that old roots go.
RECIPE = 1
# What the walk needs besides the binary's libraries: systemd (nspawn -b
# starts /usr/lib/systemd/systemd: no systemd-sysv), the README's sudo,
# kill for ExecReload=, the system bus for logind (loginctl
# enable-linger), pam_systemd for the user manager (it sets
# $XDG_RUNTIME_DIR for user@.service).
BASE_PACKAGES = ["systemd", "dbus", "sudo", "procps", "libpam-systemd"]
# debootstrap of a minbase root with them took 66 to 130 s here; under
# meson's 600 s for the whole file.
DEBOOTSTRAP_TIMEOUT = 420
# The whole boot, the walk and the power-off; the walk's own waits are
# bounded by WALK_WAIT inside it.
BOOT_TIMEOUT = 240
WALK_WAIT = 60
HOSTNAME = "popfetchd-walk"
CA_PATH = "/etc/ssl/popfetchd-test-ca.pem"
PASSWORD = "nspawn-secret"
# For a sanitizer build, a drop-in for both units. LeakSanitizer stops
# the process's threads with ptrace, which the unit's system call filter
# refuses: its check at exit would fail every stop. The other tests look
# for leaks; here ASan and UBSan still stop at the first error.
SANITIZER_DROPIN = """[Service]
Environment=ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
Environment=UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
"""


def run(args, timeout=120, **kw):
    return subprocess.run(args, capture_output=True, text=True,
                          errors="replace", timeout=timeout,
                          env=dict(os.environ, LC_ALL="C", SYSTEMD_COLORS="0",
                                   SYSTEMD_LOG_COLOR="0",
                                   DEBIAN_FRONTEND="noninteractive"), **kw)


def library_packages(binary):
    """The Debian packages of the shared libraries BINARY links."""
    r = run(["ldd", binary])
    if r.returncode != 0:
        raise unittest.SkipTest("ldd %s failed: %s" % (binary, r.stderr))
    libs = re.findall(r"=> (/\S+)", r.stdout)
    # A merged /usr registers /usr/lib/... while ldd says /lib/...
    cands = {lib: [lib, "/usr" + lib, os.path.realpath(lib)] for lib in libs}
    # One query for all: dpkg-query takes a while to start. It exits 1
    # when some path is nobody's, and says whose the others are.
    q = run(["dpkg-query", "-S"] + sorted({c for cs in cands.values()
                                          for c in cs}))
    owner = {}
    for line in q.stdout.splitlines():
        m = re.match(r"^([^:,\s]+)(?::\S+)?: (/.*)$", line)
        if m:
            owner[m.group(2)] = m.group(1)
    packages = set()
    for lib, cs in cands.items():
        found = [owner[c] for c in cs if c in owner]
        if not found:
            raise unittest.SkipTest("%s links %s, which no Debian package "
                                    "installs" % (binary, lib))
        packages.add(found[0])
    return packages


def host_mirror():
    """The mirror this machine's apt uses for SUITE, or None for
    debootstrap's default."""
    if os.environ.get("POPFETCHD_TEST_MIRROR"):
        return os.environ["POPFETCHD_TEST_MIRROR"]
    r = run(["apt-get", "indextargets", "--format", "$(REPO_URI)",
             "Identifier: Packages", "Release: " + SUITE, "Component: main"])
    uris = r.stdout.split() if r.returncode == 0 else []
    return uris[0] if uris else None


def read_stamp():
    try:
        with open(CACHE + ".stamp") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def debootstrap(packages):
    """Make the root anew with PACKAGES; skip when the mirror says no."""
    new = CACHE + ".new"
    shutil.rmtree(new, True)
    mirror = host_mirror()
    args = ["debootstrap", "--variant=minbase",
            "--include=" + ",".join(sorted(packages)), SUITE, new]
    try:
        r = run(args + ([mirror] if mirror else []),
                timeout=DEBOOTSTRAP_TIMEOUT)
    except subprocess.TimeoutExpired:
        shutil.rmtree(new, True)
        raise unittest.SkipTest("debootstrap took over %d s (mirror %s)"
                                % (DEBOOTSTRAP_TIMEOUT, mirror))
    if r.returncode != 0:
        log = os.path.join(new, "debootstrap", "debootstrap.log")
        tail = ""
        if os.path.exists(log):
            with open(log, errors="replace") as f:
                tail = f.read()[-1500:]
        shutil.rmtree(new, True)
        raise unittest.SkipTest("debootstrap %s from %s failed (exit %d): "
                                "%s%s" % (SUITE, mirror or "its default",
                                          r.returncode, r.stderr[-1500:],
                                          tail))
    # Without a stamp, a root cut short here is made again next time.
    if os.path.exists(CACHE + ".stamp"):
        os.unlink(CACHE + ".stamp")
    shutil.rmtree(CACHE, True)
    os.rename(new, CACHE)
    with open(CACHE + ".stamp", "w") as f:
        json.dump({"recipe": RECIPE, "suite": SUITE,
                   "packages": sorted(packages)}, f)


def ensure_root(packages):
    """The cached root with PACKAGES, made if need be: returns the seconds
    that took (0 when the cache served) and a file whose shared lock,
    held while the root is in use, keeps another run from replacing it
    meanwhile. A new root keeps the old one's packages too, so that
    builds linking different libraries (a sanitizer's runtime) take turns
    without a rebuild each."""
    os.makedirs(os.path.dirname(CACHE), exist_ok=True)
    lock = open(CACHE + ".lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        stamp = read_stamp()
        same = (stamp.get("recipe"), stamp.get("suite")) == (RECIPE, SUITE)
        have = set(stamp.get("packages", [])) if same else set()
        secs = 0.0
        if not (os.path.isdir(CACHE) and packages <= have):
            start = time.monotonic()
            debootstrap(packages | have)
            secs = time.monotonic() - start
        fcntl.flock(lock, fcntl.LOCK_SH)
        return secs, lock
    except BaseException:
        lock.close()
        raise


def nicer_by():
    """How much nicer than the loop the helper threads run: NICER_BY of
    daemon/nicer.h, as ps prints it."""
    with open(os.path.join(SRCDIR, "daemon", "nicer.h")) as f:
        m = re.search(r"^#define NICER_BY (\d+)$", f.read(), re.M)
    if not m:
        raise AssertionError("daemon/nicer.h defines no NICER_BY")
    return m.group(1)


def readme_blocks():
    """The shell blocks of the README's "Install as a service"."""
    with open(os.path.join(SRCDIR, "README.md")) as f:
        text = f.read()
    m = re.search(r"^## Install as a service\n(.*?)^## ", text, re.S | re.M)
    if not m:
        raise AssertionError("README.md has no Install as a service section")
    return re.findall(r"^```sh\n(.*?)^```", m.group(1), re.S | re.M)


def readme_block(containing):
    blocks = [b for b in readme_blocks() if containing in b]
    if len(blocks) != 1:
        raise AssertionError("README.md: %d install blocks contain %r"
                             % (len(blocks), containing))
    return blocks[0]


def after_install(block):
    """The lines of the set-up block after `meson install`: what runs on
    the machine that gets the files."""
    lines = block.splitlines()
    at = [i for i, l in enumerate(lines) if "meson install" in l]
    if not at:
        raise AssertionError("README.md: no meson install line in:\n"
                             + block)
    return "\n".join(lines[at[0] + 1:]) + "\n"


def point_at(block, user, port):
    """BLOCK with its configuration's server, user and CA the throwaway
    Dovecot's; each must be there exactly once."""
    out, n = re.subn(r'(?m)^(\s*)host = "[^"]*";',
                     lambda m: '%shost = "127.0.0.1";\n%sport = %d;\n'
                     '%sca_file = "%s";' % (m.group(1), m.group(1), port,
                                            m.group(1), CA_PATH), block)
    out, k = re.subn(r'(?m)^(\s*)user = "[^"]*";',
                     lambda m: '%suser = "%s";' % (m.group(1), user), out)
    if (n, k) != (1, 1):
        raise AssertionError("README.md: expected one host and one user in "
                             "the configuration of:\n" + block)
    return out


def conf_value(block, key):
    m = re.search(r'(?m)^\s*%s = "([^"]*)";' % key, block)
    if not m:
        raise AssertionError("README.md: no %s in:\n%s" % (key, block))
    return m.group(1)


# Shell functions the walk scripts share. await_journal waits for a
# journal line (an event, not a delay): grep stops at the first match;
# journalctl, left following, ends at its round's end or with the walk.
# Rounds of a few seconds, each reading the journal from its start: once
# in CI a follower never showed a line that was in the journal (the
# daemon had logged it 0.13 s after the signal), and waited out its 60 s;
# a new journalctl finds what an earlier one missed.
WALK_HEAD = r"""#!/bin/bash
set -Eeu -o pipefail
report=/root/walk
failed() {
	echo "line $1: $2: exit $3" >"$report/failed"
	journalctl -b -o json --no-pager >"$report/journal.json"
}
trap 'failed $LINENO "$BASH_COMMAND" $?' ERR
await_journal() {
	local end=$((SECONDS + %(wait)d))
	until grep -q -m1 -E "$2" < <(trap - ERR
		timeout 5 journalctl $1 -f -n all -o cat || true); do
		[ "$SECONDS" -lt "$end" ] || return 1
	done
}
record() {
	echo "$1=$2" >>"$report/results"
}
nice_of() {	# each thread of process $1: TID NICE (NAME), the main one first
	awk '{print $1, $19, $2}' "/proc/$1/task/$1/stat"
	for t in /proc/$1/task/*; do
		[ "${t##*/}" = "$1" ] || awk '{print $1, $19, $2}' "$t/stat"
	done
}
set -x
"""

WALK_END = """\
journalctl -b -o json --no-pager >"$report/journal.json"
touch "$report/done"
"""

WALK_UNIT = """[Unit]
Description=Walk the README's install steps
SuccessAction=poweroff
FailureAction=poweroff
[Service]
Type=oneshot
ExecStart=/root/walk/walk.sh
StandardInput=file:/root/walk/password
StandardOutput=append:/root/walk/walk.log
StandardError=inherit
TimeoutStartSec=%d
[Install]
WantedBy=multi-user.target
"""


# After `systemctl enable --now`: the first poll (now, as the unit's
# comment says, not at a random moment of the first 30 s), a reload, a
# stop, what systemd says of it. CTL: systemctl for that unit; UNIT: the
# journalctl match of its lines.
POLL_RELOAD_STOP = """\
# The first poll, a reload, a stop.
%(ctl)s kill -s USR1 popfetchd
await_journal "%(unit)s" 'account=%(account)s listed=.* result='
pid=$(%(ctl)s show -p MainPID --value popfetchd)
grep -E '^(Uid|Gid):' "/proc/$pid/status" >"$report/creds"
nice_of "$pid" >"$report/nice"
rc=0; %(ctl)s reload popfetchd || rc=$?; record reload $rc
await_journal "%(unit)s" '^reloaded file='
rc=0; %(ctl)s stop popfetchd || rc=$?; record stop $rc
%(ctl)s show -p Result,ExecMainStatus,ExecMainCode popfetchd \\
	>>"$report/results"
"""

# A user who may use sudo, logged in (so the user manager runs), runs the
# README's per-user block in a login shell: Debian's PATH for users.
USER_LOGIN = """\
useradd --create-home --shell /bin/bash alice
echo 'alice ALL=(ALL:ALL) NOPASSWD: ALL' >/etc/sudoers.d/alice
uid=$(id -u alice)
systemctl start "user@$uid.service"
as_alice() {
	runuser -u alice -- env XDG_RUNTIME_DIR="/run/user/$uid" "$@"
}
# README.md, a per-user service
runuser -l alice -c "export XDG_RUNTIME_DIR=/run/user/$uid
	bash -Eeux -o pipefail /home/walk.sh"
"""

# The system service with a variant of maildirs.conf.example as its
# drop-in, the Maildir made as its comment says, the configuration and
# the credential as the README has them.
HOME_VARIANT = """\
useradd --create-home --shell /bin/bash %(owner)s
%(mkdir)s
install -m 0640 -g popfetchd /dev/stdin /etc/popfetchd/popfetchd.conf <<'EOF'
%(conf)sEOF
install -d -m 0700 /etc/popfetchd/secrets
sh -c 'umask 077; read -r p; printf "%%s\\\\n" "$p" \\
	>/etc/popfetchd/secrets/home.pass'
mkdir -p /etc/systemd/system/popfetchd.service.d
cat >/etc/systemd/system/popfetchd.service.d/maildirs.conf <<'EOF'
%(dropin)s
LoadCredential=home:/etc/popfetchd/secrets/home.pass
EOF
systemctl daemon-reload
sudo -u %(owner)s -g popfetchd popfetchd --check-config
systemctl enable --now popfetchd
"""


class Container:
    """An overlay of the cached root, booted once."""

    def __init__(self, dest):
        self.dir = tempfile.mkdtemp(prefix="popfetchd-nspawn-")
        self.root = os.path.join(self.dir, "root")
        upper, work = (os.path.join(self.dir, d) for d in ("upper", "work"))
        for d in (self.root, upper, work):
            os.mkdir(d)
        r = run(["mount", "-t", "overlay", "overlay", "-o",
                 "lowerdir=%s,upperdir=%s,workdir=%s" % (CACHE, upper, work),
                 self.root])
        if r.returncode != 0:
            shutil.rmtree(self.dir, True)
            raise unittest.SkipTest("cannot mount an overlay of the root: "
                                    + r.stderr)
        r = run(["cp", "-a", dest + "/.", self.root + "/"])
        if r.returncode != 0:
            self.close()
            raise AssertionError("copying the install failed: " + r.stderr)
        self.console = os.path.join(self.dir, "console.log")
        # debootstrap copied this machine's name; sudo looks it up.
        self.write("/etc/hostname", HOSTNAME + "\n")
        self.write("/etc/hosts", "127.0.0.1 localhost\n127.0.1.1 %s\n"
                   % HOSTNAME)

    def close(self):
        run(["umount", self.root])
        shutil.rmtree(self.dir, True)

    def path(self, p):
        return os.path.join(self.root, p.lstrip("/"))

    def write(self, p, text, mode=0o644):
        path = self.path(p)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)

    def read(self, p, default=None):
        try:
            with open(self.path(p), errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            if default is None:
                raise
            return default

    def add_walk(self, script):
        """SCRIPT as the oneshot walk.service, enabled."""
        self.write("/root/walk/walk.sh",
                   WALK_HEAD % {"wait": WALK_WAIT} + script + WALK_END,
                   0o755)
        self.write("/root/walk/password", PASSWORD + "\n", 0o600)
        self.write("/etc/systemd/system/walk.service",
                   WALK_UNIT % (BOOT_TIMEOUT - 30))
        wants = self.path("/etc/systemd/system/multi-user.target.wants")
        os.makedirs(wants, exist_ok=True)
        os.symlink("/etc/systemd/system/walk.service",
                   os.path.join(wants, "walk.service"))

    def boot(self):
        """Boot until the walk powers it off; returns nspawn's exit status
        and the seconds it took."""
        start = time.monotonic()
        with open(self.console, "w") as out:
            try:
                p = subprocess.run(
                    ["timeout", "-k", "10", str(BOOT_TIMEOUT),
                     "systemd-nspawn", "--register=no", "--keep-unit",
                     "--link-journal=no", "--quiet", "-D", self.root, "-b"],
                    stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, timeout=BOOT_TIMEOUT + 30,
                    env=dict(os.environ, SYSTEMD_COLORS="0"))
                status = p.returncode
            except subprocess.TimeoutExpired:
                status = -1
        return status, time.monotonic() - start

    def journal(self):
        """The entries the walk exported (journalctl -o json)."""
        return [json.loads(l) for l in
                self.read("/root/walk/journal.json", "").splitlines()
                if l.startswith("{")]

    def results(self):
        return dict(l.split("=", 1) for l in
                    self.read("/root/walk/results", "").splitlines()
                    if "=" in l)

    def account(self, name):
        """(uid, gid) of NAME in the root's passwd."""
        for line in self.read("/etc/passwd").splitlines():
            f = line.split(":")
            if f[0] == name:
                return int(f[2]), int(f[3])
        raise AssertionError("no user %s in the container" % name)

    def group(self, name):
        for line in self.read("/etc/group").splitlines():
            f = line.split(":")
            if f[0] == name:
                return int(f[2])
        raise AssertionError("no group %s in the container" % name)

    def diagnostics(self):
        walk = self.read("/root/walk/walk.log", "(no walk.log)\n")
        failed = self.read("/root/walk/failed", "")
        console = self.read_host(self.console)
        service = "\n".join(
            "%s: %s" % (e.get("SYSLOG_IDENTIFIER"), e.get("MESSAGE"))
            for e in self.journal() if "popfetchd.service" in
            (e.get("_SYSTEMD_UNIT"), e.get("_SYSTEMD_USER_UNIT"), e.get("UNIT"),
             e.get("USER_UNIT")))
        warnings = "\n".join(
            "%s: %s" % (e.get("SYSLOG_IDENTIFIER"), e.get("MESSAGE"))
            for e in self.journal() if int(e.get("PRIORITY", 6)) <= 4)
        return ("--- walk failed at: %s\n--- walk.log (end):\n%s\n"
                "--- popfetchd.service's journal:\n%s\n"
                "--- warnings and errors in the journal (end):\n%s\n"
                "--- console (end):\n%s" % (failed.strip() or "-",
                                            walk[-6000:], service[-6000:],
                                            warnings[-3000:],
                                            console[-2000:]))

    @staticmethod
    def read_host(path):
        try:
            with open(path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


class InstallAsAService(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (debootstrap, mount, "
                                    "systemd-nspawn)")
        for tool, package in (("debootstrap", "debootstrap"),
                              ("systemd-nspawn", "systemd-container")):
            if shutil.which(tool) is None:
                raise unittest.SkipTest("%s is missing (Debian: apt-get "
                                        "install %s; tools/deps.sh does)"
                                        % (tool, package))
        if not os.path.exists(os.path.join(BUILDDIR, "meson-private")):
            raise unittest.SkipTest("%s is not a meson build directory"
                                    % BUILDDIR)
        cls.dest = tempfile.mkdtemp(prefix="popfetchd-nspawn-dest-")
        try:
            cls.install()
            packages = set(BASE_PACKAGES) | library_packages(BINARY)
            cls.sanitized = any(p.startswith("libasan") for p in packages)
            cls.root_secs, cls.lock = ensure_root(packages)
        except BaseException:
            shutil.rmtree(cls.dest, True)
            raise
        cls.dc = Dovecot().start()

    @classmethod
    def install(cls):
        """meson install into cls.dest; cls.docdir: where the examples
        went."""
        # Copied onto the root: its mode becomes that of /.
        os.chmod(cls.dest, 0o755)
        r = run(["meson", "install", "-C", BUILDDIR, "--destdir", cls.dest,
                 "--no-rebuild", "--quiet"])
        if r.returncode != 0:
            raise AssertionError("meson install failed:\n" + r.stdout
                                 + r.stderr)
        r = run(["meson", "introspect", "--buildoptions", BUILDDIR])
        opts = {o["name"]: o["value"] for o in json.loads(r.stdout)}
        cls.docdir = os.path.join(opts["prefix"], opts["datadir"], "doc",
                                  "popfetchd")

    @classmethod
    def tearDownClass(cls):
        cls.dc.cleanup()
        cls.lock.close()
        shutil.rmtree(cls.dest, True)

    def container(self):
        c = Container(self.dest)
        if os.environ.get("KEEP_TMP"):
            self.addCleanup(run, ["umount", c.root])
        else:
            self.addCleanup(c.close)
        with open(self.dc.ca_file) as f:
            c.write(CA_PATH, f.read())
        if self.sanitized:
            for kind in ("system", "user"):
                c.write("/etc/systemd/%s/popfetchd.service.d/sanitizer.conf"
                        % kind, SANITIZER_DROPIN)
        return c

    def mailbox(self, name):
        """A POP3 user NAME of the throwaway Dovecot with one message."""
        self.dc.add_user(name, PASSWORD)
        self.dc.deliver(name, b"Subject: walk " + name.encode()
                        + b"\n\nbody\n")
        return name

    def boot(self, c):
        status, secs = c.boot()
        print("\n  root made in %.0f s, boot and walk %.1f s"
              % (self.root_secs, secs), end=" ", file=sys.stderr)
        if not os.path.exists(c.path("/root/walk/walk.log")):
            self.skipTest("the container did not boot as far as the walk "
                          "(nspawn exit %d):\n%s"
                          % (status, Container.read_host(c.console)[-3000:]))
        self.assertEqual(status, 0, c.diagnostics())
        self.assertTrue(os.path.exists(c.path("/root/walk/done")),
                        c.diagnostics())

    def assert_stopped_cleanly(self, c):
        """Reload and stop succeeded, and the service ended with success."""
        res = c.results()
        self.assertEqual((res.get("reload"), res.get("stop")), ("0", "0"),
                         c.diagnostics())
        self.assertEqual((res.get("Result"), res.get("ExecMainStatus")),
                         ("success", "0"), c.diagnostics())

    def assert_ran_as(self, c, unit_field, uid, gid):
        """The service's main process was UID:GID; the journal of
        popfetchd.service: its processes' lines (UNIT_FIELD names it) each
        from UID:GID, and none of theirs or of the service manager's about
        the unit at ERR or worse."""
        creds = c.read("/root/walk/creds")
        self.assertRegex(creds, r"Uid:\t%d\t" % uid)
        self.assertRegex(creds, r"Gid:\t%d\t" % gid)
        entries = c.journal()
        own = [e for e in entries if e.get(unit_field) == "popfetchd.service"]
        self.assertTrue(own, "no journal line of popfetchd.service")
        self.assertEqual({(int(e["_UID"]), int(e["_GID"])) for e in own
                          if "_UID" in e}, {(uid, gid)})
        about = own + [e for e in entries if "popfetchd.service" in
                       (e.get("UNIT"), e.get("USER_UNIT"))]
        errors = [e.get("MESSAGE") for e in about
                  if int(e.get("PRIORITY", 6)) <= 3]
        self.assertEqual(errors, [], "ERR-level lines in the journal")

    def assert_fetched(self, c, dc_user, maildir, owner):
        """DC_USER's one message is in MAILDIR, the files OWNER's, and the
        POP3 mailbox is empty."""
        new = c.path(maildir + "/new")
        self.assertTrue(os.path.isdir(new), c.diagnostics())
        got = []
        for name in os.listdir(new):
            path = os.path.join(new, name)
            st = os.stat(path)
            self.assertEqual((st.st_uid, st.st_mode & 0o777),
                             (owner, 0o600), name)
            with open(path, "rb") as f:
                got.append(f.read())
        self.assertEqual(len(got), 1, "messages in %s" % maildir)
        self.assertIn(b"Subject: walk " + dc_user.encode(), got[0])
        for sub in ("", "/tmp", "/cur"):
            self.assertEqual(os.stat(c.path(maildir + sub)).st_uid, owner)
        self.assertEqual(self.dc.server_messages(dc_user), [],
                         "the POP3 mailbox is not empty")

    def assert_loop_first(self, c, report="nice"):
        """The loop thread (the main one) at nice 0, every helper thread
        nicer: the unit's system call filter lets them lower their own
        priority. Each helper is named for what it does (ps -L), and the
        disk threads are there."""
        rows = [l.split() for l in c.read("/root/walk/" + report).splitlines()]
        self.assertGreater(len(rows), 1, c.diagnostics())
        self.assertEqual(rows[0][1:], ["0", "(popfetchd)"], rows)
        self.assertEqual({r[1] for r in rows[1:]}, {nicer_by()}, rows)
        names = {r[2] for r in rows[1:]}
        self.assertLessEqual(names, {"(popfetchd-disk)", "(popfetchd-log)",
                                     "(popfetchd-conf)"}, rows)
        self.assertIn("(popfetchd-disk)", names, rows)

    def assert_state(self, c, state_dir, owner):
        st = os.stat(c.path(state_dir))
        self.assertEqual((st.st_uid, st.st_mode & 0o777), (owner, 0o700),
                         state_dir)
        self.assertTrue(os.listdir(c.path(state_dir)), "no state kept")

    def test_system_service(self):
        """The system service of the README, delivering as vmail."""
        system = readme_block("popfetchd.service.d/local.conf")
        dc_user = self.mailbox("walksys")
        c = self.container()
        c.add_walk(textwrap.dedent("""\
            # What Dovecot's package and its administrator made: the
            # README takes them for granted.
            useradd --system --user-group --home-dir /var/vmail \\
            	--no-create-home --shell /usr/sbin/nologin vmail
            install -d -o vmail -g vmail -m 0700 /var/vmail
            # README.md, after meson install
            """) + after_install(readme_block("systemd-sysusers"))
            + "# README.md, the system service\n"
            + point_at(system, dc_user, self.dc.ssl_port)
            + POLL_RELOAD_STOP % {"ctl": "systemctl", "unit": "-u popfetchd",
                                  "account": conf_value(system, "name")})
        self.boot(c)
        self.assert_stopped_cleanly(c)
        vmail = c.account("vmail")[0]
        self.assert_ran_as(c, "_SYSTEMD_UNIT", vmail, c.group("popfetchd"))
        self.assert_fetched(c, dc_user, conf_value(system, "maildir"), vmail)
        self.assert_state(c, conf_value(system, "state_dir"), vmail)
        self.assert_loop_first(c)

    def test_shard_instances(self):
        """The README's system service, then its two shard instances of
        the same file: each runs --shard K/2 (the instance name's), as
        the service's user, and exactly the one that owns the account
        polls it."""
        system = readme_block("popfetchd.service.d/local.conf")
        shards = readme_block("popfetchd-shard@0-2")
        name = conf_value(system, "name")
        dc_user = self.mailbox("walkshard")
        c = self.container()
        # The unsharded service is not started: the mail is the shards'.
        unsharded = re.compile(r"(?m)^.*(enable --now popfetchd|"
                               r"systemctl status popfetchd)$\n?")
        self.assertEqual(len(unsharded.findall(system)), 2, system)
        walk = [after_install(readme_block("systemd-sysusers")),
                unsharded.sub("", point_at(system, dc_user,
                                           self.dc.ssl_port)),
                shards]
        for k in (0, 1):
            unit = "popfetchd-shard@%d-2" % k
            walk.append(
                "await_journal -u%(u)s '^shard=%(k)d/2 accounts=[01] of 1'\n"
                # Logged once every helper thread runs (nice_of below).
                "await_journal -u%(u)s '^started accounts=[01] '\n"
                "systemctl kill -s USR1 %(u)s\n"
                "record status%(k)d \"$(RUNTIME_DIRECTORY=/run/"
                "popfetchd-shard-%(k)d-2 popfetchd --status --json | "
                "grep -o '\"name\"' | wc -l)\"\n"
                "nice_of \"$(systemctl show -p MainPID --value %(u)s)\" "
                ">\"$report/nice%(k)d\"\n" % {"u": unit, "k": k})
        walk.append("await_journal -u'popfetchd-shard@*' "
                    "'^account=%s listed=.* result='\n"
                    "systemctl stop 'popfetchd-shard@*'\n" % name)
        c.add_walk(textwrap.dedent("""\
            useradd --system --user-group --home-dir /var/vmail \\
            	--no-create-home --shell /usr/sbin/nologin vmail
            install -d -o vmail -g vmail -m 0700 /var/vmail
            """) + "".join(walk))
        self.boot(c)
        entries = c.journal()
        polled = {}
        for k in (0, 1):
            unit = "popfetchd-shard@%d-2.service" % k
            own = [e.get("MESSAGE", "") for e in entries
                   if e.get("_SYSTEMD_UNIT") == unit]
            mine = any(re.match(r"shard=%d/2 accounts=1 of 1 " % k, m)
                       for m in own)
            self.assertTrue(mine or any(
                re.match(r"shard=%d/2 accounts=0 of 1 " % k, m)
                for m in own), "%s: %s" % (unit, own))
            polled[k] = any(m.startswith("account=%s listed=" % name)
                            for m in own)
            self.assertEqual(polled[k], mine, own)
            self.assertEqual(c.results().get("status%d" % k),
                             "1" if mine else "0")
            self.assert_loop_first(c, "nice%d" % k)
        self.assertEqual(sorted(polled.values()), [False, True])
        vmail = c.account("vmail")[0]
        self.assert_fetched(c, dc_user, conf_value(system, "maildir"), vmail)

    def test_system_service_maildir_in_home(self):
        """The system service with the variant of maildirs.conf.example
        for a Maildir in /home, uncommented as it says, a configuration
        and a credential made as the README makes them."""
        with open(os.path.join(self.dest, self.docdir.lstrip("/"),
                               "maildirs.conf.example")) as f:
            example = f.read()
        home = [v for v in dropin_variants(example)
                if "BindPaths=/home/" in v]
        self.assertEqual(len(home), 1, example)
        owner = re.search(r"(?m)^User=(\S+)$", home[0]).group(1)
        mkdir = re.search(r"(install -d -o %s -m \d+ /home/\S+)" % owner,
                          example)
        self.assertTrue(mkdir, "the variant says not how to make the "
                        "Maildir it binds")
        dc_user = self.mailbox("walkhome")
        conf = ('accounts = ({ name = "home"; host = "127.0.0.1"; '
                'port = %d; ca_file = "%s"; user = "%s"; '
                'password_credential = "home"; maildir = "~/Maildir"; });\n'
                % (self.dc.ssl_port, CA_PATH, dc_user))
        c = self.container()
        c.add_walk("# README.md, after meson install\n"
                   + after_install(readme_block("systemd-sysusers"))
                   + HOME_VARIANT % {"owner": owner, "conf": conf,
                                     "dropin": home[0],
                                     "mkdir": mkdir.group(1)}
                   + POLL_RELOAD_STOP % {"ctl": "systemctl",
                                         "unit": "-u popfetchd",
                                         "account": "home"})
        self.boot(c)
        self.assert_stopped_cleanly(c)
        uid = c.account(owner)[0]
        self.assert_ran_as(c, "_SYSTEMD_UNIT", uid, c.group("popfetchd"))
        self.assert_fetched(c, dc_user, "/home/%s/Maildir" % owner, uid)
        self.assert_state(c, "/var/lib/popfetchd", uid)
        self.assert_loop_first(c)

    def test_user_service(self):
        """The per-user service of the README, for a user who logged in
        (the user manager runs) and may use sudo."""
        block = readme_block("systemctl --user")
        dc_user = self.mailbox("walkuser")
        c = self.container()
        c.write("/home/walk.sh", point_at(block, dc_user, self.dc.ssl_port))
        c.add_walk("# README.md, after meson install\n"
                   + after_install(readme_block("systemd-sysusers"))
                   + USER_LOGIN
                   + POLL_RELOAD_STOP % {
                       "ctl": "as_alice systemctl --user",
                       "unit": "_SYSTEMD_USER_UNIT=popfetchd.service",
                       "account": conf_value(block, "name")}
                   + 'record linger "$(loginctl show-user -p Linger '
                   '--value alice)"\n')
        self.boot(c)
        self.assert_stopped_cleanly(c)
        self.assertEqual(c.results().get("linger"), "yes")
        uid, gid = c.account("alice")
        self.assert_ran_as(c, "_SYSTEMD_USER_UNIT", uid, gid)
        self.assert_fetched(c, dc_user, "/home/alice/Maildir", uid)
        self.assert_state(c, "/home/alice/.local/state/popfetchd", uid)
        self.assert_loop_first(c)


if __name__ == "__main__":
    main()
