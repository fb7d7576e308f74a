"""Rules that used to differ between the Tornado and ASGI adapters, now one rule
each (written once, in :mod:`tornadose.delivery.session`,
:mod:`tornadose.delivery.streams` and :mod:`tornadose.http.subscribe`), tested on
both adapters; and lifecycles that belong to their server.

* D1: an unexpected error in delivery is logged with its traceback and the stream
  ends cleanly (the SSE response completes, the WebSocket closes with ``1011``);
* D2: a 0.x subclass overriding ``publish`` keeps heartbeats, ``retry``, ``period``
  and the write timeout (Tornado only: the ASGI apps have no subclass API);
* D3: a ``SIGTERM`` drains the streams, then reaches the handler that was there;
* D4: every subscriber registers through the store's ``register``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import tornado.web
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.clients import TIMEOUT, sse_client, take
from tests.conftest import (
    RecordingQueueStore,
    StoreServer,
    TornadoStarter,
    UvicornStarter,
    wait_until,
)
from tornadose.adapters.asgi import ChannelsApp, EventSourceApp, WebSocketApp
from tornadose.adapters.tornado import EventSource, WebSocketSubscriber, lifecycle_of
from tornadose.core.message import Message
from tornadose.core.reasons import CloseReason
from tornadose.core.subscription import Subscription
from tornadose.delivery import lifecycle
from tornadose.http.channels import Channels
from tornadose.stores import QueueStore
from tornadose.wire import sse


class Unencodable(Message):
    """A message whose encodings fail: a bug in delivery, not a client leaving."""

    __slots__ = ()

    @property
    def size(self) -> int:
        return 1

    @property
    def sse(self) -> bytes:
        raise RuntimeError("cannot encode for SSE")

    @property
    def websocket(self) -> str:
        raise RuntimeError("cannot encode for WebSocket")


def logged_errors(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info and text in str(r.exc_info[1])]


@asynccontextmanager
async def streamed(url: str) -> AsyncIterator[httpx.Response]:
    """A ``GET`` of ``url`` whose body is read as it comes."""
    async with (
        httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client,
        client.stream("GET", url) as response,
    ):
        yield response


async def read_to_end(response: httpx.Response) -> bytes:
    """The rest of a streamed body; raises if the server drops the connection."""
    body = b""
    async with asyncio.timeout(TIMEOUT):
        async for chunk in response.aiter_bytes():
            body += chunk
    return body


# -- D1 -------------------------------------------------------------------------------


async def test_an_error_in_sse_delivery_is_logged_and_the_response_completes(
    serve_store: StoreServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The error is logged with its traceback; the response ends as a complete one."""
    store = RecordingQueueStore()
    endpoints = await serve_store(store, sse={"heartbeat": 0})
    async with streamed(endpoints.events) as response:
        await wait_until(lambda: len(store.subscribers) == 1)
        store.registered[-1].put(Unencodable("boom", id=None))
        await read_to_end(response)  # a dropped connection would raise here
    assert response.status_code == 200
    assert store.registered[-1].close_reason is CloseReason.DEREGISTERED
    assert logged_errors(caplog, "cannot encode for SSE")
    await wait_until(lambda: len(store.subscribers) == 0)


