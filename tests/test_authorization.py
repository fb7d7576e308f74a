"""The authorize hook and the WebSocket origin check, on Tornado and ASGI alike.

One token-checking hook guards publishing (PublishHandler / PublishApp) and
subscribing over SSE (EventSource / EventSourceApp) and WebSocket
(WebSocketSubscriber / WebSocketApp), on real servers read by real clients.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.clients import TIMEOUT, recv, sse_client, take, ws_subscribed
from tests.conftest import TornadoStarter, UvicornStarter, wait_until
from tornadose.adapters.asgi import EventSourceApp, PublishApp, WebSocketApp
from tornadose.adapters.tornado import EventSource, PublishHandler, WebSocketSubscriber
from tornadose.auth import Action, Forbidden, Unauthorized
from tornadose.schemas import ErrorBody, PublishAccepted
from tornadose.stores import BaseStore, QueueStore

CHANNEL = "sensors"
CHALLENGE = 'Bearer realm="sensors"'
EVIL = "http://evil.example"

Starter = Callable[..., Awaitable[str]]

ENDPOINTS: dict[str, tuple[Any, Any]] = {
    "publish": (PublishHandler, PublishApp),
    "events": (EventSource, EventSourceApp),
    "ws": (WebSocketSubscriber, WebSocketApp),
}


@pytest.fixture(params=["tornado", "asgi"])
def serve(
    request: pytest.FixtureRequest,
    tornado_server: TornadoStarter,
    uvicorn_server: UvicornStarter,
) -> Starter:
    """``url = await serve(endpoint, store, **options)`` on a real server of one adapter.

    ``endpoint`` is ``"publish"``, ``"events"`` or ``"ws"`` (which gives a ``ws://`` URL).
    """

    async def start(endpoint: str, store: BaseStore, **options: Any) -> str:
        handler, app = ENDPOINTS[endpoint]
        if request.param == "tornado":
            base = await tornado_server([(rf"/{endpoint}", handler, {"store": store, **options})])
        else:
            base = await uvicorn_server(app(store, **options))
        url = f"{base}/{endpoint}"
        return url.replace("http://", "ws://", 1) if endpoint == "ws" else url

    return start


class TokenHook:
    """An authorize hook checking ``Authorization: Bearer <token>``; records every call.

    ``good`` allows (``True``), ``none`` allows (``None``), a missing header raises
    ``Unauthorized``, ``forbidden`` raises ``Forbidden``, ``crash`` raises a bug,
    anything else is refused with ``False``.
    """

    def __init__(self, *, is_async: bool) -> None:
        self.is_async = is_async
        self.calls: list[tuple[dict[str, str], str, Action]] = []

    def check(self, headers: Mapping[str, str], channel: str, action: Action) -> bool | None:
        self.calls.append((dict(headers), channel, action))
        token = headers.get("authorization")
        if token is None:
            raise Unauthorized("a bearer token is required", www_authenticate=CHALLENGE)
        if token == "Bearer forbidden":
            raise Forbidden("sensors are off limits")
        if token == "Bearer crash":
            raise RuntimeError("bug in the hook")
        if token == "Bearer none":
            return None
        return token == "Bearer good"

    async def check_async(
        self, headers: Mapping[str, str], channel: str, action: Action
    ) -> bool | None:
        return self.check(headers, channel, action)

    @property
    def options(self) -> dict[str, Any]:
        """The handler/app options installing this hook for :data:`CHANNEL`."""
        return {"authorize": self.check_async if self.is_async else self.check, "channel": CHANNEL}


@pytest.fixture(params=["plain-hook", "async-hook"])
def hook(request: pytest.FixtureRequest) -> TokenHook:
    """A :class:`TokenHook`, as a plain function or as a coroutine function."""
    return TokenHook(is_async=request.param == "async-hook")


@dataclass(frozen=True)
class Verdict:
    """A token and how the hook's verdict must reach the client."""

    token: str | None  # the Authorization header's value; None: no header
    status: int | None = None  # None: allowed
    error: str | None = None
    detail: str | None = None  # the ErrorBody detail, when the hook chose it
    www_authenticate: str | None = None
    logged: bool = False  # the hook's exception is logged by tornadose.auth


VERDICTS = [
    pytest.param(Verdict("Bearer good"), id="true-allows"),
    pytest.param(Verdict("Bearer none"), id="none-allows"),
    pytest.param(
        Verdict(
            None,
            401,
            "unauthorized",
            detail="a bearer token is required",
            www_authenticate=CHALLENGE,
        ),
        id="unauthorized-401",
    ),
    pytest.param(Verdict("Bearer bad", 403, "forbidden"), id="false-403"),
    pytest.param(
        Verdict("Bearer forbidden", 403, "forbidden", detail="sensors are off limits"),
        id="forbidden-403",
    ),
    pytest.param(Verdict("Bearer crash", 403, "forbidden", logged=True), id="hook-bug-403"),
]


def token_headers(verdict: Verdict) -> dict[str, str]:
    return {} if verdict.token is None else {"Authorization": verdict.token}


def check_refusal(
    verdict: Verdict, status: int, headers: Mapping[str, str], body: bytes | bytearray
) -> None:
    """The client saw ``verdict``'s refusal: status, WWW-Authenticate, JSON error body."""
    assert status == verdict.status, body
    assert headers.get("content-type") == "application/json"
    assert headers.get("www-authenticate") == verdict.www_authenticate
    error = ErrorBody.model_validate_json(body)
    assert error.error == verdict.error
    if verdict.detail is not None:
        assert error.detail == verdict.detail


def check_hook(
    hook: TokenHook, action: Action, verdict: Verdict, caplog: pytest.LogCaptureFixture
) -> None:
    """The hook ran once, for ``action`` on :data:`CHANNEL`; a hook bug was logged."""
    assert [(channel, called) for _, channel, called in hook.calls] == [(CHANNEL, action)]
    logged = [
        record
        for record in caplog.records
        if record.name == "tornadose.auth" and record.levelno == logging.ERROR
    ]
    if verdict.logged:
        assert len(logged) == 1
        assert logged[0].exc_info is not None
        assert logged[0].exc_info[0] is RuntimeError
    else:
        assert logged == []


# -- publishing -----------------------------------------------------------------------


@pytest.mark.parametrize("verdict", VERDICTS)
async def test_publish_obeys_the_hook(
    serve: Starter, hook: TokenHook, verdict: Verdict, caplog: pytest.LogCaptureFixture
) -> None:
    """A publish the hook allows is accepted; a refused one gets 401/403 and publishes nothing."""
    store = QueueStore()
    url = await serve("publish", store, **hook.options)
    headers = {"Content-Type": "application/json", **token_headers(verdict)}
    async with (
        store.subscribe() as subscription,
        httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client,
    ):
        response = await client.post(url, content=b'{"value": 1}', headers=headers)
        messages = await subscription.get_batch(timeout=0.2)

    if verdict.status is None:
        assert response.status_code == 202, response.text
        accepted = PublishAccepted.model_validate_json(response.content)
        assert [(m.id, m.data) for m in messages] == [(accepted.id, {"value": 1})]
    else:
        check_refusal(verdict, response.status_code, response.headers, response.content)
        assert store.stats.published == 0
        assert messages == []
    check_hook(hook, Action.PUBLISH, verdict, caplog)


# -- subscribing over SSE ---------------------------------------------------------------


@pytest.mark.parametrize("verdict", VERDICTS)
async def test_sse_subscribe_obeys_the_hook(
    serve: Starter, hook: TokenHook, verdict: Verdict, caplog: pytest.LogCaptureFixture
) -> None:
    """An allowed SSE client receives messages; a refused one gets 401/403 and never registers."""
    store = QueueStore()
    url = await serve("events", store, **hook.options)

    if verdict.status is None:
        async with sse_client(url, **token_headers(verdict)) as (source, events):
            assert source.response.status_code == 200
            await wait_until(lambda: len(store.subscribers) == 1)
            store.submit("hello")
            [event] = await take(events, 1)
        assert event.data == "hello"
    else:
        async with (
            httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client,
            client.stream("GET", url, headers=token_headers(verdict)) as response,
        ):
            assert response.status_code != 200  # else the stream would stay open
            body = await response.aread()
        check_refusal(verdict, response.status_code, response.headers, body)
        assert len(store.subscribers) == 0
    check_hook(hook, Action.SUBSCRIBE, verdict, caplog)


# -- subscribing over WebSocket ---------------------------------------------------------


@pytest.mark.parametrize("verdict", VERDICTS)
async def test_websocket_subscribe_obeys_the_hook(
    serve: Starter, hook: TokenHook, verdict: Verdict, caplog: pytest.LogCaptureFixture
) -> None:
    """An allowed WebSocket client receives messages; a refused handshake gets the HTTP
    401/403 (seen by the client as InvalidStatus) and never registers."""
    store = QueueStore()
    url = await serve("ws", store, **hook.options)
    headers = token_headers(verdict)

    if verdict.status is None:
        async with ws_subscribed(url, store, additional_headers=headers) as ws:
            store.submit("hello")
            envelope = await recv(ws)
        assert envelope.data == "hello"
    else:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, open_timeout=TIMEOUT, additional_headers=headers):
                pass
        response = refused.value.response
        check_refusal(verdict, response.status_code, response.headers, response.body or b"")
        assert len(store.subscribers) == 0
    check_hook(hook, Action.SUBSCRIBE, verdict, caplog)


