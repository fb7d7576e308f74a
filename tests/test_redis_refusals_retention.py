"""A Redis that refuses is reported as refusing, and a burst does not outrun a reader.

* A refused command (``WRONGTYPE``: the channel's key is another program's string;
  ``NOPERM``: an ACL user without ``XADD`` or ``XREAD``) is reported as refused: the
  publish answer is ``503 store_refused`` naming Redis's error, at once (not after
  ``publish_timeout``); the counters say ``refused``, not ``unreachable``; the log
  never says the connection was lost; a refused read is tried again with a growing
  wait, not in a hot loop.
* Retention by age: entries younger than ``stream_retention`` stay beyond
  ``history``, then are trimmed; with the defaults, a fire-and-forget burst of 20,000
  messages at the rate this process can publish reaches all 100 subscribers of
  another process, every one of them, without a reset.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from tests.programs import StartProgram
from tests.redis_support import RedisServer, logged
from tornadose.backends.redis.store import RedisStore
from tornadose.errors import StoreRefused, StoreUnavailable
from tornadose.http.publish import publish_json
from tornadose.schemas import ErrorBody

TIMEOUT = 10.0
REPO = Path(__file__).resolve().parent.parent

OwnRedis = Callable[..., RedisServer]


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_a_refused_publish_answers_503_store_refused_at_once(
    redis_url: str, admin: aioredis.Redis, channel: str, logs: pytest.LogCaptureFixture
) -> None:
    """The channel's key is a string (WRONGTYPE): the HTTP publish answer is 503
    ``store_refused`` whose detail names WRONGTYPE, well before ``publish_timeout``;
    counted as refused, never as unreachable."""
    await admin.set(channel, "another program's string")
    store = RedisStore(channel, url=redis_url, publish_timeout=5)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await asyncio.wait_for(publish_json(store, b'{"n": 1}'), TIMEOUT)
        assert loop.time() - started < 2.5  # far from publish_timeout (5 s)
        assert answer.status == 503
        body = ErrorBody.model_validate_json(answer.body)
        assert body.error == "store_refused"
        assert "WRONGTYPE" in body.detail
        assert channel in body.detail
        with pytest.raises(StoreRefused) as refused:
            await store.submit(2)
        assert (refused.value.code, refused.value.kind) == ("WRONGTYPE", "refused")
        assert refused.value.maybe_published is False
        numbers = store.snapshot()
        assert numbers["backend_errors_refused"] >= 2
        assert numbers["backend_errors_unreachable"] == 0
        assert numbers["backend_up"] == 1
        assert numbers["publish_failures"] == 2
    finally:
        await store.aclose()
    assert logged(logs, logging.ERROR, "lost its connection") == 0


async def acl_user(port: int, name: str, *rules: str) -> str:
    admin = aioredis.Redis(port=port)
    try:
        await admin.execute_command("ACL", "SETUSER", name, "on", ">secret", "~*", "+@all", *rules)
    finally:
        await admin.aclose()
    return f"redis://{name}:secret@127.0.0.1:{port}/0"


async def test_an_acl_user_without_xadd_gets_noperm_as_a_refusal(
    own_redis: OwnRedis, logs: pytest.LogCaptureFixture
) -> None:
    """NOPERM on XADD: submit() raises StoreRefused naming NOPERM at once; the store
    keeps reading (a subscriber still gets what another user publishes); refused,
    not unreachable, in the counters and the log."""
    server = own_redis()
    url = await acl_user(server.port, "noxadd", "-xadd")
    channel = f"test-{uuid.uuid4().hex[:8]}"
    store = RedisStore(channel, url=url, publish_timeout=5)
    other = RedisStore(channel, url=server.url)
    try:
        async with store.subscribe() as subscription:
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(StoreRefused, match="NOPERM") as refused:
                await asyncio.wait_for(store.submit("refused"), TIMEOUT)
            assert loop.time() - started < 2.5  # far from publish_timeout (5 s)
            assert refused.value.code == "NOPERM"
            sent = await other.submit("from a user allowed to")
            got = await asyncio.wait_for(subscription.get_batch(), TIMEOUT)
            assert [m.id for m in got] == [sent.id]
            numbers = store.snapshot()
            assert numbers["backend_errors_refused"] >= 1
            assert numbers["backend_errors_unreachable"] == 0
    finally:
        await store.aclose()
        await other.aclose()
    assert logged(logs, logging.ERROR, "lost its connection") == 0
    assert logged(logs, logging.ERROR, "Redis refused publishing") == 1


async def test_a_refused_read_is_tried_again_with_a_growing_wait_not_in_a_loop(
    own_redis: OwnRedis, logs: pytest.LogCaptureFixture
) -> None:
    """NOPERM on XREAD: the channel is set aside, logged once as refused (never as a
    lost connection), tried again after 1 s, then 2 s... (at most 3 tries in 3.5 s),
    and read from where it stood once the ACL allows it again."""
    server = own_redis()
    url = await acl_user(server.port, "noxread", "-xread")
    channel = f"test-{uuid.uuid4().hex[:8]}"
    store = RedisStore(channel, url=url)
    publisher = RedisStore(channel, url=server.url)
    try:
        async with store.subscribe() as subscription:
            await asyncio.sleep(3.5)
            numbers = store.snapshot()
            assert 1 <= numbers["backend_errors_refused"] <= 3, numbers
            assert numbers["backend_errors_unreachable"] == 0
            assert logged(logs, logging.ERROR, "Redis refuses the keys of channel") == 1
            assert not subscription.closed
            await acl_user(server.port, "noxread", "+xread")
            sent = await publisher.submit("after the ACL changed")
            got: list[str | None] = []
            while sent.id not in got:
                got += [m.id for m in await asyncio.wait_for(subscription.get_batch(), 8)]
            assert logged(logs, logging.INFO, "no longer refuses") == 1
    finally:
        await store.aclose()
        await publisher.aclose()
    assert logged(logs, logging.ERROR, "lost its connection") == 0


# -- retention -------------------------------------------------------------------------


async def test_entries_younger_than_stream_retention_stay_beyond_history(
    redis_url: str, admin: aioredis.Redis, channel: str
) -> None:
    """history=10, stream_retention=0.5 s: 300 entries published at once all stay
    (a reader 300 entries behind loses nothing); once older than 0.5 s, the next
    publish trims the stream back to about ``history``."""
    store = RedisStore(channel, url=redis_url, history=10, stream_retention=0.5)
    try:
        published = [store.submit(n) for n in range(300)]
        for each in published:
            await each
        assert await admin.xlen(channel) == 300
        await asyncio.sleep(0.8)
        await store.submit("later")
        assert 10 <= await admin.xlen(channel) < 150
    finally:
        await store.aclose()


BURST = 20_000
SUBSCRIBERS = 100

SUBSCRIBING_PROGRAM = """
import asyncio, json, sys
from tornadose.backends.redis.store import RedisStore

