"""A throwaway Dovecot POP3 server for the integration tests and the demo.

Everything lives in one temporary folder: dovecot.conf, base_dir, state_dir,
the log, the passwd-files, a self-signed certificate and the users' Maildirs.
The system's /etc/dovecot is never read. The server listens on 127.0.0.1
only, on two free high ports: plain POP3 (offering STLS) and implicit-TLS
POP3S.

    with Dovecot() as dc:
        dc.add_user("alice", "secret")
        dc.deliver("alice", b"Subject: hi\n\nbody\n")
        ...  # connect to dc.port (STLS) or dc.ssl_port, verify with dc.ca_file

Run as root (as CI does), Dovecot's internal and login processes use the
"dovecot" and "dovenull" users and mail is accessed as "dovecot". Run as
another user, that user is used for everything.

Client certificates are opt-in: Dovecot(client_ca=PATH) asks every TLS
client for a certificate, trusts those issued by the CA in PATH and refuses
any login without one; external=True also offers SASL EXTERNAL, the user
being the certificate's commonName.

LMTP is opt-in too: Dovecot(lmtp=True) also serves LMTP on a Unix socket,
dc.lmtp_socket, delivering into the same users' Maildirs, with Pigeonhole
Sieve: a user's active script is ~/.dovecot.sieve (set_sieve()), with the
"duplicate" extension (RFC 7352) enabled. doveadm() runs doveadm on this
instance (mailbox list, fetch, ...).
"""

import atexit
import ctypes
import grp
import os
import poplib
import pwd
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

from throwaway import Throwaway

DOVECOT = os.environ.get("DOVECOT", "/usr/sbin/dovecot")

# Dovecot gives no readiness signal in the foreground: poll the ports, but
# never longer than this.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

# The user sync_log() logs in as; its mailbox stays empty.
SYNC_USER = "logsync"

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

# Every server still running, so that atexit can stop what a failing test
# left behind.
_running = set()


def _stop_all():
    for server in list(_running):
        server.cleanup()


atexit.register(_stop_all)


def _on_sigterm(signum, frame):
    # A test runner's timeout sends SIGTERM: exit through atexit so that
    # the servers are stopped.
    sys.exit(128 + signum)


if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _on_sigterm)


