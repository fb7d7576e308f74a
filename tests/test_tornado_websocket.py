"""WebSocketSubscriber on a real Tornado server, read by the real ``websockets`` client."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK

from tests.clients import Reading, expect_close, offset, recv, recv_text, ws_subscribed
from tests.conftest import TornadoStarter, wait_until
from tornadose import UnencodableMessage
from tornadose.handlers import WebSocketSubscriber
from tornadose.stores import BaseStore, DataStore, QueueStore


async def serve(tornado_server: TornadoStarter, store: BaseStore) -> str:
    """Mount ``store`` at ``/ws`` on a fresh server; return the ``ws://`` URL."""
    base = await tornado_server([(r"/ws", WebSocketSubscriber, {"store": store})])
    return base.replace("http://", "ws://", 1) + "/ws"


# -- 1. frame shape -------------------------------------------------------------------


async def test_each_message_is_one_json_text_frame_with_data_and_id(
    tornado_server: TornadoStarter,
) -> None:
    """Dicts, multi-line and non-ASCII text and models each arrive intact in their own frame."""
    store = QueueStore()
    url = await serve(tornado_server, store)
    payloads: list[Any] = [
        {"a": 1, "b": [1, 2], "c": None},
        "a\nb\r\nc",
        "héllo ✓ 日本",
        Reading(sensor="t1", value=1.5),
    ]
    expected = [
        {"a": 1, "b": [1, 2], "c": None},
        "a\nb\r\nc",
        "héllo ✓ 日本",
        {"sensor": "t1", "value": 1.5},
    ]
    async with ws_subscribed(url, store) as ws:
        for payload in payloads:
            store.submit(payload)
        frames = [await recv_text(ws) for _ in payloads]

    objects = [json.loads(frame) for frame in frames]
    assert all(isinstance(obj, dict) and {"data", "id"} <= obj.keys() for obj in objects)
    assert [obj["data"] for obj in objects] == expected
    ids = [obj["id"] for obj in objects]
    assert len({message_id.rpartition("-")[0] for message_id in ids}) == 1  # one epoch
    offsets = [offset(message_id) for message_id in ids]
    assert all(a < b for a, b in itertools.pairwise(offsets))


# -- 2. QueueStore order --------------------------------------------------------------


async def test_queue_store_delivers_every_message_in_submit_order(
    tornado_server: TornadoStarter,
) -> None:
    """500 messages from a QueueStore all arrive, in the order they were submitted."""
    store = QueueStore()
    url = await serve(tornado_server, store)
    async with ws_subscribed(url, store) as ws:
        for i in range(500):
            store.submit({"n": i})
        received = [await recv(ws) for _ in range(500)]
    assert [envelope.data["n"] for envelope in received] == list(range(500))
    assert [offset(envelope.id) for envelope in received] == list(range(1, 501))


# -- 3. DataStore current value -------------------------------------------------------


async def test_data_store_sends_current_value_on_connect_then_updates(
    tornado_server: TornadoStarter,
) -> None:
    """A new DataStore subscriber gets the current value at once, then each update."""
    store = DataStore(initial_data={"temperature": 20})
    url = await serve(tornado_server, store)
    async with ws_subscribed(url, store) as ws:
        assert (await recv(ws)).data == {"temperature": 20}  # nothing was published yet
        store.data = {"temperature": 21}
        assert (await recv(ws)).data == {"temperature": 21}
    async with ws_subscribed(url, store) as late:
        assert (await recv(late)).data == {"temperature": 21}


# -- 4. pings and clean close ---------------------------------------------------------


async def test_client_pinging_every_second_stays_connected_and_receives(
    tornado_server: TornadoStarter,
) -> None:
    """A client pinging every second for 5 s gets every pong and every message meanwhile."""
    store = QueueStore()
    url = await serve(tornado_server, store)
    async with ws_subscribed(url, store, ping_interval=None) as ws:
        for second in range(5):
            pong = await ws.ping()
            await asyncio.wait_for(pong, 5)
            store.submit({"tick": second})
            assert (await recv(ws)).data == {"tick": second}
            await asyncio.sleep(1)
        pong = await ws.ping()
        await asyncio.wait_for(pong, 5)
        store.submit("still here")
        assert (await recv(ws)).data == "still here"
    assert len(store.subscribers) == 0


