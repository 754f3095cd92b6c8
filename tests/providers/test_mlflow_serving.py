"""MLflow Model Serving: the adapter's pure functions with plain dicts, then calls through `execute`
against the fake MLflow scoring server."""

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
    EmbeddingsResponse,
    GatewayError,
    InvalidRequest,
    ProviderConfigError,
    RouteType,
    Target,
    UpstreamBadResponse,
    UpstreamResponse,
)
from providers.client import UpstreamClient, execute, execute_stream
from providers.mlflow_serving import (
    MlflowModelServingProvider,
    embedding_predictions,
    text_predictions,
    to_vendor_body,
)
from providers.tokens import count_chat_tokens, count_text_tokens
from tests.fake_upstream import FakeUpstream
from tests.fake_upstream.mlflow_serving import STACK_TRACE
from tests.fake_upstream.openai import fake_embedding

provider = MlflowModelServingProvider()


def _target(url: str = "http://127.0.0.1:5001", model: str = "my-model") -> Target:
    return Target("mlflow-model-serving", model, {"model_server_url": url})


# ---------------------------------------------------------------- pure mapping


def test_config_is_mlflows_model_server_url_and_no_credential() -> None:
    assert (provider.config_fields, provider.required_fields, provider.secret_fields) == (
        ("model_server_url",), ("model_server_url",), ())
    assert provider.supports_streaming is False
    for route_type in RouteType:
        provider.validate_config(route_type=route_type, config={"model_server_url": "http://m:5001"}, secrets={})
    with pytest.raises(ProviderConfigError, match="model_server_url"):
        provider.validate_config(route_type=RouteType.CHAT, config={}, secrets={})
    with pytest.raises(ProviderConfigError, match="http"):
        provider.validate_config(route_type=RouteType.CHAT, config={"model_server_url": "m:5001"}, secrets={})


def test_bodies_follow_mlflows_scoring_protocol() -> None:
    assert to_vendor_body(CompletionsRequest("Hi")) == {"inputs": ["Hi"]}
    params = CommonParams(temperature=0.4, max_tokens=8, stop=["."], n=2)
    assert to_vendor_body(CompletionsRequest("Hi", params)) == {
        "inputs": ["Hi"], "params": {"temperature": 0.4, "max_tokens": 8, "stop": ["."], "n": 2}}
    assert to_vendor_body(ChatRequest([ChatMessage("user", "Hey")])) == {"inputs": ["Hey"]}
    assert to_vendor_body(EmbeddingsRequest(["a", "b"])) == {"inputs": ["a", "b"]}
    req = provider.build_request(_target("http://m:5001/"), CompletionsRequest("Hi"))
    assert (req.url, req.headers) == ("http://m:5001/invocations", {"Content-Type": "application/json"})


def test_chat_takes_one_message_as_mlflow_does() -> None:
    with pytest.raises(InvalidRequest, match="one chat message"):
        to_vendor_body(ChatRequest([ChatMessage("system", "Be brief."), ChatMessage("user", "Hey")]))


@pytest.mark.parametrize(("predictions", "texts"), [
    (["a", "b"], ["a", "b"]),
    ({"candidates": ["a"]}, ["a"]),
    ({"choices": ["a", "b"], "other": 1}, ["a", "b"]),
])
def test_text_predictions_in_the_shapes_mlflow_accepts(predictions: Any, texts: list[str]) -> None:
    assert text_predictions({"predictions": predictions}) == texts


@pytest.mark.parametrize("data", [{}, {"predictions": []}, {"predictions": [1, 2]},
                                  {"predictions": {"a": ["x"], "b": ["y"]}}])
def test_anything_else_is_not_an_answer(data: Any) -> None:
    with pytest.raises((KeyError, ValueError, TypeError)):
        text_predictions(data)


