"""RedisStore continuity: what subscribers get when Redis loses, replaces, trims or
refuses a channel's data, and the decisions behind it.

Every test against Redis uses a real server: the shared one (``redis_url``) with a
channel of the test's own, or a ``redis-server`` of the test's own (``own_redis``)
when it must be restarted or reconfigured. Nothing is mocked. Subscribers are plain
Python subscriptions (``store.subscribe()``), read with ``get_batch``.

The rule checked throughout: a subscriber gets every message in order, each once,
or an explicit ``tornadose.reset`` (``data_lost`` for a live subscriber) before the
messages that follow a loss; never a silent gap, and never live messages of a
resuming subscriber ahead of its ``tornadose.resumed`` / ``tornadose.reset``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import given
from hypothesis import strategies as st

from tests.clients import TIMEOUT
from tests.redis_support import MakeStore, RedisServer, logged, take
from tornadose.backends.redis.layout import ZERO, Continuity, StreamId, continuity
from tornadose.backends.redis.store import RedisStore
from tornadose.core.history import RESET_EVENT, RESUMED_EVENT
from tornadose.core.message import Message
from tornadose.core.reasons import CloseReason, OverflowPolicy
from tornadose.core.subscription import Subscription
from tornadose.errors import StoreUnavailable, SubscriptionClosed
from tornadose.stores import QueueStore

#: Seconds a subscriber waits to make sure that nothing more arrives.
QUIET = 0.3
#: Seconds within which a reader notices what changed while it was blocked (its
#: blocking read lasts 1 s), with a wide margin.
NOTICE = 5.0
MAX = 2**64 - 1

OwnRedis = Callable[..., RedisServer]
MakeClient = Callable[[str], aioredis.Redis]
Seen = tuple[str | None, str | None, Any]


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture
async def clients() -> AsyncIterator[MakeClient]:
    """``client = clients(url)``: a plain Redis client (another program, or an admin),
    closed after the test."""
    made: list[aioredis.Redis] = []

    def make(url: str) -> aioredis.Redis:
        client = aioredis.Redis.from_url(url)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


# -- helpers ----------------------------------------------------------------------------


async def publish(store: RedisStore, *payloads: Any) -> list[Message]:
    """Submit ``payloads`` in order; return them once Redis has them all."""
    published = [store.submit(payload) for payload in payloads]
    return [await item for item in published]


async def take_all(subscription: Subscription, count: int) -> list[Message]:
    """At least ``count`` messages, and whatever else arrives within :data:`QUIET` s: a
    test expecting ``count + 1`` messages fails fast when only ``count`` come."""
    return await take(subscription, count) + await subscription.get_batch(timeout=QUIET)


async def nothing_more(subscription: Subscription) -> list[Message]:
    """Whatever ``subscription`` receives within :data:`QUIET` seconds."""
    return await subscription.get_batch(timeout=QUIET)


def seen(messages: list[Message]) -> list[Seen]:
    """(event, id, data) of each message, to compare what was sent and received."""
    return [(m.event, m.id, m.data) for m in messages]


def data_lost(cursor: str | None) -> Seen:
    """The ``tornadose.reset`` a live subscriber gets after a loss: it names the last
    entry the reader had delivered, and has no id of its own."""
    return (RESET_EVENT, None, {"reason": "data_lost", "last_event_id": cursor})


def entries(ids: list[str], payloads: range) -> list[Seen]:
    """How external entries with ``payloads`` (added with ``ids``) are received."""
    return [(None, entry_id, n) for entry_id, n in zip(ids, payloads, strict=True)]


def stream_id(message: Message | str | None) -> StreamId:
    """The :class:`StreamId` of a message (or id), which must be a stream entry id."""
    text = message.id if isinstance(message, Message) else message
    parsed = StreamId.parse(text or "")
    assert parsed is not None, f"not a stream entry id: {text!r}"
    return parsed


async def xadd(client: aioredis.Redis, key: str, payload: Any) -> str:
    """Add one entry as another program would; return its id."""
    entry_id: Any = await client.xadd(key, {"data": json.dumps(payload)})
    return bytes(entry_id).decode()


async def burst(
    client: aioredis.Redis, key: str, payloads: range, maxlen: int | None, *, delete: bool = False
) -> list[str]:
    """In one transaction (a reader sees the stream only as it is afterwards): delete
    ``key`` first if ``delete``, then add one entry per payload, trimming to exactly
    ``maxlen`` after each. Returns the new entries' ids."""
    pipe = client.pipeline(transaction=True)
    if delete:
        pipe.delete(key)
    for payload in payloads:
        pipe.xadd(key, {"data": json.dumps(payload)}, maxlen=maxlen, approximate=False)
    results = await pipe.execute()
    return [bytes(entry_id).decode() for entry_id in results[1 if delete else 0 :]]


