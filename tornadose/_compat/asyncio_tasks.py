"""Every use of asyncio's private API, behind a version check.

Direct delivery (:mod:`tornadose.delivery.direct`) writes to idle connections from
a plain event loop callback instead of waking each stream's task. Doing that as the
task would have needs two things asyncio does not offer publicly:

* :func:`run_in_task`: call a function with :func:`asyncio.current_task` returning a
  given task (``asyncio.tasks._enter_task`` / ``_leave_task``), so code that looks at
  its task (``asyncio.timeout``, anyio's cancel scopes) works from a callback;
* :func:`start_eagerly`: run a coroutine (an ASGI ``send``) synchronously up to its
  first suspension and let a task finish it later, which re-implements the part of
  ``Task.__step`` that waits for a future (the ``_asyncio_future_blocking`` flag).
  Python 3.12's eager tasks do the same for whole tasks.

Nothing else in tornadose touches these names. :data:`UNSUPPORTED` says why they
cannot be used here (``None`` when they can): they are known to behave as needed on
CPython 3.11 to 3.14; on another interpreter or version, or if a name is missing,
:mod:`tornadose.delivery.direct` turns the direct path off and every write goes out
from its stream's task, with public API only. Delivery then keeps every guarantee;
it only costs more per message.
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
import threading
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, ParamSpec, TypeVar

__all__ = ["KNOWN_GOOD", "UNSUPPORTED", "run_in_task", "start_eagerly", "unsupported_because"]

P = ParamSpec("P")
R = TypeVar("R")

#: The CPython versions (major, minor) whose private asyncio API this module is
#: known to use correctly, oldest and newest.
KNOWN_GOOD = ((3, 11), (3, 14))


def unsupported_because(
    implementation: str, version: tuple[int, int], tasks_module: object, future_type: type
) -> str | None:
    """Why the private API cannot be used on this interpreter, or ``None`` if it can.

    Pure (it reads only its arguments), so every branch can be tested: an
    interpreter other than CPython, a version outside :data:`KNOWN_GOOD`, or a
    missing ``_enter_task``/``_leave_task`` or ``Future._asyncio_future_blocking``.
    """
    if implementation != "cpython":
        return f"{implementation} is not CPython"
    oldest, newest = KNOWN_GOOD
    if not oldest <= version <= newest:
        shown = ".".join(map(str, version))
        return f"Python {shown} is not a version known to work (3.11 to 3.14)"
    missing = [
        f"asyncio.tasks.{name}"
        for name in ("_enter_task", "_leave_task")
        if not callable(getattr(tasks_module, name, None))
    ]
    if not hasattr(future_type, "_asyncio_future_blocking"):
        missing.append("asyncio.Future._asyncio_future_blocking")
    if missing:
        return f"{', '.join(missing)} missing"
    return None


#: Why the private asyncio API is off on this interpreter; ``None``: it is usable.
UNSUPPORTED: str | None = unsupported_because(
    sys.implementation.name, sys.version_info[:2], asyncio.tasks, asyncio.Future
)

#: The context :func:`run_in_task` is running a function in, on this thread.
_running = threading.local()


def start_eagerly(coro: Coroutine[Any, Any, None]) -> Awaitable[None] | None:
    """Run ``coro`` until it first suspends.

    Returns ``None`` if it finished (an exception it raised propagates), or an
    awaitable that finishes it: it must be awaited, once, from a task of the same
    loop; until then ``coro`` waits where it suspended. Only for coroutines that
    suspend on asyncio futures (or a bare ``yield``, as ``asyncio.sleep(0)``), that
    is every coroutine written for asyncio.

    When :data:`UNSUPPORTED`, nothing runs now: the returned awaitable is ``coro``
    itself, which the task runs in full.
    """
    if UNSUPPORTED is not None:
        return coro
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
    one task and one context throughout.

    When :data:`UNSUPPORTED`, ``task`` is not entered (:func:`asyncio.current_task`
    stays as it is); :mod:`tornadose.delivery.direct` never calls this from a
    callback then.
    """
    _running.context = context
    try:
        if task is None or UNSUPPORTED is not None:
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
