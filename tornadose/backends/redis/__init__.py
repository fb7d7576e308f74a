"""The Redis Streams backend (the ``redis`` extra), one concept per module:

* :mod:`~tornadose.backends.redis.layout`: keys, Lua, entry ids, continuity (pure);
* :mod:`~tornadose.backends.redis.health`: connection health and backoff;
* :mod:`~tornadose.backends.redis.reader`: the reading loop of a process;
* :mod:`~tornadose.backends.redis.writer`: the ordered publishing (one isolated
  transaction per channel);
* :mod:`~tornadose.backends.redis.resume`: the replay query;
* :mod:`~tornadose.backends.redis.recent`: the entries judged last, shared by replays;
* :mod:`~tornadose.backends.redis.connection`: a process's connections, per event loop;
* :mod:`~tornadose.backends.redis.backend`: ``RedisBackend``, the interface over them;
* :mod:`~tornadose.backends.redis.store`: ``RedisStore``, a store over ``RedisBackend``.

Importing this package imports no module of it (``redis`` loads on first use).
"""
