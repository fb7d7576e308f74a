"""A reconnect storm: no client ever misses or repeats a message without being told.

50 real clients disconnect abruptly and reconnect at random, each time with the id of
the last message they saw (SSE: the ``Last-Event-ID`` header; WebSocket: the
``last_event_id`` query parameter, as a browser must), while 5,000 messages are
published. Every client must see every id exactly once and in order, except for gaps
announced by a ``tornadose.reset`` event, and only when the gap was longer than the
history. Runs on Tornado and on ASGI under uvicorn, with SSE clients only and with a
mix of SSE and WebSocket clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from httpx_sse import SSEError, aconnect_sse
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.clients import TIMEOUT, offset
from tests.conftest import TornadoStarter, UvicornStarter, wait_until
from tornadose.adapters.asgi import EventSourceApp, Receive, Scope, Send, WebSocketApp
from tornadose.adapters.tornado import EventSource, WebSocketSubscriber
from tornadose.core.history import RESET_EVENT, RESUMED_EVENT
from tornadose.core.store import DEFAULT_HISTORY
from tornadose.stores import QueueStore

MESSAGES = 5000
CLIENTS = 50
#: Messages submitted at once, then the publisher sleeps :data:`PAUSE` seconds.
BURST = 10
PAUSE = 0.005
#: Each connection reads at most this many events (at least one)...
MAX_EVENTS_PER_CONNECTION = 500
#: ...or for a random time in this range once open, then disconnects abruptly.
MIN_CONNECTION_SECONDS = 0.05
MAX_CONNECTION_SECONDS = 0.5
#: Seconds the whole storm may take before the test fails.
STORM_TIMEOUT = 40.0
SEED = 20240611

#: Errors a client sees when the server cuts its connection (slow consumer).
CUT_ERRORS = (httpx.RemoteProtocolError, httpx.ReadError, ConnectionClosed)


@dataclass(frozen=True)
class Received:
    """One event as the client saw it, whatever the transport."""

    event: str | None  # None for a plain message
    id: str | None
    data: Any


@dataclass
class Connection:
    """One connection of a client: the id it sent and what it read."""

    sent: str | None
    events: list[Received] = field(default_factory=list)
    ended: str = "budget"  # "budget", "time", "done", or the error's class name


@dataclass
class Client:
    """One storm client: its transport and every connection it made."""

    number: int
    transport: str  # "sse" or "websocket"
    connections: list[Connection] = field(default_factory=list)

    @property
    def last_id(self) -> str | None:
        """The id of the last message (or reset) this client saw."""
        for connection in reversed(self.connections):
            for received in reversed(connection.events):
                if received.id is not None:
                    return received.id
        return None


# -- clients ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def sse_events(
    http: httpx.AsyncClient, url: str, last_id: str | None
) -> AsyncIterator[AsyncIterator[Received]]:
    """Open an SSE stream, resuming with the ``Last-Event-ID`` header."""
    headers = {} if last_id is None else {"Last-Event-ID": last_id}
    async with aconnect_sse(http, "GET", url, headers=headers) as source:

        async def events() -> AsyncIterator[Received]:
            async for event in source.aiter_sse():
                kind = None if event.event == "message" else event.event
                yield Received(kind, event.id or None, json.loads(event.data))

        yield events()


@contextlib.asynccontextmanager
async def websocket_events(url: str, last_id: str | None) -> AsyncIterator[AsyncIterator[Received]]:
    """Open a WebSocket, resuming with the ``last_event_id`` query parameter; leaving
    aborts the TCP connection without a closing handshake."""
    if last_id is not None:
        url = f"{url}?last_event_id={quote(last_id, safe='')}"
    async with connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:

        async def events() -> AsyncIterator[Received]:
            async for frame in ws:
                envelope = json.loads(frame)
                yield Received(envelope.get("event"), envelope.get("id"), envelope["data"])

        try:
            yield events()
        finally:
            ws.transport.abort()


async def run_client(client: Client, urls: dict[str, str], rng: random.Random) -> None:
    """Connect, read a random number of events or for a random time, disconnect
    abruptly, reconnect with the last id seen; until the last message arrived."""
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as http:
        while client.last_id is None or offset(client.last_id) < MESSAGES:
            connection = Connection(client.last_id)
            client.connections.append(connection)
            budget = rng.randint(1, MAX_EVENTS_PER_CONNECTION)
            # Until it saw an id, a client could not resume: it reads at least one event.
            seconds = None
            if connection.sent is not None:
                seconds = rng.uniform(MIN_CONNECTION_SECONDS, MAX_CONNECTION_SECONDS)
            try:
                await read_connection(client.transport, urls, http, connection, budget, seconds)
            except (*CUT_ERRORS, SSEError, InvalidHandshake) as error:
                connection.ended = type(error).__name__


async def read_connection(
    transport: str,
    urls: dict[str, str],
    http: httpx.AsyncClient,
    connection: Connection,
    budget: int,
    seconds: float | None,
) -> None:
    """One connection: once open, read up to ``budget`` events (for at most
    ``seconds``) into ``connection``."""
    if transport == "sse":
        opened = sse_events(http, urls["sse"], connection.sent)
    else:
        opened = websocket_events(urls["websocket"], connection.sent)
    async with opened as events:
        try:
            async with asyncio.timeout(seconds):
                async for received in events:
                    connection.events.append(received)
                    if received.id is not None and offset(received.id) >= MESSAGES:
                        connection.ended = "done"
                        return
                    if len(connection.events) >= budget:
                        return
        except TimeoutError:
            connection.ended = "time"


async def publish_all(store: QueueStore) -> None:
    """Submit the payloads 1..MESSAGES at a steady pace."""
    for number in range(1, MESSAGES + 1):
        store.submit(number)
        if number % BURST == 0:
            await asyncio.sleep(PAUSE)


# -- checking --------------------------------------------------------------------------


@dataclass
class Verdict:
    """What one client's connections add up to."""

    resets: int = 0
    explained: set[int] = field(default_factory=set)  # offsets skipped by a reset


