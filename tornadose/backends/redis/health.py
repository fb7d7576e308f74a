"""Health of a Redis connection, and the backoff its loops wait with between failures."""

from __future__ import annotations

import random
from dataclasses import dataclass

from redis.exceptions import RedisError

__all__ = ["NETWORK_ERRORS", "BackendHealth", "Backoff"]

#: What a lost or refused connection raises.
NETWORK_ERRORS = (RedisError, OSError)
_BACKOFF_FIRST, _BACKOFF_MAX = 0.05, 2.0


class Backoff:
    """Exponential backoff with jitter, from 50 ms up to 2 s."""

    def __init__(self) -> None:
        self._next = _BACKOFF_FIRST

    def reset(self) -> None:
        """Start again from the shortest delay (after a success)."""
        self._next = _BACKOFF_FIRST

    def delay(self) -> float:
        """The next delay to wait, in seconds (doubling up to 2 s, with jitter)."""
        delay = self._next * random.uniform(0.5, 1.0)
        self._next = min(self._next * 2, _BACKOFF_MAX)
        return delay


@dataclass
class BackendHealth:
    """The state of one Redis connection, shared by the stores that use it."""

    #: Whether the last round trip to Redis (a read or a publish) succeeded.
    up: bool = True
    #: Failed round trips to Redis (reads and writes), since the start.
    errors: int = 0

    def mark_up(self) -> None:
        """A round trip succeeded."""
        self.up = True

    def mark_down(self) -> None:
        """A round trip failed: counted, and the connection is down until one succeeds."""
        self.up = False
        self.errors += 1
