"""The documents a :class:`~tornadose.http.channels.Channels` serves, as answers (no I/O).

``{prefix}/{name}/schema.json``, ``{prefix}/asyncapi.json``, ``{prefix}/metrics`` and
the ``404`` for any other path under the prefix; both adapters send these answers
as they are, and answer every method but ``GET``/``HEAD`` with ``405``
(:func:`document_answer`).

The AsyncAPI document is right wherever it is served: an adapter passes the
:class:`Site` of the request (the path the channels' URLs start with, as the client
sees it, mount path and ``root_path`` included, and the ``Host``), and the document's
addresses and ``servers`` follow it.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Callable
from typing import Any

import pydantic
import pydantic_core

from tornadose.http.answer import Answer, error_answer, json_answer, method_not_allowed
from tornadose.http.asyncapi import Site, asyncapi_document
from tornadose.http.channels import Channels, Endpoint, endpoint_path

__all__ = [
    "Site",
    "asyncapi_answer",
    "document_answer",
    "message_schema",
    "metrics_answer",
    "not_found",
    "schema_answer",
    "site_of",
]

#: The path of the AsyncAPI document below the prefix: where a :class:`Site` is read.
_ASYNCAPI_PATH = endpoint_path(None, Endpoint.ASYNCAPI)

#: The methods a document is served to.
DOCUMENT_METHODS = ("GET", "HEAD")

#: Each Channels' prometheus_client registry, made when first scraped.
_registries: weakref.WeakKeyDictionary[Channels, Any] = weakref.WeakKeyDictionary()


def document_answer(
    method: str, make_answer: Callable[..., Answer], site: Site | None = None
) -> Answer:
    """The answer of a document endpoint: ``make_answer()`` for ``GET``/``HEAD``,
    ``405`` (``Allow: GET, HEAD``) for any other method. A ``make_answer`` with a
    ``site`` parameter (:func:`asyncapi_answer`) is given the request's ``site``."""
    if method not in DOCUMENT_METHODS:
        return method_not_allowed(method, *DOCUMENT_METHODS)
    if site is not None and _takes_site(make_answer):
        return make_answer(site=site)
    return make_answer()


def _takes_site(make_answer: Callable[..., Answer]) -> bool:
    try:
        return "site" in inspect.signature(make_answer).parameters
    except (TypeError, ValueError):  # a callable without a signature
        return False


def site_of(path: str, host: str | None, scheme: str) -> Site:
    """The :class:`Site` of a document request at the full ``path`` the client asked
    for (mount path and ``root_path`` included), its ``Host`` and URL scheme: the
    channels' URLs start with what precedes ``/asyncapi.json`` (for another
    document, what precedes its last path segment)."""
    document = _ASYNCAPI_PATH
    base = path[: -len(document)] if path.endswith(document) else path.rsplit("/", 1)[0]
    return Site(base=base, host=host or None, secure=scheme in ("https", "wss"))


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


def asyncapi_answer(channels: Channels, site: Site | None = None) -> Answer:
    """The answer to ``GET .../asyncapi.json``, its addresses and ``servers`` those
    of ``site`` (``None``: addresses relative to the prefix, no servers)."""
    return json_answer(200, pydantic_core.to_json(asyncapi_document(channels, site)))


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
            lambda: {channel.name: channel.store for channel in channels},
            channels.presence.counts,
        )
    return metrics.metrics_answer(registry)
