"""Publishing over HTTP, decided once for every adapter (no I/O here).

A publish request is ``POST`` with a JSON body: the body *is* the message. The
optional query parameter ``event`` names the SSE event type. The answers:

======  ==========================  ===============================================
status  ``error`` code              when
======  ==========================  ===============================================
202     (body ``{"id": "..."}``)    published; the id is the message's id
400     ``malformed_json``          the body is not valid JSON (or not UTF-8)
400     ``invalid_field``           ``event`` contains CR, LF or NUL
401     ``unauthorized``            the authorize hook raised ``Unauthorized``
403     ``forbidden``               the authorize hook refused
405     ``method_not_allowed``      any method but ``POST`` (``Allow: POST``)
413     ``payload_too_large``       the body is longer than ``max_body`` bytes
415     ``unsupported_media_type``  ``Content-Type`` is not ``application/json``
422     ``validation_error``        the message violates the channel's schema;
                                    ``errors`` holds pydantic's details
503     ``store_closed``            the store was closed
503     ``store_unavailable``       the store's backend (Redis) did not take the
                                    message in time: unreachable, or a cluster
                                    moving the channel (see ``StoreUnavailable``)
503     ``store_refused``           the backend answered, refusing the message
                                    (``WRONGTYPE``, ``NOPERM``, ``OOM``...); the
                                    ``detail`` names Redis's error (``StoreRefused``)
======  ==========================  ===============================================

Nothing is published unless the answer is 202.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypedDict

import pydantic_core

from tornadose.core.errors import (
    MessageValidationError,
    StoreClosed,
    StoreRefused,
    StoreUnavailable,
    UnencodableMessage,
)
from tornadose.core.store import BaseStore
from tornadose.http.answer import Answer, error_answer, json_answer, method_not_allowed
from tornadose.http.auth import Action, Authorize, check_access
from tornadose.http.request import BodyLimit, event_from_query
from tornadose.schemas.errors import PublishAccepted
from tornadose.wire.sse import InvalidField

__all__ = [
    "DEFAULT_MAX_BODY",
    "PublishOptions",
    "Publishing",
    "publish_json",
    "refuse_before_body",
    "too_large",
]

#: The largest publish body accepted by default: 1 MiB.
DEFAULT_MAX_BODY = 1024 * 1024

_JSON_TYPES = frozenset({"application/json"})


async def refuse_before_body(
    method: str,
    headers: Mapping[str, str],
    *,
    channel: str,
    max_body: int,
    authorize: Authorize | None = None,
) -> Answer | None:
    """Check a publish request before its body is read; ``None`` if the body may be read.

    Checks run in this order: method (405), authorization (401/403), content type
    (415), declared ``Content-Length`` (413). ``headers`` maps lower-case names to values.
    """
    if method != "POST":
        return method_not_allowed(method, "POST")
    refusal = await check_access(authorize, headers, channel, Action.PUBLISH)
    if refusal is not None:
        return refusal
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type not in _JSON_TYPES:
        return error_answer(
            415,
            "unsupported_media_type",
            f"Content-Type must be application/json, not {media_type or 'missing'!r}",
        )
    length = headers.get("content-length", "").strip()
    if length.isdigit() and int(length) > max_body:
        return too_large(max_body)
    return None


def too_large(max_body: int) -> Answer:
    """The ``413`` answer for a body over ``max_body`` bytes."""
    return error_answer(413, "payload_too_large", f"the body exceeds {max_body} bytes")


async def publish_json(store: BaseStore, body: bytes, *, event: str | None = None) -> Answer:
    """Parse ``body`` as JSON and submit it to ``store``; the answer says how it went.

    The answer comes once the store has published the message (at once for
    in-memory stores, once Redis took it for a ``RedisStore``)."""
    try:
        message = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        return error_answer(400, "malformed_json", f"the body is not valid JSON: {exc}")
    try:
        published = await store.submit(message, event=event)
    except MessageValidationError as exc:
        return error_answer(
            422,
            "validation_error",
            "the message does not match the channel's schema",
            errors=exc.errors,
        )
    except InvalidField as exc:
        return error_answer(400, "invalid_field", str(exc))
    except UnencodableMessage as exc:
        return error_answer(422, "unencodable", str(exc))
    except StoreClosed:
        return error_answer(503, "store_closed", "the channel's store is closed")
    except StoreRefused as exc:
        return error_answer(503, "store_refused", str(exc))
    except StoreUnavailable as exc:
        return error_answer(503, "store_unavailable", str(exc))
    accepted = PublishAccepted(id=published.id or "")
    return json_answer(202, accepted.model_dump_json().encode())


class PublishOptions(TypedDict, total=False):
    """The options of a publish endpoint, as keyword arguments (see :class:`Publishing`)."""

    max_body: int
    authorize: Authorize | None
    channel: str


@dataclass(frozen=True, slots=True)
class Publishing:
    """One publish endpoint: its store, body limit and authorize hook (with the
    channel name it is given). Adapters carry out its three steps, in order:
    :meth:`refuse` before the body, :meth:`body` to read it into, :meth:`answer`
    once it is complete (or over the limit: the adapter stops reading)."""

    store: BaseStore
    max_body: int = DEFAULT_MAX_BODY
    authorize: Authorize | None = None
    channel: str = ""

    async def refuse(self, method: str, headers: Mapping[str, str]) -> Answer | None:
        """See :func:`refuse_before_body`."""
        return await refuse_before_body(
            method, headers, channel=self.channel, max_body=self.max_body, authorize=self.authorize
        )

    def body(self) -> BodyLimit:
        """A body to add the request's chunks to, bounded by ``max_body``."""
        return BodyLimit(self.max_body)

    async def answer(self, body: BodyLimit, query: str) -> Answer:
        """``413`` for a body over the limit, else publish it (:func:`publish_json`,
        with the ``event`` of the query string)."""
        if body.exceeded:
            return too_large(self.max_body)
        return await publish_json(self.store, body.body, event=event_from_query(query))
