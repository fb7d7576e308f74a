"""``tornadose serve module:attribute``: serve the user's channels on Tornado or uvicorn.

One process: the server runs until ``SIGINT``/``SIGTERM``, then its own lifecycle
shuts it down (:meth:`~tornadose.delivery.lifecycle.Lifecycle.shut_down`: drain its
streams, wait for them, stop the server, close the channels' stores). Several
processes: forked Tornado processes sharing the listening sockets
(:mod:`tornadose.cli.workers`), or uvicorn's worker processes, which import the
channels again through :func:`worker_app` and stop through the app's lifespan.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
from typing import Any

from tornadose.cli.servers import (
    GRACEFUL_TIMEOUT,
    raise_failure,
    stop_requested,
    stop_tornado,
    stop_uvicorn,
    until_stopped,
    uvicorn_server,
)
from tornadose.cli.target import (
    channel_urls,
    check_redis,
    load_channels,
    require,
    require_uvicorn,
)
from tornadose.cli.workers import fork_workers
from tornadose.http.channels import REDIS_URL_VARIABLE, Channels

__all__ = ["TARGET_VARIABLE", "serve", "worker_app"]

#: The environment variable that tells uvicorn's worker processes what to serve.
TARGET_VARIABLE = "TORNADOSE_SERVE_TARGET"


def serve(args: argparse.Namespace) -> int:
    """Run ``tornadose serve`` as parsed into ``args``; returns the exit status.

    Raises :class:`~tornadose.cli.target.UsageError` for a bad command line, before
    anything listens: a missing extra, a ``--redis`` (or, without it, a
    ``TORNADOSE_REDIS_URL``) that is not a reachable Redis, a target that fails to
    import, raises, is an ``async def`` factory or names no ``Channels``.
    """
    if args.server == "uvicorn":
        require_uvicorn("tornadose[asgi]")
    else:
        require("tornadose[tornado]", "tornado")
    if args.redis:
        require("tornadose[redis]", "redis")
        check_redis(args.redis)
        os.environ[REDIS_URL_VARIABLE] = args.redis
    elif os.environ.get(REDIS_URL_VARIABLE):  # read by Channels: checked the same way
        require("tornadose[redis]", "redis")
        check_redis(os.environ[REDIS_URL_VARIABLE], source=REDIS_URL_VARIABLE)
    _import_from_cwd()
    channels = load_channels(args.target)
    # uvicorn's workers bind the port themselves: for them, only check it is free.
    uvicorn_workers = args.server == "uvicorn" and args.workers > 1
    try:
        sockets = _bind(args.host, args.port, args.server, listen=not uvicorn_workers)
    except OSError as exc:
        where = f"{args.host}:{args.port}"
        print(f"tornadose serve: cannot listen on {where}: {exc.strerror}", file=sys.stderr)
        return 1
    _announce(channels, args)
    if uvicorn_workers:
        return _serve_uvicorn_workers(args)
    if args.server == "uvicorn":
        asyncio.run(_serve_uvicorn(channels, sockets))
        return 0
    if args.workers == 1:
        asyncio.run(_serve_tornado(channels, sockets))
        return 0
    return fork_workers(args.workers, lambda: asyncio.run(_serve_tornado(channels, sockets)))


def _import_from_cwd() -> None:
    """Put the current directory on the import path, as ``python -m`` does."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def _bind(host: str, port: int, server: str, *, listen: bool) -> list[socket.socket]:
    """Listening sockets for ``host:port``, as ``server`` wants them (Tornado: one per
    address family of ``host``); with ``listen=False`` only check that the port can be
    bound, and return none."""
    if not listen:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
        return []
    if server == "tornado":
        import tornado.netutil

        return tornado.netutil.bind_sockets(port, host)
    from tornadose._compat.sockets import listening_socket

    return [listening_socket(host, port)]


def _announce(channels: Channels, args: argparse.Namespace) -> None:
    host = args.host if args.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    base = f"http://{f'[{host}]' if ':' in host else host}:{args.port}"
    processes = f", {args.workers} processes" if args.workers > 1 else ""
    print(f"tornadose serve: {args.target} on {args.server}{processes}", flush=True)
    for line in channel_urls(channels, base):
        print(line, flush=True)
    if args.workers > 1 and not os.environ.get(REDIS_URL_VARIABLE):
        print(
            "tornadose serve: warning: without --redis each process has channels of its "
            "own (a message published to one process reaches its subscribers only)",
            file=sys.stderr,
            flush=True,
        )


# -- one process ----------------------------------------------------------------------


async def _serve_uvicorn(channels: Channels, sockets: list[socket.socket]) -> None:
    """Serve ``channels`` under uvicorn on ``sockets`` until ``SIGINT``/``SIGTERM``,
    then shut the app's lifecycle down: drain, stop uvicorn, close the stores."""
    from tornadose.adapters.asgi import ChannelsApp

    app = ChannelsApp(channels)
    server = uvicorn_server(app)
    with stop_requested() as stop:
        serving = asyncio.create_task(server.serve(sockets=sockets))
        await until_stopped(stop, serving)
        await app.lifecycle.shut_down(stop=stop_uvicorn(server, serving), close=[channels.aclose])
    raise_failure(serving)


async def _serve_tornado(channels: Channels, sockets: list[socket.socket]) -> None:
    """Serve ``channels`` on Tornado on ``sockets`` until ``SIGINT``/``SIGTERM``, then
    shut the application's lifecycle down: drain, stop the server, close the stores."""
    import tornado.web
    from tornado.httpserver import HTTPServer

    from tornadose.adapters.tornado import channel_handlers, lifecycle_of

    application = tornado.web.Application(channel_handlers(channels))
    server = HTTPServer(application)
    server.add_sockets(sockets)
    with stop_requested() as stop:
        await stop.wait()
        await lifecycle_of(application).shut_down(
            stop=stop_tornado(server), close=[channels.aclose]
        )


# -- uvicorn's worker processes -------------------------------------------------------


def worker_app() -> Any:
    """The ASGI app of one uvicorn worker process (an import-string factory: uvicorn
    calls it in every worker); serves the channels named by ``TORNADOSE_SERVE_TARGET``.
    uvicorn stops it on ``SIGINT``/``SIGTERM``; the app's lifespan closes the stores."""
    _import_from_cwd()
    from tornadose.adapters.asgi import ChannelsApp

    return ChannelsApp(load_channels(os.environ[TARGET_VARIABLE]))


def _serve_uvicorn_workers(args: argparse.Namespace) -> int:
    """uvicorn's worker processes, each importing the module again through
    :func:`worker_app`; uvicorn stops them all on ``SIGINT``/``SIGTERM``."""
    import uvicorn

    os.environ[TARGET_VARIABLE] = args.target
    uvicorn.run(
        f"{__name__}:worker_app",
        factory=True,
        workers=args.workers,
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=GRACEFUL_TIMEOUT,
    )
    return 0
