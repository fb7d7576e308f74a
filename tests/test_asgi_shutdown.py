"""Shutting down uvicorn while tornadose streams are open.

uvicorn waits for every open request to finish before it exits, and by default
(``timeout_graceful_shutdown`` unset) it waits forever; SSE and WebSocket streams
never finish by themselves. tornadose drains them on ``SIGINT``/``SIGTERM``
(:mod:`tornadose.shutdown`): SSE responses end cleanly, WebSockets close with 1001,
and uvicorn exits on its own. The first tests run ``examples/asgi_app.py`` (and the
same app under ``python -m uvicorn``) in a subprocess, with ``timeout_graceful_shutdown``
NOT set, and signal it; the last ones call :func:`tornadose.shutdown.drain` in-process.

How uvicorn exits after a signal (``uvicorn.Server.capture_signals``): once shut
down, it restores the previous handlers and raises the captured signal again. For
``SIGINT`` that is Python's ``KeyboardInterrupt``, which ``uvicorn.run`` catches:
exit status 0. For ``SIGTERM`` the previous handler is the default one: the process
ends killed by ``SIGTERM`` (``Popen.returncode == -15``, 143 in a shell), after
logging ``Finished server process``. That is what "exits on its own" looks like here.

Control (run by hand, not committed): the same test with the drain disabled (the
example run with ``tornadose.shutdown.install_signal_handlers`` replaced by a no-op)
fails. After ``SIGTERM`` uvicorn logs ``Waiting for connections to close. (CTRL+C to
force quit)``; the SSE clients get no end of stream and stop only on their own 5 s
read timeout (``httpx.ReadTimeout``); the WebSockets are closed by uvicorn itself with
1012 ("service restart"), not 1001; and the process exits only after the clients
gave up (5.07 s), i.e. never with clients that wait without a timeout, like browsers.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute
from websockets.asyncio.client import ClientConnection, connect

from tests.clients import TIMEOUT, expect_close, recv, sse_client, take, ws_subscribed
from tests.conftest import UvicornStarter, free_port, wait_until
from tests.programs import Program, StartProgram, wait_for_exit, wait_for_port
from tornadose import shutdown
from tornadose.adapters.asgi import EventSourceApp, WebSocketApp
from tornadose.stores import QueueStore

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "asgi_app.py"

#: Seconds uvicorn may take to exit after the signal: the drain deadline, plus margin.
EXIT_DEADLINE = shutdown.DEFAULT_DEADLINE + 3.0
#: With a client that stopped reading, uvicorn's own ``timeout_graceful_shutdown``
#: (3 s in the example) comes on top: an ASGI app cannot abort a connection.
STALLED_EXIT_DEADLINE = EXIT_DEADLINE + 3.0
#: Open streams of each kind while the signal arrives.
CLIENTS = 3
#: The exit status after a graceful shutdown, per signal (see the module docstring).
EXIT_STATUS = {signal.SIGINT: 0, signal.SIGTERM: -signal.SIGTERM}


@pytest.fixture(autouse=True)
def reset_drain() -> Iterator[None]:
    """Forget any drain at the end of each test, so later tests can open streams."""
    yield
    shutdown.reset()


# -- the server in a subprocess ---------------------------------------------------------


@dataclass
class Server:
    """A uvicorn process serving ``examples/asgi_app.py`` on ``port``."""

    program: Program
    port: int

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_base(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.program.stdout_text() + self.program.stderr_text()


#: How the example is started: its own ``__main__``, or the ``uvicorn`` command.
LAUNCHES: dict[str, Callable[[int], list[str]]] = {
    "script": lambda port: [sys.executable, str(EXAMPLE), "--port", str(port)],
    "uvicorn-cli": lambda port: [
        *(sys.executable, "-m", "uvicorn", "examples.asgi_app:app"),
        *("--host", "127.0.0.1", "--port", str(port)),
    ],
}

StartServer = Callable[[str], Server]


@pytest.fixture
def start_server(start_program: StartProgram) -> StartServer:
    """Start the example under uvicorn (``LAUNCHES[launch]``); killed when the test ends."""

    def start(launch: str) -> Server:
        port = free_port()
        return Server(start_program(LAUNCHES[launch](port), cwd=ROOT), port)

    return start


def http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=TIMEOUT, trust_env=False)


async def rest_of_stream(events: AsyncIterator[ServerSentEvent]) -> list[ServerSentEvent]:
    """The remaining events, once the stream ends cleanly (a cut one raises) with the
    shutdown's reconnect hint: a lone ``retry:`` of 1 to 5 s, which is checked and
    left out."""
    remaining = [event async for event in events]
    assert remaining, "the stream ended without a reconnect hint"
    hint = remaining[-1]
    assert hint.data == "", hint
    assert hint.retry is not None, hint
    assert 1000 <= hint.retry <= 5000, hint
    return remaining[:-1]


# -- signals ------------------------------------------------------------------------------


@pytest.mark.parametrize("launch", sorted(LAUNCHES))
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_ends_every_stream_and_uvicorn_exits_on_its_own(
    start_server: StartServer, launch: str, signum: signal.Signals
) -> None:
    """On SIGTERM/SIGINT every SSE stream ends cleanly, every WebSocket gets 1001, and
    uvicorn (no graceful-shutdown timeout set) exits within the deadline."""
    server = start_server(launch)
    await wait_for_port(server.program, server.port)
    loop = asyncio.get_running_loop()

    async with AsyncExitStack() as stack:
        client = await stack.enter_async_context(http_client())
        sources = [
            await stack.enter_async_context(aconnect_sse(client, "GET", server.base + "/events"))
            for _ in range(CLIENTS)
        ]
        sockets: list[ClientConnection] = [
            await stack.enter_async_context(
                connect(
                    server.ws_base + "/ws", proxy=None, open_timeout=TIMEOUT, close_timeout=TIMEOUT
                )
            )
            for _ in range(CLIENTS)
        ]
        # Every stream is open and subscribed: a published message reaches each one.
        published = await client.post(server.base + "/publish", json={"before": "shutdown"})
        assert published.status_code == 202
        streams = [source.aiter_sse() for source in sources]
        for events in streams:
            (event,) = await take(events, 1)
            assert event.data == '{"before":"shutdown"}'
        for ws in sockets:
            assert (await recv(ws)).data == {"before": "shutdown"}

        signalled_at = loop.time()
        server.program.proc.send_signal(signum)

        # The SSE bodies end (no hang, no cut mid-body), the WebSockets close with 1001.
        leftovers = await asyncio.wait_for(
            asyncio.gather(*(rest_of_stream(events) for events in streams)), EXIT_DEADLINE
        )
        assert leftovers == [[]] * CLIENTS
        received = await asyncio.gather(*(expect_close(ws) for ws in sockets))
        assert received == [[]] * CLIENTS
        assert [(ws.close_code, ws.close_reason) for ws in sockets] == [
            (1001, "server shutting down")
        ] * CLIENTS, server.program.describe()

    returncode = await wait_for_exit(server.program, signalled_at, EXIT_DEADLINE)
    assert returncode == EXIT_STATUS[signum], server.program.describe()
    log = server.log()
    assert "Finished server process" in log  # a graceful shutdown, not a kill
    assert "Traceback" not in log
    assert "ASGI callable returned without" not in log


def stalled_socket() -> socket.socket:
    """A client socket with a tiny receive buffer, so a client that does not read
    stalls the server's writes after a few MB (the server's send buffer) at most."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    return sock


