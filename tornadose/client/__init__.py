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
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import random
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, Self, TypeVar, overload
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

import pydantic
import pydantic_core

from tornadose.core.errors import MessageValidationError, TornadoseError
from tornadose.core.history import RESET_EVENT, RESUMED_EVENT
from tornadose.core.reasons import CloseReason
from tornadose.delivery.close import close_code_for
from tornadose.wire.sse_parser import DEFAULT_EVENT, SSEParser

if TYPE_CHECKING:
    from types import TracebackType

    import httpx
    from websockets.asyncio.client import ClientConnection

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
    "with_last_event_id",
]

logger = logging.getLogger("tornadose.client")

T = TypeVar("T")
Transport = Literal["sse", "websocket"]

#: The event types of tornadose's control events, yielded as :class:`ControlEvent`.
CONTROL_EVENTS = frozenset({RESUMED_EVENT, RESET_EVENT})
#: Seconds before the first reconnection attempt, unless the server sent ``retry``.
INITIAL_DELAY = 0.1
#: The default cap of the delay between attempts, in seconds.
DEFAULT_MAX_DELAY = 5.0
#: Seconds a connection attempt may take when no ``timeout`` is given.
DEFAULT_CONNECT_TIMEOUT = 10.0
#: Statuses besides 5xx that a server may recover from by itself: retried. Any other
#: status but 200 and 204 raises :class:`ClientError`.
RETRIED_STATUSES = frozenset({408, 425, 429})
#: How much of an error response's body :class:`ClientError` keeps, in bytes.
MAX_ERROR_BODY = 64 * 1024
#: Random extra wait, as a fraction of the delay (jitter).
JITTER = 0.5

#: The close frame a tornadose server sends when the store is closed: no reconnecting.
_STORE_CLOSED = close_code_for(CloseReason.STORE_CLOSED)


# -- what the caller gets ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Event(Generic[T]):
    """One event of the stream."""

    #: The payload: validated into the stream's ``schema``, or else decoded from JSON
    #: (over SSE, a text that is not JSON is the string itself).
    data: T
    #: The payload as text: the SSE event's data, or (WebSocket) the JSON of the
    #: frame's ``data`` (a string payload is the string itself).
    text: str
    #: The last event id after this event: its own id, or for an event without one
    #: the id in effect before it (``tornadose.resumed`` carries the id it resumed
    #: after). Sent back on reconnection.
    id: str | None
    #: ``None`` for a plain message (of the default type, ``message``); else its event
    #: type (a name given to ``store.submit(..., event=...)``, or a control event's).
    event: str | None = None


@dataclass(frozen=True, slots=True)
class ControlEvent(Event[dict[str, Any]]):
    """``tornadose.resumed`` or ``tornadose.reset``: how a resume went. Its ``data`` is
    the decoded JSON object, never validated with the schema.

    * ``tornadose.resumed``, ``{"after": <id>, "replayed": n}``: the ``n`` messages
      missed follow, then live ones; no gap, no duplicate.
    * ``tornadose.reset``, ``{"reason": ..., "last_event_id": <id>}``: what was missed
      could not be replayed (the server restarted, the history ran out...); live
      messages follow. Reload any state built from earlier messages.
    """

    @property
    def resumed(self) -> bool:
        """Whether this is ``tornadose.resumed`` (the resume was exact)."""
        return self.event == RESUMED_EVENT


class ClientError(TornadoseError):
    """The server answered with an error status that retrying will not fix (or any
    error status, with ``reconnect=False``), or with something that is not a stream.

    :attr:`status` is the HTTP status, :attr:`body` the start of the response body (a
    tornadose server's is JSON: ``{"error": ..., "detail": ...}``), :attr:`url` the
    URL asked.
    """

    def __init__(self, status: int, body: str, url: str, problem: str | None = None) -> None:
        what = problem or f"answered {status}"
        super().__init__(f"{url} {what}: {body[:300]!r}" if body else f"{url} {what}")
        self.status = status
        self.body = body
        self.url = url


class ConnectionFailed(TornadoseError, ConnectionError):
    """With ``reconnect=False``: the connection could not be opened, or it broke.
    The transport's own exception is the ``__cause__``."""


