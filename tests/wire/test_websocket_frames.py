"""tornadose's own server-to-client WebSocket text frames (:mod:`tornadose.wire.websocket`).

Checked three ways, at every length boundary of the frame header (0, 125, 126, 65535,
65536 bytes) and with multi-byte UTF-8 text whose byte length crosses a boundary its
character count does not:

1. against the ``websockets`` library's own frame writer and reader (no server);
2. byte for byte against the frames a real Tornado server writes for
   ``write_message(text)``, read from a raw socket;
3. end to end: a real Tornado server runs :class:`WebSocketSubscriber`, which writes
   these frames itself (:func:`tornadose.adapters.tornado._compat.send_text_frames`),
   and the ``websockets`` client reads every message, also when several frames go out
   in one write.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Generator
from typing import Any, TypeVar

import pytest
import tornado.websocket
from websockets.asyncio.client import ClientConnection
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from tests.clients import TIMEOUT, recv_text, ws_subscribed
from tests.conftest import TornadoStarter, wait_until
from tests.raw_clients import RawHTTP, header_of, websocket_handshake
from tests.stream_writes import stream_writes, watch
from tornadose.adapters.tornado import WebSocketSubscriber
from tornadose.adapters.tornado import _compat as compat
from tornadose.core.message import Message
from tornadose.schemas import Envelope
from tornadose.stores import BaseStore, QueueStore
from tornadose.wire.websocket import text_frame, text_frames

T = TypeVar("T")

#: Texts at each boundary of the payload length, by name; (text, UTF-8 byte length).
TEXTS: dict[str, tuple[str, int]] = {
    "empty": ("", 0),
    "125 ASCII": ("a" * 125, 125),
    "126 ASCII": ("b" * 126, 126),
    "65535 ASCII": ("c" * 65535, 65535),
    "65536 ASCII": ("d" * 65536, 65536),
    "125 bytes in 63 characters": ("é" * 62 + "e", 125),
    "126 bytes in 63 characters": ("é" * 63, 126),
    "126 bytes in 42 three-byte characters": ("€" * 42, 126),
    "128 bytes in 32 four-byte characters": ("😀" * 32, 128),
    "65535 bytes in 32768 characters": ("é" * 32767 + "f", 65535),
    "65536 bytes in 32768 characters": ("é" * 32768, 65536),
    "65536 bytes in 16384 four-byte characters": ("😀" * 16384, 65536),
}
NAMES = list(TEXTS)
#: The payload-length field a frame of each size must carry (RFC 6455, section 5.2).
LENGTH_FORMS = {0: 0, 125: 125, 126: 126, 128: 126, 65535: 126, 65536: 127}


#: Tests of the direct write paths, which exist only on a checked Tornado.
direct_writes = pytest.mark.skipif(
    not compat.PRIVATE_API,
    reason=f"Tornado {tornado.version} is not a checked one: no direct writes to test",
)


def test_the_texts_have_the_byte_lengths_they_are_named_for() -> None:
    for text, size in TEXTS.values():
        assert len(text.encode()) == size
    non_ascii = [text for text, size in TEXTS.values() if len(text) != size]
    assert any(len(t) < 126 <= len(t.encode()) for t in non_ascii)  # crosses 125/126
    assert any(len(t) <= 65535 < len(t.encode()) for t in non_ascii)  # crosses 65535/65536


# -- 1. the frame layout, against the websockets library ---------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_a_frame_is_fin_text_unmasked_with_the_shortest_length(name: str) -> None:
    """FIN + opcode 0x1 (no RSV bits), mask bit clear, the 7-bit, 16-bit or 64-bit
    length form by size, then the UTF-8 payload; the same bytes as ``websockets``
    writes for an unmasked text frame."""
    text, size = TEXTS[name]
    payload = text.encode()
    frame = text_frame(payload)
    assert frame[0] == 0x81
    assert frame[1] & 0x80 == 0  # not masked
    code = frame[1] & 0x7F
    assert code == LENGTH_FORMS[size]
    extended = {126: 2, 127: 8}.get(code, 0)
    length = int.from_bytes(frame[2 : 2 + extended], "big") if extended else code
    assert length == size
    assert frame[2 + extended :] == payload
    assert frame == Frame(Opcode.TEXT, payload).serialize(mask=False)


def test_text_frames_joins_one_frame_per_text_in_order() -> None:
    texts = [text for text, _ in TEXTS.values()]
    assert text_frames(texts) == b"".join(text_frame(t.encode()) for t in texts)
    assert text_frames(texts[1:2]) == text_frame(texts[1].encode())
    assert text_frames([]) == b""


def test_the_websockets_reader_reads_joined_frames_as_separate_texts() -> None:
    """``websockets``' own parser (as a client reads: unmasked frames) gets every text
    back, in order, from the joined bytes."""
    texts = [text for text, _ in TEXTS.values()] * 2
    reader = StreamReader()
    reader.feed_data(text_frames(texts))
    reader.feed_eof()
    parsed: list[str] = []
    for _ in texts:
        frame = run_parser(Frame.parse(reader.read_exact, mask=False))
        assert frame.opcode is Opcode.TEXT
        assert frame.fin
        assert (frame.rsv1, frame.rsv2, frame.rsv3) == (False, False, False)
        parsed.append(bytes(frame.data).decode())
    assert parsed == texts
    assert run_parser(reader.at_eof())  # nothing left over


def run_parser(parser: Generator[None, None, T]) -> T:
    """Run a ``websockets`` parser over data already fed: it must not ask for more."""
    try:
        next(parser)
    except StopIteration as done:
        result: T = done.value
        return result
    pytest.fail("the parser wanted more bytes than the frames hold")


def test_text_without_a_utf8_form_is_refused() -> None:
    """A lone surrogate has no UTF-8 form: refused, not written as broken bytes."""
    with pytest.raises(UnicodeEncodeError):
        text_frames(["fine", "\ud800"])


# -- 2. byte for byte against Tornado's own frames ---------------------------------------


class Speaker(tornado.websocket.WebSocketHandler):
    """Tornado's plain handler: ``write_message(text)`` for each text once open."""

    def initialize(self, texts: list[str]) -> None:
        self.texts = texts

    def open(self, *args: str, **kwargs: str) -> None:
        for text in self.texts:
            self.write_message(text)


