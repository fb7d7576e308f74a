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
  whose keys Redis refuses is logged once and set aside while the others go on,
  tried again after 1 s, then 2, 4... up to every 30 s (never in a hot loop), and
  read on from where it stood when Redis takes it again. A refused login (a wrong
  password) is logged once and tried again the same way. A refusal is never
  reported as a lost connection.
* **Redis Cluster** (``cluster=True``): one reader per master; see
  :mod:`~tornadose.backends.redis.cluster`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.crc import key_slot
from redis.exceptions import ResponseError

from tornadose.backends.redis.health import (
    NETWORK_ERRORS,
    REDIS_ERRORS,
    BackendHealth,
    Backoff,
    ErrorKind,
    Failure,
    RefusalBackoff,
    classify,
    redis_said,
)
from tornadose.backends.redis.layout import (
    ENSURE_FLOOR,
    FLOOR_SUFFIX,
    RAISE_FLOOR,
    ZERO,
    Continuity,
    StreamId,
    continuity,
)
from tornadose.backends.redis.transaction import AskRoute, Command, asked, transaction, transactions

__all__ = [
    "BLOCK_MS",
    "POLL",
    "POLL_MS",
    "READ_COUNT",
    "Channel",
    "Listener",
    "Reader",
    "StreamState",
    "by_slot",
    "stream_info",
]

logger = logging.getLogger("tornadose.redis")

#: Entries read per channel per round trip, at most.
READ_COUNT = 512
#: Milliseconds a reader's wait for new entries blocks before it looks around again.
BLOCK_MS = 1000
#: Milliseconds between polls of an idle Redis Cluster master whose channels are in
#: several hash slots (a blocking ``XREAD`` cannot span slots): a new entry there is
#: read at most this long (plus a round trip) after it was added.
POLL_MS = 20

#: Lua: which of the streams ``ARGV[1], ARGV[3]...`` have an entry after the ids
#: ``ARGV[2], ARGV[4]...`` (their 1-based positions): the poll of a cluster master's
#: channels in several slots, one command and one reply whatever their number (Redis
#: 7.0 or later; the keys, in several slots of this node, cannot be declared). A key
#: this node does not serve (a slot being migrated) fails the script: that poll is
#: then one ``XREAD`` per slot.
POLL = """#!lua flags=no-writes,allow-cross-slot-keys
local new = {}
for i = 1, #ARGV, 2 do
  if redis.call('XREAD', 'COUNT', 1, 'STREAMS', ARGV[i], ARGV[i + 1]) then
    new[#new + 1] = (i + 1) / 2
  end
end
return new
"""


#: Failures a read is retried after (with a backoff), never setting its channel aside.
_TRANSIENT = (ErrorKind.REDIRECTED, ErrorKind.BUSY)

_CONTINUITY_LOGS = {
    Continuity.TRIMMED: "entries were trimmed before this process read them",
    Continuity.NEW_GENERATION: (
        "its floor rose above the last entry read here with no entry left below it "
        "(Redis lost the stream: restarted without it, or deleted)"
    ),
    Continuity.FLOOR_RAISED: (
        "another process raised its floor past entries Redis lost (a failover, or a "
        "restored older copy); the entries still there are read on"
    ),
    Continuity.LOST_TAIL: "Redis lost the stream's newest entries (restored an older copy)",
}


class Listener(Protocol):
    """What the reader feeds: a ``RedisBackend`` with subscribers in this process."""

    #: The channel's stream key.
    channel: str
    #: The channel's floor key (in the stream's hash slot).
    floor_key: str

    def deliver_entry(self, entry_id: Any, fields: Any) -> None:
        """One entry of the stream, in order."""

    def lost(self, last_id: str | None) -> None:
        """Entries after ``last_id`` are gone before they were delivered here."""


