"""The ASGI calling convention as tornadose reads it: the types of an app and its
messages, and what a request's scope says (its headers, query, path).

Guarantees: header names and values are read as latin-1 (as ASGI servers pass
them), repeated headers joined as :func:`tornadose.http.request.joined_headers`
joins them for Tornado; a path is read relative to where the app is mounted
(``root_path``) whether or not the server leaves ``root_path`` in ``path``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from tornadose.http import subscribe
from tornadose.http.request import joined_headers

__all__ = [
    "CLOSE_POLICY_VIOLATION",
    "ASGIApp",
    "ASGIMessage",
    "Receive",
    "Scope",
    "Send",
    "request_of",
    "route_path",
]

Scope = MutableMapping[str, Any]
ASGIMessage = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[ASGIMessage]]
Send = Callable[[ASGIMessage], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The WebSocket close code for a refused handshake when the server cannot answer
#: with an HTTP status (no ``websocket.http.response`` extension): policy violation.
CLOSE_POLICY_VIOLATION = 1008


def request_of(scope: Scope) -> subscribe.Request:
    """The request of ``scope`` as the core reads requests: method, headers, query
    string, and whether it is a WebSocket handshake."""
    pairs = scope.get("headers", ())
    headers = joined_headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in pairs)
    query = scope.get("query_string", b"").decode("latin-1")
    websocket = scope["type"] == "websocket"
    return subscribe.Request(scope.get("method", "GET"), headers, query, websocket)


def route_path(scope: Scope) -> str:
    """The request path relative to where the app is mounted (``root_path``)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
