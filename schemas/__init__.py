"""Pydantic models of what tornadose puts on the wire.

* :class:`Envelope`: a message as it travels in a WebSocket frame
  (``{"data": ..., "id": ..., "event": ...}``).
* :class:`ErrorBody`: the JSON body of every error response.
* :class:`PublishAccepted`: the body of a successful HTTP publish (``{"id": ...}``).
"""

from tornadose.schemas.envelope import Envelope
from tornadose.schemas.errors import ErrorBody, PublishAccepted

__all__ = ["Envelope", "ErrorBody", "PublishAccepted"]
