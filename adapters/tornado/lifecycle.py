"""The lifecycle of a Tornado application's streams: one per ``Application``.

Tornado has no app object of its own to hang state on, so every stream a handler
opens counts in its ``Application``'s :class:`~tornadose.delivery.lifecycle.Lifecycle`,
made on first use and kept only while the application lives (a weak mapping):
draining one application ends its streams and leaves other servers of the process
serving.
"""

from __future__ import annotations

import weakref

from tornado.web import Application

from tornadose.delivery.lifecycle import Lifecycle

__all__ = ["lifecycle_of"]

_lifecycles: weakref.WeakKeyDictionary[Application, Lifecycle] = weakref.WeakKeyDictionary()


def lifecycle_of(application: Application) -> Lifecycle:
    """The :class:`~tornadose.delivery.lifecycle.Lifecycle` of ``application``'s
    streams (one per application, made on first use): ``lifecycle_of(app).drain()``
    ends that application's streams and leaves other servers in the process serving."""
    lifecycle = _lifecycles.get(application)
    if lifecycle is None:
        lifecycle = _lifecycles[application] = Lifecycle(f"tornado-{id(application):x}")
    return lifecycle
