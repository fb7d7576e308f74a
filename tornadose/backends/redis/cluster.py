"""Redis Cluster: the cluster's map, and one reader per master that owns channels read here.

redis-py's ``RedisCluster`` discovers the cluster (``CLUSTER SLOTS`` from any startup
node, again after a redirection or a lost node) and says which master owns a key's
hash slot; :class:`ClusterTopology` wraps it and keeps one command client (a bounded
pool) per master. Each channel's keys are in one slot (its floor key carries the
stream's hash tag: :func:`~tornadose.backends.redis.layout.floor_key`), so every
transaction of a channel (a publish batch, a read, a resume) goes whole to that
slot's master.

Guarantees of :class:`ClusterReader`:

* **One reading connection per master** that owns a channel with subscribers here
  (a :class:`~tornadose.backends.redis.reader.Reader` each), and only those: a master
  whose channels all left is closed.
* **Resharding**: while a channel's slot is migrated, its keys may already be on the
  target node: the source answers ``ASK``, and the read is sent to the target after
  ``ASKING`` (the channel stays with its reader until the map says otherwise; the
  reader then polls every :data:`~tornadose.backends.redis.reader.POLL_MS` ms,
  since its blocking read on the source is redirected too). Once the slot moved
  (``MOVED``), the channel is handed, with where it stood, to the reader of its new
  master after the map is refreshed; reading goes on after the last entry
  delivered, the stream's continuity judged as always (``MIGRATE`` keeps a stream
  whole, so nothing is reset).
* **Failover**: when a channel's master is lost, the map is refreshed (at most every
  0.25 s: a cap, not a period; a reader notices the lost master when a read fails,
  and again after each reconnection wait, up to 2 s, so processes notice it up to
  a few seconds apart) until a replica was promoted; the channel
  moves to it flagged ``failed_over``: its subscribers get one ``data_lost`` reset,
  since Redis replicates asynchronously and the promoted replica may miss entries the
  old master acknowledged (nothing says which), then every entry the new master has
  after the last one delivered (nothing that exists is skipped). Each process raises
  the channel's floor past the last entry it delivered (the floor only rises; other
  processes read on from their own cursors, and a raise made for the same failover
  is no second reset), so a client resuming from an entry delivered before the
  failover gets a reset. This assumes the promoted replica's
  clock is not behind the old master's by more than the failover took: entry ids
  start with the node's clock, and entries the new master adds with ids below the
  last one a process delivered are not delivered there (see the README's limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import AuthenticationError, ClusterDownError, RedisClusterException
from redis.exceptions import ConnectionError as RedisConnectionError

from tornadose.backends.redis.health import (
    REDIS_ERRORS,
    BackendHealth,
    Backoff,
    ErrorKind,
    Failure,
    classify,
)
from tornadose.backends.redis.reader import Channel, Listener, Reader

__all__ = ["REFRESH_INTERVAL", "ClusterReader", "ClusterTopology"]

logger = logging.getLogger("tornadose.redis")

#: Seconds between two refreshes of a cluster's map, at least.
REFRESH_INTERVAL = 0.25
_MAP_ERRORS: tuple[type[Exception], ...] = (*REDIS_ERRORS, RedisClusterException)


class ClusterTopology:
    """Which master owns which hash slot (redis-py's ``RedisCluster`` finds out), and
    a command client per master.

    ``startup_nodes``: ``(host, port)`` pairs (any nodes of the cluster); ``settings``:
    connection options of redis-py (password, TLS...), ``max_connections`` the pool
    of each master's command client.
    """

    def __init__(self, startup_nodes: list[tuple[str, int]], settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        self.max_connections = int(self.settings.pop("max_connections", 16))
        self.settings.pop("db", None)  # a cluster has database 0 only
        # The nodes' clients do not retry by themselves (the writer and readers do,
        # knowing the deadline); the map's client keeps redis-py's own policy.
        cluster_settings = {k: v for k, v in self.settings.items() if k != "retry"}
        self.cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in startup_nodes],
            require_full_coverage=False,
            **cluster_settings,
        )
        self._initialized = False
        self._lock = asyncio.Lock()
        self._refreshed_at = float("-inf")
        self._clients: dict[str, aioredis.Redis] = {}

    async def ensure(self) -> None:
        """Discover the cluster (once); raises a connection error naming the cause."""
        if self._initialized:
            return
        async with self._lock:
            if not self._initialized:
                await self._run(self.cluster.initialize())
                self._initialized = True
                self._refreshed_at = asyncio.get_running_loop().time()

    async def refresh(self) -> None:
        """Ask the cluster for its map again (a slot moved, a master was lost); at
        most every :data:`REFRESH_INTERVAL` s."""
        if not self._initialized:
            await self.ensure()
            return
        loop = asyncio.get_running_loop()
        async with self._lock:
            if loop.time() - self._refreshed_at < REFRESH_INTERVAL:
                return
            self._refreshed_at = loop.time()
            await self._run(self.cluster.nodes_manager.initialize())

    @staticmethod
    async def _run(step: Awaitable[object]) -> None:
        try:
            await step
        except RedisClusterException as exc:
            if isinstance(exc.__cause__, AuthenticationError):
                raise exc.__cause__ from exc  # the nodes answered, refusing the login
            # Not a RedisError: said as what it is, an unreachable cluster.
            raise RedisConnectionError(f"no node of the Redis Cluster answered: {exc}") from exc

    def owner(self, key: str) -> ClusterNode:
        """The master that owns ``key``'s slot, as the map says now (after
        :meth:`ensure`)."""
        try:
            node = self.cluster.get_node_from_key(key)
        except RedisClusterException as exc:
            raise ClusterDownError(f"no master owns the slot of {key!r}: {exc}") from exc
        if node is None:
            raise ClusterDownError(f"no master owns the slot of {key!r}")
        return node

    def is_master(self, name: str) -> bool:
        """Whether node ``name`` (``host:port``) owns slots now."""
        return any(node.name == name for node in self.cluster.get_primaries())

    def client(
        self, node: ClusterNode, max_connections: int | None = None, **extra: Any
    ) -> aioredis.Redis:
        """A new client of ``node`` with the cluster's connection settings."""
        pool = aioredis.BlockingConnectionPool(
            host=node.host,
            port=node.port,
            **{**self.settings, **extra},
            max_connections=max_connections or self.max_connections,
        )
        return aioredis.Redis(connection_pool=pool)

    async def route(self, key: str) -> aioredis.Redis:
        """The command client of the master that owns ``key``'s slot."""
        await self.ensure()
        node = self.owner(key)
        return self._command_client(node.host, int(node.port))

    async def ask(self, host: str, port: int) -> aioredis.Redis:
        """The command client of node ``host:port`` (named by an ``ASK`` redirection:
        a slot's target while it is migrated; the map does not say so until the end)."""
        return self._command_client(host, port)

    def _command_client(self, host: str, port: int) -> aioredis.Redis:
        name = f"{host}:{port}"
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = self.client(ClusterNode(host, port))
        return client

    async def aclose(self) -> None:
        """Close every client."""
        for client in self._clients.values():
            with contextlib.suppress(*REDIS_ERRORS):
                await client.aclose()
        self._clients.clear()
        with contextlib.suppress(*REDIS_ERRORS, RedisClusterException):
            await self.cluster.aclose()


