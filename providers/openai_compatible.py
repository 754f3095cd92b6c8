"""Vendors that speak OpenAI's wire format under their own provider name: Groq, DeepSeek, xAI,
OpenRouter, TogetherAI, Ollama and vLLM.

Each is a small subclass of `OpenAICompatibleProvider`, which reuses the OpenAI adapter's pure
functions (`providers.openai`: request bodies, response parsing, error mapping, the SSE stream
parser) and adds what differs per vendor: the default base URL, the config key names, which route
types the vendor serves, and its documented quirks.

Config keys are MLflow's: its gateway's `_OpenAICompatibleConfig` (mlflow/gateway/config.py, used by
its Groq, DeepSeek, xAI, OpenRouter and Ollama providers) names them `api_key` and `api_base`;
TogetherAI's config is `togetherai_api_key` (MLflow has no base-URL key for it, so ours is
`togetherai_api_base`); vLLM, which MLflow lacks, takes the same `api_key` / `api_base` as Ollama.

| provider     | default `api_base`               | route types                                             |
|--------------|----------------------------------|---------------------------------------------------------|
| `groq`       | `https://api.groq.com/openai/v1` | chat; completions via chat (Groq has no completions API)|
| `deepseek`   | `https://api.deepseek.com`       | chat; completions via FIM (beta: `{root}/beta/completions`) |
| `xai`        | `https://api.x.ai/v1`            | chat, completions (xAI's legacy endpoint), embeddings   |
| `openrouter` | `https://openrouter.ai/api/v1`   | chat, completions, embeddings                           |
| `togetherai` | `https://api.together.xyz/v1`    | chat, completions, embeddings                           |
| `ollama`     | `http://localhost:11434/v1`      | chat, completions, embeddings; no key                   |
| `vllm`       | none: `api_base` is required     | chat, completions, embeddings; key optional             |

Quirks handled (after each vendor's API reference):

- `n` > 1 is refused (400) for Groq ("If N is supplied, it must be equal to 1"), DeepSeek, OpenRouter
  and Ollama, which have no `n`; xAI, TogetherAI and vLLM pass it on.
- Streams ask for the final usage chunk (`stream_options.include_usage`), except TogetherAI, which
  sends usage on its last chunk unasked. Groq's older `x_groq.usage` on the last chunk is read too.
- TogetherAI: completions need `max_tokens` (as MLflow's TogetherAI provider insists: Together's
  completions API requires it), refused with a 400 that says so; finish_reason `eos` is `stop`; its
  embeddings answer carries no usage, so usage is counted with tiktoken and marked estimated.
- Ollama: MLflow's placeholder key `ollama` means "no key": no `Authorization` header is sent.
- Any vendor answer without usage (some self-hosted servers) is counted with tiktoken, estimated.
- Temperature is OpenAI's 0..2 for all of them, so it passes unchanged.
- Errors map as OpenAI's do (`providers.openai.error_from_vendor`), whichever body shape the vendor
  uses (`{"error": {...}}`, xAI's `{"code", "error"}`, vLLM's `{"object": "error", "message"}`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from providers.base import (
    ChatResponse,
    CompletionsRequest,
    CompletionsResponse,
    GatewayError,
    InvalidRequest,
    Provider,
    ProviderConfigError,
    RouteType,
    StdRequest,
    StdResponse,
    Target,
    UpstreamRequest,
    UpstreamResponse,
    Usage,
)
from providers.common import load_json
from providers.openai import (
    OpenAISettings,
    OpenAIStreamParser,
    build_upstream_request,
    error_from_vendor,
    from_vendor_body,
    usage_from_vendor,
)
from providers.streaming import StreamParser
from providers.tokens import with_estimated_usage

ALL_ROUTE_TYPES = frozenset(RouteType)
CHAT_AND_COMPLETIONS = frozenset({RouteType.CHAT, RouteType.COMPLETIONS})


class OpenAICompatibleProvider(Provider):
    """An OpenAI-compatible vendor. Subclasses set the class attributes; the mapping is OpenAI's."""

    route_types: ClassVar[frozenset[RouteType]] = ALL_ROUTE_TYPES
    key_field: ClassVar[str] = "api_key"
    base_field: ClassVar[str] = "api_base"
    # None: the route must set `base_field`.
    default_api_base: ClassVar[str | None] = None
    key_required: ClassVar[bool] = True
    # The vendor has no completions API: a completions route sends the prompt to chat.
    completions_via_chat: ClassVar[bool] = False
    supports_n: ClassVar[bool] = True
    # Send `stream_options.include_usage` (False: the vendor reports usage unasked, or rejects it).
    ask_stream_usage: ClassVar[bool] = True
    supports_streaming: ClassVar[bool] = True
    temperature_scale: ClassVar[float] = 1.0

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.secret_fields = (cls.key_field,)
        cls.config_fields = (cls.base_field,)
        required = [cls.key_field] if cls.key_required else []
        if cls.default_api_base is None:
            required.append(cls.base_field)
        cls.required_fields = tuple(required)

    # ---- config

    def api_base(self, config: Mapping[str, Any]) -> str:
        """The route's base URL (no trailing slash), else the vendor's default."""
        base = str(config.get(self.base_field) or "").strip().rstrip("/")
        return base or (self.default_api_base or "")

    def api_key(self, target: Target) -> str | None:
        """The key to send as a bearer token, or None for none."""
        return (target.secrets.get(self.key_field) or "").strip() or None

    def validate_config(
        self, *, route_type: RouteType, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        super().validate_config(route_type=route_type, config=config, secrets=secrets)
        parts = urlsplit(self.api_base(config))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProviderConfigError(f"{self.base_field} must be an http:// or https:// URL.")

    # ---- requests

    def check_request(self, request: StdRequest) -> None:
        """Raise InvalidRequest (400) for what the vendor cannot do with this request."""
        params = getattr(request, "params", None)
        if params is not None and params.n != 1 and not self.supports_n:
            raise InvalidRequest(
                f"Provider '{self.name}' returns one candidate per call; n must be 1 (got {params.n})."
            )

    def build_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        self.check_request(request)
        return build_upstream_request(
            OpenAISettings(api_type="openai", api_base=self.api_base(target.config)),
            model=target.model,
            api_key=self.api_key(target),
            request=request,
            via_chat=self.completions_via_chat,
        )

    def build_stream_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        plain = self.build_request(target, request)
        body = {**plain.json, "stream": True}
        if self.ask_stream_usage:
            body["stream_options"] = {"include_usage": True}
        return UpstreamRequest(method=plain.method, url=plain.url, headers=plain.headers, json=body,
                               params=plain.params)

    # ---- responses

    def normalize(self, response: StdResponse) -> StdResponse:
        """Vendor-specific touches on a parsed answer (none by default)."""
        return response

    def parse_response(self, target: Target, request: StdRequest, response: UpstreamResponse) -> StdResponse:
        parsed = from_vendor_body(request, load_json(response.body), default_model=target.model)
        return with_estimated_usage(request, self.normalize(parsed))

    def map_error(self, target: Target, response: UpstreamResponse) -> GatewayError:
        return error_from_vendor(response, target.secrets)

    def stream_parser(self, target: Target, request: StdRequest) -> StreamParser:
        return OpenAIStreamParser(default_model=target.model, secrets=target.secrets)


# ---------------------------------------------------------------- the vendors


class GroqStreamParser(OpenAIStreamParser):
    """Groq's chunks: OpenAI's, with the final usage also (older API) under `x_groq.usage`."""

    def usage_of(self, payload: Mapping[str, Any]) -> Usage | None:
        usage = super().usage_of(payload)
        groq = payload.get("x_groq")
        if usage is None and isinstance(groq, Mapping) and isinstance(groq.get("usage"), Mapping):
            usage = usage_from_vendor(groq)
        return usage


class GroqProvider(OpenAICompatibleProvider):
    name: ClassVar[str] = "groq"
    default_api_base: ClassVar[str | None] = "https://api.groq.com/openai/v1"
    route_types: ClassVar[frozenset[RouteType]] = CHAT_AND_COMPLETIONS
    completions_via_chat: ClassVar[bool] = True
    supports_n: ClassVar[bool] = False

    def stream_parser(self, target: Target, request: StdRequest) -> StreamParser:
        return GroqStreamParser(default_model=target.model, secrets=target.secrets)


def deepseek_fim_url(api_base: str) -> str:
    """DeepSeek's FIM completions URL for a base URL: `{root}/beta/completions`.

    DeepSeek documents `https://api.deepseek.com` (or `.../v1`, for OpenAI SDK compatibility) as the
    base, and FIM completions only under `https://api.deepseek.com/beta`.
    """
    root = api_base.rstrip("/").removesuffix("/v1").removesuffix("/beta")
    return f"{root}/beta/completions"


class DeepSeekProvider(OpenAICompatibleProvider):
    name: ClassVar[str] = "deepseek"
    default_api_base: ClassVar[str | None] = "https://api.deepseek.com"
    route_types: ClassVar[frozenset[RouteType]] = CHAT_AND_COMPLETIONS
    supports_n: ClassVar[bool] = False

    def build_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        plain = super().build_request(target, request)
        if not isinstance(request, CompletionsRequest):
            return plain
        return UpstreamRequest(method=plain.method, url=deepseek_fim_url(self.api_base(target.config)),
                               headers=plain.headers, json=plain.json, params=plain.params)


class XAIProvider(OpenAICompatibleProvider):
    name: ClassVar[str] = "xai"
    default_api_base: ClassVar[str | None] = "https://api.x.ai/v1"


class OpenRouterProvider(OpenAICompatibleProvider):
    name: ClassVar[str] = "openrouter"
    default_api_base: ClassVar[str | None] = "https://openrouter.ai/api/v1"
    supports_n: ClassVar[bool] = False


TOGETHER_FINISH_REASONS = {"eos": "stop", "stop_sequence": "stop"}


class TogetherStreamParser(OpenAIStreamParser):
    def finish_reason(self, reason: Any) -> str | None:
        value = super().finish_reason(reason)
        return TOGETHER_FINISH_REASONS.get(value, value) if value is not None else None


class TogetherAIProvider(OpenAICompatibleProvider):
    name: ClassVar[str] = "togetherai"
    key_field: ClassVar[str] = "togetherai_api_key"
    base_field: ClassVar[str] = "togetherai_api_base"
    default_api_base: ClassVar[str | None] = "https://api.together.xyz/v1"
    ask_stream_usage: ClassVar[bool] = False

    def check_request(self, request: StdRequest) -> None:
        super().check_request(request)
        if isinstance(request, CompletionsRequest) and not request.params.max_tokens:
            raise InvalidRequest(
                "Provider 'togetherai' needs max_tokens for completions (TogetherAI's completions API "
                "requires it): send max_tokens, or set the route's default."
            )

    def normalize(self, response: StdResponse) -> StdResponse:
        if isinstance(response, ChatResponse | CompletionsResponse):
            for choice in response.choices:
                if choice.finish_reason is not None:
                    choice.finish_reason = TOGETHER_FINISH_REASONS.get(choice.finish_reason, choice.finish_reason)
        return response

    def stream_parser(self, target: Target, request: StdRequest) -> StreamParser:
        return TogetherStreamParser(default_model=target.model, secrets=target.secrets)


OLLAMA_PLACEHOLDER_KEY = "ollama"


class OllamaProvider(OpenAICompatibleProvider):
    name: ClassVar[str] = "ollama"
    default_api_base: ClassVar[str | None] = "http://localhost:11434/v1"
    key_required: ClassVar[bool] = False
    supports_n: ClassVar[bool] = False

    def api_key(self, target: Target) -> str | None:
        key = super().api_key(target)
        # MLflow's OllamaConfig defaults the key to "ollama" and sends no header for it.
        return None if key == OLLAMA_PLACEHOLDER_KEY else key


class VLLMProvider(OpenAICompatibleProvider):
    name: ClassVar[str] = "vllm"
    default_api_base: ClassVar[str | None] = None
    key_required: ClassVar[bool] = False


__all__ = [
    "DeepSeekProvider",
    "GroqProvider",
    "OllamaProvider",
    "OpenAICompatibleProvider",
    "OpenRouterProvider",
    "TogetherAIProvider",
    "VLLMProvider",
    "XAIProvider",
    "deepseek_fim_url",
]
