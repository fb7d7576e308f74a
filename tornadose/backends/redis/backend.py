"""``RedisBackend``: a channel kept in a Redis Stream, shared by every process using it.

It implements :class:`~tornadose.core.backend.Backend` over the pieces of this
package: the process's shared :class:`~tornadose.backends.redis.connection.RedisConnection`
(one per event loop and connection settings), whose
:class:`~tornadose.backends.redis.reader.Reader` feeds it while attached and whose
:class:`~tornadose.backends.redis.writer.Writer` sends what it publishes;
:func:`~tornadose.backends.redis.resume.plan_resume` answers resumes. Its one
history is the stream itself (``history`` is the most a resume replays; the stream
keeps more while they are young: ``stream_retention``); the entries it judged last are
cached (:class:`~tornadose.backends.redis.recent.RecentEntries`), so that replays hand
out the messages already decoded, each entry validated once, not once per resuming
client. It reaches its store only through the callbacks given to
:meth:`RedisBackend.attach`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tornadose.backends.redis.connection import RedisConnection, connection_for, forget_connection
from tornadose.backends.redis.health import (
    REDIS_ERRORS,
    BackendHealth,
    Backoff,
    ErrorKind,
    RefusalBackoff,
    classify,
)
from tornadose.backends.redis.layout import FLOOR_SUFFIX, InvalidEntry, decode_entry, floor_key
from tornadose.backends.redis.reader import Channel
from tornadose.backends.redis.recent import RECENT_LIMIT, RecentEntries
from tornadose.backends.redis.resume import plan_resume
from tornadose.backends.redis.writer import Submission
from tornadose.core.backend import Deliver, Lost
from tornadose.core.errors import StoreUnavailable
from tornadose.core.history import Resume
from tornadose.core.message import Message
from tornadose.core.published import Published

__all__ = [
    "DEFAULT_PUBLISH_TIMEOUT",
    "DEFAULT_STREAM_MAXLEN",
    "DEFAULT_STREAM_RETENTION",
    "RedisBackend",
    "split_cluster_flag",
]

logger = logging.getLogger("tornadose.redis")

#: Seconds ``submit()`` waits for an unreachable Redis before it gives up.
DEFAULT_PUBLISH_TIMEOUT = 5.0
#: Seconds an entry stays in a channel's stream at least, even beyond ``history``
#: entries: a reading process that falls behind by less than that loses nothing.
DEFAULT_STREAM_RETENTION = 10.0
#: A stream's entries at most, whatever their age (unless ``history`` is larger).
DEFAULT_STREAM_MAXLEN = 1_000_000

_TRUE = frozenset({"1", "true", "yes", "on"})


def split_cluster_flag(url: str | None) -> tuple[str | None, bool]:
    """``url`` without its ``cluster=`` query parameter (which redis-py does not know),
    and whether it said yes (``1``, ``true``, ``yes``, ``on``)."""
    if url is None or "cluster=" not in url:
        return url, False
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    flag = any(name == "cluster" and value.lower() in _TRUE for name, value in query)
    rest = urlencode([(name, value) for name, value in query if name != "cluster"])
    return urlunsplit(parts._replace(query=rest)), flag


def _startup_nodes(
    url: str | None,
    redis_kwargs: dict[str, Any],
    *,
    cluster: bool,
    nodes: Sequence[str | tuple[str, int]] | None,
) -> list[tuple[str, int]] | None:
    """The ``(host, port)`` nodes a cluster client starts from (``None``: one Redis)."""
    if nodes is not None:
        found: list[tuple[str, int]] = []
        for node in nodes:
            if isinstance(node, str):
                host, colon, port = node.rpartition(":")
                if not colon or not port.isdigit():
                    raise ValueError(f"a startup node is 'host:port', not {node!r}")
                found.append((host.strip("[]"), int(port)))
            else:
                found.append((str(node[0]), int(node[1])))
        if not found:
            raise ValueError("startup_nodes must name at least one node")
        return found
    if not cluster:
        return None
    if url is not None:
        parts = urlsplit(url)
        return [(parts.hostname or "127.0.0.1", parts.port or 6379)]
    host = redis_kwargs.pop("host", "127.0.0.1")
    port = redis_kwargs.pop("port", 6379)
    return [(str(host), int(port))]


class RedisBackend:
    """The :class:`~tornadose.core.backend.Backend` of one channel in Redis.

    ``RedisBackend(channel, url=None, *, history, history_max_age=None,
    publish_timeout=5.0, validate=None, **redis_kwargs)``: ``history`` (at least 1)
    is the most a resume replays, and about how many entries the stream keeps once
    they are older than ``stream_retention`` (its ``MAXLEN`` only with
    ``stream_retention=0``);
    ``validate`` (the store's schema check) is applied to every entry read, and an
    entry it refuses is skipped, logged and counted. Nothing connects until it is
    used from a running event loop.

    Each entry is judged (decoded and validated) once while it stays among the
    :attr:`recent` ones (the last ``min(history, RECENT_LIMIT)`` judged): a replay
    hands out the very :class:`Message` objects delivered live or replayed before,
    and an invalid entry is counted in :attr:`invalid_entries` and logged as a
    warning once, the first time this backend meets it, live or in a replay.
    """

    def __init__(
        self,
        channel: str = "tornadose",
        url: str | None = None,
        *,
        history: int,
        history_max_age: float | None = None,
        publish_timeout: float = DEFAULT_PUBLISH_TIMEOUT,
        validate: Callable[[Any], Any] | None = None,
        cluster: bool = False,
        startup_nodes: Sequence[str | tuple[str, int]] | None = None,
        stream_retention: float = DEFAULT_STREAM_RETENTION,
        stream_maxlen: int | None = None,
        **redis_kwargs: Any,
    ) -> None:
        if not channel:
            raise ValueError("channel must not be empty")
        if channel.endswith(FLOOR_SUFFIX):
            raise ValueError(f"a channel's name must not end with {FLOOR_SUFFIX!r}: {channel!r}")
        if history < 1:
            raise ValueError(
                f"a RedisStore needs history >= 1 (the most a resume replays), not {history}"
            )
        if publish_timeout < 0:
            raise ValueError(f"publish_timeout must not be negative, not {publish_timeout}")
        if stream_retention < 0:
            raise ValueError(f"stream_retention must not be negative, not {stream_retention}")
        if stream_maxlen is None:
            stream_maxlen = max(history, DEFAULT_STREAM_MAXLEN)
        if stream_maxlen < history:
            raise ValueError(
                f"stream_maxlen ({stream_maxlen}) must be at least history ({history})"
            )
        url, cluster_url = split_cluster_flag(url)
        self.startup_nodes = _startup_nodes(
            url, redis_kwargs, cluster=cluster or cluster_url, nodes=startup_nodes
        )
        self.channel = channel
        #: The channel's floor key (see :func:`~tornadose.backends.redis.layout.floor_key`).
        self.floor_key = floor_key(channel, cluster=self.startup_nodes is not None)
        self.url = url
        #: The most entries a resume replays, and the stream's approximate ``MAXLEN``
        #: once its entries are older than :attr:`stream_retention`.
        self.maxlen = history
        #: Seconds an entry stays in the stream even beyond ``history`` entries.
        self.stream_retention = stream_retention
        self.retention_ms = round(stream_retention * 1000)
        #: The stream's hard cap (``XADD ... MAXLEN ~``), whatever the entries' age.
        self.stream_maxlen = stream_maxlen
        self.history_max_age = history_max_age
        self.publish_timeout = publish_timeout
        self.redis_kwargs = redis_kwargs
        self.validate: Callable[[Any], Any] = validate if validate is not None else _as_is
        #: Entries of the stream that were not valid messages (skipped).
        self.invalid_entries = 0
        #: Submissions that failed (``StoreUnavailable``).
        self.publish_failures = 0
        #: The entries judged last, shared by replays (see :mod:`.recent`).
        self.recent = RecentEntries(min(history, RECENT_LIMIT))
        #: The reader's channel the cache follows (``None``: not reading).
        self._channel: Channel | None = None
        self._deliver: Deliver | None = None
        self._lost: Lost | None = None
        self._connection: RedisConnection | None = None
        self._connection_loop: asyncio.AbstractEventLoop | None = None

    @property
    def connection(self) -> RedisConnection:
        """The Redis connection in the running event loop (made on first use)."""
        loop = asyncio.get_running_loop()
        if self._connection is None or self._connection_loop is not loop:
            self._connection = connection_for(self.url, self.redis_kwargs, self.startup_nodes)
            self._connection_loop = loop
            self._connection.users.add(self)
        return self._connection

    # -- Backend --------------------------------------------------------------------

    def publish(self, message: Message) -> Published:
        """Send ``message`` in the background, in submission order; the result
        completes with the message and its entry id once Redis added it. Needs a
        running event loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "RedisStore.submit() needs a running event loop; call it from a "
                "coroutine or a callback of the loop"
            ) from None
        future: asyncio.Future[Message] = loop.create_future()
        submission = Submission(self, message, future, loop.time() + self.publish_timeout)
        self.connection.writer.enqueue(submission)
        return Published(future)

    def attach(self, deliver: Deliver, lost: Lost) -> None:
        """Read the channel (this process's reader) and feed every entry to ``deliver``."""
        self._deliver, self._lost = deliver, lost
        self._follow(self.connection.reader.attach(self))

    def detach(self) -> None:
        """Stop reading the channel for this backend (and forget the entries judged:
        what happens to the stream meanwhile is not watched)."""
        self._deliver = self._lost = None
        self._follow(None)
        if self._connection is not None:
            self._connection.reader.detach(self)

    def _follow(self, channel: Channel | None) -> None:
        """The reader reads ``channel`` for this backend now: a channel other than the
        one the cache was filled from (a new reading, or none) empties it."""
        if channel is not self._channel:
            self.recent.invalidate()
            self._channel = channel

    def resume(self, last_event_id: str) -> Coroutine[Any, Any, Resume]:
        """Ask Redis (in a task) for the entries after ``last_event_id``; while Redis
        cannot be reached, ask again with backoff."""
        connection = self.connection
        channel = connection.reader.attach(self)
        self._follow(channel)

        async def ask() -> Resume:
            backoff, refusals, attempts = Backoff(), RefusalBackoff(), 0
            while True:
                # Entries read by this query may be judged from the cache only if
                # nothing invalidated it since the query was sent.
                decode = functools.partial(self._replayed, generation=self.recent.generation)
                try:
                    return await plan_resume(
                        await connection.route(self.channel),
                        channel,
                        last_event_id,
                        history=self.maxlen,
                        max_age=self.history_max_age,
                        decode=decode,
                    )
                except REDIS_ERRORS as exc:
                    failure = classify(exc, cluster=connection.cluster)
                    connection.health.mark_down(failure)
                    log = logger.warning if attempts == 0 else logger.debug
                    log("a resume on channel %r waits: %s", self.channel, failure.describe())
                    attempts += 1
                    if failure.kind is ErrorKind.REFUSED:
                        await asyncio.sleep(refusals.delay())
                        continue
                    if failure.kind is ErrorKind.REDIRECTED or connection.cluster:
                        with contextlib.suppress(*REDIS_ERRORS):
                            await connection.refresh()
                    await asyncio.sleep(backoff.delay())

        return ask()

    def snapshot(self) -> dict[str, int]:
        """``backend_up`` (1 while the last round trip to Redis succeeded or got a
        refused command, 0 after it was unreachable, busy, redirected or refused the
        login), ``backend_errors`` (every failed round trip) and the same by kind:
        ``backend_errors_unreachable``, ``backend_errors_busy`` (Redis said "not
        now"), ``backend_errors_refused``, ``backend_errors_redirected`` (a cluster's
        slot moving or master failing over), ``backend_errors_other``;
        ``invalid_entries``, ``publish_failures``; the history lives in Redis:
        ``history_messages`` is 0."""
        connection = self._connection
        health = connection.health if connection is not None else BackendHealth()
        numbers = {
            "history_messages": 0,
            "backend_up": int(health.up),
            "backend_errors": health.errors,
            "invalid_entries": self.invalid_entries,
            "publish_failures": self.publish_failures,
        }
        for kind, count in health.by_kind.items():
            numbers[f"backend_errors_{kind.value}"] = count
        return numbers

    async def aclose(self) -> None:
        """Wait for this backend's pending submissions; close the connection once no
        other backend of the process uses it."""
        self.detach()
        connection = self._connection
        if connection is None:
            return
        pending = connection.writer.pending(self)
        if pending:
            await asyncio.wait(pending)
        connection.users.discard(self)
        if not connection.users:
            forget_connection(connection)
            await connection.aclose()

    # -- what the reader and the writer call ----------------------------------------

    def deliver_entry(self, entry_id: Any, fields: Mapping[Any, Any]) -> None:
        """Decode a stream entry and feed it to the store (skipped if invalid); the
        verdict is kept in :attr:`recent` for replays."""
        text_id = _text_id(entry_id)
        message = self.decode(text_id, fields)
        self.recent.remember(text_id, fields, message)
        deliver = self._deliver
        if message is not None and deliver is not None:
            deliver(message)

    def lost(self, last_id: str | None) -> None:
        """Entries after ``last_id`` are gone (the stream was trimmed past them,
        deleted, or lost its tail): the cache is emptied, and the store resets its
        subscribers."""
        self.recent.invalidate()
        if self._lost is not None:
            self._lost(last_id)

    def failed(self, error: StoreUnavailable) -> None:
        """A submission failed: logged and counted in :attr:`publish_failures`."""
        self.publish_failures += 1
        logger.warning("message not published to %r (%s): %s", self.channel, error.kind, error)

    def decode(
        self, entry_id: Any, fields: Mapping[Any, Any], *, where: str = ""
    ) -> Message | None:
        """The message of a stream entry, or ``None`` if it is invalid: then counted in
        :attr:`invalid_entries` and logged as a warning (``where`` says where it was
        met, for the log). The cache is neither read nor filled."""
        try:
            return decode_entry(entry_id, fields, self.validate)
        except InvalidEntry as exc:
            self.invalid_entries += 1
            logger.warning("skipped an invalid entry of channel %r%s: %s", self.channel, where, exc)
            return None
        except Exception:
            # A validator that raises something else: still one bad entry, not a
            # reason to stop reading.
            self.invalid_entries += 1
            logger.exception(
                "skipped an entry of channel %r%s: validating it failed", self.channel, where
            )
            return None

    def _replayed(
        self, entry_id: Any, fields: Mapping[Any, Any], *, generation: int
    ) -> Message | None:
        """The message of an entry a replay read, from the cache when it holds that
        entry with these fields and was not invalidated since the replay's query
        (``generation``); otherwise decoded (an invalid one counted and logged now:
        this process may never have met it live) and kept."""
        text_id = _text_id(entry_id)
        recent = self.recent
        current = generation == recent.generation
        if current:
            known = recent.lookup(text_id, fields)
            if known is not None:
                if known.message is None:
                    logger.debug(
                        "skipped invalid entry %s of channel %r in a replay (counted "
                        "when first met)",
                        text_id,
                        self.channel,
                    )
                return known.message
        message = self.decode(text_id, fields, where=" in a replay")
        if current:
            recent.remember(text_id, fields, message)
        return message

    def __repr__(self) -> str:
        return f"<RedisBackend channel={self.channel!r}>"


def _as_is(payload: Any) -> Any:
    return payload


def _text_id(entry_id: Any) -> str:
    return entry_id.decode("ascii") if isinstance(entry_id, bytes) else str(entry_id)
