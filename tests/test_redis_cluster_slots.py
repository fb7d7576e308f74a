"""Many channels in many hash slots of one Redis Cluster master, read by one process.

One ``XREAD`` (and one transaction) cannot span slots, so such a master is polled
(see ``tornadose.backends.redis.reader.POLL_MS``). Checked, as users see it, with 50
channels on one master of a real test cluster, each in a slot of its own and with
one subscriber:

* idle, the commands the master runs stay under a bound, and so do the round trips
  (transactions and polls; INFO commandstats);
* a message published to every channel reaches every subscriber once and in order,
  the median delivery latency (from the entry's addition, the time in its id, to the
  subscriber) under 100 ms on loopback: read by the 20 ms poll, not by the check of
  every slot once a second. (The median, not a tail: a loaded machine's scheduling
  decides the tail; the benchmark measures latency.)

Skipped with the reason when ``redis-server``/``redis-cli`` are missing (failing under
``CI=true``); the cluster is killed when the module ends.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from contextlib import AsyncExitStack

import redis
from redis.crc import key_slot

from tests.redis_cluster_support import Cluster, redis_cluster
from tests.redis_support import drain
from tornadose.backends.redis.store import RedisStore
from tornadose.core.message import Message
from tornadose.core.subscription import Subscription

__all__ = ["redis_cluster"]  # fixture, used by name

CHANNELS = 50
ROUNDS = 20
#: What an idle master may run per second for this process's 50 channels: the poll
#: (one script every 20 ms, whose XREAD of each channel INFO counts as a command
#: too: 50 x 51) and the check of every slot once a second (a transaction of 5
#: commands per slot: 250), plus the replicas' acknowledgements.
IDLE_COMMANDS_PER_S = 3_500
#: Of which round trips: transactions (MULTI) and polls (EVALSHA). Reading slot after
#: slot, a transaction each, made about 500 transactions a second.
IDLE_TRANSACTIONS_PER_S = 100
IDLE_POLLS_PER_S = 60
MEDIAN_S = 0.100


def channels_on_one_master(cluster: Cluster, count: int) -> tuple[str, list[str]]:
    """A master and ``count`` channel names it owns, each in another hash slot."""
    owners = cluster.slots()
    master = sorted(set(owners.values()))[0]
    prefix = f"slots-{uuid.uuid4().hex[:8]}-"
    names: list[str] = []
    slots: set[int] = set()
    n = 0
    while len(names) < count:
        key = f"{prefix}{n}"
        n += 1
        slot = key_slot(key.encode())
        if owners[slot] == master and slot not in slots:
            names.append(key)
            slots.add(slot)
    return master, names


def commands_run(client: redis.Redis) -> dict[str, int]:
    """How many commands the node ran since it started, by command (INFO
    commandstats)."""
    stats = client.info("commandstats")
    return {name: int(value["calls"]) for name, value in stats.items()}


async def subscribe(stack: AsyncExitStack, store: RedisStore) -> Subscription:
    """A subscription of ``store`` that is read already (a marker came through)."""
    subscription = await stack.enter_async_context(store.subscribe())
    marker = await store.submit("ready")
    got: list[Message] = []
    while marker.id not in [m.id for m in got]:
        got += await asyncio.wait_for(subscription.get_batch(), 10)
    return subscription


async def test_fifty_channels_in_fifty_slots_of_one_master(redis_cluster: Cluster) -> None:
    master, names = channels_on_one_master(redis_cluster, CHANNELS)
    stores = [RedisStore(name, url=redis_cluster.url) for name in names]
    node = redis_cluster.node(master).client()
    try:
        async with AsyncExitStack() as stack:
            subscriptions = [await subscribe(stack, store) for store in stores]
            assert list(stores[0].connection.reader.readers) == [master]

            # Idle: what the master runs for this process.
            await asyncio.sleep(0.5)
            before, started = commands_run(node), time.monotonic()
            await asyncio.sleep(3.0)
            after, took = commands_run(node), time.monotonic() - started
            rates = {k: (v - before.get(k, 0)) / took for k, v in after.items()}
            said = ", ".join(f"{k} {v:.0f}/s" for k, v in sorted(rates.items()) if v)
            assert sum(rates.values()) < IDLE_COMMANDS_PER_S, said
            assert rates.get("cmdstat_multi", 0) < IDLE_TRANSACTIONS_PER_S, said
            assert rates.get("cmdstat_evalsha", 0) < IDLE_POLLS_PER_S, said

            # Live: a message to every channel, ROUNDS times, 100 ms apart (500 a second).
            latencies: list[float] = []
            received: list[list[int]] = [[] for _ in names]

            async def read(index: int, subscription: Subscription) -> None:
                while len(received[index]) < ROUNDS:
                    for message in await subscription.get_batch():
                        # From the XADD (the id's milliseconds: Redis's clock, this
                        # machine's) to the subscriber.
                        added = int((message.id or "0").split("-")[0]) / 1000
                        latencies.append(time.time() - added)
                        received[index].append(message.data["n"])

            readers = [asyncio.create_task(read(i, s)) for i, s in enumerate(subscriptions)]
            published = []
            for n in range(ROUNDS):
                for store in stores:
                    published.append(store.submit({"n": n}))
                await asyncio.sleep(0.1)
            await asyncio.wait_for(asyncio.gather(*published), 20)  # all acknowledged
            await asyncio.wait_for(asyncio.gather(*readers), 20)

            assert received == [list(range(ROUNDS))] * CHANNELS  # each once, in order
            latencies.sort()
            median = latencies[len(latencies) // 2]
            assert median < MEDIAN_S, (
                f"p50 {median * 1000:.0f} ms, "
                f"p99 {latencies[int(len(latencies) * 0.99) - 1] * 1000:.0f} ms, "
                f"max {latencies[-1] * 1000:.0f} ms"
            )
    finally:
        node.close()
        for store in stores:
            await store.aclose()


async def test_a_slot_migrating_among_several_on_one_master(redis_cluster: Cluster) -> None:
    """Two channels of one master in two slots; one slot MIGRATING, its keys moved to
    another master (the source answers ASK, and the poll script, touching a key the
    source no longer serves, fails): both channels' messages arrive, in order,
    without a reset, while migrating and after the slot is handed over."""
    source, names = channels_on_one_master(redis_cluster, 2)
    target = next(m for m in redis_cluster.masters() if m != source)
    slot = key_slot(names[0].encode())
    stores = [RedisStore(name, url=redis_cluster.url, publish_timeout=10) for name in names]
    try:
        async with AsyncExitStack() as stack:
            subscriptions = [await subscribe(stack, store) for store in stores]
            await asyncio.to_thread(redis_cluster.start_migration, slot, target)
            try:
                sent: list[list[str]] = [[], []]
                for n in range(10):
                    for index, store in enumerate(stores):
                        sent[index].append((await store.submit({"n": n})).id or "")
                    await asyncio.sleep(0.01)
                for index, subscription in enumerate(subscriptions):
                    got = await drain(subscription, sent[index][-1])
                    assert [m.event for m in got if m.event is not None] == []
                    assert [m.id for m in got] == sent[index]
            finally:
                await asyncio.to_thread(redis_cluster.finish_migration, slot, target)
            for store, subscription in zip(stores, subscriptions, strict=True):
                after = await store.submit("after")
                got = await drain(subscription, after.id or "")
                assert [m.id for m in got] == [after.id]
    finally:
        for store in stores:
            await store.aclose()
