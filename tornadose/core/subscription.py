"""A subscriber's bounded queue of messages, and what happens when it fills up.

Guarantees of a :class:`Subscription`:

* **Order**: messages are read in the order the store published them.
* **Bound**: at most ``max_messages`` messages, and at most ``max_bytes`` bytes of
  encoded SSE (a single larger message is still accepted into an empty queue), wait
  in the queue. Messages replayed to a resuming client do not count against the
  bound and are never dropped: they are already in the store's history, so queuing
  them costs a reference each. When a live message arrives at a full queue, the
  subscription's :class:`OverflowPolicy` decides, and every message it throws away
  is counted in the store's :class:`StoreStats`:

  - ``DISCONNECT`` (default of :class:`~tornadose.core.store.QueueStore`): the
    subscription is closed with :attr:`CloseReason.SLOW_CONSUMER`; its queue is
    freed and the transport ends the connection. Nothing is dropped silently: the
    client sees the disconnect.
  - ``DROP_OLDEST``: the oldest queued message is dropped to make room.
  - ``KEEP_LATEST`` (default of :class:`~tornadose.core.store.DataStore`): everything
    queued is dropped and only the new message is kept: a slow reader of a
    latest-value store skips straight to the current value.

* **Never blocks the publisher**: :meth:`Subscription.put` is synchronous and O(1);
  a slow subscriber never delays the store or any other subscriber.
* **Prompt close**: :meth:`Subscription.close` wakes a waiting reader at once.

One task reads a subscription at a time (a second concurrent reader is refused).
Publish to a subscription from the thread of the event loop its reader runs in:
nothing here is thread-safe.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from tornadose.core.errors import SubscriptionClosed
from tornadose.core.history import Resume
from tornadose.core.message import Message
from tornadose.core.reasons import CUT_REASONS, CloseReason, OverflowPolicy, ResumeStatus

__all__ = ["StoreStats", "Subscription"]


@dataclass
class StoreStats:
    """Counters of one store, shared by all its subscriptions."""

    #: Messages accepted by ``submit()``.
    published: int = 0
    #: Messages handed to subscribers' transports (one per message per subscriber).
    delivered: int = 0
    #: Messages thrown away by ``DROP_OLDEST`` / ``KEEP_LATEST`` overflow or, while
    #: nobody is subscribed, by a full backlog.
    dropped: int = 0
    #: Messages still queued for a subscriber when it left or was cut (a resuming
    #: client gets them again from the history).
    discarded: int = 0
    #: Messages replayed from history to resuming clients.
    replayed: int = 0
    #: Reset signals sent: resumes that could not be filled, and (``RedisStore``)
    #: subscribers told that Redis lost messages they had not received.
    resets: int = 0
    #: Closed subscriptions, by :class:`CloseReason` value.
    disconnects: Counter[str] = field(default_factory=Counter)

    @property
    def slow_disconnects(self) -> int:
        """Subscribers cut as slow consumers (``disconnects["slow_consumer"]``)."""
        return self.disconnects[CloseReason.SLOW_CONSUMER.value]


class Subscription:
    """The bounded queue between a store and one subscriber.

    Created by :meth:`BaseStore.register() <tornadose.core.store.BaseStore.register>` or
    :meth:`BaseStore.subscribe() <tornadose.core.store.BaseStore.subscribe>`, never
    directly. Read it with :meth:`get_batch` (transports) or ``async for`` (Python
    code); close it with :meth:`close` or by leaving ``async with``.
    """

    __slots__ = (
        "__weakref__",
        "_close_callbacks",
        "_close_reason",
        "_exempt",
        "_gate",
        "_held",
        "_live_bytes",
        "_on_ready",
        "_queue",
        "_stats",
        "_waiter",
        "_waiter_wants_messages",
        "max_bytes",
        "max_messages",
        "overflow",
        "resume",
        "subscriber",
    )

    def __init__(
        self,
        subscriber: object,
        *,
        max_messages: int,
        max_bytes: int | None = None,
        overflow: OverflowPolicy,
        stats: StoreStats,
        on_close: Callable[[Subscription], None],
        resume: Resume | None = None,
    ) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, not {max_messages}")
        self.subscriber = subscriber
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.overflow = overflow
        #: How this subscription started: live, resumed from history, or reset.
        self.resume = resume if resume is not None else Resume(ResumeStatus.LIVE)
        #: Replayed messages at the front of the queue, outside the bound.
        self._exempt = 0
        #: Bytes of the live (not replayed) messages queued.
        self._live_bytes = 0
        #: While true (see :meth:`hold`), queued messages are not readable yet.
        self._held = False
        #: Until it keeps one message, live messages for which it is true are skipped.
        self._gate: Callable[[Message], bool] | None = None
        self._stats = stats
        # A tuple (rarely added to): a list would cost a growth block per subscriber.
        self._close_callbacks: tuple[Callable[[Subscription], None], ...] = (on_close,)
        # A list, not a deque: an idle subscription costs 56 bytes for it, not 600+
        # (a deque allocates a block of 64 slots).
        self._queue: list[Message] = []
        self._close_reason: CloseReason | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._waiter_wants_messages = False
        #: While the reader waits with ``on_ready`` (see :meth:`get_batch`).
        self._on_ready: Callable[[], None] | None = None

    # -- the store's side -----------------------------------------------------------

    def put(self, message: Message) -> None:
        """Queue ``message``, applying the overflow policy if the queue is full.

        Never blocks and never raises; a closed subscription ignores the message.
        """
        if self._close_reason is not None:
            return
        if self._gate is not None and message.id is not None:  # id-less: announcements
            if self._gate(message):
                return
            self._gate = None
        if self._full_for(message):
            if self.overflow is OverflowPolicy.DISCONNECT:
                self.close(CloseReason.SLOW_CONSUMER)
                return
            if self.overflow is OverflowPolicy.DROP_OLDEST:
                while self._full_for(message):
                    self._drop_oldest_live()
            else:
                self._drop_live()
        self._queue.append(message)
        self._live_bytes += message.size
        if self._waiter_wants_messages and not self._held:
            on_ready = self._on_ready
            if on_ready is not None and self.parked:
                on_ready()
            else:
                self._wake()

    def replay(self, messages: Iterable[Message]) -> None:
        """Queue ``messages`` ahead of live ones, outside the bound (see the module
        docstring). Only before any live message is queued."""
        if self._close_reason is not None:
            return
        assert len(self._queue) == self._exempt, "replay comes before live messages"
        before = len(self._queue)
        self._queue.extend(messages)
        self._exempt = len(self._queue)
        if self._exempt > before and self._waiter_wants_messages:
            self._wake()

    def hold(self) -> None:
        """Hold live messages until :meth:`release`: they are queued, and count against
        the bound, but the reader does not get them yet.

        Stores whose history must be fetched asynchronously (Redis) hold a resuming
        subscription while they fetch, so live messages that arrive meanwhile are
        neither lost nor delivered ahead of the replay. Only before anything is queued.
        """
        assert not self._queue, "hold() comes before any message"
        self._held = True

    def release(
        self, front: Sequence[Message] = (), *, skip: Callable[[Message], bool] | None = None
    ) -> None:
        """End a :meth:`hold`: ``front`` (the control message and the replay) is queued,
        outside the bound, ahead of the held live messages.

        With ``skip``, held live messages for which ``skip(message)`` is true are
        dropped (the replay already has them), and so are later live messages until
        the first one ``skip`` keeps: the store's order makes every later one new too.
        Messages without an id (announcements, see ``BaseStore.announce``) are kept
        and do not end that.
        """
        self._held = False
        if self._close_reason is not None:
            return  # closed: a held queue was discarded, nothing more is delivered
        if skip is not None:
            kept = [message for message in self._queue if not skip(message)]
            self._gate = None if any(m.id is not None for m in kept) else skip
            self._queue = kept
            self._live_bytes = sum(message.size for message in kept)
        self._queue[:0] = front
        self._exempt = len(front)
        if self._queue and self._waiter_wants_messages:
            self._wake()

    def _full_for(self, message: Message) -> bool:
        live = len(self._queue) - self._exempt
        if live >= self.max_messages:
            return True
        return (
            self.max_bytes is not None
            and live > 0
            and self._live_bytes + message.size > self.max_bytes
        )

    def _drop_live(self) -> None:
        """Drop every queued live message (``KEEP_LATEST``)."""
        dropped = self._queue[self._exempt :]
        del self._queue[self._exempt :]
        self._live_bytes = 0
        self._stats.dropped += len(dropped)

    def _drop_oldest_live(self) -> None:
        index = self._exempt
        dropped = self._queue[index]
        del self._queue[index]
        self._live_bytes -= dropped.size
        self._stats.dropped += 1

    def close(self, reason: CloseReason = CloseReason.DEREGISTERED) -> None:
        """Close the subscription and remove it from its store. Idempotent.

        A waiting reader wakes at once. Messages still queued are delivered first
        when the store closes, the server shuts down or the subscriber is deregistered,
        and discarded when the client is gone or was cut (:data:`CUT_REASONS`), or
        while the subscription is held (without their replay they would leave a
        silent gap; the client resumes from its own id instead).
        """
        if self._close_reason is not None:
            return
        self._close_reason = reason
        self._stats.disconnects[reason.value] += 1
        if self._held or reason in CUT_REASONS or reason is CloseReason.CLIENT_GONE:
            self._held = False
            self._stats.discarded += len(self._queue)
            self._queue.clear()
            self._exempt = self._live_bytes = 0
        self._wake()
        for callback in self._close_callbacks:
            callback(self)

    def add_close_callback(self, callback: Callable[[Subscription], None]) -> None:
        """Call ``callback(subscription)`` when the subscription closes (at once if closed).

        Callbacks run synchronously inside :meth:`close`, which may itself run inside
        the store's ``publish()``: they must be quick and must not raise.
        """
        if self._close_reason is not None:
            callback(self)
        else:
            self._close_callbacks = (*self._close_callbacks, callback)

    # -- the reader's side ----------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (messages may still be queued)."""
        return self._close_reason is not None

    @property
    def close_reason(self) -> CloseReason | None:
        """Why the subscription was closed, or ``None`` while open."""
        return self._close_reason

    def __len__(self) -> int:
        """The number of messages waiting to be read."""
        return len(self._queue)

    @property
    def half_full(self) -> bool:
        """Whether the live messages queued reach half of ``max_messages`` or of
        ``max_bytes``: a writer that waits to coalesce should wait no longer."""
        live = len(self._queue) - self._exempt
        if 2 * live >= self.max_messages:
            return True
        return self.max_bytes is not None and 2 * self._live_bytes >= self.max_bytes

    async def get_batch(
        self,
        max_messages: int | None = None,
        *,
        timeout: float | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> list[Message]:
        """Wait for messages and return all queued ones (up to ``max_messages``), in order.

        Returns an empty list if ``timeout`` seconds pass with nothing queued
        (``None`` or ``0`` waits without limit), or when :meth:`wake` is called.
        Raises :class:`SubscriptionClosed` once the subscription is closed and nothing
        is left to read.

        With ``on_ready``, a live message arriving while the reader waits calls
        ``on_ready()`` instead of waking the reader: the caller may then take the
        messages itself with :meth:`take_batch` while the reader stays
        :attr:`parked` (streams write them from the event loop without a task
        switch), or wake the reader with :meth:`wake`. A close, a release or a
        replay always wakes the reader.
        """
        # Waited for here, not in a helper coroutine: an idle subscriber's reader is
        # parked in this frame, and a second frame would cost memory per subscriber.
        wait = self._close_reason is None and (self._held or not self._queue)
        while wait:
            was_held = self._held
            waiter, timer = self._arm(timeout, True, on_ready)
            try:
                await waiter
            finally:
                self._disarm(timer)
            if not was_held or self._close_reason is not None:
                break
            if self._held:
                return []
            wait = not self._queue  # released with nothing readable: wait as when empty
        if not self._queue and self._close_reason is not None:
            raise SubscriptionClosed(self._close_reason)
        return self.take_batch(max_messages)

    def take_batch(self, max_messages: int | None = None) -> list[Message]:
        """Return the readable queued messages (up to ``max_messages``), in order,
        without waiting: ``[]`` if none are queued or the subscription is held."""
        queue = self._queue
        if not queue or self._held:
            return []
        # Copy out, and keep the queue's own list: a new list per read would live
        # until the next message and be promoted to the garbage collector's oldest
        # generation, once per subscriber per message (full collections, then, are
        # what delays delivery).
        if max_messages is None or len(queue) <= max_messages:
            batch = queue.copy()
            queue.clear()
        else:
            batch = queue[:max_messages]
            del queue[:max_messages]
        replayed = min(self._exempt, len(batch))
        self._exempt -= replayed
        for message in batch[replayed:] if replayed else batch:
            self._live_bytes -= message.size
        self._stats.delivered += len(batch)
        return batch

    @property
    def parked(self) -> bool:
        """Whether the reader waits in :meth:`get_batch` with ``on_ready`` and has
        not been woken."""
        waiter = self._waiter
        return self._on_ready is not None and waiter is not None and not waiter.done()

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, returning early if the subscription closes."""
        if self._close_reason is None and seconds > 0:
            waiter, timer = self._arm(seconds, False, None)
            try:
                await waiter
            finally:
                self._disarm(timer)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        """Yield messages until the subscription closes.

        Ends quietly when the store closes or the subscriber is deregistered; raises
        :class:`SubscriptionClosed` if it was cut (slow consumer, write timeout), so a
        gap is never silent.
        """
        while True:
            try:
                batch = await self.get_batch()
            except SubscriptionClosed as exc:
                if exc.reason in CUT_REASONS:
                    raise
                return
            for message in batch:
                yield message

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(CloseReason.DEREGISTERED)

    # -- internals ------------------------------------------------------------------

    def _arm(
        self, timeout: float | None, wants_messages: bool, on_ready: Callable[[], None] | None
    ) -> tuple[asyncio.Future[None], asyncio.TimerHandle | None]:
        """Set up the reader's wait: the future :meth:`_wake` resolves, and its timer
        (``None`` without ``timeout``); the reader awaits the one, then calls
        :meth:`_disarm` with the other, whatever happened."""
        if self._waiter is not None:
            raise RuntimeError("a Subscription can be read by one task at a time")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        self._waiter_wants_messages = wants_messages
        self._on_ready = on_ready
        return waiter, loop.call_later(timeout, self._wake) if timeout else None

    def _disarm(self, timer: asyncio.TimerHandle | None) -> None:
        self._waiter = None
        self._waiter_wants_messages = False
        self._on_ready = None
        if timer is not None:
            timer.cancel()

    def wake(self) -> None:
        """Wake a reader waiting in :meth:`get_batch`, which then returns ``[]`` if
        nothing is queued (streams use it for heartbeats). No effect otherwise."""
        if self._waiter_wants_messages:
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __repr__(self) -> str:
        state = f"closed={self._close_reason.value}" if self._close_reason else "open"
        return f"<Subscription {state} queued={len(self._queue)}/{self.max_messages}>"
