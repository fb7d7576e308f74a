"""A ``MULTI``/``EXEC`` on a connection taken apart, optionally after ``ASKING``;
several transactions in one round trip (:func:`transactions`).

The connection is taken (and connected) before anything is queued, so a failure up
to then sent nothing: the writer tells an unreachable node (its submissions wait)
from a connection broken after sending (they may have been added). ``ASKING`` first
follows a Redis Cluster's ``ASK`` redirection: the slot is being migrated and the
keys are already on the target node, which takes the transaction only from a
connection that sent ``ASKING`` (its flag lasts until ``EXEC``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import AskError, MovedError, ResponseError

__all__ = ["AskRoute", "Command", "asked", "transaction", "transactions"]

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


#: One command of a transaction: its arguments, as sent.
Command = tuple[object, ...]


async def transactions(
    client: aioredis.Redis, blocks: Sequence[Sequence[Command]]
) -> list[list[Any] | ResponseError]:
    """Run ``blocks`` as one ``MULTI``/``EXEC`` transaction each, all sent in one round
    trip (one non-transactional pipeline on one connection): each block is atomic,
    the blocks are not atomic together. A block's answer is the list of its commands'
    raw replies (redis-py's response callbacks are not applied: an error reply inside
    ``EXEC`` is a ``ResponseError`` in it), or the error that aborted the block (a
    command Redis refused while queueing it, e.g. ``ASK`` or ``NOPERM``; ``EXEC``
    then answers ``EXECABORT``)."""
    pipe = client.pipeline(transaction=False)
    # Raw replies: the queued commands answer QUEUED, which their callbacks cannot parse.
    pipe.response_callbacks = {}
    for block in blocks:
        pipe.execute_command("MULTI")
        for command in block:
            pipe.execute_command(*command)
        pipe.execute_command("EXEC")
    replies = list(await pipe.execute(raise_on_error=False))
    answers: list[list[Any] | ResponseError] = []
    at = 0
    for block in blocks:
        queued = replies[at + 1 : at + 1 + len(block)]
        executed = replies[at + 1 + len(block)]
        at += len(block) + 2
        refused = next((r for r in queued if isinstance(r, ResponseError)), None)
        if isinstance(executed, ResponseError):
            answers.append(refused or executed)
        elif refused is not None:
            answers.append(refused)
        else:
            answers.append(list(executed))
    return answers
