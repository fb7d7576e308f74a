"""Presence: how many subscribers each channel has, in this process and everywhere.

A channel's subscribers *here* are its store's registered subscribers in this
process (an SSE or WebSocket stream, a multi-channel connection counting once in each
of its channels, a Python ``store.subscribe()``). *Everywhere* is the sum over every
process sharing the channels, which needs a :class:`PresenceBackend`; without one
(in-memory channels) it is the count here.

With a backend (``RedisPresence`` for a :class:`~tornadose.http.channels.Channels`
with a ``redis_url``), each process sends its counts every ``interval`` seconds
(default 1) and gets the totals back in the same round trip; each count it sends
expires ``ttl`` seconds later (default 3, by Redis's clock), so **a process that
dies stops counting within ``ttl`` seconds**, and the totals a process serves are at
most ``interval`` seconds older than that (so: within ``ttl + interval``, 4 s by
default). The heartbeat runs from the first time :meth:`Presence.start` is called
in a running event loop until :meth:`Presence.stop` (``Channels.aclose()``): when the
channels are mounted in a running loop (``channel_handlers`` called inside it, a
``ChannelsApp``'s lifespan startup), at a ``ChannelsApp``'s first request, at the
first multi-channel or presence request.

Served (both adapters, JSON; :mod:`tornadose.http.routes`)::

    GET {prefix}/{name}/presence  -> {"channel": name, "here": 3, "everywhere": 7}
    GET {prefix}/_presence        -> {"channels": {name: {"here": 3, "everywhere": 7}, ...}}

and as the Prometheus gauge ``tornadose_presence_subscribers{store}`` (everywhere).

**Join/leave events (opt-in).** A channel declared with ``presence_events=True``
gives its subscribers a ``tornadose.presence`` event, data ``{"here": n,
"everywhere": n}`` and no id, whenever its counts changed since the last one: checked
at every heartbeat (each ``interval``), so joins and leaves are coalesced, at most one
event per second per channel, never a storm. Each process tells its own subscribers
(:meth:`~tornadose.core.store.BaseStore.announce`: not a message of the channel, never
stored, replayed or sent through Redis); a subscriber may get one right after it
joined.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Protocol

import pydantic_core

from tornadose.core.message import Message
from tornadose.core.store import BaseStore
from tornadose.http.answer import Answer, json_answer

__all__ = ["PRESENCE_EVENT", "Presence", "PresenceBackend", "presence_answer"]

logger = logging.getLogger("tornadose.presence")

#: Seconds between two heartbeats of a process.
DEFAULT_INTERVAL = 1.0
#: The event telling a channel's subscribers its counts changed (opt-in).
PRESENCE_EVENT = "tornadose.presence"


class PresenceBackend(Protocol):
    """Where processes share their counts (see the module docstring)."""

    #: Seconds a count sent stays counted.
    ttl: float

    async def beat(self, counts: Mapping[str, int]) -> dict[str, int]:
        """Send this process's ``counts`` (channel: subscribers here) and return the
        totals of every process whose counts have not expired, per channel of
        ``counts``."""
        ...

    async def aclose(self) -> None:
        """Withdraw this process's counts and release connections."""
        ...


class Presence:
    """The subscriber counts of a set of named stores (see the module docstring)."""

    def __init__(
        self,
        stores: Callable[[], Mapping[str, BaseStore]],
        backend: PresenceBackend | None = None,
        *,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self._stores = stores
        self.backend = backend
        self.interval = interval
        self._totals: dict[str, int] = {}
        #: The counts this process sent with the heartbeat that gave ``_totals``.
        self._sent: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None
        #: Channels whose subscribers are told of changes, and the last count told.
        self._followed: dict[str, tuple[int, int] | None] = {}

    def here(self) -> dict[str, int]:
        """Subscribers of each channel in this process, now."""
        return {name: len(store.subscribers) for name, store in self._stores().items()}

    def counts(self) -> dict[str, dict[str, int]]:
        """``{channel: {"here": n, "everywhere": total}}``: ``everywhere`` is the
        other processes' counts at the last heartbeat plus this process's now (never
        below ``here``); without a backend, or before its first answer, ``here``."""
        here = self.here()
        totals, sent = self._totals, self._sent
        if self.backend is None:
            return {name: {"here": n, "everywhere": n} for name, n in here.items()}
        return {
            name: {"here": n, "everywhere": max(totals.get(name, n) - sent.get(name, n) + n, n)}
            for name, n in here.items()
        }

    def follow(self, name: str) -> None:
        """Send ``tornadose.presence`` events to channel ``name``'s subscribers (see
        the module docstring), from the next heartbeat on."""
        self._followed.setdefault(name, None)
        self.start()

    def start(self) -> None:
        """Start the heartbeat (with a backend or followed channels, in a running
        loop; else nothing)."""
        if self.backend is None and not self._followed:
            return
        if self._task is not None and not self._task.done():
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._task = asyncio.ensure_future(self._beat_forever())

    async def beat(self) -> None:
        """One heartbeat now: send the counts, keep the totals, and tell the
        subscribers of followed channels whose counts changed."""
        if self.backend is not None:
            sent = self.here()
            timeout = max(self.interval, self.backend.ttl)
            try:
                totals = await asyncio.wait_for(self.backend.beat(sent), timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"the presence backend did not answer a heartbeat within {timeout} s"
                ) from None
            self._totals, self._sent = totals, sent
        if self._followed:
            counts, stores = self.counts(), self._stores()
            for name, told in list(self._followed.items()):
                now = counts.get(name)
                if now is None or name not in stores:
                    continue
                pair = (now["here"], now["everywhere"])
                if pair != told:
                    self._followed[name] = pair
                    stores[name].announce(Message(now, id=None, event=PRESENCE_EVENT))

    async def _beat_forever(self) -> None:
        failing = False
        while True:
            try:
                await self.beat()
                if failing:
                    logger.info("presence heartbeat works again")
                failing = False
            except asyncio.CancelledError:
                raise
            except Exception:
                if not failing:
                    logger.exception(
                        "presence heartbeat failed (retrying every %s s)", self.interval
                    )
                failing = True
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        """Stop the heartbeat and withdraw this process's counts."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self.backend is not None:
            timeout = max(self.interval, self.backend.ttl)
            try:
                await asyncio.wait_for(self.backend.aclose(), timeout)
            except TimeoutError:
                logger.warning(
                    "the presence backend did not withdraw this process's counts within %s s "
                    "(they expire %s s after the last heartbeat)",
                    timeout,
                    self.backend.ttl,
                )


def presence_answer(presence: Presence, name: str | None = None) -> Answer:
    """``GET {prefix}/{name}/presence`` (``name``) or ``GET {prefix}/_presence``."""
    presence.start()
    counts = presence.counts()
    if name is not None:
        body: dict[str, object] = {
            "channel": name,
            **counts.get(name, {"here": 0, "everywhere": 0}),
        }
    else:
        body = {"channels": counts}
    return json_answer(200, pydantic_core.to_json(body))
