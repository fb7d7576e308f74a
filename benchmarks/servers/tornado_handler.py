"""The hand-written Tornado baseline: a queue per client, ``write`` + ``flush`` per event.

What one writes without a library: each SSE client (``/events``) and each WebSocket
client (``/ws``) gets an unbounded ``asyncio.Queue``; publishing encodes the message
once per format (the SSE bytes and the JSON text of tornadose's frames) and puts it
in every queue; each client's coroutine takes one event at a time and writes it
(``write`` + ``await flush()`` for SSE, ``await write_message()`` for WebSocket).
"""

from __future__ import annotations

import asyncio
import json

import tornado
from tornado.httpserver import HTTPServer
from tornado.iostream import StreamClosedError
from tornado.netutil import bind_sockets
from tornado.web import Application, RequestHandler
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from benchmarks.servers.base import Contender, arguments, run, serve_control

#: Each connected client's queue (``None`` in a queue tells its writer to stop).
sse_queues: set[asyncio.Queue[bytes | None]] = set()
ws_queues: set[asyncio.Queue[str | None]] = set()


class Events(RequestHandler):
    """SSE: headers at once, then one ``write`` + ``flush`` per event."""

    async def get(self) -> None:
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        sse_queues.add(self.queue)
        try:
            self.flush()
            while (event := await self.queue.get()) is not None:
                self.write(event)
                await self.flush()
        except StreamClosedError:
            pass
        finally:
            sse_queues.discard(self.queue)

    def on_connection_close(self) -> None:
        if hasattr(self, "queue"):
            sse_queues.discard(self.queue)
            self.queue.put_nowait(None)


class Socket(WebSocketHandler):
    """WebSocket: one awaited ``write_message`` per event, from the client's own task."""

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        ws_queues.add(self.queue)
        self.writer = asyncio.ensure_future(self.pump())

    async def pump(self) -> None:
        try:
            while (frame := await self.queue.get()) is not None:
                await self.write_message(frame)
        except (StreamClosedError, WebSocketClosedError):
            pass
        finally:
            ws_queues.discard(self.queue)

    def on_close(self) -> None:
        ws_queues.discard(self.queue)
        self.queue.put_nowait(None)


async def main() -> None:
    options = arguments(__doc__ or "")
    app = Application([(r"/events", Events), (r"/ws", Socket)])
    sockets = bind_sockets(options.port, "127.0.0.1", backlog=4096)
    HTTPServer(app).add_sockets(sockets)

    def publish(payload: str, seq: int) -> None:
        if sse_queues:
            event = b"id: %d\ndata: %s\n\n" % (seq, payload.encode())
            for queue in sse_queues:
                queue.put_nowait(event)
        if ws_queues:
            frame = json.dumps({"data": payload, "id": str(seq)}, separators=(",", ":"))
            for ws_queue in ws_queues:
                ws_queue.put_nowait(frame)

    contender = Contender(
        publish=publish,
        subscribers=lambda: len(sse_queues) + len(ws_queues),
        backlog=lambda: sum(q.qsize() for q in sse_queues) + sum(q.qsize() for q in ws_queues),
        impl=f"tornado {tornado.version} asyncio",
    )
    await serve_control(contender, sockets[0].getsockname()[1])


if __name__ == "__main__":
    run(main)
