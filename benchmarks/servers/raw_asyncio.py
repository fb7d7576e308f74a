"""The speed limit: a minimal asyncio server writing pre-encoded SSE bytes.

No framework, no per-client queue, no HTTP parsing beyond the request line: each
connection that asks for ``GET /events`` gets the headers, then every event. Each
message is encoded once (``id:`` and ``data:`` lines, the same bytes tornadose
sends) and the same bytes object goes to every client.

* default: one ``transport.write`` per event per connection (one ``send()`` each);
* ``--coalesce``: events published in the same event-loop iteration are joined
  once and written with one ``transport.write`` per connection.
"""

from __future__ import annotations

import asyncio

from benchmarks.servers.base import Contender, arguments, run, serve_control

HEADERS = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream; charset=utf-8\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Connection: close\r\n\r\n"
)
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

#: The open streams: protocol -> its transport (dicts keep insertion order).
streams: dict[asyncio.Protocol, asyncio.WriteTransport] = {}


class SSEProtocol(asyncio.Protocol):
    """One client connection: reads the request head, then only writes."""

    def __init__(self) -> None:
        self.transport: asyncio.WriteTransport | None = None
        self.head = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self in streams or self.transport is None:
            return  # nothing the client says after its request matters
        self.head += data
        if b"\r\n\r\n" not in self.head:
            return
        if self.head.startswith(b"GET /events"):
            self.transport.write(HEADERS)
            streams[self] = self.transport
        else:
            self.transport.write(NOT_FOUND)
            self.transport.close()
        self.head = b""

    def connection_lost(self, exc: Exception | None) -> None:
        streams.pop(self, None)


async def main() -> None:
    options = arguments(__doc__ or "")
    loop = asyncio.get_running_loop()
    server = await loop.create_server(SSEProtocol, "127.0.0.1", options.port, backlog=4096)
    pending: list[bytes] = []
    event_size = [1]  # the size of the last event, to express buffered bytes in events

    def encode(payload: str, seq: int) -> bytes:
        event = b"id: %d\ndata: %s\n\n" % (seq, payload.encode())
        event_size[0] = len(event)
        return event

    def publish_each(payload: str, seq: int) -> None:
        event = encode(payload, seq)
        for transport in streams.values():
            transport.write(event)

    def flush() -> None:
        chunk = b"".join(pending)
        pending.clear()
        for transport in streams.values():
            transport.write(chunk)

    def publish_coalesced(payload: str, seq: int) -> None:
        if not pending:
            loop.call_soon(flush)  # after everything published in this iteration
        pending.append(encode(payload, seq))

    def backlog() -> int:
        buffered = sum(t.get_write_buffer_size() for t in streams.values())
        return buffered // event_size[0] + len(pending) * len(streams)

    contender = Contender(
        publish=publish_coalesced if options.coalesce else publish_each,
        subscribers=lambda: len(streams),
        backlog=backlog,
        impl="asyncio, coalesced writes" if options.coalesce else "asyncio, a write per event",
    )
    await serve_control(contender, server.sockets[0].getsockname()[1])


if __name__ == "__main__":
    run(main)
