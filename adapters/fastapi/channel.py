"""One channel's routes (:func:`add_channel`), as
:func:`~tornadose.adapters.fastapi.channels_router` adds them for each channel ``name``.

Guarantees: ``GET /{name}/events`` (SSE, documented as ``text/event-stream`` with each
event's ``data`` the JSON of a message, resumable by ``Last-Event-ID`` or
``?last_event_id=``), ``WS /{name}/ws``, ``GET /{name}/schema.json``, ``GET
/{name}/presence`` and, for a publishable channel only, ``POST /{name}/publish`` (its
body documented as the channel's model, its answers ``202``
:class:`~tornadose.schemas.PublishAccepted` or an :class:`~tornadose.schemas.ErrorBody`
per :data:`~tornadose.adapters.fastapi.openapi.PUBLISH_ERRORS`). Each is served by the
same app as the mounted :class:`~tornadose.adapters.asgi.ChannelsApp` URL, behind the
router's dependencies (the WebSocket's too), with its other methods and ``OPTIONS`` as
:class:`~tornadose.adapters.fastapi.guarded.Guarded` adds them.
"""

from __future__ import annotations

import pydantic
from fastapi import APIRouter, WebSocket
from fastapi.responses import Response

from tornadose.adapters.fastapi.guarded import Guarded
from tornadose.adapters.fastapi.openapi import (
    PUBLISH_ERRORS,
    event_schema,
    inline_schema,
    parameter,
)
from tornadose.adapters.starlette import EVENT_STREAM
from tornadose.http.channels import Channel, Endpoint
from tornadose.http.documents import message_schema
from tornadose.schemas.errors import ErrorBody, PublishAccepted

__all__ = ["add_channel"]


def add_channel(router: APIRouter, guarded: Guarded, channel: Channel) -> None:
    """Add ``channel``'s routes (see the module docstring) to ``router``."""
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
    stream_content = {EVENT_STREAM: {"itemSchema": event_schema(message)}}
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
                parameter(
                    "Last-Event-ID",
                    "header",
                    "Resume after this message id (sent by EventSource on reconnect)",
                ),
                parameter(
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
                parameter("event", "query", "The SSE event type of the message"),
            ],
        },
    )
