"""The stream a caller iterates: one subscription across as many connections as it
takes (see :mod:`tornadose.client` for its guarantees).

:class:`EventStream` reads from one transport connection at a time
(:mod:`~tornadose.client.sse` or :mod:`~tornadose.client.websocket`), and when it
ends or fails to open, connects again after the wait :mod:`~tornadose.client.backoff`
gives, resuming after the last event it yielded. Events are decoded
(:mod:`~tornadose.client.decoding`) as they are yielded, so an invalid one raises
at its turn without losing those after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Generic, Literal, Self, TypeVar

import pydantic

from tornadose._compat.optional import require
from tornadose.client import backoff
from tornadose.client.connection import Connection, Ended, Incoming, Retryable
from tornadose.client.decoding import decode, decode_multi
from tornadose.client.events import ConnectionFailed, ControlEvent, Event
from tornadose.client.sse import SSEConnection
from tornadose.client.websocket import WebSocketConnection, with_last_event_id

if TYPE_CHECKING:
    from types import TracebackType

    import httpx

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "EventStream", "Transport"]

logger = logging.getLogger("tornadose.client")

T = TypeVar("T")
Transport = Literal["sse", "websocket"]

#: Seconds a connection attempt may take when no ``timeout`` is given.
DEFAULT_CONNECT_TIMEOUT = 10.0

#: The extra that installs the client's transports.
_EXTRA = "tornadose[client]"


class EventStream(Generic[T]):
    """The events of one subscription, across as many connections as it takes.

    Made by :func:`~tornadose.client.subscribe`; an async iterator of
    :class:`~tornadose.client.Event` (and :class:`~tornadose.client.ControlEvent`) and
    an async context manager that closes it.
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
        #: Whether events are multi-channel envelopes (:func:`~tornadose.client.subscribe_many`).
        self.multi = False
        self._reconnect = reconnect
        self._max_delay = max_delay
        self._headers = headers
        self._timeout = timeout
        self._connect_timeout = DEFAULT_CONNECT_TIMEOUT if timeout is None else timeout
        self._pending: deque[Incoming] = deque()
        self._connection: Connection | None = None
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
        if self.multi:
            return decode_multi(incoming, self._adapter, self.url)
        return decode(incoming, self._adapter, self.url)

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
            except Ended as ended:
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

    async def _lost(self, connection: Connection, ended: Ended) -> None:
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

    async def _connect(self) -> Connection | None:
        """Open a connection, retrying as long as that may help; ``None`` if the server
        says the stream is over. Raises :class:`ClientError` (and, with
        ``reconnect=False``, :class:`ConnectionFailed`)."""
        while True:
            if self._back_off:
                delay = backoff.delay(self.retry, self._failures, self._max_delay)
                logger.debug("%s: next attempt in %.3f s", self.url, delay)
                # aclose() (from another task) ends the wait at once.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), delay)
            if self._done:
                return None
            self._back_off = True
            try:
                if self.transport == "sse":
                    connection: Connection | None = await self._open_sse()
                else:
                    connection = await self._open_websocket()
            except Retryable as failed:
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

    async def _open_sse(self) -> SSEConnection | None:
        require(_EXTRA, "httpx", needed_by="the SSE transport of tornadose.client")
        import httpx

        if self._done:
            return None
        if self._http is None:
            timeout = httpx.Timeout(self._connect_timeout, read=self._timeout)
            self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=True)
        return await SSEConnection.open(
            self._http, self.url, self._headers, self.last_event_id, self._connect_timeout
        )

    async def _open_websocket(self) -> WebSocketConnection | None:
        require(_EXTRA, "websockets", needed_by="the WebSocket transport of tornadose.client")
        url = self.url
        if self.last_event_id is not None:
            url = with_last_event_id(url, self.last_event_id)
        return await WebSocketConnection.open(
            url, self._headers, self.last_event_id, self._connect_timeout, self._timeout
        )
