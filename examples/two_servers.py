"""Serve the same channels from Tornado and from uvicorn, in one process and one event loop.

One :class:`~tornadose.http.channels.Channels` declaration is mounted on both servers:
``channel_handlers(channels)`` on Tornado, ``ChannelsApp(channels)`` on uvicorn. Both
serve the same URLs from the same store, so every subscriber, on either server, gets
the same messages with the same ids, in the same order. A task publishes a ``Tick``
every half second; a message POSTed to either server reaches the subscribers of both.

Run it and watch::

    $ python examples/two_servers.py --tornado-port 8000 --uvicorn-port 8001
    $ curl -N http://127.0.0.1:8000/ticks/events
    $ python -m websockets ws://127.0.0.1:8001/ticks/ws
    $ curl -d '{"n": -1, "value": 0.5}' -H 'Content-Type: application/json' \\
          http://127.0.0.1:8001/ticks/publish

Ctrl-C (SIGINT) or SIGTERM stops both servers cleanly: each drains its own streams
(SSE responses finish, WebSockets close with 1001, "going away"), both stop, then the
store is closed, and the process exits with status 0. Each server has a lifecycle of
its own (``lifecycle_of(application)``, ``ChannelsApp.lifecycle``): stopping one of
them with ``lifecycle.shut_down(stop=...)`` would leave the other serving.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import signal

import pydantic
import tornado.web
import uvicorn

from tornadose.adapters.asgi import ChannelsApp
from tornadose.adapters.tornado import channel_handlers, lifecycle_of
from tornadose.http.channels import Channels
from tornadose.shutdown import shut_down_together
from tornadose.stores import BaseStore

HOST = "127.0.0.1"
#: Seconds between two published messages.
INTERVAL = 0.5


class Tick(pydantic.BaseModel):
    """The messages of the ``ticks`` channel."""

    n: int
    value: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tornado-port", type=int, default=8000, help="Tornado's port (8000)")
    parser.add_argument("--uvicorn-port", type=int, default=8001, help="uvicorn's port (8001)")
    return parser.parse_args(argv)


async def publish_forever(store: BaseStore) -> None:
    """Publish a new ``Tick`` every ``INTERVAL`` seconds."""
    for n in itertools.count():
        store.submit(Tick(n=n, value=random.random()))
        await asyncio.sleep(INTERVAL)


async def main(tornado_port: int, uvicorn_port: int) -> None:
    channels = Channels()
    channels.add("ticks", schema=Tick, description="A tick every half second")

    application = tornado.web.Application(channel_handlers(channels))
    tornado_server = application.listen(tornado_port, HOST)
    asgi_app = ChannelsApp(channels)
    config = uvicorn.Config(
        asgi_app, host=HOST, port=uvicorn_port, log_level="warning", lifespan="off"
    )
    uvicorn_server = uvicorn.Server(config)

    # asyncio runs this as soon as SIGINT/SIGTERM arrives, even while uvicorn has its
    # own handler (tornadose chains a drain in front of it, so uvicorn does not close
    # the WebSockets with 1012 before they were drained).
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    serving = asyncio.create_task(uvicorn_server.serve())
    publisher = asyncio.create_task(publish_forever(channels["ticks"].store))
    for name, port in (("tornado", tornado_port), ("uvicorn", uvicorn_port)):
        base = f"{HOST}:{port}/ticks"
        print(f"{name}: http://{base}/events ws://{base}/ws http://{base}/publish", flush=True)
    print(f"AsyncAPI: http://{HOST}:{tornado_port}/asyncapi.json", flush=True)

    await stop.wait()
    publisher.cancel()

    async def stop_uvicorn() -> None:
        uvicorn_server.should_exit = True
        await serving  # uvicorn returns once its connections have closed

    async def stop_tornado() -> None:
        tornado_server.stop()  # accept no new connections
        await asyncio.wait_for(tornado_server.close_all_connections(), 5)

    # Each server drains its own streams; once all have ended both stop, then the
    # store they share is closed.
    await shut_down_together(
        [(lifecycle_of(application), stop_tornado), (asgi_app.lifecycle, stop_uvicorn)],
        close=[channels.aclose],
    )
    print("stopped", flush=True)


if __name__ == "__main__":
    args = parse_args()
    asyncio.run(main(args.tornado_port, args.uvicorn_port))
