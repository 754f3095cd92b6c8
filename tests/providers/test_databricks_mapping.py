"""The Databricks Model Serving adapter's pure functions, with plain dicts: no network."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.base import (
    ChatMessage,
    ChatRequest,
    ChatResponse,
    CommonParams,
    CompletionsRequest,
    CompletionsResponse,
    EmbeddingsRequest,
    ProviderConfigError,
    RouteType,
    Secrets,
    Target,
    UpstreamError,
    UpstreamResponse,
)
from providers.databricks import DatabricksModelServingProvider, DatabricksProvider
from providers.tokens import count_text_tokens

TOKEN = "dapi0123456789abcdef0123456789abcd"
WORKSPACE = "https://dbc-1234.cloud.databricks.com"
provider = DatabricksModelServingProvider()
CHAT = ChatRequest([ChatMessage("user", "Hi")])


def _target(config: dict[str, Any] | None = None, secrets: dict[str, str] | None = None,
            model: str = "databricks-meta-llama-3-3-70b-instruct") -> Target:
    return Target(provider.name, model, {"databricks_workspace_url": WORKSPACE} if config is None else config,
                  Secrets({"databricks_api_token": TOKEN} if secrets is None else secrets))


def _validate(config: dict[str, Any], secrets: dict[str, str], route_type: RouteType = RouteType.CHAT) -> None:
    provider.validate_config(route_type=route_type, config=config, secrets=secrets)


def test_both_mlflow_names_serve_every_route_type() -> None:
    assert (provider.name, DatabricksProvider().name) == ("databricks-model-serving", "databricks")
    assert provider.route_types == frozenset(RouteType) and provider.supports_streaming
    assert provider.secret_fields == ("databricks_api_token", "token")
    for route_type in RouteType:
        _validate({"databricks_workspace_url": WORKSPACE}, {"databricks_api_token": TOKEN}, route_type)


def test_the_seeds_keys_and_mlflow_3s_host_and_token_are_both_accepted() -> None:
    _validate({"host": WORKSPACE}, {"token": TOKEN})
    req = provider.build_request(_target({"host": WORKSPACE + "/"}, {"token": TOKEN}), CHAT)
    assert req.url == f"{WORKSPACE}/serving-endpoints/databricks-meta-llama-3-3-70b-instruct/invocations"
    assert req.headers == {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize(("config", "secrets", "match"), [
    ({}, {"databricks_api_token": TOKEN}, "databricks_workspace_url"),
    ({"databricks_workspace_url": WORKSPACE}, {}, "databricks_api_token"),
    ({"databricks_workspace_url": WORKSPACE, "host": "https://other.databricks.com"}, {"token": TOKEN}, "differ"),
    ({"databricks_workspace_url": "dbc-1234.cloud.databricks.com"}, {"token": TOKEN}, "http"),
    ({"databricks_workspace_url": WORKSPACE, "client_id": "sp"}, {"client_secret": "s"}, "OAuth"),
])
def test_invalid_configs_are_refused_with_a_clear_message(config: dict[str, Any], secrets: dict[str, str],
                                                          match: str) -> None:
    with pytest.raises(ProviderConfigError, match=match):
        _validate(config, secrets)


def test_a_workspace_url_ending_in_serving_endpoints_is_not_doubled() -> None:
    req = provider.build_request(_target({"databricks_workspace_url": f"{WORKSPACE}/serving-endpoints/"}), CHAT)
    assert req.url == f"{WORKSPACE}/serving-endpoints/databricks-meta-llama-3-3-70b-instruct/invocations"


def test_the_endpoint_name_is_quoted_into_the_path() -> None:
    assert provider.build_request(_target(model="my endpoint/v2"), CHAT).url == (
        f"{WORKSPACE}/serving-endpoints/my%20endpoint%2Fv2/invocations")


def test_bodies_are_openai_shaped_without_model() -> None:
    params = CommonParams(temperature=1.5, max_tokens=20, n=2, stop=["\n"])
    assert provider.build_request(_target(), ChatRequest(CHAT.messages, params)).json == {
        "messages": [{"role": "user", "content": "Hi"}], "temperature": 1.5, "max_tokens": 20, "n": 2, "stop": ["\n"]}
    assert provider.build_request(_target(model="mpt-7b-instruct"), CompletionsRequest("Classify")).json == {
        "prompt": "Classify"}
    assert provider.build_request(_target(model="databricks-bge-large-en"), EmbeddingsRequest(["a"])).json == {
        "input": ["a"]}
    stream = provider.build_stream_request(_target(), CHAT).json
    assert stream["stream"] is True and "stream_options" not in stream


def _response(data: Any, status: int = 200) -> UpstreamResponse:
    return UpstreamResponse(status=status, headers={}, body=orjson.dumps(data))


def test_a_reasoning_models_content_parts_keep_their_text() -> None:
    data = {"id": "x", "object": "chat.completion", "created": 1, "model": "databricks-claude",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": [
                {"type": "reasoning", "summary": [{"type": "summary_text", "text": "hmm"}]},
                {"type": "text", "text": "Four."}]}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14}}
    response = provider.parse_response(_target(), CHAT, _response(data))
    assert isinstance(response, ChatResponse)
    assert (response.choices[0].message.content, response.usage.output_tokens) == ("Four.", 9)


def test_a_custom_endpoint_without_usage_is_counted_and_marked_estimated() -> None:
    data = {"choices": [{"index": 0, "text": "positive", "finish_reason": "stop"}]}
    response = provider.parse_response(_target(model="mpt-7b"), CompletionsRequest("Classify: great"), _response(data))
    assert isinstance(response, CompletionsResponse)
    assert response.model == "mpt-7b"
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.estimated) == (
        count_text_tokens("Classify: great"), count_text_tokens("positive"), True)


def test_databricks_error_bodies_map_like_openais() -> None:
    missing = _response({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Endpoint 'x' does not exist."}, 404)
    error = provider.map_error(_target(), missing)
    assert (error.status, error.code) == (400, "UPSTREAM_BAD_REQUEST") and "does not exist" in error.message
    denied = provider.map_error(_target(), _response({"error_code": "PERMISSION_DENIED", "message": "Invalid"}, 403))
    assert (denied.status, denied.code) == (502, "UPSTREAM_AUTH_FAILED")
    limited = provider.map_error(_target(), _response({"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow"}, 429))
    assert limited.code == "UPSTREAM_RATE_LIMITED"


def test_a_mid_stream_error_in_databricks_shape_raises() -> None:
    parser = provider.stream_parser(_target(), CHAT)
    ok = {"id": "x", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Fo"}, "finish_reason": None}]}
    bad = {"error_code": "INTERNAL_ERROR", "message": f"model crashed with {TOKEN}"}
    chunks = parser.feed(b"data: " + orjson.dumps(ok) + b"\n\n")
    assert chunks[0].deltas[0].text == "Fo"
    with pytest.raises(UpstreamError) as caught:
        parser.feed(b"data: " + orjson.dumps(bad) + b"\n\n")
    assert "model crashed" in caught.value.message and TOKEN not in caught.value.message
