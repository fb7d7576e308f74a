"""The load client: many SSE or WebSocket connections in one process, minimal parsing.

Run by the runner pinned to its own core. It opens raw asyncio connections (no HTTP
or WebSocket library: the request is written by hand and the stream is never
decoded), and finds each message by its ``S<seq> T<time>`` marker with one regular
expression per read (see :mod:`benchmarks.common`), so the same code reads SSE
events, HTTP chunks and unmasked WebSocket frames. Per connection it checks that
sequence numbers arrive in order, each once; across connections it counts
deliveries, losses and publish-to-receive latency, and its own CPU time, so the
report can show that the client was not the bottleneck.

Commands (JSON lines on stdin; answers are ``@@`` lines on stdout):

``{"cmd": "connect", "n": N, "concurrency": C, "timeout": T}``
    open ``N`` more connections, at most ``C`` handshakes at a time
    -> ``{"connected": ok, "failed": f, "errors": {...}, "seconds": s}``
``{"cmd": "measure", "first": s, "count": m, "latency": "all"|"last", "timeout": T, "quiet": q}``
    -> ``{"armed": true}`` at once, then ``{"result": {...}}`` when every open
    connection has received messages ``s .. s+m-1``, or no message came for ``q``
    seconds, or ``T`` seconds passed. ``latency``: every message's, or only the last
    of each read (enough under full load, and cheaper).
``{"cmd": "close"}`` -> ``{"closed_all": n}``: close every connection on purpose.
``{"cmd": "stats"}`` -> ``{"open": n, "closed": c}`` (``c``: closed by the server)
``{"cmd": "quit"}`` or stdin closing: close every connection and exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections import Counter
from typing import Any

from benchmarks.common import PAYLOAD_PATTERN, SPLIT_TAIL, commands, emit, raise_nofile

FIND = PAYLOAD_PATTERN.findall


class Measurement:
    """The counters of one measured phase."""

    def __init__(self, first: int, count: int, all_latencies: bool, connections: int) -> None:
        self.first = first
        self.end = first + count
        self.count = count
        self.all_latencies = all_latencies
        self.connections = connections  # open when the phase started
        self.completed = 0  # connections that received every message
        self.closed = 0  # connections that closed before that
        self.delivered = 0
        self.stale = 0  # messages of an earlier phase
        self.disordered = 0  # duplicates or out-of-order messages
        self.t0: int | None = None  # publish time of the first message
        self.last_receive = 0  # monotonic ns of the last arrival
        self.latencies: list[int] = []  # ns
        self.reach: dict[bytes, int] = {}  # seq -> latency of its last arrival (ns)
        self.finished = asyncio.Event()

    def check_finished(self) -> None:
        if self.completed + self.closed >= self.connections:
            self.finished.set()


#: One receive buffer shared by every connection: the event loop reads into it and
#: each read is parsed before the next, so no read allocates anything.
BUFFER = bytearray(256 * 1024)
VIEW = memoryview(BUFFER)


class Connection(asyncio.BufferedProtocol):
    """One subscriber connection; parsing is inlined for speed."""

    __slots__ = ("client", "counted", "done", "next", "ready", "status", "tail", "transport")

    def __init__(self, client: Client) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.status = 0  # the HTTP status once the response line arrived
        # What of the last read must be read again with the next one: the start of a
        # marker cut by the end of the read, or a status line not yet complete.
        self.tail = b""
        self.ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.next = 0  # the next sequence number expected in this phase
        self.counted = 0
        self.done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.client.request)  # type: ignore[attr-defined]

    def get_buffer(self, sizehint: int) -> memoryview:
        tail = self.tail
        if tail:
            BUFFER[: len(tail)] = tail
        return VIEW[len(tail) :]

    def buffer_updated(self, nbytes: int) -> None:
        end = len(self.tail) + nbytes
        if not self.status:
            line_end = BUFFER.find(b"\r\n", 0, end)
            if line_end < 0:
                self.tail = bytes(BUFFER[: min(end, 4096)])
                return
            parts = bytes(BUFFER[:line_end]).split(b" ", 2)
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 999
            if not self.ready.done():
                self.ready.set_result(self.status)
        found = FIND(VIEW[:end])
        # Keep what may be the start of a marker cut by the end of this read.
        cut = BUFFER.rfind(b"S", max(0, end - SPLIT_TAIL), end)
        self.tail = bytes(BUFFER[cut:end]) if cut >= 0 else b""
        if not found:
            return
        phase = self.client.phase
        if phase is None:
            return
        now = time.monotonic_ns()
        phase.last_receive = now
        n = len(found)
        first = int(found[0][0])
        last = int(found[-1][0]) if n > 1 else first
        if first == self.next and last == first + n - 1 and last < phase.end:
            # The usual case: in order, nothing missing, all in this phase.
            if first == phase.first and phase.t0 is None:
                phase.t0 = int(found[0][1])
            self.next = last + 1
            self.counted += n
            phase.delivered += n
        else:
            n = self.slow_path(found, phase)
        if n:
            if phase.all_latencies:
                latencies = [now - int(t) for _, t in found]
                phase.latencies.extend(latencies)
                # The last arrival of each message so far: when it had reached everyone.
                reach = phase.reach
                for (seq, _), latency in zip(found, latencies, strict=True):
                    reach[seq] = latency
            else:
                phase.latencies.append(now - int(found[-1][1]))
        if not self.done and self.next >= phase.end:
            self.done = True
            phase.completed += 1
            phase.check_finished()

    def slow_path(self, found: list[tuple[bytes, bytes]], phase: Measurement) -> int:
        """Message by message: stale ones, gaps, duplicates. Returns how many counted."""
        counted = 0
        for seq_text, time_text in found:
            seq = int(seq_text)
            if seq < phase.first or seq >= phase.end:
                phase.stale += 1
            elif seq >= self.next:  # a gap is counted as lost at the end
                if seq == phase.first and phase.t0 is None:
                    phase.t0 = int(time_text)
                self.next = seq + 1
                counted += 1
            else:
                phase.disordered += 1
        self.counted += counted
        phase.delivered += counted
        return counted

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_result(0)  # closed before a response: "HTTP 0"
        self.client.on_lost(self)


class Client:
    """Every connection of this process, and the phase being measured."""

    def __init__(self, host: str, port: int, path: str, transport: str) -> None:
        self.host, self.port = host, port
        if transport == "ws":
            self.request = (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
            self.ok_status = 101
        else:
            self.request = (
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Accept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
            ).encode()
            self.ok_status = 200
        self.open: set[Connection] = set()
        self.closed = 0
        self.phase: Measurement | None = None

    def on_lost(self, connection: Connection) -> None:
        if connection in self.open:
            self.open.discard(connection)
            self.closed += 1
            phase = self.phase
            if phase is not None and not connection.done:
                phase.closed += 1
                phase.check_finished()

    def close_all(self) -> int:
        """Close every connection on purpose (not counted as closed by the server)."""
        connections, self.open = self.open, set()
        for connection in connections:
            if connection.transport is not None:
                connection.transport.close()
        return len(connections)

    async def connect(self, n: int, concurrency: int, timeout: float) -> dict[str, Any]:
        """Open ``n`` connections, ``concurrency`` handshakes at a time."""
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(concurrency)
        errors: Counter[str] = Counter()
        start = time.monotonic()

        async def one() -> None:
            async with gate:
                connection = None
                try:
                    _, connection = await asyncio.wait_for(
                        loop.create_connection(lambda: Connection(self), self.host, self.port),
                        timeout,
                    )
                    status = await asyncio.wait_for(asyncio.shield(connection.ready), timeout)
                except (OSError, TimeoutError) as exc:
                    errors[type(exc).__name__] += 1
                    if connection is not None and connection.transport is not None:
                        connection.transport.abort()
                    return
                if status != self.ok_status:
                    errors[f"HTTP {status}"] += 1
                    if connection.transport is not None:
                        connection.transport.abort()
                    return
                self.open.add(connection)

        await asyncio.gather(*(one() for _ in range(n)))
        return {
            "connected": n - sum(errors.values()),
            "failed": sum(errors.values()),
            "errors": dict(errors),
            "seconds": round(time.monotonic() - start, 3),
        }

    async def measure(self, command: dict[str, Any]) -> dict[str, Any]:
        """Measure one phase (see the module docstring)."""
        phase = Measurement(
            command["first"], command["count"], command.get("latency") == "all", len(self.open)
        )
        for connection in self.open:
            connection.next, connection.counted, connection.done = phase.first, 0, False
        self.phase = phase
        phase.check_finished()  # at once if there is no connection to wait for
        cpu0, wall0 = time.process_time(), time.monotonic()
        emit({"armed": True})
        deadline = wall0 + command.get("timeout", 60.0)
        quiet = command.get("quiet", 2.0) * 1e9
        while not phase.finished.is_set():
            now = time.monotonic()
            if now > deadline:
                break
            if phase.last_receive and time.monotonic_ns() - phase.last_receive > quiet:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(phase.finished.wait(), 0.05)
        cpu = time.process_time() - cpu0
        self.phase = None
        return self.summary(phase, cpu, time.monotonic() - wall0)

    @staticmethod
    def summary(phase: Measurement, cpu: float, wall: float) -> dict[str, Any]:
        expected = phase.count * phase.connections
        active = (phase.last_receive - phase.t0) / 1e9 if phase.t0 and phase.last_receive else 0.0
        latencies = sorted(phase.latencies)
        reach = sorted(phase.reach.values())

        def percentile(p: float) -> float | None:
            if not latencies:
                return None
            return round(latencies[min(len(latencies) - 1, int(p * len(latencies)))] / 1e6, 3)

        return {
            "connections": phase.connections,
            "expected": expected,
            "delivered": phase.delivered,
            "lost": expected - phase.delivered,
            "closed": phase.closed,
            "stale": phase.stale,
            "disordered": phase.disordered,
            "complete": phase.completed == phase.connections,
            "active_seconds": round(active, 4),
            "events_per_s": round(phase.delivered / active) if active > 0 else 0,
            "latency_ms": {
                "samples": len(latencies),
                "p50": percentile(0.50),
                "p90": percentile(0.90),
                "p99": percentile(0.99),
                "max": round(latencies[-1] / 1e6, 3) if latencies else None,
            },
            # Per message: the time until the last subscriber had it (fixed-rate phase).
            "fanout_ms": {
                "messages": len(reach),
                "p50": round(reach[len(reach) // 2] / 1e6, 3) if reach else None,
                "max": round(reach[-1] / 1e6, 3) if reach else None,
                "slowest": [round(x / 1e6, 1) for x in reach[-5:][::-1]],
            },
            "cpu_seconds": round(cpu, 4),
            # CPU share while messages flowed (the client idles before and after).
            "cpu_percent": round(100 * cpu / active, 1) if active > 0 else None,
            "wall_seconds": round(wall, 3),
        }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--path", default="/events")
    parser.add_argument("--transport", choices=["sse", "ws"], default="sse")
    options = parser.parse_args()
    raise_nofile()
    client = Client(options.host, options.port, options.path, options.transport)
    loop = asyncio.get_running_loop()
    emit({"ready": True, "loop": type(loop).__module__.split(".")[0]})
    measuring: asyncio.Task[None] | None = None

    async def measure_and_report(command: dict[str, Any]) -> None:
        emit({"result": await client.measure(command)})

    try:
        async for command in commands():
            name = command.get("cmd")
            if name == "connect":
                emit(
                    await client.connect(
                        command["n"], command.get("concurrency", 200), command.get("timeout", 10.0)
                    )
                )
            elif name == "measure":
                # Measured in a task, so a later command (say "quit") is still read.
                measuring = asyncio.ensure_future(measure_and_report(command))
            elif name == "close":
                emit({"closed_all": client.close_all()})
            elif name == "stats":
                emit({"open": len(client.open), "closed": client.closed})
            elif name == "quit":
                break
    finally:
        if measuring is not None:
            measuring.cancel()
        client.close_all()


if __name__ == "__main__":
    try:
        import uvloop  # the client may use uvloop when installed: a faster client
    except ImportError:
        asyncio.run(main())
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
