"""The examples in ``examples/``, run as real programs in subprocesses.

``seed.py`` is the 0.2.2 documentation's usage example, verbatim: it must still work
(only its hard-coded port is swapped for a free one). ``modern.py`` is the asyncio
style: both transports and a clean shutdown on SIGINT/SIGTERM.
"""

from __future__ import annotations

import ast
import asyncio
import itertools
import json
import signal
import sys
from pathlib import Path

import httpx
import pytest
from httpx_sse import aconnect_sse
from websockets.asyncio.client import connect

from tests.conftest import free_port
from tests.programs import Program, StartProgram, wait_for_exit, wait_for_port

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

#: Seconds allowed for a network operation (connect, read an event...).
NET_TIMEOUT = 5.0
#: What must never show up on an example's stderr.
TRACEBACK_MARKERS = ("Traceback", "Exception ignored", "Task was destroyed", "never retrieved")


def assert_no_traceback(example: Program) -> None:
    err = example.stderr_text()
    for marker in TRACEBACK_MARKERS:
        assert marker not in err, f"{marker!r} on stderr\n{example.describe()}"


def http_client() -> httpx.AsyncClient:
    # trust_env=False: never send loopback requests through a proxy from the environment.
    return httpx.AsyncClient(timeout=NET_TIMEOUT, trust_env=False)


# -- examples/seed.py ---------------------------------------------------------------


async def test_seed_example_runs_verbatim(tmp_path: Path, start_program: StartProgram) -> None:
    # Swap the hard-coded port for a free one; everything else runs as written. The
    # docstring (which tells readers to use port 9000) is left alone.
    text = (EXAMPLES / "seed.py").read_text()
    docstring = ast.parse(text).body[0]
    assert isinstance(docstring, ast.Expr)
    assert isinstance(docstring.value, ast.Constant)
    lines = text.splitlines(keepends=True)
    header, code = "".join(lines[: docstring.end_lineno]), "".join(lines[docstring.end_lineno :])
    assert code.count("9000") == 1, "seed.py must hard-code its port exactly once"
    port = free_port()
    script = tmp_path / "seed.py"
    script.write_text(header + code.replace("9000", str(port)))
    example = start_program([sys.executable, str(script)])
    await wait_for_port(example, port)

    loop = asyncio.get_running_loop()
    values: list[float] = []
    async with http_client() as client:
        connected_at = loop.time()
        async with aconnect_sse(client, "GET", f"http://127.0.0.1:{port}/") as event_source:
            headers_after = loop.time() - connected_at
            response = event_source.response
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            first_event_after: float | None = None
            async with asyncio.timeout(4.0):
                async for event in event_source.aiter_sse():
                    if first_event_after is None:
                        first_event_after = loop.time() - connected_at
                    values.append(float(event.data))
                    if len(values) >= 2:
                        break

    # Headers go out when the stream opens, not with the first value (a 0.2.2 bug).
    assert headers_after < 0.5, f"SSE headers took {headers_after:.2f} s"
    # The first value is published 1 s after start-up and we connected right away,
    # so the headers must have come well before the first event.
    assert first_event_after is not None
    assert first_event_after - headers_after > 0.2, (
        f"headers at {headers_after:.2f} s, first event at {first_event_after:.2f} s: "
        "the connection was not open before the first value"
    )
    assert len(values) >= 2
    assert all(0.0 <= v < 1.0 for v in values), values
    assert all(a != b for a, b in itertools.pairwise(values)), values

    example.proc.terminate()
    example.proc.wait(timeout=5)
    assert_no_traceback(example)


# -- examples/modern.py -------------------------------------------------------------


def assert_payload(payload: object) -> None:
    assert isinstance(payload, dict), payload
    assert set(payload) == {"n", "value", "text"}, payload
    assert isinstance(payload["n"], int)
    assert isinstance(payload["value"], float)
    assert 0.0 <= payload["value"] < 1.0
    assert payload["text"] == "line one\nline two"


