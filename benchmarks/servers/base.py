"""The part every benchmark server shares: the control loop and the publisher.

Each server program (one per contender) builds its app, listens on 127.0.0.1, and
hands :func:`serve_control` a :class:`Contender`: three small functions saying how
that contender publishes a message, how many subscribers it has and how many
messages wait in its per-client queues. The publishing loop is the same for all,
so every contender is driven identically.

Commands (JSON lines on stdin) and answers (``@@`` lines on stdout):

``{"cmd": "stats"}``
    -> ``{"subscribers": n, "backlog": b}``
``{"cmd": "publish", "first": s, "count": m, "size": b, "rate": r, "burst": k, "backlog": a}``
    -> ``{"published": m, "seconds": t, "paced": w}`` once the ``m`` messages
    (sequence numbers ``s .. s+m-1``) are published. ``rate`` > 0 publishes
    ``r`` messages per second, one at a time; ``rate`` 0 is full speed (below).
``{"cmd": "quit"}`` (or stdin closing)
    -> the process exits at once.

**Full speed** publishes in *producer regimes*: before each group of ``burst``
messages the publisher yields to the event loop once (``await asyncio.sleep(0)``), so
the server's writers run between two groups, as they would between two events of a
real producer. ``burst`` 1 is the **per-event** regime (one publish per loop turn: one
HTTP POST, one database notification each); ``burst`` k > 1 the **batch** regime (a
burst of k per loop turn, which a server may coalesce into one write).

A server that cannot keep up must not buffer without limit, so the publisher paces
itself on the server's ``backlog`` (messages waiting in per-client queues or socket
buffers, all clients together): every :data:`PACING_EVERY` messages it looks at the
backlog and, while it is above ``backlog`` (default :data:`DEFAULT_BACKLOG`) messages
per subscriber on average, waits (polling every :data:`PACING_POLL` s). The rule is the
same for every contender and both regimes (it does not depend on ``burst``); a server
whose writers keep up is never held back. The client measures the delivered rate, so
this pacing only decides where a surplus waits.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import os
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from benchmarks.common import commands, emit, make_payload, raise_nofile

#: Seconds the publisher waits for a backlog to shrink before it gives up.
STALL_TIMEOUT = 20.0
#: Seconds between two looks at the backlog while waiting.
PACING_POLL = 0.002
#: Messages per subscriber (on average) that may wait in a server before the publisher
#: waits: the same for every contender and both regimes.
DEFAULT_BACKLOG = 20
#: The publisher looks at the backlog once per this many messages (summing every
#: client's queue costs about as much as a few writes; per message it would tax the
#: per-event regime more than the batch one).
PACING_EVERY = 10


@dataclass
class Contender:
    """What the shared control loop needs from one server."""

    #: Publish one payload (a ``str``) with its sequence number; may be a coroutine.
    publish: Callable[[str, int], Awaitable[None] | None]
    #: The number of subscribers connected now.
    subscribers: Callable[[], int]
    #: Messages waiting in per-client queues/buffers now (all clients together).
    backlog: Callable[[], int]
    #: What runs the server ("tornado 6.6", "uvicorn 0.5 asyncio+h11"...).
    impl: str


def tornadose_contender(store: Any, impl: str) -> Contender:
    """The contender of a tornadose server: publishing is ``store.submit``.

    For a store over a remote backend (``RedisStore``), a submitted message waits in
    the backend (on its way to Redis and back) before it reaches the subscribers'
    queues: the backlog counts it for every subscriber until it arrives, so the pacing
    sees what the server still has to deliver, as for the in-memory store. ``store``
    must then count arrivals in an ``arrived`` attribute (see :func:`make_store`).
    """
    submitted = [0]

    def publish(payload: str, seq: int) -> None:
        store.submit(payload)
        submitted[0] += 1

    def backlog() -> int:
        queued: int = store.snapshot()["queued_messages"]
        arrived: int | None = getattr(store, "arrived", None)
        if arrived is None:
            return queued
        return queued + max(0, submitted[0] - arrived) * len(store.subscribers)

    return Contender(
        publish=publish,
        subscribers=lambda: len(store.subscribers),
        backlog=backlog,
        impl=impl,
    )


def make_store(options: argparse.Namespace) -> tuple[Any, str]:
    """The tornadose store of a benchmark server, and the name of its backend.

    In memory: a ``QueueStore``. With ``--redis-url``: a ``RedisStore`` on that URL
    and ``--channel`` that counts the messages reaching it from Redis (for the
    backlog, see :func:`tornadose_contender`). Either way with the store's default
    bounds (``max_queue`` 1000, ``max_queue_bytes`` 8 MiB, the policy ``disconnect``):
    issue 14 asks that no subscriber is cut with default options at full speed, and a
    cut shows as lost messages (``--max-queue`` overrides the message bound).
    """
    from tornadose.core.message import Message
    from tornadose.core.store import DEFAULT_MAX_QUEUE
    from tornadose.stores import QueueStore, RedisStore

    bounds: dict[str, Any] = {"max_queue": options.max_queue or DEFAULT_MAX_QUEUE}
    if options.redis_url is None:
        return QueueStore(**bounds), "memory"

    class CountingRedisStore(RedisStore):
        """A ``RedisStore`` counting the messages its backend feeds it."""

        arrived = 0

        def publish(self, message: Message | None = None) -> None:
            if message is not None:
                self.arrived += 1
            super().publish(message)

    return CountingRedisStore(options.channel, options.redis_url, **bounds), "redis"


def arguments(description: str) -> argparse.Namespace:
    """The command line every server takes."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument(
        "--max-queue", type=int, default=None, help="per-subscriber queue bound (tornadose)"
    )
    parser.add_argument("--coalesce", action="store_true", help="raw server: coalesce writes")
    parser.add_argument(
        "--redis-url", default=None, help="tornadose: a RedisStore on this URL (default: memory)"
    )
    parser.add_argument(
        "--channel", default="tornadose-bench", help="tornadose + Redis: the store's channel"
    )
    options = parser.parse_args()
    raise_nofile()
    return options