async def read_exactly_or_what_came(raw: RawHTTP, size: int) -> bytes:
    """``size`` bytes, or what arrived within 5 s if fewer (to show in the failure)."""
    reader = raw.reader
    received = bytearray()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while len(received) < size:
        try:
            part = await asyncio.wait_for(
                reader.read(size - len(received)), max(deadline - loop.time(), 0)
            )
        except TimeoutError:
            break
        if not part:
            break
        received += part
    return bytes(received)


async def nothing_more(raw: RawHTTP) -> bytes:
    """What arrives within 0.2 s more (``b""``: nothing)."""
    try:
        return await asyncio.wait_for(raw.reader.read(1 << 16), 0.2)
    except TimeoutError:
        return b""


@pytest.mark.parametrize("name", NAMES)
async def test_frames_are_byte_identical_to_tornados(
    tornado_server: TornadoStarter, name: str
) -> None:
    """What Tornado's ``write_message(text)`` puts on the wire (no compression
    negotiated) is exactly ``text_frame(text.encode())``."""
    text, _ = TEXTS[name]
    base = await tornado_server([(r"/speak", Speaker, {"texts": [text]})])
    raw, head = await websocket_handshake(int(base.rsplit(":", 1)[1]), "/speak")
    try:
        assert header_of(head, "Sec-WebSocket-Extensions") is None
        expected = text_frame(text.encode())
        assert await read_exactly_or_what_came(raw, len(expected)) == expected
        assert await nothing_more(raw) == b""
    finally:
        raw.abort()


async def test_joined_frames_are_byte_identical_to_tornados_frames_in_a_row(
    tornado_server: TornadoStarter,
) -> None:
    """Tornado writing every text in turn puts ``text_frames(texts)`` on the wire."""
    texts = [text for text, _ in TEXTS.values()]
    base = await tornado_server([(r"/speak", Speaker, {"texts": texts})])
    raw, _ = await websocket_handshake(int(base.rsplit(":", 1)[1]), "/speak")
    try:
        expected = text_frames(texts)
        assert await read_exactly_or_what_came(raw, len(expected)) == expected
    finally:
        raw.abort()


# -- 3. written by tornadose, read by the websockets client ------------------------------

__all__ = ["stream_writes"]  # fixture, autouse


class RecordingSubscriber(WebSocketSubscriber):
    """A :class:`WebSocketSubscriber` that records every write to its socket stream."""

    def initialize(self, store: BaseStore, writes: list[bytes], **options: Any) -> None:
        super().initialize(store, **options)
        self.writes = writes

    def open(self, *args: str, **kwargs: str) -> None:
        assert self.ws_connection is not None
        stream: Any = self.ws_connection.stream
        # A small send buffer: frames written straight to the socket are taken in
        # part and finished by IOStream.write.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        watch(stream, lambda data, _: self.writes.append(data))
        super().open(*args, **kwargs)


async def subscriber_server(
    tornado_server: TornadoStarter, store: BaseStore, writes: list[bytes]
) -> str:
    base = await tornado_server(
        [(r"/ws", RecordingSubscriber, {"store": store, "writes": writes})],
        websocket_max_message_size=1 << 20,
    )
    return base.replace("http://", "ws://", 1) + "/ws"


async def receive(ws: ClientConnection, count: int) -> list[str]:
    return [await recv_text(ws) for _ in range(count)]


