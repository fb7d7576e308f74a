"""The exceptions tornadose raises (defined in :mod:`tornadose.core.errors`)."""

from tornadose.core.errors import (
    MessageValidationError,
    StoreClosed,
    StoreRefused,
    StoreUnavailable,
    SubscriptionClosed,
    TornadoseError,
    UnencodableMessage,
)

__all__ = [
    "MessageValidationError",
    "StoreClosed",
    "StoreRefused",
    "StoreUnavailable",
    "SubscriptionClosed",
    "TornadoseError",
    "UnencodableMessage",
]
