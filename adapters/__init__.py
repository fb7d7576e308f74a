"""Framework adapters: thin translations of the tornadose core to each web framework.

* :mod:`tornadose.adapters.tornado`: Tornado request handlers (``EventSource``,
  ``WebSocketSubscriber``, ``BaseHandler``, ``PublishHandler``, ``channel_handlers``),
  also importable as ``tornadose.handlers`` (the 0.x path);
* :mod:`tornadose.adapters.asgi`: plain ASGI apps (``EventSourceApp``, ``WebSocketApp``,
  ``PublishApp``, ``ChannelsApp``) for uvicorn, Starlette, FastAPI.
"""
