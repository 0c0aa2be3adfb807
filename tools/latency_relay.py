#!/usr/bin/env python3
"""A TCP relay that adds latency without limiting throughput.

    python3 tools/latency_relay.py LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS
    python3 tools/latency_relay.py --measure [MB] [--delay MS]

Listens on 127.0.0.1:LISTEN_PORT (0: any free port, printed at start) and
relays every connection to TARGET_HOST:TARGET_PORT. Each chunk read from
either side is written to the other side DELAY_MS after it arrived: a
round trip costs 2 x DELAY_MS. Chunks wait in a queue with their due time,
so reading goes on while earlier chunks wait: the delay adds latency, not
a limit on throughput (apart from the relay's own speed; --measure sends
MB megabytes through it and prints that). Order is kept, half-closes are
passed on after the same delay, and the bytes are not looked at, so TLS
passes through unchanged.

The TCP handshake is charged too (unless --no-handshake): the client's
connect() completes at once, so the relay opens the upstream connection
1.5 round trips later, when a real server's accept() would return, and
holds the client's first bytes until then. The first reply thus reaches
the client two round trips after connect(), as over a real path.

Back-pressure: a direction stops reading when more than HIGH_WATER bytes
wait for their due time (resuming below LOW_WATER) or when the socket it
writes to has WRITE_HIGH bytes unsent, so a slow reader slows the sender
instead of filling memory.

As a module (tools/bench.py uses it):

    relay = RelayThread("127.0.0.1", 995, delay_ms=10).start()
    ... connect to 127.0.0.1:relay.port ...
    relay.stop()
"""

import argparse
import asyncio
import collections
import os
import signal
import socket
import subprocess
import sys
import threading
import time

# Reads of up to this many bytes (asyncio's own default for sockets).
READ_SIZE = 256 * 1024
# Per direction: stop reading above this many bytes waiting for their due
# time, resume below the low mark. 20 MiB covers 10 ms at 2 GB/s, more
# than the relay moves.
HIGH_WATER = 20 * 1024 * 1024
LOW_WATER = 4 * 1024 * 1024
# The writing socket's buffer in the relay: above the high mark, reading
# from the other side stops until the transport says it is drained.
WRITE_HIGH = 4 * 1024 * 1024
WRITE_LOW = 1024 * 1024
# The loop's timers wake up late by up to a millisecond (epoll rounds its
# timeout up to whole milliseconds): a chunk goes when it is due within
# this much, and timers are set this much early, so that the error is
# centred on zero instead of adding about a millisecond per hop.
SLACK = 0.0005

_EOF = None  # queued instead of data: pass the half-close on


class _Line:
    """One direction of a connection: a delay line from SRC to DST."""

    def __init__(self, conn, src, dst):
        self.conn = conn
        self.src = src
        self.dst = dst
        self.queue = collections.deque()  # (due, bytes or _EOF)
        self.waiting = 0                  # bytes queued here
        self.timer = None
        self.eof_queued = False
        self.finished = False             # EOF passed on, or DST is gone
        self.full = False                 # too much waiting in the queue
        self.blocked = False              # DST's write buffer is full
        self.paused = False               # SRC reading paused by us

    def push(self, data):
        if self.finished:
            return  # nowhere to write it any more
        loop = self.conn.loop
        due = max(loop.time() + self.conn.delay, self.conn.not_before)
        if data is _EOF:
            if self.eof_queued:
                return
            self.eof_queued = True
        else:
            self.waiting += len(data)
        self.queue.append((due, data))
        if self.timer is None:
            self.timer = loop.call_at(due - SLACK, self._release)
        self._flow()

    def _release(self):
        """Write every chunk that is due; wait for the next one."""
        self.timer = None
        if self.finished:
            self.queue.clear()
            return
        if not self.dst.connected():
            return  # _Connection._upstream_done calls again
        now = self.conn.loop.time() + SLACK
        while self.queue and self.queue[0][0] <= now:
            _, data = self.queue.popleft()
            if data is _EOF:
                self._finish_eof()
                return
            self.dst.transport.write(data)
            self.waiting -= len(data)
        if self.queue:
            self.timer = self.conn.loop.call_at(self.queue[0][0] - SLACK,
                                                self._release)
        self._flow()

    def _finish_eof(self):
        self.queue.clear()
        self.finished = True
        t = self.dst.transport
        if t is not None and not t.is_closing():
            try:
                t.write_eof()
            except OSError:
                # The peer is gone already (reset); its connection_lost
                # follows.
                t.close()
        self.conn.check_done()

    def set_blocked(self, blocked):
        """DST's transport paused (or resumed) writing."""
        self.blocked = blocked
        self._flow()

    def _flow(self):
        """Pause or resume reading SRC.

        While the queue is above the low mark a timer is pending, and the
        transport answers every pause_writing with a resume_writing, so
        whatever paused reading also resumes it.
        """
        if self.waiting > HIGH_WATER:
            self.full = True
        elif self.waiting < LOW_WATER:
            self.full = False
        want = (self.full or self.blocked) and not self.finished
        t = self.src.transport
        if want == self.paused or t is None or t.is_closing():
            return
        self.paused = want
        if want:
            t.pause_reading()
        else:
            t.resume_reading()

    def drop(self):
        """DST is gone: nothing more can be written."""
        self.finished = True
        self.queue.clear()
        self.waiting = 0
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._flow()


