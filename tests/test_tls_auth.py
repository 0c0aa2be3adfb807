"""TLS and authentication against the scripted POP3 server (tests/fakepop.py).

Each test runs `popfetchd --once` against a server whose bytes the test
chooses (bad certificates, pins, SASL exchanges and their failures,
password sources) and checks, from the server's log of every line it
received, what the client sent and, above all, what it did not: in every
case that must refuse, no credential leaves the process. The certificates
come from a throwaway CA made with openssl in a temporary folder.

test_faults.py already covers STLS stripped, refused and followed by
injected bytes, a wrong host name and an untrusted self-signed certificate;
the STLS tests here add what those leave out.

Run: python3 tests/test_tls_auth.py --binary build/popfetchd
"""

import base64
import hashlib
import os
import re
import ssl
import time

from fakepop import make_cert
from harness import CA, FakePopCase, main, openssl, tempdir

MESSAGES = [b"From: a@example.org\nSubject: one\n\nbody one\n"]

USER = "alice"
# Secrets long enough that their base64 forms are recognisable too.
PASSWORD = "Pw-7fq2Lx9-Kd83zQ"
TOKEN = "ya29.tok-Q3b8Rk2mWz7Hn4Vc"
# Longer than an AUTH line may carry (RFC 5034: 255 octets with its
# initial response), so the two-step form is needed; short enough to fit
# in the 1,024-octet command line the engine allows.
LONG_TOKEN = "eyJ0eXAiOiJKV1Qi." + "Lg5tZ8pQ" * 40
# The size of a Microsoft 365 access token (a JWT of a few KiB).
HUGE_TOKEN = "eyJ0eXAiOiJKV1QiLCJub25jZSI6." + "Hx3mV9sR" * 300


def spki_pin(cert):
    """"sha256/" + base64 of the SHA-256 of CERT's SubjectPublicKeyInfo."""
    pub = openssl("x509", "-in", cert, "-pubkey", "-noout")
    der = openssl("pkey", "-pubin", "-outform", "der", stdin=pub)
    return "sha256/" + base64.b64encode(hashlib.sha256(der).digest()).decode()


def b64_forms(secret):
    """SECRET and the base64 of it at each of the three alignments it can
    have inside a longer base64 string (minus the edge characters that
    depend on its neighbours)."""
    data = secret.encode() if isinstance(secret, str) else secret
    forms = {data.decode("latin-1")}
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + data).decode()
        core = enc[4 if k else 0:-4]
        if len(core) >= 8:
            forms.add(core)
    return forms


POP3_VERBS = {"USER", "PASS", "APOP", "RPOP", "AUTH", "CAPA", "STLS", "UTF8",
              "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP",
              "QUIT"}
# Command lines that carry a credential, by verb.
CREDENTIAL_VERBS = ("USER", "PASS", "AUTH", "APOP", "RPOP")


