"""The fence around Tornado's private API (:mod:`tornadose.adapters.tornado._compat`):
with it (a checked Tornado) and without it (any other version: public API only),
the handlers behave the same.

With it, SSE bytes go straight to the connection's stream once the headers are out
(``write_body``) and WebSocket frames are built once per batch (``send_text_frames``):
checked on the wire (raw sockets, httpx, ``websockets``): every event and frame, the
end of a stream and a connection's reuse, HTTP/1.0, byte-identity with Tornado's own
path, ``compress_response``, a client leaving mid-write, permessage-deflate.
"""

from __future__ import annotations

import re
import socket
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import tornado
import tornado.web
from tornado.iostream import IOStream, StreamBufferFullError, StreamClosedError

from tests.clients import TIMEOUT, recv, sse_client, take, ws_subscribed
from tests.conftest import TornadoStarter, wait_until
from tests.raw_clients import RawHTTP, header_of, read_frame, websocket_handshake
from tests.sse_parser import parse_stream
from tests.stream_writes import stream_writes, watch
from tornadose.adapters.tornado import (
    EventSource,
    JSONErrorHandler,
    WebSocketSubscriber,
    lifecycle_of,
)
from tornadose.adapters.tornado import _compat as compat
from tornadose.core.message import Message
from tornadose.schemas import Envelope
from tornadose.stores import BaseStore, QueueStore

__all__ = ["stream_writes"]  # fixture, autouse

#: Tests of the direct write paths, which exist only on a checked Tornado.
direct_writes = pytest.mark.skipif(
    not compat.PRIVATE_API,
    reason=f"Tornado {tornado.version} is not a checked one: no direct writes to test",
)


def test_private_api_is_used_only_on_a_checked_tornado() -> None:
    """The version check at import decides, from ``tornado.version_info``."""
    low, high = compat.SUPPORTED
    assert (low <= tuple(tornado.version_info[:2]) < high) == compat.PRIVATE_API


@pytest.mark.parametrize("private_api", [True, False])
async def test_websocket_frames_arrive_in_order_with_or_without_private_api(
    tornado_server: TornadoStarter, monkeypatch: pytest.MonkeyPatch, private_api: bool
) -> None:
    """Tornado's frame writer, or the public ``write_message``: the same frames."""
    monkeypatch.setattr(compat, "PRIVATE_API", private_api and compat.PRIVATE_API)
    store = QueueStore()
    base = await tornado_server([(r"/ws", WebSocketSubscriber, {"store": store})])
    async with ws_subscribed(base.replace("http://", "ws://", 1) + "/ws", store) as ws:
        for n in range(50):
            store.submit(n)
        received = [(await recv(ws)).data for _ in range(50)]
    assert received == list(range(50))


class Busy(JSONErrorHandler):
    """A handler failing with a reason of its own."""

    def get(self) -> None:
        raise tornado.web.HTTPError(409, reason="busy right now")


@pytest.mark.parametrize(("private_api", "detail"), [(True, "busy right now"), (False, "Conflict")])
async def test_error_answers_carry_the_reason_or_the_standard_phrase(
    tornado_server: TornadoStarter,
    monkeypatch: pytest.MonkeyPatch,
    private_api: bool,
    detail: str,
) -> None:
    """An ``HTTPError``'s reason is the JSON ``detail``; without private API (another
    Tornado), the status's standard phrase is."""
    monkeypatch.setattr(compat, "PRIVATE_API", private_api and compat.PRIVATE_API)
    base = await tornado_server([(r"/busy", Busy)])
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
        response = await client.get(base + "/busy")
    assert response.status_code == 409
    assert response.json() == {"error": "http_error", "detail": detail}


# -- SSE: bytes straight to the connection's stream ------------------------------------


@dataclass
class Record:
    """What a :class:`RecordingEventSource` saw: ``RequestHandler.flush`` calls, the
    bytes handed to its socket stream (and how many of those writes backed up)."""

    flushes: int = 0
    writes: list[bytes] = field(default_factory=list)
    backed_up: int = 0
    application: tornado.web.Application | None = None
    #: ``SO_SNDBUF`` for the server's socket (``None``: the system's).
    send_buffer: int | None = None


