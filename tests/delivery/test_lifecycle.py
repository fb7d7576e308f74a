"""``Lifecycle``: the open streams of one server, their drain, and the one shutdown
sequence, without a server.

A "stream" here is what an adapter does, minus the socket: a task that counts its
subscription in a lifecycle (``Lifecycle.streaming``) and reads it until it closes.
Its ``cut`` records the call and ends the task, as an adapter's abort would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.conftest import wait_until
from tornadose import shutdown
from tornadose.core.reasons import CloseReason
from tornadose.core.subscription import Subscription
from tornadose.delivery import lifecycle as lifecycle_module
from tornadose.delivery.lifecycle import Lifecycle, shut_down_together
from tornadose.stores import QueueStore


@pytest.fixture(autouse=True)
def forget_process_drain() -> Iterator[None]:
    """A process-wide drain stays for good: undo it after each test."""
    yield
    shutdown.reset()


class Stream:
    """One stream of ``lifecycle`` on ``store``, in a task.

    ``stuck=True``: the stream ignores the close of its subscription (a write that
    never returns) and ends only when cut; ``uncuttable=True`` too: even the cut does
    not end it (the test ends it).
    """

    def __init__(
        self,
        lifecycle: Lifecycle,
        store: QueueStore,
        *,
        stuck: bool = False,
        uncuttable: bool = False,
    ) -> None:
        self.subscription: Subscription = store.subscribe()
        self.lifecycle = lifecycle
        self.stuck = stuck or uncuttable
        self.uncuttable = uncuttable
        self.cuts = 0
        self.received: list[object] = []
        self._cut = asyncio.Event()
        self.task = asyncio.ensure_future(self._run())

    def cut(self) -> None:
        self.cuts += 1
        if not self.uncuttable:
            self._cut.set()

    async def _run(self) -> None:
        with self.lifecycle.streaming(self.subscription, cut=self.cut):
            if self.stuck:
                await self._cut.wait()
                return
            async for message in self.subscription:
                self.received.append(message.data)

    @property
    def reason(self) -> CloseReason | None:
        return self.subscription.close_reason

    async def ended(self) -> None:
        await asyncio.wait_for(self.task, 5)


async def open_stream(lifecycle: Lifecycle, store: QueueStore, **options: bool) -> Stream:
    """A :class:`Stream` that has entered ``streaming`` (or already ended there)."""
    stream = Stream(lifecycle, store, **options)
    entered = stream.task.done
    await asyncio.sleep(0)  # the task's first step: it enters ``streaming``
    await wait_until(lambda: entered() or stream.subscription in _open(lifecycle))
    return stream


def _open(lifecycle: Lifecycle) -> list[Subscription]:
    return [open_stream.subscription for open_stream in lifecycle._open.values()]


async def test_drain_closes_its_own_streams_only() -> None:
    """Draining one lifecycle closes its streams with SERVER_SHUTDOWN (queued messages
    delivered first); another lifecycle's streams stay open and keep receiving."""
    store = QueueStore()
    one, other = Lifecycle("one"), Lifecycle("other")
    mine = [await open_stream(one, store) for _ in range(2)]
    theirs = await open_stream(other, store)
    assert (one.open_streams, other.open_streams) == (2, 1)

    store.submit("before")
    assert one.drain() == 2
    for stream in mine:
        await stream.ended()
        assert stream.reason is CloseReason.SERVER_SHUTDOWN
        assert stream.received == ["before"]
    assert one.open_streams == 0
    assert one.draining
    assert not other.draining

    store.submit("after")
    await wait_until(lambda: theirs.received == ["before", "after"])
    assert not theirs.task.done()
    assert theirs.reason is None
    theirs.subscription.close()
    await theirs.ended()


async def test_a_stream_opened_after_the_drain_closes_at_once_until_reset() -> None:
    """After a drain, a new stream of that lifecycle is closed as it opens; another
    lifecycle opens streams as usual; ``reset`` lets streams open again."""
    store = QueueStore()
    drained, other = Lifecycle("drained"), Lifecycle("other")
    drained.drain()
    late = await open_stream(drained, store)
    await late.ended()
    assert late.reason is CloseReason.SERVER_SHUTDOWN

    fresh = await open_stream(other, store)
    store.submit("x")
    await wait_until(lambda: fresh.received == ["x"])
    assert fresh.reason is None

    drained.reset()
    assert not drained.draining
    again = await open_stream(drained, store)
    store.submit("y")
    await wait_until(lambda: again.received == ["y"])
    assert again.reason is None
    for stream in (fresh, again):
        stream.subscription.close()
        await stream.ended()


async def test_a_stream_still_open_at_the_deadline_is_cut_once() -> None:
    """A stream that does not end after the drain is cut ``deadline`` seconds later,
    once; a stream that ended in time is never cut."""
    store = QueueStore()
    lifecycle = Lifecycle("cut", deadline=0.2)
    stuck = await open_stream(lifecycle, store, stuck=True)
    healthy = await open_stream(lifecycle, store)
    loop = asyncio.get_running_loop()
    drained_at = loop.time()
    lifecycle.drain()
    await healthy.ended()
    await stuck.ended()
    took = loop.time() - drained_at
    assert 0.15 <= took < 1.0, took
    assert (stuck.cuts, healthy.cuts) == (1, 0)
    await asyncio.sleep(0.3)
    assert (stuck.cuts, healthy.cuts) == (1, 0)
    assert lifecycle.open_streams == 0


