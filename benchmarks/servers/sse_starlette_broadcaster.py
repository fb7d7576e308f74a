"""The usual Starlette stack: sse-starlette's ``EventSourceResponse`` fed by broadcaster.

``Broadcast("memory://")`` fans each published message out to one queue per
subscriber; each SSE response is an async generator reading its subscriber and
yielding ``{"id": ..., "data": ...}`` dicts, which sse-starlette encodes. Served by
uvicorn exactly as tornadose's ASGI apps are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from broadcaster import Broadcast
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

from benchmarks.servers.base import Contender, arguments, run, serve_control, start_uvicorn

CHANNEL = "bench"
broadcast = Broadcast("memory://")


async def events(request: Request) -> EventSourceResponse:
    async def stream() -> AsyncIterator[dict[str, str]]:
        async with broadcast.subscribe(channel=CHANNEL) as subscriber:
            async for event in subscriber:  # type: ignore[union-attr]
                if event is None:  # broadcaster's type allows it; it never yields one
                    continue
                message = event.message
                yield {"id": message[1:9], "data": message}

    return EventSourceResponse(stream())


def backlog() -> int:
    # broadcaster's internals: the backend's queue plus every subscriber's queue.
    queued = sum(q.qsize() for q in broadcast._subscribers.get(CHANNEL, ()))
    published = getattr(broadcast._backend, "_published", None)
    return queued + (published.qsize() if published is not None else 0)


async def main() -> None:
    arguments(__doc__ or "")
    await broadcast.connect()
    app = Starlette(routes=[Route("/events", events)])
    port, impl = await start_uvicorn(app)

    async def publish(payload: str, seq: int) -> None:
        await broadcast.publish(CHANNEL, payload)

    contender = Contender(
        publish=publish,
        subscribers=lambda: len(broadcast._subscribers.get(CHANNEL, ())),
        backlog=backlog,
        impl=impl,
    )
    await serve_control(contender, port)


if __name__ == "__main__":
    run(main, uvloop_if_installed=True)
