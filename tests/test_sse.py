"""Server-Sent Events as a client sees them, identical on both adapters.

Every test runs twice through the ``serve_store`` fixture: on Tornado's ``EventSource``
and on the ASGI ``EventSourceApp`` under uvicorn, read by real clients (httpx and
httpx-sse). Tornado-only behaviour is in ``test_tornado_handlers.py``, ASGI-only
behaviour in ``test_asgi_mounting.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import httpx
import pytest

from tests.clients import TIMEOUT, Reading, offset, sse_client, take
from tests.conftest import StoreServer, wait_until
from tornadose import UnencodableMessage
from tornadose.stores import DataStore, QueueStore


def http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=TIMEOUT, trust_env=False)


# -- headers and payloads ---------------------------------------------------------------


async def test_headers_are_sent_at_once_on_a_quiet_stream(serve_store: StoreServer) -> None:
    """A client sees the SSE headers immediately, before any message exists."""
    endpoints = await serve_store(QueueStore())
    started = time.monotonic()
    async with sse_client(endpoints.events) as (source, _):
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
    serve_store: StoreServer, payload: Any, expected_data: str | None
) -> None:
    """Every kind of payload is received exactly: str as is, everything else as JSON."""
    store = QueueStore()
    endpoints = await serve_store(store)
    async with sse_client(endpoints.events) as (_, events):
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


async def test_text_cannot_inject_fields_or_events(serve_store: StoreServer) -> None:
    """A message that looks like SSE fields stays one event with that exact text."""
    store = QueueStore()
    endpoints = await serve_store(store)
    hostile = "x\n\nevent: admin\nid: 999\ndata: injected\n\n"
    async with sse_client(endpoints.events) as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit(hostile)
        store.submit("next")
        first, second = await take(events, 2)
    assert first.data == hostile  # exactly, trailing newlines included
    assert first.event == "message"
    assert second.data == "next"
    assert first.id != "999"


async def test_events_carry_increasing_ids_and_event_names(serve_store: StoreServer) -> None:
    """Each event has the store's id; ``submit(event=...)`` names the event type."""
    store = QueueStore()
    endpoints = await serve_store(store)
    async with sse_client(endpoints.events) as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit("a")
        published = await store.submit("b", event="update")
        first, second = await take(events, 2)
    assert first.id == f"{store.epoch}-1"
    assert second.id == published.id == f"{store.epoch}-2"
    assert second.event == "update"


async def test_unencodable_message_raises_and_publishes_nothing(serve_store: StoreServer) -> None:
    """A message that cannot be encoded raises at submit; the stream carries on."""
    store = QueueStore()
    endpoints = await serve_store(store)
    async with sse_client(endpoints.events) as (_, events):
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


# -- store kinds ------------------------------------------------------------------------


async def test_queue_store_delivers_everything_in_order(serve_store: StoreServer) -> None:
    """Two clients of a QueueStore each receive all 2,000 messages, in order."""
    store = QueueStore()
    endpoints = await serve_store(store)
    async with (
        sse_client(endpoints.events) as (_, events_a),
        sse_client(endpoints.events) as (_, events_b),
    ):
        await wait_until(lambda: len(store.subscribers) == 2)
        for i in range(2000):
            store.submit(i)
            if i % 100 == 0:
                await asyncio.sleep(0)  # let the writers run, as a real app would
        got_a = await take(events_a, 2000)
        got_b = await take(events_b, 2000)
    assert [int(e.data) for e in got_a] == list(range(2000))
    assert [int(e.data) for e in got_b] == list(range(2000))
    assert store.stats.slow_disconnects == 0


async def test_drop_oldest_policy_keeps_the_newest(serve_store: StoreServer) -> None:
    """With ``overflow='drop_oldest'`` a lagging client loses the oldest, counted."""
    store = QueueStore(max_queue=5, overflow="drop_oldest")
    endpoints = await serve_store(store, sse={"heartbeat": 0})
    async with sse_client(endpoints.events) as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        for i in range(12):  # at once: the stream cannot take any before the 12th
            store.submit(i)
        received = await take(events, 5)
        store.submit("next")
        (after,) = await take(events, 1)
    assert [int(e.data) for e in received] == [7, 8, 9, 10, 11]
    assert [offset(e.id) for e in received] == [8, 9, 10, 11, 12]
    assert after.data == "next"
    assert store.stats.dropped == 7


