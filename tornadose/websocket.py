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

from collections.abc import Collection
from urllib.parse import urlsplit

from tornadose.subscription import CloseReason

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_SLOW_CONSUMER",
    "close_code_for",
    "origin_allowed",
]

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_SLOW_CONSUMER = 4001

_CLOSE_FRAMES: dict[CloseReason, tuple[int, str]] = {
    CloseReason.DEREGISTERED: (CLOSE_NORMAL, "subscription ended"),
    CloseReason.CLIENT_GONE: (CLOSE_NORMAL, "client gone"),
    CloseReason.STORE_CLOSED: (CLOSE_GOING_AWAY, "store closed"),
    CloseReason.SERVER_SHUTDOWN: (CLOSE_GOING_AWAY, "server shutting down"),
    CloseReason.SLOW_CONSUMER: (CLOSE_SLOW_CONSUMER, "slow consumer"),
}


def close_code_for(reason: CloseReason) -> tuple[int, str]:
    """The WebSocket close code and reason text for a closed subscription."""
    return _CLOSE_FRAMES[reason]


def origin_allowed(origin: str | None, host: str, allowed_origins: Collection[str] | None) -> bool:
    """Whether a WebSocket handshake with this ``Origin`` may proceed.

    Guards against cross-site WebSocket hijacking, like Tornado's default
    ``check_origin``: no ``Origin`` header (not a browser) is allowed, so is an
    origin whose host is the request's ``Host``, and so is any origin listed in
    ``allowed_origins`` (``"*"`` allows every origin).
    """
    if origin is None:
        return True
    if allowed_origins is not None and ("*" in allowed_origins or origin in allowed_origins):
        return True
    return urlsplit(origin).netloc.lower() == host.lower()