async def eventually(check: Callable[[], Any], timeout: float = NOTICE) -> None:
    """Await ``check()`` every 10 ms until it is true; fail the test after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        await asyncio.sleep(0.01)


async def floor_of(client: aioredis.Redis, channel: str) -> StreamId | None:
    """The floor of ``channel`` (its ``<channel>:floor`` key), ``None`` if missing."""
    raw: Any = await client.get(channel + ":floor")
    return None if raw is None else stream_id(bytes(raw).decode())


async def reader_blocked() -> None:
    """Give a reader that just delivered time to go back to its blocking read."""
    await asyncio.sleep(0.05)


# -- a resume closed while its replay is fetched ---------------------------------------------


@pytest.mark.parametrize("ending", ["released", "subscription_closed", "store_closed"])
async def test_resume_waiting_for_its_replay_never_hands_over_live_messages_alone(
    own_redis: OwnRedis, make_store: MakeStore, clients: MakeClient, channel: str, ending: str
) -> None:
    """While a resume's replay cannot be fetched (Redis takes no new connection, and
    the store never opened one for commands), live messages the reader delivers wait
    in the held subscription. Released, it gets tornadose.resumed, the replay, then
    live ones, each once; closed first (itself, or by closing the store), its queue is
    discarded and counted, and it yields no live message, then or later."""
    server = own_redis()
    store = make_store(url=server.url)
    admin = clients(server.url)
    async with store.subscribe() as watcher:
        await eventually(lambda: admin.exists(channel + ":floor"))  # the reader started
        last_seen = await xadd(admin, channel, 0)
        assert [m.id for m in await take(watcher, 1)] == [last_seen]
        info: Any = await admin.info("clients")
        await admin.config_set("maxclients", info["connected_clients"])
        try:
            resuming = store.subscribe(last_event_id=last_seen)
            live = [await xadd(admin, channel, n) for n in (1, 2, 3)]
            assert [m.id for m in await take(watcher, 3)] == live
            # Queued but not readable: the resume was kept waiting (else this proves nothing).
            assert len(resuming) == 3
            assert resuming.take_batch() == []
            assert await resuming.get_batch(timeout=0.05) == []
            discarded = store.stats.discarded
            if ending == "released":
                await admin.config_set("maxclients", 10000)
                received = await take(resuming, 4)
                later = await xadd(admin, channel, 4)
                received += await take(resuming, 1)
                assert seen(received) == [
                    (RESUMED_EVENT, last_seen, {"after": last_seen, "replayed": 3}),
                    *entries([*live, later], range(1, 5)),
                ]
                assert await nothing_more(resuming) == []
                assert store.stats.discarded == discarded
                return
            if ending == "subscription_closed":
                resuming.close()
                expected_reason = CloseReason.DEREGISTERED
            else:
                store.close()
                expected_reason = CloseReason.STORE_CLOSED
            assert store.stats.discarded == discarded + 3
            assert resuming.close_reason is expected_reason
            assert len(resuming) == 0
            await admin.config_set("maxclients", 10000)
            later = await xadd(admin, channel, 4)
            if ending == "subscription_closed":
                assert [m.id for m in await take(watcher, 1)] == [later]  # the reader goes on
            await asyncio.sleep(QUIET)  # a resume that went on would release now
            with pytest.raises(SubscriptionClosed):
                await asyncio.wait_for(resuming.get_batch(timeout=QUIET), TIMEOUT)
            assert len(resuming) == 0
        finally:
            await admin.config_set("maxclients", 10000)


def held_subscription(
    max_messages: int = 10, overflow: OverflowPolicy = OverflowPolicy.DISCONNECT
) -> tuple[QueueStore, Subscription]:
    """A store and a subscription of it, held (as a RedisStore holds a resume)."""
    store = QueueStore(max_queue=max_messages, overflow=overflow)
    subscription = store.register(object())
    subscription.hold()
    return store, subscription


def numbered(n: int) -> Message:
    """A live message ``n`` (id ``e-<n>``)."""
    return Message(n, id=f"e-{n}")


#: The control message a release puts first.
CONTROL = Message({"after": "e-0", "replayed": 0}, id="e-0", event=RESUMED_EVENT)


def up_to(n: int) -> Callable[[Message], bool]:
    """A ``skip`` for messages up to ``n`` (what the replay holds)."""
    return lambda message: int(message.data) <= n


async def test_held_subscription_hands_over_nothing_until_released_front_first() -> None:
    """A held subscription queues live messages without waking its reader; release
    puts the front (control, replay) ahead of them and wakes the reader."""
    store, subscription = held_subscription()
    store.submit("a")
    store.submit("b")
    assert (subscription.take_batch(), len(subscription)) == ([], 2)
    assert await subscription.get_batch(timeout=0.05) == []
    reader = asyncio.ensure_future(subscription.get_batch(timeout=TIMEOUT))
    store.submit("c")
    await asyncio.sleep(0.05)
    assert not reader.done(), "a held subscription handed over live messages"
    replayed = Message("r", id="e-r")
    subscription.release([CONTROL, replayed])
    batch = await asyncio.wait_for(reader, 1)
    assert [m.data for m in batch] == [CONTROL.data, "r", "a", "b", "c"]
    assert len(subscription) == 0
    assert store.stats.delivered == 5


@pytest.mark.parametrize(
    ("held", "skip_through", "later", "expected"),
    [
        # Everything held is in the replay: later messages the replay holds are skipped
        # too, until the first new one; after it, nothing is skipped (store order).
        pytest.param([1, 2], 2, [2, 3, 1, 4], ["e-0", "e-3", "e-1", "e-4"], id="gate"),
        # Something held is new: no gate, later messages are all kept.
        pytest.param([1, 2, 3], 2, [2, 4], ["e-0", "e-3", "e-2", "e-4"], id="no-gate"),
        # Without skip, everything held is kept.
        pytest.param([1, 2], None, [1], ["e-0", "e-1", "e-2", "e-1"], id="no-skip"),
    ],
)
async def test_release_skips_what_the_replay_holds(
    held: list[int], skip_through: int | None, later: list[int], expected: list[str]
) -> None:
    """``release(skip=...)`` drops held live messages the replay holds, and live ones
    arriving after it only until the first one it keeps."""
    _, subscription = held_subscription()
    for n in held:
        subscription.put(numbered(n))
    subscription.release([CONTROL], skip=None if skip_through is None else up_to(skip_through))
    for n in later:
        subscription.put(numbered(n))
    batch = await subscription.get_batch(timeout=1)
    assert [m.id for m in batch] == expected


async def test_release_front_is_outside_the_bound() -> None:
    """The released front (control and replay) never counts against the bound, and
    overflow never drops it."""
    store, subscription = held_subscription(max_messages=2, overflow=OverflowPolicy.DROP_OLDEST)
    subscription.put(numbered(1))
    subscription.put(numbered(2))
    subscription.release([CONTROL, *(Message(f"r{n}", id=f"e-r{n}") for n in range(3))])
    subscription.put(numbered(3))  # the queue holds 2 live ones: the oldest live one goes
    batch = await subscription.get_batch(timeout=1)
    assert [m.id for m in batch] == ["e-0", "e-r0", "e-r1", "e-r2", "e-2", "e-3"]
    assert store.stats.dropped == 1


@pytest.mark.parametrize("reason", list(CloseReason))
async def test_close_while_held_discards_the_queue_and_counts_it(reason: CloseReason) -> None:
    """Closed while held, for any reason, a subscription discards (and counts) its
    queue, wakes its reader with SubscriptionClosed, and ignores later messages:
    live messages without their replay would be a silent gap."""
    store, subscription = held_subscription()
    for n in (1, 2, 3):
        subscription.put(numbered(n))
    reader = asyncio.ensure_future(subscription.get_batch(timeout=TIMEOUT))
    await asyncio.sleep(0)
    subscription.close(reason)
    with pytest.raises(SubscriptionClosed) as closed:
        await asyncio.wait_for(reader, 1)
    assert closed.value.reason is reason
    assert store.stats.discarded == 3
    assert store.stats.disconnects[reason.value] == 1
    assert (len(subscription), subscription.close_reason) == (0, reason)
    assert list(store.subscribers) == []
    subscription.put(numbered(4))
    assert len(subscription) == 0


async def test_close_after_release_still_delivers_what_is_queued() -> None:
    """By contrast, a released subscription closed with the store keeps its queue for
    its reader (front first), then reports the close."""
    store, subscription = held_subscription()
    subscription.put(numbered(1))
    subscription.release([CONTROL])
    subscription.close(CloseReason.STORE_CLOSED)
    assert [m.id for m in await subscription.get_batch(timeout=1)] == ["e-0", "e-1"]
    with pytest.raises(SubscriptionClosed):
        await subscription.get_batch(timeout=1)
    assert store.stats.discarded == 0


async def test_overflow_while_held_cuts_it_and_a_late_release_adds_nothing() -> None:
    """A held subscription that fills up under DISCONNECT is cut (its queue discarded);
    a release after that queues nothing."""
    store, subscription = held_subscription(max_messages=2)
    for n in (1, 2, 3):
        subscription.put(numbered(n))
    assert subscription.close_reason is CloseReason.SLOW_CONSUMER
    assert store.stats.discarded == 2
    subscription.release([CONTROL])
    assert len(subscription) == 0
    with pytest.raises(SubscriptionClosed):
        await subscription.get_batch(timeout=1)


# -- the stream deleted or replaced ---------------------------------------------------------


async def test_deleted_stream_gives_data_lost_and_trimming_of_the_new_one_is_detected(
    make_store: MakeStore, clients: MakeClient, redis_url: str, channel: str
) -> None:
    """The stream deleted while a subscriber reads it: the reader notices the missing
    stream, the subscriber gets tornadose.reset (data_lost), then what is published to
    the new stream; entries of the new stream trimmed before the reader read them give
    another data_lost reset before the entries that are left."""
    other = clients(redis_url)
    store = make_store(history=5)
    async with store.subscribe() as subscription:
        before = await publish(store, 1, 2, 3)
        assert seen(await take(subscription, 3)) == seen(before)
        await other.delete(channel)
        assert seen(await take(subscription, 1, NOTICE)) == [data_lost(before[-1].id)]
        after = await publish(store, 4, 5, 6)
        assert seen(await take_all(subscription, 3)) == seen(after)
        await reader_blocked()
        added = await burst(other, channel, range(7, 27), maxlen=5)
        received = await take_all(subscription, 6)
    assert seen(received) == [data_lost(after[-1].id), *entries(added[-5:], range(22, 27))]
    assert store.stats.resets == 2
    assert stream_id(before[-1]) < stream_id(after[0])


@pytest.mark.xfail(
    strict=True,
    reason="known limitation (documented): continuity() takes a stream deleted and "
    "recreated between two reads of the reader for the old one; when the new stream "
    "counts exactly as many removed entries as the reader had read, its trimmed entries "
    "are lost without any reset",
)
async def test_stream_replaced_and_trimmed_between_two_reads_gives_data_lost(
    make_store: MakeStore, clients: MakeClient, redis_url: str, channel: str
) -> None:
    """After the subscriber got 10 messages, another program deletes the stream and
    adds 15 entries, trimmed to 5, in one transaction while the reader waits: 10
    entries the subscriber never got are gone, so it must get tornadose.reset
    (data_lost) before the 5 that are left."""
    other = clients(redis_url)
    store = make_store(history=5)
    async with store.subscribe() as subscription:
        delivered = await publish(store, *range(1, 11))
        assert seen(await take(subscription, 10)) == seen(delivered)
        await reader_blocked()
        added = await burst(other, channel, range(11, 26), maxlen=5, delete=True)
        received = await take_all(subscription, 5)
    assert seen(received) == [data_lost(delivered[-1].id), *entries(added[-5:], range(21, 26))]


@pytest.mark.xfail(
    strict=True,
    reason="known limitation (documented): after a stream deleted and recreated between "
    "two reads of the reader was delivered, the next read compares the new stream's "
    "entries-added with the old count (continuity(): entries_added < seq) and sends "
    "a data_lost reset after messages that lost nothing, and raises the floor past "
    "them, so clients resuming from those messages get unknown_epoch resets",
)
async def test_stream_replaced_between_two_reads_is_delivered_without_a_late_reset(
    make_store: MakeStore, clients: MakeClient, redis_url: str, channel: str
) -> None:
    """The stream deleted and recreated with 12 entries in one transaction while the
    reader waits: the subscriber gets them all, once, and a reset, if any, only
    before them (nothing it had not read is gone); a client that saw the 5th of them
    resumes exactly; trimming of the new stream before the reader read it is then
    detected (data_lost before the entries that are left)."""
    other = clients(redis_url)
    store = make_store(history=5)
    async with store.subscribe() as subscription:
        delivered = await publish(store, *range(1, 11))
        assert seen(await take(subscription, 10)) == seen(delivered)
        await reader_blocked()
        recreated = await burst(other, channel, range(11, 23), maxlen=None, delete=True)
        received = await take_all(subscription, 12)
        if received[0].event == RESET_EVENT:
            assert seen(received[:1]) == [data_lost(delivered[-1].id)]
            received = received[1:]
        assert seen(received) == entries(recreated, range(11, 23))
        await asyncio.sleep(1.2)  # the reader reads again (its blocking read is 1 s)
        assert await nothing_more(subscription) == []
        async with store.subscribe(last_event_id=recreated[4]) as resuming:
            assert seen(await take_all(resuming, 8)) == [
                (RESUMED_EVENT, recreated[4], {"after": recreated[4], "replayed": 7}),
                *entries(recreated[5:], range(16, 23)),
            ]
        await reader_blocked()
        added = await burst(other, channel, range(23, 33), maxlen=5)
        received = await take_all(subscription, 5)
    assert seen(received) == [data_lost(recreated[-1]), *entries(added[-5:], range(28, 33))]


# -- Redis lost the newest entries (an older copy restored) ----------------------------------


async def lose_the_tail(
    server: RedisServer, store: RedisStore, live: Subscription, clients: MakeClient
) -> tuple[list[Message], list[Message], list[Message]]:
    """Publish 1..10 through ``store`` (``live`` gets them), with a snapshot taken after
    6; kill Redis and start it again from the snapshot; then ``live`` must get one
    tornadose.reset (data_lost) and 11, 12 published after the restart. Returns
    (1..6, 7..10, 11..12)."""
    kept = await publish(store, *range(1, 7))
    assert seen(await take(live, 6)) == seen(kept)
    assert await clients(server.url).save()
    assert (server.directory / "dump.rdb").exists()
    lost = await publish(store, *range(7, 11))
    assert seen(await take(live, 4)) == seen(lost)
    server.kill()
    server.start()  # loads dump.rdb
    newest: Any = await clients(server.url).xrevrange(store.channel, count=1)
    assert bytes(newest[0][0]).decode() == kept[-1].id, "Redis did not lose the tail"
    assert seen(await take(live, 1, NOTICE)) == [data_lost(lost[-1].id)]
    after = await publish(store, 11, 12)
    assert seen(await take_all(live, 2)) == seen(after)
    return kept, lost, after


async def test_lost_tail_resets_the_live_subscriber_then_delivers_what_follows(
    own_redis: OwnRedis, make_store: MakeStore, clients: MakeClient
) -> None:
    """Redis restarts from a snapshot taken after message 6, so 7..10 are gone: the
    subscriber connected through the outage gets tornadose.reset (data_lost), once,
    then the messages published after the restart, in order."""
    server = own_redis(persistent=False)
    store = make_store(url=server.url)
    async with store.subscribe() as live:
        _, lost, after = await lose_the_tail(server, store, live, clients)
        await asyncio.sleep(1.2)  # the reader reads again (its blocking read is 1 s)
        more = await publish(store, 13)
        assert seen(await take_all(live, 1)) == seen(more)
    assert store.stats.resets == 1
    assert stream_id(lost[-1]) < stream_id(after[0])


async def test_lost_tail_makes_resumes_from_before_it_resets(
    own_redis: OwnRedis, make_store: MakeStore, clients: MakeClient, channel: str
) -> None:
    """After Redis restarted from a snapshot taken after message 6 (7..10 lost) and the
    live subscriber got its reset, the floor is past 10: a client that had seen 3 (or
    8) and resumes gets tornadose.reset (unknown_epoch), never tornadose.resumed with a
    hole; a client that had seen 11 resumes exactly."""
    server = own_redis(persistent=False)
    store = make_store(url=server.url)
    async with store.subscribe() as live:
        kept, lost, after = await lose_the_tail(server, store, live, clients)
        for last_seen in (kept[2], lost[1]):
            async with store.subscribe(last_event_id=last_seen.id) as resuming:
                assert seen(await take_all(resuming, 1)) == [
                    (
                        RESET_EVENT,
                        after[-1].id,
                        {"reason": "unknown_epoch", "last_event_id": last_seen.id},
                    )
                ]
        async with store.subscribe(last_event_id=after[0].id) as resuming:
            assert seen(await take_all(resuming, 2)) == [
                (RESUMED_EVENT, after[0].id, {"after": after[0].id, "replayed": 1}),
                *seen(after[1:]),
            ]
    assert await floor_of(clients(server.url), channel) == stream_id(lost[-1]).after()


async def test_resume_planned_before_the_reader_noticed_a_lost_tail_is_a_reset(
    make_store: MakeStore, clients: MakeClient, redis_url: str, channel: str
) -> None:
    """An older copy of the stream (after message 6) replaces it (RESTORE) while the
    reader waits for new entries; a client that had seen 3 resumes at once. Messages
    7..10 are gone, so it must get a reset, not tornadose.resumed with 4..6 followed
    by live messages; the live subscriber gets data_lost."""
    admin = clients(redis_url)
    store = make_store()
    async with store.subscribe() as live:
        kept = await publish(store, *range(1, 7))
        assert seen(await take(live, 6)) == seen(kept)
        copy: Any = await admin.dump(channel)
        lost = await publish(store, *range(7, 11))
        assert seen(await take(live, 4)) == seen(lost)
        await reader_blocked()
        await admin.restore(channel, 0, copy, replace=True)
        async with store.subscribe(last_event_id=kept[2].id) as resuming:
            first = (await take(resuming, 1))[0]
            assert seen(await take(live, 1, NOTICE)) == [data_lost(lost[-1].id)]
            assert first.event == RESET_EVENT, f"resumed across lost messages: {first.data}"


async def test_resume_from_an_id_the_stream_does_not_have_is_a_reset(
    make_store: MakeStore, channel: str
) -> None:
    """A client resumes from an id between two entries of the stream (an entry a
    failed-over master handed out and its promoted replica never got), on a process
    that was not reading the channel: the stream's first entry is older, so no trim
    explains it: tornadose.reset (data_lost), never tornadose.resumed followed by the
    next entry (a silent gap)."""
    publisher = make_store()
    kept = [await publisher.submit(n) for n in range(4)]
    last = StreamId.parse(kept[-1].id or "")
    assert last is not None
    missing = str(StreamId(last.ms + 1, 0))
    await asyncio.sleep(0.01)
    later = await publisher.submit("after the lost one")
    await publisher.aclose()
    store = make_store()
    async with store.subscribe(last_event_id=missing) as resuming:
        assert seen(await take_all(resuming, 1)) == [
            (RESET_EVENT, later.id, {"reason": "data_lost", "last_event_id": missing})
        ]
    # The entries it does have resume exactly.
    async with store.subscribe(last_event_id=kept[2].id) as resuming:
        assert seen(await take_all(resuming, 2)) == [
            (RESUMED_EVENT, kept[2].id, {"after": kept[2].id, "replayed": 2}),
            *seen([kept[3], later]),
        ]


# -- the floor key deleted ------------------------------------------------------------------


async def test_deleted_floor_key_is_set_again_without_a_reset(
    make_store: MakeStore, clients: MakeClient, redis_url: str, channel: str
) -> None:
    """The floor key deleted while a subscriber reads an intact stream: the reader sets
    it again (to the stream's first entry) when it next reads, sends no reset and no
    message twice, and new messages arrive in order; a resume still replays."""
    admin = clients(redis_url)
    store = make_store()
    async with store.subscribe() as subscription:
        before = await publish(store, 1, 2, 3)
        assert seen(await take(subscription, 3)) == seen(before)
        await admin.delete(channel + ":floor")
        await eventually(lambda: admin.exists(channel + ":floor"))  # set by the reader
        assert await floor_of(admin, channel) == stream_id(before[0])
        after = await publish(store, 4, 5, 6)
        assert seen(await take_all(subscription, 3)) == seen(after)
    async with store.subscribe(last_event_id=before[0].id) as resuming:
        assert seen(await take_all(resuming, 6)) == [
            (RESUMED_EVENT, before[0].id, {"after": before[0].id, "replayed": 5}),
            *seen([*before[1:], *after]),
        ]
    assert store.stats.resets == 0


async def test_deleted_floor_key_across_a_reconnect_gives_no_reset_and_no_duplicate(
    own_redis: OwnRedis, make_store: MakeStore, clients: MakeClient, channel: str
) -> None:
    """The floor key deleted, then Redis restarts with the stream intact (AOF): the
    reader reconnects and reads on with no reset; every message arrives once, in order."""
    server = own_redis(persistent=True)
    store = make_store(url=server.url)
    async with store.subscribe() as subscription:
        before = await publish(store, 1, 2, 3)
        assert seen(await take(subscription, 3)) == seen(before)
        assert await clients(server.url).delete(channel + ":floor") == 1
        server.kill()
        server.start()
        after = await publish(store, 4, 5, 6)
        received = await take_all(subscription, 3)
        more = await publish(store, 7)
        received += await take_all(subscription, 1)
    assert seen(received) == seen([*after, *more])
    assert store.stats.resets == 0
    assert await floor_of(clients(server.url), channel) == stream_id(before[0])


# -- a channel whose key holds another type --------------------------------------------------


async def test_channel_whose_key_has_another_type_does_not_stop_the_others(
    make_store: MakeStore,
    clients: MakeClient,
    redis_url: str,
    channel: str,
    logs: pytest.LogCaptureFixture,
) -> None:
    """A channel whose key is a string (another program's): a subscriber of a healthy
    channel on the same connection keeps receiving, publishing to the healthy channel
    works (even in the same pipeline), publishing to the broken one raises
    StoreUnavailable with Redis's WRONGTYPE at once, and the refusal is logged (ERROR)
    once, naming the channel, however long the reader runs."""
    admin = clients(redis_url)
    healthy = make_store(f"{channel}.healthy", publish_timeout=2)
    broken = make_store(f"{channel}.broken", publish_timeout=2)
    await admin.set(broken.channel, "x")
    async with healthy.subscribe() as subscriber:
        first = await healthy.submit("first")
        assert seen(await take(subscriber, 1)) == seen([first])
        async with broken.subscribe() as stranded:
            assert broken.connection is healthy.connection
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(StoreUnavailable, match="WRONGTYPE") as refused:
                await asyncio.wait_for(broken.submit("refused"), TIMEOUT)
            assert loop.time() - started < broken.publish_timeout
            assert refused.value.maybe_published is False
            together = broken.submit("refused too"), healthy.submit("together")
            sent = [await together[1], *await publish(healthy, "a", "b")]
            with pytest.raises(StoreUnavailable, match="WRONGTYPE"):
                await together[0]
            assert seen(await take(subscriber, 3)) == seen(sent)
            await asyncio.sleep(1.2)  # the reader goes round (its blocking read is 1 s)
            last = await healthy.submit("last")
            assert seen(await take_all(subscriber, 1)) == seen([last])
            assert await stranded.get_batch(timeout=QUIET) == []
            assert not stranded.closed
    refusal = ("Redis refuses the keys of channel", repr(broken.channel))
    assert logged(logs, logging.ERROR, *refusal) == 1
    assert logged(logs, logging.ERROR, "lost its connection") == 0
    assert broken.snapshot()["publish_failures"] == 2
    assert healthy.snapshot()["publish_failures"] == 0
    assert await admin.get(broken.channel) == b"x"


async def replace_with_a_string(
    make_store: MakeStore, admin: aioredis.Redis, channel: str
) -> tuple[list[Message], list[Message], RedisStore]:
    """Subscribe to a healthy channel and a broken-to-be one (same connection); once
    both are read, replace the second one's stream with a string, and publish to the
    first one meanwhile. Returns what was published to the healthy channel after the
    replacement and what its subscriber received, and the broken channel's store."""
    healthy = make_store(f"{channel}.healthy")
    broken = make_store(f"{channel}.broken")
    async with healthy.subscribe() as subscriber, broken.subscribe() as stranded:
        sent = await publish(broken, "broken")
        assert seen(await take(stranded, 1)) == seen(sent)
        first = await publish(healthy, 1)
        assert seen(await take(subscriber, 1)) == seen(first)
        await reader_blocked()
        pipe = admin.pipeline(transaction=True)
        pipe.delete(broken.channel)
        pipe.set(broken.channel, "x")
        await pipe.execute()
        published: list[Message] = []
        for n in range(2, 6):
            published += await publish(healthy, n)
            await asyncio.sleep(0.1)
        received = await take_all(subscriber, len(published))
        assert await stranded.get_batch(timeout=0.05) == []
    return published, received, broken


async def test_channel_key_replaced_by_another_type_while_read_does_not_stop_the_others(
    make_store: MakeStore,
    clients: MakeClient,
    redis_url: str,
    channel: str,
    logs: pytest.LogCaptureFixture,
) -> None:
    """A channel being read whose key another program replaces with a string: the
    healthy channel's subscriber keeps receiving, every message once, in order, and
    the refusal is logged (ERROR) once, naming the channel."""
    published, received, broken = await replace_with_a_string(
        make_store, clients(redis_url), channel
    )
    assert seen(received) == seen(published)
    refusal = ("Redis refuses the keys of channel", repr(broken.channel))
    assert logged(logs, logging.ERROR, *refusal) == 1


async def test_channel_key_replaced_by_another_type_is_not_a_lost_connection(
    make_store: MakeStore,
    clients: MakeClient,
    redis_url: str,
    channel: str,
    logs: pytest.LogCaptureFixture,
) -> None:
    """A channel whose key is replaced with a string while it is read is a refusal
    of that channel only: the Redis connection is fine and not reported lost."""
    await replace_with_a_string(make_store, clients(redis_url), channel)
    assert logged(logs, logging.ERROR, "Redis reader lost its connection") == 0
    assert logged(logs, logging.INFO, "Redis reader reconnected") == 0


# -- continuity() and StreamId.after() --------------------------------------------------------


def sid(ms: int, seq: int = 0) -> StreamId:
    return StreamId(ms, seq)


#: A stream the reader has read entirely: 10 entries ever added, newest at its cursor.
INTACT_STATE: dict[str, Any] = {
    "cursor": sid(10),
    "seq": 10,
    "known_floor": sid(1),
    "floor": sid(1),
    "exists": True,
    "first": sid(1),
    "newest": sid(10),
    "entries_added": 10,
    "length": 10,
}


def case(name: str, expected: Continuity, **changes: Any) -> Any:
    """A row of the table: :data:`INTACT_STATE` with ``changes`` is judged ``expected``."""
    return pytest.param(changes, expected, id=name)


INTACT, TRIMMED = Continuity.INTACT, Continuity.TRIMMED
NEW_GENERATION, LOST_TAIL = Continuity.NEW_GENERATION, Continuity.LOST_TAIL
FLOOR_RAISED = Continuity.FLOOR_RAISED


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        case("nothing-changed", INTACT),
        case("new-entries", INTACT, newest=sid(12), entries_added=12, length=12),
        # The floor.
        case("new-stream-above-cursor", NEW_GENERATION, floor=sid(11), first=sid(11)),
        case("new-stream-empty", NEW_GENERATION, floor=sid(11), first=None, length=0),
        case(
            "floor-just-above-cursor-no-entry-below", NEW_GENERATION, floor=sid(10, 1), first=None
        ),
        # Raised by another process past lost entries; entries below it remain.
        case("floor-raised-above-cursor", FLOOR_RAISED, floor=sid(11)),
        case("floor-just-above-cursor", FLOOR_RAISED, floor=sid(10, 1)),
        case("floor-raised-first-just-below", FLOOR_RAISED, floor=sid(11), first=sid(10, 9)),
        case("floor-set-again-at-cursor", INTACT, floor=sid(10)),
        case("floor-set-again-below-cursor", INTACT, floor=sid(5)),
        case("known-floor-above-cursor", INTACT, known_floor=sid(11), floor=sid(11)),
        case("first-floor-below-cursor", INTACT, known_floor=None, floor=sid(5)),
        case("no-floor", INTACT, floor=None),
        case("floor-raised-stream-missing", NEW_GENERATION, floor=sid(11), exists=False),
        case("new-generation-before-lost-tail", NEW_GENERATION, floor=sid(11), first=sid(11)),
        case("raised-before-lost-tail", FLOOR_RAISED, floor=sid(11), newest=sid(5)),
        # A missing stream.
        case("missing-after-reading", NEW_GENERATION, exists=False),
        case("missing-after-counting", NEW_GENERATION, exists=False, cursor=ZERO, seq=3),
        case("missing-before-reading", INTACT, exists=False, cursor=ZERO, seq=0),
        case("missing-seq-unknown-unread", INTACT, exists=False, cursor=ZERO, seq=None),
        case("missing-seq-unknown-read", NEW_GENERATION, exists=False, seq=None),
        # A lost tail.
        case("newest-below-cursor", LOST_TAIL, newest=sid(9, 5)),
        case("fewer-entries-than-read", LOST_TAIL, entries_added=9, length=9),
        case("newest-below-cursor-seq-unknown", LOST_TAIL, newest=sid(9), seq=None),
        case("seq-unknown-skips-count-check", INTACT, entries_added=9, length=9, seq=None),
        case("lost-tail-before-trimmed", LOST_TAIL, newest=sid(9), entries_added=30, length=5),
        # Trimming.
        case("one-unread-trimmed", TRIMMED, newest=sid(20), entries_added=20, length=9),
        case("trimmed-up-to-cursor", INTACT, newest=sid(20), entries_added=20, length=10),
        case("only-read-entries-trimmed", INTACT, length=3),
        case(
            "seq-unknown-skips-trim-check",
            INTACT,
            newest=sid(20),
            entries_added=20,
            length=1,
            seq=None,
        ),
        case(
            "fresh-reader-trimmed",
            TRIMMED,
            cursor=ZERO,
            seq=0,
            newest=sid(3),
            length=2,
            entries_added=3,
        ),
        case(
            "fresh-reader-intact",
            INTACT,
            cursor=ZERO,
            seq=0,
            newest=sid(3),
            length=3,
            entries_added=3,
        ),
    ],
)
def test_continuity(changes: dict[str, Any], expected: Continuity) -> None:
    """Each branch of continuity(): a floor changed to above the cursor is a new
    generation when no entry is below it, raised by another process when entries
    below it remain (at or below the cursor: the key was set again, intact); a
    missing stream is a new generation once something was read; a newest id below
    the cursor, or fewer entries ever added than read, is a lost tail; more trimmed
    than read is TRIMMED; with ``seq`` unknown, the count and trim checks are skipped."""
    assert continuity(**{**INTACT_STATE, **changes}) is expected


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        pytest.param(sid(5, 3), sid(5, 4), id="same-ms"),
        pytest.param(ZERO, sid(0, 1), id="zero"),
        pytest.param(sid(5, MAX), sid(6, 0), id="next-ms"),
        pytest.param(sid(MAX - 1, MAX), sid(MAX, 0), id="last-ms"),
    ],
)
def test_stream_id_after(start: StreamId, expected: StreamId) -> None:
    """``after()`` is the least id above: the floor raised past a lost entry."""
    assert start.after() == expected
    assert StreamId.parse(str(expected)) == expected


@given(ms=st.integers(0, MAX - 1), seq=st.integers(0, MAX))
def test_stream_id_after_is_the_next_id(ms: int, seq: int) -> None:
    """No id lies between an id and its ``after()``: it is above, and ``before()``
    of it is the id again."""
    given_id = StreamId(ms, seq)
    following = given_id.after()
    assert given_id < following
    assert following.before() == given_id
    assert StreamId.parse(str(following)) == following
