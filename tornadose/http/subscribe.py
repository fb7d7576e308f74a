"""Admitting a subscriber, decided once for every adapter (no I/O here, h11 style).

An adapter hands over what its framework parsed (a :class:`Request`) and carries
out what comes back: an :class:`~tornadose.http.answer.Answer` to send instead of a
stream, a :class:`~tornadose.core.reasons.CloseReason` to close an accepted
WebSocket with, or the :class:`~tornadose.core.subscription.Subscription` to stream.

The rules, in the order they apply:

========================  ==============================  =============================
step                      Server-Sent Events              WebSocket
========================  ==============================  =============================
1. method / handshake     not ``GET``: ``405``;           not a handshake: ``400``
                          a handshake: ``400``
2. origin                 (none)                          foreign origin: ``403``, before
                                                          the hook, which never sees it
3. authorize hook         ``401``/``403``                 ``401``/``403``
4. (adapter)              sends the SSE headers later     accepts the handshake
5. register               ``Last-Event-ID`` header, else  the same
                          ``?last_event_id=``: resume
6. closed store           ``204`` (stops reconnecting)    close ``1001``
========================  ==============================  =============================

Every subscriber registers through :meth:`~tornadose.core.store.BaseStore.register`
(one door for every adapter, so a store overriding it sees every subscriber), and
only once its stream is open: a refused request registers nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from tornadose.core.errors import StoreClosed
from tornadose.core.reasons import CloseReason
from tornadose.core.store import BaseStore
from tornadose.core.subscription import Subscription
from tornadose.http.answer import Answer, error_answer, method_not_allowed
from tornadose.http.auth import Action, Authorize, check_access
from tornadose.http.request import last_event_id_from
from tornadose.http.websocket import not_a_websocket, refuse_origin

__all__ = [
    "CLOSED_STORE_ANSWER",
    "Access",
    "Kind",
    "Registrar",
    "Request",
    "Subscribing",
    "admission",
    "authorize",
    "not_an_event_stream",
    "refuse_early",
    "register",
]

#: The answer to an SSE request for a closed store: an ``EventSource`` that gets
#: ``204`` stops reconnecting.
CLOSED_STORE_ANSWER = Answer(204)


class Kind(enum.Enum):
    """The transport of a subscriber endpoint."""

    SSE = "sse"
    WEBSOCKET = "websocket"


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Subscribing:
    """Who may subscribe at one endpoint, and to what: its store, transport,
    authorize hook (with the channel name it is given) and, for WebSocket, the
    origins besides the page's own that may connect (``("*",)``: any). A store that
    is not a tornadose store fails here, when the endpoint is made."""

    store: BaseStore
    kind: Kind
    authorize: Authorize | None = None
    channel: str = ""
    allowed_origins: Collection[str] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.store, BaseStore):
            raise TypeError(f"store must be a tornadose store, not {type(self.store).__name__}")


class Access(Protocol):
    """What :func:`refuse_early` reads of an endpoint (a :class:`Subscribing`, or a
    multi-channel one of :mod:`tornadose.http.multi`)."""

    @property
    def kind(self) -> Kind: ...

    @property
    def allowed_origins(self) -> Collection[str] | None: ...


@dataclass(frozen=True, slots=True)
class Request:
    """What admission reads of a request: its method, headers as
    ``{lower-case name: value}`` (see :func:`tornadose.http.request.joined_headers`),
    raw query string, and whether it is a WebSocket handshake."""

    method: str
    headers: Mapping[str, str]
    query: str = ""
    websocket: bool = False


def not_an_event_stream() -> Answer:
    """The ``400`` answer to a WebSocket handshake at an SSE URL."""
    return error_answer(400, "bad_request", "this URL serves Server-Sent Events: use a plain GET")


def refuse_early(endpoint: Access, request: Request) -> Answer | None:
    """Steps 1 and 2: the answer refusing the request on its method or handshake, or
    its origin; ``None`` if it may go on to the authorize hook."""
    if endpoint.kind is Kind.SSE:
        if request.websocket:
            return not_an_event_stream()
        if request.method != "GET":
            return method_not_allowed(request.method, "GET")
        return None
    if not request.websocket:
        return not_a_websocket()
    return refuse_origin(request.headers, endpoint.allowed_origins)


async def authorize(endpoint: Subscribing, request: Request) -> Answer | None:
    """Steps 1 to 3: :func:`refuse_early`, then the authorize hook (the only step that
    may wait: the hook can be async). ``None``: the subscriber is admitted, the
    adapter may open the stream (send SSE headers, accept the handshake)."""
    refusal = refuse_early(endpoint, request)
    if refusal is not None:
        return refusal
    return await check_access(
        endpoint.authorize, request.headers, endpoint.channel, Action.SUBSCRIBE
    )


#: What registers an admitted subscriber once its stream is open (given the
#: subscriber's key): its subscription, or the answer / close reason of a closed store.
Registrar = Callable[[object], "Subscription | Answer | CloseReason"]


async def admission(endpoint: Subscribing, request: Request) -> Answer | Registrar:
    """:func:`authorize`, then, if admitted, the :data:`Registrar` doing
    :func:`register` for this request (what the adapters call)."""
    refusal = await authorize(endpoint, request)
    return refusal if refusal is not None else partial(register, endpoint, request)


def register(
    endpoint: Subscribing, request: Request, subscriber: object
) -> Subscription | Answer | CloseReason:
    """Steps 5 and 6, once the stream is open: register ``subscriber`` (any hashable
    key; a Tornado handler is its own) with the store, resuming from the id the
    client sent. A closed store gives, instead of a subscription, the answer to send
    (SSE: :data:`CLOSED_STORE_ANSWER`) or the reason to close the accepted WebSocket
    with (``STORE_CLOSED``: ``1001``)."""
    last_event_id = last_event_id_from(request.headers, request.query)
    try:
        return endpoint.store.register(subscriber, last_event_id)
    except StoreClosed:
        if endpoint.kind is Kind.SSE:
            return CLOSED_STORE_ANSWER
        return CloseReason.STORE_CLOSED
