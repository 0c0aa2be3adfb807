"""OAuth2 tokens kept by the daemon, end to end: a local HTTPS token
endpoint (tests/tokenserver.py) issues and rotates tokens, the scripted
POP3 server (tests/fakepop.py) accepts exactly the access tokens it
issued, and popfetchd must refresh, rotate, store and fail as promised.
"""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import harness
from tokenserver import TokenServer

MESSAGES = ["From: a@example.org\r\nSubject: one\r\n\r\nfirst\r\n",
            "From: b@example.org\r\nSubject: two\r\n\r\nsecond\r\n"]
# popfetchd's refresh margin (OAUTH2_MARGIN in daemon/oauth2.h).
MARGIN = 300


class OAuth2Case(harness.FakePopCase):
    MESSAGES = MESSAGES

    def setUp(self):
        super().setUp()
        self.rt0 = "rt-first-" + uuid.uuid4().hex
        self.ts = TokenServer(self.cert, self.key, refresh_token=self.rt0)
        self.addCleanup(self.ts.stop)
        self.pop = self.server(sasl="XOAUTH2")
        self.pop.tokens = self.ts.issued
        self.token_file = os.path.join(self.dir, "fake.oauth2")
        self.write_tokens({"refresh_token": self.rt0})

    def write_tokens(self, tokens):
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                     0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(tokens, f)

    def tokens(self):
        with open(self.token_file) as f:
            return json.load(f)

    def oauth2(self, endpoint=None, **more):
        group = {"token_endpoint": endpoint or self.ts.url + "/token",
                 "client_id": "client-1", "ca_file": self.ca_file,
                 "token_file": self.token_file}
        group.update(more)
        return group

    def conf(self, **keys):
        keys.setdefault("oauth2", self.oauth2())
        return self.config(self.pop, password=None, **keys)

    def assert_no_secret(self, text):
        secrets = set(self.ts.issued) | set(self.ts.valid) | {self.rt0}
        for s in secrets:
            self.assertNotIn(s, text, "a token reached the log")


class Refresh(OAuth2Case):
    def test_refresh_rotation_and_reuse(self):
        conf = self.conf()
        r = self.run_once(conf, "-v")
        self.assert_exit(r, 0)
        self.assert_delivered_exactly([m.encode() for m in MESSAGES])
        grants = self.ts.grants("refresh_token")
        self.assertEqual(len(grants), 1)
        self.assertEqual(grants[0]["refresh_token"], self.rt0)
        self.assertEqual(grants[0]["client_id"], "client-1")
        self.assertNotIn("client_secret", grants[0])
        # The rotated token is stored, with the access token that logged
        # in; the old one is dead at the endpoint.
        stored = self.tokens()
        self.assertNotEqual(stored["refresh_token"], self.rt0)
        self.assertIn(stored["refresh_token"], self.ts.valid)
        self.assertNotIn(self.rt0, self.ts.valid)
        self.assertEqual([o["auth"] for o in self.pop.oauth],
                         ["Bearer " + stored["access_token"]])
        self.assertEqual(os.stat(self.token_file).st_mode & 0o777, 0o600)
        self.assertRegex(r.stderr, r"oauth2 token_file=\S+ refresh_age=")
        self.assertRegex(r.stderr, r"oauth2 token refreshed .*rotated=yes")

        # A second poll reuses the cached access token.
        self.pop.messages.append(b"Subject: three\r\n\r\nthird\r\n")
        self.pop.uids.append("uid-new")
        r = self.run_once(conf)
        self.assert_exit(r, 0)
        self.assertEqual(len(self.ts.grants("refresh_token")), 1)
        self.assertEqual(self.tokens(), stored)

    def test_oauthbearer_and_client_secret_file(self):
        secret = os.path.join(self.dir, "client.secret")
        fd = os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"s3cr3t&=+\n")
        os.close(fd)
        self.pop.sasl = "OAUTHBEARER"
        conf = self.conf(auth="oauthbearer", oauth2=self.oauth2(
            client_secret_file=secret, scope="pop offline_access"))
        r = self.run_once(conf)
        self.assert_exit(r, 0)
        g = self.ts.grants("refresh_token")[0]
        self.assertEqual(g["client_secret"], "s3cr3t&=+")
        self.assertEqual(g["scope"], "pop offline_access")
        self.assertEqual(self.pop.oauth[0]["mech"], "OAUTHBEARER")

    def test_expiry_margin(self):
        if not harness.has_test_hooks():
            self.skipTest("needs -Dtest_hooks=true (POPFETCHD_NOW)")
        conf = self.conf(keep=True)
        t0 = int(time.time())
        self.assert_exit(self.run_once(conf, now=t0), 0)
        self.assertEqual(len(self.ts.grants("refresh_token")), 1)
        expires = self.tokens()["access_expires"]
        self.assertEqual(expires, t0 + 3600)
        # Just outside the margin: the cached token serves.
        r = self.run_once(conf, now=expires - MARGIN - 5)
        self.assert_exit(r, 0)
        self.assertEqual(len(self.ts.grants("refresh_token")), 1)
        # Inside it: refreshed before the login.
        r = self.run_once(conf, now=expires - MARGIN + 5)
        self.assert_exit(r, 0)
        self.assertEqual(len(self.ts.grants("refresh_token")), 2)
        self.assertEqual(self.pop.oauth[-1]["auth"],
                         "Bearer " + self.tokens()["access_token"])

    def test_no_token_in_logs(self):
        conf = self.conf()
        r = self.run_once(conf, "-v", debug=2)
        self.assert_exit(r, 0)
        self.assertIn("AUTH", r.stderr)  # the trace is there
        self.assert_no_secret(r.stderr)
        # A failed refresh too.
        self.ts.mode = "revoked"
        self.write_tokens({"refresh_token": self.rt0,
                           "access_token": "at-stale-" + uuid.uuid4().hex,
                           "access_expires": 1})
        r = self.run_once(conf, "-v", debug=2)
        self.assert_exit(r, 77)
        self.assert_no_secret(r.stderr)
        self.assertNotIn("at-stale-", r.stderr)


