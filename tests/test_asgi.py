"""The ASGI adapter on a real uvicorn server, read by real clients.

Every test here mirrors one of ``test_tornado_sse.py`` / ``test_tornado_websocket.py``:
the ASGI apps must behave, as seen by a client, exactly like the Tornado handlers.
The apps are served bare by uvicorn, then mounted in Starlette and FastAPI.

Mounting in FastAPI: the apps are plain ASGI apps, not FastAPI endpoints, so they
are not declared with ``@app.get``/``@app.websocket``. What works (tested below):

* ``app.mount("/ch", ChannelsApp(channels))``, as in Starlette;
* ``app.add_route("/events", EventSourceApp(store))``,
  ``app.add_route("/publish", PublishApp(store), methods=["POST"])`` and
  ``app.router.add_websocket_route("/ws", WebSocketApp(store))``: Starlette's route
  methods, which FastAPI inherits, take any ASGI app (an object that is not a plain
  function) as endpoint. Type checkers complain (the annotation says "request
  handler"), but it works. ``FastAPI`` itself has no ``add_websocket_route`` (it is
  only on ``app.router``);
* ``app.router.routes.append(Route(...))`` / ``WebSocketRoute(...)``, with the same
  Starlette route objects as in a Starlette app.

Without ``methods``, a route passes every method on to the app, which then answers
``405`` itself (with ``Allow: GET``), exactly like the Tornado handler.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount, Route, WebSocketRoute
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK

from adapters.asgi import ChannelsApp, EventSourceApp, PublishApp, WebSocketApp
from tests.clients import (
    TIMEOUT,
    Reading,
    expect_close,
    offset,
    recv,
    recv_text,
    sse_client,
    take,
    ws_subscribed,
)
from tests.conftest import UvicornStarter, wait_until
from tornadose.channels import Channels
from tornadose.stores import BaseStore, DataStore, QueueStore


def ws_url(base: str) -> str:
    """The ``ws://`` form of an ``http://`` URL."""
    return base.replace("http://", "ws://", 1)


async def serve_sse(uvicorn_server: UvicornStarter, store: BaseStore, **options: Any) -> str:
    """Serve ``EventSourceApp(store, **options)`` on a fresh uvicorn; return its URL."""
    return await uvicorn_server(EventSourceApp(store, **options)) + "/events"


async def serve_ws(uvicorn_server: UvicornStarter, store: BaseStore, **options: Any) -> str:
    """Serve ``WebSocketApp(store, **options)`` on a fresh uvicorn; return its ``ws://`` URL."""
    return ws_url(await uvicorn_server(WebSocketApp(store, **options))) + "/ws"


def http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=TIMEOUT, trust_env=False)


# -- SSE: headers and payloads ----------------------------------------------------------


async def test_sse_headers_are_sent_at_once_on_a_quiet_stream(
    uvicorn_server: UvicornStarter,
) -> None:
    """A client sees the SSE headers immediately, before any message exists."""
    url = await serve_sse(uvicorn_server, QueueStore())
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
        pytest.param(None, "null", id="none"),
    ],
)
async def test_sse_payloads_arrive_intact(
    uvicorn_server: UvicornStarter, payload: Any, expected_data: str | None
) -> None:
    """Every kind of payload is received exactly over SSE: str as is, the rest as JSON."""
    store = QueueStore()
    url = await serve_sse(uvicorn_server, store)
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


async def test_sse_events_carry_ids_and_event_names(uvicorn_server: UvicornStarter) -> None:
    """Each SSE event has the store's id; ``submit(event=...)`` names the event type."""
    store = QueueStore()
    url = await serve_sse(uvicorn_server, store)
    async with sse_client(url) as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit("a")
        published = await store.submit("b", event="update")
        first, second = await take(events, 2)
    assert first.id == f"{store.epoch}-1"
    assert second.id == published.id == f"{store.epoch}-2"
    assert second.event == "update"


