"""Pydantic models of what tornadose puts on the wire.

* :class:`Envelope`: a message as it travels in a WebSocket frame
  (``{"data": ..., "id": ..., "event": ...}``).
"""

from schemas.envelope import Envelope

__all__ = ["Envelope"]
