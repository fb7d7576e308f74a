"""Cross-origin pages in a real browser: Debian's Chromium, headless (see test_browser.py).

Pages are served from one loopback port, channels from others (another port is
another origin), on Tornado and on uvicorn. Two declarations:

* ``open``: ``cors_origins=[page]``, no credentials: the page subscribes with a plain
  ``EventSource`` and publishes with a preflighted JSON ``fetch`` without cookies;
  with credentials the browser refuses (no ``Access-Control-Allow-Credentials``);
* ``trusted``: ``cors_origins=[page], cors_credentials=True``, an authorize hook that
  wants the session cookie: ``EventSource(url, {withCredentials: true})`` and
  ``fetch(..., {credentials: "include"})`` carry it; without it the page reads the
  ``401``.

A page from an origin not listed gets nothing: its ``EventSource`` fails, its
preflight is refused so the ``POST`` is never sent (nothing is published), and
httpx sees the same answers without the grant.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
import tornado.web
from playwright.async_api import Browser, Page

from tests.clients import TIMEOUT
from tests.conftest import TornadoStarter, UvicornStarter
from tests.test_browser import WAIT_MS, browser, chromium  # noqa: F401 (fixtures)
from tornadose.adapters.asgi import ChannelsApp
from tornadose.adapters.tornado import channel_handlers
from tornadose.http.auth import Action, Unauthorized
from tornadose.http.channels import Channels

ADAPTERS = ["tornado", "uvicorn"]
SESSION = "session=s3cret"


class PageHandler(tornado.web.RequestHandler):
    """An empty page: the test runs its script in it with ``page.evaluate``."""

    def get(self) -> None:
        self.write("<!doctype html><meta charset=utf-8><title>cross-origin page</title>")


def needs_session(headers: Mapping[str, str], channel: str, action: Action) -> bool:
    """The ``trusted`` channels' hook: the session cookie, else ``401``."""
    if SESSION not in headers.get("cookie", ""):
        raise Unauthorized("no session cookie")
    return True


#: Subscribe (EventSource), then publish (fetch, JSON: preflighted), then wait for
#: the message to arrive over the stream; everything the page could see.
ROUND_TRIP = """
async ({events, publish, credentials, text}) => {
  const source = new EventSource(events, {withCredentials: credentials});
  try {
    const opened = await new Promise((resolve) => {
      source.onopen = () => resolve(true);
      source.onerror = () => resolve(false);
    });
    const result = {opened, readyState: source.readyState};
    const arrived = new Promise((resolve) => {
      source.onmessage = (event) => resolve({id: event.lastEventId, data: JSON.parse(event.data)});
    });
    try {
      const response = await fetch(publish, {
        method: "POST",
        headers: {"Content-Type": "application/json"},
        body: JSON.stringify({text}),
        credentials: credentials ? "include" : "omit",
      });
      result.posted = {status: response.status, body: await response.json()};
    } catch (error) {
      result.posted = {error: String(error)};
    }
    if (opened) {
      result.received = await Promise.race([
        arrived, new Promise((resolve) => setTimeout(() => resolve(null), 5000)),
      ]);
    }
    return result;
  } finally {
    source.close();
  }
}
"""


class Setup:
    """The two declarations, served on Tornado and uvicorn, and two page origins."""

    def __init__(self, page: str, other_page: str) -> None:
        self.page, self.other_page = page, other_page
        self.open = Channels(prefix="/open", cors_origins=[page])
        self.trusted = Channels(
            prefix="/trusted", cors_origins=[page], cors_credentials=True, authorize=needs_session
        )
        for channels in (self.open, self.trusted):
            channels.add("chat")
        self.bases: dict[str, str] = {}

    def urls(self, adapter: str, channels: Channels) -> dict[str, str]:
        base = self.bases[adapter] + channels.prefix + "/chat"
        return {"events": base + "/events", "publish": base + "/publish"}


@pytest.fixture
async def setup(
    tornado_server: TornadoStarter, uvicorn_server: UvicornStarter
) -> AsyncIterator[Setup]:
    page = await tornado_server([(r"/", PageHandler)])
    other_page = await tornado_server([(r"/", PageHandler)])
    served = Setup(page, other_page)
    handlers = channel_handlers(served.open) + channel_handlers(served.trusted)
    served.bases["tornado"] = await tornado_server(handlers)
    apps = {"/open": ChannelsApp(served.open), "/trusted": ChannelsApp(served.trusted)}

    async def by_prefix(scope: Any, receive: Any, send: Any) -> None:
        await apps["/" + scope["path"].split("/")[1]](scope, receive, send)

    served.bases["uvicorn"] = await uvicorn_server(by_prefix)
    yield served
    for channels in (served.open, served.trusted):
        await channels.aclose()