async def test_client_close_is_answered_with_a_clean_close(tornado_server: TornadoStarter) -> None:
    """A client closing normally sees the server's 1000 close frame, not an error."""
    store = QueueStore()
    url = await serve(tornado_server, store)
    async with ws_subscribed(url, store) as ws:
        await asyncio.wait_for(ws.close(), 5)
        assert ws.close_code == 1000  # the code of the close frame the server sent back
        with pytest.raises(ConnectionClosedOK):
            await asyncio.wait_for(ws.recv(), 5)
    await wait_until(lambda: len(store.subscribers) == 0)


# -- 5. nothing left registered -------------------------------------------------------


async def test_plain_get_to_websocket_route_registers_nothing(
    tornado_server: TornadoStarter,
) -> None:
    """A non-upgrade GET to the WebSocket route gets 400 and leaves no subscriber behind."""
    store = QueueStore()
    url = (await serve(tornado_server, store)).replace("ws://", "http://", 1)
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(url)
    assert response.status_code == 400
    assert len(store.subscribers) == 0
    store.submit("kept for the next real subscriber")
    assert len(store.subscribers) == 0


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_disconnect_on_a_quiet_store_deregisters_promptly(
    tornado_server: TornadoStarter, how: str
) -> None:
    """A client that leaves (cleanly or by dropping TCP) is deregistered with nothing published."""
    store = QueueStore()
    url = await serve(tornado_server, store)
    async with ws_subscribed(url, store) as ws:
        assert len(store.subscribers) == 1
        if how == "close":
            await asyncio.wait_for(ws.close(), 5)
        else:
            ws.transport.abort()  # no close frame: the TCP connection just goes away
        await wait_until(lambda: len(store.subscribers) == 0, timeout=2)
    assert store.stats.published == 0


# -- 6. slow consumer -----------------------------------------------------------------


async def test_slow_consumer_is_cut_off_while_a_reading_client_keeps_receiving(
    tornado_server: TornadoStarter,
) -> None:
    """A client that never reads is closed with 4001; a reading client on the store goes on."""
    store = QueueStore(max_queue=5)
    url = await serve(tornado_server, store)
    pad = "x" * 65536
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
        assert store.stats.slow_disconnects >= 1, "2000 x 64 KiB never filled the buffers"
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


# -- 7. store.close() -----------------------------------------------------------------


async def test_store_close_closes_clients_with_1001(tornado_server: TornadoStarter) -> None:
    """Closing the store delivers what is queued, then closes clients with 1001; later ones too."""
    store = QueueStore()
    url = await serve(tornado_server, store)
    async with ws_subscribed(url, store) as ws:
        store.submit("last words")
        store.close()
        assert [envelope.data for envelope in await expect_close(ws)] == ["last words"]
        assert ws.close_code == 1001
    assert len(store.subscribers) == 0

    async with connect(url, open_timeout=5, close_timeout=5) as late:
        assert await expect_close(late) == []
        assert late.close_code == 1001
    assert len(store.subscribers) == 0


# -- 8. client frames -----------------------------------------------------------------


async def test_frames_from_the_client_are_ignored(tornado_server: TornadoStarter) -> None:
    """Text and binary frames sent by the client change nothing: delivery goes on."""
    store = QueueStore()
    url = await serve(tornado_server, store)
    async with ws_subscribed(url, store) as ws:
        for i in range(3):
            await asyncio.wait_for(ws.send(f"hello {i}"), 5)
            await asyncio.wait_for(ws.send(b"\x00\xff binary"), 5)
            await asyncio.wait_for(ws.send(json.dumps({"data": "spoofed"})), 5)
            store.submit({"n": i})
            # Nothing echoed, nothing injected: the next frame is the published message.
            assert (await recv(ws)).data == {"n": i}
        assert len(store.subscribers) == 1
    assert store.stats.published == 3


# -- 9. unencodable messages ----------------------------------------------------------


async def test_unencodable_message_is_refused_and_delivery_goes_on(
    tornado_server: TornadoStarter,
) -> None:
    """submit(object()) raises UnencodableMessage, publishes nothing, and breaks no client."""
    store = QueueStore()
    url = await serve(tornado_server, store)
    async with ws_subscribed(url, store) as ws:
        store.submit("before")
        with pytest.raises(UnencodableMessage):
            store.submit(object())
        store.submit("after")
        first, second = await recv(ws), await recv(ws)
        assert (first.data, second.data) == ("before", "after")
        assert (offset(first.id), offset(second.id)) == (1, 2)  # no id used by the bad one
        assert len(store.subscribers) == 1
    assert store.stats.published == 2
