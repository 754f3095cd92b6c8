"""The built-in `mock` provider: answers every route type locally, deterministically, for free.

For demos, tests and benchmarks of the gateway itself. Config (all optional, no secrets):

- `reply`: a fixed answer text; default `This is a mock answer to: <last user message>` for chat
  and `This is a mock completion of: <prompt>` for completions.
- `dimensions`: embedding vector length, 1..4096, default 16.

Tokens are counted by the regex `\\w+|[^\\w\\s]` (a word, or one punctuation character), so
"Hello, world!" is 4 tokens. Usage counts the prompt (the sum over all message contents for
chat) and the output (summed over all `n` candidates, which are identical). Params honoured:
`stop` (the answer is cut before the first stop sequence, finish_reason "stop"), then `max_tokens`
(the answer is cut after that many tokens, finish_reason "length"); temperature and the others
change nothing. Embeddings are unit-norm vectors derived from SHA-256 of each input.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from providers.base import (
    ChatChoice,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    CommonParams,
    CompletionChoice,
    CompletionsRequest,
    CompletionsResponse,
    EmbeddingsRequest,
    EmbeddingsResponse,
    Provider,
    ProviderConfigError,
    RouteType,
    StdRequest,
    StdResponse,
    Target,
    Usage,
)
from providers.streaming import ChoiceDelta, StreamChunk

TOKEN_PATTERN = re.compile(r"\w+|[^\w\s]")
DEFAULT_DIMENSIONS = 16
MAX_DIMENSIONS = 4096


def count_tokens(text: str) -> int:
    """Tokens in `text` by the mock's tokenizer (`TOKEN_PATTERN`)."""
    return len(TOKEN_PATTERN.findall(text))


def truncate_tokens(text: str, max_tokens: int) -> str:
    """`text` up to the end of its `max_tokens`-th token (original spacing kept)."""
    if max_tokens <= 0:
        return ""
    for i, match in enumerate(TOKEN_PATTERN.finditer(text), start=1):
        if i == max_tokens:
            return text[: match.end()]
    return text


def generate(text: str, params: CommonParams) -> tuple[str, str]:
    """Apply `stop` then `max_tokens` to a full answer: (output text, finish_reason)."""
    cut = min((i for i in (text.find(s) for s in params.stop or [] if s) if i >= 0), default=-1)
    if cut >= 0:
        text = text[:cut]
    if params.max_tokens is not None and count_tokens(text) > params.max_tokens:
        return truncate_tokens(text, params.max_tokens), "length"
    return text, "stop"


def embed(text: str, dimensions: int) -> list[float]:
    """A deterministic unit-norm vector for `text` (same input, same vector, in every process)."""
    raw = bytearray()
    block = 0
    while len(raw) < dimensions * 4:
        raw += hashlib.sha256(f"{block}:{text}".encode()).digest()
        block += 1
    values = [(n / 2**31) - 1.0 for n in struct.unpack(f">{dimensions}I", bytes(raw[: dimensions * 4]))]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def _answer_id(prefix: str, *parts: str) -> str:
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]
    return f"{prefix}-mock-{digest}"


