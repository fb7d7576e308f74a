"""Presence: subscriber counts per channel, served over HTTP by both adapters, in the
metrics, and across processes on Redis (a killed process stops counting within
``ttl + interval`` seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.clients import TIMEOUT
from tests.conftest import StartProgram, TornadoStarter, UvicornStarter, free_port, wait_until
from tornadose.adapters.asgi import ChannelsApp
from tornadose.adapters.tornado import channel_handlers
from tornadose.backends.redis.presence import RedisPresence
from tornadose.core.store import QueueStore
from tornadose.http.channels import Channels
from tornadose.http.presence import Presence

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def streams(url: str, count: int) -> AsyncIterator[None]:
    """``count`` open SSE connections to ``url`` (headers received: registered)."""
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(count):
            client = await stack.enter_async_context(
                httpx.AsyncClient(timeout=TIMEOUT, trust_env=False)
            )
            response = await stack.enter_async_context(client.stream("GET", url))
            assert response.status_code == 200
        yield


@pytest.mark.parametrize("adapter", ["tornado", "asgi"])
async def test_presence_counts_the_subscribers_of_this_process(
    adapter: str, tornado_server: TornadoStarter, uvicorn_server: UvicornStarter
) -> None:
    """Single-channel streams and multi-channel connections count once per channel,
    at ``/{name}/presence``, ``/_presence`` and in the metrics."""
    channels = Channels(prefix="/live")
    channels.add("a")
    channels.add("b")
    if adapter == "tornado":
        base = await tornado_server(channel_handlers(channels))
    else:
        base = await uvicorn_server(ChannelsApp(channels))
    live = base + "/live"
    async with (
        streams(f"{live}/a/events", 2),
        streams(f"{live}/_multi/events?channel=a&channel=b", 1),
        httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as http,
    ):
        one = (await http.get(f"{live}/a/presence")).json()
        assert one == {"channel": "a", "here": 3, "everywhere": 3}
        every = (await http.get(f"{live}/_presence")).json()
        assert every == {
            "channels": {"a": {"here": 3, "everywhere": 3}, "b": {"here": 1, "everywhere": 1}}
        }
        metrics = (await http.get(f"{live}/metrics")).text
        assert 'tornadose_presence_subscribers{store="a"} 3.0' in metrics
        assert (await http.post(f"{live}/a/presence")).status_code == 405
    await wait_until(lambda: not channels["a"].store.subscribers)


SERVER = """
import asyncio, sys
import tornado.web, uvicorn
from tornadose import Channels
from tornadose.adapters.asgi import ChannelsApp
from tornadose.adapters.tornado import channel_handlers

server, port, url, name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]


async def main() -> None:
    channels = Channels(redis_url=url, presence_ttl=2.0)
    channels.add(name)
    if server == "tornado":
        tornado.web.Application(channel_handlers(channels)).listen(port, "127.0.0.1")
        await asyncio.Event().wait()
    else:
        app = ChannelsApp(channels)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, lifespan="on", log_level="warning"
        )
        await uvicorn.Server(config).serve()


