"""Several channels and patterns on one connection (``{prefix}/_multi/events`` and
``/_multi/ws``): the right messages in per-channel order, exact resume with one cursor,
patterns picking up channels declared later, refused channels reported, every
malformed request answered ``4xx`` with a JSON body, and the Redis reader reading only
channels with subscribers. Real servers (Tornado, uvicorn), real clients (httpx-sse,
websockets), both transports, memory and Redis backends.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import string
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.clients import TIMEOUT, real_events
from tests.conftest import BackendStore, TornadoStarter, UvicornStarter, wait_until
from tornadose.adapters.asgi import ChannelsApp
from tornadose.adapters.tornado import channel_handlers
from tornadose.auth import Action
from tornadose.core.channelset import (
    MAX_CURSOR_CHANNELS,
    MAX_CURSOR_LENGTH,
    MAX_NAME_LENGTH,
    InvalidPattern,
    MalformedCursor,
    Pattern,
    cursor_names_fit,
    decode_cursor,
    encode_cursor,
)
from tornadose.core.history import MAX_ID_LENGTH
from tornadose.core.store import BaseStore
from tornadose.http.channels import Channels, MultiLimits

pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class Event:
    """One event of a multi-channel stream, whatever the transport."""

    event: str | None
    channel: str
    id: str | None
    data: Any
    cursor: str


@dataclass
class Served:
    channels: Channels
    base: str
    adapter: str
    backend: str

    def url(self, transport: str, query: Mapping[str, Any] | list[tuple[str, str]]) -> str:
        path = "/_multi/events" if transport == "sse" else "/_multi/ws"
        base = self.base if transport == "sse" else self.base.replace("http://", "ws://", 1)
        return f"{base}{self.channels.prefix}{path}?{urlencode(query, doseq=True)}"


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture(params=["tornado", "asgi"])
def serve(
    request: pytest.FixtureRequest,
    tornado_server: TornadoStarter,
    uvicorn_server: UvicornStarter,
    backend_store: BackendStore,
) -> Serve:
    """``served = await serve(names, authorize=None)``: the channels ``names``, each on a
    store of the test's backend, served by the adapter of the run."""
    backend = request.node.callspec.params["backend_store"]

    async def start(names: list[str], **options: Any) -> Served:
        channels = Channels(prefix="/live", **options)
        for name in names:
            channels.add(name, backend_store("queue"))
        if request.param == "tornado":
            base = await tornado_server(channel_handlers(channels))
        else:
            base = await uvicorn_server(ChannelsApp(channels))
        return Served(channels, base, request.param, backend)

    return start


async def ready(store: BaseStore, subscribers: int = 1) -> None:
    """Wait until ``store`` has ``subscribers`` and, over Redis, its reader reads it
    (a live subscriber gets what is published after that)."""
    await wait_until(lambda: len(store.subscribers) >= subscribers)
    reader_channels = _reader_channels(store)
    if reader_channels is not None:
        key = store.backend.channel  # type: ignore[attr-defined]
        await wait_until(lambda: key in reader_channels and reader_channels[key].readable)


def _reader_channels(store: BaseStore) -> dict[str, Any] | None:
    connection = getattr(store.backend, "connection", None)
    return None if connection is None else connection.reader.channels  # type: ignore[no-any-return]


def _event(event: str | None, envelope: dict[str, Any], cursor: str) -> Event:
    return Event(event, envelope["channel"], envelope["id"], envelope["data"], cursor)


