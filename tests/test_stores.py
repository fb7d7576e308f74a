"""The framework-neutral core: stores and subscriptions, used from plain asyncio."""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest

from tornadose import (
    BaseStore,
    CloseReason,
    DataStore,
    Message,
    MessageValidationError,
    QueueStore,
    StoreClosed,
    SubscriptionClosed,
)

# Created at import time, before any event loop exists, as users do.
MODULE_LEVEL_STORE = QueueStore()


def test_module_level_store_works_under_asyncio_run() -> None:
    """A store made before ``asyncio.run(main())`` delivers inside that loop, and the next."""

    async def main(value: str) -> list[Any]:
        async with MODULE_LEVEL_STORE.subscribe() as subscription:
            MODULE_LEVEL_STORE.submit(value)
            return [m.data for m in await subscription.get_batch()]

    assert asyncio.run(main("first loop")) == ["first loop"]
    assert asyncio.run(main("second loop")) == ["second loop"]


async def test_submit_works_plain_and_awaited() -> None:
    """``submit()`` publishes before returning; awaiting it gives the Message."""
    store = QueueStore()
    async with store.subscribe() as subscription:
        plain = store.submit("plain")
        message = await store.submit("awaited")
        assert isinstance(message, Message)
        assert message.data == "awaited"
        assert plain.id == f"{store.epoch}-1"
        assert message.id == f"{store.epoch}-2"
        assert [m.data for m in await subscription.get_batch()] == ["plain", "awaited"]


def test_ids_distinguish_store_instances() -> None:
    """Two stores (as before and after a restart) never produce the same ids."""
    first, second = QueueStore(), QueueStore()
    assert first.epoch != second.epoch
    assert first.submit(1).id != second.submit(1).id


def test_initialize_hook_gets_constructor_arguments() -> None:
    """Subclasses override ``initialize``; store options are taken out first."""

    class Custom(BaseStore):
        def initialize(self, name: str, *, greeting: str = "hi") -> None:
            self.name = name
            self.greeting = greeting

    store = Custom("alpha", greeting="hello", max_queue=7)
    assert (store.name, store.greeting, store.max_queue) == ("alpha", "hello", 7)
    with pytest.raises(TypeError, match="unexpected arguments"):
        BaseStore(max_queeu=5)  # a typo is an error, not silently ignored


def test_legacy_publish_call_is_harmless() -> None:
    """0.x stores called ``self.publish()`` from ``initialize``; it does nothing now."""

    class Legacy(QueueStore):
        def initialize(self) -> None:
            super().initialize()
            self.publish()

    assert Legacy().stats.published == 0


class Reading(pydantic.BaseModel):
    sensor: str
    value: float


async def test_schema_validates_and_refuses_without_publishing() -> None:
    """With a schema, valid messages go out validated; invalid ones raise, nothing sent."""
    store = QueueStore(schema=Reading)
    async with store.subscribe() as subscription:
        with pytest.raises(MessageValidationError) as caught:
            store.submit({"sensor": "t1", "value": "not a number"})
        assert isinstance(caught.value, ValueError)
        assert caught.value.errors[0]["loc"] == ["value"]
        assert caught.value.errors[0]["type"] == "float_parsing"
        message = await store.submit({"sensor": "t1", "value": "2.5"})
        assert message.data == Reading(sensor="t1", value=2.5)
        assert message.text == '{"sensor":"t1","value":2.5}'
        assert message.id == f"{store.epoch}-1"  # the refused one used no id
        assert [m.data for m in await subscription.get_batch()] == [message.data]
    assert store.stats.published == 1


def test_schema_can_be_any_type_pydantic_accepts() -> None:
    """``schema`` takes plain types too, through pydantic's TypeAdapter."""
    store = DataStore(schema=list[int])
    assert store.submit(["1", 2]).message.data == [1, 2]
    with pytest.raises(MessageValidationError):
        store.submit("nope")


async def test_data_store_current_value() -> None:
    """DataStore keeps the latest value and hands it to each new subscriber."""
    store = DataStore(initial_data=1)
    assert store.data == 1
    store.data = 2
    store.set_data(3)
    assert store.data == 3
    async with store.subscribe() as subscription:
        assert [m.data for m in await subscription.get_batch()] == [3]


async def test_data_store_keeps_latest_when_a_subscriber_lags() -> None:
    """A DataStore subscriber that falls behind skips to the newest value, counted."""
    store = DataStore(max_queue=3)
    async with store.subscribe() as subscription:
        for i in range(10):
            store.submit(i)
        assert [m.data for m in await subscription.get_batch()] == [9]
    assert store.stats.dropped == 9


async def test_queue_store_disconnects_a_slow_subscriber() -> None:
    """QueueStore cuts a subscriber ``max_queue`` behind; iterating it raises."""
    store = QueueStore(max_queue=3)
    slow = store.subscribe()
    fast = store.subscribe()
    received: list[int] = []
    for i in range(5):
        store.submit(i)
        received += [m.data for m in await fast.get_batch()]
    assert received == [0, 1, 2, 3, 4]
    assert slow.close_reason is CloseReason.SLOW_CONSUMER
    assert len(store.subscribers) == 1
    assert store.stats.slow_disconnects == 1
    with pytest.raises(SubscriptionClosed) as caught:
        async for _ in slow:
            pass
    assert caught.value.reason is CloseReason.SLOW_CONSUMER
    fast.close()


