"""Publish a live stream over Server-Sent Events and WebSocket, in the asyncio style.

The same idea as the 0.2.2 usage example (``examples/seed.py``), written the modern
way: the store is created at module level before any event loop exists, the server
runs inside ``asyncio.run(main(...))``, and an ordinary asyncio task publishes a
message every half second with a plain ``store.submit(...)`` (no ``await`` needed).

Each message is a dict; subscribers receive it as JSON, so even the newline inside
``"text"`` arrives intact:

* ``/events``: Server-Sent Events, one event per message (``data: {"n": 0, ...}``);
* ``/ws``: WebSocket, one text frame per message (``{"data": {"n": 0, ...}, "id": ...}``).

Run it and watch::

    $ python examples/modern.py --port 9000 --store queue
    $ curl -N http://127.0.0.1:9000/events
    $ python -m websockets ws://127.0.0.1:9000/ws

``--store queue`` (the default) delivers every message, in order, to every subscriber;
``--store data`` keeps only the latest value, and a new subscriber gets it at once.

Ctrl-C (SIGINT) or SIGTERM shuts the server down cleanly: the store is closed, which
ends every SSE stream and closes every WebSocket with code 1001 ("going away"), and
the process exits with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import random
import signal

import tornado.web

from tornadose.handlers import EventSource, WebSocketSubscriber
from tornadose.stores import BaseStore, DataStore, QueueStore

STORES: dict[str, type[BaseStore]] = {"queue": QueueStore, "data": DataStore}

#: Seconds between two published messages.
INTERVAL = 0.5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000, help="port on 127.0.0.1 (9000)")
    parser.add_argument(
        "--store", choices=sorted(STORES), default="queue", help="kind of store (queue)"
    )
    return parser.parse_args(argv)


async def publish_forever(store: BaseStore) -> None:
    """Publish a new message every ``INTERVAL`` seconds."""
    for n in itertools.count():
        store.submit({"n": n, "value": random.random(), "text": "line one\nline two"})
        await asyncio.sleep(INTERVAL)


async def main(store: BaseStore, port: int) -> None:
    app = tornado.web.Application(
        [
            (r"/events", EventSource, {"store": store}),
            (r"/ws", WebSocketSubscriber, {"store": store}),
        ]
    )
    server = app.listen(port, "127.0.0.1")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(signum, stop.set)
        except NotImplementedError:  # Windows: no loop signal handlers
            signal.signal(signum, lambda *_: loop.call_soon_threadsafe(stop.set))

    publisher = asyncio.create_task(publish_forever(store))
    print(f"serving http://127.0.0.1:{port}/events and ws://127.0.0.1:{port}/ws", flush=True)
    try:
        await stop.wait()
    finally:
        publisher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publisher
        server.stop()  # accept no new connections
        store.close()  # end every stream: SSE responses finish, WebSockets close with 1001
        await asyncio.wait_for(server.close_all_connections(), 5)
    print("stopped", flush=True)


if __name__ == "__main__":
    args = parse_args()
    # Created at module level, before any event loop runs: stores need no loop.
    store = STORES[args.store]()
    asyncio.run(main(store, args.port))
