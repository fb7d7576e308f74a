"""One ``data_lost`` reset per failover, seen from a reader that was behind.

After a Redis Cluster failover every process raises the channel's floor past the last
entry it delivered. A process whose reader was behind the others reads, after its
failover reset, entries the new master has that the others had read from the old
master already; one of them then raises the floor just past those same entries, so
the floor is above this reader's cursor. That is the same failover, not a second
loss: its subscribers get no second reset.

The interleaving is set up on a ``redis-server`` of the test's own (so that the
reader's blocking read can be seen in ``CLIENT LIST``): the failover is what
:class:`~tornadose.backends.redis.cluster.ClusterReader` does when a channel moves
to a promoted replica (its channel flagged ``failed_over``), the other process's
raise the ``RAISE_FLOOR`` script tornadose runs. The failover test on a real
cluster (``tests/test_redis_cluster.py``) met it under load.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import pytest
import redis

from tests.redis_support import MakeStore, RedisServer, take
from tornadose.backends.redis.layout import RAISE_FLOOR, StreamId
from tornadose.backends.redis.store import RedisStore
from tornadose.core.history import RESET_EVENT
from tornadose.core.subscription import Subscription

OwnRedis = Callable[..., RedisServer]
TIMEOUT = 10.0


async def reader_blocked(admin: redis.Redis) -> None:
    """Until the reader's blocking ``XREAD`` waits in Redis (the only one on this
    server): an entry added now is what that read returns."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not any(
        c["cmd"] == "xread" and "b" in c["flags"] for c in admin.client_list(_type="normal")
    ):
        if loop.time() > deadline:
            pytest.fail("the reader never went back to its blocking read")
        await asyncio.sleep(0.01)


def raise_floor(admin: redis.Redis, channel: str, past: str) -> None:
    """What another tornadose process does after a failover: raise the floor just
    past the last entry it delivered (``past``)."""
    entry = StreamId.parse(past)
    assert entry is not None
    admin.eval(RAISE_FLOOR, 1, channel + ":floor", str(entry.after()))


async def fail_over_behind(
    store: RedisStore, subscription: Subscription, admin: redis.Redis, channel: str
) -> list[str]:
    """e1..e3 delivered; then, without awaiting (the reader cannot run meanwhile), e4
    and e5 added and the channel moved to a "new master", as after a failover (what
    ``ClusterReader`` does). Checks the one reset, then e4 and e5; returns their ids."""
    first = [await store.submit(n) for n in (1, 2, 3)]
    assert [m.id for m in await take(subscription, 3)] == [m.id for m in first]
    await reader_blocked(admin)
    pipe = admin.pipeline(transaction=True)
    for n in (4, 5):
        pipe.xadd(channel, {"data": json.dumps(n)})
    behind = [entry_id.decode() for entry_id in pipe.execute()]
    store.connection.reader.channels[channel].failed_over = True
    after_failover = await take(subscription, 3)
    assert after_failover[0].event == RESET_EVENT, after_failover
    assert after_failover[0].data == {"reason": "data_lost", "last_event_id": first[-1].id}
    assert [m.id for m in after_failover[1:]] == behind
    return behind


async def test_the_floor_raised_past_entries_read_after_the_failover_reset_is_no_second_reset(
    own_redis: OwnRedis, make_store: MakeStore, channel: str
) -> None:
    """A reader behind the promoted replica: its failover read gets one reset, then
    the entries it had not read (e4, e5). Another process, which had read up to e5
    from the old master, raises the floor past e5: e6 follows with no second reset.
    A loss noticed after an entry beyond those (the floor raised past e6) still
    resets, before e7."""
    server = own_redis()
    admin = redis.Redis(port=server.port)
    store = make_store(url=server.url)
    try:
        async with store.subscribe() as subscription:
            behind = await fail_over_behind(store, subscription, admin, channel)

            raise_floor(admin, channel, behind[-1])  # the other process, same failover
            e6 = await store.submit(6)
            got = await take(subscription, 1)
            assert got[0].event != RESET_EVENT, f"a second reset for one failover: {got}"
            assert [m.id for m in got] == [e6.id]

            raise_floor(admin, channel, e6.id or "")  # a loss noticed after e6
            e7 = await store.submit(7)
            got = await take(subscription, 2)
            assert [m.event for m in got] == [RESET_EVENT, None], got
            assert got[0].data == {"reason": "data_lost", "last_event_id": e6.id}
            assert got[1].id == e7.id
        assert store.stats.resets == 2
    finally:
        admin.close()


async def test_entries_trimmed_after_the_failover_reset_are_a_second_reset(
    own_redis: OwnRedis, make_store: MakeStore, channel: str
) -> None:
    """The failover's reset covers a floor raised by another process, nothing else:
    entries trimmed away before this reader read them (e6, right after the entries it
    read with its failover reset) are a loss of their own, reset between e5 and e7."""
    server = own_redis()
    admin = redis.Redis(port=server.port)
    store = make_store(url=server.url)
    try:
        async with store.subscribe() as subscription:
            behind = await fail_over_behind(store, subscription, admin, channel)

            await reader_blocked(admin)
            e5 = StreamId.parse(behind[-1])
            assert e5 is not None
            e6, e7 = e5.after(), e5.after().after()
            pipe = admin.pipeline(transaction=True)  # e6 gone before the reader sees it
            pipe.xadd(channel, {"data": json.dumps(6)}, id=str(e6))
            pipe.xadd(channel, {"data": json.dumps(7)}, id=str(e7))
            pipe.xtrim(channel, minid=str(e7), approximate=False)
            pipe.execute()
            got = await take(subscription, 2)
            assert [m.event for m in got] == [RESET_EVENT, None], got
            assert got[0].data == {"reason": "data_lost", "last_event_id": behind[-1]}
            assert got[1].id == str(e7)
        assert store.stats.resets == 2
    finally:
        admin.close()