async def test_an_error_in_websocket_delivery_is_logged_and_closes_with_1011(
    serve_store: StoreServer, caplog: pytest.LogCaptureFixture
) -> None:
    """The error is logged with its traceback; the WebSocket closes with ``1011``."""
    store = RecordingQueueStore()
    endpoints = await serve_store(store)
    async with connect(endpoints.ws, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        await wait_until(lambda: len(store.subscribers) == 1)
        store.registered[-1].put(Unencodable("boom", id=None))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert ws.close_code == 1011
    assert logged_errors(caplog, "cannot encode for WebSocket")
    assert store.registered[-1].close_reason is CloseReason.DEREGISTERED


# -- D2 -------------------------------------------------------------------------------


class ShoutingEventSource(EventSource):
    """The 0.x way to change each event: override ``publish``."""

    async def publish(self, message: Any) -> None:
        await super().publish(str(message).upper())


class StuckEventSource(EventSource):
    """A 0.x subclass whose ``publish`` never completes (a write that stalls)."""

    async def publish(self, message: Any) -> None:
        await asyncio.Event().wait()


class StuckWebSocket(WebSocketSubscriber):
    """The same, over WebSocket."""

    async def publish(self, message: Any) -> None:
        await asyncio.Event().wait()


async def serve_handler(
    tornado_server: TornadoStarter, handler: type[Any], store: QueueStore, **options: Any
) -> str:
    """Serve ``handler`` for ``store`` at ``/path``; its URL (``http://``)."""
    base = await tornado_server([(r"/path", handler, {"store": store, **options})])
    return base + "/path"


@pytest.mark.parametrize("handler", [EventSource, ShoutingEventSource])
async def test_an_overriding_subclass_gets_retry_and_heartbeats_as_a_plain_event_source(
    tornado_server: TornadoStarter, handler: type[EventSource]
) -> None:
    """``retry`` is sent first and a silent stream gets heartbeat comments."""
    url = await serve_handler(tornado_server, handler, QueueStore(), heartbeat=0.2, retry=1500)
    async with streamed(url) as response:
        received = b""
        async with asyncio.timeout(TIMEOUT):
            async for chunk in response.aiter_bytes():
                received += chunk
                if received.count(sse.HEARTBEAT) >= 2:
                    break
    assert received.startswith(b"retry: 1500\n")


@pytest.mark.parametrize("handler", [EventSource, ShoutingEventSource])
async def test_an_overriding_subclass_is_throttled_by_period_as_a_plain_event_source(
    tornado_server: TornadoStarter, handler: type[EventSource]
) -> None:
    """With ``period``, a message right after another waits out the period."""
    store = QueueStore()
    url = await serve_handler(tornado_server, handler, store, heartbeat=0, period=0.5)
    loop = asyncio.get_running_loop()
    async with sse_client(url) as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit("a")
        await take(events, 1)
        first = loop.time()
        store.submit("b")
        [second] = await take(events, 1)
    assert loop.time() - first >= 0.4
    assert second.data.strip('"').lower() == "b"


async def test_an_overriding_sse_subclass_is_cut_at_the_write_timeout(
    tornado_server: TornadoStarter,
) -> None:
    """A ``publish`` stuck past ``write_timeout`` closes the subscription
    (``WRITE_TIMEOUT``) and the connection is dropped, as for a stalled write."""
    store = RecordingQueueStore()
    url = await serve_handler(tornado_server, StuckEventSource, store, write_timeout=0.3)
    async with streamed(url) as response:
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit("never written")
        with pytest.raises(httpx.RemoteProtocolError):
            await read_to_end(response)
    assert store.registered[-1].close_reason is CloseReason.WRITE_TIMEOUT


async def test_an_overriding_websocket_subclass_is_cut_at_the_write_timeout(
    tornado_server: TornadoStarter,
) -> None:
    """The same over WebSocket: closed with ``4002``."""
    store = RecordingQueueStore()
    url = await serve_handler(tornado_server, StuckWebSocket, store, write_timeout=0.3)
    async with connect(
        url.replace("http://", "ws://", 1), open_timeout=TIMEOUT, close_timeout=TIMEOUT
    ) as ws:
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit("never sent")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert ws.close_code == 4002
    assert store.registered[-1].close_reason is CloseReason.WRITE_TIMEOUT


# -- D3 -------------------------------------------------------------------------------


async def test_a_sigterm_drains_the_streams_then_reaches_the_previous_handler(
    serve_store: StoreServer,
) -> None:
    """Once a stream opened (on either adapter), ``SIGTERM`` ends it for a shutdown
    (the SSE response completes), then the handler installed before gets it."""
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        store = QueueStore()
        endpoints = await serve_store(store, sse={"heartbeat": 0})
        async with streamed(endpoints.events) as response:
            await wait_until(lambda: len(store.subscribers) == 1)
            signal.raise_signal(signal.SIGTERM)
            body = await read_to_end(response)
        assert body.startswith(b"retry: ")  # the shutdown's reconnection hint
        await wait_until(lambda: received == [signal.SIGTERM])
    finally:
        signal.signal(signal.SIGTERM, previous)
        lifecycle.reset_process()


# -- D4 -------------------------------------------------------------------------------


class Watching(QueueStore):
    """A store that sees every registration: ``(subscriber, last_event_id)``."""

    def initialize(self, backlog: int | None = None) -> None:
        super().initialize(backlog)
        self.seen: list[tuple[object, str | None]] = []

    def register(self, subscriber: object, last_event_id: str | None = None) -> Subscription:
        self.seen.append((subscriber, last_event_id))
        return super().register(subscriber, last_event_id)


async def test_every_subscriber_registers_through_the_store_register(
    serve_store: StoreServer,
) -> None:
    """SSE and WebSocket subscribers of both adapters come through ``register``, with
    the id the client resumes from, each under its own key."""
    store = Watching()
    endpoints = await serve_store(store, sse={"heartbeat": 0})
    async with sse_client(endpoints.events, **{"Last-Event-ID": "sse-id"}):
        await wait_until(lambda: len(store.subscribers) == 1)
        url = endpoints.ws + "?last_event_id=ws-id"
        async with connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT):
            await wait_until(lambda: len(store.subscribers) == 2)
    assert [last_event_id for _, last_event_id in store.seen] == ["sse-id", "ws-id"]
    assert len({id(subscriber) for subscriber, _ in store.seen}) == 2


