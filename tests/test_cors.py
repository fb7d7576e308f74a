"""Cross-origin requests, server side: the CORS headers each adapter sends.

One :class:`~tornadose.http.channels.Channels` with ``cors_origins`` is served by
Tornado (``channel_handlers``), by uvicorn (``ChannelsApp``) and by uvicorn inside a
Starlette ``Mount``; real httpx requests, shaped as a browser shapes them (``Origin``,
preflights), check what each answers: the same headers everywhere, from the one
decision of :mod:`tornadose.http.cors`. What a browser does with them is in
``test_cors_browser.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from tests.clients import TIMEOUT, recv
from tests.conftest import TornadoStarter, UvicornStarter, wait_until
from tornadose.adapters.asgi import ChannelsApp
from tornadose.adapters.tornado import channel_handlers
from tornadose.http.auth import Action, Unauthorized
from tornadose.http.channels import Channels
from tornadose.http.cors import DEFAULT_ALLOWED_HEADERS, CORSPolicy, CrossOrigin

PREFIX = "/api"
PAGE = "http://page.example:8080"
OTHER = "http://other.example"
SERVERS = ["tornado", "asgi", "asgi-mounted"]
#: The headers a test compares: every CORS header, and Vary.
CORS_NAMES = (
    "access-control-allow-origin",
    "access-control-allow-credentials",
    "access-control-allow-methods",
    "access-control-allow-headers",
    "access-control-max-age",
    "vary",
)


def authorize(headers: Any, channel: str, action: Action) -> bool:
    """Channel ``locked`` needs ``Authorization: Bearer ok``; the rest is open."""
    if channel == "locked" and headers.get("authorization") != "Bearer ok":
        raise Unauthorized("no token", www_authenticate="Bearer")
    return True


def declare(**cors: Any) -> Channels:
    channels = Channels(prefix=PREFIX, authorize=authorize, **cors)
    channels.add("chat")
    channels.add("locked")
    channels.add("readonly", publishable=False)
    return channels


@dataclass
class Served:
    channels: Channels
    bases: dict[str, str]

    def url(self, server: str, path: str) -> str:
        return self.bases[server] + PREFIX + path


ServeChannels = Any


@pytest.fixture
async def serve(tornado_server: TornadoStarter, uvicorn_server: UvicornStarter) -> ServeChannels:
    """``served = await serve(channels)``: the channels on all three servers."""

    async def start(channels: Channels) -> Served:
        tornado_base = await tornado_server(channel_handlers(channels))
        asgi_base = await uvicorn_server(ChannelsApp(channels))
        mounted = await uvicorn_server(Starlette(routes=[Mount("/x", ChannelsApp(channels))]))
        bases = {"tornado": tornado_base, "asgi": asgi_base, "asgi-mounted": mounted + "/x"}
        return Served(channels, bases)

    return start


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
        yield client


def cors_of(response: httpx.Response) -> dict[str, str]:
    return {name: response.headers[name] for name in CORS_NAMES if name in response.headers}


def preflight_headers(method: str, origin: str = PAGE, headers: str = "") -> dict[str, str]:
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        asked["Access-Control-Request-Headers"] = headers
    return asked


GRANTED = {
    "access-control-allow-origin": PAGE,
    "access-control-allow-credentials": "true",
    "vary": "Origin",
}


# -- the policy, when declared ---------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"cors_origins": ["http://a.example/"]}, ValueError),  # a path: never matches
        ({"cors_origins": ["a.example"]}, ValueError),  # no scheme
        ({"cors_origins": ["http://u@a.example"]}, ValueError),
        ({"cors_origins": ["https://a.example:443"]}, ValueError),  # browsers omit :443
        ({"cors_origins": ["http://a.example:80"]}, ValueError),
        ({"cors_origins": []}, ValueError),
        ({"cors_origins": "http://a.example"}, TypeError),  # one string, not a list
        ({"cors_origins": ["*"], "cors_credentials": True}, ValueError),
        ({"cors_credentials": True}, ValueError),  # credentials for no origin
        ({"cors_headers": ["X-Key"]}, ValueError),
    ],
)
def test_a_policy_that_cannot_work_fails_when_declared(
    options: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        Channels(**options)


def test_origins_are_kept_as_browsers_send_them() -> None:
    channels = Channels(cors_origins=["HTTP://Page.Example:8080", PAGE], cors_headers=["X-Key"])
    assert channels.cors == CORSPolicy(
        (PAGE,), headers=(*DEFAULT_ALLOWED_HEADERS, "X-Key"), max_age=600
    )
    assert Channels().cors is None


def test_the_decision_without_a_server() -> None:
    """The pure function both adapters call."""
    cors = CrossOrigin(CORSPolicy((PAGE,), credentials=True), ("POST",))
    asked = {k.lower(): v for k, v in preflight_headers("POST", headers="Content-Type").items()}
    answer = cors.preflight("OPTIONS", asked)
    assert answer is not None
    assert answer.status == 204
    assert dict(answer.headers)["Access-Control-Allow-Methods"] == "POST"
    assert cors.preflight("OPTIONS", {"origin": PAGE}) is None  # not a preflight
    assert cors.headers("OPTIONS", asked) == ()  # a preflight's come from preflight()
    assert cors.headers("GET", {"origin": OTHER}) == (("Vary", "Origin"),)
    assert cors.headers("GET", {}) == (("Vary", "Origin"),)
    refused = cors.preflight("OPTIONS", {**asked, "access-control-request-method": "PUT"})
    assert refused is not None
    assert refused.status == 403
    assert CrossOrigin(CORSPolicy((PAGE,)), ()).preflight("OPTIONS", asked) is None


# -- on every server ---------------------------------------------------------------------


async def test_a_preflighted_publish_from_an_allowed_origin(
    serve: ServeChannels, http: httpx.AsyncClient
) -> None:
    """The preflight is granted (204, what the page may send), then the POST is
    answered with the origin and credentials allowed."""
    served = await serve(declare(cors_origins=[PAGE], cors_credentials=True))
    for server in SERVERS:
        url = served.url(server, "/chat/publish")
        answer = await http.options(url, headers=preflight_headers("POST", headers="content-type"))
        assert answer.status_code == 204, (server, answer.text)
        assert answer.content == b""
        assert cors_of(answer) == {
            **GRANTED,
            "access-control-allow-methods": "POST",
            "access-control-allow-headers": "Content-Type, Authorization, Last-Event-ID",
            "access-control-max-age": "600",
        }, server
        posted = await http.post(url, json={"text": "hi"}, headers={"Origin": PAGE})
        assert posted.status_code == 202, (server, posted.text)
        assert cors_of(posted) == GRANTED, server
        assert posted.json()["id"]


async def test_refused_preflights_grant_nothing(
    serve: ServeChannels, http: httpx.AsyncClient
) -> None:
    """Another origin, a method the endpoint does not serve, a header not allowed:
    ``403 cors_refused`` saying which, and no ``Access-Control-Allow-*`` header, so
    the browser never sends the request."""
    served = await serve(declare(cors_origins=[PAGE], cors_credentials=True))
    cases = [
        ("/chat/publish", preflight_headers("POST", origin=OTHER), "origin"),
        ("/chat/publish", preflight_headers("PUT"), "PUT is not served here; use POST"),
        ("/chat/events", preflight_headers("POST"), "POST is not served here; use GET"),
        ("/chat/publish", preflight_headers("POST", headers="content-type, x-key"), "x-key"),
    ]
    for server in SERVERS:
        for path, asked, detail in cases:
            answer = await http.options(served.url(server, path), headers=asked)
            assert answer.status_code == 403, (server, path, answer.text)
            assert answer.json()["error"] == "cors_refused"
            assert detail in answer.json()["detail"], (server, answer.json())
            assert cors_of(answer) == {"vary": "Origin"}, (server, path)
    assert len(served.channels["chat"].store.history) == 0  # nothing published


async def test_extra_allowed_headers(serve: ServeChannels, http: httpx.AsyncClient) -> None:
    served = await serve(declare(cors_origins=[PAGE], cors_headers=["X-Key"]))
    for server in SERVERS:
        answer = await http.options(
            served.url(server, "/chat/publish"),
            headers=preflight_headers("POST", headers="content-type,X-KEY"),
        )
        assert answer.status_code == 204, (server, answer.text)
        allowed = answer.headers["access-control-allow-headers"]
        assert allowed == "Content-Type, Authorization, Last-Event-ID, X-Key"
        assert "access-control-allow-credentials" not in answer.headers


async def test_every_answer_carries_the_headers(
    serve: ServeChannels, http: httpx.AsyncClient
) -> None:
    """The SSE stream, documents, refusals (401 from the hook, 405, 415, 404 of an
    unknown channel) all carry them for an allowed origin: the page can read why."""
    served = await serve(declare(cors_origins=[PAGE], cors_credentials=True))
    origin = {"Origin": PAGE}
    for server in SERVERS:
        async with http.stream("GET", served.url(server, "/chat/events"), headers=origin) as sse:
            assert sse.status_code == 200
            assert sse.headers["content-type"].startswith("text/event-stream")
            assert cors_of(sse) == GRANTED, server
        answers = [
            await http.get(served.url(server, "/asyncapi.json"), headers=origin),
            await http.head(served.url(server, "/chat/schema.json"), headers=origin),
            await http.get(served.url(server, "/locked/events"), headers=origin),
            await http.post(served.url(server, "/locked/publish"), json=1, headers=origin),
            await http.get(served.url(server, "/chat/publish"), headers=origin),
            await http.post(
                served.url(server, "/chat/publish"),
                content=b"1",
                headers={**origin, "Content-Type": "text/plain"},
            ),
            await http.get(served.url(server, "/nothing/events"), headers=origin),
        ]
        statuses = [answer.status_code for answer in answers]
        assert statuses == [200, 200, 401, 401, 405, 415, 404], server
        for answer in answers:
            assert cors_of(answer) == GRANTED, (server, answer.request.url)
        assert answers[2].headers["www-authenticate"] == "Bearer"


async def test_other_origins_are_served_but_not_granted(
    serve: ServeChannels, http: httpx.AsyncClient
) -> None:
    """A request with another ``Origin`` (a non-browser client may send anything)
    gets its usual answer without the grant, so a browser hides it from the page;
    ``Vary: Origin`` keeps caches from handing one origin's answer to another."""
    served = await serve(declare(cors_origins=[PAGE]))
    for server in SERVERS:
        for origin in ({"Origin": OTHER}, {}):
            answer = await http.get(served.url(server, "/asyncapi.json"), headers=origin)
            assert answer.status_code == 200
            assert cors_of(answer) == {"vary": "Origin"}, (server, origin)


