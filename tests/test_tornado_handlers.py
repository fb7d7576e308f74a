"""Tornado-only behaviour: customising the handlers by subclassing, the 0.x way.

The ASGI apps are not meant to be subclassed, so nothing here has an ASGI twin; what
both adapters do is tested once for both in ``test_sse.py`` and ``test_websocket.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.clients import TIMEOUT, recv, sse_client, take, ws_subscribed
from tests.conftest import TornadoStarter, wait_until
from tornadose.handlers import BaseHandler, EventSource, WebSocketSubscriber
from tornadose.stores import QueueStore


class Shouter(BaseHandler):
    """A custom handler in the documented style: subclass BaseHandler, implement publish."""

    def prepare(self) -> None:
        super().prepare()
        if self.subscription is not None:  # a GET: the stream is open
            self.set_header("Content-Type", "text/plain; charset=utf-8")
            self.flush()

    async def publish(self, message: Any) -> None:
        self.write(str(message).upper() + "\n")
        await self.flush()


class LegacySubmitHandler(BaseHandler):
    """A 0.2-style custom handler that overrides ``submit`` to receive messages."""

    def prepare(self) -> None:
        super().prepare()
        if self.subscription is not None:
            self.flush()

    async def submit(self, message: Any) -> None:  # type: ignore[override]
        await self.publish(message)

    async def publish(self, message: Any) -> None:
        self.write(f"<{message}>")
        await self.flush()


@pytest.mark.parametrize(
    ("handler", "expected"),
    [(Shouter, "HELLO\nWORLD\n"), (LegacySubmitHandler, "<hello><world>")],
)
async def test_custom_handlers_work_as_documented(
    tornado_server: TornadoStarter, handler: type[BaseHandler], expected: str
) -> None:
    """Subclasses of BaseHandler receive each payload via publish (or submit)."""
    store = QueueStore()
    base = await tornado_server([(r"/custom", handler, {"store": store})])
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
        async with client.stream("GET", base + "/custom") as response:
            await wait_until(lambda: len(store.subscribers) == 1)
            store.submit("hello")
            store.submit("world")
            text = ""
            async for chunk in response.aiter_text():
                text += chunk
                if len(text) >= len(expected):
                    break
        assert text == expected
        await wait_until(lambda: len(store.subscribers) == 0)
        assert (await client.post(base + "/custom")).status_code == 405
    assert len(store.subscribers) == 0


class ShoutingEventSource(EventSource):
    """An EventSource whose subclass overrides ``publish`` to change each payload."""

    async def publish(self, message: Any) -> None:
        await super().publish(str(message).upper())


class ShoutingWebSocket(WebSocketSubscriber):
    """A WebSocketSubscriber whose subclass overrides ``publish`` to change each payload."""

    async def publish(self, message: Any) -> None:
        await super().publish(str(message).upper())


async def test_event_source_subclass_overriding_publish_gets_each_payload(
    tornado_server: TornadoStarter,
) -> None:
    """An EventSource subclass overriding ``publish`` decides what each event carries."""
    store = QueueStore()
    base = await tornado_server([(r"/events", ShoutingEventSource, {"store": store})])
    async with sse_client(base + "/events") as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit("hello")
        store.submit("world")
        received = await take(events, 2)
    assert [event.data for event in received] == ["HELLO", "WORLD"]


async def test_websocket_subclass_overriding_publish_gets_each_payload(
    tornado_server: TornadoStarter,
) -> None:
    """A WebSocketSubscriber subclass overriding ``publish`` decides what each frame carries."""
    store = QueueStore()
    base = await tornado_server([(r"/ws", ShoutingWebSocket, {"store": store})])
    async with ws_subscribed(base.replace("http://", "ws://", 1) + "/ws", store) as ws:
        store.submit("hello")
        store.submit("world")
        received = [await recv(ws), await recv(ws)]
    assert [envelope.data for envelope in received] == ["HELLO", "WORLD"]


class Broken(BaseHandler):
    """A custom handler whose publish fails."""

    async def publish(self, message: Any) -> None:
        raise RuntimeError(f"cannot publish {message}")


async def test_delivery_errors_are_logged_not_swallowed(
    tornado_server: TornadoStarter, caplog: pytest.LogCaptureFixture
) -> None:
    """An exception in ``publish`` is logged with its traceback; the stream ends cleanly."""
    store = QueueStore()
    base = await tornado_server([(r"/broken", Broken, {"store": store})])
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
        request = asyncio.ensure_future(client.get(base + "/broken"))
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit("boom")
        response = await asyncio.wait_for(request, TIMEOUT)
    assert response.status_code == 200
    assert len(store.subscribers) == 0
    errors = [r for r in caplog.records if r.levelname == "ERROR" and r.exc_info]
    assert any("cannot publish boom" in str(r.exc_info[1]) for r in errors if r.exc_info)
