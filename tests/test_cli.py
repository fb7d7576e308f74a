"""The ``tornadose`` command, run as a real program: ``tornadose demo`` and ``tornadose serve``.

Every test starts the command in a subprocess on free ports and talks to it with
real clients (httpx, httpx-sse, websockets), as a user would with curl or a browser.
Tests marked with the ``redis_url`` fixture need the shared Redis (see
``tests/redis_support.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil  # type: ignore[import-untyped]
import pytest
import redis
from httpx_sse import ServerSentEvent
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from tests.clients import TIMEOUT, offset, recv, sse_client
from tests.conftest import free_port, free_port_pair, wait_until
from tests.programs import Program, StartProgram, wait_for_exit, wait_for_port

#: The command, as ``python -m`` (the installed ``tornadose`` script runs the same ``main``).
CLI = [sys.executable, "-m", "tornadose.cli"]


def run_cli(
    directory: Path, *arguments: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``tornadose <arguments>`` in ``directory`` until it exits (at most 30 s), with
    this environment plus ``env``."""
    return subprocess.run(
        [*CLI, *arguments],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=directory,
        env={**os.environ, **env} if env else None,
    )


#: What must never show up on the command's stderr.
TRACEBACK_MARKERS = ("Traceback", "Exception ignored", "Task was destroyed", "never retrieved")
#: Seconds a stopped command may take to exit (streams get 5 s to drain, at most).
EXIT_DEADLINE = 8.0


# -- helpers --------------------------------------------------------------------------


def http_client() -> httpx.AsyncClient:
    # trust_env=False: never send loopback requests through a proxy from the environment.
    return httpx.AsyncClient(timeout=TIMEOUT, trust_env=False)


def ws_connect(url: str, origin: str | None = None) -> connect:
    return connect(
        url,
        origin=Origin(origin) if origin else None,
        proxy=None,
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
    )


def assert_no_traceback(program: Program) -> None:
    err = program.stderr_text()
    for marker in TRACEBACK_MARKERS:
        assert marker not in err, f"{marker!r} on stderr\n{program.describe()}"


async def wait_for_output(program: Program, text: str, timeout: float = 10.0) -> None:
    """Wait until ``text`` is on the program's stdout; fail if it exits first."""
    await wait_until(
        lambda: text in program.stdout_text() or program.proc.poll() is not None, timeout
    )
    assert text in program.stdout_text(), program.describe()


async def stop(program: Program, signum: signal.Signals = signal.SIGTERM) -> int:
    """Send ``signum`` and return the exit status (fails after :data:`EXIT_DEADLINE`)."""
    program.proc.send_signal(signum)
    return await wait_for_exit(program, asyncio.get_running_loop().time(), EXIT_DEADLINE)


async def take_events(events: AsyncIterator[ServerSentEvent], count: int) -> list[ServerSentEvent]:
    """The next ``count`` events, failing after 5 s. A block holding only ``retry:``
    (the demo's channels send one when a stream opens) dispatches no event in a
    browser; httpx-sse yields it as a data-less event, skipped here."""

    async def collect() -> list[ServerSentEvent]:
        taken: list[ServerSentEvent] = []
        while len(taken) < count:
            event = await anext(events)
            if not (event.retry is not None and event.data == "" and event.event == "message"):
                taken.append(event)
        return taken

    return await asyncio.wait_for(collect(), TIMEOUT)


async def read_to_end(events: AsyncIterator[ServerSentEvent]) -> None:
    """Read an SSE stream until the server ends it (a cut connection raises)."""
    async with asyncio.timeout(EXIT_DEADLINE):
        async for _ in events:
            pass


