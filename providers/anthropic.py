"""Anthropic's Messages API (`POST {base}/v1/messages`), for chat and completions routes.

Config keys (MLflow's `AnthropicConfig` for the first two, ours after them):

- `anthropic_api_key` (secret, required): sent as `x-api-key`.
- `anthropic_version`: the `anthropic-version` header; default `2023-06-01`, as MLflow's.
- `anthropic_api_base`: the server root, as Anthropic's SDKs take it (`ANTHROPIC_BASE_URL`); default
  `https://api.anthropic.com`, set it for a proxy or the fake upstream. The adapter appends
  `/v1/messages`, so a base that already ends in `/v1` is refused rather than doubled.
- `anthropic_default_max_tokens`: the `max_tokens` sent when a request sets none (Anthropic requires
  the field); default 1024. A request's own `max_tokens` always wins.

There are no embeddings: Anthropic has no embeddings API, so an embeddings route is refused when it
is created.

Mapping decisions (the standard request is OpenAI-shaped, the Messages API is not):

- Completions: the prompt goes as one user message; the answer comes back as text.
- System messages, wherever they are, are lifted out of `messages` and joined with newlines into the
  top-level `system` (as MLflow does); the Messages API has no system role.
- Consecutive messages with the same role (two user turns once the system message between them is
  lifted, say) are merged into one, contents joined by a blank line. Anthropic's current API merges
  them itself, but older API versions and Anthropic-compatible proxies answer 400 "roles must
  alternate", so the adapter sends alternating turns either way.
- The first non-system message must be a user message, and there must be one: otherwise the call is
  refused with 400 before any upstream call, rather than inventing a user turn the caller didn't
  write. A final assistant message is sent as is (Anthropic continues it: "prefill").
- `temperature` is carried on OpenAI's 0..2 scale and halved to Anthropic's 0..1 (as MLflow does);
  `top_p` passes through; `stop` becomes `stop_sequences`.
- `n` > 1 is refused with 400: a Messages call returns one candidate. Non-zero presence/frequency
  penalties are refused with 400 (Anthropic has neither, and silently ignoring them would change
  what the caller asked for); a zero penalty, which many OpenAI clients send by default, is a no-op
  and is dropped.
- The answer's `text` content blocks are concatenated into the assistant message (`tool_use` and
  other blocks carry no text). `stop_reason` maps to OpenAI's finish reasons: `end_turn` and
  `stop_sequence` → `stop`, `max_tokens` and `model_context_window_exceeded` → `length`,
  `tool_use` → `tool_calls`, `refusal` → `content_filter`; any other value passes through unchanged.
- Usage: `input_tokens` plus any `cache_creation_input_tokens` and `cache_read_input_tokens` (the
  gateway never asks for prompt caching, so these are normally absent; when present they are input
  the caller was billed for), and `output_tokens`.

Streaming (chat and completions): the same body with `stream: true`; Anthropic answers Server-Sent
Events named by type: `message_start` (the message's id, model and `usage.input_tokens`),
`content_block_start`, `content_block_delta` (`text_delta` pieces are the text; `input_json_delta`,
`thinking_delta` and other deltas carry none), `content_block_stop`, `message_delta` (`stop_reason` and
the cumulative `usage.output_tokens`), `message_stop`, and `ping` at any time. The final usage is
`message_start`'s counts updated with `message_delta`'s, so every stream is recorded with Anthropic's
own numbers. An `error` event (`{"type": "error", "error": {"type", "message"}}`, e.g. `overloaded_error`)
raises UpstreamError; event types the parser does not know are skipped, as Anthropic's versioning
policy asks.

Errors (`{"type": "error", "error": {"type", "message"}, "request_id"}`) map as OpenAI's do: 400,
404, 413, 422 → 400 `UPSTREAM_BAD_REQUEST` with the vendor's message; 401/403 → 502
`UPSTREAM_AUTH_FAILED` with a fixed message; 429 → 502 `UPSTREAM_RATE_LIMITED` with the vendor's
`retry-after`; 529 (overloaded) and every other status → 502 `UPSTREAM_ERROR` (with `retry-after`
when the vendor sent one). Vendor messages are always redacted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    GatewayError,
    InvalidRequest,
    Provider,
    ProviderConfigError,
    RouteType,
    Secrets,
    StdRequest,
    StdResponse,
    Target,
    UpstreamRequest,
    UpstreamResponse,
    Usage,
)
from providers.common import (
    as_mapping,
    load_json,
    map_vendor_error,
    mid_stream_error,
    optional_int,
    optional_str,
    prompt_as_chat,
    refuse_penalties,
)
from providers.streaming import ChoiceDelta, ChunkParser, SSEEvent, StreamChunk, StreamParser

DEFAULT_API_BASE = "https://api.anthropic.com"
DEFAULT_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
MESSAGES_PATH = "/v1/messages"
SYSTEM_SEPARATOR = "\n"
MERGE_SEPARATOR = "\n\n"
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_CACHE_INPUT_FIELDS = ("cache_creation_input_tokens", "cache_read_input_tokens")


@dataclass(frozen=True, slots=True)
class AnthropicSettings:
    """The non-secret part of a route's config, resolved with its defaults."""

    api_base: str = DEFAULT_API_BASE
    version: str = DEFAULT_VERSION
    default_max_tokens: int = DEFAULT_MAX_TOKENS

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AnthropicSettings:
        """Settings from a route's config; raises ProviderConfigError on a malformed value."""
        base = str(config.get("anthropic_api_base") or "").strip().rstrip("/") or DEFAULT_API_BASE
        version = str(config.get("anthropic_version") or "").strip() or DEFAULT_VERSION
        raw = config.get("anthropic_default_max_tokens")
        max_tokens = DEFAULT_MAX_TOKENS if raw is None or raw == "" else _positive_int(raw)
        if max_tokens is None:
            raise ProviderConfigError(
                f"anthropic_default_max_tokens must be a positive integer (got {raw!r})."
            )
        return cls(api_base=base, version=version, default_max_tokens=max_tokens)

    @property
    def url(self) -> str:
        return f"{self.api_base}{MESSAGES_PATH}"


