"""The OpenAI-compatible vendors' adapters (Groq, DeepSeek, xAI, OpenRouter, TogetherAI, Ollama, vLLM)
and the OpenAI hooks they use, with plain dicts: no network."""

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
from providers.openai import OpenAIStreamParser, content_text, error_from_vendor
from providers.openai_compatible import (
    DeepSeekProvider,
    GroqProvider,
    OllamaProvider,
    OpenAICompatibleProvider,
    OpenRouterProvider,
    TogetherAIProvider,
    VLLMProvider,
    XAIProvider,
    deepseek_fim_url,
)
from providers.tokens import count_chat_tokens, count_text_tokens

KEY = "sk-live7Hq2Zp9Lm4Xv8Tk3RbQ"
CHAT = ChatRequest([ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")])

PROVIDERS: dict[str, OpenAICompatibleProvider] = {
    p.name: p
    for p in (GroqProvider(), DeepSeekProvider(), XAIProvider(), OpenRouterProvider(), TogetherAIProvider(),
              OllamaProvider(), VLLMProvider())
}
DEFAULT_BASES = {
    "groq": "https://api.groq.com/openai/v1",
    "deepseek": "https://api.deepseek.com",
    "xai": "https://api.x.ai/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "togetherai": "https://api.together.xyz/v1",
    "ollama": "http://localhost:11434/v1",
}


def _target(name: str, config: dict[str, Any] | None = None, key: str | None = KEY, model: str = "m-1") -> Target:
    provider = PROVIDERS[name]
    secrets = Secrets({provider.key_field: key} if key else {})
    return Target(name, model, config or {}, secrets)


def _response(data: dict[str, Any], status: int = 200) -> UpstreamResponse:
    return UpstreamResponse(status=status, headers={}, body=orjson.dumps(data))


# ---------------------------------------------------------------- config keys and validation


def test_config_keys_are_mlflows_api_key_and_api_base_except_togetherais_own() -> None:
    for name in ("groq", "deepseek", "xai", "openrouter", "ollama", "vllm"):
        assert (PROVIDERS[name].secret_fields, PROVIDERS[name].config_fields) == (("api_key",), ("api_base",))
    together = PROVIDERS["togetherai"]
    assert (together.secret_fields, together.config_fields) == (("togetherai_api_key",), ("togetherai_api_base",))


@pytest.mark.parametrize(("name", "required"), [
    ("groq", ("api_key",)), ("deepseek", ("api_key",)), ("xai", ("api_key",)), ("openrouter", ("api_key",)),
    ("togetherai", ("togetherai_api_key",)), ("ollama", ()), ("vllm", ("api_base",)),
])
def test_required_fields_follow_each_vendors_needs(name: str, required: tuple[str, ...]) -> None:
    assert PROVIDERS[name].required_fields == required


@pytest.mark.parametrize(("name", "offered"), [
    ("groq", {RouteType.CHAT, RouteType.COMPLETIONS}),
    ("deepseek", {RouteType.CHAT, RouteType.COMPLETIONS}),
    ("xai", set(RouteType)), ("openrouter", set(RouteType)), ("togetherai", set(RouteType)),
    ("ollama", set(RouteType)), ("vllm", set(RouteType)),
])
def test_route_types_the_vendor_lacks_are_refused_at_validation(name: str, offered: set[RouteType]) -> None:
    provider = PROVIDERS[name]
    config = {"api_base": "http://127.0.0.1:8000/v1"} if name == "vllm" else {}
    for route_type in RouteType:
        if route_type in offered:
            provider.validate_config(route_type=route_type, config=config, secrets={provider.key_field: KEY})
        else:
            with pytest.raises(ProviderConfigError, match="does not support route type"):
                provider.validate_config(route_type=route_type, config=config, secrets={provider.key_field: KEY})


def test_validation_needs_the_key_for_hosted_vendors_but_not_for_ollama_or_vllm() -> None:
    with pytest.raises(ProviderConfigError, match="api_key"):
        PROVIDERS["groq"].validate_config(route_type=RouteType.CHAT, config={}, secrets={})
    PROVIDERS["ollama"].validate_config(route_type=RouteType.CHAT, config={}, secrets={})
    PROVIDERS["vllm"].validate_config(route_type=RouteType.CHAT, config={"api_base": "http://gpu-1:8000/v1"},
                                      secrets={})


def test_vllm_needs_an_api_base_and_every_base_must_be_http() -> None:
    with pytest.raises(ProviderConfigError, match="api_base"):
        PROVIDERS["vllm"].validate_config(route_type=RouteType.CHAT, config={}, secrets={})
    with pytest.raises(ProviderConfigError, match="http"):
        PROVIDERS["xai"].validate_config(route_type=RouteType.CHAT, config={"api_base": "ftp://x.ai"},
                                         secrets={"api_key": KEY})
    with pytest.raises(ProviderConfigError, match="Unknown config field"):
        PROVIDERS["groq"].validate_config(route_type=RouteType.CHAT, config={"groq_api_base": "https://x"},
                                          secrets={"api_key": KEY})


# ---------------------------------------------------------------- requests


@pytest.mark.parametrize(("name", "base"), sorted(DEFAULT_BASES.items()))
def test_chat_goes_to_the_default_base_with_bearer_key_and_model_in_body(name: str, base: str) -> None:
    req = PROVIDERS[name].build_request(_target(name), CHAT)
    assert (req.method, req.url) == ("POST", f"{base}/chat/completions")
    assert req.headers == {"Authorization": f"Bearer {KEY}"}
    assert req.json == {
        "model": "m-1",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    }


def test_a_configured_base_replaces_the_default_without_trailing_slash() -> None:
    req = PROVIDERS["openrouter"].build_request(_target("openrouter", {"api_base": "https://proxy.local/or/v1/"}),
                                                CHAT)
    assert req.url == "https://proxy.local/or/v1/chat/completions"


def test_temperature_passes_unchanged_on_openais_scale() -> None:
    request = ChatRequest(CHAT.messages, CommonParams(temperature=1.7, max_tokens=9, stop=["x"], top_p=0.5))
    body = PROVIDERS["xai"].build_request(_target("xai"), request).json
    assert (body["temperature"], body["max_tokens"], body["stop"], body["top_p"]) == (1.7, 9, ["x"], 0.5)


def test_groq_completions_go_to_chat_as_one_user_message() -> None:
    req = PROVIDERS["groq"].build_request(_target("groq"), CompletionsRequest("Once", CommonParams(max_tokens=4)))
    assert req.url == "https://api.groq.com/openai/v1/chat/completions"
    assert req.json == {"model": "m-1", "messages": [{"role": "user", "content": "Once"}], "max_tokens": 4}


@pytest.mark.parametrize(("base", "url"), [
    ("https://api.deepseek.com", "https://api.deepseek.com/beta/completions"),
    ("https://api.deepseek.com/v1", "https://api.deepseek.com/beta/completions"),
    ("https://api.deepseek.com/beta/", "https://api.deepseek.com/beta/completions"),
    ("http://127.0.0.1:9/deepseek", "http://127.0.0.1:9/deepseek/beta/completions"),
])
def test_deepseek_completions_use_the_fim_beta_endpoint(base: str, url: str) -> None:
    assert deepseek_fim_url(base) == url
    req = PROVIDERS["deepseek"].build_request(_target("deepseek", {"api_base": base}), CompletionsRequest("def f("))
    assert req.url == url
    assert req.json == {"model": "m-1", "prompt": "def f("}


def test_xai_openrouter_ollama_vllm_and_together_call_their_completions_api() -> None:
    for name in ("xai", "openrouter", "ollama", "togetherai"):
        req = PROVIDERS[name].build_request(_target(name), CompletionsRequest("Once", CommonParams(max_tokens=3)))
        assert req.url == f"{DEFAULT_BASES[name]}/completions"
        assert req.json == {"model": "m-1", "prompt": "Once", "max_tokens": 3}


def test_embeddings_send_the_inputs_as_a_list() -> None:
    req = PROVIDERS["togetherai"].build_request(_target("togetherai"), EmbeddingsRequest(["a", "b"]))
    assert req.url == "https://api.together.xyz/v1/embeddings"
    assert req.json == {"model": "m-1", "input": ["a", "b"]}


@pytest.mark.parametrize("name", ["groq", "deepseek", "openrouter", "ollama"])
def test_n_above_one_is_refused_where_the_vendor_has_no_n(name: str) -> None:
    with pytest.raises(InvalidRequest, match="n must be 1"):
        PROVIDERS[name].build_request(_target(name), ChatRequest(CHAT.messages, CommonParams(n=2)))


@pytest.mark.parametrize("name", ["xai", "togetherai", "vllm"])
def test_n_passes_where_the_vendor_has_it(name: str) -> None:
    config = {"api_base": "http://h/v1"} if name == "vllm" else {}
    req = PROVIDERS[name].build_request(_target(name, config), ChatRequest(CHAT.messages, CommonParams(n=3)))
    assert req.json["n"] == 3


def test_together_completions_need_max_tokens() -> None:
    with pytest.raises(InvalidRequest, match="max_tokens"):
        PROVIDERS["togetherai"].build_request(_target("togetherai"), CompletionsRequest("Once"))


def test_ollamas_placeholder_key_and_a_missing_vllm_key_send_no_authorization() -> None:
    assert PROVIDERS["ollama"].build_request(_target("ollama", key="ollama"), CHAT).headers == {}
    assert PROVIDERS["ollama"].build_request(_target("ollama", key=None), CHAT).headers == {}
    assert PROVIDERS["ollama"].build_request(_target("ollama", key="real-key"), CHAT).headers == {
        "Authorization": "Bearer real-key"}
    vllm = PROVIDERS["vllm"].build_request(_target("vllm", {"api_base": "http://gpu:8000/v1"}, key=None), CHAT)
    assert (vllm.url, vllm.headers) == ("http://gpu:8000/v1/chat/completions", {})


def test_stream_requests_ask_for_usage_except_together_which_sends_it_unasked() -> None:
    for name in ("groq", "deepseek", "xai", "openrouter", "ollama"):
        body = PROVIDERS[name].build_stream_request(_target(name), CHAT).json
        assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    body = PROVIDERS["togetherai"].build_stream_request(_target("togetherai"), CHAT).json
    assert body["stream"] is True and "stream_options" not in body


def test_provider_classes_stream_chat_and_completions() -> None:
    assert all(p.supports_streaming for p in PROVIDERS.values())


# ---------------------------------------------------------------- answers


def _chat_answer(usage: dict[str, int] | None, finish: str = "stop") -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "c-1", "object": "chat.completion", "created": 1, "model": "m-1",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"},
                     "finish_reason": finish}],
    }
    if usage is not None:
        data["usage"] = usage
    return data