class Reader:
    """A multi-channel connection read in the background: ``events`` fill up."""

    def __init__(self, url: str, transport: str, cursor: str | None = None) -> None:
        self.url, self.transport, self.cursor = url, transport, cursor
        self.events: list[Event] = []
        self.opened = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Reader:
        self.task = asyncio.ensure_future(self._read())
        await asyncio.wait_for(self.opened.wait(), TIMEOUT)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)

    async def _read(self) -> None:
        if self.transport == "sse":
            headers = {"Last-Event-ID": self.cursor} if self.cursor else {}
            async with (
                httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client,
                aconnect_sse(client, "GET", self.url, headers=headers) as source,
            ):
                assert source.response.status_code == 200, source.response.text
                self.opened.set()
                async for sse in real_events(source):
                    envelope = json.loads(sse.data)
                    event = None if sse.event == "message" else sse.event
                    self.events.append(_event(event, envelope, sse.id))
        else:
            url = self.url + (
                f"&{urlencode({'last_event_id': self.cursor})}" if self.cursor else ""
            )
            async with connect(url, open_timeout=TIMEOUT) as ws:
                self.opened.set()
                async for text in ws:
                    frame = json.loads(text)
                    self.events.append(_event(frame.get("event"), frame, frame["cursor"]))

    def of(self, channel: str) -> list[Any]:
        """The payloads of plain messages of ``channel``, in the order received."""
        return [e.data for e in self.events if e.channel == channel and e.event is None]

    async def until(self, predicate: Callable[[Reader], bool], timeout: float = 10) -> None:
        await wait_until(lambda: predicate(self), timeout)