def delete_keys(redis_url: str, *keys: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(*keys)
    finally:
        client.close()


def stream_ids(redis_url: str, key: str, start: str = "-") -> list[str]:
    """The ids of the entries of Redis stream ``key``, from ``start`` on (XRANGE)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        entries = client.xrange(key, start)
    finally:
        client.close()
    assert isinstance(entries, list)
    return [str(entry_id) for entry_id, _ in entries]


# -- tornadose demo -------------------------------------------------------------------


@dataclass
class Demo:
    """A running ``tornadose demo``: Tornado on ``port``, uvicorn on ``port + 1``."""

    program: Program
    port: int

    @property
    def tornado(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def uvicorn(self) -> str:
        return f"http://127.0.0.1:{self.port + 1}"

    @property
    def bases(self) -> dict[str, str]:
        return {"tornado": self.tornado, "uvicorn": self.uvicorn}


def ws_url(base: str, path: str) -> str:
    return base.replace("http://", "ws://", 1) + path


async def start_demo(start_program: StartProgram, *options: str, port: int = 0) -> Demo:
    """Start ``tornadose demo`` on free ports (or ``port``); returns once both listen."""
    port = port or free_port_pair()
    program = start_program([*CLI, "demo", "--port", str(port), *options])
    await wait_for_port(program, port)
    await wait_for_port(program, port + 1)
    return Demo(program, port)


@pytest.fixture
async def demo(start_program: StartProgram) -> Demo:
    """A running in-memory demo."""
    return await start_demo(start_program)


async def test_demo_prints_where_everything_is(demo: Demo) -> None:
    await wait_for_output(demo.program, "Ctrl-C stops the demo.")
    out = demo.program.stdout_text()
    for base in (demo.tornado, demo.uvicorn):
        assert f"{base}/\n" in out, out
        for path in ("/sensor/events", "/chat/events", "/chat/publish"):
            assert base + path in out, out
        assert ws_url(base, "/chat/ws") in out, out
    assert "channels in memory" in out, out


@pytest.mark.parametrize("server", ["tornado", "uvicorn"])
async def test_demo_page_is_served_by_both_servers(demo: Demo, server: str) -> None:
    base = demo.bases[server]
    async with http_client() as client:
        page = await client.get(base + "/")
        config = await client.get(base + "/demo/config.json")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "<title>tornadose demo</title>" in page.text
    assert '<canvas id="plot"' in page.text
    assert 'id="chat-form"' in page.text
    # Self-contained: no absolute URL to load anything from (no CDN, no fonts).
    assert "http://" not in page.text
    assert "https://" not in page.text
    # The page may connect to both servers, and nowhere else.
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    for other in demo.bases.values():
        assert other in policy, policy
        assert ws_url(other, "") in policy, policy

    assert config.status_code == 200
    assert config.json()["server"] == server
    assert config.json()["servers"] == {"tornado": demo.port, "uvicorn": demo.port + 1}


async def test_demo_streams_the_same_sensor_readings_from_both_servers(demo: Demo) -> None:
    async with (
        sse_client(demo.tornado + "/sensor/events") as (tornado_source, from_tornado),
        sse_client(demo.uvicorn + "/sensor/events") as (uvicorn_source, from_uvicorn),
    ):
        for source in (tornado_source, uvicorn_source):
            assert source.response.headers["content-type"].startswith("text/event-stream")
        received = {
            "tornado": await take_events(from_tornado, 5),
            "uvicorn": await take_events(from_uvicorn, 5),
        }
    epochs = set()
    for server, events in received.items():
        ids = [event.id for event in events]
        assert all(ids), (server, ids)
        epochs |= {event_id.rpartition("-")[0] for event_id in ids}
        offsets = [offset(event_id) for event_id in ids]
        assert offsets == list(range(offsets[0], offsets[0] + 5)), (server, ids)
        readings = [json.loads(event.data) for event in events]
        assert all(set(r) == {"seq", "value"} for r in readings), readings
        seqs = [r["seq"] for r in readings]
        assert seqs == list(range(seqs[0], seqs[0] + 5)), (server, readings)
        assert all(isinstance(r["value"], float) and -2 < r["value"] < 2 for r in readings)
    # One store behind both servers: one epoch, the same numbering.
    assert len(epochs) == 1, received


async def test_demo_publishes_to_the_websockets_of_both_servers(demo: Demo) -> None:
    async with http_client() as client, AsyncExitStack() as stack:
        first = await client.post(demo.tornado + "/chat/publish", json={"user": "a", "text": "0"})
        assert first.status_code == 202, first.text
        first_id = first.json()["id"]
        # Each server's WebSocket from the other server's page: its origin is allowed.
        # Resuming after the first message proves each is subscribed before we publish.
        sockets: dict[str, ClientConnection] = {}
        for server, page in (("tornado", demo.uvicorn), ("uvicorn", demo.tornado)):
            url = ws_url(demo.bases[server], f"/chat/ws?last_event_id={first_id}")
            sockets[server] = await stack.enter_async_context(ws_connect(url, origin=page))
        for ws in sockets.values():
            control = await recv(ws)
            assert control.event == "tornadose.resumed", control
            assert control.data == {"after": first_id, "replayed": 0}

        for server, user in (("tornado", "ann"), ("uvicorn", "bob")):
            message = {"user": user, "text": f"hello through {server}"}
            answer = await client.post(demo.bases[server] + "/chat/publish", json=message)
            assert answer.status_code == 202, answer.text
            message_id = answer.json()["id"]
            for ws in sockets.values():
                envelope = await recv(ws)
                assert (envelope.id, envelope.data) == (message_id, message)


@pytest.mark.parametrize("server", ["tornado", "uvicorn"])
async def test_demo_refuses_an_invalid_message_with_the_details(demo: Demo, server: str) -> None:
    base = demo.bases[server]
    async with http_client() as client:
        first = await client.post(base + "/chat/publish", json={"user": "a", "text": "0"})
        assert first.status_code == 202, first.text
        url = ws_url(base, f"/chat/ws?last_event_id={first.json()['id']}")
        async with ws_connect(url) as ws:
            assert (await recv(ws)).event == "tornadose.resumed"
            answer = await client.post(base + "/chat/publish", json={"user": "", "text": "x" * 281})
            assert answer.status_code == 422, answer.text
            body = answer.json()
            assert body["error"] == "validation_error"
            details = {tuple(error["loc"]): error for error in body["errors"]}
            assert set(details) == {("user",), ("text",)}, body
            assert details[("user",)]["type"] == "string_too_short"
            assert "at least 1 character" in details[("user",)]["msg"]
            assert details[("text",)]["type"] == "string_too_long"
            assert "at most 280 characters" in details[("text",)]["msg"]

            missing = await client.post(base + "/chat/publish", json={"user": "ann"})
            assert missing.status_code == 422, missing.text
            assert [e["loc"] for e in missing.json()["errors"]] == [["text"]]

            # Nothing was published: the next message subscribers get is the next valid one.
            valid = await client.post(base + "/chat/publish", json={"user": "ann", "text": "ok"})
            assert valid.status_code == 202
            envelope = await recv(ws)
            assert (envelope.id, envelope.data) == (
                valid.json()["id"],
                {"user": "ann", "text": "ok"},
            )


@pytest.mark.parametrize("server", ["tornado", "uvicorn"])
async def test_demo_refuses_websockets_from_foreign_pages(demo: Demo, server: str) -> None:
    url = ws_url(demo.bases[server], "/chat/ws")
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(url, origin="http://evil.example"):
            pass
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_demo_stops_cleanly_on_a_signal(demo: Demo, signum: signal.Signals) -> None:
    async with (
        sse_client(demo.tornado + "/sensor/events") as (_, from_tornado),
        sse_client(demo.uvicorn + "/sensor/events") as (_, from_uvicorn),
        ws_connect(ws_url(demo.tornado, "/sensor/ws")) as tornado_ws,
        ws_connect(ws_url(demo.uvicorn, "/sensor/ws")) as uvicorn_ws,
    ):
        await take_events(from_tornado, 1)
        await take_events(from_uvicorn, 1)
        await recv(tornado_ws)
        await recv(uvicorn_ws)

        demo.program.proc.send_signal(signum)
        started = asyncio.get_running_loop().time()
        # Every stream ends cleanly: SSE responses finish, WebSockets close "going away".
        await read_to_end(from_tornado)
        await read_to_end(from_uvicorn)
        for ws in (tornado_ws, uvicorn_ws):
            async with asyncio.timeout(EXIT_DEADLINE):
                async for _ in ws:
                    pass
            assert ws.close_code == 1001, (ws.close_code, ws.close_reason)

    returncode = await wait_for_exit(demo.program, started, EXIT_DEADLINE)
    assert returncode == 0, demo.program.describe()
    assert "tornadose demo: stopped" in demo.program.stdout_text()
    assert_no_traceback(demo.program)


def test_demo_says_when_redis_cannot_be_reached(tmp_path: Path) -> None:
    """``--redis`` with nothing listening: one line naming the URL, exit 2 (a bad
    command line, as for ``serve``), at once, before anything listens."""
    url = f"redis://127.0.0.1:{free_port_pair()}/0"
    result = run_cli(tmp_path, "demo", "--port", str(free_port_pair()), "--redis", url)
    assert result.returncode == 2, result
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert f"--redis: cannot reach Redis at {url}" in result.stderr, result.stderr
    assert result.stdout == ""


def test_demo_says_which_port_is_taken(tmp_path: Path) -> None:
    port = free_port_pair()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port + 1))
        taken.listen()
        result = run_cli(tmp_path, "demo", "--port", str(port))
    assert result.returncode == 1, result
    assert f"cannot listen on 127.0.0.1 port {port + 1}" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_demo_prefix_needs_redis(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "demo", "--prefix", "x:")
    assert result.returncode == 2, result
    assert result.stderr.strip() == "tornadose: error: --prefix needs --redis"


@pytest.fixture
def demo_prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix of the test's own; the demo's streams are deleted afterwards."""
    prefix = f"test-demo-{uuid.uuid4().hex[:10]}:"
    yield prefix
    keys = [prefix + name + suffix for name in ("sensor", "chat") for suffix in ("", ":floor")]
    delete_keys(redis_url, *keys)


async def test_demo_on_redis_resumes_after_a_restart_without_a_gap(
    start_program: StartProgram, redis_url: str, demo_prefix: str
) -> None:
    options = ("--redis", redis_url, "--prefix", demo_prefix)
    first = await start_demo(start_program, *options)
    await wait_for_output(first.program, f"streams {demo_prefix}sensor, {demo_prefix}chat")
    async with sse_client(first.tornado + "/sensor/events") as (_, events):
        before = await take_events(events, 5)
    first.program.proc.kill()  # no goodbye: as a crash
    first.program.proc.wait(timeout=5)

    again = await start_demo(start_program, *options, port=first.port)
    last_id = before[-1].id
    assert last_id is not None
    # Resume on the *other* server of the restarted demo: the ids are Redis's.
    async with sse_client(again.uvicorn + "/sensor/events", **{"Last-Event-ID": last_id}) as (
        _,
        events,
    ):
        control, *after = await take_events(events, 8)
    assert control.event == "tornadose.resumed", control
    assert json.loads(control.data)["after"] == last_id

    received = [str(event.id) for event in [*before, *after]]
    stored = stream_ids(redis_url, demo_prefix + "sensor", received[0])
    # Every reading from the first received on, exactly once, in order: no gap.
    assert received == stored[: len(received)], (received, stored)
    assert await stop(again.program) == 0, again.program.describe()


# -- tornadose serve ------------------------------------------------------------------

CHANNELS_MODULE = '''
"""Channels served by the tests of ``tornadose serve``."""

import pydantic

from tornadose.http.channels import Channels

NAME = {name!r}


class Note(pydantic.BaseModel):
    text: str = pydantic.Field(min_length=1)


def make_channels() -> Channels:
    channels = Channels()
    channels.add(NAME, schema=Note)
    return channels


channels = make_channels()
not_channels = 42
no_channels = Channels()


def needs_argument(name: str) -> Channels:
    return make_channels()


def raises() -> Channels:
    raise RuntimeError("no database\\nat all")


async def make_async() -> Channels:
    return make_channels()


class AsyncFactory:
    async def __call__(self) -> Channels:
        return make_channels()


async_instance = AsyncFactory()
'''

#: Modules that fail while they are imported, and what the one line says about each.
FAILING_MODULES = {
    "raising_module": (
        "settings = {}\nDATABASE = settings['database']\n",
        "importing raising_module raised KeyError: 'database' (at raising_module.py:2)",
    ),
    "missing_dependency": (
        "import no_such_dependency_xyz\n",
        "importing missing_dependency raised ModuleNotFoundError: "
        "No module named 'no_such_dependency_xyz' (at missing_dependency.py:1)",
    ),
    "bad_syntax": (
        "def broken(:\n    pass\n",
        "importing bad_syntax raised SyntaxError: invalid syntax (bad_syntax.py, line 1)",
    ),
}


def write_channels_module(directory: Path, name: str = "notes") -> str:
    """Write ``live_channels.py`` (declaring channel ``name``) into ``directory``."""
    (directory / "live_channels.py").write_text(CHANNELS_MODULE.format(name=name))
    return name


async def start_serve(
    start_program: StartProgram, target: str, server: str, *options: str
) -> tuple[Program, str]:
    """Start ``tornadose serve`` (in the test's directory) on a free port."""
    port = free_port()
    argv = [*CLI, "serve", target, "--server", server, "--port", str(port), *options]
    program = start_program(argv)
    await wait_for_port(program, port)
    return program, f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(
    ("server", "attribute"),
    [("tornado", "channels"), ("uvicorn", "channels"), ("tornado", "make_channels")],
)
async def test_serve_streams_and_publishes_a_channels_module(
    tmp_path: Path, start_program: StartProgram, server: str, attribute: str
) -> None:
    name = write_channels_module(tmp_path)
    program, base = await start_serve(start_program, f"live_channels:{attribute}", server)
    await wait_for_output(program, f"{base}/{name}/events")
    assert f"live_channels:{attribute} on {server}" in program.stdout_text()

    async with http_client() as client, AsyncExitStack() as stack:
        first = await client.post(f"{base}/{name}/publish", json={"text": "first"})
        assert first.status_code == 202, first.text
        first_id = first.json()["id"]
        # Subscribers that resume after the first message: once they got the
        # "resumed" event they are subscribed, so the next message cannot be missed.
        sse_url = f"{base}/{name}/events"
        _, events = await stack.enter_async_context(
            sse_client(sse_url, **{"Last-Event-ID": first_id})
        )
        ws_path = f"/{name}/ws?last_event_id={first_id}"
        ws = await stack.enter_async_context(ws_connect(ws_url(base, ws_path)))
        (control,) = await take_events(events, 1)
        assert control.event == "tornadose.resumed"
        assert (await recv(ws)).event == "tornadose.resumed"

        answer = await client.post(f"{base}/{name}/publish", json={"text": "hi"})
        assert answer.status_code == 202, answer.text
        message_id = answer.json()["id"]
        (event,) = await take_events(events, 1)
        assert (event.id, json.loads(event.data)) == (message_id, {"text": "hi"})
        envelope = await recv(ws)
        assert (envelope.id, envelope.data) == (message_id, {"text": "hi"})

        invalid = await client.post(f"{base}/{name}/publish", json={"text": ""})
        assert invalid.status_code == 422, invalid.text
        assert [e["loc"] for e in invalid.json()["errors"]] == [["text"]]
        assert (await client.get(f"{base}/nope/events")).status_code == 404

    assert await stop(program) == 0, program.describe()
    assert_no_traceback(program)


async def test_serve_with_redis_shares_channels_between_servers(
    tmp_path: Path, start_program: StartProgram, redis_url: str, channel: str
) -> None:
    name = write_channels_module(tmp_path, channel)
    target = "live_channels:channels"
    tornado, tornado_base = await start_serve(
        start_program, target, "tornado", "--redis", redis_url
    )
    uvicorn, uvicorn_base = await start_serve(
        start_program, target, "uvicorn", "--redis", redis_url
    )

    async with http_client() as client:
        first = await client.post(f"{tornado_base}/{name}/publish", json={"text": "first"})
        assert first.status_code == 202, first.text
        first_id = first.json()["id"]
        headers = {"Last-Event-ID": first_id}
        async with sse_client(f"{uvicorn_base}/{name}/events", **headers) as (_, events):
            (control,) = await take_events(events, 1)  # subscribed: what follows is not missed
            assert control.event == "tornadose.resumed"
            answer = await client.post(f"{tornado_base}/{name}/publish", json={"text": "across"})
            assert answer.status_code == 202, answer.text
            (event,) = await take_events(events, 1)
        assert (event.id, json.loads(event.data)) == (answer.json()["id"], {"text": "across"})
        # Published on uvicorn, replayed by Tornado: the same stream, the same ids.
        more = await client.post(f"{uvicorn_base}/{name}/publish", json={"text": "back"})
        assert more.status_code == 202, more.text
        async with sse_client(f"{tornado_base}/{name}/events", **headers) as (_, events):
            control, *replayed = await take_events(events, 3)
        assert json.loads(control.data) == {"after": first_id, "replayed": 2}
        assert [(e.id, json.loads(e.data)["text"]) for e in replayed] == [
            (answer.json()["id"], "across"),
            (more.json()["id"], "back"),
        ]

    # SIGINT as Ctrl-C sends it; uvicorn closes the Redis connections before exiting.
    for program, signum in ((tornado, signal.SIGTERM), (uvicorn, signal.SIGINT)):
        assert await stop(program, signum) == 0, program.describe()
        assert_no_traceback(program)


def process_tree(pid: int) -> list[psutil.Process]:
    try:
        children: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
        return children
    except psutil.NoSuchProcess:
        return []


def is_resource_tracker(process: psutil.Process) -> bool:
    try:
        return "resource_tracker" in " ".join(process.cmdline())
    except psutil.Error:
        return False


@pytest.mark.parametrize(
    ("server", "signum"),
    [("tornado", signal.SIGTERM), ("tornado", signal.SIGINT), ("uvicorn", signal.SIGTERM)],
    ids=["tornado-SIGTERM", "tornado-SIGINT", "uvicorn-SIGTERM"],
)
async def test_serve_workers_share_redis_and_all_stop_on_a_signal(
    tmp_path: Path,
    start_program: StartProgram,
    redis_url: str,
    channel: str,
    server: str,
    signum: signal.Signals,
) -> None:
    name = write_channels_module(tmp_path, channel)
    options = ("--redis", redis_url, "--workers", "3")
    program, base = await start_serve(start_program, "live_channels:channels", server, *options)
    workers: list[psutil.Process] = []
    try:
        # uvicorn also starts multiprocessing's resource tracker: count Python servers.
        def serving() -> list[psutil.Process]:
            return [
                p
                for p in process_tree(program.proc.pid)
                if "resource_tracker" not in p.cmdline()[-1]
            ]

        await wait_until(lambda: len(serving()) == 3, timeout=15)
        workers = process_tree(program.proc.pid)
        async with http_client() as client, AsyncExitStack() as stack:
            first = await client.post(f"{base}/{name}/publish", json={"text": "first"})
            assert first.status_code == 202, first.text
            headers = {"Last-Event-ID": first.json()["id"]}
            # Several subscribers, spread over the processes by the kernel.
            streams = [
                (await stack.enter_async_context(sse_client(f"{base}/{name}/events", **headers)))[1]
                for _ in range(6)
            ]
            for events in streams:
                (control,) = await take_events(events, 1)
                assert control.event == "tornadose.resumed"
            answer = await client.post(f"{base}/{name}/publish", json={"text": "to all"})
            assert answer.status_code == 202, answer.text
            for events in streams:
                (event,) = await take_events(events, 1)
                assert (event.id, json.loads(event.data)) == (
                    answer.json()["id"],
                    {"text": "to all"},
                )

        assert await stop(program, signum) == 0, program.describe()
        _, alive = psutil.wait_procs(workers, timeout=EXIT_DEADLINE)
        assert not alive, f"still running after the signal: {alive}"
        assert_no_traceback(program)
    finally:
        for process in workers:
            if process.is_running():
                process.kill()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("live_channels", "expected module:attribute"),
        (":channels", "expected module:attribute"),
        ("no_such_module_here:channels", "cannot import 'no_such_module_here'"),
        ("live_channels:missing", "module 'live_channels' has no attribute 'missing'"),
        ("live_channels:not_channels", "is int, not a tornadose Channels"),
        ("live_channels:needs_argument", "must take no arguments"),
        ("live_channels:no_channels", "declares no channels"),
    ],
)
def test_serve_refuses_what_is_not_channels(tmp_path: Path, target: str, message: str) -> None:
    write_channels_module(tmp_path)
    result = run_cli(tmp_path, "serve", target, "--port", str(free_port()))
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tornadose: error: "), result.stderr
    assert message in lines[0], result.stderr
    assert result.stdout == ""


