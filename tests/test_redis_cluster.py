"""``RedisStore`` on a real Redis Cluster (3 masters + 3 replicas started by the tests).

What is checked, as users see it:

* a Tornado process and a uvicorn process (``examples/redis_hub.py`` given a cluster
  URL) serve channels living on different masters: every SSE and WebSocket client of
  both gets the identical id sequence, and a client resumes on the other process;
* a live channel's slot migrated to another master while it is published to (and a
  slot left migrating: publishes and reads follow ASK with ASKING): every
  acknowledged message reaches the subscriber once, in order, without a reset;
* a channel's master killed and its replica promoted while publishing: message by
  message, every acknowledged id the subscriber misses is covered by a reset;
* a dead master delays no other master's publishes; its own wait for the promoted
  replica, or fail after ``publish_timeout`` with ``maybe_published=False``;
* the backend contract (``tests/backends/test_backend_contract.py``) runs against
  the cluster too.

Skipped with the reason when ``redis-server``/``redis-cli`` are missing (failing under
``CI=true``). Every node started is killed when the module (or the test) ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
import redis
from redis.crc import key_slot

from tests.programs import StartProgram
from tests.redis_cluster_support import Cluster, redis_cluster, start_cluster
from tests.redis_support import drain
from tests.test_redis_processes import (
    RESUMED,
    Client,
    Event,
    HubStarter,
    assert_strictly_increasing,
    chat,
    eventually,
    message,
    start_client,
    start_hub,
    stream_order,
    wait_for_all,
)
from tornadose.backends.redis.store import RedisStore
from tornadose.core.message import Message
from tornadose.core.subscription import Subscription
from tornadose.errors import StoreUnavailable

__all__ = ["redis_cluster", "start_hub"]  # fixtures, used by name

RESET_EVENT = "tornadose.reset"
TIMEOUT = 20.0


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A Redis Cluster of the test's own (it kills a master); killed afterwards."""
    cluster = start_cluster(tmp_path / "cluster")
    try:
        yield cluster
    finally:
        for node in cluster.nodes:
            node.kill()


def on_two_masters(cluster: Cluster) -> str:
    """A key prefix whose ``chat`` and ``ticks`` channels live on different masters."""
    while True:
        prefix = f"test-{uuid.uuid4().hex[:8]}:"
        if cluster.master_of(prefix + "chat") != cluster.master_of(prefix + "ticks"):
            return prefix


async def post(http: httpx.AsyncClient, base: str, channel: str, text: str) -> Event:
    response = await http.post(f"{base}/{channel}/publish", json=chat(text))
    assert response.status_code == 202, response.text
    return message(response.json()["id"], chat(text))