async def test_without_credentials(serve: ServeChannels, http: httpx.AsyncClient) -> None:
    served = await serve(declare(cors_origins=[PAGE]))
    for server in SERVERS:
        answer = await http.get(served.url(server, "/asyncapi.json"), headers={"Origin": PAGE})
        assert cors_of(answer) == {"access-control-allow-origin": PAGE, "vary": "Origin"}


async def test_any_origin(serve: ServeChannels, http: httpx.AsyncClient) -> None:
    """``"*"``: every origin reads, without credentials; the answer is the same for
    all, so no ``Vary``."""
    served = await serve(declare(cors_origins=["*"]))
    for server in SERVERS:
        for origin in (PAGE, OTHER, "null"):
            answer = await http.get(
                served.url(server, "/chat/schema.json"), headers={"Origin": origin}
            )
            assert cors_of(answer) == {"access-control-allow-origin": "*"}, (server, origin)
        answer = await http.options(
            served.url(server, "/chat/publish"), headers=preflight_headers("POST", origin=OTHER)
        )
        assert answer.status_code == 204
        assert answer.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in answer.headers


async def test_without_a_policy_nothing_changes(
    serve: ServeChannels, http: httpx.AsyncClient
) -> None:
    """No ``cors_origins``: no CORS header anywhere, and a preflight gets the
    endpoint's JSON ``405`` (same-origin only, as before)."""
    served = await serve(declare())
    for server in SERVERS:
        answer = await http.options(
            served.url(server, "/chat/publish"), headers=preflight_headers("POST")
        )
        assert answer.status_code == 405, (server, answer.text)
        assert answer.json()["error"] == "method_not_allowed"
        assert cors_of(answer) == {}
        answer = await http.get(served.url(server, "/asyncapi.json"), headers={"Origin": PAGE})
        assert cors_of(answer) == {}


