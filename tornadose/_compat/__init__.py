"""Private APIs of other libraries and of the OS, fenced in one module each.

* :mod:`~tornadose._compat.asyncio_tasks`: asyncio's private task API (direct
  delivery), behind a version check;
* :mod:`~tornadose._compat.sockets`: socket options that differ per OS.
"""
