"""Channels declared once, served identically by Tornado and ASGI (uvicorn).

One :class:`~tornadose.http.channels.Channels` is mounted three ways at once: on Tornado
(``channel_handlers``), on uvicorn (``ChannelsApp``), and on uvicorn inside a Starlette
app under ``Mount("/x", ...)`` (``root_path``). The same URLs, relative to where the
channels are mounted, must behave the same on all three, and since they share the
stores, a message published through one reaches the subscribers of the others.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import httpx
import pydantic
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.clients import TIMEOUT, recv, sse_client, take
from tests.conftest import TornadoStarter, UvicornStarter, wait_until
from tornadose.adapters.asgi import ChannelsApp
from tornadose.adapters.tornado import channel_handlers
from tornadose.http.channels import Channels
from tornadose.stores import DataStore, QueueStore

PREFIX = "/api"
#: Where the channels are mounted: Tornado, uvicorn, uvicorn inside a Starlette Mount.
SERVERS = ["tornado", "asgi", "asgi-mounted"]


class Point(pydantic.BaseModel):
    x: float
    y: float


class Shape(pydantic.BaseModel):
    """A model with a nested model."""

    name: str
    points: list[Point]


#: The schema of each declared channel (``None``: any JSON).
SCHEMAS: dict[str, Any] = {"shapes": Shape, "numbers": list[int], "free": None, "status": None}
#: A valid message for each publishable channel.
VALID = {
    "shapes": {"name": "triangle", "points": [{"x": 0, "y": 0}, {"x": 1, "y": 0.5}]},
    "numbers": [1, 2, 3],
    "free": {"anything": ["goes", 1, None]},
}


def declare() -> Channels:
    """The channels under test: declared once, mounted everywhere."""
    channels = Channels(prefix=PREFIX, title="test channels", version="2.1.0")
    channels.add("shapes", schema=Shape, description="Shapes and their points")
    channels.add("numbers", QueueStore(schema=list[int]))
    channels.add("free")
    channels.add("status", DataStore(initial_data={"ok": True}), publishable=False)
    return channels


@dataclass
class Served:
    """The channels and the base URL of each server mounting them (prefix included)."""

    channels: Channels
    bases: dict[str, str]

    def url(self, server: str, path: str) -> str:
        return self.bases[server] + path

    def ws_url(self, server: str, path: str) -> str:
        return self.url(server, path).replace("http://", "ws://", 1)


@pytest.fixture
async def served(tornado_server: TornadoStarter, uvicorn_server: UvicornStarter) -> Served:
    channels = declare()
    tornado_base = await tornado_server(channel_handlers(channels))
    asgi_base = await uvicorn_server(ChannelsApp(channels))
    mounted_base = await uvicorn_server(Starlette(routes=[Mount("/x", ChannelsApp(channels))]))
    bases = {"tornado": tornado_base, "asgi": asgi_base, "asgi-mounted": mounted_base + "/x"}
    return Served(channels, {server: base + PREFIX for server, base in bases.items()})


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as client:
        yield client


def assert_unknown_channel(response: httpx.Response) -> None:
    where = f"{response.request.method} {response.request.url}"
    assert response.status_code == 404, (where, response.text)
    assert response.headers["content-type"] == "application/json", (where, response.text)
    body = response.json()
    assert body["error"] == "unknown_channel", (where, body)
    assert isinstance(body["detail"], str)


# -- streams and publishing --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(VALID))
async def test_publish_on_any_server_reaches_every_client_of_every_server(
    served: Served, http: httpx.AsyncClient, name: str
) -> None:
    """A POST to any server reaches the SSE and WS clients of all three, with the 202's id."""
    store = served.channels[name].store
    async with AsyncExitStack() as stack:
        sse_streams, websockets = [], []
        for server in SERVERS:
            _, events = await stack.enter_async_context(
                sse_client(served.url(server, f"/{name}/events"))
            )
            sse_streams.append(events)
            ws = await stack.enter_async_context(
                connect(served.ws_url(server, f"/{name}/ws"), proxy=None, open_timeout=TIMEOUT)
            )
            websockets.append(ws)
        await wait_until(lambda: len(store.subscribers) == 2 * len(SERVERS))

        ids = []
        for server in SERVERS:  # one POST through each server
            response = await http.post(served.url(server, f"/{name}/publish"), json=VALID[name])
            assert response.status_code == 202, (server, response.text)
            ids.append(response.json()["id"])

        for events in sse_streams:
            received = await take(events, len(ids))
            assert [(e.id, json.loads(e.data)) for e in received] == [(i, VALID[name]) for i in ids]
        for ws in websockets:
            envelopes = [await recv(ws) for _ in ids]
            assert [(e.id, e.data) for e in envelopes] == [(i, VALID[name]) for i in ids]


