"""WebSocket delivery as a client sees it, identical on both adapters.

Every test runs twice through the ``serve_store`` fixture: on Tornado's
``WebSocketSubscriber`` and on the ASGI ``WebSocketApp`` under uvicorn, read by the
real ``websockets`` client. Tornado-only behaviour is in ``test_tornado_handlers.py``,
ASGI-only behaviour in ``test_asgi_mounting.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK

from tests.clients import (
    TIMEOUT,
    Reading,
    expect_close,
    offset,
    recv,
    recv_text,
    ws_subscribed,
)
from tests.conftest import StoreServer, wait_until
from tornadose import UnencodableMessage
from tornadose.stores import DataStore, QueueStore

# -- frames -------------------------------------------------------------------------------


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
async def test_each_message_is_one_json_text_frame_with_data_and_id(
    serve_store: StoreServer, payload: Any, expected: Any
) -> None:
    """Each message is one JSON text frame ``{"data", "id"}`` with the payload exact."""
    store = QueueStore()
    endpoints = await serve_store(store)
    async with ws_subscribed(endpoints.ws, store) as ws:
        published = await store.submit(payload)
        frame = json.loads(await recv_text(ws))
    want = payload if isinstance(payload, str) else expected  # str: exact, CR included
    assert {"data", "id"} <= frame.keys()  # None arrives as JSON null, not a missing key
    assert frame["data"] == want
    assert frame["id"] == published.id == f"{store.epoch}-1"


async def test_frames_from_the_client_are_ignored(serve_store: StoreServer) -> None:
    """Text and binary frames sent by the client change nothing: delivery goes on."""
    store = QueueStore()
    endpoints = await serve_store(store)
    async with ws_subscribed(endpoints.ws, store) as ws:
        for i in range(3):
            await asyncio.wait_for(ws.send(f"hello {i}"), TIMEOUT)
            await asyncio.wait_for(ws.send(b"\x00\xff binary"), TIMEOUT)
            await asyncio.wait_for(ws.send(json.dumps({"data": "spoofed"})), TIMEOUT)
            store.submit({"n": i})
            # Nothing echoed, nothing injected: the next frame is the published message.
            assert (await recv(ws)).data == {"n": i}
        assert len(store.subscribers) == 1
    assert store.stats.published == 3


async def test_unencodable_message_is_refused_and_delivery_goes_on(
    serve_store: StoreServer,
) -> None:
    """submit(object()) raises UnencodableMessage, publishes nothing, and breaks no client."""
    store = QueueStore()
    endpoints = await serve_store(store)
    async with ws_subscribed(endpoints.ws, store) as ws:
        store.submit("before")
        with pytest.raises(UnencodableMessage):
            store.submit(object())
        store.submit("after")
        first, second = await recv(ws), await recv(ws)
        assert (first.data, second.data) == ("before", "after")
        assert (offset(first.id), offset(second.id)) == (1, 2)  # no id used by the bad one
        assert len(store.subscribers) == 1
    assert store.stats.published == 2


# -- store kinds --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "burst"),
    [
        pytest.param(500, 500, id="500-at-once"),
        # More than max_queue (1000) in all: the stream must keep up between bursts.
        pytest.param(2000, 100, id="2000-in-bursts-of-100"),
    ],
)
async def test_queue_store_delivers_everything_in_order(
    serve_store: StoreServer, count: int, burst: int
) -> None:
    """Two reading clients of a QueueStore each receive every message, in submit order."""
    store = QueueStore()
    endpoints = await serve_store(store)
    async with (
        ws_subscribed(endpoints.ws, store) as ws_a,
        ws_subscribed(endpoints.ws, store) as ws_b,
    ):
        for i in range(count):
            store.submit(i)
            if i % burst == burst - 1:
                await asyncio.sleep(0)  # let the writers run, as a real app would
        got_a = [await recv(ws_a) for _ in range(count)]
        got_b = [await recv(ws_b) for _ in range(count)]
    for got in (got_a, got_b):
        assert [envelope.data for envelope in got] == list(range(count))
        assert [offset(envelope.id) for envelope in got] == list(range(1, count + 1))
    assert store.stats.slow_disconnects == 0


async def test_data_store_sends_current_value_on_connect_then_updates(
    serve_store: StoreServer,
) -> None:
    """A new DataStore subscriber gets the current value at once, then each update."""
    store = DataStore(initial_data={"temperature": 20})
    endpoints = await serve_store(store)
    async with ws_subscribed(endpoints.ws, store) as ws:
        assert (await recv(ws)).data == {"temperature": 20}  # nothing was published yet
        store.data = {"temperature": 21}
        assert (await recv(ws)).data == {"temperature": 21}
    async with ws_subscribed(endpoints.ws, store) as late:
        assert (await recv(late)).data == {"temperature": 21}


# -- a long-lived connection, and leaving -------------------------------------------------


async def test_client_pinging_every_second_stays_connected_and_receives(
    serve_store: StoreServer,
) -> None:
    """A client pinging every second for 5 s gets every pong and every message meanwhile."""
    store = QueueStore()
    endpoints = await serve_store(store)
    async with ws_subscribed(endpoints.ws, store, ping_interval=None) as ws:
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
    await wait_until(lambda: len(store.subscribers) == 0)


async def test_client_close_is_answered_with_a_clean_close(serve_store: StoreServer) -> None:
    """A client closing normally sees the server's 1000 close frame, not an error."""
    store = QueueStore()
    endpoints = await serve_store(store)
    async with ws_subscribed(endpoints.ws, store) as ws:
        await asyncio.wait_for(ws.close(), TIMEOUT)
        assert ws.close_code == 1000  # the code of the close frame the server sent back
        with pytest.raises(ConnectionClosedOK):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    await wait_until(lambda: len(store.subscribers) == 0)


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_disconnect_on_a_quiet_store_deregisters_promptly(
    serve_store: StoreServer, how: str
) -> None:
    """A client that leaves (cleanly or by dropping TCP) is deregistered with nothing published."""
    store = QueueStore()
    endpoints = await serve_store(store)
    async with ws_subscribed(endpoints.ws, store) as ws:
        if how == "close":
            await asyncio.wait_for(ws.close(), TIMEOUT)
        else:
            ws.transport.abort()  # no close frame: the TCP connection just goes away
        await wait_until(lambda: len(store.subscribers) == 0, timeout=2)
    assert store.stats.published == 0


