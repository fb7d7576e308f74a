"""``tornadose.client`` against real servers, and its SSE parser on its own.

Sections:

1. ``tornadose.wire.sse_parser``: the spec's rules, chunk boundaries anywhere (hypothesis),
   agreement with the independent oracle ``tests/sse_parser.py``;
2. small pure helpers of the client (URLs, transports, options);
3. receiving, decoding, schemas, control events: on Tornado and uvicorn (the
   ``serve_store`` fixture), over SSE and WebSocket;
4. failures and reconnection: servers stopped and started again on the same port
   (:class:`Server`), a store replaced by another, error statuses, ``retry``.

Every network wait has a timeout; servers are stopped when each test ends.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

import pydantic
import pytest
import tornado.web
import uvicorn
from hypothesis import given, settings
from hypothesis import strategies as st
from tornado.httpserver import HTTPServer

from tests.conftest import StoreServer, free_port, wait_until
from tests.sse_parser import parse_stream as oracle_parse
from tornadose import MessageValidationError
from tornadose.adapters.asgi import EventSourceApp, WebSocketApp, refuse_websocket, send_answer
from tornadose.adapters.tornado import EventSource, WebSocketSubscriber
from tornadose.auth import Unauthorized
from tornadose.client import (
    ClientError,
    ConnectionFailed,
    ControlEvent,
    Event,
    EventStream,
    InvalidMessage,
    Transport,
    backoff,
    subscribe,
    with_last_event_id,
)
from tornadose.core.history import RESET_EVENT, RESUMED_EVENT
from tornadose.http.answer import error_answer
from tornadose.stores import BaseStore, QueueStore
from tornadose.wire.sse import HEARTBEAT, encode_event, encode_retry
from tornadose.wire.sse_parser import ServerSentEvent, SSEParser, parse

#: Seconds any one step of a test may take.
TIMEOUT = 5.0
#: Seconds a whole reconnection scenario may take.
SCENARIO_TIMEOUT = 30.0
TRANSPORTS: list[Transport] = ["sse", "websocket"]

E = TypeVar("E")


class Reading(pydantic.BaseModel):
    """A typical message model."""

    sensor: str
    value: float


# -- 1. the parser -------------------------------------------------------------------------


def feed_in_pieces(
    raw: bytes, cuts: list[int], parser: SSEParser | None = None
) -> list[ServerSentEvent]:
    """Feed ``raw`` cut at ``cuts`` (sorted offsets) to ``parser`` (a new one by
    default), then close it; return every event."""
    parser = parser or SSEParser()
    events: list[ServerSentEvent] = []
    for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True):
        events += parser.feed(raw[start:end])
    parser.close()
    return events


def cuts_of(raw: bytes, data: st.DataObject, most: int = 20) -> list[int]:
    """Up to ``most`` sorted offsets strictly inside ``raw``, drawn by hypothesis."""
    if len(raw) < 2:
        return []
    return sorted(data.draw(st.sets(st.integers(1, len(raw) - 1), max_size=most)))


def test_parser_dispatches_only_at_a_blank_line() -> None:
    """An event comes out when its blank line arrives, not before; fields build it."""
    parser = SSEParser()
    assert parser.feed(b"event: tick\nid: 7\ndata: a\ndata: b\n") == []
    assert parser.feed(b"\n") == [ServerSentEvent("a\nb", "tick", "7", None)]
    assert parser.last_event_id == "7"


def test_parser_event_type_defaults_to_message() -> None:
    """No ``event`` line, or an empty one, gives the type ``message``."""
    assert parse(b"data: x\n\nevent:\ndata: y\n\n") == [
        ServerSentEvent("x", "message"),
        ServerSentEvent("y", "message"),
    ]


def test_parser_keeps_the_last_id_and_ignores_ids_with_nul() -> None:
    """The id persists across events; an id with NUL is ignored; an empty one clears it."""
    raw = b"id: 1\ndata: a\n\ndata: b\n\nid: 2\x00\ndata: c\n\nid\ndata: d\n\n"
    assert [(e.data, e.id) for e in parse(raw)] == [("a", "1"), ("b", "1"), ("c", "1"), ("d", None)]


def test_parser_updates_the_id_at_a_blank_line_without_data() -> None:
    """A block with only an id dispatches nothing but moves the last event id; an
    unfinished block does not."""
    parser = SSEParser()
    assert parser.feed(b"id: 5\n\nid: 6\n") == []
    assert parser.last_event_id == "5"
    parser.close()
    assert parser.last_event_id == "5"


def test_parser_starts_from_the_id_of_an_earlier_connection() -> None:
    """``last_event_id=`` seeds the parser, as a browser keeps its id across reconnections."""
    parser = SSEParser(last_event_id="e-9")
    assert parser.last_event_id == "e-9"
    assert parser.feed(b"event: tornadose.resumed\ndata: {}\n\nid: e-10\ndata: x\n\n") == [
        ServerSentEvent("{}", "tornadose.resumed", "e-9"),
        ServerSentEvent("x", "message", "e-10"),
    ]


def test_parser_empty_data_buffer_dispatches_nothing() -> None:
    """Comments, heartbeats, retry hints and unknown fields alone dispatch nothing, but
    a bare ``data`` line is an event with empty data."""
    raw = HEARTBEAT + b": x\n\n" + encode_retry(10) + b"foo: bar\n\n" + b"data\n\n"
    assert parse(raw) == [ServerSentEvent("", "message", None, 10)]


@pytest.mark.parametrize(
    ("line", "retry"),
    [
        (b"retry: 1500", 1500),
        (b"retry:0", 0),
        (b"retry: -1", None),
        (b"retry:  5", None),
        (b"retry: 1e3", None),
        ("retry: \u0661".encode(), None),
        ("retry: \u00b2".encode(), None),  # a superscript two is a digit, not an ASCII one
        (b"retry:", None),
        (b"retry: " + b"9" * 5000, None),  # too long for int(): ignored, never raises
    ],
)
def test_parser_retry(line: bytes, retry: int | None) -> None:
    """``retry`` counts only when its value is ASCII digits; it is carried by events."""
    parser = SSEParser()
    (event,) = parser.feed(line + b"\ndata: x\n\n")
    assert parser.retry == retry == event.retry


def test_parser_line_ends_and_bom() -> None:
    """CR, LF and CRLF end lines (also split across chunks); one leading BOM is skipped,
    also when it arrives one byte at a time."""
    raw = "\ufeffdata: a\rdata: b\r\ndata: c\n\r\n".encode()
    expected = [ServerSentEvent("a\nb\nc")]
    assert parse(raw) == expected
    assert feed_in_pieces(raw, list(range(1, len(raw)))) == expected
    assert parse(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n") == []  # a second BOM is content


def test_parser_discards_an_unfinished_event_and_refuses_feed_after_close() -> None:
    """At the end of the stream an unfinished event is lost; feeding afterwards raises."""
    parser = SSEParser()
    assert parser.feed(b"data: complete\n\ndata: unfinished\n") == [ServerSentEvent("complete")]
    parser.close()
    parser.close()  # idempotent
    assert parser.closed
    with pytest.raises(RuntimeError):
        parser.feed(b"\n")


def test_parser_replaces_bytes_that_are_not_utf8() -> None:
    """Invalid UTF-8 becomes U+FFFD; a character split between chunks is decoded whole."""
    assert parse(b"data: caf\xe9\n\n") == [ServerSentEvent("caf\ufffd")]
    raw = "data: é🌪\n\n".encode()
    assert feed_in_pieces(raw, list(range(1, len(raw)))) == [ServerSentEvent("é🌪")]


#: Pieces that matter to the wire format, mixed into generated streams.
PIECES = [
    b"\r",
    b"\n",
    b"\r\n",
    b":",
    b": ",
    b" ",
    b"\xef\xbb\xbf",
    b"\x00",
    b"\xff",
    b"\xc3",
    "é🌪".encode(),
    b"data",
    b"data:",
    b"data: x",
    b"id",
    b"id: 1",
    b"event: e",
    b"retry: 7",
    b"retry: x",
]
raw_streams = st.lists(st.sampled_from(PIECES) | st.binary(max_size=8), max_size=30).map(b"".join)


@settings(max_examples=400, deadline=None)
@given(raw=raw_streams, data=st.data())
def test_parser_any_bytes_any_cuts_same_events_as_the_oracle(
    raw: bytes, data: st.DataObject
) -> None:
    """Whatever the bytes and however they are cut (at random, and between every two
    bytes), the parser dispatches what the independent oracle does, and the same as
    when fed the stream whole."""
    parser = SSEParser()
    pieces = feed_in_pieces(raw, cuts_of(raw, data), parser)
    oracle = oracle_parse(raw)
    assert pieces == parse(raw)
    assert feed_in_pieces(raw, list(range(1, len(raw)))) == pieces  # one byte at a time
    assert [(e.event, e.data, e.id or "") for e in pieces] == [
        (e.type, e.data, e.last_event_id) for e in oracle.events
    ]
    assert (parser.retry, parser.last_event_id or "") == (oracle.retry, oracle.last_event_id)


@settings(max_examples=200, deadline=None)
@given(
    items=st.lists(
        st.tuples(
            st.text(st.characters(codec="utf-8"), max_size=30),
            st.none() | st.sampled_from(["1", "e-2", " x"]),
        ),
        max_size=6,
    ),
    data=st.data(),
)
def test_parser_reads_back_what_tornadose_encodes(
    items: list[tuple[str, str | None]], data: st.DataObject
) -> None:
    """Events written by ``tornadose.wire.sse`` (with heartbeats between) come back exactly,
    CR and CRLF read as LF, whatever the cuts."""
    raw = b"".join(encode_event(text, id=id_) + HEARTBEAT for text, id_ in items)
    events = feed_in_pieces(raw, cuts_of(raw, data))
    expected, last = [], None
    for text, id_ in items:
        last = last if id_ is None else id_
        expected.append((text.replace("\r\n", "\n").replace("\r", "\n"), last))
    assert [(e.data, e.id) for e in events] == expected


# -- 2. helpers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://h/ws", "ws://h/ws?last_event_id=a-1"),
        ("ws://h/ws?token=x%20y&b=", "ws://h/ws?token=x%20y&b=&last_event_id=a-1"),
        ("ws://h/ws?last_event_id=old&x=1", "ws://h/ws?x=1&last_event_id=a-1"),
        ("ws://h/ws?last%5Fevent%5Fid=old", "ws://h/ws?last_event_id=a-1"),
        ("ws://h/ws?#frag", "ws://h/ws?last_event_id=a-1"),
    ],
)
def test_with_last_event_id_sets_one_parameter(url: str, expected: str) -> None:
    """The id is appended to an existing query, replacing an older one; the rest stays."""
    assert with_last_event_id(url, "a-1") == expected


def test_with_last_event_id_percent_encodes() -> None:
    """An id with reserved characters survives the trip through the query."""
    from urllib.parse import parse_qs, urlsplit

    odd = "a&b=c #é/+"
    url = with_last_event_id("ws://h/ws?x=1", odd)
    assert parse_qs(urlsplit(url).query) == {"x": ["1"], "last_event_id": [odd]}


@pytest.mark.parametrize(
    ("url", "transport", "expected"),
    [
        ("http://h/e", None, ("sse", "http://h/e")),
        ("https://h/e", None, ("sse", "https://h/e")),
        ("ws://h/w", None, ("websocket", "ws://h/w")),
        ("WSS://h/w", None, ("websocket", "wss://h/w")),
        ("http://h/w?q=1", "websocket", ("websocket", "ws://h/w?q=1")),
        ("https://h/w", "websocket", ("websocket", "wss://h/w")),
        ("wss://h/e", "sse", ("sse", "https://h/e")),
    ],
)
def test_transport_follows_the_scheme(
    url: str, transport: Transport | None, expected: tuple[str, str]
) -> None:
    """http(s) means SSE, ws(s) WebSocket; an explicit transport adapts the scheme."""
    stream = subscribe(url, transport=transport)
    assert (stream.transport, stream.url) == expected


@pytest.mark.parametrize(
    "bad",
    [
        {"url": "ftp://h/e"},
        {"url": "h/e"},
        {"url": "http://h/e", "transport": "carrier-pigeon"},
        {"url": "http://h/e", "max_delay": 0},
        {"url": "http://h/e", "timeout": 0},
    ],
)
def test_bad_arguments_raise_at_once(bad: dict[str, Any]) -> None:
    """A URL or option that can never work is refused before anything connects."""
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        subscribe(**bad)


# -- helpers for network tests -------------------------------------------------------------


async def take(stream: EventStream[E], count: int) -> list[Event[E] | ControlEvent]:
    """The next ``count`` events of ``stream``, failing after :data:`TIMEOUT`."""
    async with asyncio.timeout(TIMEOUT):
        return [await anext(stream) for _ in range(count)]


async def started(
    stream: EventStream[E], store: BaseStore, count: int
) -> asyncio.Task[list[Event[E] | ControlEvent]]:
    """Start reading ``count`` events in a task (the stream connects on its first read),
    and return once ``store`` has a subscriber."""
    task = asyncio.ensure_future(take(stream, count))
    try:
        await wait_until(lambda: len(store.subscribers) >= 1 or task.done())
    except BaseException:
        task.cancel()
        raise
    if task.done():
        task.result()  # raises what the stream raised
    return task


class Served(Protocol):
    """Where a store is served: conftest's ``Endpoints``, or a :class:`Server`."""

    @property
    def events(self) -> str: ...

    @property
    def ws(self) -> str: ...


