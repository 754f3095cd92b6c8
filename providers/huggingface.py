"""Hugging Face Text Generation Inference (TGI), self-hosted or behind a Hugging Face Inference Endpoint.

Config keys (`hf_server_url` is MLflow's, `HuggingFaceTextGenerationInferenceConfig`; the token is ours):

- `hf_server_url` (required): the TGI server root, e.g. `http://tgi.internal:8080` or
  `https://<name>.endpoints.huggingface.cloud`; the adapter appends `/generate`,
  `/generate_stream` and `/v1/chat/completions`, so a URL that already ends in one of them is refused.
- `hf_api_token` (secret, optional): sent as `Authorization: Bearer TOKEN`. A plain TGI server wants
  none (none is sent then); a protected Inference Endpoint needs a Hugging Face token.

Route types: completions (MLflow's mapping) and chat. TGI has no embeddings (that is Hugging Face's
separate Text Embeddings Inference server), so an embeddings route is refused when it is created.

Completions, as MLflow does: `POST {hf_server_url}/generate` with `{"inputs": prompt, "parameters":
{...}}`, `details` and `decoder_input_details` on, so the answer carries `details.finish_reason`,
`details.generated_tokens` and the `prefill` (the prompt's tokens, whose count is the input usage).
Should a server leave the prefill out, TGI's `x-prompt-tokens` header counts the input; failing both,
the prompt is counted with tiktoken and the usage is marked estimated.

Chat: MLflow's TGI adapter has none; TGI itself serves an OpenAI-compatible Messages API
(`POST /v1/chat/completions`) that applies the model's own chat template on the server, which no
template the gateway could guess matches. So chat routes use it; its answer and its stream are
OpenAI's shape with `usage` (the stream's final usage is asked for with `stream_options`).

Parameters (TGI's OpenAPI document, `docs/openapi.json`):

- `temperature` is the logits divisor in TGI as in OpenAI (TGI documents only a lower bound,
  exclusive 0), so it is passed unscaled. MLflow multiplies by 50, assuming a 0..100 range TGI does not
  document: OpenAI's default 1.0 would become 50, near-uniform sampling. `/generate` refuses 0, and
  TGI decodes greedily unless it samples: temperature 0 is sent as `do_sample: false` with no
  temperature (greedy, what 0 means at OpenAI; MLflow sends 0.001), any other value with
  `do_sample: true`. The chat API takes 0..2 itself and treats 0 as greedy.
- `max_tokens` → `max_new_tokens` (`max_tokens` on the chat API); `stop` passes on (TGI allows 4 by
  default; more is the vendor's 422). `top_p` must lie in (0, 1) at TGI: 1 (no cut) is left out,
  0 or less is refused with 400.
- `frequency_penalty` passes on. `/generate` has no presence penalty, so a non-zero
  `presence_penalty` on a completions route is refused (zero is dropped); the chat API takes it.
- `n` > 1 is refused with 400: TGI returns a single candidate (as MLflow refuses it).
- `finish_reason`: `eos_token` and `stop_sequence` → `stop`, `length` → `length`. TGI keeps a matched
  stop sequence at the end of the text; the adapter passes the text on as TGI sends it.

Streaming: completions stream from `POST /generate_stream` (SSE events `data:{"index", "token":
{"text", "special", ...}, "generated_text": null, "details": null}`, the last one with
`generated_text` and `details` {finish_reason, generated_tokens, input_length}); special tokens
(the end-of-sequence marker) carry no text. Chat streams from the chat API with OpenAI's framing.

Errors: TGI answers `{"error": "...", "error_type": "validation" | "generation" | "overloaded" |
"incomplete_generation" | ...}` (the chat API's mid-stream errors are `{"error": {"message", ...}}`).
422 (validation) and 400/404/413 → 400 UPSTREAM_BAD_REQUEST with the vendor's message; 401/403 (an
Inference Endpoint refusing the token) → 502 UPSTREAM_AUTH_FAILED; 429 (overloaded) → 502
UPSTREAM_RATE_LIMITED; 424 (generation failed) and 5xx → 502 UPSTREAM_ERROR. An error event
mid-stream raises UpstreamError.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

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
    UpstreamError,
    UpstreamRequest,
    UpstreamResponse,
    Usage,
)
from providers.common import (
    header,
    load_json,
    map_vendor_error,
    mid_stream_error,
    optional_int,
)
from providers.openai import OpenAIStreamParser, chat_from_vendor
from providers.streaming import ChoiceDelta, ChunkParser, SSEEvent, StreamChunk, StreamParser
from providers.tokens import count_text_tokens

PROVIDER = "huggingface-text-generation-inference"
GENERATE_PATH = "/generate"
GENERATE_STREAM_PATH = "/generate_stream"
CHAT_PATH = "/v1/chat/completions"
_API_SUFFIXES = (GENERATE_PATH, GENERATE_STREAM_PATH, "/v1", CHAT_PATH)
FINISH_REASONS = {"eos_token": "stop", "stop_sequence": "stop", "length": "length"}


@dataclass(frozen=True, slots=True)
class TGISettings:
    """The non-secret part of a route's config."""

    server_url: str

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TGISettings:
        return cls(server_url=str(config.get("hf_server_url") or "").strip().rstrip("/"))


