"""Real clients for the tests: SSE (httpx + httpx-sse) and WebSocket (``websockets``).

Every call here has a timeout, so a broken server fails a test instead of hanging it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing, asynccontextmanager
from typing import Any, Generic, TypeVar

import httpx
import pydantic
from httpx_sse import EventSource as SSEStream
from httpx_sse import ServerSentEvent, aconnect_sse
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import wait_until
from tornadose.schemas import Envelope
from tornadose.stores import BaseStore

#: Seconds any single client operation may take.
TIMEOUT = 5.0


class Reading(pydantic.BaseModel):
    """A typical message model."""

    sensor: str
    value: float


@asynccontextmanager
async def sse_client(
    url: str, **headers: str
) -> AsyncIterator[tuple[SSEStream, AsyncIterator[ServerSentEvent]]]:
    """Connect with httpx-sse; yields the stream and an iterator of its events."""
    async with (
        httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client,
        aconnect_sse(client, "GET", url, headers=headers) as source,
    ):
        events = real_events(source)
        try:
            yield source, events
        finally:
            await events.aclose()


async def real_events(source: SSEStream) -> AsyncGenerator[ServerSentEvent, None]:
    """The events of ``source`` without httpx-sse's phantoms (real ones carry a new id)."""
    last_id: str | None = None
    async with aclosing(source.aiter_sse()) as events:
        async for event in events:
            # httpx-sse 0.4.3 yields a data-less event at each blank line (after heartbeats).
            if event.data == "" and event.retry is None and event.id == last_id:
                continue
            last_id = event.id
            yield event


async def take(events: AsyncIterator[ServerSentEvent], count: int) -> list[ServerSentEvent]:
    """The next ``count`` events, failing after 5 s."""

    async def collect() -> list[ServerSentEvent]:
        return [await anext(events) for _ in range(count)]

    return await asyncio.wait_for(collect(), TIMEOUT)


@asynccontextmanager
async def ws_subscribed(
    url: str, store: BaseStore, **options: Any
) -> AsyncIterator[ClientConnection]:
    """Connect a WebSocket client and wait until the server registered it with ``store``."""
    before = len(store.subscribers)
    async with connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT, **options) as ws:
        await wait_until(lambda: len(store.subscribers) == before + 1)
        yield ws


async def recv_text(ws: ClientConnection) -> str:
    """The next frame, which must be a text frame; fails after 5 s."""
    frame = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert isinstance(frame, str), f"expected a text frame, got {frame!r}"
    return frame


async def recv(ws: ClientConnection) -> Envelope:
    """The next frame, parsed as an :class:`Envelope`."""
    return Envelope.model_validate_json(await recv_text(ws))


async def expect_close(ws: ClientConnection) -> list[Envelope]:
    """Read until the server closes; return what arrived before the close."""
    received: list[Envelope] = []

    async def drain() -> None:
        try:
            while True:
                received.append(Envelope.model_validate_json(await ws.recv()))
        except ConnectionClosed:
            return

    await asyncio.wait_for(drain(), TIMEOUT)
    return received


def offset(message_id: str | None) -> int:
    """The offset part of an ``<epoch>-<offset>`` id."""
    assert message_id is not None
    _, _, number = message_id.rpartition("-")
    return int(number)


T = TypeVar("T")

#: Seconds of silence after which :meth:`Inbox.rest` takes nothing more to come.
QUIET = 0.2


class Inbox(Generic[T]):
    """What one client connection received, queued in order by its reader task."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[T] = asyncio.Queue()

    async def take(self, count: int) -> list[T]:
        """The next ``count`` items, failing after :data:`TIMEOUT`."""

        async def collect() -> list[T]:
            return [await self.queue.get() for _ in range(count)]

        return await asyncio.wait_for(collect(), TIMEOUT)

    async def rest(self) -> list[T]:
        """Whatever else arrives within :data:`QUIET` seconds."""
        await asyncio.sleep(QUIET)
        return [self.queue.get_nowait() for _ in range(self.queue.qsize())]
