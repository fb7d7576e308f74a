"""Ending open streams when the server shuts down, without patching any server.

Streaming responses never end by themselves, so a server that waits for its
requests to finish before exiting (uvicorn does, for ``timeout_graceful_shutdown``,
by default forever) would hang on them. Every stream an adapter opens is *tracked*
here; :func:`drain` closes them all with
:attr:`~tornadose.subscription.CloseReason.SERVER_SHUTDOWN`: what is queued is
written, SSE responses end (clients reconnect), WebSockets close with ``1001``.
Adapters give each stream :data:`DEFAULT_DEADLINE` seconds after a drain before
cutting it, so a stalled client cannot hold the shutdown.

:func:`install_signal_handlers` chains a drain in front of the process's current
``SIGINT``/``SIGTERM`` handlers (uvicorn's, when running under uvicorn): the signal
drains the streams, then reaches the previous handler as before. The ASGI adapter
installs it when its first stream opens, in the main thread only. Call
:func:`drain` yourself to shut down some other way (a lifespan handler, a test).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import weakref
from collections.abc import Callable
from types import FrameType

from tornadose.subscription import CloseReason, Subscription

__all__ = ["DEFAULT_DEADLINE", "drain", "draining", "install_signal_handlers", "track"]

logger = logging.getLogger("tornadose.shutdown")

#: Seconds a stream may take to end after a drain before it is cut.
DEFAULT_DEADLINE = 5.0

_tracked: weakref.WeakSet[Subscription] = weakref.WeakSet()
_draining = False
#: The loop the signal handlers drain in (the latest one that installed them).
_loop: asyncio.AbstractEventLoop | None = None
#: Our handler for each signal, to tell whether it is still the installed one.
_installed: dict[int, Callable[[int, FrameType | None], None]] = {}


def track(subscription: Subscription) -> None:
    """Have :func:`drain` close ``subscription``; closes it at once if draining."""
    if _draining:
        subscription.close(CloseReason.SERVER_SHUTDOWN)
    else:
        _tracked.add(subscription)


def draining() -> bool:
    """Whether :func:`drain` was called (new streams are closed at once)."""
    return _draining


def drain() -> int:
    """Close every tracked stream with ``SERVER_SHUTDOWN``; returns how many.

    Streams opened afterwards are closed as soon as they open. Call from the event
    loop's thread.
    """
    global _draining
    _draining = True
    subscriptions = list(_tracked)
    for subscription in subscriptions:
        subscription.close(CloseReason.SERVER_SHUTDOWN)
    if subscriptions:
        logger.info("draining %d open stream(s) for shutdown", len(subscriptions))
    return len(subscriptions)


def reset() -> None:
    """Forget a past drain, so streams can open again (for servers restarted in-process)."""
    global _draining
    _draining = False


def install_signal_handlers(loop: asyncio.AbstractEventLoop | None = None) -> bool:
    """Drain on ``SIGINT``/``SIGTERM``, then run the handler that was there before.

    From the main thread only. A handler is installed unless ours is already the
    current one (a server that restores its own handlers when it stops, as uvicorn
    does, gets ours chained again next time); signals drain in the loop of the latest
    call. Returns whether a handler was installed by this call.
    """
    global _loop
    if threading.current_thread() is not threading.main_thread():
        return False
    _loop = loop or asyncio.get_running_loop()
    installed = False
    for signum in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(signum)
        if current is not _installed.get(signum):
            _installed[signum] = _chained(signum, current)
            signal.signal(signum, _installed[signum])
            installed = True
    return installed


def _chained(signum: int, previous: object) -> Callable[[int, FrameType | None], None]:
    def handler(received: int, frame: FrameType | None) -> None:
        if _loop is not None and not _loop.is_closed():
            _loop.call_soon_threadsafe(drain)
        if callable(previous):
            previous(received, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    return handler
