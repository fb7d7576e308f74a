"""The Python client on several channels and patterns: ``subscribe_many`` reads one
connection, tags each event with its channel, and resumes every channel with the
cursor, by itself after a dropped connection and from a saved cursor. Both adapters,
both transports (memory backend; the cursor's Redis behaviour is in
``test_multichannel.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest

import tornadose.client
from tests.conftest import TornadoStarter, UvicornStarter, wait_until
from tornadose.adapters.asgi import ChannelsApp
from tornadose.adapters.tornado import channel_handlers
from tornadose.core.multiplex import Multiplex
from tornadose.http.channels import Channels

pytestmark = pytest.mark.timeout(30)


class Reading(pydantic.BaseModel):
    n: int


async def serve(
    adapter: str, tornado_server: TornadoStarter, uvicorn_server: UvicornStarter
) -> tuple[Channels, str]:
    channels = Channels(prefix="/live")
    for name in ("a", "b", "sensors.1", "sensors.2"):
        channels.add(name, schema=Reading)
    if adapter == "tornado":
        base = await tornado_server(channel_handlers(channels))
    else:
        base = await uvicorn_server(ChannelsApp(channels))
    return channels, base + "/live"


async def take(stream: tornadose.client.EventStream[Any], count: int) -> list[Any]:
    events = []
    async with asyncio.timeout(10):
        while len(events) < count:
            events.append(await anext(stream))
    return events


@pytest.mark.parametrize("transport", ["sse", "websocket"])
@pytest.mark.parametrize("adapter", ["tornado", "asgi"])
async def test_subscribe_many_reads_tags_and_resumes_every_channel(
    adapter: str, transport: str, tornado_server: TornadoStarter, uvicorn_server: UvicornStarter
) -> None:
    channels, base = await serve(adapter, tornado_server, uvicorn_server)
    stores = {c.name: c.store for c in channels}
    wanted = ("a", "sensors.1", "sensors.2")
    stream = tornadose.client.subscribe_many(
        base, channels=["a"], patterns=["sensors.*"], transport=transport, schema=Reading
    )  # type: ignore[call-overload]
    async with stream:
        (opened,) = await take(stream, 1)
        assert isinstance(opened, tornadose.client.ControlEvent)
        assert opened.event == "tornadose.subscribed"
        assert opened.channel is None
        assert sorted(opened.data["channels"]) == sorted(wanted)
        for n in range(3):
            for store in stores.values():
                store.submit({"n": n})
        first = await take(stream, 9)
        assert {(e.channel, e.data.n) for e in first} == {(c, n) for c in wanted for n in range(3)}
        assert all(isinstance(e.data, Reading) and e.channel_id for e in first)
        # The server drops the connection; the client comes back with its cursor.
        (multiplex,) = [key for key in stores["a"].subscribers if isinstance(key, Multiplex)]
        stores["a"].deregister(multiplex)
        await wait_until(lambda: multiplex not in stores["a"].subscribers)
        for n in range(3, 5):
            for store in stores.values():
                store.submit({"n": n})
        after = await take(stream, 1 + 3 + 6)  # subscribed, a resumed per channel, 6
        resumed = [e for e in after if e.event == "tornadose.resumed"]
        assert sorted(e.channel for e in resumed) == sorted(wanted)
        messages = [(e.channel, e.data.n) for e in after if e.event is None]
        assert sorted(messages) == sorted((c, n) for c in wanted for n in (3, 4))
        assert stream.reconnects == 1
        saved = after[-1].id
    for store in stores.values():
        store.submit({"n": 5})
    again = tornadose.client.subscribe_many(
        base, channels=["a"], patterns=["sensors.*"], transport=transport, last_event_id=saved
    )
    async with again:
        events = await take(again, 1 + 3 + 3)  # subscribed, 3 resumed, 3 messages
    assert sorted((e.channel, e.data["n"]) for e in events if e.event is None) == [
        (c, 5) for c in sorted(wanted)
    ]


async def test_subscribe_many_raises_on_a_bad_request(
    tornado_server: TornadoStarter, uvicorn_server: UvicornStarter
) -> None:
    _, base = await serve("tornado", tornado_server, uvicorn_server)
    stream = tornadose.client.subscribe_many(base, patterns=["bad*pattern"])
    with pytest.raises(tornadose.client.ClientError) as raised:
        async with stream:
            await anext(stream)
    assert raised.value.status == 400
    assert "invalid_pattern" in raised.value.body
    with pytest.raises(ValueError, match="at least one"):
        tornadose.client.subscribe_many(base)
