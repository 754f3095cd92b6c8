"""The MLflow 2.5 route API family: `POST /gateway/{name}/invocations` with 2.5's schemas.

Request: completions `{prompt}`, chat `{messages}`, embeddings `{text}`; `temperature` 0..1
(default 0.0, sent to the provider on OpenAI's 0..2 scale, i.e. times 2, and rescaled from there per
vendor), `candidate_count` 1..5, `stop` (≥ 1 item), `max_tokens` ≥ 1. Unknown fields are refused.
Errors: `{"error_code", "message"}`.
"""

from __future__ import annotations

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
    GatewayError,
    InvalidRequest,
    RouteType,
    StdRequest,
    StdResponse,
)

from .family import reject_redirect_fields
from .snapshot import RouteEntry


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Common(_Strict):
    temperature: float = Field(default=0.0, ge=0.0, le=1.0)
    candidate_count: int = Field(default=1, ge=1, le=5)
    stop: list[str] | None = Field(default=None, min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)

    def params(self, route: RouteEntry) -> CommonParams:
        if self.candidate_count > route.max_candidates:
            raise InvalidRequest(
                f"candidate_count: at most {route.max_candidates} for route '{route.name}' "
                f"(got {self.candidate_count})."
            )
        return CommonParams(
            temperature=self.temperature * 2.0,
            max_tokens=self.max_tokens,
            n=self.candidate_count,
            stop=self.stop,
        )


class CompletionsBody(_Common):
    prompt: str = Field(min_length=1)


class _Message(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatBody(_Common):
    messages: list[_Message] = Field(min_length=1)


class EmbeddingsBody(_Strict):
    text: str | list[str]


_PRIMARY_FIELD = {RouteType.COMPLETIONS: "prompt", RouteType.CHAT: "messages", RouteType.EMBEDDINGS: "text"}


def validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        msg = "unknown field" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{where}: {msg}")
    return "Invalid request: " + "; ".join(parts)


def check_route_type(route: RouteEntry, body: dict[str, Any], primary: dict[RouteType, str]) -> None:
    """A body meant for another route type gets a clear mismatch error, not a field list."""
    if primary[route.route_type] in body:
        return
    for rtype, fieldname in primary.items():
        if rtype != route.route_type and fieldname in body:
            raise InvalidRequest(
                f"Route '{route.name}' is a {route.route_type} route, but this body (with '{fieldname}') is "
                f"for {rtype} routes.",
                code="ROUTE_TYPE_MISMATCH",
            )


class MlflowGatewayFamily:
    name = "mlflow"

    def error_body(self, error: GatewayError) -> dict[str, Any]:
        return {"error_code": error.code, "message": error.message}

    def parse(self, route: RouteEntry, body: dict[str, Any]) -> StdRequest:
        reject_redirect_fields(body)
        check_route_type(route, body, _PRIMARY_FIELD)
        try:
            if route.route_type is RouteType.CHAT:
                chat = ChatBody.model_validate(body)
                return ChatRequest(
                    messages=[ChatMessage(role=m.role, content=m.content) for m in chat.messages],
                    params=chat.params(route),
                )
            if route.route_type is RouteType.COMPLETIONS:
                comp = CompletionsBody.model_validate(body)
                return CompletionsRequest(prompt=comp.prompt, params=comp.params(route))
            emb = EmbeddingsBody.model_validate(body)
        except ValidationError as exc:
            raise InvalidRequest(validation_message(exc)) from None
        inputs = [emb.text] if isinstance(emb.text, str) else emb.text
        if not inputs:
            raise InvalidRequest("Invalid request: text: must not be empty")
        return EmbeddingsRequest(inputs=inputs)

    def stream_renderer(self, route: RouteEntry, body: dict[str, Any]) -> None:
        return None  # the 2.5 route API has no streaming

    def render(self, route: RouteEntry, body: dict[str, Any], response: StdResponse) -> dict[str, Any]:
        usage = response.usage
        metadata = {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "total_tokens": usage.total_tokens,
            "model": response.model,
            "route_type": route.route_type.value,
        }
        if isinstance(response, EmbeddingsResponse):
            return {"embeddings": response.embeddings, "metadata": metadata}
        if isinstance(response, ChatResponse):
            candidates = [
                {
                    "message": {"role": c.message.role, "content": c.message.content},
                    "metadata": {"finish_reason": c.finish_reason},
                }
                for c in response.choices
            ]
        else:
            assert isinstance(response, CompletionsResponse)
            candidates = [{"text": c.text, "metadata": {"finish_reason": c.finish_reason}} for c in response.choices]
        return {"candidates": candidates, "metadata": metadata}
