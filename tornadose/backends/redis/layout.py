"""How a channel lives in Redis, and the decisions that read it (no I/O here).

A :class:`~tornadose.backends.redis.store.RedisStore` channel is two Redis keys:

* the **stream** ``<channel>`` (a Redis Stream): one entry per message, added with
  ``XADD <channel> MAXLEN ~ <cap> * data <json> [event <name>]``, and trimmed by
  age (:data:`TRIM`). The entry id
  (``<milliseconds>-<sequence>``) is the message id clients see and resume from.

  ========  ========  ==================================================================
  field     required  value
  ========  ========  ==================================================================
  ``data``  yes       the payload as JSON text (UTF-8): an object, array, number,
                      string, ``true``/``false`` or ``null``; a text message is a JSON
                      string (``"hello"`` goes out over SSE as ``hello``)
  ``event`` no        the SSE event name (UTF-8, no CR, LF or NUL)
  ========  ========  ==================================================================

  Other fields are ignored. Any program can publish this way; its entries are
  validated like ``submit()`` ones, and an invalid entry is skipped, counted and
  logged (:func:`decode_entry`).

* the **floor** ``<channel>:floor`` (on a Redis Cluster ``{<channel>}:floor``, in
  the stream's hash slot, unless the name has a hash tag already: :func:`floor_key`):
  the id below which no entry of the current
  stream can be. It is set, if missing, whenever a tornadose process starts reading
  or publishes (:data:`ENSURE_FLOOR`, sent ahead of every batch of ``XADD``). If
  Redis loses its data (a restart without persistence), the floor goes too, and the
  next one is newer than every id handed out before: an id below the floor is from a
  lost generation, and a client resuming with it gets the explicit reset signal,
  never a silent gap.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic_core

from tornadose.core.errors import MessageValidationError, UnencodableMessage
from tornadose.core.message import Message
from tornadose.core.reasons import ResetReason
from tornadose.wire.sse import InvalidField

__all__ = [
    "ENSURE_FLOOR",
    "FLOOR_SUFFIX",
    "RAISE_FLOOR",
    "TRIM",
    "ZERO",
    "Continuity",
    "InvalidEntry",
    "StreamId",
    "continuity",
    "decode_entry",
    "entry_content",
    "entry_fields",
    "floor_key",
    "hash_tag",
    "live_gap",
    "replay_gap",
]

#: The floor key of a channel is the channel's name followed by this.
FLOOR_SUFFIX = ":floor"

_FLOOR_LUA = """
local floor = redis.call('GET', KEYS[2])
if not floor then
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  if first[1] then
    floor = first[1][1]
  else
    local now = redis.call('TIME')
    floor = now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000)) .. '-0'
  end
  redis.call('SET', KEYS[2], floor)
end
"""

#: Lua: return the floor of stream ``KEYS[1]`` (floor key ``KEYS[2]``), setting it
#: first if missing: to the stream's first entry if it has one, else to now.
ENSURE_FLOOR = _FLOOR_LUA + "return floor\n"


#: Lua: trim stream ``KEYS[1]``, keeping every entry younger than ``ARGV[2]``
#: milliseconds (by Redis's clock) and, whatever their age, the newest ``ARGV[1]``:
#: when at least ``ARGV[1]`` entries are younger than that, ``XTRIM MINID ~`` drops only
#: older ones; otherwise ``XTRIM MAXLEN ~ ARGV[1]`` drops only entries that are both
#: older and beyond the newest ``ARGV[1]``. Returns the number of entries removed.
TRIM = """
local keep = tonumber(ARGV[1])
if redis.call('XLEN', KEYS[1]) <= keep then return 0 end
local now = redis.call('TIME')
local minid = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[2])
if minid < 0 then minid = 0 end
minid = string.format('%.0f', minid) .. '-0'
local young = redis.call('XRANGE', KEYS[1], minid, '+', 'COUNT', keep)
if #young >= keep then
  return redis.call('XTRIM', KEYS[1], 'MINID', '~', minid)
end
return redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', keep)
"""


#: Lua: set the floor ``KEYS[1]`` to ``ARGV[1]`` unless it is already at or above it;
#: returns the floor. Raising the floor past entries Redis lost makes every resume from
#: before them a reset, on every process.
RAISE_FLOOR = """
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local floor = redis.call('GET', KEYS[1])
if floor then
  local fm, fs = parse(floor)
  local nm, ns = parse(ARGV[1])
  if fm and (fm > nm or (fm == nm and fs >= ns)) then
    return floor
  end
end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""


