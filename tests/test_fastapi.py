"""FastAPI and Starlette used natively: channels in ordinary routes, a router, /docs.

Everything runs on a real uvicorn server (ephemeral loopback port) with real clients
(httpx, httpx-sse, websockets). What is checked:

* ``channels_router(channels, dependencies=[Depends(...)])``: the dependency guards
  SSE, WebSocket and publish (401/403 before a stream opens: nothing registered);
  the channel's own rules (schema -> 422 ``validation_error``) apply after it;
* own routes: ``return endpoints.events(room)`` / ``await endpoints.websocket(room,
  ws)`` with the channel chosen by a path parameter (unknown -> JSON 404
  ``unknown_channel``), ``await channels[room].publish(x)`` returning the id;
* resume by ``Last-Event-ID`` (header, or ``?last_event_id=``) on a route;
* ``/openapi.json``: the publish body is the channel's model, 202/422 documented with
  ``PublishAccepted``/``ErrorBody``, the SSE route as ``text/event-stream``;
* AsyncAPI addresses as served: ``ChannelsApp`` mounted at ``/channels`` with prefix
  ``/api`` advertises ``/channels/api/...``, with a ``servers`` entry for the host;
* cross-origin through the router (``Channels(cors_origins=...)``): a preflight is
  answered by the core's decision (``204`` with the grant, ``403`` ``cors_refused``),
  not by FastAPI's ``405`` nor by the authenticating dependency (which would answer
  ``401``: browsers send preflights without credentials); events, publish, schema
  and AsyncAPI answers carry ``Access-Control-Allow-Origin`` once, for the allowed
  origin only; dependencies given to ``include_router`` do run on the preflight, as
  documented (see also test_fastapi_cors_browser.py).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import httpx
import pydantic
import pytest
import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from starlette.applications import Starlette
from starlette.routing import Mount
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.clients import TIMEOUT, expect_close, recv, sse_client, take, ws_subscribed
from tests.conftest import UvicornStarter, wait_until
from tornadose.adapters.asgi import ChannelsApp
from tornadose.adapters.fastapi import channels_router
from tornadose.adapters.starlette import ChannelEndpoints
from tornadose.core.errors import MessageValidationError
from tornadose.core.history import RESUMED_EVENT
from tornadose.http.channels import Channels

pytestmark = pytest.mark.timeout(30)


class Chat(pydantic.BaseModel):
    """A chat line."""

    user: str
    text: str = pydantic.Field(max_length=100)
    room: str = "main"


def check_token(authorization: Annotated[str | None, Header()] = None) -> str:
    """A FastAPI dependency: ``Bearer good`` passes, none is 401, another token 403."""
    if authorization is None:
        raise HTTPException(401, "log in", headers={"WWW-Authenticate": "Bearer"})
    if authorization != "Bearer good":
        raise HTTPException(403, "not you")
    return "alice"


GOOD = {"authorization": "Bearer good"}
BAD = {"authorization": "Bearer bad"}


def declare() -> Channels:
    channels = Channels(prefix="/api")
    channels.add("chat", schema=Chat, description="The chat room")
    channels.add("news")
    return channels


def http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=TIMEOUT, trust_env=False)


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://", 1)


async def refused_ws(url: str, **headers: str) -> int:
    """The HTTP status refusing a WebSocket handshake (fails if it is accepted)."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers=headers, open_timeout=TIMEOUT):
            pass
    return refused.value.response.status_code


# -- the router ------------------------------------------------------------------------


