"""AI21 Labs: Jamba chat (`POST {base}/studio/v1/chat/completions`) and, for J2 models, MLflow's legacy
completions (`POST {base}/studio/v1/{model}/complete`).

Config keys (`ai21labs_api_key` is MLflow's, `AI21LabsConfig`; the base is ours):

- `ai21labs_api_key` (secret, required): sent as `Authorization: Bearer KEY`.
- `ai21labs_api_base`: the server root, default `https://api.ai21.com`, as AI21's SDK takes its
  `api_host`; the adapter appends `/studio/v1/...`, so a base ending in `/studio/v1` or `/v1` is refused.

Route types: chat and completions. AI21 retired its embeddings API together with the J2 models (its
SDK dropped both in November 2024), so an embeddings route is refused when it is created.

Which API (the choice, since MLflow's adapter predates Jamba):

- MLflow's AI21 adapter serves completions only, through the Jurassic-2 `complete` API, for the models
  `j2-ultra`, `j2-mid` and `j2-light`. A completions route on a `j2-*` model keeps exactly that wire
  format: `{"prompt", "maxTokens", "temperature", "topP", "stopSequences", "numResults"}` →
  `completions[].data.text` and `finishReason.reason`. J2 was retired from AI21's own API, so this
  only matters for deployments that still serve it.
- Every other model (the Jamba family, e.g. `jamba-mini`, `jamba-large`) uses AI21's current Jamba chat
  API, which is OpenAI-shaped: chat routes send their messages, completions routes send the prompt as one
  user message.

Parameters: `temperature` passes unscaled (Jamba documents 0..2 as OpenAI does; for J2, 0 is greedy and
1 samples from the model's distribution, OpenAI's meaning too); `top_p`, `max_tokens` and `stop`
pass on (`topP`, `maxTokens`, `stopSequences` for J2); `n` is Jamba's `n` (1..16) or J2's
`numResults`. Neither API takes OpenAI's penalties (J2's are objects with another scale), so a
non-zero `presence_penalty` / `frequency_penalty` is refused with 400 and a zero one dropped.

Answers: Jamba's `choices[].message.content`, `finish_reason` (`stop`, `length`) and `usage`; J2's
finish reasons `endoftext` and `stop` → `stop`, `length` → `length`, and its usage counted from the
token lists it returns (`prompt.tokens`, `completions[].data.tokens`); a J2 answer without them is
counted with tiktoken and marked estimated.

Streaming: Jamba chat streams (`stream: true`) in OpenAI's SSE framing, `usage` on the last chunk,
`data: [DONE]` at the end. J2 does not stream: a streamed completions request on a `j2-*` model is
refused with 400 before any upstream call.

Errors: AI21 answers FastAPI's `{"detail": "..."}` (or `{"detail": [{"loc", "msg", ...}]}` for a 422).
400/404/413/422 → 400 UPSTREAM_BAD_REQUEST with the vendor's message; 401/403 → 502
UPSTREAM_AUTH_FAILED (fixed text); 429 → 502 UPSTREAM_RATE_LIMITED with `retry_after`; others → 502
UPSTREAM_ERROR. Messages are redacted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import orjson

from providers.base import (
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
    json_object,
    load_json,
    map_vendor_error,
    mid_stream_error,
    prompt_as_chat,
    refuse_penalties,
    validation_errors_text,
    vendor_error_message,
)
from providers.openai import OpenAIStreamParser, chat_from_vendor
from providers.streaming import SSEEvent, StreamChunk, StreamParser
from providers.tokens import count_text_tokens

DEFAULT_API_BASE = "https://api.ai21.com"
CHAT_PATH = "/studio/v1/chat/completions"
J2_PREFIX = "j2-"
J2_FINISH_REASONS = {"endoftext": "stop", "stop": "stop", "length": "length"}


@dataclass(frozen=True, slots=True)
class AI21Settings:
    """The non-secret part of a route's config, with its default."""

    api_base: str = DEFAULT_API_BASE

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AI21Settings:
        return cls(api_base=str(config.get("ai21labs_api_base") or "").strip().rstrip("/") or DEFAULT_API_BASE)


def is_j2(model: str) -> bool:
    """Whether `model` is a Jurassic-2 model, served by the legacy `complete` API."""
    return model.strip().lower().startswith(J2_PREFIX)


# ---------------------------------------------------------------- request mapping (pure)


def _refuse_penalties(params: CommonParams) -> None:
    refuse_penalties(params, "provider 'ai21labs'")


