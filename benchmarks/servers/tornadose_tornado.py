"""tornadose on Tornado: ``EventSource`` at ``/events``, ``WebSocketSubscriber`` at ``/ws``.

Handlers are mounted exactly as the README shows, with default options, and the
store has its default bounds (a subscriber cut at full speed shows as lost
messages). The store is in memory, or a ``RedisStore`` with ``--redis-url`` (see
:func:`benchmarks.servers.base.make_store`).
"""

from __future__ import annotations

import tornado
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application

from benchmarks.servers.base import (
    arguments,
    make_store,
    run,
    serve_control,
    tornadose_contender,
)
from tornadose.adapters.tornado import EventSource, WebSocketSubscriber


async def main() -> None:
    options = arguments(__doc__ or "")
    store, backend = make_store(options)
    app = Application(
        [
            (r"/events", EventSource, {"store": store}),
            (r"/ws", WebSocketSubscriber, {"store": store}),
        ]
    )
    sockets = bind_sockets(options.port, "127.0.0.1", backlog=4096)
    HTTPServer(app).add_sockets(sockets)

    contender = tornadose_contender(store, f"tornado {tornado.version} asyncio, {backend}")
    await serve_control(contender, sockets[0].getsockname()[1])


if __name__ == "__main__":
    run(main)
