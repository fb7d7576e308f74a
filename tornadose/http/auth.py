"""Authorization of publishers and subscribers: one hook, the same on every adapter.

An *authorize hook* is a callable ``authorize(headers, channel, action)``, plain or
async, where ``headers`` maps lower-case header names to values, ``channel`` is the
channel's name and ``action`` an :class:`Action`. It allows by returning ``True``
(or ``None``) and refuses by returning ``False`` (``403 Forbidden``) or raising
:class:`Unauthorized` (``401``, e.g. no or bad credentials) or :class:`Forbidden`
(``403``). Any other exception is a bug in the hook: it is logged and the request
is refused with ``403`` (fail closed).

Without a hook everything is allowed.
"""

from __future__ import annotations

import enum
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping

from tornadose.core.errors import TornadoseError
from tornadose.http.answer import Answer, error_answer

__all__ = ["Action", "Authorize", "Forbidden", "Unauthorized", "check_access"]

logger = logging.getLogger("tornadose.auth")


class Action(enum.Enum):
    """What a request wants to do on a channel."""

    SUBSCRIBE = "subscribe"
    PUBLISH = "publish"


class Unauthorized(TornadoseError):
    """Raise from an authorize hook to answer ``401 Unauthorized``.

    ``www_authenticate``, if given, is sent as the ``WWW-Authenticate`` header.
    """

    def __init__(self, detail: str = "authentication required", www_authenticate: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.www_authenticate = www_authenticate


class Forbidden(TornadoseError):
    """Raise from an authorize hook to answer ``403 Forbidden`` with a reason."""

    def __init__(self, detail: str = "forbidden") -> None:
        super().__init__(detail)
        self.detail = detail


Authorize = Callable[[Mapping[str, str], str, Action], "bool | Awaitable[bool | None] | None"]


async def check_access(
    authorize: Authorize | None, headers: Mapping[str, str], channel: str, action: Action
) -> Answer | None:
    """Run the hook; ``None`` if the request may go on, else the 401/403 answer."""
    if authorize is None:
        return None
    try:
        verdict = authorize(headers, channel, action)
        if inspect.isawaitable(verdict):
            verdict = await verdict
    except Unauthorized as exc:
        extra = (("WWW-Authenticate", exc.www_authenticate),) if exc.www_authenticate else ()
        return error_answer(401, "unauthorized", exc.detail, *extra)
    except Forbidden as exc:
        return error_answer(403, "forbidden", exc.detail)
    except Exception:
        logger.exception("authorize hook failed for %s on %r; refusing", action.value, channel)
        return error_answer(403, "forbidden", "authorization failed")
    if verdict is False:
        return error_answer(403, "forbidden", f"not allowed to {action.value} on {channel!r}")
    return None