class TlsAuthTest(FakePopCase):
    MESSAGES = MESSAGES
    USER = USER
    PASSWORD = PASSWORD

    @classmethod
    def setUpClass(cls):
        cls.certdir = tempdir()
        cls.ca = CA(cls.certdir)
        cls.ca_file = cls.ca.cert
        cls.cert, cls.key = cls.ca.issue("localhost")
        # A self-signed certificate for localhost, in no ca_file.
        cls.rogue_cert, cls.rogue_key = make_cert(cls.certdir, "localhost")

    # ---- helpers ----

    def assert_fetched(self, srv, r):
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.delivered(), MESSAGES)
        self.assertEqual(srv.messages, [])

    def assert_no_credentials(self, srv, *secrets):
        """Nothing in the server's log carries a credential: no
        credential command, no secret, in clear or base64."""
        srv.sync()
        forms = set()
        for s in (PASSWORD, TOKEN, LONG_TOKEN) + secrets:
            forms |= b64_forms(s)
        for c in srv.commands:
            self.assertFalse(c.upper().startswith(CREDENTIAL_VERBS), c)
            for f in forms:
                self.assertNotIn(f, c)

    def assert_not_logged(self, stderr, srv, secret):
        """STDERR holds neither SECRET (in clear or base64) nor any line
        the client sent after a credential verb (the server's log has
        them)."""
        for f in b64_forms(secret):
            self.assertNotIn(f, stderr)
        sent, in_auth = [], False
        for c in srv.commands:
            verb, _, arg = c.partition(" ")
            verb = verb.upper()
            if verb in ("PASS", "APOP"):
                sent.append(arg.split(" ")[-1])
            elif verb == "AUTH":
                in_auth = True
                if " " in arg:
                    sent.append(arg.split(" ", 1)[1])
                continue
            elif in_auth and verb not in ("STAT", "QUIT", "LIST", "UIDL"):
                sent.append(c)
                continue
            in_auth = False
        for s in sent:
            # "*" and "" carry nothing; "AQ==" and "=" are fixed strings.
            if len(s) > 4:
                self.assertNotIn(s, stderr)

    def auth_lines(self, srv):
        """The lines from AUTH up to the first command after it."""
        cmds = srv.commands
        for i, c in enumerate(cmds):
            if c.upper().startswith("AUTH"):
                j = i + 1
                while j < len(cmds) and cmds[j].split(" ")[0] not in (
                        "STAT", "QUIT", "LIST", "UIDL", "USER", "PASS"):
                    j += 1
                return cmds[i:j]
        return []

    # ---- certificates ----

    def test_ca_signed_certificate_fetches(self):
        srv = self.server()
        r = self.run_once(self.config(srv))
        self.assert_fetched(srv, r)

    def test_expired_certificate_sends_nothing(self):
        cert, key = self.ca.issue("localhost", "200101000000Z",
                                  "200201000000Z")
        srv = self.server(certfile=cert, keyfile=key)
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("certificate has expired", r.stderr)
        self.assertEqual(srv.sync(), 1)
        self.assertEqual(srv.commands, [])

    def test_not_yet_valid_certificate_sends_nothing(self):
        cert, key = self.ca.issue("localhost", "400101000000Z",
                                  "410101000000Z")
        srv = self.server(certfile=cert, keyfile=key)
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("certificate is not yet valid", r.stderr)
        self.assertEqual(srv.sync(), 1)
        self.assertEqual(srv.commands, [])

    def test_expired_certificate_after_stls_sends_nothing(self):
        cert, key = self.ca.issue("localhost", "200101000000Z",
                                  "200201000000Z")
        srv = self.server(tls="starttls", certfile=cert, keyfile=key)
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("certificate has expired", r.stderr)
        srv.sync()
        self.assertEqual(srv.commands, ["CAPA", "STLS"])

    def test_tls_verify_false_accepts_and_warns(self):
        # A self-signed certificate no ca_file vouches for.
        srv = self.server(certfile=self.rogue_cert, keyfile=self.rogue_key)
        r = self.run_once(self.config(srv, tls_verify=False))
        self.assert_fetched(srv, r)
        self.assertIn("certificate verification is off", r.stderr)
        self.assertIn("account=fake", r.stderr)

    def test_ip_address_checked_against_certificate(self):
        # host = "127.0.0.1": the certificate must name that address.
        srv = self.server()
        r = self.run_once(self.config(srv, host="127.0.0.1"))
        self.assert_fetched(srv, r)
        cert, key = self.ca.issue("localhost", ip=False)
        srv = self.server(certfile=cert, keyfile=key)
        r = self.run_once(self.config(srv, host="127.0.0.1"))
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("hostname mismatch: 127.0.0.1 vs localhost", r.stderr)
        self.assertEqual(srv.sync(), 1)
        self.assertEqual(srv.commands, [])

    def test_implicit_tls_against_plaintext_server(self):
        # A server answering in clear where TLS was expected.
        srv = self.server(tls=None)
        r = self.run_once(self.config(srv, tls="implicit"))
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("TLS handshake failed", r.stderr)
        self.assertEqual(srv.sync(), 1)
        # The server may have read the ClientHello as "lines" (split at
        # whatever newline bytes it holds); no POP3 command came.
        self.assert_no_credentials(srv)
        for c in srv.commands:
            self.assertNotIn(c.split(" ")[0].upper(), POP3_VERBS, repr(c))

    def test_tls_min_version_refuses_older_server(self):
        srv = self.server(tls_max_version=ssl.TLSVersion.TLSv1_2)
        r = self.run_once(self.config(srv, tls_min_version="TLSv1.3"))
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("TLS handshake failed", r.stderr)
        self.assertEqual(srv.sync(), 1)
        self.assertEqual(srv.commands, [])

    # ---- pins ----

    def test_pin_match_fetches(self):
        srv = self.server()
        r = self.run_once(self.config(srv, tls_pins=[spki_pin(self.cert)]))
        self.assert_fetched(srv, r)

    def test_pin_match_without_verification(self):
        # The pin alone vouches for a self-signed certificate.
        srv = self.server(certfile=self.rogue_cert, keyfile=self.rogue_key)
        conf = self.config(srv, tls_verify=False,
                           tls_pins=[spki_pin(self.rogue_cert)])
        r = self.run_once(conf)
        self.assert_fetched(srv, r)

    def test_pin_rotation_any_pin_matches(self):
        srv = self.server()
        conf = self.config(srv, tls_pins=[spki_pin(self.rogue_cert),
                                          spki_pin(self.cert)])
        r = self.run_once(conf)
        self.assert_fetched(srv, r)

    def test_pin_mismatch_sends_nothing(self):
        srv = self.server()
        conf = self.config(srv, tls_pins=[spki_pin(self.rogue_cert)])
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("pin mismatch", r.stderr)
        # Checked after the handshake, before the greeting is parsed.
        self.assertEqual(srv.sync(), 1)
        self.assertEqual(srv.commands, [])
        self.assertEqual(self.delivered(), [])

    def test_pin_mismatch_without_verification_sends_nothing(self):
        # tls_verify = false does not turn the pins off.
        srv = self.server(certfile=self.rogue_cert, keyfile=self.rogue_key)
        conf = self.config(srv, tls_verify=False,
                           tls_pins=[spki_pin(self.cert)])
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("pin mismatch", r.stderr)
        srv.sync()
        self.assertEqual(srv.commands, [])

    def test_pin_mismatch_after_stls_sends_no_credentials(self):
        srv = self.server(tls="starttls")
        conf = self.config(srv, tls_pins=[spki_pin(self.rogue_cert)])
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("pin mismatch", r.stderr)
        srv.sync()
        self.assertEqual(srv.commands, ["CAPA", "STLS"])

    # ---- STLS (beyond test_faults.py) ----

    def test_stls_stripped_only_capa_sent(self):
        # The server would take any login in clear: offers USER and PLAIN.
        srv = self.server(tls="starttls", capa_stls=False)
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("does not offer STLS", r.stderr)
        self.assert_no_credentials(srv)
        self.assertIn(srv.verbs(), (["CAPA"], ["CAPA", "QUIT"]))

    def test_stls_server_without_capa_sends_nothing(self):
        # An RFC 1939 server (no CAPA) cannot be asked for STLS safely.
        srv = self.server(tls="starttls")
        srv.raw["CAPA"] = b"-ERR unknown command\r\n"
        r = self.run_once(self.config(srv))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("does not offer STLS", r.stderr)
        self.assert_no_credentials(srv)

    def test_stls_injected_capa_is_not_parsed(self):
        # The 2021 attack: a forged CAPA reply after the +OK to STLS,
        # meant to be read as if it came over TLS.
        srv = self.server(tls="starttls")
        srv.inject_after_stls = (b"+OK\r\nUSER\r\nSASL PLAIN\r\n.\r\n"
                                 b"+OK\r\n")
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("after +OK to STLS", r.stderr)
        self.assert_no_credentials(srv)
        self.assertEqual(srv.commands, ["CAPA", "STLS"])

    def test_stls_capabilities_asked_again(self):
        # Before TLS the server offers no SASL; over TLS it offers PLAIN.
        # auto must pick from what it says over TLS.
        srv = self.server(tls="starttls", sasl_before_tls="")
        r = self.run_once(self.config(srv))
        self.assert_fetched(srv, r)
        self.assertEqual(srv.verbs()[:4], ["CAPA", "STLS", "CAPA", "AUTH"])

    def test_stls_pre_tls_capabilities_forgotten(self):
        # Before TLS the server claims SASL PLAIN; over TLS, only USER.
        srv = self.server(tls="starttls", sasl="", sasl_before_tls="PLAIN")
        r = self.run_once(self.config(srv))
        self.assert_fetched(srv, r)
        self.assertEqual(srv.verbs()[:5],
                         ["CAPA", "STLS", "CAPA", "USER", "PASS"])

    # ---- plaintext ----

    def test_tls_none_without_allow_plaintext_never_connects(self):
        srv = self.server(tls=None)
        r = self.run_once(self.config(srv, tls="none"))
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn("allow_plaintext", r.stderr)
        self.assertEqual(srv.sync(), 0)
        self.assertEqual(srv.commands, [])

    def test_tls_none_with_allow_plaintext(self):
        # The explicit opt-in works (and is the only way to log in clear).
        srv = self.server(tls=None)
        conf = self.config(srv, tls="none", allow_plaintext=True)
        r = self.run_once(conf)
        self.assert_fetched(srv, r)

    # ---- mechanism choice ----

    def test_auto_prefers_sasl_plain(self):
        srv = self.server()
        r = self.run_once(self.config(srv))
        self.assert_fetched(srv, r)
        self.assertEqual(srv.verbs()[:2], ["CAPA", "AUTH"])
        self.assertEqual(srv.commands[1].split(" ")[1].upper(), "PLAIN")
        self.assertNotIn("USER", srv.verbs())
        # The greeting has an APOP timestamp: never used unless named.
        self.assertNotIn("APOP", srv.verbs())

    def test_auto_with_user_only_server(self):
        srv = self.server(sasl="")
        r = self.run_once(self.config(srv))
        self.assert_fetched(srv, r)
        self.assertEqual(srv.verbs()[:3], ["CAPA", "USER", "PASS"])
        self.assertEqual(srv.commands[1], "USER " + USER)
        self.assertNotIn("AUTH", srv.verbs())
        self.assertNotIn("APOP", srv.verbs())

    def test_auto_no_fallback_after_refusal(self):
        # PLAIN refused: trying USER/PASS next would be a silent fallback.
        srv = self.server(password="other")
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 77, r.stderr)
        self.assertIn("authentication failed", r.stderr)
        srv.sync()
        self.assertEqual([v for v in srv.verbs() if v in CREDENTIAL_VERBS],
                         ["AUTH"])

    def test_plain_on_server_not_advertising_it(self):
        # Only XOAUTH2 advertised; the configured mechanism is still tried
        # (a server may take mechanisms it does not list).
        srv = self.server(sasl="XOAUTH2")
        r = self.run_once(self.config(srv, auth="plain"))
        self.assert_fetched(srv, r)
        self.assertEqual(srv.verbs()[:2], ["CAPA", "AUTH"])
        self.assertEqual(srv.commands[1].split(" ")[1].upper(), "PLAIN")

    def test_plain_refused_no_weaker_fallback(self):
        srv = self.server(sasl="XOAUTH2", sasl_strict=True)
        r = self.run_once(self.config(srv, auth="plain"))
        self.assertEqual(r.returncode, 77, r.stderr)
        self.assertIn("unsupported authentication mechanism", r.stderr)
        srv.sync()
        self.assertEqual([v for v in srv.verbs() if v in CREDENTIAL_VERBS],
                         ["AUTH"])

    def test_apop_when_named(self):
        srv = self.server(sasl="")
        r = self.run_once(self.config(srv, auth="apop"))
        self.assert_fetched(srv, r)
        digest = hashlib.md5(b"<1896.697170952@fake>" +
                             PASSWORD.encode()).hexdigest()
        self.assertEqual(srv.commands[1], "APOP %s %s" % (USER, digest))

    def test_sasl_mechanism_names_upper_case(self):
        # RFC 4422 3.1: mechanism names are upper-case letters, digits,
        # '-' and '_'; a server may compare them exactly.
        for auth, mech in (("plain", "PLAIN"), ("xoauth2", "XOAUTH2"),
                           ("oauthbearer", "OAUTHBEARER"),
                           ("login", "LOGIN")):
            with self.subTest(auth=auth):
                srv = self.server(token=TOKEN)
                pw = TOKEN if "oauth" in auth else PASSWORD
                conf = self.config(srv, auth=auth, password=pw)
                r = self.run_once(conf)
                self.assertEqual(r.returncode, 0, r.stderr)
                auth_cmd = self.auth_lines(srv)[0]
                self.assertEqual(auth_cmd.split(" ")[1], mech)

    def test_auth_sys_temp_is_busy_not_auth(self):
        srv = self.server()
        srv.auth_script = [b"-ERR [SYS/TEMP] backend down\r\n"]
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("error=busy", r.stderr)

    def test_auth_in_use_is_busy_not_auth(self):
        srv = self.server()
        srv.auth_script = [b"-ERR [IN-USE] mailbox locked\r\n"]
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("error=busy", r.stderr)

    def test_auth_refused_code_is_auth(self):
        srv = self.server()
        srv.auth_script = [b"-ERR [AUTH] bad password\r\n"]
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 77, r.stderr)
        self.assertIn("error=auth", r.stderr)

    def test_plain_unexpected_challenge_cancelled(self):
        # A challenge after PLAIN's initial response: the client cancels
        # with "*" and does not send its credentials a second time.
        srv = self.server()
        srv.auth_script = [b"+ \r\n", b"-ERR [AUTH] cancelled\r\n"]
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 77, r.stderr)
        srv.sync()
        lines = self.auth_lines(srv)
        self.assertEqual(len(lines), 2, lines)
        self.assertEqual(lines[1], "*")

    # ---- AUTH LOGIN ----

    def test_auth_login(self):
        srv = self.server(sasl="LOGIN")
        r = self.run_once(self.config(srv, auth="login"))
        self.assert_fetched(srv, r)
        lines = self.auth_lines(srv)
        self.assertEqual([lines[0].upper()] + lines[1:],
                         ["AUTH LOGIN",
                          base64.b64encode(USER.encode()).decode(),
                          base64.b64encode(PASSWORD.encode()).decode()])

    def test_auth_login_third_challenge_cancelled(self):
        srv = self.server(sasl="LOGIN")
        srv.auth_script = [b"+ VXNlcm5hbWU6\r\n", b"+ UGFzc3dvcmQ6\r\n",
                           b"+ UGFzc3dvcmQ6\r\n", b"-ERR [AUTH] no\r\n"]
        r = self.run_once(self.config(srv, auth="login"))
        self.assertEqual(r.returncode, 77, r.stderr)
        srv.sync()
        lines = self.auth_lines(srv)
        # The password once, then a cancel: never the password again.
        self.assertEqual(lines[1:], [
            base64.b64encode(USER.encode()).decode(),
            base64.b64encode(PASSWORD.encode()).decode(), "*"])

    # ---- XOAUTH2 ----

    def xoauth2_ir(self, token):
        return base64.b64encode(("user=%s\x01auth=Bearer %s\x01\x01" % (
            USER, token)).encode()).decode()

    def test_xoauth2_one_line(self):
        srv = self.server(sasl="XOAUTH2", token=TOKEN)
        r = self.run_once(self.config(srv, auth="xoauth2", password=TOKEN))
        self.assert_fetched(srv, r)
        lines = self.auth_lines(srv)
        self.assertEqual(len(lines), 1, lines)
        self.assertLessEqual(len(lines[0]) + 2, 255)
        self.assertEqual(lines[0].upper().split(" ")[:2], ["AUTH", "XOAUTH2"])
        self.assertEqual(lines[0].split(" ")[2], self.xoauth2_ir(TOKEN))
        self.assertEqual(srv.oauth[0]["user"], USER)

    def test_xoauth2_two_step(self):
        srv = self.server(sasl="XOAUTH2", token=LONG_TOKEN)
        conf = self.config(srv, auth="xoauth2", password=LONG_TOKEN)
        r = self.run_once(conf)
        self.assert_fetched(srv, r)
        lines = self.auth_lines(srv)
        self.assertEqual([lines[0].upper()] + lines[1:],
                         ["AUTH XOAUTH2", self.xoauth2_ir(LONG_TOKEN)])

    def test_xoauth2_two_step_token_of_a_few_kib(self):
        # Microsoft 365 access tokens run to a few KiB (SECRET_MAX allows
        # 16 KiB); the continuation line is not bound by the AUTH limit.
        srv = self.server(sasl="XOAUTH2", token=HUGE_TOKEN)
        conf = self.config(srv, auth="xoauth2",
                           password_file=self.secret_file(HUGE_TOKEN))
        r = self.run_once(conf)
        self.assert_fetched(srv, r)
        lines = self.auth_lines(srv)
        self.assertEqual(lines[1:], [self.xoauth2_ir(HUGE_TOKEN)])

    def test_xoauth2_failure_continuation(self):
        srv = self.server(sasl="XOAUTH2", token="the-right-token-xx")
        r = self.run_once(self.config(srv, auth="xoauth2", password=TOKEN))
        self.assertEqual(r.returncode, 77, r.stderr)
        # The JSON the server sent, decoded, so the user sees why.
        self.assertIn('"status": "401"', r.stderr)
        srv.sync()
        lines = self.auth_lines(srv)
        # RFC-less but documented by Google and Microsoft: an empty line
        # answers the error, then the server says -ERR.
        self.assertEqual(lines[1:], [""])
        self.assertNotIn("USER", srv.verbs())
        self.assertEqual(self.delivered(), [])

    def test_xoauth2_two_step_failure_continuation(self):
        srv = self.server(sasl="XOAUTH2", token="the-right-token-xx")
        conf = self.config(srv, auth="xoauth2", password=LONG_TOKEN)
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 77, r.stderr)
        self.assertIn('"status": "401"', r.stderr)
        srv.sync()
        lines = self.auth_lines(srv)
        self.assertEqual(lines[1:], [self.xoauth2_ir(LONG_TOKEN), ""])

    def test_xoauth2_token_from_password_command(self):
        srv = self.server(sasl="XOAUTH2", token="tok123")
        conf = self.config(srv, auth="xoauth2",
                           password_command="printf 'tok123\\n'")
        r = self.run_once(conf)
        self.assert_fetched(srv, r)
        self.assertEqual(srv.oauth[0]["auth"], "Bearer tok123")

    # ---- OAUTHBEARER ----

    def test_oauthbearer(self):
        srv = self.server(sasl="OAUTHBEARER", token=TOKEN)
        conf = self.config(srv, auth="oauthbearer", password=TOKEN)
        r = self.run_once(conf)
        self.assert_fetched(srv, r)
        lines = self.auth_lines(srv)
        self.assertEqual(len(lines), 1, lines)
        f = srv.oauth[0]
        self.assertEqual(f["gs2"], "n,a=%s," % USER)
        self.assertEqual(f["host"], "localhost")
        self.assertEqual(f["port"], str(srv.port))
        self.assertEqual(f["auth"], "Bearer " + TOKEN)

    def test_oauthbearer_failure_continuation(self):
        srv = self.server(sasl="OAUTHBEARER", token="the-right-token-xx")
        srv.oauth_error = {"status": "invalid_token", "scope": "pop"}
        conf = self.config(srv, auth="oauthbearer", password=TOKEN)
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 77, r.stderr)
        self.assertIn("invalid_token", r.stderr)
        srv.sync()
        lines = self.auth_lines(srv)
        # RFC 7628 3.2.3: the client answers the error with %x01.
        self.assertEqual(lines[1:], ["AQ=="])
        self.assertNotIn("USER", srv.verbs())

    def test_oauthbearer_token_from_password_command(self):
        srv = self.server(sasl="OAUTHBEARER", token="tok123")
        conf = self.config(srv, auth="oauthbearer",
                           password_command="printf 'tok123\\n'")
        r = self.run_once(conf)
        self.assert_fetched(srv, r)
        self.assertEqual(srv.oauth[0]["auth"], "Bearer tok123")

    # ---- EXTERNAL (client certificate) ----

    def test_external_with_client_certificate(self):
        ccert, ckey = self.ca.issue("alice", san=False)
        srv = self.server(sasl="EXTERNAL PLAIN", client_ca=self.ca.cert)
        conf = self.config(srv, auth="external", password=None,
                           client_cert=ccert, client_key=ckey)
        r = self.run_once(conf)
        self.assert_fetched(srv, r)
        self.assertEqual(self.auth_lines(srv)[0].upper(), "AUTH EXTERNAL =")
        self.assertEqual(dict(x[0] for x in srv.peer_certs[0]["subject"]),
                         {"commonName": "alice"})

    def test_client_certificate_required_but_missing(self):
        srv = self.server(client_ca=self.ca.cert)
        r = self.run_once(self.config(srv))
        self.assertEqual(r.returncode, 75, r.stderr)
        srv.sync()
        self.assert_no_credentials(srv)

    # ---- no secret in the trace (-d 2) ----

    def traced(self, srv, secret, masked, **keys):
        r = self.run_once(self.config(srv, **keys), debug=2)
        srv.sync()
        # The trace is on: lines go out and come back.
        self.assertIn("account=fake > CAPA", r.stderr)
        for m in masked:
            self.assertRegex(r.stderr, "(?i)account=fake > " + re.escape(m))
        self.assert_not_logged(r.stderr + r.stdout, srv, secret)
        return r

    def test_trace_hides_sasl_plain(self):
        srv = self.server()
        r = self.traced(srv, PASSWORD, ["AUTH PLAIN ********"])
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_trace_hides_user_pass(self):
        srv = self.server(sasl="")
        r = self.traced(srv, PASSWORD, ["USER alice", "PASS ********"])
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_trace_hides_apop_digest(self):
        srv = self.server(sasl="")
        r = self.traced(srv, PASSWORD, ["APOP alice ********"], auth="apop")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_trace_hides_auth_login(self):
        srv = self.server(sasl="LOGIN")
        r = self.traced(srv, PASSWORD, ["AUTH LOGIN", "********"],
                        auth="login")
        self.assertEqual(r.returncode, 0, r.stderr)
        # The user name is masked as well (both are SASL payloads).
        self.assertNotIn(base64.b64encode(USER.encode()).decode(), r.stderr)

    def test_trace_hides_xoauth2_token(self):
        srv = self.server(sasl="XOAUTH2", token=TOKEN)
        r = self.traced(srv, TOKEN, ["AUTH XOAUTH2 ********"],
                        auth="xoauth2", password=TOKEN)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_trace_hides_xoauth2_two_step_token(self):
        srv = self.server(sasl="XOAUTH2", token=LONG_TOKEN)
        r = self.traced(srv, LONG_TOKEN, ["AUTH XOAUTH2\n", "********"],
                        auth="xoauth2", password=LONG_TOKEN)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_trace_hides_failed_xoauth2_token(self):
        srv = self.server(sasl="XOAUTH2", token="the-right-token-xx")
        r = self.traced(srv, TOKEN, ["AUTH XOAUTH2 ********"],
                        auth="xoauth2", password=TOKEN)
        self.assertEqual(r.returncode, 77, r.stderr)

    def test_trace_hides_oauthbearer_token(self):
        srv = self.server(sasl="OAUTHBEARER", token=TOKEN)
        r = self.traced(srv, TOKEN, ["AUTH OAUTHBEARER ********"],
                        auth="oauthbearer", password=TOKEN)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_trace_hides_password_command_token(self):
        srv = self.server(sasl="XOAUTH2", token=TOKEN)
        r = self.traced(srv, TOKEN, ["AUTH XOAUTH2 ********"],
                        auth="xoauth2", password_command="echo " + TOKEN)
        self.assertEqual(r.returncode, 0, r.stderr)

    # ---- password sources ----

    def secret_file(self, secret, mode=0o600, name="pass"):
        path = os.path.join(self.dir, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secret + "\n")
        os.chmod(path, mode)
        return path

    def test_password_file(self):
        srv = self.server()
        r = self.run_once(self.config(
            srv, password_file=self.secret_file(PASSWORD)))
        self.assert_fetched(srv, r)

    def test_password_file_readable_by_others_refused(self):
        srv = self.server()
        path = self.secret_file(PASSWORD, 0o644)
        r = self.run_once(self.config(srv, password_file=path))
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn(path, r.stderr)
        self.assertIn("group or others", r.stderr)
        self.assertEqual(srv.sync(), 0)

    def test_inline_password_in_readable_config_refused(self):
        srv = self.server()
        r = self.run_once(self.config(srv, mode=0o644))
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn("password", r.stderr)
        self.assertEqual(srv.sync(), 0)

    def test_password_command_failing(self):
        srv = self.server()
        conf = self.config(srv, password_command="echo oops >&2; exit 3")
        r = self.run_once(conf)
        # A token helper may fail for a while: temporary, not config.
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("password_command exited with status 3", r.stderr)
        # Its stderr is logged, so the user sees why.
        self.assertIn("oops", r.stderr)
        self.assertEqual(srv.sync(), 0)

    def test_password_command_timeout(self):
        srv = self.server()
        pidfile = os.path.join(self.dir, "pid")
        conf = self.config(srv, timeout=2, password_command=(
            "echo $$ > %s; exec sleep 30" % pidfile))
        t0 = time.monotonic()
        r = self.run_once(conf)
        took = time.monotonic() - t0
        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertIn("password_command timed out after 2 s", r.stderr)
        self.assertLess(took, 15)
        self.assertEqual(srv.sync(), 0)
        # The command was killed, not left behind.
        with open(pidfile) as f:
            pid = int(f.read())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/stat" % pid) as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except FileNotFoundError:
                break
            if state in ("Z", "X"):
                break
            time.sleep(0.05)  # polling a condition, with a deadline
        else:
            self.fail("password_command still running")

    def test_password_credential(self):
        srv = self.server()
        creds = os.path.join(self.dir, "creds")
        os.mkdir(creds, 0o700)
        self.secret_file(PASSWORD, name="creds/fake")
        r = self.run_once(self.config(srv, password_credential="fake"),
                          env={"CREDENTIALS_DIRECTORY": creds})
        self.assert_fetched(srv, r)
        self.assertEqual(srv.verbs()[1], "AUTH")

    def test_password_credential_without_directory(self):
        srv = self.server()
        r = self.run_once(self.config(srv, password_credential="fake"))
        self.assertEqual(r.returncode, 78, r.stderr)
        self.assertIn("CREDENTIALS_DIRECTORY", r.stderr)
        self.assertEqual(srv.sync(), 0)


if __name__ == "__main__":
    main()
