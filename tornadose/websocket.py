"""WebSocket conventions of tornadose: frame layout and close codes.

Framing itself (RFC 6455) belongs to the server (Tornado, uvicorn); this module only
says what tornadose puts in frames and how it closes connections.

Each message is one text frame, a JSON object ``{"data": ..., "id": "..."}`` (see
:attr:`tornadose.message.Message.websocket`). Close codes:

=====  ==================================================================
1000   the subscription ended normally (the subscriber was deregistered)
1001   going away: the store was closed or the server is shutting down
4001   slow consumer: the client fell ``max_queue`` messages behind
=====  ==================================================================
"""

from __future__ import annotations

from tornadose.subscription import CloseReason

__all__ = ["CLOSE_GOING_AWAY", "CLOSE_NORMAL", "CLOSE_SLOW_CONSUMER", "close_code_for"]

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_SLOW_CONSUMER = 4001

_CLOSE_FRAMES: dict[CloseReason, tuple[int, str]] = {
    CloseReason.DEREGISTERED: (CLOSE_NORMAL, "subscription ended"),
    CloseReason.CLIENT_GONE: (CLOSE_NORMAL, "client gone"),
    CloseReason.STORE_CLOSED: (CLOSE_GOING_AWAY, "store closed"),
    CloseReason.SLOW_CONSUMER: (CLOSE_SLOW_CONSUMER, "slow consumer"),
}


def close_code_for(reason: CloseReason) -> tuple[int, str]:
    """The WebSocket close code and reason text for a closed subscription."""
    return _CLOSE_FRAMES[reason]
