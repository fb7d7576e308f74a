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

One concept per module, every name below importable from this package:

* :mod:`~tornadose.adapters.asgi.protocol`: the ASGI types (``Scope``, ``Receive``,
  ``Send``, ``ASGIApp``...), reading a scope (``route_path``);
* :mod:`~tornadose.adapters.asgi.answers`: ``send_answer``, ``refuse_websocket``;
* :mod:`~tornadose.adapters.asgi.stream`: one open stream (the session's transport);
* :mod:`~tornadose.adapters.asgi.subscriber`: the subscriber apps' base;
* :mod:`~tornadose.adapters.asgi.eventsource`: ``EventSourceApp``, ``EventSourceAppOptions``;
* :mod:`~tornadose.adapters.asgi.websocket`: ``WebSocketApp``, ``WebSocketAppOptions``;
* :mod:`~tornadose.adapters.asgi.multichannel`: ``MultiEventSourceApp``, ``MultiWebSocketApp``;
* :mod:`~tornadose.adapters.asgi.publishing`: ``PublishApp``;
* :mod:`~tornadose.adapters.asgi.documents`: ``AnswerApp``, ``site``;
* :mod:`~tornadose.adapters.asgi.cors`: ``with_cors``;
* :mod:`~tornadose.adapters.asgi.channels`: ``ChannelsApp``.
"""

from __future__ import annotations

from tornadose.adapters.asgi.answers import refuse_websocket, send_answer
from tornadose.adapters.asgi.channels import ChannelsApp
from tornadose.adapters.asgi.cors import with_cors
from tornadose.adapters.asgi.documents import AnswerApp, site
from tornadose.adapters.asgi.eventsource import EventSourceApp, EventSourceAppOptions
from tornadose.adapters.asgi.multichannel import MultiEventSourceApp, MultiWebSocketApp
from tornadose.adapters.asgi.protocol import (
    CLOSE_POLICY_VIOLATION,
    ASGIApp,
    ASGIMessage,
    Receive,
    Scope,
    Send,
    route_path,
)
from tornadose.adapters.asgi.publishing import PublishApp
from tornadose.adapters.asgi.stream import logger as logger
from tornadose.adapters.asgi.websocket import WebSocketApp, WebSocketAppOptions

__all__ = [
    "CLOSE_POLICY_VIOLATION",
    "ASGIApp",
    "ASGIMessage",
    "AnswerApp",
    "ChannelsApp",
    "EventSourceApp",
    "EventSourceAppOptions",
    "MultiEventSourceApp",
    "MultiWebSocketApp",
    "PublishApp",
    "Receive",
    "Scope",
    "Send",
    "WebSocketApp",
    "WebSocketAppOptions",
    "refuse_websocket",
    "route_path",
    "send_answer",
    "site",
    "with_cors",
]
