"""MosaicML's mapping (MLflow's predict format and Llama 2 chat prompt) as pure functions over plain dicts."""

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
    UpstreamResponse,
)
from providers.mosaicml import (
    MosaicMLProvider,
    MosaicMLSettings,
    build_upstream_request,
    chat_from_vendor,
    completions_from_vendor,
    embeddings_from_vendor,
    error_from_vendor,
    llama2_chat_prompt,
    parameters_to_vendor,
)
from providers.tokens import count_text_tokens

mosaic = MosaicMLProvider()
SETTINGS = MosaicMLSettings()


def test_provider_name_keys_and_route_types_are_mlflows() -> None:
    assert mosaic.name == "mosaicml" and mosaic.secret_fields == ("mosaicml_api_key",)
    assert mosaic.config_fields == ("mosaicml_api_base",)
    assert mosaic.route_types == set(RouteType)
    assert not mosaic.supports_streaming


def test_config_validation() -> None:
    mosaic.validate_config(route_type=RouteType.EMBEDDINGS, config={}, secrets={"mosaicml_api_key": "k"})
    with pytest.raises(ProviderConfigError, match="mosaicml_api_key"):
        mosaic.validate_config(route_type=RouteType.CHAT, config={}, secrets={})
    with pytest.raises(ProviderConfigError):
        mosaic.validate_config(route_type=RouteType.CHAT, config={"mosaicml_api_base": "ftp://x"},
                               secrets={"mosaicml_api_key": "k"})


def test_completions_send_mlflows_predict_body_with_the_bare_key() -> None:
    request = CompletionsRequest("Once", CommonParams(temperature=0.5, max_tokens=20, top_p=0.9, stop=["."]))
    sent = build_upstream_request(SETTINGS, model="mpt-7b-instruct", api_key="key-123", request=request)
    assert sent.url == "https://models.hosted-on.mosaicml.hosting/mpt-7b-instruct/v1/predict"
    assert sent.headers["Authorization"] == "key-123"  # MosaicML takes the key without "Bearer"
    assert sent.json == {"inputs": ["Once"], "parameters": {"temperature": 0.5, "max_new_tokens": 20,
                                                            "top_p": 0.9, "stop": ["."]}}


@pytest.mark.parametrize("params", [CommonParams(n=2), CommonParams(presence_penalty=1.0),
                                    CommonParams(frequency_penalty=0.2)])
def test_what_mosaicml_cannot_do_is_refused(params: CommonParams) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parameters_to_vendor(params)
    assert caught.value.status == 400


def test_the_llama2_prompt_matches_mlflows_format() -> None:
    messages = [
        ChatMessage("system", "You are terse."),
        ChatMessage("user", "Hi"),
        ChatMessage("assistant", "Hello."),
        ChatMessage("user", "Bye"),
    ]
    assert llama2_chat_prompt(messages) == (
        "<s>[INST] <<SYS>> You are terse. <</SYS>> Hi [/INST] Hello. </s><s>[INST] Bye [/INST]"
    )


def test_a_final_assistant_message_is_left_open_for_the_model_to_continue() -> None:
    prompt = llama2_chat_prompt([ChatMessage("user", "Write a poem"), ChatMessage("assistant", "Roses")])
    assert prompt == "<s>[INST] Write a poem [/INST] Roses "


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="role 'tool'"):
        llama2_chat_prompt([ChatMessage("tool", "x")])


def test_chat_is_for_llama2_models_only_as_in_mlflow() -> None:
    request = ChatRequest([ChatMessage("user", "Hi")], CommonParams(max_tokens=5))
    sent = build_upstream_request(SETTINGS, model="llama2-70b-chat", api_key="k", request=request)
    assert sent.json == {"inputs": ["<s>[INST] Hi [/INST]"], "parameters": {"max_new_tokens": 5}}
    with pytest.raises(InvalidRequest, match="Llama 2"):
        build_upstream_request(SETTINGS, model="mpt-7b-instruct", api_key="k", request=request)


def test_embeddings_send_the_texts_as_inputs() -> None:
    sent = build_upstream_request(SETTINGS, model="instructor-xl", api_key="k", request=EmbeddingsRequest(["a", "b"]))
    assert sent.url.endswith("/instructor-xl/v1/predict") and sent.json == {"inputs": ["a", "b"]}


def test_answers_carry_estimated_usage() -> None:
    completion = completions_from_vendor({"outputs": ["the end"]}, model="mpt", prompt="Tell me")
    assert completion.choices[0].text == "the end" and completion.choices[0].finish_reason is None
    usage = completion.usage
    assert usage.estimated and (usage.input_tokens, usage.output_tokens) == (count_text_tokens("Tell me"),
                                                                              count_text_tokens("the end"))
    chat = chat_from_vendor({"outputs": ["Hi!"]}, model="llama2-70b-chat", prompt="<s>[INST] Hi [/INST]")
    assert chat.choices[0].message.content == "Hi!" and chat.usage.estimated
    assert chat.usage.input_tokens == count_text_tokens("<s>[INST] Hi [/INST]")  # the template is input too


def test_embeddings_answers_are_one_vector_per_input() -> None:
    response = embeddings_from_vendor({"outputs": [[1, 2.5], [3, 4]]}, model="instructor-xl", inputs=["a", "b"])
    assert response.embeddings == [[1.0, 2.5], [3.0, 4.0]]
    assert response.usage.estimated and response.usage.output_tokens == 0
    with pytest.raises(ValueError):
        embeddings_from_vendor({"outputs": [[1.0]]}, model="instructor-xl", inputs=["a", "b"])
    with pytest.raises(KeyError):
        completions_from_vendor({"result": []}, model="m", prompt="p")


@pytest.mark.parametrize(("status", "message", "code", "http"), [
    (500, "Error: max output tokens is limited to 512 tokens.", "UPSTREAM_BAD_REQUEST", 400),
    (500, "Error: prompt token count (5000) cannot exceed 2048", "UPSTREAM_BAD_REQUEST", 400),
    (500, "Internal error", "UPSTREAM_ERROR", 502),
    (400, "Error: bad input", "UPSTREAM_BAD_REQUEST", 400),
    (401, "Unauthorized", "UPSTREAM_AUTH_FAILED", 502),
    (429, "Too many requests", "UPSTREAM_RATE_LIMITED", 502),
])
def test_errors_map_and_mlflows_token_limit_errors_are_the_callers(
    status: int, message: str, code: str, http: int
) -> None:
    error = error_from_vendor(UpstreamResponse(status, {}, orjson.dumps({"message": message})), Secrets())
    assert (error.status, error.code) == (http, code)
    if http == 400:
        assert message in error.message


def test_the_provider_reads_its_target() -> None:
    target = Target("mosaicml", "mpt-7b-instruct", {"mosaicml_api_base": "http://mosaic.local/"},
                    Secrets({"mosaicml_api_key": "k\n"}))
    sent = mosaic.build_request(target, CompletionsRequest("x"))
    assert sent.url == "http://mosaic.local/mpt-7b-instruct/v1/predict" and sent.headers["Authorization"] == "k"
