"""What ``tornadose serve`` serves: the user's ``module:attribute``, and the checks
that turn a bad command line into one line on stderr (:class:`UsageError`)."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from tornadose._compat import optional
from tornadose.http.channels import Channels

__all__ = ["UsageError", "channel_urls", "load_channels", "require"]


class UsageError(Exception):
    """A bad command line: printed on one line, exit status 2."""


def require(extra: str, *modules: str) -> None:
    """:class:`UsageError` naming ``extra`` unless every one of ``modules`` can be
    imported (:func:`tornadose._compat.optional.require`)."""
    try:
        optional.require(extra, *modules, needed_by="this command")
    except optional.MissingExtra as exc:
        raise UsageError(str(exc)) from None


def load_channels(target: str) -> Channels:
    """The :class:`Channels` that ``module:attribute`` names (calling it if it is a
    function); :class:`UsageError` if it names none.

    An import error raised by the module itself (not by its absence) propagates with
    its traceback: it is the user's code that failed, not the command line.
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
        raise  # the module exists and failed itself: its traceback says why
    found: Any = module
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(found, Channels) and callable(found):
        try:
            inspect.signature(found).bind()
        except TypeError:
            raise UsageError(f"{target} must take no arguments") from None
        except ValueError:  # no signature to inspect: just call it
            pass
        found = found()
    if not isinstance(found, Channels):
        kind = type(found).__name__
        raise UsageError(f"{target} is {kind}, not a tornadose Channels (nor returns one)")
    if not len(found):
        raise UsageError(f"{target} declares no channels")
    return found


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