def chat_to_vendor(request: ChatRequest, *, model: str) -> dict[str, Any]:
    """The Jamba chat body (OpenAI's field names)."""
    params = request.params
    _refuse_penalties(params)
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
    }
    if params.max_tokens is not None:
        body["max_tokens"] = params.max_tokens
    if params.temperature is not None:
        body["temperature"] = params.temperature * AI21LabsProvider.temperature_scale
    if params.top_p is not None:
        body["top_p"] = params.top_p
    if params.stop:
        body["stop"] = list(params.stop)
    if params.n != 1:
        body["n"] = params.n
    return body


def j2_to_vendor(request: CompletionsRequest) -> dict[str, Any]:
    """The J2 `complete` body, with MLflow's renames (`maxTokens`, `stopSequences`, `numResults`)."""
    params = request.params
    _refuse_penalties(params)
    body: dict[str, Any] = {"prompt": request.prompt}
    if params.max_tokens is not None:
        body["maxTokens"] = params.max_tokens
    if params.temperature is not None:
        body["temperature"] = params.temperature * AI21LabsProvider.temperature_scale
    if params.top_p is not None:
        body["topP"] = params.top_p
    if params.stop:
        body["stopSequences"] = list(params.stop)
    if params.n != 1:
        body["numResults"] = params.n
    return body


def build_upstream_request(
    settings: AI21Settings, *, model: str, api_key: str, request: StdRequest, stream: bool = False
) -> UpstreamRequest:
    """The HTTP request for `request`: J2 `complete` for a completions request on a `j2-*` model,
    Jamba chat otherwise. Raises InvalidRequest for embeddings and for a streamed J2 request."""
    headers = {"Authorization": f"Bearer {api_key}", "Accept": "text/event-stream" if stream else "application/json"}
    body: dict[str, Any]
    if isinstance(request, CompletionsRequest) and is_j2(model):
        if stream:
            raise InvalidRequest("AI21's J2 complete API does not stream; call this route without streaming.")
        url = f"{settings.api_base}/studio/v1/{quote(model, safe='')}/complete"
        return UpstreamRequest(method="POST", url=url, headers=headers, json=j2_to_vendor(request))
    if isinstance(request, ChatRequest):
        body = chat_to_vendor(request, model=model)
    elif isinstance(request, CompletionsRequest):
        body = chat_to_vendor(prompt_as_chat(request), model=model)
    else:
        raise InvalidRequest("Provider 'ai21labs' has no embeddings API.")
    if stream:
        body["stream"] = True
    return UpstreamRequest(method="POST", url=f"{settings.api_base}{CHAT_PATH}", headers=headers, json=body)


# ---------------------------------------------------------------- response parsing (pure)


def j2_finish_reason(finish: Any) -> str | None:
    """J2's `finishReason` object → OpenAI's finish reason; unknown reasons pass through."""
    reason = finish.get("reason") if isinstance(finish, Mapping) else None
    if reason is None:
        return None
    return J2_FINISH_REASONS.get(str(reason), str(reason))


def j2_from_vendor(data: Any, *, model: str, prompt: str) -> CompletionsResponse:
    """A J2 `complete` answer → CompletionsResponse. Raises if `completions` is not a list of them."""
    if not isinstance(data, Mapping) or not isinstance(data["completions"], list):
        raise TypeError("not a J2 complete answer")
    choices: list[CompletionChoice] = []
    token_lists: list[Any] = []
    for index, completion in enumerate(data["completions"]):
        completion_data = completion["data"]
        text = str(completion_data.get("text") or "")
        choices.append(
            CompletionChoice(index=index, text=text, finish_reason=j2_finish_reason(completion.get("finishReason")))
        )
        token_lists.append(completion_data.get("tokens"))
    reported = all(isinstance(tokens, list) for tokens in token_lists)
    output_tokens = sum(len(tokens) for tokens in token_lists) if reported else None
    prompt_data = data.get("prompt")
    prompt_tokens = prompt_data.get("tokens") if isinstance(prompt_data, Mapping) else None
    input_tokens = len(prompt_tokens) if isinstance(prompt_tokens, list) else None
    estimated = input_tokens is None or output_tokens is None
    usage = Usage(
        input_tokens=input_tokens if input_tokens is not None else count_text_tokens(prompt),
        output_tokens=output_tokens if output_tokens is not None else sum(count_text_tokens(c.text) for c in choices),
        estimated=estimated,
    )
    ident = data.get("id")
    return CompletionsResponse(model=model, choices=choices, usage=usage, id=str(ident) if ident is not None else None)


def jamba_chat_from_vendor(data: Any, *, model: str) -> ChatResponse:
    """A Jamba chat answer (OpenAI's shape, `model` may be absent) → ChatResponse."""
    if not isinstance(data, Mapping):
        raise TypeError("response body is not a JSON object")
    return chat_from_vendor(data, default_model=model)


