"""The backend interface: who orders, numbers and keeps one channel's messages.

A store (:mod:`tornadose.core.store`) validates messages, holds its subscribers'
bounded queues and applies their overflow policies; everything that depends on
*where* the channel lives is its backend's job, behind the six methods of
:class:`Backend`:

* **order and number**: :meth:`Backend.publish` gives a message its id; every
  subscriber of the channel (in this process or, for a shared backend, in any) sees
  its messages in one order, with the same ids;
* **keep**: the backend keeps the channel's recent history (one history, its own);
* **resume**: :meth:`Backend.resume` says how a client that last saw an id starts:
  the replay, a reset, or a skip through what it has (a :class:`~tornadose.core.history.Resume`);
* **feed**: while attached, the backend hands every message of the channel, in order,
  to the store's ``deliver`` callback, and tells it with ``lost`` when messages were
  lost before reaching it;
* **health**: :meth:`Backend.snapshot` reports its numbers (``backend_up``...).

The core holds the interface and its in-memory implementation
(:class:`~tornadose.core.memory.MemoryBackend`, the default of every store), so it
imports no backend; other backends live in :mod:`tornadose.backends` (Redis) and
reach the store only through the callbacks it gave them. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from tornadose.core.history import Resume
from tornadose.core.message import Message
from tornadose.core.published import Published

__all__ = ["Backend", "Deliver", "Lost"]

#: ``deliver(message)``: one message of the channel, with its id, in the channel's order.
Deliver = Callable[[Message], None]
#: ``lost(last_id)``: messages after ``last_id`` (``None``: any) were lost before they
#: reached ``deliver``; the store sends its subscribers a ``tornadose.reset`` (``data_lost``).
Lost = Callable[[str | None], None]


class Backend(Protocol):
    """Orders, numbers and keeps one channel's messages, and feeds them to its store.

    One backend object serves one store. Its methods are called from the event loop
    that serves the store's subscribers (:meth:`publish` may also be called with no
    loop running, if the backend needs none).
    """

    def publish(self, message: Message) -> Published:
        """Publish ``message`` (valid, encoded, without an id) to the channel.

        Returns a :class:`Published` that completes with the message carrying its
        id once the backend took it, or fails with
        :class:`~tornadose.core.errors.StoreUnavailable`. The message reaches
        ``deliver`` like every other message of the channel, in the channel's order
        (an in-memory backend calls ``deliver`` before ``publish`` returns).
        """
        ...

    def attach(self, deliver: Deliver, lost: Lost) -> None:
        """From now until :meth:`detach`, feed the channel to ``deliver`` and ``lost``.

        The store attaches when its first subscriber registers and detaches when its
        last one leaves, or when it closes. Attaching again replaces the callbacks.
        """
        ...

    def detach(self) -> None:
        """The store has no subscriber any more: the backend may stop feeding it (a
        remote backend stops reading the channel), or go on (in memory it costs
        nothing, and stores keep state from it: a value, a backlog)."""
        ...

    def resume(self, last_event_id: str) -> Resume | Awaitable[Resume]:
        """How a subscriber that last saw ``last_event_id`` starts (while attached).

        A backend that answers from memory returns the :class:`Resume` at once; one
        that must ask elsewhere returns an awaitable, and the store holds the
        subscription meanwhile: live messages fed to it in between wait in its queue,
        and those the replay already holds are dropped with :attr:`Resume.skip`.
        """
        ...

    def snapshot(self) -> Mapping[str, int]:
        """The backend's own numbers, added to the store's ``snapshot()`` (in memory:
        ``history_messages``; Redis: ``backend_up``, ``backend_errors``...)."""
        ...

    async def aclose(self) -> None:
        """Release what the backend holds (connections), after the messages it was
        given are sent. Called by the store's ``aclose()``."""
        ...
