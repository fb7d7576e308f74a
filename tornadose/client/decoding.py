"""From a received event to the :class:`~tornadose.client.Event` the caller gets: the
payload decoded from JSON or validated into the stream's schema, control events
recognised, and anything that does not fit raised as
:class:`~tornadose.client.InvalidMessage`, never skipped.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

import pydantic
import pydantic_core

from tornadose.client.connection import UNDECODED, Incoming
from tornadose.client.events import CONTROL_EVENTS, ControlEvent, Event, InvalidMessage

__all__ = ["decode", "decode_multi"]

T = TypeVar("T")


def decode_multi(
    incoming: Incoming, adapter: pydantic.TypeAdapter[T] | None, url: str
) -> Event[T] | ControlEvent:
    """As :func:`decode`, for an event of a multi-channel stream: its payload is the
    envelope ``{"channel", "id", "data"}`` (:mod:`tornadose.http.multi`); the event
    gets ``data`` decoded (validated with ``adapter``) and ``channel``/``channel_id``."""
    if incoming.problem is not None:
        return decode(incoming, adapter, url)
    envelope = incoming.value if incoming.value is not UNDECODED else _json_or(incoming.text, None)
    if not isinstance(envelope, dict) or "data" not in envelope or "channel" not in envelope:
        raise InvalidMessage(
            f"{url} sent an event that is not a multi-channel envelope",
            [],
            text=incoming.text,
            id=incoming.id,
        )
    inner = envelope["data"]
    text = inner if isinstance(inner, str) else pydantic_core.to_json(inner).decode()
    event = decode(Incoming(incoming.event, incoming.id, text, inner), adapter, url)
    channel, own_id = envelope["channel"], envelope.get("id")
    return dataclasses.replace(event, channel=channel, channel_id=own_id)


def decode(
    incoming: Incoming, adapter: pydantic.TypeAdapter[T] | None, url: str
) -> Event[T] | ControlEvent:
    """``incoming`` as the caller gets it (``url``: where it came from, for errors).

    Without ``adapter`` a payload is JSON-decoded (over SSE, a text that is not JSON
    is the string itself); with one it is validated into the schema. A control
    event's data must be a JSON object; a frame that is not a tornadose message, a
    control event without an object, or a payload that does not fit raises
    :class:`InvalidMessage`.
    """
    text, id_ = incoming.text, incoming.id
    if incoming.problem is not None:
        raise InvalidMessage(
            f"{url} sent a frame that is not a tornadose message: {incoming.problem}",
            [],
            text=text,
            id=id_,
        )
    if incoming.event in CONTROL_EVENTS:
        data = incoming.value if incoming.value is not UNDECODED else _json_or(text, None)
        if not isinstance(data, dict):
            raise InvalidMessage(
                f"{url} sent a {incoming.event} event whose data is not a JSON object",
                [],
                text=text,
                id=id_,
            )
        return ControlEvent(data, text, id_, incoming.event)
    if adapter is None:
        value = incoming.value if incoming.value is not UNDECODED else _json_or(text, text)
        return Event(value, text, id_, incoming.event)
    return Event(_validate(adapter, incoming, url), text, id_, incoming.event)


def _validate(adapter: pydantic.TypeAdapter[T], incoming: Incoming, url: str) -> T:
    """The payload validated into the schema, in JSON mode. Over SSE, where a string
    payload is sent as bare text, a text that fails as JSON is tried as a JSON string
    too."""
    if incoming.value is not UNDECODED:
        attempts = [pydantic_core.to_json(incoming.value)]
    else:
        attempts = [incoming.text.encode(), pydantic_core.to_json(incoming.text)]
    failures: list[pydantic.ValidationError] = []
    for attempt in attempts:
        try:
            return adapter.validate_json(attempt)
        except pydantic.ValidationError as exc:
            failures.append(exc)
    # Report why the payload does not fit, rather than that bare text is not JSON.
    reported = failures[-1] if _is_invalid_json(failures[0]) else failures[0]
    raise InvalidMessage(
        f"message {incoming.id} from {url} does not fit the schema: {reported}",
        pydantic_core.from_json(reported.json(include_url=False)),
        text=incoming.text,
        id=incoming.id,
    ) from reported


def _is_invalid_json(exc: pydantic.ValidationError) -> bool:
    return any(e["type"] == "json_invalid" for e in exc.errors())


def _json_or(text: str, default: Any) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return default
