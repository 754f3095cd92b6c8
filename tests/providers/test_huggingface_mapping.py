"""TGI's mapping as pure functions over plain dicts: no server, no network."""

from __future__ import annotations

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
from providers.huggingface import (
    HFTextGenerationInferenceServerProvider,
    TGIChatStreamParser,
    TGIGenerateStreamParser,
    TGISettings,
    build_upstream_request,
    chat_to_vendor,
    completions_from_vendor,
    error_from_vendor,
    generate_parameters,
    tgi_chat_from_vendor,
)
from providers.tokens import count_text_tokens

tgi = HFTextGenerationInferenceServerProvider()
SETTINGS = TGISettings(server_url="http://tgi:8080")
PROMPT = CompletionsRequest("Once upon a time")


def test_provider_name_keys_and_route_types_are_mlflows() -> None:
    assert tgi.name == "huggingface-text-generation-inference"
    assert tgi.config_fields == ("hf_server_url",) and tgi.secret_fields == ("hf_api_token",)
    assert tgi.route_types == {RouteType.COMPLETIONS, RouteType.CHAT}
    assert tgi.supports_streaming


def test_embeddings_routes_and_bad_urls_are_refused_at_creation() -> None:
    with pytest.raises(ProviderConfigError, match="does not support route type 'llm/v1/embeddings'"):
        tgi.validate_config(route_type=RouteType.EMBEDDINGS, config={"hf_server_url": "http://tgi"}, secrets={})
    with pytest.raises(ProviderConfigError, match="needs config field"):
        tgi.validate_config(route_type=RouteType.COMPLETIONS, config={}, secrets={})
    for url in ("tgi:8080", "http://tgi/generate", "http://tgi/v1"):
        with pytest.raises(ProviderConfigError):
            tgi.validate_config(route_type=RouteType.CHAT, config={"hf_server_url": url}, secrets={})
    tgi.validate_config(route_type=RouteType.CHAT, config={"hf_server_url": "https://x.endpoints.huggingface.cloud/"},
                        secrets={"hf_api_token": "hf_x"})


def test_completions_use_mlflows_generate_body_with_details() -> None:
    request = CompletionsRequest("Hi", CommonParams(temperature=0.7, max_tokens=20, stop=["\n"], top_p=0.9))
    sent = build_upstream_request(SETTINGS, model="llama", token=None, request=request)
    assert sent.url == "http://tgi:8080/generate"
    assert "Authorization" not in sent.headers  # a plain TGI server wants none
    assert sent.json == {
        "inputs": "Hi",
        "parameters": {
            "max_new_tokens": 20,
            "temperature": 0.7,  # unscaled: TGI's temperature means what OpenAI's does
            "do_sample": True,
            "top_p": 0.9,
            "stop": ["\n"],
            "details": True,
            "decoder_input_details": True,
        },
    }


def test_temperature_zero_is_greedy_decoding_not_a_refused_zero() -> None:
    parameters = generate_parameters(CommonParams(temperature=0.0))
    assert parameters["do_sample"] is False and "temperature" not in parameters


def test_top_p_of_one_is_left_out_and_zero_is_refused() -> None:
    assert "top_p" not in generate_parameters(CommonParams(top_p=1.0))
    assert "top_p" not in chat_to_vendor(ChatRequest([ChatMessage("user", "x")], CommonParams(top_p=1.0)), model="m")
    with pytest.raises(InvalidRequest, match="top_p"):
        generate_parameters(CommonParams(top_p=0.0))


@pytest.mark.parametrize("request_", [
    CompletionsRequest("x", CommonParams(n=2)),
    ChatRequest([ChatMessage("user", "x")], CommonParams(n=3)),
])
def test_several_candidates_are_refused_like_mlflow_does(request_: CompletionsRequest | ChatRequest) -> None:
    with pytest.raises(InvalidRequest, match="single candidate") as caught:
        build_upstream_request(SETTINGS, model="m", token=None, request=request_)
    assert caught.value.status == 400


def test_presence_penalty_is_refused_on_generate_but_passed_to_chat() -> None:
    with pytest.raises(InvalidRequest, match="presence_penalty"):
        generate_parameters(CommonParams(presence_penalty=0.5))
    assert "presence_penalty" not in generate_parameters(CommonParams(presence_penalty=0.0))
    assert generate_parameters(CommonParams(frequency_penalty=0.3))["frequency_penalty"] == 0.3
    chat = chat_to_vendor(ChatRequest([ChatMessage("user", "x")], CommonParams(presence_penalty=0.5)), model="m")
    assert chat["presence_penalty"] == 0.5


