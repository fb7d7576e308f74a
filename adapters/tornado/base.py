"""The base of every Tornado subscriber handler (:class:`BaseHandler`): admission,
registration and supervision of one stream, whatever it is written as.

Guarantees: a CORS preflight is answered and a request refused (method, handshake,
origin, the authorize hook, a closed store) before anything registers; a handler
registers once its stream is open (the 0.x handlers: in ``prepare``) and at most
once; it deregisters as soon as its client leaves or its response finishes;
delivery runs under :func:`tornadose.delivery.session.serve`, counted in its
application's lifecycle (:func:`~tornadose.adapters.tornado.lifecycle.lifecycle_of`),
and hands each payload, in order, to :meth:`BaseHandler.publish` or an overridden
:meth:`BaseHandler.submit`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from functools import partial
from typing import Any

from tornado.websocket import WebSocketClosedError

from tornadose._compat.sockets import set_user_timeout
from tornadose.adapters.tornado import _compat as compat
from tornadose.adapters.tornado.answers import JSONErrorHandler, send_answer
from tornadose.adapters.tornado.lifecycle import lifecycle_of
from tornadose.core.message import Message
from tornadose.core.reasons import CloseReason
from tornadose.core.store import BaseStore, Published
from tornadose.core.subscription import Subscription
from tornadose.delivery import streams
from tornadose.delivery.close import close_code_for
from tornadose.delivery.session import serve
from tornadose.http import subscribe
from tornadose.http.answer import Answer
from tornadose.http.request import joined_headers

__all__ = ["BaseHandler", "drop"]


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
        drop(getattr(self.request.connection, "stream", None))

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


def drop(stream: Any) -> None:
    """Close ``stream`` (a Tornado ``IOStream``, or ``None``) at once, if still open."""
    if stream is not None and not stream.closed():
        stream.close()