def url_of(endpoints: Served, transport: Transport) -> str:
    """The SSE or WebSocket URL of a server."""
    return endpoints.events if transport == "sse" else endpoints.ws


def plain(events: list[Event[E] | ControlEvent]) -> list[Event[E]]:
    """The events that are messages, not control events."""
    return [event for event in events if not isinstance(event, ControlEvent)]


def offset(message_id: str | None) -> int:
    """The offset of an ``<epoch>-<offset>`` id."""
    assert message_id is not None
    return int(message_id.rpartition("-")[2])


# -- 3. receiving --------------------------------------------------------------------------

PAYLOADS: list[Any] = [
    {"sensor": "t1", "value": 1.5, "tags": ["a", None]},
    [1, 2.5, True],
    42,
    None,
    "plain text, not JSON",
    "line one\nline two",
    "héllo 🌪",
]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_receives_messages_with_ids_and_decoded_data(
    serve_store: StoreServer, transport: Transport
) -> None:
    """Every message arrives once, in order, with its id, its payload decoded from JSON
    (text that is not JSON as itself) and its text; ``event`` is ``None``."""
    store = QueueStore()
    endpoints = await serve_store(store, sse={"heartbeat": 0.05})  # heartbeats in between
    async with subscribe(url_of(endpoints, transport)) as stream:
        reading = await started(stream, store, len(PAYLOADS) + 1)
        published = [store.submit(payload) for payload in PAYLOADS]
        await asyncio.sleep(0.15)  # a few heartbeats go by
        named = store.submit({"k": 1}, event="custom")
        events = await reading
        assert stream.last_event_id == named.id
        assert stream.reconnects == 0
    assert [(e.id, e.event) for e in events] == [(p.id, None) for p in published] + [
        (named.id, "custom")
    ]
    assert [e.data for e in events] == [*PAYLOADS, {"k": 1}]
    assert [e.text for e in events[:-1]] == [p.message.text for p in published]
    assert not any(isinstance(e, ControlEvent) for e in events)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_string_payload_keeps_its_type_only_over_websocket(
    serve_store: StoreServer, transport: Transport
) -> None:
    """SSE sends a string as bare text: one that is JSON is decoded. WebSocket keeps it."""
    store = QueueStore()
    endpoints = await serve_store(store)
    async with subscribe(url_of(endpoints, transport)) as stream:
        reading = await started(stream, store, 1)
        store.submit("42")
        (event,) = await reading
    assert event.data == (42 if transport == "sse" else "42")
    assert event.text == "42"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_schema_validates_payloads_into_the_model(
    serve_store: StoreServer, transport: Transport
) -> None:
    """With ``schema``, ``data`` is the model (JSON mode: ``"2.5"`` is not a float but
    ``2`` is); another schema works the same way."""
    store = QueueStore(schema=Reading)
    endpoints = await serve_store(store)
    async with subscribe(url_of(endpoints, transport), schema=Reading) as stream:
        reading = await started(stream, store, 2)
        first = store.submit({"sensor": "t1", "value": 1.5})
        store.submit(Reading(sensor="t2", value=2))
        events = await reading
    assert [e.data for e in events] == [
        Reading(sensor="t1", value=1.5),
        Reading(sensor="t2", value=2),
    ]
    assert events[0].id == first.id
    for event in events:  # typed: once not a ControlEvent, data is a Reading
        assert not isinstance(event, ControlEvent)
        assert event.data.sensor.startswith("t")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_schema_of_strings_over_both_transports(
    serve_store: StoreServer, transport: Transport
) -> None:
    """A ``str`` schema works over SSE too, where strings travel as bare text: a text is
    taken as JSON only if it fits the schema that way. The one ambiguous case (a string
    that is itself a JSON string) is read as JSON over SSE, exactly over WebSocket."""
    store = QueueStore(schema=str)
    endpoints = await serve_store(store)
    texts = ["hello", "42", "null", "[1]", '"quoted"']
    async with subscribe(url_of(endpoints, transport), schema=str) as stream:
        reading = await started(stream, store, len(texts))
        for text in texts:
            store.submit(text)
        events = await reading
    expected = [*texts[:-1], "quoted" if transport == "sse" else '"quoted"']
    assert [e.data for e in events] == expected
    assert [e.text for e in events] == texts


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_message_that_does_not_fit_the_schema_raises(
    serve_store: StoreServer, transport: Transport
) -> None:
    """A message that does not fit raises ``InvalidMessage`` (a
    ``MessageValidationError``) with pydantic's details; the stream goes on after it."""
    store = QueueStore()  # the server does not validate: the client must
    endpoints = await serve_store(store)
    async with subscribe(url_of(endpoints, transport), schema=Reading) as stream:
        reading = await started(stream, store, 1)
        store.submit({"sensor": "t1", "value": 1})
        (good,) = await reading
        bad = store.submit({"sensor": "t1", "value": "not a number"})
        after = store.submit({"sensor": "t2", "value": 3})
        with pytest.raises(MessageValidationError) as caught:
            await take(stream, 1)
        assert isinstance(caught.value, InvalidMessage)
        assert caught.value.id == bad.id
        assert json.loads(caught.value.text) == {"sensor": "t1", "value": "not a number"}
        assert [e["loc"] for e in caught.value.errors] == [["value"]]
        assert stream.last_event_id == bad.id  # received: a reconnection resumes after it
        (next_event,) = await take(stream, 1)
    assert good.data == Reading(sensor="t1", value=1)
    assert (next_event.id, next_event.data) == (after.id, Reading(sensor="t2", value=3))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_control_events_are_yielded_with_decoded_data(
    serve_store: StoreServer, transport: Transport
) -> None:
    """Resuming from ``last_event_id``: ``tornadose.resumed`` (never validated against
    the schema), then the missed messages. A bad id: ``tornadose.reset``."""
    store = QueueStore()
    endpoints = await serve_store(store)
    first, *missed = [store.submit({"sensor": "s", "value": n}) for n in range(3)]
    url = url_of(endpoints, transport)
    async with subscribe(url, last_event_id=first.id, schema=Reading) as stream:
        resumed, *replayed = await take(stream, 3)
    assert isinstance(resumed, ControlEvent)
    assert resumed.resumed
    assert (resumed.event, resumed.id) == (RESUMED_EVENT, first.id)
    assert resumed.data == {"after": first.id, "replayed": 2}
    assert [(e.id, e.data) for e in replayed] == [
        (m.id, Reading(sensor="s", value=n + 1)) for n, m in enumerate(missed)
    ]

    await wait_until(lambda: len(store.subscribers) == 0)
    async with subscribe(url, last_event_id="not-an-id", schema=Reading) as stream:
        reading = await started(stream, store, 2)
        live = store.submit({"sensor": "s", "value": 9})
        reset, message = await reading
    assert isinstance(reset, ControlEvent)
    assert not reset.resumed
    assert (reset.event, reset.id) == (RESET_EVENT, missed[-1].id)
    assert reset.data == {"reason": "malformed_id", "last_event_id": "not-an-id"}
    assert (message.id, message.data) == (live.id, Reading(sensor="s", value=9))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_cancelled_read_loses_nothing(
    serve_store: StoreServer, transport: Transport
) -> None:
    """Timing out a read on a quiet stream keeps the connection: the next read gets the
    next message, on the same connection."""
    store = QueueStore()
    endpoints = await serve_store(store)
    async with subscribe(url_of(endpoints, transport)) as stream:
        for _ in range(3):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(stream), 0.2)
        await wait_until(lambda: len(store.subscribers) == 1)
        published = store.submit("after the timeouts")
        (event,) = await take(stream, 1)
        assert (event.id, event.data) == (published.id, "after the timeouts")
        assert stream.reconnects == 0
        assert len(store.subscribers) == 1


