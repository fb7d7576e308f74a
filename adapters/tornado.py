"""Tornado adapter: request handlers that stream a store's messages to clients.

Mount a handler with its store as its keyword arguments, as in the original
tornadose: ``Application([(r"/events", EventSource, {"store": store})])``.

A translation only, with the ASGI adapter's rules: options read by
:mod:`tornadose.http.routes`, admission by :mod:`tornadose.http.subscribe` (a
handler registers only once its stream is open), supervision by
:mod:`tornadose.delivery.session`, writing by :mod:`tornadose.delivery.streams`. A
handler deregisters as soon as its client leaves; WebSocket delivery runs in a task
of its own, so client frames are read meanwhile; every stream counts in its
``Application``'s :class:`~tornadose.delivery.lifecycle.Lifecycle`
(:func:`lifecycle_of`). Private Tornado API is used only in
:mod:`tornadose.adapters._tornado_compat`.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Awaitable, Callable, Collection
from functools import partial
from typing import Any, Unpack

from tornado.web import Application, RequestHandler, stream_request_body
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from tornadose._compat.sockets import set_user_timeout
from tornadose.adapters import _tornado_compat as compat
from tornadose.core.message import Message
from tornadose.core.reasons import CloseReason
from tornadose.core.store import BaseStore, Published
from tornadose.core.subscription import Subscription
from tornadose.delivery import streams
from tornadose.delivery.close import close_code_for
from tornadose.delivery.lifecycle import Lifecycle
from tornadose.delivery.session import serve
from tornadose.http import multi, routes, subscribe
from tornadose.http.answer import Answer, response_headers, status_answer
from tornadose.http.channels import Channels
from tornadose.http.cors import CrossOrigin
from tornadose.http.documents import document_answer, not_found, site_of
from tornadose.http.publish import Publishing, PublishOptions, too_large
from tornadose.http.request import joined_headers
from tornadose.wire import sse

__all__ = [
    "AnswerHandler",
    "BaseHandler",
    "EventSource",
    "JSONErrorHandler",
    "MultiEventSource",
    "MultiWebSocket",
    "PublishHandler",
    "UnknownChannelHandler",
    "WebSocketSubscriber",
    "channel_handlers",
    "lifecycle_of",
    "send_answer",
]

_lifecycles: weakref.WeakKeyDictionary[Application, Lifecycle] = weakref.WeakKeyDictionary()


def lifecycle_of(application: Application) -> Lifecycle:
    """The :class:`~tornadose.delivery.lifecycle.Lifecycle` of ``application``'s
    streams (one per application, made on first use): ``lifecycle_of(app).drain()``
    ends that application's streams and leaves other servers in the process serving."""
    lifecycle = _lifecycles.get(application)
    if lifecycle is None:
        lifecycle = _lifecycles[application] = Lifecycle(f"tornado-{id(application):x}")
    return lifecycle


def send_answer(handler: RequestHandler, answer: Answer) -> None:
    """Finish ``handler``'s response with exactly ``answer``'s status, headers, body."""
    handler.clear()
    handler.clear_header("Content-Type")
    handler.set_status(answer.status)
    for name, value in response_headers(answer):
        handler.set_header(name, value)
    handler.finish(answer.body or None)


