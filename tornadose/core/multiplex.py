"""Several channels read as one stream: a multi-channel connection's subscriptions.

A :class:`Multiplex` registers one ordinary :class:`~tornadose.core.subscription.Subscription`
per channel with that channel's store (:meth:`~tornadose.core.store.BaseStore.register`,
with the position its cursor holds for the channel), and moves their messages, in
order, into one bounded :attr:`Multiplex.outlet`: a plain ``Subscription`` that the
delivery loops stream like any other. Each message leaves tagged with its channel and
with the connection's cursor (:meth:`~tornadose.core.message.Message.tagged`).

Guarantees:

* **Order within each channel**: a channel's messages reach the outlet in the
  store's order; messages of different channels interleave in arrival order.
* **Exact resume per channel**: each message's cursor holds, for every channel of
  the set, the id of the last message of that channel queued before it (or the
  store's :attr:`~tornadose.core.store.BaseStore.position` when the channel was
  joined with an empty queue, asked of a shared backend when its store does not
  know it, as when this connection is its only subscriber in the process;
  :data:`BEFORE_FIRST` for an in-memory channel that had published nothing; the
  id before the first message an in-memory store handed over on joining, such as
  a ``QueueStore``'s backlog, so a resume replays those messages too, or resets the
  channel if its history no longer holds them). A
  client resuming with the cursor of the last event it received gets, per
  channel, the store's ordinary resume: the missed messages then live ones (no
  gap, no duplicate), or that channel's ``tornadose.reset`` naming it, while the
  other channels resume. A channel for which the cursor holds no position gets a
  reset with reason ``unknown_position``.
* **Bounds per connection**: each channel's subscription keeps its store's bounds
  and overflow policy (replays excepted, as always); the outlet holds at most
  ``max_messages`` messages and ``max_bytes`` bytes, and a message is moved into
  it only while it is under half of either (the room is looked at before each
  message, at most :data:`MOVE_BATCH` at a time per channel; what does not fit stays
  in its channel's queue), so a slow client backs up into its channels' queues, whose
  policy applies (``disconnect`` cuts the whole connection as a slow consumer).
  The outlet's own bound (``DISCONNECT``) is a safety net. The write timeout
  applies to the outlet as to any stream.
* **One end**: closing the outlet (client gone, cut, shutdown) closes every channel
  subscription. A channel whose store closes is reported (a :data:`REFUSED_EVENT`
  with status ``503``, error ``store_closed``) after its queued messages, and the
  others go on; when none is left the outlet closes as a closed store. A channel
  subscription cut or deregistered by its store closes the outlet with the same
  reason, so nothing is silently left out.

Cost: one task per channel per connection, parked while the channel is idle, and one
cursor encoding per message per connection (the payload is encoded once for all).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable

from tornadose.core.channelset import encode_cursor
from tornadose.core.errors import StoreClosed, SubscriptionClosed
from tornadose.core.history import (
    RESET_EVENT,
    RESUMED_EVENT,
    Resume,
    control_message,
)
from tornadose.core.memory import MemoryBackend
from tornadose.core.message import Message
from tornadose.core.reasons import CloseReason, OverflowPolicy, ResetReason, ResumeStatus
from tornadose.core.store import BaseStore
from tornadose.core.subscription import StoreStats, Subscription

__all__ = [
    "BEFORE_FIRST",
    "MOVE_BATCH",
    "POSITION_TIMEOUT",
    "REFUSED_EVENT",
    "SUBSCRIBED_EVENT",
    "Multiplex",
]

logger = logging.getLogger("tornadose.multiplex")

#: The SSE event type (and WebSocket ``"event"``) reporting a channel of the set that
#: was refused (by the authorize hook, or a limit); its envelope's ``data`` is
#: ``{"status": <401|403|400>, "error": <code>, "detail": <why>}``.
REFUSED_EVENT = "tornadose.refused"
#: A cursor's position for an in-memory channel that had published nothing when it
#: was joined, before its epoch: ``"<epoch>-0"`` (the form a cursor holds). Resuming
#: it is live if the channel still has published nothing; its messages from the
#: first if its history still holds them (same epoch); else a reset
#: (``unknown_epoch`` after a restart, ``history_too_short``). The bare value
#: (cursors of 0.x multi-channel streams) is taken as the current epoch's.
BEFORE_FIRST = "0"
_BEFORE_FIRST = re.compile(r"([0-9a-f]{1,32})-0")
#: The SSE event type (and WebSocket ``"event"``) opening every multi-channel stream,
#: its envelope's ``channel`` null, ``data`` ``{"channels": [...], "patterns": [...]}``
#: (the channels joined, the patterns followed) and its id the cursor.
SUBSCRIBED_EVENT = "tornadose.subscribed"
#: The most messages moved from one channel into the outlet at a time (fewer when the
#: outlet reaches half its bounds).
MOVE_BATCH = 16
#: Seconds the :data:`SUBSCRIBED_EVENT` waits for a shared backend's position.
POSITION_TIMEOUT = 5.0
#: Seconds a channel waits before looking again at an outlet at least half full.
_BACKED_UP_POLL = 0.005


class Multiplex:
    """The channels of one connection, read as one outlet (see the module docstring).

    ``on_close`` is called once, when the outlet closes (the connection's end).
    Use from the event loop's thread; :meth:`add` needs a running loop."""

    def __init__(
        self,
        *,
        max_messages: int,
        max_bytes: int | None,
        on_close: Callable[[Multiplex], None] | None = None,
    ) -> None:
        #: Counters of the outlet (delivered, discarded, the connection's end).
        self.stats = StoreStats()
        #: What the connection's stream reads.
        self.outlet = Subscription(
            self,
            max_messages=max_messages,
            max_bytes=max_bytes,
            overflow=OverflowPolicy.DISCONNECT,
            stats=self.stats,
            on_close=self._outlet_closed,
        )
        self._on_close = on_close
        #: Each channel's position: the id of its last message queued in the outlet.
        self.positions: dict[str, str] = {}
        self._subscriptions: dict[str, tuple[BaseStore, Subscription]] = {}
        self._movers: set[asyncio.Task[None]] = set()
        #: Channels whose position is being asked of their backend (see :meth:`add`).
        self._asking: set[str] = set()
        #: The patterns of :meth:`opened`, while its event waits for those answers.
        self._patterns: list[str] | None = None
        #: Set once the :data:`SUBSCRIBED_EVENT` is queued: messages move after it.
        self._open = asyncio.Event()
        #: Channels resumed from before their first message: (the cursor's position,
        #: that first message), moved right after the store's ``tornadose.resumed``.
        self._first: dict[str, tuple[str, Message]] = {}
        #: Resets of channels joined before the :data:`SUBSCRIBED_EVENT`, sent after it.
        self._resets: list[tuple[str, Message]] = []

    @property
    def channels(self) -> list[str]:
        """The channels joined so far, in the order joined."""
        return list(self._subscriptions)

    def __contains__(self, name: object) -> bool:
        return name in self._subscriptions

    def add(self, name: str, store: BaseStore, position: str | None) -> bool:
        """Join channel ``name`` of ``store``, resuming after ``position`` (the
        cursor's entry: ``None`` when the cursor has none, ``""`` when it holds no
        position: a reset). ``False`` if the connection or the store is closed
        (nothing joined)."""
        if self.outlet.closed or name in self._subscriptions:
            return False
        backend = store.backend
        unpublished = isinstance(backend, MemoryBackend) and store.position is None
        reason = ResetReason.UNKNOWN_POSITION
        given = position
        before = _BEFORE_FIRST.fullmatch(position or "")
        if isinstance(backend, MemoryBackend) and (position == BEFORE_FIRST or before):
            if before is not None and before[1] != backend.epoch:
                position, reason = "", ResetReason.UNKNOWN_EPOCH
            else:
                position = self._from_first(name, store, unpublished)
        start = store.start_position
        try:
            subscription = store.register(self, position or None)
        except StoreClosed:
            self._first.pop(name, None)
            return False
        self._subscriptions[name] = (store, subscription)
        if name in self._first:
            self._first[name] = (given or BEFORE_FIRST, self._first[name][1])
        if position == "":
            reset = Resume(ResumeStatus.RESET, given or "", reason=reason, reset_id=store.position)
            control = control_message(reset)
            assert control is not None
            store.stats.resets += 1
            if self._open.is_set():
                self._queue(name, control)
            else:  # after the SUBSCRIBED_EVENT, as the channel's messages
                self.positions[name] = ""
                self._resets.append((name, control))
        elif position is None:
            if isinstance(backend, MemoryBackend):
                # Before what the store handed the subscription on joining, if anything.
                self.positions[name] = start or f"{backend.epoch}-0"
            else:
                empty = len(subscription) == 0
                self.positions[name] = (store.position if empty else None) or ""
                if self.positions[name] == "" and empty:
                    self._ask_position(name, store, subscription)
        elif name in self._first:
            # Resumed from before the channel's first message, which is not queued yet
            # (it follows the store's tornadose.resumed): the cursor stays before it.
            assert isinstance(backend, MemoryBackend)
            self.positions[name] = f"{backend.epoch}-0"
        else:
            self.positions[name] = position
        mover = asyncio.ensure_future(self._move(name, subscription))
        self._movers.add(mover)
        mover.add_done_callback(self._movers.discard)
        return True

    def _ask_position(self, name: str, store: BaseStore, subscription: Subscription) -> None:
        """A shared backend's store that was detached (this connection is its only
        subscriber in the process) no longer knows its position: ask the backend where
        a subscriber registered now starts (the ``reset_id`` of a resume from an id
        that is none: the newest message it will not get), and take it as the
        channel's position if nothing was queued from the channel meanwhile. The
        :data:`SUBSCRIBED_EVENT` waits for the answer (at most
        :data:`POSITION_TIMEOUT` seconds; without one the position stays unknown)."""
        answer = store.backend.resume("")
        if isinstance(answer, Resume):
            if answer.reset_id and len(subscription) == 0:
                self.positions[name] = answer.reset_id
            return
        self._asking.add(name)

        async def ask() -> None:
            try:
                resume = await asyncio.wait_for(answer, POSITION_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the position stays unknown: a reset on resume
                logger.warning("channel %r: its position is not known (%r)", name, exc)
            else:
                moved = self.positions.get(name) != ""
                if resume.reset_id and not moved and len(subscription) == 0:
                    self.positions[name] = resume.reset_id
            self._asking.discard(name)
            if not self._asking and self._patterns is not None and not self.outlet.closed:
                self._send_opened(self._patterns)

        task = asyncio.ensure_future(ask())
        self._movers.add(task)
        task.add_done_callback(self._movers.discard)

    def _from_first(self, name: str, store: BaseStore, unpublished: bool) -> str | None:
        """Where to resume a channel joined before its first message: live if it still
        has none; after its first message if its history still holds it (that message
        is moved right after the store's ``tornadose.resumed``); else unknown (a
        reset)."""
        if unpublished:
            return None
        kept = store.history.after(0, 1) if isinstance(store.backend, MemoryBackend) else None
        if not kept or kept[0].id is None or not kept[0].id.endswith("-1"):
            return ""
        self._first[name] = (BEFORE_FIRST, kept[0])
        return kept[0].id

    def report(self, name: str, status: int, error: str, detail: str) -> None:
        """Tell the client that channel ``name`` was refused (a :data:`REFUSED_EVENT`
        naming it); the cursor is unchanged."""
        data = {"status": status, "error": error, "detail": detail}
        self._queue(name, Message(data, id=None, event=REFUSED_EVENT), track=False)

    def opened(self, patterns: list[str]) -> None:
        """Tell the client the set it has, with the cursor of every channel joined: a
        :data:`SUBSCRIBED_EVENT` (so a client that gets no message before it drops
        still resumes exactly). It waits for the positions asked of shared backends
        (see :meth:`add`); the channels' messages follow it."""
        if self._asking:
            self._patterns = patterns
        else:
            self._send_opened(patterns)

    def _send_opened(self, patterns: list[str]) -> None:
        self._patterns = None
        data = {"channels": self.channels, "patterns": patterns}
        message = Message(data, id=None, event=SUBSCRIBED_EVENT)
        self.outlet.put(message.tagged(None, encode_cursor(self.positions)))
        self._open.set()
        resets, self._resets = self._resets, []
        for name, control in resets:
            if name in self._subscriptions:
                self._queue(name, control)

    def _queue(self, name: str, message: Message, *, track: bool = True) -> None:
        if track:
            if message.id is not None:
                self.positions[name] = message.id
            elif message.event == RESET_EVENT:
                self.positions[name] = ""
        self.outlet.put(message.tagged(name, encode_cursor(self.positions)))

    async def _move(self, name: str, subscription: Subscription) -> None:
        outlet = self.outlet
        try:
            await self._open.wait()
            while True:
                # Wait for this channel to have something readable (taking nothing).
                await subscription.get_batch(0)
                # The client reads slower than the channels fill: wait (by polling,
                # only while backed up; a Subscription signals no room) for the writer.
                while outlet.half_full and not outlet.closed:  # noqa: ASYNC110
                    await asyncio.sleep(_BACKED_UP_POLL)
                if outlet.closed:
                    return
                # Move only what fits: the room is looked at before each message (other
                # channels move in the same turn), and what does not fit stays in this
                # channel's queue, under its bounds and policy.
                for _ in range(MOVE_BATCH):
                    if outlet.half_full:
                        break
                    taken = subscription.take_batch(1)
                    if not taken:
                        break
                    if name in self._first:
                        self._move_first(name, taken[0])
                    else:
                        self._queue(name, taken[0])
        except SubscriptionClosed as exc:
            if exc.reason is CloseReason.STORE_CLOSED and not outlet.closed:
                # One channel is over: say so; the others go on (all over: the end).
                del self._subscriptions[name]
                self.positions.pop(name, None)
                self.report(name, 503, "store_closed", f"channel {name!r} was closed")
                if not self._subscriptions:
                    outlet.close(CloseReason.STORE_CLOSED)
                return
            # Cut (or deregistered) by its store: the connection ends the same way.
            outlet.close(exc.reason)
        except Exception:
            logger.exception("moving channel %r into a multi-channel stream failed", name)
            outlet.close(CloseReason.DEREGISTERED)

    def _move_first(self, name: str, message: Message) -> None:
        """The first message moved from a channel resumed from before its first
        message: the store's ``tornadose.resumed`` (after that first message) becomes
        one after the cursor's position, counting it, and that message follows it."""
        before, first = self._first.pop(name)
        if message.event == RESUMED_EVENT and isinstance(message.data, dict):
            replayed = int(message.data.get("replayed", 0)) + 1
            data = {"after": before, "replayed": replayed}
            self._queue(name, Message(data, id=before, event=RESUMED_EVENT))
            self._queue(name, first)
        else:
            self._queue(name, first)
            self._queue(name, message)

    def _outlet_closed(self, outlet: Subscription) -> None:
        reason = outlet.close_reason
        why = CloseReason.CLIENT_GONE if reason is CloseReason.CLIENT_GONE else None
        for mover in list(self._movers):
            mover.cancel()
        for _, subscription in self._subscriptions.values():
            subscription.close(why or CloseReason.DEREGISTERED)
        if self._on_close is not None:
            on_close, self._on_close = self._on_close, None
            on_close(self)

    def __repr__(self) -> str:
        return f"<Multiplex channels={self.channels} outlet={self.outlet!r}>"