# ---------------------------------------------------------------- request mapping (pure)


def params_to_vendor(params: CommonParams, *, default_max_tokens: int) -> dict[str, Any]:
    """CommonParams → Messages API fields; raises InvalidRequest for what Anthropic cannot do.

    `max_tokens` is always present (Anthropic requires it): the request's, else the route default.
    """
    if params.n != 1:
        raise InvalidRequest(
            f"n (candidate_count) must be 1 for provider 'anthropic': its Messages API returns a "
            f"single candidate (got {params.n})."
        )
    refuse_penalties(params, "provider 'anthropic'")
    body: dict[str, Any] = {
        "max_tokens": params.max_tokens if params.max_tokens is not None else default_max_tokens
    }
    if params.temperature is not None:
        body["temperature"] = params.temperature * AnthropicProvider.temperature_scale
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.stop:
        body["stop_sequences"] = list(params.stop)
    return body


def messages_to_vendor(messages: Sequence[ChatMessage]) -> tuple[str | None, list[dict[str, str]]]:
    """Standard messages → (`system`, alternating `messages`) as the Messages API wants them.

    System messages are lifted out and joined; consecutive same-role turns are merged. Raises
    InvalidRequest for an unknown role, no user/assistant message, or a first turn that is not the
    user's.
    """
    system: list[str] = []
    turns: list[dict[str, str]] = []
    for message in messages:
        if message.role == "system":
            system.append(message.content)
        elif message.role not in ("user", "assistant"):
            raise InvalidRequest(
                f"Message role '{message.role}' is not supported by provider 'anthropic' "
                "(use system, user or assistant)."
            )
        elif turns and turns[-1]["role"] == message.role:
            turns[-1]["content"] += MERGE_SEPARATOR + message.content
        else:
            turns.append({"role": message.role, "content": message.content})
    if not turns:
        raise InvalidRequest("Provider 'anthropic' needs at least one user message besides system messages.")
    if turns[0]["role"] != "user":
        raise InvalidRequest(
            "The first message after any system messages must have role 'user' for provider 'anthropic'."
        )
    return (SYSTEM_SEPARATOR.join(system) if system else None), turns


def chat_to_vendor(request: ChatRequest, *, model: str, default_max_tokens: int) -> dict[str, Any]:
    system, turns = messages_to_vendor(request.messages)
    body: dict[str, Any] = {"model": model}
    if system is not None:
        body["system"] = system
    body["messages"] = turns
    body.update(params_to_vendor(request.params, default_max_tokens=default_max_tokens))
    return body