TRANSPORTS = ["sse", "websocket"]
NAMES = ["a", "b", "c", "sensors.x", "sensors.y", "sensors.x.deep", "other"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_three_channels_and_a_pattern_get_exactly_their_messages_in_order(
    serve: Serve, transport: str
) -> None:
    """A connection on ``a``, ``b``, ``c`` and ``sensors.*`` receives every message of
    those five channels (not ``sensors.x.deep``, not ``other``), each channel's in
    order, each once, tagged with its channel and its own id."""
    served = await serve(NAMES)
    query = [("channel", "a"), ("channel", "b"), ("channel", "c"), ("pattern", "sensors.*")]
    wanted = ["a", "b", "c", "sensors.x", "sensors.y"]
    async with Reader(served.url(transport, query), transport) as reader:
        for name in wanted:
            await ready(served.channels[name].store)
        ids: dict[str, list[str]] = {name: [] for name in NAMES}
        for n in range(30):
            for name in NAMES:
                message = await served.channels[name].store.submit({"n": n, "on": name})
                ids[name].append(message.id)
        await reader.until(lambda r: all(len(r.of(name)) == 30 for name in wanted))
        await asyncio.sleep(0.2)  # nothing else arrives
    for name in wanted:
        assert reader.of(name) == [{"n": n, "on": name} for n in range(30)]
        got = [e.id for e in reader.events if e.channel == name]
        assert got == ids[name]
    assert {e.channel for e in reader.events} == {*wanted, None}
    assert reader.events[0].event == "tornadose.subscribed"
    assert sorted(reader.events[0].data["channels"]) == wanted
    assert reader.events[0].data["patterns"] == ["sensors.*"]
    cursor = decode_cursor(reader.events[-1].cursor)
    assert cursor == {name: ids[name][-1] for name in wanted}


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_one_cursor_resumes_every_channel_exactly(serve: Serve, transport: str) -> None:
    """A client that reconnects with the cursor of the last event it got is replayed,
    per channel, exactly what it missed (a ``tornadose.resumed`` naming each), then
    live messages: no gap, no duplicate."""
    served = await serve(["a", "b", "c"])
    stores = {name: served.channels[name].store for name in ("a", "b", "c")}
    query = [("channel", "a"), ("channel", "b"), ("channel", "c")]
    async with Reader(served.url(transport, query), transport) as first:
        for store in stores.values():
            await ready(store)
        for n in range(5):
            for name, store in stores.items():
                await store.submit({"n": n, "on": name})
        await first.until(lambda r: all(len(r.of(name)) == 5 for name in stores))
    cut = first.events[8]  # the client "got" only the first 9 events (subscribed, 8)
    got = first.events[1:9]
    seen = {name: [e.data["n"] for e in got if e.channel == name] for name in stores}
    for n in range(5, 10):
        for name, store in stores.items():
            await store.submit({"n": n, "on": name})
    async with Reader(served.url(transport, query), transport, cut.cursor) as second:
        await second.until(
            lambda r: all(len(r.of(name)) == 10 - len(seen[name]) for name in stores)
        )
        for n in range(10, 12):
            for name, store in stores.items():
                await store.submit({"n": n, "on": name})
        await second.until(
            lambda r: all(len(r.of(name)) == 12 - len(seen[name]) for name in stores)
        )
    resumed = [e for e in second.events if e.event == "tornadose.resumed"]
    assert sorted(e.channel for e in resumed) == ["a", "b", "c"]
    for name in stores:
        assert seen[name] + [d["n"] for d in second.of(name)] == list(range(12))


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_pattern_picks_up_a_channel_declared_later(
    serve: Serve, backend_store: BackendStore, transport: str
) -> None:
    """A channel declared after the connection opened joins it when a pattern matches
    it (``**``: any depth); one that does not match stays out."""
    served = await serve(["rooms.1"])
    async with Reader(served.url(transport, [("pattern", "rooms.**")]), transport) as reader:
        await ready(served.channels["rooms.1"].store)
        later = served.channels.add("rooms.2.blue", backend_store("queue"))
        hall = served.channels.add("hall", backend_store("queue"))
        await ready(later.store)
        await later.store.submit({"hello": 2})
        await hall.store.submit("not mine")
        await served.channels["rooms.1"].store.submit("early")
        await reader.until(
            lambda r: r.of("rooms.2.blue") == [{"hello": 2}] and r.of("rooms.1") == ["early"]
        )
        await asyncio.sleep(0.1)
    assert "hall" not in {e.channel for e in reader.events}
    assert not hall.store.subscribers


async def _refuse_secret(headers: Mapping[str, str], channel: str, action: Action) -> bool:
    return not channel.startswith("secret")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_refused_channel_is_reported_and_the_others_served(
    serve: Serve, backend_store: BackendStore, transport: str
) -> None:
    """The hook is asked for every channel: a refused one (named, or matched by a
    pattern later) gets a ``tornadose.refused`` event naming it and why; the others
    stream. Nothing of a refused channel is delivered."""
    served = await serve(["a", "secret"], authorize=_refuse_secret)
    query = [("channel", "a"), ("channel", "secret"), ("pattern", "x.*")]
    async with Reader(served.url(transport, query), transport) as reader:
        await ready(served.channels["a"].store)
        await served.channels["secret"].store.submit("hidden")
        await served.channels["a"].store.submit("shown")
        served.channels.add("x.1", backend_store("queue"))
        served.channels.add("secret.x", backend_store("queue"))  # not matched by x.*
        await reader.until(lambda r: r.of("a") == ["shown"])
        await ready(served.channels["x.1"].store)
        await served.channels["x.1"].store.submit("x1")
        await reader.until(lambda r: r.of("x.1") == ["x1"])
    refused = [e for e in reader.events if e.event == "tornadose.refused"]
    assert [e.channel for e in refused] == ["secret"]
    assert refused[0].data["status"] == 403
    assert refused[0].data["error"] == "forbidden"
    assert "secret" in refused[0].data["detail"]
    assert "hidden" not in [e.data for e in reader.events]
    assert not served.channels["secret"].store.subscribers


async def test_a_channel_a_pattern_matches_later_is_authorized_too(
    serve: Serve, backend_store: BackendStore
) -> None:
    """A channel declared later and matched by a pattern is asked for: refused, it
    is reported."""
    served = await serve(["a"], authorize=_refuse_secret)
    async with Reader(served.url("sse", [("pattern", "**")]), "sse") as reader:
        await ready(served.channels["a"].store)
        secret = served.channels.add("secret.2", backend_store("queue"))
        await reader.until(lambda r: any(e.event == "tornadose.refused" for e in r.events))
    assert not secret.store.subscribers
    refused = [e for e in reader.events if e.event == "tornadose.refused"]
    assert refused[0].channel == "secret.2"
    assert refused[0].data["status"] == 403


class Gate:
    """An authorize hook that makes channels under ``late.`` wait for :attr:`open`
    and then allows them, except ``late.secret``."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.asked: list[str] = []

    async def __call__(self, headers: Mapping[str, str], channel: str, action: Action) -> bool:
        if channel.startswith("late."):
            self.asked.append(channel)
            await self.open.wait()
        return channel != "late.secret"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_channel_matched_later_joins_when_the_hook_allows_it(
    serve: Serve, backend_store: BackendStore, transport: str
) -> None:
    """Channels declared while the connection is open and matched by its pattern join
    it when the hook allows them, as a new subscriber would: nothing is registered
    before the answer; the allowed one then gets what a newcomer gets (in memory a
    ``QueueStore``'s backlog: what it published before, and while the hook decided)
    and every message after; the refused one's store is left as it was (its backlog
    for its next subscriber) and its name is in no cursor."""
    gate = Gate()
    served = await serve(["a"], authorize=gate)
    late_store, secret_store = backend_store("queue"), backend_store("queue")
    memory = served.backend == "memory"
    async with Reader(served.url(transport, [("pattern", "late.*")]), transport) as reader:
        await reader.until(lambda r: bool(r.events))  # tornadose.subscribed
        served.channels.add("late.news", late_store)
        served.channels.add("late.secret", secret_store)
        await wait_until(lambda: len(gate.asked) == 2)
        during = await late_store.submit({"n": "during"})
        await secret_store.submit("hidden")
        await asyncio.sleep(0.1)
        assert [e.channel for e in reader.events] == [None]  # nothing before the answer
        assert not late_store.subscribers
        assert not secret_store.subscribers
        gate.open.set()
        await ready(late_store)
        sent = [await late_store.submit({"n": n}) for n in range(3)]
        expected = ([during] if memory else []) + sent
        await reader.until(lambda r: len(r.of("late.news")) == len(expected))
        await asyncio.sleep(0.05)  # nothing more comes
    news = [e for e in reader.events if e.channel == "late.news"]
    assert [e.id for e in news] == [m.id for m in expected]
    assert "hidden" not in [e.data for e in reader.events]
    refused = [e for e in reader.events if e.event == "tornadose.refused"]
    assert [(e.channel, e.data["status"]) for e in refused] == [("late.secret", 403)]
    for event in reader.events:
        assert "late.secret" not in decode_cursor(event.cursor)
    assert decode_cursor(news[-1].cursor)["late.news"] == expected[-1].id
    if memory:  # the refused client took nothing: the next subscriber gets the backlog
        next_one = secret_store.subscribe()
        got = await asyncio.wait_for(next_one.get_batch(), TIMEOUT)
        next_one.close()
        assert [m.data for m in got] == ["hidden"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_channel_closed_midway_is_reported_and_the_others_go_on(
    serve: Serve, transport: str
) -> None:
    """Closing one channel's store ends its part of the connection with a
    ``tornadose.refused`` event (503 ``store_closed``) after its queued messages; the
    other channel keeps streaming on the same connection."""
    served = await serve(["a", "b"])
    a, b = served.channels["a"].store, served.channels["b"].store
    query = [("channel", "a"), ("channel", "b")]
    async with Reader(served.url(transport, query), transport) as reader:
        await ready(a)
        await ready(b)
        await a.submit("last of a")
        await reader.until(lambda r: r.of("a") == ["last of a"])
        a.close()
        await reader.until(lambda r: any(e.event == "tornadose.refused" for e in r.events))
        await b.submit("b goes on")
        await reader.until(lambda r: r.of("b") == ["b goes on"])
    refused = next(e for e in reader.events if e.event == "tornadose.refused")
    assert refused.channel == "a"
    assert refused.data["status"] == 503
    assert refused.data["error"] == "store_closed"


async def test_a_client_that_stops_reading_is_cut_as_a_slow_consumer(
    serve: Serve, backend_store: BackendStore
) -> None:
    """Bounds per connection: a client that stops reading backs up into its channels'
    queues (the writer's own is small), whose ``disconnect`` policy cuts the whole
    connection: every channel subscription goes, counted as a slow consumer."""
    served = await serve([], multi=MultiLimits(max_queue=8, max_queue_bytes=64 * 1024))
    stores = [
        served.channels.add(f"s{n}", backend_store("queue", max_queue=20)).store for n in range(2)
    ]
    port = int(served.base.rsplit(":", 1)[1])
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    path = "/live/_multi/events?channel=s0&channel=s1"
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    try:
        for store in stores:
            await ready(store)
        payload = "x" * 20_000
        for _ in range(400):  # about 16 MB: more than the socket buffers hold
            for store in stores:
                store.submit(payload)
            await asyncio.sleep(0)
        await wait_until(lambda: not any(store.subscribers for store in stores), 15)
        cut = sum(store.stats.disconnects["slow_consumer"] for store in stores)
        assert cut >= 1
    finally:
        writer.close()


async def test_every_channel_refused_without_pattern_is_403(serve: Serve) -> None:
    served = await serve(["secret"], authorize=_refuse_secret)
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as http:
        response = await http.get(served.url("sse", [("channel", "secret")]))
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert "'secret'" in response.json()["detail"]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


BAD_REQUESTS = [
    ([], {}, 400, "no_channels"),
    ([("channel", "nope")], {}, 404, "unknown_channel"),
    ([("pattern", "sens*")], {}, 400, "invalid_pattern"),
    ([("pattern", "a.**.b")], {}, 400, "invalid_pattern"),
    ([("pattern", ".".join(["*"] * 9))], {}, 400, "invalid_pattern"),
    ([("pattern", f"p{n}.*") for n in range(3)], {}, 400, "too_many_patterns"),
    ([("channel", f"c{n}") for n in range(4)], {}, 400, "too_many_channels"),
    ([("pattern", "*")], {}, 400, "too_many_channels"),
    ([("channel", "c0")], {"Last-Event-ID": "garbage"}, 400, "malformed_cursor"),
    ([("channel", "c0")], {"Last-Event-ID": "1." + _b64(b"[1,2]")}, 400, "malformed_cursor"),
    ([("channel", "c0")], {"Last-Event-ID": "1z." + _b64(b"\x00" * 40)}, 400, "malformed_cursor"),
    ([("channel", "c0")], {"Last-Event-ID": "1." + _b64(b'{"c0": 5}')}, 400, "malformed_cursor"),
    ([("channel", "c0")], {"Last-Event-ID": "1." + "A" * 7000}, 400, "malformed_cursor"),
]


@pytest.mark.parametrize(("query", "headers", "status", "error"), BAD_REQUESTS)
async def test_malformed_requests_get_a_clear_4xx(
    serve: Serve, query: list[tuple[str, str]], headers: dict[str, str], status: int, error: str
) -> None:
    """Bad ids, too many channels or patterns, bad patterns, unknown channels: a JSON
    error body saying which (limits here: 3 channels, 2 patterns)."""
    limits = MultiLimits(max_channels=3, max_patterns=2)
    served = await serve(["c0", "c1", "c2", "c3"], multi=limits)
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as http:
        response = await http.get(served.url("sse", query), headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.json()["detail"]
    if served.backend == "memory":  # the same on a WebSocket handshake
        extra = f"&{urlencode({'last_event_id': headers['Last-Event-ID']})}" if headers else ""
        with pytest.raises(InvalidStatus) as refused:
            await connect(served.url("websocket", query) + extra, open_timeout=TIMEOUT)
        assert refused.value.response.status_code == status


async def test_a_cursor_position_unknown_is_an_explicit_reset(serve: Serve) -> None:
    """A cursor holding no position for a channel resumes it with a reset naming it
    (reason ``unknown_position``) while the others resume."""
    served = await serve(["a", "b"])
    a = await served.channels["a"].store.submit(1)
    cursor = encode_cursor({"a": a.id, "b": ""})
    query = [("channel", "a"), ("channel", "b")]
    async with Reader(served.url("sse", query), "sse", cursor) as reader:
        await reader.until(lambda r: {"a", "b"} <= {e.channel for e in r.events})
    by_channel = {e.channel: e for e in reader.events}
    assert by_channel["a"].event == "tornadose.resumed"
    assert by_channel["b"].event == "tornadose.reset"
    assert by_channel["b"].data["reason"] == "unknown_position"


async def test_the_redis_reader_reads_only_subscribed_channels(
    serve: Serve, request: pytest.FixtureRequest
) -> None:
    """A pattern subscribes to the declared channels it matches, and the process's
    Redis reader reads those only; when the connection ends it reads none of them."""
    served = await serve(["sensors.1", "sensors.2", "other"])
    if served.backend != "redis":
        pytest.skip("the Redis reader")
    stores = {c.name: c.store for c in served.channels}
    reader_channels = _reader_channels(stores["other"])
    assert reader_channels is not None
    keys = {name: store.backend.channel for name, store in stores.items()}  # type: ignore[attr-defined]
    async with Reader(served.url("sse", [("pattern", "sensors.*")]), "sse"):
        await ready(stores["sensors.1"])
        await ready(stores["sensors.2"])
        assert keys["sensors.1"] in reader_channels
        assert keys["sensors.2"] in reader_channels
        assert keys["other"] not in reader_channels
    await wait_until(lambda: not set(keys.values()) & set(reader_channels))


# -- the pure parts ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("sensors.*", "sensors.a", True),
        ("sensors.*", "sensors", False),
        ("sensors.*", "sensors.a.b", False),
        ("sensors.**", "sensors.a.b", True),
        ("sensors.**", "sensors", False),
        ("*.temp", "boiler.temp", True),
        ("*", "a", True),
        ("*", "a.b", False),
        ("a.b", "a.b", True),
    ],
)
def test_patterns_match_whole_segments(pattern: str, name: str, matches: bool) -> None:
    assert Pattern.parse(pattern).matches(name) is matches


@pytest.mark.parametrize("text", ["", "a.**.b", "sens*", "a..b", "-a", "a." + "x" * 300])
def test_bad_patterns_are_refused(text: str) -> None:
    with pytest.raises(InvalidPattern):
        Pattern.parse(text)


def test_a_cursor_of_64_redis_channels_stays_a_few_kb_and_round_trips() -> None:
    positions = {f"tenant-{n}.events": f"17{n:011d}-{n}" for n in range(64)}
    cursor = encode_cursor(positions)
    assert len(cursor) < 3000
    assert cursor.startswith("1z.")
    assert decode_cursor(cursor) == positions
    assert decode_cursor(encode_cursor({"a": "x-1"})) == {"a": "x-1"}


def test_a_deflate_bomb_is_refused() -> None:
    import zlib

    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = compressor.compress(b'{"a":"' + b"x" * 1_000_000 + b'"}') + compressor.flush()
    with pytest.raises(MalformedCursor, match="inflates beyond"):
        decode_cursor("1z." + _b64(bomb))


async def _burst(stores: list[BaseStore], start: int, count: int) -> None:
    """``count`` messages into every store in one go (one event-loop turn in memory)."""
    published = [store.submit({"n": n}) for n in range(start, start + count) for store in stores]
    await asyncio.gather(*published)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_seventeen_busy_channels_and_their_resume_fit_one_connection(
    serve: Serve, backend_store: BackendStore, transport: str
) -> None:
    """Many channels busy at once (17 channels x 20-message bursts, more than the
    connection's queue of 256), then a resume of 16 channels x 39 missed messages:
    a client that keeps up gets everything, in order, and is never cut (what does not
    fit waits in its channel's queue)."""
    served = await serve([])
    stores = [
        served.channels.add(f"c{n}", backend_store("queue", history=100)).store for n in range(17)
    ]
    query = [("channel", f"c{n}") for n in range(17)]
    async with Reader(served.url(transport, query), transport) as first:
        for store in stores:
            await ready(store)
        for burst in range(3):
            await _burst(stores, 20 * burst, 20)
        await first.until(lambda r: all(len(r.of(f"c{n}")) == 60 for n in range(17)))
        cursor = first.events[-1].cursor
    assert all(first.of(f"c{n}") == [{"n": k} for k in range(60)] for n in range(17))
    await wait_until(lambda: not any(store.subscribers for store in stores))
    await _burst(stores[:16], 60, 39)
    async with Reader(served.url(transport, query[:16]), transport, cursor) as second:
        await second.until(lambda r: all(len(r.of(f"c{n}")) == 39 for n in range(16)))
    assert all(second.of(f"c{n}") == [{"n": k} for k in range(60, 99)] for n in range(16))
    resumed = [e.channel for e in second.events if e.event == "tornadose.resumed"]
    assert sorted(resumed) == sorted(f"c{n}" for n in range(16))
    assert sum(store.stats.disconnects["slow_consumer"] for store in stores) == 0


async def test_a_cursor_of_deeply_nested_json_is_a_400(serve: Serve) -> None:
    """A forged deflated cursor of 60,000 nested ``[`` (Python's JSON parser recurses
    on each) is refused as malformed, not a server error."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    cursor = "1z." + _b64(compressor.compress(b"[" * 60_000) + compressor.flush())
    with pytest.raises(MalformedCursor, match="nested too deeply"):
        decode_cursor(cursor)
    served = await serve(["a"])
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
        answer = await client.get(
            served.url("sse", {"channel": "a"}), headers={"Last-Event-ID": cursor}
        )
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "malformed_cursor"


async def test_a_channel_alone_in_its_process_resumes_exactly(serve: Serve) -> None:
    """A per-user channel whose only subscriber in the process is this connection (a
    shared backend's store forgets its position while no one reads it; an in-memory
    ``QueueStore`` hands it the backlog of what was published before): the cursor of
    ``tornadose.subscribed`` still holds a real position, so messages published while
    the client is away are replayed on reconnect, not reset. In memory that position
    is before the backlog, which is replayed too (the client dropped before reading
    it): each message once, in order."""
    served = await serve(["user.42"])
    store = served.channels["user.42"].store
    old = await store.submit({"old": 1})
    query = {"channel": "user.42"}
    async with Reader(served.url("sse", query), "sse") as first:
        await first.until(lambda r: bool(r.events))
    opened = first.events[0]
    assert opened.event == "tornadose.subscribed"
    assert decode_cursor(opened.cursor)["user.42"] != ""
    await wait_until(lambda: not store.subscribers)
    missed = [await store.submit({"missed": n}) for n in range(2)]
    if served.backend == "memory":  # the backlog it was handed, then what it missed
        missed.insert(0, old)
    async with Reader(served.url("sse", query), "sse", opened.cursor) as second:
        await second.until(lambda r: len(r.of("user.42")) == len(missed))
        await asyncio.sleep(0.05)  # nothing more comes
    events = [e.event for e in second.events if e.channel == "user.42"]
    assert events == ["tornadose.resumed"] + [None] * len(missed)
    assert [e.id for e in second.events if e.event is None] == [m.id for m in missed]


def _random_name(rng: random.Random, length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(rng.choice(alphabet) for _ in range(length))


@pytest.mark.parametrize(("channels", "name_length"), [(256, 10), (64, 62), (21, 200), (1, 200)])
def test_every_cursor_the_server_makes_decodes(channels: int, name_length: int) -> None:
    """The worst case: as many channels of as long (incompressible) names as one
    cursor may hold, each with the longest (incompressible, escaped) id: the cursor
    decodes, within the length limit; positions that did not fit are empty (an
    explicit reset on resume), the others exact."""
    rng = random.Random(channels)
    names = [_random_name(rng, name_length) for _ in range(channels)]
    while not cursor_names_fit(names):
        names.pop()
    assert len(names) >= channels - 1
    ids = {name: '"\\é' + _random_name(rng, MAX_ID_LENGTH - 3) for name in names}
    cursor = encode_cursor(ids)
    assert len(cursor) <= MAX_CURSOR_LENGTH
    decoded = decode_cursor(cursor)
    assert set(decoded) == set(names)
    assert all(decoded[name] in ("", ids[name]) for name in names)
    if channels == 1:  # room for every position: all exact
        assert decoded == ids
    with pytest.raises(ValueError, match="do not fit a cursor"):
        encode_cursor({_random_name(rng, 200): "" for _ in range(40)})


def test_channel_names_and_limits_match_what_a_cursor_holds() -> None:
    """One name rule: a name the server accepts is one a cursor may hold (at most
    200 characters); ``max_channels`` above what a cursor may name is refused."""
    channels = Channels()
    channels.add("a" * MAX_NAME_LENGTH)
    with pytest.raises(ValueError, match="at most 200 characters"):
        channels.add("a" * (MAX_NAME_LENGTH + 1))
    with pytest.raises(ValueError, match="letters, digits"):
        channels.add("-a")
    assert decode_cursor(encode_cursor({"a" * MAX_NAME_LENGTH: "1-1"}))
    with pytest.raises(ValueError, match="max_channels must be at most 256"):
        MultiLimits(max_channels=MAX_CURSOR_CHANNELS + 1)


async def test_a_set_of_names_too_long_for_a_cursor_is_a_400(serve: Serve) -> None:
    names = [f"{n:02d}" + "x" * 198 for n in range(30)]
    served = await serve(names)
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
        answer = await client.get(served.url("sse", {"pattern": "*"}))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == "too_many_channels"
    assert "too long for one cursor" in answer.json()["detail"]


async def test_a_channel_joined_before_its_first_message_resumes_in_order(serve: Serve) -> None:
    """An in-memory channel with no message yet: the cursor holds its epoch. Resuming
    it on the same server replays its messages from the first, after
    ``tornadose.resumed``; on a restarted server (another epoch) it is a reset
    ``unknown_epoch``, never the new epoch's messages as if they were the old."""
    served = await serve(["a"])
    if served.backend != "memory":
        pytest.skip("Redis entry ids are positions from the start")
    store = served.channels["a"].store
    query = {"channel": "a"}
    async with Reader(served.url("sse", query), "sse") as first:
        await first.until(lambda r: bool(r.events))
    cursor = first.events[0].cursor
    await wait_until(lambda: not store.subscribers)
    sent = [await store.submit({"n": n}) for n in range(3)]
    async with Reader(served.url("sse", query), "sse", cursor) as second:
        await second.until(lambda r: len(r.of("a")) == 3)
    events = [e.event for e in second.events]
    assert events == ["tornadose.subscribed", "tornadose.resumed", None, None, None]
    # Until the first message is queued, every cursor stays before it.
    assert decode_cursor(second.events[0].cursor)["a"] == decode_cursor(cursor)["a"]
    assert second.events[1].data == {"after": decode_cursor(cursor)["a"], "replayed": 3}
    assert [e.id for e in second.events[2:]] == [m.id for m in sent]
    restarted = await serve(["a"])
    await restarted.channels["a"].store.submit({"n": "new"})
    async with Reader(restarted.url("sse", query), "sse", cursor) as third:
        await third.until(lambda r: any(e.channel == "a" for e in r.events))
    assert third.events[0].event == "tornadose.subscribed"  # resets come after it
    reset = next(e for e in third.events if e.channel == "a")
    assert reset.event == "tornadose.reset"
    assert reset.data["reason"] == "unknown_epoch"


async def test_a_full_set_with_a_cursor_and_a_few_other_parameters_is_admitted(
    serve: Serve,
) -> None:
    """``max_channels`` channels, ``max_patterns`` patterns, ``last_event_id`` and a
    few unrelated parameters (a token, a cache buster) are admitted; beyond, 400."""
    limits = MultiLimits(max_channels=4, max_patterns=2)
    served = await serve(["a", "b", "c", "d"], multi=limits)
    cursor = encode_cursor({"a": ""})
    query = [("channel", n) for n in "abcd"] + [("pattern", "x.*"), ("pattern", "y.*")]
    query += [("last_event_id", cursor), ("token", "t"), ("_", "123")]
    async with Reader(served.url("websocket", query), "websocket") as reader:
        await reader.until(lambda r: any(e.event == "tornadose.subscribed" for e in r.events))
    query += [(f"extra{n}", "1") for n in range(8)]
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
        answer = await client.get(served.url("sse", query))
    assert answer.status_code == 400
    assert answer.json()["error"] == "too_many_channels"
