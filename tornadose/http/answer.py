"""Framework-neutral HTTP responses: what to answer, decided once for every adapter.

The core decides the status, headers and JSON body of every non-streaming answer
(errors, publish results); adapters only copy a :class:`Answer` onto their
framework's response object.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tornadose.schemas.errors import ErrorBody

__all__ = [
    "JSON_HEADERS",
    "Answer",
    "error_answer",
    "error_code_for",
    "json_answer",
    "method_not_allowed",
    "raw_headers",
    "response_headers",
    "status_answer",
]

JSON_HEADERS: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete HTTP response: status, headers, body."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


def json_answer(status: int, body: bytes, *extra_headers: tuple[str, str]) -> Answer:
    """An ``application/json`` answer with ``body`` (already JSON)."""
    return Answer(status, body, JSON_HEADERS + extra_headers)


def error_answer(
    status: int,
    error: str,
    detail: str,
    *extra_headers: tuple[str, str],
    errors: list[dict[str, Any]] | None = None,
) -> Answer:
    """A JSON :class:`~tornadose.schemas.ErrorBody` answer."""
    body = ErrorBody(error=error, detail=detail, errors=errors)
    return json_answer(status, body.model_dump_json(exclude_none=True).encode(), *extra_headers)


_ERROR_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    500: "internal_error",
    503: "unavailable",
}


def error_code_for(status: int) -> str:
    """The ``error`` code of a generic error answer with ``status``."""
    return _ERROR_CODES.get(status, "http_error")


def method_not_allowed(method: str, *allowed: str) -> Answer:
    """The ``405`` answer for ``method``, with ``Allow`` listing ``allowed``."""
    methods = ", ".join(allowed)
    return error_answer(
        405,
        "method_not_allowed",
        f"{method} is not allowed here; use {methods}",
        ("Allow", methods),
    )


def status_answer(status: int, reason: str, method: str, allowed: Sequence[str]) -> Answer:
    """The JSON answer for an error a framework raised with only a ``status`` and its
    ``reason`` phrase: for ``405``, :func:`method_not_allowed` (``method``, with
    ``Allow`` listing ``allowed``); else :func:`error_answer` with the code of
    :func:`error_code_for` and the reason as ``detail``."""
    if status == 405:
        return method_not_allowed(method, *allowed)
    return error_answer(status, error_code_for(status), reason)


#: Statuses whose responses carry no body, hence no ``Content-Length`` either.
BODILESS_STATUSES = frozenset({204, 304})


def response_headers(answer: Answer) -> tuple[tuple[str, str], ...]:
    """Every header to send with ``answer``, the same on every adapter: the answer's
    own, plus ``Content-Length`` unless the status carries no body (204, 304)."""
    if answer.status in BODILESS_STATUSES:
        return answer.headers
    return (*answer.headers, ("Content-Length", str(len(answer.body))))


def raw_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """``headers`` as a server sends them (the ASGI form): lower-case names and values
    as ``latin-1`` bytes."""
    return [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers]
