"""The Server-Sent Events handler for Tornado (:class:`EventSource`).

Guarantees: the SSE headers go out as soon as the stream opens (after admission),
the response is never compressed, an HTTP/1.0 stream ends with its connection (no
chunking there, no keep-alive); events are written by
:func:`tornadose.delivery.streams.stream_sse` with the options of
:class:`~tornadose.http.routes.EventsOptions`, as the ASGI ``EventSourceApp`` does.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Unpack

from tornadose.adapters.tornado import _compat as compat
from tornadose.adapters.tornado.base import BaseHandler
from tornadose.core.message import Message
from tornadose.core.reasons import CloseReason
from tornadose.core.store import BaseStore
from tornadose.core.subscription import Subscription
from tornadose.delivery import streams
from tornadose.http import routes
from tornadose.http.cors import CrossOrigin
from tornadose.wire import sse

__all__ = ["EventSource"]


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
