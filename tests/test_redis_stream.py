"""The stream layout of a RedisStore channel and the decisions that read it (no Redis).

:mod:`tornadose.backends.redis.layout` holds what needs no I/O: parsing entry ids, turning a
stream entry into a message (and refusing an invalid one), and the two gap checks
(``replay_gap`` for a resuming client, ``live_gap`` for a reader). Each is checked
against a table of cases here; what Redis itself does is in ``test_redis_store.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.clients import Reading
from tornadose.backends.redis.layout import (
    ZERO,
    InvalidEntry,
    StreamId,
    decode_entry,
    entry_fields,
    live_gap,
    replay_gap,
)
from tornadose.core.message import Message
from tornadose.core.reasons import ResetReason
from tornadose.stores import QueueStore

MAX = 2**64 - 1


def accept(payload: Any) -> Any:
    """A ``validate`` without a schema: every payload as it is."""
    return payload


# -- StreamId -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("0-0", StreamId(0, 0), id="zero"),
        pytest.param("1526919030474-55", StreamId(1526919030474, 55), id="typical"),
        pytest.param(f"{MAX}-{MAX}", StreamId(MAX, MAX), id="largest"),
        pytest.param("007-01", StreamId(7, 1), id="leading-zeros"),
        pytest.param(b"5-6", StreamId(5, 6), id="bytes"),
    ],
)
def test_stream_id_parses_entry_ids(text: str | bytes, expected: StreamId) -> None:
    """``<ms>-<seq>`` with two unsigned 64-bit numbers parses, from str or bytes."""
    assert StreamId.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("15", id="no-sequence"),
        pytest.param("15-", id="empty-sequence"),
        pytest.param("-15", id="empty-ms"),
        pytest.param("1-2-3", id="three-parts"),
        pytest.param(" 1-2", id="leading-space"),
        pytest.param("1-2 ", id="trailing-space"),
        pytest.param("1-2\n", id="trailing-newline"),
        pytest.param("+1-2", id="sign"),
        pytest.param("1.5-2", id="decimal"),
        pytest.param("a-1", id="letters"),
        pytest.param("\uff11-2", id="fullwidth-digit"),
        pytest.param("*", id="star"),
        pytest.param("$", id="dollar"),
        pytest.param(f"{MAX + 1}-0", id="ms-over-64-bits"),
        pytest.param(f"0-{MAX + 1}", id="seq-over-64-bits"),
        pytest.param("1" * 21 + "-0", id="21-digits"),
        pytest.param(b"\xff-1", id="non-ascii-bytes"),
    ],
)
def test_stream_id_refuses_what_redis_never_hands_out(text: str | bytes) -> None:
    """Anything but two decimal 64-bit numbers joined by one dash is not an entry id."""
    assert StreamId.parse(text) is None


def test_stream_ids_order_numerically() -> None:
    """Ids order as Redis orders them: by milliseconds, then sequence, as numbers."""
    ids = [StreamId.parse(t) for t in ["10-0", "9-5", "9-10", "0-0", "10-1"]]
    assert sorted(i for i in ids if i is not None) == [
        ZERO,
        StreamId(9, 5),
        StreamId(9, 10),
        StreamId(10, 0),
        StreamId(10, 1),
    ]


@given(
    st.integers(0, MAX),
    st.integers(0, MAX),
    st.integers(0, MAX),
    st.integers(0, MAX),
)
def test_stream_id_round_trips_and_orders_like_pairs(a: int, b: int, c: int, d: int) -> None:
    """``str()`` gives back the text Redis uses, and order is the order of (ms, seq)."""
    first, second = StreamId(a, b), StreamId(c, d)
    assert StreamId.parse(str(first)) == first
    assert str(first) == f"{a}-{b}"
    assert (first < second) == ((a, b) < (c, d))


# -- entry_fields and decode_entry ---------------------------------------------------


@pytest.mark.parametrize(
    ("message", "fields"),
    [
        pytest.param(Message("hello", id=None), ["data", '"hello"'], id="text-is-a-json-string"),
        pytest.param(Message({"a": [1, 2]}, id=None), ["data", '{"a":[1,2]}'], id="object"),
        pytest.param(Message(None, id=None), ["data", "null"], id="null"),
        pytest.param(
            Message(1.5, id=None, event="quote"), ["data", "1.5", "event", "quote"], id="event"
        ),
    ],
)
def test_entry_fields_follow_the_documented_layout(message: Message, fields: list[str]) -> None:
    """An entry is ``data`` (the payload as JSON) and, if named, ``event``."""
    assert entry_fields(message) == fields


@pytest.mark.parametrize(
    "payload",
    ["hello", "héllo ✓\nline two", {"a": 1, "b": [1, None]}, [1, "two"], 42, 1.5, None, True],
)
def test_entry_fields_decode_back_to_the_same_message(payload: Any) -> None:
    """What a store writes to the stream is read back as the same payload and event."""
    fields = entry_fields(Message(payload, id=None, event="e"))
    as_redis_returns = {
        name.encode(): value.encode() for name, value in zip(fields[::2], fields[1::2], strict=True)
    }
    message = decode_entry(b"7-3", as_redis_returns, accept)
    assert (message.id, message.event, message.data) == ("7-3", "e", payload)


@pytest.mark.parametrize(
    ("fields", "data", "event"),
    [
        pytest.param({b"data": b'{"a":1}'}, {"a": 1}, None, id="bytes-keys"),
        pytest.param({"data": '"hello"'}, "hello", None, id="str-keys"),
        pytest.param({b"data": b"1", b"event": b""}, 1, None, id="empty-event-is-none"),
        pytest.param({b"data": b"1", b"event": "café".encode()}, 1, "café", id="non-ascii-event"),
        pytest.param({b"data": b"1", b"other": b"\xff"}, 1, None, id="other-fields-ignored"),
    ],
)
def test_decode_entry_accepts_valid_entries(
    fields: dict[Any, Any], data: Any, event: str | None
) -> None:
    """A valid entry becomes a message with the entry id as its id."""
    message = decode_entry("1-2", fields, accept)
    assert (message.id, message.data, message.event) == ("1-2", data, event)


def test_decode_entry_validates_with_the_schema() -> None:
    """With a schema, the payload is validated (and coerced) like a submitted one."""
    validate = QueueStore(schema=Reading).validate
    message = decode_entry("1-2", {b"data": b'{"sensor": "t1", "value": "2.5"}'}, validate)
    assert message.data == Reading(sensor="t1", value=2.5)


def unencodable(payload: Any) -> Any:
    """A ``validate`` that turns every payload into something JSON cannot hold."""
    return object()


@pytest.mark.parametrize(
    ("fields", "validate", "says"),
    [
        pytest.param({b"event": b"x"}, accept, "no 'data' field", id="no-data"),
        pytest.param({b"data": b"not json"}, accept, "not JSON", id="not-json"),
        pytest.param({b"data": b""}, accept, "not JSON", id="empty-data"),
        pytest.param({b"data": b"NaN"}, accept, "not JSON", id="nan"),
        pytest.param({b"data": b"Infinity"}, accept, "not JSON", id="infinity"),
        pytest.param({b"data": b'"\xff\xfe"'}, accept, "not JSON", id="data-not-utf8"),
        pytest.param({b"data": b"1", b"event": b"\xff"}, accept, "not UTF-8", id="event-not-utf8"),
        pytest.param({b"data": b"1", b"event": b"a\nb"}, accept, "event", id="event-lf"),
        pytest.param({b"data": b"1", b"event": b"a\rb"}, accept, "event", id="event-cr"),
        pytest.param({b"data": b"1", b"event": b"a\x00b"}, accept, "event", id="event-nul"),
        pytest.param(
            {b"data": b'{"sensor": "t1"}'},
            QueueStore(schema=Reading).validate,
            "does not match the schema",
            id="schema",
        ),
        pytest.param({b"data": b"1"}, unencodable, "cannot be encoded", id="unencodable"),
    ],
)
def test_decode_entry_refuses_invalid_entries(
    fields: dict[bytes, bytes], validate: Callable[[Any], Any], says: str
) -> None:
    """An invalid entry raises InvalidEntry (a ValueError) naming the entry and why."""
    with pytest.raises(InvalidEntry, match=says) as caught:
        decode_entry(b"9-1", fields, validate)
    assert isinstance(caught.value, ValueError)
    assert "9-1" in str(caught.value)


# -- replay_gap -------------------------------------------------------------------------


def ids(*pairs: tuple[int, int]) -> list[StreamId]:
    return [StreamId(ms, seq) for ms, seq in pairs]


NOW = 10_000


@pytest.mark.parametrize(
    ("after", "replay", "first", "history", "max_age", "expected"),
    [
        pytest.param((5, 0), ids((6, 0), (7, 0)), (1, 0), 10, None, None, id="exact"),
        pytest.param((5, 0), ids((6, 0), (7, 0)), (5, 0), 10, None, None, id="after-is-first"),
        pytest.param(
            (5, 0), ids((6, 0), (7, 0)), (1, 0), 2, None, None, id="exactly-history-missed"
        ),
        pytest.param(
            (5, 0),
            ids((6, 0), (7, 0), (8, 0)),
            (1, 0),
            2,
            None,
            ResetReason.HISTORY_TOO_SHORT,
            id="more-than-history",
        ),
        pytest.param(
            (5, 0),
            ids((6, 0)),
            (5, 1),
            10,
            None,
            ResetReason.HISTORY_TOO_SHORT,
            id="after-trimmed-away",
        ),
        pytest.param((5, 0), [], None, 10, None, ResetReason.HISTORY_TOO_SHORT, id="stream-empty"),
        pytest.param(
            (5, 0),
            ids((NOW - 301, 0), (NOW, 0)),
            (1, 0),
            10,
            300,
            ResetReason.HISTORY_TOO_SHORT,
            id="first-missed-too-old",
        ),
        pytest.param(
            (5, 0), ids((NOW - 300, 0), (NOW, 0)), (1, 0), 10, 300, None, id="first-missed-at-age"
        ),
        pytest.param((5, 0), [], (1, 0), 10, 300, None, id="nothing-missed-nothing-too-old"),
    ],
)
def test_replay_gap(
    after: tuple[int, int],
    replay: list[StreamId],
    first: tuple[int, int] | None,
    history: int,
    max_age: int | None,
    expected: ResetReason | None,
) -> None:
    """A resume is exact unless more than ``history`` were missed, the client's id is
    gone from the stream, or the oldest missed entry is older than ``max_age_ms``."""
    reason = replay_gap(
        StreamId(*after),
        replay,
        None if first is None else StreamId(*first),
        history=history,
        max_age_ms=max_age,
        now_ms=NOW,
    )
    assert reason is expected


# -- live_gap ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seq", "added", "length", "expected"),
    [
        pytest.param(9, 9, 9, False, id="nothing-removed"),
        pytest.param(9, 12, 5, False, id="only-read-entries-removed"),
        pytest.param(9, 14, 5, False, id="removed-up-to-the-cursor"),
        pytest.param(9, 15, 5, True, id="one-unread-entry-removed"),
        pytest.param(0, 3, 3, False, id="new-stream-nothing-removed"),
        pytest.param(0, 20, 5, True, id="new-stream-some-removed"),
        pytest.param(9, 0, 0, False, id="empty-stream"),
    ],
)
def test_live_gap(seq: int, added: int, length: int, expected: bool) -> None:
    """A reader that read ``seq`` entries has a gap once trimming removed more than
    that: an entry it had not read yet is gone."""
    assert live_gap(seq, added, length) is expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(StreamId(5, 3), StreamId(5, 2), id="same-ms"),
        pytest.param(StreamId(5, 0), StreamId(4, 2**64 - 1), id="previous-ms"),
        pytest.param(StreamId(0, 0), StreamId(0, 0), id="zero"),
    ],
)
def test_stream_id_before(given: StreamId, expected: StreamId) -> None:
    """``before()`` is the greatest id below: reading after it starts at ``given``."""
    assert given.before() == expected
    assert given == StreamId(0, 0) or given.before() < given
