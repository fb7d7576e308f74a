"""The routes of a :class:`~tornadose.http.channels.Channels`, with what each serves
and its options: the one table both adapters read (no I/O here).

Each :class:`Served` row names a full path (prefix included), the :class:`Kind` of
endpoint, and the keyword arguments the adapter's handler or app for that kind
takes, the same on both: a Tornado rule is ``(path, handler_for[kind], options)``,
an ASGI app ``app_for[kind](**options)``. A channel's stream options come from
:meth:`~tornadose.http.channels.Channel.sse_options`, so a channel is served with
the same options by every adapter.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import partial
from typing import Any

from tornadose.http import documents
from tornadose.http.channels import Channel, Channels, Endpoint

__all__ = ["Kind", "Served", "served"]


class Kind(enum.Enum):
    """What an endpoint is, for an adapter: which of its handlers or apps serves it."""

    #: Server-Sent Events (Tornado ``EventSource``, ASGI ``EventSourceApp``).
    EVENTS = "events"
    #: WebSocket (``WebSocketSubscriber``, ``WebSocketApp``).
    WEBSOCKET = "websocket"
    #: HTTP publish (``PublishHandler``, ``PublishApp``).
    PUBLISH = "publish"
    #: A computed document (``AnswerHandler``, ``AnswerApp``): ``make_answer``.
    ANSWER = "answer"


@dataclass(frozen=True)
class Served:
    """One route: its full path, the kind of endpoint, the handler's keyword arguments."""

    path: str
    kind: Kind
    options: dict[str, Any]


def served(channels: Channels) -> list[Served]:
    """Every route of ``channels`` (see :meth:`~tornadose.http.channels.Channels.routes`)."""
    table: list[Served] = []
    for route in channels.routes():
        path = channels.prefix + route.path
        if route.endpoint is Endpoint.ASYNCAPI:
            table.append(_answer(path, partial(documents.asyncapi_answer, channels)))
        elif route.endpoint is Endpoint.METRICS:
            table.append(_answer(path, partial(documents.metrics_answer, channels)))
        else:
            assert route.channel is not None
            table.append(_channel_route(channels, route.channel, route.endpoint, path))
    return table


def _answer(path: str, make_answer: Any) -> Served:
    return Served(path, Kind.ANSWER, {"make_answer": make_answer})


def _channel_route(channels: Channels, channel: Channel, endpoint: Endpoint, path: str) -> Served:
    if endpoint is Endpoint.SCHEMA:
        return _answer(path, partial(documents.schema_answer, channels, channel.name))
    common = {"store": channel.store, "authorize": channels.authorize, "channel": channel.name}
    if endpoint is Endpoint.PUBLISH:
        return Served(path, Kind.PUBLISH, {**common, "max_body": channel.max_body})
    options = channel.sse_options()
    stream = {"period": options.period, "write_timeout": options.write_timeout}
    if endpoint is Endpoint.EVENTS:
        sse = {"heartbeat": options.heartbeat, "retry": options.retry}
        return Served(path, Kind.EVENTS, {**common, **stream, **sse})
    return Served(
        path, Kind.WEBSOCKET, {**common, **stream, "allowed_origins": channel.allowed_origins}
    )
