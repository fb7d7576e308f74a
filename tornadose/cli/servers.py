"""The servers the command runs (uvicorn, Tornado), how a stop is requested, and how
each server stops.

Both commands stop a server the same way: its own lifecycle's
:meth:`~tornadose.delivery.lifecycle.Lifecycle.shut_down` (or
:func:`~tornadose.delivery.lifecycle.shut_down_together` for the demo's two servers),
given the ``stop`` built here: :func:`stop_uvicorn` or :func:`stop_tornado`. The
streams of that server are drained first, so neither server cuts a stream that could
end cleanly (uvicorn would close open WebSockets with ``1012``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

from tornadose.delivery.lifecycle import Step

if TYPE_CHECKING:
    import uvicorn
    from tornado.httpserver import HTTPServer

__all__ = [
    "CLOSE_TIMEOUT",
    "STOP_SIGNALS",
    "finish",
    "raise_failure",
    "stop_requested",
    "stop_tornado",
    "stop_uvicorn",
    "until_stopped",
    "uvicorn_server",
]

#: Seconds a stopping server gives its connections to close, once its streams were
#: drained (uvicorn: ``serve()`` to return; Tornado: ``close_all_connections()``).
CLOSE_TIMEOUT = 8.0
#: The signals that stop the command.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Seconds uvicorn waits for its last connections (stalled clients) before it cancels them.
GRACEFUL_TIMEOUT = 3


@contextlib.contextmanager
def stop_requested() -> Iterator[asyncio.Event]:
    """An event set by ``SIGINT``/``SIGTERM`` while the block runs.

    The handlers are the running loop's, removed when the block ends; the signals are
    unblocked once they are set (forked workers start with them blocked, see
    :func:`tornadose.cli.workers.fork_workers`). A signal only sets the event: the
    caller shuts down, once.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    try:
        yield stop
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)


async def until_stopped(stop: asyncio.Event, *running: asyncio.Task[Any]) -> None:
    """Return once ``stop`` is set or one of ``running`` (a server that failed or
    exited by itself) is done."""
    waiting = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([waiting, *running], return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
        await asyncio.wait({waiting})


def raise_failure(task: asyncio.Task[Any]) -> None:
    """Raise what ``task`` (a finished server) failed with, if it failed."""
    error = None if task.cancelled() else task.exception()
    if error is not None:
        raise error


def uvicorn_server(app: Any, **options: Any) -> uvicorn.Server:
    """A ``uvicorn.Server`` for ``app`` that leaves ``SIGINT``/``SIGTERM`` to the
    caller (:func:`stop_requested`), with lifespan off and quiet logs (``options``
    are ``uvicorn.Config``'s).

    uvicorn's own handlers would start its shutdown as soon as a signal arrives,
    before the streams were drained; here it stops only when :func:`stop_uvicorn`
    tells it to, after the drain.
    """
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield

    settings: dict[str, Any] = {
        "log_level": "warning",
        "lifespan": "off",
        "timeout_graceful_shutdown": GRACEFUL_TIMEOUT,
        **options,
    }
    return Server(uvicorn.Config(app, **settings))


def stop_uvicorn(server: uvicorn.Server, serving: asyncio.Task[Any]) -> Step:
    """The ``stop`` of a uvicorn server whose ``serve()`` runs as ``serving``: ask it
    to exit and wait until ``serve()`` returned (cancelled after
    :data:`CLOSE_TIMEOUT` s). A failure of ``serving`` stays in the task."""

    async def stop() -> None:
        server.should_exit = True
        await finish(serving, CLOSE_TIMEOUT)

    return stop


def stop_tornado(server: HTTPServer) -> Step:
    """The ``stop`` of a Tornado ``HTTPServer``: accept no new connection, then close
    the open ones (waiting at most :data:`CLOSE_TIMEOUT` s)."""

    async def stop() -> None:
        server.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.close_all_connections(), CLOSE_TIMEOUT)

    return stop


async def finish(task: asyncio.Task[Any], timeout: float) -> None:
    """Wait for ``task`` at most ``timeout`` seconds, then cancel it and wait. Does
    not raise the task's exception (read it from the task)."""
    await asyncio.wait({task}, timeout=timeout)
    if not task.done():
        task.cancel()
        await asyncio.wait({task})
