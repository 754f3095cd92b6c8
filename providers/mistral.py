"""Mistral AI (La Plateforme): `POST /v1/chat/completions` for chat and completions, `POST
/v1/embeddings` for embeddings, `Authorization: Bearer KEY`.

Config keys (`mistral_api_key` is MLflow's, `MistralConfig`; the base-URL key is ours):

- `mistral_api_key` (secret, required).
- `mistral_api_base`: default `https://api.mistral.ai/v1`.

Mapping (after Mistral's API reference and MLflow's MistralProvider):

- The wire format is OpenAI's, so the bodies and answers are `providers.openai`'s functions.
- Completions: the prompt goes to the chat API as one user message, as MLflow does (Mistral has no
  plain-text completions API; its FIM endpoint serves only Codestral and needs a suffix).
- Temperature: Mistral documented `temperature` as 0..1 (the API recommends 0.0..0.7), and MLflow
  halves OpenAI's 0..2 for it, so the factor is 0.5: OpenAI's full range maps onto Mistral's, and an
  MLflow 2.5 route call's 0..1 reaches Mistral unchanged. Values outside 0..2 are refused (400).
- `n`, `stop`, `top_p`, `presence_penalty` and `frequency_penalty` pass through (Mistral's chat API
  takes them all).
- Streams: OpenAI's SSE chunks ending with `data: [DONE]`. Mistral puts the usage on the last chunk
  unasked and refuses unknown fields (422 "Extra inputs are not permitted"), so no `stream_options`
  is sent.
- finish_reason: `stop`, `length` and `tool_calls` as is; `model_length` (the context window is
  full) → `length`; `error` (Mistral says the generation failed) → 502 UPSTREAM_ERROR.
- Errors: Mistral answers `{"object": "error", "message": "...", "type": ..., ...}`, with a 422's
  `message` being `{"detail": [{"loc": [...], "msg": ...}]}`, and `{"message": "Unauthorized"}` for
  a bad key. Statuses map as OpenAI's do (400/404/413/422 → 400 UPSTREAM_BAD_REQUEST with the
  message, 401/403 → 502 UPSTREAM_AUTH_FAILED, 429 → 502 UPSTREAM_RATE_LIMITED, else 502).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from providers import openai
from providers.base import (
    ChatResponse,
    CompletionsRequest,
    CompletionsResponse,
    EmbeddingsRequest,
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
)
from providers.common import json_object, load_json, prompt_as_chat, validation_errors_text, vendor_error_message
from providers.openai import OpenAIStreamParser, chat_to_vendor, embeddings_to_vendor
from providers.streaming import StreamParser
from providers.tokens import with_estimated_usage

DEFAULT_API_BASE = "https://api.mistral.ai/v1"
TEMPERATURE_SCALE = 0.5  # OpenAI 0..2 → Mistral 0..1
FINISH_REASONS = {"model_length": "length"}


# ---------------------------------------------------------------- request mapping (pure)


def check_params(request: StdRequest) -> None:
    """Raise InvalidRequest for a temperature outside OpenAI's 0..2 (it would exceed Mistral's 0..1)."""
    if isinstance(request, EmbeddingsRequest):
        return
    temperature = request.params.temperature
    if temperature is not None and not 0.0 <= temperature <= 2.0:
        raise InvalidRequest(f"temperature must be between 0 and 2 (got {temperature}).")


def to_vendor_body(request: StdRequest, *, model: str) -> tuple[str, dict[str, Any]]:
    """(path under the base URL, body) for `request`; completions go to the chat API."""
    check_params(request)
    if isinstance(request, EmbeddingsRequest):
        return "embeddings", {"model": model, **embeddings_to_vendor(request)}
    chat = prompt_as_chat(request) if isinstance(request, CompletionsRequest) else request
    return "chat/completions", {"model": model, **chat_to_vendor(chat, temperature_scale=TEMPERATURE_SCALE)}


def build_upstream_request(api_base: str, *, model: str, api_key: str, request: StdRequest) -> UpstreamRequest:
    """The HTTP request for `request` against `api_base` (e.g. `https://api.mistral.ai/v1`)."""
    path, body = to_vendor_body(request, model=model)
    headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
    return UpstreamRequest(method="POST", url=f"{api_base}/{path}", headers=headers, json=body)


# ---------------------------------------------------------------- response parsing (pure)


def finish_reason_from_vendor(reason: Any) -> str | None:
    """Mistral's finish_reason in OpenAI's terms. Raises UpstreamError for `error`."""
    if reason is None:
        return None
    reason = str(reason)
    if reason == "error":
        raise UpstreamError("The upstream provider reported an error while generating the answer.")
    return FINISH_REASONS.get(reason, reason)


def from_vendor_body(request: StdRequest, data: Any, *, model: str) -> StdResponse:
    """Mistral's decoded answer → the standard response (usage counted, estimated, if it sent none)."""
    response = openai.from_vendor_body(request, data, default_model=model)
    if isinstance(response, ChatResponse | CompletionsResponse):
        for choice in response.choices:
            choice.finish_reason = finish_reason_from_vendor(choice.finish_reason)
    return with_estimated_usage(request, response)


