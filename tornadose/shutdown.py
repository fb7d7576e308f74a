"""Ending every open stream of the process for a shutdown.

The process-wide face of :mod:`tornadose.delivery.lifecycle`: :func:`drain` closes
every open stream of every server in the process (each server's own drain is its
:class:`~tornadose.delivery.lifecycle.Lifecycle`). ``SIGINT``/``SIGTERM`` drain the
process once :func:`install_signal_handlers` ran (the adapters call it when their
first stream opens).
"""

from tornadose.delivery.lifecycle import (
    DEFAULT_DEADLINE,
    PROCESS,
    Lifecycle,
    install_signal_handlers,
    open_streams,
)
from tornadose.delivery.lifecycle import drain_process as drain
from tornadose.delivery.lifecycle import process_draining as draining
from tornadose.delivery.lifecycle import reset_process as reset
from tornadose.delivery.lifecycle import wait_process_streams_ended as wait_streams_ended

__all__ = [
    "DEFAULT_DEADLINE",
    "PROCESS",
    "Lifecycle",
    "drain",
    "draining",
    "install_signal_handlers",
    "open_streams",
    "reset",
    "wait_streams_ended",
]
