"""The enumerations of the model, in one leaf module that imports nothing.

Why a subscription closed (:class:`CloseReason`), what a full one does
(:class:`OverflowPolicy`), how it started (:class:`ResumeStatus`) and why a gap
could not be filled (:class:`ResetReason`). Every layer reads these; keeping them
here lets :mod:`tornadose.core.errors` name them without an import cycle.
"""

from __future__ import annotations

import enum

__all__ = ["CUT_REASONS", "CloseReason", "OverflowPolicy", "ResetReason", "ResumeStatus"]


class OverflowPolicy(enum.Enum):
    """What a full subscription does with a new message (see the module docstring)."""

    DISCONNECT = "disconnect"
    DROP_OLDEST = "drop_oldest"
    KEEP_LATEST = "keep_latest"


class CloseReason(enum.Enum):
    """Why a subscription was closed."""

    #: The client went away (the connection closed).
    CLIENT_GONE = "client_gone"
    #: The subscriber fell ``max_messages`` behind under ``OverflowPolicy.DISCONNECT``.
    SLOW_CONSUMER = "slow_consumer"
    #: The store was closed; queued messages are still delivered first.
    STORE_CLOSED = "store_closed"
    #: The subscriber was deregistered from the store.
    DEREGISTERED = "deregistered"
    #: The server is shutting down; queued messages are still delivered first.
    SERVER_SHUTDOWN = "server_shutdown"
    #: A write to the client took longer than the write timeout (a stalled client).
    WRITE_TIMEOUT = "write_timeout"


#: Reasons for which the server cuts a client off: adapters abort the connection at
#: once, even mid-write, and iterating the subscription raises. What was queued is
#: discarded (as it is when the client is gone).
CUT_REASONS = frozenset({CloseReason.SLOW_CONSUMER, CloseReason.WRITE_TIMEOUT})


class ResumeStatus(enum.Enum):
    """How a subscription started (see the module docstring)."""

    LIVE = "live"
    RESUMED = "resumed"
    RESET = "reset"


class ResetReason(enum.Enum):
    """Why a gap could not be filled."""

    #: The id is not of the form ``<epoch>-<offset>`` (or is too long).
    MALFORMED_ID = "malformed_id"
    #: The id is from another epoch: the store restarted, or it is another store's.
    UNKNOWN_EPOCH = "unknown_epoch"
    #: The id's offset is beyond the newest message: never published here.
    UNKNOWN_ID = "unknown_id"
    #: Messages after the id were published but are no longer in the history.
    HISTORY_TOO_SHORT = "history_too_short"
    #: The backend lost messages this client had not received (Redis restarted
    #: without them, or trimmed them before this server could read them).
    DATA_LOST = "data_lost"
    #: (Multi-channel connections) the client's cursor said it was subscribed to the
    #: channel but held no position in it: what it missed cannot be known.
    UNKNOWN_POSITION = "unknown_position"
