"""``examples/redis_hub.py`` as real server processes sharing a channel through real Redis.

Each test starts the example as subprocesses (Tornado and uvicorn, one or several
workers), each on a port of its own, with Redis keys under a prefix of the test's own,
and talks to them as users do: real SSE (httpx-sse) and WebSocket (websockets) clients,
``POST /chat/publish``, and, from the test process, ``RedisStore.submit()`` and a raw
``XADD``. What is checked:

* every client of every process gets every message once, in the stream's order;
* a client that hung up resumes on another process from the id it last saw;
* Redis killed and restarted while messages are published, with and without
  persistence: subscribers keep their connection, no acknowledged message is lost
  without a ``tornadose.reset`` saying so;
* several workers on one port (uvicorn ``--workers 2``, Tornado's forked processes).

A client that sends no ``Last-Event-ID`` gets what its process reads after it
subscribed, so the tests first publish warm-up messages until every client has one,
and count from there (:func:`warm_up`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil  # type: ignore[import-untyped]
import pytest
import redis
import redis.asyncio as aioredis
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

from tests.clients import real_events
from tests.conftest import free_port
from tests.programs import Program, StartProgram, wait_for_exit, wait_for_port
from tests.redis_support import RedisServer
from tornadose.backends.redis.store import RedisStore
from tornadose.errors import StoreUnavailable
from tornadose.schemas import Envelope

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "redis_hub.py"

#: Seconds a client may take to connect (a uvicorn worker may still be starting).
CONNECT_TIMEOUT = 10.0
#: Seconds an SSE read may wait: longer than the example's 15 s heartbeat.
READ_TIMEOUT = 30.0
#: Seconds a published message may take to reach every client.
DELIVERY_TIMEOUT = 10.0
#: Seconds the test's own publisher waits for an unreachable Redis.
PUBLISH_TIMEOUT = 0.5
RESUMED, RESET = "tornadose.resumed", "tornadose.reset"
#: What must never show up on a server's stderr.
TRACEBACK_MARKERS = ("Traceback", "Exception ignored", "Task was destroyed", "never retrieved")


def chat(text: str) -> dict[str, str]:
    """A valid message of the example's ``chat`` channel."""
    return {"user": "tester", "text": text}


def stream_order(entry_id: str | None) -> tuple[int, int]:
    """A Redis stream id ``<ms>-<seq>`` as a sortable pair."""
    assert entry_id is not None
    ms, dash, seq = entry_id.partition("-")
    assert dash, f"not a stream id: {entry_id!r}"
    return int(ms), int(seq)


def assert_strictly_increasing(ids: Sequence[str | None], who: object) -> None:
    for before, after in itertools.pairwise(ids):
        assert stream_order(before) < stream_order(after), f"{who}: {before} then {after}"


