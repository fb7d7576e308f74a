"""RedisStore against a real Redis, with real servers and real clients.

The shared Redis (``redis_url``) serves most tests, each on a channel of its own
(``channel``); tests that stop Redis, or look at every connection it has, start a
``redis-server`` of their own (``own_redis``). End-to-end tests run on Tornado and on
uvicorn (``serve_store``). Two ``RedisStore`` objects with different connection
settings (a URL, or ``host``/``port``) have a reader each, as two processes would:
that is how these tests play "another process".

Waiting for a reader: a subscriber without ``Last-Event-ID`` gets what is added after
its process started reading the channel, and ``store.submit()`` from the same process
waits for that. So a test that adds entries from outside (``XADD``) first submits a
marker and waits until the subscriber has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pydantic
import pytest
import redis.asyncio as aioredis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.clients import QUIET, TIMEOUT, Inbox, Reading, sse_client
from tests.conftest import (
    Endpoints,
    StoreServer,
    TornadoStarter,
    UvicornStarter,
    free_port,
    wait_until,
)
from tests.redis_support import MakeStore, RedisServer, logged, take
from tests.sse_parser import ParsedEvent, SSEParser
from tornadose.adapters.asgi import PublishApp
from tornadose.adapters.tornado import PublishHandler
from tornadose.backends.redis.layout import ENSURE_FLOOR, StreamId
from tornadose.backends.redis.store import RedisStore
from tornadose.core.history import RESET_EVENT, RESUMED_EVENT
from tornadose.core.message import Message, payload_to_json
from tornadose.core.subscription import Subscription
from tornadose.errors import (
    MessageValidationError,
    StoreClosed,
    StoreUnavailable,
    UnencodableMessage,
)
from tornadose.http.metrics import registry_for
from tornadose.schemas import Envelope, ErrorBody, PublishAccepted
from tornadose.wire.sse import InvalidField

#: Seconds a client waits to make sure that nothing more arrives.

OwnRedis = Callable[..., RedisServer]


# -- fixtures ---------------------------------------------------------------------------


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client of the shared Redis, as another program publishing with XADD."""
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture(params=["sse", "websocket"])
def transport(request: pytest.FixtureRequest) -> str:
    """Each transport in turn."""
    return str(request.param)


# -- clients --------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One event as a client saw it, whatever the transport."""

    event: str | None  # None for a plain message
    id: str | None
    text: str  # the data as SSE carries it (a str payload as is, anything else as JSON)

    @property
    def value(self) -> Any:
        return json.loads(self.text)


def plain(message: Message) -> Received:
    """How a client receives ``message``."""
    return Received(message.event, message.id, message.text)


def resumed(after: str | None, replayed: int) -> Received:
    """The ``tornadose.resumed`` control event (its id is the client's own)."""
    return Received(RESUMED_EVENT, after, payload_to_json({"after": after, "replayed": replayed}))


def reset(reason: str, sent: str | None, newest: str | None) -> Received:
    """The ``tornadose.reset`` control event; its id is the newest id the client skips."""
    data = {"reason": reason, "last_event_id": sent}
    return Received(RESET_EVENT, newest, payload_to_json(data))


class Client(Inbox[Received]):
    """One open client connection; a reader task queues what arrives."""


def frame_text(data: Any) -> str:
    """A WebSocket frame's ``data`` as SSE would carry it."""
    if isinstance(data, str):
        return data
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


@contextlib.asynccontextmanager
async def connected(
    endpoints: Endpoints, transport: str, store: RedisStore, last_event_id: str | None = None
) -> AsyncIterator[Client]:
    """A client of ``endpoints`` over ``transport``: SSE sends ``last_event_id`` as the
    ``Last-Event-ID`` header, WebSocket as the ``last_event_id`` query parameter.
    Yields once ``store`` has registered it."""
    client = Client()
    before = set(store.subscribers)
    async with contextlib.AsyncExitStack() as stack:
        if transport == "sse":
            headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
            source, events = await stack.enter_async_context(
                sse_client(endpoints.events, **headers)
            )
            assert source.response.status_code == 200

            async def read() -> None:
                async for event in events:
                    kind = None if event.event == "message" else event.event
                    client.queue.put_nowait(Received(kind, event.id or None, event.data))

        else:
            query = "" if last_event_id is None else f"?last_event_id={quote(last_event_id)}"
            ws = await stack.enter_async_context(
                connect(endpoints.ws + query, open_timeout=TIMEOUT, close_timeout=TIMEOUT)
            )

            async def read() -> None:
                with contextlib.suppress(ConnectionClosed):
                    async for frame in ws:
                        envelope = Envelope.model_validate_json(frame)
                        received = Received(envelope.event, envelope.id, frame_text(envelope.data))
                        client.queue.put_nowait(received)

        reader = asyncio.ensure_future(read())
        try:
            await wait_until(lambda: bool(set(store.subscribers) - before))
            yield client
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


@dataclass
class RawStream:
    """An SSE response read with the spec's parser, so heartbeats (comments) show too."""

    parser: SSEParser = field(default_factory=SSEParser)

    @property
    def events(self) -> list[ParsedEvent]:
        return self.parser.events

    @property
    def comments(self) -> list[str]:
        return self.parser.comments


@contextlib.asynccontextmanager
async def raw_sse(url: str) -> AsyncIterator[RawStream]:
    """Open ``url`` and feed everything it sends to a :class:`RawStream`."""
    stream = RawStream()
    async with (
        httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as http,
        http.stream("GET", url) as response,
    ):
        assert response.status_code == 200

        async def read() -> None:
            async for chunk in response.aiter_raw():
                stream.parser.feed(chunk)

        reader = asyncio.ensure_future(read())
        try:
            yield stream
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def publish_url(
    adapter: str,
    store: RedisStore,
    tornado_server: TornadoStarter,
    uvicorn_server: UvicornStarter,
) -> str:
    """A real server of ``adapter`` publishing a POSTed JSON body to ``store``."""
    if adapter == "tornado":
        return await tornado_server([(r"/publish", PublishHandler, {"store": store})]) + "/publish"
    return await uvicorn_server(PublishApp(store)) + "/publish"


# -- helpers ----------------------------------------------------------------------------


async def publish(store: RedisStore, *payloads: Any) -> list[Message]:
    """Submit ``payloads`` in order; return them once Redis has them all."""
    published = [store.submit(payload) for payload in payloads]
    return [await item for item in published]


async def nothing_more(subscription: Subscription) -> list[Message]:
    """Whatever ``subscription`` receives within :data:`QUIET` seconds."""
    return await subscription.get_batch(timeout=QUIET)


def seen(messages: list[Message]) -> list[tuple[str | None, str | None, Any]]:
    """(event, id, data) of each message, to compare what was sent and received."""
    return [(m.event, m.id, m.data) for m in messages]