def jamba_completions_from_vendor(data: Any, *, model: str) -> CompletionsResponse:
    """A Jamba chat answer to a completions request → CompletionsResponse."""
    chat = jamba_chat_from_vendor(data, model=model)
    choices = [
        CompletionChoice(index=c.index, text=c.message.content, finish_reason=c.finish_reason) for c in chat.choices
    ]
    return CompletionsResponse(model=chat.model, choices=choices, usage=chat.usage, id=chat.id, created=chat.created)


# ---------------------------------------------------------------- errors (pure)


def error_message(body: bytes) -> str | None:
    """The message of an AI21 error body: FastAPI's `detail` (a string, or a list of `{loc, msg}`), or a
    common shape."""
    data = json_object(body)
    detail = data.get("detail") if data is not None else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        return validation_errors_text(detail)
    return vendor_error_message(body)


def error_from_vendor(response: UpstreamResponse, secrets: Secrets) -> GatewayError:
    """An AI21 error answer → the GatewayError callers see (never with a credential in it)."""
    return map_vendor_error(response, secrets, extract=error_message)


class AI21StreamParser(OpenAIStreamParser):
    """Jamba's stream: OpenAI's framing; an event carrying `detail` or `error` is AI21 failing mid-stream."""

    def __init__(self, *, model: str, secrets: Secrets) -> None:
        super().__init__(default_model=model, secrets=secrets)
        self._ai21_secrets = secrets

    def event_chunk(self, event: SSEEvent) -> StreamChunk | None:
        if '"detail"' in event.data or '"error"' in event.data:  # only then is it worth decoding twice
            payload = orjson.loads(event.data)
            if isinstance(payload, Mapping) and ("detail" in payload or "error" in payload):
                raise mid_stream_error(error_message(event.data.encode()) or "stream error", self._ai21_secrets)
        return super().event_chunk(event)


# ---------------------------------------------------------------- the provider


class AI21LabsProvider(Provider):
    name: ClassVar[str] = "ai21labs"
    route_types: ClassVar[frozenset[RouteType]] = frozenset({RouteType.CHAT, RouteType.COMPLETIONS})
    secret_fields: ClassVar[tuple[str, ...]] = ("ai21labs_api_key",)
    config_fields: ClassVar[tuple[str, ...]] = ("ai21labs_api_base",)
    required_fields: ClassVar[tuple[str, ...]] = ("ai21labs_api_key",)
    temperature_scale: ClassVar[float] = 1.0
    supports_streaming: ClassVar[bool] = True

    def validate_config(
        self, *, route_type: RouteType, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        super().validate_config(route_type=route_type, config=config, secrets=secrets)
        settings = AI21Settings.from_config(config)
        parts = urlsplit(settings.api_base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProviderConfigError("ai21labs_api_base must be an http:// or https:// URL.")
        if parts.path.rstrip("/").endswith(("/v1", "/studio")):
            raise ProviderConfigError(
                f"ai21labs_api_base is the server root (e.g. {DEFAULT_API_BASE}): leave out '/studio/v1', "
                "the gateway adds it."
            )

    def _request(self, target: Target, request: StdRequest, *, stream: bool) -> UpstreamRequest:
        key = (target.secrets.get("ai21labs_api_key") or "").strip()
        return build_upstream_request(
            AI21Settings.from_config(target.config), model=target.model, api_key=key, request=request, stream=stream
        )

    def build_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        return self._request(target, request, stream=False)

    def parse_response(self, target: Target, request: StdRequest, response: UpstreamResponse) -> StdResponse:
        data = load_json(response.body)
        if isinstance(request, CompletionsRequest):
            if is_j2(target.model):
                return j2_from_vendor(data, model=target.model, prompt=request.prompt)
            return jamba_completions_from_vendor(data, model=target.model)
        return jamba_chat_from_vendor(data, model=target.model)

    def map_error(self, target: Target, response: UpstreamResponse) -> GatewayError:
        return error_from_vendor(response, target.secrets)

    def build_stream_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        return self._request(target, request, stream=True)

    def stream_parser(self, target: Target, request: StdRequest) -> StreamParser:
        return AI21StreamParser(model=target.model, secrets=target.secrets)


__all__ = [
    "AI21LabsProvider",
    "AI21StreamParser",
    "build_upstream_request",
    "chat_to_vendor",
    "error_from_vendor",
    "error_message",
    "is_j2",
    "j2_finish_reason",
    "j2_from_vendor",
    "j2_to_vendor",
    "jamba_chat_from_vendor",
    "jamba_completions_from_vendor",
]