async def test_queue_store_keeps_a_bounded_backlog_for_the_next_subscriber() -> None:
    """Messages sent while nobody listens wait (bounded) for the next subscriber."""
    store = QueueStore(backlog=3)
    for i in range(5):
        store.submit(i)
    assert store.stats.dropped == 2
    async with store.subscribe() as first:
        assert [m.data for m in await first.get_batch()] == [2, 3, 4]
    async with store.subscribe() as second:
        assert await second.get_batch(timeout=0.05) == []


def test_queue_store_backlog_bounds() -> None:
    """The backlog fits in a subscriber's queue; zero turns it off."""
    with pytest.raises(ValueError, match="backlog"):
        QueueStore(max_queue=10, backlog=11)
    store = QueueStore(backlog=0)
    store.submit("lost, and counted")
    assert store.stats.dropped == 1


async def test_register_and_deregister() -> None:
    """Registering twice gives the same subscription; deregistering is idempotent."""
    store = QueueStore()
    subscriber = object()
    subscription = store.register(subscriber)
    assert store.register(subscriber) is subscription
    assert list(store.subscribers) == [subscriber]
    store.deregister(subscriber)
    store.deregister(subscriber)
    store.deregister("never registered")
    assert len(store.subscribers) == 0
    assert subscription.close_reason is CloseReason.DEREGISTERED


async def test_close_wakes_a_waiting_reader_at_once() -> None:
    """A reader blocked on an empty subscription is released by ``close()``."""
    store = QueueStore()
    subscription = store.subscribe()
    reader = asyncio.ensure_future(subscription.get_batch())
    await asyncio.sleep(0.01)
    assert not reader.done()
    subscription.close(CloseReason.CLIENT_GONE)
    with pytest.raises(SubscriptionClosed):
        await asyncio.wait_for(reader, 1)


async def test_sleep_returns_early_on_close() -> None:
    """``Subscription.sleep`` (used for throttling) ends when the subscription closes."""
    store = QueueStore()
    subscription = store.subscribe()
    asyncio.get_running_loop().call_later(0.05, subscription.close)
    await asyncio.wait_for(subscription.sleep(30), 1)


async def test_get_batch_times_out_empty_and_caps_size() -> None:
    """``get_batch`` returns [] on timeout and at most ``max_messages`` messages."""
    store = QueueStore()
    async with store.subscribe() as subscription:
        assert await subscription.get_batch(timeout=0.01) == []
        for i in range(5):
            store.submit(i)
        assert [m.data for m in await subscription.get_batch(2)] == [0, 1]
        assert [m.data for m in await subscription.get_batch()] == [2, 3, 4]


async def test_closed_store_refuses_messages_and_subscribers() -> None:
    """After ``close()``: queued messages still drain, then nothing more."""
    store = QueueStore()
    subscription = store.subscribe()
    store.submit("queued")
    store.close()
    assert [m.data async for m in subscription] == ["queued"]
    with pytest.raises(StoreClosed):
        store.submit("late")
    with pytest.raises(StoreClosed):
        store.subscribe()


async def test_one_reader_at_a_time() -> None:
    """Two tasks reading one subscription is a programming error, said clearly."""
    store = QueueStore()
    subscription = store.subscribe()
    first = asyncio.ensure_future(subscription.get_batch())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="one task at a time"):
        await subscription.get_batch()
    subscription.close()
    with pytest.raises(SubscriptionClosed):
        await first


def test_bad_options_are_refused() -> None:
    """Nonsense options fail at construction, not at the first client."""
    with pytest.raises(ValueError, match="max_queue"):
        QueueStore(max_queue=0)
    with pytest.raises(ValueError, match="sideways"):
        QueueStore(overflow="sideways")


@pytest.mark.parametrize("kind", ["queue", "data"])
async def test_start_position_is_before_what_a_newcomer_is_handed(kind: str) -> None:
    """``start_position`` is where resuming gives exactly what a new subscriber gets:
    before a ``QueueStore``'s backlog, before a ``DataStore``'s current value
    (``"<epoch>-0"`` when that is the channel's first message: a multi-channel cursor
    holds it); with nothing handed, the store's position; unknown before anything."""
    store: BaseStore = QueueStore() if kind == "queue" else DataStore()
    assert store.start_position is None
    first = await store.submit("first")
    assert store.start_position == f"{store.epoch}-0"
    early = store.subscribe()  # takes the first (the backlog) from the store
    early.take_batch()
    early.close()
    published = [await store.submit(n) for n in range(3)]
    handed = published if kind == "queue" else published[-1:]
    start = store.start_position
    assert start == (first.id if kind == "queue" else published[1].id)
    resumed = store.subscribe(last_event_id=start)
    got = resumed.take_batch()
    assert [m.event for m in got] == ["tornadose.resumed"] + [None] * len(handed)
    assert [m.id for m in got[1:]] == [m.id for m in handed]
    resumed.close()
    if kind == "queue":  # the backlog went to that subscriber: nothing handed now
        assert store.start_position == store.position == published[-1].id