def stream_id(message: Message | str | None) -> StreamId:
    """The :class:`StreamId` of a message (or id), which must be a stream entry id."""
    text = message.id if isinstance(message, Message) else message
    parsed = StreamId.parse(text or "")
    assert parsed is not None, f"not a stream entry id: {text!r}"
    return parsed


async def xadd(client: aioredis.Redis, key: str, fields: dict[str, str | bytes]) -> str:
    """Add an entry as another program would (``XADD key MAXLEN ~ 1000 * ...``)."""
    entry_id: Any = await client.xadd(key, fields, maxlen=1000, approximate=True)  # type: ignore[arg-type]
    return bytes(entry_id).decode()


async def burst(client: aioredis.Redis, key: str, payloads: range, maxlen: int) -> list[str]:
    """Add one entry per payload in one transaction, trimming to exactly ``maxlen``:
    a reader sees the stream only as it is afterwards."""
    pipe = client.pipeline(transaction=True)
    for payload in payloads:
        pipe.xadd(key, {"data": json.dumps(payload)}, maxlen=maxlen, approximate=False)
    return [bytes(entry_id).decode() for entry_id in await pipe.execute()]


async def ready(store: RedisStore, subscription: Subscription, marker: Any = "ready") -> None:
    """Make sure ``store``'s reader reads the channel for ``subscription``: submit a
    ``marker`` (which waits for the reader) and wait until the subscriber has it."""
    sent = await store.submit(marker)
    assert seen(await take(subscription, 1)) == seen([sent])


async def entries(client: aioredis.Redis, key: str) -> list[tuple[str, dict[bytes, bytes]]]:
    """The entries of stream ``key``, as (id, fields)."""
    raw: Any = await client.xrange(key)
    return [(bytes(entry_id).decode(), dict(fields)) for entry_id, fields in raw]


async def floor_of(client: aioredis.Redis, channel: str) -> StreamId:
    """The floor of ``channel`` (its ``<channel>:floor`` key)."""
    raw: Any = await client.get(channel + ":floor")
    return stream_id(bytes(raw).decode())


