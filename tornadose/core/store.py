"""Stores: where messages are published, and who receives them.

A store accepts messages with :meth:`~BaseStore.submit` and pushes each one to every
registered subscriber's bounded :class:`~tornadose.core.subscription.Subscription`. The
stores import no web framework: the same store object can serve Tornado handlers,
ASGI apps and plain Python readers at the same time, in one event loop.

Guarantees of every store:

* **Validated or nothing**: with a ``schema``, ``submit()`` validates the message
  with pydantic; an invalid one raises :class:`~tornadose.core.errors.MessageValidationError`
  and nothing is published. A message that cannot be encoded for the wire raises
  :class:`~tornadose.core.errors.UnencodableMessage`, also before anything is published.
* **Order**: every subscriber receives messages in the order they were submitted.
* **Ids**: every published message gets an id from the store's backend. In memory
  (the default) it is ``"<epoch>-<offset>"``: the offset counts up from 1 within the
  store, and the epoch is random per store object (and drawn again in a forked child
  process), so ids from a restarted store never look like ids of the old one (see
  :mod:`tornadose.core.memory`). A ``RedisStore``'s ids are its stream's entry ids.
* **Bounded**: each subscriber queues at most ``max_queue`` messages and
  ``max_queue_bytes`` bytes; the store's ``overflow`` policy says what happens
  beyond (see :mod:`tornadose.core.subscription`). A slow subscriber never blocks
  ``submit()`` or any other subscriber.
* **Resume**: the last ``history`` messages (and, with ``history_max_age``, only
  those younger than that) are kept; a subscriber that registers with the id of the
  last message it saw gets every later one, in order, then live messages, or an
  explicit reset signal when that is impossible (see :mod:`tornadose.core.history`).
  The backend keeps the history and answers the resume; one that answers
  asynchronously (Redis) holds the subscription meanwhile, and no live message
  overtakes the replay or repeats it.
* **No event loop at construction**: stores can be created at module level, before
  any event loop runs, and used from whichever loop serves the subscribers.
* ``submit()`` works called plainly from synchronous code (a ``PeriodicCallback``,
  a callback) and awaited from a coroutine: awaiting the result gives the published
  :class:`~tornadose.core.message.Message`. In-memory stores deliver inside the call; a
  ``RedisStore`` sends the message in the background and its result completes (or
  fails with ``StoreUnavailable``) once Redis took it.

**Backends.** Where a channel's messages are ordered, numbered, kept and fed from is
the store's :class:`~tornadose.core.backend.Backend`: a
:class:`~tornadose.core.memory.MemoryBackend` unless a subclass's :meth:`BaseStore.make_backend`
returns another (``RedisStore`` returns a ``RedisBackend``). The store gives the
backend two callbacks and nothing else: :meth:`BaseStore.publish` (every message of
the channel, in order) and one saying messages were lost; it attaches them while it
has subscribers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections import deque
from collections.abc import Awaitable, KeysView
from typing import Any, ClassVar

import pydantic
import pydantic_core

from tornadose.core.backend import Backend
from tornadose.core.errors import MessageValidationError, StoreClosed
from tornadose.core.history import History, MessageId, Resume, control_message
from tornadose.core.memory import MemoryBackend
from tornadose.core.message import Message
from tornadose.core.published import Published
from tornadose.core.reasons import CloseReason, OverflowPolicy, ResetReason, ResumeStatus
from tornadose.core.subscription import StoreStats, Subscription

__all__ = [
    "DEFAULT_HISTORY",
    "DEFAULT_MAX_QUEUE",
    "DEFAULT_MAX_QUEUE_BYTES",
    "BaseStore",
    "DataStore",
    "OverflowPolicy",
    "Published",
    "QueueStore",
]

logger = logging.getLogger("tornadose.stores")

#: Messages a subscriber may have waiting before the overflow policy applies.
DEFAULT_MAX_QUEUE = 1000
#: Bytes (of encoded SSE) a subscriber may have waiting before the policy applies.
DEFAULT_MAX_QUEUE_BYTES = 8 * 1024 * 1024
#: Messages kept for resuming clients (``QueueStore``, ``BaseStore``).
DEFAULT_HISTORY = 1000

_LIVE = Resume(ResumeStatus.LIVE)


class BaseStore:
    """Base class of all stores: validation, subscribers and fan-out, over a backend.

    Keyword options (all stores):

    * ``schema``: a pydantic model or any type pydantic's ``TypeAdapter`` accepts;
      ``None`` accepts anything encodable;
    * ``max_queue``: messages a subscriber may have waiting
      (:data:`DEFAULT_MAX_QUEUE`); ``max_queue_bytes``: bytes of them
      (:data:`DEFAULT_MAX_QUEUE_BYTES`; ``None``: no byte bound);
    * ``overflow``: an :class:`OverflowPolicy` or its value (default per class);
    * ``history``: messages kept for resuming clients (default per class; ``0``:
      none); ``history_max_age``: seconds they are kept at most (``None``: no limit).
      The backend keeps them (:attr:`history_limit`, :attr:`history_max_age`).

    Every other argument goes to :meth:`initialize`.
    """

    #: The overflow policy of stores of this class unless ``overflow=`` says otherwise.
    default_overflow: ClassVar[OverflowPolicy] = OverflowPolicy.DISCONNECT
    #: The history length of stores of this class unless ``history=`` says otherwise.
    default_history: ClassVar[int] = DEFAULT_HISTORY

    def __init__(
        self,
        *args: Any,
        schema: Any = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_queue_bytes: int | None = DEFAULT_MAX_QUEUE_BYTES,
        overflow: OverflowPolicy | str | None = None,
        history: int | None = None,
        history_max_age: float | None = None,
        **kwargs: Any,
    ) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, not {max_queue}")
        if max_queue_bytes is not None and max_queue_bytes < 1:
            raise ValueError(f"max_queue_bytes must be positive or None, not {max_queue_bytes}")
        history_limit = self.default_history if history is None else history
        if history_limit < 0:
            raise ValueError(f"history must not be negative, not {history_limit}")
        if history_max_age is not None and history_max_age <= 0:
            raise ValueError(f"history_max_age must be positive, not {history_max_age}")
        self.schema = schema
        self._validator: pydantic.TypeAdapter[Any] | None = (
            None if schema is None else pydantic.TypeAdapter(schema)
        )
        self.max_queue = max_queue
        self.max_queue_bytes = max_queue_bytes
        #: Messages the backend keeps for resuming clients.
        self.history_limit = history_limit
        #: Seconds the backend keeps them at most (``None``: no limit).
        self.history_max_age = history_max_age
        self.overflow = OverflowPolicy(overflow) if overflow is not None else self.default_overflow
        self.stats = StoreStats()
        self._backend: Backend | None = None
        self._attached = False
        self._subscriptions: dict[object, Subscription] = {}
        #: One bound method for every subscription's close callback, not one each.
        self._on_subscription_close = self._forget
        self._resumes: set[asyncio.Future[Resume]] = set()
        self._closed = False
        #: The id of the newest message handed to the subscribers (see :attr:`position`).
        self._position: str | None = None
        self.initialize(*args, **kwargs)

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        """Hook for custom initialization. Subclasses override this, not ``__init__``.

        It receives every constructor argument except the store options above.
        """
        if args or kwargs:
            raise TypeError(f"{type(self).__name__}() got unexpected arguments {args!r} {kwargs!r}")

    # -- the backend ----------------------------------------------------------------

    def make_backend(self) -> Backend:
        """The store's backend (called once, on first use, after :meth:`initialize`
        unless that publishes): a :class:`MemoryBackend` fed from the start.
        Subclasses over another backend override this (``RedisStore`` does)."""
        return MemoryBackend(History(self.history_limit, self.history_max_age), self.publish)

    @property
    def backend(self) -> Backend:
        """Where the store's messages are ordered, numbered and kept (see
        :mod:`tornadose.core.backend`)."""
        backend = self._backend
        if backend is None:
            backend = self._backend = self.make_backend()
        return backend

    @property
    def epoch(self) -> str:
        """The random part of an in-memory store's ids.

        Only a store over a :class:`MemoryBackend` has one: over another backend this
        raises ``AttributeError`` saying so (its ids come from that backend; a
        ``RedisStore``'s are its stream's entry ids)."""
        backend = self.backend
        if not isinstance(backend, MemoryBackend):
            raise AttributeError(
                f"{type(self).__name__} has no epoch: its ids are given by its backend "
                f"{type(backend).__name__}, not by an in-memory epoch and offset"
            )
        return backend.epoch

    @property
    def history(self) -> History:
        """An in-memory store's history (the messages kept for resuming clients).

        Only a store over a :class:`MemoryBackend` has one in the process: over
        another backend this raises ``AttributeError`` saying so (that backend keeps
        the history, answers resumes with :meth:`Backend.resume
        <tornadose.core.backend.Backend.resume>`; :attr:`history_limit` and
        :attr:`history_max_age` are the settings)."""
        backend = self.backend
        if not isinstance(backend, MemoryBackend):
            raise AttributeError(
                f"{type(self).__name__} has no in-process history: its backend "
                f"{type(backend).__name__} keeps it and answers resumes (subscribe with "
                f"last_event_id= to be replayed from it); store.history_limit and "
                f"store.history_max_age are its settings"
            )
        return backend.history

    # -- subscribers ----------------------------------------------------------------

    @property
    def subscribers(self) -> KeysView[object]:
        """The registered subscribers (a live, read-only set view)."""
        return self._subscriptions.keys()

    def register(self, subscriber: object, last_event_id: str | None = None) -> Subscription:
        """Register ``subscriber`` and return its :class:`Subscription`.

        The subscriber (any hashable object, usually a request handler) reads its
        messages from the returned subscription. With ``last_event_id`` (the id of the
        last message it saw), the subscription starts with a ``tornadose.resumed``
        message and the missed messages, or with a ``tornadose.reset`` message if they
        cannot all be replayed (see :mod:`tornadose.core.history`); either way live messages
        follow with no gap and no duplicate. A backend that answers a resume
        asynchronously (Redis) fetches the replay in the background: the subscription
        yields nothing until then, and misses nothing meanwhile. Registering twice
        returns the same subscription. Raises :class:`~tornadose.core.errors.StoreClosed`
        after :meth:`close`.
        """
        existing = self._subscriptions.get(subscriber)
        if existing is not None:
            return existing
        if self._closed:
            raise StoreClosed(f"{self!r} is closed")
        backend = self.backend
        if not self._attached:
            backend.attach(self.publish, self._lost)
            self._attached = True
        answer: Resume | Awaitable[Resume] = (
            _LIVE if last_event_id is None else backend.resume(last_event_id)
        )
        if isinstance(answer, Resume):
            resume = self.adjust_resume(answer)
            subscription = self._open_subscription(subscriber, resume)
            subscription.replay(self.resume_messages(resume))
        else:
            subscription = self._open_subscription(subscriber, _LIVE)
            self._resume_later(subscription, answer)
        self.on_register(subscription)
        return subscription

    def _open_subscription(self, subscriber: object, resume: Resume) -> Subscription:
        subscription = Subscription(
            subscriber,
            max_messages=self.max_queue,
            max_bytes=self.max_queue_bytes,
            overflow=self.overflow,
            stats=self.stats,
            on_close=self._on_subscription_close,
            resume=resume,
        )
        self._subscriptions[subscriber] = subscription
        return subscription

    def _resume_later(self, subscription: Subscription, answer: Awaitable[Resume]) -> None:
        """Hold ``subscription`` until the backend's answer comes, then release it with
        the control message and the replay ahead of the live messages it kept."""
        subscription.hold()
        pending = asyncio.ensure_future(answer)
        self._resumes.add(pending)

        def answered(future: asyncio.Future[Resume]) -> None:
            self._resumes.discard(future)
            if future.cancelled():
                return
            error = future.exception()
            if error is not None:
                # Never leave it held for ever: closed, the client resumes again.
                logger.error("resuming a subscriber of %r failed", self, exc_info=error)
                subscription.close(CloseReason.DEREGISTERED)
                return
            resume = self.adjust_resume(future.result())
            subscription.resume = resume
            subscription.release(self.resume_messages(resume), skip=resume.skip)

        def abandon(_: Subscription) -> None:
            pending.cancel()

        pending.add_done_callback(answered)
        subscription.add_close_callback(abandon)

    def adjust_resume(self, resume: Resume) -> Resume:
        """Hook: how a subscription starts, given the backend's answer (as is here;
        ``DataStore`` changes the id its reset carries)."""
        return resume

    def resume_messages(self, resume: Resume) -> list[Message]:
        """What a subscription that starts with ``resume`` gets first (the control
        message, then the replay), counted in :attr:`stats`."""
        self.stats.replayed += len(resume.replay)
        self.stats.resets += resume.status is ResumeStatus.RESET
        control = control_message(resume)
        return [] if control is None else [control, *resume.replay]

    def subscribe(self, last_event_id: str | None = None) -> Subscription:
        """Open a subscription for Python code: ``async with store.subscribe() as s:``.

        Iterating it with ``async for`` yields :class:`~tornadose.core.message.Message`
        objects; leaving the ``async with`` block deregisters it. ``last_event_id``
        resumes, as for :meth:`register`.
        """
        return self.register(_PythonSubscriber(), last_event_id)

    def deregister(self, subscriber: object) -> None:
        """Stop publishing to ``subscriber``. Unknown subscribers are ignored."""
        subscription = self._subscriptions.get(subscriber)
        if subscription is not None:
            subscription.close(CloseReason.DEREGISTERED)

    def on_register(self, subscription: Subscription) -> None:
        """Hook called when a subscriber registers, before any message reaches it.

        Stores put what a newcomer should see first here (the current value, a backlog).
        """

    def _forget(self, subscription: Subscription) -> None:
        if self._subscriptions.get(subscription.subscriber) is subscription:
            del self._subscriptions[subscription.subscriber]
            if not self._subscriptions and self._attached:
                self._attached = False
                self.backend.detach()
                if not isinstance(self._backend, MemoryBackend):
                    self._position = None  # not fed while detached: no longer known

    # -- publishing -----------------------------------------------------------------

    def submit(self, message: Any, *, event: str | None = None) -> Published:
        """Validate ``message`` and publish it through the backend, which gives it its
        id and feeds it to every subscriber (:meth:`publish`).

        ``event`` names the SSE event type (``None``: the default ``message`` event).
        Raises :class:`~tornadose.core.errors.MessageValidationError` if the store has a
        schema that ``message`` does not match, :class:`~tornadose.core.errors.UnencodableMessage`
        if it cannot be encoded, :class:`~tornadose.wire.sse.InvalidField` for an ``event``
        with CR, LF or NUL, and :class:`~tornadose.core.errors.StoreClosed` after
        :meth:`close`; in every such case nothing is published and no id is used up.
        """
        published = self.backend.publish(self.prepare_message(message, event=event))
        if published.done():
            self._count(published)
        else:
            published.add_done_callback(self._count)
        return published

    def _count(self, published: Published) -> None:
        if published.succeeded():
            self.stats.published += 1

    def validate(self, message: Any) -> Any:
        """Return ``message`` validated against the store's schema (as is without one)."""
        if self._validator is None:
            return message
        try:
            return self._validator.validate_python(message)
        except pydantic.ValidationError as exc:
            raise MessageValidationError(
                f"message does not match the schema of {self!r}: {exc}",
                pydantic_core.from_json(exc.json(include_url=False)),
            ) from exc

    def prepare_message(self, message: Any, *, event: str | None = None) -> Message:
        """Validate and encode ``message`` into a :class:`Message` without an id (the
        backend gives it one, so an invalid message uses up none)."""
        if self._closed:
            raise StoreClosed(f"{self!r} is closed")
        return Message(self.validate(message), id=None, event=event)

    def publish(self, message: Message | None = None) -> None:
        """Push ``message`` (with its id) to every subscriber's queue, in registration order.

        The backend calls this with every message of the channel, in the channel's
        order: those :meth:`submit` published and, for a shared backend, those other
        processes did. Subclasses override it to keep state (``DataStore``'s current
        value). Delivery needs no background loop, so calling it with no argument (as
        0.x stores did from ``initialize``) does nothing.
        """
        if message is not None:
            self._fan_out(message)

    @property
    def position(self) -> str | None:
        """The id of the newest message handed to the subscribers, hence where a
        subscriber registering now (without ``last_event_id``) starts: every later
        message reaches it. ``None`` when unknown (nothing fed yet; a backend that
        feeds only while the store has subscribers, Redis, forgets it when the last
        one leaves). Multi-channel connections record it in their cursor."""
        return self._position

    @property
    def start_position(self) -> str | None:
        """Where a subscriber registering now without ``last_event_id`` starts, as a
        position to resume from and get the same messages: :attr:`position`, or, in
        memory, for a store that hands a newcomer messages first (a ``DataStore``'s
        current value, a ``QueueStore``'s backlog), the id just before the first of
        them (``"<epoch>-0"`` before a channel's first message, which a multi-channel
        cursor holds but a ``Last-Event-ID`` cannot). ``None`` when unknown (as
        :attr:`position`)."""
        first = self.handed_to_newcomers()
        if first is None or first.id is None or not isinstance(self._backend, MemoryBackend):
            return self.position
        parsed = MessageId.parse(first.id)
        if parsed is None or parsed.offset < 1:
            return self.position
        return str(MessageId(parsed.epoch, parsed.offset - 1))

    def handed_to_newcomers(self) -> Message | None:
        """The first message :meth:`on_register` would hand a subscriber registering
        now without ``last_event_id`` (``None``: none). Stores whose
        :meth:`on_register` hands one override both."""
        return None

    def announce(self, message: Message) -> None:
        """Queue ``message``, a control event without an id (such as a presence
        change), for the subscribers registered now: not a message of the channel (no
        id, no history, not the current value or backlog, not sent to other
        processes), so a resuming client is never replayed it."""
        if message.id is not None:
            raise ValueError("an announcement has no id (it is not in the channel's history)")
        for subscription in list(self._subscriptions.values()):
            subscription.put(message)

    def _fan_out(self, message: Message) -> None:
        if message.id is not None:
            self._position = message.id
        # Copy: an overflowing subscription removes itself from the dict.
        for subscription in list(self._subscriptions.values()):
            subscription.put(message)

    def _lost(self, last_id: str | None) -> None:
        """The backend lost messages after ``last_id`` before feeding them: every
        subscriber gets the reset signal (``data_lost``) ahead of what follows."""
        resume = Resume(ResumeStatus.RESET, last_id, reason=ResetReason.DATA_LOST)
        control = control_message(resume)
        assert control is not None
        self.stats.resets += len(self._subscriptions)
        self._fan_out(control)

    # -- observation ----------------------------------------------------------------

    def snapshot(self) -> dict[str, int]:
        """The store's numbers now: ``subscribers``, ``queued_messages`` (waiting in
        subscriber queues), ``history_messages``, the counters of :attr:`stats`
        (``published``, ``delivered``, ``dropped``, ``discarded``, ``replayed``,
        ``resets``), and the backend's own (:meth:`Backend.snapshot`).
        Disconnects by reason are in ``stats.disconnects``."""
        stats = self.stats
        numbers = {
            "subscribers": len(self._subscriptions),
            "queued_messages": sum(len(s) for s in self._subscriptions.values()),
            "history_messages": 0,
            "published": stats.published,
            "delivered": stats.delivered,
            "dropped": stats.dropped,
            "discarded": stats.discarded,
            "replayed": stats.replayed,
            "resets": stats.resets,
        }
        numbers.update(self.backend.snapshot())
        return numbers

    # -- lifetime -------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close the store: no more messages or subscribers.

        Every subscription is closed with ``CloseReason.STORE_CLOSED``; what is
        already queued is still delivered, then each stream ends. Pending resumes are
        abandoned (their subscriptions are closed too). Idempotent.
        """
        self._closed = True
        for pending in list(self._resumes):
            pending.cancel()
        for subscription in list(self._subscriptions.values()):
            subscription.close(CloseReason.STORE_CLOSED)
        if self._attached:
            self._attached = False
            self.backend.detach()

    async def aclose(self) -> None:
        """Close the store and release what its backend holds (nothing in memory; a
        :class:`~tornadose.backends.redis.store.RedisStore` also sends what is pending
        and closes its connections)."""
        self.close()
        if self._backend is not None:
            await self._backend.aclose()

    def __repr__(self) -> str:
        backend = self._backend
        where = f" epoch={backend.epoch}" if isinstance(backend, MemoryBackend) else ""
        return f"<{type(self).__name__}{where} subscribers={len(self._subscriptions)}>"


class _PythonSubscriber:
    """The subscriber key of a subscription opened with :meth:`BaseStore.subscribe`."""

    __slots__ = ("__weakref__",)


class DataStore(BaseStore):
    """A latest-value store: subscribers get the current value, then every update.

    Set the value with ``store.data = x``, ``store.set_data(x)`` or
    ``store.submit(x)``. A new subscriber receives the current value at once (if one
    was ever set; ``initial_data=None`` means none yet). Its default overflow policy
    is ``KEEP_LATEST``: a subscriber that falls behind skips to the newest value. It
    keeps a history of one message: a client that missed only the latest value
    resumes exactly; one that missed more gets a reset, then the current value.
    """

    default_overflow = OverflowPolicy.KEEP_LATEST
    default_history = 1

    def initialize(self, initial_data: Any = None) -> None:
        """Set the initial value, if ``initial_data`` is not ``None``."""
        self._current: Message | None = None
        if initial_data is not None:
            self.set_data(initial_data)

    @property
    def data(self) -> Any:
        """The current value (``None`` if none was set)."""
        return None if self._current is None else self._current.data

    @data.setter
    def data(self, new_data: Any) -> None:
        """Publish ``new_data`` as the new current value (same as :meth:`set_data`)."""
        self.set_data(new_data)

    def set_data(self, new_data: Any) -> Published:
        """Publish ``new_data`` as the new current value (same as :meth:`submit`)."""
        return self.submit(new_data)

    def publish(self, message: Message | None = None) -> None:
        """Make ``message`` the current value and push it to every subscriber."""
        if message is not None:
            self._current = message
        super().publish(message)

    def adjust_resume(self, resume: Resume) -> Resume:
        """As for every store, except that a reset is followed by the current value:
        the reset carries the id before it, so a client that drops between the two
        gets the value again when it reconnects."""
        current = MessageId.parse(self._current.id or "") if self._current else None
        if resume.status is ResumeStatus.RESET and current is not None:
            before = f"{current.epoch}-{current.offset - 1}" if current.offset > 1 else None
            resume = dataclasses.replace(resume, reset_id=before)
        return resume

    def handed_to_newcomers(self) -> Message | None:
        """The current value (what a new subscriber gets first)."""
        return self._current

    def on_register(self, subscription: Subscription) -> None:
        """Give a new subscriber the current value, unless it resumed exactly (then it
        has it, or is being replayed it)."""
        if self._current is not None and subscription.resume.status is not ResumeStatus.RESUMED:
            subscription.put(self._current)


class QueueStore(BaseStore):
    """Every message, in order, to every subscriber: for streams where nothing may be missed.

    Its default overflow policy is ``DISCONNECT``: a subscriber that falls
    ``max_queue`` messages behind is cut off rather than silently skipped.

    Messages submitted while nobody is subscribed are kept (the newest ``backlog``
    of them, default ``max_queue``; older ones are counted in ``stats.dropped``) and
    handed, in order, to the next subscriber that registers (over a backend that
    feeds while detached: in memory).
    """

    default_overflow = OverflowPolicy.DISCONNECT

    def initialize(self, backlog: int | None = None) -> None:
        """``backlog``: how many messages to keep while nobody is subscribed."""
        size = self.max_queue if backlog is None else backlog
        if not 0 <= size <= self.max_queue:
            raise ValueError(f"backlog must be in 0..max_queue ({self.max_queue}), not {size}")
        self._backlog: deque[Message] = deque()
        self.backlog = size

    def publish(self, message: Message | None = None) -> None:
        """Push ``message`` to every subscriber, or keep it for the next one."""
        if message is not None and not self._subscriptions:
            if message.id is not None:
                self._position = message.id
            if self.backlog == 0:
                self.stats.dropped += 1
                return
            if len(self._backlog) >= self.backlog:
                self._backlog.popleft()
                self.stats.dropped += 1
            self._backlog.append(message)
            return
        super().publish(message)

    def handed_to_newcomers(self) -> Message | None:
        """The oldest message of the backlog (what the next subscriber gets first)."""
        return self._backlog[0] if self._backlog else None

    def on_register(self, subscription: Subscription) -> None:
        """Hand the backlog to a new subscriber. A resuming one gets what it missed
        from the history instead (or a reset), so the backlog is not given twice."""
        if subscription.resume.status is ResumeStatus.LIVE:
            subscription.replay(self._backlog)  # outside the bound, like a replay
        self._backlog.clear()
