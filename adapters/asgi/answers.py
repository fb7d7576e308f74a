"""Sending a core :class:`~tornadose.http.answer.Answer` over ASGI: as an HTTP
response, or as the refusal of a WebSocket handshake.

Guarantees: an answer goes out with exactly its status, headers and body; a refused
handshake gets the HTTP answer where the server supports it (the
``websocket.http.response`` extension), else a close with ``1008`` before it is
accepted; a WebSocket at an HTTP-only URL is closed with ``1008``.
"""

from __future__ import annotations

from tornadose.adapters.asgi.protocol import CLOSE_POLICY_VIOLATION, Scope, Send
from tornadose.http.answer import Answer, raw_headers, response_headers

__all__ = ["http_only", "refuse", "refuse_websocket", "send_answer"]


async def send_answer(send: Send, answer: Answer) -> None:
    """Send a complete :class:`~tornadose.http.answer.Answer` as the HTTP response."""
    headers = raw_headers(response_headers(answer))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


async def refuse_websocket(scope: Scope, send: Send, answer: Answer) -> None:
    """Refuse a WebSocket handshake: with the HTTP answer where the server supports
    it, else by closing with ``1008`` before accepting."""
    if "websocket.http.response" in scope.get("extensions", {}):
        headers = raw_headers(response_headers(answer))
        start = {"type": "websocket.http.response.start", "status": answer.status}
        await send({**start, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": answer.body})
    else:
        await send({"type": "websocket.close", "code": CLOSE_POLICY_VIOLATION})


async def refuse(scope: Scope, send: Send, answer: Answer) -> None:
    """Send ``answer`` as the refusal of ``scope``'s request, HTTP or WebSocket."""
    if scope["type"] == "websocket":
        await refuse_websocket(scope, send, answer)
    else:
        await send_answer(send, answer)


async def http_only(scope: Scope, send: Send) -> bool:
    """Whether ``scope`` is an HTTP request; a WebSocket is closed with ``1008``."""
    http: bool = scope["type"] == "http"
    if not http:
        await send({"type": "websocket.close", "code": CLOSE_POLICY_VIOLATION})
    return http