async def floor_set(client: aioredis.Redis, channel: str) -> None:
    """Wait until ``channel``'s floor key exists: a reader sets it when it starts."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not await client.exists(channel + ":floor"):
        if loop.time() > deadline:
            pytest.fail(f"no floor key for {channel!r} within {TIMEOUT} s")
        await asyncio.sleep(0.01)


def unused_url() -> str:
    """A Redis URL on a loopback port nobody listens on."""
    return f"redis://127.0.0.1:{free_port()}/0"


# -- publishing and delivery ------------------------------------------------------------


async def test_submit_returns_stream_ids_and_subscribers_get_every_message(
    make_store: MakeStore, redis_client: aioredis.Redis, channel: str
) -> None:
    """Awaiting submit() gives each message its stream entry id, increasing; a
    subscriber gets every message in order with those ids and intact payloads."""
    store = make_store()
    payloads: list[Any] = [{"a": 1, "b": [1, None]}, "hello", [1, "two"], 42, 1.5, None, "héllo ✓"]
    async with store.subscribe() as subscription:
        messages = await publish(store, *payloads)
        evented = await store.submit({"price": 101.5}, event="quote")
        received = await take(subscription, len(payloads) + 1)
        assert await nothing_more(subscription) == []
    ids = [stream_id(m) for m in [*messages, evented]]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert [m.data for m in messages] == payloads
    assert seen(received) == seen([*messages, evented])
    # The stream holds the documented layout: data as JSON text, event if named.
    assert (await entries(redis_client, channel))[-2:] == [
        (messages[-1].id, {b"data": '"héllo ✓"'.encode()}),
        (evented.id, {b"data": b'{"price":101.5}', b"event": b"quote"}),
    ]
    assert store.snapshot()["published"] == len(payloads) + 1


async def test_pydantic_model_round_trips_through_the_stream(make_store: MakeStore) -> None:
    """With a schema, what goes through the stream comes out as model instances (a
    dict is validated, and coerced, on the way in)."""
    store = make_store(schema=Reading)
    async with store.subscribe() as subscription:
        sent = await publish(store, Reading(sensor="t1", value=1.5), {"sensor": "t2", "value": "2"})
        received = await take(subscription, 2)
    assert [m.data for m in received] == [
        Reading(sensor="t1", value=1.5),
        Reading(sensor="t2", value=2.0),
    ]
    assert [m.id for m in received] == [m.id for m in sent]
    assert received[1].text == '{"sensor":"t2","value":2.0}'


async def test_plain_submit_without_await_is_published(make_store: MakeStore) -> None:
    """submit() called plainly (a callback, fire and forget) still publishes, in order."""
    store = make_store()
    async with store.subscribe() as subscription:
        loop = asyncio.get_running_loop()
        for n in range(5):
            loop.call_soon(store.submit, n)
        received = await take(subscription, 5)
    assert [m.data for m in received] == [0, 1, 2, 3, 4]


async def test_live_subscriber_gets_only_what_is_added_after_it_subscribed(
    make_store: MakeStore,
) -> None:
    """A subscriber without an id gets nothing of the stream's past, and everything
    submitted after it subscribed, even on the very first round trip."""
    store = make_store()
    await publish(store, "old-1", "old-2")
    async with store.subscribe() as subscription:
        new = await store.submit("new")
        received = await take(subscription, 1)
        assert await nothing_more(subscription) == []
    assert seen(received) == seen([new])


async def test_invalid_messages_raise_at_once_and_never_reach_redis(
    make_store: MakeStore, redis_client: aioredis.Redis, channel: str
) -> None:
    """A message the schema refuses, one that cannot be encoded, or a bad event name
    raises from submit() itself; Redis never sees it, and later messages go on."""
    store = make_store(schema=Reading)
    untyped = make_store()
    first = await store.submit({"sensor": "t1", "value": 1})
    with pytest.raises(MessageValidationError) as caught:
        store.submit({"sensor": "t1", "value": "hot"})
    assert caught.value.errors[0]["loc"] == ["value"]
    with pytest.raises(InvalidField):
        store.submit({"sensor": "t1", "value": 2}, event="up\ndata: x")
    with pytest.raises(UnencodableMessage):
        untyped.submit(object())
    with pytest.raises(UnencodableMessage):
        untyped.submit(b"\xff\xfe")
    second = await store.submit({"sensor": "t2", "value": 3})
    assert [entry_id for entry_id, _ in await entries(redis_client, channel)] == [
        first.id,
        second.id,
    ]
    assert store.snapshot()["publish_failures"] == untyped.snapshot()["publish_failures"] == 0


def test_submit_needs_a_running_event_loop() -> None:
    """Outside a running loop, submit() raises RuntimeError saying so; nothing connects."""
    store = RedisStore("never-used", url=unused_url())
    with pytest.raises(RuntimeError, match="running event loop"):
        store.submit(1)
    asyncio.run(store.aclose())


@pytest.mark.parametrize(
    ("options", "says"),
    [
        pytest.param({"channel": ""}, "channel", id="empty-channel"),
        pytest.param({"history": 0}, "history", id="history-zero"),
        pytest.param({"publish_timeout": -1}, "publish_timeout", id="negative-timeout"),
    ],
)
def test_bad_options_are_refused_when_the_store_is_made(options: dict[str, Any], says: str) -> None:
    """An empty channel, no history (the most a resume replays) or a negative publish
    timeout raise ValueError at construction."""
    with pytest.raises(ValueError, match=says):
        RedisStore(**{"channel": "x", "url": unused_url(), **options})


def test_history_and_epoch_say_where_a_redis_store_keeps_them() -> None:
    """A RedisStore has no in-process history and no epoch: reading either raises
    AttributeError saying why (the stream holds the history, ids are entry ids) and
    what to use instead; the history settings stay readable. Nothing connects."""
    store = RedisStore("ticks", url=unused_url(), history=50, history_max_age=60)
    with pytest.raises(AttributeError, match="Redis Stream 'ticks'") as history:
        store.history  # noqa: B018
    for hint in ("XRANGE ticks", "last_event_id=", "history_limit (50)", "history_max_age (60)"):
        assert hint in str(history.value)
    with pytest.raises(AttributeError, match="entry ids of the Redis Stream 'ticks'") as epoch:
        store.epoch  # noqa: B018
    assert "'ticks:floor'" in str(epoch.value)
    assert not hasattr(store, "history")
    assert not hasattr(store, "epoch")
    assert (store.history_limit, store.history_max_age) == (50, 60)
    asyncio.run(store.aclose())


async def test_0x_style_keywords_and_lazy_import(make_store: MakeStore, redis_url: str) -> None:
    """``RedisStore(channel=..., host=..., port=...)`` works, ``debug=True`` is accepted,
    and ``tornadose.stores.RedisStore`` is the same class."""
    from tornadose.stores import RedisStore as LazyRedisStore

    assert LazyRedisStore is RedisStore
    where = urlsplit(redis_url)
    store = make_store(host=where.hostname, port=where.port or 6379, db=int(where.path[1:] or 0))
    async with store.subscribe() as subscription:
        message = await store.submit("legacy", debug=True)
        received = await take(subscription, 1)
    assert seen(received) == seen([message])


async def test_close_sends_what_was_submitted_then_refuses(make_store: MakeStore) -> None:
    """After shutdown() (0.x close()): what was submitted is still published, open
    subscriptions end, and new messages or subscribers raise StoreClosed."""
    store = make_store()
    other = make_store()  # same channel, still open: it sees what the closed one sent
    async with store.subscribe() as subscription, other.subscribe() as witness:
        await ready(other, witness)
        assert [m.data for m in await take(subscription, 1)] == ["ready"]
        pending = store.submit("last")
        store.shutdown()
        message = await pending
        assert seen(await take(witness, 1)) == seen([message])
        assert [m async for m in subscription] == []
    with pytest.raises(StoreClosed):
        store.submit("too late")
    with pytest.raises(StoreClosed):
        store.subscribe()


async def test_overflow_policy_applies_to_messages_from_redis(make_store: MakeStore) -> None:
    """A subscriber that falls ``max_queue`` behind is handled by the store's overflow
    policy: with drop_oldest it keeps the newest messages, and the drops are counted."""
    store = make_store(max_queue=3, overflow="drop_oldest")
    async with store.subscribe() as subscription:
        messages = await publish(store, *range(6))
        await wait_until(lambda: store.snapshot()["dropped"] == 3)
        received = await take(subscription, 3)
    assert seen(received) == seen(messages[3:])


async def test_history_is_the_streams_approximate_maxlen(
    make_store: MakeStore, redis_client: aioredis.Redis, channel: str
) -> None:
    """Without retention by age, publishing trims the stream to about ``history``
    entries (MAXLEN ~). (With it, the default, see test_redis_refusals_retention.)"""
    store = make_store(history=10, stream_retention=0)
    await publish(store, *range(400))
    length = await redis_client.xlen(channel)
    assert 10 <= length < 400


# -- Redis unreachable or refusing -------------------------------------------------------


async def test_unreachable_redis_makes_submit_raise_store_unavailable(
    make_store: MakeStore, logs: pytest.LogCaptureFixture
) -> None:
    """With Redis unreachable, awaiting submit() raises StoreUnavailable after
    publish_timeout (not published), counted and logged even if nobody awaits."""
    store = make_store(url=unused_url(), publish_timeout=0.2)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        await store.submit("lost")
    elapsed = time.monotonic() - started
    ignored = store.submit("ignored")  # never awaited
    await wait_until(ignored.done)
    assert caught.value.maybe_published is False
    assert isinstance(caught.value, ConnectionError)
    assert 0.15 <= elapsed < 2
    assert store.snapshot()["publish_failures"] == 2
    assert store.snapshot()["backend_errors"] > 0
    assert logged(logs, logging.WARNING, "message not published") == 2


async def test_message_redis_refuses_raises_store_unavailable(
    make_store: MakeStore, redis_client: aioredis.Redis, channel: str
) -> None:
    """If Redis refuses the XADD (the key is not a stream), submit() raises
    StoreUnavailable, not published, and the next channel's messages go on."""
    await redis_client.set(channel, "not a stream")
    store = make_store()
    fine = make_store(f"{channel}.fine")
    with pytest.raises(StoreUnavailable, match="refused") as caught:
        await store.submit(1)
    assert caught.value.maybe_published is False
    assert store.snapshot()["publish_failures"] == 1
    assert stream_id(await fine.submit(2)) > StreamId(0, 0)


