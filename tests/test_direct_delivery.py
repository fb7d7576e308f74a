"""Direct delivery: messages for an idle stream are written from the event loop.

While a stream's task waits, a message published for it does not wake the task: a
per-loop flusher writes it once per loop turn (Tornado: ``RequestHandler.write`` +
``flush`` or the WebSocket frame writer; ASGI: the ``send`` coroutine started eagerly
with :func:`tornadose._compat.asyncio_tasks.start_eagerly`). A write that does not
finish at once (the socket is backed up) is handed to the stream's task, which awaits
the rest under the write timeout; a write that fails wakes the task, which raises it.
With direct delivery off (:mod:`tornadose.delivery.direct`) every write goes out from
the task: see ``tests/test_direct_switch.py``.

What is checked here:

1. :mod:`tornadose._compat.asyncio_tasks` on its own, with plain asyncio: a coroutine
   started eagerly and finished by a task behaves as if that task had run it from the
   start (order, results, exceptions, cancellation, ``asyncio.timeout``,
   ``current_task``).
2. A quiet stream is written without waking its task; order and exactly-once when
   direct writes and task writes mix (bursts, singles, big writes that back up,
   clients resuming with ``Last-Event-ID``), on both adapters (Tornado, and ASGI
   under uvicorn) and both transports.
3. Back-pressure: a client that stops reading is cut by the write timeout while the
   others get everything; a slow client that keeps reading catches up.
4. ASGI middleware wrapping ``send``: ``asyncio.timeout``, anyio cancel scopes,
   ``current_task`` and context variables work inside it (a variable set in a
   ``send`` survives its suspension, and carries to the next ``send``), and a
   ``send`` that always suspends keeps the order.
5. Heartbeats on idle SSE streams, none while messages flow, and again after a
   write that outlasted a heartbeat interval.
6. ``stats.delivered`` counts each message once per subscriber.

The servers and clients are real (loopback, ephemeral ports), every wait has a
timeout. A few tests count, through the private ``_EncodeCache``/``_Pacer`` of
:mod:`tornadose.delivery.streams`, how many writes went the direct way and how many were
handed over, so that a test meant to mix both really does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import itertools
import json
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
from httpx_sse import ServerSentEvent
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from websockets.asyncio.client import ClientConnection, connect

from tests.clients import TIMEOUT, sse_client
from tests.conftest import (
    Endpoints,
    RecordingQueueStore,
    StoreServer,
    UvicornStarter,
    wait_until,
)
from tornadose._compat.asyncio_tasks import run_in_task, start_eagerly
from tornadose.adapters.asgi import EventSourceApp
from tornadose.core.history import RESUMED_EVENT
from tornadose.core.message import Message
from tornadose.core.reasons import CloseReason
from tornadose.delivery import streams
from tornadose.delivery.streams import SSEOptions, stream_sse
from tornadose.schemas import Envelope
from tornadose.stores import QueueStore
from tornadose.wire import sse

TRANSPORTS = ["sse", "websocket"]

#: Context variables the tests set: a request's tag (set by a middleware), what a
#: ``send`` is sending while it sends, and how many body chunks it has sent.
request_tag: contextvars.ContextVar[str] = contextvars.ContextVar("request_tag", default="unset")
sending: contextvars.ContextVar[str] = contextvars.ContextVar("sending", default="nothing")
chunks_sent: contextvars.ContextVar[int] = contextvars.ContextVar("chunks_sent", default=0)

# -- 1. tornadose._compat.asyncio_tasks ----------------------------------------------


class Suspension:
    """Something a coroutine waits for: a future, ``asyncio.sleep(0)`` or an Event."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.event = asyncio.Event()

    async def wait(self) -> str:
        if self.kind == "future":
            return await self.future
        if self.kind == "event":
            await self.event.wait()
            return "set"
        await asyncio.sleep(0)
        return "slept"

    def release(self) -> None:
        self.future.set_result("resolved")
        self.event.set()


SUSPENSIONS = ["future", "sleep(0)", "event"]


async def test_a_coroutine_that_never_suspends_runs_to_its_end_at_once() -> None:
    """``start_eagerly`` returns ``None`` and the coroutine's effect is already there."""
    log: list[str] = []

    async def send() -> None:
        log.append("sent")

    assert start_eagerly(send()) is None
    assert log == ["sent"]  # no loop turn in between


async def test_an_error_before_any_suspension_is_raised_by_start_eagerly() -> None:
    async def send() -> None:
        raise ConnectionResetError("gone")

    with pytest.raises(ConnectionResetError, match="gone"):
        start_eagerly(send())


@pytest.mark.parametrize("kind", SUSPENSIONS)
async def test_a_suspended_coroutine_is_finished_by_the_task_that_awaits_it(kind: str) -> None:
    """The part before the suspension runs at once; the task awaiting what
    ``start_eagerly`` returned runs the rest, with what the coroutine waited for."""
    log: list[str] = []
    suspension = Suspension(kind)

    async def send() -> None:
        log.append("started")
        log.append(await suspension.wait())
        log.append("ended")

    pending = start_eagerly(send())
    assert pending is not None
    assert log == ["started"]

    async def finish() -> None:
        log.append("awaiting")
        await pending
        log.append("finished")

    task = asyncio.ensure_future(finish())
    await asyncio.sleep(0)  # the task starts awaiting
    suspension.release()
    await asyncio.wait_for(task, TIMEOUT)
    woke_with = {"future": "resolved", "event": "set", "sleep(0)": "slept"}[kind]
    assert log == ["started", "awaiting", woke_with, "ended", "finished"]


