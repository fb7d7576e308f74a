"""Smoke test of the fan-out benchmark (``python -m benchmarks``) at a tiny size.

Runs the real thing, as a user would: the runner, one server process per contender
and the load client process, on 127.0.0.1, for tornadose on both adapters (and over
Redis when it answers), the raw asyncio baselines of both transports and both ways
(a write per event, coalesced), and the Starlette handlers, 20 subscribers and 200
messages per producer regime. It checks that the run completes, that both regimes
ran for every contender that runs them (and the skip is explained where one does
not), that every contender delivers every message, that each ratio is taken against
the baseline of the same regime and transport, and that the targets are judged; not
how fast anything is. The raw WebSocket server's handshake and frames are checked
with a real WebSocket client (the load client does not parse frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUBSCRIBERS, MESSAGES, RATE, DURATION = 20, 200, 20, 1
REDIS_URL = "redis://127.0.0.1:6379/0"
#: Every contender of the tiny run, in the runner's order.
CONTENDERS = (
    "tornadose-tornado",
    "tornadose-uvicorn",
    "tornadose-uvicorn-redis",
    "raw-asyncio",
    "raw-asyncio-coalesced",
    "starlette-handler",
    "tornadose-uvicorn-ws",
    "raw-asyncio-ws",
    "raw-asyncio-ws-coalesced",
    "starlette-handler-ws",
)
#: Contenders that skip the per-event regime and the fixed rate (they would repeat
#: the raw server that writes each event).
COALESCED = ("raw-asyncio-coalesced", "raw-asyncio-ws-coalesced")
REGIMES = ("per-event", "batch")
#: What the fixture gives: the finished command and its latest.json.
Run = tuple[subprocess.CompletedProcess[str], dict[str, Any]]

# The benchmark's own dependencies (benchmarks/requirements.txt) are optional: without
# them it cannot measure memory and CPU, and this test says so instead of failing.
if importlib.util.find_spec("psutil") is None:
    pytest.skip(
        "psutil is not installed (pip install -r benchmarks/requirements.txt)",
        allow_module_level=True,
    )
for _module in ("uvicorn", "starlette", "websockets"):  # dev dependencies
    if importlib.util.find_spec(_module) is None:  # pragma: no cover
        pytest.skip(
            f"{_module} is not installed (pip install -e '.[dev]')", allow_module_level=True
        )


def redis_answers() -> bool:
    """Whether something accepts connections at the Redis of :data:`REDIS_URL`."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", 6379), 1):
        return True
    return False


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One tiny benchmark run, shared by the tests below."""
    results = tmp_path_factory.mktemp("bench")
    command = [
        sys.executable,
        "-m",
        "benchmarks",
        f"--subscribers={SUBSCRIBERS}",
        f"--messages={MESSAGES}",
        "--size=100",
        f"--rate={RATE}",
        f"--duration={DURATION}",
        "--hold=0",
        f"--only={','.join(CONTENDERS)}",
        f"--redis-url={REDIS_URL}",
        "--no-plot",
        f"--results={results}",
    ]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=55)
    numbers = results / "latest.json"
    data = json.loads(numbers.read_text()) if numbers.exists() else {}
    return completed, data


def contender(data: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in data["contenders"] if c["name"] == name)
    return found


def measured(name: str) -> bool:
    """Whether ``name`` must have been measured (the Redis row needs Redis)."""
    return name != "tornadose-uvicorn-redis" or redis_answers()


@pytest.mark.timeout(60)
def test_the_run_completes_and_prints_a_table_per_regime(run: Run) -> None:
    completed, data = run
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    assert "full speed, per-event: one publish per event-loop turn" in out
    assert "full speed, batch k=10: 10 publishes per event-loop turn" in out
    assert "x raw (per-event)" in out
    assert "x raw (batch k=10)" in out
    assert "targets (issue 14):" in out
    assert [c["name"] for c in data["contenders"]] == list(CONTENDERS)
    for c in data["contenders"]:
        assert "error" not in c, c
    assert data["config"]["regimes"] == list(REGIMES)
    assert data["seconds"] < 45
    # The text chart (what the README shows): a bar per contender in each regime.
    chart = out[out.index("events/s at full speed (one scale") :]
    for label in ("per-event", "batch k=10"):
        block = chart[chart.index(label + ":") :].split("\n\n")[0]
        measured = [
            row["name"]
            for row in data["throughput_rows"]
            if row["regime"] == label and "events_per_s" in row
        ]
        assert measured
        assert [line.split()[0] for line in block.splitlines()[1:]] == measured, block


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", CONTENDERS)
def test_both_regimes_run_or_the_skip_says_why(run: Run, name: str) -> None:
    _, data = run
    c = contender(data, name)
    if not measured(name):
        assert c["skipped"].startswith("Redis is not reachable at " + REDIS_URL), c
        return
    assert "skipped" not in c, c
    if name in COALESCED:
        assert set(c["throughput"]) == {"batch"}
        assert set(c["skipped_phases"]) == {"per-event", "rate"}
        assert "writes each event alone" in c["skipped_phases"]["per-event"]
    else:
        assert set(c["throughput"]) == set(REGIMES)
        assert c["skipped_phases"] == {}
    for regime, phase in c["throughput"].items():
        assert phase["burst"] == (1 if regime == "per-event" else 10)
        assert phase["regime"] == ("per-event" if regime == "per-event" else "batch k=10")
    rows = [r for r in data["throughput_rows"] if r["name"] == name]
    assert sorted(r["regime_key"] for r in rows) == sorted(REGIMES)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", CONTENDERS)
def test_every_message_reaches_every_subscriber(run: Run, name: str) -> None:
    _, data = run
    if not measured(name):
        pytest.skip("Redis does not answer at " + REDIS_URL)
    c = contender(data, name)
    assert c["connect"]["connected"] == SUBSCRIBERS
    phases = list(c["throughput"].values())
    for phase in phases:
        assert phase["delivered"] == phase["expected"] == SUBSCRIBERS * MESSAGES
    if name not in COALESCED:
        rate = c["rate"]
        assert rate["delivered"] == rate["expected"] == SUBSCRIBERS * RATE * DURATION
        phases.append(rate)
    for phase in phases:
        assert phase["lost"] == phase["disordered"] == phase["stale"] == phase["closed"] == 0
        assert phase["complete"]
    assert c["still_open"] == SUBSCRIBERS


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", CONTENDERS)
def test_the_numbers_are_sane(run: Run, name: str) -> None:
    _, data = run
    if not measured(name):
        pytest.skip("Redis does not answer at " + REDIS_URL)
    c = contender(data, name)
    for phase in c["throughput"].values():
        assert phase["events_per_s"] > 1000  # even a loaded CI machine does this
        assert 0 < phase["active_seconds"] < 20
        assert phase["server_cpu_seconds"] > 0
        assert phase["cpu_seconds"] > 0
    if "rate" in c:
        latency = c["rate"]["latency_ms"]
        assert latency["samples"] == SUBSCRIBERS * RATE * DURATION
        assert 0 < latency["p50"] <= latency["p99"] <= latency["max"] < 1000  # milliseconds
    assert isinstance(c["idle_bytes_per_connection"], int)
    assert c["rss_mb"]["idle"] > 0
    assert c["backend"] == ("redis" if name.endswith("-redis") else "memory")


@pytest.mark.timeout(60)
def test_each_ratio_compares_like_with_like(run: Run) -> None:
    """Per-event rows against the raw server writing each event, batch rows against the
    coalescing one, of the same transport; the handler of the same framework and regime."""
    _, data = run
    rates = {
        (c["name"], regime): phase["events_per_s"]
        for c in data["contenders"]
        for regime, phase in c.get("throughput", {}).items()
    }
    expected_raw = {
        ("sse", "per-event"): "raw-asyncio",
        ("sse", "batch"): "raw-asyncio-coalesced",
        ("ws", "per-event"): "raw-asyncio-ws",
        ("ws", "batch"): "raw-asyncio-ws-coalesced",
    }
    handlers = {("sse", "uvicorn"): "starlette-handler", ("ws", "uvicorn"): "starlette-handler-ws"}
    checked = 0
    for row in data["throughput_rows"]:
        if "missing" in row:
            continue
        regime, transport = row["regime_key"], row["transport"]
        assert row["raw"] == expected_raw[transport, regime]
        mine = rates[row["name"], regime]
        # Ratios are reported rounded to 3 decimals: a small one is off by up to 0.0005.
        assert row["x_raw"] == pytest.approx(mine / rates[row["raw"], regime], rel=1e-2, abs=5e-4)
        if row["stack"] == "uvicorn":
            assert row["handler"] == handlers[transport, "uvicorn"]
            assert row["x_handler"] == pytest.approx(
                mine / rates[row["handler"], regime], rel=1e-2, abs=5e-4
            )
        checked += 1
    assert checked >= 2 * len(CONTENDERS) - len(COALESCED) - (0 if redis_answers() else 2)
    for row in data["latency_rows"]:
        assert row["regime"] == f"per-event, {RATE} msg/s"


@pytest.mark.timeout(60)
def test_targets_are_judged(run: Run) -> None:
    _, data = run
    judged = {t["target"].split(":")[0]: t for t in data["targets"] if t["met"] is not None}
    assert "tornadose-uvicorn [per-event]" in judged
    assert "tornadose-uvicorn [batch k=10]" in judged
    assert "tornadose-uvicorn-ws [per-event]" in judged
    for t in data["targets"]:
        assert t["met"] in (True, False, None)
        if t["met"] is False:
            assert t["distance"]
    # tornado-handler did not run: the target needing it says so instead of a verdict.
    unjudged = [t for t in data["targets"] if "3x tornado-handler [" in t["target"]]
    assert unjudged
    assert unjudged[0]["met"] is None
    assert unjudged[0]["measured"] == "not measured: tornado-handler"


@pytest.mark.timeout(30)
def test_the_raw_websocket_server_speaks_websocket() -> None:
    """The raw server's hand-made handshake and frames, read by the ``websockets`` client."""
    import websockets

    async def check() -> dict[str, Any]:
        server = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.servers.raw_asyncio",
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert server.stdin is not None
        assert server.stdout is not None
        try:

            async def answer(key: str) -> dict[str, Any]:
                assert server.stdout is not None
                while True:
                    line = (await asyncio.wait_for(server.stdout.readline(), 10)).decode()
                    assert line, "the raw server exited"
                    if line.startswith("@@ ") and key in (found := json.loads(line[3:])):
                        return found  # type: ignore[no-any-return]

            port = (await answer("ready"))["port"]
            # The server never answers a close frame: the client waits for it briefly.
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws", close_timeout=0.2) as ws:
                for _ in range(100):
                    server.stdin.write(b'{"cmd": "stats"}\n')
                    if (await answer("subscribers"))["subscribers"] == 1:
                        break
                    await asyncio.sleep(0.05)
                server.stdin.write(b'{"cmd": "publish", "first": 7, "count": 2, "size": 200}\n')
                frames = [await asyncio.wait_for(ws.recv(), 10) for _ in range(2)]
            return {"frames": frames}
        finally:
            server.kill()
            await server.wait()

    frames = asyncio.run(check())["frames"]
    messages = [json.loads(frame) for frame in frames]
    assert [m["id"] for m in messages] == ["7", "8"]
    assert messages[0]["data"].startswith("S00000007 T")
    assert len(messages[0]["data"]) == 200  # a 16-bit length: frames over 125 bytes
