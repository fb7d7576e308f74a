"""Resuming with Last-Event-ID works the same on every adapter and transport.

Each test runs against Tornado (``EventSource``, ``WebSocketSubscriber``) and ASGI
(``EventSourceApp``, ``WebSocketApp`` under uvicorn), over SSE (httpx-sse) and
WebSocket (``websockets``), on real servers. A client that sends the id of the last
message it saw gets a ``tornadose.resumed`` event and every missed message, or a
``tornadose.reset`` event when they cannot be replayed; then live messages follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from adapters.asgi import EventSourceApp, WebSocketApp
from adapters.tornado import EventSource, WebSocketSubscriber
from schemas import Envelope
from tests.clients import TIMEOUT
from tests.conftest import TornadoStarter, UvicornStarter, wait_until
from tornadose.history import MAX_ID_LENGTH, RESET_EVENT, RESUMED_EVENT
from tornadose.stores import BaseStore, DataStore, QueueStore

#: Seconds a client waits to make sure that nothing more arrives.
QUIET = 0.2

#: The longest id uvicorn's WebSocket handshake lets through: ``websockets`` refuses a
#: header or request line over 8192 bytes (``HeaderLineTooLong``) before the app runs.
UVICORN_WEBSOCKET_MAX_ID = 8000


@dataclass(frozen=True)
class Received:
    """One event as the client saw it, whatever the transport."""

    event: str | None  # None for a plain message
    id: str | None
    data: Any  # the payload, decoded from JSON


class Stream:
    """One open client connection; a reader task queues what arrives."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Received] = asyncio.Queue()
        #: The raw WebSocket frames (as JSON objects), for checking their keys.
        self.frames: list[dict[str, Any]] = []

    async def take(self, count: int) -> list[Received]:
        """The next ``count`` events, failing after a timeout."""

        async def collect() -> list[Received]:
            return [await self.queue.get() for _ in range(count)]

        return await asyncio.wait_for(collect(), TIMEOUT)

    async def rest(self) -> list[Received]:
        """Whatever else arrives within :data:`QUIET` seconds."""
        await asyncio.sleep(QUIET)
        return [self.queue.get_nowait() for _ in range(self.queue.qsize())]


@dataclass
class Endpoint:
    """A store served on a real server, over one transport."""

    store: BaseStore
    url: str
    transport: str  # "sse" or "websocket"
    #: The longest id the server can receive at all (``None``: no limit below 10 KB).
    max_id: int | None = None
    opened: list[Stream] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def connect(
        self, last_event_id: str | None = None, *, query: str | None = None
    ) -> AsyncIterator[Stream]:
        """Connect, sending ``last_event_id`` as the ``Last-Event-ID`` header and
        ``query`` as the ``last_event_id`` query parameter; yields once the server has
        registered the subscriber."""
        url = self.url if query is None else f"{self.url}?last_event_id={quote(query, safe='')}"
        headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
        before = set(self.store.subscribers)
        stream = Stream()
        self.opened.append(stream)
        opener = self._sse if self.transport == "sse" else self._websocket
        async with opener(url, headers, stream) as reader:
            await wait_until(lambda: bool(set(self.store.subscribers) - before))
            try:
                yield stream
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    @contextlib.asynccontextmanager
    async def _sse(
        self, url: str, headers: dict[str, str], stream: Stream
    ) -> AsyncIterator[asyncio.Task[None]]:
        async with (
            httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client,
            aconnect_sse(client, "GET", url, headers=headers) as source,
        ):
            assert source.response.status_code == 200

            async def read() -> None:
                async for event in source.aiter_sse():
                    kind = None if event.event == "message" else event.event
                    stream.queue.put_nowait(
                        Received(kind, event.id or None, json.loads(event.data))
                    )

            yield asyncio.ensure_future(read())

    @contextlib.asynccontextmanager
    async def _websocket(
        self, url: str, headers: dict[str, str], stream: Stream
    ) -> AsyncIterator[asyncio.Task[None]]:
        ws_url = url.replace("http://", "ws://", 1)
        async with connect(
            ws_url, additional_headers=headers, open_timeout=TIMEOUT, close_timeout=TIMEOUT
        ) as ws:

            async def read() -> None:
                with contextlib.suppress(ConnectionClosed):
                    async for frame in ws:
                        assert isinstance(frame, str)
                        stream.frames.append(json.loads(frame))
                        envelope = Envelope.model_validate_json(frame)
                        stream.queue.put_nowait(
                            Received(envelope.event, envelope.id, envelope.data)
                        )

            yield asyncio.ensure_future(read())