# -- servers that stop and start again on the same port ------------------------------------


class Server:
    """A store served at ``/events`` (SSE) and ``/ws`` (WebSocket) by Tornado or uvicorn.

    Unlike the conftest fixtures it can be stopped (every connection closed at once,
    as a crashed server would) and started again on the same port, with the same
    store or another. It counts requests per path, and answers ``503`` to the next
    :attr:`refuse` requests. Any other path is ``404``.
    """

    def __init__(self, adapter: str, store: BaseStore, **options: Any) -> None:
        self.adapter = adapter
        self.store = store
        self.options = options
        self.port = 0
        self.requests: Counter[str] = Counter()
        self.refuse = 0
        #: Tornado's open WebSockets: ``close_all_connections()`` leaves them alone.
        self.websockets: set[_TornadoWebSocket] = set()
        self._tornado: HTTPServer | None = None
        self._uvicorn: tuple[uvicorn.Server, asyncio.Task[None]] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def events(self) -> str:
        return self.base + "/events"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def refusing(self, path: str) -> bool:
        """Count a request for ``path``; whether to refuse it with ``503``."""
        self.requests[path] += 1
        if self.refuse > 0:
            self.refuse -= 1
            return True
        return False

    async def start(self) -> None:
        if self.adapter == "tornado":
            rules = [
                (r"/events", _TornadoEventSource, {"server": self, **self.options}),
                (r"/ws", _TornadoWebSocket, {"server": self}),
            ]
            app = tornado.web.Application(rules, log_function=self._log_tornado)
            self._tornado = app.listen(self.port, "127.0.0.1")
            self.port = next(iter(self._tornado._sockets.values())).getsockname()[1]
            return
        config = uvicorn.Config(
            self._asgi_app(),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        task = asyncio.ensure_future(server.serve())
        self._uvicorn = (server, task)
        await wait_until(lambda: server.started or task.done(), timeout=10)
        if task.done():
            task.result()
        self.port = server.servers[0].sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every open connection."""
        if self._tornado is not None:
            server, self._tornado = self._tornado, None
            server.stop()
            for handler in list(self.websockets):
                if handler.ws_connection is not None and handler.ws_connection.stream:
                    handler.ws_connection.stream.close()  # as if the process died
            await asyncio.wait_for(server.close_all_connections(), TIMEOUT)
            await wait_until(lambda: not self.websockets)
        if self._uvicorn is not None:
            (server_, task), self._uvicorn = self._uvicorn, None
            for connection in list(server_.server_state.connections):
                connection.transport.close()  # as if the process died
            server_.should_exit = True
            await asyncio.wait_for(task, 10)

    def _log_tornado(self, handler: tornado.web.RequestHandler) -> None:
        if not isinstance(handler, _TornadoEventSource | _TornadoWebSocket):
            self.requests[handler.request.path] += 1  # a 404

    def _asgi_app(self) -> Any:
        sse_app = EventSourceApp(self.store, **self.options)
        ws_app = WebSocketApp(self.store)

        async def app(scope: Any, receive: Any, send: Any) -> None:
            path = scope["path"]
            refused = self.refusing(path)
            apps: dict[str, EventSourceApp | WebSocketApp] = {"/events": sse_app, "/ws": ws_app}
            target = apps.get(path)
            if target is not None and not refused:
                await target(scope, receive, send)
                return
            if refused:
                answer = error_answer(503, "unavailable", "refused for the test")
            else:
                answer = error_answer(404, "not_found", f"nothing at {path}")
            if scope["type"] == "websocket":
                await receive()
                await refuse_websocket(scope, send, answer)
            else:
                await send_answer(send, answer)

        return app


class _TornadoEventSource(EventSource):
    def initialize(self, server: Server, **options: Any) -> None:  # type: ignore[override]
        self.server = server
        super().initialize(server.store, **options)

    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self.server.refusing(self.request.path):
            self.send_error(503)
            return
        await super().get(*args, **kwargs)


class _TornadoWebSocket(WebSocketSubscriber):
    def initialize(self, server: Server) -> None:  # type: ignore[override]
        self.server = server
        super().initialize(server.store)

    def open(self, *args: str, **kwargs: str) -> None:
        self.server.websockets.add(self)
        super().open(*args, **kwargs)

    def on_close(self) -> None:
        self.server.websockets.discard(self)
        super().on_close()

    async def get(self, *args: Any, **kwargs: Any) -> None:
        if self.server.refusing(self.request.path):
            self.send_error(503)
            return
        await super().get(*args, **kwargs)


ServerFactory = Callable[..., Awaitable[Server]]


@pytest.fixture(params=["tornado", "asgi"])
async def server(request: pytest.FixtureRequest) -> AsyncIterator[ServerFactory]:
    """``srv = await server(store, **sse_options)``: a started :class:`Server`, once per
    adapter; every server is stopped when the test ends."""
    servers: list[Server] = []

    async def start(store: BaseStore, **options: Any) -> Server:
        started_server = Server(request.param, store, **options)
        servers.append(started_server)
        await started_server.start()
        return started_server

    yield start
    for each in servers:
        await each.stop()


def drop_subscribers(store: BaseStore) -> None:
    """End every stream of ``store`` from the server side (the subscription closes)."""
    for subscriber in list(store.subscribers):
        store.deregister(subscriber)


# -- 4. failures and reconnection ----------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reconnects_and_resumes_exactly_after_a_server_restart(
    server: ServerFactory, transport: Transport
) -> None:
    """The server stops mid-stream while messages keep coming; it starts again on the
    same port with the same store. The client reconnects by itself and yields every
    message once, in order, after a ``tornadose.resumed`` event."""
    store = QueueStore()
    srv = await server(store, heartbeat=1)
    total, received = 150, []
    published_while_down = 0

    async def publish() -> None:
        for n in range(total):
            store.submit({"n": n})
            await asyncio.sleep(0.004)

    async def read(stream: EventStream[Any]) -> None:
        async for event in stream:
            received.append(event)
            if not isinstance(event, ControlEvent) and event.data["n"] == total - 1:
                return

    async with asyncio.timeout(SCENARIO_TIMEOUT), subscribe(url_of(srv, transport)) as stream:
        reader = asyncio.ensure_future(read(stream))
        await wait_until(lambda: len(store.subscribers) == 1)
        publisher = asyncio.ensure_future(publish())
        try:
            await wait_until(lambda: len(received) >= 20)
            await srv.stop()
            before = store.snapshot()["published"]
            await asyncio.sleep(0.3)  # the publisher goes on; the client finds nobody
            published_while_down = store.snapshot()["published"] - before
            await srv.start()
            await publisher
            await reader
        finally:
            publisher.cancel()
            reader.cancel()
        assert stream.reconnects >= 1

    assert published_while_down > 0
    controls = [e for e in received if isinstance(e, ControlEvent)]
    messages = plain(received)
    assert [e.data["n"] for e in messages] == list(range(total))  # once each, in order
    assert [offset(e.id) for e in messages] == list(range(1, total + 1))
    assert controls, "no tornadose.resumed event"
    assert all(c.event == RESUMED_EVENT for c in controls)
    for position, control in enumerate(received):
        if isinstance(control, ControlEvent):  # it resumes after the message before it
            previous = plain(received[:position])[-1]
            assert control.data["after"] == previous.id == control.id
    # What was published while the server was down came as a replay.
    assert sum(c.data["replayed"] for c in controls) >= published_while_down


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_replaced_store_gives_a_reset_and_the_stream_goes_on(
    server: ServerFactory, transport: Transport
) -> None:
    """The server comes back with a new store (a new epoch): the client yields
    ``tornadose.reset`` carrying the new store's latest id, then its live messages."""
    old = QueueStore()
    srv = await server(old)
    async with asyncio.timeout(SCENARIO_TIMEOUT), subscribe(url_of(srv, transport)) as stream:
        reading = await started(stream, old, 2)
        seen = [old.submit(n) for n in range(2)]
        assert [e.data for e in await reading] == [0, 1]
        await srv.stop()
        new = QueueStore()
        missed = [new.submit(f"missed {n}") for n in range(2)]
        srv.store = new
        await srv.start()
        (reset,) = await take(stream, 1)
        assert stream.last_event_id == missed[-1].id
        live = [new.submit(f"live {n}") for n in range(2)]
        events = await take(stream, 2)
        assert stream.last_event_id == live[-1].id
        assert stream.reconnects == 1
    assert isinstance(reset, ControlEvent)
    assert reset.event == RESET_EVENT
    assert reset.data == {"reason": "unknown_epoch", "last_event_id": seen[-1].id}
    assert reset.id == missed[-1].id  # resuming again would start after the missed ones
    assert [(e.id, e.data) for e in events] == [(m.id, f"live {n}") for n, m in enumerate(live)]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_404_raises_client_error_without_retrying(
    server: ServerFactory, transport: Transport
) -> None:
    """A URL that does not exist raises ``ClientError`` (status, body) after one request."""
    srv = await server(QueueStore())
    url = url_of(srv, transport).replace("/events", "/nowhere").replace("/ws", "/nowhere")
    async with asyncio.timeout(TIMEOUT), subscribe(url) as stream:
        with pytest.raises(ClientError) as caught:
            await anext(stream)
        with pytest.raises(StopAsyncIteration):  # the stream is over, and closed
            await anext(stream)
    assert caught.value.status == 404
    assert caught.value.url == url
    assert srv.requests["/nowhere"] == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_401_from_the_authorize_hook_raises_with_the_body(
    serve_store: StoreServer, transport: Transport
) -> None:
    """A refusal by the authorize hook is not retried: ``ClientError`` with the status
    and tornadose's JSON body. The headers given are sent with the request."""
    calls: list[str | None] = []

    async def authorize(headers: Any, channel: str, action: Any) -> bool:
        calls.append(headers.get("authorization"))
        raise Unauthorized("token required", www_authenticate="Bearer")

    store = QueueStore()
    endpoints = await serve_store(
        store, sse={"authorize": authorize}, websocket={"authorize": authorize}
    )
    url = url_of(endpoints, transport)
    async with (
        asyncio.timeout(TIMEOUT),
        subscribe(url, headers={"Authorization": "Bearer x"}) as stream,
    ):
        with pytest.raises(ClientError) as caught:
            await anext(stream)
    assert caught.value.status == 401
    assert json.loads(caught.value.body)["error"] == "unauthorized"
    assert calls == ["Bearer x"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_5xx_is_retried_until_the_stream_opens(
    server: ServerFactory, transport: Transport
) -> None:
    """``503`` answers are retried with backoff; the stream opens once the server recovers."""
    store = QueueStore()
    srv = await server(store)
    srv.refuse = 3
    path = "/events" if transport == "sse" else "/ws"
    async with subscribe(url_of(srv, transport)) as stream:
        reading = await started(stream, store, 1)
        published = store.submit("through")
        (event,) = await reading
        assert stream.reconnects == 0  # failed attempts are not reconnections
    assert (event.id, event.data) == (published.id, "through")
    assert srv.requests[path] == 4


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reconnect_false_raises_on_5xx_and_on_a_refused_connection(
    server: ServerFactory, transport: Transport
) -> None:
    """With ``reconnect=False`` a 503 raises ``ClientError`` and a closed port
    ``ConnectionFailed``, each after one attempt."""
    srv = await server(QueueStore())
    srv.refuse = 1
    url = url_of(srv, transport)
    async with asyncio.timeout(TIMEOUT):
        async with subscribe(url, reconnect=False) as stream:
            with pytest.raises(ClientError) as caught:
                await anext(stream)
        assert caught.value.status == 503
        await srv.stop()
        async with subscribe(url, reconnect=False) as stream:
            with pytest.raises(ConnectionFailed):
                await anext(stream)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reconnect_false_ends_when_the_stream_ends(
    server: ServerFactory, transport: Transport
) -> None:
    """With ``reconnect=False`` the iteration ends when the server ends the stream."""
    store = QueueStore()
    srv = await server(store)
    async with (
        asyncio.timeout(TIMEOUT),
        subscribe(url_of(srv, transport), reconnect=False) as stream,
    ):
        reading = await started(stream, store, 1)
        store.submit("only")
        assert [e.data for e in await reading] == ["only"]
        drop_subscribers(store)
        rest = [event async for event in stream]
    assert rest == []
    assert stream.reconnects == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_closed_store_ends_the_stream(server: ServerFactory, transport: Transport) -> None:
    """When the store closes the iteration ends: SSE gets ``204`` on reconnection,
    WebSocket a ``1001 store closed``; neither retries for ever."""
    store = QueueStore()
    srv = await server(store)
    path = "/events" if transport == "sse" else "/ws"
    async with asyncio.timeout(TIMEOUT), subscribe(url_of(srv, transport)) as stream:
        reading = await started(stream, store, 1)
        store.submit("last")
        assert [e.data for e in await reading] == ["last"]
        store.close()
        rest = [event async for event in stream]
    assert rest == []
    assert srv.requests[path] == (2 if transport == "sse" else 1)


@pytest.mark.parametrize(("retry", "low", "high"), [(None, 0.0, 0.6), (800, 0.8, 2.5)])
async def test_the_server_retry_sets_the_reconnection_delay(
    server: ServerFactory, retry: int | None, low: float, high: float
) -> None:
    """The first reconnection waits the server's ``retry`` (1 to 1.5 times it); without
    one, about 0.1 s."""
    store = QueueStore()
    srv = await server(store, retry=retry)
    async with asyncio.timeout(SCENARIO_TIMEOUT), subscribe(srv.events) as stream:
        reading = await started(stream, store, 1)
        store.submit("before")
        await reading
        assert stream.retry == retry
        reader = asyncio.ensure_future(take(stream, 2))  # reading: the client sees the end
        dropped = time.monotonic()
        drop_subscribers(store)
        await wait_until(lambda: len(store.subscribers) == 1 or reader.done(), timeout=10)
        elapsed = time.monotonic() - dropped
        after = store.submit("after")
        events = await reader
    assert low <= elapsed <= high, elapsed
    assert stream.reconnects == 1
    assert [e.event for e in events] == [RESUMED_EVENT, None]
    assert events[1].id == after.id


async def test_an_idle_sse_stream_is_replaced_after_timeout(serve_store: StoreServer) -> None:
    """Over SSE, ``timeout`` seconds without a byte (heartbeats off here) replace the
    connection, resuming exactly."""
    store = QueueStore()
    endpoints = await serve_store(store, sse={"heartbeat": 0})
    async with subscribe(endpoints.events, timeout=0.3) as stream:
        reading = await started(stream, store, 1)
        first = store.submit("first")
        await reading
        received: list[Event[Any] | ControlEvent] = []

        async def read_to_message() -> None:
            async for event in stream:
                received.append(event)
                if not isinstance(event, ControlEvent):
                    return

        reader = asyncio.ensure_future(read_to_message())
        await asyncio.sleep(0.8)  # the connection is replaced, maybe more than once
        last = store.submit("second")
        await asyncio.wait_for(reader, TIMEOUT)
        assert stream.reconnects >= 1
    *controls, event = received
    assert controls
    for control in controls:  # each new connection resumed exactly after "first"
        assert isinstance(control, ControlEvent)
        assert control.data["after"] == first.id
    assert (event.id, event.data) == (last.id, "second")


async def test_a_quiet_websocket_is_kept_whatever_the_timeout(serve_store: StoreServer) -> None:
    """Over WebSocket ``timeout`` bounds connecting and pongs, not silence."""
    store = QueueStore()
    endpoints = await serve_store(store)
    async with subscribe(endpoints.ws, timeout=0.3) as stream:
        reading = await started(stream, store, 1)
        await asyncio.sleep(0.8)
        last = store.submit("after a silence")
        (event,) = await reading
        assert stream.reconnects == 0
    assert event.id == last.id


def test_event_classes() -> None:
    """Events are immutable values; a control event is an Event."""
    event: Event[int] = Event(1, "1", "e-1")
    assert event.event is None
    with pytest.raises(AttributeError):
        event.data = 2  # type: ignore[misc]
    assert issubclass(ControlEvent, Event)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_closing_from_another_task_ends_the_iteration(
    serve_store: StoreServer, transport: Transport
) -> None:
    """``aclose()`` while another task waits for the next event ends that iteration
    quietly, and the server sees the client go."""
    store = QueueStore()
    endpoints = await serve_store(store)
    stream = subscribe(url_of(endpoints, transport))
    received: list[Any] = []

    async def consume() -> None:
        async for event in stream:
            received.append(event.data)

    consumer = asyncio.ensure_future(consume())
    await wait_until(lambda: len(store.subscribers) == 1)
    store.submit("one")
    await wait_until(lambda: received == ["one"])
    await stream.aclose()
    await asyncio.wait_for(consumer, TIMEOUT)  # ended, without raising
    await wait_until(lambda: len(store.subscribers) == 0)
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


@pytest.mark.parametrize(("missing", "url"), [("httpx", "http://h/e"), ("websockets", "ws://h/w")])
def test_each_transport_needs_only_its_own_package(missing: str, url: str) -> None:
    """``import tornadose`` and ``import tornadose.client`` work without the client
    extra; the first read then says which package the transport needs."""
    program = f"""
import asyncio, sys
sys.modules[{missing!r}] = None  # as if it were not installed
import tornadose
assert "tornadose.client" not in sys.modules
import tornadose.client
async def main():
    async with tornadose.client.subscribe({url!r}) as stream:
        await anext(stream)
try:
    asyncio.run(main())
except ImportError as exc:
    print(exc)
"""
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert f"needs {missing}: pip install 'tornadose[client]'" in result.stdout


@pytest.mark.parametrize("scheme", ["http", "ws"])
async def test_aclose_ends_an_iteration_waiting_to_reconnect(scheme: str) -> None:
    """``aclose()`` from another task ends an iteration that is retrying a server that
    is down, at once, and leaves no HTTP client behind."""
    stream = subscribe(f"{scheme}://127.0.0.1:{free_port()}/x", max_delay=0.5)
    reading = asyncio.create_task(anext(stream, None))
    await asyncio.sleep(0.8)  # a few failed attempts: it is between two of them now
    assert not reading.done()
    await stream.aclose()
    assert await asyncio.wait_for(reading, 1.0) is None
    assert stream._http is None


# -- the wait between attempts (tornadose.client.backoff), on its own -----------------------


@pytest.mark.parametrize(
    ("retry", "failures", "max_delay", "low", "high"),
    [
        (None, 0, 5.0, 0.1, 0.15),  # INITIAL_DELAY, up to 1.5 times it
        (None, 3, 5.0, 0.8, 1.2),  # doubled per failure
        (2000, 0, 5.0, 2.0, 3.0),  # the server's retry is the base
        (None, 40, 5.0, 5.0, 5.0),  # capped, jitter included
        (60_000, 0, 5.0, 5.0, 5.0),  # a retry over max_delay is capped too
    ],
)
def test_backoff_doubles_from_the_retry_adds_jitter_and_stays_under_the_cap(
    retry: int | None, failures: int, max_delay: float, low: float, high: float
) -> None:
    delays = [backoff.delay(retry, failures, max_delay) for _ in range(200)]
    assert all(low <= delay <= high for delay in delays), (min(delays), max(delays))
    if low < high:  # the jitter spreads the waits
        assert max(delays) - min(delays) > (high - low) / 4


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        (500, True),
        (503, True),
        (408, True),
        (425, True),
        (429, True),
        (404, False),
        (401, False),
        (422, False),
    ],
)
def test_backoff_retries_only_answers_that_may_fix_themselves(status: int, retried: bool) -> None:
    assert backoff.retried(status) is retried
