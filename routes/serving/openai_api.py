"""The OpenAI-compatible API family: `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`
and `/v1/models`; `model` is the route name; OpenAI's error body `{"error": {message, type, code}}`.

The official openai SDK maps errors by status (401 AuthenticationError, 403 PermissionDeniedError,
404 NotFoundError, 400 BadRequestError, 429 RateLimitError), so statuses are the contract.
"""

from __future__ import annotations

from typing import Any

from providers.base import GatewayError, InvalidRequest, RouteType, StdRequest, StdResponse

from ..principal import Principal
from .openai_shapes import openai_stream_renderer, parse_openai_body, render_openai
from .snapshot import RouteEntry, Snapshot
from .streaming import OpenAIStreamRenderer

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}

# Which route type each path serves.
PATH_ROUTE_TYPES = {
    "/v1/chat/completions": RouteType.CHAT,
    "/v1/completions": RouteType.COMPLETIONS,
    "/v1/embeddings": RouteType.EMBEDDINGS,
}


def route_name_from_body(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: required, the name of a route (see GET /v1/models).")
    return model


class OpenAIFamily:
    name = "openai"

    def __init__(self, route_type: RouteType) -> None:
        self.route_type = route_type

    def error_body(self, error: GatewayError) -> dict[str, Any]:
        error_type = _ERROR_TYPES.get(error.status, "api_error")
        return {"error": {"message": error.message, "type": error_type, "param": None, "code": error.code.lower()}}

    def parse(self, route: RouteEntry, body: dict[str, Any]) -> StdRequest:
        if route.route_type is not self.route_type:
            raise InvalidRequest(
                f"Model '{route.name}' is a {route.route_type} route; this endpoint serves {self.route_type} routes.",
                code="ROUTE_TYPE_MISMATCH",
            )
        return parse_openai_body(route, body)

    def stream_renderer(self, route: RouteEntry, body: dict[str, Any]) -> OpenAIStreamRenderer | None:
        return openai_stream_renderer(route, body, model=route.name)

    def render(self, route: RouteEntry, body: dict[str, Any], response: StdResponse) -> dict[str, Any]:
        return render_openai(response, model=route.name, body=body)


def model_object(route: RouteEntry) -> dict[str, Any]:
    return {"id": route.name, "object": "model", "created": 0, "owned_by": route.provider_name}


def models_visible(snapshot: Snapshot, principal: Principal) -> list[dict[str, Any]]:
    """`/v1/models`: the enabled routes this key may query, by name."""
    return [model_object(r) for name, r in sorted(snapshot.routes.items()) if r.enabled and r.allows(principal)]
