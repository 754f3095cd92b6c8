"""The OpenAI adapter's pure functions, with plain dicts: no network."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.base import (
    ChatMessage,
    ChatRequest,
    CommonParams,
    CompletionsRequest,
    EmbeddingsRequest,
    InvalidRequest,
    ProviderConfigError,
    RouteType,
    Secrets,
    Target,
    UpstreamError,
    UpstreamResponse,
)
from providers.openai import (
    OpenAIProvider,
    OpenAISettings,
    chat_from_vendor,
    chat_to_vendor,
    completions_from_vendor,
    embeddings_from_vendor,
    error_from_vendor,
    params_to_vendor,
)

KEY = "sk-live7Hq2Zp9Lm4Xv8Tk3RbQ"
provider = OpenAIProvider()


def _target(config: dict[str, Any], key: str | None = KEY, model: str = "gpt-4o-mini") -> Target:
    return Target("openai", model, config, Secrets({"openai_api_key": key} if key else {}))


def _chat() -> ChatRequest:
    return ChatRequest([ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")])


# ---------------------------------------------------------------- request mapping


def test_params_pass_temperature_through_and_omit_unset_values() -> None:
    assert params_to_vendor(CommonParams()) == {}
    params = CommonParams(
        temperature=1.4,
        max_tokens=20,
        n=3,
        stop=["\n"],
        top_p=0.9,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
    )
    assert params_to_vendor(params) == {
        "temperature": 1.4,
        "max_tokens": 20,
        "n": 3,
        "stop": ["\n"],
        "top_p": 0.9,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
    }
    assert params_to_vendor(CommonParams(temperature=0.0)) == {"temperature": 0.0}


def test_chat_body_carries_messages_and_params() -> None:
    request = ChatRequest([ChatMessage("user", "Hi")], CommonParams(max_tokens=5))
    assert chat_to_vendor(request) == {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}


def test_openai_request_uses_bearer_key_organization_and_model_in_body() -> None:
    req = provider.build_request(_target({"openai_organization": "org-team"}), _chat())
    assert req.method == "POST"
    assert req.url == "https://api.openai.com/v1/chat/completions"
    assert dict(req.headers) == {"Authorization": f"Bearer {KEY}", "OpenAI-Organization": "org-team"}
    assert req.json["model"] == "gpt-4o-mini"
    assert req.json["messages"][0] == {"role": "system", "content": "Be brief."}
    assert req.params is None


@pytest.mark.parametrize(
    ("request_", "path"),
    [
        (CompletionsRequest("Say hi"), "completions"),
        (EmbeddingsRequest(["a", "b"]), "embeddings"),
    ],
)
def test_openai_paths_per_route_type(request_: Any, path: str) -> None:
    req = provider.build_request(_target({"openai_api_base": "http://vllm:8000/v1/"}), request_)
    assert req.url == f"http://vllm:8000/v1/{path}"


def test_completions_on_openai_with_a_chat_model_go_to_the_chat_api_as_mlflow_25_did() -> None:
    params = CommonParams(max_tokens=7)
    req = provider.build_request(_target({}, model="gpt-4"), CompletionsRequest("Classify: great!", params))
    assert req.url == "https://api.openai.com/v1/chat/completions"
    assert req.json == {"model": "gpt-4", "messages": [{"role": "user", "content": "Classify: great!"}],
                        "max_tokens": 7}
    answer = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "positive"},
                           "finish_reason": "stop"}], "usage": {"prompt_tokens": 4, "completion_tokens": 1}}
    parsed = completions_from_vendor(answer, default_model="gpt-4")
    assert parsed.choices[0].text == "positive"


def test_completions_with_an_instruct_model_or_a_compatible_server_use_the_completions_api() -> None:
    instruct = provider.build_request(_target({}, model="gpt-3.5-turbo-instruct"), CompletionsRequest("x"))
    assert instruct.url == "https://api.openai.com/v1/completions"
    assert instruct.json["prompt"] == "x"
    vllm = provider.build_request(_target({"openai_api_base": "http://vllm:8000/v1"}, model="llama-3"),
                                  CompletionsRequest("x"))
    assert vllm.url == "http://vllm:8000/v1/completions"


def test_embeddings_body_sends_inputs_as_input() -> None:
    req = provider.build_request(_target({}, model="text-embedding-3-small"), EmbeddingsRequest(["a", "b"]))
    assert req.json == {"model": "text-embedding-3-small", "input": ["a", "b"]}


def test_azure_request_uses_api_key_header_deployment_url_and_no_model() -> None:
    config = {
        "openai_api_type": "Azure",
        "openai_api_base": "https://res.openai.azure.com/",
        "openai_deployment_name": "my gpt",
        "openai_api_version": "2024-02-01",
    }
    req = provider.build_request(_target(config, key="azurekey0123456789"), _chat())
    assert req.url == "https://res.openai.azure.com/openai/deployments/my%20gpt/chat/completions"
    assert req.params == {"api-version": "2024-02-01"}
    assert dict(req.headers) == {"api-key": "azurekey0123456789"}
    assert "model" not in req.json


def test_azuread_request_sends_the_token_as_bearer_with_the_azure_url() -> None:
    config = {
        "openai_api_type": "azuread",
        "openai_api_base": "https://res.openai.azure.com",
        "openai_deployment_name": "emb",
        "openai_api_version": "2024-06-01",
    }
    req = provider.build_request(_target(config, key="eyJtoken"), EmbeddingsRequest(["x"]))
    assert req.url == "https://res.openai.azure.com/openai/deployments/emb/embeddings"
    assert dict(req.headers) == {"Authorization": "Bearer eyJtoken"}
    assert req.json == {"input": ["x"]}


def test_custom_base_without_key_sends_no_authorization() -> None:
    req = provider.build_request(_target({"openai_api_base": "http://ollama:11434/v1"}, key=None), _chat())
    assert dict(req.headers) == {}


def test_key_is_stripped_of_surrounding_whitespace() -> None:
    req = provider.build_request(_target({}, key=f"  {KEY}\n"), _chat())
    assert req.headers["Authorization"] == f"Bearer {KEY}"


def test_request_repr_never_shows_the_key() -> None:
    req = provider.build_request(_target({}), _chat())
    assert KEY not in repr(req) and KEY not in str(req)


# ---------------------------------------------------------------- response parsing

CHAT_BODY = {
    "id": "chatcmpl-abc123",
    "object": "chat.completion",
    "created": 1677858242,
    "model": "gpt-4o-mini-2024",
    "usage": {"prompt_tokens": 13, "completion_tokens": 7, "total_tokens": 20},
    "choices": [
        {"message": {"role": "assistant", "content": "This is a test!"}, "finish_reason": "stop", "index": 0},
        {"message": {"role": "assistant", "content": None}, "finish_reason": "tool_calls", "index": 1},
    ],
}


def test_chat_response_maps_choices_usage_and_ids() -> None:
    response = chat_from_vendor(CHAT_BODY, default_model="gpt-4o-mini")
    assert response.model == "gpt-4o-mini-2024"
    assert response.id == "chatcmpl-abc123" and response.created == 1677858242
    assert [c.message.content for c in response.choices] == ["This is a test!", ""]
    assert [c.finish_reason for c in response.choices] == ["stop", "tool_calls"]
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (
        13,
        7,
        20,
    )


def test_missing_usage_gives_unknown_counts_not_zero() -> None:
    body = {k: v for k, v in CHAT_BODY.items() if k not in ("usage", "model")}
    response = chat_from_vendor(body, default_model="llama3")
    assert response.model == "llama3"
    assert response.usage.input_tokens is None and response.usage.total_tokens is None


def test_completions_response_maps_text() -> None:
    body = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "gpt-3.5-turbo-instruct",
        "choices": [
            {"text": "\n\nThis is indeed a test", "index": 0, "logprobs": None, "finish_reason": "length"}
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }
    response = completions_from_vendor(body, default_model="x")
    assert response.choices[0].text == "\n\nThis is indeed a test"
    assert response.choices[0].finish_reason == "length"
    assert response.usage.total_tokens == 12


def test_embeddings_are_ordered_by_index_and_have_zero_output_tokens() -> None:
    body = {
        "object": "list",
        "model": "text-embedding-3-small",
        "data": [
            {"object": "embedding", "index": 1, "embedding": [0.3, 0.4]},
            {"object": "embedding", "index": 0, "embedding": [0.1, 0.2]},
        ],
        "usage": {"prompt_tokens": 8, "total_tokens": 8},
    }
    response = embeddings_from_vendor(body, default_model="x")
    assert response.embeddings == [[0.1, 0.2], [0.3, 0.4]]
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (
        8,
        0,
        8,
    )


@pytest.mark.parametrize("body", [{}, {"choices": [{"finish_reason": "stop"}]}, [1, 2]])
def test_malformed_bodies_raise_so_execute_can_report_a_bad_response(body: Any) -> None:
    response = UpstreamResponse(200, {}, orjson.dumps(body))
    with pytest.raises((KeyError, TypeError)):
        provider.parse_response(_target({}), _chat(), response)


# ---------------------------------------------------------------- errors


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> UpstreamResponse:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    return UpstreamResponse(status, headers or {}, orjson.dumps(body))


@pytest.mark.parametrize("status", [400, 404, 422])
def test_vendor_client_errors_become_bad_request_with_the_vendor_message(status: int) -> None:
    error = error_from_vendor(_error(status, "The model `gpt-5x` does not exist"), Secrets())
    assert isinstance(error, InvalidRequest)
    assert (error.status, error.code) == (400, "UPSTREAM_BAD_REQUEST")
    assert "The model `gpt-5x` does not exist" in error.message


@pytest.mark.parametrize("status", [401, 403])
def test_vendor_auth_errors_never_repeat_the_vendor_text(status: int) -> None:
    error = error_from_vendor(
        _error(status, f"Incorrect API key provided: {KEY[:8]}****{KEY[-4:]}"),
        Secrets({"openai_api_key": KEY}),
    )
    assert isinstance(error, UpstreamError)
    assert (error.status, error.code) == (502, "UPSTREAM_AUTH_FAILED")
    assert "Incorrect" not in error.message and KEY[-4:] not in error.message


def test_rate_limit_carries_retry_after() -> None:
    error = error_from_vendor(
        _error(429, "Rate limit reached for gpt-4o in organization org-Xy12Ab34Cd56"), Secrets()
    )
    assert (error.status, error.code, error.retry_after) == (502, "UPSTREAM_RATE_LIMITED", None)
    assert "org-Xy12Ab34Cd56" not in error.message
    error = error_from_vendor(_error(429, "slow down", {"retry-after": "20"}), Secrets())
    assert error.retry_after == 20.0


@pytest.mark.parametrize("status", [500, 503, 418])
def test_other_statuses_become_upstream_error_with_capped_redacted_message(status: int) -> None:
    error = error_from_vendor(
        _error(status, f"boom with {KEY} " + "y" * 2000), Secrets({"openai_api_key": KEY})
    )
    assert (error.status, error.code) == (502, "UPSTREAM_ERROR")
    assert KEY not in error.message
    assert len(error.message) < 600


def test_error_body_that_is_not_json_still_maps_by_status() -> None:
    error = error_from_vendor(UpstreamResponse(503, {}, b"<html>down</html>"), Secrets())
    assert (error.status, error.code) == (502, "UPSTREAM_ERROR")
    assert "503" in error.message and "html" not in error.message


# ---------------------------------------------------------------- config validation


def _validate(
    config: dict[str, Any], secrets: dict[str, str] | None = None, route_type: RouteType = RouteType.CHAT
) -> None:
    provider.validate_config(route_type=route_type, config=config, secrets=secrets or {})


def test_openai_defaults_need_only_the_key() -> None:
    _validate({}, {"openai_api_key": KEY})
    _validate({"openai_api_key": KEY}, route_type=RouteType.EMBEDDINGS)
    with pytest.raises(ProviderConfigError, match="openai_api_key"):
        _validate({})
    with pytest.raises(ProviderConfigError, match="openai_api_key"):
        _validate({"openai_api_base": "https://api.openai.com/v1"})


def test_openai_compatible_servers_need_no_key() -> None:
    _validate({"openai_api_base": "http://localhost:11434/v1"})


@pytest.mark.parametrize("api_type", ["azure", "azuread", "AZURE"])
def test_azure_needs_base_deployment_version_and_key(api_type: str) -> None:
    complete = {
        "openai_api_type": api_type,
        "openai_api_base": "https://r.openai.azure.com",
        "openai_deployment_name": "d",
        "openai_api_version": "2024-02-01",
    }
    _validate(complete, {"openai_api_key": "k"})
    for missing in ("openai_api_base", "openai_deployment_name", "openai_api_version"):
        config = {k: v for k, v in complete.items() if k != missing}
        with pytest.raises(ProviderConfigError, match=missing):
            _validate(config, {"openai_api_key": "k"})
    with pytest.raises(ProviderConfigError, match="openai_api_key"):
        _validate(complete)
    with pytest.raises(ProviderConfigError, match="openai_organization"):
        _validate({**complete, "openai_organization": "org-x"}, {"openai_api_key": "k"})


def test_invalid_config_is_refused() -> None:
    with pytest.raises(ProviderConfigError, match="openai_api_type"):
        _validate({"openai_api_type": "bedrock"}, {"openai_api_key": "k"})
    with pytest.raises(ProviderConfigError, match="openai_deployment_name"):
        _validate({"openai_deployment_name": "d"}, {"openai_api_key": "k"})
    with pytest.raises(ProviderConfigError, match="http"):
        _validate({"openai_api_base": "ftp://x"}, {"openai_api_key": "k"})
    with pytest.raises(ProviderConfigError, match="Unknown config"):
        _validate({"openai_api_kye": "typo"}, {"openai_api_key": "k"})


def test_settings_resolve_mlflow_defaults() -> None:
    settings = OpenAISettings.from_config({})
    assert (settings.api_type, settings.api_base, settings.key_required) == (
        "openai",
        "https://api.openai.com/v1",
        True,
    )
    assert OpenAISettings.from_config({"openai_api_base": "http://vllm/v1"}).key_required is False
