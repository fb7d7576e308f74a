"""Optional dependencies: which are installed, and a helpful error when one is not.

tornadose's extras (``client``, ``redis``, ``asgi``...) pull in packages that its
core never imports; the code that needs one checks for it first, so that a missing
package is reported with the ``pip install`` line that fixes it, not as a bare
:class:`ModuleNotFoundError` from deep inside.
"""

from __future__ import annotations

import importlib

__all__ = ["MissingExtra", "missing", "require"]


class MissingExtra(ImportError):
    """A package an extra of tornadose provides is not installed; the message names
    it and the ``pip install`` line to run."""


def missing(*modules: str) -> list[str]:
    """The names among ``modules`` that cannot be imported, in the order given. Each
    is imported (once per process, as any import), so a package that is installed
    but broken counts as missing too."""
    absent = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            absent.append(name)
    return absent


def require(extra: str, *modules: str, needed_by: str) -> None:
    """Raise :class:`MissingExtra` (``"<needed_by> needs <modules>: pip install
    '<extra>'"``) unless every one of ``modules`` can be imported."""
    absent = missing(*modules)
    if absent:
        raise MissingExtra(f"{needed_by} needs {', '.join(absent)}: pip install '{extra}'")