# ---------------------------------------------------------------- request mapping (pure)


def _single_candidate(params: CommonParams) -> None:
    if params.n != 1:
        raise InvalidRequest(
            f"n (candidate_count) must be 1 for provider '{PROVIDER}': TGI returns a single candidate "
            f"(got {params.n})."
        )


def _top_p(value: float | None) -> float | None:
    """TGI wants 0 < top_p < 1: 1 (no cut) is left out, 0 or less is refused."""
    if value is None or value >= 1.0:
        return None
    if value <= 0.0:
        raise InvalidRequest(f"top_p must be greater than 0 for provider '{PROVIDER}' (got {value}).")
    return value


def generate_parameters(params: CommonParams, *, stream: bool = False) -> dict[str, Any]:
    """CommonParams → the `parameters` of a `/generate` (or `/generate_stream`) body.

    `details` is always on (finish reason and token counts); `decoder_input_details` (the prompt's
    tokens) only when not streaming, which TGI refuses.
    """
    _single_candidate(params)
    if params.presence_penalty:
        raise InvalidRequest(
            f"presence_penalty is not supported by provider '{PROVIDER}' on completions routes "
            "(TGI's generate API has none); leave it unset or 0."
        )
    parameters: dict[str, Any] = {}
    if params.max_tokens is not None:
        parameters["max_new_tokens"] = params.max_tokens
    if params.temperature is not None:
        if params.temperature > 0:
            parameters["temperature"] = params.temperature * HFTextGenerationInferenceServerProvider.temperature_scale
            parameters["do_sample"] = True
        else:
            parameters["do_sample"] = False  # TGI refuses 0; greedy decoding is what 0 means
    top_p = _top_p(params.top_p)
    if top_p is not None:
        parameters["top_p"] = top_p
    if params.stop:
        parameters["stop"] = list(params.stop)
    if params.frequency_penalty is not None:
        parameters["frequency_penalty"] = params.frequency_penalty
    parameters["details"] = True
    if not stream:
        parameters["decoder_input_details"] = True
    return parameters


def completions_to_vendor(request: CompletionsRequest, *, stream: bool = False) -> dict[str, Any]:
    """The `/generate` body: `{"inputs": prompt, "parameters": {...}}`."""
    return {"inputs": request.prompt, "parameters": generate_parameters(request.params, stream=stream)}


def chat_to_vendor(request: ChatRequest, *, model: str) -> dict[str, Any]:
    """The body for TGI's OpenAI-compatible chat API (TGI takes OpenAI's temperature scale there)."""
    params = request.params
    _single_candidate(params)
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    body: dict[str, Any] = {"model": model, "messages": messages}
    optional = {
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "top_p": _top_p(params.top_p),
        "stop": list(params.stop) if params.stop else None,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
    }
    body.update({name: value for name, value in optional.items() if value is not None})
    return body


