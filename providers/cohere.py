"""Cohere, over its v2 API: `POST /v2/chat` for chat and completions, `POST /v2/embed` for embeddings.

Config keys (`cohere_api_key` is MLflow's, `CohereConfig`; the others are ours):

- `cohere_api_key` (secret, required): sent as `Authorization: Bearer KEY`.
- `cohere_api_base`: the server root, default `https://api.cohere.com`; the adapter appends
  `/v2/chat` and `/v2/embed`, so a proxy (or the test fake) is given without `/v1` or `/v2`.
- `cohere_embed_input_type`: the Embed API's required `input_type` for embeddings routes:
  `search_document` (default), `search_query`, `classification` or `clustering`.

Mapping (after Cohere's API reference, `cohere-openapi.yaml` in cohere-ai/cohere-developer-experience):

- Chat: `messages` pass through with their roles (v2 takes `system`, `user`, `assistant`).
  Completions: the prompt goes to the chat API as one user message (Cohere's `/v1/generate`,
  which MLflow used, is gone).
- Temperature: the standard request carries OpenAI's 0..2; v2 chat documents `temperature` as
  0..1 (minimum 0, maximum 1, default 0.3), so the factor is 0.5 and OpenAI's full range maps onto
  Cohere's. An MLflow 2.5 route call's 0..1 temperature (doubled to the standard scale by the
  serving layer) therefore reaches Cohere unchanged. MLflow's factors, 5 (2.5, on a 0..1 scale) and
  2.5 (later, on 0..2), targeted the generate API's 0..5 and would overshoot v2's maximum.
- `max_tokens` as is; `stop` → `stop_sequences`; `top_p` → `p`, clamped into Cohere's documented
  0.01..0.99 (OpenAI's default `top_p=1` means "no nucleus cut", which 0.99 approximates best);
  `presence_penalty` / `frequency_penalty` as is, but Cohere's range is 0..1 where OpenAI's is
  -2..2: values outside 0..1 are refused (400) rather than silently changed. `n` > 1 is refused:
  v2 chat answers one candidate.
- Chat answer: the `text` items of `message.content` joined; `finish_reason` COMPLETE and
  STOP_SEQUENCE → `stop`, MAX_TOKENS and TIMEOUT (cut off by Cohere's time limit) → `length`,
  TOOL_CALL → `tool_calls`; ERROR ("the generation failed due to an internal error") is raised as a
  502 UPSTREAM_ERROR instead of passing a broken answer off as a success. Usage: `usage.tokens`
  (what the model processed) when present, else `usage.billed_units`.
- Embeddings: `{model, texts, input_type, embedding_types: ["float"]}` → `embeddings.float`; usage
  from `meta.tokens`, else `meta.billed_units` (input tokens only).
- Streaming (chat and completions): the same `/v2/chat` body with `stream: true` answers Server-Sent
  Events typed by their `type` field (and `event:` name): `message-start` (the id), `content-start` /
  `content-delta` / `content-end` per content item (`delta.message.content.text` is the text; items of
  another type, such as `thinking`, are left out), `tool-plan-delta`, `tool-call-*`, `citation-*` and
  `debug` (no text), and `message-end` with `delta.finish_reason` and `delta.usage` (read as for a plain
  answer). A `message-end` with finish reason ERROR, or an event carrying only a `message` (Cohere's
  error shape), raises UpstreamError.
- Errors: Cohere answers `{"id": ..., "message": ...}`. 400/404/413/422/498 (a deny-listed token in
  the request or answer) → 400 UPSTREAM_BAD_REQUEST with the vendor's message; 401/403 → 502
  UPSTREAM_AUTH_FAILED with a fixed message; 429 → 502 UPSTREAM_RATE_LIMITED (with Retry-After if
  sent); anything else → 502 UPSTREAM_ERROR. Vendor messages are always redacted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

import orjson

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
    GatewayError,
    InvalidRequest,
    Provider,
    ProviderConfigError,
    RouteType,
    Secrets,
    StdRequest,
    StdResponse,
    Target,
    UpstreamError,
    UpstreamRequest,
    UpstreamResponse,
    Usage,
)
from providers.common import (
    BAD_REQUEST_STATUSES,
    as_mapping,
    load_json,
    map_vendor_error,
    mid_stream_error,
    optional_str,
    prompt_as_chat,
)
from providers.streaming import ChoiceDelta, ChunkParser, SSEEvent, StreamChunk, StreamParser

DEFAULT_API_BASE = "https://api.cohere.com"
CHAT_PATH = "/v2/chat"
EMBED_PATH = "/v2/embed"
DEFAULT_EMBED_INPUT_TYPE = "search_document"
# `image` is an Embed input type too, but this gateway only embeds text.
EMBED_INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")
TEMPERATURE_SCALE = 0.5  # OpenAI 0..2 → Cohere v2 chat 0..1
P_MIN, P_MAX = 0.01, 0.99
PENALTY_MIN, PENALTY_MAX = 0.0, 1.0
FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TIMEOUT": "length",
    "TOOL_CALL": "tool_calls",
}
# 498: a deny-listed token in the request or the answer.
_BAD_REQUEST_STATUSES = BAD_REQUEST_STATUSES | {498}


@dataclass(frozen=True, slots=True)
class CohereSettings:
    """The non-secret part of a route's config, with defaults applied."""

    api_base: str = DEFAULT_API_BASE
    embed_input_type: str = DEFAULT_EMBED_INPUT_TYPE

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> CohereSettings:
        base = str(config.get("cohere_api_base") or "").strip().rstrip("/") or DEFAULT_API_BASE
        input_type = str(config.get("cohere_embed_input_type") or "").strip() or DEFAULT_EMBED_INPUT_TYPE
        return cls(api_base=base, embed_input_type=input_type)


