"""SSE conformance: what tornadose writes is read back exactly by a spec-following client.

The oracle is ``tests/sse_parser.py``, written from the WHATWG HTML "Server-sent
events" section and sharing no code with tornadose. Sections:

1. the oracle itself, on the spec's own examples;
2. properties (hypothesis): any text, any sequence of events, any JSON value;
3. every corner case of design-notes section 3, with the exact bytes;
4. refusals: hostile fields, bad ``retry``, text that is not UTF-8;
5. response headers on both adapters' real responses;
6. end to end: a corpus of nasty payloads through a real Tornado server and a real
   uvicorn server, read as raw bytes and parsed by the oracle and by httpx-sse.

The parser tests of sections 1 to 3 run twice: on the oracle, and on the library's own
parser (``tornadose.wire.sse_parser``, used by ``tornadose.client``) behind the oracle's
interface (:class:`LibraryParser`); section 6 feeds the library parser the same bytes.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from httpx_sse import EventSource as HttpxSSEEventSource
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.middleware.gzip import GZipMiddleware

from tests.conftest import TornadoStarter, UvicornStarter, wait_until
from tests.sse_parser import ParsedEvent, ParseResult, SSEParser, parse_stream
from tornadose import Message, QueueStore, UnencodableMessage
from tornadose.adapters.asgi import EventSourceApp
from tornadose.adapters.tornado import EventSource
from tornadose.core.history import RESET_EVENT, RESUMED_EVENT
from tornadose.delivery.streams import SSEOptions
from tornadose.wire.sse import (
    HEARTBEAT,
    InvalidField,
    encode_event,
    encode_retry,
)
from tornadose.wire.sse_parser import SSEParser as LibrarySSEParser

#: Seconds any single network operation may take.
TIMEOUT = 5.0
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"


def comment(text: str) -> bytes:
    """``text`` as SSE comment lines, one ``:`` line per line of it, then a blank line:
    test input (tornadose itself writes no comment but its heartbeat)."""
    return "".join(f": {line}\n" for line in re.split(r"\r\n|\r|\n", text)).encode() + b"\n"


def normalised(text: str) -> str:
    """``text`` as a conforming client rebuilds it: CR and CRLF become LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def as_json_value(value: Any) -> Any:
    """``value`` as it comes back from JSON: NaN and infinities are ``null`` by design."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: as_json_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [as_json_value(item) for item in value]
    return value


def assert_same_value(got: Any, expected: Any) -> None:
    """Equal, and of the same JSON types (``1`` is not ``1.0`` nor ``true``)."""
    assert got == expected
    assert json.dumps(got) == json.dumps(expected)


def assert_payload(payload: Any, data: str) -> None:
    """``data`` (an event's data) is ``payload``: a str as is, anything else as JSON."""
    if isinstance(payload, str):
        assert data == normalised(payload)
    else:
        assert_same_value(json.loads(data), as_json_value(payload))


# -- the parsers under test ----------------------------------------------------------------


class LibraryParser:
    """``tornadose.wire.sse_parser.SSEParser`` behind the oracle's interface, so that the same
    tests run on both. It reports no comments (the library parser keeps none)."""

    def __init__(self) -> None:
        self._parser = LibrarySSEParser()
        self.events: list[ParsedEvent] = []

    def feed(self, raw: bytes) -> list[ParsedEvent]:
        dispatched = [ParsedEvent(e.event, e.data, e.id or "") for e in self._parser.feed(raw)]
        self.events.extend(dispatched)
        return dispatched

    def close(self) -> ParseResult:
        self._parser.close()
        last_event_id = self._parser.last_event_id or ""
        return ParseResult(self.events, self._parser.retry, [], last_event_id)


Parser = type[SSEParser] | type[LibraryParser]
#: Run a test on the oracle and on the library's parser.
BOTH_PARSERS = pytest.mark.parametrize(
    "parser", [SSEParser, LibraryParser], ids=["oracle", "library-parser"]
)


def parse_with(parser: Parser, raw: bytes) -> ParseResult:
    """Parse a complete stream with a new ``parser``."""
    instance = parser()
    instance.feed(raw)
    return instance.close()


# -- 1. the oracle follows the spec --------------------------------------------------------


def events_of(raw: bytes, parser: Parser = SSEParser) -> list[tuple[str, str, str]]:
    """(type, data, lastEventId) of every event ``parser`` dispatches for ``raw``."""
    return [(e.type, e.data, e.last_event_id) for e in parse_with(parser, raw).events]


def httpx_sse_events(chunks: Iterable[bytes]) -> list[tuple[str, str, str]]:
    """(type, data, id) of the events httpx-sse's decoder finds in ``chunks``."""
    response = httpx.Response(200, headers={"content-type": SSE_CONTENT_TYPE}, content=chunks)
    return [(e.event, e.data, e.id) for e in HttpxSSEEventSource(response).iter_sse()]


@BOTH_PARSERS
def test_oracle_on_the_spec_example_with_ids(parser: Parser) -> None:
    """The spec's example: ``id`` without a value resets it; an unfinished event is dropped."""
    raw = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\n"
    raw += b"data:  third event\n"
    assert events_of(raw, parser) == [
        ("message", "first event", "1"),
        ("message", "second event", ""),
    ]


@BOTH_PARSERS
def test_oracle_on_the_spec_example_with_empty_data(parser: Parser) -> None:
    """The spec's example: ``data`` alone is an empty line of data; the last block is dropped."""
    assert events_of(b"data\n\ndata\ndata\n\ndata:", parser) == [
        ("message", "", ""),
        ("message", "\n", ""),
    ]


@BOTH_PARSERS
def test_oracle_removes_exactly_one_space(parser: Parser) -> None:
    """The spec's example: ``data:test`` and ``data: test`` are the same; a second space stays."""
    assert events_of(b"data:test\n\ndata: test\n\ndata:  test\n\n", parser) == [
        ("message", "test", ""),
        ("message", "test", ""),
        ("message", " test", ""),
    ]


@BOTH_PARSERS
def test_oracle_strips_one_leading_bom_only(parser: Parser) -> None:
    """One leading BOM is stripped; a second one makes the first field unknown."""
    assert events_of(b"\xef\xbb\xbfdata: x\n\n", parser) == [("message", "x", "")]
    assert events_of(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n", parser) == []


@BOTH_PARSERS
def test_oracle_ignores_unknown_fields_and_ids_with_nul(parser: Parser) -> None:
    """Unknown fields (names are case-sensitive) and ids containing NUL are ignored."""
    raw = b"id: 1\nData: no\nfoo: bar\ndata: x\n\nid: 2\x00\ndata: y\n\n"
    assert events_of(raw, parser) == [("message", "x", "1"), ("message", "y", "1")]


@pytest.mark.parametrize(
    ("line", "retry"),
    [
        (b"retry: 1500", 1500),
        (b"retry:0", 0),
        (b"retry: -1", None),
        (b"retry: +1", None),
        (b"retry:  5", None),  # the value is " 5"
        (b"retry: 1e3", None),
        (b"retry: 1_000", None),
        ("retry: \u0661\u0662".encode(), None),  # Arabic-Indic digits are not ASCII digits
        (b"retry:", None),
    ],
)
@BOTH_PARSERS
def test_oracle_takes_retry_only_when_all_ascii_digits(
    parser: Parser, line: bytes, retry: int | None
) -> None:
    """``retry`` sets the reconnection time only if its value is all ASCII digits."""
    assert parse_with(parser, line + b"\n\n").retry == retry


@BOTH_PARSERS
def test_oracle_keeps_the_last_id_across_events(parser: Parser) -> None:
    """The last event id persists across events, and is updated even by a data-less block."""
    result = parse_with(parser, b"id: 1\ndata: a\n\ndata: b\n\nid: 2\n\nid: 3\ndata: c\n")
    assert [(e.data, e.last_event_id) for e in result.events] == [("a", "1"), ("b", "1")]
    assert result.last_event_id == "2"  # the unfinished block with id 3 never counted


@BOTH_PARSERS
def test_oracle_resets_the_event_type_at_each_blank_line(parser: Parser) -> None:
    """An event type applies to one block only, dispatched or not."""
    raw = b"event: e\ndata: a\n\ndata: b\n\nevent: lost\n\ndata: c\n\n"
    assert [e.type for e in parse_with(parser, raw).events] == ["e", "message", "message"]


@BOTH_PARSERS
def test_oracle_joins_a_crlf_split_across_chunks(parser: Parser) -> None:
    """A CR at the end of one chunk and a LF at the start of the next are one line end."""
    instance = parser()
    for chunk in (b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"):
        instance.feed(chunk)
    assert [e.data for e in instance.close().events] == ["a\nb"]


@BOTH_PARSERS
def test_oracle_decodes_utf8_split_across_chunks(parser: Parser) -> None:
    """A multi-byte character split between chunks is decoded whole."""
    raw = "data: é🌪\n\n".encode()
    instance = parser()
    for i in range(len(raw)):
        instance.feed(raw[i : i + 1])
    assert [e.data for e in instance.close().events] == ["é🌪"]


# -- 2. properties ---------------------------------------------------------------------------

#: Pieces of text that matter to the wire format, mixed into generated text.
NASTY_PIECES = [
    "\r",
    "\n",
    "\r\n",
    "\n\r",
    "\r\r\n",
    " ",
    "  ",
    ":",
    ": ",
    "\ufeff",
    "\x00",
    "data:",
    "data: x\n\n",
    "id: 1",
    "event: evil",
    "retry: 1",
    "\u2028",
    "\x85",
    "\x0b\x0c\x1c",
    "é",
    "🌪️",
    "\u202e",
    "L" * 70_000,  # a very long line
]
#: Any text that is valid UTF-8 (no lone surrogates), with nasty pieces mixed in.
utf8_text = st.lists(
    st.sampled_from(NASTY_PIECES) | st.text(st.characters(codec="utf-8")), max_size=12
).map("".join)
#: Text allowed in ``id``/``event``: valid UTF-8 without CR, LF or NUL.
field_text = st.lists(
    st.sampled_from([" ", ":", ": ", "\ufeff", "data:", "é", "<", "\u2028"])
    | st.text(st.characters(codec="utf-8", exclude_characters="\r\n\x00")),
    max_size=6,
).map("".join)
#: Any value ``json`` can represent (floats include NaN and infinities).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(st.characters(codec="utf-8")),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(st.characters(codec="utf-8")), children, max_size=5)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(data=utf8_text, event=st.none() | field_text, id_=st.none() | field_text)
@BOTH_PARSERS
def test_any_text_round_trips_as_exactly_one_event(
    parser: Parser, data: str, event: str | None, id_: str | None
) -> None:
    """Whatever the text, a conforming client rebuilds it exactly, as one event."""
    raw = encode_event(data, id=id_, event=event) + encode_event("next")
    parsed = parse_with(parser, raw)
    assert parsed.events == [
        ParsedEvent(event or "message", normalised(data), id_ or ""),
        ParsedEvent("message", "next", id_ or ""),  # nothing leaked; the id persists
    ]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(utf8_text, st.none() | field_text, st.none() | field_text), max_size=8))
@BOTH_PARSERS
def test_sequences_of_events_round_trip_in_order(
    parser: Parser, sequence: list[tuple[str, str | None, str | None]]
) -> None:
    """Events arrive in order; an event without ``id`` keeps the previous one."""
    raw = b"".join(encode_event(data, id=id_, event=event) for data, id_, event in sequence)
    expected, last_id = [], ""
    for data, id_, event in sequence:
        last_id = last_id if id_ is None else id_
        expected.append(ParsedEvent(event or "message", normalised(data), last_id))
    result = parse_with(parser, raw)
    assert result.events == expected
    assert result.last_event_id == last_id


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.just("event"), utf8_text)
        | st.tuples(st.just("comment"), utf8_text)
        | st.tuples(st.just("heartbeat"), st.just(""))
        | st.tuples(st.just("retry"), st.integers(min_value=0, max_value=10**12)),
        max_size=10,
    )
)
@BOTH_PARSERS
def test_comments_heartbeats_and_retry_hints_never_dispatch(
    parser: Parser, items: list[tuple[str, Any]]
) -> None:
    """Only events dispatch; comments (any text), heartbeats and retry hints never do."""
    encoders: dict[str, Callable[[Any], bytes]] = {
        "event": encode_event,
        "comment": comment,
        "heartbeat": lambda _: HEARTBEAT,
        "retry": encode_retry,
    }
    result = parse_with(parser, b"".join(encoders[kind](value) for kind, value in items))
    assert [e.data for e in result.events] == [normalised(v) for k, v in items if k == "event"]
    retries = [value for kind, value in items if kind == "retry"]
    assert result.retry == (retries[-1] if retries else None)


