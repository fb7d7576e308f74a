"""Exceptions raised by tornadose.

Every error a bad message can cause is a :class:`ValueError` subclass, so code that
already catches ``ValueError`` around ``store.submit()`` keeps working.
:class:`StoreClosed` (submitting to a closed store) is a :class:`RuntimeError`;
:class:`StoreUnavailable` (the store's backend is down) is a :class:`ConnectionError`,
and so is :class:`StoreRefused` (the backend answered, refusing the message).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tornadose.core.reasons import CloseReason

__all__ = [
    "MessageValidationError",
    "StoreClosed",
    "StoreRefused",
    "StoreUnavailable",
    "SubscriptionClosed",
    "TornadoseError",
    "UnencodableMessage",
]


class TornadoseError(Exception):
    """Base class of the exceptions the core and the layers above it raise on purpose.

    Two ``ValueError`` subclasses come from below the core and are not
    ``TornadoseError``: :class:`tornadose.wire.sse.InvalidField` (an ``event`` or
    ``id`` with CR, LF or NUL, raised by ``submit(event=...)``: the wire layer
    imports nothing of tornadose) and
    :class:`tornadose.backends.redis.layout.InvalidEntry` (a Redis stream entry that is
    not a message, which is skipped and logged, never raised to a caller). Catch
    ``ValueError`` around ``submit()`` to catch every bad-input error.
    """


class MessageValidationError(TornadoseError, ValueError):
    """A submitted message does not match the store's schema. Nothing was published.

    :attr:`errors` holds pydantic's error details as plain JSON values (the list
    ``pydantic.ValidationError.json()`` encodes: ``loc`` is a list), ready to be sent
    back to a client.
    """

    def __init__(self, message: str, errors: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.errors = errors


class UnencodableMessage(TornadoseError, ValueError):
    """A submitted message cannot be encoded for the wire (for example, it is not
    JSON-serializable, or it is ``bytes`` that are not UTF-8). Nothing was published.
    """


class SubscriptionClosed(TornadoseError):
    """Raised by a :class:`~tornadose.core.subscription.Subscription` read once it is closed.

    :attr:`reason` tells why (see :class:`~tornadose.core.subscription.CloseReason`).
    """

    def __init__(self, reason: CloseReason) -> None:
        super().__init__(f"subscription closed: {reason.value}")
        self.reason = reason


class StoreClosed(TornadoseError, RuntimeError):
    """The store was closed: it accepts no more messages or subscribers."""


class StoreUnavailable(TornadoseError, ConnectionError):
    """The store's backend (Redis) could not take the message in time.

    :attr:`maybe_published` is ``False`` when the message certainly was not
    published (the backend was unreachable until the deadline), and ``True`` when the
    connection broke after the message was sent, so it may have been published.
    :attr:`kind` says what happened: ``"unreachable"`` (no answer), ``"busy"`` (the
    backend kept answering "not now": Redis ``BUSY``, ``NOREPLICAS``...), ``"redirected"``
    (a Redis Cluster kept moving the channel's slot until the deadline), ``"refused"``
    (see :class:`StoreRefused`) or ``"other"``; :attr:`code` is the backend's error
    code when it answered with one (``"WRONGTYPE"``, ``"NOPERM"``...), else ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        maybe_published: bool = False,
        kind: str = "unreachable",
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.maybe_published = maybe_published
        self.kind = kind
        self.code = code


class StoreRefused(StoreUnavailable):
    """The store's backend answered, refusing the message (Redis: ``WRONGTYPE``,
    ``NOPERM``, ``OOM``, ``READONLY``, ``CROSSSLOT``...; :attr:`code` names it). It was
    not published, and sending it again gets the same answer until the backend's
    configuration or data changes: it was not retried."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message, maybe_published=False, kind="refused", code=code)
