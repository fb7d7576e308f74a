"""ASGI adapter: plain ASGI apps that serve a store over SSE, WebSocket and HTTP publish.

They run under any ASGI server (uvicorn, hypercorn...) and mount in Starlette and
FastAPI as they are::

    from starlette.routing import Mount, Route, WebSocketRoute

    routes = [
        Route("/events", EventSourceApp(store)),
        WebSocketRoute("/ws", WebSocketApp(store)),
        Route("/publish", PublishApp(store), methods=["POST"]),
        Mount("/channels", ChannelsApp(channels)),
    ]

The apps translate ASGI messages to the core and back; what is sent, in which
order, with which bounds, is decided by :mod:`tornadose.delivery.streams`,
:mod:`tornadose.http.publish` and :mod:`tornadose.http.auth`, exactly as for Tornado.
What they guarantee on top:

* a subscriber is registered only once its stream is open, and deregistered as
  soon as the client disconnects (``http.disconnect`` / ``websocket.disconnect``),
  even when nothing is being published;
* a client cut off (slow consumer, write timeout) is cut at once, even if a write
  to it is stuck;
* a client that sends ``Last-Event-ID`` (header, or ``last_event_id`` query
  parameter) resumes (see :mod:`tornadose.core.history`);
* on shutdown (``SIGINT``/``SIGTERM`` under uvicorn, or
  :func:`tornadose.shutdown.drain`), every stream ends within
  :data:`~tornadose.shutdown.DEFAULT_DEADLINE` seconds, so the server can exit
  (see :mod:`tornadose.delivery.lifecycle`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from functools import partial
from typing import Any

from tornadose._compat.eager import start_eagerly
from tornadose.core.errors import StoreClosed
from tornadose.core.reasons import CUT_REASONS, CloseReason
from tornadose.core.store import BaseStore
from tornadose.core.subscription import Subscription
from tornadose.delivery import streams
from tornadose.delivery.close import close_code_for
from tornadose.delivery.lifecycle import PROCESS, drain_process, install_signal_handlers
from tornadose.http.answer import Answer, method_not_allowed
from tornadose.http.auth import Action, Authorize, check_access
from tornadose.http.channels import Channels, Endpoint, Route
from tornadose.http.publish import DEFAULT_MAX_BODY, publish_json, refuse_before_body, too_large
from tornadose.http.request import event_from_query, last_event_id_from
from tornadose.http.websocket import not_a_websocket, refuse_origin
from tornadose.wire import sse

__all__ = ["ChannelsApp", "EventSourceApp", "PublishApp", "WebSocketApp"]

#: The SSE response headers, encoded once for every stream.
_SSE_HEADERS = [(k.lower().encode(), v.encode()) for k, v in sse.RESPONSE_HEADERS]

logger = logging.getLogger("tornadose.asgi")

Scope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[ASGIMessage]]
Send = Callable[[ASGIMessage], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Seconds the last frame of a stream may take to be sent before the app gives up.
FINISH_TIMEOUT = 1.0

#: The WebSocket close code for a refused handshake when the server cannot answer
#: with an HTTP status (no ``websocket.http.response`` extension): policy violation.
CLOSE_POLICY_VIOLATION = 1008


# -- small translations ---------------------------------------------------------------


def request_headers(scope: Scope) -> dict[str, str]:
    """The request's headers as ``{lower-case name: value}`` (repeated ones joined)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


async def send_answer(send: Send, answer: Answer) -> None:
    """Send a complete :class:`~tornadose.http.answer.Answer` as the HTTP response."""
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
    if answer.status not in (204, 304):  # these carry no body and no length
        headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


async def refuse_websocket(scope: Scope, send: Send, answer: Answer) -> None:
    """Refuse a WebSocket handshake: with the HTTP answer where the server supports
    it, else by closing with ``1008`` before accepting."""
    if "websocket.http.response" in scope.get("extensions", {}):
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers]
        await send(
            {"type": "websocket.http.response.start", "status": answer.status, "headers": headers}
        )
        await send({"type": "websocket.http.response.body", "body": answer.body})
    else:
        await send({"type": "websocket.close", "code": CLOSE_POLICY_VIOLATION})


