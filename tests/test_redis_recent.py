"""Replays share the messages a RedisBackend already judged (``backends/redis/recent.py``).

A reconnect storm of N clients resuming over H missed entries must cost H validations
(or none, for entries delivered live), not N x H, and hand every client the same
:class:`Message` objects (their encodings are cached on them). The cache must never
serve what the stream does not hold now: not an entry of a stream that was deleted
and filled again, even with the same ids. Validations are counted with a schema
whose validator counts its calls; "another process" is a store with other connection
settings (a reader of its own), as in ``test_redis_store``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import urlsplit

import pydantic
import pytest
import redis.asyncio as aioredis

from tests.redis_support import MakeStore, take
from tornadose.backends.redis.backend import RedisBackend
from tornadose.backends.redis.recent import RecentEntries
from tornadose.backends.redis.store import RedisStore
from tornadose.core.history import RESET_EVENT, RESUMED_EVENT
from tornadose.core.message import Message

#: Clients resuming at once in the storm tests.
CLIENTS = 40


class Counter:
    """Counts the calls of a schema's validator: one per validation of a payload."""

    def __init__(self) -> None:
        self.calls = 0

    def schema(self) -> Any:
        """An ``int`` schema whose validator counts its calls."""

        def count(value: int) -> int:
            self.calls += 1
            return value

        return Annotated[int, pydantic.AfterValidator(count)]


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client of the shared Redis (another program, or an admin)."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def storm(store: RedisStore, last_event_id: str, missed: int) -> list[list[Message]]:
    """``CLIENTS`` subscribers resuming from ``last_event_id`` at once: the replayed
    messages each got (after its tornadose.resumed, checked to say ``missed``)."""
    subscriptions = [store.subscribe(last_event_id) for _ in range(CLIENTS)]
    try:
        received = await asyncio.gather(*(take(s, missed + 1) for s in subscriptions))
    finally:
        for subscription in subscriptions:
            subscription.close()
    for each in received:
        assert each[0].event == RESUMED_EVENT
        assert each[0].data == {"after": last_event_id, "replayed": missed}
    return [each[1:] for each in received]


def other_process(make_store: MakeStore, redis_url: str, **options: Any) -> RedisStore:
    """A store on the test's channel with a reader of its own (host/port settings)."""
    where = urlsplit(redis_url)
    return make_store(
        host=where.hostname, port=where.port or 6379, db=int(where.path[1:] or 0), **options
    )


def same_objects(replays: list[list[Message]], expected: list[Message]) -> bool:
    return all(
        len(replay) == len(expected) and all(a is b for a, b in zip(replay, expected, strict=True))
        for replay in replays
    )


# -- a reconnect storm ------------------------------------------------------------------


async def test_storm_replays_the_messages_delivered_live_without_validating_again(
    make_store: MakeStore,
) -> None:
    """Entries this process delivered live are replayed to every resuming client as
    the very Message objects delivered, with no validation at all."""
    counter = Counter()
    store = make_store(schema=counter.schema())
    async with store.subscribe() as live:
        ready = await store.submit(0)
        assert [m.id for m in await take(live, 1)] == [ready.id]
        published = [store.submit(n) for n in range(1, 21)]
        ids = [(await each).id for each in published]
        delivered = await take(live, 20)
        assert [m.id for m in delivered] == ids
        before, recent = counter.calls, store.redis.recent
        hits, misses = recent.hits, recent.misses
        replays = await storm(store, ids[0], 19)
    assert same_objects(replays, delivered[1:])
    assert counter.calls == before
    assert (recent.hits - hits, recent.misses - misses) == (CLIENTS * 19, 0)


async def test_storm_on_a_process_that_never_read_the_entries_validates_each_once(
    make_store: MakeStore, redis_client: aioredis.Redis, redis_url: str, channel: str
) -> None:
    """A process that never met the entries live (it started after they were
    published) validates each once for a storm of resuming clients, and hands them
    all the same objects; an invalid entry among them is skipped, counted once and
    logged once as a warning, not per client."""
    publisher = make_store()
    first = await publisher.submit(0)
    for n in range(1, 6):
        await publisher.submit(n)
    await redis_client.xadd(channel, {"data": "not json"})
    for n in range(6, 11):
        await publisher.submit(n)
    counter = Counter()
    store = other_process(make_store, redis_url, schema=counter.schema())
    logs: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = logs.append  # type: ignore[method-assign]
    logger = logging.getLogger("tornadose.redis")
    logger.addHandler(handler)
    try:
        replays = await storm(store, first.id or "", 10)
    finally:
        logger.removeHandler(handler)
    assert counter.calls == 10
    assert [m.data for m in replays[0]] == list(range(1, 11))
    assert same_objects(replays, replays[0])
    assert store.invalid_entries == 1
    skipped = [r for r in logs if "skipped an invalid entry" in r.getMessage()]
    assert [r.levelno for r in skipped] == [logging.WARNING]
    assert "in a replay" in skipped[0].getMessage()


