"""The Gemini adapter's pure functions, with plain dicts: no network."""

from __future__ import annotations

import json
from typing import Any

import pytest

from providers.base import (
    ChatMessage,
    ChatRequest,
    ChatResponse,
    CommonParams,
    CompletionsRequest,
    CompletionsResponse,
    EmbeddingsRequest,
    InvalidRequest,
    ProviderConfigError,
    RouteType,
    Secrets,
    Target,
    UpstreamError,
    UpstreamResponse,
    Usage,
)
from providers.gemini import (
    DEFAULT_API_BASE,
    GeminiProvider,
    GeminiStreamParser,
    chat_to_vendor,
    completions_to_vendor,
    error_from_vendor,
    from_vendor_body,
    generation_config,
    messages_to_vendor,
    usage_from_vendor,
)
from providers.tokens import count_chat_tokens, count_text_tokens

KEY = "AIzaSyLIVE3q9Lm2Xv7Tk4Rb8Wc1Hd6Np0Zs5Jg"
provider = GeminiProvider()


def _target(config: dict[str, Any] | None = None, model: str = "gemini-2.0-flash") -> Target:
    return Target("gemini", model, config or {}, Secrets({"gemini_api_key": KEY}))


def _chat(*messages: tuple[str, str], params: CommonParams | None = None) -> ChatRequest:
    return ChatRequest([ChatMessage(role, content) for role, content in messages], params or CommonParams())


def _answer(*candidates: dict[str, Any], usage: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"candidates": list(candidates), **extra}
    if usage is not None:
        body["usageMetadata"] = usage
    return body


def _candidate(text: str | None, finish: str | None = "STOP", **extra: Any) -> dict[str, Any]:
    candidate: dict[str, Any] = {**extra}
    if text is not None:
        candidate["content"] = {"parts": [{"text": text}], "role": "model"}
    if finish is not None:
        candidate["finishReason"] = finish
    return candidate


def _error(status: int, body: Any, headers: dict[str, str] | None = None) -> UpstreamResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return UpstreamResponse(status=status, headers=headers or {}, body=raw)


# ---------------------------------------------------------------- request mapping


def test_generation_config_renames_openai_params_and_keeps_temperature_on_its_0_to_2_scale() -> None:
    assert generation_config(CommonParams()) == {}
    params = CommonParams(temperature=1.8, max_tokens=64, n=3, stop=["END"], top_p=0.9,
                          presence_penalty=0.5, frequency_penalty=-0.5)
    assert generation_config(params) == {
        "temperature": 1.8,
        "maxOutputTokens": 64,
        "candidateCount": 3,
        "stopSequences": ["END"],
        "topP": 0.9,
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.5,
    }
    assert GeminiProvider.temperature_scale == 1.0


def test_zero_penalties_and_n_of_one_are_left_out() -> None:
    config = generation_config(CommonParams(temperature=0.0, n=1, presence_penalty=0.0, frequency_penalty=0.0))
    assert config == {"temperature": 0.0}


def test_assistant_becomes_model_and_system_messages_become_the_system_instruction() -> None:
    system, contents = messages_to_vendor([
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Hi"),
        ChatMessage("assistant", "Hello!"),
        ChatMessage("system", "Answer in French."),
        ChatMessage("user", "How are you?"),
    ])
    assert system == {"parts": [{"text": "Be brief."}, {"text": "Answer in French."}]}
    assert contents == [
        {"role": "user", "parts": [{"text": "Hi"}]},
        {"role": "model", "parts": [{"text": "Hello!"}]},
        {"role": "user", "parts": [{"text": "How are you?"}]},
    ]


def test_consecutive_same_role_turns_are_merged_part_by_part() -> None:
    _, contents = messages_to_vendor([
        ChatMessage("user", "First."),
        ChatMessage("system", "Lifted out."),
        ChatMessage("user", "Second."),
        ChatMessage("assistant", "A"),
        ChatMessage("assistant", "B"),
    ])
    assert contents == [
        {"role": "user", "parts": [{"text": "First."}, {"text": "Second."}]},
        {"role": "model", "parts": [{"text": "A"}, {"text": "B"}]},
    ]


