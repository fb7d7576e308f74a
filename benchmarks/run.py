"""The benchmark runner: ``python -m benchmarks`` (see ``benchmarks/README.md``).

For each contender it starts the server program pinned to core 0 and the load
client pinned to core 1 (``taskset``; the runner itself stays on core 1 and mostly
waits), then measures, on 127.0.0.1:

1. **idle memory**: server RSS with ``N`` idle subscribers minus RSS with none
   (after a warm-up connection), divided by ``N``;
2. **full speed, in each producer regime**: ``M`` messages of ``B`` bytes published
   as fast as the server takes them, **per-event** (one publish per event-loop turn)
   then **batch** (``k`` publishes per loop turn), paced by the server's backlog by
   one rule for every contender (see :mod:`benchmarks.servers.base`); the client
   reports delivered events/s from the first message's publish time to the last
   arrival, losses, and its own CPU share; the runner adds the server's;
3. **fixed rate**: ``R`` messages/s for ``D`` seconds, one publish per loop turn;
   p50/p99 publish-to-receive latency over every delivery;

then, for tornadose on both adapters, a **hold test**: 10,000 subscribers (the
open-file limit is raised in the benchmark processes) held for a few seconds, then
a few messages that every one of them must receive; every failure counts.

A contender may skip a phase that would only repeat another's (the coalescing raw
servers: per-event and fixed rate are raw-asyncio's); the reason is in the JSON and
under the table. The ``RedisStore`` rows use ``--redis-url`` and a channel of their
own for the run (deleted after), and are skipped, saying why, when Redis does not
answer.

Every wait has a timeout, every child process is killed when its contender is done
and again at exit (also on Ctrl-C and SIGTERM), so a run can never hang or leak.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.common import CONTROL_PREFIX, MIN_SIZE, raise_nofile
from benchmarks.servers.base import DEFAULT_BACKLOG

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"

#: The Redis of the RedisStore rows unless ``--redis-url`` says otherwise.
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: Seconds a child may take to start and say it is ready.
START_TIMEOUT = 30.0
#: Seconds of silence after which a measurement is over (messages lost or cut).
QUIET = 2.0


#: The producer regimes of the full-speed phase, in the order they run.
REGIMES = ("per-event", "batch")


def regime_label(regime: str, burst: int) -> str:
    """How tables name a regime: ``per-event``, ``batch k=10``."""
    return regime if regime == "per-event" else f"batch k={burst}"


#: Why the coalescing raw servers skip the per-event regime and the fixed rate.
_SAME_AS_RAW = "with one publish per loop turn it writes each event alone, as {raw} does"
_NO_RATE = "at a fixed rate nothing coalesces: {raw}'s latency is the baseline"


@dataclass(frozen=True)
class Spec:
    """One contender: a server program and the endpoint the client reads."""

    name: str
    module: str  # under benchmarks.servers
    transport: str  # "sse" or "ws"
    stack: str  # what serves it: "tornado", "uvicorn", "asyncio"
    label: str
    tornadose: bool = False
    args: tuple[str, ...] = ()
    requires: tuple[str, ...] = ()
    #: Where the store keeps the channel: "memory", or "redis" (a later "redis cluster").
    backend: str = "memory"
    #: The option (of ``python -m benchmarks``) holding the Redis URL the server uses.
    redis_url_option: str | None = None
    #: Phases ("per-event", "batch", "rate") this contender skips, with the reason.
    skips: tuple[tuple[str, str], ...] = ()
    #: Run without being named in ``--only``.
    default: bool = True

    @property
    def path(self) -> str:
        return "/ws" if self.transport == "ws" else "/events"

    def skip_reason(self, phase: str) -> str | None:
        return dict(self.skips).get(phase)


SPECS: list[Spec] = [
    Spec("tornadose-tornado", "tornadose_tornado", "sse", "tornado", "tornadose EventSource", True),
    Spec(
        "tornadose-uvicorn",
        "tornadose_uvicorn",
        "sse",
        "uvicorn",
        "tornadose EventSourceApp",
        True,
        requires=("uvicorn",),
    ),
    Spec(
        "tornadose-uvicorn-redis",
        "tornadose_uvicorn",
        "sse",
        "uvicorn",
        "tornadose EventSourceApp, RedisStore",
        True,
        requires=("uvicorn", "redis"),
        backend="redis",
        redis_url_option="redis_url",
    ),
    Spec(
        "tornadose-uvicorn-redis-cluster",
        "tornadose_uvicorn",
        "sse",
        "uvicorn",
        "tornadose EventSourceApp, RedisStore on a Redis Cluster",
        True,
        requires=("uvicorn", "redis"),
        backend="redis cluster",
        redis_url_option="redis_cluster_url",
    ),
    Spec("raw-asyncio", "raw_asyncio", "sse", "asyncio", "raw asyncio, a write per event"),
    Spec(
        "raw-asyncio-coalesced",
        "raw_asyncio",
        "sse",
        "asyncio",
        "raw asyncio, coalesced writes",
        args=("--coalesce",),
        skips=(
            ("per-event", _SAME_AS_RAW.format(raw="raw-asyncio")),
            ("rate", _NO_RATE.format(raw="raw-asyncio")),
        ),
    ),
    Spec("tornado-handler", "tornado_handler", "sse", "tornado", "Tornado handler + queue"),
    Spec(
        "starlette-handler",
        "starlette_handler",
        "sse",
        "uvicorn",
        "Starlette StreamingResponse + queue",
        requires=("uvicorn", "starlette"),
    ),
    Spec(
        "asgi-handler",
        "asgi_handler",
        "sse",
        "uvicorn",
        "pure ASGI handler + queue",
        requires=("uvicorn",),
        default=False,
    ),
    Spec(
        "sse-starlette",
        "sse_starlette_broadcaster",
        "sse",
        "uvicorn",
        "sse-starlette + broadcaster",
        requires=("uvicorn", "starlette", "sse_starlette", "broadcaster"),
    ),
    Spec(
        "tornadose-tornado-ws",
        "tornadose_tornado",
        "ws",
        "tornado",
        "tornadose WebSocketSubscriber",
        True,
    ),
    Spec(
        "tornadose-uvicorn-ws",
        "tornadose_uvicorn",
        "ws",
        "uvicorn",
        "tornadose WebSocketApp",
        True,
        requires=("uvicorn", "websockets"),
    ),
    Spec("raw-asyncio-ws", "raw_asyncio", "ws", "asyncio", "raw asyncio WS, a write per frame"),
    Spec(
        "raw-asyncio-ws-coalesced",
        "raw_asyncio",
        "ws",
        "asyncio",
        "raw asyncio WS, coalesced writes",
        args=("--coalesce",),
        skips=(
            ("per-event", _SAME_AS_RAW.format(raw="raw-asyncio-ws")),
            ("rate", _NO_RATE.format(raw="raw-asyncio-ws")),
        ),
    ),
    Spec("tornado-handler-ws", "tornado_handler", "ws", "tornado", "Tornado WS handler + queue"),
    Spec(
        "starlette-handler-ws",
        "starlette_handler",
        "ws",
        "uvicorn",
        "Starlette WebSocket endpoint + queue",
        requires=("uvicorn", "starlette", "websockets"),
    ),
]

#: The contenders of the hold test (tornadose on both adapters, over SSE).
HOLD_SPECS = ("tornadose-tornado", "tornadose-uvicorn")


# -- child processes ---------------------------------------------------------------------

#: Every child started and not yet reaped: killed at exit whatever happens.
_live: dict[int, asyncio.subprocess.Process] = {}


def _kill_all() -> None:
    for process in list(_live.values()):
        with contextlib.suppress(ProcessLookupError):
            process.kill()


atexit.register(_kill_all)


class ChildError(Exception):
    """A child process failed, said so, or did not answer in time."""


def pinned(cpu: int | None) -> list[str]:
    """The ``taskset`` prefix that pins a command to ``cpu`` (none if impossible)."""
    if cpu is None or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(cpu)]


@dataclass
class Child:
    """A child process spoken to with JSON lines (see :mod:`benchmarks.common`)."""

    name: str
    process: asyncio.subprocess.Process
    log_path: Path
    extra: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    async def start(cls, name: str, argv: list[str], cpu: int | None, log_path: Path) -> Child:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        with log_path.open("wb") as log:
            process = await asyncio.create_subprocess_exec(
                *pinned(cpu),
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                cwd=ROOT,
                env=env,
                start_new_session=True,  # Ctrl-C reaches the runner only; it kills us
                limit=1 << 22,
            )
        _live[process.pid] = process
        return cls(name, process, log_path)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def send(self, command: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write((json.dumps(command) + "\n").encode())
            await asyncio.wait_for(self.process.stdin.drain(), 10)
        except (BrokenPipeError, ConnectionResetError, TimeoutError) as exc:
            raise ChildError(f"{self.name}: cannot send {command}: {exc!r}") from exc

    async def expect(self, key: str, timeout: float) -> dict[str, Any]:
        """The next answer holding ``key`` (raises on an ``error`` answer, exit or timeout)."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChildError(f"{self.name}: no {key!r} within {timeout:.0f} s")
            try:
                line = await asyncio.wait_for(self.process.stdout.readline(), remaining)
            except TimeoutError:
                continue
            if not line:
                code = await self.wait(1.0)
                raise ChildError(f"{self.name} exited (code {code}): see {self.log_path}")
            text = line.decode(errors="replace")
            if not text.startswith(CONTROL_PREFIX):
                continue
            answer: dict[str, Any] = json.loads(text[len(CONTROL_PREFIX) :])
            if "error" in answer:
                raise ChildError(f"{self.name}: {answer['error']}")
            if key in answer:
                return answer
            self.extra.append(answer)

    async def ask(self, command: dict[str, Any], key: str, timeout: float) -> dict[str, Any]:
        await self.send(command)
        return await self.expect(key, timeout)

    async def wait(self, timeout: float) -> int | None:
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            return None

    async def stop(self) -> None:
        """Ask the child to quit; kill it if it has not within a second."""
        with contextlib.suppress(Exception):
            await self.send({"cmd": "quit"})
        if self.process.stdin is not None:
            self.process.stdin.close()
        if await self.wait(1.0) is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            await self.wait(5.0)
        _live.pop(self.process.pid, None)


