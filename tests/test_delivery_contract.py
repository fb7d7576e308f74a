"""The delivery contract, end to end, on both adapters (Tornado, and ASGI under uvicorn)
and both backends (memory, and Redis through ``RedisStore``).

Every test runs once per adapter and backend, with real servers and real clients on 127.0.0.1:
stalled clients are cut without hurting anyone else, queues are bounded in messages
and bytes, each overflow policy does what it says and is counted, a drain ends every
stream, and the metrics endpoint reports exactly what happened.

Making a client fall behind without timing games: ``store.submit()`` is synchronous
and queues the message for every subscriber before it returns, so a burst of submits
with no ``await`` in between lands entirely in the subscribers' queues before any
delivery task runs. A client "N messages behind" is one that was sent a burst of N.
Over Redis, a burst submitted without an ``await`` in between is one transaction
(see :mod:`tornadose.backends.redis.writer`), read and delivered at once by the
reader: the same thing, one round trip later (:func:`burst`, :func:`landed`).
A *stalled* client is a real one that stops reading: its server-side writes block
once the kernel buffers between it and the server are full (about 3 MB on Linux
loopback).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import statistics
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Protocol

import httpx
import pytest
from httpx_sse import ServerSentEvent
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.clients import TIMEOUT, sse_client
from tests.conftest import (
    BackendStore,
    Endpoints,
    StoreServer,
    TornadoStarter,
    UvicornStarter,
    wait_until,
)
from tornadose import shutdown
from tornadose.adapters.asgi import ChannelsApp
from tornadose.adapters.tornado import channel_handlers
from tornadose.core.message import Message
from tornadose.delivery import lifecycle
from tornadose.http.channels import Channels
from tornadose.schemas import Envelope
from tornadose.stores import BaseStore, OverflowPolicy

ADAPTERS = ["tornado", "asgi"]
TRANSPORTS = ["sse", "websocket"]


def incompressible(size: int) -> str:
    """``size`` characters of random base64 text: permessage-deflate cannot shrink it."""
    return base64.b64encode(os.urandom(size * 3 // 4)).decode()


@pytest.fixture(autouse=True)
def reset_drain() -> Iterator[None]:
    """Forget any drain at the end of each test, so later tests can open streams."""
    yield
    shutdown.reset()


# -- servers ------------------------------------------------------------------------------

Serve = Callable[..., Awaitable[Endpoints]]
ServeChannels = Callable[[Channels], Awaitable[Endpoints]]


@pytest.fixture
def serve(serve_store: StoreServer) -> Serve:
    """``endpoints = await serve(store, **options)``: :func:`serve_store` without SSE
    heartbeats, ``options`` (``write_timeout``) going to both endpoints; every test using
    it runs on both adapters."""

    async def start(store: BaseStore, **options: Any) -> Endpoints:
        return await serve_store(store, sse={"heartbeat": 0, **options}, websocket=options)

    return start


@pytest.fixture(params=ADAPTERS)
def serve_channels(
    request: pytest.FixtureRequest, tornado_server: TornadoStarter, uvicorn_server: UvicornStarter
) -> ServeChannels:
    """``root = await serve_channels(channels)``: ``channel_handlers`` on Tornado or
    ``ChannelsApp`` under uvicorn, one adapter per parameter; ``root.base`` is its URL."""

    async def start(channels: Channels) -> Endpoints:
        if request.param == "tornado":
            return Endpoints("tornado", await tornado_server(channel_handlers(channels)))
        return Endpoints("asgi", await uvicorn_server(ChannelsApp(channels)))

    return start


# -- publishing ---------------------------------------------------------------------------


async def burst(store: BaseStore, payloads: Iterable[Any]) -> list[Message]:
    """Submit ``payloads`` with no ``await`` in between, then wait until each was
    published: in memory they are in the subscribers' queues before the first
    delivery task runs; over Redis they are one transaction, delivered at once."""
    published = [store.submit(payload) for payload in payloads]
    return [await each for each in published]


async def landed(store: BaseStore, copies: int) -> None:
    """Wait until ``copies`` message copies reached the subscribers (queued or already
    handed to their transports): at once in memory, after the reader's round trip
    over Redis."""
    await wait_until(lambda: store.stats.delivered + store.snapshot()["queued_messages"] >= copies)


# -- clients ------------------------------------------------------------------------------

#: How a stream ended, as the client saw it: an SSE response that ended cleanly or
#: was cut mid-body, or a WebSocket close code (``None``: no close frame).
CLEAN = "clean end"
CUT = "cut"
Ending = str | int | None


@dataclass(frozen=True)
class Item:
    """One message as a client received it (``data``: SSE text / decoded WS JSON)."""

    id: str | None
    event: str | None
    data: Any
    #: The SSE ``retry`` field (``None`` on WebSocket).
    retry: int | None = None


class Client(Protocol):
    async def take(self, count: int) -> list[Item]: ...

    async def rest(self) -> tuple[list[Item], Ending]: ...


class SSEClient:
    """An httpx-sse client."""

    def __init__(self, events: AsyncIterator[ServerSentEvent]) -> None:
        self.events = events

    @staticmethod
    def item(event: ServerSentEvent) -> Item:
        return Item(event.id or None, event.event, event.data, event.retry)

    async def take(self, count: int) -> list[Item]:
        async with asyncio.timeout(TIMEOUT):
            return [self.item(await anext(self.events)) for _ in range(count)]

    async def rest(self) -> tuple[list[Item], Ending]:
        """Everything until the stream ends, and how it ended."""
        items: list[Item] = []
        try:
            async with asyncio.timeout(TIMEOUT):
                async for event in self.events:
                    items.append(self.item(event))
        except (httpx.RemoteProtocolError, httpx.ReadError):
            return items, CUT
        return items, CLEAN


class WSClient:
    """A ``websockets`` client."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @staticmethod
    def item(frame: str | bytes) -> Item:
        envelope = Envelope.model_validate_json(frame)
        return Item(envelope.id, envelope.event, envelope.data)

    async def take(self, count: int) -> list[Item]:
        async with asyncio.timeout(TIMEOUT):
            return [self.item(await self.ws.recv()) for _ in range(count)]

    async def rest(self) -> tuple[list[Item], Ending]:
        """Everything until the server closes, and the close code."""
        items: list[Item] = []
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(TIMEOUT):
                while True:
                    items.append(self.item(await self.ws.recv()))
        return items, self.ws.close_code


