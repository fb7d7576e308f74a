"""What a store over a backend other than memory says of in-memory-only attributes."""

from __future__ import annotations

import pytest

from tornadose.backends.redis.backend import RedisBackend
from tornadose.core.backend import Backend
from tornadose.core.store import BaseStore


class OverRedis(BaseStore):
    """A plain store over a ``RedisBackend`` (not a ``RedisStore``): the generic path."""

    def make_backend(self) -> Backend:
        return RedisBackend("never-connected", "redis://127.0.0.1:1/0", history=5)


def test_history_and_epoch_of_a_store_over_another_backend_say_why_they_are_missing() -> None:
    """Reading ``history`` or ``epoch`` raises AttributeError naming the backend that
    keeps the history and gives the ids, and what to use instead; nothing connects."""
    store = OverRedis()
    with pytest.raises(AttributeError, match="OverRedis has no in-process history") as history:
        store.history  # noqa: B018
    for hint in ("RedisBackend keeps it", "last_event_id=", "store.history_limit"):
        assert hint in str(history.value)
    with pytest.raises(AttributeError, match="ids are given by its backend RedisBackend"):
        store.epoch  # noqa: B018
