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
    channels of its own.

The current directory is put on the import path, as ``python -m`` does. Exit codes:
0 after a clean stop (Ctrl-C or ``SIGTERM``), 1 when serving failed, 2 for a bad
command line (including a ``module:attribute`` that names no ``Channels``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import importlib
import importlib.util
import inspect
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from tornadose._version import __version__
from tornadose.http.channels import REDIS_URL_VARIABLE, Channels

__all__ = ["UsageError", "load_channels", "main", "worker_app"]

#: The environment variable that tells uvicorn's worker processes what to serve.
TARGET_VARIABLE = "TORNADOSE_SERVE_TARGET"
#: Seconds a stopping server gives its connections to close.
CLOSE_TIMEOUT = 8.0
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class UsageError(Exception):
    """A bad command line: printed on one line, exit status 2."""


# -- the command line -----------------------------------------------------------------


def _port(text: str) -> int:
    port = int(text)
    if not 0 < port <= 65535:
        raise argparse.ArgumentTypeError(f"not a port: {text}")
    return port


def _demo_port(text: str) -> int:
    port = _port(text)
    if port == 65535:
        raise argparse.ArgumentTypeError("uvicorn needs the next port: at most 65534")
    return port


def _workers(text: str) -> int:
    count = int(text)
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {text}")
    return count


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
        "the same channels (sensor, chat) and a demo page at /.",
    )
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    demo.add_argument(
        "--port",
        type=_demo_port,
        default=8000,
        help="Tornado's port (8000); uvicorn takes the next one",
    )
    demo.add_argument("--redis", metavar="URL", help="keep the channels in this Redis")
    demo.add_argument("--prefix", default="", help="put before the Redis keys (with --redis)")

    serve = commands.add_parser(
        "serve",
        help="serve your Channels on Tornado or uvicorn",
        description="Serve a Channels object: module:attribute names it, or a function "
        "taking no arguments that returns it.",
    )
    serve.add_argument("target", metavar="module:attribute")
    serve.add_argument(
        "--server", choices=["tornado", "uvicorn"], default="tornado", help="(tornado)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8000, help="port (8000)")
    serve.add_argument("--redis", metavar="URL", help=f"sets {REDIS_URL_VARIABLE}")
    serve.add_argument("--workers", type=_workers, default=1, help="processes (1)")
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
        return _serve(args)
    except UsageError as exc:
        print(f"tornadose: error: {exc}", file=sys.stderr)
        return 2


# -- tornadose demo -------------------------------------------------------------------


def _demo(args: argparse.Namespace) -> int:
    from tornadose.cli import demo

    _require("tornadose[demo]", "tornado", "uvicorn")
    if args.redis:
        _require("tornadose[redis]", "redis")
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


def _require(extra: str, *modules: str) -> None:
    """:class:`UsageError` naming ``extra`` unless every one of ``modules`` is installed."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"{', '.join(missing)} is not installed: pip install '{extra}'")


# -- loading the user's channels ------------------------------------------------------


def load_channels(target: str) -> Channels:
    """The :class:`Channels` that ``module:attribute`` names (calling it if it is a
    function); :class:`UsageError` if it names none."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"expected module:attribute (like myapp.live:channels), not {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise UsageError(
                f"cannot import {module_name!r}: no module named {missing!r}"
            ) from None
        raise  # the module exists and failed itself: its traceback says why
    found: Any = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(found, Channels) and callable(found):
        try:
            inspect.signature(found).bind()
        except TypeError:
            raise UsageError(f"{target} must take no arguments") from None
        except ValueError:  # no signature to inspect: just call it
            pass
        found = found()
    if not isinstance(found, Channels):
        kind = type(found).__name__
        raise UsageError(f"{target} is {kind}, not a tornadose Channels (nor returns one)")
    if not len(found):
        raise UsageError(f"{target} declares no channels")
    return found


def _channel_urls(channels: Channels, base: str) -> list[str]:
    """One line per channel: where it is served."""
    ws_base = "ws" + base.removeprefix("http")
    lines = []
    for channel in channels:
        path = f"{channels.prefix}/{channel.name}"
        line = f"  {channel.name}: {base}{path}/events  {ws_base}{path}/ws"
        if channel.publishable:
            line += f"  POST {base}{path}/publish"
        lines.append(line)
    return lines


def _announce(channels: Channels, args: argparse.Namespace) -> None:
    host = args.host if args.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
    base = f"http://{f'[{host}]' if ':' in host else host}:{args.port}"
    processes = f", {args.workers} processes" if args.workers > 1 else ""
    print(f"tornadose serve: {args.target} on {args.server}{processes}", flush=True)
    for line in _channel_urls(channels, base):
        print(line, flush=True)
    if args.workers > 1 and not os.environ.get(REDIS_URL_VARIABLE):
        print(
            "tornadose serve: warning: without --redis each process has channels of its "
            "own (a message published to one process reaches its subscribers only)",
            file=sys.stderr,
            flush=True,
        )


# -- tornadose serve ------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    if args.server == "uvicorn":
        _require("tornadose[asgi]", "uvicorn")
    else:
        _require("tornadose[tornado]", "tornado")
    if args.redis:
        _require("tornadose[redis]", "redis")
        os.environ[REDIS_URL_VARIABLE] = args.redis
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
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
    return _fork_workers(args.workers, lambda: asyncio.run(_serve_tornado(channels, sockets)))


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


def worker_app() -> Any:
    """The ASGI app of one uvicorn worker process (an import-string factory: uvicorn
    calls it in every worker); serves the channels named by ``TORNADOSE_SERVE_TARGET``."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
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
        timeout_graceful_shutdown=3,
    )
    return 0


async def _serve_uvicorn(channels: Channels, sockets: list[socket.socket]) -> None:
    """Serve ``channels`` under uvicorn on ``sockets`` until ``SIGINT``/``SIGTERM``.

    uvicorn handles the signals while it serves (tornadose chains a drain in front of
    its handler once a stream opened) and raises them again once it stopped. The
    loop's handlers set here do nothing but take that last signal, so the process
    exits normally instead of dying by it; they must not stop uvicorn themselves
    (asyncio calls them at once, too): a second stop request would make uvicorn
    skip its lifespan shutdown, where the stores are closed.
    """
    import uvicorn

    from tornadose.adapters.asgi import ChannelsApp

    app = ChannelsApp(channels)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=3)
    server = uvicorn.Server(config)
    loop = asyncio.get_running_loop()
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, lambda: None)
    await server.serve(sockets=sockets)


async def _serve_tornado(channels: Channels, sockets: list[socket.socket]) -> None:
    """Serve ``channels`` on Tornado on ``sockets`` until ``SIGINT``/``SIGTERM``; then
    drain every stream, close the connections and the stores."""
    import tornado.web
    from tornado.httpserver import HTTPServer

    from tornadose.adapters.tornado import channel_handlers
    from tornadose.delivery import lifecycle

    server = HTTPServer(tornado.web.Application(channel_handlers(channels)))
    server.add_sockets(sockets)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked while forking
    await stop.wait()
    lifecycle.drain_process()
    await lifecycle.wait_process_streams_ended(lifecycle.DEFAULT_DEADLINE)
    server.stop()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.close_all_connections(), CLOSE_TIMEOUT)
    await channels.aclose()


# -- forked Tornado processes ---------------------------------------------------------


def _fork_workers(count: int, work: Callable[[], None]) -> int:
    """Run ``work`` in ``count`` forked processes; pass ``SIGINT``/``SIGTERM`` on to
    them and wait for all. Returns 0 if every process stopped cleanly, else 1.

    The signals stay blocked while forking, so a signal arriving meanwhile is held
    until the processes are ready for it (each unblocks once its handlers are set).
    On Linux each process also gets ``SIGTERM`` if this one dies.
    """
    parent = os.getpid()
    children: set[int] = set()
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    for _ in range(count):
        pid = os.fork()
        if pid == 0:  # a worker: never return into the parent's code
            status = 0
            try:
                _die_with_parent(parent)
                work()
            except BaseException:
                traceback.print_exc()
                status = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        children.add(pid)

    def forward(signum: int, frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    for signum in _STOP_SIGNALS:
        signal.signal(signum, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    status = 0
    while children:
        pid, wait_status = os.wait()
        children.discard(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if code != 0:
            print(f"tornadose serve: process {pid} exited with {code}", file=sys.stderr)
            status = 1
    return status


def _die_with_parent(parent: int) -> None:
    """Ask Linux to send this process ``SIGTERM`` when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
