"""One open ASGI stream (:class:`Stream`): the
:class:`~tornadose.delivery.session.Transport` that
:func:`~tornadose.delivery.session.serve` writes through, and the watcher of the
client's disconnect.

Guarantees: SSE is written as response body chunks, WebSocket messages one text
frame each, by :func:`~tornadose.delivery.streams.stream_sse` or
:func:`~tornadose.delivery.streams.stream_websocket` with the stream's options;
the client's own frames are read and ignored, and its disconnect closes the
subscription at once (``CLIENT_GONE``); a failure reading from the client is logged
on ``tornadose.asgi``. An idle stream holds one small object (slots, no closures).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable

from tornadose._compat.asyncio_tasks import start_eagerly
from tornadose.adapters.asgi.protocol import Receive, Send
from tornadose.core.reasons import CloseReason
from tornadose.core.subscription import Subscription
from tornadose.delivery import streams

__all__ = ["Stream", "logger"]

logger = logging.getLogger("tornadose.asgi")


class Stream:
    """One open ASGI stream: the :class:`~tornadose.delivery.session.Transport`
    of :func:`~tornadose.delivery.session.serve`, and the watcher of the client's
    disconnect (a second task, reading ``receive``), written with ``options``
    (:class:`~tornadose.delivery.streams.SSEOptions`: an event stream).

    Kept small (an idle connection holds it for the stream's life): slots, and its
    own methods as the callables it hands out, instead of closures."""

    __slots__ = ("options", "receive", "send", "subscription", "websocket")

    gone_errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(
        self, options: streams.StreamOptions, websocket: bool, send: Send, receive: Receive
    ) -> None:
        self.options, self.send, self.receive = options, send, receive
        self.websocket = websocket
        self.subscription: Subscription | None = None

    async def wait_disconnect(self) -> None:
        """Read from the client until it is gone (its frames are ignored)."""
        gone = "websocket.disconnect" if self.websocket else "http.disconnect"
        while (await self.receive())["type"] != gone:
            pass

    def disconnected(self, watcher: asyncio.Future[None]) -> None:
        """:meth:`wait_disconnect` ended: the client is gone (unless it was cancelled)."""
        if watcher.cancelled():
            return
        if watcher.exception() is not None:
            logger.error("receiving from the client failed", exc_info=watcher.exception())
        if self.subscription is not None:
            self.subscription.close(CloseReason.CLIENT_GONE)

    def deliver(self, subscription: Subscription) -> Awaitable[CloseReason]:
        options = self.options
        if isinstance(options, streams.SSEOptions):
            return streams.stream_sse(subscription, self.write, options, write_now=self.write_now)
        return streams.stream_websocket(
            subscription, self.send_frames, options, send_frames_now=self.send_frames_now
        )

    async def write(self, chunk: bytes) -> None:
        await self.send({"type": "http.response.body", "body": chunk, "more_body": True})

    def write_now(self, chunk: bytes) -> Awaitable[None] | None:
        """:meth:`write`, synchronously (for direct delivery): started at once, see
        :func:`~tornadose._compat.asyncio_tasks.start_eagerly`."""
        return start_eagerly(self.write(chunk))

    async def send_frames(self, frames: list[str]) -> None:
        for text in frames:
            await self.send({"type": "websocket.send", "text": text})

    def send_frames_now(self, frames: list[str]) -> Awaitable[None] | None:
        """:meth:`send_frames`, synchronously, as :meth:`write_now`."""
        return start_eagerly(self.send_frames(frames))

    async def last_frame(self, close: tuple[int, str]) -> None:
        if not self.websocket:
            await self.send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        with contextlib.suppress(RuntimeError):  # the connection closed meanwhile
            await self.send({"type": "websocket.close", "code": close[0], "reason": close[1]})

    def abort(self) -> None:
        """Nothing to do: the app returns, and the server drops a response left
        incomplete (SSE) or closes the WebSocket."""
