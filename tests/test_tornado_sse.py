"""EventSource on a real Tornado server, read by real clients (httpx + httpx-sse)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest

from tests.clients import Reading, sse_client, take
from tests.conftest import TornadoStarter, wait_until
from tornadose.handlers import BaseHandler, EventSource
from tornadose.stores import BaseStore, DataStore, QueueStore


async def serve(tornado_server: TornadoStarter, store: BaseStore, **options: Any) -> str:
    base = await tornado_server([(r"/events", EventSource, {"store": store, **options})])
    return base + "/events"


async def test_headers_are_sent_at_once_on_a_quiet_stream(tornado_server: TornadoStarter) -> None:
    """A client sees the SSE headers immediately, before any message exists."""
    url = await serve(tornado_server, QueueStore())
    started = time.monotonic()
    async with sse_client(url) as (source, _):
        elapsed = time.monotonic() - started
        headers = source.response.headers
    assert elapsed < 1.0
    assert source.response.status_code == 200
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["cache-control"] == "no-cache"
    assert headers["x-accel-buffering"] == "no"
    assert "content-length" not in headers


@pytest.mark.parametrize(
    ("payload", "expected_data"),
    [
        pytest.param({"a": 1, "b": [1, 2]}, '{"a":1,"b":[1,2]}', id="dict-as-json"),
        pytest.param("line one\nline two\r\nline three\rend", None, id="str-with-newlines"),
        pytest.param(" leading space\n\nblank line inside\n", None, id="str-edge-whitespace"),
        pytest.param("héllo ✓ 日本語 🌪", None, id="non-ascii"),
        pytest.param(Reading(sensor="t1", value=1.5), '{"sensor":"t1","value":1.5}', id="model"),
        pytest.param(42, "42", id="int"),
        pytest.param(None, "null", id="none"),
    ],
)
async def test_payloads_arrive_intact(
    tornado_server: TornadoStarter, payload: Any, expected_data: str | None
) -> None:
    """Every kind of payload is received exactly: str as is, everything else as JSON."""
    store = QueueStore()
    url = await serve(tornado_server, store)
    async with sse_client(url) as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit(payload)
        store.submit("sentinel")
        first, sentinel = await take(events, 2)
    # httpx-sse joins data lines with LF, as the spec says; CR and CRLF arrive as LF.
    want = expected_data if expected_data is not None else payload
    if isinstance(want, str):
        want = want.replace("\r\n", "\n").replace("\r", "\n")
    assert first.data == want
    assert first.event == "message"
    assert sentinel.data == "sentinel"


async def test_text_cannot_inject_fields_or_events(tornado_server: TornadoStarter) -> None:
    """A message that looks like SSE fields stays one event with that exact text."""
    store = QueueStore()
    url = await serve(tornado_server, store)
    hostile = "x\n\nevent: admin\nid: 999\ndata: injected\n\n"
    async with sse_client(url) as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit(hostile)
        store.submit("next")
        first, second = await take(events, 2)
    assert first.data == hostile  # exactly, trailing newlines included
    assert first.event == "message"
    assert second.data == "next"
    assert first.id != "999"


async def test_events_carry_increasing_ids_and_event_names(tornado_server: TornadoStarter) -> None:
    """Each event has the store's id; ``submit(event=...)`` names the event type."""
    store = QueueStore()
    url = await serve(tornado_server, store)
    async with sse_client(url) as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit("a")
        published = await store.submit("b", event="update")
        first, second = await take(events, 2)
    assert first.id == f"{store.epoch}-1"
    assert second.id == published.id == f"{store.epoch}-2"
    assert second.event == "update"


async def test_queue_store_delivers_everything_in_order(tornado_server: TornadoStarter) -> None:
    """Two clients of a QueueStore each receive all 2,000 messages, in order."""
    store = QueueStore()
    url = await serve(tornado_server, store)
    async with sse_client(url) as (_, events_a), sse_client(url) as (_, events_b):
        await wait_until(lambda: len(store.subscribers) == 2)
        for i in range(2000):
            store.submit(i)
            if i % 100 == 0:
                await asyncio.sleep(0)  # let the writers run, as a real app would
        got_a = await take(events_a, 2000)
        got_b = await take(events_b, 2000)
    assert [int(e.data) for e in got_a] == list(range(2000))
    assert [int(e.data) for e in got_b] == list(range(2000))


