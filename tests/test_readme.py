"""README.md runs as written, and renders as the package's long description.

Every ```` ```python ```` block of the README is one of two kinds:

* **a complete program**: all its imports, no top-level ``await``; written to a
  temporary folder and run as ``python block.py`` with this repository's interpreter.
  Its literal ports ``8000`` and ``8001`` are replaced by free ephemeral ports (in the
  code and in its checks), and ``redis://127.0.0.1:6379/0`` by the test Redis.

  - A program followed, on the lines right after its closing fence, by HTML comments
    ``<!-- check: ... -->`` serves HTTP: each check is made against it once it listens
    (every port its checks name), then it gets ``SIGINT`` and must exit with status 0
    within 10 s, with no traceback on stderr.
  - A program without checks must exit by itself with status 0 within 10 s.

* **a fragment**, whose first line is exactly ``# Fragment of examples/<name>.py``:
  every other non-blank line of it appears, stripped, in that order, among the lines
  of the named example, which must exist and be run by ``tests/test_examples.py``.

A check is shell-quoted words (``shlex``), any of them ``-H 'name: value'`` adding a
request header, and ``-E 'name: value'`` expecting a response header: the answer (the
handshake's, for ``WS``) must carry that header with exactly that value (the name
compared case-insensitively, the value after stripping blanks; several ``-E`` for one
name each name one value, all of which must be among the header's values):

* ``GET <url> sse``: ``200`` with ``text/event-stream``; ``sse-event``: and one event
  with data within 5 s;
* ``GET <url> <status>`` / ``POST <url> '<json body>' <status>``: that status;
* ``OPTIONS <url> <status>``: that status (a CORS preflight: give it ``-H 'Origin: ...'``
  and ``-H 'Access-Control-Request-Method: POST'``, and ``-E`` the grant expected);
* ``WS <url>``: the handshake succeeds; ``WS <url> frame``: and one JSON frame
  ``{"data": ..., "id": ...}`` arrives within 5 s.

Blocks using Redis (``RedisStore`` or a ``redis://`` URL in the code) need the shared
test Redis: they skip without it, and fail under ``CI=true`` (``tests/redis_support``);
the streams they name (``RedisStore("name", ...)``) are deleted afterwards.

The long description (PyPI renders the README): every link and image is absolute or
an anchor of the page, and editable installs (``pip install -e``) appear only in the
opening (its two commands, run from a clone) and the development section, which also says
how long the test suite takes.
"""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from websockets.asyncio.client import connect

from tests.conftest import free_port
from tests.programs import Program, StartProgram, wait_for_exit, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TEST_EXAMPLES = ROOT / "tests" / "test_examples.py"

FRAGMENT = re.compile(r"# Fragment of (examples/[A-Za-z0-9_]+\.py)")
CHECK = re.compile(r"<!-- check: (.+?) -->")
#: The literal ports a complete block may use, replaced by free ones when it runs.
PORT = re.compile(r"(?<![\d.])(800[01])(?!\d)")
README_REDIS = "redis://127.0.0.1:6379/0"
#: The section holding development instructions (editable installs, the test suite).
DEVELOPMENT_SECTION = "Layout and development"

#: Seconds a non-serving program may run, and a serving one may take to stop.
RUN_LIMIT = 10.0
#: Seconds allowed for one network operation of a check.
NET_TIMEOUT = 5.0
#: What must never show up on a block's stderr.
TRACEBACK_MARKERS = ("Traceback", "Exception ignored", "Task was destroyed", "never retrieved")


@dataclass(frozen=True)
class Block:
    """One ```` ```python ```` block of the README."""

    line: int  #: line number (1-based) of its opening fence
    section: str  #: the ``##`` heading it is under
    code: str
    checks: tuple[str, ...]  #: the ``<!-- check: ... -->`` lines right after it

    @property
    def fragment_of(self) -> str | None:
        """``examples/<name>.py`` if the block is a fragment of it, else ``None``."""
        first = self.code.splitlines()[0] if self.code else ""
        match = FRAGMENT.fullmatch(first)
        return match.group(1) if match else None

    @property
    def needs_redis(self) -> bool:
        return "RedisStore" in self.code or "redis://" in self.code

    @property
    def ident(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.section.lower()).strip("-")
        return f"line{self.line}-{slug}"


