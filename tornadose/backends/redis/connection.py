"""The Redis connections of one process: one per event loop and connection settings.

A :class:`RedisConnection` is shared by every ``RedisBackend`` of the process with the
same settings: one connection reads every channel that has subscribers here
(:class:`~tornadose.backends.redis.reader.Reader`), a bounded pool sends publishes
(:class:`~tornadose.backends.redis.writer.Writer`) and resume queries
(:mod:`tornadose.backends.redis.resume`). Its :class:`BackendHealth` is what every
store using it reports.

On a Redis Cluster (``cluster=True``) the same roles are spread over the masters:
one reading connection per master that owns channels with subscribers here
(:class:`~tornadose.backends.redis.cluster.ClusterReader`), a bounded pool per
master for publishes and resumes, each channel's commands sent to the master of its
slot (:class:`~tornadose.backends.redis.cluster.ClusterTopology`).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import parse_url

from tornadose.backends.redis.cluster import ClusterReader, ClusterTopology
from tornadose.backends.redis.health import BackendHealth
from tornadose.backends.redis.reader import BLOCK_MS, Reader
from tornadose.backends.redis.writer import Writer

__all__ = ["COMMAND_CONNECTIONS", "RedisConnection", "connection_for", "forget_connection"]

#: Connections a process uses for publishing and resume queries, at most (per master
#: on a cluster).
COMMAND_CONNECTIONS = 16


class RedisConnection:
    """The Redis connections of one process (per event loop and connection settings):
    :attr:`reader` reads channels, :attr:`writer` publishes, :meth:`route` gives the
    client of a channel's node (for resume queries).

    ``startup_nodes`` (``(host, port)`` pairs) makes it a Redis Cluster's, whose other
    settings come from ``url`` (without its host) and ``options``."""

    def __init__(
        self,
        url: str | None,
        options: Mapping[str, Any],
        startup_nodes: Sequence[tuple[str, int]] | None = None,
    ) -> None:
        settings = {**options, "decode_responses": False, "retry": Retry(NoBackoff(), 0)}
        command_connections = settings.pop("max_connections", None) or COMMAND_CONNECTIONS
        reader_timeout = BLOCK_MS / 1000 + max(5.0, settings.get("socket_timeout") or 0)
        self.health = BackendHealth()
        #: The backends using this connection (it closes when the last one closes).
        self.users: weakref.WeakSet[Any] = weakref.WeakSet()
        self.topology: ClusterTopology | None = None
        self.commands: aioredis.Redis | None = None
        if startup_nodes is not None:
            if url is not None:
                from_url = parse_url(url)  # type: ignore[no-untyped-call]
                for name in ("host", "port", "db", "connection_class"):
                    from_url.pop(name, None)
                if url.startswith("rediss://"):
                    from_url["ssl"] = True
                settings = {**from_url, **settings}
            self.topology = ClusterTopology(
                list(startup_nodes), {**settings, "max_connections": command_connections}
            )
            topology = self.topology
            #: Reads the channels with subscribers here, one reader per master.
            self.reader: Reader | ClusterReader = ClusterReader(
                topology, self.health, reader_timeout
            )
            #: Sends submissions, in order, pipelined, each to its channel's master.
            self.writer = Writer(
                None,
                self.health,
                self.reader,
                route=topology.route,
                refresh=topology.refresh,
                cluster=True,
                ask=topology.ask,
            )
            return

        def client(max_connections: int, **extra: Any) -> aioredis.Redis:
            # A blocking pool waits for a free connection instead of failing.
            pool_class = aioredis.BlockingConnectionPool
            options = {**settings, **extra, "max_connections": max_connections}
            pool = pool_class(**options) if url is None else pool_class.from_url(url, **options)
            return aioredis.Redis(connection_pool=pool)

        # Publishing and resume queries; the pool's size bounds the connections a
        # process opens, even when many clients resume at once (a reconnect storm).
        self.commands = client(command_connections)
        self.reader = Reader(client(1, socket_timeout=reader_timeout), self.commands, self.health)
        self.writer = Writer(self.commands, self.health, self.reader)

    @property
    def cluster(self) -> bool:
        """Whether this is a Redis Cluster's connection."""
        return self.topology is not None

    async def route(self, key: str) -> aioredis.Redis:
        """The client for the commands of key ``key`` (on a cluster: its master's)."""
        if self.topology is not None:
            return await self.topology.route(key)
        assert self.commands is not None
        return self.commands

    async def refresh(self) -> None:
        """On a cluster, ask for its map again (a slot moved, a master was lost)."""
        if self.topology is not None:
            await self.topology.refresh()

    async def aclose(self) -> None:
        """Send pending publishes, stop reading, and close the connections."""
        await self.writer.drain()
        await self.reader.aclose()
        if self.commands is not None:
            await self.commands.aclose()
        if self.topology is not None:
            await self.topology.aclose()


_connections: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[Any, ...], RedisConnection]
] = weakref.WeakKeyDictionary()


def connection_for(
    url: str | None,
    options: Mapping[str, Any],
    startup_nodes: Sequence[tuple[str, int]] | None = None,
) -> RedisConnection:
    """The running loop's connection with these settings (made on first use)."""
    loop = asyncio.get_running_loop()
    nodes = None if startup_nodes is None else tuple(startup_nodes)
    key = (url, nodes, tuple(sorted((name, repr(value)) for name, value in options.items())))
    per_loop = _connections.setdefault(loop, {})
    connection = per_loop.get(key)
    if connection is None:
        connection = per_loop[key] = RedisConnection(url, options, startup_nodes)
    return connection


def forget_connection(connection: RedisConnection) -> None:
    """Stop handing ``connection`` out (it is being closed)."""
    for per_loop in _connections.values():
        for key, known in list(per_loop.items()):
            if known is connection:
                del per_loop[key]
