"""Serving a streamed answer: Server-Sent Events in OpenAI's chunk shape, forwarded as the vendor
sends them, ending with `data: [DONE]`.

The upstream stream is opened before the response starts, so a failure before the first chunk is a
plain error response with its status. After that: a vendor error ends the stream with an error event
in the family's shape; a client that goes away closes the upstream at once. Either way the call is
recorded once, with the vendor's final usage or, failing that, tokens counted from what was sent.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from providers.base import ChatRequest, CompletionsRequest, GatewayError, StdRequest, Usage
from providers.streaming import StreamChunk
from providers.tokens import count_chat_tokens, count_text_tokens

DONE = b"data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


@dataclass(slots=True)
class StreamTally:
    """What went to the client: text per choice, the vendor's usage, when the first piece left."""

    request: StdRequest
    started: float
    texts: dict[int, list[str]] = field(default_factory=dict)
    vendor_usage: Usage | None = None
    first_chunk_at: float | None = None

    def add(self, chunk: StreamChunk) -> None:
        if self.first_chunk_at is None:
            self.first_chunk_at = time.perf_counter()
        for delta in chunk.deltas:
            if delta.text:
                self.texts.setdefault(delta.index, []).append(delta.text)
        if chunk.usage is not None:
            self.vendor_usage = chunk.usage

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_chunk_at is None else (self.first_chunk_at - self.started) * 1000.0

    def usage(self) -> Usage:
        """The vendor's own count when it sent one; else counted with tiktoken and marked estimated."""
        if self.vendor_usage is not None and self.vendor_usage.input_tokens is not None:
            return self.vendor_usage
        if isinstance(self.request, ChatRequest):
            prompt = count_chat_tokens(self.request.messages)
        else:
            assert isinstance(self.request, CompletionsRequest)
            prompt = count_text_tokens(self.request.prompt)
        output = sum(count_text_tokens("".join(parts)) for parts in self.texts.values())
        return Usage(input_tokens=prompt, output_tokens=output, estimated=True)


@dataclass(slots=True)
class OpenAIStreamRenderer:
    """Renders chunks for the two OpenAI-shaped families (MLflow deployments and /v1)."""

    model: str
    chat: bool
    include_usage: bool
    stream_id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def chunk(self, chunk: StreamChunk) -> bytes | None:
        from .openai_shapes import render_openai_chunk

        if not chunk.deltas:
            return None  # a usage-only chunk: the usage goes out at the end if the client asked
        return sse(render_openai_chunk(chunk, model=self.model, chat=self.chat, stream_id=self.stream_id,
                                       created=self.created))

    def end(self, usage: Usage) -> bytes:
        from .openai_shapes import render_openai_usage_chunk

        if not self.include_usage:
            return DONE
        final = render_openai_usage_chunk(usage, model=self.model, chat=self.chat, stream_id=self.stream_id,
                                          created=self.created)
        return sse(final) + DONE


async def stream_body(
    first: StreamChunk | None,
    rest: AsyncIterator[StreamChunk],
    *,
    tally: StreamTally,
    renderer: OpenAIStreamRenderer,
    error_body: Callable[[GatewayError], dict[str, Any]],
    on_end: Callable[[StreamTally, GatewayError | None, bool], None],
) -> AsyncIterator[bytes]:
    """The response body. `on_end(tally, error, abandoned)` runs exactly once, however it ends."""
    error: GatewayError | None = None
    finished = False
    try:
        if first is not None:
            tally.add(first)
            if (data := renderer.chunk(first)) is not None:
                yield data
        try:
            async for chunk in rest:
                tally.add(chunk)
                if (data := renderer.chunk(chunk)) is not None:
                    yield data
        except GatewayError as exc:
            error = exc
            yield sse(error_body(exc))
        else:
            yield renderer.end(tally.usage())
        finished = True
    finally:
        # Not finished: the client went away (the server cancelled us). Close the vendor's stream now.
        await rest.aclose()  # type: ignore[attr-defined]
        on_end(tally, error, not finished)
