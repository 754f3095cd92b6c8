"""OpenAI-shaped request bodies and responses, shared by the MLflow deployments API and the
OpenAI-compatible API (they differ only in where the route name comes from and in the error body).

Validation follows OpenAI's reference: temperature 0..2, top_p 0..1, penalties -2..2, `n` ≥ 1 (and
at most the route's cap), `stop` a string or up to 4 strings, `max_tokens` ≥ 1. Fields the gateway
does not support are refused by name rather than silently dropped.
"""

from __future__ import annotations

import base64
import struct
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from providers.base import (
    ChatMessage,
    ChatRequest,
    ChatResponse,
    CommonParams,
    CompletionsRequest,
    CompletionsResponse,
    EmbeddingsRequest,
    EmbeddingsResponse,
    InvalidRequest,
    RouteType,
    StdRequest,
    StdResponse,
    Usage,
)
from providers.streaming import StreamChunk

from .family import reject_redirect_fields
from .mlflow_gateway import check_route_type, validation_message
from .snapshot import RouteEntry
from .streaming import OpenAIStreamRenderer


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str | None = None  # the route name on /v1; accepted and ignored on /endpoints
    user: str | None = None  # OpenAI's end-user id: accepted, not forwarded


class _StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    include_usage: bool = False


class _Sampling(_Body):
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    n: int = Field(default=1, ge=1)
    stop: str | list[str] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    stream: bool = False
    stream_options: _StreamOptions | None = None

    def params(self, route: RouteEntry) -> CommonParams:
        if self.stream_options is not None and not self.stream:
            raise InvalidRequest("stream_options: only allowed with stream: true.")
        if self.n > route.max_candidates:
            raise InvalidRequest(f"n: at most {route.max_candidates} for route '{route.name}' (got {self.n}).")
        stop = [self.stop] if isinstance(self.stop, str) else self.stop
        if stop is not None and not 1 <= len(stop) <= 4:
            raise InvalidRequest("stop: give a string or a list of 1 to 4 strings.")
        return CommonParams(
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            n=self.n,
            stop=stop,
            top_p=self.top_p,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
        )


class _TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    type: Literal["text"]
    text: str


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[_TextPart]
    name: str | None = None

    def standard(self) -> ChatMessage:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return ChatMessage(role="system" if self.role == "developer" else self.role, content=text)


class ChatCompletionBody(_Sampling):
    messages: list[_Message] = Field(min_length=1)


class CompletionBody(_Sampling):
    prompt: str | list[str]


class EmbeddingBody(_Body):
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"  # the openai SDK asks for base64


PRIMARY_FIELD = {RouteType.CHAT: "messages", RouteType.COMPLETIONS: "prompt", RouteType.EMBEDDINGS: "input"}


def parse_openai_body(route: RouteEntry, body: dict[str, Any]) -> StdRequest:
    """An OpenAI-shaped body for `route` → the standard request (InvalidRequest on bad input)."""
    reject_redirect_fields(body)
    check_route_type(route, body, PRIMARY_FIELD)
    try:
        if route.route_type is RouteType.CHAT:
            chat = ChatCompletionBody.model_validate(body)
            return ChatRequest(messages=[m.standard() for m in chat.messages], params=chat.params(route))
        if route.route_type is RouteType.COMPLETIONS:
            comp = CompletionBody.model_validate(body)
            prompts = [comp.prompt] if isinstance(comp.prompt, str) else comp.prompt
            if len(prompts) != 1:
                raise InvalidRequest("prompt: give one prompt (a string or a list of one string).")
            return CompletionsRequest(prompt=prompts[0], params=comp.params(route))
        emb = EmbeddingBody.model_validate(body)
    except ValidationError as exc:
        raise InvalidRequest(validation_message(exc)) from None
    inputs = [emb.input] if isinstance(emb.input, str) else emb.input
    if not inputs or any(not text for text in inputs):
        raise InvalidRequest("input: give a non-empty string or a non-empty list of non-empty strings.")
    return EmbeddingsRequest(inputs=inputs)


def _usage(response: StdResponse) -> dict[str, int]:
    u = response.usage
    usage = {"prompt_tokens": u.input_tokens or 0, "total_tokens": u.total_tokens or 0}
    if not isinstance(response, EmbeddingsResponse):
        usage["completion_tokens"] = u.output_tokens or 0
    return usage


def encode_embedding(vector: list[float], encoding_format: str) -> list[float] | str:
    """OpenAI's `base64` format: the little-endian float32 bytes, base64-encoded."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def render_openai(response: StdResponse, *, model: str, body: dict[str, Any]) -> dict[str, Any]:
    """The standard response in OpenAI's shape, naming `model`; `body` is the validated request."""
    if isinstance(response, EmbeddingsResponse):
        fmt = body.get("encoding_format") or "float"
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": encode_embedding(e, fmt)}
                for i, e in enumerate(response.embeddings)
            ],
            "model": model,
            "usage": _usage(response),
        }
    created = response.created or int(time.time())
    if isinstance(response, ChatResponse):
        return {
            "id": response.id or f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": c.index,
                    "message": {"role": c.message.role, "content": c.message.content},
                    "finish_reason": c.finish_reason,
                }
                for c in response.choices
            ],
            "usage": _usage(response),
        }
    assert isinstance(response, CompletionsResponse)
    return {
        "id": response.id or f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": c.index, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None}
            for c in response.choices
        ],
        "usage": _usage(response),
    }


def render_openai_chunk(chunk: StreamChunk, *, model: str, chat: bool, stream_id: str, created: int) -> dict[str, Any]:
    """One streamed chunk in OpenAI's chunk shape (`chat.completion.chunk` / `text_completion`)."""
    if chat:
        choices = []
        for d in chunk.deltas:
            delta: dict[str, Any] = {}
            if d.role:
                delta["role"] = d.role
            if d.text or d.role:
                delta["content"] = d.text
            choices.append({"index": d.index, "delta": delta, "finish_reason": d.finish_reason})
        obj = "chat.completion.chunk"
    else:
        choices = [
            {"index": d.index, "text": d.text, "finish_reason": d.finish_reason, "logprobs": None}
            for d in chunk.deltas
        ]
        obj = "text_completion"
    return {"id": stream_id, "object": obj, "created": created, "model": model, "choices": choices}


def render_openai_usage_chunk(usage: Usage, *, model: str, chat: bool, stream_id: str, created: int) -> dict[str, Any]:
    """The final chunk OpenAI sends when `stream_options.include_usage` is set: no choices, the usage."""
    return {
        "id": stream_id,
        "object": "chat.completion.chunk" if chat else "text_completion",
        "created": created,
        "model": model,
        "choices": [],
        "usage": {
            "prompt_tokens": usage.input_tokens or 0,
            "completion_tokens": usage.output_tokens or 0,
            "total_tokens": usage.total_tokens or 0,
        },
    }


def openai_stream_renderer(route: RouteEntry, body: dict[str, Any], *, model: str) -> OpenAIStreamRenderer | None:
    """For a parsed OpenAI-shaped body: a renderer when it asks for `stream: true`."""
    if body.get("stream") is not True:
        return None
    if route.route_type is RouteType.EMBEDDINGS:
        raise InvalidRequest("Embeddings do not stream.")
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    return OpenAIStreamRenderer(model=model, chat=route.route_type is RouteType.CHAT, include_usage=include_usage)