# -- measuring ------------------------------------------------------------------------


class Counter:
    """Sequence numbers: each phase publishes the next ones, never reused in a run."""

    def __init__(self) -> None:
        self.next = 0

    def take(self, count: int) -> int:
        first, self.next = self.next, self.next + count
        return first


def server_cpu(pid: int) -> float:
    """CPU seconds used by process ``pid`` so far: from the scheduler's nanosecond
    count (Linux ``/proc/<pid>/schedstat``; the main thread is the one that serves),
    else psutil's tick-grained user+system time."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9
    import psutil

    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def server_rss(pid: int) -> int:
    import psutil

    return int(psutil.Process(pid).memory_info().rss)


async def wait_subscribers(server: Child, wanted: int, timeout: float) -> int:
    """Poll the server until it has ``wanted`` subscribers; returns the last count."""
    deadline = time.monotonic() + timeout
    count = -1
    while time.monotonic() < deadline:
        count = int((await server.ask({"cmd": "stats"}, "subscribers", 10))["subscribers"])
        if count == wanted:
            return count
        await asyncio.sleep(0.1)
    raise ChildError(f"{server.name}: {count} subscribers, not {wanted}, after {timeout:.0f} s")


async def start_pair(
    spec: Spec, options: argparse.Namespace, logs: Path, tag: str = ""
) -> tuple[Child, Child, str]:
    """Start ``spec``'s server (core 0) and a client for it (core 1)."""
    server_argv = [sys.executable, "-m", f"benchmarks.servers.{spec.module}", *spec.args]
    if spec.redis_url_option is not None:
        server_argv += ["--redis-url", getattr(options, spec.redis_url_option)]
        server_argv += ["--channel", options.channel]
    server = await Child.start(
        spec.name, server_argv, options.server_cpu, logs / f"{tag}server.log"
    )
    try:
        ready = await server.expect("ready", START_TIMEOUT)
        client_argv = [sys.executable, "-m", "benchmarks.client", "--port", str(ready["port"])]
        client_argv += ["--path", spec.path, "--transport", spec.transport]
        client = await Child.start(
            f"client of {spec.name}", client_argv, options.client_cpu, logs / f"{tag}client.log"
        )
    except BaseException:
        await server.stop()
        raise
    try:
        await client.expect("ready", START_TIMEOUT)
    except BaseException:
        await client.stop()
        await server.stop()
        raise
    return server, client, ready["impl"]


