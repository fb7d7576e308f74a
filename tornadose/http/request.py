"""Reading a request, the same way for every adapter (no I/O here).

Adapters hand over what their framework parsed (header pairs, the raw query
string, body chunks); these functions turn it into what the decisions of
:mod:`tornadose.http` need.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import parse_qs

__all__ = ["BodyLimit", "event_from_query", "joined_headers", "last_event_id_from"]


def joined_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Request headers as ``{lower-case name: value}``; a repeated header's values are
    joined with ``", "`` in the order received (RFC 9110, section 5.3)."""
    headers: dict[str, str] = {}
    for raw_name, value in pairs:
        name = raw_name.lower()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def last_event_id_from(headers: Mapping[str, str], query: str) -> str | None:
    """The id a reconnecting client sent: the ``Last-Event-ID`` header, else the
    ``last_event_id`` query parameter (browsers cannot set headers on a first
    connection). The header wins: on an automatic reconnect a browser sends the
    newest id there, while the URL still holds the one it started with."""
    header = headers.get("last-event-id")
    if header:
        return header
    values = parse_qs(query).get("last_event_id")
    return values[0] if values else None


def event_from_query(query: str) -> str | None:
    """The ``event`` query parameter of a raw query string, exactly as sent.

    The first value counts; an empty value means no event name. Nothing is stripped
    or replaced, so a CR, LF or NUL reaches the field check and is refused.
    """
    values = parse_qs(query, keep_blank_values=True).get("event")
    return values[0] or None if values else None


class BodyLimit:
    """A request body read chunk by chunk, kept while it stays within ``limit`` bytes.

    Guarantees: :meth:`add` returns ``False`` from the first chunk that takes the
    total over ``limit`` on (the adapter then answers ``413`` and reads no further),
    and what was kept is dropped at once; :attr:`body` is every chunk, in order,
    while within the limit.
    """

    __slots__ = ("_chunks", "_size", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._chunks: list[bytes] = []
        self._size = 0

    @property
    def exceeded(self) -> bool:
        """Whether the body went over the limit."""
        return self._size > self.limit

    def add(self, chunk: bytes) -> bool:
        """Keep ``chunk``; whether the body is still within the limit."""
        self._size += len(chunk)
        if self.exceeded:
            self._chunks.clear()
            return False
        self._chunks.append(chunk)
        return True

    @property
    def body(self) -> bytes:
        """The body read so far (empty once over the limit)."""
        return b"".join(self._chunks)
