"""Supervising one open stream, written once for every adapter.

An adapter opens a stream its framework's way, then hands :func:`serve` the
subscription and a :class:`Transport`: how to run the delivery loop, how to send
the last frame, how to drop the connection. :func:`serve` owns the rest, and every
rule here is the same on every adapter:

* **Lifecycle**: the stream counts as open in its server's
  :class:`~tornadose.delivery.lifecycle.Lifecycle` until it has ended, last frame
  included; a drain closes it with ``SERVER_SHUTDOWN``; one still open at the drain
  deadline is cut: delivery is interrupted and the connection dropped, with no last
  frame (its client is stuck).
* **Signals**: when a stream opens, ``SIGINT``/``SIGTERM`` are chained to drain the
  process first, then reach the handler that was there before (main thread only;
  see :func:`~tornadose.delivery.lifecycle.install_signal_handlers`).
* **Cut**: a subscription closed as a slow consumer or for a write timeout
  interrupts delivery at once, even in the middle of a stuck write.
* **Client gone**: the adapter closes the subscription with ``CLIENT_GONE`` when
  its framework reports the disconnect; an exception of
  :attr:`Transport.gone_errors` from delivery, or any exception once the client is
  gone, means the same. Nothing more is sent.
* **Errors**: any other exception from delivery is a bug: it is logged with its
  traceback, the subscription is closed (``DEREGISTERED``) and the stream ends
  cleanly (an SSE response completes, a WebSocket closes with ``1011``).
* **Last frame** (:func:`ending_for`): a stream that ended for any other reason
  gets one (the end of the SSE response; a WebSocket close frame with the code of
  :func:`~tornadose.delivery.close.close_code_for`, ``4001``/``4002`` for a cut
  one), sent within :data:`FINISH_TIMEOUT` seconds, else the connection is dropped.
  A cut SSE stream is dropped: SSE has no way to say why.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Coroutine
from typing import Any, Protocol

from tornadose.core.reasons import CUT_REASONS, CloseReason
from tornadose.core.subscription import Subscription
from tornadose.delivery.close import close_code_for
from tornadose.delivery.lifecycle import Lifecycle, OpenStream, install_signal_handlers

__all__ = [
    "CLOSE_INTERNAL_ERROR",
    "FINISH_TIMEOUT",
    "Ending",
    "Session",
    "Transport",
    "ending_for",
    "serve",
]

logger = logging.getLogger("tornadose.session")

#: Seconds the last frame of a stream may take to be sent before the connection is
#: dropped instead.
FINISH_TIMEOUT = 1.0

#: The WebSocket close code after an unexpected error in delivery (RFC 6455).
CLOSE_INTERNAL_ERROR = 1011
_ERROR_FRAME = (CLOSE_INTERNAL_ERROR, "internal error")


class Ending(enum.Enum):
    """How a stream ends once delivery is over."""

    #: Send the last frame: the end of the SSE response, or a WebSocket close frame.
    LAST_FRAME = "last frame"
    #: Drop the connection at once.
    ABORT = "abort"
    #: Nothing: the client is gone.
    NOTHING = "nothing"


def ending_for(reason: CloseReason, *, websocket: bool, at_deadline: bool = False) -> Ending:
    """How a stream whose subscription closed with ``reason`` ends (see the module
    docstring); ``at_deadline``: it was cut at a drain's deadline."""
    if reason is CloseReason.CLIENT_GONE:
        return Ending.NOTHING
    if at_deadline or (reason in CUT_REASONS and not websocket):
        return Ending.ABORT
    return Ending.LAST_FRAME


class Transport(Protocol):
    """What :func:`serve` needs from an adapter's connection."""

    #: Whether it is a WebSocket (a cut one gets a close frame with a code).
    websocket: bool
    #: Exceptions that mean "the client is gone" when raised by delivery.
    gone_errors: tuple[type[BaseException], ...]

    def deliver(self, subscription: Subscription) -> Awaitable[CloseReason]:
        """Run the delivery loop until the subscription closes; return why."""
        ...

    def last_frame(self, close: tuple[int, str]) -> Awaitable[None]:
        """End the stream gracefully; a WebSocket closes with ``close`` (code, text)."""
        ...

    def abort(self) -> None:
        """Drop the connection at once, with no last frame."""
        ...


