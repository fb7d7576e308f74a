"""``RedisStore``: one channel shared by many processes and machines, through Redis Streams.

Needs the ``redis`` extra (``pip install 'tornadose[redis]'``) and Redis 7.0 or newer.

Each process publishes with ``XADD`` and reads with one connection of its own that
serves every ``RedisStore`` of the process with the same connection settings,
reading only the channels that have subscribers here. Every process delivers a
channel's messages in the stream's order, so all clients of all processes see the
same messages in the same order, with the same ids: a client can resume on any
process. The stream layout, for programs that publish with ``XADD`` themselves, is
described in :mod:`tornadose.backends.redis.layout`.

Guarantees, beyond those of every store (:mod:`tornadose.core.store`):

* **Acknowledged means stored**: awaiting ``submit()`` returns once Redis has added
  the message to the stream. If Redis cannot be reached within ``publish_timeout``
  seconds (default 5; the store retries meanwhile), it raises
  :class:`~tornadose.core.errors.StoreUnavailable` and the message was not published; if
  the connection breaks after the message was sent, it raises ``StoreUnavailable``
  with ``maybe_published=True``. A failure is also logged and counted
  (``publish_failures``), so one is never silent even when nobody awaits.
* **No silent loss across outages**: subscribers stay connected while Redis is
  down (heartbeats go on). The reader reconnects with backoff and continues after
  the last entry it delivered, so nothing is lost if Redis kept its data. If Redis
  lost it (a restart without persistence: the channel's floor key changed), or
  trimmed entries before this process read them, every subscriber gets a
  ``tornadose.reset`` event with reason ``data_lost`` before the messages that follow.
* **Resume anywhere**: a client that sends ``Last-Event-ID`` gets every later entry
  still in the stream (up to ``history`` of them, younger than ``history_max_age``),
  then live ones, with no gap and no duplicate, or the reset signal. While the
  replay is fetched, live messages for it wait in its queue.
* **A broken reader is never silent**: connection losses are logged (``ERROR`` once
  per outage, ``INFO`` on recovery) and visible in :meth:`RedisStore.snapshot`
  (``backend_up``, ``backend_errors``) and in the metrics. An invalid entry is
  skipped, logged and counted (``invalid_entries``) and never stops the reader.

Limits: a subscriber without ``Last-Event-ID`` gets the messages added after its
process started reading the channel (for the first subscriber of a channel in a
process, one round trip after it registers). Do not ``XDEL`` entries of a channel's
stream: a client resuming across a deleted entry is not told (trimming is fine); nor
delete the stream itself while it is read (one deleted and filled again between two
reads can go unnoticed).
Deleting the floor key is harmless (it is set again from the stream). Detecting lost
data relies on Redis's clock not going back across a restart. With AOF, Redis keeps
acknowledged messages across a crash only with ``appendfsync always``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from tornadose.backends.redis.layout import (
    ENSURE_FLOOR,
    FLOOR_SUFFIX,
    RAISE_FLOOR,
    ZERO,
    Continuity,
    InvalidEntry,
    StreamId,
    continuity,
    decode_entry,
    entry_fields,
    replay_gap,
)
from tornadose.core.errors import StoreClosed, StoreUnavailable
from tornadose.core.history import Resume, control_message
from tornadose.core.message import Message
from tornadose.core.reasons import OverflowPolicy, ResetReason, ResumeStatus
from tornadose.core.store import BaseStore, Published
from tornadose.core.subscription import Subscription

__all__ = ["DEFAULT_PUBLISH_TIMEOUT", "BackendHealth", "RedisConnection", "RedisStore"]

logger = logging.getLogger("tornadose.redis")

#: Seconds ``submit()`` waits for an unreachable Redis before it gives up.
DEFAULT_PUBLISH_TIMEOUT = 5.0
#: Entries read per channel per round trip, at most.
READ_COUNT = 512
#: Milliseconds a reader's wait for new entries blocks before it looks around again.
BLOCK_MS = 1000
#: Connections a process uses for publishing and resume queries, at most.
COMMAND_CONNECTIONS = 16
#: Submissions sent in one pipeline, at most.
WRITE_BATCH = 256
_BACKOFF_FIRST, _BACKOFF_MAX = 0.05, 2.0
_NETWORK_ERRORS = (RedisError, OSError)


class _Backoff:
    """Exponential backoff with jitter, from 50 ms up to 2 s."""

    def __init__(self) -> None:
        self._next = _BACKOFF_FIRST

    def reset(self) -> None:
        self._next = _BACKOFF_FIRST

    def delay(self) -> float:
        delay = self._next * random.uniform(0.5, 1.0)
        self._next = min(self._next * 2, _BACKOFF_MAX)
        return delay


@dataclass
class BackendHealth:
    """The state of one Redis connection, shared by the stores that use it."""

    #: Whether the last round trip to Redis (a read or a publish) succeeded.
    up: bool = True
    #: Failed round trips to Redis (reads and writes), since the start.
    errors: int = 0

    def mark_up(self) -> None:
        self.up = True

    def mark_down(self) -> None:
        self.up = False
        self.errors += 1


@dataclass
class _Submission:
    store: RedisStore
    message: Message
    future: asyncio.Future[Message]
    deadline: float


class _Channel:
    """What a connection reads of one stream, for the stores with subscribers here."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.floor_key = key + FLOOR_SUFFIX
        self.stores: set[RedisStore] = set()
        #: The last entry delivered here (``None`` until the reader starts reading).
        self.cursor: StreamId | None = None
        #: How many entries were ever added to the stream up to :attr:`cursor`
        #: (``None``: not known, right after Redis lost data; see ``live_gap``).
        self.seq: int | None = 0
        self.floor: StreamId | None = None
        #: Where the floor must be raised to (past entries Redis lost), until it is.
        self.raise_floor_to: StreamId | None = None
        #: Why Redis refuses this channel's keys (``None``: it does not).
        self.error: str | None = None
        self.ready = asyncio.Event()

    @property
    def readable(self) -> bool:
        """Whether the reader reads this channel now."""
        return self.cursor is not None and self.error is None