async def test_data_store_sends_current_value_to_new_subscriber(
    tornado_server: TornadoStarter,
) -> None:
    """A new DataStore subscriber gets the current value at once, then updates."""
    store = DataStore(initial_data={"temperature": 20})
    url = await serve(tornado_server, store)
    async with sse_client(url) as (_, events):
        (current,) = await take(events, 1)
        store.data = {"temperature": 21}
        (update,) = await take(events, 1)
    assert json.loads(current.data) == {"temperature": 20}
    assert json.loads(update.data) == {"temperature": 21}


async def test_data_store_without_value_sends_nothing_until_set(
    tornado_server: TornadoStarter,
) -> None:
    """``DataStore()`` has no value yet: the first event is the first ``set_data``."""
    store = DataStore()
    url = await serve(tornado_server, store)
    async with sse_client(url) as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        store.set_data(0.5)
        (first,) = await take(events, 1)
    assert first.data == "0.5"


async def test_heartbeat_comments_keep_an_idle_stream_alive(
    tornado_server: TornadoStarter,
) -> None:
    """An idle stream gets a comment every ``heartbeat`` seconds, and no events."""
    store = QueueStore()
    url = await serve(tornado_server, store, heartbeat=0.2)
    async with httpx.AsyncClient(timeout=5) as client, client.stream("GET", url) as response:
        received = b""
        deadline = time.monotonic() + 1.1
        async for chunk in response.aiter_raw():
            received += chunk
            if time.monotonic() > deadline:
                break
    beats = received.count(b": heartbeat\n\n")
    assert 3 <= beats <= 7, received
    assert b"data:" not in received


async def test_heartbeat_zero_is_off(tornado_server: TornadoStarter) -> None:
    """``heartbeat=0`` writes nothing on an idle stream."""
    store = QueueStore()
    url = await serve(tornado_server, store, heartbeat=0)
    async with httpx.AsyncClient(timeout=5) as client, client.stream("GET", url) as response:
        raw = response.aiter_raw()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(raw), 0.5)


async def test_retry_hint_is_sent_first(tornado_server: TornadoStarter) -> None:
    """``retry=`` tells the client its reconnection delay when the stream opens."""
    store = QueueStore()
    url = await serve(tornado_server, store, retry=2500)
    async with sse_client(url) as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit("x")
        (event,) = await take(events, 1)
    assert event.retry == 2500


async def test_period_throttles_writes(tornado_server: TornadoStarter) -> None:
    """With ``period``, writes are spaced out and queued messages arrive together."""
    store = QueueStore()
    url = await serve(tornado_server, store, period=0.3)
    async with httpx.AsyncClient(timeout=5) as client, client.stream("GET", url) as response:
        await wait_until(lambda: len(store.subscribers) == 1)
        chunks: list[tuple[float, bytes]] = []
        raw = response.aiter_raw()
        for i in range(10):
            store.submit(i)
            await asyncio.sleep(0.02)
        received = b""
        while received.count(b"data:") < 10:
            chunk = await asyncio.wait_for(anext(raw), 5)
            chunks.append((time.monotonic(), chunk))
            received += chunk
    # 10 messages over 0.2 s, throttled to one write per 0.3 s: very few writes, in order.
    assert len(chunks) <= 3
    assert [line for line in received.split(b"\n") if line.startswith(b"data:")] == [
        f"data: {i}".encode() for i in range(10)
    ]


@pytest.mark.parametrize("method", ["POST", "HEAD", "PUT", "DELETE"])
async def test_non_get_requests_register_nothing(
    tornado_server: TornadoStarter, method: str
) -> None:
    """POST/HEAD/... to an SSE route get 405 and leave no subscriber behind."""
    store = QueueStore()
    url = await serve(tornado_server, store)
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.request(method, url)
    assert response.status_code == 405
    assert len(store.subscribers) == 0
    store.submit("nobody listening")
    assert len(store.subscribers) == 0


