"""OpenAI, Azure OpenAI, and OpenAI-compatible servers (vLLM, Ollama, llama.cpp, LM Studio...).

Config keys are MLflow's (`mlflow/gateway/config.py`, `OpenAIConfig`):

- `openai_api_key` (secret): the API key; for `azuread`, the Entra ID bearer token.
- `openai_api_type`: `openai` (default), `azure` or `azuread`; case-insensitive.
- `openai_api_base`: default `https://api.openai.com/v1` for `openai`; required for Azure
  (`https://<resource>.openai.azure.com`).
- `openai_api_version`: required for Azure (sent as `?api-version=`); sent too for `openai` if set.
- `openai_deployment_name`: required for Azure, refused for `openai` (as MLflow does).
- `openai_organization`: `OpenAI-Organization` header; refused for Azure (as MLflow does).

The key is required for OpenAI's own API (the default base, or any `api.openai.com` base) and for
Azure. It is optional for any other base: local OpenAI-compatible servers usually want none, and
without a key no `Authorization` header is sent.

Wire shapes: `openai` sends `Authorization: Bearer KEY` to `{base}/chat/completions`,
`{base}/completions` and `{base}/embeddings` with `model` in the body; `azure` sends `api-key: KEY`
to `{base}/openai/deployments/{deployment}/{path}?api-version=...` with no `model` (the deployment
names it); `azuread` has Azure's URL shape and `Authorization: Bearer TOKEN`. A completions route
calls the completions API, except on OpenAI's own API and Azure for a chat model (anything not an
instruct/davinci/babbage model): there the prompt goes to the chat API as one user message, as MLflow
2.5 did, so the seed's `gpt-4` completions route works.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

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
    load_json,
    map_vendor_error,
    mid_stream_error,
    optional_int,
    optional_str,
    prompt_as_chat,
    vendor_error_message,
)
from providers.streaming import ChoiceDelta, ChunkParser, SSEEvent, StreamChunk, StreamParser

DEFAULT_API_BASE = "https://api.openai.com/v1"
API_TYPES = ("openai", "azure", "azuread")
AZURE_TYPES = ("azure", "azuread")
PATHS = {
    RouteType.CHAT: "chat/completions",
    RouteType.COMPLETIONS: "completions",
    RouteType.EMBEDDINGS: "embeddings",
}


@dataclass(frozen=True, slots=True)
class OpenAISettings:
    """The non-secret part of a route's config, resolved with MLflow's defaults."""

    api_type: str
    api_base: str
    api_version: str | None = None
    deployment_name: str | None = None
    organization: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> OpenAISettings:
        api_type = str(config.get("openai_api_type") or "openai").strip().lower()
        base = str(config.get("openai_api_base") or "").strip().rstrip("/")
        if not base and api_type == "openai":
            base = DEFAULT_API_BASE
        return cls(
            api_type=api_type,
            api_base=base,
            api_version=optional_str(config.get("openai_api_version")),
            deployment_name=optional_str(config.get("openai_deployment_name")),
            organization=optional_str(config.get("openai_organization")),
        )

    @property
    def is_azure(self) -> bool:
        return self.api_type in AZURE_TYPES

    @property
    def key_required(self) -> bool:
        return self.is_azure or urlsplit(self.api_base).hostname == "api.openai.com"


# ---------------------------------------------------------------- request mapping (pure)


def params_to_vendor(params: CommonParams, *, temperature_scale: float = 1.0) -> dict[str, Any]:
    """CommonParams → OpenAI's body fields; None values are left out, `n` only when not 1.

    `temperature_scale` is for OpenAI-shaped vendors whose temperature range differs (Mistral's).
    """
    body: dict[str, Any] = {}
    if params.temperature is not None:
        body["temperature"] = params.temperature * temperature_scale
    optional = {
        "max_tokens": params.max_tokens,
        "stop": list(params.stop) if params.stop else None,
        "top_p": params.top_p,
        "presence_penalty": params.presence_penalty,
        "frequency_penalty": params.frequency_penalty,
    }
    body.update({key: value for key, value in optional.items() if value is not None})
    if params.n != 1:
        body["n"] = params.n
    return body


def chat_to_vendor(request: ChatRequest, *, temperature_scale: float = 1.0) -> dict[str, Any]:
    messages = [{"role": m.role, "content": m.content} for m in request.messages]
    return {"messages": messages, **params_to_vendor(request.params, temperature_scale=temperature_scale)}


def completions_to_vendor(request: CompletionsRequest, *, temperature_scale: float = 1.0) -> dict[str, Any]:
    return {"prompt": request.prompt, **params_to_vendor(request.params, temperature_scale=temperature_scale)}


def embeddings_to_vendor(request: EmbeddingsRequest) -> dict[str, Any]:
    return {"input": list(request.inputs)}


def to_vendor_body(request: StdRequest, *, temperature_scale: float = 1.0) -> dict[str, Any]:
    if isinstance(request, ChatRequest):
        return chat_to_vendor(request, temperature_scale=temperature_scale)
    if isinstance(request, CompletionsRequest):
        return completions_to_vendor(request, temperature_scale=temperature_scale)
    return embeddings_to_vendor(request)


_LEGACY_COMPLETION_MODEL = re.compile(r"instruct|davinci|babbage|curie", re.IGNORECASE)


def completions_via_chat(settings: OpenAISettings, model: str) -> bool:
    """Whether a completions route must call the chat API (as MLflow 2.5 did for OpenAI).

    OpenAI and Azure serve `/completions` only for the legacy instruct models, so a completions
    route on `gpt-4` (the seed's example) sends the prompt as one user message to the chat API.
    OpenAI-compatible servers (vLLM, Ollama, ...) serve `/completions` for any model.
    """
    hosted = settings.is_azure or urlsplit(settings.api_base).hostname == "api.openai.com"
    return hosted and not _LEGACY_COMPLETION_MODEL.search(model)


def build_upstream_request(
    settings: OpenAISettings,
    *,
    model: str,
    api_key: str | None,
    request: StdRequest,
    via_chat: bool | None = None,
) -> UpstreamRequest:
    """The HTTP request for `request`, in OpenAI's or Azure's URL and auth shape.

    `via_chat` says whether a completions request goes to the chat API; None decides by
    `completions_via_chat` (OpenAI-compatible vendors without a completions API pass True).
    """
    path = PATHS[request.route_type]
    headers: dict[str, str] = {}
    body = to_vendor_body(request)
    if via_chat is None:
        via_chat = completions_via_chat(settings, model)
    if isinstance(request, CompletionsRequest) and via_chat:
        path = PATHS[RouteType.CHAT]
        body = chat_to_vendor(prompt_as_chat(request))
    if settings.is_azure:
        deployment = quote(settings.deployment_name or "", safe="")
        url = f"{settings.api_base}/openai/deployments/{deployment}/{path}"
        if api_key and settings.api_type == "azure":
            headers["api-key"] = api_key
        elif api_key:
            headers["Authorization"] = f"Bearer {api_key}"
    else:
        url = f"{settings.api_base}/{path}"
        body = {"model": model, **body}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        if settings.organization:
            headers["OpenAI-Organization"] = settings.organization
    params = {"api-version": settings.api_version} if settings.api_version else None
    return UpstreamRequest(method="POST", url=url, headers=headers, json=body, params=params)


# ---------------------------------------------------------------- response parsing (pure)


def usage_from_vendor(data: Mapping[str, Any], *, embeddings: bool = False) -> Usage:
    """OpenAI's `usage` → Usage; all None when the server reported none (some compatible ones)."""
    usage = data.get("usage")
    if not isinstance(usage, Mapping):
        return Usage()
    prompt = optional_int(usage.get("prompt_tokens"))
    completion = optional_int(usage.get("completion_tokens"))
    if embeddings and completion is None and prompt is not None:
        completion = 0
    total = optional_int(usage.get("total_tokens"))
    return Usage(input_tokens=prompt, output_tokens=completion, total_tokens=total)


def content_text(content: Any) -> str:
    """A message's (or a delta's) `content` as text.

    A string as is; a list of content parts (what reasoning models on Databricks and other
    OpenAI-compatible servers answer) → its `text` parts joined, other parts (reasoning, images)
    left out; None → "".
    """
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text") or "")
            for part in content
            if isinstance(part, Mapping) and part.get("type", "text") == "text"
        )
    return str(content)


def chat_from_vendor(data: Mapping[str, Any], *, default_model: str) -> ChatResponse:
    choices = [
        ChatChoice(
            index=int(c.get("index", i)),
            message=ChatMessage(
                role=str(c["message"].get("role") or "assistant"),
                content=content_text(c["message"].get("content")),
            ),
            finish_reason=c.get("finish_reason"),
        )
        for i, c in enumerate(data["choices"])
    ]
    return ChatResponse(
        model=str(data.get("model") or default_model),
        choices=choices,
        usage=usage_from_vendor(data),
        id=data.get("id"),
        created=optional_int(data.get("created")),
    )


def completions_from_vendor(data: Mapping[str, Any], *, default_model: str) -> CompletionsResponse:
    choices = [
        CompletionChoice(
            index=int(c.get("index", i)),
            # a chat answer when the prompt went through the chat API (see completions_via_chat)
            text=str(c["text"]) if "text" in c else content_text(c["message"].get("content")),
            finish_reason=c.get("finish_reason"),
        )
        for i, c in enumerate(data["choices"])
    ]
    return CompletionsResponse(
        model=str(data.get("model") or default_model),
        choices=choices,
        usage=usage_from_vendor(data),
        id=data.get("id"),
        created=optional_int(data.get("created")),
    )


def embeddings_from_vendor(data: Mapping[str, Any], *, default_model: str) -> EmbeddingsResponse:
    items = sorted(data["data"], key=lambda item: int(item["index"]))
    return EmbeddingsResponse(
        model=str(data.get("model") or default_model),
        embeddings=[[float(x) for x in item["embedding"]] for item in items],
        usage=usage_from_vendor(data, embeddings=True),
    )


def from_vendor_body(request: StdRequest, data: Any, *, default_model: str) -> StdResponse:
    if not isinstance(data, Mapping):
        raise TypeError("response body is not a JSON object")
    if isinstance(request, ChatRequest):
        return chat_from_vendor(data, default_model=default_model)
    if isinstance(request, CompletionsRequest):
        return completions_from_vendor(data, default_model=default_model)
    return embeddings_from_vendor(data, default_model=default_model)


# ---------------------------------------------------------------- errors (pure)


def error_from_vendor(
    response: UpstreamResponse,
    secrets: Secrets,
    *,
    extract: Callable[[bytes], str | None] = vendor_error_message,
) -> GatewayError:
    """A vendor error answer → the GatewayError callers see (never with a credential in it).

    `extract` finds the human message in the body (OpenAI-compatible vendors with their own error
    shape pass theirs). OpenAI echoes part of the key in its 401 message: none of a 401/403 is shown.
    """
    return map_vendor_error(response, secrets, extract=extract)


# ---------------------------------------------------------------- the provider


class OpenAIProvider(Provider):
    name: ClassVar[str] = "openai"
    route_types: ClassVar[frozenset[RouteType]] = frozenset(RouteType)
    secret_fields: ClassVar[tuple[str, ...]] = ("openai_api_key",)
    config_fields: ClassVar[tuple[str, ...]] = (
        "openai_api_type",
        "openai_api_base",
        "openai_api_version",
        "openai_deployment_name",
        "openai_organization",
    )
    # Which fields are required depends on the API type and base: see validate_config.
    required_fields: ClassVar[tuple[str, ...]] = ()
    temperature_scale: ClassVar[float] = 1.0

    def validate_config(
        self, *, route_type: RouteType, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        super().validate_config(route_type=route_type, config=config, secrets=secrets)
        settings = OpenAISettings.from_config(config)
        if settings.api_type not in API_TYPES:
            raise ProviderConfigError(
                f"Invalid openai_api_type '{config.get('openai_api_type')}' "
                f"(use one of: {', '.join(API_TYPES)})."
            )
        if settings.is_azure:
            missing = [
                name
                for name in ("openai_api_base", "openai_deployment_name", "openai_api_version")
                if not optional_str(config.get(name))
            ]
            if missing:
                raise ProviderConfigError(
                    f"openai_api_type '{settings.api_type}' needs config field(s): {', '.join(missing)}."
                )
            if settings.organization:
                raise ProviderConfigError(
                    "openai_organization is only allowed with openai_api_type 'openai'."
                )
        elif settings.deployment_name:
            raise ProviderConfigError(
                "openai_deployment_name is only allowed with openai_api_type 'azure' or 'azuread'."
            )
        if urlsplit(settings.api_base).scheme not in ("http", "https"):
            raise ProviderConfigError("openai_api_base must be an http:// or https:// URL.")
        if settings.key_required and not (config.get("openai_api_key") or secrets.get("openai_api_key")):
            raise ProviderConfigError(
                "Provider 'openai' needs config field(s): openai_api_key "
                "(required for OpenAI's own API and for Azure)."
            )

    def build_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        key = (target.secrets.get("openai_api_key") or "").strip() or None
        return build_upstream_request(
            OpenAISettings.from_config(target.config), model=target.model, api_key=key, request=request
        )

    def parse_response(self, target: Target, request: StdRequest, response: UpstreamResponse) -> StdResponse:
        return from_vendor_body(request, load_json(response.body), default_model=target.model)

    def map_error(self, target: Target, response: UpstreamResponse) -> GatewayError:
        return error_from_vendor(response, target.secrets)

    supports_streaming: ClassVar[bool] = True

    def build_stream_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        plain = self.build_request(target, request)
        # Ask for the final usage chunk: every stream is recorded with the vendor's own counts.
        body = {**plain.json, "stream": True, "stream_options": {"include_usage": True}}
        return UpstreamRequest(method=plain.method, url=plain.url, headers=plain.headers, json=body,
                               params=plain.params)

    def stream_parser(self, target: Target, request: StdRequest) -> StreamParser:
        return OpenAIStreamParser(default_model=target.model, secrets=target.secrets)


class OpenAIStreamParser(ChunkParser):
    """OpenAI's SSE framing: `data: {chunk}` events, `data: [DONE]` at the end; an `error` object
    mid-stream is the vendor failing after it started."""

    def __init__(self, *, default_model: str, secrets: Secrets) -> None:
        super().__init__()
        self._default_model = default_model
        self._secrets = secrets

    def event_chunk(self, event: SSEEvent) -> StreamChunk | None:
        if event.data.strip() == "[DONE]":
            return None
        payload = orjson.loads(event.data)
        if not isinstance(payload, Mapping):
            raise TypeError("stream chunk is not a JSON object")
        error = self.error_message(payload)
        if error is not None:
            raise mid_stream_error(error, self._secrets)
        deltas = []
        for i, choice in enumerate(payload.get("choices") or []):
            delta = choice.get("delta")
            text = content_text(delta.get("content")) if isinstance(delta, Mapping) else str(choice.get("text") or "")
            role = delta.get("role") if isinstance(delta, Mapping) else None
            deltas.append(ChoiceDelta(index=int(choice.get("index", i)), text=text, role=role,
                                      finish_reason=self.finish_reason(choice.get("finish_reason"))))
        return StreamChunk(deltas=deltas, usage=self.usage_of(payload),
                           model=str(payload.get("model") or self._default_model), id=payload.get("id"))

    # Hooks for OpenAI-compatible vendors whose streams differ in detail.

    def error_message(self, payload: Mapping[str, Any]) -> str | None:
        """The vendor's message if `payload` is an error event (`{"error": ...}`), else None."""
        error = payload.get("error")
        if error is None:  # absent, or `"error": null` as some compatible servers send
            return None
        if isinstance(error, str):
            return error or "stream error"
        message = error.get("message") if isinstance(error, Mapping) else None
        return str(message or "stream error")

    def usage_of(self, payload: Mapping[str, Any]) -> Usage | None:
        """The usage a chunk carries (OpenAI's `usage`), else None."""
        return usage_from_vendor(payload) if isinstance(payload.get("usage"), Mapping) else None

    def finish_reason(self, reason: Any) -> str | None:
        """A chunk's finish_reason in OpenAI's terms (as sent, for OpenAI)."""
        return None if reason is None else str(reason)
