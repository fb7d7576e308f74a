"""The Server-Sent Events app (:class:`EventSourceApp`) and its options.

Guarantees: ``GET`` only (other methods get ``405``); the options are those of the
Tornado ``EventSource`` (:class:`~tornadose.http.routes.EventsOptions`, read by
:func:`tornadose.http.routes.sse_endpoint`, so a bad one raises when the app is
made), plus the app's ``lifecycle``; a closed store answers ``204``; otherwise as
:class:`~tornadose.adapters.asgi.subscriber.SubscriberApp` says.
"""

from __future__ import annotations

from typing import Unpack

from tornadose.adapters.asgi.subscriber import SubscriberApp
from tornadose.core.store import BaseStore
from tornadose.delivery.lifecycle import Lifecycle
from tornadose.http import routes

__all__ = ["EventSourceApp", "EventSourceAppOptions"]


class EventSourceAppOptions(routes.EventsOptions, total=False):
    """The options of :class:`EventSourceApp`: the Tornado ``EventSource``'s
    (:class:`~tornadose.http.routes.EventsOptions`), and the app's ``lifecycle``."""

    lifecycle: Lifecycle | None


class EventSourceApp(SubscriberApp):
    """ASGI app streaming a store as Server-Sent Events (options:
    :class:`EventSourceAppOptions`). ``GET`` only: other methods get ``405``; a
    closed store answers ``204``."""

    def __init__(self, store: BaseStore, **options: Unpack[EventSourceAppOptions]) -> None:
        super().__init__(store, routes.sse_endpoint, options)
