"""Resuming with Last-Event-ID works the same on every adapter and transport.

Each test runs against Tornado (``EventSource``, ``WebSocketSubscriber``) and ASGI
(``EventSourceApp``, ``WebSocketApp`` under uvicorn), served by the ``serve_store``
fixture, over SSE (httpx-sse) and WebSocket (``websockets``), on real servers. A client
that sends the id of the last message it saw gets a ``tornadose.resumed`` event and
every missed message, or a ``tornadose.reset`` event when they cannot be replayed; then
live messages follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.clients import TIMEOUT, Inbox, sse_client
from tests.conftest import StoreServer, wait_until
from tornadose.core.history import MAX_ID_LENGTH, RESET_EVENT, RESUMED_EVENT
from tornadose.schemas import Envelope
from tornadose.stores import BaseStore, DataStore, QueueStore

#: The longest id uvicorn's WebSocket handshake lets through: ``websockets`` refuses a
#: header or request line over 8192 bytes (``HeaderLineTooLong``) before the app runs.
UVICORN_WEBSOCKET_MAX_ID = 8000


@dataclass(frozen=True)
class Received:
    """One event as the client saw it, whatever the transport."""

    event: str | None  # None for a plain message
    id: str | None
    data: Any  # the payload, decoded from JSON


class Stream(Inbox[Received]):
    """One open client connection; a reader task queues what arrives."""

    def __init__(self) -> None:
        super().__init__()
        #: The raw WebSocket frames (as JSON objects), for checking their keys.
        self.frames: list[dict[str, Any]] = []


@dataclass(frozen=True)
class Endpoint:
    """A store served on a real server, over one transport."""

    store: BaseStore
    url: str
    transport: str  # "sse" or "websocket"
    #: The longest id the server can receive at all (``None``: no limit below 10 KB).
    max_id: int | None = None

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
        opener = self._sse if self.transport == "sse" else self._websocket
        async with opener(url, headers, stream) as reader:
            await wait_until(lambda: bool(set(self.store.subscribers) - before))
            try:
                yield stream
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    async def visit(
        self,
        last_event_id: str | None = None,
        *,
        query: str | None = None,
        on_connect: int = 0,
        live: int = 0,
        quiet: bool = True,
    ) -> list[Received]:
        """One client's visit: connect, take the ``on_connect`` events, publish ``live``
        new messages and take them, then (``quiet``) whatever else arrives within
        :data:`QUIET` s; returns once the server has dropped the client. All it got."""
        async with self.connect(last_event_id, query=query) as stream:
            received = await stream.take(on_connect)
            newest = self.store.stats.published
            publish(self.store, newest + 1, newest + live)
            received += await stream.take(live)
            if quiet:
                received += await stream.rest()
        await disconnected(self.store)
        return received

    @contextlib.asynccontextmanager
    async def _sse(
        self, url: str, headers: dict[str, str], stream: Stream
    ) -> AsyncIterator[asyncio.Task[None]]:
        async with sse_client(url, **headers) as (source, events):
            assert source.response.status_code == 200

            async def read() -> None:
                async for event in events:
                    kind = None if event.event == "message" else event.event
                    stream.queue.put_nowait(
                        Received(kind, event.id or None, json.loads(event.data))
                    )

            yield asyncio.ensure_future(read())

    @contextlib.asynccontextmanager
    async def _websocket(
        self, url: str, headers: dict[str, str], stream: Stream
    ) -> AsyncIterator[asyncio.Task[None]]:
        async with connect(
            url, additional_headers=headers, open_timeout=TIMEOUT, close_timeout=TIMEOUT
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


Serve = Callable[..., Awaitable[Endpoint]]


@pytest.fixture(params=["sse", "websocket"])
def serve(request: pytest.FixtureRequest, serve_store: StoreServer) -> Serve:
    """``endpoint = await serve(store, published=3)``: ``store`` on a real server of each
    adapter (:func:`serve_store`), with the payloads ``1..published`` submitted before
    anyone connects, reached over one transport per parameter."""
    transport = request.param

    async def start(store: BaseStore, *, published: int = 0) -> Endpoint:
        endpoints = await serve_store(store)
        publish(store, 1, published)
        if transport == "sse":
            return Endpoint(store, endpoints.events, transport)
        max_id = UVICORN_WEBSOCKET_MAX_ID if endpoints.adapter == "asgi" else None
        return Endpoint(store, endpoints.ws, transport, max_id)

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
    """The ``tornadose.resumed`` control event (its id is the client's own)."""
    return Received(RESUMED_EVENT, after, {"after": after, "replayed": replayed})


def reset(reason: str, sent: str, newest: str | None) -> Received:
    """The ``tornadose.reset`` control event, whose id is the last id the client will
    not get after it (the newest, or for a DataStore the one before its current value)."""
    return Received(RESET_EVENT, newest, {"reason": reason, "last_event_id": sent})


async def disconnected(store: BaseStore) -> None:
    """Wait until ``store`` has no subscriber left."""
    await wait_until(lambda: not store.subscribers)


async def expired(store: BaseStore) -> None:
    """Wait until ``store``'s history has expired (``history_max_age``)."""
    await wait_until(lambda: len(store.history) == 0)


def sent_via(via: str, sent: str) -> dict[str, str]:
    """The :meth:`Endpoint.visit` keyword sending ``sent`` as the header or the query."""
    return {"last_event_id" if via == "header" else "query": sent}


# -- resuming --------------------------------------------------------------------------


async def test_reconnect_with_header_gets_resumed_then_missed_then_live(serve: Serve) -> None:
    """A client reconnecting with the id it saw last gets resumed, the missed ones, then live."""
    store = QueueStore()
    endpoint = await serve(store)
    seen = await endpoint.visit(live=3)
    assert seen == data(store, 1, 2, 3)
    publish(store, 4, 6)
    received = await endpoint.visit(seen[-1].id, on_connect=4, live=2)
    assert received == [resumed(message_id(store, 3), 3), *data(store, 4, 5, 6, 7, 8)]
    assert (store.stats.replayed, store.stats.resets) == (3, 0)


@dataclass(frozen=True)
class ResumeCase:
    """A store with the payloads 1..5 published, and the offset a client resumes after."""

    after: int
    make_store: Callable[[], BaseStore] = QueueStore
    expire: bool = False  # wait until the store's history has expired


RESUME_CASES = [
    pytest.param(ResumeCase(2), id="missed-three"),
    pytest.param(ResumeCase(5), id="up-to-date"),
    # A client that missed nothing has no gap, even without any history left.
    pytest.param(ResumeCase(5, lambda: QueueStore(history=0)), id="up-to-date-history-zero"),
    pytest.param(
        ResumeCase(5, lambda: QueueStore(history_max_age=0.2), expire=True),
        id="up-to-date-history-expired",
    ),
    # A DataStore client that missed only the latest value gets it once, not twice...
    pytest.param(ResumeCase(4, DataStore), id="data-store-missed-latest"),
    # ... and one that has the current value is not sent it again.
    pytest.param(ResumeCase(5, DataStore), id="data-store-up-to-date"),
]


@pytest.mark.parametrize("via", ["header", "query"])
@pytest.mark.parametrize("case", RESUME_CASES)
async def test_kept_id_gets_resumed_then_missed_then_live(
    serve: Serve, case: ResumeCase, via: str
) -> None:
    """An id with nothing missing after it gets tornadose.resumed, the missed ones, then live."""
    store = case.make_store()
    endpoint = await serve(store, published=5)
    if case.expire:
        await expired(store)
    sent, replayed = message_id(store, case.after), 5 - case.after
    received = await endpoint.visit(**sent_via(via, sent), on_connect=1 + replayed, live=2)
    assert received == [resumed(sent, replayed), *data(store, *range(case.after + 1, 8))]
    assert (store.stats.replayed, store.stats.resets) == (replayed, 0)


@pytest.mark.parametrize("query", ["older-id", "garbage"])
async def test_header_wins_over_query_parameter(serve: Serve, query: str) -> None:
    """With both, replay starts after the header's id, whatever the query parameter holds."""
    store = QueueStore()
    endpoint = await serve(store, published=6)
    sent = message_id(store, 4)
    other = message_id(store, 2) if query == "older-id" else query
    received = await endpoint.visit(sent, query=other, on_connect=3, live=1)
    assert received == [resumed(sent, 2), *data(store, 5, 6, 7)]
    assert (store.stats.replayed, store.stats.resets) == (2, 0)


async def test_empty_id_counts_as_no_id(serve: Serve) -> None:
    """An empty Last-Event-ID header or query parameter means a plain live client."""
    store = QueueStore()
    endpoint = await serve(store)
    assert await endpoint.visit("", query="", live=2) == data(store, 1, 2)


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
    endpoint = await serve(store, published=case.published)
    if case.expire:
        await expired(store)
    sent = case.make_id(store)[: endpoint.max_id]
    received = await endpoint.visit(**sent_via(via, sent), on_connect=1, live=2, quiet=False)
    newest = case.published
    signal = reset(case.reason, sent[:MAX_ID_LENGTH], message_id(store, newest))
    assert received == [signal, *data(store, newest + 1, newest + 2)]  # nothing in between
    assert (store.stats.resets, store.stats.replayed) == (1, 0)


async def test_reset_id_moves_the_client_forward(serve: Serve) -> None:
    """Reconnecting with the reset's id resumes from there instead of resetting again."""
    store = QueueStore(history=5)
    endpoint = await serve(store, published=20)
    [signal] = await endpoint.visit(message_id(store, 2), on_connect=1)
    assert (signal.event, signal.id) == (RESET_EVENT, message_id(store, 20))
    publish(store, 21, 22)
    received = await endpoint.visit(signal.id, on_connect=3)
    assert received == [resumed(message_id(store, 20), 2), *data(store, 21, 22)]
    assert (store.stats.resets, store.stats.replayed) == (1, 2)


# -- DataStore -------------------------------------------------------------------------

DATA_STORE_RESET_CASES = [
    pytest.param(
        ResetCase("history_too_short", lambda s: message_id(s, 2), published=5),
        id="missed-several",
    ),
    pytest.param(
        ResetCase("history_too_short", lambda s: message_id(s, 2), {"history": 1}, 5),
        id="missed-several-history-1",
    ),
    pytest.param(ResetCase("unknown_epoch", other_epoch, published=3), id="other-epoch"),
]


@pytest.mark.parametrize("case", DATA_STORE_RESET_CASES)
async def test_data_store_reset_is_followed_by_current_value(serve: Serve, case: ResetCase) -> None:
    """A DataStore client whose gap cannot be filled gets reset, the current value, then live."""
    store = DataStore(**case.store_options)
    endpoint = await serve(store, published=case.published)
    sent, current = case.make_id(store), case.published
    received = await endpoint.visit(sent, on_connect=2, live=1)
    # The reset's id is the one before the current value, which follows it.
    signal = reset(case.reason, sent, message_id(store, current - 1))
    assert received == [signal, *data(store, current, current + 1)]


async def test_data_store_client_without_id_gets_current_value_only(serve: Serve) -> None:
    """A DataStore client that sends no id gets the current value, no control event."""
    store = DataStore()
    endpoint = await serve(store, published=3)
    assert await endpoint.visit(on_connect=1) == data(store, 3)


# -- QueueStore backlog ----------------------------------------------------------------


async def test_resuming_client_never_gets_the_backlog_twice(serve: Serve) -> None:
    """Messages kept while nobody listened reach a resuming client once, by replay."""
    store = QueueStore()
    endpoint = await serve(store, published=2)  # a backlog for the first (live) client
    assert await endpoint.visit(on_connect=2, live=1) == data(store, 1, 2, 3)
    publish(store, 4, 6)  # in the backlog and in the history
    received = await endpoint.visit(message_id(store, 3), on_connect=4, live=1)
    assert received == [resumed(message_id(store, 3), 3), *data(store, 4, 5, 6, 7)]
    # A later live client: the backlog is gone.
    assert await endpoint.visit(live=1) == data(store, 8)


async def test_reset_client_does_not_get_the_backlog_after_the_signal(serve: Serve) -> None:
    """A client reset while a backlog waits gets the reset, then live messages only."""
    store = QueueStore()
    endpoint = await serve(store, published=3)
    received = await endpoint.visit("garbage", on_connect=1, live=1)
    assert received == [reset("malformed_id", "garbage", message_id(store, 3)), *data(store, 4)]


# -- stats and legacy clients ----------------------------------------------------------


async def test_stats_count_replayed_messages_and_resets(serve: Serve) -> None:
    """store.stats.replayed sums replayed messages and store.stats.resets counts resets."""
    store = QueueStore(history=10)
    endpoint = await serve(store, published=20)
    connections = [
        (message_id(store, 17), 4),  # resumed, 3 replayed
        (message_id(store, 20), 1),  # resumed, 0 replayed
        (message_id(store, 12), 9),  # resumed, 8 replayed
        (message_id(store, 2), 1),  # reset: history too short
        ("nonsense", 1),  # reset: malformed
        (message_id(store, 99), 1),  # reset: unknown id
    ]
    for sent, count in connections:
        await endpoint.visit(sent, on_connect=count, quiet=False)
    assert (store.stats.replayed, store.stats.resets) == (11, 3)
    snapshot = store.snapshot()
    assert (snapshot["replayed"], snapshot["resets"]) == (11, 3)


async def test_client_without_id_gets_no_control_event(serve: Serve) -> None:
    """A client that sends no id sees only plain data messages, never a tornadose.* event."""
    store = QueueStore()
    endpoint = await serve(store, published=2)  # the backlog
    async with endpoint.connect() as stream:
        publish(store, 3, 4)
        received = await stream.take(4)
        rest = await stream.rest()
    assert received == data(store, 1, 2, 3, 4)
    assert rest == []
    for frame in stream.frames:  # WebSocket only: the legacy frame shape
        assert set(frame) == {"data", "id"}
    assert (store.stats.replayed, store.stats.resets) == (0, 0)
