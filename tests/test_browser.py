"""The demo page in a real browser: Debian's Chromium, headless, driven by Playwright.

``tornadose demo --redis`` runs as a real program; the page is opened from both of its
servers and checked as a user sees it (the DOM) and through ``window.demo`` (the
page's state). Then the demo process is killed and started again: each page's
``EventSource`` must reconnect by itself, resume with ``Last-Event-ID`` and go on
with every reading, none missing and none twice, as the Redis stream holds them.

Needs ``/usr/bin/chromium`` (``apt-get install chromium``; Playwright never downloads
a browser here) and the shared Redis: both skip locally when missing, and fail under
``CI=true``. Screenshots go to ``artifacts/screenshots/`` at the repository's root.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect
from playwright.async_api import Error as PlaywrightError

from tests.programs import StartProgram, wait_for_exit
from tests.test_cli import EXIT_DEADLINE, delete_keys, start_demo, stream_ids

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "artifacts" / "screenshots"
#: Milliseconds any single browser wait may take.
WAIT_MS = 15_000
#: Readings missed on purpose while the demo is down (published straight into Redis).
MISSED = 3


@pytest.fixture
def chromium() -> Path:
    """Debian's Chromium; skips when missing, except under ``CI=true`` (fails)."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {reason}: the browser test must run in CI")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    """A headless Chromium, closed when the test ends."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True, timeout=30_000
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A Redis key prefix of the test's own; the demo's streams are deleted afterwards."""
    prefix = f"test-browser-{uuid.uuid4().hex[:10]}:"
    yield prefix
    keys = [prefix + name + suffix for name in ("sensor", "chat") for suffix in ("", ":floor")]
    delete_keys(redis_url, *keys)


class PageProblems:
    """What must not happen on a page: uncaught errors, Content Security Policy refusals."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def watch(self, name: str, page: Page) -> None:
        def on_error(error: PlaywrightError) -> None:
            self.seen.append(f"{name}: uncaught {error}")

        def on_console(message: ConsoleMessage) -> None:
            if "Content Security Policy" in message.text:
                self.seen.append(f"{name}: {message.text}")

        page.on("pageerror", on_error)
        page.on("console", on_console)


async def state(page: Page, expression: str) -> Any:
    """The value of a JavaScript expression about ``window.demo``."""
    return await page.evaluate(f"() => {expression}")