class RecordingEventSource(EventSource):
    """An :class:`EventSource` recording its flushes and its stream's writes."""

    def initialize(self, store: BaseStore, record: Record, **options: Any) -> None:
        super().initialize(store, **options)
        self.record = record
        record.application = self.application
        stream: Any = self.request.connection.stream  # type: ignore[union-attr]
        if record.send_buffer is not None:
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, record.send_buffer)

        def recording(data: bytes, backed_up: bool) -> None:
            record.writes.append(data)
            record.backed_up += backed_up

        watch(stream, recording)

    def flush(self, include_footers: bool = False) -> Any:
        self.record.flushes += 1
        return super().flush(include_footers)


class Plain(tornado.web.RequestHandler):
    """A plain answer, to reuse a connection after a stream."""

    def get(self) -> None:
        self.write("after the stream " * 200)


def sse_rules(store: BaseStore, record: Record, **options: Any) -> list[Any]:
    options = {"heartbeat": 0, **options}
    return [
        (r"/events", RecordingEventSource, {"store": store, "record": record, **options}),
        (r"/plain", Plain),
    ]


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


@pytest.mark.parametrize("private_api", [True, False])
async def test_sse_writes_skip_the_request_handler_once_the_headers_are_out(
    tornado_server: TornadoStarter, monkeypatch: pytest.MonkeyPatch, private_api: bool
) -> None:
    """On a checked Tornado only the headers go through ``RequestHandler.flush``;
    without private API every write does. The events are the same."""
    monkeypatch.setattr(compat, "PRIVATE_API", private_api and compat.PRIVATE_API)
    store, record = QueueStore(), Record()
    base = await tornado_server(sse_rules(store, record))
    async with sse_client(base + "/events") as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        for n in range(10):
            store.submit(n)
            (event,) = await take(events, 1)
            assert event.data == str(n)
        flushes = record.flushes
    assert flushes == (1 if private_api and compat.PRIVATE_API else 11)


@direct_writes
async def test_sse_subscribers_of_one_flush_are_written_the_same_bytes_object(
    tornado_server: TornadoStarter,
) -> None:
    """The chunk of a batch is framed once: every up-to-date subscriber's socket is
    handed the very same bytes object."""
    store, record = QueueStore(), Record()
    base = await tornado_server(sse_rules(store, record))
    async with (
        sse_client(base + "/events") as (_, first),
        sse_client(base + "/events") as (
            _,
            second,
        ),
    ):
        await wait_until(lambda: len(store.subscribers) == 2)
        before = len(record.writes)
        for n in range(3):
            store.submit({"n": n})
        received = [[e.data for e in await take(events, 3)] for events in (first, second)]
        batch = record.writes[before:]
    assert received == [['{"n":0}', '{"n":1}', '{"n":2}']] * 2
    assert len(batch) == 2
    assert batch[0] is batch[1]
    size, _, rest = batch[0].partition(b"\r\n")  # one chunk holding the three events
    assert int(size, 16) == len(rest) - 2
    assert rest.endswith(b"\r\n")
    assert parse_stream(rest[:-2]).events[-1].data == '{"n":2}'


#: Payloads of every kind and size class: empty, one byte, multi-byte UTF-8, lines,
#: over 64 KiB (a chunk size of five hex digits), JSON.
PAYLOADS: list[Any] = [
    "",
    "x",
    "é€😀" * 1000,
    "line one\nline two\n\nline four",
    "z" * 70000,
    {"nested": [1, 2.5, None, "ü"]},
]


@direct_writes
async def test_chunked_sse_is_read_by_httpx_event_by_event(
    tornado_server: TornadoStarter,
) -> None:
    """httpx (h11's strict chunk parser) reads every event, in order, whether the
    events went out one per write or in bursts."""
    store, record = QueueStore(), Record()
    base = await tornado_server(sse_rules(store, record))
    expected = [Message(p, id=None).text for p in PAYLOADS]
    async with sse_client(base + "/events") as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        for payload in PAYLOADS:  # one write each
            store.submit(payload)
            assert [e.data for e in await take(events, 1)] == [Message(payload, id=None).text]
        for _ in range(3):  # bursts: several events per write
            for payload in PAYLOADS:
                store.submit(payload)
            assert [e.data for e in await take(events, len(PAYLOADS))] == expected
    assert record.flushes == 1


