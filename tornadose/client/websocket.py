"""The WebSocket transport of :mod:`tornadose.client` (the ``websockets`` package):
each text frame is one tornadose message ``{"data": ..., "id": ..., "event": ...}``.

The id to resume after travels in the ``last_event_id`` query parameter
(:func:`with_last_event_id`). The close a tornadose server sends for a closed store
(``1001``, ``"store closed"``) says the stream is over; any other close is a
connection to replace. A frame that is not a tornadose message is passed on with
its problem, for the stream to raise.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote_plus, urlsplit, urlunsplit

import pydantic_core

from tornadose.client import backoff
from tornadose.client.connection import MAX_ERROR_BODY, Ended, Incoming, Retryable, describe
from tornadose.client.events import ClientError
from tornadose.core.reasons import CloseReason
from tornadose.delivery.close import close_code_for
from tornadose.wire.sse_parser import DEFAULT_EVENT

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

__all__ = ["WebSocketConnection", "with_last_event_id"]

#: The close frame a tornadose server sends when the store is closed: no reconnecting.
_STORE_CLOSED = close_code_for(CloseReason.STORE_CLOSED)


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


class WebSocketConnection:
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
    ) -> WebSocketConnection:
        """Connect to ``url`` (which already carries ``last_event_id``). Raises
        :class:`Retryable` or :class:`ClientError`, and :class:`ValueError` for a URL
        that is not a WebSocket one."""
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
            if backoff.retried(status):
                raise Retryable(f"answered {status}", error) from exc
            raise error from None
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            raise Retryable(describe(exc)) from exc
        return cls(ws, last_event_id)

    async def read(self) -> list[Incoming]:
        """The next frame's message; :class:`Ended` when the connection closes."""
        from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

        try:
            frame = await self.ws.recv()
        except ConnectionClosedOK as closed:
            received = closed.rcvd
            final = received is not None and (received.code, received.reason) == _STORE_CLOSED
            raise Ended(f"the server closed the connection ({closed})", final=final) from None
        except ConnectionClosed as closed:
            raise Ended(f"the connection broke ({closed})", error=closed) from None
        return [self._incoming(frame)]

    def _incoming(self, frame: str | bytes) -> Incoming:
        if isinstance(frame, bytes):
            return Incoming(None, self._last_event_id, repr(frame), problem="a binary frame")
        try:
            envelope = json.loads(frame)
        except ValueError:
            envelope = None
        if not isinstance(envelope, dict) or "data" not in envelope:
            problem = "not a JSON object with a 'data' member"
            return Incoming(None, self._last_event_id, frame, problem=problem)
        id_, event = envelope.get("id"), envelope.get("event")
        if not isinstance(id_, str | None) or not isinstance(event, str | None):
            problem = "its 'id' or 'event' is not a string"
            return Incoming(None, self._last_event_id, frame, problem=problem)
        cursor = envelope.get("cursor")
        if cursor is not None:  # a multi-channel frame: the envelope is the payload
            if not isinstance(cursor, str):
                problem = "its 'cursor' is not a string"
                return Incoming(None, self._last_event_id, frame, problem=problem)
            self._last_event_id = cursor
            value = {"channel": envelope.get("channel"), "id": id_, "data": envelope["data"]}
            kind = None if event in (None, DEFAULT_EVENT) else event
            return Incoming(kind, cursor, pydantic_core.to_json(value).decode(), value)
        if id_ is not None:
            self._last_event_id = id_
        value = envelope["data"]
        text = value if isinstance(value, str) else pydantic_core.to_json(value).decode()
        kind = None if event in (None, DEFAULT_EVENT) else event
        return Incoming(kind, self._last_event_id, text, value)

    async def aclose(self) -> None:
        """Close the connection (a close handshake, bounded by the timeout)."""
        await self.ws.close()
