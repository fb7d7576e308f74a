"""The writer: submissions go to Redis in order, pipelined, each answered exactly once.

Guarantees:

* **Order**: submissions of a process are added to each stream in the order they
  were made. There is no order between channels.
* **Batches**: the writer takes the submissions queued while the previous batch was
  on its way, up to :data:`WRITE_BATCH`, stopping before one whose channel's reader
  is still starting (see *After the reader*).
* **Isolated, per channel**: a batch's entries of one channel are sent as one
  ``MULTI``/``EXEC`` holding only that channel's keys. No other client's entry
  interleaves with them, and they become visible to every reader, in every process,
  at once: a reader less than ``READ_COUNT - WRITE_BATCH`` entries behind delivers
  them in one go. So a burst submitted to a channel without an ``await`` in between
  reaches that channel's subscribers in one delivery, as it does in memory, as long
  as it fits in one batch. It is not all or none: Redis never rolls a transaction
  back, so each entry succeeds or fails on its own (a refused ``XADD`` fails its own
  submission; the others are added).
* **One channel per transaction**: the channels of a batch get one transaction each,
  sent concurrently; none spans channels, whose keys Redis Cluster spreads over hash
  slots (a transaction over several slots fails with ``CROSSSLOT``; a channel's own
  two keys share one only if its name has a hash tag, such as ``{ticks}``).
* **Answered**: every submission's future completes with the message and its entry id,
  or fails with :class:`~tornadose.core.errors.StoreUnavailable` (within its
  ``publish_timeout`` if Redis cannot be reached; ``maybe_published=True`` if the
  connection broke after sending). A failure is logged and counted by its backend.
* **After the reader**: while a channel with subscribers here waits for its reader to
  start, its submissions wait too, so those subscribers see them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis

from tornadose.backends.redis.health import NETWORK_ERRORS, BackendHealth, Backoff
from tornadose.backends.redis.layout import ENSURE_FLOOR, FLOOR_SUFFIX, entry_fields
from tornadose.backends.redis.reader import Reader
from tornadose.core.errors import StoreUnavailable
from tornadose.core.message import Message

__all__ = ["WRITE_BATCH", "Submission", "Submitter", "Writer"]

logger = logging.getLogger("tornadose.redis")

#: Submissions taken in one batch (sent as one transaction per channel), at most.
WRITE_BATCH = 256


class Submitter(Protocol):
    """Who submitted: a ``RedisBackend``."""

    #: The channel's stream key.
    channel: str
    #: The stream's approximate ``MAXLEN``.
    maxlen: int
    #: Seconds a submission waits for an unreachable Redis.
    publish_timeout: float

    def failed(self, error: StoreUnavailable) -> None:
        """A submission failed (count and log it)."""


@dataclass
class Submission:
    """One message to add to ``submitter``'s stream, answered through ``future``."""

    submitter: Submitter
    message: Message
    future: asyncio.Future[Message]
    #: Loop time after which it fails if Redis could not be reached.
    deadline: float


def _unreachable(submitter: Submitter, cause: BaseException | None = None) -> StoreUnavailable:
    detail = f": {cause}" if cause is not None else ""
    return StoreUnavailable(
        f"Redis was unreachable for {submitter.publish_timeout:g} s; the message to "
        f"{submitter.channel!r} was not published{detail}"
    )


