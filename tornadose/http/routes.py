"""The routes of a :class:`~tornadose.http.channels.Channels`, with what each serves
and its options: the one table both adapters read (no I/O here).

Each :class:`Served` row names a full path (prefix included), the :class:`Kind` of
endpoint, and the keyword arguments the adapter's handler or app for that kind
takes, the same on both: a Tornado rule is ``(path, handler_for[kind], options)``,
an ASGI app ``app_for[kind](**options)``. A channel's stream options come from
:meth:`~tornadose.http.channels.Channel.sse_options`, so a channel is served with
the same options by every adapter.

The keyword options of the subscriber handlers and apps are declared here once
(:class:`EventsOptions`, :class:`WebSocketOptions`) and read once
(:func:`sse_endpoint`, :func:`websocket_endpoint`), so both adapters take the same
options with the same defaults; :func:`unknown_channel_pattern` says which other
paths get the ``404`` of an unknown channel.

Cross-origin requests (:mod:`tornadose.http.cors`): :data:`METHODS` says what each
kind of endpoint serves, hence what a preflight may ask for, and
:func:`cross_origin` gives both adapters each endpoint's rules.
"""

from __future__ import annotations

import enum
import re
import weakref
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from tornadose.core.store import BaseStore
from tornadose.delivery.streams import SSEKeywords, SSEOptions, StreamKeywords, StreamOptions
from tornadose.http import documents
from tornadose.http.auth import Authorize
from tornadose.http.channels import CHANNEL_ENDPOINTS, Channel, Channels, Endpoint
from tornadose.http.cors import CrossOrigin, websocket_origins
from tornadose.http.presence import presence_answer
from tornadose.http.subscribe import Kind as Transport
from tornadose.http.subscribe import Subscribing

__all__ = [
    "METHODS",
    "EventsOptions",
    "Kind",
    "Served",
    "WebSocketOptions",
    "cross_origin",
    "served",
    "sse_endpoint",
    "unknown_channel_pattern",
    "websocket_endpoint",
]


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
    #: Several channels over SSE (``MultiEventSource``, ``MultiEventSourceApp``).
    MULTI_EVENTS = "multi_events"
    #: Several channels over WebSocket (``MultiWebSocket``, ``MultiWebSocketApp``).
    MULTI_WEBSOCKET = "multi_websocket"


#: The HTTP methods each kind of endpoint serves (a WebSocket: its handshake).
METHODS: dict[Kind, tuple[str, ...]] = {
    Kind.EVENTS: ("GET",),
    Kind.WEBSOCKET: ("GET",),
    Kind.PUBLISH: ("POST",),
    Kind.ANSWER: documents.DOCUMENT_METHODS,
    Kind.MULTI_EVENTS: ("GET",),
    Kind.MULTI_WEBSOCKET: ("GET",),
}


def cross_origin(channels: Channels, kind: Kind | None) -> CrossOrigin | None:
    """The CORS rules of an endpoint of ``channels`` of ``kind`` (``None``: a path
    that serves nothing, the ``404`` of an unknown channel), or ``None`` when the
    channels have no :attr:`~tornadose.http.channels.Channels.cors` policy or the
    endpoint is a WebSocket (no CORS: its origin check applies)."""
    if channels.cors is None or kind in (Kind.WEBSOCKET, Kind.MULTI_WEBSOCKET):
        return None
    return CrossOrigin(channels.cors, METHODS[kind] if kind is not None else ())


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
        elif route.endpoint is Endpoint.ALL_PRESENCE:
            table.append(_answer(path, partial(presence_answer, channels.presence)))
        elif route.endpoint is Endpoint.MULTI_EVENTS:
            table.append(Served(path, Kind.MULTI_EVENTS, {"channels": channels}))
        elif route.endpoint is Endpoint.MULTI_WEBSOCKET:
            origins = websocket_origins(None, channels.cors)
            options = {"channels": channels, "allowed_origins": origins}
            table.append(Served(path, Kind.MULTI_WEBSOCKET, options))
        else:
            assert route.channel is not None
            table.append(_channel_route(channels, route.channel, route.endpoint, path))
    return table


def _answer(path: str, make_answer: Any) -> Served:
    return Served(path, Kind.ANSWER, {"make_answer": make_answer})


def _channel_route(channels: Channels, channel: Channel, endpoint: Endpoint, path: str) -> Served:
    if endpoint is Endpoint.SCHEMA:
        return _answer(path, partial(documents.schema_answer, channels, channel.name))
    if endpoint is Endpoint.PRESENCE:
        return _answer(path, partial(presence_answer, channels.presence, channel.name))
    common = {"store": channel.store, "authorize": channels.authorize, "channel": channel.name}
    if endpoint is Endpoint.PUBLISH:
        return Served(path, Kind.PUBLISH, {**common, "max_body": channel.max_body})
    options = channel.sse_options()
    stream = {"period": options.period, "write_timeout": options.write_timeout}
    if endpoint is Endpoint.EVENTS:
        sse = {"heartbeat": options.heartbeat, "retry": options.retry}
        return Served(path, Kind.EVENTS, {**common, **stream, **sse})
    origins = websocket_origins(channel.allowed_origins, channels.cors)
    return Served(path, Kind.WEBSOCKET, {**common, **stream, "allowed_origins": origins})