def split_stream(body: bytes, retry: int) -> tuple[bytes, int]:
    """The events of a whole SSE body that opened with ``retry: <retry>`` and ended
    with the shutdown hint: (the events' bytes, the hint)."""
    match = re.fullmatch(rb"retry: %d\n\n(.*)retry: (\d+)\n\n" % retry, body, re.DOTALL)
    assert match is not None, body[-200:]
    return match[1], int(match[2])


def assert_events(raw_events: bytes, payloads: list[Any]) -> None:
    """``raw_events`` are exactly the events of ``payloads``, each with its id."""
    events = parse_stream(raw_events).events
    assert [e.data for e in events] == [Message(p, id=None).text for p in payloads]
    rebuilt = b"".join(
        Message(p, id=e.last_event_id).sse for p, e in zip(payloads, events, strict=True)
    )
    assert raw_events == rebuilt


@direct_writes
async def test_sse_ends_intact_and_the_connection_is_reused(
    tornado_server: TornadoStarter,
) -> None:
    """HTTP/1.1 on a raw socket: the chunked body holds the ``retry`` field, every
    event, the shutdown hint, then the last chunk, in that order; the connection then
    serves a second request."""
    store, record = QueueStore(), Record()
    base = await tornado_server(sse_rules(store, record, retry=1500))
    raw = await RawHTTP.connect(port_of(base))
    try:
        raw.send("GET", "/events")
        head = await raw.head()
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert header_of(head, "Transfer-Encoding") == "chunked"
        assert await raw.chunk() == b"retry: 1500\n\n"
        await wait_until(lambda: len(store.subscribers) == 1)
        for payload in PAYLOADS:
            store.submit(payload)
        assert record.application is not None
        assert lifecycle_of(record.application).drain() == 1
        events, hint = split_stream(b"retry: 1500\n\n" + await raw.chunked_body(), 1500)
        assert_events(events, PAYLOADS)
        assert 1000 <= hint <= 5000
        assert record.flushes == 2  # the headers, and finish()
        raw.send("GET", "/plain")
        head = await raw.head()
        assert head.startswith(b"HTTP/1.1 200 "), head
        length = header_of(head, "Content-Length")
        assert length is not None
        assert await raw.exactly(int(length)) == b"after the stream " * 200
    finally:
        raw.abort()


@direct_writes
async def test_sse_over_http_1_0_is_written_as_is_and_ends_with_the_connection(
    tornado_server: TornadoStarter,
) -> None:
    """HTTP/1.0: no chunk framing; the body (``retry``, events, shutdown hint) is
    complete when the server closes the connection."""
    store, record = QueueStore(), Record()
    base = await tornado_server(sse_rules(store, record, retry=1500))
    raw = await RawHTTP.connect(port_of(base))
    try:
        raw.send("GET", "/events", version="HTTP/1.0")
        head = await raw.head()
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert header_of(head, "Transfer-Encoding") is None
        assert header_of(head, "Content-Length") is None
        assert await raw.exactly(len(b"retry: 1500\n\n")) == b"retry: 1500\n\n"
        await wait_until(lambda: len(store.subscribers) == 1)
        for payload in PAYLOADS:
            store.submit(payload)
        assert record.application is not None
        lifecycle_of(record.application).drain()
        events, hint = split_stream(b"retry: 1500\n\n" + await raw.until_eof(), 1500)
        assert_events(events, PAYLOADS)
        assert 1000 <= hint <= 5000
        assert record.flushes == 2
    finally:
        raw.abort()


async def test_sse_over_http_1_0_with_keep_alive_still_ends_with_the_connection(
    tornado_server: TornadoStarter,
) -> None:
    """An HTTP/1.0 client asking for ``Connection: keep-alive`` is answered
    ``Connection: close``: without chunking, only the connection's end can tell it the
    stream ended, and it does end when the server drains."""
    store, record = QueueStore(), Record()
    base = await tornado_server(sse_rules(store, record, retry=1500))
    raw = await RawHTTP.connect(port_of(base))
    try:
        raw.send("GET", "/events", version="HTTP/1.0", Connection="keep-alive")
        head = await raw.head()
        assert header_of(head, "Connection") == "close", head
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit("last")
        assert record.application is not None
        lifecycle_of(record.application).drain()
        body = await raw.until_eof()
        assert b"data: last\n" in body
    finally:
        raw.abort()


