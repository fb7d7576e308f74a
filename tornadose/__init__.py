"""tornadose: publish/subscribe over Server-Sent Events and WebSockets.

The core (this package) runs on plain asyncio and imports no web framework:
:mod:`tornadose.stores` (where messages are published), :mod:`tornadose.subscription`
(each subscriber's bounded queue), :mod:`tornadose.message`, :mod:`tornadose.sse` and
:mod:`tornadose.websocket` (wire formats) and :mod:`tornadose.streams` (the delivery
loops). :mod:`tornadose.redis_store` shares a channel between processes through Redis
(the ``redis`` extra). Framework adapters live in the :mod:`adapters` package;
:mod:`tornadose.handlers` is the Tornado one under its original name.
"""

from tornadose.errors import (
    MessageValidationError,
    StoreClosed,
    StoreUnavailable,
    SubscriptionClosed,
    TornadoseError,
    UnencodableMessage,
)
from tornadose.message import Message
from tornadose.stores import BaseStore, DataStore, Published, QueueStore
from tornadose.subscription import CloseReason, OverflowPolicy, StoreStats, Subscription

__version__ = "1.0.0.dev0"

__all__ = [
    "BaseStore",
    "CloseReason",
    "DataStore",
    "Message",
    "MessageValidationError",
    "OverflowPolicy",
    "Published",
    "QueueStore",
    "StoreClosed",
    "StoreStats",
    "StoreUnavailable",
    "Subscription",
    "SubscriptionClosed",
    "TornadoseError",
    "UnencodableMessage",
    "__version__",
]
