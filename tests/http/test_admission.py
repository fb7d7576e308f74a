"""The decisions both adapters carry out, tested without a server: admission of
subscribers, the route table, how a stream ends, answers and body limits."""

from __future__ import annotations

from typing import Any

import pytest

from tornadose.core.reasons import CloseReason
from tornadose.core.subscription import Subscription
from tornadose.delivery.session import Ending, ending_for
from tornadose.http import subscribe
from tornadose.http.answer import Answer, response_headers
from tornadose.http.auth import Action, Unauthorized
from tornadose.http.channels import Channels
from tornadose.http.documents import document_answer
from tornadose.http.request import BodyLimit
from tornadose.http.routes import Kind, served
from tornadose.http.subscribe import Request, Subscribing
from tornadose.stores import QueueStore

SSE = subscribe.Kind.SSE
WEBSOCKET = subscribe.Kind.WEBSOCKET
HANDSHAKE = {"upgrade": "websocket", "host": "example.com"}


def endpoint(kind: subscribe.Kind, **options: Any) -> Subscribing:
    return Subscribing(QueueStore(), kind, **options)


@pytest.mark.parametrize(
    ("kind", "request_", "status"),
    [
        (SSE, Request("POST", {}), 405),
        (SSE, Request("HEAD", {}), 405),
        (SSE, Request("GET", HANDSHAKE, websocket=True), 400),
        (SSE, Request("GET", {}), None),
        (WEBSOCKET, Request("GET", {}), 400),
        (WEBSOCKET, Request("POST", {}, websocket=False), 400),
        (
            WEBSOCKET,
            Request("GET", {**HANDSHAKE, "origin": "https://evil.test"}, websocket=True),
            403,
        ),
        (
            WEBSOCKET,
            Request("GET", {**HANDSHAKE, "origin": "https://example.com"}, websocket=True),
            None,
        ),
        (WEBSOCKET, Request("GET", HANDSHAKE, websocket=True), None),
    ],
)
def test_method_handshake_and_origin_are_refused_before_the_hook(
    kind: subscribe.Kind, request_: Request, status: int | None
) -> None:
    """Step 1 and 2 of admission: the answer (or none) for each kind of request."""
    refusal = subscribe.refuse_early(endpoint(kind), request_)
    assert (refusal.status if refusal is not None else None) == status


def test_a_405_names_get_in_allow() -> None:
    """An SSE endpoint refuses other methods with ``Allow: GET``."""
    refusal = subscribe.refuse_early(endpoint(SSE), Request("POST", {}))
    assert refusal is not None
    assert ("Allow", "GET") in refusal.headers


async def test_a_foreign_origin_never_reaches_the_hook() -> None:
    """The origin check comes first: the authorize hook never sees such a request."""
    seen: list[str] = []

    def hook(headers: Any, channel: str, action: Action) -> bool:
        seen.append(channel)
        return True

    ws = endpoint(WEBSOCKET, authorize=hook, channel="news")
    foreign = Request("GET", {**HANDSHAKE, "origin": "https://evil.test"}, websocket=True)
    refusal = await subscribe.authorize(ws, foreign)
    assert refusal is not None
    assert refusal.status == 403
    assert seen == []
    assert await subscribe.authorize(ws, Request("GET", HANDSHAKE, websocket=True)) is None
    assert seen == ["news"]


@pytest.mark.parametrize("kind", [SSE, WEBSOCKET])
async def test_the_hook_decides_for_both_transports(kind: subscribe.Kind) -> None:
    """Step 3: the hook's refusal is the answer, with the action ``SUBSCRIBE``."""

    def hook(headers: Any, channel: str, action: Action) -> bool:
        assert action is Action.SUBSCRIBE
        raise Unauthorized("who are you?", www_authenticate="Bearer")

    request = Request("GET", HANDSHAKE, websocket=kind is WEBSOCKET)
    refusal = await subscribe.authorize(endpoint(kind, authorize=hook), request)
    assert refusal is not None
    assert refusal.status == 401
    assert ("WWW-Authenticate", "Bearer") in refusal.headers


def test_register_resumes_from_the_header_over_the_query() -> None:
    """Step 5: the store's ``register`` gets the subscriber and the id the client
    sent; the ``Last-Event-ID`` header wins over ``?last_event_id=``."""
    seen: list[tuple[object, str | None]] = []

    class Watching(QueueStore):
        def register(self, subscriber: object, last_event_id: str | None = None) -> Subscription:
            seen.append((subscriber, last_event_id))
            return super().register(subscriber, last_event_id)

    sse = Subscribing(Watching(), SSE)
    key = object()
    request = Request("GET", {"last-event-id": "from-header"}, "last_event_id=from-query")
    subscription = subscribe.register(sse, request, key)
    assert isinstance(subscription, Subscription)
    assert seen == [(key, "from-header")]
    subscribe.register(sse, Request("GET", {}, "last_event_id=from-query"), object())
    assert seen[-1][1] == "from-query"


