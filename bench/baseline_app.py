"""The floor of the benchmark: a raw ASGI app that forwards each POST to the fake upstream with one pooled
aiohttp session and returns the upstream's answer. No framework, no auth, no validation, no usage.

It measures what this machine gives a Python proxy on one core (the first row of DESIGN.md's table), so
results from different machines can be compared through it. Served by bench/run.py as
`uvicorn baseline_app:app --app-dir bench`, with BENCH_UPSTREAM_URL set to the upstream's chat URL.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp

UPSTREAM_URL = os.environ.get("BENCH_UPSTREAM_URL", "http://127.0.0.1:9/v1/chat/completions")
UPSTREAM_HEADERS = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}
_session: aiohttp.ClientSession | None = None


async def _lifespan(receive: Any, send: Any) -> None:
    global _session
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            _session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if _session is not None:
                await _session.close()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    assert scope["type"] == "http" and _session is not None
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["method"] != "POST":
        status, answer = 200, b'{"status":"OK"}'
    else:
        async with _session.post(UPSTREAM_URL, data=body, headers=UPSTREAM_HEADERS) as resp:
            status, answer = resp.status, await resp.read()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]})
    await send({"type": "http.response.body", "body": answer})