def completions_to_vendor(request: CompletionsRequest, *, model: str, default_max_tokens: int) -> dict[str, Any]:
    """A completions prompt is one user message."""
    return chat_to_vendor(prompt_as_chat(request), model=model, default_max_tokens=default_max_tokens)


def build_upstream_request(
    settings: AnthropicSettings, *, model: str, api_key: str, request: StdRequest
) -> UpstreamRequest:
    """The HTTP request for `request`. Raises InvalidRequest for what Anthropic cannot serve."""
    if isinstance(request, ChatRequest):
        body = chat_to_vendor(request, model=model, default_max_tokens=settings.default_max_tokens)
    elif isinstance(request, CompletionsRequest):
        body = completions_to_vendor(request, model=model, default_max_tokens=settings.default_max_tokens)
    else:
        raise InvalidRequest("Provider 'anthropic' has no embeddings API.")
    headers = {
        "x-api-key": api_key,
        "anthropic-version": settings.version,
        "content-type": "application/json",
    }
    return UpstreamRequest(method="POST", url=settings.url, headers=headers, json=body)


# ---------------------------------------------------------------- response parsing (pure)


def finish_reason_from_vendor(stop_reason: Any) -> str | None:
    """Anthropic's `stop_reason` → OpenAI's finish reason; unknown values pass through."""
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(str(stop_reason), str(stop_reason))


def text_from_vendor(data: Mapping[str, Any]) -> str:
    """The concatenated text of the answer's `text` blocks. Raises if `content` is not a list."""
    content = data["content"]
    if not isinstance(content, list):
        raise TypeError("content is not a list of blocks")
    return "".join(
        str(block.get("text") or "")
        for block in content
        if isinstance(block, Mapping) and block.get("type") == "text"
    )


def usage_from_vendor(data: Mapping[str, Any]) -> Usage:
    """Anthropic's `usage` → Usage (cache reads/writes count as input); unknown counts stay None."""
    usage = data.get("usage")
    if not isinstance(usage, Mapping):
        return Usage()
    input_tokens = optional_int(usage.get("input_tokens"))
    if input_tokens is not None:
        input_tokens += sum(optional_int(usage.get(name)) or 0 for name in _CACHE_INPUT_FIELDS)
    return Usage(input_tokens=input_tokens, output_tokens=optional_int(usage.get("output_tokens")))


def chat_from_vendor(data: Mapping[str, Any], *, default_model: str) -> ChatResponse:
    message = ChatMessage(role="assistant", content=text_from_vendor(data))
    finish_reason = finish_reason_from_vendor(data.get("stop_reason"))
    return ChatResponse(
        model=str(data.get("model") or default_model),
        choices=[ChatChoice(index=0, message=message, finish_reason=finish_reason)],
        usage=usage_from_vendor(data),
        id=optional_str(data.get("id")),
    )


def completions_from_vendor(data: Mapping[str, Any], *, default_model: str) -> CompletionsResponse:
    choice = CompletionChoice(
        index=0, text=text_from_vendor(data), finish_reason=finish_reason_from_vendor(data.get("stop_reason"))
    )
    return CompletionsResponse(
        model=str(data.get("model") or default_model),
        choices=[choice],
        usage=usage_from_vendor(data),
        id=optional_str(data.get("id")),
    )


def from_vendor_body(request: StdRequest, data: Any, *, default_model: str) -> StdResponse:
    if not isinstance(data, Mapping):
        raise TypeError("response body is not a JSON object")
    if isinstance(request, CompletionsRequest):
        return completions_from_vendor(data, default_model=default_model)
    return chat_from_vendor(data, default_model=default_model)


# ---------------------------------------------------------------- errors (pure)


def error_from_vendor(response: UpstreamResponse, secrets: Secrets) -> GatewayError:
    """A vendor error answer → the GatewayError callers see (never with a credential in it)."""
    # 529 is Anthropic's "overloaded": as transient as a 503, and it may carry retry-after too.
    return map_vendor_error(response, secrets, retry_after_on_error=True)


# ---------------------------------------------------------------- the stream (pure)


