"""Real Redis for the tests: the shared server, and servers of their own.

* :func:`redis_url` (fixture): the shared server (``TORNADOSE_TEST_REDIS``, default
  ``redis://127.0.0.1:6379/0``, which CI's machine runs). Tests using it skip, with
  the reason, when it cannot be reached, except under ``CI=true``, where they fail.
* :func:`channel` (fixture): a channel name of the test's own; its keys are deleted
  afterwards.
* :func:`make_store` (fixture): ``RedisStore`` objects on the test's channel, closed
  (and their keys deleted) after the test.
* :func:`own_redis` (fixture): starts ``redis-server`` processes on free ports, for
  tests that must kill and restart Redis; every one is killed when the test ends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis

from tests.ports import free_port
from tornadose.backends.redis.store import RedisStore
from tornadose.core.message import Message
from tornadose.core.subscription import Subscription

#: ``make_store(name=None, **options)``: see the :func:`make_store` fixture.
MakeStore = Callable[..., RedisStore]

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}: Redis tests must run in CI")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The shared Redis server's URL (skips, or fails under CI, if unreachable)."""
    url = os.environ.get("TORNADOSE_TEST_REDIS", DEFAULT_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
        version = str(client.info("server")["redis_version"])
    except redis.RedisError as exc:
        _unavailable(f"no Redis at {url} ({exc})")
    finally:
        client.close()
    if int(version.split(".")[0]) < 7:
        _unavailable(f"Redis at {url} is {version}; RedisStore needs 7.0 or newer")
    return url


@pytest.fixture
def channel(redis_url: str) -> Iterator[str]:
    """A fresh channel name; its stream and floor keys are deleted after the test."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(name, name + ":floor")
    finally:
        client.close()


@pytest.fixture
async def make_store(redis_url: str, channel: str) -> AsyncIterator[MakeStore]:
    """``store = make_store(name=None, **options)``: a RedisStore on the test's channel
    (or ``name``, which should start with it) of the shared Redis, unless ``url=`` or
    ``host=`` says otherwise. Every store is closed with ``aclose()`` after the test,
    and every key starting with the channel's name is deleted."""
    stores: list[RedisStore] = []

    def make(name: str | None = None, **options: Any) -> RedisStore:
        if "url" not in options and "host" not in options:
            options["url"] = redis_url
        store = RedisStore(name or channel, **options)
        stores.append(store)
        return store

    yield make
    await close_and_clear(redis_url, channel, stores)


async def take(subscription: Subscription, count: int, timeout: float = 10.0) -> list[Message]:
    """The next ``count`` messages (control events included) of ``subscription``,
    failing after ``timeout`` seconds."""

    async def collect() -> list[Message]:
        got: list[Message] = []
        while len(got) < count:
            got += await subscription.get_batch(count - len(got))
        return got

    return await asyncio.wait_for(collect(), timeout)


async def drain(subscription: Subscription, last: str, timeout: float = 20.0) -> list[Message]:
    """Everything ``subscription`` receives until the message ``last`` (resets
    included), failing after ``timeout`` seconds."""
    got: list[Message] = []

    async def until_last() -> None:
        while last not in [m.id for m in got]:
            got.extend(await subscription.get_batch())

    await asyncio.wait_for(until_last(), timeout)
    return got


async def close_and_clear(url: str, prefix: str, made: Iterable[Any]) -> None:
    """After a test: close every store or backend in ``made`` (``aclose()``, within
    10 s each; all are closed even if one fails, and the first error is raised last),
    then delete every key of the Redis at ``url`` that starts with ``prefix``."""
    errors: list[BaseException] = []
    for each in made:
        try:
            await asyncio.wait_for(each.aclose(), 10)
        except Exception as exc:  # close the others anyway
            errors.append(exc)
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
    if errors:
        raise errors[0]


class RedisServer:
    """A ``redis-server`` process of the test's own, on a free loopback port.

    ``persistent=True`` makes it keep every acknowledged write across a kill
    (``appendonly yes``, ``appendfsync always``); otherwise it keeps nothing, so a
    restart loses all data, as a cache-only Redis does.
    """

    def __init__(self, directory: Path, *, persistent: bool) -> None:
        self.port = free_port()  # kept across restarts: out of the ephemeral range
        self.directory = directory
        self.persistent = persistent
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) the server and wait until it answers."""
        binary = shutil.which("redis-server")
        if binary is None:
            _unavailable("redis-server is not installed")
        assert binary is not None
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
            if self.persistent
            else ["--appendonly", "no", "--save", ""]
        )
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(self.directory), "--daemonize", "no", *persistence]
        log = (self.directory / "redis.log").open("ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 10
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=1)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(f"redis-server on port {self.port} did not start")
                    time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """Kill the server at once (``SIGKILL``: no save, no goodbye)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """``server = own_redis(persistent=False)``: a started ``redis-server`` of the
    test's own; ``server.kill()`` then ``server.start()`` restarts it on the same port."""
    servers: list[RedisServer] = []

    def start(*, persistent: bool = False) -> RedisServer:
        server = RedisServer(tmp_path / f"redis-{len(servers)}", persistent=persistent)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """``caplog`` recording the ``tornadose.redis`` logger from INFO up."""
    caplog.set_level(logging.INFO, logger="tornadose.redis")
    return caplog


def logged(logs: pytest.LogCaptureFixture, level: int, *texts: str) -> int:
    """How many ``tornadose.redis`` records of ``level`` contain every one of ``texts``."""
    return sum(
        1
        for record in logs.records
        if record.name == "tornadose.redis"
        and record.levelno == level
        and all(text in record.getMessage() for text in texts)
    )