@settings(max_examples=50, deadline=None)
@given(raw_events=st.lists(utf8_text, min_size=1, max_size=4), data=st.data())
@BOTH_PARSERS
def test_chunk_boundaries_do_not_change_what_is_parsed(
    parser: Parser, raw_events: list[str], data: st.DataObject
) -> None:
    """However the network splits the bytes (mid-CRLF, mid-character), the events are the same."""
    raw = b"".join(encode_event(text, id=str(i)) for i, text in enumerate(raw_events))
    cuts = sorted(data.draw(st.sets(st.integers(0, len(raw)), max_size=20)))
    instance = parser()
    for start, end in zip([0, *cuts], [*cuts, len(raw)], strict=True):
        instance.feed(raw[start:end])
    assert instance.close().events == parse_stream(raw).events  # the oracle, whole


@settings(max_examples=200, deadline=None)
@given(value=json_values, event=st.none() | field_text)
@BOTH_PARSERS
def test_json_values_round_trip_through_sse(parser: Parser, value: Any, event: str | None) -> None:
    """Any JSON-able message arrives as one event whose data decodes to the value."""
    message = Message(value, id="e-1", event=event)
    (parsed,) = parse_with(parser, message.sse).events
    assert (parsed.type, parsed.last_event_id) == (event or "message", "e-1")
    assert_payload(value, parsed.data)


