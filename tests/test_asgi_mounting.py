"""ASGI-only behaviour: the apps mounted in Starlette and FastAPI, under uvicorn.

What the bare apps do is tested once for both adapters in ``test_sse.py`` and
``test_websocket.py``; here, only what mounting adds or changes.

Mounting in FastAPI: the apps are plain ASGI apps, not FastAPI endpoints, so they
are not declared with ``@app.get``/``@app.websocket``. What works (tested below):

* ``app.mount("/ch", ChannelsApp(channels))``, as in Starlette;
* ``app.add_route("/events", EventSourceApp(store))``,
  ``app.add_route("/publish", PublishApp(store))`` and
  ``app.router.add_websocket_route("/ws", WebSocketApp(store))``: Starlette's route
  methods, which FastAPI inherits, take any ASGI app (an object that is not a plain
  function) as endpoint. Type checkers complain (the annotation says "request
  handler"), but it works. ``FastAPI`` itself has no ``add_websocket_route`` (it is
  only on ``app.router``);
* ``app.router.routes.append(Route(...))`` / ``WebSocketRoute(...)``, with the same
  Starlette route objects as in a Starlette app.

Mounted without ``methods`` (as here), a route passes every method on to the app,
which answers ``405`` itself in JSON (``Allow: GET`` / ``Allow: POST``), exactly like
the Tornado handler; ``methods=["POST"]`` would make Starlette answer a plain-text
``405`` instead (see ``test_starlette_json_errors.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import Mount, Route, WebSocketRoute

from tests.clients import TIMEOUT, recv, sse_client, take, ws_subscribed
from tests.conftest import UvicornStarter, wait_until
from tornadose.adapters.asgi import ChannelsApp, EventSourceApp, PublishApp, WebSocketApp
from tornadose.http.channels import Channels
from tornadose.stores import BaseStore, QueueStore

JSON = {"content-type": "application/json"}


def ws_url(base: str) -> str:
    """The ``ws://`` form of an ``http://`` URL."""
    return base.replace("http://", "ws://", 1)


def http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=TIMEOUT, trust_env=False)


# -- mounted in Starlette and FastAPI ---------------------------------------------------

#: (SSE path, WebSocket path, publish path) served by every app built below.
DIRECT = ("/events", "/ws", "/publish")
CHANNEL = ("/ch/news/events", "/ch/news/ws", "/ch/news/publish")


def starlette_app(store: BaseStore, channels: Channels) -> Starlette:
    return Starlette(
        routes=[
            Route("/events", EventSourceApp(store)),
            WebSocketRoute("/ws", WebSocketApp(store)),
            Route("/publish", PublishApp(store)),
            Mount("/ch", ChannelsApp(channels)),
        ]
    )


def fastapi_app_with_add_route(store: BaseStore, channels: Channels) -> FastAPI:
    app = FastAPI()
    app.add_route("/events", EventSourceApp(store))  # type: ignore[arg-type]
    app.router.add_websocket_route("/ws", WebSocketApp(store))  # type: ignore[arg-type]
    app.add_route("/publish", PublishApp(store))  # type: ignore[arg-type]
    app.mount("/ch", ChannelsApp(channels))
    return app


def fastapi_app_with_route_objects(store: BaseStore, channels: Channels) -> FastAPI:
    app = FastAPI()
    app.router.routes.append(Route("/events", EventSourceApp(store)))
    app.router.routes.append(WebSocketRoute("/ws", WebSocketApp(store)))
    app.router.routes.append(Route("/publish", PublishApp(store)))
    app.mount("/ch", ChannelsApp(channels))
    return app


AppFactory = Callable[[BaseStore, Channels], Any]


@pytest.mark.parametrize(
    "make_app",
    [starlette_app, fastapi_app_with_add_route, fastapi_app_with_route_objects],
    ids=["starlette", "fastapi-add_route", "fastapi-routes.append"],
)
@pytest.mark.parametrize("paths", [DIRECT, CHANNEL], ids=["apps", "channels"])
async def test_mounted_apps_serve_sse_websocket_and_publish(
    uvicorn_server: UvicornStarter, make_app: AppFactory, paths: tuple[str, str, str]
) -> None:
    """Mounted in Starlette/FastAPI, a POSTed message reaches an SSE and a WebSocket client."""
    store = QueueStore()
    channels = Channels()
    channels.add("news")
    app = make_app(store, channels)
    target = store if paths is DIRECT else channels["news"].store
    base = await uvicorn_server(app)
    events_path, ws_path, publish_path = paths

    async with (
        sse_client(base + events_path) as (source, events),
        ws_subscribed(ws_url(base) + ws_path, target) as ws,
    ):
        assert source.response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert len(target.subscribers) == 2
        async with http_client() as client:
            response = await client.post(base + publish_path, json={"n": 1, "text": "a\nb"})
            refused = await client.post(base + publish_path, content=b"{", headers=JSON)
        (event,) = await take(events, 1)
        frame = await recv(ws)
    assert response.status_code == 202
    message_id = response.json()["id"]
    assert json.loads(event.data) == {"n": 1, "text": "a\nb"}
    assert event.id == message_id
    assert frame.data == {"n": 1, "text": "a\nb"}
    assert frame.id == message_id
    assert refused.status_code == 400
    assert refused.json()["error"] == "malformed_json"
    await wait_until(lambda: len(target.subscribers) == 0)
    assert target.stats.published == 1


@pytest.mark.parametrize(
    "make_app",
    [starlette_app, fastapi_app_with_add_route, fastapi_app_with_route_objects],
    ids=["starlette", "fastapi-add_route", "fastapi-routes.append"],
)
async def test_mounted_apps_refuse_what_they_refuse_bare(
    uvicorn_server: UvicornStarter, make_app: AppFactory
) -> None:
    """Mounted, a POST to SSE and a GET to publish get the apps' JSON 405, a plain GET
    to the WebSocket route and an unknown channel get 404, and nothing registers."""
    store = QueueStore()
    channels = Channels()
    channels.add("news")
    base = await uvicorn_server(make_app(store, channels))
    async with http_client() as client:
        post_to_events = await client.post(base + "/events")
        get_publish = await client.get(base + "/publish")
        get_ws_route = await client.get(base + "/ws")
        unknown = await client.get(base + "/ch/nope/events")
    assert post_to_events.status_code == 405
    assert post_to_events.headers["allow"] == "GET"
    assert post_to_events.json()["error"] == "method_not_allowed"
    assert get_publish.status_code == 405
    assert get_publish.headers["allow"] == "POST"
    assert get_publish.json()["error"] == "method_not_allowed"
    # Starlette routes a WebSocketRoute for WebSocket requests only: a plain GET never
    # reaches the app (whose own answer would be 400), so nothing can register.
    assert get_ws_route.status_code == 404
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "unknown_channel"
    assert len(store.subscribers) == 0
