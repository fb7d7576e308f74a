"""HTTP publishing behaves identically on Tornado (PublishHandler) and ASGI (PublishApp).

Every case of one table runs against both adapters, on real servers with a real
HTTP client (httpx). A refused request never publishes anything.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.clients import TIMEOUT, Reading
from tests.conftest import TornadoStarter, UvicornStarter
from tornadose.adapters.asgi import PublishApp
from tornadose.adapters.tornado import PublishHandler
from tornadose.core.message import Message
from tornadose.core.subscription import Subscription
from tornadose.errors import SubscriptionClosed
from tornadose.schemas import ErrorBody, PublishAccepted
from tornadose.stores import BaseStore, QueueStore

#: The ``max_body`` every server in this file is started with.
MAX_BODY = 1024

#: Seconds a subscriber waits to make sure that nothing arrives.
QUIET = 0.2

PublishStarter = Callable[..., Awaitable[str]]

JSON = {"content-type": "application/json"}
READING = b'{"sensor": "t1", "value": 1.5}'


def oversized_json(size: int = 2 * MAX_BODY) -> bytes:
    """A valid JSON object of exactly ``size`` bytes."""
    skeleton = b'{"pad": ""}'
    return b'{"pad": "' + b"x" * (size - len(skeleton)) + b'"}'


@pytest.fixture(params=["tornado", "asgi"])
def publish_url(
    request: pytest.FixtureRequest,
    tornado_server: TornadoStarter,
    uvicorn_server: UvicornStarter,
) -> PublishStarter:
    """``url = await publish_url(store, **options)``: a real server publishing to ``store``."""

    async def start(store: BaseStore, **options: Any) -> str:
        options.setdefault("max_body", MAX_BODY)
        if request.param == "tornado":
            rule = (r"/publish", PublishHandler, {"store": store, **options})
            return await tornado_server([rule]) + "/publish"
        return await uvicorn_server(PublishApp(store, **options)) + "/publish"

    return start


@dataclass(frozen=True)
class Case:
    """One publish request and the answer both adapters must give."""

    status: int
    error: str | None = None  # the ErrorBody ``error`` code of a refusal
    method: str = "POST"
    query: str = ""
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))
    body: bytes = READING
    chunked: bool = False  # send the body without Content-Length
    schema: Any = None  # the store's schema
    closed: bool = False  # close the store before the request
    event: str | None = None  # the published message's event (202 only)
    answer_headers: dict[str, str] = field(default_factory=dict)
    first_error: tuple[list[Any], str] | None = None  # (loc, type) of errors[0] (422 only)


CASES = [
    # -- accepted -------------------------------------------------------------------
    pytest.param(Case(202), id="valid-json"),
    pytest.param(Case(202, body=b'"just a string"'), id="valid-json-scalar"),
    pytest.param(Case(202, body=b'{"note": "h\xc3\xa9llo \xe2\x9c\x93"}'), id="valid-utf8"),
    pytest.param(
        Case(202, headers={"content-type": "application/json; charset=utf-8"}),
        id="json-with-charset",
    ),
    pytest.param(Case(202, headers={"content-type": "Application/JSON"}), id="json-any-case"),
    pytest.param(Case(202, schema=Reading), id="matches-schema"),
    pytest.param(Case(202, query="?event=update", event="update"), id="event-update"),
    pytest.param(Case(202, query="?event=caf%C3%A9", event="café"), id="event-non-ascii"),
    pytest.param(Case(202, query="?event=", event=None), id="event-empty-means-none"),
    pytest.param(
        Case(202, query="?event=first&event=second", event="first"), id="event-repeated-first"
    ),
    pytest.param(Case(202, body=oversized_json(MAX_BODY)), id="body-exactly-max"),
    pytest.param(Case(202, body=oversized_json(MAX_BODY), chunked=True), id="chunked-exactly-max"),
    # -- refused: the body ----------------------------------------------------------
    pytest.param(Case(400, "malformed_json", body=b'{"sensor": '), id="malformed-json"),
    pytest.param(Case(400, "malformed_json", body=b""), id="empty-body"),
    pytest.param(Case(400, "malformed_json", body=b'{"a": "\xff\xfe"}'), id="invalid-utf8"),
    pytest.param(Case(400, "malformed_json", body=b"\xef\xbb\xbf{}"), id="utf8-bom"),
    pytest.param(
        Case(
            422,
            "validation_error",
            body=b'{"sensor": "t1", "value": "hot"}',
            schema=Reading,
            first_error=(["value"], "float_parsing"),
        ),
        id="schema-wrong-type",
    ),
    pytest.param(
        Case(
            422,
            "validation_error",
            body=b'{"sensor": "t1"}',
            schema=Reading,
            first_error=(["value"], "missing"),
        ),
        id="schema-missing-field",
    ),
    pytest.param(
        Case(413, "payload_too_large", body=oversized_json()), id="too-large-content-length"
    ),
    pytest.param(
        Case(413, "payload_too_large", body=oversized_json(), chunked=True), id="too-large-chunked"
    ),
    pytest.param(
        Case(413, "payload_too_large", body=oversized_json(MAX_BODY + 1)), id="one-byte-too-large"
    ),
    # -- refused: the headers -------------------------------------------------------
    pytest.param(
        Case(415, "unsupported_media_type", headers={"content-type": "text/plain"}),
        id="text-plain",
    ),
    pytest.param(
        Case(
            415,
            "unsupported_media_type",
            headers={"content-type": "application/x-www-form-urlencoded"},
            body=b"sensor=t1&value=1.5",
        ),
        id="form",
    ),
    pytest.param(Case(415, "unsupported_media_type", headers={}), id="no-content-type"),
    pytest.param(
        Case(415, "unsupported_media_type", headers={"content-type": "application/jsonx"}),
        id="json-lookalike",
    ),
    pytest.param(
        Case(
            415,
            "unsupported_media_type",
            headers={"content-type": "text/plain"},
            body=oversized_json(),
        ),
        id="media-type-checked-before-size",
    ),
    # -- refused: the method --------------------------------------------------------
    *(
        pytest.param(
            Case(
                405,
                "method_not_allowed",
                method=method,
                body=b"" if method in ("GET", "DELETE") else READING,
                answer_headers={"allow": "POST"},
            ),
            id=f"method-{method}",
        )
        for method in ("GET", "PUT", "DELETE", "PATCH")
    ),
    # -- refused: the event name ----------------------------------------------------
    pytest.param(Case(400, "invalid_field", query="?event=up%0Adata%3A%20x"), id="event-with-lf"),
    pytest.param(Case(400, "invalid_field", query="?event=up%0Ddate"), id="event-with-cr"),
    pytest.param(Case(400, "invalid_field", query="?event=update%0A"), id="event-trailing-lf"),
    pytest.param(Case(400, "invalid_field", query="?event=%0A"), id="event-only-lf"),
    pytest.param(Case(400, "invalid_field", query="?event=up%00date"), id="event-with-nul"),
    # -- refused: the store ---------------------------------------------------------
    pytest.param(Case(503, "store_closed", closed=True), id="store-closed"),
]


async def chunks(body: bytes) -> AsyncIterator[bytes]:
    """``body`` in two pieces, as a streaming upload (no Content-Length)."""
    middle = len(body) // 2
    yield body[:middle]
    yield body[middle:]


async def send(case: Case, url: str) -> httpx.Response:
    """Send ``case``'s request to ``url``."""
    content: bytes | AsyncIterator[bytes] = chunks(case.body) if case.chunked else case.body
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
        request = client.build_request(
            case.method, url + case.query, headers=case.headers, content=content or None
        )
        if case.chunked:
            assert "content-length" not in request.headers
        return await client.send(request)