@settings(max_examples=200, deadline=None)
@given(value=json_values, event=st.none() | field_text)
def test_json_values_round_trip_through_the_websocket_frame(value: Any, event: str | None) -> None:
    """Any JSON-able message is the ``data`` of its WebSocket frame (a str stays a str)."""
    frame = json.loads(Message(value, id="e-1", event=event).websocket)
    assert_same_value(frame.pop("data"), as_json_value(value))
    assert frame == ({"id": "e-1"} if event is None else {"id": "e-1", "event": event})


# -- 3. corner cases, byte for byte --------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        pytest.param("plain", b"data: plain\n\n", id="one-space-after-colon"),
        pytest.param("", b"data: \n\n", id="empty-string"),
        pytest.param(" leading", b"data:  leading\n\n", id="leading-space-kept"),
        pytest.param("   ", b"data:    \n\n", id="only-spaces"),
        pytest.param("trailing  ", b"data: trailing  \n\n", id="trailing-spaces"),
        pytest.param("a\nb", b"data: a\ndata: b\n\n", id="split-on-lf"),
        pytest.param("a\rb", b"data: a\ndata: b\n\n", id="split-on-cr"),
        pytest.param("a\r\nb", b"data: a\ndata: b\n\n", id="split-on-crlf"),
        pytest.param("a\n\rb", b"data: a\ndata: \ndata: b\n\n", id="lf-cr-is-two-breaks"),
        pytest.param("a\r\r\nb", b"data: a\ndata: \ndata: b\n\n", id="cr-crlf-is-two-breaks"),
        pytest.param("a\n\nb", b"data: a\ndata: \ndata: b\n\n", id="blank-line-inside"),
        pytest.param("ends\n", b"data: ends\ndata: \n\n", id="trailing-newline"),
        pytest.param("ends\r", b"data: ends\ndata: \n\n", id="trailing-cr"),
        pytest.param("\n", b"data: \ndata: \n\n", id="only-a-newline"),
        pytest.param(": not a comment", b"data: : not a comment\n\n", id="colon-first"),
        pytest.param("id: 1\nevent: x", b"data: id: 1\ndata: event: x\n\n", id="field-lookalike"),
        pytest.param("a\x00b", b"data: a\x00b\n\n", id="nul-in-data"),
        pytest.param("\ufeffbom", b"data: \xef\xbb\xbfbom\n\n", id="bom-in-data"),
        pytest.param(
            "a\u2028b\x85c\x0bd\x0ce",
            "data: a\u2028b\x85c\x0bd\x0ce\n\n".encode(),
            id="other-unicode-breaks-are-not-line-ends",
        ),
    ],
)
@BOTH_PARSERS
def test_data_on_the_wire(parser: Parser, data: str, wire: bytes) -> None:
    """The exact bytes for each corner case, and a conforming client reads the text back."""
    assert encode_event(data) == wire
    assert events_of(wire, parser) == [("message", normalised(data), "")]


