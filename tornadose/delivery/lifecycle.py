"""The open streams of a server, and how they end when it stops.

Streaming responses never end by themselves, so a server that waits for its
requests to finish before exiting (uvicorn does, by default forever) would hang on
them. Every stream an adapter opens is counted, while it is open, in the
:class:`Lifecycle` of the server or app that serves it (:meth:`Lifecycle.streaming`).
Draining a lifecycle closes its streams with
:attr:`~tornadose.core.reasons.CloseReason.SERVER_SHUTDOWN`: what is queued is
written, SSE responses end (clients reconnect), WebSockets close with ``1001``. A
stream still open ``deadline`` seconds after the drain is cut (its adapter aborts
it), whatever state it is in, so a stalled client cannot hold the shutdown.

Guarantees:

* **Per server**: draining one lifecycle touches only its own streams; streams of
  other lifecycles in the same process (another uvicorn server, a Tornado
  application) keep running, and they keep accepting new streams.
* **After a drain**, a stream that opens in that lifecycle is closed at once (the
  server is on its way out); :meth:`Lifecycle.reset` re-opens it, for a server
  restarted in-process.
* **The process** (:data:`PROCESS`, the functions of :mod:`tornadose.shutdown`):
  :func:`drain_process` drains every lifecycle at once, for good, as a
  ``SIGINT``/``SIGTERM`` does once :func:`install_signal_handlers` chained a drain
  in front of the process's handlers.
* :meth:`Lifecycle.shut_down` is the one shutdown sequence: drain, wait for the
  streams to end (at most the deadline), stop the server, close what it held;
  :func:`shut_down_together` runs it for several servers that stop at once and
  share what is closed (the demo's Tornado and uvicorn, sharing channels).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from types import FrameType

from tornadose.core.reasons import CloseReason
from tornadose.core.subscription import Subscription

__all__ = [
    "DEFAULT_DEADLINE",
    "PROCESS",
    "Lifecycle",
    "OpenStream",
    "Step",
    "drain_process",
    "install_signal_handlers",
    "open_streams",
    "process_draining",
    "reset_process",
    "shut_down_together",
    "wait_process_streams_ended",
]

logger = logging.getLogger("tornadose.shutdown")

#: Seconds a stream may take to end after a drain before it is cut.
DEFAULT_DEADLINE = 5.0
#: Seconds, on top of the deadline, that the shutdown sequence gives streams cut at
#: the deadline to end before it stops the server anyway.
CUT_GRACE = 1.0

#: One step of a shutdown: stop a server, close a store (an awaitable's factory).
Step = Callable[[], Awaitable[object]]

#: Every live lifecycle, for the process-wide drain.
_lifecycles: weakref.WeakSet[Lifecycle] = weakref.WeakSet()
#: Whether the whole process drains (a signal, or :func:`drain_process`).
_process_draining = False


class Lifecycle:
    """The open streams of one server or app, and their drain.

    ``name`` appears in logs. ``deadline``: seconds after a drain before a stream
    still open is cut (``None``: :data:`DEFAULT_DEADLINE`, read when the drain
    starts).
    """

    def __init__(self, name: str = "", *, deadline: float | None = None) -> None:
        self.name = name
        self.deadline = deadline
        #: The open streams (each its own key: no id number to keep per stream).
        self._open: dict[OpenStream, OpenStream] = {}
        self._draining = False
        self._idle_waiters: set[asyncio.Event] = set()
        _lifecycles.add(self)

    def streaming(self, subscription: Subscription, cut: Callable[[], object]) -> OpenStream:
        """Count ``subscription``'s stream as open for the duration of a ``with`` block.

        Adapters wrap each stream in it, final frame included, and give ``cut``: how
        to end the stream at once, even mid-write (abort the connection). On a drain
        (or at once, if one already started) the subscription is closed with
        ``SERVER_SHUTDOWN`` whatever state it is in, and ``cut`` is called if the
        stream is still open ``deadline`` seconds later. (An object that supervises
        a stream anyway can be that ``with`` block itself: see :class:`OpenStream`.)
        """
        return _CutBy(self, subscription, cut)

    @property
    def open_streams(self) -> int:
        """How many streams of this lifecycle are open."""
        return len(self._open)

    @property
    def draining(self) -> bool:
        """Whether this lifecycle (or the whole process) is draining."""
        return self._draining or _process_draining

    def drain(self) -> int:
        """Close every open stream with ``SERVER_SHUTDOWN``, and cut those still open
        ``deadline`` seconds later; returns how many were open. Streams opened
        afterwards are closed as soon as they open. Call from the event loop's thread."""
        self._draining = True
        streams = list(self._open.values())
        for stream in streams:
            stream.begin_drain()
        if streams:
            logger.info("%s: draining %d open stream(s) for shutdown", self, len(streams))
        return len(streams)

    def reset(self) -> None:
        """Forget a past drain of this lifecycle, so streams can open again."""
        self._draining = False

    async def wait_streams_ended(self, timeout: float) -> bool:
        """Wait until none of this lifecycle's streams is open, at most ``timeout``
        seconds; whether none is."""
        return await _wait_until_idle(self._idle_waiters, lambda: not self._open, timeout)

    async def shut_down(self, stop: Step | None = None, close: Iterable[Step] = ()) -> bool:
        """The shutdown sequence: drain this lifecycle, wait until its streams have
        ended (at most the deadline, plus :data:`CUT_GRACE` for the cut ones to go),
        ``await stop()`` (stop the server: for uvicorn, set ``should_exit`` and wait
        for ``serve()`` to return; for Tornado, ``HTTPServer.stop()`` and close its
        connections), then await each of ``close`` in order (close stores).

        Only this lifecycle's streams are drained: other servers of the process keep
        serving. Returns whether every stream had ended before the server was
        stopped. See :func:`shut_down_together` for several servers at once.
        """
        return await shut_down_together([(self, stop)], close)

    def _deadline(self) -> float:
        return DEFAULT_DEADLINE if self.deadline is None else self.deadline

    def _ended(self, stream: OpenStream) -> None:
        del self._open[stream]
        if not self._open:
            _wake(self._idle_waiters)
        if not _process_open():
            _wake(_process_idle_waiters)

    def __repr__(self) -> str:
        return f"<Lifecycle {self.name or hex(id(self))} open={len(self._open)}>"


