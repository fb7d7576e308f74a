"""The replay query: how a client that last saw an entry id starts, asked of Redis.

:func:`plan_resume` reads, in one transaction, the floor, the stream's state and the
entries the client missed up to what this process has delivered (the channel's
cursor), and decides (:func:`~tornadose.backends.redis.layout.replay_gap`): resumed
with the replay, or a reset, never a silent gap. Live entries the reader delivers
meanwhile wait in the held subscription; the answer's ``skip`` drops those the replay
holds (or the client saw).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from tornadose.backends.redis.layout import ZERO, StreamId, replay_gap
from tornadose.backends.redis.reader import Channel, stream_info
from tornadose.core.history import Resume
from tornadose.core.message import Message
from tornadose.core.reasons import ResetReason, ResumeStatus

__all__ = ["plan_resume", "through"]

#: ``decode(entry_id, fields)``: the message of an entry, ``None`` if it is invalid
#: (the backend's: it hands out the message it already has for that entry, if any).
Decode = Callable[[Any, Any], Message | None]


def through(last: StreamId) -> Callable[[Message], bool]:
    """A :attr:`Resume.skip`: live messages up to ``last``."""

    def skip(message: Message) -> bool:
        parsed = StreamId.parse(message.id) if message.id is not None else None
        return parsed is not None and parsed <= last

    return skip


async def plan_resume(
    commands: aioredis.Redis,
    channel: Channel,
    last_event_id: str,
    *,
    history: int,
    max_age: float | None,
    decode: Decode,
) -> Resume:
    """How a subscriber of ``channel`` that last saw ``last_event_id`` starts, with the
    live messages it must skip (those the replay holds or it has seen). Raises the
    network's errors (the caller retries)."""
    await channel.ready.wait()
    cursor = channel.cursor
    if cursor is None or channel.floor is None:
        # Redis refuses the channel's keys (the reader tries again from time to time).
        raise ResponseError(channel.error or f"channel {channel.key!r} is not read yet")

    def reset(reason: ResetReason) -> Resume:
        reset_id = str(cursor) if cursor > ZERO else None
        return Resume(
            ResumeStatus.RESET,
            last_event_id,
            reason=reason,
            reset_id=reset_id,
            skip=through(cursor),
        )

    after = StreamId.parse(last_event_id)
    if after is None:
        return reset(ResetReason.MALFORMED_ID)
    # One atomic look: the floor now (another process may have raised it), the
    # stream's state, what the client missed up to this process's cursor.
    pipe = commands.pipeline(transaction=True)
    pipe.get(channel.floor_key)
    pipe.xinfo_stream(channel.key)
    pipe.xrange(channel.key, f"({after}", str(cursor), count=history + 1)
    pipe.xrange(channel.key, "-", "+", count=1)
    pipe.xrange(channel.key, str(after), str(after), count=1)
    pipe.time()
    raw_floor, info, entries, first, itself, (seconds, microseconds) = await pipe.execute(
        raise_on_error=False
    )
    floor = StreamId.parse(raw_floor) if isinstance(raw_floor, bytes) else channel.floor
    if floor is None or after < floor:
        return reset(ResetReason.UNKNOWN_EPOCH)
    for answer in (entries, first, itself):
        if isinstance(answer, Exception):
            raise answer
    first_id = StreamId.parse(first[0][0]) if first else None
    stream = stream_info(info)
    within = stream is not None and first_id is not None and first_id <= after <= stream.newest
    if within and not itself:
        # The client's entry should be in the stream and is not: Redis lost it (a
        # failover to a replica that never got it), or it was deleted. What followed
        # it may be lost too: never resume across that.
        return reset(ResetReason.DATA_LOST)
    if after >= cursor:
        # The client saw more than this process has delivered: skip up to its id.
        if stream is None or after > stream.newest:
            return reset(ResetReason.UNKNOWN_ID)
        return Resume(ResumeStatus.RESUMED, last_event_id, skip=through(after))
    if stream is None or stream.newest < cursor or channel.raise_floor_to is not None:
        # Redis lost entries this process delivered (its reader has not judged
        # that yet, or not raised the floor yet): what follows ``after`` has a hole.
        return reset(ResetReason.DATA_LOST)
    reason = replay_gap(
        after,
        [StreamId.parse(entry_id) or ZERO for entry_id, _ in entries],
        first_id,
        history=history,
        max_age_ms=None if max_age is None else int(max_age * 1000),
        now_ms=seconds * 1000 + microseconds // 1000,
    )
    if reason is not None:
        return reset(reason)
    replay = [m for m in (decode(i, f) for i, f in entries) if m is not None]
    return Resume(ResumeStatus.RESUMED, last_event_id, replay=replay, skip=through(cursor))
