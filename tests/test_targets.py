"""Integration tests of the delivery targets against a real Dovecot.

One throwaway Dovecot (tests/dovecot.py, lmtp=True) serves both sides:
POP3 for the mailbox popfetchd fetches from ("alice"), and LMTP with
Pigeonhole Sieve on a Unix socket for the mailbox it delivers to ("bob").
What Dovecot stored is read back from bob's Maildir and with doveadm.

Run: python3 tests/test_targets.py --binary build/popfetchd
     (or set POPFETCHD). KEEP_TMP=1 leaves the temporary folders behind.
"""

import os
import re
import socket
import subprocess
import threading

import mailgen
from harness import DovecotCase, main, multiset

PASSWORD = DovecotCase.PASSWORD

# What Dovecot's LMTP puts before a message it stores (Return-Path,
# Delivered-To, its Received), then popfetchd's identifier field.
TRACE = re.compile(
    rb"\AReturn-Path: <[^\n]*>\nDelivered-To: [^\n]*\n"
    rb"Received: [^\n]*\n(?:[ \t][^\n]*\n)*"
    rb"X-Popfetchd-Id: <[0-9a-f]{32}@popfetchd>\n")

# The Sieve script the manual page ships: a second copy of a message that
# popfetchd hands over twice (a crash between the target's 250 and the
# state's commit) is dropped.
DUPLICATE_SIEVE = """require ["duplicate"];
if duplicate :header "X-Popfetchd-Id" {
  discard;
  stop;
}
"""


def untraced(msg):
    """MSG without the trace and identifier fields at its top."""
    m = TRACE.match(msg)
    assert m, "no trace fields at the top of %r" % msg[:300]
    return msg[m.end():]


def popfetchd_ids(msgs):
    """The X-Popfetchd-Id values of MSGS, in order."""
    out = []
    for m in msgs:
        found = re.search(rb"^X-Popfetchd-Id: (\S+)$", m, re.M)
        out.append(found.group(1) if found else None)
    return out


class TargetCase(DovecotCase):

    def lmtp_dovecot(self):
        dc = self.dovecot(lmtp=True)
        dc.add_user("alice", PASSWORD)
        dc.add_user("bob", "unused-" + os.urandom(4).hex())
        return dc

    def lmtp_account(self, dc, **keys):
        keys.setdefault("target", "lmtp")
        keys.setdefault("lmtp", dc.lmtp_socket)
        keys.setdefault("recipient", "bob")
        acct = self.account(dc, **keys)
        acct["maildir"] = None
        return acct

    def assert_stored(self, dc, sent, mailbox="INBOX"):
        got = dc.mailbox_messages("bob", mailbox)
        self.assertEqual(len(got), len(sent), "messages in bob's %s"
                         % mailbox)
        self.assertEqual(multiset(untraced(m) for m in got), multiset(sent),
                         "messages altered on the way")
        return got


class TestLmtp(TargetCase):

    def test_delivers_byte_identical_and_deletes(self):
        """Messages (dot lines, 20 KB lines, 8-bit bytes, one of several
        MB) reach bob through LMTP unchanged but for the trace fields;
        each carries one X-Popfetchd-Id, distinct per message and the
        same for the same UID on every run; the POP3 mailbox is emptied."""
        dc = self.lmtp_dovecot()
        msgs = mailgen.generate(70, seed=31, huge=True, tag="lmtp")
        dc.deliver_many("alice", msgs)
        conf = self.config(self.lmtp_account(dc))

        r = self.run_once(conf)

        self.assert_exit(r, 0)
        got = self.assert_stored(dc, msgs)
        ids = popfetchd_ids(got)
        self.assertNotIn(None, ids)
        self.assertEqual(len(set(ids)), len(ids))
        self.assertEqual(dc.server_messages("alice"), [])
        self.assert_summary(r, "alice", 70)
        self.assertFalse(os.path.exists(self.maildir),
                         "a Maildir was made for an LMTP account")

    def test_sieve_files_into_folder(self):
        """A Sieve rule at the target files one message into a folder."""
        dc = self.lmtp_dovecot()
        dc.set_sieve("bob", 'require ["fileinto", "mailbox"];\n'
                     'if header :contains "subject" "message 2 " {\n'
                     '  fileinto :create "Filed"; stop;\n}\n')
        msgs = mailgen.generate(4, seed=32, tag="lmtp-sieve")
        dc.deliver_many("alice", msgs)
        conf = self.config(self.lmtp_account(dc))

        r = self.run_once(conf)

        self.assert_exit(r, 0)
        filed = [m for m in msgs if "message 2 " in mailgen.subject(m)]
        self.assertEqual(len(filed), 1)
        self.assert_stored(dc, filed, "Filed")
        self.assert_stored(dc, [m for m in msgs if m not in filed])
        self.assertEqual(dc.server_messages("alice"), [])


class TestFolders(TargetCase):

    def test_folder_visible_to_dovecot(self):
        """folder = ".Lists.Entwürfe" delivers into a Maildir++ folder
        that Dovecot lists under that name (modified UTF-7 on disk)."""
        dc = self.lmtp_dovecot()
        msgs = mailgen.generate(3, seed=33, tag="folder")
        dc.deliver_many("alice", msgs)
        root = dc.maildir("bob")
        conf = self.config(self.account(dc, maildir=root,
                                        folder=".Lists.Entwürfe"))

        r = self.run_once(conf)

        self.assert_exit(r, 0)
        folder = os.path.join(root, ".Lists.Entw&APw-rfe")
        self.assertTrue(os.path.isfile(os.path.join(folder,
                                                    "maildirfolder")))
        self.assert_delivered_exactly(msgs, folder)
        # popfetchd ran as root here; in service it runs as the owner.
        dc.own_tree(root)
        listed = dc.doveadm("mailbox", "list", "-u", "bob")
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertIn("Lists.Entwürfe", listed.stdout.splitlines())
        status = dc.doveadm("mailbox", "status", "-u", "bob", "messages",
                            "Lists.Entwürfe")
        self.assertEqual(status.returncode, 0, status.stderr)
        self.assertIn("messages=3", status.stdout)

    def test_bad_folder_names_refused(self):
        """Names the Maildir++ rules cannot hold are configuration
        errors, with file:line."""
        dc = self.lmtp_dovecot()
        for bad in ("Lists", ".a..b", ".a/b", ".x\x01"):
            conf = self.config(self.account(dc, folder=bad))
            r = self.run_popfetchd("--check-config", "-c", conf)
            self.assert_exit(r, 78)
            self.assertRegex(r.stderr, r"popfetchd\.conf:\d+: .*folder")


if __name__ == "__main__":
    main()
