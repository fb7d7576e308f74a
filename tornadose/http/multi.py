"""Several channels on one connection: admitting a multi-channel subscriber (no I/O here).

A :class:`~tornadose.http.channels.Channels` serves, next to its per-channel URLs::

    GET {prefix}/_multi/events?channel=a&channel=b&pattern=sensors.*   (SSE)
    GET {prefix}/_multi/ws?channel=a&pattern=sensors.**                (WebSocket)

(``_multi`` cannot be a channel's name: names start with a letter or digit.)

**The set.** Each ``channel`` parameter names a declared channel; each ``pattern``
(see :mod:`tornadose.core.channelset`: ``*`` one segment, ``**`` as the last segment
one or more, segments split on ``.``) matches every declared channel it fits, now
and declared later, while the connection is open. A pattern matches declared
channels only: it discovers nothing in Redis, and costs a name comparison per
declared channel when the connection opens or a channel is declared.

**Events.** Every stream opens with a ``tornadose.subscribed`` event (after any
``tornadose.refused`` ones): its envelope's ``channel`` is ``null``, its ``data``
``{"channels": [joined...], "patterns": [followed...]}``, its id the cursor. Then
SSE: one event per message, ``id:`` the connection's *cursor*,
``event:`` the message's own name (none for plain messages, so ``onmessage``
gets them; ``tornadose.resumed``/``tornadose.reset`` per channel), ``data:`` the
JSON envelope ``{"channel": "<name>", "id": "<the message's id in its channel>",
"data": <payload as JSON>}``. WebSocket: one text frame per message, that envelope
plus ``"event"`` (when named) and ``"cursor"``. Single-channel streams are
unchanged.

**Resume.** The client sends the cursor of the last event it got back as
``Last-Event-ID`` (browsers do it by themselves) or ``?last_event_id=`` (the
header wins). Each channel of the set resumes from its position in the cursor (see
:mod:`tornadose.core.multiplex`: exact, or that channel's reset naming it);
channels of the cursor no longer in the set are ignored; channels of the set
missing from it start live.

**Admission**, in this order (every refusal is a JSON :class:`~tornadose.schemas.ErrorBody`):

=====================================  ======================================
what                                   answer
=====================================  ======================================
method / handshake / origin            as a single channel (405, 400, 403)
more query fields than the limits      ``400 too_many_channels`` (+ :data:`OTHER_QUERY_FIELDS`)
no ``channel`` nor ``pattern``         ``400 no_channels``
a bad pattern, too many patterns       ``400 invalid_pattern`` / ``too_many_patterns``
a malformed cursor                     ``400 malformed_cursor``
a named channel not declared           ``404 unknown_channel`` (naming them)
more channels than ``max_channels``    ``400 too_many_channels`` (also: names too long for a cursor)
the hook raises ``Unauthorized``       ``401`` (credentials are per request)
every channel refused, no pattern      ``403 forbidden`` (naming each and why)
=====================================  ======================================

**Authorization per channel.** The authorize hook is asked, with action
``subscribe``, for every channel of the set and for each channel a pattern comes to
match later (with the request's headers, which the connection keeps for that). A
channel matched later joins the connection when the hook allows it, as a new
subscriber of it would: from then on nothing of it is missed, and it gets what a
newcomer gets (a ``QueueStore``'s backlog, a ``DataStore``'s current value); what
it published while the hook decided reaches it only that way. Nothing is registered
for it before the answer, so a refused channel's store is left as it was. A
refused channel, or one beyond ``max_channels``, is reported in the stream as a
``tornadose.refused`` event naming it: ``{"channel": name, "id": null, "data":
{"status": 403, "error": "forbidden", "detail": "..."}}``; the others are served.
A channel whose store is closed (when the connection opens, or while it is open)
is reported the same way with ``503`` ``store_closed``; once no channel is left the
stream ends as a closed store's does (SSE: ``204`` if none could be joined at all,
else the response ends; WebSocket: ``1001``).
Bounds: :class:`~tornadose.http.channels.MultiLimits` (per connection), plus every
channel's own store bounds; the stream's write timeout and heartbeat are the
defaults of :mod:`tornadose.delivery.streams`.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal, overload
from urllib.parse import parse_qsl

from tornadose.core.channelset import (
    CURSOR_NAMES_BUDGET,
    InvalidPattern,
    MalformedCursor,
    Pattern,
    cursor_names_fit,
    decode_cursor,
    matching,
)
from tornadose.core.multiplex import Multiplex
from tornadose.core.reasons import CloseReason
from tornadose.core.subscription import Subscription
from tornadose.delivery.streams import SSEOptions, StreamOptions
from tornadose.http.answer import Answer, error_answer
from tornadose.http.auth import Action, check_access
from tornadose.http.channels import Channel, Channels
from tornadose.http.request import last_event_id_from
from tornadose.http.subscribe import CLOSED_STORE_ANSWER, Kind, Registrar, Request, refuse_early

__all__ = [
    "OTHER_QUERY_FIELDS",
    "Admitted",
    "MultiSubscribing",
    "Refusal",
    "admission",
    "admit",
    "multi_endpoint",
    "open_multiplex",
]


@dataclass(frozen=True, eq=False)
class MultiSubscribing:
    """A multi-channel endpoint: the channels it serves, its transport and, for
    WebSocket, the origins besides the page's own that may connect."""

    channels: Channels
    kind: Kind
    allowed_origins: Collection[str] | None = None


