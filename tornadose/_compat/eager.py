"""Run a coroutine synchronously up to its first suspension.

An ASGI ``send`` is a coroutine, but a server that is not backed up (uvicorn's
``send`` when its transport is not paused) runs it to the end without ever
suspending. :func:`start_eagerly` runs it right away, from a plain callback: if it
finishes, nothing more is needed (no task, no loop turn); if it suspends, the rest
is returned as an awaitable that the caller's task awaits later, which finishes it
exactly as a task would have (Python 3.12's eager tasks do the same for whole
tasks).

Only for coroutines that suspend on asyncio futures (or a bare ``yield``, as
``asyncio.sleep(0)``), that is every coroutine written for asyncio.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, ParamSpec, TypeVar

__all__ = ["run_in_task", "start_eagerly"]

P = ParamSpec("P")
R = TypeVar("R")

#: The context :func:`run_in_task` is running a function in, on this thread.
_running = threading.local()


def start_eagerly(coro: Coroutine[Any, Any, None]) -> Awaitable[None] | None:
    """Run ``coro`` until it first suspends.

    Returns ``None`` if it finished (an exception it raised propagates), or an
    awaitable that finishes it: it must be awaited, once, from a task of the same
    loop; until then ``coro`` waits where it suspended.
    """
    try:
        suspended_on = coro.send(None)
    except StopIteration:
        return None
    return _finish(coro, suspended_on, getattr(_running, "context", None))


def run_in_task(
    task: asyncio.Task[Any] | None,
    context: contextvars.Context,
    function: Callable[P, R],
    *args: P.args,
    **kwargs: P.kwargs,
) -> R:
    """Call ``function`` as if ``task`` were running it, and return its result: in
    ``context`` (a copy of the task's) and, from a loop callback, with
    :func:`asyncio.current_task` returning ``task`` (``None``: called from the task
    itself), so code that looks at its task (``asyncio.timeout``, anyio's cancel
    scopes) works, and a coroutine it starts eagerly and then hands to ``task`` sees
    one task and one context throughout."""
    _running.context = context
    try:
        if task is None:
            return context.run(function, *args, **kwargs)
        loop = task.get_loop()
        asyncio.tasks._enter_task(loop, task)
        try:
            return context.run(function, *args, **kwargs)
        finally:
            asyncio.tasks._leave_task(loop, task)
    finally:
        _running.context = None


@types.coroutine
def _finish(
    coro: Coroutine[Any, Any, None], suspended_on: Any, context: contextvars.Context | None
) -> Generator[Any, None, None]:
    """Drive ``coro`` to its end from the awaiting task, as ``asyncio.Task`` would.

    A task waits for the future the coroutine yielded, then resumes it with
    ``send(None)`` (the future's own ``__await__`` then reads the result) or, when
    the future failed or the task was cancelled meanwhile, with ``throw``. A
    coroutine started under :func:`run_in_task` goes on in the same ``context``, so
    a context variable it set before suspending is still set (and resettable) after.
    """
    run = context.run if context is not None else _call
    while True:
        try:
            if suspended_on is None:  # a bare yield: give the loop one turn
                yield None
            else:
                if not asyncio.isfuture(suspended_on):
                    raise RuntimeError(f"start_eagerly: cannot wait for {suspended_on!r}")
                suspended_on._asyncio_future_blocking = False
                yield from _wait_for(suspended_on)
        except BaseException as exc:  # handed to the coroutine, as a task does
            try:
                suspended_on = run(coro.throw, exc)
            except StopIteration:
                return
        else:
            try:
                suspended_on = run(coro.send, None)
            except StopIteration:
                return


def _call(function: Callable[..., Any], *args: Any) -> Any:
    return function(*args)


def _wait_for(future: asyncio.Future[Any]) -> Generator[Any, None, None]:
    """Wait for ``future`` without reading its result (the coroutine reads it)."""
    if not future.done():
        future._asyncio_future_blocking = True
        yield future
    if future.cancelled():
        raise asyncio.CancelledError()
    exc = future.exception()
    if exc is not None:
        raise exc