def _die_with_parent():
    """In the child before exec: get SIGTERM when this Python process dies.

    Covers what atexit cannot: SIGKILL of the test process.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: atexit and the SIGTERM handler remain


def free_ports(count):
    """COUNT distinct TCP ports on 127.0.0.1 that were free a moment ago.

    The sockets are held until all are chosen so that the kernel does not
    hand out the same port twice. A port may be taken by someone else
    before Dovecot binds it; start() retries with new ports if so.
    """
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def make_certificate(folder, names=("localhost",), ips=("127.0.0.1",),
                     stem="server"):
    """A self-signed certificate with NAMES and IPS as subjectAltName.

    The first name (or IP) is also the CN. Returns (cert_path, key_path);
    the certificate doubles as the client's CA file.
    """
    cert = os.path.join(folder, stem + "-cert.pem")
    key = os.path.join(folder, stem + "-key.pem")
    san = ",".join(["DNS:" + n for n in names] + ["IP:" + i for i in ips])
    cn = (list(names) + list(ips))[0]
    # EC keys generate instantly, unlike RSA.
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", cert, "-days", "3", "-subj", "/CN=" + cn,
         "-addext", "subjectAltName=" + san,
         "-addext", "basicConstraints=critical,CA:TRUE"],
        check=True, capture_output=True)
    os.chmod(key, 0o600)
    os.chmod(cert, 0o644)
    return cert, key


class DovecotError(RuntimeError):
    pass


class _POP3From(poplib.POP3):
    """poplib.POP3 connecting from a chosen local address."""

    def __init__(self, host, port, source, timeout):
        self._source = source
        super().__init__(host, port, timeout=timeout)

    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self._source, 0))


class Dovecot(Throwaway):
    """One Dovecot instance in its own temporary folder.

    cert_names / cert_ips: subjectAltName entries of the server certificate
    (default "localhost" and 127.0.0.1). keep_dir: leave the folder behind
    after stop() (for the demo or debugging).

    client_ca: a PEM file of the certificate authorities whose client
    certificates Dovecot accepts. Given, Dovecot asks every TLS client for
    a certificate (ssl_verify_client_cert) and refuses every login, of any
    mechanism and on either port, that comes without a valid one
    (auth_ssl_require_client_cert); a certificate it cannot verify does
    not fail the handshake, only the login. No CRL is needed
    (ssl_require_crl = no). sync_log() then presents a certificate of its
    own: a self-signed one for its user, which the ssl_ca bundle Dovecot
    reads (client_ca_bundle) holds besides CLIENT_CA.

    external (needs client_ca): also offer SASL EXTERNAL. The user name of
    every login made with a certificate is then its commonName
    (auth_ssl_username_from_cert), whatever name the client gives.
    EXTERNAL needs no password: a passdb of its own, used for EXTERNAL
    only, knows the same users without passwords; a certificate for a
    user add_user() did not add is refused like a wrong password.

    login_reuse: one pop3-login process serves every connection, as in
    Dovecot's high-performance mode, so TLS sessions resume (see
    tests/test_tls_resume.py).
    """

    def __init__(self, cert_names=("localhost",), cert_ips=("127.0.0.1",),
                 keep_dir=False, prefix="dovecot-", client_ca=None,
                 external=False, lmtp=False, quota=True, login_reuse=False):
        if external and not client_ca:
            raise ValueError("external=True needs client_ca")
        self.client_ca = client_ca
        self.external = bool(external)
        self.lmtp = bool(lmtp)
        # With lmtp: the quota plugin (for add_user(quota=...)).
        self.quota = bool(quota)
        # One long-lived pop3-login process for every connection
        # (Dovecot's high-performance mode), so that the TLS session
        # tickets it issues resume later connections; by default each
        # connection gets a process, and ticket keys, of its own.
        self.login_reuse = bool(login_reuse)
        self.cert_names = tuple(cert_names)
        self.cert_ips = tuple(cert_ips)
        self.keep_dir = keep_dir
        self.dir = tempfile.mkdtemp(prefix=prefix)
        # Dovecot's unprivileged processes must be able to reach base_dir,
        # the certificate and the Maildirs below this folder.
        os.chmod(self.dir, 0o755)
        self.base_dir = os.path.join(self.dir, "run")
        self.state_dir = os.path.join(self.dir, "state")
        self.mail_dir = os.path.join(self.dir, "mail")
        self.conf_path = os.path.join(self.dir, "dovecot.conf")
        self.log_path = os.path.join(self.dir, "dovecot.log")
        # Short: a Unix socket path is at most 107 bytes.
        self.lmtp_socket = os.path.join(self.dir, "lmtp") if lmtp else None
        # One passwd-file per user (see _write_passwd).
        self.passwd_dir = os.path.join(self.dir, "passwd.d")
        for d in (self.state_dir, self.mail_dir, self.passwd_dir):
            os.mkdir(d)
            os.chmod(d, 0o755)
        # external: the passdb of SASL EXTERNAL, one password-less
        # passwd-file per user (see _write_passwd).
        self.external_passwd_dir = None
        if self.external:
            self.external_passwd_dir = os.path.join(self.dir,
                                                    "passwd-external.d")
            os.mkdir(self.external_passwd_dir)
            os.chmod(self.external_passwd_dir, 0o755)
        self._pick_users()
        self.cert_file, self.key_file = make_certificate(
            self.dir, self.cert_names, self.cert_ips)
        self.ca_file = self.cert_file
        self.client_ca_bundle = self.sync_cert = self.sync_key = None
        if client_ca:
            self._make_client_ca_bundle()
        self.users = {}
        self.quotas = {}
        # How many sync_log() logins there were: each is one auth request.
        self.syncs = 0
        self.proc = None
        self.port = self.ssl_port = None
        self._seq = 0
        # Create the files Dovecot reads at start-up.
        open(self.log_path, "w").close()

    # --- users and permissions -------------------------------------------

    def _pick_users(self):
        """Choose the system users Dovecot runs as and the mail owner."""
        if os.geteuid() == 0:
            self.internal_user = "dovecot"
            self.login_user = "dovenull"
            pw = pwd.getpwnam("dovecot")
            self.mail_uid, self.mail_gid = pw.pw_uid, pw.pw_gid
        else:
            name = pwd.getpwuid(os.geteuid()).pw_name
            self.internal_user = self.login_user = name
            self.mail_uid, self.mail_gid = os.geteuid(), os.getegid()
        self.root = os.geteuid() == 0

    def _own(self, path):
        """Give PATH to the mail user (a no-op when not root)."""
        if self.root:
            os.chown(path, self.mail_uid, self.mail_gid)

    def _make_client_ca_bundle(self):
        """Write client_ca_bundle: CLIENT_CA and sync_log()'s certificate.

        sync_log()'s certificate is self-signed, so it is its own trust
        anchor; its commonName is its user's name.
        """
        self.sync_cert, self.sync_key = make_certificate(
            self.dir, names=(SYNC_USER,), ips=(), stem="sync-client")
        with open(self.client_ca, "r") as f:
            trusted = f.read()
        with open(self.sync_cert, "r") as f:
            sync = f.read()
        self.client_ca_bundle = os.path.join(self.dir, "client-ca.pem")
        with open(self.client_ca_bundle, "w") as f:
            f.write(trusted.rstrip("\n") + "\n" + sync)
        os.chmod(self.client_ca_bundle, 0o644)

    def _client_cert_config(self):
        """The settings client_ca adds (empty without it)."""
        if not self.client_ca:
            return ""
        text = """# Client certificates (tests/dovecot.py client_ca): asked
