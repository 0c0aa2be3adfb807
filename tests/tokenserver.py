"""A local HTTPS OAuth2 token endpoint for the tests.

It serves, on 127.0.0.1 over TLS with a certificate the test chooses:

- POST /token: the refresh grant (RFC 6749 6), the device code grant (RFC
  8628 3.4) and the authorization code grant with PKCE (RFC 7636 4.6);
- POST /device: device authorization (RFC 8628 3.1).

Refresh tokens rotate on every use unless rotate is False; a used one is
dead. Every access token issued goes into self.issued (a set the scripted
POP3 server can share as the tokens it accepts). Every request is recorded
as a dict of its form fields in self.requests. Faults, set by the test:
mode "malformed" (a 200 answer that is not JSON), "error500", "revoked"
(every refresh is invalid_grant), and delay (seconds before answering,
while the event that releases it is not set).
"""

import base64
import hashlib
import http.server
import json
import socketserver
import ssl
import threading
import urllib.parse


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        srv = self.server.owner
        n = int(self.headers.get("Content-Length", "0"))
        form = dict(urllib.parse.parse_qsl(self.rfile.read(n).decode(),
                                           keep_blank_values=True))
        with srv.lock:
            srv.requests.append(dict(form, _path=self.path))
        srv.arrived.set()
        if srv.delay:
            srv.release.wait(srv.delay)
        status, body = srv.answer(self.path, form)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


class TokenServer:
    def __init__(self, certfile, keyfile, refresh_token="rt-0",
                 expires_in=3600):
        self.lock = threading.Lock()
        self.requests = []
        self.issued = set()
        self.valid = {refresh_token}  # refresh tokens that work
        self.rotate = True
        self.expires_in = expires_in
        self.mode = "ok"
        self.delay = 0
        self.release = threading.Event()
        # Set when a request arrives (before any delay).
        self.arrived = threading.Event()
        self.count = 0
        # Device flow: device code -> polls still to answer "pending".
        self.devices = {}
        # Authorization codes -> (PKCE challenge, redirect_uri).
        self.codes = {}
        self.httpd = _Server(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certfile, keyfile)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket,
                                            server_side=True)
        self.port = self.httpd.server_address[1]
        self.url = "https://127.0.0.1:%d" % self.port
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       daemon=True)
        self.thread.start()

    def stop(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def grants(self, grant_type):
        with self.lock:
            return [r for r in self.requests
                    if r.get("grant_type") == grant_type]

    def _issue(self, refresh=True):
        self.count += 1
        access = "at-%d-%s" % (self.count, "x" * 40)
        self.issued.add(access)
        body = {"access_token": access, "token_type": "Bearer",
                "expires_in": self.expires_in}
        if refresh:
            new = "rt-%d" % self.count
            self.valid.add(new)
            body["refresh_token"] = new
        return body

    def answer(self, path, form):
        with self.lock:
            if self.mode == "malformed":
                return 200, b'{"access_token": "at-broken", '
            if self.mode == "error500":
                return 500, b"<html>oops</html>"
            if path == "/device":
                return self._device(form)
            grant = form.get("grant_type")
            if grant == "refresh_token":
                return self._refresh(form)
            if grant == "urn:ietf:params:oauth:grant-type:device_code":
                return self._device_token(form)
            if grant == "authorization_code":
                return self._code(form)
            return 400, {"error": "unsupported_grant_type"}

    def _refresh(self, form):
        rt = form.get("refresh_token")
        if self.mode == "revoked" or rt not in self.valid:
            return 400, {"error": "invalid_grant",
                         "error_description": "token revoked or expired"}
        if self.rotate:
            self.valid.discard(rt)
        return 200, self._issue(refresh=self.rotate)

    def _device(self, form):
        code = "dc-%d" % (len(self.devices) + 1)
        self.devices[code] = 1
        return 200, {"device_code": code, "user_code": "WDJB-MJHT",
                     "verification_uri": self.url + "/activate",
                     "expires_in": 60, "interval": 1}

    def _device_token(self, form):
        code = form.get("device_code")
        if code not in self.devices:
            return 400, {"error": "expired_token"}
        if self.devices[code] > 0:
            self.devices[code] -= 1
            return 400, {"error": "authorization_pending"}
        del self.devices[code]
        return 200, self._issue()

    def _code(self, form):
        code = form.get("code")
        if code not in self.codes:
            return 400, {"error": "invalid_grant"}
        challenge, redirect = self.codes.pop(code)
        verifier = form.get("code_verifier", "")
        got = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if got != challenge or form.get("redirect_uri") != redirect:
            return 400, {"error": "invalid_grant",
                         "error_description": "PKCE or redirect mismatch"}
        return 200, self._issue()
