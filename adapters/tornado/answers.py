"""Answers and their errors on Tornado: sending a core
:class:`~tornadose.http.answer.Answer`, and the base handler of every tornadose
handler (:class:`JSONErrorHandler`).

Guarantees: an answer goes out with exactly its status, headers and body (whatever
the handler had set before); every error Tornado raises in a tornadose handler is
the JSON of :func:`~tornadose.http.answer.status_answer`, as the ASGI apps send it;
with CORS rules (:mod:`tornadose.http.cors`), every answer, errors included, carries
their headers, and a preflight is answered as they decide.
"""

from __future__ import annotations

from typing import Any

from tornado.web import RequestHandler

from tornadose.adapters.tornado import _compat as compat
from tornadose.http.answer import Answer, response_headers, status_answer
from tornadose.http.cors import CrossOrigin
from tornadose.http.request import joined_headers

__all__ = ["JSONErrorHandler", "send_answer"]


def send_answer(handler: RequestHandler, answer: Answer) -> None:
    """Finish ``handler``'s response with exactly ``answer``'s status, headers, body."""
    handler.clear()
    handler.clear_header("Content-Type")
    handler.set_status(answer.status)
    for name, value in response_headers(answer):
        handler.set_header(name, value)
    handler.finish(answer.body or None)


class JSONErrorHandler(RequestHandler):
    """A handler whose error responses are JSON, as the ASGI adapter's
    (:func:`~tornadose.http.answer.status_answer`)."""

    #: The methods a ``405`` answer names in ``Allow``.
    allowed_methods: tuple[str, ...] = ("GET",)
    #: The endpoint's CORS rules (the ``cors`` option, which ``channel_handlers`` sets
    #: from ``Channels(cors_origins=...)``; see :mod:`tornadose.http.cors`).
    cors: CrossOrigin | None = None

    def use_cors(self, cors: CrossOrigin | None) -> None:
        """Follow ``cors``: its headers go on every answer, kept when Tornado clears
        the headers for an error (:meth:`set_default_headers`)."""
        self.cors = cors
        self.set_default_headers()

    def set_default_headers(self) -> None:
        """The CORS headers of :attr:`cors` for this request, if any."""
        if self.cors is not None:
            headers = joined_headers(self.request.headers.get_all())
            for name, value in self.cors.headers(self.request.method or "", headers):
                self.set_header(name, value)

    def answer_preflight(self) -> bool:
        """Answer a CORS preflight as :attr:`cors` says (``True``); ``False``: not one."""
        if self.cors is None:
            return False
        headers = joined_headers(self.request.headers.get_all())
        answer = self.cors.preflight(self.request.method or "", headers)
        if answer is not None:
            send_answer(self, answer)
        return answer is not None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Send the error as JSON."""
        method, reason = self.request.method or "", compat.reason_of(self)
        send_answer(self, status_answer(status_code, reason, method, self.allowed_methods))
