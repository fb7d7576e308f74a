"""Adaptive coalescing, end to end: a producer that publishes one message per event
loop turn, on both adapters, both transports and both backends.

What a user can observe, with real servers and clients on 127.0.0.1:

* under load, messages share writes: an SSE client reading the raw HTTP/1.1 body
  receives far fewer chunks than messages, and yet every message, once, in order,
  and no subscriber is cut with the default options;
* at light load nothing is held back: each message goes out in its own write;
* a client resuming with ``Last-Event-ID`` in the middle of such a burst gets exactly
  the messages after that id, then the live ones, with no gap and no duplicate.

The bounds and the write timeout under a one-publish-per-turn producer are tested in
``test_delivery_contract.py`` (its stalled-client tests publish that way).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.clients import TIMEOUT, sse_client
from tests.conftest import BackendStore, Endpoints, StoreServer, wait_until
from tornadose.core.message import Message
from tornadose.schemas import Envelope
from tornadose.stores import BaseStore, QueueStore

#: Messages of the loaded runs, and the clients of each transport.
MESSAGES = 1500
CLIENTS = 25


class ChunkCountingReader:
    """An SSE client on a bare socket that parses the chunked HTTP/1.1 body itself,
    counting the chunks (one per server write) and collecting the events' ids."""

    def __init__(self, last_event_id: str | None = None) -> None:
        self.last_event_id = last_event_id
        self.ids: list[str] = []
        #: Each event's ``event:`` field (``None`` when it has none).
        self.events: list[str | None] = []
        self.chunks_with_events = 0
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._text = ""

    async def connect(self, port: int) -> None:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", port)
        resume = f"Last-Event-ID: {self.last_event_id}\r\n" if self.last_event_id else ""
        request = f"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n{resume}\r\n"
        self._writer.write(request.encode())
        async with asyncio.timeout(TIMEOUT):
            head = await self._reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert b"transfer-encoding: chunked" in head.lower(), head

    async def read_until(self, count: int) -> None:
        """Read until ``count`` events arrived (fails after 10 s without progress)."""
        assert self._reader is not None
        while len(self.ids) < count:
            async with asyncio.timeout(2 * TIMEOUT):
                size_line = await self._reader.readuntil(b"\r\n")
                size = int(size_line.strip(), 16)
                assert size, "the stream ended"
                chunk = await self._reader.readexactly(size + 2)
            self._text += chunk[:-2].decode()
            *events, self._text = self._text.split("\n\n")
            fields = [dict(line.split(": ", 1) for line in event.split("\n")) for event in events]
            fields = [f for f in fields if "id" in f]
            if fields:
                self.chunks_with_events += 1
                self.ids += [f["id"] for f in fields]
                self.events += [f.get("event") for f in fields]

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()