@pytest.mark.parametrize(
    ("fields", "wire", "parsed"),
    [
        pytest.param(
            {"id": "7", "event": "update"},
            b"event: update\nid: 7\ndata: x\n\n",
            ("update", "x", "7"),
            id="event-id-data",
        ),
        pytest.param({"id": " 7"}, b"id:  7\ndata: x\n\n", ("message", "x", " 7"), id="id-space"),
        pytest.param({"id": ""}, b"id: \ndata: x\n\n", ("message", "x", ""), id="empty-id"),
        pytest.param(
            {"event": " a:b"}, b"event:  a:b\ndata: x\n\n", (" a:b", "x", ""), id="event-colon"
        ),
        pytest.param(
            {"event": ""}, b"event: \ndata: x\n\n", ("message", "x", ""), id="empty-event"
        ),
        pytest.param(
            {"retry": 1500}, b"retry: 1500\ndata: x\n\n", ("message", "x", ""), id="retry"
        ),
    ],
)
@BOTH_PARSERS
def test_fields_on_the_wire(
    parser: Parser, fields: dict[str, Any], wire: bytes, parsed: tuple[str, ...]
) -> None:
    """``event``, ``id`` and ``retry`` lines: exact bytes, one space, read back as given."""
    assert encode_event("x", **fields) == wire
    assert events_of(wire, parser) == [parsed]