async def idle_baseline(server: Child, client: Child) -> int:
    """Warm the server up with a few connections, close them, and return its RSS.

    Whatever a server builds lazily on its first requests is then built before the
    "no connection" memory is taken, and not charged to the idle connections.
    """
    warm = await client.ask({"cmd": "connect", "n": 5, "timeout": 10}, "connected", 20)
    await wait_subscribers(server, warm["connected"], 10)
    await client.ask({"cmd": "close"}, "closed_all", 10)
    await wait_subscribers(server, 0, 10)
    await asyncio.sleep(0.3)
    return server_rss(server.pid)


async def measure_phase(
    server: Child,
    client: Child,
    *,
    first: int,
    count: int,
    options: argparse.Namespace,
    rate: float,
    connections: int,
    burst: int = 1,
    profile_path: Path | None = None,
) -> dict[str, Any]:
    """Publish ``count`` messages (at ``rate``/s, or at full speed for 0, ``burst`` per
    loop turn) and measure."""
    # Generous: a fixed-rate phase takes count/rate s; full speed ends even at 5k events/s.
    timeout = count / rate + 15 if rate else 20 + connections * count / 5000
    await client.send(
        {
            "cmd": "measure",
            "first": first,
            "count": count,
            "latency": "all" if rate else "last",
            "timeout": timeout,
            "quiet": QUIET,
        }
    )
    await client.expect("armed", 10)
    spy = await start_profiler(server.pid, profile_path, options) if profile_path else None
    try:
        cpu0 = server_cpu(server.pid)
        command = {"cmd": "publish", "first": first, "count": count, "size": options.size}
        command |= {"rate": rate, "burst": burst, "backlog": options.backlog}
        published = await server.ask(command, "published", timeout + 10)
        result: dict[str, Any] = (await client.expect("result", timeout + 10))["result"]
        cpu = server_cpu(server.pid) - cpu0
    finally:
        if spy is not None:
            await stop_profiler(spy)
    active = result["active_seconds"]
    result["server_cpu_seconds"] = round(cpu, 4)
    result["server_cpu_percent"] = round(100 * cpu / active, 1) if active else None
    result["events_per_server_cpu_s"] = round(result["delivered"] / cpu) if cpu else None
    result["publish_seconds"] = round(published["seconds"], 4)
    result["paced"] = published["paced"]
    result["burst"] = burst
    return result