async def connect_stalled(server: Server, transport: str, stack: AsyncExitStack) -> None:
    """Open a stream of ``transport`` that never reads a byte after the handshake."""
    loop = asyncio.get_running_loop()
    sock = stalled_socket()
    stack.callback(sock.close)
    await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", server.port)), TIMEOUT)
    if transport == "sse":
        await loop.sock_sendall(sock, b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        return
    # max_queue=1: the client stops reading the socket after one frame.
    await stack.enter_async_context(
        connect(
            server.ws_base + "/ws",
            sock=sock,
            proxy=None,
            open_timeout=TIMEOUT,
            close_timeout=1,
            max_queue=1,
            max_size=None,
            compression=None,
        )
    )


@pytest.mark.parametrize("transport", ["sse", "websocket"])
async def test_a_stalled_client_cannot_hold_the_shutdown(
    start_server: StartServer, transport: str
) -> None:
    """A client that stopped reading mid-stream cannot hold the shutdown: its stream is
    cut at the drain deadline, uvicorn's ``timeout_graceful_shutdown`` (set by the
    example) bounds the rest, and uvicorn exits; other clients end cleanly."""
    server = start_server("script")
    await wait_for_port(server.program, server.port)
    loop = asyncio.get_running_loop()
    # 20 x 512 KiB, incompressible: far more than the buffers between server and the
    # stalled client, far fewer messages than a QueueStore's max_queue (1000), so the
    # stalled client is stuck mid-write but not cut as a slow consumer.
    chunk = base64.b64encode(os.urandom(3 * 512 * 1024 // 4)).decode()

    async with AsyncExitStack() as stack:
        await connect_stalled(server, transport, stack)
        client = await stack.enter_async_context(http_client())
        source = await stack.enter_async_context(
            aconnect_sse(client, "GET", server.base + "/events")
        )
        events = source.aiter_sse()
        for _ in range(20):
            response = await client.post(server.base + "/publish", json=chunk)
            assert response.status_code == 202
            (event,) = await take(events, 1)  # the reading client keeps up
            assert event.data == chunk

        signalled_at = loop.time()
        server.program.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(rest_of_stream(events), EXIT_DEADLINE) == []
        returncode = await wait_for_exit(server.program, signalled_at, STALLED_EXIT_DEADLINE)

    assert returncode == -signal.SIGTERM, server.program.describe()
    assert "Finished server process" in server.log()


# -- drain() in-process -----------------------------------------------------------------


def pubsub_app(store: QueueStore) -> Starlette:
    return Starlette(
        routes=[Route("/events", EventSourceApp(store)), WebSocketRoute("/ws", WebSocketApp(store))]
    )


async def test_drain_ends_sse_streams_and_closes_websockets_with_1001(
    uvicorn_server: UvicornStarter,
) -> None:
    """``drain()`` delivers what is queued, then ends SSE streams and closes WebSockets 1001."""
    store = QueueStore()
    base = await uvicorn_server(pubsub_app(store))
    ws_base = base.replace("http://", "ws://", 1)
    async with (
        sse_client(base + "/events") as (_, events_a),
        sse_client(base + "/events") as (_, events_b),
        ws_subscribed(ws_base + "/ws", store) as ws_a,
        ws_subscribed(ws_base + "/ws", store) as ws_b,
    ):
        store.submit("last words")
        assert shutdown.drain() >= 4  # every open stream in this process
        assert shutdown.draining()
        for events in (events_a, events_b):
            remaining = await asyncio.wait_for(rest_of_stream(events), TIMEOUT)
            assert [event.data for event in remaining] == ["last words"]
        for ws in (ws_a, ws_b):
            assert [envelope.data for envelope in await expect_close(ws)] == ["last words"]
            assert (ws.close_code, ws.close_reason) == (1001, "server shutting down")
    await wait_until(lambda: len(store.subscribers) == 0)
    assert not store.closed  # the store itself is not closed: only the streams end


async def test_streams_opened_while_draining_end_at_once(uvicorn_server: UvicornStarter) -> None:
    """After ``drain()``, a new SSE stream ends at once and a new WebSocket gets 1001."""
    store = QueueStore()
    base = await uvicorn_server(pubsub_app(store))
    shutdown.drain()
    async with sse_client(base + "/events") as (source, events):
        assert source.response.status_code == 200
        assert await asyncio.wait_for(rest_of_stream(events), TIMEOUT) == []
    async with connect(
        base.replace("http://", "ws://", 1) + "/ws", open_timeout=TIMEOUT, close_timeout=TIMEOUT
    ) as ws:
        assert await expect_close(ws) == []
        assert ws.close_code == 1001
    assert len(store.subscribers) == 0


async def test_reset_lets_streams_open_again(uvicorn_server: UvicornStarter) -> None:
    """After ``drain()`` then ``reset()``, streams open and deliver as usual."""
    store = QueueStore()
    base = await uvicorn_server(pubsub_app(store))
    shutdown.drain()
    shutdown.reset()
    assert not shutdown.draining()
    async with sse_client(base + "/events") as (_, events):
        await wait_until(lambda: len(store.subscribers) == 1)
        store.submit("hello again")
        (event,) = await take(events, 1)
    assert event.data == "hello again"
