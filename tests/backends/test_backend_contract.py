"""The backend contract: what every :class:`~tornadose.core.backend.Backend` guarantees.

Every test runs over each backend (in memory, and Redis on the shared server), driving
the backend directly through the six methods of the interface, as a store does. A new
backend adds one entry to :func:`backend` and must pass them all, then the delivery
contract (``tests/test_delivery_contract.py``) through a store over it.
"""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.conftest import BACKENDS, wait_until
from tests.redis_cluster_support import Cluster, redis_cluster
from tests.redis_support import close_and_clear
from tornadose.backends.redis.backend import RedisBackend
from tornadose.core.backend import Backend
from tornadose.core.history import History, Resume
from tornadose.core.memory import MemoryBackend
from tornadose.core.message import Message
from tornadose.core.reasons import ResetReason, ResumeStatus

MakeBackend = Callable[..., Backend]
__all__ = ["redis_cluster"]  # a fixture, used by name


@pytest.fixture(params=[*BACKENDS, "redis-cluster"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[MakeBackend]:
    """``make(history=10)``: a fresh backend of the parameter's kind, closed after the
    test (Redis: on a channel of its own, whose keys are deleted; Redis Cluster: on
    the module's cluster, see ``tests/redis_cluster_support.py``)."""
    made: list[Backend] = []
    if request.param == "memory":

        def make_memory(history: int = 10) -> Backend:
            made.append(MemoryBackend(History(history)))
            return made[-1]

        yield make_memory
        return
    if request.param == "redis-cluster":
        cluster: Cluster = request.getfixturevalue("redis_cluster")
        prefix = f"test-backend-{uuid.uuid4().hex[:12]}"

        def make_clustered(history: int = 10) -> Backend:
            name = f"{prefix}-{len(made)}"
            made.append(RedisBackend(name, cluster.url, history=history))
            return made[-1]

        yield make_clustered
        for each in made:
            await asyncio.wait_for(each.aclose(), 10)
        return
    url: str = request.getfixturevalue("redis_url")
    prefix = f"test-backend-{uuid.uuid4().hex[:12]}"

    def make_redis(history: int = 10) -> Backend:
        made.append(RedisBackend(f"{prefix}-{len(made)}", url, history=history))
        return made[-1]

    yield make_redis
    await close_and_clear(url, prefix, made)


class Feed:
    """The two callbacks a store gives ``attach``, recording what they get."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.lost: list[str | None] = []

    def deliver(self, message: Message) -> None:
        self.messages.append(message)

    def on_lost(self, last_id: str | None) -> None:
        self.lost.append(last_id)


async def attached(backend: Backend) -> Feed:
    """Attach a :class:`Feed`, and wait until the backend feeds it (Redis: its reader
    started reading the channel: a message published now reaches it)."""
    feed = Feed()
    backend.attach(feed.deliver, feed.on_lost)
    probe = await backend.publish(Message("probe", id=None))
    await wait_until(lambda: probe.id in [m.id for m in feed.messages])
    feed.messages.clear()
    return feed


async def answer(resume: Resume | Awaitable[Resume]) -> Resume:
    return resume if isinstance(resume, Resume) else await resume


async def test_publish_assigns_increasing_ids_and_feeds_in_order(backend: MakeBackend) -> None:
    """Every published message gets a new id; the feed gets them all, once, in order,
    with the ids ``publish`` returned."""
    store_backend = backend()
    feed = await attached(store_backend)
    published = [store_backend.publish(Message(n, id=None)) for n in range(5)]
    messages = [await each for each in published]
    await wait_until(lambda: len(feed.messages) == 5)
    assert [m.data for m in feed.messages] == list(range(5))
    assert [m.id for m in feed.messages] == [m.id for m in messages]
    assert len({m.id for m in messages}) == 5
    assert all(each.done() and each.succeeded() for each in published)
    assert feed.lost == []


async def test_resume_replays_what_followed_an_id(backend: MakeBackend) -> None:
    """``resume(id)`` of a published message: RESUMED with every later message, in order."""
    store_backend = backend()
    feed = await attached(store_backend)
    messages = [await store_backend.publish(Message(n, id=None)) for n in range(4)]
    await wait_until(lambda: len(feed.messages) == 4)
    resume = await answer(store_backend.resume(str(messages[0].id)))
    assert resume.status is ResumeStatus.RESUMED
    assert [m.id for m in resume.replay] == [m.id for m in messages[1:]]
    assert [m.data for m in resume.replay] == [1, 2, 3]


async def test_resume_beyond_the_history_is_a_reset(backend: MakeBackend) -> None:
    """A client that missed more than the history holds gets RESET, never a gap."""
    store_backend = backend(history=2)
    feed = await attached(store_backend)
    messages = [await store_backend.publish(Message(n, id=None)) for n in range(6)]
    await wait_until(lambda: len(feed.messages) == 6)
    resume = await answer(store_backend.resume(str(messages[0].id)))
    assert resume.status is ResumeStatus.RESET
    assert resume.reason is ResetReason.HISTORY_TOO_SHORT


@pytest.mark.parametrize("last_event_id", ["", "nonsense", "1-2-3", "x" * 200])
async def test_resume_from_a_malformed_id_is_a_reset(
    backend: MakeBackend, last_event_id: str
) -> None:
    """An id the backend could never have given: RESET (``malformed_id``)."""
    store_backend = backend()
    await attached(store_backend)
    resume = await answer(store_backend.resume(last_event_id))
    assert (resume.status, resume.reason) == (ResumeStatus.RESET, ResetReason.MALFORMED_ID)
    assert resume.last_event_id == last_event_id


async def test_resume_from_the_newest_id_replays_nothing(backend: MakeBackend) -> None:
    """A client that saw everything resumes with an empty replay."""
    store_backend = backend()
    await attached(store_backend)
    newest = await store_backend.publish(Message("last", id=None))
    resume = await answer(store_backend.resume(str(newest.id)))
    assert (resume.status, list(resume.replay)) == (ResumeStatus.RESUMED, [])


async def test_detached_backend_feeds_no_other_store(backend: MakeBackend) -> None:
    """A message reaches the feeds attached to its own channel only."""
    first, second = backend(), backend()
    first_feed, second_feed = await attached(first), await attached(second)
    message = await first.publish(Message("only first", id=None))
    await wait_until(lambda: [m.id for m in first_feed.messages] == [message.id])
    await asyncio.sleep(0.05)
    assert second_feed.messages == []


async def test_snapshot_reports_numbers_and_aclose_is_idempotent(backend: MakeBackend) -> None:
    """``snapshot()`` maps names to integers (``history_messages`` at least);
    ``aclose()`` can be called twice; ``resume`` and ``aclose`` have the declared shapes."""
    store_backend = backend()
    await attached(store_backend)
    numbers = store_backend.snapshot()
    assert "history_messages" in numbers
    assert all(isinstance(value, int) for value in numbers.values())
    assert inspect.iscoroutinefunction(store_backend.aclose)
    store_backend.detach()
    await store_backend.aclose()
    await store_backend.aclose()