def assert_one_line_error(result: subprocess.CompletedProcess[str], *parts: str) -> None:
    """Exit status 2, nothing on stdout, and one line on stderr, ``tornadose: error: ``
    followed by a message holding every one of ``parts``."""
    assert result.returncode == 2, result
    assert result.stdout == "", result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tornadose: error: "), result.stderr
    for part in parts:
        assert part in lines[0], (part, result.stderr)


@pytest.mark.parametrize("module", sorted(FAILING_MODULES))
@pytest.mark.parametrize("server", ["tornado", "uvicorn"])
def test_serve_says_in_one_line_why_a_target_failed_to_import(
    tmp_path: Path, module: str, server: str
) -> None:
    """A target module that raises while it is imported (any exception, a missing
    dependency of its own, a syntax error): one line naming the target, the exception
    and where it was raised, exit 2, no traceback, nothing served."""
    source, message = FAILING_MODULES[module]
    (tmp_path / f"{module}.py").write_text(source)
    target = f"{module}:channels"
    port = free_port()
    result = run_cli(tmp_path, "serve", target, "--server", server, "--port", str(port))
    assert_one_line_error(result, f"{target}: {message}")
    with socket.socket() as probe:  # nothing was left listening
        probe.bind(("127.0.0.1", port))


def test_serve_says_in_one_line_why_a_target_function_failed(tmp_path: Path) -> None:
    """A factory function that raises: one line naming the target and the exception (its
    message on one line), exit 2."""
    write_channels_module(tmp_path)
    result = run_cli(tmp_path, "serve", "live_channels:raises", "--port", str(free_port()))
    assert_one_line_error(
        result,
        "live_channels:raises: calling raises() raised RuntimeError: no database at all",
        "(at live_channels.py:",
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("notaurl", "--redis: not a Redis URL: 'notaurl'"),
        ("http://127.0.0.1:6379/0", "--redis: not a Redis URL: 'http://127.0.0.1:6379/0'"),
        ("unreachable", "--redis: cannot reach Redis at redis://127.0.0.1:{port}/0"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "demo"])
