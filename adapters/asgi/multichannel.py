"""Several channels on one ASGI stream: :class:`MultiEventSourceApp` (SSE) and
:class:`MultiWebSocketApp`, served by ``ChannelsApp`` at ``{prefix}/_multi/events``
and ``{prefix}/_multi/ws``.

Guarantees: they admit, open and stream a set of channels and patterns exactly as
:mod:`tornadose.http.multi` decides (endpoint and stream options from
:func:`~tornadose.http.multi.multi_endpoint`), with the single-channel apps'
transport otherwise: the same as the Tornado ``MultiEventSource`` and
``MultiWebSocket``.
"""

from __future__ import annotations

from collections.abc import Collection

from tornadose.adapters.asgi.subscriber import SubscriberApp
from tornadose.delivery.lifecycle import Lifecycle
from tornadose.http import multi, subscribe
from tornadose.http.answer import Answer
from tornadose.http.channels import Channels

__all__ = ["MultiApp", "MultiEventSourceApp", "MultiWebSocketApp"]


class MultiApp(SubscriberApp):
    """A multi-channel endpoint (:mod:`tornadose.http.multi`) as an ASGI app."""

    def __init__(
        self,
        channels: Channels,
        kind: subscribe.Kind,
        *,
        allowed_origins: Collection[str] | None = None,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        self.lifecycle = lifecycle or Lifecycle(type(self).__name__)
        self.multi_endpoint, self.options = multi.multi_endpoint(channels, kind, allowed_origins)
        self.access = self.multi_endpoint

    async def admission(self, request: subscribe.Request) -> Answer | subscribe.Registrar:
        """Admit the set (:func:`tornadose.http.multi.admission`)."""
        return await multi.admission(self.multi_endpoint, request)


class MultiEventSourceApp(MultiApp):
    """Several channels and patterns of ``channels`` on one SSE stream (see
    :mod:`tornadose.http.multi`); ``ChannelsApp`` serves it at ``{prefix}/_multi/events``."""

    def __init__(self, channels: Channels, *, lifecycle: Lifecycle | None = None) -> None:
        super().__init__(channels, subscribe.Kind.SSE, lifecycle=lifecycle)


class MultiWebSocketApp(MultiApp):
    """The same over WebSocket; ``ChannelsApp`` serves it at ``{prefix}/_multi/ws``."""

    def __init__(
        self,
        channels: Channels,
        *,
        allowed_origins: Collection[str] | None = None,
        lifecycle: Lifecycle | None = None,
    ) -> None:
        kind = subscribe.Kind.WEBSOCKET
        super().__init__(channels, kind, allowed_origins=allowed_origins, lifecycle=lifecycle)