async def test_data_store_sends_current_value_to_new_subscriber(serve_store: StoreServer) -> None:
    """A new DataStore subscriber gets the current value at once, then updates."""
    store = DataStore(initial_data={"temperature": 20})
    endpoints = await serve_store(store)
    async with sse_client(endpoints.events) as (_, events):
        (current,) = await take(events, 1)
        store.data = {"temperature": 21}
        (update,) = await take(events, 1)
    assert json.loads(current.data) == {"temperature": 20}
    assert json.loads(update.data) == {"temperature": 21}


async def test_data_store_without_value_sends_nothing_until_set(serve_store: StoreServer) -> None:
    """``DataStore()`` has no value yet: the first event is the first ``set_data``."""
    store = DataStore()
    endpoints = await serve_store(store)
    async with sse_client(endpoints.events) as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        store.set_data(0.5)
        (first,) = await take(events, 1)
    assert first.data == "0.5"


# -- options ----------------------------------------------------------------------------


async def test_heartbeat_comments_keep_an_idle_stream_alive(serve_store: StoreServer) -> None:
    """An idle stream gets a comment every ``heartbeat`` seconds, and no events."""
    endpoints = await serve_store(QueueStore(), sse={"heartbeat": 0.2})
    async with http_client() as client, client.stream("GET", endpoints.events) as response:
        received = b""
        deadline = time.monotonic() + 1.1
        async for chunk in response.aiter_raw():
            received += chunk
            if time.monotonic() > deadline:
                break
    beats = received.count(b": heartbeat\n\n")
    assert 3 <= beats <= 7, received
    assert b"data:" not in received


async def test_heartbeats_between_messages_dispatch_no_event(serve_store: StoreServer) -> None:
    """Heartbeats between two messages reach the client as no event: the next is the next."""
    store = QueueStore()
    endpoints = await serve_store(store, sse={"heartbeat": 0.1})
    async with sse_client(endpoints.events) as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit("before")
        (before,) = await take(events, 1)
        await asyncio.sleep(0.35)  # about three heartbeats
        store.submit("after")
        (after,) = await take(events, 1)
    assert (before.data, after.data) == ("before", "after")
    assert (offset(before.id), offset(after.id)) == (1, 2)


async def test_heartbeat_zero_is_off(serve_store: StoreServer) -> None:
    """``heartbeat=0`` writes nothing on an idle stream."""
    endpoints = await serve_store(QueueStore(), sse={"heartbeat": 0})
    async with http_client() as client, client.stream("GET", endpoints.events) as response:
        raw = response.aiter_raw()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(raw), 0.5)


async def test_retry_hint_is_sent_first(serve_store: StoreServer) -> None:
    """``retry=`` tells the client its reconnection delay when the stream opens."""
    store = QueueStore()
    endpoints = await serve_store(store, sse={"retry": 2500})
    async with http_client() as client, client.stream("GET", endpoints.events) as response:
        first = await asyncio.wait_for(anext(response.aiter_raw()), TIMEOUT)
    assert first == b"retry: 2500\n\n"  # before any message was published
    async with sse_client(endpoints.events) as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit("x")
        (event,) = await take(events, 1)
    assert event.retry == 2500


