"""WebSocket conventions of tornadose: frame layout and close codes.

Framing itself (RFC 6455) belongs to the server (Tornado, uvicorn); this module only
says what tornadose puts in frames and how it closes connections.

Each message is one text frame, a JSON object ``{"data": ..., "id": "..."}`` (see
:attr:`tornadose.core.message.Message.websocket`). Close codes:

=====  ==================================================================
1000   the subscription ended normally (the subscriber was deregistered)
1001   going away: the store was closed or the server is shutting down
4001   slow consumer: the client fell ``max_queue`` messages (or bytes) behind
4002   write timeout: a write to the client did not complete in time
=====  ==================================================================
"""

from __future__ import annotations

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_SLOW_CONSUMER",
    "CLOSE_WRITE_TIMEOUT",
]

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_SLOW_CONSUMER = 4001
CLOSE_WRITE_TIMEOUT = 4002