def unknown_channel_pattern(channels: Channels) -> str:
    """The regular expression of the paths, besides :func:`served`'s, that get the
    ``404`` of an unknown channel: with a prefix, any other path under it; without,
    only paths shaped like a channel endpoint (``/{name}/events``...), not the whole
    application."""
    if channels.prefix:
        return rf"{re.escape(channels.prefix)}(/.*)?"
    endpoints = "|".join(re.escape(endpoint.value) for endpoint in CHANNEL_ENDPOINTS)
    return rf"/[^/]+/(?:{endpoints})"


class EventsOptions(SSEKeywords, total=False):
    """The keyword options of an SSE endpoint (``EventSource``, ``EventSourceApp``):
    how its stream is written (:class:`~tornadose.delivery.streams.SSEKeywords`) and
    who may subscribe (the authorize hook of :mod:`tornadose.http.auth`, with the
    channel name it is given)."""

    authorize: Authorize | None
    channel: str


class WebSocketOptions(StreamKeywords, total=False):
    """The keyword options of a WebSocket endpoint (``WebSocketSubscriber``,
    ``WebSocketApp``): as :class:`EventsOptions` without the SSE ones, plus
    ``allowed_origins``, the origins besides the page's own that may connect
    (``["*"]``: any)."""

    authorize: Authorize | None
    channel: str
    allowed_origins: Collection[str] | None


def sse_endpoint(store: BaseStore, options: EventsOptions) -> tuple[Subscribing, SSEOptions]:
    """Who may subscribe at an SSE endpoint made with ``options``, and how its
    stream is written. A store that is not a tornadose store, an unknown option or a
    bad value raises (``TypeError``, ``ValueError``) here, when the endpoint is made.

    Both are immutable, and equal ones are shared: for the same store and options
    (hashable ones), the objects returned earlier are returned again while a handler
    still holds them. A Tornado handler reads its options on every request, and
    its open stream then keeps no copy of its own."""
    return _shared(store, Transport.SSE, options, _make_sse)


def websocket_endpoint(
    store: BaseStore, options: WebSocketOptions
) -> tuple[Subscribing, StreamOptions]:
    """As :func:`sse_endpoint`, for a WebSocket endpoint."""
    return _shared(store, Transport.WEBSOCKET, options, _make_websocket)


def _make_sse(store: BaseStore, options: Mapping[str, Any]) -> tuple[Subscribing, SSEOptions]:
    endpoint, stream = _split(store, Transport.SSE, options)
    return endpoint, SSEOptions(**stream)


def _make_websocket(
    store: BaseStore, options: Mapping[str, Any]
) -> tuple[Subscribing, StreamOptions]:
    endpoint, stream = _split(store, Transport.WEBSOCKET, options)
    return endpoint, StreamOptions(**stream)


#: Endpoints in use, by store (its id: an endpoint keeps its store alive, so the id
#: is not reused while the entry exists), transport and access options; an entry
#: goes when no handler holds its endpoint any more.
_endpoints: weakref.WeakValueDictionary[tuple[Any, ...], Subscribing] = (
    weakref.WeakValueDictionary()
)
#: Stream options made so far, by type and values (immutable numbers, no store).
_stream_options: dict[tuple[Any, ...], StreamOptions] = {}
#: The most stream options remembered (more are made anew each time).
_MAX_STREAM_OPTIONS = 256


def _shared(
    store: BaseStore,
    transport: Transport,
    options: Mapping[str, Any],
    make: Callable[[BaseStore, Mapping[str, Any]], tuple[Subscribing, Any]],
) -> tuple[Subscribing, Any]:
    """``make(store, options)``, its parts replaced by equal ones made earlier for
    the same store, transport and options (values equal and of the same types) while
    they are still in use: an unhashable value, such as a list of origins, is never
    shared. ``make`` runs every time, so a bad option raises every time."""
    endpoint, stream = make(store, options)
    access = _ACCESS_OPTIONS[transport]
    endpoint_key = _key((id(store), transport), options, lambda name: name in access)
    if endpoint_key is not None:
        known = _endpoints.get(endpoint_key)
        if known is not None and known.store is store and known == endpoint:
            endpoint = known
        else:
            _endpoints[endpoint_key] = endpoint
    stream_key = _key((type(stream),), options, lambda name: name not in access)
    if stream_key is not None:
        same = _stream_options.get(stream_key)
        if same is not None and same == stream:
            stream = same
        elif len(_stream_options) < _MAX_STREAM_OPTIONS:
            _stream_options[stream_key] = stream
    return endpoint, stream


def _key(
    head: tuple[Any, ...], options: Mapping[str, Any], keep: Callable[[str], bool]
) -> tuple[Any, ...] | None:
    """``head`` and the kept options as a dictionary key (``None``: unhashable)."""
    key = (*head, *sorted((k, type(v), v) for k, v in options.items() if keep(k)))
    try:
        hash(key)
    except TypeError:
        return None
    return key


_ACCESS_OPTIONS = {
    Transport.SSE: ("authorize", "channel"),
    Transport.WEBSOCKET: ("authorize", "channel", "allowed_origins"),
}


def _split(
    store: BaseStore, transport: Transport, options: Mapping[str, Any]
) -> tuple[Subscribing, dict[str, Any]]:
    stream = dict(options)
    access = {name: stream.pop(name) for name in _ACCESS_OPTIONS[transport] if name in stream}
    return Subscribing(store, transport, **access), stream
