"""A scripted POP3 server for faults a real server will not produce.

It serves a mailbox from memory on 127.0.0.1, optionally over TLS (implicit
or STLS), records every command line it receives, and misbehaves on
request: bytes injected after the +OK to STLS, STLS missing or refused, the
connection dropped in the middle of a message, chosen raw replies. Deletions
are applied only when a session ends with QUIT, as RFC 1939 requires, so a
test can check what a client's crash or error leaves on the server.
"""

import os
import socket
import ssl
import subprocess
import tempfile
import threading


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
    def __init__(self, messages, user="alice", password="secret",
                 tls=None, certfile=None, keyfile=None, uidl=True,
                 capa_stls=True, pipelining=False, sasl="PLAIN"):
        self.messages = [m if isinstance(m, bytes) else m.encode()
                         for m in messages]
        self.uids = ["uid-%d" % i for i in range(len(self.messages))]
        self.user, self.password = user, password
        self.tls, self.certfile, self.keyfile = tls, certfile, keyfile
        self.uidl, self.capa_stls = uidl, capa_stls
        self.pipelining, self.sasl = pipelining, sasl
        # Faults, set by tests before the client connects.
        self.inject_after_stls = b""
        self.refuse_stls = False
        self.drop_in_retr = None  # (msgno, bytes of the reply to send)
        self.raw = {}  # command verb -> raw reply bytes
        self.commands = []  # every line received, decoded
        self.sessions = 0
        self.lock = threading.Lock()
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
        self.stopping = True
        try:
            # Wake accept() so the thread ends.
            socket.create_connection(("127.0.0.1", self.port), 1).close()
        except OSError:
            pass
        self.thread.join(5)
        self.sock.close()

    def verbs(self):
        return [c.split(" ", 1)[0].upper() for c in self.commands]

    def _context(self):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.certfile, self.keyfile)
        return ctx

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
            self.current = conn
            try:
                self._session(conn)
            except (OSError, ssl.SSLError, ValueError):
                pass
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
        if self.sasl:
            lines.append("SASL " + self.sasl)
        if self.tls == "starttls" and self.capa_stls and not tls_active:
            lines.append("STLS")
        return "+OK\r\n" + "".join(l + "\r\n" for l in lines) + ".\r\n"

    def _session(self, conn):
        with self.lock:
            self.sessions += 1
        tls_active = False
        if self.tls == "implicit":
            conn = self._context().wrap_socket(conn, server_side=True)
            self.current = conn
            tls_active = True
        conn.sendall(b"+OK fakepop ready <1896.697170952@fake>\r\n")
        rfile = conn.makefile("rb")
        authed = False
        deleted = set()
        while True:
            raw = rfile.readline(4096)
            if not raw:
                return
            line = raw.rstrip(b"\r\n").decode("latin-1")
            with self.lock:
                self.commands.append(line)
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
                conn = self._context().wrap_socket(conn, server_side=True)
                self.current = conn
                rfile = conn.makefile("rb")
                tls_active = True
            elif verb == "USER":
                self._user = arg
                conn.sendall(b"+OK\r\n")
            elif verb == "PASS":
                authed = self._user == self.user and arg == self.password
                conn.sendall(b"+OK in\r\n" if authed
                             else b"-ERR [AUTH] invalid\r\n")
            elif verb == "AUTH":
                authed = self._sasl_plain(arg)
                conn.sendall(b"+OK in\r\n" if authed
                             else b"-ERR [AUTH] invalid\r\n")
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

    def _sasl_plain(self, arg):
        import base64
        mech, _, ir = arg.partition(" ")
        if mech.upper() != "PLAIN" or not ir:
            return False
        try:
            _, user, pw = base64.b64decode(ir).split(b"\0")
        except ValueError:
            return False
        return user.decode() == self.user and pw.decode() == self.password

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
            if self.drop_in_retr and self.drop_in_retr[0] == n:
                conn.sendall(reply[:self.drop_in_retr[1]])
                conn.shutdown(socket.SHUT_RDWR)
                raise OSError("dropped on purpose")
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


def tempdir():
    return tempfile.mkdtemp(prefix="popfetchd-fake-")
