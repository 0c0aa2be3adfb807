"""A scripted POP3 server for faults a real server will not produce.

It serves a mailbox from memory on 127.0.0.1, optionally over TLS (implicit
or STLS), records every command line it receives, and misbehaves on
request: bytes injected after the +OK to STLS, STLS missing or refused, the
connection dropped in the middle of a message, chosen raw replies. Deletions
are applied only when a session ends with QUIT, as RFC 1939 requires, so a
test can check what a client's crash or error leaves on the server.

Authentication: USER/PASS, APOP, and SASL PLAIN, LOGIN, XOAUTH2, OAUTHBEARER,
EXTERNAL and SCRAM-SHA-1/-256 with their -PLUS forms (RFC 5034, RFC 5802,
RFC 7677), each with or without an initial response. A wrong OAuth token
gets the error continuation the providers send (a "+" line with base64
JSON), and the client's answer to it is recorded like any other line.
SCRAM is this file's own server side (hashlib and hmac): it checks the
client's proof and channel binding (tls-unique on TLS 1.2; tls-exporter on
TLS 1.3, derived from the key log), and misbehaves on request
(scram_fault) in the ways a client must refuse. The server serves one connection at a time; sync() returns once every
connection made before it has been served, so a test can count sessions and
read the command log without sleeping.

With resume=True one TLS context serves every connection, so that a
client can resume the sessions it issued; self.resumed says, for each TLS
connection, whether it did.
"""

import base64
import hashlib
import hmac
import json
import os
import socket
import ssl
import subprocess
import tempfile
import threading
import time

SCRAM_MECHS = ("SCRAM-SHA-1", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256",
               "SCRAM-SHA-256-PLUS")
# What scram_fault may be: how the server breaks the exchange.
SCRAM_FAULTS = (
    None,
    "bad-signature",    # v= is not HMAC(ServerKey, AuthMessage)
    "replayed-nonce",   # r= is a nonce from an earlier exchange
    "short-nonce",      # r= is the client's nonce with nothing added
    "server-error",     # e=other-error in place of v=
    "no-signature",     # +OK straight after the client's proof
    "malformed-first",  # a server-first-message without its salt
    "not-base64",       # a challenge that is not base64
    "extension",        # a mandatory extension (m=) the client cannot know
    "extra-challenge",  # one more challenge after the verified v=
)


def _hkdf_expand_label(hname, secret, label, context, length):
    """TLS 1.3 HKDF-Expand-Label (RFC 8446 7.1)."""
    full = b"tls13 " + label
    info = (length.to_bytes(2, "big") + bytes([len(full)]) + full +
            bytes([len(context)]) + context)
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([i]), hname).digest()
        out += block
        i += 1
    return out[:length]


def tls_exporter(exporter_secret, hname, label, length):
    """The TLS 1.3 exporter (RFC 8446 7.5) with an empty context."""
    empty = hashlib.new(hname, b"").digest()
    derived = _hkdf_expand_label(hname, exporter_secret, label, empty,
                                 hashlib.new(hname).digest_size)
    return _hkdf_expand_label(hname, derived, b"exporter", empty, length)


def make_cert(folder, name="localhost", ip=True):
    """A self-signed certificate for NAME (and 127.0.0.1); returns paths."""
    cert = os.path.join(folder, "fake-cert-%s.pem" % name)
    key = os.path.join(folder, "fake-key-%s.pem" % name)
    san = "DNS:" + name + (",IP:127.0.0.1" if ip else "")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + name,
         "-addext", "subjectAltName=" + san],
        check=True, capture_output=True)
    return cert, key


