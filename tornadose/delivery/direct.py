"""The switch for direct delivery.

Direct delivery writes messages for an idle stream straight from the event loop,
once per loop turn, without waking the stream's task (see
:mod:`tornadose.delivery.streams`): a fan-out to many idle connections then costs
about one write each. It relies on asyncio's private API
(:mod:`tornadose._compat.asyncio_tasks`). With it off, every write goes out from its
stream's task, through public API only; the delivery guarantees (order, exactly
once, ids, resume, overflow policies, write timeout) are the same either way, only
the cost per message differs.

It is on by default. It is off when:

* the environment variable ``TORNADOSE_DIRECT_DELIVERY`` is ``0`` (or ``false``,
  ``no``, ``off``) when this module is first imported; ``1`` (``true``, ``yes``,
  ``on``) or unset leaves it on, any other value raises :class:`ValueError` at
  import, so a typo fails at startup instead of being ignored;
* a program calls :func:`set_enabled` with ``False`` (``True`` turns it back on);
* the private API is not known to work on this interpreter
  (:data:`tornadose._compat.asyncio_tasks.UNSUPPORTED`: not CPython 3.11 to 3.14, or
  a name missing): then :func:`set_enabled` cannot turn it on, and the first stream
  that would have used it logs one warning (logger ``tornadose.direct``).

The switch is read when a stream starts: streams already open keep their way of
writing, so flipping it is safe at any time. Adapters need not know about it: they
hand the loops their synchronous write as always, and the loops ignore it
(:func:`if_enabled`) while the switch is off.
"""

from __future__ import annotations

import logging
import os
from typing import TypeVar

from tornadose._compat import asyncio_tasks

__all__ = ["ENVIRONMENT_VARIABLE", "enabled", "if_enabled", "set_enabled"]

#: The environment variable read at import: ``0`` turns direct delivery off.
ENVIRONMENT_VARIABLE = "TORNADOSE_DIRECT_DELIVERY"

_ON = frozenset({"", "1", "true", "yes", "on"})
_OFF = frozenset({"0", "false", "no", "off"})

logger = logging.getLogger("tornadose.direct")

W = TypeVar("W")


def parse_setting(value: str | None) -> bool:
    """Whether ``value`` (the environment variable's, ``None`` when unset) turns
    direct delivery on; :class:`ValueError` for a value that means neither."""
    if value is None:
        return True
    word = value.strip().lower()
    if word in _ON:
        return True
    if word in _OFF:
        return False
    raise ValueError(
        f"{ENVIRONMENT_VARIABLE}={value!r}: use 0 to turn direct delivery off, 1 to keep it on"
    )


_requested = parse_setting(os.environ.get(ENVIRONMENT_VARIABLE))
_warned = False


def set_enabled(on: bool) -> None:
    """Turn direct delivery on or off for streams that start from now on.

    On has an effect only where the private API is usable (see :func:`enabled`).
    """
    global _requested
    _requested = bool(on)


def enabled() -> bool:
    """Whether a stream starting now writes directly: the switch is on and the
    private asyncio API is usable here. The first time the switch is on but the API
    is not, one warning says why and that writes go out from each stream's task."""
    global _warned
    if not _requested:
        return False
    reason = asyncio_tasks.UNSUPPORTED
    if reason is None:
        return True
    if not _warned:
        _warned = True
        logger.warning(
            "direct delivery is off (%s): every write goes out from its stream's task", reason
        )
    return False


def if_enabled(write_now: W | None) -> W | None:
    """``write_now`` while direct delivery is on, else ``None`` (the stream then
    writes only from its task): what the delivery loops call on the synchronous
    write an adapter hands them."""
    return write_now if write_now is not None and enabled() else None
