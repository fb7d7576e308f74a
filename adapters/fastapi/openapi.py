"""The OpenAPI shapes :func:`~tornadose.adapters.fastapi.channels_router` documents its
routes with, as plain JSON-ready dicts (nothing here touches FastAPI).

Guarantees: :data:`PUBLISH_ERRORS` lists every error status a publish endpoint answers
(those of :mod:`tornadose.http.publish`); :func:`inline_schema` gives a JSON Schema that
holds on its own anywhere in an OpenAPI document (its local references expanded, a
recursive one kept with its ``$defs``); :func:`event_schema` describes one Server-Sent
Event whose ``data`` is the JSON of a message; :func:`parameter` an optional string
parameter of an operation.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PUBLISH_ERRORS", "event_schema", "inline_schema", "parameter"]

#: The error answers of a publish endpoint, as documented (see tornadose.http.publish).
PUBLISH_ERRORS: dict[int, str] = {
    400: "Malformed JSON, or an invalid `event` (`malformed_json`, `invalid_field`)",
    401: "Not authenticated (`unauthorized`)",
    403: "Refused (`forbidden`)",
    413: "The body exceeds the channel's `max_body` (`payload_too_large`)",
    415: "Content-Type is not application/json (`unsupported_media_type`)",
    422: "The message does not match the channel's schema (`validation_error`, `unencodable`)",
    503: "The store is closed or unavailable (`store_closed`, `store_unavailable`)",
}


def inline_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (a JSON Schema with local ``#/$defs/...`` references, as pydantic
    makes) with every reference replaced by its definition, so that it holds on its
    own anywhere in an OpenAPI document. A recursive definition is left as a
    reference, its ``$defs`` kept beside it."""
    defs: dict[str, Any] = schema.get("$defs", {})
    recursive: set[str] = set()

    def expand(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [expand(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.removeprefix("#/$defs/")
            if name in seen or name not in defs:
                recursive.add(name)
                return node
            rest = {k: expand(v, seen) for k, v in node.items() if k != "$ref"}
            return {**expand(defs[name], (*seen, name)), **rest}
        return {k: expand(v, seen) for k, v in node.items() if k != "$defs"}

    result: dict[str, Any] = expand(schema, ())
    if recursive:
        result["$defs"] = defs
    return result


def event_schema(message: dict[str, Any]) -> dict[str, Any]:
    """One Server-Sent Event of a channel whose messages follow ``message``."""
    data = {"type": "string", "contentMediaType": "application/json", "contentSchema": message}
    return {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": data,
            "id": {"type": "string"},
            "event": {"type": "string"},
            "retry": {"type": "integer", "minimum": 0},
        },
    }


def parameter(name: str, where: str, description: str) -> dict[str, Any]:
    """An optional string parameter of an OpenAPI operation."""
    return {
        "name": name,
        "in": where,
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }
