#!/usr/bin/env python3
"""--serverinfo before the login works: against tests/fakepop.py with no
usable secret it shows the greeting, the capabilities on both sides of
STLS, TLS, the certificate chain and the server key's pin, sends no
credential and ends well; the pin it prints, pasted into tls_pins, lets a
poll through, and another key's pin stops it.

    python3 tests/test_serverinfo.py --binary build/popfetchd
"""
import base64
import hashlib
import os
import re
import shutil
import subprocess

from fakepop import make_cert
from harness import FakePopCase, main, tempdir

MESSAGES = [b"From: a@example.org\r\nSubject: one\r\n\r\nbody\r\n"]
# What a client says to log in, whatever the mechanism.
LOGIN_VERBS = {"USER", "PASS", "APOP", "AUTH"}


def spki_pin(cert):
    """CERT's key pin, "sha256/BASE64", computed with openssl(1)."""
    pub = subprocess.run(["openssl", "x509", "-noout", "-pubkey", "-in", cert],
                         capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"],
                         input=pub, capture_output=True, check=True).stdout
    return "sha256/" + base64.b64encode(hashlib.sha256(der).digest()).decode()


def cert_field(cert, what):
    """openssl x509 -WHAT of CERT, the part after "=" ("subject=...")."""
    out = subprocess.run(["openssl", "x509", "-noout", "-" + what,
                          "-nameopt", "compat", "-in", cert],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split("=", 1)[1]


class ServerInfo(FakePopCase):
    MESSAGES = MESSAGES

    def serverinfo(self, conf):
        return self.run_popfetchd("-c", conf, "--serverinfo", "fake")

    def no_secret_config(self, srv):
        return self.config(srv, password_file=os.path.join(
            self.dir, "no-such-password"))

    def test_no_secret_starttls(self):
        """STLS: capabilities before and after TLS, the chain and pin; no
        credential sent, QUIT after CAPA, exit 0."""
        srv = self.server(tls="starttls")
        r = self.serverinfo(self.no_secret_config(srv))
        self.assert_exit(r, 0)
        out = r.stdout
        self.assertRegex(out, r"(?m)^greeting: +fakepop ready")
        self.assertRegex(out, r"(?m)^capability: +STLS \(before TLS\)$")
        self.assertRegex(out, r"(?m)^tls: +TLSv1\.[23] \S+$")
        self.assertIn('pin:          tls_pins = ["%s"];\n'
                      % spki_pin(self.cert), out)
        # Self-signed: a chain of one, its own issuer, valid now.
        self.assertIn("certificate:  #0 /CN=localhost\n"
                      "  issuer:     /CN=localhost\n", out)
        self.assertEqual(cert_field(self.cert, "subject"), "/CN=localhost")
        self.assertNotIn("certificate:  #1", out)
        valid = re.search(r"(?m)^  valid: +(\S+ \S+) UTC to (\S+ \S+) UTC$",
                          out)
        self.assertTrue(valid, out)
        self.assertLess(valid.group(1), valid.group(2))
        # After TLS: the capabilities again, unmarked, without STLS.
        after = out[out.index("tls:"):]
        self.assertRegex(after, r"(?m)^capability: +UIDL$")
        self.assertNotIn("STLS", after)
        self.assertRegex(out, r"(?m)^login: +skipped, no secret: .*"
                              r"no-such-password")
        self.assertNotIn("logged in:", out)
        self.assertNotIn("mailbox:", out)
        srv.sync()
        self.assertFalse(LOGIN_VERBS & set(srv.verbs()), srv.commands)
        self.assertEqual(srv.verbs(), ["CAPA", "STLS", "CAPA", "QUIT"])
        self.assert_nothing_delivered()

    def test_no_secret_implicit(self):
        """Implicit TLS: the pin and chain come before the greeting."""
        srv = self.server()
        r = self.serverinfo(self.no_secret_config(srv))
        self.assert_exit(r, 0)
        self.assertLess(r.stdout.index("pin:"), r.stdout.index("greeting:"))
        self.assertNotIn("(before TLS)", r.stdout)
        self.assertIn("login:        skipped", r.stdout)
        srv.sync()
        self.assertEqual(srv.verbs(), ["CAPA", "QUIT"])

    def test_with_secret_logs_in(self):
        """With a secret the login and STAT follow, as before."""
        srv = self.server()
        r = self.serverinfo(self.config(srv))
        self.assert_exit(r, 0)
        self.assertRegex(r.stdout, r"(?m)^logged in: +\S")
        self.assertIn("mailbox:      1 messages", r.stdout)
        self.assertNotIn("login:        skipped", r.stdout)
        srv.sync()
        self.assertIn("QUIT", srv.verbs())
        self.assertNotIn("RETR", srv.verbs())
        self.assertNotIn("DELE", srv.verbs())

    def test_printed_pin_works_in_tls_pins(self):
        """The printed line, pasted into the account, lets the poll
        through; another key's pin stops it before any credential."""
        srv = self.server()
        out = self.serverinfo(self.no_secret_config(srv)).stdout
        line = re.search(r"(?m)^pin: +(tls_pins = .*;)$", out)
        self.assertTrue(line, out)
        conf = self.config(srv)
        with open(conf) as f:
            text = f.read()
        # Pasted as printed, into the account's block.
        text = text.replace('    name = "fake";\n',
                            '    name = "fake";\n    %s\n' % line.group(1))
        with open(conf, "w") as f:
            f.write(text)
        r = self.run_once(conf)
        self.assert_exit(r, 0)
        self.assert_delivered_exactly(MESSAGES)

        other = tempdir()
        self.addCleanup(shutil.rmtree, other, True)
        wrong = spki_pin(make_cert(other)[0])
        self.assertNotEqual(wrong, spki_pin(self.cert))
        srv2 = self.server()
        r = self.run_once(self.config(srv2, tls_pins=[wrong]))
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("pin mismatch", r.stderr)
        self.assertIn(spki_pin(self.cert), r.stderr)
        srv2.sync()
        self.assertFalse(LOGIN_VERBS & set(srv2.verbs()), srv2.commands)
        self.assertNotIn("RETR", srv2.verbs())


if __name__ == "__main__":
    main()
