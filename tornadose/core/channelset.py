"""Sets of channels on one connection: patterns and the set's cursor (no I/O here).

**Patterns.** A channel name is split on ``.`` into segments (``plant-3.boiler.temp``
has three). A pattern is such a name in which a whole segment may be a wildcard:

* ``*`` matches exactly one segment, whatever it holds: ``sensors.*`` matches
  ``sensors.a`` and ``sensors.b``, not ``sensors`` nor ``sensors.a.b``;
* ``**``, only as the last segment, matches one or more segments: ``sensors.**``
  matches ``sensors.a`` and ``sensors.a.b``, not ``sensors``.

Every other segment matches itself only (case-sensitive). A channel name may hold an
empty segment (``a..b``, ``a.``): ``*`` matches it like any other segment. A
wildcard inside a segment (``sens*``) is not a pattern and is refused, and so is a
pattern of more than :data:`MAX_PATTERN_SEGMENTS` segments or
:data:`MAX_PATTERN_WILDCARDS` wildcards, or longer than :data:`MAX_PATTERN_LENGTH`
characters. Matching is linear in the segments: a pattern costs nothing per message,
only a comparison per declared channel when a connection opens or a channel is
declared.

**The cursor.** One connection's position in every channel of its set, as one
string short enough for an SSE ``id:`` (hence ``Last-Event-ID``) and a URL: the
version, a dot, then the URL-safe base64 (no padding) of the JSON object
``{"<channel>": "<id of the last message delivered from it>", ...}``. Above
:data:`COMPRESS_ABOVE` bytes of JSON the version is ``1z`` and the JSON is deflated
first (names sharing prefixes, and ids sharing their leading digits, compress): 64
channels of about 20 characters with Redis entry ids stay under 3 KB. An empty id
means "subscribed, but no position known" (nothing delivered from it, and the store
had none to give): resuming it is an explicit reset. A set's names may hold at most
:data:`CURSOR_NAMES_BUDGET` bytes (6 more per channel) so its cursor always fits
(:func:`encode_cursor` empties the longest positions if needed).
:func:`decode_cursor` refuses (``MalformedCursor``, which the HTTP layer answers
``400``) anything else: an unknown version, bad base64 or JSON, a
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
    "CURSOR_NAMES_BUDGET",
    "MAX_CURSOR_CHANNELS",
    "MAX_CURSOR_JSON",
    "MAX_CURSOR_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_PATTERN_LENGTH",
    "MAX_PATTERN_SEGMENTS",
    "MAX_PATTERN_WILDCARDS",
    "InvalidPattern",
    "MalformedCursor",
    "Pattern",
    "cursor_names_fit",
    "decode_cursor",
    "encode_cursor",
    "is_channel_name",
    "matching",
]

#: The characters of a channel name (see :func:`is_channel_name`).
CHANNEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: The longest channel name (characters).
MAX_NAME_LENGTH = 200
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
#: The most bytes of channel names one cursor may hold, counting 6 per channel (its
#: quotes, colon, empty position and comma): such a set's cursor fits
#: :data:`MAX_CURSOR_LENGTH` whatever its positions (see :func:`encode_cursor`). The
#: HTTP layer refuses a channel that would exceed it (``too_many_channels``).
CURSOR_NAMES_BUDGET = (MAX_CURSOR_LENGTH - 3) * 3 // 4 - 64

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


def is_channel_name(name: str) -> bool:
    """Whether ``name`` is a channel name: letters, digits, ``_``, ``.`` and ``-``,
    starting with a letter or digit, at most :data:`MAX_NAME_LENGTH` characters (the
    rule of :meth:`Channels.add <tornadose.http.channels.Channels.add>` and of a
    cursor's names)."""
    return len(name) <= MAX_NAME_LENGTH and CHANNEL_NAME.fullmatch(name) is not None


def cursor_names_fit(names: Iterable[str]) -> bool:
    """Whether a set of channels ``names`` has a cursor that always fits (see
    :data:`CURSOR_NAMES_BUDGET`)."""
    return sum(len(name) + 6 for name in names) + 2 <= CURSOR_NAMES_BUDGET


def matching(patterns: Iterable[Pattern], name: str) -> bool:
    """Whether any of ``patterns`` matches channel ``name``."""
    return any(pattern.matches(name) for pattern in patterns)


def encode_cursor(positions: Mapping[str, str]) -> str:
    """The cursor of ``positions`` (``{channel: last id, or ""}``), see the module
    docstring. Entries are written in sorted order, so equal sets give equal text.

    The cursor always decodes (:func:`decode_cursor`) when the names are channel
    names, at most :data:`MAX_CURSOR_CHANNELS`, that fit
    :data:`CURSOR_NAMES_BUDGET`, and the ids are at most :data:`MAX_ID_LENGTH`
    characters without CR, LF or NUL: should it exceed :data:`MAX_CURSOR_LENGTH`,
    the longest positions are written empty until it fits (each such channel then
    resumes with an explicit ``unknown_position`` reset, never a silent gap).
    ``ValueError`` if the names alone do not fit."""
    ordered = dict(sorted(positions.items()))
    cursor = _encode(ordered)
    if len(cursor) <= MAX_CURSOR_LENGTH:
        return cursor
    if not cursor_names_fit(ordered):
        raise ValueError(
            f"the names of {len(ordered)} channels do not fit a cursor "
            f"({CURSOR_NAMES_BUDGET} bytes at most, 6 more per channel)"
        )
    # Without compression, names with empty positions fit: blank the longest
    # positions until the uncompressed JSON does (it then fits compressed too).
    size = len(json.dumps(ordered, separators=(",", ":")).encode("utf-8"))
    for name in sorted(ordered, key=lambda n: len(json.dumps(ordered[n])), reverse=True):
        if size <= CURSOR_NAMES_BUDGET:
            break
        size -= len(json.dumps(ordered[name]).encode("utf-8")) - 2
        ordered[name] = ""
    return _encode(ordered)


def _encode(positions: Mapping[str, str]) -> str:
    text = json.dumps(positions, separators=(",", ":"))
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
        if not is_channel_name(name):
            raise MalformedCursor(f"cursor names {name[:40]!r}, which is not a channel name")
        if not isinstance(position, str) or len(position) > MAX_ID_LENGTH:
            raise MalformedCursor(f"cursor's position of {name!r} is not an id")
        if any(c in position for c in "\r\n\0"):
            raise MalformedCursor(f"cursor's position of {name!r} holds CR, LF or NUL")
    return positions