async def test_a_batch_is_one_transaction_per_channel_never_one_spanning_channels(
    make_store: MakeStore, own_redis: OwnRedis, channel: str
) -> None:
    """Submissions to two channels made without an await in between go in one batch,
    sent as one MULTI/EXEC per channel (a transaction over several channels' keys
    fails with CROSSSLOT on Redis Cluster), each channel's entries in submission
    order, and each channel's subscriber gets its own, in order."""
    server = own_redis()
    names = [f"{channel}-a", f"{channel}-b"]
    stores = [make_store(name, url=server.url) for name in names]
    monitor_client = aioredis.Redis.from_url(server.url)
    probe = aioredis.Redis.from_url(server.url)
    commands: list[tuple[str, str]] = []  # (client, command) as MONITOR reports them

    async def watch() -> None:
        async with monitor_client.monitor() as monitor:
            async for command in monitor.listen():
                client = f"{command['client_address']}:{command['client_port']}"
                commands.append((client, command["command"]))

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        async with stores[0].subscribe() as first, stores[1].subscribe() as second:
            for store, subscription in zip(stores, (first, second), strict=True):
                await ready(store, subscription)
            while not any(text == "ECHO monitoring" for _, text in commands):
                await probe.echo("monitoring")
                await asyncio.sleep(0.01)
            commands.clear()
            sent = [stores[n % 2].submit(n) for n in range(8)]  # a, b, a, b...
            published = [await each for each in sent]
            batches = [await first.get_batch(), await second.get_batch()]
            await probe.echo("done")
            await wait_until(lambda: any(text == "ECHO done" for _, text in commands))
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await monitor_client.aclose()
        await probe.aclose()
    transactions: dict[str, list[list[str]]] = {}
    for client, text in commands:
        if client.startswith("lua"):
            continue  # the floor script's own commands
        if text == "MULTI":
            transactions.setdefault(client, []).append([])
        elif text == "EXEC":
            continue
        elif transactions.get(client) and text.startswith(("XADD", "EVAL")):
            transactions[client][-1].append(text)
    spans = [
        {name for name in names if any(f" {name} " in f"{text} " for text in each)}
        for per_client in transactions.values()
        for each in per_client
        if any(text.startswith("XADD") for text in each)
    ]
    assert sorted(map(sorted, spans)) == [[names[0]], [names[1]]]
    for offset, batch in enumerate(batches):
        assert seen(batch) == seen(published[offset::2])
        assert sorted(batch, key=stream_id) == batch


# -- over the wire: SSE, WebSocket, HTTP publishing -------------------------------------


async def test_sse_and_websocket_clients_get_the_same_messages(
    serve_store: StoreServer,
    tornado_server: TornadoStarter,
    uvicorn_server: UvicornStarter,
    make_store: MakeStore,
) -> None:
    """An SSE and a WebSocket client get the same ids and data in the same order,
    whether the message was submitted in Python or POSTed (202 with the stream id)."""
    store = make_store()
    endpoints = await serve_store(store, sse={"heartbeat": 0})
    url = await publish_url(endpoints.adapter, store, tornado_server, uvicorn_server)
    async with (
        connected(endpoints, "sse", store) as sse,
        connected(endpoints, "websocket", store) as ws,
    ):
        messages = await publish(store, {"a": 1}, "hello", [1, 2])
        async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as http:
            answer = await http.post(
                url + "?event=update",
                content=b'{"sensor": "t1", "value": 1.5}',
                headers={"content-type": "application/json"},
            )
        assert answer.status_code == 202, answer.text
        posted = PublishAccepted.model_validate_json(answer.content).id
        expected = [
            *map(plain, messages),
            Received("update", posted, '{"sensor":"t1","value":1.5}'),
        ]
        over_sse = await sse.take(4)
        assert await ws.take(4) == expected
        assert await sse.rest() == await ws.rest() == []
    assert over_sse == expected
    assert over_sse[1].text == "hello"  # a text message is sent as is, not as JSON
    assert stream_id(messages[-1]) < stream_id(posted)


async def test_post_answers_503_when_redis_is_unreachable(
    serve_store: StoreServer,
    tornado_server: TornadoStarter,
    uvicorn_server: UvicornStarter,
    make_store: MakeStore,
) -> None:
    """With Redis unreachable, a POST gets 503 ``store_unavailable`` after
    publish_timeout, while a subscriber stays connected and the reader reports down."""
    store = make_store(url=unused_url(), publish_timeout=0.2)
    endpoints = await serve_store(store, sse={"heartbeat": 0})
    url = await publish_url(endpoints.adapter, store, tornado_server, uvicorn_server)
    async with connected(endpoints, "sse", store) as client:
        async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as http:
            answer = await http.post(
                url, content=b'{"n": 1}', headers={"content-type": "application/json"}
            )
        assert await client.rest() == []
        assert len(store.subscribers) == 1
    assert answer.status_code == 503
    assert ErrorBody.model_validate_json(answer.content).error == "store_unavailable"
    snapshot = store.snapshot()
    assert (snapshot["publish_failures"], snapshot["backend_up"]) == (1, 0)


async def test_external_xadd_reaches_clients_with_its_event_name(
    serve_store: StoreServer,
    make_store: MakeStore,
    redis_client: aioredis.Redis,
    channel: str,
) -> None:
    """Entries another program adds with XADD reach SSE (``event:`` line) and
    WebSocket (``"event"`` key) clients, with the entry id as the message id."""
    store = make_store()
    endpoints = await serve_store(store, sse={"heartbeat": 0})
    async with (
        connected(endpoints, "sse", store) as sse,
        connected(endpoints, "websocket", store) as ws,
    ):
        marker = await store.submit("ready")
        assert await sse.take(1) == await ws.take(1) == [plain(marker)]
        quote_id = await xadd(redis_client, channel, {"data": '{"price": 101.5}', "event": "quote"})
        text_id = await xadd(redis_client, channel, {"data": '"hello"'})
        expected = [
            Received("quote", quote_id, '{"price":101.5}'),
            Received(None, text_id, "hello"),
        ]
        assert await sse.take(2) == expected
        assert await ws.take(2) == expected


# -- invalid external entries -----------------------------------------------------------

VALID = '{"sensor": "t1", "value": 1.5}'


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"value": VALID}, id="no-data-field"),
        pytest.param({"data": "not json"}, id="data-not-json"),
        pytest.param({"data": ""}, id="data-empty"),
        pytest.param({"data": "NaN"}, id="data-nan"),
        pytest.param({"data": b'"\xff\xfe"'}, id="data-not-utf8"),
        pytest.param({"data": '{"sensor": "t1"}'}, id="schema-violation"),
        pytest.param({"data": VALID, "event": "up\ndata: injected"}, id="event-with-lf"),
        pytest.param({"data": VALID, "event": "up\rdate"}, id="event-with-cr"),
        pytest.param({"data": VALID, "event": "up\x00date"}, id="event-with-nul"),
        pytest.param({"data": VALID, "event": b"\xff"}, id="event-not-utf8"),
    ],
)
async def test_invalid_external_entry_is_skipped_counted_and_logged(
    make_store: MakeStore,
    redis_client: aioredis.Redis,
    channel: str,
    logs: pytest.LogCaptureFixture,
    fields: dict[str, str | bytes],
) -> None:
    """An entry that is not a valid message of the channel never reaches subscribers;
    it is counted in invalid_entries, logged as a warning, and the next one arrives."""
    store = make_store(schema=Reading)
    async with store.subscribe() as subscription:
        await ready(store, subscription, Reading(sensor="ready", value=0))
        invalid_id = await xadd(redis_client, channel, fields)
        valid_id = await xadd(redis_client, channel, {"data": VALID})
        received = await take(subscription, 1)
    assert seen(received) == [(None, valid_id, Reading(sensor="t1", value=1.5))]
    assert store.snapshot()["invalid_entries"] == 1
    assert logged(logs, logging.WARNING, f"skipped an invalid entry of channel {channel!r}") == 1
    assert logged(logs, logging.WARNING, invalid_id) == 1