@pytest.fixture
async def page_at(browser: Browser, setup: Setup) -> AsyncIterator[Any]:  # noqa: F811
    """``page = await page_at(origin)``: a page loaded from ``origin``, in a browser
    context holding the session cookie of the loopback host (cookies ignore ports,
    so it goes to every server here when a request includes credentials)."""
    context = await browser.new_context()
    context.set_default_timeout(WAIT_MS)
    await context.add_cookies(
        [{"name": "session", "value": "s3cret", "url": setup.page, "sameSite": "Lax"}]
    )

    async def open_page(origin: str) -> Page:
        page = await context.new_page()
        await page.goto(origin + "/")
        return page

    yield open_page
    await context.close()


async def round_trip(page: Page, urls: dict[str, str], *, credentials: bool, text: str) -> Any:
    return await page.evaluate(ROUND_TRIP, {**urls, "credentials": credentials, "text": text})


@pytest.mark.timeout(90)
@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_an_allowed_page_subscribes_and_publishes(
    setup: Setup, page_at: Any, adapter: str
) -> None:
    page = await page_at(setup.page)
    for channels, credentials in ((setup.open, False), (setup.trusted, True)):
        text = f"{adapter} {channels.prefix} credentials={credentials}"
        result = await round_trip(
            page, setup.urls(adapter, channels), credentials=credentials, text=text
        )
        assert result["opened"], result
        assert result["posted"]["status"] == 202, result
        message_id = result["posted"]["body"]["id"]
        # The message published from the page reached the page's own stream.
        assert result["received"] == {"id": message_id, "data": {"text": text}}, result


@pytest.mark.timeout(90)
@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_credentials_only_where_declared(setup: Setup, page_at: Any, adapter: str) -> None:
    page = await page_at(setup.page)
    # ``open`` grants no credentials: the browser refuses both the stream and the
    # preflight of a request that includes them.
    result = await round_trip(
        page, setup.urls(adapter, setup.open), credentials=True, text="with cookies"
    )
    assert not result["opened"], result
    assert result["readyState"] == 2  # CLOSED: a CORS failure is not retried
    assert "Failed to fetch" in result["posted"]["error"], result
    assert len(setup.open["chat"].store.history) == 0
    # ``trusted`` without the cookie: the stream fails (401), and the page reads why.
    result = await round_trip(
        page, setup.urls(adapter, setup.trusted), credentials=False, text="no cookie"
    )
    assert not result["opened"], result
    assert result["posted"]["status"] == 401, result
    assert result["posted"]["body"]["error"] == "unauthorized"
    assert len(setup.trusted["chat"].store.history) == 0


@pytest.mark.timeout(90)
@pytest.mark.parametrize("adapter", ADAPTERS)
async def test_a_page_from_another_origin_gets_nothing(
    setup: Setup, page_at: Any, adapter: str
) -> None:
    page = await page_at(setup.other_page)
    for channels, credentials in ((setup.open, False), (setup.trusted, True)):
        urls = setup.urls(adapter, channels)
        result = await round_trip(page, urls, credentials=credentials, text="refused")
        assert not result["opened"], result
        assert "Failed to fetch" in result["posted"]["error"], result
        assert len(channels["chat"].store.history) == 0  # the POST was never sent
        # Server side: the same requests, as the browser made them, get no grant.
        async with httpx.AsyncClient(timeout=TIMEOUT, trust_env=False) as http:
            preflight = await http.options(
                urls["publish"],
                headers={
                    "Origin": setup.other_page,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type",
                },
            )
            assert preflight.status_code == 403
            assert preflight.json()["error"] == "cors_refused"
            origin = {"Origin": setup.other_page, "Cookie": SESSION}
            async with http.stream("GET", urls["events"], headers=origin) as stream:
                assert stream.status_code == 200
                assert "access-control-allow-origin" not in stream.headers
                assert stream.headers["vary"] == "Origin"
