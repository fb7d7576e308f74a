"""A published message and its encodings, computed once and shared by every subscriber.

How a payload becomes text (the same on every transport):

* ``str`` goes out as is;
* ``bytes`` are decoded as UTF-8 (anything else is refused);
* everything else (dicts, lists, numbers, ``None``, pydantic models, dataclasses,
  dates...) goes out as its JSON, produced by pydantic. ``NaN`` and infinities,
  which JSON cannot express, become ``null`` as in pydantic's own model output.

Over SSE that text is the event's ``data``. Over WebSocket each message is one text
frame holding a JSON object: ``{"data": <payload as JSON>, "id": "<id>"}`` plus
``"event"`` when the message has an event name. ``"data"`` is the key the original
tornadose used; other keys are additive.
"""

from __future__ import annotations

from typing import Any

import pydantic_core

from tornadose.core.errors import UnencodableMessage
from tornadose.wire import sse

__all__ = ["Message", "payload_to_json", "payload_to_text"]


def payload_to_json(payload: Any) -> str:
    """Return ``payload`` as JSON text. Raises :class:`UnencodableMessage`."""
    try:
        return pydantic_core.to_json(payload, inf_nan_mode="null").decode("utf-8")
    except pydantic_core.PydanticSerializationError as exc:
        raise UnencodableMessage(f"message cannot be encoded as JSON: {exc}") from exc


def payload_to_text(payload: Any) -> str:
    """Return the text form of ``payload`` (see the module docstring)."""
    if isinstance(payload, str):
        _check_utf8(payload)
        return payload
    if isinstance(payload, bytes | bytearray | memoryview):
        try:
            return bytes(payload).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnencodableMessage(f"bytes message is not valid UTF-8: {exc}") from exc
    return payload_to_json(payload)


def _check_utf8(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnencodableMessage(f"text message is not encodable as UTF-8: {exc}") from exc


class Message:
    """One published message: its payload, id, optional event name and encodings.

    A message is immutable once created. Its text form is computed when it is
    created, so a payload that cannot be encoded is refused at ``submit()`` time,
    before anything is published. The SSE bytes and the WebSocket frame are each
    built at most once, on first use, and the same object is then written to every
    subscriber.
    """

    __slots__ = ("_json", "_sse", "_websocket", "data", "event", "id", "text")

    def __init__(self, data: Any, *, id: str | None, event: str | None = None) -> None:  # noqa: A002
        if id is not None:
            sse.check_field("id", id)
        if event is not None:
            sse.check_field("event", event)
        self.data = data
        self.id = id
        self.event = event
        self.text = payload_to_text(data)
        self._sse: bytes | None = None
        self._websocket: str | None = None
        self._json: str | None = None

    def with_id(self, id: str) -> Message:  # noqa: A002
        """This message with another id (the encoded text is reused, not recomputed)."""
        sse.check_field("id", id)
        copy = Message.__new__(Message)
        copy.data, copy.id, copy.event, copy.text = self.data, id, self.event, self.text
        copy._json, copy._sse, copy._websocket = self._json, None, None
        return copy

    def tagged(self, channel: str | None, cursor: str) -> Message:
        """This message as one event of a multi-channel connection (see
        :mod:`tornadose.core.multiplex`): its id is the connection's ``cursor``, its
        event name is kept, and its payload is the envelope
        ``{"channel": <channel>, "id": <this message's id>, "data": <payload>}``
        (SSE ``data``); the WebSocket frame is that envelope plus ``"event"`` when the
        message has a name and ``"cursor"``. The payload's JSON is reused, not
        recomputed. ``channel`` ``None`` (``null``): an event of the whole set."""
        sse.check_field("id", cursor)
        name = payload_to_json(channel)
        own_id = "null" if self.id is None else payload_to_json(self.id)
        text = '{"channel":' + name + ',"id":' + own_id + ',"data":' + self.json + "}"
        copy = Message.__new__(Message)
        copy.data = {"channel": channel, "id": self.id, "data": self.data}
        copy.id, copy.event, copy.text, copy._json, copy._sse = cursor, self.event, text, text, None
        event = "" if self.event is None else ',"event":' + payload_to_json(self.event)
        copy._websocket = text[:-1] + event + ',"cursor":' + payload_to_json(cursor) + "}"
        return copy

    @property
    def sse(self) -> bytes:
        """The message as one encoded SSE event (``event:``, ``id:``, ``data:`` lines)."""
        if self._sse is None:
            self._sse = sse.encode_event(self.text, id=self.id, event=self.event)
        return self._sse

    @property
    def size(self) -> int:
        """Bytes of the message as an SSE event (what queue byte bounds count)."""
        return len(self.sse)

    @property
    def json(self) -> str:
        """The payload as JSON text: :attr:`text` itself for a non-text payload, a JSON
        string holding :attr:`text` for ``str`` and ``bytes`` payloads."""
        if self._json is None:
            is_text = isinstance(self.data, str | bytes | bytearray | memoryview)
            self._json = payload_to_json(self.text) if is_text else self.text
        return self._json

    @property
    def websocket(self) -> str:
        """The message as the text of one WebSocket frame (a JSON object)."""
        if self._websocket is None:
            frame = '{"data":' + self.json
            if self.id is not None:
                frame += ',"id":' + payload_to_json(self.id)
            if self.event is not None:
                frame += ',"event":' + payload_to_json(self.event)
            self._websocket = frame + "}"
        return self._websocket

    def __repr__(self) -> str:
        return f"Message(id={self.id!r}, event={self.event!r}, data={self.data!r})"