async def received(subscription: Subscription) -> list[Message]:
    """What ``subscription`` receives within :data:`QUIET` seconds (nothing if closed)."""
    try:
        return await subscription.get_batch(timeout=QUIET)
    except SubscriptionClosed:
        return []


@pytest.mark.parametrize("case", CASES)
async def test_publish_answer_is_the_same_on_both_adapters(
    publish_url: PublishStarter, case: Case
) -> None:
    """Each request gets the documented status and JSON body, and only a 202 publishes."""
    store = QueueStore(schema=case.schema)
    url = await publish_url(store)
    async with store.subscribe() as subscription:
        if case.closed:
            store.close()
        response = await send(case, url)
        messages = await received(subscription)

    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == "application/json"
    for name, value in case.answer_headers.items():
        assert response.headers.get(name) == value

    if case.status == 202:
        accepted = PublishAccepted.model_validate_json(response.content)
        assert store.stats.published == 1
        assert [message.id for message in messages] == [accepted.id]
        assert json.loads(messages[0].websocket)["data"] == json.loads(case.body)
        assert messages[0].event == case.event
        return

    error = ErrorBody.model_validate_json(response.content)
    assert error.error == case.error
    assert error.detail
    assert store.stats.published == 0
    assert messages == []
    if case.first_error is None:
        assert error.errors is None
    else:
        assert error.errors
        loc, kind = case.first_error
        assert (error.errors[0]["loc"], error.errors[0]["type"]) == (loc, kind)


async def test_published_ids_count_up_per_store(publish_url: PublishStarter) -> None:
    """Successive publishes get successive ids, and refused ones use up no id."""
    store = QueueStore()
    url = await publish_url(store)
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
        first = await client.post(url, content=READING, headers=JSON)
        refused = await client.post(url, content=b"{", headers=JSON)
        second = await client.post(url, content=READING, headers=JSON)
    assert (first.status_code, refused.status_code, second.status_code) == (202, 400, 202)
    ids = [PublishAccepted.model_validate_json(r.content).id for r in (first, second)]
    assert ids == [f"{store.epoch}-1", f"{store.epoch}-2"]


async def test_connection_stays_usable_after_a_refusal(publish_url: PublishStarter) -> None:
    """A client can publish again after each kind of refusal (413, 415, 405, 400)."""
    store = QueueStore()
    url = await publish_url(store)
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
        refusals = [
            await client.post(url, content=oversized_json(), headers=JSON),
            await client.post(url, content=READING, headers={"content-type": "text/plain"}),
            await client.get(url),
            await client.post(url, content=b"nope", headers=JSON),
        ]
        accepted = await client.post(url, content=READING, headers=JSON)
    assert [r.status_code for r in refusals] == [413, 415, 405, 400]
    assert accepted.status_code == 202
    assert store.stats.published == 1