# -- WebSocket: frames ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param({"a": 1, "b": [1, 2], "c": None}, {"a": 1, "b": [1, 2], "c": None}, id="dict"),
        pytest.param("line one\nline two\r\nline three\rend", None, id="str-with-newlines"),
        pytest.param("héllo ✓ 日本語 🌪", None, id="non-ascii"),
        pytest.param(Reading(sensor="t1", value=1.5), {"sensor": "t1", "value": 1.5}, id="model"),
        pytest.param(None, None, id="none"),
    ],
)
async def test_websocket_payloads_arrive_intact_with_ids(
    uvicorn_server: UvicornStarter, payload: Any, expected: Any
) -> None:
    """Each message is one JSON text frame ``{"data", "id"}`` with the payload exact."""
    store = QueueStore()
    url = await serve_ws(uvicorn_server, store)
    async with ws_subscribed(url, store) as ws:
        published = await store.submit(payload)
        frame = json.loads(await recv_text(ws))
    want = payload if isinstance(payload, str) else expected  # str: exact, CR included
    assert frame["data"] == want
    assert "data" in frame  # None arrives as JSON null, not as a missing key
    assert frame["id"] == published.id == f"{store.epoch}-1"


async def test_websocket_frames_from_the_client_are_ignored(
    uvicorn_server: UvicornStarter,
) -> None:
    """Text and binary frames sent by the client change nothing: delivery goes on."""
    store = QueueStore()
    url = await serve_ws(uvicorn_server, store)
    async with ws_subscribed(url, store) as ws:
        for i in range(3):
            await asyncio.wait_for(ws.send(f"hello {i}"), TIMEOUT)
            await asyncio.wait_for(ws.send(b"\x00\xff binary"), TIMEOUT)
            store.submit({"n": i})
            assert (await recv(ws)).data == {"n": i}
        assert len(store.subscribers) == 1
    assert store.stats.published == 3


# -- store kinds ------------------------------------------------------------------------


async def test_sse_queue_store_delivers_everything_in_order(
    uvicorn_server: UvicornStarter,
) -> None:
    """Two SSE clients of a QueueStore each receive all 2,000 messages, in order."""
    store = QueueStore()
    url = await serve_sse(uvicorn_server, store)
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
    assert store.stats.slow_disconnects == 0


async def test_websocket_queue_store_delivers_everything_in_order(
    uvicorn_server: UvicornStarter,
) -> None:
    """Two WebSocket clients of a QueueStore each receive all 2,000 messages, in order."""
    store = QueueStore()
    url = await serve_ws(uvicorn_server, store)
    async with ws_subscribed(url, store) as ws_a, ws_subscribed(url, store) as ws_b:
        for i in range(2000):
            store.submit(i)
            if i % 100 == 0:
                await asyncio.sleep(0)
        got_a = [await recv(ws_a) for _ in range(2000)]
        got_b = [await recv(ws_b) for _ in range(2000)]
    for got in (got_a, got_b):
        assert [envelope.data for envelope in got] == list(range(2000))
        assert [offset(envelope.id) for envelope in got] == list(range(1, 2001))
    assert store.stats.slow_disconnects == 0


async def test_sse_data_store_sends_current_value_on_connect(
    uvicorn_server: UvicornStarter,
) -> None:
    """A new SSE client of a DataStore gets the current value at once, then updates."""
    store = DataStore(initial_data={"temperature": 20})
    url = await serve_sse(uvicorn_server, store)
    async with sse_client(url) as (_, events):
        (current,) = await take(events, 1)
        store.data = {"temperature": 21}
        (update,) = await take(events, 1)
    assert json.loads(current.data) == {"temperature": 20}
    assert json.loads(update.data) == {"temperature": 21}


async def test_websocket_data_store_sends_current_value_on_connect(
    uvicorn_server: UvicornStarter,
) -> None:
    """A new WebSocket client of a DataStore gets the current value at once, then updates."""
    store = DataStore(initial_data={"temperature": 20})
    url = await serve_ws(uvicorn_server, store)
    async with ws_subscribed(url, store) as ws:
        assert (await recv(ws)).data == {"temperature": 20}
        store.data = {"temperature": 21}
        assert (await recv(ws)).data == {"temperature": 21}
    async with ws_subscribed(url, store) as late:
        assert (await recv(late)).data == {"temperature": 21}


