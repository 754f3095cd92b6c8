"""MosaicML Inference: `POST {mosaicml_api_base}/{model}/v1/predict`, MLflow's wire format.

Config keys (MLflow's `MosaicMLConfig`):

- `mosaicml_api_key` (secret, required): sent as the bare `Authorization` header value (no `Bearer`),
  as MosaicML's API and MLflow's adapter do.
- `mosaicml_api_base`: default `https://models.hosted-on.mosaicml.hosting` (MLflow's default); set it
  for an Enterprise-tier deployment or the test fake.

Route types: completions, chat and embeddings, as MLflow offers them.

- Completions: `{"inputs": [prompt], "parameters": {...}}` → `{"outputs": ["..."]}` (one output per
  input). Parameters, as MLflow sends them: `max_tokens` → `max_new_tokens`; `temperature` unscaled
  (MLflow passes its 0..2 value through; MosaicML's models take Hugging Face `generate` semantics, where
  the temperature divides the logits as OpenAI's does); `top_p` and `stop` as they are. `n` > 1 is
  refused with 400 (one output per input), and so are non-zero penalties (MosaicML has none).
- Chat: MosaicML serves text completion, so the messages become one Llama-2-chat prompt, the format
  MLflow builds (Hugging Face's "How to prompt Llama 2"): `<s>[INST] <<SYS>> {system} <</SYS>> {user}
  [/INST] {answer} </s><s>[INST] {user} [/INST]`. MLflow allows chat only for models whose name starts
  with `llama2`; the provider interface validates a route's config without its model name, so that
  check happens when the call is made: chat on another model is a 400 before any upstream call.
- Embeddings (the instructor models, e.g. `instructor-large`, `instructor-xl`): `{"inputs": [texts]}`
  → `{"outputs": [[floats], ...]}`, one vector per text, in order.
- Usage: MosaicML reports none, so input and output are counted with tiktoken (the chat prompt as sent,
  template included) and marked estimated; embeddings count their input only.
- No streaming: MosaicML's predict API (and MLflow's adapter) answer at once.

Errors: MosaicML answers `{"message": "..."}`. Like MLflow, a 500 whose message begins "Error: max
output tokens is limited to" or "Error: prompt token count" is the caller's mistake, so it is a 400
UPSTREAM_BAD_REQUEST; otherwise 400/404/413/422 → 400, 401/403 → 502 UPSTREAM_AUTH_FAILED (fixed
text), 429 → 502 UPSTREAM_RATE_LIMITED, the rest → 502 UPSTREAM_ERROR. Messages are redacted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

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
    UpstreamRequest,
    UpstreamResponse,
    Usage,
)
from providers.common import (
    bad_request_error,
    load_json,
    map_vendor_error,
    refuse_penalties,
    safe_vendor_message,
    vendor_error_message,
)
from providers.tokens import count_text_tokens

DEFAULT_API_BASE = "https://models.hosted-on.mosaicml.hosting"
PREDICT_PATH = "/v1/predict"
CHAT_MODEL_PREFIXES = ("llama2",)  # MLflow's MLFLOW_AI_GATEWAY_MOSAICML_CHAT_SUPPORTED_MODEL_PREFIXES
# Server errors MosaicML sends for requests that exceed the model's limits (MLflow maps them to 422).
CALLER_ERROR_PREFIXES = ("Error: max output tokens is limited to", "Error: prompt token count")

INST_OPEN, INST_CLOSE = "[INST] ", " [/INST]"
TURN_END = " </s><s>"


@dataclass(frozen=True, slots=True)
class MosaicMLSettings:
    """The non-secret part of a route's config, with MLflow's default base."""

    api_base: str = DEFAULT_API_BASE

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MosaicMLSettings:
        return cls(api_base=str(config.get("mosaicml_api_base") or "").strip().rstrip("/") or DEFAULT_API_BASE)


# ---------------------------------------------------------------- request mapping (pure)


def llama2_chat_prompt(messages: Sequence[ChatMessage]) -> str:
    """Chat messages → one Llama-2-chat prompt, in the format MLflow's MosaicML adapter builds.

    A system message is wrapped in `<<SYS>> ... <</SYS>>`; consecutive system/user messages share one
    `[INST] ... [/INST]` block; an assistant message closes the turn with `</s><s>`, except a final one,
    which the model continues. Raises InvalidRequest for any other role.
    """
    prompt = "<s>"
    for message in messages:
        if message.role in ("system", "user"):
            text = f"<<SYS>> {message.content} <</SYS>>" if message.role == "system" else message.content
            if prompt.endswith(INST_CLOSE.strip()):
                # Still inside the open instruction block: reopen it rather than start another.
                prompt = prompt[: -len(INST_CLOSE.strip())] + text + INST_CLOSE
            else:
                prompt += INST_OPEN + text + INST_CLOSE
        elif message.role == "assistant":
            prompt += f" {message.content}{TURN_END}"
        else:
            raise InvalidRequest(
                f"Message role '{message.role}' is not supported by provider 'mosaicml' "
                "(use system, user or assistant)."
            )
    if prompt.endswith(TURN_END.strip()):
        prompt = prompt[: -len(TURN_END.strip())]
    return prompt


def parameters_to_vendor(params: CommonParams) -> dict[str, Any]:
    """CommonParams → MosaicML's `parameters`; raises InvalidRequest for what it cannot do."""
    if params.n != 1:
        raise InvalidRequest(
            f"n (candidate_count) must be 1 for provider 'mosaicml': it answers one output per prompt "
            f"(got {params.n})."
        )
    refuse_penalties(params, "provider 'mosaicml'")
    parameters: dict[str, Any] = {}
    if params.temperature is not None:
        parameters["temperature"] = params.temperature * MosaicMLProvider.temperature_scale
    if params.max_tokens is not None:
        parameters["max_new_tokens"] = params.max_tokens
    if params.top_p is not None:
        parameters["top_p"] = params.top_p
    if params.stop:
        parameters["stop"] = list(params.stop)
    return parameters