class MockProvider(Provider):
    name: ClassVar[str] = "mock"
    route_types: ClassVar[frozenset[RouteType]] = frozenset(RouteType)
    config_fields: ClassVar[tuple[str, ...]] = ("reply", "dimensions")
    needs_network: ClassVar[bool] = False

    def validate_config(
        self, *, route_type: RouteType, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        super().validate_config(route_type=route_type, config=config, secrets=secrets)
        reply = config.get("reply")
        if reply is not None and not isinstance(reply, str):
            raise ProviderConfigError("Mock config 'reply' must be a string.")
        if "dimensions" in config:
            _dimensions(config)

    def answer_locally(self, target: Target, request: StdRequest) -> StdResponse:
        """The deterministic answer described in the module docstring."""
        if isinstance(request, ChatRequest):
            return self._chat(target, request)
        if isinstance(request, CompletionsRequest):
            return self._completions(target, request)
        return self._embeddings(target, request)

    supports_streaming: ClassVar[bool] = True

    def stream_locally(self, target: Target, request: StdRequest) -> list[StreamChunk]:
        """The same answer as `answer_locally`, a word (with its trailing space) per chunk."""
        answer = self.answer_locally(target, request)
        if isinstance(answer, EmbeddingsResponse):
            raise ProviderConfigError("Embeddings do not stream.")
        texts = [c.message.content if isinstance(c, ChatChoice) else c.text for c in answer.choices]
        role = "assistant" if isinstance(answer, ChatResponse) else None
        chunks = [StreamChunk(deltas=[ChoiceDelta(index=i, role=role) for i in range(len(texts))],
                              model=answer.model, id=answer.id)]
        pieces = [re.findall(r"\s*\S+\s*|\s+", text) for text in texts]
        for step in range(max((len(p) for p in pieces), default=0)):
            deltas = [ChoiceDelta(index=i, text=p[step]) for i, p in enumerate(pieces) if step < len(p)]
            chunks.append(StreamChunk(deltas=deltas, model=answer.model, id=answer.id))
        finish = [ChoiceDelta(index=c.index, finish_reason=c.finish_reason) for c in answer.choices]
        chunks.append(StreamChunk(deltas=finish, model=answer.model, id=answer.id))
        chunks.append(StreamChunk(usage=answer.usage, model=answer.model, id=answer.id))
        return chunks

    def _chat(self, target: Target, request: ChatRequest) -> ChatResponse:
        last_user = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        full = _reply(target) or f"This is a mock answer to: {last_user}"
        text, finish = generate(full, request.params)
        n = max(request.params.n, 1)
        prompt_tokens = sum(count_tokens(m.content) for m in request.messages)
        return ChatResponse(
            model=target.model,
            choices=[
                ChatChoice(index=i, message=ChatMessage(role="assistant", content=text), finish_reason=finish)
                for i in range(n)
            ],
            usage=Usage(input_tokens=prompt_tokens, output_tokens=n * count_tokens(text)),
            id=_answer_id("chatcmpl", target.model, *(f"{m.role}:{m.content}" for m in request.messages)),
            created=int(time.time()),
        )

    def _completions(self, target: Target, request: CompletionsRequest) -> CompletionsResponse:
        full = _reply(target) or f"This is a mock completion of: {request.prompt}"
        text, finish = generate(full, request.params)
        n = max(request.params.n, 1)
        return CompletionsResponse(
            model=target.model,
            choices=[CompletionChoice(index=i, text=text, finish_reason=finish) for i in range(n)],
            usage=Usage(input_tokens=count_tokens(request.prompt), output_tokens=n * count_tokens(text)),
            id=_answer_id("cmpl", target.model, request.prompt),
            created=int(time.time()),
        )

    def _embeddings(self, target: Target, request: EmbeddingsRequest) -> EmbeddingsResponse:
        dimensions = _dimensions(target.config)
        return EmbeddingsResponse(
            model=target.model,
            embeddings=[embed(text, dimensions) for text in request.inputs],
            usage=Usage(input_tokens=sum(count_tokens(t) for t in request.inputs), output_tokens=0),
        )


def _reply(target: Target) -> str | None:
    reply = target.config.get("reply")
    return reply if isinstance(reply, str) and reply else None


def _dimensions(config: Mapping[str, Any]) -> int:
    value = config.get("dimensions", DEFAULT_DIMENSIONS)
    if value is None:
        return DEFAULT_DIMENSIONS
    try:
        dimensions = int(value)
    except (TypeError, ValueError):
        dimensions = 0
    exact = not isinstance(value, bool) and str(dimensions) == str(value).strip()
    if not exact or not 1 <= dimensions <= MAX_DIMENSIONS:
        raise ProviderConfigError(f"Mock config 'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}.")
    return dimensions
