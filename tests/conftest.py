"""Shared fixtures: real servers on ephemeral loopback ports, and waiting helpers."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tornado.web
import uvicorn
from tornado.httpserver import HTTPServer

from tests.ports import free_port as free_port
from tests.ports import free_port_pair as free_port_pair
from tests.programs import Program, StartProgram
from tornadose.adapters.asgi import EventSourceApp, WebSocketApp
from tornadose.adapters.tornado import EventSource, WebSocketSubscriber
from tornadose.backends.redis.store import RedisStore
from tornadose.core.subscription import Subscription
from tornadose.stores import BaseStore, DataStore, QueueStore

#: Redis fixtures (``redis_url``, ``channel``, ``own_redis``) live in their own module.
pytest_plugins = ["tests.redis_support"]

TornadoStarter = Callable[..., Awaitable[str]]
UvicornStarter = Callable[..., Awaitable[str]]


class RecordingQueueStore(QueueStore):
    """A QueueStore that keeps every subscription it hands out, in order, to inspect them later."""

    def initialize(self, backlog: int | None = None) -> None:
        super().initialize(backlog)
        self.registered: list[Subscription] = []

    def on_register(self, subscription: Subscription) -> None:
        super().on_register(subscription)
        self.registered.append(subscription)


class RecordingRedisStore(RedisStore):
    """A RedisStore that keeps every subscription it hands out, in order (as
    :class:`RecordingQueueStore`)."""

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.registered: list[Subscription] = []

    def on_register(self, subscription: Subscription) -> None:
        super().on_register(subscription)
        self.registered.append(subscription)


#: The backends every backend-parametrized test runs over.
BACKENDS = ["memory", "redis"]
#: ``store = backend_store(kind, **options)``: see :func:`backend_store`.
BackendStore = Callable[..., Any]


@pytest.fixture(params=BACKENDS)
async def backend_store(request: pytest.FixtureRequest) -> AsyncIterator[BackendStore]:
    """``store = backend_store(kind, **store_options)``, once per backend: every test
    using this runs over memory and over Redis.

    ``kind``: ``"queue"`` (every message; memory: ``QueueStore``), ``"data"`` (latest
    value, ``KEEP_LATEST``; memory: ``DataStore``) or ``"recording"`` (``"queue"``
    keeping its subscriptions in ``store.registered``). Over Redis each is a
    ``RedisStore`` (``RecordingRedisStore``) on a fresh channel of the shared Redis,
    with the kind's overflow policy unless ``overflow=`` says otherwise; stores are
    closed and their keys deleted after the test. Redis runs skip, with the reason,
    when Redis cannot be reached (and fail under ``CI=true``: see ``redis_support``).
    """
    backend = request.param
    if backend == "memory":
        memory: dict[str, Callable[..., BaseStore]] = {
            "queue": QueueStore,
            "data": DataStore,
            "recording": RecordingQueueStore,
        }
        yield lambda kind, **options: memory[kind](**options)
        return
    url: str = request.getfixturevalue("redis_url")
    prefix = f"test-contract-{uuid.uuid4().hex[:12]}"
    stores: list[RedisStore] = []

    def make(kind: str, **options: Any) -> RedisStore:
        if kind == "data":
            options.setdefault("overflow", "keep_latest")
        store_class = RecordingRedisStore if kind == "recording" else RedisStore
        store = store_class(f"{prefix}-{len(stores)}", url=url, **options)
        stores.append(store)
        return store

    yield make
    from tests.redis_support import close_and_clear  # a plugin: imported once pytest rewrites it

    await close_and_clear(url, prefix, stores)


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``predicate`` every 10 ms until true; fail the test after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)


@pytest.fixture
def start_program(tmp_path: Path) -> Iterator[StartProgram]:
    """Start ``argv`` (in ``cwd``, by default ``tmp_path``) with no stdin and its output
    in files under ``tmp_path``; every program is killed when the test ends."""
    started: list[Program] = []

    def start(argv: list[str], cwd: Path | None = None) -> Program:
        n = len(started)
        stdout, stderr = tmp_path / f"stdout-{n}.txt", tmp_path / f"stderr-{n}.txt"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=cwd or tmp_path
            )
        started.append(Program(proc, stdout, stderr))
        return started[-1]

    yield start
    for program in started:
        if program.proc.poll() is None:
            program.proc.kill()
        program.proc.wait(timeout=10)


@pytest.fixture
async def tornado_server() -> AsyncIterator[TornadoStarter]:
    """Start a real Tornado server on 127.0.0.1:<ephemeral> in the test's event loop.

    ``base = await tornado_server([(r"/sse", EventSource, {"store": store})])``
    returns ``"http://127.0.0.1:<port>"``. Servers and their open connections are
    closed when the test ends.
    """
    servers: list[HTTPServer] = []

    async def start(handlers: list[Any], **settings: Any) -> str:
        app = tornado.web.Application(handlers, **settings)
        server = app.listen(0, "127.0.0.1")
        servers.append(server)
        port = next(iter(server._sockets.values())).getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop()
        await asyncio.wait_for(server.close_all_connections(), 5)


@pytest.fixture
async def uvicorn_server() -> AsyncIterator[UvicornStarter]:
    """Start a real uvicorn server for an ASGI app on 127.0.0.1:<ephemeral>, in the
    test's event loop.

    ``base = await uvicorn_server(app)`` returns ``"http://127.0.0.1:<port>"``. The
    server is shut down when the test ends (open streams are cut after 3 s).
    """
    running: list[tuple[uvicorn.Server, asyncio.Task[None]]] = []

    async def start(app: Any, **options: Any) -> str:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan=options.pop("lifespan", "off"),
            timeout_graceful_shutdown=3,
            **options,
        )
        server = uvicorn.Server(config)
        task = asyncio.ensure_future(server.serve())
        running.append((server, task))
        await wait_until(lambda: server.started or task.done(), timeout=10)
        if task.done():
            task.result()
        port = server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    yield start
    for server, task in running:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@dataclass(frozen=True)
class Endpoints:
    """Where :func:`serve_store` serves a store: SSE at ``/events``, WebSocket at ``/ws``."""

    adapter: str  # "tornado" or "asgi"
    base: str  # "http://127.0.0.1:<port>"

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    @property
    def events(self) -> str:
        return self.base + "/events"

    @property
    def ws(self) -> str:
        return self.base.replace("http://", "ws://", 1) + "/ws"


StoreServer = Callable[..., Awaitable[Endpoints]]


def by_path(apps: dict[str, Any]) -> Any:
    """An ASGI app handing every request for a path to ``apps[path]``, as it is.

    Bare, not Starlette: a Starlette ``WebSocketRoute`` answers a plain ``GET`` with
    404 before the app sees it (mounting is tested in ``test_asgi_mounting.py``).
    """

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await apps[scope["path"]](scope, receive, send)

    return app


@pytest.fixture(params=["tornado", "asgi"])
def serve_store(
    request: pytest.FixtureRequest,
    tornado_server: TornadoStarter,
    uvicorn_server: UvicornStarter,
) -> StoreServer:
    """Serve a store on a real server, once per adapter: every test using this runs twice.

    ``endpoints = await serve_store(store, sse={"heartbeat": 0}, websocket={...})``
    serves ``store`` at ``/events`` (SSE) and ``/ws`` (WebSocket), with those options:
    Tornado's ``EventSource``/``WebSocketSubscriber`` on :func:`tornado_server`, or the
    ASGI ``EventSourceApp``/``WebSocketApp`` under :func:`uvicorn_server`.
    """

    async def start(
        store: BaseStore,
        *,
        sse: dict[str, Any] | None = None,
        websocket: dict[str, Any] | None = None,
    ) -> Endpoints:
        sse_options, ws_options = sse or {}, websocket or {}
        if request.param == "tornado":
            rules = [
                (r"/events", EventSource, {"store": store, **sse_options}),
                (r"/ws", WebSocketSubscriber, {"store": store, **ws_options}),
            ]
            return Endpoints("tornado", await tornado_server(rules))
        apps = {
            "/events": EventSourceApp(store, **sse_options),
            "/ws": WebSocketApp(store, **ws_options),
        }
        return Endpoints("asgi", await uvicorn_server(by_path(apps)))

    return start
