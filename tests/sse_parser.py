"""An independent parser of the SSE wire format, written from the WHATWG spec.

Used only in tests, to check what tornadose writes. It follows the spec's
"Interpreting an event stream" algorithm (HTML Living Standard, section 9.2.6) step by
step and shares no code with tornadose:

* the stream is decoded with "UTF-8 decode": one leading BOM is stripped, invalid
  bytes become U+FFFD (so a server writing bad UTF-8 shows up as changed data);
* lines end in CRLF, LF or CR, also when a CR and its LF arrive in separate chunks;
  nothing else (U+2028, U+0085, form feed...) ends a line;
* a line starting with ``:`` is a comment; ``field:value`` has exactly one leading
  space removed from the value; a line without a colon is a field with an empty value;
* ``event`` sets the type, ``data`` appends the value and a LF, ``id`` sets the last
  event id buffer unless the value contains NUL, ``retry`` sets the reconnection time
  only if the value is all ASCII digits; other fields are ignored;
* a blank line dispatches: the last event id string takes the buffer's value (even if
  nothing is dispatched); an empty data buffer dispatches nothing; otherwise one final
  LF is removed and the event is dispatched with type ``message`` if none was set;
* at the end of the stream, an unfinished event is discarded.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field

__all__ = ["ParseResult", "ParsedEvent", "SSEParser", "parse_stream"]

_LINE_END = re.compile(r"\r\n|\r|\n")
_ASCII_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True)
class ParsedEvent:
    """A dispatched ``MessageEvent``: its ``type``, ``data`` and ``lastEventId``."""

    type: str
    data: str
    last_event_id: str


@dataclass
class ParseResult:
    """Everything a client learnt from a stream."""

    events: list[ParsedEvent]
    #: The reconnection time set by the last valid ``retry`` field (``None``: none).
    retry: int | None
    #: The text after the ``:`` of every comment line (not part of the spec's model).
    comments: list[str]
    #: The event source's last event id string: what it sends back as ``Last-Event-ID``.
    last_event_id: str = ""


@dataclass
class SSEParser:
    """Incremental parser: :meth:`feed` it bytes as they arrive, then :meth:`close`."""

    events: list[ParsedEvent] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    retry: int | None = None
    last_event_id: str = ""
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    _started: bool = False  # the first character (a possible BOM) was seen
    _after_cr: bool = False  # the text so far ended in CR: a LF next ends no line
    _line: str = ""  # the unfinished line
    _data: str = ""
    _event_type: str = ""
    _id_buffer: str = ""
    _closed: bool = False

    def feed(self, raw: bytes) -> list[ParsedEvent]:
        """Parse the next bytes of the stream; return the events they dispatched."""
        assert not self._closed, "the stream has ended"
        return self._lines(self._decoder.decode(raw))

    def close(self) -> ParseResult:
        """End of stream: flush the decoder and discard any unfinished event."""
        self._lines(self._decoder.decode(b"", final=True))
        self._closed = True
        self._line = self._data = self._event_type = ""
        return ParseResult(self.events, self.retry, self.comments, self.last_event_id)

    def _lines(self, text: str) -> list[ParsedEvent]:
        if not text:
            return []
        if not self._started:
            self._started = True
            text = text.removeprefix("\ufeff")
        if self._after_cr and text.startswith("\n"):
            text = text[1:]  # the LF of a CRLF split across chunks
        if not text:
            return []
        self._after_cr = text.endswith("\r")
        *complete, self._line = _LINE_END.split(self._line + text)
        dispatched: list[ParsedEvent] = []
        for line in complete:
            event = self._process(line)
            if event is not None:
                dispatched.append(event)
        self.events.extend(dispatched)
        return dispatched

    def _process(self, line: str) -> ParsedEvent | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments.append(line[1:])
            return None
        name, colon, value = line.partition(":")
        if colon:
            value = value.removeprefix(" ")
        if name == "event":
            self._event_type = value
        elif name == "data":
            self._data += value + "\n"
        elif name == "id":
            if "\x00" not in value:
                self._id_buffer = value
        elif name == "retry" and _ASCII_DIGITS.fullmatch(value):
            self.retry = int(value)
        # any other field is ignored
        return None

    def _dispatch(self) -> ParsedEvent | None:
        self.last_event_id = self._id_buffer
        if self._data == "":
            self._event_type = ""
            return None
        event = ParsedEvent(
            self._event_type or "message", self._data.removesuffix("\n"), self.last_event_id
        )
        self._data = self._event_type = ""
        return event


def parse_stream(raw: bytes) -> ParseResult:
    """Parse a complete stream (``raw`` is everything the server sent)."""
    parser = SSEParser()
    parser.feed(raw)
    return parser.close()
