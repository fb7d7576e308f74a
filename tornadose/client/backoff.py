"""When to try again: the wait between two connection attempts, and which failures
are worth another attempt.

The wait is the server's SSE ``retry`` (else :data:`INITIAL_DELAY`), doubled for
each failed attempt in a row, capped at ``max_delay``, times a random 1 to
``1 + JITTER`` (so clients do not all come back at once), and capped again. So the
server's ``retry`` is a minimum, unless it exceeds ``max_delay``.
"""

from __future__ import annotations

import random

__all__ = ["DEFAULT_MAX_DELAY", "INITIAL_DELAY", "JITTER", "RETRIED_STATUSES", "delay", "retried"]

#: Seconds before the first reconnection attempt, unless the server sent ``retry``.
INITIAL_DELAY = 0.1
#: The default cap of the delay between attempts, in seconds.
DEFAULT_MAX_DELAY = 5.0
#: Random extra wait, as a fraction of the delay (jitter).
JITTER = 0.5
#: Statuses besides 5xx that a server may recover from by itself: retried. Any other
#: status but 200 and 204 raises :class:`~tornadose.client.ClientError`.
RETRIED_STATUSES = frozenset({408, 425, 429})


def delay(retry: int | None, failures: int, max_delay: float) -> float:
    """Seconds to wait before the next attempt, after ``failures`` failed ones in a
    row, given the server's ``retry`` (milliseconds, or ``None``): between the
    doubled base and ``1 + JITTER`` times it, never more than ``max_delay``."""
    base = INITIAL_DELAY if retry is None else retry / 1000
    doubled = min(max_delay, base * 2.0 ** min(failures, 32))
    return min(max_delay, doubled * random.uniform(1.0, 1.0 + JITTER))


def retried(status: int) -> bool:
    """Whether an answer with ``status`` may fix itself (5xx, 408, 425, 429)."""
    return status >= 500 or status in RETRIED_STATUSES
