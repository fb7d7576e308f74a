"""What a delivery loop keeps alive, and for how long (``delivery/streams.py``).

* A stream's coroutine that is never run (a task cancelled before its first step, a
  coroutine dropped) leaves nothing behind: no timer keeps its subscription alive.
* An event loop that ran direct delivery is not kept alive by it once it is closed.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Awaitable

from tornadose.delivery import streams
from tornadose.stores import QueueStore


async def test_a_stream_never_run_keeps_nothing_alive() -> None:
    store = QueueStore()
    subscription = store.subscribe()
    written: list[bytes] = []

    async def write(chunk: bytes) -> None:
        written.append(chunk)

    options = streams.SSEOptions(heartbeat=0.01, write_timeout=0.01)
    stream = streams.stream_sse(subscription, write, options)
    stream.close()  # dropped before its first step
    subscription.close()
    gone = weakref.ref(subscription)
    del subscription, stream
    await asyncio.sleep(0.05)  # a timer left behind would have fired by now
    gc.collect()
    assert gone() is None, "a timer of the stream that never ran keeps its subscription"
    assert written == []


def test_a_closed_event_loop_is_not_kept_alive_by_direct_delivery() -> None:
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def one_stream() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        store = QueueStore()
        subscription = store.subscribe()
        written: list[bytes] = []

        def write_now(chunk: bytes) -> Awaitable[None] | None:
            written.append(chunk)
            return None

        delivery = asyncio.ensure_future(
            streams.stream_sse(
                subscription,
                streams.write_through(write_now),
                streams.SSEOptions(heartbeat=None),
                write_now=write_now,
            )
        )
        await asyncio.sleep(0)
        store.submit("one")
        for _ in range(100):
            await asyncio.sleep(0.001)
            if written:
                break
        assert written, "the message was not written"
        subscription.close()
        await delivery

    for _ in range(3):
        asyncio.run(one_stream())
    gc.collect()
    assert [ref() for ref in loops] == [None, None, None]
