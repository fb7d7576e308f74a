"""A cross-origin page through the FastAPI router, in headless Chromium (see
test_cors_browser.py for the same on Tornado and a mounted ``ChannelsApp``).

The page is served by Tornado on one loopback port; FastAPI serves
``channels_router(channels, dependencies=[Depends(token)])`` on another (another
origin), with ``Channels(cors_origins=[page])``. The dependency wants a token
(``Authorization: Bearer``, or ``?token=`` where ``EventSource`` can send no
header). The page subscribes with ``EventSource`` and publishes with a JSON
``fetch`` carrying ``Authorization``, which Chromium preflights without it: the
router's ``OPTIONS`` route must grant that preflight by the core's rule (FastAPI
alone answers ``405``, the dependency ``401``), then the page reads the ``202`` and
the message over its own stream. A page from an origin not listed gets nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Header, HTTPException, Query
from playwright.async_api import Browser

from tests.conftest import TornadoStarter, UvicornStarter
from tests.test_browser import WAIT_MS, browser, chromium  # noqa: F401 (fixtures)
from tests.test_cors_browser import PageHandler
from tornadose.adapters.fastapi import channels_router
from tornadose.http.channels import Channels

TOKEN = "letmein"


def token(
    authorization: Annotated[str | None, Header()] = None,
    token: Annotated[str | None, Query()] = None,
) -> str:
    """The router's dependency: the token in ``Authorization`` or ``?token=``."""
    if authorization != f"Bearer {TOKEN}" and token != TOKEN:
        raise HTTPException(401, "log in")
    return "alice"


#: Subscribe, publish (JSON with Authorization: preflighted), read the message back.
ROUND_TRIP = """
async ({events, publish, token, text}) => {
  const source = new EventSource(events);
  try {
    const opened = await new Promise((resolve) => {
      source.onopen = () => resolve(true);
      source.onerror = () => resolve(false);
    });
    const result = {opened};
    const arrived = new Promise((resolve) => {
      source.onmessage = (event) => resolve({id: event.lastEventId, data: JSON.parse(event.data)});
    });
    try {
      const response = await fetch(publish, {
        method: "POST",
        headers: {"Content-Type": "application/json", "Authorization": `Bearer ${token}`},
        body: JSON.stringify({text}),
      });
      result.posted = {status: response.status, body: await response.json()};
    } catch (error) {
      result.posted = {error: String(error)};
    }
    try {
      const schema = await fetch(events.replace(/events.*$/, "schema.json?token=" + token));
      result.schema = schema.status;
    } catch (error) {
      result.schema = String(error);
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


@dataclass
class Served:
    page: str
    other_page: str
    base: str
    channels: Channels


@pytest.fixture
async def served(
    tornado_server: TornadoStarter, uvicorn_server: UvicornStarter
) -> AsyncIterator[Served]:
    page = await tornado_server([(r"/", PageHandler)])
    other_page = await tornado_server([(r"/", PageHandler)])
    channels = Channels(prefix="/api", cors_origins=[page])
    channels.add("chat")
    app = FastAPI()
    app.include_router(channels_router(channels, dependencies=[Depends(token)]), prefix="/live")
    base = await uvicorn_server(app)
    yield Served(page, other_page, base + "/live/api/chat", channels)
    await channels.aclose()


async def round_trip(browser: Browser, origin: str, served: Served, text: str) -> Any:  # noqa: F811
    context = await browser.new_context()
    try:
        context.set_default_timeout(WAIT_MS)
        page = await context.new_page()
        await page.goto(origin + "/")
        urls = {
            "events": f"{served.base}/events?token={TOKEN}",
            "publish": f"{served.base}/publish",
        }
        return await page.evaluate(ROUND_TRIP, {**urls, "token": TOKEN, "text": text})
    finally:
        await context.close()


@pytest.mark.timeout(90)
async def test_a_page_subscribes_and_publishes_through_the_router(
    browser: Browser,  # noqa: F811
    served: Served,
) -> None:
    result = await round_trip(browser, served.page, served, "from the page")
    assert result["opened"], result
    assert result["posted"]["status"] == 202, result
    message_id = result["posted"]["body"]["id"]
    assert result["received"] == {"id": message_id, "data": {"text": "from the page"}}, result
    assert result["schema"] == 200, result
    # A page from an origin not listed: the preflight is refused, nothing is sent.
    result = await round_trip(browser, served.other_page, served, "refused")
    assert not result["opened"], result
    assert "Failed to fetch" in result["posted"]["error"], result
    assert "Failed to fetch" in result["schema"], result
    assert len(served.channels["chat"].store.history) == 1