def test_vendor_usage_is_taken_as_reported() -> None:
    usage = {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
    response = PROVIDERS["groq"].parse_response(_target("groq"), CHAT, _response(_chat_answer(usage)))
    assert isinstance(response, ChatResponse)
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.estimated) == (11, 2, False)


def test_an_answer_without_usage_is_counted_and_marked_estimated() -> None:
    target = _target("vllm", {"api_base": "http://h/v1"})
    response = PROVIDERS["vllm"].parse_response(target, CHAT, _response(_chat_answer(None)))
    assert response.usage.estimated is True
    assert response.usage.input_tokens == count_chat_tokens(CHAT.messages)
    assert response.usage.output_tokens == count_text_tokens("Hello there")


def test_together_eos_finish_reason_reads_as_stop_and_its_embeddings_usage_is_estimated() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    chat = PROVIDERS["togetherai"].parse_response(_target("togetherai"), CHAT, _response(_chat_answer(usage, "eos")))
    assert isinstance(chat, ChatResponse) and chat.choices[0].finish_reason == "stop"
    completion = {"id": "x", "object": "text_completion", "created": 1, "model": "m-1", "usage": usage,
                  "choices": [{"index": 0, "text": "and so", "finish_reason": "length"}]}
    comp = PROVIDERS["togetherai"].parse_response(_target("togetherai"), CompletionsRequest("Once"),
                                                  _response(completion))
    assert isinstance(comp, CompletionsResponse) and comp.choices[0].finish_reason == "length"
    request = EmbeddingsRequest(["first text", "second"])
    embedded = {"object": "list", "model": "m-1", "data": [{"object": "embedding", "index": 0, "embedding": [0.5]},
                                                          {"object": "embedding", "index": 1, "embedding": [1]}]}
    emb = PROVIDERS["togetherai"].parse_response(_target("togetherai"), request, _response(embedded))
    assert isinstance(emb, EmbeddingsResponse) and emb.embeddings == [[0.5], [1.0]]
    assert (emb.usage.input_tokens, emb.usage.output_tokens, emb.usage.estimated) == (
        count_text_tokens("first text") + count_text_tokens("second"), 0, True)


