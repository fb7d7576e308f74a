"""Tornado adapter: request handlers that stream a store's messages to clients.

Mount a handler with its store as the handler's keyword arguments, exactly as in the
original tornadose::

    Application([
        (r"/events", EventSource, {"store": store}),
        (r"/socket", WebSocketSubscriber, {"store": store}),
    ])

What every handler here guarantees:

* a handler registers with its store only once its stream is really open (an SSE
  ``GET``, or a completed WebSocket handshake): ``POST``/``HEAD`` to an SSE route and
  a plain ``GET`` to a WebSocket route never register anything;
* it deregisters as soon as the client disconnects, even when no message is being
  published, and when the request finishes for any other reason;
* delivery runs in its own task and never blocks Tornado: WebSocket frames from
  the client (pings, close) are read and answered while messages are sent;
* an exception in delivery is logged with its traceback, never swallowed.

The delivery loops themselves live in :mod:`tornadose.delivery.streams`, shared with every
other adapter.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from tornado.iostream import StreamClosedError
from tornado.web import GZipContentEncoding, RequestHandler, stream_request_body
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from tornadose._compat.sockets import set_user_timeout
from tornadose.core.errors import StoreClosed, SubscriptionClosed
from tornadose.core.message import Message
from tornadose.core.reasons import CUT_REASONS, CloseReason
from tornadose.core.store import BaseStore, Published
from tornadose.core.subscription import Subscription
from tornadose.delivery import streams
from tornadose.delivery.close import close_code_for
from tornadose.delivery.lifecycle import PROCESS
from tornadose.http.answer import Answer, error_answer, error_code_for, method_not_allowed
from tornadose.http.auth import Action, Authorize, check_access
from tornadose.http.channels import CHANNEL_ENDPOINTS, Channels, Endpoint
from tornadose.http.publish import DEFAULT_MAX_BODY, publish_json, refuse_before_body, too_large
from tornadose.http.request import event_from_query, last_event_id_from
from tornadose.http.websocket import not_a_websocket, refuse_origin
from tornadose.wire import sse

__all__ = [
    "AnswerHandler",
    "BaseHandler",
    "EventSource",
    "JSONErrorHandler",
    "PublishHandler",
    "UnknownChannelHandler",
    "WebSocketSubscriber",
    "channel_handlers",
    "send_answer",
]

logger = logging.getLogger("tornadose.handlers")

#: Exceptions that mean "the client is gone" when writing to it.
_CLIENT_GONE = (StreamClosedError, WebSocketClosedError)


#: The WebSocket opcode of a text frame (RFC 6455).
_TEXT_FRAME = 0x1


def _retrieve_exception(future: asyncio.Future[None]) -> None:
    """Mark a flush's failure as seen: a closed connection is handled elsewhere."""
    if not future.cancelled():
        future.exception()


async def _client_gone_on_closed_stream(flushed: Awaitable[None]) -> None:
    """Await a frame's write; a closed stream means the WebSocket client is gone."""
    try:
        await flushed
    except StreamClosedError as exc:
        raise WebSocketClosedError() from exc


def _customised(handler: BaseHandler, base: type[BaseHandler]) -> bool:
    """Whether ``handler``'s class overrides ``base``'s ``publish`` or ``submit``."""
    cls = type(handler)
    return cls.publish is not base.publish or cls.submit is not base.submit


def send_answer(handler: RequestHandler, answer: Answer) -> None:
    """Finish ``handler``'s response with a core :class:`~tornadose.http.answer.Answer`."""
    handler.clear()
    handler.set_status(answer.status)
    for name, value in answer.headers:
        handler.set_header(name, value)
    if answer.status == 204:
        handler.clear_header("Content-Type")
    handler.finish(answer.body or None)


def request_headers(handler: RequestHandler) -> dict[str, str]:
    """The request's headers as ``{lower-case name: value}`` (repeated ones joined)."""
    return {
        name.lower(): ", ".join(handler.request.headers.get_list(name))
        for name in handler.request.headers
    }


