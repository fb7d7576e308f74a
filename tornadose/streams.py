"""The delivery loops every transport runs, written once for all frameworks.

An adapter opens the connection its framework's way, registers a subscription, and
hands this module an async ``write``/``send`` callable. The loops own the rest: what
is written, in what order, how messages are batched, when heartbeats go out and how
delivery is throttled. They return the :class:`~tornadose.subscription.CloseReason`
when the subscription closes; an exception from ``write``/``send`` (the client went
away mid-write) propagates to the adapter, which closes the subscription.

Guarantees:

* messages are written in the order they were published, each exactly once;
* when several messages are queued, up to ``max_batch`` of them go out in one
  ``write`` (SSE); a quiet stream writes each message as soon as it arrives;
* with ``heartbeat`` seconds (``None`` or ``0``: off), an SSE stream idle that long
  gets a comment, so proxies and clients see it is alive; no timer runs while
  messages flow, and nothing polls;
* with ``period`` seconds, the stream pauses that long each time it has written
  everything queued: messages arriving meanwhile wait in the (bounded) queue and go
  out together (in writes of up to ``max_batch``), so throttling never makes a
  client fall behind;
* a write that takes longer than ``write_timeout`` closes the subscription with
  ``WRITE_TIMEOUT``: the adapter aborts that connection, the others are untouched.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tornadose import sse
from tornadose.errors import SubscriptionClosed
from tornadose.subscription import CloseReason, Subscription

__all__ = [
    "DEFAULT_HEARTBEAT",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_WRITE_TIMEOUT",
    "SSEOptions",
    "StreamOptions",
    "stream_sse",
    "stream_websocket",
]

#: Seconds of silence after which an SSE stream gets a heartbeat comment.
DEFAULT_HEARTBEAT = 15.0
#: The most messages written to one connection in one write.
DEFAULT_MAX_BATCH = 64
#: Seconds one write may take before the client is cut as stalled.
DEFAULT_WRITE_TIMEOUT = 30.0

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StreamOptions:
    """How a stream is written, on any transport; checked when made, so a bad value
    fails at startup rather than at the first client."""

    #: Seconds between writes (throttling); ``None``: write as messages come.
    period: float | None = None
    #: Seconds one write may take before the client is cut as stalled
    #: (``CloseReason.WRITE_TIMEOUT``); ``None``: no limit.
    write_timeout: float | None = DEFAULT_WRITE_TIMEOUT
    #: The most messages in one write.
    max_batch: int = DEFAULT_MAX_BATCH

    def __post_init__(self) -> None:
        for name, value in (("period", self.period), ("write_timeout", self.write_timeout)):
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative, not {value}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {self.max_batch}")


@dataclass(frozen=True, slots=True)
class SSEOptions(StreamOptions):
    """How an SSE stream is written."""

    #: Seconds of silence before a heartbeat comment; ``None`` or ``0``: none.
    heartbeat: float | None = DEFAULT_HEARTBEAT
    #: Milliseconds a client waits before reconnecting, sent when the stream opens.
    retry: int | None = None

    def __post_init__(self) -> None:
        StreamOptions.__post_init__(self)
        if self.heartbeat is not None and self.heartbeat < 0:
            raise ValueError(f"heartbeat must not be negative, not {self.heartbeat}")
        if self.retry is not None:
            sse.encode_retry(self.retry)


async def stream_sse(
    subscription: Subscription,
    write: Callable[[bytes], Awaitable[None]],
    options: SSEOptions = SSEOptions(),
) -> CloseReason:
    """Write ``subscription``'s messages as SSE events until it closes.

    When the server shuts down, the stream ends with a ``retry:`` hint between 1 and
    5 seconds (random, so clients do not all come back at once).
    """
    pacer = _Pacer(subscription, options.write_timeout, options.heartbeat)
    try:
        if options.retry is not None:
            await pacer.write(write, sse.encode_retry(options.retry))
        while True:
            try:
                batch = await subscription.get_batch(options.max_batch)
            except SubscriptionClosed as closed:
                if closed.reason is CloseReason.SERVER_SHUTDOWN:
                    await pacer.write(write, sse.encode_retry(random.randint(1000, 5000)))
                return closed.reason
            if not batch:  # woken by the pacer: the stream has been silent too long
                await pacer.write(write, sse.HEARTBEAT)
                continue
            chunk = batch[0].sse if len(batch) == 1 else b"".join(m.sse for m in batch)
            await pacer.write(write, chunk)
            if options.period and not len(subscription):
                await subscription.sleep(options.period)
    finally:
        pacer.stop()


async def stream_websocket(
    subscription: Subscription,
    send_frames: Callable[[list[str]], Awaitable[None]],
    options: StreamOptions = StreamOptions(),
) -> CloseReason:
    """Send ``subscription``'s messages, one text frame each, until it closes.

    ``send_frames`` sends a batch of frames in order; the adapter decides how (all
    into one buffer then one wait where the server allows it), and the write timeout
    applies to the whole batch.
    """
    pacer = _Pacer(subscription, options.write_timeout, heartbeat=None)
    try:
        while True:
            try:
                batch = await subscription.get_batch(options.max_batch)
            except SubscriptionClosed as closed:
                return closed.reason
            await pacer.write(send_frames, [message.websocket for message in batch])
            if options.period and not len(subscription):
                await subscription.sleep(options.period)
    finally:
        pacer.stop()


class _Pacer:
    """The timing of one stream, on a single timer instead of one per write and wait.

    * Write timeout: a write still running ``write_timeout`` seconds after it
      started closes the subscription with ``WRITE_TIMEOUT`` (the adapter then aborts
      the connection).
    * Heartbeat: ``heartbeat`` seconds after the last write, the reader is woken
      with nothing to read, and the loop writes a heartbeat.

    The timer fires when the next of these is due, and at least every
    ``write_timeout / 2`` seconds to notice a write that starts meanwhile, so a
    stalled write is cut between 1 and 1.5 times ``write_timeout`` after it started.
    While messages flow it fires at most once per ``heartbeat`` seconds.
    """

    __slots__ = (
        "_heartbeat",
        "_loop",
        "_subscription",
        "_timer",
        "_write_timeout",
        "last_write",
        "write_started",
    )

    def __init__(
        self, subscription: Subscription, write_timeout: float | None, heartbeat: float | None
    ) -> None:
        self._subscription = subscription
        self._write_timeout = write_timeout or None
        self._heartbeat = heartbeat or None
        self._loop = asyncio.get_running_loop()
        self.last_write = self._loop.time()
        self.write_started: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._arm()

    async def write(self, write: Callable[[T], Awaitable[None]], payload: T) -> None:
        """``write(payload)``, timed."""
        self.write_started = self._loop.time()
        try:
            await write(payload)
        finally:
            self.write_started = None
            self.last_write = self._loop.time()

    def stop(self) -> None:
        """Cancel the timer (the stream is over)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        now = self._loop.time()
        due: list[float] = []
        if self._write_timeout is not None:
            started = self.write_started
            if started is not None:
                due.append(started + self._write_timeout)
            else:
                due.append(now + self._write_timeout / 2)
        if self._heartbeat is not None and self.write_started is None:
            due.append(self.last_write + self._heartbeat)
        self._timer = self._loop.call_at(min(due), self._tick) if due else None

    def _tick(self) -> None:
        now = self._loop.time()
        started = self.write_started
        if started is not None and self._write_timeout and now - started >= self._write_timeout:
            self._timer = None
            self._subscription.close(CloseReason.WRITE_TIMEOUT)
            return
        if started is None and self._heartbeat and now - self.last_write >= self._heartbeat:
            self.last_write = now  # one heartbeat per silent interval
            self._subscription.wake()
        self._arm()