def test_a_bad_or_unreachable_redis_is_refused_at_startup(
    tmp_path: Path, url: str, message: str, command: str
) -> None:
    """``--redis`` that is not a Redis URL, or whose Redis does not answer: one line
    naming the option and the URL, exit 2, before anything listens (no address is
    announced: nothing is served that would answer every request 500)."""
    write_channels_module(tmp_path)
    if url == "unreachable":
        port = free_port()
        url = f"redis://127.0.0.1:{port}/0"
        message = message.format(port=port)
    arguments = ["serve", "live_channels:channels"] if command == "serve" else ["demo"]
    port = free_port_pair()
    result = run_cli(tmp_path, *arguments, "--port", str(port), "--redis", url)
    assert_one_line_error(result, message)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("notaurl", "TORNADOSE_REDIS_URL: not a Redis URL: 'notaurl'"),
        ("unreachable", "TORNADOSE_REDIS_URL: cannot reach Redis at redis://127.0.0.1:{port}/0"),
    ],
)
@pytest.mark.parametrize("server", ["tornado", "uvicorn"])
def test_a_bad_redis_url_variable_is_refused_at_startup(
    tmp_path: Path, url: str, message: str, server: str
) -> None:
    """Without ``--redis``, ``TORNADOSE_REDIS_URL`` (which ``Channels`` reads) is checked
    as ``--redis`` is: one line naming the variable and the URL, exit 2, nothing
    listening (not a server answering every request 500)."""
    write_channels_module(tmp_path)
    if url == "unreachable":
        redis_port = free_port()
        url = f"redis://127.0.0.1:{redis_port}/0"
        message = message.format(port=redis_port)
    port = free_port()
    result = run_cli(
        tmp_path,
        *["serve", "live_channels:channels", "--server", server, "--port", str(port)],
        env={"TORNADOSE_REDIS_URL": url},
    )
    assert_one_line_error(result, message)
    with socket.socket() as probe:  # nothing was left listening
        probe.bind(("127.0.0.1", port))


