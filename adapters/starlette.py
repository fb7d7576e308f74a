"""Channels served from your own Starlette (and FastAPI) route functions.

Mounting (:class:`~tornadose.adapters.asgi.ChannelsApp`) serves every channel at
fixed URLs. Here the route is yours, and tornadose serves the request it is given,
with the mounted apps' rules, bounds and answers (the same apps run it)::

    endpoints = ChannelEndpoints(channels)

    async def events(request: Request) -> Response:
        return endpoints.events(request.path_params["room"])  # a Response to return

    async def ws(websocket: WebSocket) -> None:
        await endpoints.websocket(websocket.path_params["room"], websocket)

    app = Starlette(routes=[...], lifespan=endpoints.lifespan)

* :meth:`ChannelEndpoints.events` returns an :class:`ASGIResponse`: when the server
  sends it, the channel's :class:`~tornadose.adapters.asgi.EventSourceApp` runs on the
  request (admission with the ``authorize`` hook, resume by ``Last-Event-ID`` or
  ``?last_event_id=``, the stream, its supervision). Everything the route did first
  (a FastAPI dependency raising ``401``) came before: nothing registered.
* :meth:`ChannelEndpoints.websocket` takes the WebSocket *before* it is accepted and
  runs the channel's :class:`~tornadose.adapters.asgi.WebSocketApp` on it.
* :meth:`ChannelEndpoints.publish` answers a ``POST`` as ``PublishApp`` does (the
  JSON body is the message: ``202 {"id": ...}``, or the documented error).
* :meth:`ChannelEndpoints.document` answers a ``GET`` for a channel's ``schema.json``
  or the ``asyncapi.json`` of every channel (addresses as the request sees them).
* :meth:`ChannelEndpoints.options` answers an ``OPTIONS`` request at an endpoint's
  URL as the mounted URL does: a CORS preflight is granted (``204``) or refused
  (``403`` ``cors_refused``) by the channels' one decision
  (:mod:`tornadose.http.cors`), anything else gets the endpoint's ``405``. Serve it
  without your authenticating dependencies: browsers send preflights without
  credentials.
* A name that is not a channel gets the JSON ``404`` ``unknown_channel``.

Every answer (streams, refusals, publish results, documents, the ``404``) carries the
CORS headers of ``Channels(cors_origins=..., cors_credentials=...)`` as the mounted
apps' do: the same apps, under the same rule.

Every stream counts in one :class:`~tornadose.delivery.lifecycle.Lifecycle`;
:meth:`ChannelEndpoints.lifespan` (the app's ``lifespan``) drains it at shutdown and
closes the stores unless another server still serves them, as a mounted
``ChannelsApp`` does. To publish from code, ``await channels["chat"].publish(x)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.background import BackgroundTask
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from tornadose.adapters.asgi import (
    ASGIApp,
    ASGIMessage,
    ChannelsApp,
    Receive,
    Scope,
    Send,
    refuse_websocket,
    send_answer,
    with_cors,
)
from tornadose.delivery.lifecycle import Lifecycle
from tornadose.http.answer import Answer
from tornadose.http.channels import Channels, Endpoint, endpoint_path
from tornadose.http.documents import not_found
from tornadose.http.routes import cross_origin
from tornadose.wire import sse

__all__ = [
    "EVENT_STREAM",
    "ASGIResponse",
    "ChannelEndpoints",
    "EventStreamResponse",
    "answer_response",
    "serve_websocket",
]

#: The media type of a Server-Sent Events stream.
EVENT_STREAM = "text/event-stream"


class ASGIResponse(Response):
    """A response that hands the request to an ASGI app when sent: return it from a
    route function and ``app`` answers (or streams) with the request's own scope,
    ``receive`` and ``send``. Its headers are the app's: :attr:`headers` shows what a
    stream sends (``media_type``), not what an app refusing the request sends.

    Headers set on the response before it is sent (``response.headers["x-a"] = "1"``,
    ``response.set_cookie(...)``) are added to the app's ``http.response.start``,
    whatever its status (a refusal carries them too): each such header replaces the
    app's headers of that name, except ``set-cookie``, which is added to the app's.
    ``content-type`` and ``content-length`` stay the app's (it decides its body), and
    removing one of the initial headers removes nothing from what the app sends.
    Background tasks run once the app returns (a stream: once it ended)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
    ) -> None:
        self.app = app
        self.status_code = 200
        self.background = background
        self.body = b""
        self.media_type = media_type or self.media_type
        headers = sse.RESPONSE_HEADERS if self.media_type == EVENT_STREAM else ()
        self.raw_headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        self._initial_headers = list(self.raw_headers)

    def _added_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers set on this response since it was made, minus the body's own."""
        initial = list(self._initial_headers)
        added: list[tuple[bytes, bytes]] = []
        for name, value in self.raw_headers:
            if (name, value) in initial:
                initial.remove((name, value))  # one of the initial headers: the app's
            elif name.lower() not in _APP_DECIDES:
                added.append((name.lower(), value))
        return added

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        added = self._added_headers()
        if added and scope["type"] == "http":
            send = _adding_headers(send, added)
        await self.app(scope, receive, send)
        if self.background is not None:
            await self.background()


