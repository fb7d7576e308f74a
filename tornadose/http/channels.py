"""Channels declared once and mounted on any adapter with the same URLs.

A :class:`Channels` object names a set of channels (name → store, schema, options).
Each adapter turns it into routes with one call:

* Tornado: ``Application(channel_handlers(channels))`` (:mod:`tornadose.adapters.tornado`);
* ASGI: ``ChannelsApp(channels)`` (:mod:`tornadose.adapters.asgi`), mounted anywhere in a
  Starlette or FastAPI app, or served on its own.

Both serve the same URLs, relative to ``prefix``:

====================================  ==============================================
``GET  {prefix}/{name}/events``       the channel as Server-Sent Events
``GET  {prefix}/{name}/ws``           the channel over WebSocket
``POST {prefix}/{name}/publish``      publish a JSON message (see :mod:`tornadose.http.publish`)
``GET  {prefix}/{name}/schema.json``  the JSON Schema of the channel's messages
``GET  {prefix}/{name}/presence``     the channel's subscriber counts (:mod:`~.presence`)
``GET  {prefix}/_presence``           every channel's subscriber counts
``GET  {prefix}/asyncapi.json``       an AsyncAPI 3.0 document of all channels
``GET  {prefix}/metrics``             every channel's metrics, Prometheus text format
``GET  {prefix}/_multi/events``       several channels and patterns as one SSE stream
``GET  {prefix}/_multi/ws``           the same over WebSocket (:mod:`tornadose.http.multi`)
====================================  ==============================================

Any other path under ``prefix`` answers ``404`` with an ``unknown_channel`` error
(on Tornado without a prefix: any other path shaped like ``/{name}/{endpoint}``).
Routes are built when mounted: declare every channel first.
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from tornadose.core.channelset import MAX_CURSOR_CHANNELS, MAX_NAME_LENGTH, is_channel_name
from tornadose.core.store import BaseStore, QueueStore
from tornadose.delivery import streams
from tornadose.http.auth import Authorize
from tornadose.http.cors import CORSPolicy
from tornadose.http.presence import Presence, PresenceBackend
from tornadose.http.publish import DEFAULT_MAX_BODY

__all__ = [
    "CHANNEL_ENDPOINTS",
    "REDIS_URL_VARIABLE",
    "Channel",
    "Channels",
    "Endpoint",
    "MultiLimits",
    "Route",
    "endpoint_path",
]

logger = logging.getLogger("tornadose.channels")

#: The environment variable that gives :class:`Channels` a default Redis URL.
REDIS_URL_VARIABLE = "TORNADOSE_REDIS_URL"


class Endpoint(enum.Enum):
    """What a URL under a :class:`Channels` prefix serves."""

    EVENTS = "events"
    WEBSOCKET = "ws"
    PUBLISH = "publish"
    SCHEMA = "schema.json"
    ASYNCAPI = "asyncapi.json"
    METRICS = "metrics"
    #: A channel's subscriber counts (:mod:`tornadose.http.presence`).
    PRESENCE = "presence"
    #: Every channel's subscriber counts.
    ALL_PRESENCE = "_presence"
    #: Several channels and patterns on one SSE connection (:mod:`tornadose.http.multi`).
    MULTI_EVENTS = "_multi/events"
    #: The same over WebSocket.
    MULTI_WEBSOCKET = "_multi/ws"


#: What each channel serves, below ``{prefix}/{name}/``.
CHANNEL_ENDPOINTS = (
    Endpoint.EVENTS,
    Endpoint.WEBSOCKET,
    Endpoint.PUBLISH,
    Endpoint.SCHEMA,
    Endpoint.PRESENCE,
)

#: What the channels serve once for all of them, below ``{prefix}/``.
_SHARED = (
    Endpoint.ASYNCAPI,
    Endpoint.METRICS,
    Endpoint.ALL_PRESENCE,
    Endpoint.MULTI_EVENTS,
    Endpoint.MULTI_WEBSOCKET,
)


@dataclass(frozen=True)
class Channel:
    """One named channel: its store and how it is served."""

    name: str
    store: BaseStore
    description: str = ""
    #: Seconds of silence before an SSE heartbeat comment (``None``/``0``: off).
    heartbeat: float | None = streams.DEFAULT_HEARTBEAT
    #: Seconds between writes to one client (throttling); ``None``: no throttling.
    period: float | None = None
    #: Reconnection delay (ms) sent to SSE clients when a stream opens.
    retry: int | None = None
    #: Seconds one write may take before the client is cut as stalled.
    write_timeout: float | None = streams.DEFAULT_WRITE_TIMEOUT
    #: Largest accepted publish body, in bytes.
    max_body: int = DEFAULT_MAX_BODY
    #: Whether ``POST .../publish`` is served for this channel.
    publishable: bool = True
    #: Whether subscribers get ``tornadose.presence`` events when the channel's
    #: subscriber count changes (see :mod:`tornadose.http.presence`).
    presence_events: bool = False
    #: Origins besides the page's own whose browsers may open the WebSocket
    #: (``("*",)``: any); see :func:`tornadose.http.websocket.origin_allowed`.
    allowed_origins: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # Fail at declaration, not at the first client.
        self.sse_options()
        if self.max_body < 0:
            raise ValueError(f"max_body must not be negative, not {self.max_body}")

    async def publish(self, message: Any, *, event: str | None = None) -> str:
        """Publish ``message`` to this channel from your own code (any route, any
        task) and return its id, once the store has published it (at once in
        memory, once Redis took it for a ``RedisStore``).

        The store's rules apply as for an HTTP publish, raising instead of answering:
        :class:`~tornadose.core.errors.MessageValidationError` (the schema: map it to
        ``422``), :class:`~tornadose.core.errors.UnencodableMessage`,
        :class:`~tornadose.wire.sse.InvalidField` (``event`` with CR, LF or NUL),
        :class:`~tornadose.core.errors.StoreClosed`,
        :class:`~tornadose.core.errors.StoreUnavailable`. After any of them nothing
        was published, except a ``StoreUnavailable`` whose ``maybe_published`` is
        true: the connection to Redis broke after the message was sent, so it may
        have been published (with an id you were not given).
        """
        published = await self.store.submit(message, event=event)
        return published.id or ""

    def sse_options(self) -> streams.SSEOptions:
        """The channel's options for SSE streams."""
        return streams.SSEOptions(
            heartbeat=self.heartbeat,
            period=self.period,
            retry=self.retry,
            write_timeout=self.write_timeout,
        )


