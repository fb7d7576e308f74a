"""The hand-written ASGI baseline on uvicorn: a queue per client, one ``send`` per event.

The plain way to stream SSE from an ASGI app without a library: an unbounded
``asyncio.Queue`` per client, a task watching for ``http.disconnect``, and one
``http.response.body`` message per event. Served by uvicorn exactly as tornadose's
ASGI apps are (same options, uvloop/httptools only if installed).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from benchmarks.servers.base import Contender, arguments, run, serve_control, start_uvicorn

HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]

#: Each connected client's queue (``None`` tells its writer to stop).
queues: set[asyncio.Queue[bytes | None]] = set()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": b"", "more_body": True})
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    async def watch_disconnect() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        queue.put_nowait(None)

    watcher = asyncio.ensure_future(watch_disconnect())
    queues.add(queue)
    try:
        while (event := await queue.get()) is not None:
            await send({"type": "http.response.body", "body": event, "more_body": True})
    except OSError:
        pass
    finally:
        queues.discard(queue)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def main() -> None:
    arguments(__doc__ or "")
    port, impl = await start_uvicorn(app)

    def publish(payload: str, seq: int) -> None:
        event = b"id: %d\ndata: %s\n\n" % (seq, payload.encode())
        for queue in queues:
            queue.put_nowait(event)

    contender = Contender(
        publish=publish,
        subscribers=lambda: len(queues),
        backlog=lambda: sum(q.qsize() for q in queues),
        impl=impl,
    )
    await serve_control(contender, port)


if __name__ == "__main__":
    run(main, uvloop_if_installed=True)
