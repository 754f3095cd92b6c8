"""Adds the serving half (Starlette) to the OpenAPI document drf-spectacular builds for Django.

Request schemas are the pydantic models the serving endpoints validate with; response schemas are
the models in `routes.serving.schemas`, which the e2e tests check real answers against.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ..serving import mlflow_gateway as m25
from ..serving import openai_shapes as oa
from ..serving import schemas as out

_ERRORS_MLFLOW = {400: "Bad input", 401: "No or invalid key", 403: "Route not granted or disabled",
                  404: "Unknown route", 413: "Body too large",
                  429: "A limit is exhausted (Retry-After and X-RateLimit-* headers say until when)",
                  502: "Upstream error", 503: "The limits store is unreachable (fail closed)", 504: "Upstream timeout"}


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        components.setdefault(name, definition)
    components.setdefault(model.__name__, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _one_of(models: list[type[BaseModel]], components: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [_schema(m, components) for m in models]}


def _operation(*, op_id: str, summary: str, tag: str, request: dict[str, Any] | None, ok: dict[str, Any],
               error: dict[str, Any], params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "tags": [tag],
        "security": [{"gatewayKey": []}],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": ok}}},
            **{str(code): {"description": text, "content": {"application/json": {"schema": error}}}
               for code, text in _ERRORS_MLFLOW.items()},
        },
    }
    if params:
        op["parameters"] = params
    if request is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": request}}}
    return op


def add_serving_paths(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular postprocessing hook."""
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    components.setdefault("securitySchemes", {})["gatewayKey"] = {"type": "http", "scheme": "bearer"}
    name_param = [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}]
    mlflow_error = _schema(out.MlflowError, schemas)
    openai_error = _schema(out.OpenAIError, schemas)
    openai_ok = _one_of([out.ChatCompletion, out.Completion, out.EmbeddingList], schemas)
    paths = result.setdefault("paths", {})
    paths["/gateway/{name}/invocations"] = {"post": _operation(
        op_id="mlflow_route_invocations",
        summary="Query a route (MLflow 2.5 schemas: chat, completions or embeddings by route type)",
        tag="serving: MLflow routes",
        request=_one_of([m25.ChatBody, m25.CompletionsBody, m25.EmbeddingsBody], schemas),
        ok=_one_of([out.Mlflow25ChatResponse, out.Mlflow25CompletionsResponse, out.Mlflow25EmbeddingsResponse],
                   schemas),
        error=mlflow_error, params=name_param)}
    paths["/endpoints/{name}/invocations"] = {"post": _operation(
        op_id="deployments_endpoint_invocations",
        summary="Query an endpoint (MLflow deployments: OpenAI-shaped bodies and answers)",
        tag="serving: MLflow deployments",
        request=_one_of([oa.ChatCompletionBody, oa.CompletionBody, oa.EmbeddingBody], schemas),
        ok=openai_ok, error=mlflow_error, params=name_param)}
    for path, body, ok_model, summary in (
        ("/v1/chat/completions", oa.ChatCompletionBody, out.ChatCompletion, "Chat completion; model = route name"),
        ("/v1/completions", oa.CompletionBody, out.Completion, "Completion; model = route name"),
        ("/v1/embeddings", oa.EmbeddingBody, out.EmbeddingList, "Embeddings; model = route name"),
    ):
        op_id = "openai_" + path.removeprefix("/v1/").replace("/", "_")
        paths[path] = {"post": _operation(op_id=op_id, summary=summary, tag="serving: OpenAI-compatible",
                                          request=_schema(body, schemas), ok=_schema(ok_model, schemas),
                                          error=openai_error)}
    paths["/v1/models"] = {"get": _operation(
        op_id="openai_models", summary="The routes this key may query", tag="serving: OpenAI-compatible",
        request=None, ok=_schema(out.ModelList, schemas), error=openai_error)}
    paths["/health"] = {"get": {"operationId": "health", "summary": "Liveness", "tags": ["serving"], "security": [],
                                "responses": {"200": {"description": "OK", "content": {
                                    "application/json": {"schema": _schema(out.Health, schemas)}}}}}}
    return result
