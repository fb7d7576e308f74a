"""The SSE encoder, checked against an independent spec-following parser."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.sse_parser import parse_stream
from tornadose import Message
from tornadose.sse import (
    HEARTBEAT,
    InvalidField,
    encode_comment,
    encode_event,
    encode_retry,
)

# Any text that is valid UTF-8 (no lone surrogates).
utf8_text = st.text(st.characters(exclude_categories=("Cs",)))
field_text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n\x00"))


@given(data=utf8_text, event=st.none() | field_text.filter(bool), id_=st.none() | field_text)
def test_any_text_round_trips_as_exactly_one_event(
    data: str, event: str | None, id_: str | None
) -> None:
    """Whatever the text, a conforming client rebuilds it exactly, as one event."""
    parsed = parse_stream(encode_event(data, id=id_, event=event) + encode_event("after"))
    first, second = parsed.events
    assert first.data == data.replace("\r\n", "\n").replace("\r", "\n")
    assert first.type == (event or "message")
    assert first.last_event_id == (id_ or "")
    assert second.data == "after"


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        ("plain", b"data: plain\n\n"),
        ("", b"data: \n\n"),
        (" leading", b"data:  leading\n\n"),
        ("a\nb", b"data: a\ndata: b\n\n"),
        ("a\r\nb\rc", b"data: a\ndata: b\ndata: c\n\n"),
        ("ends\n", b"data: ends\ndata: \n\n"),
        (": not a comment", b"data: : not a comment\n\n"),
    ],
)
def test_data_lines_on_the_wire(data: str, wire: bytes) -> None:
    """The exact bytes for the corner cases of the spec."""
    assert encode_event(data) == wire


@pytest.mark.parametrize("field", ["id", "event"])
@pytest.mark.parametrize("hostile", ["a\nb", "a\rb", "a\r\nb", "nul\x00"])
def test_hostile_field_values_are_refused(field: str, hostile: str) -> None:
    """CR, LF or NUL in ``id``/``event`` would inject fields: refused, not written."""
    with pytest.raises(InvalidField):
        encode_event("x", **{field: hostile})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must not contain"):
        Message("x", **{"id": None, field: hostile})


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True])
def test_retry_must_be_a_non_negative_integer(bad: object) -> None:
    """``retry`` is digits only on the wire."""
    with pytest.raises(InvalidField):
        encode_retry(bad)  # type: ignore[arg-type]


def test_retry_and_comments_parse_as_such() -> None:
    """retry hints set the delay; comments and heartbeats dispatch no event."""
    parsed = parse_stream(
        encode_retry(3000) + HEARTBEAT + encode_comment("two\nlines") + encode_event("x")
    )
    assert parsed.retry == 3000
    assert [e.data for e in parsed.events] == ["x"]
    assert parsed.comments == [" heartbeat", " two", " lines"]