async def test_two_processes_serve_channels_on_different_masters_in_one_order(
    redis_cluster: Cluster, start_hub: HubStarter
) -> None:
    """A Tornado and a uvicorn process on a cluster URL: SSE and WebSocket clients of
    both, on two channels owned by two masters, get every message published through
    either process, with the identical id sequence per channel; a client that hung up
    resumes on the other process with exactly what it missed."""
    prefix = on_two_masters(redis_cluster)
    hubs = [
        await start_hub("tornado", redis_cluster.url, prefix),
        await start_hub("uvicorn", redis_cluster.url, prefix),
    ]
    async with AsyncExitStack() as stack, httpx.AsyncClient(trust_env=False, timeout=10) as http:
        clients: dict[str, list[Client]] = {"chat": [], "ticks": []}
        for hub in hubs:
            for name in clients:
                url = f"{hub.base}/{name}"
                clients[name].append(await start_client(stack, "sse", f"{url}/events"))
                ws = f"ws://127.0.0.1:{hub.port}/{name}/ws"
                clients[name].append(await start_client(stack, "ws", ws))
        # Warm up: until every client gets one (a client gets what its process reads
        # after it subscribed).
        first: dict[str, Event] = {}
        for name, group in clients.items():
            for attempt in range(50):
                warm = await post(http, hubs[attempt % 2].base, name, f"warm {attempt}")
                if await eventually(lambda w=warm, g=group: all(c.has(w.id) for c in g), 0.3):
                    first[name] = warm
                    break
            else:
                pytest.fail(f"the clients of {name} never got a message: {group}")
        sent: dict[str, list[Event]] = {"chat": [], "ticks": []}
        for n in range(20):
            for name in sent:
                sent[name].append(await post(http, hubs[n % 2].base, name, f"{name} {n}"))
        for name, group in clients.items():
            await wait_for_all(group, sent[name][-1].id or "", TIMEOUT)
            sequences = {tuple(e.id for e in c.since(first[name].id or "")) for c in group}
            assert len(sequences) == 1, f"{name}: the clients differ: {sequences}"
            (sequence,) = sequences
            assert list(sequence) == [e.id for e in sent[name]]
            assert_strictly_increasing(list(sequence), name)
            assert all(c.alive and c.failure is None for c in group), group
        # Resume on the other process from the 5th chat message.
        resumed_from = sent["chat"][4].id or ""
        resumer = await start_client(
            stack, "sse", f"{hubs[1].base}/chat/events", headers={"Last-Event-ID": resumed_from}
        )
        assert await eventually(lambda: resumer.has(sent["chat"][-1].id or ""), TIMEOUT), resumer
        assert resumer.received[0].event == RESUMED
        assert resumer.received[0].data == {"after": resumed_from, "replayed": 15}
        assert [e.id for e in resumer.messages] == [e.id for e in sent["chat"][5:]]
    for hub in hubs:
        hub.assert_no_traceback()


# -- in-process: migration and failover ----------------------------------------------


@contextlib.asynccontextmanager
async def subscribed(store: RedisStore) -> AsyncIterator[Subscription]:
    async with store.subscribe() as subscription:
        marker = await store.submit("ready")
        got: list[Message] = []
        while marker.id not in [m.id for m in got]:
            got += await asyncio.wait_for(subscription.get_batch(), TIMEOUT)
        yield subscription


async def publish_until(
    store: RedisStore, stop: asyncio.Event, acknowledged: list[str], failed: list[str]
) -> None:
    """Submit numbered messages (a few at a time, as a busy publisher does) until
    ``stop``; record the ids Redis acknowledged and the failures."""
    n = 0
    while not stop.is_set():
        pending = [store.submit({"n": n + k}) for k in range(5)]
        n += 5
        for each in pending:
            try:
                acknowledged.append((await each).id or "")
            except StoreUnavailable as exc:
                failed.append(str(exc))
        await asyncio.sleep(0.005)


async def test_a_live_channels_slot_migrates_to_another_master_while_publishing(
    redis_cluster: Cluster,
) -> None:
    """CLUSTER SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT NODE of a live channel's
    slot while it is published to: every acknowledged message arrives once, in
    order, no reset; publishing and reading go on with the new master."""
    channel = f"test-{uuid.uuid4().hex[:8]}"
    store = RedisStore(channel, url=redis_cluster.url, publish_timeout=10)
    try:
        async with subscribed(store) as subscription:
            source = redis_cluster.master_of(channel)
            target = next(m for m in redis_cluster.masters() if m != source)
            stop, acknowledged, failed = asyncio.Event(), [], []
            publisher = asyncio.create_task(publish_until(store, stop, acknowledged, failed))
            await asyncio.sleep(0.3)
            await asyncio.to_thread(redis_cluster.migrate_slot, key_slot(channel.encode()), target)
            await asyncio.sleep(0.5)
            stop.set()
            await publisher
            assert redis_cluster.master_of(channel) == target
            assert failed == []
            got = await drain(subscription, acknowledged[-1])
            assert [m.event for m in got if m.event is not None] == []
            assert [m.id for m in got] == acknowledged
            assert list(store.connection.reader.readers) == [target]
    finally:
        await store.aclose()


