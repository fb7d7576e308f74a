"""WebSocket conventions of tornadose: frame layout and close codes.

Framing itself (RFC 6455) belongs to the server (Tornado, uvicorn); this module only
says what tornadose puts in frames and how it closes connections.

Each message is one text frame, a JSON object ``{"data": ..., "id": "..."}`` (see
:attr:`tornadose.message.Message.websocket`). Close codes:

=====  ==================================================================
1000   the subscription ended normally (the subscriber was deregistered)
1001   going away: the store was closed or the server is shutting down
4001   slow consumer: the client fell ``max_queue`` messages (or bytes) behind
4002   write timeout: a write to the client did not complete in time
=====  ==================================================================
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from urllib.parse import urlsplit

from tornadose.responses import Answer, error_answer
from tornadose.subscription import CloseReason

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_SLOW_CONSUMER",
    "CLOSE_WRITE_TIMEOUT",
    "close_code_for",
    "not_a_websocket",
    "origin_allowed",
    "refuse_origin",
]

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_SLOW_CONSUMER = 4001
CLOSE_WRITE_TIMEOUT = 4002

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


def refuse_origin(
    headers: Mapping[str, str], allowed_origins: Collection[str] | None
) -> Answer | None:
    """The ``403`` answer for a cross-origin handshake (see :func:`origin_allowed`), or
    ``None``. Checked before any authorization, so the hook never sees such requests."""
    if origin_allowed(headers.get("origin"), headers.get("host", ""), allowed_origins):
        return None
    return error_answer(403, "forbidden", "cross-origin WebSocket refused")


def not_a_websocket() -> Answer:
    """The ``400`` answer to a plain HTTP request at a WebSocket URL."""
    return error_answer(400, "websocket_required", 'Can "Upgrade" only to "WebSocket".')
