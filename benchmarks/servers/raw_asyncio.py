"""The speed limit: a minimal asyncio server writing pre-encoded SSE and WebSocket bytes.

No framework, no per-client queue, no HTTP parsing beyond the request head: a
connection that asks for ``GET /events`` gets the SSE headers, then every event; one
that asks for ``GET /ws`` with a ``Sec-WebSocket-Key`` gets the WebSocket handshake
(RFC 6455, written by hand), then every message as an unmasked text frame. Each
message is encoded once per format (SSE: ``id:`` and ``data:`` lines, the bytes
tornadose sends; WebSocket: the frame of ``{"data":...,"id":"..."}``, the JSON
tornadose sends) and the same bytes object goes to every client of that format. What
a WebSocket client sends after its handshake is ignored (the load client sends
nothing; a real server would answer pings and close frames).

* default: one ``transport.write`` per event per connection (one ``send()`` each);
* ``--coalesce``: events published in the same event-loop iteration are joined
  once and written with one ``transport.write`` per connection.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct

from benchmarks.servers.base import Contender, arguments, run, serve_control

SSE_HEADERS = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Connection: close\r\n\r\n"
)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
#: The GUID of RFC 6455 section 1.3, appended to the client's key for the accept value.
WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: The open streams of each format: protocol -> its transport (insertion-ordered).
sse_streams: dict[asyncio.Protocol, asyncio.WriteTransport] = {}
ws_streams: dict[asyncio.Protocol, asyncio.WriteTransport] = {}


def websocket_accept(head: bytes) -> bytes | None:
    """The 101 answer to a WebSocket upgrade request ``head``, or ``None`` if it has
    no ``Sec-WebSocket-Key``."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            digest = hashlib.sha1(value.strip() + WEBSOCKET_GUID).digest()
            return (
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                + base64.b64encode(digest)
                + b"\r\n\r\n"
            )
    return None


def text_frame(payload: bytes) -> bytes:
    """One final, unmasked WebSocket text frame carrying ``payload`` (UTF-8)."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x81, 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 127, n)
    return head + payload


class StreamProtocol(asyncio.Protocol):
    """One client connection: reads the request head, then only writes."""

    def __init__(self) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self.head = b""
        self.streaming = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.streaming or self.transport is None:
            return  # nothing the client says after its request matters
        self.head += data
        if b"\r\n\r\n" not in self.head:
            return
        head, self.head = self.head, b""
        answer = websocket_accept(head) if head.startswith(b"GET /ws") else None
        if head.startswith(b"GET /events"):
            self.transport.write(SSE_HEADERS)
            sse_streams[self] = self.transport
        elif answer is not None:
            self.transport.write(answer)
            ws_streams[self] = self.transport
        else:
            self.transport.write(NOT_FOUND)
            self.transport.close()
            return
        self.streaming = True

    def connection_lost(self, exc: Exception | None) -> None:
        sse_streams.pop(self, None)
        ws_streams.pop(self, None)


async def main() -> None:
    options = arguments(__doc__ or "")
    loop = asyncio.get_running_loop()
    server = await loop.create_server(StreamProtocol, "127.0.0.1", options.port, backlog=4096)
    pending_sse: list[bytes] = []
    pending_ws: list[bytes] = []
    # The size of the last event of each format, to express buffered bytes in events.
    sse_size, ws_size = [1], [1]

    def encode_sse(payload: str, seq: int) -> bytes:
        event = b"id: %d\ndata: %s\n\n" % (seq, payload.encode())
        sse_size[0] = len(event)
        return event

    def encode_ws(payload: str, seq: int) -> bytes:
        frame = text_frame(
            json.dumps({"data": payload, "id": str(seq)}, separators=(",", ":")).encode()
        )
        ws_size[0] = len(frame)
        return frame

    def publish_each(payload: str, seq: int) -> None:
        if sse_streams:
            event = encode_sse(payload, seq)
            for transport in sse_streams.values():
                transport.write(event)
        if ws_streams:
            frame = encode_ws(payload, seq)
            for transport in ws_streams.values():
                transport.write(frame)

    def flush() -> None:
        for pending, streams in ((pending_sse, sse_streams), (pending_ws, ws_streams)):
            if pending:
                chunk = b"".join(pending)
                pending.clear()
                for transport in streams.values():
                    transport.write(chunk)

    def publish_coalesced(payload: str, seq: int) -> None:
        if not pending_sse and not pending_ws:
            loop.call_soon(flush)  # after everything published in this iteration
        if sse_streams:
            pending_sse.append(encode_sse(payload, seq))
        if ws_streams:
            pending_ws.append(encode_ws(payload, seq))

    def backlog() -> int:
        sse = sum(t.get_write_buffer_size() for t in sse_streams.values()) // sse_size[0]
        ws = sum(t.get_write_buffer_size() for t in ws_streams.values()) // ws_size[0]
        return sse + ws + len(pending_sse) * len(sse_streams) + len(pending_ws) * len(ws_streams)

    contender = Contender(
        publish=publish_coalesced if options.coalesce else publish_each,
        subscribers=lambda: len(sse_streams) + len(ws_streams),
        backlog=backlog,
        impl="asyncio, coalesced writes" if options.coalesce else "asyncio, a write per event",
    )
    await serve_control(contender, server.sockets[0].getsockname()[1])


if __name__ == "__main__":
    run(main)