class Session(OpenStream):
    """One stream under supervision (see the module docstring); :func:`serve` makes
    and runs one.

    It is also how the stream counts in its lifecycle (an
    :class:`~tornadose.delivery.lifecycle.OpenStream`, cut at a drain's deadline by
    :meth:`cut`) and its subscription's close callback (:meth:`__call__`): one object
    per stream, with no bound method kept for either role."""

    __slots__ = ("_at_deadline", "_fired", "_interruptible", "_task", "transport")

    def __init__(
        self, subscription: Subscription, transport: Transport, lifecycle: Lifecycle
    ) -> None:
        super().__init__(lifecycle, subscription)
        self.transport = transport
        self._task: asyncio.Task[Any] | None = None
        self._interruptible = False
        self._fired = False
        self._at_deadline = False

    def interrupt(self) -> None:
        """Stop delivery at once (cancel its task, once), even mid-write."""
        if self._interruptible and not self._fired and self._task is not None:
            self._fired = True
            self._task.cancel()

    def cut(self) -> None:
        """The drain's deadline passed with the stream still open: interrupt it; it
        ends with no last frame."""
        if self._interruptible and not self._fired:
            self._at_deadline = True
            self.interrupt()

    def __call__(self, subscription: Subscription) -> None:
        """The subscription closed: a cut (slow consumer, write timeout) interrupts
        delivery at once."""
        if subscription.close_reason in CUT_REASONS:
            self.interrupt()

    async def run(self) -> CloseReason:
        """Deliver until the subscription closes, then end the stream; returns why
        it closed. Runs in the task that delivers (it is the one interrupted).

        Delivery is awaited in this frame, not in a helper coroutine: an idle
        stream's task is parked through it, and every frame costs memory per stream."""
        self._task = asyncio.current_task()
        install_signal_handlers(asyncio.get_running_loop())
        subscription = self.subscription
        subscription.add_close_callback(self)
        with self:
            self._interruptible = True
            try:
                try:
                    reason = await self.transport.deliver(subscription)
                    close = close_code_for(reason)
                except asyncio.CancelledError:
                    if not self._interrupted_by_us():
                        raise  # the request itself is being cancelled
                    reason = subscription.close_reason or CloseReason.CLIENT_GONE
                    close = close_code_for(reason)
                except Exception as exc:
                    reason, close = self._failed(exc)
            finally:
                self._interruptible = False
                subscription.close(CloseReason.DEREGISTERED)
            await self._end(reason, close)
        return reason

    def _interrupted_by_us(self) -> bool:
        """Whether the cancellation being handled is our :meth:`interrupt` alone (then
        it is consumed), not the request's own."""
        task = self._task
        return self._fired and (task is None or task.uncancel() == 0)

    def _failed(self, exc: Exception) -> tuple[CloseReason, tuple[int, str]]:
        """Why delivery ended when it raised ``exc``, and the close frame a WebSocket
        then gets: the client is gone, or a bug (logged)."""
        subscription = self.subscription
        if (
            not isinstance(exc, self.transport.gone_errors)
            and subscription.close_reason is not CloseReason.CLIENT_GONE
        ):
            logger.exception("delivery of %r failed; ending the stream", subscription)
            subscription.close(CloseReason.DEREGISTERED)
            return CloseReason.DEREGISTERED, _ERROR_FRAME
        subscription.close(CloseReason.CLIENT_GONE)
        return CloseReason.CLIENT_GONE, close_code_for(CloseReason.CLIENT_GONE)

    async def _end(self, reason: CloseReason, close: tuple[int, str]) -> None:
        ending = ending_for(
            reason, websocket=self.transport.websocket, at_deadline=self._at_deadline
        )
        if ending is Ending.ABORT:
            self.transport.abort()
        elif ending is Ending.LAST_FRAME:
            failed: tuple[type[BaseException], ...] = (TimeoutError, *self.transport.gone_errors)
            try:
                await asyncio.wait_for(self.transport.last_frame(close), FINISH_TIMEOUT)
            except failed:
                self.transport.abort()


def serve(
    subscription: Subscription, transport: Transport, lifecycle: Lifecycle
) -> Coroutine[Any, Any, CloseReason]:
    """Supervise ``subscription``'s stream over ``transport``, counted in
    ``lifecycle``, until it has ended (see the module docstring): a coroutine that
    returns why it closed. Delivery runs in the task that awaits it, which a cut
    interrupts. (A plain function returning :meth:`Session.run`: no frame of its own
    stays parked under an idle stream.)"""
    return Session(subscription, transport, lifecycle).run()