@pytest.mark.parametrize("kind", SUSPENSIONS)
async def test_an_error_after_the_suspension_reaches_the_awaiting_task(kind: str) -> None:
    suspension = Suspension(kind)

    async def send() -> None:
        await suspension.wait()
        raise ConnectionResetError("gone meanwhile")

    pending = start_eagerly(send())
    assert pending is not None
    asyncio.get_running_loop().call_soon(suspension.release)
    with pytest.raises(ConnectionResetError, match="gone meanwhile"):
        await asyncio.wait_for(_awaited(pending), TIMEOUT)


async def test_a_failed_future_is_thrown_into_the_coroutine_which_may_catch_it() -> None:
    """As in a task, the future's error is raised where the coroutine awaits it."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()
    log: list[str] = []

    async def send() -> None:
        try:
            await future
        except OSError as exc:
            log.append(f"caught {exc}")
        await asyncio.sleep(0)  # and it can go on suspending afterwards
        log.append("went on")

    pending = start_eagerly(send())
    assert pending is not None
    loop.call_soon(future.set_exception, OSError("reset"))
    await asyncio.wait_for(_awaited(pending), TIMEOUT)
    assert log == ["caught reset", "went on"]


@pytest.mark.parametrize("kind", SUSPENSIONS)
async def test_cancelling_the_awaiting_task_cancels_the_coroutine(kind: str) -> None:
    """The coroutine sees ``CancelledError`` where it waits, its ``finally`` runs, and
    the task ends cancelled; a future it waited for is cancelled, as by a task."""
    suspension = Suspension(kind)
    log: list[str] = []

    async def send() -> None:
        try:
            await suspension.wait()
            await asyncio.sleep(TIMEOUT)  # sleep(0) and a set Event return: wait more
            log.append("not cancelled")
        except asyncio.CancelledError:
            log.append("cancelled")
            raise
        finally:
            log.append("finally")

    pending = start_eagerly(send())
    assert pending is not None
    if kind == "event":
        suspension.release()
    task = asyncio.ensure_future(_awaited(pending))
    for _ in range(3):
        await asyncio.sleep(0)  # the task awaits, past a sleep(0) or a set Event
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, TIMEOUT)
    assert task.cancelled()
    assert log == ["cancelled", "finally"]
    if kind == "future":
        assert suspension.future.cancelled()


async def _awaited(pending: Awaitable[None]) -> None:
    await pending


async def test_run_in_task_makes_the_task_current_in_the_given_context() -> None:
    """From a loop callback, the function runs in ``context`` with ``task`` current;
    afterwards no task is current, even after the function raised."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    request_tag.set("the task's")
    context = contextvars.copy_context()
    request_tag.set("changed after the copy")
    seen: list[tuple[asyncio.Task[Any] | None, str, str]] = []

    def probe(label: str, *, then: str = "") -> None:
        seen.append((asyncio.current_task(), request_tag.get(), label))
        if then:
            request_tag.set(then)

    def fail() -> None:
        raise RuntimeError("inside")

    def failing() -> None:
        with pytest.raises(RuntimeError, match="inside"):
            run_in_task(task, context, fail)
        seen.append((asyncio.current_task(), request_tag.get(), "raised"))

    loop.call_soon(lambda: run_in_task(task, context, probe, "in task", then="set inside"))
    loop.call_soon(lambda: run_in_task(None, context, probe, "no task"))
    loop.call_soon(failing)
    loop.call_soon(probe, "plain callback")
    await asyncio.sleep(0)  # the callbacks run first, in order
    assert seen == [
        (task, "the task's", "in task"),
        (None, "set inside", "no task"),  # the same context, which kept the change
        (None, "changed after the copy", "raised"),  # the task was left again
        (None, "changed after the copy", "plain callback"),
    ]
    assert context[request_tag] == "set inside"
    assert request_tag.get() == "changed after the copy"  # the task's own is untouched


async def start_in_task(
    task: asyncio.Task[Any],
    coroutine: Coroutine[Any, Any, None],
    context: contextvars.Context | None = None,
) -> Awaitable[None] | None:
    """Start ``coroutine`` eagerly from a loop callback under ``run_in_task(task)`` (in
    ``context``, by default a copy of the current one), as the flusher does; what
    ``start_eagerly`` returned, one loop turn later."""
    loop = asyncio.get_running_loop()
    started: asyncio.Future[Awaitable[None] | None] = loop.create_future()

    def start() -> None:
        started.set_result(start_eagerly(coroutine))

    loop.call_soon(run_in_task, task, context or contextvars.copy_context(), start)
    return await started


