"""A throwaway Courier POP3 server for the UTF8 (RFC 6856) tests.

Debian's courier-pop conflicts with dovecot-pop3d as a package, so
tools/deps.sh installs its dependencies (courier-base, courier-authdaemon)
and unpacks the pop3d package itself under COURIER_ROOT (default
/opt/popfetchd-test/courier-pop). Courier's authentication daemon has
compiled-in paths (/etc/courier, /run/courier): the server runs in a
private mount namespace (unshare -m) where a temporary folder's etc/ and
run/ are bound over them, so the system's files are never read or
written. In that folder: authdaemonrc, a userdb with the users and their
password hashes, the users' Maildirs, and the logs. couriertcpd serves
plain POP3 on 127.0.0.1 on a free port.

    with Courier() as co:      # users are added before start()
        ...

    co = Courier(); co.add_user("alice", "secret"); co.start()
    co.deliver("alice", b"Subject: Gr\\xc3\\xbc\\xc3\\x9fe\\n\\nbody\\n")

It needs root (mount namespaces, the daemons' own users); otherwise, or
when a piece is missing, Unavailable says why and the tests skip.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from dovecot import _die_with_parent, free_ports

from throwaway import Throwaway

COURIER_ROOT = os.environ.get("COURIER_ROOT",
                              "/opt/popfetchd-test/courier-pop")
LIBEXEC = os.path.join(COURIER_ROOT, "usr/lib/courier/courier")
LOGIN = os.path.join(LIBEXEC, "courierpop3login")
POP3D = os.path.join(LIBEXEC, "courierpop3d")
TCPD = "/usr/sbin/couriertcpd"
AUTHDAEMOND = "/usr/lib/courier/courier-authlib/authdaemond"
MAKEUSERDB = "/usr/sbin/makeuserdb"

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
# The mail is owned by this system user; courierpop3d runs as it.
MAIL_USER = "daemon"


class Unavailable(Exception):
    """Courier cannot run here; the message says why."""


def check_available():
    for path, what in ((LOGIN, "courier-pop unpacked (tools/deps.sh)"),
                       (POP3D, "courier-pop unpacked (tools/deps.sh)"),
                       (TCPD, "courier-base"),
                       (AUTHDAEMOND, "courier-authdaemon"),
                       (MAKEUSERDB, "courier-authlib-userdb")):
        if not os.access(path, os.X_OK):
            raise Unavailable("no %s: needs %s" % (path, what))
    if shutil.which("unshare") is None:
        raise Unavailable("no unshare(1)")
    if os.geteuid() != 0:
        raise Unavailable("a private mount namespace needs root")
    for d in ("/etc/courier", "/run/courier"):
        if not os.path.isdir(d):
            raise Unavailable("no %s to bind over" % d)
    try:
        pwd.getpwnam("courier")
    except KeyError:
        raise Unavailable("no courier user (courier-base)")


def _password_hash(password):
    """SHA-512 crypt, as openssl passwd -6 makes it."""
    return subprocess.run(["openssl", "passwd", "-6", "-stdin"],
                          input=password.encode(), check=True,
                          capture_output=True).stdout.decode().strip()


class Courier(Throwaway):
    def __init__(self, keep_dir=False):
        check_available()
        self.keep_dir = keep_dir
        self.dir = tempfile.mkdtemp(prefix="courier-")
        os.chmod(self.dir, 0o755)
        self.etc = os.path.join(self.dir, "etc")
        self.run = os.path.join(self.dir, "run")
        self.home = os.path.join(self.dir, "home")
        for d in (self.etc, self.run, os.path.join(self.run, "authdaemon"),
                  self.home):
            os.mkdir(d)
            os.chmod(d, 0o755)
        pw = pwd.getpwnam("courier")
        for d in (self.run, os.path.join(self.run, "authdaemon")):
            os.chown(d, pw.pw_uid, pw.pw_gid)
        self.mail = pwd.getpwnam(MAIL_USER)
        self.users = {}
        self.proc = None
        self.port = None
        self._seq = 0
        with open(os.path.join(self.etc, "authdaemonrc"), "w") as f:
            f.write('authmodulelist="authuserdb"\n'
                    'authmodulelistorig="authuserdb"\n'
                    'daemons=1\n'
                    'authdaemonvar=/run/courier/authdaemon\n'
                    'DEBUG_LOGIN=0\nDEFAULTOPTIONS=""\nLOGGEROPTS=""\n')

    def maildir(self, user):
        return os.path.join(self.home, user, "Maildir")

    def add_user(self, name, password):
        """Adds NAME (before start()) with an empty Maildir."""
        if self.proc is not None:
            raise RuntimeError("users are added before start()")
        self.users[name] = password
        home = os.path.join(self.home, name)
        for d in (home, self.maildir(name)) + tuple(
                os.path.join(self.maildir(name), s)
                for s in ("tmp", "new", "cur")):
            os.makedirs(d, exist_ok=True)
            os.chown(d, self.mail.pw_uid, self.mail.pw_gid)
            os.chmod(d, 0o700)
        lines = "".join(
            "%s\tuid=%d|gid=%d|home=%s|mail=%s|systempw=%s\n"
            % (u, self.mail.pw_uid, self.mail.pw_gid,
               os.path.join(self.home, u), self.maildir(u),
               _password_hash(p)) for u, p in self.users.items())
        path = os.path.join(self.etc, "userdb")
        with open(path, "w") as f:
            f.write(lines)
        os.chmod(path, 0o600)

    def deliver(self, user, message):
        """Puts MESSAGE (bytes, LF line ends) into USER's new/."""
        self._seq += 1
        name = "%d.M%dP%d.popfetchd-test" % (int(time.time()), self._seq,
                                            os.getpid())
        tmp = os.path.join(self.maildir(user), "tmp", name)
        with open(tmp, "wb") as f:
            f.write(message)
        os.chown(tmp, self.mail.pw_uid, self.mail.pw_gid)
        os.rename(tmp, os.path.join(self.maildir(user), "new", name))

    def _script(self):
        d = self.dir
        return """set -e
# Nothing mounted here reaches the system's namespace.
mount --make-rprivate /
mount --bind {etc} /etc/courier
mount --bind {run} /run/courier
makeuserdb
{authdaemond} >{d}/authdaemond.log 2>&1 &
i=0
while [ ! -S /run/courier/authdaemon/socket ] && [ $i -lt 150 ]; do
  sleep 0.1; i=$((i + 1))
done
exec env -i PATH=/usr/bin:/bin:/usr/sbin POP3AUTH= POP3AUTH_TLS= \\
  MIME_UNICODE_MESSAGE_TYPE=message/global \\
  {tcpd} -address=127.0.0.1 -nodnslookup -noidentlookup \\
  -stderr={d}/tcpd.log {port} {login} {pop3d} Maildir
""".format(etc=self.etc, run=self.run, d=d, authdaemond=AUTHDAEMOND,
           tcpd=TCPD, port=self.port, login=LOGIN, pop3d=POP3D)

    def start(self):
        (self.port,) = free_ports(1)
        script = os.path.join(self.dir, "run.sh")
        with open(script, "w") as f:
            f.write(self._script())
        self._out = open(os.path.join(self.dir, "run.log"), "ab")
        self.proc = subprocess.Popen(
            ["unshare", "-m", "sh", script], stdin=subprocess.DEVNULL,
            stdout=self._out, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise Unavailable("courier exited with %d: %s"
                                  % (self.proc.returncode,
                                     self.diagnostics()))
            if time.monotonic() > deadline:
                raise Unavailable("courier did not come up in %.0f s: %s"
                                  % (START_TIMEOUT, self.diagnostics()))
            try:
                with socket.create_connection(("127.0.0.1", self.port),
                                              1) as s:
                    s.settimeout(2)
                    if s.recv(64).startswith(b"+OK"):
                        return self
            except OSError:
                time.sleep(0.05)

    def diagnostics(self):
        text = ""
        for n in ("run.log", "authdaemond.log", "tcpd.log"):
            try:
                with open(os.path.join(self.dir, n), "r",
                          errors="replace") as f:
                    text += f.read()
            except OSError:
                pass
        return text[-4000:]

    def stop(self):
        proc, self.proc = self.proc, None
        if proc is None:
            return
        # couriertcpd and authdaemond share the session's process group.
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
        proc.wait()
        self._out.close()