async def test_router_dependencies_guard_every_endpoint(uvicorn_server: UvicornStarter) -> None:
    channels = declare()
    app = FastAPI()
    app.include_router(
        channels_router(channels, dependencies=[Depends(check_token)]), prefix="/live"
    )
    base = await uvicorn_server(app)
    chat = channels["chat"].store
    async with http_client() as client:
        for headers, status in (({}, 401), (BAD, 403)):
            answer = await client.get(f"{base}/live/api/chat/events", headers=headers)
            assert answer.status_code == status, answer.text
            assert answer.headers["content-type"] == "application/json"
            published = await client.post(
                f"{base}/live/api/chat/publish", json={"user": "m", "text": "x"}, headers=headers
            )
            assert published.status_code == status
            ws_status = await refused_ws(f"{ws_url(base)}/live/api/chat/ws", **headers)
            assert ws_status == status
        assert len(chat.subscribers) == 0, "a refused request registered a subscriber"
        assert chat.stats.published == 0

        async with sse_client(f"{base}/live/api/chat/events", **GOOD) as (source, events):
            assert source.response.headers["content-type"].startswith("text/event-stream")
            await wait_until(lambda: len(chat.subscribers) == 1)
            async with ws_subscribed(
                f"{ws_url(base)}/live/api/chat/ws", chat, additional_headers=GOOD
            ) as ws:
                ok = await client.post(
                    f"{base}/live/api/chat/publish", json={"user": "al", "text": "hi"}, headers=GOOD
                )
                assert ok.status_code == 202, ok.text
                message_id = ok.json()["id"]
                [event] = await take(events, 1)
                assert (event.id, pydantic_core_json(event.data)) == (
                    message_id,
                    {"user": "al", "text": "hi", "room": "main"},
                )
                envelope = await recv(ws)
                assert envelope.id == message_id
                assert envelope.data == {"user": "al", "text": "hi", "room": "main"}
        # After the dependency, the channel's own rules: the schema answers 422 its way.
        invalid = await client.post(
            f"{base}/live/api/chat/publish", json={"user": "al"}, headers=GOOD
        )
        assert invalid.status_code == 422
        assert invalid.json()["error"] == "validation_error"
        assert invalid.json()["errors"][0]["loc"] == ["text"]
        wrong_type = await client.post(
            f"{base}/live/api/chat/publish", content=b"{}", headers={**GOOD}
        )
        assert wrong_type.status_code == 415
        asyncapi = (await client.get(f"{base}/live/api/asyncapi.json", headers=GOOD)).json()
        assert asyncapi["channels"]["chat"]["address"] == "/live/api/chat"
        assert asyncapi["servers"]["http"]["host"] == base.removeprefix("http://")
    await channels.aclose()


async def test_router_answers_other_methods_as_the_mounted_urls(
    uvicorn_server: UvicornStarter,
) -> None:
    """A method a router URL does not serve gets the mounted URL's JSON ``405`` with
    ``Allow`` (not FastAPI's ``{"detail": ...}``), behind the same dependencies;
    ``HEAD`` of a document is served; ``OPTIONS`` without a CORS policy is a JSON 405."""
    channels = declare()
    app = FastAPI()
    app.include_router(
        channels_router(channels, dependencies=[Depends(check_token)]), prefix="/live"
    )
    base = await uvicorn_server(app)
    api = f"{base}/live/api"
    async with http_client() as client:
        assert (await client.get(f"{api}/chat/publish")).status_code == 401  # dependency first
        cases = [
            ("GET", "/chat/publish", "POST"),
            ("DELETE", "/chat/events", "GET"),
            ("POST", "/chat/schema.json", "GET, HEAD"),
            ("PUT", "/asyncapi.json", "GET, HEAD"),
            ("OPTIONS", "/chat/events", "GET"),
        ]
        for method, path, allow in cases:
            headers = {} if method == "OPTIONS" else GOOD
            answer = await client.request(method, api + path, headers=headers)
            assert answer.status_code == 405, (method, path, answer.text)
            assert answer.json()["error"] == "method_not_allowed", (method, path)
            assert answer.headers["allow"] == allow, (method, path)
        head = await client.head(f"{api}/chat/schema.json", headers=GOOD)
        assert head.status_code == 200
        assert head.headers["content-type"] == "application/json"
        schema_paths = (await client.get(f"{base}/openapi.json")).json()["paths"]
        assert set(schema_paths["/live/api/chat/publish"]) == {"post"}
    assert channels["chat"].store.stats.published == 0
    await channels.aclose()


