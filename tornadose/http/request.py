"""Reading a request, the same way for every adapter (no I/O here).

Adapters hand over what their framework parsed (header pairs, the raw query
string, body chunks); these functions turn it into what the decisions of
:mod:`tornadose.http` need.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import parse_qs

__all__ = ["event_from_query", "joined_headers", "last_event_id_from"]


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