def python_blocks(text: str) -> list[Block]:
    """Every ```` ```python ```` block of ``text``, in order, with its checks."""
    lines = text.splitlines()
    blocks: list[Block] = []
    section = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        if line.strip() == "```python":
            start = i
            i += 1
            code: list[str] = []
            while i < len(lines) and lines[i].strip() != "```":
                code.append(lines[i])
                i += 1
            assert i < len(lines), f"README.md:{start + 1}: unclosed ```python block"
            checks: list[str] = []
            while i + 1 < len(lines) and (match := CHECK.fullmatch(lines[i + 1].strip())):
                checks.append(match.group(1))
                i += 1
            blocks.append(Block(start + 1, section, "\n".join(code) + "\n", tuple(checks)))
        elif line.strip().startswith("```"):  # another language: skip to its end
            i += 1
            while i < len(lines) and not lines[i].strip().startswith("```"):
                i += 1
        i += 1
    return blocks


BLOCKS = python_blocks(README.read_text())


def test_the_readme_has_blocks_of_both_kinds() -> None:
    # The parser finds the blocks: a failure here means the tests below check nothing.
    assert len(BLOCKS) >= 8, [b.ident for b in BLOCKS]
    assert any(b.fragment_of for b in BLOCKS)
    assert any(b.checks and not b.fragment_of for b in BLOCKS)
    assert any(not b.checks and not b.fragment_of for b in BLOCKS)


# -- fragments ------------------------------------------------------------------------


def unmatched_fragment_lines(fragment: str, example: str) -> list[str]:
    """The lines of ``fragment`` (after its marker) not found, in order, in ``example``;
    both are compared stripped, blank lines ignored."""
    wanted = [ln.strip() for ln in fragment.splitlines()[1:] if ln.strip()]
    have = iter(ln.strip() for ln in example.splitlines())
    missing: list[str] = []
    for line in wanted:
        if not any(line == other for other in have):
            missing.append(line)
            have = iter(())  # once one is missing, the order is broken for the rest
    return missing


def test_fragment_matching_sees_order_and_absence() -> None:
    example = "import a\n\nx = 1\ny = 2\n"
    assert unmatched_fragment_lines("# marker\nimport a\n  y = 2\n", example) == []
    assert unmatched_fragment_lines("# marker\ny = 2\nx = 1\n", example) == ["x = 1"]
    assert unmatched_fragment_lines("# marker\nz = 3\n", example) == ["z = 3"]


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.fragment_of], ids=lambda b: b.ident)
def test_fragment_appears_in_its_example(block: Block) -> None:
    name = block.fragment_of
    assert name is not None
    example = ROOT / name
    assert example.is_file(), f"README.md:{block.line}: {name} does not exist"
    assert Path(name).name in TEST_EXAMPLES.read_text(), (
        f"README.md:{block.line}: {name} is not run by tests/test_examples.py"
    )
    assert not block.checks, f"README.md:{block.line}: a fragment is not run: no checks"
    missing = unmatched_fragment_lines(block.code, example.read_text())
    assert not missing, f"README.md:{block.line}: not in {name}, in this order: {missing}"


# -- complete programs ----------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    method: str
    url: str
    expect: str
    body: str | None
    headers: dict[str, str]
    #: Expected response headers: ``(name, value)``, in the order written.
    expect_headers: tuple[tuple[str, str], ...] = ()


def parse_check(text: str) -> Check:
    """A check's words: see the module docstring."""
    words = shlex.split(text)
    headers: dict[str, str] = {}
    expected: list[tuple[str, str]] = []
    rest: list[str] = []
    while words:
        word = words.pop(0)
        if word in ("-H", "-E"):
            if not words:
                raise ValueError(f"not a check: {text!r}: {word} without 'name: value'")
            name, colon, value = words.pop(0).partition(":")
            if not colon or not name.strip():
                raise ValueError(f"not a check: {text!r}: {word} needs 'name: value'")
            if word == "-H":
                headers[name.strip()] = value.strip()
            else:
                expected.append((name.strip(), value.strip()))
        else:
            rest.append(word)
    expect_headers = tuple(expected)
    method = rest[0] if rest else ""
    if method in ("GET", "OPTIONS") and len(rest) == 3:
        if method == "OPTIONS" and not rest[2].isdigit():
            raise ValueError(f"not a check: {text!r}: OPTIONS expects a status")
        return Check(method, rest[1], rest[2], None, headers, expect_headers)
    if method == "POST" and len(rest) == 4:
        try:
            json.loads(rest[2])
        except ValueError as exc:
            raise ValueError(f"not a check: {text!r}: the body is not JSON ({exc})") from exc
        return Check("POST", rest[1], rest[3], rest[2], headers, expect_headers)
    if method == "WS" and len(rest) in (2, 3):
        expect = rest[2] if len(rest) == 3 else "open"
        return Check("WS", rest[1], expect, None, headers, expect_headers)
    raise ValueError(f"not a check: {text!r}")