class RedisConnection:
    """The Redis connections of one process (per event loop and connection settings).

    One connection reads every channel that has subscribers here; a pool sends
    publishes (in submission order, pipelined) and resume queries.
    """

    #: Set when the channel set changes, so the reader does not block on an old one.
    _channels_changed: bool

    def __init__(self, url: str | None, options: Mapping[str, Any]) -> None:
        settings = {**options, "decode_responses": False, "retry": Retry(NoBackoff(), 0)}
        command_connections = settings.pop("max_connections", None) or COMMAND_CONNECTIONS
        reader_timeout = BLOCK_MS / 1000 + max(5.0, settings.get("socket_timeout") or 0)

        def client(max_connections: int, **extra: Any) -> aioredis.Redis:
            # A blocking pool waits for a free connection instead of failing.
            pool_class = aioredis.BlockingConnectionPool
            options = {**settings, **extra, "max_connections": max_connections}
            pool = pool_class(**options) if url is None else pool_class.from_url(url, **options)
            return aioredis.Redis(connection_pool=pool)

        # Publishing and resume queries; the pool's size bounds the connections a
        # process opens, even when many clients resume at once (a reconnect storm).
        self.commands = client(command_connections)
        # One connection, used by the reader task alone (blocking reads and MULTIs).
        self.reader = client(1, socket_timeout=reader_timeout)
        self.health = BackendHealth()
        self.channels: dict[str, _Channel] = {}
        self.users: weakref.WeakSet[RedisStore] = weakref.WeakSet()
        self._outbox: deque[_Submission] = deque()
        self._reader_task: asyncio.Task[None] | None = None
        self._writer_task: asyncio.Task[None] | None = None
        self._reader_id: int | None = None
        self._blocked = False
        self._channels_changed = False
        #: The reader lost its connection: check for lost data when it is back.
        self._reader_lost = False
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- channels -------------------------------------------------------------------

    def attach(self, store: RedisStore) -> _Channel:
        """Read ``store``'s channel for it (it has subscribers)."""
        channel = self.channels.get(store.channel)
        if channel is None:
            channel = self.channels[store.channel] = _Channel(store.channel)
            self._channels_changed = True
            if self._blocked and self._reader_id is not None:
                self._spawn(self._unblock(self._reader_id))
        channel.stores.add(store)
        if self._reader_task is None or self._reader_task.done():
            self._reader_task = asyncio.get_running_loop().create_task(self._read_forever())
        return channel

    def detach(self, store: RedisStore) -> None:
        """Stop reading ``store``'s channel for it."""
        channel = self.channels.get(store.channel)
        if channel is not None:
            channel.stores.discard(store)
            if not channel.stores:
                del self.channels[store.channel]
                # Nobody waits for this channel's reader any more (the writer may).
                channel.ready.set()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _unblock(self, reader_id: int) -> None:
        try:
            await self.commands.client_unblock(reader_id)
        except _NETWORK_ERRORS:
            logger.debug("could not unblock the Redis reader", exc_info=True)

    # -- reading --------------------------------------------------------------------

    async def _read_forever(self) -> None:
        backoff = _Backoff()
        while self.channels:
            try:
                if self._reader_id is None:
                    self._reader_id = await self.reader.client_id()
                    if self._reader_lost:
                        self._reader_lost = False
                        logger.info("Redis reader reconnected")
                    self.health.mark_up()
                for channel in list(self.channels.values()):
                    if channel.cursor is None and channel.error is None:
                        await self._establish(channel)
                channels = [c for c in self.channels.values() if c.readable]
                if channels and not await self._read_batch(channels):
                    await self._wait_for_entries(channels)
                elif not channels:
                    await asyncio.sleep(BLOCK_MS / 1000)  # only broken channels: idle
                backoff.reset()
            except _NETWORK_ERRORS as exc:
                self._reader_id = None
                if not self._reader_lost:
                    logger.error("Redis reader lost its connection (%s); reconnecting", exc)
                self._reader_lost = True
                self.health.mark_down()
                await asyncio.sleep(backoff.delay())
            except Exception:
                # Never die silently: a bug here must not stop every channel.
                logger.exception("Redis reader failed; it starts again")
                self.health.mark_down()
                await asyncio.sleep(backoff.delay())

    async def _establish(self, channel: _Channel) -> None:
        pipe = self.reader.pipeline(transaction=True)
        pipe.eval(ENSURE_FLOOR, 2, channel.key, channel.floor_key)
        pipe.xinfo_stream(channel.key)
        floor, info = await pipe.execute(raise_on_error=False)
        try:
            if isinstance(floor, Exception):
                raise floor
            stream = _stream_info(info)
        except ResponseError as exc:
            self._break(channel, exc)
            return
        channel.floor = StreamId.parse(floor)
        channel.cursor = stream.newest if stream else ZERO
        channel.seq = stream.entries_added if stream else 0
        channel.ready.set()

    def _break(self, channel: _Channel, error: ResponseError) -> None:
        """Stop reading ``channel``, whose keys Redis refuses (another program's key of
        another type, an ACL): logged once; other channels go on."""
        channel.error = str(error)
        channel.ready.set()
        self.health.errors += 1
        logger.error(
            "Redis refuses the keys of channel %r (%s); it is not read until its "
            "subscribers come again",
            channel.key,
            error,
        )

    async def _read_batch(self, channels: Sequence[_Channel]) -> bool:
        """Read what is new in ``channels`` and deliver it, each stream's floor and
        state read atomically with it and judged first (:func:`continuity`).
        Returns whether anything was read."""
        pipe = self.reader.pipeline(transaction=True)
        raising = [c for c in channels if c.raise_floor_to is not None]
        for channel in raising:
            pipe.eval(RAISE_FLOOR, 1, channel.floor_key, str(channel.raise_floor_to))
        for channel in channels:
            pipe.eval(ENSURE_FLOOR, 2, channel.key, channel.floor_key)
            pipe.xinfo_stream(channel.key)
        pipe.xread({c.key: str(c.cursor) for c in channels}, count=READ_COUNT)
        *raised, response = await pipe.execute(raise_on_error=False)
        states = raised[len(raising) :]
        for channel, result in zip(raising, raised, strict=False):
            if not isinstance(result, Exception):
                channel.floor = StreamId.parse(result)  # ours: not a new generation
                channel.raise_floor_to = None
        delivered = False
        for index, channel in enumerate(channels):
            floor, info = states[2 * index], states[2 * index + 1]
            try:
                if isinstance(floor, Exception):
                    raise floor
                stream = _stream_info(info)
            except ResponseError as exc:
                self._break(channel, exc)  # and XREAD failed with it: read again
                continue
            if isinstance(response, Exception):
                continue
            batch = _entries_by_key(response).get(channel.key, [])
            if self._continues(channel, StreamId.parse(floor), stream):
                self._deliver(channel, batch)
                delivered = delivered or bool(batch)
                if channel.seq is None and len(batch) < READ_COUNT and stream is not None:
                    channel.seq = stream.entries_added  # everything is read now
        if isinstance(response, ConnectionError | TimeoutError):
            raise response
        if isinstance(response, Exception) and not any(c.error for c in channels):
            raise response
        return delivered

    def _continues(
        self, channel: _Channel, floor: StreamId | None, stream: _StreamState | None
    ) -> bool:
        """Judge ``channel``'s stream; reset its subscribers if entries they had not
        received are gone. Returns whether the batch read with it may be delivered."""
        assert channel.cursor is not None
        state = continuity(
            cursor=channel.cursor,
            seq=channel.seq,
            known_floor=channel.floor,
            floor=floor,
            exists=stream is not None,
            newest=stream.newest if stream else ZERO,
            entries_added=stream.entries_added if stream else 0,
            length=stream.length if stream else 0,
        )
        if floor is not None and floor != channel.floor and state is Continuity.INTACT:
            channel.floor = floor  # the floor key was set again; the stream is intact
        if state is Continuity.INTACT:
            return True
        logger.error(
            "channel %r: %s; its subscribers get a reset",
            channel.key,
            _CONTINUITY_LOGS[state],
        )
        self._reset(channel)
        if state is Continuity.TRIMMED:
            assert stream is not None
            channel.seq = stream.entries_added - stream.length
            return True
        if state is Continuity.NEW_GENERATION:
            assert floor is not None
            channel.floor = floor
            channel.cursor = max(channel.cursor, floor.before())
            channel.seq = 0
        else:
            # Raised with the next read (and again until Redis took it).
            channel.raise_floor_to = channel.cursor.after()
            channel.seq = None
        return False

    async def _wait_for_entries(self, channels: Sequence[_Channel]) -> None:
        channels = [c for c in channels if c.readable]
        if self._channels_changed or not channels:
            self._channels_changed = False
            return  # a channel was added (or broke) meanwhile: read again first
        self._blocked = True
        try:
            await self.reader.xread(
                {c.key: str(c.cursor) for c in channels}, count=1, block=BLOCK_MS
            )
        except ResponseError:
            pass  # a key Redis refuses now (WRONGTYPE): the next read says which
        finally:
            self._blocked = False

    def _deliver(self, channel: _Channel, entries: Iterable[tuple[Any, Any]]) -> None:
        last, count = None, 0
        for entry_id, fields in entries:
            last, count = entry_id, count + 1
            for store in list(channel.stores):
                store.deliver_entry(entry_id, fields)
        if last is not None:
            channel.cursor = StreamId.parse(last)
            if channel.seq is not None:
                channel.seq += count

    def _reset(self, channel: _Channel) -> None:
        cursor = channel.cursor if channel.cursor is not None else ZERO
        resume = Resume(ResumeStatus.RESET, str(cursor), reason=ResetReason.DATA_LOST)
        control = control_message(resume)
        assert control is not None
        for store in list(channel.stores):
            store.stats.resets += len(store.subscribers)
            store._fan_out(control)

    # -- resuming -------------------------------------------------------------------

    async def plan_resume(
        self, store: RedisStore, channel: _Channel, last_event_id: str
    ) -> tuple[Resume, Callable[[Message], bool]]:
        """How a subscriber of ``store`` that last saw ``last_event_id`` starts, and
        which live messages it must skip (those the replay holds or it has seen)."""
        await channel.ready.wait()
        cursor = channel.cursor
        assert cursor is not None
        assert channel.floor is not None

        def reset(reason: ResetReason) -> tuple[Resume, Callable[[Message], bool]]:
            reset_id = str(cursor) if cursor > ZERO else None
            return Resume(ResumeStatus.RESET, last_event_id, reason=reason, reset_id=reset_id), (
                _through(cursor)
            )

        after = StreamId.parse(last_event_id)
        if after is None:
            return reset(ResetReason.MALFORMED_ID)
        # One atomic look: the floor now (another process may have raised it), the
        # stream's state, what the client missed up to this process's cursor.
        pipe = self.commands.pipeline(transaction=True)
        pipe.get(channel.floor_key)
        pipe.xinfo_stream(channel.key)
        pipe.xrange(channel.key, f"({after}", str(cursor), count=store.history.max_messages + 1)
        pipe.xrange(channel.key, "-", "+", count=1)
        pipe.time()
        raw_floor, info, entries, first, (seconds, microseconds) = await pipe.execute(
            raise_on_error=False
        )
        floor = StreamId.parse(raw_floor) if isinstance(raw_floor, bytes) else channel.floor
        if floor is None or after < floor:
            return reset(ResetReason.UNKNOWN_EPOCH)
        if after >= cursor:
            # The client saw more than this process has delivered: skip up to its id.
            stream = _stream_info(info)
            if stream is None or after > stream.newest:
                return reset(ResetReason.UNKNOWN_ID)
            return Resume(ResumeStatus.RESUMED, last_event_id), _through(after)
        for answer in (entries, first):
            if isinstance(answer, Exception):
                raise answer
        stream = _stream_info(info)
        if stream is None or stream.newest < cursor or channel.raise_floor_to is not None:
            # Redis lost entries this process delivered (its reader has not judged
            # that yet, or not raised the floor yet): what follows ``after`` has a hole.
            return reset(ResetReason.DATA_LOST)
        max_age = store.history.max_age
        reason = replay_gap(
            after,
            [StreamId.parse(entry_id) or ZERO for entry_id, _ in entries],
            StreamId.parse(first[0][0]) if first else None,
            history=store.history.max_messages,
            max_age_ms=None if max_age is None else int(max_age * 1000),
            now_ms=seconds * 1000 + microseconds // 1000,
        )
        if reason is not None:
            return reset(reason)
        replay = [m for m in (store.replayed(i, f) for i, f in entries) if m is not None]
        return Resume(ResumeStatus.RESUMED, last_event_id, replay=replay), _through(cursor)

    # -- writing --------------------------------------------------------------------

    def enqueue(self, submission: _Submission) -> None:
        """Queue ``submission`` for the writer, which sends them in order."""
        self._outbox.append(submission)
        if self._writer_task is None or self._writer_task.done():
            self._writer_task = asyncio.get_running_loop().create_task(self._write_forever())

    async def _write_forever(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = _Backoff()
        while self._outbox:
            head = self._outbox[0]
            channel = self.channels.get(head.store.channel)
            if channel is not None and not channel.ready.is_set():
                # A subscriber here waits for its channel's reader: publish after it
                # starts, so that subscriber sees what this process submits next.
                try:
                    await asyncio.wait_for(channel.ready.wait(), head.deadline - loop.time())
                except TimeoutError:
                    self._fail(self._outbox.popleft(), _unreachable(head.store))
                continue
            try:
                # Bounded by the deadline even when Redis accepts but does not answer.
                async with asyncio.timeout(max(head.deadline - loop.time(), 0.05)):
                    await self.commands.ping()
            except (*_NETWORK_ERRORS, TimeoutError) as exc:
                self.health.mark_down()
                now = loop.time()
                while self._outbox and self._outbox[0].deadline <= now:
                    failed = self._outbox.popleft()
                    self._fail(failed, _unreachable(failed.store, exc))
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

    def _take_batch(self) -> list[_Submission]:
        batch: list[_Submission] = []
        while self._outbox and len(batch) < WRITE_BATCH:
            channel = self.channels.get(self._outbox[0].store.channel)
            if channel is not None and not channel.ready.is_set():
                break
            batch.append(self._outbox.popleft())
        return batch

    async def _send(self, batch: list[_Submission]) -> None:
        # One pipeline: the floor of each channel first (so no entry is ever added
        # without one, even right after Redis restarted), then the entries in order.
        pipe = self.commands.pipeline(transaction=False)
        channels = {submission.store.channel for submission in batch}
        for name in sorted(channels):
            pipe.eval(ENSURE_FLOOR, 2, name, name + FLOOR_SUFFIX)
        for submission in batch:
            store = submission.store
            pipe.execute_command(
                "XADD",
                store.channel,
                "MAXLEN",
                "~",
                store.history.max_messages,
                "*",
                *entry_fields(submission.message),
            )
        deadline = max(s.deadline for s in batch)
        try:
            async with asyncio.timeout(max(deadline - asyncio.get_running_loop().time(), 1.0)):
                results = await pipe.execute(raise_on_error=False)
        except (*_NETWORK_ERRORS, TimeoutError) as exc:
            self.health.mark_down()
            for submission in batch:
                error = StoreUnavailable(
                    f"the connection to Redis broke while publishing to "
                    f"{submission.store.channel!r}; the message may have been published: {exc}",
                    maybe_published=True,
                )
                self._fail(submission, error)
            return
        self.health.mark_up()
        for name, floor in zip(sorted(channels), results, strict=False):
            if isinstance(floor, Exception):
                logger.error("could not set the floor of channel %r: %s", name, floor)
        for submission, result in zip(batch, results[len(channels) :], strict=True):
            if isinstance(result, Exception):
                self._fail(submission, StoreUnavailable(f"Redis refused the message: {result}"))
            else:
                submission.store.stats.published += 1
                if not submission.future.done():
                    submission.future.set_result(submission.message.with_id(result.decode()))

    def _fail(self, submission: _Submission, error: StoreUnavailable) -> None:
        store = submission.store
        store.publish_failures += 1
        logger.warning("message not published to %r: %s", store.channel, error)
        if not submission.future.done():
            submission.future.set_exception(error)
            submission.future.exception()  # logged above: no "never retrieved" warning

    def pending(self, store: RedisStore) -> list[asyncio.Future[Message]]:
        """The submissions of ``store`` not yet answered."""
        return [s.future for s in self._outbox if s.store is store]

    async def aclose(self) -> None:
        """Stop reading and close the connections (after pending publishes)."""
        while self._writer_task is not None and not self._writer_task.done():
            await asyncio.wait([self._writer_task])
        self.channels.clear()  # the reader stops after its current round trip
        if self._blocked and self._reader_id is not None:
            await self._unblock(self._reader_id)
        for task in (self._reader_task, *self._tasks):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=BLOCK_MS / 1000 + 1)
        await self.reader.aclose()
        await self.commands.aclose()


