"""Stores, at the import path of tornadose 0.x (``from tornadose.stores import DataStore``).

The stores live in :mod:`tornadose.core.store`; ``RedisStore`` (the ``redis``
extra) in :mod:`tornadose.backends.redis` and is imported only when asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tornadose.core.reasons import OverflowPolicy
from tornadose.core.store import (
    DEFAULT_HISTORY,
    DEFAULT_MAX_QUEUE,
    DEFAULT_MAX_QUEUE_BYTES,
    BaseStore,
    DataStore,
    Published,
    QueueStore,
)

if TYPE_CHECKING:
    from tornadose.backends.redis.store import RedisStore

__all__ = [
    "DEFAULT_HISTORY",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_QUEUE_BYTES",
    "BaseStore",
    "DataStore",
    "OverflowPolicy",
    "Published",
    "QueueStore",
    "RedisStore",
]


def __getattr__(name: str) -> Any:
    if name == "RedisStore":
        from tornadose.backends.redis.store import RedisStore

        return RedisStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