class Failures(OAuth2Case):
    def test_invalid_grant_is_an_authentication_failure(self):
        self.ts.mode = "revoked"
        before = self.tokens()
        r = self.run_once(self.conf())
        self.assert_exit(r, 77)
        self.assertIn("invalid_grant", r.stderr)
        self.assertIn("run `popfetchd --authorize fake`", r.stderr)
        self.assert_nothing_delivered()
        self.pop.sync()
        self.assertEqual(self.pop.oauth, [], "logged in without a token")
        self.assertEqual(self.tokens(), before)

    def test_not_authorised_yet(self):
        os.unlink(self.token_file)
        r = self.run_once(self.conf())
        self.assert_exit(r, 77)
        self.assertIn("popfetchd --authorize fake", r.stderr)

    def test_endpoint_down_is_temporary(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        r = self.run_once(self.conf(oauth2=self.oauth2(
            endpoint="https://127.0.0.1:%d/token" % port)))
        self.assert_exit(r, 75)
        self.assertIn("token endpoint", r.stderr)
        self.assert_nothing_delivered()

    def test_endpoint_error_is_temporary(self):
        self.ts.mode = "error500"
        r = self.run_once(self.conf())
        self.assert_exit(r, 75)
        self.assertIn("HTTP 500", r.stderr)

    def test_malformed_json_is_temporary(self):
        self.ts.mode = "malformed"
        before = self.tokens()
        r = self.run_once(self.conf())
        self.assert_exit(r, 75)
        self.assertIn("not a JSON object", r.stderr)
        self.assertEqual(self.tokens(), before)
        self.assertNotIn("at-broken", r.stderr)

    def test_untrusted_endpoint_certificate(self):
        other = harness.CA(os.path.join(self.dir))
        r = self.run_once(self.conf(oauth2=self.oauth2(ca_file=other.cert)))
        self.assert_exit(r, 75)
        self.assertIn("certificate verification failed", r.stderr)
        self.assertEqual(self.ts.requests, [])

    def test_token_file_readable_by_others(self):
        os.chmod(self.token_file, 0o644)
        r = self.run_once(self.conf())
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("chmod 600", r.stderr)
        self.assertEqual(self.ts.requests, [])


class Durability(OAuth2Case):
    def test_crash_after_store_before_use(self):
        """Killed right after the rotated token is stored: no login has
        used the new access token yet, the file holds the new refresh
        token (the old one is dead), and the next run works."""
        if not harness.has_test_hooks():
            self.skipTest("needs -Dtest_hooks=true (POPFETCHD_CRASH_AT)")
        conf = self.conf()
        r = self.run_once(conf, env={"POPFETCHD_CRASH_AT": "1"})
        self.assertEqual(r.returncode, -9, r.stderr)
        self.assertIn("crash point 1: oauth2 token stored", r.stderr)
        self.pop.sync()
        self.assertEqual(self.pop.oauth, [])
        stored = self.tokens()
        self.assertNotEqual(stored["refresh_token"], self.rt0)
        self.assertNotIn(self.rt0, self.ts.valid)
        self.assertIn(stored["access_token"], self.ts.issued)
        r = self.run_once(conf)
        self.assert_exit(r, 0)
        self.assert_delivered_exactly([m.encode() for m in MESSAGES])

    def test_store_failure_keeps_tokens_in_memory(self):
        if not harness.has_test_hooks():
            self.skipTest("needs -Dtest_hooks=true (POPFETCHD_FAIL)")
        r = self.run_once(self.conf(), fail="oauth2 store write")
        self.assert_exit(r, 74)
        self.assertIn("cannot store the tokens", r.stderr)
        self.pop.sync()
        self.assertEqual(self.pop.oauth, [], "used a token not stored")


class Loop(OAuth2Case):
    def test_slow_endpoint_does_not_stall_other_accounts(self):
        plain_dir = os.path.join(self.dir, "Plain")
        plain = self.server(messages=[MESSAGES[0]])
        self.ts.delay = harness.WAIT
        accounts = [
            {"name": "fake", "host": "localhost", "port": self.pop.port,
             "tls": "implicit", "ca_file": self.ca_file, "user": self.USER,
             "oauth2": self.oauth2(), "maildir": self.maildir,
             "received_header": False, "timeout": 30},
            {"name": "plain", "host": "localhost", "port": plain.port,
             "tls": "implicit", "ca_file": self.ca_file, "user": self.USER,
             "password": self.PASSWORD, "maildir": plain_dir,
             "received_header": False, "timeout": 30},
        ]
        conf = harness.write_config(os.path.join(self.dir, "two.conf"),
                                    accounts,
                                    state_dir=os.path.join(self.dir, "st"))
        d = self.daemon(conf)
        # The endpoint holds the refresh of "fake"...
        self.assertTrue(self.ts.arrived.wait(harness.WAIT))
        d.wait_line(r"account=plain .*fetched=1")
        # ... while "plain" is polled again, and served.
        mark = d.mark()
        d.signal(signal.SIGUSR1)
        d.wait_line(r"account=plain .*fetched=0", since=mark)
        self.assertEqual(len(self.ts.requests), 1)
        self.assertEqual(d.grep(r"account=fake .*fetched="), [])
        self.ts.release.set()
        d.wait_line(r"account=fake .*fetched=2")
        d.stop()


class Status(OAuth2Case):
    def test_token_times_in_the_status(self):
        """The daemon keeps the refresh token's age (and the access
        token's expiry) in the account's status; accounts without OAuth2
        have none."""
        run = os.path.join(self.dir, "run")
        conf = self.conf()
        d = self.daemon(conf, ["-v"], env={"RUNTIME_DIRECTORY": run})
        d.wait_line(r"^started accounts=1 ")
        d.signal(signal.SIGUSR1)
        d.wait_line(r"account=fake .*fetched=2")
        env = dict(harness.clean_env(), RUNTIME_DIRECTORY=run)
        r = subprocess.run([harness.BINARY, "--status", "--json"], env=env,
                           capture_output=True, text=True,
                           timeout=harness.WAIT)
        self.assertEqual(r.returncode, 0, r.stderr)
        acct = json.loads(r.stdout)["accounts"][0]
        self.assertEqual(acct["name"], "fake")
        self.assertIsNotNone(acct["oauth2"], r.stdout)
        self.assertIsNotNone(acct["oauth2"]["refresh_token_obtained"])
        self.assertIsNotNone(acct["oauth2"]["access_token_expires"])
        self.assert_no_secret(r.stdout)
        r = subprocess.run([harness.BINARY, "--status", "-a", "fake"],
                           env=env, capture_output=True, text=True,
                           timeout=harness.WAIT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"oauth2 token +obtained \S+ \S+ \((now|\d+s ago)\)")
        d.stop()


class Authorize(OAuth2Case):
    def setUp(self):
        super().setUp()
        os.unlink(self.token_file)

    def authorize(self, conf, **kw):
        return subprocess.Popen(
            [harness.BINARY, "-c", conf, "--authorize", "fake"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=harness.clean_env(), **kw)

    def assert_authorised_and_fetching(self, conf):
        stored = self.tokens()
        self.assertIn(stored["refresh_token"], self.ts.valid)
        self.assertEqual(os.stat(self.token_file).st_mode & 0o777, 0o600)
        r = self.run_once(conf)
        self.assert_exit(r, 0)
        self.assert_delivered_exactly([m.encode() for m in MESSAGES])
        # The access token --authorize stored served the login.
        self.assertEqual(self.ts.grants("refresh_token"), [])

    def test_device_flow(self):
        conf = self.conf(oauth2=self.oauth2(
            device_endpoint=self.ts.url + "/device", flow="device",
            scope="pop offline_access"))
        p = self.authorize(conf)
        out, err = p.communicate(timeout=harness.WAIT)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn(self.ts.url + "/activate", out)
        self.assertIn("WDJB-MJHT", out)
        dev = [r for r in self.ts.requests if r["_path"] == "/device"]
        self.assertEqual(len(dev), 1)
        self.assertEqual(dev[0]["client_id"], "client-1")
        self.assertEqual(dev[0]["scope"], "pop offline_access")
        # Polled until the user approved: pending once, then the token.
        polls = self.ts.grants(
            "urn:ietf:params:oauth:grant-type:device_code")
        self.assertEqual(len(polls), 2)
        self.assertEqual(polls[0]["device_code"], "dc-1")
        self.assert_no_secret(out + err)
        self.assert_authorised_and_fetching(conf)

    def test_loopback_flow_with_pkce(self):
        conf = self.conf(oauth2=self.oauth2(
            authorization_endpoint=self.ts.url + "/authorize",
            flow="loopback", scope="https://mail.example/"))
        p = self.authorize(conf)
        self.addCleanup(p.kill)
        url = None
        for line in p.stdout:
            if line.strip().startswith(self.ts.url + "/authorize?"):
                url = line.strip()
                break
        self.assertIsNotNone(url, "no URL printed")
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        self.assertEqual(q["response_type"], "code")
        self.assertEqual(q["client_id"], "client-1")
        self.assertEqual(q["scope"], "https://mail.example/")
        self.assertEqual(q["code_challenge_method"], "S256")
        self.assertRegex(q["redirect_uri"], r"^http://127\.0\.0\.1:\d+/$")
        self.ts.codes["code-1"] = (q["code_challenge"], q["redirect_uri"])
        # A knock without the right state changes nothing.
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(q["redirect_uri"] + "?code=code-1&state=x",
                                   timeout=harness.WAIT)
        self.assertEqual(e.exception.code, 400)
        # The browser comes back.
        back = q["redirect_uri"] + "?" + urllib.parse.urlencode(
            {"code": "code-1", "state": q["state"]})
        with urllib.request.urlopen(back, timeout=harness.WAIT) as resp:
            self.assertEqual(resp.status, 200)
        out, err = p.communicate(timeout=harness.WAIT)
        self.assertEqual(p.returncode, 0, err)
        g = self.ts.grants("authorization_code")
        self.assertEqual(len(g), 1)
        self.assertEqual(g[0]["redirect_uri"], q["redirect_uri"])
        self.assertEqual(len(g[0]["code_verifier"]), 43)
        self.assert_authorised_and_fetching(conf)

    def test_refused_in_the_browser(self):
        conf = self.conf(oauth2=self.oauth2(
            authorization_endpoint=self.ts.url + "/authorize",
            flow="loopback"))
        p = self.authorize(conf)
        self.addCleanup(p.kill)
        url = next(l.strip() for l in p.stdout
                   if l.strip().startswith(self.ts.url))
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
        with self.assertRaises(urllib.error.HTTPError):
            urllib.request.urlopen(
                q["redirect_uri"] + "?error=access_denied&state=" +
                q["state"], timeout=harness.WAIT)
        out, err = p.communicate(timeout=harness.WAIT)
        self.assertEqual(p.returncode, 77, err)
        self.assertIn("access_denied", err)
        self.assertFalse(os.path.exists(self.token_file))


if __name__ == "__main__":
    harness.main()
