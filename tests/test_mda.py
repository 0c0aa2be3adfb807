"""Integration tests of the MDA target (target = "mda").

The POP3 side is a throwaway Dovecot (tests/dovecot.py); the MDA is a
small shell script the test writes, whose first argument says how it
behaves, or Dovecot's own dovecot-lda delivering into a second mailbox.

Run: python3 tests/test_mda.py --binary build/popfetchd
     (or set POPFETCHD). KEEP_TMP=1 leaves the temporary folders behind.
"""

import os
import re
import stat

import mailgen
from harness import DovecotCase, FakePopCase, main, multiset, poll_until
from test_targets import run_measured, under_asan

PASSWORD = DovecotCase.PASSWORD

# The test MDA: $1 is what it does, $2 where a delivered copy goes, the
# rest (placeholders expanded) is written beside it as its argv.
SCRIPT = r"""#!/bin/sh
mode=$1
out=$2
shift 2
case $mode in
ok)
    f=$(mktemp "$out/tmp.XXXXXX") || exit 75
    cat > "$f" || exit 75
    printf '%s\n' "$@" > "$f.args"
    env > "$f.env"
    ls -l /proc/$$/fd > "$f.fds"
    mv "$f" "$out/msg.${f##*.}"
    exit 0 ;;
temp)
    cat > /dev/null
    echo "mailbox locked, try later"
    exit 75 ;;
perm)
    cat > /dev/null
    echo "no such user" >&2
    exit 67 ;;
signal)
    cat > /dev/null
    kill -KILL $$ ;;
noisy)
    cat > /dev/null
    printf 'esc\033[31m\001 tab\t' >&2
    head -c 10000 /dev/zero | tr '\0' 'e' >&2
    exit 0 ;;
half)
    head -c 1000 > /dev/null
    exit 0 ;;
slow)
    sleep 1
    f=$(mktemp "$out/tmp.XXXXXX") || exit 75
    cat > "$f" || exit 75
    mv "$f" "$out/msg.${f##*.}"
    exit 0 ;;
stall)
    echo $$ > "$out/pid"
    while [ ! -e "$out/go" ]; do sleep 0.05; done
    f=$(mktemp "$out/tmp.XXXXXX") || exit 75
    cat > "$f" || exit 75
    mv "$f" "$out/msg.${f##*.}"
    exit 0 ;;
hang)
    cat > /dev/null
    sleep 300 &
    echo $! > "$out/sleeper"
    wait
    exit 0 ;;
esac
exit 70
"""