async def test_a_slot_left_migrating_is_followed_with_asking(redis_cluster: Cluster) -> None:
    """A live channel's slot MIGRATING on its master, IMPORTING on another, its keys
    MIGRATEd there, and no SETSLOT NODE yet: the source answers ASK. Publishes are
    acknowledged at once (sent to the target after ASKING) and the subscriber, whose
    reader still belongs to the source, receives them, in order, without a reset.
    Then the slot is handed over and everything goes on."""
    channel = f"test-{uuid.uuid4().hex[:8]}"
    store = RedisStore(channel, url=redis_cluster.url, publish_timeout=10)
    slot = key_slot(channel.encode())
    source = redis_cluster.master_of(channel)
    target = next(m for m in redis_cluster.masters() if m != source)
    loop = asyncio.get_running_loop()
    try:
        async with subscribed(store) as subscription:
            before = await store.submit("before")
            await asyncio.to_thread(redis_cluster.start_migration, slot, target)
            try:
                sent: list[str] = [before.id or ""]
                for n in range(10):
                    started = loop.time()
                    sent.append((await store.submit({"n": n})).id or "")
                    assert loop.time() - started < 0.5, f"publish {n} waited for the ASK window"
                got = await drain(subscription, sent[-1], timeout=3.0)
                assert [m.event for m in got if m.event is not None] == []
                assert [m.id for m in got] == sent
                assert redis_cluster.master_of(channel) == source  # still migrating
            finally:
                await asyncio.to_thread(redis_cluster.finish_migration, slot, target)
            after = await store.submit("after")
            got = await drain(subscription, after.id or "")
            assert [m.id for m in got] == [after.id]
    finally:
        await store.aclose()


