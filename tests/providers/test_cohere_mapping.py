"""The Cohere adapter's pure functions, with plain dicts: no network."""

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
from providers.cohere import (
    CohereProvider,
    CohereSettings,
    chat_from_vendor,
    completions_from_vendor,
    embeddings_from_vendor,
    error_from_vendor,
    finish_reason_from_vendor,
    params_to_vendor,
    usage_from_vendor,
)

# Cohere keys are 40 alphanumeric characters, no prefix.
KEY = "Hq2Zp9Lm4Xv8Tk3RbQw7Yn5Jc1Fd6Gs0Ae4Ur8Io"
provider = CohereProvider()


def _target(config: dict[str, Any] | None = None, key: str = KEY, model: str = "command-r-plus") -> Target:
    return Target("cohere", model, config or {}, Secrets({"cohere_api_key": key}))


def _chat(params: CommonParams | None = None) -> ChatRequest:
    messages = [
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Hi"),
        ChatMessage("assistant", "Hello."),
        ChatMessage("user", "Bye"),
    ]
    return ChatRequest(messages, params or CommonParams())


def _penalty(name: str, value: float) -> CommonParams:
    if name == "presence_penalty":
        return CommonParams(presence_penalty=value)
    return CommonParams(frequency_penalty=value)


# ---------------------------------------------------------------- request mapping


def test_unset_params_are_left_out() -> None:
    assert params_to_vendor(CommonParams()) == {}


def test_params_map_to_cohere_names_and_scale_temperature_by_half() -> None:
    params = CommonParams(
        temperature=1.4, max_tokens=20, stop=["\n", "END"], top_p=0.9, presence_penalty=0.5, frequency_penalty=0.25
    )
    assert params_to_vendor(params) == {
        "temperature": pytest.approx(0.7),
        "max_tokens": 20,
        "stop_sequences": ["\n", "END"],
        "p": 0.9,
        "presence_penalty": 0.5,
        "frequency_penalty": 0.25,
    }


def test_openai_temperature_range_maps_onto_cohere_v2s_documented_0_to_1() -> None:
    # Cohere's v2 chat reference: temperature minimum 0, maximum 1 (OpenAI's is 0..2).
    assert CohereProvider.temperature_scale == 0.5
    assert params_to_vendor(CommonParams(temperature=0.0)) == {"temperature": 0.0}
    assert params_to_vendor(CommonParams(temperature=2.0)) == {"temperature": 1.0}
    # An MLflow 2.5 route call's temperature t arrives doubled (2t) and reaches Cohere as t.
    assert params_to_vendor(CommonParams(temperature=2 * 0.3)) == {"temperature": pytest.approx(0.3)}


@pytest.mark.parametrize(("top_p", "p"), [(1.0, 0.99), (0.0, 0.01), (0.5, 0.5), (0.995, 0.99)])
def test_top_p_becomes_p_clamped_into_cohere_range(top_p: float, p: float) -> None:
    assert params_to_vendor(CommonParams(top_p=top_p)) == {"p": p}


@pytest.mark.parametrize("n", [2, 5])
def test_more_than_one_candidate_is_refused_before_upstream(n: int) -> None:
    with pytest.raises(InvalidRequest, match="n must be 1") as caught:
        provider.build_request(_target(), _chat(CommonParams(n=n)))
    assert (caught.value.status, caught.value.code) == (400, "INVALID_PARAMETER_VALUE")


@pytest.mark.parametrize("name", ["presence_penalty", "frequency_penalty"])
@pytest.mark.parametrize("value", [-0.5, 1.5, 2.0])
def test_penalties_outside_cohere_0_to_1_are_refused(name: str, value: float) -> None:
    with pytest.raises(InvalidRequest, match=name) as caught:
        params_to_vendor(_penalty(name, value))
    assert caught.value.status == 400


@pytest.mark.parametrize("name", ["presence_penalty", "frequency_penalty"])
@pytest.mark.parametrize("value", [0.0, 1.0])
def test_penalties_at_cohere_bounds_pass_through(name: str, value: float) -> None:
    assert params_to_vendor(_penalty(name, value)) == {name: value}