def check_client(client: Client, epoch: str) -> Verdict:
    """Assert that ``client`` saw every id once and in order, except reset gaps."""
    verdict = Verdict()
    who = f"client {client.number} ({client.transport})"
    expected = 1
    for number, connection in enumerate(client.connections):
        where = f"{who}, connection {number}"
        events = connection.events
        controls = [i for i, received in enumerate(events) if received.event is not None]
        if connection.sent is None:
            assert number == 0, f"{where}: reconnected without an id"
            assert controls == [], f"{where}: control event for a client that sent no id"
        elif events:
            assert controls == [0], f"{where}: want one control event, first: {events[:3]}"
            signal = events[0]
            if signal.event == RESUMED_EVENT:
                assert signal.id == connection.sent, where
                assert signal.data["after"] == connection.sent, where
                assert 0 <= signal.data["replayed"] <= MESSAGES - offset(connection.sent), where
            else:
                assert signal.event == RESET_EVENT, where
                assert signal.data == {
                    "reason": "history_too_short",
                    "last_event_id": connection.sent,
                }, where
                assert signal.id is not None, where
                assert signal.id.startswith(f"{epoch}-"), where
                newest = offset(signal.id)
                # Explained only if the gap was longer than the history reaches.
                assert newest - offset(connection.sent) > DEFAULT_HISTORY, where
                verdict.resets += 1
                verdict.explained.update(range(expected, newest + 1))
                expected = newest + 1
        for received in events:
            if received.event is not None:
                continue
            assert received.id == f"{epoch}-{expected}", (
                f"{where}: got {received.id}, want {epoch}-{expected} (sent {connection.sent})"
            )
            assert received.data == expected, where
            expected += 1
    assert expected == MESSAGES + 1, f"{who}: stopped at {expected - 1}"
    return verdict


# -- the storm ---------------------------------------------------------------------------