async def test_period_throttles_writes(serve_store: StoreServer) -> None:
    """With ``period``, writes are spaced out and queued messages arrive together."""
    store = QueueStore()
    endpoints = await serve_store(store, sse={"period": 0.3})
    chunks: list[tuple[float, bytes]] = []  # (arrival time, chunk), read as they come

    async def read_until_ten_events(response: httpx.Response) -> None:
        received = b""
        async for chunk in response.aiter_raw():
            chunks.append((time.monotonic(), chunk))
            received += chunk
            if received.count(b"data:") == 10:
                return

    async with http_client() as client, client.stream("GET", endpoints.events) as response:
        await wait_until(lambda: len(store.subscribers) == 1)
        reader = asyncio.ensure_future(read_until_ten_events(response))
        for i in range(10):
            store.submit(i)
            await asyncio.sleep(0.02)
        await asyncio.wait_for(reader, TIMEOUT)
    # 10 messages over 0.2 s, throttled to one write per 0.3 s: very few writes, in order.
    assert len(chunks) <= 3
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(chunks)]
    assert all(gap > 0.2 for gap in gaps), gaps
    received = b"".join(chunk for _, chunk in chunks)
    assert [line for line in received.split(b"\n") if line.startswith(b"data:")] == [
        f"data: {i}".encode() for i in range(10)
    ]


# -- requests that must not subscribe, and leaving ------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD"])
async def test_non_get_requests_get_a_json_405_and_register_nothing(
    serve_store: StoreServer, method: str
) -> None:
    """POST/PUT/DELETE/HEAD get 405, ``Allow: GET`` and a JSON error; nothing registers."""
    store = QueueStore()
    endpoints = await serve_store(store)
    async with http_client() as client:
        response = await client.request(method, endpoints.events)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.headers["content-type"] == "application/json"
    if method != "HEAD":  # a HEAD answer has no body
        assert response.json()["error"] == "method_not_allowed"
    assert len(store.subscribers) == 0
    store.submit("nobody listening")
    assert len(store.subscribers) == 0


async def test_disconnect_on_a_quiet_stream_deregisters_promptly(
    serve_store: StoreServer,
) -> None:
    """A client that leaves while nothing is published is removed promptly."""
    store = QueueStore()
    endpoints = await serve_store(store, sse={"heartbeat": 0})
    async with sse_client(endpoints.events):
        await wait_until(lambda: len(store.subscribers) == 1)
    await wait_until(lambda: len(store.subscribers) == 0, timeout=2)
    assert store.stats.published == 0


async def test_many_connect_disconnect_cycles_leak_nothing(serve_store: StoreServer) -> None:
    """100 clients coming and going leave no subscriber registered."""
    store = DataStore(initial_data=1)
    endpoints = await serve_store(store)

    async def visit() -> None:
        async with sse_client(endpoints.events) as (_, events):
            await take(events, 1)

    await asyncio.gather(*(visit() for _ in range(100)))
    await wait_until(lambda: len(store.subscribers) == 0, timeout=3)


async def test_slow_client_is_cut_and_others_keep_receiving(serve_store: StoreServer) -> None:
    """A QueueStore client that stops reading is disconnected; a reading one is not."""
    store = QueueStore(max_queue=20)
    endpoints = await serve_store(store)
    big = "x" * 65536
    _, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", endpoints.port), TIMEOUT
    )
    writer.write(b"GET /events HTTP/1.1\r\nHost: test\r\n\r\n")  # and never read again
    try:
        async with sse_client(endpoints.events) as (_, events):
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
    finally:
        writer.transport.abort()


# -- store.close() ----------------------------------------------------------------------


async def test_store_close_ends_streams_after_what_was_queued(serve_store: StoreServer) -> None:
    """``store.close()`` delivers what is queued, then ends the stream cleanly."""
    store = QueueStore()
    endpoints = await serve_store(store)
    async with sse_client(endpoints.events) as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit("last words")
        store.close()
        (last,) = await take(events, 1)
        # A clean end of the chunked body: no RemoteProtocolError, no hang.
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(events), TIMEOUT)
    assert last.data == "last words"
    assert len(store.subscribers) == 0


async def test_closed_store_answers_with_a_bare_204(serve_store: StoreServer) -> None:
    """After ``store.close()``, a GET gets 204 No Content (so EventSource stops)."""
    store = QueueStore()
    endpoints = await serve_store(store)
    store.close()
    async with http_client() as client:
        response = await client.get(endpoints.events)
    assert response.status_code == 204
    assert response.content == b""
    assert "content-length" not in response.headers  # RFC 9110 section 8.6
    assert len(store.subscribers) == 0
