"""Servers in one process each drain their own streams.

Two servers run in the test's event loop (two uvicorn servers, or uvicorn and
Tornado), serving the same channels. One is stopped the way ``tornadose serve`` and
the demo stop theirs: its own lifecycle's ``shut_down``, with ``stop`` = uvicorn's
exit or Tornado's ``HTTPServer.stop``. Its streams end cleanly (SSE finishes,
WebSockets close with 1001), and the other server goes on as if nothing happened:
its open SSE and WebSocket streams keep receiving, new subscribers of both kinds
connect and receive, and the process is not draining.

Also: a ``ChannelsApp`` stopped by uvicorn itself (``should_exit``, lifespan
shutdown) drains and closes only its own channels; ``EventSourceApp`` and
``WebSocketApp`` given ``lifecycle=`` belong to that lifecycle only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import tornado.web
import uvicorn
from httpx_sse import ServerSentEvent
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute
from websockets.asyncio.client import ClientConnection, connect

from tests.clients import TIMEOUT, expect_close, recv, sse_client, take
from tests.conftest import wait_until
from tornadose import shutdown
from tornadose.adapters.asgi import ChannelsApp, EventSourceApp, WebSocketApp
from tornadose.adapters.tornado import channel_handlers, lifecycle_of
from tornadose.cli.servers import stop_tornado, stop_uvicorn
from tornadose.delivery.lifecycle import Lifecycle, Step
from tornadose.http.channels import Channels
from tornadose.stores import QueueStore


@dataclass
class Server:
    """A server running in the test's loop: where, its lifecycle, and how it stops."""

    kind: str
    base: str
    lifecycle: Lifecycle
    stop: Step
    #: uvicorn only: the server, and the task running its ``serve()``.
    uvicorn: uvicorn.Server | None = None
    serving: asyncio.Task[None] | None = None

    def url(self, path: str, scheme: str = "http") -> str:
        return scheme + self.base.removeprefix("http") + path


StartServer = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """``await start_server(kind, channels)``: serve ``channels`` on a new uvicorn
    (``ChannelsApp``) or Tornado (``channel_handlers``) server on 127.0.0.1:<ephemeral>;
    ``await start_server("uvicorn", app=asgi_app, lifecycle=...)`` serves any ASGI app.
    Every server still running is stopped when the test ends."""
    started: list[Server] = []

    async def start(
        kind: str,
        channels: Channels | None = None,
        *,
        app: Any = None,
        lifecycle: Lifecycle | None = None,
        lifespan: str = "off",
    ) -> Server:
        if kind == "tornado":
            assert channels is not None
            application = tornado.web.Application(channel_handlers(channels))
            http_server = application.listen(0, "127.0.0.1")
            port = next(iter(http_server._sockets.values())).getsockname()[1]
            server = Server(
                kind,
                f"http://127.0.0.1:{port}",
                lifecycle_of(application),
                stop_tornado(http_server),
            )
        else:
            if app is None:
                assert channels is not None
                app = ChannelsApp(channels)
                lifecycle = app.lifecycle
            assert lifecycle is not None
            config = uvicorn.Config(
                app,
                host="127.0.0.1",
                port=0,
                log_level="warning",
                lifespan=lifespan,
                timeout_graceful_shutdown=3,
            )
            uvicorn_server = uvicorn.Server(config)
            serving = asyncio.ensure_future(uvicorn_server.serve())
            await wait_until(lambda: uvicorn_server.started or serving.done(), timeout=10)
            if serving.done():
                serving.result()  # it failed to start: say why
            port = uvicorn_server.servers[0].sockets[0].getsockname()[1]
            base = f"http://127.0.0.1:{port}"
            stop = stop_uvicorn(uvicorn_server, serving)
            server = Server(kind, base, lifecycle, stop, uvicorn_server, serving)
        started.append(server)
        return server

    yield start
    for server in started:
        await asyncio.wait_for(server.stop(), 15)


# -- clients --------------------------------------------------------------------------


class Subscriber:
    """An SSE or WebSocket client of one server."""

    async def next_data(self) -> tuple[str | None, Any]:
        raise NotImplementedError

    async def ended(self) -> list[Any]:
        """What arrived before the server ended the stream cleanly."""
        raise NotImplementedError


