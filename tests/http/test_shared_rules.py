"""Rules the adapters used to write each on its own, now decided once in the core and
tested without a server: the path of a channel's endpoint, where a document request
says the channels are, and how a multi-channel endpoint is made and streams."""

from __future__ import annotations

import pytest

from tornadose.delivery.streams import DEFAULT_HEARTBEAT, SSEOptions, StreamOptions
from tornadose.http.asyncapi import Site
from tornadose.http.channels import Channels, Endpoint, endpoint_path
from tornadose.http.documents import site_of
from tornadose.http.multi import MultiSubscribing, multi_endpoint
from tornadose.http.routes import served
from tornadose.http.subscribe import Kind
from tornadose.stores import QueueStore


def test_endpoint_paths_are_the_routes_the_channels_serve() -> None:
    """``endpoint_path`` gives the documented URLs, and the paths the mounted app
    serves are those (the Starlette endpoints compute theirs with it)."""
    channels = Channels(prefix="/api")
    channels.add("chat", QueueStore())
    channels.add("news", QueueStore(), publishable=False)
    assert endpoint_path("chat", Endpoint.EVENTS) == "/chat/events"
    assert endpoint_path("chat", Endpoint.WEBSOCKET) == "/chat/ws"
    assert endpoint_path(None, Endpoint.ASYNCAPI) == "/asyncapi.json"
    assert endpoint_path(None, Endpoint.MULTI_EVENTS) == "/_multi/events"
    paths = {row.path for row in served(channels)}
    assert "/api" + endpoint_path("chat", Endpoint.PUBLISH) in paths
    assert "/api" + endpoint_path("news", Endpoint.PUBLISH) not in paths


@pytest.mark.parametrize(
    ("path", "host", "scheme", "site"),
    [
        ("/api/asyncapi.json", "example.com", "http", Site("/api", "example.com", False)),
        (
            "/mnt/api/asyncapi.json",
            "example.com:8443",
            "https",
            Site("/mnt/api", "example.com:8443", True),
        ),
        ("/asyncapi.json", None, "http", Site("", None, False)),
        ("/api/chat/schema.json", "", "wss", Site("/api/chat", None, True)),
    ],
)
def test_a_document_request_says_where_the_channels_are(
    path: str, host: str | None, scheme: str, site: Site
) -> None:
    """The channels' URLs start with what precedes ``/asyncapi.json`` in the full path
    (mount path included); an empty ``Host`` is unknown; https and wss are secure."""
    assert site_of(path, host, scheme) == site


def test_a_multi_channel_endpoint_streams_with_the_defaults() -> None:
    """A multi-channel SSE stream is written with the default SSE options (heartbeats
    on), a WebSocket one with the default stream options; a WebSocket keeps the
    origins it may be opened from."""
    channels = Channels()
    endpoint, options = multi_endpoint(channels, Kind.SSE)
    assert isinstance(endpoint, MultiSubscribing)
    assert (endpoint.channels, endpoint.kind, endpoint.allowed_origins) == (
        channels,
        Kind.SSE,
        None,
    )
    assert type(options) is SSEOptions
    assert options == SSEOptions()
    assert options.heartbeat == DEFAULT_HEARTBEAT
    endpoint, options = multi_endpoint(channels, Kind.WEBSOCKET, ["https://app.example"])
    assert endpoint.kind is Kind.WEBSOCKET
    assert endpoint.allowed_origins == ["https://app.example"]
    assert type(options) is StreamOptions
    assert options == StreamOptions()
