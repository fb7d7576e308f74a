"""``tornadose demo``: two servers, one event loop, the same channels, and a page.

Tornado serves on ``port`` and uvicorn on ``port + 1``, in one process and one event
loop, both mounting the same :class:`~tornadose.http.channels.Channels`:

* ``sensor``: a :class:`Reading` published every :data:`SENSOR_INTERVAL` seconds by
  a task (a slow wave plus a faster one plus noise);
* ``chat``: :class:`ChatMessage`, published by whoever ``POST``\\ s one.

Both servers also serve the demo page at ``/`` (``tornadose/static/demo.html``) and
the page's settings at ``/demo/config.json``. The page plots ``sensor`` over
Server-Sent Events from the server that served it, logs ``chat`` over WebSockets
from *both* servers (so each server allows the other's origin), and publishes chat
messages with a form.

By default the channels live in memory. With a Redis URL they are
:class:`~tornadose.backends.redis.store.RedisStore` channels, so a restarted demo continues
the same streams and a browser's ``EventSource`` resumes without a gap.

Needs the ``demo`` extra (Tornado and uvicorn): ``pip install 'tornadose[demo]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import random
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import pydantic

from tornadose.core.store import BaseStore, QueueStore
from tornadose.http.answer import Answer, json_answer, method_not_allowed
from tornadose.http.channels import Channels

__all__ = [
    "SENSOR_INTERVAL",
    "ChatMessage",
    "DemoError",
    "DemoOptions",
    "Reading",
    "build_channels",
    "describe",
    "page_origins",
    "run",
    "sensor_value",
]

#: Seconds between two sensor readings.
SENSOR_INTERVAL = 0.2
#: Milliseconds a browser waits before reconnecting a dropped stream.
RECONNECT_MS = 1000
#: Host names a loopback or wildcard address is reached by.
_LOCAL_NAMES = ("127.0.0.1", "localhost", "[::1]")


class Reading(pydantic.BaseModel):
    """One message of the ``sensor`` channel."""

    #: The reading's number, counted from 0 when the demo process started.
    seq: int
    value: float


class ChatMessage(pydantic.BaseModel):
    """One message of the ``chat`` channel, as ``POST``\\ ed to ``/chat/publish``."""

    user: str = pydantic.Field(min_length=1, max_length=40)
    text: str = pydantic.Field(min_length=1, max_length=280)


class DemoError(Exception):
    """The demo cannot start (for example, a port is taken); the message says why."""


@dataclass(frozen=True)
class DemoOptions:
    """What ``tornadose demo`` was asked for."""

    host: str = "127.0.0.1"
    #: Tornado's port; uvicorn listens on the next one.
    port: int = 8000
    #: ``None``: in-memory channels; else the Redis that holds them.
    redis_url: str | None = None
    #: Put before the channels' Redis keys (``<prefix>sensor``, ``<prefix>chat``).
    prefix: str = ""
    interval: float = SENSOR_INTERVAL

    @property
    def ports(self) -> dict[str, int]:
        """Each server's port, by server name."""
        return {"tornado": self.port, "uvicorn": self.port + 1}

    def url(self, server: str, path: str = "/", scheme: str = "http") -> str:
        """The URL of ``path`` on ``server`` ("tornado" or "uvicorn")."""
        return f"{scheme}://{display_host(self.host)}:{self.ports[server]}{path}"


# -- channels and the sensor ----------------------------------------------------------


def build_channels(options: DemoOptions) -> Channels:
    """The demo's channels: in memory, or in Redis when ``options.redis_url`` is set."""
    channels = Channels(title="tornadose demo")
    origins = page_origins(options.host, options.ports.values())
    sensor: BaseStore
    chat: BaseStore
    if options.redis_url is None:
        # No backlog: a late first subscriber gets live readings, not a burst of old ones.
        sensor = QueueStore(schema=Reading, backlog=0)
        chat = QueueStore(schema=ChatMessage, backlog=0)
    else:
        from tornadose.backends.redis.store import RedisStore  # the redis extra, only when asked

        url = options.redis_url
        sensor = RedisStore(options.prefix + "sensor", url=url, schema=Reading)
        chat = RedisStore(options.prefix + "chat", url=url, schema=ChatMessage)
    channels.add(
        "sensor",
        sensor,
        description=f"A reading every {options.interval:g} s",
        publishable=False,
        retry=RECONNECT_MS,
        allowed_origins=origins,
    )
    channels.add(
        "chat",
        chat,
        description="Chat messages; POST one to /chat/publish",
        retry=RECONNECT_MS,
        allowed_origins=origins,
    )
    return channels


def sensor_value(t: float, rng: random.Random) -> float:
    """The reading at time ``t`` (seconds): a smooth wave plus a little noise.

    The wave depends on the wall clock only, so it continues smoothly across a restart.
    """
    wave = math.sin(2 * math.pi * t / 12) + 0.3 * math.sin(2 * math.pi * t / 2.9)
    return round(wave + rng.gauss(0.0, 0.05), 4)