Serve = Callable[[BaseStore], Awaitable[Endpoint]]


@pytest.fixture(params=["tornado-sse", "tornado-websocket", "asgi-sse", "asgi-websocket"])
def serve(
    request: pytest.FixtureRequest,
    tornado_server: TornadoStarter,
    uvicorn_server: UvicornStarter,
) -> Serve:
    """``endpoint = await serve(store)``: ``store`` on a real server, one adapter and
    transport per parameter."""
    adapter, transport = request.param.split("-")

    async def start(store: BaseStore) -> Endpoint:
        if adapter == "tornado":
            handler = EventSource if transport == "sse" else WebSocketSubscriber
            base = await tornado_server([(r"/stream", handler, {"store": store})])
        else:
            app = EventSourceApp(store) if transport == "sse" else WebSocketApp(store)
            base = await uvicorn_server(app)
        if adapter == "asgi" and transport == "websocket":
            return Endpoint(store, base + "/stream", transport, UVICORN_WEBSOCKET_MAX_ID)
        return Endpoint(store, base + "/stream", transport)

    return start


# -- helpers ---------------------------------------------------------------------------


def publish(store: BaseStore, first: int, last: int) -> list[str]:
    """Submit the payloads ``first..last`` (inclusive); return their ids."""
    return [store.submit(n).id or "" for n in range(first, last + 1)]


def message_id(store: BaseStore, number: int) -> str:
    """The id of the ``number``-th message of ``store``."""
    return f"{store.epoch}-{number}"


def data(store: BaseStore, *numbers: int) -> list[Received]:
    """The plain messages with payloads (and offsets) ``numbers``, as received."""
    return [Received(None, message_id(store, n), n) for n in numbers]


def resumed(after: str, replayed: int) -> Received:
    """The ``tornadose.resumed`` control event (it carries no id)."""
    return Received(RESUMED_EVENT, None, {"after": after, "replayed": replayed})


def reset(reason: str, sent: str, newest: str | None) -> Received:
    """The ``tornadose.reset`` control event, whose id is the last id the client will
    not get after it (the newest, or for a DataStore the one before its current value)."""
    return Received(RESET_EVENT, newest, {"reason": reason, "last_event_id": sent})


async def disconnected(store: BaseStore) -> None:
    """Wait until ``store`` has no subscriber left."""
    await wait_until(lambda: not store.subscribers)


# -- resuming --------------------------------------------------------------------------


async def test_reconnect_with_header_gets_resumed_then_missed_then_live(serve: Serve) -> None:
    """A client reconnecting with Last-Event-ID gets resumed, every missed message, then live."""
    store = QueueStore()
    endpoint = await serve(store)
    async with endpoint.connect() as stream:
        publish(store, 1, 3)
        seen = await stream.take(3)
    assert seen == data(store, 1, 2, 3)
    await disconnected(store)

    publish(store, 4, 6)
    async with endpoint.connect(seen[-1].id) as stream:
        replay = await stream.take(4)
        publish(store, 7, 8)
        live = await stream.take(2)
        rest = await stream.rest()

    assert replay == [resumed(message_id(store, 3), 3), *data(store, 4, 5, 6)]
    assert live == data(store, 7, 8)
    assert rest == []
    assert (store.stats.replayed, store.stats.resets) == (3, 0)


async def test_reconnect_with_query_parameter_resumes_the_same_way(serve: Serve) -> None:
    """The last_event_id query parameter resumes exactly like the header."""
    store = QueueStore()
    endpoint = await serve(store)
    publish(store, 1, 5)
    async with endpoint.connect(query=message_id(store, 2)) as stream:
        replay = await stream.take(4)
        publish(store, 6, 6)
        live = await stream.take(1)
        rest = await stream.rest()

    assert replay == [resumed(message_id(store, 2), 3), *data(store, 3, 4, 5)]
    assert live == data(store, 6)
    assert rest == []
    assert store.stats.replayed == 3


async def test_header_wins_over_query_parameter(serve: Serve) -> None:
    """With both, replay starts after the header's id, not the query's."""
    store = QueueStore()
    endpoint = await serve(store)
    publish(store, 1, 6)
    async with endpoint.connect(message_id(store, 4), query=message_id(store, 2)) as stream:
        replay = await stream.take(3)
        publish(store, 7, 7)
        live = await stream.take(1)
        rest = await stream.rest()

    assert replay == [resumed(message_id(store, 4), 2), *data(store, 5, 6)]
    assert live == data(store, 7)
    assert rest == []


