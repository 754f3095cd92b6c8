"""AI21's mapping (Jamba chat and MLflow's J2 completions) as pure functions over plain dicts."""

from __future__ import annotations

import orjson
import pytest

from providers.ai21labs import (
    AI21LabsProvider,
    AI21Settings,
    AI21StreamParser,
    build_upstream_request,
    error_from_vendor,
    error_message,
    is_j2,
    j2_from_vendor,
    jamba_chat_from_vendor,
    jamba_completions_from_vendor,
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
    UpstreamError,
    UpstreamResponse,
)
from providers.tokens import count_text_tokens

ai21 = AI21LabsProvider()
SETTINGS = AI21Settings()
CHAT = ChatRequest([ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")],
                   CommonParams(temperature=0.7, max_tokens=30, top_p=0.9, stop=["\n"]))


def test_provider_name_keys_and_route_types() -> None:
    assert ai21.name == "ai21labs" and ai21.secret_fields == ("ai21labs_api_key",)
    assert ai21.config_fields == ("ai21labs_api_base",) and ai21.required_fields == ("ai21labs_api_key",)
    assert ai21.route_types == {RouteType.CHAT, RouteType.COMPLETIONS} and ai21.supports_streaming


def test_embeddings_routes_missing_keys_and_doubled_paths_are_refused() -> None:
    key = {"ai21labs_api_key": "k"}
    with pytest.raises(ProviderConfigError, match="does not support route type 'llm/v1/embeddings'"):
        ai21.validate_config(route_type=RouteType.EMBEDDINGS, config={}, secrets=key)
    with pytest.raises(ProviderConfigError, match="ai21labs_api_key"):
        ai21.validate_config(route_type=RouteType.CHAT, config={}, secrets={})
    with pytest.raises(ProviderConfigError, match="server root"):
        ai21.validate_config(route_type=RouteType.CHAT, config={"ai21labs_api_base": "https://api.ai21.com/studio/v1"},
                             secrets=key)
    ai21.validate_config(route_type=RouteType.COMPLETIONS, config={}, secrets=key)


def test_j2_models_are_recognised() -> None:
    assert is_j2("j2-ultra") and is_j2("J2-Mid") and not is_j2("jamba-mini") and not is_j2("jamba-1.5-large")


def test_chat_goes_to_the_jamba_api_with_openai_names() -> None:
    sent = build_upstream_request(SETTINGS, model="jamba-mini", api_key="k", request=CHAT)
    assert sent.url == "https://api.ai21.com/studio/v1/chat/completions"
    assert sent.headers["Authorization"] == "Bearer k"
    assert sent.json == {
        "model": "jamba-mini",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 30, "temperature": 0.7, "top_p": 0.9, "stop": ["\n"],
    }


def test_completions_on_jamba_send_the_prompt_as_one_user_message_with_n() -> None:
    request = CompletionsRequest("Once", CommonParams(n=2))
    sent = build_upstream_request(SETTINGS, model="jamba-large", api_key="k", request=request)
    assert sent.url.endswith("/studio/v1/chat/completions")
    assert sent.json == {"model": "jamba-large", "messages": [{"role": "user", "content": "Once"}], "n": 2}


def test_completions_on_j2_keep_mlflows_complete_mapping() -> None:
    request = CompletionsRequest("Once", CommonParams(temperature=0.5, max_tokens=8, stop=["."], n=3, top_p=0.8))
    sent = build_upstream_request(SETTINGS, model="j2-ultra", api_key="k", request=request)
    assert sent.url == "https://api.ai21.com/studio/v1/j2-ultra/complete"
    assert sent.json == {"prompt": "Once", "maxTokens": 8, "temperature": 0.5, "topP": 0.8,
                         "stopSequences": ["."], "numResults": 3}


def test_j2_does_not_stream_and_embeddings_are_no_call() -> None:
    with pytest.raises(InvalidRequest, match="does not stream") as caught:
        build_upstream_request(SETTINGS, model="j2-mid", api_key="k", request=CompletionsRequest("x"), stream=True)
    assert caught.value.status == 400
    streamed = build_upstream_request(SETTINGS, model="jamba-mini", api_key="k", request=CHAT, stream=True)
    assert streamed.json["stream"] is True and streamed.headers["Accept"] == "text/event-stream"
    with pytest.raises(InvalidRequest):
        build_upstream_request(SETTINGS, model="jamba-mini", api_key="k", request=EmbeddingsRequest(["x"]))


@pytest.mark.parametrize("params", [CommonParams(presence_penalty=0.5), CommonParams(frequency_penalty=-1.0)])
@pytest.mark.parametrize("model", ["jamba-mini", "j2-ultra"])
def test_non_zero_penalties_are_refused_and_zero_ones_dropped(params: CommonParams, model: str) -> None:
    with pytest.raises(InvalidRequest, match="penalty"):
        build_upstream_request(SETTINGS, model=model, api_key="k", request=CompletionsRequest("x", params))
    zero = CommonParams(presence_penalty=0.0, frequency_penalty=0.0)
    body = build_upstream_request(SETTINGS, model=model, api_key="k", request=CompletionsRequest("x", zero)).json
    assert not any("enalty" in name for name in body)


J2_ANSWER = {
    "id": "7921a78e-d905-c9df-27e3-88e4831e3c3b",
    "prompt": {"text": "I will", "tokens": [{"generatedToken": {"token": "▁I▁will"}}]},
    "completions": [
        {"data": {"text": " complete this", "tokens": [{}, {}]}, "finishReason": {"reason": "length", "length": 2}},
        {"data": {"text": " stop", "tokens": [{}]}, "finishReason": {"reason": "endoftext"}},
    ],
}


def test_j2_answers_map_to_choices_with_usage_from_the_token_lists() -> None:
    response = j2_from_vendor(J2_ANSWER, model="j2-ultra", prompt="I will")
    assert [(c.index, c.text, c.finish_reason) for c in response.choices] == [
        (0, " complete this", "length"), (1, " stop", "stop")]
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.estimated) == (1, 3, False)
    assert response.id == J2_ANSWER["id"]


