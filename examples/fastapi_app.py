"""Live chat rooms in FastAPI: channels in ordinary routes, guarded by a dependency.

* ``app.include_router(channels_router(channels, dependencies=[...]))`` serves every
  room at ``/live/{room}/events`` (SSE), ``/live/{room}/ws`` (WebSocket) and
  ``/live/{room}/publish`` (POST, the JSON body is a ``Line``), all listed in
  ``/docs``, all behind ``Depends(reader)``;
* your own routes: ``GET /rooms/{room}/events`` and ``WS /rooms/{room}/ws`` choose the
  room by path parameter (an unknown room: JSON ``404`` ``unknown_channel``), and
  ``POST /rooms/{room}/say`` publishes with ``await channels[room].publish(...)``,
  answering the message id.

Every route wants ``Authorization: Bearer letmein`` (else ``401``)::

    $ python examples/fastapi_app.py --port 8000
    $ curl -N -H 'Authorization: Bearer letmein' http://127.0.0.1:8000/rooms/lobby/events
    $ curl -X POST -H 'Authorization: Bearer letmein' \\
        'http://127.0.0.1:8000/rooms/lobby/say?text=hello'

Ctrl-C (SIGINT) ends the open streams, then the server.
"""

from __future__ import annotations

import argparse
from typing import Annotated

import pydantic
import uvicorn
from fastapi import Depends, FastAPI, Header, HTTPException, WebSocket
from fastapi.responses import JSONResponse, Response

from tornadose.adapters.fastapi import channels_router
from tornadose.adapters.starlette import ChannelEndpoints
from tornadose.core.errors import MessageValidationError
from tornadose.http.channels import Channels


class Line(pydantic.BaseModel):
    """One chat line."""

    user: str
    text: str = pydantic.Field(min_length=1, max_length=500)


def reader(authorization: Annotated[str | None, Header()] = None) -> str:
    """Who is asking: ``Bearer letmein`` is alice; anything else is refused."""
    if authorization != "Bearer letmein":
        raise HTTPException(401, "log in first", headers={"WWW-Authenticate": "Bearer"})
    return "alice"


channels = Channels()
channels.add("lobby", schema=Line, description="Everyone")
channels.add("dev", schema=Line, description="The developers")

endpoints = ChannelEndpoints(channels)  # for your own routes
app = FastAPI(title="rooms", lifespan=endpoints.lifespan)
app.include_router(channels_router(channels, dependencies=[Depends(reader)]), prefix="/live")

User = Annotated[str, Depends(reader)]


@app.exception_handler(MessageValidationError)
async def invalid_line(request: object, exc: MessageValidationError) -> JSONResponse:
    return JSONResponse({"detail": exc.errors}, status_code=422)


@app.get("/rooms/{room}/events", response_class=Response)
async def room_events(room: str, user: User) -> Response:
    return endpoints.events(room)


@app.websocket("/rooms/{room}/ws")
async def room_ws(websocket: WebSocket, room: str, user: User) -> None:
    await endpoints.websocket(room, websocket)


@app.post("/rooms/{room}/say", status_code=201)
async def say(room: str, text: str, user: User) -> dict[str, str]:
    if room not in channels:
        raise HTTPException(404, f"no room {room!r}")
    return {"id": await channels[room].publish({"user": user, "text": text})}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (8000)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, timeout_graceful_shutdown=3)