@pytest.mark.parametrize("replica", ["synced", "behind"])
async def test_a_master_fails_over_while_publishing_and_no_loss_is_silent(
    own_cluster: Cluster, replica: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A channel's master killed while it is published to; its replica is promoted
    (``synced``: it has every write; ``behind``: cut off 0.2 s before, so writes the
    old master acknowledged are lost). Four processes' readers (four stores, each
    with connections of its own) have a subscriber each; they notice the failover at
    different moments. Checked message by message for every subscriber: at most one
    ``data_lost`` reset; every acknowledged id it did not get is covered by a reset
    between the messages around it; every acknowledged entry the new master has is
    received (no cursor moved past entries that exist); no log says Redis lost the
    stream."""
    caplog.set_level(logging.INFO, logger="tornadose.redis")
    channel = f"test-{uuid.uuid4().hex[:8]}"
    publisher = RedisStore(channel, url=own_cluster.url, publish_timeout=15)
    stores = [
        RedisStore(channel, url=own_cluster.url, client_name=f"process-{n}") for n in range(4)
    ]
    got: list[list[Message]] = [[] for _ in stores]
    acknowledged: list[str] = []
    try:
        async with AsyncExitStack() as stack:
            subscriptions = [await stack.enter_async_context(s.subscribe()) for s in stores]
            # A store's submit waits for its own reader: after the last marker every
            # reader reads.
            markers = [await store.submit("ready") for store in stores]
            for subscription in subscriptions:
                await drain(subscription, markers[-1].id or "")
            master = own_cluster.master_of(channel)
            stop, failed = asyncio.Event(), []
            publishing = asyncio.create_task(publish_until(publisher, stop, acknowledged, failed))
            await asyncio.sleep(0.3)
            if replica == "behind":
                await asyncio.to_thread(own_cluster.hold_back_replica, master)
                await asyncio.sleep(0.2)
            cut = len(acknowledged)
            promoted = await asyncio.to_thread(own_cluster.fail_over, master)
            before = len(acknowledged)
            assert await eventually(lambda: len(acknowledged) > before + 20, TIMEOUT)
            stop.set()
            await publishing
            assert own_cluster.master_of(channel) == promoted
            for n, subscription in enumerate(subscriptions):
                got[n] = await drain(subscription, acknowledged[-1])
                assert list(stores[n].connection.reader.readers) == [promoted]
    finally:
        await publisher.aclose()
        for store in stores:
            await store.aclose()
    host, port = promoted.rsplit(":", 1)
    client = redis.Redis(host=host, port=int(port))
    try:
        present = {entry_id.decode() for entry_id, _ in client.xrange(channel)}
    finally:
        client.close()
    lost = [entry for entry in acknowledged if entry not in present]
    if replica == "synced":
        assert lost == [], (
            f"a synced replica has every acknowledged entry: {len(lost)} of "
            f"{len(acknowledged)} missing, {lost[:2]}..{lost[-2:]}, cut at {cut}, "
            f"first present {min(present, key=stream_order)}"
        )
    else:
        assert lost, f"the replica cut off at {cut} acknowledged should miss some"
    for n, messages in enumerate(got):
        resets = [m for m in messages if m.event == RESET_EVENT]
        assert len(resets) == 1, (f"subscriber {n}: one reset per failover", resets)
        assert_losses_covered(messages, acknowledged, f"subscriber {n}")
        received = {m.id for m in messages}
        skipped = [e for e in acknowledged if e in present and e not in received]
        assert skipped == [], f"subscriber {n} skipped entries Redis has: {skipped[:5]}"
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    errors = [e for e in errors if "lost its connection" not in e]
    assert len(errors) <= len(stores), errors
    assert all("master failed over" in e for e in errors), errors
    false = [r.getMessage() for r in caplog.records if "restarted without it" in r.getMessage()]
    assert false == []


async def test_resume_from_an_id_the_promoted_replica_never_got_is_a_reset(
    redis_cluster: Cluster,
) -> None:
    """A client comes back with an id its old master handed out and the promoted
    replica never got (here: an id between two entries), to a process that was not
    reading the channel: tornadose.reset (data_lost), not a resume with a gap."""
    channel = f"test-{uuid.uuid4().hex[:8]}"
    publisher = RedisStore(channel, url=redis_cluster.url)
    try:
        kept = [await publisher.submit(n) for n in range(3)]
        ms, _, _ = (kept[-1].id or "").partition("-")
        missing = f"{int(ms) + 1}-0"
        await asyncio.sleep(0.01)
        later = await publisher.submit("after the lost one")
    finally:
        await publisher.aclose()
    store = RedisStore(channel, url=redis_cluster.url)
    try:
        async with store.subscribe(last_event_id=missing) as resuming:
            first = await asyncio.wait_for(resuming.get_batch(), TIMEOUT)
    finally:
        await store.aclose()
    assert first[0].event == RESET_EVENT, first
    assert first[0].data == {"reason": "data_lost", "last_event_id": missing}
    assert later.id not in [m.id for m in first if m.event is None]


def assert_losses_covered(got: list[Message], acknowledged: list[str], who: object) -> None:
    """What a subscriber received (``got``, resets included) against the acknowledged
    ids: the messages are in stream order, each once, every reset says ``data_lost``,
    and every acknowledged id it did not get is covered by a reset that came after the
    last message received before that id and before the first one received after it
    (a reset elsewhere says nothing about that gap)."""
    resets = [n for n, m in enumerate(got) if m.event == RESET_EVENT]
    assert all(got[n].data["reason"] == "data_lost" for n in resets), (who, got)
    received = [m.id for m in got if m.event is None]
    assert_strictly_increasing(received, who)
    have = set(received)
    for entry in acknowledged:
        if entry in have:
            continue
        order = stream_order(entry)
        before = [n for n, m in enumerate(got) if m.event is None and stream_order(m.id) < order]
        after = [n for n, m in enumerate(got) if m.event is None and stream_order(m.id) > order]
        low = before[-1] if before else -1
        high = after[0] if after else len(got)
        assert any(low < n < high for n in resets), (
            f"{who}: acknowledged {entry} missing without a reset between the messages "
            f"around it: {[(m.event or m.id) for m in got]}"
        )


def test_the_loss_checker_wants_the_reset_in_the_gap() -> None:
    """The failover tests' checker itself: a missing id is covered only by a reset
    between the messages received around it."""

    def events(*items: str) -> list[Message]:
        return [
            Message({"reason": "data_lost"}, id=None, event=RESET_EVENT)
            if item == "RESET"
            else Message({}, id=item)
            for item in items
        ]

    got = events("1-0", "RESET", "3-0", "5-0")
    assert_losses_covered(got, ["1-0", "2-0", "3-0", "5-0"], "covered")
    with pytest.raises(AssertionError, match="4-0 missing"):
        assert_losses_covered(got, ["1-0", "3-0", "4-0", "5-0"], "gap after the reset")
    with pytest.raises(AssertionError, match="0-5 missing"):
        assert_losses_covered(got, ["0-5", "1-0", "3-0", "5-0"], "gap before the reset")
    assert_losses_covered(events("RESET", "3-0"), ["1-0", "3-0"], "reset first")
    assert_losses_covered(events("1-0", "RESET"), ["1-0", "9-0"], "reset last")
    with pytest.raises(AssertionError, match="9-0 missing"):
        assert_losses_covered(events("1-0", "RESET", "3-0"), ["1-0", "3-0", "9-0"], "tail")
    with pytest.raises(AssertionError):
        assert_losses_covered(events("1-0", "3-0", "3-0"), ["1-0", "3-0"], "duplicate")


async def test_tornadose_serve_takes_a_cluster_url(
    tmp_path: Path, start_program: StartProgram, redis_cluster: Cluster
) -> None:
    """``tornadose serve --redis '<node>?cluster=true'`` checks the node at startup,
    serves, and its channel lives on the cluster: a POST is acknowledged and lands in
    the channel's stream on the master that owns its slot."""
    from tests.test_cli import http_client, start_serve, stop, write_channels_module

    channel = f"cli-{uuid.uuid4().hex[:8]}"
    name = write_channels_module(tmp_path, channel)
    program, base = await start_serve(
        start_program, "live_channels:channels", "uvicorn", "--redis", redis_cluster.url
    )
    async with http_client() as client:
        answer = await client.post(f"{base}/{name}/publish", json={"text": "on a cluster"})
        assert answer.status_code == 202, (answer.text, program.describe())
    host, port = redis_cluster.master_of(channel).rsplit(":", 1)
    master = redis.Redis(host=host, port=int(port))
    try:
        entries = master.xrange(channel)
    finally:
        master.close()
    assert len(entries) == 1
    assert b"on a cluster" in b"".join(value for _, fields in entries for value in fields.values())
    assert await stop(program) == 0, program.describe()