# -- never a stale message ----------------------------------------------------------------


async def recreate(client: aioredis.Redis, channel: str, entries: dict[str, int]) -> None:
    """Delete the stream and add ``entries`` (id -> payload) again, in one transaction."""
    pipe = client.pipeline(transaction=True)
    pipe.delete(channel)
    for entry_id, payload in entries.items():
        pipe.xadd(channel, {"data": str(payload)}, id=entry_id)
    await pipe.execute()


async def test_resume_after_the_stream_was_recreated_while_read_gets_the_new_entries(
    make_store: MakeStore, redis_client: aioredis.Redis, channel: str
) -> None:
    """The stream deleted while a subscriber reads it (the reader resets it), then
    filled again by another program with the same ids, some with the same payloads:
    a client resuming is replayed the new stream's entries, never a message cached
    from the old one."""
    store = make_store()
    async with store.subscribe() as live:
        ready = await store.submit("ready")
        assert [m.id for m in await take(live, 1)] == [ready.id]
        old = [await store.submit(n) for n in range(1, 6)]
        delivered = await take(live, 5)
        await redis_client.delete(channel)
        reset = await take(live, 1)
        assert reset[0].event == RESET_EVENT
        assert reset[0].data["reason"] == "data_lost"
        assert len(store.redis.recent) == 0
        new = {m.id or "": n * 10 if n % 2 else n for n, m in enumerate(old, start=1)}
        await recreate(redis_client, channel, new)
        async with store.subscribe(old[0].id) as resumed:
            replay = (await take(resumed, 5))[1:]
    assert [(m.id, m.data) for m in replay] == list(new.items())[1:]
    assert not any(a is b for a in replay for b in delivered)


async def test_resume_after_the_stream_was_recreated_while_unread_gets_the_new_entries(
    make_store: MakeStore, redis_client: aioredis.Redis, channel: str
) -> None:
    """The stream deleted and filled again with the same ids and payloads while the
    process had no subscriber (nothing watched it): a client resuming afterwards gets
    the new stream's entries, decoded anew, not the objects cached before."""
    store = make_store()
    async with store.subscribe() as live:
        ready = await store.submit(0)
        assert [m.id for m in await take(live, 1)] == [ready.id]
        old = [await store.submit(n) for n in range(1, 6)]
        delivered = await take(live, 5)
    await recreate(redis_client, channel, {m.id or "": m.data for m in old})
    hits = store.redis.recent.hits
    async with store.subscribe(old[0].id) as resumed:
        replay = (await take(resumed, 5))[1:]
    assert [(m.id, m.data) for m in replay] == [(m.id, m.data) for m in old[1:]]
    assert not any(a is b for a in replay for b in delivered)
    assert store.redis.recent.hits == hits


# -- the cache itself -------------------------------------------------------------------


def test_recent_entries_serve_only_the_same_fields_and_drop_the_least_recently_used() -> None:
    """An entry is served only with the fields it was judged with (a stream filled
    again can reuse an id); the cache keeps ``limit`` entries, dropping the least
    recently used; ``invalidate`` empties it and starts a new generation."""
    recent = RecentEntries(2)
    one, two, three = (Message(n, id=f"1-{n}") for n in (1, 2, 3))
    recent.remember("1-1", {b"data": b"1"}, one)
    recent.remember("1-2", {b"data": b"2", b"event": b"e"}, two)
    assert recent.lookup("1-2", {b"data": b"2"}) is None  # no event now
    assert recent.lookup("1-1", {b"data": b"10"}) is None  # other data
    known = recent.lookup("1-1", {b"data": b"1", b"other": b"ignored"})
    assert known is not None
    assert known.message is one
    recent.remember("1-3", {b"data": b"3"}, three)  # drops 1-2, used least recently
    assert recent.lookup("1-2", {b"data": b"2", b"event": b"e"}) is None
    assert len(recent) == 2
    assert (recent.hits, recent.misses) == (1, 3)
    recent.invalidate()
    assert (len(recent), recent.generation) == (0, 1)
    assert recent.lookup("1-3", {b"data": b"3"}) is None


def test_a_replay_queried_before_an_invalidation_neither_reads_nor_fills_the_cache() -> None:
    """Entries a replay read before the cache was invalidated (a reset meanwhile) are
    decoded anew and not kept: they may belong to the stream that was lost."""
    backend = RedisBackend("never-connected", "redis://127.0.0.1:1/0", history=5)
    fields = {b"data": b"7"}
    backend.deliver_entry(b"1-1", fields)
    generation = backend.recent.generation
    cached = backend._replayed(b"1-1", fields, generation=generation)
    backend.lost("1-1")
    assert len(backend.recent) == 0
    stale = backend._replayed(b"1-1", fields, generation=generation)
    assert stale is not None
    assert stale is not cached
    assert stale.data == 7
    assert len(backend.recent) == 0
    fresh = backend._replayed(b"1-1", fields, generation=backend.recent.generation)
    assert fresh is not stale
    assert len(backend.recent) == 1
