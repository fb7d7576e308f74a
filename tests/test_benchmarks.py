"""Smoke test of the fan-out benchmark (``python -m benchmarks``) at a tiny size.

Runs the real thing, as a user would: the runner, one server process per contender
and the load client process, on 127.0.0.1, for tornadose on both adapters and the raw
asyncio baseline, 20 subscribers and 200 messages. It checks that the run completes,
that tornadose loses nothing and that the numbers are sane; not how fast anything is.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SUBSCRIBERS, MESSAGES, RATE, DURATION = 20, 200, 20, 1
CONTENDERS = ("tornadose-tornado", "tornadose-uvicorn", "raw-asyncio")

# The benchmark's own dependencies (benchmarks/requirements.txt) are optional: without
# them it cannot measure memory and CPU, and this test says so instead of failing.
if importlib.util.find_spec("psutil") is None:
    pytest.skip(
        "psutil is not installed (pip install -r benchmarks/requirements.txt)",
        allow_module_level=True,
    )
if importlib.util.find_spec("uvicorn") is None:  # pragma: no cover - a dev dependency
    pytest.skip("uvicorn is not installed (pip install -e '.[dev]')", allow_module_level=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict]:
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
        "--transports=sse",
        "--no-plot",
        f"--results={results}",
    ]
    completed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=45)
    numbers = results / "latest.json"
    data = json.loads(numbers.read_text()) if numbers.exists() else {}
    return completed, data


@pytest.mark.timeout(60)
def test_the_run_completes_and_prints_the_table(run: tuple) -> None:
    completed, data = run
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "targets:" in completed.stdout
    assert [c["name"] for c in data["contenders"]] == list(CONTENDERS)
    for contender in data["contenders"]:
        assert "error" not in contender, contender
    assert data["seconds"] < 30


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", CONTENDERS)
def test_every_message_reaches_every_subscriber(run: tuple, name: str) -> None:
    _, data = run
    contender = next(c for c in data["contenders"] if c["name"] == name)
    assert contender["connect"]["connected"] == SUBSCRIBERS
    full, rate = contender["full"], contender["rate"]
    assert full["delivered"] == full["expected"] == SUBSCRIBERS * MESSAGES
    assert rate["delivered"] == rate["expected"] == SUBSCRIBERS * RATE * DURATION
    for phase in (full, rate):
        assert phase["lost"] == phase["disordered"] == phase["stale"] == phase["closed"] == 0
        assert phase["complete"]
    assert contender["still_open"] == SUBSCRIBERS


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", CONTENDERS)
def test_the_numbers_are_sane(run: tuple, name: str) -> None:
    _, data = run
    contender = next(c for c in data["contenders"] if c["name"] == name)
    full, latency = contender["full"], contender["rate"]["latency_ms"]
    assert full["events_per_s"] > 1000  # even a loaded CI machine does this
    assert 0 < full["active_seconds"] < 20
    assert full["server_cpu_seconds"] > 0
    assert full["cpu_seconds"] > 0
    assert latency["samples"] == SUBSCRIBERS * RATE * DURATION
    assert 0 < latency["p50"] <= latency["p99"] <= latency["max"] < 1000  # milliseconds
    assert isinstance(contender["idle_bytes_per_connection"], int)
    assert contender["rss_mb"]["idle"] > 0


@pytest.mark.timeout(60)
def test_targets_are_judged(run: tuple) -> None:
    _, data = run
    judged = {t["target"].split(":")[0] for t in data["targets"]}
    assert {"tornadose-tornado", "tornadose-uvicorn"} <= judged
    assert all(t["met"] in (True, False) for t in data["targets"])
