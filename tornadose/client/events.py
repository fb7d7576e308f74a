"""What a caller of :mod:`tornadose.client` gets: events, and the errors it may raise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tornadose.core.errors import MessageValidationError, TornadoseError
from tornadose.core.history import RESET_EVENT, RESUMED_EVENT

__all__ = [
    "CONTROL_EVENTS",
    "ClientError",
    "ConnectionFailed",
    "ControlEvent",
    "Event",
    "InvalidMessage",
]

T = TypeVar("T")

#: The event types of tornadose's control events, yielded as :class:`ControlEvent`.
#: (Multi-channel streams also open with ``tornadose.subscribed`` and report refused
#: channels with ``tornadose.refused``: see :mod:`tornadose.http.multi`; channels
#: declared with ``presence_events=True`` send ``tornadose.presence``.)
CONTROL_EVENTS = frozenset(
    {
        RESUMED_EVENT,
        RESET_EVENT,
        "tornadose.subscribed",
        "tornadose.refused",
        "tornadose.presence",
    }
)


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
    #: (Multi-channel streams, :func:`~tornadose.client.subscribe_many`) the channel
    #: it came from (``None`` for ``tornadose.subscribed``, which is the whole
    #: set's); ``id`` is then the connection's cursor, and ``channel_id`` the
    #: message's id in its channel.
    channel: str | None = None
    channel_id: str | None = None


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