@asynccontextmanager
async def subscribed(
    transport: str, endpoints: Endpoints, store: BaseStore, **headers: str
) -> AsyncIterator[Client]:
    """A client of ``transport``, once the server registered it with ``store``."""
    before = len(store.subscribers)
    async with AsyncExitStack() as stack:
        client: Client
        if transport == "sse":
            _, events = await stack.enter_async_context(sse_client(endpoints.events, **headers))
            client = SSEClient(events)
        else:
            ws = await stack.enter_async_context(
                connect(
                    endpoints.ws,
                    additional_headers=headers,
                    proxy=None,
                    max_size=None,
                    open_timeout=TIMEOUT,
                    close_timeout=TIMEOUT,
                )
            )
            client = WSClient(ws)
        await wait_until(lambda: len(store.subscribers) == before + 1)
        yield client


def cut_ending(transport: str, close_code: int) -> Ending:
    """How a client sees being cut: an SSE body ending mid-stream, or a close code."""
    return CUT if transport == "sse" else close_code


class RawSSEReader:
    """An SSE client on a bare asyncio stream, light enough to run a hundred of.

    It parses the chunked body and checks each event, byte for byte, against
    ``expected`` (the encoded messages in the order the store published them), so a
    gap, a duplicate or a reordering fails the test. An event may arrive before its
    publisher has noted it in ``expected`` (a Redis backend delivers from its reader,
    which can run before ``submit()``'s caller resumes): it is checked once noted.
    """

    def __init__(self, expected: list[bytes], progress: asyncio.Event) -> None:
        self.expected = expected
        self.progress = progress
        #: Events received and checked against ``expected``.
        self.received = 0
        #: Events received before the publisher noted them, checked later, in order.
        self._unchecked: list[bytes] = []
        self._buffer = bytearray()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self, port: int) -> None:
        async with asyncio.timeout(TIMEOUT):
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", port)
            self._writer.write(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            head = await self._reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert b"transfer-encoding: chunked" in head.lower(), head

    async def read_until(self, count: int) -> None:
        """Read until ``count`` events arrived in all; each read fails after 5 s."""
        assert self._reader is not None
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while self._check() < count:
            if self.received + len(self._unchecked) >= count:
                # All here, some not yet noted by the publisher: let it run.
                assert asyncio.get_running_loop().time() < deadline, "never published"
                await asyncio.sleep(0.001)
                continue
            async with asyncio.timeout(TIMEOUT):
                size = int((await self._reader.readline()).split(b";")[0], 16)
                if size == 0:
                    pytest.fail(f"the stream ended after {self.received} events")
                chunk = await self._reader.readexactly(size + 2)
            self._feed(chunk[:-2])

    def _feed(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        start = 0
        while (end := buffer.find(b"\n\n", start)) >= 0:
            self._unchecked.append(bytes(buffer[start : end + 2]))
            start = end + 2
        del buffer[:start]
        self._check()

    def _check(self) -> int:
        """Check the events the publisher has noted since; how many are checked."""
        checked = 0
        for event in self._unchecked:
            if self.received >= len(self.expected):
                break
            if event != self.expected[self.received]:
                pytest.fail(f"event #{self.received} is not the one published: {event[:60]!r}")
            self.received += 1
            checked += 1
        del self._unchecked[:checked]
        if checked:
            self.progress.set()
        return self.received

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await asyncio.wait_for(self._writer.wait_closed(), TIMEOUT)


class StalledClient:
    """A client on a raw socket (tiny receive buffer) that sends its request or
    WebSocket handshake, then reads nothing until :meth:`finish`."""

    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.setblocking(False)
        self._leftover = b""

    async def connect(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(TIMEOUT):
            await loop.sock_connect(self.sock, ("127.0.0.1", port))
            if self.transport == "sse":
                request = b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                await loop.sock_sendall(self.sock, request)
                return
            handshake = (
                b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            await loop.sock_sendall(self.sock, handshake)
            response = b""
            while b"\r\n\r\n" not in response:
                chunk = await loop.sock_recv(self.sock, 4096)
                assert chunk, f"the handshake failed: {response!r}"
                response += chunk
        head, _, self._leftover = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head

    async def finish(self) -> int | None:
        """Read what the server had sent until it ends the connection; fails if it is
        still open after 5 s. The WebSocket close code (``None``: no close frame)."""
        loop = asyncio.get_running_loop()
        data = bytearray(self._leftover)
        try:
            async with asyncio.timeout(TIMEOUT):
                while True:
                    code = self._close_code(data)
                    if code is not None:
                        return code
                    chunk = await loop.sock_recv(self.sock, 1 << 20)
                    if not chunk:
                        return None
                    data += chunk
        except ConnectionResetError:
            return None
        except TimeoutError:
            pytest.fail("the server did not end the stalled client's connection within 5 s")

    def _close_code(self, data: bytearray) -> int | None:
        """Consume the complete WebSocket frames at the start of ``data``; the code of
        a close frame among them."""
        if self.transport == "sse":
            data.clear()
            return None
        while len(data) >= 2:
            opcode, length, start = data[0] & 0x0F, data[1] & 0x7F, 2
            if length == 126:
                (length,), start = struct.unpack_from("!H", data, 2), 4
            elif length == 127:
                (length,), start = struct.unpack_from("!Q", data, 2), 10
            if len(data) < start + length:
                return None
            if opcode == 0x8:
                (code,) = struct.unpack_from("!H", data, start)
                return int(code)
            del data[: start + length]
        return None

    def close(self) -> None:
        self.sock.close()


@asynccontextmanager
async def stalled_client(transport: str, endpoints: Endpoints) -> AsyncIterator[StalledClient]:
    client = StalledClient(transport)
    try:
        await client.connect(endpoints.port)
        yield client
    finally:
        client.close()


# -- 1. a stalled client among 100 readers -------------------------------------------------

READERS = 100
#: Bytes of each message.
SIZE = 16 * 1024
#: Messages per step: the publisher then waits until every reader has them all.
STEP = 25
#: Steps published before the stalled client connects, and again after its cut, to
#: time the readers alone.
BASELINE_STEPS = 3
#: How far (in messages) the publisher may run ahead of the slowest reader.
WINDOW = 16


@dataclass(frozen=True)
class StallCase:
    """How the stalled client is bounded, and the reason it must be cut for."""

    store_options: dict[str, Any]
    write_timeout: float | None
    reason: str
    close_code: int


STALL_CASES = {
    "max_queue": StallCase({"max_queue": 32}, None, "slow_consumer", 4001),
    "max_queue_bytes": StallCase(
        {"max_queue": 1000, "max_queue_bytes": 256 * 1024}, None, "slow_consumer", 4001
    ),
    "write_timeout": StallCase(
        {"max_queue": 1000, "max_queue_bytes": None}, 0.5, "write_timeout", 4002
    ),
}


class Fanout:
    """100 raw SSE readers, and a publisher that goes as fast as they read."""

    def __init__(self, store: BaseStore) -> None:
        self.store = store
        self.payload = incompressible(SIZE)
        self.expected: list[bytes] = []
        self.progress = asyncio.Event()
        self.readers = [RawSSEReader(self.expected, self.progress) for _ in range(READERS)]
        #: ``queued_messages`` after each publish.
        self.queued: list[int] = []

    async def publish(self, count: int) -> float:
        """Publish ``count`` messages, at most WINDOW ahead of the slowest reader; the
        seconds until every reader had them all."""
        started = time.monotonic()
        target = len(self.expected) + count

        async def publisher() -> None:
            while len(self.expected) < target:
                while len(self.expected) - min(r.received for r in self.readers) >= WINDOW:
                    self.progress.clear()
                    await asyncio.wait_for(self.progress.wait(), TIMEOUT)
                published = await self.store.submit(self.payload)
                self.expected.append(published.sse)
                self.queued.append(self.store.snapshot()["queued_messages"])
                await asyncio.sleep(0)

        await asyncio.gather(publisher(), *(r.read_until(target) for r in self.readers))
        return time.monotonic() - started


@pytest.mark.parametrize(
    ("case", "transport"),
    [
        ("max_queue", "sse"),
        ("max_queue", "websocket"),
        ("max_queue_bytes", "sse"),
        ("write_timeout", "sse"),
        ("write_timeout", "websocket"),
    ],
)
async def test_a_stalled_client_is_cut_and_100_readers_keep_up(
    serve: Serve, backend_store: BackendStore, case: str, transport: str
) -> None:
    """A client that stops reading is cut; 100 SSE readers get every message, in order,
    about as fast as without it, and the server's queues stay bounded."""
    bound = STALL_CASES[case]
    store = backend_store("recording", **bound.store_options)
    endpoints = await serve(store, write_timeout=bound.write_timeout)
    fanout = Fanout(store)
    try:
        await asyncio.gather(*(reader.connect(endpoints.port) for reader in fanout.readers))
        await wait_until(lambda: len(store.subscribers) == READERS)
        # Seconds per step of STEP messages, without and with the stalled client.
        alone = [await fanout.publish(STEP) for _ in range(BASELINE_STEPS)]
        stalled_steps: list[float] = []
        async with stalled_client(transport, endpoints) as stalled:
            await wait_until(lambda: len(store.subscribers) == READERS + 1)
            subscription = store.registered[-1]
            fanout.queued.clear()
            while not subscription.closed and len(stalled_steps) < 40:
                stalled_steps.append(await fanout.publish(STEP))
            assert subscription.closed, f"{len(stalled_steps) * STEP} messages never stalled it"
            assert len(store.subscribers) == READERS
            alone += [await fanout.publish(STEP) for _ in range(BASELINE_STEPS)]
            close_code = await stalled.finish()  # the server ended its connection
    finally:
        await asyncio.gather(*(reader.close() for reader in fanout.readers))

    assert subscription.close_reason is not None
    assert subscription.close_reason.value == bound.reason
    assert len(subscription) == 0  # its queue was freed
    assert all(reader.received == len(fanout.expected) for reader in fanout.readers)
    # Medians: robust to a hiccup of the machine in either phase.
    assert statistics.median(stalled_steps) < 2 * statistics.median(alone)
    assert max(fanout.queued) <= (READERS + 1) * store.max_queue
    if transport == "websocket" and close_code is not None:
        assert close_code == bound.close_code
    await wait_until(lambda: len(store.subscribers) == 0)
    assert store.snapshot()["queued_messages"] == 0
    assert dict(store.stats.disconnects) == {bound.reason: 1, "client_gone": READERS}


# -- 2. write timeout ---------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_stalled_client_is_cut_after_the_write_timeout(
    serve: Serve, backend_store: BackendStore, transport: str
) -> None:
    """With ``write_timeout=0.5``, a client whose writes stall is cut for that reason
    about 0.5 s later (WebSocket: 4002); readers on SSE and WebSocket go on unaffected."""
    store = backend_store("recording", max_queue=1000, max_queue_bytes=None)
    endpoints = await serve(store, write_timeout=0.5)
    payload = incompressible(64 * 1024)
    loop = asyncio.get_running_loop()
    async with (
        subscribed("sse", endpoints, store) as sse_reader,
        subscribed("websocket", endpoints, store) as ws_reader,
        stalled_client(transport, endpoints) as stalled,
    ):
        await wait_until(lambda: len(store.subscribers) == 3)
        subscription = store.registered[-1]
        cut_at: list[float] = []
        subscription.add_close_callback(lambda _: cut_at.append(loop.time()))
        # Lockstep with the readers, so only the stalled client can fall behind; its
        # writes are stuck once messages pile up in its queue.
        for _ in range(400):
            store.submit(payload)
            for reader in (sse_reader, ws_reader):
                (item,) = await reader.take(1)
                assert item.data == payload
            if len(subscription) >= 2:
                break
        stuck_at = loop.time()
        assert len(subscription) >= 2, "400 x 64 KiB never stalled the writes"
        await wait_until(lambda: subscription.closed, timeout=3)
        assert subscription.close_reason is not None
        assert subscription.close_reason.value == "write_timeout"
        assert 0.4 <= cut_at[0] - stuck_at <= 3.0
        await wait_until(lambda: len(store.subscribers) == 2)
        for n in range(3):  # the others go on
            published = await store.submit(n)
            for reader in (sse_reader, ws_reader):
                (item,) = await reader.take(1)
                assert item.id == published.id
        close_code = await stalled.finish()
        if transport == "websocket" and close_code is not None:
            assert close_code == 4002
        assert len(subscription) == 0
        assert dict(store.stats.disconnects) == {"write_timeout": 1}


# -- 3. byte bound ------------------------------------------------------------------------

#: ``max_queue`` is far above what the tests queue: only the byte bound can bite.
BYTE_BOUND = {"max_queue": 1000, "max_queue_bytes": 100_000}


def ids(items: Iterable[Item | Message]) -> list[str | None]:
    """The ids of received items or published messages."""
    return [item.id for item in items]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_falling_100_kb_behind_cuts_a_client_far_below_max_queue(
    serve: Serve, backend_store: BackendStore, transport: str
) -> None:
    """DISCONNECT with ``max_queue_bytes=100_000``: 20 messages of 10 KB (200 KB) cut the
    client as a slow consumer though ``max_queue`` is 1000; the client sees the cut."""
    store = backend_store("queue", **BYTE_BOUND)
    endpoints = await serve(store)
    async with subscribed(transport, endpoints, store) as client:
        await burst(store, (incompressible(10_000) for _ in range(20)))
        items, ending = await client.rest()
    assert items == []
    assert ending == cut_ending(transport, 4001)
    assert dict(store.stats.disconnects) == {"slow_consumer": 1}
    assert store.snapshot()["published"] == 20
    assert store.snapshot()["delivered"] == 0


def newest_within(sizes: list[int], bound: int) -> int:
    """How many of the newest messages (of these sizes) fit in ``bound`` bytes."""
    total = count = 0
    for size in reversed(sizes):
        if total + size > bound:
            break
        total, count = total + size, count + 1
    return count


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_drop_oldest_keeps_the_newest_100_kb(
    serve: Serve, backend_store: BackendStore, transport: str
) -> None:
    """DROP_OLDEST with ``max_queue_bytes=100_000``: a client 20 x 10 KB behind gets the
    newest messages that fit in 100 KB, in order; every dropped one is counted."""
    store = backend_store("queue", **BYTE_BOUND, overflow="drop_oldest")
    endpoints = await serve(store)
    async with subscribed(transport, endpoints, store) as client:
        published = await burst(store, (incompressible(10_000) for _ in range(20)))
        kept = newest_within([message.size for message in published], 100_000)
        received = await client.take(kept)
        sentinel = await store.submit("after")
        (after,) = await client.take(1)
    assert kept == 9  # 10 KB each: the newest 9 fit in 100 KB
    assert ids(received) == ids(published[-kept:])
    assert after.id == sentinel.id
    assert store.stats.dropped == 20 - kept
    assert store.stats.disconnects["slow_consumer"] == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_message_larger_than_the_byte_bound_is_still_delivered(
    serve: Serve, backend_store: BackendStore, transport: str
) -> None:
    """A single 150 KB message (bound: 100 KB) reaches a client whose queue is empty."""
    store = backend_store("queue", **BYTE_BOUND)
    endpoints = await serve(store)
    big = incompressible(150_000)
    async with subscribed(transport, endpoints, store) as client:
        published = await store.submit(big)
        (item,) = await client.take(1)
    assert published.size > 100_000
    assert (item.id, item.data) == (published.id, big)
    assert store.stats.dropped == 0
    assert store.stats.disconnects["slow_consumer"] == 0


# -- 4. overflow policies -----------------------------------------------------------------


@dataclass(frozen=True)
class PolicyCase:
    """A store (``max_queue=5``) and what a client 8 messages behind gets from it (the
    numbers of the messages, from 1)."""

    kind: str
    options: dict[str, Any]
    policy: OverflowPolicy
    received: list[int]
    dropped: int
    cut: bool = False


POLICY_CASES = {
    # QueueStore's default: the client is cut, nothing is skipped silently.
    "disconnect": PolicyCase("queue", {"max_queue": 5}, OverflowPolicy.DISCONNECT, [], 0, True),
    "drop_oldest": PolicyCase(
        "queue",
        {"max_queue": 5, "overflow": "drop_oldest"},
        OverflowPolicy.DROP_OLDEST,
        [4, 5, 6, 7, 8],
        3,
    ),
    # DataStore's default: the queue is emptied at 6, then 7 and 8 join it.
    "keep_latest": PolicyCase("data", {"max_queue": 5}, OverflowPolicy.KEEP_LATEST, [6, 7, 8], 5),
}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("policy", sorted(POLICY_CASES))
async def test_each_overflow_policy_over_a_real_connection(
    serve: Serve, backend_store: BackendStore, policy: str, transport: str
) -> None:
    """A client 8 messages behind (max_queue 5) is cut (DISCONNECT), gets the newest 5
    (DROP_OLDEST) or the newest since its queue was emptied (KEEP_LATEST); all counted."""
    case = POLICY_CASES[policy]
    store = backend_store(case.kind, **case.options)
    assert store.overflow is case.policy
    endpoints = await serve(store)
    async with subscribed(transport, endpoints, store) as client:
        published = await burst(store, range(1, 9))
        if case.cut:
            items, ending = await client.rest()
            assert (items, ending) == ([], cut_ending(transport, 4001))
        else:
            received = await client.take(len(case.received))
            assert ids(received) == [published[n - 1].id for n in case.received]
            sentinel = await store.submit("after")
            assert [item.id for item in await client.take(1)] == [sentinel.id]
    await wait_until(lambda: len(store.subscribers) == 0)
    assert store.stats.dropped == case.dropped
    gone = {"slow_consumer": 1} if case.cut else {"client_gone": 1}
    assert dict(store.stats.disconnects) == gone


# -- 5. graceful drain, store.close() -----------------------------------------------------


def is_reconnect_hint(item: Item) -> bool:
    """The shutdown's reconnect hint: a lone ``retry:`` of 1 to 5 s, no data."""
    return item.data == "" and item.retry is not None and 1000 <= item.retry <= 5000


async def test_drain_ends_every_stream_after_what_was_queued(
    serve: Serve, backend_store: BackendStore
) -> None:
    """``drain()``: SSE clients get what was queued, then a 1-5 s reconnect hint, then a
    clean end; WebSockets get what was queued, then 1001; no subscriber remains."""
    store = backend_store("queue")
    endpoints = await serve(store)
    loop = asyncio.get_running_loop()
    elsewhere = shutdown.open_streams()  # streams of this process outside this test
    async with (
        subscribed("sse", endpoints, store) as sse_a,
        subscribed("sse", endpoints, store) as sse_b,
        subscribed("websocket", endpoints, store) as ws_a,
        subscribed("websocket", endpoints, store) as ws_b,
    ):
        await burst(store, ["one", "two"])
        await landed(store, 2 * 4)
        assert shutdown.drain() == elsewhere + 4
        drained_at = loop.time()
        endings = await asyncio.gather(*(c.rest() for c in (sse_a, sse_b, ws_a, ws_b)))
        took = loop.time() - drained_at
    for items, ending in endings[:2]:
        assert [item.data for item in items[:-1]] == ["one", "two"]
        assert is_reconnect_hint(items[-1]), items[-1]
        assert ending == CLEAN
    for items, ending in endings[2:]:
        assert [item.data for item in items] == ["one", "two"]
        assert ending == 1001
    assert took < shutdown.DEFAULT_DEADLINE
    await wait_until(lambda: len(store.subscribers) == 0)
    await wait_until(lambda: shutdown.open_streams() <= elsewhere)
    assert dict(store.stats.disconnects) == {"server_shutdown": 4}
    assert not store.closed


async def test_streams_opened_while_draining_end_at_once(
    serve: Serve, backend_store: BackendStore
) -> None:
    """After ``drain()``, a new SSE stream gets only the reconnect hint, a new WebSocket 1001."""
    store = backend_store("queue")
    endpoints = await serve(store)
    shutdown.drain()
    async with sse_client(endpoints.events) as (_, events):
        items, ending = await SSEClient(events).rest()
    assert len(items) == 1
    assert is_reconnect_hint(items[0])
    assert ending == CLEAN
    async with connect(endpoints.ws, proxy=None, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        assert await WSClient(ws).rest() == ([], 1001)
    await wait_until(lambda: len(store.subscribers) == 0)


async def test_a_stalled_client_cannot_hold_the_drain(
    serve: Serve, backend_store: BackendStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client whose writes are stuck is cut at the drain deadline (1 s here); a reading
    client ends cleanly with the reconnect hint; then no stream remains."""
    monkeypatch.setattr(lifecycle, "DEFAULT_DEADLINE", 1.0)
    store = backend_store("recording", max_queue=1000, max_queue_bytes=None)
    endpoints = await serve(store, write_timeout=None)
    payload = incompressible(64 * 1024)
    loop = asyncio.get_running_loop()
    elsewhere = shutdown.open_streams()  # streams of this process outside this test
    async with (
        subscribed("sse", endpoints, store) as reader,
        stalled_client("sse", endpoints) as stalled,
    ):
        await wait_until(lambda: len(store.subscribers) == 2)
        subscription = store.registered[-1]
        for _ in range(400):
            store.submit(payload)
            await reader.take(1)
            if len(subscription) >= 2:
                break
        assert len(subscription) >= 2, "400 x 64 KiB never stalled the writes"
        shutdown.drain()
        drained_at = loop.time()
        items, ending = await reader.rest()
        assert is_reconnect_hint(items[-1])
        assert ending == CLEAN
        await wait_until(lambda: shutdown.open_streams() <= elsewhere, timeout=4)
        took = loop.time() - drained_at
        await stalled.finish()  # the server ended its connection
    # The stalled stream lasts until the deadline, and not much longer.
    assert 0.9 <= took <= shutdown.DEFAULT_DEADLINE + 0.5
    await wait_until(lambda: len(store.subscribers) == 0)
    assert dict(store.stats.disconnects) == {"server_shutdown": 2}


async def test_store_close_ends_streams_and_turns_new_clients_away(
    serve: Serve, backend_store: BackendStore
) -> None:
    """``store.close()``: SSE ends cleanly after what was queued, WebSocket closes 1001;
    afterwards SSE requests get 204 and WebSockets 1001."""
    store = backend_store("queue")
    endpoints = await serve(store)
    async with (
        subscribed("sse", endpoints, store) as sse,
        subscribed("websocket", endpoints, store) as ws,
    ):
        await store.submit("last words")
        await landed(store, 2)
        store.close()
        sse_items, sse_ending = await sse.rest()
        ws_items, ws_ending = await ws.rest()
    assert [item.data for item in sse_items] == ["last words"]
    assert sse_ending == CLEAN
    assert [item.data for item in ws_items] == ["last words"]
    assert ws_ending == 1001
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as http:
        assert (await http.get(endpoints.events)).status_code == 204
    async with connect(
        endpoints.ws, proxy=None, open_timeout=TIMEOUT, close_timeout=TIMEOUT
    ) as late:
        assert await WSClient(late).rest() == ([], 1001)
    assert len(store.subscribers) == 0


# -- 6. metrics ---------------------------------------------------------------------------


def scrape(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_exactly_what_happened(
    serve_channels: ServeChannels, backend_store: BackendStore
) -> None:
    """``{prefix}/metrics`` reports, per channel, exactly the traffic that happened, and
    the same numbers as ``store.snapshot()`` / ``store.stats``."""
    feed = backend_store("queue", max_queue=4)
    ticker = backend_store("data", max_queue=2)
    channels = Channels(prefix="/ch")
    channels.add("feed", feed, heartbeat=0)
    channels.add("ticker", ticker, heartbeat=0)
    root = await serve_channels(channels)
    feed_at, ticker_at = (
        replace(root, base=f"{root.base}/ch/{name}") for name in ("feed", "ticker")
    )

    # feed: 3 messages read live by a client that then leaves...
    async with subscribed("sse", feed_at, feed) as client:
        seen = [await feed.submit(n) for n in range(1, 4)]
        assert ids(await client.take(3)) == ids(seen)
    await wait_until(lambda: len(feed.subscribers) == 0)
    # ... a client cut as a slow consumer (5 messages behind, max_queue 4) ...
    async with subscribed("sse", feed_at, feed) as client:
        missed = await burst(feed, range(4, 9))
        assert (await client.rest())[1] == CUT
    await wait_until(lambda: len(feed.subscribers) == 0)
    # ... one resuming after message 3: the "resumed" signal, then messages 4-8 ...
    async with subscribed("sse", feed_at, feed, **{"Last-Event-ID": str(seen[-1].id)}) as client:
        items = await client.take(6)
        assert [item.event for item in items[:1]] == ["tornadose.resumed"]
        assert ids(items[1:]) == ids(missed)
    await wait_until(lambda: len(feed.subscribers) == 0)
    # ... one resuming from an id the store never gave: the reset signal.
    async with subscribed("sse", feed_at, feed, **{"Last-Event-ID": "no-such-id"}) as client:
        assert [item.event for item in await client.take(1)] == ["tornadose.reset"]
    await wait_until(lambda: len(feed.subscribers) == 0)
    # ticker: a WebSocket client 5 values behind (max_queue 2) gets only the latest.
    async with subscribed("websocket", ticker_at, ticker) as client:
        await burst(ticker, range(1, 6))
        assert [item.data for item in await client.take(1)] == [5]
    await wait_until(lambda: len(ticker.subscribers) == 0)

    async with (
        subscribed("sse", feed_at, feed),  # one subscriber connected while scraped
        httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as http,
    ):
        response = await http.get(root.base + "/ch/metrics")
        snapshots = {"feed": feed.snapshot(), "ticker": ticker.snapshot()}
        gone = {"feed": dict(feed.stats.disconnects), "ticker": dict(ticker.stats.disconnects)}
    assert response.status_code == 200
    media_type, *params = (part.strip() for part in response.headers["content-type"].split(";"))
    assert media_type == "text/plain"
    assert any(param in ("version=0.0.4", "version=1.0.0") for param in params)
    samples = scrape(response.text)

    def value(name: str, store: str, **labels: str) -> float:
        return samples[(f"tornadose_{name}", frozenset({"store": store, **labels}.items()))]

    expected = {
        "feed": {
            "published_total": 8,
            "delivered_total": 3 + 6 + 1,  # live, resumed (signal + 5), reset signal
            "dropped_total": 0,
            "replayed_total": 5,
            "resets_total": 1,
            "subscribers": 1,
            "queued_messages": 0,
        },
        "ticker": {
            "published_total": 5,
            "delivered_total": 1,
            "dropped_total": 4,  # 1 and 2 when 3 came, 3 and 4 when 5 came
            "replayed_total": 0,
            "resets_total": 0,
            "subscribers": 0,
            "queued_messages": 0,
        },
    }
    disconnects = {
        "feed": {"client_gone": 3, "slow_consumer": 1},
        "ticker": {"client_gone": 1},
    }
    for name in ("feed", "ticker"):
        for metric, count in expected[name].items():
            assert value(metric, name) == count, (name, metric)
        reported = {
            dict(labels)["reason"]: count
            for (metric, labels), count in samples.items()
            if metric == "tornadose_disconnects_total" and ("store", name) in labels
        }
        assert reported == disconnects[name], name
        # The same numbers as Python sees, for every field of the snapshot.
        for field, count in snapshots[name].items():
            gauges = ("subscribers", "queued_messages", "history_messages", "backend_up")
            suffix = "" if field in gauges else "_total"
            if field.startswith("backend_errors_"):  # by kind: one labelled sample each
                kind = field.removeprefix("backend_errors_")
                assert value("backend_errors_total", name, kind=kind) == count, (name, field)
            elif field == "backend_errors":  # the total: the sum over the kinds
                by_kind = [
                    total
                    for (metric, labels), total in samples.items()
                    if metric == "tornadose_backend_errors_total" and ("store", name) in labels
                ]
                assert sum(by_kind) == count, (name, field)
            else:
                assert value(field + suffix, name) == count, (name, field)
        assert gone[name] == disconnects[name]