# -- SSE options ------------------------------------------------------------------------


async def test_sse_heartbeat_comments_keep_an_idle_stream_alive(
    uvicorn_server: UvicornStarter,
) -> None:
    """An idle stream gets a comment every ``heartbeat`` seconds, and no events."""
    url = await serve_sse(uvicorn_server, QueueStore(), heartbeat=0.2)
    async with http_client() as client, client.stream("GET", url) as response:
        received = b""
        deadline = time.monotonic() + 1.1
        async for chunk in response.aiter_raw():
            received += chunk
            if time.monotonic() > deadline:
                break
    beats = received.count(b": heartbeat\n\n")
    assert 3 <= beats <= 7, received
    assert b"data:" not in received


async def test_sse_heartbeat_zero_is_off(uvicorn_server: UvicornStarter) -> None:
    """``heartbeat=0`` writes nothing on an idle stream."""
    url = await serve_sse(uvicorn_server, QueueStore(), heartbeat=0)
    async with http_client() as client, client.stream("GET", url) as response:
        raw = response.aiter_raw()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(anext(raw), 0.5)


async def test_sse_retry_hint_is_sent_first(uvicorn_server: UvicornStarter) -> None:
    """``retry=`` tells the client its reconnection delay when the stream opens."""
    store = QueueStore()
    url = await serve_sse(uvicorn_server, store, retry=2500)
    async with http_client() as client, client.stream("GET", url) as response:
        first = await asyncio.wait_for(anext(response.aiter_raw()), TIMEOUT)
    assert first == b"retry: 2500\n\n"  # before any message was published
    async with sse_client(url) as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit("x")
        (event,) = await take(events, 1)
    assert event.retry == 2500


async def test_sse_period_throttles_writes(uvicorn_server: UvicornStarter) -> None:
    """With ``period``, writes are spaced out and queued messages arrive together."""
    store = QueueStore()
    url = await serve_sse(uvicorn_server, store, period=0.3)
    chunks: list[tuple[float, bytes]] = []  # (arrival time, chunk), read as they come

    async def read_until_ten_events(response: httpx.Response) -> None:
        received = b""
        async for chunk in response.aiter_raw():
            chunks.append((time.monotonic(), chunk))
            received += chunk
            if received.count(b"data:") == 10:
                return

    async with http_client() as client, client.stream("GET", url) as response:
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


# -- requests that must not subscribe ---------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD"])
async def test_sse_non_get_requests_get_405_and_register_nothing(
    uvicorn_server: UvicornStarter, method: str
) -> None:
    """POST/PUT/DELETE/HEAD to the SSE app get 405 (``Allow: GET``) and leave no subscriber."""
    store = QueueStore()
    url = await serve_sse(uvicorn_server, store)
    async with http_client() as client:
        response = await client.request(method, url)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert len(store.subscribers) == 0
    store.submit("nobody listening")
    assert len(store.subscribers) == 0


async def test_plain_get_to_websocket_app_gets_400_and_registers_nothing(
    uvicorn_server: UvicornStarter,
) -> None:
    """A non-upgrade GET to the WebSocket app gets 400 and leaves no subscriber behind."""
    store = QueueStore()
    url = (await serve_ws(uvicorn_server, store)).replace("ws://", "http://", 1)
    async with http_client() as client:
        response = await client.get(url)
    assert response.status_code == 400
    assert len(store.subscribers) == 0
    store.submit("kept for the next real subscriber")
    assert len(store.subscribers) == 0


# -- disconnects ------------------------------------------------------------------------