@direct_writes
@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
async def test_sse_bytes_on_the_wire_are_tornados_own(
    tornado_server: TornadoStarter, monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    """The whole body, framing included, is byte for byte what Tornado's
    ``write`` + ``flush`` send (private API off) for the same events; with a small
    socket send buffer, so that writes straight to the socket are taken in part and
    finished by ``IOStream.write``."""
    bodies = []
    for private_api in (True, False):
        monkeypatch.setattr(compat, "PRIVATE_API", private_api)
        store, record = QueueStore(), Record(send_buffer=4096)
        base = await tornado_server(sse_rules(store, record, retry=2000))
        raw = await RawHTTP.connect(port_of(base))
        try:
            raw.send("GET", "/events", version=version)
            await raw.head()
            await wait_until(lambda store=store: len(store.subscribers) == 1)
            for payload in PAYLOADS:  # a burst: one write
                store.submit(payload)
            for payload in PAYLOADS[:3]:  # one write each
                written = len(record.writes)
                await wait_until(lambda r=record, n=written: len(r.writes) > n)
                store.submit(payload)
            store.close()
            body = await (raw.until_eof() if version == "HTTP/1.0" else raw.chunked_wire())
        finally:
            raw.abort()
        epoch = re.search(rb"\nid: ([0-9a-f]+)-1\n", body)
        assert epoch is not None, body[:200]
        bodies.append(body.replace(epoch[1], b"e" * len(epoch[1])))  # random per store
        assert record.flushes == (2 if private_api else 2 + 1 + 1 + 3)
    assert bodies[0] == bodies[1]
    assert bodies[0].startswith(b"d\r\nretry: 2000" if version == "HTTP/1.1" else b"retry: 2000")


@direct_writes
async def test_sse_on_a_compressing_app_streams_uncompressed(
    tornado_server: TornadoStarter,
) -> None:
    """``compress_response=True`` gzips the app's other answers, but an event stream
    goes out uncompressed, each event as it is published, straight to the stream."""
    store, record = QueueStore(), Record()
    base = await tornado_server(sse_rules(store, record), compress_response=True)
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
        plain = await client.get(base + "/plain", headers={"Accept-Encoding": "gzip"})
        assert plain.headers.get("Content-Encoding") == "gzip"  # the setting is on
    async with sse_client(base + "/events", **{"Accept-Encoding": "gzip"}) as (source, events):
        assert "Content-Encoding" not in source.response.headers
        await wait_until(lambda: len(store.subscribers) == 1)
        for payload in PAYLOADS:
            store.submit(payload)
            (event,) = await take(events, 1)
            assert event.data == Message(payload, id=None).text
        assert record.flushes == 1


@direct_writes
async def test_a_client_leaving_mid_write_ends_only_its_stream_without_errors(
    tornado_server: TornadoStarter, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that resets its connection while a direct write to it is backed up:
    its stream ends (the subscriber count drops, nothing is cut as slow), another
    client keeps receiving everything, and nothing is logged as a warning or error."""
    caplog.set_level("WARNING")
    store = QueueStore()
    leaving, staying = Record(send_buffer=4096), Record()
    base = await tornado_server(
        [
            (r"/leaving", RecordingEventSource, {"store": store, "record": leaving}),
            (r"/events", RecordingEventSource, {"store": store, "record": staying}),
        ]
    )
    raw = await RawHTTP.connect(port_of(base), receive_buffer=4096)
    try:
        raw.send("GET", "/leaving")
        await raw.head()  # and no more reading
        async with sse_client(base + "/events") as (_, events):
            await wait_until(lambda: len(store.subscribers) == 2)
            big = "b" * 65536
            for n in range(40):
                store.submit(f"{n}:{big}")
                (event,) = await take(events, 1)
                assert event.data == f"{n}:{big}"
                if leaving.backed_up:
                    break
            assert leaving.backed_up, "the writes to the idle client never backed up"
            assert leaving.flushes == 1  # the backed-up write went straight to the stream
            raw.abort()
            await wait_until(lambda: len(store.subscribers) == 1)
            store.submit("still flowing")
            (event,) = await take(events, 1)
            assert event.data == "still flowing"
        await wait_until(lambda: len(store.subscribers) == 0)
    finally:
        raw.abort()
    assert store.stats.slow_disconnects == 0
    assert [r.getMessage() for r in caplog.records if r.levelname != "INFO"] == []


# -- WebSocket: permessage-deflate keeps Tornado's writer ------------------------------


class CompressingSubscriber(WebSocketSubscriber):
    """A :class:`WebSocketSubscriber` offering permessage-deflate."""

    def get_compression_options(self) -> dict[str, Any]:
        return {}


async def test_websocket_with_compression_keeps_tornados_writer(
    tornado_server: TornadoStarter,
) -> None:
    """A client that negotiated permessage-deflate gets compressed frames (RSV1 set,
    inflating to the envelopes), written by Tornado; the ``websockets`` client reads
    every message."""
    store = QueueStore()
    base = await tornado_server([(r"/ws", CompressingSubscriber, {"store": store})])
    messages: list[Any] = [{"n": n, "text": "é" * n * 50} for n in range(30)]
    async with ws_subscribed(base.replace("http://", "ws://", 1) + "/ws", store) as ws:
        assert ws.response is not None
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        assert extensions.startswith("permessage-deflate"), extensions
        for message in messages[:10]:
            store.submit(message)
            assert (await recv(ws)).data == message
        for message in messages[10:]:  # a burst
            store.submit(message)
        assert [(await recv(ws)).data for _ in messages[10:]] == messages[10:]

    raw, head = await websocket_handshake(port_of(base), "/ws", "permessage-deflate")
    try:
        assert (header_of(head, "Sec-WebSocket-Extensions") or "").startswith("permessage-deflate")
        await wait_until(lambda: len(store.subscribers) == 1)
        for message in messages[:5]:
            store.submit(message)
        inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        for message in messages[:5]:
            first, payload = await read_frame(raw)
            assert first == 0x80 | 0x40 | 0x1  # FIN, RSV1 (compressed), text
            text = inflate.decompress(payload + b"\x00\x00\xff\xff").decode()
            assert Envelope.model_validate_json(text).data == message
    finally:
        raw.abort()


@direct_writes
async def test_websocket_without_compression_on_a_compressing_app_gets_shared_frames(
    tornado_server: TornadoStarter,
) -> None:
    """On the same app, a client that offers no compression gets tornadose's own
    uncompressed frames."""
    store = QueueStore()
    base = await tornado_server([(r"/ws", CompressingSubscriber, {"store": store})])
    raw, head = await websocket_handshake(port_of(base), "/ws")
    try:
        assert header_of(head, "Sec-WebSocket-Extensions") is None
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit("plain")
        first, payload = await read_frame(raw)
        assert first == 0x81
        assert Envelope.model_validate_json(payload).data == "plain"
    finally:
        raw.abort()


def _connected_pair() -> tuple[socket.socket, socket.socket, socket.socket]:
    """A listening socket, a client and the server's end of their connection."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    server.setblocking(False)
    return listener, client, server


@pytest.mark.parametrize("direct", [False, True])
async def test_a_write_to_a_reset_connection_reports_the_reset(direct: bool) -> None:
    """A client that reset its connection: ``write_stream`` raises what Tornado's own
    ``IOStream.write`` does (``StreamClosedError`` whose ``real_error`` is the reset)
    and closes the stream, running its close callback."""
    listener, client, server = _connected_pair()
    stream = IOStream(server)
    closed: list[bool] = []
    stream.set_close_callback(lambda: closed.append(True))
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # a reset
    try:

        def write() -> object:
            if direct:
                return compat.write_stream(stream, b"x" * 100)
            return stream.write(b"x" * 100).result()

        with pytest.raises(StreamClosedError) as raised:
            write()
        assert isinstance(raised.value.real_error, ConnectionResetError)
        assert stream.closed()
        await wait_until(lambda: closed == [True])
    finally:
        listener.close()
        stream.close()


async def test_a_stream_with_a_write_buffer_limit_refuses_before_sending_anything() -> None:
    """With ``max_write_buffer_size``, a write over the limit is refused whole, as by
    Tornado: no partial chunk or frame goes out first."""
    listener, client, server = _connected_pair()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    stream = IOStream(server, max_write_buffer_size=64 * 1024)
    try:
        with pytest.raises(StreamBufferFullError):
            compat.write_stream(stream, b"x" * 1_000_000)
        client.settimeout(0.2)
        with pytest.raises(TimeoutError):
            client.recv(1)  # nothing was sent
    finally:
        listener.close()
        client.close()
        stream.close()
