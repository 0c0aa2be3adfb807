"""The popfetchd demo: two mailboxes on a throwaway Dovecot, one fetch.

Starts a Dovecot of its own on 127.0.0.1 (tests/dovecot.py) with two users,
"alice" (40 generated messages) and "bob" (25), writes a popfetchd
configuration with one account each (alice over implicit TLS, bob over
STLS), runs `popfetchd -c CONF --once -d 0`, shows its summary lines, then
what arrived in each Maildir and what is left on the server.

    python3 tools/demo.py [--binary build/popfetchd] [--out demo-out]

Everything popfetchd wrote (configuration, password files, the server's
CA certificate, state, Maildirs) stays in the output folder, and the
configuration still passes --check-config after the server is gone; the
Dovecot folder is removed when the server stops. It ends with the times
of its parts (counted from --started, the moment tools/demo.sh began) and
the next steps.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The shared Python helpers (see tests/harness.py).
sys.path.insert(0, os.path.join(ROOT, "tests"))
import mailgen  # noqa: E402
from dovecot import Dovecot  # noqa: E402

USERS = {"alice": 40, "bob": 25}
RUN_TIMEOUT = 120


def write_config(out, dc, passwords):
    """A popfetchd configuration for both users, their passwords in files
    and the server's CA certificate beside it; returns its path."""
    ca = os.path.join(out, "demo-ca.pem")
    shutil.copyfile(dc.ca_file, ca)
    accounts = []
    for user, tls in (("alice", "implicit"), ("bob", "starttls")):
        port = dc.ssl_port if tls == "implicit" else dc.port
        pwfile = os.path.join(out, user + ".pass")
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(passwords[user] + "\n")
        accounts.append("""  {
    name = "%(user)s";
    host = "127.0.0.1";
    port = %(port)d;
    tls = "%(tls)s";
    ca_file = "%(ca)s";
    user = "%(user)s";
    password_file = "%(pwfile)s";
    maildir = "%(out)s/Maildir-%(user)s";
    keep = false;
    received_header = true;
  }""" % {"user": user, "port": port, "tls": tls, "ca": ca,
          "pwfile": pwfile, "out": out})
    conf = os.path.join(out, "popfetchd.conf")
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write('# Written by tools/demo.py\nstate_dir = "%s/state";\n'
                'accounts = (\n%s\n);\n' % (out, ",\n".join(accounts)))
    return conf


def show_maildir(out, user):
    new = os.path.join(out, "Maildir-" + user, "new")
    names = sorted(os.listdir(new)) if os.path.isdir(new) else []
    print("%s: %d messages in %s" % (user, len(names), new))
    for name in names[:5]:
        with open(os.path.join(new, name), "rb") as f:
            subject = mailgen.subject(f.read(64 * 1024))
        print("    Subject: %s" % subject)
    if len(names) > 5:
        print("    ...")


def next_steps(binary, conf):
    """The configuration checked again with the server gone, and where a
    user goes from here."""
    r = subprocess.run([binary, "-c", conf, "--check-config"],
                       stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, errors="replace", timeout=RUN_TIMEOUT)
    print("\n$ %s -c %s --check-config" % (binary, os.path.relpath(conf)))
    for line in (r.stdout + r.stderr).splitlines():
        print("    " + line)
    print("""
Next:
  - your own accounts: copy conf/popfetchd.conf.example (every key, with
    comments) to ~/.config/popfetchd/popfetchd.conf, or see
    man -l man/popfetchd.conf.5
  - coming from mpop, fetchmail or getmail6: popfetchd --convert and
    --import-uids (README, "Switching from mpop, fetchmail or getmail6")
  - as a service: README.md, "Install as a service"
  - everything the tests check: bash tools/test.sh""")
    return r.returncode


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", default=os.path.join(ROOT, "build",
                                                     "popfetchd"))
    ap.add_argument("--out", default=os.path.join(ROOT, "demo-out"))
    ap.add_argument("--started", type=float, default=None,
                    help="when the demo began (seconds since the epoch), "
                    "so that its time includes installing and building")
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out, mode=0o700)
    print("demo output folder: %s" % out)

    now = time.time()
    before = now - args.started if args.started is not None else 0.0
    started = time.monotonic()
    print("starting a throwaway Dovecot with sample mail ...")
    with Dovecot(prefix="popfetchd-demo-dovecot-") as dc:
        passwords = {u: "demo-%s-%s" % (u, os.urandom(4).hex())
                     for u in USERS}
        for user, count in USERS.items():
            dc.add_user(user, passwords[user])
            dc.deliver_many(user, mailgen.generate(count, seed=2024,
                                                   tag=user))
        print("Dovecot %s: pop3 (STLS) 127.0.0.1:%d, pop3s 127.0.0.1:%d"
              % (dc.dir, dc.port, dc.ssl_port))
        for user in USERS:
            print("    %s: %d messages on the server"
                  % (user, len(dc.server_messages(user))))

        conf = write_config(out, dc, passwords)
        cmd = [args.binary, "-c", conf, "--once", "-d", "0"]
        print("\n$ %s" % " ".join(cmd))
        t0 = time.monotonic()
        setup = t0 - started
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, errors="replace",
                           timeout=RUN_TIMEOUT)
        secs = time.monotonic() - t0
        summary = [l for l in r.stderr.splitlines() if "fetched=" in l]
        for line in summary or r.stderr.splitlines():
            print("    " + line)
        print("exit status %d after %.2f s" % (r.returncode, secs))
        if r.returncode != 0 and summary:
            print(r.stderr)

        print()
        for user in USERS:
            show_maildir(out, user)
        print()
        for user in USERS:
            print("%s: %d messages left on the server"
                  % (user, len(dc.server_messages(user))))
    total = before + time.monotonic() - started
    parts = "Dovecot and sample mail %.1f s, fetch %.2f s" % (setup, secs)
    if args.started is not None:
        parts = "packages and build %.1f s, %s" % (before, parts)
    print("\nserver stopped; the demo took %.1f s (%s)" % (total, parts))
    checked = next_steps(args.binary, conf)
    return r.returncode or checked


if __name__ == "__main__":
    sys.exit(main())