async def test_an_options_request_that_is_not_a_preflight(
    serve: ServeChannels, http: httpx.AsyncClient
) -> None:
    """Without ``Access-Control-Request-Method``: the endpoint's usual ``405``."""
    served = await serve(declare(cors_origins=[PAGE]))
    for server in SERVERS:
        for path, allow in (("/chat/publish", "POST"), ("/chat/events", "GET")):
            answer = await http.options(served.url(server, path), headers={"Origin": PAGE})
            assert answer.status_code == 405, (server, path)
            assert answer.headers["allow"] == allow
            assert answer.headers["access-control-allow-origin"] == PAGE


async def test_documents_preflight_get_and_head(
    serve: ServeChannels, http: httpx.AsyncClient
) -> None:
    served = await serve(declare(cors_origins=[PAGE]))
    for server in SERVERS:
        for path in ("/asyncapi.json", "/chat/schema.json", "/metrics"):
            answer = await http.options(
                served.url(server, path), headers=preflight_headers("GET", headers="x-key")
            )
            assert answer.status_code == 403, (server, path)  # x-key not allowed
            answer = await http.options(served.url(server, path), headers=preflight_headers("GET"))
            assert answer.status_code == 204, (server, path)
            assert answer.headers["access-control-allow-methods"] == "GET, HEAD"


