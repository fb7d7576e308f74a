"""How the end of a WebSocket stream is told to its client: the close code and
reason text for each :class:`~tornadose.core.reasons.CloseReason` (the codes are
listed in :mod:`tornadose.wire.websocket`)."""

from __future__ import annotations

from tornadose.core.reasons import CloseReason
from tornadose.wire.websocket import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_SLOW_CONSUMER,
    CLOSE_WRITE_TIMEOUT,
)

__all__ = ["close_code_for"]

_CLOSE_FRAMES: dict[CloseReason, tuple[int, str]] = {
    CloseReason.DEREGISTERED: (CLOSE_NORMAL, "subscription ended"),
    CloseReason.CLIENT_GONE: (CLOSE_NORMAL, "client gone"),
    CloseReason.STORE_CLOSED: (CLOSE_GOING_AWAY, "store closed"),
    CloseReason.SERVER_SHUTDOWN: (CLOSE_GOING_AWAY, "server shutting down"),
    CloseReason.SLOW_CONSUMER: (CLOSE_SLOW_CONSUMER, "slow consumer"),
    CloseReason.WRITE_TIMEOUT: (CLOSE_WRITE_TIMEOUT, "write timeout"),
}


def close_code_for(reason: CloseReason) -> tuple[int, str]:
    """The WebSocket close code and reason text for a closed subscription."""
    return _CLOSE_FRAMES[reason]