def hash_tag(key: str) -> str | None:
    """The hash tag of ``key`` (what Redis Cluster hashes instead of the whole key:
    the text between its first ``{`` and the first ``}`` after it, if not empty)."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    if end < 0 or end == start + 1:
        return None
    return key[start + 1 : end]


def floor_key(channel: str, *, cluster: bool = False) -> str:
    """The floor key of ``channel``: ``<channel>:floor`` on a single Redis; on a Redis
    Cluster a key in the stream's hash slot: the same if the channel's name has a
    hash tag (``{app}:ticks`` -> ``{app}:ticks:floor``), else ``{<channel>}:floor``.
    Raises ``ValueError`` for a cluster channel whose floor cannot share its slot (a
    name with ``}`` but no hash tag)."""
    if not cluster or hash_tag(channel) is not None:
        return channel + FLOOR_SUFFIX
    if "}" in channel:
        suggestion = "{" + channel.replace("}", "") + "}"
        raise ValueError(
            f"on a Redis Cluster the channel {channel!r} needs a hash tag (a name with "
            f"'}}' but no hash tag cannot have its floor key in its hash slot): name "
            f"it {suggestion!r}, say"
        )
    return "{" + channel + "}" + FLOOR_SUFFIX


_STREAM_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_MAX_PART = 2**64 - 1


@dataclass(frozen=True, order=True, slots=True)
class StreamId:
    """A Redis Stream entry id ``<milliseconds>-<sequence>``, ordered as Redis orders them."""

    ms: int
    seq: int

    @classmethod
    def parse(cls, text: str | bytes) -> StreamId | None:
        """Parse an entry id; ``None`` if ``text`` is not one."""
        if isinstance(text, bytes):
            try:
                text = text.decode("ascii")
            except UnicodeDecodeError:
                return None
        match = _STREAM_ID.fullmatch(text)
        if match is None:
            return None
        ms, seq = int(match[1]), int(match[2])
        if ms > _MAX_PART or seq > _MAX_PART:
            return None
        return cls(ms, seq)

    def after(self) -> StreamId:
        """The least id above this one."""
        if self.seq < _MAX_PART:
            return StreamId(self.ms, self.seq + 1)
        return StreamId(self.ms + 1, 0)

    def before(self) -> StreamId:
        """The greatest id below this one (``ZERO`` stays ``ZERO``)."""
        if self.seq > 0:
            return StreamId(self.ms, self.seq - 1)
        return StreamId(self.ms - 1, _MAX_PART) if self.ms > 0 else self

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"


#: The id before every entry (Redis's ``0-0``).
ZERO = StreamId(0, 0)


def entry_fields(message: Message) -> list[str]:
    """The field/value list of the stream entry for ``message`` (see the module docstring)."""
    fields = ["data", message.json]
    if message.event is not None:
        fields += ["event", message.event]
    return fields


class InvalidEntry(ValueError):
    """A stream entry that is not a valid message of the channel (it is skipped)."""


def _field(fields: Mapping[Any, Any], name: str) -> Any:
    value = fields.get(name.encode())
    return fields.get(name) if value is None else value


def entry_content(fields: Mapping[Any, Any]) -> tuple[Any, Any]:
    """The raw ``data`` and ``event`` fields of an entry (``None`` where missing): all
    that :func:`decode_entry` reads besides the id."""
    return _field(fields, "data"), _field(fields, "event")


def decode_entry(
    entry_id: str | bytes, fields: Mapping[Any, Any], validate: Callable[[Any], Any]
) -> Message:
    """The :class:`Message` a stream entry holds, validated with ``validate``.

    Raises :class:`InvalidEntry`, saying why, for an entry without ``data``, with
    ``data`` that is not UTF-8 JSON, with an ``event`` that is not valid UTF-8 or
    holds CR, LF or NUL, or whose payload ``validate`` refuses.
    """
    text_id = entry_id.decode("ascii") if isinstance(entry_id, bytes) else entry_id
    data = _field(fields, "data")
    if data is None:
        raise InvalidEntry(f"entry {text_id} has no 'data' field")
    try:
        payload = pydantic_core.from_json(data, allow_inf_nan=False)
    except ValueError as exc:
        raise InvalidEntry(f"entry {text_id}: 'data' is not JSON: {exc}") from exc
    event = _field(fields, "event")
    if isinstance(event, bytes):
        try:
            event = event.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEntry(f"entry {text_id}: 'event' is not UTF-8") from exc
    try:
        return Message(validate(payload), id=text_id, event=event or None)
    except MessageValidationError as exc:
        raise InvalidEntry(f"entry {text_id} does not match the schema: {exc.errors}") from exc
    except (InvalidField, UnencodableMessage) as exc:
        raise InvalidEntry(f"entry {text_id}: {exc}") from exc


def replay_gap(
    after: StreamId,
    replay: Sequence[StreamId],
    first_entry: StreamId | None,
    *,
    history: int,
    max_age_ms: int | None,
    now_ms: int,
) -> ResetReason | None:
    """Whether a client that last saw ``after`` can be replayed ``replay`` exactly.

    ``after`` is older than the entry this process's reader delivered last, so
    entries after it were published. ``replay`` holds the ids of the entries after
    ``after`` still in the stream (fetched with a limit of ``history + 1``),
    ``first_entry`` the stream's oldest entry, ``now_ms`` Redis's clock.

    ``None`` means exact. Otherwise the reason for the reset: more than ``history``
    entries missed; entries after ``after`` trimmed away (the stream is empty, or
    its oldest entry is newer than ``after``, so ``after`` itself is gone); or, with
    ``max_age_ms``, a missed entry older than that.
    """
    if len(replay) > history:
        return ResetReason.HISTORY_TOO_SHORT
    if first_entry is None or first_entry > after:
        return ResetReason.HISTORY_TOO_SHORT
    if max_age_ms is not None and replay and replay[0].ms < now_ms - max_age_ms:
        return ResetReason.HISTORY_TOO_SHORT
    return None


def live_gap(seq: int, entries_added: int, length: int) -> bool:
    """Whether entries a reader had not read yet were trimmed away.

    ``seq`` counts the entries ever added to the stream up to the reader's cursor
    (the last entry it read); ``entries_added`` and ``length`` are the stream's
    ``XINFO STREAM`` numbers, read atomically with the reader's next batch. Trimming
    removes the oldest entries first, so the ``entries_added - length`` removed ones
    are the first that many: entries were lost to this reader when that is more than
    it had read. (``XDEL`` of an entry it had not read yet counts as a loss too.)
    """
    return entries_added - length > seq


class Continuity(enum.Enum):
    """How a channel's stream relates to what a reader has read of it."""

    #: Nothing the reader had not read is gone: read on.
    INTACT = "intact"
    #: Entries it had not read yet were trimmed: reset its subscribers, read on.
    TRIMMED = "trimmed"
    #: Redis lost the stream (restarted without it, or it was deleted): reset, and
    #: read the new stream from its floor (no entry is below it).
    NEW_GENERATION = "new_generation"
    #: Another process raised the floor past entries Redis lost (a failover, a lost
    #: tail), but entries below the new floor are still there: reset, and read on
    #: from the cursor (nothing that exists is skipped).
    FLOOR_RAISED = "floor_raised"
    #: The newest entries are gone (Redis restored an older copy): reset, and raise
    #: the floor past the cursor so no client resumes across the hole.
    LOST_TAIL = "lost_tail"