# ---------------------------------------------------------------- request mapping (pure)


def params_to_vendor(params: CommonParams) -> dict[str, Any]:
    """CommonParams → v2 chat body fields; None values are left out.

    Raises InvalidRequest (400) for what Cohere cannot express: `n` > 1, penalties outside 0..1,
    temperature outside OpenAI's 0..2, `top_p` outside 0..1.
    """
    if params.n != 1:
        raise InvalidRequest(f"Provider 'cohere' returns one candidate per call; n must be 1 (got {params.n}).")
    body: dict[str, Any] = {}
    if params.temperature is not None:
        if not 0.0 <= params.temperature <= 2.0:
            raise InvalidRequest(f"temperature must be between 0 and 2 (got {params.temperature}).")
        body["temperature"] = params.temperature * CohereProvider.temperature_scale
    if params.top_p is not None:
        if not 0.0 <= params.top_p <= 1.0:
            raise InvalidRequest(f"top_p must be between 0 and 1 (got {params.top_p}).")
        body["p"] = min(max(params.top_p, P_MIN), P_MAX)
    for name, value in (
        ("presence_penalty", params.presence_penalty),
        ("frequency_penalty", params.frequency_penalty),
    ):
        if value is None:
            continue
        if not PENALTY_MIN <= value <= PENALTY_MAX:
            raise InvalidRequest(
                f"{name} must be between 0 and 1 for provider 'cohere' (got {value}); "
                "Cohere has no negative penalties."
            )
        body[name] = value
    if params.max_tokens is not None:
        body["max_tokens"] = params.max_tokens
    if params.stop:
        body["stop_sequences"] = list(params.stop)
    return body


def chat_to_vendor(request: ChatRequest, *, model: str) -> dict[str, Any]:
    """The v2 chat body for a chat request."""
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    return {"model": model, "messages": messages, **params_to_vendor(request.params)}


def completions_to_vendor(request: CompletionsRequest, *, model: str) -> dict[str, Any]:
    """The v2 chat body for a completions request: the prompt as one user message."""
    return chat_to_vendor(prompt_as_chat(request), model=model)


def embeddings_to_vendor(request: EmbeddingsRequest, *, model: str, input_type: str) -> dict[str, Any]:
    """The v2 embed body; `input_type` and `embedding_types` are always sent."""
    return {
        "model": model,
        "texts": list(request.inputs),
        "input_type": input_type,
        "embedding_types": ["float"],
    }


def build_upstream_request(
    settings: CohereSettings, *, model: str, api_key: str, request: StdRequest
) -> UpstreamRequest:
    """The HTTP request for `request` against `settings.api_base`."""
    body: dict[str, Any]
    if isinstance(request, ChatRequest):
        path, body = CHAT_PATH, chat_to_vendor(request, model=model)
    elif isinstance(request, CompletionsRequest):
        path, body = CHAT_PATH, completions_to_vendor(request, model=model)
    else:
        path = EMBED_PATH
        body = embeddings_to_vendor(request, model=model, input_type=settings.embed_input_type)
    headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
    return UpstreamRequest(method="POST", url=f"{settings.api_base}{path}", headers=headers, json=body)


# ---------------------------------------------------------------- response parsing (pure)


