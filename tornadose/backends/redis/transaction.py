"""A ``MULTI``/``EXEC`` on a connection taken apart, optionally after ``ASKING``.

The connection is taken (and connected) before anything is queued, so a failure up
to then sent nothing: the writer tells an unreachable node (its submissions wait)
from a connection broken after sending (they may have been added). ``ASKING`` first
follows a Redis Cluster's ``ASK`` redirection: the slot is being migrated and the
keys are already on the target node, which takes the transaction only from a
connection that sent ``ASKING`` (its flag lasts until ``EXEC``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import AskError, MovedError

__all__ = ["AskRoute", "asked", "transaction"]

#: ``ask(host, port)``: the command client of a Redis Cluster node an ``ASK`` names.
AskRoute = Callable[[str, int], Awaitable[aioredis.Redis]]


def asked(error: BaseException) -> tuple[str, int] | None:
    """The node an ``ASK`` redirection names (``None`` for anything else, ``MOVED``
    included, which redis-py makes a kind of ``AskError``)."""
    if isinstance(error, AskError) and not isinstance(error, MovedError):
        return error.host, error.port
    return None


async def transaction(client: aioredis.Redis, *, asking: bool = False) -> Pipeline:
    """A transaction pipeline of ``client`` holding a connected connection of its own
    (``ASKING`` sent on it first if ``asking``). Queue commands, ``execute()``, then
    ``reset()`` it (in a ``finally``) to give the connection back."""
    pipe = client.pipeline(transaction=True)
    try:
        connection = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        pipe.connection = connection  # reset() gives it back
        if asking:
            await connection.send_command("ASKING")
            await connection.read_response()
    except BaseException:
        await pipe.reset()  # type: ignore[no-untyped-call]
        raise
    return pipe