async def main(url, channel, count):
    store = RedisStore(channel, url=url)
    results = []

    def order(entry_id):
        ms, _, seq = entry_id.partition("-")
        return int(ms), int(seq)

    async def consume(subscription):
        # Messages are the numbers 0, 1, 2...: each must be the one after the last
        # received (a duplicate or a gap breaks it), its id above the last id.
        received, resets, expected, misplaced, last = 0, 0, 0, 0, (0, 0)
        while True:
            for message in await subscription.get_batch():
                if message.event == "tornadose.reset":
                    resets += 1
                elif message.data == "end":
                    results.append({"received": received, "resets": resets,
                                    "misplaced": misplaced})
                    return
                elif message.data != "ready":
                    received += 1
                    if message.data != expected or order(message.id) <= last:
                        misplaced += 1
                    expected = message.data + 1
                    last = order(message.id)

    async with contextlib.AsyncExitStack() as stack:
        subscriptions = [await stack.enter_async_context(store.subscribe()) for _ in range(count)]
        await store.submit("ready")
        print("ready", flush=True)
        await asyncio.wait_for(asyncio.gather(*(consume(s) for s in subscriptions)), 90)
        print(json.dumps({"results": results, "disconnects": dict(store.stats.disconnects)}),
              flush=True)
    await store.aclose()

