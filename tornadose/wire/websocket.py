"""WebSocket conventions of tornadose: close codes, and its server-to-client text frames.

Each message is one text frame, a JSON object ``{"data": ..., "id": "..."}`` (see
:attr:`tornadose.core.message.Message.websocket`). Close codes:

=====  ==================================================================
1000   the subscription ended normally (the subscriber was deregistered)
1001   going away: the store was closed or the server is shutting down
4001   slow consumer: the client fell ``max_queue`` messages (or bytes) behind
4002   write timeout: a write to the client did not complete in time
=====  ==================================================================

Framing (RFC 6455) is the server's (Tornado, uvicorn), with one exception: on Tornado
connections that negotiated no compression, tornadose builds its server-to-client text
frames itself (:func:`text_frame`, :func:`text_frames`), once per message batch, and
writes the same bytes to every such connection. Everything else (the handshake,
compressed frames, control frames, reading the client's frames, closing) stays the
server's.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_NORMAL",
    "CLOSE_SLOW_CONSUMER",
    "CLOSE_WRITE_TIMEOUT",
    "text_frame",
    "text_frames",
]

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_SLOW_CONSUMER = 4001
CLOSE_WRITE_TIMEOUT = 4002


#: First byte of a final, unfragmented text frame: FIN set, RSV1-3 clear, opcode 0x1.
_FIN_TEXT = 0x81
#: Second-byte length codes announcing a 16-bit and a 64-bit extended length.
_LENGTH_16 = 126
_LENGTH_64 = 127
#: The header of each payload length below 126 (one length byte, mask bit clear).
_SHORT_HEADERS = tuple(bytes((_FIN_TEXT, length)) for length in range(_LENGTH_16))


def _header(length: int) -> bytes:
    if length < _LENGTH_16:
        return _SHORT_HEADERS[length]
    if length <= 0xFFFF:
        return struct.pack("!BBH", _FIN_TEXT, _LENGTH_16, length)
    return struct.pack("!BBQ", _FIN_TEXT, _LENGTH_64, length)


def text_frame(payload: bytes) -> bytes:
    """One complete server-to-client text frame carrying ``payload`` (RFC 6455,
    section 5.2): FIN set, RSV1-3 clear (no extension applies), opcode 0x1, not masked
    (a server never masks), and the payload length in the shortest form: 7 bits below
    126 bytes, 16 bits up to 65535, else 64 bits; then ``payload`` unchanged.

    Refuses nothing. ``payload`` is not checked: a text frame must carry valid UTF-8,
    which :func:`text_frames` guarantees by encoding ``str``. Every length Python
    allows fits the 64-bit form (whose top bit RFC 6455 requires clear: Python's sizes
    are below ``2**63``).
    """
    return _header(len(payload)) + payload


def text_frames(texts: Sequence[str]) -> bytes:
    """The text frames of ``texts``, one per text, in order, joined into one byte
    string (``b""`` for none): each is :func:`text_frame` of the text encoded as
    UTF-8. Raises ``UnicodeEncodeError`` for a text that has no UTF-8 form (a lone
    surrogate), before anything is returned."""
    if len(texts) == 1:
        return text_frame(texts[0].encode())
    parts: list[bytes] = []
    for text in texts:
        payload = text.encode()
        parts.append(_header(len(payload)))
        parts.append(payload)
    return b"".join(parts)