#: Headers of an :class:`ASGIResponse` that the app it runs decides alone.
_APP_DECIDES = frozenset({b"content-type", b"content-length"})


def _adding_headers(send: Send, added: list[tuple[bytes, bytes]]) -> Send:
    """``send``, adding ``added`` to the ``http.response.start`` message: each replaces
    the message's headers of its name, except ``set-cookie`` (appended)."""
    replaced = {name for name, _ in added if name != b"set-cookie"}

    async def sending(message: ASGIMessage) -> None:
        if message["type"] == "http.response.start":
            kept = [
                (name, value)
                for name, value in message.get("headers", ())
                if bytes(name).lower() not in replaced
            ]
            message = {**message, "headers": kept + added}
        await send(message)

    return sending


class EventStreamResponse(ASGIResponse):
    """An :class:`ASGIResponse` streaming Server-Sent Events (``text/event-stream``:
    FastAPI documents it so, as ``response_class``)."""

    media_type = EVENT_STREAM


def answer_response(answer: Answer) -> Response:
    """A :class:`~tornadose.http.answer.Answer` as a Starlette response (the same
    status, headers and JSON body the apps send)."""
    return Response(answer.body, status_code=answer.status, headers=dict(answer.headers))


async def serve_websocket(app: ASGIApp, websocket: WebSocket) -> None:
    """Run ``app`` (a :class:`~tornadose.adapters.asgi.WebSocketApp`) on ``websocket``,
    which must not be accepted yet: the app admits it (origin, ``authorize`` hook),
    accepts it, streams and closes it. Returns when the stream ended."""
    if websocket.client_state is not WebSocketState.CONNECTING:
        raise RuntimeError("hand the WebSocket over before accepting or reading it")

    async def send(message: ASGIMessage) -> None:
        try:
            await websocket.send(message)
        except WebSocketDisconnect as exc:  # Starlette's form of the client being gone
            raise ConnectionResetError(f"the client disconnected ({exc.code})") from exc

    await app(websocket.scope, websocket.receive, send)


