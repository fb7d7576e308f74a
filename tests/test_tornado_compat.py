"""The fence around Tornado's private API (:mod:`tornadose.adapters._tornado_compat`):
with it (a checked Tornado) and without it (any other version: public API only),
the handlers behave the same."""

from __future__ import annotations

import httpx
import pytest
import tornado
import tornado.web

from tests.clients import TIMEOUT, recv, ws_subscribed
from tests.conftest import TornadoStarter
from tornadose.adapters import _tornado_compat as compat
from tornadose.adapters.tornado import JSONErrorHandler, WebSocketSubscriber
from tornadose.stores import QueueStore


def test_private_api_is_used_only_on_a_checked_tornado() -> None:
    """The version check at import decides, from ``tornado.version_info``."""
    low, high = compat.SUPPORTED
    assert (low <= tuple(tornado.version_info[:2]) < high) == compat.PRIVATE_API


@pytest.mark.parametrize("private_api", [True, False])
async def test_websocket_frames_arrive_in_order_with_or_without_private_api(
    tornado_server: TornadoStarter, monkeypatch: pytest.MonkeyPatch, private_api: bool
) -> None:
    """Tornado's frame writer, or the public ``write_message``: the same frames."""
    monkeypatch.setattr(compat, "PRIVATE_API", private_api and compat.PRIVATE_API)
    store = QueueStore()
    base = await tornado_server([(r"/ws", WebSocketSubscriber, {"store": store})])
    async with ws_subscribed(base.replace("http://", "ws://", 1) + "/ws", store) as ws:
        for n in range(50):
            store.submit(n)
        received = [(await recv(ws)).data for _ in range(50)]
    assert received == list(range(50))


class Busy(JSONErrorHandler):
    """A handler failing with a reason of its own."""

    def get(self) -> None:
        raise tornado.web.HTTPError(409, reason="busy right now")


@pytest.mark.parametrize(("private_api", "detail"), [(True, "busy right now"), (False, "Conflict")])
async def test_error_answers_carry_the_reason_or_the_standard_phrase(
    tornado_server: TornadoStarter,
    monkeypatch: pytest.MonkeyPatch,
    private_api: bool,
    detail: str,
) -> None:
    """An ``HTTPError``'s reason is the JSON ``detail``; without private API (another
    Tornado), the status's standard phrase is."""
    monkeypatch.setattr(compat, "PRIVATE_API", private_api and compat.PRIVATE_API)
    base = await tornado_server([(r"/busy", Busy)])
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
        response = await client.get(base + "/busy")
    assert response.status_code == 409
    assert response.json() == {"error": "http_error", "detail": detail}
