"""JSON error bodies on routes mounted the README's Starlette way, under a real uvicorn.

Guarantees checked:

* ``examples/asgi_app.py`` (the README's Starlette app) answers every refusal of the
  README's table for ``POST /publish`` in JSON, ``405`` included (``Allow: POST``), and a
  non-``GET`` on ``/events`` with a JSON ``405`` (``Allow: GET``): its routes pass every
  method on to tornadose's apps;
* a ``ChannelsApp`` mounted in Starlette answers in JSON too (``405`` on a publish
  endpoint, ``404`` for a channel it does not have);
* why the README mounts without ``methods=``: Starlette answers a method outside
  ``methods`` itself, in plain text, before the app sees the request (so a README block
  that mounts a tornadose app with ``methods=`` would contradict the table: a test
  checks that none does).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from tests.clients import TIMEOUT
from tests.conftest import UvicornStarter
from tornadose.adapters.asgi import ChannelsApp, PublishApp
from tornadose.http.channels import Channels
from tornadose.stores import QueueStore

ROOT = Path(__file__).resolve().parent.parent
#: The tornadose apps a README route may mount (``Route(path, <App>(...), ...)``).
APPS = ("EventSourceApp", "PublishApp", "WebSocketApp", "ChannelsApp")


def load_example_app() -> Any:
    """The ``app`` of ``examples/asgi_app.py``, imported from its file (not run)."""
    spec = importlib.util.spec_from_file_location("asgi_app_example", ROOT / "examples/asgi_app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


def client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=TIMEOUT, trust_env=False)


def assert_json_error(answer: httpx.Response, status: int, error: str) -> None:
    """``answer`` is tornadose's JSON error: ``status``, ``{"error": error, ...}``."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json"), answer.headers
    body = answer.json()
    assert body["error"] == error, body
    assert isinstance(body["detail"], str)


async def test_the_readme_starlette_app_answers_the_documented_table_in_json(
    uvicorn_server: UvicornStarter,
) -> None:
    base = await uvicorn_server(load_example_app())
    publish = base + "/publish"
    async with client() as http:
        for method in ("GET", "PUT", "DELETE", "PATCH"):
            answer = await http.request(method, publish)
            assert_json_error(answer, 405, "method_not_allowed")
            assert answer.headers["allow"] == "POST"
        assert_json_error(
            await http.post(publish, content=b"{", headers={"content-type": "application/json"}),
            400,
            "malformed_json",
        )
        assert_json_error(
            await http.post(publish, content=b"{}", headers={"content-type": "text/plain"}),
            415,
            "unsupported_media_type",
        )
        assert_json_error(
            await http.post(publish, json={}, params={"event": "a\nb"}), 400, "invalid_field"
        )
        big = b'"' + b"x" * (1024 * 1024 + 1) + b'"'
        assert_json_error(
            await http.post(publish, content=big, headers={"content-type": "application/json"}),
            413,
            "payload_too_large",
        )
        accepted = await http.post(publish, json={"hello": "world"})
        assert accepted.status_code == 202, accepted.text
        assert set(accepted.json()) == {"id"}

        for method in ("POST", "PUT", "DELETE"):
            answer = await http.request(method, base + "/events")
            assert_json_error(answer, 405, "method_not_allowed")
            assert answer.headers["allow"] == "GET"


async def test_channels_mounted_in_starlette_answer_in_json(
    uvicorn_server: UvicornStarter,
) -> None:
    channels = Channels()
    channels.add("chat")
    base = await uvicorn_server(Starlette(routes=[Mount("/live", ChannelsApp(channels))]))
    async with client() as http:
        answer = await http.get(base + "/live/chat/publish")
        assert_json_error(answer, 405, "method_not_allowed")
        assert answer.headers["allow"] == "POST"
        assert_json_error(await http.get(base + "/live/nope/events"), 404, "unknown_channel")
        accepted = await http.post(base + "/live/chat/publish", json={"text": "hi"})
        assert accepted.status_code == 202, accepted.text


async def test_starlette_methods_answer_405_in_plain_text_before_the_app(
    uvicorn_server: UvicornStarter,
) -> None:
    """The reason for the README's way: with ``methods=["POST"]``, a ``GET`` never
    reaches ``PublishApp``; Starlette answers it, in plain text."""
    app = Starlette(routes=[Route("/publish", PublishApp(QueueStore()), methods=["POST"])])
    base = await uvicorn_server(app)
    async with client() as http:
        answer = await http.get(base + "/publish")
    assert answer.status_code == 405
    assert answer.headers["content-type"].startswith("text/plain"), answer.headers
    assert "error" not in answer.text


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", markdown, flags=re.DOTALL | re.MULTILINE)


@pytest.mark.parametrize(
    "document", ["README.md", "examples/asgi_app.py"], ids=["README", "asgi_app"]
)
def test_no_tornadose_app_is_mounted_with_methods(document: str) -> None:
    """No Python block of the README (nor the Starlette example) mounts a tornadose app
    on a route restricted with ``methods=``: its other methods would get Starlette's
    plain-text ``405``, not the documented JSON ``method_not_allowed``."""
    text = (ROOT / document).read_text()
    blocks = python_blocks(text) if document.endswith(".md") else [text]
    assert blocks, document
    pattern = re.compile(rf"\b(?:{'|'.join(APPS)})\(.*\bmethods\s*=")
    offending = [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if pattern.search(line.split("#")[0])
    ]
    assert not offending, offending