@direct_writes
async def test_the_websockets_client_reads_each_text_written_by_tornadose(
    tornado_server: TornadoStarter,
) -> None:
    """Each text published alone (a write of its own) arrives as the data of its
    envelope, the frame text being exactly the message's ``websocket`` form."""
    store, writes = QueueStore(), list[bytes]()
    url = await subscriber_server(tornado_server, store, writes)
    async with ws_subscribed(url, store, max_size=1 << 20) as ws:
        assert ws.response is not None
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None  # no compression
        for name, (text, _) in TEXTS.items():
            store.submit(text)
            (frame_text,) = await receive(ws, 1)
            envelope = Envelope.model_validate_json(frame_text)
            assert envelope.data == text, name
            assert frame_text == Message(text, id=envelope.id).websocket, name
            assert writes[-1] == text_frame(frame_text.encode()), name  # tornadose's frame
        assert len(writes) == len(TEXTS)  # one write each (the close frame comes after)


@direct_writes
async def test_envelopes_at_each_length_boundary_arrive_intact(
    tornado_server: TornadoStarter,
) -> None:
    """Messages whose envelope (the frame's payload) is exactly 125, 126, 65535 and
    65536 bytes long, in ASCII and in two-byte UTF-8, each read back exactly."""
    store, writes = QueueStore(), list[bytes]()
    url = await subscriber_server(tornado_server, store, writes)
    async with ws_subscribed(url, store, max_size=1 << 20) as ws:
        store.submit("probe")
        probe = Envelope.model_validate_json(await recv_text(ws))
        assert probe.id is not None
        epoch, _, offset = probe.id.rpartition("-")
        expected: list[str] = []
        for n, (size, filler) in enumerate(
            (s, f) for s in (125, 126, 65535, 65536) for f in ("a", "é")
        ):
            message_id = f"{epoch}-{int(offset) + 1 + n}"
            overhead = len(Message("", id=message_id).websocket.encode())
            room = size - overhead
            data = filler * (room // len(filler.encode())) + "z" * (room % len(filler.encode()))
            envelope = Message(data, id=message_id).websocket
            assert len(envelope.encode()) == size
            expected.append(envelope)
            store.submit(data)
            assert await recv_text(ws) == envelope
        assert writes[1:] == [text_frame(e.encode()) for e in expected]


@direct_writes
async def test_several_frames_in_one_write_are_read_as_separate_messages(
    tornado_server: TornadoStarter,
) -> None:
    """A burst published in one loop turn goes out as one write holding every frame;
    the client reads each as its own message, in order."""
    store, writes = QueueStore(), list[bytes]()
    url = await subscriber_server(tornado_server, store, writes)
    texts = [text for text, _ in TEXTS.values()]
    async with ws_subscribed(url, store, max_size=1 << 20) as ws:
        for text in texts:
            store.submit(text)
        frame_texts = await receive(ws, len(texts))
        sent = list(writes)  # before the close frame
    assert [Envelope.model_validate_json(t).data for t in frame_texts] == texts
    assert sent == [text_frames(frame_texts)]


@direct_writes
async def test_subscribers_of_one_flush_are_written_the_same_bytes_object(
    tornado_server: TornadoStarter,
) -> None:
    """The frames of a batch are built once: every up-to-date subscriber's socket is
    handed the very same bytes object."""
    store, writes = QueueStore(), list[bytes]()
    url = await subscriber_server(tornado_server, store, writes)
    async with (
        ws_subscribed(url, store) as first,
        ws_subscribed(url, store) as second,
        ws_subscribed(url, store) as third,
    ):
        for n in range(3):
            store.submit({"n": n})
        received = [await receive(ws, 3) for ws in (first, second, third)]
        sent = list(writes)  # before the close frames
    assert received[0] == received[1] == received[2]
    assert len(sent) == 3
    assert sent[0] is sent[1] is sent[2]
    assert sent[0] == text_frames(received[0])


async def test_a_closing_connection_refuses_frames(tornado_server: TornadoStarter) -> None:
    """Once the server closes, ``send_text_frames`` raises ``WebSocketClosedError``."""
    outcome: list[BaseException | None] = []

    class Closer(tornado.websocket.WebSocketHandler):
        def open(self, *args: str, **kwargs: str) -> None:
            self.close(1000)
            try:
                compat.send_text_frames(self, ["too late"])
                outcome.append(None)
            except tornado.websocket.WebSocketClosedError as exc:
                outcome.append(exc)

    base = await tornado_server([(r"/close", Closer)])
    raw, _ = await websocket_handshake(int(base.rsplit(":", 1)[1]), "/close")
    try:
        await wait_until(lambda: bool(outcome))
        assert isinstance(outcome[0], tornado.websocket.WebSocketClosedError)
        close = await read_exactly_or_what_came(raw, 4)
        assert close == b"\x88\x02\x03\xe8"  # only the close frame (1000), no text frame
    finally:
        raw.abort()
