"""The MLflow deployments API family: `POST /endpoints/{name}/invocations`, OpenAI-shaped bodies and
answers, MLflow's error body `{"error_code", "message"}`."""

from __future__ import annotations

from typing import Any

from providers.base import GatewayError, StdRequest, StdResponse

from .openai_shapes import openai_stream_renderer, parse_openai_body, render_openai
from .snapshot import RouteEntry
from .streaming import OpenAIStreamRenderer


class DeploymentsFamily:
    name = "deployments"

    def error_body(self, error: GatewayError) -> dict[str, Any]:
        return {"error_code": error.code, "message": error.message}

    def parse(self, route: RouteEntry, body: dict[str, Any]) -> StdRequest:
        return parse_openai_body(route, body)

    def stream_renderer(self, route: RouteEntry, body: dict[str, Any]) -> OpenAIStreamRenderer | None:
        return openai_stream_renderer(route, body, model=route.model)

    def render(self, route: RouteEntry, body: dict[str, Any], response: StdResponse) -> dict[str, Any]:
        return render_openai(response, model=response.model, body=body)
