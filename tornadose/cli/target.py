"""What ``tornadose serve`` serves: the user's ``module:attribute``, and the checks
that turn a bad command line into one line on stderr (:class:`UsageError`).

Every check here fails before anything listens: a target that cannot be imported,
that raises, or that names no ``Channels``; a server whose extra is missing (uvicorn
without a WebSocket library included); a Redis URL that is malformed or unreachable.
"""

from __future__ import annotations

import importlib
import inspect
import os
import traceback
from typing import Any

from tornadose._compat import optional
from tornadose.http.channels import Channels

__all__ = [
    "UsageError",
    "channel_urls",
    "check_redis",
    "load_channels",
    "require",
    "require_uvicorn",
]


class UsageError(Exception):
    """A bad command line: printed on one line, exit status 2."""


def require(extra: str, *modules: str) -> None:
    """:class:`UsageError` naming ``extra`` unless every one of ``modules`` can be
    imported (:func:`tornadose._compat.optional.require`)."""
    try:
        optional.require(extra, *modules, needed_by="this command")
    except optional.MissingExtra as exc:
        raise UsageError(str(exc)) from None


def require_uvicorn(extra: str) -> None:
    """:class:`UsageError` naming ``extra`` unless uvicorn and a WebSocket library it
    can use (``websockets`` or ``wsproto``) can be imported: without one, uvicorn would
    start and answer every WebSocket handshake ``400``."""
    require(extra, "uvicorn")
    if len(optional.missing("websockets", "wsproto")) == 2:
        raise UsageError(
            f"uvicorn has no WebSocket library (websockets or wsproto): pip install '{extra}'"
        )


def check_redis(url: str, timeout: float = 3.0, *, source: str = "--redis") -> None:
    """:class:`UsageError` (one line, naming ``source``, the option or environment
    variable that gave it, and ``url``) unless ``url`` is a Redis URL and that Redis
    answers ``PING`` within ``timeout`` seconds; checked at startup, so that a wrong
    URL is not found out later, by every request failing."""
    import redis
    from redis.exceptions import RedisError

    from tornadose.backends.redis.backend import split_cluster_flag

    node_url, _ = split_cluster_flag(url)  # a cluster URL: its node answers PING too
    assert node_url is not None
    try:
        client = redis.Redis.from_url(
            node_url, socket_connect_timeout=timeout, socket_timeout=timeout
        )
    except ValueError as exc:  # redis-py's word for a URL it cannot read
        raise UsageError(f"{source}: not a Redis URL: {url!r} ({_one_line(exc)})") from None
    try:
        client.ping()
    except (RedisError, OSError, ValueError) as exc:
        raise UsageError(f"{source}: cannot reach Redis at {url}: {_one_line(exc)}") from None
    finally:
        client.close()


def _one_line(exc: BaseException) -> str:
    """``exc``'s message on one line (its type's name when it has none)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _failure(target: str, doing: str, exc: Exception) -> UsageError:
    """One line saying that ``doing`` (for ``target``) raised ``exc``, and where: the
    innermost frame of the traceback (for a ``SyntaxError``, its own location)."""
    where = ""
    location = None if isinstance(exc, SyntaxError) else _location(exc)
    if location:
        where = f" (at {location})"
    message = _one_line(exc)
    described = f"{type(exc).__name__}: {message}" if message != type(exc).__name__ else message
    return UsageError(f"{target}: {doing} raised {described}{where}")


def _location(exc: BaseException) -> str | None:
    """``file:line`` where ``exc`` was raised: the innermost frame of its traceback in a
    file under the current directory (the user's project), else the innermost in any
    real file (not importlib's frozen modules, not this module)."""
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if not frame.filename.startswith("<") and frame.filename != __file__
    ]
    cwd = os.getcwd()
    mine = [frame for frame in frames if frame.filename.startswith(cwd + os.sep)]
    if not (mine or frames):
        return None
    frame = (mine or frames)[-1]
    name = os.path.relpath(frame.filename) if mine else frame.filename
    return f"{name}:{frame.lineno}"


def load_channels(target: str) -> Channels:
    """The :class:`Channels` that ``module:attribute`` names (calling it if it is a
    function); :class:`UsageError` if it names none.

    The user's code failing is a :class:`UsageError` too, one line naming the target,
    the exception and where it was raised: a module that cannot be imported (missing,
    or raising anything while it runs, ``SyntaxError`` included), an attribute lookup
    or a factory call that raises. ``SystemExit`` and ``KeyboardInterrupt`` propagate.
    """
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise UsageError(f"expected module:attribute (like myapp.live:channels), not {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise UsageError(
                f"cannot import {module_name!r}: no module named {missing!r}"
            ) from None
        raise _failure(target, f"importing {module_name}", exc) from None
    except Exception as exc:  # the module exists and failed itself
        raise _failure(target, f"importing {module_name}", exc) from None
    found: Any = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attribute!r}") from None
        except Exception as exc:  # a property or module __getattr__ that failed
            raise _failure(target, f"looking up {attribute}", exc) from None
    if not isinstance(found, Channels) and callable(found):
        if inspect.iscoroutinefunction(found):
            raise UsageError(_async_factory(target))
        try:
            inspect.signature(found).bind()
        except TypeError:
            raise UsageError(f"{target} must take no arguments") from None
        except ValueError:  # no signature to inspect: just call it
            pass
        try:
            found = found()
        except Exception as exc:
            raise _failure(target, f"calling {attribute}()", exc) from None
        if inspect.iscoroutine(found):  # an async callable not seen as one above
            found.close()  # never run: no "never awaited" warning
            raise UsageError(_async_factory(target))
    if not isinstance(found, Channels):
        kind = type(found).__name__
        raise UsageError(f"{target} is {kind}, not a tornadose Channels (nor returns one)")
    if not len(found):
        raise UsageError(f"{target} declares no channels")
    return found


def _async_factory(target: str) -> str:
    """What is said about a target that is an ``async def`` factory."""
    return (
        f"{target} is an async function: the factory must be a plain (synchronous) "
        "function returning the Channels"
    )


def channel_urls(channels: Channels, base: str) -> list[str]:
    """One line per channel: where it is served under ``base`` (``http://host:port``)."""
    ws_base = "ws" + base.removeprefix("http")
    lines = []
    for channel in channels:
        path = f"{channels.prefix}/{channel.name}"
        line = f"  {channel.name}: {base}{path}/events  {ws_base}{path}/ws"
        if channel.publishable:
            line += f"  POST {base}{path}/publish"
        lines.append(line)
    return lines