_CONTINUITY_LOGS = {
    Continuity.TRIMMED: "entries were trimmed before this process read them",
    Continuity.NEW_GENERATION: "Redis lost the stream (restarted without it, or deleted)",
    Continuity.LOST_TAIL: "Redis lost the stream's newest entries (restored an older copy)",
}

_connections: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[Any, ...], RedisConnection]
] = weakref.WeakKeyDictionary()


def _connection_for(url: str | None, options: Mapping[str, Any]) -> RedisConnection:
    loop = asyncio.get_running_loop()
    key = (url, tuple(sorted((name, repr(value)) for name, value in options.items())))
    per_loop = _connections.setdefault(loop, {})
    connection = per_loop.get(key)
    if connection is None:
        connection = per_loop[key] = RedisConnection(url, options)
    return connection


def _forget_connection(connection: RedisConnection) -> None:
    for per_loop in _connections.values():
        for key, known in list(per_loop.items()):
            if known is connection:
                del per_loop[key]


@dataclass(frozen=True)
class _StreamState:
    """What ``XINFO STREAM`` says of a stream, as far as the store needs it."""

    newest: StreamId
    entries_added: int
    length: int


def _stream_info(info: Any) -> _StreamState | None:
    """``XINFO STREAM``'s answer, or ``None`` for a stream that does not exist."""
    if isinstance(info, ResponseError) and "no such key" in str(info).lower():
        return None
    if isinstance(info, Exception):
        raise info
    fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in dict(info).items()}
    return _StreamState(
        newest=StreamId.parse(fields["last-generated-id"]) or ZERO,
        entries_added=int(fields["entries-added"]),
        length=int(fields["length"]),
    )