class JSONErrorHandler(RequestHandler):
    """A handler whose error responses are JSON, as the ASGI adapter's
    (:func:`~tornadose.http.answer.status_answer`)."""

    #: The methods a ``405`` answer names in ``Allow``.
    allowed_methods: tuple[str, ...] = ("GET",)
    #: The endpoint's CORS rules (the ``cors`` option, which ``channel_handlers`` sets
    #: from ``Channels(cors_origins=...)``; see :mod:`tornadose.http.cors`).
    cors: CrossOrigin | None = None

    def use_cors(self, cors: CrossOrigin | None) -> None:
        """Follow ``cors``: its headers go on every answer, kept when Tornado clears
        the headers for an error (:meth:`set_default_headers`)."""
        self.cors = cors
        self.set_default_headers()

    def set_default_headers(self) -> None:
        """The CORS headers of :attr:`cors` for this request, if any."""
        if self.cors is not None:
            headers = joined_headers(self.request.headers.get_all())
            for name, value in self.cors.headers(self.request.method or "", headers):
                self.set_header(name, value)

    def answer_preflight(self) -> bool:
        """Answer a CORS preflight as :attr:`cors` says (``True``); ``False``: not one."""
        if self.cors is None:
            return False
        headers = joined_headers(self.request.headers.get_all())
        answer = self.cors.preflight(self.request.method or "", headers)
        if answer is not None:
            send_answer(self, answer)
        return answer is not None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Send the error as JSON."""
        method, reason = self.request.method or "", compat.reason_of(self)
        send_answer(self, status_answer(status_code, reason, method, self.allowed_methods))


class BaseHandler(JSONErrorHandler):
    """Base class of subscriber handlers (each the session
    :class:`~tornadose.delivery.session.Transport` of its stream); subclass it and
    implement :meth:`publish`, or override :meth:`submit` (the 0.2 style): either gets
    each payload in order (see :meth:`deliver`)."""

    store: BaseStore
    subscription: Subscription | None
    websocket = False
    #: What delivery raises when the client is gone (``StreamClosedError`` is an OSError).
    gone_errors: tuple[type[BaseException], ...] = (OSError, WebSocketClosedError)
    #: Whether :meth:`prepare` registers (the 0.x handlers); else :meth:`get` does.
    registers_in_prepare = True
    #: ``TCP_USER_TIMEOUT`` (seconds) for the connection once the stream opens.
    tcp_user_timeout: float | None = None

    def initialize(self, store: BaseStore) -> None:
        """Keep ``store`` (``TypeError`` if it is not a tornadose store)."""
        #: Who may subscribe (:mod:`tornadose.http.subscribe`), how the stream is written.
        self.endpoint = subscribe.Subscribing(store, subscribe.Kind.SSE)
        self.stream_options = streams.StreamOptions()
        self.store = store
        self._fresh()

    def _fresh(self) -> None:
        """The state of a request before its stream opens."""
        self.subscription = None
        self._delivery: asyncio.Future[CloseReason] | None = None
        self._client_gone = False
        #: What registers the stream once open (set by :meth:`may_subscribe`).
        self._registrar: subscribe.Registrar | None = None

    def _request(self) -> subscribe.Request:
        request = self.request
        headers = joined_headers(request.headers.get_all())
        websocket = self.websocket and headers.get("upgrade", "").lower() == "websocket"
        return subscribe.Request(request.method or "", headers, request.query, websocket)

    def prepare(self) -> None:
        """Answer a CORS preflight; refuse on method, handshake or origin; a 0.x
        handler registers here."""
        if self.answer_preflight():
            return
        refusal = subscribe.refuse_early(self.endpoint, self._request())
        if refusal is not None:
            send_answer(self, refusal)
        elif self.registers_in_prepare:
            self.open_subscription()

    async def may_subscribe(self) -> bool:
        """Run the admission checks and the authorize hook; answer a refusal."""
        outcome = await self.admission(self._request())
        if isinstance(outcome, Answer):
            send_answer(self, outcome)
            return False
        self._registrar = outcome
        return True

    async def admission(self, request: subscribe.Request) -> Answer | subscribe.Registrar:
        """The refusal to answer, or what registers the stream once it is open."""
        return await subscribe.admission(self.endpoint, request)

    def open_subscription(self, *, start_delivery: bool = True) -> Subscription | None:
        """Register (once) and, with ``start_delivery``, start delivering in a task.
        ``None`` if the client left, or the store is closed (then answered)."""
        if self._client_gone or self.subscription is not None:
            return self.subscription
        register = self._registrar or partial(subscribe.register, self.endpoint, self._request())
        self._registrar = None  # it holds the request's headers: not kept for the stream
        outcome = register(self)
        if isinstance(outcome, Answer):
            send_answer(self, outcome)
        elif isinstance(outcome, CloseReason):
            self.close_stream(close_code_for(outcome))
        else:
            self.subscription = outcome
            stream = getattr(self.request.connection, "stream", None)
            if self.tcp_user_timeout is not None and stream is not None and stream.socket:
                set_user_timeout(stream.socket, self.tcp_user_timeout)
            if start_delivery:
                self._delivery = asyncio.ensure_future(self.run_delivery(outcome))
        return self.subscription

    def run_delivery(self, subscription: Subscription) -> Awaitable[CloseReason]:
        """Deliver under :func:`tornadose.delivery.session.serve`, in this task."""
        return serve(subscription, self, lifecycle_of(self.application))

    def deliver(self, subscription: Subscription) -> Awaitable[CloseReason]:
        """Hand each payload to :meth:`publish` (or an overridden :meth:`submit`) from
        :func:`~tornadose.delivery.streams.stream_payloads`: :attr:`stream_options`
        apply, and an SSE stream's heartbeats and ``retry``."""
        target = self.submit if type(self).submit is not BaseHandler.submit else self.publish
        return streams.stream_payloads(
            subscription, target, self.stream_options, write=self._write_through
        )

    async def _write_through(self, chunk: bytes) -> None:
        await streams.finish(self._write_now(chunk))

    def _write_now(self, chunk: bytes) -> Awaitable[None] | None:
        # Straight to the connection's stream once the headers are out (the same bytes
        # object, framed once, for every subscriber of a flush); what is returned is
        # awaited only while the socket is backed up. Raising: the client left.
        return compat.write_body(self, chunk)

    def _customised(self, base: type[BaseHandler]) -> bool:
        cls = type(self)
        return cls.publish is not base.publish or cls.submit is not base.submit

    @property
    def period(self) -> float | None:
        """The throttling period (the 0.x attribute), from :attr:`stream_options`."""
        return self.stream_options.period

    async def last_frame(self, close: tuple[int, str]) -> None:
        """End the response."""
        await self.finish()

    def close_stream(self, close: tuple[int, str]) -> None:
        """End a WebSocket that cannot stream with ``close``; nothing for HTTP."""

    def abort(self) -> None:
        """Drop the connection at once; Tornado then calls :meth:`on_connection_close`."""
        _close(getattr(self.request.connection, "stream", None))

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Keep the response open until delivery ends."""
        if self._delivery is not None:
            await self._delivery

    def submit(self, message: Any) -> Published:
        """Queue ``message`` for this subscriber; returns a completed awaitable."""
        queued = message if isinstance(message, Message) else Message(message, id=None)
        if self.subscription is not None:
            self.subscription.put(queued)
        return Published(queued)

    def publish(self, message: Any) -> Any:
        """Write one message's payload to the client. Subclasses implement this."""
        raise NotImplementedError("publish must be implemented by subclasses of BaseHandler")

    def _gone(self) -> None:
        self._client_gone = True
        if self.subscription is not None:
            self.subscription.close(CloseReason.CLIENT_GONE)

    def on_connection_close(self) -> None:
        """Deregister at once when the client disconnects."""
        self._gone()
        super().on_connection_close()

    def on_finish(self) -> None:
        """Deregister when the response is finished, whatever the reason."""
        if self.subscription is not None:
            self.subscription.close(CloseReason.DEREGISTERED)


