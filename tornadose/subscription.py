"""A subscriber's bounded queue of messages, and what happens when it fills up.

Guarantees of a :class:`Subscription`:

* **Order**: messages are read in the order the store published them.
* **Bound**: at most ``max_messages`` messages wait in the queue. When a message
  arrives at a full queue, the subscription's :class:`OverflowPolicy` decides, and
  every message it throws away is counted in the store's :class:`StoreStats`:

  - ``DISCONNECT`` (default of :class:`~tornadose.stores.QueueStore`): the
    subscription is closed with :attr:`CloseReason.SLOW_CONSUMER`; its queue is
    freed and the transport ends the connection. Nothing is dropped silently: the
    client sees the disconnect.
  - ``DROP_OLDEST``: the oldest queued message is dropped to make room.
  - ``KEEP_LATEST`` (default of :class:`~tornadose.stores.DataStore`): everything
    queued is dropped and only the new message is kept: a slow reader of a
    latest-value store skips straight to the current value.

* **Never blocks the publisher**: :meth:`Subscription.put` is synchronous and O(1);
  a slow subscriber never delays the store or any other subscriber.
* **Prompt close**: :meth:`Subscription.close` wakes a waiting reader at once.

One task reads a subscription at a time. A subscription is bound to the event loop
of the task that first reads it; publish to it from that loop's thread.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import TracebackType

from tornadose.errors import SubscriptionClosed
from tornadose.message import Message

__all__ = ["CloseReason", "OverflowPolicy", "StoreStats", "Subscription"]


class OverflowPolicy(enum.Enum):
    """What a full subscription does with a new message (see the module docstring)."""

    DISCONNECT = "disconnect"
    DROP_OLDEST = "drop_oldest"
    KEEP_LATEST = "keep_latest"


class CloseReason(enum.Enum):
    """Why a subscription was closed."""

    #: The client went away (the connection closed).
    CLIENT_GONE = "client_gone"
    #: The subscriber fell ``max_messages`` behind under ``OverflowPolicy.DISCONNECT``.
    SLOW_CONSUMER = "slow_consumer"
    #: The store was closed; queued messages are still delivered first.
    STORE_CLOSED = "store_closed"
    #: The subscriber was deregistered from the store.
    DEREGISTERED = "deregistered"
    #: The server is shutting down; queued messages are still delivered first.
    SERVER_SHUTDOWN = "server_shutdown"


@dataclass
class StoreStats:
    """Counters of one store, shared by all its subscriptions."""

    #: Messages accepted by ``submit()``.
    published: int = 0
    #: Messages handed to subscribers' transports (one per message per subscriber).
    delivered: int = 0
    #: Messages thrown away by ``DROP_OLDEST`` / ``KEEP_LATEST`` overflow.
    dropped: int = 0
    #: Subscribers closed with ``CloseReason.SLOW_CONSUMER``.
    slow_disconnects: int = 0


class Subscription:
    """The bounded queue between a store and one subscriber.

    Created by :meth:`BaseStore.register() <tornadose.stores.BaseStore.register>` or
    :meth:`BaseStore.subscribe() <tornadose.stores.BaseStore.subscribe>`, never
    directly. Read it with :meth:`get_batch` (transports) or ``async for`` (Python
    code); close it with :meth:`close` or by leaving ``async with``.
    """

    __slots__ = (
        "__weakref__",
        "_close_callbacks",
        "_close_reason",
        "_queue",
        "_stats",
        "_waiter",
        "_waiter_wants_messages",
        "max_messages",
        "overflow",
        "subscriber",
    )

    def __init__(
        self,
        subscriber: object,
        *,
        max_messages: int,
        overflow: OverflowPolicy,
        stats: StoreStats,
        on_close: Callable[[Subscription], None],
    ) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, not {max_messages}")
        self.subscriber = subscriber
        self.max_messages = max_messages
        self.overflow = overflow
        self._stats = stats
        self._close_callbacks: list[Callable[[Subscription], None]] = [on_close]
        self._queue: deque[Message] = deque()
        self._close_reason: CloseReason | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._waiter_wants_messages = False

    # -- the store's side -----------------------------------------------------------

    def put(self, message: Message) -> None:
        """Queue ``message``, applying the overflow policy if the queue is full.

        Never blocks and never raises; a closed subscription ignores the message.
        """
        if self._close_reason is not None:
            return
        queue = self._queue
        if len(queue) >= self.max_messages:
            if self.overflow is OverflowPolicy.DISCONNECT:
                self._stats.slow_disconnects += 1
                self.close(CloseReason.SLOW_CONSUMER)
                return
            if self.overflow is OverflowPolicy.DROP_OLDEST:
                queue.popleft()
                self._stats.dropped += 1
            else:
                self._stats.dropped += len(queue)
                queue.clear()
        queue.append(message)
        if self._waiter_wants_messages:
            self._wake()

    def close(self, reason: CloseReason = CloseReason.DEREGISTERED) -> None:
        """Close the subscription and remove it from its store. Idempotent.

        A waiting reader wakes at once. Messages still queued are delivered first
        when the reason is ``STORE_CLOSED`` or ``DEREGISTERED``, and discarded when the
        client is gone or too slow.
        """
        if self._close_reason is not None:
            return
        self._close_reason = reason
        if reason in (CloseReason.CLIENT_GONE, CloseReason.SLOW_CONSUMER):
            self._queue.clear()
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
            self._close_callbacks.append(callback)

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

    async def get_batch(
        self, max_messages: int | None = None, *, timeout: float | None = None
    ) -> list[Message]:
        """Wait for messages and return all queued ones (up to ``max_messages``), in order.

        Returns an empty list if ``timeout`` seconds pass with nothing queued
        (``None`` or ``0`` waits without limit). Raises :class:`SubscriptionClosed`
        once the subscription is closed and nothing is left to read.
        """
        queue = self._queue
        if not queue and self._close_reason is None:
            await self._wait(timeout, wants_messages=True)
        if not queue:
            if self._close_reason is not None:
                raise SubscriptionClosed(self._close_reason)
            return []
        if max_messages is None or len(queue) <= max_messages:
            batch = list(queue)
            queue.clear()
        else:
            batch = [queue.popleft() for _ in range(max_messages)]
        self._stats.delivered += len(batch)
        return batch

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``, returning early if the subscription closes."""
        if self._close_reason is None and seconds > 0:
            await self._wait(seconds, wants_messages=False)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        """Yield messages until the subscription closes.

        Ends quietly when the store closes or the subscriber is deregistered; raises
        :class:`SubscriptionClosed` if it was cut as a slow consumer, so a gap is
        never silent.
        """
        while True:
            try:
                batch = await self.get_batch()
            except SubscriptionClosed as exc:
                if exc.reason is CloseReason.SLOW_CONSUMER:
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

    async def _wait(self, timeout: float | None, *, wants_messages: bool) -> None:
        if self._waiter is not None:
            raise RuntimeError("a Subscription can be read by one task at a time")
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        self._waiter_wants_messages = wants_messages
        timer = loop.call_later(timeout, self._wake) if timeout else None
        try:
            await waiter
        finally:
            self._waiter = None
            self._waiter_wants_messages = False
            if timer is not None:
                timer.cancel()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def __repr__(self) -> str:
        state = f"closed={self._close_reason.value}" if self._close_reason else "open"
        return f"<Subscription {state} queued={len(self._queue)}/{self.max_messages}>"
