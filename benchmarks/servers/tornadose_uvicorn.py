"""tornadose on uvicorn: ``EventSourceApp`` at ``/events``, ``WebSocketApp`` at ``/ws``.

The two ASGI apps sit behind a three-line path switch (no framework), with default
options; the store is the same as on Tornado (default bounds; in memory, or a
``RedisStore`` with ``--redis-url``: see
:func:`benchmarks.servers.base.make_store`). uvloop and httptools are used only if
they are installed (the READY line says).
"""

from __future__ import annotations

from typing import Any

from benchmarks.servers.base import (
    arguments,
    make_store,
    run,
    serve_control,
    start_uvicorn,
    tornadose_contender,
)
from tornadose.adapters.asgi import EventSourceApp, WebSocketApp


async def main() -> None:
    options = arguments(__doc__ or "")
    store, backend = make_store(options)
    events, socket = EventSourceApp(store), WebSocketApp(store)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await socket(scope, receive, send)
        else:
            await events(scope, receive, send)

    port, impl = await start_uvicorn(app)

    contender = tornadose_contender(store, f"{impl}, {backend}")
    await serve_control(contender, port)


if __name__ == "__main__":
    run(main, uvloop_if_installed=True)