# -- WebSocket: its origin check, related to the CORS origins ------------------------------


async def ws_status(url: str, origin: str) -> int:
    """101 if the handshake from ``origin`` succeeds (then a message arrives), else
    the refusal's status."""
    try:
        async with connect(url, origin=Origin(origin), proxy=None, open_timeout=TIMEOUT) as ws:
            await ws.ping()
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


async def test_websocket_accepts_the_cors_origins_with_credentials(
    serve: ServeChannels,
) -> None:
    """With credentials the CORS origins may open the WebSocket too (it always
    carries cookies); a channel's own ``allowed_origins`` still win."""
    channels = declare(cors_origins=[PAGE], cors_credentials=True)
    channels.add("own", allowed_origins=(OTHER,))
    served = await serve(channels)
    for server in SERVERS:
        ws = served.url(server, "/chat/ws").replace("http", "ws", 1)
        own = served.url(server, "/own/ws").replace("http", "ws", 1)
        assert await ws_status(ws, PAGE) == 101, server
        assert await ws_status(ws, OTHER) == 403, server
        assert await ws_status(own, OTHER) == 101, server
        assert await ws_status(own, PAGE) == 403, server
    # A message reaches a cross-origin WebSocket client.
    url = served.url("asgi", "/chat/ws").replace("http", "ws", 1)
    async with connect(url, origin=Origin(PAGE), proxy=None, open_timeout=TIMEOUT) as ws:
        store = served.channels["chat"].store
        await wait_until(lambda: len(store.subscribers) == 1)
        published = await store.submit({"text": "over ws"})
        assert (await recv(ws)).model_dump()["id"] == published.id


async def test_websocket_stays_same_origin_without_credentials(serve: ServeChannels) -> None:
    served = await serve(declare(cors_origins=[PAGE]))
    for server in SERVERS:
        ws = served.url(server, "/chat/ws").replace("http", "ws", 1)
        assert await ws_status(ws, PAGE) == 403, server
        host = served.bases[server].split("/x")[0]  # the page's own origin
        assert await ws_status(ws, host) == 101, server
