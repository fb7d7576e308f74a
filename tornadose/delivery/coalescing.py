"""When the next delivery sweep starts: adaptive coalescing, as a decision without I/O.

Direct delivery (:mod:`tornadose.delivery.streams`) writes what is queued for every
idle connection in one *sweep* of the event loop. A sweep costs about one write per
connection however many messages each write carries, so when messages arrive faster
than sweeps can go out one message at a time, waiting a little before the next sweep
lets several messages share each connection's write: the fan-out gets cheaper per
message exactly when it is loaded.

The rule, :meth:`SweepPacing.delay`: the next sweep starts no sooner than
``min(cost of the last sweep, max_wait)`` seconds after the last one ended.

* **Light load**: a message that arrives after that has passed (the loop was idle at
  least as long as it last spent sweeping) is swept on the next loop turn, exactly as
  without coalescing: latency is unchanged.
* **Heavy load**: between two sweeps the loop is left at least as long as the last
  sweep took (at most ``max_wait``) for whatever produces messages (requests, a
  backend's reader, a publishing task): sweeps take at most half of the loop's time
  while one costs less than ``max_wait``. Each sweep carries everything that arrived
  meanwhile, in writes of up to ``max_batch`` messages per connection.
* **Bounded**: no message waits more than ``max_wait`` seconds (default
  :data:`DEFAULT_MAX_WAIT`) for a sweep to start because of coalescing.

Only the start of a sweep moves: what a sweep writes, in what order and within which
bounds is unchanged (order, exactly once, queue bounds, the write timeout and
back-pressure are the delivery loops' guarantees and hold as without coalescing).
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_WAIT", "SweepPacing"]

#: The longest a sweep is put off to coalesce, in seconds.
DEFAULT_MAX_WAIT = 0.01


class SweepPacing:
    """The timing of one event loop's sweeps: measured by :meth:`swept`, decided by
    :meth:`delay`. Times are the loop's clock (``loop.time()``), in seconds."""

    __slots__ = ("_last_cost", "_last_end", "max_wait")

    def __init__(self, max_wait: float = DEFAULT_MAX_WAIT) -> None:
        if max_wait < 0:
            raise ValueError(f"max_wait must not be negative, not {max_wait}")
        #: The longest a sweep is put off; 0 turns coalescing off.
        self.max_wait = max_wait
        self._last_end = float("-inf")
        self._last_cost = 0.0

    def delay(self, now: float) -> float:
        """Seconds from ``now`` until the next sweep may start: 0 when the loop has
        been idle for at least the last sweep's cost (bounded by ``max_wait``)."""
        wait = min(self._last_cost, self.max_wait) - (now - self._last_end)
        return wait if wait > 0.0 else 0.0

    def swept(self, started: float, ended: float) -> None:
        """Record a sweep that ran from ``started`` to ``ended``."""
        self._last_end = ended
        self._last_cost = ended - started