def test_message_sse_bytes() -> None:
    """A published message is ``event:``, ``id:`` and ``data:`` lines, its payload as JSON."""
    message = Message({"a": [1, None], "b": "x\ny"}, id="e-1", event="update")
    assert message.sse == b'event: update\nid: e-1\ndata: {"a":[1,null],"b":"x\\ny"}\n\n'


@BOTH_PARSERS
def test_comments_and_heartbeat_on_the_wire(parser: Parser) -> None:
    """Comments are ``:`` lines (a text of several lines is one ``:`` line each, so no
    field sneaks in); the heartbeat is one; none dispatches."""
    assert HEARTBEAT == b": heartbeat\n\n"
    assert comment("a\rdata: evil\r\n") == b": a\n: data: evil\n: \n\n"
    result = parse_with(parser, HEARTBEAT + comment("a\rdata: evil\r\n"))
    assert result.events == []
    if parser is SSEParser:  # only the oracle keeps comments
        assert result.comments == [" heartbeat", " a", " data: evil", " "]


@BOTH_PARSERS
def test_retry_hint_on_the_wire(parser: Parser) -> None:
    """A lone ``retry`` hint is digits only and sets the client's reconnection time."""
    assert encode_retry(0) == b"retry: 0\n\n"
    assert encode_retry(3000) == b"retry: 3000\n\n"
    assert parse_with(parser, encode_retry(3000)).retry == 3000


