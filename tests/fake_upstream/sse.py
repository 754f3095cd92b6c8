"""Server-Sent Events for the fake vendors' streams, with the shared stream faults played on the way.

Each vendor module builds its frames in its own framing (`sse_frame` for `event:`/`data:` pairs) and
hands them to `write_stream`, which sends them one by one and plays the request's stream fault:
`stream-slow-<s>` sleeps before every frame, `stream-error` sends the vendor's error frame after the
first text frame, `stream-cut` closes the connection there.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from aiohttp import web

from tests.fake_upstream.faults import STREAM_FAULT


def sse_frame(data: Any, event: str | None = None) -> bytes:
    """One SSE event: an optional `event:` line and the JSON (or a literal string) as `data:`."""
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


async def write_stream(
    request: web.Request,
    frames: list[bytes],
    *,
    first_text: int,
    error_frame: bytes,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """Send `frames` as a `text/event-stream` answer; the fault strikes after frame `first_text`."""
    fault = request.get(STREAM_FAULT)
    delay = fault.seconds if fault is not None and fault.kind == "stream-slow" else 0.0
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **(headers or {})}
    )
    await response.prepare(request)
    for index, frame in enumerate(frames):
        if delay:
            await asyncio.sleep(delay)
        await response.write(frame)
        if index == first_text and fault is not None and fault.kind == "stream-error":
            await response.write(error_frame)
            await response.write_eof()
            return response
        if index == first_text and fault is not None and fault.kind == "stream-cut":
            assert request.transport is not None
            request.transport.close()
            return response
    await response.write_eof()
    return response


def words(text: str) -> list[str]:
    """`text` in streamable pieces (a word with its surrounding spaces), joined back they are `text`."""
    return re.findall(r"\s*\S+\s*|\s+", text)


__all__ = ["sse_frame", "words", "write_stream"]