# -- what the hook is given -------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["publish", "events", "ws"])
async def test_hook_gets_lower_case_header_names(serve: Starter, endpoint: str) -> None:
    """The hook sees every request header under its lower-case name, with its value."""
    hook = TokenHook(is_async=False)
    store = QueueStore()
    url = await serve(endpoint, store, **hook.options)
    headers = {"Authorization": "Bearer good", "X-Tenant-ID": "Acme"}

    if endpoint == "publish":
        async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
            headers["Content-Type"] = "application/json"
            response = await client.post(url, content=b"1", headers=headers)
        assert response.status_code == 202
    elif endpoint == "events":
        async with sse_client(url, **headers) as (source, _):
            assert source.response.status_code == 200
    else:
        async with ws_subscribed(url, store, additional_headers=headers):
            pass

    [(seen, _, _)] = hook.calls
    assert all(name == name.lower() for name in seen)
    assert seen["authorization"] == "Bearer good"
    assert seen["x-tenant-id"] == "Acme"
    assert seen["host"] == url.split("://", 1)[1].split("/", 1)[0]


# -- WebSocket origin check ---------------------------------------------------------------


def same_origin(url: str) -> str:
    """The ``Origin`` a page served by the same server as ``url`` sends."""
    return "http://" + url.split("://", 1)[1].split("/", 1)[0]


