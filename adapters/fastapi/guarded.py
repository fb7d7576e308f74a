"""Guarded routes (:class:`Guarded`): how
:func:`~tornadose.adapters.fastapi.channels_router` adds each HTTP route, so that a
router's URL answers every method as the mounted
:class:`~tornadose.adapters.asgi.ChannelsApp` URL does.

Guarantees: the route itself, and every other method at its path (the mounted URL's
answer: its JSON ``405``, a document's ``HEAD``), run the ``dependencies`` given to
``channels_router`` first; ``OPTIONS`` at that path runs none of them (browsers send
CORS preflights without credentials) and is answered by the core's CORS decision
(:mod:`tornadose.http.cors`: ``204`` granted, ``403`` ``cors_refused``). Only the route
itself is in ``/docs``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.params import Depends
from fastapi.responses import Response

from tornadose.adapters.starlette import ChannelEndpoints
from tornadose.http.channels import Endpoint

__all__ = ["METHODS", "Guarded"]

#: The methods a router's URL answers with the mounted URL's answer when its route
#: does not take them.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Guarded:
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
        others = sorted(METHODS - {"OPTIONS", *options["methods"]})
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