def test_empty_messages_are_left_out_since_gemini_refuses_empty_parts() -> None:
    system, contents = messages_to_vendor(
        [ChatMessage("system", ""), ChatMessage("user", "Hi"), ChatMessage("assistant", ""), ChatMessage("user", "?")]
    )
    assert system is None
    assert contents == [{"role": "user", "parts": [{"text": "Hi"}, {"text": "?"}]}]


@pytest.mark.parametrize(
    "messages",
    [
        [ChatMessage("system", "Only a system message.")],
        [ChatMessage("user", "")],
        [ChatMessage("tool", "42")],
    ],
)
def test_requests_gemini_cannot_take_are_refused_before_any_call(messages: list[ChatMessage]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        messages_to_vendor(messages)
    assert caught.value.status == 400


def test_chat_body_has_contents_system_instruction_and_generation_config() -> None:
    body = chat_to_vendor(_chat(("system", "S"), ("user", "U"), params=CommonParams(max_tokens=5)))
    assert body == {
        "contents": [{"role": "user", "parts": [{"text": "U"}]}],
        "systemInstruction": {"parts": [{"text": "S"}]},
        "generationConfig": {"maxOutputTokens": 5},
    }


def test_completions_prompt_is_one_user_turn() -> None:
    body = completions_to_vendor(CompletionsRequest("Once upon", CommonParams(stop=["."])))
    assert body == {
        "contents": [{"role": "user", "parts": [{"text": "Once upon"}]}],
        "generationConfig": {"stopSequences": ["."]},
    }


def test_key_goes_in_the_header_never_in_the_url() -> None:
    request = provider.build_request(_target(), _chat(("user", "Hi")))
    assert request.method == "POST"
    assert request.url == f"{DEFAULT_API_BASE}/models/gemini-2.0-flash:generateContent"
    assert request.headers == {"x-goog-api-key": KEY}
    assert request.params is None
    assert KEY not in repr(request)


def test_stream_request_uses_stream_generate_content_with_alt_sse() -> None:
    request = provider.build_stream_request(_target({"gemini_api_base": "http://proxy/v1beta/"}),
                                            CompletionsRequest("x"))
    assert request.url == "http://proxy/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    assert request.params == {"alt": "sse"}
    assert request.headers == {"x-goog-api-key": KEY}


def test_model_names_with_models_prefix_and_odd_characters_stay_one_path_segment() -> None:
    assert provider.build_request(_target(model="models/gemini-1.5-pro"), _chat(("user", "x"))).url.endswith(
        "/models/gemini-1.5-pro:generateContent"
    )
    assert provider.build_request(_target(model="a/b?c"), _chat(("user", "x"))).url.endswith(
        "/models/a%2Fb%3Fc:generateContent"
    )


def test_embeddings_go_to_batch_embed_contents_one_request_per_text() -> None:
    request = provider.build_request(_target(model="text-embedding-004"), EmbeddingsRequest(["a", "b"]))
    assert request.url == f"{DEFAULT_API_BASE}/models/text-embedding-004:batchEmbedContents"
    assert request.json == {
        "requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "a"}]}},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "b"}]}},
        ]
    }


@pytest.mark.parametrize("inputs", [[], ["ok", ""], ["t"] * 101])
def test_embeddings_gemini_cannot_take_are_refused_before_any_call(inputs: list[str]) -> None:
    with pytest.raises(InvalidRequest):
        provider.build_request(_target(model="text-embedding-004"), EmbeddingsRequest(inputs))


# ---------------------------------------------------------------- config


def test_every_route_type_is_offered_and_the_key_is_required() -> None:
    for route_type in RouteType:
        provider.validate_config(route_type=route_type, config={}, secrets={"gemini_api_key": KEY})
    with pytest.raises(ProviderConfigError, match="gemini_api_key"):
        provider.validate_config(route_type=RouteType.CHAT, config={}, secrets={})


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"gemini_api_base": "ftp://x"}, "http"),
        ({"gemini_api_base": "https://generativelanguage.googleapis.com/v1beta/models"}, "/models"),
        ({"gemini_api_base": "https://proxy/v1beta?key=abc"}, "query"),
        ({"gemini_project": "p"}, "Unknown config"),
    ],
)
def test_bad_config_is_refused_when_the_route_is_saved(config: dict[str, Any], match: str) -> None:
    with pytest.raises(ProviderConfigError, match=match):
        provider.validate_config(route_type=RouteType.CHAT, config=config, secrets={"gemini_api_key": KEY})


