"""A throwaway Cyrus POP3 server for the SCRAM interoperability tests.

Debian's cyrus-pop3d conflicts with dovecot-pop3d as a package, so
tools/deps.sh installs what it needs (cyrus-common for master and lmtpd,
sasl2-bin for saslpasswd2) and unpacks the pop3d package itself under
CYRUS_ROOT (default /opt/popfetchd-test/cyrus-pop3d). Everything else lives
in one temporary folder: imapd.conf, cyrus.conf, the sasldb with the users'
passwords, the spool, the sockets and a self-signed certificate. Cyrus's
master is started and stopped here and serves 127.0.0.1 only: plain POP3
(offering STLS) on one free port, implicit-TLS POP3S on another, and LMTP
on a Unix socket for delivering test mail.

    with Cyrus() as cy:
        cy.add_user("alice", "secret")
        cy.deliver("alice", b"Subject: hi\\n\\nbody\\n")
        ...  # connect to cy.port (STLS) or cy.ssl_port, trust cy.ca_file

Cyrus drops root privileges to its "cyrus" user, so it runs only as root
(as CI does); otherwise, or when a piece is missing, Unavailable says why
and the tests skip.
"""

import os
import pwd
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time

from dovecot import _die_with_parent, free_ports, make_certificate

from throwaway import Throwaway

CYRUS_ROOT = os.environ.get("CYRUS_ROOT", "/opt/popfetchd-test/cyrus-pop3d")
POP3D = os.path.join(CYRUS_ROOT, "usr/lib/cyrus/bin/pop3d")
MASTER = "/usr/lib/cyrus/bin/master"
LMTPD = "/usr/lib/cyrus/bin/lmtpd"
SASLPASSWD = "/usr/sbin/saslpasswd2"

# Cyrus gives no readiness signal: poll the ports, never longer than this.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
# The SCRAM mechanisms offered (Cyrus adds each -PLUS form over TLS).
MECHS = "PLAIN LOGIN SCRAM-SHA-1 SCRAM-SHA-256"


class Unavailable(Exception):
    """Cyrus cannot run here; the message says why."""


def check_available():
    """Raises Unavailable unless a Cyrus can be started here."""
    for path, what in ((POP3D, "cyrus-pop3d unpacked (tools/deps.sh)"),
                       (MASTER, "cyrus-common"), (LMTPD, "cyrus-common"),
                       (SASLPASSWD, "sasl2-bin")):
        if not os.access(path, os.X_OK):
            raise Unavailable("no %s: needs %s" % (path, what))
    if os.geteuid() != 0:
        raise Unavailable("Cyrus's master runs as root only")
    try:
        pwd.getpwnam("cyrus")
    except KeyError:
        raise Unavailable("no cyrus user (cyrus-common)")