def test_chat_goes_to_tgis_messages_api_with_the_token_when_configured() -> None:
    request = ChatRequest([ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")],
                          CommonParams(temperature=0.0, max_tokens=5))
    sent = build_upstream_request(SETTINGS, model="tgi", token="hf_abc", request=request)
    assert sent.url == "http://tgi:8080/v1/chat/completions"
    assert sent.headers["Authorization"] == "Bearer hf_abc"
    assert sent.json == {"model": "tgi", "messages": [{"role": "system", "content": "Be brief."},
                                                       {"role": "user", "content": "Hi"}],
                         "max_tokens": 5, "temperature": 0.0}


def test_streams_ask_for_details_without_prefill_and_chat_asks_for_usage() -> None:
    streamed = build_upstream_request(SETTINGS, model="m", token=None, request=PROMPT, stream=True)
    assert streamed.url.endswith("/generate_stream")
    assert streamed.json["parameters"] == {"details": True}  # TGI refuses decoder_input_details when streaming
    chat = build_upstream_request(SETTINGS, model="m", token=None, stream=True,
                                  request=ChatRequest([ChatMessage("user", "x")]))
    assert chat.json["stream"] is True and chat.json["stream_options"] == {"include_usage": True}


def test_embeddings_are_not_a_tgi_call() -> None:
    with pytest.raises(InvalidRequest):
        build_upstream_request(SETTINGS, model="m", token=None, request=EmbeddingsRequest(["x"]))


def test_generate_answer_maps_finish_reason_and_counts_the_prefill() -> None:
    data = {"generated_text": " there", "details": {"finish_reason": "eos_token", "generated_tokens": 2,
                                                    "prefill": [{"id": 1}, {"id": 2}, {"id": 3}], "tokens": []}}
    response = completions_from_vendor(data, {}, model="llama", prompt="Hello")
    assert response.choices[0].text == " there" and response.choices[0].finish_reason == "stop"
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.estimated) == (3, 2, False)


@pytest.mark.parametrize(("reason", "expected"), [("length", "length"), ("stop_sequence", "stop"),
                                                  ("eos_token", "stop"), ("something_new", "something_new")])
def test_finish_reasons(reason: str, expected: str) -> None:
    data = {"generated_text": "", "details": {"finish_reason": reason, "generated_tokens": 0, "prefill": [{}]}}
    assert completions_from_vendor(data, {}, model="m", prompt="p").choices[0].finish_reason == expected


def test_without_prefill_the_prompt_tokens_header_counts_the_input() -> None:
    data = {"generated_text": "x", "details": {"finish_reason": "length", "generated_tokens": 1, "prefill": []}}
    usage = completions_from_vendor(data, {"X-Prompt-Tokens": "9"}, model="m", prompt="p").usage
    assert (usage.input_tokens, usage.output_tokens, usage.estimated) == (9, 1, False)


def test_without_details_usage_is_counted_and_marked_estimated() -> None:
    usage = completions_from_vendor({"generated_text": "a b c"}, {}, model="m", prompt="Once upon").usage
    assert usage.estimated
    assert (usage.input_tokens, usage.output_tokens) == (count_text_tokens("Once upon"), count_text_tokens("a b c"))


def test_a_generate_answer_without_text_is_unreadable() -> None:
    with pytest.raises(KeyError):
        completions_from_vendor({"details": {}}, {}, model="m", prompt="p")


def test_chat_answer_is_openai_shaped_and_stop_sequence_maps_to_stop() -> None:
    data = {"id": "", "model": "tgi", "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi!"},
                                                   "finish_reason": "stop_sequence"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}
    response = tgi_chat_from_vendor(data, model="llama")
    assert response.choices[0].message.content == "Hi!" and response.choices[0].finish_reason == "stop"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (7, 2)


@pytest.mark.parametrize(("status", "code", "http"), [
    (422, "UPSTREAM_BAD_REQUEST", 400), (400, "UPSTREAM_BAD_REQUEST", 400), (401, "UPSTREAM_AUTH_FAILED", 502),
    (403, "UPSTREAM_AUTH_FAILED", 502), (429, "UPSTREAM_RATE_LIMITED", 502), (424, "UPSTREAM_ERROR", 502),
    (500, "UPSTREAM_ERROR", 502), (503, "UPSTREAM_ERROR", 502),
])
def test_tgi_errors_map_to_gateway_errors(status: int, code: str, http: int) -> None:
    body = orjson.dumps({"error": "Input validation error: `temperature` must be strictly positive",
                         "error_type": "validation"})
    error = error_from_vendor(UpstreamResponse(status, {"Retry-After": "3"}, body), Secrets())
    assert (error.status, error.code) == (http, code)
    if status == 422:
        assert "`temperature` must be strictly positive" in error.message
    if status == 429:
        assert error.retry_after == 3.0
    if status in (401, 403):
        assert "temperature" not in error.message  # fixed text