class _Side(asyncio.Protocol):
    """One socket of a relayed connection (the client's or the server's)."""

    def __init__(self, conn):
        self.conn = conn
        self.transport = None
        self.outbound = None  # the _Line carrying what this side sends
        self.inbound = None   # the _Line writing to this side
        self.lost = False

    def connected(self):
        return self.transport is not None and not self.lost

    def connection_made(self, transport):
        self.transport = transport
        transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data):
        self.outbound.push(data)

    def eof_received(self):
        self.outbound.push(_EOF)
        return True  # keep the transport open to write the other way

    def pause_writing(self):
        self.inbound.set_blocked(True)

    def resume_writing(self):
        self.inbound.set_blocked(False)

    def connection_lost(self, exc):
        self.lost = True
        if self.outbound is not None:
            self.outbound.push(_EOF)
        if self.inbound is not None:
            self.inbound.drop()
        self.conn.check_done()


class _Connection:
    """A client connection and its upstream twin."""

    def __init__(self, relay):
        self.relay = relay
        self.loop = relay.loop
        self.delay = relay.delay
        self.client = _Side(self)
        self.server = _Side(self)
        self.up = _Line(self, self.client, self.server)
        self.down = _Line(self, self.server, self.client)
        self.client.outbound = self.server.inbound = self.up
        self.server.outbound = self.client.inbound = self.down
        # Client bytes are not written before the upstream connection
        # exists; with the handshake charged, not before it "would".
        self.not_before = 0.0
        self.closed = False

    def client_protocol(self):
        now = self.loop.time()
        if self.relay.handshake:
            wait = 3 * self.delay
            self.not_before = now + wait
        else:
            wait = 0
        self.loop.call_at(now + wait, self._connect_upstream)
        self.relay.connections.add(self)
        return self.client

    def _connect_upstream(self):
        if self.closed or self.client.lost:
            self.up.drop()
            self.check_done()
            return
        task = self.loop.create_task(self.loop.create_connection(
            lambda: self.server, self.relay.target_host,
            self.relay.target_port))
        task.add_done_callback(self._upstream_done)

    def _upstream_done(self, task):
        if task.cancelled() or task.exception() is not None:
            self.close()
            return
        if self.closed:
            self.server.transport.close()
            return
        # Bytes that came due while connecting go now.
        if self.up.timer is None and self.up.queue:
            self.up._release()

    def check_done(self):
        """Close both sockets once neither direction has anything left."""
        if self.up.finished and self.down.finished:
            self.close()

    def close(self):
        if self.closed:
            return
        self.closed = True
        for side in (self.client, self.server):
            if side.transport is not None:
                side.transport.close()
        for line in (self.up, self.down):
            line.drop()
        self.relay.connections.discard(self)


class Relay:
    """The listening side; runs on LOOP (create it on the loop's thread)."""

    def __init__(self, target_host, target_port, delay_ms, handshake=True):
        self.target_host = target_host
        self.target_port = target_port
        self.delay = delay_ms / 1000.0
        self.handshake = handshake
        self.loop = None
        self.server = None
        self.port = None
        self.connections = set()

    async def start(self, listen_host="127.0.0.1", listen_port=0):
        self.loop = asyncio.get_running_loop()
        self.server = await self.loop.create_server(
            lambda: _Connection(self).client_protocol(), listen_host,
            listen_port, reuse_address=True, backlog=1024)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self):
        self.server.close()
        for conn in list(self.connections):
            conn.close()
        await self.server.wait_closed()