def pydantic_core_json(text: str) -> object:
    return pydantic.TypeAdapter(object).validate_json(text)


async def test_openapi_documents_publish_body_answers_and_event_stream(
    uvicorn_server: UvicornStarter,
) -> None:
    channels = declare()
    app = FastAPI()
    app.include_router(channels_router(channels))
    base = await uvicorn_server(app)
    async with http_client() as client:
        document = (await client.get(f"{base}/openapi.json")).json()
        docs = await client.get(f"{base}/docs")
    assert docs.status_code == 200
    paths = document["paths"]
    publish = paths["/api/chat/publish"]["post"]
    body = publish["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["text"] == {"maxLength": 100, "title": "Text", "type": "string"}
    assert body["required"] == ["user", "text"]  # as published: room has a default
    assert body["title"] == "Chat"
    schemas = document["components"]["schemas"]
    responses = publish["responses"]
    assert set(responses) >= {"202", "400", "401", "403", "413", "415", "422", "503"}
    ref = responses["202"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/PublishAccepted"
    assert schemas["PublishAccepted"]["required"] == ["id"]
    ref = responses["422"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/ErrorBody"
    assert set(schemas["ErrorBody"]["properties"]) == {"error", "detail", "errors"}

    events = paths["/api/chat/events"]["get"]
    content = events["responses"]["200"]["content"]
    assert list(content) == ["text/event-stream"]
    data = content["text/event-stream"]["itemSchema"]["properties"]["data"]
    assert data["contentSchema"]["title"] == "Chat"
    assert {p["name"] for p in events["parameters"]} == {"Last-Event-ID", "last_event_id"}
    # An untyped channel: any JSON body.
    news = paths["/api/news/publish"]["post"]["requestBody"]["content"]["application/json"]
    assert news["schema"] == {}
    await channels.aclose()


# -- own routes ------------------------------------------------------------------------


def own_routes_app(channels: Channels) -> FastAPI:
    """The README's shape: path parameters choose the channel, Depends guards."""
    endpoints = ChannelEndpoints(channels)
    app = FastAPI(lifespan=endpoints.lifespan)

    @app.exception_handler(MessageValidationError)
    async def invalid(request: Request, exc: MessageValidationError) -> JSONResponse:
        return JSONResponse({"detail": exc.errors}, status_code=422)

    @app.get("/rooms/{room}/events")
    async def room_events(room: str, user: Annotated[str, Depends(check_token)]) -> Response:
        return endpoints.events(room)

    @app.websocket("/rooms/{room}/ws")
    async def room_ws(
        websocket: WebSocket, room: str, user: Annotated[str, Depends(check_token)]
    ) -> None:
        await endpoints.websocket(room, websocket)

    @app.post("/rooms/{room}/say", status_code=201)
    async def say(
        room: str, text: str, user: Annotated[str, Depends(check_token)]
    ) -> dict[str, str]:
        if room not in channels:
            raise HTTPException(404, "no such room")
        return {"id": await channels[room].publish({"user": user, "text": text})}

    return app


async def test_own_routes_guarded_and_chosen_by_path(uvicorn_server: UvicornStarter) -> None:
    channels = declare()
    base = await uvicorn_server(own_routes_app(channels), lifespan="on")
    chat = channels["chat"].store
    async with http_client() as client:
        assert (await client.get(f"{base}/rooms/chat/events")).status_code == 401
        assert await refused_ws(f"{ws_url(base)}/rooms/chat/ws", **BAD) == 403
        assert len(chat.subscribers) == 0

        unknown = await client.get(f"{base}/rooms/nope/events", headers=GOOD)
        assert unknown.status_code == 404
        assert unknown.json()["error"] == "unknown_channel"
        assert await refused_ws(f"{ws_url(base)}/rooms/nope/ws", **GOOD) == 404

        async with (
            sse_client(f"{base}/rooms/chat/events", **GOOD) as (_, events),
            ws_subscribed(f"{ws_url(base)}/rooms/chat/ws", chat, additional_headers=GOOD) as ws,
        ):
            await wait_until(lambda: len(chat.subscribers) == 2)
            said = await client.post(f"{base}/rooms/chat/say", params={"text": "yo"}, headers=GOOD)
            assert said.status_code == 201, said.text
            [event] = await take(events, 1)
            assert event.id == said.json()["id"]
            assert pydantic_core_json(event.data) == {"user": "alice", "text": "yo", "room": "main"}
            assert (await recv(ws)).id == said.json()["id"]
        too_long = await client.post(
            f"{base}/rooms/chat/say", params={"text": "x" * 101}, headers=GOOD
        )
        assert too_long.status_code == 422
        assert too_long.json()["detail"][0]["loc"] == ["text"]
    await wait_until(lambda: len(chat.subscribers) == 0)
    await channels.aclose()


@pytest.mark.parametrize("how", ["header", "query"])
async def test_own_route_resumes_from_last_event_id(
    uvicorn_server: UvicornStarter, how: str
) -> None:
    channels = declare()
    base = await uvicorn_server(own_routes_app(channels))
    ids = [await channels["chat"].publish({"user": "a", "text": str(n)}) for n in range(4)]
    assert len(set(ids)) == 4
    url = f"{base}/rooms/chat/events"
    headers = dict(GOOD)
    if how == "header":
        headers["last-event-id"] = ids[1]
    else:
        url += f"?last_event_id={ids[1]}"
    async with sse_client(url, **headers) as (_, events):
        resumed, *got = await take(events, 3)
    assert (resumed.event, resumed.id) == (RESUMED_EVENT, ids[1])
    assert [event.id for event in got] == ids[2:]
    assert [pydantic_core_json(event.data) for event in got] == [
        {"user": "a", "text": "2", "room": "main"},
        {"user": "a", "text": "3", "room": "main"},
    ]
    await channels.aclose()


async def test_channel_publish_raises_the_core_errors() -> None:
    channels = declare()
    with pytest.raises(MessageValidationError) as invalid:
        await channels["chat"].publish({"user": 1})
    assert {tuple(error["loc"]) for error in invalid.value.errors} == {("user",), ("text",)}
    assert channels["chat"].store.stats.published == 0
    assert channels.get("nope") is None
    with pytest.raises(KeyError):
        channels["nope"]
    await channels.aclose()


# -- AsyncAPI wherever mounted ---------------------------------------------------------


async def test_asyncapi_addresses_include_the_mount_path(uvicorn_server: UvicornStarter) -> None:
    channels = declare()
    app = Starlette(routes=[Mount("/channels", ChannelsApp(channels))])
    base = await uvicorn_server(app)
    host = base.removeprefix("http://")
    async with http_client() as client:
        document = (await client.get(f"{base}/channels/api/asyncapi.json")).json()
        chat = document["channels"]["chat"]
        assert chat["address"] == "/channels/api/chat"
        assert chat["x-tornadose-endpoints"] == {
            "events": "/channels/api/chat/events",
            "websocket": "/channels/api/chat/ws",
            "publish": "/channels/api/chat/publish",
            "presence": "/channels/api/chat/presence",
        }
        assert document["x-tornadose-multi"]["events"] == "/channels/api/_multi/events"
        assert document["servers"] == {
            "http": {"host": host, "protocol": "http", "description": "SSE and publish"},
            "ws": {"host": host, "protocol": "ws", "description": "WebSocket"},
        }
        # The advertised addresses are served.
        endpoint = chat["x-tornadose-endpoints"]["publish"]
        published = await client.post(f"{base}{endpoint}", json={"user": "a", "text": "b"})
        assert published.status_code == 202
    await channels.aclose()


async def test_asyncapi_addresses_include_root_path(uvicorn_server: UvicornStarter) -> None:
    channels = declare()
    base = await uvicorn_server(ChannelsApp(channels), root_path="/behind/proxy")
    async with http_client() as client:
        # uvicorn adds root_path to the path (a proxy in front stripped it)
        answer = await client.get(f"{base}/api/asyncapi.json")
    assert answer.status_code == 200, answer.text
    assert answer.json()["channels"]["news"]["address"] == "/behind/proxy/api/news"
    await channels.aclose()


# -- Starlette without FastAPI ---------------------------------------------------------


async def test_starlette_routes_and_lifespan_close_the_stores(
    uvicorn_server: UvicornStarter,
) -> None:
    """Plain Starlette routes hand requests to ChannelEndpoints; its lifespan ends the
    open streams at shutdown and closes the stores (no other server serves them)."""
    from starlette.requests import Request as StarletteRequest
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket as StarletteWebSocket

    channels = declare()
    endpoints = ChannelEndpoints(channels)

    async def events(request: StarletteRequest) -> Response:
        return endpoints.events(request.path_params["room"])

    async def publish(request: StarletteRequest) -> Response:
        return endpoints.publish(request.path_params["room"])

    async def ws(websocket: StarletteWebSocket) -> None:
        await endpoints.websocket(websocket.path_params["room"], websocket)

    app = Starlette(
        routes=[
            Route("/r/{room}/events", events),
            Route("/r/{room}/publish", publish, methods=["POST"]),
            WebSocketRoute("/r/{room}/ws", ws),
        ],
        lifespan=endpoints.lifespan,
    )
    base = await uvicorn_server(app, lifespan="on")
    news = channels["news"].store
    async with http_client() as client:
        async with (
            sse_client(f"{base}/r/news/events") as (_, stream),
            ws_subscribed(f"{ws_url(base)}/r/news/ws", news) as websocket,
        ):
            published = await client.post(f"{base}/r/news/publish", json=[1, 2])
            assert published.status_code == 202, published.text
            [event] = await take(stream, 1)
            assert (event.id, event.data) == (published.json()["id"], "[1,2]")
            assert (await recv(websocket)).data == [1, 2]
            assert not news.closed
            await endpoints.app.shut_down()  # what the lifespan does at shutdown
            assert await expect_close(websocket) == []
            assert websocket.close_code == 1001
        assert news.closed
        assert channels["chat"].store.closed
        refused = await client.get(f"{base}/r/news/events")
        assert refused.status_code in (204, 503), refused.text


# -- cross-origin pages through the router -----------------------------------------------

PAGE = "http://127.0.0.1:8000"  # never contacted: only named in Origin headers
STRANGER = "http://127.0.0.1:8001"


def declare_cors() -> Channels:
    channels = Channels(prefix="/api", cors_origins=[PAGE], cors_credentials=True)
    channels.add("chat", schema=Chat)
    return channels


def preflight_headers(origin: str, method: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type, authorization",
    }


#: Each HTTP URL of the router (below /live/api) and the method a page would use.
CORS_URLS = {
    "/chat/events": "GET",
    "/chat/publish": "POST",
    "/chat/schema.json": "GET",
    "/asyncapi.json": "GET",
}


async def test_router_answers_preflights_by_the_core_rule_before_dependencies(
    uvicorn_server: UvicornStarter,
) -> None:
    channels = declare_cors()
    app = FastAPI()
    app.include_router(
        channels_router(channels, dependencies=[Depends(check_token)]), prefix="/live"
    )
    base = await uvicorn_server(app)
    async with http_client() as client:
        for path, method in CORS_URLS.items():
            url = f"{base}/live/api{path}"
            # No credentials (as browsers send a preflight), yet no 401: granted.
            granted = await client.options(url, headers=preflight_headers(PAGE, method))
            assert granted.status_code == 204, (path, granted.text)
            assert granted.headers.get_list("access-control-allow-origin") == [PAGE]
            assert granted.headers["access-control-allow-credentials"] == "true"
            assert method in granted.headers["access-control-allow-methods"].split(", ")
            allowed = granted.headers["access-control-allow-headers"].lower()
            assert {"content-type", "authorization"} <= set(allowed.split(", "))
            assert "access-control-max-age" in granted.headers
            # Another origin: refused by the same decision, without any grant.
            refused = await client.options(url, headers=preflight_headers(STRANGER, method))
            assert refused.status_code == 403, (path, refused.text)
            assert refused.json()["error"] == "cors_refused"
            assert "access-control-allow-origin" not in refused.headers
            # A method the URL does not serve: refused, naming what it serves.
            wrong = await client.options(url, headers=preflight_headers(PAGE, "DELETE"))
            assert wrong.status_code == 403
            assert method in wrong.json()["detail"]
            # An OPTIONS that is no preflight: the endpoint's own JSON 405.
            plain = await client.options(url)
            assert plain.status_code == 405
            assert plain.json()["error"] == "method_not_allowed"
        # The real requests still run the dependency first.
        assert (await client.get(f"{base}/live/api/chat/schema.json")).status_code == 401
    assert channels["chat"].store.stats.published == 0
    # The preflight routes are not in /docs.
    async with http_client() as client:
        document = (await client.get(f"{base}/openapi.json")).json()
    assert "options" not in document["paths"]["/live/api/chat/publish"]
    await channels.aclose()


async def test_include_router_dependencies_also_run_on_preflights(
    uvicorn_server: UvicornStarter,
) -> None:
    """Why the README says to give authenticating dependencies to ``channels_router``:
    FastAPI runs those of ``include_router`` on every route, preflights included."""
    channels = declare_cors()
    app = FastAPI()
    app.include_router(channels_router(channels), dependencies=[Depends(check_token)])
    base = await uvicorn_server(app)
    async with http_client() as client:
        answer = await client.options(
            f"{base}/api/chat/publish", headers=preflight_headers(PAGE, "POST")
        )
    assert answer.status_code == 401
    await channels.aclose()


async def test_router_answers_carry_the_cors_headers(uvicorn_server: UvicornStarter) -> None:
    channels = declare_cors()
    app = FastAPI()
    app.include_router(
        channels_router(channels, dependencies=[Depends(check_token)]), prefix="/live"
    )
    endpoints = ChannelEndpoints(channels)

    @app.get("/rooms/{room}/events", response_class=Response)
    async def room_events(room: str) -> Response:
        return endpoints.events(room)

    base = await uvicorn_server(app)
    chat = channels["chat"].store
    api = f"{base}/live/api"
    for origin, granted in ((PAGE, True), (STRANGER, False)):
        headers = {**GOOD, "Origin": origin}
        async with http_client() as client:
            answers = {}
            async with client.stream("GET", f"{api}/chat/events", headers=headers) as stream:
                answers["events"] = stream
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
            answers["publish"] = await client.post(
                f"{api}/chat/publish", json={"user": "al", "text": "hi"}, headers=headers
            )
            assert answers["publish"].status_code == 202
            answers["invalid"] = await client.post(
                f"{api}/chat/publish", json={"user": "al"}, headers=headers
            )
            assert answers["invalid"].status_code == 422
            answers["schema"] = await client.get(f"{api}/chat/schema.json", headers=headers)
            assert answers["schema"].json()["title"] == "Chat"
            answers["asyncapi"] = await client.get(f"{api}/asyncapi.json", headers=headers)
            assert answers["asyncapi"].json()["channels"]["chat"]["address"] == "/live/api/chat"
            # An own route's 404 for a name that is no channel, as ChannelsApp's.
            answers["unknown"] = await client.get(f"{base}/rooms/attic/events", headers=headers)
            assert answers["unknown"].status_code == 404
            assert answers["unknown"].json()["error"] == "unknown_channel"
        for what, answer in answers.items():
            allow = answer.headers.get_list("access-control-allow-origin")
            assert allow == ([origin] if granted else []), (what, origin, answer.headers)
            credentials = answer.headers.get_list("access-control-allow-credentials")
            assert credentials == (["true"] if granted else []), (what, answer.headers)
            assert answer.headers["vary"] == "Origin", what
    assert chat.stats.published == 2
    await channels.aclose()


# -- headers and cookies set on the returned responses ---------------------------------


async def test_headers_and_cookies_set_on_returned_responses_reach_the_client(
    uvicorn_server: UvicornStarter,
) -> None:
    """A header and a cookie set on the response of ``endpoints.events()`` and of
    ``endpoints.publish()`` are sent with the app's own headers (the stream's
    ``text/event-stream``, the publish answer's JSON); a header the route sets replaces
    the app's of that name; content-type stays the app's."""
    channels = declare()
    endpoints = ChannelEndpoints(channels)
    app = FastAPI(lifespan=endpoints.lifespan)

    @app.get("/rooms/{room}/events")
    async def room_events(room: str) -> Response:
        response = endpoints.events(room)
        response.headers["x-custom"] = "events"
        response.headers["cache-control"] = "no-store"  # replaces the stream's own
        response.headers["content-type"] = "text/plain"  # not taken: the app decides
        response.set_cookie("seen", "events", httponly=True)
        return response

    @app.post("/rooms/{room}/publish")
    async def room_publish(room: str) -> Response:
        response = endpoints.publish(room)
        response.headers["x-custom"] = "publish"
        response.set_cookie("posted", "yes")
        response.set_cookie("twice", "also")
        return response

    base = await uvicorn_server(app, lifespan="on")
    news = channels["news"].store
    async with http_client() as client:
        async with sse_client(f"{base}/rooms/news/events") as (source, events):
            response = source.response
            assert response.headers["x-custom"] == "events"
            assert response.headers.get_list("cache-control") == ["no-store"]
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.cookies["seen"] == "events"
            assert "httponly" in response.headers["set-cookie"].lower()
            await wait_until(lambda: len(news.subscribers) == 1)

            published = await client.post(f"{base}/rooms/news/publish", json={"n": 1})
            assert published.status_code == 202, published.text
            assert published.headers["x-custom"] == "publish"
            assert published.headers["content-type"] == "application/json"
            assert published.cookies["posted"] == "yes"
            assert published.cookies["twice"] == "also"
            assert len(published.headers.get_list("set-cookie")) == 2
            [event] = await take(events, 1)
            assert event.id == published.json()["id"]

        # A refusal by the app (unknown channel) carries them as well.
        unknown = await client.post(f"{base}/rooms/nope/publish", json={"n": 1})
        assert unknown.status_code == 404
        assert unknown.json()["error"] == "unknown_channel"
        assert unknown.headers["x-custom"] == "publish"
        assert unknown.cookies["posted"] == "yes"
    await channels.aclose()


# -- lifespan: who serves the channels ---------------------------------------------------


async def test_router_lifespan_closes_stores_despite_a_mounted_channels_app() -> None:
    """A FastAPI app with ``channels_router`` and a ``ChannelsApp`` mounted with
    ``app.mount`` on the same ``Channels``, on real uvicorn with lifespan on: the
    mount gets no lifespan, so it never counts as a server, and uvicorn stopping by
    itself (``should_exit``) closes the stores."""
    channels = declare()
    app = FastAPI()
    app.include_router(channels_router(channels))
    app.mount("/mounted", ChannelsApp(channels))
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    try:
        await wait_until(lambda: server.started or serving.done(), timeout=10)
        if serving.done():
            serving.result()  # it failed to start: say why
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        news = channels["news"].store
        async with http_client() as client:
            for url in (f"{base}/api/news/publish", f"{base}/mounted/api/news/publish"):
                published = await client.post(url, json={"n": 1})
                assert published.status_code == 202, (url, published.text)
        assert not news.closed
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
        assert news.closed
        assert channels["chat"].store.closed
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