def _close(stream: Any) -> None:
    if stream is not None and not stream.closed():
        stream.close()


class EventSource(BaseHandler):
    """Server-Sent Events handler. Options: those of
    :class:`~tornadose.http.routes.EventsOptions`, ``tcp_user_timeout`` (see
    :mod:`tornadose._compat.sockets`) and ``cors`` (:attr:`JSONErrorHandler.cors`).
    The headers go out as soon as the stream opens; the response is never compressed."""

    registers_in_prepare = False

    def initialize(
        self,
        store: BaseStore,
        *,
        tcp_user_timeout: float | None = None,
        cors: CrossOrigin | None = None,
        **options: Unpack[routes.EventsOptions],
    ) -> None:
        """Keep the store and options (see the class docstring)."""
        super().initialize(store)
        self.use_cors(cors)
        self.tcp_user_timeout = tcp_user_timeout
        self.endpoint, self.sse_options = routes.sse_endpoint(store, options)
        self.stream_options = self.sse_options

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Authorize, register, send the SSE headers at once, stream in this task."""
        if not await self.may_subscribe():
            return
        subscription = self.open_subscription(start_delivery=False)
        if subscription is None:
            return
        for name, value in sse.RESPONSE_HEADERS:
            self.set_header(name, value)
        if self.request.version == "HTTP/1.0":
            compat.refuse_keep_alive(self)  # no chunking: only the close ends the body
        compat.disable_compression(self)
        self.flush()
        await (self._delivery or self.run_delivery(subscription))  # a subclass may have begun

    def deliver(self, subscription: Subscription) -> Awaitable[CloseReason]:
        """Stream SSE events (customised in a subclass: see :meth:`BaseHandler.deliver`)."""
        if self._customised(EventSource):
            return super().deliver(subscription)
        options = self.sse_options
        return streams.stream_sse(
            subscription, self._write_through, options, write_now=self._write_now
        )

    async def publish(self, message: Any) -> None:
        """Write one message to the client as an SSE event, and flush it."""
        await self._write_through(Message(message, id=None).sse)


class WebSocketSubscriber(BaseHandler, WebSocketHandler):
    """WebSocket handler: each message is one text frame ``{"data": ..., "id": ...}``;
    client frames are ignored. Options: those of
    :class:`~tornadose.http.routes.WebSocketOptions`. Ends with a close code of
    :mod:`tornadose.wire.websocket`."""

    websocket = True
    registers_in_prepare = False

    def initialize(self, store: BaseStore, **options: Unpack[routes.WebSocketOptions]) -> None:
        """Keep the store and options (see the class docstring)."""
        super().initialize(store)
        self.endpoint, self.stream_options = routes.websocket_endpoint(store, options)

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Authorize, then complete the handshake (origins were checked in
        :meth:`prepare`, hence :meth:`check_origin` allows all)."""
        if await self.may_subscribe():
            await WebSocketHandler.get(self, *args, **kwargs)

    def check_origin(self, origin: str) -> bool:
        return True

    def open(self, *args: str, **kwargs: str) -> None:
        """Register with the store; delivery runs in its own task."""
        self.open_subscription()

    def deliver(self, subscription: Subscription) -> Awaitable[CloseReason]:
        """Send each message as one text frame (customised in a subclass: see
        :meth:`BaseHandler.deliver`)."""
        if self._customised(WebSocketSubscriber):
            return super().deliver(subscription)
        options = self.stream_options
        return streams.stream_websocket(
            subscription, self._send_frames, options, send_frames_now=self._send_frames_now
        )

    def _send_frames_now(self, texts: list[str]) -> Awaitable[None] | None:
        return compat.send_text_frames(self, texts)

    async def _send_frames(self, texts: list[str]) -> None:
        await streams.finish(compat.send_text_frames(self, texts))

    async def last_frame(self, close: tuple[int, str]) -> None:
        """Close with ``close`` (Tornado aborts if the client does not answer)."""
        self.close_stream(close)

    def close_stream(self, close: tuple[int, str]) -> None:
        """Close the WebSocket with ``close`` (code, reason)."""
        if self.ws_connection is not None:
            self.close(*close)

    def abort(self) -> None:
        """Drop the connection at once, without a closing handshake."""
        _close(getattr(self.ws_connection, "stream", None))

    def on_message(self, message: str | bytes) -> None:
        """Ignore frames from the client."""

    def on_close(self) -> None:
        """Deregister at once when the connection closes."""
        self._gone()

    async def publish(self, message: Any) -> None:
        """Send one message to the client as a ``{"data": ...}`` text frame."""
        await self.write_message(Message(message, id=None).websocket)


