"""Fault modes a fake upstream can play instead of (or before) a normal answer.

A fault is chosen per request, first from the queue (`FakeUpstream.add_fault(spec)`, or
`POST /__fake__/faults {"fault": spec, "times": n}` from another process), else from a magic model
name `fault-<spec>` (the `model` field for OpenAI, the deployment name for Azure). Specs:

| spec              | what the client sees                                                  |
|-------------------|-----------------------------------------------------------------------|
| `sleep-<seconds>` | the normal answer, after that delay (for timeouts)                    |
| `<status>`        | that HTTP status with the vendor's error body, e.g. `500`, `503`      |
| `429[-<seconds>]` | 429 with `Retry-After: <seconds>` (default 1) and the vendor's body   |
| `garbage`         | 200 with a non-JSON (HTML) body                                        |
| `incomplete`      | 200 with a JSON object that lacks the answer's required fields        |
| `close`           | the connection closed after the request, without any response         |
| `close-mid`       | status and headers, part of the body, then the connection closed     |
| `bad-http`        | bytes that are not HTTP, then the connection closed                   |
| `stream-slow-<s>` | a streamed answer with `<s>` seconds before each chunk (first included)|
| `stream-error`    | a streamed answer that sends one chunk, then the vendor's error event |
| `stream-cut`      | a streamed answer that sends one chunk, then closes the connection    |

Stream faults apply to requests with `stream: true` and are a no-op otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

MAGIC_PREFIX = "fault-"

# Builds the vendor's error answer: (status, message, extra headers) → response.
ErrorResponder = Callable[[int, str, dict[str, str]], web.Response]


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str  # "sleep" | "status" | "garbage" | "incomplete" | "close" | "close-mid" | "bad-http"
    seconds: float = 0.0
    status: int = 0

    @classmethod
    def parse(cls, spec: str) -> Fault:
        if spec.startswith("stream-slow-"):
            return cls("stream-slow", seconds=float(spec.removeprefix("stream-slow-")))
        if spec in ("stream-error", "stream-cut"):
            return cls(spec)
        head, _, arg = spec.partition("-")
        if head == "sleep":
            return cls("sleep", seconds=float(arg))
        if head.isdigit():
            status = int(head)
            seconds = float(arg) if arg else (1.0 if status == 429 else 0.0)
            return cls("status", status=status, seconds=seconds)
        if spec in ("garbage", "incomplete", "close", "close-mid", "bad-http"):
            return cls(spec)
        raise ValueError(f"unknown fault spec {spec!r}")


# Where play() leaves a stream fault for the vendor's stream writer.
STREAM_FAULT = web.RequestKey("stream_fault", Fault)


def choose_fault(queued: str | None, name: object) -> Fault | None:
    """The fault for this request: the queued spec if any, else the magic model/deployment name's."""
    if queued is not None:
        return Fault.parse(queued)
    if isinstance(name, str) and name.startswith(MAGIC_PREFIX):
        return Fault.parse(name[len(MAGIC_PREFIX) :])
    return None


async def play(fault: Fault, request: web.Request, error: ErrorResponder) -> web.StreamResponse | None:
    """Play `fault`. None means: carry on with the normal answer (after a sleep)."""
    if fault.kind.startswith("stream-"):
        request[STREAM_FAULT] = fault  # played by the vendor's stream writer
        return None
    if fault.kind == "sleep":
        await asyncio.sleep(fault.seconds)
        return None
    if fault.kind == "status":
        headers = {"Retry-After": f"{fault.seconds:g}"} if fault.status == 429 else {}
        return error(fault.status, _STATUS_MESSAGES.get(fault.status, "The server had an error."), headers)
    if fault.kind == "garbage":
        html = "<html><body>502 Bad Gateway</body></html>"
        return web.Response(status=200, text=html, content_type="text/html")
    if fault.kind == "incomplete":
        return web.json_response({"id": "incomplete-1", "object": "unknown"})
    transport = request.transport
    assert transport is not None
    if fault.kind == "close-mid":
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.content_length = 4096
        await response.prepare(request)
        await response.write(b'{"id": "chatcmpl-partial", "object": "chat.completion", "choi')
    elif fault.kind == "bad-http":
        transport.write(b"SPEAKING-NOT-HTTP \x00\x01\x02\r\n\r\n")
    request.protocol.force_close()
    transport.close()
    # The response aiohttp will try to write goes nowhere: the transport is closed.
    return web.Response(status=500)


_STATUS_MESSAGES = {
    400: "Invalid request (fake fault 400).",
    401: "Invalid authentication (fake fault 401).",
    403: "You are not allowed to sample from this model (fake fault 403).",
    404: "The model does not exist or you do not have access to it (fake fault 404).",
    429: "Rate limit reached for requests. Please try again in 1s.",
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
}
