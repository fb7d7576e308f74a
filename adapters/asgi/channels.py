"""Every channel of a :class:`~tornadose.http.channels.Channels` as one ASGI app
(:class:`ChannelsApp`), mounted anywhere.

Guarantees: one app per row of :func:`tornadose.http.routes.served`, at the same
paths (under the prefix, relative to where it is mounted), with the same options
and each endpoint's CORS rules, as the Tornado ``channel_handlers``; any other path
gets the JSON ``404`` ``unknown_channel``; its streams share one lifecycle, which
lifespan shutdown drains before the stores are closed (unless another server still
serves them).
"""

from __future__ import annotations

from collections.abc import Callable

from tornadose.adapters.asgi.answers import refuse
from tornadose.adapters.asgi.cors import adding_cors, with_cors
from tornadose.adapters.asgi.documents import AnswerApp
from tornadose.adapters.asgi.eventsource import EventSourceApp
from tornadose.adapters.asgi.multichannel import MultiEventSourceApp, MultiWebSocketApp
from tornadose.adapters.asgi.protocol import ASGIApp, Receive, Scope, Send, route_path
from tornadose.adapters.asgi.publishing import PublishApp
from tornadose.adapters.asgi.websocket import WebSocketApp
from tornadose.delivery.lifecycle import Lifecycle
from tornadose.http import routes
from tornadose.http.channels import Channels
from tornadose.http.documents import not_found

__all__ = ["ChannelsApp"]


_APPS: dict[routes.Kind, Callable[..., ASGIApp]] = {
    routes.Kind.EVENTS: EventSourceApp,
    routes.Kind.WEBSOCKET: WebSocketApp,
    routes.Kind.PUBLISH: PublishApp,
    routes.Kind.ANSWER: AnswerApp,
    routes.Kind.MULTI_EVENTS: MultiEventSourceApp,
    routes.Kind.MULTI_WEBSOCKET: MultiWebSocketApp,
}
_STREAMS = frozenset(
    {
        routes.Kind.EVENTS,
        routes.Kind.WEBSOCKET,
        routes.Kind.MULTI_EVENTS,
        routes.Kind.MULTI_WEBSOCKET,
    }
)


class ChannelsApp:
    """ASGI app serving every channel of a :class:`~tornadose.http.channels.Channels`
    at the URLs of :mod:`tornadose.http.routes`, under the channels' ``prefix``,
    relative to where it is mounted (``root_path``); unknown paths get ``404``
    (``unknown_channel``).

    It owns a :class:`~tornadose.delivery.lifecycle.Lifecycle` (:attr:`lifecycle`,
    or the one given) shared by its streams. Served directly by an ASGI server it
    also handles lifespan: startup registers it as serving its channels
    (:meth:`~tornadose.http.channels.Channels.serve_from`); shutdown drains that
    lifecycle (not the process), waits for its streams to end, then closes the stores
    unless another server still serves them (see
    :meth:`~tornadose.http.channels.Channels.stop_serving_from`). An app whose
    lifespan never starts (mounted with ``app.mount``: Starlette sends no lifespan to
    mounts) never counts as a server, so it keeps no other server's shutdown from
    closing the stores.
    """

    def __init__(self, channels: Channels, *, lifecycle: Lifecycle | None = None) -> None:
        self.channels = channels
        self.lifecycle = lifecycle or Lifecycle("ChannelsApp")
        streaming = {"lifecycle": self.lifecycle}
        self._apps: dict[str, ASGIApp] = {
            r.path: with_cors(
                _APPS[r.kind](**r.options, **(streaming if r.kind in _STREAMS else {})),
                routes.cross_origin(channels, r.kind),
            )
            for r in routes.served(channels)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        self.channels.presence.start()  # if not yet (no lifespan): a no-op once running
        path = route_path(scope)
        app = self.app_for(path)
        if app is not None:
            await app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await receive()
        else:
            send = adding_cors(scope, send, routes.cross_origin(self.channels, None))
        await refuse(scope, send, not_found(path))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start_serving()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shut_down()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def start_serving(self) -> None:
        """What lifespan startup does: count this app as a server of its channels
        until :meth:`shut_down` (see
        :meth:`~tornadose.http.channels.Channels.serve_from`)."""
        self.channels.serve_from(self)

    async def shut_down(self) -> None:
        """What lifespan shutdown does: drain :attr:`lifecycle` (new subscribers are
        refused, open streams end), then close the stores unless another server still
        serves them (see :meth:`~tornadose.http.channels.Channels.stop_serving_from`)."""
        last = self.channels.stop_serving_from(self)
        await self.lifecycle.shut_down(close=[self.channels.aclose] if last else [])

    def app_for(self, path: str) -> ASGIApp | None:
        """The app serving ``path`` (relative to where this app is mounted, prefix
        included: ``/api/chat/events``), ``None`` if it serves nothing there."""
        return self._apps.get(path)