@dataclass(frozen=True)
class MultiLimits:
    """What one multi-channel connection may ask for (see :mod:`tornadose.http.multi`):
    beyond them the request is refused with ``400`` (a channel a pattern comes to
    match beyond ``max_channels`` is reported refused instead)."""

    #: Channels on one connection: named ones and those patterns match, together (at
    #: most :data:`~tornadose.core.channelset.MAX_CURSOR_CHANNELS`; their names
    #: together at most :data:`~tornadose.core.channelset.CURSOR_NAMES_BUDGET` bytes).
    max_channels: int = 64
    #: Patterns on one connection.
    max_patterns: int = 8
    #: Messages queued for the connection's writer (channels back up behind it).
    max_queue: int = 256
    #: Bytes (of encoded SSE) queued for the connection's writer.
    max_queue_bytes: int = 4 * 1024 * 1024

    def __post_init__(self) -> None:
        for name in ("max_channels", "max_patterns", "max_queue", "max_queue_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.max_channels > MAX_CURSOR_CHANNELS:
            raise ValueError(
                f"max_channels must be at most {MAX_CURSOR_CHANNELS} (the channels a "
                f"cursor may name), not {self.max_channels}"
            )


@dataclass(frozen=True)
class Route:
    """One URL path (relative to the prefix) and what it serves."""

    path: str
    endpoint: Endpoint
    channel: Channel | None


def endpoint_path(name: str | None, endpoint: Endpoint) -> str:
    """The URL path of channel ``name``'s ``endpoint``, relative to the prefix
    (``/chat/events``); ``name=None``: an endpoint of every channel
    (``/asyncapi.json``, ``/_multi/events``)."""
    if name is None:
        return f"/{endpoint.value}"
    return f"/{name}/{endpoint.value}"


class Channels:
    """A named set of channels, served identically by every adapter.

    ``authorize`` is the hook of :mod:`tornadose.http.auth`, applied to every subscribe
    and publish request of every channel. ``title`` and ``version`` describe the
    service in the AsyncAPI document.

    ``redis_url`` (default: the ``TORNADOSE_REDIS_URL`` environment variable, so a
    deployment can switch without code changes) makes the stores that :meth:`add`
    creates ``RedisStore`` channels named after the channel, shared by every process
    on that Redis, instead of in-memory ``QueueStore`` ones.

    ``cors_origins`` lets pages from those origins (``scheme://host[:port]``, or
    ``"*"``: any) subscribe over SSE, read the documents and publish, on every adapter;
    ``cors_credentials`` lets them send cookies and HTTP authentication (listed
    origins only); ``cors_headers`` are request headers they may send besides
    ``Content-Type``, ``Authorization`` and ``Last-Event-ID``. They make
    :attr:`cors` (see :mod:`tornadose.http.cors`, which also says how the WebSocket's
    ``allowed_origins`` relate to them). Without ``cors_origins``: same-origin only.

    ``multi`` (a :class:`MultiLimits`) bounds the multi-channel connections served at
    ``{prefix}/_multi/...`` (:mod:`tornadose.http.multi`); ``presence_ttl`` is how
    long (seconds, default 3) a process's subscriber counts stay counted across
    processes with ``redis_url`` (:mod:`tornadose.http.presence`, :attr:`presence`).
    """

    def __init__(
        self,
        *,
        prefix: str = "",
        authorize: Authorize | None = None,
        title: str = "tornadose channels",
        version: str = "1.0.0",
        redis_url: str | None = None,
        cors_origins: Iterable[str] | None = None,
        cors_credentials: bool = False,
        cors_headers: Iterable[str] = (),
        multi: MultiLimits | None = None,
        presence_ttl: float | None = None,
    ) -> None:
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ValueError(f"prefix must start with '/' and not end with it: {prefix!r}")
        self.prefix = prefix
        self.authorize = authorize
        self.title = title
        self.version = version
        self.redis_url = redis_url or os.environ.get(REDIS_URL_VARIABLE) or None
        #: Which other origins' pages may use these channels (``None``: none).
        self.cors = CORSPolicy.of(cors_origins, credentials=cors_credentials, headers=cors_headers)
        #: The limits of multi-channel connections (:mod:`tornadose.http.multi`).
        self.multi = multi or MultiLimits()
        self._channels: dict[str, Channel] = {}
        #: Subscriber counts per channel, here and (with ``redis_url``) in every process.
        self.presence = Presence(self._stores, self._presence_backend(presence_ttl))
        #: Called with each channel declared from now on (see :meth:`watch`).
        self._watchers: list[Callable[[Channel], None]] = []
        #: The servers (apps, sets of handlers) serving these channels: see :meth:`serve_from`.
        self._servers: set[object] = set()

    def add(
        self,
        name: str,
        store: BaseStore | None = None,
        *,
        schema: Any = None,
        description: str = "",
        **options: Any,
    ) -> Channel:
        """Declare channel ``name`` and return it.

        Give a ``store``, or a ``schema`` and a store is made with it: a
        :class:`~tornadose.core.store.QueueStore`, or with :attr:`redis_url` a
        :class:`~tornadose.backends.redis.store.RedisStore` whose Redis channel is ``name``.
        ``options`` are the other fields of :class:`Channel`.
        """
        if not is_channel_name(name):
            raise ValueError(
                f"channel names are letters, digits, '_', '.', '-', starting with a letter "
                f"or digit, at most {MAX_NAME_LENGTH} characters: {name[:60]!r}"
                + (f" ({len(name)} characters)" if len(name) > 60 else "")
            )
        if name in self._channels:
            raise ValueError(f"channel {name!r} is declared twice")
        if store is None:
            store = self._default_store(name, schema)
        elif schema is not None:
            raise ValueError("give the schema to the store, or no store: not both")
        channel = Channel(name, store, description, **options)
        self._channels[name] = channel
        if channel.presence_events:
            self.presence.follow(name)
        for watcher in list(self._watchers):
            try:
                watcher(channel)
            except Exception:
                logger.exception("a watcher of %r failed on channel %r", self, name)
        return channel

    def watch(self, watcher: Callable[[Channel], None]) -> Callable[[], None]:
        """Call ``watcher(channel)`` with each channel declared from now on (how a
        multi-channel connection's patterns pick up new channels); returns the
        function that stops it. Watchers run inside :meth:`add`: they must be quick
        (an exception is logged, never raised to the caller of ``add``)."""
        self._watchers.append(watcher)

        def unwatch() -> None:
            if watcher in self._watchers:
                self._watchers.remove(watcher)

        return unwatch

    def _stores(self) -> dict[str, BaseStore]:
        return {name: channel.store for name, channel in self._channels.items()}

    def _presence_backend(self, ttl: float | None) -> PresenceBackend | None:
        if self.redis_url is None:
            return None
        from tornadose.backends.redis.presence import DEFAULT_TTL, RedisPresence

        return RedisPresence(self.redis_url, ttl=ttl or DEFAULT_TTL)

    def _default_store(self, name: str, schema: Any) -> BaseStore:
        if self.redis_url is None:
            return QueueStore(schema=schema)
        from tornadose.backends.redis.store import RedisStore  # the redis extra, only when used

        return RedisStore(name, url=self.redis_url, schema=schema)

    def __getitem__(self, name: str) -> Channel:
        """The channel declared as ``name`` (``KeyError`` if none is)."""
        return self._channels[name]

    def get(self, name: str) -> Channel | None:
        """The channel declared as ``name``, ``None`` if none is."""
        return self._channels.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._channels

    def __iter__(self) -> Iterator[Channel]:
        return iter(self._channels.values())

    def __len__(self) -> int:
        return len(self._channels)

    # -- routing (shared by every adapter) -------------------------------------------

    def routes(self) -> list[Route]:
        """Every URL path served, relative to :attr:`prefix`."""
        table = [Route(endpoint_path(None, endpoint), endpoint, None) for endpoint in _SHARED]
        for channel in self:
            for endpoint in CHANNEL_ENDPOINTS:
                if endpoint is not Endpoint.PUBLISH or channel.publishable:
                    path = endpoint_path(channel.name, endpoint)
                    table.append(Route(path, endpoint, channel))
        return table

    # -- who serves them ----------------------------------------------------------------

    def serve_from(self, server: object) -> None:
        """Note that ``server`` serves these channels (adapters call it: a
        ``ChannelsApp`` for itself, ``channel_handlers`` for the handlers it makes)."""
        self._servers.add(server)
        self.presence.start()

    def stop_serving_from(self, server: object) -> bool:
        """``server`` stops serving these channels; whether no other server still does.

        A server shutting down closes the stores only if it was the last one
        (``ChannelsApp``'s lifespan does so): one ``Channels`` mounted on uvicorn and on
        Tornado in one process keeps its stores open while Tornado serves them. Tornado
        handlers never stop serving by themselves (Tornado has no lifespan): close
        their channels when you stop their server (:meth:`aclose`).
        """
        self._servers.discard(server)
        return not self._servers

    def close(self) -> None:
        """Close every channel's store (ending its streams)."""
        for channel in self:
            channel.store.close()

    async def aclose(self) -> None:
        """Close every channel's store and release what it holds (Redis connections);
        stop the presence heartbeat, withdrawing this process's counts."""
        for channel in self:
            await channel.store.aclose()
        await self.presence.stop()