class ChannelEndpoints:
    """Every channel of a :class:`~tornadose.http.channels.Channels`, served from your
    own route functions (see the module docstring). It holds one
    :class:`~tornadose.adapters.asgi.ChannelsApp` (:attr:`app`), built now: declare
    every channel first. Its streams count in :attr:`lifecycle` (the one given, else
    its own)."""

    def __init__(self, channels: Channels, *, lifecycle: Lifecycle | None = None) -> None:
        self.channels = channels
        self.app = ChannelsApp(channels, lifecycle=lifecycle)
        self.lifecycle = self.app.lifecycle

    def path(self, name: str | None, endpoint: Endpoint) -> str:
        """The path of channel ``name``'s ``endpoint`` under the channels' prefix
        (``name=None``: a document of every channel, ``/asyncapi.json``), as a mounted
        ``ChannelsApp`` serves it: ``/api/chat/events``."""
        return self.channels.prefix + endpoint_path(name, endpoint)

    def _app(self, name: str | None, endpoint: Endpoint) -> tuple[str, ASGIApp | None]:
        path = self.path(name, endpoint)
        return path, self.app.app_for(path)

    def _serving(self, name: str | None, endpoint: Endpoint) -> ASGIApp:
        """The app the mounted ``ChannelsApp`` runs at the URL of ``name``'s
        ``endpoint`` (CORS rules included), or the one answering its ``404``
        ``unknown_channel`` with the CORS headers of an unknown path."""
        path, app = self._app(name, endpoint)
        if app is not None:
            return app
        answer = not_found(path)

        async def unknown(scope: Scope, receive: Receive, send: Send) -> None:
            await send_answer(send, answer)

        return with_cors(unknown, cross_origin(self.channels, None))

    def events(self, name: str, *, background: BackgroundTask | None = None) -> Response:
        """The response streaming channel ``name`` as Server-Sent Events (as its
        mounted ``/events`` URL does); ``404`` ``unknown_channel`` if there is none."""
        app = self.app.app_for(self.path(name, Endpoint.EVENTS))
        if app is None:
            return ASGIResponse(self._serving(name, Endpoint.EVENTS), background=background)
        return EventStreamResponse(app, background=background)

    async def websocket(self, name: str, websocket: WebSocket) -> None:
        """Serve channel ``name`` on ``websocket`` (not accepted yet), as its mounted
        ``/ws`` URL does; a name that is no channel is refused with ``404``
        ``unknown_channel`` (or closed with ``1008`` where the server cannot answer
        a handshake with HTTP)."""
        path, app = self._app(name, Endpoint.WEBSOCKET)
        if app is None:
            await websocket.receive()  # the handshake: websocket.connect
            await refuse_websocket(websocket.scope, websocket.send, not_found(path))
            return
        await serve_websocket(app, websocket)

    def multi_events(self) -> Response:
        """The response streaming the request's channels and patterns as one SSE
        stream, as the mounted ``/_multi/events`` URL does (:mod:`tornadose.http.multi`)."""
        app = self.app.app_for(self.path(None, Endpoint.MULTI_EVENTS))
        assert app is not None  # every ChannelsApp serves it
        return EventStreamResponse(app)

    async def multi_websocket(self, websocket: WebSocket) -> None:
        """Serve the request's channels and patterns on ``websocket`` (not accepted
        yet), as the mounted ``/_multi/ws`` URL does."""
        app = self.app.app_for(self.path(None, Endpoint.MULTI_WEBSOCKET))
        assert app is not None
        await serve_websocket(app, websocket)

    def publish(self, name: str, *, background: BackgroundTask | None = None) -> Response:
        """The response publishing the request's JSON body to channel ``name``, as its
        mounted ``/publish`` URL answers (``202 {"id": ...}`` or the documented
        error); ``404`` if there is no channel ``name`` (or it is not publishable).
        The route must not have read the body."""
        return ASGIResponse(self._serving(name, Endpoint.PUBLISH), background=background)

    def document(self, name: str | None = None) -> Response:
        """The response serving channel ``name``'s ``schema.json`` (``name=None``: the
        ``asyncapi.json`` of every channel, its addresses as the request's full path
        and ``Host`` show them), as the mounted URL does: ``404`` ``unknown_channel``
        for a name that is no channel."""
        endpoint = Endpoint.ASYNCAPI if name is None else Endpoint.SCHEMA
        return ASGIResponse(self._serving(name, endpoint))

    def mounted(self, name: str | None, endpoint: Endpoint) -> Response:
        """The response the mounted URL of channel ``name``'s ``endpoint`` gives the
        request, whatever its method (``name=None``: ``Endpoint.ASYNCAPI``): for a
        method the endpoint does not serve, its JSON ``405`` with ``Allow``; ``HEAD``
        of a document, the document's headers."""
        return ASGIResponse(self._serving(name, endpoint))

    def options(self, name: str | None, endpoint: Endpoint) -> Response:
        """The response to an ``OPTIONS`` request at the URL of channel ``name``'s
        ``endpoint`` (``name=None``: ``Endpoint.ASYNCAPI``), as the mounted URL answers
        it: a CORS preflight is granted (``204`` with the grant) or refused (``403``
        ``cors_refused``) by :meth:`tornadose.http.cors.CrossOrigin.preflight` under
        the channels' policy; any other ``OPTIONS`` (or any, without a policy) gets
        the endpoint's JSON ``405``. Route it without authenticating dependencies:
        browsers send preflights without credentials."""
        return ASGIResponse(self._serving(name, endpoint))

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        """The app's lifespan (``Starlette(lifespan=...)``, a FastAPI router's): at
        startup, count :attr:`app` as a server of the channels
        (:meth:`~tornadose.adapters.asgi.ChannelsApp.start_serving`); at shutdown,
        drain :attr:`lifecycle` and close the stores unless another server still
        serves them (:meth:`~tornadose.adapters.asgi.ChannelsApp.shut_down`)."""
        self.app.start_serving()
        yield
        await self.app.shut_down()
