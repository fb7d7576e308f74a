"""The routes across channels (:func:`add_multi`), as
:func:`~tornadose.adapters.fastapi.channels_router` adds them once per router.

Guarantees: ``GET /_multi/events?channel=...&pattern=...`` (several channels and
patterns as one SSE stream; ``400``/``404`` :class:`~tornadose.schemas.ErrorBody` for a
bad or an unknown one), ``WS /_multi/ws`` (the same as one WebSocket) and ``GET
/_presence`` (every channel's subscriber counts), under the channels' ``prefix``, at the
paths the mounted
:class:`~tornadose.adapters.asgi.ChannelsApp` serves them, by the same apps, behind the
router's dependencies (the WebSocket's too), with their other methods and ``OPTIONS``
as :class:`~tornadose.adapters.fastapi.guarded.Guarded` adds them.
"""

from __future__ import annotations

from fastapi import APIRouter, WebSocket
from fastapi.responses import Response

from tornadose.adapters.fastapi.guarded import Guarded
from tornadose.http.channels import Endpoint
from tornadose.schemas.errors import ErrorBody

__all__ = ["add_multi"]


def add_multi(router: APIRouter, guarded: Guarded) -> None:
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