def test_an_error_echoing_the_token_is_redacted() -> None:
    token = "hf_Wq7Hn2Zp9Lm4Xv8Tk3RbYcQz"
    body = orjson.dumps({"error": f"bad request for token {token}", "error_type": "validation"})
    error = error_from_vendor(UpstreamResponse(422, {}, body), Secrets({"hf_api_token": token}))
    assert token not in error.message and token[3:12] not in error.message


def _sse(*payloads: object, sep: bytes = b"data:") -> bytes:
    return b"".join(sep + orjson.dumps(p) + b"\n\n" for p in payloads)


def test_generate_stream_skips_special_tokens_and_ends_with_vendor_usage() -> None:
    parser = TGIGenerateStreamParser(model="m", prompt="Hi", secrets=Secrets())
    wire = _sse(
        {"index": 1, "token": {"id": 5, "text": "Hello", "special": False}, "generated_text": None, "details": None},
        {"index": 2, "token": {"id": 6, "text": " there", "special": False}, "generated_text": None, "details": None},
        {"index": 3, "token": {"id": 2, "text": "</s>", "special": True}, "generated_text": "Hello there",
         "details": {"finish_reason": "eos_token", "generated_tokens": 3, "input_length": 4, "seed": None}},
    )
    chunks = [c for i in range(0, len(wire), 7) for c in parser.feed(wire[i : i + 7])] + parser.close()
    assert "".join(d.text for c in chunks for d in c.deltas) == "Hello there"
    assert chunks[-1].deltas[0].finish_reason == "stop"
    usage = chunks[-1].usage
    assert usage is not None and (usage.input_tokens, usage.output_tokens, usage.estimated) == (4, 3, False)


def test_generate_stream_without_input_length_estimates_the_prompt() -> None:
    parser = TGIGenerateStreamParser(model="m", prompt="Once upon a time", secrets=Secrets())
    [chunk] = parser.feed(_sse({"index": 1, "token": {"text": "x", "special": False}, "generated_text": "x",
                                "details": {"finish_reason": "length", "generated_tokens": 1}}))
    assert chunk.deltas[0].text == "x" and chunk.deltas[0].finish_reason == "length"
    assert chunk.usage is not None and chunk.usage.estimated
    assert chunk.usage.input_tokens == count_text_tokens("Once upon a time") and chunk.usage.output_tokens == 1


def test_error_events_mid_stream_raise_after_what_came_before() -> None:
    token = "hf_SecretTokenValue12345"
    parser = TGIGenerateStreamParser(model="m", prompt="p", secrets=Secrets({"hf_api_token": token}))
    wire = _sse({"index": 1, "token": {"text": "a", "special": False}, "generated_text": None, "details": None},
                {"error": f"Request failed during generation: {token}", "error_type": "generation"})
    assert [c.deltas[0].text for c in parser.feed(wire)] == ["a"]
    with pytest.raises(UpstreamError, match="mid-stream") as caught:
        parser.feed(b"")
    assert token not in caught.value.message

    chat = TGIChatStreamParser(model="m", secrets=Secrets())
    with pytest.raises(UpstreamError, match="CUDA"):
        chat.feed(b'data: {"error": {"message": "CUDA out of memory", "http_status_code": 422}}\n\n')


def test_chat_stream_maps_finish_reasons_and_reads_the_usage_chunk() -> None:
    parser = TGIChatStreamParser(model="m", secrets=Secrets())
    chunk = {"id": "", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"},
                                                  "finish_reason": None}], "usage": None}
    end = {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                 "finish_reason": "stop_sequence"}]}
    usage = {**chunk, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}
    chunks = parser.feed(_sse(chunk, end, usage, sep=b"data: ") + b"data: [DONE]\n\n")
    assert [d.finish_reason for c in chunks for d in c.deltas] == [None, "stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.input_tokens == 5


def test_the_provider_builds_stream_requests_from_the_target() -> None:
    target = Target(tgi.name, "llama", {"hf_server_url": "http://tgi:8080/"}, Secrets({"hf_api_token": " hf_t \n"}))
    sent = tgi.build_stream_request(target, PROMPT)
    assert sent.url == "http://tgi:8080/generate_stream" and sent.headers["Authorization"] == "Bearer hf_t"
    assert isinstance(tgi.stream_parser(target, PROMPT), TGIGenerateStreamParser)
    assert isinstance(tgi.stream_parser(target, ChatRequest([ChatMessage("user", "x")])), TGIChatStreamParser)
