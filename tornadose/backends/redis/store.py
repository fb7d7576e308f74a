"""``RedisStore``: one channel shared by many processes and machines, through Redis Streams.

Needs the ``redis`` extra (``pip install 'tornadose[redis]'``) and Redis 7.0 or newer.

A ``RedisStore`` is a :class:`~tornadose.core.store.BaseStore` over a
:class:`~tornadose.backends.redis.backend.RedisBackend`. Each process publishes with
``XADD`` and reads with one connection of its own that serves every ``RedisStore`` of
the process with the same connection settings, reading only the channels that have
subscribers here. Every process delivers a
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

from typing import Any, ClassVar

from tornadose.backends.redis.backend import DEFAULT_PUBLISH_TIMEOUT, RedisBackend
from tornadose.backends.redis.connection import RedisConnection
from tornadose.backends.redis.health import BackendHealth
from tornadose.core.backend import Backend
from tornadose.core.history import History
from tornadose.core.published import Published
from tornadose.core.reasons import OverflowPolicy
from tornadose.core.store import BaseStore

__all__ = [
    "DEFAULT_PUBLISH_TIMEOUT",
    "BackendHealth",
    "RedisBackend",
    "RedisConnection",
    "RedisStore",
]


class RedisStore(BaseStore):
    """A store whose messages go through a Redis Stream, shared by every process
    that uses the same ``channel`` on the same Redis (see the module docstring).

    ``RedisStore(channel='tornadose', url=None, publish_timeout=5.0, **redis_kwargs)``:
    ``url`` (``redis://host:port/db``) or ``redis_kwargs`` (``host``, ``port``,
    ``password``...) say how to reach Redis, as for ``redis.asyncio.Redis``. The
    store options of every store apply (``schema``, ``max_queue``, ``overflow``,
    ``history``...); ``history`` (default 1000) is the most a resume replays.

    Redis-only options: ``stream_retention`` (seconds, default 10): entries younger
    than that stay in the stream even beyond ``history`` entries, so a process whose
    reader falls behind by less than that loses nothing (``0``: trim to about
    ``history`` on every ``XADD``); ``stream_maxlen`` (default 1,000,000): the
    stream's cap whatever the age. A Redis Cluster: ``cluster=True`` (``url`` or
    ``host``/``port`` name a node), a URL with ``?cluster=true``, or
    ``startup_nodes=["host:port", ...]`` (see :mod:`~tornadose.backends.redis.cluster`).

    Create it anywhere; it connects on first use, from the running event loop.
    ``submit()`` needs a running loop. A message Redis refuses (``WRONGTYPE``,
    ``NOPERM``...) fails at once with :class:`~tornadose.core.errors.StoreRefused`.
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
        self._redis = RedisBackend(
            channel,
            url,
            history=self.history_limit,
            history_max_age=self.history_max_age,
            publish_timeout=publish_timeout,
            validate=self.validate,
            **redis_kwargs,
        )

    def make_backend(self) -> Backend:
        """The :class:`RedisBackend` of the channel."""
        return self._redis

    @property
    def redis(self) -> RedisBackend:
        """The store's backend (its connection, counters and settings)."""
        self.backend  # noqa: B018 -- made the store's backend on first use
        return self._redis

    @property
    def channel(self) -> str:
        """The Redis Stream's key."""
        return self._redis.channel

    @property
    def url(self) -> str | None:
        """The Redis URL (``None``: ``redis_kwargs`` say where Redis is)."""
        return self._redis.url

    @property
    def publish_timeout(self) -> float:
        """Seconds ``submit()`` waits for an unreachable Redis."""
        return self._redis.publish_timeout

    @property
    def redis_kwargs(self) -> dict[str, Any]:
        """The connection options given to the constructor."""
        return self._redis.redis_kwargs

    @property
    def history(self) -> History:
        """Not in the process: a ``RedisStore`` keeps its history in the Redis Stream.

        Raises ``AttributeError`` saying so, and what to use instead: ``XRANGE`` on
        the stream to read it, ``subscribe(last_event_id=...)`` to be replayed from
        it, :attr:`history_limit` (the most a resume replays) and
        :attr:`history_max_age` for the settings."""
        raise AttributeError(
            f"a RedisStore keeps its history in the Redis Stream {self.channel!r}, not in "
            f"the process: read it with XRANGE {self.channel}, or subscribe with "
            f"last_event_id= to be replayed from it; store.history_limit "
            f"({self.history_limit}) is the most a resume replays and "
            f"store.history_max_age ({self.history_max_age}) the age limit of a replay"
        )

    @property
    def epoch(self) -> str:
        """None: a ``RedisStore``'s ids are its stream's entry ids. Raises
        ``AttributeError`` saying so (the floor key marks the stream's generation)."""
        raise AttributeError(
            f"a RedisStore has no epoch: its ids are the entry ids of the Redis Stream "
            f"{self.channel!r} ('<milliseconds>-<sequence>'); the key "
            f"{self._redis.floor_key!r} marks the stream's generation (a resume from "
            f"an id below it gets a reset)"
        )

    @property
    def invalid_entries(self) -> int:
        """Entries of the stream that were not valid messages (skipped)."""
        return self._redis.invalid_entries

    @property
    def publish_failures(self) -> int:
        """Submissions that failed (``StoreUnavailable``)."""
        return self._redis.publish_failures

    @property
    def connection(self) -> RedisConnection:
        """This store's Redis connection in the running event loop (made on first use)."""
        return self.redis.connection

    def submit(self, message: Any, *, event: str | None = None, debug: bool = False) -> Published:
        """Validate ``message`` and publish it to the channel through Redis.

        Validation errors are raised at once, as for every store, and nothing is
        published. Otherwise the message is sent in the background, in submission
        order; await the result for the published :class:`Message` (with its stream
        id) or :class:`~tornadose.core.errors.StoreUnavailable`. ``debug`` is accepted for
        0.x compatibility and ignored. Needs a running event loop.
        """
        del debug
        return super().submit(message, event=event)

    def shutdown(self) -> None:
        """Close the store (the 0.x name of :meth:`close`)."""
        self.close()

    def __repr__(self) -> str:
        return f"<RedisStore channel={self.channel!r} subscribers={len(self.subscribers)}>"
