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
from tornado.http1connection import HTTP1Connection
from tornado.iostream import IOStream, StreamClosedError
from tornado.web import GZipContentEncoding, RequestHandler
from tornado.websocket import WebSocketClosedError, WebSocketHandler, WebSocketProtocol13

from tornadose.wire import http_chunk
from tornadose.wire.websocket import text_frames

__all__ = [
    "PRIVATE_API",
    "SUPPORTED",
    "disable_compression",
    "reason_of",
    "refuse_keep_alive",
    "send_text_frames",
    "write_body",
    "write_stream",
]

#: The Tornado versions whose private attributes below were checked: 6.x.
SUPPORTED = ((6, 0), (7, 0))
#: Whether this Tornado is one of them: only then is private API used.
PRIVATE_API = SUPPORTED[0] <= tuple(tornado.version_info[:2]) < SUPPORTED[1]


def reason_of(handler: RequestHandler) -> str:
    """The reason phrase of the error being sent (``HTTPError(reason=...)``:
    ``handler._reason``). Fallback: the standard phrase of the status."""
    if PRIVATE_API:
        reason = getattr(handler, "_reason", None)
        if isinstance(reason, str):
            return reason
    return http.client.responses.get(handler.get_status(), "Unknown")


def refuse_keep_alive(handler: RequestHandler) -> None:
    """Answer an HTTP/1.0 request ``Connection: close`` and close after the response,
    even if it asked for keep-alive: a body of unknown length (an event stream, which
    HTTP/1.0 cannot chunk) ends only when the connection does. Tornado decides when it
    reads the request (``HTTP1Connection._disconnect_on_finish``) and writes
    ``Connection: Keep-Alive`` from the request's headers (the object the connection
    reads when the response headers go out), so both are changed before the headers
    go out. Fallback (another Tornado): ``Connection: close`` is only set on the
    response, and an HTTP/1.0 keep-alive client may not see the stream end."""
    handler.set_header("Connection", "close")
    connection = handler.request.connection
    if PRIVATE_API and hasattr(connection, "_disconnect_on_finish"):
        handler.request.headers["Connection"] = "close"
        connection._disconnect_on_finish = True  # type: ignore[union-attr]


def disable_compression(handler: RequestHandler) -> None:
    """Never compress this response (an event stream: ``compress_response=True``
    would buffer it), by removing the gzip transform from ``handler._transforms``.
    Fallback: nothing; with ``compress_response`` an event stream may be buffered
    (a proxy-like delay), so leave it off with another Tornado."""
    transforms = getattr(handler, "_transforms", None) if PRIVATE_API else None
    if isinstance(transforms, list):
        transforms[:] = [t for t in transforms if not isinstance(t, GZipContentEncoding)]


def write_body(handler: RequestHandler, chunk: bytes) -> Awaitable[None] | None:
    """Send ``chunk`` as the next bytes of ``handler``'s response body; ``None`` once
    the socket took it all, else what to await while the socket is backed up (it
    raises ``StreamClosedError`` if the client leaves meanwhile). Raises
    ``StreamClosedError`` if the client is gone, ``RuntimeError`` after ``finish()``.

    ``RequestHandler.write`` + ``flush`` cost more than the socket write (type checks,
    a buffer, a join, the transforms, a future of their own). Once the headers are
    out, nothing is buffered in the handler, no output transform remains
    (:func:`disable_compression` removed gzip) and no ``Content-Length`` was set, the
    bytes go straight to the connection's stream (``request.connection.stream``):
    framed as an HTTP/1.1 chunk (:func:`tornadose.wire.http_chunk.chunk`) when the
    connection chunks its output (``_chunking_output``), as they are otherwise
    (HTTP/1.0: the body ends when the connection closes). The chunk framing is built
    once per ``chunk`` object (see :func:`_shared_chunk`), so subscribers handed the
    same bytes share it. ``finish()`` stays Tornado's: its last write is queued
    after these, so the end of the body (and the connection's reuse or close) comes
    after every byte written here.

    Fallback (the first write, which sends the headers; a handler with bytes of its
    own buffered; other transforms; a connection that is not Tornado's
    ``HTTP1Connection``; another Tornado): ``write`` + ``flush``.
    """
    if PRIVATE_API:
        connection: Any = handler.request.connection
        if (
            type(connection) is HTTP1Connection
            and handler._headers_written
            and not handler._finished
            and not handler._write_buffer
            and not handler._transforms
            and connection._expected_content_remaining is None
        ):
            data = _shared_chunk(chunk) if connection._chunking_output else chunk
            return write_stream(connection.stream, data)  # StreamClosedError: gone
    handler.write(chunk)
    flushed = handler.flush()
    if flushed.done():
        flushed.result()  # a done future with an error means the client left
        return None
    return flushed


