"""What the Tornado adapter writes to a connection's socket stream, recorded for tests.

The adapter writes a stream's bytes through ``_compat.write_stream`` (straight to the
socket when it can, else ``IOStream.write``), Tornado's own fallbacks through
``IOStream.write``. :func:`watch` names a stream whose writes a test wants (both
ways; the autouse fixture :func:`stream_writes` wraps ``write_stream``): each write is
reported once, with the very bytes object written and whether it backed up (had to
wait for the socket).
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tornadose.adapters.tornado import _compat as compat

__all__ = ["stream_writes", "watch"]

OnWrite = Callable[[bytes, bool], None]

_original = compat.write_stream
_watched: weakref.WeakKeyDictionary[Any, OnWrite] = weakref.WeakKeyDictionary()
#: Set while ``write_stream`` runs: its own ``IOStream.write`` is not a write of its own.
_inside: list[bool] = [False]


def watch(stream: Any, on_write: OnWrite) -> None:
    """Report every write to ``stream`` to ``on_write(data, backed_up)``."""
    _watched[stream] = on_write
    write = stream.write

    def recording(data: bytes) -> Any:
        written = write(data)
        if not _inside[0]:
            on_write(data, not written.done())
        return written

    stream.write = recording


def _recording(stream: Any, data: bytes) -> Awaitable[None] | None:
    _inside[0] = True
    try:
        written = _original(stream, data)
    finally:
        _inside[0] = False
    on_write = _watched.get(stream)
    if on_write is not None:
        on_write(data, written is not None)
    return written


@pytest.fixture(autouse=True)
def stream_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Record the writes of watched streams (autouse where imported)."""
    monkeypatch.setattr(compat, "write_stream", _recording)