# ---------------------------------------------------------------- response parsing


def test_chat_answer_with_usage_model_version_and_response_id() -> None:
    data = _answer(
        _candidate("Hello", "STOP"),
        usage={"promptTokenCount": 4, "candidatesTokenCount": 2, "totalTokenCount": 6},
        modelVersion="gemini-2.0-flash-001",
        responseId="resp-1",
    )
    response = from_vendor_body(_chat(("user", "Hi")), data, default_model="gemini-2.0-flash")
    assert isinstance(response, ChatResponse)
    assert (response.model, response.id) == ("gemini-2.0-flash-001", "resp-1")
    assert [(c.index, c.message.role, c.message.content, c.finish_reason) for c in response.choices] == [
        (0, "assistant", "Hello", "stop")
    ]
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (4, 2, 6)
    assert not response.usage.estimated


@pytest.mark.parametrize(
    ("vendor", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "other"),
        ("MALFORMED_FUNCTION_CALL", "malformed_function_call"),
    ],
)
def test_finish_reasons_map_to_openais(vendor: str, expected: str) -> None:
    response = from_vendor_body(_chat(("user", "x")), _answer(_candidate("t", vendor)), default_model="m")
    assert isinstance(response, ChatResponse)
    assert response.choices[0].finish_reason == expected


def test_a_filtered_candidate_is_empty_with_finish_reason_content_filter() -> None:
    data = _answer(
        _candidate(None, "SAFETY", safetyRatings=[{"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH"}]),
        _candidate("partial recited text", "RECITATION", index=1),
        usage={"promptTokenCount": 3, "totalTokenCount": 3},
    )
    response = from_vendor_body(_chat(("user", "x")), data, default_model="m")
    assert isinstance(response, ChatResponse)
    assert [(c.message.content, c.finish_reason) for c in response.choices] == [
        ("", "content_filter"), ("", "content_filter")]
    assert (response.usage.input_tokens, response.usage.output_tokens) == (3, 0)


def test_a_blocked_prompt_is_a_400_content_blocked_never_a_500() -> None:
    data = {"promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
            "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12}}
    with pytest.raises(InvalidRequest) as caught:
        from_vendor_body(_chat(("user", "x")), data, default_model="m")
    assert (caught.value.status, caught.value.code) == (400, "CONTENT_BLOCKED")
    assert "PROHIBITED_CONTENT" in caught.value.message


def test_an_answer_without_candidates_or_block_reason_is_unreadable() -> None:
    with pytest.raises((KeyError, TypeError)):
        from_vendor_body(_chat(("user", "x")), {"usageMetadata": {"promptTokenCount": 1}}, default_model="m")
    with pytest.raises(TypeError):
        from_vendor_body(_chat(("user", "x")), [], default_model="m")


def test_candidates_are_ordered_by_index_a_missing_index_being_zero() -> None:
    data = _answer(_candidate("second", index=1), _candidate("first"))
    response = from_vendor_body(CompletionsRequest("p", CommonParams(n=2)), data, default_model="m")
    assert isinstance(response, CompletionsResponse)
    assert [(c.index, c.text) for c in response.choices] == [(0, "first"), (1, "second")]


def test_text_parts_are_joined_and_thought_parts_left_out() -> None:
    candidate = {"content": {"role": "model", "parts": [
        {"text": "thinking...", "thought": True}, {"text": "Hello, "}, {"text": "world"}]}, "finishReason": "STOP"}
    response = from_vendor_body(_chat(("user", "x")), _answer(candidate), default_model="m")
    assert isinstance(response, ChatResponse)
    assert response.choices[0].message.content == "Hello, world"


def test_thinking_tokens_count_as_output() -> None:
    usage = usage_from_vendor({"usageMetadata": {
        "promptTokenCount": 10, "candidatesTokenCount": 4, "thoughtsTokenCount": 30, "totalTokenCount": 44}})
    assert usage is not None
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (10, 34, 44)


def test_an_answer_without_usage_is_counted_and_marked_estimated() -> None:
    request = _chat(("user", "How many tokens is this?"))
    response = from_vendor_body(request, _answer(_candidate("Seven.")), default_model="m")
    assert response.usage.estimated
    assert response.usage.input_tokens == count_chat_tokens(request.messages)
    assert response.usage.output_tokens == count_text_tokens("Seven.")


def test_embeddings_usage_is_counted_because_gemini_reports_none() -> None:
    request = EmbeddingsRequest(["one text", "two"])
    response = from_vendor_body(request, {"embeddings": [{"values": [1, 2]}, {"values": [3.5, 4]}]},
                                default_model="text-embedding-004")
    assert response.embeddings == [[1.0, 2.0], [3.5, 4.0]]  # type: ignore[union-attr]
    assert response.usage.estimated
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        count_text_tokens("one text") + count_text_tokens("two"), 0)
    with pytest.raises(ValueError):
        from_vendor_body(request, {"embeddings": [{"values": [1]}]}, default_model="m")


