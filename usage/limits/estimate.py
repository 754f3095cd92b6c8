"""What a call reserves before the upstream is called: an upper bound of the tokens it can use.

Output: `n × max_tokens` (the request's, else the cap the pipeline sends upstream). Input: for the
built-in mock provider its own exact count; for every vendor the UTF-8 byte count of the text plus a
per-message allowance. Byte-level BPE tokenizers (OpenAI, Anthropic, Cohere) never make more tokens
than bytes, so this is a bound, not a guess: a reservation covers the real usage, and a counter never
passes its cap while calls are in flight. It over-reserves input about four times for English text;
the surplus returns when the call is reconciled to the usage the vendor reports.
"""

from __future__ import annotations

from providers.base import ChatRequest, CompletionsRequest, StdRequest
from providers.mock import count_tokens

PER_MESSAGE_TOKENS = 4  # role and separators of one chat message
PER_REQUEST_TOKENS = 3  # the reply's priming


def input_tokens_bound(request: StdRequest, provider: str) -> int:
    if provider == "mock":
        if isinstance(request, ChatRequest):
            return sum(count_tokens(m.content) for m in request.messages)
        if isinstance(request, CompletionsRequest):
            return count_tokens(request.prompt)
        return sum(count_tokens(t) for t in request.inputs)
    if isinstance(request, ChatRequest):
        return PER_REQUEST_TOKENS + sum(
            len(m.content.encode()) + len(m.role) + PER_MESSAGE_TOKENS for m in request.messages
        )
    if isinstance(request, CompletionsRequest):
        return PER_REQUEST_TOKENS + len(request.prompt.encode())
    return sum(len(t.encode()) + 1 for t in request.inputs)


def output_tokens_bound(request: StdRequest) -> int:
    """`n × max_tokens`; 0 for embeddings. Call after the cap is applied (`apply_output_cap`)."""
    if isinstance(request, ChatRequest | CompletionsRequest):
        return max(request.params.n, 1) * (request.params.max_tokens or 0)
    return 0


def apply_output_cap(request: StdRequest, cap: int | None) -> None:
    """Set `max_tokens` to `cap` on a chat or completions request that sets none (sent upstream)."""
    if cap is not None and isinstance(request, ChatRequest | CompletionsRequest) and request.params.max_tokens is None:
        request.params.max_tokens = cap