async def eventually(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` every 10 ms for up to ``timeout`` s; whether it became true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


# -- the example's processes --------------------------------------------------------


@dataclass
class Hub:
    """One run of ``redis_hub.py``: a server, maybe several worker processes, one port."""

    server: str
    port: int
    workers: int
    program: Program
    #: Every process of the program seen so far (``psutil.Process`` by pid).
    known: dict[int, Any] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def events_url(self) -> str:
        return f"{self.base}/chat/events"

    def ws_url(self, query: str = "") -> str:
        return f"ws://127.0.0.1:{self.port}/chat/ws{query}"

    def family(self) -> list[Any]:
        """The program's processes now (the parent and its descendants); remembered."""
        try:
            parent = psutil.Process(self.program.proc.pid)
            processes = [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            processes = []
        for process in processes:
            self.known.setdefault(process.pid, process)
        return processes

    def workers_now(self) -> list[Any]:
        """The processes that serve clients: the forked or spawned workers listening on
        the port (the program itself with one worker)."""
        family = self.family()
        if self.workers == 1:
            return family[:1]
        return [p for p in family[1:] if self._sockets(p, psutil.CONN_LISTEN)]

    def serving(self, clients: Sequence[Client]) -> dict[int, int]:
        """How many of ``clients``' connections each worker holds, by pid."""
        ports = {client.local_port for client in clients}
        return {
            worker.pid: sum(
                1
                for s in self._sockets(worker, psutil.CONN_ESTABLISHED)
                if s.raddr and s.raddr[1] in ports
            )
            for worker in self.workers_now()
        }

    def _sockets(self, process: Any, status: str) -> list[Any]:
        """``process``'s TCP sockets on the hub's port in state ``status``."""
        try:
            sockets = process.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            return []
        return [s for s in sockets if s.status == status and s.laddr and s.laddr[1] == self.port]

    def send_signal(self, signum: signal.Signals) -> None:
        """Signal every process of the program (``SIGSTOP``/``SIGCONT`` pause it)."""
        for process in self.family():
            with suppress(psutil.NoSuchProcess):
                process.send_signal(signum)

    def kill(self) -> None:
        """Kill the program and every worker: the parent first, since Tornado's would
        fork a new child for every one killed."""
        family = [*self.known.values(), *self.family()]
        self.program.proc.kill()
        for process in family:
            with suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(family, timeout=5)

    def assert_no_traceback(self) -> None:
        err = self.program.stderr_text()
        for marker in TRACEBACK_MARKERS:
            assert marker not in err, f"{marker!r} on {self.server}'s stderr\n{err}"


HubStarter = Callable[..., Awaitable[Hub]]


@pytest.fixture
def prefix() -> str:
    """A Redis key prefix of the test's own (``start_hub`` deletes its keys afterwards)."""
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def start_hub(start_program: StartProgram) -> Iterator[HubStarter]:
    """``hub = await start_hub("tornado", redis_url, prefix, workers=1)`` runs the example
    on a free port and waits until it listens (and until all its workers exist).

    When the test ends, every process of every hub is killed, workers included, then
    the keys under each hub's prefix are deleted (unless that Redis is gone already).
    """
    hubs: list[tuple[Hub, str, str]] = []

    async def start(server: str, redis_url: str, key_prefix: str, *, workers: int = 1) -> Hub:
        port = free_port()
        program = start_program(
            [
                *(sys.executable, str(EXAMPLE), "--server", server),
                *("--workers", str(workers), "--port", str(port)),
                *("--redis", redis_url, "--prefix", key_prefix, "--tick", "0"),
            ],
            cwd=REPO,
        )
        hub = Hub(server, port, workers, program)
        hubs.append((hub, redis_url, key_prefix))
        await wait_for_port(program, port)
        if not await eventually(lambda: len(hub.workers_now()) == workers, 15):
            pytest.fail(f"{workers} workers did not start\n{program.describe()}")
        return hub

    yield start
    for hub, _, _ in hubs:
        hub.kill()
    for redis_url, key_prefix in {(url, key) for _, url, key in hubs}:
        if "cluster=" in redis_url:
            continue  # a test's own Redis Cluster: killed with its keys
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=2)
        try:
            keys = list(client.scan_iter(match=key_prefix + "*"))
            if keys:
                client.delete(*keys)
        except redis.ConnectionError:
            pass  # a test's own Redis, already stopped: nothing left to delete
        finally:
            client.close()


# -- clients ------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    """What a client received: a message (``event`` is ``None``) or a control event.

    Over SSE an event without an ``id:`` field carries the previous one (the spec's
    last event id): compare control events by ``event`` and ``data``."""

    event: str | None
    id: str | None
    data: Any


def message(entry_id: str, data: Any) -> Event:
    return Event(None, entry_id, data)


class Client:
    """One SSE or WebSocket connection to a process, read in the background.

    ``received`` holds every message and control event in arrival order. The client
    connects once and never reconnects, so ``alive`` says whether the very same
    connection lasted. With ``stop_after``, it hangs up after the message whose
    ``text`` is that.
    """

    def __init__(
        self,
        kind: str,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        stop_after: str | None = None,
    ) -> None:
        assert kind in ("sse", "ws")
        self.kind, self.url, self.headers, self.stop_after = kind, url, headers or {}, stop_after
        self.received: list[Event] = []
        self.failure: BaseException | None = None
        #: The client's side of the connection's port (SSE only; 0 until connected).
        self.local_port = 0
        self._opened = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        tail = [(e.event, e.id) for e in self.received[-3:]]
        return (
            f"<{self.kind} {self.url} {self.headers or ''} received={len(self.received)} "
            f"last={tail} alive={self.alive} failure={self.failure!r}>"
        )

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    @property
    def messages(self) -> list[Event]:
        return [e for e in self.received if e.event is None]

    def has(self, entry_id: str) -> bool:
        return any(e.id == entry_id for e in self.messages)

    def since(self, entry_id: str) -> list[Event]:
        """What arrived after the message ``entry_id``."""
        for n, event in enumerate(self.received):
            if event.event is None and event.id == entry_id:
                return self.received[n + 1 :]
        pytest.fail(f"{self!r} never got {entry_id}")

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Client]:
        """Connect, read in the background until the block ends, then hang up."""
        task = self._task = asyncio.create_task(self._run())
        try:
            await eventually(lambda: self._opened.is_set() or task.done(), CONNECT_TIMEOUT)
            if not self._opened.is_set():
                pytest.fail(f"could not connect: {self!r}")
            yield self
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        try:
            await (self._read_sse() if self.kind == "sse" else self._read_ws())
        except Exception as exc:
            self.failure = exc

    def _record(self, event: Event) -> bool:
        """Keep ``event``; whether to hang up now."""
        self.received.append(event)
        data = event.data
        return (
            self.stop_after is not None
            and event.event is None
            and isinstance(data, dict)
            and data.get("text") == self.stop_after
        )

    async def _read_sse(self) -> None:
        timeout = httpx.Timeout(CONNECT_TIMEOUT, read=READ_TIMEOUT)
        async with (
            httpx.AsyncClient(timeout=timeout, trust_env=False) as http,
            aconnect_sse(http, "GET", self.url, headers=dict(self.headers)) as source,
        ):
            assert source.response.status_code == 200, source.response.status_code
            stream = source.response.extensions["network_stream"]
            self.local_port = stream.get_extra_info("client_addr")[1]
            self._opened.set()
            async for sse in real_events(source):
                if sse.data == "":
                    continue  # no data, no event (a browser dispatches none)
                event = None if sse.event == "message" else sse.event
                if self._record(Event(event, sse.id or None, json.loads(sse.data))):
                    return

    async def _read_ws(self) -> None:
        async with connect(
            self.url, proxy=None, open_timeout=CONNECT_TIMEOUT, close_timeout=2
        ) as ws:
            self._opened.set()
            async for frame in ws:
                assert isinstance(frame, str), f"binary frame {frame!r}"
                envelope = Envelope.model_validate_json(frame)
                if self._record(Event(envelope.event, envelope.id, envelope.data)):
                    return


async def start_client(stack: AsyncExitStack, kind: str, url: str, **options: Any) -> Client:
    """A connected :class:`Client`, hung up when ``stack`` closes."""
    return await stack.enter_async_context(Client(kind, url, **options).running())


async def open_clients(stack: AsyncExitStack, hubs: Sequence[Hub], per_hub: int) -> list[Client]:
    """``per_hub`` SSE and ``per_hub`` WebSocket clients of every hub's chat channel."""
    clients = []
    for hub in hubs:
        for _ in range(per_hub):
            clients.append(await start_client(stack, "sse", hub.events_url()))
            clients.append(await start_client(stack, "ws", hub.ws_url()))
    return clients


async def wait_for_all(
    clients: Sequence[Client], entry_id: str, timeout: float = DELIVERY_TIMEOUT
) -> None:
    """Wait until every client got the message ``entry_id``; fail after ``timeout`` s."""
    if not await eventually(lambda: all(c.has(entry_id) for c in clients), timeout):
        missing = [c for c in clients if not c.has(entry_id)]
        pytest.fail(f"{entry_id} did not reach {missing} within {timeout} s")


# -- publishing ---------------------------------------------------------------------


class Publisher:
    """Publishes chat messages the ways users do; each method returns the message with
    the stream id it was given."""

    def __init__(self, redis_url: str, key_prefix: str, http: httpx.AsyncClient) -> None:
        self.key = key_prefix + "chat"
        self.store = RedisStore(self.key, url=redis_url, publish_timeout=PUBLISH_TIMEOUT)
        self.raw = aioredis.Redis.from_url(redis_url)
        self.http = http

    async def post(self, hub: Hub, text: str) -> Event:
        """``POST /chat/publish`` to ``hub``: answered 202 once Redis stored it."""
        response = await self.http.post(f"{hub.base}/chat/publish", json=chat(text))
        assert response.status_code == 202, response.text
        return message(response.json()["id"], chat(text))

    async def submit(self, text: str) -> Event:
        """``RedisStore.submit()`` in the test process (raises ``StoreUnavailable``)."""
        published = await self.store.submit(chat(text))
        assert published.id is not None
        return message(published.id, chat(text))

    async def xadd(self, text: str) -> Event:
        """A raw ``XADD``, as any other program may publish."""
        data = json.dumps(chat(text))
        entry_id = await self.raw.xadd(self.key, {"data": data}, maxlen=1000, approximate=True)
        assert isinstance(entry_id, bytes), entry_id
        return message(entry_id.decode(), chat(text))


@asynccontextmanager
async def publisher(redis_url: str, key_prefix: str) -> AsyncIterator[Publisher]:
    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        pub = Publisher(redis_url, key_prefix, http)
        try:
            yield pub
        finally:
            await pub.store.aclose()
            await pub.raw.aclose()


async def warm_up(pub: Publisher, clients: Sequence[Client]) -> str:
    """Publish warm-up messages until every client got the same one; return its id.

    A client that sent no ``Last-Event-ID`` gets what its process reads once it
    subscribed (a first subscriber: one Redis round trip later). After this, every
    client is live: it gets every later message."""

    def everyone_has(entry_id: str) -> Callable[[], bool]:
        return lambda: all(c.has(entry_id) for c in clients)

    for attempt in range(20):
        sentinel = await pub.submit(f"warm-up {attempt}")
        assert sentinel.id is not None
        if await eventually(everyone_has(sentinel.id), 0.5):
            return sentinel.id
    pytest.fail(f"warm-up messages never reached {clients}")


async def publish_many(pub: Publisher, hubs: Sequence[Hub], count: int) -> list[Event]:
    """Publish ``count`` messages, 8 at a time, taking turns: a POST to each hub, then
    ``RedisStore.submit()`` and a raw ``XADD`` from the test. Returns them in stream
    order."""
    gate = asyncio.Semaphore(8)

    async def publish(n: int) -> Event:
        text, turn = f"message {n}", n % (len(hubs) + 2)
        async with gate:
            if turn < len(hubs):
                return await pub.post(hubs[turn], text)
            if turn == len(hubs):
                return await pub.submit(text)
            return await pub.xadd(text)

    sent = await asyncio.gather(*(publish(n) for n in range(count)))
    return sorted(sent, key=lambda m: stream_order(m.id))


def assert_all_got(clients: Sequence[Client], start: str, expected: Sequence[Event]) -> None:
    """After the message ``start``, every client got exactly ``expected``, in order."""
    expected_ids = [m.id for m in expected]
    assert_strictly_increasing(expected_ids, "published")
    for client in clients:
        got = client.since(start)
        assert [(e.event, e.id) for e in got] == [(None, i) for i in expected_ids], client
        assert got == list(expected), client
        assert client.alive, client


# -- 1. every client of every process ------------------------------------------------


@pytest.mark.parametrize(
    "servers",
    [("tornado", "uvicorn"), ("tornado", "uvicorn", "tornado")],
    ids=lambda servers: "+".join(servers),
)
async def test_every_client_of_every_process_gets_every_message_once_in_order(
    start_hub: HubStarter, redis_url: str, prefix: str, servers: tuple[str, ...]
) -> None:
    """200 messages, POSTed to each process in turn and published from the test
    (``RedisStore`` and raw ``XADD``), 8 at a time, reach 2 SSE and 2 WebSocket clients
    of every process: each gets all of them once, in stream order, with the ids the
    publishers were given, and every client's list is the same."""
    hubs = await asyncio.gather(*(start_hub(server, redis_url, prefix) for server in servers))
    async with AsyncExitStack() as stack:
        pub = await stack.enter_async_context(publisher(redis_url, prefix))
        clients = await open_clients(stack, hubs, per_hub=2)
        start = await warm_up(pub, clients)

        sent = await publish_many(pub, hubs, 200)
        end = await pub.post(hubs[-1], "end")
        assert end.id is not None
        await wait_for_all(clients, end.id)

        assert len(clients) == 4 * len(servers)
        assert_all_got(clients, start, [*sent, end])
    for hub in hubs:
        hub.assert_no_traceback()


# -- 2. resuming on another process --------------------------------------------------


async def test_a_client_resumes_on_another_process_from_its_last_event_id(
    start_hub: HubStarter, redis_url: str, prefix: str
) -> None:
    """Clients read part of the stream from one process, hang up, and resume on the
    other (Tornado to uvicorn and uvicorn to Tornado): SSE with the ``Last-Event-ID``
    header, WebSocket with ``?last_event_id=``. Each gets ``tornadose.resumed`` with
    the number of messages replayed, then exactly the messages it missed (those it had
    not read, those published while it was away), then live ones."""
    hubs = await asyncio.gather(
        start_hub("tornado", redis_url, prefix), start_hub("uvicorn", redis_url, prefix)
    )
    async with AsyncExitStack() as stack:
        pub = await stack.enter_async_context(publisher(redis_url, prefix))
        # Watchers stay on both processes: once they have a message, so has their process.
        watchers = await open_clients(stack, hubs, per_hub=1)
        # readers[n] reads from hubs[n // 2] and resumes on the other one.
        readers = [
            await start_client(stack, kind, url, stop_after="part 4")
            for hub in hubs
            for kind, url in (("sse", hub.events_url()), ("ws", hub.ws_url()))
        ]
        start = await warm_up(pub, watchers + readers)

        part = [await pub.post(hubs[n % 2], f"part {n}") for n in range(10)]
        assert await eventually(lambda: not any(r.alive for r in readers), DELIVERY_TIMEOUT), (
            readers
        )
        for reader in readers:
            assert reader.failure is None, reader
            assert reader.since(start) == part[:5], reader
        last_seen = part[4].id
        assert last_seen is not None

        missed = [await pub.post(hubs[n % 2], f"missed {n}") for n in range(5)]
        assert missed[-1].id is not None
        # Both processes have delivered everything so far: all of it is replayed.
        await wait_for_all(watchers, missed[-1].id)
        resumers = []
        for hub in reversed(hubs):
            resumers.append(
                await start_client(
                    stack, "sse", hub.events_url(), headers={"Last-Event-ID": last_seen}
                )
            )
            resumers.append(
                await start_client(stack, "ws", hub.ws_url(f"?last_event_id={last_seen}"))
            )
        await wait_for_all(resumers, missed[-1].id)
        live = [await pub.post(hubs[n % 2], f"live {n}") for n in range(5)]
        assert live[-1].id is not None
        await wait_for_all(resumers, live[-1].id)

        assert_strictly_increasing([m.id for m in [*part, *missed, *live]], "published")
        resumed = {"after": last_seen, "replayed": len(part[5:]) + len(missed)}
        for resumer in resumers:
            control, *messages = resumer.received
            assert (control.event, control.data) == (RESUMED, resumed), resumer
            assert messages == [*part[5:], *missed, *live], resumer
            assert resumer.alive, resumer
    for hub in hubs:
        hub.assert_no_traceback()


# -- 3. Redis killed and restarted ----------------------------------------------------


@dataclass
class Outage:
    """What the publishers saw in :func:`publish_through_outage`."""

    #: The messages Redis acknowledged, in submission order.
    acknowledged: list[Event] = field(default_factory=list)
    #: The submissions refused: (data, whether it may have been published anyway).
    failed: list[tuple[Any, bool]] = field(default_factory=list)
    #: Ids acknowledged before Redis was killed.
    before_kill: list[str] = field(default_factory=list)
    #: Ids of the messages Redis stored after it was restarted.
    after_restart: list[str] = field(default_factory=list)
    #: Submissions made after Redis was back that were refused (should be none).
    refused_after_restart: int = 0

    def may_have_been_published(self, data: Any) -> bool:
        return any(data == failed and maybe for failed, maybe in self.failed)


async def publish_through_outage(
    pub: Publisher, server: RedisServer, hubs: Sequence[Hub], paused: Hub
) -> Outage:
    """Publish while Redis dies, mostly from the test, one submission at a time:

    1. 10 messages, 20 ms apart;
    2. ``paused``'s processes are stopped (``SIGSTOP``) and 10 more are published at
       once: its Redis reader cannot read them before Redis dies;
    3. Redis is killed (``SIGKILL``), ``paused`` continued, a message POSTed to every
       hub, and Redis restarted 0.5 s later (on the same port) while the test goes on
       publishing, 20 ms apart, until 15 messages were submitted after Redis was back;
    4. a message POSTed to every hub.

    The POSTs of step 3 must be answered 202 once Redis is back (the outage is shorter
    than the servers' 5 s publish timeout), never before.
    """
    loop = asyncio.get_running_loop()
    outage = Outage()
    n = 0
    restarted_at = float("inf")

    async def submit(*, after_restart: bool = False) -> None:
        nonlocal n
        text, n = f"message {n}", n + 1
        try:
            published = await pub.submit(text)
        except StoreUnavailable as exc:
            outage.failed.append((chat(text), exc.maybe_published))
            outage.refused_after_restart += after_restart
            return
        assert published.id is not None
        outage.acknowledged.append(published)
        if after_restart:
            outage.after_restart.append(published.id)

    async def post_when_down(hub: Hub) -> tuple[Event, float]:
        posted = await pub.post(hub, f"posted to {hub.server} while Redis is down")
        return posted, loop.time()

    async def restart() -> None:
        nonlocal restarted_at
        await asyncio.sleep(0.5)
        restarted_at = loop.time()
        await asyncio.to_thread(server.start)

    for _ in range(10):
        await submit()
        await asyncio.sleep(0.02)
    paused.send_signal(signal.SIGSTOP)
    try:
        for _ in range(10):
            await submit()
        outage.before_kill = [m.id for m in outage.acknowledged if m.id is not None]
        server.kill()
    finally:
        paused.send_signal(signal.SIGCONT)
    posts = [asyncio.create_task(post_when_down(hub)) for hub in hubs]
    restarting = asyncio.create_task(restart())
    submitted_after = 0
    while submitted_after < 15 and n < 500:
        back = restarting.done()
        await submit(after_restart=back)
        submitted_after += back
        await asyncio.sleep(0.02)
    await restarting
    for posted, answered_at in await asyncio.gather(*posts):
        assert answered_at > restarted_at, "a POST was acknowledged while Redis was down"
        outage.acknowledged.append(posted)
        outage.after_restart.append(str(posted.id))
    for hub in hubs:
        posted = await pub.post(hub, f"posted to {hub.server} after the restart")
        outage.acknowledged.append(posted)
        outage.after_restart.append(str(posted.id))
    return outage


async def outage_with_clients(
    stack: AsyncExitStack, start_hub: HubStarter, server: RedisServer, prefix: str
) -> tuple[Hub, Hub, list[Client], str, Outage, Publisher]:
    """A Tornado and a uvicorn process on ``server``, an SSE and a WebSocket client of
    each, warmed up; then :func:`publish_through_outage`, with Tornado paused, and the
    wait until every client got the last message."""
    tornado, uvicorn = await asyncio.gather(
        start_hub("tornado", server.url, prefix), start_hub("uvicorn", server.url, prefix)
    )
    pub = await stack.enter_async_context(publisher(server.url, prefix))
    clients = await open_clients(stack, (tornado, uvicorn), per_hub=1)
    start = await warm_up(pub, clients)
    outage = await publish_through_outage(pub, server, (tornado, uvicorn), paused=tornado)
    last = max((m.id for m in outage.acknowledged), key=stream_order)
    assert last is not None
    await wait_for_all(clients, last, timeout=15)
    return tornado, uvicorn, clients, start, outage, pub


async def test_persistent_redis_restart_loses_nothing_and_keeps_subscribers_connected(
    start_hub: HubStarter,
    own_redis: Callable[..., RedisServer],
    prefix: str,
) -> None:
    """Redis with ``appendfsync always`` is killed and restarted while the test publishes
    (one process paused meanwhile, so it has unread entries): every client of both
    processes gets every acknowledged message once, in order, on the connection it
    opened before, and no ``tornadose.reset``; so do messages published afterwards."""
    server = own_redis(persistent=True)
    async with AsyncExitStack() as stack:
        tornado, uvicorn, clients, start, outage, _ = await outage_with_clients(
            stack, start_hub, server, prefix
        )

        assert outage.refused_after_restart == 0, outage.failed
        assert len(outage.after_restart) == 15 + 2 + 2  # the test's, POSTs during and after
        acknowledged = {m.id: m for m in outage.acknowledged}
        windows = []
        for client in clients:
            window = client.since(start)
            assert [e for e in window if e.event is not None] == [], client
            assert_strictly_increasing([e.id for e in window], client)
            got = {e.id for e in window}
            assert [m.id for m in outage.acknowledged if m.id not in got] == [], client
            unacknowledged = [e for e in window if e.id not in acknowledged]
            assert all(outage.may_have_been_published(e.data) for e in unacknowledged), client
            assert all(acknowledged[e.id] == e for e in window if e.id in acknowledged), client
            assert client.alive, client
            windows.append(window)
        assert all(window == windows[0] for window in windows)
    for hub in (tornado, uvicorn):
        hub.assert_no_traceback()


def assert_no_silent_gap(client: Client, start: str, outage: Outage) -> list[str]:
    """Every acknowledged message ``client`` did not get is covered by a
    ``tornadose.reset`` (reason ``data_lost``) between the message it got before and
    the one it got after; returns the ids it missed."""
    window = client.since(start)
    position = {e.id: n for n, e in enumerate(window) if e.event is None}
    resets = [n for n, e in enumerate(window) if e.event is not None]
    for n in resets:
        assert window[n].event == RESET, client
        assert window[n].data["reason"] == "data_lost", (window[n], client)
        previous = [e.id for e in window[:n] if e.event is None]
        # The reset names the last message this client got before it.
        assert window[n].data["last_event_id"] == (previous[-1] if previous else start), client
    assert_strictly_increasing([e.id for e in window if e.event is None], client)
    missed = []
    for sent in outage.acknowledged:
        if sent.id in position:
            continue
        missed.append(sent.id)
        order = stream_order(sent.id)
        before = [n for i, n in position.items() if stream_order(i) < order]
        after = [n for i, n in position.items() if stream_order(i) > order]
        lower, upper = max(before, default=-1), min(after, default=len(window))
        assert any(lower < n < upper for n in resets), f"{sent.id} lost silently: {client!r}"
    return [i for i in missed if i is not None]


async def test_redis_restart_without_persistence_never_loses_a_message_silently(
    start_hub: HubStarter,
    own_redis: Callable[..., RedisServer],
    prefix: str,
) -> None:
    """Redis without persistence is killed and restarted while the test publishes, with
    the Tornado process paused so that its Redis reader cannot read the last 10
    acknowledged messages before Redis loses them. Every client keeps its connection;
    each acknowledged message a client did not get is announced by a
    ``tornadose.reset`` (reason ``data_lost``) where it would have been; messages
    published after the restart arrive. A client that reconnects afterwards with an id
    from before the restart gets ``tornadose.reset`` with reason ``unknown_epoch``,
    then live messages."""
    server = own_redis(persistent=False)
    async with AsyncExitStack() as stack:
        tornado, uvicorn, clients, start, outage, pub = await outage_with_clients(
            stack, start_hub, server, prefix
        )

        assert outage.refused_after_restart == 0, outage.failed
        assert len(outage.after_restart) == 15 + 2 + 2  # the test's, POSTs during and after
        acknowledged = {m.id: m for m in outage.acknowledged}
        for client in clients:
            missed = assert_no_silent_gap(client, start, outage)
            window = client.since(start)
            for event in window:
                if event.event is None and event.id not in acknowledged:
                    assert outage.may_have_been_published(event.data), (event, client)
                elif event.event is None:
                    assert acknowledged[event.id] == event, client
            got = {e.id for e in window}
            assert [i for i in outage.after_restart if i not in got] == [], client
            if client.url.startswith((tornado.base, tornado.ws_url())):
                # Paused, the Tornado process read none of the last 10 before the kill.
                assert set(outage.before_kill[-10:]) <= set(missed), client
            assert client.alive, client

        # Reconnecting now with an id from before the restart: an explicit reset.
        old = outage.before_kill[-1]
        latest = max((m.id for m in outage.acknowledged), key=stream_order)
        late = [
            await start_client(stack, "sse", uvicorn.events_url(), headers={"Last-Event-ID": old}),
            await start_client(stack, "ws", tornado.ws_url(f"?last_event_id={old}")),
        ]
        assert await eventually(lambda: all(c.received for c in late), DELIVERY_TIMEOUT), late
        after = await pub.submit("after the reset")
        assert after.id is not None
        await wait_for_all(late, after.id)
        for client in late:
            reset, *rest = client.received
            assert reset.event == RESET, client
            assert reset.data == {"reason": "unknown_epoch", "last_event_id": old}, client
            assert reset.id == latest, client  # the last message it will not get
            assert rest == [after], client
    for hub in (tornado, uvicorn):
        hub.assert_no_traceback()


# -- 4. several workers on one port ---------------------------------------------------


@pytest.mark.parametrize("server", ["uvicorn", "tornado"])
async def test_workers_sharing_a_port_serve_the_same_sequence(
    start_hub: HubStarter, redis_url: str, prefix: str, server: str
) -> None:
    """With ``--workers 2``, SSE clients of one port are opened until both workers hold
    some (the kernel picks the worker; at least 6 clients); 60 messages, POSTed to that
    port and published from the test, reach every client once, in the same order."""
    hub = await start_hub(server, redis_url, prefix, workers=2)
    async with AsyncExitStack() as stack:
        pub = await stack.enter_async_context(publisher(redis_url, prefix))
        clients: list[Client] = []
        while len(clients) < 6 or 0 in hub.serving(clients).values():
            assert len(clients) < 24, f"one worker got every client: {hub.serving(clients)}"
            clients.append(await start_client(stack, "sse", hub.events_url()))
        # Both workers hold clients, and every connection is held by one of them.
        serving = hub.serving(clients)
        assert len(serving) == 2, serving
        assert 0 not in serving.values(), serving
        assert sum(serving.values()) == len(clients), serving
        start = await warm_up(pub, clients)

        sent = await publish_many(pub, [hub], 60)
        end = await pub.post(hub, "end")
        assert end.id is not None
        await wait_for_all(clients, end.id)
        assert_all_got(clients, start, [*sent, end])
    hub.assert_no_traceback()


@pytest.mark.parametrize("server", ["uvicorn", "tornado"])
async def test_sigterm_to_the_program_stops_every_worker(
    start_hub: HubStarter, redis_url: str, prefix: str, server: str
) -> None:
    """``SIGTERM`` to the program started with ``--workers 2`` (what a process manager
    sends to the pid it started) ends it and, within 2 s more, both its workers, with
    clients connected; nothing is left serving the port."""
    hub = await start_hub(server, redis_url, prefix, workers=2)
    workers = hub.workers_now()
    async with AsyncExitStack() as stack:
        for _ in range(2):
            await start_client(stack, "sse", hub.events_url())
        hub.program.proc.send_signal(signal.SIGTERM)
        await wait_for_exit(hub.program, asyncio.get_running_loop().time(), 10)
        _, alive = await asyncio.to_thread(psutil.wait_procs, workers, timeout=2)
        assert not await accepts_connections(hub.port), f"port still served by {alive}"
        assert alive == [], f"workers still running after the program exited: {alive}"


async def accepts_connections(port: int) -> bool:
    """Whether something accepts a TCP connection on 127.0.0.1:``port``."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
    except OSError:
        return False
    writer.close()
    await writer.wait_closed()
    return True