def find_py_spy() -> str | None:
    """The py-spy executable: on PATH or beside this Python (a venv)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


async def start_profiler(
    pid: int, path: Path, options: argparse.Namespace
) -> asyncio.subprocess.Process | None:
    """py-spy sampling ``pid`` (raw collapsed stacks to ``path``), on the client's core."""
    spy = find_py_spy()
    if spy is None:
        print("  (py-spy not installed: no profile)", flush=True)
        return None
    process = await asyncio.create_subprocess_exec(
        *pinned(options.client_cpu),
        spy,
        "record",
        "--pid",
        str(pid),
        "--rate",
        "250",
        "--format",
        "raw",
        "--function",  # aggregate by function, not by line
        # Blocking mode (py-spy pauses the process for each sample, ~1% here): without
        # it, stacks read while the process runs come out torn.
        "--output",
        str(path),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )
    _live[process.pid] = process
    await asyncio.sleep(1.0)  # attaching takes a moment
    return process


async def stop_profiler(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
    try:
        await asyncio.wait_for(process.wait(), 15)
    except TimeoutError:
        process.kill()
        await process.wait()
    _live.pop(process.pid, None)


#: Whether Redis answered at each URL asked about in this run (``None``: it did).
_redis_checked: dict[str, str | None] = {}


async def redis_unreachable(url: str) -> str | None:
    """Why Redis at ``url`` cannot be used (``None``: it answered ``PING``); asked once
    per URL and run."""
    if url not in _redis_checked:
        try:
            import redis.asyncio
        except ImportError:
            _redis_checked[url] = "the redis package is not installed (pip install '.[redis]')"
            return _redis_checked[url]
        from tornadose.backends.redis.backend import split_cluster_flag

        node_url, _ = split_cluster_flag(url)  # a cluster node answers PING too
        client = redis.asyncio.Redis.from_url(
            node_url or url, socket_connect_timeout=2, socket_timeout=2
        )
        try:
            await asyncio.wait_for(client.ping(), 5)
        except Exception as exc:
            _redis_checked[url] = f"Redis is not reachable at {url}: {type(exc).__name__}: {exc}"
        else:
            _redis_checked[url] = None
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()
    return _redis_checked[url]


async def forget_channel(url: str, channel: str) -> None:
    """Delete the keys this run's ``channel`` left in Redis at ``url`` (best effort: a
    key Redis will not delete from this connection, on another cluster node say, stays)."""
    import redis.asyncio

    from tornadose.backends.redis.backend import split_cluster_flag

    node_url, _ = split_cluster_flag(url)
    client = redis.asyncio.Redis.from_url(
        node_url or url, socket_connect_timeout=2, socket_timeout=5
    )
    try:
        keys = [key async for key in client.scan_iter(match=f"*{channel}*", count=1000)]
        for key in keys:
            with contextlib.suppress(Exception):
                await client.delete(key)
    except Exception as exc:
        print(f"  (could not delete the keys of {channel} at {url}: {exc!r})", flush=True)
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


def phases(spec: Spec, options: argparse.Namespace) -> list[str]:
    """The full-speed regimes ``spec`` runs in this run."""
    return [r for r in options.regimes if spec.skip_reason(r) is None]


async def bench_contender(
    spec: Spec, options: argparse.Namespace, counter: Counter
) -> dict[str, Any]:
    """Every measurement of one contender; failures are recorded, never raised."""
    begun = time.monotonic()
    out: dict[str, Any] = {
        "name": spec.name,
        "label": spec.label,
        "transport": spec.transport,
        "stack": spec.stack,
        "backend": spec.backend,
        "tornadose": spec.tornadose,
        "throughput": {},
        "skipped_phases": {
            phase: reason
            for phase in (*options.regimes, "rate")
            if (reason := spec.skip_reason(phase)) is not None
        },
    }
    missing = [m for m in spec.requires if importlib.util.find_spec(m) is None]
    if missing:
        out["skipped"] = f"not installed: {', '.join(missing)}"
        return out
    redis_url = getattr(options, spec.redis_url_option) if spec.redis_url_option else None
    if redis_url is not None:
        reason = await redis_unreachable(redis_url)
        if reason is not None:
            out["skipped"] = reason
            return out
        out["redis"] = {"url": redis_url, "channel": options.channel}
    logs = options.results / "logs" / spec.name
    server = client = None
    try:
        server, client, out["impl"] = await start_pair(spec, options, logs)
        rss0 = await idle_baseline(server, client)
        n = options.subscribers
        connect = await client.ask(
            {"cmd": "connect", "n": n, "timeout": 20}, "connected", 60 + n / 100
        )
        out["connect"] = connect
        connected = connect["connected"]
        await wait_subscribers(server, connected, 30)
        await asyncio.sleep(0.5)
        rss1 = server_rss(server.pid)
        out["idle_bytes_per_connection"] = round((rss1 - rss0) / max(1, connected))
        out["rss_mb"] = {"empty": round(rss0 / 2**20, 1), "idle": round(rss1 / 2**20, 1)}
        m = options.messages
        for regime in phases(spec, options):
            profile = None
            if options.profile and spec.tornadose:
                profile = options.results / f"profile-{spec.name}-{regime}.txt"
            result = await measure_phase(
                server,
                client,
                first=counter.take(m),
                count=m,
                options=options,
                rate=0,
                connections=connected,
                burst=1 if regime == "per-event" else options.burst,
                profile_path=profile,
            )
            result["regime"] = regime_label(regime, options.burst)
            out["throughput"][regime] = result
            if profile is not None and profile.exists():
                out.setdefault("profile", {})[regime] = report.profile_summary(profile)
        if spec.skip_reason("rate") is None:
            count = max(1, round(options.rate * options.duration))
            out["rate"] = await measure_phase(
                server,
                client,
                first=counter.take(count),
                count=count,
                options=options,
                rate=options.rate,
                connections=connected,
            )
            out["rate"]["regime"] = f"per-event, {options.rate:g} msg/s"
        stats = await client.ask({"cmd": "stats"}, "open", 10)
        out["still_open"] = stats["open"]
    except ChildError as exc:
        out["error"] = str(exc)
    except Exception as exc:  # say what broke, and go on with the next contender
        out["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        for child in (client, server):
            if child is not None:
                await child.stop()
        if redis_url is not None:
            await forget_channel(redis_url, options.channel)
    out["seconds"] = round(time.monotonic() - begun, 1)
    return out


async def hold_test(spec: Spec, options: argparse.Namespace, counter: Counter) -> dict[str, Any]:
    """Hold ``--hold`` subscribers on one server, then check every one still receives."""
    n = options.hold
    out: dict[str, Any] = {"name": spec.name, "subscribers": n, "stack": spec.stack}
    logs = options.results / "logs" / spec.name
    server = client = None
    errors = 0
    try:
        server, client, out["impl"] = await start_pair(spec, options, logs, tag="hold-")
        rss0 = await idle_baseline(server, client)
        connect = await client.ask(
            {"cmd": "connect", "n": n, "concurrency": 256, "timeout": 30}, "connected", 120
        )
        out["connect"] = connect
        errors += connect["failed"]
        await wait_subscribers(server, connect["connected"], 60)
        await asyncio.sleep(options.hold_seconds)
        stats = await client.ask({"cmd": "stats"}, "open", 10)
        out["open_after_hold"] = stats["open"]
        errors += connect["connected"] - stats["open"]
        rss1 = server_rss(server.pid)
        out["rss_mb"] = round(rss1 / 2**20, 1)
        out["idle_bytes_per_connection"] = round((rss1 - rss0) / max(1, stats["open"]))
        count = 3  # a few messages that every subscriber must receive
        result = await measure_phase(
            server,
            client,
            first=counter.take(count),
            count=count,
            options=options,
            rate=2.0,
            connections=stats["open"],
        )
        out["delivery"] = result
        errors += result["lost"] + result["disordered"]
    except ChildError as exc:
        out["error"] = str(exc)
        errors += 1
    except Exception as exc:  # say what broke, and go on
        out["error"] = f"{type(exc).__name__}: {exc}"
        errors += 1
    finally:
        for child in (client, server):
            if child is not None:
                await child.stop()
    out["errors"] = errors
    return out


# -- the command line ---------------------------------------------------------------


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Fan-out benchmark: tornadose on Tornado and uvicorn against baselines.",
    )
    add = parser.add_argument
    add("--subscribers", type=int, help="subscribers per contender (default 1000; quick 200)")
    add("--messages", type=int, help="messages per full-speed regime (default 500; quick 300)")
    add("--size", type=int, default=100, help=f"payload bytes (default 100, at least {MIN_SIZE})")
    add("--rate", type=float, default=20.0, help="messages/s in the fixed-rate phase (default 20)")
    add("--duration", type=float, help="seconds of the fixed-rate phase (default 5; quick 2)")
    add(
        "--burst",
        type=int,
        default=10,
        help="messages per loop turn in the batch regime (default 10)",
    )
    add(
        "--regimes",
        default=",".join(REGIMES),
        help="full-speed producer regimes: per-event, batch or both (default both)",
    )
    add(
        "--backlog",
        type=int,
        default=DEFAULT_BACKLOG,
        help="messages per subscriber a server may hold before the publisher waits "
        f"(default {DEFAULT_BACKLOG}, the same for every contender and regime)",
    )
    add(
        "--redis-url",
        default=DEFAULT_REDIS_URL,
        help=f"Redis of the RedisStore rows (default {DEFAULT_REDIS_URL}; "
        "skipped, saying why, if it does not answer)",
    )
    add(
        "--redis-cluster-url",
        help="a Redis Cluster node's URL ending in ?cluster=true, for the cluster row (default: "
        "start a throwaway 3-master + 3-replica cluster on free loopback ports with redis-server)",
    )
    add("--hold", type=int, help="subscribers of the hold test (default 10000; quick 2000; 0: off)")
    add("--hold-seconds", type=float, help="seconds they are held (default 5; quick 2)")
    add(
        "--only",
        help="contender names, or prefixes (tornadose, raw), comma-separated; a contender "
        "that is not run by default (--list) runs only when named",
    )
    add("--transports", default="sse,ws", help="sse, ws or both (default sse,ws)")
    add("--quick", action="store_true", help="a smaller run, one to two minutes")
    add("--profile", action="store_true", help="py-spy the tornadose servers at full speed")
    add("--no-plot", action="store_true", help="do not draw the plot")
    add("--list", action="store_true", help="list the contenders and exit")
    add("--results", type=Path, default=RESULTS, help="where results go (default: ./results)")
    options = parser.parse_args(argv)
    quick = options.quick
    defaults = {
        "subscribers": 200 if quick else 1000,
        "messages": 300 if quick else 500,
        "duration": 2.0 if quick else 5.0,
        "hold": 2000 if quick else 10000,
        "hold_seconds": 2.0 if quick else 5.0,
    }
    for name, value in defaults.items():
        if getattr(options, name) is None:
            setattr(options, name, value)
    if options.size < MIN_SIZE:
        parser.error(f"--size must be at least {MIN_SIZE}")
    if options.burst < 2:
        parser.error("--burst must be at least 2 (a burst of 1 is the per-event regime)")
    if options.backlog < 1:
        parser.error("--backlog must be at least 1")
    regimes = [r.strip() for r in options.regimes.split(",") if r.strip()]
    unknown = [r for r in regimes if r not in REGIMES]
    if unknown or not regimes:
        parser.error(f"--regimes: {', '.join(unknown) or 'none'}; choose from {', '.join(REGIMES)}")
    options.regimes = [r for r in REGIMES if r in regimes]
    # A channel of its own for each run's RedisStore rows (its keys are deleted after).
    options.channel = f"tornadose-bench-{os.getpid()}-{time.strftime('%Y%m%d%H%M%S')}"
    # The server gets the first core this process may use, the client the second.
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    two_cores = len(cores) >= 2 and shutil.which("taskset") is not None
    options.server_cpu, options.client_cpu = (cores[0], cores[1]) if two_cores else (None, None)
    return options


def selected(options: argparse.Namespace) -> list[Spec]:
    transports = {t.strip() for t in options.transports.split(",")}
    tokens = [t.strip() for t in options.only.split(",")] if options.only else []

    names = {s.name for s in SPECS}

    def wanted(spec: Spec) -> bool:
        # A full name selects that contender; anything else is a prefix ("raw", "tornadose")
        # of the contenders run by default.
        if not tokens:
            return spec.default
        return any(
            spec.name == t or (spec.default and t not in names and spec.name.startswith(t + "-"))
            for t in tokens
        )

    return [s for s in SPECS if s.transport in transports and wanted(s)]


def busy_cores(seconds: float = 1.0) -> float | None:
    """How many cores something else keeps busy now (``/proc/stat``, over ``seconds``).

    Measured before the run starts, when nothing of the benchmark runs: other work on
    a 2-core machine skews every number, so the report says how busy it was.
    """

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields[:8]) - idle, sum(fields[:8])

    try:
        busy0, total0 = sample()
        time.sleep(seconds)
        busy1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    cores = os.cpu_count() or 1
    return round(cores * (busy1 - busy0) / max(1, total1 - total0), 2)