async def test_header_wins_even_over_a_malformed_query_parameter(serve: Serve) -> None:
    """A good header resumes even when the query parameter holds garbage."""
    store = QueueStore()
    endpoint = await serve(store)
    publish(store, 1, 3)
    async with endpoint.connect(message_id(store, 2), query="garbage") as stream:
        replay = await stream.take(2)
    assert replay == [resumed(message_id(store, 2), 1), *data(store, 3)]
    assert store.stats.resets == 0


async def test_up_to_date_client_gets_resumed_with_nothing_replayed(serve: Serve) -> None:
    """A client that missed nothing gets resumed with replayed 0, then live messages."""
    store = QueueStore()
    endpoint = await serve(store)
    publish(store, 1, 3)
    async with endpoint.connect(message_id(store, 3)) as stream:
        first = await stream.take(1)
        publish(store, 4, 5)
        live = await stream.take(2)
        rest = await stream.rest()

    assert first == [resumed(message_id(store, 3), 0)]
    assert live == data(store, 4, 5)
    assert rest == []
    assert (store.stats.replayed, store.stats.resets) == (0, 0)


async def test_empty_id_counts_as_no_id(serve: Serve) -> None:
    """An empty Last-Event-ID header or query parameter means a plain live client."""
    store = QueueStore()
    endpoint = await serve(store)
    async with endpoint.connect("", query="") as stream:
        publish(store, 1, 2)
        received = await stream.take(2)
        rest = await stream.rest()
    assert received == data(store, 1, 2)
    assert rest == []


# -- resets ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ResetCase:
    """A store, the id a client resumes with, and the reset reason it must get."""

    reason: str
    make_id: Callable[[BaseStore], str]
    store_options: dict[str, Any] = field(default_factory=dict)
    published: int = 15
    expire: bool = False  # wait until the store's history has expired


def other_epoch(store: BaseStore) -> str:
    """The id of a message of another store (as if ours had restarted)."""
    before_restart = QueueStore()
    publish(before_restart, 1, 3)
    assert before_restart.epoch != store.epoch
    return message_id(before_restart, 2)


RESET_CASES = [
    pytest.param(ResetCase("malformed_id", lambda s: "garbage"), id="garbage"),
    pytest.param(ResetCase("malformed_id", lambda s: "12345"), id="no-dash"),
    pytest.param(ResetCase("malformed_id", lambda s: f"{s.epoch}-"), id="no-offset"),
    pytest.param(ResetCase("malformed_id", lambda s: "-3"), id="no-epoch"),
    pytest.param(ResetCase("malformed_id", lambda s: f"{s.epoch}-0"), id="offset-zero"),
    pytest.param(ResetCase("malformed_id", lambda s: f"{s.epoch}-03"), id="leading-zero"),
    pytest.param(ResetCase("malformed_id", lambda s: f"{s.epoch}-3-4"), id="two-offsets"),
    pytest.param(ResetCase("malformed_id", lambda s: f"{s.epoch.upper()}Z-3"), id="bad-epoch"),
    pytest.param(ResetCase("malformed_id", lambda s: f"{s.epoch}-{'9' * 20}"), id="huge-offset"),
    pytest.param(ResetCase("malformed_id", lambda s: "x" * 10240), id="10KB"),
    pytest.param(ResetCase("malformed_id", lambda s: s.epoch + "-3" * 5000), id="10KB-id-shaped"),
    pytest.param(ResetCase("unknown_epoch", other_epoch), id="other-epoch"),
    pytest.param(ResetCase("unknown_id", lambda s: message_id(s, 16)), id="beyond-newest"),
    pytest.param(ResetCase("unknown_id", lambda s: message_id(s, 10**18)), id="far-beyond-newest"),
    pytest.param(
        ResetCase("history_too_short", lambda s: message_id(s, 5), {"history": 5}),
        id="history-too-short",
    ),
    pytest.param(
        ResetCase(
            "history_too_short",
            lambda s: message_id(s, 13),
            {"history_max_age": 0.2},
            expire=True,
        ),
        id="history-expired",
    ),
    pytest.param(
        ResetCase("history_too_short", lambda s: message_id(s, 14), {"history": 0}),
        id="history-zero",
    ),
]


