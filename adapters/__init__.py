"""Framework adapters: thin translations of the tornadose core to each web framework.

* :mod:`adapters.tornado`: Tornado request handlers (``EventSource``,
  ``WebSocketSubscriber``, ``BaseHandler``, ``PublishHandler``, ``channel_handlers``),
  also importable as ``tornadose.adapters.tornado``;
* :mod:`adapters.asgi`: plain ASGI apps (``EventSourceApp``, ``WebSocketApp``,
  ``PublishApp``, ``ChannelsApp``) for uvicorn, Starlette, FastAPI.
"""