def write_stream(stream: IOStream, data: bytes) -> Awaitable[None] | None:
    """Write ``data`` to ``stream``; ``None`` once the socket took it all, else what to
    await while the rest waits in the stream's buffer. Raises ``StreamClosedError``
    if the stream is closed (or a write that failed at once closed it).

    ``IOStream.write`` makes a future per write (and a callback, a scheduled
    callback when it completes): per connection and per message, the objects that
    fill the garbage collector's generations and bring full collections, whose
    pauses decide a fan-out's latency tail. On a plain ``IOStream`` (not TLS) with
    nothing in its buffer and no ``max_write_buffer_size`` (whose check comes before
    any byte is sent), the bytes go to the socket at once; only what the socket does
    not take goes through ``IOStream.write`` (behind nothing: order is kept). A socket
    error closes the stream with that error, as Tornado does (``stream.error``,
    ``StreamClosedError.real_error``).
    """
    sent = 0
    if (
        PRIVATE_API
        and type(stream) is IOStream
        and stream.max_write_buffer_size is None
        and not stream._write_buffer
        and not stream.closed()
        and stream.socket is not None
    ):
        try:
            sent = stream.socket.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:  # the socket reports its error once: say it now
            stream.close(exc_info=exc)
            raise StreamClosedError(real_error=exc) from exc
        if sent == len(data):
            return None
    written = stream.write(memoryview(data)[sent:] if sent else data)
    if written.done():
        written.result()  # a write that failed at once closed the stream
        return None
    return written


#: The last chunk framed by :func:`_shared_chunk`: (its data, the framed bytes).
_last_chunk: tuple[bytes, bytes] = (b"", b"")


def _shared_chunk(data: bytes) -> bytes:
    """``http_chunk.chunk(data)``, built once while the same ``data`` object comes
    back: a one-entry cache by identity (in one flush every up-to-date subscriber
    is handed the same bytes object). The entry holds ``data`` itself, so its
    identity cannot be reused by another object; it is one tuple, read and replaced
    whole, so threads or event loops sharing it at worst frame a chunk twice."""
    global _last_chunk
    last = _last_chunk
    if last[0] is data:
        return last[1]
    framed = http_chunk.chunk(data)
    _last_chunk = (data, framed)
    return framed


def send_text_frames(handler: WebSocketHandler, texts: list[str]) -> Awaitable[None] | None:
    """Send ``texts``, one text frame each, in order; ``None`` once the socket took
    them all, else what to await while the socket is backed up (it raises
    ``StreamClosedError`` if the connection drops meanwhile). Raises
    ``WebSocketClosedError`` if the connection is closing or closed. ``texts`` must
    not be changed afterwards (see below).

    Tornado's ``write_message`` costs more than the write itself (a task per frame,
    framing per connection). On a connection that negotiated no compression
    (``_compressor`` is ``None``), the frames are built by
    :func:`tornadose.wire.websocket.text_frames`, once per ``texts`` object (a
    one-entry cache by identity: in one flush every up-to-date subscriber is handed
    the same list, so they all write the same bytes), and written with one
    :func:`write_stream`, counted in Tornado's ``_wire_bytes_out`` as its own frames are
    (``_message_bytes_out``, which only ``write_message`` counts, is not).

    Fallback (compression negotiated, a connection that is not Tornado's
    ``WebSocketProtocol13``, another Tornado): ``write_message`` per text.
    """
    connection: Any = handler.ws_connection
    if connection is None or connection.is_closing():
        raise WebSocketClosedError()
    if (
        PRIVATE_API
        and type(connection) is WebSocketProtocol13
        and connection._compressor is None
        and not connection.mask_outgoing
    ):
        frames = _shared_frames(texts)
        connection._wire_bytes_out += len(frames)
        try:
            return write_stream(connection.stream, frames)
        except StreamClosedError as exc:
            raise WebSocketClosedError() from exc
    flushes = [handler.write_message(text) for text in texts]
    for flush in flushes[:-1]:  # the last one reports a closed connection
        flush.add_done_callback(_retrieve_exception)
    stream = getattr(connection, "stream", None)
    if flushes and stream is not None and stream.writing():
        last: Awaitable[None] = flushes[-1]
        return last
    return None


#: The last frames built by :func:`_shared_frames`: (the texts, their frames).
_last_frames: tuple[list[str] | None, bytes] = (None, b"")


def _shared_frames(texts: list[str]) -> bytes:
    """``text_frames(texts)``, built once while the same ``texts`` object comes back
    (as :func:`_shared_chunk`: the entry holds ``texts``, one tuple read and
    replaced whole)."""
    global _last_frames
    last = _last_frames
    if last[0] is texts:
        return last[1]
    frames = text_frames(texts)
    _last_frames = (texts, frames)
    return frames


def _retrieve_exception(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()