@overload
def multi_endpoint(
    channels: Channels, kind: Literal[Kind.SSE], allowed_origins: None = None
) -> tuple[MultiSubscribing, SSEOptions]: ...


@overload
def multi_endpoint(
    channels: Channels, kind: Kind, allowed_origins: Collection[str] | None = None
) -> tuple[MultiSubscribing, StreamOptions]: ...


def multi_endpoint(
    channels: Channels, kind: Kind, allowed_origins: Collection[str] | None = None
) -> tuple[MultiSubscribing, StreamOptions]:
    """A multi-channel endpoint of ``kind`` (``allowed_origins``: WebSocket only) and
    how its stream is written: the defaults of :mod:`tornadose.delivery.streams`
    (:class:`~tornadose.delivery.streams.SSEOptions` for SSE, heartbeats included)."""
    options = SSEOptions() if kind is Kind.SSE else StreamOptions()
    return MultiSubscribing(channels, kind, allowed_origins), options


@dataclass(frozen=True)
class Refusal:
    """A channel of the set that is not served, and why (a ``tornadose.refused`` event)."""

    channel: str
    status: int
    error: str
    detail: str


@dataclass(eq=False)
class Admitted:
    """An admitted multi-channel request: what :func:`open_multiplex` opens."""

    endpoint: MultiSubscribing
    #: The request's headers, kept to authorize channels patterns match later.
    headers: Mapping[str, str]
    granted: list[Channel]
    refused: list[Refusal]
    patterns: tuple[Pattern, ...]
    #: The cursor's positions, for the channels of the set only.
    positions: dict[str, str]
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


#: Query parameters a request may carry besides its channels, patterns and
#: ``last_event_id`` (a token, a cache buster...): they are ignored.
OTHER_QUERY_FIELDS = 8


class _Refused(Exception):
    def __init__(self, answer: Answer) -> None:
        self.answer = answer


def _parse(query: str, endpoint: MultiSubscribing) -> tuple[list[str], tuple[Pattern, ...]]:
    limits = endpoint.channels.multi
    most = limits.max_channels + limits.max_patterns + 1 + OTHER_QUERY_FIELDS
    try:
        fields = parse_qsl(query, keep_blank_values=True, max_num_fields=most)
    except ValueError:
        detail = (
            f"more than {most} query parameters (at most {limits.max_channels} channels, "
            f"{limits.max_patterns} patterns, last_event_id and {OTHER_QUERY_FIELDS} others)"
        )
        raise _Refused(error_answer(400, "too_many_channels", detail)) from None
    names = list(dict.fromkeys(value for key, value in fields if key == "channel"))
    texts = list(dict.fromkeys(value for key, value in fields if key == "pattern"))
    if not names and not texts:
        detail = "name channels with ?channel=<name> and/or patterns with ?pattern=<pattern>"
        raise _Refused(error_answer(400, "no_channels", detail))
    if len(texts) > limits.max_patterns:
        detail = f"{len(texts)} patterns, at most {limits.max_patterns} per connection"
        raise _Refused(error_answer(400, "too_many_patterns", detail))
    patterns = []
    for text in texts:
        try:
            patterns.append(Pattern.parse(text))
        except InvalidPattern as exc:
            raise _Refused(error_answer(400, "invalid_pattern", str(exc))) from None
    return names, tuple(patterns)


def _refusal(name: str, answer: Answer) -> Refusal:
    body = json.loads(answer.body)
    return Refusal(name, answer.status, str(body.get("error")), str(body.get("detail")))