async def test_a_coroutine_started_under_run_in_task_goes_on_in_its_context() -> None:
    """A context variable the coroutine sets before it suspends is still set after the
    task took it over, and its token resets it; all in the context given to
    ``run_in_task``, never in the task's own."""
    task = asyncio.current_task()
    assert task is not None
    context = contextvars.copy_context()
    log: list[str] = []

    async def send() -> None:
        token = sending.set("sending")
        await asyncio.sleep(0)
        log.append(sending.get())
        sending.reset(token)
        log.append(sending.get())

    pending = await start_in_task(task, send(), context)
    assert pending is not None
    assert (context[sending], sending.get()) == ("sending", "nothing")
    await asyncio.wait_for(_awaited(pending), TIMEOUT)
    assert log == ["sending", "nothing"]
    assert sending not in context


@pytest.mark.parametrize("expires", [False, True], ids=["in-time", "expires"])
async def test_asyncio_timeout_works_across_the_handover(expires: bool) -> None:
    """A coroutine started eagerly under ``run_in_task`` enters ``asyncio.timeout()``,
    suspends, and is finished by that task: it sees that task throughout, and the
    timeout either ends quietly or raises ``TimeoutError`` in the coroutine, leaving
    the task uncancelled (an outer timeout in the task goes on working)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    future: asyncio.Future[str] = loop.create_future()
    log: list[object] = []

    async def send() -> None:
        log.append(asyncio.current_task())
        try:
            async with asyncio.timeout(0.05 if expires else TIMEOUT):
                log.append(await future)
        except TimeoutError:
            log.append("timed out")
        log.append(asyncio.current_task())

    pending = await start_in_task(task, send())
    assert pending is not None
    assert log == [task]
    if not expires:
        loop.call_later(0.01, future.set_result, "sent")
    async with asyncio.timeout(TIMEOUT):
        await pending
    assert log == [task, "timed out" if expires else "sent", task]
    assert future.cancelled() is expires
    assert task.cancelling() == 0


# -- clients --------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One message as a client received it: an SSE event or a WebSocket frame."""

    id: str | None
    event: str | None
    data: Any


#: What :class:`RawClient` logs for an SSE comment (a heartbeat).
HEARTBEAT = "heartbeat"


def parsed(text: str | bytes) -> Any:
    """A message's data: decoded JSON if it is JSON, else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def sse_item(event: ServerSentEvent) -> Item:
    name = None if event.event == "message" else event.event
    return Item(event.id or None, name, parsed(event.data))


def ws_item(frame: str | bytes) -> Item:
    envelope = Envelope.model_validate_json(frame)
    return Item(envelope.id, envelope.event, envelope.data)


class Listener:
    """What one real client connection received, queued in order by its reader task,
    which queues the error (or ``EOFError``) it ended with, if it ends."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Item | BaseException] = asyncio.Queue()

    async def take(self, count: int) -> list[Item]:
        """The next ``count`` messages; fails after 5 s, or at once if the stream ends."""
        items: list[Item] = []
        async with asyncio.timeout(TIMEOUT):
            while len(items) < count:
                entry = await self.queue.get()
                if isinstance(entry, BaseException):
                    pytest.fail(f"the stream ended after {len(items)} of {count}: {entry!r}")
                items.append(entry)
        return items

    async def rest(self) -> list[Item | BaseException]:
        """Whatever else arrives within 0.2 s."""
        await asyncio.sleep(0.2)
        return [self.queue.get_nowait() for _ in range(self.queue.qsize())]

    async def read_sse(self, events: AsyncIterator[ServerSentEvent]) -> None:
        try:
            async for event in events:
                self.queue.put_nowait(sse_item(event))
        except Exception as exc:
            self.queue.put_nowait(exc)
        else:
            self.queue.put_nowait(EOFError("the server ended the stream"))

    async def read_websocket(self, ws: ClientConnection) -> None:
        try:
            async for frame in ws:
                self.queue.put_nowait(ws_item(frame))
        except Exception as exc:
            self.queue.put_nowait(exc)
        else:
            self.queue.put_nowait(EOFError(f"the server closed with {ws.close_code}"))


@asynccontextmanager
async def listening(
    url: str, store: RecordingQueueStore, headers: dict[str, str] | None = None
) -> AsyncIterator[Listener]:
    """A real client of ``url`` (``ws://``: ``websockets``, else httpx-sse), reading
    into a :class:`Listener`; yields once the server registered it."""
    listener = Listener()
    registered = len(store.registered)
    async with AsyncExitStack() as stack:
        reading: Awaitable[None]
        if url.startswith("ws://"):
            ws = await stack.enter_async_context(
                connect(
                    url,
                    additional_headers=headers,
                    proxy=None,
                    max_size=None,
                    open_timeout=TIMEOUT,
                    close_timeout=TIMEOUT,
                )
            )
            reading = listener.read_websocket(ws)
        else:
            _, events = await stack.enter_async_context(sse_client(url, **(headers or {})))
            reading = listener.read_sse(events)
        reader = asyncio.ensure_future(reading)
        try:
            await wait_until(lambda: len(store.registered) > registered)
            yield listener
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


