"""The client key is a credential: refused when group or others can read
it, as a password file is.

Run: python3 tests/test_key_file.py --binary build/popfetchd
"""

import os
import signal

from fakepop import make_cert
from harness import FakePopCase, main

MESSAGES = [b"From: a@example.org\nSubject: one\n\nbody one\n"]


class KeyFileTest(FakePopCase):
    MESSAGES = MESSAGES

    def setUp(self):
        super().setUp()
        # The server asks for no client certificate: one that is sent
        # does no harm, so a good key file lets the poll succeed.
        self.srv = self.server()
        self.ccert, self.ckey = make_cert(self.dir, name="client", ip=False)

    def key_config(self):
        return self.config(self.srv, client_cert=self.ccert,
                           client_key=self.ckey)

    def test_private_key_accepted(self):
        os.chmod(self.ckey, 0o600)
        r = self.run_once(self.key_config())
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.srv.messages, [])

    def test_key_readable_by_group_refused(self):
        for mode in (0o640, 0o604):
            os.chmod(self.ckey, mode)
            r = self.run_once(self.key_config())
            self.assertEqual(r.returncode, 78, r.stderr)
            errors = [l for l in r.stderr.splitlines() if "error=" in l]
            self.assertEqual(len(errors), 1, r.stderr)
            self.assertIn("account=fake", errors[0])
            self.assertIn("client key %s is accessible by group or others"
                          % self.ckey, errors[0])
            # Refused before connecting: nothing sent, nothing taken.
            self.assertEqual(self.srv.commands, [])
            self.assertEqual(len(self.srv.messages), 1)

    def test_key_made_readable_while_running(self):
        """The daemon keeps TLS set-ups between polls: a key whose mode
        changed is looked at again, and refused."""
        os.chmod(self.ckey, 0o600)
        d = self.daemon(self.key_config())
        d.wait_line(r"started accounts=")
        d.signal(signal.SIGUSR1)
        self.assertIn("result=ok", d.wait_line(r"account=fake .*result="))
        os.chmod(self.ckey, 0o644)
        mark = d.mark()
        self.srv.messages.append(MESSAGES[0])
        self.srv.uids.append("uid-new")
        d.signal(signal.SIGUSR1)
        line = d.wait_line(r"account=fake .*(error=|result=)", mark)
        self.assertIn("client key %s is accessible by group or others"
                      % self.ckey, line)
        self.assertEqual(len(self.srv.messages), 1)


if __name__ == "__main__":
    main()