# ---------------------------------------------------------------- errors


def _api_key_invalid(key: str) -> dict[str, Any]:
    return {"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                      "status": "INVALID_ARGUMENT", "details": [
                          {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                           "domain": "googleapis.com"},
                          {"@type": "type.googleapis.com/google.rpc.DebugInfo", "detail": f"Invalid API key: {key}"}]}}


def test_api_key_invalid_is_a_502_auth_failure_not_a_400_that_blames_the_caller() -> None:
    error = error_from_vendor(_error(400, _api_key_invalid(KEY)), Secrets({"gemini_api_key": KEY}))
    assert (error.status, error.code) == (502, "UPSTREAM_AUTH_FAILED")
    assert KEY not in error.message and "AIza" not in error.message


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_are_auth_failures(status: int) -> None:
    body = {"error": {"code": status, "message": "Method doesn't allow unregistered callers", "status": "X"}}
    error = error_from_vendor(_error(status, body), Secrets())
    assert (error.status, error.code) == (502, "UPSTREAM_AUTH_FAILED")


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_caller_errors_are_400_with_googles_message(status: int) -> None:
    body = {"error": {"code": status, "message": "models/nope is not found for API version v1beta",
                      "status": "NOT_FOUND"}}
    error = error_from_vendor(_error(status, body), Secrets())
    assert isinstance(error, InvalidRequest)
    assert (error.status, error.code) == (400, "UPSTREAM_BAD_REQUEST")
    assert "models/nope is not found" in error.message


def test_failed_precondition_is_the_gateways_problem_not_the_callers() -> None:
    body = {"error": {"code": 400, "message": "User location is not supported for the API use.",
                      "status": "FAILED_PRECONDITION"}}
    error = error_from_vendor(_error(400, body), Secrets())
    assert (error.status, error.code) == (502, "UPSTREAM_ERROR")
    assert "User location is not supported" in error.message