class Writer:
    """Sends the submissions of one connection, in order, through ``commands``."""

    def __init__(self, commands: aioredis.Redis, health: BackendHealth, reader: Reader) -> None:
        self.commands = commands
        self.health = health
        self.reader = reader
        self._outbox: deque[Submission] = deque()
        self._task: asyncio.Task[None] | None = None

    def enqueue(self, submission: Submission) -> None:
        """Queue ``submission``; the writer sends them in order."""
        self._outbox.append(submission)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._write_forever())

    def pending(self, submitter: Submitter) -> list[asyncio.Future[Message]]:
        """The submissions of ``submitter`` not yet answered."""
        return [s.future for s in self._outbox if s.submitter is submitter]

    async def drain(self) -> None:
        """Wait until every queued submission is answered."""
        while self._task is not None and not self._task.done():
            await asyncio.wait([self._task])

    def _waits_for_reader(self, submission: Submission) -> asyncio.Event | None:
        channel = self.reader.channels.get(submission.submitter.channel)
        return channel.ready if channel is not None and not channel.ready.is_set() else None

    async def _write_forever(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        while self._outbox:
            head = self._outbox[0]
            ready = self._waits_for_reader(head)
            if ready is not None:
                # A subscriber here waits for its channel's reader: publish after it
                # starts, so that subscriber sees what this process submits next.
                try:
                    await asyncio.wait_for(ready.wait(), head.deadline - loop.time())
                except TimeoutError:
                    self._fail(self._outbox.popleft(), _unreachable(head.submitter))
                continue
            try:
                # Bounded by the deadline even when Redis accepts but does not answer.
                async with asyncio.timeout(max(head.deadline - loop.time(), 0.05)):
                    await self.commands.ping()
            except (*NETWORK_ERRORS, TimeoutError) as exc:
                self.health.mark_down()
                now = loop.time()
                while self._outbox and self._outbox[0].deadline <= now:
                    failed = self._outbox.popleft()
                    self._fail(failed, _unreachable(failed.submitter, exc))
                if self._outbox:
                    await asyncio.sleep(min(backoff.delay(), self._outbox[0].deadline - now))
                continue
            backoff.reset()
            batch = self._take_batch()
            try:
                await self._send(batch)
            except Exception as exc:
                # Never leave a submission unanswered: whoever awaits it would hang.
                logger.exception("publishing to Redis failed")
                for submission in batch:
                    error = StoreUnavailable(f"publishing failed: {exc}", maybe_published=True)
                    self._fail(submission, error)

    def _take_batch(self) -> list[Submission]:
        batch: list[Submission] = []
        while self._outbox and len(batch) < WRITE_BATCH:
            if self._waits_for_reader(self._outbox[0]) is not None:
                break
            batch.append(self._outbox.popleft())
        return batch

    async def _send(self, batch: list[Submission]) -> None:
        """Send ``batch``: one transaction per channel, concurrently (each channel's
        submissions keep their order), and answer every submission."""
        by_channel: dict[str, list[Submission]] = {}
        for submission in batch:
            by_channel.setdefault(submission.submitter.channel, []).append(submission)
        reached = await asyncio.gather(
            *(self._send_channel(name, group) for name, group in by_channel.items())
        )
        if all(reached):
            self.health.mark_up()
        else:
            self.health.mark_down()

    async def _send_channel(self, name: str, group: list[Submission]) -> bool:
        """One ``MULTI``/``EXEC`` for the submissions ``group`` of channel ``name``: its
        floor first (so no entry is ever added without one, even right after Redis
        restarted), then its entries in order. Answers every submission of ``group``;
        returns whether Redis answered (``False``: the connection failed)."""
        pipe = self.commands.pipeline(transaction=True)
        pipe.eval(ENSURE_FLOOR, 2, name, name + FLOOR_SUFFIX)
        for submission in group:
            pipe.execute_command(
                "XADD",
                name,
                "MAXLEN",
                "~",
                submission.submitter.maxlen,
                "*",
                *entry_fields(submission.message),
            )
        deadline = max(s.deadline for s in group)
        try:
            async with asyncio.timeout(max(deadline - asyncio.get_running_loop().time(), 1.0)):
                floor, *results = await pipe.execute(raise_on_error=False)
        except (*NETWORK_ERRORS, TimeoutError) as exc:
            for submission in group:
                error = StoreUnavailable(
                    f"the connection to Redis broke while publishing to {name!r}; the "
                    f"message may have been published: {exc}",
                    maybe_published=True,
                )
                self._fail(submission, error)
            return False
        except Exception as exc:
            # Never leave a submission unanswered: whoever awaits it would hang.
            logger.exception("publishing to channel %r failed", name)
            for submission in group:
                error = StoreUnavailable(f"publishing failed: {exc}", maybe_published=True)
                self._fail(submission, error)
            return True
        if isinstance(floor, Exception):
            logger.error("could not set the floor of channel %r: %s", name, floor)
        for submission, result in zip(group, results, strict=True):
            if isinstance(result, Exception):
                self._fail(submission, StoreUnavailable(f"Redis refused the message: {result}"))
            elif not submission.future.done():
                submission.future.set_result(submission.message.with_id(result.decode()))
        return True

    def _fail(self, submission: Submission, error: StoreUnavailable) -> None:
        future = submission.future
        if future.done() and not future.cancelled():
            return  # answered already: each submission is answered (and counted) once
        submission.submitter.failed(error)
        if not future.done():
            future.set_exception(error)
            future.exception()  # logged by failed(): no "never retrieved" warning
