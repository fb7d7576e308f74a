"""Presence across processes on Redis: a heartbeat per process, counted with expiry.

Each channel has a hash ``tornadose:presence:{<channel>}`` (on one Redis, or on a
Redis Cluster for a URL with ``?cluster=true``: the braces keep a channel's hash in
its channel's slot, so each script touches one key on the master owning it, and
redis-py's cluster client routes, and follows ``MOVED``/``ASK``). Each process
writes, per channel, one field:
its random process id, valued ``"<subscribers>:<deadline ms>"`` where the deadline is
Redis's clock (``TIME``) plus ``ttl``; the same script sums the fields whose deadline
has not passed and deletes the others, so a dead process stops counting ``ttl``
seconds after its last heartbeat, whatever the clocks of the machines. The hash
itself expires ``2 x ttl`` after its last write (nothing is left behind when every
process is gone). A process that stops cleanly deletes its fields at once.

One round trip per heartbeat (a pipeline of one script call per channel; on a
cluster, one per master holding channels, sent together).
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from tornadose.backends.redis.backend import split_cluster_flag

__all__ = ["DEFAULT_TTL", "RedisPresence", "presence_key"]

logger = logging.getLogger("tornadose.presence")

#: Seconds a process's count stays counted after its last heartbeat.
DEFAULT_TTL = 3.0

_BEAT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ttl_ms = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. (now_ms + ttl_ms))
redis.call('PEXPIRE', KEYS[1], ttl_ms * 2)
local total = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local count, deadline = string.match(fields[i + 1], '^(%d+):(%d+)$')
  if count and tonumber(deadline) >= now_ms then
    total = total + tonumber(count)
  else
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
return total
"""


def presence_key(channel: str) -> str:
    """The hash holding ``channel``'s counts (hash-tagged: one slot on a cluster)."""
    return f"tornadose:presence:{{{channel}}}"


class RedisPresence:
    """A :class:`~tornadose.http.presence.PresenceBackend` on Redis (see the module
    docstring). ``url`` is a Redis URL (``?cluster=true``: a Redis Cluster, any node
    of it); ``ttl`` seconds (default :data:`DEFAULT_TTL`)."""

    def __init__(self, url: str, *, ttl: float = DEFAULT_TTL, **redis_kwargs: Any) -> None:
        if ttl <= 0:
            raise ValueError(f"ttl must be positive, not {ttl}")
        self.url = url
        self.ttl = ttl
        self.process = uuid.uuid4().hex
        self._kwargs = redis_kwargs
        self._client: aioredis.Redis | RedisCluster | None = None
        self._channels: set[str] = set()

    def _redis(self) -> aioredis.Redis | RedisCluster:
        if self._client is None:
            url, cluster = split_cluster_flag(self.url)
            assert url is not None
            if cluster:  # as the stores' cluster client: serve while some slots are not
                self._client = RedisCluster.from_url(
                    url, decode_responses=True, require_full_coverage=False, **self._kwargs
                )
            else:
                self._client = aioredis.Redis.from_url(url, decode_responses=True, **self._kwargs)
        return self._client

    async def beat(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Send ``counts`` and return the live totals (see the module docstring)."""
        if not counts:
            return {}
        ttl_ms = str(int(self.ttl * 1000))
        async with self._redis().pipeline(transaction=False) as pipe:
            for channel, count in counts.items():
                pipe.eval(_BEAT, 1, presence_key(channel), self.process, str(count), ttl_ms)
            totals = await pipe.execute()
        self._channels.update(counts)
        return {channel: int(total) for channel, total in zip(counts, totals, strict=True)}

    async def aclose(self) -> None:
        """Withdraw this process's counts (best effort: if Redis cannot be reached they
        expire after ``ttl``, and the failure is logged, never raised) and close the
        connection."""
        client = self._client
        if client is None:
            return
        self._client = None
        try:
            if self._channels:
                async with client.pipeline(transaction=False) as pipe:
                    for channel in self._channels:
                        pipe.hdel(presence_key(channel), self.process)
                    await pipe.execute()
        except Exception as exc:  # best effort, said in the log
            logger.warning("presence: the counts of this process were not withdrawn (%r)", exc)
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()