class OpenStream:
    """A stream counted in a :class:`Lifecycle` while a ``with`` block on it runs:
    what :meth:`Lifecycle.streaming` returns, and the base class of an object that
    supervises a stream anyway (:class:`~tornadose.delivery.session.Session`), so
    that counting it costs no second object. Subclasses define :meth:`cut`."""

    __slots__ = ("lifecycle", "subscription", "timer")

    def __init__(self, lifecycle: Lifecycle, subscription: Subscription) -> None:
        self.lifecycle = lifecycle
        self.subscription = subscription
        #: The drain's deadline (set once a drain began).
        self.timer: asyncio.TimerHandle | None = None

    def cut(self) -> object:
        """End the stream at once, even mid-write: called if it is still open at the
        drain's deadline."""
        raise NotImplementedError

    def __enter__(self) -> None:
        self.lifecycle._open[self] = self
        if self.lifecycle.draining:
            self.begin_drain()

    def __exit__(self, *exc_info: object) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.lifecycle._ended(self)

    def begin_drain(self) -> None:
        """Close the subscription; cut the stream if it is still open after the deadline."""
        self.subscription.close(CloseReason.SERVER_SHUTDOWN)
        if self.timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # drained outside the loop: nothing can be timed
                return
            self.timer = loop.call_later(self.lifecycle._deadline(), self.cut)


class _CutBy(OpenStream):
    """An :class:`OpenStream` cut by calling a function (:meth:`Lifecycle.streaming`)."""

    __slots__ = ("_cut",)

    def __init__(
        self, lifecycle: Lifecycle, subscription: Subscription, cut: Callable[[], object]
    ) -> None:
        super().__init__(lifecycle, subscription)
        self._cut = cut

    def cut(self) -> object:
        return self._cut()


async def shut_down_together(
    servers: Iterable[tuple[Lifecycle, Step | None]], close: Iterable[Step] = ()
) -> bool:
    """:meth:`Lifecycle.shut_down` for several servers at once: drain every one of
    their lifecycles, wait until all their streams have ended (at most the longest
    deadline, plus :data:`CUT_GRACE`), await every server's ``stop`` (concurrently:
    one slow server does not hold the others), then each of ``close`` in order. If
    a ``stop`` fails, ``close`` still runs, then the first failure is raised.

    For servers that share what must be closed last (one ``Channels`` mounted on
    Tornado and uvicorn): the stores are closed once, after both servers stopped.
    Returns whether every stream had ended before the servers were stopped.
    """
    pairs = list(servers)
    for lifecycle, _ in pairs:
        lifecycle.drain()
    grace = max((lifecycle._deadline() for lifecycle, _ in pairs), default=0.0) + CUT_GRACE
    ended = all(
        await asyncio.gather(*(lifecycle.wait_streams_ended(grace) for lifecycle, _ in pairs))
    )
    stopped = await asyncio.gather(
        *(stop() for _, stop in pairs if stop is not None), return_exceptions=True
    )
    for closer in close:
        await closer()
    for outcome in stopped:  # the stores are closed even if a server failed to stop
        if isinstance(outcome, BaseException):
            raise outcome
    return ended


