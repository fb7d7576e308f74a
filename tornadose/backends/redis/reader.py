"""The reader: one connection per process reading every channel with subscribers here.

Guarantees:

* **One order**: each channel's entries are handed to its listeners (the
  ``RedisBackend`` objects of the channel in this process) in the stream's order,
  each once, continuing after the last entry delivered, across reconnections.
* **No silent loss**: before a batch is delivered, the stream's floor and state,
  read atomically with it, are judged (:func:`~tornadose.backends.redis.layout.continuity`);
  if entries the listeners had not received are gone, every listener is told
  (``lost``) first.
* **Never dies silently**: connection losses are logged (``ERROR`` once per outage,
  ``INFO`` on recovery) and counted in the shared :class:`BackendHealth`; a channel
  whose keys Redis refuses is logged and set aside while the others go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from tornadose.backends.redis.health import NETWORK_ERRORS, BackendHealth, Backoff
from tornadose.backends.redis.layout import (
    ENSURE_FLOOR,
    FLOOR_SUFFIX,
    RAISE_FLOOR,
    ZERO,
    Continuity,
    StreamId,
    continuity,
)

__all__ = [
    "BLOCK_MS",
    "READ_COUNT",
    "Channel",
    "Listener",
    "Reader",
    "StreamState",
    "stream_info",
]

logger = logging.getLogger("tornadose.redis")

#: Entries read per channel per round trip, at most.
READ_COUNT = 512
#: Milliseconds a reader's wait for new entries blocks before it looks around again.
BLOCK_MS = 1000

_CONTINUITY_LOGS = {
    Continuity.TRIMMED: "entries were trimmed before this process read them",
    Continuity.NEW_GENERATION: "Redis lost the stream (restarted without it, or deleted)",
    Continuity.LOST_TAIL: "Redis lost the stream's newest entries (restored an older copy)",
}


class Listener(Protocol):
    """What the reader feeds: a ``RedisBackend`` with subscribers in this process."""

    #: The channel's stream key.
    channel: str

    def deliver_entry(self, entry_id: Any, fields: Any) -> None:
        """One entry of the stream, in order."""

    def lost(self, last_id: str | None) -> None:
        """Entries after ``last_id`` are gone before they were delivered here."""


class Channel:
    """What the reader reads of one stream, for the listeners of this process."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.floor_key = key + FLOOR_SUFFIX
        self.listeners: set[Listener] = set()
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
        #: Set once the reader knows where the stream stands (or that it is refused).
        self.ready = asyncio.Event()

    @property
    def readable(self) -> bool:
        """Whether the reader reads this channel now."""
        return self.cursor is not None and self.error is None


@dataclass(frozen=True)
class StreamState:
    """What ``XINFO STREAM`` says of a stream, as far as tornadose needs it."""

    newest: StreamId
    entries_added: int
    length: int