def test_a_closed_store_answers_204_on_sse_and_closes_1001_on_websocket() -> None:
    """Step 6: SSE gets ``204`` (no reconnect), an accepted WebSocket ``STORE_CLOSED``."""
    store = QueueStore()
    store.close()
    request = Request("GET", {})
    assert subscribe.register(Subscribing(store, SSE), request, object()) == Answer(204)
    outcome = subscribe.register(Subscribing(store, WEBSOCKET), request, object())
    assert outcome is CloseReason.STORE_CLOSED
    assert len(store.subscribers) == 0


def test_an_endpoint_refuses_what_is_not_a_store() -> None:
    """A wrong store fails when the endpoint is made, not at the first client."""
    with pytest.raises(TypeError, match="tornadose store"):
        Subscribing({}, SSE)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reason", "websocket", "at_deadline", "ending"),
    [
        (CloseReason.CLIENT_GONE, False, False, Ending.NOTHING),
        (CloseReason.CLIENT_GONE, True, True, Ending.NOTHING),
        (CloseReason.SLOW_CONSUMER, False, False, Ending.ABORT),
        (CloseReason.WRITE_TIMEOUT, False, False, Ending.ABORT),
        (CloseReason.SLOW_CONSUMER, True, False, Ending.LAST_FRAME),
        (CloseReason.WRITE_TIMEOUT, True, False, Ending.LAST_FRAME),
        (CloseReason.SERVER_SHUTDOWN, False, False, Ending.LAST_FRAME),
        (CloseReason.SERVER_SHUTDOWN, True, True, Ending.ABORT),
        (CloseReason.STORE_CLOSED, True, False, Ending.LAST_FRAME),
        (CloseReason.DEREGISTERED, False, False, Ending.LAST_FRAME),
    ],
)
def test_how_a_stream_ends(
    reason: CloseReason, websocket: bool, at_deadline: bool, ending: Ending
) -> None:
    """Nothing after the client left; a cut SSE stream or one at the drain deadline
    is dropped; a cut WebSocket is closed with its code; the rest end gracefully."""
    assert ending_for(reason, websocket=websocket, at_deadline=at_deadline) is ending


def test_the_route_table_gives_both_adapters_the_channel_options() -> None:
    """Each channel route carries the options of ``Channel.sse_options()``."""
    channels = Channels(prefix="/api")
    channels.add("news", heartbeat=2.0, period=0.5, retry=1500, write_timeout=9.0, max_body=10)
    channels.add("quiet", publishable=False, allowed_origins=("https://a.test",))
    table = {row.path: row for row in served(channels)}
    assert set(table) == {
        "/api/asyncapi.json",
        "/api/metrics",
        "/api/_multi/events",
        "/api/_multi/ws",
        "/api/_presence",
        "/api/news/presence",
        "/api/quiet/presence",
        "/api/news/events",
        "/api/news/ws",
        "/api/news/publish",
        "/api/news/schema.json",
        "/api/quiet/events",
        "/api/quiet/ws",
        "/api/quiet/schema.json",
    }
    events = table["/api/news/events"]
    assert events.kind is Kind.EVENTS
    options = channels["news"].sse_options()
    assert {k: events.options[k] for k in ("heartbeat", "period", "retry", "write_timeout")} == {
        "heartbeat": options.heartbeat,
        "period": options.period,
        "retry": options.retry,
        "write_timeout": options.write_timeout,
    }
    assert events.options["channel"] == "news"
    assert table["/api/news/publish"].options["max_body"] == 10
    assert table["/api/quiet/ws"].kind is Kind.WEBSOCKET
    assert table["/api/quiet/ws"].options["allowed_origins"] == ("https://a.test",)
    assert "heartbeat" not in table["/api/quiet/ws"].options
    schema = table["/api/news/schema.json"]
    assert schema.kind is Kind.ANSWER
    assert schema.options["make_answer"]().status == 200


def test_documents_answer_get_and_head_only() -> None:
    """A document endpoint: the answer for GET/HEAD, ``405`` naming both otherwise."""
    answer = Answer(200, b"{}")
    assert document_answer("HEAD", lambda: answer) is answer
    refused = document_answer("POST", lambda: answer)
    assert refused.status == 405
    assert ("Allow", "GET, HEAD") in refused.headers


def test_response_headers_carry_a_length_unless_bodiless() -> None:
    """Both adapters send ``Content-Length`` with every answer but 204/304."""
    assert ("Content-Length", "2") in response_headers(Answer(200, b"{}"))
    assert response_headers(Answer(204)) == ()
    assert response_headers(Answer(304, b"", (("ETag", "x"),))) == (("ETag", "x"),)


def test_a_body_over_the_limit_is_refused_from_the_chunk_that_crosses_it() -> None:
    """The body is kept while within the limit, dropped as soon as it is not."""
    body = BodyLimit(5)
    assert body.add(b"ab")
    assert body.add(b"cde")
    assert body.body == b"abcde"
    assert not body.exceeded
    assert not body.add(b"f")
    assert body.exceeded
    assert body.body == b""
