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
* with ``period`` seconds, writes are spaced at least that far apart: messages
  arriving meanwhile wait in the (bounded) queue and go out together.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tornadose import sse
from tornadose.errors import SubscriptionClosed
from tornadose.subscription import CloseReason, Subscription

__all__ = [
    "DEFAULT_HEARTBEAT",
    "DEFAULT_MAX_BATCH",
    "SSEOptions",
    "stream_sse",
    "stream_websocket",
]

#: Seconds of silence after which an SSE stream gets a heartbeat comment.
DEFAULT_HEARTBEAT = 15.0
#: The most messages written to one connection in one write.
DEFAULT_MAX_BATCH = 64


@dataclass(frozen=True, slots=True)
class SSEOptions:
    """How an SSE stream is written; checked when made, so a bad value fails at
    startup rather than at the first client."""

    #: Seconds of silence before a heartbeat comment; ``None`` or ``0``: none.
    heartbeat: float | None = DEFAULT_HEARTBEAT
    #: Seconds between writes (throttling); ``None``: write as messages come.
    period: float | None = None
    #: Milliseconds a client waits before reconnecting, sent when the stream opens.
    retry: int | None = None
    #: The most messages in one write.
    max_batch: int = DEFAULT_MAX_BATCH

    def __post_init__(self) -> None:
        for name in ("heartbeat", "period"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must not be negative, not {value}")
        if self.retry is not None:
            sse.encode_retry(self.retry)
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {self.max_batch}")


async def stream_sse(
    subscription: Subscription,
    write: Callable[[bytes], Awaitable[None]],
    options: SSEOptions = SSEOptions(),
) -> CloseReason:
    """Write ``subscription``'s messages as SSE events until it closes."""
    if options.retry is not None:
        await write(sse.encode_retry(options.retry))
    while True:
        try:
            batch = await subscription.get_batch(options.max_batch, timeout=options.heartbeat)
        except SubscriptionClosed as closed:
            return closed.reason
        if not batch:
            await write(sse.HEARTBEAT)
            continue
        await write(batch[0].sse if len(batch) == 1 else b"".join(m.sse for m in batch))
        if options.period:
            await subscription.sleep(options.period)


async def stream_websocket(
    subscription: Subscription,
    send: Callable[[str], Awaitable[None]],
    *,
    period: float | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
) -> CloseReason:
    """Send ``subscription``'s messages, one text frame each, until it closes."""
    while True:
        try:
            batch = await subscription.get_batch(max_batch)
        except SubscriptionClosed as closed:
            return closed.reason
        for message in batch:
            await send(message.websocket)
        if period:
            await subscription.sleep(period)