async def test_invalid_entries_are_skipped_in_a_replay_too(
    make_store: MakeStore, redis_client: aioredis.Redis, channel: str
) -> None:
    """A resuming subscriber is replayed only the valid entries it missed."""
    store = make_store(schema=Reading)
    first = await store.submit(Reading(sensor="a", value=1))
    await xadd(redis_client, channel, {"data": "not json"})
    last = await store.submit(Reading(sensor="b", value=2))
    async with store.subscribe(last_event_id=first.id) as subscription:
        received = await take(subscription, 2)
    assert seen(received) == [
        (RESUMED_EVENT, first.id, {"after": first.id, "replayed": 1}),
        *seen([last]),
    ]


# -- resuming ---------------------------------------------------------------------------


async def test_resume_replays_what_was_missed_then_live(
    serve_store: StoreServer, make_store: MakeStore, transport: str
) -> None:
    """A client reconnecting with the id it saw last (SSE: Last-Event-ID header;
    WebSocket: ``?last_event_id=``) gets tornadose.resumed, the missed messages, then
    live ones: no gap, no duplicate."""
    store = make_store()
    endpoints = await serve_store(store, sse={"heartbeat": 0})
    messages = await publish(store, 1, 2, 3, 4, 5)
    async with connected(endpoints, transport, store, messages[1].id) as client:
        first = await client.take(4)
        live = await publish(store, 6, 7)
        rest = await client.take(2) + await client.rest()
    assert first == [resumed(messages[1].id, 3), *map(plain, messages[2:])]
    assert rest == [plain(m) for m in live]
    assert (store.snapshot()["replayed"], store.snapshot()["resets"]) == (3, 0)


async def test_resume_when_up_to_date_replays_nothing(
    serve_store: StoreServer, make_store: MakeStore, transport: str
) -> None:
    """A client that missed nothing gets tornadose.resumed with 0 replayed, then live."""
    store = make_store(history_max_age=0.1)
    endpoints = await serve_store(store, sse={"heartbeat": 0})
    messages = await publish(store, 1, 2)
    await asyncio.sleep(0.15)  # even with every entry older than history_max_age
    async with connected(endpoints, transport, store, messages[-1].id) as client:
        first = await client.take(1)
        live = await publish(store, 3)
        rest = await client.take(1) + await client.rest()
    assert first == [resumed(messages[-1].id, 0)]
    assert rest == [plain(live[0])]


@dataclass(frozen=True)
class ResetCase:
    """Published payloads, the id a client resumes with, and the reason it must get."""

    reason: str
    last_event_id: Callable[[list[Message]], str | None]
    options: dict[str, Any] = field(default_factory=dict)
    published: int = 10
    trim_to: int | None = None  # XTRIM the stream to exactly this many entries first
    wait: float = 0.0  # seconds to wait before resuming


def later(message: Message, ms: int = 0, seq: int = 0) -> str:
    """An id after ``message``'s, that no entry has."""
    parsed = stream_id(message)
    return f"{parsed.ms + ms}-{parsed.seq + seq}"


RESET_CASES = [
    pytest.param(ResetCase("malformed_id", lambda m: "garbage"), id="malformed-garbage"),
    pytest.param(ResetCase("malformed_id", lambda m: "1526919030474"), id="malformed-no-seq"),
    pytest.param(ResetCase("malformed_id", lambda m: "1-2-3"), id="malformed-three-parts"),
    pytest.param(ResetCase("malformed_id", lambda m: f"{2**64}-0"), id="malformed-overflow"),
    pytest.param(ResetCase("malformed_id", lambda m: f"{m[2].id}x"), id="malformed-suffix"),
    pytest.param(ResetCase("unknown_epoch", lambda m: "1-0"), id="below-floor"),
    pytest.param(ResetCase("unknown_epoch", lambda m: "0-0"), id="zero"),
    pytest.param(
        ResetCase("unknown_id", lambda m: later(m[-1], ms=60_000)), id="unknown-id-far-ahead"
    ),
    pytest.param(ResetCase("unknown_id", lambda m: later(m[-1], seq=1)), id="unknown-id-next"),
    pytest.param(
        ResetCase("history_too_short", lambda m: m[2].id, {"history": 5}),
        id="more-than-history-missed",
    ),
    pytest.param(
        ResetCase("history_too_short", lambda m: m[1].id, trim_to=3), id="id-trimmed-away"
    ),
    pytest.param(
        ResetCase("history_too_short", lambda m: m[0].id, {"history_max_age": 0.3}, 3, wait=0.4),
        id="missed-older-than-max-age",
    ),
]


@pytest.mark.parametrize("case", RESET_CASES)
async def test_resume_that_cannot_be_filled_gets_reset_then_live(
    serve_store: StoreServer,
    make_store: MakeStore,
    redis_client: aioredis.Redis,
    channel: str,
    case: ResetCase,
) -> None:
    """An id whose gap cannot be filled gets tornadose.reset with the reason and, as
    its id, the newest entry's; then the next live message, nothing in between."""
    store = make_store(**case.options)
    endpoints = await serve_store(store, sse={"heartbeat": 0})
    messages = await publish(store, *range(1, case.published + 1))
    if case.trim_to is not None:
        await redis_client.xtrim(channel, maxlen=case.trim_to, approximate=False)
    await asyncio.sleep(case.wait)
    sent = case.last_event_id(messages)
    assert sent is not None
    async with connected(endpoints, "sse", store, sent) as client:
        first = await client.take(1)
        live = await publish(store, "live")
        after = await client.take(1)
    assert first == [reset(case.reason, sent, messages[-1].id)]
    assert after == [plain(live[0])]
    assert (store.snapshot()["resets"], store.snapshot()["replayed"]) == (1, 0)


async def test_reconnecting_with_the_reset_id_resumes_from_there(
    serve_store: StoreServer, make_store: MakeStore
) -> None:
    """The reset's id is the newest entry: reconnecting with it resumes exactly."""
    store = make_store(history=5)
    endpoints = await serve_store(store, sse={"heartbeat": 0})
    messages = await publish(store, *range(1, 11))
    async with connected(endpoints, "sse", store, messages[0].id) as client:
        [signal] = await client.take(1)
    assert (signal.event, signal.id) == (RESET_EVENT, messages[-1].id)
    missed = await publish(store, 11, 12)
    async with connected(endpoints, "sse", store, signal.id) as client:
        received = await client.take(3)
    assert received == [resumed(messages[-1].id, 2), *map(plain, missed)]