async def publish_readings(store: BaseStore, interval: float) -> None:
    """Publish a :class:`Reading` every ``interval`` seconds, forever."""
    rng = random.Random()
    loop = asyncio.get_running_loop()
    start = loop.time()
    for seq in itertools.count():
        store.submit(Reading(seq=seq, value=sensor_value(time.time(), rng)))
        # Keep the pace steady: sleep until the next tick, not ``interval`` after this one.
        await asyncio.sleep(max(0.0, start + (seq + 1) * interval - loop.time()))


# -- origins and addresses ------------------------------------------------------------


def display_host(host: str) -> str:
    """The host to put in a URL for a server bound to ``host``."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def page_origins(host: str, ports: Iterable[int]) -> tuple[str, ...]:
    """The origins of the demo page, which may open WebSockets to either server.

    A page is served by one server and opens a WebSocket to the other one too, which
    is cross-origin: each server lists both pages' origins. For a loopback or
    wildcard host, the usual local names are listed; for another host, that host only.
    """
    shown = display_host(host)
    names = [shown, *(n for n in _LOCAL_NAMES if n != shown)] if _is_local(host) else [shown]
    return tuple(f"http://{name}:{port}" for port in ports for name in names)


def _is_local(host: str) -> bool:
    return host in ("", "0.0.0.0", "::", "localhost", "::1") or host.startswith("127.")


def describe(options: DemoOptions) -> str:
    """What the demo prints when it is ready: where everything is."""
    tornado, uvicorn = (options.url(server, "") for server in ("tornado", "uvicorn"))
    if options.redis_url is None:
        where = "in memory"
    else:
        keys = f"{options.prefix}sensor, {options.prefix}chat"
        where = f"in Redis at {options.redis_url} (streams {keys})"
    rows = [
        ("sensor", "SSE", "http", "/sensor/events"),
        ("", "WebSocket", "ws", "/sensor/ws"),
        ("chat", "SSE", "http", "/chat/events"),
        ("", "WebSocket", "ws", "/chat/ws"),
        ("", "publish", "http", "/chat/publish"),
    ]
    width = max(len(_scheme(tornado, scheme) + path) for _, _, scheme, path in rows)
    table = [
        f"  {name:<7} {kind:<10} {_scheme(tornado, scheme) + path:<{width}}  "
        f"{_scheme(uvicorn, scheme) + path}"
        for name, kind, scheme, path in rows
    ]
    lines = [
        "tornadose demo: Tornado and uvicorn in one event loop, serving the same channels",
        f"channels {where}",
        "",
        f"  the page, from Tornado:  {tornado}/",
        f"  the page, from uvicorn:  {uvicorn}/",
        "",
        f"  {'':<7} {'':<10} {'Tornado':<{width}}  uvicorn",
        *table,
        f"  {'AsyncAPI':<18} {tornado}/asyncapi.json",
        "",
        "Try:",
        f"  curl -N {tornado}/sensor/events",
        '  curl -H \'Content-Type: application/json\' -d \'{"user": "ann", "text": "hi"}\' '
        f"{uvicorn}/chat/publish",
        "Ctrl-C stops the demo.",
    ]
    return "\n".join(lines)


def _scheme(url: str, scheme: str) -> str:
    """``url`` (an ``http://`` one) with ``scheme`` instead."""
    return scheme + url.removeprefix("http")


# -- the page -------------------------------------------------------------------------


def page_html() -> bytes:
    """The demo page (``tornadose/static/demo.html``)."""
    return resources.files("tornadose").joinpath("static", "demo.html").read_bytes()


def page_answer(options: DemoOptions) -> Answer:
    """The answer to ``GET /``: the page, allowed to connect to the two servers only."""
    # CSP cannot name IPv6 literals: a page on one gets any http/ws source instead.
    origins = page_origins(options.host, options.ports.values())
    named = [origin for origin in origins if "[" not in origin]
    sources = " ".join(_scheme(origin, scheme) for origin in named for scheme in ("http", "ws"))
    if "[" in display_host(options.host):
        sources = "http: ws:"
    policy = (
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        f"img-src data:; connect-src 'self' {sources}; base-uri 'none'; form-action 'none'"
    )
    headers = (
        ("Content-Type", "text/html; charset=utf-8"),
        ("Cache-Control", "no-cache"),
        ("X-Content-Type-Options", "nosniff"),
        ("Content-Security-Policy", policy),
    )
    return Answer(200, page_html(), headers)


def config_answer(options: DemoOptions, server: str) -> Answer:
    """The answer to ``GET /demo/config.json``: which server this is, where the
    other one is, and the channels' paths."""
    config = {
        "server": server,
        "servers": options.ports,
        "redis": options.redis_url is not None,
        "interval": options.interval,
        "channels": {
            "sensor": {"events": "/sensor/events", "ws": "/sensor/ws"},
            "chat": {"events": "/chat/events", "ws": "/chat/ws", "publish": "/chat/publish"},
        },
    }
    return json_answer(200, json.dumps(config).encode(), ("Cache-Control", "no-cache"))


def tornado_application(channels: Channels, options: DemoOptions) -> Any:
    """The Tornado application: the page, its config, and every channel."""
    import tornado.web

    from tornadose.adapters.tornado import AnswerHandler, channel_handlers

    page = (r"/", AnswerHandler, {"make_answer": lambda: page_answer(options)})
    config = (
        r"/demo/config\.json",
        AnswerHandler,
        {"make_answer": lambda: config_answer(options, "tornado")},
    )
    rules = [page, config, *channel_handlers(channels)]
    return tornado.web.Application(rules, log_function=_log_server_errors)


def _log_server_errors(handler: Any) -> None:
    """Tornado's request log, for server errors only (as quiet as uvicorn's here)."""
    import tornado.log

    status = handler.get_status()
    if status >= 500:
        request = handler.request
        tornado.log.access_log.error("%d %s %s", status, request.method, request.uri)


class DemoASGIApp:
    """The ASGI application: the page, its config, and every channel. Its streams
    are those of :attr:`lifecycle` (the channels app's)."""

    def __init__(self, channels: Channels, options: DemoOptions) -> None:
        from tornadose.adapters.asgi import ChannelsApp

        self.channels_app = ChannelsApp(channels)
        self.lifecycle = self.channels_app.lifecycle
        self.answers: dict[str, Callable[[], Answer]] = {
            "/": lambda: page_answer(options),
            "/demo/config.json": lambda: config_answer(options, "uvicorn"),
        }

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from tornadose.adapters.asgi import send_answer

        make_answer = self.answers.get(scope.get("path", "")) if scope["type"] == "http" else None
        if make_answer is None:
            await self.channels_app(scope, receive, send)
        elif scope["method"] in ("GET", "HEAD"):
            await send_answer(send, make_answer())
        else:
            await send_answer(send, method_not_allowed(scope["method"], "GET", "HEAD"))


# -- running --------------------------------------------------------------------------


@contextlib.contextmanager
def _listening(options: DemoOptions) -> Iterator[tuple[list[socket.socket], socket.socket]]:
    """Bind both servers' sockets up front, so a taken port is a clear error."""
    import tornado.netutil

    from tornadose._compat.sockets import listening_socket

    taken: list[socket.socket] = []
    port = options.port
    try:
        try:
            taken += tornado.netutil.bind_sockets(port, options.host)
            port += 1
            uvicorn_socket = listening_socket(options.host, port)
        except OSError as exc:
            raise DemoError(f"cannot listen on {options.host} port {port}: {exc.strerror}") from exc
        taken.append(uvicorn_socket)
        yield taken[:-1], uvicorn_socket
    finally:
        for sock in taken:
            sock.close()


async def _check_redis(url: str) -> None:
    """Fail at once, in one line, if Redis cannot be reached (not later, per message)."""
    import redis.asyncio
    from redis.exceptions import RedisError

    from tornadose.backends.redis.backend import split_cluster_flag

    node_url, _ = split_cluster_flag(url)  # a cluster URL: its node answers PING too
    assert node_url is not None
    client = redis.asyncio.Redis.from_url(node_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        raise DemoError(f"cannot reach Redis at {url}: {exc}") from exc
    finally:
        await client.aclose()


async def run(options: DemoOptions, *, announce: Callable[[str], None] = print) -> None:
    """Serve the demo until ``SIGINT`` or ``SIGTERM``, then stop cleanly.

    With Redis, it is checked first; both ports are bound (:class:`DemoError` if
    Redis cannot be reached or a port is taken), then ``announce`` gets the
    addresses (:func:`describe`). On a signal both servers shut down together
    (:func:`~tornadose.delivery.lifecycle.shut_down_together`): each drains its own
    streams (SSE responses end, WebSockets close with ``1001``), both stop, then the
    stores are closed, once. If uvicorn fails, the demo stops the same way and
    raises its error.
    """
    from tornado.httpserver import HTTPServer

    from tornadose.adapters.tornado import lifecycle_of
    from tornadose.cli import servers
    from tornadose.delivery.lifecycle import shut_down_together

    if options.redis_url is not None:
        await _check_redis(options.redis_url)
    channels = build_channels(options)
    with _listening(options) as (tornado_sockets, uvicorn_socket), servers.stop_requested() as stop:
        application = tornado_application(channels, options)
        tornado_server = HTTPServer(application)
        tornado_server.add_sockets(tornado_sockets)
        asgi_app = DemoASGIApp(channels, options)
        uvicorn = servers.uvicorn_server(asgi_app)
        serving = asyncio.create_task(uvicorn.serve(sockets=[uvicorn_socket]))
        sensor = channels["sensor"].store
        publisher = asyncio.create_task(publish_readings(sensor, options.interval))
        try:
            # The sockets already listen: connections wait in their backlog meanwhile.
            announce(describe(options))
            await servers.until_stopped(stop, serving)
        finally:
            publisher.cancel()
            await shut_down_together(
                [
                    (lifecycle_of(application), servers.stop_tornado(tornado_server)),
                    (asgi_app.lifecycle, servers.stop_uvicorn(uvicorn, serving)),
                ],
                close=[channels.aclose],
            )
            await asyncio.wait({publisher})
    servers.raise_failure(serving)  # uvicorn failed: it was not stopped by a signal