def test_content_given_as_parts_keeps_the_text_parts() -> None:
    parts = [{"type": "reasoning", "summary": [{"text": "thinking"}]}, {"type": "text", "text": "Hi "},
             {"type": "text", "text": "there"}]
    assert content_text(parts) == "Hi there"
    assert content_text(None) == "" and content_text("plain") == "plain"


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(("body", "message"), [
    ({"error": {"message": "model `x` does not exist", "type": "invalid_request_error"}}, "model `x` does not exist"),
    ({"code": "Client specified an invalid argument", "error": "The model x does not exist."},
     "The model x does not exist."),  # xAI
    ({"object": "error", "message": "max_tokens is too large", "type": "BadRequestError", "code": 400},
     "max_tokens is too large"),  # vLLM
    ({"error": {"code": 400, "message": "x-ai/grok is not a valid model ID"}}, "x-ai/grok is not a valid model ID"),
])
def test_each_vendors_error_body_gives_its_message(body: dict[str, Any], message: str) -> None:
    error = PROVIDERS["xai"].map_error(_target("xai"), _response(body, status=400))
    assert (error.status, error.code) == (400, "UPSTREAM_BAD_REQUEST")
    assert message in error.message


def test_a_deepseek_401_echoing_the_key_tail_shows_nothing_of_it() -> None:
    body = {"error": {"message": f"Authentication Fails, Your api key: ****{KEY[-4:]} is invalid"}}
    error = PROVIDERS["deepseek"].map_error(_target("deepseek"), _response(body, status=401))
    assert (error.status, error.code) == (502, "UPSTREAM_AUTH_FAILED")
    assert KEY[-4:] not in error.message


