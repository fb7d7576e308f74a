"""ASGI adapter: plain ASGI apps that serve a store over SSE, WebSocket and HTTP publish.

They run under any ASGI server (uvicorn, hypercorn...) and mount in Starlette and
FastAPI as they are::

    routes = [
        Route("/events", EventSourceApp(store)),
        WebSocketRoute("/ws", WebSocketApp(store)),
        Route("/publish", PublishApp(store), methods=["POST"]),
        Mount("/channels", ChannelsApp(channels)),
    ]

A translation only, with the Tornado adapter's rules: options read by
:mod:`tornadose.http.routes`, admission by :mod:`tornadose.http.subscribe`,
supervision by :mod:`tornadose.delivery.session`, writing by
:mod:`tornadose.delivery.streams`. Every stream counts in its app's
:class:`~tornadose.delivery.lifecycle.Lifecycle` (``app.lifecycle``: the one given,
else its own); a :class:`ChannelsApp` gives its own to the apps it builds and,
served with lifespan, shuts it down, leaving other servers of the process serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, MutableMapping
from typing import Any, Unpack

from tornadose._compat.asyncio_tasks import start_eagerly
from tornadose.core.reasons import CloseReason
from tornadose.core.store import BaseStore
from tornadose.core.subscription import Subscription
from tornadose.delivery import streams
from tornadose.delivery.close import close_code_for
from tornadose.delivery.lifecycle import Lifecycle
from tornadose.delivery.session import serve
from tornadose.http import multi, routes, subscribe
from tornadose.http.answer import Answer, raw_headers, response_headers
from tornadose.http.channels import Channels
from tornadose.http.cors import CrossOrigin
from tornadose.http.documents import Site, document_answer, not_found, site_of
from tornadose.http.publish import Publishing, PublishOptions
from tornadose.http.request import joined_headers
from tornadose.wire import sse

__all__ = [
    "AnswerApp",
    "ChannelsApp",
    "EventSourceApp",
    "EventSourceAppOptions",
    "MultiEventSourceApp",
    "MultiWebSocketApp",
    "PublishApp",
    "WebSocketApp",
    "WebSocketAppOptions",
    "with_cors",
]

#: The SSE response headers, encoded once for every stream.
_SSE_HEADERS = raw_headers(sse.RESPONSE_HEADERS)

logger = logging.getLogger("tornadose.asgi")

Scope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[ASGIMessage]]
Send = Callable[[ASGIMessage], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The WebSocket close code for a refused handshake when the server cannot answer
#: with an HTTP status (no ``websocket.http.response`` extension): policy violation.
CLOSE_POLICY_VIOLATION = 1008


async def send_answer(send: Send, answer: Answer) -> None:
    """Send a complete :class:`~tornadose.http.answer.Answer` as the HTTP response."""
    headers = raw_headers(response_headers(answer))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


async def refuse_websocket(scope: Scope, send: Send, answer: Answer) -> None:
    """Refuse a WebSocket handshake: with the HTTP answer where the server supports
    it, else by closing with ``1008`` before accepting."""
    if "websocket.http.response" in scope.get("extensions", {}):
        headers = raw_headers(response_headers(answer))
        start = {"type": "websocket.http.response.start", "status": answer.status}
        await send({**start, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": answer.body})
    else:
        await send({"type": "websocket.close", "code": CLOSE_POLICY_VIOLATION})


async def _refuse(scope: Scope, send: Send, answer: Answer) -> None:
    if scope["type"] == "websocket":
        await refuse_websocket(scope, send, answer)
    else:
        await send_answer(send, answer)


def _request(scope: Scope) -> subscribe.Request:
    pairs = scope.get("headers", ())
    headers = joined_headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in pairs)
    query = scope.get("query_string", b"").decode("latin-1")
    websocket = scope["type"] == "websocket"
    return subscribe.Request(scope.get("method", "GET"), headers, query, websocket)


class _Stream:
    """One open ASGI stream: the :class:`~tornadose.delivery.session.Transport`
    of :func:`~tornadose.delivery.session.serve`, and the watcher of the client's
    disconnect (a second task, reading ``receive``).

    Kept small (an idle connection holds it for the stream's life): slots, and its
    own methods as the callables it hands out, instead of closures."""

    __slots__ = ("options", "receive", "send", "subscription", "websocket")

    gone_errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, app: _SubscriberApp, send: Send, receive: Receive) -> None:
        self.options, self.send, self.receive = app.options, send, receive
        self.websocket = app.access.kind is subscribe.Kind.WEBSOCKET
        self.subscription: Subscription | None = None

    async def wait_disconnect(self) -> None:
        """Read from the client until it is gone (its frames are ignored)."""
        gone = "websocket.disconnect" if self.websocket else "http.disconnect"
        while (await self.receive())["type"] != gone:
            pass

    def disconnected(self, watcher: asyncio.Future[None]) -> None:
        """:meth:`wait_disconnect` ended: the client is gone (unless it was cancelled)."""
        if watcher.cancelled():
            return
        if watcher.exception() is not None:
            logger.error("receiving from the client failed", exc_info=watcher.exception())
        if self.subscription is not None:
            self.subscription.close(CloseReason.CLIENT_GONE)

    def deliver(self, subscription: Subscription) -> Awaitable[CloseReason]:
        options = self.options
        if isinstance(options, streams.SSEOptions):
            return streams.stream_sse(subscription, self.write, options, write_now=self.write_now)
        return streams.stream_websocket(
            subscription, self.send_frames, options, send_frames_now=self.send_frames_now
        )

    async def write(self, chunk: bytes) -> None:
        await self.send({"type": "http.response.body", "body": chunk, "more_body": True})

    def write_now(self, chunk: bytes) -> Awaitable[None] | None:
        """:meth:`write`, synchronously (for direct delivery): started at once, see
        :func:`~tornadose._compat.asyncio_tasks.start_eagerly`."""
        return start_eagerly(self.write(chunk))

    async def send_frames(self, frames: list[str]) -> None:
        for text in frames:
            await self.send({"type": "websocket.send", "text": text})

    def send_frames_now(self, frames: list[str]) -> Awaitable[None] | None:
        """:meth:`send_frames`, synchronously, as :meth:`write_now`."""
        return start_eagerly(self.send_frames(frames))

    async def last_frame(self, close: tuple[int, str]) -> None:
        if not self.websocket:
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        with contextlib.suppress(RuntimeError):  # the connection closed meanwhile
            await self.send({"type": "websocket.close", "code": close[0], "reason": close[1]})

    def abort(self) -> None:
        """Nothing to do: the app returns, and the server drops a response left
        incomplete (SSE) or closes the WebSocket."""


class EventSourceAppOptions(routes.EventsOptions, total=False):
    """The options of :class:`EventSourceApp`: the Tornado ``EventSource``'s
    (:class:`~tornadose.http.routes.EventsOptions`), and the app's ``lifecycle``."""

    lifecycle: Lifecycle | None


class WebSocketAppOptions(routes.WebSocketOptions, total=False):
    """The options of :class:`WebSocketApp`: the Tornado ``WebSocketSubscriber``'s
    (:class:`~tornadose.http.routes.WebSocketOptions`), and the app's ``lifecycle``."""

    lifecycle: Lifecycle | None


class _SubscriberApp:
    """An ASGI app admitting subscribers and streaming to them, with the options
    ``read`` makes of its keyword options; its streams count in :attr:`lifecycle`
    (the one given, else one of its own)."""

    def __init__(self, store: BaseStore, read: _Read, options: Mapping[str, Any]) -> None:
        options = dict(options)
        self.lifecycle = options.pop("lifecycle", None) or Lifecycle(type(self).__name__)
        self.endpoint, self.options = read(store, options)
        self.access: subscribe.Access = self.endpoint
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return  # lifespan: nothing to start or stop (served alone, uvicorn goes on)
        # Admitted in a coroutine of its own, which is over before streaming starts:
        # what admission parsed (the request, its header strings) is not kept for the
        # stream's life (the scope is: the server holds it anyway).
        stream = await self._admit(scope, receive, send)
        subscription = stream.subscription if stream is not None else None
        if stream is None or subscription is None:
            return
        if not stream.websocket:
            try:
                await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
                await stream.write(b"")  # an empty chunk: the server sends the headers now
            except BaseException:  # the client left (or the task was cancelled) first
                subscription.close(CloseReason.CLIENT_GONE)
                raise
        watcher = asyncio.ensure_future(stream.wait_disconnect())
        watcher.add_done_callback(stream.disconnected)
        try:
            await serve(subscription, stream, self.lifecycle)
        finally:
            watcher.cancel()

    async def _admit(self, scope: Scope, receive: Receive, send: Send) -> _Stream | None:
        """Admit the request and register its stream (with its subscription), or
        answer a refusal (``None``)."""
        request = _request(scope)
        if request.websocket and (await receive())["type"] != "websocket.connect":
            return None
        registrar = await self.admission(request)
        if isinstance(registrar, Answer):
            await _refuse(scope, send, registrar)
            return None
        stream = _Stream(self, send, receive)
        if stream.websocket:  # accepted before registering: a closed store closes it
            await send({"type": "websocket.accept"})
        outcome = registrar(stream)
        if isinstance(outcome, Answer):
            await send_answer(send, outcome)
        elif isinstance(outcome, CloseReason):
            code, text = close_code_for(outcome)
            await send({"type": "websocket.close", "code": code, "reason": text})
        else:
            stream.subscription = outcome
            return stream
        return None

    async def admission(self, request: subscribe.Request) -> Answer | subscribe.Registrar:
        """The refusal to send, or what registers the stream once it is open."""
        return await subscribe.admission(self.endpoint, request)


_Read = Callable[[BaseStore, Any], tuple[subscribe.Subscribing, streams.StreamOptions]]


class EventSourceApp(_SubscriberApp):
    """ASGI app streaming a store as Server-Sent Events (options:
    :class:`EventSourceAppOptions`). ``GET`` only: other methods get ``405``; a
    closed store answers ``204``."""

    def __init__(self, store: BaseStore, **options: Unpack[EventSourceAppOptions]) -> None:
        super().__init__(store, routes.sse_endpoint, options)


class WebSocketApp(_SubscriberApp):
    """ASGI app sending a store's messages over WebSocket, one text frame each, as the
    Tornado ``WebSocketSubscriber`` does (options: :class:`WebSocketAppOptions`).
    Frames from the client are ignored; a foreign origin gets ``403``, a plain HTTP
    request ``400``."""

    def __init__(self, store: BaseStore, **options: Unpack[WebSocketAppOptions]) -> None:
        super().__init__(store, routes.websocket_endpoint, options)


class _MultiApp(_SubscriberApp):
    """A multi-channel endpoint (:mod:`tornadose.http.multi`) as an ASGI app."""

    def __init__(
        self,
        channels: Channels,
        kind: subscribe.Kind,
        *,
        allowed_origins: Collection[str] | None = None,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        self.lifecycle = lifecycle or Lifecycle(type(self).__name__)
        self.multi_endpoint, self.options = multi.multi_endpoint(channels, kind, allowed_origins)
        self.access = self.multi_endpoint

    async def admission(self, request: subscribe.Request) -> Answer | subscribe.Registrar:
        """Admit the set (:func:`tornadose.http.multi.admission`)."""
        return await multi.admission(self.multi_endpoint, request)


class MultiEventSourceApp(_MultiApp):
    """Several channels and patterns of ``channels`` on one SSE stream (see
    :mod:`tornadose.http.multi`); ``ChannelsApp`` serves it at ``{prefix}/_multi/events``."""

    def __init__(self, channels: Channels, *, lifecycle: Lifecycle | None = None) -> None:
        super().__init__(channels, subscribe.Kind.SSE, lifecycle=lifecycle)


class MultiWebSocketApp(_MultiApp):
    """The same over WebSocket; ``ChannelsApp`` serves it at ``{prefix}/_multi/ws``."""

    def __init__(
        self,
        channels: Channels,
        *,
        allowed_origins: Collection[str] | None = None,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        kind = subscribe.Kind.WEBSOCKET
        super().__init__(channels, kind, allowed_origins=allowed_origins, lifecycle=lifecycle)


async def _http_only(scope: Scope, send: Send) -> bool:
    """Whether ``scope`` is an HTTP request; a WebSocket is closed with ``1008``."""
    http: bool = scope["type"] == "http"
    if not http:
        await send({"type": "websocket.close", "code": CLOSE_POLICY_VIOLATION})
    return http


class PublishApp:
    """ASGI app publishing the JSON body of a ``POST`` to a store, answered as
    :mod:`tornadose.http.publish` says; options as the Tornado ``PublishHandler``'s
    (the body is not read past ``max_body``)."""

    def __init__(self, store: BaseStore, **options: Unpack[PublishOptions]) -> None:
        self.publishing = Publishing(store, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await _http_only(scope, send):
            return
        request = _request(scope)
        answer = await self.publishing.refuse(request.method, request.headers)
        body = self.publishing.body()
        while answer is None:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # a truncated body is never published, and nobody awaits an answer
            if not body.add(message.get("body", b"")) or not message.get("more_body", False):
                answer = await self.publishing.answer(body, request.query)
        await send_answer(send, answer)


class AnswerApp:
    """An ASGI app answering with a computed :class:`Answer`, as
    :func:`tornadose.http.documents.document_answer` says."""

    def __init__(self, make_answer: Callable[[], Answer]) -> None:
        self.make_answer = make_answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await _http_only(scope, send):
            answer = document_answer(scope["method"], self.make_answer, site(scope))
            await send_answer(send, answer)


def site(scope: Scope) -> Site:
    """Where the client sees the channels of a document request: the full path
    (``root_path``, hence any mount path, included) and ``Host`` of ``scope``."""
    host = _request(scope).headers.get("host")
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and not path.startswith(root):  # a server that leaves root_path out of path
        path = root + path
    return site_of(path, host, scope.get("scheme", "http"))


def with_cors(app: ASGIApp, cors: CrossOrigin | None) -> ASGIApp:
    """``app`` under the CORS rules ``cors`` (:mod:`tornadose.http.cors`, as the Tornado
    handlers follow them): a preflight is answered here, every other HTTP answer
    gets the CORS headers; WebSocket scopes pass through (their origin check applies).
    ``app`` itself without rules."""
    if cors is None:
        return app

    async def cross_origin(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = _request(scope)
            preflight = cors.preflight(request.method, request.headers)
            if preflight is not None:
                await send_answer(send, preflight)
                return
            send = _adding_cors(scope, send, cors)
        await app(scope, receive, send)

    return cross_origin


def _adding_cors(scope: Scope, send: Send, cors: CrossOrigin | None) -> Send:
    """``send``, adding the CORS headers of ``cors`` for the request of ``scope`` to
    the response's start."""
    request = _request(scope)
    headers = raw_headers(cors.headers(request.method, request.headers)) if cors else []
    if not headers:
        return send

    async def sending(message: ASGIMessage) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *headers]}
        await send(message)

    return sending


_APPS: dict[routes.Kind, Callable[..., ASGIApp]] = {
    routes.Kind.EVENTS: EventSourceApp,
    routes.Kind.WEBSOCKET: WebSocketApp,
    routes.Kind.PUBLISH: PublishApp,
    routes.Kind.ANSWER: AnswerApp,
    routes.Kind.MULTI_EVENTS: MultiEventSourceApp,
    routes.Kind.MULTI_WEBSOCKET: MultiWebSocketApp,
}
_STREAMS = frozenset(
    {
        routes.Kind.EVENTS,
        routes.Kind.WEBSOCKET,
        routes.Kind.MULTI_EVENTS,
        routes.Kind.MULTI_WEBSOCKET,
    }
)


class ChannelsApp:
    """ASGI app serving every channel of a :class:`~tornadose.http.channels.Channels`
    at the URLs of :mod:`tornadose.http.routes`, under the channels' ``prefix``,
    relative to where it is mounted (``root_path``); unknown paths get ``404``
    (``unknown_channel``).

    It owns a :class:`~tornadose.delivery.lifecycle.Lifecycle` (:attr:`lifecycle`,
    or the one given) shared by its streams. Served directly by an ASGI server it
    also handles lifespan: startup registers it as serving its channels
    (:meth:`~tornadose.http.channels.Channels.serve_from`); shutdown drains that
    lifecycle (not the process), waits for its streams to end, then closes the stores
    unless another server still serves them (see
    :meth:`~tornadose.http.channels.Channels.stop_serving_from`). An app whose
    lifespan never starts (mounted with ``app.mount``: Starlette sends no lifespan to
    mounts) never counts as a server, so it keeps no other server's shutdown from
    closing the stores.
    """

    def __init__(self, channels: Channels, *, lifecycle: Lifecycle | None = None) -> None:
        self.channels = channels
        self.lifecycle = lifecycle or Lifecycle("ChannelsApp")
        streaming = {"lifecycle": self.lifecycle}
        self._apps: dict[str, ASGIApp] = {
            r.path: with_cors(
                _APPS[r.kind](**r.options, **(streaming if r.kind in _STREAMS else {})),
                routes.cross_origin(channels, r.kind),
            )
            for r in routes.served(channels)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        self.channels.presence.start()  # if not yet (no lifespan): a no-op once running
        path = route_path(scope)
        app = self.app_for(path)
        if app is not None:
            await app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await receive()
        else:
            send = _adding_cors(scope, send, routes.cross_origin(self.channels, None))
        await _refuse(scope, send, not_found(path))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start_serving()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shut_down()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def start_serving(self) -> None:
        """What lifespan startup does: count this app as a server of its channels
        until :meth:`shut_down` (see
        :meth:`~tornadose.http.channels.Channels.serve_from`)."""
        self.channels.serve_from(self)

    async def shut_down(self) -> None:
        """What lifespan shutdown does: drain :attr:`lifecycle` (new subscribers are
        refused, open streams end), then close the stores unless another server still
        serves them (see :meth:`~tornadose.http.channels.Channels.stop_serving_from`)."""
        last = self.channels.stop_serving_from(self)
        await self.lifecycle.shut_down(close=[self.channels.aclose] if last else [])

    def app_for(self, path: str) -> ASGIApp | None:
        """The app serving ``path`` (relative to where this app is mounted, prefix
        included: ``/api/chat/events``), ``None`` if it serves nothing there."""
        return self._apps.get(path)


def route_path(scope: Scope) -> str:
    """The request path relative to where the app is mounted (``root_path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
