"""CORS over ASGI: an app under the rules of :mod:`tornadose.http.cors`.

Guarantees: with rules, a preflight is answered as they decide (granted ``204`` or
refused ``403``) and never reaches the app; every other HTTP answer gets their
headers on its ``http.response.start``, whatever its status; WebSocket scopes pass
through untouched (their origin check applies); without rules, the app is returned
as it is. The same decision the Tornado handlers carry out.
"""

from __future__ import annotations

from tornadose.adapters.asgi.answers import send_answer
from tornadose.adapters.asgi.protocol import ASGIApp, ASGIMessage, Receive, Scope, Send, request_of
from tornadose.http.answer import raw_headers
from tornadose.http.cors import CrossOrigin

__all__ = ["adding_cors", "with_cors"]


def with_cors(app: ASGIApp, cors: CrossOrigin | None) -> ASGIApp:
    """``app`` under the CORS rules ``cors`` (:mod:`tornadose.http.cors`, as the Tornado
    handlers follow them): a preflight is answered here, every other HTTP answer
    gets the CORS headers; WebSocket scopes pass through (their origin check applies).
    ``app`` itself without rules."""
    if cors is None:
        return app

    async def cross_origin(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request = request_of(scope)
            preflight = cors.preflight(request.method, request.headers)
            if preflight is not None:
                await send_answer(send, preflight)
                return
            send = adding_cors(scope, send, cors)
        await app(scope, receive, send)

    return cross_origin


def adding_cors(scope: Scope, send: Send, cors: CrossOrigin | None) -> Send:
    """``send``, adding the CORS headers of ``cors`` for the request of ``scope`` to
    the response's start."""
    request = request_of(scope)
    headers = raw_headers(cors.headers(request.method, request.headers)) if cors else []
    if not headers:
        return send

    async def sending(message: ASGIMessage) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *headers]}
        await send(message)

    return sending
