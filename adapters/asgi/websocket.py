"""The WebSocket app (:class:`WebSocketApp`) and its options.

Guarantees: as the Tornado ``WebSocketSubscriber``: one text frame per message,
client frames ignored, a foreign origin refused with ``403`` and a plain HTTP
request with ``400`` (or a ``1008`` close where the server cannot answer a
handshake with HTTP); options those of :class:`~tornadose.http.routes.WebSocketOptions`
(read by :func:`tornadose.http.routes.websocket_endpoint`), plus the app's
``lifecycle``; otherwise as :class:`~tornadose.adapters.asgi.subscriber.SubscriberApp`
says.
"""

from __future__ import annotations

from typing import Unpack

from tornadose.adapters.asgi.subscriber import SubscriberApp
from tornadose.core.store import BaseStore
from tornadose.delivery.lifecycle import Lifecycle
from tornadose.http import routes

__all__ = ["WebSocketApp", "WebSocketAppOptions"]


class WebSocketAppOptions(routes.WebSocketOptions, total=False):
    """The options of :class:`WebSocketApp`: the Tornado ``WebSocketSubscriber``'s
    (:class:`~tornadose.http.routes.WebSocketOptions`), and the app's ``lifecycle``."""

    lifecycle: Lifecycle | None


class WebSocketApp(SubscriberApp):
    """ASGI app sending a store's messages over WebSocket, one text frame each, as the
    Tornado ``WebSocketSubscriber`` does (options: :class:`WebSocketAppOptions`).
    Frames from the client are ignored; a foreign origin gets ``403``, a plain HTTP
    request ``400``."""

    def __init__(self, store: BaseStore, **options: Unpack[WebSocketAppOptions]) -> None:
        super().__init__(store, routes.websocket_endpoint, options)