def dispatch(sse_app: EventSourceApp, websocket_app: WebSocketApp) -> Any:
    """One ASGI app serving SSE over HTTP and WebSocket over WebSocket, at any path."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        target = websocket_app if scope["type"] == "websocket" else sse_app
        await target(scope, receive, send)

    return app


async def serve(
    adapter: str, store: QueueStore, tornado_server: TornadoStarter, uvicorn_server: UvicornStarter
) -> dict[str, str]:
    """Serve ``store`` over SSE and WebSocket; return both URLs."""
    if adapter == "tornado":
        base = await tornado_server(
            [
                (r"/events", EventSource, {"store": store}),
                (r"/ws", WebSocketSubscriber, {"store": store}),
            ]
        )
    else:
        base = await uvicorn_server(dispatch(EventSourceApp(store), WebSocketApp(store)))
    return {"sse": base + "/events", "websocket": base.replace("http://", "ws://", 1) + "/ws"}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mix", ["sse", "mixed"])
@pytest.mark.parametrize("adapter", ["tornado", "asgi"])
async def test_reconnect_storm(
    adapter: str,
    mix: str,
    tornado_server: TornadoStarter,
    uvicorn_server: UvicornStarter,
) -> None:
    """Clients reconnecting at random see every id exactly once, in order, or a reset."""
    store = QueueStore()
    urls = await serve(adapter, store, tornado_server, uvicorn_server)
    transports = ["sse"] if mix == "sse" else ["sse", "websocket"]
    clients = [Client(i, transports[i % len(transports)]) for i in range(CLIENTS)]
    rng = random.Random(SEED)
    started = time.monotonic()

    async with asyncio.timeout(STORM_TIMEOUT):
        tasks = [
            asyncio.ensure_future(run_client(client, urls, random.Random(rng.random())))
            for client in clients
        ]
        try:
            # Every client is subscribed before the first message, so none misses it.
            await wait_until(lambda: len(store.subscribers) == CLIENTS, timeout=TIMEOUT)
            await publish_all(store)
            published = time.monotonic() - started
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    duration = time.monotonic() - started

    verdicts = [check_client(client, store.epoch) for client in clients]
    connections = sum(len(client.connections) for client in clients)
    endings = Counter(c.ended for client in clients for c in client.connections)
    resets = sum(verdict.resets for verdict in verdicts)
    resets_by_transport = Counter[str]()
    for client, verdict in zip(clients, verdicts, strict=True):
        resets_by_transport[client.transport] += verdict.resets
    print(
        f"\n{adapter}/{mix}: {MESSAGES} messages published in {published:.1f} s, "
        f"all {CLIENTS} clients done in {duration:.1f} s; "
        f"{connections - CLIENTS} reconnects; endings {dict(endings)}; "
        f"resets seen {resets} {dict(resets_by_transport)} (store: {store.stats.resets}); "
        f"replayed {store.stats.replayed}; disconnects {dict(store.stats.disconnects)}"
    )
    assert store.stats.published == MESSAGES
    assert store.stats.resets >= resets  # a client may leave before reading its reset
    if not resets:
        assert all(not verdict.explained for verdict in verdicts)


# -- why WebSocket clients fall behind in a storm ----------------------------------------

#: Tasks keeping the event loop busy, each burning :data:`BUSY_SLICE` s per iteration.
BUSY_TASKS = 20
BUSY_SLICE = 0.0005
BURST_SIZE = 1000


async def keep_busy(stop: asyncio.Event) -> None:
    """Burn CPU in small slices, as many other connections would, until ``stop``."""
    while not stop.is_set():
        deadline = time.perf_counter() + BUSY_SLICE
        while time.perf_counter() < deadline:
            pass
        await asyncio.sleep(0)


@pytest.mark.parametrize("adapter", ["tornado", "asgi"])
async def test_websocket_burst_is_not_paced_by_event_loop_iterations(
    adapter: str, tornado_server: TornadoStarter, uvicorn_server: UvicornStarter
) -> None:
    """A WebSocket client gets a burst of 1,000 messages within seconds on a busy server."""
    store = QueueStore()
    urls = await serve(adapter, store, tornado_server, uvicorn_server)
    stop = asyncio.Event()
    busy = [asyncio.ensure_future(keep_busy(stop)) for _ in range(BUSY_TASKS)]
    received: list[str] = []
    try:
        async with connect(urls["websocket"], open_timeout=TIMEOUT, close_timeout=1) as ws:
            await wait_until(lambda: len(store.subscribers) == 1)
            started = time.monotonic()
            for number in range(1, BURST_SIZE + 1):
                store.submit(number)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TIMEOUT):
                    while len(received) < BURST_SIZE:
                        frame = await ws.recv()
                        assert isinstance(frame, str)
                        received.append(frame)
            elapsed = time.monotonic() - started
    finally:
        stop.set()
        await asyncio.gather(*busy)
    # Each loop iteration takes >= BUSY_TASKS * BUSY_SLICE = 10 ms: one iteration per
    # message would need >= 10 s for the burst.
    assert len(received) == BURST_SIZE, (
        f"{adapter}: only {len(received)} of {BURST_SIZE} messages in {elapsed:.1f} s "
        f"({len(received) / elapsed:.0f}/s) on a busy loop"
    )
    assert [json.loads(frame)["data"] for frame in received] == list(range(1, BURST_SIZE + 1))