class SSESubscriber(Subscriber):
    def __init__(self, events: AsyncIterator[ServerSentEvent]) -> None:
        self.events = events

    async def next_data(self) -> tuple[str | None, Any]:
        (event,) = await take(self.events, 1)
        return event.id, json.loads(event.data)

    async def ended(self) -> list[Any]:
        async with asyncio.timeout(TIMEOUT):
            rest = [event async for event in self.events]  # a cut connection raises
        # The shutdown's last frame: a lone reconnect hint.
        assert rest, "the stream ended without a reconnect hint"
        assert rest[-1].data == "", rest
        assert rest[-1].retry is not None, rest
        return [json.loads(event.data) for event in rest[:-1]]


class WSSubscriber(Subscriber):
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def next_data(self) -> tuple[str | None, Any]:
        envelope = await recv(self.ws)
        return envelope.id, envelope.data

    async def ended(self) -> list[Any]:
        received = [envelope.data for envelope in await expect_close(self.ws)]
        assert (self.ws.close_code, self.ws.close_reason) == (1001, "server shutting down")
        return received


async def subscribe(
    stack: AsyncExitStack, server: Server, path: str, store: QueueStore
) -> list[Subscriber]:
    """An SSE and a WebSocket subscriber of ``server`` (``path``: ``/ticks`` or ``""``),
    returned once ``store`` registered both."""
    before = len(store.subscribers)
    _, events = await stack.enter_async_context(sse_client(server.url(f"{path}/events")))
    ws = await stack.enter_async_context(
        connect(
            server.url(f"{path}/ws", "ws"), proxy=None, open_timeout=TIMEOUT, close_timeout=TIMEOUT
        )
    )
    await wait_until(lambda: len(store.subscribers) == before + 2)
    return [SSESubscriber(events), WSSubscriber(ws)]


async def assert_all_receive(subscribers: list[Subscriber], store: QueueStore, text: str) -> None:
    """``{"text": text}``, submitted once, reaches every one of ``subscribers`` with
    its id."""
    published = store.submit({"text": text})
    for subscriber in subscribers:
        assert await subscriber.next_data() == (published.id, {"text": text})


async def assert_refused(server: Server) -> None:
    """Nothing listens on the stopped server's port any more."""
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(server.url("/ticks/events"))


# -- the scenarios --------------------------------------------------------------------


PAIRS = [("uvicorn", "uvicorn"), ("uvicorn", "tornado"), ("tornado", "uvicorn")]


@pytest.mark.parametrize(("stopped_kind", "kept_kind"), PAIRS, ids=["-".join(p) for p in PAIRS])
async def test_stopping_one_server_leaves_the_other_serving(
    start_server: StartServer, stopped_kind: str, kept_kind: str
) -> None:
    """Stop one of two servers sharing a channel with its own ``shut_down``: its
    streams end cleanly; the other's open streams keep receiving, and new SSE and
    WebSocket subscribers of the other connect and receive."""
    store = QueueStore()
    channels = Channels()
    channels.add("ticks", store)
    stopped = await start_server(stopped_kind, channels)
    kept = await start_server(kept_kind, channels)

    async with AsyncExitStack() as stack:
        leaving = await subscribe(stack, stopped, "/ticks", store)
        staying = await subscribe(stack, kept, "/ticks", store)
        await assert_all_receive(leaving + staying, store, "before")

        # Queued for everyone when the drain starts: the stopped server's clients get it too.
        last = store.submit({"text": "last words"})
        assert await stopped.lifecycle.shut_down(stop=stopped.stop) is True
        for subscriber in leaving:
            assert await subscriber.ended() == [{"text": "last words"}]
        assert not shutdown.draining()
        assert not kept.lifecycle.draining
        await assert_refused(stopped)

        for subscriber in staying:  # the open streams of the other server go on
            assert await subscriber.next_data() == (last.id, {"text": "last words"})
        await assert_all_receive(staying, store, "after")
        assert kept.lifecycle.open_streams == 2

        newcomers = await subscribe(stack, kept, "/ticks", store)
        await assert_all_receive(staying + newcomers, store, "welcome")
        assert kept.lifecycle.open_streams == 4