@pytest.mark.parametrize(
    "params", [CommonParams(temperature=2.5), CommonParams(temperature=-0.1), CommonParams(top_p=1.5)]
)
def test_out_of_range_temperature_or_top_p_is_refused(params: CommonParams) -> None:
    with pytest.raises(InvalidRequest):
        params_to_vendor(params)


def test_chat_request_uses_bearer_key_v2_chat_and_passes_roles_through() -> None:
    req = provider.build_request(_target(), _chat(CommonParams(max_tokens=5)))
    assert (req.method, req.url) == ("POST", "https://api.cohere.com/v2/chat")
    assert dict(req.headers) == {"Authorization": f"Bearer {KEY}", "Accept": "application/json"}
    assert req.json == {
        "model": "command-r-plus",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Bye"},
        ],
        "max_tokens": 5,
    }
    assert req.params is None


def test_completions_send_the_prompt_as_one_user_message_to_v2_chat() -> None:
    req = provider.build_request(_target(), CompletionsRequest("Classify: great!", CommonParams(stop=["."])))
    assert req.url == "https://api.cohere.com/v2/chat"
    assert req.json == {
        "model": "command-r-plus",
        "messages": [{"role": "user", "content": "Classify: great!"}],
        "stop_sequences": ["."],
    }


def test_embeddings_send_texts_input_type_and_float_embedding_type() -> None:
    req = provider.build_request(_target(model="embed-english-v3.0"), EmbeddingsRequest(["a", "b"]))
    assert req.url == "https://api.cohere.com/v2/embed"
    assert req.json == {
        "model": "embed-english-v3.0",
        "texts": ["a", "b"],
        "input_type": "search_document",
        "embedding_types": ["float"],
    }
    configured = provider.build_request(
        _target({"cohere_embed_input_type": "search_query"}), EmbeddingsRequest(["q"])
    )
    assert configured.json["input_type"] == "search_query"


def test_custom_base_is_the_server_root() -> None:
    req = provider.build_request(_target({"cohere_api_base": "http://proxy:8080/cohere/"}), _chat())
    assert req.url == "http://proxy:8080/cohere/v2/chat"


def test_key_is_stripped_and_never_shown_by_the_request_repr() -> None:
    req = provider.build_request(_target(key=f"  {KEY}\n"), _chat())
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(req) and KEY not in str(req)


def test_settings_resolve_defaults() -> None:
    assert CohereSettings.from_config({}) == CohereSettings("https://api.cohere.com", "search_document")


# ---------------------------------------------------------------- response parsing

CHAT_BODY: dict[str, Any] = {
    "id": "c14c80c3-18eb-4519-9460-6c92edd8cfb4",
    "finish_reason": "COMPLETE",
    "message": {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "The user greets me."},
            {"type": "text", "text": "Hello! "},
            {"type": "text", "text": "How can I help?"},
        ],
    },
    "usage": {
        "billed_units": {"input_tokens": 5, "output_tokens": 418},
        "tokens": {"input_tokens": 71, "output_tokens": 418},
    },
}


def test_chat_answer_joins_text_items_and_prefers_tokens_over_billed_units() -> None:
    response = chat_from_vendor(CHAT_BODY, model="command-r-plus")
    assert response.model == "command-r-plus"
    assert response.id == "c14c80c3-18eb-4519-9460-6c92edd8cfb4"
    assert len(response.choices) == 1
    choice = response.choices[0]
    assert (choice.index, choice.message.role, choice.message.content) == (0, "assistant", "Hello! How can I help?")
    assert choice.finish_reason == "stop"
    usage = response.usage
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (71, 418, 489)


def test_usage_falls_back_to_billed_units_and_is_unknown_when_absent() -> None:
    billed = usage_from_vendor({"billed_units": {"input_tokens": 5.0, "output_tokens": 9}})
    assert (billed.input_tokens, billed.output_tokens, billed.total_tokens) == (5, 9, 14)
    assert usage_from_vendor(None).input_tokens is None
    assert usage_from_vendor({}).total_tokens is None