@pytest.mark.parametrize("via", ["header", "query"])
@pytest.mark.parametrize("case", RESET_CASES)
async def test_unfillable_gap_gives_reset_then_live(
    serve: Serve, case: ResetCase, via: str
) -> None:
    """An id whose gap cannot be filled gets tornadose.reset (with the newest id), then live."""
    store = QueueStore(**case.store_options)
    endpoint = await serve(store)
    publish(store, 1, case.published)
    if case.expire:
        await wait_until(lambda: len(store.history) == 0)
    sent = case.make_id(store)[: endpoint.max_id]
    newest = message_id(store, case.published)
    header, query = (sent, None) if via == "header" else (None, sent)

    async with endpoint.connect(header, query=query) as stream:
        first = await stream.take(1)
        publish(store, case.published + 1, case.published + 2)
        live = await stream.take(2)

    assert first == [reset(case.reason, sent[:MAX_ID_LENGTH], newest)]
    assert live == data(store, case.published + 1, case.published + 2)  # nothing in between
    assert (store.stats.resets, store.stats.replayed) == (1, 0)


async def test_reset_id_moves_the_client_forward(serve: Serve) -> None:
    """Reconnecting with the reset's id resumes from there instead of resetting again."""
    store = QueueStore(history=5)
    endpoint = await serve(store)
    publish(store, 1, 20)
    async with endpoint.connect(message_id(store, 2)) as stream:
        [signal] = await stream.take(1)
    assert signal.event == RESET_EVENT
    assert signal.id == message_id(store, 20)

    publish(store, 21, 22)
    async with endpoint.connect(signal.id) as stream:
        replay = await stream.take(3)
    assert replay == [resumed(message_id(store, 20), 2), *data(store, 21, 22)]
    assert (store.stats.resets, store.stats.replayed) == (1, 2)


async def test_history_zero_still_resumes_an_up_to_date_client(serve: Serve) -> None:
    """With history=0, a client that missed nothing is resumed, not reset."""
    store = QueueStore(history=0)
    endpoint = await serve(store)
    publish(store, 1, 3)
    async with endpoint.connect(message_id(store, 3)) as stream:
        first = await stream.take(1)
        publish(store, 4, 4)
        live = await stream.take(1)
    assert first == [resumed(message_id(store, 3), 0)]
    assert live == data(store, 4)
    assert store.stats.resets == 0


async def test_history_expiry_does_not_reset_an_up_to_date_client(serve: Serve) -> None:
    """Once the history has expired, a client that missed nothing is still resumed."""
    store = QueueStore(history_max_age=0.2)
    endpoint = await serve(store)
    publish(store, 1, 3)
    await wait_until(lambda: len(store.history) == 0)
    async with endpoint.connect(message_id(store, 3)) as stream:
        first = await stream.take(1)
    assert first == [resumed(message_id(store, 3), 0)]


# -- DataStore -------------------------------------------------------------------------


async def test_data_store_exact_resume_gets_latest_value_once(serve: Serve) -> None:
    """A DataStore client that missed only the latest value gets it once, not twice."""
    store = DataStore()
    endpoint = await serve(store)
    publish(store, 1, 3)
    async with endpoint.connect(message_id(store, 2)) as stream:
        replay = await stream.take(2)
        publish(store, 4, 4)
        live = await stream.take(1)
        rest = await stream.rest()
    assert replay == [resumed(message_id(store, 2), 1), *data(store, 3)]
    assert live == data(store, 4)
    assert rest == []


async def test_data_store_up_to_date_client_gets_no_current_value_again(serve: Serve) -> None:
    """A DataStore client that has the current value is not sent it again."""
    store = DataStore()
    endpoint = await serve(store)
    publish(store, 1, 3)
    async with endpoint.connect(message_id(store, 3)) as stream:
        first = await stream.take(1)
        publish(store, 4, 4)
        live = await stream.take(1)
        rest = await stream.rest()
    assert first == [resumed(message_id(store, 3), 0)]
    assert live == data(store, 4)
    assert rest == []


@pytest.mark.parametrize("options", [{}, {"history": 1}], ids=["default", "history-1"])
async def test_data_store_client_that_missed_more_gets_reset_and_current_value(
    serve: Serve, options: dict[str, Any]
) -> None:
    """A DataStore client that missed several values gets reset, then only the current one."""
    store = DataStore(**options)
    endpoint = await serve(store)
    publish(store, 1, 5)
    async with endpoint.connect(message_id(store, 2)) as stream:
        first = await stream.take(2)
        publish(store, 6, 6)
        live = await stream.take(1)
        rest = await stream.rest()
    before_current = message_id(store, 4)  # the current value (5) follows the reset
    assert first == [
        reset("history_too_short", message_id(store, 2), before_current),
        *data(store, 5),
    ]
    assert live == data(store, 6)
    assert rest == []


