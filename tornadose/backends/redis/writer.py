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
  or fails with :class:`~tornadose.core.errors.StoreUnavailable`: after its
  ``publish_timeout`` if its node could not be reached or connected to until then
  (``maybe_published=False``: nothing was sent), at once if the connection broke after
  sending (``maybe_published=True``) or Redis refused it
  (:class:`~tornadose.core.errors.StoreRefused`). A failure is logged and counted by
  its backend.
* **Each node on its own**: a channel whose node (a cluster's master) cannot be
  reached waits, its submissions in order, tried again after 50 ms doubling to 2 s;
  the channels of other nodes are sent meanwhile, not delayed by it.
* **After the reader**: while a channel with subscribers here waits for its reader to
  start, its submissions wait too, so those subscribers see them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
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
from tornadose.backends.redis.reader import Channel
from tornadose.backends.redis.transaction import AskRoute, asked, transaction
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


class ReadsChannels(Protocol):
    """The process's reader, as the writer sees it: a ``Reader`` or ``ClusterReader``."""

    #: The channels read here, by key (a channel's ``ready`` is set once its reading
    #: started).
    @property
    def channels(self) -> Mapping[str, Channel]: ...


@dataclass
class Submission:
    """One message to add to ``submitter``'s stream, answered through ``future``."""

    submitter: Submitter
    message: Message
    future: asyncio.Future[Message]
    #: Loop time after which it fails if Redis could not be reached.
    deadline: float


def _unreachable(
    submitter: Submitter, cause: BaseException | str | None = None
) -> StoreUnavailable:
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


def _still(submitter: Submitter, failure: Failure) -> StoreUnavailable:
    """Redirected, or busy, until the submission's deadline."""
    return StoreUnavailable(
        f"for {submitter.publish_timeout:g} s {failure.describe()}; the message to "
        f"{submitter.channel!r} was not published",
        kind=failure.kind.value,
        code=failure.code,
    )


@dataclass
class _Hold:
    """A channel whose submissions wait before they are sent again: its node could
    not be reached (nothing was sent) or a cluster redirected its transaction."""

    until: float
    failure: Failure
    backoff: Backoff = field(default_factory=Backoff)


@dataclass
class _Attempt:
    """Whether a channel's transaction left (its connection was taken and connected)."""

    sent: bool = False


#: ``route(key)``: the client of the Redis node that holds ``key`` (one node: always
#: the same client; a cluster: the master of its slot).
Route = Callable[[str], Awaitable[aioredis.Redis]]


async def _refresh_nothing() -> None:
    return None


class Writer:
    """Sends the submissions of one connection, in order, through ``commands`` (one
    Redis) or the clients ``route`` picks per channel (a cluster, whose map
    ``refresh`` updates after a redirection or a lost node; ``ask`` gives the client of
    the node an ``ASK`` redirection names)."""

    def __init__(
        self,
        commands: aioredis.Redis | None,
        health: BackendHealth,
        reader: ReadsChannels,
        *,
        route: Route | None = None,
        refresh: Callable[[], Awaitable[None]] = _refresh_nothing,
        cluster: bool = False,
        ask: AskRoute | None = None,
    ) -> None:
        self.commands = commands
        self.health = health
        #: The reader: its ``channels`` (by key) tell whether a channel's reading started.
        self.reader = reader
        self.cluster = cluster
        self._route = route
        self._refresh = refresh
        self._ask = ask
        self._outbox: deque[Submission] = deque()
        self._task: asyncio.Task[None] | None = None
        #: When each channel was last trimmed by age (loop time).
        self._trimmed: dict[str, float] = {}
        #: Channels whose submissions wait (their node unreachable, or redirected).
        self._held: dict[str, _Hold] = {}
        #: Set when a submission is queued (the writer may be waiting for one).
        self._wake = asyncio.Event()

    async def route(self, key: str) -> aioredis.Redis:
        """The client to send ``key``'s commands to."""
        if self._route is not None:
            return await self._route(key)
        assert self.commands is not None
        return self.commands

    def enqueue(self, submission: Submission) -> None:
        """Queue ``submission``; the writer sends them in order."""
        self._outbox.append(submission)
        self._wake.set()
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

    def _held_until(self, name: str, now: float) -> float | None:
        hold = self._held.get(name)
        return hold.until if hold is not None and hold.until > now else None

    async def _write_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while self._outbox:
            now = loop.time()
            self._expire(now)
            batch, blocker = self._take_batch(now)
            if not batch:
                if self._outbox:
                    await self._wait(now, blocker)
                continue
            try:
                again = await self._send(batch)
            except Exception as exc:
                # Never leave a submission unanswered: whoever awaits it would hang.
                logger.exception("publishing to Redis failed")
                for submission in batch:
                    error = StoreUnavailable(
                        f"publishing failed: {classify(exc).detail}",
                        maybe_published=True,
                        kind="other",
                    )
                    self._fail(submission, error)
                continue
            # Not sent (their node unreachable, or a cluster redirected them): first
            # again, in order, once their channel's wait is over; failed at their deadline.
            for submission in reversed(again):
                self._outbox.appendleft(submission)

    def _expire(self, now: float) -> None:
        """Fail the queued submissions whose deadline passed while they waited (for
        their node, or their channel's reader)."""
        if not self._held and (not self._outbox or self._waits_for_reader(self._outbox[0]) is None):
            return  # nothing waits: every queued submission goes with the next batches
        kept: deque[Submission] = deque()
        for submission in self._outbox:
            if submission.deadline > now:
                kept.append(submission)
                continue
            hold = self._held.get(submission.submitter.channel)
            if hold is not None and hold.failure.kind in (ErrorKind.REDIRECTED, ErrorKind.BUSY):
                self._fail(submission, _still(submission.submitter, hold.failure))
            else:
                cause = hold.failure.detail if hold is not None else None
                self._fail(submission, _unreachable(submission.submitter, cause))
        self._outbox = kept
        if not kept:
            self._held.clear()

    async def _wait(self, now: float, blocker: asyncio.Event | None) -> None:
        """Nothing can be sent now: wait until a channel's wait is over, a deadline
        passes, a new submission comes, or (``blocker``) the reader that the first
        sendable submission waits for has started."""
        ends = [hold.until for hold in self._held.values() if hold.until > now]
        ends += [submission.deadline for submission in self._outbox]
        timeout = max(min(ends, default=now + 1.0) - now, 0.001)
        event = blocker if blocker is not None else self._wake
        if blocker is None:
            self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

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

    def _take_batch(self, now: float) -> tuple[list[Submission], asyncio.Event | None]:
        """Up to :data:`WRITE_BATCH` queued submissions, in order, leaving those of
        channels that wait for their node in the queue (in their order); stops before
        one whose channel's reader is still starting, and returns that reader's event
        too (``None`` if it did not stop there)."""
        batch: list[Submission] = []
        if not self._held:
            while self._outbox and len(batch) < WRITE_BATCH:
                ready = self._waits_for_reader(self._outbox[0])
                if ready is not None:
                    return batch, ready
                batch.append(self._outbox.popleft())
            return batch, None
        kept: deque[Submission] = deque()
        blocker: asyncio.Event | None = None
        while self._outbox and len(batch) < WRITE_BATCH:
            submission = self._outbox[0]
            if self._held_until(submission.submitter.channel, now) is not None:
                kept.append(self._outbox.popleft())
                continue
            blocker = self._waits_for_reader(submission)
            if blocker is not None:
                break
            batch.append(self._outbox.popleft())
        kept.extend(self._outbox)
        self._outbox = kept
        return batch, blocker

    async def _send(self, batch: list[Submission]) -> list[Submission]:
        """Send ``batch``: one transaction per channel, concurrently (each channel's
        submissions keep their order; a channel whose node does not answer delays no
        other), and answer every submission, except those that were not sent because
        their node was unreachable or a cluster redirected them: returned (in batch
        order), their channel held back for a growing wait (50 ms doubling to 2 s)."""
        by_channel: dict[str, list[Submission]] = {}
        for submission in batch:
            by_channel.setdefault(submission.submitter.channel, []).append(submission)
        outcomes = await asyncio.gather(
            *(self._send_channel(name, group) for name, group in by_channel.items())
        )
        now = asyncio.get_running_loop().time()
        again: set[int] = set()
        failures: list[Failure] = []
        for (name, group), (failure, retry) in zip(by_channel.items(), outcomes, strict=True):
            if failure is not None:
                failures.append(failure)
            if not retry:
                self._held.pop(name, None)
                continue
            assert failure is not None
            hold = self._held.get(name)
            if hold is None:
                hold = self._held[name] = _Hold(now, failure)
            hold.failure = failure
            hold.until = now + hold.backoff.delay()
            again.update(id(submission) for submission in group)
        lost = [f for f in failures if f.kind in (ErrorKind.UNREACHABLE, ErrorKind.REDIRECTED)]
        if lost:
            await self._after_failure(RuntimeError(lost[0].detail))
        return [s for s in batch if id(s) in again]

    async def _send_channel(
        self, name: str, group: list[Submission]
    ) -> tuple[Failure | None, bool]:
        """One ``MULTI``/``EXEC`` for the submissions ``group`` of channel ``name``: its
        floor first (so no entry is ever added without one, even right after Redis
        restarted), then its entries in order.

        Returns what went wrong (``None``: Redis ran the transaction; counted in the
        health), and whether to send ``group`` again: when nothing was sent (the
        channel's node could not be reached or connected to, or a cluster redirected
        the transaction); every other submission of ``group`` is answered."""
        submitter = group[0].submitter
        deadline = max(s.deadline for s in group)
        loop = asyncio.get_running_loop()
        attempt = _Attempt()
        try:
            async with asyncio.timeout(max(deadline - loop.time(), 1.0)):
                client = await self.route(name)
                trimming = submitter.retention_ms > 0 and self._trim_due(name, loop.time())
                try:
                    floor, *results = await self._transaction(
                        client, name, group, trimming, attempt
                    )
                except ResponseError as exc:
                    node = asked(exc)
                    if not self.cluster or self._ask is None or node is None:
                        raise
                    # The slot is migrating and its keys are on the target already:
                    # nothing was added (the transaction was aborted); sent there.
                    attempt.sent = False
                    target = await self._ask(*node)
                    floor, *results = await self._transaction(
                        target, name, group, trimming, attempt, asking=True
                    )
                if trimming:
                    trimmed = results.pop()
                    if isinstance(trimmed, Exception):
                        logger.error(
                            "could not trim channel %r: %s", name, classify(trimmed).detail
                        )
        except ResponseError as exc:
            # Refused as a whole (EXECABORT: an error while queueing): nothing was added.
            failure = classify(exc, cluster=self.cluster)
            self.health.mark_down(failure)
            if failure.kind in (ErrorKind.REDIRECTED, ErrorKind.BUSY):
                return failure, True  # nothing was added: sent again, in order
            logger.error("Redis refused publishing to channel %r: %s", name, failure.detail)
            for submission in group:
                self._fail(submission, _refused(name, failure))
            return failure, False
        except REDIS_ERRORS as exc:
            failure = classify(exc, cluster=self.cluster)
            self.health.mark_down(failure)
            if failure.kind is ErrorKind.BUSY and not attempt.sent:
                return failure, True  # LOADING: nothing was added
            if failure.kind is ErrorKind.REFUSED:  # a wrong password, say
                logger.error("Redis refused publishing to channel %r: %s", name, failure.detail)
                for submission in group:
                    self._fail(submission, _refused(name, failure))
                return failure, False
            if not attempt.sent:
                return failure, True  # nothing was sent: waits for the node, in order
            for submission in group:
                error = StoreUnavailable(
                    f"the connection to Redis broke while publishing to {name!r}; the "
                    f"message may have been published: {failure.detail}",
                    maybe_published=True,
                )
                self._fail(submission, error)
            return failure, False
        except Exception as exc:
            # Never leave a submission unanswered: whoever awaits it would hang.
            logger.exception("publishing to channel %r failed", name)
            failure = classify(exc, cluster=self.cluster)
            self.health.mark_down(failure)
            for submission in group:
                error = StoreUnavailable(
                    f"publishing failed: {failure.detail}", maybe_published=True, kind="other"
                )
                self._fail(submission, error)
            return failure, False
        self.health.mark_up()  # Redis ran the transaction
        if isinstance(floor, Exception):
            logger.error("could not set the floor of channel %r: %s", name, classify(floor).detail)
        refused: Failure | None = None
        for submission, result in zip(group, results, strict=True):
            if isinstance(result, Exception):
                refused = classify(result, cluster=self.cluster)
                self._fail(submission, _refused(name, refused))
            elif not submission.future.done():
                submission.future.set_result(submission.message.with_id(result.decode()))
        if refused is not None:
            self.health.mark_down(refused)
        return refused, False

    async def _transaction(
        self,
        client: aioredis.Redis,
        name: str,
        group: list[Submission],
        trimming: bool,
        attempt: _Attempt,
        *,
        asking: bool = False,
    ) -> list[Any]:
        """Run ``group``'s transaction on ``client`` (``ASKING`` first if ``asking``);
        ``attempt.sent`` is set once it leaves (a failure before sent nothing)."""
        submitter = group[0].submitter
        pipe = await transaction(client, asking=asking)
        try:
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
            if trimming:
                pipe.eval(TRIM, 1, name, submitter.maxlen, submitter.retention_ms)
            attempt.sent = True
            return list(await pipe.execute(raise_on_error=False))
        finally:
            await pipe.reset()  # type: ignore[no-untyped-call]

    def _fail(self, submission: Submission, error: StoreUnavailable) -> None:
        future = submission.future
        if future.done() and not future.cancelled():
            return  # answered already: each submission is answered (and counted) once
        submission.submitter.failed(error)
        if not future.done():
            future.set_exception(error)
            future.exception()  # logged by failed(): no "never retrieved" warning