def test_chat_answer_without_content_is_empty_text() -> None:
    body = {"id": "x", "finish_reason": "TOOL_CALL", "message": {"role": "assistant", "tool_calls": []}}
    response = chat_from_vendor(body, model="m")
    assert response.choices[0].message.content == ""
    assert response.choices[0].finish_reason == "tool_calls"
    assert response.usage.input_tokens is None


@pytest.mark.parametrize(
    ("cohere", "openai"),
    [
        ("COMPLETE", "stop"),
        ("STOP_SEQUENCE", "stop"),
        ("MAX_TOKENS", "length"),
        ("TIMEOUT", "length"),
        ("TOOL_CALL", "tool_calls"),
        ("SOMETHING_NEW", "something_new"),
        (None, None),
    ],
)
def test_finish_reasons_map_to_openais(cohere: str | None, openai: str | None) -> None:
    assert finish_reason_from_vendor(cohere) == openai


def test_a_generation_that_finished_with_error_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError) as caught:
        chat_from_vendor({**CHAT_BODY, "finish_reason": "ERROR"}, model="m")
    assert (caught.value.status, caught.value.code) == (502, "UPSTREAM_ERROR")


def test_completions_answer_is_the_chat_text() -> None:
    body = {**CHAT_BODY, "finish_reason": "MAX_TOKENS"}
    response = completions_from_vendor(body, model="command-r")
    assert response.choices[0].text == "Hello! How can I help?"
    assert response.choices[0].finish_reason == "length"
    assert response.id == CHAT_BODY["id"]
    assert response.usage.total_tokens == 489


EMBED_BODY: dict[str, Any] = {
    "id": "da6e531f-54c6-4a73-bf92-f60566d8d753",
    "embeddings": {"float": [[0.1, 0.2], [0.3, 0.4]]},
    "texts": ["a", "b"],
    "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 2}},
    "response_type": "embeddings_by_type",
}


def test_embeddings_come_from_float_with_billed_input_tokens_and_zero_output() -> None:
    response = embeddings_from_vendor(EMBED_BODY, model="embed-english-v3.0", expected=2)
    assert response.embeddings == [[0.1, 0.2], [0.3, 0.4]]
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (2, 0, 2)


def test_embeddings_in_the_v1_floats_shape_are_read_too() -> None:
    body = {"id": "x", "embeddings": [[1, 2]], "response_type": "embeddings_floats"}
    response = embeddings_from_vendor(body, model="m", expected=1)
    assert response.embeddings == [[1.0, 2.0]]
    assert response.usage.input_tokens is None


@pytest.mark.parametrize(
    ("request_", "body"),
    [
        (ChatRequest([ChatMessage("user", "x")]), {}),
        (ChatRequest([ChatMessage("user", "x")]), {"id": "incomplete-1", "object": "unknown"}),
        (ChatRequest([ChatMessage("user", "x")]), {"message": "text"}),
        (ChatRequest([ChatMessage("user", "x")]), [1, 2]),
        (EmbeddingsRequest(["a", "b"]), {"embeddings": {"int8": [[1]]}}),
        (EmbeddingsRequest(["a", "b", "c"]), EMBED_BODY),
    ],
)
def test_malformed_bodies_raise_so_execute_can_report_a_bad_response(request_: Any, body: Any) -> None:
    response = UpstreamResponse(200, {}, orjson.dumps(body))
    with pytest.raises((KeyError, TypeError, ValueError)):
        provider.parse_response(_target(), request_, response)


# ---------------------------------------------------------------- errors


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> UpstreamResponse:
    body = {"id": "2e3b8c4a-0000-4000-8000-000000000001", "message": message}
    return UpstreamResponse(status, headers or {}, orjson.dumps(body))