def usage_from_vendor(usage: Any, *, embeddings: bool = False) -> Usage:
    """Cohere's `usage` (chat) or `meta` (embed) → Usage: `tokens` counts first, `billed_units` else.

    All None when neither is there.
    """
    if not isinstance(usage, Mapping):
        return Usage()
    tokens, billed = as_mapping(usage.get("tokens")), as_mapping(usage.get("billed_units"))
    input_tokens = _first_int(tokens.get("input_tokens"), billed.get("input_tokens"))
    output_tokens = _first_int(tokens.get("output_tokens"), billed.get("output_tokens"))
    if embeddings and output_tokens is None and input_tokens is not None:
        output_tokens = 0
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens)


def finish_reason_from_vendor(reason: Any) -> str | None:
    """Cohere's finish_reason → OpenAI's; unknown values are passed on lower-cased.

    Raises UpstreamError for ERROR: Cohere says the generation failed.
    """
    if reason is None:
        return None
    reason = str(reason).upper()
    if reason == "ERROR":
        raise UpstreamError("The upstream provider reported an error while generating the answer.")
    return FINISH_REASONS.get(reason, reason.lower())


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a v2 assistant message: its `text` content items joined (thinking items left out)."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(
        str(item.get("text") or "")
        for item in content
        if isinstance(item, Mapping) and item.get("type", "text") == "text"
    )


def chat_from_vendor(data: Mapping[str, Any], *, model: str) -> ChatResponse:
    """A v2 chat answer → ChatResponse (one choice). KeyError/TypeError if it is not one."""
    message = data["message"]
    if not isinstance(message, Mapping):
        raise TypeError("message is not an object")
    choice = ChatChoice(
        index=0,
        message=ChatMessage(role="assistant", content=message_text(message)),
        finish_reason=finish_reason_from_vendor(data.get("finish_reason")),
    )
    return ChatResponse(
        model=model,
        choices=[choice],
        usage=usage_from_vendor(data.get("usage")),
        id=optional_str(data.get("id")),
    )


def completions_from_vendor(data: Mapping[str, Any], *, model: str) -> CompletionsResponse:
    """A v2 chat answer to a completions request → CompletionsResponse (one choice)."""
    chat = chat_from_vendor(data, model=model)
    choice = chat.choices[0]
    return CompletionsResponse(
        model=model,
        choices=[CompletionChoice(index=0, text=choice.message.content, finish_reason=choice.finish_reason)],
        usage=chat.usage,
        id=chat.id,
    )


def embeddings_from_vendor(data: Mapping[str, Any], *, model: str, expected: int) -> EmbeddingsResponse:
    """A v2 embed answer → EmbeddingsResponse; ValueError unless it holds `expected` float vectors."""
    embeddings = data["embeddings"]
    # v2 answers by type ({"float": [...]}); v1's `embeddings_floats` shape is a bare list.
    vectors = embeddings["float"] if isinstance(embeddings, Mapping) else embeddings
    if not isinstance(vectors, list) or len(vectors) != expected:
        raise ValueError(f"expected {expected} float embeddings")
    return EmbeddingsResponse(
        model=model,
        embeddings=[[float(x) for x in vector] for vector in vectors],
        usage=usage_from_vendor(data.get("meta"), embeddings=True),
    )


def from_vendor_body(request: StdRequest, data: Any, *, model: str) -> StdResponse:
    """The vendor's decoded JSON answer → the standard response for `request`."""
    if not isinstance(data, Mapping):
        raise TypeError("response body is not a JSON object")
    if isinstance(request, ChatRequest):
        return chat_from_vendor(data, model=model)
    if isinstance(request, CompletionsRequest):
        return completions_from_vendor(data, model=model)
    return embeddings_from_vendor(data, model=model, expected=len(request.inputs))


# ---------------------------------------------------------------- errors (pure)


def error_from_vendor(response: UpstreamResponse, secrets: Secrets) -> GatewayError:
    """A Cohere error answer → the GatewayError callers see (never with a credential in it)."""
    return map_vendor_error(response, secrets, bad_request_statuses=_BAD_REQUEST_STATUSES)


# ---------------------------------------------------------------- the stream (pure)