# for, verified against ssl_ca, required for every login.
ssl_ca = <{bundle}
ssl_verify_client_cert = yes
ssl_require_crl = no
auth_ssl_require_client_cert = yes
""".format(bundle=self.client_ca_bundle)
        if self.external:
            text += """auth_ssl_username_from_cert = yes
ssl_cert_username_field = commonName
"""
        return text

    def _lmtp_config(self):
        """The settings lmtp adds (empty without it): the LMTP service on
        a Unix socket anyone may connect to, and Sieve on delivery."""
        if not self.lmtp:
            return ""
        # Quota first: the lmtp protocol block extends mail_plugins.
        return (self._quota_config() if self.quota else "") + \
            self._lmtp_base()

    def _quota_config(self):
        return """# Quota everywhere, so that doveadm's expunges count too.
mail_plugins = $mail_plugins quota
plugin {
  # No limit unless add_user(quota=...) sets one.
  quota = maildir:User quota
  quota_rule = *:storage=0
}
# A full mailbox is a temporary failure (452), as most sites set it.
quota_full_tempfail = yes
"""

    def _lmtp_base(self):
        return """# LMTP with Sieve (tests/dovecot.py lmtp=True).
service lmtp {{
  unix_listener {sock} {{
    mode = 0666
  }}
}}
lmtp_save_to_detail_mailbox = no
# Quota is checked when the message is saved (a reply after DATA), not
# at RCPT.
lmtp_rcpt_check_quota = no
protocol lmtp {{
  mail_plugins = $mail_plugins sieve
  postmaster_address = postmaster@localhost
}}
plugin {{
  sieve = file:~/sieve;active=~/.dovecot.sieve
  sieve_extensions = +duplicate
  sieve_duplicate_default_period = 1d
}}
""".format(sock=self.lmtp_socket)

    def _external_passdb(self):
        """The passdb for SASL EXTERNAL, placed before the passwd-file one
        (empty without external). EXTERNAL checks an empty password: this
        passdb's users have none (nopassword), and it serves EXTERNAL
        only; Dovecot has already refused a request without a valid
        certificate."""
        if not self.external:
            return ""
        return """passdb {{
  driver = passwd-file
  args = username_format=%u {passwd}
  mechanisms = external
}}
""".format(passwd=os.path.join(self.external_passwd_dir, "%u"))

    # --- configuration ---------------------------------------------------

    def _config(self):
        group = grp.getgrgid(self.mail_gid).gr_name
        # Not root: no chroot for the login processes and no privilege
        # changes; every service runs as the invoking user.
        unprivileged = "" if self.root else """
service pop3-login {
  chroot =
}
service anvil {
  chroot =
}
default_internal_group = %s
""" % group
        return """# Written by tests/dovecot.py: not /etc/dovecot.
base_dir = {base}
state_dir = {state}
instance_name = popfetchd-test-{port}
protocols = {protocols}
listen = 127.0.0.1
log_path = {log}
info_log_path = {log}
debug_log_path = {log}
log_timestamp = "%Y-%m-%d %H:%M:%S "
auth_verbose = yes
auth_debug = yes
auth_verbose_passwords = no
verbose_ssl = no

default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = {uid}
last_valid_uid = 0
first_valid_gid = {gid}
last_valid_gid = 0
mail_privileged_group =