def is_chat_model(model: str) -> bool:
    return model.strip().lower().startswith(CHAT_MODEL_PREFIXES)


def prompt_of(request: ChatRequest | CompletionsRequest) -> str:
    """The text MosaicML completes for `request`: the prompt, or the chat messages in Llama 2's format."""
    return request.prompt if isinstance(request, CompletionsRequest) else llama2_chat_prompt(request.messages)


def to_vendor_body(request: StdRequest, *, model: str) -> dict[str, Any]:
    """The predict body for `request`. Raises InvalidRequest for chat on a model MLflow would refuse."""
    if isinstance(request, EmbeddingsRequest):
        return {"inputs": list(request.inputs)}
    if isinstance(request, ChatRequest) and not is_chat_model(model):
        raise InvalidRequest(
            f"Provider 'mosaicml' serves chat only for Llama 2 chat models (a model name starting with "
            f"{', '.join(repr(p) for p in CHAT_MODEL_PREFIXES)}); '{model}' is not one."
        )
    return {"inputs": [prompt_of(request)], "parameters": parameters_to_vendor(request.params)}


def build_upstream_request(
    settings: MosaicMLSettings, *, model: str, api_key: str, request: StdRequest
) -> UpstreamRequest:
    """The HTTP request for `request` against `{base}/{model}/v1/predict`."""
    url = f"{settings.api_base}/{quote(model, safe='')}{PREDICT_PATH}"
    headers = {"Authorization": api_key, "Accept": "application/json"}
    return UpstreamRequest(method="POST", url=url, headers=headers, json=to_vendor_body(request, model=model))


# ---------------------------------------------------------------- response parsing (pure)


def outputs_of(data: Any) -> list[Any]:
    """The `outputs` list of a predict answer; raises unless there is one."""
    if not isinstance(data, Mapping) or not isinstance(data["outputs"], list):
        raise TypeError("not a MosaicML predict answer")
    return list(data["outputs"])


def estimated_usage(prompt: str, texts: Sequence[str]) -> Usage:
    return Usage(
        input_tokens=count_text_tokens(prompt),
        output_tokens=sum(count_text_tokens(text) for text in texts),
        estimated=True,
    )