class JSONErrorHandler(RequestHandler):
    """A handler whose error responses are JSON (:class:`schemas.ErrorBody`), exactly
    as the ASGI adapter's; a ``405`` lists :attr:`allowed_methods` in ``Allow``."""

    #: The methods a ``405`` answer names in ``Allow``.
    allowed_methods: tuple[str, ...] = ("GET",)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Send the error as JSON."""
        if status_code == 405:
            answer = method_not_allowed(self.request.method or "", *self.allowed_methods)
        else:
            answer = error_answer(status_code, error_code_for(status_code), self._reason)
        send_answer(self, answer)


class BaseHandler(JSONErrorHandler):
    """Base class of subscriber handlers; subclass it and implement :meth:`publish`.

    On a ``GET`` the handler registers with its store (in :meth:`prepare`) and a
    delivery task calls :meth:`publish` with each message's payload, in order, until
    the client disconnects. The default :meth:`get` keeps the response open for that.
    A subclass that overrides :meth:`submit` (the 0.2 style) gets each payload through
    :meth:`submit` instead.
    """

    store: BaseStore
    subscription: Subscription | None

    def initialize(self, store: BaseStore) -> None:
        """Keep ``store``; registration waits until the stream opens."""
        if not isinstance(store, BaseStore):
            raise TypeError(f"store must be a tornadose store, not {type(store).__name__}")
        self.store = store
        self.subscription = None
        #: The hook of :mod:`tornadose.http.auth` and the channel name it is given;
        #: subclasses that take ``authorize``/``channel`` options set these.
        self.authorize: Authorize | None = None
        self.channel = ""
        #: ``TCP_USER_TIMEOUT`` (seconds) for the connection once the stream opens.
        self.tcp_user_timeout: float | None = None
        self._delivery: asyncio.Task[None] | None = None
        self._client_gone = False

    def prepare(self) -> None:
        """Register with the store when the request is a ``GET``."""
        if self.request.method == "GET":
            self.open_subscription()

    def open_subscription(self, *, start_delivery: bool = True) -> Subscription | None:
        """Register with the store and (unless ``start_delivery`` is false: the caller
        then runs :meth:`run_delivery` itself) start the delivery task. Idempotent.

        If the store is closed, ends the request with ``204 No Content`` (which tells
        an ``EventSource`` to stop reconnecting) and returns ``None``; if the client
        already left (say, during an asynchronous authorization), returns ``None``.
        """
        if self._client_gone:
            return None
        if self.subscription is None:
            last_event_id = last_event_id_from(request_headers(self), self.request.query)
            try:
                self.subscription = self.store.register(self, last_event_id)
            except StoreClosed:
                self.refuse_closed_store()
                return None
            self.subscription.add_close_callback(self._on_subscription_closed)
            if self.tcp_user_timeout is not None:
                stream = getattr(self.request.connection, "stream", None)
                if stream is not None and stream.socket is not None:
                    set_user_timeout(stream.socket, self.tcp_user_timeout)
            if start_delivery:
                self._delivery = asyncio.ensure_future(self.run_delivery(self.subscription))
        return self.subscription

    async def may_subscribe(self) -> bool:
        """Run the authorize hook (if any); on refusal, answer 401/403 and return False."""
        refusal = await check_access(
            self.authorize, request_headers(self), self.channel, Action.SUBSCRIBE
        )
        if refusal is not None:
            send_answer(self, refusal)
        return refusal is None

    def refuse_closed_store(self) -> None:
        """Answer a request for a closed store: ``204 No Content``."""
        send_answer(self, Answer(204))

    async def run_delivery(self, subscription: Subscription) -> None:
        """Run :meth:`deliver` until the subscription ends, then end the stream; a
        client that went away closes the subscription (``CLIENT_GONE``)."""
        with PROCESS.streaming(subscription, cut=self.abort_connection):
            try:
                reason = await self.deliver(subscription)
            except _CLIENT_GONE:
                subscription.close(CloseReason.CLIENT_GONE)
                return
            except Exception:
                logger.exception("delivery to %s failed; closing it", self.request.remote_ip)
                subscription.close(CloseReason.DEREGISTERED)
                reason = CloseReason.DEREGISTERED
            self.end_stream(reason)

    async def deliver(self, subscription: Subscription) -> CloseReason:
        """Hand each message's payload to :meth:`publish` (or an overridden
        :meth:`submit`), in order, until the subscription closes."""
        target = self.submit if type(self).submit is not BaseHandler.submit else self.publish
        while True:
            try:
                batch = await subscription.get_batch()
            except SubscriptionClosed as closed:
                return closed.reason
            for message in batch:
                result = target(message.data)
                if inspect.isawaitable(result):
                    await result

    def end_stream(self, reason: CloseReason) -> None:
        """End the response once the subscription is over (no-op if already ended)."""
        if not self._finished and reason is not CloseReason.CLIENT_GONE:
            self.finish()

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Keep the response open until delivery ends."""
        if self._delivery is not None:
            await self._delivery

    def submit(self, message: Any) -> Published:
        """Queue ``message`` for this subscriber (the store does this for every message).

        Returns an already-completed awaitable, so it can be awaited or not.
        """
        queued = message if isinstance(message, Message) else Message(message, id=None)
        if self.subscription is not None:
            self.subscription.put(queued)
        return Published(queued)

    def publish(self, message: Any) -> Any:
        """Write one message's payload to the client. Subclasses implement this."""
        raise NotImplementedError("publish must be implemented by subclasses of BaseHandler")

    def _on_subscription_closed(self, subscription: Subscription) -> None:
        reason = subscription.close_reason
        if reason in CUT_REASONS:
            # The writer may be stuck on a client that reads nothing: cut it off.
            self.cut_off(reason)

    def cut_off(self, reason: CloseReason) -> None:
        """End the stream of a client cut off as slow or stalled: abort the connection."""
        self.abort_connection()

    def abort_connection(self) -> None:
        """Close the connection at once, without a graceful end.

        Tornado then runs :meth:`on_connection_close`, as for a client that left.
        """
        stream = getattr(self.request.connection, "stream", None)
        if stream is not None and not stream.closed():
            stream.close()

    def on_connection_close(self) -> None:
        """Deregister at once when the client disconnects."""
        self._client_gone = True
        if self.subscription is not None:
            self.subscription.close(CloseReason.CLIENT_GONE)
        super().on_connection_close()

    def on_finish(self) -> None:
        """Deregister when the response is finished, whatever the reason."""
        if self.subscription is not None:
            self.subscription.close(CloseReason.DEREGISTERED)


