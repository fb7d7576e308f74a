"""What :class:`~tornadose.client.EventStream` needs of a transport: one connection
that reads events until it ends, and the two ways a connection attempt or a
connection can fail."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from tornadose.client.events import ClientError

__all__ = [
    "MAX_ERROR_BODY",
    "UNDECODED",
    "Connection",
    "Ended",
    "Incoming",
    "Retryable",
    "being_cancelled",
    "describe",
]

#: How much of an error response's body :class:`ClientError` keeps, in bytes.
MAX_ERROR_BODY = 64 * 1024
#: :attr:`Incoming.value` of an event whose payload is still text only.
UNDECODED: Any = object()


@dataclass(frozen=True, slots=True)
class Incoming:
    """An event as received, before its payload is decoded."""

    event: str | None  # None for the default type
    id: str | None  # the last event id in effect after it
    text: str
    value: Any = UNDECODED  # WebSocket: the frame's decoded "data"
    problem: str | None = None  # why this is not a tornadose frame


class Ended(Exception):
    """The connection ended. ``error``: why, when it broke rather than ended."""

    def __init__(
        self, description: str, *, error: BaseException | None = None, final: bool = False
    ) -> None:
        super().__init__(description)
        self.error = error
        #: The server said the stream is over: do not reconnect.
        self.final = final


class Retryable(Exception):
    """A connection attempt failed in a way that may fix itself."""

    def __init__(self, description: str, status_error: ClientError | None = None) -> None:
        super().__init__(description)
        self.status_error = status_error


class Connection(Protocol):
    """One open connection of a transport."""

    #: The server's reconnection time in milliseconds (SSE ``retry``), if any.
    retry: int | None

    async def read(self) -> list[Incoming]:
        """The next events (maybe none); raises :class:`Ended` at the end."""
        ...

    async def aclose(self) -> None:
        """Close the connection (idempotent)."""
        ...


def being_cancelled() -> bool:
    """Whether the current task is being cancelled."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def describe(exc: BaseException) -> str:
    """``exc`` in a log line: its type, and its message if it has one."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
