"""The Mistral adapter's pure functions, with plain dicts: no network."""

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
    InvalidRequest,
    ProviderConfigError,
    RouteType,
    Secrets,
    Target,
    UpstreamError,
    UpstreamResponse,
)
from providers.mistral import MistralProvider, error_message, finish_reason_from_vendor, to_vendor_body

KEY = "mSt7Hq2Zp9Lm4Xv8Tk3RbQwE5r"
provider = MistralProvider()
CHAT = ChatRequest([ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")])


def _target(config: dict[str, Any] | None = None) -> Target:
    return Target("mistral", "mistral-small-latest", config or {}, Secrets({"mistral_api_key": KEY}))


def _response(data: Any, status: int = 200) -> UpstreamResponse:
    return UpstreamResponse(status=status, headers={}, body=orjson.dumps(data))


def test_config_keys_are_mlflows_key_and_our_base() -> None:
    assert (provider.secret_fields, provider.config_fields, provider.required_fields) == (
        ("mistral_api_key",), ("mistral_api_base",), ("mistral_api_key",))
    with pytest.raises(ProviderConfigError, match="mistral_api_key"):
        provider.validate_config(route_type=RouteType.CHAT, config={}, secrets={})
    with pytest.raises(ProviderConfigError, match="http"):
        provider.validate_config(route_type=RouteType.CHAT, config={"mistral_api_base": "api.mistral.ai"},
                                 secrets={"mistral_api_key": KEY})
    for route_type in RouteType:
        provider.validate_config(route_type=route_type, config={}, secrets={"mistral_api_key": KEY})


def test_chat_request_goes_to_chat_completions_with_bearer_key() -> None:
    req = provider.build_request(_target(), CHAT)
    assert (req.method, req.url) == ("POST", "https://api.mistral.ai/v1/chat/completions")
    assert req.headers["Authorization"] == f"Bearer {KEY}"
    assert req.json == {
        "model": "mistral-small-latest",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    }


@pytest.mark.parametrize(("openai_scale", "mistral_scale"), [(0.0, 0.0), (0.7, 0.35), (1.4, 0.7), (2.0, 1.0)])
def test_temperature_is_halved_onto_mistrals_zero_to_one(openai_scale: float, mistral_scale: float) -> None:
    _, body = to_vendor_body(ChatRequest(CHAT.messages, CommonParams(temperature=openai_scale)), model="m")
    assert body["temperature"] == pytest.approx(mistral_scale)
    assert provider.temperature_scale == 0.5


def test_a_temperature_beyond_openais_range_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="temperature"):
        to_vendor_body(ChatRequest(CHAT.messages, CommonParams(temperature=2.5)), model="m")


def test_other_params_pass_through_by_openais_names() -> None:
    params = CommonParams(max_tokens=7, n=2, stop=["\n"], top_p=0.9, presence_penalty=0.1, frequency_penalty=0.2)
    _, body = to_vendor_body(ChatRequest(CHAT.messages, params), model="m")
    assert {k: body[k] for k in ("max_tokens", "n", "stop", "top_p", "presence_penalty", "frequency_penalty")} == {
        "max_tokens": 7, "n": 2, "stop": ["\n"], "top_p": 0.9, "presence_penalty": 0.1, "frequency_penalty": 0.2}


def test_completions_go_to_chat_as_one_user_message() -> None:
    path, body = to_vendor_body(CompletionsRequest("Once", CommonParams(temperature=1.0)), model="m")
    assert path == "chat/completions"
    assert body == {"model": "m", "messages": [{"role": "user", "content": "Once"}], "temperature": 0.5}


def test_embeddings_body_and_a_configured_base() -> None:
    req = provider.build_request(_target({"mistral_api_base": "https://eu.proxy/mistral/v1/"}),
                                 EmbeddingsRequest(["a", "b"]))
    assert req.url == "https://eu.proxy/mistral/v1/embeddings"
    assert req.json == {"model": "mistral-small-latest", "input": ["a", "b"]}


def test_stream_request_sends_no_stream_options() -> None:
    body = provider.build_stream_request(_target(), CHAT).json
    assert body["stream"] is True and "stream_options" not in body


def _chat_answer(finish: str = "stop", usage: dict[str, int] | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "cmpl-1", "object": "chat.completion", "created": 1, "model": "mistral-small-latest",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": finish}],
    }
    if usage is not None:
        data["usage"] = usage
    return data


def test_chat_and_completions_answers_parse_with_usage() -> None:
    usage = {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}
    chat = provider.parse_response(_target(), CHAT, _response(_chat_answer(usage=usage)))
    assert isinstance(chat, ChatResponse)
    assert (chat.choices[0].message.content, chat.usage.input_tokens, chat.usage.estimated) == ("Hello", 9, False)
    comp = provider.parse_response(_target(), CompletionsRequest("Hi"), _response(_chat_answer("model_length", usage)))
    assert isinstance(comp, CompletionsResponse)
    assert (comp.choices[0].text, comp.choices[0].finish_reason) == ("Hello", "length")


def test_an_error_finish_reason_is_an_upstream_error() -> None:
    assert finish_reason_from_vendor("tool_calls") == "tool_calls"
    with pytest.raises(UpstreamError):
        provider.parse_response(_target(), CHAT, _response(_chat_answer("error")))


def test_embeddings_answer_parses_in_index_order() -> None:
    data = {"id": "e", "object": "list", "model": "mistral-embed",
            "data": [{"object": "embedding", "index": 1, "embedding": [2]},
                     {"object": "embedding", "index": 0, "embedding": [1]}],
            "usage": {"prompt_tokens": 4, "total_tokens": 4, "completion_tokens": 0}}
    response = provider.parse_response(_target(), EmbeddingsRequest(["a", "b"]), _response(data))
    assert isinstance(response, EmbeddingsResponse)
    assert (response.embeddings, response.usage.input_tokens, response.usage.output_tokens) == ([[1.0], [2.0]], 4, 0)


def test_a_422_detail_list_becomes_field_and_problem() -> None:
    body = {"object": "error", "message": {"detail": [
        {"type": "extra_forbidden", "loc": ["body", "stream_options"], "msg": "Extra inputs are not permitted"},
        {"type": "less_than_equal", "loc": ["body", "temperature"], "msg": "Input should be less than or equal to 1"},
    ]}, "type": "invalid_request_message_error", "param": None, "code": None}
    assert error_message(orjson.dumps(body)) == (
        "stream_options: Extra inputs are not permitted; temperature: Input should be less than or equal to 1")
    error = provider.map_error(_target(), _response(body, 422))
    assert (error.status, error.code) == (400, "UPSTREAM_BAD_REQUEST")
    assert "stream_options: Extra inputs are not permitted" in error.message


@pytest.mark.parametrize(("status", "code"), [(401, "UPSTREAM_AUTH_FAILED"), (429, "UPSTREAM_RATE_LIMITED"),
                                              (500, "UPSTREAM_ERROR"), (400, "UPSTREAM_BAD_REQUEST")])
def test_statuses_map_like_openais(status: int, code: str) -> None:
    body = {"message": "Unauthorized"} if status == 401 else {"object": "error", "message": f"bad {KEY}"}
    error = provider.map_error(_target(), _response(body, status))
    assert error.code == code and KEY not in error.message


def test_stream_finish_reasons_are_mistrals() -> None:
    parser = provider.stream_parser(_target(), CHAT)
    chunk = {"id": "x", "model": "m", "choices": [{"index": 0, "delta": {"content": "!"},
                                                   "finish_reason": "model_length"}],
             "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
    chunks = parser.feed(b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n")
    assert chunks[0].deltas[0].finish_reason == "length" and chunks[0].usage is not None
