"""Health of a Redis connection: what went wrong (by kind), and the backoffs its loops wait with.

Every failure of a round trip to Redis is one of five kinds (:func:`classify`),
counted apart in :class:`BackendHealth` and reported apart (log, ``backend_errors``
metrics, the error a submission fails with):

* ``unreachable``: no answer (connection refused or broken, a timeout). Retried
  with :class:`Backoff` (50 ms doubling to 2 s).
* ``refused``: Redis answered with an error that the same command will get again
  (``WRONGTYPE``, ``NOPERM``, ``OOM``, ``READONLY`` on a single node, ``CROSSSLOT``,
  ``MOVED`` from a cluster node to a client not in cluster mode, a wrong password:
  ``WRONGPASS``/``NOAUTH``, which redis-py raises as a connection error...).
  A refused submission fails at once (it is not retried); a channel whose reads are
  refused is tried again after :class:`RefusalBackoff` (about 1 s doubling to 30 s), never in
  a hot loop, and logged once per refusal, not once per attempt.
* ``busy``: Redis answered that it cannot take the command now, and will later
  (``BUSY``: a script or function runs too long; ``NOREPLICAS``: fewer replicas than
  ``min-replicas-to-write``; ``LOADING``: loading its data; ``MASTERDOWN``: a replica
  cut off from its master; ``TRYAGAIN`` outside cluster mode). Retried like an
  unreachable Redis, within the submission's ``publish_timeout``; a read is retried
  with :class:`Backoff`, its channel never set aside.
* ``redirected``: a Redis Cluster moved the channel's slot (``MOVED``, ``ASK``,
  ``TRYAGAIN`` during a resharding; ``CLUSTERDOWN``/``MASTERDOWN`` or ``READONLY``
  during a failover). The cluster's map is refreshed and the command sent again,
  with :class:`Backoff`, within the submission's ``publish_timeout``.
* ``other``: anything else (a bug): logged with its traceback.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

from redis.exceptions import (
    AskError,
    AuthenticationError,
    BusyLoadingError,
    ClusterCrossSlotError,
    ClusterDownError,
    ExecAbortError,
    MovedError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = [
    "BUSY_CODES",
    "LOGIN_REFUSED",
    "NETWORK_ERRORS",
    "REDIS_ERRORS",
    "BackendHealth",
    "Backoff",
    "ErrorKind",
    "Failure",
    "RefusalBackoff",
    "classify",
    "redis_said",
]

#: What an unreachable Redis raises (a refusal is a ``ResponseError``, not one of these).
NETWORK_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    TimeoutError,
)
#: Everything a round trip to Redis may raise.
REDIS_ERRORS: tuple[type[Exception], ...] = (RedisError, OSError, TimeoutError)
_BACKOFF_FIRST, _BACKOFF_MAX = 0.05, 2.0
_REFUSAL_FIRST, _REFUSAL_MAX = 1.0, 30.0


class ErrorKind(enum.Enum):
    """What a failed round trip to Redis was (see the module docstring)."""

    UNREACHABLE = "unreachable"
    BUSY = "busy"
    REFUSED = "refused"
    REDIRECTED = "redirected"
    OTHER = "other"


# Older redis-py versions strip the code from the message of the errors they know.
_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (MovedError, "MOVED"),
    (AskError, "ASK"),
    (TryAgainError, "TRYAGAIN"),
    (ClusterCrossSlotError, "CROSSSLOT"),
    (ClusterDownError, "CLUSTERDOWN"),
    (ReadOnlyError, "READONLY"),
    (NoPermissionError, "NOPERM"),
    (OutOfMemoryError, "OOM"),
    (NoScriptError, "NOSCRIPT"),
    (ExecAbortError, "EXECABORT"),
    (BusyLoadingError, "LOADING"),
    (AuthenticationError, "WRONGPASS"),
)
#: Codes that say Redis cannot take the command now, and will later.
BUSY_CODES = frozenset({"BUSY", "NOREPLICAS", "LOADING", "MASTERDOWN", "TRYAGAIN"})
#: Codes that say Redis refuses this process's login: nothing can be done on it.
LOGIN_REFUSED = frozenset({"WRONGPASS", "NOAUTH"})
#: Codes that say a cluster's slot is moving or its master changing (in cluster mode).
_REDIRECTS = frozenset({"MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY"})


#: What redis-py puts between a pipeline command's arguments and Redis's answer.
_ANNOTATION = " of pipeline caused error: "


def redis_said(error: BaseException) -> str:
    """What Redis (or the network) said in ``error``, without the command redis-py
    echoes in front of a pipeline's error (``Command # 2 (XADD ch ... data {...}) of
    pipeline caused error: ...``): its arguments are messages (another client's
    payload) and script sources, which no log line or error answer may carry."""
    text = str(error) or type(error).__name__
    if text.startswith("Command # ") and _ANNOTATION in text:
        return text.rpartition(_ANNOTATION)[2]
    return text


def _code(error: BaseException) -> str | None:
    status = getattr(error, "status_code", None)
    if isinstance(status, str) and status:
        return status
    first = redis_said(error).split(" ", 1)[0]
    if first.isupper() and first.isalpha():
        return first
    for kind, code in _CODES:
        if isinstance(error, kind):
            return code
    return None


@dataclass(frozen=True)
class Failure:
    """A failed round trip: its :class:`ErrorKind`, Redis's error code (``WRONGTYPE``,
    ``NOPERM``...; ``None`` when Redis did not answer) and what Redis or the network said."""

    kind: ErrorKind
    code: str | None
    detail: str

    @property
    def login_refused(self) -> bool:
        """Whether Redis refused the connection itself (a wrong password, a user that
        does not exist or is disabled): no command can be sent on it."""
        return self.kind is ErrorKind.REFUSED and self.code in LOGIN_REFUSED

    def describe(self) -> str:
        """One phrase saying what happened, for logs and errors."""
        if self.kind is ErrorKind.UNREACHABLE:
            return f"Redis was unreachable ({self.detail})"
        if self.kind is ErrorKind.BUSY:
            return f"Redis could not take the command now ({self.detail})"
        if self.kind is ErrorKind.REDIRECTED:
            return f"the Redis Cluster moved the channel's slot or master ({self.detail})"
        if self.kind is ErrorKind.REFUSED:
            hint = ""
            if self.code == "MOVED":
                hint = (
                    "; this Redis is a cluster node: create the store with cluster=True "
                    "or startup_nodes=[...]"
                )
            elif self.login_refused:
                hint = "; check the password and user name the store connects with"
            elif self.code == "CROSSSLOT":
                hint = (
                    "; the channel's keys are in different hash slots: this Redis is a "
                    "cluster node, create the store with cluster=True or "
                    "startup_nodes=[...] (its keys then share one slot)"
                )
            return f"Redis refused the command ({self.detail}){hint}"
        return f"talking to Redis failed ({self.detail})"


def classify(error: BaseException, *, cluster: bool = False) -> Failure:
    """What ``error`` (raised by, or answered in place of, a Redis command) was; its
    detail is what Redis said, never the command's arguments (:func:`redis_said`).

    ``cluster``: the client follows a Redis Cluster, so slot moves and failovers are
    ``redirected`` (retried after the map is refreshed); for a single-node client
    ``MOVED`` or ``READONLY`` are refusals (it talks to a cluster node, or a replica).
    """
    text = redis_said(error)
    if isinstance(error, AuthenticationError):
        # A ConnectionError for redis-py, but Redis answered: it refuses the login.
        login = "NOAUTH" if "required" in text.lower() else "WRONGPASS"
        detail = text if text.startswith(login) else f"{login} {text}"
        return Failure(ErrorKind.REFUSED, login, detail)
    if isinstance(error, ResponseError):
        code = _code(error)
        detail = text if code is None or text.startswith(code) else f"{code} {text}"
        if cluster and code in _REDIRECTS:
            return Failure(ErrorKind.REDIRECTED, code, detail)
        if code in BUSY_CODES:
            return Failure(ErrorKind.BUSY, code, detail)
        return Failure(ErrorKind.REFUSED, code, detail)
    if isinstance(error, BusyLoadingError):  # a ConnectionError for redis-py
        detail = text if text.startswith("LOADING") else f"LOADING {text}"
        return Failure(ErrorKind.BUSY, "LOADING", detail)
    if isinstance(error, NETWORK_ERRORS):
        return Failure(ErrorKind.UNREACHABLE, None, text)
    return Failure(ErrorKind.OTHER, None, f"{type(error).__name__}: {text}")


class Backoff:
    """Exponential backoff with jitter, from ``first`` (50 ms) up to ``most`` (2 s):
    each wait is a random 50 to 100 % of the nominal one (``first``, then doubling),
    so that processes do not retry in step."""

    def __init__(self, first: float = _BACKOFF_FIRST, most: float = _BACKOFF_MAX) -> None:
        self.first, self.most = first, most
        self._next = first

    def reset(self) -> None:
        """Start again from the shortest delay (after a success)."""
        self._next = self.first

    def delay(self) -> float:
        """The next delay to wait, in seconds (doubling up to ``most``, with jitter)."""
        delay = self._next * random.uniform(0.5, 1.0)
        self._next = min(self._next * 2, self.most)
        return delay


class RefusalBackoff(Backoff):
    """How long a refused read waits before it is tried again: 1 s doubling to 30 s,
    nominally (each wait a random 50 to 100 % of that: 0.5 to 1 s, then 1 to 2 s...)."""

    def __init__(self) -> None:
        super().__init__(_REFUSAL_FIRST, _REFUSAL_MAX)


@dataclass
class BackendHealth:
    """The state of one Redis connection, shared by the stores that use it."""

    #: Whether the last round trip to Redis (a read or a publish) succeeded.
    up: bool = True
    #: Failed round trips to Redis since the start, by kind.
    by_kind: dict[ErrorKind, int] = field(default_factory=lambda: dict.fromkeys(ErrorKind, 0))
    #: The last failure (``None`` before the first).
    last_failure: Failure | None = None

    @property
    def errors(self) -> int:
        """Failed round trips to Redis (reads and writes, every kind), since the start."""
        return sum(self.by_kind.values())

    def mark_up(self) -> None:
        """A round trip succeeded."""
        self.up = True

    def mark_down(self, failure: Failure | None = None) -> None:
        """A round trip failed: counted by kind (``unreachable`` if not said). A refused
        command was answered and leaves the connection up, except a refused login (a
        wrong password): then nothing can be sent."""
        failure = failure or Failure(ErrorKind.UNREACHABLE, None, "no answer")
        self.by_kind[failure.kind] += 1
        self.last_failure = failure
        if failure.kind is not ErrorKind.REFUSED or failure.login_refused:
            self.up = False