@pytest.mark.parametrize("server", SERVERS)
async def test_invalid_message_is_refused_with_422(
    served: Served, http: httpx.AsyncClient, server: str
) -> None:
    """A message violating the channel's schema (even deep in a nested model) gets 422."""
    bad_shape = {"name": "x", "points": [{"x": 0, "y": "not a number"}]}
    for name, message in (("shapes", bad_shape), ("numbers", [1, "two"])):
        response = await http.post(served.url(server, f"/{name}/publish"), json=message)
        assert response.status_code == 422, (name, response.text)
        assert response.json()["error"] == "validation_error"
    assert served.channels["shapes"].store.stats.published == 0


@pytest.mark.parametrize("server", SERVERS)
async def test_non_publishable_channel_streams_but_has_no_publish_url(
    served: Served, http: httpx.AsyncClient, server: str
) -> None:
    """A channel declared publishable=False answers 404 to POST .../publish, yet streams."""
    response = await http.post(served.url(server, "/status/publish"), json={"ok": False})
    assert_unknown_channel(response)
    assert served.channels["status"].store.stats.published == 1  # only the initial value

    async with sse_client(served.url(server, "/status/events")) as (_, events):
        [event] = await take(events, 1)
    assert json.loads(event.data) == {"ok": True}
    ws: ClientConnection
    async with connect(served.ws_url(server, "/status/ws"), proxy=None, open_timeout=TIMEOUT) as ws:
        assert (await recv(ws)).data == {"ok": True}


# -- schemas and errors ------------------------------------------------------------------


@pytest.mark.parametrize("server", SERVERS)
async def test_schema_json_is_pydantics_serialization_schema(
    served: Served, http: httpx.AsyncClient, server: str
) -> None:
    """GET .../{name}/schema.json is pydantic's serialization JSON Schema ({} without one)."""
    for name, schema in SCHEMAS.items():
        response = await http.get(served.url(server, f"/{name}/schema.json"))
        assert response.status_code == 200, (name, response.text)
        assert response.headers["content-type"] == "application/json"
        expected = {} if schema is None else json_schema(schema)
        assert response.json() == expected, name


def json_schema(schema: Any) -> dict[str, Any]:
    result: dict[str, Any] = pydantic.TypeAdapter(schema).json_schema(mode="serialization")
    return result


@pytest.mark.parametrize("server", SERVERS)
async def test_unknown_channel_endpoints_are_json_404(
    served: Served, http: httpx.AsyncClient, server: str
) -> None:
    """Events, publish and schema URLs of an undeclared channel answer a JSON 404."""
    for method, path in (("GET", "/nope/events"), ("POST", "/nope/publish")):
        assert_unknown_channel(await http.request(method, served.url(server, path), json={}))
    assert_unknown_channel(await http.get(served.url(server, "/nope/schema.json")))


@pytest.mark.parametrize("server", SERVERS)
async def test_other_paths_under_the_prefix_are_json_404(
    served: Served, http: httpx.AsyncClient, server: str
) -> None:
    """Any other path under the prefix answers 404 with a JSON unknown_channel error."""
    for path in ("/shapes/other", "/nope", "/shapes/events/more"):
        assert_unknown_channel(await http.get(served.url(server, path)))


