"""Checks shared by the TGI, AI21, MosaicML, Anthropic-stream and Cohere-stream tests."""

from __future__ import annotations

import traceback

from providers.base import ChatChoice, GatewayError, Provider, StdRequest, StdResponse, Target
from providers.client import UpstreamClient, execute_stream
from providers.streaming import StreamChunk


def every_rendering(error: BaseException) -> str:
    """Everything a caller or a log line could see of `error`: str, repr, args, notes, traceback."""
    parts = [
        str(error),
        repr(error),
        *map(str, error.args),
        *map(repr, error.args),
        *getattr(error, "__notes__", []),
        "".join(traceback.format_exception(error)),
    ]
    if isinstance(error, GatewayError):
        parts.append(error.message)
    return "\n".join(parts)


def leaked_fragments(error: BaseException, secret: str) -> list[str]:
    """Every 4-character piece of `secret` that shows up in any rendering of `error`."""
    rendered = every_rendering(error)
    return sorted({secret[i : i + 4] for i in range(len(secret) - 3)} & {
        rendered[i : i + 4] for i in range(len(rendered) - 3)
    })


async def collect(provider: Provider, target: Target, request: StdRequest, client: UpstreamClient,
                  **kwargs: float) -> list[StreamChunk]:
    """The whole stream of `request`, chunk by chunk."""
    return [chunk async for chunk in execute_stream(provider, target, request, client=client, **kwargs)]


def joined(chunks: list[StreamChunk], index: int = 0) -> str:
    """The text of choice `index` across `chunks`."""
    return "".join(d.text for c in chunks for d in c.deltas if d.index == index)


def finish_reasons(chunks: list[StreamChunk]) -> list[str]:
    return [d.finish_reason for c in chunks for d in c.deltas if d.finish_reason]


def text_chunks(chunks: list[StreamChunk]) -> int:
    return len([c for c in chunks if any(d.text for d in c.deltas)])


def answer_text(response: StdResponse) -> str:
    """The text of a chat or completions response's first choice."""
    choice = response.choices[0]  # type: ignore[union-attr]
    return choice.message.content if isinstance(choice, ChatChoice) else str(choice.text)