async def refused_with(url: str, **options: Any) -> InvalidStatus:
    """Connect to ``url``; the handshake must be refused with an HTTP status."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, open_timeout=TIMEOUT, **options):
            pass
    return refused.value


async def test_cross_origin_websocket_is_refused(serve: Starter) -> None:
    """A browser page from another origin cannot open the WebSocket: 403, JSON error."""
    store = QueueStore()
    url = await serve("ws", store)
    refusal = await refused_with(url, origin=EVIL)
    assert refusal.response.status_code == 403
    assert refusal.response.headers.get("content-type") == "application/json"
    assert ErrorBody.model_validate_json(refusal.response.body or b"").error == "forbidden"
    assert len(store.subscribers) == 0


async def test_cross_origin_is_refused_before_the_hook_runs(serve: Starter) -> None:
    """A cross-origin handshake gets 403 whatever its credentials; the hook is not asked."""
    hook = TokenHook(is_async=False)
    store = QueueStore()
    url = await serve("ws", store, **hook.options)
    without_token = await refused_with(url, origin=EVIL)
    good_token = await refused_with(
        url, origin=EVIL, additional_headers={"Authorization": "Bearer good"}
    )
    assert without_token.response.status_code == 403
    assert good_token.response.status_code == 403
    assert hook.calls == []
    assert len(store.subscribers) == 0


async def test_same_origin_websocket_is_accepted(serve: Starter) -> None:
    """A page from the server's own origin opens the WebSocket and receives messages."""
    store = QueueStore()
    url = await serve("ws", store)
    async with ws_subscribed(url, store, origin=same_origin(url)) as ws:
        store.submit("hello")
        assert (await recv(ws)).data == "hello"


async def test_allowed_origins_lets_a_listed_origin_in(serve: Starter) -> None:
    """``allowed_origins`` admits the listed origin, and only it."""
    store = QueueStore()
    url = await serve("ws", store, allowed_origins=[EVIL])
    async with ws_subscribed(url, store, origin=EVIL) as ws:
        store.submit("hello")
        assert (await recv(ws)).data == "hello"
    await wait_until(lambda: len(store.subscribers) == 0)
    refusal = await refused_with(url, origin="http://other.example")
    assert refusal.response.status_code == 403
    assert len(store.subscribers) == 0


async def test_allowed_origins_star_admits_any_origin(serve: Starter) -> None:
    """``allowed_origins=["*"]`` admits a page from any origin."""
    store = QueueStore()
    url = await serve("ws", store, allowed_origins=["*"])
    async with ws_subscribed(url, store, origin="http://anywhere.example"):
        pass