def assert_headers(check: Check, got: list[tuple[str, str]]) -> None:
    """Every header ``check`` expects is among ``got`` (name case-insensitive, value
    exact after stripping blanks); else fail naming what was expected and what came."""
    for name, value in check.expect_headers:
        values = [v.strip() for n, v in got if n.lower() == name.lower()]
        assert value in values, f"expected response header {name}: {value!r}, got {values}"


def test_checks_parse() -> None:
    check = parse_check("POST http://h/p '{\"a\": 1}' 202 -H 'Authorization: Bearer x'")
    assert check == Check("POST", "http://h/p", "202", '{"a": 1}', {"Authorization": "Bearer x"})
    assert parse_check("WS ws://h/s frame").expect == "frame"
    preflight = parse_check(
        "OPTIONS http://h/p -H 'Origin: http://o' -H 'Access-Control-Request-Method: POST' "
        "204 -E 'Access-Control-Allow-Origin: http://o' -E 'Vary: Origin'"
    )
    assert preflight == Check(
        "OPTIONS",
        "http://h/p",
        "204",
        None,
        {"Origin": "http://o", "Access-Control-Request-Method": "POST"},
        (("Access-Control-Allow-Origin", "http://o"), ("Vary", "Origin")),
    )
    for bad in (
        "GET http://h/",
        "PUT http://h/ 200",
        "POST http://h/ {no 202",
        "OPTIONS http://h/ sse",
        "GET http://h/ 200 -E 'no colon'",
        "GET http://h/ 200 -E",
    ):
        with pytest.raises(ValueError, match="not a check"):
            parse_check(bad)


async def run_check(check: Check) -> None:
    """Make one check against a running program; fail with what was seen."""
    if check.method == "WS":
        async with connect(
            check.url,
            proxy=None,
            open_timeout=NET_TIMEOUT,
            close_timeout=2,
            additional_headers=check.headers,
        ) as ws:
            assert ws.response is not None
            assert_headers(check, list(ws.response.headers.raw_items()))
            if check.expect == "frame":
                async with asyncio.timeout(NET_TIMEOUT):
                    frame = json.loads(await ws.recv())
                assert isinstance(frame, dict), frame
                assert {"data", "id"} <= set(frame), frame
        return
    async with (
        httpx.AsyncClient(timeout=NET_TIMEOUT, trust_env=False) as client,
        client.stream(
            check.method,
            check.url,
            headers={"content-type": "application/json", **check.headers}
            if check.body is not None
            else check.headers,
            content=check.body,
        ) as response,
    ):
        if check.expect in ("sse", "sse-event"):
            assert response.status_code == 200, response.status_code
            content_type = response.headers.get("content-type", "")
            assert content_type.startswith("text/event-stream"), content_type
            assert_headers(check, response.headers.multi_items())
            if check.expect == "sse-event":
                async with asyncio.timeout(NET_TIMEOUT):
                    async for line in response.aiter_lines():
                        if line.startswith("data:"):
                            break
                    else:
                        pytest.fail("the stream ended before an event with data")
        else:
            assert response.status_code == int(check.expect), (
                response.status_code,
                await response.aread(),
            )
            assert_headers(check, response.headers.multi_items())


def prepare(block: Block, redis_url: str | None) -> tuple[str, list[Check], set[int]]:
    """The block's code and checks with free ports (and the test Redis) put in; the
    ports its checks connect to."""
    ports = {"8000": free_port(), "8001": free_port()}

    def swap(text: str) -> str:
        text = PORT.sub(lambda m: str(ports[m.group(1)]), text)
        return text.replace(README_REDIS, redis_url) if redis_url else text

    checks = [parse_check(swap(text)) for text in block.checks]
    used = {httpx.URL(check.url).port for check in checks}
    return swap(block.code), checks, {p for p in used if p is not None}