async def test_resume_while_publishing_gets_every_message_exactly_once(
    serve_store: StoreServer, make_store: MakeStore
) -> None:
    """A client resuming while messages keep being published gets every one after its
    id exactly once, in order: live ones wait behind the replay."""
    store = make_store()
    endpoints = await serve_store(store, sse={"heartbeat": 0})
    published: list[Message] = []

    async def keep_publishing() -> None:
        for n in range(300):
            published.append(await store.submit(n))

    publisher = asyncio.ensure_future(keep_publishing())
    try:
        await wait_until(lambda: len(published) >= 100)
        after = published[49]
        async with (
            connected(endpoints, "sse", store, after.id) as client,
            store.subscribe(last_event_id=published[69].id) as subscription,
        ):
            [control] = await client.take(1)
            await asyncio.wait_for(publisher, TIMEOUT)
            received = await client.take(250)
            extra = await client.rest()
            python = await take(subscription, 231)
    finally:
        publisher.cancel()
    assert control.event == RESUMED_EVENT
    assert control.value["after"] == after.id
    # At least those published before it connected; not all: publishing went on.
    assert 50 <= control.value["replayed"] < 250
    assert received == [plain(m) for m in published[50:]]
    assert extra == []
    assert seen(python)[1:] == seen(published[70:])
    assert python[0].event == RESUMED_EVENT


# -- several processes ------------------------------------------------------------------


def other_process(make_store: MakeStore, redis_url: str, **options: Any) -> RedisStore:
    """A store on the same channel with other connection settings (host and port
    instead of the URL): a reader of its own, as in another process."""
    where = urlsplit(redis_url)
    return make_store(
        host=where.hostname, port=where.port or 6379, db=int(where.path[1:] or 0), **options
    )


async def test_client_resumes_on_another_process(
    serve_store: StoreServer, make_store: MakeStore, redis_url: str
) -> None:
    """A client that read from one server reconnects to another (another reader) with
    its last id: it gets what it missed, then what either one publishes."""
    first_store = make_store()
    second_store = other_process(make_store, redis_url)
    assert first_store.connection is not second_store.connection
    first = await serve_store(first_store, sse={"heartbeat": 0})
    second = await serve_store(second_store, sse={"heartbeat": 0})
    async with connected(first, "sse", first_store) as client:
        seen_there = await publish(first_store, 1, 2)
        assert await client.take(2) == [plain(m) for m in seen_there]
    missed = await publish(first_store, 3)
    async with connected(second, "sse", second_store, seen_there[-1].id) as client:
        replay = await client.take(2)
        live = [*await publish(first_store, 4), *await publish(second_store, 5)]
        rest = await client.take(2) + await client.rest()
    assert replay == [resumed(seen_there[-1].id, 1), plain(missed[0])]
    assert rest == [plain(m) for m in live]


async def test_resume_from_ids_this_process_has_not_read_yet(
    make_store: MakeStore, redis_url: str
) -> None:
    """Resuming on a process whose reader is behind (the ids were just published by
    another one) still gives each later message exactly once, in order."""
    here = make_store()
    elsewhere = other_process(make_store, redis_url)
    async with here.subscribe() as live:
        await ready(here, live)
        sent = await publish(elsewhere, 1, 2, 3)
        async with contextlib.AsyncExitStack() as stack:
            resuming = [
                await stack.enter_async_context(here.subscribe(last_event_id=m.id)) for m in sent
            ]
            # Read at once, as a transport does: nothing may come before the replay.
            # After the n-th of three: the control message, 3 - n of those, and the 4th.
            readers = [asyncio.ensure_future(take(s, 5 - n)) for n, s in enumerate(resuming, 1)]
            later_one = await publish(elsewhere, 4)
            received = await asyncio.gather(*readers)
    for n, messages in enumerate(received):
        control, *rest = messages
        assert (control.event, control.data["after"]) == (RESUMED_EVENT, sent[n].id)
        assert seen(rest) == seen([*sent[n + 1 :], *later_one])


# -- Redis trimming, outages and restarts -----------------------------------------------


async def test_entries_trimmed_before_the_reader_got_them_give_data_lost(
    make_store: MakeStore,
    redis_client: aioredis.Redis,
    channel: str,
    logs: pytest.LogCaptureFixture,
) -> None:
    """When entries are trimmed before this process read them, its subscribers get
    tornadose.reset (data_lost) and then the entries that are left: never a silent gap."""
    store = make_store()
    async with store.subscribe() as subscription:
        last_seen = await store.submit(0)
        assert seen(await take(subscription, 1)) == seen([last_seen])
        added = await burst(redis_client, channel, range(1, 21), maxlen=5)
        received = await take(subscription, 6)
    assert seen(received) == [
        (RESET_EVENT, None, {"reason": "data_lost", "last_event_id": last_seen.id}),
        *[(None, entry_id, n) for n, entry_id in zip(range(16, 21), added[15:], strict=True)],
    ]
    assert store.snapshot()["resets"] == 1
    assert logged(logs, logging.ERROR, "trimmed before this process read them") == 1


async def test_trimming_before_a_fresh_reader_got_anything_gives_data_lost(
    make_store: MakeStore, redis_client: aioredis.Redis, channel: str
) -> None:
    """A reader that started on an empty channel reports a loss if entries are
    trimmed before it read them."""
    store = make_store()
    async with store.subscribe() as subscription:
        await floor_set(redis_client, channel)  # the reader has started
        added = await burst(redis_client, channel, range(1, 11), maxlen=3)
        received = await take(subscription, 4)
    assert (received[0].event, received[0].data["reason"]) == (RESET_EVENT, "data_lost")
    assert [(m.id, m.data) for m in received[1:]] == list(zip(added[7:], [8, 9, 10], strict=True))


async def test_trimming_only_entries_already_delivered_is_no_loss(
    make_store: MakeStore, redis_client: aioredis.Redis, channel: str
) -> None:
    """Trimming that removes only entries this process already delivered loses
    nothing: subscribers get the new entries and no reset."""
    store = make_store()
    async with store.subscribe() as subscription:
        delivered = await store.submit(0)
        assert seen(await take(subscription, 1)) == seen([delivered])
        # Five new entries, trimmed to five: only the delivered entry goes.
        added = await burst(redis_client, channel, range(1, 6), maxlen=5)
        received = await take(subscription, 5)
    assert seen(received) == [(None, entry_id, n) for n, entry_id in enumerate(added, 1)]
    assert store.snapshot()["resets"] == 0