import contextlib
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_a_burst_at_full_publish_rate_reaches_100_subscribers_of_another_process(
    redis_url: str, channel: str, start_program: StartProgram, tmp_path: Path
) -> None:
    """20,000 messages submitted fire-and-forget as fast as this process can, to a
    channel with the default options; another process has 100 subscribers: each gets
    all 20,000, in order, each once, no reset, nobody cut off (was: 4,859 of 20,000
    and 7 resets each)."""
    script = tmp_path / "subscribers.py"
    script.write_text(SUBSCRIBING_PROGRAM)
    program = start_program(
        [sys.executable, str(script), redis_url, channel, str(SUBSCRIBERS)],
        cwd=REPO,
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while "ready" not in program.stdout_text():
        assert program.proc.poll() is None, program.describe()
        assert loop.time() < deadline, program.describe()
        await asyncio.sleep(0.05)
    store = RedisStore(channel, url=redis_url)
    try:
        started = loop.time()
        sent = []
        for n in range(BURST):
            sent.append(store.submit(n))
            if n % 1000 == 999:
                await asyncio.sleep(0)  # let the writer send what is queued
        await store.submit("end")
        rate = BURST / (loop.time() - started)
        assert all(each.done() and each.succeeded() for each in sent)
    finally:
        await store.aclose()
    while program.proc.poll() is None:
        assert loop.time() - started < 120, program.describe()
        await asyncio.sleep(0.1)
    assert program.proc.returncode == 0, program.describe()
    report = json.loads(program.stdout_text().splitlines()[-1])
    results = report["results"]
    assert len(results) == SUBSCRIBERS, report
    assert {r["received"] for r in results} == {BURST}, (rate, report)
    assert {r["resets"] for r in results} == {0}, (rate, report)
    assert {r["misplaced"] for r in results} == {0}, (rate, report)  # in order, each once
    assert report["disconnects"] in ({}, {"store_closed": SUBSCRIBERS}), report
    print(f"burst of {BURST} at {rate:,.0f} msg/s delivered to {SUBSCRIBERS} subscribers")


async def test_a_wrong_password_is_a_refusal_not_an_unreachable_redis(
    redis_url: str, channel: str, logs: pytest.LogCaptureFixture
) -> None:
    """A user Redis does not know (WRONGPASS; redis-py raises it as a connection
    error): the publish answer is 503 store_refused naming it, at once; with a
    subscriber, the reader logs the refusal once, never "lost its connection", and
    tries again with a growing wait (not in a loop); counted as refused, and
    ``backend_up`` is 0 (nothing can be sent)."""
    assert redis_url.startswith("redis://")
    wrong = redis_url.replace("redis://", "redis://nobody-here:wrong-password@", 1)
    store = RedisStore(channel, url=wrong, publish_timeout=5)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await asyncio.wait_for(publish_json(store, b'{"n": 1}'), TIMEOUT)
        assert loop.time() - started < 2.5  # far from publish_timeout (5 s)
        assert answer.status == 503
        body = ErrorBody.model_validate_json(answer.body)
        assert body.error == "store_refused", body
        assert "WRONGPASS" in body.detail, body.detail
        assert "password" in body.detail, body.detail
        async with store.subscribe():
            await asyncio.sleep(2.5)
            started = loop.time()
            with pytest.raises(StoreRefused) as refused:
                await asyncio.wait_for(store.submit(2), TIMEOUT)
            assert loop.time() - started < 2.5  # far from publish_timeout (5 s)
            assert refused.value.code == "WRONGPASS"
            numbers = store.snapshot()
        assert numbers["backend_errors_unreachable"] == 0, numbers
        assert 2 <= numbers["backend_errors_refused"] <= 6, numbers
        assert numbers["backend_up"] == 0
    finally:
        await store.aclose()
    assert logged(logs, logging.ERROR, "lost its connection") == 0
    assert logged(logs, logging.ERROR, "refuses the reader's connection") == 1


@pytest.mark.parametrize("rule", ["-xadd", "-eval"])
async def test_a_refusal_never_echoes_the_message_or_the_script(
    own_redis: OwnRedis, logs: pytest.LogCaptureFixture, rule: str
) -> None:
    """NOPERM while queueing the transaction (XADD, or the floor's EVAL): redis-py puts
    the refused command's arguments in its error text (another client's message, the
    Lua source). The 503 detail and every log line say NOPERM and Redis's own words,
    never the payload nor the script."""
    server = own_redis()
    url = await acl_user(server.port, f"no{rule[1:]}", rule)
    store = RedisStore(f"test-{uuid.uuid4().hex[:8]}", url=url, publish_timeout=5)
    secret = "4111-1111-1111-1111"
    try:
        answer = await asyncio.wait_for(
            publish_json(store, json.dumps({"card": secret}).encode()), TIMEOUT
        )
        body = ErrorBody.model_validate_json(answer.body)
        assert (answer.status, body.error) == (503, "store_refused"), body
        assert "NOPERM" in body.detail, body.detail
        assert rule[1:] in body.detail.lower()  # Redis's words name the command
        for text in (body.detail, *(r.getMessage() for r in logs.records)):
            assert secret not in text, text
            assert "redis.call" not in text, text
            assert "pipeline caused error" not in text, text
    finally:
        await store.aclose()
    assert logged(logs, logging.ERROR, "NOPERM") >= 1


async def test_busy_and_noreplicas_are_waited_for_not_refused(
    own_redis: OwnRedis, logs: pytest.LogCaptureFixture
) -> None:
    """Redis answers that it cannot take a write now: NOREPLICAS (fewer replicas than
    ``min-replicas-to-write``) and BUSY (a script running past
    ``busy-reply-threshold``). A submission waits, within ``publish_timeout``, and is
    acknowledged once Redis takes writes again; counted as ``busy``, not refused;
    a subscriber gets it, its channel never set aside. Past the deadline it fails
    with StoreUnavailable (kind ``busy``, code named, not published), not StoreRefused."""
    server = own_redis()
    admin = aioredis.Redis(port=server.port)
    store = RedisStore(f"test-{uuid.uuid4().hex[:8]}", url=server.url, publish_timeout=5)
    loop = asyncio.get_running_loop()
    try:
        async with store.subscribe() as subscription:
            await store.submit("ready")
            await asyncio.wait_for(subscription.get_batch(), TIMEOUT)
            await admin.config_set("min-replicas-to-write", 1)
            pending = asyncio.ensure_future(store.submit("after NOREPLICAS"))
            await asyncio.sleep(0.5)
            assert not pending.done(), pending
            await admin.config_set("min-replicas-to-write", 0)
            published = await asyncio.wait_for(pending, TIMEOUT)
            got = await asyncio.wait_for(subscription.get_batch(), TIMEOUT)
            assert [m.id for m in got] == [published.id]

            await admin.config_set("busy-reply-threshold", 50)
            spin = "local s = redis.call('TIME')[1] while redis.call('TIME')[1] - s < 2 do end"
            script = asyncio.ensure_future(admin.eval(spin, 0))
            await asyncio.sleep(0.3)
            started = loop.time()
            published = await asyncio.wait_for(store.submit("after BUSY"), TIMEOUT)
            assert loop.time() - started > 0.5  # it waited for the script
            await script
            got = await asyncio.wait_for(subscription.get_batch(), TIMEOUT)
            assert [m.id for m in got] == [published.id]

            await admin.config_set("min-replicas-to-write", 1)
            short = RedisStore(store.channel, url=server.url, publish_timeout=1)
            try:
                started = loop.time()
                with pytest.raises(StoreUnavailable) as failed:
                    await asyncio.wait_for(short.submit("never"), TIMEOUT)
                assert loop.time() - started >= 0.9
            finally:
                await short.aclose()
            assert not isinstance(failed.value, StoreRefused)
            assert (failed.value.kind, failed.value.code) == ("busy", "NOREPLICAS")
            assert failed.value.maybe_published is False
            await admin.config_set("min-replicas-to-write", 0)
            numbers = store.snapshot()
        assert numbers["backend_errors_busy"] >= 2, numbers
        assert numbers["backend_errors_refused"] == 0, numbers
    finally:
        await store.aclose()
        await admin.aclose()
    assert logged(logs, logging.ERROR, "refuses the keys") == 0
