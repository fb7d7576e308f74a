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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from tornadose.backends.redis.health import (
    REDIS_ERRORS,
    BackendHealth,
    Backoff,
    ErrorKind,
    Failure,
    classify,
)
from tornadose.backends.redis.layout import ENSURE_FLOOR, TRIM, entry_fields
from tornadose.core.errors import StoreRefused, StoreUnavailable
from tornadose.core.message import Message

__all__ = ["WRITE_BATCH", "Submission", "Submitter", "Writer"]

logger = logging.getLogger("tornadose.redis")

#: Submissions taken in one batch (sent as one transaction per channel), at most.
WRITE_BATCH = 256
#: Seconds between two trims by age of one channel by one process, at least.
TRIM_INTERVAL = 0.5


class Submitter(Protocol):
    """Who submitted: a ``RedisBackend``."""

    #: The channel's stream key.
    channel: str
    #: The channel's floor key (in the stream's hash slot).
    floor_key: str
    #: Seconds a submission waits for an unreachable Redis.
    publish_timeout: float

    #: The stream's approximate ``MAXLEN`` when its entries are older than ``retention_ms``.
    maxlen: int
    #: Milliseconds an entry stays in the stream, even beyond ``maxlen`` entries.
    retention_ms: int
    #: The stream's hard cap (``XADD ... MAXLEN ~``), whatever the entries' age.
    stream_maxlen: int

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


def _refused(name: str, failure: Failure) -> StoreRefused:
    return StoreRefused(
        f"{failure.describe()}; the message to {name!r} was not published (a refused "
        f"message is not sent again)",
        code=failure.code,
    )


def _still_redirected(submitter: Submitter, failure: Failure) -> StoreUnavailable:
    return StoreUnavailable(
        f"for {submitter.publish_timeout:g} s {failure.describe()}; the message to "
        f"{submitter.channel!r} was not published",
        kind=ErrorKind.REDIRECTED.value,
        code=failure.code,
    )


#: ``route(key)``: the client of the Redis node that holds ``key`` (one node: always
#: the same client; a cluster: the master of its slot).
Route = Callable[[str], Awaitable[aioredis.Redis]]


async def _refresh_nothing() -> None:
    return None


