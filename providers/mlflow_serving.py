"""MLflow Model Serving: a model served by `mlflow models serve` (or any MLflow scoring server),
as MLflow's `MlflowModelServingProvider` calls it.

Config key (MLflow's, `MlflowModelServingConfig`): `model_server_url` (required), the server's
root, e.g. `http://127.0.0.1:5001`; the adapter posts to `{model_server_url}/invocations`. No
credential: MLflow's scoring server has no authentication (MLflow sends none).

Wire format (MLflow's scoring protocol): `{"inputs": [...], "params": {...}}` →
`{"predictions": ...}`.

- Completions: `inputs` is `[prompt]`; the predictions are the answer texts, one candidate each.
- Chat: MLflow's served chat models take one query: `inputs` is `[content of the one message]`;
  more than one message is refused (400), as MLflow refuses it.
- Embeddings: `inputs` is the texts; the predictions are one vector per text (a single flat vector
  is taken as one embedding, as MLflow does).
- `params` carries the request's set parameters by their OpenAI names (`temperature` on OpenAI's
  0..2 scale, as MLflow passes it, `max_tokens`, `stop`, `n`, `top_p`, penalties); it is left out
  when none is set. The served model's signature decides what it honours.
- Text predictions may be a list of strings or, as MLflow accepts, a dict with one key (its value is
  the list) or a `choices` key. Anything else is a 502 UPSTREAM_BAD_RESPONSE.
- The scoring server reports no usage: tokens are counted with tiktoken and marked estimated.
- No streaming: the scoring server answers at once.
- Errors: the scoring server answers `{"error_code", "message", "stack_trace"}`; only the message
  (redacted, capped) is shown; statuses map as OpenAI's do.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from providers import openai
from providers.base import (
    ChatChoice,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    CompletionChoice,
    CompletionsResponse,
    EmbeddingsRequest,
    EmbeddingsResponse,
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
)
from providers.common import load_json
from providers.tokens import estimate_usage

PREDICTIONS = "predictions"


# ---------------------------------------------------------------- request mapping (pure)


def to_vendor_body(request: StdRequest) -> dict[str, Any]:
    """The scoring server's `{"inputs": [...], "params": {...}}` body for `request`."""
    if isinstance(request, EmbeddingsRequest):
        return {"inputs": list(request.inputs)}
    if isinstance(request, ChatRequest):
        if len(request.messages) != 1:
            raise InvalidRequest(
                "Provider 'mlflow-model-serving' takes one chat message per call (MLflow's served chat "
                f"models answer a single query); got {len(request.messages)}."
            )
        inputs = [request.messages[0].content]
    else:
        inputs = [request.prompt]
    body: dict[str, Any] = {"inputs": inputs}
    if params := openai.params_to_vendor(request.params):
        body["params"] = params
    return body


def build_upstream_request(model_server_url: str, request: StdRequest) -> UpstreamRequest:
    url = f"{model_server_url.rstrip('/')}/invocations"
    return UpstreamRequest(method="POST", url=url, headers={"Content-Type": "application/json"},
                           json=to_vendor_body(request))


# ---------------------------------------------------------------- response parsing (pure)


def text_predictions(data: Any) -> list[str]:
    """The answer texts in `{"predictions": ...}`; ValueError/KeyError/TypeError if there are none."""
    predictions = data[PREDICTIONS]
    if isinstance(predictions, Mapping):
        if len(predictions) == 1:
            predictions = next(iter(predictions.values()))
        elif "choices" in predictions:
            predictions = predictions["choices"]
        else:
            raise ValueError("predictions is a dict without a 'choices' key")
    if not isinstance(predictions, list) or not predictions:
        raise ValueError("predictions is not a non-empty list")
    if not all(isinstance(text, str) for text in predictions):
        raise TypeError("predictions are not all strings")
    return list(predictions)


def embedding_predictions(data: Any, *, expected: int) -> list[list[float]]:
    """The vectors in `{"predictions": ...}` (a flat vector is one embedding); ValueError unless
    there are `expected` non-empty numeric vectors."""
    predictions = data[PREDICTIONS]
    if isinstance(predictions, list) and predictions and all(_is_number(x) for x in predictions):
        predictions = [predictions]
    if (
        not isinstance(predictions, list)
        or len(predictions) != expected
        or not all(isinstance(v, list) and v and all(_is_number(x) for x in v) for v in predictions)
    ):
        raise ValueError(f"expected {expected} non-empty numeric vectors")
    return [[float(x) for x in vector] for vector in predictions]


def from_vendor_body(request: StdRequest, data: Any, *, model: str) -> StdResponse:
    """The scoring server's answer → the standard response, usage counted (estimated)."""
    if not isinstance(data, Mapping):
        raise TypeError("response body is not a JSON object")
    if isinstance(request, EmbeddingsRequest):
        vectors = embedding_predictions(data, expected=len(request.inputs))
        return EmbeddingsResponse(model=model, embeddings=vectors, usage=estimate_usage(request, []))
    texts = text_predictions(data)
    usage = estimate_usage(request, texts)
    if isinstance(request, ChatRequest):
        choices = [ChatChoice(index=i, message=ChatMessage("assistant", t)) for i, t in enumerate(texts)]
        return ChatResponse(model=model, choices=choices, usage=usage)
    return CompletionsResponse(
        model=model, choices=[CompletionChoice(index=i, text=t) for i, t in enumerate(texts)], usage=usage
    )


# ---------------------------------------------------------------- the provider


class MlflowModelServingProvider(Provider):
    name: ClassVar[str] = "mlflow-model-serving"
    route_types: ClassVar[frozenset[RouteType]] = frozenset(RouteType)
    config_fields: ClassVar[tuple[str, ...]] = ("model_server_url",)
    required_fields: ClassVar[tuple[str, ...]] = ("model_server_url",)
    temperature_scale: ClassVar[float] = 1.0

    def validate_config(
        self, *, route_type: RouteType, config: Mapping[str, Any], secrets: Mapping[str, str]
    ) -> None:
        super().validate_config(route_type=route_type, config=config, secrets=secrets)
        parts = urlsplit(str(config.get("model_server_url") or "").strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ProviderConfigError("model_server_url must be an http:// or https:// URL.")

    def build_request(self, target: Target, request: StdRequest) -> UpstreamRequest:
        return build_upstream_request(str(target.config.get("model_server_url") or "").strip(), request)

    def parse_response(self, target: Target, request: StdRequest, response: UpstreamResponse) -> StdResponse:
        return from_vendor_body(request, load_json(response.body), model=target.model)

    def map_error(self, target: Target, response: UpstreamResponse) -> GatewayError:
        return openai.error_from_vendor(response, target.secrets)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


__all__ = ["MlflowModelServingProvider"]