class InvalidMessage(MessageValidationError):
    """A received message does not fit the stream's ``schema``, or is not a tornadose
    frame at all. :attr:`errors` holds pydantic's details (as for
    :class:`~tornadose.core.errors.MessageValidationError`), :attr:`text` the payload as
    received, :attr:`id` its id.

    The stream stays usable: the next read yields the next event, and the invalid
    message counts as received (a reconnection resumes after it).
    """

    def __init__(
        self,
        message: str,
        errors: list[dict[str, Any]],
        *,
        text: str,
        id: str | None,  # noqa: A002
    ) -> None:
        super().__init__(message, errors)
        self.text = text
        self.id = id


# -- subscribe -----------------------------------------------------------------------------


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


def with_last_event_id(url: str, last_event_id: str) -> str:
    """``url`` with its ``last_event_id`` query parameter set to ``last_event_id``
    (percent-encoded): an earlier one is replaced (a server reads the first), the
    other parameters are kept as they are, and a fragment is dropped."""
    parts = urlsplit(url)
    kept = [
        item
        for item in parts.query.split("&")
        if item and unquote_plus(item.partition("=")[0]) != "last_event_id"
    ]
    kept.append("last_event_id=" + quote(last_event_id, safe=""))
    return urlunsplit(parts._replace(query="&".join(kept), fragment=""))


# -- the stream ----------------------------------------------------------------------------

_UNDECODED: Any = object()


@dataclass(frozen=True, slots=True)
class _Incoming:
    """An event as received, before its payload is decoded."""

    event: str | None  # None for the default type
    id: str | None  # the last event id in effect after it
    text: str
    value: Any = _UNDECODED  # WebSocket: the frame's decoded "data"
    problem: str | None = None  # why this is not a tornadose frame


class _Ended(Exception):
    """The connection ended. ``error``: why, when it broke rather than ended."""

    def __init__(
        self, description: str, *, error: BaseException | None = None, final: bool = False
    ) -> None:
        super().__init__(description)
        self.error = error
        #: The server said the stream is over: do not reconnect.
        self.final = final


class _Retryable(Exception):
    """A connection attempt failed in a way that may fix itself."""

    def __init__(self, description: str, status_error: ClientError | None = None) -> None:
        super().__init__(description)
        self.status_error = status_error


class _Connection(Protocol):
    #: The server's reconnection time in milliseconds (SSE ``retry``), if any.
    retry: int | None

    async def read(self) -> list[_Incoming]:
        """The next events (maybe none); raises :class:`_Ended` at the end."""
        ...

    async def aclose(self) -> None: ...


