"""Deterministic test messages: the same seed always gives the same bytes.

    messages = mailgen.generate(200, seed=7, huge=True)

Every message is bytes with LF line endings, as a Maildir holds it, and
carries what a POP3 client must get right:

- unique From, Subject and Message-ID, and a Date header;
- raw UTF-8 in the Subject (8-bit header bytes) on some messages;
- body lines starting with "." and "..", and a line that is exactly ".";
  these are dot-stuffed on the wire and must come back unstuffed;
- very long lines (20 KB and more without a line break);
- binary-ish bytes 0x01..0xFF, but never NUL and never CR (a CR would
  become a CRLF pair on the wire that the client rightly turns into LF);
- sizes: most 2-8 KB, some 50-200 KB, optionally one of several MB;
- the last line always ends in "\\n".

Run as a script it prints a summary: python3 tests/mailgen.py [COUNT]
"""

import random
import sys

WORDS = (
    "the quick brown fox jumps over lazy dog mail message server client "
    "delivery maildir fetch poll account invariant durable fsync rename "
    "pipeline window greeting capability response octets boundary header "
    "body line dot stuffing carriage return feed tab space unicode bytes"
).split()

# Subjects with raw UTF-8 (not RFC 2047 encoded): 8-bit header bytes.
UTF8_WORDS = ("Grüße", "café", "naïve", "Ærø", "東京", "Привет", "żółw",
              "smörgåsbord", "crème brûlée", "ünïcödé")

NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace",
         "heidi", "ivan", "judy", "mallory", "niaj", "olivia", "peggy")

# Binary-ish bytes: everything but NUL, CR and LF (LF only ends lines).
_BINARY_TABLE = bytes(b if b not in (0, 13, 10) else 0x7E for b in range(256))

SMALL = (2 * 1024, 8 * 1024)
MEDIUM = (50 * 1024, 200 * 1024)
HUGE = 3 * 1024 * 1024 + 12345
LONG_LINE = 20 * 1024


def _text_line(rnd, width):
    words = []
    length = 0
    while length < width:
        w = rnd.choice(WORDS)
        words.append(w)
        length += len(w) + 1
    return " ".join(words).encode()


def _binary_line(rnd, width):
    return rnd.randbytes(width).translate(_BINARY_TABLE)


def _special_lines(rnd, index):
    """The lines every POP3 client must get right, varied per message."""
    lines = [
        b".",                          # the terminator, as content
        b"..",                         # two dots, stuffed to three
        b".leading dot %d" % index,
        b"..two leading dots",
        b"...three",
        b". space after dot",
        b"",                           # empty line inside the body
        b"\t tab and space at start",
        b"trailing space ",
    ]
    rnd.shuffle(lines)
    return lines[:rnd.randint(3, len(lines))]


def _body(rnd, index, size, long_line):
    """A body of about SIZE bytes (at least), every line LF-terminated."""
    lines = _special_lines(rnd, index)
    if long_line:
        # One line of 20 KB or more with no break at all.
        lines.append(_text_line(rnd, LONG_LINE + rnd.randint(0, 4096)))
    total = sum(len(l) + 1 for l in lines)
    while total < size:
        r = rnd.random()
        if r < 0.15:
            line = _binary_line(rnd, rnd.randint(1, 200))
        elif r < 0.20:
            line = b"." + _text_line(rnd, rnd.randint(1, 70))
        else:
            line = _text_line(rnd, rnd.randint(0, 76))
        lines.append(line)
        total += len(line) + 1
    # Keep the special lines spread over the body, not only at its start.
    rnd.shuffle(lines)
    # A dot line at the very end is the hardest case for a terminator
    # check ("\n.\n" followed by the real "\r\n.\r\n").
    if index % 3 == 0:
        lines.append(b".")
    return b"\n".join(lines) + b"\n"


def _size(rnd):
    if rnd.random() < 0.12:
        return rnd.randint(*MEDIUM)
    return rnd.randint(*SMALL)


def message(rnd, index, size, tag="mailgen"):
    """One message of about SIZE bytes; INDEX makes its headers unique."""
    sender = rnd.choice(NAMES)
    subject = "%s message %d %s" % (tag, index,
                                    " ".join(rnd.sample(WORDS, 3)))
    if index % 2 == 1:
        subject += " " + rnd.choice(UTF8_WORDS)
    # A fixed base date plus the index: deterministic and unique.
    day = 1 + index % 28
    hour, minute, second = index // 3600 % 24, index // 60 % 60, index % 60
    headers = [
        b"Return-Path: <%s.%d@example.org>" % (sender.encode(), index),
        b"From: %s <%s.%d@example.org>" % (sender.capitalize().encode(),
                                           sender.encode(), index),
        b"To: test@example.net",
        b"Subject: " + subject.encode("utf-8"),
        b"Date: Mon, %02d Jan 2024 %02d:%02d:%02d +0000" % (
            day, hour, minute, second),
        b"Message-ID: <%s.%d.%08x@mailgen.example.org>" % (
            tag.encode(), index, rnd.getrandbits(32)),
        b"MIME-Version: 1.0",
        b"Content-Type: text/plain; charset=utf-8",
        b"Content-Transfer-Encoding: 8bit",
        b"X-Mailgen-Index: %d" % index,
    ]
    head = b"\n".join(headers) + b"\n\n"
    long_line = index % 5 == 2
    body = _body(rnd, index, max(0, size - len(head)), long_line)
    return head + body


def generate(count, seed=1, huge=False, tag="mailgen"):
    """COUNT messages; with HUGE, the middle one is several megabytes.

    TAG goes into Subject and Message-ID so that two calls with different
    tags give distinct messages (e.g. one per mailbox).
    """
    rnd = random.Random("%s/%d" % (tag, seed))
    out = []
    for i in range(count):
        size = HUGE if huge and i == count // 2 else _size(rnd)
        out.append(message(rnd, i, size, tag))
    return out


def subject(msg):
    """The Subject header of a generated (or delivered) message, decoded."""
    for line in msg.split(b"\n\n", 1)[0].split(b"\n"):
        if line.lower().startswith(b"subject: "):
            return line[9:].decode("utf-8", "replace")
    return None


def check(msg):
    """Raise AssertionError if MSG breaks a promise made above."""
    assert b"\0" not in msg, "NUL byte"
    assert b"\r" not in msg, "CR byte"
    assert msg.endswith(b"\n"), "last line not terminated"


def _main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    msgs = generate(count, huge=True)
    for m in msgs:
        check(m)
    sizes = sorted(len(m) for m in msgs)
    print("%d messages, %d bytes, smallest %d, median %d, largest %d"
          % (len(msgs), sum(sizes), sizes[0], sizes[len(sizes) // 2],
             sizes[-1]))
    print("lines '.': %d, long lines: %d, 8-bit subjects: %d" % (
        sum(1 for m in msgs if b"\n.\n" in m),
        sum(1 for m in msgs if any(len(l) > LONG_LINE
                                   for l in m.split(b"\n"))),
        sum(1 for m in msgs if any(b > 127 for b in subject(m).encode()))))
    print("deterministic:", msgs == generate(count, huge=True))


if __name__ == "__main__":
    _main()