async def test_unknown_channel_answers_the_same_on_every_server(
    served: Served, http: httpx.AsyncClient
) -> None:
    """The 404 body for an unknown channel is identical on every server."""
    bodies = []
    for server in SERVERS:
        response = await http.get(served.url(server, "/nope/events"))
        assert_unknown_channel(response)
        bodies.append(response.json())
    assert all(body == bodies[0] for body in bodies), bodies


@pytest.mark.parametrize("server", SERVERS)
async def test_websocket_to_unknown_channel_is_refused_with_404(
    served: Served, server: str
) -> None:
    """A WebSocket handshake to an unknown channel is refused with the JSON 404."""
    with pytest.raises(InvalidStatus) as refused:
        async with connect(served.ws_url(server, "/nope/ws"), proxy=None, open_timeout=TIMEOUT):
            pass
    assert refused.value.response.status_code == 404
    assert json.loads(refused.value.response.body)["error"] == "unknown_channel"


# -- the AsyncAPI document -----------------------------------------------------------------


async def fetch_asyncapi(served: Served, http: httpx.AsyncClient, server: str) -> dict[str, Any]:
    response = await http.get(served.url(server, "/asyncapi.json"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    document: dict[str, Any] = response.json()
    return document


def resolve(document: dict[str, Any], ref: str) -> Any:
    """The target of a local ``$ref`` (``#/a/b``); fails the test if it dangles."""
    assert ref.startswith("#/"), f"not a local reference: {ref}"
    target: Any = document
    for token in ref[2:].split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        assert isinstance(target, dict), f"dangling $ref: {ref}"
        assert token in target, f"dangling $ref: {ref}"
        target = target[token]
    return target


def refs(node: Any) -> Iterator[str]:
    """Every ``$ref`` anywhere in ``node``."""
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def inline(node: Any, document: dict[str, Any]) -> Any:
    """``node`` with every ``$ref`` replaced by its target (and ``$defs`` dropped)."""
    if isinstance(node, dict):
        if "$ref" in node:
            return inline(resolve(document, node["$ref"]), document)
        return {k: inline(v, document) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [inline(value, document) for value in node]
    return node


async def test_asyncapi_document_is_the_same_on_every_server(
    served: Served, http: httpx.AsyncClient
) -> None:
    """GET {prefix}/asyncapi.json returns the same document from every server, but for
    where it is served: its ``servers`` (the host) and the mount path in addresses."""
    documents = [await fetch_asyncapi(served, http, server) for server in SERVERS]
    for server, document in zip(SERVERS, documents, strict=True):
        port = served.url(server, "/").split(":")[2].split("/")[0]
        hosts = {entry["host"] for entry in document.pop("servers").values()}
        assert hosts == {f"127.0.0.1:{port}"}, (server, hosts)
    mounted = json.dumps(documents[2]).replace('"/x/', '"/')
    assert documents[1] == documents[0]
    assert json.loads(mounted) == documents[0]


async def test_asyncapi_document_has_no_dangling_refs(
    served: Served, http: httpx.AsyncClient
) -> None:
    """Every $ref in the AsyncAPI document points at something in the document."""
    document = await fetch_asyncapi(served, http, "tornado")
    found = list(refs(document))
    assert any(ref.startswith("#/components/schemas/") for ref in found)  # Point, at least
    for ref in found:
        resolve(document, ref)
    with pytest.raises(AssertionError, match="dangling"):  # the check itself can fail
        resolve(document, "#/components/schemas/Missing")


async def test_asyncapi_document_describes_every_channel(
    served: Served, http: httpx.AsyncClient
) -> None:
    """AsyncAPI 3.0.0: every channel with its address and a message whose payload is its schema."""
    document = await fetch_asyncapi(served, http, "asgi-mounted")
    assert document["asyncapi"] == "3.0.0"
    assert document["info"] == {"title": "test channels", "version": "2.1.0"}
    assert set(document["channels"]) == set(SCHEMAS)
    for name, schema in SCHEMAS.items():
        channel = document["channels"][name]
        assert channel["address"] == f"/x{PREFIX}/{name}"  # mounted at /x
        [message] = [resolve(document, m["$ref"]) for m in channel["messages"].values()]
        assert message["contentType"] == "application/json"
        expected = {} if schema is None else json_schema(schema)
        assert inline(message["payload"], document) == inline(expected, expected), name
    assert document["channels"]["shapes"]["description"] == "Shapes and their points"
    assert "Point" in document["components"]["schemas"]


async def test_asyncapi_operations_follow_publishability(
    served: Served, http: httpx.AsyncClient
) -> None:
    """Every channel has {name}.subscribe (send); only publishable ones {name}.publish (receive)."""
    document = await fetch_asyncapi(served, http, "asgi")
    operations = document["operations"]
    publishable = [name for name in SCHEMAS if served.channels[name].publishable]
    assert set(operations) == {f"{name}.subscribe" for name in SCHEMAS} | {
        f"{name}.publish" for name in publishable
    }
    assert publishable == ["shapes", "numbers", "free"]
    for key, operation in operations.items():
        name, _, kind = key.rpartition(".")
        assert operation["action"] == {"subscribe": "send", "publish": "receive"}[kind]
        assert resolve(document, operation["channel"]["$ref"]) == document["channels"][name]
        for message in operation["messages"]:
            assert message["$ref"].startswith(f"#/channels/{name}/messages/")
            resolve(document, message["$ref"])


# -- declaring channels ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "has space", "a/b", "-dash", "_under", ".dot", "é", "a\n"])
def test_add_refuses_bad_names(name: str) -> None:
    """Channel names are letters, digits, '_', '.', '-', starting with a letter or digit."""
    with pytest.raises(ValueError, match="channel names"):
        Channels().add(name)


def test_add_accepts_good_names() -> None:
    """Names like 'a', 'Sensor_1', 'room.42' and 'x-y' are accepted and listed in order."""
    channels = Channels()
    for name in ("a", "Sensor_1", "room.42", "x-y", "9"):
        channels.add(name)
    assert [channel.name for channel in channels] == ["a", "Sensor_1", "room.42", "x-y", "9"]
    assert "room.42" in channels
    assert len(channels) == 5


def test_add_refuses_duplicates() -> None:
    """Declaring the same channel name twice is an error."""
    channels = Channels()
    channels.add("ticks")
    with pytest.raises(ValueError, match="twice"):
        channels.add("ticks")


def test_add_refuses_schema_and_store_together() -> None:
    """A schema goes to the store, or the store is made from it: giving both is an error."""
    with pytest.raises(ValueError, match="not both"):
        Channels().add("ticks", QueueStore(), schema=Shape)


def test_add_with_schema_makes_a_validating_queue_store() -> None:
    """add(name, schema=...) makes a QueueStore with that schema."""
    channel = Channels().add("shapes", schema=Shape)
    assert isinstance(channel.store, QueueStore)
    assert channel.store.schema is Shape


def test_add_refuses_unknown_options() -> None:
    """Options that are not Channel fields are refused."""
    with pytest.raises(TypeError):
        Channels().add("ticks", heartbeet=5)


@pytest.mark.parametrize("prefix", ["api", "/api/", "/", "api/"])
def test_prefix_must_start_with_a_slash_and_not_end_with_one(prefix: str) -> None:
    """A prefix is '' or '/path' (no trailing slash)."""
    with pytest.raises(ValueError, match="prefix"):
        Channels(prefix=prefix)


@pytest.mark.parametrize("prefix", ["", "/api", "/a/b"])
def test_good_prefixes_are_accepted(prefix: str) -> None:
    """'', '/api' and '/a/b' are valid prefixes."""
    assert Channels(prefix=prefix).prefix == prefix
