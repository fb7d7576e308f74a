"""Ending every open stream of the process for a shutdown (defined in
:mod:`tornadose.delivery.shutdown`)."""

from tornadose.delivery.shutdown import (
    DEFAULT_DEADLINE,
    drain,
    draining,
    install_signal_handlers,
    open_streams,
    reset,
    streaming,
    wait_streams_ended,
)

__all__ = [
    "DEFAULT_DEADLINE",
    "drain",
    "draining",
    "install_signal_handlers",
    "open_streams",
    "reset",
    "streaming",
    "wait_streams_ended",
]