def test_error_mapping_accepts_a_vendor_specific_message_extractor() -> None:
    error = error_from_vendor(_response({"weird": "x"}, 400), Secrets({}), extract=lambda body: "from extractor")
    assert error.message.endswith("from extractor")


# ---------------------------------------------------------------- streams


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def test_groq_stream_reads_the_final_usage_from_x_groq() -> None:
    parser = PROVIDERS["groq"].stream_parser(_target("groq"), CHAT)
    chunk = {"id": "x", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
             "x_groq": {"id": "req", "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}}
    chunks = parser.feed(_event(chunk) + b"data: [DONE]\n\n") + parser.close()
    assert [(c.usage.input_tokens, c.usage.output_tokens) for c in chunks if c.usage] == [(7, 3)]


def test_together_stream_says_stop_for_eos_and_reads_usage_from_its_last_chunk() -> None:
    parser = PROVIDERS["togetherai"].stream_parser(_target("togetherai"), CHAT)
    first = {"id": "t", "choices": [{"index": 0, "text": "Hi", "delta": {"token_id": 1, "content": "Hi"},
                                     "finish_reason": None}], "usage": None}
    last = {"id": "t", "choices": [{"index": 0, "text": "!", "delta": {"token_id": 2, "content": "!"},
                                    "finish_reason": "eos"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}
    chunks = parser.feed(_event(first) + _event(last) + b"data: [DONE]\n\n")
    assert "".join(d.text for c in chunks for d in c.deltas) == "Hi!"
    assert [d.finish_reason for c in chunks for d in c.deltas] == [None, "stop"]
    assert [c.usage.total_tokens for c in chunks if c.usage] == [7]


def test_a_mid_stream_error_given_as_a_string_raises_with_its_text() -> None:
    parser = OpenAIStreamParser(default_model="m", secrets=Secrets({"api_key": KEY}))
    with pytest.raises(UpstreamError, match="model crashed"):
        parser.feed(_event({"error": f"model crashed (key {KEY})"}))
    parser = OpenAIStreamParser(default_model="m", secrets=Secrets({"api_key": KEY}))
    with pytest.raises(UpstreamError) as caught:
        parser.feed(_event({"error": {"code": 502, "message": f"provider down {KEY}"}}))
    assert KEY not in caught.value.message
