"""One store served by Tornado and uvicorn at once, in one event loop.

In-process: both servers started in the test's own loop, sharing a store. As a
program: ``examples/two_servers.py``, run in a subprocess and stopped with a signal.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute
from websockets.asyncio.client import ClientConnection, connect

from tests.clients import TIMEOUT, offset, recv, sse_client
from tests.conftest import TornadoStarter, UvicornStarter, free_port, wait_until
from tests.programs import StartProgram, wait_for_exit, wait_for_port
from tornadose.adapters.asgi import EventSourceApp, WebSocketApp
from tornadose.handlers import EventSource, WebSocketSubscriber
from tornadose.stores import QueueStore

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "two_servers.py"
#: What must never show up on the example's stderr.
TRACEBACK_MARKERS = ("Traceback", "Exception ignored", "Task was destroyed", "never retrieved")

Received = tuple[str | None, Any]


class Client:
    """One subscriber of a server, SSE or WebSocket, reading messages as ``(id, data)``."""

    async def read(self) -> Received:
        raise NotImplementedError

    async def read_to_end(self) -> None:
        """Read until the server ends the stream; fails unless it ends cleanly."""
        raise NotImplementedError


class SSEClient(Client):
    def __init__(self, events: AsyncIterator[ServerSentEvent]) -> None:
        self.events = events

    async def read(self) -> Received:
        event = await asyncio.wait_for(anext(self.events), TIMEOUT)
        return event.id, json.loads(event.data)

    async def read_to_end(self) -> None:
        async with asyncio.timeout(TIMEOUT):
            async for _ in self.events:  # a cut connection raises here
                pass


class WSClient(Client):
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def read(self) -> Received:
        envelope = await recv(self.ws)
        return envelope.id, envelope.data

    async def read_to_end(self) -> None:
        async with asyncio.timeout(TIMEOUT):
            async for _ in self.ws:
                pass
        assert self.ws.close_code == 1001, (self.ws.close_code, self.ws.close_reason)


async def collect(client: Client, count: int) -> list[Received]:
    return [await client.read() for _ in range(count)]


async def open_clients(stack: AsyncExitStack, base: str, path: str, count: int) -> list[Client]:
    """``count`` SSE and ``count`` WebSocket clients of ``{base}{path}`` (``/events``, ``/ws``)."""
    clients: list[Client] = []
    for _ in range(count):
        _, events = await stack.enter_async_context(sse_client(f"{base}{path}/events"))
        ws_url = base.replace("http://", "ws://", 1) + f"{path}/ws"
        ws = await stack.enter_async_context(
            connect(ws_url, proxy=None, open_timeout=TIMEOUT, close_timeout=TIMEOUT)
        )
        clients += [SSEClient(events), WSClient(ws)]
    return clients


# -- in-process: both servers in the test's event loop --------------------------------


async def test_every_client_of_both_servers_gets_every_message_in_order(
    tornado_server: TornadoStarter, uvicorn_server: UvicornStarter
) -> None:
    """300 messages submitted once reach every SSE and WS client of Tornado and uvicorn,
    with the same ids in the same order."""
    store = QueueStore()
    tornado_base = await tornado_server(
        [
            (r"/events", EventSource, {"store": store}),
            (r"/ws", WebSocketSubscriber, {"store": store}),
        ]
    )
    asgi = Starlette(
        routes=[Route("/events", EventSourceApp(store)), WebSocketRoute("/ws", WebSocketApp(store))]
    )
    uvicorn_base = await uvicorn_server(asgi)

    async with AsyncExitStack() as stack:
        clients = await open_clients(stack, tornado_base, "", 2)
        clients += await open_clients(stack, uvicorn_base, "", 2)
        await wait_until(lambda: len(store.subscribers) == len(clients))

        published = [store.submit({"n": n}) for n in range(300)]
        expected = [(p.id, {"n": n}) for n, p in enumerate(published)]
        received = await asyncio.gather(*(collect(client, len(expected)) for client in clients))

    assert len(received) == 8
    for messages in received:
        assert messages == expected


# -- examples/two_servers.py, run as a program ------------------------------------------


async def read_until(client: Client, last_id: str) -> list[Received]:
    """Read messages up to and including the one with id ``last_id``."""
    messages = [await client.read()]
    while messages[-1][0] != last_id:
        messages.append(await client.read())
    return messages


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
async def test_example_serves_one_stream_on_both_servers_and_exits_cleanly(
    start_program: StartProgram, signum: signal.Signals
) -> None:
    """The example's SSE and WS clients on both servers get the same messages and ids, a
    POST to one server reaches all, and a signal ends every stream and exits 0."""
    tornado_port, uvicorn_port = free_port(), free_port()
    program = start_program(
        [
            *(sys.executable, str(EXAMPLE)),
            *("--tornado-port", str(tornado_port), "--uvicorn-port", str(uvicorn_port)),
        ]
    )
    await wait_for_port(program, tornado_port)
    await wait_for_port(program, uvicorn_port)
    tornado_base, uvicorn_base = (
        f"http://127.0.0.1:{tornado_port}",
        f"http://127.0.0.1:{uvicorn_port}",
    )

    async with AsyncExitStack() as stack:
        clients = await open_clients(stack, tornado_base, "/ticks", 1)
        clients += await open_clients(stack, uvicorn_base, "/ticks", 1)
        firsts = [await client.read() for client in clients]
        # Each client joined at its own moment: compare from the first message all have.
        start = max(offset(message_id) for message_id, _ in firsts)

        async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as http:
            response = await http.post(
                f"{tornado_base}/ticks/publish", json={"n": -1, "value": 0.5}
            )
        assert response.status_code == 202, response.text
        posted_id = response.json()["id"]
        streams = [
            [first, *await read_until(client, posted_id)]
            for first, client in zip(firsts, clients, strict=True)
        ]

        windows = [[m for m in messages if offset(m[0]) >= start] for messages in streams]
        assert windows[0][-1] == (posted_id, {"n": -1, "value": 0.5})
        assert all(window == windows[0] for window in windows), windows
        offsets = [offset(message_id) for message_id, _ in windows[0]]
        assert offsets == list(range(start, start + len(offsets)))  # no gap
        assert all(set(data) == {"n", "value"} for _, data in windows[0])

        # Every stream ends cleanly (WebSockets with 1001), then the program exits 0.
        program.proc.send_signal(signum)
        await asyncio.gather(*(client.read_to_end() for client in clients))
        returncode = await wait_for_exit(program, asyncio.get_running_loop().time(), 8)
    stderr = program.stderr_text()
    assert returncode == 0, stderr
    stdout = program.stdout_text()
    for base in (tornado_base, uvicorn_base):  # it tells where it serves
        assert f"{base}/ticks/events" in stdout, stdout
        assert f"{base.replace('http', 'ws', 1)}/ticks/ws" in stdout, stdout
    for marker in TRACEBACK_MARKERS:
        assert marker not in stderr, stderr