class EventSource(BaseHandler):
    """Server-Sent Events (``text/event-stream``) handler.

    Options, given with the store in the handler's keyword arguments:

    * ``period``: seconds to wait between writes, throttling delivery; messages
      published meanwhile are queued (bounded by the store's ``max_queue``) and go
      out together.
    * ``heartbeat``: seconds of silence before a heartbeat comment (default 15;
      ``0`` or ``None`` turns heartbeats off).
    * ``retry``: milliseconds a client should wait before reconnecting, sent once
      when the stream opens (default: not sent, the browser's own default applies).
    * ``write_timeout``: seconds one write may take before the client is cut as
      stalled (default 30; ``None``: no limit).
    * ``tcp_user_timeout``: seconds sent data may stay unacknowledged before the
      kernel drops the connection (Linux; see :mod:`tornadose._compat.sockets`).
    * ``authorize``, ``channel``: the hook of :mod:`tornadose.http.auth`.

    A client that sends ``Last-Event-ID`` (or ``?last_event_id=``) resumes: see
    :mod:`tornadose.core.history`.

    Response headers (``Content-Type: text/event-stream; charset=utf-8``,
    ``Cache-Control: no-cache``, ``X-Accel-Buffering: no``) are sent as soon as the
    stream opens, before any message.
    """

    def initialize(
        self,
        store: BaseStore,
        period: float | None = None,
        heartbeat: float | None = streams.DEFAULT_HEARTBEAT,
        retry: int | None = None,
        authorize: Authorize | None = None,
        channel: str = "",
        write_timeout: float | None = streams.DEFAULT_WRITE_TIMEOUT,
        tcp_user_timeout: float | None = None,
    ) -> None:
        """Keep the options (see the class docstring)."""
        super().initialize(store)
        self.tcp_user_timeout = tcp_user_timeout
        self.sse_options = streams.SSEOptions(
            heartbeat=heartbeat, period=period, retry=retry, write_timeout=write_timeout
        )
        self.authorize = authorize
        self.channel = channel

    @property
    def period(self) -> float | None:
        """The throttling period (the 0.x attribute), from :attr:`sse_options`."""
        return self.sse_options.period

    def prepare(self) -> None:
        """Nothing yet: :meth:`get` authorizes, then registers."""

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Authorize, register with the store, send the SSE headers at once, stream."""
        if not await self.may_subscribe():
            return
        subscription = self.open_subscription(start_delivery=False)
        if subscription is None:
            return
        for name, value in sse.RESPONSE_HEADERS:
            self.set_header(name, value)
        # Never compress an event stream (compress_response=True would buffer it).
        self._transforms = [t for t in self._transforms if not isinstance(t, GZipContentEncoding)]
        self.flush()
        if self._delivery is not None:  # a subclass opened it earlier
            await self._delivery
        else:  # in this task: no second task per connection
            await self.run_delivery(subscription)

    async def deliver(self, subscription: Subscription) -> CloseReason:
        """Stream the subscription as SSE events (see
        :func:`tornadose.delivery.streams.stream_sse`).

        A subclass that overrides :meth:`publish` or :meth:`submit` (the 0.x way to
        customise output) gets each payload through them instead.
        """
        if _customised(self, EventSource):
            return await super().deliver(subscription)
        return await streams.stream_sse(
            subscription, self._write, self.sse_options, write_now=self._write_now
        )

    async def _write(self, chunk: bytes) -> None:
        self.write(chunk)
        await self.flush()

    def _write_now(self, chunk: bytes) -> Awaitable[None] | None:
        # Tornado sends what it can at once. Its future is done when everything was
        # sent (or failed: a closed stream), and is awaited by the task only while
        # the socket is backed up.
        self.write(chunk)
        flushed = self.flush()
        if flushed.done():
            flushed.result()  # raises StreamClosedError when the client is gone
            return None
        return flushed

    async def publish(self, message: Any) -> None:
        """Write one message to the client as an SSE event, and flush it."""
        await self._write(Message(message, id=None).sse)


class WebSocketSubscriber(BaseHandler, WebSocketHandler):
    """WebSocket handler: each message is one text frame ``{"data": <message>, "id": ...}``.

    The handler registers once the handshake completes and returns from :meth:`open`
    at once, so Tornado keeps reading client frames: pings are answered and a close
    is handled while messages are sent. Frames sent by the client are ignored.
    Server-side pings are Tornado's ``websocket_ping_interval`` application setting.

    When the subscription ends, the connection is closed with a code from
    :mod:`tornadose.wire.websocket` (``4001`` for a slow consumer, ``1001`` when the
    store closes).
    """

    def initialize(
        self,
        store: BaseStore,
        period: float | None = None,
        authorize: Authorize | None = None,
        channel: str = "",
        allowed_origins: Collection[str] | None = None,
        write_timeout: float | None = streams.DEFAULT_WRITE_TIMEOUT,
    ) -> None:
        """Keep the store and options: ``period`` (seconds between sends, to throttle),
        ``authorize``/``channel`` (the hook of :mod:`tornadose.http.auth`), and
        ``allowed_origins`` (origins besides the page's own that may connect; ``["*"]``
        for any)."""
        super().initialize(store)
        self.stream_options = streams.StreamOptions(period=period, write_timeout=write_timeout)
        self.authorize = authorize
        self.channel = channel
        self.allowed_origins = allowed_origins

    @property
    def period(self) -> float | None:
        """The throttling period, from :attr:`stream_options`."""
        return self.stream_options.period

    def prepare(self) -> None:
        """Refuse plain HTTP requests (``400``, as the ASGI app does); register only
        once a handshake completes (in :meth:`open`)."""
        if self.request.method != "GET":
            send_answer(self, not_a_websocket())

    async def get(self, *args: Any, **kwargs: Any) -> None:
        """Check the handshake (a plain ``GET`` gets ``400``, a foreign origin ``403``),
        authorize, then upgrade to WebSocket."""
        headers = request_headers(self)
        if headers.get("upgrade", "").lower() != "websocket":
            send_answer(self, not_a_websocket())
            return
        refusal = refuse_origin(headers, self.allowed_origins)
        if refusal is not None:
            send_answer(self, refusal)
            return
        if not await self.may_subscribe():
            return
        await WebSocketHandler.get(self, *args, **kwargs)

    def check_origin(self, origin: str) -> bool:
        """Origins were checked in :meth:`get` already."""
        return True

    def open(self, *args: str, **kwargs: str) -> None:
        """Register with the store; delivery runs in its own task."""
        self.open_subscription()

    def refuse_closed_store(self) -> None:
        """Close the just-opened WebSocket: the store is closed (``1001``)."""
        self.end_stream(CloseReason.STORE_CLOSED)

    async def deliver(self, subscription: Subscription) -> CloseReason:
        """Send each message as one text frame (see
        :func:`tornadose.delivery.streams.stream_websocket`).

        A subclass that overrides :meth:`publish` or :meth:`submit` gets each payload
        through them instead.
        """
        if _customised(self, WebSocketSubscriber):
            return await super().deliver(subscription)
        return await streams.stream_websocket(
            subscription,
            self._send_frames,
            self.stream_options,
            send_frames_now=self._send_frames_now,
        )

    async def _send_frames(self, frames: list[str]) -> None:
        pending = self._send_frames_now(frames)
        if pending is not None:
            await pending

    def _send_frames_now(self, frames: list[str]) -> Awaitable[None] | None:
        # Tornado frames each message. Its write_message wraps every write in a task
        # (for its error translation): a task per frame per subscriber costs more
        # than the write itself. Without compression the frames go through Tornado's
        # own frame writer instead, whose futures resolve in order: only the last
        # one is awaited, and only while the socket is backed up (awaiting costs a
        # loop turn, which would pace delivery).
        connection = self.ws_connection
        if connection is None or connection.is_closing():
            raise WebSocketClosedError()
        write_frame = getattr(connection, "_write_frame", None)
        if write_frame is None or getattr(connection, "_compressor", None) is not None:
            flushes = [self.write_message(frame) for frame in frames]
            last: asyncio.Future[None] | None = flushes[-1] if flushes else None
            for flush in flushes[:-1]:
                flush.add_done_callback(_retrieve_exception)
        else:
            try:
                for frame in frames:  # Tornado reads each write's failure itself
                    last = write_frame(True, _TEXT_FRAME, frame.encode())
            except StreamClosedError as exc:
                raise WebSocketClosedError() from exc
        stream = getattr(connection, "stream", None)
        if last is not None and stream is not None and stream.writing():
            return _client_gone_on_closed_stream(last)
        return None

    def end_stream(self, reason: CloseReason) -> None:
        """Close the WebSocket with the code for ``reason``."""
        if reason is not CloseReason.CLIENT_GONE and self.ws_connection is not None:
            self.close(*close_code_for(reason))

    def cut_off(self, reason: CloseReason) -> None:
        """Close with the code for ``reason`` (``4001``/``4002``); Tornado aborts the
        connection itself if the client does not answer the close in time."""
        self.end_stream(reason)

    def abort_connection(self) -> None:
        """Drop the connection at once, without a closing handshake."""
        connection = self.ws_connection
        stream = getattr(connection, "stream", None)
        if stream is not None and not stream.closed():
            stream.close()

    def on_message(self, message: str | bytes) -> None:
        """Ignore frames from the client."""

    def on_close(self) -> None:
        """Deregister at once when the connection closes."""
        self._client_gone = True
        if self.subscription is not None:
            self.subscription.close(CloseReason.CLIENT_GONE)

    async def publish(self, message: Any) -> None:
        """Send one message to the client as a ``{"data": ...}`` text frame."""
        await self.write_message(Message(message, id=None).websocket)


@stream_request_body
class PublishHandler(JSONErrorHandler):
    """``POST`` a JSON message to publish it to ``store``.

    Answers exactly as :mod:`tornadose.http.publish` says (``202`` with the id, or a
    JSON error: 400, 401, 403, 405, 413, 415, 422, 503). Options (handler kwargs):
    ``max_body`` (bytes, default 1 MiB; a longer body is not kept), ``authorize`` and
    ``channel`` (the hook of :mod:`tornadose.http.auth`).
    """

    def initialize(
        self,
        store: BaseStore,
        max_body: int = DEFAULT_MAX_BODY,
        authorize: Authorize | None = None,
        channel: str = "",
    ) -> None:
        """Keep the store and options."""
        self.store = store
        self.max_body = max_body
        self.authorize = authorize
        self.channel = channel
        self._chunks: list[bytes] = []
        self._size = 0

    async def prepare(self) -> None:
        """Refuse what can be refused before the body arrives (405/401/403/415/413)."""
        answer = await refuse_before_body(
            self.request.method or "",
            request_headers(self),
            channel=self.channel,
            max_body=self.max_body,
            authorize=self.authorize,
        )
        if answer is not None:
            send_answer(self, answer)

    def data_received(self, chunk: bytes) -> None:
        """Keep the body while it is within ``max_body``; answer ``413`` as soon as it
        is not, and read no further (the connection is then closed)."""
        if self._finished:
            return
        self._size += len(chunk)
        if self._size <= self.max_body:
            self._chunks.append(chunk)
            return
        self._chunks.clear()
        # Tornado diverts the rest of the body and closes the connection once sent.
        send_answer(self, too_large(self.max_body))

    async def post(self) -> None:
        """Publish the body (see the class docstring)."""
        if self._finished:
            return
        event = event_from_query(self.request.query)
        answer = await publish_json(self.store, b"".join(self._chunks), event=event)
        send_answer(self, answer)


class AnswerHandler(JSONErrorHandler):
    """Answers ``GET`` with a computed :class:`~tornadose.http.answer.Answer` (documents,
    schemas, not-found errors)."""

    def initialize(self, make_answer: Callable[[], Answer]) -> None:
        """``make_answer`` builds the answer for each request."""
        self.make_answer = make_answer

    allowed_methods = ("GET", "HEAD")

    def get(self, *args: str) -> None:
        """Send the answer."""
        send_answer(self, self.make_answer())

    head = get


def channel_handlers(channels: Channels) -> list[tuple[str, type[RequestHandler], dict[str, Any]]]:
    """Tornado URL rules serving every channel of ``channels``, at the URLs listed in
    :mod:`tornadose.http.channels` (the same as :class:`adapters.asgi.ChannelsApp`)::

        Application(channel_handlers(channels) + your_other_rules)

    Unknown channel names get a JSON ``404`` (``unknown_channel``): with a prefix,
    every other path under it; without one, paths shaped like a channel endpoint
    (``/{name}/events`` ...). Put your own rules for paths under the prefix first.
    """
    rules: list[tuple[str, type[RequestHandler], dict[str, Any]]] = []
    for route in channels.routes():
        pattern = re.escape(channels.prefix + route.path)
        channel = route.channel
        if route.endpoint is Endpoint.ASYNCAPI:
            rules.append((pattern, AnswerHandler, {"make_answer": channels.asyncapi_answer}))
            continue
        if route.endpoint is Endpoint.METRICS:
            rules.append((pattern, AnswerHandler, {"make_answer": channels.metrics_answer}))
            continue
        assert channel is not None
        common: dict[str, Any] = {
            "store": channel.store,
            "authorize": channels.authorize,
            "channel": channel.name,
        }
        options: dict[str, Any]
        if route.endpoint is Endpoint.EVENTS:
            options = {
                "heartbeat": channel.heartbeat,
                "period": channel.period,
                "write_timeout": channel.write_timeout,
                "retry": channel.retry,
            }
            rules.append((pattern, EventSource, {**common, **options}))
        elif route.endpoint is Endpoint.WEBSOCKET:
            options = {
                "period": channel.period,
                "write_timeout": channel.write_timeout,
                "allowed_origins": channel.allowed_origins,
            }
            rules.append((pattern, WebSocketSubscriber, {**common, **options}))
        elif route.endpoint is Endpoint.PUBLISH:
            rules.append((pattern, PublishHandler, {**common, "max_body": channel.max_body}))
        else:
            answer = _bind(channels.schema_answer, channel.name)
            rules.append((pattern, AnswerHandler, {"make_answer": answer}))
    if channels.prefix:
        unknown = rf"{re.escape(channels.prefix)}(/.*)?"
    else:  # without a prefix, catch only channel-shaped paths, not the whole app
        endpoints = "|".join(re.escape(e.value) for e in CHANNEL_ENDPOINTS)
        unknown = rf"/[^/]+/(?:{endpoints})"
    rules.append((unknown, UnknownChannelHandler, {"channels": channels}))
    return rules


class UnknownChannelHandler(JSONErrorHandler):
    """Answers every request for an undeclared channel with a JSON ``404``."""

    def initialize(self, channels: Channels) -> None:
        """Keep the channels, whose ``not_found`` answer is sent."""
        self.channels = channels

    def prepare(self) -> None:
        """Answer ``404 unknown_channel``, whatever the method."""
        send_answer(self, self.channels.not_found(self.request.path))


def _bind(function: Callable[[str], Answer], name: str) -> Callable[[], Answer]:
    return lambda: function(name)
