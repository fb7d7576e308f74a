"""What the Redis backend says about failures and settings, without a server.

* :func:`~tornadose.backends.redis.health.classify`: each error's kind and code, and
  what is said of it (a hint to set ``cluster=True`` for ``CROSSSLOT`` or ``MOVED``
  from a cluster node; never the command's arguments redis-py echoes);
* the backoffs wait what the documentation says (jitter: 50 to 100 % of 50 ms, 1 s...
  doubling);
* the ``history`` error says what ``history`` is (not "the stream's MAXLEN").
"""

from __future__ import annotations

import pytest
from redis.exceptions import (
    AskError,
    AuthenticationError,
    BusyLoadingError,
    ClusterCrossSlotError,
    MovedError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from tornadose.backends.redis.health import Backoff, ErrorKind, RefusalBackoff, classify
from tornadose.backends.redis.store import RedisStore


def test_crossslot_and_moved_from_a_cluster_node_say_to_set_cluster_true() -> None:
    for error in (
        ClusterCrossSlotError("Keys in request don't hash to the same slot"),
        MovedError("1234 127.0.0.1:7001"),
    ):
        failure = classify(error)
        assert failure.kind is ErrorKind.REFUSED
        assert "cluster=True" in failure.describe(), failure.describe()


def test_codes_and_kinds() -> None:
    cases: list[tuple[BaseException, bool, ErrorKind, str | None]] = [
        (ResponseError("WRONGTYPE Operation against a key"), False, ErrorKind.REFUSED, "WRONGTYPE"),
        (ResponseError("NOREPLICAS Not enough good replicas"), False, ErrorKind.BUSY, "NOREPLICAS"),
        (ResponseError("BUSY Redis is busy running a script"), False, ErrorKind.BUSY, "BUSY"),
        (BusyLoadingError("Redis is loading the dataset"), False, ErrorKind.BUSY, "LOADING"),
        (AskError("1234 127.0.0.1:7001"), True, ErrorKind.REDIRECTED, "ASK"),
        (MovedError("1234 127.0.0.1:7001"), False, ErrorKind.REFUSED, "MOVED"),
        (
            AuthenticationError("invalid username-password pair"),
            False,
            ErrorKind.REFUSED,
            "WRONGPASS",
        ),
        (AuthenticationError("Authentication required."), False, ErrorKind.REFUSED, "NOAUTH"),
        (RedisConnectionError("Connection refused"), False, ErrorKind.UNREACHABLE, None),
    ]
    for error, cluster, kind, code in cases:
        failure = classify(error, cluster=cluster)
        assert (failure.kind, failure.code) == (kind, code), (error, failure)


def test_the_echoed_command_is_left_out() -> None:
    error = ResponseError(
        'Command # 2 (XADD ch MAXLEN ~ 1000 * data {"card":"4111"}) of pipeline caused '
        "error: NOPERM this user has no permissions to run the 'xadd' command"
    )
    failure = classify(error)
    assert failure.code == "NOPERM"
    assert "4111" not in failure.detail
    assert "4111" not in failure.describe()


@pytest.mark.parametrize(("backoff", "first"), [(Backoff(), 0.05), (RefusalBackoff(), 1.0)])
def test_backoff_waits_half_to_all_of_the_nominal_wait(backoff: Backoff, first: float) -> None:
    nominal = first
    for _ in range(8):
        delay = backoff.delay()
        assert nominal * 0.5 <= delay <= nominal, (delay, nominal)
        nominal = min(nominal * 2, backoff.most)


def test_the_history_error_says_what_history_is() -> None:
    with pytest.raises(ValueError, match="most a resume replays") as error:
        RedisStore("ch", history=0)
    assert "MAXLEN" not in str(error.value)
    store = RedisStore("ch")
    with pytest.raises(AttributeError) as missing:
        _ = store.history
    assert "MAXLEN" not in str(missing.value)
    assert "most a resume replays" in str(missing.value)