class Writer:
    """Sends the submissions of one connection, in order, through ``commands`` (one
    Redis) or the clients ``route`` picks per channel (a cluster, whose map
    ``refresh`` updates after a redirection or a lost node)."""

    def __init__(
        self,
        commands: aioredis.Redis | None,
        health: BackendHealth,
        reader: Any,
        *,
        route: Route | None = None,
        refresh: Callable[[], Awaitable[None]] = _refresh_nothing,
        cluster: bool = False,
    ) -> None:
        self.commands = commands
        self.health = health
        #: The reader: its ``channels`` (by key) tell whether a channel's reading started.
        self.reader = reader
        self.cluster = cluster
        self._route = route
        self._refresh = refresh
        self._outbox: deque[Submission] = deque()
        self._task: asyncio.Task[None] | None = None
        #: When each channel was last trimmed by age (loop time).
        self._trimmed: dict[str, float] = {}

    async def route(self, key: str) -> aioredis.Redis:
        """The client to send ``key``'s commands to."""
        if self._route is not None:
            return await self._route(key)
        assert self.commands is not None
        return self.commands

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
                    client = await self.route(head.submitter.channel)
                    await client.ping()
            except ResponseError:
                pass  # Redis answered (refusing PING, say): the batch says more
            except REDIS_ERRORS as exc:
                self.health.mark_down(classify(exc, cluster=self.cluster))
                await self._after_failure(exc)
                now = loop.time()
                while self._outbox and self._outbox[0].deadline <= now:
                    failed = self._outbox.popleft()
                    self._fail(failed, _unreachable(failed.submitter, exc))
                if self._outbox:
                    await asyncio.sleep(min(backoff.delay(), self._outbox[0].deadline - now))
                continue
            batch = self._take_batch()
            try:
                again = await self._send(batch)
            except Exception as exc:
                # Never leave a submission unanswered: whoever awaits it would hang.
                logger.exception("publishing to Redis failed")
                for submission in batch:
                    error = StoreUnavailable(
                        f"publishing failed: {exc}", maybe_published=True, kind="other"
                    )
                    self._fail(submission, error)
                continue
            if not again:
                backoff.reset()
                continue
            # Redirected (a cluster's slot moving): those go first again, in order,
            # after the map was refreshed and a short wait; failed at their deadline.
            now = loop.time()
            for submission, failure in reversed(again):
                if submission.deadline <= now:
                    self._fail(submission, _still_redirected(submission.submitter, failure))
                else:
                    self._outbox.appendleft(submission)
            if self._outbox:
                await asyncio.sleep(min(backoff.delay(), max(self._outbox[0].deadline - now, 0)))

    async def _after_failure(self, error: BaseException) -> None:
        """A cluster's map is refreshed after a lost node or a redirection."""
        if self.cluster:
            try:
                await self._refresh()
            except REDIS_ERRORS:
                logger.debug("could not refresh the Redis Cluster's map after %r", error)

    def _trim_due(self, name: str, now: float) -> bool:
        """Whether to trim ``name`` with this batch (each channel every
        :data:`TRIM_INTERVAL` s at most, from each process)."""
        if now - self._trimmed.get(name, -TRIM_INTERVAL) < TRIM_INTERVAL:
            return False
        self._trimmed[name] = now
        if len(self._trimmed) > 4 * WRITE_BATCH:  # forget channels not published lately
            self._trimmed = {k: t for k, t in self._trimmed.items() if now - t < TRIM_INTERVAL}
        return True

    def _take_batch(self) -> list[Submission]:
        batch: list[Submission] = []
        while self._outbox and len(batch) < WRITE_BATCH:
            if self._waits_for_reader(self._outbox[0]) is not None:
                break
            batch.append(self._outbox.popleft())
        return batch

    async def _send(self, batch: list[Submission]) -> list[tuple[Submission, Failure]]:
        """Send ``batch``: one transaction per channel, concurrently (each channel's
        submissions keep their order), and answer every submission, except those a
        cluster redirected: returned (in batch order), to be sent again."""
        by_channel: dict[str, list[Submission]] = {}
        for submission in batch:
            by_channel.setdefault(submission.submitter.channel, []).append(submission)
        outcomes = await asyncio.gather(
            *(self._send_channel(name, group) for name, group in by_channel.items())
        )
        again: dict[int, Failure] = {}
        failures = [failure for failure in outcomes if failure is not None]
        for (_, group), failure in zip(by_channel.items(), outcomes, strict=True):
            if failure is not None and failure.kind is ErrorKind.REDIRECTED:
                again.update((id(submission), failure) for submission in group)
        if any(f.kind in (ErrorKind.UNREACHABLE, ErrorKind.REDIRECTED) for f in failures):
            await self._after_failure(RuntimeError(failures[0].detail))
        else:
            self.health.mark_up()
        return [(s, again[id(s)]) for s in batch if id(s) in again]

    async def _send_channel(self, name: str, group: list[Submission]) -> Failure | None:
        """One ``MULTI``/``EXEC`` for the submissions ``group`` of channel ``name``: its
        floor first (so no entry is ever added without one, even right after Redis
        restarted), then its entries in order. Answers every submission of ``group``
        except when a cluster redirected the transaction (then nothing was added).
        Returns ``None`` when Redis ran the transaction, else what went wrong
        (counted in the health)."""
        submitter = group[0].submitter
        deadline = max(s.deadline for s in group)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(max(deadline - loop.time(), 1.0)):
                client = await self.route(name)
                pipe = client.pipeline(transaction=True)
                pipe.eval(ENSURE_FLOOR, 2, name, submitter.floor_key)
                # Without retention by age, XADD trims to about ``history`` itself.
                by_age = submitter.retention_ms > 0
                cap = submitter.stream_maxlen if by_age else submitter.maxlen
                for submission in group:
                    pipe.execute_command(
                        "XADD",
                        *(name, "MAXLEN", "~", cap, "*"),
                        *entry_fields(submission.message),
                    )
                trimming = by_age and self._trim_due(name, loop.time())
                if trimming:
                    pipe.eval(TRIM, 1, name, submitter.maxlen, submitter.retention_ms)
                floor, *results = await pipe.execute(raise_on_error=False)
                if trimming:
                    trimmed = results.pop()
                    if isinstance(trimmed, Exception):
                        logger.error("could not trim channel %r: %s", name, trimmed)
        except ResponseError as exc:
            # Refused as a whole (EXECABORT: an error while queueing): nothing was added.
            failure = classify(exc, cluster=self.cluster)
            self.health.mark_down(failure)
            if failure.kind is not ErrorKind.REDIRECTED:
                logger.error("Redis refused publishing to channel %r: %s", name, failure.detail)
                for submission in group:
                    self._fail(submission, _refused(name, failure))
            return failure
        except REDIS_ERRORS as exc:
            failure = classify(exc, cluster=self.cluster)
            self.health.mark_down(failure)
            for submission in group:
                error = StoreUnavailable(
                    f"the connection to Redis broke while publishing to {name!r}; the "
                    f"message may have been published: {exc}",
                    maybe_published=True,
                )
                self._fail(submission, error)
            return failure
        except Exception as exc:
            # Never leave a submission unanswered: whoever awaits it would hang.
            logger.exception("publishing to channel %r failed", name)
            failure = classify(exc, cluster=self.cluster)
            self.health.mark_down(failure)
            for submission in group:
                error = StoreUnavailable(
                    f"publishing failed: {exc}", maybe_published=True, kind="other"
                )
                self._fail(submission, error)
            return failure
        if isinstance(floor, Exception):
            logger.error("could not set the floor of channel %r: %s", name, floor)
        refused: Failure | None = None
        for submission, result in zip(group, results, strict=True):
            if isinstance(result, Exception):
                refused = classify(result, cluster=self.cluster)
                self._fail(submission, _refused(name, refused))
            elif not submission.future.done():
                submission.future.set_result(submission.message.with_id(result.decode()))
        if refused is not None:
            self.health.mark_down(refused)
        return None

    def _fail(self, submission: Submission, error: StoreUnavailable) -> None:
        future = submission.future
        if future.done() and not future.cancelled():
            return  # answered already: each submission is answered (and counted) once
        submission.submitter.failed(error)
        if not future.done():
            future.set_exception(error)
            future.exception()  # logged by failed(): no "never retrieved" warning