class RelayThread:
    """A Relay on its own event loop in a background thread."""

    def __init__(self, target_host, target_port, delay_ms, listen_port=0,
                 listen_host="127.0.0.1", handshake=True):
        self.relay = Relay(target_host, target_port, delay_ms, handshake)
        self.listen = (listen_host, listen_port)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name="latency-relay")
        self.port = None
        self._ready = threading.Event()
        self._error = None

    def _run(self):
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.relay.start(*self.listen))
            self.port = self.relay.port
        except BaseException as e:  # reported by start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.relay.stop())
        self.loop.close()

    def start(self):
        self.thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self):
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# --- throughput measurement ----------------------------------------------

def _sink(listener, result):
    """Accept one connection, count its bytes until EOF, then close."""
    conn, _ = listener.accept()
    total = 0
    buf = bytearray(1 << 20)
    with conn:
        while True:
            n = conn.recv_into(buf)
            if n == 0:
                break
            total += n
    result["bytes"] = total
    result["end"] = time.monotonic()


def measure(megabytes=100, delay_ms=0.0):
    """Seconds and MB/s to send MEGABYTES through a relay process.

    The relay runs as a child process (this file), so that the sending
    and counting threads here do not compete with it for the GIL.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    target = listener.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "0", "127.0.0.1",
         str(target), str(delay_ms)],
        stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()  # "listening on 127.0.0.1:PORT ..."
        port = int(line.split()[2].rsplit(":", 1)[1])
        result = {}
        sink = threading.Thread(target=_sink, args=(listener, result))
        sink.start()
        chunk = os.urandom(1 << 20)
        total = megabytes * len(chunk)
        start = time.monotonic()
        with socket.create_connection(("127.0.0.1", port)) as s:
            for _ in range(megabytes):
                s.sendall(chunk)
            s.shutdown(socket.SHUT_WR)
            sink.join()
        secs = result["end"] - start
        if result["bytes"] != total:
            raise RuntimeError("relay passed %d of %d bytes"
                               % (result["bytes"], total))
        return secs, total / secs / 1e6
    finally:
        proc.terminate()
        proc.wait()
        listener.close()


def _serve(args):
    async def run():
        relay = Relay(args.target_host, args.target_port, args.delay_ms,
                      handshake=not args.no_handshake)
        await relay.start("127.0.0.1", args.listen_port)
        print("listening on 127.0.0.1:%d -> %s:%d, %g ms each way"
              % (relay.port, args.target_host, args.target_port,
                 args.delay_ms), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await relay.stop()

    asyncio.run(run())


def main():
    ap = argparse.ArgumentParser(
        description="TCP relay adding DELAY_MS each way.",
        usage="%(prog)s LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS "
              "[--no-handshake]\n       %(prog)s --measure [MB] "
              "[--delay MS]")
    ap.add_argument("--measure", type=int, nargs="?", const=100,
                    metavar="MB", help="send MB megabytes through a relay "
                    "to a local sink and print the throughput")
    ap.add_argument("--delay", type=float, default=0.0, metavar="MS",
                    help="delay for --measure (default 0)")
    ap.add_argument("--no-handshake", action="store_true",
                    help="do not charge the TCP handshake's round trip")
    ap.add_argument("listen_port", type=int, nargs="?",
                    metavar="LISTEN_PORT", help="on 127.0.0.1; 0: any")
    ap.add_argument("target_host", nargs="?", metavar="TARGET_HOST")
    ap.add_argument("target_port", type=int, nargs="?",
                    metavar="TARGET_PORT")
    ap.add_argument("delay_ms", type=float, nargs="?", metavar="DELAY_MS",
                    help="added to each direction")
    args = ap.parse_args()
    if args.measure is not None:
        secs, rate = measure(args.measure, args.delay)
        print("%d MB through the relay (%g ms each way) in %.2f s: "
              "%.0f MB/s" % (args.measure, args.delay, secs, rate))
        return
    if args.delay_ms is None:
        ap.error("LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS are needed")
    _serve(args)


if __name__ == "__main__":
    main()