def test_429_takes_retry_after_from_retry_info_unless_a_header_says_otherwise() -> None:
    def body(delay: str) -> dict[str, Any]:
        return {"error": {"code": 429, "message": "Resource has been exhausted (e.g. check quota).",
                          "status": "RESOURCE_EXHAUSTED", "details": [
                              {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]}}

    error = error_from_vendor(_error(429, body("38s")), Secrets())
    assert (error.status, error.code, error.retry_after) == (502, "UPSTREAM_RATE_LIMITED", 38.0)
    assert error_from_vendor(_error(429, body("38s"), {"Retry-After": "5"}), Secrets()).retry_after == 5.0
    assert error_from_vendor(_error(429, body("0.5s")), Secrets()).retry_after == 0.5


@pytest.mark.parametrize("status", [500, 503, 504])
def test_server_errors_are_502_upstream_error(status: int) -> None:
    error = error_from_vendor(_error(status, {"error": {"code": status, "message": "Internal error"}}), Secrets())
    assert (error.status, error.code) == (502, "UPSTREAM_ERROR")
    assert error_from_vendor(_error(status, b"<html>oops</html>"), Secrets()).code == "UPSTREAM_ERROR"


def test_google_api_keys_in_messages_are_redacted_even_when_not_the_routes() -> None:
    other = "AIzaSyOTHER1q9Lm2Xv7Tk4Rb8Wc1Hd6Np0Zs5J"
    body = {"error": {"code": 400, "message": f"Project of key {other} and {KEY} is suspended", "status": "X"}}
    error = error_from_vendor(_error(400, body), Secrets({"gemini_api_key": KEY}))
    assert other not in error.message and KEY not in error.message
    assert "[REDACTED]" in error.message


# ---------------------------------------------------------------- stream parsing


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\r\n\r\n"


def _piece(text: str | None, finish: str | None = None, usage: dict[str, Any] | None = None,
           **candidate: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"candidates": [_candidate(text, finish, **candidate)], "modelVersion": "gemini-x"}
    if usage is not None:
        payload["usageMetadata"] = usage
    return payload


def test_stream_parser_reads_crlf_sse_split_anywhere_with_role_first_and_usage_on_the_finish() -> None:
    wire = (
        _event(_piece("Hel", usage={"promptTokenCount": 3, "totalTokenCount": 3}))
        + _event(_piece("lo", usage={"promptTokenCount": 3, "totalTokenCount": 3}))
        + _event(_piece("!", "STOP", usage={"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5}))
    )
    parser = GeminiStreamParser(default_model="m", secrets=Secrets(), chat=True)
    chunks = []
    for i in range(0, len(wire), 7):
        chunks += parser.feed(wire[i : i + 7])
    chunks += parser.close()
    deltas = [d for c in chunks for d in c.deltas]
    assert [(d.text, d.role, d.finish_reason) for d in deltas] == [
        ("Hel", "assistant", None), ("lo", None, None), ("!", None, "stop")]
    assert [c.usage for c in chunks[:-1]] == [None, None]
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (3, 2)
    assert chunks[-1].model == "gemini-x"


def test_stream_parser_for_completions_sends_no_role() -> None:
    parser = GeminiStreamParser(default_model="m", secrets=Secrets(), chat=False)
    chunks = parser.feed(_event(_piece("a", "STOP")))
    assert [(d.text, d.role, d.finish_reason) for c in chunks for d in c.deltas] == [("a", None, "stop")]


def test_stream_parser_raises_content_blocked_for_a_blocked_prompt() -> None:
    parser = GeminiStreamParser(default_model="m", secrets=Secrets(), chat=True)
    with pytest.raises(InvalidRequest) as caught:
        parser.feed(_event({"promptFeedback": {"blockReason": "SAFETY"}}))
    assert caught.value.code == "CONTENT_BLOCKED"


def test_stream_parser_ends_a_filtered_candidate_with_content_filter_and_no_text() -> None:
    parser = GeminiStreamParser(default_model="m", secrets=Secrets(), chat=True)
    chunks = parser.feed(_event(_piece("Sure, ")) + _event(_piece("leaked?", "SAFETY")))
    assert [(d.text, d.finish_reason) for c in chunks for d in c.deltas] == [
        ("Sure, ", None), ("", "content_filter")]


def test_stream_parser_raises_a_mid_stream_error_after_the_chunks_before_it() -> None:
    parser = GeminiStreamParser(default_model="m", secrets=Secrets({"gemini_api_key": KEY}), chat=True)
    error = {"error": {"code": 500, "message": f"Internal error with {KEY}", "status": "INTERNAL"}}
    chunks = parser.feed(_event(_piece("Hi")) + _event(error))
    assert [d.text for c in chunks for d in c.deltas] == ["Hi"]
    with pytest.raises(UpstreamError) as caught:
        parser.feed(b"")
    assert "mid-stream" in caught.value.message and KEY not in caught.value.message


def test_stream_parser_passes_on_usage_sent_in_an_event_of_its_own_after_the_finish() -> None:
    parser = GeminiStreamParser(default_model="m", secrets=Secrets(), chat=True)
    early = parser.feed(_event({"usageMetadata": {"promptTokenCount": 3}}) + _event(_piece("a", "STOP")))
    late = parser.feed(_event({"usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1}}))
    assert [c.usage for c in early] == [Usage(input_tokens=3, output_tokens=0)]
    assert [(c.deltas, c.usage) for c in late] == [([], Usage(input_tokens=3, output_tokens=1))]
