"""Several channels on one Tornado stream: :class:`MultiEventSource` (SSE) and
:class:`MultiWebSocket`, the handlers of ``{prefix}/_multi/events`` and
``{prefix}/_multi/ws``.

Guarantees: they admit, open and stream a set of channels and patterns exactly as
:mod:`tornadose.http.multi` decides (its endpoint and stream options from
:func:`~tornadose.http.multi.multi_endpoint`), with the single-channel handlers'
transport otherwise: the same as the ASGI ``MultiEventSourceApp`` and
``MultiWebSocketApp``.
"""

from __future__ import annotations

from collections.abc import Collection

from tornadose.adapters.tornado.answers import send_answer
from tornadose.adapters.tornado.eventsource import EventSource
from tornadose.adapters.tornado.websocket import WebSocketSubscriber
from tornadose.http import multi, subscribe
from tornadose.http.answer import Answer
from tornadose.http.channels import Channels
from tornadose.http.cors import CrossOrigin

__all__ = ["MultiEventSource", "MultiWebSocket"]


class MultiEventSource(EventSource):
    """Several channels and patterns on one SSE stream (``{prefix}/_multi/events``,
    see :mod:`tornadose.http.multi`). Options: ``channels`` and ``cors``."""

    def initialize(  # type: ignore[override]
        self, channels: Channels, *, cors: CrossOrigin | None = None
    ) -> None:
        """Keep the channels (their authorize hook and limits apply)."""
        self._fresh()
        self.use_cors(cors)
        self.tcp_user_timeout = None
        self.multi_endpoint, options = multi.multi_endpoint(channels, subscribe.Kind.SSE)
        self.sse_options = self.stream_options = options

    def prepare(self) -> None:
        """Answer a CORS preflight; refuse on method or handshake."""
        if not self.answer_preflight():
            refusal = subscribe.refuse_early(self.multi_endpoint, self._request())
            if refusal is not None:
                send_answer(self, refusal)

    async def admission(self, request: subscribe.Request) -> Answer | subscribe.Registrar:
        """Admit the set (:func:`tornadose.http.multi.admission`)."""
        return await multi.admission(self.multi_endpoint, request)


class MultiWebSocket(WebSocketSubscriber):
    """Several channels and patterns on one WebSocket (``{prefix}/_multi/ws``, see
    :mod:`tornadose.http.multi`). Options: ``channels`` and ``allowed_origins``."""

    def initialize(  # type: ignore[override]
        self, channels: Channels, *, allowed_origins: Collection[str] | None = None
    ) -> None:
        """Keep the channels (their authorize hook and limits apply)."""
        self._fresh()
        kind = subscribe.Kind.WEBSOCKET
        self.multi_endpoint, self.stream_options = multi.multi_endpoint(
            channels, kind, allowed_origins
        )

    def prepare(self) -> None:
        """Refuse what is not a handshake, or from a foreign origin."""
        refusal = subscribe.refuse_early(self.multi_endpoint, self._request())
        if refusal is not None:
            send_answer(self, refusal)

    async def admission(self, request: subscribe.Request) -> Answer | subscribe.Registrar:
        """Admit the set (:func:`tornadose.http.multi.admission`)."""
        return await multi.admission(self.multi_endpoint, request)
