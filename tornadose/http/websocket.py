"""Decisions on a WebSocket handshake before it is accepted (no I/O here): the
origin check, and the answer to a plain HTTP request at a WebSocket URL."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from urllib.parse import urlsplit

from tornadose.http.answer import Answer, error_answer

__all__ = ["not_a_websocket", "origin_allowed", "refuse_origin"]


def origin_allowed(origin: str | None, host: str, allowed_origins: Collection[str] | None) -> bool:
    """Whether a WebSocket handshake with this ``Origin`` may proceed.

    Guards against cross-site WebSocket hijacking, like Tornado's default
    ``check_origin``: no ``Origin`` header (not a browser) is allowed, so is an
    origin whose host is the request's ``Host``, and so is any origin listed in
    ``allowed_origins`` (``"*"`` allows every origin).
    """
    if origin is None:
        return True
    if allowed_origins is not None and ("*" in allowed_origins or origin in allowed_origins):
        return True
    return urlsplit(origin).netloc.lower() == host.lower()


def refuse_origin(
    headers: Mapping[str, str], allowed_origins: Collection[str] | None
) -> Answer | None:
    """The ``403`` answer for a cross-origin handshake (see :func:`origin_allowed`), or
    ``None``. Checked before any authorization, so the hook never sees such requests."""
    if origin_allowed(headers.get("origin"), headers.get("host", ""), allowed_origins):
        return None
    return error_answer(403, "forbidden", "cross-origin WebSocket refused")


def not_a_websocket() -> Answer:
    """The ``400`` answer to a plain HTTP request at a WebSocket URL."""
    return error_answer(400, "websocket_required", 'Can "Upgrade" only to "WebSocket".')
