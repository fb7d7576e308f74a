"""The documents a :class:`~tornadose.http.channels.Channels` serves, as answers (no I/O).

``{prefix}/{name}/schema.json``, ``{prefix}/asyncapi.json``, ``{prefix}/metrics`` and
the ``404`` for any other path under the prefix; both adapters send these answers
as they are, and answer every method but ``GET``/``HEAD`` with ``405``
(:func:`document_answer`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import pydantic
import pydantic_core

from tornadose.http.answer import Answer, error_answer, json_answer, method_not_allowed
from tornadose.http.asyncapi import asyncapi_document
from tornadose.http.channels import Channels

__all__ = [
    "asyncapi_answer",
    "document_answer",
    "message_schema",
    "metrics_answer",
    "not_found",
    "schema_answer",
]

#: The methods a document is served to.
DOCUMENT_METHODS = ("GET", "HEAD")

#: Each Channels' prometheus_client registry, made when first scraped.
_registries: weakref.WeakKeyDictionary[Channels, Any] = weakref.WeakKeyDictionary()


def document_answer(method: str, make_answer: Callable[[], Answer]) -> Answer:
    """The answer of a document endpoint: ``make_answer()`` for ``GET``/``HEAD``,
    ``405`` (``Allow: GET, HEAD``) for any other method."""
    if method not in DOCUMENT_METHODS:
        return method_not_allowed(method, *DOCUMENT_METHODS)
    return make_answer()


def not_found(path: str) -> Answer:
    """The ``404`` answer for a path under the prefix that serves nothing."""
    return error_answer(404, "unknown_channel", f"no channel endpoint at {path!r}")


def message_schema(channels: Channels, name: str) -> dict[str, Any]:
    """The JSON Schema of channel ``name``'s messages (``{}``: anything)."""
    schema = channels[name].store.schema
    if schema is None:
        return {}
    result: dict[str, Any] = pydantic.TypeAdapter(schema).json_schema(mode="serialization")
    return result


def schema_answer(channels: Channels, name: str) -> Answer:
    """The answer to ``GET .../{name}/schema.json``."""
    return json_answer(200, pydantic_core.to_json(message_schema(channels, name)))


def asyncapi_answer(channels: Channels) -> Answer:
    """The answer to ``GET .../asyncapi.json``."""
    return json_answer(200, pydantic_core.to_json(asyncapi_document(channels)))


def metrics_answer(channels: Channels) -> Answer:
    """The answer to ``GET .../metrics`` (``501`` without ``prometheus_client``)."""
    try:
        from tornadose.http import metrics
    except ImportError:
        return error_answer(
            501, "not_implemented", "metrics need prometheus_client: tornadose[metrics]"
        )
    registry = _registries.get(channels)
    if registry is None:
        registry = _registries[channels] = metrics.registry_for(
            lambda: {channel.name: channel.store for channel in channels}
        )
    return metrics.metrics_answer(registry)