class MultiEventSource(EventSource):
    """Several channels and patterns on one SSE stream (``{prefix}/_multi/events``,
    see :mod:`tornadose.http.multi`). Options: ``channels`` and ``cors``."""

    def initialize(  # type: ignore[override]
        self, channels: Channels, *, cors: CrossOrigin | None = None
    ) -> None:
        """Keep the channels (their authorize hook and limits apply)."""
        self._fresh()
        self.use_cors(cors)
        self.tcp_user_timeout = None
        self.multi_endpoint, options = multi.multi_endpoint(channels, subscribe.Kind.SSE)
        self.sse_options = self.stream_options = options

    def prepare(self) -> None:
        """Answer a CORS preflight; refuse on method or handshake."""
        if not self.answer_preflight():
            refusal = subscribe.refuse_early(self.multi_endpoint, self._request())
            if refusal is not None:
                send_answer(self, refusal)

    async def admission(self, request: subscribe.Request) -> Answer | subscribe.Registrar:
        """Admit the set (:func:`tornadose.http.multi.admission`)."""
        return await multi.admission(self.multi_endpoint, request)


class MultiWebSocket(WebSocketSubscriber):
    """Several channels and patterns on one WebSocket (``{prefix}/_multi/ws``, see
    :mod:`tornadose.http.multi`). Options: ``channels`` and ``allowed_origins``."""

    def initialize(  # type: ignore[override]
        self, channels: Channels, *, allowed_origins: Collection[str] | None = None
    ) -> None:
        """Keep the channels (their authorize hook and limits apply)."""
        self._fresh()
        kind = subscribe.Kind.WEBSOCKET
        self.multi_endpoint, self.stream_options = multi.multi_endpoint(
            channels, kind, allowed_origins
        )

    def prepare(self) -> None:
        """Refuse what is not a handshake, or from a foreign origin."""
        refusal = subscribe.refuse_early(self.multi_endpoint, self._request())
        if refusal is not None:
            send_answer(self, refusal)

    async def admission(self, request: subscribe.Request) -> Answer | subscribe.Registrar:
        """Admit the set (:func:`tornadose.http.multi.admission`)."""
        return await multi.admission(self.multi_endpoint, request)


@stream_request_body
class PublishHandler(JSONErrorHandler):
    """``POST`` a JSON message to publish it to ``store``, answered as
    :mod:`tornadose.http.publish` says. Options: those of
    :class:`~tornadose.http.publish.PublishOptions`; a body over ``max_body`` is not
    kept."""

    allowed_methods = ("POST",)

    def initialize(
        self,
        store: BaseStore,
        *,
        cors: CrossOrigin | None = None,
        **options: Unpack[PublishOptions],
    ) -> None:
        """Keep the store and options (and ``cors``: :attr:`JSONErrorHandler.cors`)."""
        self.use_cors(cors)
        self.publishing = Publishing(store, **options)
        self._body = self.publishing.body()
        self._answered = False

    def _send(self, answer: Answer | None) -> None:
        if answer is not None and not self._answered:
            self._answered = True
            send_answer(self, answer)

    async def prepare(self) -> None:
        """Answer a CORS preflight; refuse what can be refused before the body
        arrives (405/401/403/415/413)."""
        if self.answer_preflight():
            self._answered = True
            return
        headers = joined_headers(self.request.headers.get_all())
        self._send(await self.publishing.refuse(self.request.method or "", headers))

    def data_received(self, chunk: bytes) -> None:
        """Keep the body; past ``max_body`` answer ``413`` at once (Tornado then
        reads no further and closes the connection)."""
        if not self._answered and not self._body.add(chunk):
            self._send(too_large(self.publishing.max_body))

    async def post(self) -> None:
        """Publish the body."""
        if not self._answered:
            self._send(await self.publishing.answer(self._body, self.request.query))


class AnswerHandler(JSONErrorHandler):
    """Answers with a computed :class:`~tornadose.http.answer.Answer` (documents,
    schemas), as :func:`tornadose.http.documents.document_answer` says."""

    allowed_methods = routes.METHODS[routes.Kind.ANSWER]

    def initialize(
        self, make_answer: Callable[[], Answer], cors: CrossOrigin | None = None
    ) -> None:
        """``make_answer`` builds the answer for each request (``cors``:
        :attr:`JSONErrorHandler.cors`)."""
        self.use_cors(cors)
        self.make_answer = make_answer

    def prepare(self) -> None:
        """Answer a CORS preflight, else send the answer, whatever the method."""
        if self.answer_preflight():
            return
        request = self.request
        where = site_of(request.path, request.host, request.protocol)
        send_answer(self, document_answer(request.method or "", self.make_answer, where))


class UnknownChannelHandler(JSONErrorHandler):
    """Answers every request, whatever the method, with the JSON ``404`` of an
    undeclared channel (``unknown_channel``)."""

    def initialize(self, channels: Channels) -> None:
        """Keep the channels (kept for the 0.x signature); the ``404`` carries their
        CORS headers."""
        self.channels = channels
        self.use_cors(routes.cross_origin(channels, None))

    def prepare(self) -> None:
        """Answer ``404``."""
        send_answer(self, not_found(self.request.path))


_HANDLERS: dict[routes.Kind, type[RequestHandler]] = {
    routes.Kind.EVENTS: EventSource,
    routes.Kind.WEBSOCKET: WebSocketSubscriber,
    routes.Kind.PUBLISH: PublishHandler,
    routes.Kind.ANSWER: AnswerHandler,
    routes.Kind.MULTI_EVENTS: MultiEventSource,
    routes.Kind.MULTI_WEBSOCKET: MultiWebSocket,
}


def channel_handlers(channels: Channels) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
    """Tornado URL rules serving every channel of ``channels`` at the URLs of
    :mod:`tornadose.http.routes`, as ``ChannelsApp`` does, then the JSON ``404`` for
    :func:`~tornadose.http.routes.unknown_channel_pattern`. Put your own rules for
    paths under the prefix first. The channels count as served from then on (see
    :meth:`~tornadose.http.channels.Channels.stop_serving_from`)."""
    channels.serve_from(object())
    rules = [
        (re.escape(r.path), _HANDLERS[r.kind], _options(channels, r))
        for r in routes.served(channels)
    ]
    unknown = routes.unknown_channel_pattern(channels)
    return [*rules, (unknown, UnknownChannelHandler, {"channels": channels})]


def _options(channels: Channels, row: routes.Served) -> dict[str, Any]:
    """A route's handler options, with its CORS rules when the channels have any."""
    cors = routes.cross_origin(channels, row.kind)
    return row.options if cors is None else {**row.options, "cors": cors}
