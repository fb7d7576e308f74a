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
:mod:`tornadose.adapters.tornado._compat`.

One concept per module, every name below importable from this package:

* :mod:`~tornadose.adapters.tornado.answers`: ``send_answer``, ``JSONErrorHandler``
  (JSON errors, CORS);
* :mod:`~tornadose.adapters.tornado.lifecycle`: ``lifecycle_of``;
* :mod:`~tornadose.adapters.tornado.base`: ``BaseHandler``, the subscriber handlers' base;
* :mod:`~tornadose.adapters.tornado.eventsource`: ``EventSource``;
* :mod:`~tornadose.adapters.tornado.websocket`: ``WebSocketSubscriber``;
* :mod:`~tornadose.adapters.tornado.multichannel`: ``MultiEventSource``, ``MultiWebSocket``;
* :mod:`~tornadose.adapters.tornado.publishing`: ``PublishHandler``;
* :mod:`~tornadose.adapters.tornado.documents`: ``AnswerHandler``, ``UnknownChannelHandler``;
* :mod:`~tornadose.adapters.tornado.routing`: ``channel_handlers``;
* :mod:`~tornadose.adapters.tornado._compat`: the fence around Tornado's private API.
"""

from __future__ import annotations

from tornadose.adapters.tornado.answers import JSONErrorHandler, send_answer
from tornadose.adapters.tornado.base import BaseHandler
from tornadose.adapters.tornado.documents import AnswerHandler, UnknownChannelHandler
from tornadose.adapters.tornado.eventsource import EventSource
from tornadose.adapters.tornado.lifecycle import lifecycle_of
from tornadose.adapters.tornado.multichannel import MultiEventSource, MultiWebSocket
from tornadose.adapters.tornado.publishing import PublishHandler
from tornadose.adapters.tornado.routing import channel_handlers
from tornadose.adapters.tornado.websocket import WebSocketSubscriber

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