class EventStream(Generic[T]):
    """The events of one subscription, across as many connections as it takes.

    Made by :func:`subscribe`; an async iterator of :class:`Event` (and
    :class:`ControlEvent`) and an async context manager that closes it.
    """

    def __init__(
        self,
        url: str,
        *,
        transport: Transport,
        last_event_id: str | None,
        adapter: pydantic.TypeAdapter[T] | None,
        reconnect: bool,
        max_delay: float,
        headers: dict[str, str],
        timeout: float | None,
    ) -> None:
        #: The URL connected to (with the scheme of the transport).
        self.url = url
        self.transport: Transport = transport
        #: The id of the last event yielded (or given to :func:`subscribe`): where a
        #: reconnection resumes.
        self.last_event_id = last_event_id
        #: How many times the stream connected again after its first connection.
        self.reconnects = 0
        #: The reconnection time the server asked for (SSE ``retry``), in milliseconds.
        self.retry: int | None = None
        self._adapter = adapter
        self._reconnect = reconnect
        self._max_delay = max_delay
        self._headers = headers
        self._timeout = timeout
        self._connect_timeout = DEFAULT_CONNECT_TIMEOUT if timeout is None else timeout
        self._pending: deque[_Incoming] = deque()
        self._connection: _Connection | None = None
        self._http: httpx.AsyncClient | None = None
        self._connected_before = False
        self._back_off = False  # wait before the next attempt
        self._failures = 0  # attempts (and eventless connections) since an event came
        self._delivered = False  # the current connection delivered an event
        self._done = False
        #: Set by aclose(): ends a wait between two connection attempts at once.
        self._closing = asyncio.Event()

    def __repr__(self) -> str:
        return (
            f"<EventStream {self.transport} {self.url} last_event_id={self.last_event_id!r} "
            f"reconnects={self.reconnects}>"
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event[T] | ControlEvent:
        while not self._pending:
            if self._done:
                raise StopAsyncIteration
            await self._receive()
        incoming = self._pending.popleft()
        self.last_event_id = incoming.id
        return self._decode(incoming)

    async def aclose(self) -> None:
        """Close the connection; the iteration ends, also one waiting to reconnect in
        another task. Idempotent."""
        self._done = True
        self._closing.set()
        self._pending.clear()
        connection, self._connection = self._connection, None
        http, self._http = self._http, None
        try:
            if connection is not None:
                await connection.aclose()
        finally:
            if http is not None:
                await http.aclose()

    # -- receiving -------------------------------------------------------------------

    async def _receive(self) -> None:
        """Read what comes next into ``_pending``, connecting first if needed."""
        try:
            if self._connection is None:
                opened = await self._connect()
                if opened is None or self._done:  # the stream is over, or was closed
                    if opened is not None:
                        await opened.aclose()
                    await self.aclose()
                    return
                self._connection = opened
            connection = self._connection
            try:
                received = await connection.read()
            except _Ended as ended:
                await self._lost(connection, ended)
                return
            if connection.retry is not None:  # kept across connections, as by browsers
                self.retry = connection.retry
            if received:
                self._delivered = True
                self._failures = 0
                self._pending.extend(received)
        except Exception:  # ClientError, ConnectionFailed, or a bug: the stream is over
            await self.aclose()
            raise

    async def _lost(self, connection: _Connection, ended: _Ended) -> None:
        if self._connection is connection:
            self._connection = None
        await connection.aclose()
        if self._done:  # closed by aclose() meanwhile
            return
        if ended.final:
            logger.info("%s: %s; the stream is over", self.url, ended)
            await self.aclose()
            return
        if not self._reconnect:
            await self.aclose()
            if ended.error is not None:
                raise ConnectionFailed(f"{self.url}: {ended}") from ended.error
            return
        if not self._delivered:
            self._failures += 1
        self._back_off = True
        logger.info("%s: %s; reconnecting", self.url, ended)

    async def _connect(self) -> _Connection | None:
        """Open a connection, retrying as long as that may help; ``None`` if the server
        says the stream is over. Raises :class:`ClientError` (and, with
        ``reconnect=False``, :class:`ConnectionFailed`)."""
        while True:
            if self._back_off:
                delay = self._delay()
                logger.debug("%s: next attempt in %.3f s", self.url, delay)
                # aclose() (from another task) ends the wait at once.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), delay)
            if self._done:
                return None
            self._back_off = True
            try:
                if self.transport == "sse":
                    connection: _Connection | None = await self._open_sse()
                else:
                    connection = await self._open_websocket()
            except _Retryable as failed:
                if not self._reconnect:
                    if failed.status_error is not None:
                        raise failed.status_error from None
                    raise ConnectionFailed(f"{self.url}: {failed}") from failed.__cause__
                self._failures += 1
                logger.info("%s: %s; retrying", self.url, failed)
                continue
            if connection is not None:
                if self._connected_before:
                    self.reconnects += 1
                self._connected_before = True
                self._delivered = False
            return connection

    def _delay(self) -> float:
        """Seconds to wait before the next attempt (see the module docstring)."""
        base = INITIAL_DELAY if self.retry is None else self.retry / 1000
        delay = min(self._max_delay, base * 2.0 ** min(self._failures, 32))
        return min(self._max_delay, delay * random.uniform(1.0, 1.0 + JITTER))

    async def _open_sse(self) -> _SSEConnection | None:
        _require("httpx", "SSE")
        import httpx

        if self._done:
            return None
        if self._http is None:
            timeout = httpx.Timeout(self._connect_timeout, read=self._timeout)
            self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=True)
        return await _SSEConnection.open(
            self._http, self.url, self._headers, self.last_event_id, self._connect_timeout
        )

    async def _open_websocket(self) -> _WebSocketConnection | None:
        _require("websockets", "WebSocket")
        url = self.url
        if self.last_event_id is not None:
            url = with_last_event_id(url, self.last_event_id)
        return await _WebSocketConnection.open(
            url, self._headers, self.last_event_id, self._connect_timeout, self._timeout
        )

    # -- decoding --------------------------------------------------------------------

    def _decode(self, incoming: _Incoming) -> Event[T] | ControlEvent:
        text, id_ = incoming.text, incoming.id
        if incoming.problem is not None:
            raise InvalidMessage(
                f"{self.url} sent a frame that is not a tornadose message: {incoming.problem}",
                [],
                text=text,
                id=id_,
            )
        if incoming.event in CONTROL_EVENTS:
            data = incoming.value if incoming.value is not _UNDECODED else _json_or(text, None)
            if not isinstance(data, dict):
                raise InvalidMessage(
                    f"{self.url} sent a {incoming.event} event whose data is not a JSON object",
                    [],
                    text=text,
                    id=id_,
                )
            return ControlEvent(data, text, id_, incoming.event)
        if self._adapter is None:
            value = incoming.value if incoming.value is not _UNDECODED else _json_or(text, text)
            return Event(value, text, id_, incoming.event)
        return Event(self._validate(self._adapter, incoming), text, id_, incoming.event)

    def _validate(self, adapter: pydantic.TypeAdapter[T], incoming: _Incoming) -> T:
        """The payload validated into the schema, in JSON mode. Over SSE, where a
        string payload is sent as bare text, a text that fails as JSON is tried as a
        JSON string too."""
        if incoming.value is not _UNDECODED:
            attempts = [pydantic_core.to_json(incoming.value)]
        else:
            attempts = [incoming.text.encode(), pydantic_core.to_json(incoming.text)]
        failures: list[pydantic.ValidationError] = []
        for attempt in attempts:
            try:
                return adapter.validate_json(attempt)
            except pydantic.ValidationError as exc:
                failures.append(exc)
        # Report why the payload does not fit, rather than that bare text is not JSON.
        reported = failures[-1] if _is_invalid_json(failures[0]) else failures[0]
        raise InvalidMessage(
            f"message {incoming.id} from {self.url} does not fit the schema: {reported}",
            pydantic_core.from_json(reported.json(include_url=False)),
            text=incoming.text,
            id=incoming.id,
        ) from reported