@BOTH_PARSERS
def test_httpx_sse_sees_phantom_events_on_blank_lines_without_data(parser: Parser) -> None:
    """After an event with an id, a heartbeat or a retry hint dispatches no event."""
    raw = encode_event("x", id="1") + HEARTBEAT + encode_retry(1000)
    assert events_of(raw, parser) == [("message", "x", "1")]
    # httpx-sse 0.4.3 (SSEDecoder.decode) disagrees, wrongly: once it has seen an id
    # (or a retry), it dispatches an event at every blank line, even with an empty
    # data buffer, where the spec says "If the data buffer is an empty string, set the
    # data buffer and the event type buffer to the empty string and return". Here it
    # yields two extra events with data "". Python clients built on httpx-sse must
    # skip those (or count them) when reading a stream with heartbeats. It agrees on
    # the real event:
    assert [e for e in httpx_sse_events([raw]) if e[1]] == [("message", "x", "1")]


# -- 4. refusals ---------------------------------------------------------------------------

HOSTILE = [
    pytest.param("a\nb", id="lf"),
    pytest.param("a\rb", id="cr"),
    pytest.param("a\r\nb", id="crlf"),
    pytest.param("up\n\ndata: injected", id="event-injection"),
    pytest.param("trailing\n", id="trailing-lf"),
    pytest.param("nul\x00", id="nul"),
    pytest.param("\x00", id="only-nul"),
]


@pytest.mark.parametrize("field", ["id", "event"])
@pytest.mark.parametrize("hostile", HOSTILE)
def test_encoder_refuses_hostile_field_values(field: str, hostile: str) -> None:
    """CR, LF or NUL in ``id``/``event`` would inject fields: refused, never written."""
    with pytest.raises(InvalidField, match="must not contain"):
        encode_event("x", **{field: hostile})  # type: ignore[arg-type]
    with pytest.raises(InvalidField, match="must not contain"):
        Message("x", **{"id": None, field: hostile})


def test_refusals_are_value_errors() -> None:
    """Code catching ``ValueError`` around ``submit()`` catches every refusal here."""
    assert issubclass(InvalidField, ValueError)
    assert issubclass(UnencodableMessage, ValueError)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_submit_refuses_a_hostile_event_and_publishes_nothing(hostile: str) -> None:
    """``store.submit(..., event=...)`` with CR, LF or NUL raises, and nobody gets anything."""
    store = QueueStore()
    subscription = store.subscribe()
    with pytest.raises(InvalidField):
        store.submit("x", event=hostile)
    assert (len(subscription), store.snapshot()["published"], len(store.history)) == (0, 0, 0)
    assert store.submit("next").id == f"{store.epoch}-1"  # no id was used up


def test_submit_refuses_an_event_name_that_is_not_utf8() -> None:
    """An event name with a lone surrogate is refused up front, and nothing is published."""
    store = QueueStore()
    subscription = store.subscribe()
    with pytest.raises((InvalidField, UnencodableMessage)):
        store.submit("x", event="bad\ud800")
    assert (len(subscription), store.snapshot()["published"], len(store.history)) == (0, 0, 0)
    assert store.submit("next").id == f"{store.epoch}-1"


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True, False, None])
def test_retry_must_be_a_non_negative_integer(bad: Any) -> None:
    """``retry`` is digits only on the wire: anything else is refused, at startup for a stream."""
    with pytest.raises(InvalidField):
        encode_retry(bad)
    if bad is not None:  # encode_event(retry=None) means no retry line
        with pytest.raises(InvalidField):
            encode_event("x", retry=bad)
        with pytest.raises(InvalidField):
            SSEOptions(retry=bad)
        with pytest.raises(InvalidField):
            EventSourceApp(QueueStore(), retry=bad)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"\xff\xfe", id="bytes-not-utf8"),
        pytest.param(b"caf\xe9", id="bytes-latin1"),
        pytest.param(b"\xc3", id="bytes-truncated"),
        pytest.param(b"\xed\xa0\x80", id="bytes-encoded-surrogate"),
        pytest.param(bytearray(b"\x80"), id="bytearray"),
        pytest.param("\ud800", id="str-lone-surrogate"),
        pytest.param("ok\udfff", id="str-trailing-surrogate"),
        pytest.param({"k": "\ud800"}, id="json-with-surrogate"),
    ],
)
def test_payload_that_is_not_utf8_is_refused(payload: Any) -> None:
    """A payload that cannot be sent as UTF-8 is refused by ``submit`` and nothing is published."""
    with pytest.raises(UnencodableMessage):
        Message(payload, id=None)
    store = QueueStore()
    subscription = store.subscribe()
    with pytest.raises(UnencodableMessage):
        store.submit(payload)
    assert (len(subscription), store.snapshot()["published"]) == (0, 0)
    assert store.submit("next").id == f"{store.epoch}-1"


