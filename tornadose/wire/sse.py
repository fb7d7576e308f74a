"""The Server-Sent Events wire format, as pure functions (no I/O).

Follows the WHATWG HTML standard, section "Server-sent events". Guarantees:

* Any text survives the trip: ``data`` is split on CR, LF and CRLF into one
  ``data:`` line each, and every line is written as ``data: <line>`` with one space,
  so a value that starts with a space, ends with a newline or contains blank lines
  is rebuilt exactly by a conforming client.
* No text can inject fields or events: ``id`` and ``event`` values containing CR,
  LF or NUL are refused with :class:`InvalidField`; ``retry`` must be a
  non-negative integer.
* Output is UTF-8 without a byte order mark.
"""

from __future__ import annotations

import re

__all__ = [
    "HEARTBEAT",
    "RESPONSE_HEADERS",
    "InvalidField",
    "check_field",
    "encode_event",
    "encode_retry",
]

#: Headers every SSE response carries, sent as soon as the stream opens.
#: ``X-Accel-Buffering: no`` stops nginx from buffering the stream.
RESPONSE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Cache-Control", "no-cache"),
    ("X-Accel-Buffering", "no"),
)

#: The comment written on an idle stream so proxies and clients see it is alive.
#: A comment dispatches no event in a browser.
HEARTBEAT = b": heartbeat\n\n"

_NEWLINE = re.compile(r"\r\n|\r|\n")
_FORBIDDEN_IN_FIELD = re.compile(r"[\r\n\x00]")


class InvalidField(ValueError):
    """An ``id``, ``event`` or ``retry`` value would break the event stream framing."""


def check_field(name: str, value: str) -> str:
    """Return ``value`` if it is safe as the value of SSE field ``name``.

    Raises :class:`InvalidField` if it contains CR, LF or NUL (written out, such a
    value would end the field early and let its remainder be read as new fields) or
    cannot be encoded as UTF-8 (lone surrogates).
    """
    if _FORBIDDEN_IN_FIELD.search(value):
        raise InvalidField(f"SSE {name!r} must not contain CR, LF or NUL: {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidField(f"SSE {name!r} must be encodable as UTF-8: {value!r}") from exc
    return value


def encode_event(
    data: str,
    *,
    id: str | None = None,  # noqa: A002 - the field's name in the SSE spec
    event: str | None = None,
    retry: int | None = None,
) -> bytes:
    """Encode one event. A conforming client dispatches it with exactly ``data``.

    Raises :class:`InvalidField` for an unsafe ``id``/``event``/``retry`` and
    :class:`UnicodeEncodeError` for text that is not encodable as UTF-8 (lone
    surrogates).
    """
    parts: list[str] = []
    if event is not None:
        parts.append(f"event: {check_field('event', event)}\n")
    if id is not None:
        parts.append(f"id: {check_field('id', id)}\n")
    if retry is not None:
        parts.append(_retry_line(retry))
    if "\n" in data or "\r" in data:
        for line in _NEWLINE.split(data):
            parts.append(f"data: {line}\n")
    else:
        parts.append(f"data: {data}\n")
    parts.append("\n")
    return "".join(parts).encode("utf-8")


def encode_retry(milliseconds: int) -> bytes:
    """Encode a lone ``retry:`` hint: how long a client waits before reconnecting."""
    return _retry_line(milliseconds).encode("ascii") + b"\n"


def _retry_line(milliseconds: int) -> str:
    if isinstance(milliseconds, bool) or not isinstance(milliseconds, int) or milliseconds < 0:
        raise InvalidField(f"SSE 'retry' must be a non-negative integer: {milliseconds!r}")
    return f"retry: {milliseconds}\n"
