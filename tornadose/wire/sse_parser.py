"""Reading Server-Sent Events: an incremental parser, as a state machine with no I/O.

Feed :class:`SSEParser` the bytes of one event stream as they arrive; each call
returns the events those bytes completed::

    parser = SSEParser()
    async for chunk in response.aiter_bytes():
        for event in parser.feed(chunk):
            handle(event.event, event.data, event.id)

It follows the WHATWG HTML standard, "Interpreting an event stream" (section 9.2.6).
Guarantees:

* **Chunk boundaries never matter.** The same bytes split anywhere (between a CR and
  its LF, inside a multi-byte character, inside the BOM) give the same events.
* **Decoding.** The stream is UTF-8; one byte order mark at its very start is
  skipped (a second one is content); bytes that are not UTF-8 become U+FFFD. Nothing
  raises, whatever the input.
* **Lines** end in CRLF, LF or CR, and nothing else (U+2028, NEL, form feed are
  content). A line starting with ``:`` is a comment and is ignored. ``name: value``
  loses exactly one space after the colon; a line without a colon is a field with an
  empty value. Field names are case-sensitive; unknown ones are ignored.
* **Events are dispatched only at a blank line**, in stream order, each once. A block
  with no ``data`` line dispatches nothing (it may still set the id or retry). The
  ``data`` lines of a block are joined with LF. An unfinished block at
  :meth:`~SSEParser.close` is discarded, as the standard says.
* **Event type.** :attr:`ServerSentEvent.event` is always a string: the block's
  ``event`` value, or ``"message"`` (:data:`DEFAULT_EVENT`) when it had none or an
  empty one, exactly the type a browser's ``EventSource`` gives the event. So
  ``event: message`` and no ``event`` line cannot be told apart (nor can they in a
  browser).
* **Ids.** An ``id`` value containing NUL is ignored. The last event id persists
  across events until a new ``id`` line changes it, and is updated at every blank
  line, even one that dispatches nothing. An empty ``id:`` clears it: that is
  ``None`` here (and a browser then sends no ``Last-Event-ID``).
* **Retry.** ``retry`` counts only when its value is ASCII digits (``" 5"``, ``"-1"``,
  ``"1e3"`` are ignored); :attr:`SSEParser.retry` is then the reconnection time in
  milliseconds.
* **Memory.** An unfinished line and the ``data`` of an unfinished event are
  buffered whole: bounding them is the transport's job.
"""

from __future__ import annotations

import codecs
import contextlib
import re
from dataclasses import dataclass

__all__ = ["DEFAULT_EVENT", "SSEParser", "ServerSentEvent", "parse"]

#: The type of an event whose block has no (or an empty) ``event`` field.
DEFAULT_EVENT = "message"

_LINE_END = re.compile(r"\r\n|\r|\n")
_BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event: what a browser's ``MessageEvent`` would hold."""

    #: The ``data`` lines of the event's block, joined with LF (no trailing LF).
    data: str
    #: The event type: the block's ``event`` value, else ``"message"``.
    event: str = DEFAULT_EVENT
    #: The last event id in effect when the event was dispatched (set by this block
    #: or an earlier one); ``None`` when there is none (never set, or cleared).
    id: str | None = None
    #: The reconnection time in effect when the event was dispatched, in
    #: milliseconds (the last valid ``retry`` so far); ``None`` when none was sent.
    retry: int | None = None


class SSEParser:
    """Incremental parser of one event stream (see the module docstring).

    ``last_event_id`` is the id in effect from an earlier connection of the same
    event source: events of this stream that carry no id get it, as browsers do when
    they reconnect. :meth:`feed` after :meth:`close` raises :class:`RuntimeError`.
    """

    __slots__ = (
        "_after_cr",
        "_closed",
        "_data",
        "_decoder",
        "_event",
        "_id_buffer",
        "_last_event_id",
        "_partial",
        "_retry",
        "_started",
    )

    def __init__(self, *, last_event_id: str | None = None) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False  # some text was decoded: a BOM can no longer come
        self._after_cr = False  # the text so far ends in CR: a LF next ends no line
        self._partial: list[str] = []  # the pieces of the unfinished line
        self._data: list[str] = []  # the data lines of the unfinished block
        self._event = ""
        self._id_buffer = last_event_id or ""
        self._last_event_id = self._id_buffer
        self._retry: int | None = None
        self._closed = False

    @property
    def retry(self) -> int | None:
        """The reconnection time the stream asked for, in milliseconds (``None``: none)."""
        return self._retry

    @property
    def last_event_id(self) -> str | None:
        """The last event id in effect: what a client sends back as ``Last-Event-ID``
        (``None``: send none). Updated at each blank line, not by an unfinished block."""
        return self._last_event_id or None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Parse the next bytes of the stream; return the events they completed, in order."""
        if self._closed:
            raise RuntimeError("the event stream has ended: feed() after close()")
        return self._text(self._decoder.decode(chunk))

    def close(self) -> None:
        """The stream has ended: discard the unfinished line and event. Idempotent."""
        if self._closed:
            return
        self._decoder.decode(b"", final=True)  # a truncated character ends no line
        self._closed = True
        self._partial.clear()
        self._data.clear()
        self._event = ""

    def _text(self, text: str) -> list[ServerSentEvent]:
        if not text:
            return []  # an incomplete character: the state (a CR seen, say) stands
        if not self._started:
            self._started = True
            text = text.removeprefix(_BOM)
        if self._after_cr:
            self._after_cr = False
            if text.startswith("\n"):
                text = text[1:]  # the LF of a CRLF split between chunks
        if not text:
            return []
        events: list[ServerSentEvent] = []
        start = 0
        for match in _LINE_END.finditer(text):
            line = text[start : match.start()]
            if self._partial:
                self._partial.append(line)
                line = "".join(self._partial)
                self._partial.clear()
            event = self._line(line)
            if event is not None:
                events.append(event)
            start = match.end()
        if start < len(text):
            self._partial.append(text[start:])
        self._after_cr = text.endswith("\r")
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self._id_buffer = value
        elif name == "retry" and value.isascii() and value.isdigit():
            # Over Python's limit of digits for int(): ignored.
            with contextlib.suppress(ValueError):
                self._retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        self._last_event_id = self._id_buffer
        if not self._data:
            self._event = ""
            return None
        event = ServerSentEvent(
            "\n".join(self._data),
            self._event or DEFAULT_EVENT,
            self._last_event_id or None,
            self._retry,
        )
        self._data = []
        self._event = ""
        return event


def parse(raw: bytes) -> list[ServerSentEvent]:
    """The events of a complete stream (``raw`` is everything the server sent)."""
    parser = SSEParser()
    events = parser.feed(raw)
    parser.close()
    return events