def environment(options: argparse.Namespace) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for package in (
        "tornadose",
        "tornado",
        "uvicorn",
        "starlette",
        "sse-starlette",
        "broadcaster",
        "websockets",
        "redis",
        "hiredis",
    ):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    for optional in ("uvloop", "httptools"):
        versions[optional] = (
            importlib.metadata.version(optional) if importlib.util.find_spec(optional) else None
        )
    cpu = platform.processor()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "pinned": options.server_cpu is not None,
        "server_cpu": options.server_cpu,
        "client_cpu": options.client_cpu,
        "busy_cores_before": busy_cores(),
        "commit": commit,
        "versions": versions,
    }


async def run(options: argparse.Namespace) -> dict[str, Any]:
    """Run every selected measurement; returns everything that goes to the report."""
    specs = selected(options)
    counter = Counter()
    config = {
        k: getattr(options, k)
        for k in (
            "subscribers",
            "messages",
            "size",
            "rate",
            "duration",
            "burst",
            "backlog",
            "regimes",
            "hold",
            "redis_url",
            "redis_cluster_url",
        )
    }
    config["regime_labels"] = {r: regime_label(r, options.burst) for r in options.regimes}
    config["hold_seconds"] = options.hold_seconds
    config["quick"] = options.quick
    results: dict[str, Any] = {
        "config": config,
        "environment": environment(options),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "contenders": [],
        "hold": [],
    }
    busy = results["environment"]["busy_cores_before"]
    if busy is not None and busy > 0.2:
        print(f"warning: other processes keep {busy} cores busy; numbers will suffer", flush=True)
    begun = time.monotonic()
    with throwaway_cluster(options, specs):
        for spec in specs:
            print(f"- {spec.name}: {spec.label} ...", flush=True)
            outcome = await bench_contender(spec, options, counter)
            results["contenders"].append(outcome)
            print("  " + report.one_line(outcome), flush=True)
    if options.hold:
        for spec in specs:
            if spec.name in HOLD_SPECS:
                print(f"- hold test: {options.hold} subscribers on {spec.name} ...", flush=True)
                outcome = await hold_test(spec, options, counter)
                results["hold"].append(outcome)
                print("  " + report.hold_line(outcome), flush=True)
    results["seconds"] = round(time.monotonic() - begun, 1)
    return results


