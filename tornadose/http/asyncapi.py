"""An AsyncAPI 3.0 document describing a set of :class:`~tornadose.http.channels.Channels`.

For each channel the document has:

* a channel keyed by the channel's name, whose ``address`` is ``{prefix}/{name}``,
  with one message whose ``payload`` is the JSON Schema of the channel's messages
  (as subscribers receive them) and an ``x-tornadose-endpoints`` extension listing
  the SSE, WebSocket and publish URLs;
* an operation ``{name}.subscribe`` (``action: send``: the server sends messages to
  subscribers) and, when the channel is publishable, ``{name}.publish``
  (``action: receive``: the server receives published messages).

Models referenced by several channels are described once, in
``components.schemas``; references point there (``#/components/schemas/<Model>``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pydantic

if TYPE_CHECKING:
    from tornadose.http.channels import Channels

__all__ = ["ASYNCAPI_VERSION", "asyncapi_document"]

ASYNCAPI_VERSION = "3.0.0"
_REF_TEMPLATE = "#/components/schemas/{model}"


def asyncapi_document(channels: Channels) -> dict[str, Any]:
    """Build the AsyncAPI 3.0 document (a JSON-ready dict)."""
    typed = [c for c in channels if c.store.schema is not None]
    payloads, definitions = pydantic.TypeAdapter.json_schemas(
        [(c.name, "serialization", pydantic.TypeAdapter(c.store.schema)) for c in typed],
        ref_template=_REF_TEMPLATE,
    )
    doc_channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for channel in channels:
        base = f"{channels.prefix}/{channel.name}"
        payload = payloads.get((channel.name, "serialization"), {})
        messages[channel.name] = {
            "name": channel.name,
            "title": f"{channel.name} message",
            "contentType": "application/json",
            "payload": payload,
        }
        endpoints = {"events": f"{base}/events", "websocket": f"{base}/ws"}
        if channel.publishable:
            endpoints["publish"] = f"{base}/publish"
        doc_channels[channel.name] = {
            "address": base,
            "title": channel.name,
            **({"description": channel.description} if channel.description else {}),
            "messages": {channel.name: {"$ref": f"#/components/messages/{channel.name}"}},
            "x-tornadose-endpoints": endpoints,
        }
        message_ref = {"$ref": f"#/channels/{channel.name}/messages/{channel.name}"}
        operations[f"{channel.name}.subscribe"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel.name}"},
            "summary": f"Messages of {channel.name}, sent to subscribers (SSE or WebSocket).",
            "messages": [message_ref],
        }
        if channel.publishable:
            operations[f"{channel.name}.publish"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{channel.name}"},
                "summary": f"Messages published to {channel.name} with HTTP POST.",
                "messages": [message_ref],
            }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": channels.title, "version": channels.version},
        "defaultContentType": "application/json",
        "channels": doc_channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": definitions.get("$defs", {})},
    }
