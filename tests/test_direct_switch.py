"""The direct-delivery switch (:mod:`tornadose.delivery.direct`) and the version check
of the private asyncio API it relies on (:mod:`tornadose._compat.asyncio_tasks`).

What is checked here:

1. The version check on its own: CPython 3.11 to 3.14 with the names present is
   usable; another interpreter, another version, or a missing name is not, and says
   why.
2. The setting: ``TORNADOSE_DIRECT_DELIVERY`` values, a typo refused at import, and
   :func:`~tornadose.delivery.direct.set_enabled`.
3. With the switch off, on both adapters and both transports, every message is
   written from its stream's task (the delivery loop is on the stack of the write),
   never from an event loop callback; with it on, idle streams are written from a
   callback (the same observation, so the check can fail).
4. Where the private API is unusable, the switch cannot turn direct delivery on, one
   warning says why, and delivery still works (in a subprocess that hides the names).
5. The whole delivery-contract suite passes with ``TORNADOSE_DIRECT_DELIVERY=0``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import types
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.clients import TIMEOUT, sse_client, take, ws_subscribed
from tests.conftest import TornadoStarter, UvicornStarter, by_path, wait_until
from tornadose._compat import asyncio_tasks
from tornadose._compat.asyncio_tasks import KNOWN_GOOD, unsupported_because
from tornadose.adapters.asgi import EventSourceApp, WebSocketApp
from tornadose.adapters.tornado import EventSource, WebSocketSubscriber
from tornadose.delivery import direct, streams
from tornadose.stores import QueueStore

ROOT = Path(__file__).resolve().parent.parent

#: The code objects of the delivery loops: a write made from a stream's task has one
#: of them on its stack (the loop awaits the write); a write made from an event loop
#: callback has not (the loop is suspended).
#: The delivery loop every stream's task runs (SSE and WebSocket alike).
LOOPS = frozenset({streams._Stream.run.__code__})


def in_delivery_loop() -> bool:
    """Whether the caller runs inside a delivery loop, that is in its stream's task."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code in LOOPS:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


@pytest.fixture
def switch() -> Iterator[None]:
    """Restore the switch as it was after the test."""
    before = direct._requested
    yield
    direct.set_enabled(before)


# -- 1. the version check ---------------------------------------------------------------


class Tasks:
    """A stand-in for ``asyncio.tasks`` with both private functions."""

    @staticmethod
    def _enter_task(loop: object, task: object) -> None: ...

    @staticmethod
    def _leave_task(loop: object, task: object) -> None: ...


class Blocking:
    """A future type with the ``_asyncio_future_blocking`` flag."""

    _asyncio_future_blocking = False


@pytest.mark.parametrize("version", [(3, 11), (3, 12), (3, 13), (3, 14)])
def test_cpython_311_to_314_with_the_names_is_usable(version: tuple[int, int]) -> None:
    """The known-good versions, with the names there, are usable."""
    assert unsupported_because("cpython", version, Tasks, Blocking) is None


def test_this_interpreter_is_judged_as_the_check_says() -> None:
    """The module's verdict is the pure check applied to this interpreter; on the
    CPython the tests run on (3.11 to 3.14) the direct path is usable."""
    here = unsupported_because(
        sys.implementation.name, sys.version_info[:2], asyncio.tasks, asyncio.Future
    )
    assert here == asyncio_tasks.UNSUPPORTED
    oldest, newest = KNOWN_GOOD
    if sys.implementation.name == "cpython" and oldest <= sys.version_info[:2] <= newest:
        assert here is None


@pytest.mark.parametrize(
    ("implementation", "version", "expected"),
    [
        ("pypy", (3, 11), "pypy is not CPython"),
        ("cpython", (3, 10), "Python 3.10 is not a version known to work"),
        ("cpython", (3, 15), "Python 3.15 is not a version known to work"),
        ("cpython", (4, 0), "Python 4.0 is not a version known to work"),
    ],
)
def test_another_interpreter_or_version_is_not_usable(
    implementation: str, version: tuple[int, int], expected: str
) -> None:
    """Anything but CPython 3.11 to 3.14 is refused, saying what it is."""
    reason = unsupported_because(implementation, version, Tasks, Blocking)
    assert reason is not None
    assert reason.startswith(expected)


def test_a_missing_private_name_is_not_usable_and_named() -> None:
    """A known-good version whose asyncio lacks a name is refused, naming each one."""
    only_enter = types.SimpleNamespace(_enter_task=Tasks._enter_task)
    reason = unsupported_because("cpython", (3, 12), only_enter, Blocking)
    assert reason == "asyncio.tasks._leave_task missing"
    reason = unsupported_because("cpython", (3, 12), types.SimpleNamespace(), object)
    assert reason == (
        "asyncio.tasks._enter_task, asyncio.tasks._leave_task, "
        "asyncio.Future._asyncio_future_blocking missing"
    )


