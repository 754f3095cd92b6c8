"""The Anthropic adapter's pure functions, with plain dicts: no network."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from providers.anthropic import (
    AnthropicProvider,
    AnthropicSettings,
    chat_from_vendor,
    completions_from_vendor,
    error_from_vendor,
    finish_reason_from_vendor,
    messages_to_vendor,
    params_to_vendor,
    usage_from_vendor,
)
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

KEY = "sk-ant-api03-live7Hq2Zp9Lm4Xv8Tk3RbQ"
provider = AnthropicProvider()


def _target(config: dict[str, Any] | None = None, key: str = KEY, model: str = "claude-sonnet-4-5") -> Target:
    return Target("anthropic", model, config or {}, Secrets({"anthropic_api_key": key}))


def _chat(*messages: tuple[str, str], params: CommonParams | None = None) -> ChatRequest:
    return ChatRequest([ChatMessage(role, content) for role, content in messages], params or CommonParams())


# ---------------------------------------------------------------- request mapping


def test_chat_request_uses_messages_url_anthropic_headers_and_route_default_max_tokens() -> None:
    req = provider.build_request(_target(), _chat(("system", "Be brief."), ("user", "Hi")))
    assert (req.method, req.url) == ("POST", "https://api.anthropic.com/v1/messages")
    assert dict(req.headers) == {
        "x-api-key": KEY,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    assert req.json == {
        "model": "claude-sonnet-4-5",
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 1024,
    }
    assert req.params is None


def test_config_sets_base_version_and_default_max_tokens() -> None:
    config = {
        "anthropic_api_base": "http://proxy:8080/anthropic/",
        "anthropic_version": "2024-01-01",
        "anthropic_default_max_tokens": 300,
    }
    req = provider.build_request(_target(config), _chat(("user", "Hi")))
    assert req.url == "http://proxy:8080/anthropic/v1/messages"
    assert req.headers["anthropic-version"] == "2024-01-01"
    assert req.json["max_tokens"] == 300


def test_a_request_max_tokens_wins_over_the_route_default() -> None:
    request = _chat(("user", "Hi"), params=CommonParams(max_tokens=7))
    assert provider.build_request(_target({"anthropic_default_max_tokens": 300}), request).json["max_tokens"] == 7


def test_params_halve_temperature_and_rename_stop() -> None:
    params = CommonParams(temperature=1.4, max_tokens=20, stop=["\n", "END"], top_p=0.9)
    assert params_to_vendor(params, default_max_tokens=1024) == {
        "max_tokens": 20,
        "temperature": 0.7,
        "top_p": 0.9,
        "stop_sequences": ["\n", "END"],
    }
    assert params_to_vendor(CommonParams(temperature=0.0), default_max_tokens=5) == {
        "max_tokens": 5,
        "temperature": 0.0,
    }
    assert params_to_vendor(CommonParams(temperature=2.0), default_max_tokens=5)["temperature"] == 1.0


def test_more_than_one_candidate_is_refused_before_any_upstream_call() -> None:
    with pytest.raises(InvalidRequest, match="must be 1") as caught:
        provider.build_request(_target(), _chat(("user", "Hi"), params=CommonParams(n=2)))
    assert caught.value.status == 400


@pytest.mark.parametrize("name", ["presence_penalty", "frequency_penalty"])
def test_non_zero_penalties_are_refused_and_zero_ones_dropped(name: str) -> None:
    penalty: dict[str, Any] = {name: 0.5}
    with pytest.raises(InvalidRequest, match=name):
        params_to_vendor(CommonParams(**penalty), default_max_tokens=10)
    zero: dict[str, Any] = {name: 0.0}
    assert params_to_vendor(CommonParams(**zero), default_max_tokens=10) == {"max_tokens": 10}


def test_system_messages_anywhere_are_lifted_and_joined() -> None:
    system, turns = messages_to_vendor(
        [
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "Hi"),
            ChatMessage("assistant", "Hello"),
            ChatMessage("system", "Answer in French."),
            ChatMessage("user", "Bye"),
        ]
    )
    assert system == "Be brief.\nAnswer in French."
    assert turns == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
    ]


def test_consecutive_same_role_messages_are_merged_so_roles_alternate() -> None:
    system, turns = messages_to_vendor(
        [
            ChatMessage("user", "First."),
            ChatMessage("system", "Context."),
            ChatMessage("user", "Second."),
            ChatMessage("assistant", "A"),
            ChatMessage("assistant", "B"),
        ]
    )
    assert system == "Context."
    assert turns == [
        {"role": "user", "content": "First.\n\nSecond."},
        {"role": "assistant", "content": "A\n\nB"},
    ]


def test_a_final_assistant_message_is_kept_as_prefill() -> None:
    _, turns = messages_to_vendor([ChatMessage("user", "Pick A or B"), ChatMessage("assistant", "The answer is")])
    assert turns[-1] == {"role": "assistant", "content": "The answer is"}


@pytest.mark.parametrize(
    ("messages", "match"),
    [
        ([ChatMessage("assistant", "Hello"), ChatMessage("user", "Hi")], "first message"),
        ([ChatMessage("system", "Be brief."), ChatMessage("assistant", "Hello")], "first message"),
        ([ChatMessage("system", "Only a system prompt.")], "at least one user message"),
        ([], "at least one user message"),
        ([ChatMessage("tool", "{}")], "role 'tool'"),
    ],
)
def test_conversations_anthropic_cannot_take_are_refused_with_400(messages: list[ChatMessage], match: str) -> None:
    with pytest.raises(InvalidRequest, match=match) as caught:
        provider.build_request(_target(), ChatRequest(messages))
    assert caught.value.status == 400


def test_completions_send_the_prompt_as_one_user_message() -> None:
    request = CompletionsRequest("Classify: great!", CommonParams(temperature=1.0, stop=["."]))
    req = provider.build_request(_target(), request)
    assert req.url == "https://api.anthropic.com/v1/messages"
    assert req.json == {
        "model": "claude-sonnet-4-5",
        "messages": [{"role": "user", "content": "Classify: great!"}],
        "max_tokens": 1024,
        "temperature": 0.5,
        "stop_sequences": ["."],
    }


def test_embeddings_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="embeddings"):
        provider.build_request(_target(), EmbeddingsRequest(["x"]))


def test_key_is_stripped_and_never_shown_by_the_request_repr() -> None:
    req = provider.build_request(_target(key=f"  {KEY}\n"), _chat(("user", "Hi")))
    assert req.headers["x-api-key"] == KEY
    assert KEY not in repr(req) and KEY not in str(req)


# ---------------------------------------------------------------- response parsing

MESSAGE_BODY = {
    "id": "msg_013Zva2CMHLNnXjNJJKqJ2EF",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [
        {"type": "text", "text": "Blue is often seen "},
        {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {}},
        {"type": "text", "text": "as calming."},
    ],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 10, "output_tokens": 25},
}


def test_chat_response_concatenates_text_blocks_and_maps_usage_and_ids() -> None:
    response = chat_from_vendor(MESSAGE_BODY, default_model="claude-sonnet-4-5")
    assert response.model == "claude-sonnet-4-5-20250929"
    assert response.id == "msg_013Zva2CMHLNnXjNJJKqJ2EF" and response.created is None
    assert len(response.choices) == 1
    choice = response.choices[0]
    assert (choice.index, choice.message.role, choice.message.content) == (
        0,
        "assistant",
        "Blue is often seen as calming.",
    )
    assert choice.finish_reason == "stop"
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (
        10,
        25,
        35,
    )


def test_completions_response_carries_the_text() -> None:
    body = {**MESSAGE_BODY, "stop_reason": "max_tokens", "content": [{"type": "text", "text": "positive"}]}
    response = completions_from_vendor(body, default_model="x")
    assert response.choices[0].text == "positive"
    assert response.choices[0].finish_reason == "length"
    assert response.usage.total_tokens == 35


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "pause_turn"),
        (None, None),
    ],
)
def test_stop_reasons_map_to_openai_finish_reasons(stop_reason: str | None, finish_reason: str | None) -> None:
    assert finish_reason_from_vendor(stop_reason) == finish_reason


def test_cache_tokens_count_as_input_and_missing_usage_stays_unknown() -> None:
    usage = usage_from_vendor(
        {"usage": {"input_tokens": 5, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 20,
                   "output_tokens": 3}}
    )
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (125, 3, 128)
    unknown = usage_from_vendor({})
    assert (unknown.input_tokens, unknown.output_tokens, unknown.total_tokens) == (None, None, None)


def test_model_falls_back_to_the_route_model() -> None:
    body = {k: v for k, v in MESSAGE_BODY.items() if k != "model"}
    assert chat_from_vendor(body, default_model="claude-x").model == "claude-x"


@pytest.mark.parametrize("body", [{}, {"id": "incomplete-1", "object": "unknown"}, {"content": "text"}, [1, 2]])
def test_malformed_bodies_raise_so_execute_can_report_a_bad_response(body: Any) -> None:
    response = UpstreamResponse(200, {}, orjson.dumps(body))
    with pytest.raises((KeyError, TypeError)):
        provider.parse_response(_target(), _chat(("user", "Hi")), response)


# ---------------------------------------------------------------- errors


def _error(status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> UpstreamResponse:
    body = {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_011CSHoE"}
    return UpstreamResponse(status, headers or {}, orjson.dumps(body))


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_vendor_client_errors_become_bad_request_with_the_vendor_message(status: int) -> None:
    error = error_from_vendor(_error(status, "invalid_request_error", "model: claude-9"), Secrets())
    assert isinstance(error, InvalidRequest)
    assert (error.status, error.code) == (400, "UPSTREAM_BAD_REQUEST")
    assert "model: claude-9" in error.message


@pytest.mark.parametrize("status", [401, 403])
def test_vendor_auth_errors_never_repeat_the_vendor_text(status: int) -> None:
    error = error_from_vendor(
        _error(status, "authentication_error", f"invalid x-api-key {KEY[:12]}...{KEY[-4:]}"),
        Secrets({"anthropic_api_key": KEY}),
    )
    assert isinstance(error, UpstreamError)
    assert (error.status, error.code) == (502, "UPSTREAM_AUTH_FAILED")
    assert "x-api-key" not in error.message and KEY[-4:] not in error.message


def test_rate_limit_carries_retry_after() -> None:
    error = error_from_vendor(
        _error(429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit",
               {"retry-after": "17"}),
        Secrets(),
    )
    assert (error.status, error.code, error.retry_after) == (502, "UPSTREAM_RATE_LIMITED", 17.0)
    assert "per-minute rate limit" in error.message
    assert error_from_vendor(_error(429, "rate_limit_error", "spend limit"), Secrets()).retry_after is None


@pytest.mark.parametrize(("status", "error_type"), [(529, "overloaded_error"), (500, "api_error"), (503, "api_error")])
def test_overloaded_and_server_errors_become_upstream_error(status: int, error_type: str) -> None:
    error = error_from_vendor(_error(status, error_type, "Overloaded"), Secrets())
    assert isinstance(error, UpstreamError)
    assert (error.status, error.code) == (502, "UPSTREAM_ERROR")
    assert str(status) in error.message and "Overloaded" in error.message


def test_error_messages_are_redacted_and_capped() -> None:
    error = error_from_vendor(
        _error(400, "invalid_request_error", f"bad header {KEY} " + "y" * 2000), Secrets({"anthropic_api_key": KEY})
    )
    assert (error.status, error.code) == (400, "UPSTREAM_BAD_REQUEST")
    assert KEY not in error.message and KEY[-4:] not in error.message
    assert len(error.message) < 600


def test_error_body_that_is_not_json_still_maps_by_status() -> None:
    error = error_from_vendor(UpstreamResponse(529, {}, b"<html>overloaded</html>"), Secrets())
    assert (error.status, error.code) == (502, "UPSTREAM_ERROR")
    assert "529" in error.message and "html" not in error.message


# ---------------------------------------------------------------- config validation


def _validate(
    config: dict[str, Any], secrets: dict[str, str] | None = None, route_type: RouteType = RouteType.CHAT
) -> None:
    provider.validate_config(route_type=route_type, config=config, secrets=secrets or {})


def test_chat_and_completions_need_only_the_key() -> None:
    _validate({}, {"anthropic_api_key": KEY})
    _validate({"anthropic_api_key": KEY}, route_type=RouteType.COMPLETIONS)
    with pytest.raises(ProviderConfigError, match="anthropic_api_key"):
        _validate({})


def test_an_embeddings_route_is_refused() -> None:
    with pytest.raises(ProviderConfigError, match="does not support route type 'llm/v1/embeddings'"):
        _validate({}, {"anthropic_api_key": KEY}, route_type=RouteType.EMBEDDINGS)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"anthropic_api_base": "ftp://x"}, "http"),
        ({"anthropic_api_base": "https://api.anthropic.com/v1"}, "leave out '/v1'"),
        ({"anthropic_api_base": "https://proxy/v1/messages/"}, "leave out '/v1'"),
        ({"anthropic_default_max_tokens": 0}, "positive integer"),
        ({"anthropic_default_max_tokens": "lots"}, "positive integer"),
        ({"anthropic_default_max_tokens": True}, "positive integer"),
        ({"anthropic_max_tokens": 10}, "Unknown config"),
    ],
)
def test_invalid_config_is_refused(config: dict[str, Any], match: str) -> None:
    with pytest.raises(ProviderConfigError, match=match):
        _validate(config, {"anthropic_api_key": KEY})


def test_settings_resolve_defaults_and_accept_a_numeric_string() -> None:
    assert AnthropicSettings.from_config({}) == AnthropicSettings(
        api_base="https://api.anthropic.com", version="2023-06-01", default_max_tokens=1024
    )
    assert AnthropicSettings.from_config({"anthropic_default_max_tokens": " 512 "}).default_max_tokens == 512


def test_provider_declares_its_contract() -> None:
    assert provider.name == "anthropic"
    assert provider.route_types == {RouteType.CHAT, RouteType.COMPLETIONS}
    assert provider.secret_fields == ("anthropic_api_key",)
    assert not set(provider.secret_fields) & set(provider.config_fields)
    assert provider.temperature_scale == 0.5