async def serve_subscription(
    subscription: Subscription,
    deliver: Callable[[], Awaitable[CloseReason]],
    wait_disconnect: Callable[[], Awaitable[None]],
    finish: Callable[[CloseReason], Awaitable[None]],
) -> None:
    """Run one stream: ``deliver`` until the subscription ends, then ``finish``.

    The ASGI side of every stream. ``deliver`` runs in the request's own task; a
    second task waits for the client's disconnect (``wait_disconnect`` returning),
    which closes the subscription. A cut (slow consumer, write timeout), or a drain
    not finished within the deadline, interrupts delivery even if it is stuck in a
    write. ``finish`` (the last frame, given why the stream ended) gets at most
    :data:`FINISH_TIMEOUT` seconds, so a client that stopped reading cannot keep the
    app from returning.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None, "serve_subscription runs in a task"
    watcher = asyncio.ensure_future(wait_disconnect())
    watcher.add_done_callback(partial(_on_disconnect, subscription))
    interrupt = _Interrupt(task)

    def on_close(closed: Subscription) -> None:
        if closed.close_reason in CUT_REASONS:
            interrupt()

    subscription.add_close_callback(on_close)
    install_signal_handlers(loop)
    with PROCESS.streaming(subscription, cut=interrupt.deadline):
        try:
            reason = await _delivered(subscription, deliver, interrupt)
        finally:
            interrupt.armed = False
            watcher.cancel()
            subscription.close(CloseReason.DEREGISTERED)
        # A stream cut at the drain deadline gets no last frame: its client is stuck.
        if reason is not CloseReason.CLIENT_GONE and not interrupt.at_deadline:
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(finish(reason), FINISH_TIMEOUT)


class _Interrupt:
    """Interrupts delivery running in ``task``: cancels the task once, while armed
    (:func:`_delivered` then takes the cancellation back)."""

    __slots__ = ("armed", "at_deadline", "fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.armed = True
        self.fired = False
        #: Whether it was the shutdown's drain deadline.
        self.at_deadline = False

    def __call__(self) -> None:
        if self.armed and not self.fired:
            self.fired = True
            self.task.cancel()

    def deadline(self) -> None:
        """The drain deadline passed (see
        :meth:`tornadose.delivery.lifecycle.Lifecycle.streaming`)."""
        if self.armed and not self.fired:
            self.at_deadline = True
            self()


def _on_disconnect(subscription: Subscription, watcher: asyncio.Future[None]) -> None:
    """The client left (or receiving failed, logged): close the subscription."""
    if watcher.cancelled():
        return
    if watcher.exception() is not None:
        logger.error("receiving from the client failed", exc_info=watcher.exception())
    subscription.close(CloseReason.CLIENT_GONE)


async def _delivered(
    subscription: Subscription,
    deliver: Callable[[], Awaitable[CloseReason]],
    interrupt: _Interrupt,
) -> CloseReason:
    """Why delivery ended: it returned, the client left, or it was cut."""
    try:
        return await deliver()
    except asyncio.CancelledError:
        if not interrupt.fired or interrupt.task.uncancel() > 0:
            raise  # this request itself is being cancelled
        return subscription.close_reason or CloseReason.CLIENT_GONE
    except OSError:  # the server could not write: the client is gone
        subscription.close(CloseReason.CLIENT_GONE)
        return CloseReason.CLIENT_GONE


# -- the apps ----------------------------------------------------------------------------


class EventSourceApp:
    """ASGI app streaming a store as Server-Sent Events.

    Options are those of the Tornado ``EventSource`` (``heartbeat``, ``period``,
    ``retry``), plus ``authorize`` (the hook of :mod:`tornadose.http.auth`) and
    ``channel`` (the name the hook is given). ``GET`` only: other methods get
    ``405``; a closed store answers ``204`` (an ``EventSource`` stops reconnecting).
    """

    def __init__(
        self,
        store: BaseStore,
        *,
        heartbeat: float | None = streams.DEFAULT_HEARTBEAT,
        period: float | None = None,
        retry: int | None = None,
        write_timeout: float | None = streams.DEFAULT_WRITE_TIMEOUT,
        authorize: Authorize | None = None,
        channel: str = "",
    ) -> None:
        self.store = store
        self.sse_options = streams.SSEOptions(
            heartbeat=heartbeat, period=period, retry=retry, write_timeout=write_timeout
        )
        self.authorize = authorize
        self.channel = channel

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": CLOSE_POLICY_VIOLATION})
            return
        if scope["method"] != "GET":
            await send_answer(send, method_not_allowed(scope["method"], "GET"))
            return
        headers = request_headers(scope)
        refusal = await check_access(self.authorize, headers, self.channel, Action.SUBSCRIBE)
        if refusal is not None:
            await send_answer(send, refusal)
            return
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            subscription = self.store.subscribe(last_event_id_from(headers, query))
        except StoreClosed:
            await send_answer(send, Answer(204))
            return
        await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        # An empty chunk makes the server send the headers now, before any event.
        await send({"type": "http.response.body", "body": b"", "more_body": True})

        async def write(chunk: bytes) -> None:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})

        def write_now(chunk: bytes) -> Awaitable[None] | None:
            return start_eagerly(write(chunk))

        async def wait_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        async def finish(reason: CloseReason) -> None:
            if reason not in CUT_REASONS:
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        await serve_subscription(
            subscription,
            lambda: streams.stream_sse(subscription, write, self.sse_options, write_now=write_now),
            wait_disconnect,
            finish,
        )


class WebSocketApp:
    """ASGI app sending a store's messages over WebSocket, one text frame each.

    Frames are those of the Tornado ``WebSocketSubscriber``
    (``{"data": ..., "id": ...}``), and so are the close codes. Frames from the
    client are ignored. ``allowed_origins``: origins besides the page's own that may
    connect (``["*"]`` for any); browsers from other origins are refused (``403``),
    like Tornado's default ``check_origin``. ``authorize``/``channel`` as for
    :class:`EventSourceApp`. A plain HTTP request gets ``400``.
    """

    def __init__(
        self,
        store: BaseStore,
        *,
        period: float | None = None,
        write_timeout: float | None = streams.DEFAULT_WRITE_TIMEOUT,
        authorize: Authorize | None = None,
        channel: str = "",
        allowed_origins: Collection[str] | None = None,
    ) -> None:
        self.store = store
        self.stream_options = streams.StreamOptions(period=period, write_timeout=write_timeout)
        self.authorize = authorize
        self.channel = channel
        self.allowed_origins = allowed_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await send_answer(send, not_a_websocket())
            return
        if (await receive())["type"] != "websocket.connect":
            return
        headers = request_headers(scope)
        refusal = refuse_origin(headers, self.allowed_origins) or await check_access(
            self.authorize, headers, self.channel, Action.SUBSCRIBE
        )
        if refusal is not None:
            await refuse_websocket(scope, send, refusal)
            return
        await send({"type": "websocket.accept"})
        query = scope.get("query_string", b"").decode("latin-1")
        try:
            subscription = self.store.subscribe(last_event_id_from(headers, query))
        except StoreClosed:
            code, reason_text = close_code_for(CloseReason.STORE_CLOSED)
            await send({"type": "websocket.close", "code": code, "reason": reason_text})
            return

        async def send_frames(frames: list[str]) -> None:
            for text in frames:
                await send({"type": "websocket.send", "text": text})

        def send_frames_now(frames: list[str]) -> Awaitable[None] | None:
            return start_eagerly(send_frames(frames))

        async def wait_disconnect() -> None:
            while (await receive())["type"] != "websocket.disconnect":
                pass  # frames from the client are ignored

        async def close(reason: CloseReason) -> None:
            code, reason_text = close_code_for(reason)
            with contextlib.suppress(RuntimeError):  # the connection closed meanwhile
                await send({"type": "websocket.close", "code": code, "reason": reason_text})

        await serve_subscription(
            subscription,
            lambda: streams.stream_websocket(
                subscription, send_frames, self.stream_options, send_frames_now=send_frames_now
            ),
            wait_disconnect,
            close,
        )


class PublishApp:
    """ASGI app publishing the JSON body of a ``POST`` to a store.

    Answers as :mod:`tornadose.http.publish` says (202 with the id; 400, 401, 403,
    405, 413, 415, 422, 503 with a JSON error body). ``max_body`` bounds the body in
    bytes (default 1 MiB); a longer body is not read past the limit.
    """

    def __init__(
        self,
        store: BaseStore,
        *,
        max_body: int = DEFAULT_MAX_BODY,
        authorize: Authorize | None = None,
        channel: str = "",
    ) -> None:
        self.store = store
        self.max_body = max_body
        self.authorize = authorize
        self.channel = channel

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": CLOSE_POLICY_VIOLATION})
            return
        answer = await refuse_before_body(
            scope["method"],
            request_headers(scope),
            channel=self.channel,
            max_body=self.max_body,
            authorize=self.authorize,
        )
        if answer is None:
            try:
                body = await read_body(receive, self.max_body)
            except ClientGone:
                return  # a truncated body is never published, and nobody awaits an answer
            if body is None:
                answer = too_large(self.max_body)
            else:
                query = scope.get("query_string", b"").decode("latin-1")
                answer = await publish_json(self.store, body, event=event_from_query(query))
        await send_answer(send, answer)


class ClientGone(Exception):
    """The client disconnected before its request body was complete."""


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """Read the request body; ``None`` as soon as it exceeds ``limit`` bytes. Raises
    :class:`ClientGone` if the client disconnects first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class ChannelsApp:
    """ASGI app serving every channel of a :class:`~tornadose.http.channels.Channels`.

    Serves the URLs listed in :mod:`tornadose.http.channels`, under the channels'
    ``prefix``, relative to where it is mounted (``root_path``). Unknown paths get
    ``404`` (``unknown_channel``). Served directly by an ASGI server it also handles
    lifespan: shutdown drains the streams and closes the stores.
    """

    def __init__(self, channels: Channels) -> None:
        self.channels = channels
        self._apps: dict[str, ASGIApp] = {
            channels.prefix + route.path: self._app_for(route) for route in channels.routes()
        }

    def _app_for(self, route: Route) -> ASGIApp:
        channels, channel = self.channels, route.channel
        if route.endpoint is Endpoint.ASYNCAPI:
            return _AnswerApp(channels.asyncapi_answer)
        if route.endpoint is Endpoint.METRICS:
            return _AnswerApp(channels.metrics_answer)
        assert channel is not None
        options: dict[str, Any] = {"authorize": channels.authorize, "channel": channel.name}
        if route.endpoint is Endpoint.EVENTS:
            return EventSourceApp(
                channel.store,
                heartbeat=channel.heartbeat,
                period=channel.period,
                retry=channel.retry,
                write_timeout=channel.write_timeout,
                **options,
            )
        if route.endpoint is Endpoint.WEBSOCKET:
            return WebSocketApp(
                channel.store,
                period=channel.period,
                write_timeout=channel.write_timeout,
                allowed_origins=channel.allowed_origins,
                **options,
            )
        if route.endpoint is Endpoint.PUBLISH:
            return PublishApp(channel.store, max_body=channel.max_body, **options)
        return _AnswerApp(lambda: channels.schema_answer(channel.name))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        path = route_path(scope)
        app = self._apps.get(path)
        if app is not None:
            await app(scope, receive, send)
        elif scope["type"] == "websocket":
            await receive()
            await refuse_websocket(scope, send, self.channels.not_found(path))
        else:
            await send_answer(send, self.channels.not_found(path))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                drain_process()
                await self.channels.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def route_path(scope: Scope) -> str:
    """The request path relative to where the app is mounted (``root_path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class _AnswerApp:
    """An ASGI app answering ``GET`` with a computed :class:`Answer`."""

    def __init__(self, make_answer: Callable[[], Answer]) -> None:
        self.make_answer = make_answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await send({"type": "websocket.close", "code": CLOSE_POLICY_VIOLATION})
        elif scope["method"] not in ("GET", "HEAD"):
            await send_answer(send, method_not_allowed(scope["method"], "GET", "HEAD"))
        else:
            await send_answer(send, self.make_answer())
