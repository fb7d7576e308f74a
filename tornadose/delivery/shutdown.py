"""Ending open streams when the server shuts down, without patching any server.

Streaming responses never end by themselves, so a server that waits for its
requests to finish before exiting (uvicorn does, for ``timeout_graceful_shutdown``,
by default forever) would hang on them. Every stream an adapter opens is counted
here while it is open (:func:`streaming`); :func:`drain` closes them all with
:attr:`~tornadose.core.subscription.CloseReason.SERVER_SHUTDOWN`: what is queued is
written, SSE responses end (clients reconnect), WebSockets close with ``1001``.
A stream still open :data:`DEFAULT_DEADLINE` seconds after a drain is cut (its
adapter aborts it), whatever state it was in, so a stalled client cannot hold the
shutdown.

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
from collections.abc import Callable, Coroutine
from types import FrameType

from tornadose.core.reasons import CloseReason
from tornadose.core.subscription import Subscription

__all__ = [
    "DEFAULT_DEADLINE",
    "drain",
    "draining",
    "install_signal_handlers",
    "open_streams",
    "streaming",
    "wait_streams_ended",
]

logger = logging.getLogger("tornadose.shutdown")

#: Seconds a stream may take to end after a drain before it is cut.
DEFAULT_DEADLINE = 5.0


class _OpenStream:
    """A stream counted by :func:`streaming`: how to cut it, and the drain's timer."""

    __slots__ = ("cut", "subscription", "timer")

    def __init__(self, subscription: Subscription, cut: Callable[[], object]) -> None:
        self.subscription = subscription
        self.cut = cut
        self.timer: asyncio.TimerHandle | None = None

    def __enter__(self) -> None:
        _open[id(self)] = self
        if _draining:
            self.begin_drain()

    def __exit__(self, *exc_info: object) -> None:
        del _open[id(self)]
        if self.timer is not None:
            self.timer.cancel()
        if not _open:
            for waiter in _idle_waiters:
                waiter.set()

    def begin_drain(self) -> None:
        """Close the subscription; cut the stream if it is still open after the deadline."""
        self.subscription.close(CloseReason.SERVER_SHUTDOWN)
        if self.timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # drain() outside the loop: nothing can be timed
                return
            self.timer = loop.call_later(DEFAULT_DEADLINE, self.cut)


#: The streams still open (until their final frame is written).
_open: dict[int, _OpenStream] = {}
_draining = False
#: Events set when the last open stream ends (one per :func:`wait_streams_ended` call).
_idle_waiters: set[asyncio.Event] = set()
#: The loop the signal handlers drain in (the latest one that installed them).
_loop: asyncio.AbstractEventLoop | None = None
#: Our handler for each signal, to tell whether it is still the installed one.
_installed: dict[int, Callable[[int, FrameType | None], None]] = {}
#: Drain tasks started by signals (kept so they are not garbage-collected).
_tasks: set[asyncio.Task[None]] = set()


def streaming(subscription: Subscription, cut: Callable[[], object]) -> _OpenStream:
    """Count ``subscription``'s stream as open for the duration of a ``with`` block.

    Adapters wrap each stream in it, final frame included, and give ``cut``: how to
    end the stream at once, even mid-write (abort the connection). On :func:`drain`
    (or at once, if a drain already started) the subscription is closed with
    ``SERVER_SHUTDOWN`` whatever state it is in, and ``cut`` is called if the stream
    is still open :data:`DEFAULT_DEADLINE` seconds later.
    """
    return _OpenStream(subscription, cut)


def open_streams() -> int:
    """How many streams are open (see :func:`streaming`)."""
    return len(_open)


async def wait_streams_ended(timeout: float) -> bool:
    """Wait until no stream is open, at most ``timeout`` seconds; whether none is."""
    if not _open:
        return True
    idle = asyncio.Event()
    _idle_waiters.add(idle)
    try:
        async with asyncio.timeout(timeout):
            await idle.wait()
    except TimeoutError:
        pass
    finally:
        _idle_waiters.discard(idle)
    return not _open


def draining() -> bool:
    """Whether :func:`drain` was called (new streams are closed at once)."""
    return _draining


def drain() -> int:
    """Close every open stream with ``SERVER_SHUTDOWN``, and cut those still open
    :data:`DEFAULT_DEADLINE` seconds later; returns how many streams were open.

    Streams opened afterwards are closed as soon as they open. Call from the event
    loop's thread.
    """
    global _draining
    _draining = True
    streams = list(_open.values())
    for stream in streams:
        stream.begin_drain()
    if streams:
        logger.info("draining %d open stream(s) for shutdown", len(streams))
    return len(streams)


def reset() -> None:
    """Forget a past drain, so streams can open again (for servers restarted in-process)."""
    global _draining
    _draining = False


def install_signal_handlers(loop: asyncio.AbstractEventLoop | None = None) -> bool:
    """On ``SIGINT``/``SIGTERM``: drain, wait until the streams have ended (at most
    :data:`DEFAULT_DEADLINE` s), then pass the signal to the handler that was there
    before (uvicorn's, which then finds no stream left to wait for).

    From the main thread only. A handler is installed unless ours is already the
    current one (a server that restores its own handlers when it stops, as uvicorn
    does, gets ours chained again next time); signals drain in the loop of the latest
    call. A second signal during a drain is passed on at once. Returns whether a
    handler was installed by this call.
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


SignalHandler = Callable[[int, FrameType | None], None]


def _chained(signum: int, previous: object) -> SignalHandler:
    def pass_on(received: int, frame: FrameType | None) -> None:
        if callable(previous):
            previous(received, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    async def drain_then_pass_on(received: int, frame: FrameType | None) -> None:
        drain()
        await wait_streams_ended(DEFAULT_DEADLINE)
        pass_on(received, frame)

    def handler(received: int, frame: FrameType | None) -> None:
        loop = _loop
        if _draining or loop is None or loop.is_closed():
            pass_on(received, frame)
        else:
            loop.call_soon_threadsafe(_spawn, drain_then_pass_on(received, frame))

    return handler


def _spawn(coroutine: Coroutine[None, None, None]) -> None:
    task = asyncio.ensure_future(coroutine)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
