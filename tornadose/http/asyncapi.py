"""An AsyncAPI 3.0 document describing a set of :class:`~tornadose.http.channels.Channels`.

For each channel the document has:

* a channel keyed by the channel's name, whose ``address`` is ``{base}/{name}``,
  ``base`` being the path the channels' URLs start with as clients see them (mount
  path / ``root_path`` and prefix: see :class:`Site`; without a site, the prefix),
  with one message whose ``payload`` is the JSON Schema of the channel's messages
  (as subscribers receive them) and an ``x-tornadose-endpoints`` extension listing
  the SSE, WebSocket, publish and presence URLs, and ``x-tornadose-presence``, its
  subscriber counts when the document was made (``{"here": n, "everywhere": n}``,
  see :mod:`tornadose.http.presence`);
* an operation ``{name}.subscribe`` (``action: send``: the server sends messages to
  subscribers) and, when the channel is publishable, ``{name}.publish``
  (``action: receive``: the server receives published messages).

At the top level, ``x-tornadose-multi`` gives the multi-channel URLs
(:mod:`tornadose.http.multi`), the all-channels presence URL and the limits.

Given the request's :class:`Site` with its host, ``servers`` holds the host twice:
``http`` (``https``) for SSE and publish, ``ws`` (``wss``) for WebSocket; the
addresses are full paths on that host.

Models referenced by several channels are described once, in
``components.schemas``; references point there (``#/components/schemas/<Model>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pydantic

if TYPE_CHECKING:
    from tornadose.http.channels import Channels

__all__ = ["ASYNCAPI_VERSION", "Site", "asyncapi_document"]

ASYNCAPI_VERSION = "3.0.0"
_REF_TEMPLATE = "#/components/schemas/{model}"


@dataclass(frozen=True, slots=True)
class Site:
    """Where the channels are served, as a client sees it: ``base``, the path every
    channel URL starts with (mount path, ``root_path`` and prefix: ``/channels/api``);
    ``host``, the request's ``Host`` (``None``: unknown); ``secure``, https/wss."""

    base: str = ""
    host: str | None = None
    secure: bool = False

    def servers(self) -> dict[str, Any]:
        """The AsyncAPI ``servers`` of this site (none without a host)."""
        if self.host is None:
            return {}
        http, ws = ("https", "wss") if self.secure else ("http", "ws")
        return {
            http: {"host": self.host, "protocol": http, "description": "SSE and publish"},
            ws: {"host": self.host, "protocol": ws, "description": "WebSocket"},
        }


def asyncapi_document(channels: Channels, site: Site | None = None) -> dict[str, Any]:
    """Build the AsyncAPI 3.0 document (a JSON-ready dict) for clients of ``site``
    (``None``: addresses relative to the channels' prefix, no ``servers``)."""
    site = site or Site(base=channels.prefix)
    servers = site.servers()
    typed = [c for c in channels if c.store.schema is not None]
    payloads, definitions = pydantic.TypeAdapter.json_schemas(
        [(c.name, "serialization", pydantic.TypeAdapter(c.store.schema)) for c in typed],
        ref_template=_REF_TEMPLATE,
    )
    doc_channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    presence = channels.presence.counts()
    messages: dict[str, Any] = {}
    for channel in channels:
        base = f"{site.base}/{channel.name}"
        payload = payloads.get((channel.name, "serialization"), {})
        messages[channel.name] = {
            "name": channel.name,
            "title": f"{channel.name} message",
            "contentType": "application/json",
            "payload": payload,
        }
        endpoints = {
            "events": f"{base}/events",
            "websocket": f"{base}/ws",
            "presence": f"{base}/presence",
        }
        if channel.publishable:
            endpoints["publish"] = f"{base}/publish"
        doc_channels[channel.name] = {
            "address": base,
            "title": channel.name,
            **({"description": channel.description} if channel.description else {}),
            "messages": {channel.name: {"$ref": f"#/components/messages/{channel.name}"}},
            "x-tornadose-endpoints": endpoints,
            # Subscribers when the document was made (here, and in every process).
            "x-tornadose-presence": presence.get(channel.name, {}),
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
        **({"servers": servers} if servers else {}),
        "defaultContentType": "application/json",
        "channels": doc_channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": definitions.get("$defs", {})},
        "x-tornadose-multi": {
            "events": f"{site.base}/_multi/events",
            "websocket": f"{site.base}/_multi/ws",
            "presence": f"{site.base}/_presence",
            "max_channels": channels.multi.max_channels,
            "max_patterns": channels.multi.max_patterns,
        },
    }