def build_upstream_request(
    settings: TGISettings, *, model: str, token: str | None, request: StdRequest, stream: bool = False
) -> UpstreamRequest:
    """The HTTP request for `request` (streamed when `stream`). Raises InvalidRequest for embeddings."""
    body: dict[str, Any]
    if isinstance(request, ChatRequest):
        path, body = CHAT_PATH, chat_to_vendor(request, model=model)
        if stream:
            body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    elif isinstance(request, CompletionsRequest):
        path = GENERATE_STREAM_PATH if stream else GENERATE_PATH
        body = completions_to_vendor(request, stream=stream)
    else:
        raise InvalidRequest(f"Provider '{PROVIDER}' has no embeddings API.")
    headers = {"Accept": "text/event-stream" if stream else "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return UpstreamRequest(method="POST", url=f"{settings.server_url}{path}", headers=headers, json=body)


# ---------------------------------------------------------------- response parsing (pure)


def finish_reason_from_vendor(reason: Any) -> str | None:
    """TGI's finish reason → OpenAI's; unknown values pass through."""
    if reason is None:
        return None
    return FINISH_REASONS.get(str(reason), str(reason))


def generate_usage(
    details: Mapping[str, Any] | None, headers: Mapping[str, str], *, prompt: str, text: str
) -> Usage:
    """Usage of a `/generate` answer: the prefill's length (else `x-prompt-tokens`) and
    `generated_tokens`; what TGI did not report is counted with tiktoken and marked estimated."""
    details = details or {}
    prefill = details.get("prefill")
    input_tokens = len(prefill) if isinstance(prefill, list) and prefill else None
    if input_tokens is None:
        raw = header(headers, "x-prompt-tokens")
        input_tokens = int(raw) if raw is not None and raw.strip().isdigit() else None
    output_tokens = optional_int(details.get("generated_tokens"))
    estimated = input_tokens is None or output_tokens is None
    if input_tokens is None:
        input_tokens = count_text_tokens(prompt)
    if output_tokens is None:
        output_tokens = count_text_tokens(text)
    return Usage(input_tokens=input_tokens, output_tokens=output_tokens, estimated=estimated)


def completions_from_vendor(
    data: Any, headers: Mapping[str, str], *, model: str, prompt: str
) -> CompletionsResponse:
    """A `/generate` answer → CompletionsResponse (one choice). Raises if `generated_text` is missing."""
    if not isinstance(data, Mapping):
        raise TypeError("response body is not a JSON object")
    text = data["generated_text"]
    if not isinstance(text, str):
        raise TypeError("generated_text is not a string")
    details = data.get("details") if isinstance(data.get("details"), Mapping) else None
    return CompletionsResponse(
        model=model,
        choices=[
            CompletionChoice(
                index=0, text=text, finish_reason=finish_reason_from_vendor((details or {}).get("finish_reason"))
            )
        ],
        usage=generate_usage(details, headers, prompt=prompt, text=text),
    )


def tgi_chat_from_vendor(data: Any, *, model: str) -> ChatResponse:
    """The chat API's (OpenAI-shaped) answer → ChatResponse; `eos_token` finish reasons mapped too."""
    if not isinstance(data, Mapping):
        raise TypeError("response body is not a JSON object")
    response = chat_from_vendor(data, default_model=model)
    for choice in response.choices:
        choice.finish_reason = finish_reason_from_vendor(choice.finish_reason)
    return response


# ---------------------------------------------------------------- errors (pure)


def error_from_vendor(response: UpstreamResponse, secrets: Secrets) -> GatewayError:
    """A TGI (or Inference Endpoint) error answer → the GatewayError callers see, never with the token."""
    return map_vendor_error(response, secrets)


def _stream_error(payload: Mapping[str, Any], secrets: Secrets) -> UpstreamError:
    error = payload.get("error")
    text = error if isinstance(error, str) else (error.get("message") if isinstance(error, Mapping) else None)
    return mid_stream_error(str(text or "stream error"), secrets)


# ---------------------------------------------------------------- streams


class TGIGenerateStreamParser(ChunkParser):
    """`/generate_stream`: one `data:` event per token, the last with `generated_text` and `details`;
    an `{"error", "error_type"}` event is TGI failing after it started."""

    def __init__(self, *, model: str, prompt: str, secrets: Secrets) -> None:
        super().__init__()
        self._model = model
        self._prompt = prompt
        self._secrets = secrets
        self._text: list[str] = []

    def event_chunk(self, event: SSEEvent) -> StreamChunk | None:
        payload = orjson.loads(event.data)
        if not isinstance(payload, Mapping):
            raise TypeError("stream event is not a JSON object")
        if "error" in payload:
            raise _stream_error(payload, self._secrets)
        token = payload.get("token")
        text = ""
        if isinstance(token, Mapping) and not token.get("special"):
            text = str(token.get("text") or "")
        self._text.append(text)
        if payload.get("generated_text") is None:
            return StreamChunk(deltas=[ChoiceDelta(index=0, text=text)], model=self._model) if text else None
        raw_details = payload.get("details")
        details: Mapping[str, Any] = raw_details if isinstance(raw_details, Mapping) else {}
        input_tokens = optional_int(details.get("input_length"))
        output_tokens = optional_int(details.get("generated_tokens"))
        usage = Usage(
            input_tokens=input_tokens if input_tokens is not None else count_text_tokens(self._prompt),
            output_tokens=output_tokens if output_tokens is not None else count_text_tokens("".join(self._text)),
            estimated=input_tokens is None or output_tokens is None,
        )
        finish = finish_reason_from_vendor(details.get("finish_reason")) or "stop"
        return StreamChunk(deltas=[ChoiceDelta(index=0, text=text, finish_reason=finish)], usage=usage,
                           model=self._model)


class TGIChatStreamParser(OpenAIStreamParser):
    """The chat API's stream: OpenAI's framing, with TGI's error events and finish reasons."""

    def __init__(self, *, model: str, secrets: Secrets) -> None:
        super().__init__(default_model=model, secrets=secrets)
        self._tgi_secrets = secrets

    def event_chunk(self, event: SSEEvent) -> StreamChunk | None:
        if '"error"' in event.data:  # only then is it worth decoding twice
            payload = orjson.loads(event.data)
            if isinstance(payload, Mapping) and "error" in payload:
                raise _stream_error(payload, self._tgi_secrets)
        chunk = super().event_chunk(event)
        if chunk is not None:
            for delta in chunk.deltas:
                delta.finish_reason = finish_reason_from_vendor(delta.finish_reason)
        return chunk


# ---------------------------------------------------------------- the provider


class HFTextGenerationInferenceServerProvider(Provider):
    name: ClassVar[str] = PROVIDER
    route_types: ClassVar[frozenset[RouteType]] = frozenset({RouteType.COMPLETIONS, RouteType.CHAT})
    secret_fields: ClassVar[tuple[str, ...]] = ("hf_api_token",)
    config_fields: ClassVar[tuple[str, ...]] = ("hf_server_url",)
    required_fields: ClassVar[tuple[str, ...]] = ("hf_server_url",)
    temperature_scale: ClassVar[float] = 1.0
    supports_streaming: ClassVar[bool] = True

    def validate_config(
        self, *, route_type: RouteType, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        super().validate_config(route_type=route_type, config=config, secrets=secrets)
        settings = TGISettings.from_config(config)
        parts = urlsplit(settings.server_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProviderConfigError("hf_server_url must be an http:// or https:// URL.")
        if parts.path.rstrip("/").endswith(_API_SUFFIXES):
            raise ProviderConfigError(
                "hf_server_url is the TGI server root (e.g. http://tgi.internal:8080): leave out "
                "'/generate' and '/v1', the gateway adds the API paths."
            )

    def _request(self, target: Target, request: StdRequest, *, stream: bool) -> UpstreamRequest:
        token = (target.secrets.get("hf_api_token") or "").strip() or None
        return build_upstream_request(
            TGISettings.from_config(target.config), model=target.model, token=token, request=request, stream=stream
        )

    def build_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        return self._request(target, request, stream=False)

    def parse_response(self, target: Target, request: StdRequest, response: UpstreamResponse) -> StdResponse:
        data = load_json(response.body)
        if isinstance(request, CompletionsRequest):
            return completions_from_vendor(data, response.headers, model=target.model, prompt=request.prompt)
        return tgi_chat_from_vendor(data, model=target.model)

    def map_error(self, target: Target, response: UpstreamResponse) -> GatewayError:
        return error_from_vendor(response, target.secrets)

    def build_stream_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        return self._request(target, request, stream=True)

    def stream_parser(self, target: Target, request: StdRequest) -> StreamParser:
        if isinstance(request, CompletionsRequest):
            return TGIGenerateStreamParser(model=target.model, prompt=request.prompt, secrets=target.secrets)
        return TGIChatStreamParser(model=target.model, secrets=target.secrets)


__all__ = [
    "HFTextGenerationInferenceServerProvider",
    "TGIChatStreamParser",
    "TGIGenerateStreamParser",
    "build_upstream_request",
    "chat_to_vendor",
    "completions_from_vendor",
    "completions_to_vendor",
    "error_from_vendor",
    "finish_reason_from_vendor",
    "generate_parameters",
    "generate_usage",
    "tgi_chat_from_vendor",
]