def test_encoder_refuses_text_that_is_not_utf8() -> None:
    """The low-level encoder raises on a lone surrogate rather than write bad UTF-8."""
    with pytest.raises(UnicodeEncodeError):
        encode_event("\ud800")


# -- servers and raw clients ---------------------------------------------------------------

Serve = Callable[..., Awaitable[str]]


@pytest.fixture(params=["tornado", "asgi"])
def serve(
    request: pytest.FixtureRequest,
    tornado_server: TornadoStarter,
    uvicorn_server: UvicornStarter,
) -> Serve:
    """``url = await serve(store, compress=False, **options)``: an SSE endpoint of ``store``
    on a real Tornado server, or a real uvicorn server running ``EventSourceApp``.

    ``compress=True`` switches on the framework's own response compression (Tornado's
    ``compress_response``; Starlette's ``GZipMiddleware`` around the app)."""

    async def start(store: QueueStore, *, compress: bool = False, **options: Any) -> str:
        if request.param == "tornado":
            rules = [(r"/events", EventSource, {"store": store, **options})]
            return await tornado_server(rules, compress_response=compress) + "/events"
        app: Any = EventSourceApp(store, **options)
        if compress:
            app = GZipMiddleware(app, minimum_size=1)
        return await uvicorn_server(app) + "/events"

    return start


