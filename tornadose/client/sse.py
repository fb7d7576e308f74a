"""The SSE transport of :mod:`tornadose.client`: one ``GET`` answered with an event
stream (httpx), read chunk by chunk into the SSE parser of
:mod:`tornadose.wire.sse_parser`.

The ``Last-Event-ID`` header carries the id to resume after. ``200`` with
``text/event-stream`` opens the stream, ``204`` says it is over, 5xx/408/425/429 are
worth another attempt, any other answer raises
:class:`~tornadose.client.ClientError`. A read cancelled by its caller loses
nothing: the chunk being read is kept for the next read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from tornadose.client import backoff
from tornadose.client.connection import (
    MAX_ERROR_BODY,
    Ended,
    Incoming,
    Retryable,
    being_cancelled,
    describe,
)
from tornadose.client.events import ClientError
from tornadose.wire.sse_parser import DEFAULT_EVENT, SSEParser

if TYPE_CHECKING:
    import httpx

__all__ = ["SSEConnection"]

logger = logging.getLogger("tornadose.client")


class SSEConnection:
    """One SSE response, read chunk by chunk into an :class:`SSEParser`."""

    def __init__(self, response: httpx.Response, last_event_id: str | None) -> None:
        self.response = response
        self.parser = SSEParser(last_event_id=last_event_id)
        self.retry: int | None = None
        self._chunks = response.aiter_bytes()
        # The read in progress: it survives a cancelled read(), for the next one.
        self._next: asyncio.Future[bytes] | None = None
        self._closed = False

    @classmethod
    async def open(
        cls,
        http: httpx.AsyncClient,
        url: str,
        headers: Mapping[str, str],
        last_event_id: str | None,
        timeout: float,
    ) -> SSEConnection | None:
        """Ask ``url`` for the stream; ``None`` if the server says it is over (204).
        Raises :class:`Retryable` or :class:`ClientError`."""
        import httpx

        request = http.build_request("GET", url, headers=_sse_headers(headers, last_event_id))
        try:
            async with asyncio.timeout(timeout):
                response = await http.send(request, stream=True)
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            raise Retryable(describe(exc)) from exc
        try:
            status = response.status_code
            if status == 200 and _is_event_stream(response.headers.get("content-type", "")):
                return cls(response, last_event_id)
            if status == 204:
                logger.info("%s answered 204: the stream is over", url)
                await response.aclose()
                return None
            try:
                async with asyncio.timeout(timeout):
                    raw = await _error_body(response.aiter_bytes())
            except (httpx.HTTPError, OSError, TimeoutError):
                raw = b""
            await response.aclose()
        except BaseException:
            await response.aclose()
            raise
        body = raw.decode(response.encoding or "utf-8", errors="replace")
        if status == 200:
            content_type = response.headers.get("content-type", "none")
            raise ClientError(status, body, url, f"is not an event stream ({content_type})")
        error = ClientError(status, body, url)
        if backoff.retried(status):
            raise Retryable(f"answered {status}", error)
        raise error

    async def read(self) -> list[Incoming]:
        """The events of the next chunk (maybe none); :class:`Ended` at the end."""
        import httpx

        if self._next is None:
            self._next = asyncio.ensure_future(self._read_chunk())
        try:
            chunk = await asyncio.shield(self._next)
        except asyncio.CancelledError:
            if self._closed and not being_cancelled():  # aclose() from another task
                raise Ended("the stream was closed") from None
            raise
        except StopAsyncIteration:
            self._next = None
            raise Ended("the server ended the stream") from None
        except (httpx.HTTPError, OSError) as exc:
            self._next = None
            raise Ended(f"the stream broke ({describe(exc)})", error=exc) from exc
        self._next = None
        if self._closed:
            raise Ended("the stream was closed")
        events = self.parser.feed(chunk)
        self.retry = self.parser.retry
        return [
            Incoming(None if e.event == DEFAULT_EVENT else e.event, e.id, e.data) for e in events
        ]

    async def _read_chunk(self) -> bytes:
        return await anext(self._chunks)

    async def aclose(self) -> None:
        """Close the response, ending a read in progress."""
        self._closed = True
        self.parser.close()
        if self._next is not None:
            self._next.cancel()
            with contextlib.suppress(BaseException):
                await self._next
            self._next = None
        await self.response.aclose()


async def _error_body(chunks: AsyncIterator[bytes], limit: int = MAX_ERROR_BODY) -> bytes:
    body = b""
    async for chunk in chunks:
        body += chunk
        if len(body) >= limit:
            break
    return body[:limit]


def _sse_headers(headers: Mapping[str, str], last_event_id: str | None) -> dict[str, Any]:
    sent: dict[str, Any] = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    sent.update(headers)
    if last_event_id is not None:
        sent["Last-Event-ID"] = last_event_id.encode("utf-8")
    return sent


def _is_event_stream(content_type: str) -> bool:
    return content_type.partition(";")[0].strip().lower() == "text/event-stream"
