"""The base of every ASGI subscriber app (:class:`SubscriberApp`): admission,
registration and supervision of one stream per request.

Guarantees: a request is admitted (method, handshake, origin, the authorize hook)
before anything registers, in a coroutine that is over before streaming starts (what
admission parsed is not kept for the stream's life); a WebSocket is accepted before
it registers (a closed store then closes it with its close code), an event stream's
headers go out as soon as it registers (a closed store answers ``204``); delivery
runs under :func:`tornadose.delivery.session.serve`, counted in the app's
:attr:`~SubscriberApp.lifecycle`; the client's disconnect closes the subscription at
once. Lifespan scopes are ignored (served alone, the server goes on).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from tornadose.adapters.asgi.answers import refuse, send_answer
from tornadose.adapters.asgi.protocol import Receive, Scope, Send, request_of
from tornadose.adapters.asgi.stream import Stream
from tornadose.core.reasons import CloseReason
from tornadose.core.store import BaseStore
from tornadose.delivery import streams
from tornadose.delivery.close import close_code_for
from tornadose.delivery.lifecycle import Lifecycle
from tornadose.delivery.session import serve
from tornadose.http import subscribe
from tornadose.http.answer import Answer, raw_headers
from tornadose.wire import sse

__all__ = ["Read", "SubscriberApp"]

#: The SSE response headers, encoded once for every stream.
_SSE_HEADERS = raw_headers(sse.RESPONSE_HEADERS)

#: What reads an app's keyword options: the endpoint, and how its stream is written.
Read = Callable[[BaseStore, Any], tuple[subscribe.Subscribing, streams.StreamOptions]]


class SubscriberApp:
    """An ASGI app admitting subscribers and streaming to them, with the options
    ``read`` makes of its keyword options; its streams count in :attr:`lifecycle`
    (the one given, else one of its own)."""

    #: The stream options (set by the subclass's ``__init__``).
    options: streams.StreamOptions
    #: Who may subscribe.
    access: subscribe.Access

    def __init__(self, store: BaseStore, read: Read, options: Mapping[str, Any]) -> None:
        options = dict(options)
        self.lifecycle = options.pop("lifecycle", None) or Lifecycle(type(self).__name__)
        self.endpoint, self.options = read(store, options)
        self.access = self.endpoint
        self.store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return  # lifespan: nothing to start or stop (served alone, uvicorn goes on)
        # Admitted in a coroutine of its own, which is over before streaming starts:
        # what admission parsed (the request, its header strings) is not kept for the
        # stream's life (the scope is: the server holds it anyway).
        stream = await self._admit(scope, receive, send)
        subscription = stream.subscription if stream is not None else None
        if stream is None or subscription is None:
            return
        if not stream.websocket:
            try:
                await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
                await stream.write(b"")  # an empty chunk: the server sends the headers now
            except BaseException:  # the client left (or the task was cancelled) first
                subscription.close(CloseReason.CLIENT_GONE)
                raise
        watcher = asyncio.ensure_future(stream.wait_disconnect())
        watcher.add_done_callback(stream.disconnected)
        try:
            await serve(subscription, stream, self.lifecycle)
        finally:
            watcher.cancel()

    async def _admit(self, scope: Scope, receive: Receive, send: Send) -> Stream | None:
        """Admit the request and register its stream (with its subscription), or
        answer a refusal (``None``)."""
        request = request_of(scope)
        if request.websocket and (await receive())["type"] != "websocket.connect":
            return None
        registrar = await self.admission(request)
        if isinstance(registrar, Answer):
            await refuse(scope, send, registrar)
            return None
        websocket = self.access.kind is subscribe.Kind.WEBSOCKET
        stream = Stream(self.options, websocket, send, receive)
        if stream.websocket:  # accepted before registering: a closed store closes it
            await send({"type": "websocket.accept"})
        outcome = registrar(stream)
        if isinstance(outcome, Answer):
            await send_answer(send, outcome)
        elif isinstance(outcome, CloseReason):
            code, text = close_code_for(outcome)
            await send({"type": "websocket.close", "code": code, "reason": text})
        else:
            stream.subscription = outcome
            return stream
        return None

    async def admission(self, request: subscribe.Request) -> Answer | subscribe.Registrar:
        """The refusal to send, or what registers the stream once it is open."""
        return await subscribe.admission(self.endpoint, request)
