"""The entries a ``RedisBackend`` judged last, kept so that replays share their messages.

A backend decodes and validates every entry its reader delivers. Without this cache a
replay would do it again for every resuming client, and hand each one a copy of every
message to encode again (a :class:`~tornadose.core.message.Message` caches its
encodings, so sharing the object is what makes a replay cost a reference per
message). :class:`RecentEntries` keeps the last :attr:`RecentEntries.limit` entries
judged (delivered live or decoded for a replay), by entry id: the message of a valid
one, the verdict of an invalid one (so it is counted and logged once, not per replay).

It is a cache, never a second history (the stream is the history). What it serves is
exactly what decoding the entry again would give:

* it is only asked about entries a replay has just read from the stream, so it never
  serves an entry the stream no longer has;
* an entry is served only if the entry read now has the same id and the same
  ``data`` and ``event`` fields as the one that was decoded (a stream deleted and
  filled again can reuse an id, with other content);
* it is emptied (:meth:`RecentEntries.invalidate`, which starts a new
  :attr:`RecentEntries.generation`) whenever what the backend read may not continue
  the stream any more: a reset or data loss its reader reports, and whenever the
  backend stops reading or starts reading anew (detach, a new reader). A replay whose
  query was sent before an invalidation neither reads nor fills it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tornadose.backends.redis.layout import entry_content
from tornadose.core.message import Message

__all__ = ["RECENT_LIMIT", "Known", "RecentEntries"]

#: Entries a backend keeps at most (fewer if its ``history`` is shorter).
RECENT_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Known:
    """An entry judged: its raw ``data`` and ``event`` fields, and its message
    (``None``: the entry is invalid, and was counted and logged when judged)."""

    data: Any
    event: Any
    message: Message | None


class RecentEntries:
    """The last ``limit`` entries a backend judged, by entry id, least recently used
    dropped first (see the module docstring)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.limit = limit
        #: Counts invalidations: a replay uses the cache only within one generation.
        self.generation = 0
        #: Lookups answered from the cache.
        self.hits = 0
        #: Lookups that were not (unknown id, or other fields).
        self.misses = 0
        self._known: OrderedDict[str, Known] = OrderedDict()

    def __len__(self) -> int:
        return len(self._known)

    def lookup(self, entry_id: str, fields: Mapping[Any, Any]) -> Known | None:
        """What was judged of entry ``entry_id`` if it had these ``fields``, else ``None``."""
        known = self._known.get(entry_id)
        if known is None or (known.data, known.event) != entry_content(fields):
            self.misses += 1
            return None
        self._known.move_to_end(entry_id)
        self.hits += 1
        return known

    def remember(self, entry_id: str, fields: Mapping[Any, Any], message: Message | None) -> None:
        """Keep the verdict on entry ``entry_id`` (``message``, ``None`` if invalid)."""
        data, event = entry_content(fields)
        self._known[entry_id] = Known(data, event, message)
        self._known.move_to_end(entry_id)
        while len(self._known) > self.limit:
            self._known.popitem(last=False)

    def invalidate(self) -> None:
        """Forget everything, and start a new :attr:`generation`."""
        self._known.clear()
        self.generation += 1

    def __repr__(self) -> str:
        return (
            f"<RecentEntries {len(self)}/{self.limit} generation={self.generation} "
            f"hits={self.hits} misses={self.misses}>"
        )