def url_of(endpoints: Endpoints, transport: str) -> str:
    return endpoints.events if transport == "sse" else endpoints.ws


class RawClient:
    """A client on a bare socket with a small receive buffer, so that the server's
    writes back up as soon as it stops reading. It sends ``GET /events`` (SSE) or the
    ``/ws`` handshake, then reads only when told to, and parses what it reads:
    :attr:`log` holds the messages (SSE events, WebSocket text frames) and, for SSE,
    a :data:`HEARTBEAT` for each comment, in the order they came."""

    def __init__(self, transport: str, receive_buffer: int = 4096) -> None:
        self.transport = transport
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.setblocking(False)
        self.log: list[Item | str] = []
        #: The WebSocket close code, once a close frame came.
        self.close_code: int | None = None
        self.ended = False
        self._raw = bytearray()
        self._body = bytearray()  # SSE: the body without its chunk framing

    @property
    def items(self) -> list[Item]:
        return [entry for entry in self.log if isinstance(entry, Item)]

    async def connect(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        if self.transport == "sse":
            request = b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        else:
            request = (
                b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
        async with asyncio.timeout(TIMEOUT):
            await loop.sock_connect(self.sock, ("127.0.0.1", port))
            await loop.sock_sendall(self.sock, request)
            while b"\r\n\r\n" not in self._raw:
                chunk = await loop.sock_recv(self.sock, 4096)
                assert chunk, f"no response head: {bytes(self._raw)!r}"
                self._raw += chunk
        head, _, rest = bytes(self._raw).partition(b"\r\n\r\n")
        expected = b"HTTP/1.1 200 " if self.transport == "sse" else b"HTTP/1.1 101 "
        assert head.startswith(expected), head
        if self.transport == "sse":
            assert b"transfer-encoding: chunked" in head.lower(), head
        self._raw = bytearray(rest)
        self._parse()

    async def read(self, size: int = 1 << 20) -> bool:
        """Read once (at most ``size`` bytes, within 5 s); ``False`` at the end."""
        loop = asyncio.get_running_loop()
        try:
            chunk = await asyncio.wait_for(loop.sock_recv(self.sock, size), TIMEOUT)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.ended = True
            return False
        self._raw += chunk
        self._parse()
        return not self.ended

    async def read_until(
        self, done: Callable[[], bool], *, size: int = 1 << 20, pause: float = 0.0
    ) -> None:
        """Read (``size`` bytes at a time, ``pause`` s apart) until ``done()``."""
        while not done():
            if not await self.read(size):
                pytest.fail(f"the stream ended after {len(self.items)} messages")
            if pause:
                await asyncio.sleep(pause)

    async def finish(self) -> None:
        """Read until the server ends the connection; fail if it has not within 5 s."""
        async with asyncio.timeout(TIMEOUT):
            while await self.read():
                pass

    def close(self) -> None:
        self.sock.close()

    def _parse(self) -> None:
        if self.transport == "sse":
            self._parse_chunks()
        else:
            self._parse_frames()

    def _parse_chunks(self) -> None:
        raw = self._raw
        while (line_end := raw.find(b"\r\n")) >= 0:
            size = int(bytes(raw[:line_end]).split(b";")[0], 16)
            if size == 0:
                self.ended = True
                break
            start = line_end + 2
            if len(raw) < start + size + 2:
                break
            self._body += raw[start : start + size]
            del raw[: start + size + 2]
        body = self._body
        start = 0
        while (end := body.find(b"\n\n", start)) >= 0:
            self._sse_event(bytes(body[start:end]).decode())
            start = end + 2
        del body[:start]

    def _sse_event(self, block: str) -> None:
        lines = block.split("\n")
        if all(line.startswith(":") for line in lines):
            self.log.append(HEARTBEAT)
            return
        fields: dict[str, str] = {}
        data: list[str] = []
        for line in lines:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name:
                fields[name] = value
        if data:
            self.log.append(Item(fields.get("id"), fields.get("event"), parsed("\n".join(data))))

    def _parse_frames(self) -> None:
        raw = self._raw
        while len(raw) >= 2:
            opcode, length, start = raw[0] & 0x0F, raw[1] & 0x7F, 2
            if length >= 126:
                start = 4 if length == 126 else 10
                if len(raw) < start:
                    return
                (length,) = struct.unpack_from("!H" if start == 4 else "!Q", raw, 2)
            if len(raw) < start + length:
                return
            payload = bytes(raw[start : start + length])
            del raw[: start + length]
            if opcode == 0x1:
                self.log.append(ws_item(payload))
            elif opcode == 0x8:
                self.close_code = struct.unpack_from("!H", payload)[0] if payload else None
                self.ended = True


@asynccontextmanager
async def raw_client(
    transport: str, endpoints: Endpoints, receive_buffer: int = 4096
) -> AsyncIterator[RawClient]:
    client = RawClient(transport, receive_buffer)
    try:
        await client.connect(endpoints.port)
        yield client
    finally:
        client.close()


# -- publishing and checking ----------------------------------------------------------


def incompressible(size: int) -> str:
    """``size`` characters of random base64 text (permessage-deflate cannot shrink it)."""
    return base64.b64encode(os.urandom(size * 3 // 4)).decode()


@dataclass(frozen=True)
class Step:
    """``count`` messages of about ``size`` bytes, ``pause`` s apart (``0``: a loop turn
    apart, each written on its own; ``None``: all in one loop turn, a burst)."""

    count: int
    size: int = 0
    pause: float | None = 0.0


#: Singles (each written on its own), a burst longer than ``max_batch`` (several
#: writes in one flush), 1.5 MB bursts (the socket backs up: the task takes over)
#: with messages right behind them, then quiet singles.
MIX = [
    Step(20),
    Step(150, pause=None),
    Step(24, 64 * 1024, pause=None),
    Step(20),
    Step(7, pause=None),
    Step(24, 64 * 1024, pause=None),
    Step(5, pause=0.01),
]


def total(steps: list[Step]) -> int:
    return sum(step.count for step in steps)


async def publish(store: QueueStore, steps: list[Step], ids: list[str] | None = None) -> list[str]:
    """Publish ``steps`` (payloads ``{"n": <index>, "pad": ...}``), pausing 5 ms after
    each step so the streams go idle again; returns the ids, appended to ``ids`` (if
    given) as they are published."""
    ids = [] if ids is None else ids
    for step in steps:
        pad = incompressible(step.size) if step.size else ""
        for _ in range(step.count):
            published = store.submit({"n": len(ids), "pad": pad})
            assert published.id is not None
            ids.append(published.id)
            if step.pause is not None:
                await asyncio.sleep(step.pause)
        await asyncio.sleep(0.005)
    return ids


def assert_once_in_order(items: list[Item], ids: list[str]) -> None:
    """``items`` are exactly the messages ``ids``, in order, each once."""
    got = [item.id for item in items]
    if got != ids:
        first = next(
            (n for n, (a, b) in enumerate(zip(got, ids, strict=False)) if a != b),
            min(len(got), len(ids)),
        )
        pytest.fail(f"{len(got)} received for {len(ids)} published; they differ at #{first}")
    assert [item.data["n"] for item in items] == list(range(len(ids)))


@dataclass
class Paths:
    """How writes went: ``direct`` ones, made from the event loop, and how many of
    those did not finish at once and were ``handed_over`` to the stream's task."""

    direct: int = 0
    handed_over: int = 0


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> Paths:
    """Count the direct writes (each encodes its batch through ``_EncodeCache``) and
    the handovers (the task finishing one with ``_Pacer.finish``)."""
    counts = Paths()
    encode = streams._EncodeCache.encode
    finish = streams._Pacer.finish

    def counting_encode(
        cache: streams._EncodeCache, batch: list[Message], how: Callable[[list[Message]], Any]
    ) -> Any:
        counts.direct += 1
        return encode(cache, batch, how)

    async def counting_finish(pacer: streams._Pacer, in_flight: Awaitable[None]) -> None:
        counts.handed_over += 1
        await finish(pacer, in_flight)

    monkeypatch.setattr(streams._EncodeCache, "encode", counting_encode)
    monkeypatch.setattr(streams._Pacer, "finish", counting_finish)
    return counts


async def serve(serve_store: StoreServer, store: QueueStore, **options: Any) -> Endpoints:
    """Serve ``store`` on both transports without heartbeats, ``options`` for both."""
    return await serve_store(store, sse={"heartbeat": 0, **options}, websocket=options)


# -- 2. order and exactly-once ----------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_quiet_stream_is_written_without_waking_its_task(
    serve_store: StoreServer, transport: str, paths: Paths
) -> None:
    """Single messages, each published once the client got the one before, to a
    client that reads: each is written directly, on its own, and none is handed to
    the stream's task (the socket never backs up)."""
    store = RecordingQueueStore()
    endpoints = await serve(serve_store, store)
    async with listening(url_of(endpoints, transport), store) as client:
        ids: list[str] = []
        received = []
        for _ in range(20):
            await publish(store, [Step(1)], ids)
            received += await client.take(1)
        assert_once_in_order(received, ids)
    assert paths.direct == len(ids)
    assert paths.handed_over == 0


async def test_every_client_gets_every_message_once_in_order(
    serve_store: StoreServer, paths: Paths
) -> None:
    """Two SSE and two WebSocket clients, through singles, bursts and big bursts that
    back the sockets up: each gets every message once, in order, however it was
    written, and ``stats.delivered`` is messages x subscribers."""
    store = RecordingQueueStore()
    endpoints = await serve(serve_store, store)
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(listening(url_of(endpoints, transport), store))
            for transport in ("sse", "sse", "websocket", "websocket")
        ]
        ids = await publish(store, MIX)
        received = [await client.take(len(ids)) for client in clients]
        assert [await client.rest() for client in clients] == [[]] * 4
    for items in received:
        assert_once_in_order(items, ids)
    assert store.stats.published == len(ids)
    assert store.stats.delivered == len(ids) * len(clients)
    assert paths.direct > 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_client_resuming_while_messages_flow_gets_each_once_in_order(
    serve_store: StoreServer, transport: str
) -> None:
    """While messages are published, a client reconnects again and again with its
    ``Last-Event-ID``, reading up to 60 messages per visit: each visit starts with
    ``tornadose.resumed`` for its id, and its visits together get every message from
    its first one on, once, in order; a steady client gets them all."""
    store = RecordingQueueStore()
    endpoints = await serve(serve_store, store)
    url = url_of(endpoints, transport)
    steps = [Step(40, pause=0.002), Step(100, pause=None), Step(8, 16 * 1024, pause=None)] * 3
    ids: list[str] = []
    visits: list[list[Item]] = []

    def got_the_last(visit: list[Item]) -> bool:
        return len(ids) == total(steps) and visit[-1].id == ids[-1]

    async with listening(url, store) as steady:
        publisher = asyncio.ensure_future(publish(store, steps, ids))
        while not (visits and got_the_last(visits[-1])):
            last_id = visits[-1][-1].id if visits else None
            headers = {} if last_id is None else {"Last-Event-ID": last_id}
            async with listening(url, store, headers) as inbox:
                visit = await inbox.take(1)
                while len(visit) < 60 and not got_the_last(visit):
                    visit += await inbox.take(1)
            visits.append(visit)
        await publisher
        assert_once_in_order(await steady.take(len(ids)), ids)
    assert len(visits) >= 5
    live = visits[0]
    for previous, visit in itertools.pairwise(visits):
        resumed, *rest = visit
        assert (resumed.event, resumed.id) == (RESUMED_EVENT, previous[-1].id)
        live = live + rest
    first = ids.index(str(live[0].id))
    assert [item.id for item in live] == ids[first:]


# -- 3. back-pressure -----------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_client_that_stops_reading_is_cut_by_the_write_timeout(
    serve_store: StoreServer, transport: str, paths: Paths
) -> None:
    """A raw client reads nothing while 64 KiB messages are published: a direct write
    to it backs up, its task takes the write over and is cut by the write timeout
    (0.5 s); an SSE and a WebSocket reader get every message, in order."""
    store = RecordingQueueStore(max_queue=1000, max_queue_bytes=None)
    endpoints = await serve(serve_store, store, write_timeout=0.5)
    pad = incompressible(64 * 1024)
    ids: list[str] = []
    async with (
        listening(endpoints.events, store) as sse_reader,
        listening(endpoints.ws, store) as ws_reader,
        raw_client(transport, endpoints) as stalled,
    ):
        await wait_until(lambda: len(store.registered) == 3)
        subscription = store.registered[-1]
        readers: dict[Listener, list[Item]] = {sse_reader: [], ws_reader: []}
        # In step with the readers, so only the stalled client falls behind, until
        # messages pile up in its queue: its writes are stuck.
        while len(subscription) < 2 and len(ids) < 400:
            published = store.submit({"n": len(ids), "pad": pad})
            assert published.id is not None
            ids.append(published.id)
            for reader, got in readers.items():
                got += await reader.take(1)
        assert len(subscription) >= 2, "400 x 64 KiB never backed the stalled client up"
        assert paths.handed_over > 0  # the task took a direct write over
        await wait_until(lambda: subscription.closed, timeout=3)
        assert subscription.close_reason is CloseReason.WRITE_TIMEOUT
        assert len(subscription) == 0
        await publish(store, [Step(30), Step(30, pause=None)], ids)
        for reader, got in readers.items():
            got += await reader.take(len(ids) - len(got))
            assert_once_in_order(got, ids)
        await stalled.finish()  # the server ended the stalled connection
        assert store.stats.disconnects["write_timeout"] == 1
        assert store.stats.disconnects["slow_consumer"] == 0
    if stalled.close_code is not None:
        assert stalled.close_code == 4002


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_slow_reader_catches_up_with_nothing_lost(
    serve_store: StoreServer, transport: str, paths: Paths
) -> None:
    """A raw client reads 64 KiB every 5 ms while 6 MB are published in singles and
    bursts, and stops reading while a 2.5 MB burst and the 40 messages behind it (a
    loop turn apart) are published, and 5 more after them: writes to it back up
    (whatever the machine's speed), yet it gets every message in order, nothing is
    dropped and nobody is cut (the queue bound and write timeout allow it)."""
    store = RecordingQueueStore(max_queue=1000, max_queue_bytes=None)
    endpoints = await serve(serve_store, store, write_timeout=3)
    steps = [Step(10, 64 * 1024), Step(40, 64 * 1024, pause=None), Step(40, 64 * 1024)]
    async with raw_client(transport, endpoints, receive_buffer=64 * 1024) as slow:
        await wait_until(lambda: len(store.registered) == 1)
        ids: list[str] = []
        publisher = asyncio.ensure_future(publish(store, steps, ids))
        await slow.read_until(lambda: len(slow.items) >= 10, size=64 * 1024, pause=0.005)
        await wait_until(lambda: publisher.done())  # the client holds: the writes back up
        await asyncio.sleep(0.05)  # and those made now wait for it
        await publish(store, [Step(5, 64 * 1024)], ids)
        await asyncio.sleep(0.05)

        def caught_up() -> bool:
            return len(slow.items) == len(ids)

        await slow.read_until(caught_up, size=64 * 1024, pause=0.005)
        assert len(ids) == total(steps) + 5
    assert_once_in_order(slow.items, ids)
    assert store.stats.delivered == len(ids)
    assert store.stats.dropped == 0
    assert paths.direct > 0
    assert paths.handed_over > 0
    await wait_until(lambda: not store.subscribers)
    assert dict(store.stats.disconnects) == {"client_gone": 1}


# -- 4. ASGI middleware wrapping send ---------------------------------------------------

ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]
Send = Callable[[Any], Awaitable[None]]