def process_alive(pid):
    """Whether PID runs (a zombie counts as gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class ScriptMixin:
    """SCRIPT as self.script; what it delivers goes to self.out."""

    def setUp(self):
        super().setUp()
        self.script = os.path.join(self.dir, "mda.sh")
        with open(self.script, "w") as f:
            f.write(SCRIPT)
        os.chmod(self.script, stat.S_IRWXU)
        self.out = os.path.join(self.dir, "out")
        os.mkdir(self.out)

    def stored(self):
        out = []
        for name in sorted(os.listdir(self.out)):
            if re.fullmatch(r"msg\.\w+", name):
                with open(os.path.join(self.out, name), "rb") as f:
                    out.append(f.read())
        return out


class MdaCase(ScriptMixin, DovecotCase):

    def pop_dovecot(self, msgs):
        dc = self.dovecot()
        dc.add_user("alice", PASSWORD)
        dc.deliver_many("alice", msgs)
        return dc

    def mda_conf(self, dc, mode, **keys):
        keys.setdefault("mda", '%s %s "%s" %%u "%%a x" %%r 100%%%%' % (
            self.script, mode, self.out))
        acct = self.account(dc, target="mda", **keys)
        acct["maildir"] = None
        return self.config(acct)


class TestScriptMda(MdaCase):

    def test_exit0_delivers_byte_identical(self):
        """Exit 0: each message reached the command's stdin byte for
        byte (bar the X-Popfetchd-Id field), one process each, with the
        placeholders expanded per word and a minimal environment; the
        POP3 mailbox is emptied."""
        msgs = mailgen.generate(12, seed=41, huge=True, tag="mda")
        dc = self.pop_dovecot(msgs)
        conf = self.mda_conf(dc, "ok", recipient="bob")

        r = self.run_once(conf, env={"MDA_CANARY": "1"})

        self.assert_exit(r, 0)
        got = self.stored()
        self.assertEqual(len(got), len(msgs))
        plain = [re.sub(rb"\AX-Popfetchd-Id: <[0-9a-f]{32}@popfetchd>\n",
                        b"", m) for m in got]
        self.assertEqual(multiset(plain), multiset(msgs))
        self.assertEqual(dc.server_messages("alice"), [])
        self.assert_summary(r, "alice", 12)
        name = [n for n in os.listdir(self.out) if n.endswith(".args")][0]
        with open(os.path.join(self.out, name)) as f:
            self.assertEqual(f.read(), "alice\nalice x\nbob\n100%\n")
        with open(os.path.join(self.out, name[:-5] + ".env")) as f:
            env = dict(line.split("=", 1) for line in f.read().splitlines())
        self.assertEqual(env["PATH"], "/usr/bin:/bin")
        self.assertEqual(env["POPFETCHD_ACCOUNT"], "alice")
        self.assertEqual(env["POPFETCHD_USER"], "alice")
        self.assertEqual(env["POPFETCHD_RECIPIENT"], "bob")
        self.assertNotIn("MDA_CANARY", env)
        # The shell adds PWD (and may add SHLVL, _) itself.
        self.assertLessEqual(set(env), {
            "PATH", "HOME", "POPFETCHD_ACCOUNT", "POPFETCHD_USER",
            "POPFETCHD_RECIPIENT", "PWD", "SHLVL", "_"})
        # Its descriptors: 0, 1 and 2; the shell keeps one on the script
        # and, while it redirects, a copy of its stderr's pipe.
        with open(os.path.join(self.out, name[:-5] + ".fds")) as f:
            fds = dict(re.findall(r" (\d+) -> (.*)$", f.read(), re.M))
        self.assertEqual({"0", "1", "2"} - set(fds), set())
        extra = {n: t for n, t in fds.items() if int(n) > 2 and
                 t != fds["2"] and not t.endswith("/mda.sh")}
        self.assertEqual(extra, {}, "descriptors inherited")

    def test_exit75_temporary_no_strike(self):
        """Exit 75: a temporary failure; every message stays on the POP3
        server without a strike, and the command's output is logged."""
        msgs = mailgen.generate(3, seed=42, tag="mda-75")
        dc = self.pop_dovecot(msgs)

        r = self.run_once(self.mda_conf(dc, "temp"))

        self.assert_exit(r, 75)
        self.assertEqual(len(re.findall(
            r"temporary failure from the target: mda: exit 75", r.stderr)),
            3, r.stderr)
        self.assertIn("output: mailbox locked, try later", r.stderr)
        self.assertNotIn("strike=", r.stderr)
        self.assertEqual(multiset(dc.server_messages("alice")),
                         multiset(msgs))

    def test_exit67_permanent_strike(self):
        """Exit 67: a permanent failure; the messages stay on the server
        with a strike each, counted again at the next poll."""
        msgs = mailgen.generate(3, seed=43, tag="mda-67")
        dc = self.pop_dovecot(msgs)
        conf = self.mda_conf(dc, "perm")

        r = self.run_once(conf)

        self.assert_exit(r, 75)
        self.assertEqual(len(re.findall(
            r"permanent failure from the target: mda: exit 67", r.stderr)),
            3, r.stderr)
        self.assertEqual(len(re.findall(r"strike=1\b", r.stderr)), 3)
        self.assertIn("output: no such user", r.stderr)
        r = self.run_once(conf)
        self.assertEqual(len(re.findall(r"strike=2\b", r.stderr)), 3,
                         r.stderr)
        self.assertEqual(multiset(dc.server_messages("alice")),
                         multiset(msgs))

    def test_signal_temporary(self):
        """Killed by a signal: temporary, no strike, nothing deleted."""
        msgs = mailgen.generate(2, seed=44, tag="mda-sig")
        dc = self.pop_dovecot(msgs)

        r = self.run_once(self.mda_conf(dc, "signal"))

        self.assert_exit(r, 75)
        self.assertEqual(len(re.findall(
            r"temporary failure from the target: mda: killed by signal 9",
            r.stderr)), 2, r.stderr)
        self.assertNotIn("strike=", r.stderr)
        self.assertEqual(multiset(dc.server_messages("alice")),
                         multiset(msgs))

    def test_noisy_output_bounded_and_escaped(self):
        """Kilobytes on stderr: the log keeps the first KiB, escaped
        (no raw control byte reaches it), says how much it left out,
        and the message counts as delivered."""
        msgs = mailgen.generate(1, seed=45, tag="mda-noisy")
        dc = self.pop_dovecot(msgs)

        r = self.run_once(self.mda_conf(dc, "noisy"))

        self.assert_exit(r, 0)
        line = [x for x in r.stderr.splitlines() if "output: esc" in x]
        self.assertEqual(len(line), 1, r.stderr[-3000:])
        self.assertIn(r"output: esc\x1b[31m\x01 tab\x09eee", line[0])
        self.assertLess(len(line[0]), 1024 + 200)
        self.assertNotIn("\x1b", r.stderr)
        self.assertNotIn("\x01", r.stderr)
        m = re.search(r"(\d+) more bytes of output not logged", r.stderr)
        self.assertIsNotNone(m, r.stderr[-3000:])
        self.assertEqual(int(m.group(1)), 10000 + 14 - 1024)
        self.assertEqual(dc.server_messages("alice"), [])

    def test_half_read_fails_that_message_only(self):
        """A command that reads 1000 bytes of a 300 KB message and exits
        0: no deadlock; that message fails permanently (it never got
        whole), stays on the server; a small message after it that fits
        the pipe is not the daemon's problem either."""
        big = b"Subject: big\n\n" + b"0123456789abcdef\n" * 18000
        dc = self.pop_dovecot([big])

        r = self.run_once(self.mda_conf(dc, "half"), timeout=60)

        self.assert_exit(r, 75)
        self.assertRegex(r.stderr, r"permanent failure from the target: "
                         r"mda: exit 0 without reading the whole message")
        self.assertEqual(dc.server_messages("alice"), [big])

    def test_hang_killed_after_timeout(self):
        """A command that does not exit within the account's timeout:
        killed with its whole process group (its own child too), a
        temporary failure; the message stays on the server."""
        msgs = mailgen.generate(1, seed=47, tag="mda-hang")
        dc = self.pop_dovecot(msgs)
        conf = self.mda_conf(dc, "hang", timeout=2)

        r = self.run_once(conf, timeout=60)

        self.assert_exit(r, 75)
        self.assertIn("temporary failure from the target: mda: no progress "
                      "within 2 s, killed", r.stderr)
        self.assertNotIn("strike=", r.stderr)
        self.assertEqual(dc.server_messages("alice"), msgs)
        with open(os.path.join(self.out, "sleeper")) as f:
            pid = int(f.read())
        # Killed with the group, and reaped by init once orphaned.
        poll_until(lambda: not process_alive(pid),
                   "end of the command's child")

    def test_dies_with_popfetchd(self):
        """popfetchd killed while a message streams to the command: the
        command dies with it, instead of taking its closed input for the
        message's end and delivering a part."""
        big = b"Subject: big\n\n" + b"0123456789abcdef\n" * 18000
        dc = self.pop_dovecot([big])
        conf = self.mda_conf(dc, "stall")
        d = self.daemon(conf, args=("--once",))
        self.addCleanup(d.kill)
        pidfile = os.path.join(self.out, "pid")
        poll_until(lambda: os.path.exists(pidfile) and
                   os.path.getsize(pidfile) > 0, "the command's start")
        with open(pidfile) as f:
            pid = int(f.read())

        d.kill()
        # Let it go on: were it alive, it would now read to the end of
        # file and deliver what it got.
        open(os.path.join(self.out, "go"), "w").close()

        poll_until(lambda: not process_alive(pid), "the command's end")
        self.assertEqual(self.stored(), [])
        self.assertEqual(dc.server_messages("alice"), [big])

    def test_slow_command_memory_bounded(self):
        """A command slow to start reading slows the POP3 side down
        instead of filling memory: peak memory with a 20 MiB message
        stays within 2 MiB of that with a 1 MiB one, and the bytes
        arrive whole."""
        if under_asan():
            self.skipTest("peak RSS is AddressSanitizer's quarantine there")
        peaks = {}
        for mib in (1, 20):
            body = b"".join(b"line %07d of the big one\n" % i
                            for i in range(mib * 1024 * 1024 // 26))
            msg = b"Subject: big %d\n\n" % mib + body
            dc = self.pop_dovecot([msg])
            status, peaks[mib], err = run_measured(
                self.mda_conf(dc, "slow"), self.dir)
            self.assertEqual(status, 0, err)
            got = self.stored()
            self.assertEqual([untraced(m) for m in got], [msg])
            for name in os.listdir(self.out):
                os.unlink(os.path.join(self.out, name))
            dc.cleanup()
        self.assertLess(peaks[20] - peaks[1], 2 * 1024,
                        "peak RSS (KiB): %r" % peaks)

    def test_unknown_placeholder_refused(self):
        """An unknown %x or an open quote: refused at load, file:line;
        target = "mda" without mda too."""
        dc = self.dovecot()
        for cmd, why in (("/bin/cat %x", "unknown placeholder"),
                         ('/bin/cat "open', "double quote is not closed")):
            conf = self.mda_conf(dc, "ok", mda=cmd)
            r = self.run_popfetchd("-c", conf, "--check-config")
            self.assertNotEqual(r.returncode, 0)
            self.assertRegex(r.stderr, r"popfetchd\.conf:\d+: .*mda .*"
                             + why)
        conf = self.mda_conf(dc, "ok", mda=None)
        r = self.run_popfetchd("-c", conf, "--check-config")
        self.assertNotEqual(r.returncode, 0)
        self.assertRegex(r.stderr, r"popfetchd\.conf:\d+: .*target = "
                         r"\"mda\" needs mda")

    def test_check_config_not_executable(self):
        """--check-config: a command that is not executable is named."""
        dc = self.dovecot()
        conf = self.mda_conf(dc, "ok", mda="/nonexistent/mda -d %u")
        r = self.run_popfetchd("-c", conf, "--check-config")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("/nonexistent/mda", r.stderr)
        conf = self.mda_conf(dc, "ok")
        r = self.run_popfetchd("-c", conf, "--check-config")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("mda", r.stderr)
        # The listing says where the account's mail goes.
        self.assertRegex(r.stdout, r"alice .* mda=\"\S+/mda\.sh ok ")


def untraced(msg):
    return re.sub(rb"\AX-Popfetchd-Id: <[0-9a-f]{32}@popfetchd>\n", b"", msg)


class TestPopFaults(ScriptMixin, FakePopCase):
    """The POP3 side breaking while a message streams to the command."""

    MESSAGES = [b"From: f%d@example.org\nSubject: fault %d\n\n%s\n"
                % (i, i, b"\n".join(b".line %d" % j for j in range(400)))
                for i in range(4)]

    def test_dropped_mid_message_nothing_partial(self):
        """The POP3 connection drops inside message 3: its command is
        killed before its input ends, so no part of it is delivered;
        nothing is deleted without QUIT; the next poll delivers the
        rest, each message once."""
        srv = self.server()
        srv.drop_in_retr = (3, 2000)
        conf = self.config(srv, maildir=None, target="mda",
                           mda="%s ok %s" % (self.script, self.out))

        r = self.run_once(conf)

        self.assertEqual(r.returncode, 75, r.stderr)
        self.assertEqual(sorted(untraced(m) for m in self.stored()),
                         sorted(self.MESSAGES[:2]))
        self.assertEqual(srv.messages, self.MESSAGES)
        srv.drop_in_retr = None
        r = self.run_once(conf)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(sorted(untraced(m) for m in self.stored()),
                         sorted(self.MESSAGES))
        self.assertEqual(srv.messages, [])


LDA = "/usr/lib/dovecot/dovecot-lda"


class TestDovecotLda(MdaCase):

    def test_dovecot_lda_delivers(self):
        """dovecot-lda as the MDA: the messages arrive in bob's mailbox
        as Dovecot stores them, and leave alice's."""
        if not os.access(LDA, os.X_OK):
            self.skipTest("no dovecot-lda")
        msgs = mailgen.generate(5, seed=46, tag="mda-lda")
        dc = self.pop_dovecot(msgs)
        dc.add_user("bob", "unused-" + os.urandom(4).hex())
        conf = self.mda_conf(
            dc, "", recipient="bob",
            mda="%s -c %s -d %%r" % (LDA, dc.conf_path))

        r = self.run_once(conf)

        self.assert_exit(r, 0)
        got = dc.mailbox_messages("bob")
        self.assertEqual(len(got), len(msgs))
        self.assertEqual(multiset(
            re.sub(rb"\A(?:[A-Za-z-]+: [^\n]*\n(?:[ \t][^\n]*\n)*)*?"
                   rb"X-Popfetchd-Id: [^\n]*\n", b"", m) for m in got),
            multiset(msgs))
        self.assertEqual(dc.server_messages("alice"), [])


if __name__ == "__main__":
    main()