async def admit(endpoint: MultiSubscribing, request: Request) -> Admitted | Answer:
    """Decide on a multi-channel request (the table of the module docstring): the
    refusal to send, or what :func:`open_multiplex` opens once the stream is open.
    Only the authorize hook may wait (asked for every channel at once)."""
    refusal = refuse_early(endpoint, request)
    if refusal is not None:
        return refusal
    channels, limits = endpoint.channels, endpoint.channels.multi
    channels.presence.start()
    try:
        names, patterns = _parse(request.query, endpoint)
    except _Refused as exc:
        return exc.answer
    cursor = last_event_id_from(request.headers, request.query)
    try:
        positions = decode_cursor(cursor) if cursor is not None else {}
    except MalformedCursor as exc:
        return error_answer(400, "malformed_cursor", f"Last-Event-ID / last_event_id: {exc}")
    unknown = [name for name in names if name not in channels]
    if unknown:
        listed = ", ".join(repr(name) for name in unknown[:10])
        return error_answer(404, "unknown_channel", f"no such channel: {listed}")
    wanted = [channels[name] for name in names]
    wanted += [c for c in channels if c.name not in names and matching(patterns, c.name)]
    if len(wanted) > limits.max_channels:
        detail = (
            f"the channels and patterns name {len(wanted)} channels, "
            f"at most {limits.max_channels} per connection"
        )
        return error_answer(400, "too_many_channels", detail)
    if not cursor_names_fit(c.name for c in wanted):
        detail = (
            f"the names of the {len(wanted)} channels are too long for one cursor "
            f"(at most {CURSOR_NAMES_BUDGET} bytes, 6 more per channel)"
        )
        return error_answer(400, "too_many_channels", detail)
    authorize = channels.authorize
    answers = await asyncio.gather(
        *(check_access(authorize, request.headers, c.name, Action.SUBSCRIBE) for c in wanted)
    )
    for answer in answers:
        if answer is not None and answer.status == 401:
            return answer
    granted = [c for c, answer in zip(wanted, answers, strict=True) if answer is None]
    refused = [
        _refusal(c.name, answer)
        for c, answer in zip(wanted, answers, strict=True)
        if answer is not None
    ]
    if not granted and not patterns:
        why = "; ".join(f"{r.channel!r}: {r.detail}" for r in refused[:10])
        return error_answer(403, "forbidden", f"every channel was refused: {why}")
    in_set = {c.name for c in wanted}
    kept = {name: p for name, p in positions.items() if name in in_set}
    return Admitted(endpoint, dict(request.headers), granted, refused, patterns, kept)


async def admission(endpoint: MultiSubscribing, request: Request) -> Answer | Registrar:
    """What every adapter's multi-channel endpoint does to admit a request: the
    refusal to send (:func:`admit`), or what opens the multiplex once the stream is
    open (:func:`open_multiplex`, as a registrar of :mod:`tornadose.http.subscribe`)."""
    admitted = await admit(endpoint, request)
    if isinstance(admitted, Answer):
        return admitted
    return functools.partial(open_multiplex, admitted)


def open_multiplex(admitted: Admitted, subscriber: object) -> Subscription | Answer | CloseReason:
    """Once the stream is open: join every granted channel (resuming from the
    cursor), report the refused ones, and follow the patterns. Returns the
    subscription to stream (the multiplex's outlet) or, when every channel's store
    is closed, what a closed store gets (SSE ``204``, WebSocket ``1001``).
    ``subscriber`` (the adapter's handler or stream) is not needed: each store
    knows the connection by its multiplex."""
    endpoint = admitted.endpoint
    limits = endpoint.channels.multi
    unwatch: list[Callable[[], None]] = []

    def closed(_: Multiplex) -> None:
        for stop in unwatch:
            stop()
        for task in list(admitted.tasks):
            task.cancel()

    multiplex = Multiplex(
        max_messages=limits.max_queue, max_bytes=limits.max_queue_bytes, on_close=closed
    )
    for refusal in admitted.refused:
        multiplex.report(refusal.channel, refusal.status, refusal.error, refusal.detail)
    joined = []
    for channel in admitted.granted:
        joined.append(
            multiplex.add(channel.name, channel.store, admitted.positions.get(channel.name))
        )
        if not joined[-1]:
            detail = f"channel {channel.name!r} was closed"
            multiplex.report(channel.name, 503, "store_closed", detail)
    if admitted.granted and not any(joined) and not admitted.patterns:
        multiplex.outlet.close(CloseReason.STORE_CLOSED)
        return CLOSED_STORE_ANSWER if endpoint.kind is Kind.SSE else CloseReason.STORE_CLOSED
    multiplex.opened([pattern.text for pattern in admitted.patterns])
    if admitted.patterns:
        unwatch.append(endpoint.channels.watch(lambda c: _declared(admitted, multiplex, c)))
    return multiplex.outlet


def _declared(admitted: Admitted, multiplex: Multiplex, channel: Channel) -> None:
    """A channel was declared while the connection is open: join it if a pattern
    matches it, once the hook allows it (else report it refused)."""
    if multiplex.outlet.closed or not matching(admitted.patterns, channel.name):
        return
    task = asyncio.ensure_future(_join_later(admitted, multiplex, channel))
    admitted.tasks.add(task)
    task.add_done_callback(admitted.tasks.discard)


async def _join_later(admitted: Admitted, multiplex: Multiplex, channel: Channel) -> None:
    channels = admitted.endpoint.channels
    answer = await check_access(
        channels.authorize, admitted.headers, channel.name, Action.SUBSCRIBE
    )
    if multiplex.outlet.closed or channel.name in multiplex:
        return
    if answer is not None:
        refusal = _refusal(channel.name, answer)
        multiplex.report(channel.name, refusal.status, refusal.error, refusal.detail)
    elif len(multiplex.channels) >= channels.multi.max_channels:
        detail = f"the connection has {channels.multi.max_channels} channels already"
        multiplex.report(channel.name, 400, "too_many_channels", detail)
    elif not cursor_names_fit([*multiplex.channels, channel.name]):
        detail = f"the connection's channel names would not fit one cursor with {channel.name!r}"
        multiplex.report(channel.name, 400, "too_many_channels", detail)
    else:
        multiplex.add(channel.name, channel.store, None)