class RawStream:
    """The raw body of an SSE response, fed to the oracle as it arrives."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.chunks: list[bytes] = []
        self.parser = SSEParser()
        self._raw = response.aiter_raw()

    async def read(self, count: int) -> list[ParsedEvent]:
        """Read until the oracle has dispatched ``count`` events; fail after 10 s."""
        async with asyncio.timeout(2 * TIMEOUT):
            while len(self.parser.events) < count:
                chunk = await anext(self._raw)
                self.chunks.append(chunk)
                self.parser.feed(chunk)
        return self.parser.events


@asynccontextmanager
async def raw_sse(url: str, **headers: str) -> AsyncIterator[RawStream]:
    """GET ``url`` with httpx and expose the undecoded body (no httpx-sse involved)."""
    async with (
        httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        yield RawStream(response)


# -- 5. response headers -------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "framework-compression-on"])
async def test_response_headers_and_identity_body(serve: Serve, compress: bool) -> None:
    """SSE headers, no length, and no compression even for a gzip-accepting client."""
    store = QueueStore()
    url = await serve(store, heartbeat=0, compress=compress)
    async with raw_sse(url, **{"Accept-Encoding": "gzip, deflate"}) as stream:
        headers = stream.response.headers
        assert stream.response.status_code == 200
        assert headers["content-type"] == SSE_CONTENT_TYPE
        assert headers["cache-control"] == "no-cache"
        assert headers["x-accel-buffering"] == "no"
        assert "content-length" not in headers
        assert headers.get("content-encoding", "identity") == "identity"
        await wait_until(lambda: len(store.subscribers) == 1)
        published = store.submit("é" * 2000)  # long enough for any compressor
        await stream.read(1)
    assert b"".join(stream.chunks) == published.message.sse


# -- 6. end to end -------------------------------------------------------------------------

#: (name, payload, event type) published in this order.
CORPUS: list[tuple[str, Any, str | None]] = [
    ("multi-line", "line one\nline two\nline three", None),
    ("cr-only", "cr\ronly\r", None),
    ("crlf", "crlf\r\nline\r\n", "custom"),
    ("mixed-breaks", "\n\r\r\n\n\r", None),
    ("blank-lines-inside", "a\n\n\nb", None),
    ("leading-trailing-spaces", "  two leading, two trailing  ", None),
    ("one-space", " ", None),
    ("colon-first", ": not a comment", None),
    ("colons", "::a:b: c:", "with: colon"),
    ("field-lookalike", "data: fake\n\nid: 666\nevent: evil\nretry: 1\n\n", None),
    ("accents", "héllo wörld ✓ 日本語", "ünïcödé"),
    ("emoji", "🌪️ 👩\u200d👩\u200d👧\u200d👦 🏳️\u200d🌈", None),
    ("rtl", "مرحبا بالعالم \u202e\u05e9\u05dc\u05d5\u05dd", " spaced event"),
    ("not-line-breaks", "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg", None),
    ("bom-and-nul", "\ufeffbom\x00nul", None),
    ("one-megabyte-line", "a é 🌪 : data: " * 55_556, None),
    ("empty", "", None),
    ("just-a-newline", "\n", None),
    ("json-object", {"text": "multi\nline\r\n", "n": [1, 2.5, None, True], "é": {}}, "json"),
    ("json-empty-list", [], None),
    ("json-big-float", -1.5e300, None),
    ("json-nan", float("nan"), None),
    ("json-null", None, None),
    ("last", "the end", None),
]
BAD_LAST_EVENT_ID = "not-an-id <script>"


def assert_corpus(events: list[ParsedEvent], ids: list[str | None]) -> None:
    """``events`` are the corpus, in order, each with its payload, type and id."""
    assert len(events) == len(CORPUS)
    for (name, payload, event_type), event, id_ in zip(CORPUS, events, ids, strict=True):
        assert (event.type, event.last_event_id) == (event_type or "message", id_), name
        assert_payload(payload, event.data)


def assert_httpx_sse_agrees(stream: RawStream) -> None:
    """httpx-sse's decoder, and the library's parser, find the same events in the same
    raw bytes, cut where the network cut them."""
    ours = [(e.type, e.data, e.last_event_id) for e in stream.parser.events]
    assert httpx_sse_events(stream.chunks) == ours
    library = LibraryParser()
    for chunk in stream.chunks:
        library.feed(chunk)
    assert library.events == stream.parser.events


async def test_live_corpus_arrives_exactly_after_a_reset(serve: Serve) -> None:
    """A client with a bad Last-Event-ID gets ``tornadose.reset``, then every payload exactly."""
    store = QueueStore()
    url = await serve(store, heartbeat=0)
    before = store.submit("published before the client came")
    async with raw_sse(url, **{"Last-Event-ID": BAD_LAST_EVENT_ID}) as stream:
        await wait_until(lambda: len(store.subscribers) == 1)
        ids = [store.submit(payload, event=event).id for _, payload, event in CORPUS]
        reset, *events = await stream.read(1 + len(CORPUS))
    assert (reset.type, reset.last_event_id) == (RESET_EVENT, before.id)
    assert json.loads(reset.data) == {"reason": "malformed_id", "last_event_id": BAD_LAST_EVENT_ID}
    assert_corpus(events, ids)
    assert stream.parser.last_event_id == ids[-1]
    assert_httpx_sse_agrees(stream)


async def test_replayed_corpus_arrives_exactly_after_resumed(serve: Serve) -> None:
    """A client resuming with ``?last_event_id=`` gets ``tornadose.resumed``, the replay, live."""
    store = QueueStore()
    url = await serve(store, heartbeat=0)
    first = store.submit("seen by the client before it reconnected")
    ids = [store.submit(payload, event=event).id for _, payload, event in CORPUS]
    async with raw_sse(f"{url}?last_event_id={first.id}") as stream:
        await wait_until(lambda: len(store.subscribers) == 1)
        live = store.submit("live", event="after-replay")
        resumed, *events, last = await stream.read(2 + len(CORPUS))
    assert (resumed.type, resumed.last_event_id) == (RESUMED_EVENT, first.id)
    assert json.loads(resumed.data) == {"after": first.id, "replayed": len(CORPUS)}
    assert_corpus(events, ids)
    assert last == ParsedEvent("after-replay", "live", str(live.id))
    assert_httpx_sse_agrees(stream)
