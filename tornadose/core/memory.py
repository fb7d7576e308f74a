"""``MemoryBackend``: a channel that lives in one store object (the default backend).

Guarantees:

* **Ids**: every published message gets the id ``"<epoch>-<offset>"``: the offset
  counts up from 1, with no gap, and the epoch is random per backend object (drawn
  again in a forked child process), so ids from a restarted store, another store or
  another process never look like ours (:class:`~tornadose.core.history.MessageId`).
* **Synchronous**: :meth:`MemoryBackend.publish` hands the message to ``deliver``
  before it returns, and its :class:`~tornadose.core.published.Published` is done.
  It needs no event loop.
* **History and resume**: the last ``history`` messages (younger than
  ``history_max_age``) are kept in a :class:`~tornadose.core.history.History`; a resume
  is answered at once from it (:func:`~tornadose.core.history.plan_resume`).
* **Feed while detached**: it keeps calling ``deliver`` after :meth:`MemoryBackend.detach`
  (it costs nothing), so stores keep state while nobody listens (a ``DataStore``'s
  value, a ``QueueStore``'s backlog).
"""

from __future__ import annotations

import os
import secrets
import weakref

from tornadose.core.backend import Deliver, Lost
from tornadose.core.history import History, Resume, plan_resume
from tornadose.core.message import Message
from tornadose.core.published import Published

__all__ = ["MemoryBackend"]


class MemoryBackend:
    """The in-memory :class:`~tornadose.core.backend.Backend`: epoch-offset ids and a
    bounded :class:`History` (see the module docstring).

    ``deliver``: the callback to feed from the start (a store creating its own
    backend passes its own, so that messages published before any subscriber
    registers reach it too).
    """

    __slots__ = ("__weakref__", "_deliver", "epoch", "history", "offset")

    def __init__(self, history: History, deliver: Deliver | None = None) -> None:
        self.history = history
        #: Random per backend object: ids of another store or process never match.
        self.epoch = secrets.token_hex(4)
        #: The offset of the last published message (0: none yet).
        self.offset = 0
        self._deliver = deliver
        _backends.add(self)

    def publish(self, message: Message) -> Published:
        """Give ``message`` the next id, keep it in the history and deliver it."""
        self.offset += 1
        message = message.with_id(f"{self.epoch}-{self.offset}")
        self.history.append(self.offset, message)
        if self._deliver is not None:
            self._deliver(message)
        return Published(message)

    def attach(self, deliver: Deliver, lost: Lost) -> None:
        """Feed ``deliver`` (nothing is ever lost in memory: ``lost`` is not called)."""
        del lost
        self._deliver = deliver

    def detach(self) -> None:
        """Nothing to do: delivering to a store without subscribers costs nothing."""

    def resume(self, last_event_id: str) -> Resume:
        """Answered at once from the history (:func:`plan_resume`)."""
        return plan_resume(
            last_event_id, epoch=self.epoch, latest=self.offset, history=self.history
        )

    def snapshot(self) -> dict[str, int]:
        """``history_messages``: messages kept for resuming clients."""
        return {"history_messages": len(self.history)}

    async def aclose(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        return f"<MemoryBackend epoch={self.epoch} offset={self.offset}>"


#: Every in-memory backend, so that a forked child process gives each a new epoch.
_backends: weakref.WeakSet[MemoryBackend] = weakref.WeakSet()


def _new_epochs_after_fork() -> None:
    # A forked child's stores are copies that live on their own: with the parent's
    # epoch, ids of two processes would look alike, and a client resuming on the
    # other process would be replayed that process's messages as if they were its own.
    for backend in list(_backends):
        backend.epoch = secrets.token_hex(4)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_epochs_after_fork)
