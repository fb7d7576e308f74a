"""The Redis connections of one process: one per event loop and connection settings.

A :class:`RedisConnection` is shared by every ``RedisBackend`` of the process with the
same settings: one connection reads every channel that has subscribers here
(:class:`~tornadose.backends.redis.reader.Reader`), a bounded pool sends publishes
(:class:`~tornadose.backends.redis.writer.Writer`) and resume queries
(:mod:`tornadose.backends.redis.resume`). Its :class:`BackendHealth` is what every
store using it reports.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tornadose.backends.redis.health import BackendHealth
from tornadose.backends.redis.reader import BLOCK_MS, Reader
from tornadose.backends.redis.writer import Writer

__all__ = ["COMMAND_CONNECTIONS", "RedisConnection", "connection_for", "forget_connection"]

#: Connections a process uses for publishing and resume queries, at most.
COMMAND_CONNECTIONS = 16


class RedisConnection:
    """The Redis connections of one process (per event loop and connection settings):
    :attr:`reader` reads channels, :attr:`writer` publishes, :attr:`commands` is the
    pool both the writer and resume queries use."""

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
        self.health = BackendHealth()
        #: Reads the channels with subscribers here, on a connection of its own.
        self.reader = Reader(client(1, socket_timeout=reader_timeout), self.commands, self.health)
        #: Sends submissions, in order, pipelined.
        self.writer = Writer(self.commands, self.health, self.reader)
        #: The backends using this connection (it closes when the last one closes).
        self.users: weakref.WeakSet[Any] = weakref.WeakSet()

    async def aclose(self) -> None:
        """Send pending publishes, stop reading, and close the connections."""
        await self.writer.drain()
        await self.reader.aclose()
        await self.commands.aclose()


_connections: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[Any, ...], RedisConnection]
] = weakref.WeakKeyDictionary()


def connection_for(url: str | None, options: Mapping[str, Any]) -> RedisConnection:
    """The running loop's connection with these settings (made on first use)."""
    loop = asyncio.get_running_loop()
    key = (url, tuple(sorted((name, repr(value)) for name, value in options.items())))
    per_loop = _connections.setdefault(loop, {})
    connection = per_loop.get(key)
    if connection is None:
        connection = per_loop[key] = RedisConnection(url, options)
    return connection


def forget_connection(connection: RedisConnection) -> None:
    """Stop handing ``connection`` out (it is being closed)."""
    for per_loop in _connections.values():
        for key, known in list(per_loop.items()):
            if known is connection:
                del per_loop[key]