async def screenshot(page: Page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


async def publish_from_form(page: Page, user: str, text: str) -> None:
    await page.fill("#chat-user", user)
    await page.fill("#chat-text", text)
    await page.click("#chat-publish")


async def assert_chat_message_everywhere(
    pages: dict[str, Page], message_id: str, text: str
) -> None:
    """Every page shows the message in the WebSocket log of both servers."""
    for page in pages.values():
        for server in ("tornado", "uvicorn"):
            await expect(page.locator(f"#ws-log-{server}")).to_contain_text(text)
            await expect(page.locator(f"#ws-log-{server}")).to_contain_text(message_id)
            received = await state(page, f"window.demo.ws.{server}.messages.map((m) => m.id)")
            assert received.count(message_id) == 1, (server, received)


def publish_while_down(redis_url: str, key: str, count: int) -> list[str]:
    """Publish readings straight into the stream, as another program may (``XADD``)."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        return [
            str(client.xadd(key, {"data": json.dumps({"seq": -n, "value": 0.0})}))
            for n in range(1, count + 1)
        ]
    finally:
        client.close()


@pytest.mark.timeout(120)
async def test_demo_page_in_a_browser_resumes_across_a_restart(
    start_program: StartProgram, redis_url: str, redis_prefix: str, browser: Browser
) -> None:
    options = ("--redis", redis_url, "--prefix", redis_prefix)
    demo = await start_demo(start_program, *options)
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    problems = PageProblems()
    pages: dict[str, Page] = {}
    for server, base in demo.bases.items():
        page = await context.new_page()
        problems.watch(server, page)
        page.on("websocket", lambda socket: requested.append(socket.url))
        await page.goto(base + "/")
        pages[server] = page

    # The plot: sensor readings arrive over SSE from the page's own server.
    for server, page in pages.items():
        await expect(page.locator("#server-name")).to_contain_text(
            {"tornado": "Tornado", "uvicorn": "uvicorn"}[server]
        )
        await page.wait_for_function("() => window.demo.sse.ids.length >= 5")
        await expect(page.locator("#sse-state")).to_have_text("open")
        ids = await state(page, "window.demo.sse.ids")
        assert all(ids), ids
        assert int(await page.inner_text("#sse-count")) >= 5
        # The status shows the last id: a Redis stream id ("<ms>-<n>").
        assert re.fullmatch(r"\d+-\d+", (await page.inner_text("#sse-last-id")).strip())
        # The WebSockets to both servers are open (one of them cross-origin).
        for name in ("tornado", "uvicorn"):
            await expect(page.locator(f"#ws-state-{name}")).to_have_text("open")

    # A valid message, from the form of the Tornado page: 202 and its id, then it
    # arrives over both servers' WebSockets, on both pages.
    text = f"hello from Chromium {uuid.uuid4().hex[:6]}"
    await publish_from_form(pages["tornado"], "ann", text)
    result = pages["tornado"].locator("#publish-result")
    await expect(result).to_contain_text("202 Accepted")
    answer = await state(pages["tornado"], "window.demo.lastPublish")
    assert answer["status"] == 202, answer
    message_id = answer["body"]["id"]
    await expect(result).to_contain_text(message_id)
    await assert_chat_message_everywhere(pages, message_id, text)

    # An invalid message, from the uvicorn page: 422 and what is wrong, field by field.
    await publish_from_form(pages["uvicorn"], "", "x" * 281)
    result = pages["uvicorn"].locator("#publish-result")
    await expect(result).to_contain_text("422 validation_error")
    await expect(result.locator("li[data-field='user']")).to_have_text(
        "user: String should have at least 1 character"
    )
    await expect(result.locator("li[data-field='text']")).to_have_text(
        "text: String should have at most 280 characters"
    )
    for field in ("user", "text"):
        await expect(pages["uvicorn"].locator(f"#chat-{field}")).to_have_attribute(
            "aria-invalid", "true"
        )
    assert (await state(pages["uvicorn"], "window.demo.lastPublish.status")) == 422

    for server, page in pages.items():
        await screenshot(page, f"demo-{server}-before-restart")

    # Kill the demo (no goodbye, as a crash); readings are published while it is down.
    demo.program.proc.kill()
    demo.program.proc.wait(timeout=10)
    for page in pages.values():
        await page.wait_for_function("() => window.demo.sse.state === 'reconnecting'")
        await expect(page.locator("#sse-state")).to_have_text("reconnecting")
    missed = publish_while_down(redis_url, redis_prefix + "sensor", MISSED)

    again = await start_demo(start_program, *options, port=demo.port)
    for page in pages.values():
        # The browser reconnects by itself, with Last-Event-ID, and readings go on.
        await page.wait_for_function(
            f"() => window.demo.sse.resumed.length === 1 && "
            f"window.demo.sse.count >= window.demo.sse.resumed[0].at + {MISSED + 5}",
            timeout=30_000,
        )
        await expect(page.locator("#sse-resumed")).to_have_text("1")
        await expect(page.locator("#sse-resets")).to_have_text("0")
        await expect(page.locator("#control-log")).to_contain_text("EventSource resumed after")

    for server, page in pages.items():
        received: list[str] = await state(page, "window.demo.sse.ids")
        (resumed,) = await state(page, "window.demo.sse.resumed")
        # It resumed right after the last reading it had before the restart...
        assert resumed["after"] == received[resumed["at"] - 1], (resumed, received)
        assert resumed["replayed"] >= MISSED, resumed
        # ...got the readings published while it was away...
        assert all(received.count(missed_id) == 1 for missed_id in missed), (missed, received)
        # ...and every reading of the stream from its first on, once each, in order.
        stored = stream_ids(redis_url, redis_prefix + "sensor", received[0])
        assert received == stored[: len(received)], (server, received, stored)
        assert await state(page, "window.demo.sse.resets.length") == 0

    # The WebSockets reconnected too: a message from the uvicorn page reaches all logs.
    for page in pages.values():
        await page.wait_for_function(
            "() => ['tornado', 'uvicorn'].every("
            "(s) => window.demo.ws[s].state === 'open' && window.demo.ws[s].opens >= 2)"
        )
    text = f"after the restart {uuid.uuid4().hex[:6]}"
    await publish_from_form(pages["uvicorn"], "bob", text)
    await expect(pages["uvicorn"].locator("#publish-result")).to_contain_text("202 Accepted")
    message_id = (await state(pages["uvicorn"], "window.demo.lastPublish"))["body"]["id"]
    await assert_chat_message_everywhere(pages, message_id, text)

    for server, page in pages.items():
        await screenshot(page, f"demo-{server}-after-restart")

    # Self-contained: the pages talked to the demo's two servers and nothing else.
    own = tuple(
        base.replace("http", scheme, 1) for base in demo.bases.values() for scheme in ("http", "ws")
    )
    assert requested, "no request seen"
    assert all(url.startswith(own) for url in requested), sorted(set(requested) - set(own))
    assert not problems.seen, problems.seen

    # The demo stops cleanly even with a browser connected to both servers.
    again.program.proc.send_signal(signal.SIGTERM)
    returncode = await wait_for_exit(
        again.program, asyncio.get_running_loop().time(), EXIT_DEADLINE
    )
    assert returncode == 0, again.program.describe()
    await context.close()
