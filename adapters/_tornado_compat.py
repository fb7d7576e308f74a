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
from collections.abc import Callable
from typing import Any

import tornado
from tornado.web import GZipContentEncoding, RequestHandler
from tornado.websocket import WebSocketHandler

__all__ = ["PRIVATE_API", "SUPPORTED", "disable_compression", "frame_writer", "reason_of"]

#: The Tornado versions whose private attributes below were checked: 6.x.
SUPPORTED = ((6, 0), (7, 0))
#: Whether this Tornado is one of them: only then is private API used.
PRIVATE_API = SUPPORTED[0] <= tuple(tornado.version_info[:2]) < SUPPORTED[1]

#: The WebSocket opcode of a text frame (RFC 6455).
TEXT_FRAME = 0x1

FrameWriter = Callable[[bytes], "asyncio.Future[None]"]


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


def frame_writer(handler: WebSocketHandler) -> FrameWriter | None:
    """A writer of one uncompressed text frame straight to the connection
    (``ws_connection._write_frame``), whose futures resolve in order, so a batch
    awaits only its last one; ``None`` where it does not apply (compression on,
    another Tornado): the caller then uses the public ``write_message``, which wraps
    every frame in a task."""
    connection: Any = handler.ws_connection
    if not PRIVATE_API or connection is None:
        return None
    write_frame = getattr(connection, "_write_frame", None)
    if write_frame is None or getattr(connection, "_compressor", None) is not None:
        return None

    def write_text(payload: bytes) -> asyncio.Future[None]:
        future: asyncio.Future[None] = write_frame(True, TEXT_FRAME, payload)
        return future

    return write_text