class AnthropicStreamParser(ChunkParser):
    """The Messages API's event stream → standard chunks: a role chunk at `message_start`, the text of
    every `text_delta`, and at `message_delta` the finish reason with the final usage."""

    def __init__(self, *, default_model: str, secrets: Secrets) -> None:
        super().__init__()
        self._model = default_model
        self._id: str | None = None
        self._usage: dict[str, Any] = {}
        self._secrets = secrets

    def _chunk(self, delta: ChoiceDelta, usage: Usage | None = None) -> StreamChunk:
        return StreamChunk(deltas=[delta], usage=usage, model=self._model, id=self._id)

    def event_chunk(self, event: SSEEvent) -> StreamChunk | None:
        payload = orjson.loads(event.data)
        if not isinstance(payload, Mapping):
            raise TypeError("stream event is not a JSON object")
        kind = payload.get("type") or event.event
        if kind == "error":
            error = as_mapping(payload.get("error"))
            raise mid_stream_error(str(error.get("message") or error.get("type") or "stream error"), self._secrets)
        if kind == "message_start":
            message = as_mapping(payload.get("message"))
            self._model = str(message.get("model") or self._model)
            self._id = optional_str(message.get("id"))
            self._usage.update(as_mapping(message.get("usage")))
            return self._chunk(ChoiceDelta(index=0, role="assistant"))
        if kind == "content_block_start":
            block = payload.get("content_block")
            text = str(block.get("text") or "") if isinstance(block, Mapping) and block.get("type") == "text" else ""
            return self._chunk(ChoiceDelta(index=0, text=text)) if text else None
        if kind == "content_block_delta":
            delta = payload.get("delta")
            if isinstance(delta, Mapping) and delta.get("type") == "text_delta" and delta.get("text"):
                return self._chunk(ChoiceDelta(index=0, text=str(delta["text"])))
            return None
        if kind == "message_delta":
            # Counts here are cumulative: they replace message_start's, field by field.
            self._usage.update({k: v for k, v in as_mapping(payload.get("usage")).items() if v is not None})
            finish = finish_reason_from_vendor(as_mapping(payload.get("delta")).get("stop_reason"))
            usage = usage_from_vendor({"usage": self._usage})
            return self._chunk(ChoiceDelta(index=0, finish_reason=finish), usage=usage)
        return None  # ping, content_block_stop, message_stop, and event types added later


# ---------------------------------------------------------------- the provider


class AnthropicProvider(Provider):
    name: ClassVar[str] = "anthropic"
    route_types: ClassVar[frozenset[RouteType]] = frozenset({RouteType.CHAT, RouteType.COMPLETIONS})
    secret_fields: ClassVar[tuple[str, ...]] = ("anthropic_api_key",)
    config_fields: ClassVar[tuple[str, ...]] = (
        "anthropic_version",
        "anthropic_api_base",
        "anthropic_default_max_tokens",
    )
    required_fields: ClassVar[tuple[str, ...]] = ("anthropic_api_key",)
    # OpenAI's 0..2 → Anthropic's 0..1.
    temperature_scale: ClassVar[float] = 0.5

    def validate_config(
        self, *, route_type: RouteType, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        super().validate_config(route_type=route_type, config=config, secrets=secrets)
        settings = AnthropicSettings.from_config(config)
        parts = urlsplit(settings.api_base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ProviderConfigError("anthropic_api_base must be an http:// or https:// URL.")
        if parts.path.rstrip("/").endswith(("/v1", MESSAGES_PATH)):
            raise ProviderConfigError(
                "anthropic_api_base is the server root, as in Anthropic's SDKs (e.g. "
                f"{DEFAULT_API_BASE}): leave out '/v1', the gateway adds '{MESSAGES_PATH}'."
            )

    def build_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        key = (target.secrets.get("anthropic_api_key") or "").strip()
        return build_upstream_request(
            AnthropicSettings.from_config(target.config), model=target.model, api_key=key, request=request
        )

    def parse_response(self, target: Target, request: StdRequest, response: UpstreamResponse) -> StdResponse:
        return from_vendor_body(request, load_json(response.body), default_model=target.model)

    def map_error(self, target: Target, response: UpstreamResponse) -> GatewayError:
        return error_from_vendor(response, target.secrets)

    supports_streaming: ClassVar[bool] = True

    def build_stream_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        plain = self.build_request(target, request)
        return UpstreamRequest(method=plain.method, url=plain.url, headers=plain.headers,
                               json={**plain.json, "stream": True})

    def stream_parser(self, target: Target, request: StdRequest) -> StreamParser:
        return AnthropicStreamParser(default_model=target.model, secrets=target.secrets)


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 1 else None
    if isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
        return number if number >= 1 else None
    return None
