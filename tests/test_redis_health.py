"""What the Redis backend says about failures and settings, without a server.

* :func:`~tornadose.backends.redis.health.classify`: each error's kind and code, and
  what is said of it (a hint to set ``cluster=True`` for ``CROSSSLOT`` or ``MOVED``
  from a cluster node; never the command's arguments redis-py echoes);
* the backoffs wait what the documentation says (jitter: 50 to 100 % of 50 ms, 1 s...
  doubling);
* the ``history`` error says what ``history`` is (not "the stream's MAXLEN");
* hash tags and floor keys (a channel's floor in its stream's slot on a cluster);
  cluster URLs (``?cluster=true``), ``startup_nodes`` and ``cluster=True`` parsing;
  ``stream_maxlen``/``stream_retention`` validation.
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


def test_hash_tags_and_floor_keys() -> None:
    from redis.crc import key_slot

    from tornadose.backends.redis.layout import floor_key, hash_tag

    assert hash_tag("ticks") is None
    assert hash_tag("{app}:ticks") == "app"
    assert hash_tag("{}:ticks") is None  # an empty tag hashes the whole key
    assert hash_tag("a{b}c{d}") == "b"  # the first one
    assert floor_key("ticks") == "ticks:floor"  # one Redis: unchanged
    assert floor_key("ticks", cluster=True) == "{ticks}:floor"
    assert floor_key("{app}:ticks", cluster=True) == "{app}:ticks:floor"
    for channel in ("ticks", "{app}:ticks", "a:b{c"):
        floor = floor_key(channel, cluster=True)
        assert key_slot(floor.encode()) == key_slot(channel.encode()), channel
    with pytest.raises(ValueError, match="hash tag"):
        floor_key("odd}name", cluster=True)


def test_cluster_urls_and_startup_nodes() -> None:
    from tornadose.backends.redis.backend import split_cluster_flag

    assert split_cluster_flag("redis://h:7000/0?cluster=true") == ("redis://h:7000/0", True)
    assert split_cluster_flag("redis://h:7000/0?cluster=no&x=1") == ("redis://h:7000/0?x=1", False)
    assert split_cluster_flag("redis://h:7000/0") == ("redis://h:7000/0", False)
    store = RedisStore("ch", url="redis://10.0.0.1:7000/0?cluster=1")
    assert store.backend.startup_nodes == [("10.0.0.1", 7000)]
    assert store.backend.floor_key == "{ch}:floor"
    store = RedisStore("ch", startup_nodes=["10.0.0.1:7000", ("10.0.0.2", 7001), "[::1]:7002"])
    assert store.backend.startup_nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002)]
    store = RedisStore("ch", host="10.0.0.3", port=7003, cluster=True)
    assert store.backend.startup_nodes == [("10.0.0.3", 7003)]
    assert RedisStore("ch", url="redis://10.0.0.1:7000/0").backend.startup_nodes is None
    assert RedisStore("ch").backend.floor_key == "ch:floor"
    with pytest.raises(ValueError, match="host:port"):
        RedisStore("ch", startup_nodes=["10.0.0.1"])
    with pytest.raises(ValueError, match="at least one node"):
        RedisStore("ch", startup_nodes=[])


def test_stream_maxlen_is_checked() -> None:
    assert RedisStore("ch", history=10).backend.stream_maxlen == 1_000_000
    assert RedisStore("ch", history=2_000_000).backend.stream_maxlen == 2_000_000
    with pytest.raises(ValueError, match="stream_maxlen"):
        RedisStore("ch", history=100, stream_maxlen=99)
    with pytest.raises(ValueError, match="stream_retention"):
        RedisStore("ch", stream_retention=-1)


def test_the_test_clusters_ports_never_clash() -> None:
    from tests.redis_cluster_support import CLUSTER_PORTS, cluster_ports

    for _ in range(20):
        ports = cluster_ports(6)
        used = ports + [port + 10000 for port in ports]
        assert len(set(used)) == len(used), ports
        assert all(port in CLUSTER_PORTS and port + 10000 < 32768 for port in ports)