def delete_streams(redis_url: str, code: str) -> None:
    """Delete the streams (and floor keys) of the channels ``code`` names literally
    (``RedisStore("name", ...)``) from the test Redis."""
    names = re.findall(r"RedisStore\(\s*\"([^\"]+)\"", code)
    client = redis.Redis.from_url(redis_url)
    try:
        for name in names:
            client.delete(name, name + ":floor")
    finally:
        client.close()


def assert_clean_stderr(program: Program, block: Block) -> None:
    err = program.stderr_text()
    for marker in TRACEBACK_MARKERS:
        assert marker not in err, f"README.md:{block.line}: {marker!r}\n{program.describe()}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if not b.fragment_of], ids=lambda b: b.ident)
async def test_complete_block_runs(
    block: Block, tmp_path: Path, start_program: StartProgram, request: pytest.FixtureRequest
) -> None:
    assert not block.code.lstrip().startswith("# Fragment"), (
        f"README.md:{block.line}: a fragment's first line is exactly "
        "'# Fragment of examples/<name>.py'"
    )
    compile(block.code, f"README.md:{block.line}", "exec")  # no top-level await, valid
    redis_url = str(request.getfixturevalue("redis_url")) if block.needs_redis else None
    if redis_url is not None:
        request.addfinalizer(lambda: delete_streams(redis_url, block.code))
    code, checks, ports = prepare(block, redis_url)
    script = tmp_path / "block.py"
    script.write_text(code)
    program = start_program([sys.executable, str(script)])
    loop = asyncio.get_running_loop()

    if not checks:
        returncode = await wait_for_exit(program, loop.time(), RUN_LIMIT)
        assert returncode == 0, f"README.md:{block.line}\n{program.describe()}"
        assert_clean_stderr(program, block)
        return

    for port in sorted(ports):
        await wait_for_port(program, port)
    for check in checks:
        try:
            await run_check(check)
        except (AssertionError, OSError, TimeoutError, httpx.HTTPError) as exc:
            pytest.fail(f"README.md:{block.line}: {check} failed: {exc!r}\n{program.describe()}")
    program.proc.send_signal(signal.SIGINT)
    returncode = await wait_for_exit(program, loop.time(), RUN_LIMIT)
    assert returncode == 0, f"README.md:{block.line}: SIGINT\n{program.describe()}"
    assert_clean_stderr(program, block)


# -- the long description ---------------------------------------------------------------


def sections(text: str) -> dict[str, str]:
    """The text of every ``##`` section (the opening under ``""``), outside code fences
    only for the headings."""
    result: dict[str, list[str]] = {"": []}
    current = ""
    fenced = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            current = line[3:].strip()
            result[current] = []
        result[current].append(line)
    return {name: "\n".join(lines) for name, lines in result.items()}


LINK = re.compile(r"\]\(([^)\s]+)[^)]*\)|<img [^>]*src=\"([^\"]+)\"")


def test_links_and_images_work_on_pypi() -> None:
    # PyPI shows the README without the repository: a relative link or image breaks.
    bad = []
    for number, line in enumerate(README.read_text().splitlines(), 1):
        for match in LINK.finditer(line):
            target = match.group(1) or match.group(2)
            if not target.startswith(("https://", "http://", "#")):
                bad.append(f"README.md:{number}: {target}")
    assert not bad, "relative links or images:\n" + "\n".join(bad)


def test_editable_installs_only_in_the_development_section() -> None:
    parts = sections(README.read_text())
    assert DEVELOPMENT_SECTION in parts
    # The opening's two commands work from a clone (the guide's first-five-minutes rule).
    for name, body in parts.items():
        if name not in (DEVELOPMENT_SECTION, ""):
            assert not re.search(r"pip install[^\n]* -e\b", body), (
                f"section {name!r}: an editable install outside {DEVELOPMENT_SECTION!r}"
            )
    development = parts[DEVELOPMENT_SECTION]
    assert "pip install -q -e '.[dev]'" in development
    assert re.search(r"test suite takes about \d+ minutes", development), (
        "the development section says how long the test suite takes"
    )
    assert re.search(r"pip install '?tornadose\[", parts[""]), "a wheel user's install"