def test_embedding_predictions_take_a_flat_vector_as_one_and_check_the_count() -> None:
    assert embedding_predictions({"predictions": [1, 2.5]}, expected=1) == [[1.0, 2.5]]
    assert embedding_predictions({"predictions": [[1], [2]]}, expected=2) == [[1.0], [2.0]]
    for bad in ([[1]], [[1], []], [["x"], [2]]):
        with pytest.raises(ValueError):
            embedding_predictions({"predictions": bad}, expected=2)


def test_usage_is_counted_and_marked_estimated() -> None:
    request = ChatRequest([ChatMessage("user", "How are you?")])
    body = orjson.dumps({"predictions": ["Fine, thanks."]})
    response = provider.parse_response(_target(), request, UpstreamResponse(200, {}, body))
    assert isinstance(response, ChatResponse)
    assert response.choices[0].message.content == "Fine, thanks."
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.estimated) == (
        count_chat_tokens(request.messages), count_text_tokens("Fine, thanks."), True)


# ---------------------------------------------------------------- against the fake scoring server


async def test_completions_against_a_scoring_server(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    request = CompletionsRequest("Once upon a time", CommonParams(max_tokens=3, temperature=0.5))
    response = await execute(provider, _target(fake_upstream.mlflow_serving_url("story"), "story"), request,
                             client=client)
    sent = fake_upstream.last_request
    assert (sent.path, sent.headers["content-type"]) == ("/mlflow/story/invocations", "application/json")
    assert sent.json == {"inputs": ["Once upon a time"], "params": {"temperature": 0.5, "max_tokens": 3}}
    assert isinstance(response, CompletionsResponse)
    assert response.choices[0].text == "Fake completion of"
    assert response.usage.estimated and response.usage.input_tokens == count_text_tokens("Once upon a time")


async def test_chat_and_a_dict_shaped_answer(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    target = _target(fake_upstream.mlflow_serving_url("dict-chat"), "dict-chat")
    response = await execute(provider, target, ChatRequest([ChatMessage("user", "Hello")]), client=client)
    assert isinstance(response, ChatResponse)
    assert response.choices[0].message == ChatMessage("assistant", "Fake completion of: Hello")


async def test_embeddings(fake_upstream: FakeUpstream, client: UpstreamClient) -> None:
    target = _target(fake_upstream.mlflow_serving_url("embedder"), "embedder")
    response = await execute(provider, target, EmbeddingsRequest(["a", "b c"]), client=client)
    assert isinstance(response, EmbeddingsResponse)
    assert response.embeddings == [fake_embedding("a"), fake_embedding("b c")]
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.estimated) == (
        count_text_tokens("a") + count_text_tokens("b c"), 0, True)


async def test_a_server_error_shows_its_message_but_never_its_stack_trace(fake_upstream: FakeUpstream,
                                                                           client: UpstreamClient) -> None:
    fake_upstream.add_fault("500")
    with pytest.raises(GatewayError) as caught:
        await execute(provider, _target(fake_upstream.mlflow_serving_url("m"), "m"), CompletionsRequest("x"),
                      client=client)
    assert (caught.value.status, caught.value.code) == (502, "UPSTREAM_ERROR")
    assert "The server had an error" in caught.value.message and "Traceback" not in caught.value.message
    assert STACK_TRACE.split("\n")[0] not in caught.value.message


@pytest.mark.parametrize(("fault", "error"), [("garbage", UpstreamBadResponse), ("incomplete", UpstreamBadResponse)])
async def test_an_answer_without_predictions_is_a_bad_response(fake_upstream: FakeUpstream, client: UpstreamClient,
                                                               fault: str, error: type[Exception]) -> None:
    fake_upstream.add_fault(fault)
    with pytest.raises(error):
        await execute(provider, _target(fake_upstream.mlflow_serving_url("m"), "m"), CompletionsRequest("x"),
                      client=client)


async def test_streaming_is_refused_as_the_scoring_server_cannot_stream(client: UpstreamClient) -> None:
    with pytest.raises(InvalidRequest, match="does not stream"):
        [c async for c in execute_stream(provider, _target(), CompletionsRequest("x"), client=client)]
