"""Read a channel from Python with ``tornadose.client``, resuming across a reconnect.

One program, both sides: it serves a ``ticks`` channel (a ``Tick`` every 0.1 s) with
Tornado on 127.0.0.1, then reads it with the client, validated into ``Tick``. After
``--count`` ticks it disconnects, lets a few more ticks be published, and subscribes
again from the last id it got: the server answers ``tornadose.resumed`` and replays
exactly the ticks it missed (no gap, no duplicate). Then it stops and exits with
status 0.

Run it::

    $ python examples/client.py --port 8000 --count 5

It prints one line per event: ``<id> n=<n>`` for a tick, and the control event's name
and data for ``tornadose.resumed`` (or ``tornadose.reset``, had the history run out).
The client reconnects by itself too (after a server restart, a network error): the
explicit second subscription here only makes the resume visible.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools

import pydantic
import tornado.web

import tornadose.client
from tornadose.adapters.tornado import channel_handlers
from tornadose.http.channels import Channels
from tornadose.stores import QueueStore

#: Seconds between two published ticks.
INTERVAL = 0.1


class Tick(pydantic.BaseModel):
    """The messages of the ``ticks`` channel."""

    n: int


async def tick_forever(store: QueueStore) -> None:
    for n in itertools.count():
        store.submit(Tick(n=n))
        await asyncio.sleep(INTERVAL)


async def read(url: str, count: int, last_event_id: str | None) -> str | None:
    """Print ``count`` ticks of ``url`` (and any control event); the last tick's id."""
    seen = 0
    last_id = last_event_id
    async with tornadose.client.subscribe(url, schema=Tick, last_event_id=last_id) as stream:
        async for event in stream:
            if isinstance(event, tornadose.client.ControlEvent):
                print(event.event, event.data)  # tornadose.resumed / tornadose.reset
                continue
            print(event.id, event.data)  # event.data is a Tick
            last_id = event.id
            seen += 1
            if seen == count:
                break
    return last_id


async def main(port: int, count: int) -> None:
    channels = Channels()
    store = QueueStore(schema=Tick)
    channels.add("ticks", store)
    application = tornado.web.Application(channel_handlers(channels))
    server = application.listen(port, "127.0.0.1")
    ticker = asyncio.create_task(tick_forever(store))
    url = f"http://127.0.0.1:{port}/ticks/events"
    try:
        last_id = await read(url, count, None)
        await asyncio.sleep(5 * INTERVAL)  # ticks published while nobody listens
        print("reconnecting after", last_id, flush=True)
        await read(url, count, last_id)
    finally:
        ticker.cancel()
        server.stop()
        await channels.aclose()
        await asyncio.wait_for(server.close_all_connections(), 5)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (8000)")
    parser.add_argument("--count", type=int, default=5, help="ticks read per connection (5)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    asyncio.run(main(args.port, args.count))
