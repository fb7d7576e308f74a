"""The backend interface (defined in the core, which must not import this package)."""

from __future__ import annotations

from tornadose.core.backend import Backend, Deliver, Lost

__all__ = ["Backend", "Deliver", "Lost"]
