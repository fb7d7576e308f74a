"""FastAPI: a whole :class:`~tornadose.http.channels.Channels` as an ``APIRouter``,
documented in ``/docs``, and guarded by your dependencies::

    app = FastAPI()
    app.include_router(channels_router(channels, dependencies=[Depends(user)]), prefix="/live")

For each channel ``name`` (under the channels' ``prefix``):

=================================  ===========================================================
``GET  /{name}/events``            Server-Sent Events; documented as ``text/event-stream``,
                                   each event's ``data`` the JSON of a message (its schema)
``WS   /{name}/ws``                WebSocket, one JSON envelope per frame
``POST /{name}/publish``           the JSON body is the message (the channel's model in /docs);
                                   ``202`` :class:`~tornadose.schemas.PublishAccepted`, or an
                                   :class:`~tornadose.schemas.ErrorBody` (400 to 503)
``GET  /{name}/schema.json``       the JSON Schema of the channel's messages
=================================  ===========================================================

and ``GET /asyncapi.json``, whose addresses are the URLs as served (app ``root_path``,
include prefix). The ``dependencies`` given here run first on each of these routes
(as do those of ``include_router``): one raising ``HTTPException(401)`` refuses
before a stream opens, and nothing is registered. After them, the channel's rules
run as on the mounted :class:`~tornadose.adapters.asgi.ChannelsApp` (they are the
same apps: see :class:`~tornadose.adapters.starlette.ChannelEndpoints`), with the same answers and
bounds (``max_body``, resume by ``Last-Event-ID`` or ``?last_event_id=``). The
router's lifespan drains its streams at shutdown and closes the stores unless
another server still serves them.

Cross-origin pages: with ``Channels(cors_origins=..., cors_credentials=...)`` every
answer tornadose gives above (streams, refusals, publish results, documents) carries
the CORS headers of that policy (:mod:`tornadose.http.cors`, the one decision both
adapters carry out: add no ``CORSMiddleware``; an answer of your dependency, such as
its ``401``, is FastAPI's and has none, so the page sees a failed request), and the router
also serves ``OPTIONS`` at each HTTP URL (not in ``/docs``), where the same decision
grants a preflight (``204``) or refuses it (``403`` ``cors_refused``). Browsers send
preflights without credentials, so these ``OPTIONS`` routes do not run the
``dependencies`` given here. Dependencies given to ``app.include_router(...,
dependencies=...)`` or to ``APIRouter(dependencies=...)`` run on every route of the
router, ``OPTIONS`` included: an authenticating one would answer the preflight
``401`` and the browser would never send the request. Give those to
``channels_router`` instead::

    channels = Channels(cors_origins=["https://app.example"])
    app.include_router(channels_router(channels, dependencies=[Depends(user)]))

In your own routes, use :class:`~tornadose.adapters.starlette.ChannelEndpoints`
(``return endpoints.events(room)``, ``await endpoints.websocket(room, websocket)``)
and ``await channels["chat"].publish(message)`` (the id).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pydantic
from fastapi import APIRouter, WebSocket
from fastapi.params import Depends
from fastapi.responses import Response

from tornadose.adapters.starlette import EVENT_STREAM, ChannelEndpoints
from tornadose.delivery.lifecycle import Lifecycle
from tornadose.http.channels import Channel, Channels, Endpoint
from tornadose.http.documents import message_schema
from tornadose.schemas.errors import ErrorBody, PublishAccepted

__all__ = ["PUBLISH_ERRORS", "channels_router", "inline_schema"]

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


def _event_schema(message: dict[str, Any]) -> dict[str, Any]:
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


def channels_router(
    channels: Channels,
    *,
    dependencies: Sequence[Depends] | None = None,
    lifecycle: Lifecycle | None = None,
    tags: list[str] | None = None,
) -> APIRouter:
    """An ``APIRouter`` serving every channel of ``channels`` (see the module
    docstring), built now: declare every channel first. ``dependencies`` run before
    each route serving a channel or a document, not on its ``OPTIONS`` routes (CORS
    preflights, else the JSON ``405``); every other method a URL does not serve gets
    the mounted URL's answer (its JSON ``405``, a document's ``HEAD``); ``lifecycle``
    counts its streams (default: its own); ``tags`` group its routes in ``/docs``
    (default: ``["channels"]``)."""
    endpoints = ChannelEndpoints(channels, lifecycle=lifecycle)
    # Not router-level dependencies: those would run on the preflights too.
    guarded = _Guarded(endpoints, list(dependencies or ()))
    router = APIRouter(
        lifespan=endpoints.lifespan,
        tags=list(tags) if tags is not None else ["channels"],
    )
    for channel in channels:
        _add_channel(router, guarded, channel)
    _add_multi(router, guarded)

    async def asyncapi() -> Response:
        return endpoints.document()

    guarded.route(
        router,
        None,
        Endpoint.ASYNCAPI,
        asyncapi,
        methods=["GET"],
        summary="AsyncAPI 3.0 document of every channel",
        response_class=Response,
        responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
    )
    return router


class _Guarded:
    """Adds a router's routes: each with the ``dependencies`` of ``channels_router``;
    at its path, the other methods with them too, and ``OPTIONS`` without them, all
    answered as the mounted URL answers (a preflight by the core's CORS decision)."""

    def __init__(self, endpoints: ChannelEndpoints, dependencies: list[Depends]) -> None:
        self.endpoints = endpoints
        self.dependencies = dependencies

    def route(
        self,
        router: APIRouter,
        channel: str | None,
        endpoint: Endpoint,
        function: Callable[..., Any],
        **options: Any,
    ) -> None:
        path = self.endpoints.path(channel, endpoint)
        router.add_api_route(path, function, dependencies=self.dependencies, **options)
        endpoints, name = self.endpoints, options.get("name") or endpoint.value

        async def other_method() -> Response:
            return endpoints.mounted(channel, endpoint)

        # Every other method gets the mounted URL's answer (its JSON 405, a document's
        # HEAD), not FastAPI's: behind the same dependencies.
        others = sorted(_METHODS - {"OPTIONS", *options["methods"]})
        router.add_api_route(
            path,
            other_method,
            methods=others,
            name=f"{name}.other",
            dependencies=self.dependencies,
            include_in_schema=False,
            response_class=Response,
        )

        async def preflight() -> Response:
            return endpoints.options(channel, endpoint)

        router.add_api_route(
            path,
            preflight,
            methods=["OPTIONS"],
            name=f"{name}.options",
            include_in_schema=False,
            response_class=Response,
        )


#: The methods a router's URL answers with the mounted URL's answer when its route
#: does not take them.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _add_channel(router: APIRouter, guarded: _Guarded, channel: Channel) -> None:
    endpoints = guarded.endpoints
    name, channels = channel.name, endpoints.channels
    message = inline_schema(message_schema(channels, name))  # as subscribers get them
    model = channel.store.schema
    accepted = {} if model is None else pydantic.TypeAdapter(model).json_schema(mode="validation")

    async def events() -> Response:
        return endpoints.events(name)

    async def websocket(websocket: WebSocket) -> None:
        await endpoints.websocket(name, websocket)

    async def publish() -> Response:
        return endpoints.publish(name)

    async def schema() -> Response:
        return endpoints.document(name)

    async def presence() -> Response:
        return endpoints.mounted(name, Endpoint.PRESENCE)

    stream = {"description": "The channel's messages, as Server-Sent Events"}
    stream_content = {EVENT_STREAM: {"itemSchema": _event_schema(message)}}
    guarded.route(
        router,
        name,
        Endpoint.EVENTS,
        events,
        methods=["GET"],
        name=f"{name}.events",
        summary=f"Subscribe to {name} (Server-Sent Events)",
        description=channel.description or None,
        response_class=Response,
        responses={
            200: {**stream, "content": stream_content},
            204: {"description": "The store is closed: do not reconnect"},
            401: {"model": ErrorBody, "description": "Not authenticated"},
            403: {"model": ErrorBody, "description": "Refused"},
        },
        openapi_extra={
            "parameters": [
                _parameter(
                    "Last-Event-ID",
                    "header",
                    "Resume after this message id (sent by EventSource on reconnect)",
                ),
                _parameter(
                    "last_event_id", "query", "Resume after this message id (the header wins)"
                ),
            ]
        },
    )
    router.add_api_websocket_route(
        endpoints.path(name, Endpoint.WEBSOCKET),
        websocket,
        name=f"{name}.ws",
        dependencies=guarded.dependencies,
    )
    guarded.route(
        router,
        name,
        Endpoint.SCHEMA,
        schema,
        methods=["GET"],
        name=f"{name}.schema",
        summary=f"JSON Schema of {name}'s messages",
        response_class=Response,
        responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
    )
    guarded.route(
        router,
        name,
        Endpoint.PRESENCE,
        presence,
        methods=["GET"],
        name=f"{name}.presence",
        summary=f"Subscribers of {name}, here and in every process",
        response_class=Response,
    )
    if not channel.publishable:
        return
    body = {"required": True, "content": {"application/json": {"schema": inline_schema(accepted)}}}
    guarded.route(
        router,
        name,
        Endpoint.PUBLISH,
        publish,
        methods=["POST"],
        name=f"{name}.publish",
        summary=f"Publish a message to {name}",
        description="The JSON body is the message; the answer holds its id.",
        status_code=202,
        response_class=Response,
        responses={
            202: {"model": PublishAccepted, "description": "Published"},
            **{
                status: {"model": ErrorBody, "description": text}
                for status, text in PUBLISH_ERRORS.items()
            },
        },
        openapi_extra={
            "requestBody": body,
            "parameters": [
                _parameter("event", "query", "The SSE event type of the message"),
            ],
        },
    )


def _add_multi(router: APIRouter, guarded: _Guarded) -> None:
    """The multi-channel stream (SSE, WebSocket) and every channel's presence."""
    endpoints = guarded.endpoints

    async def multi_events() -> Response:
        return endpoints.multi_events()

    async def multi_websocket(websocket: WebSocket) -> None:
        await endpoints.multi_websocket(websocket)

    async def presence() -> Response:
        return endpoints.mounted(None, Endpoint.ALL_PRESENCE)

    guarded.route(
        router,
        None,
        Endpoint.MULTI_EVENTS,
        multi_events,
        methods=["GET"],
        name="multi.events",
        summary="Several channels and patterns as one SSE stream (?channel=, ?pattern=)",
        response_class=Response,
        responses={400: {"model": ErrorBody}, 404: {"model": ErrorBody}},
    )
    router.add_api_websocket_route(
        endpoints.path(None, Endpoint.MULTI_WEBSOCKET),
        multi_websocket,
        name="multi.ws",
        dependencies=guarded.dependencies,
    )
    guarded.route(
        router,
        None,
        Endpoint.ALL_PRESENCE,
        presence,
        methods=["GET"],
        name="presence",
        summary="Every channel's subscriber counts",
        response_class=Response,
    )


def _parameter(name: str, where: str, description: str) -> dict[str, Any]:
    """An optional string parameter of an OpenAPI operation."""
    return {
        "name": name,
        "in": where,
        "required": False,
        "description": description,
        "schema": {"type": "string"},
    }
