"""Every private Tornado attribute tornadose uses, in one place, behind a version check.

Tornado offers no public API for these; each use is checked against the Tornado
versions it was written for (:data:`SUPPORTED`, by ``tornado.version_info`` at
import). On any other version the private attributes are not touched and each
function falls back as its docstring says (public API where there is one), so a
Tornado release that renames them degrades speed or detail, never correctness.
"""

from __future__ import annotations

import asyncio
import http.client
from collections.abc import Awaitable
from typing import Any

import tornado
from tornado.web import GZipContentEncoding, RequestHandler
from tornado.websocket import WebSocketClosedError, WebSocketHandler

__all__ = ["PRIVATE_API", "SUPPORTED", "disable_compression", "reason_of", "send_text_frames"]

#: The Tornado versions whose private attributes below were checked: 6.x.
SUPPORTED = ((6, 0), (7, 0))
#: Whether this Tornado is one of them: only then is private API used.
PRIVATE_API = SUPPORTED[0] <= tuple(tornado.version_info[:2]) < SUPPORTED[1]

#: The WebSocket opcode of a text frame (RFC 6455).
TEXT_FRAME = 0x1


def reason_of(handler: RequestHandler) -> str:
    """The reason phrase of the error being sent (``HTTPError(reason=...)``:
    ``handler._reason``). Fallback: the standard phrase of the status."""
    if PRIVATE_API:
        reason = getattr(handler, "_reason", None)
        if isinstance(reason, str):
            return reason
    return http.client.responses.get(handler.get_status(), "Unknown")


def disable_compression(handler: RequestHandler) -> None:
    """Never compress this response (an event stream: ``compress_response=True``
    would buffer it), by removing the gzip transform from ``handler._transforms``.
    Fallback: nothing; with ``compress_response`` an event stream may be buffered
    (a proxy-like delay), so leave it off with another Tornado."""
    transforms = getattr(handler, "_transforms", None) if PRIVATE_API else None
    if isinstance(transforms, list):
        transforms[:] = [t for t in transforms if not isinstance(t, GZipContentEncoding)]


def send_text_frames(handler: WebSocketHandler, texts: list[str]) -> Awaitable[None] | None:
    """Send ``texts``, one text frame each; ``None`` once Tornado has them all, else
    what to await while the socket is backed up. Raises ``WebSocketClosedError`` if
    the connection is closing.

    Tornado's ``write_message`` wraps every frame in a task, which costs more than
    the write itself. Its frame writer (``ws_connection._write_frame``) does not, and
    its futures resolve in order, so only the last one is awaited; used unless
    compression is on (``_compressor``) or Tornado is not a :data:`SUPPORTED` one.
    """
    connection: Any = handler.ws_connection
    if connection is None or connection.is_closing():
        raise WebSocketClosedError()
    write_frame = getattr(connection, "_write_frame", None) if PRIVATE_API else None
    if write_frame is None or getattr(connection, "_compressor", None) is not None:
        flushes = [handler.write_message(text) for text in texts]
        for flush in flushes[:-1]:  # the last one reports a closed connection
            flush.add_done_callback(_retrieve_exception)
    else:  # Tornado reads each frame's failure itself
        flushes = [write_frame(True, TEXT_FRAME, text.encode()) for text in texts]
    stream = getattr(connection, "stream", None)
    if flushes and stream is not None and stream.writing():
        last: Awaitable[None] = flushes[-1]
        return last
    return None


def _retrieve_exception(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