async def test_sse_disconnect_on_a_quiet_stream_deregisters_promptly(
    uvicorn_server: UvicornStarter,
) -> None:
    """An SSE client that leaves while nothing is published is removed promptly."""
    store = QueueStore()
    url = await serve_sse(uvicorn_server, store, heartbeat=0)
    async with sse_client(url):
        await wait_until(lambda: len(store.subscribers) == 1)
    await wait_until(lambda: len(store.subscribers) == 0, timeout=2)
    assert store.stats.published == 0


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_websocket_disconnect_on_a_quiet_store_deregisters_promptly(
    uvicorn_server: UvicornStarter, how: str
) -> None:
    """A WebSocket client that leaves (cleanly or by dropping TCP) is removed promptly."""
    store = QueueStore()
    url = await serve_ws(uvicorn_server, store)
    async with ws_subscribed(url, store) as ws:
        if how == "close":
            await asyncio.wait_for(ws.close(), TIMEOUT)
            assert ws.close_code == 1000  # the server answered the close frame
        else:
            ws.transport.abort()  # no close frame: the TCP connection just goes away
        await wait_until(lambda: len(store.subscribers) == 0, timeout=2)
    assert store.stats.published == 0


async def test_sse_many_connect_disconnect_cycles_leak_nothing(
    uvicorn_server: UvicornStarter,
) -> None:
    """100 SSE clients coming and going leave no subscriber registered."""
    store = DataStore(initial_data=1)
    url = await serve_sse(uvicorn_server, store)

    async def visit() -> None:
        async with sse_client(url) as (_, events):
            await take(events, 1)

    await asyncio.gather(*(visit() for _ in range(100)))
    await wait_until(lambda: len(store.subscribers) == 0, timeout=3)


async def test_websocket_many_connect_disconnect_cycles_leak_nothing(
    uvicorn_server: UvicornStarter,
) -> None:
    """100 WebSocket clients coming and going leave no subscriber registered."""
    store = DataStore(initial_data=1)
    url = await serve_ws(uvicorn_server, store)

    async def visit() -> None:
        async with connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
            assert (await recv(ws)).data == 1

    await asyncio.gather(*(visit() for _ in range(100)))
    await wait_until(lambda: len(store.subscribers) == 0, timeout=3)


# -- slow consumers ---------------------------------------------------------------------


async def test_sse_slow_client_is_cut_and_others_keep_receiving(
    uvicorn_server: UvicornStarter,
) -> None:
    """A QueueStore SSE client that stops reading is disconnected; a reading one is not."""
    store = QueueStore(max_queue=20)
    url = await serve_sse(uvicorn_server, store)
    big = "x" * 65536
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /events HTTP/1.1\r\nHost: test\r\n\r\n")  # and never read again
    try:
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
    finally:
        writer.transport.abort()


async def test_websocket_slow_client_is_cut_with_4001_and_others_keep_receiving(
    uvicorn_server: UvicornStarter,
) -> None:
    """A WebSocket client that never reads is closed with 4001; a reading client goes on."""
    store = QueueStore(max_queue=5)
    url = await serve_ws(uvicorn_server, store)
    # Incompressible: uvicorn (unlike Tornado) negotiates permessage-deflate, which
    # shrinks "x" * 65536 to a few hundred bytes, so buffers would never fill.
    pad = base64.b64encode(os.urandom(49152)).decode()  # 64 KiB of text
    async with (
        ws_subscribed(url, store) as reader,
        # max_queue=1: the client stops reading the socket after one frame, so the
        # kernel buffers fill and the server's writes stall.
        ws_subscribed(url, store, max_queue=1, max_size=None) as slow,
    ):
        sent = 0
        # Lockstep with the reader, so only the slow client can fall behind.
        while store.stats.slow_disconnects == 0 and sent < 2000:
            store.submit({"n": sent, "pad": pad})
            assert (await recv(reader)).data["n"] == sent
            sent += 1
        assert store.stats.slow_disconnects == 1, "2000 x 64 KiB never filled the buffers"
        await wait_until(lambda: len(store.subscribers) == 1)  # only the reader is left

        for n in range(sent, sent + 10):
            store.submit({"n": n, "pad": pad})
            assert (await recv(reader)).data["n"] == n

        # The slow client now reads: a gap-free prefix, then the slow-consumer close
        # frame (it was queued behind the data already buffered).
        got = [envelope.data["n"] for envelope in await expect_close(slow)]
        assert got == list(range(len(got)))
        assert len(got) < sent
        assert slow.close_code == 4001
        assert slow.close_reason == "slow consumer"

    await wait_until(lambda: len(store.subscribers) == 0)
    assert store.stats.slow_disconnects == 1


