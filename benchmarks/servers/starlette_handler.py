"""The plain Starlette handlers on uvicorn: what a user writes in thirty lines.

* ``/events``: a ``StreamingResponse`` over an async generator that reads the
  client's own ``asyncio.Queue`` and yields each SSE event as it comes (Starlette
  sends one ``http.response.body`` per yielded chunk, and cancels the generator
  when the client disconnects);
* ``/ws``: a WebSocket endpoint that accepts, then sends each message of its queue
  with ``await websocket.send_text()``; a task watching ``receive()`` ends it when
  the client goes.

Publishing encodes each message once per format (the SSE bytes tornadose sends; the
JSON text of tornadose's frames) and puts it in every client's unbounded queue.
Served by uvicorn exactly as tornadose's ASGI apps are (same options, uvloop and
httptools only if installed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from benchmarks.servers.base import Contender, arguments, run, serve_control, start_uvicorn

#: Each connected client's queue (``None`` in a WebSocket queue tells it to stop).
sse_queues: set[asyncio.Queue[bytes]] = set()
ws_queues: set[asyncio.Queue[str | None]] = set()


async def events(request: Request) -> StreamingResponse:
    queue: asyncio.Queue[bytes] = asyncio.Queue()

    async def stream() -> AsyncIterator[bytes]:
        sse_queues.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            sse_queues.discard(queue)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


async def socket(websocket: WebSocket) -> None:
    await websocket.accept()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    async def watch_disconnect() -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        queue.put_nowait(None)

    watcher = asyncio.ensure_future(watch_disconnect())
    ws_queues.add(queue)
    try:
        while (frame := await queue.get()) is not None:
            await websocket.send_text(frame)
    except (WebSocketDisconnect, OSError, RuntimeError):
        pass  # the client went while a message was sent
    finally:
        ws_queues.discard(queue)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def main() -> None:
    arguments(__doc__ or "")
    app = Starlette(routes=[Route("/events", events), WebSocketRoute("/ws", socket)])
    port, impl = await start_uvicorn(app)

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
        impl=impl,
    )
    await serve_control(contender, port)


if __name__ == "__main__":
    run(main, uvloop_if_installed=True)
