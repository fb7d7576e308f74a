"""An independent parser of the SSE wire format, written from the WHATWG spec.

Used only to check the encoder: it follows the spec's "interpret the event stream"
algorithm step by step and shares no code with tornadose.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ParsedEvent:
    type: str
    data: str
    last_event_id: str


@dataclass
class ParseResult:
    events: list[ParsedEvent]
    retry: int | None
    comments: list[str]


def parse_stream(raw: bytes) -> ParseResult:
    text = raw.decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    # Split into lines on CRLF, LF or CR. A trailing partial line is not a line.
    lines: list[str] = []
    current = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\r":
            lines.append(current)
            current = ""
            if i + 1 < len(text) and text[i + 1] == "\n":
                i += 1
        elif ch == "\n":
            lines.append(current)
            current = ""
        else:
            current += ch
        i += 1
    events: list[ParsedEvent] = []
    comments: list[str] = []
    data, event_type, last_id, retry = "", "", "", None
    for line in lines:
        if line == "":
            if data:
                events.append(
                    ParsedEvent(event_type or "message", data.removesuffix("\n"), last_id)
                )
            data, event_type = "", ""
            continue
        if line.startswith(":"):
            comments.append(line[1:])
            continue
        if ":" in line:
            field, value = line.split(":", 1)
            value = value.removeprefix(" ")
        else:
            field, value = line, ""
        if field == "event":
            event_type = value
        elif field == "data":
            data += value + "\n"
        elif field == "id":
            if "\x00" not in value:
                last_id = value
        elif field == "retry" and value and all("0" <= c <= "9" for c in value):
            retry = int(value)
    return ParseResult(events, retry, comments)
