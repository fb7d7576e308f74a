"""Framework adapters: thin translations of the tornadose core to each web framework.

* :mod:`adapters.tornado`: Tornado request handlers (``EventSource``,
  ``WebSocketSubscriber``, ``BaseHandler``), also importable as ``tornadose.handlers``.
"""
