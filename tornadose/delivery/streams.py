"""The delivery loops every transport runs, written once for all frameworks.

An adapter opens the connection its framework's way, registers a subscription, and
hands this module an async ``write``/``send`` callable. The loops own the rest: what
is written, in what order, how messages are batched, when heartbeats go out and how
delivery is throttled. They return the :class:`~tornadose.core.subscription.CloseReason`
when the subscription closes; an exception from ``write``/``send`` (the client went
away mid-write) propagates to the adapter, which closes the subscription.

Guarantees:

* messages are written in the order they were published, each exactly once;
* when several messages are queued, up to ``max_batch`` of them go out in one
  ``write`` (SSE); a quiet stream writes each message on the next loop turn
  (under load a sweep may wait up to 10 ms to coalesce: see
  :mod:`tornadose.delivery.coalescing`);
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
import contextvars
import inspect
import logging
import random
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Generic, TypedDict, TypeVar

from tornadose._compat.asyncio_tasks import run_in_task
from tornadose.core.errors import SubscriptionClosed
from tornadose.core.message import Message
from tornadose.core.reasons import CUT_REASONS, CloseReason
from tornadose.core.subscription import Subscription
from tornadose.delivery import direct as direct_delivery
from tornadose.delivery.coalescing import SweepPacing
from tornadose.wire import sse

__all__ = [
    "DEFAULT_HEARTBEAT",
    "DEFAULT_MAX_BATCH",
    "DEFAULT_WRITE_TIMEOUT",
    "SSEKeywords",
    "SSEOptions",
    "StreamKeywords",
    "StreamOptions",
    "stream_payloads",
    "stream_sse",
    "stream_websocket",
    "write_through",
]

#: Seconds of silence after which an SSE stream gets a heartbeat comment.
DEFAULT_HEARTBEAT = 15.0
#: The most messages written to one connection in one write.
DEFAULT_MAX_BATCH = 64
#: Seconds one write may take before the client is cut as stalled.
DEFAULT_WRITE_TIMEOUT = 30.0

T = TypeVar("T")

logger = logging.getLogger("tornadose.streams")

#: Reasons after which nothing more is written: the client is gone or is being cut.
_NOTHING_MORE_TO_WRITE = CUT_REASONS | {CloseReason.CLIENT_GONE}


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


class StreamKeywords(TypedDict, total=False):
    """:class:`StreamOptions` as the keyword options of a subscriber handler or app
    (an option left out keeps the field's default)."""

    period: float | None
    write_timeout: float | None


class SSEKeywords(StreamKeywords, total=False):
    """:class:`SSEOptions` as the keyword options of an SSE handler or app."""

    heartbeat: float | None
    retry: int | None


#: A synchronous write: it returns ``None`` once the bytes are handed to the
#: transport, or an awaitable when they are not all written yet (the stream's task
#: awaits it, under the write timeout). Raising means the client is gone.
WriteNow = Callable[[T], Awaitable[None] | None]


def write_through(write_now: WriteNow[T]) -> Callable[[T], Awaitable[None]]:
    """The asynchronous write made of a synchronous one: it awaits what
    ``write_now`` leaves pending. For an adapter whose framework writes at once."""

    async def write(payload: T) -> None:
        pending = write_now(payload)
        if pending is not None:
            await pending

    return write


def stream_sse(
    subscription: Subscription,
    write: Callable[[bytes], Awaitable[None]],
    options: SSEOptions = SSEOptions(),
    *,
    write_now: WriteNow[bytes] | None = None,
) -> Coroutine[Any, Any, CloseReason]:
    """Write ``subscription``'s messages as SSE events until it closes (a coroutine
    to await, from the task that delivers).

    With ``write_now`` (see :class:`_Stream`), messages that arrive while the stream
    is idle are written straight from the event loop, without waking its task,
    unless direct delivery is off (:mod:`tornadose.delivery.direct`).
    When the server shuts down, the stream ends with a ``retry:`` hint between 1 and
    5 seconds (random, so clients do not all come back at once).
    """
    write_now = direct_delivery.if_enabled(write_now)  # None: direct delivery is off
    stream = _Stream(subscription, write, write_now, _sse_chunk, options, options.heartbeat)
    return stream.run(sse.HEARTBEAT, options)


async def stream_payloads(
    subscription: Subscription,
    publish: Callable[[Any], object],
    options: StreamOptions = StreamOptions(),
    *,
    write: Callable[[bytes], Awaitable[None]] | None = None,
) -> CloseReason:
    """Hand each message's payload to ``publish`` (awaited when it returns an
    awaitable), in order, until the subscription closes: the 0.x way to customise
    output, run by the same loop as :func:`stream_sse`, so the same options apply.

    ``period`` throttles; ``write_timeout`` bounds each batch of ``publish`` calls.
    With :class:`SSEOptions` and ``write`` (how to write raw SSE bytes), the
    ``retry:`` field, heartbeats and the shutdown hint are written as by
    :func:`stream_sse`; otherwise there are none (the output format is the
    subscriber's own).
    """

    async def deliver(item: list[Message] | bytes) -> None:
        if isinstance(item, bytes):
            assert write is not None
            await write(item)
            return
        for message in item:
            result = publish(message.data)
            if inspect.isawaitable(result):
                await result

    if write is not None and isinstance(options, SSEOptions):
        # Its payloads are message lists or raw SSE bytes (the retry field, heartbeats).
        stream: _Stream[Any] = _Stream(
            subscription, deliver, None, list, options, options.heartbeat
        )
        return await stream.run(sse.HEARTBEAT, options)
    return await _Stream(subscription, deliver, None, list, options, None).run(None)


def stream_websocket(
    subscription: Subscription,
    send_frames: Callable[[list[str]], Awaitable[None]],
    options: StreamOptions = StreamOptions(),
    *,
    send_frames_now: WriteNow[list[str]] | None = None,
) -> Coroutine[Any, Any, CloseReason]:
    """Send ``subscription``'s messages, one text frame each, until it closes.

    ``send_frames`` sends a batch of frames in order; the adapter decides how (all
    into one buffer then one wait where the server allows it), and the write timeout
    applies to the whole batch. ``send_frames_now`` is its synchronous form, as
    ``write_now`` for :func:`stream_sse`.
    """
    send_frames_now = direct_delivery.if_enabled(send_frames_now)  # None: direct delivery is off
    stream = _Stream(subscription, send_frames, send_frames_now, _frames, options, None)
    return stream.run(None)


def _sse_chunk(batch: list[Message]) -> bytes:
    return batch[0].sse if len(batch) == 1 else b"".join([m.sse for m in batch])


def _frames(batch: list[Message]) -> list[str]:
    return [message.websocket for message in batch]


class _Stream(Generic[T]):
    """One connection's delivery: a task that waits for messages and writes them,
    and, with a synchronous ``write_now``, a shortcut that skips the task.

    The shortcut: while the task waits, messages arriving for it make the
    subscription call :meth:`_on_ready`, which puts the stream on its loop's
    :class:`_Flusher`. Once per loop turn the flusher takes each ready stream's
    queued messages and writes them with ``write_now``, as the task would have (in a
    copy of its context, with :func:`asyncio.current_task` returning it: see
    :func:`~tornadose._compat.asyncio_tasks.run_in_task`), but without a task switch, a future or a
    timer per write:
    a fan-out to idle connections costs one write per connection, like a
    hand-written server. The task is woken only when a write did not finish at once
    (the socket is backed up: the task awaits the rest under the write timeout) or
    failed (the task raises it), so order, the write timeout and error handling
    stay the task's. Streams with a ``period`` always write from their task.
    """

    __slots__ = (
        "_context",
        "_encode",
        "_error",
        "_flusher",
        "_in_flight",
        "_max_batch",
        "_period",
        "_ready",
        "_subscription",
        "_task",
        "_write",
        "_write_now",
        "pacer",
    )

    def __init__(
        self,
        subscription: Subscription,
        write: Callable[[T], Awaitable[None]],
        write_now: WriteNow[T] | None,
        encode: Callable[[list[Message]], T],
        options: StreamOptions,
        heartbeat: float | None,
    ) -> None:
        self._subscription = subscription
        self._write = write
        self._encode = encode
        self._max_batch = options.max_batch
        self._period = options.period
        self.pacer = _Pacer(subscription, options.write_timeout, heartbeat)
        direct = write_now is not None and not options.period
        self._write_now = write_now if direct else None
        self._flusher = _flusher_for(asyncio.get_running_loop()) if direct else None
        self._context: contextvars.Context | None = None  # set by run()
        self._task: asyncio.Task[Any] | None = None
        self._in_flight: Awaitable[None] | None = None
        self._error: BaseException | None = None
        self._ready = False

    async def write(self, payload: T) -> None:
        """Write ``payload`` from the task, timed."""
        await self.pacer.write(self._write_from_task, payload)

    async def _write_from_task(self, payload: T) -> None:
        # With a direct path, the task's writes go the same way (same context copy),
        # so a send wrapper that keeps state in a context variable sees one context.
        if self._write_now is None or self._context is None:
            await self._write(payload)
            return
        pending = run_in_task(None, self._context, self._write_now, payload)
        if pending is not None:
            await pending

    async def run(self, heartbeat: T | None, sse_options: SSEOptions | None = None) -> CloseReason:
        """Deliver until the subscription closes; return why it closed. With
        ``sse_options``: the ``retry:`` field first, the shutdown hint last. The
        stream's timer is stopped when it ends. One frame for all of it: an idle
        stream's task is parked here, and every frame costs memory per stream."""
        if self._write_now is not None:  # the task and context direct writes run in
            self._task = asyncio.current_task()
            self._context = contextvars.copy_context()
        self.pacer.start()  # here, not when made: a coroutine never run leaves no timer
        try:
            if sse_options is not None and sse_options.retry is not None:
                await self.write(sse.encode_retry(sse_options.retry))  # type: ignore[arg-type]
            subscription = self._subscription
            on_ready = self._on_ready if self._write_now is not None else None
            while True:
                try:
                    batch = await subscription.get_batch(self._max_batch, on_ready=on_ready)
                except SubscriptionClosed as closed:
                    if closed.reason not in _NOTHING_MORE_TO_WRITE:
                        await self._settle()
                    reason = closed.reason
                    break
                await self._settle()
                if batch:
                    await self.write(self._encode(batch))
                elif self.pacer.heartbeat_due:
                    self.pacer.heartbeat_due = False
                    if heartbeat is not None:
                        await self.write(heartbeat)
                    continue
                if self._period and not len(subscription):
                    await subscription.sleep(self._period)
            if sse_options is not None and reason is CloseReason.SERVER_SHUTDOWN:
                hint = sse.encode_retry(random.randint(1000, 5000))
                await self.write(hint)  # type: ignore[arg-type]
            return reason
        finally:
            self.stop()

    def stop(self) -> None:
        """The stream is over: cancel its timer."""
        self.pacer.stop()

    async def _settle(self) -> None:
        """Finish what the flusher left: a write still in flight, or its error."""
        error, self._error = self._error, None
        if error is not None:
            raise error
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            await self.pacer.finish(in_flight)

    def _on_ready(self) -> None:
        flusher = self._flusher
        if flusher is None:
            return
        if not self._ready:
            self._ready = True
            flusher.add(self)
        if len(self._subscription) >= self._max_batch or self._subscription.half_full:
            # A full write is queued, or the queue nears its bound (one large message
            # may do it): waiting longer to coalesce gains nothing and risks cutting
            # the client.
            flusher.hurry()

    def write_queued(self, cache: _EncodeCache) -> None:
        """Write what is queued now, unless the task was woken meanwhile (the
        flusher calls this in the task's context)."""
        self._ready = False
        subscription = self._subscription
        write_now = self._write_now
        pacer = self.pacer
        while write_now is not None and subscription.parked and self._in_flight is None:
            batch = subscription.take_batch(self._max_batch)
            if not batch:
                return
            pacer.write_started = now = pacer.loop.time()
            try:
                pending = write_now(cache.encode(batch, self._encode))
            except Exception as exc:  # the client is gone: the task raises it
                pacer.write_started = None
                self._error = exc
                subscription.wake()
                return
            if pending is not None:  # backed up: the task waits for the rest, timed
                self._in_flight = pending
                subscription.wake()
                return
            pacer.write_started = None
            pacer.last_write = now


class _EncodeCache:
    """The payload of the last batch encoded in one flush: subscribers that are up
    to date have the same batch, so it is encoded (joined) once, not once each."""

    __slots__ = ("_batch", "_encode", "_payload")

    def __init__(self) -> None:
        self._batch: list[Message] | None = None
        self._encode: object = None
        self._payload: Any = None

    def encode(self, batch: list[Message], encode: Callable[[list[Message]], T]) -> T:
        # List equality compares the messages by identity: the same messages.
        if encode is self._encode and batch == self._batch:
            return self._payload  # type: ignore[no-any-return]
        payload = encode(batch)
        self._batch, self._encode, self._payload = batch, encode, payload
        return payload


class _Flusher:
    """Writes, in one sweep, what arrived for streams whose tasks wait.

    A sweep runs on the loop turn after a message arrives for an idle stream, unless
    the last sweep ended too recently: then it is put off as
    :class:`~tornadose.delivery.coalescing.SweepPacing` decides (at most
    :data:`~tornadose.delivery.coalescing.DEFAULT_MAX_WAIT`), so that under load
    several messages share each connection's write. A put-off sweep is brought
    forward to the next turn as soon as a waiting stream has a full write queued
    (``max_batch`` messages) or half of its queue bound, so coalescing never makes
    a client that keeps up overflow its queue. Messages published in one turn
    (a burst) always reach each connection in one write (up to ``max_batch``
    messages), as a woken task would have written them, and a quiet stream's single
    message goes out on the next turn.
    """

    __slots__ = ("_loop", "_pacing", "_ready", "_timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        # Weakly: the flusher is the value of a weak-keyed table of loops, and must not
        # keep its own loop (and the streams queued on it) alive.
        self._loop = weakref.ref(loop)
        self._ready: list[_Stream[Any]] = []
        self._pacing = SweepPacing()
        #: The put-off sweep, while one is.
        self._timer: asyncio.TimerHandle | None = None

    def add(self, stream: _Stream[Any]) -> None:
        if not self._ready:
            loop = self._loop()
            if loop is None:
                return
            delay = self._pacing.delay(loop.time())
            if delay:
                self._timer = loop.call_later(delay, self._flush)
            else:
                loop.call_soon(self._flush)
        self._ready.append(stream)

    def hurry(self) -> None:
        """Sweep on the next loop turn instead of when the put-off sweep was due."""
        timer = self._timer
        if timer is not None:
            self._timer = None
            timer.cancel()
            loop = self._loop()
            if loop is not None:
                loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._timer = None
        loop = self._loop()
        if loop is None:
            return
        started = loop.time()
        try:
            self._sweep()
        finally:
            self._pacing.swept(started, loop.time())

    def _sweep(self) -> None:
        ready, self._ready = self._ready, []
        cache = _EncodeCache()
        for stream in ready:
            context = stream._context
            try:
                if context is not None:
                    run_in_task(stream._task, context, stream.write_queued, cache)
            except Exception:  # a bug: never leave a stream stuck, let its task go on
                logger.exception("direct delivery failed; the stream's task takes over")
                stream._ready = False
                stream._subscription.wake()


_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Flusher] = (
    weakref.WeakKeyDictionary()
)


def _flusher_for(loop: asyncio.AbstractEventLoop) -> _Flusher:
    flusher = _flushers.get(loop)
    if flusher is None:
        flusher = _flushers[loop] = _Flusher(loop)
    return flusher


class _Pacer:
    """The timing of one stream, on a single timer instead of one per write and wait.

    * Write timeout: a write still running ``write_timeout`` seconds after it
      started closes the subscription with ``WRITE_TIMEOUT`` (the adapter then aborts
      the connection).
    * Heartbeat: ``heartbeat`` seconds after the last write, :attr:`heartbeat_due`
      is set and the reader is woken with nothing to read: the loop writes a
      heartbeat.

    The timer fires when the next of these is due, and at least every
    ``write_timeout / 2`` seconds to notice a write that starts meanwhile, so a
    stalled write is cut between 1 and 1.5 times ``write_timeout`` after it started.
    While messages flow it fires at most once per ``heartbeat`` seconds.
    """

    __slots__ = (
        "_heartbeat",
        "_subscription",
        "_timer",
        "_write_timeout",
        "heartbeat_due",
        "last_write",
        "loop",
        "write_started",
    )

    def __init__(
        self, subscription: Subscription, write_timeout: float | None, heartbeat: float | None
    ) -> None:
        self._subscription = subscription
        self._write_timeout = write_timeout or None
        self._heartbeat = heartbeat or None
        self.loop = asyncio.get_running_loop()
        self.last_write = self.loop.time()
        self.write_started: float | None = None
        self.heartbeat_due = False
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Start the timer (the stream's loop begins)."""
        self.last_write = self.loop.time()
        self._arm()

    async def write(self, write: Callable[[T], Awaitable[None]], payload: T) -> None:
        """``write(payload)``, timed."""
        self.write_started = self.loop.time()
        try:
            await write(payload)
        finally:
            self.write_started = None
            self.last_write = self.loop.time()

    async def finish(self, in_flight: Awaitable[None]) -> None:
        """Wait for a write that started earlier (``write_started`` is set)."""
        try:
            await in_flight
        finally:
            self.write_started = None
            self.last_write = self.loop.time()

    def stop(self) -> None:
        """Cancel the timer (the stream is over)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm(self) -> None:
        now = self.loop.time()
        due: list[float] = []
        if self._write_timeout is not None:
            started = self.write_started
            if started is not None:
                due.append(started + self._write_timeout)
            else:
                due.append(now + self._write_timeout / 2)
        if self._heartbeat is not None:
            # During a write, look again a heartbeat later (the write may end).
            base = self.last_write if self.write_started is None else now
            due.append(base + self._heartbeat)
        self._timer = self.loop.call_at(min(due), self._tick) if due else None

    def _tick(self) -> None:
        now = self.loop.time()
        started = self.write_started
        if started is not None and self._write_timeout and now - started >= self._write_timeout:
            self._timer = None
            self._subscription.close(CloseReason.WRITE_TIMEOUT)
            return
        if started is None and self._heartbeat and now - self.last_write >= self._heartbeat:
            self.last_write = now  # one heartbeat per silent interval
            self.heartbeat_due = True
            self._subscription.wake()
        self._arm()
