"""HTTP publishing on Tornado (:class:`PublishHandler`): ``POST`` a JSON message.

Guarantees: what can be refused before the body (405, 401, 403, 415, 413 by
``Content-Length``) is refused before it is read; the body is kept only up to
``max_body`` (past it, ``413`` at once, and Tornado reads no further); the answer is
the one :class:`tornadose.http.publish.Publishing` gives, sent once, as the ASGI
``PublishApp`` sends it.
"""

from __future__ import annotations

from typing import Unpack

from tornado.web import stream_request_body

from tornadose.adapters.tornado.answers import JSONErrorHandler, send_answer
from tornadose.core.store import BaseStore
from tornadose.http.answer import Answer
from tornadose.http.cors import CrossOrigin
from tornadose.http.publish import Publishing, PublishOptions, too_large
from tornadose.http.request import joined_headers

__all__ = ["PublishHandler"]


@stream_request_body
class PublishHandler(JSONErrorHandler):
    """``POST`` a JSON message to publish it to ``store``, answered as
    :mod:`tornadose.http.publish` says. Options: those of
    :class:`~tornadose.http.publish.PublishOptions`; a body over ``max_body`` is not
    kept."""

    allowed_methods = ("POST",)

    def initialize(
        self,
        store: BaseStore,
        *,
        cors: CrossOrigin | None = None,
        **options: Unpack[PublishOptions],
    ) -> None:
        """Keep the store and options (and ``cors``: :attr:`JSONErrorHandler.cors`)."""
        self.use_cors(cors)
        self.publishing = Publishing(store, **options)
        self._body = self.publishing.body()
        self._answered = False

    def _send(self, answer: Answer | None) -> None:
        if answer is not None and not self._answered:
            self._answered = True
            send_answer(self, answer)

    async def prepare(self) -> None:
        """Answer a CORS preflight; refuse what can be refused before the body
        arrives (405/401/403/415/413)."""
        if self.answer_preflight():
            self._answered = True
            return
        headers = joined_headers(self.request.headers.get_all())
        self._send(await self.publishing.refuse(self.request.method or "", headers))

    def data_received(self, chunk: bytes) -> None:
        """Keep the body; past ``max_body`` answer ``413`` at once (Tornado then
        reads no further and closes the connection)."""
        if not self._answered and not self._body.add(chunk):
            self._send(too_large(self.publishing.max_body))

    async def post(self) -> None:
        """Publish the body."""
        if not self._answered:
            self._send(await self.publishing.answer(self._body, self.request.query))
