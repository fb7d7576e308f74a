"""The WebSocket handler for Tornado (:class:`WebSocketSubscriber`).

Guarantees: origins are checked before the handshake (``prepare``), the authorize
hook before it completes; each message is one text frame (the envelope of
:mod:`tornadose.wire.websocket`, written by
:func:`tornadose.delivery.streams.stream_websocket`) and delivery runs in a task of
its own, so client frames (ignored) are read meanwhile; the connection ends with a
close code of :mod:`tornadose.wire.websocket`, as the ASGI ``WebSocketApp``'s does.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Unpack

from tornado.websocket import WebSocketHandler

from tornadose.adapters.tornado import _compat as compat
from tornadose.adapters.tornado.base import BaseHandler, drop
from tornadose.core.message import Message
from tornadose.core.reasons import CloseReason
from tornadose.core.store import BaseStore
from tornadose.core.subscription import Subscription
from tornadose.delivery import streams
from tornadose.http import routes

__all__ = ["WebSocketSubscriber"]


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
        drop(getattr(self.ws_connection, "stream", None))

    def on_message(self, message: str | bytes) -> None:
        """Ignore frames from the client."""

    def on_close(self) -> None:
        """Deregister at once when the connection closes."""
        self._gone()

    async def publish(self, message: Any) -> None:
        """Send one message to the client as a ``{"data": ...}`` text frame."""
        await self.write_message(Message(message, id=None).websocket)