@contextlib.contextmanager
def throwaway_cluster(options: argparse.Namespace, specs: list[Spec]) -> Iterator[None]:
    """Start a Redis Cluster for the cluster row when it runs and ``--redis-cluster-url``
    names none: 3 masters + 3 replicas on free loopback ports, the test suite's own
    (``tests/redis_cluster_support.py``), killed afterwards. If it cannot start (no
    ``redis-server``/``redis-cli``), the row is skipped with the reason."""
    wanted = any(spec.redis_url_option == "redis_cluster_url" for spec in specs)
    if not wanted or options.redis_cluster_url is not None:
        yield
        return
    from tests.redis_cluster_support import start_cluster

    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as directory:
        print("- starting a Redis Cluster (3 masters + 3 replicas) ...", flush=True)
        try:
            cluster = start_cluster(Path(directory))
        except BaseException as exc:  # pytest's skip/fail outcomes are BaseExceptions
            reason = f"could not start a Redis Cluster: {type(exc).__name__}: {exc}"
            print(f"  {reason}", flush=True)
            options.redis_cluster_url = "redis://127.0.0.1:1/0?cluster=true"
            _redis_checked[options.redis_cluster_url] = reason
            yield
            return
        options.redis_cluster_url = cluster.url
        try:
            yield
        finally:
            for node in cluster.nodes:
                node.kill()