async def test_a_dead_master_delays_no_other_master_and_fails_only_its_own_unsent(
    own_cluster: Cluster,
) -> None:
    """Channels B (its master killed) and A (a healthy master) published through one
    process, B's submission always queued first. A's publishes are acknowledged as
    fast as ever; B's wait for the promoted replica and are acknowledged (none fails
    at once with ``maybe_published``). Then B's new master dies with no replica left
    (the cluster told to serve the slots still covered, as its healthy masters
    then do during a failover too): B's publishes fail after
    ``publish_timeout``, with ``maybe_published=False`` (nothing was sent), A's go on."""
    a_name, b_name = own_cluster.keys_on_masters(f"test-{uuid.uuid4().hex[:6]}-", 2)
    a_store = RedisStore(a_name, url=own_cluster.url, publish_timeout=15)
    b_store = RedisStore(b_name, url=own_cluster.url, publish_timeout=15)
    b_short = RedisStore(b_name, url=own_cluster.url, publish_timeout=2)
    assert a_store.connection is b_store.connection is b_short.connection
    loop = asyncio.get_running_loop()
    a_waits: list[float] = []
    b_results: list[str | BaseException] = []

    async def timed(store: RedisStore, n: int) -> float:
        started = loop.time()
        await store.submit({"n": n})
        return loop.time() - started

    async def b_publish(store: RedisStore, n: int) -> None:
        try:
            b_results.append((await store.submit({"n": n})).id or "")
        except StoreUnavailable as exc:
            b_results.append(exc)

    async def both(b: RedisStore, until: Callable[[], bool], limit: float) -> None:
        tasks: list[asyncio.Task[None]] = []
        n = 0
        deadline = loop.time() + limit
        while not until() and loop.time() < deadline:
            tasks.append(asyncio.create_task(b_publish(b, n)))  # queued first
            a_waits.append(await timed(a_store, n))
            n += 1
            await asyncio.sleep(0.02)
        await asyncio.wait_for(asyncio.gather(*tasks), 20)

    # Healthy masters serve their slots while a master is down (by default the whole
    # cluster answers CLUSTERDOWN until a replica is promoted, A's too).
    for node in own_cluster.nodes:
        client = node.client()
        try:
            client.config_set("cluster-require-full-coverage", "no")
        finally:
            client.close()
    try:
        await a_store.submit("warm")
        await b_store.submit("warm")
        b_master = own_cluster.master_of(b_name)
        failing_over = asyncio.create_task(asyncio.to_thread(own_cluster.fail_over, b_master))
        await both(b_store, failing_over.done, 30)
        promoted = await failing_over
        await both(b_store, lambda: False, 1.0)  # and after the promotion
        # Only a transaction on its way when the master died may have failed (it may
        # have been added): every later one waited for the promoted replica.
        errors = [r for r in b_results if isinstance(r, BaseException)]
        assert len(errors) <= 2, errors[:3]
        assert all(isinstance(e, StoreUnavailable) and e.maybe_published for e in errors)
        assert len(b_results) > 20
        assert max(a_waits) < 0.5, f"A waited {max(a_waits):.2f} s behind B's dead master"
        # No replica left for B's slots: its publishes cannot be answered.
        own_cluster.node(promoted).kill()
        b_results.clear()
        a_waits.clear()
        started = loop.time()
        await both(b_short, lambda: loop.time() - started > 3.0, 10)
        assert b_results
        assert all(isinstance(r, StoreUnavailable) for r in b_results), b_results[:3]
        unsent = [r for r in b_results if isinstance(r, StoreUnavailable)]
        assert [r.maybe_published for r in unsent] == [False] * len(unsent), unsent[:3]
        assert all(r.kind in ("unreachable", "redirected") for r in unsent), unsent[:3]
        assert "unreachable" in str(unsent[0]) or "moved" in str(unsent[0]), unsent[0]
        assert max(a_waits) < 0.5, f"A waited {max(a_waits):.2f} s"
    finally:
        for store in (a_store, b_store, b_short):
            await store.aclose()