def continuity(
    *,
    cursor: StreamId,
    seq: int | None,
    known_floor: StreamId | None,
    floor: StreamId | None,
    exists: bool,
    first: StreamId | None,
    newest: StreamId,
    entries_added: int,
    length: int,
) -> Continuity:
    """Judge a channel from its floor and ``XINFO STREAM``, read atomically with the
    reader's next batch. ``cursor`` is the last entry the reader read, ``seq`` how
    many entries were ever added up to it (``None``: unknown), ``known_floor`` the
    floor it last saw, ``first`` the stream's oldest entry (``None``: it has none).

    A floor that changed to above the cursor is a new generation when no entry of the
    stream is below it (a new stream's floor is at or below its first entry), and a
    floor raised by another process when entries below it remain; one that changed to
    at or below the cursor (the key was deleted and set again from the stream's first
    entry) is neither. A missing stream, after the reader read entries, is a new
    generation. A stream whose newest id is below the cursor, or that counts fewer
    entries than were read, lost its tail. Otherwise :func:`live_gap` decides.
    """
    if floor is not None and floor != known_floor and floor > cursor:
        if exists and first is not None and first < floor:
            return Continuity.FLOOR_RAISED
        return Continuity.NEW_GENERATION
    if not exists:
        read_some = cursor > ZERO or bool(seq)
        return Continuity.NEW_GENERATION if read_some else Continuity.INTACT
    if newest < cursor or (seq is not None and entries_added < seq):
        return Continuity.LOST_TAIL
    if seq is not None and live_gap(seq, entries_added, length):
        return Continuity.TRIMMED
    return Continuity.INTACT