class Channel:
    """What the reader reads of one stream, for the listeners of this process."""

    def __init__(self, key: str, floor_key: str | None = None) -> None:
        self.key = key
        self.floor_key = floor_key or key + FLOOR_SUFFIX
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
        #: Loop time after which a refused channel is tried again.
        self.retry_at = 0.0
        #: What Redis said when it last refused the channel (logged once per refusal).
        self.refused: str | None = None
        #: The waits between tries of a refused channel (1 s doubling to 30 s).
        self.refusals = RefusalBackoff()
        #: Redis Cluster: the channel's master failed over since it was last read, so
        #: entries acknowledged by the old master may be lost (see ``ClusterReader``).
        self.failed_over = False
        #: The listeners told of a loss since the last entry delivered: they get no
        #: second reset for the same gap (see ``Reader._reset``).
        self.reset_sent: set[Listener] = set()
        #: After a failover: the newest entry the new master had when this reader
        #: first read it (the failover's reset covers the entries up to it; see
        #: ``Reader._after_failover``). ``None`` once an entry after it is delivered.
        self.reset_covers: StreamId | None = None
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
    #: The oldest entry (``None``: the stream is empty).
    first: StreamId | None = None


def stream_info(info: Any) -> StreamState | None:
    """``XINFO STREAM``'s answer, or ``None`` for a stream that does not exist."""
    if isinstance(info, ResponseError) and "no such key" in str(info).lower():
        return None
    if isinstance(info, Exception):
        raise info
    pairs = info.items() if isinstance(info, dict) else _pairs(info)
    fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in pairs}
    first = fields.get("first-entry")
    return StreamState(
        newest=StreamId.parse(fields["last-generated-id"]) or ZERO,
        entries_added=int(fields["entries-added"]),
        length=int(fields["length"]),
        first=StreamId.parse(first[0]) if first else None,
    )


def _pairs(flat: Any) -> list[tuple[Any, Any]]:
    """A flat ``[name, value, name, value...]`` reply as pairs (a ``dict`` as pairs)."""
    if isinstance(flat, dict):
        return list(flat.items())
    return list(zip(flat[::2], flat[1::2], strict=True))


def _entries_by_key(response: Any) -> dict[str, list[tuple[Any, Any]]]:
    """``XREAD``'s raw answer (RESP2 list or RESP3 map) as entries (id, fields as a
    ``dict``) by stream name."""
    if not response:
        return {}
    pairs = response.items() if isinstance(response, dict) else response
    result: dict[str, list[tuple[Any, Any]]] = {}
    for key, entries in pairs:
        name = key.decode() if isinstance(key, bytes) else key
        result[name] = [(entry[0], dict(_pairs(entry[1] or []))) for entry in entries]
    return result


#: ``on_failure(reader, failure)``: a cluster node's reader was redirected or lost its
#: node (the owner refreshes the cluster's map and moves channels to their masters).
OnFailure = Callable[["Reader", Failure], None]


