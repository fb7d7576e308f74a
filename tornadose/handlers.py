"""Tornado request handlers, at the import path of the original tornadose.

This is :mod:`tornadose.adapters.tornado` under its historical name; it needs Tornado
(``pip install 'tornadose[tornado]'``).
"""

from tornadose.adapters.tornado import BaseHandler, EventSource, WebSocketSubscriber

__all__ = ["BaseHandler", "EventSource", "WebSocketSubscriber"]
