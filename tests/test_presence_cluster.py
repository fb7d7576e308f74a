"""Presence across processes on a Redis Cluster (``redis_url`` with ``?cluster=true``).

Each channel's presence hash is hash-tagged with the channel's name, so it lives on
the master owning the channel; a heartbeat reaches every master holding channels.
Checked on a real test cluster (three masters): counts of two processes sum per
channel for channels on every master, a process stopping cleanly withdraws its counts
at once, and the HTTP presence answer of a ``Channels`` on the cluster counts its
streams. Skipped with the reason when ``redis-server``/``redis-cli`` are missing
(failing under ``CI=true``); the cluster is killed when the module ends.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable

import httpx
import pytest
from redis.crc import key_slot

from tests.clients import TIMEOUT
from tests.conftest import TornadoStarter, free_port
from tests.redis_cluster_support import Cluster, redis_cluster
from tests.redis_support import RedisServer
from tests.test_presence import streams
from tornadose.adapters.tornado import channel_handlers
from tornadose.backends.redis.presence import RedisPresence, presence_key
from tornadose.http.channels import Channels

__all__ = ["redis_cluster"]  # fixture, used by name

pytestmark = pytest.mark.timeout(60)


def one_channel_per_master(cluster: Cluster) -> list[str]:
    """A channel name whose presence hash each master of ``cluster`` owns."""
    owners = cluster.slots()
    masters = sorted(set(owners.values()))
    prefix = f"presence-{uuid.uuid4().hex[:8]}-"
    names: dict[str, str] = {}
    n = 0
    while len(names) < len(masters):
        name = f"{prefix}{n}"
        n += 1
        names.setdefault(owners[key_slot(presence_key(name).encode())], name)
    return [names[master] for master in masters]


async def test_two_processes_counts_sum_on_every_master(redis_cluster: Cluster) -> None:
    names = one_channel_per_master(redis_cluster)
    assert len(names) == 3
    first = RedisPresence(redis_cluster.url, ttl=5)
    second = RedisPresence(redis_cluster.url, ttl=5)
    try:
        assert await first.beat(dict.fromkeys(names, 2)) == dict.fromkeys(names, 2)
        counts = {name: n + 1 for n, name in enumerate(names)}
        assert await second.beat(counts) == {name: counts[name] + 2 for name in names}
        await first.aclose()  # withdrawn at once, not after its ttl
        assert await second.beat(counts) == counts
        for name in names:  # each hash on the master owning its channel's slot
            master = redis_cluster.node(redis_cluster.master_of(presence_key(name))).client()
            try:
                assert master.hlen(presence_key(name)) == 1  # the second process's field
            finally:
                master.close()
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_channels_on_the_cluster_serves_presence(
    redis_cluster: Cluster, tornado_server: TornadoStarter
) -> None:
    name = f"presence-{uuid.uuid4().hex[:8]}"
    channels = Channels(prefix="/live", redis_url=redis_cluster.url)
    channels.add(name)
    try:
        base = await tornado_server(channel_handlers(channels))
        async with streams(f"{base}/live/{name}/events", 2):
            await channels.presence.beat()
            async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
                response = await client.get(f"{base}/live/{name}/presence")
        assert response.status_code == 200, response.text
        assert response.json() == {"channel": name, "here": 2, "everywhere": 2}
    finally:
        await channels.aclose()


async def test_closing_channels_on_an_unreachable_cluster_returns() -> None:
    """``Channels.aclose()`` (an app's shutdown) with presence on a Redis Cluster that
    cannot be reached (no heartbeat ever got through): it returns, raising nothing."""
    url = f"redis://127.0.0.1:{free_port()}/0?cluster=true"
    channels = Channels(prefix="/live", redis_url=url)
    channels.add("gone")
    with pytest.raises(Exception):  # noqa: B017, PT011 - what redis-py raises, said to the app
        await asyncio.wait_for(channels.presence.beat(), TIMEOUT)
    await asyncio.wait_for(channels.aclose(), TIMEOUT)


async def test_closing_presence_after_redis_went_away_logs_and_returns(
    own_redis: Callable[..., RedisServer], caplog: pytest.LogCaptureFixture
) -> None:
    """Counts were sent, then Redis went away: closing cannot withdraw them (they
    expire after their ttl), which is logged; nothing is raised."""
    server = own_redis()
    presence = RedisPresence(server.url, ttl=1)
    assert await presence.beat({"gone": 1}) == {"gone": 1}
    server.kill()
    with caplog.at_level(logging.WARNING, logger="tornadose.presence"):
        await asyncio.wait_for(presence.aclose(), TIMEOUT)
    assert "were not withdrawn" in caplog.text
