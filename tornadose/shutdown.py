"""Ending the open streams of a server, or of the whole process, for a shutdown.

The public face of :mod:`tornadose.delivery.lifecycle`. Each server or app has a
:class:`Lifecycle` of its own (``ChannelsApp(...).lifecycle``, ``lifecycle_of(application)``
for Tornado): :meth:`Lifecycle.shut_down` drains that server's streams, waits for
them, stops the server and closes what it held, while the other servers of the
process keep serving; :func:`shut_down_together` does it for several servers that
stop at once. :func:`drain` closes every open stream of every server in the process,
for good (until :func:`reset`). ``SIGINT``/``SIGTERM`` drain the process once
:func:`install_signal_handlers` ran (the adapters call it when a stream opens).
"""

from tornadose.delivery.lifecycle import (
    DEFAULT_DEADLINE,
    PROCESS,
    Lifecycle,
    Step,
    install_signal_handlers,
    open_streams,
    shut_down_together,
)
from tornadose.delivery.lifecycle import drain_process as drain
from tornadose.delivery.lifecycle import process_draining as draining
from tornadose.delivery.lifecycle import reset_process as reset
from tornadose.delivery.lifecycle import wait_process_streams_ended as wait_streams_ended

#: Count a stream in the process's lifecycle (``shutdown.streaming(subscription, cut)``,
#: as before lifecycles): :meth:`Lifecycle.streaming` of :data:`PROCESS`.
streaming = PROCESS.streaming

__all__ = [
    "DEFAULT_DEADLINE",
    "PROCESS",
    "Lifecycle",
    "Step",
    "drain",
    "draining",
    "install_signal_handlers",
    "open_streams",
    "reset",
    "shut_down_together",
    "streaming",
    "wait_streams_ended",
]
