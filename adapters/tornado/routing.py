"""The route table of a :class:`~tornadose.http.channels.Channels` on Tornado:
:func:`channel_handlers`, a list of URL rules for ``Application``.

Guarantees: one rule per row of :func:`tornadose.http.routes.served`, at the same
paths, with the same options (and each endpoint's CORS rules), as the ASGI
``ChannelsApp`` serves them; then the JSON ``404`` of an unknown channel for
:func:`~tornadose.http.routes.unknown_channel_pattern`.
"""

from __future__ import annotations

import re
from typing import Any

from tornado.web import RequestHandler

from tornadose.adapters.tornado.documents import AnswerHandler, UnknownChannelHandler
from tornadose.adapters.tornado.eventsource import EventSource
from tornadose.adapters.tornado.multichannel import MultiEventSource, MultiWebSocket
from tornadose.adapters.tornado.publishing import PublishHandler
from tornadose.adapters.tornado.websocket import WebSocketSubscriber
from tornadose.http import routes
from tornadose.http.channels import Channels

__all__ = ["channel_handlers"]


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