class TagRequest:
    """Outer middleware: sets :data:`request_tag` from the ``x-tag`` header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Send) -> None:
        headers = dict(scope.get("headers", []))
        request_tag.set(headers.get(b"x-tag", b"none").decode())
        await self.app(scope, receive, send)


@dataclass
class Seen:
    """What the wrapped ``send`` of one request saw, once per message sent."""

    tags: list[str]
    #: The current task before and after awaiting the real ``send``.
    tasks: list[tuple[asyncio.Task[Any] | None, asyncio.Task[Any] | None]]


class WrapSend:
    """Inner middleware whose ``send`` runs the real one inside ``asyncio.timeout``,
    inside anyio's ``fail_after``, or after ``asyncio.sleep(0)`` (so it always
    suspends), and records in ``seen[<the request's tag>]`` what it saw."""

    def __init__(self, app: ASGIApp, how: str, seen: dict[str, Seen]) -> None:
        self.app = app
        self.how = how
        self.seen = seen

    async def __call__(self, scope: Any, receive: Any, send: Send) -> None:
        seen = self.seen.setdefault(request_tag.get(), Seen([], []))

        async def wrapped(message: Any) -> None:
            before = asyncio.current_task()
            if self.how == "asyncio.timeout":
                async with asyncio.timeout(5):
                    await send(message)
            elif self.how == "anyio.fail_after":
                with anyio.fail_after(5):
                    await send(message)
            else:
                await asyncio.sleep(0)
                await send(message)
            seen.tags.append(request_tag.get())
            seen.tasks.append((before, asyncio.current_task()))

        await self.app(scope, receive, wrapped)


@pytest.mark.parametrize("how", ["asyncio.timeout", "anyio.fail_after", "sleep(0)"])
async def test_a_send_wrapping_middleware_sees_its_own_request_and_task(
    uvicorn_server: UvicornStarter, how: str, paths: Paths
) -> None:
    """Two clients, tagged ``alpha`` and ``beta`` by an outer middleware, get every
    message in order through a ``send`` wrapped in a timeout (or that always
    suspends); inside it each request sees its own tag (never the publisher's), and
    one task, not ``None``, before and after awaiting the real ``send``."""
    store = RecordingQueueStore()
    seen: dict[str, Seen] = {}
    app = Starlette(
        routes=[Route("/events", EventSourceApp(store, heartbeat=0))],
        middleware=[Middleware(TagRequest), Middleware(WrapSend, how=how, seen=seen)],
    )
    url = await uvicorn_server(app) + "/events"
    request_tag.set("the publisher's")
    async with (
        listening(url, store, {"x-tag": "alpha"}) as alpha,
        listening(url, store, {"x-tag": "beta"}) as beta,
    ):
        ids = await publish(store, MIX)
        received = [await alpha.take(len(ids)), await beta.take(len(ids))]
    for items in received:
        assert_once_in_order(items, ids)
    assert sorted(seen) == ["alpha", "beta"]
    for tag, what in seen.items():
        assert set(what.tags) == {tag}
        assert len(what.tasks) > 2  # the response start, the empty chunk, then messages
        assert all(before is not None and before is after for before, after in what.tasks)
    assert paths.direct > 0
    if how == "sleep(0)":
        assert paths.handed_over == paths.direct  # every direct write suspended


class MarkSending:
    """Middleware whose ``send`` sets a context variable for the time of the real
    ``send`` and resets it after (as tracing and logging middleware do), suspending
    once before (a lock, a queue: anything), and counts the body chunks it sent in
    another context variable, as per-request state."""

    def __init__(self, app: ASGIApp, seen: list[tuple[str, int]]) -> None:
        self.app = app
        #: For each message sent: what the variables said after it was sent, the
        #: count (``0`` for messages without a body).
        self.seen = seen

    async def __call__(self, scope: Any, receive: Any, send: Send) -> None:
        async def marked(message: Any) -> None:
            token = sending.set(message["type"])
            try:
                await asyncio.sleep(0)
                await send(message)
                count = 0
                if message.get("body"):
                    count = chunks_sent.get() + 1
                    chunks_sent.set(count)
                self.seen.append((sending.get(), count))
            finally:
                sending.reset(token)

        await self.app(scope, receive, marked)


async def serve_marked(
    uvicorn_server: UvicornStarter, store: RecordingQueueStore, seen: list[tuple[str, int]]
) -> str:
    """``EventSourceApp`` behind :class:`MarkSending`, in Starlette; the SSE URL."""
    app = Starlette(
        routes=[Route("/events", EventSourceApp(store, heartbeat=0))],
        middleware=[Middleware(MarkSending, seen=seen)],
    )
    return await uvicorn_server(app) + "/events"


async def test_a_context_variable_set_inside_send_survives_its_suspension(
    uvicorn_server: UvicornStarter,
) -> None:
    """A ``send`` that sets a context variable, suspends, then reads and resets it:
    every message arrives, and it reads back what it set (the rest of a send started
    eagerly runs in the context its start ran in)."""
    store = RecordingQueueStore()
    seen: list[tuple[str, int]] = []
    url = await serve_marked(uvicorn_server, store, seen)
    async with listening(url, store) as client:
        ids = await publish(store, [Step(5, pause=0.01)])
        assert_once_in_order(await client.take(len(ids)), ids)
    assert [marked for marked, _ in seen] == ["http.response.start"] + ["http.response.body"] * (
        len(seen) - 1
    )
    assert len(seen) >= 1 + len(ids)


async def test_state_kept_in_a_context_variable_carries_from_send_to_send(
    uvicorn_server: UvicornStarter, paths: Paths
) -> None:
    """A ``send`` wrapper counting its body chunks in a context variable (the app
    calls ``send`` from one task, so each call sees the last one's value) counts 1,
    2, 3... through direct writes and writes of the stream's task alike."""
    store = RecordingQueueStore()
    seen: list[tuple[str, int]] = []
    url = await serve_marked(uvicorn_server, store, seen)
    async with listening(url, store) as client:
        ids: list[str] = []
        for _ in range(10):  # a single, then a burst while the task finishes it
            await publish(store, [Step(1, pause=None), Step(5, pause=0.0)], ids)
        assert_once_in_order(await client.take(len(ids)), ids)
    assert paths.handed_over > 0  # both ways were taken
    counts = [count for _, count in seen if count]
    assert counts == list(range(1, len(counts) + 1))
    assert len(counts) >= 2


# -- 5. heartbeats ------------------------------------------------------------------------


def heartbeats_between(log: list[Item | str], first: str, last: str | None) -> int:
    """The heartbeats in ``log`` after the message ``first`` and before ``last``."""
    ids = [entry.id if isinstance(entry, Item) else None for entry in log]
    start = ids.index(first)
    end = ids.index(last) if last is not None else len(log)
    return log[start:end].count(HEARTBEAT)


async def test_heartbeats_go_out_while_idle_and_not_while_messages_flow(
    serve_store: StoreServer,
) -> None:
    """With ``heartbeat=0.2``: an idle SSE stream gets heartbeats; while a message goes
    out every 40 ms (directly, from the event loop) it gets none; idle again, they come
    back; every message arrives once, in order, heartbeats only between them."""
    store = RecordingQueueStore()
    endpoints = await serve_store(store, sse={"heartbeat": 0.2})
    async with raw_client("sse", endpoints) as client:
        reading = asyncio.ensure_future(client.read_until(lambda: False))
        try:
            await asyncio.sleep(0.7)
            idle = client.log.count(HEARTBEAT)
            steps = [Step(10, pause=0.04), Step(100, pause=None), Step(10, pause=0.04)]
            flow = await publish(store, steps)
            await asyncio.sleep(0.7)
            ids = await publish(store, [Step(3)], list(flow))
            await wait_until(lambda: len(client.items) == len(ids))
        finally:
            reading.cancel()
    assert idle >= 2
    assert client.log[:idle] == [HEARTBEAT] * idle
    assert_once_in_order(client.items, ids)
    assert heartbeats_between(client.log, flow[0], flow[-1]) == 0
    assert heartbeats_between(client.log, flow[-1], ids[len(flow)]) >= 2


async def test_heartbeats_come_back_after_a_slow_write_without_a_write_timeout() -> None:
    """``stream_sse`` with ``heartbeat=0.1`` and no write timeout: a direct write that
    is backed up for 0.35 s (handed to the task), then idle: heartbeats go on."""
    store = QueueStore()
    subscription = store.subscribe()
    loop = asyncio.get_running_loop()
    written: list[bytes] = []
    backed_up: asyncio.Future[None] = loop.create_future()

    async def write(chunk: bytes) -> None:
        written.append(chunk)

    def write_now(chunk: bytes) -> Awaitable[None] | None:
        written.append(chunk)
        return backed_up

    options = SSEOptions(heartbeat=0.1, write_timeout=None)
    stream = asyncio.ensure_future(stream_sse(subscription, write, options, write_now=write_now))
    try:
        await asyncio.sleep(0.15)
        store.submit("slow")
        await asyncio.sleep(0.35)
        backed_up.set_result(None)
        await asyncio.sleep(0.5)
    finally:
        subscription.close()
        await asyncio.wait_for(stream, TIMEOUT)
    after = written[[b"slow" in chunk for chunk in written].index(True) + 1 :]
    assert after.count(sse.HEARTBEAT) >= 3
