"""tornadose: publish/subscribe over Server-Sent Events and WebSockets.

The package's folders are its layers, each importing only the ones listed before it:

* :mod:`tornadose.wire`: the SSE and WebSocket wire formats, pure functions;
* :mod:`tornadose.schemas`: the pydantic models of the JSON bodies tornadose sends;
* :mod:`tornadose.core`: messages, ids, history, subscriptions and stores (asyncio only);
* :mod:`tornadose.backends`: where a channel's messages are ordered, numbered and kept
  (in memory, or Redis with the ``redis`` extra);
* :mod:`tornadose.delivery`: the one copy of every stream loop and its policies;
* :mod:`tornadose.http`: framework-neutral request decisions (admission, publishing,
  documents), returning answers and doing no I/O;
* :mod:`tornadose.adapters`: Tornado handlers and ASGI apps, thin translations;
* :mod:`tornadose.client` (Python client) and :mod:`tornadose.cli` (the command).

:mod:`tornadose._compat` fences the private APIs of asyncio and the OS in one place.
The modules at the top (``tornadose.stores``, ``tornadose.handlers``,
``tornadose.errors``, ``tornadose.auth``, ``tornadose.shutdown``) are the public
import paths, re-exporting from the layers. Names below are loaded on first use:
``import tornadose`` (or ``import tornadose.wire.sse``) loads nothing else.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tornadose._version import __version__
    from tornadose.backends.redis.store import RedisStore
    from tornadose.core.errors import (
        MessageValidationError,
        StoreClosed,
        StoreRefused,
        StoreUnavailable,
        SubscriptionClosed,
        TornadoseError,
        UnencodableMessage,
    )
    from tornadose.core.message import Message
    from tornadose.core.reasons import CloseReason, OverflowPolicy
    from tornadose.core.store import BaseStore, DataStore, Published, QueueStore
    from tornadose.core.subscription import StoreStats, Subscription
    from tornadose.http.channels import Channel, Channels

#: Public name -> the module defining it.
_EXPORTS = {
    "__version__": "tornadose._version",
    "MessageValidationError": "tornadose.core.errors",
    "StoreClosed": "tornadose.core.errors",
    "StoreRefused": "tornadose.core.errors",
    "StoreUnavailable": "tornadose.core.errors",
    "SubscriptionClosed": "tornadose.core.errors",
    "TornadoseError": "tornadose.core.errors",
    "UnencodableMessage": "tornadose.core.errors",
    "Message": "tornadose.core.message",
    "CloseReason": "tornadose.core.reasons",
    "OverflowPolicy": "tornadose.core.reasons",
    "BaseStore": "tornadose.core.store",
    "DataStore": "tornadose.core.store",
    "Published": "tornadose.core.store",
    "QueueStore": "tornadose.core.store",
    "StoreStats": "tornadose.core.subscription",
    "Subscription": "tornadose.core.subscription",
    "Channel": "tornadose.http.channels",
    "Channels": "tornadose.http.channels",
    "RedisStore": "tornadose.backends.redis.store",
}

__all__ = [
    "BaseStore",
    "Channel",
    "Channels",
    "CloseReason",
    "DataStore",
    "Message",
    "MessageValidationError",
    "OverflowPolicy",
    "Published",
    "QueueStore",
    "RedisStore",
    "StoreClosed",
    "StoreRefused",
    "StoreStats",
    "StoreUnavailable",
    "Subscription",
    "SubscriptionClosed",
    "TornadoseError",
    "UnencodableMessage",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tornadose' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