async def test_client_disconnect_deregisters_without_any_message(
    tornado_server: TornadoStarter,
) -> None:
    """A client that leaves while nothing is published is removed promptly."""
    store = QueueStore()
    url = await serve(tornado_server, store, heartbeat=0)
    async with sse_client(url):
        await wait_until(lambda: len(store.subscribers) == 1)
    await wait_until(lambda: len(store.subscribers) == 0, timeout=2)


async def test_many_connect_disconnect_cycles_leak_nothing(tornado_server: TornadoStarter) -> None:
    """100 clients coming and going leave no subscriber registered."""
    store = DataStore(initial_data=1)
    url = await serve(tornado_server, store)

    async def visit() -> None:
        async with sse_client(url) as (_, events):
            await take(events, 1)

    await asyncio.gather(*(visit() for _ in range(100)))
    await wait_until(lambda: len(store.subscribers) == 0, timeout=3)


async def test_slow_client_is_cut_and_others_keep_receiving(
    tornado_server: TornadoStarter,
) -> None:
    """A QueueStore client that stops reading is disconnected; a reading one is not."""
    store = QueueStore(max_queue=20)
    url = await serve(tornado_server, store)
    big = "x" * 65536
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /events HTTP/1.1\r\nHost: test\r\n\r\n")  # and never read again
    async with sse_client(url) as (_, events):
        await wait_until(lambda: len(store.subscribers) == 2)
        received = 0
        for _ in range(400):
            store.submit(big)
            (event,) = await take(events, 1)  # the live client keeps up
            received += len(event.data) == len(big)
            if store.stats.slow_disconnects:
                break
        assert store.stats.slow_disconnects == 1
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit("still flowing")
        (after,) = await take(events, 1)
    assert after.data == "still flowing"
    assert received >= 1
    writer.close()


async def test_drop_oldest_policy_keeps_the_newest(tornado_server: TornadoStarter) -> None:
    """With ``overflow='drop_oldest'`` a lagging client loses the oldest, counted."""
    store = QueueStore(max_queue=5, overflow="drop_oldest")
    subscription = store.subscribe()
    for i in range(12):
        store.submit(i)
    batch = await subscription.get_batch()
    assert [m.data for m in batch] == [7, 8, 9, 10, 11]
    assert store.stats.dropped == 7
    subscription.close()


async def test_store_close_ends_streams_and_refuses_new_ones(
    tornado_server: TornadoStarter,
) -> None:
    """``store.close()`` delivers what is queued, ends the stream; later GETs get 204."""
    store = QueueStore()
    url = await serve(tornado_server, store)
    async with sse_client(url) as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit("last words")
        store.close()
        (last,) = await take(events, 1)
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(events), 5)
    assert last.data == "last words"
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(url)
    assert response.status_code == 204


async def test_unencodable_message_raises_and_publishes_nothing(
    tornado_server: TornadoStarter,
) -> None:
    """A message that cannot be encoded raises at submit; the stream carries on."""
    from tornadose import UnencodableMessage

    store = QueueStore()
    url = await serve(tornado_server, store)
    async with sse_client(url) as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        with pytest.raises(UnencodableMessage):
            store.submit({"bad": object()})
        with pytest.raises(UnencodableMessage):
            store.submit(b"\xff\xfe not utf-8")
        with pytest.raises(ValueError, match="must not contain"):
            store.submit("x", event="evil\ndata: injected")
        store.submit("good")
        (event,) = await take(events, 1)
    assert event.data == "good"
    assert event.id == f"{store.epoch}-1"  # failed submits used up no id
    assert store.stats.published == 1


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
    async with httpx.AsyncClient(timeout=5) as client:
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
    async with httpx.AsyncClient(timeout=5) as client:
        request = asyncio.ensure_future(client.get(base + "/broken"))
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit("boom")
        response = await asyncio.wait_for(request, 5)
    assert response.status_code == 200
    assert len(store.subscribers) == 0
    errors = [r for r in caplog.records if r.levelname == "ERROR" and r.exc_info]
    assert any("cannot publish boom" in str(r.exc_info[1]) for r in errors if r.exc_info)


async def test_errors_are_json_like_the_asgi_adapter(tornado_server: TornadoStarter) -> None:
    """A wrong method gets the same JSON error (and ``Allow``) as from the ASGI app."""
    url = await serve(tornado_server, QueueStore())
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(url)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "method_not_allowed"
