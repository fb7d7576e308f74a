"""The in-memory backend, every store's default (defined in the core, see
:mod:`tornadose.core.memory`)."""

from __future__ import annotations

from tornadose.core.memory import MemoryBackend

__all__ = ["MemoryBackend"]