def _require(module: str, transport: str) -> None:
    """Raise a helpful :class:`ImportError` if ``module`` is not installed."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"the {transport} transport of tornadose.client needs {module}: "
            "pip install 'tornadose[client]'"
        ) from exc


def _is_invalid_json(exc: pydantic.ValidationError) -> bool:
    return any(e["type"] == "json_invalid" for e in exc.errors())


def _json_or(text: str, default: Any) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return default


# -- transports ----------------------------------------------------------------------------


async def _error_body(chunks: AsyncIterator[bytes], limit: int = MAX_ERROR_BODY) -> bytes:
    body = b""
    async for chunk in chunks:
        body += chunk
        if len(body) >= limit:
            break
    return body[:limit]


class _SSEConnection:
    """One SSE response, read chunk by chunk into an :class:`SSEParser`."""

    def __init__(self, response: httpx.Response, last_event_id: str | None) -> None:
        self.response = response
        self.parser = SSEParser(last_event_id=last_event_id)
        self.retry: int | None = None
        self._chunks = response.aiter_bytes()
        # The read in progress: it survives a cancelled read(), for the next one.
        self._next: asyncio.Future[bytes] | None = None
        self._closed = False

    @classmethod
    async def open(
        cls,
        http: httpx.AsyncClient,
        url: str,
        headers: Mapping[str, str],
        last_event_id: str | None,
        timeout: float,
    ) -> _SSEConnection | None:
        import httpx

        request = http.build_request("GET", url, headers=_sse_headers(headers, last_event_id))
        try:
            async with asyncio.timeout(timeout):
                response = await http.send(request, stream=True)
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            raise _Retryable(_describe(exc)) from exc
        try:
            status = response.status_code
            if status == 200 and _is_event_stream(response.headers.get("content-type", "")):
                return cls(response, last_event_id)
            if status == 204:
                logger.info("%s answered 204: the stream is over", url)
                await response.aclose()
                return None
            try:
                async with asyncio.timeout(timeout):
                    raw = await _error_body(response.aiter_bytes())
            except (httpx.HTTPError, OSError, TimeoutError):
                raw = b""
            await response.aclose()
        except BaseException:
            await response.aclose()
            raise
        body = raw.decode(response.encoding or "utf-8", errors="replace")
        if status == 200:
            content_type = response.headers.get("content-type", "none")
            raise ClientError(status, body, url, f"is not an event stream ({content_type})")
        error = ClientError(status, body, url)
        if status >= 500 or status in RETRIED_STATUSES:
            raise _Retryable(f"answered {status}", error)
        raise error

    async def read(self) -> list[_Incoming]:
        import httpx

        if self._next is None:
            self._next = asyncio.ensure_future(self._read_chunk())
        try:
            chunk = await asyncio.shield(self._next)
        except asyncio.CancelledError:
            if self._closed and not _being_cancelled():  # aclose() from another task
                raise _Ended("the stream was closed") from None
            raise
        except StopAsyncIteration:
            self._next = None
            raise _Ended("the server ended the stream") from None
        except (httpx.HTTPError, OSError) as exc:
            self._next = None
            raise _Ended(f"the stream broke ({_describe(exc)})", error=exc) from exc
        self._next = None
        if self._closed:
            raise _Ended("the stream was closed")
        events = self.parser.feed(chunk)
        self.retry = self.parser.retry
        return [
            _Incoming(None if e.event == DEFAULT_EVENT else e.event, e.id, e.data) for e in events
        ]

    async def _read_chunk(self) -> bytes:
        return await anext(self._chunks)

    async def aclose(self) -> None:
        self._closed = True
        self.parser.close()
        if self._next is not None:
            self._next.cancel()
            with contextlib.suppress(BaseException):
                await self._next
            self._next = None
        await self.response.aclose()


def _sse_headers(headers: Mapping[str, str], last_event_id: str | None) -> dict[str, Any]:
    sent: dict[str, Any] = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    sent.update(headers)
    if last_event_id is not None:
        sent["Last-Event-ID"] = last_event_id.encode("utf-8")
    return sent


def _is_event_stream(content_type: str) -> bool:
    return content_type.partition(";")[0].strip().lower() == "text/event-stream"


def _being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _WebSocketConnection:
    """One WebSocket connection; each text frame is one tornadose message."""

    #: WebSocket has no reconnection time.
    retry: int | None = None

    def __init__(self, ws: ClientConnection, last_event_id: str | None) -> None:
        self.ws = ws
        self._last_event_id = last_event_id

    @classmethod
    async def open(
        cls,
        url: str,
        headers: Mapping[str, str],
        last_event_id: str | None,
        timeout: float,
        ping_timeout: float | None,
    ) -> _WebSocketConnection:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake, InvalidStatus, InvalidURI

        try:
            ws = await connect(
                url,
                additional_headers=dict(headers),
                open_timeout=timeout,
                close_timeout=timeout,
                ping_timeout=ping_timeout or 20,
                # A tornadose store bounds its messages; SSE has no frame limit either.
                max_size=None,
            )
        except InvalidURI as exc:
            raise ValueError(f"not a WebSocket URL: {url!r}") from exc
        except InvalidStatus as exc:
            status = exc.response.status_code
            body = exc.response.body.decode("utf-8", errors="replace") if exc.response.body else ""
            error = ClientError(status, body[:MAX_ERROR_BODY], url)
            if status >= 500 or status in RETRIED_STATUSES:
                raise _Retryable(f"answered {status}", error) from exc
            raise error from None
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            raise _Retryable(_describe(exc)) from exc
        return cls(ws, last_event_id)

    async def read(self) -> list[_Incoming]:
        from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

        try:
            frame = await self.ws.recv()
        except ConnectionClosedOK as closed:
            received = closed.rcvd
            final = received is not None and (received.code, received.reason) == _STORE_CLOSED
            raise _Ended(f"the server closed the connection ({closed})", final=final) from None
        except ConnectionClosed as closed:
            raise _Ended(f"the connection broke ({closed})", error=closed) from None
        return [self._incoming(frame)]

    def _incoming(self, frame: str | bytes) -> _Incoming:
        if isinstance(frame, bytes):
            return _Incoming(None, self._last_event_id, repr(frame), problem="a binary frame")
        try:
            envelope = json.loads(frame)
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict) or "data" not in envelope:
            problem = "not a JSON object with a 'data' member"
            return _Incoming(None, self._last_event_id, frame, problem=problem)
        id_, event = envelope.get("id"), envelope.get("event")
        if not isinstance(id_, str | None) or not isinstance(event, str | None):
            problem = "its 'id' or 'event' is not a string"
            return _Incoming(None, self._last_event_id, frame, problem=problem)
        if id_ is not None:
            self._last_event_id = id_
        value = envelope["data"]
        text = value if isinstance(value, str) else pydantic_core.to_json(value).decode()
        kind = None if event in (None, DEFAULT_EVENT) else event
        return _Incoming(kind, self._last_event_id, text, value)

    async def aclose(self) -> None:
        await self.ws.close()