def main(argv: list[str] | None = None) -> int:
    options = parse_arguments(argv)
    if options.list:
        for spec in SPECS:
            extra = "" if spec.default else "  (runs only when named in --only)"
            print(
                f"{spec.name:25} {spec.transport:4} {spec.stack:8} {spec.backend:7} "
                f"{spec.label}{extra}"
            )
        return 0
    if importlib.util.find_spec("psutil") is None:
        print("psutil is missing: pip install -r benchmarks/requirements.txt", file=sys.stderr)
        return 2
    raise_nofile()
    if options.client_cpu is not None:
        os.sched_setaffinity(0, {options.client_cpu})  # keep the server's core to it
    options.results.mkdir(parents=True, exist_ok=True)
    print(
        f"tornadose fan-out benchmark: {options.subscribers} subscribers, "
        f"{options.messages} messages of {options.size} B at full speed "
        f"({', '.join(regime_label(r, options.burst) for r in options.regimes)}), "
        f"{options.rate:g}/s for {options.duration:g} s; "
        + (
            f"server on core {options.server_cpu}, client on core {options.client_cpu}"
            if options.server_cpu is not None
            else "unpinned"
        ),
        flush=True,
    )

    async def guarded() -> dict[str, Any]:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await run(options)
        finally:
            _kill_all()

    try:
        results = asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError):
        _kill_all()
        print("interrupted: every child process was killed", file=sys.stderr)
        return 130
    # Every row with its regime and the baselines of its ratios, as the tables show them.
    results["throughput_rows"] = report.throughput_rows(results)
    results["latency_rows"] = report.latency_rows(results)
    results["targets"] = report.targets(results)
    print()
    print(report.render(results))
    chart = report.text_chart(results)
    print("\n" + chart)
    (options.results / "chart.txt").write_text(chart + "\n")
    json_path = options.results / "latest.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nnumbers: {json_path}")
    if not options.no_plot:
        try:
            png = report.plot(results, options.results / "fanout.png")
        except ImportError:
            print("matplotlib is missing: no plot (pip install -r benchmarks/requirements.txt)")
        else:
            print(f"plot: {png}")
    failed = [c["name"] for c in results["contenders"] if "error" in c]
    return 1 if failed else 0