# ---------------------------------------------------------------- errors (pure)


def error_message(body: bytes) -> str | None:
    """The message in a Mistral error body; a 422's `{"message": {"detail": [...]}}` flattened to
    `field: problem` pairs."""
    message = vendor_error_message(body)
    if message is not None:
        return message
    data = json_object(body)
    wrapper = data.get("message") if data is not None else None
    return validation_errors_text(wrapper.get("detail") if isinstance(wrapper, Mapping) else None)


def error_from_vendor(response: UpstreamResponse, secrets: Secrets) -> GatewayError:
    """A Mistral error answer → the GatewayError callers see (never with a credential in it)."""
    return openai.error_from_vendor(response, secrets, extract=error_message)


class MistralStreamParser(OpenAIStreamParser):
    """Mistral's stream: OpenAI's chunks, usage on the last one; finish reasons as Mistral's."""

    def finish_reason(self, reason: Any) -> str | None:
        return finish_reason_from_vendor(reason)


# ---------------------------------------------------------------- the provider


class MistralProvider(Provider):
    name: ClassVar[str] = "mistral"
    route_types: ClassVar[frozenset[RouteType]] = frozenset(RouteType)
    secret_fields: ClassVar[tuple[str, ...]] = ("mistral_api_key",)
    config_fields: ClassVar[tuple[str, ...]] = ("mistral_api_base",)
    required_fields: ClassVar[tuple[str, ...]] = ("mistral_api_key",)
    temperature_scale: ClassVar[float] = TEMPERATURE_SCALE
    supports_streaming: ClassVar[bool] = True

    @staticmethod
    def api_base(config: Mapping[str, Any]) -> str:
        return str(config.get("mistral_api_base") or "").strip().rstrip("/") or DEFAULT_API_BASE

    def validate_config(
        self, *, route_type: RouteType, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        super().validate_config(route_type=route_type, config=config, secrets=secrets)
        parts = urlsplit(self.api_base(config))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProviderConfigError("mistral_api_base must be an http:// or https:// URL.")

    def build_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        key = (target.secrets.get("mistral_api_key") or "").strip()
        return build_upstream_request(self.api_base(target.config), model=target.model, api_key=key,
                                      request=request)

    def parse_response(self, target: Target, request: StdRequest, response: UpstreamResponse) -> StdResponse:
        return from_vendor_body(request, load_json(response.body), model=target.model)

    def map_error(self, target: Target, response: UpstreamResponse) -> GatewayError:
        return error_from_vendor(response, target.secrets)

    def build_stream_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        plain = self.build_request(target, request)
        return UpstreamRequest(method=plain.method, url=plain.url, headers=plain.headers,
                               json={**plain.json, "stream": True})

    def stream_parser(self, target: Target, request: StdRequest) -> StreamParser:
        return MistralStreamParser(default_model=target.model, secrets=target.secrets)
