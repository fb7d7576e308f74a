"""TCP_USER_TIMEOUT: set on Tornado streams, and inherited from a listening socket."""

from __future__ import annotations

import asyncio
import socket

import pytest
import uvicorn

from tests.clients import sse_client, take
from tests.conftest import TornadoStarter, wait_until
from tornadose.adapters.asgi import EventSourceApp
from tornadose.handlers import BaseHandler, EventSource
from tornadose.sockets import listening_socket
from tornadose.stores import QueueStore

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "TCP_USER_TIMEOUT"), reason="TCP_USER_TIMEOUT is Linux-only"
)


def user_timeout_ms(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)


def test_accepted_connections_inherit_the_listening_sockets_timeout() -> None:
    """A connection accepted on ``listening_socket(user_timeout=...)`` has it too."""
    with listening_socket("127.0.0.1", 0, user_timeout=2.5) as server:
        assert user_timeout_ms(server) == 2500
        with socket.create_connection(server.getsockname(), timeout=5):
            server.setblocking(True)
            accepted, _ = server.accept()
            with accepted:
                assert user_timeout_ms(accepted) == 2500


async def test_tornado_stream_socket_gets_the_option(tornado_server: TornadoStarter) -> None:
    """``EventSource(tcp_user_timeout=...)`` sets it on the open stream's socket."""
    store = QueueStore()
    options = {"store": store, "tcp_user_timeout": 3}
    base = await tornado_server([(r"/events", EventSource, options)])
    async with sse_client(base + "/events"):
        await wait_until(lambda: len(store.subscribers) == 1)
        (handler,) = store.subscribers
        assert isinstance(handler, BaseHandler)
        stream = handler.request.connection.stream  # type: ignore[attr-defined]
        assert user_timeout_ms(stream.socket) == 3000


async def test_uvicorn_serves_on_a_prepared_socket() -> None:
    """uvicorn serves tornadose apps on a socket made by ``listening_socket``."""
    store = QueueStore()
    sock = listening_socket("127.0.0.1", 0, user_timeout=2)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(EventSourceApp(store), log_level="warning"))
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        await wait_until(lambda: server.started, timeout=10)
        async with sse_client(f"http://127.0.0.1:{port}/") as (_, events):
            await wait_until(lambda: len(store.subscribers) == 1)
            store.submit("over a prepared socket")
            (event,) = await take(events, 1)
        assert event.data == "over a prepared socket"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
        sock.close()
