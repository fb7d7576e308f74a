"""The router (:func:`channels_router`): a whole
:class:`~tornadose.http.channels.Channels` as one ``APIRouter``.

Guarantees: the router holds, for every channel declared when it is built, the routes
of :mod:`~tornadose.adapters.fastapi.channel`, the routes across channels of
:mod:`~tornadose.adapters.fastapi.multichannel`, and ``GET /asyncapi.json`` (the
AsyncAPI 3.0 document, its addresses the URLs as served); every one of them runs the
``dependencies`` given first, none of their ``OPTIONS`` routes does. Its lifespan drains
its streams at shutdown and closes the stores unless another server still serves them.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter
from fastapi.params import Depends
from fastapi.responses import Response

from tornadose.adapters.fastapi.channel import add_channel
from tornadose.adapters.fastapi.guarded import Guarded
from tornadose.adapters.fastapi.multichannel import add_multi
from tornadose.adapters.starlette import ChannelEndpoints
from tornadose.delivery.lifecycle import Lifecycle
from tornadose.http.channels import Channels, Endpoint

__all__ = ["channels_router"]


def channels_router(
    channels: Channels,
    *,
    dependencies: Sequence[Depends] | None = None,
    lifecycle: Lifecycle | None = None,
    tags: list[str] | None = None,
) -> APIRouter:
    """An ``APIRouter`` serving every channel of ``channels`` (see the
    :mod:`~tornadose.adapters.fastapi` docstring), built now: declare every channel
    first. ``dependencies`` run before each route serving a channel or a document, not
    on its ``OPTIONS`` routes (CORS preflights, else the JSON ``405``); every other
    method a URL does not serve gets the mounted URL's answer (its JSON ``405``, a
    document's ``HEAD``); ``lifecycle`` counts its streams (default: its own); ``tags``
    group its routes in ``/docs`` (default: ``["channels"]``)."""
    endpoints = ChannelEndpoints(channels, lifecycle=lifecycle)
    # Not router-level dependencies: those would run on the preflights too.
    guarded = Guarded(endpoints, list(dependencies or ()))
    router = APIRouter(
        lifespan=endpoints.lifespan,
        tags=list(tags) if tags is not None else ["channels"],
    )
    for channel in channels:
        add_channel(router, guarded, channel)
    add_multi(router, guarded)

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