async def test_a_channels_app_stopped_by_uvicorn_closes_its_own_channels_only(
    start_server: StartServer,
) -> None:
    """uvicorn stopping by itself (``should_exit``: its lifespan shutdown) drains and
    closes the stopped app's channels; another ``ChannelsApp`` of the process, with
    channels of its own, keeps its streams and takes new ones."""
    stopped_store, kept_store = QueueStore(), QueueStore()
    stopped_channels, kept_channels = Channels(), Channels()
    stopped_channels.add("ticks", stopped_store)
    kept_channels.add("ticks", kept_store)
    stopped = await start_server("uvicorn", stopped_channels, lifespan="on")
    kept = await start_server("uvicorn", kept_channels, lifespan="on")

    async with AsyncExitStack() as stack:
        staying = await subscribe(stack, kept, "/ticks", kept_store)
        async with AsyncExitStack() as earlier:  # the stopped server had streams too
            gone = await subscribe(earlier, stopped, "/ticks", stopped_store)
            await assert_all_receive(gone, stopped_store, "hello")
        await wait_until(lambda: stopped.lifecycle.open_streams == 0)

        assert stopped.uvicorn is not None
        assert stopped.serving is not None
        stopped.uvicorn.should_exit = True
        await asyncio.wait_for(stopped.serving, 10)
        assert stopped_store.closed  # the lifespan closed this app's channels
        assert not kept_store.closed
        assert not shutdown.draining()
        assert not kept.lifecycle.draining

        await assert_all_receive(staying, kept_store, "still here")
        newcomers = await subscribe(stack, kept, "/ticks", kept_store)
        await assert_all_receive(staying + newcomers, kept_store, "welcome")


async def test_uvicorn_stopping_by_itself_leaves_shared_channels_open_for_tornado(
    start_server: StartServer,
) -> None:
    """One ``Channels`` on uvicorn (lifespan on) and on Tornado: uvicorn stopping by
    itself drains its own streams but does not close the stores Tornado still serves;
    Tornado's subscribers keep receiving, and publishing there is still accepted."""
    store = QueueStore()
    channels = Channels()
    channels.add("ticks", store)
    stopped = await start_server("uvicorn", channels, lifespan="on")
    kept = await start_server("tornado", channels)

    async with AsyncExitStack() as stack:
        staying = await subscribe(stack, kept, "/ticks", store)
        assert stopped.uvicorn is not None
        assert stopped.serving is not None
        stopped.uvicorn.should_exit = True
        await asyncio.wait_for(stopped.serving, 10)
        assert not store.closed
        await assert_all_receive(staying, store, "still open")
        async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
            answer = await client.post(kept.url("/ticks/publish"), json={"text": "posted"})
        assert answer.status_code == 202, answer.text
        for subscriber in staying:
            assert await subscriber.next_data() == (answer.json()["id"], {"text": "posted"})


async def test_apps_given_a_lifecycle_belong_to_it(start_server: StartServer) -> None:
    """``EventSourceApp(store, lifecycle=...)`` and ``WebSocketApp(store, lifecycle=...)``
    in two Starlette apps with a lifecycle each: shutting one down leaves the other's
    streams, old and new, running."""
    store = QueueStore()

    def starlette(lifecycle: Lifecycle) -> Starlette:
        return Starlette(
            routes=[
                Route("/events", EventSourceApp(store, lifecycle=lifecycle)),
                WebSocketRoute("/ws", WebSocketApp(store, lifecycle=lifecycle)),
            ]
        )

    first, second = Lifecycle("first"), Lifecycle("second")
    stopped = await start_server("uvicorn", app=starlette(first), lifecycle=first)
    kept = await start_server("uvicorn", app=starlette(second), lifecycle=second)

    async with AsyncExitStack() as stack:
        leaving = await subscribe(stack, stopped, "", store)
        staying = await subscribe(stack, kept, "", store)
        assert (first.open_streams, second.open_streams) == (2, 2)
        assert await first.shut_down(stop=stopped.stop) is True
        for subscriber in leaving:
            assert await subscriber.ended() == []
        await assert_all_receive(staying, store, "after")
        newcomers = await subscribe(stack, kept, "", store)
        await assert_all_receive(staying + newcomers, store, "welcome")
        assert second.open_streams == 4
