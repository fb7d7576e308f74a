"""A reconnect storm on multi-channel connections: one cursor resumes every channel.

50 real clients, each on a set of the 5 channels (named ones, or the pattern
``storm.*`` for all), disconnect abruptly and reconnect at random with the cursor of
the last event they got (SSE: ``Last-Event-ID``; WebSocket: ``?last_event_id=``)
while 5,000 messages go to the 5 channels. Every client must get every message of
each of its channels once and in order, unless a ``tornadose.reset`` for that
channel sits between the messages around a gap; the message published before anyone
subscribed reaches exactly one client in memory (a ``QueueStore``'s backlog, handed to
its first subscriber) and none over Redis. The clients are the stores' only
subscribers. Tornado and uvicorn, memory and Redis, SSE only and SSE mixed with
WebSocket.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import random
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

from tests.clients import TIMEOUT, real_events
from tests.conftest import BackendStore, TornadoStarter, UvicornStarter, wait_until
from tornadose.adapters.asgi import ChannelsApp
from tornadose.adapters.tornado import channel_handlers
from tornadose.core.memory import MemoryBackend
from tornadose.http.channels import Channels

CHANNELS = [f"storm.{n}" for n in range(5)]
MESSAGES = 5000
PER_CHANNEL = MESSAGES // len(CHANNELS)
CLIENTS = 50
BURST = 10
PAUSE = 0.004
MIN_CONNECTION, MAX_CONNECTION = 0.1, 0.6
STORM_TIMEOUT = 50.0
SEED = 15

pytestmark = pytest.mark.timeout(90)


@dataclass
class Client:
    number: int
    transport: str
    query: list[tuple[str, str]]
    channels: list[str]
    cursor: str | None = None
    #: Per channel, in order: the ``n`` of each message, or ``"reset"``.
    seen: dict[str, list[Any]] = field(default_factory=dict)
    connections: int = 0
    #: The last error a connection ended with (``None``: none so far).
    error: str | None = None
    opened: asyncio.Event = field(default_factory=asyncio.Event)

    def done(self) -> bool:
        return all(
            any(v == PER_CHANNEL - 1 for v in self.seen.get(name, ())) for name in self.channels
        )

    def take(self, event: str | None, envelope: dict[str, Any], cursor: str) -> None:
        channel = envelope["channel"]
        if channel is None:
            assert event == "tornadose.subscribed"
            self.opened.set()
        elif event is None:
            self.seen.setdefault(channel, []).append(envelope["data"]["n"])
        elif event == "tornadose.reset":
            self.seen.setdefault(channel, []).append("reset")
        self.cursor = cursor


#: One HTTP client for every SSE connection of the storm (a client per connection would
#: load the CA certificates each time: ~30 ms of CPU, most of the storm's time).
_http: contextvars.ContextVar[httpx.AsyncClient] = contextvars.ContextVar("http")


async def _connection(client: Client, base: str, prefix: str, rng: random.Random) -> None:
    """One connection, read for a random time, then dropped without a goodbye."""
    client.connections += 1

    async def read() -> None:
        if client.transport == "sse":
            url = f"{base}{prefix}/_multi/events?{urlencode(client.query)}"
            headers = {"Last-Event-ID": client.cursor} if client.cursor else {}
            async with aconnect_sse(_http.get(), "GET", url, headers=headers) as source:
                async for sse in real_events(source):
                    event = None if sse.event == "message" else sse.event
                    client.take(event, json.loads(sse.data), sse.id)
        else:
            query = list(client.query)
            if client.cursor:
                query.append(("last_event_id", client.cursor))
            url = base.replace("http://", "ws://") + f"{prefix}/_multi/ws?{urlencode(query)}"
            async with connect(url, open_timeout=TIMEOUT) as ws:
                async for text in ws:
                    frame = json.loads(text)
                    client.take(frame.get("event"), frame, frame["cursor"])

    task = asyncio.ensure_future(read())
    # Dropped a random time after it opened (its first event: tornadose.subscribed).
    opened = asyncio.ensure_future(client.opened.wait())
    await asyncio.wait([task, opened], timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
    opened.cancel()
    client.opened.clear()
    await asyncio.wait([task], timeout=rng.uniform(MIN_CONNECTION, MAX_CONNECTION))
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception as exc:
        client.error = f"{type(exc).__name__}: {exc}"


async def _run(client: Client, base: str, prefix: str, stop: asyncio.Event) -> None:
    rng = random.Random(SEED * 1000 + client.number)
    while not client.done() and not stop.is_set():
        await _connection(client, base, prefix, rng)


def _check(client: Client) -> list[str]:
    """What is wrong with what ``client`` saw (empty: nothing)."""
    problems = []
    for name in client.channels:
        seen = client.seen.get(name, [])
        expected = -1 if seen[:1] == [-1] else 0  # the backlog, handed to the first
        reset = False
        for value in seen:
            if value == "reset":
                reset = True
                continue
            if value < expected:
                problems.append(
                    f"client {client.number} {name}: {value} again (after {expected - 1})"
                )
            elif value > expected and not reset:
                problems.append(
                    f"client {client.number} {name}: {expected}..{value - 1} missing, no reset"
                )
            expected = max(expected, value + 1)
            reset = False
        if expected != PER_CHANNEL:
            problems.append(f"client {client.number} {name}: ended at {expected}")
    return problems


@pytest.fixture(params=["tornado", "asgi"])
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("mix", ["sse", "sse+websocket"])
async def test_reconnect_storm_on_multi_channel_connections(
    adapter: str,
    mix: str,
    backend_store: BackendStore,
    tornado_server: TornadoStarter,
    uvicorn_server: UvicornStarter,
) -> None:
    channels = Channels(prefix="/live")
    stores = [channels.add(name, backend_store("queue")).store for name in CHANNELS]
    # Published while nobody subscribes: in memory a QueueStore keeps it as its backlog
    # and hands it to its first subscriber (which must then get it once); Redis keeps
    # it in the stream and every cursor starts after it. No other subscriber: the
    # storm's clients are each store's only ones, so stores go unread between them.
    for store in stores:
        await store.submit({"n": -1})
    if adapter == "tornado":
        base = await tornado_server(channel_handlers(channels))
    else:
        base = await uvicorn_server(ChannelsApp(channels))
    rng = random.Random(SEED)
    clients = []
    for number in range(CLIENTS):
        transport = "websocket" if mix != "sse" and number % 2 else "sse"
        if number % 5 == 0:
            names, query = CHANNELS, [("pattern", "storm.*")]
        else:
            names = sorted(rng.sample(CHANNELS, rng.randint(1, 4)))
            query = [("channel", name) for name in names]
        clients.append(Client(number, transport, query, names))
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    http = httpx.AsyncClient(timeout=TIMEOUT, trust_env=False, limits=limits)
    _http.set(http)  # the tasks below copy the context
    stop = asyncio.Event()
    storm = [asyncio.ensure_future(_run(c, base, "/live", stop)) for c in clients]
    # Every client has its first cursor (tornadose.subscribed) before the first
    # message: from then on it must get them all.
    await wait_until(lambda: all(c.cursor for c in clients), 20)
    pending = []
    for n in range(PER_CHANNEL):
        pending += [store.submit({"n": n}) for store in stores]
        if n % (BURST // 2) == 0:
            # Every message published (Redis acknowledged it) before the next burst:
            # a message the store did not take would fail here, not stall the storm.
            await asyncio.gather(*pending)
            pending.clear()
            await asyncio.sleep(PAUSE)
    await asyncio.gather(*pending)
    try:
        await asyncio.wait_for(asyncio.shield(asyncio.gather(*storm)), STORM_TIMEOUT)
    except TimeoutError:
        stop.set()
        await asyncio.gather(*storm)
        stalled = [
            f"client {c.number} ({c.transport}, {c.connections} connections, last error "
            f"{c.error}): " + ", ".join(f"{n}: {len(c.seen.get(n, []))}" for n in c.channels)
            for c in clients
            if not c.done()
        ]
        pytest.fail(f"the storm did not end within {STORM_TIMEOUT} s: {stalled[:10]}")
    finally:
        stop.set()
        await http.aclose()
    problems = [problem for client in clients for problem in _check(client)]
    assert not problems, problems[:20]
    backlog = {name: sum(c.seen.get(name, [None])[0] == -1 for c in clients) for name in CHANNELS}
    handed = 1 if isinstance(stores[0].backend, MemoryBackend) else 0
    assert backlog == dict.fromkeys(CHANNELS, handed)
    resets = sum(v == "reset" for c in clients for seen in c.seen.values() for v in seen)
    assert resets == 0, f"{resets} resets with a history as long as the storm"
    assert sum(c.connections for c in clients) > 3 * CLIENTS