# -- store.close() ----------------------------------------------------------------------


async def test_store_close_ends_sse_streams_after_what_was_queued(
    uvicorn_server: UvicornStarter,
) -> None:
    """``store.close()`` delivers what is queued, then ends the SSE stream cleanly."""
    store = QueueStore()
    url = await serve_sse(uvicorn_server, store)
    async with sse_client(url) as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit("last words")
        store.close()
        (last,) = await take(events, 1)
        # A clean end of the chunked body: no RemoteProtocolError, no hang.
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(events), TIMEOUT)
    assert last.data == "last words"
    assert len(store.subscribers) == 0


async def test_closed_store_answers_sse_requests_with_a_bare_204(
    uvicorn_server: UvicornStarter,
) -> None:
    """After ``store.close()``, an SSE GET gets 204 No Content (so EventSource stops)."""
    store = QueueStore()
    url = await serve_sse(uvicorn_server, store)
    store.close()
    async with http_client() as client:
        response = await client.get(url)
    assert response.status_code == 204
    assert response.content == b""
    # RFC 9110 section 8.6: no Content-Length in a 204 (Tornado sends none either).
    assert "content-length" not in response.headers
    assert len(store.subscribers) == 0


async def test_store_close_closes_websockets_with_1001(uvicorn_server: UvicornStarter) -> None:
    """Closing the store delivers what is queued, then closes with 1001; later clients too."""
    store = QueueStore()
    url = await serve_ws(uvicorn_server, store)
    async with ws_subscribed(url, store) as ws:
        store.submit("last words")
        store.close()
        assert [envelope.data for envelope in await expect_close(ws)] == ["last words"]
        assert ws.close_code == 1001
        assert ws.close_reason == "store closed"
    assert len(store.subscribers) == 0

    async with connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as late:
        assert await expect_close(late) == []
        assert late.close_code == 1001
    assert len(store.subscribers) == 0


# -- long-lived WebSocket ---------------------------------------------------------------


async def test_websocket_client_pinging_every_second_stays_connected(
    uvicorn_server: UvicornStarter,
) -> None:
    """A client pinging every second for 5 s gets every pong and every message meanwhile."""
    store = QueueStore()
    url = await serve_ws(uvicorn_server, store)
    async with ws_subscribed(url, store, ping_interval=None) as ws:
        for second in range(5):
            pong = await ws.ping()
            await asyncio.wait_for(pong, TIMEOUT)
            store.submit({"tick": second})
            assert (await recv(ws)).data == {"tick": second}
            await asyncio.sleep(1)
        pong = await ws.ping()
        await asyncio.wait_for(pong, TIMEOUT)
        store.submit("still here")
        assert (await recv(ws)).data == "still here"
        await asyncio.wait_for(ws.close(), TIMEOUT)
        assert ws.close_code == 1000
        with pytest.raises(ConnectionClosedOK):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    await wait_until(lambda: len(store.subscribers) == 0)


# -- mounted in Starlette and FastAPI ---------------------------------------------------

#: (SSE path, WebSocket path, publish path) served by every app built below.
DIRECT = ("/events", "/ws", "/publish")
CHANNEL = ("/ch/news/events", "/ch/news/ws", "/ch/news/publish")


def starlette_app(store: BaseStore, channels: Channels) -> Starlette:
    return Starlette(
        routes=[
            Route("/events", EventSourceApp(store)),
            WebSocketRoute("/ws", WebSocketApp(store)),
            Route("/publish", PublishApp(store), methods=["POST"]),
            Mount("/ch", ChannelsApp(channels)),
        ]
    )