class Reader:
    """Reads every channel with listeners here, on a connection of its own
    (``client``); ``commands`` (another connection) only unblocks it.

    With ``cluster=True`` it is the reader of one Redis Cluster master: its channels
    are read one hash slot per transaction (a transaction, or an ``XREAD``, cannot span
    slots), every slot's transaction sent in one round trip; with channels in several
    slots the master is polled (:data:`POLL`, every :data:`POLL_MS` ms) instead of a
    blocking read. A redirection or a lost connection is reported to ``on_failure``.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        commands: aioredis.Redis,
        health: BackendHealth,
        *,
        cluster: bool = False,
        on_failure: OnFailure | None = None,
        ask: AskRoute | None = None,
    ) -> None:
        self.client = client
        #: A cluster's client of the node an ``ASK`` redirection names.
        self.ask = ask
        self.commands = commands
        self.health = health
        self.cluster = cluster
        self.on_failure = on_failure
        self.channels: dict[str, Channel] = {}
        self._task: asyncio.Task[None] | None = None
        #: The connection's id for ``CLIENT UNBLOCK`` (``None``: not connected; 0:
        #: connected, but Redis refuses ``CLIENT ID``).
        self._client_id: int | None = None
        self._blocked = False
        #: Set when the channel set changes, so the reader does not block on an old one.
        self._channels_changed = False
        self._wake = asyncio.Event()
        #: The reader lost its connection: check for lost data when it is back.
        self._lost_connection = False
        #: Why Redis refuses the reader's login (``None``: it does not).
        self._refused: str | None = None
        self._refusals = RefusalBackoff()
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Cluster, channels in several slots: the slots to read in the next round
        #: (``None``: every slot), and the loop time when every slot is read again.
        self._due: set[int] | None = None
        self._full_at = 0.0
        #: ``_due`` comes from a poll just made (no need to poll again before reading).
        self._polled = False
        self._poll = client.register_script(POLL)
        #: Why the last poll by script failed (``None``: it did not).
        self._poll_refused: str | None = None

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The reading task (``None`` before the first channel)."""
        return self._task

    # -- channels -------------------------------------------------------------------

    def attach(self, listener: Listener) -> Channel:
        """Read ``listener``'s channel for it (it has subscribers)."""
        channel = self.channels.get(listener.channel)
        if channel is None:
            channel = Channel(listener.channel, listener.floor_key)
            self.adopt(channel)
        channel.listeners.add(listener)
        return channel

    def adopt(self, channel: Channel) -> None:
        """Read ``channel`` (with its listeners and where it stands) from now on."""
        self.channels[channel.key] = channel
        self._channels_changed = True
        self._wake.set()
        if self._blocked and self._client_id:
            self._spawn(self._unblock(self._client_id))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._read_forever())

    def release(self, key: str) -> Channel | None:
        """Stop reading channel ``key`` (it moves to another reader, or has no
        listener left); returns it."""
        self._channels_changed = True
        return self.channels.pop(key, None)

    def detach(self, listener: Listener) -> None:
        """Stop reading ``listener``'s channel for it."""
        channel = self.channels.get(listener.channel)
        if channel is not None:
            channel.listeners.discard(listener)
            if not channel.listeners:
                del self.channels[listener.channel]
                # Nobody waits for this channel's reader any more (the writer may).
                channel.ready.set()

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _unblock(self, client_id: int) -> None:
        try:
            await self.commands.client_unblock(client_id)
        except REDIS_ERRORS:
            logger.debug("could not unblock the Redis reader", exc_info=True)

    # -- reading --------------------------------------------------------------------

    async def _read_forever(self) -> None:
        backoff = Backoff()
        while self.channels:
            try:
                if self._client_id is None:
                    await self._connect()
                self._retry_refused()
                for channel in list(self.channels.values()):
                    if channel.cursor is None and channel.error is None:
                        await self._establish(channel)
                channels = [c for c in self.channels.values() if c.readable]
                if channels and not await self._read_batch(channels):
                    await self._wait_for_entries(channels)
                elif not channels:
                    await self._idle()  # only refused channels: until one is tried again
                backoff.reset()
            except ResponseError as exc:
                # Redirected (a cluster's slot moved, or its master failed over).
                failure = classify(exc, cluster=self.cluster)
                self.health.mark_down(failure)
                logger.info("Redis reader: %s", failure.describe())
                if self.on_failure is not None:
                    self.on_failure(self, failure)
                await asyncio.sleep(backoff.delay())
            except NETWORK_ERRORS as exc:
                self._client_id = None
                failure = classify(exc, cluster=self.cluster)
                if failure.kind is ErrorKind.REFUSED:
                    # Redis answered, refusing the login (a wrong password): not a
                    # lost connection, and not retried in a hot loop.
                    self.health.mark_down(failure)
                    await self._login_refused(failure)
                    continue
                if failure.kind is ErrorKind.BUSY:  # LOADING: Redis answered
                    self.health.mark_down(failure)
                    logger.info("Redis reader: %s", failure.describe())
                    await asyncio.sleep(backoff.delay())
                    continue
                if not self._lost_connection:
                    logger.error("Redis reader lost its connection (%s); reconnecting", exc)
                self._lost_connection = True
                self.health.mark_down(failure)
                if self.on_failure is not None:
                    self.on_failure(self, failure)
                await asyncio.sleep(backoff.delay())
            except Exception as exc:
                # Never die silently: a bug here must not stop every channel.
                logger.exception("Redis reader failed; it starts again")
                self.health.mark_down(classify(exc, cluster=self.cluster))
                await asyncio.sleep(backoff.delay())

    async def _login_refused(self, failure: Failure) -> None:
        """Redis refuses this process's connection: logged once per refusal, every
        channel's publishes let through (they are refused too, at once), tried again
        after 1 s doubling to 30 s."""
        log = logger.debug if self._refused == failure.detail else logger.error
        self._refused = failure.detail
        log(
            "Redis refuses the reader's connection (%s); tried again from time to time "
            "(1 s doubling to 30 s)",
            failure.describe(),
        )
        loop = asyncio.get_running_loop()
        until = loop.time() + self._refusals.delay()
        while (left := until - loop.time()) > 0:
            for channel in self.channels.values():
                channel.ready.set()  # nobody waits for a reader that cannot log in
            self._wake.clear()  # set when a channel comes: let its publishes through
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), left)

    async def _connect(self) -> None:
        try:
            self._client_id = await self.client.client_id()
        except ResponseError as exc:
            if classify(exc, cluster=self.cluster).kind in _TRANSIENT:
                raise
            # Refused (an ACL without CLIENT): read on; a new channel then waits for
            # the blocking read to end instead of interrupting it.
            logger.warning(
                "Redis refuses CLIENT ID (%s): channels start within 1 s", redis_said(exc)
            )
            self._client_id = 0
        if self._lost_connection:
            self._lost_connection = False
            logger.info("Redis reader reconnected")
        if self._refused is not None:
            self._refused = None
            self._refusals.reset()
            logger.info("Redis accepts the reader's connection again")
        self.health.mark_up()

    async def _idle(self) -> None:
        loop = asyncio.get_running_loop()
        retries = [c.retry_at for c in self.channels.values() if c.error is not None]
        wait = min([BLOCK_MS / 1000, *(at - loop.time() for at in retries)])
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(wait, 0.001))

    def _retry_refused(self) -> None:
        """Refused channels whose wait is over are read again."""
        now = asyncio.get_running_loop().time()
        for channel in self.channels.values():
            if channel.error is not None and now >= channel.retry_at:
                channel.error = None

    def _readable_again(self, channel: Channel) -> None:
        if channel.refused is not None:
            logger.info("Redis no longer refuses the keys of channel %r", channel.key)
            channel.refused = None
            channel.refusals.reset()

    async def _execute(self, build: Callable[[Pipeline], object]) -> list[Any]:
        """Run the transaction ``build`` queues on the reader's connection; on a
        cluster, if the source of a migrating slot answers ``ASK`` (the keys are on
        the target already), run it again on the target after ``ASKING``."""
        pipe = self.client.pipeline(transaction=True)
        build(pipe)
        try:
            return list(await pipe.execute(raise_on_error=False))
        except ResponseError as exc:
            target = asked(exc)
            if not self.cluster or self.ask is None or target is None:
                raise
        pipe = await transaction(await self.ask(*target), asking=True)
        try:
            build(pipe)
            return list(await pipe.execute(raise_on_error=False))
        finally:
            await pipe.reset()  # type: ignore[no-untyped-call]

    async def _establish(self, channel: Channel) -> None:
        def build(pipe: Pipeline) -> None:
            pipe.eval(ENSURE_FLOOR, 2, channel.key, channel.floor_key)
            pipe.xinfo_stream(channel.key)

        try:
            floor, info = await self._execute(build)
            if isinstance(floor, Exception):
                raise floor
            stream = stream_info(info)
        except ResponseError as exc:
            failure = classify(exc, cluster=self.cluster)
            if failure.kind in _TRANSIENT:
                raise
            self._break(channel, failure)
            return
        if self.channels.get(channel.key) is not channel:
            return  # moved to another reader (or left) meanwhile
        channel.floor = StreamId.parse(floor)
        channel.cursor = stream.newest if stream else ZERO
        channel.seq = stream.entries_added if stream else 0
        channel.ready.set()
        self._readable_again(channel)

    def _break(self, channel: Channel, failure: Failure) -> None:
        """Set ``channel`` aside: Redis refuses its keys (another program's key of
        another type, an ACL, no memory...). Logged once per refusal; tried again
        after a wait (1 s doubling to 30 s); other channels go on."""
        loop = asyncio.get_running_loop()
        channel.error = failure.describe()
        channel.retry_at = loop.time() + channel.refusals.delay()
        channel.ready.set()
        self.health.mark_down(failure)
        log = logger.debug if channel.refused == failure.detail else logger.error
        channel.refused = failure.detail
        log(
            "Redis refuses the keys of channel %r (%s); it is tried again from time to "
            "time (1 s doubling to 30 s) while it has subscribers",
            channel.key,
            failure.detail,
        )

    async def _read_batch(self, channels: Sequence[Channel]) -> bool:
        """Read what is new in ``channels`` and deliver it: one transaction; in a
        cluster, one per hash slot, every slot's sent in one round trip (see
        :meth:`_read_slots`). Returns whether anything was read."""
        if not self.cluster:
            return await self._read_refusing(channels)
        groups = by_slot(channels)
        if len(groups) == 1:
            return await self._read_refusing(next(iter(groups.values())))
        return await self._read_slots(groups)

    async def _read_slots(self, groups: dict[int, list[Channel]]) -> bool:
        """A cluster master's channels in several slots: one transaction per slot (each
        stream's floor and state read atomically with its entries, as for one slot),
        all sent in one pipeline. Only the slots a poll (just made, or made before
        this read) found entries in, or that delivered in the last round (more may
        wait), or that hold a channel with a floor to raise are read, and every slot
        at least every :data:`BLOCK_MS` ms
        (as a single Redis's reader checks its idle streams). A slot whose transaction
        is redirected (``ASK``) or refused is read again alone (:meth:`_read_refusing`
        follows ``ASK``, and sets aside only the channels Redis refuses)."""
        now = asyncio.get_running_loop().time()
        due = self._due
        full = due is None or now >= self._full_at
        if full:
            self._full_at = now + BLOCK_MS / 1000
        elif not self._polled:
            # After a round that delivered: those slots may hold more, and entries
            # may have come to others meanwhile (never left for the periodic read).
            due = (due or set()) | await self._poll_once(groups)
        self._polled = False
        chosen = {
            slot: group
            for slot, group in groups.items()
            if full
            or (due is not None and slot in due)
            or any(c.failed_over or c.raise_floor_to is not None for c in group)
        }
        plans = [(group, *self._plan(group)) for group in chosen.values()]
        answers = await transactions(self.client, [commands for _, _, commands in plans])
        delivered_in: set[int] = set()
        again: list[list[Channel]] = []
        transient: ResponseError | None = None
        for (slot, group), (_, raising, _), answer in zip(
            chosen.items(), plans, answers, strict=True
        ):
            if isinstance(answer, ResponseError):
                if classify(answer, cluster=True).kind in _TRANSIENT and asked(answer) is None:
                    transient = transient or answer
                else:
                    again.append(group)
                continue
            if self._judge(group, raising, answer):
                delivered_in.add(slot)
        for group in again:
            if await self._read_refusing(group):
                delivered_in.add(key_slot(group[0].key.encode()))
        if transient is not None:
            raise transient  # MOVED, BUSY: the other slots were read and delivered
        self._due = delivered_in
        return bool(delivered_in)

    async def _read_refusing(self, channels: Sequence[Channel]) -> bool:
        """:meth:`_read_group`; if Redis refuses the transaction as a whole, each
        channel alone, so that only those it refuses are set aside."""
        try:
            return await self._read_group(channels)
        except ResponseError as exc:
            failure = classify(exc, cluster=self.cluster)
            if failure.kind in _TRANSIENT:
                raise
            if len(channels) == 1:
                self._break(channels[0], failure)
                return False
        delivered = False
        for channel in channels:
            delivered = await self._read_refusing([channel]) or delivered
        return delivered

    async def _read_group(self, channels: Sequence[Channel]) -> bool:
        """Read what is new in ``channels`` (one transaction) and deliver it, each
        stream's floor and state read atomically with it and judged first
        (:func:`continuity`). Returns whether anything was read."""
        raising, commands = self._plan(channels)

        def build(pipe: Pipeline) -> None:
            pipe.response_callbacks = {}  # raw replies, as from transactions()
            for command in commands:
                pipe.execute_command(*command)

        return self._judge(channels, raising, await self._execute(build))

    def _plan(self, channels: Sequence[Channel]) -> tuple[list[Channel], list[Command]]:
        """The commands of the transaction that reads ``channels`` (one slot): the
        floors to raise, each stream's floor and state, then one ``XREAD``; and the
        channels whose floor it raises."""
        for channel in channels:
            if channel.failed_over and channel.cursor is not None:
                # Past every entry delivered here: raised in the transaction that
                # reads the new master first, so the floor read below includes it.
                channel.raise_floor_to = max(channel.raise_floor_to or ZERO, channel.cursor.after())
        raising = [c for c in channels if c.raise_floor_to is not None]
        commands: list[Command] = [
            ("EVAL", RAISE_FLOOR, 1, c.floor_key, str(c.raise_floor_to)) for c in raising
        ]
        for channel in channels:
            commands.append(("EVAL", ENSURE_FLOOR, 2, channel.key, channel.floor_key))
            commands.append(("XINFO", "STREAM", channel.key))
        keys = [c.key for c in channels]
        cursors = [str(c.cursor) for c in channels]
        commands.append(("XREAD", "COUNT", READ_COUNT, "STREAMS", *keys, *cursors))
        return raising, commands

    def _judge(
        self, channels: Sequence[Channel], raising: Sequence[Channel], results: list[Any]
    ) -> bool:
        """Judge and deliver what the transaction :meth:`_plan` made answered
        (``results``: raw replies). Returns whether anything was read."""
        *raised, response = results
        states = raised[len(raising) :]
        for channel, result in zip(raising, raised, strict=False):
            if not isinstance(result, Exception):
                channel.floor = StreamId.parse(result)  # ours: not a new generation
                channel.raise_floor_to = None
        delivered = False
        for index, channel in enumerate(channels):
            if self.channels.get(channel.key) is not channel:
                continue  # moved to another reader (or left) meanwhile: not ours now
            floor, info = states[2 * index], states[2 * index + 1]
            try:
                if isinstance(floor, Exception):
                    raise floor
                stream = stream_info(info)
            except ResponseError as exc:
                self._break(channel, classify(exc, cluster=self.cluster))
                continue  # and XREAD failed with it: read again
            if isinstance(response, Exception):
                continue
            self._readable_again(channel)
            batch = _entries_by_key(response).get(channel.key, [])
            if self._continues(channel, StreamId.parse(floor), stream):
                self._deliver(channel, batch)
                delivered = delivered or bool(batch)
                if channel.seq is None and len(batch) < READ_COUNT and stream is not None:
                    channel.seq = stream.entries_added  # everything is read now
        if isinstance(response, Exception) and not any(c.error for c in channels):
            raise response
        return delivered

    def _continues(
        self,
        channel: Channel,
        floor: StreamId | None,
        stream: StreamState | None,
    ) -> bool:
        """Judge ``channel``'s stream; reset its subscribers if entries they had not
        received are gone, or may be (its cluster master failed over). Returns
        whether the batch read with it may be delivered."""
        assert channel.cursor is not None
        state = continuity(
            cursor=channel.cursor,
            seq=channel.seq,
            known_floor=channel.floor,
            floor=floor,
            exists=stream is not None,
            first=stream.first if stream else None,
            newest=stream.newest if stream else ZERO,
            entries_added=stream.entries_added if stream else 0,
            length=stream.length if stream else 0,
        )
        if channel.failed_over:
            return self._after_failover(channel, state, floor, stream)
        if floor is not None and floor != channel.floor and state is Continuity.INTACT:
            channel.floor = floor  # the floor key was set again; the stream is intact
        if state is Continuity.INTACT:
            return True
        covers = channel.reset_covers
        if (
            state is Continuity.FLOOR_RAISED
            and covers is not None
            and floor is not None
            and floor <= covers.after()
        ):
            # This failover seen through another process (see _after_failover): its
            # reset went out already, and nothing below the floor is gone.
            channel.floor = floor
            channel.seq = None
            return True
        told = self._reset(channel)
        (logger.error if told else logger.info)(
            "channel %r: %s; %s",
            channel.key,
            _CONTINUITY_LOGS[state],
            "its subscribers get a reset"
            if told
            else "its subscribers had a reset for this gap already",
        )
        if state is Continuity.TRIMMED:
            assert stream is not None
            channel.seq = stream.entries_added - stream.length
            return True
        if state is Continuity.FLOOR_RAISED:
            # Entries below the new floor still exist: read on from the cursor.
            channel.floor = floor
            channel.seq = None
            return True
        if state is Continuity.NEW_GENERATION:
            assert floor is not None
            channel.floor = floor
            # No entry of the stream is below the floor: nothing is skipped.
            channel.cursor = max(channel.cursor, floor.before())
            channel.seq = 0
        else:
            # Raised with the next read (and again until Redis took it).
            channel.raise_floor_to = channel.cursor.after()
            channel.seq = None
        return False

    def _after_failover(
        self,
        channel: Channel,
        state: Continuity,
        floor: StreamId | None,
        stream: StreamState | None,
    ) -> bool:
        """The first read of ``channel`` on the master that replaced a failed one.

        Redis replicates asynchronously: entries the old master acknowledged may not
        have reached the replica promoted in its place, and nothing tells which. So
        the subscribers get one reset (``data_lost``), then every entry the new
        master has after the cursor (the cursor never moves: nothing that exists is
        skipped). The floor was raised, in the transaction that read this, past the
        last entry delivered here (each process raises it past its own; the floor
        only rises), so a client resuming from an entry delivered before the failover
        gets a reset too, on every process.

        If the new master's newest id is below the cursor (the entries after it were
        lost), the cursor goes back to it: every entry up to there was delivered, and
        what the new master adds comes after it.

        The reset covers the entries up to the new master's newest one read here
        (``reset_covers``), all added before it was sent: until an entry after it is
        delivered, a floor raised to at most just past it is no second reset. That
        is this failover seen through another process that had delivered more of the
        old master's entries than this reader: it raises the floor just past them,
        while this reader, behind it, delivers them from the new master after its
        reset; the floor is then above this cursor with nothing lost since the reset.
        Any other loss noticed meanwhile (entries trimmed, a lost tail) resets as
        always. Returns whether the batch read with this (from the old cursor) may
        be delivered."""
        assert channel.cursor is not None
        channel.failed_over = False
        told = self._reset(channel)
        (logger.error if told else logger.info)(
            "channel %r: its Redis Cluster master failed over; entries the old master "
            "acknowledged may be lost (%s)%s",
            channel.key,
            state.value,
            "; its subscribers get a reset" if told else "",
        )
        if floor is not None:
            channel.floor = floor
        channel.seq = None
        newest = stream.newest if stream is not None else ZERO
        channel.reset_covers = max(newest, channel.reset_covers or ZERO)
        if newest < channel.cursor:
            channel.cursor = newest
            return False
        return True

    async def _wait_for_entries(self, channels: Sequence[Channel]) -> None:
        channels = [c for c in channels if c.readable]
        if self._channels_changed or not channels:
            self._channels_changed = False
            self._due = None
            return  # a channel was added (or broke) meanwhile: read again first
        if self.cluster:
            groups = by_slot(channels)
            if len(groups) > 1:
                # One XREAD cannot span hash slots: poll them, one round trip.
                await self._poll_slots(groups)
                return
        self._blocked = True
        try:
            await self.client.xread(
                {c.key: str(c.cursor) for c in channels}, count=1, block=BLOCK_MS
            )
        except ResponseError as exc:
            if asked(exc) is not None:
                # A slot being migrated, its keys on the target already: no blocking
                # read there (ASKING lasts one command); the next read goes there: poll.
                await asyncio.sleep(POLL_MS / 1000)
                return
            if classify(exc, cluster=self.cluster).kind in _TRANSIENT:
                raise
            # A key Redis refuses now (WRONGTYPE): the next read says which.
        finally:
            self._blocked = False

    async def _poll_slots(self, groups: dict[int, list[Channel]]) -> None:
        """Every :data:`POLL_MS` ms, ask the master which slots have new entries (the
        :data:`POLL` script); returns when some have (those slots are read next),
        when every slot is due for its periodic read, or when the channel set
        changed."""
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            due = await self._poll_once(groups)
            if due:
                self._due = due
                self._polled = True
                return
            if self._channels_changed or loop.time() >= self._full_at:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_MS / 1000)
            if self._channels_changed:
                self._due = None
                return

    async def _poll_once(self, groups: dict[int, list[Channel]]) -> set[int]:
        """The slots of ``groups`` with new entries (one :data:`POLL` script)."""
        slots = [slot for slot, group in groups.items() for _ in group]
        args: list[str] = []
        for group in groups.values():
            for channel in group:
                args += [channel.key, str(channel.cursor)]
        try:
            new = await self._poll(args=args)
        except ResponseError as exc:
            return await self._poll_each(groups, exc)
        self._poll_refused = None
        return {slots[int(i) - 1] for i in new}

    async def _poll_each(self, groups: dict[int, list[Channel]], error: ResponseError) -> set[int]:
        """The poll when the script fails (``error``: a slot being migrated, Redis
        before 7.0, an ACL without ``EVALSHA``): one ``XREAD`` per slot, all in one
        pipeline. Returns the slots with new entries, or whose ``XREAD`` failed (their
        read follows ``ASK``, reports ``MOVED``, sets a refused key aside)."""
        said = redis_said(error)
        (logger.debug if self._poll_refused == said else logger.info)(
            "Redis Cluster: the poll script failed (%s); this poll reads each slot",
            said,
        )
        self._poll_refused = said
        pipe = self.client.pipeline(transaction=False)
        pipe.response_callbacks = {}  # raw replies: only whether there is one
        for group in groups.values():
            keys, cursors = [c.key for c in group], [str(c.cursor) for c in group]
            pipe.execute_command("XREAD", "COUNT", 1, "STREAMS", *keys, *cursors)
        replies = await pipe.execute(raise_on_error=False)
        return {slot for slot, reply in zip(groups, replies, strict=True) if reply}

    def _deliver(self, channel: Channel, entries: Iterable[tuple[Any, Any]]) -> None:
        last, count = None, 0
        for entry_id, fields in entries:
            last, count = entry_id, count + 1
            for listener in list(channel.listeners):
                listener.deliver_entry(entry_id, fields)
        if last is not None:
            channel.cursor = StreamId.parse(last)
            channel.reset_sent.clear()
            covers = channel.reset_covers
            if covers is not None and channel.cursor is not None and channel.cursor > covers:
                channel.reset_covers = None
            if channel.seq is not None:
                channel.seq += count

    def _reset(self, channel: Channel) -> bool:
        """Tell ``channel``'s listeners that entries after the cursor are lost, or may
        be: each at most once between two delivered entries (a second loss noticed
        in the same gap adds nothing). Returns whether any listener was told."""
        cursor = channel.cursor if channel.cursor is not None else ZERO
        told = False
        for listener in list(channel.listeners):
            if listener in channel.reset_sent:
                continue
            channel.reset_sent.add(listener)
            listener.lost(str(cursor))
            told = True
        return told

    async def aclose(self) -> None:
        """Stop reading (after the current round trip) and close the connection."""
        self.channels.clear()
        self._wake.set()
        if self._blocked and self._client_id:
            await self._unblock(self._client_id)
        for task in (self._task, *self._tasks):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=BLOCK_MS / 1000 + 1)
        await self.client.aclose()


def by_slot(channels: Iterable[Channel]) -> dict[int, list[Channel]]:
    """``channels`` by the Redis Cluster hash slot of their keys, in order."""
    groups: dict[int, list[Channel]] = {}
    for channel in channels:
        groups.setdefault(key_slot(channel.key.encode()), []).append(channel)
    return groups