async def test_shut_down_drains_waits_stops_then_closes_in_order() -> None:
    """``shut_down``: drain, every stream ended, then ``stop``, then each ``close`` in
    order; only then does it return (True: every stream had ended)."""
    store = QueueStore()
    lifecycle = Lifecycle("server")
    streams = [await open_stream(lifecycle, store) for _ in range(3)]
    steps: list[str] = []

    async def stop() -> None:
        assert all(stream.task.done() for stream in streams)
        assert lifecycle.open_streams == 0
        steps.append("stop")

    async def close_store() -> None:
        steps.append("store")
        store.close()

    async def close_other() -> None:
        steps.append("other")

    assert await lifecycle.shut_down(stop=stop, close=[close_store, close_other]) is True
    assert steps == ["stop", "store", "other"]
    assert all(stream.reason is CloseReason.SERVER_SHUTDOWN for stream in streams)
    assert store.closed


async def test_shut_down_stops_the_server_after_the_deadline_if_a_stream_hangs() -> None:
    """A stream that ends neither by the drain nor by its cut cannot hold the
    shutdown: the server is stopped after the deadline plus the cut grace, and
    ``shut_down`` says not every stream had ended."""
    store = QueueStore()
    lifecycle = Lifecycle("hanging", deadline=0.1)
    hung = await open_stream(lifecycle, store, uncuttable=True)
    stopped: list[float] = []
    loop = asyncio.get_running_loop()
    began = loop.time()

    async def stop() -> None:
        stopped.append(loop.time() - began)

    assert await lifecycle.shut_down(stop=stop) is False
    assert len(stopped) == 1
    assert 0.1 + lifecycle_module.CUT_GRACE - 0.05 <= stopped[0] < 3.0, stopped
    assert hung.cuts == 1
    hung.task.cancel()
    await asyncio.wait({hung.task})


async def test_shut_down_together_stops_both_then_closes_once() -> None:
    """Two servers sharing stores: both drain, both stop (concurrently: a slow stop
    does not delay the other's start), then the stores close once; a third lifecycle
    of the process keeps its stream."""
    store = QueueStore()
    first, second, bystander = Lifecycle("first"), Lifecycle("second"), Lifecycle("bystander")
    streams = [await open_stream(lc, store) for lc in (first, second)]
    kept = await open_stream(bystander, store)
    steps: list[str] = []
    release = asyncio.Event()

    async def stop_slow() -> None:
        steps.append("slow started")
        await release.wait()
        steps.append("slow stopped")

    async def stop_fast() -> None:
        steps.append("fast stopped")
        release.set()

    async def close() -> None:
        steps.append("closed")

    ended = await shut_down_together([(first, stop_slow), (second, stop_fast)], close=[close])
    assert ended is True
    assert steps == ["slow started", "fast stopped", "slow stopped", "closed"]
    assert all(stream.reason is CloseReason.SERVER_SHUTDOWN for stream in streams)
    assert kept.reason is None
    assert bystander.open_streams == 1
    kept.subscription.close()
    await kept.ended()


async def test_shut_down_closes_even_if_the_stop_fails_then_raises_it() -> None:
    """A server that fails to stop still gets its stores closed; the failure is raised."""
    lifecycle = Lifecycle("failing")
    closed: list[str] = []

    async def stop() -> None:
        raise RuntimeError("cannot stop")

    async def close() -> None:
        closed.append("store")

    with pytest.raises(RuntimeError, match="cannot stop"):
        await lifecycle.shut_down(stop=stop, close=[close])
    assert closed == ["store"]


async def test_the_process_drain_covers_every_lifecycle_for_good() -> None:
    """``tornadose.shutdown.drain()`` drains every lifecycle, including one created
    afterwards; ``reset()`` undoes it for all."""
    store = QueueStore()
    one, two = Lifecycle("one"), Lifecycle("two")
    streams = [await open_stream(lc, store) for lc in (one, two, shutdown.PROCESS)]
    before = shutdown.open_streams()
    assert before >= 3
    assert shutdown.drain() >= 3
    for stream in streams:
        await stream.ended()
        assert stream.reason is CloseReason.SERVER_SHUTDOWN
    assert await shutdown.wait_streams_ended(2)

    later = Lifecycle("later")
    assert later.draining
    assert shutdown.draining()
    late = await open_stream(later, store)
    await late.ended()
    assert late.reason is CloseReason.SERVER_SHUTDOWN

    shutdown.reset()
    assert [shutdown.draining(), one.draining, later.draining] == [False] * 3
    again = await open_stream(later, store)
    store.submit("z")
    await wait_until(lambda: again.received == ["z"])
    again.subscription.close()
    await again.ended()


async def test_open_streams_and_waits_are_per_lifecycle() -> None:
    """``wait_streams_ended`` of a lifecycle waits for its own streams only."""
    store = QueueStore()
    one, two = Lifecycle("one"), Lifecycle("two")
    mine, theirs = await open_stream(one, store), await open_stream(two, store)
    assert not await one.wait_streams_ended(0.05)
    waiting = asyncio.ensure_future(one.wait_streams_ended(5))
    await asyncio.sleep(0.01)
    mine.subscription.close()
    assert await waiting is True
    assert two.open_streams == 1
    theirs.subscription.close()
    await theirs.ended()
    assert await two.wait_streams_ended(1)