def _wake(waiters: set[asyncio.Event]) -> None:
    for waiter in waiters:
        waiter.set()


async def _wait_until_idle(
    waiters: set[asyncio.Event], idle: Callable[[], bool], timeout: float
) -> bool:
    if idle():
        return True
    event = asyncio.Event()
    waiters.add(event)
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        pass
    finally:
        waiters.discard(event)
    return idle()


# -- the process --------------------------------------------------------------------

#: The lifecycle of streams whose adapter was given none (apps and handlers used on
#: their own); the process-wide functions below cover it and every other one.
PROCESS = Lifecycle("process")
#: Events set when the process's last open stream ends.
_process_idle_waiters: set[asyncio.Event] = set()


def _process_open() -> int:
    return sum(lifecycle.open_streams for lifecycle in list(_lifecycles))


def open_streams() -> int:
    """How many streams are open in the whole process."""
    return _process_open()


def process_draining() -> bool:
    """Whether the whole process drains (:func:`drain_process` was called)."""
    return _process_draining


def drain_process() -> int:
    """Drain every lifecycle of the process, for good: every open stream is closed
    with ``SERVER_SHUTDOWN`` (cut after its lifecycle's deadline), and streams opened
    afterwards, in any lifecycle, are closed at once. Returns how many were open."""
    global _process_draining
    _process_draining = True
    return sum(lifecycle.drain() for lifecycle in list(_lifecycles))


def reset_process() -> None:
    """Forget a process-wide drain and the drains of every lifecycle (for servers
    restarted in-process, and tests)."""
    global _process_draining
    _process_draining = False
    for lifecycle in list(_lifecycles):
        lifecycle.reset()


async def wait_process_streams_ended(timeout: float) -> bool:
    """Wait until no stream of the process is open, at most ``timeout`` seconds;
    whether none is."""
    return await _wait_until_idle(_process_idle_waiters, lambda: not _process_open(), timeout)


# -- signals ------------------------------------------------------------------------

SignalHandler = Callable[[int, FrameType | None], None]

#: The loop the signal handlers drain in (the latest one that installed them).
_loop: asyncio.AbstractEventLoop | None = None
#: Our handler for each signal, to tell whether it is still the installed one.
_installed: dict[int, SignalHandler] = {}
#: Drain tasks started by signals (kept so they are not garbage-collected).
_tasks: set[asyncio.Task[None]] = set()


def install_signal_handlers(loop: asyncio.AbstractEventLoop | None = None) -> bool:
    """On ``SIGINT``/``SIGTERM``: drain the process, wait until its streams have
    ended (at most :data:`DEFAULT_DEADLINE` s), then pass the signal to the handler
    that was there before (uvicorn's, which then finds no stream left to wait for).

    From the main thread only (elsewhere: returns ``False``). A handler is installed
    unless ours is already the current one (a server that restores its own handlers
    when it stops, as uvicorn does, gets ours chained again next time); signals
    drain in the loop of the latest call. A second signal during a drain is passed
    on at once. Returns whether a handler was installed by this call.
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


def _chained(signum: int, previous: object) -> SignalHandler:
    def pass_on(received: int, frame: FrameType | None) -> None:
        if callable(previous):
            previous(received, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    async def drain_then_pass_on(received: int, frame: FrameType | None) -> None:
        drain_process()
        await wait_process_streams_ended(DEFAULT_DEADLINE)
        pass_on(received, frame)

    def handler(received: int, frame: FrameType | None) -> None:
        loop = _loop
        if _process_draining or loop is None or loop.is_closed():
            pass_on(received, frame)
        else:
            loop.call_soon_threadsafe(_spawn, drain_then_pass_on(received, frame))

    return handler


def _spawn(coroutine: Coroutine[None, None, None]) -> None:
    task = asyncio.ensure_future(coroutine)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)