{client_certs}ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
ssl_min_protocol = TLSv1.2
# Loopback counts as secure for Dovecot anyway; this keeps plaintext
# logins possible on the plain port for tests that ask for them.
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
# Answer a wrong password at once (the default waits 2 s). Dovecot's
# per-address penalty after a failure still applies: sync_log() connects
# from another loopback address to stay clear of it.
auth_failure_delay = 0

{external_passdb}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {passwd}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {passwd}
}}

mail_location = maildir:{mail}/%u/Maildir
mail_fsync = always
pop3_uidl_format = %08Xu%08Xv
# POP3 sessions must not change flags (keeps files where tests expect
# them) and DELE expunges at QUIT.
pop3_no_flag_updates = yes
pop3_delete_type = expunge
pop3_lock_session = no
login_greeting = Dovecot test server ready.

service pop3-login {{
{login_reuse}  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {ssl_port}
    ssl = yes
  }}
}}
{unprivileged}
""".format(base=self.base_dir, state=self.state_dir, log=self.log_path,
           internal=self.internal_user, login=self.login_user,
           uid=self.mail_uid, gid=self.mail_gid, cert=self.cert_file,
           key=self.key_file, passwd=os.path.join(self.passwd_dir, "%u"),
           mail=self.mail_dir,
           port=self.port, ssl_port=self.ssl_port, unprivileged=unprivileged,
           client_certs=self._client_cert_config(),
           mechanisms="plain login apop" + (
               " external" if self.external else ""),
           external_passdb=self._external_passdb(),
           login_reuse=("  service_count = 0\n  process_limit = 1\n"
                        if self.login_reuse else ""),
           protocols="pop3 lmtp" if self.lmtp else "pop3") + \
            self._lmtp_config()

    def _write_passwd(self, user):
        """Write USER's passwd-file.

        One file per user, because Dovecot checks a passwd-file for changes
        at most once a second: a user added to a shared file right after a
        lookup would be unknown for up to a second. A new file is read on
        first use. (Changing a password has that delay; no test does.)
        """
        path = os.path.join(self.passwd_dir, user)
        extra = ""
        if self.quotas.get(user) is not None:
            extra = "userdb_quota_rule=*:storage=%dB" % self.quotas[user]
        line = "%s:{PLAIN}%s:%d:%d::%s::%s\n" % (
            user, self.users[user], self.mail_uid, self.mail_gid,
            os.path.join(self.mail_dir, user), extra)
        with open(path + ".tmp", "w") as f:
            f.write(line)
        os.chmod(path + ".tmp", 0o644)
        os.rename(path + ".tmp", path)
        if self.external:
            self._write_external_passwd(user)

    def _write_external_passwd(self, user):
        """Write USER's password-less passwd-file for SASL EXTERNAL."""
        path = os.path.join(self.external_passwd_dir, user)
        line = "%s::%d:%d::%s::nopassword=y\n" % (
            user, self.mail_uid, self.mail_gid,
            os.path.join(self.mail_dir, user))
        with open(path + ".tmp", "w") as f:
            f.write(line)
        os.chmod(path + ".tmp", 0o644)
        os.rename(path + ".tmp", path)

    # --- life cycle -------------------------------------------------------

    def start(self):
        """Start Dovecot and wait until both ports greet."""
        last = None
        for _ in range(3):
            self.port, self.ssl_port = free_ports(2)
            with open(self.conf_path, "w") as f:
                f.write(self._config())
            try:
                self._spawn()
                _running.add(self)
                self._wait_ready()
                return self
            except DovecotError as e:
                last = e
                self.stop()
                if "Address already in use" not in str(e):
                    raise
        raise last

    def _spawn(self):
        # -F: stay in the foreground, so that the Popen object is the
        # master. A new session lets stop() signal the whole process group.
        self._stdout = open(os.path.join(self.dir, "dovecot.stdout"), "ab")
        self.proc = subprocess.Popen(
            [DOVECOT, "-F", "-c", self.conf_path],
            stdin=subprocess.DEVNULL, stdout=self._stdout,
            stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent)

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        pending = [self.port, self.ssl_port]
        if self.lmtp:
            pending.append(None)
        while pending:
            if self.proc.poll() is not None:
                raise DovecotError("dovecot exited with status %d:\n%s"
                                   % (self.proc.returncode,
                                      self.diagnostics()))
            if time.monotonic() > deadline:
                raise DovecotError("dovecot did not come up in %.0f s:\n%s"
                                   % (START_TIMEOUT, self.diagnostics()))
            port = pending[0]
            if port is None:
                # The LMTP socket: its greeting proves lmtp is up.
                try:
                    with socket.socket(socket.AF_UNIX) as s:
                        s.settimeout(2)
                        s.connect(self.lmtp_socket)
                        if not s.recv(512).startswith(b"220"):
                            raise OSError("no LMTP greeting")
                    pending.pop(0)
                except OSError:
                    time.sleep(0.05)
                continue
            try:
                with socket.create_connection(("127.0.0.1", port), 1) as s:
                    if port == self.port:
                        # The plain port must greet, proving pop3-login
                        # and its auth connection are up.
                        s.settimeout(2)
                        if not s.recv(512).startswith(b"+OK"):
                            raise OSError("no greeting")
                pending.pop(0)
            except OSError:
                time.sleep(0.05)

    def stop(self):
        """Stop Dovecot and all its processes; safe to call twice."""
        proc, self.proc = self.proc, None
        _running.discard(self)
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pass
            # Children that outlived the master (or a master that ignored
            # SIGTERM) go now.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
            self._stdout.close()

    # --- mailboxes -------------------------------------------------------

    def maildir(self, user):
        return os.path.join(self.mail_dir, user, "Maildir")

    def add_user(self, name, password, quota=None):
        """Add (or change) a user; creates its empty Maildir. QUOTA (bytes,
        with lmtp=True) limits what LMTP may store for it."""
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", name):
            raise ValueError("unusable user name %r" % name)
        self.users[name] = password
        self.quotas[name] = quota
        home = os.path.join(self.mail_dir, name)
        for d in (home, self.maildir(name)) + tuple(
                os.path.join(self.maildir(name), s)
                for s in ("tmp", "new", "cur")):
            os.makedirs(d, exist_ok=True)
            os.chmod(d, 0o700)
            self._own(d)
        self._write_passwd(name)

    def deliver(self, user, message):
        """Put MESSAGE (bytes, LF line endings) into USER's Maildir new/.

        Written to tmp/ first and renamed, as a real delivery agent does,
        so Dovecot never sees a partial file.
        """
        if user not in self.users:
            raise KeyError("unknown user %r" % user)
        self._seq += 1
        name = "%d.M%dP%dQ%d.popfetchd-test" % (
            int(time.time()), self._seq, os.getpid(), self._seq)
        tmp = os.path.join(self.maildir(user), "tmp", name)
        with open(tmp, "wb") as f:
            f.write(message)
        os.chmod(tmp, 0o600)
        self._own(tmp)
        os.rename(tmp, os.path.join(self.maildir(user), "new", name))
        return name

    def deliver_many(self, user, messages):
        return [self.deliver(user, m) for m in messages]

    def server_messages(self, user):
        """Contents of the messages still in USER's mailbox (cur/ + new/)."""
        out = []
        for sub in ("cur", "new"):
            d = os.path.join(self.maildir(user), sub)
            for name in sorted(os.listdir(d)):
                try:
                    with open(os.path.join(d, name), "rb") as f:
                        out.append(f.read())
                except FileNotFoundError:
                    # Moved from new/ to cur/ by Dovecot meanwhile: it is
                    # found again below or was just expunged.
                    pass
        if len(out) != self._count_files(user):
            # A file moved between listings: read again, now stable.
            return self.server_messages(user)
        return out

    def _count_files(self, user):
        return sum(len(os.listdir(os.path.join(self.maildir(user), s)))
                   for s in ("cur", "new"))

    def set_sieve(self, user, script):
        """Make SCRIPT (text) USER's active Sieve script, compiled now so
        that an error shows here and not as a silent keep later."""
        home = os.path.join(self.mail_dir, user)
        path = os.path.join(home, ".dovecot.sieve")
        with open(path, "w") as f:
            f.write(script)
        self._own(path)
        r = self.run_as_mail_user(["sievec", "-c", self.conf_path, path])
        if r.returncode != 0:
            raise DovecotError("sievec: %s" % r.stderr)
        for name in os.listdir(home):
            self._own(os.path.join(home, name))

    def doveadm(self, *args, timeout=60):
        """doveadm ARGS on this instance, for at most TIMEOUT seconds; its
        CompletedProcess (text)."""
        return subprocess.run(["doveadm", "-c", self.conf_path] + list(args),
                              capture_output=True, text=True, timeout=timeout)

    def run_as_mail_user(self, argv):
        """ARGV run as the mail user (as root) or as is."""
        def drop():
            if self.root:
                os.setgid(self.mail_gid)
                os.setuid(self.mail_uid)
        return subprocess.run(argv, capture_output=True, text=True,
                              timeout=60, preexec_fn=drop)

    def mailbox_messages(self, user, mailbox="INBOX"):
        """Contents of USER's MAILBOX as Dovecot stores them (files)."""
        md = self.maildir(user)
        if mailbox != "INBOX":
            md = os.path.join(md, "." + mailbox)
        out = []
        for sub in ("cur", "new"):
            d = os.path.join(md, sub)
            if not os.path.isdir(d):
                continue
            for name in sorted(os.listdir(d)):
                with open(os.path.join(d, name), "rb") as f:
                    out.append(f.read())
        return out

    def own_tree(self, path):
        """Give PATH and everything under it to the mail user."""
        if not self.root:
            return
        for top, dirs, files in os.walk(path):
            self._own(top)
            for name in files:
                self._own(os.path.join(top, name))

    # --- the log ---------------------------------------------------------

    def log_text(self):
        with open(self.log_path, "r", errors="replace") as f:
            return f.read()

    def diagnostics(self):
        """Log and stdout of Dovecot, for error messages."""
        text = self.log_text()
        try:
            with open(os.path.join(self.dir, "dovecot.stdout"), "r",
                      errors="replace") as f:
                text += f.read()
        except FileNotFoundError:
            pass
        return text[-8000:]

    def sync_log(self, timeout=10.0):
        """Wait until what happened so far has reached the log.

        Dovecot's processes log through its log process, asynchronously.
        This logs in as a dedicated user over the plain port and waits for
        that login's line, so lines caused by earlier sessions (which have
        ended) are, in practice, in the log by then. Bounded by TIMEOUT.

        It connects from 127.0.0.2: after a failed login from 127.0.0.1,
        Dovecot delays further logins from that address by seconds. With
        client_ca, Dovecot wants a client certificate for that login too:
        it goes over STLS with sync_cert.
        """
        if SYNC_USER not in self.users:
            self.add_user(SYNC_USER, "sync-" + os.urandom(8).hex())
        before = self.logins(SYNC_USER)
        self.syncs += 1
        client = _POP3From("127.0.0.1", self.port, "127.0.0.2", timeout)
        try:
            if self.client_ca:
                client.stls(self._sync_tls_context())
            client.user(SYNC_USER)
            client.pass_(self.users[SYNC_USER])
        finally:
            client.quit()
        deadline = time.monotonic() + timeout
        while self.logins(SYNC_USER) <= before:
            if time.monotonic() > deadline:
                raise DovecotError("login of %s not logged in %.0f s"
                                   % (SYNC_USER, timeout))
            time.sleep(0.02)

    def _sync_tls_context(self):
        """TLS for sync_log(): presents sync_cert. The harness talks to its
        own server over loopback, so the server is not verified."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.load_cert_chain(self.sync_cert, self.sync_key)
        return ctx

    def logins(self, user):
        """Successful POP3 logins of USER, as pop3-login logged them."""
        pat = re.compile(r"pop3-login: (?:Info: )?Login: user=<%s>,"
                         % re.escape(user))
        return sum(1 for line in self.log_text().splitlines()
                   if pat.search(line))

    def auth_failures(self, user):
        """Logins of USER that pop3-login reported as failed."""
        pat = re.compile(r"pop3-login: .*auth failed.*user=<%s>,"
                         % re.escape(user))
        return sum(1 for line in self.log_text().splitlines()
                   if pat.search(line))

    def auth_requests(self):
        """Authentication requests the auth process received, any user.

        With auth_debug every request is logged as "client in: AUTH" before
        Dovecot even knows the user name (it is inside the SASL payload), so
        this also counts requests whose user could not be parsed.
        """
        return sum(1 for line in self.log_text().splitlines()
                   if "client in: AUTH" in line)

    def auth_attempts(self, user):
        """Log lines showing that credentials for USER reached Dovecot.

        Counts the login process's lines naming user=<USER> and the auth
        process's lines "passwd-file(USER,...)" / "auth(USER,...)".
        """
        u = re.escape(user)
        pat = re.compile(r"user=<%s>,|(?:passwd-file|auth)\(%s," % (u, u))
        return sum(1 for line in self.log_text().splitlines()
                   if pat.search(line))