@pytest.mark.parametrize("target", ["live_channels:make_async", "live_channels:async_instance"])
def test_an_async_factory_is_refused_without_a_warning(tmp_path: Path, target: str) -> None:
    """An ``async def`` factory (or an object with an ``async def __call__``): one line
    saying the factory must be a plain function, exit 2, and no "never awaited"
    ``RuntimeWarning`` (the one line is all of stderr)."""
    write_channels_module(tmp_path)
    result = run_cli(tmp_path, "serve", target, "--port", str(free_port()))
    assert_one_line_error(
        result,
        f"{target} is an async function: the factory must be a plain (synchronous) function",
    )
    assert "never awaited" not in result.stderr


@pytest.mark.parametrize(
    ("arguments", "option"),
    [
        (["serve", "live_channels:channels", "--port", "abc"], "--port"),
        (["serve", "live_channels:channels", "--port", "0"], "--port"),
        (["serve", "live_channels:channels", "--workers", "many"], "--workers"),
        (["serve", "live_channels:channels", "--server", "gunicorn"], "--server"),
        (["demo", "--port", "abc"], "--port"),
    ],
)
def test_option_errors_name_the_option(tmp_path: Path, arguments: list[str], option: str) -> None:
    """A bad option value: exit 2, the error line names the option and the value
    (argparse's usage line before it), never an internal name like ``_port``."""
    write_channels_module(tmp_path)
    result = run_cli(tmp_path, *arguments)
    assert result.returncode == 2, result
    error = result.stderr.splitlines()[-1]
    assert f"error: argument {option}: " in error, result.stderr
    assert repr(arguments[-1]) in error or arguments[-1] in error, result.stderr
    for internal in ("_port", "_workers", "_integer"):
        assert internal not in result.stderr, result.stderr