def completions_from_vendor(data: Any, *, model: str, prompt: str) -> CompletionsResponse:
    texts = [str(output) for output in outputs_of(data)]
    return CompletionsResponse(
        model=model,
        choices=[CompletionChoice(index=i, text=text, finish_reason=None) for i, text in enumerate(texts)],
        usage=estimated_usage(prompt, texts),
    )


def chat_from_vendor(data: Any, *, model: str, prompt: str) -> ChatResponse:
    texts = [str(output) for output in outputs_of(data)]
    return ChatResponse(
        model=model,
        choices=[
            ChatChoice(index=i, message=ChatMessage(role="assistant", content=text), finish_reason=None)
            for i, text in enumerate(texts)
        ],
        usage=estimated_usage(prompt, texts),
    )


def embeddings_from_vendor(data: Any, *, model: str, inputs: Sequence[str]) -> EmbeddingsResponse:
    """A predict answer for embeddings → EmbeddingsResponse; ValueError unless one vector per input."""
    vectors = outputs_of(data)
    if len(vectors) != len(inputs) or not all(isinstance(v, list) for v in vectors):
        raise ValueError(f"expected {len(inputs)} embedding vectors")
    return EmbeddingsResponse(
        model=model,
        embeddings=[[float(x) for x in vector] for vector in vectors],
        usage=Usage(input_tokens=sum(count_text_tokens(t) for t in inputs), output_tokens=0, estimated=True),
    )


def from_vendor_body(request: StdRequest, data: Any, *, model: str) -> StdResponse:
    if isinstance(request, EmbeddingsRequest):
        return embeddings_from_vendor(data, model=model, inputs=request.inputs)
    if isinstance(request, CompletionsRequest):
        return completions_from_vendor(data, model=model, prompt=request.prompt)
    return chat_from_vendor(data, model=model, prompt=prompt_of(request))


# ---------------------------------------------------------------- errors (pure)


def error_from_vendor(response: UpstreamResponse, secrets: Secrets) -> GatewayError:
    """A MosaicML error answer → the GatewayError callers see (never with a credential in it)."""
    if response.status == 500:
        raw = vendor_error_message(response.body) or ""
        if raw.startswith(CALLER_ERROR_PREFIXES):  # the caller exceeded the model's limits
            return bad_request_error(response.status, safe_vendor_message(raw, secrets))
    return map_vendor_error(response, secrets)


# ---------------------------------------------------------------- the provider


class MosaicMLProvider(Provider):
    name: ClassVar[str] = "mosaicml"
    route_types: ClassVar[frozenset[RouteType]] = frozenset(RouteType)
    secret_fields: ClassVar[tuple[str, ...]] = ("mosaicml_api_key",)
    config_fields: ClassVar[tuple[str, ...]] = ("mosaicml_api_base",)
    required_fields: ClassVar[tuple[str, ...]] = ("mosaicml_api_key",)
    temperature_scale: ClassVar[float] = 1.0

    def validate_config(
        self, *, route_type: RouteType, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        super().validate_config(route_type=route_type, config=config, secrets=secrets)
        parts = urlsplit(MosaicMLSettings.from_config(config).api_base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProviderConfigError("mosaicml_api_base must be an http:// or https:// URL.")
        if parts.path.rstrip("/").endswith(PREDICT_PATH):
            raise ProviderConfigError(
                "mosaicml_api_base is the server root: leave out the model and '/v1/predict', the gateway adds "
                "'/{model}/v1/predict'."
            )

    def build_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        key = (target.secrets.get("mosaicml_api_key") or "").strip()
        return build_upstream_request(
            MosaicMLSettings.from_config(target.config), model=target.model, api_key=key, request=request
        )

    def parse_response(self, target: Target, request: StdRequest, response: UpstreamResponse) -> StdResponse:
        return from_vendor_body(request, load_json(response.body), model=target.model)

    def map_error(self, target: Target, response: UpstreamResponse) -> GatewayError:
        return error_from_vendor(response, target.secrets)


__all__ = [
    "MosaicMLProvider",
    "build_upstream_request",
    "chat_from_vendor",
    "completions_from_vendor",
    "embeddings_from_vendor",
    "error_from_vendor",
    "llama2_chat_prompt",
    "parameters_to_vendor",
    "to_vendor_body",
]