async def test_many_connect_disconnect_cycles_leak_nothing(serve_store: StoreServer) -> None:
    """100 clients coming and going leave no subscriber registered."""
    store = DataStore(initial_data=1)
    endpoints = await serve_store(store)

    async def visit() -> None:
        async with connect(endpoints.ws, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
            assert (await recv(ws)).data == 1

    await asyncio.gather(*(visit() for _ in range(100)))
    await wait_until(lambda: len(store.subscribers) == 0, timeout=3)


async def test_plain_get_to_the_websocket_route_gets_400_and_registers_nothing(
    serve_store: StoreServer,
) -> None:
    """A non-upgrade GET to the WebSocket route gets 400 and leaves no subscriber behind."""
    store = QueueStore()
    endpoints = await serve_store(store)
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
        response = await client.get(endpoints.base + "/ws")
    assert response.status_code == 400
    assert len(store.subscribers) == 0
    store.submit("kept for the next real subscriber")
    assert len(store.subscribers) == 0


# -- slow consumers and store.close() ---------------------------------------------------


async def test_slow_consumer_is_cut_with_4001_while_a_reading_client_keeps_receiving(
    serve_store: StoreServer,
) -> None:
    """A client that never reads is closed with 4001; a reading client on the store goes on."""
    store = QueueStore(max_queue=5)
    endpoints = await serve_store(store)
    # Incompressible: uvicorn negotiates permessage-deflate, which would shrink
    # "x" * 65536 to a few hundred bytes, so the buffers would never fill.
    pad = base64.b64encode(os.urandom(49152)).decode()  # 64 KiB of text
    async with (
        ws_subscribed(endpoints.ws, store) as reader,
        # max_queue=1: the client stops reading the socket after one frame, so the
        # kernel buffers fill and the server's writes stall.
        ws_subscribed(endpoints.ws, store, max_queue=1, max_size=None) as slow,
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

        # The slow client now reads: what it got is a gap-free prefix, then the close
        # frame with the slow-consumer code (it sits behind the data already buffered).
        got = [envelope.data["n"] for envelope in await expect_close(slow)]
        assert got == list(range(len(got)))
        assert len(got) < sent
        assert slow.close_code == 4001
        assert slow.close_reason == "slow consumer"

    await wait_until(lambda: len(store.subscribers) == 0)
    assert store.stats.slow_disconnects == 1


async def test_store_close_closes_clients_with_1001(serve_store: StoreServer) -> None:
    """Closing the store delivers what is queued, then closes clients with 1001; later ones too."""
    store = QueueStore()
    endpoints = await serve_store(store)
    async with ws_subscribed(endpoints.ws, store) as ws:
        store.submit("last words")
        store.close()
        assert [envelope.data for envelope in await expect_close(ws)] == ["last words"]
        assert ws.close_code == 1001
        assert ws.close_reason == "store closed"
    assert len(store.subscribers) == 0

    async with connect(endpoints.ws, open_timeout=TIMEOUT, close_timeout=TIMEOUT) as late:
        assert await expect_close(late) == []
        assert late.close_code == 1001
    assert len(store.subscribers) == 0
