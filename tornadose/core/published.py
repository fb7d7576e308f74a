"""``Published``: what ``submit()`` returns, done at once or when the backend took the message."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator
from typing import Any

from tornadose.core.message import Message

__all__ = ["Published"]


class Published:
    """What ``submit()`` returns: awaitable for the published :class:`Message`.

    In-memory stores publish inside ``submit()``, so calling ``store.submit(x)``
    without awaiting is fine and nothing is left pending. A store with a remote
    backend (:class:`~tornadose.backends.redis.store.RedisStore`) returns a ``Published``
    that completes when the backend took the message; awaiting it raises the
    backend's error, if any.
    """

    __slots__ = ("_future", "_message")

    def __init__(self, message: Message | asyncio.Future[Message]) -> None:
        if isinstance(message, Message):
            self._message: Message | None = message
            self._future: asyncio.Future[Message] | None = None
        else:
            self._message = None
            self._future = message

    def done(self) -> bool:
        """Whether publishing finished (successfully or not)."""
        return self._future is None or self._future.done()

    def succeeded(self) -> bool:
        """Whether publishing finished and the backend took the message."""
        future = self._future
        return future is None or (
            future.done() and not future.cancelled() and future.exception() is None
        )

    def add_done_callback(self, callback: Callable[[Published], None]) -> None:
        """Call ``callback(self)`` once publishing finished (at once if it has)."""
        if self._future is None:
            callback(self)
        else:
            self._future.add_done_callback(lambda _: callback(self))

    @property
    def message(self) -> Message:
        """The published message. Raises ``asyncio.InvalidStateError`` if publishing
        has not finished, and the backend's error if it failed."""
        if self._message is None:
            assert self._future is not None
            self._message = self._future.result()
        return self._message

    @property
    def id(self) -> str | None:
        """The published message's id (``None`` while publishing is pending or failed)."""
        if self._message is not None:
            return self._message.id
        assert self._future is not None
        return self._future.result().id if self.succeeded() else None

    def __await__(self) -> Generator[Any, None, Message]:
        if self._message is None:
            assert self._future is not None
            return (yield from self._future.__await__())
        return self._message

    def __repr__(self) -> str:
        return f"<Published {self.id if self.done() else 'pending'}>"