# -- 2. the setting ------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "1", "true", "Yes", " on "])
def test_unset_or_a_yes_keeps_direct_delivery_on(value: str | None) -> None:
    assert direct.parse_setting(value) is True


@pytest.mark.parametrize("value", ["0", "false", "No", "OFF "])
def test_a_no_turns_direct_delivery_off(value: str) -> None:
    assert direct.parse_setting(value) is False


@pytest.mark.parametrize("value", ["2", "disabled", "of"])
def test_any_other_value_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="TORNADOSE_DIRECT_DELIVERY"):
        direct.parse_setting(value)


def run_python(code: str, **environment: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter of this virtualenv, with ``environment``."""
    env = {**os.environ, **environment}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
        check=False,
    )


def test_the_environment_variable_is_read_at_import() -> None:
    """``TORNADOSE_DIRECT_DELIVERY=0`` turns it off in a new process; a typo makes
    the import fail, naming the variable."""
    code = "from tornadose.delivery import direct; print(direct.enabled())"
    assert run_python(code, TORNADOSE_DIRECT_DELIVERY="0").stdout.strip() == "False"
    assert run_python(code, TORNADOSE_DIRECT_DELIVERY="1").stdout.strip() == "True"
    failed = run_python(code, TORNADOSE_DIRECT_DELIVERY="nope")
    assert failed.returncode != 0
    assert "TORNADOSE_DIRECT_DELIVERY='nope'" in failed.stderr


def test_set_enabled_turns_it_off_and_on(switch: None) -> None:
    """The programmatic switch, and :func:`direct.if_enabled` following it."""

    def write_now(payload: bytes) -> None: ...

    direct.set_enabled(False)
    assert not direct.enabled()
    assert direct.if_enabled(write_now) is None
    direct.set_enabled(True)
    assert direct.enabled()
    assert direct.if_enabled(write_now) is write_now
    assert direct.if_enabled(None) is None


# -- 3. where writes happen -------------------------------------------------------------


class Where:
    """For each message write, whether it was made inside a delivery loop."""

    def __init__(self) -> None:
        self.in_loop: list[bool] = []


class TornadoSSE(EventSource):
    """Tornado's ``EventSource``, noting where each body write is made (its one
    synchronous write, which the direct path and the task's path both end in)."""

    def initialize(self, where: Where, **options: Any) -> None:  # type: ignore[override]
        super().initialize(**options)
        self.where = where

    def _write_now(self, chunk: bytes) -> Awaitable[None] | None:
        if chunk:
            self.where.in_loop.append(in_delivery_loop())
        return super()._write_now(chunk)


class TornadoWebSocket(WebSocketSubscriber):
    """Tornado's ``WebSocketSubscriber`` with compression on, so that every frame
    goes through the public ``write_message``, noting where each is sent."""

    def initialize(self, where: Where, **options: Any) -> None:  # type: ignore[override]
        super().initialize(**options)
        self.where = where

    def get_compression_options(self) -> dict[str, Any]:
        return {}

    def write_message(
        self, message: str | bytes | dict[str, Any], binary: bool = False
    ) -> asyncio.Future[None]:
        self.where.in_loop.append(in_delivery_loop())
        return super().write_message(message, binary)


class NoteWhereSent:
    """ASGI middleware noting where each message-carrying ``send`` is made."""

    def __init__(self, app: Any, where: Where) -> None:
        self.app = app
        self.where = where

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def noting(message: dict[str, Any]) -> None:
            if message.get("body") or message.get("text"):
                self.where.in_loop.append(in_delivery_loop())
            await send(message)

        await self.app(scope, receive, noting)


async def serve_noting(
    adapter: str, store: QueueStore, where: Where, tornado: TornadoStarter, asgi: UvicornStarter
) -> str:
    """Serve ``store`` at ``/events`` and ``/ws`` (no heartbeats), noting writes."""
    if adapter == "tornado":
        options = {"store": store, "where": where}
        return await tornado(
            [
                (r"/events", TornadoSSE, {**options, "heartbeat": 0}),
                (r"/ws", TornadoWebSocket, options),
            ]
        )
    apps = {"/events": EventSourceApp(store, heartbeat=0), "/ws": WebSocketApp(store)}
    return await asgi(NoteWhereSent(by_path(apps), where))


async def receive_all(url: str, transport: str, store: QueueStore, count: int) -> list[Any]:
    """Connect one reading client, publish ``count`` messages 5 ms apart (the stream
    goes idle between them), and return the ``n`` of each message received."""

    async def publish() -> None:
        for n in range(count):
            store.submit({"n": n})
            await asyncio.sleep(0.005)

    if transport == "sse":
        async with sse_client(url + "/events") as (_, events):
            await wait_until(lambda: len(store.subscribers) == 1)
            publisher = asyncio.create_task(publish())
            received = await take(events, count)
            await publisher
            return [json.loads(event.data)["n"] for event in received]
    async with ws_subscribed(url.replace("http", "ws") + "/ws", store) as ws:
        publisher = asyncio.create_task(publish())
        frames = [await asyncio.wait_for(ws.recv(), TIMEOUT) for _ in range(count)]
        await publisher
        return [json.loads(frame)["data"]["n"] for frame in frames]


@pytest.mark.parametrize("transport", ["sse", "websocket"])
@pytest.mark.parametrize("adapter", ["tornado", "asgi"])
@pytest.mark.parametrize("on", [False, True], ids=["off", "on"])
async def test_with_the_switch_off_every_write_is_made_from_the_streams_task(
    tornado_server: TornadoStarter,
    uvicorn_server: UvicornStarter,
    switch: None,
    adapter: str,
    transport: str,
    on: bool,
) -> None:
    """Off: each message is written by the delivery loop in its task (the adapter's
    synchronous write is ignored) and arrives once, in order. On (the control): an
    idle stream's messages are written from an event loop callback, outside the
    loop, which shows the observation tells the two apart."""
    direct.set_enabled(on)
    store = QueueStore()
    where = Where()
    url = await serve_noting(adapter, store, where, tornado_server, uvicorn_server)
    received = await receive_all(url, transport, store, 20)
    assert received == list(range(20))
    assert where.in_loop, "no write was seen"
    if on:
        assert not all(where.in_loop), "direct delivery on, yet every write came from the task"
    else:
        assert all(where.in_loop), f"{where.in_loop.count(False)} writes made outside the task"


# -- 4. an interpreter where the private API is missing ------------------------------------

#: A server and client in one process whose asyncio lacks ``_enter_task``: direct
#: delivery cannot be turned on, and two ASGI streams still deliver everything.
WITHOUT_PRIVATE_API = """
import asyncio, asyncio.tasks, json, logging, sys
del asyncio.tasks._enter_task
logging.basicConfig(level=logging.WARNING, stream=sys.stdout, format="LOG %(name)s: %(message)s")
import httpx, uvicorn
from tornadose._compat import asyncio_tasks
from tornadose.adapters.asgi import EventSourceApp
from tornadose.delivery import direct
from tornadose.stores import QueueStore

async def one_client(port, store):
    received = []
    async with httpx.AsyncClient(timeout=5, trust_env=False) as client:
        async with client.stream("GET", f"http://127.0.0.1:{port}/") as response:
            while not store.subscribers:
                await asyncio.sleep(0.01)
            for n in range(5):
                store.submit({"n": n})
                await asyncio.sleep(0.005)
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    received.append(json.loads(line[5:])["n"])
                if len(received) == 5:
                    break
    while store.subscribers:
        await asyncio.sleep(0.01)
    return received

async def main():
    direct.set_enabled(True)
    store = QueueStore()
    app = EventSourceApp(store, heartbeat=0)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    print("RECEIVED", await one_client(port, store), await one_client(port, store))
    server.should_exit = True
    await task
    print("UNSUPPORTED", asyncio_tasks.UNSUPPORTED)
    print("ENABLED", direct.enabled())

asyncio.run(asyncio.wait_for(main(), 30))
"""


def test_without_the_private_api_delivery_goes_on_through_the_tasks() -> None:
    """With ``asyncio.tasks._enter_task`` gone, the check names it, the switch stays
    off even when asked on, one warning (not one per stream) says so, and two
    streams in a row deliver every message in order."""
    result = run_python(WITHOUT_PRIVATE_API)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "RECEIVED [0, 1, 2, 3, 4] [0, 1, 2, 3, 4]" in lines
    assert "UNSUPPORTED asyncio.tasks._enter_task missing" in lines
    assert "ENABLED False" in lines
    warnings = [line for line in lines if line.startswith("LOG tornadose.direct:")]
    assert warnings == [
        "LOG tornadose.direct: direct delivery is off (asyncio.tasks._enter_task missing):"
        " every write goes out from its stream's task"
    ]


# -- 5. the delivery contract with the switch off ----------------------------------------


@pytest.mark.timeout(900)
def test_the_delivery_contract_holds_with_direct_delivery_off() -> None:
    """``tests/test_delivery_contract.py``, run whole in a new process with
    ``TORNADOSE_DIRECT_DELIVERY=0``, passes: the guarantees do not depend on the
    direct path."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/test_delivery_contract.py",
            "-q",
            "-p",
            "no:randomly",
        ],
        capture_output=True,
        text=True,
        timeout=840,
        cwd=ROOT,
        env={**os.environ, direct.ENVIRONMENT_VARIABLE: "0"},
        check=False,
    )
    tail = "\n".join(result.stdout.splitlines()[-30:])
    assert result.returncode == 0, tail
    assert " passed" in tail
    assert " failed" not in tail