async def test_outage_keeps_clients_and_loses_nothing_when_redis_keeps_its_data(
    serve_store: StoreServer,
    make_store: MakeStore,
    own_redis: OwnRedis,
    logs: pytest.LogCaptureFixture,
) -> None:
    """While Redis is down, an SSE client stays connected with heartbeats and the store
    reports the backend down; once Redis is back (with its data), the reader goes on
    after the last entry it delivered: nothing is missed, and there is no reset."""
    server = own_redis(persistent=True)
    store = make_store(url=server.url)
    endpoints = await serve_store(store, sse={"heartbeat": 0.2})
    async with raw_sse(endpoints.events) as stream:
        await wait_until(lambda: len(store.subscribers) == 1)
        before = await store.submit("before")
        await wait_until(lambda: len(stream.events) == 1)
        server.kill()
        await wait_until(lambda: store.snapshot()["backend_up"] == 0)
        beats = len(stream.comments)
        await asyncio.sleep(0.7)
        assert len(stream.comments) >= beats + 2  # heartbeats go on
        assert store.snapshot()["backend_errors"] > 0
        assert len(store.subscribers) == 1
        server.start()
        meanwhile = await store.submit("meanwhile")  # likely before the reader is back
        await wait_until(lambda: store.snapshot()["backend_up"] == 1, timeout=10)
        after = await store.submit("after")
        await wait_until(lambda: len(stream.events) == 3)
        await asyncio.sleep(QUIET)
    assert [(e.type, e.data, e.last_event_id) for e in stream.events] == [
        ("message", "before", before.id),
        ("message", "meanwhile", meanwhile.id),
        ("message", "after", after.id),
    ]
    assert store.snapshot()["resets"] == 0
    assert logged(logs, logging.ERROR, "Redis reader lost its connection") == 1
    assert logged(logs, logging.INFO, "Redis reader reconnected") == 1


async def test_submit_during_outage_fails_fast_or_waits_for_redis(
    make_store: MakeStore, own_redis: OwnRedis
) -> None:
    """During an outage, submit() with a short publish_timeout raises StoreUnavailable
    (not published); with a long one it waits, and is published once Redis is back."""
    server = own_redis(persistent=True)
    hasty = make_store(url=server.url, publish_timeout=0.3)
    patient = make_store(url=server.url, publish_timeout=15)
    async with hasty.subscribe() as subscription:
        first = await hasty.submit("first")
        assert seen(await take(subscription, 1)) == seen([first])
        server.kill()
        with pytest.raises(StoreUnavailable) as caught:
            await hasty.submit("lost")
        assert caught.value.maybe_published is False
        waiting = patient.submit("kept")
        await asyncio.sleep(0.5)
        assert not waiting.done()
        server.start()
        kept = await asyncio.wait_for(waiting, 15)
        received = await take(subscription, 1)
        assert await nothing_more(subscription) == []
    assert seen(received) == seen([kept])
    assert stream_id(first) < stream_id(kept)
    assert (hasty.snapshot()["publish_failures"], patient.snapshot()["publish_failures"]) == (1, 0)
    client = aioredis.Redis.from_url(server.url)
    try:
        stored = await entries(client, hasty.channel)
    finally:
        await client.aclose()
    assert [fields[b"data"] for _, fields in stored] == [b'"first"', b'"kept"']


async def test_restart_without_persistence_resets_clients(
    serve_store: StoreServer, make_store: MakeStore, own_redis: OwnRedis
) -> None:
    """A Redis restart that lost the data gives live clients tornadose.reset
    (data_lost); a client resuming with an id from before gets unknown_epoch."""
    server = own_redis(persistent=False)
    store = make_store(url=server.url)
    endpoints = await serve_store(store, sse={"heartbeat": 0})
    async with connected(endpoints, "sse", store) as client:
        old = await store.submit("old")
        assert await client.take(1) == [plain(old)]
        server.kill()
        server.start()
        new = await store.submit("new")
        signal, message = await client.take(2)
    assert (signal.event, signal.value) == (
        RESET_EVENT,
        {"reason": "data_lost", "last_event_id": old.id},
    )
    assert message == plain(new)
    assert stream_id(old) < stream_id(new)
    async with connected(endpoints, "sse", store, old.id) as client:
        assert await client.take(1) == [reset("unknown_epoch", old.id, new.id)]
    assert store.snapshot()["resets"] == 2


# -- connections ------------------------------------------------------------------------


async def blocked_readers(admin: aioredis.Redis) -> int:
    """The most connections seen blocked in XREAD at once, over ten looks."""
    most = 0
    for _ in range(10):
        clients = await admin.client_list()
        blocked = [c for c in clients if c.get("cmd") == "xread" and "b" in c.get("flags", "")]
        most = max(most, len(blocked))
        await asyncio.sleep(0.05)
    return most


async def test_one_reader_per_connection_settings(
    make_store: MakeStore, own_redis: OwnRedis, channel: str
) -> None:
    """Stores with the same connection settings share one reading connection, however
    many channels they read; other settings get a reader of their own."""
    server = own_redis()
    stores = [make_store(f"{channel}.{n}", url=server.url) for n in range(3)]
    other = make_store(f"{channel}.other", host="127.0.0.1", port=server.port)
    assert stores[0].connection is stores[1].connection is stores[2].connection
    assert other.connection is not stores[0].connection
    admin = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        async with contextlib.AsyncExitStack() as stack:
            subscriptions = [await stack.enter_async_context(s.subscribe()) for s in stores]
            for store, subscription in zip(stores, subscriptions, strict=True):
                await ready(store, subscription)
            one = await blocked_readers(admin)
            await ready(other, await stack.enter_async_context(other.subscribe()))
            two = await blocked_readers(admin)
    finally:
        await admin.aclose()
    assert (one, two) == (1, 2)


async def read_keys(admin: aioredis.Redis, seconds: float) -> set[str]:
    """The keys Redis was asked to XREAD during the next ``seconds``."""
    keys: set[str] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    async with admin.monitor() as monitor:
        while (left := deadline - loop.time()) > 0:
            try:
                info = await asyncio.wait_for(monitor.next_command(), left)
            except TimeoutError:
                break
            words = info["command"].split()
            if words and words[0].upper() == "XREAD":
                keys.update(words[words.index("STREAMS") + 1 :])
    return keys