class ClusterReader:
    """The readers of one process on a Redis Cluster: one per master owning a channel
    with subscribers here (see the module docstring). It has the interface of a
    :class:`~tornadose.backends.redis.reader.Reader` for the backends and the writer."""

    def __init__(
        self, topology: ClusterTopology, health: BackendHealth, reader_timeout: float
    ) -> None:
        self.topology = topology
        self.health = health
        self.reader_timeout = reader_timeout
        #: Every channel read here, by key.
        self.channels: dict[str, Channel] = {}
        #: The reader of each master (by ``host:port``).
        self.readers: dict[str, Reader] = {}
        self._placed: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._refresh = False
        self._closing: set[asyncio.Task[Any]] = set()

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The task that places channels on their masters' readers."""
        return self._task

    def attach(self, listener: Listener) -> Channel:
        """Read ``listener``'s channel for it, on the reader of its master."""
        channel = self.channels.get(listener.channel)
        if channel is None:
            channel = self.channels[listener.channel] = Channel(
                listener.channel, listener.floor_key
            )
            self._kick()
        channel.listeners.add(listener)
        return channel

    def detach(self, listener: Listener) -> None:
        """Stop reading ``listener``'s channel for it."""
        channel = self.channels.get(listener.channel)
        if channel is None:
            return
        channel.listeners.discard(listener)
        if channel.listeners:
            return
        del self.channels[channel.key]
        node = self._placed.pop(channel.key, None)
        reader = self.readers.get(node) if node is not None else None
        if reader is not None:
            reader.release(channel.key)
            self._close_idle()
        channel.ready.set()

    def _on_failure(self, reader: Reader, failure: Failure) -> None:
        """A master's reader was redirected or lost its master: refresh the map and
        move its channels where they belong now."""
        del reader, failure
        self._refresh = True
        self._kick()

    def _kick(self) -> None:
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._place_forever())

    async def _place_forever(self) -> None:
        backoff = Backoff(0.05, 1.0)
        while self.channels:
            self._wake.clear()
            try:
                if self._refresh:
                    self._refresh = False
                    await self.topology.refresh()
                await self.topology.ensure()
                self._place()
                backoff.reset()
            except _MAP_ERRORS as exc:
                failure = classify(exc, cluster=True)
                if failure.kind is ErrorKind.OTHER:
                    failure = Failure(ErrorKind.UNREACHABLE, None, str(exc))
                self.health.mark_down(failure)
                logger.warning("Redis Cluster map: %s; asking again", failure.describe())
                self._refresh = True
                await asyncio.sleep(backoff.delay())
                continue
            except Exception:
                logger.exception("placing channels on Redis Cluster masters failed")
                await asyncio.sleep(backoff.delay())
                continue
            await self._wake.wait()

    def _place(self) -> None:
        """Put every channel on the reader of its slot's master, as the map says now."""
        for key, channel in list(self.channels.items()):
            owner = self.topology.owner(key)
            current = self._placed.get(key)
            if owner.name == current:
                continue
            if current is not None:
                old = self.readers.get(current)
                if old is not None:
                    old.release(key)
                failover = not self.topology.is_master(current)
                if failover and channel.cursor is not None:
                    channel.failed_over = True
                logger.info(
                    "channel %r moves from Redis Cluster node %s to %s (%s)",
                    key,
                    current,
                    owner.name,
                    "failover" if failover else "slot moved",
                )
            self._placed[key] = owner.name
            reader = self.readers.get(owner.name)
            if reader is None:
                client = self.topology.client(owner, 1, socket_timeout=self.reader_timeout)
                commands = self.topology.client(owner, 1)
                reader = self.readers[owner.name] = Reader(
                    client,
                    commands,
                    self.health,
                    cluster=True,
                    on_failure=self._on_failure,
                    ask=self.topology.ask,
                )
            reader.adopt(channel)
        self._close_idle()

    def _close_idle(self) -> None:
        """Close the readers of masters none of whose channels are read here."""
        for name, reader in list(self.readers.items()):
            if not reader.channels:
                del self.readers[name]
                task = asyncio.get_running_loop().create_task(self._close(reader))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close(reader: Reader) -> None:
        await reader.aclose()
        with contextlib.suppress(*REDIS_ERRORS):
            await reader.commands.aclose()

    async def aclose(self) -> None:
        """Stop every reader and close their connections."""
        self.channels.clear()
        self._wake.set()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task], timeout=2)
        readers = list(self.readers.values())
        self.readers.clear()
        for reader in readers:
            await self._close(reader)
        if self._closing:
            await asyncio.wait(self._closing, timeout=5)
