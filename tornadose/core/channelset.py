"""Sets of channels on one connection: patterns and the set's cursor (no I/O here).

**Patterns.** A channel name is split on ``.`` into segments (``plant-3.boiler.temp``
has three). A pattern is such a name in which a whole segment may be a wildcard:

* ``*`` matches exactly one segment, whatever it holds: ``sensors.*`` matches
  ``sensors.a`` and ``sensors.b``, not ``sensors`` nor ``sensors.a.b``;
* ``**``, only as the last segment, matches one or more segments: ``sensors.**``
  matches ``sensors.a`` and ``sensors.a.b``, not ``sensors``.

Every other segment matches itself only (case-sensitive); a wildcard inside a
segment (``sens*``) is not a pattern and is refused, and so is a pattern of more than
:data:`MAX_PATTERN_SEGMENTS` segments or :data:`MAX_PATTERN_WILDCARDS` wildcards, or
longer than :data:`MAX_PATTERN_LENGTH` characters. Matching is linear in the segments:
a pattern costs nothing per message, only a comparison per declared channel when a
connection opens or a channel is declared.

**The cursor.** One connection's position in every channel of its set, as one
string short enough for an SSE ``id:`` (hence ``Last-Event-ID``) and a URL: the
version, a dot, then the URL-safe base64 (no padding) of the JSON object
``{"<channel>": "<id of the last message delivered from it>", ...}``. Above
:data:`COMPRESS_ABOVE` bytes of JSON the version is ``1z`` and the JSON is deflated
first (channel ids of one store share their epoch, so they compress well): 64
channels with Redis entry ids stay under 3 KB. An empty id means "subscribed, but no
position known" (nothing delivered from it, and the store had none to give): resuming
it is an explicit reset. :func:`decode_cursor` refuses (``MalformedCursor``, which the
HTTP layer answers ``400``) anything else: an unknown version, bad base64 or JSON, a
non-object, more than :data:`MAX_CURSOR_CHANNELS` entries, a name that is not a
channel name, an id longer than 128 characters or holding CR, LF or NUL, a text
longer than :data:`MAX_CURSOR_LENGTH` or inflating beyond :data:`MAX_CURSOR_JSON`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tornadose.core.history import MAX_ID_LENGTH

__all__ = [
    "CHANNEL_NAME",
    "COMPRESS_ABOVE",
    "MAX_CURSOR_CHANNELS",
    "MAX_CURSOR_JSON",
    "MAX_CURSOR_LENGTH",
    "MAX_PATTERN_LENGTH",
    "MAX_PATTERN_SEGMENTS",
    "MAX_PATTERN_WILDCARDS",
    "InvalidPattern",
    "MalformedCursor",
    "Pattern",
    "decode_cursor",
    "encode_cursor",
    "matching",
]

#: What a channel name is (the rule of :meth:`Channels.add <tornadose.http.channels.Channels.add>`).
CHANNEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")

MAX_PATTERN_LENGTH = 200
MAX_PATTERN_SEGMENTS = 8
MAX_PATTERN_WILDCARDS = 4
#: The longest cursor accepted (characters): browsers send ``Last-Event-ID`` back
#: whole, and servers commonly limit a header to 8 KB.
MAX_CURSOR_LENGTH = 6000
#: The most JSON a cursor may inflate to (bytes), whatever it claims.
MAX_CURSOR_JSON = 64 * 1024
#: The most channels a cursor may name.
MAX_CURSOR_CHANNELS = 256
#: JSON longer than this (bytes) is deflated in the cursor.
COMPRESS_ABOVE = 256

_PLAIN, _DEFLATED = "1", "1z"


class InvalidPattern(ValueError):
    """A pattern that is not one (the message says why)."""


class MalformedCursor(ValueError):
    """A cursor that is not one this server could have made (the message says why)."""


@dataclass(frozen=True, slots=True)
class Pattern:
    """A parsed channel pattern (see the module docstring)."""

    text: str
    segments: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Pattern:
        """Parse ``text``; :class:`InvalidPattern` saying why it is not a pattern."""
        if not text:
            raise InvalidPattern("a pattern is empty")
        if len(text) > MAX_PATTERN_LENGTH:
            raise InvalidPattern(f"pattern longer than {MAX_PATTERN_LENGTH} characters")
        segments = tuple(text.split("."))
        if len(segments) > MAX_PATTERN_SEGMENTS:
            raise InvalidPattern(
                f"pattern {text!r} has {len(segments)} segments, more than {MAX_PATTERN_SEGMENTS}"
            )
        wildcards = sum(segment in ("*", "**") for segment in segments)
        if wildcards > MAX_PATTERN_WILDCARDS:
            raise InvalidPattern(
                f"pattern {text!r} has {wildcards} wildcards, more than {MAX_PATTERN_WILDCARDS}"
            )
        for index, segment in enumerate(segments):
            if segment == "**" and index != len(segments) - 1:
                raise InvalidPattern(f"in {text!r}, '**' may only be the last segment")
            if segment not in ("*", "**") and not _SEGMENT.fullmatch(segment):
                raise InvalidPattern(
                    f"in {text!r}, segment {segment!r} is neither '*', '**' nor letters, "
                    f"digits, '_' and '-' (no wildcard inside a segment)"
                )
        if not text[0].isalnum() and segments[0] not in ("*", "**"):
            raise InvalidPattern(f"pattern {text!r} must start as a channel name does")
        return cls(text, segments)

    def matches(self, name: str) -> bool:
        """Whether channel ``name`` is matched."""
        parts = name.split(".")
        pattern = self.segments
        if pattern[-1] == "**":
            if len(parts) < len(pattern):
                return False
            parts = parts[: len(pattern) - 1]
            pattern = pattern[:-1]
        elif len(parts) != len(pattern):
            return False
        return all(p == "*" or p == part for p, part in zip(pattern, parts, strict=True))

    @property
    def literal(self) -> bool:
        """Whether the pattern has no wildcard (it then matches one name only)."""
        return all(segment not in ("*", "**") for segment in self.segments)


def matching(patterns: Iterable[Pattern], name: str) -> bool:
    """Whether any of ``patterns`` matches channel ``name``."""
    return any(pattern.matches(name) for pattern in patterns)


def encode_cursor(positions: Mapping[str, str]) -> str:
    """The cursor of ``positions`` (``{channel: last id, or ""}``), see the module
    docstring. Entries are written in sorted order, so equal sets give equal text."""
    text = json.dumps(dict(sorted(positions.items())), separators=(",", ":"))
    raw = text.encode("utf-8")
    version = _PLAIN
    if len(raw) > COMPRESS_ABOVE:
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        raw = compressor.compress(raw) + compressor.flush()
        version = _DEFLATED
    return version + "." + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(text: str) -> dict[str, str]:
    """The positions a cursor holds; :class:`MalformedCursor` saying what is wrong."""
    if len(text) > MAX_CURSOR_LENGTH:
        raise MalformedCursor(f"cursor longer than {MAX_CURSOR_LENGTH} characters")
    version, dot, body = text.partition(".")
    if not dot or version not in (_PLAIN, _DEFLATED):
        raise MalformedCursor("not a multi-channel cursor (expected '1.' or '1z.' then base64)")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError) as exc:
        raise MalformedCursor(f"cursor is not URL-safe base64: {exc}") from None
    if version == _DEFLATED:
        inflater = zlib.decompressobj(-15)
        try:
            raw = inflater.decompress(raw, MAX_CURSOR_JSON)
        except zlib.error as exc:
            raise MalformedCursor(f"cursor does not inflate: {exc}") from None
        if inflater.unconsumed_tail or not inflater.eof:
            raise MalformedCursor(
                f"cursor inflates beyond {MAX_CURSOR_JSON} bytes, or is truncated"
            )
    try:
        positions = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise MalformedCursor(f"cursor does not hold JSON: {exc}") from None
    except RecursionError:
        raise MalformedCursor("cursor holds JSON nested too deeply to be a cursor") from None
    if not isinstance(positions, dict):
        raise MalformedCursor("cursor does not hold a JSON object")
    if len(positions) > MAX_CURSOR_CHANNELS:
        raise MalformedCursor(f"cursor names more than {MAX_CURSOR_CHANNELS} channels")
    for name, position in positions.items():
        if not CHANNEL_NAME.fullmatch(name) or len(name) > MAX_PATTERN_LENGTH:
            raise MalformedCursor(f"cursor names {name[:40]!r}, which is not a channel name")
        if not isinstance(position, str) or len(position) > MAX_ID_LENGTH:
            raise MalformedCursor(f"cursor's position of {name!r} is not an id")
        if any(c in position for c in "\r\n\0"):
            raise MalformedCursor(f"cursor's position of {name!r} holds CR, LF or NUL")
    return positions