class Cyrus(Throwaway):
    """One Cyrus master with pop3, pop3s and lmtp in its own folder.

    tls_versions: what Cyrus offers, as its imapd.conf spells it
    ("tls1_2 tls1_3" by default; "tls1_2" to test tls-unique).
    """

    def __init__(self, tls_versions="tls1_2 tls1_3", keep_dir=False):
        check_available()
        self.tls_versions = tls_versions
        self.keep_dir = keep_dir
        self.dir = tempfile.mkdtemp(prefix="cyrus-")
        os.chmod(self.dir, 0o755)
        for d in ("conf", "spool", "sieve", "socket", "lock", "proc"):
            os.mkdir(os.path.join(self.dir, d))
        self.cert_file, self.key_file = make_certificate(self.dir)
        self.ca_file = self.cert_file
        self.sasldb = os.path.join(self.dir, "sasldb2")
        self.imapd_conf = os.path.join(self.dir, "imapd.conf")
        self.cyrus_conf = os.path.join(self.dir, "cyrus.conf")
        self.lmtp_socket = os.path.join(self.dir, "socket", "lmtp")
        self.users = {}
        self.proc = None
        self.port = self.ssl_port = None

    def _write_config(self):
        d = self.dir
        with open(self.imapd_conf, "w") as f:
            f.write("""# Written by tests/cyrus.py: not /etc/imapd.conf.
configdirectory: {d}/conf
partition-default: {d}/spool
sievedir: {d}/sieve
admins: cyrus
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {sasldb}
sasl_mech_list: {mechs}
allowplaintext: yes
tls_server_cert: {cert}
tls_server_key: {key}
tls_versions: {versions}
autocreate_quota: 0
autocreate_post: 1
lmtpsocket: {lmtp}
idlesocket: {d}/socket/idle
notifysocket: {d}/socket/notify
mboxname_lockpath: {d}/lock
proc_path: {d}/proc
syslog_prefix: popfetchd-test-cyrus
""".format(d=d, sasldb=self.sasldb, cert=self.cert_file, key=self.key_file,
           versions=self.tls_versions, lmtp=self.lmtp_socket,
           mechs=MECHS + " " + " ".join(
               m + "-PLUS" for m in MECHS.split() if m.startswith("SCRAM"))))
        with open(self.cyrus_conf, "w") as f:
            f.write("""# Written by tests/cyrus.py: not /etc/cyrus.conf.
START {{
  recover cmd="ctl_cyrusdb -C {conf} -r"
}}
SERVICES {{
  pop3 cmd="{pop3d} -C {conf}" listen="127.0.0.1:{port}" prefork=0
  pop3s cmd="{pop3d} -s -C {conf}" listen="127.0.0.1:{ssl_port}" prefork=0
  lmtpunix cmd="lmtpd -C {conf}" listen="{lmtp}" prefork=0
}}
EVENTS {{
}}
DAEMON {{
}}
""".format(conf=self.imapd_conf, pop3d=POP3D, port=self.port,
           ssl_port=self.ssl_port, lmtp=self.lmtp_socket))

    def _own_all(self):
        pw = pwd.getpwnam("cyrus")
        for root, dirs, files in os.walk(self.dir):
            for n in [root] + [os.path.join(root, x) for x in dirs + files]:
                os.chown(n, pw.pw_uid, pw.pw_gid)

    def start(self):
        self.port, self.ssl_port = free_ports(2)
        self._write_config()
        self._own_all()
        self._log = open(os.path.join(self.dir, "master.out"), "ab")
        self.proc = subprocess.Popen(
            [MASTER, "-C", self.imapd_conf, "-M", self.cyrus_conf,
             "-p", os.path.join(self.dir, "master.pid"), "-D"],
            stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_die_with_parent)
        self._wait_ready()
        return self

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        for port in (self.port, self.ssl_port):
            while True:
                if self.proc.poll() is not None:
                    raise Unavailable("cyrus master exited with %d: %s"
                                      % (self.proc.returncode,
                                         self.diagnostics()))
                if time.monotonic() > deadline:
                    raise Unavailable("cyrus did not come up in %.0f s: %s"
                                      % (START_TIMEOUT, self.diagnostics()))
                try:
                    socket.create_connection(("127.0.0.1", port), 1).close()
                    break
                except OSError:
                    time.sleep(0.05)
        while not os.path.exists(self.lmtp_socket):
            if time.monotonic() > deadline:
                raise Unavailable("no LMTP socket: " + self.diagnostics())
            time.sleep(0.05)

    def diagnostics(self):
        try:
            with open(os.path.join(self.dir, "master.out"), "r",
                      errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self):
        proc, self.proc = self.proc, None
        if proc is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(STOP_TIMEOUT)
                if sig == signal.SIGTERM:
                    # Children that outlived master go with SIGKILL.
                    continue
            except subprocess.TimeoutExpired:
                pass
        proc.wait()
        self._log.close()

    def add_user(self, name, password):
        """Adds NAME to the sasldb; the INBOX appears with its first mail
        or login (autocreate)."""
        subprocess.run([SASLPASSWD, "-f", self.sasldb, "-p", "-c", name],
                       input=password.encode(), check=True,
                       capture_output=True)
        pw = pwd.getpwnam("cyrus")
        os.chown(self.sasldb, pw.pw_uid, pw.pw_gid)
        self.users[name] = password

    def deliver(self, user, message):
        """Delivers MESSAGE (bytes) to USER's INBOX over LMTP."""
        with smtplib.LMTP(self.lmtp_socket) as lmtp:
            lmtp.sendmail("test@example.org", [user], message)

    def retrieve(self, user):
        """USER's messages as POP3 serves them (CRLF ends lines), read
        over implicit TLS without deleting anything."""
        import poplib
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.check_hostname = False
        pop = poplib.POP3_SSL("127.0.0.1", self.ssl_port, context=ctx,
                              timeout=10)
        try:
            pop.user(user)
            pop.pass_(self.users[user])
            n = len(pop.list()[1])
            return [b"\r\n".join(pop.retr(i + 1)[1]) + b"\r\n"
                    for i in range(n)]
        finally:
            pop.quit()