async def test_a_cluster_node_used_as_one_redis_is_refused_saying_so(
    redis_cluster: Cluster,
) -> None:
    """A cluster node's URL without ``cluster=true``: a publish answers 503
    ``store_refused`` at once (not after ``publish_timeout``), naming Redis's error
    (CROSSSLOT for a plain name, MOVED for a hash-tagged name the node does not own)
    and saying to set ``cluster=True``; counted as refused."""
    from tornadose.http.publish import publish_json
    from tornadose.schemas import ErrorBody

    node = redis_cluster.nodes[0]
    owned = {slot for slot, name in redis_cluster.slots().items() if name == node.name}
    tagged = next(f"{{t{n}}}:x" for n in range(100_000) if key_slot(f"t{n}".encode()) not in owned)
    loop = asyncio.get_running_loop()
    for channel, code in ((f"test-{uuid.uuid4().hex[:8]}", "CROSSSLOT"), (tagged, "MOVED")):
        store = RedisStore(channel, url=f"redis://{node.name}/0", publish_timeout=5)
        try:
            started = loop.time()
            answer = await asyncio.wait_for(publish_json(store, b'{"n": 1}'), TIMEOUT)
            assert loop.time() - started < 2.5  # far from publish_timeout (5 s)
            body = ErrorBody.model_validate_json(answer.body)
            assert (answer.status, body.error) == (503, "store_refused"), body
            assert code in body.detail, body.detail
            assert "cluster=True" in body.detail, body.detail
            numbers = store.snapshot()
            assert numbers["backend_errors_refused"] >= 1, numbers
            assert numbers["backend_errors_unreachable"] == 0, numbers
        finally:
            await store.aclose()