async def test_data_store_reset_is_followed_by_current_value(serve: Serve) -> None:
    """A DataStore client with an id from before a restart gets reset, then the current value."""
    store = DataStore()
    endpoint = await serve(store)
    publish(store, 1, 3)
    sent = other_epoch(store)
    async with endpoint.connect(sent) as stream:
        first = await stream.take(2)
        rest = await stream.rest()
    assert first == [reset("unknown_epoch", sent, message_id(store, 2)), *data(store, 3)]
    assert rest == []


# -- QueueStore backlog ----------------------------------------------------------------


async def test_resuming_client_never_gets_the_backlog_twice(serve: Serve) -> None:
    """Messages kept while nobody listened reach a resuming client once, by replay."""
    store = QueueStore()
    endpoint = await serve(store)
    publish(store, 1, 2)  # backlog for the first (live) client
    async with endpoint.connect() as stream:
        first = await stream.take(2)
        publish(store, 3, 3)
        first += await stream.take(1)
    assert first == data(store, 1, 2, 3)
    await disconnected(store)

    publish(store, 4, 6)  # in the backlog and in the history
    async with endpoint.connect(message_id(store, 3)) as stream:
        replay = await stream.take(4)
        publish(store, 7, 7)
        live = await stream.take(1)
        rest = await stream.rest()
    assert replay == [resumed(message_id(store, 3), 3), *data(store, 4, 5, 6)]
    assert live == data(store, 7)
    assert rest == []

    await disconnected(store)
    async with endpoint.connect() as stream:  # a later live client: the backlog is gone
        publish(store, 8, 8)
        later = await stream.take(1)
        rest = await stream.rest()
    assert later == data(store, 8)
    assert rest == []


async def test_reset_client_does_not_get_the_backlog_after_the_signal(serve: Serve) -> None:
    """A client reset while a backlog waits gets the reset, then live messages only."""
    store = QueueStore()
    endpoint = await serve(store)
    publish(store, 1, 3)
    async with endpoint.connect("garbage") as stream:
        first = await stream.take(1)
        publish(store, 4, 4)
        live = await stream.take(1)
        rest = await stream.rest()
    assert first == [reset("malformed_id", "garbage", message_id(store, 3))]
    assert live == data(store, 4)
    assert rest == []


# -- stats and legacy clients ----------------------------------------------------------


async def test_stats_count_replayed_messages_and_resets(serve: Serve) -> None:
    """store.stats.replayed sums replayed messages and store.stats.resets counts resets."""
    store = QueueStore(history=10)
    endpoint = await serve(store)
    publish(store, 1, 20)
    connections = [
        (message_id(store, 17), 4),  # resumed, 3 replayed
        (message_id(store, 20), 1),  # resumed, 0 replayed
        (message_id(store, 12), 9),  # resumed, 8 replayed
        (message_id(store, 2), 1),  # reset: history too short
        ("nonsense", 1),  # reset: malformed
        (message_id(store, 99), 1),  # reset: unknown id
    ]
    for sent, count in connections:
        async with endpoint.connect(sent) as stream:
            await stream.take(count)
        await disconnected(store)
    assert (store.stats.replayed, store.stats.resets) == (11, 3)
    snapshot = store.snapshot()
    assert (snapshot["replayed"], snapshot["resets"]) == (11, 3)


async def test_client_without_id_gets_no_control_event(serve: Serve) -> None:
    """A client that sends no id sees only plain data messages, never a tornadose.* event."""
    store = QueueStore()
    endpoint = await serve(store)
    publish(store, 1, 2)  # the backlog
    async with endpoint.connect() as stream:
        publish(store, 3, 4)
        received = await stream.take(4)
        rest = await stream.rest()
    assert received == data(store, 1, 2, 3, 4)
    assert rest == []
    for frame in endpoint.opened[0].frames:  # WebSocket only: the legacy frame shape
        assert set(frame) == {"data", "id"}
    assert (store.stats.replayed, store.stats.resets) == (0, 0)


async def test_data_store_client_without_id_gets_current_value_only(serve: Serve) -> None:
    """A DataStore client that sends no id gets the current value, no control event."""
    store = DataStore()
    endpoint = await serve(store)
    publish(store, 1, 3)
    async with endpoint.connect() as stream:
        first = await stream.take(1)
        rest = await stream.rest()
    assert first == data(store, 3)
    assert rest == []