async def publish_messages(contender: Contender, command: dict[str, Any]) -> dict[str, Any]:
    """Publish what ``command`` asks for (see the module docstring)."""
    loop = asyncio.get_running_loop()
    first, count, size = command["first"], command["count"], command["size"]
    rate, burst = command.get("rate", 0), max(1, command.get("burst", 1))
    allowance = max(1, command.get("backlog", DEFAULT_BACKLOG))
    publish = contender.publish
    is_async = inspect.iscoroutinefunction(publish)
    start = loop.time()
    paced = 0
    if rate > 0:
        # Fixed rate: message i goes out at start + i/rate (no drift), one at a time.
        for i in range(count):
            delay = start + i / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            result = publish(make_payload(first + i, size), first + i)
            if is_async:
                await result  # type: ignore[misc]
    else:
        limit = allowance * max(1, contender.subscribers())
        seq, end = first, first + count
        unchecked = PACING_EVERY  # look at the backlog before the first message
        while seq < end:
            await asyncio.sleep(0)  # one loop turn before each burst: the writers run
            if unchecked >= PACING_EVERY:
                unchecked = 0
                if contender.backlog() > limit:
                    paced += 1
                    stalled_since = loop.time()
                    while contender.backlog() > limit:
                        if loop.time() - stalled_since > STALL_TIMEOUT:
                            return {
                                "error": f"the backlog stayed above {limit} messages "
                                f"({allowance} per subscriber) for {STALL_TIMEOUT:g} s"
                            }
                        await asyncio.sleep(PACING_POLL)
            stop = min(seq + burst, end)
            unchecked += stop - seq
            while seq < stop:
                result = publish(make_payload(seq, size), seq)
                if is_async:
                    await result  # type: ignore[misc]
                seq += 1
    return {"published": count, "seconds": loop.time() - start, "paced": paced}


async def serve_control(contender: Contender, port: int) -> None:
    """Announce readiness, then obey the runner's commands until told to quit."""
    emit({"ready": True, "port": port, "pid": os.getpid(), "impl": contender.impl})
    async for command in commands():
        name = command.get("cmd")
        if name == "stats":
            emit({"subscribers": contender.subscribers(), "backlog": contender.backlog()})
        elif name == "publish":
            emit(await publish_messages(contender, command))
        elif name == "quit":
            break
        else:
            emit({"error": f"unknown command {name!r}"})
    # No graceful shutdown: the benchmark is over, and a drain would only add waiting.
    os._exit(0)


async def start_uvicorn(app: Any) -> tuple[int, str]:
    """Serve ``app`` with uvicorn on a free loopback port, in this event loop; returns
    the port and a description of what runs it."""
    server, sock, impl = uvicorn_server(app)
    serving = asyncio.ensure_future(server.serve(sockets=[sock]))
    for _ in range(1000):  # at most 10 s
        if server.started or serving.done():
            break
        await asyncio.sleep(0.01)
    if not server.started:
        raise RuntimeError("uvicorn did not start")
    _keep.append(serving)
    return sock.getsockname()[1], impl


#: Tasks that must live as long as the process (asyncio keeps weak references only).
_keep: list[asyncio.Future[Any]] = []


def uvicorn_server(app: Any) -> tuple[Any, Any, str]:
    """A ``uvicorn.Server`` for ``app`` on a free loopback port, its listening socket,
    and a description of what runs it (uvloop/httptools only when installed)."""
    import importlib.util

    import uvicorn

    from tornadose._compat.sockets import listening_socket

    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    config = uvicorn.Config(
        app,
        http=http,
        lifespan="off",
        log_level="warning",
        access_log=False,
        ws_ping_interval=None,  # the load client never answers pings
        backlog=4096,
    )
    sock = listening_socket("127.0.0.1", 0, backlog=4096)
    loop_module = type(asyncio.get_running_loop()).__module__
    loop_name = "uvloop" if loop_module.startswith("uvloop") else "asyncio"
    return uvicorn.Server(config), sock, f"uvicorn {uvicorn.__version__} {loop_name}+{http}"


def _log_slow_collections() -> Callable[[str, dict[str, int]], None]:
    """A ``gc.callbacks`` hook printing every collection over 1 ms to stderr (kept
    in ``results/logs/<contender>/server.log``): set ``BENCH_GC_LOG=1``."""
    started = 0.0

    def log(phase: str, info: dict[str, int]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
            return
        ms = (time.perf_counter() - started) * 1000
        if ms > 1:
            print(f"gc: generation {info['generation']} took {ms:.1f} ms", file=sys.stderr)

    return log


def run(
    main: Callable[[], Coroutine[Any, Any, None]], *, uvloop_if_installed: bool = False
) -> None:
    """Run ``main()`` in asyncio's event loop, or in uvloop's when asked and installed
    (the uvicorn servers ask, as ``uvicorn`` itself would pick it)."""
    if os.environ.get("BENCH_GC_LOG"):
        gc.callbacks.append(_log_slow_collections())
    loop_factory = None
    if uvloop_if_installed:
        try:
            import uvloop
        except ImportError:
            pass
        else:
            loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