class WebSocketReader:
    """A ``websockets`` client collecting the ids of the messages it receives."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.ids: list[str] = []
        self.events: list[str | None] = []

    async def read_until(self, count: int) -> None:
        while len(self.ids) < count:
            async with asyncio.timeout(2 * TIMEOUT):
                envelope = Envelope.model_validate_json(await self.ws.recv())
            assert envelope.id is not None
            self.ids.append(envelope.id)
            self.events.append(envelope.event)


@asynccontextmanager
async def readers(
    endpoints: Endpoints, store: BaseStore, count: int, last_event_id: str | None = None
) -> AsyncIterator[tuple[list[ChunkCountingReader], list[WebSocketReader]]]:
    """``count`` raw SSE readers and ``count`` WebSocket readers, all registered."""
    before = len(store.subscribers)
    async with AsyncExitStack() as stack:
        sse = [ChunkCountingReader(last_event_id) for _ in range(count)]
        for reader in sse:
            stack.push_async_callback(reader.close)
            await reader.connect(endpoints.port)
        query = f"?last_event_id={last_event_id}" if last_event_id else ""
        ws = [
            WebSocketReader(
                await stack.enter_async_context(
                    connect(endpoints.ws + query, proxy=None, open_timeout=TIMEOUT)
                )
            )
            for _ in range(count)
        ]
        await wait_until(lambda: len(store.subscribers) == before + 2 * count, timeout=10)
        yield sse, ws


async def publish_one_per_turn(store: BaseStore, count: int) -> list[Message]:
    """Publish ``count`` messages, yielding to the event loop before each one (the
    acknowledgements are awaited at the end: over Redis, awaiting each would pace
    the producer at one Redis round trip per message)."""
    published = []
    for n in range(count):
        await asyncio.sleep(0)
        published.append(store.submit(f"message {n}"))
    return [await each for each in published]


async def test_one_publish_per_turn_is_coalesced_and_every_client_gets_everything(
    serve_store: StoreServer, backend_store: BackendStore
) -> None:
    """25 raw SSE and 25 WebSocket clients, 1500 messages published one per loop turn
    with default options: every client receives every message once, in order, no
    one is cut, and the SSE clients got them in far fewer writes than messages."""
    store = backend_store("queue")
    endpoints = await serve_store(store, sse={"heartbeat": 0})
    async with readers(endpoints, store, CLIENTS) as (sse, ws):
        reading = [asyncio.ensure_future(r.read_until(MESSAGES)) for r in (*sse, *ws)]
        published = await publish_one_per_turn(store, MESSAGES)
        await asyncio.gather(*reading)
    expected = [message.id for message in published]
    for reader in (*sse, *ws):
        assert reader.ids == expected
    assert dict(store.stats.disconnects).get("slow_consumer", 0) == 0
    chunks = [reader.chunks_with_events for reader in sse]
    # Without coalescing every message is its own write here (1500 chunks each: the
    # clients share the server's loop, so each turn is slow enough for one sweep per
    # message); coalesced, about three messages share a write in this setting.
    assert max(chunks) < MESSAGES * 2 // 3, chunks


async def test_at_light_load_every_message_goes_out_in_its_own_write(
    serve_store: StoreServer, backend_store: BackendStore
) -> None:
    """Messages 100 ms apart are never held back to share a write."""
    store = backend_store("queue")
    endpoints = await serve_store(store, sse={"heartbeat": 0})
    async with readers(endpoints, store, 5) as (sse, ws):
        published = []
        for n in range(10):
            published.append(await store.submit(n))
            await asyncio.gather(*(r.read_until(n + 1) for r in (*sse, *ws)))
            await asyncio.sleep(0.1)
    for reader in sse:
        assert reader.chunks_with_events == 10
        assert reader.ids == [message.id for message in published]


@pytest.mark.parametrize("transport", ["sse", "websocket"])
async def test_resuming_in_the_middle_of_a_burst_is_exact(
    serve_store: StoreServer, backend_store: BackendStore, transport: str
) -> None:
    """A client that resumes from message 300 while 1200 more are published one per
    turn gets the ``tornadose.resumed`` signal, 301.. then every live one: no gap, no
    duplicate, in order."""
    store = backend_store("queue", history=2000)
    endpoints = await serve_store(store, sse={"heartbeat": 0})
    first = await publish_one_per_turn(store, 600)
    resume_from = first[299].id
    assert resume_from is not None
    async with readers(endpoints, store, 3) as (sse, ws):
        watchers = [asyncio.ensure_future(r.read_until(1200)) for r in (*sse, *ws)]
        publishing = asyncio.ensure_future(publish_one_per_turn(store, 1200))
        await asyncio.sleep(0.05)  # the burst is under way
        async with readers_of(transport, endpoints, store, resume_from) as late:
            rest = await publishing
            await late.read_until(1 + 300 + 1200)
        await asyncio.gather(*watchers)
    assert (late.events[0], late.ids[0]) == ("tornadose.resumed", resume_from)
    assert late.ids[1:] == [message.id for message in first[300:] + rest]
    assert set(late.events[1:]) == {None}


@asynccontextmanager
async def readers_of(
    transport: str, endpoints: Endpoints, store: BaseStore, last_event_id: str | None = None
) -> AsyncIterator[ChunkCountingReader | WebSocketReader]:
    """One reader of ``transport`` (resuming after ``last_event_id`` if given)."""
    if transport == "sse":
        reader = ChunkCountingReader(last_event_id)
        try:
            await reader.connect(endpoints.port)
            yield reader
        finally:
            await reader.close()
        return
    query = f"?last_event_id={last_event_id}" if last_event_id else ""
    async with connect(endpoints.ws + query, proxy=None, open_timeout=TIMEOUT) as ws:
        yield WebSocketReader(ws)


async def test_an_httpx_sse_client_reads_coalesced_writes_as_separate_events(
    serve_store: StoreServer, backend_store: BackendStore
) -> None:
    """A standard SSE client parses several events per write as separate events."""
    store = backend_store("queue")
    endpoints = await serve_store(store, sse={"heartbeat": 0})
    async with sse_client(endpoints.events) as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        published = await publish_one_per_turn(store, 200)
        async with asyncio.timeout(TIMEOUT):
            received = [await anext(events) for _ in range(200)]
    assert [event.id for event in received] == [message.id for message in published]
    assert [event.data for event in received] == [f"message {n}" for n in range(200)]


@pytest.mark.parametrize("transport", ["sse", "websocket"])
async def test_bursts_above_a_full_write_are_not_held_back_into_a_cut(
    serve_store: StoreServer, backend_store: BackendStore, transport: str
) -> None:
    """Bursts of 100 per loop turn, 3000 messages (three times the default
    ``max_queue``) to two clients: a put-off sweep is brought forward once a full
    write is queued, so clients that keep up are never cut as slow consumers and get
    everything (held back for the last sweep's cost instead, a WebSocket client on
    uvicorn falls 1000 behind and is cut)."""
    store = backend_store("queue")
    endpoints = await serve_store(store, sse={"heartbeat": 0})
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(readers_of(transport, endpoints, store))
            for _ in range(2)
        ]
        await wait_until(lambda: len(store.subscribers) == 2)
        published = []
        for n in range(3000):
            published.append(store.submit(n))
            if n % 100 == 99:
                await asyncio.sleep(0)
        expected = [(await each).id for each in published]
        # Read afterwards (the kernel's buffers hold it all): the clients take no time
        # from the server's loop while it publishes.
        await asyncio.gather(*(client.read_until(3000) for client in clients))
    assert dict(store.stats.disconnects).get("slow_consumer", 0) == 0
    for client in clients:
        assert client.ids == expected


@pytest.mark.parametrize("transport", ["sse", "websocket"])
async def test_a_message_half_the_byte_bound_is_not_held_back_into_a_cut(
    serve_store: StoreServer, transport: str
) -> None:
    """40 KB messages, one per loop turn, under a 64 KiB byte bound, to clients that
    keep up: a sweep is never put off for a stream whose first waiting message is
    already half its bound (two would overflow it), so nobody is cut. In memory only:
    over Redis one read may bring two such messages at once, which overflow this
    bound whatever delivery does."""
    store = QueueStore(max_queue_bytes=64 * 1024)
    endpoints = await serve_store(store, sse={"heartbeat": 0})
    big = "x" * 40_000
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(readers_of(transport, endpoints, store))
            for _ in range(5)
        ]
        await wait_until(lambda: len(store.subscribers) == 5)
        reading = [asyncio.ensure_future(client.read_until(200)) for client in clients]
        published = []
        for _ in range(200):
            await asyncio.sleep(0)
            published.append(store.submit(big))
        expected = [(await each).id for each in published]
        await asyncio.gather(*reading)
    assert dict(store.stats.disconnects).get("slow_consumer", 0) == 0
    for client in clients:
        assert client.ids == expected
