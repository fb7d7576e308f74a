"""Backends: where a channel's messages are ordered, numbered, kept and fed from.

Every store works over a :class:`~tornadose.core.backend.Backend` (re-exported in
:mod:`tornadose.backends.base`): six methods, ``publish`` (assigns the id),
``attach(deliver, lost)`` / ``detach``, ``resume`` (sync or awaitable),
``snapshot`` and ``aclose``. The interface and the in-memory default
(:class:`~tornadose.core.memory.MemoryBackend`, re-exported in
:mod:`tornadose.backends.memory`) live in :mod:`tornadose.core`, so the core imports
nothing from here; this package holds the others:

* :mod:`tornadose.backends.redis`: Redis Streams (the ``redis`` extra).

A new backend is a new folder here: a class implementing the six methods (it reaches
its store only through the two callbacks ``attach`` gives it), plus a store
subclass whose :meth:`~tornadose.core.store.BaseStore.make_backend` returns it, as
``RedisStore`` does. It must pass the shared contract suite
(``tests/backends/test_backend_contract.py`` and ``tests/test_delivery_contract.py``,
parametrized over backends).
"""
