"""Old name of :mod:`tornadose._compat.asyncio_tasks` (re-exports only).

Kept while ``tornadose.adapters.asgi`` still imports :func:`start_eagerly` from
here; new code imports :mod:`tornadose._compat.asyncio_tasks`.
"""

from tornadose._compat.asyncio_tasks import run_in_task, start_eagerly

__all__ = ["run_in_task", "start_eagerly"]