def test_serve_help_says_which_extra_each_server_needs(tmp_path: Path) -> None:
    """``serve --help``: tornado needs ``tornadose[tornado]``, uvicorn ``tornadose[asgi]``,
    ``--redis`` ``tornadose[redis]``; ``demo --help``: ``tornadose[demo]``."""
    result = run_cli(tmp_path, "serve", "--help")
    assert result.returncode == 0, result
    text = " ".join(result.stdout.split())
    assert "tornado needs tornadose[tornado]" in text, result.stdout
    assert "uvicorn needs tornadose[asgi]" in text, result.stdout
    assert "--redis needs tornadose[redis]" in text, result.stdout
    assert "exit status" in text, result.stdout
    demo = run_cli(tmp_path, "demo", "--help")
    assert demo.returncode == 0, demo
    assert "Needs tornadose[demo]" in " ".join(demo.stdout.split()), demo.stdout


@pytest.mark.parametrize(
    ("arguments", "extra"),
    [
        (["serve", "live_channels:channels", "--server", "uvicorn"], "tornadose[asgi]"),
        (["demo"], "tornadose[demo]"),
    ],
)
def test_uvicorn_without_a_websocket_library_is_refused(
    tmp_path: Path, arguments: list[str], extra: str
) -> None:
    """uvicorn installed without ``websockets`` or ``wsproto`` (here: both made
    unimportable by modules earlier on the path) would answer every WebSocket 400: the
    command refuses to start, naming the extra that brings one, exit 2."""
    write_channels_module(tmp_path)
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    for name in ("websockets", "wsproto"):
        (blocked / f"{name}.py").write_text(f"raise ImportError('{name} blocked by the test')\n")
    env = {**os.environ, "PYTHONPATH": str(blocked)}
    result = subprocess.run(
        [*CLI, *arguments, "--port", str(free_port_pair())],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env=env,
    )
    assert_one_line_error(result, "uvicorn has no WebSocket library", f"pip install '{extra}'")


@pytest.mark.parametrize(
    "arguments",
    [
        ["serve", "live_channels:channels", "--workers", "0"],
        ["serve", "live_channels:channels", "--port", "65536"],
        ["serve", "live_channels:channels", "--server", "x"],
        ["demo", "--port", "65535"],
    ],
)
def test_bad_options_are_refused(tmp_path: Path, arguments: list[str]) -> None:
    write_channels_module(tmp_path)
    result = run_cli(tmp_path, *arguments)
    assert result.returncode == 2, result
    assert "error" in result.stderr


def test_the_installed_command_runs() -> None:
    """``pip install`` made a ``tornadose`` script next to this Python."""
    script = Path(sys.executable).parent / "tornadose"
    assert script.exists(), f"{script} is missing: reinstall with pip install -e '.[dev]'"
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    result = subprocess.run(
        [str(script), "--help"], capture_output=True, text=True, timeout=30, env=env
    )
    assert result.returncode == 0, result
    assert "demo" in result.stdout
    assert "serve" in result.stdout