def test_j2_answers_without_token_lists_are_estimated() -> None:
    data = {"id": 1, "prompt": {"text": "Hi"}, "completions": [{"data": {"text": "there"},
                                                                "finishReason": {"reason": "stop", "sequence": "."}}]}
    response = j2_from_vendor(data, model="j2-mid", prompt="Hi there friend")
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.estimated
    assert response.usage.input_tokens == count_text_tokens("Hi there friend")


JAMBA_ANSWER = {
    "id": "chat-1",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!", "tool_calls": None},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 144, "completion_tokens": 14, "total_tokens": 158},
}


def test_jamba_answers_are_read_for_chat_and_completions() -> None:
    chat = jamba_chat_from_vendor(JAMBA_ANSWER, model="jamba-mini")
    assert chat.model == "jamba-mini" and chat.choices[0].message.content == "Hello!"
    assert (chat.usage.input_tokens, chat.usage.output_tokens, chat.usage.total_tokens) == (144, 14, 158)
    completion = jamba_completions_from_vendor(JAMBA_ANSWER, model="jamba-mini")
    assert completion.choices[0].text == "Hello!" and completion.id == "chat-1"


def test_fastapi_error_details_are_read_as_strings_and_lists() -> None:
    forbidden = "Forbidden: Bad or missing API token."
    assert error_message(orjson.dumps({"detail": forbidden})) == forbidden
    item = {"loc": ["body", "temperature"], "msg": "Input should be less than or equal to 2", "type": "less_than_equal"}
    listed = orjson.dumps({"detail": [item]})
    assert error_message(listed) == "temperature: Input should be less than or equal to 2"
    assert error_message(b"<html>") is None


@pytest.mark.parametrize(("status", "code", "http"), [
    (422, "UPSTREAM_BAD_REQUEST", 400), (404, "UPSTREAM_BAD_REQUEST", 400), (401, "UPSTREAM_AUTH_FAILED", 502),
    (429, "UPSTREAM_RATE_LIMITED", 502), (500, "UPSTREAM_ERROR", 502), (503, "UPSTREAM_ERROR", 502),
])
def test_errors_map_like_openais(status: int, code: str, http: int) -> None:
    error = error_from_vendor(UpstreamResponse(status, {"retry-after": "5"}, b'{"detail": "nope"}'), Secrets())
    assert (error.status, error.code) == (http, code)
    assert ("nope" in error.message) == (status not in (401, 403))
    if status == 429:
        assert error.retry_after == 5.0


def test_an_echoed_key_is_redacted() -> None:
    key = "Wq7Hn2Zp9Lm4Xv8Tk3RbYcQzAa"
    error = error_from_vendor(UpstreamResponse(400, {}, orjson.dumps({"detail": f"bad key {key}"})),
                              Secrets({"ai21labs_api_key": key}))
    assert key not in error.message and key[6:-4] not in error.message


def test_stream_parser_reads_jamba_chunks_and_raises_on_an_error_event() -> None:
    parser = AI21StreamParser(model="jamba-mini", secrets=Secrets())
    wire = (b'data: {"id": "c1", "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": null}], '
            b'"usage": null}\n\n'
            b'data: {"id": "c1", "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": null}], '
            b'"usage": null}\n\n'
            b'data: {"id": "c1", "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}], '
            b'"usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}\n\n'
            b"data: [DONE]\n\n")
    chunks = parser.feed(wire) + parser.close()
    assert "".join(d.text for c in chunks for d in c.deltas) == "Hi"
    assert chunks[0].model == "jamba-mini" and chunks[-1].usage is not None and chunks[-1].usage.input_tokens == 3
    with pytest.raises(UpstreamError, match="mid-stream: overloaded"):
        AI21StreamParser(model="m", secrets=Secrets()).feed(b'data: {"detail": "overloaded"}\n\n')
