"""The ``tornadose`` command.

``tornadose demo [--host H] [--port P] [--redis URL] [--prefix KEYS]``
    Tornado on ``P`` and uvicorn on ``P + 1``, in one process, serving the demo
    channels and the demo page (see :mod:`tornadose.cli.demo`).

``tornadose serve module:attribute [--server tornado|uvicorn] [--host H] [--port P]
[--redis URL] [--workers N]``
    Serve your own :class:`~tornadose.http.channels.Channels`: ``attribute`` names the
    object, or a function taking no arguments that returns it. ``--redis`` sets
    ``TORNADOSE_REDIS_URL`` before your module is imported, so channels declared with
    ``schema=`` get ``RedisStore`` stores. ``--workers N``: uvicorn's worker processes,
    or forked Tornado processes sharing the port; without Redis each process has
    channels of its own (see :mod:`tornadose.cli.serve`).

Servers come with extras: Tornado with ``tornadose[tornado]``, uvicorn with
``tornadose[asgi]``, both (the demo) with ``tornadose[demo]``, ``--redis`` with
``tornadose[redis]``; ``--help`` says so.

The current directory is put on the import path, as ``python -m`` does. Exit codes:
0 after a clean stop (Ctrl-C or ``SIGTERM``), 1 when serving failed (a port in use),
2 for a bad command line, checked before anything listens, each said in one line on
stderr: an option's value (the line names the option), a missing extra, a
``module:attribute`` that cannot be imported, raises or names no ``Channels`` (the
line names the target and the exception), a ``--redis`` URL that is malformed or
whose Redis does not answer.

This module parses the command line; the commands live in :mod:`tornadose.cli.serve`
and :mod:`tornadose.cli.demo`, the servers and how they stop in
:mod:`tornadose.cli.servers`, the forked processes in :mod:`tornadose.cli.workers`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from tornadose._version import __version__
from tornadose.cli.serve import serve, worker_app
from tornadose.cli.target import UsageError, check_redis, load_channels, require, require_uvicorn
from tornadose.http.channels import REDIS_URL_VARIABLE

__all__ = ["UsageError", "build_parser", "load_channels", "main", "worker_app"]


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _port(text: str) -> int:
    port = _integer(text)
    if not 0 < port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port (1 to 65535): {text!r}")
    return port


def _demo_port(text: str) -> int:
    port = _port(text)
    if port == 65535:
        raise argparse.ArgumentTypeError("uvicorn needs the next port: at most 65534")
    return port


def _workers(text: str) -> int:
    count = _integer(text)
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {text}")
    return count


#: The end of ``--help``.
EXIT_CODES = (
    "exit status: 0 after a clean stop (Ctrl-C, SIGTERM), 1 if serving failed (a port "
    "in use), 2 for a bad command line, target or Redis (one line on stderr says which)"
)


def build_parser() -> argparse.ArgumentParser:
    """The ``tornadose`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="tornadose", description="Publish/subscribe over SSE and WebSockets."
    )
    parser.add_argument("--version", action="version", version=f"tornadose {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run the demo: Tornado and uvicorn, a live page",
        description="Tornado on --port and uvicorn on --port + 1, in one process, serving "
        "the same channels (sensor, chat) and a demo page at /. Needs tornadose[demo] "
        "(and tornadose[redis] for --redis).",
        epilog=EXIT_CODES,
    )
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    demo.add_argument(
        "--port",
        type=_demo_port,
        default=8000,
        help="Tornado's port (8000); uvicorn takes the next one",
    )
    demo.add_argument(
        "--redis",
        metavar="URL",
        help="keep the channels in this Redis (needs tornadose[redis]; checked at startup)",
    )
    demo.add_argument("--prefix", default="", help="put before the Redis keys (with --redis)")

    served = commands.add_parser(
        "serve",
        help="serve your Channels on Tornado or uvicorn",
        description="Serve a Channels object: module:attribute names it, or a function "
        "taking no arguments that returns it. Each server needs its extra: tornado "
        "needs tornadose[tornado], uvicorn needs tornadose[asgi] (uvicorn and a "
        "WebSocket library); --redis needs tornadose[redis].",
        epilog=EXIT_CODES,
    )
    served.add_argument("target", metavar="module:attribute")
    served.add_argument(
        "--server",
        choices=["tornado", "uvicorn"],
        default="tornado",
        help="tornado (needs tornadose[tornado]; the default) or uvicorn (needs tornadose[asgi])",
    )
    served.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    served.add_argument("--port", type=_port, default=8000, help="port (8000)")
    served.add_argument(
        "--redis",
        metavar="URL",
        help=f"sets {REDIS_URL_VARIABLE} (needs tornadose[redis]; checked at startup)",
    )
    served.add_argument("--workers", type=_workers, default=1, help="processes (1)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tornadose`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            if args.prefix and not args.redis:
                raise UsageError("--prefix needs --redis")
            return _demo(args)
        return serve(args)
    except UsageError as exc:
        print(f"tornadose: error: {exc}", file=sys.stderr)
        return 2


def _demo(args: argparse.Namespace) -> int:
    """Run ``tornadose demo`` until a signal stops it; 1 if it could not start."""
    require("tornadose[demo]", "tornado")
    require_uvicorn("tornadose[demo]")
    if args.redis:
        require("tornadose[redis]", "redis")
        check_redis(args.redis)
    from tornadose.cli import demo  # pydantic models, and the page: only when asked

    options = demo.DemoOptions(
        host=args.host, port=args.port, redis_url=args.redis, prefix=args.prefix
    )
    try:
        asyncio.run(demo.run(options, announce=lambda text: print(text, flush=True)))
    except demo.DemoError as exc:
        print(f"tornadose demo: {exc}", file=sys.stderr)
        return 1
    print("tornadose demo: stopped", flush=True)
    return 0
