"""A Python client for tornadose streams, over SSE or WebSocket, that resumes by itself.

::

    import tornadose.client

    async with tornadose.client.subscribe("http://host/ticks/events", schema=Tick) as stream:
        async for event in stream:
            if isinstance(event, tornadose.client.ControlEvent):
                continue  # tornadose.resumed / tornadose.reset: see below
            print(event.id, event.data)  # event.data is a Tick

Needs the ``client`` extra (``pip install 'tornadose[client]'``): httpx for SSE, the
``websockets`` package for WebSocket, each imported only when its transport is used.
``import tornadose`` never imports this module.

Guarantees:

* **Order, exact resume.** Events are yielded in the order the server sent them.
  After a dropped connection the client reconnects with the id of the last event it
  yielded (SSE: the ``Last-Event-ID`` header; WebSocket: the ``last_event_id`` query
  parameter, replacing one already in the URL), so a tornadose server sends exactly
  what was missed: no gap, no duplicate. (The client relies on the server for this;
  it does not drop duplicates itself.)
* **No silent gap.** The server's answer to a resume is yielded, never hidden: a
  :class:`ControlEvent` ``tornadose.resumed`` (every missed message follows) or
  ``tornadose.reset`` (they could not all be replayed; live messages follow). A
  message that does not fit ``schema``, or a WebSocket frame that is not a tornadose
  message, raises :class:`InvalidMessage`: it is never skipped quietly.
* **Reconnection.** A dropped connection (server restart, network error, the server
  ending the stream, an idle ``timeout``) and an answer that may fix itself (5xx,
  408, 425, 429) are retried for ever, after a delay: the server's SSE ``retry``
  (else 0.1 s), doubled for each failed attempt in a row (a connection that ends
  before delivering an event counts as one), capped at ``max_delay``, times a random
  1 to 1.5 (jitter, so clients do not all come back at once; still capped). So the
  server's ``retry`` is a minimum, unless it exceeds ``max_delay``. The doubling
  starts over once a connection delivers an event.
* **Errors that will not fix themselves raise** :class:`ClientError` (status and
  body) at once, without retrying: any other status (401, 403, 404, 422...), and a
  ``200`` that is not an event stream. With ``reconnect=False`` every error status
  raises it, and a network error raises :class:`ConnectionFailed`.
* **The end.** The iteration ends when the server says the stream is over (SSE:
  ``204 No Content``, which also stops a browser's ``EventSource`` and is what
  tornadose answers for a closed store; WebSocket: close code ``1001`` with
  tornadose's reason ``"store closed"``), or, with ``reconnect=False``, when the one
  connection ends normally (a broken one raises :class:`ConnectionFailed`).
* **Cancellation-safe.** Cancelling a read (``asyncio.wait_for(anext(stream), 1)``)
  loses nothing: the connection and anything already received stay for the next read.
* **Resources.** Nothing connects before the first read, and the network is read
  only while the caller awaits the next event (a cancelled read goes on, and the next
  read picks up its result), so a caller that stops reading holds the server back
  with TCP flow control; a tornadose server may then cut it as a slow consumer, and
  the client resumes. Leaving ``async with`` (or :meth:`EventStream.aclose`, also
  from another task) closes the connection, and an iteration waiting in another task
  ends. A stream that ended or raised has closed it already. Read a stream from one
  task at a time.

Each :class:`Event` has ``data`` (the payload: JSON-decoded, or validated into
``schema``), ``text`` (the payload as text), ``id`` and ``event``. Over SSE a ``str``
payload travels as bare text, not as JSON, so its type cannot be told from the wire:
a text that is not JSON is taken as a string, one that is JSON is decoded (``"42"``
sent as a string arrives as ``42``); with a ``schema``, the text is validated as JSON
if it fits that way, else as a string (so a ``str`` schema gets ``"42"``, and only a
string that is itself a JSON string, like ``'"x"'``, arrives unquoted). Over
WebSocket the payload's JSON type is always kept.

The package, one concept a module: :mod:`~tornadose.client.events` (what the caller
gets), :mod:`~tornadose.client.stream` (:class:`EventStream`: connections, resume,
reconnection), :mod:`~tornadose.client.backoff` (the wait between attempts),
:mod:`~tornadose.client.sse` and :mod:`~tornadose.client.websocket` (the transports),
:mod:`~tornadose.client.connection` (what a transport provides) and
:mod:`~tornadose.client.decoding` (payloads into events and schemas).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar, overload
from urllib.parse import urlencode, urlsplit, urlunsplit

import pydantic

from tornadose.client.backoff import DEFAULT_MAX_DELAY, INITIAL_DELAY
from tornadose.client.backoff import JITTER as JITTER
from tornadose.client.backoff import RETRIED_STATUSES as RETRIED_STATUSES
from tornadose.client.connection import MAX_ERROR_BODY as MAX_ERROR_BODY
from tornadose.client.events import (
    CONTROL_EVENTS,
    ClientError,
    ConnectionFailed,
    ControlEvent,
    Event,
    InvalidMessage,
)
from tornadose.client.stream import DEFAULT_CONNECT_TIMEOUT, EventStream, Transport
from tornadose.client.websocket import with_last_event_id

__all__ = [
    "CONTROL_EVENTS",
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_MAX_DELAY",
    "INITIAL_DELAY",
    "ClientError",
    "ConnectionFailed",
    "ControlEvent",
    "Event",
    "EventStream",
    "InvalidMessage",
    "Transport",
    "subscribe",
    "subscribe_many",
    "with_last_event_id",
]

T = TypeVar("T")


@overload
def subscribe(
    url: str,
    *,
    transport: Transport | None = None,
    last_event_id: str | None = None,
    schema: None = None,
    reconnect: bool = True,
    max_delay: float = DEFAULT_MAX_DELAY,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> EventStream[Any]: ...


@overload
def subscribe(
    url: str,
    *,
    transport: Transport | None = None,
    last_event_id: str | None = None,
    schema: type[T],
    reconnect: bool = True,
    max_delay: float = DEFAULT_MAX_DELAY,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> EventStream[T]: ...


@overload
def subscribe(
    url: str,
    *,
    transport: Transport | None = None,
    last_event_id: str | None = None,
    schema: Any,
    reconnect: bool = True,
    max_delay: float = DEFAULT_MAX_DELAY,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> EventStream[Any]: ...


def subscribe(
    url: str,
    *,
    transport: Transport | None = None,
    last_event_id: str | None = None,
    schema: Any = None,
    reconnect: bool = True,
    max_delay: float = DEFAULT_MAX_DELAY,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> EventStream[Any]:
    """Subscribe to a tornadose stream: ``async with subscribe(url) as stream:`` then
    ``async for event in stream:`` (see the module docstring for the guarantees).

    * ``transport``: ``"sse"`` or ``"websocket"``; by default from the URL's scheme
      (``http``/``https``: SSE, ``ws``/``wss``: WebSocket). Given explicitly, the
      scheme is adapted (``http`` becomes ``ws`` and so on).
    * ``last_event_id``: resume after this id from the first connection on (an empty
      one is no id).
    * ``schema``: a pydantic model, or any type pydantic's ``TypeAdapter`` takes;
      each message's payload is validated into it (JSON mode).
    * ``reconnect``: ``False`` makes the stream one connection: it ends when that
      connection ends, and a failure to connect raises.
    * ``max_delay``: the longest wait between two connection attempts, in seconds.
    * ``headers``: sent with every request (``Authorization``...).
    * ``timeout``: seconds a connection attempt may take (default 10), and, over SSE,
      seconds the stream may stay silent (not even a heartbeat comment) before it is
      taken for dead and replaced; ``None``: no limit on silence. WebSocket
      connections are watched with pings instead (every 20 s; a pong must come
      within ``timeout`` s, by default 20).

    Raises :class:`ValueError` at once for a URL that is neither ``http(s)`` nor
    ``ws(s)``, or a bad option.
    """
    chosen, resolved = _resolve_transport(url, transport)
    if not max_delay > 0:
        raise ValueError(f"max_delay must be positive, not {max_delay}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be positive or None, not {timeout}")
    adapter = None if schema is None else pydantic.TypeAdapter(schema)
    return EventStream(
        resolved,
        transport=chosen,
        last_event_id=last_event_id or None,  # an empty id is no id (as in the spec)
        adapter=adapter,
        reconnect=reconnect,
        max_delay=max_delay,
        headers=dict(headers or {}),
        timeout=timeout,
    )


def subscribe_many(
    base: str,
    *,
    channels: Iterable[str] = (),
    patterns: Iterable[str] = (),
    transport: Transport | None = None,
    last_event_id: str | None = None,
    schema: Any = None,
    reconnect: bool = True,
    max_delay: float = DEFAULT_MAX_DELAY,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> EventStream[Any]:
    """Subscribe to several channels and patterns of a ``Channels`` at ``base`` (its
    URL with the prefix: ``http://host/api``) on one connection
    (``{base}/_multi/events``, or ``/_multi/ws`` for WebSocket; see
    :mod:`tornadose.http.multi`). Every event has ``channel`` and ``channel_id``;
    ``data`` is the message's payload (validated with ``schema``, which then applies
    to every channel). ``id`` is the connection's cursor: the stream resumes every
    channel with it after a dropped connection, and ``last_event_id`` (a cursor
    saved from ``event.id``) resumes from the first connection on. Control events:
    ``tornadose.subscribed`` first (``channel`` ``None``), ``tornadose.refused``,
    and per channel ``tornadose.resumed``/``tornadose.reset``. The other options and
    the guarantees are :func:`subscribe`'s; the server's 4xx answers (a bad pattern,
    too many channels, an unknown channel) raise :class:`ClientError`."""
    query = [("channel", name) for name in channels] + [("pattern", p) for p in patterns]
    if not query:
        raise ValueError("name at least one channel or pattern")
    chosen, _ = _resolve_transport(base, transport)
    path = "/_multi/events" if chosen == "sse" else "/_multi/ws"
    url = base.rstrip("/") + path + "?" + urlencode(query)
    stream = subscribe(
        url,
        transport=chosen,
        last_event_id=last_event_id,
        schema=schema,
        reconnect=reconnect,
        max_delay=max_delay,
        headers=headers,
        timeout=timeout,
    )
    stream.multi = True
    return stream


def _resolve_transport(url: str, transport: Transport | None) -> tuple[Transport, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    as_http = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
    if scheme not in as_http:
        raise ValueError(f"the URL must be http(s):// or ws(s)://, not {url!r}")
    if transport is None:
        transport = "sse" if scheme in ("http", "https") else "websocket"
    if transport == "sse":
        return transport, urlunsplit(parts._replace(scheme=as_http[scheme]))
    if transport == "websocket":
        secure = as_http[scheme] == "https"
        return transport, urlunsplit(parts._replace(scheme="wss" if secure else "ws"))
    raise ValueError(f"transport must be 'sse' or 'websocket', not {transport!r}")