@pytest.mark.parametrize("status", [400, 404, 422, 498])
def test_vendor_client_errors_become_bad_request_with_the_vendor_message(status: int) -> None:
    error = error_from_vendor(
        _error(status, "unknown field: parameter 'n' is not a valid field"), Secrets()
    )
    assert isinstance(error, InvalidRequest)
    assert (error.status, error.code) == (400, "UPSTREAM_BAD_REQUEST")
    assert "unknown field: parameter 'n' is not a valid field" in error.message


@pytest.mark.parametrize("status", [401, 403])
def test_vendor_auth_errors_never_repeat_the_vendor_text(status: int) -> None:
    error = error_from_vendor(_error(status, f"invalid api token {KEY}"), Secrets({"cohere_api_key": KEY}))
    assert isinstance(error, UpstreamError)
    assert (error.status, error.code) == (502, "UPSTREAM_AUTH_FAILED")
    assert "invalid api token" not in error.message and KEY[-4:] not in error.message


def test_rate_limit_carries_retry_after_when_sent() -> None:
    error = error_from_vendor(_error(429, "You are using a Trial key, which is limited"), Secrets())
    assert (error.status, error.code, error.retry_after) == (502, "UPSTREAM_RATE_LIMITED", None)
    assert "Trial key" in error.message
    error = error_from_vendor(_error(429, "slow down", {"Retry-After": "12"}), Secrets())
    assert error.retry_after == 12.0


@pytest.mark.parametrize("status", [499, 500, 501, 503, 504])
def test_other_statuses_become_upstream_error_with_capped_redacted_message(status: int) -> None:
    error = error_from_vendor(_error(status, f"boom with {KEY} " + "y" * 2000), Secrets({"cohere_api_key": KEY}))
    assert (error.status, error.code) == (502, "UPSTREAM_ERROR")
    assert KEY not in error.message and KEY[:6] not in error.message
    assert len(error.message) < 600


def test_error_body_that_is_not_json_still_maps_by_status() -> None:
    error = error_from_vendor(UpstreamResponse(502, {}, b"<html>bad gateway</html>"), Secrets())
    assert (error.status, error.code) == (502, "UPSTREAM_ERROR")
    assert "502" in error.message and "html" not in error.message


# ---------------------------------------------------------------- config validation


def _validate(
    config: dict[str, Any], secrets: dict[str, str] | None = None, route_type: RouteType = RouteType.CHAT
) -> None:
    provider.validate_config(route_type=route_type, config=config, secrets=secrets or {})


@pytest.mark.parametrize("route_type", list(RouteType))
def test_every_route_type_needs_only_the_key(route_type: RouteType) -> None:
    _validate({}, {"cohere_api_key": KEY}, route_type=route_type)
    _validate({"cohere_api_key": KEY}, route_type=route_type)
    with pytest.raises(ProviderConfigError, match="cohere_api_key"):
        _validate({}, route_type=route_type)


def test_contract_declares_mlflows_key_as_the_primary_secret() -> None:
    assert CohereProvider.name == "cohere"
    assert CohereProvider.secret_fields == ("cohere_api_key",)
    assert set(CohereProvider.config_fields) == {"cohere_api_base", "cohere_embed_input_type"}


def test_optional_config_is_accepted() -> None:
    _validate(
        {"cohere_api_base": "http://127.0.0.1:9999", "cohere_embed_input_type": "clustering"},
        {"cohere_api_key": KEY},
        route_type=RouteType.EMBEDDINGS,
    )


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"cohere_api_base": "ftp://x"}, "http"),
        ({"cohere_api_base": "https://api.cohere.com/v2"}, "without /v1 or /v2"),
        ({"cohere_api_base": "https://api.cohere.ai/v1/"}, "without /v1 or /v2"),
        ({"cohere_embed_input_type": "image"}, "cohere_embed_input_type"),
        ({"cohere_api_kye": "typo"}, "Unknown config"),
    ],
)
def test_invalid_config_is_refused(config: dict[str, Any], match: str) -> None:
    with pytest.raises(ProviderConfigError, match=match):
        _validate(config, {"cohere_api_key": KEY})