async def test_only_channels_with_subscribers_here_are_read(
    make_store: MakeStore, own_redis: OwnRedis, channel: str
) -> None:
    """A process reads a channel only while it has subscribers for it there."""
    server = own_redis()
    watched = make_store(f"{channel}.watched", url=server.url)
    unwatched = make_store(f"{channel}.unwatched", url=server.url)
    admin = aioredis.Redis.from_url(server.url, decode_responses=True)
    try:
        async with watched.subscribe() as subscription:
            await ready(watched, subscription)
            await unwatched.submit("nobody here reads this")
            before = await read_keys(admin, 1.2)
            async with unwatched.subscribe() as passing:
                await ready(unwatched, passing)
            await asyncio.sleep(1.1)  # the read in flight when it left ends
            after = await read_keys(admin, 1.2)
    finally:
        await admin.aclose()
    assert watched.channel in before
    assert watched.channel in after
    assert unwatched.channel not in before | after


# -- observation ------------------------------------------------------------------------


def metric_values(registry_text: str) -> dict[tuple[str, str], float]:
    """{(sample name, store label): value} of a Prometheus text exposition (samples
    with other labels too, such as ``kind``, summed)."""
    values: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(registry_text):
        for sample in family.samples:
            key = (sample.name, sample.labels.get("store", ""))
            values[key] = values.get(key, 0) + sample.value
    return values


async def test_metrics_report_backend_health_and_failures(
    make_store: MakeStore, redis_client: aioredis.Redis, channel: str
) -> None:
    """The Prometheus metrics show each store's backend state, invalid entries and
    publish failures, as snapshot() does."""
    healthy = make_store()
    down = make_store(f"{channel}.down", url=unused_url(), publish_timeout=0.2)
    async with healthy.subscribe() as subscription, down.subscribe():
        await ready(healthy, subscription)
        await xadd(redis_client, channel, {"data": "not json"})
        valid = await healthy.submit("valid")
        assert seen(await take(subscription, 1)) == seen([valid])
        with pytest.raises(StoreUnavailable):
            await down.submit("lost")
        await wait_until(lambda: down.snapshot()["backend_up"] == 0)
        text = generate_latest(registry_for({"healthy": healthy, "down": down})).decode()
    values = metric_values(text)
    assert values[("tornadose_backend_up", "healthy")] == 1
    assert values[("tornadose_backend_up", "down")] == 0
    assert values[("tornadose_invalid_entries_total", "healthy")] == 1
    assert values[("tornadose_invalid_entries_total", "down")] == 0
    assert values[("tornadose_publish_failures_total", "healthy")] == 0
    assert values[("tornadose_publish_failures_total", "down")] == 1
    assert values[("tornadose_backend_errors_total", "healthy")] == 0
    assert values[("tornadose_backend_errors_total", "down")] > 0
    kinds = {
        sample.labels["kind"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "tornadose_backend_errors_total" and sample.labels["store"] == "down"
    }
    assert set(kinds) == {"unreachable", "busy", "refused", "redirected", "other"}
    assert kinds["unreachable"] > 0
    assert kinds["refused"] == kinds["redirected"] == kinds["other"] == 0
    assert values[("tornadose_published_total", "healthy")] == 2  # "ready" and "valid"


async def test_floor_is_set_once_and_marks_the_stream_generation(
    make_store: MakeStore, redis_client: aioredis.Redis, channel: str
) -> None:
    """The floor key of a new channel is Redis's clock at first use, at or below the
    first id, and it stays put; a stream made by another program gets its first
    entry as floor when tornadose first uses it."""
    seconds, microseconds = await redis_client.time()
    started_ms = seconds * 1000 + microseconds // 1000
    store = make_store()
    first = await store.submit(1)
    floor = await floor_of(redis_client, channel)
    assert started_ms - 1 <= floor.ms
    assert floor <= stream_id(first)
    await publish(store, 2, 3)
    await redis_client.xtrim(channel, maxlen=1, approximate=False)
    await publish(store, 4)
    assert await floor_of(redis_client, channel) == floor

    elsewhere = f"{channel}.external"
    external_first = await xadd(redis_client, elsewhere, {"data": "1"})
    await xadd(redis_client, elsewhere, {"data": "2"})
    answer: Any = await redis_client.eval(ENSURE_FLOOR, 2, elsewhere, elsewhere + ":floor")
    assert bytes(answer).decode() == external_first


# -- known bugs -------------------------------------------------------------------------


async def test_subscriber_leaving_at_once_does_not_fail_a_publish(make_store: MakeStore) -> None:
    """A subscriber that leaves before its channel's reader started does not keep
    messages submitted meanwhile from being published (Redis is up)."""
    store = make_store(publish_timeout=0.5)
    subscription = store.subscribe()
    published = store.submit("x")
    await asyncio.sleep(0)  # the writer now waits for the subscriber's reader to start
    subscription.close()
    message = await asyncio.wait_for(published, 5)
    assert message.data == "x"


async def test_new_channel_is_read_within_a_round_trip_while_another_is_busy(
    make_store: MakeStore, redis_client: aioredis.Redis, channel: str
) -> None:
    """The first subscriber of a channel gets what another program adds 0.3 s after it
    subscribed, even if the process's reader was busy with another channel then."""
    busy = make_store(f"{channel}.busy")
    quiet = make_store()
    async with busy.subscribe() as busy_subscription:
        await ready(busy, busy_subscription)  # the reader goes on reading after this
        async with quiet.subscribe() as subscription:
            await asyncio.sleep(0.3)
            entry_id = await xadd(redis_client, channel, {"data": '"hello"'})
            received = await subscription.get_batch(timeout=0.7)
    assert seen(received) == [(None, entry_id, "hello")]


class Tagged(pydantic.BaseModel):
    """A schema whose validator fails with AttributeError (not ValueError) on a non-str."""

    tag: str

    @pydantic.field_validator("tag", mode="before")
    @classmethod
    def lower(cls, value: Any) -> Any:
        return value.lower()


async def test_entry_that_breaks_the_schema_validator_does_not_stop_the_reader(
    make_store: MakeStore, redis_client: aioredis.Redis, channel: str
) -> None:
    """An external entry on which the schema's own validator raises something other
    than ValueError is still only an invalid entry: skipped, counted, and the next
    valid entry arrives."""
    store = make_store(schema=Tagged)
    try:
        async with store.subscribe() as subscription:
            await ready(store, subscription, {"tag": "ready"})
            await xadd(redis_client, channel, {"data": '{"tag": 5}'})
            valid_id = await xadd(redis_client, channel, {"data": '{"tag": "B"}'})
            received = await subscription.get_batch(timeout=0.7)
        assert seen(received) == [(None, valid_id, Tagged(tag="b"))]
        assert store.snapshot()["invalid_entries"] == 1
    finally:
        # Retrieve the dead reader's exception, so that asyncio does not report it
        # ("Task exception was never retrieved") later, during another test.
        reader = store.connection.reader.task
        if reader is not None and reader.done() and not reader.cancelled():
            reader.exception()
