"""Message ids, bounded history, and what a reconnecting client gets (no I/O here).

Every message a store publishes has an id ``"<epoch>-<offset>"``: the offset counts
up from 1 within a store, the epoch is random per store object, so an id from
before a restart (or from another store) is never taken for one of ours.

A store keeps the most recent messages in a :class:`History`, bounded by count and,
optionally, by age. A client that reconnects with the id of the last message it saw
(``Last-Event-ID``) gets a :class:`Resume`:

* ``RESUMED``: every message after that id is still in the history; they are
  replayed in order, then live messages follow. No duplicate, no gap.
* ``RESET``: the gap cannot be filled (the id is malformed, from another epoch, newer
  than anything published, or older than the history reaches); the client is told
  so explicitly (a ``tornadose.reset`` event) and then gets live messages. Never a
  silent gap.
* ``LIVE``: the client sent no id; it gets live messages only.

The stream of a client that sent an id starts with a control message saying which
of these happened (:func:`control_message`), so even a browser, which cannot read
response headers, learns where replay started.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tornadose.core.message import Message
from tornadose.core.reasons import ResetReason, ResumeStatus

__all__ = [
    "MAX_ID_LENGTH",
    "RESET_EVENT",
    "RESUMED_EVENT",
    "History",
    "MessageId",
    "Resume",
    "control_message",
    "plan_resume",
]

#: The SSE event type (and WebSocket ``"event"``) of the reset signal.
RESET_EVENT = "tornadose.reset"
#: The SSE event type (and WebSocket ``"event"``) saying a resume succeeded.
RESUMED_EVENT = "tornadose.resumed"
#: Longer ``Last-Event-ID`` values are malformed, whatever they contain.
MAX_ID_LENGTH = 128

_ID = re.compile(r"([0-9a-f]{1,32})-([1-9][0-9]{0,18})")


@dataclass(frozen=True, slots=True)
class MessageId:
    """A parsed message id: the store's epoch and the message's offset."""

    epoch: str
    offset: int

    @classmethod
    def parse(cls, text: str) -> MessageId | None:
        """Parse ``"<epoch>-<offset>"``; ``None`` if ``text`` is not such an id."""
        if len(text) > MAX_ID_LENGTH:
            return None
        match = _ID.fullmatch(text)
        return None if match is None else cls(match[1], int(match[2]))

    def __str__(self) -> str:
        return f"{self.epoch}-{self.offset}"


@dataclass(frozen=True, slots=True)
class Resume:
    """How a subscription starts: what is replayed, and what the client is told."""

    status: ResumeStatus
    #: The id the client sent (``None`` for ``LIVE``).
    last_event_id: str | None = None
    #: The messages replayed before live ones, in order.
    replay: Sequence[Message] = ()
    #: Why the gap could not be filled (``RESET`` only).
    reason: ResetReason | None = None
    #: The id a ``tornadose.reset`` event carries: the last message the client will
    #: not get after it (the newest one, unless the store sends it again, as a
    #: ``DataStore`` does with its current value). ``None``: no such message.
    reset_id: str | None = None
    #: For a resume answered asynchronously (see
    #: :meth:`~tornadose.core.backend.Backend.resume`): live messages for which this is
    #: true were fed while the answer was fetched but are already in the replay (or
    #: were seen by the client), so they are not delivered again. ``None``: none.
    skip: Callable[[Message], bool] | None = field(default=None, compare=False)


class History:
    """The most recent messages of a store, bounded by count and optionally by age.

    ``max_messages`` 0 keeps nothing. With ``max_age`` (seconds), messages older than
    that are dropped too, checked whenever the history is read or appended to.
    """

    __slots__ = ("_clock", "_entries", "max_age", "max_messages")

    def __init__(
        self,
        max_messages: int,
        max_age: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_messages < 0:
            raise ValueError(f"history must not be negative, not {max_messages}")
        if max_age is not None and max_age <= 0:
            raise ValueError(f"history_max_age must be positive, not {max_age}")
        self.max_messages = max_messages
        self.max_age = max_age
        self._clock = clock
        self._entries: deque[tuple[float, int, Message]] = deque()

    def __len__(self) -> int:
        self._expire()
        return len(self._entries)

    def append(self, offset: int, message: Message) -> None:
        """Remember ``message``, published with ``offset``."""
        if self.max_messages == 0:
            return
        self._entries.append((self._clock(), offset, message))
        if len(self._entries) > self.max_messages:
            self._entries.popleft()
        self._expire()

    def after(self, offset: int, latest: int) -> list[Message] | None:
        """Every message after ``offset`` up to ``latest``, or ``None`` if some of them
        are no longer kept."""
        if offset >= latest:
            return []
        self._expire()
        entries = self._entries
        if not entries or entries[0][1] > offset + 1:
            return None
        start = offset + 1 - entries[0][1]
        return [entries[i][2] for i in range(start, len(entries))]

    def _expire(self) -> None:
        if self.max_age is None:
            return
        horizon = self._clock() - self.max_age
        entries = self._entries
        while entries and entries[0][0] < horizon:
            entries.popleft()


def plan_resume(last_event_id: str | None, *, epoch: str, latest: int, history: History) -> Resume:
    """Decide how a subscriber that last saw ``last_event_id`` starts."""
    if last_event_id is None:
        return Resume(ResumeStatus.LIVE)

    def reset(reason: ResetReason) -> Resume:
        reset_id = f"{epoch}-{latest}" if latest else None
        return Resume(ResumeStatus.RESET, last_event_id, reason=reason, reset_id=reset_id)

    parsed = MessageId.parse(last_event_id)
    if parsed is None:
        return reset(ResetReason.MALFORMED_ID)
    if parsed.epoch != epoch:
        return reset(ResetReason.UNKNOWN_EPOCH)
    if parsed.offset > latest:
        return reset(ResetReason.UNKNOWN_ID)
    replay = history.after(parsed.offset, latest)
    if replay is None:
        return reset(ResetReason.HISTORY_TOO_SHORT)
    return Resume(ResumeStatus.RESUMED, last_event_id, replay=replay)


def control_message(resume: Resume) -> Message | None:
    """The message that opens the stream of a client that sent an id, else ``None``.

    ``tornadose.resumed`` carries ``{"after": <the client's id>, "replayed": n}`` and,
    as its own id, the client's id;
    ``tornadose.reset`` carries ``{"reason": ..., "last_event_id": <the client's id>}``
    and, as its own id, the last id the client will not get after it (see
    :attr:`Resume.reset_id`), so a client that reconnects again resumes from there
    instead of asking for the same gap.
    """
    if resume.status is ResumeStatus.RESUMED:
        data = {"after": resume.last_event_id, "replayed": len(resume.replay)}
        # Its id is the client's own: a client that drops right after it still
        # resumes from there, whatever its SSE parser does with id-less events.
        return Message(data, id=resume.last_event_id, event=RESUMED_EVENT)
    if resume.status is ResumeStatus.RESET:
        assert resume.reason is not None
        echoed = (resume.last_event_id or "")[:MAX_ID_LENGTH]
        data = {"reason": resume.reason.value, "last_event_id": echoed}
        return Message(data, id=resume.reset_id, event=RESET_EVENT)
    return None