class CohereStreamParser(ChunkParser):
    """v2 chat's event stream → standard chunks: a role chunk at `message-start`, the text of every
    text `content-delta`, and at `message-end` the finish reason with the final usage."""

    def __init__(self, *, model: str, secrets: Secrets) -> None:
        super().__init__()
        self._model = model
        self._id: str | None = None
        self._secrets = secrets
        self._content_types: dict[int, str] = {}

    def _chunk(self, delta: ChoiceDelta, usage: Usage | None = None) -> StreamChunk:
        return StreamChunk(deltas=[delta], usage=usage, model=self._model, id=self._id)

    def _failed(self, text: str) -> UpstreamError:
        return mid_stream_error(text, self._secrets)

    def event_chunk(self, event: SSEEvent) -> StreamChunk | None:
        if event.data.strip() == "[DONE]":
            return None
        payload = orjson.loads(event.data)
        if not isinstance(payload, Mapping):
            raise TypeError("stream event is not a JSON object")
        kind = payload.get("type") or (event.event if event.event != "message" else None)
        if kind is None:
            if isinstance(payload.get("message"), str):  # Cohere's error body, sent as an event
                raise self._failed(payload["message"])
            return None
        delta = as_mapping(payload.get("delta"))
        content = as_mapping(as_mapping(delta.get("message")).get("content"))
        index = int(payload.get("index") or 0)
        if kind == "message-start":
            self._id = optional_str(payload.get("id"))
            return self._chunk(ChoiceDelta(index=0, role="assistant"))
        if kind == "content-start":
            self._content_types[index] = str(content.get("type") or "text")
            text = str(content.get("text") or "") if self._content_types[index] == "text" else ""
            return self._chunk(ChoiceDelta(index=0, text=text)) if text else None
        if kind == "content-delta":
            if self._content_types.get(index, "text") != "text" or not content.get("text"):
                return None
            return self._chunk(ChoiceDelta(index=0, text=str(content["text"])))
        if kind == "message-end":
            reason = delta.get("finish_reason")
            if str(reason).upper() == "ERROR":
                raise self._failed(str(delta.get("error") or "the generation failed"))
            usage = usage_from_vendor(delta.get("usage")) if isinstance(delta.get("usage"), Mapping) else None
            return self._chunk(ChoiceDelta(index=0, finish_reason=finish_reason_from_vendor(reason)), usage=usage)
        return None  # content-end, tool-plan-delta, tool-call-*, citation-*, debug


# ---------------------------------------------------------------- the provider


class CohereProvider(Provider):
    name: ClassVar[str] = "cohere"
    route_types: ClassVar[frozenset[RouteType]] = frozenset(RouteType)
    secret_fields: ClassVar[tuple[str, ...]] = ("cohere_api_key",)
    config_fields: ClassVar[tuple[str, ...]] = ("cohere_api_base", "cohere_embed_input_type")
    required_fields: ClassVar[tuple[str, ...]] = ("cohere_api_key",)
    temperature_scale: ClassVar[float] = TEMPERATURE_SCALE

    def validate_config(
        self, *, route_type: RouteType, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        super().validate_config(route_type=route_type, config=config, secrets=secrets)
        settings = CohereSettings.from_config(config)
        parts = urlsplit(settings.api_base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProviderConfigError("cohere_api_base must be an http:// or https:// URL.")
        if parts.path.rstrip("/").endswith(("/v1", "/v2")):
            raise ProviderConfigError(
                "cohere_api_base is the server root (e.g. https://api.cohere.com), without /v1 or /v2: "
                "the gateway adds /v2/chat and /v2/embed."
            )
        if settings.embed_input_type not in EMBED_INPUT_TYPES:
            raise ProviderConfigError(
                f"Invalid cohere_embed_input_type '{settings.embed_input_type}' "
                f"(use one of: {', '.join(EMBED_INPUT_TYPES)})."
            )

    def build_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        key = (target.secrets.get("cohere_api_key") or "").strip()
        return build_upstream_request(
            CohereSettings.from_config(target.config), model=target.model, api_key=key, request=request
        )

    def parse_response(self, target: Target, request: StdRequest, response: UpstreamResponse) -> StdResponse:
        return from_vendor_body(request, load_json(response.body), model=target.model)

    def map_error(self, target: Target, response: UpstreamResponse) -> GatewayError:
        return error_from_vendor(response, target.secrets)

    supports_streaming: ClassVar[bool] = True

    def build_stream_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        plain = self.build_request(target, request)
        headers = {**plain.headers, "Accept": "text/event-stream"}
        return UpstreamRequest(method=plain.method, url=plain.url, headers=headers, json={**plain.json, "stream": True})

    def stream_parser(self, target: Target, request: StdRequest) -> StreamParser:
        return CohereStreamParser(model=target.model, secrets=target.secrets)


def _first_int(*values: Any) -> int | None:
    """The first value that is a number (Cohere's schema says `number`), as an int."""
    for value in values:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
    return None