asyncio.run(main())
"""
#: The presence ttl the servers above use, and the heartbeat interval (default).
TTL, INTERVAL = 2.0, 1.0


async def test_presence_across_three_processes_converges_after_one_is_killed(
    redis_url: str, start_program: StartProgram, tmp_path: Path
) -> None:
    """Three processes (two Tornado, one uvicorn) share a Redis channel with 1, 2 and
    3 subscribers: each serves the total, 6. The third is killed (SIGKILL: no
    goodbye): within ttl + interval seconds every survivor serves 3."""
    script = tmp_path / "server.py"
    script.write_text(SERVER)
    name = f"presence-{uuid.uuid4().hex[:10]}"
    ports = [free_port() for _ in range(3)]
    kinds = ["tornado", "asgi", "tornado"]
    programs = [
        start_program([sys.executable, str(script), kind, str(port), redis_url, name])
        for kind, port in zip(kinds, ports, strict=True)
    ]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as http:

        async def everywhere(base: str) -> int | None:
            with contextlib.suppress(httpx.HTTPError):
                response = await http.get(f"{base}/{name}/presence")
                if response.status_code == 200:
                    return int(response.json()["everywhere"])
            return None

        async def converge(expected: int, timeout: float) -> float:
            start = time.monotonic()
            while True:
                seen = [await everywhere(base) for base in bases[:2]]
                if all(count == expected for count in seen):
                    return time.monotonic() - start
                if time.monotonic() - start > timeout:
                    pytest.fail(f"presence {seen}, not {expected}, after {timeout} s")
                await asyncio.sleep(0.05)

        await converge(0, 20)  # both servers answer (an error is no count), nothing counted
        async with (
            streams(f"{bases[0]}/{name}/events", 1),
            streams(f"{bases[1]}/{name}/events", 2),
            streams(f"{bases[2]}/{name}/events", 3),
        ):
            await converge(6, TTL + INTERVAL + 1)
            programs[2].proc.send_signal(signal.SIGKILL)
            programs[2].proc.wait(5)
            await converge(3, TTL + INTERVAL + 0.5)  # fails past the documented time
            here = (await http.get(f"{bases[1]}/{name}/presence")).json()["here"]
            assert here == 2


async def test_fastapi_router_serves_presence_and_multi_channel_streams(
    uvicorn_server: UvicornStarter,
) -> None:
    """``channels_router`` serves ``/{name}/presence``, ``/_presence`` and the
    multi-channel SSE stream, answering as the mounted URLs do."""
    from fastapi import FastAPI

    from tornadose.adapters.fastapi import channels_router

    channels = Channels()
    channels.add("a")
    app = FastAPI()
    app.include_router(channels_router(channels), prefix="/live")
    base = await uvicorn_server(app) + "/live"
    async with (
        streams(f"{base}/_multi/events?channel=a", 1),
        httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as http,
    ):
        assert (await http.get(f"{base}/a/presence")).json()["here"] == 1
        assert (await http.get(f"{base}/_presence")).json()["channels"]["a"]["here"] == 1
        bad = await http.get(f"{base}/_multi/events?pattern=a*")
        assert bad.status_code == 400
        assert bad.json()["error"] == "invalid_pattern"
        assert (
            "/live/_multi/events"
            in (await http.get(base.removesuffix("/live") + "/openapi.json")).text
        )


@pytest.mark.parametrize("adapter", ["tornado", "asgi"])
async def test_presence_events_tell_subscribers_of_count_changes(
    adapter: str, tornado_server: TornadoStarter, uvicorn_server: UvicornStarter
) -> None:
    """A channel with ``presence_events=True``: its subscribers get
    ``tornadose.presence`` (no id) when its count changes, at most once per heartbeat;
    a multi-channel connection gets it tagged with the channel. Other channels: none."""
    from httpx_sse import aconnect_sse

    from tests.clients import real_events

    channels = Channels(prefix="/live")
    channels.add("room", presence_events=True)
    channels.add("quiet")
    if adapter == "tornado":
        base = await tornado_server(channel_handlers(channels))
    else:
        base = await uvicorn_server(ChannelsApp(channels))
    seen: list[tuple[str, str, str | None]] = []

    async def read(url: str) -> None:
        async with (
            httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as http,
            aconnect_sse(http, "GET", url) as source,
        ):
            async for event in real_events(source):
                seen.append((url, event.event, event.data))

    first = asyncio.ensure_future(read(f"{base}/live/room/events"))
    quiet = asyncio.ensure_future(read(f"{base}/live/quiet/events"))
    try:
        await wait_until(lambda: any('"here":1' in (d or "") for _, _, d in seen), 5)
        multi = asyncio.ensure_future(read(f"{base}/live/_multi/events?channel=room"))
        await wait_until(
            lambda: any('"here":2' in (d or "") for u, _, d in seen if "multi" in u), 5
        )
        await wait_until(
            lambda: any('"here":2' in (d or "") for u, _, d in seen if "/room/" in u), 5
        )
        multi.cancel()
    finally:
        first.cancel()
        quiet.cancel()
        await asyncio.gather(first, quiet, return_exceptions=True)
    assert all(kind == "tornadose.presence" for u, kind, _ in seen if "/room/" in u)
    assert not [entry for entry in seen if "/quiet/" in entry[0]]


def test_an_announcement_during_a_held_resume_lets_no_duplicate_through() -> None:
    """An id-less announcement queued while a resume is held is delivered, and does
    not end the skipping of live messages the replay already had."""
    from tornadose.core.message import Message
    from tornadose.core.reasons import OverflowPolicy
    from tornadose.core.subscription import StoreStats, Subscription

    subscription = Subscription(
        object(),
        max_messages=10,
        overflow=OverflowPolicy.DISCONNECT,
        stats=StoreStats(),
        on_close=lambda _: None,
    )
    subscription.hold()
    subscription.put(Message("old", id="e-3"))  # already in the replay
    subscription.put(Message({"here": 2}, id=None, event="tornadose.presence"))
    subscription.release([Message("replayed", id="e-3")], skip=lambda m: m.id == "e-3")
    subscription.put(Message("again", id="e-3"))  # a duplicate arriving late: skipped
    subscription.put(Message("new", id="e-4"))
    assert [m.data for m in subscription.take_batch()] == ["replayed", {"here": 2}, "new"]


async def test_a_silent_presence_backend_fails_the_heartbeat_in_time() -> None:
    """A Redis that accepts connections and never answers: the heartbeat fails, saying
    so, within ``max(interval, ttl)`` seconds (it waited forever), and stopping
    returns too."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = QueueStore()
    backend = RedisPresence(f"redis://127.0.0.1:{port}/0", ttl=0.5)
    presence = Presence(lambda: {"a": store}, backend, interval=0.2)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"did not answer a heartbeat within 0\.5 s"):
            await asyncio.wait_for(presence.beat(), 5)
        assert time.monotonic() - started < 2
        await asyncio.wait_for(presence.stop(), 5)
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_everywhere_is_never_below_here(redis_url: str) -> None:
    """Subscribers that joined since the last heartbeat count everywhere at once."""
    name = f"presence-{uuid.uuid4().hex[:8]}"
    store = QueueStore()
    presence = Presence(lambda: {name: store}, RedisPresence(redis_url, ttl=5))
    try:
        first = store.subscribe()
        await presence.beat()
        assert presence.counts()[name] == {"here": 1, "everywhere": 1}
        second = store.subscribe()
        assert presence.counts()[name] == {"here": 2, "everywhere": 2}
        first.close()
        second.close()
        assert presence.counts()[name] == {"here": 0, "everywhere": 0}
    finally:
        await presence.stop()
