"""Answers that are not streams, on Tornado: documents (:class:`AnswerHandler`:
``schema.json``, ``asyncapi.json``, ``metrics``, presence) and the ``404`` of an
unknown channel (:class:`UnknownChannelHandler`).

Guarantees: whatever the method, the answer is the one
:func:`tornadose.http.documents.document_answer` (or
:func:`~tornadose.http.documents.not_found`) gives, with the request's
:class:`~tornadose.http.asyncapi.Site` for the AsyncAPI document, and the CORS
headers of the channels' policy; the same answers as the ASGI ``AnswerApp`` and
``ChannelsApp``.
"""

from __future__ import annotations

from collections.abc import Callable

from tornadose.adapters.tornado.answers import JSONErrorHandler, send_answer
from tornadose.http import routes
from tornadose.http.answer import Answer
from tornadose.http.channels import Channels
from tornadose.http.cors import CrossOrigin
from tornadose.http.documents import document_answer, not_found, site_of

__all__ = ["AnswerHandler", "UnknownChannelHandler"]


class AnswerHandler(JSONErrorHandler):
    """Answers with a computed :class:`~tornadose.http.answer.Answer` (documents,
    schemas), as :func:`tornadose.http.documents.document_answer` says."""

    allowed_methods = routes.METHODS[routes.Kind.ANSWER]

    def initialize(
        self, make_answer: Callable[[], Answer], cors: CrossOrigin | None = None
    ) -> None:
        """``make_answer`` builds the answer for each request (``cors``:
        :attr:`JSONErrorHandler.cors`)."""
        self.use_cors(cors)
        self.make_answer = make_answer

    def prepare(self) -> None:
        """Answer a CORS preflight, else send the answer, whatever the method."""
        if self.answer_preflight():
            return
        request = self.request
        where = site_of(request.path, request.host, request.protocol)
        send_answer(self, document_answer(request.method or "", self.make_answer, where))


class UnknownChannelHandler(JSONErrorHandler):
    """Answers every request, whatever the method, with the JSON ``404`` of an
    undeclared channel (``unknown_channel``)."""

    def initialize(self, channels: Channels) -> None:
        """Keep the channels (kept for the 0.x signature); the ``404`` carries their
        CORS headers."""
        self.channels = channels
        self.use_cors(routes.cross_origin(channels, None))

    def prepare(self) -> None:
        """Answer ``404``."""
        send_answer(self, not_found(self.request.path))
