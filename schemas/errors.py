"""The JSON body of every error response tornadose sends."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class ErrorBody(BaseModel):
    """An error response: a stable machine-readable ``error`` code, a human ``detail``,
    and, for schema violations (422), pydantic's error list in ``errors``.

    ``error`` codes: ``malformed_json`` (400), ``invalid_field`` (400),
    ``unauthorized`` (401), ``forbidden`` (403), ``unknown_channel`` (404),
    ``method_not_allowed`` (405), ``payload_too_large`` (413),
    ``unsupported_media_type`` (415), ``validation_error`` (422),
    ``unencodable`` (422), ``store_closed`` (503).
    """

    model_config = ConfigDict(frozen=True)

    error: str
    detail: str
    errors: list[dict[str, Any]] | None = None


class PublishAccepted(BaseModel):
    """The body of a ``202 Accepted`` answer to an HTTP publish: the message's id."""

    model_config = ConfigDict(frozen=True)

    id: str
