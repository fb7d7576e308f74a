"""Serve channels from several processes, on Tornado or uvicorn, through Redis.

Every process serves the same channels, backed by ``RedisStore``: a message published
by any process (or by any program, with ``XADD``) reaches the subscribers of every
process, in the same order and with the same ids, so a client may reconnect to any
process and resume where it left off.

* ``ticks``: every process publishes ``{"pid": ..., "server": ..., "n": ...}`` each
  ``--tick`` seconds: a client of any process sees the ticks of all of them;
* ``chat``: ``POST`` a ``{"user": ..., "text": ...}`` to any process.

Run several uvicorn workers, or several Tornado processes, on one port (Redis at
``redis://127.0.0.1:6379/0`` unless ``--redis`` says otherwise)::

    $ python examples/redis_hub.py --server uvicorn --workers 3 --port 8000
    $ python examples/redis_hub.py --server tornado --workers 3 --port 8001
    $ curl -N http://127.0.0.1:8000/ticks/events
    $ curl -d '{"user": "ann", "text": "hi"}' -H 'Content-Type: application/json' \\
          http://127.0.0.1:8001/chat/publish

The two commands above serve the same channels: the Tornado processes' subscribers
see the uvicorn workers' ticks and the other way round. Another program publishes
with ``redis-cli XADD chat MAXLEN '~' 1000 '*' data '{"user": "cli", "text": "hello"}'``.
Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pydantic
import tornado.netutil
import tornado.web
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from tornado.httpserver import HTTPServer

from tornadose.adapters.asgi import ChannelsApp
from tornadose.adapters.tornado import channel_handlers, lifecycle_of
from tornadose.backends.redis.store import RedisStore
from tornadose.http.channels import Channels

HOST = "127.0.0.1"
# Options travel to uvicorn's worker processes in the environment.
_ENV = "TORNADOSE_EXAMPLE_"


class ChatMessage(pydantic.BaseModel):
    """The messages of the ``chat`` channel."""

    user: str = pydantic.Field(min_length=1, max_length=40)
    text: str = pydantic.Field(min_length=1, max_length=500)


def build_channels(redis_url: str, prefix: str) -> Channels:
    """The channels every process serves; ``prefix`` is put before the Redis keys."""
    channels = Channels(title="tornadose Redis hub")
    channels.add(
        "ticks",
        RedisStore(prefix + "ticks", url=redis_url, history=100),
        description="A tick from every process",
    )
    channels.add(
        "chat",
        RedisStore(prefix + "chat", url=redis_url, schema=ChatMessage),
        description="Chat messages, published with POST",
    )
    return channels


async def tick_forever(store: RedisStore, server: str, interval: float) -> None:
    """Publish a tick every ``interval`` seconds; a Redis outage is logged, not fatal."""
    for n in itertools.count():
        store.submit({"pid": os.getpid(), "server": server, "n": n})
        await asyncio.sleep(interval)


# -- uvicorn: one app per worker process --------------------------------------------


def create_app() -> Starlette:
    """The ASGI app of one uvicorn worker (uvicorn calls this in every worker)."""
    channels = build_channels(os.environ[_ENV + "REDIS"], os.environ[_ENV + "PREFIX"])
    channels_app = ChannelsApp(channels)
    interval = float(os.environ[_ENV + "TICK"])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ticks = channels["ticks"].store
        assert isinstance(ticks, RedisStore)
        ticker = asyncio.create_task(tick_forever(ticks, "uvicorn", interval)) if interval else None
        yield
        if ticker is not None:
            ticker.cancel()
        # This app's streams (already drained if a signal stopped uvicorn), then its stores.
        await channels_app.lifecycle.shut_down(close=[channels.aclose])

    return Starlette(routes=[Mount("/", channels_app)], lifespan=lifespan)


def run_uvicorn(args: argparse.Namespace) -> None:
    os.environ.update(
        {_ENV + "REDIS": args.redis, _ENV + "PREFIX": args.prefix, _ENV + "TICK": str(args.tick)}
    )
    print(f"uvicorn, {args.workers} worker(s): http://{HOST}:{args.port}/ticks/events", flush=True)
    uvicorn.run(
        "redis_hub:create_app",
        factory=True,
        app_dir=str(Path(__file__).parent),
        host=HOST,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        timeout_graceful_shutdown=3,
    )


# -- Tornado: forked processes sharing one listening socket ---------------------------


async def serve_tornado(sockets: list[object], args: argparse.Namespace) -> None:
    channels = build_channels(args.redis, args.prefix)
    application = tornado.web.Application(channel_handlers(channels))
    server = HTTPServer(application)
    server.add_sockets(sockets)  # type: ignore[arg-type]
    ticks = channels["ticks"].store
    assert isinstance(ticks, RedisStore)
    ticker = asyncio.create_task(tick_forever(ticks, "tornado", args.tick)) if args.tick else None
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await stop.wait()
    if ticker is not None:
        ticker.cancel()

    async def stop_server() -> None:
        server.stop()
        await asyncio.wait_for(server.close_all_connections(), 5)

    # Drain this server's streams, stop it, then close the stores.
    await lifecycle_of(application).shut_down(stop=stop_server, close=[channels.aclose])


def run_tornado(args: argparse.Namespace) -> None:
    sockets = tornado.netutil.bind_sockets(args.port, HOST)
    address = f"http://{HOST}:{args.port}/ticks/events"
    print(f"tornado, {args.workers} process(es): {address}", flush=True)
    if args.workers == 1:
        asyncio.run(serve_tornado(list(sockets), args))
        return
    # Fork the workers (each runs its own event loop and its own Redis connections);
    # the parent passes SIGINT/SIGTERM on to them and waits until they have stopped.
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            asyncio.run(serve_tornado(list(sockets), args))
            os._exit(0)
        children.append(pid)

    def pass_on(signum: int, frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, pass_on)
    for child in children:
        os.waitpid(child, 0)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", choices=["uvicorn", "tornado"], default="uvicorn")
    parser.add_argument("--workers", type=int, default=2, help="processes (2)")
    parser.add_argument("--port", type=int, default=8000, help="port (8000)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    parser.add_argument("--prefix", default="", help="put before the channels' Redis keys")
    parser.add_argument("--tick", type=float, default=1.0, help="seconds between ticks (0: off)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.server == "uvicorn":
        run_uvicorn(arguments)
    else:
        run_tornado(arguments)