@pytest.mark.parametrize(
    ("store", "signum"),
    [("queue", signal.SIGTERM), ("data", signal.SIGINT)],
    ids=["queue-SIGTERM", "data-SIGINT"],
)
async def test_modern_example_both_transports_and_clean_shutdown(
    start_program: StartProgram, store: str, signum: signal.Signals
) -> None:
    port = free_port()
    example = start_program(
        [sys.executable, str(EXAMPLES / "modern.py"), "--port", str(port), "--store", store]
    )
    await wait_for_port(example, port)

    async with (
        http_client() as client,
        aconnect_sse(client, "GET", f"http://127.0.0.1:{port}/events") as events,
        connect(
            f"ws://127.0.0.1:{port}/ws", proxy=None, open_timeout=NET_TIMEOUT, close_timeout=2
        ) as ws,
    ):
        assert events.response.status_code == 200
        assert events.response.headers["content-type"].startswith("text/event-stream")
        sse_stream = events.aiter_sse()

        async with asyncio.timeout(NET_TIMEOUT):
            event = await anext(sse_stream)
        assert_payload(json.loads(event.data))

        async with asyncio.timeout(NET_TIMEOUT):
            frame = json.loads(await ws.recv())
        assert set(frame) >= {"data", "id"}, frame
        assert_payload(frame["data"])

        # Shut down while both subscribers are still connected.
        example.proc.send_signal(signum)

        # The SSE stream ends (cleanly) and the WebSocket closes with 1001, going away.
        # The signal drains the process's streams first (every adapter chains that
        # drain in front of the program's handler): the SSE stream may end with the
        # shutdown's reconnect hint, a lone ``retry:`` that httpx-sse yields data-less.
        async with asyncio.timeout(NET_TIMEOUT):
            async for event in sse_stream:
                if event.data == "" and event.retry is not None:
                    assert 1000 <= event.retry <= 5000, event
                    continue
                assert_payload(json.loads(event.data))
        async with asyncio.timeout(NET_TIMEOUT):
            async for message in ws:  # ends without error only on a 1000/1001 close
                assert_payload(json.loads(message)["data"])
        # 1006 here would mean the server dropped the connection without a close frame.
        assert ws.close_code == 1001, (ws.close_code, ws.close_reason)

    returncode = await wait_for_exit(example, asyncio.get_running_loop().time(), 5)
    assert returncode == 0, example.describe()
    assert_no_traceback(example)


# -- examples/client.py -------------------------------------------------------------


async def test_client_example_reads_then_resumes_exactly(start_program: StartProgram) -> None:
    # The example serves its own channel, reads 3 ticks, disconnects, and resumes from
    # the last id: the resumed event, then the very next ticks, none skipped or repeated.
    port = free_port()
    example = start_program(
        [sys.executable, str(EXAMPLES / "client.py"), "--port", str(port), "--count", "3"]
    )
    returncode = await wait_for_exit(example, asyncio.get_running_loop().time(), 15)
    assert returncode == 0, example.describe()
    assert_no_traceback(example)
    lines = example.stdout_text().splitlines()
    assert len(lines) == 8, example.describe()
    first = [line.split() for line in lines[:3]]
    assert [n for _, n in first] == ["n=0", "n=1", "n=2"], lines
    assert lines[3] == f"reconnecting after {first[2][0]}", lines
    resumed = lines[4]
    assert resumed.startswith(f"tornadose.resumed {{'after': '{first[2][0]}', 'replayed': "), lines
    after = [line.split()[1] for line in lines[5:]]
    assert after == ["n=3", "n=4", "n=5"], lines


# -- examples/fastapi_app.py --------------------------------------------------------


async def test_fastapi_example_routes_router_and_clean_shutdown(
    start_program: StartProgram,
) -> None:
    # Own routes (room by path parameter) and the router, both behind the dependency;
    # SIGINT ends the open streams and the server.
    port = free_port()
    example = start_program([sys.executable, str(EXAMPLES / "fastapi_app.py"), "--port", str(port)])
    await wait_for_port(example, port)
    base, token = f"http://127.0.0.1:{port}", {"Authorization": "Bearer letmein"}

    async with http_client() as client:
        assert (await client.get(f"{base}/rooms/lobby/events")).status_code == 401
        assert (await client.get(f"{base}/live/lobby/events")).status_code == 401
        unknown = await client.get(f"{base}/rooms/attic/events", headers=token)
        assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_channel")
        paths = (await client.get(f"{base}/openapi.json")).json()["paths"]
        assert {"/live/lobby/publish", "/live/dev/events", "/rooms/{room}/say"} <= set(paths)
        async with (
            aconnect_sse(client, "GET", f"{base}/rooms/lobby/events", headers=token) as events,
            connect(
                f"ws://127.0.0.1:{port}/live/lobby/ws",
                additional_headers=token,
                proxy=None,
                open_timeout=NET_TIMEOUT,
                close_timeout=2,
            ) as ws,
        ):
            assert events.response.status_code == 200
            sse_stream = events.aiter_sse()
            said = await client.post(f"{base}/rooms/lobby/say?text=hi", headers=token)
            assert said.status_code == 201, said.text
            line = {"user": "alice", "text": "hi"}
            async with asyncio.timeout(NET_TIMEOUT):
                event = await anext(sse_stream)
                frame = json.loads(await ws.recv())
            assert (event.id, json.loads(event.data)) == (said.json()["id"], line)
            assert (frame["id"], frame["data"]) == (said.json()["id"], line)
            published = await client.post(
                f"{base}/live/lobby/publish", json={"user": "bo", "text": "yo"}, headers=token
            )
            assert published.status_code == 202, published.text
            empty = await client.post(f"{base}/rooms/lobby/say?text=", headers=token)
            assert empty.status_code == 422

            example.proc.send_signal(signal.SIGINT)
            async with asyncio.timeout(NET_TIMEOUT):
                async for message in ws:  # ends without error only on a 1000/1001 close
                    assert json.loads(message)["data"] == {"user": "bo", "text": "yo"}
            assert ws.close_code == 1001, (ws.close_code, ws.close_reason)

    returncode = await wait_for_exit(example, asyncio.get_running_loop().time(), 10)
    assert returncode == 0, example.describe()
    assert_no_traceback(example)