def _entries_by_key(response: Any) -> dict[str, list[tuple[Any, Any]]]:
    """``XREAD``'s answer (RESP2 list or RESP3 map) as entries by stream name."""
    if not response:
        return {}
    pairs = response.items() if isinstance(response, dict) else response
    result: dict[str, list[tuple[Any, Any]]] = {}
    for key, entries in pairs:
        name = key.decode() if isinstance(key, bytes) else key
        result[name] = [(entry[0], entry[1]) for entry in entries]
    return result


def _through(last: StreamId) -> Callable[[Message], bool]:
    """A ``skip`` for :meth:`Subscription.release`: live messages up to ``last``."""

    def skip(message: Message) -> bool:
        parsed = StreamId.parse(message.id) if message.id is not None else None
        return parsed is not None and parsed <= last

    return skip


def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()


def _unreachable(store: RedisStore, cause: BaseException | None = None) -> StoreUnavailable:
    detail = f": {cause}" if cause is not None else ""
    return StoreUnavailable(
        f"Redis was unreachable for {store.publish_timeout:g} s; the message to "
        f"{store.channel!r} was not published{detail}"
    )


class RedisStore(BaseStore):
    """A store whose messages go through a Redis Stream, shared by every process
    that uses the same ``channel`` on the same Redis (see the module docstring).

    ``RedisStore(channel='tornadose', url=None, publish_timeout=5.0, **redis_kwargs)``:
    ``url`` (``redis://host:port/db``) or ``redis_kwargs`` (``host``, ``port``,
    ``password``...) say how to reach Redis, as for ``redis.asyncio.Redis``. The
    store options of every store apply (``schema``, ``max_queue``, ``overflow``,
    ``history``...); ``history`` (default 1000) is also the stream's approximate
    ``MAXLEN``. Create it anywhere; it connects on first use, from the running event
    loop. ``submit()`` needs a running loop.
    """

    default_overflow: ClassVar[OverflowPolicy] = OverflowPolicy.DISCONNECT

    def initialize(
        self,
        channel: str = "tornadose",
        url: str | None = None,
        *,
        publish_timeout: float = DEFAULT_PUBLISH_TIMEOUT,
        **redis_kwargs: Any,
    ) -> None:
        """Remember where the channel lives; nothing connects yet."""
        if not channel:
            raise ValueError("channel must not be empty")
        if channel.endswith(FLOOR_SUFFIX):
            raise ValueError(f"a channel's name must not end with {FLOOR_SUFFIX!r}: {channel!r}")
        if self.history.max_messages < 1:
            raise ValueError("a RedisStore needs history >= 1 (it is the stream's MAXLEN)")
        if publish_timeout < 0:
            raise ValueError(f"publish_timeout must not be negative, not {publish_timeout}")
        self.channel = channel
        self.url = url
        self.publish_timeout = publish_timeout
        self.redis_kwargs = redis_kwargs
        #: Entries of the stream that were not valid messages (skipped).
        self.invalid_entries = 0
        #: Submissions that failed (``StoreUnavailable``).
        self.publish_failures = 0
        self._resumes: set[asyncio.Task[None]] = set()
        #: The last ``history`` messages delivered here, by id (insertion ordered).
        self._recent: dict[str, Message] = {}
        self._connection: RedisConnection | None = None
        self._connection_loop: asyncio.AbstractEventLoop | None = None

    @property
    def connection(self) -> RedisConnection:
        """This store's Redis connection in the running event loop (made on first use)."""
        loop = asyncio.get_running_loop()
        if self._connection is None or self._connection_loop is not loop:
            self._connection = _connection_for(self.url, self.redis_kwargs)
            self._connection_loop = loop
            self._connection.users.add(self)
        return self._connection

    # -- subscribers ----------------------------------------------------------------

    def register(self, subscriber: object, last_event_id: str | None = None) -> Subscription:
        """Register ``subscriber``, as for every store. A resuming subscriber's replay
        is fetched from Redis in the background: its subscription yields nothing
        until then, and misses nothing meanwhile."""
        existing = self._subscriptions.get(subscriber)
        if existing is not None:
            return existing
        if self._closed:
            raise StoreClosed(f"{self!r} is closed")
        connection = self.connection
        channel = connection.attach(self)
        subscription = self._open_subscription(subscriber, Resume(ResumeStatus.LIVE))
        if last_event_id is not None:
            subscription.hold()
            task = asyncio.get_running_loop().create_task(
                self._resume(connection, channel, subscription, last_event_id)
            )
            self._resumes.add(task)
            task.add_done_callback(self._resumes.discard)
            subscription.add_close_callback(lambda _: _cancel(task))
        self.on_register(subscription)
        return subscription

    async def _resume(
        self,
        connection: RedisConnection,
        channel: _Channel,
        subscription: Subscription,
        last_event_id: str,
    ) -> None:
        backoff = _Backoff()
        attempts = 0
        while True:
            try:
                resume, skip = await connection.plan_resume(self, channel, last_event_id)
                break
            except _NETWORK_ERRORS as exc:
                connection.health.mark_down()
                log = logger.warning if attempts == 0 else logger.debug
                log("a resume on channel %r waits for Redis: %s", self.channel, exc)
                attempts += 1
                await asyncio.sleep(backoff.delay())
        subscription.resume = resume
        subscription.release(self.resume_messages(resume), skip=skip)

    def _forget(self, subscription: Subscription) -> None:
        super()._forget(subscription)
        if not self._subscriptions and self._connection is not None:
            self._connection.detach(self)

    # -- publishing -----------------------------------------------------------------

    def submit(self, message: Any, *, event: str | None = None, debug: bool = False) -> Published:
        """Validate ``message`` and publish it to the channel through Redis.

        Validation errors are raised at once, as for every store, and nothing is
        published. Otherwise the message is sent in the background, in submission
        order; await the result for the published :class:`Message` (with its stream
        id) or :class:`~tornadose.core.errors.StoreUnavailable`. ``debug`` is accepted for
        0.x compatibility and ignored. Needs a running event loop.
        """
        del debug
        if self._closed:
            raise StoreClosed(f"{self!r} is closed")
        prepared = Message(self.validate(message), id=None, event=event)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "RedisStore.submit() needs a running event loop; call it from a "
                "coroutine or a callback of the loop"
            ) from None
        future: asyncio.Future[Message] = loop.create_future()
        submission = _Submission(self, prepared, future, loop.time() + self.publish_timeout)
        self.connection.enqueue(submission)
        return Published(future)

    def publish(self, message: Message | None = None) -> None:
        """Push ``message`` to this process's subscribers (the reader calls this for
        every entry). To publish to every process, use :meth:`submit`."""
        if message is not None:
            self._fan_out(message)

    def decode(
        self, entry_id: Any, fields: Mapping[Any, Any], *, count: bool = True
    ) -> Message | None:
        """The message of a stream entry, or ``None`` (logged, and counted in
        :attr:`invalid_entries` if ``count``) if it is invalid."""
        try:
            return decode_entry(entry_id, fields, self.validate)
        except InvalidEntry as exc:
            if count:
                self.invalid_entries += 1
                logger.warning("skipped an invalid entry of channel %r: %s", self.channel, exc)
            return None
        except Exception:
            # A validator that raises something else: still one bad entry, not a
            # reason to stop reading.
            if count:
                self.invalid_entries += 1
                logger.exception(
                    "skipped an entry of channel %r: validating it failed", self.channel
                )
            return None

    def deliver_entry(self, entry_id: Any, fields: Mapping[Any, Any]) -> None:
        """Decode a stream entry and push it to this process's subscribers."""
        message = self.decode(entry_id, fields)
        if message is not None:
            recent = self._recent
            recent[message.id or ""] = message
            if len(recent) > self.history.max_messages:
                del recent[next(iter(recent))]
            self._fan_out(message)

    def replayed(self, entry_id: Any, fields: Mapping[Any, Any]) -> Message | None:
        """The message of an entry replayed to a resuming client: the one this process
        delivered, if it is among its last ``history`` (shared, as the in-memory
        stores' history is, so resumes cost a reference per message), else decoded."""
        text_id = entry_id.decode("ascii") if isinstance(entry_id, bytes) else str(entry_id)
        known = self._recent.get(text_id)
        return known if known is not None else self.decode(entry_id, fields, count=False)

    # -- observation and lifetime ---------------------------------------------------

    def snapshot(self) -> dict[str, int]:
        """As for every store, plus ``backend_up`` (1 while the reader is connected),
        ``backend_errors``, ``invalid_entries`` and ``publish_failures``. The history
        lives in Redis: ``history_messages`` is 0."""
        numbers = super().snapshot()
        health = self._connection.health if self._connection is not None else BackendHealth()
        numbers.update(
            backend_up=int(health.up),
            backend_errors=health.errors,
            invalid_entries=self.invalid_entries,
            publish_failures=self.publish_failures,
        )
        return numbers

    def shutdown(self) -> None:
        """Close the store (the 0.x name of :meth:`close`)."""
        self.close()

    def close(self) -> None:
        """Close the store, as for every store; submitted messages are still sent."""
        super().close()
        for task in list(self._resumes):
            task.cancel()
        if self._connection is not None:
            self._connection.detach(self)

    async def aclose(self) -> None:
        """Close the store, wait for its pending submissions, and close the Redis
        connections once no other store uses them."""
        self.close()
        connection = self._connection
        if connection is None:
            return
        pending = connection.pending(self)
        if pending:
            await asyncio.wait(pending)
        connection.users.discard(self)
        if not connection.users:
            _forget_connection(connection)
            await connection.aclose()

    def __repr__(self) -> str:
        return f"<RedisStore channel={self.channel!r} subscribers={len(self._subscriptions)}>"
