"""Forked worker processes sharing listening sockets (``tornadose serve --workers N``
on Tornado)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import traceback
from collections.abc import Callable

from tornadose.cli.servers import STOP_SIGNALS

__all__ = ["fork_workers"]


def fork_workers(count: int, work: Callable[[], None]) -> int:
    """Run ``work`` in ``count`` forked processes; pass ``SIGINT``/``SIGTERM`` on to
    them and wait for all. Returns 0 if every process stopped cleanly, else 1.

    The signals stay blocked while forking, so a signal arriving meanwhile is held
    until the processes are ready for it: ``work`` must unblock them once its
    handlers are set (:func:`tornadose.cli.servers.stop_requested` does). On Linux
    each process also gets ``SIGTERM`` if this one dies.
    """
    parent = os.getpid()
    children: set[int] = set()
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    for _ in range(count):
        pid = os.fork()
        if pid == 0:  # a worker: never return into the parent's code
            status = 0
            try:
                _die_with_parent(parent)
                work()
            except BaseException:
                traceback.print_exc()
                status = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(status)
        children.add(pid)

    def forward(signum: int, frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    status = 0
    while children:
        pid, wait_status = os.wait()
        children.discard(pid)
        code = os.waitstatus_to_exitcode(wait_status)
        if code != 0:
            print(f"tornadose serve: process {pid} exited with {code}", file=sys.stderr)
            status = 1
    return status


def _die_with_parent(parent: int) -> None:
    """Ask Linux to send this process ``SIGTERM`` when its parent dies."""
    if not sys.platform.startswith("linux"):
        return
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)
