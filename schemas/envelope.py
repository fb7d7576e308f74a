"""The envelope a message travels in over WebSocket."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Envelope(BaseModel):
    """One WebSocket text frame: the message payload and its metadata.

    ``data`` is the payload as JSON (a string payload is a JSON string); ``id`` is the
    message id (``None`` for messages handed to one handler directly); ``event`` the
    event name, if any. Unknown keys are allowed, so clients keep working when later
    versions add metadata.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    data: Any
    id: str | None = None
    event: str | None = None
