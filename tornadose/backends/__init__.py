"""Backends: where a channel's messages are ordered, numbered, kept and fed from.

Every store works over a :class:`tornadose.core.backend.Backend`: six methods,
``publish`` (assigns the id), ``attach(deliver, lost)`` / ``detach``, ``resume``
(sync or awaitable), ``snapshot`` and ``aclose``. The interface and the in-memory
default (:class:`tornadose.core.memory.MemoryBackend`) are defined in
:mod:`tornadose.core` and imported from there only (the core imports nothing from
this package); this package holds the other backends, one folder each:

* :mod:`tornadose.backends.redis`: Redis Streams (the ``redis`` extra).

A new backend is a new folder here: a class implementing
:class:`tornadose.core.backend.Backend` (it reaches its store only through the two
callbacks ``attach`` gives it), plus a store subclass whose
:meth:`~tornadose.core.store.BaseStore.make_backend` returns it, as ``RedisStore``
does. It must pass the backend contract (``tests/backends/test_backend_contract.py``,
one entry in its ``backend`` fixture) and the delivery contract
(``tests/test_delivery_contract.py``, one entry in ``BACKENDS`` and the
``backend_store`` fixture of ``tests/conftest.py``).
"""
