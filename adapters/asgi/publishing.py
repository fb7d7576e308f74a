"""HTTP publishing over ASGI (:class:`PublishApp`): ``POST`` a JSON message.

Guarantees: what can be refused before the body is refused before it is read; the
body is read only up to ``max_body`` (past it, ``413``); a body cut short by the
client's disconnect is never published; the answer is the one
:class:`tornadose.http.publish.Publishing` gives, as the Tornado ``PublishHandler``
sends it. A WebSocket at its URL is closed with ``1008``.
"""

from __future__ import annotations

from typing import Unpack

from tornadose.adapters.asgi.answers import http_only, send_answer
from tornadose.adapters.asgi.protocol import Receive, Scope, Send, request_of
from tornadose.core.store import BaseStore
from tornadose.http.publish import Publishing, PublishOptions

__all__ = ["PublishApp"]


class PublishApp:
    """ASGI app publishing the JSON body of a ``POST`` to a store, answered as
    :mod:`tornadose.http.publish` says; options as the Tornado ``PublishHandler``'s
    (the body is not read past ``max_body``)."""

    def __init__(self, store: BaseStore, **options: Unpack[PublishOptions]) -> None:
        self.publishing = Publishing(store, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not await http_only(scope, send):
            return
        request = request_of(scope)
        answer = await self.publishing.refuse(request.method, request.headers)
        body = self.publishing.body()
        while answer is None:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # a truncated body is never published, and nobody awaits an answer
            if not body.add(message.get("body", b"")) or not message.get("more_body", False):
                answer = await self.publishing.answer(body, request.query)
        await send_answer(send, answer)