# -- lifecycles per server ------------------------------------------------------------


async def test_draining_one_tornado_application_leaves_another_serving(
    tornado_server: TornadoStarter,
) -> None:
    """``lifecycle_of(app).drain()`` ends that application's streams only; the other
    application's stream goes on, and it takes new ones."""
    store = QueueStore()
    rules = [(r"/events", EventSource, {"store": store, "heartbeat": 0})]
    first, second = tornado.web.Application(rules), tornado.web.Application(rules)
    bases = []
    for app in (first, second):
        server = app.listen(0, "127.0.0.1")
        port = next(iter(server._sockets.values())).getsockname()[1]
        bases.append((server, f"http://127.0.0.1:{port}/events"))
    try:
        async with (
            sse_client(bases[0][1]) as (_, _drained),
            sse_client(bases[1][1]) as (_, serving),
        ):
            await wait_until(lambda: len(store.subscribers) == 2)
            assert lifecycle_of(first).drain() == 1
            assert lifecycle_of(second).draining is False
            await wait_until(lambda: len(store.subscribers) == 1)
            store.submit("still here")
            [event] = await take(serving, 1)
            assert event.data == "still here"
            async with sse_client(bases[1][1]) as (_, newcomer):
                await wait_until(lambda: len(store.subscribers) == 2)
                store.submit("welcome")
                [event] = await take(newcomer, 1)
                assert event.data == "welcome"
    finally:
        for server, _ in bases:
            server.stop()
            await asyncio.wait_for(server.close_all_connections(), 5)


async def test_a_channels_app_drains_its_own_streams_only(
    uvicorn_server: UvicornStarter,
) -> None:
    """A ChannelsApp gives its lifecycle to its streams; a standalone app has its own
    (``.lifecycle``): draining the first leaves the second's stream open."""
    channels = Channels()
    news = channels.add("news", heartbeat=0)
    hub = ChannelsApp(channels)
    alone = EventSourceApp(news.store, heartbeat=0)
    assert isinstance(WebSocketApp(news.store).lifecycle, lifecycle.Lifecycle)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        target = alone if scope.get("path") == "/alone" else hub
        await target(scope, receive, send)

    base = await uvicorn_server(app)
    async with (
        sse_client(base + "/news/events") as (_, _from_hub),
        sse_client(base + "/alone") as (_, from_alone),
    ):
        await wait_until(lambda: len(news.store.subscribers) == 2)
        assert hub.lifecycle.drain() == 1
        await wait_until(lambda: len(news.store.subscribers) == 1)
        assert alone.lifecycle.open_streams == 1
        news.store.submit("still here")
        [event] = await take(from_alone, 1)
        assert event.data == "still here"