class FakePop:
    # The APOP timestamp in the greeting (RFC 1939).
    TIMESTAMP = b"<1896.697170952@fake>"

    def __init__(self, messages, user="alice", password="secret",
                 tls=None, certfile=None, keyfile=None, uidl=True,
                 capa_stls=True, pipelining=False, sasl="PLAIN",
                 token=None, sasl_strict=False, sasl_before_tls=None,
                 client_ca=None, tls_max_version=None, capa_extra=(),
                 capa_before_tls=(), resume=False):
        self.messages = [m if isinstance(m, bytes) else m.encode()
                         for m in messages]
        self.uids = ["uid-%d" % i for i in range(len(self.messages))]
        self.user, self.password = user, password
        # The OAuth bearer token XOAUTH2 and OAUTHBEARER expect.
        self.token = token if token is not None else password
        # Or a set of tokens, any of which is accepted (shared with a test
        # token endpoint that adds each one it issues).
        self.tokens = None
        self.tls, self.certfile, self.keyfile = tls, certfile, keyfile
        self.uidl, self.capa_stls = uidl, capa_stls
        self.pipelining, self.sasl = pipelining, sasl
        # True: AUTH with a mechanism not in the SASL capability fails.
        self.sasl_strict = sasl_strict
        # SASL capability announced before STLS, if other than after.
        self.sasl_before_tls = sasl_before_tls
        # A CA file: client certificates are required and checked.
        self.client_ca = client_ca
        self.tls_max_version = tls_max_version  # an ssl.TLSVersion
        # One TLS context for every connection (with resume), so that the
        # session tickets it issues resume later connections; None: a new
        # one each time, as a server restarted for each connection. A
        # test may put another in its place (context()).
        self.tls_context = None
        # For each TLS connection: whether it resumed a session.
        self.resumed = []
        # More CAPA lines, as given ("LOGIN-DELAY 900").
        self.capa_extra = list(capa_extra)
        # CAPA lines only before STLS (what someone on the path injects).
        self.capa_before_tls = list(capa_before_tls)
        # Faults, set by tests before the client connects.
        self.inject_after_stls = b""
        self.refuse_stls = False
        self.drop_in_retr = None  # (msgno, bytes of the reply to send)
        # (msgno, bytes of the message to send before a clean terminator)
        self.cut_retr = None
        # A msgno: after the whole reply to its RETR, close the connection.
        self.close_after_retr = None
        # (msgno, threading.Event): its RETR's reply waits for the event,
        # so that a test decides when the client gets it.
        self.hold_retr = None
        # Seconds between two bytes sent: "all" of the session's, or
        # "retr" (RETR replies only), "top" (TOP replies only); None:
        # normal speed.
        self.dribble = None
        self.dribble_what = "all"
        self.raw = {}  # command verb -> raw reply bytes
        self.greeting = b"+OK fakepop ready " + self.TIMESTAMP + b"\r\n"
        # Replies to AUTH and to each line that follows it, in order, in
        # place of the real exchange (the last one should end it).
        self.auth_script = None
        # The JSON of a failed OAuth exchange (Google's form by default).
        self.oauth_error = {"status": "401", "schemes": "bearer",
                            "scope": "https://mail.google.com/"}
        self.commands = []  # every line received, decoded
        self.sessions = 0
        self.probes = 0  # sessions that were sync() probes
        self.peer_certs = []  # client certificates seen (getpeercert())
        self.oauth = []  # decoded OAuth responses: dicts of their fields
        # SCRAM: the iteration count offered, a fault from SCRAM_FAULTS,
        # and one dict per exchange (gs2 header, channel binding type and
        # whether it matched, proof checked, client's last line).
        self.scram_iter = 4096
        self.scram_fault = None
        # Bind TLS 1.3 with tls-unique, and only so, as Cyrus 3.6 does.
        self.scram_tls13_unique = False
        self.scram = []
        self._scram_nonces = []
        self._keylog = None
        if any(m in (sasl or "").upper().split() for m in SCRAM_MECHS):
            fd, self._keylog = tempfile.mkstemp(prefix="fakepop-keylog-")
            os.close(fd)
        self.errors = []  # unexpected exceptions in sessions
        self.lock = threading.Lock()
        if resume:
            self.tls_context = self.context()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def stop(self):
        """Stops serving; a second call does nothing (the port may be
        another server's by then)."""
        if self.stopping:
            return
        self.stopping = True
        try:
            # Wake accept() so the thread ends.
            socket.create_connection(("127.0.0.1", self.port), 1).close()
        except OSError:
            pass
        self.thread.join(5)
        self.sock.close()
        if self._keylog:
            try:
                os.unlink(self._keylog)
            except OSError:
                pass

    def verbs(self):
        return [c.split(" ", 1)[0].upper() for c in self.commands]

    def sync(self):
        """Waits until every connection made so far has been served.

        Connects itself and waits for the server's first bytes (the
        greeting, or a TLS alert if the server wants a client certificate):
        connections are served one at a time, so by then every earlier one
        is over and its commands recorded. Returns the number of client
        sessions, probes not counted. The probe sends no command.
        """
        with self.lock:
            self.probes += 1
        s = socket.create_connection(("127.0.0.1", self.port), 30)
        try:
            if self.tls == "implicit":
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                s = ctx.wrap_socket(s)
            s.recv(1)
        except (ssl.SSLError, ConnectionError):
            pass  # the server answered, if only to refuse
        finally:
            s.close()
        with self.lock:
            return self.sessions - self.probes

    def context(self, certfile=None, keyfile=None):
        """A server TLS context with the server's settings, and CERTFILE
        and KEYFILE if given; its session tickets are its own."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile or self.certfile,
                            keyfile or self.keyfile)
        if self._keylog:
            # TLS 1.3's exporter secret, for checking tls-exporter.
            ctx.keylog_filename = self._keylog
        if self.tls_max_version is not None:
            ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
            ctx.maximum_version = self.tls_max_version
        if self.client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.client_ca)
        return ctx

    def _wrap(self, conn):
        ctx = self.tls_context or self.context()
        conn = ctx.wrap_socket(conn, server_side=True)
        with self.lock:
            self.resumed.append(conn.session_reused)
        cert = conn.getpeercert()
        if cert:
            with self.lock:
                self.peer_certs.append(cert)
        return conn

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.stopping:
                conn.close()
                return
            conn.settimeout(30)
            # Replies to pipelined commands go out one by one: with
            # Nagle's algorithm, each waits for the client's delayed ACK
            # of the one before (40 ms here), which no real client
            # should have to sit through in every test.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.current = conn
            try:
                self._session(conn)
            except (OSError, ssl.SSLError, ValueError):
                pass
            except Exception as e:  # a bug here must not stop serving
                self.errors.append(repr(e))
            finally:
                # The session may have replaced the socket by a TLS one.
                for c in {conn, self.current}:
                    try:
                        c.close()
                    except OSError:
                        pass

    def _capa(self, tls_active):
        lines = ["TOP", "USER", "RESP-CODES", "AUTH-RESP-CODE"]
        if self.uidl:
            lines.append("UIDL")
        if self.pipelining:
            lines.append("PIPELINING")
        sasl = self.sasl
        if self.sasl_before_tls is not None and not tls_active:
            sasl = self.sasl_before_tls
        if sasl:
            lines.append("SASL " + sasl)
        lines.extend(self.capa_extra)
        if not tls_active:
            lines.extend(self.capa_before_tls)
        if self.tls == "starttls" and self.capa_stls and not tls_active:
            lines.append("STLS")
        return "+OK\r\n" + "".join(l + "\r\n" for l in lines) + ".\r\n"

    def _dribbling(self, conn):
        """CONN, sending one byte at a time, self.dribble seconds apart."""
        delay = self.dribble

        class Slow:
            def __getattr__(self, name):
                return getattr(conn, name)

            def sendall(self, data):
                for i in range(len(data)):
                    conn.sendall(data[i:i + 1])
                    time.sleep(delay)

        return Slow()

    def _session(self, conn):
        with self.lock:
            self.sessions += 1
        tls_active = False
        if self.tls == "implicit":
            conn = self._wrap(conn)
            self.current = conn
            tls_active = True
        if self.dribble is not None and self.dribble_what == "all":
            conn = self._dribbling(conn)
        conn.sendall(self.greeting)
        rfile = conn.makefile("rb")
        authed = False
        self._user = None
        deleted = set()
        while True:
            line = self._readline(rfile)
            if line is None:
                return
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb in self.raw:
                conn.sendall(self.raw[verb])
                continue
            if verb == "CAPA":
                conn.sendall(self._capa(tls_active).encode())
            elif verb == "STLS" and self.tls == "starttls" and not tls_active:
                if self.refuse_stls:
                    conn.sendall(b"-ERR not now\r\n")
                    continue
                conn.sendall(b"+OK begin TLS\r\n" + self.inject_after_stls)
                if self.inject_after_stls:
                    # A careful client aborts here; give it time to do so.
                    rfile.close()
                    conn.settimeout(5)
                    try:
                        conn.recv(1)
                    except OSError:
                        pass
                    return
                rfile.close()
                conn = self._wrap(conn)
                self.current = conn
                rfile = conn.makefile("rb")
                tls_active = True
            elif verb == "UTF8" and not authed:
                # RFC 6856: UTF-8 mode, asked for before the login.
                conn.sendall(b"+OK UTF8 enabled\r\n")
            elif verb == "USER":
                self._user = arg
                conn.sendall(b"+OK\r\n")
            elif verb == "PASS":
                authed = self._user == self.user and arg == self.password
                conn.sendall(b"+OK in\r\n" if authed
                             else b"-ERR [AUTH] invalid\r\n")
            elif verb == "APOP":
                user, _, digest = arg.partition(" ")
                want = hashlib.md5(self.TIMESTAMP +
                                   self.password.encode()).hexdigest()
                authed = user == self.user and digest == want
                conn.sendall(b"+OK in\r\n" if authed
                             else b"-ERR [AUTH] invalid\r\n")
            elif verb == "AUTH":
                authed = self._auth(conn, rfile, arg)
            elif verb == "QUIT":
                for n in deleted:
                    self.messages[n - 1] = None
                self._compact()
                conn.sendall(b"+OK bye\r\n")
                return
            elif not authed:
                conn.sendall(b"-ERR log in first\r\n")
            else:
                self._transaction(conn, verb, arg, deleted)

    def _readline(self, rfile):
        """The next line from the client, recorded; None at its end."""
        # Long enough for the base64 of an OAuth token of a few KiB.
        raw = rfile.readline(65536)
        if not raw:
            return None
        line = raw.rstrip(b"\r\n").decode("latin-1")
        with self.lock:
            self.commands.append(line)
        return line

    def _sasl_line(self, rfile):
        """A line the SASL exchange cannot go on without."""
        line = self._readline(rfile)
        if line is None:
            raise ConnectionError("client left during AUTH")
        return line

    def _auth(self, conn, rfile, arg):
        """A SASL exchange after "AUTH ARG", final reply included. Returns
        whether the client logged in."""
        if self.auth_script is not None:
            return self._auth_scripted(conn, rfile)
        mech, _, ir = arg.partition(" ")
        mech = mech.upper()
        offered = (self.sasl or "").upper().split()
        handlers = {"PLAIN": self._sasl_plain, "LOGIN": self._sasl_login,
                    "XOAUTH2": self._sasl_xoauth2,
                    "OAUTHBEARER": self._sasl_oauthbearer,
                    "EXTERNAL": self._sasl_external}
        for m in SCRAM_MECHS:
            handlers[m] = (lambda c, r, i, m=m: self._sasl_scram(c, r, i, m))
        if mech not in handlers or (self.sasl_strict and
                                    mech not in offered):
            conn.sendall(b"-ERR unsupported authentication mechanism\r\n")
            return False
        authed = handlers[mech](conn, rfile, ir)
        conn.sendall(b"+OK in\r\n" if authed
                     else b"-ERR [AUTH] invalid\r\n")
        return authed

    def _auth_scripted(self, conn, rfile):
        """Sends the scripted replies, reading one line after each but
        the last (which should be +OK or -ERR)."""
        replies = list(self.auth_script)
        for i, reply in enumerate(replies):
            conn.sendall(reply)
            if i == len(replies) - 1:
                return reply.startswith(b"+OK")
            self._sasl_line(rfile)
        return False

    def _response(self, conn, rfile, ir, challenge=b""):
        """The client's response, decoded: IR if it sent one with AUTH,
        else the line it sends after CHALLENGE. None if it cancelled ("*")
        or sent something that is not base64."""
        if ir == "":
            conn.sendall(b"+ " + base64.b64encode(challenge) + b"\r\n")
            ir = self._sasl_line(rfile)
            if ir == "*":
                return None
        if ir == "=":  # RFC 5034: an empty response
            return b""
        try:
            return base64.b64decode(ir, validate=True)
        except ValueError:
            return None

    def _sasl_plain(self, conn, rfile, ir):
        data = self._response(conn, rfile, ir)
        if not data:
            return False
        try:
            _, user, pw = data.split(b"\0")
        except ValueError:
            return False
        return user.decode() == self.user and pw.decode() == self.password

    def _sasl_login(self, conn, rfile, ir):
        # The IR, if any, is the user name (RFC 5034 allows it).
        user = self._response(conn, rfile, ir, b"Username:")
        if not user:
            return False
        pw = self._response(conn, rfile, "", b"Password:")
        if not pw:
            return False
        return user.decode() == self.user and pw.decode() == self.password

    def _oauth_failure(self, conn, rfile):
        """Sends the error continuation; the client's answer ends it (the
        caller then sends -ERR, whatever the answer was)."""
        err = json.dumps(self.oauth_error).encode()
        conn.sendall(b"+ " + base64.b64encode(err) + b"\r\n")
        self._sasl_line(rfile)
        return False

    def _sasl_xoauth2(self, conn, rfile, ir):
        data = self._response(conn, rfile, ir)
        if not data:
            return False
        # "user=" USER ^A "auth=Bearer " TOKEN ^A ^A
        parts = data.decode("latin-1").split("\x01")
        fields = {"mech": "XOAUTH2", "raw": data}
        for p in parts[:-2]:
            k, _, v = p.partition("=")
            fields[k] = v
        with self.lock:
            self.oauth.append(fields)
        if (len(parts) == 4 and parts[2:] == ["", ""] and
                fields.get("user") == self.user and
                self._bearer_ok(fields.get("auth"))):
            return True
        return self._oauth_failure(conn, rfile)

    def _bearer_ok(self, auth):
        if auth is None or not auth.startswith("Bearer "):
            return False
        if self.tokens is not None:
            return auth[len("Bearer "):] in self.tokens
        return auth == "Bearer " + self.token

    def _sasl_oauthbearer(self, conn, rfile, ir):
        data = self._response(conn, rfile, ir)
        if not data:
            return False
        # gs2-header ^A key=value ^A ... ^A ^A (RFC 7628 3.1)
        parts = data.decode("latin-1").split("\x01")
        fields = {"mech": "OAUTHBEARER", "raw": data, "gs2": parts[0]}
        for p in parts[1:-2]:
            k, _, v = p.partition("=")
            fields[k] = v
        with self.lock:
            self.oauth.append(fields)
        if (len(parts) >= 4 and parts[-2:] == ["", ""] and
                parts[0] in ("n,a=%s," % self.user, "n,,") and
                self._bearer_ok(fields.get("auth"))):
            return True
        # RFC 7628 3.2.2: the error as a challenge, then -ERR after the
        # client's %x01.
        return self._oauth_failure(conn, rfile)

    def _sasl_external(self, conn, rfile, ir):
        data = self._response(conn, rfile, ir)
        if data is None:
            return False
        # The identity is the TLS client certificate's.
        cert = conn.getpeercert() if isinstance(conn, ssl.SSLSocket) else None
        return bool(cert) and data in (b"", self.user.encode())

    # ---- SCRAM (RFC 5802, RFC 7677) ----

    def _channel_binding(self, conn, cbname):
        """The channel binding data of CONN for CBNAME, or None."""
        if not isinstance(conn, ssl.SSLSocket):
            return None
        if cbname == "tls-unique":
            # Undefined for TLS 1.3 (RFC 9266), but what Cyrus 3.6 uses.
            if conn.version() == "TLSv1.3" and not self.scram_tls13_unique:
                return None
            return conn.get_channel_binding("tls-unique")
        if self.scram_tls13_unique:
            return None  # Cyrus 3.6 knows no tls-exporter
        if cbname == "tls-exporter" and conn.version() == "TLSv1.3":
            secret = None
            with open(self._keylog) as f:
                for line in f:
                    if line.startswith("EXPORTER_SECRET "):
                        secret = bytes.fromhex(line.split()[2])
            if secret is None:
                return None
            hname = "sha384" if conn.cipher()[0].endswith("SHA384") \
                else "sha256"
            return tls_exporter(secret, hname, b"EXPORTER-Channel-Binding",
                                32)
        return None

    @staticmethod
    def _scram_attrs(msg):
        """A SCRAM message's attributes as a dict (first value wins)."""
        out = {}
        for part in msg.split(","):
            k, eq, v = part.partition("=")
            if eq and len(k) == 1 and k not in out:
                out[k] = v
        return out

    def _scram_first(self, rec, cnonce):
        """The server-first-message, as the fault wants it."""
        fault = self.scram_fault
        if fault == "replayed-nonce" and self._scram_nonces:
            nonce = self._scram_nonces[0]
        elif fault == "replayed-nonce":
            nonce = "stale" + base64.b64encode(os.urandom(18)).decode()
        elif fault == "short-nonce":
            nonce = cnonce
        else:
            nonce = cnonce + base64.b64encode(os.urandom(18)).decode()
        self._scram_nonces.append(nonce)
        rec["salt"] = os.urandom(16)
        salt = base64.b64encode(rec["salt"]).decode()
        if fault == "malformed-first":
            return nonce, "r=%s,i=%d" % (nonce, self.scram_iter)
        if fault == "extension":
            return nonce, "m=must-know,r=%s,s=%s,i=%d" % (
                nonce, salt, self.scram_iter)
        return nonce, "r=%s,s=%s,i=%d" % (nonce, salt, self.scram_iter)

    def _send_challenge(self, conn, text):
        if self.scram_fault == "not-base64":
            conn.sendall(b"+ not!base64?\r\n")
        else:
            conn.sendall(b"+ " + base64.b64encode(text.encode()) + b"\r\n")

    def _sasl_scram(self, conn, rfile, ir, mech):
        """One SCRAM exchange; True when the client proved the password
        (and, unless a fault says otherwise, the server proved it too and
        the client took the proof)."""
        hname = "sha256" if "SHA-256" in mech else "sha1"
        rec = {"mech": mech, "proof_ok": False, "cb_ok": None,
               "final_ack": None}
        with self.lock:
            self.scram.append(rec)
        data = self._response(conn, rfile, ir)
        if not data:
            return False
        cfirst = data.decode("utf-8")
        flag, _, rest = cfirst.partition(",")
        authz, _, bare = rest.partition(",")
        gs2 = flag + "," + authz + ","
        rec["gs2"] = gs2
        cbname = flag[2:] if flag.startswith("p=") else None
        rec["cbname"] = cbname
        if mech.endswith("-PLUS") != (cbname is not None):
            return False
        attrs = self._scram_attrs(bare)
        cnonce = attrs.get("r", "")
        if attrs.get("n") != self.user or not cnonce:
            return False
        nonce, sfirst = self._scram_first(rec, cnonce)
        self._send_challenge(conn, sfirst)
        line = self._sasl_line(rfile)
        rec["final"] = line
        if line == "*":
            return False
        cfinal = base64.b64decode(line, validate=True).decode("utf-8")
        without_proof, _, proof = cfinal.rpartition(",p=")
        fattrs = self._scram_attrs(without_proof)
        cbdata = b""
        if cbname is not None:
            cbdata = self._channel_binding(conn, cbname) or b""
            rec["cb_ok"] = bool(cbdata) and base64.b64decode(
                fattrs.get("c", "")) == gs2.encode() + cbdata
            if not rec["cb_ok"]:
                return False
        elif base64.b64decode(fattrs.get("c", "")) != gs2.encode():
            return False
        if fattrs.get("r") != nonce:
            return False
        salted = hashlib.pbkdf2_hmac(hname, self.password.encode(),
                                     rec["salt"], self.scram_iter)
        auth_msg = ",".join((bare, sfirst, without_proof)).encode()
        client_key = hmac.new(salted, b"Client Key", hname).digest()
        stored = hashlib.new(hname, client_key).digest()
        sig = hmac.new(stored, auth_msg, hname).digest()
        want = bytes(a ^ b for a, b in zip(client_key, sig))
        rec["proof_ok"] = base64.b64decode(proof) == want
        if not rec["proof_ok"]:
            return False
        server_key = hmac.new(salted, b"Server Key", hname).digest()
        v = hmac.new(server_key, auth_msg, hname).digest()
        if self.scram_fault == "bad-signature":
            v = bytes([v[0] ^ 1]) + v[1:]
        if self.scram_fault == "no-signature":
            return True
        if self.scram_fault == "server-error":
            self._send_challenge(conn, "e=other-error")
        else:
            self._send_challenge(
                conn, "v=" + base64.b64encode(v).decode())
        rec["final_ack"] = self._sasl_line(rfile)
        if self.scram_fault == "server-error":
            return False
        if self.scram_fault == "extra-challenge":
            self._send_challenge(conn, "v=" + base64.b64encode(v).decode())
            rec["extra_ack"] = self._sasl_line(rfile)
        return rec["final_ack"] == ""

    def _compact(self):
        keep = [(m, u) for m, u in zip(self.messages, self.uids)
                if m is not None]
        self.messages = [m for m, _ in keep]
        self.uids = [u for _, u in keep]

    def _wire(self, msg):
        """A message as sent in RETR: CRLF lines, dot-stuffed."""
        out = []
        for l in msg.split(b"\n"):
            if l.startswith(b"."):
                l = b"." + l
            out.append(l)
        if out and out[-1] == b"":
            out.pop()
        return b"".join(l + b"\r\n" for l in out) + b".\r\n"

    def _transaction(self, conn, verb, arg, deleted):
        live = [i + 1 for i in range(len(self.messages))
                if i + 1 not in deleted]
        if verb == "STAT":
            size = sum(len(self.messages[n - 1]) for n in live)
            conn.sendall(b"+OK %d %d\r\n" % (len(live), size))
        elif verb == "LIST":
            conn.sendall(b"+OK\r\n" + b"".join(
                b"%d %d\r\n" % (n, len(self.messages[n - 1])) for n in live)
                + b".\r\n")
        elif verb == "UIDL" and self.uidl:
            conn.sendall(b"+OK\r\n" + b"".join(
                b"%d %s\r\n" % (n, self.uids[n - 1].encode()) for n in live)
                + b".\r\n")
        elif verb == "RETR":
            n = int(arg)
            reply = b"+OK\r\n" + self._wire(self.messages[n - 1])
            if self.cut_retr and self.cut_retr[0] == n:
                reply = reply[:5 + self.cut_retr[1]] + b"\r\n.\r\n"
            if self.hold_retr and self.hold_retr[0] == n:
                self.hold_retr[1].wait(60)
            if self.dribble is not None and self.dribble_what == "retr":
                self._dribbling(conn).sendall(reply)
                return
            if self.close_after_retr == n:
                conn.sendall(reply)
                conn.shutdown(socket.SHUT_RDWR)
                raise OSError("closed on purpose")
            if self.drop_in_retr and self.drop_in_retr[0] == n:
                conn.sendall(reply[:self.drop_in_retr[1]])
                conn.shutdown(socket.SHUT_RDWR)
                raise OSError("dropped on purpose")
            conn.sendall(reply)
        elif verb == "TOP":
            n, k = (int(x) for x in arg.split())
            msg = self.messages[n - 1].replace(b"\r\n", b"\n")
            lines = self._wire(msg)[:-3].split(b"\r\n")
            if lines and lines[-1] == b"":
                lines.pop()
            blank = lines.index(b"") if b"" in lines else len(lines)
            reply = (b"+OK\r\n" + b"".join(
                l + b"\r\n" for l in lines[:blank + 1 + k]) + b".\r\n")
            if self.dribble is not None and self.dribble_what == "top":
                self._dribbling(conn).sendall(reply)
                return
            conn.sendall(reply)
        elif verb == "DELE":
            deleted.add(int(arg))
            conn.sendall(b"+OK deleted\r\n")
        elif verb == "NOOP":
            conn.sendall(b"+OK\r\n")
        elif verb == "RSET":
            deleted.clear()
            conn.sendall(b"+OK\r\n")
        else:
            conn.sendall(b"-ERR unknown command\r\n")