def fastapi_app_with_add_route(store: BaseStore, channels: Channels) -> FastAPI:
    app = FastAPI()
    app.add_route("/events", EventSourceApp(store))  # type: ignore[arg-type]
    app.router.add_websocket_route("/ws", WebSocketApp(store))  # type: ignore[arg-type]
    app.add_route("/publish", PublishApp(store), methods=["POST"])  # type: ignore[arg-type]
    app.mount("/ch", ChannelsApp(channels))
    return app


def fastapi_app_with_route_objects(store: BaseStore, channels: Channels) -> FastAPI:
    app = FastAPI()
    app.router.routes.append(Route("/events", EventSourceApp(store)))
    app.router.routes.append(WebSocketRoute("/ws", WebSocketApp(store)))
    app.router.routes.append(Route("/publish", PublishApp(store), methods=["POST"]))
    app.mount("/ch", ChannelsApp(channels))
    return app


AppFactory = Callable[[BaseStore, Channels], Any]


@pytest.mark.parametrize(
    "make_app",
    [starlette_app, fastapi_app_with_add_route, fastapi_app_with_route_objects],
    ids=["starlette", "fastapi-add_route", "fastapi-routes.append"],
)
@pytest.mark.parametrize("paths", [DIRECT, CHANNEL], ids=["apps", "channels"])
async def test_mounted_apps_serve_sse_websocket_and_publish(
    uvicorn_server: UvicornStarter, make_app: AppFactory, paths: tuple[str, str, str]
) -> None:
    """Mounted in Starlette/FastAPI, a POSTed message reaches an SSE and a WebSocket client."""
    store = QueueStore()
    channels = Channels()
    channels.add("news")
    app = make_app(store, channels)
    target = store if paths is DIRECT else channels["news"].store
    base = await uvicorn_server(app)
    events_path, ws_path, publish_path = paths

    async with (
        sse_client(base + events_path) as (source, events),
        ws_subscribed(ws_url(base) + ws_path, target) as ws,
    ):
        assert source.response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert len(target.subscribers) == 2
        async with http_client() as client:
            response = await client.post(base + publish_path, json={"n": 1, "text": "a\nb"})
            refused = await client.post(base + publish_path, content=b"{", headers=JSON)
        (event,) = await take(events, 1)
        frame = await recv(ws)
    assert response.status_code == 202
    message_id = response.json()["id"]
    assert json.loads(event.data) == {"n": 1, "text": "a\nb"}
    assert event.id == message_id
    assert frame.data == {"n": 1, "text": "a\nb"}
    assert frame.id == message_id
    assert refused.status_code == 400
    assert refused.json()["error"] == "malformed_json"
    await wait_until(lambda: len(target.subscribers) == 0)
    assert target.stats.published == 1


JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    "make_app",
    [starlette_app, fastapi_app_with_add_route, fastapi_app_with_route_objects],
    ids=["starlette", "fastapi-add_route", "fastapi-routes.append"],
)
async def test_mounted_apps_refuse_what_they_refuse_bare(
    uvicorn_server: UvicornStarter, make_app: AppFactory
) -> None:
    """Mounted, a POST to SSE gets 405, a plain GET to the WebSocket route and an unknown
    channel get 404, and nothing registers."""
    store = QueueStore()
    channels = Channels()
    channels.add("news")
    base = await uvicorn_server(make_app(store, channels))
    async with http_client() as client:
        post_to_events = await client.post(base + "/events")
        get_ws_route = await client.get(base + "/ws")
        unknown = await client.get(base + "/ch/nope/events")
    assert post_to_events.status_code == 405
    assert post_to_events.headers["allow"] == "GET"
    # Starlette routes a WebSocketRoute for WebSocket requests only: a plain GET never
    # reaches the app (whose own answer would be 400), so nothing can register.
    assert get_ws_route.status_code == 404
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown_channel"
    assert len(store.subscribers) == 0