def stream_info(info: Any) -> StreamState | None:
    """``XINFO STREAM``'s answer, or ``None`` for a stream that does not exist."""
    if isinstance(info, ResponseError) and "no such key" in str(info).lower():
        return None
    if isinstance(info, Exception):
        raise info
    fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in dict(info).items()}
    return StreamState(
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


class Reader:
    """Reads every channel with listeners here, on a connection of its own
    (``client``); ``commands`` (another connection) only unblocks it."""

    def __init__(
        self, client: aioredis.Redis, commands: aioredis.Redis, health: BackendHealth
    ) -> None:
        self.client = client
        self.commands = commands
        self.health = health
        self.channels: dict[str, Channel] = {}
        self._task: asyncio.Task[None] | None = None
        self._client_id: int | None = None
        self._blocked = False
        #: Set when the channel set changes, so the reader does not block on an old one.
        self._channels_changed = False
        #: The reader lost its connection: check for lost data when it is back.
        self._lost_connection = False
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The reading task (``None`` before the first channel)."""
        return self._task

    # -- channels -------------------------------------------------------------------

    def attach(self, listener: Listener) -> Channel:
        """Read ``listener``'s channel for it (it has subscribers)."""
        channel = self.channels.get(listener.channel)
        if channel is None:
            channel = self.channels[listener.channel] = Channel(listener.channel)
            self._channels_changed = True
            if self._blocked and self._client_id is not None:
                self._spawn(self._unblock(self._client_id))
        channel.listeners.add(listener)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._read_forever())
        return channel

    def detach(self, listener: Listener) -> None:
        """Stop reading ``listener``'s channel for it."""
        channel = self.channels.get(listener.channel)
        if channel is not None:
            channel.listeners.discard(listener)
            if not channel.listeners:
                del self.channels[listener.channel]
                # Nobody waits for this channel's reader any more (the writer may).
                channel.ready.set()

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _unblock(self, client_id: int) -> None:
        try:
            await self.commands.client_unblock(client_id)
        except NETWORK_ERRORS:
            logger.debug("could not unblock the Redis reader", exc_info=True)

    # -- reading --------------------------------------------------------------------

    async def _read_forever(self) -> None:
        backoff = Backoff()
        while self.channels:
            try:
                if self._client_id is None:
                    self._client_id = await self.client.client_id()
                    if self._lost_connection:
                        self._lost_connection = False
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
            except NETWORK_ERRORS as exc:
                self._client_id = None
                if not self._lost_connection:
                    logger.error("Redis reader lost its connection (%s); reconnecting", exc)
                self._lost_connection = True
                self.health.mark_down()
                await asyncio.sleep(backoff.delay())
            except Exception:
                # Never die silently: a bug here must not stop every channel.
                logger.exception("Redis reader failed; it starts again")
                self.health.mark_down()
                await asyncio.sleep(backoff.delay())

    async def _establish(self, channel: Channel) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.eval(ENSURE_FLOOR, 2, channel.key, channel.floor_key)
        pipe.xinfo_stream(channel.key)
        floor, info = await pipe.execute(raise_on_error=False)
        try:
            if isinstance(floor, Exception):
                raise floor
            stream = stream_info(info)
        except ResponseError as exc:
            self._break(channel, exc)
            return
        channel.floor = StreamId.parse(floor)
        channel.cursor = stream.newest if stream else ZERO
        channel.seq = stream.entries_added if stream else 0
        channel.ready.set()

    def _break(self, channel: Channel, error: ResponseError) -> None:
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

    async def _read_batch(self, channels: Sequence[Channel]) -> bool:
        """Read what is new in ``channels`` and deliver it, each stream's floor and
        state read atomically with it and judged first (:func:`continuity`).
        Returns whether anything was read."""
        pipe = self.client.pipeline(transaction=True)
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
                stream = stream_info(info)
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
        self, channel: Channel, floor: StreamId | None, stream: StreamState | None
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

    async def _wait_for_entries(self, channels: Sequence[Channel]) -> None:
        channels = [c for c in channels if c.readable]
        if self._channels_changed or not channels:
            self._channels_changed = False
            return  # a channel was added (or broke) meanwhile: read again first
        self._blocked = True
        try:
            await self.client.xread(
                {c.key: str(c.cursor) for c in channels}, count=1, block=BLOCK_MS
            )
        except ResponseError:
            pass  # a key Redis refuses now (WRONGTYPE): the next read says which
        finally:
            self._blocked = False

    def _deliver(self, channel: Channel, entries: Iterable[tuple[Any, Any]]) -> None:
        last, count = None, 0
        for entry_id, fields in entries:
            last, count = entry_id, count + 1
            for listener in list(channel.listeners):
                listener.deliver_entry(entry_id, fields)
        if last is not None:
            channel.cursor = StreamId.parse(last)
            if channel.seq is not None:
                channel.seq += count

    def _reset(self, channel: Channel) -> None:
        cursor = channel.cursor if channel.cursor is not None else ZERO
        for listener in list(channel.listeners):
            listener.lost(str(cursor))

    async def aclose(self) -> None:
        """Stop reading (after the current round trip) and close the connection."""
        self.channels.clear()
        if self._blocked and self._client_id is not None:
            await self._unblock(self._client_id)
        for task in (self._task, *self._tasks):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=BLOCK_MS / 1000 + 1)
        await self.client.aclose()
