"""Publish over Server-Sent Events and WebSocket from a Starlette app, served by uvicorn.

One store, three routes, each a plain ASGI app from :mod:`tornadose.adapters.asgi`:

* ``GET /events``: Server-Sent Events, one event per message (``data: {...}``);
* ``WS /ws``: WebSocket, one text frame per message (``{"data": {...}, "id": ...}``);
* ``POST /publish``: publish the JSON body as a message (answers ``202 {"id": ...}``).

Run it, subscribe, and publish::

    $ python examples/asgi_app.py --port 8000
    $ curl -N http://127.0.0.1:8000/events
    $ python -m websockets ws://127.0.0.1:8000/ws
    $ curl -X POST -H 'Content-Type: application/json' -d '{"hello": "world"}' \\
        http://127.0.0.1:8000/publish

The same ``app`` runs under ``uvicorn examples.asgi_app:app`` (from the repository
root), or under any other ASGI server.

Ctrl-C (SIGINT) or SIGTERM stops the server cleanly: tornadose ends every open stream
first (SSE responses finish, WebSockets close with code 1001, "going away"), so
uvicorn, which waits for open requests to finish before exiting, is not left waiting
forever. Only a client that stopped reading can hold a connection open (an ASGI app
cannot abort a connection): ``timeout_graceful_shutdown`` bounds that wait.
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from tornadose.adapters.asgi import EventSourceApp, PublishApp, WebSocketApp
from tornadose.stores import QueueStore

# Created at module level, before any event loop runs: stores need no loop.
store = QueueStore()

app = Starlette(
    routes=[
        Route("/events", EventSourceApp(store)),
        WebSocketRoute("/ws", WebSocketApp(store)),
        # No methods=["POST"]: Starlette would answer other methods with its own
        # plain-text 405; the app answers them itself, in JSON, with Allow: POST.
        Route("/publish", PublishApp(store)),
    ]
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (8000)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    # tornadose gives open streams 5 s to end before uvicorn even starts to wait; this
    # bounds uvicorn's own wait for connections to clients that stopped reading.
    uvicorn.run(app, host="127.0.0.1", port=args.port, timeout_graceful_shutdown=3)
