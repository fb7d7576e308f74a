"""Answers that are not streams, over ASGI (:class:`AnswerApp`): ``schema.json``,
``asyncapi.json``, ``metrics``, presence.

Guarantees: whatever the method, the answer is the one
:func:`tornadose.http.documents.document_answer` gives, with the request's
:class:`~tornadose.http.asyncapi.Site` (:func:`site`: full path, mount path and
``root_path`` included, and ``Host``) for the AsyncAPI document; the same answers as
the Tornado ``AnswerHandler``. A WebSocket at its URL is closed with ``1008``.
"""

from __future__ import annotations

from collections.abc import Callable

from tornadose.adapters.asgi.answers import http_only, send_answer
from tornadose.adapters.asgi.protocol import Receive, Scope, Send, request_of
from tornadose.http.answer import Answer
from tornadose.http.documents import Site, document_answer, site_of

__all__ = ["AnswerApp", "site"]


class AnswerApp:
    """An ASGI app answering with a computed :class:`Answer`, as
    :func:`tornadose.http.documents.document_answer` says."""

    def __init__(self, make_answer: Callable[[], Answer]) -> None:
        self.make_answer = make_answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await http_only(scope, send):
            answer = document_answer(scope["method"], self.make_answer, site(scope))
            await send_answer(send, answer)


def site(scope: Scope) -> Site:
    """Where the client sees the channels of a document request: the full path
    (``root_path``, hence any mount path, included) and ``Host`` of ``scope``."""
    host = request_of(scope).headers.get("host")
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and not path.startswith(root):  # a server that leaves root_path out of path
        path = root + path
    return site_of(path, host, scope.get("scheme", "http"))
