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

One concept per module; the names quoted below are importable from this package:

* :mod:`~tornadose.adapters.fastapi.router`: ``channels_router``;
* :mod:`~tornadose.adapters.fastapi.channel`: one channel's routes;
* :mod:`~tornadose.adapters.fastapi.multichannel`: the routes across channels;
* :mod:`~tornadose.adapters.fastapi.guarded`: how each route gets the dependencies,
  its other methods and its ``OPTIONS``;
* :mod:`~tornadose.adapters.fastapi.openapi`: the OpenAPI shapes (``PUBLISH_ERRORS``,
  ``inline_schema``).
"""

from __future__ import annotations

from tornadose.adapters.fastapi.openapi import PUBLISH_ERRORS, inline_schema
from tornadose.adapters.fastapi.router import channels_router

__all__ = ["PUBLISH_ERRORS", "channels_router", "inline_schema"]
